//! Operations on one repository (GUN), free of HTTP: publish with full
//! validation, reads that keep timestamps fresh, server-held keys, delete,
//! changefeed. Built from the TUF core, the store and the signer.

mod cache;
mod error;
pub mod expiry;
pub mod limits;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};
use tokio::sync::{MutexGuard, Semaphore};

use crate::policy::delegation_ca::TrustAnchors;
use crate::policy::manifest::custom_kind;
use crate::policy::{
    Lookup, LookupError, ManifestKind, ManifestSource, NoRegistry, Violation, names,
};
use crate::signer::KeySigner;
use crate::store::{
    self, AuditAction, AuditEntry, Change, NewAuditEntry, NewFile, RoleVersion, Store, StoredFile,
    Which,
};
use crate::striped::StripedLocks;
use crate::tuf::encoding::format_time;
use crate::tuf::{
    Error as TufError, FileMeta, PublicKey, RoleName, Root, SignedFile, Targets, Timestamp,
    canonical,
};

pub use error::{Busy, Error, ParamProblem, Refusal, Rejection, UploadProblem};
pub use limits::{Cap, Limits};
use validate::{StoredState, Upload, ValidatedUpdate, validate_update};

/// Expiry of server-made metadata (PROTOCOL.md §4.6).
pub const SNAPSHOT_LIFETIME: Duration = Duration::days(3 * 365);
pub const TIMESTAMP_LIFETIME: Duration = Duration::days(14);
/// Re-sign a timestamp once less than this remains, so clients never see
/// an expired one (§11.7).
pub const TIMESTAMP_REFRESH: Duration = Duration::days(7);
/// Likewise for a server-managed snapshot.
pub const SNAPSHOT_REFRESH: Duration = Duration::days(30);

/// How long to serve the last good timestamp after a failed re-sign before
/// trying again.
pub const RESIGN_RETRY: Duration = Duration::seconds(60);

/// The audit trail's subject for callers without a token.
pub const ANONYMOUS: &str = "anonymous";

/// Audit pages hold this many records unless asked otherwise.
pub const DEFAULT_AUDIT_PAGE: i64 = 100;

/// Where the current time comes from; tests pin it.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(OffsetDateTime::now_utc)
}

/// Bytes to serve and when they were stored. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Served {
    pub data: Bytes,
    pub last_modified: OffsetDateTime,
}

impl From<StoredFile> for Served {
    fn from(file: StoredFile) -> Self {
        Self {
            data: Bytes::from(file.data),
            last_modified: file.created_at,
        }
    }
}

/// Server rules applied on top of TUF validation.
pub struct Policy {
    /// Where image digests are looked up; GUNs it covers are image
    /// repositories, whose targets are tags.
    pub manifests: Arc<dyn ManifestSource>,
    /// Immutable repositories from the configuration: exact GUNs, or
    /// prefixes ending in `/`. The store holds more.
    pub immutable: Vec<String>,
    /// When set, delegation keys must be certificates from these authorities.
    pub delegation_anchors: Option<TrustAnchors>,
    /// A publish whose client-signed roles expire within this is accepted
    /// with a warning in the log: the notary client shows none, and the
    /// repository stops working for every puller when they run out.
    /// Zero: no warning.
    pub expiry_warning: Duration,
}

/// The default of [`Policy::expiry_warning`].
pub const DEFAULT_EXPIRY_WARNING: Duration = Duration::days(30);

impl Default for Policy {
    fn default() -> Self {
        Self {
            manifests: Arc::new(NoRegistry),
            immutable: Vec::new(),
            delegation_anchors: None,
            expiry_warning: DEFAULT_EXPIRY_WARNING,
        }
    }
}

/// Registry answers gathered before a publish takes its lock, by digest,
/// and how many more lookups the publish may make under the lock (when the
/// repository changed meanwhile) within `limits.registry_lookups_per_publish`.
#[derive(Default)]
struct Prefetched {
    answers: std::collections::HashMap<String, Result<Lookup, LookupError>>,
    spare: std::sync::atomic::AtomicUsize,
}

/// Registry lookups one publish has in flight at once.
const LOOKUPS_AT_ONCE: usize = 4;

/// How many stripes the per-GUN publish locks are spread over.
const LOCK_STRIPES: usize = 64;

/// Default bound on waiting for a repository's lock or a validation slot.
pub const DEFAULT_BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Default number of validations run at once: one per core.
pub fn default_validation_slots() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

pub struct Repo<S: Store> {
    store: Arc<S>,
    /// Local or remote: repository logic sees only the boundary.
    keys: Arc<dyn KeySigner>,
    clock: Clock,
    /// Serialises writers of one GUN in this process; the store's version
    /// checks guard against other processes.
    locks: StripedLocks,
    /// Serialises cache fills of one current file: 32 readers that miss at
    /// once (just after a publish) would otherwise each read and hold a
    /// copy of a file that may be megabytes.
    fills: StripedLocks,
    cache: cache::Cache,
    policy: Policy,
    limits: Limits,
    /// Signature verification is CPU-bound: it runs on blocking threads,
    /// this many at a time.
    validation_slots: Arc<Semaphore>,
    /// The longest a request waits for a lock or a validation slot.
    busy_wait: std::time::Duration,
    /// The last expiry report and when it was counted (see
    /// [`Repo::expiry_report`]).
    expiry_report: std::sync::Mutex<Option<(OffsetDateTime, ExpiryReport)>>,
}

/// The windows the expiry report counts repositories in: label, length.
pub const EXPIRY_WINDOWS: [(&str, Duration); 2] =
    [("30d", Duration::days(30)), ("90d", Duration::days(90))];

/// How long a counted expiry report is reused. Scrapes come every few
/// seconds from each scraper; this process's own writes reset it at once,
/// so only other replicas' writes wait for it.
pub const EXPIRY_REPORT_TTL: Duration = Duration::seconds(30);

/// Repositories by the soonest expiry of their client-signed roles (root,
/// targets, delegations, a client-signed snapshot): what the metrics show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryReport {
    /// Repositories with a client-signed role already expired.
    pub expired: u64,
    /// Per [`EXPIRY_WINDOWS`] label: repositories not expired whose soonest
    /// client-signed expiry falls within the window.
    pub expiring: Vec<(&'static str, u64)>,
    /// The soonest client-signed expiry of any repository.
    pub soonest: Option<OffsetDateTime>,
}

/// Checks a GUN for the routes (PROTOCOL.md §1.1 and the product's name
/// rules in `policy::names`).
pub fn check_gun(gun: &str) -> Result<(), Error> {
    names::check_gun(gun).map_err(|e| Error::InvalidGun {
        gun: gun.chars().take(80).collect(),
        reason: e,
    })
}

impl<S: Store> Repo<S> {
    /// Whether the signer can serve (for the health endpoint).
    pub async fn signer_health(&self) -> Result<(), crate::signer::Error> {
        self.keys.check_health().await
    }

    pub fn new(store: Arc<S>, keys: impl KeySigner, clock: Clock) -> Self {
        Self::with_signer(store, Arc::new(keys), clock)
    }

    /// As [`Repo::new`], with a signer chosen at run time.
    pub fn with_signer(store: Arc<S>, keys: Arc<dyn KeySigner>, clock: Clock) -> Self {
        Self {
            store,
            keys,
            clock,
            locks: StripedLocks::new(LOCK_STRIPES),
            fills: StripedLocks::new(LOCK_STRIPES),
            cache: cache::Cache::default(),
            policy: Policy::default(),
            limits: Limits::default(),
            validation_slots: Arc::new(Semaphore::new(default_validation_slots())),
            busy_wait: DEFAULT_BUSY_WAIT,
            expiry_report: std::sync::Mutex::new(None),
        }
    }

    /// The expiry report, counted in the store (indexed queries) at most
    /// once per [`EXPIRY_REPORT_TTL`] unless this process wrote meanwhile.
    pub async fn expiry_report(&self) -> Result<ExpiryReport, Error> {
        // Aged by the repository's clock, so a test that moves the clock
        // sees a fresh count.
        let now = self.now();
        if let Ok(cached) = self.expiry_report.lock()
            && let Some((at, report)) = cached.as_ref()
            && (now - *at).abs() < EXPIRY_REPORT_TTL
        {
            return Ok(report.clone());
        }
        let mut cutoffs = vec![now];
        cutoffs.extend(EXPIRY_WINDOWS.iter().map(|(_, window)| now + *window));
        let counts = self.store.expiry_counts(&cutoffs).await?;
        let expired = counts.before.first().copied().unwrap_or_default();
        let report = ExpiryReport {
            expired,
            expiring: EXPIRY_WINDOWS
                .iter()
                .zip(counts.before.iter().skip(1))
                .map(|((label, _), before)| (*label, before.saturating_sub(expired)))
                .collect(),
            soonest: counts.soonest,
        };
        if let Ok(mut cached) = self.expiry_report.lock() {
            *cached = Some((now, report.clone()));
        }
        Ok(report)
    }

    /// Forgets the counted expiry report: this process just changed what
    /// it counts.
    fn expiry_changed(&self) {
        if let Ok(mut cached) = self.expiry_report.lock() {
            *cached = None;
        }
    }

    /// Caps on what one publish may cost.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// At most `slots` validations at once; requests wait at most `wait`
    /// for a slot or a repository's lock before being told to retry.
    pub fn with_concurrency(mut self, slots: usize, wait: std::time::Duration) -> Self {
        self.validation_slots = Arc::new(Semaphore::new(slots.max(1)));
        self.busy_wait = wait;
        self
    }

    /// Applies `policy` to every later update.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }

    /// The GUN's writer lock, waiting at most `busy_wait`.
    async fn lock(&self, gun: &str) -> Result<MutexGuard<'_, ()>, Error> {
        self.locks
            .lock(&[gun], self.busy_wait)
            .await
            .map_err(|_| Error::Busy {
                what: Busy::RepositoryLock,
                waited_seconds: self.busy_wait.as_secs(),
            })
    }

    /// Runs [`validate_update`] on a blocking thread, in one of the
    /// validation slots (waiting at most `busy_wait` for one).
    async fn validate(
        &self,
        gun: &str,
        state: StoredState,
        uploads: Vec<Upload>,
    ) -> Result<(StoredState, ValidatedUpdate), Error> {
        let busy = || Error::Busy {
            what: Busy::Validation,
            waited_seconds: self.busy_wait.as_secs(),
        };
        let slot = tokio::time::timeout(
            self.busy_wait,
            self.validation_slots.clone().acquire_owned(),
        )
        .await
        .map_err(|_| busy())?
        .map_err(|_| busy())?;
        let gun = gun.to_string();
        let now = self.now();
        let (state, result) = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let result = validate_update(&gun, &state, uploads, now);
            (state, result)
        })
        .await
        .map_err(|_| Error::ValidationAborted)?;
        Ok((state, result?))
    }

    /// Validates and stores an update made of `(role, bytes)` parts
    /// (PROTOCOL.md §1.3, §3). All or nothing.
    ///
    /// Order matters for cost: caps first (on the parsed envelopes), then
    /// the full validation — signatures included — against the state read
    /// without the lock, and only then registry lookups, still without the
    /// lock (a slow registry stalls no other publish). Under the lock the
    /// state is read again; if it changed meanwhile the update is validated
    /// again against it. Files identical to the stored ones are dropped,
    /// and an upload made only of them (or none) writes nothing.
    #[tracing::instrument(skip_all, fields(gun = %gun))]
    /// `subject` (the token's `sub`, or [`ANONYMOUS`]) is recorded in the
    /// audit trail with the stored files, in the same transaction.
    pub async fn publish(
        &self,
        gun: &str,
        parts: Vec<(String, Vec<u8>)>,
        subject: &str,
    ) -> Result<(), Error> {
        self.limits.check_parts(parts.len())?;
        let uploads = parse_parts(parts)?;
        self.limits.check_uploads(&uploads)?;
        self.refuse_retired_keys(gun, &uploads).await?;

        let state = self.load_state(gun, &uploads).await?;
        let changed = drop_unchanged(&state, uploads.clone());
        // Nothing new for an existing repository (an empty upload included,
        // which the notary client sends when nothing is staged): the stored
        // files stay, and reads re-sign the timestamp when it is due.
        if changed.is_empty() && state.root.is_some() {
            tracing::info!("the upload changes nothing; nothing to write");
            return Ok(());
        }
        let (seen, validated) = self.validate(gun, state, changed).await?;
        let prefetched = self.prefetch_manifests(gun, &validated, &seen).await?;

        let _writer = self.lock(gun).await?;
        // The parsed uploads and state (a 10,000-target file is over 20 MiB
        // parsed) are dropped when this returns, before the write, so their
        // peak and the store's do not add up.
        let Some((files, roles)) = self
            .files_to_store(gun, uploads, seen, validated, &prefetched)
            .await?
        else {
            return Ok(());
        };
        let expiring_soon = self.expiring_soon(&files);
        let used = self.keys.unrecorded_uses();
        let stored = self
            .store
            .publish_as(gun, files, Some(subject), &used)
            .await;
        self.cache.invalidate(gun, false);
        self.expiry_changed();
        stored.map_err(conflict_or_store)?;
        self.keys.uses_recorded(&used);
        tracing::info!(roles, subject, "published");
        for (role, expires) in expiring_soon {
            tracing::warn!(
                gun,
                role,
                expires = %format_time(expires),
                subject,
                "accepted a publish whose {role} expires within the warning margin \
                 (repositories.expiry_warning_days); re-sign it before then or every pull fails"
            );
        }
        Ok(())
    }

    /// The client-signed files of a publish that expire within the
    /// policy's warning margin, with their expiry.
    fn expiring_soon(&self, files: &[NewFile]) -> Vec<(String, OffsetDateTime)> {
        let margin = self.policy.expiry_warning;
        if margin <= Duration::ZERO {
            return Vec::new();
        }
        let now = self.now();
        files
            .iter()
            .filter(|file| file.client_signed)
            .filter_map(|file| {
                let expires = expires_of(&file.data)?;
                (expires - now < margin).then(|| (file.role.clone(), expires))
            })
            .collect()
    }

    /// Under the writer lock: validates again if the state changed since
    /// `seen`, checks policy and signs, and returns the files to store with
    /// the number of targets-like roles (`None`: nothing to write).
    async fn files_to_store(
        &self,
        gun: &str,
        uploads: Vec<Upload>,
        seen: StoredState,
        validated: ValidatedUpdate,
        prefetched: &Prefetched,
    ) -> Result<Option<(Vec<NewFile>, usize)>, Error> {
        let state = self.load_state(gun, &uploads).await?;
        let (state, update) = if same_state(&seen, &state) {
            (state, validated)
        } else {
            let changed = drop_unchanged(&state, uploads);
            if changed.is_empty() && state.root.is_some() {
                return Ok(None);
            }
            self.validate(gun, state, changed).await?
        };
        let now = self.now();
        self.enforce_policy(gun, &update, &state, now, prefetched)
            .await?;

        let mut files: Vec<NewFile> = Vec::new();
        if update.new_root {
            files.push(NewFile::new(
                "root",
                update.root.version,
                update.root_file.raw().to_vec(),
            ));
        }
        for (role, file, body) in &update.targets {
            files.push(NewFile::new(
                role.as_str(),
                body.version,
                file.raw().to_vec(),
            ));
        }
        let (snapshot_bytes, snapshot_version) = match &update.snapshot {
            Some(file) => {
                let version = file.common().map(|c| c.version).unwrap_or_default();
                (file.raw().to_vec(), version)
            }
            None => self.generate_snapshot(gun, &update, &state, now).await?,
        };
        let snapshot_file = NewFile::new("snapshot", snapshot_version, snapshot_bytes.clone());
        files.push(if update.snapshot.is_some() {
            snapshot_file.signed_by_client()
        } else {
            snapshot_file
        });
        let timestamp_version = state.versions.get("timestamp").copied().unwrap_or(0) + 1;
        let timestamp = self
            .generate_timestamp(gun, &update.root, &snapshot_bytes, timestamp_version, now)
            .await?;
        files.push(NewFile::new("timestamp", timestamp_version, timestamp));
        Ok(Some((files, update.targets.len())))
    }

    /// A root that lists, for timestamp or snapshot, a server key retired
    /// when this GUN was deleted is a replay of the deleted repository's
    /// trust data: refused, so DELETE cannot be used to roll back.
    async fn refuse_retired_keys(&self, gun: &str, uploads: &[Upload]) -> Result<(), Error> {
        let Some(root) = uploads
            .iter()
            .find(|u| u.role == RoleName::Root)
            .and_then(|u| u.file.body::<Root>("root").ok())
        else {
            return Ok(());
        };
        for role in ["timestamp", "snapshot"] {
            let Some(listed) = root.roles.get(role) else {
                continue;
            };
            for key_id in &listed.keyids {
                if let Some(retired_at) = self.keys.retired(gun, key_id).await? {
                    return Err(Error::RetiredKey {
                        role,
                        key_id: key_id.clone(),
                        retired_at,
                    });
                }
            }
        }
        Ok(())
    }

    /// Whether `gun` is immutable, by configuration or by a stored mark.
    pub async fn is_immutable(&self, gun: &str) -> Result<bool, Error> {
        Ok(self.immutable_by_configuration(gun) || self.store.is_immutable(gun).await?)
    }

    /// Whether `repositories.immutable` covers `gun` (no stored mark can
    /// undo that).
    pub fn immutable_by_configuration(&self, gun: &str) -> bool {
        crate::policy::listed(&self.policy.immutable, gun)
    }

    /// The server rules, over what this update adds or changes in each
    /// uploaded targets file compared with its stored version.
    async fn enforce_policy(
        &self,
        gun: &str,
        update: &ValidatedUpdate,
        state: &StoredState,
        now: OffsetDateTime,
        prefetched: &Prefetched,
    ) -> Result<(), Error> {
        let immutable = self.is_immutable(gun).await?;
        let image_repository = self.policy.manifests.covers(gun);
        if immutable {
            self.check_immutable_repository(gun, update, state).await?;
        }
        for (role, _, new) in &update.targets {
            let old = state
                .targets
                .get(role)
                .and_then(|stored| stored.body::<Targets>(role.as_str()).ok());
            if let Some(anchors) = &self.policy.delegation_anchors {
                for (keyid, key) in &new.delegations.keys {
                    let known = old
                        .as_ref()
                        .is_some_and(|o| o.delegations.keys.contains_key(keyid));
                    if known {
                        continue;
                    }
                    let delegated = new
                        .delegations
                        .roles
                        .iter()
                        .find(|r| r.keyids.contains(keyid))
                        .map_or("a delegation", |r| r.name.as_str());
                    anchors.check(delegated, key, now)?;
                }
            }
            for (tag, meta) in &new.targets {
                let unchanged = old
                    .as_ref()
                    .is_some_and(|o| o.targets.get(tag) == Some(meta));
                if unchanged {
                    continue;
                }
                if image_repository {
                    names::check_tag(tag).map_err(Violation::from)?;
                }
                self.check_manifest(gun, tag, meta, image_repository, prefetched)
                    .await?;
            }
        }
        Ok(())
    }

    /// In an immutable repository a signed tag keeps its digest and stays,
    /// whichever role signs it: compared per role (no change, no removal),
    /// across roles (a tag added to another role must carry the same
    /// digest), and for delegations dropped together with their tags.
    async fn check_immutable_repository(
        &self,
        gun: &str,
        update: &ValidatedUpdate,
        state: &StoredState,
    ) -> Result<(), Error> {
        let mut stored: BTreeMap<RoleName, Targets> = BTreeMap::new();
        for role in state.versions.keys() {
            let Ok(role) = RoleName::parse(role) else {
                continue;
            };
            if !role.is_targets_like() {
                continue;
            }
            let file = match state.targets.get(&role) {
                Some(file) => Some(file.clone()),
                None => self.stored_file(gun, role.as_str(), state).await?,
            };
            if let Some(body) = file.and_then(|f| f.body::<Targets>(role.as_str()).ok()) {
                stored.insert(role, body);
            }
        }
        for (role, _, new) in &update.targets {
            if let Some(old) = stored.get(role) {
                check_immutable(gun, old, new)?;
                for dropped in &old.delegations.roles {
                    let kept = new.delegations.roles.iter().any(|r| r.name == dropped.name);
                    let signed = RoleName::parse(&dropped.name)
                        .ok()
                        .and_then(|name| stored.get(&name))
                        .and_then(|body| body.targets.keys().next());
                    if let (false, Some(tag)) = (kept, signed) {
                        return Err(Violation::ImmutableTagRemoved {
                            gun: gun.to_string(),
                            tag: tag.clone(),
                        }
                        .into());
                    }
                }
            }
            for (tag, meta) in &new.targets {
                let elsewhere = stored
                    .iter()
                    .filter(|(other, _)| *other != role)
                    .filter_map(|(_, body)| body.targets.get(tag))
                    .find(|signed| signed.hashes != meta.hashes || signed.length != meta.length);
                if elsewhere.is_some() {
                    return Err(Violation::ImmutableTagChanged {
                        gun: gun.to_string(),
                        tag: tag.clone(),
                    }
                    .into());
                }
            }
        }
        Ok(())
    }

    /// Refuses a tag that points to an OCI index or a manifest list, going
    /// by the target's declared media type, else by the registry's answer.
    async fn check_manifest(
        &self,
        gun: &str,
        tag: &str,
        meta: &FileMeta,
        ask_registry: bool,
        prefetched: &Prefetched,
    ) -> Result<(), Error> {
        let digest = format!("sha256:{}", hex::encode(meta.sha256().unwrap_or_default()));
        let index = |kind| {
            Error::from(Violation::Index {
                gun: gun.to_string(),
                tag: tag.to_string(),
                digest: digest.clone(),
                kind,
            })
        };
        // A declared index is refused at once; a declared image manifest is
        // not taken on trust where the registry can be asked.
        let declared = custom_kind(meta.custom_value().as_ref());
        if let Some(ManifestKind::Index(kind)) = declared {
            return Err(index(kind));
        }
        if !ask_registry {
            return Ok(());
        }
        if meta.sha256().is_none_or(|hash| hash.len() != 32) {
            return Err(Violation::UnknownDigest {
                tag: tag.to_string(),
                digest: "no sha256 hash".into(),
                registry: registry_host(gun).to_string(),
            }
            .into());
        }
        let looked_up = match prefetched.answers.get(&digest) {
            Some(result) => result.clone(),
            None => {
                let spare = prefetched.spare.fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |n| n.checked_sub(1),
                );
                if spare.is_err() {
                    let limit = self.limits.registry_lookups_per_publish;
                    return Err(Error::LimitExceeded {
                        cap: limits::Cap::RegistryLookupsPerPublish,
                        role: None,
                        count: limit.saturating_add(1),
                        limit,
                    });
                }
                self.policy
                    .manifests
                    .lookup(gun, &digest, meta.length)
                    .await
            }
        };
        match looked_up {
            Ok(Lookup::Found(ManifestKind::Image)) => Ok(()),
            Ok(Lookup::Found(ManifestKind::Index(kind))) => Err(index(kind)),
            Ok(Lookup::Unknown) if self.policy.manifests.requires_image_manifests(gun) => {
                Err(Violation::UnknownDigest {
                    tag: tag.to_string(),
                    digest,
                    registry: registry_host(gun).to_string(),
                }
                .into())
            }
            Ok(Lookup::Unknown) => Ok(()),
            // The source logged the detail; users get the kind of failure
            // and the registry as they name it, not its configured URL.
            Err(error) => Err(Violation::ManifestUnreachable {
                tag: tag.to_string(),
                digest,
                registry: registry_host(gun).to_string(),
                failure: error.failure,
            }
            .into()),
        }
    }

    /// Looks up, outside the GUN's lock, the digests of the tags a
    /// validated update adds or changes compared with `state` (read without
    /// the lock: a tag that changes meanwhile is looked up again under it).
    /// The number of lookups is capped, and checked before the first one.
    async fn prefetch_manifests(
        &self,
        gun: &str,
        update: &ValidatedUpdate,
        state: &StoredState,
    ) -> Result<Prefetched, Error> {
        let mut found = Prefetched::default();
        if !self.policy.manifests.covers(gun) {
            return Ok(found);
        }
        let mut wanted: Vec<(String, i64, &str)> = Vec::new();
        for (role, _, new) in &update.targets {
            let old = state
                .targets
                .get(role)
                .and_then(|f| f.body::<Targets>(role.as_str()).ok());
            for (tag, meta) in new.targets.iter().filter(|(tag, meta)| {
                !old.as_ref()
                    .is_some_and(|o| o.targets.get(*tag) == Some(*meta))
            }) {
                // A declared index is refused without asking.
                if matches!(
                    custom_kind(meta.custom_value().as_ref()),
                    Some(ManifestKind::Index(_))
                ) {
                    continue;
                }
                let Some(hash) = meta.sha256().filter(|h| h.len() == 32) else {
                    continue;
                };
                let digest = format!("sha256:{}", hex::encode(hash));
                if !wanted.iter().any(|(d, _, _)| *d == digest) {
                    wanted.push((digest, meta.length, tag));
                }
            }
        }
        self.limits.check_lookups(wanted.len())?;
        found.spare = self
            .limits
            .registry_lookups_per_publish
            .saturating_sub(wanted.len())
            .into();
        type Answer<'t> = (String, &'t str, Result<Lookup, LookupError>);
        // Boxed futures: an `async` closure here trips the compiler's
        // `Send` inference for the router's handler.
        let lookups: Vec<std::pin::Pin<Box<dyn Future<Output = Answer<'_>> + Send + '_>>> = wanted
            .into_iter()
            .map(|(digest, length, tag)| {
                let lookup: std::pin::Pin<Box<dyn Future<Output = Answer<'_>> + Send + '_>> =
                    Box::pin(async move {
                        let result = self.policy.manifests.lookup(gun, &digest, length).await;
                        (digest, tag, result)
                    });
                lookup
            })
            .collect();
        let mut answers = futures_util::stream::iter(lookups).buffer_unordered(LOOKUPS_AT_ONCE);
        while let Some((digest, tag, result)) = answers.next().await {
            // A tag the registry cannot be asked about refuses the whole
            // publish: stop here (dropping the lookups in flight) rather
            // than wait on the others.
            if let Err(error) = result {
                return Err(Violation::ManifestUnreachable {
                    tag: tag.to_string(),
                    digest,
                    registry: registry_host(gun).to_string(),
                    failure: error.failure,
                }
                .into());
            }
            found.answers.insert(digest, result);
        }
        Ok(found)
    }

    /// Loads what validation needs: root, snapshot, versions, and the stored
    /// `targets` plus every ancestor of an uploaded delegation.
    async fn load_state(&self, gun: &str, uploads: &[Upload]) -> Result<StoredState, Error> {
        let versions: BTreeMap<String, i64> =
            self.store.latest_versions(gun).await?.into_iter().collect();
        let mut state = StoredState {
            versions,
            ..StoredState::default()
        };
        state.root = self.stored_file(gun, "root", &state).await?;
        state.snapshot = self.stored_file(gun, "snapshot", &state).await?;
        let mut wanted = vec![RoleName::Targets];
        // A client snapshot is checked against every stored targets-like
        // file, so all of them are needed then.
        if uploads.iter().any(|u| u.role == RoleName::Snapshot) {
            wanted.extend(
                state
                    .versions
                    .keys()
                    .filter_map(|role| RoleName::parse(role).ok())
                    .filter(|role| role.is_targets_like() && *role != RoleName::Targets),
            );
        }
        for upload in uploads {
            // The stored version of an uploaded role is what the policy
            // diffs against.
            if upload.role.is_targets_like() {
                wanted.push(upload.role.clone());
            }
            let mut parent = upload.role.parent();
            while let Some(role) = parent {
                parent = role.parent();
                wanted.push(role);
            }
        }
        for role in wanted {
            if let Some(file) = self.stored_file(gun, role.as_str(), &state).await? {
                state.targets.insert(role, file);
            }
        }
        Ok(state)
    }

    async fn stored_file(
        &self,
        gun: &str,
        role: &str,
        state: &StoredState,
    ) -> Result<Option<SignedFile>, Error> {
        if !state.versions.contains_key(role) {
            return Ok(None);
        }
        let stored = match self.store.get_current(gun, role).await {
            Ok(stored) => stored,
            Err(store::Error::NotFound) => return Ok(None),
            Err(other) => return Err(other.into()),
        };
        SignedFile::parse(&stored.data).map(Some).map_err(|error| {
            Error::rejected(
                Rejection::Validation,
                Refusal::StoredUnreadable {
                    role: role.to_string(),
                    error,
                },
            )
        })
    }

    /// Key IDs root lists for `role` that this server holds.
    async fn signing_keys(&self, gun: &str, root: &Root, role: &str) -> Result<Vec<String>, Error> {
        let listed = root
            .roles
            .get(role)
            .map(|r| r.keyids.clone())
            .unwrap_or_default();
        Ok(self.keys.held_among(gun, role, &listed).await?)
    }

    async fn sign(&self, body: &Value, key_ids: &[String]) -> Result<Vec<u8>, Error> {
        let message = canonical::to_canonical(body).map_err(Error::Generate)?;
        let mut signatures = Vec::with_capacity(key_ids.len());
        for key_id in key_ids {
            signatures.push(self.keys.sign(key_id, &message).await?);
        }
        Ok(crate::tuf::envelope::write_envelope(&message, &signatures))
    }

    /// §3.4: the previous snapshot with root and every file loaded for this
    /// update re-listed, version + 1, signed with the held snapshot key.
    async fn generate_snapshot(
        &self,
        gun: &str,
        update: &ValidatedUpdate,
        state: &StoredState,
        now: OffsetDateTime,
    ) -> Result<(Vec<u8>, i64), Error> {
        let key_ids = self.signing_keys(gun, &update.root, "snapshot").await?;
        let threshold = update.root.roles.get("snapshot").map_or(1, |r| r.threshold);
        if key_ids.is_empty() || i64::try_from(key_ids.len()).unwrap_or(0) < threshold {
            return Err(Error::rejected(
                Rejection::BadHierarchy {
                    missing: "snapshot",
                },
                Refusal::SnapshotKeyNotHeld,
            ));
        }
        let mut body = match &state.snapshot {
            // A snapshot is small (one entry per role): a value tree is fine.
            Some(previous) => previous.signed_value().map_err(Error::Generate)?,
            None => json!({"_type": "Snapshot", "meta": {}}),
        };
        let mut entries: Vec<(String, &[u8])> = vec![("root".into(), update.root_file.raw())];
        entries.extend(
            update
                .loaded
                .iter()
                .map(|(role, file)| (role.to_string(), file.raw())),
        );
        let has_targets = body.pointer("/meta/targets").is_some()
            || update.loaded.contains_key(&RoleName::Targets);
        if !has_targets {
            match state.targets.get(&RoleName::Targets) {
                Some(file) => entries.push(("targets".into(), file.raw())),
                None => {
                    return Err(Error::rejected(
                        Rejection::BadHierarchy { missing: "targets" },
                        Refusal::TargetsMissing,
                    ));
                }
            }
        }
        let meta = body
            .as_object_mut()
            .and_then(|object| {
                let meta = object.entry("meta").or_insert_with(|| json!({}));
                if !meta.is_object() {
                    *meta = json!({});
                }
                meta.as_object_mut()
            })
            .ok_or_else(|| {
                Error::rejected(Rejection::BadSnapshot, Refusal::StoredSnapshotNotObject)
            })?;
        for (role, bytes) in entries {
            meta.insert(role, file_meta(bytes));
        }
        let version = state.versions.get("snapshot").copied().unwrap_or(0) + 1;
        body["version"] = json!(version);
        body["expires"] = json!(format_time(now + SNAPSHOT_LIFETIME));
        body["_type"] = json!("Snapshot");
        Ok((self.sign(&body, &key_ids).await?, version))
    }

    /// §3.5: a timestamp over `snapshot`, signed with the held timestamp key.
    async fn generate_timestamp(
        &self,
        gun: &str,
        root: &Root,
        snapshot: &[u8],
        version: i64,
        now: OffsetDateTime,
    ) -> Result<Vec<u8>, Error> {
        let key_ids = self.signing_keys(gun, root, "timestamp").await?;
        if key_ids.is_empty() {
            let listed = root
                .roles
                .get("timestamp")
                .map(|r| r.keyids.clone())
                .unwrap_or_default();
            return Err(Error::rejected(
                Rejection::BadRoot,
                Refusal::TimestampKeyNotHeld {
                    root_version: root.version,
                    listed,
                },
            ));
        }
        let body = json!({
            "_type": "Timestamp",
            "expires": format_time(now + TIMESTAMP_LIFETIME),
            "meta": {"snapshot": file_meta(snapshot)},
            "version": version,
        });
        self.sign(&body, &key_ids).await
    }

    /// The current file of `role` (PROTOCOL.md §1.2). Timestamp and a
    /// server-managed snapshot are re-signed first when close to expiry.
    #[tracing::instrument(skip_all, fields(gun = %gun, role = %role))]
    pub async fn current(&self, gun: &str, role: &RoleName) -> Result<Served, Error> {
        match role {
            RoleName::Timestamp => Ok(self.fresh_timestamp(gun).await?.0),
            RoleName::Snapshot => Ok(self.fresh_timestamp(gun).await?.1),
            other if self.store.shared() => self.located(gun, other.as_str(), Which::Current).await,
            other => {
                let key = cache::Key::Current(other.to_string());
                if let Some(served) = self.cache.get(gun, &key) {
                    return Ok(served);
                }
                let _fill = self.fills.for_key(&[gun, other.as_str()]).lock().await;
                if let Some(served) = self.cache.get(gun, &key) {
                    return Ok(served);
                }
                let epoch = self.cache.epoch();
                let served = self.stored(
                    self.store.get_current(gun, other.as_str()).await,
                    other.as_str(),
                )?;
                self.cache.put(gun, key, &served, epoch);
                Ok(served)
            }
        }
    }

    /// On a shared database: the file the database names now (one query
    /// without the bytes), its bytes from the cache by checksum when there.
    async fn located(&self, gun: &str, role: &str, which: Which<'_>) -> Result<Served, Error> {
        let located = match self.store.locate(gun, role, which).await {
            Ok(located) => located,
            Err(error) => return self.stored(Err(error), role),
        };
        let key = cache::Key::Checksum(role.to_string(), located.sha256.clone());
        if let Some(served) = self.cache.get(gun, &key) {
            return Ok(served);
        }
        let sha256 = located.sha256;
        let epoch = self.cache.epoch();
        // By checksum, not version: whatever happened since the lookup, the
        // bytes fetched are the ones the key names.
        let result = self.store.get_checksum(gun, role, &sha256).await;
        let served = self.stored(result, role)?;
        self.cache.put(gun, key, &served, epoch);
        Ok(served)
    }

    fn stored(
        &self,
        result: Result<StoredFile, store::Error>,
        what: &str,
    ) -> Result<Served, Error> {
        match result {
            Ok(file) => Ok(file.into()),
            Err(store::Error::NotFound) => Err(Error::NotFound {
                what: what.to_string(),
            }),
            Err(other) => Err(other.into()),
        }
    }

    pub async fn by_checksum(
        &self,
        gun: &str,
        role: &RoleName,
        sha256_hex: &str,
    ) -> Result<Served, Error> {
        if self.store.shared() {
            // Asked even on a hit: the GUN may have been deleted meanwhile.
            return self
                .located(gun, role.as_str(), Which::Checksum(sha256_hex))
                .await;
        }
        let key = cache::Key::Checksum(role.to_string(), sha256_hex.to_ascii_lowercase());
        if let Some(served) = self.cache.get(gun, &key) {
            return Ok(served);
        }
        let epoch = self.cache.epoch();
        let result = self
            .store
            .get_checksum(gun, role.as_str(), sha256_hex)
            .await;
        let served = self.stored(result, role.as_str())?;
        self.cache.put(gun, key, &served, epoch);
        Ok(served)
    }

    pub async fn by_version(
        &self,
        gun: &str,
        role: &RoleName,
        version: i64,
    ) -> Result<Served, Error> {
        if self.store.shared() {
            return self
                .located(gun, role.as_str(), Which::Version(version))
                .await;
        }
        let key = cache::Key::Version(role.to_string(), version);
        if let Some(served) = self.cache.get(gun, &key) {
            return Ok(served);
        }
        let epoch = self.cache.epoch();
        let result = self.store.get_version(gun, role.as_str(), version).await;
        let served = self.stored(result, role.as_str())?;
        self.cache.put(gun, key, &served, epoch);
        Ok(served)
    }

    /// The current timestamp and the snapshot it names, re-signing either
    /// when needed. On a signing failure the last good files are served.
    async fn fresh_timestamp(&self, gun: &str) -> Result<(Served, Served), Error> {
        let now = self.now();
        if let Some(fresh) = self.cache.fresh(gun) {
            let backing_off = fresh.retry_after.is_some_and(|until| now < until);
            let usable = backing_off
                || fresh.timestamp_expires - now >= TIMESTAMP_REFRESH
                    && fresh.snapshot_expires - now >= SNAPSHOT_REFRESH;
            if usable && (!self.store.shared() || self.is_current_timestamp(gun, &fresh).await?) {
                return Ok((fresh.timestamp, fresh.snapshot));
            }
        }
        let epoch = self.cache.epoch();
        let (timestamp, snapshot) = self.timestamp_and_snapshot(gun).await?;
        if !self.needs_refresh(gun, &timestamp, &snapshot, now).await? {
            return Ok(self.remember_fresh(gun, timestamp, snapshot, epoch));
        }
        let Ok(_writer) = self.lock(gun).await else {
            // Busy for long: serve what is stored, which stays valid for
            // days yet; a later read re-signs.
            return Ok(self.remember_fresh(gun, timestamp, snapshot, epoch));
        };
        // Someone may have refreshed while we waited.
        let epoch = self.cache.epoch();
        let (timestamp, snapshot) = self.timestamp_and_snapshot(gun).await?;
        if !self.needs_refresh(gun, &timestamp, &snapshot, now).await? {
            return Ok(self.remember_fresh(gun, timestamp, snapshot, epoch));
        }
        match self.refresh(gun, &timestamp, &snapshot, now).await {
            // A conflict: another replica re-signed (or a publish landed)
            // first; serve the winner's files like our own.
            Ok(()) | Err(Error::Conflict { .. }) => {
                let epoch = self.cache.epoch();
                let (timestamp, snapshot) = self.timestamp_and_snapshot(gun).await?;
                Ok(self.remember_fresh(gun, timestamp, snapshot, epoch))
            }
            Err(error) => {
                tracing::warn!(error = %error, "could not re-sign timestamp; serving the last one");
                let served = self.remember_fresh(gun, timestamp, snapshot, epoch);
                // Retry after a pause, not on every read.
                if let Some(mut fresh) = self.cache.fresh(gun) {
                    fresh.retry_after = Some(now + RESIGN_RETRY);
                    self.cache.put_fresh(gun, fresh, self.cache.epoch());
                }
                Ok(served)
            }
        }
    }

    /// Whether `fresh` holds the timestamp the shared database holds now.
    async fn is_current_timestamp(&self, gun: &str, fresh: &cache::Fresh) -> Result<bool, Error> {
        match self.store.locate(gun, "timestamp", Which::Current).await {
            Ok(located) => Ok(located.sha256 == fresh.timestamp_sha256),
            // Deleted: the slow path says so.
            Err(store::Error::NotFound) => Ok(false),
            Err(other) => Err(other.into()),
        }
    }

    fn remember_fresh(
        &self,
        gun: &str,
        timestamp: StoredFile,
        snapshot: StoredFile,
        epoch: u64,
    ) -> (Served, Served) {
        let timestamp_expires = expires_of(&timestamp.data);
        let snapshot_expires = expires_of(&snapshot.data);
        let timestamp_sha256 = timestamp.sha256.clone();
        let (timestamp, snapshot): (Served, Served) = (timestamp.into(), snapshot.into());
        if let (Some(timestamp_expires), Some(snapshot_expires)) =
            (timestamp_expires, snapshot_expires)
        {
            self.cache.put_fresh(
                gun,
                cache::Fresh {
                    timestamp: timestamp.clone(),
                    timestamp_sha256,
                    snapshot: snapshot.clone(),
                    timestamp_expires,
                    snapshot_expires,
                    retry_after: None,
                },
                epoch,
            );
        }
        (timestamp, snapshot)
    }

    async fn timestamp_and_snapshot(&self, gun: &str) -> Result<(StoredFile, StoredFile), Error> {
        let timestamp = match self.store.get_current(gun, "timestamp").await {
            Ok(file) => file,
            Err(store::Error::NotFound) => {
                return Err(Error::NotFound {
                    what: "timestamp".into(),
                });
            }
            Err(other) => return Err(other.into()),
        };
        // Serve the snapshot the timestamp names, not merely the newest row.
        let named = SignedFile::parse(&timestamp.data)
            .ok()
            .and_then(|file| file.body::<Timestamp>("timestamp").ok())
            .and_then(|body| {
                body.meta
                    .get("snapshot")
                    .and_then(|m| m.sha256().map(hex::encode))
            });
        let snapshot = match named {
            Some(hash) => self.store.get_checksum(gun, "snapshot", &hash).await,
            None => self.store.get_current(gun, "snapshot").await,
        };
        match snapshot {
            Ok(snapshot) => Ok((timestamp, snapshot)),
            Err(store::Error::NotFound) => Err(Error::NotFound {
                what: "snapshot".into(),
            }),
            Err(other) => Err(other.into()),
        }
    }

    /// A timestamp is re-signed when it nears expiry; a snapshot only when
    /// it nears expiry and the server holds its key (a client-held snapshot
    /// is the client's to renew).
    async fn needs_refresh(
        &self,
        gun: &str,
        timestamp: &StoredFile,
        snapshot: &StoredFile,
        now: OffsetDateTime,
    ) -> Result<bool, Error> {
        if expires_within(&timestamp.data, now, TIMESTAMP_REFRESH) {
            return Ok(true);
        }
        if !expires_within(&snapshot.data, now, SNAPSHOT_REFRESH) {
            return Ok(false);
        }
        // Only if the server can sign the snapshot root names; a key it
        // merely holds (say, fetched but never published) does not count.
        let root = self.current_root(gun).await?;
        Ok(!self.signing_keys(gun, &root, "snapshot").await?.is_empty())
    }

    async fn current_root(&self, gun: &str) -> Result<Root, Error> {
        let root_file = self.store.get_current(gun, "root").await?;
        SignedFile::parse(&root_file.data)
            .and_then(|file| file.body("root"))
            .map_err(|e| Error::rejected(Rejection::BadRoot, Refusal::Tuf(e)))
    }

    /// Re-signs the snapshot (when the server holds its key and it is due)
    /// and always the timestamp.
    async fn refresh(
        &self,
        gun: &str,
        timestamp: &StoredFile,
        snapshot: &StoredFile,
        now: OffsetDateTime,
    ) -> Result<(), Error> {
        let root = self.current_root(gun).await?;
        let mut files = Vec::new();
        let mut snapshot_bytes = snapshot.data.clone();
        let snapshot_file = SignedFile::parse(&snapshot.data)
            .map_err(|e| Error::rejected(Rejection::BadSnapshot, Refusal::Tuf(e)))?;
        if expires_within(&snapshot.data, now, SNAPSHOT_REFRESH) {
            let key_ids = self.signing_keys(gun, &root, "snapshot").await?;
            if !key_ids.is_empty() {
                let latest = self.store.get_current(gun, "snapshot").await?;
                let mut body = snapshot_file
                    .signed_value()
                    .map_err(|e| Error::rejected(Rejection::BadSnapshot, Refusal::Tuf(e)))?;
                let version = latest.version + 1;
                body["version"] = json!(version);
                body["expires"] = json!(format_time(now + SNAPSHOT_LIFETIME));
                snapshot_bytes = self.sign(&body, &key_ids).await?;
                files.push(NewFile::new("snapshot", version, snapshot_bytes.clone()));
            }
        }
        if files.is_empty() && !expires_within(&timestamp.data, now, TIMESTAMP_REFRESH) {
            return Ok(());
        }
        let version = timestamp.version + 1;
        let timestamp = self
            .generate_timestamp(gun, &root, &snapshot_bytes, version, now)
            .await?;
        files.push(NewFile::new("timestamp", version, timestamp));
        let used = self.keys.unrecorded_uses();
        let stored = self.store.publish_as(gun, files, None, &used).await;
        self.cache.invalidate(gun, false);
        stored.map_err(conflict_or_store)?;
        self.keys.uses_recorded(&used);
        tracing::info!("re-signed timestamp");
        Ok(())
    }

    /// `GET <role>.key`: the key root lists for `role` that the server holds,
    /// or a new one (PROTOCOL.md §1.4).
    pub async fn public_key(&self, gun: &str, role: &RoleName) -> Result<PublicKey, Error> {
        let root = match self.store.get_current(gun, "root").await {
            Ok(file) => SignedFile::parse(&file.data)
                .and_then(|f| f.body::<Root>("root"))
                .ok(),
            Err(store::Error::NotFound) => None,
            Err(other) => return Err(other.into()),
        };
        if let Some(root) = root {
            if let Some(key_id) = self.signing_keys(gun, &root, role.as_str()).await?.first() {
                return Ok(self.keys.public_key(key_id).await?);
            }
        }
        Ok(self.keys.create_key(gun, role.as_str()).await?)
    }

    /// `POST <role>.key`: a new key (or the newest never-used one); it takes
    /// effect once a root listing it is published.
    /// Recorded in the audit trail by `subject` (version 0: a rotation
    /// names a role, not a metadata version).
    pub async fn rotate_key(
        &self,
        gun: &str,
        role: &RoleName,
        subject: &str,
    ) -> Result<PublicKey, Error> {
        let key = self.keys.create_key(gun, role.as_str()).await?;
        self.store
            .record_audit(NewAuditEntry {
                gun: gun.to_string(),
                action: AuditAction::RotateKey,
                subject: subject.to_string(),
                roles: vec![RoleVersion {
                    role: role.to_string(),
                    version: 0,
                }],
                key_ids: vec![key.id().to_string()],
            })
            .await?;
        Ok(key)
    }

    /// Deletes all metadata of exactly this GUN and retires its server keys
    /// (a later `init` gets new ones; a replayed old root is refused),
    /// recording `subject` in the audit trail, all in one transaction.
    #[tracing::instrument(skip_all, fields(gun = %gun))]
    pub async fn delete(&self, gun: &str, subject: &str) -> Result<bool, Error> {
        if self.is_immutable(gun).await? {
            return Err(Violation::ImmutableRepository {
                gun: gun.to_string(),
            }
            .into());
        }
        let _writer = self.lock(gun).await?;
        let deleted = self.store.delete(gun, subject).await;
        self.cache.invalidate(gun, true);
        self.expiry_changed();
        self.keys.forget(gun);
        let deleted = deleted?;
        tracing::info!(
            subject,
            retired_keys = deleted.retired_keys.len(),
            "deleted"
        );
        Ok(deleted.any())
    }

    /// The audit trail of `gun`, newest first: at most `limit` records
    /// (default [`DEFAULT_AUDIT_PAGE`], at most [`store::MAX_AUDIT_PAGE`]),
    /// older than the record with ID `before` if given.
    pub async fn audit(
        &self,
        gun: &str,
        limit: Option<i64>,
        before: Option<i64>,
    ) -> Result<Vec<AuditEntry>, Error> {
        check_gun(gun)?;
        let limit = limit.unwrap_or(DEFAULT_AUDIT_PAGE);
        if !(1..=store::MAX_AUDIT_PAGE).contains(&limit) {
            return Err(Error::InvalidParameters {
                problem: ParamProblem::AuditLimit {
                    limit,
                    max: store::MAX_AUDIT_PAGE,
                },
            });
        }
        Ok(self.store.audit(gun, limit, before).await?)
    }

    /// Marks `gun` immutable (`true`) or clears the mark; returns whether
    /// it changed. Marks from the configuration are not affected.
    pub async fn set_immutable(&self, gun: &str, immutable: bool) -> Result<bool, Error> {
        check_gun(gun)?;
        Ok(self.store.set_immutable(gun, immutable).await?)
    }

    /// The GUNs marked immutable in the store, sorted (configured prefixes
    /// are listed in the configuration).
    pub async fn immutable_repositories(&self) -> Result<Vec<String>, Error> {
        Ok(self.store.immutable_repositories().await?)
    }

    /// The changefeed (PROTOCOL.md §1.6), from raw query parameters.
    pub async fn changes(
        &self,
        gun: Option<&str>,
        change_id: Option<&str>,
        records: Option<&str>,
    ) -> Result<Vec<Change>, Error> {
        let records: i64 = records
            .ok_or(Error::InvalidParameters {
                problem: ParamProblem::RecordsMissing,
            })?
            .parse::<i32>()
            .map_err(|e| Error::InvalidParameters {
                problem: ParamProblem::Records(e),
            })?
            .into();
        let records = if records == 0 {
            100
        } else {
            records.clamp(-1000, 1000)
        };
        let change_id = match change_id.unwrap_or("") {
            "" => 0,
            text => text.parse::<i64>().map_err(|_| Error::InvalidParameters {
                problem: ParamProblem::ChangeId {
                    shown: text.chars().take(40).collect(),
                },
            })?,
        };
        Ok(self.store.changes(gun, change_id, records).await?)
    }
}

/// In an immutable repository a signed tag keeps its digest and stays.
fn check_immutable(gun: &str, old: &Targets, new: &Targets) -> Result<(), Violation> {
    for (tag, meta) in &old.targets {
        match new.targets.get(tag) {
            None => {
                return Err(Violation::ImmutableTagRemoved {
                    gun: gun.to_string(),
                    tag: tag.clone(),
                });
            }
            Some(now) if now.hashes != meta.hashes || now.length != meta.length => {
                return Err(Violation::ImmutableTagChanged {
                    gun: gun.to_string(),
                    tag: tag.clone(),
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The uploads that differ from what is stored: a file identical to the
/// current one of its role is already there.
fn drop_unchanged(state: &StoredState, uploads: Vec<Upload>) -> Vec<Upload> {
    uploads
        .into_iter()
        .filter(|upload| {
            let stored = match &upload.role {
                RoleName::Root => state.root.as_ref(),
                RoleName::Snapshot => state.snapshot.as_ref(),
                // The server makes timestamps; an uploaded one is ignored.
                RoleName::Timestamp => None,
                role => state.targets.get(role),
            };
            stored.is_none_or(|file| file.raw() != upload.file.raw())
        })
        .collect()
}

/// Whether two reads of a GUN's state saw the same files.
fn same_state(a: &StoredState, b: &StoredState) -> bool {
    let raw = |f: &Option<SignedFile>| f.as_ref().map(|f| f.raw().to_vec());
    a.versions == b.versions
        && raw(&a.root) == raw(&b.root)
        && raw(&a.snapshot) == raw(&b.snapshot)
        && a.targets.len() == b.targets.len()
        && a.targets
            .iter()
            .zip(&b.targets)
            .all(|((ra, fa), (rb, fb))| ra == rb && fa.raw() == fb.raw())
}

/// The registry part of an image repository's GUN, as users write it.
fn registry_host(gun: &str) -> &str {
    gun.split('/').next().unwrap_or(gun)
}

/// Whether the metadata in `data` expires within `margin` of `now`
/// (unreadable metadata counts as due).
fn expires_within(data: &[u8], now: OffsetDateTime, margin: Duration) -> bool {
    expires_of(data).is_none_or(|at| at - now < margin)
}

fn expires_of(data: &[u8]) -> Option<OffsetDateTime> {
    SignedFile::parse(data)
        .and_then(|file| file.common())
        .ok()
        .map(|common| common.expires.at)
}

fn file_meta(bytes: &[u8]) -> Value {
    serde_json::to_value(FileMeta::for_bytes(bytes)).unwrap_or(Value::Null)
}

fn conflict_or_store(error: store::Error) -> Error {
    match error {
        store::Error::Conflict { role, version, .. } => Error::Conflict { role, version },
        other => Error::Store(other),
    }
}

/// Turns multipart parts into uploads: the role is the part's file name
/// with an optional `.json`; for duplicates the last part wins. An empty
/// upload is valid: the notary client sends one when nothing is staged.
pub fn parse_parts(parts: Vec<(String, Vec<u8>)>) -> Result<Vec<Upload>, Error> {
    let mut by_role: BTreeMap<RoleName, SignedFile> = BTreeMap::new();
    for (filename, bytes) in parts {
        if filename.is_empty() {
            return Err(Error::NoFilename);
        }
        let name = filename.strip_suffix(".json").unwrap_or(&filename);
        let role = RoleName::parse(name).map_err(|_| Error::InvalidRole {
            role: name.chars().take(300).collect(),
        })?;
        let file = SignedFile::parse_owned(bytes).map_err(|e| match e {
            TufError::DuplicateKey { key, path } => Error::DuplicateJsonKey {
                role: role.to_string(),
                key,
                path,
            },
            error => Error::MalformedJson {
                role: role.to_string(),
                error,
            },
        })?;
        file.common().map_err(|error| Error::MalformedJson {
            role: role.to_string(),
            error,
        })?;
        by_role.insert(role, file);
    }
    Ok(by_role
        .into_iter()
        .map(|(role, file)| Upload { role, file })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::{KeyService, Passphrase};
    use crate::store::SqliteStore;
    use crate::tuf::KeyAlgorithm;

    async fn repo(wait: std::time::Duration) -> Repo<SqliteStore> {
        let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
        let keys = KeyService::new(store.clone(), Passphrase::new("t"), KeyAlgorithm::Ed25519);
        Repo::new(store, keys, system_clock()).with_concurrency(1, wait)
    }

    #[tokio::test]
    async fn a_held_repository_lock_makes_writers_busy_not_stuck() {
        let repo = repo(std::time::Duration::from_millis(20)).await;
        let held = repo.lock("r/app").await.unwrap();
        let result = repo.delete("r/app", ANONYMOUS).await;
        assert!(
            matches!(
                result,
                Err(Error::Busy {
                    what: Busy::RepositoryLock,
                    ..
                })
            ),
            "{result:?}"
        );
        drop(held);
        assert!(repo.delete("r/app", ANONYMOUS).await.is_ok());
    }

    #[tokio::test]
    async fn validation_waits_for_a_slot_are_bounded() {
        let repo = repo(std::time::Duration::from_millis(20)).await;
        let slot = repo.validation_slots.clone().acquire_owned().await.unwrap();
        let result = repo
            .validate("r/app", StoredState::default(), Vec::new())
            .await;
        assert!(
            matches!(
                result,
                Err(Error::Busy {
                    what: Busy::Validation,
                    ..
                })
            ),
            "{:?}",
            result.err()
        );
        drop(slot);
        // With the slot free, validation runs (and refuses an empty first
        // publish for want of a root).
        let result = repo
            .validate("r/app", StoredState::default(), Vec::new())
            .await;
        assert!(
            matches!(&result, Err(Error::Rejected { reason, .. }) if matches!(**reason, Refusal::NoRoot)),
            "{:?}",
            result.err()
        );
    }
}

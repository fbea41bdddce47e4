//! The one error type of the repository layer. Variants carry typed facts;
//! the HTTP layer (`server/error.rs`) maps each to Notary's status, code and
//! detail and words it for users in one place. `Display` forms here are
//! short, for logs.

use thiserror::Error;

use crate::policy::names::NameError;
use crate::tuf::certs::RejectedRootKey;
use crate::tuf::{Error as TufError, RoleName};

/// Which of Notary's five validation error names a rejection is reported
/// under: which file the refusal is about. The clients print a fixed prefix
/// for each, then our message (PROTOCOL.md §2.3); `server/error.rs` holds
/// the names and the wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// "An error occurred during validation: …"
    Validation,
    /// "Metadata hierarchy is incomplete: …"
    BadHierarchy { missing: &'static str },
    /// "The root metadata is invalid: …"
    BadRoot,
    /// "The targets metadata is invalid: …"
    BadTargets,
    /// "The snapshot metadata is invalid: …"
    BadSnapshot,
}

/// Why an upload's body could not be read as multipart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadProblem {
    /// The `Content-Type` is not multipart; what it was, shortened.
    NotMultipart {
        content_type: String,
    },
    NoBoundary,
    /// The connection broke while the body was read.
    Unreadable,
    /// The multipart framing is broken.
    BadMultipart,
    /// One part could not be read.
    BadPart {
        filename: String,
    },
    /// The body did not arrive in time.
    Timeout {
        seconds: u64,
    },
}

/// What a busy request waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// Another publish, delete or re-sign of the same repository (or of one
    /// sharing its lock stripe).
    RepositoryLock,
    /// A slot to verify signatures in (all are taken).
    Validation,
}

/// Why an update breaks a TUF rule, as typed facts. The words users read
/// are in `server/error.rs`; these `Display` forms are short, for logs.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Refusal {
    /// An uploaded file failed a TUF check: parse, structure, signature
    /// threshold, expiry or checksums.
    #[error(transparent)]
    Tuf(TufError),

    /// The server's own copy of `role` no longer parses.
    #[error("stored {role} unreadable: {error}")]
    StoredUnreadable { role: String, error: TufError },

    /// The stored snapshot's body is not a JSON object.
    #[error("stored snapshot is not an object")]
    StoredSnapshotNotObject,

    /// A first publish without a root.
    #[error("no root")]
    NoRoot,

    /// A root whose version is neither the current one nor the next.
    #[error("root version {new} after {current}")]
    RootVersionNotIncremented { current: i64, new: i64 },

    /// No root key is a valid certificate for the GUN; why, per key:
    /// certificate checks first, then common names outside the GUN grammar
    /// (key ID, why).
    #[error("no trusted root certificate ({} rejected)", rejected.len() + misnamed.len())]
    NoTrustedRootCertificate {
        rejected: Vec<RejectedRootKey>,
        misnamed: Vec<(String, NameError)>,
    },

    /// A new root is not signed by enough keys of the previous root.
    #[error("root {version} not signed by {threshold} key(s) of root {previous}: {error}")]
    RootRotationUnsigned {
        version: i64,
        previous: i64,
        threshold: i64,
        error: TufError,
    },

    /// A root is not signed by its own root keys.
    #[error("root not self-signed: {error}")]
    RootNotSelfSigned { error: TufError },

    /// A delegation uploaded before its parent has any metadata.
    #[error("{parent} of {role} unpublished")]
    ParentUnpublished { role: RoleName, parent: RoleName },

    /// A delegation its parent does not delegate to.
    #[error("{parent} does not delegate to {role}")]
    NotDelegated { role: RoleName, parent: RoleName },

    /// A target outside the paths delegated to `role` (`paths` empty: none).
    #[error("target outside the paths of {role}")]
    TargetOutsidePaths {
        target: String,
        role: RoleName,
        paths: Vec<String>,
    },

    /// Neither the upload nor the server has targets metadata.
    #[error("no targets")]
    TargetsMissing,

    /// A root that changes the targets keys came without targets signed by
    /// them.
    #[error("targets not signed by the keys of root {root_version}: {error}")]
    TargetsNotSignedByNewKeys { root_version: i64, error: TufError },

    /// No snapshot uploaded, and the server cannot sign one.
    #[error("no snapshot and no held snapshot key")]
    SnapshotKeyNotHeld,

    /// Root names timestamp keys the server does not hold.
    #[error("root {root_version} timestamp keys not held")]
    TimestampKeyNotHeld {
        root_version: i64,
        listed: Vec<String>,
    },
}

/// Which query parameter is wrong, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamProblem {
    /// An audit page size outside `1..=max`.
    AuditLimit { limit: i64, max: i64 },
    /// A parameter that must be an integer is not.
    NotInteger { name: &'static str },
    /// The changefeed's `records` is missing.
    RecordsMissing,
    /// The changefeed's `records` is not a 32-bit integer.
    Records(std::num::ParseIntError),
    /// The changefeed's `change_id` is not an integer; at most 40
    /// characters of it.
    ChangeId { shown: String },
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid repository name")]
    InvalidGun {
        gun: String,
        #[source]
        reason: NameError,
    },

    #[error("upload part without a file name")]
    NoFilename,

    #[error("invalid role name {role:?}")]
    InvalidRole { role: String },

    #[error("{role} is not valid metadata JSON")]
    MalformedJson {
        role: String,
        #[source]
        error: TufError,
    },

    /// The body is not a readable multipart upload; the parser's own
    /// error goes to the log, not to the client.
    #[error("malformed upload: {problem:?}")]
    MalformedUpload { problem: UploadProblem },

    #[error("upload over the limit of {limit} bytes (size {size:?})")]
    TooLarge { size: Option<u64>, limit: u64 },

    /// The update breaks a TUF rule; `kind` names the file it is about.
    /// Boxed: the facts are large, and every `Result` of this layer would
    /// carry their size.
    #[error("{kind:?}: {reason}")]
    Rejected {
        kind: Rejection,
        reason: Box<Refusal>,
    },

    /// A `keys` map (root's, or a delegating file's `delegations.keys`)
    /// files a key under an ID that is not the key's own.
    #[error("{role} lists key {computed} under key ID {listed}")]
    KeyIdMismatch {
        role: String,
        listed: String,
        computed: String,
    },

    /// An uploaded file repeats a member name in one JSON object.
    #[error("{role} repeats the JSON key {key:?} at {path}")]
    DuplicateJsonKey {
        role: String,
        key: String,
        path: String,
    },

    /// A client snapshot lists a targets file whose checksums are not those
    /// of the file the server holds (after this update) for that role: a
    /// superseded version, or bytes that never were.
    #[error("snapshot lists a superseded {role} (current version {current})")]
    SnapshotStale { role: String, current: i64 },

    /// A client snapshot lists a file the server does not have.
    #[error("snapshot lists unknown {role}")]
    SnapshotUnknownRole { role: String },

    /// A client snapshot leaves out a delegation that is still delegated
    /// and published.
    #[error("snapshot leaves out {role}, delegated by {parent}")]
    SnapshotDropsRole { role: String, parent: String },

    /// The upload is based on an older state than the server has.
    #[error("{role} version {version} not newer than {current}")]
    StaleVersion {
        role: String,
        version: i64,
        current: i64,
    },

    /// Another publish won a race for the same versions.
    #[error("conflict: {role} version {version} already stored")]
    Conflict { role: String, version: i64 },

    /// An upload over one of the caps of `limits` (checked before any
    /// signature is verified).
    #[error("{cap:?} exceeded in {role:?}: {count} > {limit}")]
    LimitExceeded {
        cap: super::limits::Cap,
        role: Option<String>,
        count: usize,
        limit: usize,
    },

    /// The server could not get to this request in time (the repository's
    /// lock, or a validation slot); the client may retry.
    #[error("busy: waited {waited_seconds}s for {what:?}")]
    Busy { what: Busy, waited_seconds: u64 },

    #[error("validation stopped unexpectedly")]
    ValidationAborted,

    /// An uploaded root lists a server key retired when this repository
    /// was deleted: a replay of the deleted trust data.
    #[error("root lists {role} key {key_id}, retired when the repository was deleted")]
    RetiredKey {
        role: &'static str,
        key_id: String,
        retired_at: time::OffsetDateTime,
    },

    #[error("no {what} for this repository")]
    NotFound { what: String },

    #[error("invalid parameters: {problem:?}")]
    InvalidParameters { problem: ParamProblem },

    /// A server rule (names, immutability, image manifests only, trusted
    /// delegation certificates) refuses the update.
    #[error(transparent)]
    Policy(#[from] crate::policy::Violation),

    #[error("storage failure")]
    Store(#[from] crate::store::Error),

    #[error("signing service failure")]
    Signer(#[from] crate::signer::Error),

    #[error("metadata the server generated did not encode")]
    Generate(#[source] crate::tuf::Error),
}

impl Error {
    pub(crate) fn rejected(kind: Rejection, reason: Refusal) -> Self {
        Self::Rejected {
            kind,
            reason: Box::new(reason),
        }
    }
}

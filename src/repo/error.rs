//! The one error type of the repository layer. The HTTP layer maps each
//! variant to Notary's status, code and detail in one place.

use thiserror::Error;

/// Which of Notary's five validation error names a rejection is reported
/// under. The clients print a fixed prefix for each, then our message
/// (PROTOCOL.md §2.3).
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

impl Rejection {
    /// The `detail.Name` Notary's client recognises.
    pub fn detail_name(self) -> &'static str {
        match self {
            Self::Validation => "ErrValidation",
            Self::BadHierarchy { .. } => "ErrBadHierarchy",
            Self::BadRoot => "ErrBadRoot",
            Self::BadTargets => "ErrBadTargets",
            Self::BadSnapshot => "ErrBadSnapshot",
        }
    }

    /// Short machine label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Validation => "validation",
            Self::BadHierarchy { .. } => "bad_hierarchy",
            Self::BadRoot => "bad_root",
            Self::BadTargets => "bad_targets",
            Self::BadSnapshot => "bad_snapshot",
        }
    }
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

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid repository name: {reason}")]
    InvalidGun {
        gun: String,
        #[source]
        reason: crate::policy::names::NameError,
    },

    #[error("the upload has a part without a file name (the role)")]
    NoFilename,

    #[error("{role:?} is not a valid role name")]
    InvalidRole { role: String },

    #[error("the {role} file is not valid metadata JSON: {reason}")]
    MalformedJson { role: String, reason: String },

    /// The body is not a readable multipart upload; the parser's own
    /// error goes to the log, not to the client.
    #[error("the upload is malformed: {problem:?}")]
    MalformedUpload { problem: UploadProblem },

    #[error("the upload is {}more than the limit of {limit} bytes", size.map(|s| format!("{s} bytes, ")).unwrap_or_default())]
    TooLarge { size: Option<u64>, limit: u64 },

    /// The update breaks a TUF or server rule; `message` is for users.
    #[error("{message}")]
    Rejected { kind: Rejection, message: String },

    /// A `keys` map (root's, or a delegating file's `delegations.keys`)
    /// files a key under an ID that is not the key's own.
    #[error(
        "{role} lists a key under key ID {listed}, but that key's ID is {computed}: every key \
         must be listed under its own key ID"
    )]
    KeyIdMismatch {
        role: String,
        listed: String,
        computed: String,
    },

    /// An uploaded file repeats a member name in one JSON object.
    #[error(
        "the {role} file repeats the JSON key {key:?} in one object (at {path}); metadata with \
         duplicate keys is ambiguous and is refused"
    )]
    DuplicateJsonKey {
        role: String,
        key: String,
        path: String,
    },

    /// A client snapshot lists a targets file whose checksums are not those
    /// of the file the server holds (after this update) for that role: a
    /// superseded version, or bytes that never were.
    #[error(
        "the snapshot lists {role} with the checksums of a file that is not its current version \
         ({role} version {current}); a snapshot must name the current files"
    )]
    SnapshotStale { role: String, current: i64 },

    /// A client snapshot lists a file the server does not have.
    #[error(
        "the snapshot lists {role}, which this repository does not have; a snapshot may list \
         only root, targets and published delegations"
    )]
    SnapshotUnknownRole { role: String },

    /// A client snapshot leaves out a delegation that is still delegated
    /// and published.
    #[error(
        "the snapshot leaves out {role}, which {parent} still delegates and the server holds; \
         remove the delegation from {parent} first, or list {role} in the snapshot"
    )]
    SnapshotDropsRole { role: String, parent: String },

    /// The upload is based on an older state than the server has.
    #[error(
        "{role} version {version} is not newer than version {current} on the server; \
         someone else published meanwhile: update your copy and publish again"
    )]
    StaleVersion {
        role: String,
        version: i64,
        current: i64,
    },

    /// Another publish won a race for the same versions.
    #[error(
        "the repository changed while this update was being stored ({role} version {version} \
         already exists); retry the publish"
    )]
    Conflict { role: String, version: i64 },

    /// An upload over one of the caps of `limits` (checked before any
    /// signature is verified).
    #[error("{cap:?} exceeded{}: {count} > {limit}", role.as_ref().map(|r| format!(" in {r}")).unwrap_or_default())]
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

    #[error("invalid parameters: {reason}")]
    InvalidParameters { reason: String },

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
    pub(crate) fn rejected(kind: Rejection, message: impl Into<String>) -> Self {
        Self::Rejected {
            kind,
            message: message.into(),
        }
    }
}

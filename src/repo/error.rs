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

    #[error("the upload is malformed: {reason}")]
    MalformedUpload { reason: String },

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

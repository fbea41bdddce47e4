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
    InvalidGun { gun: String, reason: String },

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

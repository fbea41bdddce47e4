//! Server rules beyond TUF validity, pure: repository and tag names, immutable
//! tags, the single-platform-image limitation (what a signed digest points
//! to), and the trust anchor for delegation certificates. The registry is
//! reached only through [`ManifestSource`].

pub mod delegation_ca;
pub mod manifest;
pub mod names;

use std::future::Future;
use std::pin::Pin;

use thiserror::Error;

pub use manifest::{IndexKind, ManifestKind};

/// Why an upload breaks a server rule, as typed facts. The words users read
/// are in `server/error.rs`; these `Display` forms are short, for logs.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Violation {
    #[error("{0}")]
    Name(#[from] names::NameError),

    #[error("immutable tag {gun}:{tag} changed")]
    ImmutableTagChanged { gun: String, tag: String },

    #[error("immutable tag {gun}:{tag} removed")]
    ImmutableTagRemoved { gun: String, tag: String },

    #[error("immutable repository {gun} deleted")]
    ImmutableRepository { gun: String },

    /// The target is an OCI image index or a Docker manifest list.
    #[error("tag {tag} ({digest}) is an index: {kind:?}")]
    Index {
        gun: String,
        tag: String,
        digest: String,
        kind: IndexKind,
    },

    /// The registry could not be asked. `registry` is the GUN's registry
    /// host as users write it (never the configured URL).
    #[error("cannot check manifest type of tag {tag} ({digest}) at {registry}: {failure:?}")]
    ManifestUnreachable {
        tag: String,
        digest: String,
        registry: String,
        failure: LookupFailure,
    },

    #[error("tag {tag} ({digest}) is not in the registry {registry}")]
    UnknownDigest {
        tag: String,
        digest: String,
        registry: String,
    },

    #[error("untrusted key {key_id} for delegation {role}: {problem:?}")]
    UntrustedDelegation {
        role: String,
        key_id: String,
        problem: DelegationKeyProblem,
    },
}

/// Why a delegation key is not trusted by the configured delegation
/// certificate authorities. `subject` is the certificate's subject.
#[derive(Debug)]
#[non_exhaustive]
pub enum DelegationKeyProblem {
    /// A plain key, not a certificate.
    PlainKey { keytype: String },
    /// The certificate does not parse.
    Unreadable(Box<crate::tuf::Error>),
    OutsideValidity {
        subject: String,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    },
    /// Issued by no configured authority.
    UnknownIssuer { subject: String, issuer: String },
    /// Names a configured authority as issuer, but its signature does not
    /// verify with that authority's key.
    IssuerSignature { subject: String, authority: String },
}

/// Whether `gun` is named by a list of exact GUNs and prefixes ending in
/// `/` (the form of `repositories.immutable`).
pub fn listed(entries: &[String], gun: &str) -> bool {
    entries.iter().any(|entry| {
        if entry.ends_with('/') {
            gun.starts_with(entry.as_str())
        } else {
            gun == entry
        }
    })
}

/// What a registry says a digest is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The registry has this manifest (or index) and it is of this kind.
    Found(ManifestKind),
    /// The registry does not know the digest (e.g. a file signed with
    /// `notary addhash`, or a tag signed before the push).
    Unknown,
}

/// Why a registry could not say what a digest is. Typed so that users get
/// a useful reason with no internal detail (the wording is in
/// `server/error.rs`); the detail goes to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupFailure {
    /// No registry is configured for the repository.
    NotConfigured,
    /// No answer within the configured timeout.
    Timeout,
    /// The registry (or its token service) could not be reached.
    Unreachable,
    /// The registry wants credentials and the server has none for it.
    CredentialsMissing,
    /// The registry or its token service refused the server's credentials.
    CredentialsRefused,
    /// The registry refused access to the repository.
    AccessDenied,
    RateLimited,
    /// The registry answered with a server error.
    RegistryError,
    /// The registry's token service failed or answered nonsense.
    TokenService,
    /// The answer was unusable: oversized, garbled, not the content the
    /// digest names, or not a manifest.
    BadAnswer,
}

/// A failure to ask the registry (unreachable, refused, garbled answer).
/// `registry` (its configured URL) and `reason` are for the log only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupError {
    pub registry: String,
    pub failure: LookupFailure,
    pub reason: String,
}

/// Where the server learns what a signed digest is: a registry holding the
/// repository. Implemented over HTTP in `registry`.
pub trait ManifestSource: Send + Sync {
    /// Whether this source knows the registry for `gun`; GUNs it does not
    /// cover are not image repositories as far as the server is concerned
    /// (their targets are files, not tags).
    fn covers(&self, gun: &str) -> bool;

    /// Whether unknown digests are refused for `gun`.
    fn requires_image_manifests(&self, gun: &str) -> bool;

    /// Looks up `digest` (`sha256:<hex>`) of `length` bytes in the
    /// repository of `gun`.
    fn lookup<'a>(
        &'a self,
        gun: &'a str,
        digest: &'a str,
        length: i64,
    ) -> Pin<Box<dyn Future<Output = Result<Lookup, LookupError>> + Send + 'a>>;
}

/// A source that covers no repository: every target is a plain file.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRegistry;

impl ManifestSource for NoRegistry {
    fn covers(&self, _gun: &str) -> bool {
        false
    }

    fn requires_image_manifests(&self, _gun: &str) -> bool {
        false
    }

    fn lookup<'a>(
        &'a self,
        _gun: &'a str,
        _digest: &'a str,
        _length: i64,
    ) -> Pin<Box<dyn Future<Output = Result<Lookup, LookupError>> + Send + 'a>> {
        Box::pin(async { Ok(Lookup::Unknown) })
    }
}

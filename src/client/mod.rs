//! `notarium verify`: fetch a repository's trust data from any
//! notary-compatible server, verify it with the TUF client rules
//! (PROTOCOL.md §9.1) and resolve a tag to its signed digest.
//!
//! - `reference`: image references → GUN and tag, as docker forms them;
//! - `fetch`: the [`Source`] of metadata files (HTTPS, bounded);
//! - `cache`: the trust directory (last verified root, versions seen);
//! - `verify`: the rules, over a [`Source`], with the clock a parameter;
//!   thresholds, root rotation and delegation authority come from
//!   [`crate::tuf::chain`], the same code that validates uploads.

pub mod cache;
pub mod fetch;
pub mod reference;
mod verify;

use std::collections::BTreeMap;

use time::OffsetDateTime;

pub use cache::{CacheError, Cached, Seen, TrustDir};
pub use fetch::{FetchError, HttpSource, Source};
pub use reference::{ImageRef, parse as parse_reference};
pub use verify::{Anchor, Options, Wanted, verify};

use crate::tuf;

/// Exit codes of `notarium verify`.
pub mod exit {
    pub const VERIFIED: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NOT_SIGNED: u8 = 3;
    pub const UNREACHABLE: u8 = 4;
}

/// A tag resolved through verified trust data.
#[derive(Debug, Clone)]
pub struct Verified {
    pub gun: String,
    pub tag: String,
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: i64,
    /// Roles whose verified metadata lists this tag with this digest and
    /// size, in the order the client resolves them (pre-order).
    pub signed_by: Vec<String>,
    /// Roles that list the tag with another digest or size (not counted).
    pub disagreeing: Vec<String>,
    /// Expiry of root, timestamp, snapshot, targets and each delegation
    /// read.
    pub expires: BTreeMap<String, OffsetDateTime>,
    /// Delegations skipped (invalid or expired), with why.
    pub warnings: Vec<String>,
    /// Roles whose signatures were not checked again: an earlier run
    /// checked the same bytes against the same keys and threshold (see
    /// `cache`).
    pub reused: Vec<String>,
}

/// What the caller requires of a verified tag.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Roles whose signature counts (`--require-role`).
    pub roles: Vec<String>,
    /// How many of `roles` must have signed; all of them when `None`.
    pub count: Option<usize>,
    /// The digest the tag must resolve to (`--digest`).
    pub digest: Option<String>,
}

impl Policy {
    pub fn check(&self, verified: &Verified) -> Result<(), Error> {
        if let Some(given) = &self.digest {
            if *given != verified.digest {
                return Err(Error::DigestMismatch {
                    gun: verified.gun.clone(),
                    tag: verified.tag.clone(),
                    signed: verified.digest.clone(),
                    given: given.clone(),
                });
            }
        }
        if self.roles.is_empty() {
            return Ok(());
        }
        let needed = self.count.unwrap_or(self.roles.len());
        let met: Vec<&String> = self
            .roles
            .iter()
            .filter(|role| verified.signed_by.contains(role))
            .collect();
        if met.len() < needed {
            return Err(Error::Policy {
                gun: verified.gun.clone(),
                tag: verified.tag.clone(),
                reason: format!(
                    "{} of the required roles [{}] signed {} (needed {needed}); it is signed by [{}]",
                    met.len(),
                    self.roles.join(", "),
                    verified.digest,
                    verified.signed_by.join(", "),
                ),
            });
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{server} does not have trust data for {gun}")]
    NoTrustData { server: String, gun: String },
    #[error("the server has no {file} for {gun}, which its other metadata requires")]
    Missing { gun: String, file: String },
    #[error("{what} is not signed in {gun}")]
    NotSigned { gun: String, what: String },
    #[error("{role} of {gun} failed verification: {source}")]
    Invalid {
        gun: String,
        role: String,
        #[source]
        source: tuf::Error,
    },
    #[error("the root of {gun} is not trusted: {reason}")]
    UntrustedRoot { gun: String, reason: String },
    #[error(
        "root of {gun} version {to} is not signed by a threshold of the keys of version {from} \
         (a root rotation must be signed by the old root keys): {source}"
    )]
    RotationUnsigned {
        gun: String,
        from: i64,
        to: i64,
        #[source]
        source: tuf::Error,
    },
    #[error(
        "rollback refused: the server offers {role} version {offered} of {gun}, \
         but version {seen} was already verified"
    )]
    Rollback {
        gun: String,
        role: String,
        offered: i64,
        seen: i64,
    },
    #[error("inconsistent trust data for {gun}: {what}")]
    Inconsistent { gun: String, what: String },
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("policy not met for {gun}:{tag}: {reason}")]
    Policy {
        gun: String,
        tag: String,
        reason: String,
    },
    #[error("{gun}:{tag} is signed as {signed}, not {given}")]
    DigestMismatch {
        gun: String,
        tag: String,
        signed: String,
        given: String,
    },
}

impl Error {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => exit::USAGE,
            Self::Fetch(_) | Self::Missing { .. } => exit::UNREACHABLE,
            Self::NoTrustData { .. } | Self::NotSigned { .. } => exit::NOT_SIGNED,
            _ => exit::FAILED,
        }
    }
}

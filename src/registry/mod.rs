//! The outbound OCI registry client, apart from the HTTP layer: it asks the
//! registry holding a repository what a signed digest is (PROTOCOL.md
//! §10.2) and implements [`ManifestSource`](crate::policy::ManifestSource).
//!
//! - `challenge`: `WWW-Authenticate` parsing;
//! - `token`: Docker token fetch and the per-(registry, scope) token cache;
//! - `client`: manifest lookups, bounded in time and size.

mod challenge;
mod client;
mod token;

pub use challenge::{Challenge, parse_challenge};
/// Shared with the `verify` client, which fetches trust data over the same
/// HTTP stack.
pub(crate) use client::transport_reason;
pub use client::{
    MAX_MANIFEST_BYTES, RegistryClient, RegistryConfigError, RegistrySettings, repository_name,
};

//! The signer boundary (PROTOCOL.md §5): what repository logic may ask of a
//! signer. [`KeyService`](super::KeyService) answers it from sealed keys in
//! the store; a remote signer answers it over notary-signer's gRPC API. The
//! repository holds a `dyn KeySigner` and cannot tell them apart; private
//! key bytes never cross this boundary.

use std::future::Future;
use std::pin::Pin;

use time::OffsetDateTime;

use super::Error;
use crate::tuf::{KeyAlgorithm, PublicKey, Signature};

/// A boxed future, so the trait can be used as `dyn KeySigner`.
pub type SignerFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// Creates, describes and signs with the server-managed (timestamp and
/// snapshot) keys.
pub trait KeySigner: Send + Sync + 'static {
    /// The algorithm of new keys (notary-server's `key_algorithm`).
    fn algorithm(&self) -> KeyAlgorithm;

    /// A key for (gun, role). A signer may hand back a key it made earlier
    /// that has never signed, so repeated requests do not pile up keys.
    fn create_key<'a>(&'a self, gun: &'a str, role: &'a str) -> SignerFuture<'a, PublicKey>;

    /// The public half of a held key.
    fn public_key<'a>(&'a self, key_id: &'a str) -> SignerFuture<'a, PublicKey>;

    /// Those of `candidates` (key IDs a root lists for `role`) that this
    /// signer holds for (gun, role), in the order given.
    fn held_among<'a>(
        &'a self,
        gun: &'a str,
        role: &'a str,
        candidates: &'a [String],
    ) -> SignerFuture<'a, Vec<String>>;

    /// Signs `message` (canonical `signed` bytes) with a held key.
    fn sign<'a>(&'a self, key_id: &'a str, message: &'a [u8]) -> SignerFuture<'a, Signature>;

    /// When `key_id` was retired as a key of `gun`, if the signer keeps such
    /// a record (the local one does; notary-signer does not).
    fn retired<'a>(
        &'a self,
        _gun: &'a str,
        _key_id: &'a str,
    ) -> SignerFuture<'a, Option<OffsetDateTime>> {
        Box::pin(async { Ok(None) })
    }

    /// Keys that signed for the first time and are not yet recorded as used
    /// in the repository's store (see `Store::publish_as`). A signer that
    /// keeps its own records has none.
    fn unrecorded_uses(&self) -> Vec<String> {
        Vec::new()
    }

    /// The store committed the first use of `key_ids`.
    fn uses_recorded(&self, _key_ids: &[String]) {}

    /// The keys of `gun` were retired: drop anything kept in memory for it.
    fn forget(&self, _gun: &str) {}

    /// Whether the signer can serve now (a remote one: its gRPC health).
    /// The local one lives in this process and its store is checked apart.
    fn check_health(&self) -> SignerFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

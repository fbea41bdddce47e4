//! Server-held timestamp and snapshot keys: the only module that sees
//! private key bytes (PROTOCOL.md §1.4, §5). It hands out public keys and
//! signatures, nothing else.
//!
//! Keys live in the [`Store`] sealed ([`sealed`]) under a key-encryption key
//! derived from the passphrase once per process, with a random salt kept in
//! the database; keys sealed the notary-signer way (PBES2) still open. A key
//! is unsealed when it first signs and then kept in a bounded LRU, as
//! notary-signer keeps its keys in memory; decrypted PKCS#8 bytes are
//! zeroized. Keys of a deleted repository are retired and never sign again.

mod boundary;
mod lru;
pub mod proto;
pub mod remote;
pub mod sealed;
pub mod service;

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use thiserror::Error;
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use crate::store::import::NotaryPrivateKey;
use crate::store::{self, KekParams, NewKey, Store, StoredKey};
use crate::striped::StripedLocks;
use crate::tuf::{self, KeyAlgorithm, KeyType, PublicKey, Signature, SigningKey};

pub use boundary::{KeySigner, SignerFuture};
use lru::Lru;
pub use sealed::{Kek, Passphrase};

/// The one error type of the signer layer.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),

    #[error(transparent)]
    Tuf(#[from] tuf::Error),

    #[error("no {role} key is held for {gun}")]
    NoKey { gun: String, role: String },

    #[error("key {key_id} is not held by this server")]
    UnknownKey { key_id: String },

    /// The key's repository was deleted; it never signs again.
    #[error("key {key_id} was retired")]
    RetiredKey { key_id: String },

    #[error("stored key {key_id} has unsupported algorithm {algorithm:?}")]
    UnsupportedAlgorithm { key_id: String, algorithm: String },

    /// The stored public key, its ID and the sealed private key disagree.
    #[error("stored key {key_id} does not match its public key")]
    KeyMismatch { key_id: String },

    #[error("sealed key cannot be opened: wrong passphrase (or a damaged wrapped key)")]
    WrongPassphrase,

    /// A key sealed under a key-encryption key other than this database's.
    #[error("sealed key names key-encryption key {kid}, which this database does not hold")]
    UnknownKek { kid: String },

    #[error("sealed key failed authentication: it has been modified")]
    SealedKeyTampered,

    #[error("malformed sealed key: {reason}")]
    MalformedSealedKey { reason: &'static str },

    #[error("sealed key uses unsupported {field} {value}")]
    UnsupportedSealing { field: &'static str, value: String },

    #[error("could not seal key: {operation} failed")]
    Sealing { operation: &'static str },

    /// The remote signer cannot be reached or did not answer in time.
    #[error("the signer is unavailable: {reason}")]
    SignerUnavailable { reason: String },

    /// The remote signer answered with an error.
    #[error("the signer failed: {reason}")]
    SignerFailed { reason: String },

    /// The remote signer's address or TLS files are unusable.
    #[error("cannot set up the signer connection: {reason}")]
    SignerSetup { reason: String },
}

/// An unsealed key and the GUN it serves (to forget it when the GUN is
/// deleted).
type Unsealed = (Arc<SigningKey>, Arc<str>);

/// Creates, holds and signs with server keys, sealed in a [`Store`].
pub struct KeyService<S: Store> {
    store: Arc<S>,
    passphrase: Arc<Passphrase>,
    algorithm: KeyAlgorithm,
    /// PBKDF2 iterations for a new key-encryption key.
    iterations: u32,
    /// Derived once, on first use or by [`KeyService::unlock`] at start-up.
    kek: OnceCell<Arc<Kek>>,
    /// Serialises `create_key`, so two concurrent requests for the same
    /// (gun, role) get the same unused key rather than two new ones.
    create_locks: StripedLocks,
    /// Keys already unsealed, so signing a timestamp does not unseal again.
    unsealed: std::sync::Mutex<Lru<String, Unsealed>>,
    /// Keys that signed for the first time, not yet recorded as used: the
    /// repository records them in the transaction that stores what they
    /// signed ([`KeyService::unrecorded_uses`]), saving a durable commit.
    unrecorded: std::sync::Mutex<HashSet<String>>,
}

/// Key creation is serialised per (gun, role) over this many stripes, so
/// one repository's key generation does not wait for another's.
const CREATE_LOCK_STRIPES: usize = 32;

/// At most this many unsealed keys are kept in memory.
const MAX_UNSEALED: usize = 4096;

impl<S: Store> fmt::Debug for KeyService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyService")
            .field("algorithm", &self.algorithm)
            .field("pbkdf2_iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl<S: Store> KeyService<S> {
    /// New keys are generated with `algorithm` (notary-signer's
    /// `key_algorithm`; ECDSA P-256 is Notary's default). A new database's
    /// key-encryption key is derived with [`sealed::DEFAULT_ITERATIONS`].
    pub fn new(store: Arc<S>, passphrase: Passphrase, algorithm: KeyAlgorithm) -> Self {
        Self {
            store,
            passphrase: Arc::new(passphrase),
            algorithm,
            iterations: sealed::DEFAULT_ITERATIONS,
            kek: OnceCell::new(),
            create_locks: StripedLocks::new(CREATE_LOCK_STRIPES),
            unsealed: std::sync::Mutex::new(Lru::new(MAX_UNSEALED)),
            unrecorded: std::sync::Mutex::default(),
        }
    }

    /// PBKDF2 iterations for a new key-encryption key; must lie in
    /// [`sealed::ITERATIONS`]. An existing one keeps its stored count.
    pub fn with_pbkdf2_iterations(mut self, iterations: u32) -> Result<Self, Error> {
        self.iterations = sealed::check_iterations(iterations.into())?;
        Ok(self)
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// Derives the key-encryption key and checks the passphrase against the
    /// database: its stored check value, or (for a database sealed the old
    /// way only) its newest key. [`Error::WrongPassphrase`] if it does not
    /// open them. Call at start-up; otherwise the first key operation does.
    pub async fn unlock(&self) -> Result<(), Error> {
        self.kek().await.map(drop)
    }

    async fn kek(&self) -> Result<Arc<Kek>, Error> {
        self.kek
            .get_or_try_init(|| self.derive_kek())
            .await
            .cloned()
    }

    async fn derive_kek(&self) -> Result<Arc<Kek>, Error> {
        let stored = self.store.kek_params().await?;
        let sealed_keys_exist = self.store.newest_key().await?;
        match (&stored, &sealed_keys_exist) {
            (Some(params), _) => {
                let kek = self.derive(params.salt.clone(), params.iterations).await?;
                match kek.verify_check(&params.check_value) {
                    Ok(()) => return Ok(Arc::new(kek)),
                    // Nothing is sealed under it yet: start afresh below.
                    Err(Error::WrongPassphrase) if sealed_keys_exist.is_none() => {}
                    Err(other) => return Err(other),
                }
            }
            (None, Some(key)) => {
                // Sealed the old way only: the passphrase must open a key.
                let passphrase = Arc::clone(&self.passphrase);
                let token = key.sealed_private.clone();
                blocking(move || sealed::open(&token, &passphrase).map(drop)).await?;
            }
            (None, None) => {}
        }
        let salt = sealed::new_salt()?;
        let kek = self.derive(salt.clone(), self.iterations).await?;
        let params = KekParams {
            salt,
            iterations: self.iterations,
            check_value: kek.check_value()?,
        };
        let kept = self
            .store
            .put_kek_params(params.clone(), stored.is_some())
            .await?;
        if kept == params {
            return Ok(Arc::new(kek));
        }
        // Another process stored its parameters first: use those.
        let kek = self.derive(kept.salt, kept.iterations).await?;
        kek.verify_check(&kept.check_value)?;
        Ok(Arc::new(kek))
    }

    async fn derive(&self, salt: Vec<u8>, iterations: u32) -> Result<Kek, Error> {
        let passphrase = Arc::clone(&self.passphrase);
        blocking(move || Kek::derive(&passphrase, &salt, iterations)).await
    }

    /// notary-signer's `Create` (PROTOCOL.md §1.4, §5): a key for (gun,
    /// role) of the configured algorithm that has never signed is returned
    /// again instead of minting another, so repeated `GET …key` calls
    /// cannot fill the database. Otherwise a new key is generated and
    /// stored sealed under the KEK (no PBKDF2 run). Retired keys are never
    /// handed out.
    pub async fn create_key(&self, gun: &str, role: &str) -> Result<PublicKey, Error> {
        let _creating = self.create_locks.for_key(&[gun, role]).lock().await;
        let keytype = keytype_of(self.algorithm);
        let held = self.store.keys_for(gun, role).await?;
        let unrecorded = self.unrecorded_uses();
        if let Some(unused) = held.iter().find(|key| {
            key.last_used.is_none()
                && !unrecorded.contains(&key.key_id)
                && key.algorithm == keytype.as_str()
        }) {
            return public_key_of(unused);
        }

        let algorithm = self.algorithm;
        let kek = self.kek().await?;
        // Key generation is CPU-bound: keep it off the async workers.
        let (public, sealed_private) = blocking(move || {
            let key = SigningKey::generate(algorithm)?;
            let pkcs8 = key.to_pkcs8()?;
            let sealed_private = kek.seal(&pkcs8)?;
            Ok((key.public_key().clone(), sealed_private))
        })
        .await?;
        // Another server process may have stored an unused key for (gun,
        // role) since `held` was read: the store keeps one and says which.
        let kept = self
            .store
            .put_key_once(
                NewKey {
                    key_id: public.id().to_string(),
                    gun: gun.to_string(),
                    role: role.to_string(),
                    algorithm: keytype.as_str().to_string(),
                    public: public.public_bytes().to_vec(),
                    sealed_private,
                },
                &unrecorded,
            )
            .await?;
        if kept.key_id == public.id() {
            return Ok(public);
        }
        public_key_of(&kept)
    }

    /// Re-seals a key imported from notary-signer (PROTOCOL.md §6.4): opens
    /// its JWE with `passphrase` (its alias's), checks that the private key,
    /// the stored public key and the key ID agree, and seals it under this
    /// database's key-encryption key. The private bytes never leave here.
    pub async fn reseal_notary_key(
        &self,
        row: &NotaryPrivateKey,
        gun: &str,
        passphrase: Passphrase,
    ) -> Result<NewKey, Error> {
        let algorithm = match row.algorithm.as_str() {
            "ecdsa" => KeyAlgorithm::EcdsaP256,
            "ed25519" => KeyAlgorithm::Ed25519,
            other => {
                return Err(Error::UnsupportedAlgorithm {
                    key_id: row.key_id.clone(),
                    algorithm: other.to_string(),
                });
            }
        };
        let token = String::from_utf8(row.private.clone())
            .map_err(|_| Error::MalformedSealedKey { reason: "not text" })?;
        let kek = self.kek().await?;
        let key_id = row.key_id.clone();
        let stored_public = row.public.clone();
        let (public, sealed_private) = blocking(move || {
            let plaintext = sealed::open(&token, &passphrase)?;
            let key = SigningKey::from_notary_private(algorithm, &plaintext).map_err(|_| {
                Error::KeyMismatch {
                    key_id: key_id.clone(),
                }
            })?;
            let public = key.public_key().clone();
            if public.id() != key_id || public.public_bytes() != stored_public.as_slice() {
                return Err(Error::KeyMismatch { key_id });
            }
            let pkcs8 = key.to_pkcs8()?;
            Ok((public, kek.seal(&pkcs8)?))
        })
        .await?;
        Ok(NewKey {
            key_id: public.id().to_string(),
            gun: gun.to_string(),
            role: row.role.clone(),
            algorithm: row.algorithm.clone(),
            public: public.public_bytes().to_vec(),
            sealed_private,
        })
    }

    pub async fn public_key(&self, key_id: &str) -> Result<PublicKey, Error> {
        public_key_of(&self.stored(key_id).await?)
    }

    /// IDs of the keys held for (gun, role), newest first; retired keys are
    /// not held.
    pub async fn held_key_ids(&self, gun: &str, role: &str) -> Result<Vec<String>, Error> {
        let held = self.store.keys_for(gun, role).await?;
        Ok(held.into_iter().map(|key| key.key_id).collect())
    }

    /// When `key_id` was retired, if it is a retired key of `gun`.
    pub async fn retired(&self, gun: &str, key_id: &str) -> Result<Option<OffsetDateTime>, Error> {
        match self.store.get_key(key_id).await {
            Ok(key) if key.gun == gun => Ok(key.retired_at),
            Ok(_) | Err(store::Error::NotFound) => Ok(None),
            Err(other) => Err(other.into()),
        }
    }

    /// Keys that have signed but are not yet recorded as used in the store:
    /// pass them to [`Store::publish_as`] with what they signed, then call
    /// [`KeyService::uses_recorded`]. Until then they count as used here.
    pub fn unrecorded_uses(&self) -> Vec<String> {
        self.unrecorded
            .lock()
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The store committed the first use of `key_ids`.
    pub fn uses_recorded(&self, key_ids: &[String]) {
        if let Ok(mut unrecorded) = self.unrecorded.lock() {
            for key_id in key_ids {
                unrecorded.remove(key_id);
            }
        }
    }

    /// Drops the unsealed keys of `gun` from memory (its keys were retired).
    pub fn forget(&self, gun: &str) {
        if let Ok(mut unsealed) = self.unsealed.lock() {
            unsealed.remove_where(|_, (_, of)| &**of == gun);
        }
    }

    /// The newest key held for (gun, role), for callers that need "the"
    /// server key of a role.
    pub async fn current_key(&self, gun: &str, role: &str) -> Result<PublicKey, Error> {
        let held = self.store.keys_for(gun, role).await?;
        let newest = held.first().ok_or_else(|| Error::NoKey {
            gun: gun.to_string(),
            role: role.to_string(),
        })?;
        public_key_of(newest)
    }

    /// Signs `message` (canonical `signed` bytes) with a held key. A first
    /// use is noted in [`KeyService::unrecorded_uses`], for the publish that
    /// stores the signature to record. The signer hashes per key type, as
    /// notary-signer does. Retired keys refuse.
    pub async fn sign(&self, key_id: &str, message: &[u8]) -> Result<Signature, Error> {
        if let Some(key) = self.unsealed_key(key_id) {
            // Already used (it was unsealed to sign), so nothing to note.
            return Ok(key.sign(message)?);
        }
        let stored = self.stored(key_id).await?;
        if stored.retired_at.is_some() {
            return Err(Error::RetiredKey {
                key_id: key_id.to_string(),
            });
        }
        let algorithm = algorithm_of(&stored)?;
        let expected = public_key_of(&stored)?;
        let kek = self.kek().await?;
        let passphrase = Arc::clone(&self.passphrase);
        let key_id_owned = stored.key_id.clone();
        let sealed_private = stored.sealed_private;
        let key = blocking(move || {
            let pkcs8 = sealed::open_any(&sealed_private, &kek, &passphrase)?;
            let key = SigningKey::from_pkcs8(algorithm, &pkcs8)?;
            // A row whose sealed key was swapped would otherwise sign under
            // a key ID it does not own.
            if key.public_key() != &expected {
                return Err(Error::KeyMismatch {
                    key_id: key_id_owned,
                });
            }
            Ok(key)
        })
        .await?;
        let signature = key.sign(message)?;
        if stored.last_used.is_none()
            && let Ok(mut unrecorded) = self.unrecorded.lock()
        {
            unrecorded.insert(key_id.to_string());
        }
        self.remember_unsealed(key_id, &stored.gun, key);
        Ok(signature)
    }

    fn unsealed_key(&self, key_id: &str) -> Option<Arc<SigningKey>> {
        let mut unsealed = self.unsealed.lock().ok()?;
        unsealed.get(&key_id.to_string()).map(|(key, _)| key)
    }

    fn remember_unsealed(&self, key_id: &str, gun: &str, key: SigningKey) {
        if let Ok(mut unsealed) = self.unsealed.lock() {
            unsealed.put(key_id.to_string(), (Arc::new(key), Arc::from(gun)));
        }
    }

    async fn stored(&self, key_id: &str) -> Result<StoredKey, Error> {
        self.store.get_key(key_id).await.map_err(|err| match err {
            store::Error::NotFound => Error::UnknownKey {
                key_id: key_id.to_string(),
            },
            other => other.into(),
        })
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| Error::Sealing {
            operation: "background key task",
        })?
}

fn keytype_of(algorithm: KeyAlgorithm) -> KeyType {
    match algorithm {
        KeyAlgorithm::EcdsaP256 => KeyType::Ecdsa,
        KeyAlgorithm::Ed25519 => KeyType::Ed25519,
    }
}

fn algorithm_of(stored: &StoredKey) -> Result<KeyAlgorithm, Error> {
    match KeyType::parse(&stored.algorithm) {
        // Only P-256 keys are generated here.
        KeyType::Ecdsa => Ok(KeyAlgorithm::EcdsaP256),
        KeyType::Ed25519 => Ok(KeyAlgorithm::Ed25519),
        _ => Err(Error::UnsupportedAlgorithm {
            key_id: stored.key_id.clone(),
            algorithm: stored.algorithm.clone(),
        }),
    }
}

/// Rebuilds the public key from its stored type and bytes, and checks that
/// it still has the ID it is filed under.
fn public_key_of(stored: &StoredKey) -> Result<PublicKey, Error> {
    let public = PublicKey::new(KeyType::parse(&stored.algorithm), stored.public.clone());
    if public.id() != stored.key_id {
        return Err(Error::KeyMismatch {
            key_id: stored.key_id.clone(),
        });
    }
    Ok(public)
}

/// The local signer: keys sealed in the repository's own store.
impl<S: Store> KeySigner for KeyService<S> {
    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    fn create_key<'a>(&'a self, gun: &'a str, role: &'a str) -> SignerFuture<'a, PublicKey> {
        Box::pin(KeyService::create_key(self, gun, role))
    }

    fn public_key<'a>(&'a self, key_id: &'a str) -> SignerFuture<'a, PublicKey> {
        Box::pin(KeyService::public_key(self, key_id))
    }

    fn held_among<'a>(
        &'a self,
        gun: &'a str,
        role: &'a str,
        candidates: &'a [String],
    ) -> SignerFuture<'a, Vec<String>> {
        Box::pin(async move {
            let held = self.held_key_ids(gun, role).await?;
            Ok(candidates
                .iter()
                .filter(|id| held.contains(id))
                .cloned()
                .collect())
        })
    }

    fn sign<'a>(&'a self, key_id: &'a str, message: &'a [u8]) -> SignerFuture<'a, Signature> {
        Box::pin(KeyService::sign(self, key_id, message))
    }

    fn retired<'a>(
        &'a self,
        gun: &'a str,
        key_id: &'a str,
    ) -> SignerFuture<'a, Option<OffsetDateTime>> {
        Box::pin(KeyService::retired(self, gun, key_id))
    }

    fn unrecorded_uses(&self) -> Vec<String> {
        KeyService::unrecorded_uses(self)
    }

    fn uses_recorded(&self, key_ids: &[String]) {
        KeyService::uses_recorded(self, key_ids);
    }

    fn forget(&self, gun: &str) {
        KeyService::forget(self, gun);
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;
    use crate::store::SqliteStore;
    use crate::store::tests::temp_db;
    use crate::tuf::sig::verify_signature;

    const GUN: &str = "example.com/team/app";
    /// Sealing strength is not under test; keep debug builds quick.
    const ITERATIONS: u32 = 1_000;

    async fn service(
        db: &str,
        passphrase: &str,
        algorithm: KeyAlgorithm,
    ) -> KeyService<SqliteStore> {
        let store = Arc::new(SqliteStore::open(db).await.unwrap());
        KeyService::new(store, Passphrase::new(passphrase), algorithm)
            .with_pbkdf2_iterations(ITERATIONS)
            .unwrap()
    }

    /// A key as notary-signer stores it: Ed25519 as public ‖ seed ‖ public,
    /// ECDSA as SEC1 DER, sealed with the alias's passphrase (PBES2).
    fn notary_row(key: &SigningKey, plaintext: &[u8], passphrase: &str) -> NotaryPrivateKey {
        let keytype = keytype_of(key.algorithm());
        NotaryPrivateKey {
            key_id: key.public_key().id().to_string(),
            algorithm: keytype.as_str().to_string(),
            passphrase_alias: "alias1".into(),
            public: key.public_key().public_bytes().to_vec(),
            private: sealed::seal(
                plaintext,
                &Passphrase::new(passphrase),
                sealed::NOTARY_ITERATIONS,
            )
            .unwrap()
            .into_bytes(),
            gun: GUN.into(),
            role: "timestamp".into(),
            created_at: None,
            last_used: None,
        }
    }

    /// Keys written for notary-signer's table read back as the same key
    /// (the Go signer reads the same layout).
    #[test]
    fn keys_round_trip_through_notary_signers_private_key_layout() {
        for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
            let key = SigningKey::generate(algorithm).unwrap();
            let stored = key.to_notary_private().unwrap();
            if algorithm == KeyAlgorithm::Ed25519 {
                assert_eq!(stored.len(), 96);
                assert_eq!(&stored[..32], key.public_key().public_bytes());
                assert_eq!(&stored[64..], key.public_key().public_bytes());
            }
            let back = SigningKey::from_notary_private(algorithm, &stored).unwrap();
            assert_eq!(back.public_key().id(), key.public_key().id());
            let signature = back.sign(b"message").unwrap();
            verify_signature(
                key.public_key(),
                &signature.method,
                b"message",
                &signature.sig,
            )
            .unwrap();
        }
    }

    #[tokio::test]
    async fn the_boundary_reports_only_keys_held_for_the_gun_and_role() {
        let (_dir, db) = temp_db();
        let local = service(&db, "pass", KeyAlgorithm::Ed25519).await;
        let signer: &dyn KeySigner = &local;
        let timestamp = signer.create_key(GUN, "timestamp").await.unwrap();
        let snapshot = signer.create_key(GUN, "snapshot").await.unwrap();
        let candidates = vec![
            "0".repeat(64),
            snapshot.id().to_string(),
            timestamp.id().to_string(),
        ];
        let held = signer
            .held_among(GUN, "timestamp", &candidates)
            .await
            .unwrap();
        assert_eq!(held, vec![timestamp.id().to_string()]);
        let other = signer
            .held_among("example.com/other", "timestamp", &candidates)
            .await
            .unwrap();
        assert!(other.is_empty(), "{other:?}");
        let signature = signer.sign(timestamp.id(), b"message").await.unwrap();
        verify_signature(&timestamp, &signature.method, b"message", &signature.sig).unwrap();
        let public = signer.public_key(timestamp.id()).await.unwrap();
        assert_eq!(public.id(), timestamp.id());
    }

    #[tokio::test]
    async fn notary_signer_keys_are_resealed_and_sign() {
        let (_dir, db) = temp_db();
        let keys = service(&db, "notarium pass", KeyAlgorithm::EcdsaP256).await;

        // Ed25519: 96 bytes, public key first.
        let ed = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let pkcs8 = ed.to_pkcs8().unwrap();
        let public = ed.public_key().public_bytes();
        let mut raw = public.to_vec();
        raw.extend_from_slice(&pkcs8[16..48]);
        raw.extend_from_slice(public);
        let row = notary_row(&ed, &raw, "alias pass");
        let resealed = keys
            .reseal_notary_key(&row, GUN, Passphrase::new("alias pass"))
            .await
            .unwrap();
        assert_eq!(resealed.key_id, ed.public_key().id());
        assert!(!resealed.sealed_private.contains("PBES2"));
        keys.store.put_key(resealed).await.unwrap();
        let signature = keys.sign(ed.public_key().id(), b"message").await.unwrap();
        verify_signature(
            ed.public_key(),
            &signature.method,
            b"message",
            &signature.sig,
        )
        .unwrap();

        // A wrong passphrase, a row whose key ID belongs to another key, a
        // truncated private key: each refused with its own error.
        assert!(matches!(
            keys.reseal_notary_key(&row, GUN, Passphrase::new("wrong"))
                .await,
            Err(Error::WrongPassphrase)
        ));
        let mut foreign = row.clone();
        foreign.key_id = "0".repeat(64);
        assert!(matches!(
            keys.reseal_notary_key(&foreign, GUN, Passphrase::new("alias pass"))
                .await,
            Err(Error::KeyMismatch { .. })
        ));
        let short = notary_row(&ed, &raw[..64], "alias pass");
        assert!(matches!(
            keys.reseal_notary_key(&short, GUN, Passphrase::new("alias pass"))
                .await,
            Err(Error::KeyMismatch { .. })
        ));
    }

    #[tokio::test]
    async fn unused_key_is_reused_until_it_signs() {
        let (_dir, db) = temp_db();
        let keys = service(&db, "pass", KeyAlgorithm::EcdsaP256).await;

        let first = keys.create_key(GUN, "timestamp").await.unwrap();
        assert_eq!(first.keytype(), &KeyType::Ecdsa);
        let again = keys.create_key(GUN, "timestamp").await.unwrap();
        assert_eq!(again.id(), first.id());
        assert_eq!(
            keys.held_key_ids(GUN, "timestamp").await.unwrap(),
            [first.id()]
        );

        // Other roles and GUNs get their own keys.
        let snapshot = keys.create_key(GUN, "snapshot").await.unwrap();
        let other = keys
            .create_key("example.com/other", "timestamp")
            .await
            .unwrap();
        assert_ne!(snapshot.id(), first.id());
        assert_ne!(other.id(), first.id());

        let message = br#"{"_type":"Timestamp","version":1}"#;
        let signature = keys.sign(first.id(), message).await.unwrap();
        assert_eq!(signature.keyid, first.id());
        verify_signature(&first, &signature.method, message, &signature.sig).unwrap();
        assert!(verify_signature(&first, &signature.method, b"other", &signature.sig).is_err());

        // The first use is recorded by the publish that stores what the key
        // signed; until then it counts as used in this process.
        assert_eq!(keys.unrecorded_uses(), [first.id()]);
        assert_eq!(
            keys.store.get_key(first.id()).await.unwrap().last_used,
            None
        );

        // Used now: the next create mints a new key, listed first.
        let second = keys.create_key(GUN, "timestamp").await.unwrap();
        assert_ne!(second.id(), first.id());
        assert_eq!(
            keys.held_key_ids(GUN, "timestamp").await.unwrap(),
            [second.id(), first.id()]
        );
        assert_eq!(keys.current_key(GUN, "timestamp").await.unwrap(), second);
        assert_eq!(keys.public_key(first.id()).await.unwrap(), first);
        // The used key still signs.
        keys.sign(first.id(), message).await.unwrap();
        keys.store
            .publish_as(GUN, Vec::new(), None, &keys.unrecorded_uses())
            .await
            .unwrap();
        keys.uses_recorded(&[first.id().to_string()]);
        assert!(keys.unrecorded_uses().is_empty());
        assert!(
            keys.store
                .get_key(first.id())
                .await
                .unwrap()
                .last_used
                .is_some()
        );
    }

    #[tokio::test]
    async fn concurrent_creates_share_one_key() {
        let (_dir, db) = temp_db();
        let keys = service(&db, "pass", KeyAlgorithm::EcdsaP256).await;
        let (a, b) = tokio::join!(
            keys.create_key(GUN, "timestamp"),
            keys.create_key(GUN, "timestamp")
        );
        assert_eq!(a.unwrap().id(), b.unwrap().id());
        assert_eq!(keys.held_key_ids(GUN, "timestamp").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn ed25519_is_configurable_and_keyed_separately() {
        let (_dir, db) = temp_db();
        let ecdsa = service(&db, "pass", KeyAlgorithm::EcdsaP256).await;
        let ed = service(&db, "pass", KeyAlgorithm::Ed25519).await;
        let ecdsa_key = ecdsa.create_key(GUN, "snapshot").await.unwrap();
        // An unused ecdsa key is not handed out for an ed25519 request.
        let ed_key = ed.create_key(GUN, "snapshot").await.unwrap();
        assert_eq!(ed_key.keytype(), &KeyType::Ed25519);
        assert_ne!(ed_key.id(), ecdsa_key.id());
        let signature = ed.sign(ed_key.id(), b"message").await.unwrap();
        assert_eq!(signature.method, tuf::Method::EdDsa);
        verify_signature(&ed_key, &signature.method, b"message", &signature.sig).unwrap();
    }

    #[tokio::test]
    async fn only_the_sealed_form_is_stored() {
        let (_dir, db) = temp_db();
        let keys = service(&db, "pass", KeyAlgorithm::EcdsaP256).await;
        let public = keys.create_key(GUN, "timestamp").await.unwrap();
        let stored = keys.store.get_key(public.id()).await.unwrap();

        let kek = keys.kek().await.unwrap();
        let pkcs8 = kek.open(&stored.sealed_private).unwrap();
        let key = SigningKey::from_pkcs8(KeyAlgorithm::EcdsaP256, &pkcs8).unwrap();
        assert_eq!(key.public_key(), &public);

        // Nothing of the plaintext shows in the column, in any encoding.
        let column = stored.sealed_private.as_bytes();
        let contains = |needle: &[u8]| column.windows(needle.len()).any(|w| w == needle);
        assert!(!contains(&pkcs8));
        assert!(!contains(
            base64::engine::general_purpose::STANDARD
                .encode(&*pkcs8)
                .as_bytes()
        ));
        assert!(!contains(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(&*pkcs8)
                .as_bytes()
        ));
        assert!(!contains(hex::encode(&*pkcs8).as_bytes()));
        assert!(stored.sealed_private.starts_with("eyJ"));
        assert_eq!(stored.sealed_private.split('.').count(), 5);
        assert_eq!(stored.public, public.public_bytes());
        assert_eq!(stored.algorithm, "ecdsa");
    }

    fn header_of(token: &str) -> serde_json::Value {
        let protected = token.split('.').next().unwrap();
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(protected)
            .unwrap();
        serde_json::from_slice(&json).unwrap()
    }

    #[tokio::test]
    async fn new_keys_are_wrapped_by_the_database_kek() {
        let (_dir, db) = temp_db();
        let keys = service(&db, "pass", KeyAlgorithm::EcdsaP256).await;
        let a = keys.create_key(GUN, "timestamp").await.unwrap();
        let b = keys.create_key(GUN, "snapshot").await.unwrap();
        let params = keys.store.kek_params().await.unwrap().unwrap();
        assert_eq!(params.iterations, ITERATIONS);
        let kek = keys.kek().await.unwrap();
        for key in [&a, &b] {
            let token = keys.store.get_key(key.id()).await.unwrap().sealed_private;
            let header = header_of(&token);
            assert_eq!(header["alg"], "A256KW");
            assert_eq!(header["kid"].as_str(), Some(kek.id()));
            assert!(header.get("p2c").is_none());
        }
        // A restarted process (same passphrase) derives the same KEK.
        keys.store.close().await;
        let again = service(&db, "pass", KeyAlgorithm::EcdsaP256).await;
        again.unlock().await.unwrap();
        assert_eq!(again.kek().await.unwrap().id(), kek.id());
        again.sign(a.id(), b"m").await.unwrap();
        assert_eq!(again.store.kek_params().await.unwrap().unwrap(), params);
    }

    #[tokio::test]
    async fn keys_sealed_the_old_way_still_open() {
        let (_dir, db) = temp_db();
        let store = Arc::new(SqliteStore::open(&db).await.unwrap());
        let key = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let legacy = sealed::seal(&key.to_pkcs8().unwrap(), &Passphrase::new("old"), 1000).unwrap();
        store
            .put_key(NewKey {
                key_id: key.public_key().id().to_string(),
                gun: GUN.into(),
                role: "timestamp".into(),
                algorithm: "ecdsa".into(),
                public: key.public_key().public_bytes().to_vec(),
                sealed_private: legacy,
            })
            .await
            .unwrap();
        store.close().await;

        // A wrong passphrase is caught by the old key itself at unlock.
        let wrong = service(&db, "new", KeyAlgorithm::EcdsaP256).await;
        assert!(matches!(wrong.unlock().await, Err(Error::WrongPassphrase)));
        assert_eq!(wrong.store.kek_params().await.unwrap(), None);

        let keys = service(&db, "old", KeyAlgorithm::EcdsaP256).await;
        keys.unlock().await.unwrap();
        let signature = keys.sign(key.public_key().id(), b"m").await.unwrap();
        verify_signature(key.public_key(), &signature.method, b"m", &signature.sig).unwrap();
        // New keys beside it use the KEK.
        let new = keys.create_key(GUN, "snapshot").await.unwrap();
        let token = keys.store.get_key(new.id()).await.unwrap().sealed_private;
        assert_eq!(header_of(&token)["alg"], "A256KW");
    }

    #[tokio::test]
    async fn a_database_without_keys_takes_a_new_passphrase() {
        let (_dir, db) = temp_db();
        let first = service(&db, "first", KeyAlgorithm::EcdsaP256).await;
        first.unlock().await.unwrap();
        let before = first.store.kek_params().await.unwrap().unwrap();
        first.store.close().await;
        // Nothing is sealed yet, so nothing is lost by starting afresh.
        let second = service(&db, "second", KeyAlgorithm::EcdsaP256).await;
        second.unlock().await.unwrap();
        let after = second.store.kek_params().await.unwrap().unwrap();
        assert_ne!(after.salt, before.salt);
        second.create_key(GUN, "timestamp").await.unwrap();
        second.store.close().await;
        // Now a key exists: the first passphrase is refused.
        let first = service(&db, "first", KeyAlgorithm::EcdsaP256).await;
        assert!(matches!(first.unlock().await, Err(Error::WrongPassphrase)));
    }

    #[tokio::test]
    async fn retired_keys_never_sign_nor_get_handed_out() {
        let (_dir, db) = temp_db();
        let keys = service(&db, "pass", KeyAlgorithm::EcdsaP256).await;
        let old = keys.create_key(GUN, "timestamp").await.unwrap();
        keys.sign(old.id(), b"m").await.unwrap();
        let deleted = keys.store.delete(GUN, "tester").await.unwrap();
        assert_eq!(deleted.retired_keys, [old.id()]);
        keys.forget(GUN);
        assert!(matches!(
            keys.sign(old.id(), b"m").await,
            Err(Error::RetiredKey { .. })
        ));
        assert!(
            keys.held_key_ids(GUN, "timestamp")
                .await
                .unwrap()
                .is_empty()
        );
        assert!(keys.retired(GUN, old.id()).await.unwrap().is_some());
        assert_eq!(keys.retired("other/gun", old.id()).await.unwrap(), None);
        assert_eq!(keys.retired(GUN, "unknown").await.unwrap(), None);
        let new = keys.create_key(GUN, "timestamp").await.unwrap();
        assert_ne!(new.id(), old.id());
        assert_eq!(keys.retired(GUN, new.id()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn wrong_passphrase_after_reopening_is_a_clear_error() {
        let (_dir, db) = temp_db();
        let key_id = {
            let keys = service(&db, "right", KeyAlgorithm::EcdsaP256).await;
            let public = keys.create_key(GUN, "timestamp").await.unwrap();
            keys.store.close().await;
            public.id().to_string()
        };
        let keys = service(&db, "wrong", KeyAlgorithm::EcdsaP256).await;
        // Public data needs no passphrase.
        assert_eq!(keys.public_key(&key_id).await.unwrap().id(), key_id);
        let err = keys.sign(&key_id, b"message").await.unwrap_err();
        assert!(matches!(err, Error::WrongPassphrase), "{err:?}");
        assert!(err.to_string().contains("wrong passphrase"));
        // A failed signature does not count as a use.
        assert_eq!(keys.store.get_key(&key_id).await.unwrap().last_used, None);

        let keys = service(&db, "right", KeyAlgorithm::EcdsaP256).await;
        keys.sign(&key_id, b"message").await.unwrap();
    }

    #[tokio::test]
    async fn unknown_and_mismatched_keys_are_refused() {
        let (_dir, db) = temp_db();
        let keys = service(&db, "pass", KeyAlgorithm::EcdsaP256).await;
        assert!(matches!(
            keys.sign("no-such-key", b"m").await,
            Err(Error::UnknownKey { key_id }) if key_id == "no-such-key"
        ));
        assert!(matches!(
            keys.current_key(GUN, "timestamp").await,
            Err(Error::NoKey { .. })
        ));

        // A row whose sealed key belongs to another key ID.
        let a = keys.create_key(GUN, "timestamp").await.unwrap();
        let b = keys.create_key(GUN, "snapshot").await.unwrap();
        let sealed_b = keys.store.get_key(b.id()).await.unwrap().sealed_private;
        keys.store
            .put_key(NewKey {
                key_id: "forged".into(),
                gun: GUN.into(),
                role: "targets".into(),
                algorithm: "ecdsa".into(),
                public: a.public_bytes().to_vec(),
                sealed_private: sealed_b,
            })
            .await
            .unwrap();
        assert!(matches!(
            keys.sign("forged", b"m").await,
            Err(Error::KeyMismatch { .. })
        ));
    }

    #[tokio::test]
    async fn iteration_setting_is_bounded() {
        let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
        let keys = KeyService::new(store, Passphrase::new("p"), KeyAlgorithm::EcdsaP256);
        assert!(matches!(
            keys.with_pbkdf2_iterations(10),
            Err(Error::UnsupportedSealing { field: "p2c", .. })
        ));
    }

    #[tokio::test]
    async fn debug_never_shows_the_passphrase() {
        let (_dir, db) = temp_db();
        let keys = service(&db, "hunter2-secret", KeyAlgorithm::EcdsaP256).await;
        let shown = format!("{keys:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("EcdsaP256"));
    }
}

//! Server-held timestamp and snapshot keys: the only module that sees
//! private key bytes (PROTOCOL.md §1.4, §5). It hands out public keys and
//! signatures, nothing else.
//!
//! Keys live in the [`Store`] sealed under a passphrase ([`sealed`]). A key
//! is unsealed when it first signs and then kept in memory (bounded), as
//! notary-signer keeps its keys; the decrypted PKCS#8 bytes are zeroized.

pub mod sealed;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use thiserror::Error;

use crate::store::{self, NewKey, Store, StoredKey};
use crate::striped::StripedLocks;
use crate::tuf::{self, KeyAlgorithm, KeyType, PublicKey, Signature, SigningKey};

pub use sealed::Passphrase;

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

    #[error("stored key {key_id} has unsupported algorithm {algorithm:?}")]
    UnsupportedAlgorithm { key_id: String, algorithm: String },

    /// The stored public key, its ID and the sealed private key disagree.
    #[error("stored key {key_id} does not match its public key")]
    KeyMismatch { key_id: String },

    #[error("sealed key cannot be opened: wrong passphrase (or a damaged wrapped key)")]
    WrongPassphrase,

    #[error("sealed key failed authentication: it has been modified")]
    SealedKeyTampered,

    #[error("malformed sealed key: {reason}")]
    MalformedSealedKey { reason: &'static str },

    #[error("sealed key uses unsupported {field} {value}")]
    UnsupportedSealing { field: &'static str, value: String },

    #[error("could not seal key: {operation} failed")]
    Sealing { operation: &'static str },
}

/// Creates, holds and signs with server keys, sealed in a [`Store`].
pub struct KeyService<S: Store> {
    store: Arc<S>,
    passphrase: Arc<Passphrase>,
    algorithm: KeyAlgorithm,
    iterations: u32,
    /// Serialises `create_key`, so two concurrent requests for the same
    /// (gun, role) get the same unused key rather than two new ones.
    create_locks: StripedLocks,
    /// Keys already unsealed, so signing a timestamp does not pay for
    /// PBKDF2 each time (notary-signer also keeps its keys in memory).
    /// Bounded: emptied when full.
    unsealed: std::sync::Mutex<HashMap<String, Arc<SigningKey>>>,
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
    /// `key_algorithm`; ECDSA P-256 is Notary's default) and sealed with
    /// [`sealed::DEFAULT_ITERATIONS`].
    pub fn new(store: Arc<S>, passphrase: Passphrase, algorithm: KeyAlgorithm) -> Self {
        Self {
            store,
            passphrase: Arc::new(passphrase),
            algorithm,
            iterations: sealed::DEFAULT_ITERATIONS,
            create_locks: StripedLocks::new(CREATE_LOCK_STRIPES),
            unsealed: std::sync::Mutex::default(),
        }
    }

    /// PBKDF2 iterations for newly sealed keys; must lie in
    /// [`sealed::ITERATIONS`]. Existing keys open with whatever they were
    /// sealed with.
    pub fn with_pbkdf2_iterations(mut self, iterations: u32) -> Result<Self, Error> {
        self.iterations = sealed::check_iterations(iterations.into())?;
        Ok(self)
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// notary-signer's `Create` (PROTOCOL.md §1.4, §5): a key for (gun,
    /// role) of the configured algorithm that has never signed is returned
    /// again instead of minting another, so repeated `GET …key` calls
    /// cannot fill the database. Otherwise a new key is generated and
    /// stored sealed.
    pub async fn create_key(&self, gun: &str, role: &str) -> Result<PublicKey, Error> {
        let _creating = self.create_locks.for_key(&[gun, role]).lock().await;
        let keytype = keytype_of(self.algorithm);
        let held = self.store.keys_for(gun, role).await?;
        if let Some(unused) = held
            .iter()
            .find(|key| key.last_used.is_none() && key.algorithm == keytype.as_str())
        {
            return public_key_of(unused);
        }

        let algorithm = self.algorithm;
        let passphrase = Arc::clone(&self.passphrase);
        let iterations = self.iterations;
        // Key generation and PBKDF2 are CPU-bound: keep them off the
        // async workers.
        let (public, sealed_private) = blocking(move || {
            let key = SigningKey::generate(algorithm)?;
            let pkcs8 = key.to_pkcs8()?;
            let sealed_private = sealed::seal(&pkcs8, &passphrase, iterations)?;
            Ok((key.public_key().clone(), sealed_private))
        })
        .await?;
        self.store
            .put_key(NewKey {
                key_id: public.id().to_string(),
                gun: gun.to_string(),
                role: role.to_string(),
                algorithm: keytype.as_str().to_string(),
                public: public.public_bytes().to_vec(),
                sealed_private,
            })
            .await?;
        Ok(public)
    }

    pub async fn public_key(&self, key_id: &str) -> Result<PublicKey, Error> {
        public_key_of(&self.stored(key_id).await?)
    }

    /// IDs of the keys held for (gun, role), newest first.
    pub async fn held_key_ids(&self, gun: &str, role: &str) -> Result<Vec<String>, Error> {
        let held = self.store.keys_for(gun, role).await?;
        Ok(held.into_iter().map(|key| key.key_id).collect())
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

    /// Signs `message` (canonical `signed` bytes) with a held key, then
    /// records the key as used. The signer hashes per key type, as
    /// notary-signer does.
    pub async fn sign(&self, key_id: &str, message: &[u8]) -> Result<Signature, Error> {
        if let Some(key) = self.unsealed_key(key_id) {
            // Already used (it was unsealed to sign), so nothing to record.
            return Ok(key.sign(message)?);
        }
        let stored = self.stored(key_id).await?;
        let algorithm = algorithm_of(&stored)?;
        let expected = public_key_of(&stored)?;
        let passphrase = Arc::clone(&self.passphrase);
        let key_id_owned = stored.key_id.clone();
        let sealed_private = stored.sealed_private;
        let key = blocking(move || {
            let pkcs8 = sealed::open(&sealed_private, &passphrase)?;
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
        if stored.last_used.is_none() {
            self.store.mark_key_used(key_id).await?;
        }
        self.remember_unsealed(key_id, key);
        Ok(signature)
    }

    fn unsealed_key(&self, key_id: &str) -> Option<Arc<SigningKey>> {
        self.unsealed.lock().ok()?.get(key_id).cloned()
    }

    fn remember_unsealed(&self, key_id: &str, key: SigningKey) {
        if let Ok(mut unsealed) = self.unsealed.lock() {
            if unsealed.len() >= MAX_UNSEALED {
                unsealed.clear();
            }
            unsealed.insert(key_id.to_string(), Arc::new(key));
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

        let pkcs8 = sealed::open(&stored.sealed_private, &Passphrase::new("pass")).unwrap();
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

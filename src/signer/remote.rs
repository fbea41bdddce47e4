//! A remote signer: notary-signer's gRPC API (PROTOCOL.md §5, §7.2) over
//! mutual TLS, as notary-server's `trust_service: {type: "remote"}` uses it.
//! Only public keys and signatures come back; private keys stay with the
//! signer.
//!
//! Nothing the signer says is taken on trust: a described key must hash to
//! its ID and every signature must verify with the key's public key before
//! it is used. Key descriptions are cached (an ID names one public key for
//! good), so a steady publish costs one Sign call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::lru::Lru;
use super::proto::key_management_client::KeyManagementClient;
use super::proto::signer_client::SignerClient;
use super::proto::{CreateKeyRequest, KeyId, SignatureRequest};
use super::{Error, KeySigner, SignerFuture, keytype_of};
use crate::tuf::sig::verify_signature;
use crate::tuf::{self, KeyAlgorithm, KeyType, Method, PublicKey, Signature};

/// notary's gRPC health service names (notary's const.go): one per API.
pub const HEALTH_KEY_MANAGEMENT: &str = "grpc.health.v1.Health.KeyManagement";
pub const HEALTH_SIGNER: &str = "grpc.health.v1.Health.Signer";

/// How long one call to the signer may take before it counts as down.
/// notary-server allows its health check 10 s; a signature should take
/// well under a second.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// A health check answers within this, so a signer that does not answer
/// cannot stall the health endpoint for a whole call deadline.
pub const HEALTH_DEADLINE: Duration = Duration::from_secs(2);

/// At most this many key descriptions are cached (a few hundred bytes
/// each); two per repository in use.
pub const MAX_CACHED_KEYS: usize = 8192;

/// Where the signer is and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    pub hostname: String,
    pub port: u16,
    /// PEM: the CA that issued the signer's certificate.
    pub ca_pem: Vec<u8>,
    /// PEM: this server's client certificate (chain) and its key.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
    pub algorithm: KeyAlgorithm,
    pub deadline: Duration,
}

/// The client half of notary-signer's API.
#[derive(Debug, Clone)]
pub struct RemoteSigner {
    keys: KeyManagementClient<Channel>,
    signer: SignerClient<Channel>,
    health: HealthClient<Channel>,
    algorithm: KeyAlgorithm,
    described: Arc<KeyCache>,
}

/// What the signer said about a key.
#[derive(Debug, Clone)]
struct Described {
    public: PublicKey,
    role: String,
    /// The repository the key was asked for, so [`KeySigner::forget`] can
    /// drop it; `None` when looked up by ID alone.
    gun: Option<Arc<str>>,
}

/// Key ID → description. A key ID is the hash of its public key, so an
/// entry never goes stale; it is dropped when the signer says it no longer
/// holds the key, or when the key's repository is deleted. "Not found" is
/// never cached: the key may be created or imported later.
#[derive(Debug)]
struct KeyCache(Mutex<Lru<String, Described>>);

impl KeyCache {
    fn new(capacity: usize) -> Self {
        Self(Mutex::new(Lru::new(capacity)))
    }

    fn get(&self, key_id: &str) -> Option<Described> {
        self.0.lock().ok()?.get(&key_id.to_string())
    }

    fn put(&self, key_id: &str, described: Described) {
        if let Ok(mut cache) = self.0.lock() {
            cache.put(key_id.to_string(), described);
        }
    }

    fn evict(&self, key_id: &str) {
        if let Ok(mut cache) = self.0.lock() {
            cache.remove_where(|id, _| id == key_id);
        }
    }

    /// Drops the keys of `gun` and those of unknown repository (they may be
    /// its keys), so a deleted repository's keys are asked about afresh.
    fn forget(&self, gun: &str) {
        if let Ok(mut cache) = self.0.lock() {
            cache.remove_where(|_, described| described.gun.as_deref().is_none_or(|of| of == gun));
        }
    }
}

impl RemoteSigner {
    /// Sets up the connection without dialling: as with notary-server, a
    /// signer that is down at start-up does not stop the server; calls fail
    /// with [`Error::SignerUnavailable`] until it is up.
    pub fn connect_lazy(config: &RemoteConfig) -> Result<Self, Error> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&config.ca_pem))
            .domain_name(config.hostname.clone());
        if let Some((cert, key)) = &config.client_identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        let uri = format!("https://{}:{}", config.hostname, config.port);
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| Error::SignerSetup {
                reason: e.to_string(),
            })?
            .tls_config(tls)
            .map_err(|e| Error::SignerSetup {
                reason: e.to_string(),
            })?
            .connect_timeout(config.deadline)
            .timeout(config.deadline);
        let channel = endpoint.connect_lazy();
        Ok(Self {
            keys: KeyManagementClient::new(channel.clone()),
            signer: SignerClient::new(channel.clone()),
            health: HealthClient::new(channel),
            algorithm: config.algorithm,
            described: Arc::new(KeyCache::new(MAX_CACHED_KEYS)),
        })
    }

    /// Whether both of the signer's services report SERVING (what
    /// notary-server's "Trust operational" check asks).
    async fn health(&self) -> Result<(), Error> {
        tokio::time::timeout(HEALTH_DEADLINE, self.serving())
            .await
            .map_err(|_| Error::SignerUnavailable {
                reason: "no health answer in time".into(),
            })?
    }

    async fn serving(&self) -> Result<(), Error> {
        for service in [HEALTH_KEY_MANAGEMENT, HEALTH_SIGNER] {
            let response = self
                .health
                .clone()
                .check(HealthCheckRequest {
                    service: service.to_string(),
                })
                .await
                .map_err(|status| from_status(&status, ""))?;
            if response.get_ref().status != ServingStatus::Serving as i32 {
                return Err(Error::SignerUnavailable {
                    reason: format!("{service} is not serving"),
                });
            }
        }
        Ok(())
    }

    async fn key_info(&self, key_id: &str) -> Result<(PublicKey, String), Error> {
        let response = self
            .keys
            .clone()
            .get_key_info(KeyId {
                id: key_id.to_string(),
            })
            .await
            .map_err(|status| from_status(&status, key_id))?
            .into_inner();
        let algorithm = response
            .key_info
            .and_then(|info| info.algorithm)
            .map(|a| a.algorithm)
            .unwrap_or_default();
        let public = logged(checked_key(&algorithm, response.public_key, key_id))?;
        Ok((public, response.role))
    }

    /// The signer's description of `key_id`, from the cache or asked for
    /// (and then cached, with `gun` if the caller knows it).
    async fn describe(&self, key_id: &str, gun: Option<&str>) -> Result<Described, Error> {
        if let Some(known) = self.described.get(key_id) {
            return Ok(known);
        }
        let (public, role) = self.key_info(key_id).await?;
        let described = Described {
            public,
            role,
            gun: gun.map(Arc::from),
        };
        self.described.put(key_id, described.clone());
        Ok(described)
    }
}

/// A public key as the signer described it, checked against the ID it
/// claims.
fn checked_key(algorithm: &str, public: Vec<u8>, key_id: &str) -> Result<PublicKey, Error> {
    let key = PublicKey::new(KeyType::parse(algorithm), public);
    if !key_id.is_empty() && key.id() != key_id {
        return Err(Error::SignerKeyMismatch {
            key_id: key_id.to_string(),
            actual: key.id().to_string(),
        });
    }
    Ok(key)
}

/// Checks a signature the signer returned against the key's public key: a
/// signer that answers with another key's signature (or garbage) must not
/// get it published.
fn checked_signature(key: &PublicKey, signature: &Signature, message: &[u8]) -> Result<(), Error> {
    match verify_signature(key, &signature.method, message, &signature.sig) {
        Ok(()) => Ok(()),
        Err(
            tuf::Error::MethodKeyMismatch { .. }
            | tuf::Error::UnsupportedMethod { .. }
            | tuf::Error::UnknownKeyType { .. },
        ) => Err(Error::SignerWrongMethod {
            key_id: signature.keyid.clone(),
            method: signature.method.to_string(),
            keytype: key.keytype().to_string(),
        }),
        Err(_) => Err(Error::SignerBadSignature {
            key_id: signature.keyid.clone(),
        }),
    }
}

/// Logs a signer answer that failed a check: a signer handing out wrong
/// keys or signatures is misconfigured or compromised, which the operator
/// must hear about even where the caller recovers (a re-sign on read falls
/// back to the last good files).
fn logged<T>(checked: Result<T, Error>) -> Result<T, Error> {
    if let Err(error) = &checked {
        tracing::error!(%error, "the remote signer's answer failed verification");
    }
    checked
}

/// gRPC status to the signer layer's error: a signer that cannot be reached
/// or answer in time is unavailable (503 upstream); a key it does not know
/// is an unknown key; anything else is the signer's failure.
fn from_status(status: &tonic::Status, key_id: &str) -> Error {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => Error::SignerUnavailable {
            reason: status.to_string(),
        },
        // A status made from a transport error (e.g. the signer refused
        // our client certificate after the handshake) rather than one the
        // signer sent: the signer cannot be used now.
        Code::Unknown if std::error::Error::source(status).is_some() => Error::SignerUnavailable {
            reason: status.to_string(),
        },
        Code::NotFound => Error::UnknownKey {
            key_id: key_id.to_string(),
        },
        // The status's message only: its Display adds metadata.
        code => Error::SignerFailed {
            code,
            reason: status.message().to_string(),
        },
    }
}

impl KeySigner for RemoteSigner {
    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    fn create_key<'a>(&'a self, gun: &'a str, role: &'a str) -> SignerFuture<'a, PublicKey> {
        Box::pin(async move {
            let algorithm = keytype_of(self.algorithm).as_str().to_string();
            let response = self
                .keys
                .clone()
                .create_key(CreateKeyRequest {
                    algorithm: algorithm.clone(),
                    gun: gun.to_string(),
                    role: role.to_string(),
                })
                .await
                .map_err(|status| match status.code() {
                    // notarium's signer says so for an algorithm it does not
                    // make (notary-signer answers INTERNAL for everything).
                    Code::InvalidArgument => Error::SignerRefusedAlgorithm {
                        algorithm,
                        reason: status.message().to_string(),
                    },
                    _ => from_status(&status, ""),
                })?
                .into_inner();
            let info = response.key_info.unwrap_or_default();
            let key_id = info.key_id.map(|k| k.id).unwrap_or_default();
            let algorithm = info.algorithm.map(|a| a.algorithm).unwrap_or_default();
            let public = logged(checked_key(&algorithm, response.public_key, &key_id))?;
            self.described.put(
                public.id(),
                Described {
                    public: public.clone(),
                    role: role.to_string(),
                    gun: Some(Arc::from(gun)),
                },
            );
            Ok(public)
        })
    }

    fn public_key<'a>(&'a self, key_id: &'a str) -> SignerFuture<'a, PublicKey> {
        Box::pin(async move { Ok(self.describe(key_id, None).await?.public) })
    }

    fn held_among<'a>(
        &'a self,
        gun: &'a str,
        role: &'a str,
        candidates: &'a [String],
    ) -> SignerFuture<'a, Vec<String>> {
        // notary-signer describes a key by ID with its role (not its GUN);
        // a root lists key IDs, which are hashes of the public key, so a
        // held key of that role is the one root means.
        Box::pin(async move {
            let mut held = Vec::new();
            for key_id in candidates {
                match self.describe(key_id, Some(gun)).await {
                    Ok(described) if described.role == role => held.push(key_id.clone()),
                    Ok(_) | Err(Error::UnknownKey { .. }) => {}
                    Err(other) => return Err(other),
                }
            }
            Ok(held)
        })
    }

    fn forget(&self, gun: &str) {
        self.described.forget(gun);
    }

    fn check_health(&self) -> SignerFuture<'_, ()> {
        Box::pin(self.health())
    }

    fn sign<'a>(&'a self, key_id: &'a str, message: &'a [u8]) -> SignerFuture<'a, Signature> {
        Box::pin(async move {
            // The public key to check the answer with; known already on a
            // steady publish (held_among asked), so this costs no call.
            let key = self.describe(key_id, None).await?.public;
            let response = self
                .signer
                .clone()
                .sign(SignatureRequest {
                    key_id: Some(KeyId {
                        id: key_id.to_string(),
                    }),
                    content: message.to_vec(),
                })
                .await
                .map_err(|status| {
                    if status.code() == Code::NotFound {
                        // Deleted from the signer since it was described:
                        // the next request asks afresh rather than trusting
                        // the cache.
                        self.described.evict(key_id);
                        return Error::SignerLostKey {
                            key_id: key_id.to_string(),
                        };
                    }
                    from_status(&status, key_id)
                })?
                .into_inner();
            let method = response.algorithm.map(|a| a.algorithm).unwrap_or_default();
            let signature = Signature {
                keyid: key_id.to_string(),
                method: Method::parse(&method),
                sig: response.content,
            };
            logged(checked_signature(&key, &signature, message))?;
            Ok(signature)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_statuses_map_to_the_signer_layers_errors() {
        let key = "ab".repeat(32);
        for status in [
            tonic::Status::unavailable("connection refused"),
            tonic::Status::deadline_exceeded("slow"),
        ] {
            assert!(
                matches!(from_status(&status, &key), Error::SignerUnavailable { .. }),
                "{status:?}"
            );
        }
        assert!(matches!(
            from_status(&tonic::Status::not_found("no such key"), &key),
            Error::UnknownKey { key_id } if key_id == key
        ));
        // A status the signer itself sent (no transport cause) is its failure.
        assert!(matches!(
            from_status(&tonic::Status::unknown("boom"), &key),
            Error::SignerFailed { .. }
        ));
        assert!(matches!(
            from_status(&tonic::Status::internal("boom"), &key),
            Error::SignerFailed { .. }
        ));
    }

    #[test]
    fn a_key_the_signer_describes_must_match_its_id() {
        let key = crate::tuf::SigningKey::generate(KeyAlgorithm::Ed25519)
            .unwrap()
            .public_key()
            .clone();
        let bytes = key.public_bytes().to_vec();
        assert!(checked_key("ed25519", bytes.clone(), key.id()).is_ok());
        let claimed = "00".repeat(32);
        assert!(matches!(
            checked_key("ed25519", bytes.clone(), &claimed),
            Err(Error::SignerKeyMismatch { key_id, actual })
                if key_id == claimed && actual == key.id()
        ));
        // The same bytes under another key type are another key.
        assert!(matches!(
            checked_key("ecdsa", bytes, key.id()),
            Err(Error::SignerKeyMismatch { .. })
        ));
    }

    #[test]
    fn a_signer_failure_keeps_the_code_and_message_only() {
        let error = from_status(&tonic::Status::internal("Signing failed"), "k");
        assert!(matches!(
            &error,
            Error::SignerFailed { code: Code::Internal, reason } if reason == "Signing failed"
        ));
        assert_eq!(
            error.to_string(),
            "the signer failed (Internal error): Signing failed"
        );
    }

    fn key(algorithm: KeyAlgorithm) -> crate::tuf::SigningKey {
        crate::tuf::SigningKey::generate(algorithm).unwrap()
    }

    #[test]
    fn signatures_from_the_signer_must_verify_with_the_key() {
        let message = br#"{"_type":"Timestamp","version":2}"#;
        for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
            let signer = key(algorithm);
            let public = signer.public_key();
            let good = signer.sign(message).unwrap();
            checked_signature(public, &good, message).unwrap();

            // Another key's signature, presented under this key's ID.
            let mut other = key(algorithm).sign(message).unwrap();
            other.keyid = public.id().to_string();
            assert!(matches!(
                checked_signature(public, &other, message),
                Err(Error::SignerBadSignature { key_id }) if key_id == public.id()
            ));
            // A signature over other bytes.
            assert!(matches!(
                checked_signature(public, &good, b"{}"),
                Err(Error::SignerBadSignature { .. })
            ));
            // Garbage.
            let mut garbage = good.clone();
            garbage.sig = vec![7; 3];
            assert!(matches!(
                checked_signature(public, &garbage, message),
                Err(Error::SignerBadSignature { .. })
            ));
        }
    }

    #[test]
    fn a_method_that_does_not_fit_the_key_is_refused() {
        let message = b"canonical";
        let ecdsa = key(KeyAlgorithm::EcdsaP256);
        let mut signature = ecdsa.sign(message).unwrap();
        for method in [Method::EdDsa, Method::RsaPssSha256, Method::parse("hmac")] {
            signature.method = method.clone();
            assert!(
                matches!(
                    checked_signature(ecdsa.public_key(), &signature, message),
                    Err(Error::SignerWrongMethod { method: m, keytype, .. })
                        if m == method.as_str() && keytype == "ecdsa"
                ),
                "{method}"
            );
        }
        // An Ed25519 signature passed off as ECDSA.
        let ed = key(KeyAlgorithm::Ed25519);
        let mut signature = ed.sign(message).unwrap();
        signature.method = Method::EcdsaRawSha256;
        assert!(matches!(
            checked_signature(ed.public_key(), &signature, message),
            Err(Error::SignerWrongMethod { .. })
        ));
    }

    fn described(gun: Option<&str>) -> Described {
        Described {
            public: key(KeyAlgorithm::Ed25519).public_key().clone(),
            role: "timestamp".into(),
            gun: gun.map(Arc::from),
        }
    }

    #[test]
    fn the_key_cache_forgets_a_deleted_repositorys_keys() {
        let cache = KeyCache::new(16);
        cache.put("a", described(Some("example.com/a")));
        cache.put("b", described(Some("example.com/b")));
        cache.put("anon", described(None));
        cache.forget("example.com/a");
        assert!(cache.get("a").is_none());
        // A key looked up by ID alone may be the deleted repository's.
        assert!(cache.get("anon").is_none());
        assert!(cache.get("b").is_some());
        cache.evict("b");
        assert!(cache.get("b").is_none());
    }

    #[test]
    fn the_key_cache_is_bounded() {
        let cache = KeyCache::new(2);
        for id in ["x", "y", "z"] {
            cache.put(id, described(Some("g")));
        }
        assert!(cache.get("x").is_none());
        assert!(cache.get("y").is_some() && cache.get("z").is_some());
    }
}

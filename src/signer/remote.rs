//! A remote signer: notary-signer's gRPC API (PROTOCOL.md §5, §7.2) over
//! mutual TLS, as notary-server's `trust_service: {type: "remote"}` uses it.
//! Only public keys and signatures come back; private keys stay with the
//! signer.

use std::time::Duration;

use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::proto::key_management_client::KeyManagementClient;
use super::proto::signer_client::SignerClient;
use super::proto::{CreateKeyRequest, KeyId, SignatureRequest};
use super::{Error, KeySigner, SignerFuture, keytype_of};
use crate::tuf::{KeyAlgorithm, KeyType, Method, PublicKey, Signature};

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
        let public = checked_key(&algorithm, response.public_key, key_id)?;
        Ok((public, response.role))
    }
}

/// A public key as the signer described it, checked against the ID it
/// claims.
fn checked_key(algorithm: &str, public: Vec<u8>, key_id: &str) -> Result<PublicKey, Error> {
    let key = PublicKey::new(KeyType::parse(algorithm), public);
    if !key_id.is_empty() && key.id() != key_id {
        return Err(Error::KeyMismatch {
            key_id: key_id.to_string(),
        });
    }
    Ok(key)
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
        _ => Error::SignerFailed {
            reason: status.to_string(),
        },
    }
}

impl KeySigner for RemoteSigner {
    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    fn create_key<'a>(&'a self, gun: &'a str, role: &'a str) -> SignerFuture<'a, PublicKey> {
        Box::pin(async move {
            let response = self
                .keys
                .clone()
                .create_key(CreateKeyRequest {
                    algorithm: keytype_of(self.algorithm).as_str().to_string(),
                    gun: gun.to_string(),
                    role: role.to_string(),
                })
                .await
                .map_err(|status| from_status(&status, ""))?
                .into_inner();
            let info = response.key_info.unwrap_or_default();
            let key_id = info.key_id.map(|k| k.id).unwrap_or_default();
            let algorithm = info.algorithm.map(|a| a.algorithm).unwrap_or_default();
            checked_key(&algorithm, response.public_key, &key_id)
        })
    }

    fn public_key<'a>(&'a self, key_id: &'a str) -> SignerFuture<'a, PublicKey> {
        Box::pin(async move { Ok(self.key_info(key_id).await?.0) })
    }

    fn held_among<'a>(
        &'a self,
        _gun: &'a str,
        role: &'a str,
        candidates: &'a [String],
    ) -> SignerFuture<'a, Vec<String>> {
        // notary-signer describes a key by ID with its role (not its GUN);
        // a root lists key IDs, which are hashes of the public key, so a
        // held key of that role is the one root means.
        Box::pin(async move {
            let mut held = Vec::new();
            for key_id in candidates {
                match self.key_info(key_id).await {
                    Ok((_, held_role)) if held_role == role => held.push(key_id.clone()),
                    Ok(_) | Err(Error::UnknownKey { .. }) => {}
                    Err(other) => return Err(other),
                }
            }
            Ok(held)
        })
    }

    fn check_health(&self) -> SignerFuture<'_, ()> {
        Box::pin(self.health())
    }

    fn sign<'a>(&'a self, key_id: &'a str, message: &'a [u8]) -> SignerFuture<'a, Signature> {
        Box::pin(async move {
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
                .map_err(|status| from_status(&status, key_id))?
                .into_inner();
            let method = response.algorithm.map(|a| a.algorithm).unwrap_or_default();
            Ok(Signature {
                keyid: key_id.to_string(),
                method: Method::parse(&method),
                sig: response.content,
            })
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
        assert!(matches!(
            checked_key("ed25519", bytes, &"00".repeat(32)),
            Err(Error::KeyMismatch { .. })
        ));
    }
}

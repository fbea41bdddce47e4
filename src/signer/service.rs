//! `notarium signer`: notary-signer's gRPC API (KeyManagement, Signer and
//! gRPC health under notary's service names) over mutual TLS, on
//! notary-signer's own `private_keys` table (PROTOCOL.md §5, §6.2). Keys are
//! stored as notary-signer stores them (a compact JWE, PBES2 under the
//! passphrase of an alias from `NOTARY_SIGNER_<ALIAS>`), so a database can
//! move between the Go signer and this one in either direction.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use thiserror::Error;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;

use super::proto::key_management_server::{KeyManagement, KeyManagementServer};
use super::proto::signer_server::{Signer, SignerServer};
use super::proto::{
    self, CreateKeyRequest, GetKeyInfoResponse, KeyId, KeyInfo, SignatureRequest, Void,
};
use super::remote::{HEALTH_KEY_MANAGEMENT, HEALTH_SIGNER};
use super::sealed::{self, Passphrase};
use crate::store::import::{SourceBackend, passphrase_variable, read_signer_config};
use crate::tuf::{KeyAlgorithm, KeyType, SigningKey};

/// What `notarium signer` can fail on before it serves.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error(
        "no passphrase for alias {alias:?}: set {variable} (notary-signer reads the same variable)"
    )]
    NoPassphrase { alias: String, variable: String },
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to the signer database: {0}")]
    Database(#[source] sqlx::Error),
    #[error("gRPC server: {0}")]
    Serve(#[source] tonic::transport::Error),
}

/// notary-signer's configuration, as `notarium signer` uses it.
#[derive(Debug, Clone)]
pub struct SignerConfig {
    pub grpc_addr: SocketAddr,
    pub tls_cert_file: PathBuf,
    pub tls_key_file: PathBuf,
    /// Client certificates must chain to this CA; without it, none is asked.
    pub client_ca_file: Option<PathBuf>,
    pub db_url: String,
    pub default_alias: String,
}

impl SignerConfig {
    /// Reads notary-signer's JSON file; relative paths resolve against it,
    /// as notary does. `env` supplies `NOTARY_SIGNER_STORAGE_*` overrides.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, StartError> {
        let bad = |reason: String| StartError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let storage = read_signer_config(path, env).map_err(|e| bad(e.to_string()))?;
        if storage.db.backend != SourceBackend::Postgres {
            return Err(bad(
                "storage.backend: notarium signer serves a PostgreSQL database only".into(),
            ));
        }
        let bytes = std::fs::read(path).map_err(|source| StartError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        let server = &json["server"];
        let text = |key: &str| server[key].as_str().filter(|s| !s.is_empty());
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        let file = |key: &str| text(key).map(|p| base.join(p));
        let grpc_addr = text("grpc_addr")
            .ok_or_else(|| bad("server.grpc_addr is missing".into()))?
            .parse()
            .map_err(|_| bad("server.grpc_addr must be an IP address and port".into()))?;
        Ok(Self {
            grpc_addr,
            tls_cert_file: file("tls_cert_file")
                .ok_or_else(|| bad("server.tls_cert_file is missing".into()))?,
            tls_key_file: file("tls_key_file")
                .ok_or_else(|| bad("server.tls_key_file is missing".into()))?,
            client_ca_file: file("client_ca_file"),
            db_url: storage.db.url,
            default_alias: storage
                .default_alias
                .ok_or_else(|| bad("storage.default_alias is missing".into()))?,
        })
    }
}

/// Looks up an alias's passphrase (the environment, in the binary).
pub type PassphraseOf = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The signer's state: the database, the alias new keys are sealed under,
/// and keys already opened.
struct Keys {
    pool: PgPool,
    alias: String,
    passphrase_of: PassphraseOf,
    opened: Mutex<HashMap<String, Arc<SigningKey>>>,
    /// Keys whose `last_used` this process has set (once per key is enough:
    /// what matters to notary-signer is that it is no longer NULL).
    marked: Mutex<HashSet<String>>,
}

/// Serves until `shutdown` completes. Fails at start if the default alias
/// has no passphrase, as notary-signer does.
pub async fn serve(
    config: &SignerConfig,
    passphrase_of: PassphraseOf,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    if passphrase_of(&config.default_alias).is_none() {
        return Err(StartError::NoPassphrase {
            alias: config.default_alias.clone(),
            variable: passphrase_variable(&config.default_alias),
        });
    }
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| StartError::ReadFile {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
        read(&config.tls_cert_file)?,
        read(&config.tls_key_file)?,
    ));
    if let Some(ca) = &config.client_ca_file {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&config.db_url)
        .await
        .map_err(StartError::Database)?;
    let keys = Arc::new(Keys {
        pool,
        alias: config.default_alias.clone(),
        passphrase_of,
        opened: Mutex::default(),
        marked: Mutex::default(),
    });
    let (reporter, health) = tonic_health::server::health_reporter();
    for service in [HEALTH_KEY_MANAGEMENT, HEALTH_SIGNER] {
        reporter
            .set_service_status(service, ServingStatus::Serving)
            .await;
    }
    Server::builder()
        .tls_config(tls)
        .map_err(StartError::Serve)?
        .add_service(health)
        .add_service(KeyManagementServer::new(Arc::clone(&keys)))
        .add_service(SignerServer::new(keys))
        .serve_with_shutdown(config.grpc_addr, shutdown)
        .await
        .map_err(StartError::Serve)
}

fn algorithm_named(name: &str) -> Option<KeyAlgorithm> {
    match name {
        "ecdsa" => Some(KeyAlgorithm::EcdsaP256),
        "ed25519" => Some(KeyAlgorithm::Ed25519),
        _ => None,
    }
}

fn key_info(key_id: &str, algorithm: &str) -> KeyInfo {
    KeyInfo {
        key_id: Some(KeyId {
            id: key_id.to_string(),
        }),
        algorithm: Some(proto::Algorithm {
            algorithm: algorithm.to_string(),
        }),
    }
}

/// Database failures are logged here; the caller learns only that the
/// signer cannot serve now.
fn unavailable(error: &sqlx::Error) -> Status {
    tracing::error!(%error, "signer database");
    Status::unavailable("the signer's database is unavailable")
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| Status::internal("signing task failed"))?
}

impl Keys {
    /// A key by ID, opened with its alias's passphrase (kept open after).
    async fn open(&self, key_id: &str) -> Result<Arc<SigningKey>, Status> {
        if let Some(key) = self.opened.lock().ok().and_then(|o| o.get(key_id).cloned()) {
            return Ok(key);
        }
        let row: Option<(String, String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT algorithm, passphrase_alias, public, private FROM private_keys \
             WHERE key_id = $1 AND deleted_at IS NULL",
        )
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| unavailable(&e))?;
        let (algorithm, alias, public, private) =
            row.ok_or_else(|| Status::not_found(format!("key {key_id} not found")))?;
        let algorithm = algorithm_named(&algorithm).ok_or_else(|| {
            Status::failed_precondition(format!("key {key_id} has unsupported algorithm"))
        })?;
        let passphrase = (self.passphrase_of)(&alias).ok_or_else(|| {
            tracing::error!(alias, "no passphrase for this alias");
            Status::failed_precondition(format!(
                "no passphrase for alias {alias:?} ({})",
                passphrase_variable(&alias)
            ))
        })?;
        let id = key_id.to_string();
        let key = blocking(move || {
            let token = String::from_utf8(private)
                .map_err(|_| Status::data_loss("stored private key is not text"))?;
            let plaintext = sealed::open(&token, &Passphrase::new(passphrase)).map_err(|e| {
                tracing::error!(key_id = id, error = %e, "cannot open a stored key");
                Status::failed_precondition(
                    "the stored key does not open with its alias's passphrase",
                )
            })?;
            let key = SigningKey::from_notary_private(algorithm, &plaintext)
                .map_err(|_| Status::data_loss("stored private key is malformed"))?;
            if key.public_key().id() != id || key.public_key().public_bytes() != public {
                return Err(Status::data_loss(
                    "stored key does not match its public key",
                ));
            }
            Ok(Arc::new(key))
        })
        .await?;
        if let Ok(mut opened) = self.opened.lock() {
            opened.insert(key_id.to_string(), Arc::clone(&key));
        }
        Ok(key)
    }
}

impl Keys {
    /// Sets `last_used` of a key that has signed, as notary-signer does: its
    /// CreateKey hands out an existing key of the same GUN, role and
    /// algorithm whose `last_used` is NULL, so a key left unmarked here
    /// would come back from a later rotation by notary-signer on this
    /// database. A failure is logged, not returned: the signature is good.
    async fn mark_used(&self, key_id: &str) {
        if self.marked.lock().is_ok_and(|m| m.contains(key_id)) {
            return;
        }
        let result = sqlx::query("UPDATE private_keys SET last_used = now() WHERE key_id = $1")
            .bind(key_id)
            .execute(&self.pool)
            .await;
        match result {
            Ok(_) => {
                if let Ok(mut marked) = self.marked.lock() {
                    marked.insert(key_id.to_string());
                }
            }
            Err(error) => tracing::error!(key_id, %error, "cannot mark a key as used"),
        }
    }
}

#[tonic::async_trait]
impl KeyManagement for Arc<Keys> {
    async fn create_key(
        &self,
        request: Request<CreateKeyRequest>,
    ) -> Result<Response<proto::PublicKey>, Status> {
        let request = request.into_inner();
        let algorithm = algorithm_named(&request.algorithm).ok_or_else(|| {
            Status::invalid_argument(format!(
                "algorithm {:?} is not supported; use \"ecdsa\" or \"ed25519\"",
                request.algorithm
            ))
        })?;
        let passphrase = (self.passphrase_of)(&self.alias).ok_or_else(|| {
            Status::failed_precondition(format!("no passphrase for alias {:?}", self.alias))
        })?;
        // Key generation and PBKDF2 are CPU-bound.
        let (key, sealed) = blocking(move || {
            let key = SigningKey::generate(algorithm)
                .map_err(|_| Status::internal("key generation failed"))?;
            let private = key
                .to_notary_private()
                .map_err(|_| Status::internal("key encoding failed"))?;
            let sealed = sealed::seal(
                &private,
                &Passphrase::new(passphrase),
                sealed::NOTARY_ITERATIONS,
            )
            .map_err(|_| Status::internal("key sealing failed"))?;
            Ok((key, sealed))
        })
        .await?;
        let public = key.public_key().clone();
        let keytype = match algorithm {
            KeyAlgorithm::EcdsaP256 => KeyType::Ecdsa,
            KeyAlgorithm::Ed25519 => KeyType::Ed25519,
        };
        sqlx::query(
            "INSERT INTO private_keys (created_at, updated_at, key_id, encryption_alg, \
             keywrap_alg, algorithm, passphrase_alias, public, private, gun, role) \
             VALUES (now(), now(), $1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(public.id())
        .bind(sealed::ENC)
        .bind(sealed::ALG)
        .bind(keytype.as_str())
        .bind(&self.alias)
        .bind(public.public_bytes())
        .bind(sealed.as_bytes())
        .bind(&request.gun)
        .bind(&request.role)
        .execute(&self.pool)
        .await
        .map_err(|e| unavailable(&e))?;
        if let Ok(mut opened) = self.opened.lock() {
            opened.insert(public.id().to_string(), Arc::new(key));
        }
        tracing::info!(
            key_id = public.id(),
            gun = request.gun,
            role = request.role,
            "created key"
        );
        Ok(Response::new(proto::PublicKey {
            key_info: Some(key_info(public.id(), keytype.as_str())),
            public_key: public.public_bytes().to_vec(),
        }))
    }

    async fn delete_key(&self, request: Request<KeyId>) -> Result<Response<Void>, Status> {
        let key_id = request.into_inner().id;
        // Soft delete, as notary-signer's store does; deleting an unknown
        // key succeeds.
        sqlx::query(
            "UPDATE private_keys SET deleted_at = now() WHERE key_id = $1 AND deleted_at IS NULL",
        )
        .bind(&key_id)
        .execute(&self.pool)
        .await
        .map_err(|e| unavailable(&e))?;
        if let Ok(mut opened) = self.opened.lock() {
            opened.remove(&key_id);
        }
        Ok(Response::new(Void {}))
    }

    async fn get_key_info(
        &self,
        request: Request<KeyId>,
    ) -> Result<Response<GetKeyInfoResponse>, Status> {
        let key_id = request.into_inner().id;
        let row: Option<(String, Vec<u8>, String)> = sqlx::query_as(
            "SELECT algorithm, public, role FROM private_keys \
             WHERE key_id = $1 AND deleted_at IS NULL",
        )
        .bind(&key_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| unavailable(&e))?;
        let (algorithm, public, role) =
            row.ok_or_else(|| Status::not_found(format!("key {key_id} not found")))?;
        Ok(Response::new(GetKeyInfoResponse {
            key_info: Some(key_info(&key_id, &algorithm)),
            public_key: public,
            role,
        }))
    }
}

#[tonic::async_trait]
impl Signer for Arc<Keys> {
    async fn sign(
        &self,
        request: Request<SignatureRequest>,
    ) -> Result<Response<proto::Signature>, Status> {
        let request = request.into_inner();
        let key_id = request.key_id.map(|k| k.id).unwrap_or_default();
        let key = self.open(&key_id).await?;
        let signing = Arc::clone(&key);
        let content = request.content;
        let signature = blocking(move || {
            signing
                .sign(&content)
                .map_err(|_| Status::internal("signing failed"))
        })
        .await?;
        self.mark_used(&key_id).await;
        let keytype = match key.algorithm() {
            KeyAlgorithm::EcdsaP256 => KeyType::Ecdsa,
            KeyAlgorithm::Ed25519 => KeyType::Ed25519,
        };
        Ok(Response::new(proto::Signature {
            key_info: Some(key_info(&key_id, keytype.as_str())),
            algorithm: Some(proto::Algorithm {
                algorithm: signature.method.as_str().to_string(),
            }),
            content: signature.sig,
        }))
    }
}

//! `notarium signer`: notary-signer's gRPC API (KeyManagement, Signer and
//! gRPC health under notary's service names) over mutual TLS, on
//! notary-signer's own `private_keys` table (PROTOCOL.md §5, §6.2) in
//! PostgreSQL or MySQL/MariaDB. Keys are stored as notary-signer stores
//! them (a compact JWE, PBES2 under the passphrase of an alias from
//! `NOTARY_SIGNER_<ALIAS>`), so a database can move between the Go signer
//! and this one in either direction.
//!
//! Health follows the database: a periodic check and every failed query
//! set both services NOT_SERVING, the next good check SERVING again, so a
//! server in front reports its trust service as failing while the
//! signer's database is down.

mod db;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use super::proto::key_management_server::{KeyManagement, KeyManagementServer};
use super::proto::signer_server::{Signer, SignerServer};
use super::proto::{
    self, CreateKeyRequest, GetKeyInfoResponse, KeyId, KeyInfo, SignatureRequest, Void,
};
use super::remote::{HEALTH_KEY_MANAGEMENT, HEALTH_SIGNER};
use super::sealed::{self, Passphrase};
use crate::store::import::{
    ConfigError, SourceDb, passphrase_variable, read_signer_config, redact,
};
use crate::tuf::{KeyAlgorithm, KeyType, SigningKey};
use db::{KeyDb, NewRow};

/// The largest request message accepted. The largest legitimate one is a
/// Sign request carrying a snapshot's canonical `signed` bytes (one meta
/// entry, about 200 bytes, per delegated role); 4 MiB is grpc-go's default
/// receive limit, so notary-signer refuses anything larger too. Larger
/// messages get OUT_OF_RANGE without being read into memory.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Responses are a public key or a signature: a few hundred bytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Calls in progress on one connection; further calls wait their turn. A
/// notary server multiplexes all its calls over one connection, and key
/// opening and signing run on a bounded blocking pool anyway.
pub const CONCURRENCY_PER_CONNECTION: usize = 64;

/// A call still running after this is cancelled. Callers (notary-server,
/// notarium's remote signer) give up after 10 s themselves.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 pings on idle connections, so a peer that vanished (host down,
/// network cut) is noticed and its connection closed.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// How often the database is checked for the health services.
/// notary-signer checks once a minute; a few seconds lets a server in front
/// notice an outage (and the recovery) promptly, for one cheap query.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// A health check query that has not answered in this counts as failed.
const HEALTH_QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// `private_keys.key_id` is VARCHAR(255); a longer ID names no key.
const MAX_KEY_ID_LEN: usize = 255;

/// What `notarium signer` can fail on before it serves.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error(
        "{path}: storage.backend {backend:?} is not supported: notarium signer serves \
         notary-signer's \"postgres\" or \"mysql\" (MySQL/MariaDB) database"
    )]
    UnsupportedBackend { path: PathBuf, backend: String },
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
    #[error("cannot connect to the signer database {url}: {source}")]
    Database {
        /// Redacted.
        url: String,
        #[source]
        source: sqlx::Error,
    },
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
    /// PostgreSQL or MySQL/MariaDB (its `Debug` hides the password).
    pub db: SourceDb,
    pub default_alias: String,
    /// `logging.level` (or `NOTARY_SIGNER_LOGGING_LEVEL`), if set, as
    /// written (the binary, which sets up logging, checks it).
    pub log_level: Option<String>,
}

impl SignerConfig {
    /// Reads notary-signer's JSON file; relative paths resolve against it,
    /// as notary does. `env` supplies `NOTARY_SIGNER_STORAGE_*` overrides.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, StartError> {
        let bad = |reason: String| StartError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let storage = read_signer_config(path, env).map_err(|e| match e {
            // notary-signer also runs on memory, sqlite3 and rethinkdb;
            // only its SQL server databases can be taken over.
            ConfigError::Backend { path, backend } => {
                StartError::UnsupportedBackend { path, backend }
            }
            other => bad(other.to_string()),
        })?;
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
        let log_level = env("NOTARY_SIGNER_LOGGING_LEVEL")
            .or_else(|| json["logging"]["level"].as_str().map(str::to_string))
            .filter(|level| !level.is_empty());
        Ok(Self {
            grpc_addr,
            tls_cert_file: file("tls_cert_file")
                .ok_or_else(|| bad("server.tls_cert_file is missing".into()))?,
            tls_key_file: file("tls_key_file")
                .ok_or_else(|| bad("server.tls_key_file is missing".into()))?,
            client_ca_file: file("client_ca_file"),
            db: storage.db,
            default_alias: storage
                .default_alias
                .ok_or_else(|| bad("storage.default_alias is missing".into()))?,
            log_level,
        })
    }
}

/// Looks up an alias's passphrase (the environment, in the binary).
pub type PassphraseOf = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The health services' status, kept in step with the database.
struct DbHealth {
    reporter: HealthReporter,
    serving: AtomicBool,
}

impl DbHealth {
    async fn new(reporter: HealthReporter) -> Self {
        for service in [HEALTH_KEY_MANAGEMENT, HEALTH_SIGNER] {
            reporter
                .set_service_status(service, ServingStatus::Serving)
                .await;
        }
        Self {
            reporter,
            serving: AtomicBool::new(true),
        }
    }

    /// Sets both services; only a change is announced and logged.
    async fn set(&self, serving: bool) {
        if self.serving.swap(serving, Ordering::SeqCst) == serving {
            return;
        }
        let status = if serving {
            tracing::info!("signer database reachable again: health SERVING");
            ServingStatus::Serving
        } else {
            tracing::warn!("signer database unavailable: health NOT_SERVING");
            ServingStatus::NotServing
        };
        for service in [HEALTH_KEY_MANAGEMENT, HEALTH_SIGNER] {
            self.reporter.set_service_status(service, status).await;
        }
    }
}

/// The signer's state: the database, the alias new keys are sealed under,
/// keys already opened, and the health it reports.
struct Keys {
    db: KeyDb,
    alias: String,
    passphrase_of: PassphraseOf,
    opened: Mutex<HashMap<String, Arc<SigningKey>>>,
    health: DbHealth,
}

/// Serves until `shutdown` completes. Fails at start if the default alias
/// has no passphrase or the database cannot be reached, as notary-signer
/// does.
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
    let db = KeyDb::connect(&config.db)
        .await
        .map_err(|source| StartError::Database {
            url: redact(&config.db.url),
            source,
        })?;
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let keys = Arc::new(Keys {
        db,
        alias: config.default_alias.clone(),
        passphrase_of,
        opened: Mutex::default(),
        health: DbHealth::new(reporter).await,
    });
    let checker = tokio::spawn(check_health(Arc::clone(&keys)));
    let served = Server::builder()
        .timeout(REQUEST_TIMEOUT)
        .concurrency_limit_per_connection(CONCURRENCY_PER_CONNECTION)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .tcp_keepalive(Some(TCP_KEEPALIVE))
        .tls_config(tls)
        .map_err(StartError::Serve)?
        .add_service(
            health_service
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
        )
        .add_service(
            KeyManagementServer::new(Arc::clone(&keys))
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
        )
        .add_service(
            SignerServer::new(keys)
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
        )
        .serve_with_shutdown(config.grpc_addr, shutdown)
        .await
        .map_err(StartError::Serve);
    checker.abort();
    served
}

/// Checks the database every [`HEALTH_INTERVAL`] for as long as it runs.
async fn check_health(keys: Arc<Keys>) {
    let mut interval = tokio::time::interval(HEALTH_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let ok = match tokio::time::timeout(HEALTH_QUERY_TIMEOUT, keys.db.ping()).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::debug!(%error, "signer database health check");
                false
            }
            Err(_) => false,
        };
        keys.health.set(ok).await;
    }
}

/// A key ID that cannot name a row: empty, or longer than the column.
fn no_such_key(key_id: &str) -> Option<Status> {
    if key_id.is_empty() {
        return Some(Status::not_found("no key ID given"));
    }
    (key_id.len() > MAX_KEY_ID_LEN).then(|| Status::not_found("key not found"))
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

/// Whether a query failed because the database cannot be used now (as
/// opposed to a row this signer cannot read).
fn is_outage(error: &sqlx::Error) -> bool {
    !matches!(
        error,
        sqlx::Error::RowNotFound
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::Encode(_)
            | sqlx::Error::TypeNotFound { .. }
    )
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| Status::internal("signing task failed"))?
}

fn keytype_of(algorithm: KeyAlgorithm) -> KeyType {
    match algorithm {
        KeyAlgorithm::EcdsaP256 => KeyType::Ecdsa,
        KeyAlgorithm::Ed25519 => KeyType::Ed25519,
    }
}

impl Keys {
    /// A query's result; a failure is logged here and the caller learns
    /// only that the signer cannot serve now. An outage also turns health
    /// to NOT_SERVING at once rather than at the next periodic check.
    async fn checked<T>(&self, result: Result<T, sqlx::Error>) -> Result<T, Status> {
        match result {
            Ok(value) => Ok(value),
            Err(error) if is_outage(&error) => {
                tracing::error!(%error, "signer database");
                self.health.set(false).await;
                Err(Status::unavailable("the signer's database is unavailable"))
            }
            Err(error) => {
                tracing::error!(%error, "unreadable signer database row");
                Err(Status::internal("a stored key row cannot be read"))
            }
        }
    }

    /// A key by ID, opened with its alias's passphrase (kept open after).
    async fn open(&self, key_id: &str) -> Result<Arc<SigningKey>, Status> {
        if let Some(status) = no_such_key(key_id) {
            return Err(status);
        }
        if let Some(key) = self.opened.lock().ok().and_then(|o| o.get(key_id).cloned()) {
            return Ok(key);
        }
        let stored = self
            .checked(self.db.key(key_id).await)
            .await?
            .ok_or_else(|| Status::not_found(format!("key {key_id} not found")))?;
        let algorithm = algorithm_named(&stored.algorithm).ok_or_else(|| {
            Status::failed_precondition(format!("key {key_id} has unsupported algorithm"))
        })?;
        let alias = stored.passphrase_alias;
        let passphrase = (self.passphrase_of)(&alias).ok_or_else(|| {
            tracing::error!(alias, "no passphrase for this alias");
            Status::failed_precondition(format!(
                "no passphrase for alias {alias:?} ({})",
                passphrase_variable(&alias)
            ))
        })?;
        let (id, private, public) = (stored.key_id, stored.private, stored.public);
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
        let keytype = keytype_of(algorithm);
        // As notary-signer: a key of this GUN and role that never signed
        // is handed out again.
        let unused = self
            .checked(
                self.db
                    .unused_key(&request.gun, &request.role, keytype.as_str())
                    .await,
            )
            .await?;
        if let Some((key_id, public)) = unused {
            return Ok(Response::new(proto::PublicKey {
                key_info: Some(key_info(&key_id, keytype.as_str())),
                public_key: public,
            }));
        }
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
        let inserted = self
            .db
            .insert(&NewRow {
                key_id: public.id(),
                encryption_alg: sealed::ENC,
                keywrap_alg: sealed::ALG,
                algorithm: keytype.as_str(),
                passphrase_alias: &self.alias,
                public: public.public_bytes(),
                private: sealed.as_bytes(),
                gun: &request.gun,
                role: &request.role,
            })
            .await;
        self.checked(inserted).await?;
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
        if no_such_key(&key_id).is_none() {
            self.checked(self.db.soft_delete(&key_id).await).await?;
        }
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
        if let Some(status) = no_such_key(&key_id) {
            return Err(status);
        }
        let stored = self
            .checked(self.db.key(&key_id).await)
            .await?
            .ok_or_else(|| Status::not_found(format!("key {key_id} not found")))?;
        Ok(Response::new(GetKeyInfoResponse {
            key_info: Some(key_info(&key_id, &stored.algorithm)),
            public_key: stored.public,
            role: stored.role,
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
        // As notary-signer: the signature stands even if recording the use
        // fails (that failure is logged and turns health NOT_SERVING).
        let marked = self.db.mark_used(&key_id).await;
        let _ = self.checked(marked).await;
        Ok(Response::new(proto::Signature {
            key_info: Some(key_info(&key_id, keytype_of(key.algorithm()).as_str())),
            algorithm: Some(proto::Algorithm {
                algorithm: signature.method.as_str().to_string(),
            }),
            content: signature.sig,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::import::SourceBackend;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn config(dir: &Path, storage: &str) -> PathBuf {
        let path = dir.join("signer.json");
        std::fs::write(
            &path,
            format!(
                r#"{{"server":{{"grpc_addr":"127.0.0.1:7899","tls_cert_file":"s.crt",
                "tls_key_file":"s.key"}},"storage":{storage}}}"#
            ),
        )
        .unwrap();
        path
    }

    #[test]
    fn mysql_and_postgres_configs_load_and_others_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = config(
            dir.path(),
            r#"{"backend":"mysql","db_url":"u:secret@tcp(db:3306)/signer?parseTime=True",
               "default_alias":"alpha"}"#,
        );
        let loaded = SignerConfig::load(&path, &no_env).unwrap();
        assert_eq!(loaded.db.backend, SourceBackend::Mysql);
        assert_eq!(loaded.db.url, "mysql://u:secret@db:3306/signer");
        assert_eq!(loaded.tls_cert_file, dir.path().join("s.crt"));
        assert!(!format!("{loaded:?}").contains("secret"));

        let path = config(
            dir.path(),
            r#"{"backend":"postgres","db_url":"postgres://u@db/signer","default_alias":"a"}"#,
        );
        let loaded = SignerConfig::load(&path, &no_env).unwrap();
        assert_eq!(loaded.db.backend, SourceBackend::Postgres);

        for backend in ["memory", "sqlite3", "rethinkdb"] {
            let path = config(
                dir.path(),
                &format!(r#"{{"backend":"{backend}","db_url":"x","default_alias":"a"}}"#),
            );
            let error = SignerConfig::load(&path, &no_env).unwrap_err();
            assert!(
                matches!(&error, StartError::UnsupportedBackend { backend: b, .. } if b == backend),
                "{error:?}"
            );
            let message = error.to_string();
            assert!(
                message.contains("\"postgres\"") && message.contains("\"mysql\""),
                "{message}"
            );
        }
    }

    #[test]
    fn key_ids_that_name_no_row_are_not_found_without_a_query() {
        assert_eq!(
            no_such_key("").map(|s| s.code()),
            Some(tonic::Code::NotFound)
        );
        let long = "a".repeat(MAX_KEY_ID_LEN + 1);
        assert_eq!(
            no_such_key(&long).map(|s| s.code()),
            Some(tonic::Code::NotFound)
        );
        assert!(no_such_key(&"a".repeat(64)).is_none());
    }

    #[test]
    fn only_connection_failures_count_as_an_outage() {
        assert!(is_outage(&sqlx::Error::PoolTimedOut));
        assert!(is_outage(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused
        ))));
        assert!(!is_outage(&sqlx::Error::ColumnNotFound("public".into())));
        assert!(!is_outage(&sqlx::Error::Decode("bad".into())));
    }
}

//! Assembles a running server from a [`Config`]: storage, signer, TLS,
//! router, listener.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

use crate::auth::{Authenticator, Expectations, TrustBundle, Verifier};
use crate::config::{
    Config, KeyAlgorithm as ConfigAlgorithm, RemoteTrust, StorageConfig, TlsSource,
    TrustServiceKind,
};
use zeroize::Zeroizing;

use crate::policy::delegation_ca::TrustAnchors;
use crate::policy::{ManifestSource, NoRegistry};
use crate::registry::{RegistryClient, RegistrySettings};
use crate::repo::{Limits, Policy, Repo, default_validation_slots, system_clock};
use crate::server::auth::TokenAuth;
use crate::server::tls::{self, TlsError};
use crate::server::{
    AppState, Caching, Connections, metrics_handle, metrics_upkeep, router, serve_tls,
};
use crate::signer::remote::{RemoteConfig, RemoteSigner};
use crate::signer::{Error as SignerError, KeyService, KeySigner, Passphrase};
use crate::store::{PoolSettings, PostgresStore, SqliteStore, Store};
use crate::tuf::KeyAlgorithm;

#[derive(Debug, Error)]
pub enum StartError {
    #[error("{0}")]
    Store(String),
    #[error("{0}")]
    Policy(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Generating a new passphrase over existing keys would lose them.
    #[error(
        "the database holds sealed server keys, but NOTARIUM_KEY_PASSPHRASE is not set and the \
         passphrase file {} does not exist: restore that file (or set NOTARIUM_KEY_PASSPHRASE) \
         with the passphrase the keys were sealed with; notarium will not generate a new one \
         over existing keys",
        path.display()
    )]
    PassphraseMissing { path: PathBuf },
    #[error(
        "the key passphrase from {origin} does not open the server keys sealed in the database: \
         set NOTARIUM_KEY_PASSPHRASE (or restore <keys_dir>/passphrase) to the passphrase they \
         were sealed with"
    )]
    WrongPassphrase { origin: String },
    #[error("trust_service (remote notary-signer): {0}")]
    SignerTls(String),
    #[error("cannot open the server keys: {0}")]
    Keys(#[source] crate::signer::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("server stopped: {0}")]
    Serve(#[source] std::io::Error),
    #[error("auth.options.rootcertbundle: cannot read {}: {source}", path.display())]
    AuthBundleRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("auth.options.rootcertbundle {}: {source}", path.display())]
    AuthBundle {
        path: PathBuf,
        #[source]
        source: crate::auth::Error,
    },
    #[error(
        "refusing to listen on {addr} without authentication: anyone who can reach it could publish \
         and delete trust data. Configure token auth (the auth section or NOTARIUM_AUTH_*), listen on \
         a loopback address (e.g. 127.0.0.1:4443), or, if something in front of notarium \
         authenticates, set server.insecure_no_auth: true (NOTARIUM_INSECURE_NO_AUTH=true or \
         --insecure-no-auth)"
    )]
    InsecureBind { addr: String },
}

/// How many verified tokens are remembered (a few hundred bytes each).
const TOKEN_CACHE_ENTRIES: usize = 10_000;

/// Token auth from `auth`, with its root bundle read and checked now so a
/// bad bundle stops the start rather than every request.
fn token_auth(config: &Config) -> Result<Option<TokenAuth>, StartError> {
    let Some(auth) = &config.auth else {
        return Ok(None);
    };
    let path = auth.rootcertbundle.clone();
    let pem = std::fs::read(&path).map_err(|source| StartError::AuthBundleRead {
        path: path.clone(),
        source,
    })?;
    let bundle =
        TrustBundle::from_pem(&pem).map_err(|source| StartError::AuthBundle { path, source })?;
    let verifier = Verifier::new(
        bundle,
        Expectations {
            issuer: auth.issuer.clone(),
            service: auth.service.clone(),
        },
    );
    Ok(Some(TokenAuth {
        authenticator: Authenticator::new(verifier, TOKEN_CACHE_ENTRIES),
        realm: auth.realm.clone(),
        service: auth.service.clone(),
        autoredirect: auth.autoredirect,
        clock: system_clock(),
    }))
}

/// Safe default: without auth, only loopback addresses, unless the operator
/// says something else authenticates (then a warning).
fn check_exposure(config: &Config) -> Result<(), StartError> {
    if config.auth.is_some() {
        return Ok(());
    }
    let addr = config.server.http_addr.to_string();
    let candidates = config
        .server
        .http_addr
        .candidates()
        .map_err(|source| StartError::Bind {
            addr: addr.clone(),
            source,
        })?;
    if candidates
        .iter()
        .all(|candidate| candidate.ip().is_loopback())
    {
        return Ok(());
    }
    if !config.server.insecure_no_auth {
        return Err(StartError::InsecureBind { addr });
    }
    tracing::warn!(
        addr = %addr,
        "serving without authentication on a non-loopback address (server.insecure_no_auth): \
         anyone who can reach it can publish and delete trust data"
    );
    Ok(())
}

/// What the operator needs to know once the server listens.
#[derive(Debug, Clone)]
pub struct Started {
    pub addr: SocketAddr,
    pub url: String,
    /// The development CA clients must trust, when dev certificates are used.
    pub dev_ca: Option<PathBuf>,
}

fn bind(config: &Config) -> Result<TcpListener, StartError> {
    let addr = config.server.http_addr.to_string();
    let bind_error = |source| StartError::Bind {
        addr: addr.clone(),
        source,
    };
    let candidates = config.server.http_addr.candidates().map_err(bind_error)?;
    let mut last = None;
    for candidate in candidates {
        match TcpListener::bind(candidate) {
            Ok(listener) => return Ok(listener),
            Err(error) => last = Some(error),
        }
    }
    Err(bind_error(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address to bind")
    })))
}

/// The server rules from the configuration: registries for the image
/// manifest check, immutable repositories, the delegation CA.
fn policy(config: &Config) -> Result<Policy, StartError> {
    let manifests: Arc<dyn ManifestSource> = if config.registries.is_empty() {
        Arc::new(NoRegistry)
    } else {
        let settings = config
            .registries
            .iter()
            .map(|registry| RegistrySettings {
                gun_prefix: registry.gun_prefix.clone(),
                url: registry.url.clone(),
                username: registry.username.clone(),
                password: registry
                    .password
                    .as_ref()
                    .map(|secret| Zeroizing::new(secret.expose().to_owned())),
                require_image_manifests: registry.require_image_manifests,
                timeout: registry.timeout,
            })
            .collect();
        Arc::new(
            RegistryClient::new(settings)
                .map_err(|e| StartError::Policy(format!("registries: {e}")))?,
        )
    };
    let delegation_anchors = match &config.delegations.trusted_ca_file {
        Some(path) => {
            let bundle = std::fs::read(path).map_err(|e| {
                StartError::Policy(format!(
                    "delegations.trusted_ca_file: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            Some(TrustAnchors::from_pem(&bundle).map_err(|e| {
                StartError::Policy(format!(
                    "delegations.trusted_ca_file {}: {e}",
                    path.display()
                ))
            })?)
        }
        None => None,
    };
    Ok(Policy {
        manifests,
        immutable: config.repositories.immutable.clone(),
        delegation_anchors,
        expiry_warning: time::Duration::try_from(config.repositories.expiry_warning)
            .unwrap_or(time::Duration::MAX),
    })
}

/// The configured database, opened. Everything after opening is generic over
/// [`Store`] (see [`run`]); this enum only carries the choice made at start.
#[derive(Debug)]
pub enum OpenedStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// `error: cause: cause`, for start-up messages (sqlx's cause says what failed).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether opening a PostgreSQL database runs the migrations (SQLite always
/// does: it is one process's file, created on first use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrations {
    Run,
    /// `storage.migrate_on_start` decides.
    AsConfigured,
    Skip,
}

/// Opens the configured database (creating a SQLite file's folder), for the
/// server and the admin subcommands.
pub async fn open_store(config: &Config, migrations: Migrations) -> Result<OpenedStore, String> {
    match &config.storage {
        StorageConfig::Sqlite { path } => {
            let data_dir = config.storage.data_dir().unwrap_or_else(|| ".".into());
            // The database holds sealed keys: keep its folder private.
            std::os::unix::fs::DirBuilderExt::mode(
                std::fs::DirBuilder::new().recursive(true),
                0o700,
            )
            .create(&data_dir)
            .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
            SqliteStore::open(&path.to_string_lossy())
                .await
                .map(OpenedStore::Sqlite)
                .map_err(|e| format!("cannot open the database {}: {e}", path.display()))
        }
        StorageConfig::Postgres(pg) => {
            let mut options: sqlx::postgres::PgConnectOptions = pg
                .url
                .expose()
                .parse()
                .map_err(|_| format!("storage.db_url {} is not a PostgreSQL URL", pg.url))?;
            if let Some(password) = &pg.password {
                options = options.password(password.expose());
            }
            let store = PostgresStore::connect_lazy(
                options,
                PoolSettings {
                    max_connections: pg.max_connections,
                    acquire_timeout: pg.acquire_timeout,
                    statement_timeout: pg.statement_timeout,
                    lock_timeout: pg.lock_timeout,
                },
            );
            let migrate = match migrations {
                Migrations::Run => true,
                Migrations::AsConfigured => pg.migrate_on_start,
                Migrations::Skip => false,
            };
            if migrate {
                store.migrate().await.map_err(|e| {
                    format!("cannot migrate the database {}: {}", pg.url, chain(&e))
                })?;
            } else if migrations == Migrations::AsConfigured {
                // Serving on an older schema would fail request by request.
                let pending = store
                    .pending_migrations()
                    .await
                    .map_err(|e| format!("cannot read the database {}: {}", pg.url, chain(&e)))?;
                if !pending.is_empty() {
                    return Err(format!(
                        "the database {} lacks {} migration(s) this notarium needs and \
                         storage.migrate_on_start is false: run `notarium migrate` first",
                        pg.url,
                        pending.len()
                    ));
                }
            }
            Ok(OpenedStore::Postgres(store))
        }
    }
}

/// Starts serving; `on_start` is told the address before requests are
/// accepted. Returns when `shutdown` completes.
pub async fn run(
    config: Config,
    on_start: impl FnOnce(&Started),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    check_exposure(&config)?;
    let auth = token_auth(&config)?;
    // The backend is chosen once here; `launch` is monomorphised per backend.
    match open_store(&config, Migrations::AsConfigured)
        .await
        .map_err(StartError::Store)?
    {
        OpenedStore::Sqlite(store) => launch(config, store, auth, on_start, shutdown).await,
        OpenedStore::Postgres(store) => launch(config, store, auth, on_start, shutdown).await,
    }
}

/// The server-key service over `store`, with the configured passphrase (or
/// the one kept in keys_dir, generated on first use), unlocked: a wrong
/// passphrase stops here rather than at the first signature.
async fn unlocked_keys<S: Store>(
    config: &Config,
    store: Arc<S>,
) -> Result<KeyService<S>, StartError> {
    let sealed_keys_exist = store
        .newest_key()
        .await
        .map_err(|e| StartError::Store(format!("cannot read the server keys: {e}")))?
        .is_some();
    let passphrase_file = config.server.keys_dir.join(tls::PASSPHRASE_FILE);
    let (passphrase, passphrase_source) = match &config.keys.passphrase {
        Some(secret) => (
            Passphrase::new(secret.expose()),
            "NOTARIUM_KEY_PASSPHRASE".to_string(),
        ),
        None => {
            if sealed_keys_exist && !passphrase_file.exists() {
                return Err(StartError::PassphraseMissing {
                    path: passphrase_file,
                });
            }
            let passphrase = tls::ensure_passphrase(&config.server.keys_dir)?;
            (
                Passphrase::new(passphrase.as_str()),
                passphrase_file.display().to_string(),
            )
        }
    };
    let algorithm = match config.trust_service.key_algorithm {
        ConfigAlgorithm::Ecdsa => KeyAlgorithm::EcdsaP256,
        ConfigAlgorithm::Ed25519 => KeyAlgorithm::Ed25519,
    };
    let keys = KeyService::new(store, passphrase, algorithm);
    keys.unlock().await.map_err(|error| match error {
        SignerError::WrongPassphrase | SignerError::UnknownKek { .. } => {
            StartError::WrongPassphrase {
                origin: passphrase_source,
            }
        }
        other => StartError::Keys(other),
    })?;
    Ok(keys)
}

/// The client of an external notary-signer (`trust_service.type: remote`).
/// It dials lazily: a signer that is down at start-up shows in the health
/// endpoint and as 503 on what needs a signature, as with notary-server.
fn remote_signer(config: &Config, remote: &RemoteTrust) -> Result<RemoteSigner, StartError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| StartError::SignerTls(format!("{}: {e}", path.display())))
    };
    let client_identity = match &remote.client_identity {
        Some((cert, key)) => Some((read(cert)?, read(key)?)),
        None => None,
    };
    let settings = RemoteConfig {
        hostname: remote.hostname.clone(),
        port: remote.port,
        ca_pem: read(&remote.tls_ca_file)?,
        client_identity,
        algorithm: match config.trust_service.key_algorithm {
            ConfigAlgorithm::Ecdsa => KeyAlgorithm::EcdsaP256,
            ConfigAlgorithm::Ed25519 => KeyAlgorithm::Ed25519,
        },
        deadline: crate::signer::remote::DEFAULT_DEADLINE,
    };
    RemoteSigner::connect_lazy(&settings).map_err(|e| StartError::SignerTls(e.to_string()))
}

/// Where `notarium import` reads from (PROTOCOL.md §6.4).
#[derive(Debug, Clone)]
pub struct ImportSources {
    pub server: crate::store::import::SourceDb,
    pub signer: crate::store::import::SignerSource,
}

/// `notarium import`: reads the notary databases and writes into the
/// storage `config` names (with `dry_run`, into a throwaway in-memory
/// database instead, so every check runs and nothing is written).
pub async fn import(
    config: &Config,
    sources: &ImportSources,
    dry_run: bool,
    passphrase_of: &(dyn Fn(&str) -> Option<String> + Sync),
    report: impl FnMut(&crate::import::GunReport),
) -> Result<crate::import::Summary, String> {
    use crate::store::import::{AnyServerReader, AnySignerReader};
    let mut server = AnyServerReader::connect(&sources.server)
        .await
        .map_err(|e| format!("cannot read notary-server's database: {}", chain(&e)))?;
    let mut signer = AnySignerReader::connect(&sources.signer.db)
        .await
        .map_err(|e| format!("cannot read notary-signer's database: {}", chain(&e)))?;
    let now = (system_clock())();
    if dry_run {
        let store = SqliteStore::open_in_memory()
            .await
            .map_err(|e| format!("cannot open a scratch database: {e}"))?;
        let store = Arc::new(store);
        let keys = KeyService::new(
            store.clone(),
            Passphrase::new("dry run"),
            KeyAlgorithm::EcdsaP256,
        );
        return crate::import::import(
            &*store,
            &keys,
            &mut server,
            &mut signer,
            passphrase_of,
            now,
            report,
        )
        .await
        .map_err(|e| chain(&e));
    }
    match open_store(config, Migrations::Run).await? {
        OpenedStore::Sqlite(store) => {
            import_into(
                config,
                store,
                &mut server,
                &mut signer,
                passphrase_of,
                now,
                report,
            )
            .await
        }
        OpenedStore::Postgres(store) => {
            import_into(
                config,
                store,
                &mut server,
                &mut signer,
                passphrase_of,
                now,
                report,
            )
            .await
        }
    }
}

async fn import_into<S: Store>(
    config: &Config,
    store: S,
    server: &mut crate::store::import::AnyServerReader,
    signer: &mut crate::store::import::AnySignerReader,
    passphrase_of: &(dyn Fn(&str) -> Option<String> + Sync),
    now: time::OffsetDateTime,
    report: impl FnMut(&crate::import::GunReport),
) -> Result<crate::import::Summary, String> {
    let store = Arc::new(store);
    let keys = unlocked_keys(config, store.clone())
        .await
        .map_err(|e| e.to_string())?;
    crate::import::import(&*store, &keys, server, signer, passphrase_of, now, report)
        .await
        .map_err(|e| chain(&e))
}

/// Serves with an opened `store`.
async fn launch<S: Store>(
    config: Config,
    store: S,
    auth: Option<TokenAuth>,
    on_start: impl FnOnce(&Started),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let store = Arc::new(store);
    let keys: Arc<dyn KeySigner> = match &config.trust_service.kind {
        TrustServiceKind::Local => Arc::new(unlocked_keys(&config, store.clone()).await?),
        TrustServiceKind::Remote(remote) => Arc::new(remote_signer(&config, remote)?),
    };
    let limits = &config.limits;
    let validation_slots = match limits.validation_concurrency {
        0 => default_validation_slots(),
        n => n,
    };
    let repo = Repo::with_signer(store, keys, system_clock())
        .with_policy(policy(&config)?)
        .with_limits(Limits {
            keys_per_role: limits.keys_per_role,
            signatures_per_file: limits.signatures_per_file,
            delegations_per_file: limits.delegations_per_file,
            targets_per_file: limits.targets_per_file,
            parts_per_upload: limits.parts_per_upload,
            registry_lookups_per_publish: limits.registry_lookups_per_publish,
        })
        .with_concurrency(validation_slots, limits.busy_wait);

    let (cert, key, dev_ca) = match &config.server.tls {
        TlsSource::Files {
            cert_file,
            key_file,
        } => (cert_file.clone(), key_file.clone(), None),
        TlsSource::DevCertificates => {
            let dev = tls::ensure_dev_certificates(&config.server.keys_dir, &[])?;
            (dev.cert_path, dev.key_path, Some(dev.ca_cert_path))
        }
    };
    let tls_config = tls::load_rustls_config(&cert, &key)?;
    let listener = bind(&config)?;
    let addr = listener.local_addr().map_err(StartError::Serve)?;
    let state = Arc::new(AppState {
        repo,
        caching: Caching {
            current_max_age: config.caching.current_metadata_max_age,
            consistent_max_age: config.caching.consistent_metadata_max_age,
        },
        max_body_bytes: usize::try_from(config.server.max_body_bytes).unwrap_or(usize::MAX),
        metrics: metrics_handle(),
        gun_prefixes: config.repositories.gun_prefixes.clone(),
        auth,
    });
    let shown_host = if addr.ip().is_unspecified() {
        "localhost".to_string()
    } else {
        addr.ip().to_string()
    };
    let started = Started {
        addr,
        url: format!("https://{shown_host}:{}", addr.port()),
        dev_ca,
    };
    on_start(&started);
    let connections = &config.server.connections;
    let connections = Connections {
        header_read_timeout: connections.header_read_timeout,
        idle_timeout: connections.idle_timeout,
        max_connections: connections.max_connections,
        http2_max_concurrent_streams: connections.http2_max_concurrent_streams,
    };
    let upkeep = tokio::spawn(metrics_upkeep(state.metrics.clone()));
    let served = serve_tls(router(state), listener, tls_config, connections, shutdown).await;
    upkeep.abort();
    served.map_err(StartError::Serve)
}

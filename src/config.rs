//! Typed configuration for `notarium serve`.
//!
//! notary-server's own JSON file (PROTOCOL.md §7.1, `cmd/notary-server/config.go`) loads unchanged,
//! plus a few notarium keys. Load order, later wins (STYLE.md §3 "Config precedence"):
//! built-in defaults → config file → `NOTARIUM_*` environment variables → command-line flags.
//!
//! Every layer is first read into a [`Layer`] of raw values that remember where they came from, the
//! layers are merged, and only then is the result validated. That way an environment variable can
//! repair a value the file got wrong (e.g. `NOTARIUM_STORAGE_BACKEND=sqlite` over a MySQL file), and
//! every error names the dotted key, the bad value and its source.
//!
//! The file is walked as a `serde_json::Value` rather than deserialized into structs so that unknown
//! keys become [`Warning`]s (notary ignores them silently; typos should not be silent) instead of
//! errors (a notary file may carry keys we have no use for).

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::policy::names::{self, NameError};

/// Notary's limit for `caching.max_age.*`: one 365-day year (`notary.CacheMaxAgeLimit`).
pub const MAX_CACHE_MAX_AGE: u64 = 31_536_000;
/// `notary.CurrentMetadataCacheMaxAge`.
pub const DEFAULT_CURRENT_MAX_AGE: u32 = 300;
/// `notary.ConsistentMetadataCacheMaxAge` (30 days).
pub const DEFAULT_CONSISTENT_MAX_AGE: u32 = 2_592_000;
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
/// Bounds for `server.max_body_bytes`: below 1 KiB no real publish fits; above 1 GiB one request
/// could exhaust memory (bodies are buffered to verify signatures).
pub const MIN_MAX_BODY_BYTES: u64 = 1024;
pub const MAX_MAX_BODY_BYTES: u64 = 1024 * 1024 * 1024;
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:4443";
pub const DEFAULT_DB_PATH: &str = "data/notarium.db";
pub const DEFAULT_KEYS_DIR: &str = "keys";
/// Bounds and default for `registries[].timeout_seconds`.
pub const DEFAULT_REGISTRY_TIMEOUT_SECONDS: u64 = 10;
pub const MIN_REGISTRY_TIMEOUT_SECONDS: u64 = 1;
pub const MAX_REGISTRY_TIMEOUT_SECONDS: u64 = 120;

/// Integer settings of `limits` and of `server` connection handling: key, bounds, default and the
/// allowed range as the error message states it. Defaults are generous for real repositories
/// (documented in the README's configuration table).
struct Bound {
    key: &'static str,
    /// The environment variable that sets it: `NOTARIUM_` and the key in capitals, `.` as `_`.
    env: &'static str,
    min: u64,
    max: u64,
    default: u64,
    allowed: &'static str,
}

const BOUNDS: &[Bound] = &[
    Bound {
        key: "limits.keys_per_role",
        env: "NOTARIUM_LIMITS_KEYS_PER_ROLE",
        min: 1,
        max: 1_000,
        default: 32,
        allowed: "an integer from 1 to 1000",
    },
    Bound {
        key: "limits.signatures_per_file",
        env: "NOTARIUM_LIMITS_SIGNATURES_PER_FILE",
        min: 1,
        max: 1_000,
        default: 64,
        allowed: "an integer from 1 to 1000",
    },
    Bound {
        key: "limits.delegations_per_file",
        env: "NOTARIUM_LIMITS_DELEGATIONS_PER_FILE",
        min: 1,
        max: 100_000,
        default: 1_000,
        allowed: "an integer from 1 to 100000",
    },
    Bound {
        key: "limits.targets_per_file",
        env: "NOTARIUM_LIMITS_TARGETS_PER_FILE",
        min: 1,
        max: 10_000_000,
        default: 100_000,
        allowed: "an integer from 1 to 10000000",
    },
    Bound {
        key: "limits.parts_per_upload",
        env: "NOTARIUM_LIMITS_PARTS_PER_UPLOAD",
        min: 1,
        max: 100_000,
        default: 1_000,
        allowed: "an integer from 1 to 100000",
    },
    Bound {
        key: "limits.registry_lookups_per_publish",
        env: "NOTARIUM_LIMITS_REGISTRY_LOOKUPS_PER_PUBLISH",
        min: 1,
        max: 100_000,
        default: 100,
        allowed: "an integer from 1 to 100000",
    },
    // 0: one per CPU core.
    Bound {
        key: "limits.validation_concurrency",
        env: "NOTARIUM_LIMITS_VALIDATION_CONCURRENCY",
        min: 0,
        max: 1_024,
        default: 0,
        allowed: "an integer from 0 (one per CPU core) to 1024",
    },
    Bound {
        key: "limits.busy_wait_seconds",
        env: "NOTARIUM_LIMITS_BUSY_WAIT_SECONDS",
        min: 1,
        max: 600,
        default: 30,
        allowed: "an integer from 1 to 600",
    },
    Bound {
        key: "server.header_read_timeout_seconds",
        env: "NOTARIUM_SERVER_HEADER_READ_TIMEOUT_SECONDS",
        min: 1,
        max: 600,
        default: 30,
        allowed: "an integer from 1 to 600",
    },
    Bound {
        key: "server.idle_timeout_seconds",
        env: "NOTARIUM_SERVER_IDLE_TIMEOUT_SECONDS",
        min: 1,
        max: 86_400,
        default: 300,
        allowed: "an integer from 1 to 86400",
    },
    Bound {
        key: "server.max_connections",
        env: "NOTARIUM_SERVER_MAX_CONNECTIONS",
        min: 1,
        max: 1_000_000,
        default: 1_024,
        allowed: "an integer from 1 to 1000000",
    },
    Bound {
        key: "server.http2_max_concurrent_streams",
        env: "NOTARIUM_SERVER_HTTP2_MAX_CONCURRENT_STREAMS",
        min: 1,
        max: 10_000,
        default: 100,
        allowed: "an integer from 1 to 10000",
    },
    // Publishes whose client-signed roles expire sooner are accepted with a
    // warning in the log (0: never warn).
    Bound {
        key: "repositories.expiry_warning_days",
        env: "NOTARIUM_REPOSITORIES_EXPIRY_WARNING_DAYS",
        min: 0,
        max: 36_500,
        default: 30,
        allowed: "an integer from 0 (no warning) to 36500",
    },
    // PostgreSQL pool and session bounds (ignored with SQLite).
    Bound {
        key: "storage.max_connections",
        env: "NOTARIUM_STORAGE_MAX_CONNECTIONS",
        min: 1,
        max: 1000,
        default: 10,
        allowed: "an integer from 1 to 1000",
    },
    Bound {
        key: "storage.acquire_timeout_seconds",
        env: "NOTARIUM_STORAGE_ACQUIRE_TIMEOUT_SECONDS",
        min: 1,
        max: 600,
        default: 5,
        allowed: "an integer from 1 to 600",
    },
    Bound {
        key: "storage.statement_timeout_seconds",
        env: "NOTARIUM_STORAGE_STATEMENT_TIMEOUT_SECONDS",
        min: 1,
        max: 3600,
        default: 30,
        allowed: "an integer from 1 to 3600",
    },
    Bound {
        key: "storage.lock_timeout_seconds",
        env: "NOTARIUM_STORAGE_LOCK_TIMEOUT_SECONDS",
        min: 1,
        max: 3600,
        default: 10,
        allowed: "an integer from 1 to 3600",
    },
];

fn bound(key: &str) -> Option<&'static Bound> {
    BOUNDS.iter().find(|b| b.key == key)
}

/// Environment variables, mapped one by one to known keys (STYLE.md §3: splitting on `_` is
/// ambiguous for keys such as `db_url`).
pub const ENV_HTTP_ADDR: &str = "NOTARIUM_HTTP_ADDR";
pub const ENV_TLS_CERT_FILE: &str = "NOTARIUM_TLS_CERT_FILE";
pub const ENV_TLS_KEY_FILE: &str = "NOTARIUM_TLS_KEY_FILE";
pub const ENV_DB_URL: &str = "NOTARIUM_DB_URL";
/// The PostgreSQL password (overrides one in `storage.db_url`).
pub const ENV_DB_PASSWORD: &str = "NOTARIUM_DB_PASSWORD";
pub const ENV_DB_PASSWORD_FILE: &str = "NOTARIUM_DB_PASSWORD_FILE";
pub const ENV_MIGRATE_ON_START: &str = "NOTARIUM_STORAGE_MIGRATE_ON_START";
pub const ENV_STORAGE_BACKEND: &str = "NOTARIUM_STORAGE_BACKEND";
pub const ENV_LOG_LEVEL: &str = "NOTARIUM_LOG_LEVEL";
pub const ENV_LOGGING_FORMAT: &str = "NOTARIUM_LOGGING_FORMAT";
pub const ENV_KEY_ALGORITHM: &str = "NOTARIUM_KEY_ALGORITHM";
pub const ENV_KEYS_DIR: &str = "NOTARIUM_KEYS_DIR";
pub const ENV_KEY_PASSPHRASE: &str = "NOTARIUM_KEY_PASSPHRASE";
pub const ENV_AUTH_TYPE: &str = "NOTARIUM_AUTH_TYPE";
pub const ENV_AUTH_REALM: &str = "NOTARIUM_AUTH_REALM";
pub const ENV_AUTH_SERVICE: &str = "NOTARIUM_AUTH_SERVICE";
pub const ENV_AUTH_ISSUER: &str = "NOTARIUM_AUTH_ISSUER";
pub const ENV_AUTH_ROOTCERTBUNDLE: &str = "NOTARIUM_AUTH_ROOTCERTBUNDLE";
pub const ENV_AUTH_AUTOREDIRECT: &str = "NOTARIUM_AUTH_AUTOREDIRECT";
pub const ENV_INSECURE_NO_AUTH: &str = "NOTARIUM_INSECURE_NO_AUTH";

// ------------------------------------------------------------------------------------------------
// The typed result
// ------------------------------------------------------------------------------------------------

/// The validated configuration. `Debug` never shows secrets (see [`Secret`]).
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub trust_service: TrustServiceConfig,
    pub storage: StorageConfig,
    pub logging: LoggingConfig,
    pub caching: CachingConfig,
    pub repositories: RepositoriesConfig,
    pub keys: KeysConfig,
    /// `registries`: where the images of some GUNs live. From the config file only.
    pub registries: Vec<RegistryConfig>,
    pub delegations: DelegationsConfig,
    /// `limits`: caps on what one publish may cost.
    pub limits: LimitsConfig,
    /// `auth` with `type: token`; `None` serves everyone (loopback only, unless
    /// `server.insecure_no_auth`).
    pub auth: Option<AuthConfig>,
}

/// `limits.*`: what one publish may carry and cost (see [`BOUNDS`] for defaults and ranges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    pub keys_per_role: usize,
    pub signatures_per_file: usize,
    pub delegations_per_file: usize,
    pub targets_per_file: usize,
    pub parts_per_upload: usize,
    pub registry_lookups_per_publish: usize,
    /// Signature verifications run at once; 0 means one per CPU core.
    pub validation_concurrency: usize,
    /// The longest a request waits for a repository's lock or a verification slot before it is
    /// told to retry (503).
    pub busy_wait: Duration,
}

/// `server.*` connection handling (slowloris, idle and connection-count bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// A request's header must arrive within this (also the keep-alive wait between requests).
    pub header_read_timeout: Duration,
    /// A connection with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
    /// Connections beyond this are closed at once.
    pub max_connections: usize,
    pub http2_max_concurrent_streams: u32,
}

/// Docker registry token auth, configured as notary-server reads it
/// (`auth.options`, PROTOCOL.md §7.1, §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Where clients get tokens (the challenge's `realm`).
    pub realm: String,
    /// The token audience (`aud`) this server accepts; the challenge's `service`.
    pub service: String,
    /// The token issuer (`iss`) this server accepts.
    pub issuer: String,
    /// PEM certificates that token signing keys must chain to; resolved against the config
    /// file's folder.
    pub rootcertbundle: PathBuf,
    /// Challenge with `https://<request host>/auth/token` instead of `realm`.
    pub autoredirect: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub http_addr: ListenAddr,
    pub tls: TlsSource,
    pub max_body_bytes: u64,
    /// Where development certificates and the generated key-sealing passphrase live.
    pub keys_dir: PathBuf,
    pub connections: ConnectionConfig,
    /// `server.insecure_no_auth`: allow listening beyond loopback without `auth`.
    pub insecure_no_auth: bool,
}

/// Where the server's TLS certificate comes from. There is no plain-HTTP mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// `server.tls_cert_file` + `server.tls_key_file`.
    Files {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
    /// Neither is set: generate (once) a development CA and server certificate into `keys_dir`.
    DevCertificates,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustServiceConfig {
    pub kind: TrustServiceKind,
    pub key_algorithm: KeyAlgorithm,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustServiceKind {
    /// notarium holds the timestamp/snapshot keys itself, sealed in its database.
    Local,
    /// An external notary-signer (or `notarium signer`) holds them.
    Remote(RemoteTrust),
}

/// notary-server's `trust_service` keys for `type: "remote"`; file paths
/// are resolved against the config file's directory, as notary does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteTrust {
    pub hostname: String,
    pub port: u16,
    pub tls_ca_file: PathBuf,
    /// This server's client certificate and key (mutual TLS), if given.
    pub client_identity: Option<(PathBuf, PathBuf)>,
}

/// Algorithm for newly created server-held (timestamp, snapshot) keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Ecdsa,
    Ed25519,
}

impl KeyAlgorithm {
    /// Notary's name (`data.ECDSAKey`, `data.ED25519Key`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ecdsa => "ecdsa",
            Self::Ed25519 => "ed25519",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    Sqlite {
        /// Database file; relative paths are relative to the working directory (file values were
        /// already resolved against the config file's folder).
        path: PathBuf,
    },
    Postgres(PostgresConfig),
}

impl StorageConfig {
    /// The folder holding a SQLite database, to create before opening it.
    pub fn data_dir(&self) -> Option<PathBuf> {
        match self {
            Self::Sqlite { path } => Some(match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            }),
            Self::Postgres(_) => None,
        }
    }
}

/// `storage` with `backend: "postgres"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// notary's form: `postgres://user@host:5432/db?sslmode=…&sslrootcert=…&sslcert=…&sslkey=…`.
    pub url: DbUrl,
    /// From `NOTARIUM_DB_PASSWORD` or `storage.password_file` (`NOTARIUM_DB_PASSWORD_FILE`);
    /// replaces a password written in the URL.
    pub password: Option<Secret>,
    /// `storage.max_connections`: pool size per process.
    pub max_connections: u32,
    /// `storage.acquire_timeout_seconds`: how long a request waits for a connection before a 503.
    pub acquire_timeout: Duration,
    /// `storage.statement_timeout_seconds` (PostgreSQL `statement_timeout`).
    pub statement_timeout: Duration,
    /// `storage.lock_timeout_seconds` (PostgreSQL `lock_timeout`).
    pub lock_timeout: Duration,
    /// `storage.migrate_on_start` (default true): `serve` runs the migrations before serving.
    pub migrate_on_start: bool,
}

/// A database URL whose password never shows in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct DbUrl(Zeroizing<String>);

impl DbUrl {
    /// The URL with its password; only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DbUrl({})", redact_password(&self.0))
    }
}

impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_password(&self.0))
    }
}

/// `scheme://user:secret@host/…` as `scheme://user:****@host/…`; the user name stays, it helps
/// when reading logs. A `password=` query parameter is masked too.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rfind('@') {
        Some(at) => match authority[..at].split_once(':') {
            Some((user, _)) => format!("{user}:****{}", &authority[at..]),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((name, _)) if name.eq_ignore_ascii_case("password") => {
                        format!("{name}=****")
                    }
                    _ => param.to_string(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggingConfig {
    pub level: LogLevel,
    pub format: LogFormat,
}

/// How log lines are written (notary-server's `-logf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (notary's `logfmt` spelling is accepted too).
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogFormat {
    /// The accepted spellings of a format.
    pub const NAMES: &'static str = "json, text (logfmt)";

    /// notary's `-logf` takes json or logfmt; "text" is the plain name of
    /// the latter.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "json" => Some(Self::Json),
            "text" | "logfmt" => Some(Self::Text),
            _ => None,
        }
    }
}

impl LogLevel {
    /// The accepted spellings of a level.
    pub const NAMES: &'static str = "trace, debug, info, warn (warning), error, fatal, panic";

    /// A level as notary's `logging.level` names it (logrus.ParseLevel is
    /// case-insensitive; fatal and panic have no tracing equivalent).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "trace" => Some(Self::Trace),
            "debug" => Some(Self::Debug),
            "info" => Some(Self::Info),
            "warn" | "warning" => Some(Self::Warn),
            "error" | "fatal" | "panic" => Some(Self::Error),
            _ => None,
        }
    }

    /// The directive for a `tracing_subscriber::EnvFilter`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// `Cache-Control` max-age values in seconds (PROTOCOL.md §1.8). 0 disables caching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachingConfig {
    pub current_metadata_max_age: u32,
    pub consistent_metadata_max_age: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RepositoriesConfig {
    /// When non-empty, only GUNs starting with one of these prefixes are accepted.
    pub gun_prefixes: Vec<String>,
    /// `repositories.immutable`: GUNs whose signed tags cannot be changed or removed. An entry
    /// ending in `/` is a prefix (every GUN starting with it); any other entry is one exact GUN.
    pub immutable: Vec<String>,
    /// `repositories.expiry_warning_days`: a publish whose root, targets or delegations expire
    /// within this is accepted with a warning in the log. Zero: no warning.
    pub expiry_warning: Duration,
}

impl RepositoriesConfig {
    /// Whether `gun` is listed in `repositories.immutable`, exactly or under a prefix.
    pub fn is_immutable(&self, gun: &str) -> bool {
        crate::policy::listed(&self.immutable, gun)
    }
}

/// One entry of `registries`: the registry holding the images whose GUNs start with
/// `gun_prefix`. `Debug` never shows the password.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Non-empty, path-clean, ends in `/` (e.g. `registry.example.com/`); unique across entries.
    pub gun_prefix: String,
    /// `http://` or `https://` with a host and optional port, no path, query, fragment or
    /// credentials, and no trailing `/` (e.g. `https://registry.example.com`).
    pub url: String,
    pub username: Option<String>,
    /// From `password` (inline, discouraged) or the contents of `password_file` (trailing line
    /// breaks removed). Never set without `username`.
    pub password: Option<Secret>,
    /// Refuse to sign digests this registry does not know. Default `false`.
    pub require_image_manifests: bool,
    /// `timeout_seconds`: 1 to 120, default 10.
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DelegationsConfig {
    /// `delegations.trusted_ca_file`, resolved against the config file's folder. Checked at load
    /// time to exist and hold at least one PEM `CERTIFICATE` block.
    pub trusted_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct KeysConfig {
    /// From `NOTARIUM_KEY_PASSPHRASE` only. `None`: use (or generate) `keys_dir/passphrase`.
    pub passphrase: Option<Secret>,
}

/// A secret string: zeroized on drop, never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The only way to read the value; grep for it when auditing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `server.http_addr`. Notary's `:4443` means every interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    pub host: ListenHost,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenHost {
    /// Empty host (`:4443`): all interfaces, as Go's `net.Listen` does.
    Unspecified,
    Ip(IpAddr),
    /// A host name, resolved when binding (Go listens on one of its addresses).
    Name(String),
}

impl ListenAddr {
    /// Addresses to try binding, in order; bind the first that works. For all interfaces that is
    /// `[::]` (dual-stack on Linux, like Go) and then `0.0.0.0` for hosts without IPv6.
    pub fn candidates(&self) -> std::io::Result<Vec<SocketAddr>> {
        Ok(match &self.host {
            ListenHost::Unspecified => vec![
                SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), self.port),
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), self.port),
            ],
            ListenHost::Ip(ip) => vec![SocketAddr::new(*ip, self.port)],
            ListenHost::Name(name) => (name.as_str(), self.port).to_socket_addrs()?.collect(),
        })
    }

    fn parse(s: &str) -> Result<Self, &'static str> {
        const FORM: &str = "host:port, [ipv6]:port or :port (all interfaces), with a numeric port";
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (ip, port) = rest.split_once("]:").ok_or(FORM)?;
            let ip: Ipv6Addr = ip.parse().map_err(|_| FORM)?;
            (ListenHost::Ip(IpAddr::V6(ip)), port)
        } else {
            let (host, port) = s.rsplit_once(':').ok_or(FORM)?;
            let host = if host.is_empty() {
                ListenHost::Unspecified
            } else if let Ok(ip) = host.parse::<Ipv4Addr>() {
                ListenHost::Ip(IpAddr::V4(ip))
            } else if is_host_name(host) {
                ListenHost::Name(host.to_string())
            } else {
                // Includes an unbracketed IPv6 address, which is ambiguous with the port.
                return Err(FORM);
            };
            (host, port)
        };
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FORM);
        }
        let port = port.parse::<u16>().map_err(|_| FORM)?;
        Ok(Self { host, port })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            ListenHost::Unspecified => write!(f, ":{}", self.port),
            ListenHost::Ip(ip) => write!(f, "{}", SocketAddr::new(*ip, self.port)),
            ListenHost::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

fn is_host_name(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig {
                http_addr: ListenAddr {
                    host: ListenHost::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                    port: 4443,
                },
                tls: TlsSource::DevCertificates,
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                keys_dir: PathBuf::from(DEFAULT_KEYS_DIR),
                connections: connection_config(&|key| default_of(key)),
                insecure_no_auth: false,
            },
            trust_service: TrustServiceConfig {
                kind: TrustServiceKind::Local,
                key_algorithm: KeyAlgorithm::Ecdsa,
            },
            storage: StorageConfig::Sqlite {
                path: PathBuf::from(DEFAULT_DB_PATH),
            },
            logging: LoggingConfig {
                level: LogLevel::Info,
                format: LogFormat::Text,
            },
            caching: CachingConfig {
                current_metadata_max_age: DEFAULT_CURRENT_MAX_AGE,
                consistent_metadata_max_age: DEFAULT_CONSISTENT_MAX_AGE,
            },
            repositories: RepositoriesConfig {
                expiry_warning: expiry_warning(&|key| default_of(key)),
                ..RepositoriesConfig::default()
            },
            keys: KeysConfig::default(),
            registries: Vec::new(),
            delegations: DelegationsConfig::default(),
            limits: limits_config(&|key| default_of(key)),
            auth: None,
        }
    }
}

fn default_of(key: &str) -> u64 {
    bound(key).map_or(0, |b| b.default)
}

fn as_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Builds `limits` from a lookup of the (checked) integer settings.
fn limits_config(get: &dyn Fn(&str) -> u64) -> LimitsConfig {
    LimitsConfig {
        keys_per_role: as_usize(get("limits.keys_per_role")),
        signatures_per_file: as_usize(get("limits.signatures_per_file")),
        delegations_per_file: as_usize(get("limits.delegations_per_file")),
        targets_per_file: as_usize(get("limits.targets_per_file")),
        parts_per_upload: as_usize(get("limits.parts_per_upload")),
        registry_lookups_per_publish: as_usize(get("limits.registry_lookups_per_publish")),
        validation_concurrency: as_usize(get("limits.validation_concurrency")),
        busy_wait: Duration::from_secs(get("limits.busy_wait_seconds")),
    }
}

fn expiry_warning(get: &dyn Fn(&str) -> u64) -> Duration {
    Duration::from_secs(get("repositories.expiry_warning_days").saturating_mul(86_400))
}

fn connection_config(get: &dyn Fn(&str) -> u64) -> ConnectionConfig {
    ConnectionConfig {
        header_read_timeout: Duration::from_secs(get("server.header_read_timeout_seconds")),
        idle_timeout: Duration::from_secs(get("server.idle_timeout_seconds")),
        max_connections: as_usize(get("server.max_connections")),
        http2_max_concurrent_streams: u32::try_from(get("server.http2_max_concurrent_streams"))
            .unwrap_or(u32::MAX),
    }
}

// ------------------------------------------------------------------------------------------------
// Overrides, origins, errors, warnings
// ------------------------------------------------------------------------------------------------

/// Values from command-line flags (filled by `main.rs`); `None` leaves the lower layers alone.
/// Strings, not typed values, so flags are validated by the same code and errors as the file.
#[derive(Debug, Clone, Default)]
pub struct ConfigOverrides {
    pub http_addr: Option<String>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub storage_backend: Option<String>,
    pub db_url: Option<String>,
    pub log_level: Option<String>,
    /// `serve --logf`: text (logfmt) or json.
    pub log_format: Option<String>,
    pub key_algorithm: Option<String>,
    pub keys_dir: Option<PathBuf>,
    pub max_body_bytes: Option<u64>,
    pub auth_type: Option<String>,
    pub auth_realm: Option<String>,
    pub auth_service: Option<String>,
    pub auth_issuer: Option<String>,
    pub auth_rootcertbundle: Option<PathBuf>,
    pub auth_autoredirect: Option<bool>,
    pub insecure_no_auth: Option<bool>,
}

/// Where a value came from; shown in errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env(&'static str),
    CommandLine,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("built-in default"),
            Self::File(p) => write!(f, "config file {}", p.display()),
            Self::Env(var) => write!(f, "environment variable {var}"),
            Self::CommandLine => f.write_str("command line"),
        }
    }
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("config file {} is not valid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("config file {} is not valid TOML: {source}", path.display())]
    Toml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },

    #[error("config file {}: .{extension} files are not supported; use JSON (as notary-server) or TOML", path.display())]
    UnsupportedFormat { path: PathBuf, extension: String },

    #[error("{key} must be {expected}, found {found} ({origin})")]
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
        origin: Origin,
    },

    #[error("{key} = {value:?} is invalid ({origin}); allowed: {allowed}")]
    Invalid {
        key: String,
        value: String,
        allowed: &'static str,
        origin: Origin,
    },

    /// A GUN or GUN prefix that breaks the GUN grammar.
    #[error("{key} = {value:?} is invalid ({origin}): {reason}")]
    InvalidName {
        key: String,
        value: String,
        origin: Origin,
        #[source]
        reason: Box<NameError>,
    },

    #[error("{key} {value:?} {reason} ({origin})")]
    Unsupported {
        key: String,
        value: String,
        reason: &'static str,
        origin: Origin,
    },

    #[error(
        "{key} must not be set in the config file {}: pass it in the {ENV_KEY_PASSPHRASE} environment variable, or leave it unset to use the generated <keys_dir>/passphrase",
        path.display()
    )]
    SecretInFile { key: String, path: PathBuf },

    #[error("{var} is set but empty; unset it to use the generated <keys_dir>/passphrase")]
    EmptySecret { var: &'static str },

    /// A remote trust service needs the signer's address and CA; a client
    /// certificate needs its key.
    #[error("{key} is set ({origin}) but {missing} is not; a remote notary-signer needs it")]
    RemoteIncomplete {
        key: &'static str,
        missing: &'static str,
        origin: Origin,
    },

    #[error(
        "{key} is set ({origin}) but {missing} is not; set both, or neither to use generated development certificates"
    )]
    Incomplete {
        key: &'static str,
        missing: &'static str,
        origin: Origin,
    },

    #[error("{key} appears more than once in {} (keys are case-insensitive)", path.display())]
    DuplicateKey { key: String, path: PathBuf },

    #[error("{key} is required ({origin}): {hint}")]
    Missing {
        key: String,
        hint: &'static str,
        origin: Origin,
    },

    #[error("{key} and {other} are both set ({origin}); set only one")]
    Conflict {
        key: String,
        other: String,
        origin: Origin,
    },

    #[error("{key} is set but {missing} is not ({origin}); {hint}")]
    Requires {
        key: String,
        missing: String,
        hint: &'static str,
        origin: Origin,
    },

    #[error("{key} = {value:?} is already used by {first} ({origin}); each entry needs its own")]
    Duplicate {
        key: String,
        value: String,
        first: String,
        origin: Origin,
    },

    /// A file a key names (a password file, a CA bundle) cannot be read.
    #[error("{key}: cannot read {} ({origin}): {source}", path.display())]
    ReadReferencedFile {
        key: String,
        path: PathBuf,
        origin: Origin,
        #[source]
        source: std::io::Error,
    },
}

/// Something worth telling the operator that does not stop the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// A key notary-server does not know either (likely a typo).
    UnknownKey { key: String, path: PathBuf },
    /// A key notary-server knows that has no effect in notarium.
    Ignored { key: String, reason: &'static str },
    /// A setting that works but should be written another way (e.g. an inline secret).
    Discouraged { key: String, advice: &'static str },
}

impl Warning {
    /// The dotted key the warning is about.
    pub fn key(&self) -> &str {
        match self {
            Self::UnknownKey { key, .. }
            | Self::Ignored { key, .. }
            | Self::Discouraged { key, .. } => key,
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKey { key, path } => {
                write!(f, "unknown key {key} in {} (ignored)", path.display())
            }
            Self::Ignored { key, reason } => write!(f, "{key} is ignored: {reason}"),
            Self::Discouraged { key, advice } => write!(f, "{key} is discouraged: {advice}"),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Layers of raw values
// ------------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Val<T> {
    value: T,
    origin: Origin,
}

impl<T> Val<T> {
    fn new(value: T, origin: &Origin) -> Self {
        Self {
            value,
            origin: origin.clone(),
        }
    }
}

impl Val<PathBuf> {
    /// Relative paths from the file resolve against the file's folder, as notary's
    /// `utils.GetPathRelativeToConfig`; from env or flags they stay relative to the working dir.
    fn resolved(&self) -> PathBuf {
        resolve_against(&self.origin, &self.value)
    }
}

fn resolve_against(origin: &Origin, p: &Path) -> PathBuf {
    match origin {
        Origin::File(file) if p.is_relative() => {
            let base = file.parent().unwrap_or(Path::new(""));
            base.join(p).components().collect::<PathBuf>()
        }
        _ => p.components().collect(),
    }
}

/// Raw values of one source. Types are checked while reading (a number where a string belongs
/// is wrong whatever the other layers say); meaning is checked after merging.
#[derive(Debug, Clone, Default)]
struct Layer {
    http_addr: Option<Val<String>>,
    tls_cert_file: Option<Val<PathBuf>>,
    tls_key_file: Option<Val<PathBuf>>,
    client_ca_file: Option<Val<String>>,
    max_body_bytes: Option<Val<u64>>,
    keys_dir: Option<Val<PathBuf>>,
    trust_type: Option<Val<String>>,
    key_algorithm: Option<Val<String>>,
    trust_hostname: Option<Val<String>>,
    trust_port: Option<Val<u64>>,
    trust_ca_file: Option<Val<PathBuf>>,
    trust_client_cert: Option<Val<PathBuf>>,
    trust_client_key: Option<Val<PathBuf>>,
    storage_backend: Option<Val<String>>,
    db_url: Option<Val<String>>,
    db_password: Option<Secret>,
    db_password_file: Option<Val<PathBuf>>,
    migrate_on_start: Option<Val<bool>>,
    log_level: Option<Val<String>>,
    log_format: Option<Val<String>>,
    current_max_age: Option<Val<u64>>,
    consistent_max_age: Option<Val<u64>>,
    gun_prefixes: Option<Val<Vec<String>>>,
    auth_type: Option<Val<String>>,
    auth_realm: Option<Val<String>>,
    auth_service: Option<Val<String>>,
    auth_issuer: Option<Val<String>>,
    auth_rootcertbundle: Option<Val<PathBuf>>,
    auth_autoredirect: Option<Val<bool>>,
    insecure_no_auth: Option<Val<bool>>,
    passphrase: Option<Secret>,
    immutable: Option<Val<Vec<String>>>,
    trusted_ca_file: Option<Val<PathBuf>>,
    /// Only the file sets it; the list replaces lower layers' as a whole.
    registries: Option<Val<Vec<RawRegistry>>>,
    /// The integer settings of [`BOUNDS`], by dotted key.
    bounds: std::collections::BTreeMap<&'static str, Val<u64>>,
}

/// One `registries[]` entry as written; checked in [`validate`].
#[derive(Debug, Clone, Default)]
struct RawRegistry {
    gun_prefix: Option<Val<String>>,
    url: Option<Val<String>>,
    username: Option<Val<String>>,
    /// Inline `password`; the value is never echoed.
    password: Option<Secret>,
    password_file: Option<Val<PathBuf>>,
    require_image_manifests: Option<Val<bool>>,
    timeout_seconds: Option<Val<u64>>,
}

fn normalized_backend(name: &str) -> &str {
    // notary calls it "sqlite3" (`notary.SQLiteBackend`); we also accept the plain name.
    if name == "sqlite3" { "sqlite" } else { name }
}

impl Layer {
    /// Apply `upper` on top of `self`.
    fn merge(&mut self, upper: Self, warnings: &mut Vec<Warning>) {
        // storage.db_url belongs to the backend it was written for: a later layer that switches
        // the backend without giving a URL must not reuse, say, a MySQL DSN as a SQLite path.
        if let Some(new) = &upper.storage_backend {
            let current = self
                .storage_backend
                .as_ref()
                .map_or("sqlite", |b| normalized_backend(&b.value));
            if normalized_backend(&new.value) != current
                && upper.db_url.is_none()
                && self.db_url.take().is_some()
            {
                warnings.push(Warning::Ignored {
                    key: "storage.db_url".into(),
                    reason: "storage.backend was changed by a later source (environment or command line) \
                             without a new storage.db_url, so the default database path is used",
                });
            }
        }
        macro_rules! take {
            ($($f:ident),*) => { $( if upper.$f.is_some() { self.$f = upper.$f; } )* };
        }
        take!(
            http_addr,
            tls_cert_file,
            tls_key_file,
            client_ca_file,
            max_body_bytes,
            keys_dir,
            trust_type,
            key_algorithm,
            trust_hostname,
            trust_port,
            trust_ca_file,
            trust_client_cert,
            trust_client_key,
            storage_backend,
            db_url,
            db_password,
            db_password_file,
            migrate_on_start,
            log_level,
            log_format,
            current_max_age,
            consistent_max_age,
            gun_prefixes,
            auth_type,
            auth_realm,
            auth_service,
            auth_issuer,
            auth_rootcertbundle,
            auth_autoredirect,
            insecure_no_auth,
            passphrase,
            immutable,
            trusted_ca_file,
            registries
        );
        self.bounds.extend(upper.bounds);
    }
}

// ------------------------------------------------------------------------------------------------
// Reading the file
// ------------------------------------------------------------------------------------------------

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Walks one file, remembering the dotted path for messages.
struct FileReader<'a> {
    path: &'a Path,
    origin: Origin,
    warnings: &'a mut Vec<Warning>,
}

impl FileReader<'_> {
    fn wrong_type(&self, key: &str, expected: &'static str, v: &Value) -> ConfigError {
        ConfigError::WrongType {
            key: key.to_string(),
            expected,
            found: json_type(v),
            origin: self.origin.clone(),
        }
    }

    /// Entries of an object with lower-cased keys (viper, which notary uses, is case-insensitive),
    /// skipping `null` values (viper treats them as unset) and `"//"` comments.
    fn entries<'v>(
        &self,
        prefix: &str,
        v: &'v Value,
    ) -> Result<Vec<(String, String, &'v Value)>, ConfigError> {
        let Value::Object(map) = v else {
            return Err(self.wrong_type(prefix, "an object", v));
        };
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(map.len());
        for (k, v) in map {
            let lower = k.to_ascii_lowercase();
            let dotted = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if !seen.insert(lower.clone()) {
                return Err(ConfigError::DuplicateKey {
                    key: dotted,
                    path: self.path.to_path_buf(),
                });
            }
            if v.is_null() || lower == "//" {
                continue;
            }
            out.push((lower, dotted, v));
        }
        Ok(out)
    }

    fn string(&self, key: &str, v: &Value) -> Result<Option<Val<String>>, ConfigError> {
        match v {
            // Empty means unset, as viper's GetString does.
            Value::String(s) if s.is_empty() => Ok(None),
            Value::String(s) => Ok(Some(Val::new(s.clone(), &self.origin))),
            _ => Err(self.wrong_type(key, "a string", v)),
        }
    }

    fn path(&self, key: &str, v: &Value) -> Result<Option<Val<PathBuf>>, ConfigError> {
        Ok(self
            .string(key, v)?
            .map(|s| Val::new(PathBuf::from(s.value), &self.origin)))
    }

    /// A non-negative integer, as a number or a string of digits (notary reads these with
    /// `GetString` + `strconv.Atoi`, so `"300"` works there too).
    fn integer(&self, key: &str, v: &Value) -> Result<Option<Val<u64>>, ConfigError> {
        const EXPECTED: &str = "a non-negative integer";
        let n = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) if s.is_empty() => return Ok(None),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => return Err(self.wrong_type(key, EXPECTED, v)),
        };
        match n {
            Some(n) => Ok(Some(Val::new(n, &self.origin))),
            None => Err(ConfigError::Invalid {
                key: key.to_string(),
                value: match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
                allowed: EXPECTED,
                origin: self.origin.clone(),
            }),
        }
    }

    /// A list of strings; a single string is split on whitespace (viper's `GetStringSlice`).
    fn string_list(&self, key: &str, v: &Value) -> Result<Option<Val<Vec<String>>>, ConfigError> {
        let list = match v {
            Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
            Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.wrong_type(key, "an array of strings", other)),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(self.wrong_type(key, "an array of strings", v)),
        };
        Ok(Some(Val::new(list, &self.origin)))
    }

    fn boolean(&self, key: &str, v: &Value) -> Result<Option<Val<bool>>, ConfigError> {
        match v {
            Value::Bool(b) => Ok(Some(Val::new(*b, &self.origin))),
            _ => Err(self.wrong_type(key, "a boolean (true or false)", v)),
        }
    }

    /// `registries`: an array of objects. Meaning is checked in [`validate`]; here only types,
    /// unknown keys, and the warning for an inline password.
    fn registries(
        &mut self,
        list_key: &str,
        v: &Value,
    ) -> Result<Option<Val<Vec<RawRegistry>>>, ConfigError> {
        let Value::Array(items) = v else {
            return Err(self.wrong_type(list_key, "an array of objects", v));
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let mut r = RawRegistry::default();
            let entry_key = format!("{list_key}[{i}]");
            for (k, key, v) in self.entries(&entry_key, item)? {
                match k.as_str() {
                    "gun_prefix" => r.gun_prefix = self.string(&key, v)?,
                    "url" => r.url = self.string(&key, v)?,
                    "username" => r.username = self.string(&key, v)?,
                    "password" => {
                        r.password = self.string(&key, v)?.map(|s| Secret::new(s.value));
                        if r.password.is_some() {
                            self.warnings.push(Warning::Discouraged {
                                key,
                                advice: "a password written in the config file ends up in backups \
                                         and bug reports; put it in a file named by password_file",
                            });
                        }
                    }
                    "password_file" => r.password_file = self.path(&key, v)?,
                    "require_image_manifests" => {
                        r.require_image_manifests = self.boolean(&key, v)?;
                    }
                    "timeout_seconds" => r.timeout_seconds = self.integer(&key, v)?,
                    _ => self.unknown(key),
                }
            }
            out.push(r);
        }
        Ok(Some(Val::new(out, &self.origin)))
    }

    /// One of the integer settings of [`BOUNDS`] (`name` is its canonical dotted key, `key` as
    /// written), or an unknown key.
    fn bound(
        &mut self,
        layer: &mut Layer,
        name: &str,
        key: String,
        v: &Value,
    ) -> Result<(), ConfigError> {
        match bound(name) {
            Some(b) => {
                if let Some(value) = self.integer(&key, v)? {
                    layer.bounds.insert(b.key, value);
                }
            }
            None => self.unknown(key),
        }
        Ok(())
    }

    fn unknown(&mut self, key: String) {
        self.warnings.push(Warning::UnknownKey {
            key,
            path: self.path.to_path_buf(),
        });
    }

    fn ignored(&mut self, key: String, reason: &'static str) {
        self.warnings.push(Warning::Ignored { key, reason });
    }

    fn read(&mut self, root: &Value) -> Result<Layer, ConfigError> {
        let mut layer = Layer::default();
        if !root.is_object() {
            return Err(self.wrong_type("(top level)", "an object", root));
        }
        for (name, dotted, section) in self.entries("", root)? {
            match name.as_str() {
                "server" => self.server(&mut layer, &dotted, section)?,
                "trust_service" => self.trust_service(&mut layer, &dotted, section)?,
                "storage" => self.storage(&mut layer, &dotted, section)?,
                "logging" => {
                    for (k, key, v) in self.entries(&dotted, section)? {
                        match k.as_str() {
                            "level" => layer.log_level = self.string(&key, v)?,
                            "format" => layer.log_format = self.string(&key, v)?,
                            _ => self.unknown(key),
                        }
                    }
                }
                "caching" => {
                    for (k, key, v) in self.entries(&dotted, section)? {
                        if k != "max_age" {
                            self.unknown(key);
                            continue;
                        }
                        for (k, key, v) in self.entries(&key, v)? {
                            match k.as_str() {
                                "current_metadata" => {
                                    layer.current_max_age = self.integer(&key, v)?
                                }
                                "consistent_metadata" => {
                                    layer.consistent_max_age = self.integer(&key, v)?;
                                }
                                _ => self.unknown(key),
                            }
                        }
                    }
                }
                "repositories" => {
                    for (k, key, v) in self.entries(&dotted, section)? {
                        match k.as_str() {
                            "gun_prefixes" => layer.gun_prefixes = self.string_list(&key, v)?,
                            "immutable" => layer.immutable = self.string_list(&key, v)?,
                            "expiry_warning_days" => {
                                self.bound(&mut layer, "repositories.expiry_warning_days", key, v)?
                            }
                            _ => self.unknown(key),
                        }
                    }
                }
                "registries" => layer.registries = self.registries(&dotted, section)?,
                "limits" => {
                    for (k, key, v) in self.entries(&dotted, section)? {
                        self.bound(&mut layer, &format!("limits.{k}"), key, v)?;
                    }
                }
                "delegations" => {
                    for (k, key, v) in self.entries(&dotted, section)? {
                        match k.as_str() {
                            "trusted_ca_file" => layer.trusted_ca_file = self.path(&key, v)?,
                            _ => self.unknown(key),
                        }
                    }
                }
                "auth" => {
                    let mut options = None;
                    for (k, key, v) in self.entries(&dotted, section)? {
                        match k.as_str() {
                            "type" => layer.auth_type = self.string(&key, v)?,
                            "options" => options = Some((key, v)),
                            _ => self.unknown(key),
                        }
                    }
                    if let Some((key, v)) = options {
                        self.auth_options(&mut layer, &key, v)?;
                        // Without a type notary runs without auth too, so the options are dead
                        // unless the environment or a flag sets the type.
                        if layer.auth_type.is_none() {
                            self.ignored(
                                key,
                                "auth.type is not set, so no authentication is configured \
                                 (unless NOTARIUM_AUTH_TYPE or --auth-type sets it)",
                            );
                        }
                    }
                }
                "reporting" => {
                    for (k, key, _) in self.entries(&dotted, section)? {
                        match k.as_str() {
                            "bugsnag" => {
                                self.ignored(key, "notarium does not report errors to Bugsnag")
                            }
                            _ => self.unknown(key),
                        }
                    }
                }
                "keys" => {
                    for (k, key, _) in self.entries(&dotted, section)? {
                        match k.as_str() {
                            // Secrets in a config file end up in backups and bug reports.
                            "passphrase" => {
                                return Err(ConfigError::SecretInFile {
                                    key,
                                    path: self.path.to_path_buf(),
                                });
                            }
                            _ => self.unknown(key),
                        }
                    }
                }
                _ => self.unknown(dotted),
            }
        }
        Ok(layer)
    }

    fn server(&mut self, layer: &mut Layer, prefix: &str, v: &Value) -> Result<(), ConfigError> {
        for (k, key, v) in self.entries(prefix, v)? {
            match k.as_str() {
                "http_addr" => layer.http_addr = self.string(&key, v)?,
                "tls_cert_file" => layer.tls_cert_file = self.path(&key, v)?,
                "tls_key_file" => layer.tls_key_file = self.path(&key, v)?,
                "client_ca_file" => layer.client_ca_file = self.string(&key, v)?,
                "max_body_bytes" => layer.max_body_bytes = self.integer(&key, v)?,
                "keys_dir" => layer.keys_dir = self.path(&key, v)?,
                "insecure_no_auth" => layer.insecure_no_auth = self.boolean(&key, v)?,
                _ => self.bound(layer, &format!("server.{k}"), key, v)?,
            }
        }
        Ok(())
    }

    /// `auth.options` (distribution's token access controller options).
    fn auth_options(
        &mut self,
        layer: &mut Layer,
        prefix: &str,
        v: &Value,
    ) -> Result<(), ConfigError> {
        for (k, key, v) in self.entries(prefix, v)? {
            match k.as_str() {
                "realm" => layer.auth_realm = self.string(&key, v)?,
                "service" => layer.auth_service = self.string(&key, v)?,
                "issuer" => layer.auth_issuer = self.string(&key, v)?,
                "rootcertbundle" => layer.auth_rootcertbundle = self.path(&key, v)?,
                "autoredirect" => layer.auth_autoredirect = self.boolean(&key, v)?,
                _ => self.unknown(key),
            }
        }
        Ok(())
    }

    fn trust_service(
        &mut self,
        layer: &mut Layer,
        prefix: &str,
        v: &Value,
    ) -> Result<(), ConfigError> {
        for (k, key, v) in self.entries(prefix, v)? {
            match k.as_str() {
                "type" => layer.trust_type = self.string(&key, v)?,
                "key_algorithm" => layer.key_algorithm = self.string(&key, v)?,
                "hostname" => layer.trust_hostname = self.string(&key, v)?,
                "port" => layer.trust_port = self.integer(&key, v)?,
                "tls_ca_file" => layer.trust_ca_file = self.path(&key, v)?,
                "tls_client_cert" => layer.trust_client_cert = self.path(&key, v)?,
                "tls_client_key" => layer.trust_client_key = self.path(&key, v)?,
                _ => self.unknown(key),
            }
        }
        Ok(())
    }

    fn storage(&mut self, layer: &mut Layer, prefix: &str, v: &Value) -> Result<(), ConfigError> {
        for (k, key, v) in self.entries(prefix, v)? {
            match k.as_str() {
                "backend" => layer.storage_backend = self.string(&key, v)?,
                "db_url" => layer.db_url = self.string(&key, v)?,
                "password_file" => layer.db_password_file = self.path(&key, v)?,
                "migrate_on_start" => layer.migrate_on_start = self.boolean(&key, v)?,
                // The value of `password` is never echoed: warnings name keys only.
                "database" | "tls_ca_file" | "client_cert_file" | "client_key_file"
                | "username" | "password" => {
                    self.ignored(key, "used only with the rethinkdb backend")
                }
                _ => self.bound(layer, &format!("storage.{k}"), key, v)?,
            }
        }
        Ok(())
    }
}

fn read_file_layer(path: &Path, warnings: &mut Vec<Warning>) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let root: Value = match extension.as_str() {
        "toml" => toml::from_str(&text).map_err(|source| ConfigError::Toml {
            path: path.to_path_buf(),
            source,
        })?,
        "yaml" | "yml" | "hcl" | "ini" | "properties" | "env" => {
            return Err(ConfigError::UnsupportedFormat {
                path: path.to_path_buf(),
                extension,
            });
        }
        // notary-server picks the format by extension; JSON is what everyone uses, and a file
        // without a known extension is most likely JSON too.
        _ => serde_json::from_str(&text).map_err(|source| ConfigError::Json {
            path: path.to_path_buf(),
            source,
        })?,
    };
    FileReader {
        path,
        origin: Origin::File(path.to_path_buf()),
        warnings,
    }
    .read(&root)
}

// ------------------------------------------------------------------------------------------------
// Environment and flags
// ------------------------------------------------------------------------------------------------

fn env_layer(env: &impl Fn(&str) -> Option<String>) -> Result<Layer, ConfigError> {
    // An empty variable counts as unset (viper's default), so `NOTARIUM_X= notarium serve` is
    // harmless. The passphrase is the exception: empty there is a mistake, not a choice.
    let get = |var: &'static str| -> Option<Val<String>> {
        env(var)
            .filter(|v| !v.is_empty())
            .map(|v| Val::new(v, &Origin::Env(var)))
    };
    let path = |var: &'static str| get(var).map(|v| Val::new(PathBuf::from(v.value), &v.origin));
    let boolean = |var: &'static str| -> Result<Option<Val<bool>>, ConfigError> {
        let Some(v) = get(var) else {
            return Ok(None);
        };
        let value = match v.value.to_ascii_lowercase().as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => {
                return Err(invalid(var, &v, v.value.clone(), "true, false, 1 or 0"));
            }
        };
        Ok(Some(Val::new(value, &v.origin)))
    };
    let mut bounds = std::collections::BTreeMap::new();
    for b in BOUNDS {
        if let Some(v) = get(b.env) {
            let n = v
                .value
                .trim()
                .parse::<u64>()
                .map_err(|_| ConfigError::Invalid {
                    key: b.key.to_string(),
                    value: v.value.clone(),
                    allowed: b.allowed,
                    origin: v.origin.clone(),
                })?;
            bounds.insert(b.key, Val::new(n, &v.origin));
        }
    }
    let passphrase = match env(ENV_KEY_PASSPHRASE) {
        Some(p) if p.is_empty() => {
            return Err(ConfigError::EmptySecret {
                var: ENV_KEY_PASSPHRASE,
            });
        }
        Some(p) => Some(Secret::new(p)),
        None => None,
    };
    let db_password = match env(ENV_DB_PASSWORD) {
        Some(p) if p.is_empty() => {
            return Err(ConfigError::EmptySecret {
                var: ENV_DB_PASSWORD,
            });
        }
        Some(p) => Some(Secret::new(p)),
        None => None,
    };
    Ok(Layer {
        db_password,
        db_password_file: path(ENV_DB_PASSWORD_FILE),
        migrate_on_start: boolean(ENV_MIGRATE_ON_START)?,
        http_addr: get(ENV_HTTP_ADDR),
        tls_cert_file: path(ENV_TLS_CERT_FILE),
        tls_key_file: path(ENV_TLS_KEY_FILE),
        db_url: get(ENV_DB_URL),
        storage_backend: get(ENV_STORAGE_BACKEND),
        log_level: get(ENV_LOG_LEVEL),
        log_format: get(ENV_LOGGING_FORMAT),
        key_algorithm: get(ENV_KEY_ALGORITHM),
        keys_dir: path(ENV_KEYS_DIR),
        auth_type: get(ENV_AUTH_TYPE),
        auth_realm: get(ENV_AUTH_REALM),
        auth_service: get(ENV_AUTH_SERVICE),
        auth_issuer: get(ENV_AUTH_ISSUER),
        auth_rootcertbundle: path(ENV_AUTH_ROOTCERTBUNDLE),
        auth_autoredirect: boolean(ENV_AUTH_AUTOREDIRECT)?,
        insecure_no_auth: boolean(ENV_INSECURE_NO_AUTH)?,
        passphrase,
        bounds,
        ..Layer::default()
    })
}

fn flags_layer(o: ConfigOverrides) -> Layer {
    let origin = Origin::CommandLine;
    let wrap = |v: Option<String>| v.map(|v| Val::new(v, &origin));
    let wrap_path = |v: Option<PathBuf>| v.map(|v| Val::new(v, &origin));
    Layer {
        http_addr: wrap(o.http_addr),
        tls_cert_file: wrap_path(o.tls_cert_file),
        tls_key_file: wrap_path(o.tls_key_file),
        storage_backend: wrap(o.storage_backend),
        db_url: wrap(o.db_url),
        log_level: wrap(o.log_level),
        log_format: wrap(o.log_format),
        key_algorithm: wrap(o.key_algorithm),
        keys_dir: wrap_path(o.keys_dir),
        max_body_bytes: o.max_body_bytes.map(|v| Val::new(v, &origin)),
        auth_type: wrap(o.auth_type),
        auth_realm: wrap(o.auth_realm),
        auth_service: wrap(o.auth_service),
        auth_issuer: wrap(o.auth_issuer),
        auth_rootcertbundle: wrap_path(o.auth_rootcertbundle),
        auth_autoredirect: o.auth_autoredirect.map(|v| Val::new(v, &origin)),
        insecure_no_auth: o.insecure_no_auth.map(|v| Val::new(v, &origin)),
        ..Layer::default()
    }
}

// ------------------------------------------------------------------------------------------------
// Validation
// ------------------------------------------------------------------------------------------------

fn invalid<T>(key: &str, v: &Val<T>, value: String, allowed: &'static str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value,
        allowed,
        origin: v.origin.clone(),
    }
}

fn unsupported(key: &str, v: &Val<String>, reason: &'static str) -> ConfigError {
    ConfigError::Unsupported {
        key: key.to_string(),
        value: v.value.clone(),
        reason,
        origin: v.origin.clone(),
    }
}

fn parse_log_level(v: &Val<String>) -> Result<LogLevel, ConfigError> {
    LogLevel::parse(&v.value)
        .ok_or_else(|| invalid("logging.level", v, v.value.clone(), LogLevel::NAMES))
}

fn parse_log_format(v: &Val<String>) -> Result<LogFormat, ConfigError> {
    LogFormat::parse(&v.value)
        .ok_or_else(|| invalid("logging.format", v, v.value.clone(), LogFormat::NAMES))
}

fn parse_key_algorithm(v: &Val<String>) -> Result<KeyAlgorithm, ConfigError> {
    const KEY: &str = "trust_service.key_algorithm";
    match v.value.as_str() {
        "ecdsa" => Ok(KeyAlgorithm::Ecdsa),
        "ed25519" => Ok(KeyAlgorithm::Ed25519),
        "rsa" => Err(unsupported(
            KEY,
            v,
            "is not supported for server-held keys; use \"ecdsa\" or \"ed25519\"",
        )),
        _ => Err(invalid(KEY, v, v.value.clone(), "\"ecdsa\" or \"ed25519\"")),
    }
}

fn parse_trust_type(layer: &Layer, v: &Val<String>) -> Result<TrustServiceKind, ConfigError> {
    const KEY: &str = "trust_service.type";
    match v.value.as_str() {
        "local" => Ok(TrustServiceKind::Local),
        "remote" => parse_remote_trust(layer, v).map(TrustServiceKind::Remote),
        _ => Err(invalid(KEY, v, v.value.clone(), "\"local\" or \"remote\"")),
    }
}

/// The signer's address and TLS files: hostname, port and CA are needed to
/// reach it; a client certificate and key come as a pair.
fn parse_remote_trust(layer: &Layer, kind: &Val<String>) -> Result<RemoteTrust, ConfigError> {
    let incomplete = |missing: &'static str| ConfigError::RemoteIncomplete {
        key: "trust_service.type",
        missing,
        origin: kind.origin.clone(),
    };
    let hostname = layer
        .trust_hostname
        .as_ref()
        .ok_or_else(|| incomplete("trust_service.hostname"))?;
    let port = layer
        .trust_port
        .as_ref()
        .ok_or_else(|| incomplete("trust_service.port"))?;
    let port = u16::try_from(port.value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            invalid(
                "trust_service.port",
                port,
                port.value.to_string(),
                "a port from 1 to 65535",
            )
        })?;
    let ca = layer
        .trust_ca_file
        .as_ref()
        .ok_or_else(|| incomplete("trust_service.tls_ca_file"))?;
    let client_identity = match (&layer.trust_client_cert, &layer.trust_client_key) {
        (Some(cert), Some(key)) => Some((
            non_empty_path("trust_service.tls_client_cert", cert)?,
            non_empty_path("trust_service.tls_client_key", key)?,
        )),
        (None, None) => None,
        (Some(cert), None) => {
            return Err(ConfigError::RemoteIncomplete {
                key: "trust_service.tls_client_cert",
                missing: "trust_service.tls_client_key",
                origin: cert.origin.clone(),
            });
        }
        (None, Some(key)) => {
            return Err(ConfigError::RemoteIncomplete {
                key: "trust_service.tls_client_key",
                missing: "trust_service.tls_client_cert",
                origin: key.origin.clone(),
            });
        }
    };
    Ok(RemoteTrust {
        hostname: hostname.value.clone(),
        port,
        tls_ca_file: non_empty_path("trust_service.tls_ca_file", ca)?,
        client_identity,
    })
}

fn check_backend(v: &Val<String>) -> Result<(), ConfigError> {
    const KEY: &str = "storage.backend";
    match normalized_backend(&v.value) {
        "sqlite" | "postgres" => Ok(()),
        "mysql" | "rethinkdb" => Err(unsupported(
            KEY,
            v,
            "is not supported; use \"sqlite\" or \"postgres\"",
        )),
        "memory" => Err(unsupported(
            KEY,
            v,
            "is not supported: notarium always persists its data; use \"sqlite\" with storage.db_url naming a file",
        )),
        _ => Err(invalid(
            KEY,
            v,
            v.value.clone(),
            "\"sqlite\" (or notary's \"sqlite3\") or \"postgres\"",
        )),
    }
}

/// `storage.db_url` for SQLite: a file path, or a `sqlite:` URL as sqlx writes them
/// (`sqlite://relative.db`, `sqlite:///absolute.db`, `sqlite:relative.db`).
fn sqlite_path(v: &Val<String>) -> Result<PathBuf, ConfigError> {
    const ALLOWED: &str = "a SQLite database file path or sqlite: URL (sqlite://relative/path.db, \
                           sqlite:///absolute/path.db); in-memory databases and query parameters are not allowed";
    let url = v.value.as_str();
    let bad = || invalid("storage.db_url", v, url.to_string(), ALLOWED);
    let lower = url.to_ascii_lowercase();
    let path = if lower.starts_with("sqlite://") {
        &url["sqlite://".len()..]
    } else if lower.starts_with("sqlite:") {
        &url["sqlite:".len()..]
    } else if url.contains("://") || url.contains("@tcp(") {
        // Another backend's URL or DSN: using it as a file name would silently create a new DB.
        return Err(bad());
    } else {
        url
    };
    let is_url = path.len() != url.len();
    if path.is_empty() || path == ":memory:" || (is_url && path.contains('?')) {
        return Err(bad());
    }
    Ok(resolve_against(&v.origin, Path::new(path)))
}

fn max_age(key: &str, v: Option<&Val<u64>>, default: u32) -> Result<u32, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    match u32::try_from(v.value) {
        Ok(n) if u64::from(n) <= MAX_CACHE_MAX_AGE => Ok(n),
        _ => Err(invalid(
            key,
            v,
            v.value.to_string(),
            "an integer number of seconds from 0 to 31536000 (one year)",
        )),
    }
}

/// GUN prefixes and GUN lists use the one GUN grammar (`policy::names`): notary's
/// `getRequiredGunPrefixes` rule (path-clean, ending in `/`) plus docker's reference grammar, ASCII
/// only, so a configured entry names exactly the GUNs requests can spell.
fn check_name<T>(
    key: &str,
    v: &Val<T>,
    entry: &str,
    check: fn(&str) -> Result<(), NameError>,
) -> Result<(), ConfigError> {
    check(entry).map_err(|reason| ConfigError::InvalidName {
        key: key.to_string(),
        value: entry.chars().take(300).collect(),
        origin: v.origin.clone(),
        reason: Box::new(reason),
    })
}

/// `registries[].url`: `http(s)://host[:port]` with an optional trailing `/`, which is removed.
fn registry_url(key: &str, v: &Val<String>) -> Result<String, ConfigError> {
    const ALLOWED: &str = "an http:// or https:// URL of the registry's root: a host and optional \
                           port, no path, query, fragment or credentials (set username and \
                           password_file instead), e.g. \"https://registry.example.com\"";
    let bad = || invalid(key, v, redact_userinfo(&v.value), ALLOWED);
    let (scheme, rest) = v.value.split_once("://").ok_or_else(bad)?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(bad());
    }
    let authority = match rest.split_once('/') {
        None => rest,
        Some((authority, "")) => authority,
        Some(_) => return Err(bad()),
    };
    if !authority_ok(authority) {
        return Err(bad());
    }
    Ok(format!("{scheme}://{authority}"))
}

/// `host`, `host:port`, `[ipv6]` or `[ipv6]:port`, with a port from 1 to 65535.
fn authority_ok(a: &str) -> bool {
    let (host_ok, port) = if let Some(rest) = a.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return false,
        };
        (ip.parse::<Ipv6Addr>().is_ok(), port)
    } else {
        match a.split_once(':') {
            Some((host, port)) => (is_host_name(host), Some(port)),
            None => (is_host_name(a), None),
        }
    };
    host_ok
        && port.is_none_or(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u16>().is_ok_and(|n| n != 0)
        })
}

/// A URL for an error message, without any `user:password@` it carries.
/// `storage` for `backend: "postgres"`: the URL is required and checked now (its password never
/// appears in errors), the password comes from the environment or a file.
fn postgres_config(
    layer: &Layer,
    get: &dyn Fn(&str) -> u64,
) -> Result<PostgresConfig, ConfigError> {
    const KEY: &str = "storage.db_url";
    const ALLOWED: &str = "a PostgreSQL URL: postgres://user@host:5432/database?sslmode=verify-full\
                           &sslrootcert=ca.pem&sslcert=client.pem&sslkey=client-key.pem (the password \
                           from NOTARIUM_DB_PASSWORD or storage.password_file)";
    let Some(v) = &layer.db_url else {
        let origin = layer
            .storage_backend
            .as_ref()
            .map_or(Origin::Default, |b| b.origin.clone());
        return Err(ConfigError::Missing {
            key: KEY.to_string(),
            hint: "storage.backend is \"postgres\": set storage.db_url (or NOTARIUM_DB_URL) to \
                   postgres://user@host:5432/database",
            origin,
        });
    };
    let lower = v.value.to_ascii_lowercase();
    if !(lower.starts_with("postgres://") || lower.starts_with("postgresql://")) {
        return Err(invalid(KEY, v, redact_password(&v.value), ALLOWED));
    }
    if let Err(e) = v.value.parse::<sqlx::postgres::PgConnectOptions>() {
        // sqlx's message may quote the URL: not shown, it could hold the password.
        drop(e);
        return Err(invalid(KEY, v, redact_password(&v.value), ALLOWED));
    }
    let password = match (&layer.db_password, &layer.db_password_file) {
        (Some(secret), _) => Some(secret.clone()),
        (None, Some(file)) => Some(read_password_file("storage.password_file", file)?),
        (None, None) => None,
    };
    let seconds = |key: &str| Duration::from_secs(get(key));
    Ok(PostgresConfig {
        url: DbUrl(Zeroizing::new(resolve_tls_files(&v.value, &v.origin))),
        password,
        max_connections: u32::try_from(get("storage.max_connections")).unwrap_or(u32::MAX),
        acquire_timeout: seconds("storage.acquire_timeout_seconds"),
        statement_timeout: seconds("storage.statement_timeout_seconds"),
        lock_timeout: seconds("storage.lock_timeout_seconds"),
        migrate_on_start: layer.migrate_on_start.as_ref().is_none_or(|v| v.value),
    })
}

/// The TLS files of a `db_url` written in a config file resolve against the file's folder, as
/// notary's paths do; from the environment or flags they stay relative to the working directory.
/// Only the query changes, so the user info (and any password) is carried over untouched.
fn resolve_tls_files(url: &str, origin: &Origin) -> String {
    let Origin::File(file) = origin else {
        return url.to_string();
    };
    let base = file.parent().unwrap_or(Path::new(""));
    let Some((head, rest)) = url.split_once('?') else {
        return url.to_string();
    };
    if base.as_os_str().is_empty() {
        return url.to_string();
    }
    let (query, fragment) = match rest.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (rest, None),
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key @ ("sslrootcert" | "sslcert" | "sslkey"), value))
                if !value.is_empty()
                    && !value.starts_with('/')
                    && !value.to_ascii_lowercase().starts_with("%2f") =>
            {
                format!("{key}={}/{value}", percent_encode_path(base))
            }
            _ => param.to_string(),
        })
        .collect();
    let mut resolved = format!("{head}?{}", params.join("&"));
    if let Some(fragment) = fragment {
        resolved.push('#');
        resolved.push_str(fragment);
    }
    resolved
}

/// A path as a URL query value: unreserved characters and `/` as they are, the rest `%XX`.
fn percent_encode_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut encoded = String::new();
    for &byte in path.as_os_str().as_bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://<redacted>@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// A password from a file: read now, as UTF-8, with trailing line breaks removed.
fn read_password_file(key: &str, v: &Val<PathBuf>) -> Result<Secret, ConfigError> {
    const ALLOWED: &str =
        "a UTF-8 text file holding the password (trailing line breaks are removed)";
    let path = v.resolved();
    let bytes = std::fs::read(&path).map_err(|source| ConfigError::ReadReferencedFile {
        key: key.to_string(),
        path: path.clone(),
        origin: v.origin.clone(),
        source,
    })?;
    let shown = path.display().to_string();
    let mut text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            drop(Zeroizing::new(e.into_bytes()));
            return Err(invalid(key, v, shown, ALLOWED));
        }
    };
    let len = text.trim_end_matches(['\n', '\r']).len();
    text.truncate(len);
    let secret = Secret::new(text);
    if secret.expose().is_empty() {
        return Err(invalid(
            key,
            v,
            shown,
            "a file holding the password; this one is empty",
        ));
    }
    Ok(secret)
}

/// `delegations.trusted_ca_file`: must be readable and hold at least one PEM certificate.
fn trusted_ca_file(v: &Val<PathBuf>) -> Result<PathBuf, ConfigError> {
    const KEY: &str = "delegations.trusted_ca_file";
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let path = v.resolved();
    let pem = std::fs::read(&path).map_err(|source| ConfigError::ReadReferencedFile {
        key: KEY.to_string(),
        path: path.clone(),
        origin: v.origin.clone(),
        source,
    })?;
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let has_block =
        find(&pem, BEGIN).is_some_and(|start| find(&pem[start + BEGIN.len()..], END).is_some());
    if !has_block {
        return Err(invalid(
            KEY,
            v,
            path.display().to_string(),
            "a PEM file with at least one -----BEGIN CERTIFICATE----- ... -----END CERTIFICATE----- block",
        ));
    }
    Ok(path)
}

/// `auth` with a type: only notary's `token` exists; its four string options are required.
fn auth(kind: &Val<String>, layer: &Layer) -> Result<AuthConfig, ConfigError> {
    if kind.value != "token" {
        // Running without the authentication the operator asked for would be unsafe.
        return Err(unsupported(
            "auth.type",
            kind,
            "is not supported; the only type is \"token\" (Docker registry token auth), or remove the auth section",
        ));
    }
    let missing = |key: &str| ConfigError::Missing {
        key: key.to_string(),
        hint: "token auth needs auth.options.realm, service, issuer and rootcertbundle",
        origin: kind.origin.clone(),
    };
    let string = |v: &Option<Val<String>>, key: &str| {
        v.as_ref()
            .map(|v| v.value.clone())
            .ok_or_else(|| missing(key))
    };
    let realm = string(&layer.auth_realm, "auth.options.realm")?;
    let service = string(&layer.auth_service, "auth.options.service")?;
    let issuer = string(&layer.auth_issuer, "auth.options.issuer")?;
    let bundle = layer
        .auth_rootcertbundle
        .as_ref()
        .ok_or_else(|| missing("auth.options.rootcertbundle"))?;
    let rootcertbundle = non_empty_path("auth.options.rootcertbundle", bundle)?;
    Ok(AuthConfig {
        realm,
        service,
        issuer,
        rootcertbundle,
        autoredirect: layer.auth_autoredirect.as_ref().is_some_and(|v| v.value),
    })
}

fn registries(list: &Val<Vec<RawRegistry>>) -> Result<Vec<RegistryConfig>, ConfigError> {
    let mut out: Vec<RegistryConfig> = Vec::with_capacity(list.value.len());
    for (i, raw) in list.value.iter().enumerate() {
        let key = |field: &str| format!("registries[{i}].{field}");

        let gun_prefix = raw
            .gun_prefix
            .as_ref()
            .ok_or_else(|| ConfigError::Missing {
                key: key("gun_prefix"),
                hint: "the GUN prefix whose images this registry holds, ending in \"/\" \
                   (e.g. \"registry.example.com/\")",
                origin: list.origin.clone(),
            })?;
        check_name(
            &key("gun_prefix"),
            gun_prefix,
            &gun_prefix.value,
            names::check_gun_prefix,
        )?;
        if let Some(j) = out.iter().position(|r| r.gun_prefix == gun_prefix.value) {
            return Err(ConfigError::Duplicate {
                key: key("gun_prefix"),
                value: gun_prefix.value.clone(),
                first: format!("registries[{j}].gun_prefix"),
                origin: gun_prefix.origin.clone(),
            });
        }

        let url = raw.url.as_ref().ok_or_else(|| ConfigError::Missing {
            key: key("url"),
            hint: "the registry's base URL, e.g. \"https://registry.example.com\"",
            origin: list.origin.clone(),
        })?;
        let url = registry_url(&key("url"), url)?;

        let username = match &raw.username {
            Some(v) if v.value.contains(':') || v.value.chars().any(char::is_control) => {
                return Err(invalid(
                    &key("username"),
                    v,
                    v.value.clone(),
                    "a user name without \":\" or control characters",
                ));
            }
            Some(v) => Some(v.value.clone()),
            None => None,
        };

        // Checked before reading the file: a password without a user name is never used.
        let given = match (&raw.password, &raw.password_file) {
            (Some(_), Some(file)) => {
                return Err(ConfigError::Conflict {
                    key: key("password"),
                    other: key("password_file"),
                    origin: file.origin.clone(),
                });
            }
            (Some(_), None) => Some("password"),
            (None, Some(_)) => Some("password_file"),
            (None, None) => None,
        };
        if let (Some(given), None) = (given, &username) {
            return Err(ConfigError::Requires {
                key: key(given),
                missing: key("username"),
                hint: "registries authenticate a user name and password together",
                origin: list.origin.clone(),
            });
        }
        let password = match (&raw.password, &raw.password_file) {
            (Some(inline), _) => Some(inline.clone()),
            (None, Some(file)) => Some(read_password_file(&key("password_file"), file)?),
            (None, None) => None,
        };

        let timeout = match &raw.timeout_seconds {
            None => DEFAULT_REGISTRY_TIMEOUT_SECONDS,
            Some(v)
                if (MIN_REGISTRY_TIMEOUT_SECONDS..=MAX_REGISTRY_TIMEOUT_SECONDS)
                    .contains(&v.value) =>
            {
                v.value
            }
            Some(v) => {
                return Err(invalid(
                    &key("timeout_seconds"),
                    v,
                    v.value.to_string(),
                    "an integer number of seconds from 1 to 120",
                ));
            }
        };

        out.push(RegistryConfig {
            gun_prefix: gun_prefix.value.clone(),
            url,
            username,
            password,
            require_image_manifests: raw
                .require_image_manifests
                .as_ref()
                .is_some_and(|v| v.value),
            timeout: Duration::from_secs(timeout),
        });
    }
    Ok(out)
}

fn non_empty_path(key: &str, v: &Val<PathBuf>) -> Result<PathBuf, ConfigError> {
    if v.value.as_os_str().is_empty() {
        return Err(invalid(key, v, String::new(), "a non-empty path"));
    }
    Ok(v.resolved())
}

fn validate(layer: Layer) -> Result<Config, ConfigError> {
    let mut config = Config::default();

    if let Some(v) = &layer.http_addr {
        config.server.http_addr = ListenAddr::parse(&v.value)
            .map_err(|allowed| invalid("server.http_addr", v, v.value.clone(), allowed))?;
    }

    config.server.tls = match (&layer.tls_cert_file, &layer.tls_key_file) {
        (Some(cert), Some(key)) => TlsSource::Files {
            cert_file: cert.resolved(),
            key_file: key.resolved(),
        },
        (None, None) => TlsSource::DevCertificates,
        (Some(cert), None) => {
            return Err(ConfigError::Incomplete {
                key: "server.tls_cert_file",
                missing: "server.tls_key_file",
                origin: cert.origin.clone(),
            });
        }
        (None, Some(key)) => {
            return Err(ConfigError::Incomplete {
                key: "server.tls_key_file",
                missing: "server.tls_cert_file",
                origin: key.origin.clone(),
            });
        }
    };
    if let Some(v) = &layer.client_ca_file {
        // Ignoring it would drop the client-certificate check the operator asked for.
        return Err(unsupported(
            "server.client_ca_file",
            v,
            "(client certificate authentication) is not supported yet; remove it to run without client certificates",
        ));
    }
    if let Some(v) = &layer.max_body_bytes {
        if !(MIN_MAX_BODY_BYTES..=MAX_MAX_BODY_BYTES).contains(&v.value) {
            return Err(invalid(
                "server.max_body_bytes",
                v,
                v.value.to_string(),
                "an integer from 1024 (1 KiB) to 1073741824 (1 GiB)",
            ));
        }
        config.server.max_body_bytes = v.value;
    }
    if let Some(v) = &layer.keys_dir {
        config.server.keys_dir = non_empty_path("server.keys_dir", v)?;
    }

    if let Some(v) = &layer.trust_type {
        config.trust_service.kind = parse_trust_type(&layer, v)?;
    }
    if let Some(v) = &layer.key_algorithm {
        config.trust_service.key_algorithm = parse_key_algorithm(v)?;
    }

    if let Some(v) = &layer.storage_backend {
        check_backend(v)?;
    }
    // Without a backend named anywhere, a postgres:// URL says which one is meant (a SQLite file
    // of that name is never what the user wants).
    let postgres = match &layer.storage_backend {
        Some(v) => normalized_backend(&v.value) == "postgres",
        None => layer.db_url.as_ref().is_some_and(|v| {
            let lower = v.value.to_ascii_lowercase();
            lower.starts_with("postgres://") || lower.starts_with("postgresql://")
        }),
    };
    if !postgres && let Some(v) = &layer.db_url {
        config.storage = StorageConfig::Sqlite {
            path: sqlite_path(v)?,
        };
    }

    if let Some(v) = &layer.log_level {
        config.logging.level = parse_log_level(v)?;
    }
    if let Some(v) = &layer.log_format {
        config.logging.format = parse_log_format(v)?;
    }

    config.caching = CachingConfig {
        current_metadata_max_age: max_age(
            "caching.max_age.current_metadata",
            layer.current_max_age.as_ref(),
            DEFAULT_CURRENT_MAX_AGE,
        )?,
        consistent_metadata_max_age: max_age(
            "caching.max_age.consistent_metadata",
            layer.consistent_max_age.as_ref(),
            DEFAULT_CONSISTENT_MAX_AGE,
        )?,
    };

    if let Some(v) = &layer.gun_prefixes {
        for prefix in &v.value {
            check_name(
                "repositories.gun_prefixes",
                v,
                prefix,
                names::check_gun_prefix,
            )?;
        }
        config.repositories.gun_prefixes = v.value.clone();
    }
    if let Some(v) = &layer.immutable {
        for entry in &v.value {
            check_name(
                "repositories.immutable",
                v,
                entry,
                names::check_gun_or_prefix,
            )?;
        }
        config.repositories.immutable = v.value.clone();
    }

    if let Some(v) = &layer.registries {
        config.registries = registries(v)?;
    }
    if let Some(v) = &layer.trusted_ca_file {
        config.delegations.trusted_ca_file = Some(trusted_ca_file(v)?);
    }

    if let Some(v) = &layer.auth_type {
        config.auth = Some(auth(v, &layer)?);
    }
    if let Some(v) = &layer.insecure_no_auth {
        config.server.insecure_no_auth = v.value;
    }

    for b in BOUNDS {
        if let Some(v) = layer.bounds.get(b.key) {
            if !(b.min..=b.max).contains(&v.value) {
                return Err(invalid(b.key, v, v.value.to_string(), b.allowed));
            }
        }
    }
    let get = |key: &str| {
        layer
            .bounds
            .get(key)
            .map_or_else(|| default_of(key), |v| v.value)
    };
    config.limits = limits_config(&get);
    config.server.connections = connection_config(&get);
    config.repositories.expiry_warning = expiry_warning(&get);
    if postgres {
        config.storage = StorageConfig::Postgres(postgres_config(&layer, &get)?);
    }

    config.keys.passphrase = layer.passphrase;
    Ok(config)
}

impl Config {
    /// Builds the configuration: defaults, then `file`, then the environment (read through `env`
    /// so tests need not touch the process environment), then `overrides` from flags.
    pub fn load(
        file: Option<&Path>,
        env: &impl Fn(&str) -> Option<String>,
        overrides: ConfigOverrides,
    ) -> Result<(Config, Vec<Warning>), ConfigError> {
        let mut warnings = Vec::new();
        let mut merged = Layer::default();
        if let Some(path) = file {
            let layer = read_file_layer(path, &mut warnings)?;
            merged.merge(layer, &mut warnings);
        }
        merged.merge(env_layer(env)?, &mut warnings);
        merged.merge(flags_layer(overrides), &mut warnings);
        Ok((validate(merged)?, warnings))
    }
}

/// The example printed by `notarium default-config`: notary-server's format, with `"//"` keys as
/// comments (notary-server ignores them; notarium skips them without a warning).
pub fn example_json() -> &'static str {
    EXAMPLE_JSON
}

const EXAMPLE_JSON: &str = r#"{
  "//": [
    "notarium configuration. notary-server's JSON config works as is. Relative paths are relative to this file. Later sources win: this file < NOTARIUM_* environment variables < command-line flags.",
    "registries (set in this file only): the registries holding the images of some GUNs, asked what each signed digest is. Each entry is an object with gun_prefix (required; ends in /, e.g. registry.example.com/; one entry per prefix), url (required; http:// or https:// and a host, no path, e.g. https://registry.example.com), username, password_file (a file holding the password, read at startup, trailing newline removed; an inline password also works but is discouraged; a password needs a username), require_image_manifests (true: refuse to sign a digest the registry does not know; default false) and timeout_seconds (1 to 120, default 10)."
  ],
  "server": {
    "//": "http_addr: host:port, or :port for all interfaces (env NOTARIUM_HTTP_ADDR). TLS is always on: set tls_cert_file and tls_key_file (NOTARIUM_TLS_CERT_FILE, NOTARIUM_TLS_KEY_FILE), or neither to generate a development CA and certificate into keys_dir (NOTARIUM_KEYS_DIR), which also holds the generated key passphrase unless NOTARIUM_KEY_PASSPHRASE is set. max_body_bytes caps request bodies. header_read_timeout_seconds (1 to 600): a request header, and the next request on a kept-alive connection, must arrive within this. idle_timeout_seconds (1 to 86400): a connection with no traffic for this long is closed. max_connections (1 to 1000000): connections beyond it are closed at once. http2_max_concurrent_streams (1 to 10000): requests at once on one HTTP/2 connection.",
    "http_addr": "127.0.0.1:4443",
    "keys_dir": "keys",
    "max_body_bytes": 10485760,
    "header_read_timeout_seconds": 30,
    "idle_timeout_seconds": 300,
    "max_connections": 1024,
    "http2_max_concurrent_streams": 100
  },
  "trust_service": {
    "//": "local: notarium holds the timestamp and snapshot keys, sealed in its database; remote: a notary-signer holds them (add hostname, port, tls_ca_file, tls_client_cert, tls_client_key as notary-server). key_algorithm: ecdsa or ed25519 (NOTARIUM_KEY_ALGORITHM).",
    "type": "local",
    "key_algorithm": "ecdsa"
  },
  "storage": {
    "//": "backend: sqlite (notary's sqlite3 is accepted) or postgres. db_url: a file path or sqlite: URL; for postgres, postgres://user@host:5432/db?sslmode=verify-full&sslrootcert=…&sslcert=…&sslkey=… (NOTARIUM_STORAGE_BACKEND, NOTARIUM_DB_URL). postgres only: password_file (or NOTARIUM_DB_PASSWORD), max_connections (default 10), acquire_timeout_seconds (5), statement_timeout_seconds (30), lock_timeout_seconds (10), migrate_on_start (true; else run notarium migrate).",
    "backend": "sqlite",
    "db_url": "data/notarium.db"
  },
  "logging": {
    "//": "level: trace, debug, info, warn, error (NOTARIUM_LOG_LEVEL). format: text or json, one JSON object per line (NOTARIUM_LOGGING_FORMAT, serve --logf).",
    "level": "info",
    "format": "text"
  },
  "caching": {
    "//": "Cache-Control max-age in seconds, 0 to 31536000; 0 disables caching.",
    "max_age": {
      "current_metadata": 300,
      "consistent_metadata": 2592000
    }
  },
  "repositories": {
    "//": "gun_prefixes: if not empty, only GUNs starting with one of these prefixes are accepted; each ends in /. immutable: GUNs (e.g. docker.io/library/alpine) or GUN prefixes ending in / (e.g. registry.example.com/releases/) whose signed tags can never be changed or removed and whose trust data cannot be deleted. expiry_warning_days (0 to 36500; 0: never): a publish whose root, targets or delegations expire within this many days is accepted with a warning in the log (NOTARIUM_REPOSITORIES_EXPIRY_WARNING_DAYS).",
    "gun_prefixes": [],
    "immutable": [],
    "expiry_warning_days": 30
  },
  "delegations": {
    "//": "trusted_ca_file: a PEM file of CA certificates, checked at startup; when set, delegation certificates must be issued by one of these CAs. Empty: no such check.",
    "trusted_ca_file": ""
  },
  "registries": [],
  "limits": {
    "//": "Caps on one publish, checked before any signature is verified; a refusal names the setting. keys_per_role (1 to 1000): key IDs a role lists; a key map may hold this many per role it defines. signatures_per_file (1 to 1000). delegations_per_file (1 to 100000). targets_per_file (1 to 10000000). parts_per_upload (1 to 100000): files in one upload. registry_lookups_per_publish (1 to 100000): new or changed image digests checked with the registry per publish. validation_concurrency (0 to 1024; 0 = one per CPU core): signature verifications at once. busy_wait_seconds (1 to 600): the longest a publish waits for its repository's lock or a verification slot before a 503 asks it to retry. Each also reads NOTARIUM_LIMITS_<KEY> (e.g. NOTARIUM_LIMITS_TARGETS_PER_FILE); the server connection settings NOTARIUM_SERVER_<KEY>.",
    "keys_per_role": 32,
    "signatures_per_file": 64,
    "delegations_per_file": 1000,
    "targets_per_file": 100000,
    "parts_per_upload": 1000,
    "registry_lookups_per_publish": 100,
    "validation_concurrency": 0,
    "busy_wait_seconds": 30
  },
  "auth": {
    "//": "Docker registry token auth, configured as in notary-server: type \"token\" with options realm (where clients get tokens), service (the token audience), issuer, rootcertbundle (PEM certificates the token signing keys chain to) and autoredirect (true: realm https://<request host>/auth/token). Env NOTARIUM_AUTH_TYPE, NOTARIUM_AUTH_REALM, NOTARIUM_AUTH_SERVICE, NOTARIUM_AUTH_ISSUER, NOTARIUM_AUTH_ROOTCERTBUNDLE, NOTARIUM_AUTH_AUTOREDIRECT. Without auth notarium listens on loopback only, unless server.insecure_no_auth is true (NOTARIUM_INSECURE_NO_AUTH).",
    "type": ""
  }
}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const NOTARY: &str = "/usr/share/gocode/src/github.com/theupdateframework/notary";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn log_format_from_file_env_and_flag() {
        assert_eq!(load_str("{}").unwrap().0.logging.format, LogFormat::Text);
        let file = r#"{"logging":{"level":"info","format":"json"}}"#;
        assert_eq!(load_str(file).unwrap().0.logging.format, LogFormat::Json);
        // notary-server's -logf spelling of the text format.
        let env = env_of(&[(ENV_LOGGING_FORMAT, "logfmt")]);
        let (c, _) = Config::load(None, &env, ConfigOverrides::default()).unwrap();
        assert_eq!(c.logging.format, LogFormat::Text);
        let flags = ConfigOverrides {
            log_format: Some("JSON".into()),
            ..ConfigOverrides::default()
        };
        let (c, _) = Config::load(None, &env, flags).unwrap();
        assert_eq!(c.logging.format, LogFormat::Json);
        let e = err_str(r#"{"logging":{"format":"xml"}}"#);
        assert!(
            e.contains("logging.format") && e.contains("json, text"),
            "{e}"
        );
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn load_str(text: &str) -> Result<(Config, Vec<Warning>), ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "server.json", text);
        Config::load(Some(&p), &no_env, ConfigOverrides::default())
    }

    fn err_str(text: &str) -> String {
        load_str(text).unwrap_err().to_string()
    }

    #[test]
    fn gun_lists_use_the_one_gun_grammar() {
        let (c, _) = load_str(
            r#"{"repositories": {"gun_prefixes": ["docker.io/library/", "127.0.0.1:5000/"],
                "immutable": ["docker.io/library/alpine", "registry.example.com/releases/"]}}"#,
        )
        .unwrap();
        assert_eq!(c.repositories.gun_prefixes.len(), 2);
        for (json, want) in [
            (
                r#"{"repositories": {"gun_prefixes": ["docker.io/Library/"]}}"#,
                "lower case",
            ),
            (
                r#"{"repositories": {"gun_prefixes": ["docker.io/%2e%2e/"]}}"#,
                "'%'",
            ),
            (
                r#"{"repositories": {"gun_prefixes": ["docker.io"]}}"#,
                "followed by '/'",
            ),
            (
                r#"{"repositories": {"gun_prefixes": ["d\u043Ecker.io/"]}}"#,
                "U+043E",
            ),
            (
                r#"{"repositories": {"immutable": ["docker.io/library/alpine\u202E"]}}"#,
                "U+202E",
            ),
            (
                r#"{"repositories": {"immutable": ["docker.io//alpine"]}}"#,
                "empty path segment",
            ),
            (
                r#"{"repositories": {"immutable": ["docker.io/library/Alpine"]}}"#,
                "lower case",
            ),
            (
                r#"{"registries": [{"gun_prefix": "Registry_x/", "url": "https://r.example"}]}"#,
                "registries[0].gun_prefix",
            ),
        ] {
            let e = err_str(json);
            assert!(e.contains(want), "for {json}: {e}");
            assert!(e.contains("is invalid"), "{e}");
        }
    }

    #[test]
    fn defaults_without_file() {
        let (c, w) = Config::load(None, &no_env, ConfigOverrides::default()).unwrap();
        assert!(w.is_empty());
        assert_eq!(c.server.http_addr.to_string(), "127.0.0.1:4443");
        assert_eq!(c.server.tls, TlsSource::DevCertificates);
        assert_eq!(c.server.keys_dir, PathBuf::from("keys"));
        assert_eq!(c.server.max_body_bytes, 10 * 1024 * 1024);
        assert_eq!(c.trust_service.key_algorithm, KeyAlgorithm::Ecdsa);
        assert_eq!(
            c.storage,
            StorageConfig::Sqlite {
                path: "data/notarium.db".into()
            }
        );
        assert_eq!(c.storage.data_dir(), Some(PathBuf::from("data")));
        assert_eq!(c.logging.level, LogLevel::Info);
        assert_eq!(c.caching.current_metadata_max_age, 300);
        assert_eq!(c.caching.consistent_metadata_max_age, 2_592_000);
        assert!(c.repositories.gun_prefixes.is_empty());
        assert!(c.keys.passphrase.is_none());
        assert_eq!(c.limits.targets_per_file, 100_000);
        assert_eq!(c.limits.keys_per_role, 32);
        assert_eq!(c.limits.signatures_per_file, 64);
        assert_eq!(c.limits.delegations_per_file, 1_000);
        assert_eq!(c.limits.parts_per_upload, 1_000);
        assert_eq!(c.limits.registry_lookups_per_publish, 100);
        assert_eq!(c.limits.validation_concurrency, 0);
        assert_eq!(c.limits.busy_wait, Duration::from_secs(30));
        assert_eq!(
            c.server.connections.header_read_timeout,
            Duration::from_secs(30)
        );
        assert_eq!(c.server.connections.idle_timeout, Duration::from_secs(300));
        assert_eq!(c.server.connections.max_connections, 1024);
        assert_eq!(c.server.connections.http2_max_concurrent_streams, 100);
    }

    #[test]
    fn expiry_warning_days_default_file_and_environment() {
        let day = 86_400;
        let (c, w) = load_str("{}").unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.repositories.expiry_warning, Duration::from_secs(30 * day));
        assert_eq!(
            Config::default().repositories.expiry_warning,
            Duration::from_secs(30 * day)
        );
        let (c, w) = load_str(r#"{"repositories": {"expiry_warning_days": 0}}"#).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.repositories.expiry_warning, Duration::ZERO);
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "c.json",
            r#"{"repositories": {"expiry_warning_days": 90}}"#,
        );
        let (c, _) = Config::load(Some(&file), &env_of(&[]), ConfigOverrides::default()).unwrap();
        assert_eq!(c.repositories.expiry_warning, Duration::from_secs(90 * day));
        let env = env_of(&[("NOTARIUM_REPOSITORIES_EXPIRY_WARNING_DAYS", "7")]);
        let (c, _) = Config::load(Some(&file), &env, ConfigOverrides::default()).unwrap();
        assert_eq!(c.repositories.expiry_warning, Duration::from_secs(7 * day));
        let err = err_str(r#"{"repositories": {"expiry_warning_days": "soon"}}"#);
        assert!(err.contains("repositories.expiry_warning_days"), "{err}");
    }

    #[test]
    fn limits_and_connection_bounds_are_read_and_checked() {
        let (c, w) = load_str(
            r#"{"limits": {"targets_per_file": 10, "Keys_Per_Role": "3", "busy_wait_seconds": 1},
                "server": {"max_connections": 7, "header_read_timeout_seconds": 2,
                           "idle_timeout_seconds": 9, "http2_max_concurrent_streams": 4}}"#,
        )
        .unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.limits.targets_per_file, 10);
        assert_eq!(c.limits.keys_per_role, 3);
        assert_eq!(c.limits.busy_wait, Duration::from_secs(1));
        assert_eq!(c.limits.parts_per_upload, 1_000);
        assert_eq!(c.server.connections.max_connections, 7);
        assert_eq!(
            c.server.connections.header_read_timeout,
            Duration::from_secs(2)
        );
        assert_eq!(c.server.connections.idle_timeout, Duration::from_secs(9));
        assert_eq!(c.server.connections.http2_max_concurrent_streams, 4);
        // Every bound: its edges accepted, one past them refused with the key named.
        for b in BOUNDS {
            let (section, key) = b.key.split_once('.').unwrap();
            let text = |n: u64| format!(r#"{{"{section}": {{"{key}": {n}}}}}"#);
            assert!(load_str(&text(b.min)).is_ok(), "{}", b.key);
            assert!(load_str(&text(b.max)).is_ok(), "{}", b.key);
            let err = err_str(&text(b.max + 1));
            assert!(err.contains(b.key) && err.contains(b.allowed), "{err}");
            if b.min > 0 {
                let err = err_str(&text(b.min - 1));
                assert!(err.contains(b.key), "{err}");
            }
        }
        // The environment overrides the file, and is checked the same way.
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "c.json",
            r#"{"limits": {"targets_per_file": 10}}"#,
        );
        let env = env_of(&[
            ("NOTARIUM_LIMITS_TARGETS_PER_FILE", "20"),
            ("NOTARIUM_SERVER_MAX_CONNECTIONS", "5"),
        ]);
        let (c, _) = Config::load(Some(&file), &env, ConfigOverrides::default()).unwrap();
        assert_eq!(c.limits.targets_per_file, 20);
        assert_eq!(c.server.connections.max_connections, 5);
        for value in ["0", "lots"] {
            let env = env_of(&[("NOTARIUM_LIMITS_TARGETS_PER_FILE", value)]);
            let err = Config::load(Some(&file), &env, ConfigOverrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("limits.targets_per_file")
                    && err.contains("NOTARIUM_LIMITS_TARGETS_PER_FILE"),
                "{err}"
            );
        }
        for b in BOUNDS {
            assert_eq!(
                b.env,
                format!("NOTARIUM_{}", b.key.replace('.', "_").to_uppercase())
            );
        }
        let (_, w) = load_str(r#"{"limits": {"targets": 5}}"#).unwrap();
        assert!(w.iter().any(|w| w.key() == "limits.targets"), "{w:?}");
        assert!(
            err_str(r#"{"limits": {"targets_per_file": "many"}}"#)
                .contains("limits.targets_per_file")
        );
    }

    #[test]
    fn example_loads_without_warnings() {
        let (c, w) = load_str(example_json()).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.server.http_addr.to_string(), "127.0.0.1:4443");
        assert_eq!(c.trust_service.key_algorithm, KeyAlgorithm::Ecdsa);
        assert_eq!(c.logging.level, LogLevel::Info);
        // The example's relative paths resolve against the file's folder.
        assert!(c.server.keys_dir.is_absolute());
        assert!(c.server.keys_dir.ends_with("keys"));
        // The policy sections are documented but off.
        assert!(c.registries.is_empty());
        assert!(c.repositories.immutable.is_empty());
        assert_eq!(c.delegations.trusted_ca_file, None);
        for key in [
            "\"registries\"",
            "gun_prefix",
            "url",
            "username",
            "password_file",
            "require_image_manifests",
            "timeout_seconds",
            "\"immutable\"",
            "\"delegations\"",
            "\"trusted_ca_file\"",
        ] {
            assert!(example_json().contains(key), "{key}");
        }
    }

    const PEM: &str = "Example CA\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn registries_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        write(&etc, "registry-password.txt", "s3cr3t-pw\r\n");
        let p = write(
            &etc,
            "c.json",
            r#"{"registries": [
                 {"gun_prefix": "registry.example.com/", "url": "https://registry.example.com/",
                  "username": "notarium", "password_file": "registry-password.txt",
                  "require_image_manifests": true, "timeout_seconds": 120},
                 {"GUN_Prefix": "127.0.0.1:5000/", "url": "HTTP://127.0.0.1:5000", "username": "anon"},
                 {"gun_prefix": "v6.example/", "url": "http://[::1]:5000"}
               ]}"#,
        );
        // Env and flags have no registries; the file's list comes through the merge.
        let env = env_of(&[(ENV_LOG_LEVEL, "debug")]);
        let flags = ConfigOverrides {
            http_addr: Some(":1".into()),
            ..ConfigOverrides::default()
        };
        let (c, w) = Config::load(Some(&p), &env, flags).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.registries.len(), 3);

        let r = &c.registries[0];
        assert_eq!(r.gun_prefix, "registry.example.com/");
        assert_eq!(r.url, "https://registry.example.com");
        assert_eq!(r.username.as_deref(), Some("notarium"));
        // Resolved against the config file's folder, not the working directory; the line break
        // is removed.
        assert_eq!(r.password.as_ref().unwrap().expose(), "s3cr3t-pw");
        assert!(r.require_image_manifests);
        assert_eq!(r.timeout, Duration::from_secs(120));

        // Defaults; a username without a password is allowed.
        let r = &c.registries[1];
        assert_eq!(r.gun_prefix, "127.0.0.1:5000/");
        assert_eq!(r.url, "http://127.0.0.1:5000");
        assert_eq!(r.username.as_deref(), Some("anon"));
        assert!(r.password.is_none());
        assert!(!r.require_image_manifests);
        assert_eq!(r.timeout, Duration::from_secs(10));
        assert_eq!(c.registries[2].url, "http://[::1]:5000");

        // No password anywhere in Debug.
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
        assert!(dbg.contains("registry.example.com"), "{dbg}");

        // TOML's array of tables, with the timeout as a string of digits.
        let p = write(
            dir.path(),
            "c.toml",
            "[[registries]]\ngun_prefix = \"r.example/\"\nurl = \"https://r.example:8443\"\ntimeout_seconds = \"1\"\n",
        );
        let (c, w) = Config::load(Some(&p), &no_env, ConfigOverrides::default()).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.registries[0].url, "https://r.example:8443");
        assert_eq!(c.registries[0].timeout, Duration::from_secs(1));
    }

    #[test]
    fn inline_registry_password_warns_and_is_redacted() {
        let (c, w) = load_str(
            r#"{"registries": [{"gun_prefix": "r.example/", "url": "https://r.example",
                                "username": "u", "password": "hunter2-inline"}]}"#,
        )
        .unwrap();
        assert_eq!(
            c.registries[0].password.as_ref().unwrap().expose(),
            "hunter2-inline"
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(matches!(w[0], Warning::Discouraged { .. }));
        assert_eq!(w[0].key(), "registries[0].password");
        assert!(w[0].to_string().contains("password_file"));
        assert!(!w[0].to_string().contains("hunter2"));
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("redacted"), "{dbg}");
    }

    #[test]
    fn immutable_and_delegations_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir_all(etc.join("ca")).unwrap();
        write(&etc.join("ca"), "root.pem", PEM);
        let p = write(
            &etc,
            "c.json",
            r#"{"repositories": {"immutable": ["docker.io/library/alpine", "registry.example.com/releases/"]},
                "delegations": {"trusted_ca_file": "ca/root.pem"}}"#,
        );
        let (c, w) = Config::load(Some(&p), &no_env, ConfigOverrides::default()).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            c.repositories.immutable,
            ["docker.io/library/alpine", "registry.example.com/releases/"]
        );
        assert!(c.repositories.is_immutable("docker.io/library/alpine"));
        assert!(!c.repositories.is_immutable("docker.io/library/alpine2"));
        assert!(!c.repositories.is_immutable("docker.io/library"));
        assert!(
            c.repositories
                .is_immutable("registry.example.com/releases/app")
        );
        assert!(
            !c.repositories
                .is_immutable("registry.example.com/releasesx")
        );
        // Resolved against the config file's folder.
        assert_eq!(
            c.delegations.trusted_ca_file,
            Some(etc.join("ca").join("root.pem"))
        );

        // Absolute paths stay; a single string is split on whitespace like gun_prefixes.
        let abs = etc.join("ca").join("root.pem");
        let p = write(
            dir.path(),
            "d.json",
            &format!(
                r#"{{"repositories": {{"immutable": "a/bc c/"}}, "delegations": {{"trusted_ca_file": {:?}}}}}"#,
                abs.display().to_string()
            ),
        );
        let (c, _) = Config::load(Some(&p), &no_env, ConfigOverrides::default()).unwrap();
        assert_eq!(c.repositories.immutable, ["a/bc", "c/"]);
        assert_eq!(c.delegations.trusted_ca_file, Some(abs));
        // Empty means unset, as for every other string.
        let (c, _) = load_str(r#"{"delegations": {"trusted_ca_file": ""}}"#).unwrap();
        assert_eq!(c.delegations.trusted_ca_file, None);
    }

    #[test]
    fn new_sections_warn_on_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "ca.pem", PEM);
        let p = write(
            dir.path(),
            "c.json",
            r#"{"registries": [{"gun_prefix": "a/", "url": "https://a.example", "//": "comment"},
                               {"gun_prefix": "b/", "url": "https://b.example", "foo": 1}],
                "repositories": {"immutables": []},
                "delegations": {"trusted_ca_file": "ca.pem", "trusted_ca": "x"}}"#,
        );
        let (_, w) = Config::load(Some(&p), &no_env, ConfigOverrides::default()).unwrap();
        let mut keys: Vec<&str> = w.iter().map(Warning::key).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "delegations.trusted_ca",
                "registries[1].foo",
                "repositories.immutables"
            ]
        );
        assert!(w.iter().all(|w| matches!(w, Warning::UnknownKey { .. })));
    }

    /// Every error in the new sections names its key (with the entry's index).
    #[test]
    fn new_sections_errors_name_their_keys() {
        let reg = |entries: &str| format!(r#"{{"registries": [{entries}]}}"#);
        let ok = r#"{"gun_prefix": "a.example/", "url": "https://a.example"}"#;
        let cases: Vec<(String, &str)> = vec![
            (
                reg(r#"{"gun_prefix": "r.example/", "url": "ftp://r.example"}"#),
                "registries[0].url = \"ftp://r.example\" is invalid",
            ),
            (
                reg(r#"{"gun_prefix": "r.example/", "url": "https://r.example/v2/"}"#),
                "registries[0].url = \"https://r.example/v2/\" is invalid",
            ),
            (
                reg(r#"{"gun_prefix": "r.example/", "url": "https://r.example?x=1"}"#),
                "registries[0].url = ",
            ),
            (
                reg(r#"{"gun_prefix": "r.example/", "url": "https://r.example:0"}"#),
                "registries[0].url = ",
            ),
            (
                reg(r#"{"gun_prefix": "r.example/", "url": "https://"}"#),
                "registries[0].url = ",
            ),
            (
                reg(r#"{"gun_prefix": "r.example/", "url": "r.example"}"#),
                "registries[0].url = ",
            ),
            (
                reg(r#"{"gun_prefix": "r.example/", "url": "https://bob:s3cret@r.example"}"#),
                "registries[0].url = \"https://<redacted>@r.example\" is invalid",
            ),
            (
                reg(r#"{"gun_prefix": "r.example/"}"#),
                "registries[0].url is required",
            ),
            (
                reg(r#"{"gun_prefix": "r.example/", "url": 5}"#),
                "registries[0].url must be a string, found a number",
            ),
            (
                reg(r#"{"url": "https://r.example"}"#),
                "registries[0].gun_prefix is required",
            ),
            (
                reg(r#"{"gun_prefix": "", "url": "https://r.example"}"#),
                "registries[0].gun_prefix is required",
            ),
            (
                reg(&format!(
                    r#"{ok}, {{"gun_prefix": "r.example", "url": "https://r.example"}}"#
                )),
                "registries[1].gun_prefix = \"r.example\" is invalid",
            ),
            (
                reg(&format!(
                    r#"{ok}, {{"gun_prefix": "/r/", "url": "https://r.example"}}"#
                )),
                "registries[1].gun_prefix = \"/r/\" is invalid",
            ),
            (
                reg(&format!(
                    r#"{ok}, {{"gun_prefix": "a.example/", "url": "https://b.example"}}"#
                )),
                "registries[1].gun_prefix = \"a.example/\" is already used by registries[0].gun_prefix",
            ),
            (
                reg(r#"{"gun_prefix": "r/", "url": "https://r.example", "timeout_seconds": 0}"#),
                "registries[0].timeout_seconds = \"0\" is invalid",
            ),
            (
                reg(r#"{"gun_prefix": "r/", "url": "https://r.example", "timeout_seconds": 121}"#),
                "registries[0].timeout_seconds = \"121\" is invalid",
            ),
            (
                reg(
                    r#"{"gun_prefix": "r/", "url": "https://r.example", "require_image_manifests": "yes"}"#,
                ),
                "registries[0].require_image_manifests must be a boolean",
            ),
            (
                reg(r#"{"gun_prefix": "r/", "url": "https://r.example", "username": "a:b"}"#),
                "registries[0].username = \"a:b\" is invalid",
            ),
            (
                reg(
                    r#"{"gun_prefix": "r/", "url": "https://r.example", "username": "u",
                        "password": "s3cret", "password_file": "pw.txt"}"#,
                ),
                "registries[0].password and registries[0].password_file are both set",
            ),
            (
                reg(r#"{"gun_prefix": "r/", "url": "https://r.example", "password": "s3cret"}"#),
                "registries[0].password is set but registries[0].username is not",
            ),
            (
                // Refused before the (missing) file is read.
                reg(
                    r#"{"gun_prefix": "r/", "url": "https://r.example", "password_file": "missing.txt"}"#,
                ),
                "registries[0].password_file is set but registries[0].username is not",
            ),
            (
                reg(
                    r#"{"gun_prefix": "r/", "url": "https://r.example", "username": "u",
                        "password_file": "missing.txt"}"#,
                ),
                "registries[0].password_file: cannot read ",
            ),
            (
                reg(r#"{"gun_prefix": "r/", "url": "https://r.example", "password": ["s3cret"]}"#),
                "registries[0].password must be a string, found an array",
            ),
            (
                reg(r#""x""#),
                "registries[0] must be an object, found a string",
            ),
            (
                r#"{"registries": {"gun_prefix": "r/"}}"#.to_string(),
                "registries must be an array of objects, found an object",
            ),
            (
                r#"{"repositories": {"immutable": ["ok/", "/abs"]}}"#.to_string(),
                "repositories.immutable = \"/abs\" is invalid",
            ),
            (
                r#"{"repositories": {"immutable": ["../up"]}}"#.to_string(),
                "repositories.immutable = \"../up\"",
            ),
            (
                r#"{"repositories": {"immutable": ["a//b"]}}"#.to_string(),
                "repositories.immutable = \"a//b\"",
            ),
            (
                r#"{"repositories": {"immutable": ["ab", ""]}}"#.to_string(),
                "repositories.immutable = \"\"",
            ),
            (
                r#"{"repositories": {"immutable": [3]}}"#.to_string(),
                "repositories.immutable must be an array of strings",
            ),
            (
                r#"{"delegations": {"trusted_ca_file": "missing.pem"}}"#.to_string(),
                "delegations.trusted_ca_file: cannot read ",
            ),
            (
                r#"{"delegations": {"trusted_ca_file": 1}}"#.to_string(),
                "delegations.trusted_ca_file must be a string",
            ),
            (
                r#"{"delegations": "ca.pem"}"#.to_string(),
                "delegations must be an object",
            ),
        ];
        for (json, want) in &cases {
            let e = err_str(json);
            assert!(
                e.starts_with(want),
                "for {json}: got {e:?}, want prefix {want:?}"
            );
            assert!(!e.contains("s3cret"), "{e}");
            assert!(e.contains("config file"), "{e}");
        }

        // Files that exist but do not hold what the key needs.
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "empty.txt", "\n");
        write(
            dir.path(),
            "not-a-ca.pem",
            "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n",
        );
        std::fs::write(dir.path().join("binary.txt"), [0xff, 0xfe]).unwrap();
        let cases = [
            (
                reg(
                    r#"{"gun_prefix": "r/", "url": "https://r.example", "username": "u", "password_file": "empty.txt"}"#,
                ),
                "registries[0].password_file = ",
            ),
            (
                reg(
                    r#"{"gun_prefix": "r/", "url": "https://r.example", "username": "u", "password_file": "binary.txt"}"#,
                ),
                "registries[0].password_file = ",
            ),
            (
                reg(
                    r#"{"gun_prefix": "r/", "url": "https://r.example", "username": "u", "password_file": "."}"#,
                ),
                "registries[0].password_file: cannot read ",
            ),
            (
                r#"{"delegations": {"trusted_ca_file": "not-a-ca.pem"}}"#.to_string(),
                "delegations.trusted_ca_file = ",
            ),
            (
                r#"{"delegations": {"trusted_ca_file": "empty.txt"}}"#.to_string(),
                "delegations.trusted_ca_file = ",
            ),
        ];
        for (json, want) in &cases {
            let p = write(dir.path(), "c.json", json);
            let e = Config::load(Some(&p), &no_env, ConfigOverrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(want),
                "for {json}: got {e:?}, want prefix {want:?}"
            );
            // The message shows where the file was looked for.
            assert!(e.contains(&dir.path().display().to_string()), "{e}");
        }
    }

    /// Every server config shipped with notary 0.7: with the backend switched to sqlite, each loads
    /// with its remote trust service as written; switched to local, it loads too.
    #[test]
    fn notary_fixture_configs() {
        let dir = Path::new(NOTARY).join("fixtures");
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; this test reads notary's own configs (Debian package \
                 golang-github-docker-notary-dev, installed by scripts/test)",
                dir.display()
            )
        });
        let mut files: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_str().unwrap();
                name.starts_with("server-config") && name.ends_with(".json")
            })
            .collect();
        files.sort();
        assert!(files.len() >= 5, "{files:?}");
        for file in &files {
            // Substitute the backend we run and load, in a copy next to fake key files.
            let mut v: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
            let original_backend = v["storage"]["backend"].as_str().unwrap().to_string();
            v["storage"]["backend"] = "sqlite".into();
            v["storage"]["db_url"] = "./notary.db".into();
            let tmp = tempfile::tempdir().unwrap();
            let copy = write(tmp.path(), "config.json", &v.to_string());
            let (c, _) = Config::load(Some(&copy), &no_env, ConfigOverrides::default()).unwrap();
            assert_eq!(
                c.trust_service.kind,
                TrustServiceKind::Remote(RemoteTrust {
                    hostname: "notarysigner".into(),
                    port: 7899,
                    tls_ca_file: tmp.path().join("root-ca.crt"),
                    client_identity: Some((
                        tmp.path().join("notary-server.crt"),
                        tmp.path().join("notary-server.key")
                    )),
                }),
                "{}",
                file.display()
            );
            v["trust_service"]["type"] = "local".into();
            let copy = write(tmp.path(), "config.json", &v.to_string());
            let (c, warnings) =
                Config::load(Some(&copy), &no_env, ConfigOverrides::default()).unwrap();
            assert_eq!(c.server.http_addr.to_string(), ":4443");
            assert_eq!(c.server.http_addr.host, ListenHost::Unspecified);
            assert_eq!(
                c.server.tls,
                TlsSource::Files {
                    cert_file: tmp.path().join("notary-server.crt"),
                    key_file: tmp.path().join("notary-server.key"),
                }
            );
            assert_eq!(
                c.storage,
                StorageConfig::Sqlite {
                    path: tmp.path().join("notary.db")
                }
            );
            assert_eq!(c.logging.level, LogLevel::Debug);
            // Nothing is reported unknown.
            assert!(
                warnings
                    .iter()
                    .all(|w| matches!(w, Warning::Ignored { .. })),
                "{warnings:?}"
            );
            if original_backend == "rethinkdb" {
                assert!(warnings.iter().any(|w| w.key() == "storage.password"));
                // A warning names the key, never the value.
                assert!(
                    warnings
                        .iter()
                        .all(|w| !w.to_string().contains("serverpass"))
                );
            }
        }
    }

    /// notary-server's remote trust service: what is missing is named, and
    /// files resolve against the config file.
    #[test]
    fn remote_trust_service() {
        let dir = tempfile::tempdir().unwrap();
        let load = |json: &str| {
            let file = write(dir.path(), "config.json", json);
            Config::load(Some(&file), &no_env, ConfigOverrides::default())
        };
        let e = load(r#"{"trust_service":{"type":"remote","hostname":"signer"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("but trust_service.port is not"), "{e}");
        let e = load(r#"{"trust_service":{"type":"remote","hostname":"signer","port":7899}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("but trust_service.tls_ca_file is not"), "{e}");
        let (c, _) = load(
            r#"{"trust_service":{"type":"remote","hostname":"signer","port":"7899",
                "tls_ca_file":"ca.pem","key_algorithm":"ed25519"}}"#,
        )
        .unwrap();
        assert_eq!(c.trust_service.key_algorithm, KeyAlgorithm::Ed25519);
        assert_eq!(
            c.trust_service.kind,
            TrustServiceKind::Remote(RemoteTrust {
                hostname: "signer".into(),
                port: 7899,
                tls_ca_file: dir.path().join("ca.pem"),
                client_identity: None,
            })
        );
    }

    /// The notary backends we don't run fail with a message naming the key; local + sqlite3 from a
    /// notary file loads unchanged.
    #[test]
    fn backends() {
        let base = |backend: &str, url: &str| {
            format!(
                r#"{{"server":{{"http_addr":":4443"}},"trust_service":{{"type":"local"}},
                   "storage":{{"backend":"{backend}","db_url":"{url}"}}}}"#
            )
        };
        let (c, w) = load_str(&base("sqlite3", "/tmp/notary-server.db")).unwrap();
        assert!(w.is_empty());
        assert_eq!(
            c.storage,
            StorageConfig::Sqlite {
                path: "/tmp/notary-server.db".into()
            }
        );
        let (c, w) = load_str(&base(
            "postgres",
            "postgres://server@postgresql:5432/notaryserver",
        ))
        .unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert!(matches!(c.storage, StorageConfig::Postgres(_)));
        let e = err_str(&base(
            "mysql",
            "server@tcp(mysql:3306)/notaryserver?parseTime=True",
        ));
        assert!(
            e.starts_with("storage.backend \"mysql\" is not supported"),
            "{e}"
        );
        let e = err_str(&base("rethinkdb", "rdb-proxy.rdb"));
        assert!(
            e.starts_with("storage.backend \"rethinkdb\" is not supported"),
            "{e}"
        );
        let e = err_str(r#"{"storage":{"backend":"memory"}}"#);
        assert!(e.contains("storage.backend \"memory\""), "{e}");
        assert!(e.contains("always persists"), "{e}");
        let e = err_str(r#"{"storage":{"backend":"oracle"}}"#);
        assert!(
            e.starts_with("storage.backend = \"oracle\" is invalid"),
            "{e}"
        );
    }

    /// notary's PostgreSQL `db_url`, the password from the environment or a file (never shown),
    /// pool bounds with defaults, and migrate_on_start.
    #[test]
    fn postgres_storage() {
        let dir = tempfile::tempdir().unwrap();
        let url = "postgres://server@db:5432/notary?sslmode=verify-full&sslrootcert=/ca.pem\
                   &sslcert=/c.pem&sslkey=/k.pem";
        let file = write(
            dir.path(),
            "c.json",
            &format!(r#"{{"storage":{{"backend":"postgres","db_url":"{url}"}}}}"#),
        );
        let (c, w) = Config::load(Some(&file), &no_env, ConfigOverrides::default()).unwrap();
        assert!(w.is_empty(), "{w:?}");
        let StorageConfig::Postgres(pg) = &c.storage else {
            panic!("{:?}", c.storage)
        };
        assert_eq!(pg.url.expose(), url);
        assert_eq!(pg.password, None);
        assert_eq!(pg.max_connections, 10);
        assert_eq!(pg.acquire_timeout, Duration::from_secs(5));
        assert_eq!(pg.statement_timeout, Duration::from_secs(30));
        assert_eq!(pg.lock_timeout, Duration::from_secs(10));
        assert!(pg.migrate_on_start);
        assert_eq!(c.storage.data_dir(), None);

        // Password from the environment; bounds and migrate_on_start from the environment.
        let env = env_of(&[
            (ENV_DB_PASSWORD, "s3cret"),
            ("NOTARIUM_STORAGE_MAX_CONNECTIONS", "3"),
            (ENV_MIGRATE_ON_START, "false"),
        ]);
        let (c, _) = Config::load(Some(&file), &env, ConfigOverrides::default()).unwrap();
        let StorageConfig::Postgres(pg) = &c.storage else {
            panic!()
        };
        assert_eq!(pg.password.as_ref().unwrap().expose(), "s3cret");
        assert_eq!(pg.max_connections, 3);
        assert!(!pg.migrate_on_start);
        assert!(!format!("{c:?}").contains("s3cret"));

        // From a file named in the config, relative to it.
        std::fs::write(dir.path().join("pw"), "filepass\n").unwrap();
        let file = write(
            dir.path(),
            "f.json",
            r#"{"storage":{"backend":"postgres","db_url":"postgres://u@h/d",
                "password_file":"pw","lock_timeout_seconds":2,"migrate_on_start":false}}"#,
        );
        let (c, _) = Config::load(Some(&file), &no_env, ConfigOverrides::default()).unwrap();
        let StorageConfig::Postgres(pg) = &c.storage else {
            panic!()
        };
        assert_eq!(pg.password.as_ref().unwrap().expose(), "filepass");
        assert_eq!(pg.lock_timeout, Duration::from_secs(2));
        assert!(!pg.migrate_on_start);

        // No backend named anywhere: the URL's scheme chooses PostgreSQL.
        let env = env_of(&[(ENV_DB_URL, "postgresql://u@h/d")]);
        let (c, _) = Config::load(None, &env, ConfigOverrides::default()).unwrap();
        assert!(
            matches!(c.storage, StorageConfig::Postgres(_)),
            "{:?}",
            c.storage
        );

        // TLS files named relative to the config file resolve against its folder (notary does);
        // the same URL from the environment stays relative to the working directory.
        let relative = "postgres://u@h/d?sslmode=verify-full&sslrootcert=certs/ca.pem\
                        &sslcert=/abs/c.pem&sslkey=k%20ey.pem";
        let file = write(
            dir.path(),
            "tls.json",
            &format!(r#"{{"storage":{{"backend":"postgres","db_url":"{relative}"}}}}"#),
        );
        let (c, _) = Config::load(Some(&file), &no_env, ConfigOverrides::default()).unwrap();
        let StorageConfig::Postgres(pg) = &c.storage else {
            panic!()
        };
        let folder = percent_encode_path(dir.path());
        assert_eq!(
            pg.url.expose(),
            format!(
                "postgres://u@h/d?sslmode=verify-full&sslrootcert={folder}/certs/ca.pem\
                 &sslcert=/abs/c.pem&sslkey={folder}/k%20ey.pem"
            )
        );
        let options: sqlx::postgres::PgConnectOptions = pg.url.expose().parse().unwrap();
        assert_eq!(options.get_database(), Some("d"));
        let env = env_of(&[(ENV_STORAGE_BACKEND, "postgres"), (ENV_DB_URL, relative)]);
        let (c, _) = Config::load(None, &env, ConfigOverrides::default()).unwrap();
        let StorageConfig::Postgres(pg) = &c.storage else {
            panic!()
        };
        assert_eq!(pg.url.expose(), relative);

        // A password in the URL is redacted in Debug, Display and errors.
        let env = env_of(&[
            (ENV_STORAGE_BACKEND, "postgres"),
            (ENV_DB_URL, "postgres://u:hunter2@h/d?password=hunter3"),
        ]);
        let (c, _) = Config::load(None, &env, ConfigOverrides::default()).unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("hunter3"),
            "{shown}"
        );
        assert!(shown.contains("u:****@h/d?password=****"), "{shown}");
        let env = env_of(&[
            (ENV_STORAGE_BACKEND, "postgres"),
            (ENV_DB_URL, "mysql://u:hunter2@h/d"),
        ]);
        let e = Config::load(None, &env, ConfigOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("storage.db_url") && !e.contains("hunter2"),
            "{e}"
        );
        let e = Config::load(
            None,
            &env_of(&[(ENV_STORAGE_BACKEND, "postgres")]),
            ConfigOverrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("storage.db_url is required"), "{e}");
    }

    #[test]
    fn sqlite_urls() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("sqlite:///abs/x.db", PathBuf::from("/abs/x.db")),
            ("sqlite://rel/x.db", dir.path().join("rel/x.db")),
            ("sqlite:rel.db", dir.path().join("rel.db")),
            ("plain.db", dir.path().join("plain.db")),
        ];
        for (url, want) in cases {
            let p = write(
                dir.path(),
                "c.json",
                &format!(r#"{{"storage":{{"db_url":"{url}"}}}}"#),
            );
            let (c, _) = Config::load(Some(&p), &no_env, ConfigOverrides::default()).unwrap();
            assert_eq!(c.storage, StorageConfig::Sqlite { path: want }, "{url}");
        }
        for bad in ["sqlite::memory:", "sqlite://x.db?mode=memory", "sqlite:"] {
            let e = err_str(&format!(r#"{{"storage":{{"db_url":"{bad}"}}}}"#));
            assert!(
                e.starts_with(&format!("storage.db_url = {bad:?} is invalid")),
                "{e}"
            );
        }
        // A PostgreSQL URL for a backend said to be sqlite is a mistake, not a file name.
        let e = err_str(r#"{"storage":{"backend":"sqlite","db_url":"postgres://u@h/db"}}"#);
        assert!(
            e.starts_with("storage.db_url = \"postgres://u@h/db\" is invalid"),
            "{e}"
        );
    }

    #[test]
    fn precedence_file_env_flags() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "c.json",
            r#"{"server":{"http_addr":"10.0.0.1:1","keys_dir":"k"},
                "logging":{"level":"debug"},
                "trust_service":{"type":"local","key_algorithm":"ed25519"}}"#,
        );
        // File only.
        let (c, _) = Config::load(Some(&p), &no_env, ConfigOverrides::default()).unwrap();
        assert_eq!(c.server.http_addr.to_string(), "10.0.0.1:1");
        assert_eq!(c.logging.level, LogLevel::Debug);
        assert_eq!(c.trust_service.key_algorithm, KeyAlgorithm::Ed25519);
        assert_eq!(c.server.keys_dir, dir.path().join("k"));

        // Env beats file; env paths stay relative to the working directory.
        let env = env_of(&[
            (ENV_HTTP_ADDR, "10.0.0.2:2"),
            (ENV_LOG_LEVEL, "warning"),
            (ENV_KEYS_DIR, "envkeys"),
            (ENV_KEY_ALGORITHM, "ecdsa"),
            (ENV_KEY_PASSPHRASE, "hunter2"),
        ]);
        let (c, _) = Config::load(Some(&p), &env, ConfigOverrides::default()).unwrap();
        assert_eq!(c.server.http_addr.to_string(), "10.0.0.2:2");
        assert_eq!(c.logging.level, LogLevel::Warn);
        assert_eq!(c.server.keys_dir, PathBuf::from("envkeys"));
        assert_eq!(c.trust_service.key_algorithm, KeyAlgorithm::Ecdsa);
        assert_eq!(c.keys.passphrase.as_ref().unwrap().expose(), "hunter2");

        // Flags beat env.
        let flags = ConfigOverrides {
            http_addr: Some("[::1]:3".into()),
            log_level: Some("ERROR".into()),
            keys_dir: Some("flagkeys".into()),
            max_body_bytes: Some(4096),
            ..ConfigOverrides::default()
        };
        let (c, _) = Config::load(Some(&p), &env, flags).unwrap();
        assert_eq!(c.server.http_addr.to_string(), "[::1]:3");
        assert_eq!(c.logging.level, LogLevel::Error);
        assert_eq!(c.server.keys_dir, PathBuf::from("flagkeys"));
        assert_eq!(c.server.max_body_bytes, 4096);
        // Layers a flag does not set still come through.
        assert_eq!(c.trust_service.key_algorithm, KeyAlgorithm::Ecdsa);

        // An empty environment variable is "unset".
        let env = env_of(&[(ENV_HTTP_ADDR, "")]);
        let (c, _) = Config::load(Some(&p), &env, ConfigOverrides::default()).unwrap();
        assert_eq!(c.server.http_addr.to_string(), "10.0.0.1:1");
    }

    #[test]
    fn env_can_repair_file_and_tls_pairs_merge_across_layers() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "c.json",
            r#"{"storage":{"backend":"mysql","db_url":"server@tcp(mysql:3306)/notaryserver"},
                "server":{"tls_cert_file":"a.crt"}}"#,
        );
        let env = env_of(&[
            (ENV_STORAGE_BACKEND, "sqlite"),
            (ENV_TLS_KEY_FILE, "/etc/k.pem"),
        ]);
        let (c, w) = Config::load(Some(&p), &env, ConfigOverrides::default()).unwrap();
        // The MySQL DSN is not reused as a SQLite file name.
        assert_eq!(
            c.storage,
            StorageConfig::Sqlite {
                path: "data/notarium.db".into()
            }
        );
        assert!(w.iter().any(|w| w.key() == "storage.db_url"), "{w:?}");
        assert_eq!(
            c.server.tls,
            TlsSource::Files {
                cert_file: dir.path().join("a.crt"),
                key_file: "/etc/k.pem".into()
            }
        );
        // Same backend again: the file's URL stays.
        let p = write(
            dir.path(),
            "d.json",
            r#"{"storage":{"backend":"sqlite3","db_url":"x.db"}}"#,
        );
        let env = env_of(&[(ENV_STORAGE_BACKEND, "sqlite")]);
        let (c, w) = Config::load(Some(&p), &env, ConfigOverrides::default()).unwrap();
        assert!(w.is_empty());
        assert_eq!(
            c.storage,
            StorageConfig::Sqlite {
                path: dir.path().join("x.db")
            }
        );
        // And a flag URL overrides an env URL.
        let env = env_of(&[(ENV_DB_URL, "env.db")]);
        let flags = ConfigOverrides {
            db_url: Some("sqlite:///flag.db".into()),
            ..ConfigOverrides::default()
        };
        let (c, _) = Config::load(None, &env, flags).unwrap();
        assert_eq!(
            c.storage,
            StorageConfig::Sqlite {
                path: "/flag.db".into()
            }
        );
    }

    #[test]
    fn relative_paths_resolve_against_config_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        let p = write(
            &dir.path().join("etc"),
            "c.json",
            r#"{"server":{"tls_cert_file":"./tls/s.crt","tls_key_file":"/abs/s.key","keys_dir":"../k"},
                "storage":{"db_url":"db/n.db"}}"#,
        );
        let (c, _) = Config::load(Some(&p), &no_env, ConfigOverrides::default()).unwrap();
        let etc = dir.path().join("etc");
        assert_eq!(
            c.server.tls,
            TlsSource::Files {
                cert_file: etc.join("tls/s.crt"),
                key_file: "/abs/s.key".into()
            }
        );
        assert_eq!(c.server.keys_dir, etc.join("..").join("k"));
        assert_eq!(c.storage.data_dir(), Some(etc.join("db")));
    }

    #[test]
    fn unknown_and_ignored_keys_warn() {
        let (_, w) = load_str(
            r#"{"server":{"http_addr":":4443","htp_addr":"x"},
                "reporting":{"bugsnag":{"api_key":"k"}},
                "auth":{"options":{"realm":"r"}},
                "loging":{"level":"debug"},
                "caching":{"max_age":{"current":1}}}"#,
        )
        .unwrap();
        let keys: Vec<(&str, bool)> = w
            .iter()
            .map(|w| (w.key(), matches!(w, Warning::UnknownKey { .. })))
            .collect();
        assert!(keys.contains(&("server.htp_addr", true)), "{keys:?}");
        assert!(keys.contains(&("loging", true)), "{keys:?}");
        assert!(
            keys.contains(&("caching.max_age.current", true)),
            "{keys:?}"
        );
        assert!(keys.contains(&("reporting.bugsnag", false)), "{keys:?}");
        assert!(keys.contains(&("auth.options", false)), "{keys:?}");
        assert_eq!(w.len(), 5);
        assert!(w[0].to_string().contains("ignored"));
    }

    #[test]
    fn token_auth_from_file_env_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "c.json",
            r#"{"auth":{"type":"token","options":{"realm":"https://auth.example.com/token",
                "service":"notary.example.com","issuer":"auth.example.com",
                "rootcertbundle":"certs/root.pem","autoredirect":true}}}"#,
        );
        let (c, w) = Config::load(Some(&path), &no_env, ConfigOverrides::default()).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            c.auth,
            Some(AuthConfig {
                realm: "https://auth.example.com/token".into(),
                service: "notary.example.com".into(),
                issuer: "auth.example.com".into(),
                rootcertbundle: dir.path().join("certs/root.pem"),
                autoredirect: true,
            })
        );
        assert!(!c.server.insecure_no_auth);

        // Environment only; a relative path stays relative to the working directory.
        let env = env_of(&[
            (ENV_AUTH_TYPE, "token"),
            (ENV_AUTH_REALM, "r"),
            (ENV_AUTH_SERVICE, "s"),
            (ENV_AUTH_ISSUER, "i"),
            (ENV_AUTH_ROOTCERTBUNDLE, "root.pem"),
            (ENV_INSECURE_NO_AUTH, "true"),
        ]);
        let (c, _) = Config::load(None, &env, ConfigOverrides::default()).unwrap();
        let auth = c.auth.unwrap();
        assert_eq!(auth.rootcertbundle, PathBuf::from("root.pem"));
        assert!(!auth.autoredirect);
        assert!(c.server.insecure_no_auth);

        // Flags over the file; a missing key names itself.
        let flags = ConfigOverrides {
            auth_service: Some("other".into()),
            ..ConfigOverrides::default()
        };
        let (c, _) = Config::load(Some(&path), &no_env, flags).unwrap();
        assert_eq!(c.auth.unwrap().service, "other");
        let flags = ConfigOverrides {
            auth_type: Some("token".into()),
            auth_realm: Some("r".into()),
            ..ConfigOverrides::default()
        };
        let e = Config::load(None, &no_env, flags).unwrap_err().to_string();
        assert!(
            e.starts_with("auth.options.service is required (command line)"),
            "{e}"
        );
        let env = env_of(&[(ENV_INSECURE_NO_AUTH, "maybe")]);
        let e = Config::load(None, &env, ConfigOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(ENV_INSECURE_NO_AUTH), "{e}");
        // Options in the file count once the environment sets the type.
        let options_only = write(
            dir.path(),
            "o.json",
            r#"{"auth":{"options":{"realm":"r","service":"s","issuer":"i","rootcertbundle":"b.pem"}}}"#,
        );
        let env = env_of(&[(ENV_AUTH_TYPE, "token")]);
        let (c, _) = Config::load(Some(&options_only), &env, ConfigOverrides::default()).unwrap();
        assert_eq!(c.auth.unwrap().rootcertbundle, dir.path().join("b.pem"));
        let (c, _) = load_str(r#"{"server":{"insecure_no_auth":true}}"#).unwrap();
        assert!(c.server.insecure_no_auth);
        assert!(c.auth.is_none());
    }

    #[test]
    fn keys_are_case_insensitive_and_nulls_unset() {
        let (c, _) = load_str(r#"{"Server":{"HTTP_Addr":":1"},"logging":{"level":null}}"#).unwrap();
        assert_eq!(c.server.http_addr.to_string(), ":1");
        assert_eq!(c.logging.level, LogLevel::Info);
        let e = err_str(r#"{"server":{"http_addr":":1","HTTP_ADDR":":2"}}"#);
        assert!(e.contains("appears more than once"), "{e}");
    }

    /// Every invalid value names its dotted key, the value and the allowed set.
    #[test]
    fn every_error_names_its_key() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"server":{"http_addr":"4443"}}"#,
                "server.http_addr = \"4443\"",
            ),
            (r#"{"server":{"http_addr":"::1:4443"}}"#, "server.http_addr"),
            (r#"{"server":{"http_addr":"h:99999"}}"#, "server.http_addr"),
            (
                r#"{"server":{"http_addr":4443}}"#,
                "server.http_addr must be a string, found a number",
            ),
            (
                r#"{"server":{"tls_cert_file":"a.crt"}}"#,
                "server.tls_cert_file is set",
            ),
            (
                r#"{"server":{"tls_key_file":"a.key"}}"#,
                "server.tls_key_file is set",
            ),
            (
                r#"{"server":{"client_ca_file":"ca.crt"}}"#,
                "server.client_ca_file \"ca.crt\"",
            ),
            (
                r#"{"server":{"max_body_bytes":10}}"#,
                "server.max_body_bytes = \"10\"",
            ),
            (
                r#"{"server":{"max_body_bytes":-1}}"#,
                "server.max_body_bytes = \"-1\"",
            ),
            (r#"{"server":"x"}"#, "server must be an object"),
            (
                r#"{"trust_service":{"type":"remote"}}"#,
                "trust_service.type is set (config file ",
            ),
            (
                r#"{"trust_service":{"type":"remote","hostname":"s","port":"70000","tls_ca_file":"ca"}}"#,
                "trust_service.port = \"70000\" is invalid",
            ),
            (
                r#"{"trust_service":{"type":"remote","hostname":"s","port":7899,"tls_ca_file":"ca","tls_client_cert":"c"}}"#,
                "trust_service.tls_client_cert is set (config file ",
            ),
            (
                r#"{"trust_service":{"type":"lokal"}}"#,
                "trust_service.type = \"lokal\"",
            ),
            (
                r#"{"trust_service":{"key_algorithm":"rsa"}}"#,
                "trust_service.key_algorithm \"rsa\"",
            ),
            (
                r#"{"trust_service":{"key_algorithm":"dsa"}}"#,
                "trust_service.key_algorithm = \"dsa\"",
            ),
            (
                r#"{"logging":{"level":"loud"}}"#,
                "logging.level = \"loud\"",
            ),
            (
                r#"{"caching":{"max_age":{"current_metadata":31536001}}}"#,
                "caching.max_age.current_metadata = \"31536001\"",
            ),
            (
                r#"{"caching":{"max_age":{"consistent_metadata":"x"}}}"#,
                "caching.max_age.consistent_metadata = \"x\"",
            ),
            (
                r#"{"caching":{"max_age":{"consistent_metadata":1.5}}}"#,
                "caching.max_age.consistent_metadata = \"1.5\"",
            ),
            (
                r#"{"repositories":{"gun_prefixes":["ok/","bad"]}}"#,
                "repositories.gun_prefixes = \"bad\"",
            ),
            (
                r#"{"repositories":{"gun_prefixes":["/abs/"]}}"#,
                "repositories.gun_prefixes = \"/abs/\"",
            ),
            (
                r#"{"repositories":{"gun_prefixes":["../up/"]}}"#,
                "repositories.gun_prefixes = \"../up/\"",
            ),
            (
                r#"{"repositories":{"gun_prefixes":["a//b/"]}}"#,
                "repositories.gun_prefixes = \"a//b/\"",
            ),
            (
                r#"{"repositories":{"gun_prefixes":[" a/"]}}"#,
                "repositories.gun_prefixes = \" a/\"",
            ),
            (
                r#"{"repositories":{"gun_prefixes":[1]}}"#,
                "repositories.gun_prefixes must be an array of strings",
            ),
            (
                r#"{"auth":{"type":"token","options":{}}}"#,
                "auth.options.realm is required",
            ),
            (
                r#"{"auth":{"type":"token","options":{"realm":"r","service":"s","issuer":"i"}}}"#,
                "auth.options.rootcertbundle is required",
            ),
            (
                r#"{"auth":{"type":"htpasswd","options":{}}}"#,
                "auth.type \"htpasswd\" is not supported",
            ),
            (
                r#"{"auth":{"type":"token","options":{"realm":1}}}"#,
                "auth.options.realm must be a string",
            ),
            (
                r#"{"server":{"insecure_no_auth":"yes"}}"#,
                "server.insecure_no_auth must be a boolean",
            ),
            (
                r#"{"keys":{"passphrase":"s3cret"}}"#,
                "keys.passphrase must not be set in the config file",
            ),
            (r#"[]"#, "(top level) must be an object"),
        ];
        for (json, want) in cases {
            let e = err_str(json);
            assert!(
                e.starts_with(want),
                "for {json}: got {e:?}, want prefix {want:?}"
            );
            assert!(!e.contains("s3cret"));
        }
        // The origin is part of the message.
        let e = err_str(r#"{"logging":{"level":"loud"}}"#);
        assert!(e.contains("config file"), "{e}");
        let env = env_of(&[(ENV_LOG_LEVEL, "loud")]);
        let e = Config::load(None, &env, ConfigOverrides::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains("environment variable NOTARIUM_LOG_LEVEL"),
            "{e}"
        );
        let flags = ConfigOverrides {
            key_algorithm: Some("rsa".into()),
            ..ConfigOverrides::default()
        };
        let e = Config::load(None, &no_env, flags).unwrap_err();
        assert!(e.to_string().contains("(command line)"), "{e}");
    }

    #[test]
    fn accepted_values() {
        let (c, _) = load_str(
            r#"{"caching":{"max_age":{"current_metadata":"0","consistent_metadata":31536000}},
                "repositories":{"gun_prefixes":["docker.io/library/","example.com/team/"]},
                "logging":{"level":"Panic"},
                "auth":{"type":""}}"#,
        )
        .unwrap();
        assert_eq!(c.caching.current_metadata_max_age, 0);
        assert_eq!(c.caching.consistent_metadata_max_age, 31_536_000);
        assert_eq!(
            c.repositories.gun_prefixes,
            ["docker.io/library/", "example.com/team/"]
        );
        assert_eq!(c.logging.level, LogLevel::Error);
        // A single string is split on whitespace, as viper's GetStringSlice does.
        let (c, _) = load_str(r#"{"repositories":{"gun_prefixes":"a/ b/c/"}}"#).unwrap();
        assert_eq!(c.repositories.gun_prefixes, ["a/", "b/c/"]);
    }

    #[test]
    fn listen_addr_forms() {
        let a = ListenAddr::parse(":4443").unwrap();
        assert_eq!(a.host, ListenHost::Unspecified);
        let c = a.candidates().unwrap();
        assert_eq!(c[0].to_string(), "[::]:4443");
        assert_eq!(c[1].to_string(), "0.0.0.0:4443");
        let a = ListenAddr::parse("[::1]:0").unwrap();
        assert_eq!(a.candidates().unwrap()[0].to_string(), "[::1]:0");
        let a = ListenAddr::parse("localhost:80").unwrap();
        assert_eq!(a.host, ListenHost::Name("localhost".into()));
        assert_eq!(a.to_string(), "localhost:80");
        for bad in ["", "4443", ":", ":x", "a b:1", "[::1]", "::1:80", ":+1"] {
            assert!(ListenAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_redacted() {
        let env = env_of(&[(ENV_KEY_PASSPHRASE, "hunter2")]);
        let (c, _) = Config::load(None, &env, ConfigOverrides::default()).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("redacted"));
        let e = Config::load(
            None,
            &env_of(&[(ENV_KEY_PASSPHRASE, "")]),
            ConfigOverrides::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("NOTARIUM_KEY_PASSPHRASE is set but empty")
        );
    }

    #[test]
    fn file_errors() {
        let e = Config::load(
            Some(Path::new("/nonexistent/notarium.json")),
            &no_env,
            ConfigOverrides::default(),
        )
        .unwrap_err();
        assert!(matches!(e, ConfigError::ReadFile { .. }));
        assert!(e.to_string().contains("/nonexistent/notarium.json"));
        assert!(matches!(load_str("{"), Err(ConfigError::Json { .. })));
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "c.yaml", "server: {}");
        assert!(matches!(
            Config::load(Some(&p), &no_env, ConfigOverrides::default()),
            Err(ConfigError::UnsupportedFormat { .. })
        ));
    }

    #[test]
    fn toml_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "c.toml",
            "[server]\nhttp_addr = \":8443\"\n[caching.max_age]\ncurrent_metadata = 0\n",
        );
        let (c, w) = Config::load(Some(&p), &no_env, ConfigOverrides::default()).unwrap();
        assert!(w.is_empty());
        assert_eq!(c.server.http_addr.port, 8443);
        assert_eq!(c.caching.current_metadata_max_age, 0);
    }
}

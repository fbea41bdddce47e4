//! The storage sections of an existing notary-server and notary-signer
//! configuration, read as the operator has them (PROTOCOL.md §6.3, §7.1,
//! §7.2): `storage.backend` (`mysql` | `postgres`), notary's `db_url` forms,
//! the signer's `default_alias`. Relative file paths in the URL (TLS files)
//! are relative to the configuration file, as notary resolves them.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// A configuration that cannot be used as an import source.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: `{key}` is missing or not a string")]
    Missing { path: PathBuf, key: &'static str },
    #[error(
        "{path}: storage.backend {backend:?} holds nothing to import from (only mysql and postgres \
         keep data)"
    )]
    Backend { path: PathBuf, backend: String },
    #[error("{path}: storage.db_url is not a {backend} URL notary accepts")]
    Url {
        path: PathBuf,
        backend: &'static str,
    },
}

/// Which database a source lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceBackend {
    Postgres,
    Mysql,
}

/// A source database, its URL in sqlx's form. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SourceDb {
    pub backend: SourceBackend,
    pub url: String,
}

impl std::fmt::Debug for SourceDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceDb")
            .field("backend", &self.backend)
            .field("url", &redact(&self.url))
            .finish()
    }
}

/// `scheme://user:****@host/…`: for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            if userinfo.contains(':') {
                format!("{scheme}://{user}:****@{host}")
            } else {
                format!("{scheme}://{user}@{host}")
            }
        }
        None => url.to_string(),
    }
}

/// notary-signer's database and the alias its new keys were sealed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerSource {
    pub db: SourceDb,
    pub default_alias: Option<String>,
}

fn read_json(path: &Path) -> Result<serde_json::Value, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| ConfigError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// `storage.<key>`, or notary's environment override for it
/// (`<prefix>_STORAGE_<KEY>`, PROTOCOL.md §7).
fn storage_value(
    json: &serde_json::Value,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
    prefix: &str,
) -> Option<String> {
    env(&format!("{prefix}_STORAGE_{}", key.to_ascii_uppercase())).or_else(|| {
        json.get("storage")
            .and_then(|s| s.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    })
}

fn source_db(
    path: &Path,
    json: &serde_json::Value,
    env: &dyn Fn(&str) -> Option<String>,
    prefix: &str,
) -> Result<SourceDb, ConfigError> {
    let backend = storage_value(json, "backend", env, prefix).ok_or(ConfigError::Missing {
        path: path.to_path_buf(),
        key: "storage.backend",
    })?;
    let url = storage_value(json, "db_url", env, prefix).ok_or(ConfigError::Missing {
        path: path.to_path_buf(),
        key: "storage.db_url",
    })?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    match backend.as_str() {
        "postgres" => Ok(SourceDb {
            backend: SourceBackend::Postgres,
            url: postgres_url(&url, base).ok_or(ConfigError::Url {
                path: path.to_path_buf(),
                backend: "postgres",
            })?,
        }),
        "mysql" => Ok(SourceDb {
            backend: SourceBackend::Mysql,
            url: mysql_url(&url).ok_or(ConfigError::Url {
                path: path.to_path_buf(),
                backend: "mysql",
            })?,
        }),
        _ => Err(ConfigError::Backend {
            path: path.to_path_buf(),
            backend,
        }),
    }
}

/// notary-server's configuration (`--from-notary-server`); `env` looks up
/// environment variables (`NOTARY_SERVER_STORAGE_DB_URL` overrides).
pub fn read_server_config(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SourceDb, ConfigError> {
    let json = read_json(path)?;
    source_db(path, &json, env, "NOTARY_SERVER")
}

/// notary-signer's configuration (`--from-notary-signer`).
pub fn read_signer_config(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SignerSource, ConfigError> {
    let json = read_json(path)?;
    Ok(SignerSource {
        db: source_db(path, &json, env, "NOTARY_SIGNER")?,
        default_alias: storage_value(&json, "default_alias", env, "NOTARY_SIGNER"),
    })
}

/// The environment variable notary-signer reads the passphrase of `alias`
/// from (PROTOCOL.md §5).
pub fn passphrase_variable(alias: &str) -> String {
    format!("NOTARY_SIGNER_{}", alias.to_ascii_uppercase())
}

/// A `postgres://` / `postgresql://` URL with the file parameters
/// (`sslrootcert`, `sslcert`, `sslkey`) made absolute against `base`.
fn postgres_url(url: &str, base: &Path) -> Option<String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return None;
    }
    let Some((head, query)) = url.split_once('?') else {
        return Some(url.to_string());
    };
    let params: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value))
                if matches!(name, "sslrootcert" | "sslcert" | "sslkey")
                    && Path::new(value).is_relative() =>
            {
                format!("{name}={}", base.join(value).display())
            }
            _ => pair.to_string(),
        })
        .collect();
    Some(format!("{head}?{}", params.join("&")))
}

/// Go's MySQL DSN (`user:pass@tcp(host:port)/db?parseTime=true`, or
/// `unix(/path)`) as a `mysql://` URL. Go-only parameters (`parseTime`,
/// `charset`…) are dropped: the reader decodes times itself.
fn mysql_url(dsn: &str) -> Option<String> {
    if dsn.starts_with("mysql://") {
        return Some(dsn.to_string());
    }
    let (userinfo, rest) = dsn.rsplit_once('@').unwrap_or(("", dsn));
    let (address, path) = rest.split_once(")/")?;
    let database = path.split('?').next().unwrap_or_default();
    if database.is_empty() {
        return None;
    }
    let creds = if userinfo.is_empty() {
        String::new()
    } else {
        format!("{userinfo}@")
    };
    if let Some(hostport) = address.strip_prefix("tcp(") {
        return Some(format!("mysql://{creds}{hostport}/{database}"));
    }
    address
        .strip_prefix("unix(")
        .map(|socket| format!("mysql://{creds}localhost/{database}?socket={socket}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn mysql_dsns_become_urls() {
        assert_eq!(
            mysql_url("server@tcp(mysql:3306)/notaryserver?parseTime=True").as_deref(),
            Some("mysql://server@mysql:3306/notaryserver")
        );
        assert_eq!(
            mysql_url("signer:pw@tcp(127.0.0.1:3307)/notarysigner?parseTime=true").as_deref(),
            Some("mysql://signer:pw@127.0.0.1:3307/notarysigner")
        );
        assert_eq!(
            mysql_url("u@unix(/run/mysqld.sock)/db").as_deref(),
            Some("mysql://u@localhost/db?socket=/run/mysqld.sock")
        );
        assert_eq!(mysql_url("u@tcp(h:1)/"), None);
        assert_eq!(mysql_url("nonsense"), None);
    }

    #[test]
    fn server_and_signer_configs_are_read_as_notary_has_them() {
        let dir = tempfile::tempdir().unwrap();
        let server = write(
            dir.path(),
            "server.json",
            r#"{"server":{"http_addr":":4443"},"storage":{"backend":"postgres",
            "db_url":"postgres://server:pw@db:5432/notaryserver?sslmode=verify-ca&sslrootcert=certs/ca.pem"}}"#,
        );
        let db = read_server_config(&server, &no_env).unwrap();
        assert_eq!(db.backend, SourceBackend::Postgres);
        let ca = dir.path().join("certs/ca.pem");
        assert_eq!(
            db.url,
            format!(
                "postgres://server:pw@db:5432/notaryserver?sslmode=verify-ca&sslrootcert={}",
                ca.display()
            )
        );
        // The temporary folder's random name may hold "pw": look for the
        // password where a URL carries it.
        assert!(!format!("{db:?}").contains(":pw@"), "{db:?}");

        let signer = write(
            dir.path(),
            "signer.json",
            r#"{"storage":{"backend":"mysql","db_url":"signer@tcp(mysql:3306)/notarysigner?parseTime=True","default_alias":"passwordalias1"}}"#,
        );
        let source = read_signer_config(&signer, &no_env).unwrap();
        assert_eq!(source.db.backend, SourceBackend::Mysql);
        assert_eq!(source.db.url, "mysql://signer@mysql:3306/notarysigner");
        assert_eq!(source.default_alias.as_deref(), Some("passwordalias1"));

        let env = |name: &str| {
            (name == "NOTARY_SIGNER_STORAGE_DEFAULT_ALIAS").then(|| "other".to_string())
        };
        let source = read_signer_config(&signer, &env).unwrap();
        assert_eq!(source.default_alias.as_deref(), Some("other"));
        assert_eq!(
            passphrase_variable("passwordalias1"),
            "NOTARY_SIGNER_PASSWORDALIAS1"
        );
    }

    #[test]
    fn unusable_configs_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let memory = write(
            dir.path(),
            "m.json",
            r#"{"storage":{"backend":"memory","db_url":"x"}}"#,
        );
        assert!(matches!(
            read_server_config(&memory, &no_env),
            Err(ConfigError::Backend { backend, .. }) if backend == "memory"
        ));
        let none = write(dir.path(), "n.json", r#"{"server":{}}"#);
        assert!(matches!(
            read_server_config(&none, &no_env),
            Err(ConfigError::Missing {
                key: "storage.backend",
                ..
            })
        ));
        let bad = write(
            dir.path(),
            "b.json",
            r#"{"storage":{"backend":"postgres","db_url":"mysql://x"}}"#,
        );
        assert!(matches!(
            read_server_config(&bad, &no_env),
            Err(ConfigError::Url {
                backend: "postgres",
                ..
            })
        ));
        assert!(matches!(
            read_server_config(&dir.path().join("missing.json"), &no_env),
            Err(ConfigError::Read { .. })
        ));
    }
}

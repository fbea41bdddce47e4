//! The `notarium` command: `serve` runs the trust server; `default-config`
//! prints an annotated configuration.

mod expiring;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use notarium::app::{Migrations, OpenedStore, Started, chain, run};
use notarium::config::{Config, ConfigOverrides, LogFormat, LogLevel};
use notarium::store::Store;

mod verify_cmd;

#[derive(Parser)]
#[command(
    name = "notarium",
    version,
    about = "A Notary-compatible content trust server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the trust server (defaults: https://127.0.0.1:4443, SQLite in
    /// data/, development TLS certificates in keys/).
    Serve(Box<ServeArgs>),
    /// Verify an image tag's signed digest against a notary-compatible
    /// trust server (exit 0 verified, 1 failed or policy not met, 2 usage,
    /// 3 not signed, 4 server unreachable or no usable answer).
    Verify(Box<verify_cmd::VerifyArgs>),
    /// Print an example configuration file (notary-server's JSON format).
    DefaultConfig,
    /// Run as notary-signer: its gRPC API over mutual TLS, from its
    /// configuration file and its `private_keys` table (PostgreSQL or
    /// MySQL/MariaDB), with passphrases from NOTARY_SIGNER_<ALIAS>.
    Signer {
        /// notary-signer's configuration file.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Log format: text (logfmt) or json (notary-signer's -logf).
        #[arg(long = "logf", value_name = "FORMAT")]
        log_format: Option<String>,
    },
    /// Apply the database migrations and exit (PostgreSQL: safe while other
    /// replicas start or serve; `serve` also runs them unless
    /// storage.migrate_on_start is false).
    Migrate {
        /// The server's configuration file (for its database).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// Database URL (overrides the configuration).
        #[arg(long)]
        db_url: Option<String>,
    },
    /// Copy a notary-server + notary-signer deployment (PostgreSQL or MySQL/MariaDB) into
    /// notarium's database: every repository's history, the changefeed,
    /// the server-held keys (re-sealed). Safe to run again.
    Import(Box<ImportArgs>),
    /// Copy the SQLite database to a new file while the server runs (one
    /// consistent snapshot; the copy is owner-only: it holds sealed keys).
    /// For PostgreSQL, use pg_dump (see the README).
    Backup {
        /// The file to write; it must not exist.
        dest: PathBuf,
        /// The server's configuration file (for its database).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// Database file or sqlite: URL (overrides the configuration).
        #[arg(long)]
        db_url: Option<String>,
    },
    /// Mark repositories immutable: their signed tags cannot be re-pointed
    /// or removed and their trust data cannot be deleted.
    Immutable {
        #[command(subcommand)]
        action: ImmutableAction,
        /// The server's configuration file (for its database).
        #[arg(long, short = 'c', global = true)]
        config: Option<PathBuf>,
        /// Database file or sqlite: URL (overrides the configuration).
        #[arg(long, global = true)]
        db_url: Option<String>,
    },
    /// List the client-signed roles (root, targets, delegations, a
    /// client-signed snapshot) expiring within a window, soonest first,
    /// with the keys that can re-sign them.
    Expiring(expiring::ExpiringArgs),
    /// Print the audit trail of a repository (GUN): every accepted publish,
    /// delete and key rotation, with when, who and which roles and
    /// versions, newest first.
    Audit {
        gun: String,
        /// At most this many records (1 to 1000).
        #[arg(long, default_value_t = notarium::repo::DEFAULT_AUDIT_PAGE)]
        limit: i64,
        /// Only records older than this record ID (to page back).
        #[arg(long)]
        before: Option<i64>,
        /// Print JSON (an array of records) instead of text.
        #[arg(long)]
        json: bool,
        /// The server's configuration file (for its database).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// Database file or sqlite: URL (overrides the configuration).
        #[arg(long)]
        db_url: Option<String>,
    },
    /// Ask a running server's health endpoint; exit 0 if it answers 200
    /// (for container health checks: the image has no curl).
    Health {
        /// Default: https://127.0.0.1:<port of NOTARIUM_HTTP_ADDR, else 4443>/_notary_server/health.
        #[arg(long)]
        url: Option<String>,
        /// CA to check the server's certificate with; without it only a
        /// loopback URL is probed, its certificate unchecked.
        #[arg(long)]
        cacert: Option<PathBuf>,
    },
}

/// `notarium import` arguments.
#[derive(clap::Args)]
struct ImportArgs {
    /// notary-server's configuration file (its storage section is read).
    #[arg(long, value_name = "SERVER.json")]
    from_notary_server: PathBuf,
    /// notary-signer's configuration file; key passphrases come from
    /// NOTARY_SIGNER_<ALIAS> as notary-signer reads them.
    #[arg(long, value_name = "SIGNER.json")]
    from_notary_signer: PathBuf,
    /// notarium's configuration file (for its database and key
    /// passphrase); without it, the built-in defaults.
    #[arg(long, short = 'c', value_name = "NOTARIUM_CONFIG")]
    config: Option<PathBuf>,
    /// Read and verify everything, write nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Subcommand)]
enum ImmutableAction {
    /// Make a repository (GUN) immutable.
    Set { gun: String },
    /// Make a repository mutable again.
    Clear { gun: String },
    /// List the repositories marked immutable in the database.
    List,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// A notary-server JSON (or TOML) configuration file.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Address to listen on (host:port, or :port for all interfaces).
    #[arg(long)]
    http_addr: Option<String>,
    /// TLS certificate (PEM); with --tls-key-file.
    #[arg(long)]
    tls_cert_file: Option<PathBuf>,
    /// TLS private key (PEM); with --tls-cert-file.
    #[arg(long)]
    tls_key_file: Option<PathBuf>,
    /// Storage backend: sqlite or postgres.
    #[arg(long)]
    storage_backend: Option<String>,
    /// Database file, sqlite: URL or postgres:// URL.
    #[arg(long)]
    db_url: Option<String>,
    /// Log level: trace, debug, info, warn, error.
    #[arg(long)]
    log_level: Option<String>,
    /// Log format: text (logfmt) or json (notary-server's -logf).
    #[arg(long = "logf", value_name = "FORMAT")]
    log_format: Option<String>,
    /// Algorithm for server-held keys: ecdsa or ed25519.
    #[arg(long)]
    key_algorithm: Option<String>,
    /// Folder for development certificates and the generated passphrase.
    #[arg(long)]
    keys_dir: Option<PathBuf>,
    /// Largest accepted upload, in bytes.
    #[arg(long)]
    max_body_bytes: Option<u64>,
    /// Authentication type: token (Docker registry token auth).
    #[arg(long)]
    auth_type: Option<String>,
    /// Token auth: where clients get tokens.
    #[arg(long)]
    auth_realm: Option<String>,
    /// Token auth: the token audience (service) this server accepts.
    #[arg(long)]
    auth_service: Option<String>,
    /// Token auth: the token issuer this server accepts.
    #[arg(long)]
    auth_issuer: Option<String>,
    /// Token auth: PEM certificates the token signing keys chain to.
    #[arg(long)]
    auth_rootcertbundle: Option<PathBuf>,
    /// Token auth: challenge with https://<request host>/auth/token as realm.
    #[arg(long)]
    auth_autoredirect: bool,
    /// Allow listening on a non-loopback address without authentication.
    #[arg(long)]
    insecure_no_auth: bool,
}

fn main() -> ExitCode {
    // notary-server's and notary-signer's Go flags are spelled with one
    // dash (`-config FILE`, `-logf json`, `-logf=json`).
    let cli = Cli::parse_from(std::env::args_os().map(|arg| {
        let Some(text) = arg.to_str() else {
            return arg;
        };
        for flag in ["config", "logf"] {
            if let Some(rest) = text.strip_prefix('-').and_then(|a| a.strip_prefix(flag))
                && (rest.is_empty() || rest.starts_with('='))
            {
                return format!("--{flag}{rest}").into();
            }
        }
        arg
    }));
    match cli.command {
        Command::DefaultConfig => {
            println!("{}", notarium::config::example_json());
            ExitCode::SUCCESS
        }
        Command::Serve(args) => serve(*args),
        Command::Verify(args) => verify_cmd::verify(&args),
        Command::Signer { config, log_format } => signer(&config, log_format.as_deref()),
        Command::Import(args) => import(&args),
        Command::Immutable {
            action,
            config,
            db_url,
        } => immutable(action, config.as_deref(), db_url),
        Command::Audit {
            gun,
            limit,
            before,
            json,
            config,
            db_url,
        } => admin(
            config.as_deref(),
            db_url,
            Migrations::Skip,
            Admin::Audit {
                gun,
                limit,
                before,
                json,
            },
        ),
        Command::Backup {
            dest,
            config,
            db_url,
        } => admin(
            config.as_deref(),
            db_url,
            Migrations::Skip,
            Admin::Backup(dest),
        ),
        Command::Expiring(args) => {
            let config = args.config.clone();
            admin(
                config.as_deref(),
                args.db_url.clone(),
                Migrations::Skip,
                Admin::Expiring(args),
            )
        }
        Command::Health { url, cacert } => health(url.as_deref(), cacert.as_deref()),
        Command::Migrate { config, db_url } => {
            admin(config.as_deref(), db_url, Migrations::Run, Admin::Migrated)
        }
    }
}

/// Logs to stderr at `level` (`NOTARIUM_LOG` overrides it with a filter).
fn init_logging(level: LogLevel, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NOTARIUM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.as_str()));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // One object per line; the request's fields (method, path, GUN,
        // subject, operation, status) sit in "span", the event's at the top.
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

/// `notarium signer`: serves until interrupted.
fn signer(path: &Path, log_format: Option<&str>) -> ExitCode {
    use notarium::signer::service::{PassphraseOf, SignerConfig, serve};
    let env = |name: &str| std::env::var(name).ok();
    let config = match SignerConfig::load(path, &env) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("notarium signer: {}", chain(&error));
            return ExitCode::FAILURE;
        }
    };
    let runtime = match runtime(Runtime::MultiThread) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let passphrase_of: PassphraseOf = std::sync::Arc::new(|alias: &str| {
        std::env::var(notarium::store::import::passphrase_variable(alias)).ok()
    });
    let format = log_format
        .map(str::to_string)
        .or_else(|| env(notarium::config::ENV_LOGGING_FORMAT));
    let format = match format.as_deref().map(|name| (name, LogFormat::parse(name))) {
        None => LogFormat::Text,
        Some((_, Some(format))) => format,
        Some((name, None)) => {
            eprintln!(
                "notarium signer: log format {name:?} is not one of {}",
                LogFormat::NAMES
            );
            return ExitCode::from(2);
        }
    };
    let level = match config
        .log_level
        .as_deref()
        .map(|name| (name, LogLevel::parse(name)))
    {
        None => LogLevel::Info,
        Some((_, Some(level))) => level,
        Some((name, None)) => {
            eprintln!(
                "notarium signer: {}: logging.level {name:?} is not one of {}",
                path.display(),
                LogLevel::NAMES
            );
            return ExitCode::from(2);
        }
    };
    init_logging(level, format);
    // As `serve`: a JSON log stream stays JSON only.
    let json = format == LogFormat::Json;
    if json {
        tracing::info!(address = %config.grpc_addr, "notarium signer listening");
    } else {
        println!("notarium signer listening on {}", config.grpc_addr);
    }
    match runtime.block_on(serve(&config, passphrase_of, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if json => {
            tracing::error!(error = %chain(&error), "notarium signer stopped");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("notarium signer: {}", chain(&error));
            ExitCode::FAILURE
        }
    }
}

/// An admin subcommand, run against whichever backend is configured.
enum Admin {
    Audit {
        gun: String,
        limit: i64,
        before: Option<i64>,
        json: bool,
    },
    Immutable(ImmutableAction),
    Expiring(expiring::ExpiringArgs),
    /// Opening the store ran the migrations; only report.
    Migrated,
    /// SQLite only: see [`Admin::backup`].
    Backup(PathBuf),
}

impl Admin {
    async fn run<S: Store>(self, store: &S) -> Result<String, String> {
        match self {
            Self::Audit {
                gun,
                limit,
                before,
                json,
            } => audit(store, &gun, limit, before, json).await,
            Self::Immutable(action) => immutable_action(store, action).await,
            Self::Expiring(args) => expiring::list(store, &args).await,
            Self::Migrated => Ok("the database schema is up to date".to_string()),
            Self::Backup(_) => Err(
                "notarium backup copies a SQLite database; for PostgreSQL use pg_dump \
                 (see the README's PostgreSQL section)"
                    .to_string(),
            ),
        }
    }

    /// The SQLite backup; every other command runs as on any backend.
    async fn run_sqlite(self, store: &notarium::store::SqliteStore) -> Result<String, String> {
        let Self::Backup(dest) = self else {
            return self.run(store).await;
        };
        if dest.exists() {
            return Err(format!(
                "{} already exists: a backup never overwrites a file",
                dest.display()
            ));
        }
        store
            .backup_to(&dest)
            .await
            .map_err(|e| format!("cannot back up to {}: {}", dest.display(), chain(&e)))?;
        Ok(format!("backed up to {}", dest.display()))
    }
}

/// `notarium audit`: the records, newest first, as text or JSON.
async fn audit<S: Store>(
    store: &S,
    gun: &str,
    limit: i64,
    before: Option<i64>,
    json: bool,
) -> Result<String, String> {
    notarium::repo::check_gun(gun).map_err(|e| e.to_string())?;
    if !(1..=notarium::store::MAX_AUDIT_PAGE).contains(&limit) {
        return Err(format!(
            "--limit {limit}: expected 1 to {}",
            notarium::store::MAX_AUDIT_PAGE
        ));
    }
    let records = store
        .audit(gun, limit, before)
        .await
        .map_err(|e| e.to_string())?;
    if json {
        return serde_json::to_string_pretty(&records).map_err(|e| e.to_string());
    }
    if records.is_empty() {
        return Ok(format!("no audit records for {gun}"));
    }
    let lines: Vec<String> = records
        .iter()
        .map(|record| {
            let when = record
                .created_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let roles: Vec<String> = record
                .roles
                .iter()
                .map(|r| match record.action {
                    notarium::store::AuditAction::RotateKey => r.role.clone(),
                    _ => format!("{} v{}", r.role, r.version),
                })
                .collect();
            let mut line = format!(
                "#{:<6} {when}  {:<10}  {:<20}  {}",
                record.id,
                record.action.as_str(),
                record.subject,
                roles.join(", ")
            );
            if !record.key_ids.is_empty() {
                let label = match record.action {
                    notarium::store::AuditAction::Delete => "retired keys",
                    _ => "key",
                };
                line.push_str(&format!("  ({label} {})", record.key_ids.join(", ")));
            }
            line
        })
        .collect();
    Ok(lines.join("\n"))
}

fn immutable(action: ImmutableAction, config: Option<&Path>, db_url: Option<String>) -> ExitCode {
    admin(config, db_url, Migrations::Skip, Admin::Immutable(action))
}

async fn immutable_action<S: Store>(store: &S, action: ImmutableAction) -> Result<String, String> {
    {
        match action {
            ImmutableAction::Set { gun } => {
                notarium::repo::check_gun(&gun).map_err(|e| e.to_string())?;
                let changed = store
                    .set_immutable(&gun, true)
                    .await
                    .map_err(|e| e.to_string())?;
                let already = if changed { "" } else { " (it already was)" };
                Ok(format!("{gun} is now immutable{already}"))
            }
            ImmutableAction::Clear { gun } => {
                let changed = store
                    .set_immutable(&gun, false)
                    .await
                    .map_err(|e| e.to_string())?;
                let already = if changed { "" } else { " (it was not marked)" };
                Ok(format!("{gun} is no longer marked immutable{already}"))
            }
            ImmutableAction::List => Ok(store
                .immutable_repositories()
                .await
                .map_err(|e| e.to_string())?
                .join("\n")),
        }
    }
}

/// Runs an admin command against the configured database and prints its
/// output.
fn admin(
    config: Option<&Path>,
    db_url: Option<String>,
    migrations: Migrations,
    command: Admin,
) -> ExitCode {
    let overrides = ConfigOverrides {
        db_url,
        ..ConfigOverrides::default()
    };
    let env = |name: &str| std::env::var(name).ok();
    let config = match Config::load(config, &env, overrides) {
        Ok((config, _)) => config,
        Err(error) => {
            eprintln!("notarium: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime(Runtime::CurrentThread) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        match notarium::app::open_store(&config, migrations).await? {
            OpenedStore::Sqlite(store) => command.run_sqlite(&store).await,
            OpenedStore::Postgres(store) => command.run(&store).await,
        }
    });
    match result {
        Ok(text) => {
            if !text.is_empty() {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("notarium: {error}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let overrides = ConfigOverrides {
        http_addr: args.http_addr,
        tls_cert_file: args.tls_cert_file,
        tls_key_file: args.tls_key_file,
        storage_backend: args.storage_backend,
        db_url: args.db_url,
        log_level: args.log_level,
        log_format: args.log_format,
        key_algorithm: args.key_algorithm,
        keys_dir: args.keys_dir,
        max_body_bytes: args.max_body_bytes,
        auth_type: args.auth_type,
        auth_realm: args.auth_realm,
        auth_service: args.auth_service,
        auth_issuer: args.auth_issuer,
        auth_rootcertbundle: args.auth_rootcertbundle,
        // A flag can only switch these on; the file or environment may too.
        auth_autoredirect: args.auth_autoredirect.then_some(true),
        insecure_no_auth: args.insecure_no_auth.then_some(true),
    };
    let env = |name: &str| std::env::var(name).ok();
    let (config, warnings) = match Config::load(args.config.as_deref(), &env, overrides) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("notarium: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.logging.level, config.logging.format);
    for warning in &warnings {
        tracing::warn!("configuration: {warning}");
    }
    let runtime = match runtime(Runtime::MultiThread) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    // A JSON log stream stays JSON only: the announcement and a fatal error
    // become log lines too (container runtimes mix stdout into the logs).
    let json = config.logging.format == LogFormat::Json;
    let on_start = |started: &Started| {
        if json {
            announce_json(started);
        } else {
            announce(started);
        }
    };
    let result = runtime.block_on(run(config, on_start, shutdown_signal()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if json => {
            tracing::error!(error = %error, "notarium stopped");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("notarium: {error}");
            ExitCode::FAILURE
        }
    }
}

/// [`announce`] as one log line.
fn announce_json(started: &Started) {
    match &started.dev_ca {
        Some(ca) => tracing::info!(url = %started.url, dev_ca = %ca.display(), "listening"),
        None => tracing::info!(url = %started.url, "listening"),
    }
}

fn health(url: Option<&str>, cacert: Option<&Path>) -> ExitCode {
    let http_addr = std::env::var(notarium::config::ENV_HTTP_ADDR).ok();
    let url = notarium::probe::target(url, http_addr.as_deref());
    let runtime = match runtime(Runtime::CurrentThread) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(notarium::probe::probe(&url, cacert)) {
        Ok(()) => {
            println!("healthy: {url}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("notarium: unhealthy: {error}");
            ExitCode::FAILURE
        }
    }
}

fn import(args: &ImportArgs) -> ExitCode {
    let env = |name: &str| std::env::var(name).ok();
    let config = match Config::load(args.config.as_deref(), &env, ConfigOverrides::default()) {
        Ok((config, _)) => config,
        Err(error) => {
            eprintln!("notarium: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    let sources = match (
        notarium::store::import::read_server_config(&args.from_notary_server, &env),
        notarium::store::import::read_signer_config(&args.from_notary_signer, &env),
    ) {
        (Ok(server), Ok(signer)) => notarium::app::ImportSources { server, signer },
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("notarium: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime(Runtime::MultiThread) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(notarium::app::import(
        &config,
        &sources,
        args.dry_run,
        &env,
        |line| println!("{line}"),
    ));
    match result {
        Ok(summary) => {
            let mode = if args.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            };
            println!("summary: {summary}{mode}");
            if summary.complete() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Err(error) => {
            eprintln!("notarium: import failed: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Tells the operator where the server is and how to point clients at it.
fn announce(started: &Started) {
    println!("notarium listening on {}", started.url);
    if let Some(ca) = &started.dev_ca {
        let ca = std::fs::canonicalize(ca).unwrap_or_else(|_| ca.clone());
        let host = started.url.trim_start_matches("https://");
        println!("development CA (trust it in clients): {}", ca.display());
        println!(
            "  notary: notary -s {} --tlscacert {} <command>",
            started.url,
            ca.display()
        );
        println!(
            "  docker: export DOCKER_CONTENT_TRUST=1 DOCKER_CONTENT_TRUST_SERVER={}",
            started.url
        );
        println!(
            "          mkdir -p ~/.docker/tls/{host} && cp {} ~/.docker/tls/{host}/ca.crt",
            ca.display()
        );
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut terminate) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = interrupt.await;
            return;
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutting down");
}

/// Which tokio runtime a subcommand runs on.
#[derive(Clone, Copy)]
enum Runtime {
    /// One-shot admin commands: no worker threads needed.
    CurrentThread,
    /// The server, and imports: requests and streams in parallel.
    MultiThread,
}

/// Builds the runtime, or says why not and gives the exit code.
fn runtime(kind: Runtime) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut builder = match kind {
        Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Runtime::MultiThread => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build().map_err(|error| {
        eprintln!("notarium: cannot start the async runtime: {error}");
        ExitCode::FAILURE
    })
}

//! `notarium verify`: the command-line face of [`notarium::client`].
//! Flags follow the notary CLI where one exists.

use std::path::PathBuf;
use std::process::ExitCode;

use notarium::client::{
    self, Anchor, Error, HttpSource, Options, Policy, TrustDir, Verified, Wanted, exit,
};
use notarium::policy::delegation_ca::TrustAnchors;
use notarium::tuf::encoding::{format_time, parse_time};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Human,
    Json,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The image: [registry/]repository[:tag][@sha256:digest]; the tag
    /// defaults to latest.
    image: String,
    /// The trust server (default: what docker uses for the image's
    /// registry).
    #[arg(long, short = 's')]
    server: Option<String>,
    /// CA certificate(s) (PEM) to trust for the server's TLS certificate.
    #[arg(long)]
    tlscacert: Option<PathBuf>,
    /// Trust cache: last verified root and versions per repository
    /// (default ~/.notarium/trust).
    #[arg(long, short = 'd')]
    trust_dir: Option<PathBuf>,
    /// Pin the root: it must be signed by the root key with this ID
    /// (repeatable; as in root.json or `notary key list`).
    #[arg(long, value_name = "ID")]
    root_key_id: Vec<String>,
    /// Pin the root: it must be signed by the key of this certificate (PEM).
    #[arg(long, value_name = "FILE")]
    root_cert: Option<PathBuf>,
    /// Pin the root: its certificates must be issued by this CA (PEM).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Without a pin, trust only a root already in the trust cache (no
    /// trust on first use; notary's disable_tofu).
    #[arg(long)]
    no_tofu: bool,
    /// The tag's digest must be signed by this role (repeatable, e.g.
    /// targets/releases).
    #[arg(long, value_name = "ROLE")]
    require_role: Vec<String>,
    /// With --require-role: at least this many of the roles (default all).
    #[arg(long, value_name = "K", requires = "require_role")]
    require_count: Option<usize>,
    /// The digest the tag must be signed as (sha256:<hex>).
    #[arg(long)]
    digest: Option<String>,
    /// human (one line) or json (one object).
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Human)]
    output: Output,
    /// Verify as of this time (RFC 3339) instead of now (testing).
    #[arg(long, hide = true)]
    now: Option<String>,
}

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path)
        .map_err(|e| Error::Usage(format!("cannot read {what} {}: {e}", path.display())))
}

fn anchor(args: &VerifyArgs) -> Result<Anchor, Error> {
    let given = usize::from(!args.root_key_id.is_empty())
        + usize::from(args.root_cert.is_some())
        + usize::from(args.ca.is_some());
    if given > 1 {
        return Err(Error::Usage(
            "give one of --root-key-id, --root-cert and --ca".to_string(),
        ));
    }
    if !args.root_key_id.is_empty() {
        return Ok(Anchor::KeyIds(args.root_key_id.clone()));
    }
    if let Some(path) = &args.root_cert {
        let ders: Vec<Vec<u8>> = notarium::tuf::pem::blocks(&read(path, "root certificate")?)
            .into_iter()
            .filter(|block| block.label == "CERTIFICATE")
            .map(|block| block.der)
            .collect();
        if ders.is_empty() {
            return Err(Error::Usage(format!(
                "{} holds no PEM CERTIFICATE",
                path.display()
            )));
        }
        return Ok(Anchor::Certificates(ders));
    }
    if let Some(path) = &args.ca {
        let anchors = TrustAnchors::from_pem(&read(path, "CA file")?)
            .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
        return Ok(Anchor::Ca(anchors));
    }
    Ok(if args.no_tofu {
        Anchor::CacheOnly
    } else {
        Anchor::Tofu
    })
}

fn run(args: &VerifyArgs) -> Result<Verified, Error> {
    let image = client::parse_reference(&args.image).map_err(Error::Usage)?;
    if let Some(digest) = &args.digest {
        if !client::reference::is_sha256_digest(digest) {
            return Err(Error::Usage(format!(
                "--digest {digest:?}: expected sha256: and 64 lowercase hex digits"
            )));
        }
    }
    if args
        .require_count
        .is_some_and(|k| k == 0 || k > args.require_role.len())
    {
        return Err(Error::Usage(format!(
            "--require-count must be between 1 and the number of --require-role ({})",
            args.require_role.len()
        )));
    }
    let now = match &args.now {
        Some(text) => parse_time(text).map_err(|e| Error::Usage(format!("--now: {e}")))?,
        None => time::OffsetDateTime::now_utc(),
    };
    let anchor = anchor(args)?;
    let server = args
        .server
        .clone()
        .unwrap_or_else(|| image.default_server());
    let ca = match &args.tlscacert {
        Some(path) => Some(read(path, "TLS CA file")?),
        None => None,
    };
    let source = HttpSource::new(&server, &image.gun, ca.as_deref()).map_err(Error::Usage)?;
    let trust_dir = match &args.trust_dir {
        Some(dir) => dir.clone(),
        None => TrustDir::default_path()
            .ok_or_else(|| Error::Usage("HOME is not set: give --trust-dir".to_string()))?,
    };
    let cache = TrustDir::new(trust_dir);
    let wanted = match (&image.tag, &image.digest) {
        (Some(tag), _) => Wanted::Tag(tag.clone()),
        (None, Some(digest)) => Wanted::Digest(digest.clone()),
        (None, None) => Wanted::Tag("latest".to_string()),
    };
    let options = Options {
        gun: image.gun.clone(),
        server,
        now,
        anchor,
    };
    let verified = client::verify(&source, Some(&cache), &options, &wanted)?;
    for warning in &verified.warnings {
        eprintln!("notarium verify: warning: {warning}");
    }
    // A reference with both tag and digest checks the digest too.
    let policy = Policy {
        roles: args.require_role.clone(),
        count: args.require_count,
        digest: args
            .digest
            .clone()
            .or(image.digest.filter(|_| image.tag.is_some())),
    };
    policy.check(&verified)?;
    Ok(verified)
}

fn json(verified: &Verified) -> serde_json::Value {
    let expires: serde_json::Map<String, serde_json::Value> = verified
        .expires
        .iter()
        .map(|(role, at)| (role.clone(), format_time(*at).into()))
        .collect();
    serde_json::json!({
        "gun": verified.gun,
        "tag": verified.tag,
        "digest": verified.digest,
        "size": verified.size,
        "signed_by": verified.signed_by,
        "disagreeing": verified.disagreeing,
        "expires": expires,
        "warnings": verified.warnings,
    })
}

pub fn verify(args: &VerifyArgs) -> ExitCode {
    match run(args) {
        Ok(verified) => {
            match args.output {
                Output::Json => println!("{}", json(&verified)),
                Output::Human => {
                    let soonest = verified
                        .expires
                        .iter()
                        .min_by_key(|(_, at)| **at)
                        .map(|(role, at)| {
                            format!("; {role} expires first, at {}", format_time(*at))
                        })
                        .unwrap_or_default();
                    println!(
                        "verified {}:{} {} ({} bytes) signed by {}{soonest}",
                        verified.gun,
                        verified.tag,
                        verified.digest,
                        verified.size,
                        verified.signed_by.join(", "),
                    );
                }
            }
            ExitCode::from(exit::VERIFIED)
        }
        Err(error) => {
            let code = error.exit_code();
            eprintln!("notarium verify: {error}");
            if args.output == Output::Json {
                println!(
                    "{}",
                    serde_json::json!({"error": error.to_string(), "exit_code": code})
                );
            }
            ExitCode::from(code)
        }
    }
}

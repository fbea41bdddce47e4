//! TLS for the server: loading a configured certificate into rustls, and, when none is configured,
//! a development CA and server certificate generated once into the keys folder (plus the
//! generated key-sealing passphrase), so `notarium serve` works with no configuration at all.
//!
//! Files in `keys_dir`:
//! - `dev-ca.crt`, `dev-ca.key`: development CA (ECDSA P-256, 10 years). Clients trust `dev-ca.crt`.
//! - `server.crt`, `server.key`: leaf signed by it (1 year; SANs localhost, 127.0.0.1, ::1, the
//!   machine's host name and any extra names), reissued when it nears expiry or lacks a name.
//! - `passphrase`: 32 random bytes, base64, for sealing server-held keys when
//!   `NOTARIUM_KEY_PASSPHRASE` is not set.
//!
//! Private files are created with mode 0600 from the start (never chmod-ed afterwards, so there is
//! no window in which they are readable by others).

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use der::{Decode as _, Encode as _};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use thiserror::Error;
use zeroize::Zeroizing;

pub const CA_CERT_FILE: &str = "dev-ca.crt";
pub const CA_KEY_FILE: &str = "dev-ca.key";
pub const SERVER_CERT_FILE: &str = "server.crt";
pub const SERVER_KEY_FILE: &str = "server.key";
pub const PASSPHRASE_FILE: &str = "passphrase";

const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Renew this long before expiry, so a server restarted now keeps working for a while.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Backdate `notBefore` a little for clients whose clock is behind.
const BACKDATE: Duration = Duration::from_secs(60 * 60);
/// Fixed so that a later run can sign with the stored CA key (the issuer name must match the CA's
/// subject byte for byte, and rcgen cannot read it back without x509-parser).
const CA_COMMON_NAME: &str = "notarium development CA";
const ORGANIZATION: &str = "notarium (development only)";
/// PEM and passphrase files are small; refuse to read anything huge by mistake.
const MAX_FILE_BYTES: u64 = 1024 * 1024;
const PASSPHRASE_BYTES: usize = 32;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{}: file not found", path.display())]
    MissingFile { path: PathBuf },

    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot create directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{} is larger than {limit} bytes", path.display())]
    TooLarge { path: PathBuf, limit: u64 },

    #[error("{} is not valid PEM: {source}", path.display())]
    CertificatePem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },

    #[error("{} contains no PEM CERTIFICATE block", path.display())]
    NoCertificate { path: PathBuf },

    /// Deliberately without the parser's detail: it could quote bytes of the key.
    #[error(
        "{} contains no readable PEM private key (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)",
        path.display()
    )]
    NoPrivateKey { path: PathBuf },

    #[error("the private key in {} does not match the certificate in {}", key_path.display(), cert_path.display())]
    KeyMismatch {
        cert_path: PathBuf,
        key_path: PathBuf,
    },

    #[error("cannot use certificate {} with key {}: {source}", cert_path.display(), key_path.display())]
    InvalidCertificateOrKey {
        cert_path: PathBuf,
        key_path: PathBuf,
        #[source]
        source: rustls::Error,
    },

    #[error("TLS setup failed: {source}")]
    Rustls {
        #[source]
        source: rustls::Error,
    },

    #[error(
        "{} exists but {} does not; restore it, or delete both to generate a new development CA",
        present.display(),
        missing.display()
    )]
    DevCaIncomplete { present: PathBuf, missing: PathBuf },

    #[error(
        "development CA {} cannot be used: {reason}; delete it and its key to generate a new one",
        path.display()
    )]
    DevCaUnusable { path: PathBuf, reason: &'static str },

    #[error("cannot generate the {what}: {source}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },

    #[error("invalid subject alternative name {name:?}: expected a DNS name or an IP address")]
    InvalidSubjectAltName { name: String },

    #[error("{} is empty or not UTF-8 text", path.display())]
    BadPassphraseFile { path: PathBuf },

    #[error("the system random number generator failed")]
    Random,
}

/// Paths of the development certificates, and what this call created (for a log line telling the
/// operator which CA file to give to clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevTls {
    pub ca_cert_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub created_ca: bool,
    pub created_leaf: bool,
}

/// Ensures a development CA and a server certificate exist in `keys_dir`, creating or renewing
/// them as needed (see the module docs). `extra_sans` are further DNS names or IP addresses.
pub fn ensure_dev_certificates(keys_dir: &Path, extra_sans: &[String]) -> Result<DevTls, TlsError> {
    ensure_dev_certificates_at(
        keys_dir,
        extra_sans,
        machine_hostname().as_deref(),
        SystemTime::now(),
    )
}

/// The machine's host name from the kernel, if it is usable as a DNS name in a certificate.
pub fn machine_hostname() -> Option<String> {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = raw.trim().to_ascii_lowercase();
    match ServerName::try_from(name.as_str()) {
        Ok(ServerName::DnsName(_)) => Some(name),
        _ => None,
    }
}

/// A name the leaf must be valid for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SubjectName {
    Dns(String),
    Ip(IpAddr),
}

impl SubjectName {
    fn parse(s: &str) -> Option<Self> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Some(Self::Ip(ip));
        }
        let lower = s.to_ascii_lowercase();
        match ServerName::try_from(lower.as_str()) {
            Ok(ServerName::DnsName(_)) => Some(Self::Dns(lower)),
            _ => None,
        }
    }

    fn server_name(&self) -> Option<ServerName<'static>> {
        match self {
            Self::Ip(ip) => Some(ServerName::from(*ip)),
            Self::Dns(d) => ServerName::try_from(d.clone()).ok(),
        }
    }

    fn san(&self) -> Result<SanType, TlsError> {
        match self {
            Self::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            Self::Dns(d) => d
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|_| TlsError::InvalidSubjectAltName { name: d.clone() }),
        }
    }
}

fn required_names(
    hostname: Option<&str>,
    extra_sans: &[String],
) -> Result<Vec<SubjectName>, TlsError> {
    let mut names = Vec::new();
    let builtin = ["localhost", "127.0.0.1", "::1"];
    for s in builtin.iter().copied().chain(hostname) {
        if let Some(n) = SubjectName::parse(s) {
            names.push(n);
        }
    }
    for s in extra_sans {
        let n = SubjectName::parse(s.trim())
            .ok_or_else(|| TlsError::InvalidSubjectAltName { name: s.clone() })?;
        names.push(n);
    }
    let mut unique = Vec::with_capacity(names.len());
    for n in names {
        if !unique.contains(&n) {
            unique.push(n);
        }
    }
    Ok(unique)
}

fn ensure_dev_certificates_at(
    keys_dir: &Path,
    extra_sans: &[String],
    hostname: Option<&str>,
    now: SystemTime,
) -> Result<DevTls, TlsError> {
    let names = required_names(hostname, extra_sans)?;
    create_private_dir(keys_dir)?;
    let ca_cert_path = keys_dir.join(CA_CERT_FILE);
    let ca_key_path = keys_dir.join(CA_KEY_FILE);
    let cert_path = keys_dir.join(SERVER_CERT_FILE);
    let key_path = keys_dir.join(SERVER_KEY_FILE);

    let (ca_key, ca_der, created_ca) = load_or_create_ca(&ca_cert_path, &ca_key_path, now)?;

    let reuse = !created_ca && leaf_is_current(&ca_der, &cert_path, &key_path, &names, now);
    if !reuse {
        let (leaf_pem, leaf_key_pem, leaf_der) = issue_leaf(&ca_key, &names, now)?;
        // Check before writing: a CA from an older or foreign tool would sign under a different
        // issuer name, and every client would then reject the leaf.
        if !verifies_for_all(&ca_der, &leaf_der, &names, now) {
            return Err(TlsError::DevCaUnusable {
                path: ca_cert_path,
                reason: "a certificate signed with its key does not verify against it",
            });
        }
        // Key first: a crash in between leaves a cert/key mismatch, which the next start repairs.
        write_file(&key_path, leaf_key_pem.as_bytes(), 0o600, Replace::Yes)?;
        write_file(&cert_path, leaf_pem.as_bytes(), 0o644, Replace::Yes)?;
    }
    Ok(DevTls {
        ca_cert_path,
        cert_path,
        key_path,
        created_ca,
        created_leaf: !reuse,
    })
}

fn ca_params(now: SystemTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    params.distinguished_name = dn;
    // Path length 0: the CA may sign leaves only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + CA_VALIDITY).into();
    params
}

fn generate_key(what: &'static str) -> Result<KeyPair, TlsError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|source| TlsError::Generate { what, source })
}

/// Returns the CA key, the CA certificate and whether it was created now.
fn load_or_create_ca(
    cert_path: &Path,
    key_path: &Path,
    now: SystemTime,
) -> Result<(KeyPair, CertificateDer<'static>, bool), TlsError> {
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => {
            if let Some((key, der)) = load_ca(cert_path, key_path, now)? {
                return Ok((key, der, false));
            }
            // Expired or about to: clients must re-trust the new CA anyway, so replace it.
        }
        (true, false) => {
            return Err(TlsError::DevCaIncomplete {
                present: cert_path.to_path_buf(),
                missing: key_path.to_path_buf(),
            });
        }
        (false, true) => {
            return Err(TlsError::DevCaIncomplete {
                present: key_path.to_path_buf(),
                missing: cert_path.to_path_buf(),
            });
        }
        (false, false) => {}
    }
    let key = generate_key("development CA key")?;
    let cert = ca_params(now)
        .self_signed(&key)
        .map_err(|source| TlsError::Generate {
            what: "development CA certificate",
            source,
        })?;
    let key_pem = Zeroizing::new(key.serialize_pem());
    write_file(key_path, key_pem.as_bytes(), 0o600, Replace::Yes)?;
    write_file(cert_path, cert.pem().as_bytes(), 0o644, Replace::Yes)?;
    Ok((key, cert.der().clone(), true))
}

/// `None` when the CA is near expiry. Errors when the files are not a usable pair, rather than
/// silently replacing a CA that clients may already trust.
fn load_ca(
    cert_path: &Path,
    key_path: &Path,
    now: SystemTime,
) -> Result<Option<(KeyPair, CertificateDer<'static>)>, TlsError> {
    let unusable = |reason| TlsError::DevCaUnusable {
        path: cert_path.to_path_buf(),
        reason,
    };
    let key_pem = read_private_text(key_path)?;
    let key = KeyPair::from_pem(&key_pem).map_err(|_| TlsError::NoPrivateKey {
        path: key_path.to_path_buf(),
    })?;
    let der = read_certificates(cert_path)?
        .into_iter()
        .next()
        .ok_or_else(|| TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        })?;
    let cert = x509_cert::Certificate::from_der(&der)
        .map_err(|_| unusable("it is not a valid X.509 certificate"))?;
    let tbs = cert.tbs_certificate();
    let spki = tbs
        .subject_public_key_info()
        .to_der()
        .map_err(|_| unusable("its public key cannot be encoded"))?;
    if spki != rcgen::PublicKeyData::subject_public_key_info(&key) {
        return Err(unusable("its key file holds a different key"));
    }
    let not_after = tbs.validity().not_after.to_system_time();
    if not_after < now + RENEW_BEFORE {
        return Ok(None);
    }
    Ok(Some((key, der)))
}

/// PEM of the leaf, PEM of its key (zeroized on drop), DER of the leaf.
fn issue_leaf(
    ca_key: &KeyPair,
    names: &[SubjectName],
    now: SystemTime,
) -> Result<(String, Zeroizing<String>, CertificateDer<'static>), TlsError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "notarium development server");
    dn.push(DnType::OrganizationName, ORGANIZATION);
    params.distinguished_name = dn;
    params.subject_alt_names = names
        .iter()
        .map(SubjectName::san)
        .collect::<Result<_, _>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + LEAF_VALIDITY).into();

    let key = generate_key("server key")?;
    let issuer = Issuer::new(ca_params(now), ca_key);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|source| TlsError::Generate {
            what: "server certificate",
            source,
        })?;
    Ok((
        cert.pem(),
        Zeroizing::new(key.serialize_pem()),
        cert.der().clone(),
    ))
}

/// Whether the existing leaf can be kept: present, matching its key, chaining to the CA, valid for
/// every required name now and still in `RENEW_BEFORE`. Any doubt means reissue: the leaf is ours
/// and cheap to replace.
fn leaf_is_current(
    ca_der: &CertificateDer<'static>,
    cert_path: &Path,
    key_path: &Path,
    names: &[SubjectName],
    now: SystemTime,
) -> bool {
    let Ok(certs) = read_certificates(cert_path) else {
        return false;
    };
    let Some(leaf) = certs.into_iter().next() else {
        return false;
    };
    let Ok(key_pem) = read_private_text(key_path) else {
        return false;
    };
    let Ok(key) = KeyPair::from_pem(&key_pem) else {
        return false;
    };
    let Ok(cert) = x509_cert::Certificate::from_der(&leaf) else {
        return false;
    };
    let Ok(spki) = cert.tbs_certificate().subject_public_key_info().to_der() else {
        return false;
    };
    spki == rcgen::PublicKeyData::subject_public_key_info(&key)
        && verifies_for_all(ca_der, &leaf, names, now)
        && verifies_for_all(ca_der, &leaf, names, now + RENEW_BEFORE)
}

/// Verifies the leaf as a TLS client would (webpki: signature, validity, EKU serverAuth, name).
fn verifies_for_all(
    ca_der: &CertificateDer<'static>,
    leaf: &CertificateDer<'static>,
    names: &[SubjectName],
    at: SystemTime,
) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    if roots.add(ca_der.clone()).is_err() {
        return false;
    }
    let Ok(verifier) = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build() else {
        return false;
    };
    let Ok(since_epoch) = at.duration_since(UNIX_EPOCH) else {
        return false;
    };
    let at = UnixTime::since_unix_epoch(since_epoch);
    names.iter().all(|n| {
        n.server_name()
            .is_some_and(|sn| verifier.verify_server_cert(leaf, &[], &sn, &[], at).is_ok())
    })
}

/// The key-sealing passphrase from `keys_dir/passphrase`, generated on first use (32 random bytes,
/// base64). Used when `NOTARIUM_KEY_PASSPHRASE` is not set. Losing this file means losing the
/// server-held keys, so an existing file is never replaced.
pub fn ensure_passphrase(keys_dir: &Path) -> Result<Zeroizing<String>, TlsError> {
    let path = keys_dir.join(PASSPHRASE_FILE);
    if path.exists() {
        return read_passphrase(&path);
    }
    create_private_dir(keys_dir)?;
    let mut bytes = Zeroizing::new([0u8; PASSPHRASE_BYTES]);
    aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| TlsError::Random)?;
    let mut text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(bytes.as_ref()));
    text.push('\n');
    // Two servers starting at once: the loser reads the winner's file instead of overwriting it.
    write_file(&path, text.as_bytes(), 0o600, Replace::No)?;
    read_passphrase(&path)
}

fn read_passphrase(path: &Path) -> Result<Zeroizing<String>, TlsError> {
    let text = read_private_text(path)?;
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        return Err(TlsError::BadPassphraseFile {
            path: path.to_path_buf(),
        });
    }
    Ok(Zeroizing::new(trimmed.to_string()))
}

/// Builds the rustls server configuration (aws-lc-rs provider, safe default protocol versions,
/// ALPN h2 then http/1.1) from PEM files: the certificate chain, leaf first, and its private key.
pub fn load_rustls_config(
    cert_path: &Path,
    key_path: &Path,
) -> Result<rustls::ServerConfig, TlsError> {
    // Files are read here rather than through `pem_file_iter` so that a missing file, an
    // unreadable one and a malformed one get distinct errors naming the file.
    let certs = read_certificates(cert_path)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    }
    let key_pem = read_private_bytes(key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoPrivateKey {
        path: key_path.to_path_buf(),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls { source })?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|source| match source {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsError::KeyMismatch {
                    cert_path: cert_path.to_path_buf(),
                    key_path: key_path.to_path_buf(),
                }
            }
            source => TlsError::InvalidCertificateOrKey {
                cert_path: cert_path.to_path_buf(),
                key_path: key_path.to_path_buf(),
                source,
            },
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

// ------------------------------------------------------------------------------------------------
// Files
// ------------------------------------------------------------------------------------------------

fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| TlsError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, TlsError> {
    let file = fs::File::open(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => TlsError::MissingFile {
            path: path.to_path_buf(),
        },
        _ => TlsError::Read {
            path: path.to_path_buf(),
            source,
        },
    })?;
    let mut buf = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(TlsError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_FILE_BYTES,
        });
    }
    Ok(buf)
}

fn read_private_bytes(path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    read_bounded(path).map(Zeroizing::new)
}

fn read_private_text(path: &Path) -> Result<Zeroizing<String>, TlsError> {
    let bytes = read_private_bytes(path)?;
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(Zeroizing::new(s.to_string())),
        Err(_) => Err(TlsError::BadPassphraseFile {
            path: path.to_path_buf(),
        }),
    }
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_bounded(path)?;
    CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::CertificatePem {
            path: path.to_path_buf(),
            source,
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replace {
    Yes,
    /// Keep an existing file (another process got there first).
    No,
}

/// Writes `contents` to a temporary file created with `mode`, then moves it into place, so readers
/// never see a half-written file.
fn write_file(path: &Path, contents: &[u8], mode: u32, replace: Replace) -> Result<(), TlsError> {
    let write_err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(write_err(e)),
    }
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        match replace {
            Replace::Yes => fs::rename(&tmp, path),
            // A hard link fails if the target exists: an atomic "create if absent".
            Replace::No => match fs::hard_link(&tmp, path) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                other => other.and_then(|()| fs::remove_file(&tmp)),
            },
        }
    })();
    if result.is_err() || replace == Replace::No {
        // Best effort: the temporary file is garbage either way.
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// A full TLS handshake in memory: client trusting only the dev CA, connecting by `name`.
    fn handshake(
        server: rustls::ServerConfig,
        ca: &Path,
        name: &str,
    ) -> Result<Option<Vec<u8>>, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        for c in read_certificates(ca).unwrap() {
            roots.add(c).unwrap();
        }
        let mut client_cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        client_cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let server_name = ServerName::try_from(name.to_string()).unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client_cfg), server_name).unwrap();
        let mut server = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        for _ in 0..20 {
            let mut buf = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() {
                server.read_tls(&mut buf.as_slice()).unwrap();
                server.process_new_packets()?;
            }
            let mut buf = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() {
                client.read_tls(&mut buf.as_slice()).unwrap();
                client.process_new_packets()?;
            }
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(client.alpn_protocol().map(<[u8]>::to_vec));
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn first_run_creates_files_second_run_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let now = SystemTime::now();
        let first = ensure_dev_certificates_at(&keys, &[], Some("build-host"), now).unwrap();
        assert!(first.created_ca && first.created_leaf);
        assert_eq!(mode(&keys), 0o700);
        assert_eq!(mode(&keys.join(CA_KEY_FILE)), 0o600);
        assert_eq!(mode(&first.key_path), 0o600);
        // Certificates are public.
        assert_eq!(mode(&first.ca_cert_path) & 0o600, 0o600);
        let before: Vec<Vec<u8>> = [CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE]
            .iter()
            .map(|f| fs::read(keys.join(f)).unwrap())
            .collect();
        // No temporary files left behind.
        assert_eq!(fs::read_dir(&keys).unwrap().count(), 4);

        let second = ensure_dev_certificates_at(&keys, &[], Some("build-host"), now + DAY).unwrap();
        assert!(!second.created_ca && !second.created_leaf);
        let after: Vec<Vec<u8>> = [CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE]
            .iter()
            .map(|f| fs::read(keys.join(f)).unwrap())
            .collect();
        assert_eq!(before, after);
    }

    #[test]
    fn leaf_handshakes_for_every_name() {
        let dir = tempfile::tempdir().unwrap();
        let tls = ensure_dev_certificates_at(
            dir.path(),
            &["notary.example.com".into(), "10.1.2.3".into()],
            Some("build-host"),
            SystemTime::now(),
        )
        .unwrap();
        for name in [
            "localhost",
            "127.0.0.1",
            "::1",
            "build-host",
            "notary.example.com",
            "10.1.2.3",
        ] {
            let server = load_rustls_config(&tls.cert_path, &tls.key_path).unwrap();
            let alpn = handshake(server, &tls.ca_cert_path, name).unwrap();
            assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "{name}");
        }
        // A name not in the certificate is refused by the client.
        let server = load_rustls_config(&tls.cert_path, &tls.key_path).unwrap();
        let err = handshake(server, &tls.ca_cert_path, "other.example.com").unwrap_err();
        assert!(
            matches!(err, rustls::Error::InvalidCertificate(_)),
            "{err:?}"
        );
    }

    #[test]
    fn public_entry_point_uses_this_machine() {
        let dir = tempfile::tempdir().unwrap();
        let tls = ensure_dev_certificates(dir.path(), &[]).unwrap();
        let server = load_rustls_config(&tls.cert_path, &tls.key_path).unwrap();
        handshake(server, &tls.ca_cert_path, "localhost").unwrap();
        if let Some(host) = machine_hostname() {
            let server = load_rustls_config(&tls.cert_path, &tls.key_path).unwrap();
            handshake(server, &tls.ca_cert_path, &host).unwrap();
        }
    }

    #[test]
    fn leaf_is_reissued_when_expiring_or_missing_a_name() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let first = ensure_dev_certificates_at(dir.path(), &[], Some("old-host"), now).unwrap();
        let ca = fs::read(&first.ca_cert_path).unwrap();
        let leaf = fs::read(&first.cert_path).unwrap();

        // New host name: new leaf, same CA.
        let renamed = ensure_dev_certificates_at(dir.path(), &[], Some("new-host"), now).unwrap();
        assert!(!renamed.created_ca && renamed.created_leaf);
        assert_eq!(fs::read(&first.ca_cert_path).unwrap(), ca);
        let leaf2 = fs::read(&first.cert_path).unwrap();
        assert_ne!(leaf2, leaf);

        // Within the renewal window: reissued.
        let later = now + LEAF_VALIDITY - DAY;
        let renewed = ensure_dev_certificates_at(dir.path(), &[], Some("new-host"), later).unwrap();
        assert!(!renewed.created_ca && renewed.created_leaf);
        assert_ne!(fs::read(&first.cert_path).unwrap(), leaf2);
        assert_eq!(mode(&first.key_path), 0o600);

        // A leaf key that no longer matches: reissued too.
        let other = generate_key("test").unwrap();
        fs::write(&first.key_path, other.serialize_pem()).unwrap();
        let fixed = ensure_dev_certificates_at(dir.path(), &[], Some("new-host"), later).unwrap();
        assert!(fixed.created_leaf);
        load_rustls_config(&fixed.cert_path, &fixed.key_path).unwrap();
    }

    #[test]
    fn expired_ca_is_replaced_incomplete_ca_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let first = ensure_dev_certificates_at(dir.path(), &[], None, now).unwrap();
        let ca = fs::read(&first.ca_cert_path).unwrap();
        let later = now + CA_VALIDITY;
        let again = ensure_dev_certificates_at(dir.path(), &[], None, later).unwrap();
        assert!(again.created_ca && again.created_leaf);
        assert_ne!(fs::read(&first.ca_cert_path).unwrap(), ca);

        fs::remove_file(dir.path().join(CA_KEY_FILE)).unwrap();
        let err = ensure_dev_certificates_at(dir.path(), &[], None, later).unwrap_err();
        assert!(matches!(err, TlsError::DevCaIncomplete { .. }), "{err}");
        assert!(err.to_string().contains(CA_KEY_FILE), "{err}");
    }

    #[test]
    fn foreign_ca_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_dev_certificates_at(dir.path(), &[], None, SystemTime::now()).unwrap();
        let other = generate_key("test").unwrap();
        fs::write(dir.path().join(CA_KEY_FILE), other.serialize_pem()).unwrap();
        let err = ensure_dev_certificates_at(dir.path(), &[], None, SystemTime::now()).unwrap_err();
        assert!(matches!(err, TlsError::DevCaUnusable { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&first.ca_cert_path.display().to_string())
        );
    }

    #[test]
    fn invalid_extra_san() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            ensure_dev_certificates_at(dir.path(), &["not a name".into()], None, SystemTime::now())
                .unwrap_err();
        assert!(
            matches!(err, TlsError::InvalidSubjectAltName { .. }),
            "{err}"
        );
    }

    #[test]
    fn load_rustls_config_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = ensure_dev_certificates_at(&dir.path().join("a"), &[], None, SystemTime::now())
            .unwrap();
        let b = ensure_dev_certificates_at(&dir.path().join("b"), &[], None, SystemTime::now())
            .unwrap();

        let err = load_rustls_config(&a.cert_path, &b.key_path).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&a.cert_path.display().to_string()), "{msg}");
        assert!(msg.contains(&b.key_path.display().to_string()), "{msg}");

        let missing = dir.path().join("nope.crt");
        let err = load_rustls_config(&missing, &a.key_path).unwrap_err();
        assert!(matches!(err, TlsError::MissingFile { .. }), "{err}");
        assert!(err.to_string().contains("nope.crt"));

        let garbage = dir.path().join("garbage.pem");
        fs::write(&garbage, "hello").unwrap();
        let err = load_rustls_config(&garbage, &a.key_path).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        // The key file in the cert position holds no certificate either.
        let err = load_rustls_config(&a.key_path, &a.key_path).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        let err = load_rustls_config(&a.cert_path, &garbage).unwrap_err();
        assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err}");
        assert!(err.to_string().contains("garbage.pem"));

        let broken = dir.path().join("broken.crt");
        fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = load_rustls_config(&broken, &a.key_path).unwrap_err();
        assert!(matches!(err, TlsError::CertificatePem { .. }), "{err}");
    }

    #[test]
    fn passphrase_is_generated_once() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("k");
        let p1 = ensure_passphrase(&keys).unwrap();
        assert_eq!(mode(&keys.join(PASSPHRASE_FILE)), 0o600);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(p1.as_bytes())
            .unwrap();
        assert_eq!(raw.len(), PASSPHRASE_BYTES);
        let p2 = ensure_passphrase(&keys).unwrap();
        assert_eq!(*p1, *p2);
        assert_eq!(fs::read_dir(&keys).unwrap().count(), 1);

        // Racing creators keep the first file.
        write_file(&keys.join(PASSPHRASE_FILE), b"other\n", 0o600, Replace::No).unwrap();
        assert_eq!(*ensure_passphrase(&keys).unwrap(), *p1);

        fs::write(keys.join(PASSPHRASE_FILE), "\n").unwrap();
        assert!(matches!(
            ensure_passphrase(&keys),
            Err(TlsError::BadPassphraseFile { .. })
        ));
    }
}

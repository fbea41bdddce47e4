//! A Docker registry token server for tests (the `realm` of PROTOCOL.md §8),
//! and the PKI and JWS helpers behind it.
//!
//! * `Pki`: a test CA made with rcgen — a root (the `rootcertbundle` that
//!   notarium, notary-server and docker-registry trust), an intermediate and
//!   an ES256 leaf that signs tokens. Tokens carry `x5c` = [leaf,
//!   intermediate] and `kid` = the leaf's libtrust key ID, as registry token
//!   servers do.
//! * `TokenServer`: plain HTTP on 127.0.0.1:0, `GET /token?service=…&scope=…`
//!   with optional HTTP Basic credentials. Known users get, per requested
//!   scope, the actions their grants allow; anonymous requests get a token
//!   with no access (as registry token servers answer them); a wrong
//!   password gets 401. One server serves several `service` values (the
//!   registry's and the trust server's, as Harbor does).
//! * `Jws` / `Claims`: mint arbitrary, also malformed, tokens for tables of
//!   refusals (kid-only, jwk-only, `alg: none`, HS256, RS256, …).
//!
//! Use from a test file that also declares `mod common;`:
//! `#[path = "support/token_server.rs"] mod token_server;`
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData, SignatureAlgorithm,
};
use serde_json::{Value, json};

pub const ISSUER: &str = "notarium-test-token-issuer";
/// The `service` (token `aud`) of the trust server.
pub const NOTARY_SERVICE: &str = "notarium-test-notary";
/// The `service` of the registry.
pub const REGISTRY_SERVICE: &str = "notarium-test-registry";

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

// ---------------------------------------------------------------------------
// Keys and certificates
// ---------------------------------------------------------------------------

/// The JWS algorithms a key signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    P256,
    P384,
    P521,
    Rsa2048,
}

/// A private key usable both by rcgen (certificates) and aws-lc-rs (JWS).
pub struct Key {
    pub kind: KeyKind,
    pub rcgen: KeyPair,
}

impl Key {
    pub fn generate(kind: KeyKind) -> Self {
        let alg: &'static SignatureAlgorithm = match kind {
            KeyKind::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyKind::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyKind::P521 => &rcgen::PKCS_ECDSA_P521_SHA512,
            KeyKind::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        };
        Self {
            kind,
            rcgen: KeyPair::generate_for(alg).unwrap(),
        }
    }

    /// DER SubjectPublicKeyInfo.
    pub fn spki(&self) -> Vec<u8> {
        self.rcgen.subject_public_key_info()
    }

    /// The libtrust key ID (PROTOCOL.md §8.1): SHA-256 of the DER SPKI,
    /// first 240 bits, base32, 12 groups of 4 joined by `:`.
    pub fn libtrust_id(&self) -> String {
        libtrust_id(&self.spki())
    }

    /// The public key as a JWK (EC: crv/x/y; RSA: n/e).
    pub fn jwk(&self) -> Value {
        match self.kind {
            KeyKind::P256 | KeyKind::P384 | KeyKind::P521 => {
                // Uncompressed point: 0x04 ‖ x ‖ y.
                let point = self.rcgen.der_bytes();
                let half = (point.len() - 1) / 2;
                json!({
                    "kty": "EC",
                    "crv": match self.kind {
                        KeyKind::P256 => "P-256",
                        KeyKind::P384 => "P-384",
                        _ => "P-521",
                    },
                    "x": b64url(&point[1..1 + half]),
                    "y": b64url(&point[1 + half..]),
                })
            }
            KeyKind::Rsa2048 => {
                let pair = RsaKeyPair::from_pkcs8(&self.rcgen.serialize_der()).unwrap();
                let public = pair.public_key();
                let (n, e) = rsa_components(public.as_ref());
                json!({"kty": "RSA", "n": b64url(&n), "e": b64url(&e)})
            }
        }
    }

    /// The RFC 7638 thumbprint of `jwk()` (the `kid` of distribution 3.x).
    pub fn thumbprint(&self) -> String {
        let jwk = self.jwk();
        let canonical = match self.kind {
            KeyKind::Rsa2048 => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                jwk["e"].as_str().unwrap(),
                jwk["n"].as_str().unwrap()
            ),
            _ => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                jwk["crv"].as_str().unwrap(),
                jwk["x"].as_str().unwrap(),
                jwk["y"].as_str().unwrap()
            ),
        };
        b64url(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref())
    }

    /// Signs `input` the JWS way for this key: ES256/384/512 → raw r‖s,
    /// RS256 → PKCS#1 v1.5.
    pub fn sign(&self, input: &[u8]) -> Vec<u8> {
        let pkcs8 = self.rcgen.serialize_der();
        let rng = SystemRandom::new();
        match self.kind {
            KeyKind::P256 | KeyKind::P384 | KeyKind::P521 => {
                let alg = match self.kind {
                    KeyKind::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    KeyKind::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                    _ => &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
                };
                let pair = EcdsaKeyPair::from_pkcs8(alg, &pkcs8).unwrap();
                pair.sign(&rng, input).unwrap().as_ref().to_vec()
            }
            KeyKind::Rsa2048 => {
                let pair = RsaKeyPair::from_pkcs8(&pkcs8).unwrap();
                let mut out = vec![0; pair.public_modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, input, &mut out)
                    .unwrap();
                out
            }
        }
    }

    /// The JWS `alg` this key naturally signs with.
    pub fn alg(&self) -> &'static str {
        match self.kind {
            KeyKind::P256 => "ES256",
            KeyKind::P384 => "ES384",
            KeyKind::P521 => "ES512",
            KeyKind::Rsa2048 => "RS256",
        }
    }
}

pub fn libtrust_id(spki: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki);
    let encoded = base32(&digest.as_ref()[..30]);
    encoded
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":")
}

/// RFC 4648 base32 without padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// (n, e) of a DER RSAPublicKey (PKCS#1): SEQUENCE { INTEGER n, INTEGER e }.
fn rsa_components(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    fn read_tlv(bytes: &[u8]) -> (&[u8], &[u8]) {
        let (len, header) = if bytes[1] < 0x80 {
            (bytes[1] as usize, 2)
        } else {
            let n = (bytes[1] & 0x7f) as usize;
            let len = bytes[2..2 + n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, 2 + n)
        };
        (&bytes[header..header + len], &bytes[header + len..])
    }
    let (sequence, _) = read_tlv(der);
    let (n, rest) = read_tlv(sequence);
    let (e, _) = read_tlv(rest);
    let strip = |v: &[u8]| {
        let start = v.iter().position(|b| *b != 0).unwrap_or(v.len());
        v[start..].to_vec()
    };
    (strip(n), strip(e))
}

/// A certificate with its key.
pub struct Certified {
    pub key: Key,
    pub params: CertificateParams,
    pub der: Vec<u8>,
    pub pem: String,
}

impl Certified {
    fn ca(name: &str, kind: KeyKind, issuer: Option<&Certified>) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Self::issue(params, kind, issuer)
    }

    fn leaf(name: &str, kind: KeyKind, issuer: &Certified) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        Self::issue(params, kind, Some(issuer))
    }

    fn issue(mut params: CertificateParams, kind: KeyKind, issuer: Option<&Certified>) -> Self {
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(30);
        let key = Key::generate(kind);
        let cert = match issuer {
            None => params.self_signed(&key.rcgen).unwrap(),
            Some(issuer) => params
                .signed_by(
                    &key.rcgen,
                    &Issuer::from_params(&issuer.params, &issuer.key.rcgen),
                )
                .unwrap(),
        };
        Self {
            key,
            params,
            der: cert.der().to_vec(),
            pem: cert.pem(),
        }
    }
}

/// A test CA: root → intermediate → token-signing leaves.
pub struct Pki {
    pub root: Certified,
    pub intermediate: Certified,
    /// The ES256 leaf that signs the token server's tokens.
    pub leaf: Certified,
    /// The root certificate as a PEM file (the `rootcertbundle`).
    pub bundle: PathBuf,
}

impl Pki {
    /// A new CA; writes the root bundle to `dir/token-ca.pem`.
    pub fn new(dir: &Path) -> Self {
        let root = Certified::ca("notarium test token root", KeyKind::P256, None);
        let intermediate = Certified::ca(
            "notarium test token intermediate",
            KeyKind::P256,
            Some(&root),
        );
        let leaf = Certified::leaf("notarium test token signer", KeyKind::P256, &intermediate);
        std::fs::create_dir_all(dir).unwrap();
        let bundle = dir.join("token-ca.pem");
        std::fs::write(&bundle, &root.pem).unwrap();
        Self {
            root,
            intermediate,
            leaf,
            bundle,
        }
    }

    /// Another leaf of this CA with a key of `kind`.
    pub fn other_leaf(&self, kind: KeyKind) -> Certified {
        Certified::leaf("notarium test token signer 2", kind, &self.intermediate)
    }

    /// A leaf of this CA whose certificate expired yesterday.
    pub fn expired_leaf(&self) -> Certified {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "notarium test token signer (expired)");
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(30);
        params.not_after = now - time::Duration::days(1);
        let key = Key::generate(KeyKind::P256);
        let cert = params
            .signed_by(
                &key.rcgen,
                &Issuer::from_params(&self.intermediate.params, &self.intermediate.key.rcgen),
            )
            .unwrap();
        Certified {
            key,
            params,
            der: cert.der().to_vec(),
            pem: cert.pem(),
        }
    }

    /// `x5c` for `leaf` (issued by this CA's intermediate).
    pub fn chain(&self, leaf: &Certified) -> Vec<String> {
        vec![
            STANDARD.encode(&leaf.der),
            STANDARD.encode(&self.intermediate.der),
        ]
    }

    /// A token signed by the leaf with `x5c` and `kid` headers.
    pub fn sign(&self, claims: &Value) -> String {
        Jws::x5c(self, &self.leaf).sign_with(&self.leaf.key, claims)
    }
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

/// Claims of a registry token.
pub struct Claims {
    pub issuer: String,
    pub audience: Value,
    pub subject: String,
    pub not_before: i64,
    pub expires: i64,
    pub access: Vec<Value>,
}

impl Claims {
    /// Valid for `service` now (5 minutes), issued by `ISSUER`.
    pub fn new(service: &str, subject: &str) -> Self {
        let now = now();
        Self {
            issuer: ISSUER.into(),
            audience: json!(service),
            subject: subject.into(),
            not_before: now - 10,
            expires: now + 300,
            access: Vec::new(),
        }
    }

    /// Adds `{"type":"repository","name":name,"actions":actions}`.
    pub fn repository(mut self, name: &str, actions: &[&str]) -> Self {
        self.access.push(access_entry("repository", name, actions));
        self
    }

    /// Adds `registry:catalog:*`.
    pub fn catalog(mut self) -> Self {
        self.access
            .push(access_entry("registry", "catalog", &["*"]));
        self
    }

    pub fn to_json(&self) -> Value {
        json!({
            "iss": self.issuer,
            "sub": self.subject,
            "aud": self.audience,
            "exp": self.expires,
            "nbf": self.not_before,
            "iat": self.not_before,
            "jti": format!("{}-{}", self.subject, random_hex()),
            "access": self.access,
        })
    }
}

pub fn access_entry(kind: &str, name: &str, actions: &[&str]) -> Value {
    json!({"type": kind, "name": name, "actions": actions})
}

fn random_hex() -> String {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    hex::encode(bytes)
}

/// A JWS header under construction.
pub struct Jws {
    pub header: serde_json::Map<String, Value>,
}

impl Jws {
    /// `{"typ":"JWT","alg":alg}`.
    pub fn new(alg: &str) -> Self {
        let mut header = serde_json::Map::new();
        header.insert("typ".into(), json!("JWT"));
        header.insert("alg".into(), json!(alg));
        Self { header }
    }

    /// Header with `x5c` = [leaf, intermediate of `pki`] and the leaf's
    /// libtrust `kid`; `alg` is the leaf key's.
    pub fn x5c(pki: &Pki, leaf: &Certified) -> Self {
        Self::new(leaf.key.alg())
            .with("x5c", json!(pki.chain(leaf)))
            .with("kid", json!(leaf.key.libtrust_id()))
    }

    pub fn with(mut self, name: &str, value: Value) -> Self {
        self.header.insert(name.into(), value);
        self
    }

    /// `header.claims` (base64url), the JWS signing input.
    pub fn signing_input(&self, claims: &Value) -> String {
        format!(
            "{}.{}",
            b64url(&serde_json::to_vec(&self.header).unwrap()),
            b64url(&serde_json::to_vec(claims).unwrap())
        )
    }

    /// Compact JWS signed by `key`.
    pub fn sign_with(&self, key: &Key, claims: &Value) -> String {
        let input = self.signing_input(claims);
        let signature = key.sign(input.as_bytes());
        format!("{input}.{}", b64url(&signature))
    }

    /// Compact JWS with `signature` as its raw third part.
    pub fn with_signature(&self, claims: &Value, signature: &[u8]) -> String {
        format!("{}.{}", self.signing_input(claims), b64url(signature))
    }
}

/// HMAC-SHA256 of `input` with `secret` (for "HS256 signed with the public
/// key").
pub fn hs256(secret: &[u8], input: &[u8]) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    aws_lc_rs::hmac::sign(&key, input).as_ref().to_vec()
}

// ---------------------------------------------------------------------------
// The token server
// ---------------------------------------------------------------------------

/// What a user may do: on names matching `pattern` (exact, or a prefix
/// ending in `*`), at most `actions` (`*` = whatever is asked).
#[derive(Debug, Clone)]
pub struct Grant {
    pub kind: String,
    pub pattern: String,
    pub actions: Vec<String>,
}

impl Grant {
    pub fn repository(pattern: &str, actions: &[&str]) -> Self {
        Self {
            kind: "repository".into(),
            pattern: pattern.into(),
            actions: actions.iter().map(|a| (*a).to_string()).collect(),
        }
    }

    pub fn catalog() -> Self {
        Self {
            kind: "registry".into(),
            pattern: "catalog".into(),
            actions: vec!["*".into()],
        }
    }

    fn matches(&self, kind: &str, name: &str) -> bool {
        kind == self.kind
            && match self.pattern.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == self.pattern,
            }
    }
}

/// One request the token server answered.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The Basic user, or `None` for anonymous requests.
    pub user: Option<String>,
    pub service: String,
    pub scopes: Vec<String>,
    pub status: u16,
    /// The `access` granted (when a token was issued).
    pub granted: Vec<Value>,
}

struct User {
    password: String,
    grants: Vec<Grant>,
}

struct State {
    pki_leaf_key: Key,
    chain: Vec<String>,
    kid: String,
    services: Vec<String>,
    users: BTreeMap<String, User>,
    requests: Vec<TokenRequest>,
}

/// A running token server (threads; stops serving when dropped).
pub struct TokenServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl TokenServer {
    /// Serves tokens signed by `pki`'s leaf for `services` on 127.0.0.1:0.
    pub fn start(pki: &Pki, services: &[&str]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // The leaf key is cloned through its PKCS#8 so the server thread
        // owns it.
        let leaf_key = Key {
            kind: pki.leaf.key.kind,
            rcgen: KeyPair::try_from(pki.leaf.key.rcgen.serialize_der().as_slice()).unwrap(),
        };
        let state = Arc::new(Mutex::new(State {
            pki_leaf_key: leaf_key,
            chain: pki.chain(&pki.leaf),
            kid: pki.leaf.key.libtrust_id(),
            services: services.iter().map(|s| (*s).to_string()).collect(),
            users: BTreeMap::new(),
            requests: Vec::new(),
        }));
        let shared = Arc::clone(&state);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { return };
                let state = Arc::clone(&shared);
                thread::spawn(move || {
                    let _ = handle(stream, &state);
                });
            }
        });
        Self { addr, state, stop }
    }

    /// The `realm` URL.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// Adds (or replaces) a user with `password` and `grants`.
    pub fn add_user(&self, user: &str, password: &str, grants: &[Grant]) {
        self.state.lock().unwrap().users.insert(
            user.into(),
            User {
                password: password.into(),
                grants: grants.to_vec(),
            },
        );
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// A token as the server would issue it to `user` (no password
    /// needed) for `service` and `scopes` (`type:name:actions`).
    pub fn token_for(&self, user: Option<&str>, service: &str, scopes: &[&str]) -> String {
        let state = self.state.lock().unwrap();
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_string()).collect();
        let access = grant(&state, user, &scopes);
        mint(&state, user, service, access)
    }

    /// The `auth` section for notarium / notary-server trusting `pki`.
    pub fn auth_config(&self, pki: &Pki, service: &str) -> Value {
        json!({
            "type": "token",
            "options": {
                "realm": self.realm(),
                "service": service,
                "issuer": ISSUER,
                "rootcertbundle": pki.bundle,
                "autoredirect": false,
            }
        })
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        // Wake the accept loop so that it sees `stop` and closes the port.
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(100));
    }
}

/// The access `user` gets for `scopes` (`type:name:actions`; the name may
/// hold `:`, e.g. `127.0.0.1:5000/team/app`).
fn grant(state: &State, user: Option<&str>, scopes: &[String]) -> Vec<Value> {
    let Some(user) = user.and_then(|u| state.users.get(u)) else {
        return Vec::new();
    };
    let mut access = Vec::new();
    for scope in scopes {
        let Some((kind, rest)) = scope.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        let mut granted: Vec<&str> = Vec::new();
        for action in actions.split(',') {
            let allowed = user.grants.iter().any(|g| {
                g.matches(kind, name) && g.actions.iter().any(|a| a == "*" || a == action)
            });
            if allowed && !granted.contains(&action) {
                granted.push(action);
            }
        }
        if !granted.is_empty() {
            access.push(access_entry(kind, name, &granted));
        }
    }
    access
}

fn mint(state: &State, user: Option<&str>, service: &str, access: Vec<Value>) -> String {
    let mut claims = Claims::new(service, user.unwrap_or(""));
    claims.access = access;
    Jws::new("ES256")
        .with("x5c", json!(state.chain))
        .with("kid", json!(state.kid))
        .sign_with(&state.pki_leaf_key, &claims.to_json())
}

fn handle(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    // Keep-alive: clients reuse connections.
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut authorization = None;
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("authorization") {
                    authorization = Some(value.to_string());
                } else if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.parse().unwrap_or(0);
                }
            }
        }
        if content_length > 0 {
            let mut body = vec![0; content_length];
            std::io::Read::read_exact(&mut reader, &mut body)?;
        }
        let (status, body) = answer(&request_line, authorization.as_deref(), state);
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            _ => "Not Found",
        };
        let mut response = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        if status == 401 {
            response.push_str("WWW-Authenticate: Basic realm=\"notarium-test\"\r\n");
        }
        response.push_str("\r\n");
        response.push_str(&body);
        writer.write_all(response.as_bytes())?;
        writer.flush()?;
    }
}

fn answer(request_line: &str, authorization: Option<&str>, state: &Mutex<State>) -> (u16, String) {
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if method != "GET" || path != "/token" {
        return (404, r#"{"error":"not found"}"#.into());
    }
    let mut service = String::new();
    let mut scopes = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match key {
            "service" => service = value,
            // docker sends one `scope` per resource; a scope may also list
            // several separated by spaces.
            "scope" => scopes.extend(value.split(' ').filter(|s| !s.is_empty()).map(String::from)),
            _ => {}
        }
    }
    let user = authorization
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        });
    let mut state = state.lock().unwrap();
    let record = |state: &mut State, status: u16, granted: Vec<Value>| {
        state.requests.push(TokenRequest {
            user: user.as_ref().map(|(u, _)| u.clone()),
            service: service.clone(),
            scopes: scopes.clone(),
            status,
            granted,
        });
    };
    if !state.services.contains(&service) {
        record(&mut state, 400, Vec::new());
        return (400, r#"{"error":"unknown service"}"#.into());
    }
    if let Some((name, password)) = &user {
        let known = state
            .users
            .get(name)
            .is_some_and(|u| &u.password == password);
        if !known {
            record(&mut state, 401, Vec::new());
            return (401, r#"{"error":"invalid credentials"}"#.into());
        }
    }
    let access = grant(&state, user.as_ref().map(|(u, _)| u.as_str()), &scopes);
    let token = mint(
        &state,
        user.as_ref().map(|(u, _)| u.as_str()),
        &service,
        access.clone(),
    );
    record(&mut state, 200, access);
    let issued = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    (
        200,
        json!({"token": token, "access_token": token, "expires_in": 300, "issued_at": issued})
            .to_string(),
    )
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Token auth (PROTOCOL.md §8) against the reference: the Go notary-server
//! 0.7 (Debian's `notary`) and notarium run with the same `auth` section,
//! trusting the same test CA, and must answer a table of tokens the same way
//! on every kind of route: status code, the `error=` of `WWW-Authenticate`,
//! its scope, and the `UNAUTHORIZED` body.
//!
//! The table is also checked against what the token spec says (so a token
//! that is accidentally valid or invalid for a reason other than the one
//! named is caught). Two rows are deliberate differences, where notarium
//! follows the issue's spec and notary 0.7 is stricter:
//! * `aud` as a one-element list (distribution 3.x tokens): notary 0.7 fails
//!   to decode it (401 invalid_token), notarium accepts it;
//! * `kid` = RFC 7638 JWK thumbprint of a bundle key (distribution 3.x):
//!   notary 0.7 only knows libtrust key IDs, notarium accepts both.

mod common;
#[path = "support/token_server.rs"]
mod token_server;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use common::{Notarium, ReferenceServer, require};
use serde_json::{Value, json};
use token_server::{
    Claims, Grant, ISSUER, Jws, KeyKind, NOTARY_SERVICE, Pki, TokenServer, b64url, hs256, now,
};

const GUN: &str = "notarium.test/auth";

/// One kind of route and the access it needs (PROTOCOL.md §1.1).
struct Route {
    name: &'static str,
    method: &'static str,
    path: String,
    /// Access needed: `None` = `registry:catalog:*`, else actions on GUN.
    needs: Needs,
}

#[derive(Clone, Copy)]
enum Needs {
    Catalog,
    Repository(&'static [&'static str]),
}

fn routes() -> Vec<Route> {
    vec![
        Route {
            name: "GET root.json (pull)",
            method: "GET",
            path: format!("/v2/{GUN}/_trust/tuf/root.json"),
            needs: Needs::Repository(&["pull"]),
        },
        Route {
            name: "POST update (push,pull)",
            method: "POST",
            path: format!("/v2/{GUN}/_trust/tuf/"),
            needs: Needs::Repository(&["push", "pull"]),
        },
        Route {
            name: "GET timestamp.key (push,pull)",
            method: "GET",
            path: format!("/v2/{GUN}/_trust/tuf/timestamp.key"),
            needs: Needs::Repository(&["push", "pull"]),
        },
        Route {
            name: "DELETE (*)",
            method: "DELETE",
            path: format!("/v2/{GUN}/_trust/tuf/"),
            needs: Needs::Repository(&["*"]),
        },
        Route {
            name: "GET per-GUN changefeed (pull)",
            method: "GET",
            path: format!("/v2/{GUN}/_trust/changefeed?change_id=0&records=10"),
            needs: Needs::Repository(&["pull"]),
        },
        Route {
            name: "GET /v2/ (catalog)",
            method: "GET",
            path: "/v2/".into(),
            needs: Needs::Catalog,
        },
        Route {
            name: "GET global changefeed (catalog)",
            method: "GET",
            path: "/v2/_trust/changefeed?change_id=0&records=10".into(),
            needs: Needs::Catalog,
        },
    ]
}

/// What a token should get, per the token spec.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Verifies; then access decides per route.
    Valid(Grants),
    /// Refused as `invalid_token` whatever the route.
    Invalid,
    /// No `Authorization` at all: 401 without `error=`.
    NoToken,
    /// notary 0.7 refuses it (`invalid_token`), notarium follows the spec
    /// and accepts it with these grants.
    GoRefusesSpecAccepts(Grants),
}

/// The access a valid token carries.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Grants {
    /// `*` on the GUN and `registry:catalog:*`.
    All,
    /// `push,pull` on the GUN.
    PushPull,
    /// `pull` on the GUN.
    Pull,
    /// Nothing that matches the GUN or the catalog.
    Nothing,
}

impl Grants {
    fn claims(self, claims: Claims) -> Claims {
        match self {
            Grants::All => claims.repository(GUN, &["*"]).catalog(),
            Grants::PushPull => claims.repository(GUN, &["push", "pull"]),
            Grants::Pull => claims.repository(GUN, &["pull"]),
            Grants::Nothing => claims,
        }
    }

    fn allows(self, needs: Needs) -> bool {
        match (self, needs) {
            (Grants::All, _) => true,
            (_, Needs::Catalog) | (Grants::Nothing, _) => false,
            (Grants::PushPull, Needs::Repository(actions)) => {
                actions.iter().all(|a| ["push", "pull"].contains(a))
            }
            (Grants::Pull, Needs::Repository(actions)) => actions.iter().all(|a| *a == "pull"),
        }
    }
}

struct Case {
    name: &'static str,
    token: Option<String>,
    expect: Expect,
}

fn claims(grants: Grants) -> Value {
    grants
        .claims(Claims::new(NOTARY_SERVICE, "alice"))
        .to_json()
}

/// The table of tokens (the issue's list, plus a few neighbours).
fn cases(pki: &Pki, dir: &Path) -> Vec<Case> {
    let all = claims(Grants::All);
    let leaf = &pki.leaf;
    let x5c = || Jws::x5c(pki, leaf);
    let valid = |grants| x5c().sign_with(&leaf.key, &claims(grants));
    let with_claims = |edit: &dyn Fn(&mut Claims)| {
        let mut c = Grants::All.claims(Claims::new(NOTARY_SERVICE, "alice"));
        edit(&mut c);
        x5c().sign_with(&leaf.key, &c.to_json())
    };
    let other_ca = Pki::new(&dir.join("other-ca"));
    let rsa_leaf = pki.other_leaf(KeyKind::Rsa2048);
    let p384_leaf = pki.other_leaf(KeyKind::P384);
    let p521_leaf = pki.other_leaf(KeyKind::P521);
    let root_key = &pki.root.key;
    let stranger = token_server::Key::generate(KeyKind::P256);

    vec![
        Case {
            name: "no token",
            token: None,
            expect: Expect::NoToken,
        },
        Case {
            name: "valid x5c ES256, * and catalog",
            token: Some(valid(Grants::All)),
            expect: Expect::Valid(Grants::All),
        },
        Case {
            name: "valid, push,pull only (missing *)",
            token: Some(valid(Grants::PushPull)),
            expect: Expect::Valid(Grants::PushPull),
        },
        Case {
            name: "valid, pull only (missing push)",
            token: Some(valid(Grants::Pull)),
            expect: Expect::Valid(Grants::Pull),
        },
        Case {
            name: "valid, no access (anonymous)",
            token: Some(valid(Grants::Nothing)),
            expect: Expect::Valid(Grants::Nothing),
        },
        Case {
            name: "wrong GUN",
            token: Some(
                x5c().sign_with(
                    &leaf.key,
                    &Claims::new(NOTARY_SERVICE, "alice")
                        .repository("notarium.test/other", &["*"])
                        .repository("notarium.test/auth/sub", &["*"])
                        .repository("NOTARIUM.TEST/AUTH", &["*"])
                        .to_json(),
                ),
            ),
            expect: Expect::Valid(Grants::Nothing),
        },
        Case {
            name: "access entry of another type for the GUN",
            token: Some(x5c().sign_with(
                &leaf.key,
                &json!({
                    "iss": ISSUER, "sub": "alice", "aud": NOTARY_SERVICE,
                    "exp": now() + 300, "nbf": now() - 10,
                    "access": [token_server::access_entry("registry", GUN, &["*"])],
                }),
            )),
            expect: Expect::Valid(Grants::Nothing),
        },
        Case {
            name: "expired",
            token: Some(with_claims(&|c| {
                c.not_before = now() - 7200;
                c.expires = now() - 3600;
            })),
            expect: Expect::Invalid,
        },
        Case {
            name: "expired 20 s ago (within the 60 s leeway)",
            token: Some(with_claims(&|c| {
                c.not_before = now() - 600;
                c.expires = now() - 20;
            })),
            expect: Expect::Valid(Grants::All),
        },
        Case {
            name: "not yet valid",
            token: Some(with_claims(&|c| {
                c.not_before = now() + 3600;
                c.expires = now() + 7200;
            })),
            expect: Expect::Invalid,
        },
        Case {
            name: "wrong issuer",
            token: Some(with_claims(&|c| c.issuer = "someone-else".into())),
            expect: Expect::Invalid,
        },
        Case {
            name: "wrong audience",
            token: Some(with_claims(&|c| {
                c.audience = json!("notarium-test-registry")
            })),
            expect: Expect::Invalid,
        },
        Case {
            name: "audience as a list of one (distribution 3.x)",
            token: Some(with_claims(&|c| c.audience = json!([NOTARY_SERVICE]))),
            expect: Expect::GoRefusesSpecAccepts(Grants::All),
        },
        Case {
            name: "audience as a list of two",
            token: Some(with_claims(&|c| {
                c.audience = json!([NOTARY_SERVICE, "notarium-test-registry"]);
            })),
            expect: Expect::Invalid,
        },
        Case {
            name: "untrusted signer (x5c from another CA)",
            token: Some(Jws::x5c(&other_ca, &other_ca.leaf).sign_with(&other_ca.leaf.key, &all)),
            expect: Expect::Invalid,
        },
        Case {
            name: "x5c leaf certificate expired",
            token: Some({
                let expired = pki.expired_leaf();
                Jws::x5c(pki, &expired).sign_with(&expired.key, &all)
            }),
            expect: Expect::Invalid,
        },
        Case {
            name: "x5c leaf without its intermediate",
            token: Some(
                Jws::new("ES256")
                    .with(
                        "x5c",
                        json!([base64::engine::general_purpose::STANDARD.encode(&leaf.der)]),
                    )
                    .sign_with(&leaf.key, &all),
            ),
            expect: Expect::Invalid,
        },
        Case {
            name: "x5c chain but signed by another key",
            token: Some(x5c().sign_with(&stranger, &all)),
            expect: Expect::Invalid,
        },
        Case {
            name: "kid only: libtrust ID of the bundle's key",
            token: Some(
                Jws::new("ES256")
                    .with("kid", json!(root_key.libtrust_id()))
                    .sign_with(root_key, &all),
            ),
            expect: Expect::Valid(Grants::All),
        },
        Case {
            name: "kid only: libtrust ID of an unknown key",
            token: Some(
                Jws::new("ES256")
                    .with("kid", json!(stranger.libtrust_id()))
                    .sign_with(&stranger, &all),
            ),
            expect: Expect::Invalid,
        },
        Case {
            name: "kid only: bundle key's ID, signed by another key",
            token: Some(
                Jws::new("ES256")
                    .with("kid", json!(root_key.libtrust_id()))
                    .sign_with(&stranger, &all),
            ),
            expect: Expect::Invalid,
        },
        Case {
            name: "kid only: JWK thumbprint of the bundle's key (distribution 3.x)",
            token: Some(
                Jws::new("ES256")
                    .with("kid", json!(root_key.thumbprint()))
                    .sign_with(root_key, &all),
            ),
            expect: Expect::GoRefusesSpecAccepts(Grants::All),
        },
        Case {
            name: "jwk only: the bundle's key",
            token: Some(
                Jws::new("ES256")
                    .with("jwk", root_key.jwk())
                    .sign_with(root_key, &all),
            ),
            expect: Expect::Valid(Grants::All),
        },
        Case {
            name: "jwk carrying the leaf's x5c chain",
            token: Some({
                let mut jwk = leaf.key.jwk();
                jwk["x5c"] = json!(pki.chain(leaf));
                Jws::new("ES256")
                    .with("jwk", jwk)
                    .sign_with(&leaf.key, &all)
            }),
            expect: Expect::Valid(Grants::All),
        },
        Case {
            name: "jwk of another key carrying the leaf's x5c chain",
            token: Some({
                let mut jwk = stranger.jwk();
                jwk["x5c"] = json!(pki.chain(leaf));
                Jws::new("ES256")
                    .with("jwk", jwk)
                    .sign_with(&stranger, &all)
            }),
            expect: Expect::Invalid,
        },
        Case {
            name: "jwk only: an unknown key (no x5c in the JWK)",
            token: Some(
                Jws::new("ES256")
                    .with("jwk", stranger.jwk())
                    .sign_with(&stranger, &all),
            ),
            expect: Expect::Invalid,
        },
        Case {
            name: "no key reference at all",
            token: Some(Jws::new("ES256").sign_with(&leaf.key, &all)),
            expect: Expect::Invalid,
        },
        Case {
            name: "alg none, empty signature",
            token: Some(x5c().with("alg", json!("none")).with_signature(&all, b"")),
            expect: Expect::Invalid,
        },
        Case {
            name: "alg none, with the real signature",
            token: Some({
                let real = x5c().sign_with(&leaf.key, &all);
                let signature = real.rsplit('.').next().unwrap().to_string();
                let input = x5c().with("alg", json!("none")).signing_input(&all);
                format!("{input}.{signature}")
            }),
            expect: Expect::Invalid,
        },
        Case {
            name: "HS256 signed with the leaf's public key",
            token: Some({
                let jws = x5c().with("alg", json!("HS256"));
                let input = jws.signing_input(&all);
                let mac = hs256(&leaf.key.spki(), input.as_bytes());
                jws.with_signature(&all, &mac)
            }),
            expect: Expect::Invalid,
        },
        Case {
            name: "HS256 signed with the leaf certificate PEM",
            token: Some({
                let jws = x5c().with("alg", json!("HS256"));
                let input = jws.signing_input(&all);
                let mac = hs256(leaf.pem.as_bytes(), input.as_bytes());
                jws.with_signature(&all, &mac)
            }),
            expect: Expect::Invalid,
        },
        Case {
            name: "truncated signature",
            token: Some({
                let input = x5c().signing_input(&all);
                let signature = leaf.key.sign(input.as_bytes());
                format!("{input}.{}", b64url(&signature[..signature.len() - 8]))
            }),
            expect: Expect::Invalid,
        },
        Case {
            name: "empty signature",
            token: Some(x5c().with_signature(&all, b"")),
            expect: Expect::Invalid,
        },
        Case {
            name: "claims changed after signing",
            token: Some({
                let signed = valid(Grants::Pull);
                let mut parts: Vec<String> = signed.split('.').map(str::to_string).collect();
                parts[1] = b64url(&serde_json::to_vec(&all).unwrap());
                parts.join(".")
            }),
            expect: Expect::Invalid,
        },
        Case {
            name: "curve does not match alg (ES256 header, P-384 key)",
            token: Some(
                Jws::x5c(pki, &p384_leaf)
                    .with("alg", json!("ES256"))
                    .sign_with(&p384_leaf.key, &all),
            ),
            expect: Expect::Invalid,
        },
        Case {
            name: "curve does not match alg (ES384 header, P-256 key)",
            token: Some(x5c().with("alg", json!("ES384")).sign_with(&leaf.key, &all)),
            expect: Expect::Invalid,
        },
        Case {
            name: "ES384 with a P-384 leaf",
            token: Some(Jws::x5c(pki, &p384_leaf).sign_with(&p384_leaf.key, &all)),
            expect: Expect::Valid(Grants::All),
        },
        Case {
            name: "ES512 with a P-521 leaf",
            token: Some(Jws::x5c(pki, &p521_leaf).sign_with(&p521_leaf.key, &all)),
            expect: Expect::Valid(Grants::All),
        },
        Case {
            name: "curve does not match alg (ES512 header, P-384 key)",
            token: Some(
                Jws::x5c(pki, &p384_leaf)
                    .with("alg", json!("ES512"))
                    .sign_with(&p384_leaf.key, &all),
            ),
            expect: Expect::Invalid,
        },
        Case {
            name: "RS256 with an RSA leaf",
            token: Some(Jws::x5c(pki, &rsa_leaf).sign_with(&rsa_leaf.key, &all)),
            expect: Expect::Valid(Grants::All),
        },
        Case {
            name: "RS256 header on an ECDSA key",
            token: Some(x5c().with("alg", json!("RS256")).sign_with(&leaf.key, &all)),
            expect: Expect::Invalid,
        },
        Case {
            name: "not a JWS",
            token: Some("not-a-token".into()),
            expect: Expect::Invalid,
        },
        Case {
            name: "header is not JSON",
            token: Some(format!(
                "{}.{}.{}",
                b64url(b"{not json"),
                b64url(&serde_json::to_vec(&all).unwrap()),
                b64url(b"sig")
            )),
            expect: Expect::Invalid,
        },
    ]
}

/// `(Type, Name, Action)` of an error detail.
type Detail = (String, String, String);

/// What a server answered.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: u16,
    /// `error=` of `WWW-Authenticate` (401 only).
    error: Option<String>,
    /// `realm`, `service` and the scope's `type:name` and set of actions.
    challenge: Option<(String, String, String, BTreeSet<String>)>,
    /// code, message and the set of (Type, Name, Action) details of a 401.
    body: Option<(String, String, BTreeSet<Detail>)>,
}

struct Server {
    base: String,
    ca: PathBuf,
    upload: PathBuf,
}

impl Server {
    fn ask(&self, route: &Route, token: Option<&str>) -> Answer {
        let headers = tempfile::NamedTempFile::new().unwrap();
        let body = tempfile::NamedTempFile::new().unwrap();
        let mut command = Command::new("curl");
        // HTTP/1.1: over HTTP/2 curl sometimes fails a POST that notarium
        // refuses with 401 before reading the upload ("Stream error in the
        // HTTP/2 framing layer"; the Go server never does) — a separate
        // finding, reported; this table is about the auth answers.
        command
            .arg("-sS")
            .arg("--http1.1")
            .arg("--cacert")
            .arg(&self.ca)
            .arg("-D")
            .arg(headers.path())
            .arg("-o")
            .arg(body.path())
            .arg("-w")
            .arg("%{http_code}")
            .arg("-X")
            .arg(route.method);
        if route.method == "POST" {
            command
                .arg("-F")
                .arg(format!("files=@{};filename=root", self.upload.display()));
        }
        if let Some(token) = token {
            command
                .arg("-H")
                .arg(format!("Authorization: Bearer {token}"));
        }
        let output = command
            .arg(format!("{}{}", self.base, route.path))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "curl {} {}{} failed: {}",
            route.method,
            self.base,
            route.path,
            String::from_utf8_lossy(&output.stderr)
        );
        let status: u16 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap();
        let head = std::fs::read_to_string(headers.path()).unwrap();
        let challenge_header = head.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("www-authenticate")
                .then(|| value.trim().to_string())
        });
        let mut answer = Answer {
            status,
            error: None,
            challenge: None,
            body: None,
        };
        if status == 401 {
            let challenge =
                challenge_header.unwrap_or_else(|| panic!("401 without WWW-Authenticate:\n{head}"));
            let params = challenge_params(&challenge);
            answer.error = params
                .iter()
                .find(|(k, _)| k == "error")
                .map(|(_, v)| v.clone());
            let get = |key: &str| {
                params
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| panic!("no {key} in {challenge}"))
            };
            let scope = get("scope");
            let (resource, actions) = scope.rsplit_once(':').unwrap();
            answer.challenge = Some((
                get("realm"),
                get("service"),
                resource.to_string(),
                actions.split(',').map(str::to_string).collect(),
            ));
            let body: Value = serde_json::from_slice(&std::fs::read(body.path()).unwrap())
                .unwrap_or_else(|e| panic!("401 body is not JSON ({e})"));
            let error = &body["errors"][0];
            answer.body = Some((
                error["code"].as_str().unwrap_or_default().to_string(),
                error["message"].as_str().unwrap_or_default().to_string(),
                error["detail"]
                    .as_array()
                    .map(|details| {
                        details
                            .iter()
                            .map(|d| {
                                (
                                    d["Type"].as_str().unwrap_or_default().to_string(),
                                    d["Name"].as_str().unwrap_or_default().to_string(),
                                    d["Action"].as_str().unwrap_or_default().to_string(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            ));
        }
        answer
    }
}

/// Every case on every route, in that order (the routes of one case are
/// asked concurrently: the table is a few hundred requests).
fn ask_all(server: &Server, cases: &[Case], routes: &[Route]) -> Vec<Answer> {
    let mut answers = Vec::new();
    for case in cases {
        std::thread::scope(|scope| {
            let asking: Vec<_> = routes
                .iter()
                .map(|route| scope.spawn(|| server.ask(route, case.token.as_deref())))
                .collect();
            answers.extend(asking.into_iter().map(|h| h.join().unwrap()));
        });
    }
    answers
}

/// `Bearer k="v",k2="v2"` → [(k, v), …].
fn challenge_params(challenge: &str) -> Vec<(String, String)> {
    let rest = challenge
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("not a Bearer challenge: {challenge}"));
    let mut params = Vec::new();
    let mut rest = rest.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let after = after.strip_prefix('"').unwrap();
        let end = after.find('"').unwrap();
        params.push((
            key.trim().trim_start_matches(',').trim().to_string(),
            after[..end].to_string(),
        ));
        rest = after[end + 1..].trim_start_matches(',').trim();
    }
    params
}

/// Checks an answer against what the spec says for `grants` on `route`.
fn assert_spec(case: &str, route: &Route, grants: Option<Grants>, answer: &Answer) {
    let context = format!("{case} / {}: {answer:?}", route.name);
    match grants {
        Some(grants) if grants.allows(route.needs) => {
            assert_ne!(answer.status, 401, "{context}");
            assert!(answer.status < 500, "{context}");
        }
        Some(_) => {
            assert_eq!(answer.status, 401, "{context}");
            assert_eq!(
                answer.error.as_deref(),
                Some("insufficient_scope"),
                "{context}"
            );
        }
        None => {
            assert_eq!(answer.status, 401, "{context}");
            assert_eq!(answer.error.as_deref(), Some("invalid_token"), "{context}");
        }
    }
    if answer.status == 401 {
        let (realm, service, resource, actions) = answer.challenge.clone().unwrap();
        assert!(realm.ends_with("/token"), "{context}");
        assert_eq!(service, NOTARY_SERVICE, "{context}");
        let expected: (String, BTreeSet<String>) = match route.needs {
            Needs::Catalog => ("registry:catalog".into(), ["*".to_string()].into()),
            Needs::Repository(actions) => (
                format!("repository:{GUN}"),
                actions.iter().map(|a| (*a).to_string()).collect(),
            ),
        };
        assert_eq!((resource, actions), expected, "{context}");
        let (code, message, _) = answer.body.clone().unwrap();
        assert_eq!(
            (code.as_str(), message.as_str()),
            ("UNAUTHORIZED", "authentication required"),
            "{context}"
        );
    }
}

/// The Go notary-server and notarium, both with the same `auth` section.
struct Peers {
    go: Server,
    tokens: TokenServer,
    pki: Pki,
    auth: Value,
    upload: PathBuf,
    _reference: ReferenceServer,
    dir: tempfile::TempDir,
}

impl Peers {
    fn start() -> Self {
        require("curl", "curl");
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let tokens = TokenServer::start(&pki, &[NOTARY_SERVICE]);
        let auth = tokens.auth_config(&pki, NOTARY_SERVICE);
        let upload = dir.path().join("root.json");
        std::fs::write(&upload, b"{}").unwrap();
        let go_dir = dir.path().join("go");
        std::fs::create_dir_all(&go_dir).unwrap();
        let reference = ReferenceServer::start_with(&go_dir, json!({"auth": auth}));
        Self {
            go: Server {
                base: reference.url.clone(),
                ca: reference.ca.clone(),
                upload: upload.clone(),
            },
            tokens,
            pki,
            auth,
            upload,
            _reference: reference,
            dir,
        }
    }

    /// notarium with the same `auth` section (started after the Go server
    /// has answered, so that a broken table shows against Go first).
    fn start_notarium(&self) -> (Notarium, Server) {
        let notarium = Notarium::start(
            &self.dir.path().join("notarium"),
            json!({"auth": self.auth}),
        );
        let server = Server {
            base: notarium.url.clone(),
            ca: notarium.ca.clone(),
            upload: self.upload.clone(),
        };
        (notarium, server)
    }
}

#[test]
fn notarium_and_notary_server_agree_on_every_token_and_route() {
    let peers = Peers::start();
    let routes = routes();
    let cases = cases(&peers.pki, peers.dir.path());

    // 1. The reference answers as the spec says (except the two rows where
    //    notary 0.7 is stricter).
    let mut go_answers = Vec::new();
    let mut asked = ask_all(&peers.go, &cases, &routes).into_iter();
    for case in &cases {
        for route in &routes {
            let go = asked.next().unwrap();
            eprintln!(
                "notary-server: {} / {}: {} {:?}",
                case.name, route.name, go.status, go.error
            );
            let grants = match case.expect {
                Expect::Valid(grants) => Some(grants),
                Expect::Invalid | Expect::GoRefusesSpecAccepts(_) => None,
                Expect::NoToken => {
                    let context = format!("{} / {}: {go:?}", case.name, route.name);
                    assert_eq!(go.status, 401, "{context}");
                    assert_eq!(go.error, None, "{context}");
                    go_answers.push(go);
                    continue;
                }
            };
            assert_spec(
                &format!("{} (notary-server)", case.name),
                route,
                grants,
                &go,
            );
            go_answers.push(go);
        }
    }

    // 2. notarium answers exactly as the reference, or as the spec where
    //    they differ on purpose.
    let (notarium, ours_server) = peers.start_notarium();
    let mut disagreements = Vec::new();
    let mut go_answers = go_answers.into_iter();
    let mut asked = ask_all(&ours_server, &cases, &routes).into_iter();
    for case in &cases {
        for route in &routes {
            let go = go_answers.next().unwrap();
            let ours = asked.next().unwrap();
            if let Expect::GoRefusesSpecAccepts(grants) = case.expect {
                assert_spec(
                    &format!("{} (notarium)", case.name),
                    route,
                    Some(grants),
                    &ours,
                );
                continue;
            }
            if ours != go {
                disagreements.push(format!(
                    "{} / {}:\n  notary-server {go:?}\n  notarium      {ours:?}",
                    case.name, route.name
                ));
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "notarium and notary-server disagree:\n{}",
        disagreements.join("\n")
    );

    // 3. Tokens as the token server issues them, per user.
    let tokens = &peers.tokens;
    tokens.add_user(
        "alice",
        "alice-password",
        &[Grant::repository("notarium.test/*", &["*"])],
    );
    tokens.add_user(
        "bob",
        "bob-password",
        &[Grant::repository("notarium.test/*", &["push", "pull"])],
    );
    let delete = routes.iter().find(|r| r.method == "DELETE").unwrap();
    let pull = routes
        .iter()
        .find(|r| r.name.starts_with("GET root"))
        .unwrap();
    let scopes = [
        format!("repository:{GUN}:*"),
        format!("repository:{GUN}:pull"),
    ];
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    for (user, may_delete) in [(Some("alice"), true), (Some("bob"), false), (None, false)] {
        let token = tokens.token_for(user, NOTARY_SERVICE, &scopes);
        for server in [&peers.go, &ours_server] {
            let answer = server.ask(delete, Some(&token));
            assert_eq!(answer.status != 401, may_delete, "{user:?}: {answer:?}");
            let answer = server.ask(pull, Some(&token));
            assert_eq!(answer.status != 401, user.is_some(), "{user:?}: {answer:?}");
        }
    }
    let log = notarium.log();
    assert!(!log.contains(" status=5"), "server errors:\n{log}");
}

/// With `autoredirect` the realm is `https://<request Host>/auth/token` on
/// both (the clients then ask the server's own host for tokens).
#[test]
fn autoredirect_realm_follows_the_request_host() {
    require("curl", "curl");
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let tokens = TokenServer::start(&pki, &[NOTARY_SERVICE]);
    let mut auth = tokens.auth_config(&pki, NOTARY_SERVICE);
    auth["options"]["autoredirect"] = json!(true);
    let upload = dir.path().join("root.json");
    std::fs::write(&upload, b"{}").unwrap();
    let go_dir = dir.path().join("go");
    std::fs::create_dir_all(&go_dir).unwrap();
    let token = pki.sign(
        &Claims::new(NOTARY_SERVICE, "alice")
            .repository(GUN, &["pull"])
            .to_json(),
    );
    let check = |base: &str, ca: &Path| {
        let server = Server {
            base: base.to_string(),
            ca: ca.to_path_buf(),
            upload: upload.clone(),
        };
        let host = base.trim_start_matches("https://");
        for route in routes() {
            let answer = server.ask(&route, None);
            assert_eq!(answer.status, 401, "{base} {}: {answer:?}", route.name);
            let (realm, service, _, _) = answer.challenge.unwrap();
            assert_eq!(
                realm,
                format!("https://{host}/auth/token"),
                "{base} {}",
                route.name
            );
            assert_eq!(service, NOTARY_SERVICE);
        }
        let answer = server.ask(&routes()[0], Some(&token));
        assert_eq!(answer.status, 404, "{base}: {answer:?}");
    };
    let reference = ReferenceServer::start_with(&go_dir, json!({"auth": auth}));
    check(&reference.url, &reference.ca);
    let notarium = Notarium::start(&dir.path().join("notarium"), json!({"auth": auth}));
    check(&notarium.url, &notarium.ca);
}

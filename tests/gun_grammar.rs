#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The one GUN grammar (`policy::names`) at the HTTP edge: every spelling
//! that would give one repository two names is refused at the first
//! request with 400 INVALID_GUN and a message the clients print, and the
//! same grammar screens root certificate names. Requests go through the
//! real router in-process.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use notarium::repo::validate::{StoredState, Upload, validate_update};
use notarium::repo::{Error, Refusal, Rejection, Repo};
use notarium::server::{AppState, Caching, metrics_handle, router};
use notarium::tuf::{KeyAlgorithm, RoleName, SignedFile};
use serde_json::Value;
use time::OffsetDateTime;
use tower::ServiceExt;

#[path = "support/builder.rs"]
mod builder;
mod common;

async fn app() -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = common::store::temp_store(dir.path()).await;
    let repo = Repo::new(store, keys, notarium::repo::system_clock());
    let app = router(Arc::new(AppState {
        repo,
        caching: Caching::default(),
        max_body_bytes: 1 << 20,
        metrics: metrics_handle(),
        gun_prefixes: Vec::new(),
        auth: None,
    }));
    (app, dir)
}

async fn send(app: &axum::Router, method: Method, uri: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "multipart/form-data; boundary=X")
        .body(Body::from("--X--\r\n"))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body)
}

/// `gun` as it appears in the request path (already percent-encoded where
/// a URI needs it), and words the message must contain.
const REFUSED: &[(&str, &[&str])] = &[
    ("registry.test/team/%2e%2e", &["\"..\" path segment"]),
    ("registry.test/%2E/app", &["\".\" path segment"]),
    ("registry.test/team/%252e%252e", &["'%'", "encoded twice"]),
    ("registry.test/team%252Fapp", &["'%'"]),
    ("registry.test/team//app", &["empty path segment"]),
    ("registry.test/team/app/", &["empty path segment"]),
    ("registry.test/Team/app", &["\"Team\"", "lower case"]),
    ("registry.test/team/APP", &["\"APP\"", "lower case"]),
    // Cyrillic 'а' (U+0430) for 'a'.
    ("registry.test/team/%D0%B0pp", &["U+0430", "ASCII only"]),
    // Fullwidth solidus, a look-alike of '/'.
    ("registry.test/team%EF%BC%8Fapp", &["U+FF0F"]),
    (
        "registry.test/team/app%E2%80%AEgpj",
        &["U+202E", "bidirectional"],
    ),
    ("registry.test/team/app%00", &["U+0000", "control"]),
    ("registry.test/team/a%09pp", &["U+0009"]),
    ("registry.test/team/-app", &["\"-app\"", "not valid"]),
    ("registry_test:5000/team/app", &["registry host"]),
];

#[tokio::test]
async fn every_route_refuses_a_second_spelling_with_invalid_gun() {
    let (app, _dir) = app().await;
    for (gun, words) in REFUSED {
        for (method, tail) in [
            (Method::POST, "_trust/tuf/"),
            (Method::GET, "_trust/tuf/root.json"),
            (Method::GET, "_trust/tuf/timestamp.key"),
            (Method::DELETE, "_trust/tuf/"),
            (Method::GET, "_trust/changefeed?records=10"),
        ] {
            let uri = format!("/v2/{gun}/{tail}");
            let (status, body) = send(&app, method.clone(), &uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {uri}: {body}");
            let entry = &body["errors"][0];
            assert_eq!(entry["code"], "INVALID_GUN", "{method} {uri}: {body}");
            let message = entry["detail"]["Error"]["Msg"].as_str().unwrap();
            for word in *words {
                assert!(message.contains(word), "{uri}: {word:?} not in {message:?}");
            }
            // Nothing the client prints can reorder or hide text.
            assert!(
                message
                    .chars()
                    .all(|c| c == '…' || c.is_ascii() && !c.is_ascii_control()),
                "{message:?}"
            );
        }
    }
}

#[tokio::test]
async fn docker_reference_names_still_work() {
    let (app, _dir) = app().await;
    for gun in [
        "127.0.0.1:5000/team/app",
        "registry.example.com/team/app",
        "docker.io/library/alpine",
        "localhost:5000/a__b/c-d/e.f",
        // One name, once decoded: `%2F` is '/'.
        "registry.example.com/team%2Fother",
    ] {
        // Valid but unknown: the key route creates a server key.
        let (status, body) = send(
            &app,
            Method::GET,
            &format!("/v2/{gun}/_trust/tuf/timestamp.key"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{gun}: {body}");
        let (status, body) = send(
            &app,
            Method::GET,
            &format!("/v2/{gun}/_trust/tuf/root.json"),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{gun}: {body}");
    }
}

#[test]
fn root_certificate_names_go_through_the_same_grammar() {
    // A GUN that bypassed the routes (as `notarium verify` or an import
    // could) and a certificate naming it: the certificate does not count.
    let now = OffsetDateTime::now_utc();
    for gun in ["registry.test/Team/app", "registry.test/team/\u{0430}pp"] {
        let client = builder::ClientKeys::new(gun, now);
        let server = notarium::tuf::SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let root = client.root(1, server.public_key(), server.public_key(), now);
        let targets = client.targets(1, &[], now);
        let uploads = vec![
            Upload {
                role: RoleName::Root,
                file: SignedFile::parse(&root).unwrap(),
            },
            Upload {
                role: RoleName::Targets,
                file: SignedFile::parse(&targets).unwrap(),
            },
        ];
        match validate_update(gun, &StoredState::default(), uploads, now) {
            // The CN is refused by the GUN grammar, not by a certificate check.
            Err(Error::Rejected {
                kind: Rejection::BadRoot,
                reason,
            }) => assert!(
                matches!(
                    &*reason,
                    Refusal::NoTrustedRootCertificate { rejected, misnamed }
                        if rejected.is_empty() && misnamed.len() == 1
                ),
                "{reason:?}"
            ),
            other => panic!("{gun}: {other:?}"),
        }
    }
}

//! The repository the server benches read: one published GUN, served by
//! two routers over the same store, one without auth and one with token
//! auth, and a token granting `pull` on the GUN (ES256, `x5c` chain, the
//! shape registry token servers send).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../tests/support/builder.rs"]
mod builder;
#[path = "../../tests/support/token_server.rs"]
mod token_server;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use notarium::auth::{Authenticator, Expectations, TrustBundle, Verifier};
use notarium::repo::{Repo, system_clock};
use notarium::server::auth::TokenAuth;
use notarium::server::{AppState, Caching, metrics_handle, router};
use notarium::signer::{KeyService, Passphrase};
use notarium::store::SqliteStore;
use notarium::tuf::{KeyAlgorithm, RoleName};
use time::OffsetDateTime;
use tower::ServiceExt;

pub const GUN: &str = "registry.test/bench/app";
pub const ROLES: [&str; 3] = ["timestamp", "targets", "root"];

pub struct Fixture {
    pub plain: Router,
    pub authed: Router,
    /// `Bearer <token>`.
    pub authorization: String,
    _dir: tempfile::TempDir,
}

/// Publishes the repository and builds both routers.
pub async fn fixture() -> Fixture {
    let Publisher {
        repo: publisher,
        store,
        dir,
        ..
    } = publisher().await;
    let pki = token_server::Pki::new(&dir.path().join("pki"));
    let claims =
        token_server::Claims::new(token_server::NOTARY_SERVICE, "bench").repository(GUN, &["pull"]);
    let token = pki.sign(&claims.to_json());
    let bundle = TrustBundle::from_pem(pki.root.pem.as_bytes()).unwrap();
    let verifier = Verifier::new(
        bundle,
        Expectations {
            issuer: token_server::ISSUER.into(),
            service: token_server::NOTARY_SERVICE.into(),
        },
    );
    let auth = TokenAuth {
        authenticator: Authenticator::new(verifier, 10_000),
        realm: "https://auth.bench.test/token".into(),
        service: token_server::NOTARY_SERVICE.into(),
        autoredirect: false,
        clock: system_clock(),
    };
    let state = |repo, auth| {
        Arc::new(AppState {
            repo,
            caching: Caching::default(),
            max_body_bytes: 10 << 20,
            metrics: metrics_handle(),
            gun_prefixes: Vec::new(),
            auth,
        })
    };
    let fixture = Fixture {
        plain: router(state(publisher, None)),
        authed: router(state(server_repo(&store), Some(auth))),
        authorization: format!("Bearer {token}"),
        _dir: dir,
    };
    // Fill both repositories' caches and the token cache, so every
    // measured request takes the cached path.
    for role in ROLES {
        get(&fixture.plain, role, Some(&fixture.authorization)).await;
        get(&fixture.authed, role, Some(&fixture.authorization)).await;
    }
    fixture
}

/// A published repository and its owner's keys, to publish new targets
/// versions into (the server signing snapshot and timestamp with its
/// ECDSA P-256 keys, as `notary add -p` has it).
pub struct Publisher {
    pub repo: Repo<SqliteStore>,
    pub client: builder::ClientKeys,
    pub names: Vec<String>,
    store: Arc<SqliteStore>,
    dir: tempfile::TempDir,
}

/// A server repository over `store`, its keys sealed there.
fn server_repo(store: &Arc<SqliteStore>) -> Repo<SqliteStore> {
    let keys = KeyService::new(
        store.clone(),
        Passphrase::new("bench"),
        KeyAlgorithm::EcdsaP256,
    );
    Repo::new(store.clone(), keys, system_clock())
}

pub async fn publisher() -> Publisher {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("db.sqlite").to_string_lossy())
            .await
            .unwrap(),
    );
    let repo = server_repo(&store);
    let now = OffsetDateTime::now_utc();
    let client = builder::ClientKeys::new(GUN, now);
    let timestamp = repo.public_key(GUN, &RoleName::Timestamp).await.unwrap();
    let snapshot = repo.public_key(GUN, &RoleName::Snapshot).await.unwrap();
    let names: Vec<String> = (0..100).map(|i| format!("tag-{i}")).collect();
    repo.publish(
        GUN,
        vec![
            ("root".into(), client.root(1, &snapshot, &timestamp, now)),
            ("targets".into(), client.targets(1, &names, now)),
        ],
        "bench",
    )
    .await
    .unwrap();
    Publisher {
        repo,
        client,
        names,
        store,
        dir,
    }
}

/// One metadata GET that must answer 200.
pub async fn get(app: &Router, role: &str, authorization: Option<&str>) {
    let mut request = Request::get(format!("/v2/{GUN}/_trust/tuf/{role}.json"));
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let request = request.body(Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

//! Request handling in-process (no TLS, no sockets): the router answering
//! metadata GETs for a published repository, through `tower::ServiceExt`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/builder.rs"]
mod builder;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use criterion::{Criterion, criterion_group, criterion_main};
use notarium::repo::{Repo, system_clock};
use notarium::server::{AppState, Caching, metrics_handle, router};
use notarium::signer::{KeyService, Passphrase};
use notarium::store::SqliteStore;
use notarium::tuf::{KeyAlgorithm, RoleName};
use time::OffsetDateTime;
use tower::ServiceExt;

const GUN: &str = "registry.test/bench/app";

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = runtime.block_on(async {
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("db.sqlite").to_string_lossy())
                .await
                .unwrap(),
        );
        let keys = KeyService::new(
            store.clone(),
            Passphrase::new("bench"),
            KeyAlgorithm::EcdsaP256,
        );
        let repo = Repo::new(store, keys, system_clock());
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
        )
        .await
        .unwrap();
        router(Arc::new(AppState {
            repo,
            caching: Caching::default(),
            max_body_bytes: 10 << 20,
            metrics: metrics_handle(),
            gun_prefixes: Vec::new(),
            auth: None,
        }))
    });
    for role in ["timestamp", "targets", "root"] {
        let uri = format!("/v2/{GUN}/_trust/tuf/{role}.json");
        c.bench_function(&format!("get_{role}"), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let request = Request::get(&uri).body(Body::empty()).unwrap();
                    let response = app.clone().oneshot(request).await.unwrap();
                    assert_eq!(response.status(), StatusCode::OK);
                })
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Request handling in-process (no TLS, no sockets): the router answering
//! cached metadata GETs for a published repository, through
//! `tower::ServiceExt`, without auth and with token auth (same token header
//! on both, so the difference is the cost of checking it); and the publish
//! path: a new targets version of a 100-target repository, validated,
//! stored (SQLite, durable commits) and followed by a server-signed
//! snapshot and timestamp.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use time::OffsetDateTime;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fixture = runtime.block_on(common::fixture());
    let token = Some(fixture.authorization.as_str());
    for role in common::ROLES {
        c.bench_function(&format!("get_{role}"), |b| {
            b.iter(|| runtime.block_on(common::get(&fixture.plain, role, None)));
        });
        c.bench_function(&format!("get_{role}_token_ignored"), |b| {
            b.iter(|| runtime.block_on(common::get(&fixture.plain, role, token)));
        });
        c.bench_function(&format!("get_{role}_token_auth"), |b| {
            b.iter(|| runtime.block_on(common::get(&fixture.authed, role, token)));
        });
    }

    let publisher = runtime.block_on(common::publisher());
    let mut version = 1;
    let mut group = c.benchmark_group("publish");
    group.sample_size(50);
    group.bench_function("targets_100", |b| {
        // The owner's signing of each new version is set-up, not measured.
        b.iter_batched(
            || {
                version += 1;
                let now = OffsetDateTime::now_utc();
                vec![(
                    "targets".to_string(),
                    publisher.client.targets(version, &publisher.names, now),
                )]
            },
            |parts| {
                runtime
                    .block_on(publisher.repo.publish(common::GUN, parts, "bench"))
                    .unwrap()
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Request handling in-process (no TLS, no sockets): the router answering
//! cached metadata GETs for a published repository, through
//! `tower::ServiceExt`, without auth and with token auth (same token header
//! on both, so the difference is the cost of checking it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use criterion::{Criterion, criterion_group, criterion_main};

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
}

criterion_group!(benches, bench);
criterion_main!(benches);

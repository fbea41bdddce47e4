//! A fixed number of cached metadata GETs through the router, for counting
//! what a request costs under valgrind (instructions with callgrind, heap
//! blocks with dhat): deterministic where wall-clock throughput on a shared
//! machine is not. `scripts/bench-auth-cost` runs it at two request counts
//! and divides the difference, so setup cancels out.
//!
//!   auth_cost <plain|token-ignored|token-auth> <requests>
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, requests) = match args.as_slice() {
        [_, mode, requests] => (mode.as_str(), requests.parse::<usize>().unwrap()),
        _ => panic!("usage: auth_cost <plain|token-ignored|token-auth> <requests>"),
    };
    // One thread: the counts are then the same on every run.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fixture = runtime.block_on(common::fixture());
    let (app, authorization) = match mode {
        "plain" => (&fixture.plain, None),
        "token-ignored" => (&fixture.plain, Some(fixture.authorization.as_str())),
        "token-auth" => (&fixture.authed, Some(fixture.authorization.as_str())),
        other => panic!("unknown mode {other}"),
    };
    measured(&runtime, app, authorization, requests);
}

/// The requests alone, as one function callgrind can be told to count
/// (`--toggle-collect='*measured*'`), leaving the setup out.
#[inline(never)]
fn measured(
    runtime: &tokio::runtime::Runtime,
    app: &axum::Router,
    authorization: Option<&str>,
    requests: usize,
) {
    runtime.block_on(async {
        for i in 0..requests {
            common::get(app, common::ROLES[i % common::ROLES.len()], authorization).await;
        }
    });
}

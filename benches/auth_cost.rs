//! A fixed number of cached metadata GETs through the router, for counting
//! what a request costs under valgrind (instructions with callgrind, heap
//! blocks with dhat): deterministic where wall-clock throughput on a shared
//! machine is not. `scripts/bench-auth-cost` runs it: callgrind counts only
//! inside [`measured`]; heap blocks are the difference between two request
//! counts, so setup cancels out.
//!
//!   auth_cost <plain|token-ignored|token-auth> <requests>
//!
//! Without arguments (`cargo test --all-targets`, `cargo bench`) it runs a
//! few requests of each kind, which must all answer 200.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

const MODES: [&str; 3] = ["plain", "token-ignored", "token-auth"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: Vec<(&str, usize)> = match args.as_slice() {
        [mode, requests] if MODES.contains(&mode.as_str()) => {
            vec![(mode.as_str(), requests.parse().unwrap())]
        }
        // Nothing, or what cargo passes (`--bench`): the short check.
        [] => MODES.iter().map(|mode| (*mode, 3)).collect(),
        [first, ..] if first.starts_with('-') => MODES.iter().map(|mode| (*mode, 3)).collect(),
        _ => panic!("usage: auth_cost <plain|token-ignored|token-auth> <requests>"),
    };
    // One thread: the counts are then the same on every run.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fixture = runtime.block_on(common::fixture());
    for (mode, requests) in runs {
        let (app, authorization) = match mode {
            "plain" => (&fixture.plain, None),
            "token-ignored" => (&fixture.plain, Some(fixture.authorization.as_str())),
            _ => (&fixture.authed, Some(fixture.authorization.as_str())),
        };
        measured(&runtime, app, authorization, requests);
    }
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

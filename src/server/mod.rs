//! The HTTP layer: the only place that knows axum. Routes, the error map,
//! metrics, request logs and TLS serving.

pub mod auth;
pub mod error;
pub mod multipart;
pub mod route;
pub mod routes;
pub mod serve;
pub mod tls;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;

use crate::repo::Repo;
use crate::store::Store;
use auth::TokenAuth;
use error::RejectionReason;
use route::Operation;
pub use serve::{Connections, serve_tls};

/// Cache lifetimes for metadata responses (PROTOCOL.md §1.8).
#[derive(Debug, Clone, Copy)]
pub struct Caching {
    pub current_max_age: u32,
    pub consistent_max_age: u32,
}

impl Default for Caching {
    fn default() -> Self {
        Self {
            current_max_age: 300,
            consistent_max_age: 2_592_000,
        }
    }
}

/// Everything a request handler needs.
pub struct AppState<S: Store> {
    pub repo: Repo<S>,
    pub caching: Caching,
    pub max_body_bytes: usize,
    pub metrics: PrometheusHandle,
    /// `repositories.gun_prefixes`: when set, only GUNs under these.
    pub gun_prefixes: Vec<String>,
    /// Token auth (`auth.type: token`); `None` serves everyone.
    pub auth: Option<TokenAuth>,
}

/// The process-wide Prometheus recorder, installed once so one process
/// (a test binary) can run many servers.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (not ours): then
            // our metrics are simply not exported.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// How often recorded histogram samples are folded into their summaries.
const METRICS_UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Folds recorded histogram samples into their summaries, forever. The
/// recorder keeps every sample until then (it is not the exporter that
/// would do this on its own), so without it memory grows with each request
/// when nothing scrapes `/metrics`: 8 bytes a request, about 2 MiB per
/// 20 s of benchmark load. Once a second bounds it to a second's worth.
pub async fn metrics_upkeep(handle: PrometheusHandle) {
    let mut ticks = tokio::time::interval(METRICS_UPKEEP_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        handle.run_upkeep();
    }
}

/// Builds the router for `state`: every request goes through the one
/// route table (`route.rs`) in `routes::dispatch`.
pub fn router<S: Store>(state: Arc<AppState<S>>) -> Router {
    Router::new()
        .fallback(routes::dispatch::<S>)
        .layer(middleware::from_fn(observe))
        .with_state(state)
}

/// The method as a metrics label: notary's methods, anything else `OTHER`
/// (a client can send any token as a method; labels must stay bounded).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

/// One log line and one set of metrics per request, labelled by the
/// operation (never by GUN, which is unbounded).
async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let path = request.uri().path().to_string();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip().to_string())
        .unwrap_or_default();
    // One span per request: handlers add the GUN and role, and whatever
    // they log carries the request's context.
    let span = tracing::info_span!(
        "request",
        %method,
        %path,
        gun = tracing::field::Empty,
        subject = tracing::field::Empty,
        operation = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    let response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let operation = response
        .extensions()
        .get::<Operation>()
        .map_or("NotFound", |op| op.0);
    let status = response.status().as_u16();
    let labels = [
        ("operation", operation.to_string()),
        ("method", method.to_string()),
        ("status", status.to_string()),
    ];
    metrics::counter!("notarium_http_requests_total", &labels).increment(1);
    metrics::histogram!("notarium_http_request_duration_seconds", "operation" => operation)
        .record(elapsed.as_secs_f64());
    let reason = response
        .extensions()
        .get::<RejectionReason>()
        .map_or("", |r| r.0);
    if !reason.is_empty() {
        metrics::counter!("notarium_rejections_total", "operation" => operation, "reason" => reason)
            .increment(1);
    }
    span.record("operation", operation);
    span.record("status", status);
    let _in_request = span.enter();
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    if operation == "Health" || operation == "Metrics" {
        tracing::debug!(latency_ms, peer, "done");
    } else if status >= 500 {
        tracing::error!(latency_ms, peer, "done");
    } else if !reason.is_empty() {
        tracing::info!(reason, latency_ms, peer, "done");
    } else {
        tracing::info!(latency_ms, peer, "done");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_bounded() {
        for (method, label) in [
            ("GET", "GET"),
            ("HEAD", "HEAD"),
            ("POST", "POST"),
            ("PUT", "PUT"),
            ("DELETE", "DELETE"),
            ("OPTIONS", "OTHER"),
            ("PATCH", "OTHER"),
            ("X-ANYTHING-AT-ALL", "OTHER"),
        ] {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            assert_eq!(method_label(&method), label);
        }
    }
}

//! Notary-server's routes (PROTOCOL.md §1.1): one dispatch over the route
//! table of `route.rs`. Per request, in notary's wrapping order: the
//! GUN-prefix filter, then token auth, then the handler.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::json;
use time::OffsetDateTime;

use super::AppState;
use super::auth::{Caller, authorize};
use super::error::ApiError;
use super::route::{ImmutableAction, MetadataFile, Route, decode_path};
use crate::repo::{Error as RepoError, ParamProblem, Served, UploadProblem, check_gun};
use crate::store::Store;
use crate::tuf::RoleName;

pub use super::route::Operation;

/// Every request lands here.
pub async fn dispatch<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    request: Request,
) -> Response {
    let route = Route::parse(request.method(), request.uri().path());
    let operation = route.operation();
    if let Some(gun) = route.gun() {
        tracing::Span::current().record("gun", gun);
    }
    let refusal = 'refuse: {
        // notary's prefix filter answers before auth (§1.1).
        if let Some(refusal) = prefix_refusal(&state, &route) {
            break 'refuse refusal;
        }
        let caller = match authorize(
            state.auth.as_ref(),
            route.required(),
            request.headers(),
            request.uri(),
        ) {
            Ok(caller) => caller,
            Err(unauthorized) => break 'refuse unauthorized.into_response(),
        };
        tracing::Span::current().record("subject", caller.subject());
        let mut response = handle(&state, route, &caller, request).await;
        response.extensions_mut().insert(operation);
        return response;
    };
    // A refused upload is still read (bounded) before the answer: clients
    // write their whole body first, and an HTTP/2 stream reset mid-upload
    // makes some of them (curl) drop the answer.
    discard(
        request.into_body().into_data_stream(),
        state.max_body_bytes.min(DISCARD_MAX_BYTES),
    )
    .await;
    let mut response = refusal;
    response.extensions_mut().insert(operation);
    response
}

/// `repositories.gun_prefixes`: a GUN outside them gets 400 `INVALID_GUN`
/// on update and 404 everywhere else (notary's `filterImagePrefixes`).
fn prefix_refusal<S: Store>(state: &AppState<S>, route: &Route) -> Option<Response> {
    let gun = route.gun()?;
    if gun_allowed(state, gun) {
        return None;
    }
    if matches!(route, Route::Update { .. }) {
        return Some(ApiError::gun_prefix(&state.gun_prefixes).into_response());
    }
    Some(ApiError::not_found().into_response())
}

/// Runs the handler of an admitted request.
async fn handle<S: Store>(
    state: &AppState<S>,
    route: Route,
    caller: &Caller,
    request: Request,
) -> Response {
    let query = request.uri().query().unwrap_or("").to_string();
    match route {
        Route::Main => (StatusCode::OK, "{}").into_response(),
        Route::Health => health(state).await,
        Route::Metrics => metrics_text(state).await,
        Route::NotFound => ApiError::not_found().into_response(),
        Route::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED.into_response(),
        Route::Changefeed { gun: None } => changefeed(state, None, &query).await,
        Route::Changefeed { gun: Some(gun) } => match check_gun(&gun) {
            Ok(()) => changefeed(state, Some(&gun), &query).await,
            Err(error) => ApiError::from_repo(&error, false).into_response(),
        },
        Route::Update { gun } => match check_gun(&gun) {
            Ok(()) => update(state, &gun, caller, request).await,
            Err(error) => ApiError::from_repo(&error, true).into_response(),
        },
        Route::Delete { gun } => match check_gun(&gun) {
            Ok(()) => delete(state, &gun, caller).await,
            Err(error) => ApiError::from_repo(&error, true).into_response(),
        },
        Route::Metadata { gun, file, head } => {
            if let Err(error) = check_gun(&gun) {
                return ApiError::from_repo(&error, false).into_response();
            }
            let (result, consistent) = match file {
                MetadataFile::Current(role) => (state.repo.current(&gun, &role).await, false),
                MetadataFile::ByChecksum(role, checksum) => {
                    (state.repo.by_checksum(&gun, &role, &checksum).await, true)
                }
                MetadataFile::ByVersion(role, version) => {
                    (state.repo.by_version(&gun, &role, version).await, true)
                }
            };
            metadata(state, result, consistent, head)
        }
        Route::GetKey { gun, role } => match check_gun(&gun) {
            Ok(()) => key_response(state.repo.public_key(&gun, &role).await),
            Err(error) => ApiError::from_repo(&error, false).into_response(),
        },
        Route::RotateKey { gun, role } => match check_gun(&gun) {
            Ok(()) => rotate(state, &gun, &role, caller).await,
            Err(error) => ApiError::from_repo(&error, false).into_response(),
        },
        Route::Audit { gun } => match check_gun(&gun) {
            Ok(()) => audit(state, &gun, &query).await,
            Err(error) => ApiError::from_repo(&error, false).into_response(),
        },
        Route::Immutable { gun, action } => match check_gun(&gun) {
            Ok(()) => immutable(state, &gun, action, caller).await,
            Err(error) => ApiError::from_repo(&error, true).into_response(),
        },
    }
}

/// notary-server's health: one entry per failing check, named as notary
/// names them ("DB operational", "Trust operational").
async fn health<S: Store>(state: &AppState<S>) -> Response {
    let (db, trust) = tokio::join!(state.repo.store().ping(), state.repo.signer_health());
    let mut failing = serde_json::Map::new();
    if let Err(error) = db {
        // The cause (paths, OS errors) is for the log, not for callers.
        tracing::error!(error = %error, "health check failed");
        failing.insert("DB operational".into(), "storage unavailable".into());
    }
    if let Err(error) = trust {
        tracing::error!(error = %error, "signer health check failed");
        failing.insert("Trust operational".into(), "signer unavailable".into());
    }
    if failing.is_empty() {
        (StatusCode::OK, "{}").into_response()
    } else {
        let body = serde_json::Value::Object(failing).to_string();
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

/// A scrape waits at most this long for the database's round trip, so a
/// database that is down cannot stall the scraper (it is reported as down).
const DB_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Sets the database gauges a scrape reports: the pool's connections, and
/// one round trip (`ping`) timed now, so latency is visible with no traffic.
async fn record_database_gauges<S: Store>(store: &S) {
    let pool = store.pool_stats();
    metrics::gauge!("notarium_db_pool_connections", "state" => "open").set(f64::from(pool.open));
    // A pool holds at most a few hundred connections: exact in an f64.
    metrics::gauge!("notarium_db_pool_connections", "state" => "idle").set(pool.idle as f64);
    metrics::gauge!("notarium_db_pool_max_connections").set(f64::from(pool.max));
    let started = Instant::now();
    let reachable = matches!(
        tokio::time::timeout(DB_PROBE_TIMEOUT, store.ping()).await,
        Ok(Ok(()))
    );
    metrics::gauge!("notarium_db_up").set(if reachable { 1.0 } else { 0.0 });
    if reachable {
        metrics::gauge!("notarium_db_ping_seconds").set(started.elapsed().as_secs_f64());
    }
}

/// Sets the expiry gauges: counts of repositories, never one series per
/// repository (there may be millions). Left as they were when the database
/// cannot answer; `notarium_db_up` says so.
async fn record_expiry_gauges<S: Store>(state: &AppState<S>) {
    let report = match tokio::time::timeout(DB_PROBE_TIMEOUT, state.repo.expiry_report()).await {
        Ok(Ok(report)) => report,
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "cannot count expiring repositories");
            return;
        }
        Err(_) => return,
    };
    // Counts of repositories stay far below 2^53: exact in an f64.
    metrics::gauge!("notarium_repositories_expired").set(report.expired as f64);
    for (window, count) in &report.expiring {
        metrics::gauge!("notarium_repositories_expiring", "within" => *window).set(*count as f64);
    }
    match report.soonest {
        Some(at) => metrics::gauge!("notarium_trust_soonest_expiry_timestamp_seconds")
            .set(at.unix_timestamp() as f64),
        // No client-signed data at all: nothing can expire.
        None => metrics::gauge!("notarium_trust_soonest_expiry_timestamp_seconds").set(f64::NAN),
    }
}

async fn metrics_text<S: Store>(state: &AppState<S>) -> Response {
    record_database_gauges(state.repo.store()).await;
    record_expiry_gauges(state).await;
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// `repositories.gun_prefixes`: with prefixes configured, only GUNs under
/// one of them are served.
fn gun_allowed<S: Store>(state: &AppState<S>, gun: &str) -> bool {
    state.gun_prefixes.is_empty()
        || state
            .gun_prefixes
            .iter()
            .any(|p| gun.starts_with(p.as_str()))
}

fn http_date(at: OffsetDateTime) -> String {
    let seconds = u64::try_from(at.unix_timestamp()).unwrap_or(0);
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds))
}

/// A metadata file with Notary's cache headers (§1.8).
fn metadata<S: Store>(
    state: &AppState<S>,
    result: Result<Served, RepoError>,
    consistent: bool,
    head: bool,
) -> Response {
    let served = match result {
        Ok(served) => served,
        Err(error) => return ApiError::from_repo(&error, false).into_response(),
    };
    let mut headers = HeaderMap::new();
    let max_age = if consistent {
        state.caching.consistent_max_age
    } else {
        state.caching.current_max_age
    };
    let cache_control = match (max_age, consistent) {
        (0, _) => {
            headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            "max-age=0, no-cache, no-store".to_string()
        }
        (age, true) => format!("public, max-age={age}, s-maxage={age}"),
        (age, false) => format!("public, max-age={age}, s-maxage={age}, must-revalidate"),
    };
    if let Ok(value) = HeaderValue::from_str(&cache_control) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    if let Ok(value) = HeaderValue::from_str(&http_date(served.last_modified)) {
        headers.insert(header::LAST_MODIFIED, value);
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if head {
        if let Ok(value) = HeaderValue::from_str(&served.data.len().to_string()) {
            headers.insert(header::CONTENT_LENGTH, value);
        }
        return (StatusCode::OK, headers, Body::empty()).into_response();
    }
    (StatusCode::OK, headers, served.data).into_response()
}

fn key_response(result: Result<crate::tuf::PublicKey, RepoError>) -> Response {
    match result {
        Ok(key) => {
            let body = serde_json::to_vec(&key.to_json()).unwrap_or_default();
            (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response()
        }
        Err(error) => ApiError::from_repo(&error, false).into_response(),
    }
}

async fn rotate<S: Store>(
    state: &AppState<S>,
    gun: &str,
    role: &RoleName,
    caller: &Caller,
) -> Response {
    tracing::info!(subject = %caller.subject(), role = %role, "rotating a server-held key");
    key_response(state.repo.rotate_key(gun, role, caller.subject()).await)
}

async fn delete<S: Store>(state: &AppState<S>, gun: &str, caller: &Caller) -> Response {
    tracing::info!(subject = %caller.subject(), "deleting trust data");
    match state.repo.delete(gun, caller.subject()).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(error) => ApiError::from_repo(&error, true).into_response(),
    }
}

fn json_ok(body: &serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response()
}

/// `GET /v2/<gun>/_trust/audit?limit=N&before=ID`: the repository's audit
/// trail, newest first (`*` on the GUN).
async fn audit<S: Store>(state: &AppState<S>, gun: &str, query: &str) -> Response {
    let mut limit = None;
    let mut before = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, slot) = match key {
            "limit" => ("limit", &mut limit),
            "before" => ("before", &mut before),
            _ => continue,
        };
        if let Ok(number) = value.parse::<i64>() {
            *slot = Some(number);
        } else {
            let error = RepoError::InvalidParameters {
                problem: ParamProblem::NotInteger { name },
            };
            return ApiError::from_repo(&error, false).into_response();
        }
    }
    match state.repo.audit(gun, limit, before).await {
        Ok(records) => json_ok(&json!({"count": records.len(), "records": records})),
        Err(error) => ApiError::from_repo(&error, false).into_response(),
    }
}

/// `GET|PUT|DELETE /v2/<gun>/_trust/immutable` (`*` on the GUN): show, set
/// or clear the stored immutability mark; a configured mark cannot be
/// cleared here, and the answer says so.
async fn immutable<S: Store>(
    state: &AppState<S>,
    gun: &str,
    action: ImmutableAction,
    caller: &Caller,
) -> Response {
    let changed = match action {
        ImmutableAction::Show => Ok(false),
        ImmutableAction::Set => state.repo.set_immutable(gun, true).await,
        ImmutableAction::Clear => state.repo.set_immutable(gun, false).await,
    };
    if let Err(error) = changed {
        return ApiError::from_repo(&error, action != ImmutableAction::Show).into_response();
    }
    if action != ImmutableAction::Show {
        tracing::info!(subject = %caller.subject(), ?action, "immutability changed");
    }
    let configured = state.repo.immutable_by_configuration(gun);
    match state.repo.is_immutable(gun).await {
        Ok(immutable) => json_ok(&json!({
            "gun": gun,
            "immutable": immutable,
            "configured": configured,
        })),
        Err(error) => ApiError::from_repo(&error, false).into_response(),
    }
}

async fn changefeed<S: Store>(state: &AppState<S>, gun: Option<&str>, query: &str) -> Response {
    let mut records = None;
    let mut change_id = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode_path(value).unwrap_or_default();
        match key {
            "records" => records = Some(value),
            "change_id" => change_id = Some(value),
            _ => {}
        }
    }
    let result = state
        .repo
        .changes(gun, change_id.as_deref(), records.as_deref())
        .await;
    match result {
        Ok(changes) => {
            let records: Vec<_> = changes
                .iter()
                .map(|change| {
                    json!({
                        "ID": change.id.to_string(),
                        "CreatedAt": crate::tuf::encoding::format_time(change.created_at),
                        "GUN": change.gun,
                        "Version": change.version,
                        "SHA256": change.sha256,
                        "Category": change.category.as_str(),
                    })
                })
                .collect();
            let body = json!({"count": records.len(), "records": records});
            (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                serde_json::to_vec(&body).unwrap_or_default(),
            )
                .into_response()
        }
        Err(error) => ApiError::from_repo(&error, false).into_response(),
    }
}

/// How much of a refused upload is still read (and dropped) so that the
/// client, which writes its whole body before reading the answer, gets the
/// refusal instead of a reset connection — as Go's net/http does.
const DISCARD_MAX_BYTES: usize = 64 << 20;
/// How long an upload's body may take to arrive.
const UPLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
const DISCARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn discard(mut stream: axum::body::BodyDataStream, limit: usize) {
    let drain = async {
        let mut left = limit;
        while let Some(Ok(chunk)) = stream.next().await {
            left = left.saturating_sub(chunk.len());
            if left == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIMEOUT, drain).await;
}

/// Reads at most `limit` bytes of body; `Ok(None)` if it is larger (the
/// rest has been drained).
async fn read_bounded(body: Body, limit: usize) -> Result<Option<Vec<u8>>, RepoError> {
    let mut stream = body.into_data_stream();
    let mut collected = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            tracing::info!(error = %e, "upload body unreadable");
            RepoError::MalformedUpload {
                problem: UploadProblem::Unreadable,
            }
        })?;
        if collected.len() + chunk.len() > limit {
            discard(stream, DISCARD_MAX_BYTES).await;
            return Ok(None);
        }
        collected.extend_from_slice(&chunk);
    }
    Ok(Some(collected))
}

/// `POST /v2/<gun>/_trust/tuf/`: a bounded multipart body of metadata files.
async fn update<S: Store>(
    state: &AppState<S>,
    gun: &str,
    caller: &Caller,
    request: Request,
) -> Response {
    let limit = state.max_body_bytes;
    let too_large = |size: Option<u64>| {
        ApiError::from_repo(
            &RepoError::TooLarge {
                size,
                limit: u64::try_from(limit).unwrap_or(u64::MAX),
            },
            true,
        )
        .into_response()
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if let Some(size) = declared.filter(|&size| size > u64::try_from(limit).unwrap_or(u64::MAX)) {
        discard(request.into_body().into_data_stream(), DISCARD_MAX_BYTES).await;
        return too_large(Some(size));
    }
    // A client that trickles its body cannot hold a buffer forever.
    let read = tokio::time::timeout(UPLOAD_TIMEOUT, read_bounded(request.into_body(), limit)).await;
    let body = match read {
        Ok(Ok(Some(body))) => Bytes::from(body),
        Ok(Ok(None)) => return too_large(None),
        Ok(Err(error)) => return ApiError::from_repo(&error, true).into_response(),
        Err(_) => {
            let error = RepoError::MalformedUpload {
                problem: UploadProblem::Timeout {
                    seconds: UPLOAD_TIMEOUT.as_secs(),
                },
            };
            return ApiError::from_repo(&error, true).into_response();
        }
    };
    let parts = match read_multipart(&content_type, body).await {
        Ok(parts) => parts,
        Err(error) => return ApiError::from_repo(&error, true).into_response(),
    };
    match state.repo.publish(gun, parts, caller.subject()).await {
        Ok(()) => {
            tracing::info!(subject = %caller.subject(), "published");
            metrics::counter!("notarium_publishes_total").increment(1);
            StatusCode::OK.into_response()
        }
        Err(error) => ApiError::from_repo(&error, true).into_response(),
    }
}

/// Splits a `multipart/form-data` (or `multipart/mixed`) body into
/// `(filename, bytes)` parts. The role is the raw `filename` parameter, not
/// a basename: delegation names contain slashes (PROTOCOL.md §11.1).
async fn read_multipart(
    content_type: &str,
    body: Bytes,
) -> Result<Vec<(String, Vec<u8>)>, RepoError> {
    super::multipart::parse(content_type, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn multipart_keeps_slashes_in_file_names() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"targets/releases\"\r\n\
                    Content-Type: application/octet-stream\r\n\r\n{}\r\n--XyZ--\r\n";
        let parts = read_multipart("multipart/form-data; boundary=XyZ", Bytes::from(body))
            .await
            .unwrap();
        assert_eq!(
            parts,
            vec![("targets/releases".to_string(), b"{}".to_vec())]
        );
        assert!(
            read_multipart("application/json", Bytes::new())
                .await
                .is_err()
        );
        assert!(
            read_multipart(
                "multipart/form-data; boundary=XyZ",
                Bytes::from("--XyZ\r\ngarbage")
            )
            .await
            .is_err()
        );
    }
}

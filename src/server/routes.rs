//! Notary-server's routes (PROTOCOL.md §1.1). GUNs contain slashes, so the
//! `/v2/…` paths are parsed here rather than by the router: the GUN is
//! everything before the last `/_trust/`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::json;
use time::OffsetDateTime;

use super::AppState;
use super::error::{ApiError, Code};
use crate::repo::{ANONYMOUS, Error as RepoError, Served, check_gun};
use crate::store::Store;
use crate::tuf::RoleName;

/// The operation a request maps to, as notary-server names it; used as the
/// low-cardinality route label in logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation(pub &'static str);

/// What a `/v2/<gun>/_trust/tuf/<file>` path asks for.
#[derive(Debug, PartialEq, Eq)]
enum TufFile {
    Current(RoleName),
    ByChecksum(RoleName, String),
    ByVersion(RoleName, i64),
    Key(RoleName),
}

fn parse_tuf_file(file: &str) -> Option<TufFile> {
    if let Some(role) = file.strip_suffix(".key") {
        return match role {
            "timestamp" => Some(TufFile::Key(RoleName::Timestamp)),
            "snapshot" => Some(TufFile::Key(RoleName::Snapshot)),
            _ => None,
        };
    }
    let stem = file.strip_suffix(".json")?;
    if let Ok(role) = RoleName::parse(stem) {
        return Some(TufFile::Current(role));
    }
    // `<role>.<checksum>`: 64, 96 or 128 hex digits.
    if let Some((role, checksum)) = stem.rsplit_once('.') {
        let hex = checksum.bytes().all(|b| b.is_ascii_hexdigit());
        if hex && matches!(checksum.len(), 64 | 96 | 128) {
            if let Ok(role) = RoleName::parse(role) {
                return Some(TufFile::ByChecksum(role, checksum.to_string()));
            }
        }
    }
    // `<version>.<role>`.
    if let Some((version, role)) = stem.split_once('.') {
        if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) {
            if let (Ok(version), Ok(role)) = (version.parse::<i64>(), RoleName::parse(role)) {
                return Some(TufFile::ByVersion(role, version));
            }
        }
    }
    None
}

/// Percent-decodes a path as mux matches on the decoded form.
fn decode_path(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn with_operation(mut response: Response, operation: &'static str) -> Response {
    response.extensions_mut().insert(Operation(operation));
    response
}

/// Every request that is not `/v2/`, health or metrics lands here.
pub async fn dispatch<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    request: Request,
) -> Response {
    let method = request.method().clone();
    let Some(path) = decode_path(request.uri().path()) else {
        return with_operation(ApiError::not_found().into_response(), "NotFound");
    };
    let Some(rest) = path.strip_prefix("/v2/") else {
        return not_found_or_405(&method);
    };
    if rest == "_trust/changefeed" {
        if method != Method::GET {
            return not_found_or_405(&method);
        }
        let query = request.uri().query().unwrap_or("").to_string();
        return with_operation(changefeed(&state, None, &query).await, "Changefeed");
    }
    let Some(split) = rest.rfind("/_trust/") else {
        return not_found_or_405(&method);
    };
    let gun = &rest[..split];
    let tail = &rest[split + "/_trust/".len()..];
    if gun.is_empty() {
        return not_found_or_405(&method);
    }
    if tail == "changefeed" {
        if method != Method::GET {
            return not_found_or_405(&method);
        }
        let query = request.uri().query().unwrap_or("").to_string();
        if let Err(error) = check_gun(gun) {
            return with_operation(
                ApiError::from_repo(&error, false).into_response(),
                "Changefeed",
            );
        }
        if !gun_allowed(&state, gun) {
            return not_found_or_405(&method);
        }
        return with_operation(changefeed(&state, Some(gun), &query).await, "Changefeed");
    }
    let Some(file) = tail.strip_prefix("tuf/") else {
        return not_found_or_405(&method);
    };
    let gun = gun.to_string();
    tracing::Span::current().record("gun", gun.as_str());
    // notary-server's prefix filter: 400 on update, 404 elsewhere (§1.1).
    if !gun_allowed(&state, &gun) {
        if method == Method::POST && file.is_empty() {
            let message = format!(
                "Require GUNs with prefix: [{}]",
                state.gun_prefixes.join(" ")
            );
            return with_operation(
                ApiError::client(Code::InvalidGun, &message, "gun_prefix").into_response(),
                "UpdateTUF",
            );
        }
        return not_found_or_405(&method);
    }
    if file.is_empty() {
        return match method {
            Method::POST => {
                let response = match check_gun(&gun) {
                    Ok(()) => update(&state, &gun, request).await,
                    Err(error) => ApiError::from_repo(&error, true).into_response(),
                };
                with_operation(response, "UpdateTUF")
            }
            Method::DELETE => {
                let response = match check_gun(&gun) {
                    Ok(()) => delete(&state, &gun).await,
                    Err(error) => ApiError::from_repo(&error, true).into_response(),
                };
                with_operation(response, "DeleteTUF")
            }
            _ => not_found_or_405(&method),
        };
    }
    let Some(target) = parse_tuf_file(file) else {
        return not_found_or_405(&method);
    };
    if let Err(error) = check_gun(&gun) {
        return ApiError::from_repo(&error, false).into_response();
    }
    let head = method == Method::HEAD;
    match (method, target) {
        (Method::GET | Method::HEAD, TufFile::Current(role)) => {
            let result = state.repo.current(&gun, &role).await;
            with_operation(metadata(&state, result, false, head), "GetRole")
        }
        (Method::GET | Method::HEAD, TufFile::ByChecksum(role, checksum)) => {
            let result = state.repo.by_checksum(&gun, &role, &checksum).await;
            with_operation(metadata(&state, result, true, head), "GetRoleByHash")
        }
        (Method::GET | Method::HEAD, TufFile::ByVersion(role, version)) => {
            let result = state.repo.by_version(&gun, &role, version).await;
            with_operation(metadata(&state, result, true, head), "GetRoleByVersion")
        }
        (Method::GET, TufFile::Key(role)) => {
            let result = state.repo.public_key(&gun, &role).await;
            with_operation(key_response(result), "GetKey")
        }
        (Method::POST, TufFile::Key(role)) => {
            let result = state.repo.rotate_key(&gun, &role, ANONYMOUS).await;
            with_operation(key_response(result), "RotateKey")
        }
        (method, _) => not_found_or_405(&method),
    }
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

/// Notary answers unknown paths with 404 for its five methods and 405 with
/// an empty body for any other method.
fn not_found_or_405(method: &Method) -> Response {
    let known = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::HEAD,
        Method::DELETE,
    ];
    if known.contains(method) {
        with_operation(ApiError::not_found().into_response(), "NotFound")
    } else {
        with_operation(StatusCode::METHOD_NOT_ALLOWED.into_response(), "NotFound")
    }
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

async fn delete<S: Store>(state: &AppState<S>, gun: &str) -> Response {
    match state.repo.delete(gun, ANONYMOUS).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(error) => ApiError::from_repo(&error, true).into_response(),
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

async fn discard(mut stream: axum::body::BodyDataStream) {
    let drain = async {
        let mut left = DISCARD_MAX_BYTES;
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
        let chunk = chunk.map_err(|e| RepoError::MalformedUpload {
            reason: format!("the request body could not be read: {e}"),
        })?;
        if collected.len() + chunk.len() > limit {
            discard(stream).await;
            return Ok(None);
        }
        collected.extend_from_slice(&chunk);
    }
    Ok(Some(collected))
}

/// `POST /v2/<gun>/_trust/tuf/`: a bounded multipart body of metadata files.
async fn update<S: Store>(state: &AppState<S>, gun: &str, request: Request) -> Response {
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
        discard(request.into_body().into_data_stream()).await;
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
                reason: format!(
                    "the upload was not received within {} seconds",
                    UPLOAD_TIMEOUT.as_secs()
                ),
            };
            return ApiError::from_repo(&error, true).into_response();
        }
    };
    let parts = match read_multipart(&content_type, body).await {
        Ok(parts) => parts,
        Err(error) => return ApiError::from_repo(&error, true).into_response(),
    };
    match state.repo.publish(gun, parts, ANONYMOUS).await {
        Ok(()) => {
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
    let malformed = |reason: String| RepoError::MalformedUpload { reason };
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "multipart/form-data" && mime != "multipart/mixed" {
        return Err(malformed(format!(
            "expected a multipart/form-data body, got {:?}",
            content_type.chars().take(60).collect::<String>()
        )));
    }
    let boundary =
        multer::parse_boundary(content_type.replacen("multipart/mixed", "multipart/form-data", 1))
            .map_err(|e| malformed(format!("no multipart boundary: {e}")))?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut parts = Vec::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(malformed(format!("unreadable multipart body: {e}"))),
        };
        let filename = field.file_name().unwrap_or("").to_string();
        let data = field
            .bytes()
            .await
            .map_err(|e| malformed(format!("unreadable part {filename:?}: {e}")))?;
        parts.push((filename, data.to_vec()));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuf_file_names_parse_like_notarys_routes() {
        assert_eq!(
            parse_tuf_file("root.json"),
            Some(TufFile::Current(RoleName::Root))
        );
        assert_eq!(
            parse_tuf_file("targets/releases.json"),
            Some(TufFile::Current(
                RoleName::parse("targets/releases").unwrap()
            ))
        );
        let hash = "a".repeat(64);
        assert_eq!(
            parse_tuf_file(&format!("snapshot.{hash}.json")),
            Some(TufFile::ByChecksum(RoleName::Snapshot, hash.clone()))
        );
        assert_eq!(
            parse_tuf_file(&format!("targets/a.{hash}.json")),
            Some(TufFile::ByChecksum(
                RoleName::parse("targets/a").unwrap(),
                hash
            ))
        );
        assert_eq!(
            parse_tuf_file("2.root.json"),
            Some(TufFile::ByVersion(RoleName::Root, 2))
        );
        assert_eq!(
            parse_tuf_file("timestamp.key"),
            Some(TufFile::Key(RoleName::Timestamp))
        );
        assert_eq!(parse_tuf_file("targets.key"), None);
        assert_eq!(parse_tuf_file("nope.json"), None);
        assert_eq!(parse_tuf_file("root.abc.json"), None);
    }

    #[test]
    fn paths_are_percent_decoded() {
        assert_eq!(decode_path("/v2/a%2Fb/x").as_deref(), Some("/v2/a/b/x"));
        assert_eq!(decode_path("/bad%zz"), None);
    }

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

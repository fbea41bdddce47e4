//! The one place where errors become HTTP responses in Notary's format
//! (PROTOCOL.md §2): `{"errors":[{"code","message","detail"}]}`, status from
//! the code. Rejections carry a `detail` the notary client parses and prints,
//! so users see why; the body stays under the 1 KiB clients read.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::auth::Required;
use crate::policy::Violation;
use crate::policy::names::NameError;
use crate::repo::{Error as RepoError, Rejection};
use crate::signer::Error as SignerError;
use crate::store::Error as StoreError;

mod wording;

/// Clients read at most this many bytes of an error body.
const MAX_ERROR_BODY: usize = 1024;

/// Notary's error codes (`server/errors/errors.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    NoFilename,
    InvalidRole,
    MalformedJson,
    Updating,
    Version,
    MetadataNotFound,
    InvalidUpdate,
    MalformedUpload,
    InvalidGun,
    InvalidParameters,
    /// errcode's `UNAVAILABLE`: busy, retry later.
    Unavailable,
    Unknown,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoFilename => "NO_FILENAME",
            Self::InvalidRole => "INVALID_ROLE",
            Self::MalformedJson => "MALFORMED_JSON",
            Self::Updating => "UPDATING",
            Self::Version => "VERSION",
            Self::MetadataNotFound => "METADATA_NOT_FOUND",
            Self::InvalidUpdate => "INVALID_UPDATE",
            Self::MalformedUpload => "MALFORMED_UPLOAD",
            Self::InvalidGun => "INVALID_GUN",
            Self::InvalidParameters => "INVALID_PARAMETERS",
            Self::Unavailable => "UNAVAILABLE",
            Self::Unknown => "UNKNOWN",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::MetadataNotFound => StatusCode::NOT_FOUND,
            Self::Updating | Self::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::NoFilename => "No file/role name provided.",
            Self::InvalidRole => "The role you are attempting to operate on is invalid.",
            Self::MalformedJson => "JSON sent by the client could not be parsed by the server",
            Self::Updating => "An error has occurred while updating the TUF repository.",
            Self::Version => "A newer version of metadata is already available.",
            Self::MetadataNotFound => "You have requested metadata that does not exist.",
            Self::InvalidUpdate => "Update sent by the client is invalid.",
            Self::MalformedUpload => "The body of your request is malformed.",
            Self::InvalidGun => "The server does not support actions on images of this name.",
            Self::InvalidParameters => "The parameters provided are not valid.",
            Self::Unavailable => "service unavailable",
            Self::Unknown => "unknown error",
        }
    }
}

/// An error response: code, optional detail, and a label for metrics.
#[derive(Debug)]
pub struct ApiError {
    pub code: Code,
    pub detail: Option<Value>,
    /// Why a client request was refused (metrics label), if it was.
    pub reason: &'static str,
    /// Seconds for a `Retry-After` header, for a busy server.
    pub retry_after: Option<u64>,
}

/// A detail the notary client turns into `<prefix>: <message>`.
fn readable(kind: Rejection, message: &str) -> Value {
    let mut error = json!({ "Msg": message });
    if let Rejection::BadHierarchy { missing } = kind {
        error["Missing"] = json!(missing);
    }
    json!({ "Name": detail_name(kind), "Error": error })
}

/// The `detail.Name` Notary's client recognises; it picks the prefix the
/// client prints before the message (PROTOCOL.md §2.3).
fn detail_name(kind: Rejection) -> &'static str {
    match kind {
        Rejection::Validation => "ErrValidation",
        Rejection::BadHierarchy { .. } => "ErrBadHierarchy",
        Rejection::BadRoot => "ErrBadRoot",
        Rejection::BadTargets => "ErrBadTargets",
        Rejection::BadSnapshot => "ErrBadSnapshot",
    }
}

/// Short machine label for metrics.
fn label(kind: Rejection) -> &'static str {
    match kind {
        Rejection::Validation => "validation",
        Rejection::BadHierarchy { .. } => "bad_hierarchy",
        Rejection::BadRoot => "bad_root",
        Rejection::BadTargets => "bad_targets",
        Rejection::BadSnapshot => "bad_snapshot",
    }
}

impl ApiError {
    pub fn new(code: Code, detail: Option<Value>, reason: &'static str) -> Self {
        Self {
            code,
            detail,
            reason,
            retry_after: None,
        }
    }

    pub fn not_found() -> Self {
        Self::new(Code::MetadataNotFound, None, "not_found")
    }

    /// A client mistake, reported under `code` with a message clients print.
    pub fn client(code: Code, message: &str, reason: &'static str) -> Self {
        Self::new(code, Some(readable(Rejection::Validation, message)), reason)
    }

    /// An update to a GUN outside `repositories.gun_prefixes`.
    pub fn gun_prefix(prefixes: &[String]) -> Self {
        Self::client(
            Code::InvalidGun,
            &wording::gun_prefix(prefixes),
            "gun_prefix",
        )
    }

    /// Maps a repository error, logging server faults once with their cause.
    /// The words come from `wording`; here are Notary's code, the detail
    /// name (the client's prefix) and the metrics label.
    pub fn from_repo(error: &RepoError, writing: bool) -> Self {
        let message = wording::repo_message(error).unwrap_or_default();
        let refused = |code: Code, kind: Rejection, label: &'static str| {
            Self::new(code, Some(readable(kind, &message)), label)
        };
        match error {
            RepoError::InvalidGun { .. } => {
                refused(Code::InvalidGun, Rejection::Validation, "invalid_gun")
            }
            RepoError::NoFilename => {
                refused(Code::NoFilename, Rejection::Validation, "no_filename")
            }
            RepoError::InvalidRole { .. } => {
                refused(Code::InvalidRole, Rejection::Validation, "invalid_role")
            }
            RepoError::MalformedJson { .. } => {
                refused(Code::MalformedJson, Rejection::Validation, "malformed_json")
            }
            RepoError::MalformedUpload { .. } => refused(
                Code::MalformedUpload,
                Rejection::Validation,
                "malformed_upload",
            ),
            RepoError::TooLarge { .. } => {
                refused(Code::MalformedUpload, Rejection::Validation, "too_large")
            }
            RepoError::Rejected { kind, .. } => refused(Code::InvalidUpdate, *kind, label(*kind)),
            RepoError::KeyIdMismatch { role, .. } => {
                let kind = if role == "root" {
                    Rejection::BadRoot
                } else {
                    Rejection::BadTargets
                };
                refused(Code::InvalidUpdate, kind, "key_id_mismatch")
            }
            RepoError::DuplicateJsonKey { role, .. } => {
                let kind = match role.as_str() {
                    "root" => Rejection::BadRoot,
                    "snapshot" => Rejection::BadSnapshot,
                    "timestamp" => Rejection::Validation,
                    _ => Rejection::BadTargets,
                };
                refused(Code::InvalidUpdate, kind, "duplicate_json_key")
            }
            RepoError::SnapshotStale { .. }
            | RepoError::SnapshotUnknownRole { .. }
            | RepoError::SnapshotDropsRole { .. } => refused(
                Code::InvalidUpdate,
                Rejection::BadSnapshot,
                "snapshot_inconsistent",
            ),
            RepoError::RetiredKey { .. } => {
                refused(Code::InvalidUpdate, Rejection::BadRoot, "retired_key")
            }
            RepoError::StaleVersion { .. } => {
                refused(Code::Version, Rejection::Validation, "old_version")
            }
            RepoError::Conflict { .. } => refused(Code::Version, Rejection::Validation, "conflict"),
            RepoError::NotFound { .. } => Self::not_found(),
            RepoError::Policy(violation) => Self::policy(violation, &message),
            // notary-server's detail here is the bare text.
            RepoError::InvalidParameters { .. } => Self::new(
                Code::InvalidParameters,
                Some(json!(message)),
                "invalid_parameters",
            ),
            RepoError::LimitExceeded { .. } => {
                refused(Code::InvalidUpdate, Rejection::Validation, "limit")
            }
            RepoError::Busy { .. } => {
                let mut error = refused(Code::Unavailable, Rejection::Validation, "busy");
                error.retry_after = Some(BUSY_RETRY_AFTER_SECONDS);
                error
            }
            RepoError::Store(StoreError::Unavailable(_))
            | RepoError::Signer(SignerError::Store(StoreError::Unavailable(_))) => {
                // Logged: the operator needs to know the database is away.
                tracing::error!(error = %error_chain(error), "database unavailable");
                let mut error = Self::client(
                    Code::Unavailable,
                    // Not "nothing was stored": a connection lost during a
                    // commit leaves the outcome unknown to us.
                    "the database is unavailable or busy: retry shortly",
                    "database_unavailable",
                );
                error.retry_after = Some(BUSY_RETRY_AFTER_SECONDS);
                error
            }
            RepoError::Signer(SignerError::SignerUnavailable { .. }) => {
                // Logged: the operator needs to know the signer is away.
                tracing::error!(error = %error_chain(error), "signer unavailable");
                let mut error = Self::client(
                    Code::Unavailable,
                    "the signing service is unavailable: retry shortly",
                    "signer_unavailable",
                );
                error.retry_after = Some(BUSY_RETRY_AFTER_SECONDS);
                error
            }
            // A remote signer that failed or answered wrongly: a server
            // fault, but the user must learn it is the signer (not the
            // network, not their data), and the notary client prints a
            // message only from a 400 (any other status reads "unable to
            // reach trust server"). So: 400 with an ErrValidation detail the
            // client prints, the full chain in the log. No Retry-After: a
            // retry does not mend a signer that signs wrongly or fails.
            RepoError::Signer(
                SignerError::SignerFailed { .. }
                | SignerError::SignerRefusedAlgorithm { .. }
                | SignerError::SignerKeyMismatch { .. }
                | SignerError::SignerWrongMethod { .. }
                | SignerError::SignerBadSignature { .. }
                | SignerError::SignerLostKey { .. },
            ) => {
                tracing::error!(error = %error_chain(error), "the signer failed");
                refused(Code::InvalidUpdate, Rejection::Validation, "signer_failed")
            }
            RepoError::Store(_)
            | RepoError::Signer(_)
            | RepoError::Generate(_)
            | RepoError::ValidationAborted => {
                tracing::error!(error = %error_chain(error), "request failed");
                let code = if writing {
                    Code::Updating
                } else {
                    Code::Unknown
                };
                Self::new(code, None, "")
            }
        }
    }

    /// Server-rule refusals: reported as invalid targets (the client prints
    /// "The targets metadata is invalid: …") except for a refused delete.
    fn policy(violation: &Violation, message: &str) -> Self {
        let (kind, reason) = match violation {
            Violation::Name(NameError::TagTooLong { .. } | NameError::TagGrammar { .. }) => {
                (Rejection::BadTargets, "invalid_tag")
            }
            Violation::Name(_) => return Self::client(Code::InvalidGun, message, "invalid_gun"),
            Violation::ImmutableTagChanged { .. } | Violation::ImmutableTagRemoved { .. } => {
                (Rejection::BadTargets, "immutable")
            }
            Violation::ImmutableRepository { .. } => (Rejection::Validation, "immutable"),
            Violation::Index { .. } => (Rejection::BadTargets, "manifest_index"),
            Violation::ManifestUnreachable { .. } => {
                (Rejection::Validation, "registry_unreachable")
            }
            Violation::UnknownDigest { .. } => (Rejection::BadTargets, "unknown_digest"),
            Violation::UntrustedDelegation { .. } => {
                (Rejection::BadTargets, "untrusted_delegation")
            }
        };
        Self::new(Code::InvalidUpdate, Some(readable(kind, message)), reason)
    }

    /// The JSON body, kept under the size clients read by shortening the
    /// message if need be.
    pub fn body(&self) -> Vec<u8> {
        let mut detail = self.detail.clone();
        loop {
            let mut entry = json!({"code": self.code.as_str(), "message": self.code.message()});
            if let Some(detail) = &detail {
                entry["detail"] = detail.clone();
            }
            let mut body = serde_json::to_vec(&json!({ "errors": [entry] })).unwrap_or_default();
            body.push(b'\n');
            if body.len() <= MAX_ERROR_BODY {
                return body;
            }
            let Some(message) = detail
                .as_mut()
                .and_then(|d| d.pointer_mut("/Error/Msg"))
                .and_then(|m| m.as_str().map(str::to_string))
            else {
                return body;
            };
            let over = body.len() - MAX_ERROR_BODY + 3;
            let keep = message.len().saturating_sub(over.max(16));
            let mut cut = keep;
            while cut > 0 && !message.is_char_boundary(cut) {
                cut -= 1;
            }
            if let Some(slot) = detail.as_mut().and_then(|d| d.pointer_mut("/Error/Msg")) {
                *slot = json!(format!("{}...", &message[..cut]));
            }
        }
    }
}

/// What a busy server asks clients to wait before retrying.
const BUSY_RETRY_AFTER_SECONDS: u64 = 5;

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Marks a response as a refusal, for the metrics layer.
#[derive(Debug, Clone, Copy)]
pub struct RejectionReason(pub &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.code.status(), self.body()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if !self.reason.is_empty() {
            response
                .extensions_mut()
                .insert(RejectionReason(self.reason));
        }
        response
    }
}

/// Why a request was refused by token auth; decides the challenge's
/// `error` parameter (docker/distribution `token/accesscontroller.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization: Bearer <token>`: no `error` (the client is simply
    /// told where to get a token).
    TokenRequired,
    /// A token that is malformed, forged, expired or not for us.
    InvalidToken,
    /// A valid token without the access the route needs.
    InsufficientScope,
}

/// A 401 with notary's challenge and body (PROTOCOL.md §8).
#[derive(Debug)]
pub struct Unauthorized<'a> {
    pub realm: String,
    pub service: String,
    pub required: Required<'a>,
    pub failure: AuthFailure,
}

/// Go's `%q` for the ASCII a header can carry: `"` and `\` escaped,
/// anything else outside printable ASCII as `\xNN`.
fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for byte in text.bytes() {
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(byte)),
            other => out.push_str(&format!("\\x{other:02x}")),
        }
    }
    out.push('"');
    out
}

/// Go's `json.Encoder` escapes `<`, `>`, `&` (and U+2028/9) in strings;
/// outside strings these never occur in JSON.
fn go_json_escape(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// One entry of the 401 `detail`: distribution's `auth.Access`, with the
/// field order Go writes.
#[derive(serde::Serialize)]
struct AccessDetail<'a> {
    #[serde(rename = "Type")]
    kind: &'a str,
    #[serde(rename = "Class")]
    class: &'a str,
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "Action")]
    action: &'a str,
}

#[derive(serde::Serialize)]
struct UnauthorizedEntry<'a> {
    code: &'a str,
    message: &'a str,
    detail: Vec<AccessDetail<'a>>,
}

#[derive(serde::Serialize)]
struct UnauthorizedBody<'a> {
    errors: [UnauthorizedEntry<'a>; 1],
}

impl Unauthorized<'_> {
    /// `Bearer realm="…",service="…",scope="…"[,error="…"]`.
    pub fn challenge(&self) -> String {
        let mut challenge = format!(
            "Bearer realm={},service={},scope={}",
            go_quote(&self.realm),
            go_quote(&self.service),
            go_quote(&self.required.scope())
        );
        match self.failure {
            AuthFailure::TokenRequired => {}
            AuthFailure::InvalidToken => challenge.push_str(",error=\"invalid_token\""),
            AuthFailure::InsufficientScope => {
                challenge.push_str(",error=\"insufficient_scope\"");
            }
        }
        challenge
    }

    /// `{"errors":[{"code":"UNAUTHORIZED","message":"authentication
    /// required","detail":[{"Type","Class","Name","Action"},…]}]}` + `\n`.
    pub fn body(&self) -> Vec<u8> {
        let resource = &self.required.resource;
        let detail = self
            .required
            .actions
            .iter()
            .map(|action| AccessDetail {
                kind: resource.kind(),
                class: "",
                name: resource.name(),
                action: action.as_str(),
            })
            .collect();
        let body = UnauthorizedBody {
            errors: [UnauthorizedEntry {
                code: "UNAUTHORIZED",
                message: "authentication required",
                detail,
            }],
        };
        let mut text = go_json_escape(&serde_json::to_string(&body).unwrap_or_default());
        text.push('\n');
        text.into_bytes()
    }
}

impl IntoResponse for Unauthorized<'_> {
    fn into_response(self) -> Response {
        let mut response = (StatusCode::UNAUTHORIZED, self.body()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        // Quoting leaves only printable ASCII, so this always succeeds.
        if let Ok(value) = HeaderValue::from_str(&self.challenge()) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        let reason = match self.failure {
            AuthFailure::TokenRequired => "token_required",
            AuthFailure::InvalidToken => "invalid_token",
            AuthFailure::InsufficientScope => "insufficient_scope",
        };
        response.extensions_mut().insert(RejectionReason(reason));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{DelegationKeyProblem, IndexKind, LookupFailure};
    use crate::repo::{Busy, Cap, ParamProblem, Refusal, UploadProblem};
    use crate::tuf::certs::{CertificateProblem, RejectedRootKey};
    use crate::tuf::{Error as TufError, RejectedSignature, RoleName};
    use wording::{lookup_failure, refusal_message};

    #[test]
    fn every_repo_error_maps_to_notarys_status_and_code() {
        use crate::store::Error as StoreError;
        let cases: Vec<(RepoError, StatusCode, &str)> = vec![
            (
                RepoError::InvalidGun {
                    gun: "x".into(),
                    reason: NameError::EmptyGun,
                },
                StatusCode::BAD_REQUEST,
                "INVALID_GUN",
            ),
            (
                RepoError::NoFilename,
                StatusCode::BAD_REQUEST,
                "NO_FILENAME",
            ),
            (
                RepoError::RetiredKey {
                    role: "timestamp",
                    key_id: "k".into(),
                    retired_at: time::OffsetDateTime::UNIX_EPOCH,
                },
                StatusCode::BAD_REQUEST,
                "INVALID_UPDATE",
            ),
            (
                RepoError::InvalidRole { role: "x".into() },
                StatusCode::BAD_REQUEST,
                "INVALID_ROLE",
            ),
            (
                RepoError::MalformedJson {
                    role: "targets".into(),
                    error: TufError::BadSignature,
                },
                StatusCode::BAD_REQUEST,
                "MALFORMED_JSON",
            ),
            (
                RepoError::MalformedUpload {
                    problem: UploadProblem::BadMultipart,
                },
                StatusCode::BAD_REQUEST,
                "MALFORMED_UPLOAD",
            ),
            (
                RepoError::TooLarge {
                    size: Some(2),
                    limit: 1,
                },
                StatusCode::BAD_REQUEST,
                "MALFORMED_UPLOAD",
            ),
            (
                RepoError::Rejected {
                    kind: Rejection::BadTargets,
                    reason: Box::new(Refusal::TargetsMissing),
                },
                StatusCode::BAD_REQUEST,
                "INVALID_UPDATE",
            ),
            (
                RepoError::KeyIdMismatch {
                    role: "targets/releases".into(),
                    listed: "a".into(),
                    computed: "b".into(),
                },
                StatusCode::BAD_REQUEST,
                "INVALID_UPDATE",
            ),
            (
                RepoError::DuplicateJsonKey {
                    role: "root".into(),
                    key: "k".into(),
                    path: "$".into(),
                },
                StatusCode::BAD_REQUEST,
                "INVALID_UPDATE",
            ),
            (
                RepoError::SnapshotStale {
                    role: "targets".into(),
                    current: 2,
                },
                StatusCode::BAD_REQUEST,
                "INVALID_UPDATE",
            ),
            (
                RepoError::SnapshotUnknownRole {
                    role: "targets/x".into(),
                },
                StatusCode::BAD_REQUEST,
                "INVALID_UPDATE",
            ),
            (
                RepoError::SnapshotDropsRole {
                    role: "targets/x".into(),
                    parent: "targets".into(),
                },
                StatusCode::BAD_REQUEST,
                "INVALID_UPDATE",
            ),
            (
                RepoError::StaleVersion {
                    role: "targets".into(),
                    version: 1,
                    current: 2,
                },
                StatusCode::BAD_REQUEST,
                "VERSION",
            ),
            (
                RepoError::Conflict {
                    role: "timestamp".into(),
                    version: 3,
                },
                StatusCode::BAD_REQUEST,
                "VERSION",
            ),
            (
                RepoError::NotFound {
                    what: "root".into(),
                },
                StatusCode::NOT_FOUND,
                "METADATA_NOT_FOUND",
            ),
            (
                RepoError::InvalidParameters {
                    problem: ParamProblem::RecordsMissing,
                },
                StatusCode::BAD_REQUEST,
                "INVALID_PARAMETERS",
            ),
            (
                RepoError::Store(StoreError::NotFound),
                StatusCode::INTERNAL_SERVER_ERROR,
                "UPDATING",
            ),
            (
                RepoError::LimitExceeded {
                    cap: Cap::TargetsPerFile,
                    role: Some("targets".into()),
                    count: 2,
                    limit: 1,
                },
                StatusCode::BAD_REQUEST,
                "INVALID_UPDATE",
            ),
            (
                RepoError::Busy {
                    what: Busy::RepositoryLock,
                    waited_seconds: 30,
                },
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
            ),
            (
                RepoError::ValidationAborted,
                StatusCode::INTERNAL_SERVER_ERROR,
                "UPDATING",
            ),
            (
                RepoError::Store(StoreError::Unavailable("connection refused".into())),
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
            ),
            (
                RepoError::Signer(SignerError::Store(StoreError::Unavailable(
                    "connection refused".into(),
                ))),
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
            ),
            (
                RepoError::Signer(SignerError::SignerUnavailable {
                    reason: "connection refused".into(),
                }),
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
            ),
            // A remote signer's failures: 400 so the client prints why.
            (
                RepoError::Signer(SignerError::SignerFailed {
                    code: tonic::Code::Internal,
                    reason: "Signing failed".into(),
                }),
                StatusCode::BAD_REQUEST,
                "INVALID_UPDATE",
            ),
            (
                RepoError::Signer(SignerError::SignerBadSignature { key_id: "k".into() }),
                StatusCode::BAD_REQUEST,
                "INVALID_UPDATE",
            ),
            (
                RepoError::Signer(SignerError::SignerLostKey { key_id: "k".into() }),
                StatusCode::BAD_REQUEST,
                "INVALID_UPDATE",
            ),
            // The local signer's faults stay server errors.
            (
                RepoError::Signer(SignerError::KeyMismatch { key_id: "k".into() }),
                StatusCode::INTERNAL_SERVER_ERROR,
                "UPDATING",
            ),
            (
                RepoError::Signer(SignerError::UnknownKey { key_id: "k".into() }),
                StatusCode::INTERNAL_SERVER_ERROR,
                "UPDATING",
            ),
            (
                RepoError::Signer(SignerError::Store(StoreError::NotFound)),
                StatusCode::INTERNAL_SERVER_ERROR,
                "UPDATING",
            ),
        ];
        for (error, status, code) in cases {
            let api = ApiError::from_repo(&error, true);
            assert_eq!(api.code.status(), status, "{error:?}");
            assert_eq!(api.code.as_str(), code, "{error:?}");
            let body: Value = serde_json::from_slice(&api.body()).unwrap();
            assert_eq!(body["errors"].as_array().unwrap().len(), 1);
        }
    }

    fn shown(error: &RepoError) -> String {
        let body: Value = serde_json::from_slice(&ApiError::from_repo(error, true).body()).unwrap();
        body["errors"][0]["detail"]["Error"]["Msg"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn refusals_say_what_to_do_and_nothing_internal() {
        let limit = shown(&RepoError::LimitExceeded {
            cap: Cap::KeysPerRole,
            role: Some("targets/releases".into()),
            count: 40,
            limit: 32,
        });
        assert!(
            limit.contains("targets/releases")
                && limit.contains("40")
                && limit.contains("at most 32")
                && limit.contains("limits.keys_per_role"),
            "{limit}"
        );
        let busy = ApiError::from_repo(
            &RepoError::Busy {
                what: Busy::Validation,
                waited_seconds: 30,
            },
            true,
        );
        let response = busy.into_response();
        assert_eq!(
            response.headers().get(header::RETRY_AFTER).unwrap(),
            &HeaderValue::from(BUSY_RETRY_AFTER_SECONDS)
        );
        let upload = shown(&RepoError::MalformedUpload {
            problem: UploadProblem::BadMultipart,
        });
        assert!(upload.contains("not well-formed multipart"), "{upload}");
        for failure in [
            LookupFailure::Unreachable,
            LookupFailure::CredentialsRefused,
            LookupFailure::Timeout,
        ] {
            let message = shown(&RepoError::Policy(Violation::ManifestUnreachable {
                tag: "1.0".into(),
                digest: "sha256:ab".into(),
                registry: "registry.example.com".into(),
                failure,
            }));
            assert!(
                message.starts_with("cannot check manifest type of tag 1.0")
                    && message.contains("registry.example.com")
                    && message.contains(lookup_failure(failure)),
                "{message}"
            );
        }
        // Server faults carry no detail at all.
        let fault = ApiError::from_repo(&RepoError::ValidationAborted, true);
        assert!(fault.detail.is_none());
    }

    #[test]
    fn a_remote_signers_failures_are_told_to_the_client_without_retry() {
        let key_id = "ab".repeat(32);
        let cases = [
            (
                SignerError::SignerFailed {
                    code: tonic::Code::Internal,
                    reason: "Signing failed for KeyID on hash {secret}".into(),
                },
                "reported an error (internal error)",
            ),
            (
                SignerError::SignerRefusedAlgorithm {
                    algorithm: "ed25519".into(),
                    reason: "unsupported".into(),
                },
                "refuses to create ed25519 keys",
            ),
            (
                SignerError::SignerKeyMismatch {
                    key_id: key_id.clone(),
                    actual: "cd".repeat(32),
                },
                "described key abababa with a public key whose ID is cdcdcdc",
            ),
            (
                SignerError::SignerWrongMethod {
                    key_id: key_id.clone(),
                    method: "eddsa".into(),
                    keytype: "ecdsa".into(),
                },
                "method \"eddsa\", which does not fit key abababa (a ecdsa key)",
            ),
            (
                SignerError::SignerBadSignature {
                    key_id: key_id.clone(),
                },
                "signature that does not verify with key abababa",
            ),
            (
                SignerError::SignerLostKey {
                    key_id: key_id.clone(),
                },
                "no longer holds key abababa",
            ),
        ];
        for (signer, expected) in cases {
            let error = RepoError::Signer(signer);
            for writing in [true, false] {
                let api = ApiError::from_repo(&error, writing);
                assert_eq!(api.code, Code::InvalidUpdate, "{error:?}");
                assert_eq!(api.reason, "signer_failed");
                assert!(api.retry_after.is_none(), "{error:?}");
                let body: Value = serde_json::from_slice(&api.body()).unwrap();
                // The name the notary client needs to print the message.
                assert_eq!(body["errors"][0]["detail"]["Name"], "ErrValidation");
                let message = printed(&body);
                assert!(
                    message.starts_with("the signing service ")
                        && message.contains(expected)
                        && message.contains("nothing was stored"),
                    "{message}"
                );
                // The signer's own words stay in the log.
                assert!(!message.contains("secret"), "{message}");
            }
        }
        let response = ApiError::from_repo(
            &RepoError::Signer(SignerError::SignerBadSignature { key_id }),
            true,
        )
        .into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn an_unavailable_database_asks_to_retry() {
        let error = RepoError::Store(StoreError::Unavailable("connection refused".into()));
        let response = ApiError::from_repo(&error, true).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER).unwrap(),
            &HeaderValue::from(BUSY_RETRY_AFTER_SECONDS)
        );
    }

    #[test]
    fn refusals_state_the_limitation_and_fit_in_a_client_error() {
        // A long but realistic GUN and the longest tag; longer ones are cut by
        // the error body limit, which keeps the reason (it comes first).
        let gun = format!("registry.example.com/{}", "a".repeat(40));
        for kind in [
            IndexKind::Application,
            IndexKind::OciIndex,
            IndexKind::ManifestList,
        ] {
            let message = refusal_message(
                &gun,
                &"t".repeat(128),
                &format!("sha256:{}", "f".repeat(64)),
                kind,
            );
            assert!(message.len() < 800, "{kind:?}: {} bytes", message.len());
            assert!(message.contains("reset"));
        }
        let app = refusal_message("r/a", "0.1.0", "sha256:abc", IndexKind::Application);
        assert!(app.contains("cannot sign an application") && app.contains("0.1.0-invoc"));
        let multi = refusal_message("r/a", "1.0", "sha256:abc", IndexKind::OciIndex);
        assert!(multi.contains("does not support multi-arch images"));
    }

    #[test]
    fn client_visible_details_use_notarys_names_and_stay_under_1_kib() {
        let error = RepoError::Rejected {
            kind: Rejection::BadTargets,
            reason: Box::new(Refusal::TargetOutsidePaths {
                target: "é".repeat(2000),
                role: RoleName::Targets,
                paths: Vec::new(),
            }),
        };
        let body = ApiError::from_repo(&error, true).body();
        assert!(body.len() <= MAX_ERROR_BODY, "{}", body.len());
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["errors"][0]["detail"]["Name"], "ErrBadTargets");
        assert!(
            parsed["errors"][0]["detail"]["Error"]["Msg"]
                .as_str()
                .unwrap()
                .ends_with("...")
        );
        let hierarchy = ApiError::from_repo(
            &RepoError::Rejected {
                kind: Rejection::BadHierarchy {
                    missing: "snapshot",
                },
                reason: Box::new(Refusal::SnapshotKeyNotHeld),
            },
            true,
        );
        let parsed: Value = serde_json::from_slice(&hierarchy.body()).unwrap();
        assert_eq!(
            parsed["errors"][0]["detail"]["Error"]["Missing"],
            "snapshot"
        );
    }

    /// Every way a client can be refused, with realistic and with very
    /// many offending items (the most a request can carry: 32 root keys,
    /// 64 signatures, 1,000 delegated paths).
    fn every_refusal() -> Vec<RepoError> {
        let id = |i: usize| format!("{i:064x}");
        let long = |c: &str| c.repeat(255);
        let signatures = |n: usize| TufError::ThresholdNotMet {
            role: "targets/releases".into(),
            threshold: 2,
            valid: 1,
            rejected: (0..n)
                .map(|i| RejectedSignature {
                    keyid: id(i),
                    reason: TufError::UnsupportedMethod { method: long("m") },
                })
                .collect(),
        };
        // Each certificate problem in turn, `n` keys in all.
        let certificates = |n: usize| -> Vec<RejectedRootKey> {
            let when = time::OffsetDateTime::UNIX_EPOCH;
            let cn = long("c");
            (0..n)
                .map(|i| RejectedRootKey {
                    keyid: id(i),
                    reason: match i % 9 {
                        0 => CertificateProblem::NotCertificate {
                            keytype: "ecdsa".into(),
                        },
                        1 => CertificateProblem::Unreadable(Box::new(TufError::MalformedKey {
                            keytype: "ecdsa-x509".into(),
                            reason: "unparsable certificate",
                        })),
                        2 => CertificateProblem::LeafCount,
                        3 => CertificateProblem::CommonNameMismatch {
                            cn: cn.clone(),
                            gun: long("g"),
                        },
                        4 => CertificateProblem::ValidityWindow { cn: cn.clone() },
                        5 => CertificateProblem::Sha1Signature { cn: cn.clone() },
                        6 => CertificateProblem::WeakRsa {
                            cn: cn.clone(),
                            bits: 1024,
                            minimum: 2048,
                        },
                        7 => CertificateProblem::NotYetValid {
                            cn: cn.clone(),
                            not_before: when,
                        },
                        _ => CertificateProblem::Expired {
                            cn: cn.clone(),
                            not_after: when,
                        },
                    },
                })
                .collect()
        };
        let misnamed = |n: usize| -> Vec<(String, NameError)> {
            (0..n)
                .map(|i| (id(i), NameError::InvalidWildcard { shown: long("w") }))
                .collect()
        };
        let delegation = |problem: DelegationKeyProblem| {
            RepoError::Policy(Violation::UntrustedDelegation {
                role: long("d"),
                key_id: id(1),
                problem,
            })
        };
        let delegated = RoleName::parse("targets/releases").unwrap();
        let refusals = vec![
            Refusal::Tuf(TufError::Expired {
                role: "targets".into(),
                expired: "2020-01-01".into(),
            }),
            Refusal::Tuf(signatures(2)),
            Refusal::Tuf(signatures(64)),
            Refusal::StoredUnreadable {
                role: "targets".into(),
                error: TufError::BadSignature,
            },
            Refusal::StoredSnapshotNotObject,
            Refusal::NoRoot,
            Refusal::RootVersionNotIncremented { current: 1, new: 5 },
            Refusal::NoTrustedRootCertificate {
                rejected: certificates(9),
                misnamed: misnamed(1),
            },
            Refusal::NoTrustedRootCertificate {
                rejected: certificates(32),
                misnamed: misnamed(32),
            },
            Refusal::RootRotationUnsigned {
                version: 2,
                previous: 1,
                threshold: 1,
                error: signatures(64),
            },
            Refusal::RootNotSelfSigned {
                error: TufError::NoSignatures {
                    role: "root".into(),
                },
            },
            Refusal::ParentUnpublished {
                role: delegated.clone(),
                parent: RoleName::Targets,
            },
            Refusal::NotDelegated {
                role: delegated.clone(),
                parent: RoleName::Targets,
            },
            Refusal::TargetOutsidePaths {
                target: long("t"),
                role: delegated.clone(),
                paths: Vec::new(),
            },
            Refusal::TargetOutsidePaths {
                target: long("t"),
                role: delegated,
                paths: (0..1000).map(|i| format!("prefix/{i}/")).collect(),
            },
            Refusal::TargetsMissing,
            Refusal::TargetsNotSignedByNewKeys {
                root_version: 2,
                error: signatures(64),
            },
            Refusal::SnapshotKeyNotHeld,
            Refusal::TimestampKeyNotHeld {
                root_version: 2,
                listed: (0..32).map(id).collect(),
            },
        ];
        let kinds = [
            Rejection::Validation,
            Rejection::BadHierarchy { missing: "targets" },
            Rejection::BadRoot,
            Rejection::BadTargets,
            Rejection::BadSnapshot,
        ];
        let mut errors: Vec<RepoError> = refusals
            .into_iter()
            .zip(kinds.into_iter().cycle())
            .map(|(reason, kind)| RepoError::Rejected {
                kind,
                reason: Box::new(reason),
            })
            .collect();
        let problems = [
            UploadProblem::NotMultipart {
                content_type: long("x"),
            },
            UploadProblem::NoBoundary,
            UploadProblem::Unreadable,
            UploadProblem::BadMultipart,
            UploadProblem::BadPart {
                filename: long("f"),
            },
            UploadProblem::Timeout { seconds: 30 },
        ];
        errors.extend(
            problems
                .into_iter()
                .map(|problem| RepoError::MalformedUpload { problem }),
        );
        let parameters = [
            ParamProblem::AuditLimit {
                limit: 0,
                max: 1000,
            },
            ParamProblem::NotInteger { name: "before" },
            ParamProblem::RecordsMissing,
            ParamProblem::Records("x".parse::<i32>().unwrap_err()),
            ParamProblem::ChangeId { shown: long("9") },
        ];
        errors.extend(
            parameters
                .into_iter()
                .map(|problem| RepoError::InvalidParameters { problem }),
        );
        for cap in [
            Cap::KeysPerRole,
            Cap::SignaturesPerFile,
            Cap::DelegationsPerFile,
            Cap::TargetsPerFile,
            Cap::PartsPerUpload,
            Cap::RegistryLookupsPerPublish,
        ] {
            errors.push(RepoError::LimitExceeded {
                cap,
                role: Some(long("r")),
                count: usize::MAX,
                limit: 1,
            });
        }
        let when = time::OffsetDateTime::UNIX_EPOCH;
        errors.extend([
            RepoError::InvalidGun {
                gun: long("g"),
                reason: NameError::GunTooLong {
                    shown: long("g"),
                    len: 300,
                },
            },
            RepoError::NoFilename,
            RepoError::InvalidRole { role: long("r") },
            RepoError::MalformedJson {
                role: long("r"),
                error: TufError::NonIntegralNumber { value: long("1") },
            },
            RepoError::TooLarge {
                size: Some(u64::MAX),
                limit: 1,
            },
            RepoError::TooLarge {
                size: None,
                limit: 1,
            },
            RepoError::KeyIdMismatch {
                role: "root".into(),
                listed: id(1),
                computed: id(2),
            },
            RepoError::DuplicateJsonKey {
                role: long("r"),
                key: long("k"),
                path: long("p"),
            },
            RepoError::SnapshotStale {
                role: long("r"),
                current: i64::MAX,
            },
            RepoError::SnapshotUnknownRole { role: long("r") },
            RepoError::SnapshotDropsRole {
                role: long("r"),
                parent: long("p"),
            },
            RepoError::StaleVersion {
                role: long("r"),
                version: 1,
                current: 2,
            },
            RepoError::Conflict {
                role: long("r"),
                version: 2,
            },
            RepoError::Busy {
                what: Busy::RepositoryLock,
                waited_seconds: 30,
            },
            RepoError::Busy {
                what: Busy::Validation,
                waited_seconds: 30,
            },
            RepoError::RetiredKey {
                role: "timestamp",
                key_id: id(3),
                retired_at: when,
            },
            RepoError::Policy(Violation::Name(NameError::TagTooLong {
                shown: long("t"),
                len: 300,
            })),
            RepoError::Policy(Violation::Name(NameError::EmptyGun)),
            RepoError::Policy(Violation::ImmutableTagChanged {
                gun: long("g"),
                tag: long("t"),
            }),
            RepoError::Policy(Violation::ImmutableTagRemoved {
                gun: long("g"),
                tag: long("t"),
            }),
            RepoError::Policy(Violation::ImmutableRepository { gun: long("g") }),
            RepoError::Policy(Violation::UnknownDigest {
                tag: long("t"),
                digest: long("d"),
                registry: long("r"),
            }),
            delegation(DelegationKeyProblem::PlainKey {
                keytype: "ecdsa".into(),
            }),
            delegation(DelegationKeyProblem::Unreadable(Box::new(
                TufError::BadSignature,
            ))),
            delegation(DelegationKeyProblem::OutsideValidity {
                subject: long("s"),
                not_before: when,
                not_after: when,
            }),
            delegation(DelegationKeyProblem::UnknownIssuer {
                subject: long("s"),
                issuer: long("i"),
            }),
            delegation(DelegationKeyProblem::IssuerSignature {
                subject: long("s"),
                authority: long("a"),
            }),
        ]);
        for kind in [
            IndexKind::Application,
            IndexKind::OciIndex,
            IndexKind::ManifestList,
        ] {
            errors.push(RepoError::Policy(Violation::Index {
                gun: long("g"),
                tag: long("t"),
                digest: long("d"),
                kind,
            }));
        }
        for failure in [
            LookupFailure::NotConfigured,
            LookupFailure::Timeout,
            LookupFailure::Unreachable,
            LookupFailure::CredentialsMissing,
            LookupFailure::CredentialsRefused,
            LookupFailure::AccessDenied,
            LookupFailure::RateLimited,
            LookupFailure::RegistryError,
            LookupFailure::TokenService,
            LookupFailure::BadAnswer,
        ] {
            errors.push(RepoError::Policy(Violation::ManifestUnreachable {
                tag: long("t"),
                digest: long("d"),
                registry: long("r"),
                failure,
            }));
        }
        errors
    }

    /// Which `Refusal` variant this is: the match has no wildcard, so a new
    /// variant does not compile until it is listed in `every_refusal`.
    fn refusal_variant(reason: &Refusal) -> usize {
        match reason {
            Refusal::Tuf(_) => 0,
            Refusal::StoredUnreadable { .. } => 1,
            Refusal::StoredSnapshotNotObject => 2,
            Refusal::NoRoot => 3,
            Refusal::RootVersionNotIncremented { .. } => 4,
            Refusal::NoTrustedRootCertificate { .. } => 5,
            Refusal::RootRotationUnsigned { .. } => 6,
            Refusal::RootNotSelfSigned { .. } => 7,
            Refusal::ParentUnpublished { .. } => 8,
            Refusal::NotDelegated { .. } => 9,
            Refusal::TargetOutsidePaths { .. } => 10,
            Refusal::TargetsMissing => 11,
            Refusal::TargetsNotSignedByNewKeys { .. } => 12,
            Refusal::SnapshotKeyNotHeld => 13,
            Refusal::TimestampKeyNotHeld { .. } => 14,
        }
    }

    /// The same for the repository errors a client causes; server faults
    /// and "not found" are `None` (they carry no message).
    fn client_variant(error: &RepoError) -> Option<usize> {
        Some(match error {
            RepoError::InvalidGun { .. } => 0,
            RepoError::NoFilename => 1,
            RepoError::InvalidRole { .. } => 2,
            RepoError::MalformedJson { .. } => 3,
            RepoError::MalformedUpload { .. } => 4,
            RepoError::TooLarge { .. } => 5,
            RepoError::Rejected { .. } => 6,
            RepoError::KeyIdMismatch { .. } => 7,
            RepoError::DuplicateJsonKey { .. } => 8,
            RepoError::SnapshotStale { .. } => 9,
            RepoError::SnapshotUnknownRole { .. } => 10,
            RepoError::SnapshotDropsRole { .. } => 11,
            RepoError::StaleVersion { .. } => 12,
            RepoError::Conflict { .. } => 13,
            RepoError::LimitExceeded { .. } => 14,
            RepoError::Busy { .. } => 15,
            RepoError::RetiredKey { .. } => 16,
            RepoError::InvalidParameters { .. } => 17,
            RepoError::Policy(_) => 18,
            RepoError::NotFound { .. }
            | RepoError::Store(_)
            | RepoError::Signer(_)
            | RepoError::Generate(_)
            | RepoError::ValidationAborted => return None,
        })
    }

    /// The message a client prints: `detail.Error.Msg`, or the bare
    /// `detail` string of `INVALID_PARAMETERS`.
    fn printed(body: &Value) -> &str {
        let detail = &body["errors"][0]["detail"];
        detail["Error"]["Msg"]
            .as_str()
            .or_else(|| detail.as_str())
            .unwrap_or_default()
    }

    #[test]
    fn every_refusal_is_a_worded_client_error_under_1_kib() {
        let errors = every_refusal();
        let mut refusals = std::collections::BTreeSet::new();
        let mut clients = std::collections::BTreeSet::new();
        let mut cut = 0;
        for error in &errors {
            if let RepoError::Rejected { reason, .. } = error {
                refusals.insert(refusal_variant(reason));
            }
            clients.insert(client_variant(error).expect("a client error"));
            let api = ApiError::from_repo(error, true);
            // Busy is 503 by design (retry later); every other refusal is 4xx.
            let status = api.code.status();
            if matches!(error, RepoError::Busy { .. }) {
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            } else {
                assert!(status.is_client_error(), "{status} for {error:?}");
            }
            let body = api.body();
            assert!(
                body.len() <= MAX_ERROR_BODY,
                "{} bytes: {error:?}",
                body.len()
            );
            let parsed: Value = serde_json::from_slice(&body).unwrap();
            let message = printed(&parsed);
            assert!(!message.trim().is_empty(), "no message for {error:?}");
            if message.ends_with("...") {
                cut += 1;
            }
        }
        assert_eq!(refusals.len(), 15, "every Refusal variant is exercised");
        assert_eq!(clients.len(), 19, "every client-caused error is exercised");
        // The long cases above do not fit whole: the cut was exercised.
        assert!(cut >= 5, "only {cut} messages were cut");
    }

    #[test]
    fn many_offending_items_are_cut_and_keep_the_reason_first() {
        let rejected: Vec<RejectedRootKey> = (0..32)
            .map(|i| RejectedRootKey {
                keyid: format!("{i:064x}"),
                reason: CertificateProblem::CommonNameMismatch {
                    cn: "docker.io/other".into(),
                    gun: "docker.io/library/app".into(),
                },
            })
            .collect();
        let error = RepoError::Rejected {
            kind: Rejection::BadRoot,
            reason: Box::new(Refusal::NoTrustedRootCertificate {
                rejected,
                misnamed: Vec::new(),
            }),
        };
        let body = ApiError::from_repo(&error, true).body();
        assert!(body.len() <= MAX_ERROR_BODY, "{}", body.len());
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        let message = printed(&parsed);
        assert!(
            message.starts_with(
                "could not validate the path to a trusted root: unable to retrieve valid leaf \
                 certificates (key 0000000: certificate common name \"docker.io/other\" does \
                 not match the repository name \"docker.io/library/app\"; key 0000000: "
            ) && message.ends_with("..."),
            "{message}"
        );
        assert_eq!(parsed["errors"][0]["detail"]["Name"], "ErrBadRoot");
    }

    #[test]
    fn parameter_refusals_keep_notary_servers_words() {
        let shown = |problem: ParamProblem| {
            let body = ApiError::from_repo(&RepoError::InvalidParameters { problem }, false).body();
            let parsed: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(parsed["errors"][0]["code"], "INVALID_PARAMETERS");
            parsed["errors"][0]["detail"].as_str().unwrap().to_string()
        };
        assert_eq!(
            shown(ParamProblem::ChangeId {
                shown: "abc".into()
            }),
            "did not recognize parameters: change ID expected to be integer, provided ID was: abc"
        );
        assert_eq!(
            shown(ParamProblem::Records("x".parse::<i32>().unwrap_err())),
            "invalid records parameter: invalid digit found in string"
        );
        assert_eq!(
            shown(ParamProblem::RecordsMissing),
            "invalid records parameter: the records parameter is required"
        );
        assert_eq!(
            shown(ParamProblem::AuditLimit {
                limit: 0,
                max: 1000
            }),
            "invalid limit 0: expected 1 to 1000"
        );
        assert_eq!(
            shown(ParamProblem::NotInteger { name: "before" }),
            "before must be an integer"
        );
        let prefix = ApiError::gun_prefix(&["docker.io/".into(), "quay.io/".into()]);
        let parsed: Value = serde_json::from_slice(&prefix.body()).unwrap();
        assert_eq!(
            printed(&parsed),
            "Require GUNs with prefix: [docker.io/ quay.io/]"
        );
    }

    #[test]
    fn unauthorized_matches_notary_server_bytes() {
        use crate::auth::scope::{ALL, PUSH_PULL};
        // Captured from notary-server 0.7 with token auth (curl -si).
        let update = Unauthorized {
            realm: "https://auth.example.com/token".into(),
            service: "notary.example.com".into(),
            required: Required::repository("a/b", PUSH_PULL),
            failure: AuthFailure::TokenRequired,
        };
        assert_eq!(
            update.challenge(),
            r#"Bearer realm="https://auth.example.com/token",service="notary.example.com",scope="repository:a/b:push,pull""#
        );
        assert_eq!(
            String::from_utf8(update.body()).unwrap(),
            "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\",\"detail\":[{\"Type\":\"repository\",\"Class\":\"\",\"Name\":\"a/b\",\"Action\":\"push\"},{\"Type\":\"repository\",\"Class\":\"\",\"Name\":\"a/b\",\"Action\":\"pull\"}]}]}\n"
        );
        let catalog = Unauthorized {
            realm: "https://auth.example.com/token".into(),
            service: "notary.example.com".into(),
            required: Required::catalog(),
            failure: AuthFailure::InvalidToken,
        };
        assert_eq!(
            catalog.challenge(),
            r#"Bearer realm="https://auth.example.com/token",service="notary.example.com",scope="registry:catalog:*",error="invalid_token""#
        );
        assert_eq!(
            String::from_utf8(catalog.body()).unwrap(),
            "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\",\"detail\":[{\"Type\":\"registry\",\"Class\":\"\",\"Name\":\"catalog\",\"Action\":\"*\"}]}]}\n"
        );
        let scope = Unauthorized {
            realm: "r\"x".into(),
            service: "s".into(),
            required: Required::repository("a<b>&c", ALL),
            failure: AuthFailure::InsufficientScope,
        };
        assert_eq!(
            scope.challenge(),
            r#"Bearer realm="r\"x",service="s",scope="repository:a<b>&c:*",error="insufficient_scope""#
        );
        assert!(
            String::from_utf8(scope.body())
                .unwrap()
                .contains(r#""Name":"a\u003cb\u003e\u0026c""#)
        );
    }
}

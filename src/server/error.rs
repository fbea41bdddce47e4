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
            Self::Unknown => "UNKNOWN",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::MetadataNotFound => StatusCode::NOT_FOUND,
            Self::Updating | Self::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
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
}

/// A detail the notary client turns into `<prefix>: <message>`.
fn readable(kind: Rejection, message: &str) -> Value {
    let mut error = json!({ "Msg": message });
    if let Rejection::BadHierarchy { missing } = kind {
        error["Missing"] = json!(missing);
    }
    json!({ "Name": kind.detail_name(), "Error": error })
}

impl ApiError {
    pub fn new(code: Code, detail: Option<Value>, reason: &'static str) -> Self {
        Self {
            code,
            detail,
            reason,
        }
    }

    pub fn not_found() -> Self {
        Self::new(Code::MetadataNotFound, None, "not_found")
    }

    /// A client mistake, reported under `code` with a message clients print.
    pub fn client(code: Code, message: &str, reason: &'static str) -> Self {
        Self::new(code, Some(readable(Rejection::Validation, message)), reason)
    }

    /// Maps a repository error, logging server faults once with their cause.
    pub fn from_repo(error: &RepoError, writing: bool) -> Self {
        let message = error.to_string();
        match error {
            RepoError::InvalidGun { .. } => Self::client(Code::InvalidGun, &message, "invalid_gun"),
            RepoError::NoFilename => Self::client(Code::NoFilename, &message, "no_filename"),
            RepoError::InvalidRole { .. } => {
                Self::client(Code::InvalidRole, &message, "invalid_role")
            }
            RepoError::MalformedJson { .. } => {
                Self::client(Code::MalformedJson, &message, "malformed_json")
            }
            RepoError::MalformedUpload { .. } => {
                Self::client(Code::MalformedUpload, &message, "malformed_upload")
            }
            RepoError::TooLarge { .. } => {
                Self::client(Code::MalformedUpload, &message, "too_large")
            }
            RepoError::Rejected { kind, message } => Self::new(
                Code::InvalidUpdate,
                Some(readable(*kind, message)),
                kind.label(),
            ),
            RepoError::StaleVersion { .. } => Self::client(Code::Version, &message, "old_version"),
            RepoError::Conflict { .. } => Self::client(Code::Version, &message, "conflict"),
            RepoError::NotFound { .. } => Self::not_found(),
            RepoError::Policy(violation) => Self::policy(violation),
            RepoError::InvalidParameters { reason } => Self::new(
                Code::InvalidParameters,
                Some(json!(reason)),
                "invalid_parameters",
            ),
            RepoError::Store(_) | RepoError::Signer(_) | RepoError::Generate(_) => {
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
    fn policy(violation: &Violation) -> Self {
        let message = violation.to_string();
        let (kind, reason) = match violation {
            Violation::Name(NameError::TagTooLong { .. } | NameError::TagGrammar { .. }) => {
                (Rejection::BadTargets, "invalid_tag")
            }
            Violation::Name(_) => return Self::client(Code::InvalidGun, &message, "invalid_gun"),
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
        Self::new(Code::InvalidUpdate, Some(readable(kind, &message)), reason)
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
pub struct Unauthorized {
    pub realm: String,
    pub service: String,
    pub required: Required,
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

impl Unauthorized {
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

impl IntoResponse for Unauthorized {
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

    #[test]
    fn every_repo_error_maps_to_notarys_status_and_code() {
        use crate::store::Error as StoreError;
        let cases: Vec<(RepoError, StatusCode, &str)> = vec![
            (
                RepoError::InvalidGun {
                    gun: "x".into(),
                    reason: "r".into(),
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
                RepoError::InvalidRole { role: "x".into() },
                StatusCode::BAD_REQUEST,
                "INVALID_ROLE",
            ),
            (
                RepoError::MalformedJson {
                    role: "targets".into(),
                    reason: "x".into(),
                },
                StatusCode::BAD_REQUEST,
                "MALFORMED_JSON",
            ),
            (
                RepoError::MalformedUpload { reason: "x".into() },
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
                    message: "m".into(),
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
                RepoError::InvalidParameters { reason: "r".into() },
                StatusCode::BAD_REQUEST,
                "INVALID_PARAMETERS",
            ),
            (
                RepoError::Store(StoreError::NotFound),
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

    #[test]
    fn client_visible_details_use_notarys_names_and_stay_under_1_kib() {
        let error = RepoError::Rejected {
            kind: Rejection::BadTargets,
            message: "é".repeat(2000),
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
                message: "m".into(),
            },
            true,
        );
        let parsed: Value = serde_json::from_slice(&hierarchy.body()).unwrap();
        assert_eq!(
            parsed["errors"][0]["detail"]["Error"]["Missing"],
            "snapshot"
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

//! The one place where errors become HTTP responses in Notary's format
//! (PROTOCOL.md §2): `{"errors":[{"code","message","detail"}]}`, status from
//! the code. Rejections carry a `detail` the notary client parses and prints,
//! so users see why; the body stays under the 1 KiB clients read.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::auth::Required;
use crate::policy::names::NameError;
use crate::policy::{IndexKind, LookupFailure, Violation};
use crate::repo::{Busy, Cap, Error as RepoError, Rejection, UploadProblem};

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
    json!({ "Name": kind.detail_name(), "Error": error })
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
            RepoError::MalformedUpload { problem } => Self::client(
                Code::MalformedUpload,
                &upload_problem(problem),
                "malformed_upload",
            ),
            RepoError::TooLarge { .. } => {
                Self::client(Code::MalformedUpload, &message, "too_large")
            }
            RepoError::Rejected { kind, message } => Self::new(
                Code::InvalidUpdate,
                Some(readable(*kind, message)),
                kind.label(),
            ),
            RepoError::KeyIdMismatch { role, .. } => {
                let kind = if role == "root" {
                    Rejection::BadRoot
                } else {
                    Rejection::BadTargets
                };
                Self::new(
                    Code::InvalidUpdate,
                    Some(readable(kind, &message)),
                    "key_id_mismatch",
                )
            }
            RepoError::DuplicateJsonKey { role, .. } => {
                let kind = match role.as_str() {
                    "root" => Rejection::BadRoot,
                    "snapshot" => Rejection::BadSnapshot,
                    "timestamp" => Rejection::Validation,
                    _ => Rejection::BadTargets,
                };
                Self::new(
                    Code::InvalidUpdate,
                    Some(readable(kind, &message)),
                    "duplicate_json_key",
                )
            }
            RepoError::SnapshotStale { .. }
            | RepoError::SnapshotUnknownRole { .. }
            | RepoError::SnapshotDropsRole { .. } => Self::new(
                Code::InvalidUpdate,
                Some(readable(Rejection::BadSnapshot, &message)),
                "snapshot_inconsistent",
            ),
            RepoError::RetiredKey {
                role,
                key_id,
                retired_at,
            } => {
                let date = retired_at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                let message = format!(
                    "root lists {role} key {key_id} which was retired when this repository was \
                     deleted on {date}: this is the deleted repository's trust data. \
                     Initialise the repository anew (notary delete <gun>, then notary init \
                     <gun>) so that it gets new server keys"
                );
                Self::new(
                    Code::InvalidUpdate,
                    Some(readable(Rejection::BadRoot, &message)),
                    "retired_key",
                )
            }
            RepoError::StaleVersion { .. } => Self::client(Code::Version, &message, "old_version"),
            RepoError::Conflict { .. } => Self::client(Code::Version, &message, "conflict"),
            RepoError::NotFound { .. } => Self::not_found(),
            RepoError::Policy(violation) => Self::policy(violation),
            RepoError::InvalidParameters { reason } => Self::new(
                Code::InvalidParameters,
                Some(json!(reason)),
                "invalid_parameters",
            ),
            RepoError::LimitExceeded {
                cap,
                role,
                count,
                limit,
            } => Self::client(
                Code::InvalidUpdate,
                &limit_message(*cap, role.as_deref(), *count, *limit),
                "limit",
            ),
            RepoError::Busy { what, .. } => {
                let message = match what {
                    Busy::RepositoryLock => {
                        "the repository is busy with another update; nothing was stored: retry shortly"
                    }
                    Busy::Validation => {
                        "the server is busy verifying other updates; nothing was stored: retry shortly"
                    }
                };
                let mut error = Self::client(Code::Unavailable, message, "busy");
                error.retry_after = Some(BUSY_RETRY_AFTER_SECONDS);
                error
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
    fn policy(violation: &Violation) -> Self {
        let message = violation_message(violation);
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

/// Why an upload could not be read, without the parser's internals.
fn upload_problem(problem: &UploadProblem) -> String {
    let what = match problem {
        UploadProblem::NotMultipart { content_type } => {
            format!("expected a multipart/form-data body, got {content_type:?}")
        }
        UploadProblem::NoBoundary => {
            "the multipart Content-Type has no usable boundary parameter".to_string()
        }
        UploadProblem::Unreadable => "the request body could not be read in full".to_string(),
        UploadProblem::BadMultipart => {
            "the body is not well-formed multipart/form-data".to_string()
        }
        UploadProblem::BadPart { filename } => format!("the part {filename:?} could not be read"),
        UploadProblem::Timeout { seconds } => {
            format!("the upload was not received within {seconds} seconds")
        }
    };
    format!("the upload is malformed: {what}")
}

/// A server rule's refusal for users: the reason first, then what to do.
fn violation_message(violation: &Violation) -> String {
    match violation {
        Violation::Name(error) => error.to_string(),
        Violation::ImmutableTagChanged { gun, tag } => {
            format!("tag {tag} in {gun} is immutable: it is already signed with a different digest")
        }
        Violation::ImmutableTagRemoved { gun, tag } => {
            format!("tag {tag} in {gun} is immutable: a signed tag cannot be removed")
        }
        Violation::ImmutableRepository { gun } => {
            format!("repository {gun} is immutable: its trust data cannot be deleted")
        }
        Violation::Index {
            gun,
            tag,
            digest,
            kind,
        } => refusal_message(gun, tag, digest, *kind),
        Violation::ManifestUnreachable {
            tag,
            digest,
            registry,
            failure,
        } => format!(
            "cannot check manifest type of tag {tag} ({digest}) with the registry {registry}: \
             {}; nothing was stored: publish again once the registry answers, or ask the \
             server's operator",
            lookup_failure(*failure)
        ),
        Violation::UnknownDigest {
            tag,
            digest,
            registry,
        } => format!(
            "tag {tag} ({digest}) is not in the registry {registry}; this repository only signs \
             pushed image manifests: push the image first"
        ),
        Violation::UntrustedDelegation {
            role,
            subject,
            reason,
        } => format!(
            "the certificate of delegation {role} (subject {subject:?}) is not issued by a \
             trusted certificate authority: {reason}"
        ),
    }
}

/// The refusal, in the documents' words, reason first and short: the
/// client shows only the first KiB. It also says how to drop the refused
/// tag from docker's changelist, which docker would otherwise re-send on
/// every signed push.
fn refusal_message(gun: &str, tag: &str, digest: &str, kind: IndexKind) -> String {
    let short: String = digest.chars().take(19).collect();
    let reset = format!(
        "Nothing was stored. To drop it from docker's pending changes run: notary -d ~/.docker/trust reset {gun} --all"
    );
    match kind {
        IndexKind::Application => format!(
            "tag {tag} is an application (an OCI index, {short}…): you cannot sign an application \
             since the Notary signer cannot sign OCI (Open Container Initiative) indices. Sign its \
             invocation image {tag}-invoc instead. {reset}"
        ),
        IndexKind::OciIndex | IndexKind::ManifestList => {
            let what = if kind == IndexKind::OciIndex {
                "an OCI image index"
            } else {
                "a Docker manifest list"
            };
            format!(
                "tag {tag} is a multi-platform image ({what}, {short}…): Docker Content Trust \
                 does not support multi-arch images (OCI indexes or manifest lists); sign each \
                 platform's image under its own tag. (Docker's containerd image store may push an \
                 index even for one platform: push with the classic store, or sign the platform \
                 manifest.) {reset}"
            )
        }
    }
}

/// What a busy server asks clients to wait before retrying.
const BUSY_RETRY_AFTER_SECONDS: u64 = 5;

/// A cap of `limits` was exceeded: which, by how much, and the setting an
/// operator raises it with.
fn limit_message(cap: Cap, role: Option<&str>, count: usize, limit: usize) -> String {
    let what = match cap {
        Cap::KeysPerRole => "keys for one role",
        Cap::SignaturesPerFile => "signatures",
        Cap::DelegationsPerFile => "delegated roles",
        Cap::TargetsPerFile => "targets",
        Cap::PartsPerUpload => "files in one upload",
        Cap::RegistryLookupsPerPublish => "new or changed image digests to check with the registry",
    };
    let place = role.map(|r| format!(" in {r}")).unwrap_or_default();
    let advice = match cap {
        Cap::RegistryLookupsPerPublish | Cap::PartsPerUpload => "publish in smaller batches",
        Cap::TargetsPerFile => "spread targets over delegations",
        _ => "reduce them",
    };
    format!(
        "too many {what}{place}: {count}, the server accepts at most {limit} (setting {}); \
         nothing was stored: {advice}, or ask the server's operator to raise the limit",
        cap.setting()
    )
}

/// Why a registry lookup failed, for users: what happened, never the
/// registry's internal address, the server's credentials or an OS error
/// (those are in the server's log).
fn lookup_failure(failure: LookupFailure) -> &'static str {
    match failure {
        LookupFailure::NotConfigured => "no registry is configured for this repository",
        LookupFailure::Timeout => "the registry did not answer in time",
        LookupFailure::Unreachable => "the registry cannot be reached",
        LookupFailure::CredentialsMissing => {
            "the registry requires credentials the server does not have"
        }
        LookupFailure::CredentialsRefused => "the registry refused the server's credentials",
        LookupFailure::AccessDenied => "the registry refused the server access to the repository",
        LookupFailure::RateLimited => "the registry is rate limiting the server",
        LookupFailure::RegistryError => "the registry reported an internal error",
        LookupFailure::TokenService => "the registry's token service failed",
        LookupFailure::BadAnswer => "the registry's answer was unusable",
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
                    reason: "x".into(),
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
                    message: "m".into(),
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
                RepoError::InvalidParameters { reason: "r".into() },
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

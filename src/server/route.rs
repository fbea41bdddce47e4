//! The route table, written once (PROTOCOL.md §1.1, §8): what a request
//! path means, the operation name notary gives it (the metrics and log
//! label), and the token access it needs. Dispatch, the auth check, metrics
//! and logs all read it from here.
//!
//! GUNs contain slashes, so `/v2/…` paths are parsed here rather than by
//! the router: the GUN is everything before the last `/_trust/`.

use axum::http::Method;

use crate::auth::Required;
use crate::auth::scope::{ALL, PULL, PUSH_PULL};
use crate::tuf::RoleName;

/// The operation a request maps to, as notary-server names it; the
/// low-cardinality label of logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation(pub &'static str);

/// Which version of a role's metadata a GET asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataFile {
    Current(RoleName),
    ByChecksum(RoleName, String),
    ByVersion(RoleName, i64),
}

/// What `/v2/<gun>/_trust/immutable` is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImmutableAction {
    Show,
    Set,
    Clear,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /v2/`: the ping clients use to discover the token realm.
    Main,
    /// `POST /v2/<gun>/_trust/tuf/`.
    Update { gun: String },
    /// `GET /v2/<gun>/_trust/tuf/<role>[.<checksum>].json`,
    /// `GET /v2/<gun>/_trust/tuf/<version>.<role>.json`; HEAD too.
    Metadata {
        gun: String,
        file: MetadataFile,
        head: bool,
    },
    /// `GET /v2/<gun>/_trust/tuf/{timestamp,snapshot}.key`.
    GetKey { gun: String, role: RoleName },
    /// `POST /v2/<gun>/_trust/tuf/{timestamp,snapshot}.key`.
    RotateKey { gun: String, role: RoleName },
    /// `DELETE /v2/<gun>/_trust/tuf/`.
    Delete { gun: String },
    /// `GET /v2/<gun>/_trust/changefeed`, or `GET /v2/_trust/changefeed`
    /// (every GUN) without one.
    Changefeed { gun: Option<String> },
    /// `GET /v2/<gun>/_trust/audit` (admin).
    Audit { gun: String },
    /// `GET|PUT|DELETE /v2/<gun>/_trust/immutable` (admin).
    Immutable {
        gun: String,
        action: ImmutableAction,
    },
    /// `GET /_notary_server/health`.
    Health,
    /// `GET /metrics`.
    Metrics,
    /// Any other path with one of notary's five methods: 404.
    NotFound,
    /// Any other method: 405 with an empty body, before auth (mux answers
    /// it without reaching a handler).
    MethodNotAllowed,
}

/// The methods some route of notary's serves; the rest get 405.
fn known_method(method: &Method) -> bool {
    [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::HEAD,
        Method::DELETE,
    ]
    .contains(method)
}

/// Percent-decodes a path, as mux matches on the decoded form.
pub fn decode_path(raw: &str) -> Option<String> {
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

/// What a `/v2/<gun>/_trust/tuf/<file>` path names.
#[derive(Debug, PartialEq, Eq)]
enum TufFile {
    Metadata(MetadataFile),
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
        return Some(TufFile::Metadata(MetadataFile::Current(role)));
    }
    // `<role>.<checksum>`: 64, 96 or 128 hex digits.
    if let Some((role, checksum)) = stem.rsplit_once('.') {
        let hex = checksum.bytes().all(|b| b.is_ascii_hexdigit());
        if hex && matches!(checksum.len(), 64 | 96 | 128) {
            if let Ok(role) = RoleName::parse(role) {
                return Some(TufFile::Metadata(MetadataFile::ByChecksum(
                    role,
                    checksum.to_string(),
                )));
            }
        }
    }
    // `<version>.<role>`.
    if let Some((version, role)) = stem.split_once('.') {
        if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) {
            if let (Ok(version), Ok(role)) = (version.parse::<i64>(), RoleName::parse(role)) {
                return Some(TufFile::Metadata(MetadataFile::ByVersion(role, version)));
            }
        }
    }
    None
}

impl Route {
    /// Reads a request line. Never fails: what matches nothing is
    /// [`Route::NotFound`] or [`Route::MethodNotAllowed`].
    pub fn parse(method: &Method, raw_path: &str) -> Self {
        let unmatched = if known_method(method) {
            Self::NotFound
        } else {
            Self::MethodNotAllowed
        };
        let get = *method == Method::GET;
        let get_or_head = get || *method == Method::HEAD;
        let Some(path) = decode_path(raw_path) else {
            return unmatched;
        };
        match path.as_str() {
            "/v2/" if get_or_head => return Self::Main,
            "/_notary_server/health" if get_or_head => return Self::Health,
            "/metrics" if get_or_head => return Self::Metrics,
            "/v2/_trust/changefeed" if get => return Self::Changefeed { gun: None },
            _ => {}
        }
        let Some(rest) = path.strip_prefix("/v2/") else {
            return unmatched;
        };
        let Some(split) = rest.rfind("/_trust/") else {
            return unmatched;
        };
        let gun = &rest[..split];
        let tail = &rest[split + "/_trust/".len()..];
        // mux's `{gun:[^*]+}`: non-empty, no `*`.
        if gun.is_empty() || gun.contains('*') {
            return unmatched;
        }
        let gun = gun.to_string();
        match tail {
            "changefeed" if get => return Self::Changefeed { gun: Some(gun) },
            "audit" if get => return Self::Audit { gun },
            "immutable" => {
                let action = match *method {
                    Method::GET => ImmutableAction::Show,
                    Method::PUT => ImmutableAction::Set,
                    Method::DELETE => ImmutableAction::Clear,
                    _ => return unmatched,
                };
                return Self::Immutable { gun, action };
            }
            _ => {}
        }
        let Some(file) = tail.strip_prefix("tuf/") else {
            return unmatched;
        };
        if file.is_empty() {
            return match *method {
                Method::POST => Self::Update { gun },
                Method::DELETE => Self::Delete { gun },
                _ => unmatched,
            };
        }
        match (parse_tuf_file(file), method) {
            (Some(TufFile::Metadata(file)), _) if get_or_head => Self::Metadata {
                gun,
                file,
                head: !get,
            },
            (Some(TufFile::Key(role)), &Method::GET) => Self::GetKey { gun, role },
            (Some(TufFile::Key(role)), &Method::POST) => Self::RotateKey { gun, role },
            _ => unmatched,
        }
    }

    /// notary-server's operation name (`server/server.go`), used as the
    /// metrics label.
    pub fn operation(&self) -> Operation {
        Operation(match self {
            Self::Main => "MainHandler",
            Self::Update { .. } => "UpdateTUF",
            Self::Metadata { file, .. } => match file {
                MetadataFile::Current(_) => "GetRole",
                MetadataFile::ByChecksum(..) => "GetRoleByHash",
                MetadataFile::ByVersion(..) => "GetRoleByVersion",
            },
            Self::GetKey { .. } => "GetKey",
            Self::RotateKey { .. } => "RotateKey",
            Self::Delete { .. } => "DeleteTUF",
            Self::Changefeed { .. } => "Changefeed",
            Self::Audit { .. } => "GetAudit",
            Self::Immutable { .. } => "Immutable",
            Self::Health => "Health",
            Self::Metrics => "Metrics",
            Self::NotFound | Self::MethodNotAllowed => "NotFound",
        })
    }

    /// The GUN the route is about, if any.
    pub fn gun(&self) -> Option<&str> {
        match self {
            Self::Update { gun }
            | Self::Metadata { gun, .. }
            | Self::GetKey { gun, .. }
            | Self::RotateKey { gun, .. }
            | Self::Delete { gun }
            | Self::Audit { gun }
            | Self::Immutable { gun, .. } => Some(gun),
            Self::Changefeed { gun } => gun.as_deref(),
            Self::Main | Self::Health | Self::Metrics | Self::NotFound | Self::MethodNotAllowed => {
                None
            }
        }
    }

    /// The token access the route needs (PROTOCOL.md §1.1 "Auth actions",
    /// §8); `None` for the open routes. Routes without a GUN need
    /// `registry:catalog:*`, as notary's `buildCatalogRecord`.
    pub fn required(&self) -> Option<Required<'_>> {
        let repository = |gun, actions| Some(Required::repository(gun, actions));
        match self {
            Self::Update { gun } | Self::GetKey { gun, .. } => repository(gun, PUSH_PULL),
            Self::Metadata { gun, .. } => repository(gun, PULL),
            Self::Changefeed { gun: Some(gun) } => repository(gun, PULL),
            Self::RotateKey { gun, .. }
            | Self::Delete { gun }
            | Self::Audit { gun }
            | Self::Immutable { gun, .. } => repository(gun, ALL),
            Self::Main | Self::Changefeed { gun: None } | Self::NotFound => {
                Some(Required::catalog())
            }
            Self::Health | Self::Metrics | Self::MethodNotAllowed => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &Method, path: &str) -> Route {
        Route::parse(method, path)
    }

    #[test]
    fn tuf_file_names_parse_like_notarys_routes() {
        let meta = |file| Some(TufFile::Metadata(file));
        assert_eq!(
            parse_tuf_file("root.json"),
            meta(MetadataFile::Current(RoleName::Root))
        );
        assert_eq!(
            parse_tuf_file("targets/releases.json"),
            meta(MetadataFile::Current(
                RoleName::parse("targets/releases").unwrap()
            ))
        );
        let hash = "a".repeat(64);
        assert_eq!(
            parse_tuf_file(&format!("snapshot.{hash}.json")),
            meta(MetadataFile::ByChecksum(RoleName::Snapshot, hash.clone()))
        );
        assert_eq!(
            parse_tuf_file(&format!("targets/a.{hash}.json")),
            meta(MetadataFile::ByChecksum(
                RoleName::parse("targets/a").unwrap(),
                hash
            ))
        );
        assert_eq!(
            parse_tuf_file("2.root.json"),
            meta(MetadataFile::ByVersion(RoleName::Root, 2))
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

    /// The table of PROTOCOL.md §1.1: (method, path, operation, scope).
    #[test]
    fn every_route_has_its_operation_and_access() {
        let hash = "b".repeat(64);
        let cases: Vec<(Method, String, &str, Option<&str>)> = vec![
            (
                Method::GET,
                "/v2/".into(),
                "MainHandler",
                Some("registry:catalog:*"),
            ),
            (
                Method::POST,
                "/v2/a/b/_trust/tuf/".into(),
                "UpdateTUF",
                Some("repository:a/b:push,pull"),
            ),
            (
                Method::GET,
                format!("/v2/a/b/_trust/tuf/root.{hash}.json"),
                "GetRoleByHash",
                Some("repository:a/b:pull"),
            ),
            (
                Method::GET,
                "/v2/a/b/_trust/tuf/3.targets.json".into(),
                "GetRoleByVersion",
                Some("repository:a/b:pull"),
            ),
            (
                Method::GET,
                "/v2/a/b/_trust/tuf/targets/releases.json".into(),
                "GetRole",
                Some("repository:a/b:pull"),
            ),
            (
                Method::HEAD,
                "/v2/a/b/_trust/tuf/root.json".into(),
                "GetRole",
                Some("repository:a/b:pull"),
            ),
            (
                Method::GET,
                "/v2/a/b/_trust/tuf/timestamp.key".into(),
                "GetKey",
                Some("repository:a/b:push,pull"),
            ),
            (
                Method::POST,
                "/v2/a/b/_trust/tuf/snapshot.key".into(),
                "RotateKey",
                Some("repository:a/b:*"),
            ),
            (
                Method::DELETE,
                "/v2/a/b/_trust/tuf/".into(),
                "DeleteTUF",
                Some("repository:a/b:*"),
            ),
            (
                Method::GET,
                "/v2/a/b/_trust/changefeed".into(),
                "Changefeed",
                Some("repository:a/b:pull"),
            ),
            (
                Method::GET,
                "/v2/_trust/changefeed".into(),
                "Changefeed",
                Some("registry:catalog:*"),
            ),
            (
                Method::GET,
                "/v2/a/b/_trust/audit".into(),
                "GetAudit",
                Some("repository:a/b:*"),
            ),
            (
                Method::GET,
                "/v2/a/b/_trust/immutable".into(),
                "Immutable",
                Some("repository:a/b:*"),
            ),
            (
                Method::PUT,
                "/v2/a/b/_trust/immutable".into(),
                "Immutable",
                Some("repository:a/b:*"),
            ),
            (
                Method::DELETE,
                "/v2/a/b/_trust/immutable".into(),
                "Immutable",
                Some("repository:a/b:*"),
            ),
            (Method::GET, "/_notary_server/health".into(), "Health", None),
            (Method::GET, "/metrics".into(), "Metrics", None),
            // Everything else: the catalog check, or 405 without one.
            (
                Method::GET,
                "/nothing".into(),
                "NotFound",
                Some("registry:catalog:*"),
            ),
            (
                Method::POST,
                "/v2/a/_trust/tuf".into(),
                "NotFound",
                Some("registry:catalog:*"),
            ),
            (
                Method::PUT,
                "/v2/a/_trust/tuf/".into(),
                "NotFound",
                Some("registry:catalog:*"),
            ),
            (
                Method::POST,
                "/v2/a/_trust/immutable".into(),
                "NotFound",
                Some("registry:catalog:*"),
            ),
            (
                Method::GET,
                "/v2/a*b/_trust/tuf/root.json".into(),
                "NotFound",
                Some("registry:catalog:*"),
            ),
            (
                Method::GET,
                "/v2//_trust/tuf/root.json".into(),
                "NotFound",
                Some("registry:catalog:*"),
            ),
            (
                Method::POST,
                "/v2/".into(),
                "NotFound",
                Some("registry:catalog:*"),
            ),
            (
                Method::OPTIONS,
                "/v2/a/_trust/tuf/root.json".into(),
                "NotFound",
                None,
            ),
            (Method::PATCH, "/v2/".into(), "NotFound", None),
        ];
        for (method, path, operation, scope) in cases {
            let route = route(&method, &path);
            assert_eq!(route.operation().0, operation, "{method} {path}");
            assert_eq!(
                route.required().map(|r| r.scope()).as_deref(),
                scope,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn guns_come_from_before_the_last_trust_segment() {
        assert_eq!(
            route(&Method::GET, "/v2/a/_trust/b/_trust/changefeed").gun(),
            Some("a/_trust/b")
        );
        assert_eq!(
            route(&Method::GET, "/v2/a%2Fb/_trust/tuf/root.json").gun(),
            Some("a/b")
        );
        assert_eq!(route(&Method::GET, "/v2/_trust/changefeed").gun(), None);
        assert_eq!(
            route(&Method::OPTIONS, "/v2/a/_trust/tuf/root.json"),
            Route::MethodNotAllowed
        );
    }
}

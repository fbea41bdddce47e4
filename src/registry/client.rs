//! [`ManifestSource`] over HTTP: asks the registry holding a repository what
//! a signed digest is (PROTOCOL.md §10.2). `HEAD` the manifest by digest;
//! when the answer's `Content-Type` does not settle it (missing, unknown, or
//! an index that may be an application bundle), `GET` the body — capped, and
//! checked against the digest — and classify it with
//! [`policy::manifest::classify`](crate::policy::manifest::classify).
//!
//! Registry auth is Docker's (distribution `registry/client/auth`): a `401`
//! carries a `Bearer` challenge (fetch a pull token from the realm, with
//! basic credentials when configured) or a `Basic` one; either is answered
//! once.
//!
//! Every lookup is bounded: one deadline for all its requests, a redirect
//! limit, and body caps. Credentials and tokens are never logged.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use aws_lc_rs::digest;
use base64::Engine as _;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode, Url};
use thiserror::Error;
use zeroize::Zeroizing;

use super::challenge::{Challenge, parse_challenge};
use super::token::{self, TokenCache};
use crate::policy::manifest::{self, ManifestKind};
use crate::policy::{Lookup, LookupError, LookupFailure, ManifestSource};

/// Manifests above this are not fetched. distribution itself refuses to
/// store manifests over 4 MiB.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// Error bodies are read up to this to find a registry error code.
const MAX_ERROR_BYTES: usize = 16 << 10;

/// How many `Found` answers are remembered. A digest names immutable
/// content, so what it is never changes.
const CACHE_ENTRIES: usize = 4096;

/// How many redirects one request follows.
const MAX_REDIRECTS: usize = 5;

/// One registry and the GUNs it holds.
#[derive(Clone)]
pub struct RegistrySettings {
    /// GUNs starting with this string live in this registry (longest
    /// prefix wins), e.g. `registry.example.com/`. End it with `/` unless a
    /// bare string prefix is meant.
    pub gun_prefix: String,
    /// The registry's base URL, e.g. `https://registry.example.com` (the
    /// API is under `{url}/v2/`).
    pub url: String,
    pub username: Option<String>,
    /// Zeroized on drop; never shown by `Debug`.
    pub password: Option<Zeroizing<String>>,
    /// Refuse targets whose digest the registry does not know (see
    /// [`ManifestSource::requires_image_manifests`]).
    pub require_image_manifests: bool,
    /// Bound on one whole lookup (token fetch and retries included).
    pub timeout: Duration,
}

impl fmt::Debug for RegistrySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistrySettings")
            .field("gun_prefix", &self.gun_prefix)
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("require_image_manifests", &self.require_image_manifests)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Settings that cannot work, found when building the client.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RegistryConfigError {
    #[error("registry url {url:?} for {gun_prefix:?}: {reason}")]
    Url {
        gun_prefix: String,
        url: String,
        reason: String,
    },

    #[error("registry for {gun_prefix:?}: a password needs a username")]
    PasswordWithoutUsername { gun_prefix: String },

    #[error("registry for {gun_prefix:?}: timeout must be above zero")]
    ZeroTimeout { gun_prefix: String },

    #[error("two registries for the same GUN prefix {gun_prefix:?}")]
    DuplicatePrefix { gun_prefix: String },

    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

struct Registry {
    settings: RegistrySettings,
    /// `url` without a trailing `/`.
    base: String,
    /// For error messages: the URL as configured.
    name: String,
    /// The operator chose plain HTTP for this registry.
    plain_http: bool,
    http: reqwest::Client,
    /// Bearer tokens earned from this registry's token service.
    tokens: TokenCache,
    /// One token fetch at a time, so lookups running together share the
    /// token the first one earns.
    token_fetch: tokio::sync::Mutex<()>,
}

/// Looks manifests up in the configured registries.
pub struct RegistryClient {
    /// Longest `gun_prefix` first, so the first match wins.
    registries: Vec<Registry>,
    found: Mutex<HashMap<(String, String), ManifestKind>>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field(
                "registries",
                &self
                    .registries
                    .iter()
                    .map(|r| &r.settings)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    pub fn new(settings: Vec<RegistrySettings>) -> Result<Self, RegistryConfigError> {
        let mut registries = Vec::with_capacity(settings.len());
        for s in settings {
            if registries
                .iter()
                .any(|r: &Registry| r.settings.gun_prefix == s.gun_prefix)
            {
                return Err(RegistryConfigError::DuplicatePrefix {
                    gun_prefix: s.gun_prefix,
                });
            }
            registries.push(Registry::new(s)?);
        }
        registries.sort_by(|a, b| {
            b.settings
                .gun_prefix
                .len()
                .cmp(&a.settings.gun_prefix.len())
        });
        Ok(Self {
            registries,
            found: Mutex::new(HashMap::new()),
        })
    }

    /// The registry for `gun` (longest matching prefix) and the repository
    /// name there: the GUN minus its first path component, the registry
    /// host (`127.0.0.1:5000/team/app` → `team/app`).
    fn route<'g>(&self, gun: &'g str) -> Option<(&Registry, &'g str)> {
        let registry = self
            .registries
            .iter()
            .find(|r| gun.starts_with(&r.settings.gun_prefix))?;
        Some((registry, repository_name(gun)?))
    }

    /// The settings that apply to `gun`, if any.
    pub fn settings_for(&self, gun: &str) -> Option<&RegistrySettings> {
        self.route(gun).map(|(r, _)| &r.settings)
    }

    fn cached(&self, gun: &str, digest: &str) -> Option<ManifestKind> {
        let found = self.found.lock().ok()?;
        found.get(&(gun.to_owned(), digest.to_owned())).copied()
    }

    fn remember(&self, gun: &str, digest: &str, kind: ManifestKind) {
        let Ok(mut found) = self.found.lock() else {
            return;
        };
        if found.len() >= CACHE_ENTRIES {
            // Any entry will do: the cache only saves round trips.
            if let Some(key) = found.keys().next().cloned() {
                found.remove(&key);
            }
        }
        found.insert((gun.to_owned(), digest.to_owned()), kind);
    }
}

/// The repository name in the registry for `gun`: everything after the
/// first `/`. `None` when there is nothing after it.
pub fn repository_name(gun: &str) -> Option<&str> {
    let (_host, repo) = gun.split_once('/')?;
    (!repo.is_empty()).then_some(repo)
}

impl ManifestSource for RegistryClient {
    fn covers(&self, gun: &str) -> bool {
        self.route(gun).is_some()
    }

    fn requires_image_manifests(&self, gun: &str) -> bool {
        self.route(gun)
            .is_some_and(|(r, _)| r.settings.require_image_manifests)
    }

    fn lookup<'a>(
        &'a self,
        gun: &'a str,
        digest: &'a str,
        length: i64,
    ) -> Pin<Box<dyn Future<Output = Result<Lookup, LookupError>> + Send + 'a>> {
        Box::pin(async move {
            let Some((registry, repo)) = self.route(gun) else {
                return Err(LookupError {
                    registry: String::new(),
                    failure: LookupFailure::NotConfigured,
                    reason: format!("no registry is configured for {gun}"),
                });
            };
            if let Some(kind) = self.cached(gun, digest) {
                return Ok(Lookup::Found(kind));
            }
            let deadline = registry.settings.timeout;
            let answer =
                match tokio::time::timeout(deadline, registry.lookup(repo, digest, length)).await {
                    Ok(answer) => answer,
                    Err(_) => Err(registry.error(
                        LookupFailure::Timeout,
                        format!("no answer within {}", secs(deadline)),
                    )),
                };
            match &answer {
                Ok(Lookup::Found(kind)) => self.remember(gun, digest, *kind),
                Ok(Lookup::Unknown) => {}
                Err(e) => {
                    tracing::warn!(registry = %e.registry, failure = ?e.failure, reason = %e.reason, "manifest lookup failed")
                }
            }
            answer
        })
    }
}

impl Registry {
    fn new(settings: RegistrySettings) -> Result<Self, RegistryConfigError> {
        let url_error = |reason: &str| RegistryConfigError::Url {
            gun_prefix: settings.gun_prefix.clone(),
            url: settings.url.clone(),
            reason: reason.to_owned(),
        };
        let parsed = Url::parse(&settings.url).map_err(|e| url_error(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(url_error("must be http or https"));
        }
        if parsed.host_str().is_none() {
            return Err(url_error("has no host"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(url_error(
                "must not contain credentials (set username and password instead)",
            ));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(url_error("must not have a query or fragment"));
        }
        if settings.password.is_some() && settings.username.is_none() {
            return Err(RegistryConfigError::PasswordWithoutUsername {
                gun_prefix: settings.gun_prefix,
            });
        }
        if settings.timeout.is_zero() {
            return Err(RegistryConfigError::ZeroTimeout {
                gun_prefix: settings.gun_prefix,
            });
        }
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("notarium/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RegistryConfigError::Client(e.to_string()))?;
        Ok(Self {
            base: settings.url.trim_end_matches('/').to_owned(),
            name: settings.url.clone(),
            plain_http: parsed.scheme() == "http",
            settings,
            http,
            tokens: TokenCache::default(),
            token_fetch: tokio::sync::Mutex::new(()),
        })
    }

    fn error(&self, failure: LookupFailure, reason: impl Into<String>) -> LookupError {
        LookupError {
            registry: self.name.clone(),
            failure,
            reason: reason.into(),
        }
    }

    /// The answer was unusable.
    fn bad(&self, reason: impl Into<String>) -> LookupError {
        self.error(LookupFailure::BadAnswer, reason)
    }

    /// PROTOCOL.md §10.2 steps 2–4.
    async fn lookup(&self, repo: &str, digest: &str, length: i64) -> Result<Lookup, LookupError> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .ok_or_else(|| self.bad(format!("{digest:?} is not a sha256 digest")))?;
        if !repo.split('/').all(is_path_component) {
            return Err(self.bad(format!("{repo:?} is not a registry repository name")));
        }
        let url = Url::parse(&format!("{}/v2/{repo}/manifests/sha256:{hex}", self.base))
            .map_err(|e| self.bad(format!("bad manifest URL: {e}")))?;
        let scope = token::pull_scope(repo);
        let mut session = Session {
            registry: self,
            auth: self.tokens.get(&self.base, &scope),
            scope,
            challenged: false,
        };

        let head = session.send(Method::HEAD, &url).await?;
        match head.status() {
            StatusCode::OK => {
                check_digest_header(head.headers(), digest).map_err(|r| self.bad(r))?;
                if let Some(size) = content_length(head.headers())
                    && length > 0
                    && i64::try_from(size).ok() != Some(length)
                {
                    // The digest still names this object, and whether it
                    // is an index is what the policy needs; a wrong length
                    // only makes the target unverifiable for clients.
                    tracing::debug!(
                        digest,
                        size,
                        length,
                        "registry size differs from the target's length"
                    );
                }
                let declared = header_str(head.headers(), CONTENT_TYPE);
                match declared.and_then(manifest::kind_from_media_type) {
                    Some(ManifestKind::Image) => return Ok(Lookup::Found(ManifestKind::Image)),
                    Some(index @ ManifestKind::Index(_)) => {
                        // Only the body tells an application bundle from a
                        // multi-arch image (§10.3); it is an index either
                        // way, so a failed GET still answers.
                        return Ok(match session.get_manifest(&url, digest).await {
                            Ok(Some(kind)) => Lookup::Found(kind),
                            Ok(None) | Err(_) => Lookup::Found(index),
                        });
                    }
                    // No usable type: the body decides (§10.2 step 3).
                    None => {}
                }
            }
            StatusCode::NOT_FOUND => return Ok(Lookup::Unknown),
            status if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
                return Err(session.status_error(status, head).await.unwrap_or_else(|| {
                    self.error(
                        LookupFailure::RegistryError,
                        format!("HTTP {}", status.as_u16()),
                    )
                }));
            }
            // Anything else (405 from registries that do not answer HEAD,
            // a 400 that may mean MANIFEST_UNKNOWN, 401/403): a HEAD answer
            // has no body to say more, so let the GET decide.
            _ => {}
        }
        match session.get_manifest(&url, digest).await? {
            Some(kind) => Ok(Lookup::Found(kind)),
            None => Ok(Lookup::Unknown),
        }
    }

    /// Turns a `401` challenge into an `Authorization` header; a bearer
    /// token earned is cached for `scope`.
    async fn authorize(
        &self,
        headers: &HeaderMap,
        scope: &str,
    ) -> Result<HeaderValue, LookupError> {
        let challenges: Vec<Challenge> = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(parse_challenge)
            .collect();
        if let Some(bearer) = challenges
            .iter()
            .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
        {
            let _one_at_a_time = self.token_fetch.lock().await;
            // Earned meanwhile by a concurrent lookup?
            if let Some(value) = self.tokens.get(&self.base, scope) {
                return Ok(value);
            }
            let (value, lifetime) =
                token::fetch(&self.http, bearer, scope, self.basic(), self.plain_http)
                    .await
                    .map_err(|e| self.error(e.failure, e.detail))?;
            self.tokens.put(&self.base, scope, value.clone(), lifetime);
            return Ok(value);
        }
        if challenges
            .iter()
            .any(|c| c.scheme.eq_ignore_ascii_case("basic"))
        {
            return self.basic().ok_or_else(|| {
                self.error(
                    LookupFailure::CredentialsMissing,
                    "the registry asks for credentials and none are configured",
                )
            });
        }
        Err(self.error(
            LookupFailure::AccessDenied,
            "the registry refused access (HTTP 401) without a usable challenge",
        ))
    }

    fn basic(&self) -> Option<HeaderValue> {
        let user = self.settings.username.as_deref()?;
        let password = self.settings.password.as_ref().map_or("", |p| p.as_str());
        let pair = Zeroizing::new(format!("{user}:{password}"));
        let encoded = Zeroizing::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
        ));
        let mut value = HeaderValue::from_str(&encoded).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// The requests of one lookup, sharing the credentials the first challenge
/// earned.
struct Session<'a> {
    registry: &'a Registry,
    /// The token scope of the repository looked up.
    scope: String,
    /// Starts with a cached token, if any.
    auth: Option<HeaderValue>,
    challenged: bool,
}

impl Session<'_> {
    /// Sends once; on the first `401` of the lookup, answers the challenge
    /// and sends again.
    async fn send(&mut self, method: Method, url: &Url) -> Result<reqwest::Response, LookupError> {
        let response = self.send_once(method.clone(), url).await?;
        if response.status() != StatusCode::UNAUTHORIZED || self.challenged {
            return Ok(response);
        }
        self.challenged = true;
        if self.auth.take().is_some() {
            // A cached token the registry no longer takes.
            self.registry
                .tokens
                .forget(&self.registry.base, &self.scope);
        }
        self.auth = Some(
            self.registry
                .authorize(response.headers(), &self.scope)
                .await?,
        );
        self.send_once(method, url).await
    }

    async fn send_once(&self, method: Method, url: &Url) -> Result<reqwest::Response, LookupError> {
        let mut request = self
            .registry
            .http
            .request(method, url.clone())
            .header(ACCEPT, HeaderValue::from_static(manifest::ACCEPT));
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let retry = request.try_clone();
        let answer = match (request.send().await, retry) {
            // A pooled connection the registry closed meanwhile (e.g. it
            // restarted): HEAD and GET are idempotent, so try once more on
            // a fresh connection.
            (Err(e), Some(retry)) if !e.is_timeout() && !e.is_connect() => retry.send().await,
            (answer, _) => answer,
        };
        answer.map_err(|e| {
            let failure = if e.is_timeout() {
                LookupFailure::Timeout
            } else {
                LookupFailure::Unreachable
            };
            self.registry.error(failure, transport_reason(&e))
        })
    }

    /// `GET`s the manifest, checks its bytes against `digest` and
    /// classifies them. `Ok(None)`: the registry does not know the digest.
    async fn get_manifest(
        &mut self,
        url: &Url,
        digest: &str,
    ) -> Result<Option<ManifestKind>, LookupError> {
        let response = self.send(Method::GET, url).await?;
        let status = response.status();
        if status != StatusCode::OK {
            return match self.status_error(status, response).await {
                None => Ok(None),
                Some(error) => Err(error),
            };
        }
        let registry = self.registry;
        check_digest_header(response.headers(), digest).map_err(|r| registry.bad(r))?;
        let declared = header_str(response.headers(), CONTENT_TYPE).map(str::to_owned);
        let body = read_capped(response, MAX_MANIFEST_BYTES)
            .await
            .map_err(|r| registry.bad(r))?;
        let actual = format!(
            "sha256:{}",
            hex::encode(digest::digest(&digest::SHA256, &body).as_ref())
        );
        if actual != digest {
            return Err(registry.bad(format!(
                "registry returned different content for {digest} (its sha256 is {actual})"
            )));
        }
        match manifest::classify(declared.as_deref(), &body) {
            Some(kind) => Ok(Some(kind)),
            None => Err(registry.bad(format!(
                "{digest} is not a manifest the server knows (content type {})",
                declared.as_deref().unwrap_or("none")
            ))),
        }
    }

    /// A short reason for a status other than `200`; `None` when the
    /// status or the error body says the registry does not know the
    /// manifest (or the repository).
    async fn status_error(
        &self,
        status: StatusCode,
        response: reqwest::Response,
    ) -> Option<LookupError> {
        let registry = self.registry;
        if is_unknown(status, None) {
            return None;
        }
        let code = read_capped(response, MAX_ERROR_BYTES)
            .await
            .ok()
            .and_then(|body| error_code(&body));
        if is_unknown(status, code.as_deref()) {
            return None;
        }
        let code = code.map(|c| format!(" {c}")).unwrap_or_default();
        let n = status.as_u16();
        let (failure, reason) = match status {
            StatusCode::UNAUTHORIZED if self.auth.is_some() => (
                LookupFailure::CredentialsRefused,
                format!("the registry refused the server's credentials (HTTP {n}{code})"),
            ),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => (
                LookupFailure::AccessDenied,
                format!("the registry refused access (HTTP {n}{code})"),
            ),
            StatusCode::TOO_MANY_REQUESTS => (
                LookupFailure::RateLimited,
                format!("the registry is rate limiting (HTTP {n})"),
            ),
            s if s.is_server_error() => (
                LookupFailure::RegistryError,
                format!("registry error (HTTP {n}{code})"),
            ),
            _ => (
                LookupFailure::BadAnswer,
                format!("unexpected answer HTTP {n}{code}"),
            ),
        };
        Some(registry.error(failure, reason))
    }
}

/// 404, or a registry error body saying the manifest or repository is not
/// there.
fn is_unknown(status: StatusCode, code: Option<&str>) -> bool {
    status == StatusCode::NOT_FOUND
        || (status.is_client_error() && matches!(code, Some("MANIFEST_UNKNOWN" | "NAME_UNKNOWN")))
}

/// The first `errors[].code` of a distribution error body.
fn error_code(body: &[u8]) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    json.get("errors")?
        .as_array()?
        .first()?
        .get("code")?
        .as_str()
        .map(str::to_owned)
}

fn check_digest_header(headers: &HeaderMap, digest: &str) -> Result<(), String> {
    match header_str(headers, "docker-content-digest") {
        Some(returned) if returned != digest => Err(format!(
            "registry returned different content for {digest} (Docker-Content-Digest {returned})"
        )),
        _ => Ok(()),
    }
}

fn header_str(headers: &HeaderMap, name: impl reqwest::header::AsHeaderName) -> Option<&str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, CONTENT_LENGTH)?.parse().ok()
}

/// A repository path component (distribution's grammar, loosely): no empty,
/// `.`/`..` or URL-special components.
fn is_path_component(c: &str) -> bool {
    !c.is_empty()
        && c != "."
        && c != ".."
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Reads at most `cap` bytes of body; more is an error.
pub(super) async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(format!("answer is larger than {cap} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport_reason(&e))? {
        if body.len() + chunk.len() > cap {
            return Err(format!("answer is larger than {cap} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A short reason for a transport failure, without URLs (they are in
/// `LookupError::registry` already).
pub(crate) fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer in time".to_owned();
    }
    // The innermost cause is the useful part ("Connection refused").
    let mut root: &dyn std::error::Error = e;
    while let Some(next) = root.source() {
        root = next;
    }
    let root = root.to_string();
    if e.is_connect() {
        format!("cannot connect: {root}")
    } else if e.is_redirect() {
        "too many redirects".to_owned()
    } else if e.is_body() || e.is_decode() {
        format!("broken answer: {root}")
    } else {
        format!("request failed: {root}")
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(prefix: &str, url: &str) -> RegistrySettings {
        RegistrySettings {
            gun_prefix: prefix.to_owned(),
            url: url.to_owned(),
            username: None,
            password: None,
            require_image_manifests: false,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn debug_redacts_the_password() {
        let mut s = settings("r/", "https://r");
        s.username = Some("robot".to_owned());
        s.password = Some(Zeroizing::new("hunter2".to_owned()));
        let client = RegistryClient::new(vec![s.clone()]).unwrap();
        for shown in [format!("{s:?}"), format!("{client:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(
                shown.contains("redacted") && shown.contains("robot"),
                "{shown}"
            );
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = [
            settings("r/", "ftp://r"),
            settings("r/", "https://user:pw@r"),
            settings("r/", "not a url"),
            settings("r/", "https://r/?q"),
            RegistrySettings {
                timeout: Duration::ZERO,
                ..settings("r/", "https://r")
            },
            RegistrySettings {
                password: Some(Zeroizing::new("p".to_owned())),
                ..settings("r/", "https://r")
            },
        ];
        for s in bad {
            assert!(RegistryClient::new(vec![s.clone()]).is_err(), "{s:?}");
        }
        assert!(
            RegistryClient::new(vec![
                settings("r/", "https://a"),
                settings("r/", "https://b")
            ])
            .is_err()
        );
    }

    #[test]
    fn error_codes_and_unknown_statuses() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        assert_eq!(error_code(body).as_deref(), Some("MANIFEST_UNKNOWN"));
        assert!(is_unknown(
            StatusCode::BAD_REQUEST,
            Some("MANIFEST_UNKNOWN")
        ));
        assert!(is_unknown(StatusCode::NOT_FOUND, None));
        assert!(!is_unknown(StatusCode::BAD_REQUEST, Some("DIGEST_INVALID")));
        assert!(!is_unknown(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some("MANIFEST_UNKNOWN")
        ));
    }

    #[test]
    fn path_components() {
        assert!("team/app".split('/').all(is_path_component));
        for bad in ["team/../x", "a//b", "a?b", "a#b", "a%2fb", "a b"] {
            assert!(!bad.split('/').all(is_path_component), "{bad}");
        }
    }
}

//! The HTTP side of token auth (PROTOCOL.md §8): read `Authorization:
//! Bearer`, ask `crate::auth` whether the token is good and grants what the
//! route needs, and answer a refusal with notary's 401 challenge.

use std::sync::Arc;

use axum::http::{HeaderMap, Uri, header};

use super::error::{AuthFailure, Unauthorized};
use crate::auth::{Authenticator, Required, VerifiedToken};
use crate::repo::Clock;

/// Who made a request: the verified token, or nobody when no auth is
/// configured (or the route is open). Handed to the handlers for the audit
/// trail; shares the cached token rather than copying its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    token: Option<Arc<VerifiedToken>>,
}

impl Caller {
    /// A request without a token.
    pub const fn anonymous() -> Self {
        Self { token: None }
    }

    /// The token's `sub`, or `anonymous` (what the audit trail records for
    /// requests without a token).
    pub fn subject(&self) -> &str {
        self.token
            .as_ref()
            .map_or(crate::repo::ANONYMOUS, |token| token.subject.as_str())
    }
}

/// `auth: {type: token, options: {…}}`, ready to check requests.
pub struct TokenAuth {
    pub authenticator: Authenticator,
    pub realm: String,
    pub service: String,
    /// Challenge with `https://<Host>/auth/token` instead of `realm`.
    pub autoredirect: bool,
    pub clock: Clock,
}

impl std::fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuth")
            .field("realm", &self.realm)
            .field("service", &self.service)
            .field("autoredirect", &self.autoredirect)
            .finish_non_exhaustive()
    }
}

/// `Bearer <token>` as distribution splits it: exactly two space-separated
/// parts, the scheme case-insensitive; the header must be visible ASCII (Go
/// reads it as a string; anything else is no token at all).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let mut parts = value.split(' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(scheme), Some(token), None) if scheme.eq_ignore_ascii_case("bearer") => Some(token),
        _ => None,
    }
}

/// What follows `Bearer ` (any case), unchecked: the key for the token
/// cache, found without reading the 1–2 KiB token. Enough, because a cached
/// token passed [`bearer`] when it was verified (text, no space): a header
/// whose candidate equals one would pass it too, with that token.
fn bearer_candidate(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked("bearer ".len())?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

impl TokenAuth {
    /// Lets the request through as its caller, or refuses it.
    /// A known token (the usual case: clients resend theirs) costs a cache
    /// lookup; nothing is allocated unless the request is refused.
    pub fn check<'a>(
        &self,
        required: Required<'a>,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<Caller, Unauthorized<'a>> {
        let refuse = |failure| Unauthorized {
            realm: self.realm(headers, uri),
            service: self.service.clone(),
            required,
            failure,
        };
        let now = (self.clock)();
        let cached =
            bearer_candidate(headers).and_then(|token| self.authenticator.cached(token, now));
        let verified = match cached {
            Some(verified) => verified,
            None => {
                let Some(token) = bearer(headers) else {
                    return Err(refuse(AuthFailure::TokenRequired));
                };
                match self.authenticator.verify(token, now) {
                    Ok(verified) => verified,
                    Err(error) => {
                        // The reason, never the token.
                        tracing::info!(reason = %error, "token refused");
                        return Err(refuse(AuthFailure::InvalidToken));
                    }
                }
            }
        };
        if !verified.grants.allows(&required) {
            tracing::info!(
                subject = %verified.subject,
                scope = %required.scope(),
                "token lacks the access the request needs"
            );
            return Err(refuse(AuthFailure::InsufficientScope));
        }
        Ok(Caller {
            token: Some(verified),
        })
    }

    /// Go's `r.Host`: the Host header, or HTTP/2's `:authority`.
    fn realm(&self, headers: &HeaderMap, uri: &Uri) -> String {
        if !self.autoredirect {
            return self.realm.clone();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()))
            .unwrap_or_default();
        format!("https://{host}/auth/token")
    }
}

/// The caller of a request to a route needing `required` (`None`: open).
pub fn authorize<'a>(
    auth: Option<&TokenAuth>,
    required: Option<Required<'a>>,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Caller, Unauthorized<'a>> {
    match (auth, required) {
        (Some(auth), Some(required)) => auth.check(required, headers, uri),
        _ => Ok(Caller::anonymous()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_is_split_as_distribution_does() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            bearer(&headers).map(str::to_string)
        };
        assert_eq!(with("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(with("bearer abc").as_deref(), Some("abc"));
        assert_eq!(with("Bearer  abc"), None);
        assert_eq!(with("Bearer"), None);
        assert_eq!(with("Basic abc"), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn a_candidate_is_whatever_follows_the_scheme() {
        let with = |value: &[u8]| {
            let mut headers = HeaderMap::new();
            let value = HeaderValue::from_bytes(value).unwrap();
            headers.insert(header::AUTHORIZATION, value);
            bearer_candidate(&headers).map(<[u8]>::to_vec)
        };
        assert_eq!(with(b"Bearer abc").as_deref(), Some(&b"abc"[..]));
        assert_eq!(with(b"BEARER abc").as_deref(), Some(&b"abc"[..]));
        // Not checked here: these are never in the cache, so they miss and
        // `bearer` decides (no token, or a token that fails).
        assert_eq!(with(b"Bearer a b").as_deref(), Some(&b"a b"[..]));
        assert_eq!(with(b"Bearer a\xffb").as_deref(), Some(&b"a\xffb"[..]));
        assert_eq!(with(b"Bearer ").as_deref(), Some(&b""[..]));
        assert_eq!(with(b"Bearer"), None);
        assert_eq!(with(b"Basic abcdef"), None);
        assert_eq!(with(b"Bearer-abc"), None);
    }
}

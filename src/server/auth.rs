//! The HTTP side of token auth (PROTOCOL.md §8): read `Authorization:
//! Bearer`, ask `crate::auth` whether the token is good and grants what the
//! route needs, and answer a refusal with notary's 401 challenge.

use axum::http::{HeaderMap, Uri, header};

use super::error::{AuthFailure, Unauthorized};
use crate::auth::{Authenticator, Required};
use crate::repo::Clock;

/// Who made a request: the verified token's `sub`, or `anonymous` when no
/// auth is configured (or the route is open). Put in the request's
/// extensions and handed to the handlers, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub subject: String,
}

impl Caller {
    /// The subject the audit trail records for requests without a token.
    pub fn anonymous() -> Self {
        Self {
            subject: crate::repo::ANONYMOUS.to_string(),
        }
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
/// parts, the scheme case-insensitive.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let mut parts = value.split(' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(scheme), Some(token), None) if scheme.eq_ignore_ascii_case("bearer") => Some(token),
        _ => None,
    }
}

impl TokenAuth {
    /// Lets the request through as its caller, or refuses it.
    pub fn check(
        &self,
        required: &Required,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<Caller, Unauthorized> {
        let refuse = |failure| Unauthorized {
            realm: self.realm(headers, uri),
            service: self.service.clone(),
            required: required.clone(),
            failure,
        };
        let Some(token) = bearer(headers) else {
            return Err(refuse(AuthFailure::TokenRequired));
        };
        let verified = match self.authenticator.verify(token, (self.clock)()) {
            Ok(verified) => verified,
            Err(error) => {
                // The reason, never the token.
                tracing::info!(reason = %error, "token refused");
                return Err(refuse(AuthFailure::InvalidToken));
            }
        };
        if !verified.grants.allows(required) {
            tracing::info!(
                subject = %verified.subject,
                scope = %required.scope(),
                "token lacks the access the request needs"
            );
            return Err(refuse(AuthFailure::InsufficientScope));
        }
        Ok(Caller {
            subject: verified.subject.clone(),
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
pub fn authorize(
    auth: Option<&TokenAuth>,
    required: Option<Required>,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Caller, Unauthorized> {
    match (auth, required) {
        (Some(auth), Some(required)) => auth.check(&required, headers, uri),
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
}

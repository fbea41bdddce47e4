//! Docker token auth towards a registry (PROTOCOL.md §8; distribution
//! `registry/client/auth/session.go`): `GET realm?service=…&scope=…` with
//! the configured basic credentials, and a cache of the bearer tokens
//! earned, per (registry, scope), until shortly before they expire — so a
//! publish of many tags costs one token fetch, not one per tag.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{StatusCode, Url};
use zeroize::Zeroizing;

use super::challenge::Challenge;
use crate::policy::LookupFailure;

/// Token service answers above this are refused.
const MAX_TOKEN_BYTES: usize = 64 << 10;

/// The token spec's default lifetime when `expires_in` is absent (and its
/// minimum).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

/// Tokens are never kept longer than this, whatever the service says.
const MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// A token is dropped this long before it expires, so it does not expire
/// in flight.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

/// Cached tokens at most; a full cache drops expired entries, then any.
const MAX_ENTRIES: usize = 1024;

/// A failed fetch: what kind of failure (for users) and a detail (for the
/// log; never credentials or tokens).
#[derive(Debug)]
pub struct TokenError {
    pub failure: LookupFailure,
    pub detail: String,
}

fn fail(failure: LookupFailure, detail: impl Into<String>) -> TokenError {
    TokenError {
        failure,
        detail: detail.into(),
    }
}

/// The `repository:<repo>:pull` scope a manifest lookup needs.
pub fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

/// Bearer tokens by (registry base URL, scope), each with its deadline.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<(String, String), (HeaderValue, Instant)>>,
}

impl TokenCache {
    pub fn get(&self, registry: &str, scope: &str) -> Option<HeaderValue> {
        let entries = self.entries.lock().ok()?;
        let (value, until) = entries.get(&(registry.to_owned(), scope.to_owned()))?;
        (Instant::now() < *until).then(|| value.clone())
    }

    pub fn put(&self, registry: &str, scope: &str, value: HeaderValue, lifetime: Duration) {
        let Some(keep) = lifetime.min(MAX_LIFETIME).checked_sub(EXPIRY_MARGIN) else {
            return;
        };
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let now = Instant::now();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (_, until)| now < *until);
            if entries.len() >= MAX_ENTRIES {
                if let Some(key) = entries.keys().next().cloned() {
                    entries.remove(&key);
                }
            }
        }
        entries.insert((registry.to_owned(), scope.to_owned()), (value, now + keep));
    }

    /// Drops a token the registry no longer accepts.
    pub fn forget(&self, registry: &str, scope: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&(registry.to_owned(), scope.to_owned()));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
}

/// Fetches a token for `scope` from the realm of a `Bearer` challenge.
/// `basic` (the configured credentials) is sent only over HTTPS, or where
/// the operator chose plain HTTP for the registry itself.
pub async fn fetch(
    http: &reqwest::Client,
    challenge: &Challenge,
    scope: &str,
    basic: Option<HeaderValue>,
    plain_http: bool,
) -> Result<(HeaderValue, Duration), TokenError> {
    let realm = challenge.param("realm").ok_or_else(|| {
        fail(
            LookupFailure::TokenService,
            "the registry's Bearer challenge has no realm",
        )
    })?;
    let mut url = Url::parse(realm)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            fail(
                LookupFailure::TokenService,
                format!("the token realm {realm:?} is not an http(s) URL"),
            )
        })?;
    {
        let mut query = url.query_pairs_mut();
        if let Some(service) = challenge.param("service") {
            query.append_pair("service", service);
        }
        query.append_pair("scope", scope);
    }
    let mut request = http.get(url.clone());
    if url.scheme() == "https" || plain_http {
        if let Some(basic) = basic {
            request = request.header(AUTHORIZATION, basic);
        }
    }
    let service = format!("token service {}", url.origin().ascii_serialization());
    let response = request.send().await.map_err(|e| {
        let failure = if e.is_timeout() {
            LookupFailure::Timeout
        } else {
            LookupFailure::Unreachable
        };
        fail(
            failure,
            format!("{service}: {}", super::client::transport_reason(&e)),
        )
    })?;
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(fail(
            LookupFailure::CredentialsRefused,
            format!("{service} answered HTTP {}", status.as_u16()),
        ));
    }
    if status != StatusCode::OK {
        return Err(fail(
            LookupFailure::TokenService,
            format!("{service} answered HTTP {}", status.as_u16()),
        ));
    }
    let body = super::client::read_capped(response, MAX_TOKEN_BYTES)
        .await
        .map_err(|r| fail(LookupFailure::TokenService, format!("{service}: {r}")))?;
    let json: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
        fail(
            LookupFailure::TokenService,
            format!("{service} answered something other than JSON"),
        )
    })?;
    let token = ["token", "access_token"]
        .iter()
        .find_map(|k| {
            json.get(*k)
                .and_then(serde_json::Value::as_str)
                .filter(|t| !t.is_empty())
        })
        .ok_or_else(|| {
            fail(
                LookupFailure::TokenService,
                format!("{service} answered without a token"),
            )
        })?;
    let lifetime = json
        .get("expires_in")
        .and_then(serde_json::Value::as_u64)
        .map_or(DEFAULT_LIFETIME, |s| {
            Duration::from_secs(s).max(DEFAULT_LIFETIME)
        });
    let header = Zeroizing::new(format!("Bearer {token}"));
    let mut value = HeaderValue::from_str(&header).map_err(|_| {
        fail(
            LookupFailure::TokenService,
            format!("{service} answered an unusable token"),
        )
    })?;
    value.set_sensitive(true);
    Ok((value, lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_kept_per_registry_and_scope_until_expiry() {
        let cache = TokenCache::default();
        let token = HeaderValue::from_static("Bearer t");
        cache.put(
            "https://r",
            "repository:a:pull",
            token.clone(),
            DEFAULT_LIFETIME,
        );
        assert_eq!(
            cache.get("https://r", "repository:a:pull"),
            Some(token.clone())
        );
        assert_eq!(cache.get("https://r", "repository:b:pull"), None);
        assert_eq!(cache.get("https://other", "repository:a:pull"), None);
        cache.forget("https://r", "repository:a:pull");
        assert_eq!(cache.get("https://r", "repository:a:pull"), None);
        // A lifetime within the margin is not worth keeping.
        cache.put("https://r", "s", token, Duration::from_secs(5));
        assert_eq!(cache.get("https://r", "s"), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = TokenCache::default();
        for i in 0..MAX_ENTRIES + 10 {
            cache.put(
                "https://r",
                &format!("repository:{i}:pull"),
                HeaderValue::from_static("Bearer t"),
                DEFAULT_LIFETIME,
            );
        }
        assert!(cache.len() <= MAX_ENTRIES);
    }
}

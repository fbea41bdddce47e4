//! Docker registry token authentication (PROTOCOL.md §8), pure: no I/O, no
//! async, and the clock is a parameter. The HTTP side (reading the header,
//! the 401 challenge) lives in `server/auth.rs`.

pub mod cache;
pub mod claims;
pub mod libtrust;
pub mod scope;
pub mod verify;

use std::sync::Arc;

use thiserror::Error;
use time::OffsetDateTime;

pub use cache::TokenCache;
pub use claims::Expectations;
pub use scope::{Action, Grants, Required, Resource};
pub use verify::{ChainProblem, TrustBundle, VerifiedToken, Verifier};

/// Why a token (or the bundle that checks tokens) was refused. Every token
/// refusal is answered the same way (401 `invalid_token`); the variants
/// exist for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    #[error("the token's {part} is not valid base64url JSON (compact JWS expected)")]
    Malformed { part: &'static str },
    #[error("signing algorithm {alg:?} is not accepted (ES256/384/512, RS256/384/512)")]
    UnsupportedAlgorithm { alg: String },
    #[error("the token's issuer is not the configured auth.options.issuer")]
    UntrustedIssuer,
    #[error("the token's audience is not the configured auth.options.service")]
    WrongAudience,
    #[error("the token expired (exp {exp})")]
    Expired { exp: i64 },
    #[error("the token is not valid yet (nbf {nbf})")]
    NotYetValid { nbf: i64 },
    #[error("the token has no signature")]
    EmptySignature,
    #[error("the token header names no signing key (x5c, jwk or kid)")]
    NoSigningKey,
    #[error("the token's signing key is not in the root certificate bundle")]
    UntrustedKey,
    #[error("the token's certificate chain is not trusted: {problem}")]
    UntrustedChain { problem: ChainProblem },
    #[error("the token's JWK does not match its certificate or kid")]
    JwkMismatch,
    #[error("unusable signing key: {reason}")]
    BadKey { reason: &'static str },
    #[error("the signing key does not suit algorithm {alg}")]
    KeyDoesNotSuitAlgorithm { alg: &'static str },
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the root certificate bundle holds no CERTIFICATE")]
    EmptyBundle,
    #[error("certificate {index} of the root certificate bundle does not parse")]
    BundleCertificate { index: usize },
    #[error("certificate {index} of the root certificate bundle has no EC or RSA key")]
    BundleKey { index: usize },
}

/// Verification with a cache in front, so a client that sends the same
/// token on every request pays for the signature check once.
#[derive(Debug)]
pub struct Authenticator {
    verifier: Verifier,
    cache: TokenCache,
}

impl Authenticator {
    pub fn new(verifier: Verifier, cache_capacity: usize) -> Self {
        Self {
            verifier,
            cache: TokenCache::new(cache_capacity),
        }
    }

    /// A token verified before and still live, found by its exact bytes
    /// (the header value need not be read as text first).
    pub fn cached(&self, token: &[u8], now: OffsetDateTime) -> Option<Arc<VerifiedToken>> {
        self.cache.get(token, now)
    }

    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Result<Arc<VerifiedToken>, Error> {
        if let Some(hit) = self.cached(token.as_bytes(), now) {
            return Ok(hit);
        }
        let verified = Arc::new(self.verifier.verify(token, now)?);
        self.cache.insert(token, &verified, now);
        Ok(verified)
    }
}

//! The one error type of the TUF layer. Each variant is a failure a caller
//! must be able to tell apart; fields are structured so the HTTP layer can
//! phrase messages for users (and tests can assert the exact reason).

use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("malformed JSON: {0}")]
    MalformedJson(#[source] serde_json::Error),

    /// An object repeats a member name (see `strict`).
    #[error("the JSON key {key:?} appears twice in the same object at {path}")]
    DuplicateKey { key: String, path: String },

    /// A `keys` map files a key under an ID that is not the key's own.
    #[error("{role} lists a key under key ID {listed}, but the key's content has ID {computed}")]
    ListedKeyIdMismatch {
        role: String,
        listed: String,
        computed: String,
    },

    #[error("{role} metadata is malformed: {source}")]
    MalformedRole {
        role: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("canonical JSON does not support non-integer numbers (found {value})")]
    NonIntegralNumber { value: String },

    #[error("metadata has type {found:?}, expected {expected:?}")]
    WrongType {
        expected: &'static str,
        found: String,
    },

    #[error("{role} type metadata invalid: {reason}")]
    InvalidStructure { role: String, reason: String },

    #[error("invalid role name {name:?}")]
    InvalidRoleName { name: String },

    #[error("tuf: data has no signatures for {role}")]
    NoSignatures { role: String },

    #[error("role {role} has invalid threshold {threshold}; it must be at least 1")]
    InvalidThreshold { role: String, threshold: i64 },

    #[error(
        "valid signatures did not meet threshold for {role}: {valid} valid of {threshold} required"
    )]
    ThresholdNotMet {
        role: String,
        threshold: i64,
        valid: usize,
        /// Why each signature by an authorised key was not counted.
        rejected: Vec<RejectedSignature>,
    },

    #[error("key ID is not valid for key content: listed as {listed}, computed {computed}")]
    KeyIdMismatch { listed: String, computed: String },

    #[error("unknown key type {keytype:?}")]
    UnknownKeyType { keytype: String },

    #[error("malformed {keytype} key: {reason}")]
    MalformedKey {
        keytype: String,
        reason: &'static str,
    },

    #[error("unsupported ecdsa key: curve is not P-256, P-384 or P-521")]
    UnsupportedCurve,

    #[error("unsupported rsa key: RSA key must be at least {minimum} bits, has {bits}")]
    WeakRsaKey { bits: usize, minimum: usize },

    #[error("signing method is not supported: {method}")]
    UnsupportedMethod { method: String },

    #[error("signing method {method} cannot be used with a {keytype} key")]
    MethodKeyMismatch { method: String, keytype: String },

    #[error("signature was invalid")]
    BadSignature,

    #[error("{role} expired at {expired}")]
    Expired { role: String, expired: String },

    #[error("{role} has version {actual}, lower than the minimum {minimum}")]
    LowVersion {
        role: String,
        actual: i64,
        minimum: i64,
    },

    /// Boxed: the parse error is large and rare.
    #[error("invalid expiry time {value:?}: {source}")]
    InvalidTime {
        value: String,
        #[source]
        source: Box<time::error::Parse>,
    },

    #[error("tuf: invalid role {role}. delegation does not exist")]
    UnknownDelegation { role: String },

    #[error("role {role} is not listed in the root")]
    MissingRole { role: String },

    #[error("no checksums for supported algorithms were provided for {role}")]
    NoChecksums { role: String },

    #[error("{algorithm} checksum for {role} did not match: expected {expected}")]
    ChecksumMismatch {
        role: String,
        algorithm: &'static str,
        expected: String,
    },

    #[error("length of {role} is {actual} bytes, expected {expected}")]
    LengthMismatch {
        role: String,
        expected: i64,
        actual: usize,
    },

    #[error("could not sign: {reason}")]
    Signing { reason: &'static str },
}

/// A signature by a key the role authorises that did not count, and why.
#[derive(Debug)]
pub struct RejectedSignature {
    pub keyid: String,
    pub reason: Error,
}

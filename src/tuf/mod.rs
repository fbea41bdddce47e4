//! Notary's TUF dialect: canonical JSON, wire types, keys, signatures and
//! verification. Pure: no I/O, no async, and no clock (callers pass `now`).

pub mod canonical;
pub mod certs;
pub mod chain;
pub mod encoding;
pub mod envelope;
mod error;
pub mod keys;
pub mod pem;
pub mod roles;
pub mod sig;
pub mod sign;
pub mod strict;
pub mod verify;

pub use envelope::{Signature, SignedFile};
pub use error::{Error, RejectedSignature};
pub use keys::{KeyType, PublicKey};
pub use roles::{FileMeta, Hashes, RoleName, Root, Snapshot, Targets, Timestamp, TrustedRole};
pub use sig::Method;
pub use sign::{KeyAlgorithm, SigningKey};

/// Notary's minimum RSA size for certificates (`notary.MinRSABitSize`).
pub const MIN_RSA_BITS_FOR_CERTS: usize = 2048;

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// SHA-512 of `bytes`.
pub fn sha512(bytes: &[u8]) -> [u8; 64] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, bytes);
    let mut out = [0; 64];
    out.copy_from_slice(digest.as_ref());
    out
}

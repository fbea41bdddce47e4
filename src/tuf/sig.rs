//! Signature methods and verification (PROTOCOL.md §4.5,
//! `tuf/signed/verifiers.go`). Ed25519 is verified with `ed25519-dalek` and
//! ECDSA P-256 with `p256` (the crates the product is specified with);
//! aws-lc verifies what they do not cover (RSA, ECDSA P-384 and P-521).

use std::fmt;

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};

use super::Error;
use super::keys::{EcCurve, KeyType, PublicKey, VerifyingKey};

/// A signature's `method`, lower-cased on parse as Notary does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// ECDSA over SHA-256 of the message, signature r‖s at the curve's width.
    EcdsaRawSha256,
    /// Ed25519 over the message.
    EdDsa,
    /// RSASSA-PSS, SHA-256, MGF1-SHA-256, salt length 32.
    RsaPssSha256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (verification only).
    RsaPkcs1v15Sha256,
    /// Legacy PSS over a PEM-encoded `rsa` key (verification only).
    PyCryptoPss,
    Unsupported(String),
}

impl Method {
    pub fn parse(text: &str) -> Self {
        match text.to_ascii_lowercase().as_str() {
            "ecdsa" => Self::EcdsaRawSha256,
            "eddsa" => Self::EdDsa,
            "rsapss" => Self::RsaPssSha256,
            "rsapkcs1v15" => Self::RsaPkcs1v15Sha256,
            "pycrypto-pkcs#1 pss" => Self::PyCryptoPss,
            other => Self::Unsupported(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::EcdsaRawSha256 => "ecdsa",
            Self::EdDsa => "eddsa",
            Self::RsaPssSha256 => "rsapss",
            Self::RsaPkcs1v15Sha256 => "rsapkcs1v15",
            Self::PyCryptoPss => "pycrypto-pkcs#1 pss",
            Self::Unsupported(other) => other,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Verifies one signature over `message` (already canonical JSON).
pub fn verify_signature(
    key: &PublicKey,
    method: &Method,
    message: &[u8],
    signature: &[u8],
) -> Result<(), Error> {
    let allowed = match method {
        Method::EcdsaRawSha256 => matches!(key.keytype(), KeyType::Ecdsa | KeyType::EcdsaX509),
        Method::EdDsa => matches!(key.keytype(), KeyType::Ed25519),
        Method::RsaPssSha256 | Method::RsaPkcs1v15Sha256 => {
            matches!(key.keytype(), KeyType::Rsa | KeyType::RsaX509)
        }
        Method::PyCryptoPss => matches!(key.keytype(), KeyType::Rsa),
        Method::Unsupported(name) => {
            return Err(Error::UnsupportedMethod {
                method: name.clone(),
            });
        }
    };
    if !allowed {
        if let KeyType::Unknown(keytype) = key.keytype() {
            return Err(Error::UnknownKeyType {
                keytype: keytype.clone(),
            });
        }
        return Err(Error::MethodKeyMismatch {
            method: method.to_string(),
            keytype: key.keytype().to_string(),
        });
    }
    let verifying = if *method == Method::PyCryptoPss {
        key.verifying_key_from_pem()?
    } else {
        key.verifying_key()?
    };
    match (&verifying, method) {
        (VerifyingKey::Ed25519(public), Method::EdDsa) => {
            verify_ed25519(public, message, signature)
        }
        (VerifyingKey::Ecdsa { curve, spki_der }, Method::EcdsaRawSha256) => {
            verify_ecdsa_raw(*curve, spki_der, message, signature)
        }
        (VerifyingKey::Rsa { spki_der, .. }, Method::RsaPssSha256 | Method::PyCryptoPss) => check(
            &signature::RSA_PSS_2048_8192_SHA256,
            spki_der,
            message,
            signature,
        ),
        (VerifyingKey::Rsa { spki_der, .. }, Method::RsaPkcs1v15Sha256) => check(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            spki_der,
            message,
            signature,
        ),
        _ => Err(Error::MethodKeyMismatch {
            method: method.to_string(),
            keytype: key.keytype().to_string(),
        }),
    }
}

fn check(
    algorithm: &'static dyn VerificationAlgorithm,
    public: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), Error> {
    UnparsedPublicKey::new(algorithm, public)
        .verify(message, signature)
        .map_err(|_| Error::BadSignature)
}

/// Notary always hashes with SHA-256, whatever the curve, and sends r‖s with
/// each half padded to the curve's byte size.
fn verify_ecdsa_raw(
    curve: EcCurve,
    spki_der: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), Error> {
    if signature.len() != 2 * curve.scalar_len() {
        return Err(Error::BadSignature);
    }
    match curve {
        EcCurve::P256 => verify_p256(spki_der, message, signature),
        EcCurve::P521 => check(
            &signature::ECDSA_P521_SHA256_FIXED,
            spki_der,
            message,
            signature,
        ),
        // aws-lc has no fixed-width P-384/SHA-256 verifier: re-encode as DER.
        EcCurve::P384 => {
            let (r, s) = signature.split_at(curve.scalar_len());
            check(
                &signature::ECDSA_P384_SHA256_ASN1,
                spki_der,
                message,
                &ecdsa_der(r, s),
            )
        }
    }
}

/// Ed25519 with `ed25519-dalek` (the crate the product is specified with).
fn verify_ed25519(public: &[u8], message: &[u8], signature: &[u8]) -> Result<(), Error> {
    use ed25519_dalek::Verifier as _;
    let public: &[u8; 32] = public.try_into().map_err(|_| Error::BadSignature)?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(public).map_err(|_| Error::BadSignature)?;
    let signature =
        ed25519_dalek::Signature::from_slice(signature).map_err(|_| Error::BadSignature)?;
    key.verify(message, &signature)
        .map_err(|_| Error::BadSignature)
}

/// ECDSA P-256 over SHA-256 with `p256`; `signature` is r‖s.
fn verify_p256(spki_der: &[u8], message: &[u8], signature: &[u8]) -> Result<(), Error> {
    use p256::ecdsa::signature::Verifier as _;
    use p256::pkcs8::DecodePublicKey as _;
    let key = p256::ecdsa::VerifyingKey::from_public_key_der(spki_der)
        .map_err(|_| Error::BadSignature)?;
    let signature =
        p256::ecdsa::Signature::from_slice(signature).map_err(|_| Error::BadSignature)?;
    key.verify(message, &signature)
        .map_err(|_| Error::BadSignature)
}

/// DER `SEQUENCE { INTEGER r, INTEGER s }` from big-endian unsigned halves.
fn ecdsa_der(r: &[u8], s: &[u8]) -> Vec<u8> {
    fn integer(bytes: &[u8]) -> Vec<u8> {
        let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
        let mut content = if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
            let mut padded = vec![0];
            padded.extend_from_slice(&trimmed);
            padded
        } else if trimmed.is_empty() {
            vec![0]
        } else {
            trimmed
        };
        let mut out = vec![0x02];
        push_len(&mut out, content.len());
        out.append(&mut content);
        out
    }
    fn push_len(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            out.push(0x81);
            out.push(len as u8);
        }
    }
    let mut body = integer(r);
    body.extend(integer(s));
    let mut out = vec![0x30];
    push_len(&mut out, body.len());
    out.extend(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_parse_case_insensitively() {
        assert_eq!(Method::parse("ECDSA"), Method::EcdsaRawSha256);
        assert_eq!(Method::parse("RSAPSS"), Method::RsaPssSha256);
        assert_eq!(Method::parse("eddsa"), Method::EdDsa);
        assert_eq!(Method::parse("xyz"), Method::Unsupported("xyz".into()));
    }

    #[test]
    fn der_integers_are_minimal_and_positive() {
        assert_eq!(
            ecdsa_der(&[0, 0, 1], &[0x80]),
            vec![0x30, 7, 2, 1, 1, 2, 2, 0, 0x80]
        );
    }
}

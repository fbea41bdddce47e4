//! Signing with ed25519 and ECDSA P-256, in Notary's formats: `eddsa` over
//! the canonical bytes, `ecdsa` as fixed-width r‖s over SHA-256.
//!
//! Keys are generated and sign with `ed25519-dalek` and `p256` (the crates
//! the product is specified with); randomness comes from aws-lc's system
//! generator. The private half stays inside those key objects (zeroized on
//! drop); it leaves only as a zeroized PKCS#8 document, for sealing at
//! rest, or in notary-signer's layout for its table.

use std::fmt;

use ed25519_dalek::Signer as _;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use serde_json::Value;
use zeroize::Zeroizing;

use super::envelope::{Signature, write_envelope};
use super::keys::{KeyType, PublicKey};
use super::sig::Method;
use super::{Error, canonical};

/// Which kind of key to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Ed25519,
    EcdsaP256,
}

enum Inner {
    Ed25519(ed25519_dalek::SigningKey),
    EcdsaP256(p256::ecdsa::SigningKey),
}

/// A private key able to sign Notary metadata.
pub struct SigningKey {
    inner: Inner,
    public: PublicKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

fn rejected() -> Error {
    Error::Signing {
        reason: "private key rejected",
    }
}

fn not_encoded() -> Error {
    Error::Signing {
        reason: "private key does not encode",
    }
}

impl SigningKey {
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, Error> {
        let failed = || Error::Signing {
            reason: "key generation failed",
        };
        // A P-256 scalar must be non-zero and below the group order: a
        // random 32 bytes almost always is; draw again if not.
        for _ in 0..8 {
            let mut secret = Zeroizing::new([0u8; 32]);
            aws_lc_rs::rand::fill(&mut secret[..]).map_err(|_| failed())?;
            let inner = match algorithm {
                KeyAlgorithm::Ed25519 => {
                    Inner::Ed25519(ed25519_dalek::SigningKey::from_bytes(&secret))
                }
                KeyAlgorithm::EcdsaP256 => match p256::ecdsa::SigningKey::from_slice(&secret[..]) {
                    Ok(key) => Inner::EcdsaP256(key),
                    Err(_) => continue,
                },
            };
            return Self::from_inner(inner);
        }
        Err(failed())
    }

    fn from_inner(inner: Inner) -> Result<Self, Error> {
        let public = match &inner {
            Inner::Ed25519(key) => {
                PublicKey::new(KeyType::Ed25519, key.verifying_key().to_bytes().to_vec())
            }
            Inner::EcdsaP256(key) => {
                let spki = key
                    .verifying_key()
                    .to_public_key_der()
                    .map_err(|_| Error::Signing {
                        reason: "public key does not encode",
                    })?;
                PublicKey::new(KeyType::Ecdsa, spki.as_bytes().to_vec())
            }
        };
        Ok(Self { inner, public })
    }

    /// Loads a PKCS#8 (v1 or v2) private key.
    pub fn from_pkcs8(algorithm: KeyAlgorithm, der: &[u8]) -> Result<Self, Error> {
        let inner = match algorithm {
            KeyAlgorithm::Ed25519 => Inner::Ed25519(
                ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(|_| rejected())?,
            ),
            KeyAlgorithm::EcdsaP256 => Inner::EcdsaP256(
                p256::ecdsa::SigningKey::from_pkcs8_der(der).map_err(|_| rejected())?,
            ),
        };
        Self::from_inner(inner)
    }

    /// Loads a private key as notary-signer stores it (PROTOCOL.md §6.4):
    /// ECDSA as SEC1 DER (`EC PRIVATE KEY`), Ed25519 as 96 bytes: the public
    /// key, then Go's 64-byte private key (seed ‖ public key).
    pub fn from_notary_private(algorithm: KeyAlgorithm, bytes: &[u8]) -> Result<Self, Error> {
        let key = match algorithm {
            KeyAlgorithm::EcdsaP256 => {
                let secret = p256::SecretKey::from_sec1_der(bytes).map_err(|_| rejected())?;
                Self::from_inner(Inner::EcdsaP256(secret.into()))?
            }
            KeyAlgorithm::Ed25519 => {
                let seed: &[u8; 32] = bytes
                    .get(32..64)
                    .and_then(|s| s.try_into().ok())
                    .filter(|_| bytes.len() == 96)
                    .ok_or_else(rejected)?;
                let key =
                    Self::from_inner(Inner::Ed25519(ed25519_dalek::SigningKey::from_bytes(seed)))?;
                // The stored public key must be the seed's.
                if key.public.public_bytes() != &bytes[..32] {
                    return Err(rejected());
                }
                key
            }
        };
        Ok(key)
    }

    /// The private key as notary-signer stores it (the inverse of
    /// [`SigningKey::from_notary_private`]), zeroized on drop, so a key
    /// written here can be read by the Go signer.
    pub fn to_notary_private(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        match &self.inner {
            Inner::EcdsaP256(key) => {
                // RFC 5915 ECPrivateKey with the curve named: Go's
                // x509.ParseECPrivateKey needs the parameters, which
                // `p256`'s own SEC1 encoder leaves out. The layout is fixed
                // for P-256: version 1, the 32-byte scalar, [0] the curve
                // OID, [1] the uncompressed public point.
                const CURVE: [u8; 12] = [
                    0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
                ];
                let point = key.verifying_key().to_encoded_point(false);
                let point = point.as_bytes();
                if point.len() != 65 {
                    return Err(not_encoded());
                }
                let mut der = Zeroizing::new(Vec::with_capacity(121));
                der.extend_from_slice(&[0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20]);
                der.extend_from_slice(&key.to_bytes());
                der.extend_from_slice(&CURVE);
                der.extend_from_slice(&[0xa1, 0x44, 0x03, 0x42, 0x00]);
                der.extend_from_slice(point);
                Ok(der)
            }
            Inner::Ed25519(key) => {
                let public = key.verifying_key().to_bytes();
                let mut bytes = Zeroizing::new(Vec::with_capacity(96));
                bytes.extend_from_slice(&public);
                bytes.extend_from_slice(key.as_bytes());
                bytes.extend_from_slice(&public);
                Ok(bytes)
            }
        }
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.inner {
            Inner::Ed25519(_) => KeyAlgorithm::Ed25519,
            Inner::EcdsaP256(_) => KeyAlgorithm::EcdsaP256,
        }
    }

    /// The private key as PKCS#8 DER, zeroized on drop.
    pub fn to_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let document = match &self.inner {
            Inner::Ed25519(key) => key.to_pkcs8_der(),
            Inner::EcdsaP256(key) => key.to_pkcs8_der(),
        }
        .map_err(|_| not_encoded())?;
        Ok(Zeroizing::new(document.as_bytes().to_vec()))
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    pub fn method(&self) -> Method {
        match self.inner {
            Inner::Ed25519(_) => Method::EdDsa,
            Inner::EcdsaP256(_) => Method::EcdsaRawSha256,
        }
    }

    /// Signs `message` (canonical bytes) and returns the signature entry.
    pub fn sign(&self, message: &[u8]) -> Result<Signature, Error> {
        let sig = match &self.inner {
            Inner::Ed25519(key) => key.sign(message).to_bytes().to_vec(),
            // SHA-256 of the message, RFC 6979 nonce, r‖s at 32 bytes each.
            Inner::EcdsaP256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(message);
                signature.to_bytes().to_vec()
            }
        };
        Ok(Signature {
            keyid: self.public.id().to_string(),
            method: self.method(),
            sig,
        })
    }
}

/// Canonicalizes `signed`, signs it with every key and writes the envelope.
pub fn sign_metadata(signed: &Value, keys: &[&SigningKey]) -> Result<Vec<u8>, Error> {
    let message = canonical::to_canonical(signed)?;
    let signatures = keys
        .iter()
        .map(|key| key.sign(&message))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(write_envelope(&message, &signatures))
}

//! Signing with ed25519 and ECDSA P-256, in Notary's formats: `eddsa` over
//! the canonical bytes, `ecdsa` as fixed-width r‖s over SHA-256.
//!
//! The private half stays inside aws-lc's key objects; it leaves only as a
//! zeroized PKCS#8 document, for sealing at rest.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
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
    Ed25519(Ed25519KeyPair),
    EcdsaP256(EcdsaKeyPair),
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

impl SigningKey {
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, Error> {
        let rng = SystemRandom::new();
        let pkcs8 = match algorithm {
            KeyAlgorithm::Ed25519 => Ed25519KeyPair::generate_pkcs8(&rng),
            KeyAlgorithm::EcdsaP256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            }
        }
        .map_err(|_| Error::Signing {
            reason: "key generation failed",
        })?;
        Self::from_pkcs8(algorithm, pkcs8.as_ref())
    }

    /// Loads a PKCS#8 (v1 or v2) private key.
    pub fn from_pkcs8(algorithm: KeyAlgorithm, der: &[u8]) -> Result<Self, Error> {
        let rejected = |_| Error::Signing {
            reason: "private key rejected",
        };
        let (inner, public) = match algorithm {
            KeyAlgorithm::Ed25519 => {
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(rejected)?;
                let public = PublicKey::new(KeyType::Ed25519, pair.public_key().as_ref().to_vec());
                (Inner::Ed25519(pair), public)
            }
            KeyAlgorithm::EcdsaP256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(rejected)?;
                let spki = pair.public_key().as_der().map_err(|_| Error::Signing {
                    reason: "public key does not encode",
                })?;
                let public = PublicKey::new(KeyType::Ecdsa, spki.as_ref().to_vec());
                (Inner::EcdsaP256(pair), public)
            }
        };
        Ok(Self { inner, public })
    }

    /// Loads a private key as notary-signer stores it (PROTOCOL.md §6.4):
    /// ECDSA as SEC1 DER (`EC PRIVATE KEY`), Ed25519 as 96 bytes: the public
    /// key, then Go's 64-byte private key (seed ‖ public key).
    pub fn from_notary_private(algorithm: KeyAlgorithm, bytes: &[u8]) -> Result<Self, Error> {
        match algorithm {
            KeyAlgorithm::EcdsaP256 => {
                let pair =
                    EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, bytes)
                        .map_err(|_| Error::Signing {
                            reason: "private key rejected",
                        })?;
                let pkcs8 = pair.to_pkcs8v1().map_err(|_| Error::Signing {
                    reason: "private key does not encode",
                })?;
                Self::from_pkcs8(algorithm, pkcs8.as_ref())
            }
            KeyAlgorithm::Ed25519 => {
                let rejected = || Error::Signing {
                    reason: "private key rejected",
                };
                if bytes.len() != 96 {
                    return Err(rejected());
                }
                let pair = Ed25519KeyPair::from_seed_and_public_key(&bytes[32..64], &bytes[..32])
                    .map_err(|_| rejected())?;
                let pkcs8 = pair.to_pkcs8().map_err(|_| rejected())?;
                Self::from_pkcs8(algorithm, pkcs8.as_ref())
            }
        }
    }

    /// The private key as notary-signer stores it (the inverse of
    /// [`SigningKey::from_notary_private`]), zeroized on drop, so a key
    /// written here can be read by the Go signer.
    pub fn to_notary_private(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let failed = || Error::Signing {
            reason: "private key does not encode",
        };
        match &self.inner {
            Inner::EcdsaP256(pair) => {
                let der: aws_lc_rs::encoding::EcPrivateKeyRfc5915Der<'_> =
                    pair.private_key().as_der().map_err(|_| failed())?;
                Ok(Zeroizing::new(der.as_ref().to_vec()))
            }
            Inner::Ed25519(pair) => {
                use aws_lc_rs::encoding::AsBigEndian;
                let seed: aws_lc_rs::encoding::Curve25519SeedBin<'_> = pair
                    .seed()
                    .map_err(|_| failed())?
                    .as_be_bytes()
                    .map_err(|_| failed())?;
                let public = pair.public_key().as_ref();
                let mut bytes = Zeroizing::new(Vec::with_capacity(96));
                bytes.extend_from_slice(public);
                bytes.extend_from_slice(seed.as_ref());
                bytes.extend_from_slice(public);
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
            Inner::Ed25519(pair) => pair.to_pkcs8(),
            Inner::EcdsaP256(pair) => pair.to_pkcs8v1(),
        }
        .map_err(|_| Error::Signing {
            reason: "private key does not encode",
        })?;
        Ok(Zeroizing::new(document.as_ref().to_vec()))
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
            Inner::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
            Inner::EcdsaP256(pair) => pair
                .sign(&SystemRandom::new(), message)
                .map_err(|_| Error::Signing {
                    reason: "ECDSA signing failed",
                })?
                .as_ref()
                .to_vec(),
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

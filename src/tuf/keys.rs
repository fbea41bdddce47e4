//! Public keys in Notary's wire form and their key IDs (PROTOCOL.md §4.4,
//! `tuf/data/keys.go`, `tuf/utils/x509.go`).
//!
//! A key is kept exactly as listed (type + public bytes). What it means
//! cryptographically is worked out only when it is used to verify, as Notary
//! does: metadata that lists a key of an unknown type or with garbage bytes is
//! still readable; it just cannot count towards a threshold.

use std::fmt;

use aws_lc_rs::digest;
use der::{Decode, asn1::ObjectIdentifier};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};
use spki::SubjectPublicKeyInfoRef;
use x509_cert::Certificate;

use super::{Error, canonical, encoding, pem};

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Notary rejects RSA keys below this size (`tuf/signed/verifiers.go`).
pub const MIN_RSA_BITS: usize = 2048;

/// The `keytype` of a Notary key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyType {
    Ed25519,
    Ecdsa,
    EcdsaX509,
    Rsa,
    RsaX509,
    /// Kept so the key ID stays computable; such a key verifies nothing.
    Unknown(String),
}

impl KeyType {
    pub fn parse(text: &str) -> Self {
        match text {
            "ed25519" => Self::Ed25519,
            "ecdsa" => Self::Ecdsa,
            "ecdsa-x509" => Self::EcdsaX509,
            "rsa" => Self::Rsa,
            "rsa-x509" => Self::RsaX509,
            other => Self::Unknown(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Ed25519 => "ed25519",
            Self::Ecdsa => "ecdsa",
            Self::EcdsaX509 => "ecdsa-x509",
            Self::Rsa => "rsa",
            Self::RsaX509 => "rsa-x509",
            Self::Unknown(other) => other,
        }
    }

    /// Whether the public bytes are a PEM certificate chain.
    pub fn is_x509(&self) -> bool {
        matches!(self, Self::EcdsaX509 | Self::RsaX509)
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A public key as listed in root or delegation metadata.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    keytype: KeyType,
    public: Vec<u8>,
    id: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("keytype", &self.keytype)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    pub fn new(keytype: KeyType, public: Vec<u8>) -> Self {
        let id = key_id(&keytype, &public);
        Self {
            keytype,
            public,
            id,
        }
    }

    pub fn keytype(&self) -> &KeyType {
        &self.keytype
    }

    /// The raw `keyval.public` bytes (DER, raw ed25519 bytes or PEM text).
    pub fn public_bytes(&self) -> &[u8] {
        &self.public
    }

    /// The key ID: SHA-256 over the canonical JSON of the key with
    /// `"private":null`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Notary's `CanonicalKeyID`: for certificate keys, the ID of the plain key
    /// built from the first certificate's public key; otherwise the key ID.
    /// Clients file private keys under this ID.
    pub fn canonical_id(&self) -> Result<String, Error> {
        let plain = match self.keytype {
            KeyType::EcdsaX509 => KeyType::Ecdsa,
            KeyType::RsaX509 => KeyType::Rsa,
            _ => return Ok(self.id.clone()),
        };
        let cert = self.leaf_certificate()?;
        let spki = der::Encode::to_der(cert.tbs_certificate().subject_public_key_info())
            .map_err(|_| self.malformed("certificate public key does not re-encode"))?;
        Ok(key_id(&plain, &spki))
    }

    /// The first certificate of an x509 key (the one Notary uses).
    pub fn leaf_certificate(&self) -> Result<Certificate, Error> {
        if !self.keytype.is_x509() {
            return Err(self.malformed("not a certificate key"));
        }
        let block = pem::first_block(&self.public)
            .ok_or_else(|| self.malformed("no PEM block in certificate key"))?;
        Certificate::from_der(&block.der).map_err(|_| self.malformed("unparsable certificate"))
    }

    /// Every certificate in an x509 key's PEM bundle, leaf first.
    pub fn certificate_chain(&self) -> Result<Vec<Certificate>, Error> {
        if !self.keytype.is_x509() {
            return Err(self.malformed("not a certificate key"));
        }
        let chain: Result<Vec<Certificate>, Error> = pem::blocks(&self.public)
            .into_iter()
            .map(|block| {
                Certificate::from_der(&block.der)
                    .map_err(|_| self.malformed("unparsable certificate"))
            })
            .collect();
        let chain = chain?;
        if chain.is_empty() {
            return Err(self.malformed("no PEM block in certificate key"));
        }
        Ok(chain)
    }

    /// Works out what this key verifies with. Fails for unknown types and
    /// malformed key material.
    pub fn verifying_key(&self) -> Result<VerifyingKey, Error> {
        match &self.keytype {
            KeyType::Ed25519 => {
                let bytes: [u8; 32] = self
                    .public
                    .as_slice()
                    .try_into()
                    .map_err(|_| self.malformed("ed25519 public key must be 32 bytes"))?;
                Ok(VerifyingKey::Ed25519(bytes))
            }
            KeyType::Ecdsa | KeyType::Rsa => self.verifying_key_for_spki(&self.public),
            KeyType::EcdsaX509 | KeyType::RsaX509 => {
                let cert = self.leaf_certificate()?;
                let spki = der::Encode::to_der(cert.tbs_certificate().subject_public_key_info())
                    .map_err(|_| self.malformed("certificate public key does not re-encode"))?;
                self.verifying_key_for_spki(&spki)
            }
            KeyType::Unknown(keytype) => Err(Error::UnknownKeyType {
                keytype: keytype.clone(),
            }),
        }
    }

    /// The legacy PyCrypto method stores an `rsa` key as PEM `PUBLIC KEY`
    /// text rather than DER (`RSAPyCryptoVerifier`).
    pub fn verifying_key_from_pem(&self) -> Result<VerifyingKey, Error> {
        if self.keytype != KeyType::Rsa {
            return Err(self.malformed("PEM public keys are only read for rsa keys"));
        }
        let block =
            pem::first_block(&self.public).ok_or_else(|| self.malformed("no PEM block in key"))?;
        self.verifying_key_for_spki(&block.der)
    }

    fn verifying_key_for_spki(&self, spki_der: &[u8]) -> Result<VerifyingKey, Error> {
        let spki = SubjectPublicKeyInfoRef::from_der(spki_der)
            .map_err(|_| self.malformed("not a DER SubjectPublicKeyInfo"))?;
        let wants_ec = matches!(self.keytype, KeyType::Ecdsa | KeyType::EcdsaX509);
        match (spki.algorithm.oid, wants_ec) {
            (OID_EC_PUBLIC_KEY, true) => {
                let curve = match spki.algorithm.parameters_oid() {
                    Ok(OID_P256) => EcCurve::P256,
                    Ok(OID_P384) => EcCurve::P384,
                    Ok(OID_P521) => EcCurve::P521,
                    _ => {
                        return Err(Error::UnsupportedCurve);
                    }
                };
                Ok(VerifyingKey::Ecdsa {
                    curve,
                    spki_der: spki_der.to_vec(),
                })
            }
            (OID_RSA, false) => {
                let bits = rsa_modulus_bits(spki.subject_public_key.raw_bytes())
                    .ok_or_else(|| self.malformed("unparsable RSA public key"))?;
                if bits < MIN_RSA_BITS {
                    return Err(Error::WeakRsaKey {
                        bits,
                        minimum: MIN_RSA_BITS,
                    });
                }
                Ok(VerifyingKey::Rsa {
                    bits,
                    spki_der: spki_der.to_vec(),
                })
            }
            _ => Err(self.malformed("public key algorithm does not match key type")),
        }
    }

    fn malformed(&self, reason: &'static str) -> Error {
        Error::MalformedKey {
            keytype: self.keytype.to_string(),
            reason,
        }
    }

    /// The key as Notary writes it (`"private":null`).
    pub fn to_json(&self) -> Value {
        json!({
            "keytype": self.keytype.as_str(),
            "keyval": {"private": null, "public": encoding::base64_encode(&self.public)},
        })
    }
}

fn key_id(keytype: &KeyType, public: &[u8]) -> String {
    let json = json!({
        "keytype": keytype.as_str(),
        "keyval": {"private": null, "public": encoding::base64_encode(public)},
    });
    // Strings and null only: canonical encoding cannot fail here.
    let bytes = canonical::to_canonical(&json).unwrap_or_default();
    hex::encode(digest::digest(&digest::SHA256, &bytes))
}

/// Bit length of the modulus of a DER `RSAPublicKey` (PKCS#1).
fn rsa_modulus_bits(pkcs1: &[u8]) -> Option<usize> {
    use der::{Reader, asn1::UintRef};
    let mut reader = der::SliceReader::new(pkcs1).ok()?;
    let modulus = reader
        .sequence(|inner| {
            let n = UintRef::decode(inner)?;
            let _exponent = UintRef::decode(inner)?;
            Ok::<_, der::Error>(n.as_bytes().to_vec())
        })
        .ok()?;
    let first = *modulus.first()?;
    Some(modulus.len() * 8 - first.leading_zeros() as usize)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcCurve {
    P256,
    P384,
    P521,
}

impl EcCurve {
    /// Size of r (and of s) in Notary's fixed-width r‖s signatures.
    pub fn scalar_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }
}

/// Key material ready for signature verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyingKey {
    Ed25519([u8; 32]),
    Ecdsa { curve: EcCurve, spki_der: Vec<u8> },
    Rsa { bits: usize, spki_der: Vec<u8> },
}

#[derive(Serialize, Deserialize)]
struct WireKey {
    keytype: String,
    keyval: WireKeyVal,
}

#[derive(Serialize, Deserialize)]
struct WireKeyVal {
    #[serde(default, with = "encoding::base64_opt")]
    public: Option<Vec<u8>>,
    // Notary always writes null; a non-null value is never read.
    #[serde(default)]
    private: Option<Value>,
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireKey::deserialize(deserializer)?;
        Ok(Self::new(
            KeyType::parse(&wire.keytype),
            wire.keyval.public.unwrap_or_default(),
        ))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireKey {
            keytype: self.keytype.as_str().to_string(),
            keyval: WireKeyVal {
                public: Some(self.public.clone()),
                private: None,
            },
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_sha256_of_canonical_key_json() {
        let key = PublicKey::new(KeyType::Ed25519, vec![7; 32]);
        let expected = format!(
            "{{\"keytype\":\"ed25519\",\"keyval\":{{\"private\":null,\"public\":\"{}\"}}}}",
            encoding::base64_encode(&[7; 32])
        );
        assert_eq!(
            key.id(),
            hex::encode(digest::digest(&digest::SHA256, expected.as_bytes()))
        );
    }

    #[test]
    fn unknown_key_type_is_kept_but_cannot_verify() {
        let key: PublicKey =
            serde_json::from_str(r#"{"keytype":"dsa","keyval":{"public":"AAEC","private":null}}"#)
                .unwrap();
        assert_eq!(key.keytype(), &KeyType::Unknown("dsa".into()));
        assert_eq!(key.id().len(), 64);
        assert!(matches!(
            key.verifying_key(),
            Err(Error::UnknownKeyType { keytype }) if keytype == "dsa"
        ));
    }

    #[test]
    fn malformed_keys_are_reported() {
        let short = PublicKey::new(KeyType::Ed25519, vec![1; 31]);
        assert!(matches!(
            short.verifying_key(),
            Err(Error::MalformedKey { .. })
        ));
        let garbage = PublicKey::new(KeyType::Ecdsa, b"not der".to_vec());
        assert!(matches!(
            garbage.verifying_key(),
            Err(Error::MalformedKey { .. })
        ));
        let no_pem = PublicKey::new(KeyType::EcdsaX509, b"no certificate here".to_vec());
        assert!(matches!(
            no_pem.verifying_key(),
            Err(Error::MalformedKey { .. })
        ));
    }

    #[test]
    fn bad_base64_is_a_parse_error() {
        let parsed: Result<PublicKey, _> =
            serde_json::from_str(r#"{"keytype":"ed25519","keyval":{"public":"@@@"}}"#);
        assert!(parsed.is_err());
    }
}

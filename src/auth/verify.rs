//! Verifying a registry token: a JWS in compact form whose signing key is
//! found from the header (`x5c`, else `jwk`, else `kid`) and trusted through
//! the configured root certificate bundle (PROTOCOL.md §8; docker/distribution
//! `registry/auth/token/token.go: VerifySigningKey`).
//!
//! Only ES256/384/512 (curve must match) and RS256/384/512 are accepted, as
//! libtrust does: `none`, HMAC (which would let a public key act as a shared
//! secret) and everything else are refused before any key is looked at.

use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use serde::Deserialize;
use serde_json::Value;
use spki::SubjectPublicKeyInfoRef;
use time::OffsetDateTime;
use x509_cert::Certificate;
use x509_cert::ext::pkix::BasicConstraints;

use super::Error;
use super::claims::{Claims, Expectations};
use super::libtrust;
use super::scope::Grants;
use crate::tuf::pem;

/// Longest token read: chains of a few certificates fit many times over.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// Most certificates an `x5c` chain may carry.
pub const MAX_CHAIN_CERTIFICATES: usize = 8;

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");

/// Why an `x5c` chain was not trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainProblem {
    /// Entry `index` is not base64 DER of a certificate.
    Undecodable {
        index: usize,
    },
    TooLong,
    /// The leaf is outside its validity period.
    LeafNotValidNow,
    /// No path from the leaf to a certificate of the bundle.
    NoPathToRoot,
}

impl std::fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Undecodable { index } => write!(f, "x5c[{index}] is not a certificate"),
            Self::TooLong => write!(
                f,
                "more than {MAX_CHAIN_CERTIFICATES} certificates in the chain"
            ),
            Self::LeafNotValidNow => f.write_str("the signing certificate is not valid now"),
            Self::NoPathToRoot => {
                f.write_str("the chain does not lead to a certificate of the root bundle")
            }
        }
    }
}

/// The signing algorithms libtrust knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Es256,
    Es384,
    Es512,
    Rs256,
    Rs384,
    Rs512,
}

impl Algorithm {
    fn parse(alg: &str) -> Option<Self> {
        Some(match alg {
            "ES256" => Self::Es256,
            "ES384" => Self::Es384,
            "ES512" => Self::Es512,
            "RS256" => Self::Rs256,
            "RS384" => Self::Rs384,
            "RS512" => Self::Rs512,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Es512 => "ES512",
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    fn scalar_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }

    fn jwk_name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
            Self::P521 => "P-521",
        }
    }

    fn oid(self) -> ObjectIdentifier {
        match self {
            Self::P256 => OID_P256,
            Self::P384 => OID_P384,
            Self::P521 => OID_P521,
        }
    }
}

/// A public key reduced to its numbers, so a key from a certificate and the
/// same key written as a JWK compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// `point` is the uncompressed SEC1 point `04 ‖ x ‖ y`.
    Ec { curve: Curve, point: Vec<u8> },
    /// Big-endian, without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

fn strip_zeros(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes[start..].to_vec()
}

/// DER tag-length-value.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A positive DER INTEGER.
fn der_uint(value: &[u8]) -> Vec<u8> {
    let mut content = strip_zeros(value);
    if content.first().is_none_or(|&b| b & 0x80 != 0) {
        content.insert(0, 0);
    }
    tlv(0x02, &content)
}

/// Reads one DER element with `tag`: (content, rest).
fn read_tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&len_byte, rest) = rest.split_first()?;
    let (len, rest) = if len_byte < 0x80 {
        (usize::from(len_byte), rest)
    } else {
        let count = usize::from(len_byte & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[count..])
    };
    if rest.len() < len {
        return None;
    }
    Some((&rest[..len], &rest[len..]))
}

impl KeyMaterial {
    /// From a DER SubjectPublicKeyInfo (a certificate's key).
    pub fn from_spki(der: &[u8]) -> Result<Self, Error> {
        let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(|_| Error::BadKey {
            reason: "not a DER SubjectPublicKeyInfo",
        })?;
        let key = spki.subject_public_key.raw_bytes();
        match spki.algorithm.oid {
            OID_EC_PUBLIC_KEY => {
                let curve = match spki.algorithm.parameters_oid() {
                    Ok(OID_P256) => Curve::P256,
                    Ok(OID_P384) => Curve::P384,
                    Ok(OID_P521) => Curve::P521,
                    _ => {
                        return Err(Error::BadKey {
                            reason: "EC curve is not P-256, P-384 or P-521",
                        });
                    }
                };
                Self::ec(curve, key.to_vec())
            }
            OID_RSA => {
                let malformed = Error::BadKey {
                    reason: "unparsable RSA public key",
                };
                let (sequence, _) = read_tlv(key, 0x30).ok_or(malformed.clone())?;
                let (n, rest) = read_tlv(sequence, 0x02).ok_or(malformed.clone())?;
                let (e, _) = read_tlv(rest, 0x02).ok_or(malformed)?;
                Ok(Self::Rsa {
                    n: strip_zeros(n),
                    e: strip_zeros(e),
                })
            }
            _ => Err(Error::BadKey {
                reason: "only EC and RSA keys sign tokens",
            }),
        }
    }

    fn ec(curve: Curve, point: Vec<u8>) -> Result<Self, Error> {
        if point.len() != 1 + 2 * curve.scalar_len() || point.first() != Some(&4) {
            return Err(Error::BadKey {
                reason: "EC public key is not an uncompressed point of its curve",
            });
        }
        Ok(Self::Ec { curve, point })
    }

    /// From a JWK (libtrust's `UnmarshalPublicKeyJWK`).
    pub fn from_jwk(jwk: &Value) -> Result<Self, Error> {
        let field = |name: &'static str| -> Result<Vec<u8>, Error> {
            let text = jwk.get(name).and_then(Value::as_str).ok_or(Error::BadKey {
                reason: "JWK lacks a required member",
            })?;
            b64url(text).ok_or(Error::BadKey {
                reason: "JWK member is not base64url",
            })
        };
        match jwk.get("kty").and_then(Value::as_str) {
            Some("EC") => {
                let curve = match jwk.get("crv").and_then(Value::as_str) {
                    Some("P-256") => Curve::P256,
                    Some("P-384") => Curve::P384,
                    Some("P-521") => Curve::P521,
                    _ => {
                        return Err(Error::BadKey {
                            reason: "JWK curve is not P-256, P-384 or P-521",
                        });
                    }
                };
                let (x, y) = (field("x")?, field("y")?);
                if x.len() != curve.scalar_len() || y.len() != curve.scalar_len() {
                    return Err(Error::BadKey {
                        reason: "JWK coordinates do not have the curve's size",
                    });
                }
                let mut point = vec![4];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                Self::ec(curve, point)
            }
            Some("RSA") => Ok(Self::Rsa {
                n: strip_zeros(&field("n")?),
                e: strip_zeros(&field("e")?),
            }),
            _ => Err(Error::BadKey {
                reason: "JWK kty is not EC or RSA",
            }),
        }
    }

    /// The DER SubjectPublicKeyInfo Go's `x509.MarshalPKIXPublicKey` writes.
    pub fn spki_der(&self) -> Vec<u8> {
        match self {
            Self::Ec { curve, point } => {
                let ec_oid = OID_EC_PUBLIC_KEY.to_der().unwrap_or_default();
                let curve_oid = curve.oid().to_der().unwrap_or_default();
                let algorithm = tlv(0x30, &[ec_oid, curve_oid].concat());
                let mut bits = vec![0];
                bits.extend_from_slice(point);
                tlv(0x30, &[algorithm, tlv(0x03, &bits)].concat())
            }
            Self::Rsa { n, e } => {
                let rsa_oid = OID_RSA.to_der().unwrap_or_default();
                let algorithm = tlv(0x30, &[rsa_oid, vec![0x05, 0x00]].concat());
                let key = tlv(0x30, &[der_uint(n), der_uint(e)].concat());
                let mut bits = vec![0];
                bits.extend_from_slice(&key);
                tlv(0x30, &[algorithm, tlv(0x03, &bits)].concat())
            }
        }
    }

    /// libtrust key ID (notary 0.7's `kid`).
    pub fn libtrust_id(&self) -> String {
        libtrust::key_id(&self.spki_der())
    }

    /// RFC 7638 thumbprint (distribution 3's `kid`).
    pub fn thumbprint(&self) -> String {
        match self {
            Self::Ec { curve, point } => {
                let half = curve.scalar_len();
                libtrust::ec_thumbprint(curve.jwk_name(), &point[1..=half], &point[1 + half..])
            }
            Self::Rsa { n, e } => libtrust::rsa_thumbprint(n, e),
        }
    }

    /// Checks a JWS signature; the key must suit the algorithm.
    fn verify(&self, alg: Algorithm, message: &[u8], sig: &[u8]) -> Result<(), Error> {
        let mismatch = Error::KeyDoesNotSuitAlgorithm { alg: alg.as_str() };
        let ok = match (self, alg) {
            (Self::Ec { curve, point }, Algorithm::Es256 | Algorithm::Es384 | Algorithm::Es512) => {
                let algorithm = match (curve, alg) {
                    (Curve::P256, Algorithm::Es256) => &signature::ECDSA_P256_SHA256_FIXED,
                    (Curve::P384, Algorithm::Es384) => &signature::ECDSA_P384_SHA384_FIXED,
                    (Curve::P521, Algorithm::Es512) => &signature::ECDSA_P521_SHA512_FIXED,
                    _ => return Err(mismatch),
                };
                // JWS ECDSA signatures are r ‖ s at the curve's width.
                if sig.len() != 2 * curve.scalar_len() {
                    return Err(Error::BadSignature);
                }
                UnparsedPublicKey::new(algorithm, point)
                    .verify(message, sig)
                    .is_ok()
            }
            (Self::Rsa { n, e }, Algorithm::Rs256 | Algorithm::Rs384 | Algorithm::Rs512) => {
                let params = match alg {
                    Algorithm::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    _ => &signature::RSA_PKCS1_2048_8192_SHA512,
                };
                RsaPublicKeyComponents {
                    n: n.as_slice(),
                    e: e.as_slice(),
                }
                .verify(params, message, sig)
                .is_ok()
            }
            _ => return Err(mismatch),
        };
        if ok { Ok(()) } else { Err(Error::BadSignature) }
    }
}

fn b64url(text: &str) -> Option<Vec<u8>> {
    // Go's joseBase64UrlDecode pads first, so padded input works too.
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

fn unix(t: &x509_cert::time::Time) -> i64 {
    i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

fn valid_at(cert: &Certificate, now: OffsetDateTime) -> bool {
    let validity = cert.tbs_certificate().validity();
    let now = now.unix_timestamp();
    unix(&validity.not_before) <= now && now <= unix(&validity.not_after)
}

/// Whether `cert` may issue certificates (Go's `checkSignatureFrom`: a v3
/// parent must be a CA).
fn can_sign(cert: &Certificate) -> bool {
    if cert.tbs_certificate().version() == x509_cert::Version::V1 {
        return true;
    }
    matches!(
        cert.tbs_certificate().get_extension::<BasicConstraints>(),
        Ok(Some((_, constraints))) if constraints.ca
    )
}

/// Whether `child`'s signature verifies with `parent`'s key.
fn signed_by(child: &Certificate, parent: &Certificate) -> bool {
    let Ok(tbs) = child.tbs_certificate().to_der() else {
        return false;
    };
    let Ok(spki) = parent.tbs_certificate().subject_public_key_info().to_der() else {
        return false;
    };
    let Some(sig) = child.signature().as_bytes() else {
        return false;
    };
    let curve = match KeyMaterial::from_spki(&spki) {
        Ok(KeyMaterial::Ec { curve, .. }) => Some(curve),
        Ok(KeyMaterial::Rsa { .. }) => None,
        Err(_) => return false,
    };
    let algorithm: &'static dyn signature::VerificationAlgorithm =
        match (child.signature_algorithm().oid, curve) {
            (ECDSA_SHA256, Some(Curve::P256)) => &signature::ECDSA_P256_SHA256_ASN1,
            (ECDSA_SHA384, Some(Curve::P256)) => &signature::ECDSA_P256_SHA384_ASN1,
            (ECDSA_SHA512, Some(Curve::P256)) => &signature::ECDSA_P256_SHA512_ASN1,
            (ECDSA_SHA256, Some(Curve::P384)) => &signature::ECDSA_P384_SHA256_ASN1,
            (ECDSA_SHA384, Some(Curve::P384)) => &signature::ECDSA_P384_SHA384_ASN1,
            (ECDSA_SHA512, Some(Curve::P384)) => &signature::ECDSA_P384_SHA512_ASN1,
            (ECDSA_SHA256, Some(Curve::P521)) => &signature::ECDSA_P521_SHA256_ASN1,
            (ECDSA_SHA384, Some(Curve::P521)) => &signature::ECDSA_P521_SHA384_ASN1,
            (ECDSA_SHA512, Some(Curve::P521)) => &signature::ECDSA_P521_SHA512_ASN1,
            (RSA_SHA256, None) => &signature::RSA_PKCS1_2048_8192_SHA256,
            (RSA_SHA384, None) => &signature::RSA_PKCS1_2048_8192_SHA384,
            (RSA_SHA512, None) => &signature::RSA_PKCS1_2048_8192_SHA512,
            _ => return false,
        };
    UnparsedPublicKey::new(algorithm, &spki)
        .verify(&tbs, sig)
        .is_ok()
}

/// A key of the bundle, with the IDs a `kid` may use for it.
#[derive(Debug, Clone)]
struct TrustedKey {
    material: KeyMaterial,
    libtrust_id: String,
    thumbprint: String,
}

/// `auth.options.rootcertbundle`: the certificates token chains must lead
/// to, and whose keys may sign tokens directly.
#[derive(Clone)]
pub struct TrustBundle {
    roots: Vec<(Vec<u8>, Certificate)>,
    keys: Vec<TrustedKey>,
}

impl std::fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustBundle")
            .field("certificates", &self.roots.len())
            .finish()
    }
}

impl TrustBundle {
    /// Every `CERTIFICATE` block of a PEM bundle; at least one, each with an
    /// EC or RSA key (distribution refuses to start otherwise).
    pub fn from_pem(bundle: &[u8]) -> Result<Self, Error> {
        let mut roots = Vec::new();
        let mut keys = Vec::new();
        let blocks = pem::blocks(bundle)
            .into_iter()
            .filter(|block| block.label == "CERTIFICATE");
        for (index, block) in blocks.enumerate() {
            let cert = Certificate::from_der(&block.der)
                .map_err(|_| Error::BundleCertificate { index })?;
            let spki = cert
                .tbs_certificate()
                .subject_public_key_info()
                .to_der()
                .map_err(|_| Error::BundleCertificate { index })?;
            let material = KeyMaterial::from_spki(&spki).map_err(|_| Error::BundleKey { index })?;
            keys.push(TrustedKey {
                libtrust_id: material.libtrust_id(),
                thumbprint: material.thumbprint(),
                material,
            });
            roots.push((block.der, cert));
        }
        if roots.is_empty() {
            return Err(Error::EmptyBundle);
        }
        Ok(Self { roots, keys })
    }

    pub fn len(&self) -> usize {
        self.roots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// The key of `x5c`'s leaf, if the chain leads to the bundle at `now`
    /// (Go's `x509.Verify` with any EKU; a leaf that is itself in the bundle
    /// is trusted as is).
    fn verify_chain(&self, x5c: &[String], now: OffsetDateTime) -> Result<KeyMaterial, Error> {
        if x5c.len() > MAX_CHAIN_CERTIFICATES {
            return Err(Error::UntrustedChain {
                problem: ChainProblem::TooLong,
            });
        }
        let mut certs = Vec::with_capacity(x5c.len());
        for (index, entry) in x5c.iter().enumerate() {
            let undecodable = Error::UntrustedChain {
                problem: ChainProblem::Undecodable { index },
            };
            let der = STANDARD.decode(entry).map_err(|_| undecodable.clone())?;
            let cert = Certificate::from_der(&der).map_err(|_| undecodable)?;
            certs.push((der, cert));
        }
        let Some((leaf_der, leaf)) = certs.first() else {
            return Err(Error::NoSigningKey);
        };
        if !valid_at(leaf, now) {
            return Err(Error::UntrustedChain {
                problem: ChainProblem::LeafNotValidNow,
            });
        }
        let intermediates = &certs[1..];
        if !self.leads_to_root(leaf_der, leaf, intermediates, now) {
            return Err(Error::UntrustedChain {
                problem: ChainProblem::NoPathToRoot,
            });
        }
        let spki = leaf
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .map_err(|_| Error::BadKey {
                reason: "certificate key does not re-encode",
            })?;
        KeyMaterial::from_spki(&spki)
    }

    /// Searches the certificates of `x5c` for a path from `cert` to the
    /// bundle. Each intermediate is visited at most once, so a chain crafted
    /// with many cross-signing intermediates costs at most
    /// (intermediates + 1) × (intermediates + bundle) signature checks.
    fn leads_to_root(
        &self,
        der: &[u8],
        cert: &Certificate,
        intermediates: &[(Vec<u8>, Certificate)],
        now: OffsetDateTime,
    ) -> bool {
        let mut visited = vec![false; intermediates.len()];
        let mut pending = vec![(der, cert)];
        while let Some((der, cert)) = pending.pop() {
            if self.roots.iter().any(|(root, _)| root.as_slice() == der) {
                return true;
            }
            let issuer = cert.tbs_certificate().issuer();
            let issued_by = |parent: &Certificate| {
                parent.tbs_certificate().subject() == issuer
                    && valid_at(parent, now)
                    && can_sign(parent)
                    && signed_by(cert, parent)
            };
            if self.roots.iter().any(|(_, root)| issued_by(root)) {
                return true;
            }
            for (index, (parent_der, parent)) in intermediates.iter().enumerate() {
                if !visited[index] && parent_der.as_slice() != der && issued_by(parent) {
                    visited[index] = true;
                    pending.push((parent_der, parent));
                }
            }
        }
        false
    }

    fn trusted(&self, material: &KeyMaterial) -> bool {
        self.keys.iter().any(|key| key.material == *material)
    }

    fn by_kid(&self, kid: &str) -> Option<&KeyMaterial> {
        self.keys
            .iter()
            .find(|key| key.libtrust_id == kid || key.thumbprint == kid)
            .map(|key| &key.material)
    }
}

#[derive(Debug, Deserialize)]
struct Header {
    #[serde(default)]
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    x5c: Option<Vec<String>>,
    #[serde(default)]
    jwk: Option<Value>,
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// `sub`: who the token server authenticated.
    pub subject: String,
    pub grants: Grants,
    /// `exp`, in Unix seconds.
    pub expires: i64,
}

/// Verifies tokens for one service.
#[derive(Debug, Clone)]
pub struct Verifier {
    pub bundle: TrustBundle,
    pub expected: Expectations,
}

impl Verifier {
    pub fn new(bundle: TrustBundle, expected: Expectations) -> Self {
        Self { bundle, expected }
    }

    /// Checks `token` (the part after `Bearer `) at `now`.
    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Result<VerifiedToken, Error> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Error::Malformed { part: "token" });
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(claims_b64), Some(sig_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::Malformed { part: "token" });
        };
        let header: Header = b64url(header_b64)
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(Error::Malformed { part: "header" })?;
        let claims: Claims = b64url(claims_b64)
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(Error::Malformed { part: "claims" })?;
        let signature = b64url(sig_b64).ok_or(Error::Malformed { part: "signature" })?;
        let alg = Algorithm::parse(&header.alg).ok_or_else(|| Error::UnsupportedAlgorithm {
            alg: header.alg.chars().take(32).collect(),
        })?;
        claims.check(&self.expected, now)?;
        if signature.is_empty() {
            return Err(Error::EmptySignature);
        }
        let key = self.signing_key(&header, now)?;
        let signed = &token.as_bytes()[..header_b64.len() + 1 + claims_b64.len()];
        key.verify(alg, signed, &signature)?;
        Ok(VerifiedToken {
            subject: claims.sub.clone(),
            grants: claims.grants(),
            expires: claims.exp,
        })
    }

    /// distribution's `VerifySigningKey`: `x5c`, else `jwk`, else `kid`.
    fn signing_key(&self, header: &Header, now: OffsetDateTime) -> Result<KeyMaterial, Error> {
        if let Some(x5c) = header.x5c.as_deref().filter(|chain| !chain.is_empty()) {
            return self.bundle.verify_chain(x5c, now);
        }
        if let Some(jwk) = &header.jwk {
            let material = KeyMaterial::from_jwk(jwk)?;
            // libtrust: a `kid` inside the JWK must name this key.
            if let Some(kid) = jwk.get("kid") {
                let named = kid.as_str().is_some_and(|kid| {
                    kid == material.libtrust_id() || kid == material.thumbprint()
                });
                if !named {
                    return Err(Error::JwkMismatch);
                }
            }
            return match jwk.get("x5c") {
                Some(chain) => {
                    let chain: Vec<String> = chain
                        .as_array()
                        .map(|items| {
                            items
                                .iter()
                                .filter_map(|item| item.as_str().map(str::to_string))
                                .collect::<Vec<_>>()
                        })
                        .filter(|items| {
                            Some(items.len()) == chain.as_array().map(Vec::len) && !items.is_empty()
                        })
                        .ok_or(Error::BadKey {
                            reason: "JWK x5c is not a list of certificates",
                        })?;
                    let leaf = self.bundle.verify_chain(&chain, now)?;
                    if leaf == material {
                        Ok(material)
                    } else {
                        Err(Error::JwkMismatch)
                    }
                }
                None if self.bundle.trusted(&material) => Ok(material),
                None => Err(Error::UntrustedKey),
            };
        }
        if let Some(kid) = header.kid.as_deref().filter(|kid| !kid.is_empty()) {
            return self.bundle.by_kid(kid).cloned().ok_or(Error::UntrustedKey);
        }
        Err(Error::NoSigningKey)
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;

//! Optional trust anchor for delegation keys (the UCP client-bundle flow):
//! when configured, a delegation key must be a certificate issued directly
//! by one of the configured certificate authorities and valid now.

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use der::Encode;
use der::asn1::ObjectIdentifier;
use time::OffsetDateTime;
use x509_cert::Certificate;

use super::{DelegationKeyProblem, Violation};
use crate::tuf::certs::{common_name, validity};
use crate::tuf::keys::{EcCurve, KeyType, PublicKey, VerifyingKey};
use crate::tuf::pem;

const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");

/// The certificate authorities delegation certificates must come from.
#[derive(Clone)]
pub struct TrustAnchors {
    authorities: Vec<Certificate>,
}

impl std::fmt::Debug for TrustAnchors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustAnchors")
            .field("authorities", &self.authorities.len())
            .finish()
    }
}

impl TrustAnchors {
    /// Reads every `CERTIFICATE` block of a PEM bundle.
    pub fn from_pem(bundle: &[u8]) -> Result<Self, String> {
        let authorities: Vec<Certificate> = pem::blocks(bundle)
            .into_iter()
            .filter(|block| block.label == "CERTIFICATE")
            .map(|block| {
                der::Decode::from_der(&block.der)
                    .map_err(|e| format!("unparsable certificate: {e}"))
            })
            .collect::<Result<_, _>>()?;
        if authorities.is_empty() {
            return Err("no CERTIFICATE in the bundle".into());
        }
        Ok(Self { authorities })
    }

    /// Checks that `key`, delegated as `role`, is a certificate issued by
    /// one of the authorities and valid at `now`.
    pub fn check(&self, role: &str, key: &PublicKey, now: OffsetDateTime) -> Result<(), Violation> {
        let refuse = |problem: DelegationKeyProblem| Violation::UntrustedDelegation {
            role: role.to_string(),
            key_id: key.id().to_string(),
            problem,
        };
        if !key.keytype().is_x509() {
            return Err(refuse(DelegationKeyProblem::PlainKey {
                keytype: key.keytype().to_string(),
            }));
        }
        let leaf = key
            .leaf_certificate()
            .map_err(|e| refuse(DelegationKeyProblem::Unreadable(Box::new(e))))?;
        let subject = leaf.tbs_certificate().subject().to_string();
        let (not_before, not_after) = validity(&leaf);
        if now < not_before || now > not_after {
            return Err(refuse(DelegationKeyProblem::OutsideValidity {
                subject,
                not_before,
                not_after,
            }));
        }
        let issuer = leaf.tbs_certificate().issuer();
        let candidates: Vec<&Certificate> = self
            .authorities
            .iter()
            .filter(|ca| ca.tbs_certificate().subject() == issuer)
            .collect();
        if candidates.is_empty() {
            return Err(refuse(DelegationKeyProblem::UnknownIssuer {
                subject,
                issuer: issuer.to_string(),
            }));
        }
        if candidates.iter().any(|ca| signed_by(&leaf, ca)) {
            Ok(())
        } else {
            Err(refuse(DelegationKeyProblem::IssuerSignature {
                subject,
                authority: candidates
                    .first()
                    .and_then(|ca| common_name(ca))
                    .unwrap_or_else(|| issuer.to_string()),
            }))
        }
    }
}

/// Whether `leaf`'s signature verifies with `ca`'s public key.
fn signed_by(leaf: &Certificate, ca: &Certificate) -> bool {
    let Ok(tbs) = leaf.tbs_certificate().to_der() else {
        return false;
    };
    let Ok(spki) = ca.tbs_certificate().subject_public_key_info().to_der() else {
        return false;
    };
    let Some(signature) = leaf.signature().as_bytes() else {
        return false;
    };
    let oid = leaf.signature_algorithm().oid;
    let ec_curve = || match PublicKey::new(KeyType::Ecdsa, spki.clone()).verifying_key() {
        Ok(VerifyingKey::Ecdsa { curve, .. }) => Some(curve),
        _ => None,
    };
    let algorithm: &'static dyn VerificationAlgorithm = match (oid, ec_curve()) {
        (ECDSA_SHA256, Some(EcCurve::P256)) => &signature::ECDSA_P256_SHA256_ASN1,
        (ECDSA_SHA256, Some(EcCurve::P384)) => &signature::ECDSA_P384_SHA256_ASN1,
        (ECDSA_SHA384, Some(EcCurve::P256)) => &signature::ECDSA_P256_SHA384_ASN1,
        (ECDSA_SHA384, Some(EcCurve::P384)) => &signature::ECDSA_P384_SHA384_ASN1,
        (RSA_SHA256, None) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (RSA_SHA384, None) => &signature::RSA_PKCS1_2048_8192_SHA384,
        (RSA_SHA512, None) => &signature::RSA_PKCS1_2048_8192_SHA512,
        _ => return false,
    };
    UnparsedPublicKey::new(algorithm, &spki)
        .verify(&tbs, signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

    fn authority_params(name: &str) -> CertificateParams {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
    }

    fn authority(name: &str) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().unwrap();
        (authority_params(name).self_signed(&key).unwrap(), key)
    }

    fn user(name: &str, ca: &rcgen::Certificate, ca_key: &KeyPair) -> PublicKey {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let ca_name = ca_key_name(ca);
        let issuer = rcgen::Issuer::new(authority_params(&ca_name), ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        PublicKey::new(KeyType::EcdsaX509, cert.pem().into_bytes())
    }

    fn ca_key_name(ca: &rcgen::Certificate) -> String {
        let parsed: Certificate = der::Decode::from_der(ca.der()).unwrap();
        common_name(&parsed).unwrap()
    }

    #[test]
    fn certificates_from_the_authority_pass_and_others_are_named() {
        let (ca, ca_key) = authority("UCP Client Root CA");
        let (other, other_key) = authority("Someone Else");
        let anchors = TrustAnchors::from_pem(ca.pem().as_bytes()).unwrap();
        let now = OffsetDateTime::now_utc();
        anchors
            .check("targets/alice", &user("alice", &ca, &ca_key), now)
            .unwrap();

        let stranger = anchors.check("targets/mallory", &user("mallory", &other, &other_key), now);
        match stranger {
            Err(Violation::UntrustedDelegation {
                role,
                problem: DelegationKeyProblem::UnknownIssuer { subject, issuer },
                ..
            }) => {
                assert_eq!(role, "targets/mallory");
                assert!(subject.contains("CN=mallory"), "{subject}");
                assert!(issuer.contains("CN=Someone Else"), "{issuer}");
            }
            other => panic!("{other:?}"),
        }

        let plain = PublicKey::new(KeyType::Ecdsa, vec![1, 2, 3]);
        assert!(matches!(
            anchors.check("targets/bob", &plain, now),
            Err(Violation::UntrustedDelegation {
                problem: DelegationKeyProblem::PlainKey { .. },
                ..
            })
        ));
        assert!(TrustAnchors::from_pem(b"nothing").is_err());
    }

    #[test]
    fn a_forged_issuer_name_does_not_pass() {
        let (ca, _) = authority("UCP Client Root CA");
        // Same name, different key: the signature check must fail.
        let (impostor, impostor_key) = authority("UCP Client Root CA");
        let anchors = TrustAnchors::from_pem(ca.pem().as_bytes()).unwrap();
        let forged = user("eve", &impostor, &impostor_key);
        let refused = anchors.check("targets/eve", &forged, OffsetDateTime::now_utc());
        assert!(
            matches!(
                refused,
                Err(Violation::UntrustedDelegation {
                    problem: DelegationKeyProblem::IssuerSignature { .. },
                    ..
                })
            ),
            "{refused:?}"
        );
    }
}

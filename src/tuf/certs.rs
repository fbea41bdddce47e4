//! Root certificate rules (PROTOCOL.md §3.2, `trustpinning/certs.go`,
//! `tuf/utils/x509.go: ValidateCertificate`): a root key counts only as an
//! x509 certificate whose Common Name is the repository's GUN.

use std::collections::BTreeMap;

use der::asn1::ObjectIdentifier;
use time::{Duration, OffsetDateTime};
use x509_cert::Certificate;
use x509_cert::ext::pkix::BasicConstraints;

use super::keys::{PublicKey, VerifyingKey};
use super::roles::Root;
use super::{Error, MIN_RSA_BITS_FOR_CERTS};

const SHA1_SIGNATURES: [ObjectIdentifier; 3] = [
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5"),
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.1"),
    ObjectIdentifier::new_unwrap("1.2.840.10040.4.3"),
];

/// Why a root key does not count as a trusted root certificate.
#[derive(Debug)]
pub struct RejectedRootKey {
    pub keyid: String,
    pub reason: CertificateProblem,
}

/// What is wrong with a root key as a root certificate, as facts (the
/// server words them for users). `cn` is the certificate's common name.
#[derive(Debug)]
#[non_exhaustive]
pub enum CertificateProblem {
    /// A plain key where root needs an x509 certificate.
    NotCertificate {
        keytype: String,
    },
    /// The key's PEM bundle does not parse.
    Unreadable(Box<Error>),
    /// The bundle does not hold exactly one leaf, first.
    LeafCount,
    CommonNameMismatch {
        cn: String,
        gun: String,
    },
    ValidityWindow {
        cn: String,
    },
    Sha1Signature {
        cn: String,
    },
    WeakRsa {
        cn: String,
        bits: usize,
        minimum: usize,
    },
    NotYetValid {
        cn: String,
        not_before: OffsetDateTime,
    },
    Expired {
        cn: String,
        not_after: OffsetDateTime,
    },
}

/// Root keys that are valid leaf certificates for `gun`, keyed by key ID,
/// plus why every other root key was left out.
pub struct RootCertificates {
    pub trusted: BTreeMap<String, PublicKey>,
    pub rejected: Vec<RejectedRootKey>,
}

/// Whether a certificate CN names `gun`: equal, or a `prefix*` wildcard.
pub fn cn_matches_gun(common_name: &str, gun: &str) -> bool {
    match common_name.strip_suffix('*') {
        Some(prefix) => gun.starts_with(prefix),
        None => common_name == gun,
    }
}

/// The Subject Common Name of a certificate, if any.
pub fn common_name(cert: &Certificate) -> Option<String> {
    cert.tbs_certificate()
        .subject()
        .common_name()
        .ok()
        .flatten()
        .map(|cn| cn.value().into_owned())
}

/// Validity bounds of a certificate.
pub fn validity(cert: &Certificate) -> (OffsetDateTime, OffsetDateTime) {
    let to_time = |t: &x509_cert::time::Time| {
        let seconds = i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX);
        OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    };
    let validity = cert.tbs_certificate().validity();
    (to_time(&validity.not_before), to_time(&validity.not_after))
}

fn is_ca(cert: &Certificate) -> bool {
    matches!(
        cert.tbs_certificate().get_extension::<BasicConstraints>(),
        Ok(Some((_, constraints))) if constraints.ca
    )
}

/// `ValidateCertificate`: sane validity window, no SHA-1, RSA ≥ 2048 bits,
/// and (when `now` is given) not expired, allowing NotBefore up to a day in
/// the future.
pub fn check_certificate(
    key: &PublicKey,
    cert: &Certificate,
    now: Option<OffsetDateTime>,
) -> Result<(), CertificateProblem> {
    let cn = common_name(cert).unwrap_or_default();
    let (not_before, not_after) = validity(cert);
    if not_before > not_after {
        return Err(CertificateProblem::ValidityWindow { cn });
    }
    if SHA1_SIGNATURES.contains(&cert.signature_algorithm().oid) {
        return Err(CertificateProblem::Sha1Signature { cn });
    }
    if let Ok(VerifyingKey::Rsa { bits, .. }) = key.verifying_key() {
        if bits < MIN_RSA_BITS_FOR_CERTS {
            return Err(CertificateProblem::WeakRsa {
                cn,
                bits,
                minimum: MIN_RSA_BITS_FOR_CERTS,
            });
        }
    }
    if let Some(now) = now {
        if now + Duration::days(1) < not_before {
            return Err(CertificateProblem::NotYetValid { cn, not_before });
        }
        if now > not_after {
            return Err(CertificateProblem::Expired { cn, not_after });
        }
    }
    Ok(())
}

/// The root role's keys that are usable root certificates for `gun`
/// (`parseAllCerts` + `validRootLeafCerts`). Expiry is checked when `now` is
/// given: for a new root, not for the trusted previous one.
pub fn root_certificates(root: &Root, gun: &str, now: Option<OffsetDateTime>) -> RootCertificates {
    let mut trusted = BTreeMap::new();
    let mut rejected = Vec::new();
    let listed = root
        .roles
        .get("root")
        .map(|role| role.keyids.clone())
        .unwrap_or_default();
    for keyid in listed {
        let Some(key) = root.keys.get(&keyid) else {
            continue;
        };
        match root_leaf(key, gun, now) {
            Ok(()) => {
                trusted.insert(keyid, key.clone());
            }
            Err(reason) => rejected.push(RejectedRootKey { keyid, reason }),
        }
    }
    RootCertificates { trusted, rejected }
}

fn root_leaf(
    key: &PublicKey,
    gun: &str,
    now: Option<OffsetDateTime>,
) -> Result<(), CertificateProblem> {
    if !key.keytype().is_x509() {
        return Err(CertificateProblem::NotCertificate {
            keytype: key.keytype().to_string(),
        });
    }
    let chain = key
        .certificate_chain()
        .map_err(|e| CertificateProblem::Unreadable(Box::new(e)))?;
    let leaves = chain.iter().filter(|cert| !is_ca(cert)).count();
    let leaf = chain
        .first()
        .filter(|first| leaves == 1 && !is_ca(first))
        .ok_or(CertificateProblem::LeafCount)?;
    let cn = common_name(leaf).unwrap_or_default();
    if !cn_matches_gun(&cn, gun) {
        return Err(CertificateProblem::CommonNameMismatch {
            cn,
            gun: gun.to_string(),
        });
    }
    check_certificate(key, leaf, now)
}

/// The first 7 characters of a key ID, as the clients print them.
pub fn short_id(keyid: &str) -> &str {
    keyid.get(..7).unwrap_or(keyid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuf::SignedFile;
    use time::macros::datetime;

    fn root(path: &str) -> Root {
        let bytes =
            std::fs::read(format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        SignedFile::parse(&bytes).unwrap().body("root").unwrap()
    }

    #[test]
    fn fixture_roots_have_one_trusted_certificate_for_their_gun() {
        let now = Some(datetime!(2026-11-23 12:00 UTC));
        for (path, gun) in [
            (
                "notary-0.7/notary-cli/root.json",
                "notary.test/fixtures/app",
            ),
            (
                "notary-0.7/docker-cli/root.json",
                "notary.test/fixtures/docker",
            ),
        ] {
            let found = root_certificates(&root(path), gun, now);
            assert_eq!(found.trusted.len(), 1, "{path}: {:?}", found.rejected);
            let other = root_certificates(&root(path), "example.com/other", now);
            assert!(other.trusted.is_empty());
            assert!(matches!(
                other.rejected.as_slice(),
                [RejectedRootKey {
                    reason: CertificateProblem::CommonNameMismatch { .. },
                    ..
                }]
            ));
        }
    }

    #[test]
    fn expired_certificates_only_count_without_a_clock() {
        let docker = root("notary-0.7/docker-cli/root.json");
        let gun = "notary.test/fixtures/docker";
        let far_future = Some(datetime!(2040-01-01 00:00 UTC));
        let found = root_certificates(&docker, gun, far_future);
        assert!(found.trusted.is_empty());
        assert!(matches!(
            found.rejected.as_slice(),
            [RejectedRootKey {
                reason: CertificateProblem::Expired { .. },
                ..
            }]
        ));
        assert_eq!(root_certificates(&docker, gun, None).trusted.len(), 1);
    }

    #[test]
    fn wildcards_match_prefixes() {
        assert!(cn_matches_gun(
            "docker.io/library/*",
            "docker.io/library/alpine"
        ));
        assert!(!cn_matches_gun(
            "docker.io/library/*",
            "docker.io/other/alpine"
        ));
        assert!(cn_matches_gun("a/b", "a/b"));
        assert!(!cn_matches_gun("a/b", "a/bc"));
    }
}

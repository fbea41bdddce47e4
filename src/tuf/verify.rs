//! Verification of signed metadata against a role's keys (PROTOCOL.md §4.5,
//! `tuf/signed/verify.go`, `tuf/data/types.go: CheckHashes`). One threshold
//! routine serves root, base roles and delegations alike.

use std::collections::{BTreeMap, BTreeSet};

use time::OffsetDateTime;

use super::envelope::SignedFile;
use super::error::RejectedSignature;
use super::roles::{FileMeta, RoleName, TrustedRole};
use super::sig::verify_signature;
use super::{Error, encoding};

/// Signatures tried per key before the key's remaining ones are skipped.
pub const MAX_FAILURES_PER_KEY: usize = 4;

/// Checks that at least `threshold` distinct keys of `role` signed `file`.
///
/// Signatures by keys the role does not list are ignored; a key that signs
/// twice counts once. A listed key whose content does not hash to the ID it
/// is listed under fails the whole check, as in Notary.
pub fn verify_signatures(file: &SignedFile, role: &TrustedRole) -> Result<(), Error> {
    if file.signatures().is_empty() {
        return Err(Error::NoSignatures {
            role: role.name.to_string(),
        });
    }
    if role.threshold < 1 {
        return Err(Error::InvalidThreshold {
            role: role.name.to_string(),
            threshold: role.threshold,
        });
    }
    let message = file.canonical_signed()?;
    let mut valid: BTreeSet<&str> = BTreeSet::new();
    let mut failures: BTreeMap<&str, usize> = BTreeMap::new();
    let mut rejected = Vec::new();
    for signature in file.signatures() {
        let Some(key) = role.keys.get(&signature.keyid) else {
            continue;
        };
        // A key counts once: do not spend another verification on it, nor
        // more than a few on signatures that keep failing (a file full of
        // bad signatures must not buy unbounded CPU).
        let failed = failures.get(signature.keyid.as_str()).copied().unwrap_or(0);
        if valid.contains(signature.keyid.as_str()) || failed >= MAX_FAILURES_PER_KEY {
            continue;
        }
        if key.id() != signature.keyid {
            return Err(Error::KeyIdMismatch {
                listed: signature.keyid.clone(),
                computed: key.id().to_string(),
            });
        }
        match verify_signature(key, &signature.method, &message, &signature.sig) {
            Ok(()) => {
                valid.insert(signature.keyid.as_str());
            }
            Err(reason) => {
                *failures.entry(signature.keyid.as_str()).or_default() += 1;
                rejected.push(RejectedSignature {
                    keyid: signature.keyid.clone(),
                    reason,
                });
            }
        }
    }
    let needed = usize::try_from(role.threshold).unwrap_or(usize::MAX);
    if valid.len() < needed {
        return Err(Error::ThresholdNotMet {
            role: role.name.to_string(),
            threshold: role.threshold,
            valid: valid.len(),
            rejected,
        });
    }
    Ok(())
}

/// Fails if `expires` is before `now`.
pub fn check_expiry(
    role: &RoleName,
    expires: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<(), Error> {
    if expires < now {
        return Err(Error::Expired {
            role: role.to_string(),
            expired: encoding::format_expiry_for_humans(expires),
        });
    }
    Ok(())
}

/// Fails if `version` is below `minimum`.
pub fn check_version(role: &RoleName, version: i64, minimum: i64) -> Result<(), Error> {
    if version < minimum {
        return Err(Error::LowVersion {
            role: role.to_string(),
            actual: version,
            minimum,
        });
    }
    Ok(())
}

/// Checks `bytes` against the sha256/sha512 hashes in `meta` (at least one
/// must be present). Comparison is constant-time.
pub fn check_hashes(role: &str, bytes: &[u8], meta: &FileMeta) -> Result<(), Error> {
    let mut checked = 0;
    for (algorithm, expected) in meta.hashes.iter() {
        let actual: Vec<u8> = match algorithm {
            "sha256" => super::sha256(bytes).to_vec(),
            "sha512" => super::sha512(bytes).to_vec(),
            _ => continue,
        };
        if aws_lc_rs::constant_time::verify_slices_are_equal(&actual, expected).is_err() {
            return Err(Error::ChecksumMismatch {
                role: role.to_string(),
                algorithm: if algorithm == "sha256" {
                    "sha256"
                } else {
                    "sha512"
                },
                expected: hex::encode(expected),
            });
        }
        checked += 1;
    }
    if checked == 0 {
        return Err(Error::NoChecksums {
            role: role.to_string(),
        });
    }
    Ok(())
}

/// Checks `bytes` against both the length and the hashes in `meta`.
pub fn check_file_meta(role: &str, bytes: &[u8], meta: &FileMeta) -> Result<(), Error> {
    if i64::try_from(bytes.len()).ok() != Some(meta.length) {
        return Err(Error::LengthMismatch {
            role: role.to_string(),
            expected: meta.length,
            actual: bytes.len(),
        });
    }
    check_hashes(role, bytes, meta)
}

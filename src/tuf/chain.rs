//! The trust rules shared by the server's upload validation and the
//! `verify` client: who may sign a root (its own certificates, and for a
//! rotation the previous root's), and the authority a delegation inherits
//! from its parent (keys, threshold, paths restricted down the chain).

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::certs::{RootCertificates, root_certificates};
use super::keys::PublicKey;
use super::roles::{RoleName, Root, Targets, TrustedRole, restrict_paths};
use super::verify::verify_signatures;
use super::{Error, SignedFile};

/// The root role of `root` with `keys` (already screened) as its keys, and
/// the root's own threshold for it.
pub fn root_role(root: &Root, keys: BTreeMap<String, PublicKey>) -> TrustedRole {
    TrustedRole {
        name: RoleName::Root,
        threshold: root.roles.get("root").map_or(1, |r| r.threshold),
        keys,
    }
}

/// The certificates of `root` usable for `gun` at `now`: the keys a new
/// (or first-seen) root must be signed with.
pub fn own_root_certificates(root: &Root, gun: &str, now: OffsetDateTime) -> RootCertificates {
    root_certificates(root, gun, Some(now))
}

/// A rotation: `file` (a new root) must meet `previous`'s threshold with
/// `previous`'s certificates. Their expiry does not matter: the previous
/// root was trusted when it was accepted, and expired roots must still be
/// rotatable.
pub fn check_rotation(previous: &Root, gun: &str, file: &SignedFile) -> Result<(), Error> {
    let old = root_certificates(previous, gun, None);
    verify_signatures(file, &root_role(previous, old.trusted))
}

/// The authority of the delegation `child` as `parent` (whose effective
/// paths are `parent_paths`) declares it: its keys and threshold, and its
/// paths restricted to what the parent may delegate.
pub fn delegation_authority(
    parent: &Targets,
    parent_paths: &[String],
    child: &RoleName,
) -> Result<(TrustedRole, Vec<String>), Error> {
    let (trusted, delegated) = parent.delegated_role(child)?;
    let paths = restrict_paths(parent_paths, &delegated.paths);
    Ok((trusted, paths))
}

/// The effective paths of the top-level `targets` role: everything.
pub fn top_level_paths() -> Vec<String> {
    vec![String::new()]
}

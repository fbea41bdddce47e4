//! `notarium expiring`: the client-signed roles that run out soon, with who
//! can re-sign them. The store keeps each role's expiry (one indexed
//! query); the signers are read from the role's parent (root for root,
//! targets and snapshot; the delegating targets file for a delegation), only
//! for the roles listed.

use std::collections::HashMap;

use time::{Duration, OffsetDateTime};

use crate::store::{self, Store};
use crate::tuf::certs::common_name;
use crate::tuf::{PublicKey, RoleName, Root, SignedFile, Targets};

/// One key that signs a listed role.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Signer {
    pub key_id: String,
    /// The certificate's Common Name, for certificate keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// The server holds this key (it re-signs by itself).
    pub server: bool,
}

/// One client-signed role expiring within the asked window.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExpiringRole {
    #[serde(flatten)]
    pub role: store::RoleExpiry,
    pub expired: bool,
    /// The keys the role's parent lists for it; empty when the parent
    /// cannot be read.
    pub signed_by: Vec<Signer>,
}

/// Every client-signed role expiring before `now + within` (expired ones
/// included), soonest first, with its signers.
pub async fn expiring_roles<S: Store>(
    store: &S,
    now: OffsetDateTime,
    within: Duration,
) -> Result<Vec<ExpiringRole>, store::Error> {
    let rows = store.expiring(now + within).await?;
    // Parents are read once per (GUN, parent role), however many children.
    let mut parents: HashMap<(String, String), Option<Vec<u8>>> = HashMap::new();
    let mut listed = Vec::with_capacity(rows.len());
    for row in rows {
        let parent = match RoleName::parse(&row.role).ok().and_then(|r| r.parent()) {
            Some(parent) => parent.as_str().to_string(),
            // root, and anything unparseable: root lists the top roles.
            None => "root".to_string(),
        };
        let key = (row.gun.clone(), parent.clone());
        if !parents.contains_key(&key) {
            let data = match store.get_current(&row.gun, &parent).await {
                Ok(file) => Some(file.data),
                Err(store::Error::NotFound) => None,
                Err(error) => return Err(error),
            };
            parents.insert(key.clone(), data);
        }
        let keys = parents
            .get(&key)
            .and_then(Option::as_ref)
            .map(|data| keys_for(data, &parent, &row.role))
            .unwrap_or_default();
        let held: Vec<String> = store
            .keys_for(&row.gun, &row.role)
            .await?
            .into_iter()
            .map(|k| k.key_id)
            .collect();
        let signed_by = keys
            .into_iter()
            .map(|(key_id, key)| Signer {
                common_name: key
                    .filter(|k| k.keytype().is_x509())
                    .and_then(|k| k.leaf_certificate().ok())
                    .and_then(|cert| common_name(&cert)),
                server: held.contains(&key_id),
                key_id,
            })
            .collect();
        listed.push(ExpiringRole {
            expired: row.expires <= now,
            role: row,
            signed_by,
        });
    }
    Ok(listed)
}

/// The key IDs (and keys, where listed) that `parent`'s file `data` gives
/// role `role`.
fn keys_for(data: &[u8], parent: &str, role: &str) -> Vec<(String, Option<PublicKey>)> {
    let Ok(file) = SignedFile::parse(data) else {
        return Vec::new();
    };
    if parent == "root" {
        let Ok(root) = file.body::<Root>("root") else {
            return Vec::new();
        };
        let ids = root
            .roles
            .get(role)
            .map(|r| r.keyids.clone())
            .unwrap_or_default();
        return ids
            .into_iter()
            .map(|id| {
                let key = root.keys.get(&id).cloned();
                (id, key)
            })
            .collect();
    }
    let Ok(targets) = file.body::<Targets>(parent) else {
        return Vec::new();
    };
    let Some(delegated) = targets.delegations.roles.iter().find(|r| r.name == role) else {
        return Vec::new();
    };
    delegated
        .keyids
        .iter()
        .map(|id| (id.clone(), targets.delegations.keys.get(id).cloned()))
        .collect()
}

/// Parses a duration as `notarium expiring --within` takes it: a whole
/// number and a unit, `s`, `m`, `h`, `d` or `w` (`90d`, `12h`, `2w`).
pub fn parse_window(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?}: add a unit: s, m, h, d or w (e.g. 90d)"))?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a whole number then a unit (e.g. 90d)"))?;
    let unit_seconds: i64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?}; use s, m, h, d or w"
            ));
        }
    };
    number
        .checked_mul(unit_seconds)
        .filter(|seconds| *seconds <= 100 * 366 * 86_400)
        .map(Duration::seconds)
        .ok_or_else(|| format!("{text:?}: at most 100 years"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_with_units() {
        assert_eq!(parse_window("90d"), Ok(Duration::days(90)));
        assert_eq!(parse_window("12h"), Ok(Duration::hours(12)));
        assert_eq!(parse_window("2w"), Ok(Duration::weeks(2)));
        assert_eq!(parse_window("30m"), Ok(Duration::minutes(30)));
        assert_eq!(parse_window("0s"), Ok(Duration::ZERO));
        for bad in ["", "90", "d", "-1d", "1.5d", "3y", "99999999999999w"] {
            assert!(parse_window(bad).is_err(), "{bad:?} accepted");
        }
    }
}

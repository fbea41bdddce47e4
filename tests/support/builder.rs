//! Builds Notary metadata with our own keys, the way a client would: a root
//! whose root key is a self-signed certificate for the GUN, and targets
//! signed with an ed25519 key. Shared by tests and benches.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use notarium::tuf::encoding::format_time;
use notarium::tuf::envelope::write_envelope;
use notarium::tuf::sign::sign_metadata;
use notarium::tuf::{FileMeta, KeyAlgorithm, KeyType, PublicKey, SigningKey, canonical};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

pub struct ClientKeys {
    pub gun: String,
    pub root_key: SigningKey,
    pub root_public: PublicKey,
    pub targets_key: SigningKey,
}

/// A self-signed certificate for `key` with CN = `gun`, as notary makes for
/// root keys, wrapped as an `ecdsa-x509` key.
pub fn certificate_key(key: &SigningKey, gun: &str, now: OffsetDateTime) -> PublicKey {
    let pkcs8 = key.to_pkcs8().unwrap();
    let pair = rcgen::KeyPair::try_from(pkcs8.as_slice()).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, gun);
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(3650);
    let cert = params.self_signed(&pair).unwrap();
    PublicKey::new(KeyType::EcdsaX509, cert.pem().into_bytes())
}

impl ClientKeys {
    pub fn new(gun: &str, now: OffsetDateTime) -> Self {
        let root_key = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let root_public = certificate_key(&root_key, gun, now);
        Self {
            gun: gun.to_string(),
            root_key,
            root_public,
            targets_key: SigningKey::generate(KeyAlgorithm::Ed25519).unwrap(),
        }
    }

    /// Root listing our root and targets keys and the given server keys,
    /// signed by the root certificate key.
    pub fn root(
        &self,
        version: i64,
        snapshot: &PublicKey,
        timestamp: &PublicKey,
        now: OffsetDateTime,
    ) -> Vec<u8> {
        let targets = self.targets_key.public_key();
        let mut keys = serde_json::Map::new();
        for key in [&self.root_public, targets, timestamp, snapshot] {
            keys.insert(key.id().to_string(), key.to_json());
        }
        let role = |key: &PublicKey| json!({"keyids": [key.id()], "threshold": 1});
        let body = json!({
            "_type": "Root",
            "consistent_snapshot": false,
            "expires": format_time(now + Duration::days(3650)),
            "keys": keys,
            "roles": {
                "root": role(&self.root_public),
                "targets": role(targets),
                "snapshot": role(snapshot),
                "timestamp": role(timestamp),
            },
            "version": version,
        });
        // The certificate key signs under its x509 key ID.
        let message = canonical::to_canonical(&body).unwrap();
        let mut signature = self.root_key.sign(&message).unwrap();
        signature.keyid = self.root_public.id().to_string();
        write_envelope(&message, &[signature])
    }

    /// Targets listing `names` (content = the name), signed by our key.
    pub fn targets(&self, version: i64, names: &[String], now: OffsetDateTime) -> Vec<u8> {
        sign_metadata(
            &self.targets_body(version, names, now),
            &[&self.targets_key],
        )
        .unwrap()
    }

    pub fn targets_body(&self, version: i64, names: &[String], now: OffsetDateTime) -> Value {
        let targets: serde_json::Map<String, Value> = names
            .iter()
            .map(|name| {
                (
                    name.clone(),
                    serde_json::to_value(FileMeta::for_bytes(name.as_bytes())).unwrap(),
                )
            })
            .collect();
        json!({
            "_type": "Targets",
            "delegations": {"keys": {}, "roles": []},
            "expires": format_time(now + Duration::days(1095)),
            "targets": targets,
            "version": version,
        })
    }
}

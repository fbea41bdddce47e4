//! The signed envelope `{"signed":…,"signatures":[…]}` (PROTOCOL.md §4.1).
//!
//! A parsed file keeps the exact bytes it came from: those are what is stored,
//! served and hashed. Signatures are checked over the canonical re-encoding of
//! the generic `signed` value, as Notary's verifier does.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::roles::RoleBody;
use super::sig::Method;
use super::{Error, canonical, encoding};

/// One entry of `signatures`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub keyid: String,
    pub method: Method,
    pub sig: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct WireSignature {
    keyid: String,
    method: String,
    #[serde(with = "encoding::base64_bytes")]
    sig: Vec<u8>,
}

#[derive(Deserialize)]
struct WireEnvelope {
    signed: Value,
    #[serde(default)]
    signatures: Option<Vec<WireSignature>>,
}

/// Any signed metadata file, role not yet known. Cheap to clone: a
/// 10,000-target file is about 1 MiB of bytes but over 10 MiB as a parsed
/// `Value`, and a publish keeps the upload while validating a copy of it.
#[derive(Debug, Clone)]
pub struct SignedFile {
    raw: Arc<[u8]>,
    signed: Arc<Value>,
    signatures: Vec<Signature>,
}

/// The fields every role body has; read before the role is known.
#[derive(Debug, Clone, Deserialize)]
pub struct CommonFields {
    #[serde(rename = "_type")]
    pub type_name: String,
    pub version: i64,
    pub expires: super::roles::Expiry,
}

impl SignedFile {
    /// Parses an envelope. The bytes must be one JSON object whose `signed`
    /// member is an object, and no object may repeat a member name.
    pub fn parse(raw: &[u8]) -> Result<Self, Error> {
        super::strict::check_unique_keys(raw)?;
        let wire: WireEnvelope = serde_json::from_slice(raw).map_err(Error::MalformedJson)?;
        if !wire.signed.is_object() {
            return Err(Error::InvalidStructure {
                role: "metadata".into(),
                reason: "\"signed\" is not a JSON object".into(),
            });
        }
        let signatures = wire
            .signatures
            .unwrap_or_default()
            .into_iter()
            .map(|s| Signature {
                keyid: s.keyid,
                method: Method::parse(&s.method),
                sig: s.sig,
            })
            .collect();
        Ok(Self {
            raw: raw.into(),
            signed: Arc::new(wire.signed),
            signatures,
        })
    }

    /// The exact bytes this file was parsed from.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The `signed` member as a generic JSON value.
    pub fn signed_value(&self) -> &Value {
        &self.signed
    }

    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// The bytes signatures are made over.
    pub fn canonical_signed(&self) -> Result<Vec<u8>, Error> {
        canonical::to_canonical(&self.signed)
    }

    /// `_type`, `version` and `expires`, whatever the role.
    pub fn common(&self) -> Result<CommonFields, Error> {
        CommonFields::deserialize(&*self.signed).map_err(|source| Error::MalformedRole {
            role: "metadata".into(),
            source,
        })
    }

    /// Reads the body as role `T`.
    pub fn body<T: RoleBody>(&self, role: &str) -> Result<T, Error> {
        T::deserialize(&*self.signed).map_err(|source| Error::MalformedRole {
            role: role.to_string(),
            source,
        })
    }
}

/// Writes an envelope the way Notary does: `{"signed":<canonical>,
/// "signatures":[{"keyid","method","sig"}]}` with no whitespace.
pub fn write_envelope(canonical_signed: &[u8], signatures: &[Signature]) -> Vec<u8> {
    let wire: Vec<WireSignature> = signatures
        .iter()
        .map(|s| WireSignature {
            keyid: s.keyid.clone(),
            method: s.method.as_str().to_string(),
            sig: s.sig.clone(),
        })
        .collect();
    // Serializing strings and bytes cannot fail.
    let signatures_json = serde_json::to_vec(&wire).unwrap_or_else(|_| b"[]".to_vec());
    let mut out = Vec::with_capacity(canonical_signed.len() + signatures_json.len() + 32);
    out.extend_from_slice(b"{\"signed\":");
    out.extend_from_slice(canonical_signed);
    out.extend_from_slice(b",\"signatures\":");
    out.extend_from_slice(&signatures_json);
    out.push(b'}');
    out
}

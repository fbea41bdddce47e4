//! The signed envelope `{"signed":…,"signatures":[…]}` (PROTOCOL.md §4.1).
//!
//! A parsed file keeps the exact bytes it came from: those are what is stored,
//! served and hashed. Signatures are checked over the canonical re-encoding of
//! the `signed` member, as Notary's verifier does; it is re-encoded (and read
//! as a role body) straight from those bytes, never kept as a value tree.

use std::ops::Range;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

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
struct WireEnvelope<'a> {
    #[serde(borrow)]
    signed: &'a RawValue,
    #[serde(default)]
    signatures: Option<Vec<WireSignature>>,
}

/// Any signed metadata file, role not yet known. Cheap to clone, and no
/// bigger than its bytes: a 10,000-target file is about 1 MiB of text but
/// was over 10 MiB as a parsed `Value`.
#[derive(Debug, Clone)]
pub struct SignedFile {
    raw: Bytes,
    /// Where the `signed` member's text sits in `raw`.
    signed: Range<usize>,
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
        Self::parse_owned(raw.to_vec())
    }

    /// [`SignedFile::parse`], keeping `raw` itself rather than a copy (an
    /// upload is parsed once and kept until it is stored).
    pub fn parse_owned(raw: Vec<u8>) -> Result<Self, Error> {
        let raw = Bytes::from(raw);
        super::strict::check_unique_keys(&raw)?;
        let wire: WireEnvelope = serde_json::from_slice(&raw).map_err(Error::MalformedJson)?;
        // The raw value borrows from `raw`, so its place there is the
        // distance between the two pointers.
        let text = wire.signed.get().as_bytes();
        let start = (text.as_ptr() as usize).wrapping_sub(raw.as_ptr() as usize);
        let signed = start..start.saturating_add(text.len());
        if raw.get(signed.clone()) != Some(text) || text.first() != Some(&b'{') {
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
            raw,
            signed,
            signatures,
        })
    }

    /// The exact bytes this file was parsed from.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The `signed` member's text, exactly as sent.
    pub fn signed_bytes(&self) -> &[u8] {
        // `parse` checked the range.
        self.raw.get(self.signed.clone()).unwrap_or_default()
    }

    /// The `signed` member parsed as a generic JSON value: a new tree on
    /// each call, meant for small files (the server re-signing a snapshot)
    /// and for tests.
    pub fn signed_value(&self) -> Result<Value, Error> {
        serde_json::from_slice(self.signed_bytes()).map_err(Error::MalformedJson)
    }

    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// The bytes signatures are made over.
    pub fn canonical_signed(&self) -> Result<Vec<u8>, Error> {
        canonical::canonicalize(self.signed_bytes())
    }

    /// `_type`, `version` and `expires`, whatever the role.
    pub fn common(&self) -> Result<CommonFields, Error> {
        serde_json::from_slice(self.signed_bytes()).map_err(|source| Error::MalformedRole {
            role: "metadata".into(),
            source: without_position(source),
        })
    }

    /// Reads the body as role `T`.
    pub fn body<T: RoleBody>(&self, role: &str) -> Result<T, Error> {
        serde_json::from_slice(self.signed_bytes()).map_err(|source| Error::MalformedRole {
            role: role.to_string(),
            source: without_position(source),
        })
    }
}

/// The error without its " at line L column C": those count from the start
/// of `signed`, not of the file, so they would mislead whoever reads them.
fn without_position(error: serde_json::Error) -> serde_json::Error {
    if error.line() == 0 {
        return error;
    }
    let text = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    let message = text.strip_suffix(&position).unwrap_or(&text);
    <serde_json::Error as serde::de::Error>::custom(message)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuf::Targets;

    #[test]
    fn role_body_errors_name_the_problem_without_a_misleading_position() {
        let raw =
            br#"{"signed":{"_type":"Targets","expires":"2030-01-01T00:00:00Z"},"signatures":[]}"#;
        let file = SignedFile::parse(raw).unwrap();
        match file.body::<Targets>("targets") {
            Err(Error::MalformedRole { role, source }) => {
                assert_eq!(role, "targets");
                assert_eq!(source.to_string(), "missing field `version`");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(file.signed_bytes(), &raw[10..raw.len() - 17]);
    }
}

//! Private keys at rest, sealed as notary-signer seals them (PROTOCOL.md §5,
//! `signer/keydbstore/sql_keydbstore.go` via jose2go): a compact JWE with
//! `alg` = `PBES2-HS256+A128KW` and `enc` = `A256GCM`.
//!
//! 1. KEK = PBKDF2-HMAC-SHA256(passphrase, alg ‖ 0x00 ‖ p2s, p2c), 16 bytes
//!    (RFC 7518 §4.8.1.1).
//! 2. A random 32-byte CEK, wrapped with AES-128 key wrap (RFC 3394).
//! 3. AES-256-GCM under the CEK, 12-byte random IV, AAD = the base64url
//!    protected header (RFC 7516 §5.1 step 14).
//!
//! Output: `header.encrypted_key.iv.ciphertext.tag`, base64url without
//! padding. Only the header differs from jose2go's: a 16-byte rather than
//! 12-byte salt, and by default more PBKDF2 iterations (any count in
//! [`ITERATIONS`] opens, notary-signer's 8192 included).

use std::fmt;
use std::num::NonZeroU32;
use std::ops::RangeInclusive;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::key_wrap::{AES_128, KeyEncryptionKey, KeyWrap};
use aws_lc_rs::pbkdf2;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::Error;

pub const ALG: &str = "PBES2-HS256+A128KW";
pub const ENC: &str = "A256GCM";

/// notary-signer's (jose2go's) fixed iteration count.
pub const NOTARY_ITERATIONS: u32 = 8192;

/// Iterations used for new seals: well above jose2go's 8192, which dates
/// from 2015. Unsealing happens once per signature (tens of ms in a release
/// build), and keys are signed with rarely, so the cost is affordable.
pub const DEFAULT_ITERATIONS: u32 = 100_000;

/// Iteration counts accepted when opening. The count comes from the token,
/// so an upper bound keeps a planted token from pinning a CPU; the lower
/// bound refuses trivially weak seals.
pub const ITERATIONS: RangeInclusive<u32> = 1_000..=1_000_000;

const SALT_LEN: usize = 16;
/// RFC 7518 §4.8.1.1 asks for at least 8 bytes; more than 64 is not a salt.
const SALT_LEN_ACCEPTED: RangeInclusive<usize> = 8..=64;
const KEK_LEN: usize = 16;
const CEK_LEN: usize = 32;
/// RFC 3394 adds one 8-byte block.
const WRAPPED_CEK_LEN: usize = CEK_LEN + 8;
const TAG_LEN: usize = 16;
/// A sealed private key is a few hundred bytes; refuse anything absurd
/// before decoding it.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// A passphrase for sealing keys. Zeroized on drop, never printed.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    pub fn new(passphrase: impl Into<String>) -> Self {
        Self(Zeroizing::new(passphrase.into()))
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl From<String> for Passphrase {
    fn from(passphrase: String) -> Self {
        Self::new(passphrase)
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(****)")
    }
}

/// The protected header, fields in the order Go's `json.Marshal` writes a
/// map (sorted), so our tokens look like notary-signer's.
#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    enc: &'a str,
    p2c: u32,
    p2s: &'a str,
}

/// Checks an iteration count against [`ITERATIONS`].
pub fn check_iterations(iterations: u64) -> Result<u32, Error> {
    u32::try_from(iterations)
        .ok()
        .filter(|n| ITERATIONS.contains(n))
        .ok_or(Error::UnsupportedSealing {
            field: "p2c",
            value: iterations.to_string(),
        })
}

/// Seals `plaintext` (a private key) under `passphrase`.
pub fn seal(plaintext: &[u8], passphrase: &Passphrase, iterations: u32) -> Result<String, Error> {
    let iterations = check_iterations(iterations.into())?;
    let rng = SystemRandom::new();
    let random = |buf: &mut [u8]| {
        rng.fill(buf).map_err(|_| Error::Sealing {
            operation: "random generation",
        })
    };
    let mut salt = [0u8; SALT_LEN];
    random(&mut salt)?;
    let mut cek = Zeroizing::new([0u8; CEK_LEN]);
    random(cek.as_mut())?;
    let mut iv = [0u8; NONCE_LEN];
    random(&mut iv)?;

    let p2s = URL_SAFE_NO_PAD.encode(salt);
    let header = serde_json::to_vec(&Header {
        alg: ALG,
        enc: ENC,
        p2c: iterations,
        p2s: &p2s,
    })
    .map_err(|_| Error::Sealing {
        operation: "header encoding",
    })?;
    let protected = URL_SAFE_NO_PAD.encode(header);

    let kek = derive_kek(passphrase, &salt, iterations);
    let mut wrapped = [0u8; WRAPPED_CEK_LEN];
    KeyEncryptionKey::new(&AES_128, kek.as_ref())
        .and_then(|kek| kek.wrap(cek.as_ref(), &mut wrapped).map(|_| ()))
        .map_err(|_| Error::Sealing {
            operation: "key wrap",
        })?;

    let mut ciphertext = plaintext.to_vec();
    let tag = gcm_key(&cek)
        .and_then(|key| {
            key.seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(iv),
                Aad::from(protected.as_bytes()),
                &mut ciphertext,
            )
        })
        .map_err(|_| Error::Sealing {
            operation: "encryption",
        })?;

    Ok([
        protected,
        URL_SAFE_NO_PAD.encode(wrapped),
        URL_SAFE_NO_PAD.encode(iv),
        URL_SAFE_NO_PAD.encode(&ciphertext),
        URL_SAFE_NO_PAD.encode(tag.as_ref()),
    ]
    .join("."))
}

/// Opens a sealed key. A wrong passphrase shows as [`Error::WrongPassphrase`]
/// (the key unwrap's integrity check fails; a damaged wrapped key looks the
/// same); a token whose content was altered as [`Error::SealedKeyTampered`].
pub fn open(token: &str, passphrase: &Passphrase) -> Result<Zeroizing<Vec<u8>>, Error> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(malformed("token too long"));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [protected, wrapped, iv, ciphertext, tag] = parts[..] else {
        return Err(malformed("not five dot-separated parts"));
    };
    let (salt, iterations) = read_header(protected)?;
    let wrapped = decode(wrapped, "encrypted key is not base64url")?;
    let iv = decode(iv, "IV is not base64url")?;
    let tag = decode(tag, "tag is not base64url")?;
    let mut plaintext = Zeroizing::new(decode(ciphertext, "ciphertext is not base64url")?);
    if wrapped.len() != WRAPPED_CEK_LEN {
        return Err(malformed("encrypted key has the wrong length"));
    }
    let iv: [u8; NONCE_LEN] = iv
        .try_into()
        .map_err(|_| malformed("IV has the wrong length"))?;
    if tag.len() != TAG_LEN {
        return Err(malformed("tag has the wrong length"));
    }

    let kek = derive_kek(passphrase, &salt, iterations);
    let mut cek = Zeroizing::new([0u8; CEK_LEN]);
    let unwrapped = KeyEncryptionKey::new(&AES_128, kek.as_ref())
        .and_then(|kek| kek.unwrap(&wrapped, cek.as_mut()).map(|out| out.len()))
        .map_err(|_| Error::WrongPassphrase)?;
    if unwrapped != CEK_LEN {
        return Err(Error::WrongPassphrase);
    }
    gcm_key(&cek)
        .and_then(|key| {
            key.open_in_place_separate_tag(
                Nonce::assume_unique_for_key(iv),
                Aad::from(protected.as_bytes()),
                &tag,
                &mut plaintext,
            )
            .map(|_| ())
        })
        .map_err(|_| Error::SealedKeyTampered)?;
    Ok(plaintext)
}

/// Validates the protected header; returns (salt, iterations).
fn read_header(protected: &str) -> Result<(Vec<u8>, u32), Error> {
    let json = decode(protected, "header is not base64url")?;
    let header: Map<String, Value> =
        serde_json::from_slice(&json).map_err(|_| malformed("header is not a JSON object"))?;
    let text = |field: &'static str| match header.get(field) {
        Some(Value::String(value)) => Ok(value.as_str()),
        Some(_) => Err(malformed("header field is not a string")),
        None => Err(malformed("header field missing")),
    };
    for (field, expected) in [("alg", ALG), ("enc", ENC)] {
        let value = text(field)?;
        if value != expected {
            return Err(Error::UnsupportedSealing {
                field,
                value: value.to_string(),
            });
        }
    }
    // We can neither decompress nor honour critical extensions.
    for field in ["zip", "crit"] {
        if let Some(value) = header.get(field) {
            return Err(Error::UnsupportedSealing {
                field,
                value: value.to_string(),
            });
        }
    }
    let iterations = match header.get("p2c") {
        Some(Value::Number(n)) => n.as_u64().ok_or(Error::UnsupportedSealing {
            field: "p2c",
            value: n.to_string(),
        })?,
        Some(_) => return Err(malformed("p2c is not a number")),
        None => return Err(malformed("header field missing")),
    };
    let iterations = check_iterations(iterations)?;
    let salt = decode(text("p2s")?, "p2s is not base64url")?;
    if !SALT_LEN_ACCEPTED.contains(&salt.len()) {
        return Err(Error::UnsupportedSealing {
            field: "p2s",
            value: format!("{} bytes", salt.len()),
        });
    }
    Ok((salt, iterations))
}

fn derive_kek(passphrase: &Passphrase, salt: &[u8], iterations: u32) -> Zeroizing<[u8; KEK_LEN]> {
    // RFC 7518 §4.8.1.1: the salt input is prefixed with the algorithm name.
    let mut salt_input = Vec::with_capacity(ALG.len() + 1 + salt.len());
    salt_input.extend_from_slice(ALG.as_bytes());
    salt_input.push(0);
    salt_input.extend_from_slice(salt);
    let mut kek = Zeroizing::new([0u8; KEK_LEN]);
    // `check_iterations` keeps the count >= 1000.
    let iterations = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt_input,
        passphrase.as_bytes(),
        kek.as_mut(),
    );
    kek
}

fn gcm_key(cek: &[u8; CEK_LEN]) -> Result<LessSafeKey, aws_lc_rs::error::Unspecified> {
    Ok(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, cek)?))
}

fn decode(part: &str, reason: &'static str) -> Result<Vec<u8>, Error> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| malformed(reason))
}

fn malformed(reason: &'static str) -> Error {
    Error::MalformedSealedKey { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fast enough for debug builds; the count is not what is under test.
    const TEST_ITERATIONS: u32 = 1_000;

    fn pass() -> Passphrase {
        Passphrase::new("correct horse battery staple")
    }

    fn parts(token: &str) -> Vec<Vec<u8>> {
        token
            .split('.')
            .map(|part| URL_SAFE_NO_PAD.decode(part).unwrap())
            .collect()
    }

    /// Re-encodes `parts` into a token, keeping the original header text.
    fn with_part(token: &str, index: usize, bytes: &[u8]) -> String {
        let mut split: Vec<String> = token.split('.').map(str::to_string).collect();
        split[index] = URL_SAFE_NO_PAD.encode(bytes);
        split.join(".")
    }

    fn header_with(fields: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(fields).unwrap())
    }

    #[test]
    fn round_trip() {
        let secret = b"\x30\x81\x87 some PKCS#8 bytes";
        let token = seal(secret, &pass(), TEST_ITERATIONS).unwrap();
        assert_eq!(open(&token, &pass()).unwrap().as_slice(), secret);
        // Fresh salt, CEK and IV every time.
        assert_ne!(token, seal(secret, &pass(), TEST_ITERATIONS).unwrap());
    }

    #[test]
    fn default_iterations_round_trip() {
        let token = seal(b"key", &pass(), DEFAULT_ITERATIONS).unwrap();
        assert_eq!(open(&token, &pass()).unwrap().as_slice(), b"key");
    }

    #[test]
    fn header_fields_are_exactly_notary_signers() {
        let token = seal(b"key", &pass(), NOTARY_ITERATIONS).unwrap();
        let protected = token.split('.').next().unwrap();
        let header = URL_SAFE_NO_PAD.decode(protected).unwrap();
        let text = String::from_utf8(header).unwrap();
        assert!(
            text.starts_with(r#"{"alg":"PBES2-HS256+A128KW","enc":"A256GCM","p2c":8192,"p2s":""#),
            "{text}"
        );
        let header: Map<String, Value> = serde_json::from_str(&text).unwrap();
        let keys: Vec<&str> = header.keys().map(String::as_str).collect();
        assert_eq!(keys, ["alg", "enc", "p2c", "p2s"]);
        let salt = URL_SAFE_NO_PAD
            .decode(header["p2s"].as_str().unwrap())
            .unwrap();
        assert_eq!(salt.len(), SALT_LEN);

        let parts = parts(&token);
        assert_eq!(parts.len(), 5);
        assert_eq!(parts[1].len(), WRAPPED_CEK_LEN);
        assert_eq!(parts[2].len(), NONCE_LEN);
        assert_eq!(parts[3].len(), 3);
        assert_eq!(parts[4].len(), TAG_LEN);
    }

    /// A token built independently (Python `cryptography`: PBKDF2HMAC,
    /// aes_key_wrap, AESGCM) the way jose2go builds one: 12-byte salt,
    /// p2c 8192, the same header bytes Go writes.
    #[test]
    fn opens_a_jose2go_style_token() {
        const TOKEN: &str = concat!(
            "eyJhbGciOiJQQkVTMi1IUzI1NitBMTI4S1ciLCJlbmMiOiJBMjU2R0NNIiwicDJjIjo4MTkyLCJwMnMiOiJMalZGQzlLRnBiS1M1RFpBIn0.",
            "A1_C1eiInJRlBSxAebKFsn2-Pa3fa1N_6oxbsMf5WH3xLJfKJMHp8Q.",
            "j3LKwvVC2q66QgJH.",
            "yCOz9rWdHVRQmUnROyPLGyKuF1Nyc8Tcasq-4sZqxi6Akw.",
            "z2XX4LYr5rOurkgXwsD1wA",
        );
        let opened = open(TOKEN, &pass()).unwrap();
        assert_eq!(
            opened.as_slice(),
            b"notary-signer private key bytes\x00\x01\x02"
        );
    }

    #[test]
    fn wrong_passphrase_is_reported_as_such() {
        let token = seal(b"key", &pass(), TEST_ITERATIONS).unwrap();
        assert!(matches!(
            open(&token, &Passphrase::new("wrong")),
            Err(Error::WrongPassphrase)
        ));
    }

    #[test]
    fn tampering_is_detected() {
        let token = seal(b"some private key", &pass(), TEST_ITERATIONS).unwrap();
        let p = parts(&token);
        for index in [3, 4] {
            let mut bytes = p[index].clone();
            bytes[0] ^= 1;
            assert!(
                matches!(
                    open(&with_part(&token, index, &bytes), &pass()),
                    Err(Error::SealedKeyTampered)
                ),
                "part {index}"
            );
        }
        // The IV is authenticated through the tag.
        let mut iv = p[2].clone();
        iv[0] ^= 1;
        assert!(matches!(
            open(&with_part(&token, 2, &iv), &pass()),
            Err(Error::SealedKeyTampered)
        ));
        // The header is the AAD: re-encoding it with other bytes but the
        // same meaning still fails.
        let header: Value = serde_json::from_slice(&p[0]).unwrap();
        let spaced = serde_json::to_vec_pretty(&header).unwrap();
        assert!(matches!(
            open(&with_part(&token, 0, &spaced), &pass()),
            Err(Error::SealedKeyTampered)
        ));
        // A damaged wrapped key fails the unwrap check.
        let mut wrapped = p[1].clone();
        wrapped[0] ^= 1;
        assert!(matches!(
            open(&with_part(&token, 1, &wrapped), &pass()),
            Err(Error::WrongPassphrase)
        ));
    }

    #[test]
    fn iteration_counts_outside_the_allowlist_are_refused() {
        let token = seal(b"key", &pass(), TEST_ITERATIONS).unwrap();
        let salt = URL_SAFE_NO_PAD.encode([0u8; 16]);
        for p2c in [0u64, 999, 1_000_001, u64::MAX] {
            let header = header_with(&serde_json::json!({
                "alg": ALG, "enc": ENC, "p2c": p2c, "p2s": salt,
            }));
            let mut split: Vec<String> = token.split('.').map(str::to_string).collect();
            split[0] = header;
            assert!(
                matches!(
                    open(&split.join("."), &pass()),
                    Err(Error::UnsupportedSealing { field: "p2c", .. })
                ),
                "p2c {p2c}"
            );
        }
        assert!(matches!(
            seal(b"key", &pass(), 999),
            Err(Error::UnsupportedSealing { field: "p2c", .. })
        ));
        assert!(matches!(
            seal(b"key", &pass(), 2_000_000),
            Err(Error::UnsupportedSealing { field: "p2c", .. })
        ));
    }

    #[test]
    fn other_algorithms_and_extensions_are_refused() {
        let token = seal(b"key", &pass(), TEST_ITERATIONS).unwrap();
        let salt = URL_SAFE_NO_PAD.encode([0u8; 16]);
        let cases = [
            (
                serde_json::json!({"alg": "PBES2-HS512+A256KW", "enc": ENC, "p2c": 1000, "p2s": salt}),
                "alg",
            ),
            (
                serde_json::json!({"alg": ALG, "enc": "A128CBC-HS256", "p2c": 1000, "p2s": salt}),
                "enc",
            ),
            (
                serde_json::json!({"alg": ALG, "enc": ENC, "p2c": 1000, "p2s": salt, "zip": "DEF"}),
                "zip",
            ),
            (
                serde_json::json!({"alg": ALG, "enc": ENC, "p2c": 1000, "p2s": "AAAA"}),
                "p2s",
            ),
        ];
        for (header, expected) in cases {
            let mut split: Vec<String> = token.split('.').map(str::to_string).collect();
            split[0] = header_with(&header);
            match open(&split.join("."), &pass()) {
                Err(Error::UnsupportedSealing { field, .. }) => assert_eq!(field, expected),
                other => panic!("{expected}: {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_tokens_are_reported() {
        let token = seal(b"key", &pass(), TEST_ITERATIONS).unwrap();
        let four: Vec<&str> = token.split('.').take(4).collect();
        let six = format!("{token}.AAAA");
        let bad_b64 = token.replacen('.', ".!!", 1);
        let padded = format!("{token}=");
        let not_json = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode("nope"),
            &token[token.find('.').unwrap() + 1..]
        );
        let long = "A".repeat(MAX_TOKEN_LEN + 1);
        for bad in [
            four.join("."),
            six,
            bad_b64,
            padded,
            not_json,
            long,
            String::new(),
        ] {
            assert!(
                matches!(open(&bad, &pass()), Err(Error::MalformedSealedKey { .. })),
                "{bad:.40}"
            );
        }
    }

    #[test]
    fn passphrase_debug_is_redacted() {
        let shown = format!("{:?}", pass());
        assert_eq!(shown, "Passphrase(****)");
        assert!(!shown.contains("horse"));
    }
}

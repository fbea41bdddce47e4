//! Private keys at rest, as compact JWEs (RFC 7516), in one of two forms.
//!
//! **Current: `alg` = `A256KW`, `enc` = `A256GCM`, `kid` naming the KEK.**
//! A key-encryption key (KEK) is derived from the passphrase once per process
//! ([`Kek::derive`]: PBKDF2-HMAC-SHA256 over a per-database random salt), so
//! sealing a new key costs no PBKDF2 run. Each key gets a random 32-byte CEK,
//! wrapped with AES-256 key wrap (RFC 3394) under the KEK.
//!
//! **Legacy, still opened: notary-signer's form** (PROTOCOL.md §5,
//! `signer/keydbstore/sql_keydbstore.go` via jose2go): `alg` =
//! `PBES2-HS256+A128KW`, the KEK derived per key as
//! PBKDF2-HMAC-SHA256(passphrase, alg ‖ 0x00 ‖ p2s, p2c), 16 bytes
//! (RFC 7518 §4.8.1.1), wrapping the CEK with AES-128 key wrap. Keys imported
//! from notary-signer, and keys sealed by older notarium builds, are in this
//! form.
//!
//! Both: AES-256-GCM under the CEK, 12-byte random IV, AAD = the base64url
//! protected header (RFC 7516 §5.1 step 14). Output:
//! `header.encrypted_key.iv.ciphertext.tag`, base64url without padding.

use std::fmt;
use std::num::NonZeroU32;
use std::ops::RangeInclusive;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::key_wrap::{AES_128, AES_256, AesBlockCipher, KeyEncryptionKey, KeyWrap};
use aws_lc_rs::pbkdf2;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::Error;

/// The legacy (notary-signer) key-management algorithm.
pub const ALG: &str = "PBES2-HS256+A128KW";
/// The current key-management algorithm: the CEK wrapped by the KEK.
pub const KEK_ALG: &str = "A256KW";
pub const ENC: &str = "A256GCM";

/// notary-signer's (jose2go's) fixed iteration count.
pub const NOTARY_ITERATIONS: u32 = 8192;

/// Iterations for deriving a KEK (and for legacy seals). The KEK is derived
/// once per process, so this can be far above jose2go's 8192 of 2015
/// (OWASP's 2023 figure for PBKDF2-HMAC-SHA256) without slowing requests.
pub const DEFAULT_ITERATIONS: u32 = 600_000;

/// Iteration counts accepted when opening. The count comes from the token
/// (or the database), so an upper bound keeps a planted value from pinning
/// a CPU; the lower bound refuses trivially weak seals.
pub const ITERATIONS: RangeInclusive<u32> = 1_000..=1_000_000;

const SALT_LEN: usize = 16;
/// RFC 7518 §4.8.1.1 asks for at least 8 bytes; more than 64 is not a salt.
const SALT_LEN_ACCEPTED: RangeInclusive<usize> = 8..=64;
const LEGACY_KEK_LEN: usize = 16;
const KEK_LEN: usize = 32;
const CEK_LEN: usize = 32;
/// RFC 3394 adds one 8-byte block.
const WRAPPED_CEK_LEN: usize = CEK_LEN + 8;
const TAG_LEN: usize = 16;
/// A sealed private key is a few hundred bytes; refuse anything absurd
/// before decoding it.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Domain separation for the KEK derivation, so it never equals a legacy
/// per-key KEK even for the same salt.
const KEK_SALT_PREFIX: &[u8] = b"notarium-kek-v1\0";
/// `kid` prefix of tokens sealed under a KEK.
const KID_PREFIX: &str = "notarium-kek-v1:";
/// The known answer sealed under a new KEK and stored with its salt: opening
/// it at start-up tells a wrong passphrase apart before any key is needed.
const CHECK_PLAINTEXT: &[u8] = b"notarium key-encryption-key check v1";

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

/// The legacy protected header, fields in the order Go's `json.Marshal`
/// writes a map (sorted), so these tokens look like notary-signer's.
#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    enc: &'a str,
    p2c: u32,
    p2s: &'a str,
}

/// The protected header of a KEK-wrapped token.
#[derive(Serialize)]
struct KekHeader<'a> {
    alg: &'a str,
    enc: &'a str,
    kid: &'a str,
}

/// A key-encryption key derived from the passphrase. Zeroized on drop.
pub struct Kek {
    id: String,
    key: Zeroizing<[u8; KEK_LEN]>,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Kek {
    /// PBKDF2-HMAC-SHA256(passphrase, prefix ‖ salt, iterations): the one
    /// expensive step, done once per process.
    pub fn derive(passphrase: &Passphrase, salt: &[u8], iterations: u32) -> Result<Self, Error> {
        let iterations = check_iterations(iterations.into())?;
        if !SALT_LEN_ACCEPTED.contains(&salt.len()) {
            return Err(Error::UnsupportedSealing {
                field: "salt",
                value: format!("{} bytes", salt.len()),
            });
        }
        let mut salt_input = Vec::with_capacity(KEK_SALT_PREFIX.len() + salt.len());
        salt_input.extend_from_slice(KEK_SALT_PREFIX);
        salt_input.extend_from_slice(salt);
        let mut key = Zeroizing::new([0u8; KEK_LEN]);
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN),
            &salt_input,
            passphrase.as_bytes(),
            key.as_mut(),
        );
        // The ID names the salt (public), not the key, so it reveals nothing.
        let digest = crate::tuf::sha256(salt);
        let id = format!("{KID_PREFIX}{}", hex::encode(&digest[..8]));
        Ok(Self { id, key })
    }

    /// The `kid` written into tokens sealed under this KEK.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plaintext` under this KEK: no PBKDF2 run.
    pub fn seal(&self, plaintext: &[u8]) -> Result<String, Error> {
        let header = serde_json::to_vec(&KekHeader {
            alg: KEK_ALG,
            enc: ENC,
            kid: &self.id,
        })
        .map_err(|_| Error::Sealing {
            operation: "header encoding",
        })?;
        encrypt(
            URL_SAFE_NO_PAD.encode(header),
            &AES_256,
            self.key.as_ref(),
            plaintext,
        )
    }

    /// The known answer to store with the salt ([`Kek::verify_check`]).
    pub fn check_value(&self) -> Result<String, Error> {
        self.seal(CHECK_PLAINTEXT)
    }

    /// Whether `check` (from [`Kek::check_value`]) opens under this KEK:
    /// [`Error::WrongPassphrase`] if not.
    pub fn verify_check(&self, check: &str) -> Result<(), Error> {
        let opened = self.open(check)?;
        if opened.as_slice() == CHECK_PLAINTEXT {
            Ok(())
        } else {
            Err(Error::WrongPassphrase)
        }
    }

    /// Opens a token sealed by [`Kek::seal`] under this KEK.
    pub fn open(&self, token: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
        let parts = Parts::split(token)?;
        let header = header_map(parts.protected)?;
        check_common_header(&header, KEK_ALG)?;
        let kid = text_field(&header, "kid")?;
        if kid != self.id {
            return Err(Error::UnknownKek {
                kid: kid.chars().take(80).collect(),
            });
        }
        decrypt(&parts, &AES_256, self.key.as_ref())
    }
}

/// A fresh random salt for a KEK.
pub fn new_salt() -> Result<Vec<u8>, Error> {
    let mut salt = vec![0u8; SALT_LEN];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| Error::Sealing {
            operation: "random generation",
        })?;
    Ok(salt)
}

/// Opens a token of either form: KEK-wrapped ones with `kek`, legacy ones
/// with the passphrase (one PBKDF2 run).
pub fn open_any(
    token: &str,
    kek: &Kek,
    passphrase: &Passphrase,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let parts = Parts::split(token)?;
    let header = header_map(parts.protected)?;
    match text_field(&header, "alg")? {
        KEK_ALG => kek.open(token),
        _ => open(token, passphrase),
    }
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

/// Seals `plaintext` the legacy (notary-signer) way under `passphrase`: one
/// PBKDF2 run per call. Kept for writing tokens notary-signer can read.
pub fn seal(plaintext: &[u8], passphrase: &Passphrase, iterations: u32) -> Result<String, Error> {
    let iterations = check_iterations(iterations.into())?;
    let mut salt = [0u8; SALT_LEN];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| Error::Sealing {
            operation: "random generation",
        })?;
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
    let kek = derive_legacy_kek(passphrase, &salt, iterations);
    encrypt(
        URL_SAFE_NO_PAD.encode(header),
        &AES_128,
        kek.as_ref(),
        plaintext,
    )
}

/// Opens a legacy (PBES2) token. A wrong passphrase shows as
/// [`Error::WrongPassphrase`] (the key unwrap's integrity check fails; a
/// damaged wrapped key looks the same); a token whose content was altered as
/// [`Error::SealedKeyTampered`].
pub fn open(token: &str, passphrase: &Passphrase) -> Result<Zeroizing<Vec<u8>>, Error> {
    let parts = Parts::split(token)?;
    let (salt, iterations) = read_header(parts.protected)?;
    let kek = derive_legacy_kek(passphrase, &salt, iterations);
    decrypt(&parts, &AES_128, kek.as_ref())
}

/// The five parts of a compact JWE, decoded and length-checked.
struct Parts<'a> {
    protected: &'a str,
    wrapped: Vec<u8>,
    iv: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
    tag: Vec<u8>,
}

impl<'a> Parts<'a> {
    fn split(token: &'a str) -> Result<Self, Error> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(malformed("token too long"));
        }
        let parts: Vec<&str> = token.split('.').collect();
        let [protected, wrapped, iv, ciphertext, tag] = parts[..] else {
            return Err(malformed("not five dot-separated parts"));
        };
        let wrapped = decode(wrapped, "encrypted key is not base64url")?;
        let iv = decode(iv, "IV is not base64url")?;
        let tag = decode(tag, "tag is not base64url")?;
        let ciphertext = decode(ciphertext, "ciphertext is not base64url")?;
        if wrapped.len() != WRAPPED_CEK_LEN {
            return Err(malformed("encrypted key has the wrong length"));
        }
        let iv: [u8; NONCE_LEN] = iv
            .try_into()
            .map_err(|_| malformed("IV has the wrong length"))?;
        if tag.len() != TAG_LEN {
            return Err(malformed("tag has the wrong length"));
        }
        Ok(Self {
            protected,
            wrapped,
            iv,
            ciphertext,
            tag,
        })
    }
}

/// A random CEK wrapped under `wrap_key`, then AES-256-GCM with the
/// protected header as AAD.
fn encrypt(
    protected: String,
    cipher: &'static AesBlockCipher,
    wrap_key: &[u8],
    plaintext: &[u8],
) -> Result<String, Error> {
    let rng = SystemRandom::new();
    let random = |buf: &mut [u8]| {
        rng.fill(buf).map_err(|_| Error::Sealing {
            operation: "random generation",
        })
    };
    let mut cek = Zeroizing::new([0u8; CEK_LEN]);
    random(cek.as_mut())?;
    let mut iv = [0u8; NONCE_LEN];
    random(&mut iv)?;

    let mut wrapped = [0u8; WRAPPED_CEK_LEN];
    KeyEncryptionKey::new(cipher, wrap_key)
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

fn decrypt(
    parts: &Parts<'_>,
    cipher: &'static AesBlockCipher,
    wrap_key: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut cek = Zeroizing::new([0u8; CEK_LEN]);
    let unwrapped = KeyEncryptionKey::new(cipher, wrap_key)
        .and_then(|kek| {
            kek.unwrap(&parts.wrapped, cek.as_mut())
                .map(|out| out.len())
        })
        .map_err(|_| Error::WrongPassphrase)?;
    if unwrapped != CEK_LEN {
        return Err(Error::WrongPassphrase);
    }
    let mut plaintext = Zeroizing::new(parts.ciphertext.clone());
    gcm_key(&cek)
        .and_then(|key| {
            key.open_in_place_separate_tag(
                Nonce::assume_unique_for_key(parts.iv),
                Aad::from(parts.protected.as_bytes()),
                &parts.tag,
                &mut plaintext,
            )
            .map(|_| ())
        })
        .map_err(|_| Error::SealedKeyTampered)?;
    Ok(plaintext)
}

fn header_map(protected: &str) -> Result<Map<String, Value>, Error> {
    let json = decode(protected, "header is not base64url")?;
    serde_json::from_slice(&json).map_err(|_| malformed("header is not a JSON object"))
}

fn text_field<'h>(header: &'h Map<String, Value>, field: &'static str) -> Result<&'h str, Error> {
    match header.get(field) {
        Some(Value::String(value)) => Ok(value.as_str()),
        Some(_) => Err(malformed("header field is not a string")),
        None => Err(malformed("header field missing")),
    }
}

/// `alg` and `enc` as expected, and no extension we cannot honour.
fn check_common_header(header: &Map<String, Value>, alg: &'static str) -> Result<(), Error> {
    for (field, expected) in [("alg", alg), ("enc", ENC)] {
        let value = text_field(header, field)?;
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
    Ok(())
}

/// Validates a legacy protected header; returns (salt, iterations).
fn read_header(protected: &str) -> Result<(Vec<u8>, u32), Error> {
    let header = header_map(protected)?;
    check_common_header(&header, ALG)?;
    let iterations = match header.get("p2c") {
        Some(Value::Number(n)) => n.as_u64().ok_or(Error::UnsupportedSealing {
            field: "p2c",
            value: n.to_string(),
        })?,
        Some(_) => return Err(malformed("p2c is not a number")),
        None => return Err(malformed("header field missing")),
    };
    let iterations = check_iterations(iterations)?;
    let salt = decode(text_field(&header, "p2s")?, "p2s is not base64url")?;
    if !SALT_LEN_ACCEPTED.contains(&salt.len()) {
        return Err(Error::UnsupportedSealing {
            field: "p2s",
            value: format!("{} bytes", salt.len()),
        });
    }
    Ok((salt, iterations))
}

fn derive_legacy_kek(
    passphrase: &Passphrase,
    salt: &[u8],
    iterations: u32,
) -> Zeroizing<[u8; LEGACY_KEK_LEN]> {
    // RFC 7518 §4.8.1.1: the salt input is prefixed with the algorithm name.
    let mut salt_input = Vec::with_capacity(ALG.len() + 1 + salt.len());
    salt_input.extend_from_slice(ALG.as_bytes());
    salt_input.push(0);
    salt_input.extend_from_slice(salt);
    let mut kek = Zeroizing::new([0u8; LEGACY_KEK_LEN]);
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
    fn notary_iterations_round_trip() {
        let token = seal(b"key", &pass(), NOTARY_ITERATIONS).unwrap();
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

    fn kek() -> Kek {
        Kek::derive(&pass(), &[7u8; SALT_LEN], TEST_ITERATIONS).unwrap()
    }

    #[test]
    fn kek_round_trip_and_header() {
        let kek = kek();
        let secret = b"\x30\x81\x87 some PKCS#8 bytes";
        let token = kek.seal(secret).unwrap();
        assert_eq!(kek.open(&token).unwrap().as_slice(), secret);
        assert_ne!(token, kek.seal(secret).unwrap());
        let header: Map<String, Value> = serde_json::from_slice(&parts(&token)[0]).unwrap();
        let keys: Vec<&str> = header.keys().map(String::as_str).collect();
        assert_eq!(keys, ["alg", "enc", "kid"]);
        assert_eq!(header["alg"], "A256KW");
        assert_eq!(header["enc"], "A256GCM");
        assert_eq!(header["kid"].as_str().unwrap(), kek.id());
        assert!(kek.id().starts_with(KID_PREFIX));
        // Same passphrase and salt: same KEK (a restarted process opens it).
        let again = Kek::derive(&pass(), &[7u8; SALT_LEN], TEST_ITERATIONS).unwrap();
        assert_eq!(again.open(&token).unwrap().as_slice(), secret);
        assert_eq!(
            format!("{again:?}"),
            format!("Kek {{ id: {:?}, .. }}", kek.id())
        );
    }

    #[test]
    fn kek_check_value_tells_a_wrong_passphrase() {
        let kek = kek();
        let check = kek.check_value().unwrap();
        kek.verify_check(&check).unwrap();
        let wrong =
            Kek::derive(&Passphrase::new("wrong"), &[7u8; SALT_LEN], TEST_ITERATIONS).unwrap();
        // Same salt, so the same kid: only the unwrap can tell.
        assert_eq!(wrong.id(), kek.id());
        assert!(matches!(
            wrong.verify_check(&check),
            Err(Error::WrongPassphrase)
        ));
        // A token for another KEK (other salt) is named as such.
        let other = Kek::derive(&pass(), &[8u8; SALT_LEN], TEST_ITERATIONS).unwrap();
        assert!(matches!(other.open(&check), Err(Error::UnknownKek { .. })));
        assert!(matches!(
            Kek::derive(&pass(), &[1u8; 4], TEST_ITERATIONS),
            Err(Error::UnsupportedSealing { field: "salt", .. })
        ));
    }

    #[test]
    fn open_any_opens_both_forms() {
        let kek = kek();
        let new = kek.seal(b"new").unwrap();
        let legacy = seal(b"legacy", &pass(), TEST_ITERATIONS).unwrap();
        assert_eq!(open_any(&new, &kek, &pass()).unwrap().as_slice(), b"new");
        assert_eq!(
            open_any(&legacy, &kek, &pass()).unwrap().as_slice(),
            b"legacy"
        );
        // The legacy opener does not take KEK tokens.
        assert!(matches!(
            open(&new, &pass()),
            Err(Error::UnsupportedSealing { field: "alg", .. })
        ));
        // Tampering a KEK token's ciphertext is caught by the tag.
        let mut ciphertext = parts(&new)[3].clone();
        ciphertext[0] ^= 1;
        assert!(matches!(
            kek.open(&with_part(&new, 3, &ciphertext)),
            Err(Error::SealedKeyTampered)
        ));
    }

    #[test]
    fn passphrase_debug_is_redacted() {
        let shown = format!("{:?}", pass());
        assert_eq!(shown, "Passphrase(****)");
        assert!(!shown.contains("horse"));
    }
}

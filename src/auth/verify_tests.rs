//! Every way a token can be refused, with tokens minted here: keys from
//! aws-lc-rs, certificates from rcgen.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, RsaKeyPair};
use aws_lc_rs::{hmac, signature as sig};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, PublicKeyData};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::*;
use crate::auth::scope::{ALL, PULL, PUSH_PULL};
use crate::auth::{Authenticator, Error, Expectations, Required};

const ISSUER: &str = "auth.example.com";
const SERVICE: &str = "notary.example.com";
const GUN: &str = "docker.io/library/alpine";

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn unix_now() -> i64 {
    now().unix_timestamp()
}

/// A key that signs tokens, and its certificate.
struct Signer {
    rcgen_key: KeyPair,
    cert: rcgen::Certificate,
    alg: &'static str,
}

#[derive(Clone, Copy)]
enum Kind {
    P256,
    P384,
    Rsa,
}

fn rcgen_alg(kind: &Kind) -> &'static rcgen::SignatureAlgorithm {
    match kind {
        Kind::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        Kind::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        Kind::Rsa => &rcgen::PKCS_RSA_SHA256,
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
}

impl Signer {
    /// A self-signed certificate (the usual token-server setup: the
    /// bundle holds the signing certificate itself).
    fn self_signed(kind: Kind) -> Self {
        let rcgen_key = KeyPair::generate_for(rcgen_alg(&kind)).unwrap();
        let cert = ca_params("token signer").self_signed(&rcgen_key).unwrap();
        Self::new(kind, rcgen_key, cert)
    }

    /// A CA and a leaf it issued.
    fn issued(kind: Kind, ca_name: &str) -> (Self, Self) {
        let ca = Self::self_signed_named(Kind::P256, ca_name);
        let rcgen_key = KeyPair::generate_for(rcgen_alg(&kind)).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "token leaf");
        let issuer = rcgen::Issuer::new(ca_params(ca_name), &ca.rcgen_key);
        let cert = params.signed_by(&rcgen_key, &issuer).unwrap();
        (ca, Self::new(kind, rcgen_key, cert))
    }

    fn self_signed_named(kind: Kind, name: &str) -> Self {
        let rcgen_key = KeyPair::generate_for(rcgen_alg(&kind)).unwrap();
        let cert = ca_params(name).self_signed(&rcgen_key).unwrap();
        Self::new(kind, rcgen_key, cert)
    }

    fn new(kind: Kind, rcgen_key: KeyPair, cert: rcgen::Certificate) -> Self {
        let alg = match kind {
            Kind::P256 => "ES256",
            Kind::P384 => "ES384",
            Kind::Rsa => "RS256",
        };
        Self {
            rcgen_key,
            cert,
            alg,
        }
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let pkcs8 = self.rcgen_key.serialize_der();
        let rng = SystemRandom::new();
        let ec = |alg| {
            EcdsaKeyPair::from_pkcs8(alg, &pkcs8)
                .unwrap()
                .sign(&rng, message)
                .unwrap()
                .as_ref()
                .to_vec()
        };
        match self.alg {
            "ES256" => ec(&sig::ECDSA_P256_SHA256_FIXED_SIGNING),
            "ES384" => ec(&sig::ECDSA_P384_SHA384_FIXED_SIGNING),
            _ => {
                let key = RsaKeyPair::from_pkcs8(&pkcs8).unwrap();
                let mut out = vec![0; key.public_modulus_len()];
                key.sign(&sig::RSA_PKCS1_SHA256, &rng, message, &mut out)
                    .unwrap();
                out
            }
        }
    }

    fn material(&self) -> KeyMaterial {
        let cert: x509_cert::Certificate = der::Decode::from_der(self.cert.der()).unwrap();
        let spki = der::Encode::to_der(cert.tbs_certificate().subject_public_key_info()).unwrap();
        KeyMaterial::from_spki(&spki).unwrap()
    }

    fn x5c(&self) -> String {
        STANDARD.encode(self.cert.der())
    }

    fn jwk(&self) -> Value {
        match self.material() {
            KeyMaterial::Ec { point, .. } => {
                let half = (point.len() - 1) / 2;
                json!({
                    "kty": "EC",
                    "crv": if half == 32 { "P-256" } else { "P-384" },
                    "x": URL_SAFE_NO_PAD.encode(&point[1..=half]),
                    "y": URL_SAFE_NO_PAD.encode(&point[1 + half..]),
                })
            }
            KeyMaterial::Rsa { n, e } => json!({
                "kty": "RSA",
                "n": URL_SAFE_NO_PAD.encode(n),
                "e": URL_SAFE_NO_PAD.encode(e),
            }),
        }
    }

    /// A token with `header` (its `alg` set) and `claims`.
    fn token(&self, mut header: Value, claims: &Value) -> String {
        if header.get("alg").is_none() {
            header["alg"] = json!(self.alg);
        }
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

fn claims_with(access: &Value) -> Value {
    json!({
        "iss": ISSUER,
        "sub": "alice",
        "aud": SERVICE,
        "exp": unix_now() + 300,
        "nbf": unix_now() - 10,
        "iat": unix_now() - 10,
        "jti": "abc",
        "access": access,
    })
}

fn claims() -> Value {
    claims_with(&json!([{"type": "repository", "name": GUN, "actions": ["push", "pull"]}]))
}

fn trusting(bundle: &[&Signer]) -> Verifier {
    let pem: String = bundle.iter().map(|s| s.cert.pem()).collect();
    Verifier::new(
        TrustBundle::from_pem(pem.as_bytes()).unwrap(),
        Expectations {
            issuer: ISSUER.into(),
            service: SERVICE.into(),
        },
    )
}

fn chain_header(chain: &[&Signer]) -> Value {
    json!({"typ": "JWT", "x5c": chain.iter().map(|s| s.x5c()).collect::<Vec<_>>()})
}

#[test]
fn a_valid_chained_token_grants_its_access() {
    let (ca, leaf) = Signer::issued(Kind::P256, "token CA");
    let verifier = trusting(&[&ca]);
    let token = leaf.token(chain_header(&[&leaf]), &claims());
    let verified = verifier.verify(&token, now()).unwrap();
    assert_eq!(verified.subject, "alice");
    assert!(
        verified
            .grants
            .allows(&Required::repository(GUN, PUSH_PULL))
    );
    assert!(verified.grants.allows(&Required::repository(GUN, PULL)));
    // Wrong GUN, missing action.
    assert!(
        !verified
            .grants
            .allows(&Required::repository("docker.io/library/alpine2", PULL))
    );
    assert!(!verified.grants.allows(&Required::repository(GUN, ALL)));
    assert!(!verified.grants.allows(&Required::catalog()));
}

#[test]
fn star_grants_the_admin_operations() {
    let signer = Signer::self_signed(Kind::P256);
    let verifier = trusting(&[&signer]);
    let claims = claims_with(&json!([{"type": "repository", "name": GUN, "actions": ["*"]}]));
    let token = signer.token(chain_header(&[&signer]), &claims);
    let grants = verifier.verify(&token, now()).unwrap().grants;
    assert!(grants.allows(&Required::repository(GUN, ALL)));
    assert!(grants.allows(&Required::repository(GUN, PUSH_PULL)));
    // Only pull: neither push nor `*`.
    let pull = claims_with(&json!([{"type": "repository", "name": GUN, "actions": ["pull"]}]));
    let grants = verifier
        .verify(&signer.token(chain_header(&[&signer]), &pull), now())
        .unwrap()
        .grants;
    assert!(!grants.allows(&Required::repository(GUN, PUSH_PULL)));
}

#[test]
fn time_issuer_and_audience_are_checked() {
    let signer = Signer::self_signed(Kind::P256);
    let verifier = trusting(&[&signer]);
    let header = chain_header(&[&signer]);
    let with = |key: &str, value: Value| {
        let mut claims = claims();
        claims[key] = value;
        signer.token(header.clone(), &claims)
    };
    let expired = with("exp", json!(unix_now() - 61));
    assert!(matches!(
        verifier.verify(&expired, now()),
        Err(Error::Expired { .. })
    ));
    // Inside the 60 s leeway.
    verifier
        .verify(&with("exp", json!(unix_now() - 30)), now())
        .unwrap();
    assert!(matches!(
        verifier.verify(&with("nbf", json!(unix_now() + 120)), now()),
        Err(Error::NotYetValid { .. })
    ));
    assert_eq!(
        verifier.verify(&with("iss", json!("evil.example.com")), now()),
        Err(Error::UntrustedIssuer)
    );
    assert_eq!(
        verifier.verify(&with("aud", json!("registry.example.com")), now()),
        Err(Error::WrongAudience)
    );
    verifier
        .verify(&with("aud", json!([SERVICE])), now())
        .unwrap();
    assert_eq!(
        verifier.verify(
            &with("aud", json!([SERVICE, "registry.example.com"])),
            now()
        ),
        Err(Error::WrongAudience)
    );
}

#[test]
fn an_untrusted_signer_is_refused() {
    let (ca, _) = Signer::issued(Kind::P256, "token CA");
    // Same CA name, other key: the chain must not verify.
    let (_, impostor_leaf) = Signer::issued(Kind::P256, "token CA");
    let verifier = trusting(&[&ca]);
    let token = impostor_leaf.token(chain_header(&[&impostor_leaf]), &claims());
    assert_eq!(
        verifier.verify(&token, now()),
        Err(Error::UntrustedChain {
            problem: ChainProblem::NoPathToRoot
        })
    );
    let stranger = Signer::self_signed(Kind::P256);
    let kid = stranger.material().libtrust_id();
    let token = stranger.token(json!({"kid": kid}), &claims());
    assert_eq!(verifier.verify(&token, now()), Err(Error::UntrustedKey));
    let token = stranger.token(json!({"jwk": stranger.jwk()}), &claims());
    assert_eq!(verifier.verify(&token, now()), Err(Error::UntrustedKey));
    let token = stranger.token(json!({}), &claims());
    assert_eq!(verifier.verify(&token, now()), Err(Error::NoSigningKey));
}

#[test]
fn intermediates_in_x5c_lead_to_the_root() {
    let root = Signer::self_signed_named(Kind::P256, "root");
    let intermediate_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let intermediate_cert = ca_params("intermediate")
        .signed_by(
            &intermediate_key,
            &rcgen::Issuer::new(ca_params("root"), &root.rcgen_key),
        )
        .unwrap();
    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut leaf_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "leaf");
    let leaf_cert = leaf_params
        .signed_by(
            &leaf_key,
            &rcgen::Issuer::new(ca_params("intermediate"), &intermediate_key),
        )
        .unwrap();
    let intermediate = Signer::new(Kind::P256, intermediate_key, intermediate_cert);
    let leaf = Signer::new(Kind::P256, leaf_key, leaf_cert);
    let verifier = trusting(&[&root]);
    let token = leaf.token(chain_header(&[&leaf, &intermediate]), &claims());
    verifier.verify(&token, now()).unwrap();
    // Without the intermediate there is no path.
    let token = leaf.token(chain_header(&[&leaf]), &claims());
    assert!(matches!(
        verifier.verify(&token, now()),
        Err(Error::UntrustedChain { .. })
    ));
}

#[test]
fn an_expired_signing_certificate_is_refused() {
    let rcgen_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = ca_params("old signer");
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let cert = params.self_signed(&rcgen_key).unwrap();
    let signer = Signer::new(Kind::P256, rcgen_key, cert);
    let verifier = trusting(&[&signer]);
    let token = signer.token(chain_header(&[&signer]), &claims());
    assert_eq!(
        verifier.verify(&token, now()),
        Err(Error::UntrustedChain {
            problem: ChainProblem::LeafNotValidNow
        })
    );
}

#[test]
fn kid_alone_names_a_bundle_key_by_libtrust_id_or_thumbprint() {
    let signer = Signer::self_signed(Kind::P256);
    let verifier = trusting(&[&signer]);
    let material = signer.material();
    let libtrust_id = material.libtrust_id();
    assert_eq!(libtrust_id.split(':').count(), 12);
    for kid in [libtrust_id, material.thumbprint()] {
        let token = signer.token(json!({"kid": kid}), &claims());
        verifier.verify(&token, now()).unwrap();
    }
}

#[test]
fn jwk_alone_must_be_a_bundle_key_or_carry_a_matching_chain() {
    let signer = Signer::self_signed(Kind::P256);
    let verifier = trusting(&[&signer]);
    let token = signer.token(json!({"jwk": signer.jwk()}), &claims());
    verifier.verify(&token, now()).unwrap();

    // A JWK with a kid that names it.
    let mut jwk = signer.jwk();
    jwk["kid"] = json!(signer.material().libtrust_id());
    verifier
        .verify(&signer.token(json!({"jwk": jwk}), &claims()), now())
        .unwrap();
    jwk["kid"] = json!("AAAA:BBBB");
    assert_eq!(
        verifier.verify(&signer.token(json!({"jwk": jwk}), &claims()), now()),
        Err(Error::JwkMismatch)
    );

    // A JWK with an x5c chain to the bundle.
    let (ca, leaf) = Signer::issued(Kind::P256, "token CA");
    let verifier = trusting(&[&ca]);
    let mut jwk = leaf.jwk();
    jwk["x5c"] = json!([leaf.x5c()]);
    verifier
        .verify(&leaf.token(json!({"jwk": jwk}), &claims()), now())
        .unwrap();
    // The chain is fine but the JWK is another key.
    let other = Signer::self_signed(Kind::P256);
    let mut jwk = other.jwk();
    jwk["x5c"] = json!([leaf.x5c()]);
    assert_eq!(
        verifier.verify(&other.token(json!({"jwk": jwk}), &claims()), now()),
        Err(Error::JwkMismatch)
    );
}

#[test]
fn alg_none_and_hmac_are_refused() {
    let signer = Signer::self_signed(Kind::P256);
    let verifier = trusting(&[&signer]);
    let kid = signer.material().libtrust_id();
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": kid}).to_string());
    let body = URL_SAFE_NO_PAD.encode(claims().to_string());
    for token in [format!("{header}.{body}."), format!("{header}.{body}.AAAA")] {
        assert_eq!(
            verifier.verify(&token, now()),
            Err(Error::UnsupportedAlgorithm { alg: "none".into() })
        );
    }
    // The classic confusion: HS256 keyed with the (public) certificate.
    for secret in [signer.cert.pem().into_bytes(), signer.cert.der().to_vec()] {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "kid": kid}).to_string());
        let input = format!("{header}.{body}");
        let mac = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &secret),
            input.as_bytes(),
        );
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
        assert_eq!(
            verifier.verify(&token, now()),
            Err(Error::UnsupportedAlgorithm {
                alg: "HS256".into()
            })
        );
    }
    for alg in ["PS256", "EdDSA", "es256", ""] {
        let token = signer.token(json!({"alg": alg, "kid": kid}), &claims());
        assert!(
            matches!(
                verifier.verify(&token, now()),
                Err(Error::UnsupportedAlgorithm { .. })
            ),
            "{alg}"
        );
    }
}

#[test]
fn truncated_empty_and_tampered_signatures_fail() {
    let signer = Signer::self_signed(Kind::P256);
    let verifier = trusting(&[&signer]);
    let token = signer.token(chain_header(&[&signer]), &claims());
    let (input, signature) = token.rsplit_once('.').unwrap();
    let raw = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let truncated = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&raw[..raw.len() - 1]));
    assert_eq!(verifier.verify(&truncated, now()), Err(Error::BadSignature));
    assert_eq!(
        verifier.verify(&format!("{input}."), now()),
        Err(Error::EmptySignature)
    );
    // Claims swapped for others: the signature no longer matches.
    let (header, _) = input.split_once('.').unwrap();
    let mut other = claims();
    other["sub"] = json!("mallory");
    let forged = format!(
        "{header}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(other.to_string())
    );
    assert_eq!(verifier.verify(&forged, now()), Err(Error::BadSignature));
    for garbage in [
        "",
        "a.b",
        "a.b.c.d",
        "!!.!!.!!",
        &"a".repeat(MAX_TOKEN_BYTES + 1),
    ] {
        assert!(
            matches!(
                verifier.verify(garbage, now()),
                Err(Error::Malformed { .. })
            ),
            "{garbage:.20}"
        );
    }
}

#[test]
fn the_curve_must_match_the_algorithm() {
    let signer = Signer::self_signed(Kind::P384);
    let verifier = trusting(&[&signer]);
    // A P-384 key claiming ES256.
    let token = signer.token(json!({"alg": "ES256", "x5c": [signer.x5c()]}), &claims());
    assert_eq!(
        verifier.verify(&token, now()),
        Err(Error::KeyDoesNotSuitAlgorithm { alg: "ES256" })
    );
    // An EC key claiming RS256.
    let token = signer.token(json!({"alg": "RS256", "x5c": [signer.x5c()]}), &claims());
    assert_eq!(
        verifier.verify(&token, now()),
        Err(Error::KeyDoesNotSuitAlgorithm { alg: "RS256" })
    );
    // And its own algorithm works.
    let token = signer.token(chain_header(&[&signer]), &claims());
    verifier.verify(&token, now()).unwrap();
}

#[test]
fn rs256_tokens_verify() {
    let signer = Signer::self_signed(Kind::Rsa);
    let verifier = trusting(&[&signer]);
    for header in [
        chain_header(&[&signer]),
        json!({"kid": signer.material().libtrust_id()}),
        json!({"kid": signer.material().thumbprint()}),
        json!({"jwk": signer.jwk()}),
    ] {
        let token = signer.token(header.clone(), &claims());
        assert_eq!(
            verifier.verify(&token, now()).map(|v| v.subject),
            Ok("alice".to_string()),
            "{header}"
        );
    }
    let token = signer.token(json!({"alg": "ES256", "x5c": [signer.x5c()]}), &claims());
    assert_eq!(
        verifier.verify(&token, now()),
        Err(Error::KeyDoesNotSuitAlgorithm { alg: "ES256" })
    );
}

#[test]
fn keys_re_encode_to_the_certificates_spki() {
    // libtrust IDs hash Go's MarshalPKIXPublicKey; ours must be the same DER.
    for kind in [Kind::P256, Kind::P384, Kind::Rsa] {
        let signer = Signer::self_signed(kind);
        let cert: x509_cert::Certificate = der::Decode::from_der(signer.cert.der()).unwrap();
        let spki = der::Encode::to_der(cert.tbs_certificate().subject_public_key_info()).unwrap();
        let material = KeyMaterial::from_spki(&spki).unwrap();
        assert_eq!(material.spki_der(), spki);
        assert_eq!(KeyMaterial::from_jwk(&signer.jwk()).unwrap(), material);
        let public = signer.rcgen_key.subject_public_key_info();
        assert_eq!(public, spki);
    }
}

#[test]
fn bundles_need_certificates_with_usable_keys() {
    assert_eq!(
        TrustBundle::from_pem(b"no pem here").map(|b| b.len()),
        Err(Error::EmptyBundle)
    );
    let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert_eq!(
        TrustBundle::from_pem(bad.as_bytes()).map(|b| b.len()),
        Err(Error::BundleCertificate { index: 0 })
    );
    let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cert = ca_params("ed").self_signed(&ed).unwrap();
    assert_eq!(
        TrustBundle::from_pem(cert.pem().as_bytes()).map(|b| b.len()),
        Err(Error::BundleKey { index: 0 })
    );
}

#[test]
fn the_cache_serves_repeats_and_never_revives_expired_tokens() {
    let signer = Signer::self_signed(Kind::P256);
    let auth = Authenticator::new(trusting(&[&signer]), 16);
    let mut claims = claims();
    claims["exp"] = json!(unix_now() + 5);
    let token = signer.token(chain_header(&[&signer]), &claims);
    auth.verify(&token, now()).unwrap();
    auth.verify(&token, now()).unwrap();
    let later = now() + time::Duration::seconds(5 + 61);
    assert!(matches!(
        auth.verify(&token, later),
        Err(Error::Expired { .. })
    ));
}

/// A certificate and the libtrust key ID notary-server 0.7 accepted as `kid`
/// for it (a token signed by this key with only this `kid` got past its
/// auth, one with another `kid` got 401).
#[test]
fn libtrust_key_id_matches_notary_server() {
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBgTCCASegAwIBAgIUOfott+j8Q00ihRasFBitZhSqSjowCgYIKoZIzj0EAwIw
FjEUMBIGA1UEAwwLdG9rZW5zaWduZXIwHhcNMjYxMTI4MTczODI0WhcNMzYxMTI1
MTczODI0WjAWMRQwEgYDVQQDDAt0b2tlbnNpZ25lcjBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABPyBplPp7mGiQStuDxtOyXuDQNYxvBPwiWCSt33p9a37zIAh+gOd
UoSPN/0k1fWP2++48c5gyOkyLWx0PmolZJ6jUzBRMB0GA1UdDgQWBBRFrWhoSH65
VANZcNbIRTMPlm0ahjAfBgNVHSMEGDAWgBRFrWhoSH65VANZcNbIRTMPlm0ahjAP
BgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQCylFjmsYk1PHBFde8Y
IrkKoSrTH72MU2ggnBG6SNAL1gIgLprUaZI9LswFEkTyKd4XsBeWI7m+haBgqrQp
1SbWNfE=
-----END CERTIFICATE-----
";
    let bundle = TrustBundle::from_pem(CERT.as_bytes()).unwrap();
    assert_eq!(
        bundle.by_kid("Y26O:JYXN:ENXJ:43R3:CXQZ:RLKI:4R56:LMUH:C6LE:YXWM:CGPZ:U7SY"),
        bundle.keys.first().map(|key| &key.material)
    );
    assert!(
        bundle
            .by_kid("AAAA:JYXN:ENXJ:43R3:CXQZ:RLKI:4R56:LMUH:C6LE:YXWM:CGPZ:U7SY")
            .is_none()
    );
}

/// Intermediates that all verify each other (same name, same key) must not
/// make the path search explode: each is tried once, and the chain is
/// refused for leading nowhere.
#[test]
fn cross_signing_intermediates_are_searched_once() {
    let root = Signer::self_signed_named(Kind::P256, "real root");
    let verifier = trusting(&[&root]);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let loops: Vec<Signer> = (0..MAX_CHAIN_CERTIFICATES - 1)
        .map(|serial| {
            let mut params = ca_params("loop");
            params.serial_number = Some(rcgen::SerialNumber::from(serial as u64 + 1));
            let cert = params.self_signed(&key).unwrap();
            let key = KeyPair::from_pem(&key.serialize_pem()).unwrap();
            Signer::new(Kind::P256, key, cert)
        })
        .collect();
    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, "leaf");
    let leaf_cert = params
        .signed_by(&leaf_key, &rcgen::Issuer::new(ca_params("loop"), &key))
        .unwrap();
    let leaf = Signer::new(Kind::P256, leaf_key, leaf_cert);
    let mut chain: Vec<&Signer> = vec![&leaf];
    chain.extend(loops.iter());
    let token = leaf.token(chain_header(&chain), &claims());
    assert_eq!(
        verifier.verify(&token, now()),
        Err(Error::UntrustedChain {
            problem: ChainProblem::NoPathToRoot
        })
    );
    // One more certificate is over the limit.
    chain.push(&root);
    let token = leaf.token(chain_header(&chain), &claims());
    assert_eq!(
        verifier.verify(&token, now()),
        Err(Error::UntrustedChain {
            problem: ChainProblem::TooLong
        })
    );
}

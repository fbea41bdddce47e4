#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! End to end with a real Docker engine: Docker Content Trust (PROTOCOL.md
//! §9.4–§9.6) against a real `notarium serve`, images in a real registry.
//!
//! Each test starts its own notarium, its own registry (Debian's
//! `docker-registry`, distribution 2.8, plain HTTP on 127.0.0.1:PORT, which
//! the engine treats as insecure) and a docker CLI user with a private
//! `DOCKER_CONFIG` whose content trust server is notarium (see
//! `support/dockercli.rs`). Images are tiny `docker import`s of a tar of a
//! few files; every test removes its images from the engine at the end.
//!
//! The messages asserted here are the ones docker CLI 28.2.2 prints with a
//! 20.10 engine.

mod common;
use common::{sha256_hex, stderr, stdout};
#[path = "support/dockercli.rs"]
mod dockercli;
#[path = "support/registry.rs"]
mod registry;

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use common::Notarium;
use dockercli::DockerCli;
use registry::Registry;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A notarium, a registry and a docker user. (Fields drop in order: images
/// are removed first, the directory goes last.)
struct Setup {
    docker: DockerCli,
    registry: Registry,
    notarium: Notarium,
    tmp: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let notarium = Notarium::start(&tmp.path().join("notarium"), json!({}));
        let registry = Registry::start(&tmp.path().join("registry"));
        let docker = DockerCli::new(&tmp.path().join("docker"), &notarium);
        Self {
            docker,
            registry,
            notarium,
            tmp,
        }
    }

    /// The GUN (= fully qualified repository name) of `path` in the registry.
    fn gun(&self, path: &str) -> String {
        format!("{}/{path}", self.registry.host())
    }

    /// Another docker user (empty trust dir) on the same engine.
    fn other_user(&self, name: &str) -> DockerCli {
        DockerCli::new(&self.tmp.path().join(name), &self.notarium)
    }

    /// GET a metadata file from notarium; must be 200. Returns the raw bytes
    /// and the parsed JSON.
    fn tuf_raw(&self, gun: &str, file: &str) -> (Vec<u8>, Value) {
        let (status, body) = self
            .notarium
            .curl()
            .get(&format!("/v2/{gun}/_trust/tuf/{file}"));
        assert_eq!(status, 200, "{file}: {}", String::from_utf8_lossy(&body));
        let value = serde_json::from_slice(&body).unwrap();
        (body, value)
    }

    fn tuf(&self, gun: &str, file: &str) -> Value {
        self.tuf_raw(gun, file).1
    }

    /// Notarium answered no request with a 5xx.
    fn assert_no_server_errors(&self) {
        let log = self.notarium.log();
        let errors: Vec<&str> = log.lines().filter(|l| l.contains(" status=5")).collect();
        assert!(errors.is_empty(), "server errors:\n{}", errors.join("\n"));
    }
}

/// What the daemon reported for a pushed tag.
#[derive(Debug, Clone, PartialEq)]
struct Pushed {
    /// Hex of the manifest's sha256.
    digest: String,
    size: u64,
}

/// Parses `TAG: digest: sha256:HEX size: N` from `docker push` output.
fn pushed_line(out: &str, tag: &str) -> Pushed {
    let prefix = format!("{tag}: digest: sha256:");
    let line = out
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}…` line in:\n{out}"));
    let (digest, size) = line[prefix.len()..].split_once(" size: ").unwrap();
    assert_eq!(digest.len(), 64, "{line}");
    Pushed {
        digest: digest.to_string(),
        size: size.parse().unwrap(),
    }
}

/// The lines of `out` after the `TAG: digest: …` line.
fn lines_after_digest<'a>(out: &'a str, tag: &str) -> Vec<&'a str> {
    let prefix = format!("{tag}: digest: sha256:");
    out.lines()
        .skip_while(|l| !l.starts_with(&prefix))
        .skip(1)
        .collect()
}

/// `DOCKER_CONTENT_TRUST=1 docker push GUN:TAG`: must succeed, print the
/// trust lines (plus `Finished initializing` for a new repository) and
/// nothing on stderr.
fn signed_push(docker: &DockerCli, gun: &str, tag: &str, new_repository: bool) -> Pushed {
    let reference = format!("{gun}:{tag}");
    let output = docker.run_trusted(&["push", &reference]);
    assert!(output.status.success(), "signed push of {reference} failed");
    let out = stdout(&output);
    assert!(
        out.starts_with(&format!("The push refers to repository [{gun}]\n")),
        "{out}"
    );
    let pushed = pushed_line(&out, tag);
    let mut expected = vec!["Signing and pushing trust metadata".to_string()];
    if new_repository {
        expected.push(format!("Finished initializing \"{gun}\""));
    }
    expected.push(format!("Successfully signed {reference}"));
    assert_eq!(lines_after_digest(&out, tag), expected, "{out}");
    assert_eq!(stderr(&output), "", "no prompt or warning expected");
    pushed
}

/// `docker push GUN:TAG` without content trust.
fn plain_push(docker: &DockerCli, gun: &str, tag: &str) -> Pushed {
    let out = docker.ok(&["push", &format!("{gun}:{tag}")]);
    assert!(
        !out.contains("Signing"),
        "push without content trust signed:\n{out}"
    );
    assert_eq!(lines_after_digest(&out, tag), Vec::<&str>::new(), "{out}");
    pushed_line(&out, tag)
}

/// `DOCKER_CONTENT_TRUST=1 docker pull GUN:TAG` of a local-absent image:
/// must resolve the tag through notarium to `expected` and pull by digest.
fn verified_pull(docker: &DockerCli, gun: &str, tag: &str, expected: &Pushed) {
    let reference = format!("{gun}:{tag}");
    let output = docker.run_trusted(&["pull", &reference]);
    assert!(
        output.status.success(),
        "verified pull of {reference} failed"
    );
    let out = stdout(&output);
    let by_digest = format!("{gun}@sha256:{}", expected.digest);
    assert_eq!(
        out.lines().next(),
        Some(format!("Pull (1 of 1): {reference}@sha256:{}", expected.digest).as_str()),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l == format!("{by_digest}: Pulling from {}", path_of(gun))),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l == format!("Digest: sha256:{}", expected.digest)),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l == format!("Status: Downloaded newer image for {by_digest}")),
        "the image was not pulled (was it still local?):\n{out}"
    );
    assert_eq!(
        stderr(&output).trim_end(),
        format!("Tagging {by_digest} as {reference}")
    );
    assert!(
        docker.repo_digests(&reference).contains(&by_digest),
        "{reference} does not carry {by_digest}"
    );
}

/// `team/app` of `127.0.0.1:PORT/team/app`.
fn path_of(gun: &str) -> &str {
    gun.split_once('/').unwrap().1
}

/// `targets` of a targets/delegation file: tag -> (sha256 hex, length).
/// Every target has exactly a sha256 hash and no `custom`, as docker writes.
fn signed_tags(file: &Value) -> BTreeMap<String, Pushed> {
    file["signed"]["targets"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(tag, meta)| {
            let hashes = meta["hashes"].as_object().unwrap();
            assert_eq!(hashes.len(), 1, "{meta}");
            assert!(meta.get("custom").is_none(), "{meta}");
            let digest = base64::engine::general_purpose::STANDARD
                .decode(hashes["sha256"].as_str().unwrap())
                .unwrap();
            (
                tag.clone(),
                Pushed {
                    digest: hex::encode(digest),
                    size: meta["length"].as_u64().unwrap(),
                },
            )
        })
        .collect()
}

fn tags(entries: &[(&str, &Pushed)]) -> BTreeMap<String, Pushed> {
    entries
        .iter()
        .map(|(tag, pushed)| ((*tag).to_string(), (*pushed).clone()))
        .collect()
}

fn version(file: &Value) -> i64 {
    file["signed"]["version"].as_i64().unwrap()
}

fn signature_key_ids(file: &Value) -> Vec<String> {
    file["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["keyid"].as_str().unwrap().to_string())
        .collect()
}

fn role_key_ids(root: &Value, role: &str) -> Vec<String> {
    root["signed"]["roles"][role]["keyids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// The key ID notary gives a public key: SHA-256 of the canonical JSON of
/// `{"keytype", "keyval": {"private": null, "public"}}` (PROTOCOL.md §4.4),
/// built by hand for this fixed shape.
fn key_id(key: &Value) -> String {
    assert!(key["keyval"]["private"].is_null(), "{key}");
    let keytype = key["keytype"].as_str().unwrap();
    let public = key["keyval"]["public"].as_str().unwrap();
    assert!(
        public
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
    );
    sha256_hex(
        format!(r#"{{"keytype":"{keytype}","keyval":{{"private":null,"public":"{public}"}}}}"#)
            .as_bytes(),
    )
}

/// A private key in a trust dir: (key ID = file stem, `role:` header,
/// `gun:` header).
#[derive(Debug, PartialEq)]
struct PrivateKey {
    id: String,
    role: String,
    gun: Option<String>,
}

fn private_keys(trust_dir: &Path) -> Vec<PrivateKey> {
    let mut keys: Vec<PrivateKey> = std::fs::read_dir(trust_dir.join("private"))
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"),
                "{}: {text}",
                path.display()
            );
            let header = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .map(str::to_string)
            };
            PrivateKey {
                id: path.file_stem().unwrap().to_str().unwrap().to_string(),
                role: header("role").unwrap(),
                gun: header("gun"),
            }
        })
        .collect();
    keys.sort_by(|a, b| a.role.cmp(&b.role));
    keys
}

/// `docker trust inspect GUN` (JSON); returns the only element.
fn inspect(docker: &DockerCli, gun: &str) -> Value {
    let out = docker.ok(&["trust", "inspect", gun]);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{out}");
    assert_eq!(list[0]["Name"], gun);
    list[0].clone()
}

// ---------------------------------------------------------------------------
// 1. Signed push of a new repository, verified pull by digest
// ---------------------------------------------------------------------------

#[test]
fn signed_push_initialises_trust_data_and_verified_pull_gets_the_signed_digest() {
    let setup = Setup::new();
    let docker = &setup.docker;
    let gun = setup.gun("team/app");
    let reference = format!("{gun}:1.0");
    let image = docker.make_image(&reference, "first image");

    // Output (stdout, stderr empty):
    //   The push refers to repository [GUN]
    //   …
    //   1.0: digest: sha256:HEX size: N
    //   Signing and pushing trust metadata
    //   Finished initializing "GUN"
    //   Successfully signed GUN:1.0
    let pushed = signed_push(docker, &gun, "1.0", true);
    assert_eq!(
        setup.registry.manifest_digest("team/app", "1.0"),
        Some(format!("sha256:{}", pushed.digest))
    );

    // Keys: docker created the root key and the repository (targets) key
    // locally; snapshot and timestamp are the server's.
    let keys = private_keys(&docker.trust_dir());
    assert_eq!(
        keys.iter()
            .map(|k| (k.role.as_str(), k.gun.as_deref()))
            .collect::<Vec<_>>(),
        vec![("root", None), ("targets", Some(gun.as_str()))],
        "{keys:?}"
    );
    let targets_key = &keys[1].id;

    let root = setup.tuf(&gun, "root.json");
    assert_eq!(version(&root), 1);
    assert_eq!(role_key_ids(&root, "targets"), vec![targets_key.clone()]);
    for role in ["snapshot", "timestamp"] {
        let server_key = setup.tuf(&gun, &format!("{role}.key"));
        assert_eq!(
            role_key_ids(&root, role),
            vec![key_id(&server_key)],
            "{role} is not server-managed"
        );
    }

    // targets.json lists exactly the tag with the digest and size the
    // daemon printed, signed by the repository key.
    let (targets_bytes, targets) = setup.tuf_raw(&gun, "targets.json");
    assert_eq!(signed_tags(&targets), tags(&[("1.0", &pushed)]));
    assert_eq!(signature_key_ids(&targets), vec![targets_key.clone()]);
    assert_eq!(targets["signed"]["delegations"]["roles"], json!([]));

    // The snapshot notarium made covers that targets.json.
    let snapshot = setup.tuf(&gun, "snapshot.json");
    assert_eq!(
        signature_key_ids(&snapshot),
        role_key_ids(&root, "snapshot")
    );
    let targets_hash = base64::engine::general_purpose::STANDARD
        .decode(
            snapshot["signed"]["meta"]["targets"]["hashes"]["sha256"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(hex::encode(targets_hash), sha256_hex(&targets_bytes));

    // Remove the local image, pull with content trust: docker asks notarium
    // for the tag, then pulls by digest and tags.
    //   stdout: Pull (1 of 1): GUN:1.0@sha256:HEX  …
    //   stderr: Tagging GUN@sha256:HEX as GUN:1.0
    docker.ok(&["rmi", &reference]);
    assert_eq!(docker.image_id(&reference), None);
    verified_pull(docker, &gun, "1.0", &pushed);
    assert_eq!(docker.image_id(&reference), Some(image));

    setup.assert_no_server_errors();
    docker.remove_images();
}

// ---------------------------------------------------------------------------
// 2. docker trust inspect, docker trust sign of a new local tag
// ---------------------------------------------------------------------------

#[test]
fn trust_inspect_shows_the_signed_tag_and_trust_sign_pushes_and_signs_a_new_tag() {
    let setup = Setup::new();
    let docker = &setup.docker;
    let gun = setup.gun("team/inspect");
    docker.make_image(&format!("{gun}:1.0"), "release one");
    let first = signed_push(docker, &gun, "1.0", true);
    let targets_key = private_keys(&docker.trust_dir())
        .into_iter()
        .find(|k| k.role == "targets")
        .unwrap()
        .id;

    let inspected = inspect(docker, &gun);
    assert_eq!(
        inspected["SignedTags"],
        json!([{"SignedTag": "1.0", "Digest": first.digest, "Signers": ["Repo Admin"]}])
    );
    assert_eq!(inspected["Signers"], json!([]));
    let admin = &inspected["AdministrativeKeys"];
    assert_eq!(admin[0]["Name"], "Root");
    assert_eq!(admin[1]["Name"], "Repository");
    assert_eq!(admin[1]["Keys"], json!([{"ID": targets_key}]));

    // --pretty:
    //   Signatures for GUN
    //
    //   SIGNED TAG   DIGEST   SIGNERS
    //   1.0          HEX      (Repo Admin)
    //
    //   Administrative keys for GUN
    //
    //     Repository Key:	ID
    //     Root Key:	ID
    let pretty = docker.ok(&["trust", "inspect", "--pretty", &gun]);
    let rows: Vec<Vec<&str>> = pretty
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        rows.contains(&vec!["Signatures", "for", gun.as_str()]),
        "{pretty}"
    );
    assert!(
        rows.contains(&vec!["1.0", first.digest.as_str(), "(Repo", "Admin)"]),
        "{pretty}"
    );
    assert!(
        pretty.contains(&format!("Repository Key:\t{targets_key}\n")),
        "{pretty}"
    );

    // `docker trust sign` of a tag that is only local: it pushes the image
    // through the daemon, then signs it into `targets`.
    //   stderr: Signing and pushing trust data for local image GUN:1.1, may
    //           overwrite remote trust data
    //   stdout: The push refers to repository [GUN] … 1.1: digest: sha256:HEX
    //           size: N / Signing and pushing trust metadata / Successfully
    //           signed GUN:1.1
    let reference = format!("{gun}:1.1");
    docker.make_image(&reference, "release two");
    let output = docker.run(&["trust", "sign", &reference]);
    assert!(output.status.success(), "docker trust sign failed");
    assert_eq!(
        stderr(&output).trim_end(),
        format!(
            "Signing and pushing trust data for local image {reference}, \
             may overwrite remote trust data"
        )
    );
    let out = stdout(&output);
    assert!(
        out.starts_with(&format!("The push refers to repository [{gun}]\n")),
        "{out}"
    );
    let second = pushed_line(&out, "1.1");
    assert_eq!(
        lines_after_digest(&out, "1.1"),
        vec![
            "Signing and pushing trust metadata".to_string(),
            format!("Successfully signed {reference}"),
        ]
    );
    assert_ne!(second.digest, first.digest, "the two images are equal");
    assert_eq!(
        setup.registry.manifest_digest("team/inspect", "1.1"),
        Some(format!("sha256:{}", second.digest))
    );
    let targets = setup.tuf(&gun, "targets.json");
    assert_eq!(version(&targets), 3);
    assert_eq!(
        signed_tags(&targets),
        tags(&[("1.0", &first), ("1.1", &second)])
    );
    assert_eq!(signature_key_ids(&targets), vec![targets_key]);
    assert_eq!(
        inspect(docker, &gun)["SignedTags"],
        json!([
            {"SignedTag": "1.0", "Digest": first.digest, "Signers": ["Repo Admin"]},
            {"SignedTag": "1.1", "Digest": second.digest, "Signers": ["Repo Admin"]},
        ])
    );

    // Signing an already signed tag does not push: it lists the existing
    // signers (none but the repository key, which is not listed) and
    // republishes.
    let reference = format!("{gun}:1.0");
    let output = docker.run(&["trust", "sign", &reference]);
    assert!(output.status.success(), "docker trust sign (again) failed");
    assert_eq!(
        stdout(&output),
        format!(
            "Signing and pushing trust metadata for {reference}\n\
             Existing signatures for tag 1.0 digest {} from:\n\
             \n\
             Successfully signed {reference}\n",
            first.digest
        )
    );
    assert_eq!(stderr(&output), "");
    assert_eq!(
        signed_tags(&setup.tuf(&gun, "targets.json")),
        tags(&[("1.0", &first), ("1.1", &second)])
    );

    setup.assert_no_server_errors();
    docker.remove_images();
}

// ---------------------------------------------------------------------------
// 3. Pulling unsigned content with content trust on
// ---------------------------------------------------------------------------

#[test]
fn verified_pull_refuses_an_unsigned_tag_and_a_repository_without_trust_data() {
    let setup = Setup::new();
    let docker = &setup.docker;
    let gun = setup.gun("team/mixed");
    docker.make_image(&format!("{gun}:1.0"), "signed content");
    signed_push(docker, &gun, "1.0", true);

    // The same repository, a tag pushed without content trust.
    let unsigned = format!("{gun}:unsigned");
    docker.tag(&format!("{gun}:1.0"), &unsigned);
    let pushed = plain_push(docker, &gun, "unsigned");
    assert_eq!(
        setup.registry.manifest_digest("team/mixed", "unsigned"),
        Some(format!("sha256:{}", pushed.digest))
    );
    docker.ok(&["rmi", &unsigned]);
    let output = docker.run_trusted(&["pull", &unsigned]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "");
    assert_eq!(stderr(&output), "No valid trust data for unsigned\n");
    assert_eq!(docker.image_id(&unsigned), None);
    assert!(
        !signed_tags(&setup.tuf(&gun, "targets.json")).contains_key("unsigned"),
        "the unsigned tag is in targets.json"
    );

    // A repository that was never signed: notarium has no root.json.
    let plain_gun = setup.gun("team/plain");
    let plain = format!("{plain_gun}:1.0");
    docker.tag(&format!("{gun}:1.0"), &plain);
    plain_push(docker, &plain_gun, "1.0");
    docker.ok(&["rmi", &plain]);
    let output = docker.run_trusted(&["pull", &plain]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        format!(
            "Error: remote trust data does not exist for {plain_gun}: \
             {} does not have trust data for {plain_gun}\n",
            setup.notarium.addr
        )
    );
    assert_eq!(docker.image_id(&plain), None);
    let (status, _) = setup
        .notarium
        .curl()
        .get(&format!("/v2/{plain_gun}/_trust/tuf/root.json"));
    assert_eq!(status, 404);

    // Without content trust both pull fine: the refusals came from trust.
    docker.ok(&["pull", &unsigned]);
    docker.ok(&["pull", &plain]);

    setup.assert_no_server_errors();
    docker.remove_images();
}

// ---------------------------------------------------------------------------
// 4. An unsigned re-push of a signed tag does not change what DCT pulls
// ---------------------------------------------------------------------------

#[test]
fn unsigned_repush_of_a_signed_tag_does_not_change_what_a_verified_pull_gets() {
    let setup = Setup::new();
    let docker = &setup.docker;
    let gun = setup.gun("team/repush");
    let reference = format!("{gun}:1.0");
    let signed_image = docker.make_image(&reference, "the signed content");
    let signed = signed_push(docker, &gun, "1.0", true);
    let targets_before = setup.tuf(&gun, "targets.json");

    // Someone overwrites the tag in the registry, without content trust.
    let other_image = docker.make_image(&reference, "different content");
    assert_ne!(other_image, signed_image);
    let overwritten = plain_push(docker, &gun, "1.0");
    assert_ne!(overwritten.digest, signed.digest);
    assert_eq!(
        setup.registry.manifest_digest("team/repush", "1.0"),
        Some(format!("sha256:{}", overwritten.digest))
    );
    // notarium was not involved: the signed target is unchanged.
    assert_eq!(setup.tuf(&gun, "targets.json"), targets_before);
    assert_eq!(signed_tags(&targets_before), tags(&[("1.0", &signed)]));

    // A verified pull (nothing local) still gets the signed manifest.
    docker.remove_images();
    verified_pull(docker, &gun, "1.0", &signed);
    assert_eq!(docker.image_id(&reference), Some(signed_image));

    // A pull without content trust follows the registry's tag.
    let out = docker.ok(&["pull", &reference]);
    assert!(
        out.lines()
            .any(|l| l == format!("Digest: sha256:{}", overwritten.digest)),
        "{out}"
    );
    assert_eq!(docker.image_id(&reference), Some(other_image));

    setup.assert_no_server_errors();
    docker.remove_images();
}

// ---------------------------------------------------------------------------
// 5. UCP client bundle: delegations to the bundle's certificate
// ---------------------------------------------------------------------------

#[test]
fn client_bundle_delegation_signs_with_docker_trust_sign_and_notary_and_pull_verifies() {
    let setup = Setup::new();
    let docker = &setup.docker;
    let user = "alice";
    let gun = setup.gun("dev/web");
    let (_ca, cert, key) = common::make_client_bundle(&setup.tmp.path().join("bundle"), user);
    let cert = cert.to_str().unwrap();

    // The notary client configured for notarium, on docker's trust dir.
    let notary = docker.notary();
    let published = format!("Successfully published changes for repository {gun}");
    let out = notary.ok(&["init", "-p", &gun]);
    assert!(out.contains(&published), "{out}");
    // Delegates publish without the snapshot key: the server keeps it.
    let out = notary.ok(&["key", "rotate", &gun, "snapshot", "-r"]);
    assert_eq!(
        out.trim(),
        format!("Successfully rotated snapshot key for repository {gun}")
    );
    let root = setup.tuf(&gun, "root.json");
    assert_eq!(version(&root), 2);
    assert_eq!(
        role_key_ids(&root, "snapshot"),
        vec![key_id(&setup.tuf(&gun, "snapshot.key"))]
    );
    assert!(
        private_keys(&docker.trust_dir())
            .iter()
            .all(|k| k.role != "snapshot"),
        "a local snapshot key is left"
    );

    for role in ["targets/releases", &format!("targets/{user}")] {
        let out = notary.ok(&["delegation", "add", "-p", &gun, role, "--all-paths", cert]);
        assert!(
            out.contains(&format!("Addition of delegation role {role} with keys [")),
            "{out}"
        );
        assert!(out.contains(&published), "{out}");
    }
    // The bundle's key.pem as is (SEC1 EC key), no --role: notary files it
    // as a `delegation` key (any GUN) under its canonical key ID, the ID
    // `delegation add` printed for the certificate.
    let out = notary.ok(&["key", "import", key.to_str().unwrap()]);
    assert_eq!(out.trim(), "");
    let delegation_key = private_keys(&docker.trust_dir())
        .into_iter()
        .find(|k| k.role == "delegation")
        .unwrap();
    assert_eq!(delegation_key.gun, None);
    let listed = notary.ok(&["delegation", "list", &gun]);
    assert!(listed.contains(&delegation_key.id), "{listed}");

    // targets.json delegates both roles to the certificate (key type
    // ecdsa-x509, filed under the certificate's key ID).
    let targets = setup.tuf(&gun, "targets.json");
    let delegation_keys = targets["signed"]["delegations"]["keys"]
        .as_object()
        .unwrap();
    assert_eq!(delegation_keys.len(), 1, "{targets}");
    let (cert_key_id, cert_key) = delegation_keys.iter().next().unwrap();
    assert_eq!(cert_key["keytype"], "ecdsa-x509");
    assert_eq!(&key_id(cert_key), cert_key_id);
    assert_ne!(cert_key_id, &delegation_key.id);
    let cert_pem = base64::engine::general_purpose::STANDARD
        .decode(cert_key["keyval"]["public"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(cert_pem).unwrap().trim(),
        std::fs::read_to_string(cert).unwrap().trim()
    );
    let mut roles: Vec<(String, Value)> = targets["signed"]["delegations"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                json!([r["keyids"], r["paths"], r["threshold"]]),
            )
        })
        .collect();
    roles.sort_by(|a, b| a.0.cmp(&b.0));
    let expected = json!([[cert_key_id], [""], 1]);
    assert_eq!(
        roles,
        vec![
            ("targets/alice".to_string(), expected.clone()),
            ("targets/releases".to_string(), expected),
        ]
    );

    // docker trust sign with the bundle key: pushes the image and signs the
    // tag into both delegations it holds a key for; `targets` stays empty.
    let reference = format!("{gun}:2.0");
    docker.make_image(&reference, "release 2.0");
    let output = docker.run(&["trust", "sign", &reference]);
    assert!(output.status.success(), "docker trust sign failed");
    let out = stdout(&output);
    let signed = pushed_line(&out, "2.0");
    assert_eq!(
        lines_after_digest(&out, "2.0"),
        vec![
            "Signing and pushing trust metadata".to_string(),
            format!("Successfully signed {reference}"),
        ]
    );
    for role in ["targets/releases", "targets/alice"] {
        let file = setup.tuf(&gun, &format!("{role}.json"));
        assert_eq!(signed_tags(&file), tags(&[("2.0", &signed)]), "{role}");
        assert_eq!(
            signature_key_ids(&file),
            vec![cert_key_id.clone()],
            "{role}"
        );
    }
    assert_eq!(
        setup.tuf(&gun, "targets.json")["signed"]["targets"],
        json!({})
    );
    let inspected = inspect(docker, &gun);
    assert_eq!(
        inspected["SignedTags"],
        json!([{"SignedTag": "2.0", "Digest": signed.digest, "Signers": [user]}])
    );
    assert_eq!(
        inspected["Signers"],
        json!([{"Name": user, "Keys": [{"ID": delegation_key.id}]}])
    );

    // Another user, with an empty trust dir, pulls it with verification.
    let consumer = setup.other_user("consumer");
    consumer.track(&reference);
    docker.remove_images();
    verified_pull(&consumer, &gun, "2.0", &signed);

    // The alternative signing path: push without content trust, then sign
    // the digest into targets/releases with the notary CLI.
    let reference = format!("{gun}:2.1");
    docker.make_image(&reference, "release 2.1");
    let pushed = plain_push(docker, &gun, "2.1");
    let out = notary.ok(&[
        "addhash",
        &gun,
        "2.1",
        &pushed.size.to_string(),
        "--sha256",
        &pushed.digest,
        "--roles",
        "targets/releases",
        "-p",
    ]);
    assert!(
        out.contains(&format!(
            "Addition of target \"2.1\" by sha256 hash to repository \"{gun}\" staged for next publish."
        )),
        "{out}"
    );
    assert!(out.contains(&published), "{out}");
    assert_eq!(
        signed_tags(&setup.tuf(&gun, "targets/releases.json")),
        tags(&[("2.0", &signed), ("2.1", &pushed)])
    );
    // docker shows a tag signed only by targets/releases as "Repo Admin".
    assert_eq!(
        inspect(docker, &gun)["SignedTags"],
        json!([
            {"SignedTag": "2.0", "Digest": signed.digest, "Signers": [user]},
            {"SignedTag": "2.1", "Digest": pushed.digest, "Signers": ["Repo Admin"]},
        ])
    );
    docker.remove_images();
    verified_pull(&consumer, &gun, "2.1", &pushed);

    setup.assert_no_server_errors();
    consumer.remove_images();
    docker.remove_images();
}

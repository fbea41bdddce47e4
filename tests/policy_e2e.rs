#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The product's rules end to end, with the real notary client, a real
//! registry and a real notarium: OCI indexes and manifest lists are refused
//! (with the documented limitation in the client's output) and nothing is
//! stored; names are limited; immutable repositories keep their tags;
//! delegation certificates can be required to come from a cluster CA.

mod common;
use common::all_output;
#[path = "support/oci.rs"]
mod oci;
#[path = "support/registry.rs"]
mod registry;

use std::path::Path;
use std::process::Command;

use common::{Notarium, NotaryClient, run_ok};
use registry::Registry;
use serde_json::json;

fn hex_of(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

/// `notary addhash` + publish of `tag`; returns the client's output and
/// whether it succeeded. A refused change is dropped from the changelist.
fn sign_digest(
    client: &NotaryClient,
    gun: &str,
    tag: &str,
    digest: &str,
    length: u64,
) -> (bool, String) {
    let out = client.run(&[
        "addhash",
        gun,
        tag,
        &length.to_string(),
        "--sha256",
        hex_of(digest),
        "-p",
    ]);
    let ok = out.status.success();
    if !ok {
        client.ok(&["reset", gun, "--all"]);
    }
    (ok, all_output(&out))
}

fn listed(notarium: &Notarium, dir: &Path, gun: &str) -> String {
    notarium.notary(dir.to_path_buf()).ok(&["list", gun])
}

fn targets_bytes(notarium: &Notarium, gun: &str) -> Vec<u8> {
    let (status, body) = notarium
        .curl()
        .get(&format!("/v2/{gun}/_trust/tuf/targets.json"));
    assert_eq!(status, 200);
    body
}

fn registry_config(registry: &Registry, require: bool) -> serde_json::Value {
    json!({"registries": [{
        "gun_prefix": format!("{}/", registry.host()),
        "url": format!("http://{}", registry.host()),
        "require_image_manifests": require,
        "timeout_seconds": 5,
    }]})
}

#[test]
fn indexes_and_manifest_lists_are_refused_with_the_documented_limitation() {
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start(&work.path().join("registry"));
    let host = registry.host();
    let notarium = Notarium::start(
        &work.path().join("notarium"),
        registry_config(&registry, false),
    );
    let gun = format!("{host}/team/app");
    let client = notarium.notary(work.path().join("trust"));
    client.ok(&["init", &gun, "-p"]);

    // Single-platform images and their multi-arch and application wrappers.
    let amd64 = oci::push_image(&host, "team/app", "1.0-amd64", "amd64");
    let arm64 = oci::push_docker_image(&host, "team/app", "1.0-arm64", "arm64");
    let entries = [
        oci::Entry::new(&amd64, "linux/amd64"),
        oci::Entry::new(&arm64, "linux/arm64"),
    ];
    let index = oci::push_oci_index(&host, "team/app", "1.0", &entries);
    let list = oci::push_manifest_list(&host, "team/app", "1.0-list", &entries);
    let shapeless = oci::push_index_without_media_type(&host, "team/app", "1.0-shape", &entries);
    let bundle = oci::push_cnab_bundle(&host, "team/app", "0.1.0");

    let (ok, printed) = sign_digest(&client, &gun, "1.0-amd64", &amd64.0, amd64.1);
    assert!(ok, "{printed}");
    let before = targets_bytes(&notarium, &gun);

    for (tag, pushed) in [
        ("1.0", &index),
        ("1.0-list", &list),
        ("1.0-shape", &shapeless),
    ] {
        let (ok, printed) = sign_digest(&client, &gun, tag, &pushed.0, pushed.1);
        assert!(!ok, "{tag} was signed");
        assert!(
            printed.contains(&format!(
                "* fatal: The targets metadata is invalid: tag {tag} is a multi-platform image"
            )),
            "{printed}"
        );
        assert!(
            printed.contains("Docker Content Trust does not support multi-arch images (OCI indexes or manifest lists)"),
            "{printed}"
        );
        assert!(printed.contains(&format!("reset {gun} --all")), "{printed}");
    }
    let (ok, printed) = sign_digest(&client, &gun, "0.1.0", &bundle.0, bundle.1);
    assert!(!ok);
    assert!(
        printed.contains("tag 0.1.0 is an application")
            && printed.contains("you cannot sign an application since the Notary signer cannot sign OCI (Open Container Initiative) indices")
            && printed.contains("0.1.0-invoc"),
        "{printed}"
    );

    // A digest the registry does not know (a file signed with the notary
    // CLI) is still accepted.
    let unknown = format!("sha256:{}", "ab".repeat(32));
    let (ok, printed) = sign_digest(&client, &gun, "notes", &unknown, 12);
    assert!(ok, "{printed}");

    // Nothing of the refused uploads was stored.
    let fresh = listed(&notarium, &work.path().join("fresh"), &gun);
    for tag in ["1.0-amd64", "notes"] {
        assert!(
            fresh.lines().any(|l| l.starts_with(&format!("{tag} "))),
            "{fresh}"
        );
    }
    for tag in ["1.0 ", "1.0-list", "1.0-shape", "0.1.0"] {
        assert!(
            !fresh.lines().any(|l| l.starts_with(tag)),
            "{tag} listed:\n{fresh}"
        );
    }
    assert_ne!(
        before,
        targets_bytes(&notarium, &gun),
        "the accepted `notes` changed targets"
    );
    assert!(!notarium.log().contains("status=500"));
}

#[test]
fn an_unreachable_registry_fails_closed_and_unknown_digests_can_be_required() {
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start(&work.path().join("registry"));
    let host = registry.host();
    // Strict: only pushed image manifests may be signed.
    let notarium = Notarium::start(
        &work.path().join("notarium"),
        registry_config(&registry, true),
    );
    let gun = format!("{host}/team/strict");
    let client = notarium.notary(work.path().join("trust"));
    client.ok(&["init", &gun, "-p"]);
    let image = oci::push_image(&host, "team/strict", "1.0", "strict");
    let (ok, printed) = sign_digest(&client, &gun, "1.0", &image.0, image.1);
    assert!(ok, "{printed}");
    let unknown = format!("sha256:{}", "cd".repeat(32));
    let (ok, printed) = sign_digest(&client, &gun, "1.1", &unknown, 10);
    assert!(!ok);
    assert!(
        printed.contains("tag 1.1") && printed.contains("push the image first"),
        "{printed}"
    );

    // The registry goes away: signing a digest the server has not seen
    // before is refused, nothing is stored. (Known digests are remembered:
    // a digest's content never changes.)
    let later = oci::push_image(&host, "team/strict", "1.2", "later");
    let before = targets_bytes(&notarium, &gun);
    drop(registry);
    let (ok, printed) = sign_digest(&client, &gun, "1.2", &later.0, later.1);
    assert!(!ok);
    assert!(
        printed
            .contains("An error occurred during validation: cannot check manifest type of tag 1.2"),
        "{printed}"
    );
    // What failed, without the registry's configured URL or the OS error
    // (those are in the server's log).
    assert!(printed.contains("cannot be reached"), "{printed}");
    for internal in ["http://", "refused", "os error", "tcp connect"] {
        assert!(!printed.to_lowercase().contains(internal), "{printed}");
    }
    assert!(notarium.log().contains("manifest lookup failed"));
    assert_eq!(before, targets_bytes(&notarium, &gun));
}

#[test]
fn repository_and_tag_names_are_limited_at_their_boundaries() {
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start(&work.path().join("registry"));
    let host = registry.host();
    let notarium = Notarium::start(
        &work.path().join("notarium"),
        registry_config(&registry, false),
    );
    let client = notarium.notary(work.path().join("trust"));

    // A one-character repository name is refused at the first request.
    let short = format!("{host}/team/a");
    let out = client.run(&["init", &short, "-p"]);
    assert!(!out.status.success());
    assert!(
        all_output(&out).contains("repository names must be 2 to 255 characters"),
        "{}",
        all_output(&out)
    );
    let (status, body) = notarium
        .curl()
        .get(&format!("/v2/{short}/_trust/tuf/root.json"));
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("INVALID_GUN"));

    // The boundaries themselves: a 2-character name, a 255-character GUN.
    let two = format!("{host}/team/ab");
    client.ok(&["init", &two, "-p"]);
    let filler = 255 - host.len() - "/x/".len();
    let long = format!("{host}/x/{}", "n".repeat(filler));
    assert_eq!(long.len(), 255);
    client.ok(&["init", &long, "-p"]);
    let (status, _) = notarium
        .curl()
        .get(&format!("/v2/{long}a/_trust/tuf/root.json"));
    assert_eq!(status, 400, "a 256-character GUN is refused");

    // Tags: 128 characters pass, 129 do not, and docker's grammar applies.
    let image = oci::push_image(&host, "team/ab", "base", "names");
    let tag_128 = "t".repeat(128);
    let (ok, printed) = sign_digest(&client, &two, &tag_128, &image.0, image.1);
    assert!(ok, "{printed}");
    let (ok, printed) = sign_digest(&client, &two, &"t".repeat(129), &image.0, image.1);
    assert!(!ok);
    assert!(
        printed.contains("image tags can be at most 128 characters"),
        "{printed}"
    );
    let (ok, printed) = sign_digest(&client, &two, "a/b", &image.0, image.1);
    assert!(!ok);
    assert!(printed.contains("is not a valid image tag"), "{printed}");
}

#[test]
fn immutable_repositories_keep_their_signed_tags() {
    let work = tempfile::tempdir().unwrap();
    let configured = "notarium.test/frozen/app";
    let notarium = Notarium::start(
        &work.path().join("notarium"),
        json!({"repositories": {"immutable": [configured]}}),
    );
    let client = notarium.notary(work.path().join("trust"));
    let file_a = work.path().join("a.txt");
    let file_b = work.path().join("b.txt");
    std::fs::write(&file_a, "first content\n").unwrap();
    std::fs::write(&file_b, "second content\n").unwrap();
    let (a, b) = (file_a.to_str().unwrap(), file_b.to_str().unwrap());

    let check = |gun: &str| {
        client.ok(&["init", gun, "-p"]);
        client.ok(&["add", gun, "v1", a, "-p"]);
        // Re-pointing a signed tag is refused.
        let out = client.run(&["add", gun, "v1", b, "-p"]);
        assert!(!out.status.success());
        assert!(
            all_output(&out).contains(&format!(
                "The targets metadata is invalid: tag v1 in {gun} is immutable"
            )),
            "{}",
            all_output(&out)
        );
        client.ok(&["reset", gun, "--all"]);
        // Removing it too.
        let out = client.run(&["remove", gun, "v1", "-p"]);
        assert!(!out.status.success());
        assert!(
            all_output(&out).contains(&format!("tag v1 in {gun} is immutable")),
            "{}",
            all_output(&out)
        );
        client.ok(&["reset", gun, "--all"]);
        // New tags can still be signed.
        client.ok(&["add", gun, "v2", b, "-p"]);
        // Deleting the trust data is refused.
        let out = client.run(&["delete", gun, "--remote"]);
        assert!(!out.status.success(), "{}", all_output(&out));
        assert!(
            all_output(&out).contains("is immutable"),
            "{}",
            all_output(&out)
        );
        let listing = listed(
            &notarium,
            &work.path().join(format!("fresh-{}", gun.len())),
            gun,
        );
        assert!(
            listing.contains("v1") && listing.contains("v2"),
            "{listing}"
        );
    };
    check(configured);

    // Marked in the database with the admin subcommand, while serving.
    let marked = "notarium.test/marked/app";
    client.ok(&["init", marked, "-p"]);
    let set = run_ok(
        Command::new(env!("CARGO_BIN_EXE_notarium"))
            .args(["immutable", "set", marked, "--config"])
            .arg(&notarium.config)
            .current_dir(&notarium.dir),
    );
    assert!(set.contains("is now immutable"), "{set}");
    let listing = run_ok(
        Command::new(env!("CARGO_BIN_EXE_notarium"))
            .args(["immutable", "list", "--config"])
            .arg(&notarium.config)
            .current_dir(&notarium.dir),
    );
    assert_eq!(listing.trim(), marked);
    client.ok(&["add", marked, "v1", a, "-p"]);
    let out = client.run(&["add", marked, "v1", b, "-p"]);
    assert!(!out.status.success());
    client.ok(&["reset", marked, "--all"]);
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_notarium"))
            .args(["immutable", "clear", marked, "--config"])
            .arg(&notarium.config)
            .current_dir(&notarium.dir),
    );
    client.ok(&["add", marked, "v1", b, "-p"]);
}

#[test]
fn delegation_certificates_can_be_required_to_come_from_the_cluster_ca() {
    let work = tempfile::tempdir().unwrap();
    let (ca, alice_cert, _) = common::make_client_bundle(&work.path().join("bundle"), "alice");
    let (_, mallory_cert, _) = common::make_client_bundle(&work.path().join("other"), "mallory");
    let notarium = Notarium::start(
        &work.path().join("notarium"),
        json!({"delegations": {"trusted_ca_file": ca}}),
    );
    let gun = "notarium.test/ucp/app";
    let client = notarium.notary(work.path().join("trust"));
    client.ok(&["init", gun, "-p"]);
    client.ok(&[
        "delegation",
        "add",
        "-p",
        gun,
        "targets/alice",
        "--all-paths",
        alice_cert.to_str().unwrap(),
    ]);
    let out = client.run(&[
        "delegation",
        "add",
        "-p",
        gun,
        "targets/mallory",
        "--all-paths",
        mallory_cert.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let printed = all_output(&out);
    assert!(
        printed.contains("The targets metadata is invalid: the certificate of delegation targets/mallory (subject \"CN=mallory\") is not issued by a trusted certificate authority"),
        "{printed}"
    );
    client.ok(&["reset", gun, "--all"]);
    let roles = notarium
        .notary(work.path().join("fresh"))
        .ok(&["delegation", "list", gun]);
    assert!(
        roles.contains("targets/alice") && !roles.contains("targets/mallory"),
        "{roles}"
    );
}

/// A stand-in registry for notarium's lookups only: the first digest it is
/// asked about is an OCI image index, every other one an image manifest.
/// (The engine cannot hold a multi-platform image locally, so this is how a
/// real `docker push` meets the refusal.)
struct FakeRegistry {
    addr: std::net::SocketAddr,
}

impl FakeRegistry {
    fn start() -> Self {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut first: Option<String> = None;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request_line = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) <= 2 {
                        break;
                    }
                }
                let digest = request_line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|path| path.rsplit('/').next())
                    .unwrap_or("")
                    .to_string();
                let first = first.get_or_insert_with(|| digest.clone());
                let media_type = if *first == digest {
                    "application/vnd.oci.image.index.v1+json"
                } else {
                    "application/vnd.docker.distribution.manifest.v2+json"
                };
                let response = if request_line.starts_with("HEAD") {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {media_type}\r\nDocker-Content-Digest: {digest}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                } else {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string()
                };
                let _ = stream.write_all(response.as_bytes());
            }
        });
        Self { addr }
    }
}

#[path = "support/dockercli.rs"]
mod dockercli;

#[test]
fn docker_push_of_an_index_is_refused_and_the_reset_hint_works() {
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start(&work.path().join("registry"));
    let fake = FakeRegistry::start();
    let host = registry.host();
    let notarium = Notarium::start(
        &work.path().join("notarium"),
        json!({"registries": [{
            "gun_prefix": format!("{host}/"),
            "url": format!("http://{}", fake.addr),
            "timeout_seconds": 5,
        }]}),
    );
    let docker = dockercli::DockerCli::new(&work.path().join("docker"), &notarium);
    let gun = format!("{host}/team/multi");
    docker.make_image(&format!("{gun}:1.0"), "looks like an index");
    docker.make_image(&format!("{gun}:1.1"), "a plain image");

    // docker pushes the image, then signing is refused with the reason.
    let out = docker.run_trusted(&["push", &format!("{gun}:1.0")]);
    assert!(!out.status.success());
    let printed = all_output(&out);
    assert!(
        printed.contains(&format!(
            "failed to sign {gun}:1.0: The targets metadata is invalid: tag 1.0 is a multi-platform image"
        )),
        "{printed}"
    );
    assert!(
        printed.contains("does not support multi-arch images"),
        "{printed}"
    );
    let (status, _) = notarium
        .curl()
        .get(&format!("/v2/{gun}/_trust/tuf/root.json"));
    assert_eq!(status, 404, "a refused first push stores nothing");

    // docker keeps the refused tag in its changelist and sends it again
    // with the next tag, which is refused for the same reason...
    let out = docker.run_trusted(&["push", &format!("{gun}:1.1")]);
    assert!(!out.status.success());
    assert!(
        all_output(&out).contains("tag 1.0 is a multi-platform image"),
        "{}",
        all_output(&out)
    );

    // ...until the changelist is reset as the message says.
    docker.notary().ok(&["reset", &gun, "--all"]);
    let out = docker.run_trusted(&["push", &format!("{gun}:1.1")]);
    assert!(out.status.success(), "{}", all_output(&out));
    assert!(all_output(&out).contains(&format!("Successfully signed {gun}:1.1")));
    let listing = notarium
        .notary(work.path().join("fresh"))
        .ok(&["list", &gun]);
    assert!(
        listing.contains("1.1") && !listing.lines().any(|l| l.starts_with("1.0 ")),
        "{listing}"
    );
}

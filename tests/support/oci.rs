//! Pushes test artefacts to a registry over its HTTP API (plain HTTP, no
//! auth) with `curl`: blobs (`POST` an upload, `PUT` it with its digest) and
//! manifests (`PUT /v2/<name>/manifests/<tag>` with their media type).
//!
//! Every `push_*` returns the manifest's `(digest, length)`, i.e. what a DCT
//! target for the tag holds (PROTOCOL.md §10.2). `registry` is the
//! registry's `host:port`.
//!
//! distribution checks that what a manifest references exists in the same
//! repository, so an index's entries must be pushed to `name` first.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const CNAB_CONFIG: &str = "application/vnd.cnab.config.v1+json";
pub const CNAB_ARTIFACT: &str = "application/vnd.cnab.manifest.v1";

/// Which image manifest format to push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OCI image manifest (`application/vnd.oci.image.manifest.v1+json`).
    Oci,
    /// Docker image manifest v2 schema 2.
    Docker,
}

/// An index entry: a manifest already in the repository and its platform
/// as `os/architecture[/variant]`.
#[derive(Debug, Clone)]
pub struct Entry {
    pub digest: String,
    pub length: u64,
    pub platform: String,
}

impl Entry {
    pub fn new(pushed: &(String, u64), platform: &str) -> Self {
        Self {
            digest: pushed.0.clone(),
            length: pushed.1,
            platform: platform.to_owned(),
        }
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    format!("sha256:{}", hex::encode(d.as_ref()))
}

/// Uploads a blob (`POST /v2/<name>/blobs/uploads/`, then `PUT` to the
/// returned location with `digest=`); returns its `(digest, length)`.
pub fn upload_blob(registry: &str, name: &str, bytes: &[u8]) -> (String, u64) {
    let base = format!("http://{registry}");
    let digest = sha256(bytes);
    let out = run_curl(
        &[
            "-X",
            "POST",
            "-H",
            "Content-Length: 0",
            "-D",
            "-",
            "-o",
            "/dev/null",
            &format!("{base}/v2/{name}/blobs/uploads/"),
        ],
        None,
    );
    let headers = String::from_utf8_lossy(&out);
    let status = headers
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    assert_eq!(
        status, "202",
        "starting a blob upload to {name}:\n{headers}"
    );
    let location = headers
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("location")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no Location in the upload answer:\n{headers}"));
    let location = if location.starts_with("http://") || location.starts_with("https://") {
        location
    } else if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        format!("{base}/v2/{name}/blobs/uploads/{location}")
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    let url = format!("{location}{separator}digest={}", digest.replace(':', "%3A"));
    put(&url, "application/octet-stream", bytes, "201");
    (digest, bytes.len() as u64)
}

/// `PUT /v2/<name>/manifests/<tag>`; returns the manifest's
/// `(digest, length)`.
pub fn put_manifest(
    registry: &str,
    name: &str,
    tag: &str,
    media_type: &str,
    body: &[u8],
) -> (String, u64) {
    let url = format!("http://{registry}/v2/{name}/manifests/{tag}");
    put(&url, media_type, body, "201");
    (sha256(body), body.len() as u64)
}

/// A single-platform OCI image (config blob and one layer, both derived
/// from `seed`).
pub fn push_image(registry: &str, name: &str, tag: &str, seed: &str) -> (String, u64) {
    push_image_as(registry, name, tag, seed, Format::Oci)
}

/// The same as a Docker schema-2 image.
pub fn push_docker_image(registry: &str, name: &str, tag: &str, seed: &str) -> (String, u64) {
    push_image_as(registry, name, tag, seed, Format::Docker)
}

pub fn push_image_as(
    registry: &str,
    name: &str,
    tag: &str,
    seed: &str,
    format: Format,
) -> (String, u64) {
    let layer = format!("layer of {seed}\n").into_bytes();
    let (layer_digest, layer_len) = upload_blob(registry, name, &layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"seed": seed}},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .unwrap();
    let (config_digest, config_len) = upload_blob(registry, name, &config);
    let (media_type, config_type, layer_type) = match format {
        Format::Oci => (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER),
        Format::Docker => (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER),
    };
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_type, "digest": config_digest, "size": config_len},
        "layers": [{"mediaType": layer_type, "digest": layer_digest, "size": layer_len}],
    });
    put_manifest(
        registry,
        name,
        tag,
        media_type,
        &serde_json::to_vec(&manifest).unwrap(),
    )
}

fn platform(spec: &str) -> Value {
    let mut parts = spec.split('/');
    let os = parts.next().unwrap_or("linux");
    let architecture = parts.next().unwrap_or("amd64");
    let mut p = json!({"architecture": architecture, "os": os});
    if let Some(variant) = parts.next() {
        p["variant"] = json!(variant);
    }
    p
}

fn index_body(media_type: Option<&str>, entry_type: &str, entries: &[Entry]) -> Vec<u8> {
    let manifests: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "mediaType": entry_type,
                "digest": e.digest,
                "size": e.length,
                "platform": platform(&e.platform),
            })
        })
        .collect();
    let mut index = json!({"schemaVersion": 2, "manifests": manifests});
    if let Some(media_type) = media_type {
        index["mediaType"] = json!(media_type);
    }
    serde_json::to_vec(&index).unwrap()
}

/// A multi-platform OCI image index over OCI image manifests.
pub fn push_oci_index(registry: &str, name: &str, tag: &str, entries: &[Entry]) -> (String, u64) {
    let body = index_body(Some(OCI_INDEX), OCI_MANIFEST, entries);
    put_manifest(registry, name, tag, OCI_INDEX, &body)
}

/// A Docker manifest list over Docker schema-2 manifests.
pub fn push_manifest_list(
    registry: &str,
    name: &str,
    tag: &str,
    entries: &[Entry],
) -> (String, u64) {
    let body = index_body(Some(DOCKER_MANIFEST_LIST), DOCKER_MANIFEST, entries);
    put_manifest(registry, name, tag, DOCKER_MANIFEST_LIST, &body)
}

/// The body of an OCI index without its (optional, OCI 1.0) `mediaType`
/// field, for servers that must classify by shape.
pub fn index_without_media_type_body(entries: &[Entry]) -> Vec<u8> {
    index_body(None, OCI_MANIFEST, entries)
}

/// An OCI index whose body has no `mediaType` field (sent as an OCI index).
pub fn push_index_without_media_type(
    registry: &str,
    name: &str,
    tag: &str,
    entries: &[Entry],
) -> (String, u64) {
    let body = index_without_media_type_body(entries);
    put_manifest(registry, name, tag, OCI_INDEX, &body)
}

/// A CNAB bundle as cnab-to-oci pushes it (PROTOCOL.md §10.3): an OCI index
/// with CNAB annotations whose `config` entry is a manifest with a CNAB
/// config, and whose `invocation` entry is an image. Also pushes the
/// invocation image as `<tag>-invoc`.
pub fn push_cnab_bundle(registry: &str, name: &str, tag: &str) -> (String, u64) {
    let (invoc_digest, invoc_len) = push_image(
        registry,
        name,
        &format!("{tag}-invoc"),
        &format!("{name}:{tag} invocation"),
    );
    let bundle = serde_json::to_vec(&json!({
        "schemaVersion": "v1.0.0",
        "name": name,
        "version": tag,
        "invocationImages": [{"imageType": "docker", "image": format!("{registry}/{name}@{invoc_digest}")}],
    }))
    .unwrap();
    let (config_digest, config_len) = upload_blob(registry, name, &bundle);
    let config_manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CNAB_CONFIG, "digest": config_digest, "size": config_len},
        "layers": [],
    }))
    .unwrap();
    let (config_manifest_digest, config_manifest_len) = put_manifest(
        registry,
        name,
        &format!("{tag}-config"),
        OCI_MANIFEST,
        &config_manifest,
    );
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "annotations": {
            "io.cnab.runtime_version": "v1.0.0",
            "org.opencontainers.artifactType": CNAB_ARTIFACT,
            "org.opencontainers.image.title": name,
            "org.opencontainers.image.version": tag,
            "org.opencontainers.image.description": "a test application",
        },
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": config_manifest_digest,
                "size": config_manifest_len,
                "annotations": {"io.cnab.manifest.type": "config"},
            },
            {
                "mediaType": OCI_MANIFEST,
                "digest": invoc_digest,
                "size": invoc_len,
                "annotations": {"io.cnab.manifest.type": "invocation"},
            },
        ],
    });
    put_manifest(
        registry,
        name,
        tag,
        OCI_INDEX,
        &serde_json::to_vec(&index).unwrap(),
    )
}

/// `PUT`s `body` and asserts the status.
fn put(url: &str, content_type: &str, body: &[u8], expected: &str) {
    let out = run_curl(
        &[
            "-X",
            "PUT",
            "-H",
            &format!("Content-Type: {content_type}"),
            "--data-binary",
            "@-",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            url,
        ],
        Some(body),
    );
    let text = String::from_utf8_lossy(&out);
    let (answer, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    assert_eq!(status, expected, "PUT {url} ({content_type}): {answer}");
}

/// Runs curl (silent, errors shown, no `Expect: 100-continue`) and returns
/// its stdout.
fn run_curl(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-H", "Expect:"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run curl (Debian package `curl`): {e}"));
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The digest the registry serves for `name:reference` (any manifest
/// type), or `None` when it has none.
pub fn manifest_digest(registry: &str, name: &str, reference: &str) -> Option<String> {
    let accept =
        format!("Accept: {OCI_INDEX}, {DOCKER_MANIFEST_LIST}, {OCI_MANIFEST}, {DOCKER_MANIFEST}");
    let out = run_curl(
        &[
            "-I",
            "-H",
            &accept,
            &format!("http://{registry}/v2/{name}/manifests/{reference}"),
        ],
        None,
    );
    let head = String::from_utf8_lossy(&out);
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case("docker-content-digest")
            .then(|| value.trim().to_owned())
    })
}

//! What a signed digest points to (PROTOCOL.md §10): a single-platform image
//! manifest can be signed; an OCI image index or a Docker manifest list — a
//! multi-arch image, or an application bundle — cannot ("Docker Content
//! Trust (DCT) does not work for applications and multi-arch images, which
//! are the same under the hood").

use serde_json::Value;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const DOCKER_MANIFEST_V1_UNSIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+json";

/// Every manifest media type, for the registry's `Accept` header.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Annotation cnab-to-oci puts on a bundle's index.
const CNAB_RUNTIME: &str = "io.cnab.runtime_version";
const ARTIFACT_TYPE: &str = "org.opencontainers.artifactType";
const CNAB_ARTIFACT: &str = "application/vnd.cnab.manifest.v1";
const CNAB_MANIFEST_TYPE: &str = "io.cnab.manifest.type";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// A single-platform image manifest (OCI or Docker schema 2 or 1).
    Image,
    Index(IndexKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    /// A CNAB / Docker App bundle pushed as an OCI index or manifest list.
    Application,
    /// A multi-platform image as an OCI image index.
    OciIndex,
    /// A multi-platform image as a Docker manifest list.
    ManifestList,
}

/// Classifies by declared media type alone (a registry's `Content-Type`, or
/// a target's `custom` media type). `None` when the type says nothing.
pub fn kind_from_media_type(media_type: &str) -> Option<ManifestKind> {
    let media_type = media_type.split(';').next().unwrap_or("").trim();
    match media_type {
        OCI_INDEX => Some(ManifestKind::Index(IndexKind::OciIndex)),
        DOCKER_MANIFEST_LIST => Some(ManifestKind::Index(IndexKind::ManifestList)),
        OCI_MANIFEST | DOCKER_MANIFEST | DOCKER_MANIFEST_V1 | DOCKER_MANIFEST_V1_UNSIGNED => {
            Some(ManifestKind::Image)
        }
        _ => None,
    }
}

/// Classifies a manifest body: the declared type (header or `mediaType`
/// field) first, the shape as a fallback, and application bundles told
/// apart from multi-arch images by their CNAB annotations.
pub fn classify(declared: Option<&str>, body: &[u8]) -> Option<ManifestKind> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let from_body = json
        .as_ref()
        .and_then(|j| j.get("mediaType"))
        .and_then(Value::as_str)
        .and_then(kind_from_media_type);
    let from_shape = json.as_ref().and_then(|j| {
        if j.get("manifests").is_some_and(Value::is_array) {
            Some(ManifestKind::Index(IndexKind::OciIndex))
        } else if j.get("config").is_some() && j.get("layers").is_some()
            || j.get("fsLayers").is_some()
        {
            Some(ManifestKind::Image)
        } else {
            None
        }
    });
    let kind = declared
        .and_then(kind_from_media_type)
        .or(from_body)
        .or(from_shape)?;
    match (kind, json) {
        (ManifestKind::Index(_), Some(json)) if is_application(&json) => {
            Some(ManifestKind::Index(IndexKind::Application))
        }
        _ => Some(kind),
    }
}

/// cnab-to-oci marks a bundle's index with `io.cnab.runtime_version` or an
/// artifact type of `application/vnd.cnab.manifest.v1`, and each descriptor
/// with `io.cnab.manifest.type`.
pub fn is_application(index: &Value) -> bool {
    let annotations = index.get("annotations");
    let top = annotations.is_some_and(|a| {
        a.get(CNAB_RUNTIME).is_some()
            || a.get(ARTIFACT_TYPE).and_then(Value::as_str) == Some(CNAB_ARTIFACT)
    });
    let descriptors = index
        .get("manifests")
        .and_then(Value::as_array)
        .is_some_and(|list| {
            !list.is_empty()
                && list.iter().all(|d| {
                    d.get("annotations")
                        .and_then(|a| a.get(CNAB_MANIFEST_TYPE))
                        .is_some()
                })
        });
    top || descriptors
}

/// What a target's `custom` data says it is, if anything: its declared
/// media type, and — for an index, declared or shaped like one (a
/// `manifests` array) — whether its CNAB annotations make it an application
/// (PROTOCOL.md §10.3), as a registry's answer would. The description may
/// be `custom` itself or an object under `descriptor`, `manifest` or
/// `index`.
pub fn custom_kind(custom: Option<&Value>) -> Option<ManifestKind> {
    let custom = custom?;
    let candidates = std::iter::once(custom).chain(
        ["descriptor", "manifest", "index"]
            .iter()
            .filter_map(|key| custom.get(*key).filter(|v| v.is_object())),
    );
    let mut found = None;
    for described in candidates {
        let declared = custom_media_type(Some(described)).and_then(kind_from_media_type);
        let shaped_index = described.get("manifests").is_some_and(Value::is_array);
        let kind = match declared {
            Some(ManifestKind::Index(_)) | None if is_application(described) => {
                (declared.is_some() || shaped_index)
                    .then_some(ManifestKind::Index(IndexKind::Application))
            }
            None if shaped_index => Some(ManifestKind::Index(IndexKind::OciIndex)),
            other => other,
        };
        match kind {
            // The most specific answer wins: an application over an index,
            // an index over an image.
            Some(ManifestKind::Index(IndexKind::Application)) => return kind,
            Some(ManifestKind::Index(_)) => found = kind,
            Some(ManifestKind::Image) if found.is_none() => found = kind,
            _ => {}
        }
    }
    found
}

/// The media type a target declares in its `custom` data, if any.
pub fn custom_media_type(custom: Option<&Value>) -> Option<&str> {
    let custom = custom?;
    ["mediaType", "mediatype", "media_type"]
        .iter()
        .find_map(|key| custom.get(*key).and_then(Value::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn declared_types_win_and_shapes_are_the_fallback() {
        assert_eq!(
            classify(Some(OCI_INDEX), b"{}"),
            Some(ManifestKind::Index(IndexKind::OciIndex))
        );
        assert_eq!(
            classify(
                Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"),
                b"{}"
            ),
            Some(ManifestKind::Image)
        );
        let list = json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST, "manifests": []});
        assert_eq!(
            classify(None, list.to_string().as_bytes()),
            Some(ManifestKind::Index(IndexKind::ManifestList))
        );
        let shaped = json!({"schemaVersion": 2, "manifests": [{"digest": "sha256:00"}]});
        assert_eq!(
            classify(
                Some("application/octet-stream"),
                shaped.to_string().as_bytes()
            ),
            Some(ManifestKind::Index(IndexKind::OciIndex))
        );
        let image = json!({"schemaVersion": 2, "config": {}, "layers": []});
        assert_eq!(
            classify(None, image.to_string().as_bytes()),
            Some(ManifestKind::Image)
        );
        assert_eq!(classify(None, b"not json"), None);
    }

    #[test]
    fn cnab_bundles_are_applications() {
        let bundle = json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "annotations": {"io.cnab.runtime_version": "v1.0.0", "org.opencontainers.artifactType": CNAB_ARTIFACT},
            "manifests": [
                {"digest": "sha256:01", "annotations": {"io.cnab.manifest.type": "config"}},
                {"digest": "sha256:02", "annotations": {"io.cnab.manifest.type": "invocation"}},
            ]
        });
        assert_eq!(
            classify(Some(OCI_INDEX), bundle.to_string().as_bytes()),
            Some(ManifestKind::Index(IndexKind::Application))
        );
        let multiarch = json!({"schemaVersion": 2, "manifests": [
            {"digest": "sha256:01", "platform": {"architecture": "amd64", "os": "linux"}}]});
        assert!(!is_application(&multiarch));
    }

    #[test]
    fn custom_data_describing_a_cnab_index_is_an_application() {
        let app = IndexKind::Application;
        let declared = json!({
            "mediaType": OCI_INDEX,
            "annotations": {"io.cnab.runtime_version": "v1.0.0"},
        });
        assert_eq!(custom_kind(Some(&declared)), Some(ManifestKind::Index(app)));
        let shaped = json!({"manifests": [
            {"digest": "sha256:01", "annotations": {"io.cnab.manifest.type": "config"}},
            {"digest": "sha256:02", "annotations": {"io.cnab.manifest.type": "invocation"}},
        ]});
        assert_eq!(custom_kind(Some(&shaped)), Some(ManifestKind::Index(app)));
        let nested = json!({"manifest": {
            "mediaType": DOCKER_MANIFEST_LIST,
            "annotations": {"org.opencontainers.artifactType": CNAB_ARTIFACT},
        }});
        assert_eq!(custom_kind(Some(&nested)), Some(ManifestKind::Index(app)));
        // An index without CNAB annotations is a multi-arch image.
        assert_eq!(
            custom_kind(Some(&json!({"mediaType": OCI_INDEX}))),
            Some(ManifestKind::Index(IndexKind::OciIndex))
        );
        // CNAB annotations on something that is not an index say nothing.
        let image =
            json!({"mediaType": OCI_MANIFEST, "annotations": {"io.cnab.runtime_version": "v1"}});
        assert_eq!(custom_kind(Some(&image)), Some(ManifestKind::Image));
        assert_eq!(
            custom_kind(Some(
                &json!({"annotations": {"io.cnab.runtime_version": "v1"}})
            )),
            None
        );
        assert_eq!(custom_kind(Some(&json!({"note": "a file"}))), None);
        assert_eq!(custom_kind(None), None);
    }

    #[test]
    fn custom_media_types_are_read() {
        let custom = json!({"mediaType": OCI_INDEX});
        assert_eq!(custom_media_type(Some(&custom)), Some(OCI_INDEX));
        assert_eq!(custom_media_type(None), None);
    }
}

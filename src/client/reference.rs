//! Image references as the docker CLI reads them (`distribution/reference`
//! normalization): the GUN is the fully qualified repository name, so a bare
//! `alpine` is `docker.io/library/alpine`.

/// The default registry of bare names, as docker names it in GUNs.
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's trust server, which the docker CLI uses for its images.
pub const DOCKER_HUB_NOTARY: &str = "https://notary.docker.io";

/// What to verify: a GUN and a tag, or a GUN and a digest (whose tag must
/// then be found by digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The registry host (with port), `docker.io` for bare names.
    pub registry: String,
    pub gun: String,
    pub tag: Option<String>,
    /// `sha256:<hex>`, lowercase.
    pub digest: Option<String>,
}

impl ImageRef {
    /// The trust server the docker CLI would use for this image.
    pub fn default_server(&self) -> String {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_NOTARY.to_string()
        } else {
            format!("https://{}", self.registry)
        }
    }
}

/// Whether `digest` is `sha256:` followed by 64 lowercase hex digits.
pub fn is_sha256_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

fn component_ok(component: &str) -> bool {
    // distribution's path component: lowercase alphanumerics separated by
    // `.`, `_`, `__` or runs of `-`.
    !component.is_empty()
        && component.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
        && component
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && component
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

/// A registry host as docker accepts it: DNS labels (or an IPv4 address)
/// and an optional port. It becomes a path component of the trust cache,
/// so nothing else gets through.
fn registry_ok(registry: &str) -> bool {
    let (host, port) = match registry.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    host.split('.').all(label_ok)
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

fn tag_ok(tag: &str) -> bool {
    // `[\w][\w.-]{0,127}`
    !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Parses `[registry/]path[:tag][@sha256:hex]`; with neither tag nor digest
/// the tag is `latest`, as docker pulls it.
pub fn parse(reference: &str) -> Result<ImageRef, String> {
    let (name_tag, digest) = match reference.split_once('@') {
        Some((name, digest)) => {
            if !is_sha256_digest(digest) {
                return Err(format!(
                    "invalid digest {digest:?}: expected sha256: and 64 lowercase hex digits"
                ));
            }
            (name, Some(digest.to_string()))
        }
        None => (reference, None),
    };
    // A tag follows the last `:` after the last `/` (an earlier `:` is a
    // registry port).
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(at) => {
            let at = last_slash + at;
            (&name_tag[..at], Some(name_tag[at + 1..].to_string()))
        }
        None => (name_tag, None),
    };
    if let Some(tag) = &tag {
        if !tag_ok(tag) {
            return Err(format!("invalid tag {tag:?}"));
        }
    }
    if name.is_empty() {
        return Err("the image reference has no repository name".to_string());
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let first = parts.first().copied().unwrap_or_default();
    let has_registry =
        parts.len() > 1 && (first.contains('.') || first.contains(':') || first == "localhost");
    let registry = if has_registry {
        parts.remove(0);
        if !registry_ok(first) {
            return Err(format!("invalid registry host {first:?}"));
        }
        if first == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            first.to_string()
        }
    } else {
        DOCKER_HUB.to_string()
    };
    if registry == DOCKER_HUB && parts.len() == 1 {
        parts.insert(0, "library");
    }
    if let Some(bad) = parts.iter().find(|c| !component_ok(c)) {
        return Err(format!(
            "invalid repository name component {bad:?} (lowercase letters, digits, and . _ - separators)"
        ));
    }
    let gun = format!("{registry}/{}", parts.join("/"));
    if gun.len() > 255 {
        return Err("the repository name is longer than 255 characters".to_string());
    }
    let tag = match (&tag, &digest) {
        (None, None) => Some("latest".to_string()),
        _ => tag,
    };
    Ok(ImageRef {
        registry,
        gun,
        tag,
        digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_live_under_docker_hub_library() {
        let r = parse("alpine").unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(r.gun, "docker.io/library/alpine");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.default_server(), DOCKER_HUB_NOTARY);
        let r = parse("someone/tool:1.2").unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(r.gun, "docker.io/someone/tool");
        assert_eq!(r.tag.as_deref(), Some("1.2"));
    }

    #[test]
    fn registry_ports_tags_and_digests() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let r = parse(&format!("registry.example.com:5000/ns/repo:v1@{digest}"))
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(r.registry, "registry.example.com:5000");
        assert_eq!(r.gun, "registry.example.com:5000/ns/repo");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(r.default_server(), "https://registry.example.com:5000");
        let r = parse(&format!("localhost/x@{digest}")).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!((r.gun.as_str(), r.tag), ("localhost/x", None));
        let r = parse("index.docker.io/library/busybox").unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(r.gun, "docker.io/library/busybox");
    }

    #[test]
    fn malformed_references_are_refused() {
        for bad in [
            "",
            "UPPER/case",
            "x:bad tag",
            "x@sha256:12",
            "a//b",
            "x:-lead",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}

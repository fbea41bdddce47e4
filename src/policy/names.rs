//! Repository and tag names: the ONE grammar for GUNs, used for request
//! paths, root certificate common names and the configuration's GUN lists
//! (`repositories.gun_prefixes`, `repositories.immutable`), so that two
//! spellings of one name cannot exist.
//!
//! A GUN is a docker reference name (docker/distribution `reference`
//! grammar): an optional registry host `[domain/]` whose components are
//! `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]` joined by `.` (or an
//! IPv6 literal in brackets), with an optional `:port`; then path components
//! `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*` joined by `/`. On top of it:
//! ASCII only, no control or bidirectional characters, no `%` (paths are
//! matched once percent-decoded, so a `%` left over means double encoding),
//! no empty, `.` or `..` segments. The product's limits also apply: the
//! repository name (last component) has 2 to 255 characters, the whole GUN
//! at most 255 (docker's limit and the width of Notary's SQL column). Tags
//! follow docker's grammar `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.

use thiserror::Error;

pub const MAX_GUN_LEN: usize = 255;
pub const MIN_REPOSITORY_NAME_LEN: usize = 2;
pub const MAX_REPOSITORY_NAME_LEN: usize = 255;
pub const MAX_TAG_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("the repository name is empty")]
    EmptyGun,

    #[error("repository {shown} is {len} characters long; at most {MAX_GUN_LEN} are allowed")]
    GunTooLong { shown: String, len: usize },

    #[error(
        "repository name {name:?} is {len} character{} long; repository names must be \
         {MIN_REPOSITORY_NAME_LEN} to {MAX_REPOSITORY_NAME_LEN} characters",
        if *len == 1 { "" } else { "s" }
    )]
    RepositoryNameLength { name: String, len: usize },

    #[error("repository {shown} contains '*' or whitespace, which names cannot contain")]
    GunCharacters { shown: String },

    /// A control character (NUL included) or a bidirectional override or
    /// mark, which can make a name display as another.
    #[error(
        "repository {shown} contains the control or bidirectional character U+{code:04X} at \
         character {position}; names are printable ASCII"
    )]
    ControlCharacter {
        shown: String,
        code: u32,
        position: usize,
    },

    /// Non-ASCII letters can look like ASCII ones (Cyrillic 'а' for 'a'):
    /// two spellings of one name.
    #[error(
        "repository {shown} contains the non-ASCII character U+{code:04X} at character \
         {position}; names are ASCII only (look-alike letters would give one name two spellings)"
    )]
    NonAscii {
        shown: String,
        code: u32,
        position: usize,
    },

    /// A `%` survives the one percent-decoding of the request path only when
    /// the name was encoded twice.
    #[error(
        "repository {shown} contains '%': names are not percent-encoded (the request path is \
         decoded once; a remaining '%' means the name was encoded twice)"
    )]
    PercentEncoded { shown: String },

    #[error("repository {shown} has an empty path segment (a leading, trailing or doubled '/')")]
    EmptySegment { shown: String },

    #[error("repository {shown} has a {segment:?} path segment; names are path-clean")]
    DotSegment {
        shown: String,
        segment: &'static str,
    },

    #[error(
        "repository {shown}: path component {component:?} has upper-case letters; docker \
         repository paths are lower case"
    )]
    UppercaseComponent { shown: String, component: String },

    #[error(
        "repository {shown}: path component {component:?} is not valid: use lower-case letters \
         and digits, separated by '.', '_', '__' or dashes, not at the start or end"
    )]
    InvalidComponent { shown: String, component: String },

    #[error(
        "repository {shown}: {component:?} is neither a registry host (letters, digits, '-' and \
         '.', with an optional :port) nor a path component"
    )]
    InvalidDomain { shown: String, component: String },

    /// A configured prefix that is not whole GUN components and a `/`.
    #[error(
        "prefix {shown} must be whole, valid repository name components followed by '/' (e.g. \
         \"docker.io/library/\")"
    )]
    InvalidPrefix { shown: String },

    /// A wildcard certificate name whose start cannot begin a GUN.
    #[error(
        "certificate name {shown}: the part before '*' must be the start of a valid repository \
         name"
    )]
    InvalidWildcard { shown: String },

    #[error(
        "tag {shown} is {len} characters long; image tags can be at most {MAX_TAG_LEN} characters"
    )]
    TagTooLong { shown: String, len: usize },

    #[error(
        "tag {tag:?} is not a valid image tag: tags use letters, digits, '_', '.' and '-', and \
         cannot start with '.' or '-'"
    )]
    TagGrammar { tag: String },
}

/// A name for messages: cut short, quoted, and with everything but
/// printable ASCII escaped, so a message never carries a bidirectional
/// override or a control character to the user's terminal.
fn shown(name: &str) -> String {
    let mut out = String::from("\"");
    for c in name.chars().take(60) {
        if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out.push('"');
    if name.chars().count() > 60 {
        out.push('…');
    }
    out
}

/// Unicode bidirectional formatting characters (marks, embeddings,
/// overrides, isolates): they reorder how a name is displayed.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Docker's path component: `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`.
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.first().is_none_or(|&b| !alnum(b)) || bytes.last().is_none_or(|&b| !alnum(b)) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run between two alphanumerics.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let valid = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !valid {
            return false;
        }
    }
    true
}

/// Docker's domain component: `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`.
fn is_domain_component(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Docker's domain: components joined by `.` or an IPv6 literal in
/// brackets, then an optional `:port` (digits).
fn is_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else {
            return false;
        };
        let literal =
            !address.is_empty() && address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
        if !literal {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = domain.starts_with('[') || host.split('.').all(is_domain_component);
    port_ok && host_ok
}

/// The checks every spelling of a name gets before its grammar: printable
/// ASCII, no `%`, `*` or whitespace.
fn check_characters(name: &str) -> Result<(), NameError> {
    for (position, c) in name.chars().enumerate() {
        if c.is_control() || is_bidi_control(c) {
            return Err(NameError::ControlCharacter {
                shown: shown(name),
                code: u32::from(c),
                position,
            });
        }
        if !c.is_ascii() {
            return Err(NameError::NonAscii {
                shown: shown(name),
                code: u32::from(c),
                position,
            });
        }
    }
    if name.contains('%') {
        return Err(NameError::PercentEncoded { shown: shown(name) });
    }
    if name.contains('*') || name.contains(' ') {
        return Err(NameError::GunCharacters { shown: shown(name) });
    }
    Ok(())
}

/// Checks `/`-separated components: no empty or dot segments, the first a
/// domain or a path component (a domain only if more follow, as in docker's
/// grammar), the rest path components.
fn check_components(
    name: &str,
    components: &[&str],
    domain_allowed: bool,
) -> Result<(), NameError> {
    for component in components {
        match *component {
            "" => return Err(NameError::EmptySegment { shown: shown(name) }),
            "." => {
                return Err(NameError::DotSegment {
                    shown: shown(name),
                    segment: ".",
                });
            }
            ".." => {
                return Err(NameError::DotSegment {
                    shown: shown(name),
                    segment: "..",
                });
            }
            _ => {}
        }
    }
    for (index, component) in components.iter().enumerate() {
        if is_path_component(component) {
            continue;
        }
        if index == 0 && domain_allowed {
            if is_domain(component) {
                continue;
            }
            return Err(NameError::InvalidDomain {
                shown: shown(name),
                component: (*component).to_string(),
            });
        }
        let lowered = component.to_ascii_lowercase();
        if lowered != *component && is_path_component(&lowered) {
            return Err(NameError::UppercaseComponent {
                shown: shown(name),
                component: (*component).to_string(),
            });
        }
        return Err(NameError::InvalidComponent {
            shown: shown(name),
            component: (*component).to_string(),
        });
    }
    Ok(())
}

/// Checks a GUN against the grammar above and the product's length limits.
pub fn check_gun(gun: &str) -> Result<(), NameError> {
    if gun.is_empty() {
        return Err(NameError::EmptyGun);
    }
    let len = gun.chars().count();
    if len > MAX_GUN_LEN {
        return Err(NameError::GunTooLong {
            shown: shown(gun),
            len,
        });
    }
    check_characters(gun)?;
    let components: Vec<&str> = gun.split('/').collect();
    check_components(gun, &components, components.len() > 1)?;
    let name = components.last().copied().unwrap_or(gun);
    let name_len = name.len();
    if !(MIN_REPOSITORY_NAME_LEN..=MAX_REPOSITORY_NAME_LEN).contains(&name_len) {
        return Err(NameError::RepositoryNameLength {
            name: name.to_string(),
            len: name_len,
        });
    }
    Ok(())
}

/// Checks a configured GUN prefix (`repositories.gun_prefixes`, prefix
/// entries of `repositories.immutable`): whole, valid components followed by
/// `/` (notary's rule), so a prefix always ends on a component boundary
/// (`docker.io/library/` covers `docker.io/library/alpine`, never
/// `docker.io/libraryx/...`). The first component may be a registry host,
/// since more components follow.
pub fn check_gun_prefix(prefix: &str) -> Result<(), NameError> {
    let Some(body) = prefix.strip_suffix('/') else {
        return Err(NameError::InvalidPrefix {
            shown: shown(prefix),
        });
    };
    if body.is_empty() || prefix.chars().count() > MAX_GUN_LEN {
        return Err(NameError::InvalidPrefix {
            shown: shown(prefix),
        });
    }
    check_characters(body)?;
    let components: Vec<&str> = body.split('/').collect();
    check_components(prefix, &components, true)
}

/// Checks a GUN or a prefix ending in `/`, the two forms a GUN list
/// (`repositories.immutable`) takes.
pub fn check_gun_or_prefix(entry: &str) -> Result<(), NameError> {
    if entry.ends_with('/') {
        check_gun_prefix(entry)
    } else {
        check_gun(entry)
    }
}

/// Checks the Common Name of a root certificate: a GUN, or notary's
/// wildcard form `<start of a GUN>*` (`MatchCNToGun`). The start must be
/// spelled as GUNs are (ASCII, no control, bidirectional or `%`
/// characters); its whole components must be valid, and a partial last
/// component is allowed (`registry.example.com/team/ap*`).
pub fn check_common_name(common_name: &str) -> Result<(), NameError> {
    let Some(start) = common_name.strip_suffix('*') else {
        return check_gun(common_name);
    };
    if start.is_empty() || start.chars().count() > MAX_GUN_LEN {
        return Err(NameError::InvalidWildcard {
            shown: shown(common_name),
        });
    }
    check_characters(start)?;
    match start.rsplit_once('/') {
        // Whole components before the last '/'; what follows is partial.
        Some((whole, partial)) => {
            let components: Vec<&str> = whole.split('/').collect();
            check_components(common_name, &components, true)?;
            let partial_ok = partial.is_empty()
                || partial
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
            if partial_ok && partial != "." && partial != ".." {
                Ok(())
            } else {
                Err(NameError::InvalidWildcard {
                    shown: shown(common_name),
                })
            }
        }
        // Part of the first component: a host or path start.
        None => {
            let ok = start
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-:[]".contains(&b));
            if ok {
                Ok(())
            } else {
                Err(NameError::InvalidWildcard {
                    shown: shown(common_name),
                })
            }
        }
    }
}

/// Checks an image tag against docker's grammar and length limit.
pub fn check_tag(tag: &str) -> Result<(), NameError> {
    let len = tag.chars().count();
    if len > MAX_TAG_LEN {
        return Err(NameError::TagTooLong {
            shown: shown(tag),
            len,
        });
    }
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.chars();
    let valid = chars.next().is_some_and(word) && chars.all(|c| word(c) || c == '.' || c == '-');
    if !valid {
        return Err(NameError::TagGrammar {
            tag: tag.chars().take(60).collect(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_are_accepted_and_beyond_them_refused() {
        check_gun("registry.example.com/team/ab").unwrap();
        assert!(matches!(
            check_gun("registry.example.com/team/a"),
            Err(NameError::RepositoryNameLength { len: 1, .. })
        ));
        let gun_255 = format!("r/{}", "a".repeat(253));
        assert_eq!(gun_255.len(), 255);
        check_gun(&gun_255).unwrap();
        assert!(matches!(
            check_gun(&format!("{gun_255}a")),
            Err(NameError::GunTooLong { len: 256, .. })
        ));
        assert!(check_gun("").is_err());
        assert!(check_gun("r/a b").is_err());
        assert!(check_gun("r/a*b").is_err());
        assert!(check_gun("r/").is_err());

        check_tag(&"t".repeat(128)).unwrap();
        check_tag("v1.2.3-rc_1").unwrap();
        check_tag("_x").unwrap();
        assert!(matches!(
            check_tag(&"t".repeat(129)),
            Err(NameError::TagTooLong { len: 129, .. })
        ));
        for bad in ["", ".x", "-x", "a/b", "a:b", "é"] {
            assert!(
                matches!(check_tag(bad), Err(NameError::TagGrammar { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn docker_reference_names_are_accepted() {
        for good in [
            "127.0.0.1:5000/team/app",
            "localhost:5000/app",
            "registry.example.com/team/app",
            "Registry.Example.com/team/app",
            "docker.io/library/alpine",
            "notary.test/fixtures/docker",
            "[::1]:5000/team/app",
            "[fe80::1]/app",
            "team/app",
            "app",
            "a/b__c/d-e/f---g/h.i/j_k",
            "my-registry:443/x/yz",
        ] {
            check_gun(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
    }

    #[test]
    fn every_way_of_spelling_a_name_twice_is_refused() {
        type Expected = fn(&NameError) -> bool;
        let cases: &[(&str, Expected)] = &[
            ("r.example/team/%2e%2e", |e| {
                matches!(e, NameError::PercentEncoded { .. })
            }),
            ("r.example/team/%252e%252e/app", |e| {
                matches!(e, NameError::PercentEncoded { .. })
            }),
            ("r.example/team/../app", |e| {
                matches!(e, NameError::DotSegment { segment: "..", .. })
            }),
            ("r.example/./app", |e| {
                matches!(e, NameError::DotSegment { segment: ".", .. })
            }),
            ("r.example/team//app", |e| {
                matches!(e, NameError::EmptySegment { .. })
            }),
            ("r.example/team/app/", |e| {
                matches!(e, NameError::EmptySegment { .. })
            }),
            ("/r.example/team/app", |e| {
                matches!(e, NameError::EmptySegment { .. })
            }),
            ("r.example/Team/app", |e| {
                matches!(e, NameError::UppercaseComponent { .. })
            }),
            ("r.example/team/App", |e| {
                matches!(e, NameError::UppercaseComponent { .. })
            }),
            ("r.example/team/\u{0430}pp", |e| {
                matches!(e, NameError::NonAscii { code: 0x430, .. })
            }),
            ("r.example/team/app\u{202E}gpj", |e| {
                matches!(e, NameError::ControlCharacter { code: 0x202E, .. })
            }),
            ("r.example/team/app\u{200F}", |e| {
                matches!(e, NameError::ControlCharacter { code: 0x200F, .. })
            }),
            ("r.example/team/app\0", |e| {
                matches!(e, NameError::ControlCharacter { code: 0, .. })
            }),
            ("r.example/team/a\tpp", |e| {
                matches!(e, NameError::ControlCharacter { code: 9, .. })
            }),
            ("r.example/team/-app", |e| {
                matches!(e, NameError::InvalidComponent { .. })
            }),
            ("r.example/team/app.", |e| {
                matches!(e, NameError::InvalidComponent { .. })
            }),
            ("r.example/team/a...b", |e| {
                matches!(e, NameError::InvalidComponent { .. })
            }),
            ("r.example/team/a___b", |e| {
                matches!(e, NameError::InvalidComponent { .. })
            }),
            ("r.example/te:am/app", |e| {
                matches!(e, NameError::InvalidComponent { .. })
            }),
            ("r_x:5000/app", |e| {
                matches!(e, NameError::InvalidDomain { .. })
            }),
            ("r.example:/app", |e| {
                matches!(e, NameError::InvalidDomain { .. })
            }),
            ("r.example:50a/app", |e| {
                matches!(e, NameError::InvalidDomain { .. })
            }),
            ("-r.example/app", |e| {
                matches!(e, NameError::InvalidDomain { .. })
            }),
            ("Alone", |e| {
                matches!(e, NameError::UppercaseComponent { .. })
            }),
        ];
        for (gun, expected) in cases {
            let error = check_gun(gun).expect_err(gun);
            assert!(expected(&error), "{gun:?}: {error:?}");
            let message = error.to_string();
            assert!(
                message
                    .chars()
                    .all(|c| c.is_ascii() && !c.is_ascii_control() || c == '…'),
                "messages carry no raw control or non-ASCII characters: {message:?}"
            );
        }
    }

    #[test]
    fn prefixes_and_common_names_use_the_same_grammar() {
        for good in ["docker.io/", "docker.io/library/", "127.0.0.1:5000/", "r/"] {
            check_gun_prefix(good).unwrap_or_else(|e| panic!("{good}: {e}"));
            check_gun_or_prefix(good).unwrap();
        }
        for bad in [
            "docker.io",
            "/",
            "docker.io//",
            "../up/",
            "./",
            "docker.io/Library/",
            "docker.io/%2e%2e/",
            "d\u{043E}cker.io/",
            "docker.io/lib\u{202E}/",
        ] {
            assert!(check_gun_prefix(bad).is_err(), "{bad:?}");
        }
        check_gun_or_prefix("docker.io/library/alpine").unwrap();
        assert!(check_gun_or_prefix("docker.io/library/Alpine").is_err());

        for good in [
            "registry.example.com/team/app",
            "registry.example.com/team/*",
            "registry.example.com/team/ap*",
            "registry.exa*",
            "*",
        ] {
            if good == "*" {
                assert!(check_common_name(good).is_err());
                continue;
            }
            check_common_name(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "registry.example.com/team/app/",
            "registry.example.com/Team/app",
            "registry.example.com/team/\u{0430}pp",
            "registry.example.com//*",
            "registry.example.com/../*",
            "registry.example.com/team/A*",
            "registry.example.com/%2e*",
        ] {
            assert!(check_common_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn messages_name_the_limit() {
        let message = check_gun("r/a").unwrap_err().to_string();
        assert!(message.contains("2 to 255 characters"), "{message}");
        let message = check_tag(&"t".repeat(200)).unwrap_err().to_string();
        assert!(message.contains("at most 128 characters"), "{message}");
        assert!(message.len() < 200);
    }
}

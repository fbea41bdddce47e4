//! Repository and tag names, as the product documents state them ("Pushing
//! Docker Images"): a repository name has 2 to 255 characters, an image tag
//! at most 128; the whole GUN at most 255 (docker's reference limit and the
//! width of Notary's SQL column). Tags follow docker's grammar
//! `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.

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

    #[error("repository {shown} contains '*', whitespace or control characters")]
    GunCharacters { shown: String },

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

/// A long name, cut for messages that must stay short.
fn shown(name: &str) -> String {
    if name.chars().count() > 60 {
        format!("{:?}…", name.chars().take(60).collect::<String>())
    } else {
        format!("{name:?}")
    }
}

/// Checks a GUN: bounded, printable, and a repository name (its last path
/// component) of 2 to 255 characters.
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
    if gun.contains('*') || gun.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(NameError::GunCharacters { shown: shown(gun) });
    }
    let name = gun.rsplit('/').next().unwrap_or(gun);
    let name_len = name.chars().count();
    if !(MIN_REPOSITORY_NAME_LEN..=MAX_REPOSITORY_NAME_LEN).contains(&name_len) {
        return Err(NameError::RepositoryNameLength {
            name: name.to_string(),
            len: name_len,
        });
    }
    Ok(())
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
    fn messages_name_the_limit() {
        let message = check_gun("r/a").unwrap_err().to_string();
        assert!(message.contains("2 to 255 characters"), "{message}");
        let message = check_tag(&"t".repeat(200)).unwrap_err().to_string();
        assert!(message.contains("at most 128 characters"), "{message}");
        assert!(message.len() < 200);
    }
}

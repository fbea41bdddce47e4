//! What a request needs and what a token grants (PROTOCOL.md §8): access to
//! one resource — a repository named by its GUN, or the registry catalog —
//! for a set of actions. `*` grants every action; names compare exactly.

use serde::Deserialize;

/// An action on a resource, as the Docker token spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Pull,
    Push,
    /// `*`: every action (notary's admin operations ask for exactly this).
    All,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Push => "push",
            Self::All => "*",
        }
    }
}

/// `push` and `pull`, in the order notary lists them in challenges.
pub const PUSH_PULL: &[Action] = &[Action::Push, Action::Pull];
pub const PULL: &[Action] = &[Action::Pull];
pub const ALL: &[Action] = &[Action::All];

/// What access is about. Borrows the GUN from the request: checking a
/// request allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource<'a> {
    /// `repository:<gun>`.
    Repository(&'a str),
    /// `registry:catalog`: what notary asks for on routes without a GUN.
    Catalog,
}

impl<'a> Resource<'a> {
    /// The token spec's resource `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Repository(_) => "repository",
            Self::Catalog => "registry",
        }
    }

    pub fn name(&self) -> &'a str {
        match self {
            Self::Repository(gun) => gun,
            Self::Catalog => "catalog",
        }
    }
}

/// The access one request needs: every listed action on one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Required<'a> {
    pub resource: Resource<'a>,
    pub actions: &'static [Action],
}

impl<'a> Required<'a> {
    pub fn repository(gun: &'a str, actions: &'static [Action]) -> Self {
        Self {
            resource: Resource::Repository(gun),
            actions,
        }
    }

    /// `registry:catalog:*` (notary's `buildCatalogRecord`).
    pub fn catalog() -> Self {
        Self {
            resource: Resource::Catalog,
            actions: ALL,
        }
    }

    /// The challenge's `scope`: `repository:<gun>:push,pull`.
    pub fn scope(&self) -> String {
        let actions: Vec<&str> = self.actions.iter().map(|a| a.as_str()).collect();
        format!(
            "{}:{}:{}",
            self.resource.kind(),
            self.resource.name(),
            actions.join(",")
        )
    }
}

/// One `access` entry of a token: `{"type","name","actions"}` (`class` is
/// ignored, as PROTOCOL.md §8 says).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Grant {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub actions: Vec<String>,
}

/// Everything a verified token allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants(pub Vec<Grant>);

impl Grants {
    /// Whether every required action is granted on the required resource.
    /// Entries for the same resource add up, as distribution's `accessSet`.
    pub fn allows(&self, required: &Required<'_>) -> bool {
        let kind = required.resource.kind();
        let name = required.resource.name();
        required.actions.iter().all(|action| {
            self.0.iter().any(|grant| {
                grant.kind == kind
                    && grant.name == name
                    && grant
                        .actions
                        .iter()
                        .any(|granted| granted == "*" || granted == action.as_str())
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(kind: &str, name: &str, actions: &[&str]) -> Grant {
        Grant {
            kind: kind.into(),
            name: name.into(),
            actions: actions.iter().map(|a| (*a).to_string()).collect(),
        }
    }

    #[test]
    fn scopes_are_written_as_notary_writes_them() {
        assert_eq!(
            Required::repository("a/b", PUSH_PULL).scope(),
            "repository:a/b:push,pull"
        );
        assert_eq!(Required::repository("a", PULL).scope(), "repository:a:pull");
        assert_eq!(Required::repository("a", ALL).scope(), "repository:a:*");
        assert_eq!(Required::catalog().scope(), "registry:catalog:*");
    }

    #[test]
    fn grants_need_every_action_on_the_exact_name() {
        let grants = Grants(vec![grant("repository", "a/b", &["pull"])]);
        assert!(grants.allows(&Required::repository("a/b", PULL)));
        assert!(!grants.allows(&Required::repository("a/b", PUSH_PULL)));
        assert!(!grants.allows(&Required::repository("a/b", ALL)));
        assert!(!grants.allows(&Required::repository("a/b/c", PULL)));
        assert!(!grants.allows(&Required::repository("A/b", PULL)));
        assert!(!grants.allows(&Required::repository("a", PULL)));

        // Split over two entries still adds up.
        let split = Grants(vec![
            grant("repository", "a/b", &["push"]),
            grant("repository", "a/b", &["pull"]),
        ]);
        assert!(split.allows(&Required::repository("a/b", PUSH_PULL)));

        // `*` grants everything, including the admin `*`.
        let admin = Grants(vec![grant("repository", "a/b", &["*"])]);
        assert!(admin.allows(&Required::repository("a/b", ALL)));
        assert!(admin.allows(&Required::repository("a/b", PUSH_PULL)));

        // A repository grant is not the catalog.
        let catalog_named = Grants(vec![grant("repository", "catalog", &["*"])]);
        assert!(!catalog_named.allows(&Required::catalog()));
        let catalog = Grants(vec![grant("registry", "catalog", &["*"])]);
        assert!(catalog.allows(&Required::catalog()));
        assert!(!Grants::default().allows(&Required::repository("a", PULL)));
    }
}

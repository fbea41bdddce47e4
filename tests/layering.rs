#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The module layering of STYLE.md §2, enforced: a layer imports only the
//! layers below it, and the pure layers use no I/O frameworks.

use std::fs;
use std::path::{Path, PathBuf};

/// (module, crate modules it must not use, external crates it must not use)
const RULES: &[(&str, &[&str], &[&str])] = &[
    (
        "tuf",
        &[
            "policy", "registry", "store", "signer", "repo", "server", "app", "config",
        ],
        &["tokio", "axum", "sqlx", "reqwest"],
    ),
    (
        "policy",
        &[
            "registry", "store", "signer", "repo", "server", "app", "config",
        ],
        &["tokio", "axum", "sqlx", "reqwest"],
    ),
    (
        "auth",
        &[
            "policy", "store", "signer", "repo", "server", "app", "config",
        ],
        &["tokio", "axum", "sqlx", "reqwest"],
    ),
    (
        "store",
        &[
            "policy", "registry", "signer", "repo", "server", "app", "config",
        ],
        &["axum", "reqwest"],
    ),
    (
        "signer",
        &["registry", "repo", "server", "app", "config"],
        &["axum", "reqwest"],
    ),
    // The registry client sits beside the policy it answers to: the repo
    // reaches it only through `policy::ManifestSource`.
    (
        "registry",
        &["store", "signer", "repo", "server", "app", "config"],
        &["axum", "sqlx"],
    ),
    (
        "repo",
        &["registry", "server", "app", "config"],
        &["axum", "sqlx", "reqwest"],
    ),
    ("server", &["app", "config"], &["sqlx"]),
    // The `verify` client is a consumer of the pure layers (and of the
    // registry client's HTTP stack): nothing of the server side.
    (
        "client",
        &["store", "signer", "repo", "server", "app", "config"],
        &["axum", "sqlx"],
    ),
];

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if dir.is_file() {
        found.push(dir.to_path_buf());
        return found;
    }
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}

#[test]
fn layers_import_only_what_lies_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for (module, modules, crates) in RULES {
        let root = if src.join(module).is_dir() {
            src.join(module)
        } else {
            src.join(format!("{module}.rs"))
        };
        let files = sources(&root);
        assert!(!files.is_empty(), "no sources for {module}");
        for file in files {
            let text = fs::read_to_string(&file).unwrap();
            for (number, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for forbidden in *modules {
                    if code.contains(&format!("crate::{forbidden}::"))
                        || code.contains(&format!("crate::{forbidden};"))
                        || code.contains(&format!("crate::{forbidden}}}"))
                    {
                        violations.push(format!(
                            "{}:{}: uses crate::{forbidden}",
                            file.display(),
                            number + 1
                        ));
                    }
                }
                for forbidden in *crates {
                    if code.contains(&format!("{forbidden}::"))
                        && !code.contains(&format!("_{forbidden}::"))
                    {
                        violations.push(format!(
                            "{}:{}: uses {forbidden}",
                            file.display(),
                            number + 1
                        ));
                    }
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The Kubernetes manifests (deploy/kubernetes/), checked without a cluster:
//! * PyPI's `kubernetes-validate`, which carries the Kubernetes API schemas,
//!   validates every resource strictly (unknown fields refused);
//! * the ConfigMap's `config.json` loads with notarium's own configuration
//!   loader, with no warning, once its files exist;
//! * the pieces agree: every file the configuration names is mounted, the
//!   probes ask the health endpoint on the container's port, the Service,
//!   the PodDisruptionBudget and the Deployment select the same pods, the
//!   Job runs `notarium migrate`, everything runs as the image's user.
//!
//! `scripts/test` installs `kubernetes-validate` into
//! `target/kubernetes-validate` (a Python venv); `KUBERNETES_VALIDATE` may
//! name another copy. Missing, the test fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use notarium::config::{Config, ConfigOverrides, ListenHost, LogFormat, StorageConfig};
use serde_json::Value;

const FILES: &[&str] = &[
    "configmap.yaml",
    "secret.yaml",
    "migrate-job.yaml",
    "deployment.yaml",
    "service.yaml",
    "pdb.yaml",
];

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// The `kubernetes-validate` program, or a panic saying how to get it.
fn validator() -> PathBuf {
    if let Some(path) = std::env::var_os("KUBERNETES_VALIDATE") {
        return PathBuf::from(path);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/kubernetes-validate/bin");
    if venv.join("kubernetes-validate").is_file() {
        return venv.join("kubernetes-validate");
    }
    panic!(
        "kubernetes-validate is not installed: scripts/test installs it (python3 -m venv \
         target/kubernetes-validate && target/kubernetes-validate/bin/pip install \
         kubernetes-validate), or set KUBERNETES_VALIDATE"
    )
}

/// Every document of every manifest, as JSON (with the venv's PyYAML, which
/// kubernetes-validate depends on).
fn documents() -> Vec<Value> {
    let python = validator().with_file_name("python3");
    let files: Vec<PathBuf> = FILES.iter().map(|f| manifests_dir().join(f)).collect();
    let output = Command::new(&python)
        .arg("-c")
        .arg(
            "import json, sys, yaml\n\
             docs = [d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]\n\
             print(json.dumps(docs))",
        )
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    assert!(
        output.status.success(),
        "reading the manifests failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn manifests_pass_the_kubernetes_schemas() {
    let output = Command::new(validator())
        .arg("--strict")
        .args(FILES)
        .current_dir(manifests_dir())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "kubernetes-validate:\n{text}");
    // One "passed" line per resource: nothing was skipped for want of a schema.
    let resources = documents().len();
    assert_eq!(text.matches(" passed ").count(), resources, "{text}");
    assert!(!text.contains("WARN"), "{text}");
}

#[test]
fn the_configmap_is_a_configuration_notarium_accepts() {
    let docs = documents();
    let text = find(&docs, "ConfigMap", "notarium-config")["data"]["config.json"]
        .as_str()
        .unwrap()
        .to_string();
    // The files live where the Deployment mounts them; here, in a temporary
    // folder standing for /etc/notarium.
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc/notarium");
    for (file, body) in [
        ("db/password", "pw\n"),
        ("db/ca.crt", ""),
        ("token/token-ca.pem", ""),
        ("tls/tls.crt", ""),
        ("tls/tls.key", ""),
    ] {
        std::fs::create_dir_all(etc.join(file).parent().unwrap()).unwrap();
        std::fs::write(etc.join(file), body).unwrap();
    }
    let path = root.path().join("config.json");
    std::fs::write(
        &path,
        text.replace("/etc/notarium/", &format!("{}/", etc.display())),
    )
    .unwrap();
    let no_env = |_: &str| None;
    let (config, warnings) = Config::load(Some(&path), &no_env, ConfigOverrides::default())
        .unwrap_or_else(|e| panic!("config.json: {e}"));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.logging.format, LogFormat::Json);
    let StorageConfig::Postgres(pg) = &config.storage else {
        panic!("the manifests run several replicas: PostgreSQL, not SQLite");
    };
    // The Job migrates; replicas do not race to.
    assert!(!pg.migrate_on_start);
    assert_eq!(config.server.http_addr.port, 4443);
}

#[test]
fn the_resources_agree_with_each_other_and_the_image() {
    let docs = documents();
    let deployment = find(&docs, "Deployment", "notarium");
    let spec = &deployment["spec"];
    assert!(spec["replicas"].as_u64().unwrap() >= 2, "{spec}");
    let labels = &spec["template"]["metadata"]["labels"];
    assert_eq!(&spec["selector"]["matchLabels"], labels);
    let service = find(&docs, "Service", "notarium");
    let pdb = find(&docs, "PodDisruptionBudget", "notarium");
    assert_eq!(&service["spec"]["selector"], labels);
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);
    assert!(
        pdb["spec"]["minAvailable"].as_u64().unwrap() < spec["replicas"].as_u64().unwrap(),
        "a PDB as large as the Deployment blocks every drain"
    );

    let pod = &spec["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"], 10001);
    let container = &pod["containers"][0];
    assert_eq!(container["ports"][0]["containerPort"], 4443);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "https");
    let readiness = &container["readinessProbe"]["httpGet"];
    assert_eq!(readiness["path"], "/_notary_server/health");
    assert_eq!(readiness["scheme"], "HTTPS");
    assert_eq!(readiness["port"], container["ports"][0]["name"]);
    assert_eq!(
        container["livenessProbe"]["exec"]["command"],
        serde_json::json!(["notarium", "health"])
    );

    // Every file the configuration names is under a mounted volume, and
    // every mounted volume exists (a Secret or the ConfigMap).
    let config = find(&docs, "ConfigMap", "notarium-config")["data"]["config.json"]
        .as_str()
        .unwrap()
        .to_string();
    let mounts: Vec<(String, String)> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["mountPath"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mounted = |file: &str| {
        mounts
            .iter()
            .any(|(_, dir)| file.starts_with(&format!("{dir}/")))
    };
    for file in config
        .split('"')
        .chain(config.split(['=', '&']))
        .filter(|s| s.starts_with("/etc/notarium/"))
    {
        assert!(mounted(file), "{file} is not mounted: {mounts:?}");
    }
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(mounted(args.last().unwrap()), "{args:?}");
    let env_keys_dir = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "NOTARIUM_KEYS_DIR")
        .map(|e| e["value"].as_str().unwrap().to_string())
        .unwrap();
    let keys_volume = &mounts
        .iter()
        .find(|(_, dir)| *dir == env_keys_dir)
        .unwrap()
        .0;
    for volume in pod["volumes"].as_array().unwrap() {
        if let Some(secret) = volume["secret"]["secretName"].as_str() {
            let secret = find(&docs, "Secret", secret);
            if volume["name"] == *keys_volume {
                // keys_dir holds the passphrase file notarium reads.
                assert!(secret["stringData"].get("passphrase").is_some(), "{secret}");
            }
        } else {
            let name = volume["configMap"]["name"].as_str().unwrap();
            find(&docs, "ConfigMap", name);
        }
    }

    let job = find(&docs, "Job", "notarium-migrate");
    let job_pod = &job["spec"]["template"]["spec"];
    let job_container = &job_pod["containers"][0];
    assert_eq!(job_container["args"][0], "migrate");
    assert_eq!(job_container["image"], container["image"]);
    assert_eq!(job_pod["securityContext"]["runAsUser"], 10001);
}

/// The container image's default configuration (`deploy/image/notarium.json`,
/// copied into the runtime stage) loads cleanly and keeps state in the volume.
#[test]
fn the_image_default_configuration_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/image/notarium.json");
    let no_env = |_: &str| None;
    let (config, warnings) = Config::load(Some(&path), &no_env, ConfigOverrides::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.server.http_addr.port, 4443);
    assert_eq!(config.server.http_addr.host, ListenHost::Unspecified);
    assert_eq!(config.logging.format, LogFormat::Json);
    assert_eq!(config.server.keys_dir, Path::new("/var/lib/notarium/keys"));
    let StorageConfig::Sqlite { path } = &config.storage else {
        panic!("the image's default is SQLite in its volume");
    };
    assert_eq!(path, Path::new("/var/lib/notarium/data/notarium.db"));
}

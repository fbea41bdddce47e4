//! The docker CLI as one user, talking to the host's Docker engine, with
//! content trust pointed at a `Notarium` exactly as a user would do it:
//! * a private `HOME` and `DOCKER_CONFIG` (the real `~/.docker` is never
//!   touched; docker's trust dir is `$DOCKER_CONFIG/trust`);
//! * `DOCKER_CONTENT_TRUST_SERVER=https://127.0.0.1:PORT`;
//! * notarium's CA copied to `$DOCKER_CONFIG/tls/127.0.0.1:PORT/ca.crt`;
//! * `DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE` / `..._REPOSITORY_PASSPHRASE`
//!   answer the passphrase prompts. Both are `common::PASSPHRASE`, the one
//!   `NotaryClient` gives the notary CLI, so `notary -d $DOCKER_CONFIG/trust`
//!   and docker can use each other's keys.
//!
//! Content trust is off for `run`/`ok` and on (`DOCKER_CONTENT_TRUST=1`) for
//! `run_trusted`/`ok_trusted`. Images are tracked by repository and removed
//! from the engine by `remove_images` (and, best effort, on drop).
//!
//! Use from a test file that also declares `mod common;`:
//! `#[path = "support/dockercli.rs"] mod dockercli;`
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{Notarium, NotaryClient, PASSPHRASE, all_output, require, run, run_with_stdin};

pub struct DockerCli {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub home: PathBuf,
    /// The trust server URL (`https://127.0.0.1:PORT`).
    pub server: String,
    /// The trust server's CA.
    pub ca: PathBuf,
    /// Repositories (`host/path`, no tag) whose local images are ours.
    repositories: RefCell<BTreeSet<String>>,
    images: RefCell<usize>,
}

impl DockerCli {
    /// A docker user in `dir` whose content trust server is `notarium`.
    /// Panics if the docker CLI is missing or the engine does not answer.
    pub fn new(dir: &Path, notarium: &Notarium) -> Self {
        Self::with_trust_server(dir, &notarium.url, &notarium.ca)
    }

    /// A docker user in `dir` whose content trust server is `url`
    /// (`https://127.0.0.1:PORT`, any Notary server) with CA `ca`.
    pub fn with_trust_server(dir: &Path, url: &str, ca: &Path) -> Self {
        require("docker", "docker.io");
        let home = dir.join("home");
        let config = dir.join("docker-config");
        std::fs::create_dir_all(&home).unwrap();
        let tls = config
            .join("tls")
            .join(url.trim_start_matches("https://").trim_end_matches('/'));
        std::fs::create_dir_all(&tls).unwrap();
        std::fs::copy(ca, tls.join("ca.crt")).unwrap();
        let docker = Self {
            dir: dir.to_path_buf(),
            config,
            home,
            server: url.to_string(),
            ca: ca.to_path_buf(),
            repositories: RefCell::default(),
            images: RefCell::new(0),
        };
        let engine = docker.run(&["version", "--format", "{{.Server.Version}}"]);
        assert!(
            engine.status.success(),
            "this test needs a running Docker engine (docker.io; /var/run/docker.sock):\n{}",
            String::from_utf8_lossy(&engine.stderr)
        );
        docker
    }

    /// docker's trust directory (`$DOCKER_CONFIG/trust`).
    pub fn trust_dir(&self) -> PathBuf {
        self.config.join("trust")
    }

    /// `docker ARGS` with this user's environment, content trust off.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("docker");
        command
            .args(args)
            .current_dir(&self.dir)
            .env("HOME", &self.home)
            .env("DOCKER_CONFIG", &self.config)
            .env("DOCKER_CONTENT_TRUST_SERVER", &self.server)
            .env("DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE", PASSPHRASE)
            .env("DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE", PASSPHRASE)
            .env("DOCKER_CLI_HINTS", "false")
            .env_remove("DOCKER_CONTENT_TRUST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH");
        command
    }

    /// Runs `docker ARGS` with content trust off.
    pub fn run(&self, args: &[&str]) -> Output {
        run(&mut self.command(args))
    }

    /// Runs `docker ARGS` with `DOCKER_CONTENT_TRUST=1`.
    pub fn run_trusted(&self, args: &[&str]) -> Output {
        run(self.command(args).env("DOCKER_CONTENT_TRUST", "1"))
    }

    /// `run`, which must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "docker {args:?} failed");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `run_trusted`, which must succeed; returns stdout.
    pub fn ok_trusted(&self, args: &[&str]) -> String {
        let output = self.run_trusted(args);
        assert!(
            output.status.success(),
            "DOCKER_CONTENT_TRUST=1 docker {args:?} failed"
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `docker login HOST -u USER --password-stdin`; must succeed.
    pub fn login(&self, host: &str, user: &str, password: &str) {
        let output = run_with_stdin(
            &mut self.command(&["login", host, "-u", user, "--password-stdin"]),
            password,
        );
        let out = all_output(&output);
        assert!(output.status.success(), "docker login failed:\n{out}");
        assert!(out.contains("Login Succeeded"), "{out}");
    }

    /// A push of `reference` (`repository:tag`) with content trust, which
    /// must succeed and sign; returns the digest docker reports.
    pub fn signed_push(&self, reference: &str) -> String {
        let output = self.run_trusted(&["push", reference]);
        let out = all_output(&output);
        assert!(output.status.success(), "signed push failed:\n{out}");
        assert!(
            out.contains(&format!("Successfully signed {reference}")),
            "{out}"
        );
        let tag = reference.rsplit_once(':').map_or(reference, |(_, tag)| tag);
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{tag}: digest: ")))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no digest line in:\n{out}"))
            .to_string()
    }

    /// A pull of `reference` with content trust, which must succeed and
    /// resolve it, through the trust data, to `digest`. The image is
    /// tracked for [`DockerCli::remove_images`].
    pub fn verified_pull(&self, reference: &str, digest: &str) {
        let output = self.run_trusted(&["pull", reference]);
        self.track(reference);
        let out = all_output(&output);
        assert!(output.status.success(), "verified pull failed:\n{out}");
        assert!(
            out.contains(&format!("Pull (1 of 1): {reference}@{digest}")),
            "{out}"
        );
    }

    /// The notary CLI on docker's trust directory, pointed at the same
    /// trust server (same passphrases as docker).
    pub fn notary(&self) -> NotaryClient {
        NotaryClient::new(self.trust_dir(), &self.server, &self.ca)
    }

    /// Builds a tiny image (a tar of a few files whose content depends on
    /// `seed`), `docker import`s it as `reference` and returns its image ID
    /// (`sha256:…`). Different seeds give different images.
    pub fn make_image(&self, reference: &str, seed: &str) -> String {
        require("tar", "tar");
        let n = {
            let mut images = self.images.borrow_mut();
            *images += 1;
            *images
        };
        let rootfs = self.dir.join(format!("image-{n}"));
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::write(
            rootfs.join("etc/notarium-test"),
            format!("image for {reference}\n"),
        )
        .unwrap();
        std::fs::write(rootfs.join("seed.txt"), format!("{seed}\n")).unwrap();
        let tar = self.dir.join(format!("image-{n}.tar"));
        let archived = run(Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg("."));
        assert!(archived.status.success(), "tar failed");
        self.track(reference);
        let id = self.ok(&["import", tar.to_str().unwrap(), reference]);
        let id = id.trim().to_string();
        assert!(id.starts_with("sha256:"), "docker import printed {id:?}");
        id
    }

    /// `docker tag SOURCE TARGET` (TARGET's repository is tracked).
    pub fn tag(&self, source: &str, target: &str) {
        self.track(target);
        self.ok(&["tag", source, target]);
    }

    /// The local image ID of `reference`, or `None` if there is none.
    pub fn image_id(&self, reference: &str) -> Option<String> {
        let output = self.run(&["image", "inspect", "--format", "{{.Id}}", reference]);
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// `RepoDigests` of the local image `reference`.
    pub fn repo_digests(&self, reference: &str) -> Vec<String> {
        let out = self.ok(&[
            "image",
            "inspect",
            "--format",
            "{{range .RepoDigests}}{{println .}}{{end}}",
            reference,
        ]);
        out.lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Makes `remove_images` (and drop) clean up `reference`'s repository.
    pub fn track(&self, reference: &str) {
        self.repositories
            .borrow_mut()
            .insert(repository_of(reference).to_string());
    }

    /// Every local reference (`repo:tag`, or `repo@digest` for untagged
    /// images) in the tracked repositories.
    pub fn local_references(&self) -> Vec<String> {
        self.list_references()
            .unwrap_or_else(|e| panic!("cannot list local images: {e}"))
    }

    /// `local_references` without panicking (usable while unwinding).
    fn list_references(&self) -> Result<Vec<String>, String> {
        let mut references = Vec::new();
        for repository in self.repositories.borrow().iter() {
            let output = self
                .command(&[
                    "images",
                    "--digests",
                    "--format",
                    "{{.Repository}} {{.Tag}} {{.Digest}}",
                    repository,
                ])
                .output()
                .map_err(|e| e.to_string())?;
            if !output.status.success() {
                return Err(String::from_utf8_lossy(&output.stderr).into_owned());
            }
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                match fields.as_slice() {
                    [repo, tag, _] if *tag != "<none>" => references.push(format!("{repo}:{tag}")),
                    [repo, _, digest] if *digest != "<none>" => {
                        references.push(format!("{repo}@{digest}"));
                    }
                    _ => {}
                }
            }
        }
        references.sort();
        references.dedup();
        Ok(references)
    }

    /// `docker rmi` every local image of the tracked repositories (by
    /// reference: an image also tagged elsewhere is only untagged); asserts
    /// that none is left.
    pub fn remove_images(&self) {
        for _ in 0..3 {
            let references = self.local_references();
            if references.is_empty() {
                return;
            }
            let mut args = vec!["rmi"];
            args.extend(references.iter().map(String::as_str));
            self.run(&args);
        }
        let left = self.local_references();
        assert!(left.is_empty(), "images left behind: {left:?}");
    }
}

impl Drop for DockerCli {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.remove_images();
            return;
        }
        // The test failed: clean up as well as possible, never panicking.
        for _ in 0..2 {
            let Ok(references) = self.list_references() else {
                return;
            };
            if references.is_empty() {
                return;
            }
            let mut args = vec!["rmi"];
            args.extend(references.iter().map(String::as_str));
            let _ = self.command(&args).output();
        }
    }
}

/// `host:port/path` of `host:port/path:tag` or `host:port/path@sha256:…`.
pub fn repository_of(reference: &str) -> &str {
    if let Some((repository, _)) = reference.split_once('@') {
        return repository;
    }
    match reference.rfind(':') {
        Some(colon) if !reference[colon..].contains('/') => &reference[..colon],
        _ => reference,
    }
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Replicas are one server: three `notarium serve` processes on one
//! PostgreSQL database behind a real haproxy (TCP passthrough of TLS, round
//! robin, health checks on /_notary_server/health), started once for this
//! test binary. The tests take turns (some kill a replica or stop the
//! database) and leave the cluster whole for the next.

#[path = "support/builder.rs"]
mod builder;
mod common;
use common::postgres;
#[path = "support/dockercli.rs"]
mod dockercli;
#[path = "support/registry.rs"]
mod registry;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use builder::ClientKeys;
use common::{Notarium, NotaryClient, Process, stdout, wait_for_port};
use dockercli::DockerCli;
use notarium::signer::{KeyService, Passphrase};
use notarium::store::{PoolSettings, PostgresStore, Store};
use notarium::tuf::{KeyAlgorithm, PublicKey, RoleName, SignedFile, Snapshot, Timestamp, sha256};
use postgres::{PASSWORD, PgServer};
use registry::Registry;
use serde_json::json;
use time::OffsetDateTime;

const REPLICAS: usize = 3;

struct Cluster {
    db: &'static PgServer,
    replicas: Vec<Notarium>,
    /// The load balancer's base URL.
    lb: String,
    /// The development CA every replica's certificate comes from.
    ca: PathBuf,
    dir: PathBuf,
    /// Every process ID started, for the watchdog.
    pids: PathBuf,
    _haproxy: Process,
    /// Closing its stdin (this binary exiting) kills every replica.
    _watchdog: Child,
}

/// The cluster, for one test at a time.
fn cluster() -> MutexGuard<'static, Cluster> {
    static CLUSTER: OnceLock<Mutex<Cluster>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| Mutex::new(Cluster::start()))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn haproxy() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("haproxy"))
            .find(|candidate| candidate.is_file())
    });
    on_path
        .or_else(|| Some(PathBuf::from("/usr/sbin/haproxy")).filter(|path| path.is_file()))
        .unwrap_or_else(|| {
            panic!("`haproxy` is not installed: this test needs it (Debian package `haproxy`; `scripts/test` installs it)")
        })
}

impl Cluster {
    fn start() -> Self {
        let haproxy_bin = haproxy();
        let db = PgServer::shared();
        let database = db.database();
        let dir = std::env::temp_dir().join(format!("notarium-replicas-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pids = dir.join("pids");
        std::fs::write(&pids, "").unwrap();
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "cat >/dev/null; kill -9 $(cat {pids}) 2>/dev/null; rm -rf {dir}",
                pids = pids.display(),
                dir = dir.display()
            ))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        // What every replica shares: the database (password in a file), and
        // the keys directory with the key-sealing passphrase and TLS files.
        let keys = dir.join("keys");
        let password_file = dir.join("db-password");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        let config = json!({
            "server": {"keys_dir": keys},
            "storage": {
                "backend": "postgres",
                "db_url": db.url(&database),
                "password_file": password_file,
                "migrate_on_start": true,
                "acquire_timeout_seconds": 1,
            },
        });
        // One after another: the first creates the shared passphrase and
        // certificates, the others find them.
        let replicas: Vec<Notarium> = (0..REPLICAS)
            .map(|i| {
                let replica = Notarium::start(&dir.join(format!("replica-{i}")), config.clone());
                note_pid(&pids, &replica);
                replica
            })
            .collect();

        let port = common::free_port();
        let servers: String = replicas
            .iter()
            .enumerate()
            .map(|(i, replica)| {
                format!(
                    "  server r{i} {} check check-ssl verify none inter 300 fall 2 rise 1\n",
                    replica.addr
                )
            })
            .collect();
        let haproxy_config = dir.join("haproxy.cfg");
        std::fs::write(
            &haproxy_config,
            format!(
                "global\n  maxconn 512\n\
                 defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n  retries 3\n  option redispatch\n\
                 frontend notary\n  bind 127.0.0.1:{port}\n  default_backend replicas\n\
                 backend replicas\n  balance roundrobin\n  option httpchk GET /_notary_server/health\n{servers}"
            ),
        )
        .unwrap();
        let log = dir.join("haproxy.log");
        let mut child = Command::new(haproxy_bin)
            .arg("-db")
            .arg("-f")
            .arg(&haproxy_config)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("haproxy.err")).unwrap())
            .spawn()
            .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&pids)
            .and_then(|mut file| {
                std::io::Write::write_all(&mut file, format!("{}\n", child.id()).as_bytes())
            })
            .unwrap();
        wait_for_port(
            format!("127.0.0.1:{port}").parse().unwrap(),
            &mut child,
            &log,
        );
        let cluster = Self {
            db,
            replicas,
            lb: format!("https://127.0.0.1:{port}"),
            ca: keys.join("dev-ca.crt"),
            dir,
            pids,
            _haproxy: Process { child, log },
            _watchdog: watchdog,
        };
        cluster.wait_until_balanced();
        cluster
    }

    /// Until the load balancer's checks see every replica healthy (it
    /// checks every 300 ms); the tests' assertions come after.
    fn wait_until_balanced(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Round robin over healthy replicas: REPLICAS answers in a row
            // through the balancer means every replica is up and in rotation
            // or the ones down are not; ask each directly too.
            let direct = self
                .replicas
                .iter()
                .all(|replica| get(&self.ca, &replica.url, "/_notary_server/health").0 == 200);
            let balanced =
                (0..REPLICAS).all(|_| get(&self.ca, &self.lb, "/_notary_server/health").0 == 200);
            if direct && balanced {
                // One more check interval so haproxy has marked them up.
                std::thread::sleep(Duration::from_millis(700));
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn notary(&self, trust_dir: PathBuf, url: &str) -> NotaryClient {
        NotaryClient::new(trust_dir, url, &self.ca)
    }

    fn work(&self, name: &str) -> PathBuf {
        let path = self.dir.join("work").join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }
}

fn note_pid(pids: &Path, replica: &Notarium) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(pids).unwrap();
    writeln!(file, "{}", replica.pid().unwrap()).unwrap();
}

/// (status, Retry-After if any, body) of a GET, or status 0 when the
/// connection failed.
fn get(ca: &Path, base: &str, path: &str) -> (u16, Option<String>, Vec<u8>) {
    let headers = tempfile::NamedTempFile::new().unwrap();
    let body = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new("curl")
        .arg("-sS")
        .arg("--max-time")
        .arg("10")
        .arg("--cacert")
        .arg(ca)
        .arg("-D")
        .arg(headers.path())
        .arg("-o")
        .arg(body.path())
        .arg("-w")
        .arg("%{http_code}")
        .arg(format!("{base}{path}"))
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let retry_after = std::fs::read_to_string(headers.path())
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("retry-after")
                .then(|| value.trim().to_string())
        });
    (
        status,
        retry_after,
        std::fs::read(body.path()).unwrap_or_default(),
    )
}

/// POST of metadata files as notary sends them; (status, body).
fn post(ca: &Path, base: &str, gun: &str, parts: &[(&str, &Path)]) -> (u16, String) {
    let mut command = Command::new("curl");
    command
        .arg("-sS")
        .arg("--cacert")
        .arg(ca)
        .arg("-w")
        .arg("\n%{http_code}");
    for (role, file) in parts {
        command
            .arg("-F")
            .arg(format!("files=@{};filename={role}", file.display()));
    }
    let output = command
        .arg(format!("{base}/v2/{gun}/_trust/tuf/"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

fn version_of(bytes: &[u8]) -> i64 {
    SignedFile::parse(bytes).unwrap().common().unwrap().version
}

/// The current `role` of `gun` on every replica, asserted identical.
fn same_everywhere(cluster: &Cluster, gun: &str, role: &str) -> Vec<u8> {
    let path = format!("/v2/{gun}/_trust/tuf/{role}.json");
    let mut seen: Option<Vec<u8>> = None;
    for (i, replica) in cluster.replicas.iter().enumerate() {
        let (status, _, body) = get(&cluster.ca, &replica.url, &path);
        assert_eq!(
            status,
            200,
            "replica {i}: {}",
            String::from_utf8_lossy(&body)
        );
        if let Some(first) = &seen {
            assert!(first == &body, "replica {i} serves another {role}");
        }
        seen = Some(body);
    }
    seen.unwrap()
}

#[test]
fn the_notary_client_through_the_balancer_and_reads_on_every_replica() {
    let cluster = cluster();
    let work = cluster.work("client");
    let gun = "notarium.test/replicas/app";
    let payload = work.join("payload.txt");
    std::fs::write(&payload, b"one\n").unwrap();
    let owner = cluster.notary(work.join("owner"), &cluster.lb);
    let out = owner.ok(&["init", gun, "-p"]);
    assert!(out.contains("Successfully published changes"), "{out}");
    owner.ok(&["add", gun, "v1", payload.to_str().unwrap(), "-p"]);
    let reader = cluster.notary(work.join("reader"), &cluster.lb);
    let listing = reader.ok(&["list", gun]);
    assert!(listing.contains("v1"), "{listing}");

    // Every replica has the current files in its cache now.
    let before = same_everywhere(&cluster, gun, "timestamp");
    same_everywhere(&cluster, gun, "targets");

    // A publish answered by replica 0 ...
    let on_zero = cluster.notary(work.join("owner"), &cluster.replicas[0].url);
    on_zero.ok(&["add", gun, "v2", payload.to_str().unwrap(), "-p"]);
    let (status, _, published) = get(
        &cluster.ca,
        &cluster.replicas[0].url,
        &format!("/v2/{gun}/_trust/tuf/timestamp.json"),
    );
    assert_eq!(status, 200);
    assert!(version_of(&published) > version_of(&before));
    // ... is what replicas 1 and 2 serve on the very next request.
    for replica in &cluster.replicas[1..] {
        let (status, _, timestamp) = get(
            &cluster.ca,
            &replica.url,
            &format!("/v2/{gun}/_trust/tuf/timestamp.json"),
        );
        assert_eq!(status, 200);
        assert!(timestamp == published, "a replica served a stale timestamp");
        let (status, _, targets) = get(
            &cluster.ca,
            &replica.url,
            &format!("/v2/{gun}/_trust/tuf/targets.json"),
        );
        assert_eq!(status, 200);
        assert!(
            String::from_utf8_lossy(&targets).contains("\"v2\""),
            "a replica served stale targets"
        );
    }
    let listing = reader.ok(&["list", gun]);
    assert!(
        listing.contains("v1") && listing.contains("v2"),
        "{listing}"
    );

    // A delete on replica 1 is seen by replica 2 at once.
    let (status, _, _) = get(
        &cluster.ca,
        &cluster.replicas[2].url,
        &format!("/v2/{gun}/_trust/tuf/root.json"),
    );
    assert_eq!(status, 200);
    let on_one = cluster.notary(work.join("owner"), &cluster.replicas[1].url);
    on_one.ok(&["delete", gun, "--remote"]);
    for role in ["root", "targets", "timestamp"] {
        let (status, _, _) = get(
            &cluster.ca,
            &cluster.replicas[2].url,
            &format!("/v2/{gun}/_trust/tuf/{role}.json"),
        );
        assert_eq!(status, 404, "{role} served after the delete");
    }
}

/// A repository made over HTTP with our own client keys: root names the
/// server's snapshot and timestamp keys, so the server signs those.
fn builder_repository(cluster: &Cluster, gun: &str, work: &Path) -> ClientKeys {
    let now = OffsetDateTime::now_utc();
    let keys = ClientKeys::new(gun, now);
    let server_key = |role: &str| -> PublicKey {
        let (status, _, body) = get(
            &cluster.ca,
            &cluster.replicas[0].url,
            &format!("/v2/{gun}/_trust/tuf/{role}.key"),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    };
    let snapshot = server_key("snapshot");
    let timestamp = server_key("timestamp");
    let root = work.join("root.json");
    std::fs::write(&root, keys.root(1, &snapshot, &timestamp, now)).unwrap();
    let targets = work.join("targets-1.json");
    std::fs::write(&targets, keys.targets(1, &[], now)).unwrap();
    let (status, body) = post(
        &cluster.ca,
        &cluster.replicas[1].url,
        gun,
        &[("root", &root), ("targets", &targets)],
    );
    assert_eq!(status, 200, "{body}");
    keys
}

#[test]
fn racing_publishers_on_different_replicas_one_wins_each_round() {
    let cluster = cluster();
    let work = cluster.work("race");
    let gun = "notarium.test/replicas/race";
    let keys = builder_repository(&cluster, gun, &work);
    let rounds = 6;
    let mut conflicts = 0;
    for round in 0..rounds {
        let version = 2 + round;
        let now = OffsetDateTime::now_utc();
        let uploads: Vec<PathBuf> = (0..REPLICAS)
            .map(|racer| {
                let path = work.join(format!("targets-{version}-{racer}.json"));
                // Enough targets that each attempt takes a while to check,
                // so the attempts surely overlap.
                let names: Vec<String> = (0..300)
                    .map(|i| format!("round-{round}-racer-{racer}-{i:03}"))
                    .collect();
                std::fs::write(&path, keys.targets(version as i64, &names, now)).unwrap();
                path
            })
            .collect();
        let barrier = Barrier::new(REPLICAS);
        // Each racer on its own replica; (status, body, start, end).
        let results: Vec<(u16, String, Instant, Instant)> = std::thread::scope(|scope| {
            let handles: Vec<_> = uploads
                .iter()
                .zip(&cluster.replicas)
                .map(|(upload, replica)| {
                    let barrier = &barrier;
                    let ca = &cluster.ca;
                    scope.spawn(move || {
                        barrier.wait();
                        let start = Instant::now();
                        let (status, body) = post(ca, &replica.url, gun, &[("targets", upload)]);
                        (status, body, start, Instant::now())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        // The race happened: every attempt was in flight at once.
        let last_start = results.iter().map(|r| r.2).max().unwrap();
        let first_end = results.iter().map(|r| r.3).min().unwrap();
        assert!(
            last_start < first_end,
            "round {round}: the attempts did not overlap"
        );
        eprintln!(
            "round {round}: all in flight for {:?}",
            first_end - last_start
        );
        let winners = results.iter().filter(|r| r.0 == 200).count();
        assert_eq!(winners, 1, "round {round}: {results:?}");
        for (status, body, ..) in results.iter().filter(|r| r.0 != 200) {
            assert_eq!(*status, 400, "round {round}: {body}");
            // Either lost at the commit, or validated after the winner's
            // commit: both say to publish again.
            let changed = body.contains("changed while this update was being stored");
            conflicts += usize::from(changed);
            assert!(
                changed || body.contains("someone else published meanwhile"),
                "round {round}: {body}"
            );
        }
        let targets = same_everywhere(&cluster, gun, "targets");
        assert_eq!(version_of(&targets), version as i64);
    }
    eprintln!(
        "{conflicts} of {} losers lost at the commit",
        rounds * (REPLICAS - 1)
    );
    // The snapshot and timestamp the server signed agree on every replica.
    let timestamp = same_everywhere(&cluster, gun, "timestamp");
    assert_eq!(version_of(&timestamp), 1 + rounds as i64);
}

/// The targets version replica 0 serves for `gun`, after checking that the
/// timestamp names the snapshot served and the snapshot the targets served.
fn consistent_state(cluster: &Cluster, gun: &str) -> i64 {
    let fetch = |role: &str| {
        let (status, _, body) = get(
            &cluster.ca,
            &cluster.replicas[0].url,
            &format!("/v2/{gun}/_trust/tuf/{role}.json"),
        );
        assert_eq!(status, 200, "{role}: {}", String::from_utf8_lossy(&body));
        body
    };
    let (timestamp, snapshot, targets) = (fetch("timestamp"), fetch("snapshot"), fetch("targets"));
    let timestamp: Timestamp = SignedFile::parse(&timestamp)
        .unwrap()
        .body("timestamp")
        .unwrap();
    let named = timestamp.meta.get("snapshot").and_then(|m| m.sha256());
    assert_eq!(
        named,
        Some(&sha256(&snapshot)[..]),
        "timestamp and snapshot differ"
    );
    let snapshot: Snapshot = SignedFile::parse(&snapshot)
        .unwrap()
        .body("snapshot")
        .unwrap();
    let named = snapshot.meta.get("targets").and_then(|m| m.sha256());
    assert_eq!(
        named,
        Some(&sha256(&targets)[..]),
        "snapshot and targets differ"
    );
    version_of(&targets)
}

#[test]
fn kill_9_of_a_replica_during_publishes() {
    let mut cluster = cluster();
    let work = cluster.work("kill");
    let gun = "notarium.test/replicas/kill";
    let owner = cluster.notary(work.join("owner"), &cluster.lb);
    owner.ok(&["init", gun, "-p"]);
    let payload = work.join("payload.txt");
    std::fs::write(&payload, b"payload\n").unwrap();
    let tags: Vec<String> = (0..6).map(|i| format!("t{i}")).collect();

    let (first_done, first_seen) = std::sync::mpsc::channel();
    let failures = std::thread::scope(|scope| {
        let publisher = scope.spawn(|| {
            let mut failures = 0;
            for (i, tag) in tags.iter().enumerate() {
                let out = owner.run(&["add", gun, tag, payload.to_str().unwrap(), "-p"]);
                failures += usize::from(!out.status.success());
                if i == 0 {
                    first_done.send(()).unwrap();
                }
            }
            failures
        });
        first_seen.recv().unwrap();
        // While the next publishes run through the balancer.
        cluster.replicas[1].kill();
        publisher.join().unwrap()
    });
    // Whatever a failed attempt left staged publishes now, through the
    // balancer, on a live replica.
    let out = owner.ok(&["publish", gun]);
    assert!(
        out.contains("Successfully published") || out.contains("No unpublished changes"),
        "{out}"
    );
    eprintln!("{failures} publishes failed around the kill");

    // The chain verifies (the client checks every signature and version)
    // and holds every target: the old state or the new, never a mix.
    let reader = cluster.notary(work.join("reader"), &cluster.lb);
    let listing = reader.ok(&["list", gun]);
    for tag in &tags {
        assert!(listing.contains(tag.as_str()), "{tag} missing: {listing}");
    }
    for i in [0, 2] {
        let (status, _, _) = get(
            &cluster.ca,
            &cluster.replicas[i].url,
            &format!("/v2/{gun}/_trust/tuf/timestamp.json"),
        );
        assert_eq!(status, 200);
    }

    // A large upload to replica 1 directly, sent slowly so that the kill
    // certainly lands while the publish is in flight.
    cluster.replicas[1].restart();
    let pids = cluster.pids.clone();
    note_pid(&pids, &cluster.replicas[1]);
    let big_gun = "notarium.test/replicas/kill-big";
    let keys = builder_repository(&cluster, big_gun, &work);
    let names: Vec<String> = (0..3000).map(|i| format!("big-{i:05}")).collect();
    let big = work.join("targets-big.json");
    std::fs::write(&big, keys.targets(2, &names, OffsetDateTime::now_utc())).unwrap();
    let mut upload = Command::new("curl")
        .arg("-sS")
        .arg("--cacert")
        .arg(&cluster.ca)
        .arg("--limit-rate")
        .arg("100K")
        .arg("-o")
        .arg("/dev/null")
        .arg("-w")
        .arg("%{http_code}")
        .arg("-F")
        .arg(format!("files=@{};filename=targets", big.display()))
        .arg(format!(
            "{}/v2/{big_gun}/_trust/tuf/",
            cluster.replicas[1].url
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        upload.try_wait().unwrap().is_none(),
        "the upload ended before the kill"
    );
    cluster.replicas[1].kill();
    let answered = upload.wait_with_output().unwrap();
    assert_ne!(String::from_utf8_lossy(&answered.stdout).trim(), "200");
    let old = consistent_state(&cluster, big_gun);
    assert_eq!(old, 1, "the killed publish left a partial state");
    // The client's retry, through the balancer, lands on a live replica.
    let (status, body) = post(&cluster.ca, &cluster.lb, big_gun, &[("targets", &big)]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(consistent_state(&cluster, big_gun), 2);

    // Back in: it serves the same files as the others.
    cluster.replicas[1].restart();
    let pids = cluster.pids.clone();
    note_pid(&pids, &cluster.replicas[1]);
    same_everywhere(&cluster, gun, "timestamp");
    same_everywhere(&cluster, gun, "targets");
    cluster.wait_until_balanced();
}

#[test]
fn a_database_stop_and_start_in_the_middle_of_traffic() {
    let cluster = cluster();
    let work = cluster.work("outage");
    let gun = "notarium.test/replicas/outage";
    let owner = cluster.notary(work.join("owner"), &cluster.lb);
    owner.ok(&["init", gun, "-p"]);
    let timestamp = format!("/v2/{gun}/_trust/tuf/timestamp.json");

    let stop = std::sync::atomic::AtomicBool::new(false);
    let statuses = std::thread::scope(|scope| {
        // Traffic on every replica all along.
        let traffic = scope.spawn(|| {
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for replica in &cluster.replicas {
                    statuses.push(get(&cluster.ca, &replica.url, &timestamp).0);
                }
            }
            statuses
        });
        std::thread::sleep(Duration::from_millis(300));
        cluster.db.stop();
        for (i, replica) in cluster.replicas.iter().enumerate() {
            let (status, _, body) = get(&cluster.ca, &replica.url, "/_notary_server/health");
            assert_eq!(
                status,
                503,
                "replica {i} health: {}",
                String::from_utf8_lossy(&body)
            );
            let (status, retry_after, body) = get(&cluster.ca, &replica.url, &timestamp);
            let body = String::from_utf8_lossy(&body);
            assert_eq!(status, 503, "replica {i}: {body}");
            assert!(body.contains("UNAVAILABLE"), "replica {i}: {body}");
            assert!(retry_after.is_some(), "replica {i}: no Retry-After");
        }
        cluster.db.restart();
        // Every replica recovers by itself, on the first request.
        for (i, replica) in cluster.replicas.iter().enumerate() {
            assert_eq!(
                get(&cluster.ca, &replica.url, "/_notary_server/health").0,
                200,
                "replica {i}"
            );
            assert_eq!(
                get(&cluster.ca, &replica.url, &timestamp).0,
                200,
                "replica {i}"
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        traffic.join().unwrap()
    });
    assert!(
        statuses.iter().all(|status| matches!(status, 200 | 503)),
        "{statuses:?}"
    );
    assert!(statuses.contains(&503), "the traffic never met the outage");

    // The balancer takes them back; publishing works again.
    cluster.wait_until_balanced();
    let payload = work.join("payload.txt");
    std::fs::write(&payload, b"after\n").unwrap();
    owner.ok(&["add", gun, "after", payload.to_str().unwrap(), "-p"]);
    let listing = cluster
        .notary(work.join("reader"), &cluster.lb)
        .ok(&["list", gun]);
    assert!(listing.contains("after"), "{listing}");
}

/// A repository on `store` with a clock `ahead` of now (tests only: a cheap
/// key derivation; every replica seals with the same passphrase).
fn replica_repo(
    store: Arc<PostgresStore>,
    ahead: time::Duration,
) -> notarium::repo::Repo<PostgresStore> {
    let keys = KeyService::new(
        store.clone(),
        Passphrase::new("replicas"),
        KeyAlgorithm::EcdsaP256,
    )
    .with_pbkdf2_iterations(1000)
    .unwrap();
    let clock: notarium::repo::Clock = Arc::new(move || OffsetDateTime::now_utc() + ahead);
    notarium::repo::Repo::new(store, keys, clock)
}

fn replica_store(db: &PgServer, database: &str) -> Arc<PostgresStore> {
    let options = db
        .url(database)
        .parse::<sqlx::postgres::PgConnectOptions>()
        .unwrap()
        .password(PASSWORD);
    Arc::new(PostgresStore::connect_lazy(
        options,
        PoolSettings::default(),
    ))
}

/// Three replicas find the timestamp due at once and re-sign it
/// concurrently: every one answers (no error, no 500), all serve the same
/// new timestamp, and the database holds one timestamp per version.
#[test]
fn concurrent_timestamp_re_signs_on_replicas_serve_one_winner() {
    // Taking turns with the test that stops the database.
    let cluster = cluster();
    let db = cluster.db;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(re_sign_race(db));
    drop(cluster);
}

async fn re_sign_race(db: &'static PgServer) {
    let database = db.database();
    let stores: Vec<_> = (0..REPLICAS)
        .map(|_| replica_store(db, &database))
        .collect();
    stores[0].migrate().await.unwrap();
    let publisher = replica_repo(stores[0].clone(), time::Duration::ZERO);
    let now = OffsetDateTime::now_utc();
    let guns: Vec<String> = (0..5)
        .map(|i| format!("notarium.test/resign/app-{i}"))
        .collect();
    for gun in &guns {
        let keys = ClientKeys::new(gun, now);
        let timestamp = publisher
            .public_key(gun, &RoleName::Timestamp)
            .await
            .unwrap();
        let snapshot = publisher
            .public_key(gun, &RoleName::Snapshot)
            .await
            .unwrap();
        publisher
            .publish(
                gun,
                vec![
                    ("root".into(), keys.root(1, &snapshot, &timestamp, now)),
                    ("targets".into(), keys.targets(1, &[], now)),
                ],
                "tester",
            )
            .await
            .unwrap();
    }
    // Ten days on, the 14-day timestamps are due on every replica.
    let replicas: Vec<_> = stores
        .iter()
        .map(|store| Arc::new(replica_repo(store.clone(), time::Duration::days(10))))
        .collect();
    for gun in &guns {
        let reads = replicas.iter().map(|repo| {
            let repo = repo.clone();
            let gun = gun.clone();
            tokio::spawn(async move { repo.current(&gun, &RoleName::Timestamp).await })
        });
        let served: Vec<_> = futures_util::future::join_all(reads)
            .await
            .into_iter()
            .map(|joined| joined.unwrap().unwrap().data)
            .collect();
        assert_eq!(version_of(&served[0]), 2, "{gun}: not re-signed");
        assert!(
            served.iter().all(|data| *data == served[0]),
            "{gun}: replicas served different timestamps"
        );
        let versions = stores[1].latest_versions(gun).await.unwrap();
        assert!(
            versions.contains(&("timestamp".to_string(), 2)),
            "{versions:?}"
        );
        for replica in &replicas {
            let again = replica.current(gun, &RoleName::Timestamp).await.unwrap();
            assert!(again.data == served[0], "{gun}: a replica moved on");
        }
    }
}

/// The expiry gauges are counted from the one database: a repository
/// published through one replica expiring in 10 days is counted alike by
/// every replica (none had a counted report cached), and `notarium
/// expiring` on any replica's configuration lists it.
#[test]
fn every_replica_counts_expiring_repositories_from_the_one_database() {
    let cluster = cluster();
    let gun = "example.com/replicas/expiring";
    let now = OffsetDateTime::now_utc();
    let keys = ClientKeys::new(gun, now);
    let server_key = |role: &str| -> PublicKey {
        let (status, _, body) = get(
            &cluster.ca,
            &cluster.replicas[0].url,
            &format!("/v2/{gun}/_trust/tuf/{role}.key"),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    };
    let (snapshot, timestamp) = (server_key("snapshot"), server_key("timestamp"));
    let work = cluster.work("expiring");
    let root = work.join("root.json");
    std::fs::write(&root, keys.root(1, &snapshot, &timestamp, now)).unwrap();
    let mut body = keys.targets_body(1, &[], now);
    body["expires"] = json!(notarium::tuf::encoding::format_time(
        now + time::Duration::days(10)
    ));
    let targets = work.join("targets.json");
    std::fs::write(
        &targets,
        notarium::tuf::sign::sign_metadata(&body, &[&keys.targets_key]).unwrap(),
    )
    .unwrap();
    let (status, text) = post(
        &cluster.ca,
        &cluster.replicas[1].url,
        gun,
        &[("root", &root), ("targets", &targets)],
    );
    assert_eq!(status, 200, "{text}");

    let scraped: Vec<(String, String)> = cluster
        .replicas
        .iter()
        .map(|replica| {
            let (status, _, page) = get(&cluster.ca, &replica.url, "/metrics");
            assert_eq!(status, 200);
            let page = String::from_utf8(page).unwrap();
            let value = |series: &str| {
                page.lines()
                    .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
                    .unwrap_or_else(|| panic!("no {series}"))
                    .trim()
                    .to_string()
            };
            (
                value("notarium_repositories_expiring{within=\"30d\"}"),
                value("notarium_trust_soonest_expiry_timestamp_seconds"),
            )
        })
        .collect();
    // Other tests' repositories expire in years: this is the only one.
    assert_eq!(scraped[0].0, "1", "{scraped:?}");
    assert!(scraped.iter().all(|s| *s == scraped[0]), "{scraped:?}");

    for replica in [&cluster.replicas[0], &cluster.replicas[2]] {
        let output = common::run(
            Command::new(env!("CARGO_BIN_EXE_notarium"))
                .arg("expiring")
                .arg("--config")
                .arg(&replica.config)
                .args(["--within", "30d"]),
        );
        assert!(output.status.success(), "{}", common::stderr(&output));
        let text = common::stdout(&output);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(gun) && text.contains("targets v1"), "{text}");
    }
}

/// How many requests for `gun`'s trust data each replica logged (every
/// request logs one `done` line in its span, which names the path).
fn requests_per_replica(cluster: &Cluster, gun: &str) -> Vec<usize> {
    let needle = format!("/v2/{gun}/_trust/");
    cluster
        .replicas
        .iter()
        .map(|replica| {
            replica
                .log()
                .lines()
                .filter(|line| line.contains(&needle) && line.contains("done"))
                .count()
        })
        .collect()
}

/// `TAG: digest: sha256:HEX size: N` of a `docker push` output: the HEX.
fn pushed_digest(out: &str, tag: &str) -> String {
    let prefix = format!("{tag}: digest: sha256:");
    let line = out
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}…` line in:\n{out}"));
    let digest = line[prefix.len()..].split_whitespace().next().unwrap();
    assert_eq!(digest.len(), 64, "{line}");
    digest.to_string()
}

/// `DOCKER_CONTENT_TRUST=1 docker push GUN:TAG`, which must sign; returns
/// the pushed manifest digest (hex).
fn docker_signed_push(docker: &DockerCli, gun: &str, tag: &str) -> String {
    let reference = format!("{gun}:{tag}");
    let output = docker.run_trusted(&["push", &reference]);
    let out = stdout(&output);
    assert!(
        output.status.success(),
        "signed push of {reference}: {out}\n{}",
        common::stderr(&output)
    );
    assert!(
        out.contains(&format!("Successfully signed {reference}")),
        "{out}"
    );
    pushed_digest(&out, tag)
}

/// `docker trust inspect GUN`: tag -> (digest, signers).
fn docker_signed_tags(
    docker: &DockerCli,
    gun: &str,
) -> std::collections::BTreeMap<String, (String, Vec<String>)> {
    let out = docker.ok(&["trust", "inspect", gun]);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{out}");
    list[0]["SignedTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tag| {
            let signers = tag["Signers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect();
            (
                tag["SignedTag"].as_str().unwrap().to_string(),
                (tag["Digest"].as_str().unwrap().to_string(), signers),
            )
        })
        .collect()
}

/// The docker CLI with content trust whose trust server is the load
/// balancer: a signed push that initialises the repository, `docker trust
/// inspect`, a delegation by `docker trust signer add`, a second signed
/// push, and a verified pull by tag, with docker's requests spread over the
/// replicas.
#[test]
fn the_docker_cli_with_content_trust_through_the_balancer() {
    let cluster = cluster();
    let work = cluster.work("docker");
    let registry = Registry::start(&work.join("registry"));
    // The balancer's `host:port` gets the CA in `$DOCKER_CONFIG/tls/`, as
    // a user configures any trust server.
    let docker = DockerCli::with_trust_server(&work.join("user"), &cluster.lb, &cluster.ca);
    let gun = format!("{}/replicas/docker", registry.host());
    let before = requests_per_replica(&cluster, &gun);
    assert_eq!(before, vec![0; REPLICAS]);

    // 1. A signed push creates the trust data (root and targets keys local,
    //    snapshot and timestamp the server's, made by whichever replica).
    docker.make_image(&format!("{gun}:1.0"), "replicas one");
    let first = docker_signed_push(&docker, &gun, "1.0");
    assert_eq!(
        registry.manifest_digest("replicas/docker", "1.0"),
        Some(format!("sha256:{first}"))
    );
    let signed = docker_signed_tags(&docker, &gun);
    assert_eq!(signed.keys().collect::<Vec<_>>(), vec!["1.0"], "{signed:?}");
    assert_eq!(signed["1.0"].0, first);

    // 2. A delegation: alice's key, made by docker, added as a signer.
    let keys = work.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    docker.ok(&[
        "trust",
        "key",
        "generate",
        "alice",
        "--dir",
        keys.to_str().unwrap(),
    ]);
    let out = docker.ok(&[
        "trust",
        "signer",
        "add",
        "--key",
        keys.join("alice.pub").to_str().unwrap(),
        "alice",
        &gun,
    ]);
    assert!(
        out.contains(&format!("Successfully added signer: alice to {gun}")),
        "{out}"
    );
    let inspected = docker.ok(&["trust", "inspect", &gun]);
    let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    let signers: Vec<&str> = inspected[0]["Signers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Name"].as_str().unwrap())
        .collect();
    assert_eq!(signers, vec!["alice"], "{inspected}");
    // Every replica serves the targets file naming the delegation.
    let targets = same_everywhere(&cluster, &gun, "targets");
    let targets: serde_json::Value = serde_json::from_slice(&targets).unwrap();
    let mut roles: Vec<&str> = targets["signed"]["delegations"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    roles.sort_unstable();
    assert_eq!(roles, vec!["targets/alice", "targets/releases"]);

    // 3. A second signed push: the user holds alice's key, so docker signs
    //    the tag into the delegations.
    docker.make_image(&format!("{gun}:2.0"), "replicas two");
    let second = docker_signed_push(&docker, &gun, "2.0");
    assert_ne!(second, first);
    let signed = docker_signed_tags(&docker, &gun);
    assert_eq!(
        signed.keys().collect::<Vec<_>>(),
        vec!["1.0", "2.0"],
        "{signed:?}"
    );
    assert_eq!(signed["1.0"].0, first);
    assert_eq!(signed["2.0"], (second.clone(), vec!["alice".to_string()]));
    same_everywhere(&cluster, &gun, "targets/releases");
    same_everywhere(&cluster, &gun, "timestamp");

    // 4. A content-trust pull by tag, with no image local: docker resolves
    //    the tag through the balancer and pulls the signed digest.
    docker.remove_images();
    let reference = format!("{gun}:2.0");
    docker.track(&reference);
    let output = docker.run_trusted(&["pull", &reference]);
    let out = stdout(&output);
    assert!(
        output.status.success(),
        "verified pull: {out}\n{}",
        common::stderr(&output)
    );
    assert_eq!(
        out.lines().next(),
        Some(format!("Pull (1 of 1): {reference}@sha256:{second}").as_str()),
        "{out}"
    );
    assert!(
        docker
            .repo_digests(&reference)
            .contains(&format!("{gun}@sha256:{second}")),
        "{out}"
    );

    // The flow was spread over the replicas, and none answered a 5xx.
    let served = requests_per_replica(&cluster, &gun);
    eprintln!("trust requests per replica: {served:?}");
    assert!(
        served.iter().filter(|count| **count > 0).count() > 1,
        "one replica served the whole flow: {served:?}"
    );
    for (i, replica) in cluster.replicas.iter().enumerate() {
        let needle = format!("/v2/{gun}/_trust/");
        let errors: Vec<String> = replica
            .log()
            .lines()
            .filter(|line| line.contains(&needle) && line.contains("status=5"))
            .map(str::to_string)
            .collect();
        assert!(errors.is_empty(), "replica {i}: {errors:?}");
    }
    docker.remove_images();
}

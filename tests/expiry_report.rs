#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Keeping trust data from expiring (issue 11): the metrics that count
//! repositories by their soonest client-signed expiry, `notarium expiring`,
//! and the warning on a publish that expires soon. Repositories come from
//! the real notary CLI (whose expiries are fixed: targets 3 years, root 10)
//! and from our own client keys (tests/support/builder.rs) for short ones,
//! published over HTTPS to a real `notarium serve`.

#[path = "support/builder.rs"]
mod builder;
mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use builder::ClientKeys;
use common::{Notarium, run, run_with_stdin, stderr, stdout};
use notarium::repo::{Clock, Repo};
use notarium::tuf::encoding::format_time;
use notarium::tuf::sign::sign_metadata;
use notarium::tuf::{PublicKey, RoleName, SignedFile};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

/// Targets of `keys` listing `names`, expiring at `expires`.
fn targets_expiring(
    keys: &ClientKeys,
    version: i64,
    names: &[&str],
    now: OffsetDateTime,
    expires: OffsetDateTime,
) -> Vec<u8> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut body = keys.targets_body(version, &names, now);
    body["expires"] = json!(format_time(expires));
    sign_metadata(&body, &[&keys.targets_key]).unwrap()
}

/// A repository made with our own keys over HTTPS: root (10 years) and
/// targets expiring at `expires`.
fn publish_builder_repo(
    server: &Notarium,
    work: &Path,
    gun: &str,
    expires: OffsetDateTime,
) -> ClientKeys {
    let now = OffsetDateTime::now_utc();
    let keys = ClientKeys::new(gun, now);
    let curl = server.curl();
    let server_key = |role: &str| -> PublicKey {
        let (status, body) = curl.get(&format!("/v2/{gun}/_trust/tuf/{role}.key"));
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    };
    let (snapshot, timestamp) = (server_key("snapshot"), server_key("timestamp"));
    let dir = work.join(gun.replace('/', "_"));
    std::fs::create_dir_all(&dir).unwrap();
    let root = dir.join("root.json");
    std::fs::write(&root, keys.root(1, &snapshot, &timestamp, now)).unwrap();
    let targets = dir.join("targets-1.json");
    std::fs::write(&targets, targets_expiring(&keys, 1, &["v1"], now, expires)).unwrap();
    let (status, body) = curl.publish(gun, &[("root", &root), ("targets", &targets)]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    keys
}

/// The value of one sample in a Prometheus text page.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().unwrap())
}

fn metrics(server: &Notarium) -> String {
    let (status, body) = server.curl().get("/metrics");
    assert_eq!(status, 200);
    String::from_utf8(body).unwrap()
}

/// (expired, within 30d, within 90d, soonest) as scraped.
fn expiry_gauges(server: &Notarium) -> (f64, f64, f64, f64) {
    let page = metrics(server);
    let get =
        |series: &str| sample(&page, series).unwrap_or_else(|| panic!("no {series} in\n{page}"));
    (
        get("notarium_repositories_expired"),
        get("notarium_repositories_expiring{within=\"30d\"}"),
        get("notarium_repositories_expiring{within=\"90d\"}"),
        get("notarium_trust_soonest_expiry_timestamp_seconds"),
    )
}

/// `notarium expiring` against the server's database (the server runs).
fn expiring(server: &Notarium, args: &[&str]) -> String {
    let output = run(Command::new(env!("CARGO_BIN_EXE_notarium"))
        .arg("expiring")
        .arg("--config")
        .arg(&server.config)
        .args(args));
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
}

fn expiring_json(server: &Notarium, within: &str) -> Vec<Value> {
    let text = expiring(server, &["--within", within, "--output", "json"]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// (gun, role, version) of each listed role, in the listed order.
fn listed(rows: &[Value]) -> Vec<(String, String, i64)> {
    rows.iter()
        .map(|r| {
            (
                r["gun"].as_str().unwrap().to_string(),
                r["role"].as_str().unwrap().to_string(),
                r["version"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// When `gun`'s current targets.json expires, as the server serves it.
fn targets_expiry(server: &Notarium, gun: &str) -> OffsetDateTime {
    let (_, data) = server
        .curl()
        .get(&format!("/v2/{gun}/_trust/tuf/targets.json"));
    SignedFile::parse(&data)
        .unwrap()
        .common()
        .unwrap()
        .expires
        .at
}

#[test]
fn metrics_listing_and_warning_follow_publishes_and_deletes() {
    let work = tempfile::tempdir().unwrap();
    let server = Notarium::start(
        &work.path().join("server"),
        json!({"repositories": {"expiry_warning_days": 30}}),
    );
    let now = OffsetDateTime::now_utc();

    // Nothing stored: nothing counts, and no soonest expiry.
    let (expired, in30, in90, soonest) = expiry_gauges(&server);
    assert_eq!((expired, in30, in90), (0.0, 0.0, 0.0));
    assert!(soonest.is_nan());

    // The real notary CLI: targets expire in 3 years, root in 10.
    let cli_gun = "example.com/expiry/cli";
    let owner = server.notary(work.path().join("owner"));
    owner.ok(&["init", cli_gun, "-p"]);
    // Short expiries, from our own keys.
    let soon = "example.com/expiry/soon";
    let later = "example.com/expiry/later";
    let soon_keys = publish_builder_repo(&server, work.path(), soon, now + Duration::days(10));
    let later_keys = publish_builder_repo(&server, work.path(), later, now + Duration::days(60));

    // Within 90 days includes within 30.
    let (expired, in30, in90, soonest) = expiry_gauges(&server);
    assert_eq!((expired, in30, in90), (0.0, 1.0, 2.0));
    let soon_targets = targets_expiry(&server, soon);
    assert_eq!(soonest, soon_targets.unix_timestamp() as f64);

    // The listing: soonest first, with who signs each role.
    let rows = expiring_json(&server, "90d");
    assert_eq!(
        listed(&rows),
        [
            (soon.to_string(), "targets".to_string(), 1),
            (later.to_string(), "targets".to_string(), 1)
        ]
    );
    assert_eq!(rows[0]["expired"], json!(false));
    assert_eq!(
        rows[0]["signed_by"],
        json!([{"key_id": soon_keys.targets_key.public_key().id(), "server": false}])
    );
    let text = expiring(&server, &["--within", "90d"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains(soon) && lines[0].contains("targets v1"),
        "{text}"
    );
    assert!(
        lines[0].contains(soon_keys.targets_key.public_key().id()),
        "{text}"
    );
    assert!(lines[1].contains(later), "{text}");

    // The CLI's repository shows up in a wide window, its root signed by
    // the certificate notary made for the GUN.
    let rows = expiring_json(&server, "4000d");
    let cli_rows: Vec<&Value> = rows.iter().filter(|r| r["gun"] == cli_gun).collect();
    // notary init signs the snapshot itself too (its key stays local).
    let mut roles: Vec<&str> = cli_rows
        .iter()
        .map(|r| r["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles.pop(), Some("root"), "{rows:?}");
    roles.sort_unstable();
    assert_eq!(roles, ["snapshot", "targets"], "{rows:?}");
    let role_row = |role: &str| *cli_rows.iter().find(|r| r["role"] == role).unwrap();
    assert_eq!(
        role_row("root")["signed_by"][0]["common_name"],
        json!(cli_gun)
    );
    let cli_targets_v1 = role_row("targets")["expires"].as_str().unwrap().to_string();
    let cli_targets_version = role_row("targets")["version"].as_i64().unwrap();
    let text = expiring(&server, &["--within", "2w"]);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains(soon));

    // The warning: for the repository expiring in 10 days only.
    let log = server.log();
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("expiry_warning_days"))
        .collect();
    assert_eq!(warned.len(), 1, "{log}");
    assert!(
        warned[0].contains(soon) && warned[0].contains("targets"),
        "{}",
        warned[0]
    );
    assert!(
        warned[0].contains(&format_time(soon_targets)),
        "{}",
        warned[0]
    );

    // Re-signing `soon` for 200 days takes it off the 30- and 90-day counts.
    let dir = work.path().join("resign");
    std::fs::create_dir_all(&dir).unwrap();
    let targets = dir.join("targets-2.json");
    std::fs::write(
        &targets,
        targets_expiring(&soon_keys, 2, &["v1", "v2"], now, now + Duration::days(200)),
    )
    .unwrap();
    let (status, body) = server.curl().publish(soon, &[("targets", &targets)]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (expired, in30, in90, soonest) = expiry_gauges(&server);
    assert_eq!((expired, in30, in90), (0.0, 0.0, 1.0));
    let later_targets = targets_expiry(&server, later);
    assert_eq!(soonest, later_targets.unix_timestamp() as f64);
    assert_eq!(
        listed(&expiring_json(&server, "90d")),
        [(later.to_string(), "targets".to_string(), 1)]
    );
    // No second warning: 200 days is past the margin.
    let log = server.log();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("WARN") && l.contains("expiry_warning_days"))
            .count(),
        1
    );
    let _ = later_keys;

    // `notary witness` re-signs targets with the client's default expiry:
    // a new version, expiring no earlier.
    owner.ok(&["witness", cli_gun, "targets"]);
    owner.ok(&["publish", cli_gun]);
    let rows = expiring_json(&server, "4000d");
    let cli_targets = rows
        .iter()
        .find(|r| r["gun"] == cli_gun && r["role"] == "targets")
        .unwrap();
    assert_eq!(cli_targets["version"], json!(cli_targets_version + 1));
    assert!(cli_targets["expires"].as_str().unwrap() >= cli_targets_v1.as_str());

    // `notary witness` refuses root ("type of root change not yet
    // supported"); rotating the root key re-signs root with a new expiry.
    let root_row = |rows: &[Value]| {
        rows.iter()
            .find(|r| r["gun"] == cli_gun && r["role"] == "root")
            .cloned()
            .unwrap()
    };
    let before = root_row(&rows);
    let out = run_with_stdin(
        &mut owner.command(&["key", "rotate", cli_gun, "root"]),
        "yes\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let after = root_row(&expiring_json(&server, "4000d"));
    assert_eq!(
        after["version"].as_i64().unwrap(),
        before["version"].as_i64().unwrap() + 1
    );
    assert!(after["expires"].as_str().unwrap() >= before["expires"].as_str().unwrap());
    assert_ne!(after["signed_by"], before["signed_by"], "a new root key");

    // A delegation with a certificate key: listed with its CN, re-signed by
    // `notary witness`, and off the report once targets no longer
    // delegates to it.
    let (_, cert, delegate_key) =
        common::make_client_bundle(&work.path().join("delegate"), "releaser");
    let release = work.path().join("release.txt");
    std::fs::write(&release, "release\n").unwrap();
    owner.ok(&[
        "key",
        "import",
        delegate_key.to_str().unwrap(),
        "--role",
        "targets/releases",
    ]);
    owner.ok(&[
        "delegation",
        "add",
        cli_gun,
        "targets/releases",
        cert.to_str().unwrap(),
        "--all-paths",
        "-p",
    ]);
    owner.ok(&[
        "add",
        cli_gun,
        "released",
        release.to_str().unwrap(),
        "--roles",
        "targets/releases",
        "-p",
    ]);
    let delegation = |rows: &[Value]| {
        rows.iter()
            .find(|r| r["gun"] == cli_gun && r["role"] == "targets/releases")
            .cloned()
    };
    let before = delegation(&expiring_json(&server, "4000d")).expect("delegation listed");
    assert_eq!(before["signed_by"][0]["common_name"], json!("releaser"));
    owner.ok(&["witness", cli_gun, "targets/releases"]);
    owner.ok(&["publish", cli_gun]);
    let after = delegation(&expiring_json(&server, "4000d")).unwrap();
    assert_eq!(
        after["version"].as_i64().unwrap(),
        before["version"].as_i64().unwrap() + 1
    );
    assert!(after["expires"].as_str().unwrap() >= before["expires"].as_str().unwrap());
    let out = run_with_stdin(
        &mut owner.command(&["delegation", "remove", cli_gun, "targets/releases", "-p"]),
        "yes\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(delegation(&expiring_json(&server, "4000d")), None);

    // `delete --remote` takes a repository off the report.
    owner.ok(&["delete", cli_gun, "--remote"]);
    owner.ok(&["delete", later, "--remote"]);
    let rows = expiring_json(&server, "4000d");
    assert!(
        rows.iter()
            .all(|r| r["gun"] != cli_gun && r["gun"] != later),
        "{rows:?}"
    );
    let (expired, in30, in90, soonest) = expiry_gauges(&server);
    assert_eq!((expired, in30, in90), (0.0, 0.0, 0.0));
    let soon_targets = targets_expiry(&server, soon);
    assert_eq!(soonest, soon_targets.unix_timestamp() as f64);

    // A bad window is a usage error (status 2) with the reason.
    let output = run(Command::new(env!("CARGO_BIN_EXE_notarium"))
        .args(["expiring", "--within", "3y", "--config"])
        .arg(&server.config));
    assert_eq!(output.status.code(), Some(2), "a usage error");
    assert!(
        stderr(&output).contains("unknown unit"),
        "{}",
        stderr(&output)
    );
}

/// The report as the repository counts it, with the clock moved: a role
/// whose time has come counts as expired, not as expiring.
#[tokio::test]
async fn the_report_counts_by_the_soonest_expiry_as_time_passes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = common::store::temp_store(dir.path()).await;
    let start = OffsetDateTime::now_utc();
    let seconds = Arc::new(AtomicI64::new(start.unix_timestamp()));
    let reader = seconds.clone();
    let clock: Clock = Arc::new(move || {
        OffsetDateTime::from_unix_timestamp(reader.load(Ordering::SeqCst)).unwrap()
    });
    let repo = Repo::new(store, keys, clock);
    for (gun, days) in [("example.com/t/ten", 10), ("example.com/t/sixty", 60)] {
        let client = ClientKeys::new(gun, start);
        let timestamp = repo.public_key(gun, &RoleName::Timestamp).await.unwrap();
        let snapshot = repo.public_key(gun, &RoleName::Snapshot).await.unwrap();
        let parts = vec![
            (
                "root".to_string(),
                client.root(1, &snapshot, &timestamp, start),
            ),
            (
                "targets".to_string(),
                targets_expiring(&client, 1, &["a"], start, start + Duration::days(days)),
            ),
        ];
        repo.publish(gun, parts, "tester").await.unwrap();
    }
    let report = repo.expiry_report().await.unwrap();
    assert_eq!(report.expired, 0);
    assert_eq!(report.expiring, [("30d", 1), ("90d", 2)]);
    let ten_days = start.replace_nanosecond(0).unwrap() + Duration::days(10);
    assert_eq!(report.soonest, Some(ten_days));

    // Twenty days on: one expired, the other 40 days away.
    seconds.fetch_add(20 * 86_400, Ordering::SeqCst);
    let report = repo.expiry_report().await.unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(report.expiring, [("30d", 0), ("90d", 1)]);
    assert_eq!(report.soonest, Some(ten_days));
}

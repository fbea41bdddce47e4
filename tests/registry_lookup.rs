//! `registry::RegistryClient` against a real registry (Debian's
//! `docker-registry`, distribution 2.8) holding images, multi-arch indexes,
//! manifest lists and a CNAB bundle; and against a small fake registry for
//! what distribution does not do on its own: token and basic auth, missing
//! content types, lying bodies, errors and silence.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "support/oci.rs"]
mod oci;
#[path = "support/registry.rs"]
mod registry;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::{any, get};
use base64::Engine as _;
use notarium::policy::{
    IndexKind, Lookup, LookupError, LookupFailure, ManifestKind, ManifestSource,
};
use notarium::registry::{RegistryClient, RegistrySettings, repository_name};
use oci::Entry;
use zeroize::Zeroizing;

use registry::Registry;

fn settings(gun_prefix: &str, url: &str) -> RegistrySettings {
    RegistrySettings {
        gun_prefix: gun_prefix.to_owned(),
        url: url.to_owned(),
        username: None,
        password: None,
        require_image_manifests: false,
        timeout: Duration::from_secs(10),
    }
}

/// A client for the GUNs `<host>/…` of a real registry.
fn client_for(registry: &Registry) -> RegistryClient {
    let host = registry.host();
    RegistryClient::new(vec![settings(
        &format!("{host}/"),
        &format!("http://{host}"),
    )])
    .unwrap()
}

async fn lookup(client: &RegistryClient, gun: &str, pushed: &(String, u64)) -> Lookup {
    client
        .lookup(gun, &pushed.0, i64::try_from(pushed.1).unwrap())
        .await
        .unwrap_or_else(|e| panic!("lookup of {} in {gun}: {e:?}", pushed.0))
}

const OCI_INDEX: ManifestKind = ManifestKind::Index(IndexKind::OciIndex);

// ---------------------------------------------------------------- real registry

#[tokio::test]
async fn images_are_found_as_images() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path());
    let host = registry.host();
    let client = client_for(&registry);

    let oci = oci::push_image(&host, "team/app", "1.0", "oci image");
    let docker = oci::push_docker_image(&host, "team/app", "1.0-docker", "docker image");
    let gun = format!("{host}/team/app");
    assert_eq!(
        lookup(&client, &gun, &oci).await,
        Lookup::Found(ManifestKind::Image)
    );
    assert_eq!(
        lookup(&client, &gun, &docker).await,
        Lookup::Found(ManifestKind::Image)
    );
    // The push helper's digest is the registry's.
    assert_eq!(
        registry
            .manifest_digest("team/app", "1.0-docker")
            .as_deref(),
        Some(docker.0.as_str())
    );
}

#[tokio::test]
async fn multi_arch_indexes_and_lists_are_found_as_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path());
    let host = registry.host();
    let client = client_for(&registry);
    let gun = format!("{host}/team/multi");

    let amd64 = oci::push_image(&host, "team/multi", "amd64", "amd64");
    let arm64 = oci::push_image(&host, "team/multi", "arm64", "arm64");
    let entries = [
        Entry::new(&amd64, "linux/amd64"),
        Entry::new(&arm64, "linux/arm64/v8"),
    ];
    let index = oci::push_oci_index(&host, "team/multi", "1.0", &entries);
    assert_eq!(
        lookup(&client, &gun, &index).await,
        Lookup::Found(OCI_INDEX)
    );

    let bare = oci::push_index_without_media_type(&host, "team/multi", "bare", &entries);
    assert!(
        matches!(
            lookup(&client, &gun, &bare).await,
            Lookup::Found(ManifestKind::Index(_))
        ),
        "an index without mediaType is an index"
    );

    let d_amd64 = oci::push_docker_image(&host, "team/multi", "d-amd64", "docker amd64");
    let d_arm = oci::push_docker_image(&host, "team/multi", "d-arm", "docker arm");
    let list = oci::push_manifest_list(
        &host,
        "team/multi",
        "list",
        &[
            Entry::new(&d_amd64, "linux/amd64"),
            Entry::new(&d_arm, "linux/arm/v7"),
        ],
    );
    assert_eq!(
        lookup(&client, &gun, &list).await,
        Lookup::Found(ManifestKind::Index(IndexKind::ManifestList))
    );
}

#[tokio::test]
async fn cnab_bundles_are_applications() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path());
    let host = registry.host();
    let client = client_for(&registry);
    let gun = format!("{host}/team/bundle");

    let bundle = oci::push_cnab_bundle(&host, "team/bundle", "0.1.0");
    assert_eq!(
        lookup(&client, &gun, &bundle).await,
        Lookup::Found(ManifestKind::Index(IndexKind::Application))
    );
    // Its invocation image is an ordinary image, which can be signed.
    let invoc = oci::manifest_digest(&host, "team/bundle", "0.1.0-invoc").unwrap();
    assert_eq!(
        client.lookup(&gun, &invoc, 0).await,
        Ok(Lookup::Found(ManifestKind::Image))
    );
}

#[tokio::test]
async fn unknown_digests_and_repositories_are_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path());
    let host = registry.host();
    let client = client_for(&registry);
    oci::push_image(&host, "team/app", "1.0", "known");

    let missing = format!("sha256:{}", "ab".repeat(32));
    for gun in [
        format!("{host}/team/app"),
        format!("{host}/team/nothing-here"),
    ] {
        assert_eq!(
            client.lookup(&gun, &missing, 1234).await,
            Ok(Lookup::Unknown),
            "{gun}"
        );
    }
    // Not a digest at all: refused before asking.
    let err = client
        .lookup(&format!("{host}/team/app"), "sha256:../../x", 1)
        .await
        .unwrap_err();
    assert!(err.reason.contains("not a sha256 digest"), "{err:?}");
}

#[tokio::test]
async fn a_stopped_registry_is_a_quick_error_but_found_digests_are_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path());
    let host = registry.host();
    let url = format!("http://{host}");
    let mut s = settings(&format!("{host}/"), &url);
    s.timeout = Duration::from_secs(3);
    let client = RegistryClient::new(vec![s]).unwrap();
    let gun = format!("{host}/team/app");
    let image = oci::push_image(&host, "team/app", "1.0", "remembered");
    assert_eq!(
        lookup(&client, &gun, &image).await,
        Lookup::Found(ManifestKind::Image)
    );

    drop(registry);

    let started = Instant::now();
    let other = format!("sha256:{}", "cd".repeat(32));
    let err: LookupError = client.lookup(&gun, &other, 10).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.registry, url);
    assert!(err.reason.contains("cannot connect"), "{err:?}");
    // A digest names immutable content: what it is was remembered.
    assert_eq!(
        lookup(&client, &gun, &image).await,
        Lookup::Found(ManifestKind::Image)
    );
}

#[test]
fn covers_picks_the_longest_prefix_and_maps_repository_names() {
    let mut strict = settings("registry.example.com/secure/", "https://secure.example.com");
    strict.require_image_manifests = true;
    let client = RegistryClient::new(vec![
        settings("registry.example.com/", "https://registry.example.com"),
        strict,
        settings("docker.io/", "https://registry-1.docker.io"),
    ])
    .unwrap();

    assert!(client.covers("registry.example.com/team/app"));
    assert!(client.covers("docker.io/library/alpine"));
    assert!(!client.covers("other.example.com/team/app"));
    assert!(!client.covers("registry.example.co/team/app"));
    // A GUN that is only a host has no repository in the registry.
    assert!(!client.covers("registry.example.com/"));

    assert!(!client.requires_image_manifests("registry.example.com/team/app"));
    assert!(client.requires_image_manifests("registry.example.com/secure/app"));
    assert!(!client.requires_image_manifests("other.example.com/team/app"));
    assert_eq!(
        client
            .settings_for("registry.example.com/secure/app")
            .unwrap()
            .url,
        "https://secure.example.com"
    );

    assert_eq!(repository_name("127.0.0.1:5000/team/app"), Some("team/app"));
    assert_eq!(
        repository_name("docker.io/library/alpine"),
        Some("library/alpine")
    );
    assert_eq!(repository_name("localhost/a"), Some("a"));
    assert_eq!(repository_name("localhost/"), None);
    assert_eq!(repository_name("no-slash"), None);
}

// ----------------------------------------------------------------- fake registry

/// A registry that serves fixed manifests under `/v2/<repo>/manifests/<digest>`
/// and behaves by the repository's first component:
/// `open/…` no auth; `bearer/…` Docker token auth (token service `/token`,
/// which wants `robot:s3cret` when `basic_for_token`); `basic/…` HTTP basic
/// `robot:s3cret`; `broken/…` answers 500; `denied/…` answers 403.
#[derive(Default)]
struct Fake {
    /// digest → (HEAD/GET `Content-Type`, body served).
    manifests: HashMap<String, (Option<&'static str>, Vec<u8>)>,
    token_requests: AtomicUsize,
    manifest_requests: AtomicUsize,
}

const TOKEN_USER: &str = "robot";
const TOKEN_PASSWORD: &str = "s3cret";

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

async fn serve_fake(fake: Fake) -> (String, Arc<Fake>) {
    let fake = Arc::new(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/token", get(token))
        .route("/v2/{*path}", any(manifest))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), fake)
}

async fn token(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    fake.token_requests.fetch_add(1, Ordering::SeqCst);
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(basic(TOKEN_USER, TOKEN_PASSWORD).as_str());
    if !authorized || query.get("service").map(String::as_str) != Some("fake-registry") {
        return status(StatusCode::UNAUTHORIZED);
    }
    let scope = query.get("scope").cloned().unwrap_or_default();
    Response::new(Body::from(
        serde_json::json!({"token": format!("token-for {scope}"), "expires_in": 300}).to_string(),
    ))
}

fn status(code: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = code;
    r
}

async fn manifest(State(fake): State<Arc<Fake>>, request: Request) -> Response {
    fake.manifest_requests.fetch_add(1, Ordering::SeqCst);
    let path = request.uri().path().to_owned();
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let auth = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some((repo, digest)) = path
        .strip_prefix("/v2/")
        .and_then(|p| p.split_once("/manifests/"))
    else {
        return status(StatusCode::NOT_FOUND);
    };
    let challenge = match repo.split('/').next() {
        Some("bearer")
            if auth.as_deref() != Some(&format!("Bearer token-for repository:{repo}:pull")) =>
        {
            Some(format!(
                r#"Bearer realm="http://{host}/token",service="fake-registry",scope="repository:{repo}:pull""#
            ))
        }
        Some("basic") if auth.as_deref() != Some(&basic(TOKEN_USER, TOKEN_PASSWORD)) => {
            Some(r#"Basic realm="fake""#.to_owned())
        }
        Some("broken") => return status(StatusCode::INTERNAL_SERVER_ERROR),
        Some("denied") => {
            let mut r = Response::new(Body::from(
                r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#,
            ));
            *r.status_mut() = StatusCode::FORBIDDEN;
            return r;
        }
        _ => None,
    };
    if let Some(challenge) = challenge {
        let mut r = Response::new(Body::from(r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge.parse().unwrap());
        return r;
    }
    let Some((content_type, body)) = fake.manifests.get(digest) else {
        let mut r = Response::new(Body::from(
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        ));
        // Some registries say "unknown" with 400 rather than 404.
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    };
    let body = if request.method() == Method::HEAD {
        Vec::new()
    } else {
        body.clone()
    };
    let mut r = Response::new(Body::from(body));
    if let Some(content_type) = content_type {
        r.headers_mut()
            .insert(header::CONTENT_TYPE, content_type.parse().unwrap());
    }
    r
}

fn multi_arch_body() -> Vec<u8> {
    oci::index_without_media_type_body(&[
        Entry {
            digest: format!("sha256:{}", "01".repeat(32)),
            length: 500,
            platform: "linux/amd64".to_owned(),
        },
        Entry {
            digest: format!("sha256:{}", "02".repeat(32)),
            length: 500,
            platform: "linux/arm64".to_owned(),
        },
    ])
}

fn image_body() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "config": {"digest": format!("sha256:{}", "03".repeat(32)), "size": 2},
        "layers": [],
    }))
    .unwrap()
}

#[tokio::test]
async fn a_missing_content_type_is_settled_by_the_body() {
    let index = multi_arch_body();
    let image = image_body();
    let mut fake = Fake::default();
    let index_digest = oci::sha256(&index);
    let image_digest = oci::sha256(&image);
    fake.manifests.insert(index_digest.clone(), (None, index));
    fake.manifests.insert(
        image_digest.clone(),
        (Some("application/octet-stream"), image),
    );
    let (url, fake) = serve_fake(fake).await;
    let client = RegistryClient::new(vec![settings("fake/", &url)]).unwrap();

    assert_eq!(
        client.lookup("fake/open/app", &index_digest, 0).await,
        Ok(Lookup::Found(OCI_INDEX))
    );
    assert_eq!(
        client.lookup("fake/open/app", &image_digest, 0).await,
        Ok(Lookup::Found(ManifestKind::Image))
    );
    // HEAD then GET for each.
    assert_eq!(fake.manifest_requests.load(Ordering::SeqCst), 4);
    // Unknown with a 400 MANIFEST_UNKNOWN.
    assert_eq!(
        client
            .lookup("fake/open/app", &format!("sha256:{}", "ee".repeat(32)), 0)
            .await,
        Ok(Lookup::Unknown)
    );
}

#[tokio::test]
async fn content_that_does_not_match_the_digest_is_an_error() {
    let claimed = format!("sha256:{}", "aa".repeat(32));
    let mut fake = Fake::default();
    fake.manifests.insert(claimed.clone(), (None, image_body()));
    let (url, _fake) = serve_fake(fake).await;
    let client = RegistryClient::new(vec![settings("fake/", &url)]).unwrap();

    let err = client
        .lookup("fake/open/app", &claimed, 0)
        .await
        .unwrap_err();
    assert!(err.reason.contains("different content"), "{err:?}");
}

#[tokio::test]
async fn bearer_challenges_fetch_a_pull_token_for_the_repository() {
    let index = multi_arch_body();
    let digest = oci::sha256(&index);
    let mut fake = Fake::default();
    fake.manifests
        .insert(digest.clone(), (Some(oci::OCI_INDEX), index));
    let (url, fake) = serve_fake(fake).await;

    let mut with_creds = settings("fake/", &url);
    with_creds.username = Some(TOKEN_USER.to_owned());
    with_creds.password = Some(Zeroizing::new(TOKEN_PASSWORD.to_owned()));
    let client = RegistryClient::new(vec![with_creds.clone()]).unwrap();
    // HEAD says index; the GET that tells an application from a
    // multi-arch image reuses the token.
    assert_eq!(
        client.lookup("fake/bearer/app", &digest, 0).await,
        Ok(Lookup::Found(OCI_INDEX))
    );
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 1);
    assert_eq!(fake.manifest_requests.load(Ordering::SeqCst), 3);

    // A second lookup in the same repository reuses the cached token: no
    // new token fetch, and no 401 round trip (HEAD then GET only).
    assert_eq!(
        client.lookup("fake/bearer/app", &digest, 0).await,
        Ok(Lookup::Found(OCI_INDEX))
    );
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 1);
    // (The answer was remembered: a digest's content never changes.)
    assert_eq!(fake.manifest_requests.load(Ordering::SeqCst), 3);
    let unknown = format!("sha256:{}", "dd".repeat(32));
    assert_eq!(
        client.lookup("fake/bearer/app", &unknown, 0).await,
        Ok(Lookup::Unknown)
    );
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 1);
    assert_eq!(fake.manifest_requests.load(Ordering::SeqCst), 5);
    // Another repository is another scope: a token of its own.
    assert_eq!(
        client.lookup("fake/bearer/other", &unknown, 0).await,
        Ok(Lookup::Unknown)
    );
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 2);

    // Wrong credentials: the token service says no.
    with_creds.password = Some(Zeroizing::new("wrong".to_owned()));
    let client = RegistryClient::new(vec![with_creds]).unwrap();
    let err = client
        .lookup("fake/bearer/app", &digest, 0)
        .await
        .unwrap_err();
    assert!(
        err.reason.contains("token service") && err.reason.contains("401"),
        "{err:?}"
    );
    assert!(!err.reason.contains("wrong"), "{err:?}");
    assert_eq!(err.failure, LookupFailure::CredentialsRefused);
}

#[tokio::test]
async fn lookups_running_together_share_one_token() {
    let (url, fake) = serve_fake(Fake::default()).await;
    let mut with_creds = settings("fake/", &url);
    with_creds.username = Some(TOKEN_USER.to_owned());
    with_creds.password = Some(Zeroizing::new(TOKEN_PASSWORD.to_owned()));
    let client = RegistryClient::new(vec![with_creds]).unwrap();
    let digests: Vec<String> = (0..6)
        .map(|i| format!("sha256:{}", format!("{i:02x}").repeat(32)))
        .collect();
    let answers = futures_util::future::join_all(
        digests
            .iter()
            .map(|d| client.lookup("fake/bearer/app", d, 0)),
    )
    .await;
    assert!(
        answers.iter().all(|a| *a == Ok(Lookup::Unknown)),
        "{answers:?}"
    );
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn basic_challenges_use_the_configured_credentials() {
    let image = image_body();
    let digest = oci::sha256(&image);
    let mut fake = Fake::default();
    fake.manifests.insert(
        digest.clone(),
        (Some("application/vnd.oci.image.manifest.v1+json"), image),
    );
    let (url, _fake) = serve_fake(fake).await;

    let mut with_creds = settings("fake/", &url);
    with_creds.username = Some(TOKEN_USER.to_owned());
    with_creds.password = Some(Zeroizing::new(TOKEN_PASSWORD.to_owned()));
    let client = RegistryClient::new(vec![with_creds]).unwrap();
    assert_eq!(
        client.lookup("fake/basic/app", &digest, 0).await,
        Ok(Lookup::Found(ManifestKind::Image))
    );

    let anonymous = RegistryClient::new(vec![settings("fake/", &url)]).unwrap();
    let err = anonymous
        .lookup("fake/basic/app", &digest, 0)
        .await
        .unwrap_err();
    assert!(err.reason.contains("none are configured"), "{err:?}");
    assert_eq!(err.failure, LookupFailure::CredentialsMissing);
}

#[tokio::test]
async fn registry_errors_are_lookup_errors() {
    let (url, _fake) = serve_fake(Fake::default()).await;
    let client = RegistryClient::new(vec![settings("fake/", &url)]).unwrap();
    let digest = format!("sha256:{}", "bb".repeat(32));

    let err = client
        .lookup("fake/broken/app", &digest, 0)
        .await
        .unwrap_err();
    assert_eq!(err.registry, url);
    assert_eq!(err.failure, LookupFailure::RegistryError);
    assert!(err.reason.contains("HTTP 500"), "{err:?}");

    let err = client
        .lookup("fake/denied/app", &digest, 0)
        .await
        .unwrap_err();
    assert!(
        err.reason.contains("HTTP 403") && err.reason.contains("DENIED"),
        "{err:?}"
    );
    assert_eq!(err.failure, LookupFailure::AccessDenied);
}

#[tokio::test]
async fn a_registry_that_never_answers_times_out() {
    // Accepts connections and reads nothing, answers nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut s = settings("silent/", &format!("http://{addr}"));
    s.timeout = Duration::from_millis(800);
    let client = RegistryClient::new(vec![s]).unwrap();

    let started = Instant::now();
    let err = client
        .lookup("silent/team/app", &format!("sha256:{}", "cc".repeat(32)), 0)
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(err.reason.contains("no answer"), "{err:?}");
    assert_eq!(err.failure, LookupFailure::Timeout);
}

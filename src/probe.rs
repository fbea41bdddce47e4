//! `notarium health`: asks a running server's health endpoint, for container
//! health checks and probes that have no curl (the image ships only notarium).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Where a server in this container listens unless told otherwise.
pub const DEFAULT_URL: &str = "https://127.0.0.1:4443/_notary_server/health";

/// How long one probe may take: a health check that hangs is a failed one.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{url} is not an https:// URL")]
    NotHttps { url: String },
    #[error("cannot read the CA file {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error(
        "{url} is not on this host: pass --cacert with the CA its certificate chains to (certificates are only left unchecked on loopback)"
    )]
    RemoteWithoutCa { url: String },
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} answered {status}: {body}")]
    Unhealthy {
        url: String,
        status: u16,
        body: String,
    },
}

/// The URL to probe: `url` if given, else the loopback health URL on the
/// port of `http_addr` (`NOTARIUM_HTTP_ADDR`, e.g. `:8443`) when it names one.
pub fn target(url: Option<&str>, http_addr: Option<&str>) -> String {
    if let Some(url) = url {
        return url.to_string();
    }
    let port = http_addr.and_then(|addr| {
        let addr = addr.trim();
        addr.parse::<SocketAddr>()
            .ok()
            .map(|a| a.port())
            .or_else(|| addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()))
    });
    match port {
        Some(port) => format!("https://127.0.0.1:{port}/_notary_server/health"),
        None => DEFAULT_URL.to_string(),
    }
}

/// GETs `url`; `Ok` on 200. Without `ca`, only a loopback URL is accepted,
/// and its certificate is not checked: the probe sends nothing secret and
/// the server's certificate usually names its public host, not 127.0.0.1.
pub async fn probe(url: &str, ca: Option<&Path>) -> Result<(), ProbeError> {
    let parsed = reqwest::Url::parse(url)
        .ok()
        .filter(|u| u.scheme() == "https")
        .ok_or_else(|| ProbeError::NotHttps { url: url.into() })?;
    let mut builder = reqwest::Client::builder().timeout(TIMEOUT);
    match ca {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| ProbeError::Ca {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ProbeError::Ca {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            builder = builder.tls_certs_only(certs);
        }
        None if is_loopback(&parsed) => builder = builder.tls_danger_accept_invalid_certs(true),
        None => return Err(ProbeError::RemoteWithoutCa { url: url.into() }),
    }
    let unreachable = |e: reqwest::Error| ProbeError::Unreachable {
        url: url.into(),
        reason: error_chain(&e),
    };
    let client = builder.build().map_err(unreachable)?;
    let response = client.get(parsed).send().await.map_err(unreachable)?;
    let status = response.status().as_u16();
    if status == 200 {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(ProbeError::Unhealthy {
        url: url.into(),
        status,
        body: body.chars().take(500).collect(),
    })
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// reqwest's top-level messages ("error sending request") hide the cause.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_follows_the_listen_port() {
        assert_eq!(target(None, None), DEFAULT_URL);
        assert_eq!(
            target(None, Some(":8443")),
            "https://127.0.0.1:8443/_notary_server/health"
        );
        assert_eq!(
            target(None, Some("0.0.0.0:9000")),
            "https://127.0.0.1:9000/_notary_server/health"
        );
        assert_eq!(target(Some("https://x:1/h"), Some(":2")), "https://x:1/h");
    }

    #[tokio::test]
    async fn remote_urls_need_a_ca_and_http_is_refused() {
        assert!(matches!(
            probe("https://notary.example.com/_notary_server/health", None).await,
            Err(ProbeError::RemoteWithoutCa { .. })
        ));
        assert!(matches!(
            probe("http://127.0.0.1:1/", None).await,
            Err(ProbeError::NotHttps { .. })
        ));
        assert!(matches!(
            probe("https://127.0.0.1:1/_notary_server/health", None).await,
            Err(ProbeError::Unreachable { .. })
        ));
    }
}

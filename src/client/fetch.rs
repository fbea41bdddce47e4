//! Fetching trust data from a notary-compatible server: bounded sizes,
//! timeouts, 404 as "absent". The verifier sees only the [`Source`] trait,
//! so its rules are tested without a network.

use std::time::Duration;

/// Where metadata files come from, by file name under
/// `/v2/<gun>/_trust/tuf/` (`root.json`, `3.root.json`,
/// `snapshot.<sha256>.json`, …).
pub trait Source {
    /// The file's bytes, `None` if the server does not have it, or an
    /// error if there is no usable answer. More than `cap` bytes is an
    /// error.
    fn get(&self, file: &str, cap: u64) -> Result<Option<Vec<u8>>, FetchError>;
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} sent more than {cap} bytes")]
    TooLarge { url: String, cap: u64 },
}

/// The notary client's per-request timeout for metadata.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A [`Source`] over HTTPS (or HTTP) with reqwest, driven by its own
/// single-threaded runtime: the CLI does one fetch at a time, in order.
pub struct HttpSource {
    base: String,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl HttpSource {
    /// `server` is the trust server's base URL; `ca_pem`, if given, is the
    /// only CA trusted for its certificate (notary's `--tlscacert`).
    pub fn new(server: &str, gun: &str, ca_pem: Option<&[u8]>) -> Result<Self, String> {
        let url = reqwest::Url::parse(server)
            .map_err(|e| format!("invalid server URL {server:?}: {e}"))?;
        if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
            return Err(format!(
                "invalid server URL {server:?}: it must be https://host[:port]"
            ));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            // Trust data is not redirected by notary servers; a redirect is
            // not followed to somewhere the user did not name.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("notarium/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("unreadable TLS CA file: {e}"))?;
            if certs.is_empty() {
                return Err("the TLS CA file holds no certificate".to_string());
            }
            builder = builder.tls_certs_only(certs);
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        Ok(Self {
            base: format!("{}/v2/{gun}/_trust/tuf", server.trim_end_matches('/')),
            http,
            runtime,
        })
    }

    async fn fetch(&self, url: &str, cap: u64) -> Result<Option<Vec<u8>>, FetchError> {
        let unreachable = |e: &reqwest::Error| FetchError::Unreachable {
            url: url.to_string(),
            reason: crate::registry::transport_reason(e),
        };
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| unreachable(&e))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
        let too_large = || FetchError::TooLarge {
            url: url.to_string(),
            cap,
        };
        if response.content_length().is_some_and(|n| n > cap) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| unreachable(&e))? {
            if (body.len() + chunk.len()) as u64 > cap {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }
}

impl Source for HttpSource {
    fn get(&self, file: &str, cap: u64) -> Result<Option<Vec<u8>>, FetchError> {
        let url = format!("{}/{file}", self.base);
        self.runtime.block_on(self.fetch(&url, cap))
    }
}

//! The HTTP client the router uses towards nodes: rustls (ring) with the
//! public web roots plus an optional CA file for `https://` node
//! addresses, connect timeout, no redirects, no proxy from the environment.
//! What travels is ciphertext (sealed requests and frames) and evidence.

use std::path::Path;
use std::time::Duration;

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The CA file is unreadable or holds no certificate.
    #[error("node CA file {path}: {problem}")]
    Ca {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// TLS or client setup failed.
    #[error("HTTP client: {0}")]
    Build(String),
}

/// Builds the client.
pub fn client(
    node_ca: Option<&Path>,
    connect_timeout: Duration,
) -> Result<reqwest::Client, ClientError> {
    let roots = cloister_client::tls::root_store(node_ca).map_err(|problem| ClientError::Ca {
        path: node_ca.map(|p| p.display().to_string()).unwrap_or_default(),
        problem,
    })?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Build(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| ClientError::Build(e.to_string()))
}

/// A transport error in words safe for logs and clients: the kind of
/// failure, without URLs.
pub fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "the body broke off"
    } else if error.is_request() {
        "the request failed"
    } else {
        "transport error"
    };
    let mut source = std::error::Error::source(error);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

//! Announcing the node to a router (`--router URL --advertise URL
//! --join-token T`): one `POST {router}/v1/nodes/join` with the node's
//! address, retried with back-off until the router takes it. Nothing secret
//! or request-related is sent; the router then challenges the node like any
//! other and routes to it only while it passes.

use std::sync::Arc;
use std::time::Duration;

/// Where to announce, and as what.
#[derive(Clone)]
pub struct JoinTarget {
    /// The router's base URL.
    pub router: String,
    /// This node's address as the router should reach it.
    pub advertise: String,
    /// The provider's join token.
    pub token: String,
}

impl std::fmt::Debug for JoinTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinTarget")
            .field("router", &self.router)
            .field("advertise", &self.advertise)
            .finish_non_exhaustive()
    }
}

fn client() -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())
}

/// Announces until the router accepts (2xx) or refuses for good (401, 400);
/// transport errors and other statuses are retried every 1 s doubling to 60 s.
pub async fn announce(target: JoinTarget) {
    let client = match client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client to join the router");
            return;
        }
    };
    let url = format!("{}/v1/nodes/join", target.router.trim_end_matches('/'));
    let mut wait = Duration::from_secs(1);
    loop {
        let sent = client
            .post(&url)
            .bearer_auth(&target.token)
            .json(&serde_json::json!({ "url": target.advertise }))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                let body: serde_json::Value = r.json().await.unwrap_or_default();
                tracing::info!(
                    router = %target.router, advertise = %target.advertise,
                    node_id = %body.get("node_id").and_then(|v| v.as_str()).unwrap_or("?"),
                    "announced to the router; it will challenge this node"
                );
                return;
            }
            Ok(r) if matches!(r.status().as_u16(), 400 | 401 | 403) => {
                let status = r.status();
                let body: serde_json::Value = r.json().await.unwrap_or_default();
                tracing::error!(
                    router = %target.router, %status,
                    message = %body.pointer("/error/message").and_then(|v| v.as_str()).unwrap_or(""),
                    "the router refused the join; not retrying (check --join-token and --advertise)"
                );
                return;
            }
            Ok(r) => {
                tracing::warn!(router = %target.router, status = %r.status(), "join not accepted yet; retrying")
            }
            Err(e) => {
                tracing::warn!(router = %target.router, error = %e, "router unreachable; retrying")
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(60));
    }
}

//! The router's HTTP API as the client uses it: the node list, fresh
//! bundles for the client's nonce, and the sealed endpoint.

use futures::StreamExt as _;
use serde::Deserialize;

use crate::error::ClientError;

/// The largest bundle or error body read.
pub(crate) const MAX_BUNDLE_BYTES: usize = 4 * 1024 * 1024;

/// A node as the router lists it (`GET /v1/attestation`): untrusted hints.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NodeListing {
    /// The node's id.
    pub id: String,
    /// The router's view: `serving`, `refused`, `unreachable`, `pending`.
    pub state: String,
    /// The model the router says it serves.
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Deserialize)]
struct Listing {
    data: Vec<NodeListing>,
}

/// `https://router.example` from what a user typed (`…/v1`, a trailing `/`).
pub(crate) fn base_url(router: &str) -> String {
    let trimmed = router.trim().trim_end_matches('/');
    trimmed.strip_suffix("/v1").unwrap_or(trimmed).to_owned()
}

pub(crate) fn transport(e: &reqwest::Error) -> ClientError {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    ClientError::Transport { detail }
}

/// Reads at most `limit` bytes of a body.
pub(crate) async fn read_limited(
    response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, ClientError> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| transport(&e))?;
        if body.len() + piece.len() > limit {
            return Err(ClientError::Transport {
                detail: format!("the router sent more than {limit} bytes"),
            });
        }
        body.extend_from_slice(&piece);
    }
    Ok(body)
}

/// The router's own error answer as a [`ClientError::Router`].
pub(crate) async fn router_error(response: reqwest::Response) -> ClientError {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let body = read_limited(response, 64 * 1024).await.unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
    ClientError::Router {
        status,
        message,
        body,
        retry_after,
    }
}

fn with_auth(request: reqwest::RequestBuilder, auth: Option<&str>) -> reqwest::RequestBuilder {
    match auth {
        Some(key) => request.bearer_auth(key),
        None => request,
    }
}

/// `GET /v1/attestation`.
pub(crate) async fn list_nodes(
    http: &reqwest::Client,
    base: &str,
) -> Result<Vec<NodeListing>, ClientError> {
    let response = http
        .get(format!("{base}/v1/attestation"))
        .send()
        .await
        .map_err(|e| transport(&e))?;
    if !response.status().is_success() {
        return Err(router_error(response).await);
    }
    let body = read_limited(response, 64 * MAX_BUNDLE_BYTES).await?;
    let listing: Listing = serde_json::from_slice(&body).map_err(|e| ClientError::Transport {
        detail: format!("the router's node list is not the expected JSON: {e}"),
    })?;
    Ok(listing.data)
}

/// `GET /v1/attestation/{node}?nonce=…`: the node's bundle for `nonce`, as
/// the node produced it.
pub(crate) async fn fresh_bundle(
    http: &reqwest::Client,
    base: &str,
    auth: Option<&str>,
    node: &str,
    nonce: &[u8; 32],
) -> Result<Vec<u8>, ClientError> {
    let request = http.get(format!(
        "{base}/v1/attestation/{node}?nonce={}",
        hex::encode(nonce)
    ));
    let response = with_auth(request, auth)
        .send()
        .await
        .map_err(|e| transport(&e))?;
    if !response.status().is_success() {
        return Err(router_error(response).await);
    }
    read_limited(response, MAX_BUNDLE_BYTES).await
}

/// `POST /v1/sealed/{node}` with the payer named.
pub(crate) fn post_sealed(
    http: &reqwest::Client,
    base: &str,
    auth: Option<&str>,
    node: &str,
    payer: &str,
    sealed: Vec<u8>,
) -> reqwest::RequestBuilder {
    let request = http
        .post(format!("{base}/v1/sealed/{node}"))
        .header(reqwest::header::CONTENT_TYPE, "message/ohttp-chunked-req")
        .header("x-cloister-payer", payer)
        .body(sealed);
    with_auth(request, auth)
}

//! `POST /v1/nodes/join`: a provider names a node's address with one of the
//! router's join tokens. Joining earns nothing by itself: the router then
//! challenges the node and routes to it only while it keeps passing.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::read_body;
use crate::api_error::ApiError;
use crate::nodes::{NodeSource, check_node_url};
use crate::state::RouterState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Join {
    url: String,
}

/// Compares the SHA-256 digests, so the time taken says nothing about
/// where a guessed token differs from a real one.
fn same(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

/// The handler.
pub(super) async fn join(
    State(state): State<Arc<RouterState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        return ApiError::InvalidJoinToken.into_response();
    };
    if !state.config.join_tokens.iter().any(|t| same(t, token)) {
        tracing::warn!("join refused: unknown token");
        return ApiError::InvalidJoinToken.into_response();
    }
    let body = match read_body(body, 16 * 1024, state.config.body_timeout()).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let join: Join = match serde_json::from_slice(&body) {
        Ok(j) => j,
        Err(e) => {
            return ApiError::bad_request(
                format!("expected {{\"url\": \"http(s)://host:port\"}} ({e})"),
                Some("url"),
            )
            .into_response();
        }
    };
    let url = match check_node_url(&join.url) {
        Ok(u) => u,
        Err(e) => return ApiError::bad_request(e, Some("url")).into_response(),
    };
    match state.add_node(url, NodeSource::Joined).await {
        Ok((id, new)) => {
            let node = state.nodes.get(&id);
            let status = node.map(|n| n.status().name()).unwrap_or("pending");
            Json(json!({ "node_id": id, "new": new, "state": status })).into_response()
        }
        Err(crate::state::AddNodeError::Full) => {
            tracing::warn!("join refused: node registry full");
            ApiError::NoNode {
                detail: "this router attests as many nodes as it can".into(),
            }
            .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record the node");
            ApiError::Internal.into_response()
        }
    }
}

//! The sealed API's attestation side: what the router knows about every
//! node, the attestation log, and fresh bundles for a client's own nonce
//! (so a client checks freshness without trusting the router).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::authenticate;
use crate::api_error::ApiError;
use crate::nodes::NodeStatus;
use crate::nodes::attest::FetchError;
use crate::state::RouterState;

/// `GET /v1/attestation`: every node with its latest logged bundle and
/// verdict.
pub(super) async fn list(State(state): State<Arc<RouterState>>) -> Response {
    let mut nodes = Vec::new();
    for node in state.nodes.all() {
        let status = node.status();
        let latest = state.ledger.latest_for_node(&node.id).await.ok().flatten();
        let (bundle, verdict, verified_at, log_id) = match latest {
            Some(entry) => (
                serde_json::from_str::<Value>(&entry.bundle).unwrap_or(Value::String(entry.bundle)),
                serde_json::from_str::<Value>(&entry.verdict).unwrap_or(Value::Null),
                Some(entry.verified_at),
                Some(entry.id),
            ),
            None => (Value::Null, Value::Null, None, None),
        };
        let (model, reasons) = match &status {
            NodeStatus::Serving(a) => (Some(a.model.clone()), Vec::new()),
            NodeStatus::Refused {
                reasons, attested, ..
            } => (attested.as_ref().map(|a| a.model.clone()), reasons.clone()),
            NodeStatus::Unreachable { error, .. } => (None, vec![format!("unreachable: {error}")]),
            NodeStatus::Pending => (None, Vec::new()),
        };
        nodes.push(json!({
            "id": node.id,
            "state": status.name(),
            "model": model,
            "reasons": reasons,
            "verified_at": verified_at,
            "log_id": log_id,
            "verdict": verdict,
            "bundle": bundle,
        }));
    }
    Json(json!({ "object": "list", "data": nodes })).into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct LogQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

/// `GET /v1/attestation/log?after=ID&limit=N`
pub(super) async fn log(
    State(state): State<Arc<RouterState>>,
    Query(q): Query<LogQuery>,
) -> Response {
    let after = q.after.unwrap_or(0).max(0);
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    match state.ledger.attestation_log(after, limit).await {
        Ok(entries) => {
            let next = entries.last().map(|e| e.id);
            let data: Vec<Value> = entries
                .iter()
                .filter_map(|e| serde_json::to_value(e).ok())
                .collect();
            Json(json!({ "object": "list", "data": data, "next_after": next })).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "reading the attestation log failed");
            ApiError::Internal.into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct NonceQuery {
    nonce: Option<String>,
}

/// `GET /v1/attestation/{node_id}?nonce=<64 hex>`: the node's bundle for the
/// client's nonce, passed through byte for byte.
pub(super) async fn fresh(
    State(state): State<Arc<RouterState>>,
    Path(node_id): Path<String>,
    Query(q): Query<NonceQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authenticate(&state, &headers).await {
        return e.into_response();
    }
    let Some(node) = state.nodes.get(&node_id) else {
        return ApiError::UnknownNode(node_id).into_response();
    };
    let nonce: Option<[u8; 32]> = q
        .nonce
        .as_deref()
        .and_then(|n| hex::decode(n.trim()).ok())
        .and_then(|b| b.try_into().ok());
    let Some(nonce) = nonce else {
        return ApiError::bad_request("`nonce` must be 32 bytes as 64 hex digits.", Some("nonce"))
            .into_response();
    };
    match state.attestor.fetch_bundle(&node.url, &nonce).await {
        Ok(bundle) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            bundle,
        )
            .into_response(),
        Err(FetchError::Status {
            status: 429,
            retry_after,
        }) => ApiError::RateLimited {
            limit: "evidence collections on this node",
            retry_after_secs: retry_after.unwrap_or(1),
        }
        .into_response(),
        Err(e) => ApiError::Upstream {
            detail: e.to_string(),
        }
        .into_response(),
    }
}

//! The router's HTTP surface, all routes in one table:
//!
//! | route | auth | what |
//! | --- | --- | --- |
//! | `GET /v1/models` | key | models served by at least one attested node |
//! | `POST /v1/chat/completions`, `POST /v1/completions` | key | OpenAI, stream or not; sealed to the node by the router |
//! | `GET /v1/attestation` | — | every node: id, model, bundle, verdict, state |
//! | `GET /v1/attestation/log?after=ID&limit=N` | — | the hash-chained attestation log |
//! | `GET /v1/attestation/{node_id}?nonce=<64 hex>` | key | a fresh bundle for the client's own nonce |
//! | `GET /v1/audit/receipts?after=ID&limit=N` | — | every served receipt: id (digest), node, signer, issued and recorded times; no payer or token counts |
//! | `GET /v1/receipts?after=ID&limit=N` | key | the caller's account's receipts in full, with what was recorded and charged |
//! | `GET /v1/audit/batches?after=ID&limit=N` | — | settlement batches: state, Merkle root, totals, transaction |
//! | `GET /v1/audit/batches/{id}?after=ID&limit=N` | — | a batch's signed receipts, by digest |
//! | `GET /v1/account` | key | the caller's account: balance, total charged, payer addresses |
//! | `POST /v1/sealed/{node_id}` | key | client-sealed request in, frames out |
//! | `POST /v1/nodes/join` | join token | a provider names a node's address |
//! | `GET /` | — | status page |
//! | `GET /healthz`, `GET /metrics` | — | operations |

mod attestation;
mod audit;
mod batches;
mod nodes;
mod openai;
mod ops;
mod sealed;

pub use sealed::PAYER_HEADER;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, header};
use axum::routing::{get, post};

use crate::api_error::ApiError;
use crate::ledger::Caller;
use crate::state::RouterState;

/// The router.
pub fn app(state: Arc<RouterState>) -> Router {
    Router::new()
        .route("/v1/models", get(openai::models))
        .route("/v1/chat/completions", post(openai::chat))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/attestation", get(attestation::list))
        .route("/v1/attestation/log", get(attestation::log))
        .route("/v1/attestation/{node_id}", get(attestation::fresh))
        .route("/v1/audit/receipts", get(audit::served))
        .route("/v1/audit/batches", get(batches::list))
        .route("/v1/audit/batches/{id}", get(batches::receipts))
        .route("/v1/receipts", get(audit::own))
        .route("/v1/account", get(audit::account))
        .route("/v1/sealed/{node_id}", post(sealed::forward))
        .route("/v1/nodes/join", post(nodes::join))
        .route("/", get(ops::status_page))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        // Bodies are read by the handlers with the configured limit and an
        // OpenAI-shaped 413.
        .layer(DefaultBodyLimit::disable())
        .fallback(ops::not_found)
        .with_state(state)
}

/// The caller behind `Authorization: Bearer <key>`.
pub(crate) async fn authenticate(
    state: &RouterState,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or(ApiError::MissingKey)?;
    match state.ledger.authenticate(key).await {
        Ok(Some(caller)) => Ok(caller),
        Ok(None) => Err(ApiError::InvalidKey),
        Err(e) => {
            tracing::error!(error = %e, "ledger unavailable for authentication");
            Err(ApiError::Internal)
        }
    }
}

/// Reads a body of at most `limit` bytes within `deadline`, so a client
/// trickling a body cannot hold a connection and a task forever.
pub(crate) async fn read_body(
    body: Body,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let read = axum::body::to_bytes(body, limit);
    let Ok(read) = tokio::time::timeout(deadline, read).await else {
        return Err(ApiError::bad_request(
            format!(
                "the request body did not arrive within {} s",
                deadline.as_secs()
            ),
            None,
        ));
    };
    read.map_err(|e| {
        if e.into_inner()
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            ApiError::TooLarge { limit }
        } else {
            ApiError::bad_request("the request body could not be read", None)
        }
    })
}

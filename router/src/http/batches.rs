//! Settlement batches, public, for `cloister audit chain` and for anyone who
//! wants to challenge a batch (a challenge needs the receipt and its proof):
//!
//! - `GET /v1/audit/batches?after=ID&limit=N`: the chain and Settlement
//!   contract the router settles to, and its batches, by id, with their state (`written`, `confirmed`, `finalized`, `abandoned`),
//!   Merkle root, totals and last transaction.
//! - `GET /v1/audit/batches/{id}?after=DIGEST&limit=N`: that batch's
//!   receipts, by digest, each the signed EIP-712 receipt as stored.
//!
//! A settled receipt is public on purpose: its payer, token counts and
//! charge are what the chain's debits and credits are made of, and what a
//! challenger must show. It holds no prompt or completion text.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use cloister_protocol::B256;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::ledger::BatchRow;
use crate::state::RouterState;

/// Most entries on one page.
const MAX_PAGE: u32 = 1000;

#[derive(Debug, Deserialize)]
pub(super) struct BatchPage {
    after: Option<i64>,
    limit: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ReceiptPage {
    after: Option<String>,
    limit: Option<u32>,
}

fn batch_json(b: &BatchRow) -> Value {
    json!({
        "id": b.id,
        "state": b.state.as_str(),
        "root": b.root,
        "receipt_count": b.receipt_count,
        "total": b.total,
        "fee": b.fee,
        "tx_hash": b.tx_hash,
        "note": b.note,
        "created_at": b.created_at,
        "confirmed_at": b.confirmed_at,
    })
}

fn internal(e: &crate::ledger::LedgerError) -> Response {
    tracing::error!(error = %e, "reading settlement batches failed");
    ApiError::Internal.into_response()
}

/// `GET /v1/audit/batches`.
pub(super) async fn list(
    State(state): State<Arc<RouterState>>,
    Query(q): Query<BatchPage>,
) -> Response {
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    match state.ledger.batch_page(q.after.unwrap_or(0), limit).await {
        Ok(rows) => {
            let next = rows.last().map(|b| b.id);
            let data: Vec<Value> = rows.iter().map(batch_json).collect();
            Json(json!({
                "object": "list",
                "chain": {
                    "chain_id": state.domain.chain_id,
                    "settlement": format!("{:#x}", state.domain.verifying_contract),
                },
                "data": data,
                "next_after": next,
            }))
            .into_response()
        }
        Err(e) => internal(&e),
    }
}

/// `GET /v1/audit/batches/{id}`.
pub(super) async fn receipts(
    State(state): State<Arc<RouterState>>,
    Path(id): Path<i64>,
    Query(q): Query<ReceiptPage>,
) -> Response {
    let after = match q.after.as_deref().map(str::trim) {
        None | Some("") => String::new(),
        Some(text) => match text.parse::<B256>() {
            Ok(digest) => format!("{digest:#x}"),
            Err(_) => {
                return ApiError::bad_request(
                    "`after` must be a receipt id (0x and 64 hex digits) from an earlier page.",
                    Some("after"),
                )
                .into_response();
            }
        },
    };
    let limit = q.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let batch = match state.ledger.batch(id).await {
        Ok(Some(b)) => b,
        Ok(None) => return ApiError::UnknownBatch(id).into_response(),
        Err(e) => return internal(&e),
    };
    match state.ledger.batch_receipt_page(id, &after, limit).await {
        Ok(rows) => {
            let next = rows.last().map(|r| r.digest.clone());
            let data: Vec<Value> = rows
                .iter()
                .map(|r| {
                    json!({
                        "id": r.digest,
                        "receipt": serde_json::from_str::<Value>(&r.receipt)
                            .unwrap_or_else(|_| Value::String(r.receipt.clone())),
                    })
                })
                .collect();
            Json(json!({
                "object": "list",
                "batch": batch_json(&batch),
                "data": data,
                "next_after": next,
            }))
            .into_response()
        }
        Err(e) => internal(&e),
    }
}

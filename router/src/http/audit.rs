//! What auditors and account holders read to check the router's books:
//!
//! - `GET /v1/audit/receipts` (public): every served receipt's digest, node,
//!   signer and times, in the order received, so that anyone can compare
//!   where traffic went with the attestation log. No payer, account, model or
//!   token count is shown.
//! - `GET /v1/receipts` (API key): the caller's own receipts in full (the
//!   signed EIP-712 receipt as stored, and what the router recorded and
//!   charged for it), to recompute the bill.
//! - `GET /v1/account` (API key): the caller's account: balance, the total
//!   charged, and the payer addresses it answers for.
//!
//! `cloister audit log` and `cloister audit receipts` read these.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use cloister_protocol::{B256, SignedReceipt};
use serde::Deserialize;
use serde_json::{Value, json};

use super::authenticate;
use crate::api_error::ApiError;
use crate::ledger::BilledReceipt;
use crate::state::RouterState;

/// `?after=DIGEST&limit=N`.
#[derive(Debug, Deserialize)]
pub(super) struct PageQuery {
    after: Option<String>,
    limit: Option<u32>,
}

/// The receipts of one page, or the error to answer.
async fn page(
    state: &RouterState,
    account: Option<&str>,
    q: &PageQuery,
) -> Result<(Vec<BilledReceipt>, Option<String>), ApiError> {
    let after: Option<B256> = match q.after.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(text.parse().map_err(|_| {
            ApiError::bad_request(
                "`after` must be a receipt id (0x and 64 hex digits) from an earlier page.",
                Some("after"),
            )
        })?),
    };
    let limit = q.limit.unwrap_or(100);
    match state
        .ledger
        .receipt_page(account, after.as_ref(), limit)
        .await
    {
        Ok(Some(rows)) => {
            let next = rows.last().map(|r| format!("{:#x}", r.row.digest));
            Ok((rows, next))
        }
        Ok(None) => Err(ApiError::bad_request(
            "`after` names no receipt on this list.",
            Some("after"),
        )),
        Err(e) => {
            tracing::error!(error = %e, "reading receipts failed");
            Err(ApiError::Internal)
        }
    }
}

/// The signed receipt as stored: parsed when it parses, else the text (an
/// auditor reports it either way).
fn stored_receipt(text: &str) -> Value {
    serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// `GET /v1/audit/receipts?after=DIGEST&limit=N`: public.
pub(super) async fn served(
    State(state): State<Arc<RouterState>>,
    Query(q): Query<PageQuery>,
) -> Response {
    let (rows, next) = match page(&state, None, &q).await {
        Ok(page) => page,
        Err(e) => return e.into_response(),
    };
    let data: Vec<Value> = rows
        .iter()
        .map(|b| {
            let issued_at = serde_json::from_str::<SignedReceipt>(&b.row.receipt)
                .ok()
                .map(|s| s.receipt.issued_at);
            json!({
                "id": format!("{:#x}", b.row.digest),
                "node_id": b.row.node_id,
                "signer": format!("{:#x}", b.row.signer),
                "issued_at": issued_at,
                "recorded_at": b.row.received_at,
            })
        })
        .collect();
    Json(json!({ "object": "list", "data": data, "next_after": next })).into_response()
}

/// `GET /v1/receipts?after=DIGEST&limit=N`: the caller's account's receipts.
pub(super) async fn own(
    State(state): State<Arc<RouterState>>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let caller = match authenticate(&state, &headers).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let (rows, next) = match page(&state, Some(&caller.account), &q).await {
        Ok(page) => page,
        Err(e) => return e.into_response(),
    };
    let data: Vec<Value> = rows
        .iter()
        .map(|b| {
            let r = &b.row;
            json!({
                "id": format!("{:#x}", r.digest),
                "node_id": r.node_id,
                "receipt": stored_receipt(&r.receipt),
                "recorded": {
                    "request_id": format!("{:#x}", r.request_id),
                    "payer": format!("{:#x}", r.payer),
                    "signer": format!("{:#x}", r.signer),
                    "model": r.model,
                    "prompt_tokens": r.prompt_tokens,
                    "completion_tokens": r.completion_tokens,
                    "charge": r.charge,
                },
                "charged": b.charged,
                "recorded_at": r.received_at,
                "settled_batch": r.settled_batch,
            })
        })
        .collect();
    Json(json!({ "object": "list", "data": data, "next_after": next })).into_response()
}

/// `GET /v1/account`: the caller's account.
pub(super) async fn account(State(state): State<Arc<RouterState>>, headers: HeaderMap) -> Response {
    let caller = match authenticate(&state, &headers).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match state.ledger.account_overview(&caller.account).await {
        Ok(Some(a)) => Json(json!({
            "object": "account",
            "name": a.name,
            "balance": a.balance,
            "requests": a.requests,
            "charged": a.charged,
            "payers": a.payers.iter().map(|p| format!("{p:#x}")).collect::<Vec<_>>(),
        }))
        .into_response(),
        Ok(None) => ApiError::InvalidKey.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "reading the account failed");
            ApiError::Internal.into_response()
        }
    }
}

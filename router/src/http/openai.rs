//! The plain OpenAI endpoints. The router reads only `model`, `stream` and
//! the token limit from the body (for routing and rate limits) and seals the
//! body unchanged to the chosen node; it never logs or stores the body.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use cloister_client::openai_body::{Endpoint, peek};
use serde_json::json;

use super::{authenticate, read_body};
use crate::api_error::ApiError;
use crate::relay::{self, PlainRequest, Route};
use crate::state::RouterState;

/// Tokens reserved for a request that names no limit.
const DEFAULT_MAX_TOKENS: u64 = 1024;

/// `GET /v1/models`
pub(super) async fn models(State(state): State<Arc<RouterState>>, headers: HeaderMap) -> Response {
    if let Err(e) = authenticate(&state, &headers).await {
        return e.into_response();
    }
    let created = crate::state::now_unix();
    let data: Vec<_> = state
        .nodes
        .models()
        .into_iter()
        .map(
            |id| json!({ "id": id, "object": "model", "created": created, "owned_by": "cloister" }),
        )
        .collect();
    Json(json!({ "object": "list", "data": data })).into_response()
}

/// `POST /v1/chat/completions`
pub(super) async fn chat(
    State(state): State<Arc<RouterState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(state, headers, body, Route::Chat).await
}

/// `POST /v1/completions`
pub(super) async fn completions(
    State(state): State<Arc<RouterState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(state, headers, body, Route::Completions).await
}

async fn handle(state: Arc<RouterState>, headers: HeaderMap, body: Body, route: Route) -> Response {
    let started = Instant::now();
    match admit(&state, &headers, body, route).await {
        Ok((caller, request)) => relay::forward(state, caller, request).await,
        Err(e) => {
            state.metrics.request(
                route.label(),
                e.status().as_u16(),
                started.elapsed().as_secs_f64(),
            );
            e.into_response()
        }
    }
}

/// Authentication, body, fields, quota and rate limits, in that order.
async fn admit(
    state: &RouterState,
    headers: &HeaderMap,
    body: Body,
    route: Route,
) -> Result<(crate::ledger::Caller, PlainRequest), ApiError> {
    let caller = authenticate(state, headers).await?;
    let body = read_body(
        body,
        state.config.max_request_bytes,
        state.config.body_timeout(),
    )
    .await?;
    let endpoint = match route {
        Route::Chat => Endpoint::Chat,
        Route::Completions => Endpoint::Completions,
    };
    let peeked = peek(&body, endpoint).map_err(|e| ApiError::bad_request(e.message, e.param))?;
    let (model, stream) = (peeked.model, peeked.stream);
    let max_tokens = peeked.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    if caller.balance <= 0 {
        return Err(ApiError::InsufficientQuota);
    }
    let reserved_tokens = (body.len() as u64 / 4).saturating_add(max_tokens);
    state
        .limiter
        .admit(&caller.key_id, reserved_tokens, Instant::now())
        .map_err(|l| ApiError::RateLimited {
            limit: l.limit,
            retry_after_secs: l.retry_after_secs,
        })?;
    Ok((
        caller,
        PlainRequest {
            route,
            body,
            model,
            stream,
            reserved_tokens,
        },
    ))
}

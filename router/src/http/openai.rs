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
use serde::Deserialize;
use serde_json::json;

use super::{authenticate, read_body};
use crate::api_error::ApiError;
use crate::relay::{self, PlainRequest, Route};
use crate::state::RouterState;

/// Tokens reserved for a request that names no limit.
const DEFAULT_MAX_TOKENS: u64 = 1024;

/// The fields the router reads. Anything else passes through sealed.
#[derive(Debug, Deserialize)]
struct Peek {
    model: Option<serde_json::Value>,
    stream: Option<serde_json::Value>,
    max_tokens: Option<serde_json::Value>,
    max_completion_tokens: Option<serde_json::Value>,
    messages: Option<serde::de::IgnoredAny>,
    prompt: Option<serde::de::IgnoredAny>,
}

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
    let peek: Peek = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            format!("The body is not a JSON object this endpoint takes ({e})."),
            None,
        )
    })?;
    let model = match peek.model {
        Some(serde_json::Value::String(m)) if !m.is_empty() => m,
        Some(_) => {
            return Err(ApiError::bad_request(
                "`model` must be a string.",
                Some("model"),
            ));
        }
        None => {
            return Err(ApiError::bad_request(
                "You must provide a model parameter.",
                Some("model"),
            ));
        }
    };
    match (route, peek.messages.is_some(), peek.prompt.is_some()) {
        (Route::Chat, true, false) | (Route::Completions, false, true) => {}
        (Route::Chat, _, _) => {
            return Err(ApiError::bad_request(
                "Chat completions take `messages` (and no `prompt`).",
                Some("messages"),
            ));
        }
        (Route::Completions, _, _) => {
            return Err(ApiError::bad_request(
                "Completions take `prompt` (and no `messages`).",
                Some("prompt"),
            ));
        }
    }
    let stream = match peek.stream {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => b,
        Some(_) => {
            return Err(ApiError::bad_request(
                "`stream` must be a boolean.",
                Some("stream"),
            ));
        }
    };
    let limit = |v: Option<serde_json::Value>, name: &'static str| match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ApiError::bad_request(format!("`{name}` must be a positive integer."), Some(name))
        }),
    };
    let max_tokens = limit(peek.max_completion_tokens, "max_completion_tokens")?
        .or(limit(peek.max_tokens, "max_tokens")?)
        .unwrap_or(DEFAULT_MAX_TOKENS);
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

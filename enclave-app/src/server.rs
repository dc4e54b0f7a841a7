//! The HTTP surface: `GET /attestation`, `POST /v1/sealed`, `GET /healthz`.
//!
//! [`app`] returns the router (tests drive it with `oneshot`); [`serve`]
//! takes a bound listener, connection limits and a shutdown future, and on
//! shutdown stops admitting requests and lets the ones in flight finish.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::http_server::{self, ConnectionLimits};
use crate::sealed;
use crate::state::AppState;

/// The router.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/attestation", get(attestation))
        // The handler admits the request before it reads the body, and reads
        // it with its own size limit and deadline.
        .route(
            "/v1/sealed",
            post(sealed::handle).layer(DefaultBodyLimit::disable()),
        )
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let draining = state.clone();
    let signal = async move {
        shutdown.await;
        draining.begin_shutdown();
        tracing::info!(
            in_flight = draining.admission.in_flight(),
            "shutting down: no new requests; finishing those in flight"
        );
    };
    http_server::serve(listener, app(state), limits, signal).await
}

#[derive(Debug, Deserialize)]
struct NonceQuery {
    nonce: Option<String>,
}

fn json_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "message": message.into() } });
    (status, axum::Json(body)).into_response()
}

async fn attestation(
    State(state): State<Arc<AppState>>,
    Query(query): Query<NonceQuery>,
) -> Response {
    let Some(text) = query.nonce else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "nonce_required",
            "GET /attestation?nonce=<64 hex digits>: the nonce is the verifier's fresh challenge",
        );
    };
    let nonce: [u8; 32] = match hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
    {
        Some(nonce) => nonce,
        None => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_nonce",
                "nonce must be 32 bytes as 64 hex digits",
            );
        }
    };
    // Quote generation is slow and serialised in the hardware: a flood of
    // challenges must not queue without bound.
    let Ok(_slot) = state.quote_slots.clone().try_acquire_owned() else {
        tracing::warn!("refused: too many evidence collections at once");
        let mut response = json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "busy",
            "evidence is being collected for other verifiers; retry shortly",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return response;
    };
    match state.evidence.bundle(nonce).await {
        Ok(bundle) => {
            tracing::info!(platform = %bundle.platform, bytes = bundle.evidence.0.len(), "evidence served");
            ([(header::CACHE_CONTROL, "no-store")], axum::Json(bundle)).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "evidence collection failed");
            let status = if e.is_retryable() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            json_error(status, "evidence_unavailable", e.to_string())
        }
    }
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let status = if state.is_shutting_down() {
        "draining"
    } else {
        "ok"
    };
    axum::Json(serde_json::json!({
        "status": status,
        "model": state.model_id,
        "tee": state.evidence.tee().to_string(),
        "in_flight": state.admission.in_flight(),
    }))
    .into_response()
}

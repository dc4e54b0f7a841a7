//! The HTTP surface: `GET /attestation`, `POST /v1/sealed`, `GET /healthz`.
//!
//! [`app`] returns the router (tests drive it with `oneshot`); [`serve`]
//! takes a bound listener and a shutdown future, and on shutdown stops
//! admitting requests and lets the ones in flight finish.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cloister_protocol::{NodeKeys, ReceiptDomain};
use mistralrs_core::MistralRs;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::admission::Admission;
use crate::evidence::Evidence;
use crate::replay::ReplayCache;
use crate::sealed;

/// Per-request limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest (and default) max_tokens.
    pub max_tokens: u64,
    /// Largest sealed body in bytes.
    pub max_request_bytes: usize,
}

/// Everything the handlers share.
pub struct AppState {
    /// The inference engine.
    pub engine: Arc<MistralRs>,
    /// The model id clients name.
    pub model_id: String,
    /// HPKE and receipt-signing keys.
    pub keys: NodeKeys,
    /// Evidence for `/attestation`.
    pub evidence: Evidence,
    /// Receipts' EIP-712 domain.
    pub receipt_domain: ReceiptDomain,
    /// Admission control.
    pub admission: Admission,
    /// Sealed requests already served.
    pub replay: ReplayCache,
    /// Limits.
    pub limits: Limits,
    shutting_down: AtomicBool,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("model_id", &self.model_id)
            .field("signer", &self.keys.signer_address())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State for a node.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        engine: Arc<MistralRs>,
        model_id: String,
        keys: NodeKeys,
        evidence: Evidence,
        receipt_domain: ReceiptDomain,
        admission: Admission,
        limits: Limits,
    ) -> Self {
        Self {
            engine,
            model_id,
            keys,
            evidence,
            receipt_domain,
            admission,
            replay: ReplayCache::new(1 << 20),
            limits,
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Whether the node is draining.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Stops admitting new sealed requests.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }
}

/// The router.
pub fn app(state: Arc<AppState>) -> Router {
    let body_limit = state.limits.max_request_bytes;
    Router::new()
        .route("/attestation", get(attestation))
        .route(
            "/v1/sealed",
            post(sealed::handle).layer(DefaultBodyLimit::max(body_limit)),
        )
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
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
    axum::serve(listener, app(state))
        .with_graceful_shutdown(signal)
        .await
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

//! Operations: the status page, `/healthz`, `/metrics`, and the 404 answer.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use crate::api_error::ApiError;
use crate::state::RouterState;

/// `GET /`
pub(super) async fn status_page(State(state): State<Arc<RouterState>>) -> Response {
    let receipts = state.ledger.recent_receipts(20).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "reading receipts for the status page failed");
        Vec::new()
    });
    Html(crate::status_page::render(
        &state.nodes.all(),
        &receipts,
        crate::state::now_unix(),
    ))
    .into_response()
}

/// `GET /healthz`: 200 while the ledger answers; says how many nodes serve.
pub(super) async fn healthz(State(state): State<Arc<RouterState>>) -> Response {
    let nodes = state.nodes.all();
    let serving = nodes.iter().filter(|n| n.serving().is_some()).count();
    let ledger_ok = state.ledger.ping().await.is_ok();
    let status = if ledger_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if ledger_ok { "ok" } else { "ledger_unavailable" },
            "nodes": nodes.len(),
            "serving": serving,
            "uptime_s": state.started_at.elapsed().as_secs(),
        })),
    )
        .into_response()
}

/// `GET /metrics`
pub(super) async fn metrics(State(state): State<Arc<RouterState>>) -> Response {
    let mut counts = [
        ("pending", 0i64),
        ("serving", 0),
        ("refused", 0),
        ("unreachable", 0),
    ];
    for node in state.nodes.all() {
        let name = node.status().name();
        if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == name) {
            slot.1 += 1;
        }
    }
    state.metrics.set_nodes(&counts);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Unknown routes: OpenAI's 404 shape.
pub(super) async fn not_found(uri: Uri) -> Response {
    let error = ApiError::bad_request(format!("Unknown request URL: {}", uri.path()), None);
    let mut response = error.into_response();
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

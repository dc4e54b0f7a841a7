//! `cloister proxy`: a local OpenAI-compatible endpoint (models, chat,
//! completions, streamed or not) that seals every request end to end with a
//! [`Client`], so any OpenAI client gets sealing without code changes.
//!
//! Requests go only to nodes that pass the user's own policy; when none
//! does, nothing is sent and the answer (503 `no_trusted_node`) names every
//! node's reasons. A streamed answer is passed on chunk by chunk as it
//! opens, but its final `data: [DONE]` only after the receipt verified: a
//! client never sees an answer cut short by the router as complete (it gets
//! an error event instead). Every verified receipt is appended to a local
//! JSONL log.

mod errors;
mod receipts_log;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::mpsc;

pub use receipts_log::ReceiptLog;

use crate::answer::Answer;
use crate::client::Client;
use crate::openai_body::{Endpoint, peek};
use errors::ProxyError;

/// The proxy's state.
#[derive(Debug)]
pub struct ProxyState {
    /// The sealing client (its API key, if configured, is used for every
    /// request; else each request's own `Authorization` is passed on).
    pub client: Arc<Client>,
    /// Whether requests carry their own key (no `--api-key`).
    pub pass_authorization: bool,
    /// Where verified receipts are appended.
    pub receipts: Option<ReceiptLog>,
    /// The largest request body forwarded.
    pub max_request_bytes: usize,
}

/// The proxy's routes.
pub fn app(state: Arc<ProxyState>) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` resolves (requests in flight
/// finish).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ProxyState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The key to send: the configured one (`None` here), or the caller's own.
fn authorization(state: &ProxyState, headers: &HeaderMap) -> Result<Option<String>, ProxyError> {
    if !state.pass_authorization {
        return Ok(None);
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .map(Some)
        .ok_or(ProxyError::MissingKey)
}

async fn models(State(state): State<Arc<ProxyState>>, headers: HeaderMap) -> Response {
    let auth = match authorization(&state, &headers) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    match state.client.survey(auth.as_deref()).await {
        Ok(survey) if survey.trusted.is_empty() => {
            ProxyError::Client(crate::ClientError::NoTrustedNode {
                model: None,
                refusals: survey.refused.clone(),
            })
            .into_response()
        }
        Ok(survey) => {
            let data: Vec<_> = survey
                .models()
                .into_iter()
                .map(
                    |id| json!({"id": id, "object": "model", "created": 0, "owned_by": "cloister"}),
                )
                .collect();
            axum::Json(json!({"object": "list", "data": data})).into_response()
        }
        Err(e) => ProxyError::Client(e).into_response(),
    }
}

async fn chat(State(state): State<Arc<ProxyState>>, headers: HeaderMap, body: Body) -> Response {
    forward(state, headers, body, Endpoint::Chat).await
}

async fn completions(
    State(state): State<Arc<ProxyState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    forward(state, headers, body, Endpoint::Completions).await
}

async fn forward(
    state: Arc<ProxyState>,
    headers: HeaderMap,
    body: Body,
    endpoint: Endpoint,
) -> Response {
    match forward_inner(state, headers, body, endpoint).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn forward_inner(
    state: Arc<ProxyState>,
    headers: HeaderMap,
    body: Body,
    endpoint: Endpoint,
) -> Result<Response, ProxyError> {
    let auth = authorization(&state, &headers)?;
    let body = axum::body::to_bytes(body, state.max_request_bytes)
        .await
        .map_err(|_| ProxyError::TooLarge {
            limit: state.max_request_bytes,
        })?;
    let peeked = peek(&body, endpoint).map_err(|e| ProxyError::BadRequest {
        message: e.message,
        param: e.param,
    })?;
    let answer = state
        .client
        .send(&peeked.model, body.to_vec(), auth.as_deref())
        .await
        .map_err(ProxyError::Client)?;
    if peeked.stream {
        return Ok(stream(state, answer));
    }
    let node = answer.node().id.clone();
    let done = answer.collect().await.map_err(|e| {
        state.client.note_failure(&node, &e);
        ProxyError::Client(e)
    })?;
    record(&state, &done.node.id, &done.receipt).await;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        done.plaintext,
    )
        .into_response())
}

async fn record(state: &ProxyState, node: &str, receipt: &cloister_protocol::VerifiedReceipt) {
    let r = &receipt.receipt.receipt;
    tracing::info!(
        node, prompt_tokens = r.prompt_tokens, completion_tokens = r.completion_tokens,
        charge = %r.charge(), "answer verified: receipt by the attested signer"
    );
    if let Some(log) = &state.receipts
        && let Err(e) = log.append(node, receipt).await
    {
        tracing::error!(path = %log.path().display(), error = %e, "cannot append to the receipt log");
    }
}

const DONE: &[u8] = b"data: [DONE]\n\n";

/// Streams the answer as SSE, holding back `data: [DONE]` until the
/// receipt verified.
fn stream(state: Arc<ProxyState>, mut answer: Answer) -> Response {
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    tokio::spawn(async move {
        let mut held_done = false;
        loop {
            match answer.next_chunk().await {
                Ok(Some(mut chunk)) => {
                    if chunk.ends_with(DONE) {
                        chunk.truncate(chunk.len() - DONE.len());
                        held_done = true;
                    }
                    if !chunk.is_empty() && tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                        // The caller left: dropping the answer closes the
                        // router's stream (the node stops generating).
                        return;
                    }
                }
                Ok(None) => {
                    if let Some(receipt) = answer.receipt().cloned() {
                        record(&state, &answer.node().id, &receipt).await;
                    }
                    if held_done {
                        let _ = tx.send(Ok(Bytes::from_static(DONE))).await;
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(node = %answer.node().id, error = %e, "streamed answer failed verification or broke off");
                    state.client.note_failure(&answer.node().id, &e);
                    let _ = tx
                        .send(Ok(Bytes::from(ProxyError::Client(e).sse_event())))
                        .await;
                    return;
                }
            }
        }
    });
    let body = Body::from_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    response
}

//! `POST /v1/sealed`: admit, read the sealed body under a size limit and a
//! deadline, open it, check its replay window and payer, filter the request,
//! run it, and answer with frames: ciphertext chunks, then a signed usage
//! receipt, or an error frame.
//!
//! Admission (a queue slot, not shutting down) comes before the body is read,
//! so a node at capacity spends nothing on a request it will refuse.
//! Failures before generation starts get an HTTP error status (so a router
//! can retry on another node before the first byte); a failure later ends
//! the stream with an error frame and no receipt, so nothing is charged.
//! Logs carry ids, sizes, token counts and timings, never text.

mod reply;
mod stream;

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloister_protocol::CONTENT_TYPE as FRAMES_CONTENT_TYPE;
use cloister_protocol::request_filter::{self, FilterLimits};
use futures::StreamExt as _;

use crate::inference::{self, InferenceError};
use crate::state::AppState;
use reply::{clear_failure, sealed_failure, status_of};
use stream::Job;

fn random_id() -> [u8; 32] {
    use ring::rand::SecureRandom as _;
    let mut id = [0u8; 32];
    // The system RNG does not fail on Linux; a zero id would only weaken
    // log correlation, never security (receipts bind the request hash).
    let _ = ring::rand::SystemRandom::new().fill(&mut id);
    id
}

/// The handler.
pub(crate) async fn handle(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let request_id = random_id();
    let span = tracing::info_span!(
        "sealed",
        request = %hex::encode(request_id.get(..8).unwrap_or_default())
    );
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    tracing::Instrument::instrument(
        handle_in_span(
            state,
            request.into_body(),
            declared,
            request_id,
            span.clone(),
        ),
        span,
    )
    .await
}

/// Why a body could not be read.
enum BodyFailure {
    TooLarge,
    TooSlow,
    Broken,
}

/// Reads at most `limit` bytes within the body deadline.
async fn read_body(
    body: Body,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<Bytes, BodyFailure> {
    let read = async {
        let mut stream = body.into_data_stream();
        let mut bytes = Vec::new();
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(|_| BodyFailure::Broken)?;
            if bytes.len() + piece.len() > limit {
                return Err(BodyFailure::TooLarge);
            }
            bytes.extend_from_slice(&piece);
        }
        Ok(Bytes::from(bytes))
    };
    tokio::time::timeout(deadline, read)
        .await
        .unwrap_or(Err(BodyFailure::TooSlow))
}

fn too_large(limit: usize) -> Response {
    tracing::warn!(limit, "refused: body too large");
    clear_failure(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("sealed bodies are limited to {limit} bytes"),
        false,
    )
}

async fn handle_in_span(
    state: Arc<AppState>,
    body: Body,
    declared_length: Option<u64>,
    request_id: [u8; 32],
    span: tracing::Span,
) -> Response {
    let received = Instant::now();
    let limits = state.limits;
    if declared_length.is_some_and(|n| n > limits.max_request_bytes as u64) {
        return too_large(limits.max_request_bytes);
    }
    if state.is_shutting_down() {
        return clear_failure(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "this node is shutting down; use another",
            true,
        );
    }
    let ticket = match state.admission.try_admit() {
        Ok(ticket) => ticket,
        Err(busy) => {
            tracing::warn!(%busy, "refused: busy");
            return clear_failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                busy.to_string(),
                true,
            );
        }
    };
    let body = match read_body(body, limits.max_request_bytes, limits.body_timeout).await {
        Ok(body) => body,
        Err(BodyFailure::TooLarge) => return too_large(limits.max_request_bytes),
        Err(BodyFailure::TooSlow) => {
            tracing::warn!(
                seconds = limits.body_timeout.as_secs_f32(),
                "refused: body too slow"
            );
            return clear_failure(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the body did not arrive within {} s",
                    limits.body_timeout.as_secs_f32()
                ),
                true,
            );
        }
        Err(BodyFailure::Broken) => {
            tracing::info!("the client broke off while sending the body");
            return clear_failure(
                StatusCode::BAD_REQUEST,
                "body_broken",
                "the body broke off",
                true,
            );
        }
    };
    tracing::debug!(bytes = body.len(), "sealed body read");
    let opened = match cloister_protocol::open_request(&state.keys, &state.receipt_domain, &body) {
        Ok(opened) => opened,
        Err(e) => {
            tracing::warn!(bytes = body.len(), error = %e, "refused: cannot open sealed request");
            let code = match e {
                cloister_protocol::OpenError::BadEnvelope(_) => "bad_envelope",
                _ => "undecryptable",
            };
            return clear_failure(StatusCode::BAD_REQUEST, code, e.to_string(), false);
        }
    };
    if let Err(refusal) = state
        .replay
        .admit(opened.replay_id, opened.issued_at, state.clock.now())
    {
        tracing::warn!(code = refusal.code(), "refused: {refusal}");
        let status = match refusal {
            crate::replay::ReplayRefusal::Replayed => StatusCode::CONFLICT,
            crate::replay::ReplayRefusal::Full { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        return clear_failure(
            status,
            refusal.code(),
            refusal.to_string(),
            refusal.is_retryable(),
        );
    }
    let sealer = {
        let mut sealer = opened.sealer;
        sealer.set_pad_bucket(limits.pad_bucket);
        sealer
    };
    let filtered = match request_filter::filter_request(
        &opened.body,
        &FilterLimits {
            max_tokens: limits.max_tokens,
        },
    ) {
        Ok(filtered) => filtered,
        Err(rejected) => {
            tracing::info!(
                code = rejected.code.as_str(),
                param = rejected.param.as_deref().unwrap_or(""),
                "request refused by the filter"
            );
            let stream = false;
            return sealed_failure(
                StatusCode::BAD_REQUEST,
                sealer,
                &InferenceError::Refused(rejected),
                stream,
            );
        }
    };
    let stream_requested = filtered.stream;
    let running = ticket.run().await;
    let queued = received.elapsed();
    let mut generation = match inference::submit(&state.engine, &state.model_id, filtered).await {
        Ok(generation) => generation,
        Err(e) => {
            tracing::info!(code = e.code(), "request refused by the engine");
            return sealed_failure(status_of(&e), sealer, &e, stream_requested);
        }
    };
    let first = match generation.next().await {
        Some(Ok(piece)) => piece,
        Some(Err(e)) => {
            tracing::info!(code = e.code(), "generation failed before the first chunk");
            return sealed_failure(status_of(&e), sealer, &e, generation.stream);
        }
        None => {
            let e = InferenceError::Engine("no output".into());
            return sealed_failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                sealer,
                &e,
                generation.stream,
            );
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(stream::BODY_CHANNEL_FRAMES);
    let job = Job {
        state: state.clone(),
        request_id,
        request_hash: opened.request_hash,
        payer: opened.payer,
        request_bytes: body.len(),
        received,
        queued,
        running,
    };
    tokio::spawn(tracing::Instrument::instrument(
        job.run(tx, sealer, generation, first),
        span,
    ));
    let frames = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, std::convert::Infallible>(bytes), rx))
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, FRAMES_CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(frames),
    )
        .into_response()
}

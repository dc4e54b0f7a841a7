//! `POST /v1/sealed`: open the client's sealed request, run it, and answer
//! with frames: ciphertext chunks (one SSE event each, or the whole JSON),
//! then a signed usage receipt, or an error frame.
//!
//! Failures before generation starts get an HTTP error status (so a router
//! can retry on another node before the first byte); a failure later ends
//! the stream with an error frame and no receipt, so nothing is charged.
//! Logs carry ids, sizes, token counts and timings, never text.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloister_protocol::{
    CONTENT_TYPE as FRAMES_CONTENT_TYPE, ErrorFrame, Frame, ResponseSealer, UsageReceipt,
};
use tokio::sync::mpsc;

use crate::admission::Running;
use crate::inference::{self, Generation, InferenceError, Piece, TokenUsage};
use crate::server::AppState;

/// A response made of frames, with a status.
fn frames_response(status: StatusCode, frames: &[Frame], retry_after: Option<u64>) -> Response {
    // Every frame here is small; encoding only fails for payloads over the
    // frame limit.
    let body: Vec<u8> = frames
        .iter()
        .filter_map(|f| f.encode().ok())
        .flatten()
        .collect();
    let mut response =
        (status, [(header::CONTENT_TYPE, FRAMES_CONTENT_TYPE)], body).into_response();
    if let Some(secs) = retry_after
        && let Ok(value) = header::HeaderValue::from_str(&secs.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn error_frame(code: &str, message: impl Into<String>, retryable: bool) -> Frame {
    Frame::Error(ErrorFrame {
        code: code.to_owned(),
        message: message.into(),
        retryable,
    })
}

/// Seals the OpenAI-shaped error for the client, then ends with an error
/// frame whose clear text is only the code.
fn sealed_failure(
    status: StatusCode,
    mut sealer: ResponseSealer,
    error: &InferenceError,
    stream: bool,
) -> Response {
    let body = error.client_body().to_string();
    let plaintext = if stream {
        format!("data: {body}\n\n")
    } else {
        body
    };
    let mut frames = Vec::new();
    if let Ok(chunk) = sealer.seal_chunk(plaintext.as_bytes()) {
        frames.push(Frame::Ciphertext(chunk));
    }
    if let Ok((last, _)) = sealer.finish() {
        frames.push(Frame::Ciphertext(last));
    }
    frames.push(error_frame(
        error.code(),
        "the request failed; details are in the sealed response",
        false,
    ));
    frames_response(status, &frames, None)
}

fn status_of(error: &InferenceError) -> StatusCode {
    if error.is_client_error() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// Milliseconds for logs.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn random_id() -> [u8; 32] {
    use ring::rand::SecureRandom as _;
    let mut id = [0u8; 32];
    // The system RNG does not fail on Linux; a zero id would only weaken
    // log correlation, never security (receipts bind the request hash).
    let _ = ring::rand::SystemRandom::new().fill(&mut id);
    id
}

/// The handler.
pub(crate) async fn handle(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let request_id = random_id();
    let span = tracing::info_span!(
        "sealed",
        request = %hex::encode(request_id.get(..8).unwrap_or_default())
    );
    tracing::Instrument::instrument(handle_in_span(state, body, request_id, span.clone()), span)
        .await
}

async fn handle_in_span(
    state: Arc<AppState>,
    body: Bytes,
    request_id: [u8; 32],
    span: tracing::Span,
) -> Response {
    let received = Instant::now();
    if state.is_shutting_down() {
        return frames_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &[error_frame(
                "shutting_down",
                "this node is shutting down; use another",
                true,
            )],
            None,
        );
    }
    let ticket = match state.admission.try_admit() {
        Ok(ticket) => ticket,
        Err(busy) => {
            tracing::warn!(%busy, "refused: busy");
            return frames_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &[error_frame("busy", busy.to_string(), true)],
                Some(1),
            );
        }
    };
    let opened = match cloister_protocol::open_request(&state.keys, &body) {
        Ok(opened) => opened,
        Err(e) => {
            tracing::warn!(bytes = body.len(), error = %e, "refused: cannot open sealed request");
            return frames_response(
                StatusCode::BAD_REQUEST,
                &[error_frame("undecryptable", e.to_string(), false)],
                None,
            );
        }
    };
    if !state.replay.first_time(opened.replay_id) {
        tracing::warn!(bytes = body.len(), "refused: replayed sealed request");
        return frames_response(
            StatusCode::CONFLICT,
            &[error_frame(
                "replayed",
                "this sealed request was already served",
                false,
            )],
            None,
        );
    }
    let sealer = opened.sealer;
    let (kind, json) = match inference::prepare(&opened.plaintext, state.limits.max_tokens) {
        Ok(prepared) => prepared,
        Err(e) => {
            tracing::info!(code = e.code(), "request refused");
            return sealed_failure(StatusCode::BAD_REQUEST, sealer, &e, false);
        }
    };
    let stream_requested = json
        .get("stream")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let running = ticket.run().await;
    let queued = received.elapsed();
    let mut generation = match inference::submit(&state.engine, &state.model_id, kind, json).await {
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
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(32);
    let job = Job {
        state: state.clone(),
        request_id,
        request_hash: opened.request_hash,
        request_bytes: body.len(),
        received,
        queued,
        _running: running,
    };
    tokio::spawn(tracing::Instrument::instrument(
        job.produce(tx, sealer, generation, first),
        span,
    ));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, FRAMES_CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// One running request.
struct Job {
    state: Arc<AppState>,
    request_id: [u8; 32],
    request_hash: [u8; 32],
    request_bytes: usize,
    received: Instant,
    queued: Duration,
    _running: Running,
}

/// An error frame in place of a frame that could not be encoded.
fn frame_or_error(error: cloister_protocol::FrameError) -> Vec<u8> {
    error_frame("frame_failed", error.to_string(), false)
        .encode()
        .unwrap_or_default()
}

/// The client went away: stop generating.
struct Disconnected;

impl Job {
    async fn send(
        tx: &mpsc::Sender<Result<Bytes, Infallible>>,
        frame: Frame,
        sent: &mut usize,
    ) -> Result<(), Disconnected> {
        let bytes = match frame.encode() {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %e, "a frame could not be encoded");
                frame_or_error(e)
            }
        };
        *sent += bytes.len();
        tx.send(Ok(Bytes::from(bytes)))
            .await
            .map_err(|_| Disconnected)
    }

    async fn produce(
        self,
        tx: mpsc::Sender<Result<Bytes, Infallible>>,
        mut sealer: ResponseSealer,
        mut generation: Generation,
        first: Piece,
    ) {
        let mut sent = 0usize;
        let mut first_chunk_at: Option<Duration> = None;
        let mut next = Some(Ok(first));
        loop {
            let piece = match next.take() {
                Some(piece) => piece,
                None => match generation.next().await {
                    Some(piece) => piece,
                    None => Err(InferenceError::Engine("the generation ended early".into())),
                },
            };
            let outcome = match piece {
                Ok(Piece::Text(text)) => {
                    first_chunk_at.get_or_insert_with(|| self.received.elapsed());
                    // One SSE event is one chunk; a whole JSON response larger
                    // than a frame goes out in several.
                    let mut outcome = Ok(());
                    for part in text
                        .as_bytes()
                        .chunks(cloister_protocol::MAX_SEAL_PLAINTEXT)
                    {
                        match sealer.seal_chunk(part) {
                            Ok(chunk) => {
                                outcome =
                                    Self::send(&tx, Frame::Ciphertext(chunk), &mut sent).await;
                                if outcome.is_err() {
                                    break;
                                }
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "sealing a chunk failed");
                                let frame = error_frame(
                                    "seal_failed",
                                    "sealing the response failed",
                                    false,
                                );
                                let _ = Self::send(&tx, frame, &mut sent).await;
                                return;
                            }
                        }
                    }
                    outcome
                }
                Ok(Piece::Done(usage)) => {
                    self.finish(&tx, sealer, usage, &mut sent, first_chunk_at)
                        .await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(code = e.code(), "generation failed after the first chunk");
                    let event = format!("data: {}\n\n", e.client_body());
                    if let Ok(chunk) = sealer.seal_chunk(event.as_bytes()) {
                        let _ = Self::send(&tx, Frame::Ciphertext(chunk), &mut sent).await;
                    }
                    if let Ok((last, _)) = sealer.finish() {
                        let _ = Self::send(&tx, Frame::Ciphertext(last), &mut sent).await;
                    }
                    let _ = Self::send(
                        &tx,
                        error_frame(
                            e.code(),
                            "generation failed; no receipt, no charge",
                            e.is_client_error(),
                        ),
                        &mut sent,
                    )
                    .await;
                    return;
                }
            };
            if outcome.is_err() {
                tracing::info!(
                    generated = generation.usage().completion_tokens,
                    seconds = self.received.elapsed().as_secs_f32(),
                    "client disconnected: generation cancelled, no receipt"
                );
                return;
            }
        }
    }

    async fn finish(
        &self,
        tx: &mpsc::Sender<Result<Bytes, Infallible>>,
        sealer: ResponseSealer,
        usage: TokenUsage,
        sent: &mut usize,
        first_chunk_at: Option<Duration>,
    ) {
        let (last, response_hash) = match sealer.finish() {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "sealing the last chunk failed");
                let _ = Self::send(
                    tx,
                    error_frame("seal_failed", "sealing the response failed", false),
                    sent,
                )
                .await;
                return;
            }
        };
        if Self::send(tx, Frame::Ciphertext(last), sent).await.is_err() {
            tracing::info!("client disconnected before the receipt");
            return;
        }
        let issued_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let receipt = UsageReceipt {
            request_id: self.request_id.into(),
            node_signer: self.state.keys.signer_address(),
            model_id: self.state.model_id.clone(),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            request_hash: self.request_hash.into(),
            response_hash: response_hash.into(),
            issued_at,
        };
        match self
            .state
            .keys
            .sign_receipt(receipt, &self.state.receipt_domain)
        {
            Ok(signed) => {
                let _ = Self::send(tx, Frame::Receipt(signed), sent).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "signing the receipt failed");
                let _ = Self::send(
                    tx,
                    error_frame("receipt_failed", "signing the receipt failed", false),
                    sent,
                )
                .await;
                return;
            }
        }
        let total = self.received.elapsed();
        let decode_secs = first_chunk_at
            .map_or(total, |t| total.saturating_sub(t))
            .as_secs_f64();
        tracing::info!(
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            request_bytes = self.request_bytes,
            response_bytes = *sent,
            queued_ms = millis(self.queued),
            first_chunk_ms = first_chunk_at.map(millis),
            total_ms = millis(total),
            tokens_per_s = format!(
                "{:.1}",
                usage.completion_tokens as f64 / decode_secs.max(1e-6)
            ),
            "request served"
        );
    }
}

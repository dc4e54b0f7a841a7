//! The plain OpenAI endpoints' path to a node: choose, seal, send, open,
//! check the receipt, charge.
//!
//! The router seals every plain request itself (the path router → node is
//! always ciphertext), with the account's payer key. A node that fails
//! before the first byte of the answer reaches the client (connection
//! refused, an error status, a broken or tampered stream) is counted against
//! its breaker and the request is re-sealed to the next candidate (a fresh
//! seal: the enclave refuses replays). After the first byte the client gets
//! a clean error (an SSE error event) and, with no valid receipt, no charge.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloister_protocol::{
    ExpectedReceipt, PayerKey, ResponseError, ResponseEvent, ResponseReader, VerifiedReceipt,
    seal_request,
};
use futures::StreamExt as _;
use tokio::sync::mpsc;

use crate::api_error::ApiError;
use crate::ledger::Caller;
use crate::nodes::{Attested, Node, OutstandingGuard};
use crate::receipts::{self, Expectation};
use crate::state::{RouterState, now_unix};

/// Which endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/v1/chat/completions`
    Chat,
    /// `/v1/completions`
    Completions,
}

impl Route {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Chat => "chat_completions",
            Self::Completions => "completions",
        }
    }
}

/// A plain request after validation.
#[derive(Debug)]
pub struct PlainRequest {
    /// The endpoint.
    pub route: Route,
    /// The body exactly as received (sealed as is).
    pub body: Bytes,
    /// `model`.
    pub model: String,
    /// `stream`.
    pub stream: bool,
    /// Tokens reserved against the rate limit.
    pub reserved_tokens: u64,
}

/// A node's answer, opened up to its first plaintext.
struct Started {
    node: Arc<Node>,
    attested: Arc<Attested>,
    guard: OutstandingGuard,
    reader: ResponseReader,
    upstream: futures::stream::BoxStream<'static, Result<Bytes, reqwest::Error>>,
    first: Vec<u8>,
    request_hash: [u8; 32],
    payer: cloister_protocol::Address,
    started: Instant,
}

impl Started {
    /// The next plaintext or the receipt, reading upstream as needed; an
    /// error (in words safe to show) when the node breaks off, goes silent
    /// for `idle`, sends something that does not open, or reports an error.
    async fn next_event(&mut self, idle: Duration) -> Result<ResponseEvent, String> {
        loop {
            match self.reader.next_event() {
                Ok(Some(event)) => return Ok(event),
                Ok(None) => {}
                // The enclave sealed an error event for the client first;
                // the answer ends here with no receipt.
                Err(ResponseError::Remote(frame)) => {
                    return Err(format!(
                        "the node ended the answer with an error ({})",
                        frame.code
                    ));
                }
                Err(e) => return Err(e.to_string()),
            }
            match tokio::time::timeout(idle, self.upstream.next()).await {
                Ok(Some(Ok(bytes))) => self.reader.push(&bytes),
                Ok(Some(Err(e))) => return Err(crate::upstream::describe(&e)),
                Ok(None) => return Err("the node closed the stream before its receipt".into()),
                Err(_) => return Err("the node went silent".into()),
            }
        }
    }

    /// Checks and records the receipt (charging once), updates the node's
    /// health, and returns the tokens it counts.
    async fn charge(
        // `&mut`: `Started` is `Send` but not `Sync`.
        &mut self,
        state: &RouterState,
        caller: &Caller,
        receipt: &VerifiedReceipt,
    ) -> Result<u64, receipts::ReceiptRefused> {
        let expectation = Expectation {
            attested: &self.attested,
            node_id: &self.node.id,
            account: &caller.account,
            expected: ExpectedReceipt {
                request_hash: self.request_hash.into(),
                response_hash: receipt.response.response_hash.into(),
                payer: self.payer,
            },
        };
        match receipts::accept(state, &receipt.receipt, &expectation).await {
            Ok(_) => {
                self.node
                    .with_health(|h| h.on_success(self.started.elapsed()));
                let r = &receipt.receipt.receipt;
                Ok(r.prompt_tokens.saturating_add(r.completion_tokens))
            }
            Err(e) => {
                self.node.with_health(|h| h.on_failure(Instant::now()));
                Err(e)
            }
        }
    }
}

/// Why one attempt failed.
enum AttemptError {
    /// Try the next node; `node_fault` counts against its breaker.
    Retry { detail: String, node_fault: bool },
    /// Answer the client now (the node refused the request itself).
    Final(Response),
}

/// Forwards `request` for `caller`; the answer or an error response.
pub async fn forward(state: Arc<RouterState>, caller: Caller, request: PlainRequest) -> Response {
    let started = Instant::now();
    let route = request.route;
    let reserved = request.reserved_tokens;
    let response = match forward_inner(state.clone(), &caller, request, started).await {
        Ok(Answer::Done(response)) => response,
        // The stream's duration is recorded when it ends.
        Ok(Answer::Streaming(response)) => return response,
        Err(error) => {
            // Nothing was served: the token reservation goes back.
            state.limiter.settle(&caller.key_id, reserved, 0);
            error.into_response()
        }
    };
    state.metrics.request(
        route.label(),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// A response, complete or still streaming.
enum Answer {
    Done(Response),
    Streaming(Response),
}

async fn forward_inner(
    state: Arc<RouterState>,
    caller: &Caller,
    request: PlainRequest,
    started: Instant,
) -> Result<Answer, ApiError> {
    let candidates = state.nodes.candidates(&request.model);
    if candidates.nodes.is_empty() {
        return Err(if !candidates.serving_any {
            ApiError::NoNode {
                detail: "no node has passed attestation".into(),
            }
        } else if !candidates.model_known {
            ApiError::UnknownModel {
                model: request.model.clone(),
            }
        } else {
            ApiError::NoNode {
                detail: "every attested node serving this model is failing or cooling down".into(),
            }
        });
    }
    let payer = PayerKey::from_secret(&caller.payer_secret).map_err(|e| {
        tracing::error!(account = %caller.account, error = %e, "the account's payer key is unusable");
        ApiError::Internal
    })?;
    let attempts = 1 + state.config.max_retries as usize;
    let mut last_failure = String::from("no node admitted the request");
    for (attempt, (node, attested)) in candidates.nodes.into_iter().take(attempts).enumerate() {
        if attempt > 0 {
            state.metrics.retry();
            tracing::info!(node = %node.id, attempt, "re-sealing to another node");
        }
        if !node.with_health(|h| h.try_admit(Instant::now())) {
            continue;
        }
        match attempt_node(&state, &payer, node.clone(), attested, &request).await {
            Ok(started_answer) => {
                state
                    .metrics
                    .first_token(request.route.label(), started.elapsed().as_secs_f64());
                return Ok(if request.stream {
                    Answer::Streaming(stream_answer(
                        state,
                        caller.clone(),
                        request,
                        started_answer,
                        started,
                    ))
                } else {
                    Answer::Done(whole_answer(&state, caller, &request, started_answer).await?)
                });
            }
            Err(AttemptError::Final(response)) => {
                node.with_health(|h| h.on_success(started.elapsed()));
                state
                    .limiter
                    .settle(&caller.key_id, request.reserved_tokens, 0);
                return Ok(Answer::Done(response));
            }
            Err(AttemptError::Retry { detail, node_fault }) => {
                tracing::warn!(node = %node.id, error = %detail, "node failed before the first byte");
                if node_fault {
                    node.with_health(|h| h.on_failure(Instant::now()));
                } else {
                    node.with_health(|h| h.on_abandoned());
                }
                last_failure = detail;
            }
        }
    }
    Err(ApiError::Upstream {
        detail: last_failure,
    })
}

fn retry(detail: impl Into<String>) -> AttemptError {
    AttemptError::Retry {
        detail: detail.into(),
        node_fault: true,
    }
}

/// Seals and sends to one node, and reads up to the first plaintext.
async fn attempt_node(
    state: &Arc<RouterState>,
    payer: &PayerKey,
    node: Arc<Node>,
    attested: Arc<Attested>,
    request: &PlainRequest,
) -> Result<Started, AttemptError> {
    let guard = node.begin_request();
    let issued_at = u64::try_from(now_unix()).unwrap_or(0);
    let envelope = payer
        .envelope(
            attested.signer,
            &state.domain,
            issued_at,
            request.body.to_vec(),
        )
        .map_err(|e| retry(format!("sealing failed: {e}")))?;
    let (sealed, opener) = seal_request(&attested.key_config, &envelope)
        .map_err(|e| retry(format!("sealing failed: {e}")))?;
    let request_hash = opener.request_hash();
    let started = Instant::now();
    let first_byte = Duration::from_secs(state.config.first_byte_timeout_secs);
    let send = state
        .http
        .post(format!("{}/v1/sealed", node.url))
        .header(header::CONTENT_TYPE, "message/ohttp-chunked-req")
        .body(sealed)
        .send();
    let response = match tokio::time::timeout(first_byte, send).await {
        Err(_) => return Err(retry("no answer before the first-byte deadline")),
        Ok(Err(e)) => return Err(retry(crate::upstream::describe(&e))),
        Ok(Ok(response)) => response,
    };
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut reader = ResponseReader::new(opener, attested.signer, state.domain);
    if !status.is_success() {
        return Err(refusal(state, status, response, reader).await);
    }
    let mut upstream = response.bytes_stream().boxed();
    let idle = Duration::from_secs(state.config.idle_timeout_secs);
    loop {
        match reader.next_event() {
            Ok(Some(ResponseEvent::Plaintext(first))) => {
                return Ok(Started {
                    node,
                    attested,
                    guard,
                    reader,
                    upstream,
                    first,
                    request_hash,
                    payer: payer.address(),
                    started,
                });
            }
            Ok(Some(ResponseEvent::Receipt(_))) => {
                return Err(retry("the node sent a receipt with no answer"));
            }
            Ok(None) => {}
            Err(e) => return Err(retry(format!("the answer did not open: {e}"))),
        }
        let deadline = first_byte.saturating_sub(started.elapsed()).min(idle);
        match tokio::time::timeout(deadline, upstream.next()).await {
            Err(_) => return Err(retry("no answer before the deadline")),
            Ok(None) => return Err(retry("the node closed the stream before answering")),
            Ok(Some(Err(e))) => return Err(retry(crate::upstream::describe(&e))),
            Ok(Some(Ok(bytes))) => reader.push(&bytes),
        }
    }
}

/// A node's error status: the client's fault (passed on), busy (next node),
/// or the node's fault (next node, counted).
async fn refusal(
    state: &RouterState,
    status: StatusCode,
    response: reqwest::Response,
    mut reader: ResponseReader,
) -> AttemptError {
    let body = crate::nodes::attest::read_limited(response, 64 * 1024)
        .await
        .unwrap_or_default();
    reader.push(&body);
    let mut plaintext = Vec::new();
    let mut clear = None;
    loop {
        match reader.next_event() {
            Ok(Some(ResponseEvent::Plaintext(p))) => plaintext.extend_from_slice(&p),
            Ok(Some(ResponseEvent::Receipt(_))) | Ok(None) => break,
            Err(ResponseError::Remote(frame)) => {
                clear = Some(frame);
                break;
            }
            Err(_) => break,
        }
    }
    let code = clear.as_ref().map(|f| f.code.clone()).unwrap_or_default();
    match status.as_u16() {
        429 | 503 => AttemptError::Retry {
            detail: format!("node busy ({code})"),
            node_fault: false,
        },
        400 | 413 | 422 if !plaintext.is_empty() => {
            // The enclave's own OpenAI error, sealed to us: the request is
            // at fault, another node would say the same.
            let text = String::from_utf8_lossy(&plaintext);
            let json = text
                .trim()
                .strip_prefix("data: ")
                .unwrap_or(text.trim())
                .to_owned();
            AttemptError::Final(
                (status, [(header::CONTENT_TYPE, "application/json")], json).into_response(),
            )
        }
        413 => AttemptError::Final(
            ApiError::TooLarge {
                limit: state.config.max_request_bytes,
            }
            .into_response(),
        ),
        other => retry(format!("node answered HTTP {other} ({code})")),
    }
}

/// Collects the whole answer, checks the receipt and charges, then answers.
async fn whole_answer(
    state: &Arc<RouterState>,
    caller: &Caller,
    request: &PlainRequest,
    mut started: Started,
) -> Result<Response, ApiError> {
    let mut plaintext = std::mem::take(&mut started.first);
    let idle = Duration::from_secs(state.config.idle_timeout_secs);
    let receipt = loop {
        match started.next_event(idle).await {
            Ok(ResponseEvent::Plaintext(p)) => plaintext.extend_from_slice(&p),
            Ok(ResponseEvent::Receipt(r)) => break r,
            Err(detail) => {
                started.node.with_health(|h| h.on_failure(Instant::now()));
                tracing::warn!(node = %started.node.id, error = %detail, "answer incomplete: not charged");
                return Err(ApiError::Upstream { detail });
            }
        }
    };
    let used = started
        .charge(state, caller, &receipt)
        .await
        .map_err(|e| ApiError::Upstream {
            detail: format!("the node's receipt was refused ({e})"),
        })?;
    state
        .limiter
        .settle(&caller.key_id, request.reserved_tokens, used);
    drop(started.guard);
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        plaintext,
    )
        .into_response())
}

/// Streams the answer as SSE while reading frames; the receipt is checked
/// and charged when the stream ends.
fn stream_answer(
    state: Arc<RouterState>,
    caller: Caller,
    request: PlainRequest,
    started: Started,
    request_started: Instant,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    let route = request.route;
    tokio::spawn(async move {
        let metrics = state.metrics.clone();
        pump(state, caller, request.reserved_tokens, started, tx).await;
        metrics.request(route.label(), 200, request_started.elapsed().as_secs_f64());
    });
    let body = Body::from_stream(channel_stream(rx));
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
    headers.insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    response
}

/// Sends to the client's body, giving up when the client does not take the
/// bytes within `deadline` (a client that stops reading must not hold a
/// generation, a task and a node slot forever) or has gone.
pub(crate) async fn send_within(
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
    bytes: Bytes,
    deadline: Duration,
) -> bool {
    matches!(
        tokio::time::timeout(deadline, tx.send(Ok(bytes))).await,
        Ok(Ok(()))
    )
}

/// A body stream fed by a channel.
pub(crate) fn channel_stream(
    mut rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn pump(
    state: Arc<RouterState>,
    caller: Caller,
    reserved: u64,
    mut started: Started,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let idle = Duration::from_secs(state.config.idle_timeout_secs);
    let first = std::mem::take(&mut started.first);
    if !send_within(&tx, Bytes::from(first), idle).await {
        started.node.with_health(|h| h.on_abandoned());
        state.limiter.settle(&caller.key_id, reserved, 0);
        return;
    }
    let outcome = loop {
        match started.next_event(idle).await {
            Ok(ResponseEvent::Plaintext(p)) => {
                if !send_within(&tx, Bytes::from(p), idle).await {
                    // The client left or stopped reading: dropping the
                    // upstream stream cancels the generation on the node;
                    // no receipt, no charge.
                    started.node.with_health(|h| h.on_abandoned());
                    tracing::info!(node = %started.node.id, "client went away mid-stream: upstream closed, not charged");
                    state.limiter.settle(&caller.key_id, reserved, 0);
                    return;
                }
            }
            Ok(ResponseEvent::Receipt(r)) => break Ok(r),
            Err(detail) => break Err(detail),
        }
    };
    match outcome {
        Ok(receipt) => {
            // The client has the whole answer: end its stream now, then
            // verify and record (an fsync) without holding it.
            let _recording = state.recording.begin();
            drop(tx);
            let used = started.charge(&state, &caller, &receipt).await.unwrap_or(0);
            state.limiter.settle(&caller.key_id, reserved, used);
        }
        Err(detail) => {
            tracing::warn!(node = %started.node.id, error = %detail, "stream failed after the first byte: not charged");
            started.node.with_health(|h| h.on_failure(Instant::now()));
            state.limiter.settle(&caller.key_id, reserved, 0);
            let error = ApiError::Upstream { detail };
            let _ = tx.send(Ok(Bytes::from(error.sse_event()))).await;
        }
    }
    drop(started.guard);
}

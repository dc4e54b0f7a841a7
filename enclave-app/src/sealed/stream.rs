//! One running request: pieces from the engine in, sealed frames out, with a
//! send deadline so a client that stops reading cannot stall the node.
//!
//! mistral.rs awaits each streamed chunk's send inside its engine step, so a
//! generation whose chunks nobody takes stops every sequence in the batch.
//! Here a drain task always takes the engine's pieces at once and hands
//! them to the writer through an unbounded queue (bounded in practice by
//! `max_tokens`). The writer seals them (coalescing those that arrive within
//! the coalesce interval, padding each chunk to the bucket) and sends frames
//! to the HTTP body; when a frame has waited longer than the send deadline
//! for the client to read, the writer gives up: the generation is cancelled,
//! its slot freed, and no receipt is sent, so nothing is charged.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use cloister_protocol::{Address, Frame, ResponseSealer, UsageReceipt};
use tokio::sync::mpsc;
use tokio::time::sleep_until;

use super::reply::{error_frame, error_frames};
use crate::admission::Running;
use crate::inference::{Generation, InferenceError, Piece, TokenUsage};
use crate::state::AppState;

/// Frames buffered between the writer and the HTTP body. Small, so the send
/// deadline measures the client, not a buffer.
pub(super) const BODY_CHANNEL_FRAMES: usize = 4;

/// Milliseconds for logs.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// One running request.
pub(super) struct Job {
    pub(super) state: Arc<AppState>,
    pub(super) request_id: [u8; 32],
    pub(super) request_hash: [u8; 32],
    pub(super) payer: Address,
    pub(super) request_bytes: usize,
    pub(super) received: Instant,
    pub(super) queued: Duration,
    /// The engine slot; dropped when the job ends.
    pub(super) running: Running,
}

/// Takes the engine's pieces as they come, until the writer goes away.
async fn drain(
    mut generation: Generation,
    first: Piece,
    pieces: mpsc::UnboundedSender<Result<Piece, InferenceError>>,
) -> TokenUsage {
    let mut next = Some(Ok(first));
    loop {
        let piece = match next.take() {
            Some(piece) => piece,
            None => tokio::select! {
                () = pieces.closed() => break,
                piece = generation.next() => match piece {
                    Some(piece) => piece,
                    None => Err(InferenceError::Engine("the generation ended early".into())),
                },
            },
        };
        let last = !matches!(piece, Ok(Piece::Text(_)));
        if pieces.send(piece).is_err() || last {
            break;
        }
    }
    // Dropping the generation here cancels it in the engine if it is still
    // running: mistral.rs stops a sequence whose responder is gone.
    generation.usage()
}

/// Why the writer stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The client went away.
    Disconnected,
    /// The client did not read within the send deadline.
    TooSlow,
}

/// What the writer holds.
struct Writer {
    tx: mpsc::Sender<Bytes>,
    sealer: Option<ResponseSealer>,
    /// Plaintext not yet sealed (coalescing).
    text: String,
    flush_at: Option<tokio::time::Instant>,
    /// Encoded frames not yet handed to the body.
    out: VecDeque<Bytes>,
    /// Since when the first frame in `out` has waited.
    waiting_since: Option<tokio::time::Instant>,
    sent: usize,
    first_chunk_at: Option<Duration>,
}

impl Writer {
    fn push(&mut self, frame: Frame) {
        let bytes = match frame.encode() {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %e, "a frame could not be encoded");
                error_frame(
                    "frame_failed",
                    "a response frame could not be encoded",
                    false,
                )
                .encode()
                .unwrap_or_default()
            }
        };
        if self.out.is_empty() {
            self.waiting_since = Some(tokio::time::Instant::now());
        }
        self.out.push_back(Bytes::from(bytes));
    }

    /// Seals the coalesced text into chunks.
    fn seal_text(&mut self) -> Result<(), ()> {
        self.flush_at = None;
        if self.text.is_empty() {
            return Ok(());
        }
        let text = std::mem::take(&mut self.text);
        let Some(sealer) = self.sealer.as_mut() else {
            return Err(());
        };
        let mut sealed = Vec::new();
        for part in text
            .as_bytes()
            .chunks(cloister_protocol::MAX_SEAL_PLAINTEXT)
        {
            match sealer.seal_chunk(part) {
                Ok(chunk) => sealed.push(chunk),
                Err(e) => {
                    tracing::error!(error = %e, "sealing a chunk failed");
                    self.push(error_frame(
                        "seal_failed",
                        "sealing the response failed",
                        false,
                    ));
                    self.sealer = None;
                    return Err(());
                }
            }
        }
        for chunk in sealed {
            self.push(Frame::Ciphertext(chunk));
        }
        Ok(())
    }

    /// Sends queued frames until one has to wait; `Err` when the client is
    /// gone or too slow.
    async fn send_ready(&mut self, timeout: Duration) -> Result<(), Stop> {
        let Some(since) = self.waiting_since else {
            return Ok(());
        };
        tokio::select! {
            permit = self.tx.reserve() => {
                let permit = permit.map_err(|_| Stop::Disconnected)?;
                if let Some(bytes) = self.out.pop_front() {
                    self.sent += bytes.len();
                    permit.send(bytes);
                }
                self.waiting_since = (!self.out.is_empty()).then(tokio::time::Instant::now);
                Ok(())
            }
            () = sleep_until(since + timeout) => Err(Stop::TooSlow),
        }
    }
}

impl Job {
    /// Runs the request to its end: all frames and the receipt delivered, or
    /// stopped early with no receipt.
    pub(super) async fn run(
        self,
        tx: mpsc::Sender<Bytes>,
        sealer: ResponseSealer,
        generation: Generation,
        first: Piece,
    ) {
        let (pieces_tx, mut pieces) = mpsc::unbounded_channel();
        let drained = tokio::spawn(drain(generation, first, pieces_tx));
        let limits = self.state.limits;
        let mut w = Writer {
            tx,
            sealer: Some(sealer),
            text: String::new(),
            flush_at: None,
            out: VecDeque::new(),
            waiting_since: None,
            sent: 0,
            first_chunk_at: None,
        };
        let mut finished = false;
        let mut usage = None;
        let outcome = loop {
            if finished && w.out.is_empty() {
                break Ok(());
            }
            let flush_at = w.flush_at;
            tokio::select! {
                biased;
                piece = pieces.recv(), if !finished => {
                    match piece {
                        Some(Ok(Piece::Text(text))) => {
                            w.first_chunk_at.get_or_insert_with(|| self.received.elapsed());
                            w.text.push_str(&text);
                            if limits.coalesce.is_zero() || w.text.len() >= cloister_protocol::MAX_SEAL_PLAINTEXT {
                                finished = w.seal_text().is_err();
                            } else if w.flush_at.is_none() {
                                w.flush_at = Some(tokio::time::Instant::now() + limits.coalesce);
                            }
                        }
                        Some(Ok(Piece::Done(done))) => {
                            finished = true;
                            if w.seal_text().is_ok() {
                                usage = Some(done);
                                self.finish(&mut w, done);
                            }
                        }
                        Some(Err(e)) => {
                            finished = true;
                            self.fail(&mut w, &e);
                        }
                        None => {
                            finished = true;
                            self.fail(&mut w, &InferenceError::Engine("the generation ended early".into()));
                        }
                    }
                }
                () = async { if let Some(at) = flush_at { sleep_until(at).await } }, if flush_at.is_some() => {
                    finished = w.seal_text().is_err() || finished;
                }
                sent = w.send_ready(limits.send_timeout), if w.waiting_since.is_some() => {
                    if let Err(stop) = sent {
                        break Err(stop);
                    }
                }
            }
        };
        drop(pieces);
        let generated = drained.await.map(|u| u.completion_tokens).unwrap_or(0);
        match outcome {
            Ok(()) => {
                if let Some(usage) = usage {
                    self.log_served(usage, &w);
                }
            }
            Err(Stop::Disconnected) => tracing::info!(
                generated,
                seconds = self.received.elapsed().as_secs_f32(),
                "client disconnected: generation cancelled, no receipt"
            ),
            Err(Stop::TooSlow) => tracing::warn!(
                generated,
                send_timeout_ms = millis(limits.send_timeout),
                "client did not read within the send deadline: generation cancelled, slot freed, no receipt"
            ),
        }
        drop(self.running);
    }

    /// The last chunk and the receipt.
    fn finish(&self, w: &mut Writer, usage: TokenUsage) {
        let Some(sealer) = w.sealer.take() else {
            return;
        };
        let (last, response_hash) = match sealer.finish() {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "sealing the last chunk failed");
                w.push(error_frame(
                    "seal_failed",
                    "sealing the response failed",
                    false,
                ));
                return;
            }
        };
        w.push(Frame::Ciphertext(last));
        let issued_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let state = &self.state;
        let receipt = UsageReceipt {
            request_id: self.request_id.into(),
            node_signer: state.keys.signer_address(),
            payer: self.payer,
            model_id: state.model_id.clone(),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            prompt_price: state.prices.prompt,
            completion_price: state.prices.completion,
            request_hash: self.request_hash.into(),
            response_hash: response_hash.into(),
            issued_at,
        };
        match state.keys.sign_receipt(receipt, &state.receipt_domain) {
            Ok(signed) => w.push(Frame::Receipt(signed)),
            Err(e) => {
                tracing::error!(error = %e, "signing the receipt failed");
                w.push(error_frame(
                    "receipt_failed",
                    "signing the receipt failed",
                    false,
                ));
            }
        }
    }

    /// A failure after the first chunk: the sealed error, the last chunk, an
    /// error frame; no receipt.
    fn fail(&self, w: &mut Writer, e: &InferenceError) {
        tracing::warn!(code = e.code(), "generation failed after the first chunk");
        let _ = w.seal_text();
        let frames = match w.sealer.take() {
            Some(sealer) => error_frames(
                sealer,
                e,
                true,
                "generation failed; no receipt, no charge",
                e.is_client_error(),
            ),
            None => vec![error_frame(
                e.code(),
                "generation failed; no receipt, no charge",
                e.is_client_error(),
            )],
        };
        for frame in frames {
            w.push(frame);
        }
    }

    fn log_served(&self, usage: TokenUsage, w: &Writer) {
        let total = self.received.elapsed();
        let decode_secs = w
            .first_chunk_at
            .map_or(total, |t| total.saturating_sub(t))
            .as_secs_f64();
        tracing::info!(
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            request_bytes = self.request_bytes,
            response_bytes = w.sent,
            queued_ms = millis(self.queued),
            first_chunk_ms = w.first_chunk_at.map(millis),
            total_ms = millis(total),
            tokens_per_s = format!(
                "{:.1}",
                usage.completion_tokens as f64 / decode_secs.max(1e-6)
            ),
            "request served"
        );
    }
}

//! `POST /v1/sealed/{node_id}`: a request the client sealed itself to the
//! node's attested key. The router cannot open it; it forwards the bytes and
//! streams the node's frames back unchanged, reading only the cleartext
//! receipt frame (and hashing the ciphertext it relays, to check the
//! receipt's response hash).
//!
//! Billing: the client names its payer address in `X-Cloister-Payer`; it
//! must be registered to the caller's account. The receipt must bill that
//! payer (the enclave takes it from the payer's signature inside the sealed
//! request, so the router cannot change it and the client cannot lie about
//! it without the receipt showing it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloister_protocol::{
    Address, CONTENT_TYPE as FRAMES_CONTENT_TYPE, ExpectedReceipt, Frame, FrameDecoder,
};
use futures::StreamExt as _;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{authenticate, read_body};
use crate::api_error::ApiError;
use crate::receipts::{self, Expectation};
use crate::state::RouterState;

/// The header naming the payer address of a client-sealed request.
pub const PAYER_HEADER: &str = "x-cloister-payer";

/// The handler.
pub(super) async fn forward(
    State(state): State<Arc<RouterState>>,
    Path(node_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let response = match forward_inner(state.clone(), node_id, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    state.metrics.request(
        "sealed",
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

async fn forward_inner(
    state: Arc<RouterState>,
    node_id: String,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = authenticate(&state, &headers).await?;
    let payer: Address = headers
        .get(PAYER_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "Client-sealed requests name their payer address in the X-Cloister-Payer header.",
                Some("x-cloister-payer"),
            )
        })?;
    let payer_hex = receipts::address_hex(payer);
    match state.ledger.payer_account(&payer_hex).await {
        Ok(Some(account)) if account == caller.account => {}
        Ok(_) => {
            return Err(ApiError::bad_request(
                "The payer address is not registered to this API key's account \
                 (cloister keys create --account NAME --payer ADDRESS).",
                Some("x-cloister-payer"),
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "ledger unavailable");
            return Err(ApiError::Internal);
        }
    }
    if caller.balance <= 0 {
        return Err(ApiError::InsufficientQuota);
    }
    let Some(node) = state.nodes.get(&node_id) else {
        return Err(ApiError::UnknownNode(node_id));
    };
    let Some(attested) = node.serving() else {
        return Err(ApiError::NoNode {
            detail: format!("node {} is {}", node.id, node.status().name()),
        });
    };
    let sealed = read_body(
        body,
        state.config.max_request_bytes,
        state.config.body_timeout(),
    )
    .await?;
    state
        .limiter
        .admit(&caller.key_id, (sealed.len() as u64) / 4, Instant::now())
        .map_err(|l| ApiError::RateLimited {
            limit: l.limit,
            retry_after_secs: l.retry_after_secs,
        })?;
    let request_hash: [u8; 32] = Sha256::digest(&sealed).into();
    let guard = node.begin_request();
    let send = state
        .http
        .post(format!("{}/v1/sealed", node.url))
        .header(header::CONTENT_TYPE, "message/ohttp-chunked-req")
        .body(sealed)
        .send();
    let first_byte = Duration::from_secs(state.config.first_byte_timeout_secs);
    let upstream = match tokio::time::timeout(first_byte, send).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            node.with_health(|h| h.on_failure(Instant::now()));
            return Err(ApiError::Upstream {
                detail: crate::upstream::describe(&e),
            });
        }
        Err(_) => {
            node.with_health(|h| h.on_failure(Instant::now()));
            return Err(ApiError::Upstream {
                detail: "no answer before the first-byte deadline".into(),
            });
        }
    };
    let status =
        StatusCode::from_u16(upstream.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    let idle = Duration::from_secs(state.config.idle_timeout_secs);
    let account = caller.account.clone();
    let key_id = caller.key_id.clone();
    tokio::spawn(async move {
        let mut frames = FrameDecoder::new();
        let mut ciphertext_hash = Sha256::new();
        let mut receipt = None;
        let mut stream = upstream.bytes_stream();
        let mut broken = false;
        loop {
            let piece = match tokio::time::timeout(idle, stream.next()).await {
                Ok(Some(Ok(piece))) => piece,
                Ok(None) => break,
                Ok(Some(Err(_))) | Err(_) => {
                    broken = true;
                    break;
                }
            };
            frames.push(&piece);
            loop {
                match frames.next_frame() {
                    Ok(Some(Frame::Ciphertext(c))) => ciphertext_hash.update(&c),
                    Ok(Some(Frame::Receipt(r))) => receipt = Some(r),
                    Ok(Some(Frame::Error(_))) | Ok(None) => break,
                    Err(_) => {
                        broken = true;
                        break;
                    }
                }
            }
            if !crate::relay::send_within(&tx, piece, idle).await {
                tracing::info!(node = %node.id, "client went away mid-stream");
                break;
            }
            if broken {
                break;
            }
        }
        // The client has every frame: end its stream before recording
        // (shutdown waits for the recording).
        let _recording = state.recording.begin();
        drop(tx);
        let used = match receipt {
            Some(receipt) => {
                let expectation = Expectation {
                    attested: &attested,
                    node_id: &node.id,
                    account: &account,
                    expected: ExpectedReceipt {
                        request_hash: request_hash.into(),
                        response_hash: <[u8; 32]>::from(ciphertext_hash.finalize()).into(),
                        payer,
                    },
                };
                match receipts::accept(&state, &receipt, &expectation).await {
                    Ok(_) => {
                        node.with_health(|h| h.on_success(Duration::ZERO));
                        receipt.receipt.prompt_tokens + receipt.receipt.completion_tokens
                    }
                    Err(_) => {
                        node.with_health(|h| h.on_failure(Instant::now()));
                        0
                    }
                }
            }
            None => {
                if broken {
                    node.with_health(|h| h.on_failure(Instant::now()));
                }
                0
            }
        };
        state.limiter.settle(&key_id, 0, used);
        drop(guard);
    });
    let body = Body::from_stream(crate::relay::channel_stream(rx));
    Ok((status, [(header::CONTENT_TYPE, FRAMES_CONTENT_TYPE)], body).into_response())
}

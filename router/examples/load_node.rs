//! A node for load tests: the real sealed protocol and a real simulated-TEE
//! evidence bundle, but a trivial engine, so that a load test measures the
//! router and not inference.
//!
//! - `GET /attestation?nonce=<64 hex>`: a bundle built by the enclave's own
//!   code (`cloister_enclave::evidence`: the identity, the report data
//!   binding, a simulated TEE from `cloister-attestation-collect`), which a
//!   router whose policy allows simulated evidence accepts;
//! - `POST /v1/sealed`: opens the request with
//!   `cloister_protocol::open_request` (HPKE, payer signature), answers
//!   with `--chunks` SSE chat-completion chunks sealed one by one with the
//!   request's `ResponseSealer` (padded to the default bucket), spaced by
//!   `--chunk-delay-ms`, then a `usage` chunk and `[DONE]`, the final chunk
//!   and a usage receipt signed with the node's key. `stream: false`
//!   gets one JSON body instead. No replay window, no request filter, no
//!   queue: none of those is the router's cost;
//! - `GET /healthz`.
//!
//! It serves with the enclave's HTTP server (`http_server::serve`) with the
//! connection cap raised to 16384, and prints `load node listening on ADDR`.
//!
//! cargo run -p cloister-router --example load_node -- [--listen 127.0.0.1:0]
//!     [--chunks 16] [--chunk-delay-ms 10]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Parser;
use cloister_attestation_collect::EvidenceSource;
use cloister_enclave::evidence::{self, Evidence, IdentityParts};
use cloister_protocol::{CONTENT_TYPE, Frame, NodeKeys, ReceiptDomain, UsageReceipt};
use serde_json::{Value, json};
use tokio::sync::mpsc;

#[derive(Parser)]
struct Options {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Model id in the identity and the receipts.
    #[arg(long, default_value = "load")]
    model_id: String,
    /// Content chunks per streamed answer (= completion tokens).
    #[arg(long, default_value = "16")]
    chunks: u64,
    /// Pause before each content chunk, in milliseconds (a token's time).
    #[arg(long, default_value = "10")]
    chunk_delay_ms: u64,
    /// Exit when standard input closes (a parent that dies takes the node
    /// with it).
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

struct Node {
    keys: NodeKeys,
    domain: ReceiptDomain,
    evidence: Evidence,
    model_id: String,
    chunks: u64,
    delay: Duration,
}

const PROMPT_PRICE: u64 = 1;
const COMPLETION_PRICE: u64 = 2;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random_id() -> [u8; 32] {
    use ring::rand::SecureRandom as _;
    let mut id = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut id).unwrap();
    id
}

#[derive(serde::Deserialize)]
struct NonceQuery {
    nonce: Option<String>,
}

async fn attestation(State(node): State<Arc<Node>>, Query(query): Query<NonceQuery>) -> Response {
    let Some(nonce) = query
        .nonce
        .and_then(|n| hex::decode(n.trim()).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
    else {
        return (StatusCode::BAD_REQUEST, "nonce must be 64 hex digits").into_response();
    };
    match node.evidence.bundle(nonce).await {
        Ok(bundle) => axum::Json(bundle).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok", "tee": "simulated"})).into_response()
}

fn chunk_event(id: &str, model: &str, created: u64, delta: Value, finish: Value) -> String {
    let chunk = json!({
        "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    format!("data: {chunk}\n\n")
}

async fn sealed(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    let opened = match cloister_protocol::open_request(&node.keys, &node.domain, &body) {
        Ok(opened) => opened,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let request: Value = serde_json::from_slice(&opened.body).unwrap_or(Value::Null);
    let stream = request["stream"].as_bool().unwrap_or(false);
    let completion_tokens = request["max_tokens"]
        .as_u64()
        .map_or(node.chunks, |m| m.min(node.chunks))
        .max(1);
    let prompt_tokens = (opened.body.len() as u64 / 4).max(1);
    let request_id = random_id();
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let node = node.clone();
    tokio::spawn(async move {
        let mut sealer = opened.sealer;
        let send = |frame: Frame| {
            let tx = tx.clone();
            async move {
                tx.send(Ok(Bytes::from(frame.encode().unwrap())))
                    .await
                    .is_ok()
            }
        };
        let id = format!("chatcmpl-{}", hex::encode(&request_id[..12]));
        let created = now();
        let model = node.model_id.as_str();
        if stream {
            for i in 0..completion_tokens {
                if !node.delay.is_zero() {
                    tokio::time::sleep(node.delay).await;
                }
                let delta = if i == 0 {
                    json!({"role": "assistant", "content": "tok "})
                } else {
                    json!({"content": "tok "})
                };
                let finish = if i + 1 == completion_tokens {
                    json!("length")
                } else {
                    Value::Null
                };
                let event = chunk_event(&id, model, created, delta, finish);
                if !send(Frame::Ciphertext(
                    sealer.seal_chunk(event.as_bytes()).unwrap(),
                ))
                .await
                {
                    return;
                }
            }
            let usage = json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens},
            });
            let tail = format!("data: {usage}\n\ndata: [DONE]\n\n");
            if !send(Frame::Ciphertext(
                sealer.seal_chunk(tail.as_bytes()).unwrap(),
            ))
            .await
            {
                return;
            }
        } else {
            tokio::time::sleep(node.delay * u32::try_from(completion_tokens).unwrap_or(u32::MAX))
                .await;
            let whole = json!({
                "id": id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant",
                    "content": "tok ".repeat(completion_tokens as usize)}, "finish_reason": "length"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens},
            });
            if !send(Frame::Ciphertext(
                sealer.seal_chunk(whole.to_string().as_bytes()).unwrap(),
            ))
            .await
            {
                return;
            }
        }
        let (last, response_hash) = sealer.finish().unwrap();
        if !send(Frame::Ciphertext(last)).await {
            return;
        }
        let receipt = UsageReceipt {
            request_id: request_id.into(),
            node_signer: node.keys.signer_address(),
            payer: opened.payer,
            model_id: node.model_id.clone(),
            prompt_tokens,
            completion_tokens,
            prompt_price: PROMPT_PRICE,
            completion_price: COMPLETION_PRICE,
            request_hash: opened.request_hash.into(),
            response_hash: response_hash.into(),
            issued_at: now(),
        };
        let signed = node.keys.sign_receipt(receipt, &node.domain).unwrap();
        send(Frame::Receipt(signed)).await;
    });
    let frames =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(frames),
    )
        .into_response()
}

#[tokio::main]
async fn main() {
    let options = Options::parse();
    if options.exit_on_stdin_eof {
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
    }
    let keys = NodeKeys::generate().unwrap();
    let domain = ReceiptDomain::DEVELOPMENT;
    let signer = keys.signer_address().to_string();
    let weights_sha256 = "00".repeat(32);
    let identity = evidence::identity(IdentityParts {
        key_config: &keys.key_config(),
        signer: &signer,
        model: json!({"id": options.model_id, "weights_sha256": weights_sha256, "files": []}),
        runtime: json!({
            "device": "cpu", "engine": "load-test (trivial: fixed chunks, no model)",
            "chunks": options.chunks, "chunk_delay_ms": options.chunk_delay_ms,
            "pad_bucket": cloister_protocol::DEFAULT_PAD_BUCKET,
        }),
        receipts: json!({
            "chain_id": domain.chain_id,
            "verifying_contract": domain.verifying_contract.to_string(),
            "prompt_price": PROMPT_PRICE,
            "completion_price": COMPLETION_PRICE,
        }),
        gpu: json!({"mode": "off", "devices": []}),
    });
    let node = Arc::new(Node {
        keys,
        domain,
        evidence: Evidence::new(EvidenceSource::simulated([0x5a; 48]), identity, None),
        model_id: options.model_id.clone(),
        chunks: options.chunks,
        delay: Duration::from_millis(options.chunk_delay_ms),
    });
    let app = Router::new()
        .route("/attestation", get(attestation))
        .route("/v1/sealed", post(sealed))
        .route("/healthz", get(healthz))
        .with_state(node);
    let listener = tokio::net::TcpListener::bind(options.listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    println!("load node listening on {addr}");
    std::io::stdout().flush().unwrap();
    let limits = cloister_enclave::http_server::ConnectionLimits {
        max_connections: 16384,
        header_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    cloister_enclave::http_server::serve(listener, app, limits, std::future::pending())
        .await
        .unwrap();
}

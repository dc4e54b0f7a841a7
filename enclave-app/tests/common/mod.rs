//! A node on the tiny random-weight model with the simulated TEE, and a
//! client that seals requests to it and opens the frames it answers with.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use clap::Parser;
use cloister_attestation::bundle::EvidenceBundle;
use cloister_enclave::EnclaveArgs;
use cloister_enclave::state::AppState;
use cloister_protocol::{
    CompleteResponse, Frame, FrameDecoder, PayerKey, ResponseError, ResponseOpener, ResponseReader,
    seal_request,
};
use serde_json::{Value, json};
use tower::ServiceExt as _;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: EnclaveArgs,
}

/// Enclave arguments for a model: simulated TEE, small limits; `extra`
/// adds options or overrides these defaults.
pub(crate) fn args(model: &Path, extra: &[&str]) -> EnclaveArgs {
    let model = model.to_str().unwrap();
    let defaults = [
        ("--model-id", "tiny"),
        ("--tee", "simulated"),
        ("--listen", "127.0.0.1:0"),
        ("--max-tokens", "32"),
    ];
    let mut argv = vec!["enclave", "--model", model];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            argv.extend([flag, value]);
        }
    }
    argv.extend_from_slice(extra);
    Cli::parse_from(argv).args
}

/// A temporary directory holding the tiny model.
pub(crate) fn tiny_model() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    cloister_enclave::testing::write_tiny_llama(dir.path()).unwrap();
    dir
}

/// A node on the tiny model.
pub(crate) async fn tiny_node(extra: &[&str]) -> (Arc<AppState>, tempfile::TempDir) {
    let dir = tiny_model();
    let state = cloister_enclave::prepare(&args(dir.path(), extra))
        .await
        .unwrap();
    (state, dir)
}

pub(crate) fn chat(stream: bool, max_tokens: u64) -> Value {
    json!({
        "model": "tiny",
        "messages": [{"role": "user", "content": "Tell me a secret about the moon."}],
        "stream": stream,
        "max_tokens": max_tokens,
        "temperature": 0.0,
    })
}

pub(crate) fn completion(stream: bool, max_tokens: u64) -> Value {
    json!({
        "model": "tiny",
        "prompt": "Once upon a time",
        "stream": stream,
        "max_tokens": max_tokens,
        "temperature": 0.0,
    })
}

/// POSTs raw bytes to `/v1/sealed`; returns the status and body.
pub(crate) async fn post(app: &Router, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let request = Request::post("/v1/sealed").body(Body::from(body)).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

/// The node's identity, from a fresh evidence bundle.
pub(crate) async fn bundle(app: &Router, nonce: [u8; 32]) -> EvidenceBundle {
    let uri = format!("/attestation?nonce={}", hex::encode(nonce));
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    EvidenceBundle::from_json(&bytes).unwrap()
}

/// The payer every test request is billed to.
pub(crate) fn payer() -> PayerKey {
    PayerKey::from_secret(&[0x5a; 32]).unwrap()
}

/// Now, as Unix seconds.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Seals raw body bytes to the node for [`payer`], sealed at `issued_at`.
pub(crate) fn seal_bytes_at(
    state: &AppState,
    body: &[u8],
    issued_at: u64,
) -> (Vec<u8>, ResponseOpener) {
    let envelope = payer()
        .envelope(
            state.keys.signer_address(),
            &state.receipt_domain,
            issued_at,
            body.to_vec(),
        )
        .unwrap();
    seal_request(&state.keys.key_config(), &envelope).unwrap()
}

/// Seals a JSON body to the node for [`payer`], sealed now.
pub(crate) fn seal(state: &AppState, body: &Value) -> (Vec<u8>, ResponseOpener) {
    seal_bytes_at(state, body.to_string().as_bytes(), unix_now())
}

/// Seals `body` to the node, sends it, returns status, frames and opener.
pub(crate) async fn send(
    state: &Arc<AppState>,
    body: &Value,
) -> (StatusCode, Vec<u8>, ResponseOpener) {
    let app = cloister_enclave::server::app(state.clone());
    let (sealed, opener) = seal(state, body);
    let (status, frames) = post(&app, sealed).await;
    (status, frames, opener)
}

/// Opens a whole response and checks its receipt against the node.
pub(crate) fn open(
    state: &Arc<AppState>,
    opener: ResponseOpener,
    frames: &[u8],
) -> Result<CompleteResponse, ResponseError> {
    ResponseReader::new(opener, state.keys.signer_address(), state.receipt_domain).read_all(frames)
}

/// All frames of a body.
pub(crate) fn frames(body: &[u8]) -> Vec<Frame> {
    let mut decoder = FrameDecoder::new();
    decoder.push(body);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.next_frame().unwrap() {
        frames.push(frame);
    }
    decoder.finish().unwrap();
    frames
}

/// The error frame's code, if the body ends with one.
pub(crate) fn error_code(body: &[u8]) -> Option<String> {
    frames(body).into_iter().find_map(|f| match f {
        Frame::Error(e) => Some(e.code),
        _ => None,
    })
}

/// The SSE `data:` payloads of a stream, `[DONE]` excluded.
pub(crate) fn sse_events(plaintext: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(plaintext);
    text.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

/// Serves `state` on a fresh port with the default connection limits; returns
/// the base URL, the stop switch and the server task.
pub(crate) async fn serve(
    state: Arc<AppState>,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        cloister_enclave::server::serve(
            listener,
            state,
            cloister_enclave::http_server::ConnectionLimits::default(),
            async {
                let _ = stopped.await;
            },
        )
        .await
        .unwrap();
    });
    (url, stop, server)
}

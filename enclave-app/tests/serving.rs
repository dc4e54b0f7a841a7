//! The node on a real socket: concurrent requests, cancellation when the
//! caller disconnects, graceful shutdown that finishes requests in flight,
//! and logs that never carry prompt or completion text.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloister_protocol::{ReceiptDomain, ResponseEvent, ResponseReader};
use common::*;
use futures::StreamExt as _;
use serde_json::json;

/// Log output captured for the whole test binary.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();

/// Every log line at every level, from every crate (mistral.rs included).
fn capture_logs() -> Captured {
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        captured
    })
    .clone()
}

async fn start(
    extra: &[&str],
) -> (
    String,
    Arc<cloister_enclave::state::AppState>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
    tempfile::TempDir,
) {
    let (state, model) = tiny_node(extra).await;
    let (url, stop, server) = serve(state.clone()).await;
    (url, state, stop, server, model)
}

fn sealed_body(
    state: &cloister_enclave::state::AppState,
    body: &serde_json::Value,
) -> (Vec<u8>, cloister_protocol::ResponseOpener) {
    seal(state, body)
}

/// Seals `request`, POSTs it to the node and checks for 200; returns the
/// streaming response and the reader that opens it.
async fn post_sealed(
    client: &reqwest::Client,
    url: &str,
    state: &cloister_enclave::state::AppState,
    request: &serde_json::Value,
) -> (reqwest::Response, ResponseReader) {
    let (body, opener) = sealed_body(state, request);
    let response = client
        .post(format!("{url}/v1/sealed"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let reader = ResponseReader::new(
        opener,
        state.keys.signer_address(),
        ReceiptDomain::default(),
    );
    (response, reader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_at_once_all_complete_with_receipts() {
    let (url, state, _stop, _server, _model) =
        start(&["--max-concurrent", "4", "--queue", "8"]).await;
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let (client, url, state) = (client.clone(), url.clone(), state.clone());
        tasks.push(tokio::spawn(async move {
            let (response, reader) =
                post_sealed(&client, &url, &state, &chat(i % 2 == 0, 6 + i)).await;
            reader.read_all(&response.bytes().await.unwrap()).unwrap()
        }));
    }
    for task in tasks {
        let done = task.await.unwrap();
        assert!(done.receipt.receipt.receipt.completion_tokens > 0);
    }
    assert_eq!(state.admission.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnecting_client_cancels_its_generation() {
    let (url, state, _stop, _server, _model) = start(&["--max-tokens", "4000"]).await;
    let (response, mut reader) =
        post_sealed(&reqwest::Client::new(), &url, &state, &chat(true, 4000)).await;
    let mut stream = response.bytes_stream();
    let mut plaintext = 0;
    while plaintext < 3 {
        reader.push(&stream.next().await.unwrap().unwrap());
        while let Some(ResponseEvent::Plaintext(_)) = reader.next_event().unwrap() {
            plaintext += 1;
        }
    }
    assert_eq!(state.admission.in_flight(), 1);
    drop(stream);
    // The slot is freed long before 4000 tokens could have been generated.
    let deadline = Instant::now() + Duration::from_secs(20);
    while state.admission.in_flight() > 0 {
        assert!(Instant::now() < deadline, "generation was not cancelled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight_and_refuses_new_ones() {
    let (url, state, stop, server, _model) = start(&[]).await;
    let (response, reader) =
        post_sealed(&reqwest::Client::new(), &url, &state, &chat(true, 32)).await;
    stop.send(()).unwrap();
    // The stream started before shutdown runs to its receipt.
    let done = reader.read_all(&response.bytes().await.unwrap()).unwrap();
    assert!(done.receipt.receipt.receipt.completion_tokens > 0);
    tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .unwrap()
        .unwrap();
    assert!(state.is_shutting_down());
    // A request that arrives while draining is refused with a retryable error.
    let (status, body, _) = send(&state, &chat(false, 4)).await;
    assert_eq!(status, 503);
    assert_eq!(error_code(&body).as_deref(), Some("shutting_down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_prompt_or_completion_text_reaches_the_logs() {
    let logs = capture_logs();
    let (url, state, _stop, _server, _model) = start(&[]).await;
    let marker = "zebra-7f3a-PRIVATE-prompt-marker";
    let request = json!({
        "model": "tiny",
        "messages": [{"role": "user", "content": format!("My secret is {marker}; repeat it.")}],
        "max_tokens": 24,
        "temperature": 0.0,
    });
    let (response, reader) = post_sealed(&reqwest::Client::new(), &url, &state, &request).await;
    let done = reader.read_all(&response.bytes().await.unwrap()).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&done.plaintext).unwrap();
    let completion = json["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        text.contains("request served"),
        "the request was logged at all:\n{text}"
    );
    assert!(!text.contains(marker), "the prompt leaked into the logs");
    assert!(
        !text.contains("My secret is"),
        "the prompt leaked into the logs"
    );
    // The random model's completion: any 8-character run of it must not
    // appear in the logs.
    let chars: Vec<char> = completion.chars().filter(|c| c.is_alphanumeric()).collect();
    for window in chars.windows(8).step_by(4) {
        let needle: String = window.iter().collect();
        assert!(
            !text.contains(&needle),
            "completion text {needle:?} leaked into the logs"
        );
    }
}

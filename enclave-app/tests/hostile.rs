//! The enclave against a hostile router, host and client (DESIGN.md section
//! 1): each test plays one attacker on the tiny random-weight model.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cloister_protocol::{Frame, PayerKey, ResponseOpener, ResponseReader, seal_request};
use common::*;
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// The sealed OpenAI error a client opens from a refusal.
fn sealed_error(mut opener: ResponseOpener, body: &[u8]) -> Value {
    let mut plaintext = Vec::new();
    for frame in frames(body) {
        if let Frame::Ciphertext(c) = frame {
            plaintext.extend(opener.push(&c).unwrap());
        }
    }
    opener.finish().unwrap();
    serde_json::from_slice(&plaintext).unwrap()
}

/// A local HTTP server that counts the connections made to it.
async fn counting_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (format!("http://{addr}"), count)
}

fn with_part(part: Value) -> Value {
    json!({"model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "describe this"}, part]}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_files_tools_and_web_search_never_reach_the_engine() {
    let (state, _model) = tiny_node(&[]).await;
    let (url, connections) = counting_server().await;
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "CANARY-FILE-CONTENT").unwrap();
    let file_url = format!("file://{}", secret.path().display());
    let path = secret.path().display().to_string();
    let text = |extra: Value| {
        let mut body = json!({"model": "tiny", "max_tokens": 4,
            "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases = [
        (
            with_part(json!({"type": "image_url", "image_url": {"url": format!("{url}/cat.png")}})),
            "messages[0].content[1].type",
        ),
        (
            with_part(json!({"type": "image_url", "image_url": {"url": file_url}})),
            "messages[0].content[1].type",
        ),
        (
            with_part(json!({"type": "image_url", "image_url": {"url": path}})),
            "messages[0].content[1].type",
        ),
        (
            with_part(json!({"type": "audio_url", "audio_url": {"url": format!("{url}/a.wav")}})),
            "messages[0].content[1].type",
        ),
        (
            with_part(json!({"type": "video_url", "video_url": {"url": format!("{url}/v.mp4")}})),
            "messages[0].content[1].type",
        ),
        (
            with_part(
                json!({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}),
            ),
            "messages[0].content[1].type",
        ),
        (
            text(json!({"web_search_options": {"search_context_size": "high"}})),
            "web_search_options",
        ),
        (
            text(
                json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}),
            ),
            "tools",
        ),
        (text(json!({"tool_choice": "auto"})), "tool_choice"),
        (text(json!({"n": 2})), "n"),
        (text(json!({"surprise": true})), "surprise"),
        (
            json!({"model": "tiny", "prompt": "hi", "best_of": 3, "max_tokens": 4}),
            "best_of",
        ),
    ];
    for (request, param) in cases {
        let (status, body, opener) = send(&state, &request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{param}");
        let code = error_code(&body).unwrap();
        let error = sealed_error(opener, &body);
        assert_eq!(error["error"]["param"], param, "{error}");
        assert_eq!(error["error"]["code"], code.as_str());
        assert_eq!(error["error"]["type"], "invalid_request_error");
        assert!(!error.to_string().contains("CANARY"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "the enclave connected to a URL from a request"
    );
    assert_eq!(state.admission.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_never_reads_cannot_stall_the_node() {
    let (state, _model) = tiny_node(&[
        "--max-tokens",
        "400",
        "--send-timeout",
        "1s",
        "--max-concurrent",
        "4",
    ])
    .await;
    let app = cloister_enclave::server::app(state.clone());
    let normal = chat(true, 48);
    let started = Instant::now();
    let (status, body, opener) = send(&state, &normal).await;
    assert_eq!(status, StatusCode::OK);
    open(&state, opener, &body).unwrap();
    let alone = started.elapsed();

    // The attacker's request: a long stream whose body is never read.
    let (sealed, stalled_opener) = seal(&state, &chat(true, 400));
    let stalled = app
        .clone()
        .oneshot(
            Request::post("/v1/sealed")
                .body(Body::from(sealed))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(stalled.status(), StatusCode::OK);

    let started = Instant::now();
    let (status, body, opener) =
        tokio::time::timeout(Duration::from_secs(30), send(&state, &normal))
            .await
            .expect("the node stalled behind a client that does not read");
    let beside = started.elapsed();
    assert_eq!(status, StatusCode::OK);
    open(&state, opener, &body).unwrap();
    assert!(
        beside < alone * 4 + Duration::from_secs(2),
        "alone {alone:?}, beside a stalled client {beside:?}"
    );

    // Past the send deadline the stalled generation is cancelled and its
    // slot freed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while state.admission.in_flight() > 0 {
        assert!(
            Instant::now() < deadline,
            "the stalled request kept its slot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What the stalled client can still read ends without a receipt.
    let bytes = axum::body::to_bytes(stalled.into_body(), usize::MAX)
        .await
        .unwrap();
    let read = ResponseReader::new(
        stalled_opener,
        state.keys.signer_address(),
        state.receipt_domain,
    )
    .read_all(&bytes);
    assert!(read.is_err(), "no receipt for a cancelled generation");
}

#[tokio::test]
async fn replays_stay_refused_even_when_the_window_is_full() {
    let (state, _model) = tiny_node(&["--replay-capacity", "3"]).await;
    let app = cloister_enclave::server::app(state.clone());
    let (victim, _) = seal(&state, &chat(false, 4));
    assert_eq!(post(&app, victim.clone()).await.0, StatusCode::OK);

    // Garbage does not enter the window.
    for _ in 0..20 {
        let (status, _) = post(&app, vec![0u8; 200]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    // The router's own cheap (invalid) requests fill it...
    for _ in 0..2 {
        let (sealed, _) = seal_bytes_at(&state, b"{not json", unix_now());
        assert_eq!(post(&app, sealed).await.0, StatusCode::BAD_REQUEST);
    }
    let (sealed, _) = seal_bytes_at(&state, b"{not json", unix_now());
    let (status, body) = post(&app, sealed).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "full: refuse, never forget"
    );
    assert_eq!(error_code(&body).as_deref(), Some("busy"));
    // ...but the victim's request is still remembered.
    let (status, body) = post(&app, victim).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&body).as_deref(), Some("replayed"));
}

#[tokio::test]
async fn requests_outside_the_time_window_are_refused() {
    let (state, _model) = tiny_node(&["--replay-window", "60"]).await;
    let app = cloister_enclave::server::app(state.clone());
    let body = chat(false, 4).to_string();
    for (issued_at, code) in [
        (unix_now() - 120, "stale_request"),
        (unix_now() + 120, "request_from_the_future"),
    ] {
        let (sealed, _) = seal_bytes_at(&state, body.as_bytes(), issued_at);
        let (status, frames) = post(&app, sealed).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(error_code(&frames).as_deref(), Some(code));
    }
    let (sealed, _) = seal_bytes_at(&state, body.as_bytes(), unix_now() - 30);
    assert_eq!(post(&app, sealed).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_reencoded_body_is_refused_and_cannot_change_the_request_hash() {
    let (state, _model) = tiny_node(&[]).await;
    let app = cloister_enclave::server::app(state.clone());
    let (sealed, _) = seal(&state, &chat(false, 4));
    // The first chunk length (after the 7-byte header and 32-byte key) in a
    // longer varint form: the same plaintext to `ohttp`, other bytes.
    let width = 1usize << (sealed[39] >> 6);
    assert_eq!(width, 2);
    let value = u32::from(sealed[39] & 0x3f) << 8 | u32::from(sealed[40]);
    let reencoded = [
        &sealed[..39],
        &(0x8000_0000u32 | value).to_be_bytes()[..],
        &sealed[41..],
    ]
    .concat();
    let (status, body) = post(&app, reencoded).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body).as_deref(), Some("undecryptable"));
    assert_eq!(post(&app, sealed).await.0, StatusCode::OK);
}

#[tokio::test]
async fn receipts_name_the_payer_and_the_prices_and_a_router_cannot_bill_another_payer() {
    let (state, _model) = tiny_node(&["--prompt-price", "3", "--completion-price", "7"]).await;
    let (status, body, opener) = send(&state, &chat(false, 6)).await;
    assert_eq!(status, StatusCode::OK);
    let done = open(&state, opener, &body).unwrap();
    let receipt = &done.receipt.receipt.receipt;
    assert_eq!(receipt.payer, payer().address());
    assert_eq!((receipt.prompt_price, receipt.completion_price), (3, 7));
    assert_eq!(
        receipt.charge(),
        cloister_protocol::U256::from(receipt.prompt_tokens * 3 + receipt.completion_tokens * 7)
    );

    // The router seals its own request, names the victim as payer, signs
    // with its own key.
    let router = PayerKey::generate();
    let mut forged = router
        .envelope(
            state.keys.signer_address(),
            &state.receipt_domain,
            unix_now(),
            chat(false, 4).to_string().into_bytes(),
        )
        .unwrap();
    forged.payer = payer().address();
    let (sealed, _) = seal_request(&state.keys.key_config(), &forged).unwrap();
    let (status, body) = post(&cloister_enclave::server::app(state.clone()), sealed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body).as_deref(), Some("bad_envelope"));
}

#[tokio::test]
async fn outside_the_simulated_tee_the_receipt_domain_must_be_explicit() {
    let model = tiny_model();
    for tee in ["tdx", "sev-snp", "auto"] {
        let err = cloister_enclave::prepare(&args(model.path(), &["--tee", tee]))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("--chain-id"), "{tee}: {err}");
        let err =
            cloister_enclave::prepare(&args(model.path(), &["--tee", tee, "--chain-id", "1"]))
                .await
                .unwrap_err()
                .to_string();
        assert!(err.contains("--settlement-contract"), "{tee}: {err}");
    }
}

#[tokio::test]
async fn the_identity_covers_runtime_settings_prices_and_every_model_file() {
    let (state, _model) = tiny_node(&[
        "--prefix-cache",
        "--prompt-price",
        "2",
        "--pad-bucket",
        "512",
    ])
    .await;
    let app = cloister_enclave::server::app(state.clone());
    let identity = bundle(&app, [1; 32]).await.identity;
    assert_eq!(identity["runtime"]["prefix_cache"], true);
    assert_eq!(identity["runtime"]["max_tokens"], 32);
    assert_eq!(identity["runtime"]["pad_bucket"], 512);
    assert_eq!(identity["runtime"]["device"], "cpu");
    assert_eq!(identity["receipts"]["prompt_price"], 2);
    assert_eq!(identity["receipts"]["chain_id"], 31337);
    assert_eq!(identity["gpu"]["mode"], "off");
    let files: Vec<&str> = identity["model"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json"
        ]
    );
    let (other, _model) = tiny_node(&[]).await;
    let other_identity = bundle(&cloister_enclave::server::app(other), [1; 32])
        .await
        .identity;
    assert_eq!(
        identity["model"], other_identity["model"],
        "same model, same digest"
    );
    assert_ne!(identity["runtime"], other_identity["runtime"]);
}

/// The ciphertext frame sizes of a streamed answer.
async fn frame_sizes(extra: &[&str]) -> (Vec<usize>, usize) {
    let (state, _model) = tiny_node(extra).await;
    let (status, body, opener) = send(&state, &chat(true, 24)).await;
    assert_eq!(status, StatusCode::OK);
    let done = open(&state, opener, &body).unwrap();
    let sizes = frames(&body)
        .into_iter()
        .filter_map(|f| match f {
            Frame::Ciphertext(c) => Some(c.len()),
            _ => None,
        })
        .collect();
    (sizes, sse_events(&done.plaintext).len())
}

#[tokio::test]
async fn sealed_chunk_sizes_do_not_show_token_lengths() {
    // Every chunk between the first (which carries the response nonce) and
    // the final one has the same size.
    let (sizes, _) = frame_sizes(&["--pad-bucket", "1024"]).await;
    let middle = &sizes[1..sizes.len() - 1];
    assert!(middle.len() > 3);
    assert!(middle.iter().all(|&n| n == middle[0]), "{sizes:?}");
    // Unpadded, the random tokens' lengths show.
    let (sizes, _) = frame_sizes(&["--pad-bucket", "0"]).await;
    let middle = &sizes[1..sizes.len() - 1];
    assert!(middle.iter().any(|&n| n != middle[0]), "{sizes:?}");
    // Coalescing sends several events per chunk.
    let (sizes, events) = frame_sizes(&["--coalesce", "500ms"]).await;
    assert!(
        sizes.len() < events,
        "{} chunks for {events} events",
        sizes.len()
    );
}

#[tokio::test]
async fn evidence_collection_is_limited_and_answers_429() {
    let (state, _model) = tiny_node(&["--max-quote-generations", "2"]).await;
    let app = cloister_enclave::server::app(state.clone());
    let held = state.quote_slots.clone().try_acquire_many_owned(2).unwrap();
    let response = app
        .clone()
        .oneshot(
            Request::get(format!("/attestation?nonce={}", "ab".repeat(32)))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");
    drop(held);
    bundle(&app, [2; 32]).await;
}

/// Opens a raw connection and sends `head` (and nothing more yet).
async fn raw(url: &str, head: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let addr = url.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    socket
}

/// Reads the server's response head (or what came before it closed or
/// `within` passed).
async fn read_reply(socket: &mut tokio::net::TcpStream, within: Duration) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut out = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            if out.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(within, read).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_and_oversized_bodies_are_cut_off_while_others_are_served() {
    let (state, _model) = tiny_node(&["--body-timeout", "1s", "--max-request-bytes", "4096"]).await;
    let (url, _stop, _server) = serve(state.clone()).await;

    // A chunked body that trickles forever.
    let mut endless = raw(
        &url,
        "POST /v1/sealed HTTP/1.1\r\nhost: node\r\ntransfer-encoding: chunked\r\n\r\n1\r\nx\r\n",
    )
    .await;
    // A declared length over the limit: refused without reading it.
    let mut huge = raw(
        &url,
        "POST /v1/sealed HTTP/1.1\r\nhost: node\r\ncontent-length: 100000000\r\n\r\n",
    )
    .await;
    // A normal client meanwhile.
    let (status, body, opener) = send(&state, &chat(false, 4)).await;
    assert_eq!(status, StatusCode::OK);
    open(&state, opener, &body).unwrap();

    let reply = read_reply(&mut huge, Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    let reply = read_reply(&mut endless, Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert_eq!(state.admission.in_flight(), 0, "both slots were given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_refuses_before_reading_the_body() {
    let (state, _model) = tiny_node(&["--max-concurrent", "1", "--queue", "0"]).await;
    let (url, _stop, _server) = serve(state.clone()).await;
    let _held = state.admission.try_admit().unwrap();
    // The body is announced but never sent: the answer must not wait for it.
    let mut waiting = raw(
        &url,
        "POST /v1/sealed HTTP/1.1\r\nhost: node\r\ncontent-length: 1000\r\n\r\n",
    )
    .await;
    let started = Instant::now();
    let reply = read_reply(&mut waiting, Duration::from_secs(3)).await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(reply.to_lowercase().contains("retry-after: 1"));
}

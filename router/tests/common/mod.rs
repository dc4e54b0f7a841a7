//! A router on a test database in front of real enclaves (simulated TEE,
//! tiny random-weight model), each behind a forwarder the test can cut.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub(crate) mod proxy;
pub(crate) mod router_double;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use cloister_attestation::Policy;
use cloister_enclave::EnclaveArgs;
use cloister_router::ledger::testing::TestDatabase;
use cloister_router::nodes::NodeStatus;
use cloister_router::{RouterConfig, RouterState};
use serde_json::{Value, json};
use tokio::sync::watch;

pub(crate) use proxy::CutProxy;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: EnclaveArgs,
}

/// A running enclave behind a cuttable forwarder.
pub(crate) struct TestNode {
    pub(crate) proxy: CutProxy,
    pub(crate) state: Arc<cloister_enclave::state::AppState>,
    pub(crate) model_id: String,
    _model: tempfile::TempDir,
    stop: watch::Sender<bool>,
}

impl TestNode {
    /// A node serving the tiny model as `model_id`; `extra` adds enclave flags.
    pub(crate) async fn start(model_id: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        cloister_enclave::testing::write_tiny_llama(dir.path()).unwrap();
        let mut argv = vec![
            "enclave",
            "--model",
            dir.path().to_str().unwrap(),
            "--model-id",
            model_id,
            "--tee",
            "simulated",
            "--listen",
            "127.0.0.1:0",
            "--max-tokens",
            "256",
            "--no-model-staging",
        ];
        argv.extend_from_slice(extra);
        let args = Cli::parse_from(argv).args;
        let state = cloister_enclave::prepare(&args).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, mut rx) = watch::channel(false);
        let serving = state.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            let _ = cloister_enclave::server::serve(
                listener,
                serving,
                cloister_enclave::http_server::ConnectionLimits::default(),
                shutdown,
            )
            .await;
        });
        let proxy = CutProxy::start(addr).await;
        Self {
            proxy,
            state,
            model_id: model_id.to_owned(),
            _model: dir,
            stop,
        }
    }

    pub(crate) fn url(&self) -> String {
        self.proxy.url()
    }

    /// The simulated measurement this node's evidence carries.
    pub(crate) async fn measurement(&self) -> String {
        let bundle = self.state.evidence.bundle([1; 32]).await.unwrap();
        let raw = &bundle.evidence.0;
        let evidence = cloister_attestation::simulated::SimulatedEvidence::parse(raw).unwrap();
        hex::encode(evidence.measurement)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A router with its database, listening on 127.0.0.1:0.
pub(crate) struct Stack {
    pub(crate) url: String,
    pub(crate) state: Arc<RouterState>,
    pub(crate) key: String,
    pub(crate) db: TestDatabase,
    _data: tempfile::TempDir,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

/// A policy allowing simulated evidence (no hardware).
pub(crate) fn simulated_policy() -> Policy {
    let mut policy = Policy::strict();
    policy.platforms.clear();
    policy.simulated.allow = true;
    policy
}

impl Stack {
    /// A router over `nodes` (URLs), with `tweak` applied to its config.
    pub(crate) async fn start(
        policy: Policy,
        nodes: &[String],
        tweak: impl FnOnce(&mut RouterConfig),
    ) -> Self {
        let db = TestDatabase::new().await.unwrap();
        let data = tempfile::tempdir().unwrap();
        let mut config = RouterConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data.path().to_owned(),
            database_url: Some(db.url.clone()),
            collateral: data.path().join("collateral").display().to_string(),
            nodes: nodes.to_vec(),
            reattest_interval_secs: 3600,
            attestation_timeout_secs: 10,
            breaker_cooldown_secs: 60,
            first_byte_timeout_secs: 30,
            join_tokens: vec!["join-token-for-tests-0123456789".into()],
            ..RouterConfig::default()
        };
        tweak(&mut config);
        let state = cloister_router::start(config, policy).await.unwrap();
        let key = state
            .ledger
            .create_key("alice", 1_000_000_000)
            .await
            .unwrap()
            .secret;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, mut rx) = watch::channel(false);
        let serving = state.clone();
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            cloister_router::serve(listener, serving, shutdown)
                .await
                .unwrap();
        });
        Self {
            url,
            state,
            key,
            db,
            _data: data,
            stop,
            server,
        }
    }

    /// Waits until every node has a verdict (serving or refused).
    pub(crate) async fn settled(&self, count: usize) {
        let started = Instant::now();
        loop {
            let nodes = self.state.nodes.all();
            let done = nodes
                .iter()
                .filter(|n| {
                    matches!(
                        n.status(),
                        NodeStatus::Serving(_) | NodeStatus::Refused { .. }
                    )
                })
                .count();
            if done >= count {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "nodes did not settle: {:?}",
                nodes.iter().map(|n| n.status().name()).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the router and waits for it.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
    }

    pub(crate) fn client(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    /// POSTs JSON with the stack's key.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client()
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// The stored receipts once there are at least `n` (a streamed answer's
    /// receipt is recorded just after the client's stream ends).
    pub(crate) async fn receipts(&self, n: usize) -> Vec<cloister_router::ledger::ReceiptRow> {
        let started = Instant::now();
        loop {
            let rows = self.state.ledger.recent_receipts(100).await.unwrap();
            if rows.len() >= n || started.elapsed() > Duration::from_secs(5) {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The account's balance.
    pub(crate) async fn balance(&self) -> i64 {
        self.state
            .ledger
            .authenticate(&self.key)
            .await
            .unwrap()
            .unwrap()
            .balance
    }
}

/// A `tracing` writer that keeps everything written (for secrecy checks).
#[derive(Clone, Default)]
pub(crate) struct Captured(pub(crate) Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Installs a TRACE-level JSON subscriber writing here, for this process.
    pub(crate) fn install() -> Self {
        let captured = Self::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .init();
        captured
    }

    /// Everything written so far.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
}

pub(crate) fn chat(model: &str, stream: bool, max_tokens: u64) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "Tell me about the moon."}],
        "stream": stream,
        "max_tokens": max_tokens,
        "temperature": 0.0,
    })
}

/// Splits an SSE body into its `data:` payloads.
pub(crate) fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|event| event.trim().strip_prefix("data: ").map(str::to_owned))
        .collect()
}

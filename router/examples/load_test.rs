//! Load test of the router's plain endpoint: many concurrent streaming
//! clients on loopback, the router in a process of its own (so its memory
//! and CPU are its alone), one `load_node` behind it (the real sealed
//! protocol, a trivial engine).
//!
//! `load_test run` (the default) starts `load_node`, creates a key in a
//! fresh SQLite ledger, starts the router process (`--router example`: this
//! binary's `router` subcommand, the library's `start` + `serve` with no log
//! subscriber; `--router cli`: the `cloister router` binary as deployed,
//! logging at its default level to a file), waits for the node to be
//! attested, then runs `--clients` tasks that each send streaming
//! `POST /v1/chat/completions` requests back to back: `--warmup` seconds
//! unrecorded, then `--duration` seconds recorded. Requests that end inside
//! the recorded window count. Printed: requests/s, latency and time to first
//! token (p50/p99), errors, the router's CPU seconds per request
//! (`/proc/PID/stat` utime+stime over the window), its VmRSS (sampled every
//! 100 ms over the window, and idle before the load) and VmHWM (peak over
//! the whole run), the node's and this generator's CPU per request (they
//! share the machine's cores with the router), and the receipts the ledger
//! stored.
//!
//! `load_test router --database-url URL --data-dir DIR --node URL` runs the
//! router alone and prints `router listening on ADDR`.
//!
//! cargo run -p cloister-router --example load_test -- run [--clients 1000]
//!     [--duration 20] [--warmup 5] [--router example|cli] [--cloister-bin PATH]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use cloister_attestation::Policy;
use cloister_router::RouterConfig;
use cloister_router::ledger::Ledger;
use futures::StreamExt as _;
use serde_json::json;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Option<Commands>,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the load test (default).
    Run(RunOptions),
    /// Run the router alone (used by `run --router example`).
    Router(RouterOptions),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RouterKind {
    /// This binary's `router` subcommand (no log subscriber).
    Example,
    /// `cloister router` (logs at info to a file, as deployed).
    Cli,
}

#[derive(Parser, Clone)]
struct RunOptions {
    /// Concurrent streaming clients.
    #[arg(long, default_value = "1000")]
    clients: usize,
    /// Recorded seconds.
    #[arg(long, default_value = "20")]
    duration: f64,
    /// Unrecorded seconds before (connections opened, caches warm).
    #[arg(long, default_value = "5")]
    warmup: f64,
    /// Which router process.
    #[arg(long, value_enum, default_value = "example")]
    router: RouterKind,
    /// The `cloister` binary for `--router cli` [default: next to this
    /// binary's directory: ../cloister].
    #[arg(long)]
    cloister_bin: Option<PathBuf>,
    /// The `load_node` binary [default: next to this binary].
    #[arg(long)]
    load_node_bin: Option<PathBuf>,
    /// Content chunks per answer (passed to the node; also `max_tokens`).
    #[arg(long, default_value = "16")]
    chunks: u64,
    /// The node's pause before each chunk, in milliseconds.
    #[arg(long, default_value = "10")]
    chunk_delay_ms: u64,
    /// A command line the router process is started under (profiling:
    /// `--router-prefix "heaptrack -o /tmp/router"`), split on spaces.
    #[arg(long)]
    router_prefix: Option<String>,
    /// Print the table header.
    #[arg(long)]
    header: bool,
    /// Append one JSON line with the results to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Parser, Clone)]
struct RouterOptions {
    #[arg(long)]
    database_url: String,
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long)]
    node: String,
    /// Exit when standard input closes.
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

fn main() {
    let cli = Cli::parse();
    // reqwest is built without a default TLS provider; plain HTTP needs
    // none, but building a client requires one to be installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match cli.command {
        Some(Commands::Router(options)) => runtime.block_on(router(options)),
        Some(Commands::Run(options)) => runtime.block_on(run(options)),
        None => runtime.block_on(run(RunOptions::parse_from(["run"]))),
    }
}

fn simulated_policy() -> Policy {
    let mut policy = Policy::strict();
    policy.platforms.clear();
    policy.simulated.allow = true;
    policy
}

/// `load_test router`: the library's router, nothing else in the process.
async fn router(options: RouterOptions) {
    if options.exit_on_stdin_eof {
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
    }
    let config = RouterConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: options.data_dir.clone(),
        database_url: Some(options.database_url),
        collateral: options.data_dir.join("collateral").display().to_string(),
        nodes: vec![options.node],
        requests_per_minute: u32::MAX,
        tokens_per_minute: u64::MAX / 4,
        ..RouterConfig::default()
    };
    let state = cloister_router::start(config, simulated_policy())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("router listening on {}", listener.local_addr().unwrap());
    cloister_router::serve(listener, state, std::future::pending())
        .await
        .unwrap();
}

/// Starts `command` and reads its stdout until a line containing
/// `listening on `; returns the child and the address after it.
fn spawn_listening(mut command: Command, what: &str) -> Result<(Child, String), String> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what} exited before listening"));
        };
        if let Some((_, addr)) = line.split_once("listening on ") {
            let addr = addr.trim().to_owned();
            // Keep draining stdout so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return Ok((child, addr));
        }
    }
}

/// `program`, or `prefix... program` when a prefix is given.
fn prefixed(prefix: Option<&str>, program: &std::path::Path) -> Command {
    let words: Vec<&str> = prefix.unwrap_or("").split_whitespace().collect();
    match words.split_first() {
        None => Command::new(program),
        Some((first, rest)) => {
            let mut command = Command::new(first);
            command.args(rest).arg(program);
            command
        }
    }
}

/// Kills a child this program started, by its handle.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: &str, ticks: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    let utime: f64 = fields[11].parse().unwrap();
    let stime: f64 = fields[12].parse().unwrap();
    (utime + stime) / ticks
}

/// A `/proc/PID/status` field in KiB.
fn status_kib(pid: &str, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn open_files_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil().max(1.0) as usize;
    values[rank.min(values.len()) - 1]
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[derive(Default)]
struct ClientResults {
    /// (end, latency, ttft) of each successful request.
    done: Vec<(Instant, f64, f64)>,
    /// End times of failed requests.
    failed: Vec<(Instant, String)>,
}

/// One client: requests back to back until `stop`.
async fn client(
    http: reqwest::Client,
    url: String,
    key: String,
    body: Arc<Vec<u8>>,
    stop: Arc<AtomicBool>,
    started: Arc<AtomicU64>,
) -> ClientResults {
    let mut results = ClientResults::default();
    while !stop.load(Ordering::Relaxed) {
        started.fetch_add(1, Ordering::Relaxed);
        let t = Instant::now();
        let outcome: Result<f64, String> = async {
            let response = http
                .post(&url)
                .bearer_auth(&key)
                .header("content-type", "application/json")
                .body(body.as_ref().clone())
                .send()
                .await
                .map_err(|e| format!("send: {e}"))?;
            if response.status() != 200 {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                return Err(format!(
                    "HTTP {status}: {}",
                    text.chars().take(200).collect::<String>()
                ));
            }
            let mut ttft = None;
            let mut tail = Vec::new();
            let mut stream = response.bytes_stream();
            while let Some(piece) = stream.next().await {
                let piece = piece.map_err(|e| format!("body: {e}"))?;
                if ttft.is_none() && memchr(&piece, b"\"content\":\"tok") {
                    ttft = Some(t.elapsed().as_secs_f64());
                }
                tail.extend_from_slice(&piece);
                let keep = tail.len().saturating_sub(64);
                tail.drain(..keep);
            }
            if !memchr(&tail, b"[DONE]") {
                return Err(format!(
                    "stream ended without [DONE]: {}",
                    String::from_utf8_lossy(&tail)
                ));
            }
            ttft.ok_or_else(|| "no content".to_owned())
        }
        .await;
        let end = Instant::now();
        match outcome {
            Ok(ttft) => results.done.push((end, (end - t).as_secs_f64(), ttft)),
            Err(e) => {
                results.failed.push((end, e));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    results
}

fn memchr(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn run(options: RunOptions) {
    let nofile = open_files_limit();
    if nofile < (options.clients as u64) * 4 + 256 {
        eprintln!(
            "warning: open files limit {nofile} is low for {} clients (run `ulimit -n 65536` first)",
            options.clients
        );
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().to_owned();
    let load_node = options
        .load_node_bin
        .clone()
        .unwrap_or_else(|| dir.join("load_node"));
    let mut command = Command::new(&load_node);
    command.args([
        "--exit-on-stdin-eof",
        "--chunks",
        &options.chunks.to_string(),
        "--chunk-delay-ms",
        &options.chunk_delay_ms.to_string(),
    ]);
    let (node, node_addr) = spawn_listening(command, "load_node").unwrap();
    let node = Guard(node);
    let node_url = format!("http://{node_addr}");

    let data = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", data.path().join("ledger.db").display());
    let ledger = Ledger::connect(&database_url).await.unwrap();
    let key = ledger
        .create_key("load", 1_000_000_000_000_000)
        .await
        .unwrap()
        .secret;
    ledger.close().await;

    let (router_child, router_addr) = match options.router {
        RouterKind::Example => {
            let mut command = prefixed(options.router_prefix.as_deref(), &exe);
            command
                .arg("router")
                .arg("--exit-on-stdin-eof")
                .arg("--database-url")
                .arg(&database_url)
                .arg("--data-dir")
                .arg(data.path())
                .arg("--node")
                .arg(&node_url);
            spawn_listening(command, "the router").unwrap()
        }
        RouterKind::Cli => {
            let bin = options
                .cloister_bin
                .clone()
                .unwrap_or_else(|| dir.parent().unwrap().join("cloister"));
            let policy = data.path().join("policy.toml");
            // A policy file must name a hardware platform (pinned); the
            // load node's simulated evidence passes under [simulated].
            std::fs::write(
                &policy,
                format!(
                    "platforms = [\"tdx\"]\n\n[tdx]\nmrtd = [\"{}\"]\n\n[simulated]\nallow = true\n",
                    "00".repeat(48)
                ),
            )
            .unwrap();
            let log_path = data.path().join("router.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let mut command = prefixed(options.router_prefix.as_deref(), &bin);
            command
                .arg("router")
                .args(["--listen", "127.0.0.1:0", "--policy"])
                .arg(&policy)
                .arg("--database-url")
                .arg(&database_url)
                .arg("--data-dir")
                .arg(data.path())
                .arg("--collateral")
                .arg(data.path().join("collateral"))
                .args(["--node", &node_url])
                .args(["--requests-per-minute", &u32::MAX.to_string()])
                .args(["--tokens-per-minute", "1000000000000000"])
                .env_remove("RUST_LOG")
                .stderr(log);
            spawn_listening(command, "`cloister router`").unwrap_or_else(|e| {
                panic!(
                    "{e}; its log:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                )
            })
        }
    };
    let router_pid = router_child.id().to_string();
    let _router = Guard(router_child);
    let node_pid = node.0.id().to_string();
    let router_url = format!("http://{router_addr}");

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let waited = Instant::now();
    loop {
        let models = http
            .get(format!("{router_url}/v1/models"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if models.contains("\"load\"") {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "the node was not attested: {models}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_idle = status_kib(&router_pid, "VmRSS");

    let body = Arc::new(
        json!({
            "model": "load",
            "messages": [{"role": "user", "content": "Tell me about the moon, in some detail please."}],
            "stream": true,
            "max_tokens": options.chunks,
        })
        .to_string()
        .into_bytes(),
    );
    let url = format!("{router_url}/v1/chat/completions");
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..options.clients)
        .map(|_| {
            tokio::spawn(client(
                http.clone(),
                url.clone(),
                key.clone(),
                body.clone(),
                stop.clone(),
                started.clone(),
            ))
        })
        .collect();

    let ticks = clock_ticks();
    tokio::time::sleep(Duration::from_secs_f64(options.warmup)).await;
    let t0 = Instant::now();
    let cpu0 = (
        cpu_seconds(&router_pid, ticks),
        cpu_seconds(&node_pid, ticks),
        cpu_seconds("self", ticks),
    );
    let window = Duration::from_secs_f64(options.duration);
    let mut rss_max = 0;
    let mut rss_samples = Vec::new();
    while t0.elapsed() < window {
        let rss = status_kib(&router_pid, "VmRSS");
        rss_max = rss_max.max(rss);
        rss_samples.push(rss as f64);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t1 = Instant::now();
    let cpu1 = (
        cpu_seconds(&router_pid, ticks),
        cpu_seconds(&node_pid, ticks),
        cpu_seconds("self", ticks),
    );
    let threads = status_kib(&router_pid, "Threads");
    stop.store(true, Ordering::Relaxed);
    let mut done = Vec::new();
    let mut failed = Vec::new();
    let drain_until = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut unfinished = 0;
    for task in tasks {
        match tokio::time::timeout_at(drain_until, task).await {
            Ok(r) => {
                let r = r.unwrap();
                done.extend(r.done);
                failed.extend(r.failed);
            }
            Err(_) => unfinished += 1,
        }
    }
    if unfinished > 0 {
        eprintln!(
            "warning: {unfinished} clients had not finished 60 s after the window; not counted"
        );
    }
    let hwm = status_kib(&router_pid, "VmHWM");
    let in_window = |end: &Instant| *end >= t0 && *end < t1;
    let mut latency: Vec<f64> = done
        .iter()
        .filter(|d| in_window(&d.0))
        .map(|d| d.1)
        .collect();
    let mut ttft: Vec<f64> = done
        .iter()
        .filter(|d| in_window(&d.0))
        .map(|d| d.2)
        .collect();
    let errors: Vec<&String> = failed
        .iter()
        .filter(|f| in_window(&f.0))
        .map(|f| &f.1)
        .collect();
    let errors_total = failed.len();
    if let Some(first) = failed.first() {
        eprintln!(
            "{} failed requests in all; the first: {}",
            errors_total, first.1
        );
    }
    let secs = (t1 - t0).as_secs_f64();
    let n = latency.len();
    let rps = n as f64 / secs;
    let per_request_ms = |cpu: f64| {
        if n > 0 {
            cpu / n as f64 * 1000.0
        } else {
            f64::NAN
        }
    };
    let router_cpu = cpu1.0 - cpu0.0;
    let node_cpu = cpu1.1 - cpu0.1;
    let self_cpu = cpu1.2 - cpu0.2;

    // Receipts the router stored (every successful request is charged).
    let ledger = Ledger::connect(&database_url).await.unwrap();
    let receipts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM receipts")
        .fetch_one(ledger.pool())
        .await
        .unwrap();
    ledger.close().await;
    let receipts_expected = done.len();

    let p50 = percentile(&mut latency, 50.0);
    let p99 = percentile(&mut latency, 99.0);
    let ttft50 = percentile(&mut ttft, 50.0);
    let ttft99 = percentile(&mut ttft, 99.0);
    let rss_median = percentile(&mut rss_samples, 50.0) as u64;
    let mut label = match options.router {
        RouterKind::Example => "library router (example binary, no log subscriber)",
        RouterKind::Cli => "`cloister router` (logs at info to a file)",
    }
    .to_owned();
    if let Some(prefix) = &options.router_prefix {
        label.push_str(&format!(", under `{prefix}`"));
    }
    if options.header {
        println!(
            "| router process | clients | window s | requests | errors | req/s | p50 latency s | p99 latency s | p50 TTFT s | p99 TTFT s | router CPU ms/req | router CPU % of 1 core | router RSS idle MiB | RSS under load, median / max MiB | router VmHWM MiB | router threads | node CPU ms/req | generator CPU ms/req | receipts stored / requests served |"
        );
        println!(
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
    }
    println!(
        "| {label} | {} | {:.1} | {n} | {} | {:.1} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.0} | {:.1} | {:.1} / {:.1} | {:.1} | {threads} | {:.3} | {:.3} | {receipts} / {receipts_expected} |",
        options.clients,
        secs,
        errors.len(),
        rps,
        p50,
        p99,
        ttft50,
        ttft99,
        per_request_ms(router_cpu),
        router_cpu / secs * 100.0,
        mib(rss_idle),
        mib(rss_median),
        mib(rss_max),
        mib(hwm),
        per_request_ms(node_cpu),
        per_request_ms(self_cpu),
    );
    if let Some(path) = &options.json {
        let line = json!({
            "router": format!("{:?}", options.router), "clients": options.clients, "window_s": secs,
            "requests": n, "errors": errors.len(), "errors_total": errors_total,
            "requests_started": started.load(Ordering::Relaxed), "rps": rps,
            "p50_s": p50, "p99_s": p99, "ttft_p50_s": ttft50, "ttft_p99_s": ttft99,
            "router_cpu_s": router_cpu, "node_cpu_s": node_cpu, "generator_cpu_s": self_cpu,
            "router_rss_idle_kib": rss_idle, "router_rss_median_kib": rss_median,
            "router_rss_max_kib": rss_max, "router_hwm_kib": hwm, "router_threads": threads,
            "receipts": receipts, "served": receipts_expected,
        });
        let mut text = std::fs::read_to_string(path).unwrap_or_default();
        text.push_str(&line.to_string());
        text.push('\n');
        std::fs::write(path, text).unwrap();
    }
    drop(node);
}

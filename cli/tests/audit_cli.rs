//! `cloister audit log` and `cloister audit receipts` against a real history:
//! a router in front of a simulated-TEE enclave (registered under two URLs,
//! so the log has two nodes), a few requests through the plain endpoint, then
//! the router's database altered the ways a dishonest operator would.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::PathBuf;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use cloister_router::ledger::{GENESIS_PREV_HASH, Ledger, LogEntry, log_entry_hash};
use serde_json::{Value, json};

use common::{cloister, spawn, text};

/// A router, an enclave behind it, an account with receipts.
struct History {
    dir: tempfile::TempDir,
    router: String,
    key: String,
    policy: PathBuf,
    children: Vec<Child>,
    runtime: tokio::runtime::Runtime,
}

impl Drop for History {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Simulated evidence allowed (no hardware here); TDX pinned to a
/// measurement no machine has, so that the router finds the policy fit to
/// serve with.
const ALLOW_SIMULATED: &str = "platforms = [\"tdx\"]\n[tdx]\nmrtd = [\"000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\"]\n[simulated]\nallow = true\n";

impl History {
    fn start(requests: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model");
        std::fs::create_dir_all(&model).unwrap();
        cloister_enclave::testing::write_tiny_llama(&model).unwrap();
        let policy = dir.path().join("policy.toml");
        std::fs::write(&policy, ALLOW_SIMULATED).unwrap();
        let (enclave, enclave_addr) = spawn(
            cloister().args([
                "enclave",
                "--model",
                model.to_str().unwrap(),
                "--model-id",
                "tiny",
                "--tee",
                "simulated",
                "--listen",
                "127.0.0.1:0",
                "--no-model-staging",
                "--prompt-price",
                "3",
                "--completion-price",
                "5",
            ]),
            "cloister enclave listening on ",
        );
        let port = enclave_addr.rsplit(':').next().unwrap().to_owned();
        let data = dir.path().join("data");
        let (router, router_addr) = spawn(
            cloister()
                .args(["router", "--listen", "127.0.0.1:0", "--policy"])
                .arg(&policy)
                .arg("--data-dir")
                .arg(&data)
                .args(["--node", &format!("http://{enclave_addr}")])
                .args(["--node", &format!("http://localhost:{port}")]),
            "cloister router listening on ",
        );
        let mut history = Self {
            dir,
            router: format!("http://{router_addr}"),
            key: String::new(),
            policy,
            children: vec![enclave, router],
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        };
        let created = cloister()
            .args([
                "keys",
                "create",
                "--account",
                "alice",
                "--credit",
                "1000000000",
            ])
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap();
        assert!(created.status.success(), "{}", text(&created.stderr));
        history.key = text(&created.stdout).trim().to_owned();

        // Both nodes attested, then requests.
        let started = Instant::now();
        loop {
            let nodes = history.get("/v1/attestation");
            let serving = nodes["data"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n["state"] == "serving")
                .count();
            if serving == 2 {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{nodes}");
            std::thread::sleep(Duration::from_millis(100));
        }
        for i in 0..requests {
            let body = json!({
                "model": "tiny",
                "messages": [{"role": "user", "content": format!("Count to {i}.")}],
                "max_tokens": 4,
                "temperature": 0.0,
            });
            let status = history.runtime.block_on(async {
                reqwest::Client::new()
                    .post(format!("{}/v1/chat/completions", history.router))
                    .bearer_auth(&history.key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
            });
            assert!(status.is_success(), "{status}");
        }
        let started = Instant::now();
        while history.get("/v1/audit/receipts")["data"]
            .as_array()
            .unwrap()
            .len()
            < requests
        {
            assert!(started.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(50));
        }
        history
    }

    fn get(&self, path: &str) -> Value {
        self.runtime.block_on(async {
            reqwest::Client::new()
                .get(format!("{}{path}", self.router))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    }

    fn audit(&self, args: &[&str]) -> Output {
        cloister()
            .arg("audit")
            .args(args)
            .args(["--router", &self.router])
            .output()
            .unwrap()
    }

    fn audit_log(&self, extra: &[&str]) -> Output {
        let policy = self.policy.to_str().unwrap().to_owned();
        let mut args = vec!["log", "--policy", &policy];
        args.extend_from_slice(extra);
        self.audit(&args)
    }

    fn audit_receipts(&self, extra: &[&str]) -> Output {
        let policy = self.policy.to_str().unwrap().to_owned();
        let mut args = vec!["receipts", "--account", &self.key, "--policy", &policy];
        args.extend_from_slice(extra);
        self.audit(&args)
    }

    fn db_path(&self) -> PathBuf {
        self.dir.path().join("data").join("router.db")
    }

    /// Runs `f` on the router's ledger (the live database file).
    fn with_ledger<T>(&self, f: impl AsyncFnOnce(&Ledger) -> T) -> T {
        let url = format!("sqlite://{}", self.db_path().display());
        self.runtime.block_on(async {
            let ledger = Ledger::connect(&url).await.unwrap();
            let out = f(&ledger).await;
            ledger.close().await;
            out
        })
    }

    fn sql(&self, statement: &str) {
        self.with_ledger(async |ledger| {
            sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
                .execute(ledger.pool())
                .await
                .unwrap();
        });
    }

    fn log(&self) -> Vec<LogEntry> {
        self.with_ledger(async |ledger| ledger.attestation_log(0, 500).await.unwrap())
    }

    /// Replaces the whole log with `entries`, renumbered from 1 and chained
    /// afresh: a router rewriting history carefully.
    fn rewrite_log(&self, mut entries: Vec<LogEntry>) {
        let mut prev = GENESIS_PREV_HASH.to_owned();
        for (i, e) in entries.iter_mut().enumerate() {
            e.id = i64::try_from(i).unwrap() + 1;
            e.prev_hash = prev;
            e.entry_hash = log_entry_hash(e);
            prev = e.entry_hash.clone();
        }
        self.with_ledger(async |ledger| {
            let mut tx = ledger.pool().begin().await.unwrap();
            sqlx::query("DELETE FROM attestation_log")
                .execute(&mut *tx)
                .await
                .unwrap();
            for e in &entries {
                sqlx::query(
                    "INSERT INTO attestation_log (id, node_id, node_url, verified_at, nonce, \
                     bundle, collateral, verdict, accepted, prev_hash, entry_hash) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(e.id)
                .bind(e.node_id.as_str())
                .bind(e.node_url.as_str())
                .bind(e.verified_at)
                .bind(e.nonce.as_str())
                .bind(e.bundle.as_str())
                .bind(e.collateral.as_deref())
                .bind(e.verdict.as_str())
                .bind(i64::from(e.accepted))
                .bind(e.prev_hash.as_str())
                .bind(e.entry_hash.as_str())
                .execute(&mut *tx)
                .await
                .unwrap();
            }
            tx.commit().await.unwrap();
        });
    }
}

/// Exit 1 and a DIFFERS line containing every one of `needles`.
fn assert_differs(out: &Output, needles: &[&str]) {
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("DIFFERS") && needles.iter().all(|n| l.contains(n))),
        "no DIFFERS line with {needles:?}:\n{stdout}"
    );
}

fn assert_consistent(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("CONSISTENT"));
}

/// A verdict document saying `accepted`.
fn verdict_saying(accepted: bool) -> String {
    json!({"accepted": accepted, "verdict": null, "router_refusals": []}).to_string()
}

#[test]
fn audit_log_passes_on_the_real_history_and_catches_every_rewrite() {
    let history = History::start(3);
    let honest = history.log();
    assert_eq!(honest.len(), 2, "one entry per node");
    assert!(honest.iter().all(|e| e.accepted));

    let out = history.audit_log(&[]);
    assert_consistent(&out);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("log head: entry 2"), "{stdout}");
    let json_out = history.audit_log(&["--json"]);
    assert_eq!(json_out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(report["consistent"], true);
    assert_eq!(report["summary"]["entries"], 2);
    assert_eq!(report["summary"]["receipts"], 3);

    // --from: the first entry's link is taken on trust, and said so.
    let out = history.audit_log(&["--from", "2", "--drain-grace", "0"]);
    assert!(
        text(&out.stdout).contains("taken on trust"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        history.audit_log(&["--from", "9"]).status.code(),
        Some(2),
        "no such entry"
    );

    // Under the default policy (simulated evidence refused) every accepted
    // entry differs.
    let strict = history.audit(&["log"]);
    assert_differs(&strict, &["entry 1", "verdict", "your policy refuses"]);
    // So does a policy pinning another measurement.
    let pinned = history.dir.path().join("pinned.toml");
    std::fs::write(
        &pinned,
        format!("{ALLOW_SIMULATED}measurement = [\"{}\"]\n", "00".repeat(48)),
    )
    .unwrap();
    let out = history.audit(&["log", "--policy", pinned.to_str().unwrap()]);
    assert_differs(&out, &["entry 2", "verdict", "measurement"]);

    // 1. One entry's text altered in place.
    history.sql("UPDATE attestation_log SET node_url = 'http://elsewhere:1' WHERE id = 2");
    assert_differs(&history.audit_log(&[]), &["entry 2", "chain", "altered"]);
    history.rewrite_log(honest.clone());
    assert_consistent(&history.audit_log(&[]));
    history.sql("UPDATE attestation_log SET bundle = bundle || ' ' WHERE id = 1");
    assert_differs(&history.audit_log(&[]), &["entry 1", "chain"]);
    history.rewrite_log(honest.clone());

    // 2. An entry removed.
    history.sql("DELETE FROM attestation_log WHERE id = 1");
    assert_differs(
        &history.audit_log(&[]),
        &["entry 2", "chain", "expected entry 1"],
    );
    history.rewrite_log(honest.clone());

    // 3. A verdict flipped to a refusal, chain recomputed: the bundle still
    // passes, and the node served while "refused".
    let mut flipped = honest.clone();
    flipped[0].accepted = false;
    flipped[0].verdict = verdict_saying(false);
    history.rewrite_log(flipped);
    let out = history.audit_log(&[]);
    assert_differs(&out, &["entry 1", "verdict", "your policy accepts it"]);
    history.rewrite_log(honest.clone());

    // 4. An entry made to answer another nonce (its bundle no longer passes),
    // still logged as accepted, chain recomputed.
    let mut replayed = honest.clone();
    replayed[1].nonce = "11".repeat(32);
    history.rewrite_log(replayed);
    assert_differs(
        &history.audit_log(&[]),
        &["entry 2", "verdict", "the router accepted the node"],
    );
    history.rewrite_log(honest.clone());
    assert_consistent(&history.audit_log(&[]));
}

#[test]
fn audit_log_reports_a_node_serving_while_refused() {
    let history = History::start(2);
    let honest = history.log();
    let served = history.get("/v1/audit/receipts");
    let node = served["data"][0]["node_id"].as_str().unwrap().to_owned();
    // A refusal of that node, logged right after its acceptance (before any
    // receipt), that the auditor refuses too: its bundle answers another
    // nonce. The chain is recomputed, so only where traffic went betrays it.
    let accepted = honest.iter().position(|e| e.node_id == node).unwrap();
    let mut refusal = honest[accepted].clone();
    refusal.nonce = "22".repeat(32);
    refusal.accepted = false;
    refusal.verdict = verdict_saying(false);
    let mut rewritten = honest.clone();
    rewritten.insert(accepted + 1, refusal);
    history.rewrite_log(rewritten);
    let refused_id = format!("entry {}", accepted + 2);

    let out = history.audit_log(&["--drain-grace", "0"]);
    assert_differs(&out, &[&refused_id, &node, "served", "is a refusal"]);
    let stdout = text(&out.stdout);
    assert!(
        !stdout.contains("verdict:"),
        "the logged verdicts themselves agree:\n{stdout}"
    );
    // Within the drain grace, a request may have been in flight.
    assert_consistent(&history.audit_log(&[]));
}

#[test]
fn audit_receipts_recomputes_the_bill() {
    let history = History::start(3);
    let account = history.runtime.block_on(async {
        reqwest::Client::new()
            .get(format!("{}/v1/account", history.router))
            .bearer_auth(&history.key)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    let payer = account["payers"][0].as_str().unwrap().to_owned();

    let out = history.audit_receipts(&[]);
    assert_consistent(&out);
    assert!(
        text(&out.stdout).contains("trusts the router"),
        "{}",
        text(&out.stdout)
    );
    let out = history.audit_receipts(&["--payer", &payer, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["summary"]["receipts"], 3);
    assert_eq!(report["summary"]["payers_from_router"], false);
    assert_eq!(
        report["summary"]["recomputed_total"],
        account["charged"].to_string()
    );
    assert!(account["charged"].as_i64().unwrap() > 0, "{account}");

    // Someone else's payer.
    let out = history.audit_receipts(&["--payer", "0x00000000000000000000000000000000000000aa"]);
    assert_differs(&out, &["payer", "not yours"]);

    // A charge altered.
    history.sql(
        "UPDATE receipts SET charge = charge + 7 WHERE digest = (SELECT MIN(digest) FROM receipts)",
    );
    assert_differs(
        &history.audit_receipts(&["--payer", &payer]),
        &["charge", "recorded charge"],
    );
    history.sql(
        "UPDATE receipts SET charge = charge - 7 WHERE digest = (SELECT MIN(digest) FROM receipts)",
    );
    assert_consistent(&history.audit_receipts(&["--payer", &payer]));

    // What was taken from the balance altered: the bill no longer adds up.
    history.sql(
        "UPDATE charges SET amount = amount + 5 WHERE receipt_digest = (SELECT MIN(receipt_digest) FROM charges)",
    );
    let out = history.audit_receipts(&["--payer", &payer]);
    assert_differs(&out, &["charge", "charged"]);
    assert_differs(&out, &["bill"]);
    history.sql("UPDATE charges SET amount = amount - 5 WHERE receipt_digest = (SELECT MIN(receipt_digest) FROM charges)");

    // A token count altered.
    history.sql(
        "UPDATE receipts SET completion_tokens = completion_tokens + 100 WHERE digest = (SELECT MAX(digest) FROM receipts)",
    );
    assert_differs(
        &history.audit_receipts(&["--payer", &payer]),
        &["recorded", "completion_tokens"],
    );
    history.sql("UPDATE receipts SET completion_tokens = completion_tokens - 100 WHERE digest = (SELECT MAX(digest) FROM receipts)");

    // The signed receipt itself altered: its signature no longer matches.
    history.sql(
        "UPDATE receipts SET receipt = replace(receipt, '\"promptTokens\":', '\"promptTokens\":1') WHERE digest = (SELECT MAX(digest) FROM receipts)",
    );
    let out = history.audit_receipts(&["--payer", &payer]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));

    // Without the key, nothing to audit: a clear error, exit 2.
    let out = history.audit(&["receipts", "--account", "sk-cloister-wrong"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
}

#[test]
fn usage_and_network_errors_exit_2() {
    let out = cloister()
        .args(["audit", "log", "--router", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot reach"),
        "{}",
        text(&out.stderr)
    );
    let out = cloister()
        .args(["audit", "log", "--router", "ftp://x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let help = cloister()
        .args(["audit", "log", "--help"])
        .output()
        .unwrap();
    assert!(text(&help.stdout).contains("Exit status"));
}

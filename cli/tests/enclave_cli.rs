//! `cloister enclave` as an operator runs it: it starts on a model with the
//! simulated TEE, prints where it listens, serves a bundle that
//! `cloister verify bundle` accepts only under a policy allowing simulated
//! evidence, and stops cleanly on SIGTERM.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn cloister() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cloister"))
}

/// Starts the enclave; returns the child and the address it listens on.
fn start(model: &std::path::Path, extra: &[&str]) -> (Child, String) {
    start_logging(model, extra, "warn")
}

/// Starts the enclave with `RUST_LOG=rust_log`.
fn start_logging(model: &std::path::Path, extra: &[&str], rust_log: &str) -> (Child, String) {
    let mut child = cloister()
        .args([
            "enclave",
            "--model",
            model.to_str().unwrap(),
            "--model-id",
            "tiny",
            "--tee",
            "simulated",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .env("RUST_LOG", rust_log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().expect("the enclave printed nothing").unwrap();
    let addr = line
        .strip_prefix("cloister enclave listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    (child, addr)
}

fn get(addr: &str, path: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_response(stream)
}

/// Reads a whole `Connection: close` response: status and body.
fn read_response(mut stream: TcpStream) -> (u16, Vec<u8>) {
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, response[split + 4..].to_vec())
}

fn stop(mut child: Child) -> Output {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the enclave did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn the_served_bundle_verifies_only_when_simulated_evidence_is_allowed() {
    let model = tempfile::tempdir().unwrap();
    cloister_enclave::testing::write_tiny_llama(model.path()).unwrap();
    let (child, addr) = start(model.path(), &[]);

    let nonce = "ab".repeat(32);
    let (status, bundle) = get(&addr, &format!("/attestation?nonce={nonce}"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bundle));
    let (status, _) = get(&addr, "/attestation?nonce=nope");
    assert_eq!(status, 400);
    let (status, health) = get(&addr, "/healthz");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&health).contains("simulated"));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bundle.json");
    std::fs::write(&file, &bundle).unwrap();
    let policy = dir.path().join("dev.toml");
    std::fs::write(&policy, "[simulated]\nallow = true\n").unwrap();
    let file = file.to_str().unwrap();

    let ok = cloister()
        .args([
            "verify",
            "bundle",
            file,
            "--nonce",
            &nonce,
            "--policy",
            policy.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let strict = cloister()
        .args(["verify", "bundle", file, "--nonce", &nonce, "--json"])
        .output()
        .unwrap();
    assert_eq!(strict.status.code(), Some(1));
    let verdict: serde_json::Value = serde_json::from_slice(&strict.stdout).unwrap();
    assert_eq!(verdict["reasons"][0]["code"], "simulated_not_allowed");
    assert_eq!(verdict["simulated"], true);

    let out = stop(child);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_missing_model_or_tee_fails_at_start_with_a_clear_message() {
    let out = cloister()
        .args([
            "enclave",
            "--model",
            "/nonexistent/model.gguf",
            "--tee",
            "simulated",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/model.gguf") && err.contains("does not exist"),
        "{err}"
    );

    for (payout, says) in [
        ("nope", "is not a 0x address"),
        (
            "0x0000000000000000000000000000000000000000",
            "the zero address",
        ),
    ] {
        let out = cloister()
            .args(["enclave", "--model", "/nonexistent/model.gguf"])
            .args(["--tee", "simulated", "--payout-address", payout])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--payout-address") && err.contains(says),
            "{err}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("model.gguf");
    let start_on = |model: &std::path::Path| {
        cloister()
            .args([
                "enclave",
                "--model",
                model.to_str().unwrap(),
                "--tee",
                "simulated",
            ])
            .output()
            .unwrap()
    };
    std::fs::write(&fake, b"this is not a gguf file").unwrap();
    let out = start_on(&fake);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a GGUF file"));

    // A GGUF header followed by garbage: mistral.rs refuses it, no panic.
    std::fs::write(&fake, b"GGUF\x03\x00\x00\x00garbage").unwrap();
    let out = start_on(&fake);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("could not load the model"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// POSTs `body` to `/v1/sealed` as HTTP/1.0 (so the answer is not chunked);
/// returns the status and the frames.
fn post_sealed(addr: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /v1/sealed HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    read_response(stream)
}

#[test]
fn at_rust_log_trace_no_prompt_or_completion_text_reaches_stderr() {
    use base64::Engine as _;
    use cloister_protocol::{PayerKey, ReceiptDomain, ResponseReader, seal_request};

    let model = tempfile::tempdir().unwrap();
    cloister_enclave::testing::write_tiny_llama(model.path()).unwrap();
    let (child, addr) = start_logging(model.path(), &[], "trace");
    let (status, bundle) = get(&addr, &format!("/attestation?nonce={}", "cd".repeat(32)));
    assert_eq!(status, 200);
    let bundle: serde_json::Value = serde_json::from_slice(&bundle).unwrap();
    let identity = &bundle["identity"];
    let key_config = base64::engine::general_purpose::STANDARD
        .decode(identity["hpke_key_config"].as_str().unwrap())
        .unwrap();
    let signer: cloister_protocol::Address = identity["signer"].as_str().unwrap().parse().unwrap();

    let canary = "PROMPT-CANARY-7f3a the lighthouse keeper's secret";
    let request = serde_json::json!({
        "model": "tiny",
        "messages": [{"role": "user", "content": canary}],
        "max_tokens": 24,
        "temperature": 0.0,
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let envelope = PayerKey::generate()
        .envelope(
            signer,
            &ReceiptDomain::default(),
            now,
            request.to_string().into_bytes(),
        )
        .unwrap();
    let (sealed, opener) = seal_request(&key_config, &envelope).unwrap();
    let (status, frames) = post_sealed(&addr, &sealed);
    assert_eq!(status, 200);
    let done = ResponseReader::new(opener, signer, ReceiptDomain::default())
        .read_all(&frames)
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&done.plaintext).unwrap();
    let completion = answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();

    let out = stop(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("request served"), "logging works: {stderr}");
    assert!(
        stderr.contains("sealed body read"),
        "RUST_LOG=trace took effect: {stderr}"
    );
    assert!(
        !stderr.contains("PROMPT-CANARY"),
        "the prompt reached the logs"
    );
    let chars: Vec<char> = completion.chars().collect();
    for window in chars.windows(8) {
        let fragment: String = window.iter().collect();
        if fragment.trim().len() == 8 {
            assert!(
                !stderr.contains(&fragment),
                "completion text {fragment:?} reached the logs"
            );
        }
    }
}

//! The router's OpenAI endpoint in front of real enclaves (simulated TEE,
//! tiny model): answers, streaming, usage, charges from receipts, errors,
//! and the attacks a node or a user can try. Runs on SQLite, and on
//! PostgreSQL when CLOISTER_TEST_POSTGRES_URL is set.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Stack, TestNode, chat, simulated_policy, sse_data};
use serde_json::{Value, json};

const PRICED: &[&str] = &["--prompt-price", "2", "--completion-price", "3"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_and_completions_stream_or_not_with_usage_and_charges() {
    let node = TestNode::start("tiny", PRICED).await;
    let stack = Stack::start(simulated_policy(), &[node.url()], |_| {}).await;
    stack.settled(1).await;

    let models: Value = stack
        .client()
        .get(format!("{}/v1/models", stack.url))
        .bearer_auth(&stack.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "tiny");

    let before = stack.balance().await;
    let response = stack
        .post("/v1/chat/completions", &chat("tiny", false, 8))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    let usage = &body["usage"];
    let (prompt, completion) = (
        usage["prompt_tokens"].as_i64().unwrap(),
        usage["completion_tokens"].as_i64().unwrap(),
    );
    assert!(prompt > 0 && completion > 0, "{usage}");
    let after = stack.balance().await;
    assert_eq!(
        before - after,
        2 * prompt + 3 * completion,
        "charged exactly the receipt"
    );

    let mut streamed = chat("tiny", true, 8);
    streamed["stream_options"] = json!({"include_usage": true});
    let response = stack.post("/v1/chat/completions", &streamed).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = response.text().await.unwrap();
    let events = sse_data(&text);
    assert_eq!(events.last().unwrap(), "[DONE]", "{text}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert!(
        chunks.last().unwrap()["usage"]["completion_tokens"]
            .as_i64()
            .unwrap()
            > 0,
        "include_usage"
    );

    let completion =
        json!({"model": "tiny", "prompt": "Once upon a time", "max_tokens": 5, "temperature": 0.0});
    let response = stack.post("/v1/completions", &completion).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "text_completion");
    assert!(body["usage"]["total_tokens"].as_i64().unwrap() > 0);

    let receipts = stack.receipts(3).await;
    assert_eq!(receipts.len(), 3, "one stored receipt per answer");
    let accounts = stack.state.ledger.accounts().await.unwrap();
    let alice = accounts.iter().find(|a| a.name == "alice").unwrap();
    assert_eq!(alice.requests, 3);
    assert_eq!(
        alice.charged,
        receipts.iter().map(|r| r.charge).sum::<i64>()
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_errors_and_status_codes() {
    let node = TestNode::start("tiny", &[]).await;
    let stack = Stack::start(simulated_policy(), &[node.url()], |c| {
        c.requests_per_minute = 2;
        c.max_request_bytes = 4096;
    })
    .await;
    stack.settled(1).await;
    let client = stack.client();
    let url = format!("{}/v1/chat/completions", stack.url);

    let missing = client
        .post(&url)
        .json(&chat("tiny", false, 4))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    let wrong = client
        .post(&url)
        .bearer_auth("sk-cloister-wrong")
        .json(&chat("tiny", false, 4))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    for field in ["message", "type", "param", "code"] {
        assert!(
            body["error"].get(field).is_some(),
            "OpenAI error shape: {field}"
        );
    }

    let unknown = stack
        .post("/v1/chat/completions", &chat("gpt-nope", false, 4))
        .await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.json::<Value>().await.unwrap()["error"]["code"],
        "model_not_found"
    );

    let bad = stack
        .post(
            "/v1/chat/completions",
            &json!({"model": "tiny", "prompt": "x"}),
        )
        .await;
    assert_eq!(bad.status(), 400);
    let huge =
        json!({"model": "tiny", "messages": [{"role": "user", "content": "x".repeat(8000)}]});
    assert_eq!(
        stack.post("/v1/chat/completions", &huge).await.status(),
        413
    );

    // The enclave's own refusal (n = 2) comes back as the enclave wrote it.
    let mut two = chat("tiny", false, 4);
    two["n"] = json!(2);
    let refused = stack.post("/v1/chat/completions", &two).await;
    assert_eq!(refused.status(), 400);
    assert!(refused.json::<Value>().await.unwrap()["error"]["message"].is_string());

    // Two requests per minute (the unknown model and n = 2 used them up):
    // the next is refused with Retry-After.
    let limited = stack
        .post("/v1/chat/completions", &chat("tiny", false, 4))
        .await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().get("retry-after").is_some());
    assert_eq!(
        limited.json::<Value>().await.unwrap()["error"]["code"],
        "rate_limit_exceeded"
    );

    // No balance: insufficient_quota.
    let broke = stack
        .state
        .ledger
        .create_key("bob", 0)
        .await
        .unwrap()
        .secret;
    let response = client
        .post(&url)
        .bearer_auth(&broke)
        .json(&chat("tiny", false, 4))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["type"],
        "insufficient_quota"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_attested_node_is_503() {
    let stack = Stack::start(simulated_policy(), &[], |_| {}).await;
    let response = stack
        .post("/v1/chat/completions", &chat("tiny", false, 4))
        .await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["code"],
        "no_attested_node"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_node_never_gets_a_request_and_shows_why() {
    let good = TestNode::start("tiny", &[]).await;
    let other = TestNode::start("tiny-other", &[]).await;
    let mut policy = simulated_policy();
    let pinned: [u8; 48] = hex::decode(good.measurement().await)
        .unwrap()
        .try_into()
        .unwrap();
    policy.simulated.measurement = Some(vec![cloister_attestation::policy::Digest48(pinned)]);
    let stack = Stack::start(policy, &[good.url(), other.url()], |_| {}).await;
    stack.settled(2).await;
    let challenges = other
        .proxy
        .connections
        .load(std::sync::atomic::Ordering::SeqCst);

    for _ in 0..3 {
        assert_eq!(
            stack
                .post("/v1/chat/completions", &chat("tiny", false, 4))
                .await
                .status(),
            200
        );
        assert_eq!(
            stack
                .post("/v1/chat/completions", &chat("tiny-other", false, 4))
                .await
                .status(),
            404
        );
    }
    assert_eq!(
        other
            .proxy
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        challenges,
        "the refused node saw nothing but its challenge"
    );
    let listed: Value = stack
        .client()
        .get(format!("{}/v1/attestation", stack.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let nodes = listed["data"].as_array().unwrap();
    let refused = nodes
        .iter()
        .find(|n| n["state"] == "refused")
        .expect("one refused node");
    let reasons = refused["reasons"].to_string();
    assert!(reasons.contains("measurement_not_allowed"), "{reasons}");
    assert_eq!(refused["verdict"]["accepted"], false);
    assert!(
        refused["bundle"]["evidence"].is_string(),
        "the bundle is published"
    );
    let page = stack
        .client()
        .get(&stack.url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("refused") && page.contains("measurement_not_allowed"),
        "status page shows the refusal"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_dying_mid_stream_gives_a_clean_error_and_no_charge() {
    let node = TestNode::start("tiny", PRICED).await;
    let stack = Stack::start(simulated_policy(), &[node.url()], |_| {}).await;
    stack.settled(1).await;
    let before = stack.balance().await;
    node.proxy.kill_after_response_bytes(1500);
    let response = stack
        .post("/v1/chat/completions", &chat("tiny", true, 200))
        .await;
    assert_eq!(response.status(), 200, "the stream had started");
    let text = response.text().await.unwrap();
    let events = sse_data(&text);
    assert!(events.len() >= 2, "some chunks, then the error: {text}");
    assert_ne!(events.last().unwrap(), "[DONE]");
    let error: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "upstream_error");
    assert_eq!(stack.balance().await, before, "no receipt, no charge");
    assert!(
        stack
            .state
            .ledger
            .recent_receipts(10)
            .await
            .unwrap()
            .is_empty()
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_dead_before_the_first_byte_is_retried_elsewhere() {
    let a = TestNode::start("tiny", &[]).await;
    let b = TestNode::start("tiny", &["--prompt-price", "1"]).await;
    let stack = Stack::start(simulated_policy(), &[a.url(), b.url()], |_| {}).await;
    stack.settled(2).await;
    // Routing prefers the cheaper node (same load, same health): kill it.
    a.proxy.kill();
    let response = stack
        .post("/v1/chat/completions", &chat("tiny", false, 4))
        .await;
    assert_eq!(response.status(), 200);
    let receipts = stack.state.ledger.recent_receipts(10).await.unwrap();
    assert_eq!(receipts.len(), 1);
    let b_id = cloister_router::nodes::node_id(&b.url());
    assert_eq!(receipts[0].node_id, b_id, "served by the surviving node");
    let metrics = stack
        .client()
        .get(format!("{}/metrics", stack.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("cloister_router_retries_total 1"),
        "{metrics}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_fails_reattestation_is_drained_and_in_flight_requests_finish() {
    let node = TestNode::start("tiny", PRICED).await;
    let stack = Stack::start(simulated_policy(), &[node.url()], |_| {}).await;
    stack.settled(1).await;
    let before = stack.balance().await;
    let routed = stack.state.nodes.all().remove(0);

    node.proxy.hold();
    let in_flight = {
        let (url, key) = (
            format!("{}/v1/chat/completions", stack.url),
            stack.key.clone(),
        );
        tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(url)
                .bearer_auth(key)
                .json(&chat("tiny", true, 16))
                .send()
                .await
                .unwrap();
            (response.status(), response.text().await.unwrap())
        })
    };
    while routed.outstanding() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Its re-attestation fails now (the node stops answering challenges).
    routed.set_status(cloister_router::nodes::NodeStatus::Refused {
        at: 0,
        reasons: vec!["measurement_not_allowed: re-attestation failed".into()],
        attested: None,
    });
    let refused = stack
        .post("/v1/chat/completions", &chat("tiny", false, 4))
        .await;
    assert_eq!(refused.status(), 503, "drained: no new requests");
    node.proxy.release();
    let (status, text) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        sse_data(&text).last().unwrap(),
        "[DONE]",
        "the request in flight finished"
    );
    assert_eq!(stack.receipts(1).await.len(), 1);
    assert!(
        stack.balance().await < before,
        "and was charged from its receipt"
    );

    // A real re-attestation against a node that no longer answers.
    node.proxy.kill();
    let outcome = stack.state.attestor.attest(&routed).await;
    assert!(matches!(
        outcome,
        cloister_router::nodes::attest::Outcome::Unreachable(_)
    ));
    assert_eq!(routed.status().name(), "unreachable");
    assert_eq!(
        stack
            .post("/v1/chat/completions", &chat("tiny", false, 4))
            .await
            .status(),
        503
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_at_https_addresses_are_attested_and_served() {
    let pki = tempfile::tempdir().unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/tests/test-pki.sh");
    assert!(
        std::process::Command::new(script)
            .arg(pki.path())
            .status()
            .unwrap()
            .success()
    );
    let node = TestNode::start("tiny", &[]).await;
    let front = common::proxy::tls_front(
        node.proxy.addr,
        &pki.path().join("cert.pem"),
        &pki.path().join("key.pem"),
    )
    .await;
    let url = format!("https://{front}");
    let ca = pki.path().join("ca.pem");
    let stack = Stack::start(simulated_policy(), std::slice::from_ref(&url), |c| {
        c.node_ca = Some(ca)
    })
    .await;
    stack.settled(1).await;
    assert_eq!(stack.state.nodes.all()[0].status().name(), "serving");
    assert_eq!(
        stack
            .post("/v1/chat/completions", &chat("tiny", false, 4))
            .await
            .status(),
        200
    );
    stack.stop().await;

    // Without the CA the certificate is not trusted: the node never serves.
    let untrusted = Stack::start(simulated_policy(), &[url], |_| {}).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        untrusted.state.nodes.all()[0].status().name(),
        "unreachable"
    );
    untrusted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_arrives_is_cut_off() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let stack = Stack::start(simulated_policy(), &[], |c| c.body_timeout_secs = 1).await;
    let addr = stack.url.strip_prefix("http://").unwrap().to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"model\":",
        stack.key
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), socket.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("did not arrive"), "{answer}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_silent_past_the_first_byte_deadline_is_retried_elsewhere() {
    let a = TestNode::start("tiny", &[]).await;
    let b = TestNode::start("tiny", &["--prompt-price", "1"]).await;
    let stack = Stack::start(simulated_policy(), &[a.url(), b.url()], |c| {
        c.first_byte_timeout_secs = 1
    })
    .await;
    stack.settled(2).await;
    a.proxy.hold();
    let started = std::time::Instant::now();
    let response = stack
        .post("/v1/chat/completions", &chat("tiny", true, 4))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        sse_data(&response.text().await.unwrap()).last().unwrap(),
        "[DONE]"
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "waited for the deadline first"
    );
    let receipts = stack.receipts(1).await;
    assert_eq!(
        receipts[0].node_id,
        cloister_router::nodes::node_id(&b.url())
    );
    let a_health = stack
        .state
        .nodes
        .get(&cloister_router::nodes::node_id(&a.url()))
        .unwrap()
        .health();
    assert_eq!(
        a_health.failures, 1,
        "the silent node is counted against its breaker"
    );
    a.proxy.release();
    stack.stop().await;
}

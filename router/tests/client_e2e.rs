//! End-to-end sealing with `cloister-client` and `cloister proxy`, through a
//! router double that forwards to a real router and can tamper on purpose.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;

use cloister_attestation::Policy;
use cloister_client::proxy::{ProxyState, ReceiptLog};
use cloister_client::{Client, ClientError};
use cloister_protocol::ResponseError;
use common::router_double::{SealedStack, Tamper};
use common::{chat, simulated_policy, sse_data};
use serde_json::{Value, json};

type Setup = SealedStack;

async fn setup() -> Setup {
    SealedStack::start(&["--prompt-price", "2", "--completion-price", "3"], |_| {}).await
}

fn client(setup: &Setup, policy: Policy) -> Client {
    setup.client(policy, true)
}

fn body(stream: bool, max_tokens: u64) -> Vec<u8> {
    serde_json::to_vec(&chat("tiny", stream, max_tokens)).unwrap()
}

fn is_tampered(e: &ClientError) -> Option<&ResponseError> {
    match e {
        ClientError::Tampered { source, .. } => Some(source),
        ClientError::Exhausted { last } => is_tampered(last),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_verifies_seals_opens_and_checks_the_receipt() {
    let setup = setup().await;
    let client = client(&setup, simulated_policy());

    let done = client
        .send("tiny", body(false, 8), None)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&done.plaintext).unwrap();
    assert!(answer["choices"][0]["message"]["content"].is_string());
    assert!(answer["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let receipt = &done.receipt.receipt.receipt;
    assert_eq!(receipt.payer, client.payer_address());
    assert_eq!(receipt.node_signer, done.node.identity.signer);
    assert_eq!((receipt.prompt_price, receipt.completion_price), (2, 3));
    let stored = setup.stack.receipts(1).await;
    assert_eq!(stored.len(), 1, "the router stored the receipt and charged");

    // One listing and one fresh bundle so far; with the verdict remembered,
    // the next request costs no extra round trip.
    assert_eq!(setup.double.count("/v1/attestation/"), 1);
    let lookups = setup.double.count("/v1/attestation");
    let mut answer = client.send("tiny", body(true, 8), None).await.unwrap();
    let mut streamed = Vec::new();
    while let Some(chunk) = answer.next_chunk().await.unwrap() {
        streamed.extend_from_slice(&chunk);
    }
    assert!(answer.receipt().is_some());
    let events = sse_data(&String::from_utf8(streamed).unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(setup.double.count("/v1/attestation"), lookups);
    assert_eq!(setup.double.count("/v1/sealed/"), 2);

    // Unknown model: named, with what trusted nodes serve.
    let e = client
        .send("gpt-17", body(false, 4), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ClientError::UnknownModel { available, .. } if available == &["tiny"]),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_that_tampers_is_caught_every_way() {
    let setup = setup().await;
    let client = client(&setup, simulated_policy());
    for tamper in [
        Tamper::AlterChunk,
        Tamper::DropLastChunk,
        Tamper::Reorder,
        Tamper::CutShort,
        Tamper::ReplayPrevious,
    ] {
        // An honest answer first (the one a replay repeats).
        setup.double.set(Tamper::Honest);
        client
            .send("tiny", body(true, 24), None)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        setup.double.set(tamper);
        let outcome = match client.send("tiny", body(true, 24), None).await {
            Ok(mut answer) => {
                // Text may come first; the answer must never end as complete.
                let mut outcome = Ok(());
                loop {
                    match answer.next_chunk().await {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) => {
                            outcome = Err(e);
                            break;
                        }
                    }
                }
                outcome
            }
            Err(e) => Err(e),
        };
        let e = outcome.expect_err(&format!("{tamper:?} went unnoticed"));
        assert!(is_tampered(&e).is_some(), "{tamper:?}: {e}");
    }
}

fn proxy_state(
    client: Client,
    pass_authorization: bool,
    log: Option<ReceiptLog>,
) -> Arc<ProxyState> {
    Arc::new(ProxyState {
        client: Arc::new(client),
        pass_authorization,
        receipts: log,
        max_request_bytes: 1 << 20,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_sends_nothing_when_the_only_node_fails_the_users_policy() {
    use tower::ServiceExt as _;
    let setup = setup().await;
    // The router accepts any simulated node; the user pins a measurement
    // this node does not have.
    let strict = Policy::from_toml(&format!(
        "platforms = []\n[simulated]\nallow = true\nmeasurement = [\"{}\"]\n",
        "ab".repeat(48)
    ))
    .unwrap();
    let routers_models = setup
        .stack
        .client()
        .get(format!("{}/v1/models", setup.stack.url))
        .bearer_auth(&setup.stack.key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        routers_models.contains("tiny"),
        "the router's own policy accepts it"
    );

    let app = cloister_client::proxy::app(proxy_state(client(&setup, strict), false, None));
    let request = axum::http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body(false, 4)))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 503);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let error: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(error["error"]["code"], "no_trusted_node");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("measurement_not_allowed"), "{message}");
    assert!(message.starts_with("Nothing was sent"), "{message}");
    let models = app
        .oneshot(
            axum::http::Request::get("/v1/models")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(models.status(), 503);
    assert_eq!(setup.double.count("/v1/sealed/"), 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_serves_openai_clients_and_logs_receipts() {
    let setup = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("receipts.jsonl");
    let log = ReceiptLog::open(&log_path).unwrap();
    // No --api-key: each request's own key is passed on.
    let state = proxy_state(setup.client(simulated_policy(), false), true, Some(log));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(cloister_client::proxy::serve(
        listener,
        state,
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    let key = &setup.stack.key;

    let missing = http.get(format!("{proxy}/v1/models")).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let models: Value = http
        .get(format!("{proxy}/v1/models"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "tiny");

    let whole: Value = http
        .post(format!("{proxy}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat("tiny", false, 8))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        whole["usage"]["completion_tokens"].as_u64().unwrap() > 0,
        "{whole}"
    );
    let streamed = http
        .post(format!("{proxy}/v1/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "tiny", "prompt": "Once upon", "max_tokens": 8, "stream": true, "temperature": 0.0}))
        .send()
        .await
        .unwrap();
    let status = streamed.status();
    let text = streamed.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let events = sse_data(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let bad = http
        .post(format!("{proxy}/v1/completions"))
        .bearer_auth(key)
        .json(&chat("tiny", false, 8))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400, "chat body on the completions endpoint");

    // A router that drops the last chunk: the client gets an error event,
    // never `[DONE]`.
    setup.double.set(Tamper::DropLastChunk);
    let cut = http
        .post(format!("{proxy}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat("tiny", true, 24))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_data(&cut);
    assert!(!events.iter().any(|e| e == "[DONE]"), "{cut}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_error", "{cut}");

    let lines: Vec<Value> = std::fs::read_to_string(&log_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "one line per verified answer");
    let payer = format!("{:#x}", setup.payer.address());
    for line in &lines {
        assert_eq!(
            line["receipt"]["receipt"]["payer"]
                .as_str()
                .unwrap()
                .to_lowercase(),
            payer
        );
        assert!(line["node"].as_str().is_some_and(|n| !n.is_empty()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_fails_before_the_first_chunk_is_left_for_another() {
    let first = common::TestNode::start("tiny", &[]).await;
    let second = common::TestNode::start("tiny", &[]).await;
    let stack =
        common::Stack::start(simulated_policy(), &[first.url(), second.url()], |_| {}).await;
    stack.settled(2).await;
    let payer = cloister_protocol::PayerKey::generate();
    stack
        .state
        .ledger
        .register_payer("alice", payer.address())
        .await
        .unwrap();
    let mut config =
        cloister_client::ClientConfig::new(stack.url.clone(), simulated_policy(), payer);
    config.api_key = Some(stack.key.clone());
    let client = Client::new(config).unwrap();
    assert_eq!(client.survey(None).await.unwrap().trusted.len(), 2);

    // One node's connection is cut: every request still gets a verified
    // answer, from the other node, re-sealed to its key.
    first.proxy.kill();
    // The order rotates per request: the cut node comes first in one of
    // any two consecutive requests.
    let survey = client.survey(None).await.unwrap();
    let first_id = cloister_router::nodes::node_id(&first.url());
    assert!(survey.trusted.iter().any(|n| n.id == first_id));
    let second_id = cloister_router::nodes::node_id(&second.url());
    for _ in 0..4 {
        let done = client
            .send("tiny", body(false, 4), None)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(done.node.id, second_id);
    }
    assert_eq!(stack.receipts(4).await.len(), 4);
    // The cut node was tried (and failed before answering) at least once.
    let metrics = reqwest::get(format!("{}/metrics", stack.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("requests_total{route=\"sealed\",status=\"502\"}"),
        "{metrics}"
    );
}

//! The sealed API (clients seal themselves; the router relays ciphertext),
//! the attestation log, joining, receipts delivered twice or altered, and
//! the operations endpoints.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use cloister_attestation::Timestamp;
use cloister_attestation::bundle::{self, BundleOptions, EvidenceBundle};
use cloister_protocol::{PayerKey, ReceiptDomain, ResponseReader, SignedReceipt, seal_request};
use cloister_router::ledger::{Recorded, verify_log_chain};
use cloister_router::receipts::{self, Expectation, address_hex};
use common::{Stack, TestNode, chat, simulated_policy};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_seals_itself_and_the_router_only_relays() {
    let node = TestNode::start("tiny", &["--prompt-price", "1", "--completion-price", "1"]).await;
    let stack = Stack::start(simulated_policy(), &[node.url()], |_| {}).await;
    stack.settled(1).await;
    let client = stack.client();
    let node_id = cloister_router::nodes::node_id(&node.url());

    // A fresh bundle for the client's own nonce, verified by the client.
    let nonce = [0x42u8; 32];
    let raw = client
        .get(format!(
            "{}/v1/attestation/{node_id}?nonce={}",
            stack.url,
            hex::encode(nonce)
        ))
        .bearer_auth(&stack.key)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let bundle = EvidenceBundle::from_json(&raw).unwrap();
    let options = BundleOptions {
        expected_nonce: Some(nonce),
        ..BundleOptions::default()
    };
    let verdict =
        bundle::appraise(&bundle, &simulated_policy(), Timestamp::now(), &options).unwrap();
    assert!(verdict.accepted, "{:?}", verdict.reasons);
    let identity = bundle.typed_identity().unwrap();
    let signer: cloister_protocol::Address = identity.signer.parse().unwrap();
    let key_config = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        &identity.hpke_key_config,
    )
    .unwrap();

    // The client's own payer, registered to the account.
    let payer = PayerKey::generate();
    let domain = ReceiptDomain::DEVELOPMENT;
    let body = serde_json::to_vec(&chat("tiny", false, 4)).unwrap();
    let now = Timestamp::now().unix();
    let envelope = payer.envelope(signer, &domain, now, body.clone()).unwrap();
    let (sealed, opener) = seal_request(&key_config, &envelope).unwrap();
    let url = format!("{}/v1/sealed/{node_id}", stack.url);
    let unregistered = client
        .post(&url)
        .bearer_auth(&stack.key)
        .header("x-cloister-payer", address_hex(payer.address()))
        .body(sealed.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        unregistered.status(),
        400,
        "a payer not registered to the account"
    );
    stack
        .state
        .ledger
        .register_payer("alice", payer.address())
        .await
        .unwrap();
    let before = stack.balance().await;
    let response = client
        .post(&url)
        .bearer_auth(&stack.key)
        .header("x-cloister-payer", address_hex(payer.address()))
        .body(sealed)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let frames = response.bytes().await.unwrap();
    let done = ResponseReader::new(opener, signer, domain)
        .read_all(&frames)
        .unwrap();
    let answer: Value = serde_json::from_slice(&done.plaintext).unwrap();
    assert_eq!(answer["object"], "chat.completion");
    let r = &done.receipt.receipt.receipt;
    assert_eq!(r.payer, payer.address());
    // The relay task records the receipt right after the last frame.
    for _ in 0..50 {
        if stack.balance().await != before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let charge = i64::try_from(r.charge()).unwrap();
    assert_eq!(before - stack.balance().await, charge);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_twice_are_charged_once_and_altered_ones_never() {
    let node = TestNode::start("tiny", &["--prompt-price", "5", "--completion-price", "7"]).await;
    let stack = Stack::start(simulated_policy(), &[node.url()], |_| {}).await;
    stack.settled(1).await;
    assert_eq!(
        stack
            .post("/v1/chat/completions", &chat("tiny", false, 4))
            .await
            .status(),
        200
    );
    let stored = stack
        .state
        .ledger
        .recent_receipts(1)
        .await
        .unwrap()
        .remove(0);
    let receipt: SignedReceipt = serde_json::from_str(&stored.receipt).unwrap();
    let node_ref = stack.state.nodes.all().remove(0);
    let attested = node_ref.serving().unwrap();
    let expectation = Expectation {
        attested: &attested,
        node_id: &node_ref.id,
        account: "alice",
        expected: cloister_protocol::ExpectedReceipt {
            request_hash: receipt.receipt.request_hash,
            response_hash: receipt.receipt.response_hash,
            payer: receipt.receipt.payer,
        },
    };
    let balance = stack.balance().await;
    let again = receipts::accept(&stack.state, &receipt, &expectation)
        .await
        .unwrap();
    assert_eq!(again, Recorded::Duplicate);
    assert_eq!(
        stack.balance().await,
        balance,
        "delivered twice, charged once"
    );

    let mut altered = receipt.clone();
    altered.receipt.completion_tokens += 100;
    altered.receipt.request_id = [9u8; 32].into();
    assert!(
        receipts::accept(&stack.state, &altered, &expectation)
            .await
            .is_err()
    );
    let mut other_payer = receipt.clone();
    other_payer.receipt.request_id = [8u8; 32].into();
    let wrong_expectation = Expectation {
        expected: cloister_protocol::ExpectedReceipt {
            payer: PayerKey::generate().address(),
            ..expectation.expected
        },
        ..expectation.clone()
    };
    assert!(
        receipts::accept(&stack.state, &receipt, &wrong_expectation)
            .await
            .is_err(),
        "payer must match"
    );
    assert_eq!(
        stack.balance().await,
        balance,
        "nothing charged for refused receipts"
    );
    assert_eq!(
        stack.state.ledger.recent_receipts(10).await.unwrap().len(),
        1
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_the_log_and_operations() {
    let node = TestNode::start("tiny", &[]).await;
    let stack = Stack::start(simulated_policy(), &[], |_| {}).await;
    let client = stack.client();
    let join = format!("{}/v1/nodes/join", stack.url);
    let refused = client
        .post(&join)
        .bearer_auth("not-the-token-0123456789")
        .json(&serde_json::json!({"url": node.url()}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let bad = client
        .post(&join)
        .bearer_auth("join-token-for-tests-0123456789")
        .json(&serde_json::json!({"url": "file:///etc/passwd"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let joined: Value = client
        .post(&join)
        .bearer_auth("join-token-for-tests-0123456789")
        .json(&serde_json::json!({"url": node.url()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(joined["new"], true);
    stack.settled(1).await;
    assert_eq!(
        stack
            .post("/v1/chat/completions", &chat("tiny", false, 4))
            .await
            .status(),
        200
    );

    // Re-attest twice more: three log entries, one unbroken chain.
    let n = stack.state.nodes.all().remove(0);
    stack.state.attestor.attest(&n).await;
    stack.state.attestor.attest(&n).await;
    let log: Value = client
        .get(format!("{}/v1/attestation/log?after=0&limit=2", stack.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log["data"].as_array().unwrap().len(), 2);
    let next = log["next_after"].as_i64().unwrap();
    let rest: Value = client
        .get(format!("{}/v1/attestation/log?after={next}", stack.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut entries: Vec<cloister_router::ledger::LogEntry> =
        serde_json::from_value(log["data"].clone()).unwrap();
    entries.extend(serde_json::from_value::<Vec<_>>(rest["data"].clone()).unwrap());
    assert_eq!(entries.len(), 3);
    verify_log_chain(&entries, cloister_router::ledger::GENESIS_PREV_HASH).unwrap();
    assert!(entries.iter().all(|e| e.accepted));

    let health: Value = client
        .get(format!("{}/healthz", stack.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["serving"], 1);
    let metrics = client
        .get(format!("{}/metrics", stack.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "cloister_router_requests_total{route=\"chat_completions\",status=\"200\"} 1",
        "cloister_router_attestations_total{result=\"pass\",reason=\"\"} 3",
        "cloister_router_nodes{state=\"serving\"} 1",
        "cloister_router_time_to_first_token_seconds_bucket",
        "cloister_router_tokens_total{kind=\"completion\",model=\"tiny\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
    let page = client
        .get(&stack.url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&n.id) && page.contains("serving"));
    stack.stop().await;
}

//! The auditors' and account holders' endpoints: `GET /v1/audit/receipts`
//! (public, nothing about payers or usage), `GET /v1/receipts` and
//! `GET /v1/account` (an account's own key only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Stack, TestNode, chat, simulated_policy};
use serde_json::Value;

const PRICED: &[&str] = &["--prompt-price", "2", "--completion-price", "3"];

async fn get(stack: &Stack, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = stack.client().get(format!("{}{path}", stack.url));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_and_accounts_are_shown_to_their_owner_and_audit_receipts_to_all() {
    let node = TestNode::start("tiny", PRICED).await;
    let stack = Stack::start(simulated_policy(), &[node.url()], |_| {}).await;
    stack.settled(1).await;
    for _ in 0..3 {
        let response = stack
            .post("/v1/chat/completions", &chat("tiny", false, 4))
            .await;
        assert!(response.status().is_success());
    }
    let stored = stack.receipts(3).await;
    assert_eq!(stored.len(), 3);
    let bob = stack
        .state
        .ledger
        .create_key("bob", 1000)
        .await
        .unwrap()
        .secret;

    // Keys are required.
    for path in ["/v1/receipts", "/v1/account"] {
        let (status, body) = get(&stack, path, None).await;
        assert_eq!(status, 401, "{path}: {body}");
        let (status, _) = get(&stack, path, Some("sk-cloister-not-a-key")).await;
        assert_eq!(status, 401, "{path}");
    }

    // Alice sees her receipts in full, paged in order.
    let (status, page1) = get(&stack, "/v1/receipts?limit=2", Some(&stack.key)).await;
    assert_eq!(status, 200, "{page1}");
    let first = page1["data"].as_array().unwrap();
    assert_eq!(first.len(), 2);
    let after = page1["next_after"].as_str().unwrap();
    let (_, page2) = get(
        &stack,
        &format!("/v1/receipts?limit=2&after={after}"),
        Some(&stack.key),
    )
    .await;
    let second = page2["data"].as_array().unwrap();
    assert_eq!(second.len(), 1);
    let mut ids: Vec<&str> = first
        .iter()
        .chain(second)
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    let item = &first[0];
    let receipt = &item["receipt"]["receipt"];
    assert!(item["receipt"]["signature"].is_string());
    assert_eq!(
        receipt["promptTokens"].as_i64(),
        item["recorded"]["prompt_tokens"].as_i64()
    );
    assert!(item["charged"].as_i64().unwrap() > 0);
    assert_eq!(item["charged"], item["recorded"]["charge"]);

    let (status, account) = get(&stack, "/v1/account", Some(&stack.key)).await;
    assert_eq!(status, 200);
    assert_eq!(account["name"], "alice");
    assert_eq!(account["requests"], 3);
    let total: i64 = stored.iter().map(|r| r.charge).sum();
    assert_eq!(account["charged"], total);
    assert_eq!(
        account["payers"][0].as_str().unwrap(),
        format!("{:#x}", stored[0].payer)
    );

    // Bob sees none of Alice's, not even by naming one.
    let (status, theirs) = get(&stack, "/v1/receipts", Some(&bob)).await;
    assert_eq!(status, 200);
    assert_eq!(theirs["data"].as_array().unwrap().len(), 0);
    let (status, _) = get(&stack, &format!("/v1/receipts?after={after}"), Some(&bob)).await;
    assert_eq!(status, 400, "a cursor from another account names nothing");
    let (_, bobs) = get(&stack, "/v1/account", Some(&bob)).await;
    assert_eq!(bobs["name"], "bob");
    assert_eq!(bobs["charged"], 0);

    // The public list: every receipt, no payer, account or usage.
    let (status, public) = get(&stack, "/v1/audit/receipts", None).await;
    assert_eq!(status, 200);
    let data = public["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for r in data {
        let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            ["id", "issued_at", "node_id", "recorded_at", "signer"],
            "{r}"
        );
        assert!(r["issued_at"].as_u64().unwrap() > 0);
    }
    let text = public.to_string();
    assert!(!text.contains(&format!("{:#x}", stored[0].payer)));
    assert!(!text.contains("tokens") && !text.contains("alice"));
    let (status, _) = get(&stack, "/v1/audit/receipts?after=nonsense", None).await;
    assert_eq!(status, 400);
    stack.stop().await;
}

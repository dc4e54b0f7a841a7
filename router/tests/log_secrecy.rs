//! Prompt and completion text never reach the router's logs (at TRACE, as
//! JSON), its database file or its metrics, on the plain endpoint, where the
//! router does see the text in clear.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Captured, Stack, TestNode, simulated_policy};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_prompt_or_completion_text_in_logs_database_or_metrics() {
    let captured = Captured::install();

    let node = TestNode::start("tiny", &[]).await;
    let data = tempfile::tempdir().unwrap();
    let db_path = data.path().join("secrecy.db");
    let stack = Stack::start(simulated_policy(), &[node.url()], |c| {
        c.database_url = Some(format!("sqlite://{}", db_path.display()));
    })
    .await;
    stack.settled(1).await;
    let marker = "PROMPT-MARKER-7f3a9c1e-do-not-log";
    let mut completions = Vec::new();
    for stream in [false, true] {
        let body = json!({
            "model": "tiny",
            "messages": [{"role": "user", "content": format!("{marker} tell me everything")}],
            "stream": stream,
            "max_tokens": 48,
        });
        let response = stack.post("/v1/chat/completions", &body).await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        if !stream {
            let answer: Value = serde_json::from_str(&text).unwrap();
            completions.push(
                answer["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
    }
    let bad = json!({"model": "tiny", "messages": [{"role": "user", "content": marker}], "stream": "yes"});
    assert_eq!(stack.post("/v1/chat/completions", &bad).await.status(), 400);
    let metrics = stack
        .client()
        .get(format!("{}/metrics", stack.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    stack.stop().await;

    let logs = String::from_utf8_lossy(&captured.bytes()).into_owned();
    assert!(
        logs.contains("receipt stored and charged"),
        "the capture works: {logs}"
    );
    let database = std::fs::read(&db_path).unwrap();
    let wal = std::fs::read(db_path.with_extension("db-wal")).unwrap_or_default();
    let mut secrets = vec![marker.to_owned()];
    secrets.extend(
        completions
            .into_iter()
            .filter(|c| c.len() >= 12)
            .map(|c| c[..12.min(c.len())].to_owned()),
    );
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "{secret:?} in the logs");
        assert!(
            !metrics.contains(secret.as_str()),
            "{secret:?} in the metrics"
        );
        for file in [&database, &wal] {
            assert!(
                !file.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret:?} in the database"
            );
        }
    }
}

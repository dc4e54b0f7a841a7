//! Prompt secrecy end to end: a unique marker sent through `cloister proxy`
//! → router → enclave appears nowhere in the router's logs (at TRACE), its
//! database file, its metrics, or any HTTP body the router receives (a
//! recording router double sits in front of it and keeps every body).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;

use cloister_client::proxy::ProxyState;
use common::router_double::SealedStack;
use common::{Captured, simulated_policy};
use serde_json::{Value, json};

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marker_sent_through_the_proxy_never_reaches_the_router_in_clear() {
    let captured = Captured::install();

    let data = tempfile::tempdir().unwrap();
    let db_path = data.path().join("secrecy.db");
    let sealed = SealedStack::start(&[], |c| {
        c.database_url = Some(format!("sqlite://{}", db_path.display()));
    })
    .await;
    let state = Arc::new(ProxyState {
        client: Arc::new(sealed.client(simulated_policy(), true)),
        pass_authorization: false,
        receipts: None,
        max_request_bytes: 1 << 20,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(cloister_client::proxy::serve(
        listener,
        state,
        std::future::pending(),
    ));

    let marker = "PROXY-MARKER-2b8e41d0-never-in-clear";
    let http = reqwest::Client::new();
    let mut completions = Vec::new();
    for stream in [false, true] {
        let body = json!({
            "model": "tiny",
            "messages": [{"role": "user", "content": format!("{marker} tell me everything")}],
            "stream": stream,
            "max_tokens": 48,
            "temperature": 0.0,
        });
        let response = http
            .post(format!("{proxy}/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
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
    assert_eq!(
        sealed.stack.receipts(2).await.len(),
        2,
        "both answers were charged"
    );
    let metrics = http
        .get(format!("{}/metrics", sealed.stack.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let bodies = sealed.double.bodies();
    sealed.stack.stop().await;

    let logs = captured.bytes();
    assert!(
        contains(&logs, "receipt stored and charged"),
        "the capture works"
    );
    assert!(
        bodies.iter().any(|b| b.len() > 256),
        "the double saw the sealed bodies"
    );
    let database = std::fs::read(&db_path).unwrap();
    let wal = std::fs::read(db_path.with_extension("db-wal")).unwrap_or_default();
    let mut secrets = vec![marker.to_owned()];
    secrets.extend(
        completions
            .into_iter()
            .filter(|c| c.len() >= 12)
            .map(|c| c[..12].to_owned()),
    );
    assert!(secrets.len() >= 2, "a completion to look for");
    for secret in &secrets {
        assert!(!contains(&logs, secret), "{secret:?} in the logs");
        assert!(
            !metrics.contains(secret.as_str()),
            "{secret:?} in the metrics"
        );
        for file in [&database, &wal] {
            assert!(!contains(file, secret), "{secret:?} in the database");
        }
        for body in &bodies {
            assert!(
                !contains(body, secret),
                "{secret:?} in a body the router received"
            );
        }
    }
}

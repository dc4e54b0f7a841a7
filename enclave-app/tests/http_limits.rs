//! Connection-level limits under attack, with raw sockets: slowloris, idle
//! keep-alive connections, a flood of connections, oversized heads; the
//! server keeps answering a normal client throughout. A trivial router
//! stands in for the node (the node's own routes are attacked in
//! `hostile.rs`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use cloister_enclave::http_server::{ConnectionLimits, serve};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// `/ok` answers at once; `/slow` streams ten pieces, 300 ms apart.
fn app() -> Router {
    Router::new().route("/ok", get(|| async { "ok" })).route(
        "/slow",
        get(|| async {
            let pieces = futures::stream::unfold(0u32, |i| async move {
                if i == 10 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                Some((
                    Ok::<_, std::convert::Infallible>(format!("piece {i}\n")),
                    i + 1,
                ))
            });
            Body::from_stream(pieces)
        }),
    )
}

struct Server {
    addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(limits: ConnectionLimits) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, app(), limits, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        stop: Some(stop),
        task,
    }
}

fn limits(header_timeout_ms: u64, max_connections: usize) -> ConnectionLimits {
    ConnectionLimits {
        header_timeout: Duration::from_millis(header_timeout_ms),
        max_connections,
        ..ConnectionLimits::default()
    }
}

/// A normal client's request; fails the test if it takes over 2 s.
async fn normal_get(addr: &str) {
    let response = tokio::time::timeout(
        Duration::from_secs(2),
        reqwest::get(format!("http://{addr}/ok")),
    )
    .await
    .expect("a normal client was not served in time")
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");
}

/// Waits until the server closes `socket` (read returns 0 or an error);
/// returns how long that took, or `None` if it stayed open for `within`.
async fn closed_within(socket: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let remaining = within.checked_sub(started.elapsed())?;
        match tokio::time::timeout(remaining, socket.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_dropped_and_others_are_served() {
    let server = start(limits(1000, 512)).await;
    let mut attackers = Vec::new();
    for _ in 0..20 {
        let mut socket = TcpStream::connect(&server.addr).await.unwrap();
        socket
            .write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        attackers.push(socket);
    }
    // One header byte every 200 ms, and a normal client every 100 ms.
    let trickle = tokio::spawn(async move {
        let mut closed = Vec::new();
        for _ in 0..15 {
            for socket in &mut attackers {
                let _ = socket.write_all(b"X").await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for socket in &mut attackers {
            closed.push(
                closed_within(socket, Duration::from_millis(100))
                    .await
                    .is_some(),
            );
        }
        closed
    });
    for _ in 0..20 {
        normal_get(&server.addr).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let closed = trickle.await.unwrap();
    assert!(
        closed.iter().all(|c| *c),
        "slow heads outlived the 1 s header timeout by 2 s: {closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_close_but_long_responses_do_not() {
    let server = start(limits(800, 512)).await;
    let mut idle = TcpStream::connect(&server.addr).await.unwrap();
    idle.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 512];
    let n = idle.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    let closed = closed_within(&mut idle, Duration::from_secs(3)).await;
    assert!(
        closed.is_some(),
        "an idle keep-alive connection stayed open"
    );

    // A response streaming for 3 s, longer than the header timeout, runs to
    // its end.
    let started = Instant::now();
    let body = reqwest::get(format!("http://{}/slow", server.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("piece 9"), "{body}");
    assert!(started.elapsed() > Duration::from_millis(2500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_silent_connections_do_not_shut_out_a_normal_client() {
    let server = start(limits(10_000, 512)).await;
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(TcpStream::connect(&server.addr).await.unwrap());
    }
    for _ in 0..5 {
        normal_get(&server.addr).await;
    }
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_cap_connections_are_closed_at_once_until_slots_free() {
    let server = start(limits(1000, 8)).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(&server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut ninth = TcpStream::connect(&server.addr).await.unwrap();
    let closed = closed_within(&mut ninth, Duration::from_millis(500)).await;
    assert!(
        closed.is_some(),
        "the ninth connection was not closed at once"
    );
    // The eight silent ones hit the header timeout and free their slots.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    normal_get(&server.addr).await;
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_head_is_refused_and_serving_goes_on() {
    let server = start(limits(5000, 512)).await;
    let mut socket = TcpStream::connect(&server.addr).await.unwrap();
    let huge = format!(
        "GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = socket.write_all(huge.as_bytes()).await;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), socket.read_to_end(&mut reply)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 431"),
        "{reply}"
    );
    normal_get(&server.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight_and_closes_idle_connections() {
    let mut server = start(limits(10_000, 512)).await;
    let addr = server.addr.clone();
    let in_flight = tokio::spawn(async move {
        reqwest::get(format!("http://{addr}/slow"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let mut idle = TcpStream::connect(&server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.stop.take().unwrap().send(()).unwrap();
    let body = in_flight.await.unwrap();
    assert!(body.contains("piece 9"), "{body}");
    assert!(
        closed_within(&mut idle, Duration::from_secs(3))
            .await
            .is_some()
    );
    tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .expect("serve() did not return after shutdown")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(&server.addr).await.is_err(),
        "still accepting"
    );
}

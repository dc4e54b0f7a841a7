//! Serving HTTP/1.1 with connection-level limits, so a hostile client or
//! router cannot hold the node with slow headers (slowloris), idle
//! keep-alive connections or a flood of sockets.
//!
//! - Request heads must arrive within [`ConnectionLimits::header_timeout`].
//!   hyper 1.x starts that timer whenever the connection waits for a head:
//!   on a new connection *and* on a keep-alive connection between requests,
//!   so the same limit closes idle keep-alive connections. A response that
//!   streams for minutes is not idle (no head is awaited meanwhile).
//! - Heads are at most [`ConnectionLimits::max_header_bytes`] (hyper answers
//!   431 beyond, or closes).
//! - At most [`ConnectionLimits::max_connections`] are open at once; beyond
//!   that new connections are accepted and closed at once, so a flood never
//!   exhausts file descriptors, and it is logged (at most every few seconds).
//! - Accept errors (EMFILE, ...) are logged and retried after a pause; they
//!   never stop the server.
//! - On shutdown: stop accepting, let requests in flight finish, close idle
//!   connections.
//!
//! Body limits and deadlines are per route (`/v1/sealed` reads its own body);
//! see `sealed/mod.rs`. HTTP/1.1 only: routers speak it to nodes.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connection-level limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A request head must arrive within this, on a new connection and
    /// between keep-alive requests (so it is also the idle timeout).
    pub header_timeout: Duration,
    /// Connections open at once; more are closed on accept.
    pub max_connections: usize,
    /// Largest request head in bytes.
    pub max_header_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            max_connections: 512,
            max_header_bytes: 16 * 1024,
        }
    }
}

/// Logs refused connections at most once per interval.
#[derive(Debug)]
struct RefusalLog {
    refused: AtomicU64,
    last: std::sync::Mutex<Option<Instant>>,
}

impl RefusalLog {
    fn refused(&self, max: usize) {
        let total = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = match self.last.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            *last = Some(Instant::now());
            tracing::warn!(
                max_connections = max,
                refused_total = total,
                "connection limit reached: closing new connections"
            );
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes; then stops
/// accepting, lets requests in flight finish and closes idle connections.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let refusals = RefusalLog {
        refused: AtomicU64::new(0),
        last: std::sync::Mutex::new(None),
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Out of descriptors or memory, or a connection reset while
                // queued: pause instead of spinning, and go on.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refusals.refused(limits.max_connections);
            drop(stream);
            continue;
        };
        // Tokens are streamed in small writes: do not let Nagle hold them.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

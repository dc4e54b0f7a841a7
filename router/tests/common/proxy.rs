//! A TCP forwarder in front of a node that a test can cut: the node "dies"
//! as the router sees it (connections closed, new ones refused), at once or
//! after a number of response bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

/// The forwarder.
pub(crate) struct CutProxy {
    pub(crate) addr: SocketAddr,
    dead: Arc<AtomicBool>,
    cut_after: Arc<AtomicU64>,
    carried: Arc<AtomicU64>,
    killed: Arc<Notify>,
    held: watch::Sender<bool>,
    /// Connections forwarded so far.
    pub(crate) connections: Arc<AtomicU64>,
}

impl CutProxy {
    /// Forwards 127.0.0.1:random to `upstream`.
    pub(crate) async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let dead = Arc::new(AtomicBool::new(false));
        let cut_after = Arc::new(AtomicU64::new(u64::MAX));
        let carried = Arc::new(AtomicU64::new(0));
        let killed = Arc::new(Notify::new());
        let connections = Arc::new(AtomicU64::new(0));
        let (held, hold_rx) = watch::channel(false);
        let (d, c, k, n, t) = (
            dead.clone(),
            cut_after.clone(),
            killed.clone(),
            connections.clone(),
            carried.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                n.fetch_add(1, Ordering::SeqCst);
                let (d, c, k, t, h) = (d.clone(), c.clone(), k.clone(), t.clone(), hold_rx.clone());
                tokio::spawn(async move {
                    let Ok(node) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    forward(
                        client,
                        node,
                        Cut {
                            dead: d,
                            cut_at: c,
                            carried: t,
                            killed: k,
                            held: h,
                        },
                    )
                    .await;
                });
            }
        });
        Self {
            addr,
            dead,
            cut_after,
            carried,
            killed,
            held,
            connections,
        }
    }

    /// The URL the router should use.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Kills every connection now and refuses new ones.
    pub(crate) fn kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
        self.killed.notify_waiters();
    }

    /// Holds every response byte from now on until [`release`](Self::release).
    pub(crate) fn hold(&self) {
        let _ = self.held.send(true);
    }

    /// Lets held responses flow again.
    pub(crate) fn release(&self) {
        let _ = self.held.send(false);
    }

    /// Kills the node once it has sent `bytes` more of responses (on any
    /// connection) from now on.
    pub(crate) fn kill_after_response_bytes(&self, bytes: u64) {
        let now = self.carried.load(Ordering::SeqCst);
        self.cut_after.store(now + bytes, Ordering::SeqCst);
    }
}

struct Cut {
    dead: Arc<AtomicBool>,
    cut_at: Arc<AtomicU64>,
    carried: Arc<AtomicU64>,
    killed: Arc<Notify>,
    held: watch::Receiver<bool>,
}

async fn forward(client: TcpStream, node: TcpStream, cut: Cut) {
    let Cut {
        dead,
        cut_at,
        carried,
        killed,
        mut held,
    } = cut;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut node_read, mut node_write) = node.into_split();
    let upstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if node_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let downstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match node_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if held.wait_for(|h| !*h).await.is_err() {
                return;
            }
            let total = carried.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
            let limit = cut_at.load(Ordering::SeqCst);
            if total > limit {
                // Pass on part of the piece, then die.
                let keep = n.saturating_sub(usize::try_from(total - limit).unwrap_or(usize::MAX));
                let _ = client_write.write_all(&buf[..keep]).await;
                dead.store(true, Ordering::SeqCst);
                killed.notify_waiters();
                return;
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
        () = killed.notified() => {}
    }
}

/// Terminates TLS (a test PKI's certificate) in front of `upstream`, so
/// the router reaches a node at an `https://` address.
pub(crate) async fn tls_front(
    upstream: SocketAddr,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> SocketAddr {
    let acceptor = cloister_router::server::tls_acceptor(cert, key).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(client).await else {
                    return;
                };
                let Ok(mut node) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut node).await;
            });
        }
    });
    addr
}

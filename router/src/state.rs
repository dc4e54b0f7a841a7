//! What every handler shares.

use std::sync::Arc;
use std::time::Instant;

use cloister_attestation::Timestamp;
use cloister_protocol::ReceiptDomain;
use tokio::sync::watch;

use crate::config::RouterConfig;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::nodes::NodeRegistry;
use crate::nodes::attest::Attestor;
use crate::ratelimit::RateLimiter;

/// The router's shared state.
#[derive(Debug)]
pub struct RouterState {
    /// Effective configuration.
    pub config: RouterConfig,
    /// The ledger.
    pub ledger: Ledger,
    /// Known nodes.
    pub nodes: NodeRegistry,
    /// Challenges nodes.
    pub attestor: Arc<Attestor>,
    /// HTTP client towards nodes.
    pub http: reqwest::Client,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Per-key limits.
    pub limiter: RateLimiter,
    /// Receipts' EIP-712 domain.
    pub domain: ReceiptDomain,
    /// Set to true to stop the attestation loops.
    pub shutdown: watch::Sender<bool>,
    /// When the router started.
    pub started_at: Instant,
    /// Receipts being verified and recorded after their answer ended;
    /// shutdown waits for them so that no served request goes unbilled.
    pub recording: Arc<InFlight>,
}

/// Counts pieces of work that shutdown must wait for.
#[derive(Debug, Default)]
pub struct InFlight {
    count: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

impl InFlight {
    /// Counts one piece of work until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    /// Work in progress.
    pub fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until nothing is in progress, or `limit` passes.
    pub async fn wait_idle(&self, limit: std::time::Duration) {
        let wait = async {
            loop {
                let notified = self.idle.notified();
                if self.count() == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }
}

/// See [`InFlight::begin`].
#[derive(Debug)]
pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self
            .0
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.0.idle.notify_waiters();
        }
    }
}

impl RouterState {
    /// Adds a node (persisted) and starts its attestation loop; returns its
    /// id and whether it was new.
    pub async fn add_node(
        self: &Arc<Self>,
        url: String,
        source: crate::nodes::NodeSource,
    ) -> Result<(String, bool), AddNodeError> {
        let (node, new) = self.nodes.add(url, source).ok_or(AddNodeError::Full)?;
        if new {
            self.ledger
                .upsert_node(&node.id, &node.url, source, now_unix())
                .await?;
            tracing::info!(node = %node.id, url = %node.url, source = source.as_str(), "node added: challenging it");
            crate::nodes::attest::spawn_loop(
                self.attestor.clone(),
                node.clone(),
                self.config.reattest_interval(),
                self.shutdown.subscribe(),
            );
        }
        Ok((node.id.clone(), new))
    }
}

/// Why a node could not be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddNodeError {
    /// The registry holds [`crate::nodes::MAX_NODES`] already.
    #[error("the router already attests {} nodes", crate::nodes::MAX_NODES)]
    Full,
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
}

/// Unix seconds now.
pub fn now_unix() -> i64 {
    i64::try_from(Timestamp::now().unix()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_waits_for_recordings() {
        let recording = Arc::new(InFlight::default());
        let guard = recording.begin();
        let waiter = {
            let recording = recording.clone();
            tokio::spawn(
                async move { recording.wait_idle(std::time::Duration::from_secs(5)).await },
            )
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(
            !waiter.is_finished(),
            "waits while a receipt is being recorded"
        );
        drop(guard);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("done once it is recorded")
            .expect("no panic");
        assert_eq!(recording.count(), 0);
    }
}

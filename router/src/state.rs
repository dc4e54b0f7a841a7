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

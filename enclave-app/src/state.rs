//! What the HTTP handlers share: the engine, the keys, evidence, admission,
//! the replay window and the serving limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cloister_protocol::{NodeKeys, ReceiptDomain};
use mistralrs_core::MistralRs;
use tokio::sync::Semaphore;

use crate::admission::Admission;
use crate::evidence::Evidence;
use crate::replay::{RatchetClock, ReplayGuard};

/// Per-request limits and response shaping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest (and default) max_tokens.
    pub max_tokens: u64,
    /// Largest sealed body in bytes.
    pub max_request_bytes: usize,
    /// The whole sealed body must arrive within this.
    pub body_timeout: Duration,
    /// A response frame waiting longer than this for the client to read
    /// cancels the generation (no receipt) and frees its slot.
    pub send_timeout: Duration,
    /// Sealed chunks' plaintext is padded to a multiple of this (0: off).
    pub pad_bucket: usize,
    /// Tokens arriving within this interval go out in one sealed chunk
    /// (zero: one chunk per stream event).
    pub coalesce: Duration,
    /// Evidence collections running at once on `/attestation`.
    pub max_quote_generations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_tokens: 1024,
            max_request_bytes: 1 << 20,
            body_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(5),
            pad_bucket: cloister_protocol::DEFAULT_PAD_BUCKET,
            coalesce: Duration::ZERO,
            max_quote_generations: 2,
        }
    }
}

/// Per-token prices signed into every receipt, in the settlement token's
/// smallest unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prices {
    /// Per prompt token.
    pub prompt: u64,
    /// Per completion token.
    pub completion: u64,
}

/// The parts of a node, for [`AppState::new`].
pub struct NodeParts {
    /// The inference engine.
    pub engine: Arc<MistralRs>,
    /// The model id clients name.
    pub model_id: String,
    /// HPKE and receipt-signing keys.
    pub keys: NodeKeys,
    /// Evidence for `/attestation`.
    pub evidence: Evidence,
    /// Receipts' EIP-712 domain.
    pub receipt_domain: ReceiptDomain,
    /// Receipts' prices.
    pub prices: Prices,
    /// Admission control.
    pub admission: Admission,
    /// The replay window.
    pub replay: ReplayGuard,
    /// Limits.
    pub limits: Limits,
}

impl std::fmt::Debug for NodeParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeParts")
            .field("model_id", &self.model_id)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Everything the handlers share.
pub struct AppState {
    /// The inference engine.
    pub engine: Arc<MistralRs>,
    /// The model id clients name.
    pub model_id: String,
    /// HPKE and receipt-signing keys.
    pub keys: NodeKeys,
    /// Evidence for `/attestation`.
    pub evidence: Evidence,
    /// Receipts' EIP-712 domain.
    pub receipt_domain: ReceiptDomain,
    /// Receipts' prices.
    pub prices: Prices,
    /// Admission control.
    pub admission: Admission,
    /// Sealed requests accepted within the window.
    pub replay: ReplayGuard,
    /// The node's clock for the replay window; never goes backwards.
    pub clock: RatchetClock,
    /// Limits.
    pub limits: Limits,
    /// Evidence collections allowed at once.
    pub quote_slots: Arc<Semaphore>,
    shutting_down: AtomicBool,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("model_id", &self.model_id)
            .field("signer", &self.keys.signer_address())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State for a node.
    pub fn new(parts: NodeParts) -> Self {
        Self {
            engine: parts.engine,
            model_id: parts.model_id,
            keys: parts.keys,
            evidence: parts.evidence,
            receipt_domain: parts.receipt_domain,
            prices: parts.prices,
            admission: parts.admission,
            replay: parts.replay,
            clock: RatchetClock::new(),
            quote_slots: Arc::new(Semaphore::new(parts.limits.max_quote_generations.max(1))),
            limits: parts.limits,
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Whether the node is draining.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Stops admitting new sealed requests.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }
}

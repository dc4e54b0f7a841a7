//! Verifying a node under the caller's own policy, and remembering verdicts
//! for a bounded time.
//!
//! [`appraise_fresh`] is pure: the bundle bytes the node produced for the
//! caller's nonce, the caller's policy, the time. The network side (asking
//! the router for a fresh bundle) is in [`crate::router_api`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloister_attestation::bundle::{self, EvidenceBundle};
use cloister_attestation::{Policy, Timestamp, Verdict};
use cloister_attestation_collect::collateral::OwnCollateral;
use cloister_protocol::ReceiptDomain;

use crate::error::NodeRefusal;
use crate::identity::NodeIdentity;

/// A node that passed the caller's policy for the caller's nonce.
#[derive(Debug, Clone)]
pub struct VerifiedNode {
    /// The node's id at the router.
    pub id: String,
    /// Its attested identity.
    pub identity: NodeIdentity,
    /// The verdict (platform, TCB status, measurements).
    pub verdict: Verdict,
    /// The nonce the bundle answered.
    pub nonce: [u8; 32],
}

impl VerifiedNode {
    /// One line for a person: node, model, platform, TCB, measurement.
    pub fn summary(&self) -> String {
        let measurement = self
            .verdict
            .measurements
            .iter()
            .next()
            .map(|(name, value)| format!(", {name} {}", short(value)))
            .unwrap_or_default();
        format!(
            "node {} serves {} on {} (TCB {}{}), receipts signed by {}: accepted by your policy",
            self.id,
            self.identity.model,
            self.verdict.platform,
            self.verdict.tcb_status.as_deref().unwrap_or("n/a"),
            measurement,
            self.identity.signer,
        )
    }
}

fn short(hex: &str) -> String {
    if hex.len() > 16 {
        format!("{}…", hex.get(..16).unwrap_or(hex))
    } else {
        hex.to_owned()
    }
}

/// Appraises `raw` (the bundle a node produced for `nonce`) under `policy`
/// at `now`, with `collateral` the caller fetched itself (or none: the
/// bundle's own); the node's identity when accepted, every reason when not.
pub fn appraise_fresh(
    node_id: &str,
    raw: &[u8],
    nonce: [u8; 32],
    policy: &Policy,
    domain: &ReceiptDomain,
    collateral: &OwnCollateral,
    now: Timestamp,
) -> Result<VerifiedNode, NodeRefusal> {
    let refusal = |model: Option<String>, reasons: Vec<String>| NodeRefusal {
        node: node_id.to_owned(),
        model,
        reasons,
    };
    let bundle = EvidenceBundle::from_json(raw)
        .map_err(|e| refusal(None, vec![format!("malformed_bundle: {e}")]))?;
    let claimed_model = bundle.typed_identity().ok().map(|i| i.model.id);
    let options = collateral.options(nonce);
    let verdict = bundle::appraise(&bundle, policy, now, &options).map_err(|e| {
        refusal(
            claimed_model.clone(),
            vec![format!("bundle_uncheckable: {e}")],
        )
    })?;
    if !verdict.accepted {
        let reasons = verdict
            .reasons
            .iter()
            .chain(verdict.gpus.iter().flat_map(|g| g.reasons.iter()))
            .map(|r| format!("{}: {}", r.code.as_str(), r.detail))
            .collect::<Vec<_>>();
        let reasons = if reasons.is_empty() {
            vec!["refused by the policy".to_owned()]
        } else {
            reasons
        };
        return Err(refusal(claimed_model, reasons));
    }
    let identity = NodeIdentity::from_bundle(&bundle, domain)
        .map_err(|e| refusal(claimed_model, vec![format!("identity_unusable: {e}")]))?;
    Ok(VerifiedNode {
        id: node_id.to_owned(),
        identity,
        verdict,
        nonce,
    })
}

/// A verdict remembered until it expires.
#[derive(Debug, Clone)]
pub(crate) enum Remembered {
    Trusted(Arc<VerifiedNode>),
    Refused(NodeRefusal),
}

/// Verdicts by node id, each for at most `ttl` (refusals for at most
/// `refusal_ttl`, so a node that is fixed is noticed sooner), at most
/// `capacity` of them.
#[derive(Debug)]
pub(crate) struct VerdictCache {
    ttl: Duration,
    refusal_ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, (Remembered, Instant)>>,
}

impl VerdictCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            refusal_ttl: ttl.min(Duration::from_secs(30)),
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Remembered, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn get(&self, node: &str, now: Instant) -> Option<Remembered> {
        let entries = self.lock();
        let (remembered, at) = entries.get(node)?;
        let ttl = match remembered {
            Remembered::Trusted(_) => self.ttl,
            Remembered::Refused(_) => self.refusal_ttl,
        };
        (now.saturating_duration_since(*at) < ttl).then(|| remembered.clone())
    }

    pub(crate) fn put(&self, node: &str, remembered: Remembered, now: Instant) {
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(node) {
            // Drop the oldest.
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(node.to_owned(), (remembered, now));
    }

    /// Forgets a node (its answer failed: verify it again before trusting).
    pub(crate) fn forget(&self, node: &str) {
        self.lock().remove(node);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn refused(node: &str) -> Remembered {
        Remembered::Refused(NodeRefusal {
            node: node.into(),
            model: None,
            reasons: vec!["x".into()],
        })
    }

    #[test]
    fn verdicts_expire_and_the_cache_stays_bounded() {
        let cache = VerdictCache::new(Duration::from_secs(300), 2);
        let t0 = Instant::now();
        cache.put("a", refused("a"), t0);
        assert!(cache.get("a", t0 + Duration::from_secs(29)).is_some());
        assert!(
            cache.get("a", t0 + Duration::from_secs(31)).is_none(),
            "refusals expire after 30 s"
        );
        cache.put("b", refused("b"), t0 + Duration::from_secs(1));
        cache.put("c", refused("c"), t0 + Duration::from_secs(2));
        assert!(cache.get("a", t0).is_none(), "the oldest was dropped");
        assert!(cache.get("c", t0 + Duration::from_secs(2)).is_some());
        cache.forget("c");
        assert!(cache.get("c", t0 + Duration::from_secs(2)).is_none());
    }
}

//! The node registry: every node the router knows, its attestation state,
//! its outstanding requests and its health.
//!
//! A node gets traffic only while its state is [`NodeStatus::Serving`],
//! which only the attestation loop ([`attest`]) sets, after the node's
//! bundle passed the router's policy. Any other state drains it: routing
//! stops choosing it, and requests in flight (which hold their own
//! [`Attested`]) finish.

pub mod attest;
pub mod health;
mod identity;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use cloister_protocol::Address;
use sha2::{Digest, Sha256};

pub use crate::ledger::NodeSource;
pub use health::{BreakerSettings, BreakerState, Health};
pub use identity::{Attested, IdentityError};

/// Where a node stands.
#[derive(Debug, Clone)]
pub enum NodeStatus {
    /// Known, not yet verified: no traffic.
    Pending,
    /// Its latest attestation passed: traffic flows.
    Serving(Arc<Attested>),
    /// Its latest attestation was refused: no traffic.
    Refused {
        /// Unix seconds.
        at: i64,
        /// Reason codes and details.
        reasons: Vec<String>,
        /// What the bundle said, when it parsed (for the status page).
        attested: Option<Arc<Attested>>,
    },
    /// It could not be reached for re-attestation: no traffic.
    Unreachable {
        /// Unix seconds.
        at: i64,
        /// What failed (no secrets).
        error: String,
    },
}

impl NodeStatus {
    /// Lowercase name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Serving(_) => "serving",
            Self::Refused { .. } => "refused",
            Self::Unreachable { .. } => "unreachable",
        }
    }
}

/// One node.
#[derive(Debug)]
pub struct Node {
    /// Stable id: derived from the URL.
    pub id: String,
    /// Base URL, no trailing slash.
    pub url: String,
    /// How it was added.
    pub source: NodeSource,
    status: RwLock<NodeStatus>,
    outstanding: AtomicU32,
    health: Mutex<Health>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Node {
    fn new(url: String, source: NodeSource, breaker: BreakerSettings) -> Self {
        Self {
            id: node_id(&url),
            url,
            source,
            status: RwLock::new(NodeStatus::Pending),
            outstanding: AtomicU32::new(0),
            health: Mutex::new(Health::new(breaker)),
        }
    }

    /// The current state.
    pub fn status(&self) -> NodeStatus {
        self.status
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sets the state (the attestation loop does this).
    pub fn set_status(&self, status: NodeStatus) {
        *self
            .status
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = status;
    }

    /// The attested identity while serving.
    pub fn serving(&self) -> Option<Arc<Attested>> {
        match &*self
            .status
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            NodeStatus::Serving(a) => Some(a.clone()),
            _ => None,
        }
    }

    /// Requests in flight to this node.
    pub fn outstanding(&self) -> u32 {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// A copy of the health record.
    pub fn health(&self) -> Health {
        lock(&self.health).clone()
    }

    /// Runs `f` on the health record.
    pub fn with_health<R>(&self, f: impl FnOnce(&mut Health) -> R) -> R {
        f(&mut lock(&self.health))
    }

    /// Counts a request as outstanding until the guard drops.
    pub fn begin_request(self: &Arc<Self>) -> OutstandingGuard {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        OutstandingGuard { node: self.clone() }
    }
}

/// Decrements the node's outstanding count on drop.
#[derive(Debug)]
pub struct OutstandingGuard {
    node: Arc<Node>,
}

impl Drop for OutstandingGuard {
    fn drop(&mut self) {
        self.node.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The id of the node at `url`: the first 16 hex digits of its SHA-256.
pub fn node_id(url: &str) -> String {
    let digest = Sha256::digest(url.as_bytes());
    hex::encode(digest.get(..8).unwrap_or_default())
}

/// Checks a node base URL: `http://` or `https://`, a host, no user info,
/// query or fragment, at most 2048 bytes. Returns the URL without a
/// trailing slash.
pub fn check_node_url(url: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("node address {url:?}: {why}"));
    if url.len() > 2048 {
        return bad("longer than 2048 bytes");
    }
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return bad("not a URL");
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        return bad("only http:// and https:// are supported");
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return bad("no host");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return bad("user info is not allowed");
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return bad("query and fragment are not allowed");
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// Nodes one router attests at most (each costs a challenge per interval):
/// a leaked join token cannot grow the registry without bound.
pub const MAX_NODES: usize = 4096;

/// Every node the router knows.
#[derive(Debug)]
pub struct NodeRegistry {
    nodes: RwLock<BTreeMap<String, Arc<Node>>>,
    breaker: BreakerSettings,
}

impl NodeRegistry {
    /// An empty registry.
    pub fn new(breaker: BreakerSettings) -> Self {
        Self {
            nodes: RwLock::new(BTreeMap::new()),
            breaker,
        }
    }

    /// Adds a node (URL already checked); returns it and whether it is new,
    /// or `None` when the registry already holds [`MAX_NODES`].
    pub fn add(&self, url: String, source: NodeSource) -> Option<(Arc<Node>, bool)> {
        let id = node_id(&url);
        let mut nodes = self
            .nodes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(node) = nodes.get(&id) {
            return Some((node.clone(), false));
        }
        if nodes.len() >= MAX_NODES {
            return None;
        }
        let node = Arc::new(Node::new(url, source, self.breaker));
        nodes.insert(id, node.clone());
        Some((node, true))
    }

    /// A node by id.
    pub fn get(&self, id: &str) -> Option<Arc<Node>> {
        self.nodes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// All nodes, by id.
    pub fn all(&self) -> Vec<Arc<Node>> {
        self.nodes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Models served by at least one serving node, sorted.
    pub fn models(&self) -> Vec<String> {
        let mut models: Vec<String> = self
            .all()
            .iter()
            .filter_map(|n| n.serving().map(|a| a.model.clone()))
            .collect();
        models.sort();
        models.dedup();
        models
    }

    /// Serving nodes for `model` whose breaker admits traffic, best first:
    /// fewest outstanding requests, then best health, then lowest price.
    pub fn candidates(&self, model: &str) -> Candidates {
        let now = Instant::now();
        let mut serving_any = false;
        let mut ranked: Vec<Ranked> = Vec::new();
        for node in self.all() {
            let Some(attested) = node.serving() else {
                continue;
            };
            serving_any = true;
            if attested.model != model {
                continue;
            }
            let health = node.health();
            if !health.admissible(now) {
                continue;
            }
            let price = u128::from(attested.prompt_price) + u128::from(attested.completion_price);
            ranked.push((node.outstanding(), health.score(), price, node, attested));
        }
        ranked.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(b.1.total_cmp(&a.1))
                .then(a.2.cmp(&b.2))
                .then(a.3.id.cmp(&b.3.id))
        });
        let model_known = self.models().iter().any(|m| m == model);
        Candidates {
            serving_any,
            model_known,
            nodes: ranked.into_iter().map(|(_, _, _, n, a)| (n, a)).collect(),
        }
    }

    /// The node whose attested signer is `signer`, if serving.
    pub fn by_signer(&self, signer: Address) -> Option<Arc<Node>> {
        self.all()
            .into_iter()
            .find(|n| n.serving().is_some_and(|a| a.signer == signer))
    }
}

/// A candidate with its sort keys: outstanding, health, price.
type Ranked = (u32, f64, u128, Arc<Node>, Arc<Attested>);

/// The outcome of [`NodeRegistry::candidates`].
#[derive(Debug)]
pub struct Candidates {
    /// Whether any node is serving at all.
    pub serving_any: bool,
    /// Whether some serving node has the model (maybe with an open breaker).
    pub model_known: bool,
    /// Admissible nodes, best first.
    pub nodes: Vec<(Arc<Node>, Arc<Attested>)>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn node_urls_are_checked() {
        assert_eq!(
            check_node_url("http://10.0.0.1:7070/").unwrap(),
            "http://10.0.0.1:7070"
        );
        assert!(check_node_url("https://node.example:443").is_ok());
        for bad in [
            "file:///etc/passwd",
            "http://user:pw@host",
            "http://host/?q=1",
            "not a url",
            "gopher://x",
        ] {
            assert!(check_node_url(bad).is_err(), "{bad}");
        }
    }
}

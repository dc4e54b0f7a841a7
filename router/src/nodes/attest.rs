//! Challenging nodes: a fresh nonce, the node's evidence bundle, collateral
//! from the router's own source, the verdict under the router's policy, an
//! entry in the hash-chained attestation log, and the node's new state.
//!
//! Every verification is logged, refusals included, so an auditor sees every
//! failed attestation; a node that cannot be reached produced no evidence and
//! is only marked unreachable (and drained).

use std::sync::Arc;
use std::time::Duration;

use cloister_attestation::bundle::{self, BundleOptions, EvidenceBundle};
use cloister_attestation::{Policy, Timestamp, Verdict};
use cloister_attestation_collect::collateral::CollateralSource;
use cloister_protocol::ReceiptDomain;
use futures::StreamExt as _;
use serde_json::json;
use tokio::sync::watch;

pub use cloister_attestation_collect::collateral::{CollateralJsonError, OwnCollateral};

use super::{Attested, Node, NodeStatus};
use crate::ledger::{Ledger, NewLogEntry};
use crate::metrics::Metrics;

/// Largest evidence bundle accepted from a node.
pub const MAX_BUNDLE_BYTES: usize = 4 * 1024 * 1024;

/// Why a node's bundle could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Connection, TLS or timeout.
    #[error("node unreachable: {0}")]
    Transport(String),
    /// The node answered with an error status.
    #[error("node answered HTTP {status}")]
    Status {
        /// The status.
        status: u16,
        /// Its Retry-After, if any.
        retry_after: Option<u64>,
    },
    /// The bundle is larger than [`MAX_BUNDLE_BYTES`].
    #[error("bundle larger than {MAX_BUNDLE_BYTES} bytes")]
    TooLarge,
}

/// The result of one challenge.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Passed: the node serves.
    Passed(Arc<Attested>),
    /// Refused, with reasons.
    Refused(Vec<String>),
    /// No evidence could be had.
    Unreachable(String),
}

/// Everything a challenge needs.
pub struct Attestor {
    /// HTTP client for nodes.
    pub http: reqwest::Client,
    /// The router's policy.
    pub policy: Arc<Policy>,
    /// TDX collateral and AMD CRLs; `None`: use what bundles carry.
    pub collateral: Option<Arc<dyn CollateralSource>>,
    /// Where verifications are logged.
    pub ledger: Ledger,
    /// The receipts' domain nodes must sign for.
    pub domain: ReceiptDomain,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Per-challenge deadline.
    pub timeout: Duration,
}

impl std::fmt::Debug for Attestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attestor")
            .field("collateral", &self.collateral.is_some())
            .field("domain", &self.domain)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A fresh random nonce.
pub fn fresh_nonce() -> [u8; 32] {
    use ring::rand::SecureRandom as _;
    let mut nonce = [0u8; 32];
    // The system RNG does not fail on Linux; if it ever did, the all-zero
    // nonce would be refused by no one, so fail loudly in the log instead.
    if ring::rand::SystemRandom::new().fill(&mut nonce).is_err() {
        tracing::error!("the system random number generator failed");
    }
    nonce
}

/// Reads at most `limit` bytes of a response body.
pub(crate) async fn read_limited(
    response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, FetchError> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| FetchError::Transport(e.to_string()))?;
        if body.len() + piece.len() > limit {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&piece);
    }
    Ok(body)
}

fn now_unix() -> i64 {
    i64::try_from(Timestamp::now().unix()).unwrap_or(i64::MAX)
}

impl Attestor {
    /// `GET {url}/attestation?nonce=...`: the raw bundle bytes.
    pub async fn fetch_bundle(&self, url: &str, nonce: &[u8; 32]) -> Result<Vec<u8>, FetchError> {
        let fetch = async {
            let response = self
                .http
                .get(format!("{url}/attestation?nonce={}", hex::encode(nonce)))
                .send()
                .await
                .map_err(|e| FetchError::Transport(crate::upstream::describe(&e)))?;
            let status = response.status();
            if !status.is_success() {
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                return Err(FetchError::Status {
                    status: status.as_u16(),
                    retry_after,
                });
            }
            read_limited(response, MAX_BUNDLE_BYTES).await
        };
        tokio::time::timeout(self.timeout, fetch)
            .await
            .unwrap_or_else(|_| Err(FetchError::Transport("timed out".into())))
    }

    /// Challenges `node` once and sets its state.
    pub async fn attest(&self, node: &Node) -> Outcome {
        let nonce = fresh_nonce();
        let outcome = match self.fetch_bundle(&node.url, &nonce).await {
            Err(e) => Outcome::Unreachable(e.to_string()),
            Ok(raw) => self.appraise_and_log(node, &raw, nonce).await,
        };
        let at = now_unix();
        match &outcome {
            Outcome::Passed(attested) => {
                tracing::info!(
                    node = %node.id, model = %attested.model, platform = %attested.platform,
                    signer = %attested.signer, log_id = attested.log_id, "node attested: serving"
                );
                node.with_health(|h| h.on_attestation(true));
                node.set_status(NodeStatus::Serving(attested.clone()));
            }
            Outcome::Refused(reasons) => {
                tracing::warn!(node = %node.id, reasons = ?reasons, "node refused: drained");
                node.with_health(|h| h.on_attestation(false));
                let attested = match node.status() {
                    NodeStatus::Serving(a) => Some(a),
                    NodeStatus::Refused { attested, .. } => attested,
                    _ => None,
                };
                node.set_status(NodeStatus::Refused {
                    at,
                    reasons: reasons.clone(),
                    attested,
                });
            }
            Outcome::Unreachable(error) => {
                tracing::warn!(node = %node.id, error = %error, "node unreachable: drained");
                self.metrics.attestation(false, "unreachable");
                node.with_health(|h| h.on_attestation(false));
                node.set_status(NodeStatus::Unreachable {
                    at,
                    error: error.clone(),
                });
            }
        }
        outcome
    }

    async fn appraise_and_log(&self, node: &Node, raw: &[u8], nonce: [u8; 32]) -> Outcome {
        let now = Timestamp::now();
        let mut collateral_json: Option<String> = None;
        let judgement = match EvidenceBundle::from_json(raw) {
            Err(e) => Judgement::refused("malformed_bundle", e.to_string()),
            Ok(bundle) => {
                let own = self.own_collateral(&bundle, now).await;
                collateral_json = own.to_json();
                judge(
                    &bundle,
                    &self.policy,
                    now,
                    &own.options(nonce),
                    &self.domain,
                )
            }
        };
        let Judgement {
            verdict,
            refusals,
            attested,
        } = judgement;
        let accepted = attested.is_some() && refusals.is_empty();
        let logged_verdict = json!({
            "accepted": accepted,
            "verdict": verdict,
            "router_refusals": refusals.iter().map(|(code, detail)| json!({"code": code, "detail": detail})).collect::<Vec<_>>(),
        });
        let entry = NewLogEntry {
            node_id: node.id.clone(),
            node_url: node.url.clone(),
            verified_at: i64::try_from(now.unix()).unwrap_or(i64::MAX),
            nonce: hex::encode(nonce),
            bundle: String::from_utf8_lossy(raw).into_owned(),
            collateral: collateral_json,
            verdict: logged_verdict.to_string(),
            accepted,
        };
        let log_id = match self.ledger.append_attestation(entry).await {
            Ok(logged) => logged.id,
            Err(e) => {
                // Unlogged verifications never admit a node: the log is the
                // auditor's view of why traffic went where it did.
                tracing::error!(node = %node.id, error = %e, "cannot log the attestation: node not admitted");
                return Outcome::Refused(vec![format!("attestation log unavailable: {e}")]);
            }
        };
        let mut reasons: Vec<String> = Vec::new();
        if let Some(v) = &verdict {
            for reason in v
                .reasons
                .iter()
                .chain(v.gpus.iter().flat_map(|g| g.reasons.iter()))
            {
                reasons.push(format!("{}: {}", reason.code.as_str(), reason.detail));
                self.metrics.attestation(false, &reason.code.as_str());
            }
        }
        for (code, detail) in &refusals {
            reasons.push(format!("{code}: {detail}"));
            self.metrics.attestation(false, code);
        }
        match attested {
            Some(mut a) if accepted => {
                self.metrics.attestation(true, "");
                a.log_id = log_id;
                a.bundle_sha256 = ring::digest::digest(&ring::digest::SHA256, raw)
                    .as_ref()
                    .try_into()
                    .unwrap_or([0; 32]);
                let previous = match node.status() {
                    NodeStatus::Serving(p) => Some(p),
                    NodeStatus::Refused { attested, .. } => attested,
                    _ => None,
                };
                if let Some(previous) = previous.filter(|p| p.signer == a.signer) {
                    a.signer_since = a.signer_since.min(previous.signer_since);
                }
                Outcome::Passed(Arc::new(a))
            }
            _ => {
                if reasons.is_empty() {
                    reasons.push("refused".into());
                }
                Outcome::Refused(reasons)
            }
        }
    }

    async fn own_collateral(&self, bundle: &EvidenceBundle, now: Timestamp) -> OwnCollateral {
        let Some(source) = self.collateral.clone() else {
            return OwnCollateral::default();
        };
        let bundle = bundle.clone();
        tokio::task::spawn_blocking(move || {
            OwnCollateral::fetch(source.as_ref(), &bundle, now).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "collateral unavailable; using the bundle's");
                OwnCollateral::default()
            })
        })
        .await
        .unwrap_or_default()
    }
}

/// What one appraisal concluded, by the router's rule: accepted only when the
/// bundle's verdict accepts it *and* its identity is usable
/// ([`Attested::from_bundle`]). The router logs this; an auditor re-runs
/// [`judge`] on the logged bundle to reach its own.
#[derive(Debug, Clone)]
pub struct Judgement {
    /// The bundle's verdict, when the bundle could be appraised at all.
    pub verdict: Option<Verdict>,
    /// The router's own refusals (code, detail): malformed bundle, bundle
    /// uncheckable, identity unusable.
    pub refusals: Vec<(&'static str, String)>,
    /// The identity, when the verdict accepted the bundle and the identity is
    /// usable.
    pub attested: Option<Attested>,
}

impl Judgement {
    /// A judgement refusing for one router reason.
    pub fn refused(code: &'static str, detail: String) -> Self {
        Self {
            verdict: None,
            refusals: vec![(code, detail)],
            attested: None,
        }
    }

    /// Whether the node is accepted.
    pub fn accepted(&self) -> bool {
        self.attested.is_some() && self.refusals.is_empty()
    }
}

/// Appraises `bundle` under `policy` at `now` and reads its identity for
/// `domain`: the decision the router logs for every challenge.
pub fn judge(
    bundle: &EvidenceBundle,
    policy: &Policy,
    now: Timestamp,
    options: &BundleOptions<'_>,
    domain: &ReceiptDomain,
) -> Judgement {
    let mut judgement = Judgement {
        verdict: None,
        refusals: Vec::new(),
        attested: None,
    };
    match bundle::appraise(bundle, policy, now, options) {
        Err(e) => judgement
            .refusals
            .push(("bundle_uncheckable", e.to_string())),
        Ok(v) => {
            if v.accepted {
                match Attested::from_bundle(bundle, &v, domain, 0) {
                    Ok(a) => judgement.attested = Some(a),
                    Err(e) => judgement
                        .refusals
                        .push(("identity_unusable", e.to_string())),
                }
            }
            judgement.verdict = Some(v);
        }
    }
    judgement
}

/// Re-attests `node` now and then every `interval` until `shutdown` says
/// so; a node that cannot be reached is retried sooner (at most every 5 s,
/// backing off to the interval).
pub fn spawn_loop(
    attestor: Arc<Attestor>,
    node: Arc<Node>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut retry = Duration::from_secs(1);
        loop {
            let outcome = attestor.attest(&node).await;
            let wait = match outcome {
                Outcome::Unreachable(_) => {
                    let wait = retry.min(interval);
                    retry = (retry * 2).min(Duration::from_secs(60));
                    wait
                }
                _ => {
                    retry = Duration::from_secs(1);
                    interval
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    })
}

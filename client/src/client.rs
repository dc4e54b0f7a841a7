//! The client: which nodes to trust (the caller's policy, fresh nonces,
//! verdicts remembered for a bounded time), and sending sealed requests to
//! them with a retry on another node before the first byte.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloister_attestation::bundle::EvidenceBundle;
use cloister_attestation::{Policy, Timestamp};
use cloister_attestation_collect::collateral::{CollateralSource, OwnCollateral};
use cloister_protocol::{
    Address, CONTENT_TYPE as FRAMES_CONTENT_TYPE, PayerKey, ReceiptDomain, ResponseError,
    ResponseEvent, ResponseReader, seal_request,
};
use futures::StreamExt as _;

use crate::answer::Answer;
use crate::error::{ClientError, NodeRefusal};
use crate::router_api::{self, NodeListing};
use crate::verify::{Remembered, VerdictCache, VerifiedNode, appraise_fresh};

/// How a [`Client`] works; [`ClientConfig::new`] has the defaults.
pub struct ClientConfig {
    /// The router's base URL (`https://router.example`; a trailing `/v1`
    /// is ignored).
    pub router: String,
    /// The API key sent as `Authorization: Bearer`, unless a call names its
    /// own.
    pub api_key: Option<String>,
    /// The caller's own policy: nodes it refuses get nothing.
    pub policy: Policy,
    /// The payer key requests are authorized with (registered to the API
    /// key's account at the router: `cloister keys create --payer ADDRESS`).
    pub payer: PayerKey,
    /// The EIP-712 domain receipts must be signed in.
    pub domain: ReceiptDomain,
    /// How long a verdict (and the router's node list) is trusted before the
    /// node is challenged again with a fresh nonce. Default 300 s.
    pub verdict_ttl: Duration,
    /// Deadline for the first plaintext of an answer (a whole, unstreamed
    /// answer arrives only when it is complete). Default 120 s, as the
    /// router's.
    pub first_byte_timeout: Duration,
    /// Longest silence within an answer. Default 60 s, as the router's.
    pub idle_timeout: Duration,
    /// Nodes tried per request (the first and the retries). Default 3.
    pub max_attempts: usize,
    /// A PEM file of extra CA certificates for the router's TLS (beside
    /// the public web roots).
    pub router_ca: Option<PathBuf>,
    /// Where TDX collateral and AMD CRLs come from (Intel PCS / AMD KDS,
    /// or a directory). `None`: what each bundle carries (TDX bundles from
    /// `cloister enclave` carry none yet, so TDX nodes then fail).
    pub collateral: Option<Arc<dyn CollateralSource>>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("router", &self.router)
            .field("payer", &self.payer.address())
            .field("verdict_ttl", &self.verdict_ttl)
            .field("collateral", &self.collateral.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// A configuration with the defaults.
    pub fn new(router: impl Into<String>, policy: Policy, payer: PayerKey) -> Self {
        Self {
            router: router.into(),
            api_key: None,
            policy,
            payer,
            domain: ReceiptDomain::DEVELOPMENT,
            verdict_ttl: Duration::from_secs(300),
            first_byte_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(60),
            max_attempts: 3,
            router_ca: None,
            collateral: None,
        }
    }
}

/// Every node the router lists, sorted into trusted and refused.
#[derive(Debug, Clone, Default)]
pub struct Survey {
    /// Nodes that passed the caller's policy.
    pub trusted: Vec<Arc<VerifiedNode>>,
    /// Nodes that did not, with the reasons.
    pub refused: Vec<NodeRefusal>,
}

impl Survey {
    /// Models trusted nodes serve.
    pub fn models(&self) -> Vec<String> {
        let mut models: Vec<String> = self
            .trusted
            .iter()
            .map(|n| n.identity.model.clone())
            .collect();
        models.sort();
        models.dedup();
        models
    }
}

/// An end-to-end sealing client of one router.
pub struct Client {
    base: String,
    api_key: Option<String>,
    policy: Policy,
    payer: PayerKey,
    domain: ReceiptDomain,
    ttl: Duration,
    first_byte: Duration,
    idle: Duration,
    max_attempts: usize,
    collateral: Option<Arc<dyn CollateralSource>>,
    http: reqwest::Client,
    verdicts: VerdictCache,
    survey: Mutex<Option<(Arc<Survey>, Instant)>>,
    failures: Mutex<HashMap<String, Instant>>,
    turn: AtomicUsize,
    listings: AtomicU64,
    bundles: AtomicU64,
}

/// How many round trips of each kind a [`Client`] made so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoundTrips {
    /// `GET /v1/attestation` (node lists).
    pub listings: u64,
    /// `GET /v1/attestation/{node}?nonce=…` (fresh bundles).
    pub bundles: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("router", &self.base)
            .field("payer", &self.payer.address())
            .finish_non_exhaustive()
    }
}

/// How long a node that failed is tried only after the others.
const FAILURE_MEMORY: Duration = Duration::from_secs(30);
/// How often an unknown model may trigger a fresh survey.
const RESURVEY_MIN: Duration = Duration::from_secs(5);

impl Client {
    /// A client; fails only when no HTTP client can be built.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let roots = crate::tls::root_store(config.router_ca.as_deref()).map_err(|problem| {
            let path = config
                .router_ca
                .as_deref()
                .unwrap_or(std::path::Path::new(""));
            ClientError::Config(format!("router CA {}: {problem}", path.display()))
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Config(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            base: router_api::base_url(&config.router),
            api_key: config.api_key,
            policy: config.policy,
            payer: config.payer,
            domain: config.domain,
            ttl: config.verdict_ttl,
            first_byte: config.first_byte_timeout,
            idle: config.idle_timeout,
            max_attempts: config.max_attempts.max(1),
            collateral: config.collateral,
            http,
            verdicts: VerdictCache::new(config.verdict_ttl, 4096),
            survey: Mutex::new(None),
            failures: Mutex::new(HashMap::new()),
            turn: AtomicUsize::new(0),
            listings: AtomicU64::new(0),
            bundles: AtomicU64::new(0),
        })
    }

    /// The payer address requests are authorized with.
    pub fn payer_address(&self) -> Address {
        self.payer.address()
    }

    /// The router's base URL.
    pub fn router(&self) -> &str {
        &self.base
    }

    fn auth<'a>(&'a self, auth: Option<&'a str>) -> Option<&'a str> {
        auth.or(self.api_key.as_deref())
    }

    /// Round trips spent on verification so far (a request with every
    /// verdict remembered adds none).
    pub fn round_trips(&self) -> RoundTrips {
        RoundTrips {
            listings: self.listings.load(Ordering::Relaxed),
            bundles: self.bundles.load(Ordering::Relaxed),
        }
    }

    /// The router's node list (untrusted hints: nothing is verified).
    pub async fn list_nodes(&self) -> Result<Vec<NodeListing>, ClientError> {
        self.listings.fetch_add(1, Ordering::Relaxed);
        router_api::list_nodes(&self.http, &self.base).await
    }

    /// Verifies one node with a fresh nonce (or a remembered verdict), under
    /// the caller's policy. `auth` overrides the configured API key.
    pub async fn verify_node(
        &self,
        node: &str,
        auth: Option<&str>,
    ) -> Result<Arc<VerifiedNode>, ClientError> {
        match self.verdicts.get(node, Instant::now()) {
            Some(Remembered::Trusted(v)) => return Ok(v),
            Some(Remembered::Refused(r)) => {
                return Err(ClientError::NoTrustedNode {
                    model: r.model.clone(),
                    refusals: vec![r],
                });
            }
            None => {}
        }
        let nonce = fresh_nonce()?;
        self.bundles.fetch_add(1, Ordering::Relaxed);
        let raw =
            router_api::fresh_bundle(&self.http, &self.base, self.auth(auth), node, &nonce).await?;
        let now = Timestamp::now();
        let collateral = self.own_collateral(&raw, now).await;
        match appraise_fresh(
            node,
            &raw,
            nonce,
            &self.policy,
            &self.domain,
            &collateral,
            now,
        ) {
            Ok(verified) => {
                let verified = Arc::new(verified);
                tracing::info!(node, model = %verified.identity.model, "node verified under the caller's policy");
                self.verdicts
                    .put(node, Remembered::Trusted(verified.clone()), Instant::now());
                Ok(verified)
            }
            Err(refusal) => {
                tracing::warn!(node, reasons = ?refusal.reasons, "node refused by the caller's policy");
                self.verdicts
                    .put(node, Remembered::Refused(refusal.clone()), Instant::now());
                Err(ClientError::NoTrustedNode {
                    model: refusal.model.clone(),
                    refusals: vec![refusal],
                })
            }
        }
    }

    /// Collateral from the configured source for the bundle in `raw`
    /// (nothing when none is configured, the bundle does not parse, or the
    /// source fails: then the bundle's own is used, and the verdict says
    /// what could not be checked).
    async fn own_collateral(&self, raw: &[u8], now: Timestamp) -> OwnCollateral {
        let Some(source) = self.collateral.clone() else {
            return OwnCollateral::default();
        };
        let Ok(bundle) = EvidenceBundle::from_json(raw) else {
            return OwnCollateral::default();
        };
        tokio::task::spawn_blocking(move || {
            OwnCollateral::fetch(source.as_ref(), &bundle, now).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "collateral unavailable; using the bundle's");
                OwnCollateral::default()
            })
        })
        .await
        .unwrap_or_default()
    }

    /// Every listed node, verified (remembered verdicts are reused; the
    /// survey itself is remembered for the verdict lifetime, so a request
    /// with everything remembered makes no extra round trip).
    pub async fn survey(&self, auth: Option<&str>) -> Result<Arc<Survey>, ClientError> {
        if let Some((survey, at)) = self.cached_survey()
            && at.elapsed() < self.ttl
        {
            return Ok(survey);
        }
        self.fresh_survey(auth).await
    }

    fn cached_survey(&self) -> Option<(Arc<Survey>, Instant)> {
        self.survey
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    async fn fresh_survey(&self, auth: Option<&str>) -> Result<Arc<Survey>, ClientError> {
        let listing = self.list_nodes().await?;
        let checks = listing.iter().map(|node| async move {
            if node.state != "serving" {
                return Ok(Err(NodeRefusal {
                    node: node.id.clone(),
                    model: node.model.clone(),
                    reasons: vec![format!(
                        "the router does not route to it (state {})",
                        node.state
                    )],
                }));
            }
            match self.verify_node(&node.id, auth).await {
                Ok(v) => Ok(Ok(v)),
                Err(ClientError::NoTrustedNode { mut refusals, .. }) if !refusals.is_empty() => {
                    Ok(Err(refusals.swap_remove(0)))
                }
                // A bad key is the caller's to fix, not the node's.
                Err(
                    e @ ClientError::Router {
                        status: 401 | 403, ..
                    },
                ) => Err(e),
                Err(e) => Ok(Err(NodeRefusal {
                    node: node.id.clone(),
                    model: node.model.clone(),
                    reasons: vec![format!("no fresh evidence: {e}")],
                })),
            }
        });
        let mut survey = Survey::default();
        for outcome in futures::future::join_all(checks).await {
            match outcome? {
                Ok(v) => survey.trusted.push(v),
                Err(r) => survey.refused.push(r),
            }
        }
        let survey = Arc::new(survey);
        *self
            .survey
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((survey.clone(), Instant::now()));
        Ok(survey)
    }

    /// Trusted nodes for `model`, the least recently failed first, rotating
    /// among equals.
    async fn candidates(
        &self,
        model: &str,
        auth: Option<&str>,
    ) -> Result<Vec<Arc<VerifiedNode>>, ClientError> {
        let mut survey = self.survey(auth).await?;
        let serves = |s: &Survey| s.trusted.iter().any(|n| n.identity.model == model);
        if !serves(&survey)
            && self
                .cached_survey()
                .is_none_or(|(_, at)| at.elapsed() >= RESURVEY_MIN)
        {
            // A node may have joined since.
            survey = self.fresh_survey(auth).await?;
        }
        let mut nodes: Vec<Arc<VerifiedNode>> = survey
            .trusted
            .iter()
            .filter(|n| n.identity.model == model)
            .cloned()
            .collect();
        if nodes.is_empty() {
            return Err(if survey.trusted.is_empty() {
                ClientError::NoTrustedNode {
                    model: Some(model.to_owned()),
                    refusals: survey.refused.clone(),
                }
            } else {
                ClientError::UnknownModel {
                    model: model.to_owned(),
                    available: survey.models(),
                }
            });
        }
        let turn = self.turn.fetch_add(1, Ordering::Relaxed) % nodes.len();
        nodes.rotate_left(turn);
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        nodes.sort_by_key(|n| {
            failures
                .get(&n.id)
                .is_some_and(|at| at.elapsed() < FAILURE_MEMORY)
        });
        Ok(nodes)
    }

    /// Seals `body` (an OpenAI request naming `model`) to a trusted node and
    /// returns its answer, opened up to the first chunk. A node that fails
    /// before that is left for the next one (a fresh seal each time); after
    /// it, errors come from [`Answer::next_chunk`]. `auth` overrides the
    /// configured API key.
    pub async fn send(
        &self,
        model: &str,
        body: Vec<u8>,
        auth: Option<&str>,
    ) -> Result<Answer, ClientError> {
        let nodes = self.candidates(model, auth).await?;
        let mut last = None;
        for (attempt, node) in nodes.into_iter().take(self.max_attempts).enumerate() {
            if attempt > 0 {
                tracing::info!(node = %node.id, attempt, "re-sealing to another trusted node");
            }
            match self.attempt(&node, body.clone(), auth).await {
                Ok(answer) => return Ok(answer),
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::NextNode(e)) => {
                    tracing::warn!(node = %node.id, error = %e, "node failed before answering");
                    self.note_failure(&node.id, &e);
                    last = Some(e);
                }
            }
        }
        Err(match last {
            Some(e) => ClientError::Exhausted { last: Box::new(e) },
            None => ClientError::NoTrustedNode {
                model: Some(model.to_owned()),
                refusals: Vec::new(),
            },
        })
    }

    /// Remembers a failure; an answer that did not verify also drops the
    /// node's verdict (it is challenged again before the next use).
    pub fn note_failure(&self, node: &str, error: &ClientError) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(node.to_owned(), Instant::now());
        if matches!(error, ClientError::Tampered { .. }) {
            self.verdicts.forget(node);
            *self
                .survey
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        }
    }

    async fn attempt(
        &self,
        node: &Arc<VerifiedNode>,
        body: Vec<u8>,
        auth: Option<&str>,
    ) -> Result<Answer, Attempt> {
        let issued_at = Timestamp::now().unix();
        let envelope = self
            .payer
            .envelope(node.identity.signer, &self.domain, issued_at, body)
            .map_err(|e| Attempt::Final(ClientError::Config(format!("authorizing: {e}"))))?;
        let (sealed, opener) = seal_request(&node.identity.key_config, &envelope)
            .map_err(|e| Attempt::Final(ClientError::Config(format!("sealing: {e}"))))?;
        let payer = format!("0x{}", hex::encode(self.payer.address().as_slice()));
        let send = router_api::post_sealed(
            &self.http,
            &self.base,
            self.auth(auth),
            &node.id,
            &payer,
            sealed,
        )
        .send();
        let response = match tokio::time::timeout(self.first_byte, send).await {
            Err(_) => {
                return Err(Attempt::NextNode(ClientError::Broken {
                    node: node.id.clone(),
                    detail: "no answer before the first-byte deadline".into(),
                }));
            }
            Ok(Err(e)) => return Err(Attempt::NextNode(router_api::transport(&e))),
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        let frames = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(FRAMES_CONTENT_TYPE));
        let reader = ResponseReader::new(opener, node.identity.signer, self.domain);
        if !frames {
            // The router's own answer: no node was reached.
            let error = router_api::router_error(response).await;
            return Err(match status {
                502..=504 => Attempt::NextNode(error),
                _ => Attempt::Final(error),
            });
        }
        if !(200..300).contains(&status) {
            return Err(node_refusal(node, status, response, reader).await);
        }
        let body = response.bytes_stream().boxed();
        let mut answer = Answer::new(node.clone(), reader, body, self.idle);
        answer
            .prime(self.first_byte)
            .await
            .map_err(Attempt::NextNode)?;
        Ok(answer)
    }
}

/// One attempt's failure.
enum Attempt {
    /// Another node may do better.
    NextNode(ClientError),
    /// Answer the caller now.
    Final(ClientError),
}

/// A node's error status with its sealed error body: the request's fault
/// (final), busy or broken (next node).
async fn node_refusal(
    node: &VerifiedNode,
    status: u16,
    response: reqwest::Response,
    mut reader: ResponseReader,
) -> Attempt {
    let body = router_api::read_limited(response, 64 * 1024)
        .await
        .unwrap_or_default();
    reader.push(&body);
    let mut plaintext = Vec::new();
    let mut code = String::new();
    loop {
        match reader.next_event() {
            Ok(Some(ResponseEvent::Plaintext(p))) => plaintext.extend_from_slice(&p),
            Err(ResponseError::Remote(frame)) => {
                code = frame.code;
                break;
            }
            Ok(Some(ResponseEvent::Receipt(_)) | None) | Err(_) => break,
        }
    }
    match status {
        400 | 413 | 422 if !plaintext.is_empty() => {
            let text = String::from_utf8_lossy(&plaintext);
            let json = text
                .trim()
                .strip_prefix("data: ")
                .unwrap_or(text.trim())
                .as_bytes()
                .to_vec();
            Attempt::Final(ClientError::NodeRefused {
                node: node.id.clone(),
                status,
                body: json,
            })
        }
        _ => Attempt::NextNode(ClientError::Broken {
            node: node.id.clone(),
            detail: format!("the node answered HTTP {status} ({code})"),
        }),
    }
}

fn fresh_nonce() -> Result<[u8; 32], ClientError> {
    use ring::rand::SecureRandom as _;
    let mut nonce = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| ClientError::Config("the system random number generator failed".into()))?;
    Ok(nonce)
}

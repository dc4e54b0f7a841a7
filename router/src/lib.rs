//! Cloister router (`cloister router`): the public face of Cloister.
//!
//! - An OpenAI-compatible endpoint (`/v1/models`, `/v1/chat/completions`,
//!   `/v1/completions`, stream or not). The router seals every request to
//!   the chosen node's attested key itself, so the path router → node is
//!   always ciphertext, opens the answer, and charges only from the
//!   enclave-signed receipt ([`relay`], [`receipts`]).
//! - A sealed API for clients that seal themselves (`/v1/attestation`,
//!   `/v1/attestation/{node}?nonce=`, `/v1/sealed/{node}`).
//! - A node registry ([`nodes`]): nodes join by address; the router
//!   challenges each with a fresh nonce, verifies its bundle under its
//!   policy, logs every verification in a hash-chained attestation log, and
//!   routes only to nodes whose re-attestation keeps passing.
//! - A ledger ([`ledger`], sqlx on SQLite or PostgreSQL): hashed API keys,
//!   accounts and balances, nodes, the attestation log, receipts, charges.
//! - Operations: Prometheus `/metrics`, `/healthz`, a status page at `/`,
//!   TLS on the listener, graceful shutdown.
//!
//! All HTTP mapping is in [`http`] and [`api_error`]; the router never logs
//! or stores prompt or completion text.

#![forbid(unsafe_code)]

pub mod api_error;
pub mod config;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod nodes;
pub mod ratelimit;
pub mod receipts;
pub mod relay;
pub mod server;
pub mod settlement;
pub mod state;
pub mod status_page;
pub mod upstream;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloister_attestation::Policy;
use cloister_attestation_collect::collateral::{
    CachingCollateral, CollateralSource, FileCollateral, HttpCollateral, HttpConfig,
};
use cloister_protocol::ReceiptDomain;
use tokio::net::TcpListener;

pub use config::{RouterArgs, RouterConfig};
use ledger::Ledger;
use metrics::Metrics;
use nodes::attest::Attestor;
use nodes::{BreakerSettings, NodeRegistry, NodeSource};
pub use state::RouterState;

/// Why the router could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Configuration.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The policy file is missing, unreadable or unfit for serving.
    #[error("policy: {0}")]
    Policy(String),
    /// The database.
    #[error("ledger: {0}")]
    Ledger(#[from] ledger::LedgerError),
    /// The HTTP client or TLS.
    #[error("{0}")]
    Tls(String),
    /// A node from the ledger or the configuration could not be added.
    #[error("nodes: {0}")]
    Nodes(#[from] state::AddNodeError),
    /// Settlement could not be set up.
    #[error("settlement: {0}")]
    Settlement(String),
    /// The listener.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Address.
        addr: std::net::SocketAddr,
        /// Error.
        source: std::io::Error,
    },
}

/// Reads a policy file and checks it is fit for serving (every allowed
/// hardware platform pins its code, or says it does not on purpose).
pub fn load_policy(path: Option<&Path>) -> Result<Policy, StartError> {
    let Some(path) = path else {
        return Err(StartError::Policy(
            "no policy: give --policy FILE (see docs/attestation-policy.md); without one no node \
             could be trusted"
                .into(),
        ));
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| StartError::Policy(format!("{}: {e}", path.display())))?;
    let policy = Policy::from_toml(&text)
        .map_err(|e| StartError::Policy(format!("{}: {e}", path.display())))?;
    policy
        .check_fit_for_serving()
        .map_err(|e| StartError::Policy(format!("{}: {e}", path.display())))?;
    Ok(policy)
}

fn collateral_source(config: &RouterConfig) -> Arc<dyn CollateralSource> {
    if config.collateral == "http" {
        Arc::new(CachingCollateral::new(
            HttpCollateral::new(HttpConfig::default()),
            config.data_dir.join("collateral"),
        ))
    } else {
        Arc::new(FileCollateral::new(&config.collateral))
    }
}

/// Connects the ledger, builds the state, and starts attesting every node
/// in the ledger and the configuration. `policy` must already be fit for
/// serving ([`load_policy`]).
pub async fn start(config: RouterConfig, policy: Policy) -> Result<Arc<RouterState>, StartError> {
    policy
        .check_fit_for_serving()
        .map_err(|e| StartError::Policy(e.to_string()))?;
    if config.database_url.is_none() {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            StartError::Config(config::ConfigError::Invalid(format!(
                "cannot create the data directory {}: {e}",
                config.data_dir.display()
            )))
        })?;
    }
    let url = config.effective_database_url();
    let ledger = Ledger::connect(&url).await?;
    tracing::info!(database = %ledger::redacted_url(&url), "ledger ready (migrations applied)");
    let http = upstream::client(
        config.node_ca.as_deref(),
        Duration::from_secs(config.connect_timeout_secs),
    )
    .map_err(|e| StartError::Tls(e.to_string()))?;
    let mut domain = ReceiptDomain {
        chain_id: config.chain_id,
        verifying_contract: config
            .settlement_contract
            .parse()
            .map_err(|_| StartError::Policy("settlement_contract is not an address".into()))?,
    };
    let settler = chain_settler(&config, &ledger, &mut domain)?;
    let metrics = Arc::new(Metrics::new());
    let attestor = Arc::new(Attestor {
        http: http.clone(),
        policy: Arc::new(policy),
        collateral: Some(collateral_source(&config)),
        ledger: ledger.clone(),
        domain,
        metrics: metrics.clone(),
        timeout: Duration::from_secs(config.attestation_timeout_secs),
    });
    let (shutdown, _) = tokio::sync::watch::channel(false);
    let state = Arc::new(RouterState {
        nodes: NodeRegistry::new(BreakerSettings {
            failures_to_open: config.breaker_failures.max(1),
            cooldown: Duration::from_secs(config.breaker_cooldown_secs),
        }),
        limiter: ratelimit::RateLimiter::new(config.requests_per_minute, config.tokens_per_minute),
        config,
        ledger,
        attestor,
        http,
        metrics,
        domain,
        shutdown,
        started_at: Instant::now(),
        recording: Arc::default(),
    });
    if let Some(settler) = settler {
        let nodes_of = state.clone();
        let settler = settler
            .with_signers(Arc::new(move || {
                settlement::signers::claims_of(&nodes_of.nodes)
            }))
            .with_metrics(state.metrics.clone());
        tokio::spawn(Arc::new(settler).run(state.shutdown.subscribe()));
    }
    for row in state.ledger.nodes().await? {
        state.add_node(row.url, row.source).await?;
    }
    for url in state.config.nodes.clone() {
        let url = nodes::check_node_url(&url).map_err(config::ConfigError::Invalid)?;
        state.add_node(url, NodeSource::Static).await?;
    }
    Ok(state)
}

/// The settlement worker when `chain_rpc_url` is set; the receipts' domain
/// becomes the deployment's chain and Settlement contract.
fn chain_settler(
    config: &RouterConfig,
    ledger: &Ledger,
    domain: &mut ReceiptDomain,
) -> Result<Option<settlement::Settler>, StartError> {
    let (Some(url), Some(deployment), Some(key_file)) = (
        &config.chain_rpc_url,
        &config.chain_deployment,
        &config.settlement_key_file,
    ) else {
        tracing::info!("settlement off (no chain_rpc_url): receipts accumulate in the ledger");
        return Ok(None);
    };
    let fail = |m: String| StartError::Settlement(m);
    let deployment =
        cloister_contracts::Deployment::read(deployment).map_err(|e| fail(e.to_string()))?;
    let default_contract = RouterConfig::default().settlement_contract;
    if config.settlement_contract != default_contract
        && config
            .settlement_contract
            .parse::<cloister_protocol::Address>()
            .ok()
            != Some(deployment.settlement)
    {
        return Err(fail(format!(
            "settlement_contract {} differs from the deployment's Settlement {}",
            config.settlement_contract, deployment.settlement
        )));
    }
    *domain = ReceiptDomain {
        chain_id: deployment.chain_id,
        verifying_contract: deployment.settlement,
    };
    let secret = std::fs::read_to_string(key_file)
        .map_err(|e| fail(format!("cannot read {}: {e}", key_file.display())))?;
    let key: alloy::signers::local::PrivateKeySigner = secret.trim().parse().map_err(|_| {
        fail(format!(
            "{} does not hold a 0x hex secp256k1 key",
            key_file.display()
        ))
    })?;
    if key.address() != deployment.operator {
        return Err(fail(format!(
            "the settlement key is {}, but the contracts' operator is {}",
            key.address(),
            deployment.operator
        )));
    }
    let url = url
        .parse()
        .map_err(|e| fail(format!("chain_rpc_url {url:?}: {e}")))?;
    let provider = cloister_contracts::rpc::connect(url, key);
    tracing::info!(
        chain_id = deployment.chain_id,
        settlement = %deployment.settlement,
        registry = %deployment.registry,
        "settlement on"
    );
    Ok(Some(settlement::Settler::new(
        ledger.clone(),
        provider,
        &deployment,
        settlement::SettlementSettings {
            interval: Duration::from_secs(config.settlement_interval_secs),
            max_receipts: config.settlement_max_receipts,
        },
    )))
}

/// Serves `state` on `listener` until `shutdown`; then stops the
/// attestation loops, finishes requests in flight and closes the ledger.
pub async fn serve(
    listener: TcpListener,
    state: Arc<RouterState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let tls = match (&state.config.tls_cert, &state.config.tls_key) {
        (Some(cert), Some(key)) => {
            Some(server::tls_acceptor(cert, key).map_err(|e| StartError::Tls(e.to_string()))?)
        }
        _ => None,
    };
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: state.config.listen,
        source,
    })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, "router listening");
    let app = http::app(state.clone());
    let stopping = state.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections; finishing requests in flight");
        let _ = stopping.shutdown.send(true);
    };
    server::serve(listener, app, tls, signal)
        .await
        .map_err(|source| StartError::Listen { addr, source })?;
    let pending = state.recording.count();
    if pending > 0 {
        tracing::info!(pending, "recording the last receipts");
        state.recording.wait_idle(Duration::from_secs(30)).await;
    }
    state.ledger.close().await;
    tracing::info!("router stopped");
    Ok(())
}

/// `cloister router`: loads the policy, starts, binds, serves until
/// `shutdown`.
pub async fn run(
    config: RouterConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let policy = load_policy(config.policy.as_deref())?;
    let listen = config.listen;
    let state = start(config, policy).await?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(listen);
    // Scripts and tests read the bound address from this line.
    println!("cloister router listening on {addr}");
    serve(listener, state, shutdown).await
}

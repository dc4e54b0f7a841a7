//! Cloister enclave app: the process inside the provider's confidential VM,
//! and the only place a sealed prompt exists in clear.
//!
//! At start it finds the TEE, hashes and loads the model with mistral.rs,
//! and creates in memory an HPKE key pair (OHTTP key configuration) and a
//! secp256k1 receipt-signing key; neither is ever written or logged. It then
//! serves:
//!
//! - `GET /attestation?nonce=<64 hex>`: an evidence bundle whose report data
//!   binds the nonce and the node's identity (keys, model, app);
//! - `POST /v1/sealed`: an OHTTP-sealed OpenAI request in, frames out:
//!   sealed chunks, then a signed usage receipt;
//! - `GET /healthz`.
//!
//! It never logs or stores prompt or completion text.

#![forbid(unsafe_code)]

pub mod admission;
pub mod config;
pub mod engine;
pub mod evidence;
pub mod inference;
pub mod model;
pub mod replay;
mod sealed;
pub mod server;
pub mod testing;

use std::future::Future;
use std::sync::Arc;

use cloister_attestation_collect::{AutoConfig, DetectError, EvidenceSource, Tee};
use cloister_protocol::{NodeKeys, ReceiptDomain};
use sha2::{Digest, Sha384};

pub use config::{EnclaveArgs, TeeChoice};
use engine::EngineOptions;
use evidence::Evidence;
use model::{ModelError, ModelSource};
use server::{AppState, Limits};

/// Why the enclave could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// No usable TEE (or the wrong one).
    #[error("{0}")]
    Tee(String),
    /// The model is missing, unreadable or refused by mistral.rs.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Key generation failed.
    #[error("creating the node keys failed: {0}")]
    Keys(String),
    /// A bad argument.
    #[error("{0}")]
    Argument(String),
    /// The listener could not be bound or served.
    #[error("cannot serve on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// Picks the evidence source; fails clearly when the requested TEE is absent.
pub fn evidence_source(
    args: &EnclaveArgs,
    simulated_measurement: [u8; 48],
) -> Result<EvidenceSource, StartError> {
    if args.tee == TeeChoice::Simulated {
        tracing::warn!(
            "SIMULATED TEE: this node proves nothing about its hardware; every evidence bundle says \
             `simulated` and verifiers refuse it unless their policy allows simulated evidence. \
             Development only."
        );
        return Ok(EvidenceSource::simulated(simulated_measurement));
    }
    let config = AutoConfig {
        configfs_root: args.configfs_root.clone(),
        vmpl: args.vmpl,
    };
    let source = EvidenceSource::detect(&config).map_err(|e| match e {
        DetectError::NoTee { .. } => StartError::Tee(format!(
            "{e}\n(no TDX or SEV-SNP guest interface on this machine: outside a confidential VM, \
             use --tee simulated for development)"
        )),
        other => StartError::Tee(other.to_string()),
    })?;
    let wanted = match args.tee {
        TeeChoice::Tdx => Some(Tee::Tdx),
        TeeChoice::SevSnp => Some(Tee::SevSnp),
        TeeChoice::Auto | TeeChoice::Simulated => None,
    };
    if let Some(wanted) = wanted
        && source.tee() != wanted
    {
        return Err(StartError::Tee(format!(
            "--tee {wanted} was asked for, but this machine offers {}",
            source.tee()
        )));
    }
    tracing::info!(tee = %source.tee(), "evidence source found");
    Ok(source)
}

/// What the simulated TEE claims to measure: SHA-384 of the model identity
/// and app version, so that different builds and models differ.
fn simulated_measurement(model_id: &str, weights_sha256: &str) -> [u8; 48] {
    let mut hasher = Sha384::new();
    hasher.update(b"cloister/simulated-measurement/v1\0");
    hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
    hasher.update([0]);
    hasher.update(evidence::GIT_REV.as_bytes());
    hasher.update([0]);
    hasher.update(model_id.as_bytes());
    hasher.update([0]);
    hasher.update(weights_sha256.as_bytes());
    hasher.finalize().into()
}

/// Everything before serving: TEE, model, keys. Separate from [`run`] so
/// tests can build a node without a listener.
pub async fn prepare(args: &EnclaveArgs) -> Result<Arc<AppState>, StartError> {
    let source = ModelSource::resolve(&args.model, args.model_id.clone())?;
    // Fail on a missing TEE before spending minutes on the model.
    if args.tee != TeeChoice::Simulated {
        evidence_source(args, [0; 48])?;
    }
    let hashing = source.clone();
    let weights_sha256 = tokio::task::spawn_blocking(move || model::digest_with_progress(&hashing))
        .await
        .map_err(|e| StartError::Argument(format!("hashing the model failed: {e}")))??;
    let tee = evidence_source(args, simulated_measurement(&source.id, &weights_sha256))?;
    let options = EngineOptions {
        device: args.device,
        dtype: args.dtype,
        max_batch: args.max_concurrent,
        prefix_cache: args.prefix_cache,
    };
    let engine = engine::load(&source, &options).await?;
    let keys = NodeKeys::generate().map_err(|e| StartError::Keys(e.to_string()))?;
    let identity = evidence::identity(
        &keys.key_config(),
        &keys.signer_address().to_string(),
        &source.id,
        &weights_sha256,
    );
    tracing::info!(
        signer = %keys.signer_address(),
        model = %source.id,
        weights_sha256 = %weights_sha256,
        "node identity ready (keys live in memory only)"
    );
    let receipt_domain = ReceiptDomain {
        chain_id: args.chain_id,
        verifying_contract: match &args.settlement_contract {
            None => Default::default(),
            Some(text) => text.parse().map_err(|_| {
                StartError::Argument(format!(
                    "--settlement-contract {text:?} is not a 0x address"
                ))
            })?,
        },
    };
    Ok(Arc::new(AppState::new(
        engine,
        source.id,
        keys,
        Evidence::new(tee, identity),
        receipt_domain,
        admission::Admission::new(args.max_concurrent.get(), args.queue),
        Limits {
            max_tokens: args.max_tokens,
            max_request_bytes: args.max_request_bytes,
        },
    )))
}

/// Starts the node and serves until `shutdown` completes; in-flight
/// requests finish first.
pub async fn run(
    args: EnclaveArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let state = prepare(&args).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: args.listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(args.listen);
    tracing::info!(%addr, "listening: GET /attestation, POST /v1/sealed, GET /healthz");
    // Scripts and tests read the bound address from this line.
    println!("cloister enclave listening on {addr}");
    server::serve(listener, state, shutdown)
        .await
        .map_err(|source| StartError::Listen { addr, source })
}

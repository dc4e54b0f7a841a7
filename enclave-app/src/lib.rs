//! Cloister enclave app: the process inside the provider's confidential VM,
//! and the only place a sealed prompt exists in clear.
//!
//! At start it finds the TEE (and, with GPUs, checks their confidential-
//! computing mode through NVML), copies the model into guest memory while
//! hashing it and loads that copy with mistral.rs, and creates in memory an
//! HPKE key pair (OHTTP key configuration) and a secp256k1 receipt-signing
//! key; neither is ever written or logged. It then serves:
//!
//! - `GET /attestation?nonce=<64 hex>`: an evidence bundle whose report data
//!   binds the nonce and the node's identity (keys, model, app);
//! - `POST /v1/sealed`: an OHTTP-sealed OpenAI request in, frames out:
//!   sealed chunks, then a signed usage receipt;
//! - `GET /healthz`.
//!
//! It never logs or stores prompt or completion text.

#![deny(unsafe_code)]

pub mod admission;
pub mod config;
pub mod engine;
pub mod evidence;
#[allow(unsafe_code)]
pub mod hardening;
pub mod http_server;
pub mod inference;
pub mod join;
pub mod log_filter;
pub mod model;
pub mod replay;
mod sealed;
pub mod server;
pub mod state;
pub mod testing;

use std::future::Future;
use std::sync::Arc;

use cloister_attestation_collect::nvidia_gpu::NvidiaGpus;
use cloister_attestation_collect::{AutoConfig, DetectError, EvidenceSource, Tee};
use cloister_protocol::{NodeKeys, ReceiptDomain};
use mistralrs_core::MistralRs;
use sha2::{Digest, Sha384};

pub use config::{EnclaveArgs, GpuChoice, TeeChoice};
use engine::{DeviceChoice, EngineOptions};
use evidence::{Evidence, IdentityParts};
use http_server::ConnectionLimits;
use model::{ManifestEntry, ModelError, ModelSource};
use state::{AppState, Limits, NodeParts, Prices};

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
    /// GPU evidence is required and cannot be had.
    #[error("GPU evidence: {0}")]
    Gpu(String),
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

/// The receipts' EIP-712 domain from the arguments: explicit outside the
/// simulated TEE, so a node never signs receipts for a chain it was not told.
fn receipt_domain(args: &EnclaveArgs) -> Result<ReceiptDomain, StartError> {
    let simulated = args.tee == TeeChoice::Simulated;
    let chain_id = match (args.chain_id, simulated) {
        (Some(id), _) => id,
        (None, true) => ReceiptDomain::DEVELOPMENT.chain_id,
        (None, false) => {
            return Err(StartError::Argument(
                "--chain-id is required (the settlement chain receipts are signed for); \
                 only --tee simulated defaults to the development chain 31337"
                    .into(),
            ));
        }
    };
    let verifying_contract = match (&args.settlement_contract, simulated) {
        (Some(text), _) => text.parse().map_err(|_| {
            StartError::Argument(format!(
                "--settlement-contract {text:?} is not a 0x address"
            ))
        })?,
        (None, true) => ReceiptDomain::DEVELOPMENT.verifying_contract,
        (None, false) => {
            return Err(StartError::Argument(
                "--settlement-contract is required (the contract receipts are signed for); \
                 only --tee simulated defaults to the zero address"
                    .into(),
            ));
        }
    };
    Ok(ReceiptDomain {
        chain_id,
        verifying_contract,
    })
}

/// The identity's `receipts` part: the EIP-712 domain receipts are signed
/// in, the prices, and the provider paid for them (when given).
fn receipts_identity(
    domain: &ReceiptDomain,
    prices: &Prices,
    payout: Option<cloister_protocol::Address>,
) -> serde_json::Value {
    let mut receipts = serde_json::json!({
        "chain_id": domain.chain_id,
        "verifying_contract": domain.verifying_contract.to_string(),
        "prompt_price": prices.prompt,
        "completion_price": prices.completion,
    });
    if let (Some(address), Some(map)) = (payout, receipts.as_object_mut()) {
        map.insert("payout_address".into(), address.to_string().into());
    }
    receipts
}

/// `--payout-address`, checked: a 0x address, not zero.
fn payout_address(args: &EnclaveArgs) -> Result<Option<cloister_protocol::Address>, StartError> {
    let Some(text) = &args.payout_address else {
        tracing::warn!(
            "no --payout-address: this node serves, but its receipts cannot be settled on chain"
        );
        return Ok(None);
    };
    let address: cloister_protocol::Address = text.trim().parse().map_err(|_| {
        StartError::Argument(format!("--payout-address {text:?} is not a 0x address"))
    })?;
    if address.is_zero() {
        return Err(StartError::Argument(
            "--payout-address is the zero address; give the provider's staked address".into(),
        ));
    }
    Ok(Some(address))
}

/// Opens NVML when GPU evidence is wanted, checking every GPU is in CC mode.
fn gpu_evidence(
    args: &EnclaveArgs,
) -> Result<(Option<Arc<NvidiaGpus>>, serde_json::Value), StartError> {
    let required = match args.gpu {
        GpuChoice::Required => true,
        GpuChoice::Off => false,
        GpuChoice::Auto => args.device == DeviceChoice::Cuda,
    };
    if !required {
        if args.device == DeviceChoice::Cuda {
            tracing::warn!(
                "--gpu off with --device cuda: prompts run on a GPU whose confidential-computing \
                 mode nobody checked; the identity says gpu.mode = off"
            );
        }
        return Ok((None, serde_json::json!({ "mode": "off", "devices": [] })));
    }
    let gpus = NvidiaGpus::open(args.nvml_lib.as_deref())
        .map_err(|e| StartError::Gpu(format!("{e} (or start with --gpu off)")))?;
    let devices = gpus.devices().map_err(|e| StartError::Gpu(e.to_string()))?;
    tracing::info!(
        gpus = devices.len(),
        "GPU confidential-computing evidence available"
    );
    let devices: Vec<serde_json::Value> = devices
        .iter()
        .map(|d| {
            serde_json::json!({
                "index": d.index,
                "uuid": d.uuid,
                "cert_chain_sha256": d.cert_chain_sha256,
            })
        })
        .collect();
    Ok((
        Some(Arc::new(gpus)),
        serde_json::json!({ "mode": "required", "devices": devices }),
    ))
}

/// Hashes the model and loads it so that the engine runs exactly the bytes
/// that were hashed (see [`model::stage`]). Returns the engine, the digest and
/// the manifest.
async fn load_attested_model(
    args: &EnclaveArgs,
    source: &ModelSource,
    options: &EngineOptions,
) -> Result<(Arc<MistralRs>, String, Vec<ManifestEntry>), StartError> {
    if args.no_model_staging {
        let hashing = source.clone();
        let (digest, manifest) = tokio::task::spawn_blocking(move || {
            model::digest_in_place(&hashing, progress_logger())
        })
        .await
        .map_err(|e| StartError::Argument(format!("hashing the model failed: {e}")))??;
        let engine = engine::load(source, options).await?;
        let hashing = source.clone();
        let (after, _) = tokio::task::spawn_blocking(move || {
            model::digest_in_place(&hashing, progress_logger())
        })
        .await
        .map_err(|e| StartError::Argument(format!("hashing the model failed: {e}")))??;
        if after != digest {
            return Err(StartError::Argument(format!(
                "the model files changed while loading (SHA-256 {digest} before, {after} after); \
                 refusing to serve an unknown model"
            )));
        }
        tracing::warn!(
            "model loaded in place (--no-model-staging): files swapped only during the load \
             are caught by dm-verity on the model volume, not by this process"
        );
        return Ok((engine, digest, manifest));
    }
    let staging_root = args.model_staging.clone();
    let copying = source.clone();
    let staged = tokio::task::spawn_blocking(move || {
        model::stage(&copying, &staging_root, progress_logger())
    })
    .await
    .map_err(|e| StartError::Argument(format!("staging the model failed: {e}")))??;
    let engine = engine::load(&staged.source, options).await?;
    let model::StagedModel {
        weights_sha256,
        manifest,
        ..
    } = staged;
    // The staged copy is removed here: the engine holds its own copy of the
    // weights.
    Ok((engine, weights_sha256, manifest))
}

/// Logs hashing progress every few seconds.
fn progress_logger() -> impl FnMut(u64, u64) {
    let mut last = std::time::Instant::now();
    move |done, total| {
        if last.elapsed().as_secs() >= 3 {
            last = std::time::Instant::now();
            let percent = done.saturating_mul(100) / total.max(1);
            tracing::info!(percent, done_bytes = done, "hashing model files");
        }
    }
}

/// Everything before serving: TEE, GPUs, model, keys. Separate from [`run`]
/// so tests can build a node without a listener.
pub async fn prepare(args: &EnclaveArgs) -> Result<Arc<AppState>, StartError> {
    let receipt_domain = receipt_domain(args)?;
    let payout = payout_address(args)?;
    let source = ModelSource::resolve(&args.model, args.model_id.clone())?;
    // Fail on a missing TEE or GPU before spending minutes on the model.
    if args.tee != TeeChoice::Simulated {
        evidence_source(args, [0; 48])?;
    }
    let (gpus, gpu_identity) = gpu_evidence(args)?;
    let options = EngineOptions {
        device: args.device,
        dtype: args.dtype,
        max_batch: args.max_concurrent,
        prefix_cache: args.prefix_cache,
    };
    let (engine, weights_sha256, manifest) = load_attested_model(args, &source, &options).await?;
    let tee = evidence_source(args, simulated_measurement(&source.id, &weights_sha256))?;
    let keys = NodeKeys::generate().map_err(|e| StartError::Keys(e.to_string()))?;
    let limits = Limits {
        max_tokens: args.max_tokens,
        max_request_bytes: args.max_request_bytes,
        body_timeout: args.body_timeout,
        send_timeout: args.send_timeout,
        pad_bucket: args.pad_bucket,
        coalesce: args.coalesce,
        max_quote_generations: args.max_quote_generations,
    };
    let prices = Prices {
        prompt: args.prompt_price,
        completion: args.completion_price,
    };
    let signer = keys.signer_address().to_string();
    let identity = evidence::identity(IdentityParts {
        key_config: &keys.key_config(),
        signer: &signer,
        model: serde_json::json!({
            "id": source.id,
            "weights_sha256": weights_sha256,
            "files": manifest.iter().map(|f| serde_json::json!({
                "name": f.name, "sha256": f.sha256, "bytes": f.bytes,
            })).collect::<Vec<_>>(),
        }),
        runtime: serde_json::json!({
            "device": options.device.to_string(),
            "dtype": options.dtype.to_string(),
            "max_tokens": limits.max_tokens,
            "max_concurrent": args.max_concurrent.get(),
            "prefix_cache": options.prefix_cache,
            "pad_bucket": limits.pad_bucket,
            "coalesce_ms": u64::try_from(limits.coalesce.as_millis()).unwrap_or(u64::MAX),
            "replay_window_s": args.replay_window,
            "request_filter": cloister_protocol::request_filter::FILTER_VERSION,
        }),
        receipts: receipts_identity(&receipt_domain, &prices, payout),
        gpu: gpu_identity,
    });
    tracing::info!(
        signer = %keys.signer_address(),
        model = %source.id,
        weights_sha256 = %weights_sha256,
        chain_id = receipt_domain.chain_id,
        settlement_contract = %receipt_domain.verifying_contract,
        "node identity ready (keys live in memory only)"
    );
    Ok(Arc::new(AppState::new(NodeParts {
        engine,
        model_id: source.id,
        keys,
        evidence: Evidence::new(tee, identity, gpus),
        receipt_domain,
        prices,
        admission: admission::Admission::new(args.max_concurrent.get(), args.queue),
        replay: replay::ReplayGuard::new(args.replay_window, args.replay_capacity),
        limits,
    })))
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
    if let (Some(router), Some(advertise), Some(token)) = (
        args.router.clone(),
        args.advertise.clone(),
        args.join_token.clone(),
    ) {
        tokio::spawn(join::announce(join::JoinTarget {
            router,
            advertise,
            token,
        }));
    }
    let limits = ConnectionLimits {
        header_timeout: args.header_timeout,
        max_connections: args.max_connections,
        ..ConnectionLimits::default()
    };
    server::serve(listener, state, limits, shutdown)
        .await
        .map_err(|source| StartError::Listen { addr, source })
}

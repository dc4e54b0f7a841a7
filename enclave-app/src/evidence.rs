//! The node's identity and the evidence bundles that bind it to a
//! verifier's nonce (DESIGN.md section 3).

use std::sync::Arc;

use base64::Engine as _;
use cloister_attestation::Platform;
use cloister_attestation::binding;
use cloister_attestation::bundle::{Base64Bytes, BundleCerts, EvidenceBundle, GpuEvidence};
use cloister_attestation_collect::nvidia_gpu::{GpuCollectError, NvidiaGpus};
use cloister_attestation_collect::{CollectError, EvidenceSource, HostCertKind, HostCerts, Tee};
use serde_json::{Value, json};

/// The source revision baked in at build time (`CLOISTER_GIT_REV`), if any.
pub const GIT_REV: &str = match option_env!("CLOISTER_GIT_REV") {
    Some(rev) => rev,
    None => "unknown",
};

/// What goes into a node's identity.
#[derive(Debug, Clone)]
pub struct IdentityParts<'a> {
    /// The HPKE key configuration requests are sealed to.
    pub key_config: &'a [u8],
    /// The receipt signer's address (`0x...`).
    pub signer: &'a str,
    /// `{id, weights_sha256, files: [{name, sha256, bytes}]}`.
    pub model: Value,
    /// Settings that change answers or what reaches the wire: device, dtype,
    /// token limit, batching, prefix cache, padding, coalescing, replay
    /// window, request filter version.
    pub runtime: Value,
    /// The receipts' EIP-712 domain and prices.
    pub receipts: Value,
    /// `{mode, devices: [{index, uuid, cert_chain_sha256}]}`.
    pub gpu: Value,
}

/// The identity a node binds into every piece of evidence: its HPKE key
/// configuration, its receipt signer, the model, the app, and every runtime
/// setting that changes answers or charges. A host controls the command
/// line; whatever it chose is attested here for verifiers to check.
pub fn identity(parts: IdentityParts<'_>) -> Value {
    json!({
        "hpke_key_config": base64::engine::general_purpose::STANDARD.encode(parts.key_config),
        "signer": parts.signer,
        "model": parts.model,
        "app": { "version": env!("CARGO_PKG_VERSION"), "git": GIT_REV },
        "runtime": parts.runtime,
        "receipts": parts.receipts,
        "gpu": parts.gpu,
    })
}

/// Why evidence could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// The TEE interface failed.
    #[error("collecting evidence failed: {0}")]
    Collect(#[from] CollectError),
    /// GPU evidence could not be collected.
    #[error("collecting GPU evidence failed: {0}")]
    Gpu(#[from] GpuCollectError),
    /// The collection task died.
    #[error("collecting evidence failed: {0}")]
    Task(String),
}

impl EvidenceError {
    /// Whether asking again may work.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Collect(e) => e.is_retryable(),
            Self::Gpu(e) => e.is_retryable(),
            Self::Task(_) => true,
        }
    }
}

/// Produces evidence bundles for this node.
#[derive(Clone)]
pub struct Evidence {
    source: EvidenceSource,
    identity: Value,
    gpus: Option<Arc<NvidiaGpus>>,
}

impl std::fmt::Debug for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evidence")
            .field("tee", &self.source.tee())
            .field("gpus", &self.gpus.is_some())
            .finish_non_exhaustive()
    }
}

impl Evidence {
    /// Evidence from `source` (and, when given, every GPU through NVML) for
    /// `identity`.
    pub fn new(source: EvidenceSource, identity: Value, gpus: Option<Arc<NvidiaGpus>>) -> Self {
        Self {
            source,
            identity,
            gpus,
        }
    }

    /// The identity bound into every bundle.
    pub fn identity(&self) -> &Value {
        &self.identity
    }

    /// The kind of TEE.
    pub fn tee(&self) -> Tee {
        self.source.tee()
    }

    /// Collects fresh evidence whose report data binds `nonce`, the
    /// identity and every GPU's report for the same nonce, and wraps it in a
    /// bundle.
    pub async fn bundle(&self, nonce: [u8; 32]) -> Result<EvidenceBundle, EvidenceError> {
        let gpu = match &self.gpus {
            None => Vec::new(),
            Some(gpus) => {
                let gpus = gpus.clone();
                tokio::task::spawn_blocking(move || gpus.collect(&nonce))
                    .await
                    .map_err(|e| EvidenceError::Task(e.to_string()))??
                    .into_iter()
                    .map(|g| GpuEvidence {
                        report: Base64Bytes(g.report),
                        cert_chain: g.cert_chain_pem,
                    })
                    .collect()
            }
        };
        let report_data = binding::report_data(
            &nonce,
            &self.identity,
            gpu.iter().map(|g: &GpuEvidence| g.report.0.as_slice()),
        );
        let source = self.source.clone();
        let collected = tokio::task::spawn_blocking(move || source.collect(&report_data))
            .await
            .map_err(|e| EvidenceError::Task(e.to_string()))??;
        let platform = match collected.tee {
            Tee::Tdx => Platform::Tdx,
            Tee::SevSnp => Platform::SevSnp,
            _ => Platform::Simulated,
        };
        Ok(EvidenceBundle {
            version: cloister_attestation::bundle::BUNDLE_VERSION,
            platform,
            evidence: Base64Bytes(collected.evidence),
            certs: snp_certs(&collected.host_certs),
            gpu,
            identity: self.identity.clone(),
            nonce: hex::encode(nonce),
        })
    }
}

/// The host's SEV-SNP certificates as PEM for the bundle.
fn snp_certs(host: &HostCerts) -> BundleCerts {
    let pem_of = |der: &[u8]| -> String {
        if der.starts_with(b"-----BEGIN") {
            String::from_utf8_lossy(der).into_owned()
        } else {
            pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
        }
    };
    let mut certs = BundleCerts::default();
    for cert in &host.0 {
        let pem = Some(pem_of(&cert.data));
        match cert.kind {
            HostCertKind::Vcek => certs.vcek = pem,
            HostCertKind::Vlek => certs.vlek = pem,
            HostCertKind::Ask => certs.ask = pem,
            HostCertKind::Ark => certs.ark = pem,
            _ => {}
        }
    }
    certs
}

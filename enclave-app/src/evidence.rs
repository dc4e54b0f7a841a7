//! The node's identity and the evidence bundles that bind it to a
//! verifier's nonce (DESIGN.md section 3).

use base64::Engine as _;
use cloister_attestation::Platform;
use cloister_attestation::binding;
use cloister_attestation::bundle::{Base64Bytes, BundleCerts, EvidenceBundle};
use cloister_attestation_collect::{CollectError, EvidenceSource, HostCertKind, HostCerts, Tee};
use serde_json::{Value, json};

/// The source revision baked in at build time (`CLOISTER_GIT_REV`), if any.
pub const GIT_REV: &str = match option_env!("CLOISTER_GIT_REV") {
    Some(rev) => rev,
    None => "unknown",
};

/// The identity a node binds into every piece of evidence: its HPKE key
/// configuration, its receipt signer, the model and the app.
pub fn identity(key_config: &[u8], signer: &str, model_id: &str, weights_sha256: &str) -> Value {
    json!({
        "hpke_key_config": base64::engine::general_purpose::STANDARD.encode(key_config),
        "signer": signer,
        "model": { "id": model_id, "weights_sha256": weights_sha256 },
        "app": { "version": env!("CARGO_PKG_VERSION"), "git": GIT_REV },
    })
}

/// Why evidence could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// The TEE interface failed.
    #[error("collecting evidence failed: {0}")]
    Collect(#[from] CollectError),
    /// The collection task died.
    #[error("collecting evidence failed: {0}")]
    Task(String),
}

impl EvidenceError {
    /// Whether asking again may work.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Collect(e) => e.is_retryable(),
            Self::Task(_) => true,
        }
    }
}

/// Produces evidence bundles for this node.
#[derive(Debug, Clone)]
pub struct Evidence {
    source: EvidenceSource,
    identity: Value,
}

impl Evidence {
    /// Evidence from `source` for `identity`.
    pub fn new(source: EvidenceSource, identity: Value) -> Self {
        Self { source, identity }
    }

    /// The identity bound into every bundle.
    pub fn identity(&self) -> &Value {
        &self.identity
    }

    /// The kind of TEE.
    pub fn tee(&self) -> Tee {
        self.source.tee()
    }

    /// Collects fresh evidence whose report data binds `nonce` and the
    /// identity, and wraps it in a bundle.
    pub async fn bundle(&self, nonce: [u8; 32]) -> Result<EvidenceBundle, EvidenceError> {
        let report_data = binding::report_data(&nonce, &self.identity, std::iter::empty::<&[u8]>());
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
            gpu: Vec::new(),
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

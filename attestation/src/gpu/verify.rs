//! NVIDIA GPU evidence verification: device certificate chain to the pinned
//! NVIDIA Device Identity CA, report signature with the leaf key, nonce.
//!
//! Not checked here (later work): OCSP revocation of the device chain and
//! comparison of the measurements with NVIDIA's signed reference values
//! (RIMs). Both need NVIDIA's online services; verdicts say so.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use super::spdm::{GpuReport, SpdmError};
use crate::roots;
use crate::time::Timestamp;
use crate::verdict::{GpuVerdict, ReasonCode};
use crate::x509::{Cert, CertError, parse_pem_chain_capped};

/// Checks a GPU verdict never covers; listed in every verdict with GPUs.
pub const GPU_NOT_CHECKED: [&str; 2] = [
    "gpu: OCSP revocation status of the device certificate chain (needs NVIDIA OCSP)",
    "gpu: measurements against NVIDIA reference integrity manifests (RIM service)",
];

/// Most certificates a device chain may hold. NVIDIA's Hopper chains hold
/// five (device leaf, BROM, provisioner ICA, GH100 identity, root); a longer
/// chain is refused before any signature is checked.
pub const MAX_CHAIN_CERTS: usize = 5;

/// Why GPU evidence failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    /// Not a parseable SPDM report.
    #[error(transparent)]
    Malformed(#[from] SpdmError),
    /// The chain text holds no usable certificate.
    #[error("device certificate chain: {0}")]
    Chain(CertError),
    /// A link in the chain does not verify.
    #[error("device certificate {index}: {error}")]
    ChainInvalid {
        /// Position in the chain, leaf = 0.
        index: usize,
        /// What failed.
        error: CertError,
    },
    /// A certificate is outside its validity period.
    #[error("device certificate {index}: {error}")]
    NotValidAt {
        /// Position in the chain, leaf = 0.
        index: usize,
        /// Details.
        error: CertError,
    },
    /// The chain does not end in NVIDIA's device identity root.
    #[error("the chain ends in {0:?}, not the NVIDIA Device Identity CA")]
    UntrustedRoot(String),
    /// The report signature does not verify with the leaf key.
    #[error("the report signature does not verify with the device leaf key")]
    SignatureInvalid,
    /// The report answers another nonce.
    #[error("the report answers nonce {found}, not {expected}")]
    NonceMismatch {
        /// Nonce the verifier expected (hex).
        expected: String,
        /// Nonce in the report (hex).
        found: String,
    },
}

impl GpuError {
    /// The verdict reason code for this error.
    pub fn code(&self) -> ReasonCode {
        match self {
            Self::Malformed(SpdmError::UnsupportedVersion(_)) => ReasonCode::UnsupportedVersion,
            Self::Malformed(SpdmError::TrailingBytes { .. }) => ReasonCode::TrailingBytes,
            Self::Malformed(_) => ReasonCode::MalformedEvidence,
            Self::Chain(_) | Self::ChainInvalid { .. } => ReasonCode::CertificateChainInvalid,
            Self::NotValidAt { .. } => ReasonCode::CertificateExpired,
            Self::UntrustedRoot(_) => ReasonCode::UntrustedRoot,
            Self::SignatureInvalid => ReasonCode::EvidenceSignatureInvalid,
            Self::NonceMismatch { .. } => ReasonCode::NonceMismatch,
        }
    }
}

/// A GPU report signed by a device key that chains to NVIDIA's root, and
/// (when asked) answering the verifier's nonce. Only this crate can
/// construct one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedGpuReport {
    device: Option<String>,
    nonce: [u8; 32],
    measurements: BTreeMap<u8, Vec<u8>>,
    driver_version: Option<String>,
    vbios_version: Option<String>,
    verified_at: Timestamp,
}

impl VerifiedGpuReport {
    /// Leaf certificate CN (device model).
    pub fn device(&self) -> Option<&str> {
        self.device.as_deref()
    }
    /// The nonce the report answers.
    pub fn nonce(&self) -> &[u8; 32] {
        &self.nonce
    }
    /// Measurements by block index.
    pub fn measurements(&self) -> &BTreeMap<u8, Vec<u8>> {
        &self.measurements
    }
    /// Driver version.
    pub fn driver_version(&self) -> Option<&str> {
        self.driver_version.as_deref()
    }
    /// VBIOS version.
    pub fn vbios_version(&self) -> Option<&str> {
        self.vbios_version.as_deref()
    }
    /// When it was verified.
    pub fn verified_at(&self) -> Timestamp {
        self.verified_at
    }
}

/// Verifies a GPU report with its device chain (PEM, leaf first) at `now`.
/// With `expected_nonce`, the report must answer that nonce.
pub fn verify_report(
    raw: &[u8],
    chain_pem: &[u8],
    expected_nonce: Option<&[u8; 32]>,
    now: Timestamp,
) -> Result<VerifiedGpuReport, GpuError> {
    let report = GpuReport::parse(raw)?;
    let chain = parse_pem_chain_capped(chain_pem, MAX_CHAIN_CERTS).map_err(GpuError::Chain)?;
    verify_parsed(&report, &chain, expected_nonce, now)
}

pub(crate) fn verify_parsed(
    report: &GpuReport<'_>,
    chain: &[Cert],
    expected_nonce: Option<&[u8; 32]>,
    now: Timestamp,
) -> Result<VerifiedGpuReport, GpuError> {
    let leaf = verify_chain(chain, now)?;
    if !crate::crypto::p384_fixed_signature_ok(
        leaf.public_key_bytes(),
        report.signed_bytes(),
        &report.signature,
    ) {
        return Err(GpuError::SignatureInvalid);
    }
    if let Some(expected) = expected_nonce
        && &report.nonce != expected
    {
        return Err(GpuError::NonceMismatch {
            expected: hex::encode(expected),
            found: hex::encode(report.nonce),
        });
    }
    Ok(VerifiedGpuReport {
        device: leaf.subject_cn(),
        nonce: report.nonce,
        measurements: report
            .blocks
            .iter()
            .map(|b| (b.index, b.value.to_vec()))
            .collect(),
        driver_version: report.driver_version(),
        vbios_version: report.vbios_version(),
        verified_at: now,
    })
}

/// The pinned NVIDIA root, parsed once.
fn pinned_root() -> Result<&'static Cert, GpuError> {
    static ROOT: OnceLock<Result<Cert, CertError>> = OnceLock::new();
    ROOT.get_or_init(|| Cert::from_pem_or_der(roots::NVIDIA_DEVICE_IDENTITY_CA_PEM))
        .as_ref()
        .map_err(|e| GpuError::Chain(e.clone()))
}

/// Verifies each link, leaf first, ending in the pinned root (trusted as
/// pinned: its self-signature adds nothing); returns the leaf.
///
/// Everything that costs no signature check comes first, for every
/// certificate: the length cap, the leaf being a signing key, every issuer
/// being a CA allowed to issue at its depth, validity. Only then are the
/// signatures checked.
fn verify_chain(chain: &[Cert], now: Timestamp) -> Result<&Cert, GpuError> {
    if chain.len() > MAX_CHAIN_CERTS {
        return Err(GpuError::Chain(CertError::ChainTooLong {
            found: chain.len(),
            max: MAX_CHAIN_CERTS,
        }));
    }
    let root = pinned_root()?;
    let leaf = chain.first().ok_or(GpuError::Chain(CertError::Empty))?;
    for (index, cert) in chain.iter().enumerate() {
        let usage = match index {
            0 => cert.check_signing_leaf(),
            // CA certificates between this one and the leaf.
            _ => cert.check_may_issue(index - 1),
        };
        usage.map_err(|error| GpuError::ChainInvalid { index, error })?;
        cert.check_valid_at(now)
            .map_err(|error| GpuError::NotValidAt { index, error })?;
    }
    for (index, cert) in chain.iter().enumerate() {
        match chain.get(index + 1) {
            Some(issuer) => cert
                .verify_p384_signed_by(issuer)
                .map_err(|error| GpuError::ChainInvalid { index, error })?,
            // The chain ends in the pinned root itself, or in a certificate
            // the pinned root signed.
            None if cert.der() == root.der() => {}
            None => {
                root.check_may_issue(index)
                    .map_err(|error| GpuError::ChainInvalid {
                        index: index + 1,
                        error,
                    })?;
                cert.verify_p384_signed_by(root)
                    .map_err(|_| GpuError::UntrustedRoot(cert.subject()))?;
            }
        }
    }
    Ok(leaf)
}

/// Verifies one GPU report and records the outcome as a [`GpuVerdict`].
pub fn appraise(
    raw: &[u8],
    chain_pem: &[u8],
    expected_nonce: Option<&[u8; 32]>,
    now: Timestamp,
) -> GpuVerdict {
    let mut verdict = GpuVerdict {
        accepted: false,
        device: None,
        driver_version: None,
        vbios_version: None,
        nonce: None,
        measurements: BTreeMap::new(),
        reasons: Vec::new(),
    };
    let report = match GpuReport::parse(raw) {
        Ok(report) => report,
        Err(e) => {
            let e = GpuError::from(e);
            verdict
                .reasons
                .push(crate::verdict::Reason::new(e.code(), e.to_string()));
            return verdict;
        }
    };
    verdict.nonce = Some(hex::encode(report.nonce));
    verdict.driver_version = report.driver_version();
    verdict.vbios_version = report.vbios_version();
    verdict.measurements = report
        .blocks
        .iter()
        .map(|b| (b.index, hex::encode(b.value)))
        .collect();
    let result = parse_pem_chain_capped(chain_pem, MAX_CHAIN_CERTS)
        .map_err(GpuError::Chain)
        .and_then(|chain| verify_parsed(&report, &chain, expected_nonce, now));
    match result {
        Ok(verified) => {
            verdict.device = verified.device;
            verdict.accepted = true;
        }
        Err(e) => verdict
            .reasons
            .push(crate::verdict::Reason::new(e.code(), e.to_string())),
    }
    verdict
}

/// A whole verdict for one GPU report on its own (`cloister verify gpu`).
pub fn verdict(
    raw: &[u8],
    chain_pem: &[u8],
    expected_nonce: Option<&[u8; 32]>,
    now: Timestamp,
) -> crate::verdict::Verdict {
    let gpu = appraise(raw, chain_pem, expected_nonce, now);
    let mut v = crate::verdict::Verdict::new(crate::verdict::Platform::NvidiaGpu, now);
    for (index, digest) in &gpu.measurements {
        v.measurements
            .insert(format!("block{index:02}"), digest.clone());
    }
    let facts = [
        ("device", &gpu.device),
        ("driver_version", &gpu.driver_version),
        ("vbios_version", &gpu.vbios_version),
        ("nonce", &gpu.nonce),
    ];
    for (key, value) in facts {
        if let Some(value) = value {
            v.facts.insert(key.into(), value.clone());
        }
    }
    v.reasons = gpu.reasons;
    v.not_checked = GPU_NOT_CHECKED.iter().map(|s| (*s).to_owned()).collect();
    v.settle(Some(
        "gpu: device chain to NVIDIA Device Identity CA, report signed by the device".into(),
    ));
    v
}

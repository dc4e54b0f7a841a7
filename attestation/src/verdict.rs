//! The serialisable outcome of verifying evidence against a policy.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Which kind of evidence a verdict is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Platform {
    /// Intel TDX (DCAP quote v4/v5).
    Tdx,
    /// AMD SEV-SNP attestation report.
    SevSnp,
    /// An Intel SGX enclave quote (recognised, never accepted as a TDX node).
    Sgx,
    /// NVIDIA Hopper/Blackwell confidential-computing GPU (SPDM measurements).
    NvidiaGpu,
    /// The software TEE for development. Proves nothing about hardware.
    Simulated,
}

impl Platform {
    /// The name used in JSON, bundles and policy files.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tdx => "tdx",
            Self::SevSnp => "sev-snp",
            Self::Sgx => "sgx",
            Self::NvidiaGpu => "nvidia-gpu",
            Self::Simulated => "simulated",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whose fault a failed check is, and so who can fix it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Fault {
    /// The evidence is forged, corrupted or from the wrong kind of machine.
    Evidence,
    /// The evidence is genuine but the platform or workload is outside the
    /// policy (TCB too old, debug enabled, unknown measurement, ...).
    Platform,
    /// The collateral (TCB info, CRLs, certificates) is missing, stale or does
    /// not belong to this evidence: fetching fresh collateral may fix it.
    Collateral,
    /// The caller's own input: wrong nonce, wrong identity, wrong file.
    Caller,
}

/// Stable machine-readable reason codes. Their JSON names never change
/// meaning; new ones may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReasonCode {
    // --- the evidence itself ---
    /// Not parseable as the claimed kind of evidence.
    MalformedEvidence,
    /// A version this verifier does not know.
    UnsupportedVersion,
    /// Evidence of another platform (for example an SGX quote for TDX).
    WrongPlatform,
    /// Non-zero bytes after the signed structure.
    TrailingBytes,
    /// The signature over the evidence does not verify.
    EvidenceSignatureInvalid,
    /// The Quoting Enclave report is not signed by the PCK key.
    QeReportSignatureInvalid,
    /// The QE report does not bind the attestation key.
    QeReportBindingInvalid,
    /// The QE does not match Intel's QE identity.
    QeIdentityMismatch,
    /// TD attributes that the DCAP verifier never accepts
    /// (SEPT_VE_DISABLE off, migratable, reserved bits).
    TdAttributesRefused,
    /// Reported TCB differs from the TCB in the signing key's certificate.
    TcbMismatch,
    /// The chip id in the report differs from the key certificate's hwID.
    ChipIdMismatch,
    /// No TCB level in the collateral matches the platform.
    TcbLevelNotFound,
    /// The platform's TCB is revoked.
    TcbRevoked,
    // --- certificates and collateral ---
    /// The chain does not end in the pinned vendor root.
    UntrustedRoot,
    /// A certificate in the chain is not signed by its issuer or is malformed.
    CertificateChainInvalid,
    /// A certificate is outside its validity period at the verification time.
    CertificateExpired,
    /// A certificate in the chain is revoked.
    CertificateRevoked,
    /// A certificate is not of the right kind (product, key type, usage).
    CertificateMismatch,
    /// Collateral is not yet valid at the verification time.
    CollateralNotYetValid,
    /// Collateral has expired at the verification time.
    CollateralExpired,
    /// A collateral signature does not verify.
    CollateralSignatureInvalid,
    /// The collateral is for another platform (FMSPC, TEE type).
    CollateralMismatch,
    /// The collateral is not parseable.
    CollateralMalformed,
    /// The collateral is older than the policy's minimum (TDX TCB
    /// evaluation data number).
    CollateralTooOld,
    /// The DCAP verifier failed in a way this crate does not classify.
    VerifierError,
    // --- policy ---
    /// TCB status not in the policy's accepted list.
    TcbStatusNotAccepted,
    /// A non-UpToDate TCB accepted only until a grace date that has passed.
    TcbGraceExpired,
    /// Reported TCB below the policy's minimum.
    TcbBelowMinimum,
    /// Debug TD or debuggable SNP guest.
    DebugEnabled,
    /// SNP guest policy allows a migration agent.
    MigrationAgentAllowed,
    /// SNP guest policy allows SMT and the policy forbids it.
    SmtNotAllowed,
    /// SNP report requested at a VMPL the policy does not accept.
    VmplNotAllowed,
    /// A measurement register not on the policy's allowlist.
    MeasurementNotAllowed,
    /// The platform is not allowed by the policy.
    PlatformNotAllowed,
    /// Simulated evidence and a policy that does not allow it.
    SimulatedNotAllowed,
    /// The policy requires GPU evidence and none was given.
    GpuEvidenceMissing,
    /// The model's weights digest is not on the policy's allowlist.
    ModelNotAllowed,
    // --- binding to the verifier's request ---
    /// The report data is not the binding of the nonce and identity.
    ReportDataMismatch,
    /// The nonce in the evidence is not the one the verifier chose.
    NonceMismatch,
}

impl ReasonCode {
    /// The stable snake_case name used in JSON.
    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Whose fault it is.
    pub const fn fault(self) -> Fault {
        use ReasonCode::*;
        match self {
            MalformedEvidence
            | UnsupportedVersion
            | WrongPlatform
            | TrailingBytes
            | EvidenceSignatureInvalid
            | QeReportSignatureInvalid
            | QeReportBindingInvalid
            | QeIdentityMismatch
            | TcbMismatch
            | ChipIdMismatch
            | UntrustedRoot
            | CertificateChainInvalid
            | CertificateRevoked
            | CertificateMismatch => Fault::Evidence,
            TdAttributesRefused
            | TcbLevelNotFound
            | TcbRevoked
            | TcbStatusNotAccepted
            | TcbGraceExpired
            | TcbBelowMinimum
            | DebugEnabled
            | MigrationAgentAllowed
            | SmtNotAllowed
            | VmplNotAllowed
            | MeasurementNotAllowed
            | PlatformNotAllowed
            | SimulatedNotAllowed
            | GpuEvidenceMissing
            | ModelNotAllowed => Fault::Platform,
            CertificateExpired
            | CollateralNotYetValid
            | CollateralExpired
            | CollateralSignatureInvalid
            | CollateralMismatch
            | CollateralMalformed
            | CollateralTooOld
            | VerifierError => Fault::Collateral,
            ReportDataMismatch | NonceMismatch => Fault::Caller,
        }
    }

    /// Whether trying again (with fresh collateral or a fresh quote) can
    /// change the outcome without anyone changing the platform.
    pub const fn retry_may_help(self) -> bool {
        matches!(
            self,
            Self::CollateralNotYetValid
                | Self::CollateralExpired
                | Self::CollateralMismatch
                | Self::CollateralTooOld
                | Self::CertificateExpired
                | Self::TcbLevelNotFound
                | Self::NonceMismatch
                | Self::ReportDataMismatch
        )
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// One reason a verdict is negative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Stable code.
    pub code: ReasonCode,
    /// Human explanation with the values involved.
    pub detail: String,
    /// Whose fault it is.
    pub fault: Fault,
    /// Whether retrying with fresh collateral or evidence may help.
    pub retry_may_help: bool,
}

impl Reason {
    /// A reason with the fault and retry hint that belong to its code.
    pub fn new(code: ReasonCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            fault: code.fault(),
            retry_may_help: code.retry_may_help(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

/// The verdict on one GPU report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuVerdict {
    /// Whether the GPU evidence verified and passed the policy.
    pub accepted: bool,
    /// Device model from the leaf certificate (e.g. `GH100 A01 GSP FMC LF`).
    pub device: Option<String>,
    /// Driver version reported in the signed opaque data.
    pub driver_version: Option<String>,
    /// VBIOS version reported in the signed opaque data.
    pub vbios_version: Option<String>,
    /// SPDM request nonce (hex).
    pub nonce: Option<String>,
    /// Measurement blocks by index (hex digests).
    pub measurements: BTreeMap<u8, String>,
    /// Every failed check.
    pub reasons: Vec<Reason>,
}

/// The outcome of verifying one piece of evidence against a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// True when the evidence is genuine, fresh where that was asked, and
    /// accepted by the policy: `reasons` is then empty.
    pub accepted: bool,
    /// Kind of evidence.
    pub platform: Platform,
    /// True when any part of this verdict rests on simulated evidence.
    pub simulated: bool,
    /// The time the verification was made at.
    pub verified_at: Timestamp,
    /// TCB status. TDX: Intel's status from the TCB info. SEV-SNP (AMD
    /// publishes no status): `MeetsMinimum` or `BelowMinimum` against the
    /// policy's `sev_snp.min_tcb` for the product, `NoMinimum` when the
    /// policy sets none. Absent when the evidence did not verify.
    pub tcb_status: Option<String>,
    /// Intel security advisories that apply to this platform's TCB.
    pub advisory_ids: Vec<String>,
    /// Measurement registers and identity fields, hex.
    pub measurements: BTreeMap<String, String>,
    /// Other facts about the evidence (product, signing key, FMSPC, ...).
    pub facts: BTreeMap<String, String>,
    /// GPU evidence verdicts, in bundle order.
    pub gpus: Vec<GpuVerdict>,
    /// The policy rule that accepted the evidence, when accepted.
    pub policy_rule: Option<String>,
    /// Every failed check, in the order found.
    pub reasons: Vec<Reason>,
    /// Checks this verifier did not perform and the verdict does not cover.
    pub not_checked: Vec<String>,
}

impl Verdict {
    /// An empty verdict for a platform, to be filled in by a verifier.
    pub(crate) fn new(platform: Platform, verified_at: Timestamp) -> Self {
        Self {
            accepted: false,
            platform,
            simulated: matches!(platform, Platform::Simulated),
            verified_at,
            tcb_status: None,
            advisory_ids: Vec::new(),
            measurements: BTreeMap::new(),
            facts: BTreeMap::new(),
            gpus: Vec::new(),
            policy_rule: None,
            reasons: Vec::new(),
            not_checked: Vec::new(),
        }
    }

    pub(crate) fn reject(&mut self, code: ReasonCode, detail: impl Into<String>) {
        self.reasons.push(Reason::new(code, detail));
    }

    /// Rejects with [`ReasonCode::ReportDataMismatch`] unless the evidence's
    /// report data is the expected binding (when one is expected).
    pub(crate) fn check_report_data(&mut self, actual: &[u8; 64], expected: Option<&[u8; 64]>) {
        if let Some(expected) = expected
            && actual != expected
        {
            self.reject(
                ReasonCode::ReportDataMismatch,
                format!(
                    "report data {} is not the expected binding {}",
                    hex::encode(actual),
                    hex::encode(expected)
                ),
            );
        }
    }

    /// Rejects with [`ReasonCode::PlatformNotAllowed`] unless the policy
    /// allows this verdict's platform, and notes in `not_checked` when the
    /// policy pins no code measurement for it.
    pub(crate) fn check_platform_allowed(&mut self, policy: &crate::Policy) {
        if !policy.allows_platform(self.platform) {
            let listed: Vec<&str> = policy.platforms.iter().map(|p| p.as_str()).collect();
            self.reject(
                ReasonCode::PlatformNotAllowed,
                format!(
                    "{} evidence, and the policy's platforms are {listed:?}",
                    self.platform
                ),
            );
        }
        if let Some(note) = policy.unpinned_note(self.platform) {
            self.not_checked.push(note);
        }
    }

    /// Sets `accepted` from the reasons (and the GPU verdicts).
    pub(crate) fn settle(&mut self, rule: Option<String>) {
        self.accepted = self.reasons.is_empty() && self.gpus.iter().all(|g| g.accepted);
        self.policy_rule = if self.accepted { rule } else { None };
    }

    /// The codes of all reasons, GPU reasons included.
    pub fn reason_codes(&self) -> Vec<ReasonCode> {
        self.reasons
            .iter()
            .chain(self.gpus.iter().flat_map(|g| g.reasons.iter()))
            .map(|r| r.code)
            .collect()
    }

    /// Whether any reason (GPU reasons included) has this code.
    pub fn has_reason(&self, code: ReasonCode) -> bool {
        self.reason_codes().contains(&code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_serialise_as_stable_snake_case() {
        assert_eq!(
            ReasonCode::EvidenceSignatureInvalid.as_str(),
            "evidence_signature_invalid"
        );
        assert_eq!(
            ReasonCode::TcbStatusNotAccepted.to_string(),
            "tcb_status_not_accepted"
        );
        let json = serde_json::to_string(&Reason::new(ReasonCode::CollateralExpired, "x")).unwrap();
        assert_eq!(
            json,
            r#"{"code":"collateral_expired","detail":"x","fault":"collateral","retry_may_help":true}"#
        );
    }

    #[test]
    fn platform_names_match_the_bundle_format() {
        assert_eq!(
            serde_json::to_string(&Platform::SevSnp).unwrap(),
            "\"sev-snp\""
        );
        assert_eq!(Platform::NvidiaGpu.to_string(), "nvidia-gpu");
    }
}

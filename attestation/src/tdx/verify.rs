//! TDX quote verification: our parser for structure and spans, `dcap-qvl`
//! for the DCAP chain of trust, its string errors mapped to typed ones.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::collateral::TdxCollateral;
use super::quote::{Quote, QuoteError, TdReport, TeeType};
use crate::roots;
use crate::time::Timestamp;
use crate::verdict::ReasonCode;

/// Intel TCB status of a platform, as in Intel's TCB info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TcbStatus {
    /// Fully patched.
    UpToDate,
    /// Patched; software hardening is needed against some advisories.
    SWHardeningNeeded,
    /// Patched; platform configuration is needed.
    ConfigurationNeeded,
    /// Both of the above.
    ConfigurationAndSWHardeningNeeded,
    /// Not patched against some advisories.
    OutOfDate,
    /// Not patched, and configuration needed.
    OutOfDateConfigurationNeeded,
    /// Keys compromised: never acceptable.
    Revoked,
}

impl TcbStatus {
    /// Intel's name for the status.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::UpToDate => "UpToDate",
            Self::SWHardeningNeeded => "SWHardeningNeeded",
            Self::ConfigurationNeeded => "ConfigurationNeeded",
            Self::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            Self::OutOfDate => "OutOfDate",
            Self::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            Self::Revoked => "Revoked",
        }
    }
}

impl FromStr for TcbStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::UpToDate,
            Self::SWHardeningNeeded,
            Self::ConfigurationNeeded,
            Self::ConfigurationAndSWHardeningNeeded,
            Self::OutOfDate,
            Self::OutOfDateConfigurationNeeded,
            Self::Revoked,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| format!("unknown TCB status {s:?}"))
    }
}

impl fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which collateral item a time or signature failure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CollateralItem {
    /// Intel's signed TCB info.
    TcbInfo,
    /// Intel's signed QE identity.
    QeIdentity,
    /// A certificate revocation list.
    Crl,
}

impl fmt::Display for CollateralItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TcbInfo => "TCB info",
            Self::QeIdentity => "QE identity",
            Self::Crl => "CRL",
        })
    }
}

/// Why a TDX quote failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TdxError {
    /// Not a parseable DCAP quote.
    #[error(transparent)]
    Malformed(#[from] QuoteError),
    /// A valid DCAP quote, but not from a TD (an SGX enclave quote).
    #[error("this is a {tee} quote (version {version}), not a TDX quote")]
    NotTdx {
        /// TEE type of the quote.
        tee: TeeType,
        /// Quote version.
        version: u16,
    },
    /// Collateral not yet valid at the verification time.
    #[error("{item} is not valid yet at {at}")]
    CollateralNotYetValid {
        /// Which item.
        item: CollateralItem,
        /// Verification time.
        at: Timestamp,
    },
    /// Collateral expired at the verification time.
    #[error("{item} has expired at {at}")]
    CollateralExpired {
        /// Which item.
        item: CollateralItem,
        /// Verification time.
        at: Timestamp,
    },
    /// Intel's signature over collateral does not verify.
    #[error("Intel's signature over the {0} does not verify")]
    CollateralSignatureInvalid(CollateralItem),
    /// Collateral for another platform or TEE.
    #[error("collateral does not belong to this quote: {0}")]
    CollateralMismatch(String),
    /// Collateral that cannot be parsed.
    #[error("collateral is malformed: {0}")]
    CollateralMalformed(String),
    /// The PCK chain in the quote carries a root that is not the pinned
    /// Intel SGX Root CA.
    #[error("the PCK chain in the quote ends in a root that is not the Intel SGX Root CA")]
    UntrustedRoot,
    /// A certificate chain (PCK, TCB signing) does not verify to the Intel root.
    #[error("certificate chain does not verify to the Intel SGX Root CA: {0}")]
    CertificateChain(String),
    /// A certificate outside its validity period.
    #[error("certificate not valid at {at}: {detail}")]
    CertificateExpired {
        /// What the verifier reported.
        detail: String,
        /// Verification time.
        at: Timestamp,
    },
    /// A revoked certificate.
    #[error("certificate revoked: {0}")]
    CertificateRevoked(String),
    /// The PCK key did not sign the QE report.
    #[error("the QE report is not signed by the PCK key")]
    QeReportSignatureInvalid,
    /// The QE report does not bind the attestation key.
    #[error("the QE report does not bind the attestation key and QE auth data")]
    QeReportBindingInvalid,
    /// The QE is not Intel's TD QE at an acceptable version.
    #[error("the quoting enclave does not match Intel's QE identity: {0}")]
    QeIdentityMismatch(String),
    /// The attestation key did not sign the header and body.
    #[error("the quote signature over header and TD report does not verify")]
    QuoteSignatureInvalid,
    /// No TCB level in the TCB info matches the platform.
    #[error("no TCB level in the collateral matches this platform: {0}")]
    TcbLevelNotFound(String),
    /// The platform's TCB is revoked.
    #[error("the platform TCB is revoked")]
    TcbRevoked,
    /// TD attributes that the DCAP verifier never accepts.
    #[error("TD attributes refused: {0}")]
    TdAttributesRefused(String),
    /// A failure the mapping does not classify; the message is `dcap-qvl`'s.
    #[error("DCAP verification failed: {0}")]
    Unclassified(String),
}

impl TdxError {
    /// The verdict reason code for this error.
    pub fn code(&self) -> ReasonCode {
        match self {
            Self::Malformed(e) => e.code(),
            Self::NotTdx { .. } => ReasonCode::WrongPlatform,
            Self::CollateralNotYetValid { .. } => ReasonCode::CollateralNotYetValid,
            Self::CollateralExpired { .. } => ReasonCode::CollateralExpired,
            Self::CollateralSignatureInvalid(_) => ReasonCode::CollateralSignatureInvalid,
            Self::CollateralMismatch(_) => ReasonCode::CollateralMismatch,
            Self::CollateralMalformed(_) => ReasonCode::CollateralMalformed,
            Self::UntrustedRoot => ReasonCode::UntrustedRoot,
            Self::CertificateChain(_) => ReasonCode::CertificateChainInvalid,
            Self::CertificateExpired { .. } => ReasonCode::CertificateExpired,
            Self::CertificateRevoked(_) => ReasonCode::CertificateRevoked,
            Self::QeReportSignatureInvalid => ReasonCode::QeReportSignatureInvalid,
            Self::QeReportBindingInvalid => ReasonCode::QeReportBindingInvalid,
            Self::QeIdentityMismatch(_) => ReasonCode::QeIdentityMismatch,
            Self::QuoteSignatureInvalid => ReasonCode::EvidenceSignatureInvalid,
            Self::TcbLevelNotFound(_) => ReasonCode::TcbLevelNotFound,
            Self::TcbRevoked => ReasonCode::TcbRevoked,
            Self::TdAttributesRefused(_) => ReasonCode::TdAttributesRefused,
            Self::Unclassified(_) => ReasonCode::VerifierError,
        }
    }
}

impl QuoteError {
    /// The verdict reason code for this parse error.
    pub fn code(&self) -> ReasonCode {
        match self {
            Self::UnsupportedVersion(_) => ReasonCode::UnsupportedVersion,
            Self::UnsupportedTeeType(_) | Self::VersionMismatch { .. } => ReasonCode::WrongPlatform,
            Self::TrailingBytes { .. } => ReasonCode::TrailingBytes,
            _ => ReasonCode::MalformedEvidence,
        }
    }
}

/// A TDX quote whose signatures, certificate chains, collateral and TCB level
/// verified at a given time. Only this crate can construct one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTdxQuote {
    version: u16,
    td: TdReport,
    tcb_status: TcbStatus,
    advisory_ids: Vec<String>,
    platform_status: TcbStatus,
    qe_status: TcbStatus,
    fmspc: String,
    verified_at: Timestamp,
}

impl VerifiedTdxQuote {
    /// Quote version (4 or 5).
    pub fn version(&self) -> u16 {
        self.version
    }
    /// The TD report, including measurements and report data.
    pub fn td_report(&self) -> &TdReport {
        &self.td
    }
    /// Combined TCB status (platform, TDX module and QE).
    pub fn tcb_status(&self) -> TcbStatus {
        self.tcb_status
    }
    /// Intel security advisories that apply.
    pub fn advisory_ids(&self) -> &[String] {
        &self.advisory_ids
    }
    /// Platform TCB status alone.
    pub fn platform_status(&self) -> TcbStatus {
        self.platform_status
    }
    /// Quoting enclave TCB status alone.
    pub fn qe_status(&self) -> TcbStatus {
        self.qe_status
    }
    /// FMSPC of the platform (from the matching TCB info).
    pub fn fmspc(&self) -> &str {
        &self.fmspc
    }
    /// When it was verified.
    pub fn verified_at(&self) -> Timestamp {
        self.verified_at
    }
}

/// Verifies a TDX quote against collateral at time `now`.
///
/// Checks: structure, version and TEE type (ours); PCK chain to the pinned
/// Intel SGX Root CA, CRLs, TCB info and QE identity signatures and validity,
/// QE report signature and binding, quote signature, TCB level, and the TD
/// attributes `dcap-qvl` always enforces (`dcap-qvl`). Debug TDs pass here:
/// whether a debug TD is acceptable is policy (see [`crate::policy`]).
pub fn verify_quote(
    raw: &[u8],
    collateral: &TdxCollateral,
    now: Timestamp,
) -> Result<VerifiedTdxQuote, TdxError> {
    let quote = Quote::parse(raw)?;
    verify_parsed(&quote, collateral, now)
}

/// As [`verify_quote`], for a quote already parsed.
pub fn verify_parsed(
    quote: &Quote<'_>,
    collateral: &TdxCollateral,
    now: Timestamp,
) -> Result<VerifiedTdxQuote, TdxError> {
    let Some(td) = quote.td_report() else {
        return Err(TdxError::NotTdx {
            tee: quote.header.tee_type,
            version: quote.header.version,
        });
    };
    check_embedded_chain(quote)?;
    let verifier = dcap_qvl::verify::QuoteVerifier::new(roots::INTEL_SGX_ROOT_CA_DER.to_vec())
        .allow_debug(true);
    let report = verifier
        .verify(quote.raw(), &collateral.inner, now.unix())
        .map_err(|e| classify(&e, now))?;
    let status = |s: &str| TcbStatus::from_str(s).map_err(TdxError::Unclassified);
    Ok(VerifiedTdxQuote {
        version: quote.header.version,
        td: td.clone(),
        tcb_status: status(&report.status)?,
        advisory_ids: report.advisory_ids,
        platform_status: status(&report.platform_status.status.to_string())?,
        qe_status: status(&report.qe_status.status.to_string())?,
        fmspc: collateral.fmspc().to_ascii_uppercase(),
        verified_at: now,
    })
}

/// Real quotes carry the PCK leaf, the PCK CA and a copy of the root. The
/// chain must be strict PEM (see [`Quote::pck_chain`]); the verifier
/// anchors in its pinned root, never the copy, but a copy that differs from
/// the pinned root is refused, so a quote naming any root but Intel's never
/// verifies.
fn check_embedded_chain(quote: &Quote<'_>) -> Result<(), TdxError> {
    let chain = quote.pck_chain().map_err(TdxError::CertificateChain)?;
    match chain.as_slice() {
        [_, _, .., root] if root.as_slice() != roots::INTEL_SGX_ROOT_CA_DER => {
            Err(TdxError::UntrustedRoot)
        }
        _ => Ok(()),
    }
}

/// Maps a `dcap-qvl` error (an `anyhow` chain of strings; `{:#}` prints the
/// whole chain) to a typed error.
///
/// `dcap-qvl` is pinned to an exact version and every mapping below is
/// exercised by a test on real vectors, so a changed message shows up as a
/// failing test rather than a silently unclassified verdict.
fn classify(err: &impl fmt::Display, now: Timestamp) -> TdxError {
    let outer = err.to_string();
    let chain = format!("{err:#}");
    let has = |needle: &str| chain.contains(needle);
    use CollateralItem::*;
    match outer.as_str() {
        "TCBInfo issue date is in the future" => TdxError::CollateralNotYetValid {
            item: TcbInfo,
            at: now,
        },
        "TCBInfo expired" => TdxError::CollateralExpired {
            item: TcbInfo,
            at: now,
        },
        "QE Identity issue date is in the future" => TdxError::CollateralNotYetValid {
            item: QeIdentity,
            at: now,
        },
        "QE Identity expired" => TdxError::CollateralExpired {
            item: QeIdentity,
            at: now,
        },
        "Signature is invalid for tcb_info in quote_collateral" => {
            TdxError::CollateralSignatureInvalid(TcbInfo)
        }
        "Signature is invalid for qe_identity in quote_collateral" => {
            TdxError::CollateralSignatureInvalid(QeIdentity)
        }
        "Signature is invalid for qe_report in quote" => TdxError::QeReportSignatureInvalid,
        "QE report hash mismatch" | "Invalid QE auth data length" => {
            TdxError::QeReportBindingInvalid
        }
        "ISV enclave report signature is invalid" => TdxError::QuoteSignatureInvalid,
        "No matching TCB level found" => TdxError::TcbLevelNotFound(chain),
        "TCB status is invalid: Revoked" => TdxError::TcbRevoked,
        "Fmspc mismatch"
        | "TDX quote with non-TDX TCB info in the collateral"
        | "SGX quote with non-SGX TCB info in the collateral" => {
            TdxError::CollateralMismatch(chain)
        }
        _ if outer.starts_with("Unsupported QE Identity id/version") => {
            TdxError::CollateralMismatch(chain)
        }
        _ if outer.starts_with("Failed to extract PCK certificates")
            || outer.starts_with("Failed to parse PCK certificate")
            || outer.starts_with("Certificate chain is too short in quote")
            || outer.starts_with("Unsupported DCAP PCK cert format") =>
        {
            TdxError::CertificateChain(chain)
        }
        "Reserved bits in TD attributes are set"
        | "TD migration is enabled"
        | "SERVTD_EXT is enabled"
        | "SEPT_VE_DISABLE is not enabled"
        | "Invalid MR service TD" => TdxError::TdAttributesRefused(outer),
        _ if outer.starts_with("QE MRSIGNER mismatch")
            || outer.starts_with("QE ISVPRODID mismatch")
            || outer.starts_with("QE MISCSELECT mismatch")
            || outer.starts_with("QE ATTRIBUTES mismatch")
            || outer.starts_with("QE report validation failed") =>
        {
            TdxError::QeIdentityMismatch(chain)
        }
        _ if outer.starts_with("TDX module") || has("is below minimum required") => {
            TdxError::TcbLevelNotFound(chain)
        }
        _ if has("CrlExpired") || has("CrlNotValidYet") => {
            TdxError::CollateralExpired { item: Crl, at: now }
        }
        _ if has("CertExpired") || has("CertNotValidYet") => TdxError::CertificateExpired {
            detail: chain,
            at: now,
        },
        _ if has("CertRevoked") => TdxError::CertificateRevoked(chain),
        _ if has("InvalidCrlSignatureForPublicKey") => TdxError::CollateralSignatureInvalid(Crl),
        _ if outer.starts_with("Failed to verify certificate chain")
            || outer.starts_with("Certificate chain is too short")
            || outer.contains("must be issued directly by the root CA")
            || has("UnknownIssuer")
            || has("BadSignature")
            || has("InvalidSignatureForPublicKey") =>
        {
            TdxError::CertificateChain(chain)
        }
        _ if outer.starts_with("Failed to decode TcbInfo")
            || outer.starts_with("Failed to decode QeIdentity")
            || outer.starts_with("Failed to parse")
            || outer.contains("CRL")
            || outer.starts_with("Failed to extract certs")
            || outer.starts_with("Failed to load") =>
        {
            TdxError::CollateralMalformed(chain)
        }
        _ => TdxError::Unclassified(chain),
    }
}

//! AMD SEV-SNP: attestation report parsing, verification and appraisal.

mod appraise;
mod report;
mod verify;

pub use appraise::appraise;
pub use report::{
    GuestPolicy, PlatformInfo, Product, REPORT_LEN, Report, ReportError, SIGNED_LEN, SigningKey,
    Tcb,
};
pub use verify::{
    ChainCert, SnpCertChain, SnpError, VerifiedSnpReport, verify_parsed, verify_report,
};

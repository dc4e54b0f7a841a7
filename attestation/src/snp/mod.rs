//! AMD SEV-SNP: attestation report parsing, verification and appraisal.

mod appraise;
mod crl;
mod report;
mod verify;

pub use appraise::appraise;
pub use crl::{AmdCrl, CRL_NOT_CHECKED, CrlError};
pub use report::{
    GuestPolicy, PlatformInfo, Product, REPORT_LEN, Report, ReportError, SIGNED_LEN, SigningKey,
    Tcb,
};
pub use verify::{
    ChainCert, SnpCertChain, SnpError, VerifiedSnpReport, verify_parsed, verify_report,
};

//! Intel TDX: DCAP quote parsing, verification and appraisal.

mod appraise;
mod collateral;
mod quote;
mod verify;

pub use appraise::appraise;
pub use collateral::{CollateralError, TdxCollateral};
pub use quote::{
    Body, CERT_TYPE_PCK_CHAIN, Header, INTEL_QE_VENDOR_ID, Quote, QuoteError, SgxReport,
    SignatureData, SignedSpans, TdAttributes, TdReport, TeeType,
};
pub use verify::{
    CollateralItem, TcbStatus, TdxError, VerifiedTdxQuote, verify_parsed, verify_quote,
};

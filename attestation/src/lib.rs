//! Cloister attestation: parse and verify hardware evidence, bind it to a
//! verifier's nonce and a node's identity, and appraise it against a policy.
//!
//! Everything here is pure: time and collateral are arguments, nothing reads
//! files, the network or the clock. Evidence collection (configfs-tsm,
//! `/dev/sev-guest`) and collateral fetching live in `cloister-attestation-collect`.
//!
//! Verification functions return proof types ([`tdx::VerifiedTdxQuote`],
//! [`snp::VerifiedSnpReport`], [`gpu::VerifiedGpuReport`]) that only this
//! crate can construct; appraisal turns them into a serialisable
//! [`Verdict`] under a [`Policy`].

#![forbid(unsafe_code)]

pub mod binding;
pub mod bundle;
mod crypto;
pub mod gpu;
pub mod policy;
mod reader;
pub mod roots;
pub mod simulated;
pub mod snp;
pub mod tdx;
pub mod time;
mod unique_keys;
pub mod verdict;
mod x509;

pub use policy::Policy;
pub use reader::Truncated;
pub use time::Timestamp;
pub use verdict::{Fault, GpuVerdict, Platform, Reason, ReasonCode, Verdict};
pub use x509::CertError;

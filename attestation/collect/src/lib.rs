//! Cloister attestation collection: the only attestation code that does I/O.
//!
//! Inside a confidential VM it asks the hardware for evidence binding a
//! 64-byte `report_data`:
//!
//! - [`configfs_tsm`]: Linux configfs-tsm, for TDX and SEV-SNP (Linux 6.7+);
//! - [`sev_guest`]: `/dev/sev-guest` through the `sev` crate (older kernels);
//! - `tdx_attest` (feature `tdx-attest-lib`): Intel's `libtdx_attest` via
//!   bindgen, the one module with `unsafe` code;
//! - [`simulated`]: a software "TEE" for development, which proves nothing;
//! - [`EvidenceSource`]: picks one of the above ([`EvidenceSource::auto`]).
//!
//! GPU evidence comes alongside: [`nvidia_gpu`] asks NVIDIA
//! confidential-computing GPUs for SPDM reports through NVML.
//!
//! Verifiers need collateral to check evidence; [`collateral`] fetches it
//! from Intel PCS/PCCS and AMD KDS ([`collateral::HttpCollateral`]), reads it
//! from disk ([`collateral::FileCollateral`]) and caches it
//! ([`collateral::CachingCollateral`]).
//!
//! Parsing and verification stay in `cloister-attestation`, which is pure.
//! Logs from this crate carry sizes, paths and identifiers, never evidence
//! contents.

#![deny(unsafe_code)]

pub mod blame;
pub mod cert_table;
pub mod collateral;
pub mod configfs_tsm;
pub mod nvidia_gpu;
pub mod sev_guest;
pub mod simulated;
mod source;
#[cfg(feature = "tdx-attest-lib")]
#[allow(unsafe_code)]
pub mod tdx_attest;

pub use blame::Blame;
pub use cert_table::{HostCert, HostCertKind, HostCerts};
pub use nvidia_gpu::{CollectedGpu, GpuCollectError, GpuDevice, NvidiaGpus};
pub use source::{AutoConfig, CollectError, Collected, DetectError, EvidenceSource, Tee, Via};

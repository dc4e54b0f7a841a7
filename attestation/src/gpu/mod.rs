//! NVIDIA confidential-computing GPUs: SPDM measurement reports.

mod spdm;
mod verify;

pub use spdm::{GpuReport, MeasurementBlock, SIGNATURE_LEN, SpdmError, opaque_type};
pub use verify::{
    GPU_NOT_CHECKED, GpuError, MAX_CHAIN_CERTS, VerifiedGpuReport, appraise, verdict, verify_report,
};

//! Expected launch measurements of Cloister's confidential VMs, computed from
//! the image parts and the VM shape, so that an auditor gets the numbers a
//! genuine launch produces without trusting the provider who launched it.
//!
//! - [`snp::launch_digest`]: the AMD SEV-SNP launch digest (the report's
//!   `measurement`) of a QEMU guest: every OVMF page, the pages OVMF's SEV
//!   metadata declares (zero, secrets, CPUID, kernel hashes), then one VMSA
//!   per vCPU.
//! - [`tdx::mrtd`] and [`tdx::rtmr2`]: the Intel TDX build-time measurement
//!   of the TDVF image from its metadata, and the runtime register the guest
//!   kernel's direct boot extends with its command line and initrd.
//!
//! Everything here is pure: it takes bytes and digests, never paths. Firmware
//! is parsed through a bounds-checked reader; a malformed table is a
//! [`MeasureError`] naming what is wrong, never a panic.

#![forbid(unsafe_code)]

mod error;
pub mod firmware;
mod guid;
pub mod snp;
pub mod tdx;

pub use error::MeasureError;

/// A SHA-384 digest: the size of every launch measurement here.
pub type Digest48 = [u8; 48];

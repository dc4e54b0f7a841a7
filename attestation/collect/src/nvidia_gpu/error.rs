//! Errors of NVIDIA GPU evidence collection.

use std::path::PathBuf;

use cloister_attestation::gpu::SpdmError;

use crate::blame::Blame;

/// Why GPU evidence could not be collected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GpuCollectError {
    /// The NVML library could not be loaded.
    #[error(
        "cannot load the NVML library {library}: {reason} (is the NVIDIA driver installed? give the path of libnvidia-ml.so.1)"
    )]
    LibraryNotFound {
        /// The library asked for.
        library: PathBuf,
        /// The dynamic loader's message.
        reason: String,
    },
    /// The library loaded but has no NVML entry point.
    #[error("{library} is not an NVML library: {reason}")]
    NotNvml {
        /// The library.
        library: PathBuf,
        /// What was missing.
        reason: String,
    },
    /// NVML is there but the NVIDIA kernel driver is not.
    #[error("NVML ({library}) says the NVIDIA kernel driver is not loaded")]
    DriverNotLoaded {
        /// The library.
        library: PathBuf,
    },
    /// NVML lacks a confidential-computing call: a driver too old for CC
    /// attestation.
    #[error(
        "NVML ({library}) has no {call}: this driver is too old for confidential-computing attestation"
    )]
    MissingFunction {
        /// The library.
        library: PathBuf,
        /// The missing entry point.
        call: &'static str,
    },
    /// NVML refused for lack of permission.
    #[error("NVML {call}: permission denied (the process needs access to /dev/nvidia*)")]
    PermissionDenied {
        /// The NVML call.
        call: &'static str,
    },
    /// An NVML call failed.
    #[error("NVML {call}{} failed: {message}", gpu_suffix(*.index))]
    Nvml {
        /// The NVML call.
        call: &'static str,
        /// The GPU, for per-GPU calls.
        index: Option<u32>,
        /// NVML's error.
        message: String,
        /// Whether NVML's error may clear by itself (timeout, in use).
        transient: bool,
    },
    /// NVML returned a size larger than the buffer it filled.
    #[error(
        "NVML {call} for GPU {index} returned a size larger than its buffer (driver bug or tampered library)"
    )]
    BufferOverrun {
        /// The NVML call.
        call: &'static str,
        /// The GPU.
        index: u32,
    },
    /// NVML lists no GPU.
    #[error("NVML ({library}) lists no GPU")]
    NoGpus {
        /// The library.
        library: PathBuf,
    },
    /// The system's confidential-computing feature is off.
    #[error(
        "confidential computing is off on this system ({gpus} NVIDIA GPU(s) found): the GPUs must be switched to CC mode and attached to a confidential VM"
    )]
    CcModeOff {
        /// GPUs NVML lists.
        gpus: u32,
    },
    /// CC is on but in dev-tools mode, where debuggers and profilers can
    /// read GPU memory.
    #[error(
        "confidential computing is in dev-tools mode, where debuggers can read GPU memory: refused (switch the GPUs to CC mode without dev tools)"
    )]
    DevToolsMode,
    /// CC is on but the GPUs do not accept work yet.
    #[error(
        "the {gpus} GPU(s) are in CC mode but not ready for work: set the ready state (nvidia-smi conf-compute -srs 1) once they are attested"
    )]
    GpusNotReady {
        /// GPUs NVML lists.
        gpus: u32,
    },
    /// The CC environment NVML reports is not production (simulated or
    /// unavailable), or the CC state changed while it was being checked.
    #[error(
        "NVML says the confidential-computing environment is not production (or the CC state changed while being checked)"
    )]
    NotProduction,
    /// A GPU returned bytes that are not an SPDM measurement report.
    #[error("GPU {index} returned a malformed attestation report: {reason}")]
    MalformedReport {
        /// The GPU.
        index: u32,
        /// What was wrong.
        reason: SpdmError,
    },
    /// A GPU's report answers another nonce: stale or replayed.
    #[error(
        "GPU {index} returned a report for nonce {found}, not the requested {expected}: stale or replayed evidence"
    )]
    NonceMismatch {
        /// The GPU.
        index: u32,
        /// The requested nonce (hex).
        expected: String,
        /// The nonce in the report (hex).
        found: String,
    },
    /// A GPU's attestation certificate chain is not usable PEM.
    #[error("GPU {index} returned an unusable attestation certificate chain: {reason}")]
    CertChain {
        /// The GPU.
        index: u32,
        /// What was wrong.
        reason: String,
    },
}

fn gpu_suffix(index: Option<u32>) -> String {
    index.map(|i| format!(" (GPU {i})")).unwrap_or_default()
}

impl GpuCollectError {
    /// Who has to act.
    pub fn blame(&self) -> Blame {
        match self {
            Self::PermissionDenied { .. } => Blame::Local,
            Self::LibraryNotFound { .. }
            | Self::NotNvml { .. }
            | Self::DriverNotLoaded { .. }
            | Self::MissingFunction { .. }
            | Self::Nvml { .. }
            | Self::BufferOverrun { .. }
            | Self::NoGpus { .. }
            | Self::CcModeOff { .. }
            | Self::DevToolsMode
            | Self::GpusNotReady { .. }
            | Self::NotProduction
            | Self::MalformedReport { .. }
            | Self::NonceMismatch { .. }
            | Self::CertChain { .. } => Blame::Platform,
        }
    }

    /// Whether trying again may succeed (a GPU not yet ready may become
    /// ready once the host finishes setting it up).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Nvml { transient, .. } => *transient,
            Self::GpusNotReady { .. } => true,
            _ => false,
        }
    }
}

//! NVIDIA confidential-computing GPUs (Hopper H100/H200 and later): evidence
//! through NVML, the driver's management library, loaded at run time.
//!
//! [`NvidiaGpus::open`] loads `libnvidia-ml.so.1` (or a given path) through
//! the `nvml-wrapper` crate; nothing NVIDIA is needed to build. Then:
//!
//! - [`NvidiaGpus::devices`] lists every GPU with its UUID and a digest of
//!   its attestation certificate chain;
//! - [`NvidiaGpus::collect`] asks every GPU for a fresh SPDM
//!   `GET_MEASUREMENTS` report answering the caller's 32-byte nonce, and for
//!   its attestation certificate chain; [`CollectedGpu`] converts into the
//!   evidence bundle's `gpu` entry.
//!
//! # What is checked here
//!
//! Before asking any GPU for evidence, both calls require that NVML says:
//! the system's confidential-computing feature is on, dev-tools mode is off
//! (it lets debuggers read GPU memory), the GPUs are ready to accept CC work
//! and the CC environment is production. Each failure has its own error.
//!
//! Every report must parse as an SPDM measurement report
//! ([`cloister_attestation::gpu::GpuReport`]) whose request nonce is the
//! caller's nonce, so a stale or replayed report is refused here rather
//! than by a remote verifier. Every certificate chain must be PEM
//! certificates that link issuer to subject.
//!
//! # What is not checked here
//!
//! Signatures, the chain to NVIDIA's root and certificate validity are the
//! verifier's work (`cloister_attestation::gpu::verify_report`), done on
//! the far side where it counts. OCSP revocation of the device chain and
//! comparison of the measurements with NVIDIA's reference integrity
//! manifests (RIMs) need NVIDIA's online services and are done nowhere yet;
//! verdicts list both under `not_checked`. NVML calls that hang are not
//! timed out.
//!
//! # Certificate chain format
//!
//! NVML fills `attestationCertChain` with concatenated PEM certificates,
//! leaf first, ending in the NVIDIA Device Identity CA (the NVIDIA local
//! verifier reads it the same way). The bundle wants PEM, leaf first, so
//! the text passes through unchanged apart from trailing NUL padding; a
//! chain NVML hands over root first is reversed (and re-encoded).
//! [`GpuDevice::cert_chain_sha256`] is the SHA-256 of the bytes NVML
//! returned (size as NVML reported it).
//!
//! # Threads
//!
//! NVML documents itself as thread-safe, but not every driver has been, so
//! [`NvidiaGpus`] holds NVML behind a mutex: one call at a time, from any
//! number of threads.

mod cert_chain;
mod error;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use cloister_attestation::bundle::{Base64Bytes, GpuEvidence};
use cloister_attestation::gpu::GpuReport;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use sha2::{Digest as _, Sha256};

pub use error::GpuCollectError;

/// The library [`NvidiaGpus::open`] loads when given no path.
pub const DEFAULT_LIBRARY: &str = "libnvidia-ml.so.1";

/// NVML entry points named in errors.
mod call {
    pub(super) const INIT: &str = "nvmlInit_v2";
    pub(super) const COUNT: &str = "nvmlDeviceGetCount_v2";
    pub(super) const HANDLE: &str = "nvmlDeviceGetHandleByIndex_v2";
    pub(super) const UUID: &str = "nvmlDeviceGetUUID";
    pub(super) const SETTINGS: &str = "nvmlSystemGetConfComputeSettings";
    pub(super) const READY: &str = "nvmlSystemGetConfComputeGpusReadyState";
    pub(super) const STATE: &str = "nvmlSystemGetConfComputeState";
    pub(super) const REPORT: &str = "nvmlDeviceGetConfComputeGpuAttestationReport";
    pub(super) const CERTIFICATE: &str = "nvmlDeviceGetConfComputeGpuCertificate";
}

/// NVML opened from a library (default: the system's
/// [`DEFAULT_LIBRARY`]); shut down when dropped.
pub struct NvidiaGpus {
    nvml: Mutex<Nvml>,
    library: PathBuf,
}

impl fmt::Debug for NvidiaGpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NvidiaGpus")
            .field("library", &self.library)
            .finish_non_exhaustive()
    }
}

/// One GPU as [`NvidiaGpus::devices`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuDevice {
    /// NVML index.
    pub index: u32,
    /// NVML UUID (`GPU-xxxxxxxx-...`).
    pub uuid: String,
    /// SHA-256 (lowercase hex) of the attestation certificate chain, PEM
    /// bytes as NVML returned them.
    pub cert_chain_sha256: String,
}

/// Fresh evidence from one GPU.
#[derive(Clone, PartialEq, Eq)]
pub struct CollectedGpu {
    /// NVML index.
    pub index: u32,
    /// NVML UUID.
    pub uuid: String,
    /// SPDM `GET_MEASUREMENTS` request and signed response, as NVML
    /// returned them.
    pub report: Vec<u8>,
    /// Attestation certificate chain: PEM, leaf first.
    pub cert_chain_pem: String,
}

impl fmt::Debug for CollectedGpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollectedGpu")
            .field("index", &self.index)
            .field("uuid", &self.uuid)
            .field("report_len", &self.report.len())
            .field("cert_chain_len", &self.cert_chain_pem.len())
            .finish()
    }
}

impl From<CollectedGpu> for GpuEvidence {
    /// The evidence bundle's `gpu` entry.
    fn from(gpu: CollectedGpu) -> Self {
        Self {
            report: Base64Bytes(gpu.report),
            cert_chain: gpu.cert_chain_pem,
        }
    }
}

impl NvidiaGpus {
    /// Loads NVML from `lib` (default [`DEFAULT_LIBRARY`], found the way the
    /// dynamic loader finds libraries) and initialises it.
    pub fn open(lib: Option<&Path>) -> Result<Self, GpuCollectError> {
        let library = lib.unwrap_or(Path::new(DEFAULT_LIBRARY)).to_path_buf();
        let nvml = Nvml::builder()
            .lib_path(library.as_os_str())
            .init()
            .map_err(|e| open_error(&library, e))?;
        tracing::debug!(library = %library.display(), "NVML initialised");
        Ok(Self {
            nvml: Mutex::new(nvml),
            library,
        })
    }

    /// The library NVML was loaded from (as given).
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// Every GPU: index, UUID, and the SHA-256 of its attestation
    /// certificate chain. Fails unless the system's CC feature is on, the
    /// GPUs are ready for CC work, dev-tools mode is off and the CC
    /// environment is production; the error says which.
    pub fn devices(&self) -> Result<Vec<GpuDevice>, GpuCollectError> {
        let nvml = self.lock();
        let devices = self.cc_ready_devices(&nvml)?;
        devices
            .iter()
            .map(|(index, device)| {
                let index = *index;
                let uuid = self.uuid(device, index)?;
                let chain = self.raw_cert_chain(device, index)?;
                Ok(GpuDevice {
                    index,
                    uuid,
                    cert_chain_sha256: hex::encode(Sha256::digest(&chain)),
                })
            })
            .collect()
    }

    /// Fresh evidence from every GPU for `nonce`: the SPDM report and the
    /// attestation certificate chain (PEM, leaf first). Same CC checks as
    /// [`NvidiaGpus::devices`]; each report must answer `nonce`
    /// ([`GpuCollectError::NonceMismatch`] otherwise).
    pub fn collect(&self, nonce: &[u8; 32]) -> Result<Vec<CollectedGpu>, GpuCollectError> {
        let nvml = self.lock();
        let devices = self.cc_ready_devices(&nvml)?;
        let collected = devices
            .iter()
            .map(|(index, device)| self.collect_one(device, *index, nonce))
            .collect::<Result<Vec<_>, _>>()?;
        tracing::debug!(gpus = collected.len(), "collected GPU evidence");
        Ok(collected)
    }

    fn lock(&self) -> MutexGuard<'_, Nvml> {
        // A panic while the lock was held left no state of ours half-written.
        self.nvml.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every device, after checking the system's CC state (NVML exposes the
    /// system-wide queries through a device handle).
    fn cc_ready_devices<'n>(
        &self,
        nvml: &'n Nvml,
    ) -> Result<Vec<(u32, Device<'n>)>, GpuCollectError> {
        let count = nvml
            .device_count()
            .map_err(|e| self.nvml_error(call::COUNT, None, e))?;
        let devices = (0..count)
            .map(|index| {
                nvml.device_by_index(index)
                    .map(|device| (index, device))
                    .map_err(|e| self.nvml_error(call::HANDLE, Some(index), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let Some((_, first)) = devices.first() else {
            return Err(GpuCollectError::NoGpus {
                library: self.library.clone(),
            });
        };
        self.check_cc_state(first, count)?;
        Ok(devices)
    }

    fn check_cc_state(&self, device: &Device<'_>, gpus: u32) -> Result<(), GpuCollectError> {
        let settings = |e| self.nvml_error(call::SETTINGS, None, e);
        if !device.is_cc_enabled().map_err(settings)? {
            return Err(GpuCollectError::CcModeOff { gpus });
        }
        if device.is_cc_dev_mode_enabled().map_err(settings)? {
            return Err(GpuCollectError::DevToolsMode);
        }
        if !device
            .get_confidential_compute_state()
            .map_err(|e| self.nvml_error(call::READY, None, e))?
        {
            return Err(GpuCollectError::GpusNotReady { gpus });
        }
        // CC on and ready were just checked, so false here means the
        // environment is not production.
        if !device
            .check_confidential_compute_status()
            .map_err(|e| self.nvml_error(call::STATE, None, e))?
        {
            return Err(GpuCollectError::NotProduction);
        }
        Ok(())
    }

    fn collect_one(
        &self,
        device: &Device<'_>,
        index: u32,
        nonce: &[u8; 32],
    ) -> Result<CollectedGpu, GpuCollectError> {
        let uuid = self.uuid(device, index)?;
        let report = guarded(call::REPORT, index, || {
            device.confidential_compute_gpu_attestation_report(*nonce)
        })?
        .map_err(|e| self.nvml_error(call::REPORT, Some(index), e))?
        .attestation_report;
        let parsed = GpuReport::parse(&report)
            .map_err(|reason| GpuCollectError::MalformedReport { index, reason })?;
        if &parsed.nonce != nonce {
            return Err(GpuCollectError::NonceMismatch {
                index,
                expected: hex::encode(nonce),
                found: hex::encode(parsed.nonce),
            });
        }
        let raw_chain = self.raw_cert_chain(device, index)?;
        let cert_chain_pem = cert_chain::leaf_first_pem(&raw_chain)
            .map_err(|reason| GpuCollectError::CertChain { index, reason })?;
        tracing::debug!(
            index,
            report_len = report.len(),
            chain_len = cert_chain_pem.len(),
            "GPU evidence"
        );
        Ok(CollectedGpu {
            index,
            uuid,
            report,
            cert_chain_pem,
        })
    }

    fn uuid(&self, device: &Device<'_>, index: u32) -> Result<String, GpuCollectError> {
        device
            .uuid()
            .map_err(|e| self.nvml_error(call::UUID, Some(index), e))
    }

    /// The attestation certificate chain bytes as NVML returned them.
    fn raw_cert_chain(&self, device: &Device<'_>, index: u32) -> Result<Vec<u8>, GpuCollectError> {
        let certificate = guarded(call::CERTIFICATE, index, || {
            device.confidential_compute_gpu_certificate()
        })?
        .map_err(|e| self.nvml_error(call::CERTIFICATE, Some(index), e))?;
        Ok(certificate.attestation_cert_chain)
    }

    fn nvml_error(
        &self,
        call: &'static str,
        index: Option<u32>,
        error: NvmlError,
    ) -> GpuCollectError {
        match error {
            NvmlError::FailedToLoadSymbol(_) => GpuCollectError::MissingFunction {
                library: self.library.clone(),
                call,
            },
            NvmlError::NoPermission => GpuCollectError::PermissionDenied { call },
            other => GpuCollectError::Nvml {
                call,
                index,
                transient: is_transient(&other),
                message: other.to_string(),
            },
        }
    }
}

/// Runs an `nvml-wrapper` call that slices a fixed NVML buffer by the size
/// NVML reported; a size beyond the buffer panics there. That is NVML's
/// fault, and becomes [`GpuCollectError::BufferOverrun`] here.
fn guarded<T>(
    call: &'static str,
    index: u32,
    f: impl FnOnce() -> Result<T, NvmlError>,
) -> Result<Result<T, NvmlError>, GpuCollectError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| GpuCollectError::BufferOverrun { call, index })
}

fn open_error(library: &Path, error: NvmlError) -> GpuCollectError {
    match error {
        NvmlError::LibloadingError(e) => GpuCollectError::LibraryNotFound {
            library: library.to_path_buf(),
            reason: e.to_string(),
        },
        NvmlError::FailedToLoadSymbol(reason) => GpuCollectError::NotNvml {
            library: library.to_path_buf(),
            reason,
        },
        NvmlError::DriverNotLoaded => GpuCollectError::DriverNotLoaded {
            library: library.to_path_buf(),
        },
        NvmlError::NoPermission => GpuCollectError::PermissionDenied { call: call::INIT },
        other => GpuCollectError::Nvml {
            call: call::INIT,
            index: None,
            transient: is_transient(&other),
            message: other.to_string(),
        },
    }
}

/// NVML errors that may clear by themselves.
fn is_transient(error: &NvmlError) -> bool {
    matches!(
        error,
        NvmlError::Timeout | NvmlError::InUse | NvmlError::InsufficientMemory
    )
}

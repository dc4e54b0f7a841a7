//! One front door for evidence: pick the interface this machine has.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::blame::Blame;
use crate::cert_table::HostCerts;
use crate::configfs_tsm::{self, ConfigfsTsm, Provider, TsmError, TsmRequest};
use crate::sev_guest::{self, SevGuestError};
use crate::simulated::SimulatedTee;

/// The TDX guest device (Linux 6.2+; configfs-tsm arrived in 6.7).
const TDX_GUEST_DEVICE: &str = "/dev/tdx_guest";

/// The kind of TEE evidence. Names match the evidence bundle's `platform`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Tee {
    /// Intel TDX: a DCAP quote.
    Tdx,
    /// AMD SEV-SNP: an attestation report.
    SevSnp,
    /// The simulated TEE (development only).
    Simulated,
}

impl fmt::Display for Tee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tdx => "tdx",
            Self::SevSnp => "sev-snp",
            Self::Simulated => "simulated",
        })
    }
}

/// The interface evidence came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Via {
    /// Linux configfs-tsm.
    ConfigfsTsm,
    /// `/dev/sev-guest`.
    SevGuestDevice,
    /// Intel `libtdx_attest`.
    TdxAttestLib,
    /// The in-process simulated TEE.
    Simulated,
}

/// Evidence as collected.
#[derive(Clone, PartialEq, Eq)]
pub struct Collected {
    /// What kind of evidence.
    pub tee: Tee,
    /// The quote or report, bytes as produced.
    pub evidence: Vec<u8>,
    /// SEV-SNP: certificates the host supplied (may be empty).
    pub host_certs: HostCerts,
    /// How it was collected.
    pub via: Via,
}

impl fmt::Debug for Collected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collected")
            .field("tee", &self.tee)
            .field("evidence_len", &self.evidence.len())
            .field("host_certs", &self.host_certs)
            .field("via", &self.via)
            .finish()
    }
}

/// Where [`EvidenceSource::detect`] looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoConfig {
    /// The configfs-tsm report directory.
    pub configfs_root: PathBuf,
    /// SEV-SNP: VMPL to request reports at (`None`: the kernel's default).
    pub vmpl: Option<u32>,
}

impl Default for AutoConfig {
    fn default() -> Self {
        Self {
            configfs_root: PathBuf::from(configfs_tsm::DEFAULT_ROOT),
            vmpl: None,
        }
    }
}

/// Why no evidence source could be chosen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DetectError {
    /// Nothing TEE-like on this machine.
    #[error(
        "no TEE found: no configfs-tsm provider at {configfs_root}, no {}, no {TDX_GUEST_DEVICE}; use --tee simulated for development",
        sev_guest::DEVICE
    )]
    NoTee {
        /// Where configfs-tsm was looked for.
        configfs_root: PathBuf,
    },
    /// A TDX guest whose kernel lacks configfs-tsm, in a build without
    /// `libtdx_attest` support.
    #[error(
        "{TDX_GUEST_DEVICE} exists but configfs-tsm does not: use Linux 6.7+ or build with --features tdx-attest-lib"
    )]
    TdxNeedsLibrary,
    /// configfs-tsm has a provider this crate does not understand.
    #[error("configfs-tsm provider {0} is not supported (tdx_guest and sev_guest are)")]
    UnsupportedProvider(Provider),
    /// configfs-tsm is there but probing it failed.
    #[error("probing configfs-tsm: {0}")]
    Tsm(#[from] TsmError),
}

/// Why collection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectError {
    /// configfs-tsm failed.
    #[error(transparent)]
    Tsm(#[from] TsmError),
    /// `/dev/sev-guest` failed.
    #[error(transparent)]
    SevGuest(#[from] SevGuestError),
    /// `libtdx_attest` failed.
    #[cfg(feature = "tdx-attest-lib")]
    #[error(transparent)]
    TdxAttest(#[from] crate::tdx_attest::TdxAttestError),
}

impl CollectError {
    /// Who has to act.
    pub fn blame(&self) -> Blame {
        match self {
            Self::Tsm(e) => e.blame(),
            Self::SevGuest(e) => e.blame(),
            #[cfg(feature = "tdx-attest-lib")]
            Self::TdxAttest(e) => e.blame(),
        }
    }

    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Tsm(e) => e.is_retryable(),
            Self::SevGuest(_) => false,
            #[cfg(feature = "tdx-attest-lib")]
            Self::TdxAttest(e) => e.is_retryable(),
        }
    }
}

/// Where evidence comes from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EvidenceSource {
    /// Linux configfs-tsm; the provider fixed the TEE.
    ConfigfsTsm {
        /// The report directory.
        tsm: ConfigfsTsm,
        /// TDX or SEV-SNP.
        tee: Tee,
        /// SEV-SNP: VMPL to request.
        vmpl: Option<u32>,
    },
    /// `/dev/sev-guest`.
    SevGuest {
        /// VMPL to request.
        vmpl: u32,
    },
    /// Intel `libtdx_attest`.
    #[cfg(feature = "tdx-attest-lib")]
    TdxAttestLib,
    /// The simulated TEE. Development only: proves nothing.
    Simulated(SimulatedTee),
}

impl EvidenceSource {
    /// [`EvidenceSource::detect`] with the standard paths.
    pub fn auto() -> Result<Self, DetectError> {
        Self::detect(&AutoConfig::default())
    }

    /// Picks the interface: configfs-tsm when it has a provider (which says
    /// TDX or SEV-SNP), else `/dev/sev-guest`, else `libtdx_attest` when
    /// built in and `/dev/tdx_guest` exists, else [`DetectError::NoTee`].
    /// Never picks the simulated TEE.
    pub fn detect(config: &AutoConfig) -> Result<Self, DetectError> {
        let tsm = ConfigfsTsm::new(&config.configfs_root);
        if tsm.is_present() {
            match tsm.provider() {
                Ok(Provider::TdxGuest) => {
                    return Ok(Self::ConfigfsTsm {
                        tsm,
                        tee: Tee::Tdx,
                        vmpl: None,
                    });
                }
                Ok(Provider::SevGuest) => {
                    return Ok(Self::ConfigfsTsm {
                        tsm,
                        tee: Tee::SevSnp,
                        vmpl: config.vmpl,
                    });
                }
                Ok(other) => return Err(DetectError::UnsupportedProvider(other)),
                // configfs-tsm compiled in, no TEE driver registered: look further.
                Err(TsmError::NoProvider { .. } | TsmError::NotAvailable { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if sev_guest::is_present() {
            return Ok(Self::SevGuest {
                vmpl: config.vmpl.unwrap_or(0),
            });
        }
        if Path::new(TDX_GUEST_DEVICE).exists() {
            #[cfg(feature = "tdx-attest-lib")]
            return Ok(Self::TdxAttestLib);
            #[cfg(not(feature = "tdx-attest-lib"))]
            return Err(DetectError::TdxNeedsLibrary);
        }
        Err(DetectError::NoTee {
            configfs_root: config.configfs_root.clone(),
        })
    }

    /// A simulated TEE with a fresh key claiming `measurement`.
    pub fn simulated(measurement: [u8; 48]) -> Self {
        Self::Simulated(SimulatedTee::generate(measurement))
    }

    /// The kind of evidence this source produces.
    pub fn tee(&self) -> Tee {
        match self {
            Self::ConfigfsTsm { tee, .. } => *tee,
            Self::SevGuest { .. } => Tee::SevSnp,
            #[cfg(feature = "tdx-attest-lib")]
            Self::TdxAttestLib => Tee::Tdx,
            Self::Simulated(_) => Tee::Simulated,
        }
    }

    /// Collects evidence binding `report_data`.
    pub fn collect(&self, report_data: &[u8; 64]) -> Result<Collected, CollectError> {
        match self {
            Self::ConfigfsTsm { tsm, tee, vmpl } => {
                let provider = match tee {
                    Tee::SevSnp => Provider::SevGuest,
                    _ => Provider::TdxGuest,
                };
                let mut request = TsmRequest::new(*report_data).expect_provider(provider);
                if let Some(level) = vmpl {
                    request = request.privlevel(*level);
                }
                let evidence = tsm.collect(&request)?;
                Ok(Collected {
                    tee: *tee,
                    evidence: evidence.outblob,
                    host_certs: evidence.host_certs,
                    via: Via::ConfigfsTsm,
                })
            }
            Self::SevGuest { vmpl } => {
                let evidence = sev_guest::get_ext_report(report_data, *vmpl)?;
                Ok(Collected {
                    tee: Tee::SevSnp,
                    evidence: evidence.report,
                    host_certs: evidence.host_certs,
                    via: Via::SevGuestDevice,
                })
            }
            #[cfg(feature = "tdx-attest-lib")]
            Self::TdxAttestLib => {
                let quote = crate::tdx_attest::get_quote(report_data)?;
                Ok(Collected {
                    tee: Tee::Tdx,
                    evidence: quote.quote,
                    host_certs: HostCerts::default(),
                    via: Via::TdxAttestLib,
                })
            }
            Self::Simulated(tee) => Ok(Collected {
                tee: Tee::Simulated,
                evidence: tee.evidence(report_data),
                host_certs: HostCerts::default(),
                via: Via::Simulated,
            }),
        }
    }
}

//! SEV-SNP evidence through `/dev/sev-guest` and the `sev` crate, for
//! kernels without configfs-tsm.
//!
//! Prefer [`crate::configfs_tsm`] where it exists (and
//! [`crate::EvidenceSource::auto`] does): the `sev` crate walks the host's
//! certificate table through raw pointers without checking it against the
//! buffer it received, while configfs-tsm hands us the table as bytes that
//! [`crate::cert_table`] parses with bounds checks.

use std::path::PathBuf;

use sev::firmware::host::CertTableEntry;

use crate::blame::Blame;
use crate::cert_table::{Guid, HostCert, HostCertKind, HostCerts};

/// The SEV guest device.
pub const DEVICE: &str = "/dev/sev-guest";

/// Highest VMPL.
const VMPL_MAX: u32 = 3;

/// Why `/dev/sev-guest` gave no report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SevGuestError {
    /// No SEV guest device: not an SEV-SNP guest, or the `sev-guest` module
    /// is not loaded.
    #[error("{device} does not exist: not an SEV-SNP guest, or the sev-guest module is not loaded")]
    NotAvailable {
        /// The device path.
        device: PathBuf,
    },
    /// Not allowed to open the device.
    #[error("permission denied opening {device}: needs root")]
    PermissionDenied {
        /// The device path.
        device: PathBuf,
    },
    /// VMPL outside 0..=3.
    #[error("VMPL {0} is invalid (0..=3)")]
    InvalidVmpl(u32),
    /// The AMD secure processor refused the request.
    #[error("the AMD secure processor refused the report request: {0}")]
    Firmware(String),
    /// The hypervisor failed the request.
    #[error("the hypervisor failed the report request: {0}")]
    Hypervisor(String),
    /// The host's certificate table could not be read.
    #[error("the host's certificate table is malformed: {0}")]
    CertTable(String),
    /// Another I/O error on the device.
    #[error("{device}: {source}")]
    Io {
        /// The device path.
        device: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Any other error the `sev` crate reports.
    #[error("SEV guest request failed: {0}")]
    Other(String),
}

impl SevGuestError {
    /// Who has to act.
    pub fn blame(&self) -> Blame {
        match self {
            Self::NotAvailable { .. }
            | Self::Firmware(_)
            | Self::Hypervisor(_)
            | Self::CertTable(_)
            | Self::Other(_) => Blame::Platform,
            Self::PermissionDenied { .. } | Self::Io { .. } => Blame::Local,
            Self::InvalidVmpl(_) => Blame::Caller,
        }
    }
}

/// A report and the host's certificates.
#[derive(Clone, PartialEq, Eq)]
pub struct SevGuestEvidence {
    /// The 1184-byte attestation report as the firmware produced it.
    pub report: Vec<u8>,
    /// Certificates the host supplied (may be empty).
    pub host_certs: HostCerts,
}

impl std::fmt::Debug for SevGuestEvidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SevGuestEvidence")
            .field("report_len", &self.report.len())
            .field("host_certs", &self.host_certs)
            .finish()
    }
}

/// Whether the device exists.
pub fn is_present() -> bool {
    std::path::Path::new(DEVICE).exists()
}

/// Requests an extended report (report plus host certificates) at `vmpl`.
#[cfg(target_os = "linux")]
pub fn get_ext_report(
    report_data: &[u8; 64],
    vmpl: u32,
) -> Result<SevGuestEvidence, SevGuestError> {
    use sev::firmware::guest::Firmware;

    if vmpl > VMPL_MAX {
        return Err(SevGuestError::InvalidVmpl(vmpl));
    }
    let device = PathBuf::from(DEVICE);
    let mut firmware = Firmware::open().map_err(|e| open_error(device.clone(), e))?;
    let (report, certs) = firmware
        .get_ext_report(None, Some(*report_data), Some(vmpl))
        .map_err(|e| map_error(&device, e))?;
    let host_certs = certs_from_table(certs.as_deref().unwrap_or_default())?;
    tracing::debug!(
        report_len = report.len(),
        host_certs = host_certs.len(),
        "collected /dev/sev-guest evidence"
    );
    Ok(SevGuestEvidence { report, host_certs })
}

/// Requests an extended report (not supported off Linux).
#[cfg(not(target_os = "linux"))]
pub fn get_ext_report(
    _report_data: &[u8; 64],
    _vmpl: u32,
) -> Result<SevGuestEvidence, SevGuestError> {
    Err(SevGuestError::NotAvailable {
        device: PathBuf::from(DEVICE),
    })
}

/// Converts the `sev` crate's certificate table.
pub fn certs_from_table(entries: &[CertTableEntry]) -> Result<HostCerts, SevGuestError> {
    let mut certs: Vec<HostCert> = Vec::with_capacity(entries.len());
    for entry in entries {
        let text = entry.guid_string();
        let guid = Guid::parse(&text).ok_or_else(|| {
            SevGuestError::CertTable(format!("certificate GUID {text:?} is not a GUID"))
        })?;
        let kind = HostCertKind::from_guid(guid);
        if certs.iter().any(|c| c.kind == kind) {
            return Err(SevGuestError::CertTable(format!("{guid} listed twice")));
        }
        if entry.data.is_empty() {
            return Err(SevGuestError::CertTable(format!("{guid} is empty")));
        }
        certs.push(HostCert {
            kind,
            data: entry.data.clone(),
        });
    }
    Ok(HostCerts(certs))
}

#[cfg(target_os = "linux")]
fn open_error(device: PathBuf, e: std::io::Error) -> SevGuestError {
    match e.kind() {
        std::io::ErrorKind::NotFound => SevGuestError::NotAvailable { device },
        std::io::ErrorKind::PermissionDenied => SevGuestError::PermissionDenied { device },
        _ => SevGuestError::Io { device, source: e },
    }
}

#[cfg(target_os = "linux")]
fn map_error(device: &std::path::Path, e: sev::error::UserApiError) -> SevGuestError {
    use sev::error::UserApiError as E;
    match e {
        E::FirmwareError(e) => SevGuestError::Firmware(e.to_string()),
        E::VmmError(e) => SevGuestError::Hypervisor(e.to_string()),
        E::IOError(source) => SevGuestError::Io {
            device: device.to_path_buf(),
            source,
        },
        E::VmplError => SevGuestError::Other("the sev crate rejected the VMPL".into()),
        E::ApiError(e) => SevGuestError::CertTable(e.to_string()),
        E::UuidError(e) => SevGuestError::CertTable(e.to_string()),
        other => SevGuestError::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use sev::firmware::host::CertType;

    use super::*;

    #[test]
    fn converts_the_sev_crate_table() {
        let entries = vec![
            CertTableEntry::new(CertType::VCEK, b"vcek".to_vec()),
            CertTableEntry::new(CertType::ASK, b"ask".to_vec()),
            CertTableEntry::new(CertType::ARK, b"ark".to_vec()),
            CertTableEntry::new(CertType::VLEK, b"vlek".to_vec()),
        ];
        let certs = certs_from_table(&entries).unwrap();
        assert_eq!(certs.vcek(), Some(&b"vcek"[..]));
        assert_eq!(certs.ask(), Some(&b"ask"[..]));
        assert_eq!(certs.ark(), Some(&b"ark"[..]));
        assert_eq!(certs.vlek(), Some(&b"vlek"[..]));
        assert!(certs_from_table(&[]).unwrap().is_empty());
    }

    #[test]
    fn duplicate_or_empty_entries_are_typed_errors() {
        let twice = vec![
            CertTableEntry::new(CertType::VCEK, b"a".to_vec()),
            CertTableEntry::new(CertType::VCEK, b"b".to_vec()),
        ];
        assert!(matches!(
            certs_from_table(&twice),
            Err(SevGuestError::CertTable(_))
        ));
        let empty = vec![CertTableEntry::new(CertType::ASK, Vec::new())];
        assert!(matches!(
            certs_from_table(&empty),
            Err(SevGuestError::CertTable(_))
        ));
    }

    #[test]
    fn absent_device_is_not_available() {
        if is_present() {
            eprintln!("skipped: {DEVICE} exists on this machine");
            return;
        }
        let err = get_ext_report(&[0; 64], 0).unwrap_err();
        assert!(matches!(err, SevGuestError::NotAvailable { .. }), "{err:?}");
        assert_eq!(err.blame(), Blame::Platform);
        assert!(matches!(
            get_ext_report(&[0; 64], 4),
            Err(SevGuestError::InvalidVmpl(4))
        ));
    }
}

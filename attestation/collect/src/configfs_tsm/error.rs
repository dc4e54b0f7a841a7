//! Errors of configfs-tsm collection.

use std::path::PathBuf;
use std::time::Duration;

use super::Provider;
use crate::blame::Blame;
use crate::cert_table::CertTableError;

/// Why evidence could not be collected through configfs-tsm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TsmError {
    /// The configfs-tsm report directory does not exist: the kernel lacks
    /// `CONFIG_TSM_REPORTS` (Linux < 6.7) or configfs is not mounted.
    #[error(
        "configfs-tsm is not available: {root} does not exist (needs Linux 6.7+ with configfs mounted at /sys/kernel/config)"
    )]
    NotAvailable {
        /// The report directory looked for.
        root: PathBuf,
    },
    /// configfs-tsm exists but no TEE driver (tdx_guest, sev_guest) has
    /// registered as its provider.
    #[error(
        "configfs-tsm at {root} has no provider: load the tdx_guest or sev_guest kernel module"
    )]
    NoProvider {
        /// The report directory.
        root: PathBuf,
    },
    /// Not allowed to create or use a report entry.
    #[error("permission denied on {path}: configfs-tsm needs root or CAP_SYS_ADMIN")]
    PermissionDenied {
        /// The path refused.
        path: PathBuf,
    },
    /// An attribute file did not appear in the new entry.
    #[error(
        "{path} did not appear within {waited:?} of creating the entry: not a configfs-tsm report directory?"
    )]
    MissingAttribute {
        /// The attribute path.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// The provider is not the one the caller asked for.
    #[error("configfs-tsm provider is {found}, but {expected} was requested")]
    WrongProvider {
        /// Requested provider.
        expected: Provider,
        /// Provider the kernel reports.
        found: Provider,
    },
    /// A privilege level above 3 (the most any TSM supports).
    #[error("privilege level {requested} is invalid (0..=3)")]
    InvalidPrivlevel {
        /// Requested level.
        requested: u32,
    },
    /// The requested privilege level is more privileged than this guest may
    /// ask for.
    #[error("privilege level {requested} is below this guest's floor {floor}")]
    PrivlevelBelowFloor {
        /// Requested level.
        requested: u32,
        /// The kernel's `privlevel_floor`.
        floor: u32,
    },
    /// A privilege level was requested from a provider without the concept.
    #[error("the {provider} provider has no privilege levels; do not request one")]
    PrivlevelUnsupported {
        /// The provider.
        provider: Provider,
    },
    /// The generation counter moved by more than our own writes: another
    /// process wrote to the entry, so the report may not be for our data.
    #[error(
        "{path}: generation is {found}, expected {expected} after our writes; another process used the entry concurrently (retry)"
    )]
    ConcurrentUse {
        /// The generation attribute.
        path: PathBuf,
        /// Generation our writes imply.
        expected: u64,
        /// Generation read.
        found: u64,
    },
    /// The provider failed to produce a report (for TDX often the host's
    /// quote generation service: QGS not running or vsock not configured).
    #[error("the {provider} provider failed to produce a report reading {path}: {source}")]
    ReportFailed {
        /// The provider.
        provider: Provider,
        /// The outblob path.
        path: PathBuf,
        /// The kernel's error.
        source: std::io::Error,
    },
    /// The provider produced an empty report.
    #[error("{path} is empty: the provider produced no report")]
    EmptyOutblob {
        /// The outblob path.
        path: PathBuf,
    },
    /// An attribute larger than any real one.
    #[error("{path} is larger than {limit} bytes")]
    TooLarge {
        /// The attribute.
        path: PathBuf,
        /// The limit.
        limit: usize,
    },
    /// An attribute whose contents are not what the ABI says.
    #[error("{path}: {reason}")]
    Malformed {
        /// The attribute.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The host's certificate table in `auxblob` is malformed.
    #[error("auxblob: {0}")]
    AuxBlob(#[from] CertTableError),
    /// Any other I/O failure.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we were doing.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl TsmError {
    /// Who has to act.
    pub fn blame(&self) -> Blame {
        match self {
            Self::NotAvailable { .. }
            | Self::NoProvider { .. }
            | Self::MissingAttribute { .. }
            | Self::ReportFailed { .. }
            | Self::EmptyOutblob { .. }
            | Self::TooLarge { .. }
            | Self::Malformed { .. }
            | Self::AuxBlob(_) => Blame::Platform,
            Self::WrongProvider { .. }
            | Self::InvalidPrivlevel { .. }
            | Self::PrivlevelBelowFloor { .. }
            | Self::PrivlevelUnsupported { .. } => Blame::Caller,
            Self::PermissionDenied { .. } | Self::ConcurrentUse { .. } | Self::Io { .. } => {
                Blame::Local
            }
        }
    }

    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::ConcurrentUse { .. } | Self::ReportFailed { .. } | Self::EmptyOutblob { .. }
        )
    }
}

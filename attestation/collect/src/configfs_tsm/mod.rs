//! Evidence through Linux configfs-tsm (`/sys/kernel/config/tsm/report`),
//! the kernel's common interface for TDX quotes (`tdx_guest`) and SEV-SNP
//! reports (`sev_guest`), Linux 6.7+.
//!
//! The procedure follows the kernel's ABI document
//! (`Documentation/ABI/testing/configfs-tsm`):
//!
//! 1. `mkdir` a uniquely named entry under the root;
//! 2. read `provider` (fixed for the entry's life; read first so a wrong
//!    provider is refused before the hardware is asked for anything);
//! 3. read `generation`;
//! 4. SEV-SNP only, if asked: write `privlevel` (checked against
//!    `privlevel_floor`);
//! 5. write the 64 bytes of report data to `inblob`;
//! 6. read `outblob`: the kernel generates the report (for TDX, a quote from
//!    the host's quoting service) while the read blocks;
//! 7. read `generation` again: every write bumps it by one, so anything but
//!    the start value plus our writes means another process wrote to the
//!    entry in between and the report may not be for our data;
//! 8. read `auxblob` when present (SEV-SNP: the host's certificate table);
//! 9. `rmdir` the entry (a failure is logged, not fatal).

mod entry;
mod error;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::TsmError;

use crate::cert_table::{self, HostCerts};
use entry::Entry;

/// Where the kernel mounts configfs-tsm reports.
pub const DEFAULT_ROOT: &str = "/sys/kernel/config/tsm/report";

/// Largest `outblob` accepted (real TDX quotes are a few KiB, SNP reports 1184 bytes).
const OUTBLOB_LIMIT: usize = 1 << 20;
/// Largest `auxblob` accepted (the SNP certificate table is a few pages).
const AUXBLOB_LIMIT: usize = 1 << 20;
/// Highest privilege level number any TSM defines (`TSM_PRIVLEVEL_MAX`).
const PRIVLEVEL_MAX: u32 = 3;

/// The TSM driver behind configfs-tsm, which fixes the `outblob` format.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Provider {
    /// Intel TDX: `outblob` is a DCAP quote.
    TdxGuest,
    /// AMD SEV-SNP: `outblob` is an attestation report, `auxblob` the host's
    /// certificate table.
    SevGuest,
    /// A provider this crate does not know.
    Other(String),
}

impl Provider {
    /// From the text of the `provider` attribute.
    pub fn from_name(name: &str) -> Self {
        match name.trim() {
            "tdx_guest" => Self::TdxGuest,
            "sev_guest" => Self::SevGuest,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The kernel's name for it.
    pub fn name(&self) -> &str {
        match self {
            Self::TdxGuest => "tdx_guest",
            Self::SevGuest => "sev_guest",
            Self::Other(name) => name,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What to ask configfs-tsm for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsmRequest {
    report_data: [u8; 64],
    privlevel: Option<u32>,
    expect_provider: Option<Provider>,
}

impl TsmRequest {
    /// A report binding `report_data`.
    pub fn new(report_data: [u8; 64]) -> Self {
        Self {
            report_data,
            privlevel: None,
            expect_provider: None,
        }
    }

    /// SEV-SNP: request the report at this VMPL.
    #[must_use]
    pub fn privlevel(mut self, level: u32) -> Self {
        self.privlevel = Some(level);
        self
    }

    /// Fail with [`TsmError::WrongProvider`] unless the provider is `provider`.
    #[must_use]
    pub fn expect_provider(mut self, provider: Provider) -> Self {
        self.expect_provider = Some(provider);
        self
    }
}

/// Evidence from configfs-tsm.
#[derive(Clone, PartialEq, Eq)]
pub struct Evidence {
    /// Who produced it.
    pub provider: Provider,
    /// The report or quote, bytes as the kernel returned them.
    pub outblob: Vec<u8>,
    /// SEV-SNP: certificates from the host's `auxblob` (empty otherwise).
    pub host_certs: HostCerts,
    /// The entry's generation after our writes.
    pub generation: u64,
}

impl fmt::Debug for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Evidence")
            .field("provider", &self.provider)
            .field("outblob_len", &self.outblob.len())
            .field("host_certs", &self.host_certs)
            .field("generation", &self.generation)
            .finish()
    }
}

/// A configfs-tsm report directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigfsTsm {
    root: PathBuf,
    attribute_wait: Duration,
}

impl Default for ConfigfsTsm {
    fn default() -> Self {
        Self::new(DEFAULT_ROOT)
    }
}

impl ConfigfsTsm {
    /// The report directory at `root` (normally [`DEFAULT_ROOT`]).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            attribute_wait: Duration::from_secs(1),
        }
    }

    /// How long to wait for a new entry's attribute files to appear
    /// (default 1 s; see the note on polling in the module source).
    #[must_use]
    pub fn with_attribute_wait(mut self, wait: Duration) -> Self {
        self.attribute_wait = wait;
        self
    }

    /// The report directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the report directory exists.
    pub fn is_present(&self) -> bool {
        self.root.is_dir()
    }

    /// The provider, found by creating and removing an entry.
    pub fn provider(&self) -> Result<Provider, TsmError> {
        let entry = Entry::create(&self.root)?;
        entry.wait_for(&["provider"], self.attribute_wait)?;
        Ok(Provider::from_name(&entry.read_text("provider")?))
    }

    /// Collects a report binding the request's report data.
    pub fn collect(&self, request: &TsmRequest) -> Result<Evidence, TsmError> {
        if let Some(level) = request.privlevel
            && level > PRIVLEVEL_MAX
        {
            return Err(TsmError::InvalidPrivlevel { requested: level });
        }
        let entry = Entry::create(&self.root)?;
        entry.wait_for(
            &["provider", "generation", "inblob", "outblob"],
            self.attribute_wait,
        )?;
        let provider = Provider::from_name(&entry.read_text("provider")?);
        if let Some(expected) = &request.expect_provider
            && expected != &provider
        {
            return Err(TsmError::WrongProvider {
                expected: expected.clone(),
                found: provider,
            });
        }

        let start = entry.read_u64("generation")?;
        let mut writes = 0u64;
        if let Some(level) = request.privlevel {
            set_privlevel(&entry, &provider, level, self.attribute_wait)?;
            writes += 1;
        }
        entry.write("inblob", &request.report_data)?;
        writes += 1;

        let outblob = read_outblob(&entry, &provider)?;
        let generation = entry.read_u64("generation")?;
        let expected = start.saturating_add(writes);
        if generation != expected {
            return Err(TsmError::ConcurrentUse {
                path: entry.attr("generation"),
                expected,
                found: generation,
            });
        }

        let host_certs = if provider == Provider::SevGuest && entry.has("auxblob") {
            cert_table::parse(&entry.read("auxblob", AUXBLOB_LIMIT)?)?
        } else {
            HostCerts::default()
        };
        tracing::debug!(
            %provider,
            outblob_len = outblob.len(),
            host_certs = host_certs.len(),
            generation,
            "collected configfs-tsm evidence"
        );
        Ok(Evidence {
            provider,
            outblob,
            host_certs,
            generation,
        })
    }
}

fn set_privlevel(
    entry: &Entry,
    provider: &Provider,
    level: u32,
    wait: Duration,
) -> Result<(), TsmError> {
    if provider != &Provider::SevGuest
        || entry
            .wait_for(&["privlevel", "privlevel_floor"], wait)
            .is_err()
    {
        return Err(TsmError::PrivlevelUnsupported {
            provider: provider.clone(),
        });
    }
    let floor = u32::try_from(entry.read_u64("privlevel_floor")?).unwrap_or(u32::MAX);
    if level < floor {
        return Err(TsmError::PrivlevelBelowFloor {
            requested: level,
            floor,
        });
    }
    entry.write("privlevel", level.to_string().as_bytes())
}

fn read_outblob(entry: &Entry, provider: &Provider) -> Result<Vec<u8>, TsmError> {
    let path = entry.attr("outblob");
    let outblob = entry::read_limited(&path, OUTBLOB_LIMIT).map_err(|e| match e {
        entry::ReadError::TooLarge => TsmError::TooLarge {
            path: path.clone(),
            limit: OUTBLOB_LIMIT,
        },
        entry::ReadError::Io(source) if source.kind() == std::io::ErrorKind::PermissionDenied => {
            TsmError::PermissionDenied { path: path.clone() }
        }
        entry::ReadError::Io(source) => TsmError::ReportFailed {
            provider: provider.clone(),
            path: path.clone(),
            source,
        },
    })?;
    if outblob.is_empty() {
        return Err(TsmError::EmptyOutblob { path });
    }
    Ok(outblob)
}

//! Whose fault an error is, so callers can decide what to report and whether
//! to retry.

use std::fmt;

/// Who has to act for an operation to succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Blame {
    /// This machine's platform: kernel, hypervisor, TEE firmware or the
    /// host's quote generation service (missing driver, failed quote).
    Platform,
    /// The local environment: permissions, disk, configuration, a process
    /// racing us.
    Local,
    /// The caller's input (bad arguments, evidence that is not what it says).
    Caller,
    /// A remote collateral service (Intel PCS/PCCS, AMD KDS) answered badly.
    Server,
    /// The network between us and a remote service.
    Network,
}

impl fmt::Display for Blame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Platform => "platform",
            Self::Local => "local",
            Self::Caller => "caller",
            Self::Server => "server",
            Self::Network => "network",
        })
    }
}

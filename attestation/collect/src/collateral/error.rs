//! Errors of collateral sources.

use std::fmt;
use std::path::PathBuf;

use crate::blame::Blame;

/// What went wrong on the way to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// No answer in time.
    Timeout,
    /// The host name did not resolve.
    Dns,
    /// The connection could not be made or broke.
    Connect,
    /// TLS failed (certificate or protocol): retrying will not help.
    Tls,
    /// Anything else (bad URL, protocol error).
    Other,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Timeout => "timeout",
            Self::Dns => "DNS failure",
            Self::Connect => "connection failure",
            Self::Tls => "TLS failure",
            Self::Other => "request failure",
        })
    }
}

/// Why collateral could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollateralError {
    /// The evidence does not say what collateral it needs (not a quote or
    /// report, no PCK certificate, no SGX extensions, ...).
    #[error("cannot tell what collateral the evidence needs: {0}")]
    Evidence(String),
    /// A v2 SEV-SNP report does not name its processor and no product was given.
    #[error("cannot tell the SEV-SNP processor generation: {0}")]
    UnknownProduct(String),
    /// VLEK certificates are issued to cloud providers, not published on KDS.
    #[error(
        "the report is signed by a VLEK; VLEK certificates are not on AMD KDS (take it from the host's certificate table)"
    )]
    VlekNotOnKds,
    /// A file the offline source needs is not there.
    #[error("{what} not found at {path}")]
    NotFound {
        /// What was looked for.
        what: String,
        /// Where.
        path: PathBuf,
    },
    /// A local file could not be read.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we were doing.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A local file does not hold what it should.
    #[error("{path}: not valid {what}: {reason}")]
    MalformedFile {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The server answered with an HTTP error status.
    #[error("GET {url} answered HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The request did not get an answer.
    #[error("GET {url}: {kind}: {detail}")]
    Transport {
        /// The URL.
        url: String,
        /// What failed.
        kind: TransportKind,
        /// Details.
        detail: String,
    },
    /// The server answered 200 with something that is not the collateral.
    #[error("GET {url}: {what} is malformed: {reason}")]
    MalformedResponse {
        /// The URL.
        url: String,
        /// Which part.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The collateral parts do not assemble.
    #[error("assembling TDX collateral: {0}")]
    Assemble(#[from] cloister_attestation::tdx::CollateralError),
}

impl CollateralError {
    /// Whether trying again later may succeed: HTTP 5xx, 408 and 429,
    /// timeouts and connection failures. Malformed answers, 4xx and local
    /// problems are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status >= 500 || matches!(status, 408 | 429),
            Self::Transport { kind, .. } => {
                matches!(
                    kind,
                    TransportKind::Timeout | TransportKind::Dns | TransportKind::Connect
                )
            }
            _ => false,
        }
    }

    /// Who has to act.
    pub fn blame(&self) -> Blame {
        match self {
            Self::Evidence(_) | Self::UnknownProduct(_) | Self::VlekNotOnKds => Blame::Caller,
            Self::NotFound { .. } | Self::Io { .. } | Self::MalformedFile { .. } => Blame::Local,
            Self::Status { status, .. } if (400..500).contains(status) && *status != 429 => {
                Blame::Caller
            }
            Self::Status { .. } | Self::MalformedResponse { .. } | Self::Assemble(_) => {
                Blame::Server
            }
            Self::Transport { .. } => Blame::Network,
        }
    }
}

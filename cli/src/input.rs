//! Reading the command line's inputs, with errors that name the file and
//! say what was expected.

use std::path::Path;

use anyhow::{Context, Result, bail};
use cloister_attestation::{Policy, Timestamp};

/// Largest input file accepted: evidence and collateral are kilobytes.
const MAX_INPUT: u64 = 16 * 1024 * 1024;

/// Reads a whole file, refusing huge or unreadable ones.
pub(crate) fn read_file(what: &str, path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    if meta.is_dir() {
        bail!("{what} {} is a directory, not a file", path.display());
    }
    if meta.len() > MAX_INPUT {
        bail!(
            "{what} {} is {} bytes; larger than any real {what}",
            path.display(),
            meta.len()
        );
    }
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

/// The policy from a file, or the strict default.
pub(crate) fn policy(path: Option<&Path>) -> Result<Policy> {
    let Some(path) = path else {
        return Ok(Policy::strict());
    };
    let bytes = read_file("policy", path)?;
    let text = String::from_utf8(bytes)
        .with_context(|| format!("policy {} is not UTF-8 text", path.display()))?;
    Policy::from_toml(&text).with_context(|| format!("policy {}", path.display()))
}

/// `--at` or the current time.
pub(crate) fn at(value: Option<&str>) -> Result<Timestamp> {
    match value {
        None => Ok(Timestamp::now()),
        Some(text) => Timestamp::parse_rfc3339(text).context("--at"),
    }
}

/// Exactly `N` bytes of hex, for nonces and report data.
pub(crate) fn hex_bytes<const N: usize>(flag: &str, text: &str) -> Result<[u8; N]> {
    let cleaned = text.trim().trim_start_matches("0x");
    let bytes = hex::decode(cleaned).with_context(|| format!("{flag} is not hex"))?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| {
        anyhow::anyhow!(
            "{flag} must be {N} bytes ({} hex digits); got {len} bytes",
            N * 2
        )
    })
}

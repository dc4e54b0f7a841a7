//! An on-disk cache in front of any collateral source.
//!
//! - TDX collateral is cached per (FMSPC, CA) and served until it expires:
//!   the earliest `nextUpdate` of the TCB info, the QE identity and the two
//!   CRLs (a verifier rejects collateral past any of them, so serving it
//!   longer would only produce rejections).
//! - AMD certificates are cached per KDS request (product, hwID, TCB) and
//!   kept indefinitely: a VCEK for a given TCB and the ASK/ARK never change.
//! - AMD CRLs are cached per product and key kind until their nextUpdate.
//!
//! Writes go to a temporary file in the same directory, are synced, then
//! renamed over the entry, so a crash never leaves a half-written entry. An
//! entry that does not parse is a miss (with a warning) and is overwritten.
//! Failing to write the cache is logged, not fatal: the collateral fetched
//! is still returned.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use cloister_attestation::Timestamp;
use cloister_attestation::snp::Product;
use cloister_attestation::tdx::TdxCollateral;
use der::Decode as _;
use serde::Deserialize;

use super::{
    CollateralError, CollateralSource, SnpChainPem, SnpKeyKind, TdxCollateralKey, VcekKey,
    certificate_der, layout,
};

/// Wraps a source with an on-disk cache under a directory (for example
/// [`super::default_cache_dir`]).
#[derive(Debug, Clone)]
pub struct CachingCollateral<S> {
    inner: S,
    dir: PathBuf,
}

impl<S> CachingCollateral<S> {
    /// Caches `inner` under `dir` (created on first write).
    pub fn new(inner: S, dir: impl Into<PathBuf>) -> Self {
        Self {
            inner,
            dir: dir.into(),
        }
    }

    /// The wrapped source.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The instant TDX collateral stops being usable: the earliest `nextUpdate`
/// of TCB info, QE identity, PCK CRL and root CA CRL.
pub fn collateral_expiry(collateral: &TdxCollateral) -> Result<Timestamp, String> {
    expiry_of_json(collateral.to_json().as_bytes())
}

#[derive(Deserialize)]
struct Stored {
    qe_identity: String,
    pck_crl: String,
    root_ca_crl: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NextUpdate {
    next_update: String,
}

fn expiry_of_json(json: &[u8]) -> Result<Timestamp, String> {
    let collateral = TdxCollateral::from_json(json).map_err(|e| e.to_string())?;
    let stored: Stored = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let qe: NextUpdate =
        serde_json::from_str(&stored.qe_identity).map_err(|e| format!("QE identity: {e}"))?;
    let mut times = vec![
        Timestamp::parse_rfc3339(collateral.tcb_info_next_update()).map_err(|e| e.to_string())?,
        Timestamp::parse_rfc3339(&qe.next_update).map_err(|e| e.to_string())?,
    ];
    for (name, crl) in [
        ("PCK CRL", &stored.pck_crl),
        ("root CA CRL", &stored.root_ca_crl),
    ] {
        let der = hex::decode(crl.trim()).map_err(|e| format!("{name}: {e}"))?;
        if let Some(next) = crl_next_update(&der).map_err(|e| format!("{name}: {e}"))? {
            times.push(next);
        }
    }
    times
        .into_iter()
        .min()
        .ok_or_else(|| "no nextUpdate".to_owned())
}

/// Reads a cache entry: `Ok(None)` when absent, `Err` when unreadable or
/// corrupt (the caller treats both as a miss).
fn read_entry<T>(
    path: &Path,
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<Option<T>, String> {
    match std::fs::read(path) {
        Ok(bytes) => parse(&bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Writes `bytes` to `path` atomically: temp file in the same directory,
/// fsync, rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn store(path: &Path, bytes: &[u8]) {
    match write_atomic(path, bytes) {
        Ok(()) => tracing::debug!(path = %path.display(), len = bytes.len(), "cached collateral"),
        Err(e) => tracing::warn!(
            path = %path.display(),
            error = %e,
            "could not write collateral cache entry; continuing without caching"
        ),
    }
}

/// Looks an entry up; logs and returns `None` on a miss or a corrupt entry.
fn lookup<T>(path: &Path, parse: impl FnOnce(&[u8]) -> Result<T, String>) -> Option<T> {
    match read_entry(path, parse) {
        Ok(Some(value)) => Some(value),
        Ok(None) => {
            tracing::debug!(path = %path.display(), "collateral cache miss");
            None
        }
        Err(reason) => {
            tracing::warn!(
                path = %path.display(),
                %reason,
                "corrupt collateral cache entry; fetching again and overwriting it"
            );
            None
        }
    }
}

impl<S: CollateralSource> CollateralSource for CachingCollateral<S> {
    fn tdx_collateral(
        &self,
        key: &TdxCollateralKey,
        now: Timestamp,
    ) -> Result<TdxCollateral, CollateralError> {
        let path = layout::tdx(&self.dir, key);
        let cached = lookup(&path, |bytes| {
            let collateral = TdxCollateral::from_json(bytes).map_err(|e| e.to_string())?;
            if !collateral.fmspc().eq_ignore_ascii_case(&key.fmspc_hex()) {
                return Err(format!("holds FMSPC {}", collateral.fmspc()));
            }
            Ok((collateral, expiry_of_json(bytes)?))
        });
        match cached {
            Some((collateral, expires)) if now < expires => {
                tracing::debug!(%key, %expires, "TDX collateral from cache");
                return Ok(collateral);
            }
            Some((_, expires)) => {
                tracing::debug!(%key, %expires, %now, "cached TDX collateral expired; refetching");
            }
            None => {}
        }
        let fresh = self.inner.tdx_collateral(key, now)?;
        store(&path, fresh.to_json().as_bytes());
        Ok(fresh)
    }

    fn snp_vcek(&self, key: &VcekKey) -> Result<Vec<u8>, CollateralError> {
        let path = layout::vcek(&self.dir, key);
        if let Some(der) = lookup(&path, certificate_der) {
            return Ok(der);
        }
        let der = self.inner.snp_vcek(key)?;
        store(&path, &der);
        Ok(der)
    }

    fn snp_chain(
        &self,
        product: Product,
        kind: SnpKeyKind,
    ) -> Result<SnpChainPem, CollateralError> {
        let path = layout::chain(&self.dir, product, kind);
        if let Some(chain) = lookup(&path, SnpChainPem::from_kds_pem) {
            return Ok(chain);
        }
        let chain = self.inner.snp_chain(product, kind)?;
        store(&path, &chain.to_kds_pem());
        Ok(chain)
    }

    fn snp_crl(
        &self,
        product: Product,
        kind: SnpKeyKind,
        now: Timestamp,
    ) -> Result<Vec<u8>, CollateralError> {
        let path = layout::crl(&self.dir, product, kind);
        let cached = lookup(&path, |bytes| Ok((bytes.to_vec(), crl_next_update(bytes)?)));
        match cached {
            Some((der, Some(next))) if now < next => {
                tracing::debug!(%product, %kind, %next, "AMD CRL from cache");
                return Ok(der);
            }
            Some((_, next)) => {
                tracing::debug!(%product, %kind, ?next, %now, "cached AMD CRL is due; refetching");
            }
            None => {}
        }
        let fresh = self.inner.snp_crl(product, kind, now)?;
        store(&path, &fresh);
        Ok(fresh)
    }
}

/// A CRL's nextUpdate (a CRL without one is never served from the cache).
fn crl_next_update(der: &[u8]) -> Result<Option<Timestamp>, String> {
    let list = x509_cert::crl::CertificateList::from_der(der).map_err(|e| e.to_string())?;
    Ok(list
        .tbs_cert_list
        .next_update
        .map(|next| Timestamp::from_unix(next.to_unix_duration().as_secs())))
}

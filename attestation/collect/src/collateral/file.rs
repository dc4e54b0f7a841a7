//! Collateral from files: the offline default.

use std::path::{Path, PathBuf};

use cloister_attestation::Timestamp;
use cloister_attestation::snp::Product;
use cloister_attestation::tdx::TdxCollateral;

use super::{
    CollateralError, CollateralSource, SnpChainPem, SnpKeyKind, TdxCollateralKey, VcekKey,
    certificate_der, layout,
};

/// Reads collateral from a directory laid out as the cache writes it (see
/// the layout in this module's parent source, `layout.rs`):
/// `tdx/<FMSPC>-<ca>.json`, `amd/<Product>/vcek-....der`,
/// `amd/<Product>/vcek-cert_chain.pem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCollateral {
    dir: PathBuf,
}

impl FileCollateral {
    /// Collateral under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, CollateralError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            CollateralError::NotFound {
                what: what.to_owned(),
                path: path.to_path_buf(),
            }
        } else {
            CollateralError::Io {
                op: "read",
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

impl CollateralSource for FileCollateral {
    fn tdx_collateral(
        &self,
        key: &TdxCollateralKey,
        _now: Timestamp,
    ) -> Result<TdxCollateral, CollateralError> {
        let path = layout::tdx(&self.dir, key);
        let bytes = read(&path, &format!("TDX collateral for {key}"))?;
        TdxCollateral::from_json(&bytes).map_err(|e| CollateralError::MalformedFile {
            path,
            what: "TDX collateral JSON",
            reason: e.to_string(),
        })
    }

    fn snp_vcek(&self, key: &VcekKey) -> Result<Vec<u8>, CollateralError> {
        let path = layout::vcek(&self.dir, key);
        let bytes = read(&path, &format!("{} VCEK", key.product))?;
        certificate_der(&bytes).map_err(|reason| CollateralError::MalformedFile {
            path,
            what: "VCEK certificate",
            reason,
        })
    }

    fn snp_chain(
        &self,
        product: Product,
        kind: SnpKeyKind,
    ) -> Result<SnpChainPem, CollateralError> {
        let path = layout::chain(&self.dir, product, kind);
        let bytes = read(&path, &format!("{product} {kind} certificate chain"))?;
        SnpChainPem::from_kds_pem(&bytes).map_err(|reason| CollateralError::MalformedFile {
            path,
            what: "AMD certificate chain",
            reason,
        })
    }

    fn snp_crl(
        &self,
        product: Product,
        kind: SnpKeyKind,
        _now: Timestamp,
    ) -> Result<Vec<u8>, CollateralError> {
        let path = layout::crl(&self.dir, product, kind);
        let bytes = read(&path, &format!("{product} {kind} AMD CRL"))?;
        super::crl_der(&bytes).map_err(|reason| CollateralError::MalformedFile {
            path,
            what: "AMD CRL",
            reason,
        })
    }
}

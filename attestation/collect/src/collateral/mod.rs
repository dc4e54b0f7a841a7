//! Collateral for verifiers: Intel TDX collateral (TCB info, QE identity,
//! CRLs and their issuer chains) and AMD SEV-SNP certificates (VCEK, ASK,
//! ARK) and CRLs.
//!
//! [`CollateralSource`] is the interface. Implementations:
//!
//! - [`FileCollateral`]: files on disk, the offline default;
//! - [`HttpCollateral`]: Intel PCS (or a PCCS) and AMD KDS;
//! - [`CachingCollateral`]: wraps any source with an on-disk cache.
//!
//! The trait is synchronous on purpose: fetches are rare (the cache answers
//! almost every call), `ureq` is blocking, and a sync trait stays
//! object-safe without boxed futures. Async callers run it under
//! `tokio::task::spawn_blocking`.
//!
//! Nothing here verifies anything: a source may return stale or forged
//! collateral and the verifier in `cloister-attestation` will reject it.
//! Sources only check that what they return is well formed and is for the
//! key asked for, so that a cache is never filled with junk.

mod cache;
mod error;
mod file;
mod http;
mod layout;
mod own;
mod pck;
mod pcs;
mod snp;

use std::path::PathBuf;
use std::sync::Arc;

use cloister_attestation::Timestamp;
use cloister_attestation::snp::Product;
use cloister_attestation::tdx::TdxCollateral;
use der::Decode as _;

pub use cache::{CachingCollateral, collateral_expiry};
pub use error::{CollateralError, TransportKind};
pub use file::FileCollateral;
pub use http::{AMD_KDS, HttpCollateral, HttpConfig, INTEL_PCS, INTEL_ROOT_CA_CRL};
pub use own::{CollateralJsonError, OwnCollateral};
pub use pck::{PckCa, TdxCollateralKey};
pub use snp::{SnpCerts, SnpChainPem, SnpKeyKind, VcekKey};

/// Where collateral comes from.
pub trait CollateralSource: Send + Sync {
    /// TDX collateral for a platform. `now` lets caches decide freshness;
    /// sources never read the clock.
    fn tdx_collateral(
        &self,
        key: &TdxCollateralKey,
        now: Timestamp,
    ) -> Result<TdxCollateral, CollateralError>;

    /// The VCEK certificate (DER) for a chip at a TCB.
    fn snp_vcek(&self, key: &VcekKey) -> Result<Vec<u8>, CollateralError>;

    /// ASK (or ASVK for VLEKs) and ARK for a product.
    fn snp_chain(&self, product: Product, kind: SnpKeyKind)
    -> Result<SnpChainPem, CollateralError>;

    /// AMD's CRL for a product's ARK (DER), listing revoked ASKs (`Vcek`)
    /// or ASVKs (`Vlek`). `now` lets caches decide freshness.
    fn snp_crl(
        &self,
        product: Product,
        kind: SnpKeyKind,
        now: Timestamp,
    ) -> Result<Vec<u8>, CollateralError>;

    /// TDX collateral for a quote: FMSPC and CA type from its PCK certificate.
    fn tdx_collateral_for_quote(
        &self,
        quote: &[u8],
        now: Timestamp,
    ) -> Result<TdxCollateral, CollateralError> {
        let key = TdxCollateralKey::from_quote(quote)?;
        self.tdx_collateral(&key, now)
    }

    /// VCEK, ASK and ARK for a VCEK-signed report. `product` is needed for
    /// v2 reports, which do not carry their CPUID; v3+ reports name it.
    fn snp_certs_for_report(
        &self,
        report: &[u8],
        product: Option<Product>,
    ) -> Result<SnpCerts, CollateralError> {
        let key = snp::vcek_key_for_report(report, product)?;
        let vek = self.snp_vcek(&key)?;
        let chain = self.snp_chain(key.product, SnpKeyKind::Vcek)?;
        Ok(SnpCerts {
            ark: chain.ark,
            ask: chain.ask,
            vek,
        })
    }
}

impl<T: CollateralSource + ?Sized> CollateralSource for Box<T> {
    fn tdx_collateral(
        &self,
        key: &TdxCollateralKey,
        now: Timestamp,
    ) -> Result<TdxCollateral, CollateralError> {
        (**self).tdx_collateral(key, now)
    }
    fn snp_vcek(&self, key: &VcekKey) -> Result<Vec<u8>, CollateralError> {
        (**self).snp_vcek(key)
    }
    fn snp_chain(
        &self,
        product: Product,
        kind: SnpKeyKind,
    ) -> Result<SnpChainPem, CollateralError> {
        (**self).snp_chain(product, kind)
    }
    fn snp_crl(
        &self,
        product: Product,
        kind: SnpKeyKind,
        now: Timestamp,
    ) -> Result<Vec<u8>, CollateralError> {
        (**self).snp_crl(product, kind, now)
    }
}

impl<T: CollateralSource + ?Sized> CollateralSource for Arc<T> {
    fn tdx_collateral(
        &self,
        key: &TdxCollateralKey,
        now: Timestamp,
    ) -> Result<TdxCollateral, CollateralError> {
        (**self).tdx_collateral(key, now)
    }
    fn snp_vcek(&self, key: &VcekKey) -> Result<Vec<u8>, CollateralError> {
        (**self).snp_vcek(key)
    }
    fn snp_chain(
        &self,
        product: Product,
        kind: SnpKeyKind,
    ) -> Result<SnpChainPem, CollateralError> {
        (**self).snp_chain(product, kind)
    }
    fn snp_crl(
        &self,
        product: Product,
        kind: SnpKeyKind,
        now: Timestamp,
    ) -> Result<Vec<u8>, CollateralError> {
        (**self).snp_crl(product, kind, now)
    }
}

/// The default cache directory: `$XDG_CACHE_HOME/cloister/collateral`, else
/// `$HOME/.cache/cloister/collateral`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("cloister").join("collateral"))
}

/// Checks that bytes are one DER X.509 certificate.
fn check_certificate_der(der: &[u8]) -> Result<(), String> {
    x509_cert::Certificate::from_der(der)
        .map(|_| ())
        .map_err(|e| format!("not an X.509 certificate: {e}"))
}

/// A certificate given as DER or PEM, as DER.
fn certificate_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let der = if bytes.starts_with(b"-----BEGIN") {
        pem::parse(bytes)
            .map_err(|e| e.to_string())?
            .into_contents()
    } else {
        bytes.to_vec()
    };
    check_certificate_der(&der)?;
    Ok(der)
}

/// Checks that bytes are one DER CRL (signature and dates are the
/// verifier's business).
fn crl_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
    cloister_attestation::snp::AmdCrl::parse(bytes).map_err(|e| e.to_string())?;
    Ok(bytes.to_vec())
}

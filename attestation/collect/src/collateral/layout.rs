//! The on-disk layout shared by [`super::FileCollateral`] and
//! [`super::CachingCollateral`], so a cache directory can be copied to an
//! offline verifier and read as files:
//!
//! ```text
//! tdx/<FMSPC>-<platform|processor>.json          TDX collateral JSON (TdxCollateral::to_json)
//! amd/<Product>/vcek-<hwid>-bl..-tee..-snp..-ucode..[-fmc..].der   VCEK (DER)
//! amd/<Product>/vcek-cert_chain.pem              ASK then ARK (PEM), as KDS serves it
//! amd/<Product>/vlek-cert_chain.pem              ASVK then ARK (PEM)
//! amd/<Product>/vcek-crl.der                     AMD CRL for the ARK (DER), as KDS serves it
//! amd/<Product>/vlek-crl.der
//! ```
//!
//! The AMD names encode exactly what the KDS URL encodes (product, hwID and
//! every SPL), so caching per file is caching per URL.

use std::path::{Path, PathBuf};

use cloister_attestation::snp::Product;

use super::{SnpKeyKind, TdxCollateralKey, VcekKey};

pub(super) fn tdx(dir: &Path, key: &TdxCollateralKey) -> PathBuf {
    dir.join("tdx")
        .join(format!("{}-{}.json", key.fmspc_hex(), key.ca.as_str()))
}

pub(super) fn vcek(dir: &Path, key: &VcekKey) -> PathBuf {
    dir.join("amd")
        .join(key.product.name())
        .join(key.file_name())
}

pub(super) fn chain(dir: &Path, product: Product, kind: SnpKeyKind) -> PathBuf {
    dir.join("amd")
        .join(product.name())
        .join(format!("{}-cert_chain.pem", kind.as_str()))
}

pub(super) fn crl(dir: &Path, product: Product, kind: SnpKeyKind) -> PathBuf {
    dir.join("amd")
        .join(product.name())
        .join(format!("{}-crl.der", kind.as_str()))
}

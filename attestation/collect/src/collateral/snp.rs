//! What SEV-SNP certificates a report needs.

use std::fmt;

use cloister_attestation::snp::{Product, Report, SigningKey, SnpCertChain, SnpError, Tcb};

use super::CollateralError;

/// Which kind of key signs reports; selects the certificate chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnpKeyKind {
    /// VCEK, chained through the ASK.
    Vcek,
    /// VLEK, chained through the ASVK.
    Vlek,
}

impl SnpKeyKind {
    /// The path segment AMD KDS uses (`vcek`, `vlek`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Vcek => "vcek",
            Self::Vlek => "vlek",
        }
    }
}

impl fmt::Display for SnpKeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What identifies a VCEK: the chip and the TCB it certifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcekKey {
    /// Processor generation.
    pub product: Product,
    /// The hwID: the 64-byte chip id, or its first 8 bytes on Turin.
    pub hw_id: Vec<u8>,
    /// The reported TCB.
    pub tcb: Tcb,
}

impl VcekKey {
    /// The key for a parsed report of `product`.
    pub fn from_report(report: &Report<'_>, product: Product) -> Self {
        let hw_id = match product {
            Product::Turin => report.chip_id.get(..8).unwrap_or_default().to_vec(),
            _ => report.chip_id.to_vec(),
        };
        Self {
            product,
            hw_id,
            tcb: Tcb::from_raw(report.reported_tcb, product),
        }
    }

    /// The KDS query string with the TCB's security patch levels.
    pub fn spl_query(&self) -> String {
        let t = &self.tcb;
        let mut query = format!(
            "blSPL={:02}&teeSPL={:02}&snpSPL={:02}&ucodeSPL={:02}",
            t.bootloader, t.tee, t.snp, t.microcode
        );
        if let Some(fmc) = t.fmc {
            query.push_str(&format!("&fmcSPL={fmc:02}"));
        }
        query
    }

    /// The KDS path below the base URL.
    pub fn kds_path(&self) -> String {
        format!(
            "/vcek/v1/{}/{}?{}",
            self.product.name(),
            hex::encode(&self.hw_id),
            self.spl_query()
        )
    }

    /// A file name for the certificate (offline files and the cache).
    pub fn file_name(&self) -> String {
        let t = &self.tcb;
        let mut name = format!(
            "vcek-{}-bl{}-tee{}-snp{}-ucode{}",
            hex::encode(&self.hw_id),
            t.bootloader,
            t.tee,
            t.snp,
            t.microcode
        );
        if let Some(fmc) = t.fmc {
            name.push_str(&format!("-fmc{fmc}"));
        }
        name.push_str(".der");
        name
    }
}

/// ASK (or ASVK) and ARK, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpChainPem {
    /// The intermediate: ASK for VCEKs, ASVK for VLEKs.
    pub ask: Vec<u8>,
    /// The AMD root key.
    pub ark: Vec<u8>,
}

impl SnpChainPem {
    /// Splits KDS's `cert_chain` (PEM, ASK then ARK).
    pub fn from_kds_pem(pem_text: &[u8]) -> Result<Self, String> {
        let blocks = pem::parse_many(pem_text).map_err(|e| e.to_string())?;
        let certs: Vec<_> = blocks
            .into_iter()
            .filter(|b| b.tag() == "CERTIFICATE")
            .collect();
        let [ask, ark] = certs.as_slice() else {
            return Err(format!(
                "expected 2 certificates (ASK, ARK), found {}",
                certs.len()
            ));
        };
        for block in [ask, ark] {
            super::check_certificate_der(block.contents())?;
        }
        Ok(Self {
            ask: pem::encode(ask).into_bytes(),
            ark: pem::encode(ark).into_bytes(),
        })
    }

    /// The KDS form: ASK then ARK, PEM.
    pub fn to_kds_pem(&self) -> Vec<u8> {
        let mut out = self.ask.clone();
        out.extend_from_slice(&self.ark);
        out
    }
}

/// Everything needed to verify a VCEK-signed report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpCerts {
    /// AMD root key, PEM.
    pub ark: Vec<u8>,
    /// ASK, PEM.
    pub ask: Vec<u8>,
    /// VCEK, DER.
    pub vek: Vec<u8>,
}

impl SnpCerts {
    /// Parses them into the verifier's chain type.
    pub fn to_chain(&self) -> Result<SnpCertChain, SnpError> {
        SnpCertChain::parse(Some(&self.ark), &self.ask, &self.vek)
    }
}

/// The product and VCEK key for a raw report.
pub(crate) fn vcek_key_for_report(
    raw: &[u8],
    product_hint: Option<Product>,
) -> Result<VcekKey, CollateralError> {
    let report = Report::parse(raw)
        .map_err(|e| CollateralError::Evidence(format!("not an SEV-SNP report: {e}")))?;
    match report.signing_key() {
        SigningKey::Vcek => {}
        SigningKey::Vlek => return Err(CollateralError::VlekNotOnKds),
        other => {
            return Err(CollateralError::Evidence(format!(
                "the report is signed by {other}, not a VCEK"
            )));
        }
    }
    let product = match (report.product_from_cpuid(), product_hint) {
        (Some(cpuid), Some(hint)) if cpuid != hint => {
            return Err(CollateralError::Evidence(format!(
                "the report's CPUID says {cpuid}, but {hint} was given"
            )));
        }
        (Some(product), _) | (None, Some(product)) => product,
        (None, None) => {
            return Err(CollateralError::UnknownProduct(format!(
                "a v{} report carries no CPUID; pass the product (Milan, Genoa, Turin)",
                report.version
            )));
        }
    };
    Ok(VcekKey::from_report(&report, product))
}

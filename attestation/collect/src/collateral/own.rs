//! Collateral a verifier supplies instead of the bundle's own: fetched from
//! a [`CollateralSource`] for the bundle's evidence (the router at every
//! challenge, a client verifying a node), logged as JSON with the verdict,
//! and read back by an auditor.

use base64::Engine as _;
use cloister_attestation::bundle::{BundleOptions, EvidenceBundle};
use cloister_attestation::snp::{AmdCrl, Report};
use cloister_attestation::tdx::TdxCollateral;
use cloister_attestation::{Platform, Timestamp};
use serde_json::json;

use super::{CollateralSource, SnpKeyKind};

/// Collateral a verifier supplies instead of the bundle's own: what it
/// fetched itself, or what an auditor reads back from the log
/// ([`OwnCollateral::from_json`]).
#[derive(Default)]
pub struct OwnCollateral {
    /// Intel PCS collateral for a TDX quote.
    pub tdx: Option<TdxCollateral>,
    /// AMD's CRL for an SEV-SNP report's chain.
    pub amd_crl: Option<AmdCrl>,
    /// That CRL as DER, as logged.
    pub amd_crl_der: Option<Vec<u8>>,
}

impl std::fmt::Debug for OwnCollateral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnCollateral")
            .field("tdx", &self.tdx.is_some())
            .field("amd_crl", &self.amd_crl.is_some())
            .finish_non_exhaustive()
    }
}

/// A logged collateral document that cannot be read back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollateralJsonError {
    /// Not JSON, or neither of the two known shapes.
    #[error("logged collateral is not {{\"tdx_collateral\": ...}} or {{\"amd_crl\": base64}}: {0}")]
    Shape(String),
    /// The TDX collateral inside does not parse.
    #[error("logged TDX collateral: {0}")]
    Tdx(String),
    /// The AMD CRL inside does not decode or parse.
    #[error("logged AMD CRL: {0}")]
    AmdCrl(String),
}

impl OwnCollateral {
    /// Fetches, for `bundle`'s evidence, the TDX collateral or the AMD CRL
    /// (blocking I/O: call it off the async threads). Other platforms need
    /// none.
    pub fn fetch(
        source: &dyn CollateralSource,
        bundle: &EvidenceBundle,
        now: Timestamp,
    ) -> Result<Self, String> {
        let evidence = &bundle.evidence.0;
        match bundle.platform {
            Platform::Tdx => {
                let tdx = source
                    .tdx_collateral_for_quote(evidence, now)
                    .map_err(|e| format!("TDX collateral: {e}"))?;
                Ok(Self {
                    tdx: Some(tdx),
                    ..Self::default()
                })
            }
            Platform::SevSnp => {
                let product = Report::parse(evidence)
                    .ok()
                    .and_then(|r| r.product_from_cpuid())
                    .ok_or("the SEV-SNP report names no known product")?;
                let der = source
                    .snp_crl(product, SnpKeyKind::Vcek, now)
                    .map_err(|e| format!("AMD CRL: {e}"))?;
                let crl = AmdCrl::parse(&der).map_err(|e| format!("AMD CRL unusable: {e}"))?;
                Ok(Self {
                    amd_crl: Some(crl),
                    amd_crl_der: Some(der),
                    ..Self::default()
                })
            }
            _ => Ok(Self::default()),
        }
    }

    /// What the log records as "collateral used":
    /// `{"tdx_collateral": <collateral JSON>}` or `{"amd_crl": "<base64 DER>"}`,
    /// `None` when the bundle's own collateral was used.
    pub fn to_json(&self) -> Option<String> {
        if let Some(tdx) = &self.tdx {
            return Some(json!({ "tdx_collateral": serde_json::from_str::<serde_json::Value>(&tdx.to_json()).ok() }).to_string());
        }
        self.amd_crl_der.as_ref().map(|der| {
            json!({ "amd_crl": base64::engine::general_purpose::STANDARD.encode(der) }).to_string()
        })
    }

    /// Reads back what [`to_json`](Self::to_json) wrote.
    pub fn from_json(text: &str) -> Result<Self, CollateralJsonError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| CollateralJsonError::Shape(e.to_string()))?;
        if let Some(tdx) = value.get("tdx_collateral") {
            let bytes =
                serde_json::to_vec(tdx).map_err(|e| CollateralJsonError::Tdx(e.to_string()))?;
            let tdx = TdxCollateral::from_json(&bytes)
                .map_err(|e| CollateralJsonError::Tdx(e.to_string()))?;
            return Ok(Self {
                tdx: Some(tdx),
                ..Self::default()
            });
        }
        if let Some(crl) = value.get("amd_crl") {
            let der = crl
                .as_str()
                .ok_or_else(|| CollateralJsonError::AmdCrl("not a base64 string".into()))
                .and_then(|b64| {
                    base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|e| CollateralJsonError::AmdCrl(e.to_string()))
                })?;
            let crl =
                AmdCrl::parse(&der).map_err(|e| CollateralJsonError::AmdCrl(e.to_string()))?;
            return Ok(Self {
                amd_crl: Some(crl),
                amd_crl_der: Some(der),
                ..Self::default()
            });
        }
        Err(CollateralJsonError::Shape("no known key".into()))
    }

    /// Bundle options using this collateral and requiring `nonce`.
    pub fn options(&self, nonce: [u8; 32]) -> BundleOptions<'_> {
        BundleOptions {
            expected_nonce: Some(nonce),
            tdx_collateral: self.tdx.as_ref(),
            amd_crl: self.amd_crl.as_ref(),
        }
    }
}

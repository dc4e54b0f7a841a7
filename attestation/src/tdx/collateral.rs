//! TDX/SGX collateral: Intel PCS TCB info, QE identity, CRLs and their chains.
//!
//! The on-disk and in-bundle form is JSON with these keys (the layout the
//! `dcap-qvl` project uses, `QuoteCollateralV3`):
//!
//! | key | value |
//! |---|---|
//! | `tcb_info`, `qe_identity` | the exact signed JSON bodies, as strings |
//! | `tcb_info_signature`, `qe_identity_signature` | hex, raw ECDSA P-256 `r‖s` |
//! | `tcb_info_issuer_chain`, `qe_identity_issuer_chain`, `pck_crl_issuer_chain` | PEM, leaf first |
//! | `pck_crl`, `root_ca_crl` | hex DER CRLs |

use serde::{Deserialize, Serialize};

/// Why collateral could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CollateralError {
    /// Not JSON, or a key is missing or of the wrong type.
    #[error("TDX collateral is not valid collateral JSON: {0}")]
    Json(String),
    /// A hex field is not hex.
    #[error("TDX collateral field {field} is not hex: {reason}")]
    Hex {
        /// The field.
        field: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A signed body is not the JSON it should be.
    #[error("TDX collateral field {field} is not a valid signed body: {reason}")]
    Body {
        /// The field.
        field: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// The JSON form, with hex strings for binary fields.
/// Unknown keys are ignored; in particular a `pck_certificate_chain` key is
/// never used: the PCK chain always comes from the quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CollateralJson {
    pck_crl_issuer_chain: String,
    root_ca_crl: String,
    pck_crl: String,
    tcb_info_issuer_chain: String,
    tcb_info: String,
    tcb_info_signature: String,
    qe_identity_issuer_chain: String,
    qe_identity: String,
    qe_identity_signature: String,
}

/// Facts from the signed TCB info, for display.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TcbInfoSummary {
    id: Option<String>,
    fmspc: String,
    issue_date: String,
    next_update: String,
    tcb_evaluation_data_number: Option<u32>,
}

/// Facts from the signed QE identity.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QeIdentitySummary {
    tcb_evaluation_data_number: Option<u32>,
}

/// Collateral for verifying one DCAP quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxCollateral {
    pub(crate) inner: dcap_qvl::QuoteCollateralV3,
    summary: TcbInfoSummary,
    qe_summary: QeIdentitySummary,
}

impl TdxCollateral {
    /// Parses collateral JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, CollateralError> {
        let json: CollateralJson =
            serde_json::from_slice(bytes).map_err(|e| CollateralError::Json(e.to_string()))?;
        let hex_field = |field: &'static str, value: &str| {
            hex::decode(value.trim()).map_err(|e| CollateralError::Hex {
                field,
                reason: e.to_string(),
            })
        };
        let summary: TcbInfoSummary =
            serde_json::from_str(&json.tcb_info).map_err(|e| CollateralError::Body {
                field: "tcb_info",
                reason: e.to_string(),
            })?;
        let qe_summary: QeIdentitySummary =
            serde_json::from_str(&json.qe_identity).map_err(|e| CollateralError::Body {
                field: "qe_identity",
                reason: e.to_string(),
            })?;
        let inner = dcap_qvl::QuoteCollateralV3 {
            root_ca_crl: hex_field("root_ca_crl", &json.root_ca_crl)?,
            pck_crl: hex_field("pck_crl", &json.pck_crl)?,
            tcb_info_signature: hex_field("tcb_info_signature", &json.tcb_info_signature)?,
            qe_identity_signature: hex_field("qe_identity_signature", &json.qe_identity_signature)?,
            pck_crl_issuer_chain: json.pck_crl_issuer_chain,
            tcb_info_issuer_chain: json.tcb_info_issuer_chain,
            tcb_info: json.tcb_info,
            qe_identity_issuer_chain: json.qe_identity_issuer_chain,
            qe_identity: json.qe_identity,
            pck_certificate_chain: None,
        };
        Ok(Self {
            inner,
            summary,
            qe_summary,
        })
    }

    /// Serialises to the JSON form [`TdxCollateral::from_json`] reads.
    pub fn to_json(&self) -> String {
        let c = &self.inner;
        let json = CollateralJson {
            pck_crl_issuer_chain: c.pck_crl_issuer_chain.clone(),
            root_ca_crl: hex::encode(&c.root_ca_crl),
            pck_crl: hex::encode(&c.pck_crl),
            tcb_info_issuer_chain: c.tcb_info_issuer_chain.clone(),
            tcb_info: c.tcb_info.clone(),
            tcb_info_signature: hex::encode(&c.tcb_info_signature),
            qe_identity_issuer_chain: c.qe_identity_issuer_chain.clone(),
            qe_identity: c.qe_identity.clone(),
            qe_identity_signature: hex::encode(&c.qe_identity_signature),
        };
        serde_json::to_string_pretty(&json).unwrap_or_default()
    }

    /// Builds collateral from its parts as Intel PCS serves them: the signed
    /// bodies exactly as received, raw signatures, PEM chains and DER CRLs.
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        tcb_info: String,
        tcb_info_signature: Vec<u8>,
        tcb_info_issuer_chain: String,
        qe_identity: String,
        qe_identity_signature: Vec<u8>,
        qe_identity_issuer_chain: String,
        pck_crl: Vec<u8>,
        pck_crl_issuer_chain: String,
        root_ca_crl: Vec<u8>,
    ) -> Result<Self, CollateralError> {
        let json = CollateralJson {
            pck_crl_issuer_chain,
            root_ca_crl: hex::encode(root_ca_crl),
            pck_crl: hex::encode(pck_crl),
            tcb_info_issuer_chain,
            tcb_info,
            tcb_info_signature: hex::encode(tcb_info_signature),
            qe_identity_issuer_chain,
            qe_identity,
            qe_identity_signature: hex::encode(qe_identity_signature),
        };
        let bytes = serde_json::to_vec(&json).map_err(|e| CollateralError::Json(e.to_string()))?;
        Self::from_json(&bytes)
    }

    /// FMSPC the TCB info is for (hex, as Intel writes it).
    pub fn fmspc(&self) -> &str {
        &self.summary.fmspc
    }

    /// `TDX` or `SGX`.
    pub fn tcb_info_id(&self) -> Option<&str> {
        self.summary.id.as_deref()
    }

    /// TCB info issue date (RFC 3339).
    pub fn tcb_info_issue_date(&self) -> &str {
        &self.summary.issue_date
    }

    /// TCB info next update (RFC 3339).
    pub fn tcb_info_next_update(&self) -> &str {
        &self.summary.next_update
    }

    /// Intel's TCB evaluation data number.
    pub fn tcb_evaluation_data_number(&self) -> Option<u32> {
        self.summary.tcb_evaluation_data_number
    }

    /// Intel's TCB evaluation data number of the QE identity.
    pub fn qe_tcb_evaluation_data_number(&self) -> Option<u32> {
        self.qe_summary.tcb_evaluation_data_number
    }

    /// The signed TCB info body.
    pub fn tcb_info_json(&self) -> &str {
        &self.inner.tcb_info
    }

    /// The signed QE identity body.
    pub fn qe_identity_json(&self) -> &str {
        &self.inner.qe_identity
    }
}

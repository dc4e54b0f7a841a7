//! The evidence bundle (DESIGN.md section 3): what nodes serve, routers
//! store and auditors re-verify.
//!
//! ```json
//! { "version": 1,
//!   "platform": "tdx" | "sev-snp" | "simulated",
//!   "evidence": "<base64 quote or report>",
//!   "certs": { "vcek"|"vlek": "<PEM>", "ask"|"asvk": "<PEM>", "ark": "<PEM>",
//!              "amd_crl": "<PEM X509 CRL>",
//!              "tdx_collateral": { ...collateral JSON... } },
//!   "gpu": [ { "report": "<base64>", "cert_chain": "<PEM>" } ],
//!   "identity": { "hpke_key_config": "...", "signer": "0x...",
//!                 "model": { "id": "...", "weights_sha256": "..." },
//!                 "app": { "version": "...", "git": "..." } },
//!   "nonce": "<64 hex>" }
//! ```
//!
//! `certs.tdx_collateral` is optional: a node may include the Intel
//! collateral it used so the bundle verifies offline as is; a verifier may
//! instead supply its own (fresher) collateral.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::binding::{self, Identity};
use crate::gpu;
use crate::policy::{Policy, allowed};
use crate::simulated;
use crate::snp::{self, AmdCrl, SnpCertChain, SnpError};
use crate::tdx::{self, CollateralError, TdxCollateral};
use crate::time::Timestamp;
use crate::verdict::{Platform, ReasonCode, Verdict};

/// The only bundle version.
pub const BUNDLE_VERSION: u32 = 1;

/// Why a bundle cannot be verified at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// Not JSON of the bundle's shape.
    #[error("not an evidence bundle: {0}")]
    Json(String),
    /// A version other than 1.
    #[error("evidence bundle version {0} is not supported (1 is)")]
    UnsupportedVersion(u32),
    /// A platform a bundle cannot carry.
    #[error("a bundle cannot carry {0} evidence")]
    UnsupportedPlatform(Platform),
    /// A base64 field that is not base64.
    #[error("bundle field {field} is not base64: {reason}")]
    Base64 {
        /// The field.
        field: String,
        /// What was wrong.
        reason: String,
    },
    /// The nonce is not 32 bytes of hex.
    #[error("bundle nonce {0:?} is not 32 bytes of hex")]
    Nonce(String),
    /// The identity is not an object of the expected shape.
    #[error("bundle identity is not valid: {0}")]
    Identity(String),
    /// TDX evidence without collateral, none supplied either.
    #[error(
        "TDX bundle has no certs.tdx_collateral and no collateral was supplied (pass --collateral FILE)"
    )]
    MissingCollateral,
    /// Collateral that cannot be parsed.
    #[error(transparent)]
    Collateral(#[from] CollateralError),
    /// SNP evidence without the certificates to check it.
    #[error("SEV-SNP bundle lacks {0} in certs (and none was supplied)")]
    MissingCertificate(&'static str),
    /// SNP certificates that cannot be parsed.
    #[error("SEV-SNP certificates: {0}")]
    Certificates(SnpError),
}

/// Base64 bytes in JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base64Bytes(pub Vec<u8>);

impl Serialize for Base64Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Base64Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map(Self)
            .map_err(|e| serde::de::Error::custom(format!("not base64: {e}")))
    }
}

/// Certificates and collateral carried in a bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleCerts {
    /// SNP VCEK (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcek: Option<String>,
    /// SNP VLEK (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlek: Option<String>,
    /// SNP ASK (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask: Option<String>,
    /// SNP ASVK (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asvk: Option<String>,
    /// SNP ARK (PEM); must be AMD's pinned root when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ark: Option<String>,
    /// AMD's CRL for the ARK (PEM `X509 CRL`), optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amd_crl: Option<String>,
    /// TDX collateral JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tdx_collateral: Option<serde_json::Value>,
}

/// GPU evidence in a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuEvidence {
    /// SPDM GET_MEASUREMENTS request and response.
    pub report: Base64Bytes,
    /// Device certificate chain, PEM, leaf first.
    pub cert_chain: String,
}

/// An evidence bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceBundle {
    /// Format version (1).
    pub version: u32,
    /// Evidence kind.
    pub platform: Platform,
    /// Quote or report bytes as the hardware produced them.
    pub evidence: Base64Bytes,
    /// Certificates and collateral.
    #[serde(default)]
    pub certs: BundleCerts,
    /// GPU evidence.
    #[serde(default)]
    pub gpu: Vec<GpuEvidence>,
    /// The node's identity, hashed into the report data as received.
    pub identity: serde_json::Value,
    /// The verifier's nonce (64 hex digits).
    pub nonce: String,
}

/// What a verifier supplies besides the bundle.
#[derive(Debug, Clone, Default)]
pub struct BundleOptions<'a> {
    /// The nonce this verifier chose; the bundle must answer it.
    pub expected_nonce: Option<[u8; 32]>,
    /// TDX collateral to use instead of the bundle's.
    pub tdx_collateral: Option<&'a TdxCollateral>,
    /// AMD CRL to use instead of the bundle's (a verifier's own is fresher
    /// than one the node chose).
    pub amd_crl: Option<&'a AmdCrl>,
}

impl EvidenceBundle {
    /// Parses bundle JSON, checking version, platform, nonce and identity
    /// shape. JSON with a duplicate key in any object is refused: readers
    /// disagree on which copy counts.
    pub fn from_json(bytes: &[u8]) -> Result<Self, BundleError> {
        crate::unique_keys::check(bytes).map_err(BundleError::Json)?;
        let bundle: Self =
            serde_json::from_slice(bytes).map_err(|e| BundleError::Json(e.to_string()))?;
        if bundle.version != BUNDLE_VERSION {
            return Err(BundleError::UnsupportedVersion(bundle.version));
        }
        if !matches!(
            bundle.platform,
            Platform::Tdx | Platform::SevSnp | Platform::Simulated
        ) {
            return Err(BundleError::UnsupportedPlatform(bundle.platform));
        }
        bundle.nonce_bytes()?;
        bundle.typed_identity()?;
        Ok(bundle)
    }

    /// Serialises to JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The nonce as bytes.
    pub fn nonce_bytes(&self) -> Result<[u8; 32], BundleError> {
        hex::decode(&self.nonce)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| BundleError::Nonce(self.nonce.clone()))
    }

    /// The identity as the typed structure.
    pub fn typed_identity(&self) -> Result<Identity, BundleError> {
        serde_json::from_value(self.identity.clone())
            .map_err(|e| BundleError::Identity(e.to_string()))
    }

    /// The report data the evidence must carry.
    pub fn expected_report_data(&self) -> Result<[u8; 64], BundleError> {
        Ok(binding::report_data(
            &self.nonce_bytes()?,
            &self.identity,
            self.gpu.iter().map(|g| g.report.0.as_slice()),
        ))
    }

    /// The SNP chain from the bundle's certs.
    pub fn snp_chain(&self) -> Result<SnpCertChain, BundleError> {
        let c = &self.certs;
        let vek = c
            .vcek
            .as_ref()
            .or(c.vlek.as_ref())
            .ok_or(BundleError::MissingCertificate("vcek or vlek"))?;
        let ask = c
            .ask
            .as_ref()
            .or(c.asvk.as_ref())
            .ok_or(BundleError::MissingCertificate("ask or asvk"))?;
        let chain = SnpCertChain::parse(
            c.ark.as_deref().map(str::as_bytes),
            ask.as_bytes(),
            vek.as_bytes(),
        )
        .map_err(BundleError::Certificates)?;
        match &c.amd_crl {
            None => Ok(chain),
            Some(pem) => AmdCrl::parse(pem.as_bytes())
                .map(|crl| chain.with_crl(crl))
                .map_err(|e| BundleError::Certificates(e.into())),
        }
    }
}

/// Verifies a bundle and appraises it: the platform evidence with its
/// binding to nonce, identity and GPU reports; every GPU report; nonce and
/// model against the verifier's expectations and policy.
///
/// `Err` means the bundle cannot be checked at all (missing collateral or
/// certificates). Evidence that does not parse is a rejection, not an error:
/// it is the node's fault.
pub fn appraise(
    bundle: &EvidenceBundle,
    policy: &Policy,
    now: Timestamp,
    options: &BundleOptions<'_>,
) -> Result<Verdict, BundleError> {
    let expected = bundle.expected_report_data()?;
    let evidence = bundle.evidence.0.as_slice();
    let malformed = |platform: Platform, code: ReasonCode, detail: String| {
        let mut v = Verdict::new(platform, now);
        v.reject(code, detail);
        v
    };
    let mut verdict = match bundle.platform {
        Platform::Tdx => {
            let owned;
            let collateral = match (options.tdx_collateral, &bundle.certs.tdx_collateral) {
                (Some(c), _) => c,
                (None, Some(json)) => {
                    let bytes =
                        serde_json::to_vec(json).map_err(|e| BundleError::Json(e.to_string()))?;
                    owned = TdxCollateral::from_json(&bytes)?;
                    &owned
                }
                (None, None) => return Err(BundleError::MissingCollateral),
            };
            tdx::appraise(evidence, collateral, policy, now, Some(&expected))
                .unwrap_or_else(|e| malformed(Platform::Tdx, e.code(), e.to_string()))
        }
        Platform::SevSnp => {
            let mut chain = bundle.snp_chain()?;
            if let Some(crl) = options.amd_crl {
                chain = chain.with_crl(crl.clone());
            }
            snp::appraise(evidence, &chain, policy, now, Some(&expected)).unwrap_or_else(|e| {
                let e = SnpError::from(e);
                malformed(Platform::SevSnp, e.code(), e.to_string())
            })
        }
        Platform::Simulated => simulated::appraise(evidence, policy, now, Some(&expected))
            .unwrap_or_else(|e| {
                let mut v = malformed(Platform::Simulated, e.code(), e.to_string());
                v.simulated = true;
                v
            }),
        other => return Err(BundleError::UnsupportedPlatform(other)),
    };
    let rule = verdict.policy_rule.take();
    check_bundle(&mut verdict, bundle, policy, now, options)?;
    verdict.settle(rule);
    Ok(verdict)
}

fn check_bundle(
    v: &mut Verdict,
    bundle: &EvidenceBundle,
    policy: &Policy,
    now: Timestamp,
    options: &BundleOptions<'_>,
) -> Result<(), BundleError> {
    let nonce = bundle.nonce_bytes()?;
    if let Some(expected) = options.expected_nonce
        && expected != nonce
    {
        v.reject(
            ReasonCode::NonceMismatch,
            format!(
                "bundle answers nonce {}, not {}",
                bundle.nonce,
                hex::encode(expected)
            ),
        );
    }
    let identity = bundle.typed_identity()?;
    v.facts
        .insert("identity.signer".into(), identity.signer.clone());
    v.facts
        .insert("identity.model.id".into(), identity.model.id.clone());
    v.facts.insert(
        "identity.model.weights_sha256".into(),
        identity.model.weights_sha256.clone(),
    );
    v.facts
        .insert("identity.app.version".into(), identity.app.version.clone());
    v.facts
        .insert("identity.app.git".into(), identity.app.git.clone());
    // The node's runtime settings, receipt domain and prices, and GPU mode,
    // as the enclave attested them (a policy on them is the verifier's).
    for section in ["runtime", "receipts", "gpu"] {
        let Some(fields) = bundle.identity.get(section).and_then(|s| s.as_object()) else {
            continue;
        };
        for (key, value) in fields {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            v.facts.insert(format!("identity.{section}.{key}"), text);
        }
    }
    v.facts.insert("nonce".into(), bundle.nonce.clone());
    let digest: Option<[u8; 32]> = hex::decode(&identity.model.weights_sha256)
        .ok()
        .and_then(|b| b.try_into().ok());
    let model_ok = match (&policy.models.weights_sha256, digest) {
        (None, _) => true,
        (Some(list), Some(d)) => allowed(Some(list), &d),
        (Some(_), None) => false,
    };
    if !model_ok {
        v.reject(
            ReasonCode::ModelNotAllowed,
            format!(
                "model {} with weights {} is not in models.weights_sha256",
                identity.model.id, identity.model.weights_sha256
            ),
        );
    }
    for gpu_evidence in &bundle.gpu {
        v.gpus.push(gpu::appraise(
            &gpu_evidence.report.0,
            gpu_evidence.cert_chain.as_bytes(),
            Some(&nonce),
            now,
        ));
    }
    if bundle.gpu.is_empty() {
        if policy.gpu.required {
            v.reject(
                ReasonCode::GpuEvidenceMissing,
                "gpu.required is set and the bundle has no GPU evidence",
            );
        }
    } else {
        v.not_checked
            .extend(gpu::GPU_NOT_CHECKED.iter().map(|s| (*s).to_owned()));
    }
    Ok(())
}

//! What TDX collateral a quote needs: the FMSPC and PCK CA type from the PCK
//! leaf certificate inside the quote.

use std::fmt;

use cloister_attestation::tdx::{CERT_TYPE_PCK_CHAIN, Quote};
use der::asn1::{Any, ObjectIdentifier};
use der::{Decode as _, Tag, Tagged as _};
use x509_cert::Certificate;

use super::CollateralError;

/// Intel SGX extensions in a PCK certificate.
const SGX_EXTENSIONS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1");
/// FMSPC inside the SGX extensions: 6 bytes.
const SGX_FMSPC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.4");
/// X.520 common name.
const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// Which Intel CA issued the PCK certificate; selects the PCK CRL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PckCa {
    /// "Intel SGX PCK Platform CA" (multi-package platforms, most servers).
    Platform,
    /// "Intel SGX PCK Processor CA".
    Processor,
}

impl PckCa {
    /// The `ca` parameter value of the PCS API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Platform => "platform",
            Self::Processor => "processor",
        }
    }

    /// From the issuer common name.
    pub fn from_issuer_cn(cn: &str) -> Option<Self> {
        match cn.trim() {
            "Intel SGX PCK Platform CA" => Some(Self::Platform),
            "Intel SGX PCK Processor CA" => Some(Self::Processor),
            _ => None,
        }
    }
}

impl fmt::Display for PckCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What identifies the TDX collateral for a quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TdxCollateralKey {
    /// Family-Model-Stepping-Platform-CustomSKU of the platform.
    pub fmspc: [u8; 6],
    /// The PCK certificate's issuing CA.
    pub ca: PckCa,
}

impl TdxCollateralKey {
    /// Reads the key from a quote's PCK leaf certificate.
    pub fn from_quote(raw: &[u8]) -> Result<Self, CollateralError> {
        let quote = Quote::parse(raw)
            .map_err(|e| CollateralError::Evidence(format!("not a DCAP quote: {e}")))?;
        let sig = &quote.signature;
        if sig.certification_data_type != CERT_TYPE_PCK_CHAIN {
            return Err(CollateralError::Evidence(format!(
                "the quote carries certification data type {}, not a PCK chain ({CERT_TYPE_PCK_CHAIN})",
                sig.certification_data_type
            )));
        }
        Self::from_pck_chain_pem(sig.certification_data)
    }

    /// Reads the key from a PEM PCK chain (leaf first).
    pub fn from_pck_chain_pem(pem_chain: &[u8]) -> Result<Self, CollateralError> {
        let evidence = |reason: String| CollateralError::Evidence(reason);
        let blocks = pem::parse_many(pem_chain)
            .map_err(|e| evidence(format!("PCK chain is not PEM: {e}")))?;
        let leaf = blocks
            .iter()
            .find(|b| b.tag() == "CERTIFICATE")
            .ok_or_else(|| evidence("the PCK chain holds no certificate".into()))?;
        let cert = Certificate::from_der(leaf.contents())
            .map_err(|e| evidence(format!("PCK certificate: {e}")))?;
        let fmspc = fmspc_of(&cert).map_err(|e| evidence(format!("PCK certificate: {e}")))?;
        let issuer = common_name(&cert.tbs_certificate.issuer).unwrap_or_default();
        let ca = PckCa::from_issuer_cn(&issuer).ok_or_else(|| {
            evidence(format!(
                "PCK certificate issuer {issuer:?} is neither the Intel SGX PCK Platform CA nor the Processor CA"
            ))
        })?;
        Ok(Self { fmspc, ca })
    }

    /// The FMSPC as Intel writes it (12 upper-case hex digits).
    pub fn fmspc_hex(&self) -> String {
        hex::encode_upper(self.fmspc)
    }
}

impl fmt::Display for TdxCollateralKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FMSPC {} ({} CA)", self.fmspc_hex(), self.ca)
    }
}

/// The FMSPC from the SGX extensions:
/// `SEQUENCE OF SEQUENCE { OID, value }`, FMSPC an OCTET STRING of 6 bytes.
fn fmspc_of(cert: &Certificate) -> Result<[u8; 6], String> {
    let extension = cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|ext| ext.extn_id == SGX_EXTENSIONS)
        .ok_or("no Intel SGX extensions (OID 1.2.840.113741.1.13.1)")?;
    let entries = Vec::<Any>::from_der(extension.extn_value.as_bytes())
        .map_err(|e| format!("SGX extensions: {e}"))?;
    for entry in entries {
        let pair: Vec<Any> = entry
            .decode_as()
            .map_err(|e| format!("SGX extension entry: {e}"))?;
        let (Some(oid), Some(value)) = (pair.first(), pair.get(1)) else {
            return Err("SGX extension entry is not an OID/value pair".into());
        };
        let oid: ObjectIdentifier = oid
            .decode_as()
            .map_err(|e| format!("SGX extension OID: {e}"))?;
        if oid != SGX_FMSPC {
            continue;
        }
        if value.tag() != Tag::OctetString {
            return Err(format!("FMSPC is a {}, not an OCTET STRING", value.tag()));
        }
        return value
            .value()
            .try_into()
            .map_err(|_| format!("FMSPC is {} bytes, not 6", value.value().len()));
    }
    Err("the SGX extensions hold no FMSPC".into())
}

fn common_name(name: &x509_cert::name::Name) -> Option<String> {
    name.0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == COMMON_NAME)
        .map(|atv| String::from_utf8_lossy(atv.value.value()).into_owned())
}

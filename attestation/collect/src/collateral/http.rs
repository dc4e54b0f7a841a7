//! Collateral over HTTPS: Intel PCS (or a PCCS with the same API) and AMD KDS.

use std::time::Duration;

use cloister_attestation::Timestamp;
use cloister_attestation::snp::Product;
use cloister_attestation::tdx::TdxCollateral;

use super::error::TransportKind;
use super::{
    CollateralError, CollateralSource, SnpChainPem, SnpKeyKind, TdxCollateralKey, VcekKey,
    certificate_der, pcs,
};

/// Intel's Provisioning Certification Service.
pub const INTEL_PCS: &str = "https://api.trustedservices.intel.com";
/// Intel SGX Root CA CRL.
pub const INTEL_ROOT_CA_CRL: &str =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";
/// AMD Key Distribution Service.
pub const AMD_KDS: &str = "https://kdsintf.amd.com";

/// Largest response body accepted.
const BODY_LIMIT: u64 = 16 << 20;

/// Where and how to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// PCS or PCCS base URL (default [`INTEL_PCS`]).
    pub pcs_base_url: String,
    /// Intel SGX Root CA CRL URL (default [`INTEL_ROOT_CA_CRL`]).
    pub root_ca_crl_url: String,
    /// AMD KDS base URL (default [`AMD_KDS`]).
    pub kds_base_url: String,
    /// Limit for each request, connection to last body byte.
    pub timeout: Duration,
    /// Honour `HTTPS_PROXY` / `NO_PROXY` from the environment.
    pub proxy_from_env: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            pcs_base_url: INTEL_PCS.into(),
            root_ca_crl_url: INTEL_ROOT_CA_CRL.into(),
            kds_base_url: AMD_KDS.into(),
            timeout: Duration::from_secs(30),
            proxy_from_env: true,
        }
    }
}

/// Fetches collateral from Intel PCS/PCCS and AMD KDS.
#[derive(Debug, Clone)]
pub struct HttpCollateral {
    agent: ureq::Agent,
    config: HttpConfig,
}

/// A 200 response.
struct Response {
    url: String,
    body: Vec<u8>,
    headers: ureq::http::HeaderMap,
}

impl Response {
    fn header(&self, names: &[&str]) -> Result<&str, CollateralError> {
        names
            .iter()
            .find_map(|name| self.headers.get(*name))
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.malformed("issuer chain header", format!("no {names:?} header")))
    }

    fn malformed(&self, what: &'static str, reason: String) -> CollateralError {
        CollateralError::MalformedResponse {
            url: self.url.clone(),
            what,
            reason,
        }
    }
}

impl HttpCollateral {
    /// A client for `config`.
    pub fn new(config: HttpConfig) -> Self {
        let mut builder = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .user_agent(concat!("cloister/", env!("CARGO_PKG_VERSION")));
        if !config.proxy_from_env {
            builder = builder.proxy(None);
        }
        Self {
            agent: builder.build().into(),
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    fn get(&self, url: String) -> Result<Response, CollateralError> {
        tracing::debug!(%url, "fetching collateral");
        let mut response = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| transport_error(&url, e))?;
        let status = response.status().as_u16();
        if status != 200 {
            tracing::warn!(%url, status, "collateral request failed");
            return Err(CollateralError::Status { url, status });
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_vec()
            .map_err(|e| transport_error(&url, e))?;
        tracing::debug!(%url, body_len = body.len(), "fetched collateral");
        Ok(Response {
            url,
            body,
            headers: response.headers().clone(),
        })
    }

    fn pcs(&self, path: &str) -> String {
        format!("{}{path}", self.config.pcs_base_url.trim_end_matches('/'))
    }

    fn kds(&self, path: &str) -> String {
        format!("{}{path}", self.config.kds_base_url.trim_end_matches('/'))
    }

    fn signed(
        &self,
        url: String,
        field: &str,
        headers: &[&str],
    ) -> Result<(pcs::Signed, String), CollateralError> {
        let response = self.get(url)?;
        let signed = pcs::signed_body(&response.body, field)
            .map_err(|reason| response.malformed("signed body", reason))?;
        let chain = pcs::issuer_chain(response.header(headers)?)
            .map_err(|reason| response.malformed("issuer chain header", reason))?;
        Ok((signed, chain))
    }

    fn crl(&self, url: String) -> Result<(Vec<u8>, Response), CollateralError> {
        let response = self.get(url)?;
        let der =
            pcs::crl_der(&response.body).map_err(|reason| response.malformed("CRL", reason))?;
        Ok((der, response))
    }
}

impl CollateralSource for HttpCollateral {
    fn tdx_collateral(
        &self,
        key: &TdxCollateralKey,
        _now: Timestamp,
    ) -> Result<TdxCollateral, CollateralError> {
        let tcb_url = self.pcs(&format!(
            "/tdx/certification/v4/tcb?fmspc={}",
            key.fmspc_hex()
        ));
        let (tcb, tcb_chain) = self.signed(
            tcb_url.clone(),
            "tcbInfo",
            &["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"],
        )?;
        let (qe, qe_chain) = self.signed(
            self.pcs("/tdx/certification/v4/qe/identity"),
            "enclaveIdentity",
            &["SGX-Enclave-Identity-Issuer-Chain"],
        )?;
        let (pck_crl, response) = self.crl(self.pcs(&format!(
            "/sgx/certification/v4/pckcrl?ca={}&encoding=der",
            key.ca.as_str()
        )))?;
        let pck_crl_chain = pcs::issuer_chain(response.header(&["SGX-PCK-CRL-Issuer-Chain"])?)
            .map_err(|reason| response.malformed("issuer chain header", reason))?;
        let (root_ca_crl, _) = self.crl(self.config.root_ca_crl_url.clone())?;

        let collateral = TdxCollateral::from_parts(
            tcb.body,
            tcb.signature,
            tcb_chain,
            qe.body,
            qe.signature,
            qe_chain,
            pck_crl,
            pck_crl_chain,
            root_ca_crl,
        )?;
        if !collateral.fmspc().eq_ignore_ascii_case(&key.fmspc_hex()) {
            return Err(CollateralError::MalformedResponse {
                url: tcb_url,
                what: "TCB info",
                reason: format!(
                    "it is for FMSPC {}, not {}",
                    collateral.fmspc(),
                    key.fmspc_hex()
                ),
            });
        }
        Ok(collateral)
    }

    fn snp_vcek(&self, key: &VcekKey) -> Result<Vec<u8>, CollateralError> {
        let response = self.get(self.kds(&key.kds_path()))?;
        certificate_der(&response.body).map_err(|reason| response.malformed("VCEK", reason))
    }

    fn snp_chain(
        &self,
        product: Product,
        kind: SnpKeyKind,
    ) -> Result<SnpChainPem, CollateralError> {
        let response = self.get(self.kds(&format!(
            "/{}/v1/{}/cert_chain",
            kind.as_str(),
            product.name()
        )))?;
        SnpChainPem::from_kds_pem(&response.body)
            .map_err(|reason| response.malformed("certificate chain", reason))
    }

    fn snp_crl(
        &self,
        product: Product,
        kind: SnpKeyKind,
        _now: Timestamp,
    ) -> Result<Vec<u8>, CollateralError> {
        let response =
            self.get(self.kds(&format!("/{}/v1/{}/crl", kind.as_str(), product.name())))?;
        super::crl_der(&response.body).map_err(|reason| response.malformed("CRL", reason))
    }
}

/// Maps a ureq error to a typed one.
fn transport_error(url: &str, e: ureq::Error) -> CollateralError {
    use ureq::Error as E;
    let kind = match &e {
        E::StatusCode(status) => {
            return CollateralError::Status {
                url: url.to_owned(),
                status: *status,
            };
        }
        E::BodyExceedsLimit(limit) => {
            return CollateralError::MalformedResponse {
                url: url.to_owned(),
                what: "body",
                reason: format!("larger than {limit} bytes"),
            };
        }
        E::Timeout(_) => TransportKind::Timeout,
        E::HostNotFound => TransportKind::Dns,
        E::ConnectionFailed | E::Io(_) => TransportKind::Connect,
        E::Tls(_) | E::Pem(_) | E::Rustls(_) | E::TlsRequired => TransportKind::Tls,
        _ => TransportKind::Other,
    };
    tracing::warn!(%url, %kind, error = %e, "collateral request failed");
    CollateralError::Transport {
        url: url.to_owned(),
        kind,
        detail: e.to_string(),
    }
}

//! SEV-SNP verification: ARK → ASK/ASVK → VCEK/VLEK (RSA-PSS with `ring`),
//! the report signature over the bytes received, and the reported TCB and
//! chip id against the key certificate's extensions.

use std::sync::OnceLock;

use der::Decode;

use super::crl::{AmdCrl, CrlError};
use super::report::{Product, Report, ReportError, SigningKey, Tcb};
use crate::roots;
use crate::time::Timestamp;
use crate::verdict::ReasonCode;
use crate::x509::{Cert, CertError};

/// Which certificate of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainCert {
    /// AMD Root Key.
    Ark,
    /// AMD SEV Key (VCEK issuer) or AMD SEV VLEK Key (VLEK issuer).
    Ask,
    /// The VCEK or VLEK that signs reports.
    Vek,
}

impl std::fmt::Display for ChainCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ark => "ARK",
            Self::Ask => "ASK/ASVK",
            Self::Vek => "VCEK/VLEK",
        })
    }
}

/// Why an SNP report failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnpError {
    /// Not a parseable report.
    #[error(transparent)]
    Malformed(#[from] ReportError),
    /// A certificate that cannot be parsed or used.
    #[error("{which}: {error}")]
    Certificate {
        /// Which certificate.
        which: ChainCert,
        /// What is wrong with it.
        error: CertError,
    },
    /// The report is not signed with ECDSA P-384.
    #[error("signature algorithm {0} is not supported (1, ECDSA P-384 with SHA-384, is)")]
    UnsupportedSignatureAlgorithm(u32),
    /// The report says it is unsigned, or names a reserved key.
    #[error("the report is signed by {0}, not by a VCEK or VLEK")]
    NoSigningKey(SigningKey),
    /// The processor generation cannot be determined or is not supported.
    #[error("cannot tell the processor generation: {0}")]
    UnknownProduct(String),
    /// Report and certificates are for different generations.
    #[error("the report is from {report} but the {which} is for {cert}")]
    ProductMismatch {
        /// Product from the report's CPUID.
        report: Product,
        /// Which certificate.
        which: ChainCert,
        /// Product named by the certificate.
        cert: String,
    },
    /// The ARK is not AMD's pinned root for the product.
    #[error("the ARK given is not AMD's root key for {0}")]
    UntrustedArk(Product),
    /// A link of the chain does not verify.
    #[error("{signee} is not signed by the {signer}: {detail}")]
    ChainInvalid {
        /// Signing certificate.
        signer: ChainCert,
        /// Signed certificate.
        signee: ChainCert,
        /// Verifier detail.
        detail: String,
    },
    /// The key certificate is a VCEK where the report says VLEK, or vice versa.
    #[error("the report is signed by a {report} but the certificate is {cert:?}")]
    WrongKeyKind {
        /// Key named by the report.
        report: SigningKey,
        /// Subject CN of the certificate.
        cert: String,
    },
    /// A certificate outside its validity period.
    #[error("{which} {error}")]
    NotValidAt {
        /// Which certificate.
        which: ChainCert,
        /// Details.
        error: CertError,
    },
    /// The report signature does not verify with the VCEK/VLEK.
    #[error("the report signature does not verify with the {0}")]
    SignatureInvalid(SigningKey),
    /// The reported TCB differs from the TCB the key certificate is for.
    #[error("reported TCB {component} is {reported} but the {key} certifies {certified}")]
    TcbMismatch {
        /// Component name.
        component: &'static str,
        /// Value in the report.
        reported: u8,
        /// Value in the certificate.
        certified: u8,
        /// VCEK or VLEK.
        key: SigningKey,
    },
    /// A required certificate extension is missing or malformed.
    #[error("the {key} certificate lacks a valid {extension} extension")]
    MissingExtension {
        /// Extension name.
        extension: &'static str,
        /// VCEK or VLEK.
        key: SigningKey,
    },
    /// The AMD CRL given could not be used, or revokes the chain.
    #[error(transparent)]
    Crl(#[from] CrlError),
    /// The chip id differs from the VCEK's hwID.
    #[error("chip id {report} is not the VCEK's hwID {cert}")]
    ChipIdMismatch {
        /// Chip id from the report (hex).
        report: String,
        /// hwID from the certificate (hex).
        cert: String,
    },
}

impl SnpError {
    /// The verdict reason code for this error.
    pub fn code(&self) -> ReasonCode {
        match self {
            Self::Malformed(ReportError::UnsupportedVersion(_)) => ReasonCode::UnsupportedVersion,
            Self::Malformed(
                ReportError::TrailingBytes(_) | ReportError::NonZeroAfterSignature { .. },
            ) => ReasonCode::TrailingBytes,
            Self::Malformed(_)
            | Self::UnsupportedSignatureAlgorithm(_)
            | Self::NoSigningKey(_)
            | Self::UnknownProduct(_) => ReasonCode::MalformedEvidence,
            Self::Certificate { .. } | Self::ChainInvalid { .. } => {
                ReasonCode::CertificateChainInvalid
            }
            Self::ProductMismatch { .. } | Self::WrongKeyKind { .. } => {
                ReasonCode::CertificateMismatch
            }
            Self::MissingExtension { .. } => ReasonCode::CertificateMismatch,
            Self::UntrustedArk(_) => ReasonCode::UntrustedRoot,
            Self::NotValidAt { .. } => ReasonCode::CertificateExpired,
            Self::SignatureInvalid(_) => ReasonCode::EvidenceSignatureInvalid,
            Self::TcbMismatch { .. } => ReasonCode::TcbMismatch,
            Self::ChipIdMismatch { .. } => ReasonCode::ChipIdMismatch,
            Self::Crl(e) => match e {
                CrlError::Malformed(_) => ReasonCode::CollateralMalformed,
                CrlError::WrongIssuer { .. } | CrlError::UnexpectedAlgorithm { .. } => {
                    ReasonCode::CollateralMismatch
                }
                CrlError::SignatureInvalid => ReasonCode::CollateralSignatureInvalid,
                CrlError::NotYetValid { .. } => ReasonCode::CollateralNotYetValid,
                CrlError::Expired { .. } => ReasonCode::CollateralExpired,
                CrlError::Revoked { .. } => ReasonCode::CertificateRevoked,
            },
        }
    }
}

/// The certificates that vouch for a report: ARK, ASK (or ASVK) and the
/// VCEK (or VLEK), each PEM or DER; and, when at hand, AMD's CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpCertChain {
    ark: Option<Cert>,
    ask: Cert,
    vek: Cert,
    crl: Option<AmdCrl>,
}

impl SnpCertChain {
    /// Parses the chain. `ark` may be `None`: AMD's pinned root for the
    /// report's product is then used.
    pub fn parse(ark: Option<&[u8]>, ask: &[u8], vek: &[u8]) -> Result<Self, SnpError> {
        let cert = |which, bytes| {
            Cert::from_pem_or_der(bytes).map_err(|error| SnpError::Certificate { which, error })
        };
        Ok(Self {
            ark: ark.map(|a| cert(ChainCert::Ark, a)).transpose()?,
            ask: cert(ChainCert::Ask, ask)?,
            vek: cert(ChainCert::Vek, vek)?,
            crl: None,
        })
    }

    /// Adds AMD's CRL for the chain's ARK: verification then refuses a
    /// revoked ASK/ASVK (and a CRL that is not current or not the ARK's).
    #[must_use]
    pub fn with_crl(mut self, crl: AmdCrl) -> Self {
        self.crl = Some(crl);
        self
    }

    /// Whether a CRL is part of the chain.
    pub fn has_crl(&self) -> bool {
        self.crl.is_some()
    }
}

/// An SNP report whose signature chain verified to AMD's root at a given
/// time, with a reported TCB the key certificate vouches for. Only this crate
/// can construct one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSnpReport {
    version: u32,
    product: Product,
    signing_key: SigningKey,
    reported_tcb: Tcb,
    policy: u64,
    platform_info: u64,
    vmpl: u32,
    measurement: [u8; 48],
    host_data: [u8; 32],
    report_data: [u8; 64],
    chip_id: [u8; 64],
    csp_id: Option<String>,
    verified_at: Timestamp,
}

impl VerifiedSnpReport {
    /// Report version.
    pub fn version(&self) -> u32 {
        self.version
    }
    /// Processor generation.
    pub fn product(&self) -> Product {
        self.product
    }
    /// VCEK or VLEK.
    pub fn signing_key(&self) -> SigningKey {
        self.signing_key
    }
    /// Reported TCB, certified by the key certificate.
    pub fn reported_tcb(&self) -> Tcb {
        self.reported_tcb
    }
    /// Launch measurement.
    pub fn measurement(&self) -> &[u8; 48] {
        &self.measurement
    }
    /// Host data.
    pub fn host_data(&self) -> &[u8; 32] {
        &self.host_data
    }
    /// Report data.
    pub fn report_data(&self) -> &[u8; 64] {
        &self.report_data
    }
    /// VMPL the report was requested at.
    pub fn vmpl(&self) -> u32 {
        self.vmpl
    }
    /// Raw guest policy.
    pub fn guest_policy(&self) -> u64 {
        self.policy
    }
    /// Raw platform info.
    pub fn platform_info(&self) -> u64 {
        self.platform_info
    }
    /// Chip id.
    pub fn chip_id(&self) -> &[u8; 64] {
        &self.chip_id
    }
    /// Cloud provider named by a VLEK.
    pub fn csp_id(&self) -> Option<&str> {
        self.csp_id.as_deref()
    }
    /// When it was verified.
    pub fn verified_at(&self) -> Timestamp {
        self.verified_at
    }
}

const AMD_OID_BASE: &str = "1.3.6.1.4.1.3704.1";

fn amd_oid(suffix: &str) -> Option<der::asn1::ObjectIdentifier> {
    der::asn1::ObjectIdentifier::new(&format!("{AMD_OID_BASE}.{suffix}")).ok()
}

/// The product a report and its chain are for: the CPUID in v3+ reports,
/// otherwise the key certificate's issuer name.
pub(crate) fn product_of(report: &Report<'_>, chain: &SnpCertChain) -> Result<Product, SnpError> {
    let from_cert = chain
        .ask
        .subject_cn()
        .as_deref()
        .and_then(Product::from_name);
    match (report.cpuid, report.product_from_cpuid(), from_cert) {
        (_, Some(p), Some(c)) if p != c => Err(SnpError::ProductMismatch {
            report: p,
            which: ChainCert::Ask,
            cert: chain.ask.subject(),
        }),
        (_, Some(p), _) => Ok(p),
        (Some((family, model, _)), None, _) => Err(SnpError::UnknownProduct(format!(
            "CPUID family {family:#x} model {model:#x} is not Milan, Genoa or Turin"
        ))),
        (None, None, Some(c)) => Ok(c),
        (None, None, None) => Err(SnpError::UnknownProduct(format!(
            "a v{} report has no CPUID and the ASK {:?} names no product",
            report.version,
            chain.ask.subject()
        ))),
    }
}

/// AMD's pinned root for a product, parsed once.
fn pinned_ark(product: Product) -> Result<&'static Cert, SnpError> {
    static MILAN: OnceLock<Result<Cert, CertError>> = OnceLock::new();
    static GENOA: OnceLock<Result<Cert, CertError>> = OnceLock::new();
    static TURIN: OnceLock<Result<Cert, CertError>> = OnceLock::new();
    let (cell, pem) = match product {
        Product::Milan => (&MILAN, roots::AMD_ARK_MILAN_PEM),
        Product::Genoa => (&GENOA, roots::AMD_ARK_GENOA_PEM),
        Product::Turin => (&TURIN, roots::AMD_ARK_TURIN_PEM),
    };
    cell.get_or_init(|| Cert::from_pem_or_der(pem))
        .as_ref()
        .map_err(|error| SnpError::Certificate {
            which: ChainCert::Ark,
            error: error.clone(),
        })
}

/// Verifies a report against its certificate chain at time `now`.
pub fn verify_report(
    raw: &[u8],
    chain: &SnpCertChain,
    now: Timestamp,
) -> Result<VerifiedSnpReport, SnpError> {
    let report = Report::parse(raw)?;
    verify_parsed(&report, chain, now)
}

/// As [`verify_report`], for a report already parsed.
pub fn verify_parsed(
    report: &Report<'_>,
    chain: &SnpCertChain,
    now: Timestamp,
) -> Result<VerifiedSnpReport, SnpError> {
    if report.signature_algo != 1 {
        return Err(SnpError::UnsupportedSignatureAlgorithm(
            report.signature_algo,
        ));
    }
    let key = report.signing_key();
    if !matches!(key, SigningKey::Vcek | SigningKey::Vlek) {
        return Err(SnpError::NoSigningKey(key));
    }
    let product = product_of(report, chain)?;
    let pinned = pinned_ark(product)?;
    if let Some(ark) = &chain.ark
        && ark.der() != pinned.der()
    {
        return Err(SnpError::UntrustedArk(product));
    }
    verify_chain(pinned, &chain.ask, &chain.vek, key, now)?;
    if let Some(crl) = &chain.crl {
        crl.check(pinned, &[&chain.ask, &chain.vek], now)?;
    }

    let tcb = Tcb::from_raw(report.reported_tcb, product);
    check_tcb(&chain.vek, &tcb, key)?;
    if key == SigningKey::Vcek {
        check_chip_id(&chain.vek, &report.chip_id, key)?;
    }
    verify_signature(report, &chain.vek, key)?;

    let csp_id = amd_oid("5")
        .and_then(|oid| chain.vek.extension(&oid).map(<[u8]>::to_vec))
        .and_then(|bytes| {
            der::asn1::Ia5StringRef::from_der(&bytes)
                .ok()
                .map(|s| s.to_string())
        });
    Ok(VerifiedSnpReport {
        version: report.version,
        product,
        signing_key: key,
        reported_tcb: tcb,
        policy: report.policy.0,
        platform_info: report.platform_info.0,
        vmpl: report.vmpl,
        measurement: report.measurement,
        host_data: report.host_data,
        report_data: report.report_data,
        chip_id: report.chip_id,
        csp_id,
        verified_at: now,
    })
}

fn verify_chain(
    ark: &Cert,
    ask: &Cert,
    vek: &Cert,
    key: SigningKey,
    now: Timestamp,
) -> Result<(), SnpError> {
    let expected_cn = match key {
        SigningKey::Vlek => "SEV-VLEK",
        _ => "SEV-VCEK",
    };
    let vek_cn = vek.subject_cn().unwrap_or_default();
    if vek_cn != expected_cn {
        return Err(SnpError::WrongKeyKind {
            report: key,
            cert: vek_cn,
        });
    }
    let ask_cn = ask.subject_cn().unwrap_or_default();
    if (key == SigningKey::Vlek) != ask_cn.starts_with("SEV-VLEK-") {
        return Err(SnpError::WrongKeyKind {
            report: key,
            cert: ask_cn,
        });
    }
    for (which, cert) in [
        (ChainCert::Ark, ark),
        (ChainCert::Ask, ask),
        (ChainCert::Vek, vek),
    ] {
        cert.require_canonical()
            .map_err(|error| SnpError::Certificate { which, error })?;
        cert.check_valid_at(now)
            .map_err(|error| SnpError::NotValidAt { which, error })?;
        // The ARK issues the ASK, which issues the VCEK/VLEK leaf.
        let usage = match which {
            ChainCert::Ark => cert.check_may_issue(1),
            ChainCert::Ask => cert.check_may_issue(0),
            ChainCert::Vek => cert.check_signing_leaf(),
        };
        usage.map_err(|error| SnpError::Certificate { which, error })?;
    }
    // The ARK is pinned: trusted as such, its self-signature adds nothing.
    // RSA-PSS with `ring`, over the TBS bytes as received.
    let links = [
        (ChainCert::Ark, ark, ChainCert::Ask, ask),
        (ChainCert::Ask, ask, ChainCert::Vek, vek),
    ];
    for (signer, signer_cert, signee, signee_cert) in links {
        signee_cert
            .verify_rsa_pss_sha384_signed_by(signer_cert)
            .map_err(|e| SnpError::ChainInvalid {
                signer,
                signee,
                detail: e.to_string(),
            })?;
    }
    Ok(())
}

fn spl(vek: &Cert, suffix: &str, name: &'static str, key: SigningKey) -> Result<u8, SnpError> {
    let missing = || SnpError::MissingExtension {
        extension: name,
        key,
    };
    let oid = amd_oid(suffix).ok_or_else(missing)?;
    let value = vek.extension(&oid).ok_or_else(missing)?;
    u8::from_der(value).map_err(|_| missing())
}

fn check_tcb(vek: &Cert, tcb: &Tcb, key: SigningKey) -> Result<(), SnpError> {
    let mut components = vec![
        ("bootloader", "3.1", "blSPL", tcb.bootloader),
        ("tee", "3.2", "teeSPL", tcb.tee),
        ("snp", "3.3", "snpSPL", tcb.snp),
        ("microcode", "3.8", "ucodeSPL", tcb.microcode),
    ];
    if let Some(fmc) = tcb.fmc {
        components.push(("fmc", "3.9", "fmcSPL", fmc));
    }
    for (component, suffix, extension, reported) in components {
        let certified = spl(vek, suffix, extension, key)?;
        if certified != reported {
            return Err(SnpError::TcbMismatch {
                component,
                reported,
                certified,
                key,
            });
        }
    }
    Ok(())
}

/// The VCEK's hwID must equal the chip id. Turin hwIDs are 8 bytes: the
/// first 8 bytes of the chip id, the rest of which is zero.
fn check_chip_id(vek: &Cert, chip_id: &[u8; 64], key: SigningKey) -> Result<(), SnpError> {
    let oid = amd_oid("4").ok_or(SnpError::MissingExtension {
        extension: "hwID",
        key,
    })?;
    let hw_id = vek.extension(&oid).ok_or(SnpError::MissingExtension {
        extension: "hwID",
        key,
    })?;
    let matches = match hw_id.len() {
        64 => hw_id == chip_id,
        8 => chip_id.get(..8) == Some(hw_id) && chip_id.iter().skip(8).all(|&b| b == 0),
        _ => false,
    };
    if matches {
        Ok(())
    } else {
        Err(SnpError::ChipIdMismatch {
            report: hex::encode(chip_id),
            cert: hex::encode(hw_id),
        })
    }
}

/// Checks the ECDSA P-384 signature over bytes `0x000..0x2A0` as received.
/// r and s are 72-byte little-endian fields whose upper 24 bytes are zero.
///
/// Both low-S and high-S signatures are accepted: AMD firmware does not
/// normalise S (five of the seven genuine reports in the test vectors carry
/// a high S), so refusing high S would refuse genuine reports. The cost is
/// that anyone can turn a genuine report into a second genuine encoding
/// (S into n - S); nothing here identifies a report by its raw bytes, and
/// every other unsigned byte is pinned (zero padding, zero upper halves).
fn verify_signature(report: &Report<'_>, vek: &Cert, key: SigningKey) -> Result<(), SnpError> {
    let invalid = || SnpError::SignatureInvalid(key);
    let scalar = |le: &[u8; 72]| -> Result<[u8; 48], SnpError> {
        let (low, high) = le.split_at(48);
        if high.iter().any(|&b| b != 0) {
            return Err(invalid());
        }
        let mut be = [0u8; 48];
        for (dst, src) in be.iter_mut().zip(low.iter().rev()) {
            *dst = *src;
        }
        Ok(be)
    };
    let mut r_s = [0u8; 96];
    let (r, s) = r_s.split_at_mut(48);
    r.copy_from_slice(&scalar(&report.signature_r)?);
    s.copy_from_slice(&scalar(&report.signature_s)?);
    if crate::crypto::p384_fixed_signature_ok(vek.public_key_bytes(), report.signed_bytes(), &r_s) {
        Ok(())
    } else {
        Err(invalid())
    }
}

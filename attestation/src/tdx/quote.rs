//! Intel DCAP quote parser: v3 (SGX), v4 (TDX 1.0) and v5 (TDX 1.0/1.5).
//!
//! Layout (all integers little-endian), from Intel's "TDX DCAP Quoting
//! Library API" and "SGX ECDSA Quote Library API":
//!
//! ```text
//! header   48  version u16, att_key_type u16, tee_type u32, qe_svn u16,
//!              pce_svn u16, qe_vendor_id [16], user_data [20]
//! v5 only   6  body_type u16, body_size u32
//! body         SGX report 384 | TD report 1.0 584 | TD report 1.5 648
//! sig_len   4
//! sig data     v3:    ecdsa_sig 64, att_key 64, qe_report 384, qe_report_sig 64,
//!                     qe_auth (u16 len + bytes), cert_data (u16 type, u32 len, bytes)
//!              v4/v5: ecdsa_sig 64, att_key 64, cert_data type 6 (u16, u32 len) holding
//!                     qe_report 384, qe_report_sig 64, qe_auth (u16 + bytes),
//!                     cert_data (u16 type, u32 len, bytes: type 5 = PCK chain PEM)
//! padding      zero bytes only (real quotes carry some)
//! ```

use std::ops::Range;

use crate::reader::{Reader, Truncated, zero_padding_only};

/// Intel's Quoting Enclave vendor id.
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];

const HEADER_LEN: usize = 48;
const SGX_REPORT_LEN: usize = 384;
const TD10_REPORT_LEN: usize = 584;
const TD15_REPORT_LEN: usize = 648;
const ATT_KEY_TYPE_ECDSA_P256: u16 = 2;
const CERT_TYPE_QE_REPORT: u16 = 6;
/// Certification data type 5: the PCK certificate chain as PEM.
pub const CERT_TYPE_PCK_CHAIN: u16 = 5;

/// Why bytes are not a DCAP quote this crate can verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuoteError {
    /// The input ends inside a field.
    #[error("not a complete DCAP quote: {0}")]
    Truncated(#[from] Truncated),
    /// Quote version other than 3, 4 or 5.
    #[error("DCAP quote version {0} is not supported (3, 4 and 5 are)")]
    UnsupportedVersion(u16),
    /// TEE type other than SGX (0) or TDX (0x81).
    #[error("TEE type {0:#x} is neither SGX (0x0) nor TDX (0x81)")]
    UnsupportedTeeType(u32),
    /// A version that does not carry this TEE type (SGX needs v3, TDX v4/v5).
    #[error("a {tee} quote cannot be version {version}")]
    VersionMismatch {
        /// Header version.
        version: u16,
        /// TEE type in the header.
        tee: TeeType,
    },
    /// Attestation key type other than ECDSA-256 with P-256.
    #[error("attestation key type {0} is not supported (only 2, ECDSA P-256)")]
    UnsupportedKeyType(u16),
    /// QE vendor other than Intel.
    #[error("QE vendor id {0} is not Intel's")]
    UnknownQeVendor(String),
    /// v5 body type that is not 1 (SGX), 2 (TD 1.0) or 3 (TD 1.5), or that
    /// does not fit the TEE type.
    #[error("v5 body type {body_type} with size {size} is not valid for a {tee} quote")]
    UnsupportedBody {
        /// Body type field.
        body_type: u16,
        /// Body size field.
        size: u32,
        /// TEE type in the header.
        tee: TeeType,
    },
    /// Certification data of a type this parser does not handle where a
    /// particular type is required.
    #[error("certification data type {found} where type {expected} is required")]
    UnexpectedCertificationData {
        /// Required type.
        expected: u16,
        /// Type found.
        found: u16,
    },
    /// The declared length of a nested structure does not match its contents.
    #[error("{what} declares {declared} bytes but its contents take {used}")]
    LengthMismatch {
        /// Which structure.
        what: &'static str,
        /// Length field.
        declared: usize,
        /// Bytes the contents occupy.
        used: usize,
    },
    /// Non-zero bytes after the signature data.
    #[error("non-zero byte at offset {offset} after the signature data")]
    TrailingBytes {
        /// Offset of the first non-zero trailing byte.
        offset: usize,
    },
}

/// TEE type in the quote header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeeType {
    /// SGX enclave (0x00000000).
    Sgx,
    /// TDX trust domain (0x00000081).
    Tdx,
}

impl std::fmt::Display for TeeType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sgx => "SGX",
            Self::Tdx => "TDX",
        })
    }
}

/// The 48-byte quote header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Quote format version.
    pub version: u16,
    /// Attestation key type (2 = ECDSA P-256).
    pub attestation_key_type: u16,
    /// TEE type.
    pub tee_type: TeeType,
    /// QE security version (SGX; reserved for TDX).
    pub qe_svn: u16,
    /// PCE security version (SGX; reserved for TDX).
    pub pce_svn: u16,
    /// QE vendor id.
    pub qe_vendor_id: [u8; 16],
    /// Custom user data (QE platform identity).
    pub user_data: [u8; 20],
}

/// TD attributes (64 bits) with the bits a verifier cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdAttributes(pub u64);

/// A mask of bits `lo..=hi` of a 64-bit attribute word.
const fn bits(lo: u32, hi: u32) -> u64 {
    (u64::MAX << lo) & (u64::MAX >> (63 - hi))
}

impl TdAttributes {
    /// The TUD ("TD under debug") group, bits 7:0. Intel's TDX Module ABI
    /// (348551-008US, table "TD Attributes Definition") says a TD with any
    /// bit of this group set is untrusted: bit 0 is DEBUG, bits 6:4 enable
    /// profiling, the rest are reserved.
    pub const TUD_MASK: u64 = bits(0, 7);
    /// Bits that ABI reserves (must be zero): 3:1 and 7 of TUD, 15:8 and
    /// 26:23 of SEC, 61:32 of OTHER.
    pub const RESERVED_MASK: u64 = bits(1, 3) | bits(7, 15) | bits(23, 26) | bits(32, 61);

    /// The TUD group bits that are set (debug and profiling).
    pub const fn tud(self) -> u64 {
        self.0 & Self::TUD_MASK
    }
    /// The reserved bits that are set; any is a refusal.
    pub const fn reserved(self) -> u64 {
        self.0 & Self::RESERVED_MASK
    }
    /// TUD.DEBUG: the TD is debuggable; its memory is not confidential.
    pub const fn debug(self) -> bool {
        self.0 & 1 != 0
    }
    /// SEC.SEPT_VE_DISABLE: EPT violations are not converted to #VE.
    pub const fn sept_ve_disable(self) -> bool {
        self.0 & (1 << 28) != 0
    }
    /// SEC.MIGRATABLE.
    pub const fn migratable(self) -> bool {
        self.0 & (1 << 29) != 0
    }
    /// OTHER.PERFMON: the TD may use performance monitoring.
    pub const fn perfmon(self) -> bool {
        self.0 & (1 << 63) != 0
    }
}

/// A TD report body (TDX 1.0, plus the TDX 1.5 fields when present).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReport {
    /// TEE TCB SVN (TDX module and SEAM loader versions).
    pub tee_tcb_svn: [u8; 16],
    /// Measurement of the TDX module.
    pub mr_seam: [u8; 48],
    /// Signer of the TDX module (zero for Intel's).
    pub mr_signer_seam: [u8; 48],
    /// SEAM attributes.
    pub seam_attributes: [u8; 8],
    /// TD attributes.
    pub td_attributes: TdAttributes,
    /// Extended features available mask.
    pub xfam: [u8; 8],
    /// Measurement of the initial TD contents (firmware).
    pub mr_td: [u8; 48],
    /// Software-defined config id.
    pub mr_config_id: [u8; 48],
    /// Software-defined owner id.
    pub mr_owner: [u8; 48],
    /// Software-defined owner config.
    pub mr_owner_config: [u8; 48],
    /// Runtime measurement registers 0..3.
    pub rtmr: [[u8; 48]; 4],
    /// Data the TD chose to bind (our binding of nonce and identity).
    pub report_data: [u8; 64],
    /// TDX 1.5: TEE TCB SVN of the current module.
    pub tee_tcb_svn2: Option<[u8; 16]>,
    /// TDX 1.5: measurement of the bound service TD.
    pub mr_service_td: Option<[u8; 48]>,
}

/// An SGX enclave report body (only so that SGX quotes can be recognised).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgxReport {
    /// Enclave measurement.
    pub mr_enclave: [u8; 32],
    /// Enclave signer.
    pub mr_signer: [u8; 32],
    /// Enclave attributes.
    pub attributes: [u8; 16],
    /// Enclave report data.
    pub report_data: [u8; 64],
}

/// The quote body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// SGX enclave report.
    Sgx(SgxReport),
    /// TD report.
    Td(Box<TdReport>),
}

/// Signature data of the quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureData<'a> {
    /// ECDSA P-256 signature (r || s) over header and body.
    pub quote_signature: [u8; 64],
    /// Attestation public key (x || y).
    pub attestation_key: [u8; 64],
    /// The QE's SGX report (384 bytes), signed by the PCK key.
    pub qe_report: &'a [u8],
    /// Signature over the QE report.
    pub qe_report_signature: [u8; 64],
    /// QE authentication data.
    pub qe_auth_data: &'a [u8],
    /// Innermost certification data type (5 = PCK chain as PEM).
    pub certification_data_type: u16,
    /// Innermost certification data.
    pub certification_data: &'a [u8],
}

/// Byte ranges of the signed parts of a quote, in the bytes received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedSpans {
    /// Header and body (and the v5 body descriptor): signed by the attestation key.
    pub header_and_body: Range<usize>,
    /// The QE report: signed by the PCK key.
    pub qe_report: Range<usize>,
    /// The attestation key and QE auth data: hashed into the QE report data.
    pub attestation_key: Range<usize>,
    /// QE authentication data.
    pub qe_auth_data: Range<usize>,
    /// The PCK certificate chain.
    pub certification_data: Range<usize>,
}

/// A parsed DCAP quote borrowing the bytes it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote<'a> {
    /// The header.
    pub header: Header,
    /// The report body.
    pub body: Body,
    /// Signature data.
    pub signature: SignatureData<'a>,
    /// Signed byte ranges.
    pub spans: SignedSpans,
    /// Zero bytes after the signature data.
    pub padding: usize,
    raw: &'a [u8],
}

impl<'a> Quote<'a> {
    /// Parses a quote. Rejects unknown versions, TEE types, key types and
    /// vendors, inconsistent lengths and non-zero trailing bytes.
    pub fn parse(raw: &'a [u8]) -> Result<Self, QuoteError> {
        let mut r = Reader::new(raw);
        let header = parse_header(&mut r)?;
        let body_len = match (header.version, header.tee_type) {
            (3, TeeType::Sgx) => SGX_REPORT_LEN,
            (4, TeeType::Tdx) => TD10_REPORT_LEN,
            (5, tee) => {
                let body_type = r.u16_le("v5 body type")?;
                let size = r.u32_le("v5 body size")?;
                match (body_type, size as usize, tee) {
                    (1, SGX_REPORT_LEN, TeeType::Sgx) => SGX_REPORT_LEN,
                    (2, TD10_REPORT_LEN, TeeType::Tdx) => TD10_REPORT_LEN,
                    (3, TD15_REPORT_LEN, TeeType::Tdx) => TD15_REPORT_LEN,
                    _ => {
                        return Err(QuoteError::UnsupportedBody {
                            body_type,
                            size,
                            tee,
                        });
                    }
                }
            }
            (version, tee) => return Err(QuoteError::VersionMismatch { version, tee }),
        };
        let mut body_reader = r.sub(body_len, "report body")?;
        let body = match header.tee_type {
            TeeType::Sgx => Body::Sgx(parse_sgx_report(&mut body_reader)?),
            TeeType::Tdx => Body::Td(Box::new(parse_td_report(&mut body_reader, body_len)?)),
        };
        let header_and_body = 0..r.offset();

        let sig_len = r.u32_le("signature data length")? as usize;
        let mut sig = r.sub(sig_len, "signature data")?;
        let (signature, qe_report, qe_auth_data, certification_data) =
            parse_signature_data(&mut sig, header.version)?;
        if sig.remaining() != 0 {
            return Err(QuoteError::LengthMismatch {
                what: "signature data",
                declared: sig_len,
                used: sig_len - sig.remaining(),
            });
        }
        let padding = zero_padding_only(r.rest()).map_err(|i| QuoteError::TrailingBytes {
            offset: r.offset() + i,
        })?;
        let key_start = header_and_body.end + 4 + 64;
        Ok(Self {
            header,
            body,
            signature,
            spans: SignedSpans {
                header_and_body,
                qe_report,
                attestation_key: key_start..key_start + 64,
                qe_auth_data,
                certification_data,
            },
            padding,
            raw,
        })
    }

    /// The bytes the quote was parsed from.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The TD report, when this is a TDX quote.
    pub fn td_report(&self) -> Option<&TdReport> {
        match &self.body {
            Body::Td(td) => Some(td),
            Body::Sgx(_) => None,
        }
    }

    /// The PCK certificate chain (type 5 certification data) as DER
    /// certificates, leaf first.
    ///
    /// Strict: only `CERTIFICATE` PEM blocks separated by line breaks or
    /// spaces, then optional NUL terminators (real quotes end with `\n\0`);
    /// any other byte is an error, so no byte of the chain goes unchecked.
    pub fn pck_chain(&self) -> Result<Vec<Vec<u8>>, String> {
        if self.signature.certification_data_type != CERT_TYPE_PCK_CHAIN {
            return Err(format!(
                "certification data type {} is not a PCK chain (type {CERT_TYPE_PCK_CHAIN})",
                self.signature.certification_data_type
            ));
        }
        split_pem_chain(self.signature.certification_data)
    }

    /// The report data of either body kind.
    pub fn report_data(&self) -> &[u8; 64] {
        match &self.body {
            Body::Td(td) => &td.report_data,
            Body::Sgx(sgx) => &sgx.report_data,
        }
    }
}

const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const PEM_END: &str = "-----END CERTIFICATE-----";

fn split_pem_chain(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    use base64::Engine as _;
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
    let end = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let text = std::str::from_utf8(data.get(..end).unwrap_or_default())
        .map_err(|_| "PCK chain is not text")?;
    let mut rest = text.trim_start_matches(is_space);
    let mut certs = Vec::new();
    while !rest.is_empty() {
        let body = rest
            .strip_prefix(PEM_BEGIN)
            .ok_or("PCK chain has bytes outside its PEM certificate blocks")?;
        let (encoded, after) = body
            .split_once(PEM_END)
            .ok_or("PCK chain has an unterminated PEM block")?;
        let compact: String = encoded.chars().filter(|&c| !is_space(c)).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|e| format!("PCK chain certificate {} is not base64: {e}", certs.len()))?;
        certs.push(der);
        rest = after.trim_start_matches(is_space);
    }
    if certs.is_empty() {
        return Err("PCK chain is empty".into());
    }
    Ok(certs)
}

fn parse_header(r: &mut Reader<'_>) -> Result<Header, QuoteError> {
    let version = r.u16_le("header version")?;
    if !matches!(version, 3..=5) {
        return Err(QuoteError::UnsupportedVersion(version));
    }
    let attestation_key_type = r.u16_le("attestation key type")?;
    let tee_raw = r.u32_le("TEE type")?;
    let tee_type = match tee_raw {
        0 => TeeType::Sgx,
        0x81 => TeeType::Tdx,
        other => return Err(QuoteError::UnsupportedTeeType(other)),
    };
    if attestation_key_type != ATT_KEY_TYPE_ECDSA_P256 {
        return Err(QuoteError::UnsupportedKeyType(attestation_key_type));
    }
    let qe_svn = r.u16_le("QE SVN")?;
    let pce_svn = r.u16_le("PCE SVN")?;
    let qe_vendor_id = r.array::<16>("QE vendor id")?;
    if qe_vendor_id != INTEL_QE_VENDOR_ID {
        return Err(QuoteError::UnknownQeVendor(hex::encode(qe_vendor_id)));
    }
    let user_data = r.array::<20>("user data")?;
    debug_assert_eq!(r.offset(), HEADER_LEN);
    Ok(Header {
        version,
        attestation_key_type,
        tee_type,
        qe_svn,
        pce_svn,
        qe_vendor_id,
        user_data,
    })
}

fn parse_sgx_report(r: &mut Reader<'_>) -> Result<SgxReport, Truncated> {
    r.take(16 + 4 + 28, "SGX cpu_svn, misc_select, reserved")?;
    let attributes = r.array("SGX attributes")?;
    let mr_enclave = r.array("MRENCLAVE")?;
    r.take(32, "SGX reserved")?;
    let mr_signer = r.array("MRSIGNER")?;
    r.take(96 + 2 + 2 + 60, "SGX reserved, isv_prod_id, isv_svn")?;
    let report_data = r.array("SGX report data")?;
    Ok(SgxReport {
        mr_enclave,
        mr_signer,
        attributes,
        report_data,
    })
}

fn parse_td_report(r: &mut Reader<'_>, len: usize) -> Result<TdReport, Truncated> {
    let tee_tcb_svn = r.array("TEE_TCB_SVN")?;
    let mr_seam = r.array("MRSEAM")?;
    let mr_signer_seam = r.array("MRSIGNERSEAM")?;
    let seam_attributes = r.array("SEAMATTRIBUTES")?;
    let td_attributes = TdAttributes(r.u64_le("TDATTRIBUTES")?);
    let xfam = r.array("XFAM")?;
    let mr_td = r.array("MRTD")?;
    let mr_config_id = r.array("MRCONFIGID")?;
    let mr_owner = r.array("MROWNER")?;
    let mr_owner_config = r.array("MROWNERCONFIG")?;
    let rtmr = [
        r.array("RTMR0")?,
        r.array("RTMR1")?,
        r.array("RTMR2")?,
        r.array("RTMR3")?,
    ];
    let report_data = r.array("REPORTDATA")?;
    let (tee_tcb_svn2, mr_service_td) = if len == TD15_REPORT_LEN {
        (
            Some(r.array("TEE_TCB_SVN2")?),
            Some(r.array("MRSERVICETD")?),
        )
    } else {
        (None, None)
    };
    Ok(TdReport {
        tee_tcb_svn,
        mr_seam,
        mr_signer_seam,
        seam_attributes,
        td_attributes,
        xfam,
        mr_td,
        mr_config_id,
        mr_owner,
        mr_owner_config,
        rtmr,
        report_data,
        tee_tcb_svn2,
        mr_service_td,
    })
}

type SignatureParts<'a> = (SignatureData<'a>, Range<usize>, Range<usize>, Range<usize>);

/// Parses the signature data; returns it with the spans of the QE report,
/// the QE auth data and the innermost certification data.
fn parse_signature_data<'a>(
    r: &mut Reader<'a>,
    version: u16,
) -> Result<SignatureParts<'a>, QuoteError> {
    let quote_signature = r.array("quote signature")?;
    let attestation_key = r.array("attestation key")?;
    // v4/v5 wrap the QE report in certification data of type 6; read it
    // through a bounded window so it cannot run past its declared length.
    let mut nested = if version == 3 {
        None
    } else {
        let outer_type = r.u16_le("certification data type")?;
        if outer_type != CERT_TYPE_QE_REPORT {
            return Err(QuoteError::UnexpectedCertificationData {
                expected: CERT_TYPE_QE_REPORT,
                found: outer_type,
            });
        }
        let outer_len = r.u32_le("certification data length")? as usize;
        Some((outer_len, r.sub(outer_len, "QE report certification data")?))
    };
    let inner = match nested.as_mut() {
        Some((_, window)) => window,
        None => &mut *r,
    };
    let qe_report = inner.take_span(SGX_REPORT_LEN, "QE report")?;
    let qe_report_signature = inner.array("QE report signature")?;
    let auth_len = inner.u16_le("QE auth data length")? as usize;
    let qe_auth_data = inner.take_span(auth_len, "QE auth data")?;
    let certification_data_type = inner.u16_le("PCK certification data type")?;
    let cert_len = inner.u32_le("PCK certification data length")? as usize;
    let certification_data = inner.take_span(cert_len, "PCK certification data")?;
    if let Some((outer_len, window)) = &nested
        && window.remaining() != 0
    {
        return Err(QuoteError::LengthMismatch {
            what: "QE report certification data",
            declared: *outer_len,
            used: outer_len - window.remaining(),
        });
    }
    let signature = SignatureData {
        quote_signature,
        attestation_key,
        qe_report: r.bytes(&qe_report),
        qe_report_signature,
        qe_auth_data: r.bytes(&qe_auth_data),
        certification_data_type,
        certification_data: r.bytes(&certification_data),
    };
    Ok((signature, qe_report, qe_auth_data, certification_data))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nAAEC\nAwQ=\n-----END CERTIFICATE-----";

    #[test]
    fn pem_chain_allows_line_breaks_and_a_nul_terminator() {
        let text = format!("{CERT}\n{CERT}\r\n\0");
        let chain = split_pem_chain(text.as_bytes()).unwrap();
        assert_eq!(chain, vec![vec![0, 1, 2, 3, 4]; 2]);
    }

    #[test]
    fn pem_chain_refuses_anything_else() {
        for bad in [
            format!("x{CERT}"),
            format!("{CERT}\x0b"),
            format!("{CERT}junk"),
            format!("{CERT}\0{CERT}"),
            CERT.replace("AwQ=", "Aw!="),
            CERT.replace("-----END", "----END"),
            String::new(),
        ] {
            assert!(split_pem_chain(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}

//! NVIDIA GPU attestation report: an SPDM `GET_MEASUREMENTS` request followed
//! by the `MEASUREMENTS` response, as the driver returns it.
//!
//! Layout (DMTF DSP0274, SPDM 1.1; little-endian):
//!
//! ```text
//! request   version u8 (0x11), code u8 (0xE0), param1 u8 (bit 0: signature
//!           requested), param2 u8 (operation), nonce [32], slot id u8
//! response  version u8, code u8 (0x60), param1 u8, param2 u8 (slot id),
//!           block count u8, record length u24, record,
//!           nonce [32], opaque length u16, opaque data, signature [96]
//! block     index u8, spec u8, size u16, DMTF value type u8, value size u16, value
//! opaque    NVIDIA TLVs: type u16, length u16, value
//! ```
//!
//! The signature is ECDSA P-384 (raw `r‖s`) over SHA-384 of the request and
//! the response up to the signature. One real report has a zero byte after
//! the signature: zero padding there is tolerated, anything else is not.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::reader::{Reader, Truncated, zero_padding_only};

const GET_MEASUREMENTS: u8 = 0xE0;
const MEASUREMENTS: u8 = 0x60;
/// Length of an ECDSA P-384 signature.
pub const SIGNATURE_LEN: usize = 96;

/// Why bytes are not an NVIDIA SPDM measurement report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpdmError {
    /// The input ends inside a field.
    #[error("not a complete SPDM measurement report: {0}")]
    Truncated(#[from] Truncated),
    /// An SPDM version other than 1.1, 1.2 or 1.3.
    #[error("SPDM version {0:#04x} is not supported (1.1 to 1.3 are)")]
    UnsupportedVersion(u8),
    /// The request and response versions differ.
    #[error("request is SPDM {request:#04x} but response is {response:#04x}")]
    VersionMismatch {
        /// Request version.
        request: u8,
        /// Response version.
        response: u8,
    },
    /// Not a `GET_MEASUREMENTS` request or not a `MEASUREMENTS` response.
    #[error("{what} has code {found:#04x}, expected {expected:#04x}")]
    UnexpectedCode {
        /// Request or response.
        what: &'static str,
        /// Code found.
        found: u8,
        /// Code expected.
        expected: u8,
    },
    /// The request did not ask for a signature, so nothing is signed.
    #[error("the request did not ask for a signed response")]
    Unsigned,
    /// The measurement record does not hold the declared blocks exactly.
    #[error("measurement record: {0}")]
    Record(String),
    /// Opaque data that is not a sequence of TLVs.
    #[error("opaque data: {0}")]
    Opaque(String),
    /// Non-zero bytes after the signature.
    #[error("non-zero byte at offset {offset} after the signature")]
    TrailingBytes {
        /// Offset of the first non-zero trailing byte.
        offset: usize,
    },
}

/// One measurement block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasurementBlock<'a> {
    /// Block index (1-based).
    pub index: u8,
    /// Measurement specification (1 = DMTF).
    pub spec: u8,
    /// DMTF value type.
    pub value_type: u8,
    /// The measurement (a digest for NVIDIA GPUs).
    pub value: &'a [u8],
}

/// A parsed report borrowing the bytes it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuReport<'a> {
    /// SPDM version (0x11 = 1.1).
    pub version: u8,
    /// Requester's nonce: binds the report to the verifier's challenge.
    pub nonce: [u8; 32],
    /// Measurement operation requested (0xFF = all).
    pub operation: u8,
    /// Slot of the certificate chain that signed.
    pub slot_id: u8,
    /// Measurement blocks in order.
    pub blocks: Vec<MeasurementBlock<'a>>,
    /// Responder's nonce.
    pub responder_nonce: [u8; 32],
    /// NVIDIA opaque data fields by type.
    pub opaque: BTreeMap<u16, &'a [u8]>,
    /// Raw `r‖s` signature.
    pub signature: [u8; SIGNATURE_LEN],
    /// Bytes covered by the signature (request and response up to it).
    pub signed: Range<usize>,
    /// Zero bytes after the signature.
    pub padding: usize,
    raw: &'a [u8],
}

/// NVIDIA opaque data types this crate reads.
pub mod opaque_type {
    /// Driver version, NUL-terminated text.
    pub const DRIVER_VERSION: u16 = 3;
    /// VBIOS version, 8 bytes.
    pub const VBIOS_VERSION: u16 = 6;
    /// Chip SKU.
    pub const CHIP_SKU: u16 = 15;
    /// Project (board) number.
    pub const PROJECT: u16 = 17;
}

impl<'a> GpuReport<'a> {
    /// Parses a report.
    pub fn parse(raw: &'a [u8]) -> Result<Self, SpdmError> {
        let mut r = Reader::new(raw);
        let version = r.u8("request version")?;
        if !matches!(version, 0x11..=0x13) {
            return Err(SpdmError::UnsupportedVersion(version));
        }
        expect_code(r.u8("request code")?, GET_MEASUREMENTS, "request")?;
        let param1 = r.u8("request param1")?;
        let operation = r.u8("request param2")?;
        if param1 & 1 == 0 {
            return Err(SpdmError::Unsigned);
        }
        let nonce = r.array("request nonce")?;
        let slot_id = r.u8("request slot id")?;

        let response_version = r.u8("response version")?;
        if response_version != version {
            return Err(SpdmError::VersionMismatch {
                request: version,
                response: response_version,
            });
        }
        expect_code(r.u8("response code")?, MEASUREMENTS, "response")?;
        r.take(2, "response params")?;
        let count = r.u8("number of blocks")?;
        let record_len = r.u24_le("measurement record length")? as usize;
        let mut record = r.sub(record_len, "measurement record")?;
        let blocks = parse_blocks(&mut record, count)?;
        let responder_nonce = r.array("responder nonce")?;
        let opaque_len = usize::from(r.u16_le("opaque data length")?);
        let mut opaque_reader = r.sub(opaque_len, "opaque data")?;
        let opaque = parse_opaque(&mut opaque_reader)?;
        let signed = 0..r.offset();
        let signature = r.array("signature")?;
        let padding = zero_padding_only(r.rest()).map_err(|i| SpdmError::TrailingBytes {
            offset: r.offset() + i,
        })?;
        Ok(Self {
            version,
            nonce,
            operation,
            slot_id,
            blocks,
            responder_nonce,
            opaque,
            signature,
            signed,
            padding,
            raw,
        })
    }

    /// The bytes the signature covers, as received.
    pub fn signed_bytes(&self) -> &'a [u8] {
        self.raw.get(self.signed.clone()).unwrap_or_default()
    }

    /// Driver version from the opaque data.
    pub fn driver_version(&self) -> Option<String> {
        let value = self.opaque.get(&opaque_type::DRIVER_VERSION)?;
        let text = value.split(|&b| b == 0).next().unwrap_or_default();
        std::str::from_utf8(text).ok().map(str::to_owned)
    }

    /// VBIOS version as NVIDIA prints it (`96.00.74.00.1A`).
    pub fn vbios_version(&self) -> Option<String> {
        let v = self.opaque.get(&opaque_type::VBIOS_VERSION)?;
        match v.get(..5)? {
            [b0, b1, b2, b3, b4] => Some(format!("{b3:02X}.{b2:02X}.{b1:02X}.{b0:02X}.{b4:02X}")),
            _ => None,
        }
    }
}

fn expect_code(found: u8, expected: u8, what: &'static str) -> Result<(), SpdmError> {
    if found == expected {
        Ok(())
    } else {
        Err(SpdmError::UnexpectedCode {
            what,
            found,
            expected,
        })
    }
}

fn parse_blocks<'a>(r: &mut Reader<'a>, count: u8) -> Result<Vec<MeasurementBlock<'a>>, SpdmError> {
    let mut blocks = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let index = r.u8("block index")?;
        let spec = r.u8("block specification")?;
        let size = usize::from(r.u16_le("block size")?);
        let mut block = r.sub(size, "block")?;
        let value_type = block.u8("DMTF value type")?;
        let value_size = usize::from(block.u16_le("DMTF value size")?);
        let value = block.take(value_size, "DMTF value")?;
        if block.remaining() != 0 {
            return Err(SpdmError::Record(format!(
                "block {index} declares {size} bytes but its value takes {}",
                size - block.remaining()
            )));
        }
        blocks.push(MeasurementBlock {
            index,
            spec,
            value_type,
            value,
        });
    }
    if r.remaining() != 0 {
        return Err(SpdmError::Record(format!(
            "{} bytes left after {count} blocks",
            r.remaining()
        )));
    }
    Ok(blocks)
}

fn parse_opaque<'a>(r: &mut Reader<'a>) -> Result<BTreeMap<u16, &'a [u8]>, SpdmError> {
    let mut fields = BTreeMap::new();
    while r.remaining() > 0 {
        let kind = r.u16_le("opaque type")?;
        let len = usize::from(r.u16_le("opaque length")?);
        let value = r.take(len, "opaque value")?;
        if fields.insert(kind, value).is_some() {
            return Err(SpdmError::Opaque(format!("type {kind} appears twice")));
        }
    }
    Ok(fields)
}

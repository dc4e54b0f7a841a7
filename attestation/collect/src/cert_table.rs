//! The SEV-SNP host certificate table ("GUID table").
//!
//! The hypervisor hands the guest its VCEK (or VLEK), ASK and ARK in a table
//! defined by the GHCB specification (AMD 56421, "SNP Extended Guest
//! Request"). configfs-tsm exposes it as `auxblob`; `/dev/sev-guest` returns
//! it from `SNP_GET_EXT_REPORT`.
//!
//! ```text
//! entry        24 bytes: guid [16], offset u32 LE, length u32 LE
//! ...          more entries
//! terminator   24 zero bytes
//! data         certificates; each entry's offset counts from the table start
//! ```
//!
//! GUIDs are stored in RFC 4122 byte order (the order the text form is
//! written in), as the Linux kernel, the `sev` crate and go-sev-guest do.
//!
//! The host is untrusted: every offset and length is bounds-checked here and
//! the certificates are only a hint until the verifier chains them to AMD's
//! root.

use std::fmt;

/// Size of one table entry.
pub const ENTRY_LEN: usize = 24;

/// A GUID in RFC 4122 byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// VCEK: `63da758d-e664-4564-adc5-f4b93be8accd`.
    pub const VCEK: Self = Self([
        0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac,
        0xcd,
    ]);
    /// VLEK: `a8074bc2-a25a-483e-aae6-39c045a0b8a1`.
    pub const VLEK: Self = Self([
        0xa8, 0x07, 0x4b, 0xc2, 0xa2, 0x5a, 0x48, 0x3e, 0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8,
        0xa1,
    ]);
    /// ASK: `4ab7b379-bbac-4fe4-a02f-05aef327c782`.
    pub const ASK: Self = Self([
        0x4a, 0xb7, 0xb3, 0x79, 0xbb, 0xac, 0x4f, 0xe4, 0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7,
        0x82,
    ]);
    /// ARK: `c0b406a4-a803-4952-9743-3fb6014cd0ae`.
    pub const ARK: Self = Self([
        0xc0, 0xb4, 0x06, 0xa4, 0xa8, 0x03, 0x49, 0x52, 0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0,
        0xae,
    ]);
    /// CRL: `92f81bc3-5811-4d3d-97ff-d19f88dc67ea`.
    pub const CRL: Self = Self([
        0x92, 0xf8, 0x1b, 0xc3, 0x58, 0x11, 0x4d, 0x3d, 0x97, 0xff, 0xd1, 0x9f, 0x88, 0xdc, 0x67,
        0xea,
    ]);

    /// Parses the text form (`63da758d-e664-4564-adc5-f4b93be8accd`).
    pub fn parse(text: &str) -> Option<Self> {
        let hex_digits: String = text.chars().filter(|c| *c != '-').collect();
        let bytes = hex::decode(hex_digits).ok()?;
        bytes.try_into().ok().map(Self)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

/// What a table entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HostCertKind {
    /// Versioned Chip Endorsement Key certificate.
    Vcek,
    /// Versioned Loaded Endorsement Key certificate.
    Vlek,
    /// AMD SEV Key (or ASVK for VLEKs).
    Ask,
    /// AMD Root Key.
    Ark,
    /// A certificate revocation list.
    Crl,
    /// A GUID this crate does not know.
    Other(Guid),
}

impl HostCertKind {
    /// The kind a GUID names.
    pub fn from_guid(guid: Guid) -> Self {
        match guid {
            Guid::VCEK => Self::Vcek,
            Guid::VLEK => Self::Vlek,
            Guid::ASK => Self::Ask,
            Guid::ARK => Self::Ark,
            Guid::CRL => Self::Crl,
            other => Self::Other(other),
        }
    }

    /// The GUID of this kind.
    pub fn guid(self) -> Guid {
        match self {
            Self::Vcek => Guid::VCEK,
            Self::Vlek => Guid::VLEK,
            Self::Ask => Guid::ASK,
            Self::Ark => Guid::ARK,
            Self::Crl => Guid::CRL,
            Self::Other(guid) => guid,
        }
    }
}

/// One certificate from the host.
#[derive(Clone, PartialEq, Eq)]
pub struct HostCert {
    /// What it is.
    pub kind: HostCertKind,
    /// Its bytes (DER or PEM, as the host stored it).
    pub data: Vec<u8>,
}

impl fmt::Debug for HostCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostCert")
            .field("kind", &self.kind)
            .field("len", &self.data.len())
            .finish()
    }
}

/// The certificates the host supplied, in table order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostCerts(pub Vec<HostCert>);

impl HostCerts {
    /// The first certificate of `kind`.
    pub fn get(&self, kind: HostCertKind) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|c| c.kind == kind)
            .map(|c| c.data.as_slice())
    }

    /// The VCEK, if the host supplied one.
    pub fn vcek(&self) -> Option<&[u8]> {
        self.get(HostCertKind::Vcek)
    }

    /// The VLEK, if the host supplied one.
    pub fn vlek(&self) -> Option<&[u8]> {
        self.get(HostCertKind::Vlek)
    }

    /// The ASK (or ASVK).
    pub fn ask(&self) -> Option<&[u8]> {
        self.get(HostCertKind::Ask)
    }

    /// The ARK.
    pub fn ark(&self) -> Option<&[u8]> {
        self.get(HostCertKind::Ark)
    }

    /// No certificates.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of certificates.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Why a certificate table is malformed. The table comes from the host, so
/// every variant is the host's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertTableError {
    /// The table has no all-zero terminating entry inside the buffer.
    #[error("host certificate table of {len} bytes has no terminating all-zero entry")]
    Unterminated {
        /// Buffer length.
        len: usize,
    },
    /// An entry points outside the buffer.
    #[error(
        "host certificate table entry {guid} claims bytes {offset}..{offset}+{length}, but the table is {len} bytes"
    )]
    OutOfBounds {
        /// The entry's GUID.
        guid: Guid,
        /// Declared offset.
        offset: u32,
        /// Declared length.
        length: u32,
        /// Buffer length.
        len: usize,
    },
    /// An entry points into the table's own entries.
    #[error(
        "host certificate table entry {guid} points at offset {offset}, inside the table itself (which ends at {table_end})"
    )]
    InsideTable {
        /// The entry's GUID.
        guid: Guid,
        /// Declared offset.
        offset: u32,
        /// End of the entries, terminator included.
        table_end: usize,
    },
    /// An entry with no data.
    #[error("host certificate table entry {0} is empty")]
    EmptyEntry(Guid),
    /// The same GUID twice.
    #[error("host certificate table lists {0} more than once")]
    Duplicate(Guid),
}

/// Parses a certificate table. An empty buffer is an empty table.
pub fn parse(table: &[u8]) -> Result<HostCerts, CertTableError> {
    if table.is_empty() {
        return Ok(HostCerts::default());
    }
    let mut entries = Vec::new();
    let mut pos = 0usize;
    let table_end = loop {
        let Some(raw) = table.get(pos..pos + ENTRY_LEN) else {
            return Err(CertTableError::Unterminated { len: table.len() });
        };
        pos += ENTRY_LEN;
        if raw.iter().all(|&b| b == 0) {
            break pos;
        }
        let (guid, rest) = raw.split_at(16);
        let (offset, length) = rest.split_at(4);
        let guid = Guid(guid.try_into().unwrap_or_default());
        let offset = u32::from_le_bytes(offset.try_into().unwrap_or_default());
        let length = u32::from_le_bytes(length.try_into().unwrap_or_default());
        entries.push((guid, offset, length));
    };
    let mut certs: Vec<HostCert> = Vec::with_capacity(entries.len());
    for (guid, offset, length) in entries {
        let out_of_bounds = || CertTableError::OutOfBounds {
            guid,
            offset,
            length,
            len: table.len(),
        };
        let start = usize::try_from(offset).map_err(|_| out_of_bounds())?;
        let len = usize::try_from(length).map_err(|_| out_of_bounds())?;
        if length == 0 {
            return Err(CertTableError::EmptyEntry(guid));
        }
        if start < table_end {
            return Err(CertTableError::InsideTable {
                guid,
                offset,
                table_end,
            });
        }
        let end = start.checked_add(len).ok_or_else(out_of_bounds)?;
        let data = table.get(start..end).ok_or_else(out_of_bounds)?;
        let kind = HostCertKind::from_guid(guid);
        if certs.iter().any(|c| c.kind == kind) {
            return Err(CertTableError::Duplicate(guid));
        }
        certs.push(HostCert {
            kind,
            data: data.to_vec(),
        });
    }
    Ok(HostCerts(certs))
}

/// Builds a certificate table (what a host does). For tests and tools.
pub fn encode(certs: &[HostCert]) -> Vec<u8> {
    let header_len = ENTRY_LEN * (certs.len() + 1);
    let mut table = Vec::with_capacity(header_len);
    let mut data = Vec::new();
    for cert in certs {
        let offset = header_len + data.len();
        table.extend_from_slice(&cert.kind.guid().0);
        table.extend_from_slice(&u32::try_from(offset).unwrap_or(u32::MAX).to_le_bytes());
        table.extend_from_slice(
            &u32::try_from(cert.data.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        data.extend_from_slice(&cert.data);
    }
    table.extend_from_slice(&[0; ENTRY_LEN]);
    table.extend_from_slice(&data);
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<HostCert> {
        vec![
            HostCert {
                kind: HostCertKind::Vcek,
                data: b"vcek-der".to_vec(),
            },
            HostCert {
                kind: HostCertKind::Ask,
                data: b"ask".to_vec(),
            },
            HostCert {
                kind: HostCertKind::Ark,
                data: b"ark!".to_vec(),
            },
        ]
    }

    #[test]
    fn guids_match_their_text_form() {
        for (guid, text) in [
            (Guid::VCEK, "63da758d-e664-4564-adc5-f4b93be8accd"),
            (Guid::ASK, "4ab7b379-bbac-4fe4-a02f-05aef327c782"),
            (Guid::ARK, "c0b406a4-a803-4952-9743-3fb6014cd0ae"),
            (Guid::VLEK, "a8074bc2-a25a-483e-aae6-39c045a0b8a1"),
            (Guid::CRL, "92f81bc3-5811-4d3d-97ff-d19f88dc67ea"),
        ] {
            assert_eq!(guid.to_string(), text);
            assert_eq!(Guid::parse(text), Some(guid));
        }
        assert_eq!(Guid::parse("nope"), None);
    }

    #[test]
    fn round_trips() {
        let table = encode(&sample());
        let certs = parse(&table).unwrap();
        assert_eq!(certs.0, sample());
        assert_eq!(certs.vcek(), Some(&b"vcek-der"[..]));
        assert_eq!(certs.ark(), Some(&b"ark!"[..]));
        assert_eq!(certs.vlek(), None);
        assert!(parse(&[]).unwrap().is_empty());
        // Trailing bytes after the certificates (page padding) are fine.
        let mut padded = table.clone();
        padded.extend_from_slice(&[0; 100]);
        assert_eq!(parse(&padded).unwrap().len(), 3);
    }

    #[test]
    fn every_truncation_is_a_typed_error() {
        let table = encode(&sample());
        for len in 1..table.len() {
            assert!(parse(&table[..len]).is_err(), "truncated to {len}");
        }
    }

    #[test]
    fn hostile_entries_are_rejected() {
        let mut table = encode(&sample());
        // Offset pointing into the entries.
        table[16..20].copy_from_slice(&8u32.to_le_bytes());
        assert!(matches!(
            parse(&table),
            Err(CertTableError::InsideTable { .. })
        ));
        // Length overflowing.
        let mut table = encode(&sample());
        table[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            parse(&table),
            Err(CertTableError::OutOfBounds { .. })
        ));
        // Zero length.
        let mut table = encode(&sample());
        table[20..24].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(parse(&table), Err(CertTableError::EmptyEntry(_))));
        // Duplicate GUID.
        let mut table = encode(&sample());
        table[24..40].copy_from_slice(&Guid::VCEK.0);
        assert!(matches!(parse(&table), Err(CertTableError::Duplicate(_))));
        // All garbage.
        assert!(matches!(
            parse(&[0xff; 100]),
            Err(CertTableError::Unterminated { .. })
        ));
    }
}

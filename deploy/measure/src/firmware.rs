//! The tables OVMF and TDVF images carry for the hypervisor: the GUID-keyed
//! footer table at the end of the image, the SEV-SNP `ASEV` metadata and the
//! TDX `TDVF` metadata it points to.
//!
//! Layouts (facts of the edk2 reset vector and of QEMU, which reads them):
//! the footer table ends 32 bytes before the end of the image; its last entry
//! is `size: u16, guid` with the footer GUID and the whole table's size; each
//! entry before it is `data.., size: u16, guid` read backwards. The metadata
//! entries hold a `u32` offset from the end of the image.

use crate::MeasureError;
use crate::guid::{self, Guid};

const ENTRY_HEADER: usize = 18;
/// The largest firmware section measured (real ones are a few MiB): bounds
/// the work a hostile image can ask for.
pub(crate) const MAX_SECTION_MEMORY: u64 = 1 << 30;
const BYTES_AFTER_TABLE: usize = 32;

/// Little-endian integers read with bounds checks.
pub(crate) fn le_u16(b: &[u8], at: usize, what: &'static str) -> Result<u16, MeasureError> {
    Ok(u16::from_le_bytes(take::<2>(b, at, what)?))
}
pub(crate) fn le_u32(b: &[u8], at: usize, what: &'static str) -> Result<u32, MeasureError> {
    Ok(u32::from_le_bytes(take::<4>(b, at, what)?))
}
pub(crate) fn le_u64(b: &[u8], at: usize, what: &'static str) -> Result<u64, MeasureError> {
    Ok(u64::from_le_bytes(take::<8>(b, at, what)?))
}
fn take<const N: usize>(b: &[u8], at: usize, what: &'static str) -> Result<[u8; N], MeasureError> {
    let end = at.saturating_add(N);
    b.get(at..end)
        .and_then(|s| s.try_into().ok())
        .ok_or(MeasureError::Truncated {
            what,
            offset: at,
            end,
            len: b.len(),
        })
}

/// One entry of the footer table: its GUID and its data.
#[derive(Debug, Clone)]
struct Entry<'a> {
    guid: Guid,
    data: &'a [u8],
}

/// An OVMF or TDVF image with its footer table parsed.
#[derive(Debug, Clone)]
pub struct Firmware<'a> {
    bytes: &'a [u8],
    entries: Vec<Entry<'a>>,
}

impl<'a> Firmware<'a> {
    /// Parses the footer table of an OVMF/TDVF image.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, MeasureError> {
        let footer_at = bytes
            .len()
            .checked_sub(BYTES_AFTER_TABLE + ENTRY_HEADER)
            .ok_or(MeasureError::NoFooterTable)?;
        if take::<16>(bytes, footer_at + 2, "footer GUID")? != guid::parse(guid::FOOTER_TABLE) {
            return Err(MeasureError::NoFooterTable);
        }
        let table_len = usize::from(le_u16(bytes, footer_at, "footer size")?);
        let body_len = table_len
            .checked_sub(ENTRY_HEADER)
            .ok_or(MeasureError::BadTableEntry {
                offset: footer_at,
                why: "the table is shorter than its own footer",
            })?;
        let start = footer_at
            .checked_sub(body_len)
            .ok_or(MeasureError::BadTableEntry {
                offset: footer_at,
                why: "the table is longer than the image",
            })?;
        let mut entries = Vec::new();
        let mut end = footer_at;
        while end - start >= ENTRY_HEADER {
            let header = end - ENTRY_HEADER;
            let size = usize::from(le_u16(bytes, header, "table entry size")?);
            if size < ENTRY_HEADER || size > end - start {
                return Err(MeasureError::BadTableEntry {
                    offset: header,
                    why: "its size is smaller than its header or runs past the table's start",
                });
            }
            let data = bytes
                .get(end - size..header)
                .ok_or(MeasureError::BadTableEntry {
                    offset: header,
                    why: "its data lies outside the image",
                })?;
            entries.push(Entry {
                guid: take::<16>(bytes, header + 2, "table entry GUID")?,
                data,
            });
            end -= size;
        }
        if end != start {
            return Err(MeasureError::BadTableEntry {
                offset: start,
                why: "bytes left over at the table's start",
            });
        }
        Ok(Self { bytes, entries })
    }

    /// The whole image.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The data of the entry with this GUID (text form), if present.
    fn entry(&self, guid_text: &str) -> Option<&'a [u8]> {
        let g = guid::parse(guid_text);
        self.entries.iter().find(|e| e.guid == g).map(|e| e.data)
    }

    fn required_u32(
        &self,
        guid_text: &'static str,
        what: &'static str,
        hint: &'static str,
    ) -> Result<u32, MeasureError> {
        let data = self.entry(guid_text).ok_or(MeasureError::MissingEntry {
            what,
            guid: guid_text,
            hint,
        })?;
        le_u32(data, 0, what)
    }

    /// The image's offset from its end of a metadata block named by a table entry.
    fn metadata_start(
        &self,
        guid_text: &'static str,
        what: &'static str,
        hint: &'static str,
    ) -> Result<usize, MeasureError> {
        let from_end = self.required_u32(guid_text, what, hint)? as usize;
        self.bytes
            .len()
            .checked_sub(from_end)
            .ok_or(MeasureError::BadMetadata {
                what,
                offset: 0,
                why: format!("its offset from the end ({from_end}) is larger than the image"),
            })
    }

    /// SEV-ES/SNP: the application processors' reset address.
    pub fn sev_es_reset_eip(&self) -> Result<u32, MeasureError> {
        self.required_u32(
            guid::SEV_ES_RESET_BLOCK,
            "SEV-ES reset block",
            "this firmware cannot start application processors of an SEV-ES/SNP guest",
        )
    }

    /// SEV: the guest physical address QEMU writes the kernel hashes table to
    /// (`None` when the entry is absent or zero).
    pub fn sev_hash_table_gpa(&self) -> Result<Option<u32>, MeasureError> {
        match self.entry(guid::SEV_HASH_TABLE) {
            None => Ok(None),
            Some(data) => Ok(Some(le_u32(data, 0, "SEV hash table address")?).filter(|a| *a != 0)),
        }
    }

    /// Checks a metadata header (`magic`, total length u32, version u32 = 1,
    /// section count u32) whose sections are `section_len` bytes each, and
    /// returns the section count.
    fn metadata_header(
        &self,
        start: usize,
        what: &'static str,
        magic: &[u8; 4],
        section_len: usize,
    ) -> Result<usize, MeasureError> {
        let b = self.bytes;
        if take::<4>(b, start, what)? != *magic {
            let magic = String::from_utf8_lossy(magic);
            return Err(bad(what, start, format!("it does not start with {magic}")));
        }
        let version = le_u32(b, start + 8, what)?;
        if version != 1 {
            return Err(bad(
                what,
                start,
                format!("version {version}, only 1 is known"),
            ));
        }
        let count = le_u32(b, start + 12, what)? as usize;
        let length = le_u32(b, start + 4, what)? as usize;
        if Some(length)
            != count
                .checked_mul(section_len)
                .and_then(|n| n.checked_add(16))
        {
            return Err(bad(
                what,
                start,
                format!("length {length} does not fit {count} sections"),
            ));
        }
        Ok(count)
    }

    /// SEV-SNP: the sections of the `ASEV` metadata, in order.
    pub fn sev_sections(&self) -> Result<Vec<SevSection>, MeasureError> {
        const WHAT: &str = "SEV metadata (ASEV)";
        let start = self.metadata_start(
            guid::SEV_METADATA,
            WHAT,
            "this firmware was not built for SEV-SNP guests",
        )?;
        let b = self.bytes;
        let count = self.metadata_header(start, WHAT, b"ASEV", 12)?;
        (0..count)
            .map(|i| {
                let at = start + 16 + 12 * i;
                let kind = le_u32(b, at + 8, WHAT)?;
                if u64::from(le_u32(b, at + 4, WHAT)?) > MAX_SECTION_MEMORY {
                    return Err(bad(WHAT, at, "section larger than 1 GiB".into()));
                }
                Ok(SevSection {
                    gpa: le_u32(b, at, WHAT)?,
                    size: le_u32(b, at + 4, WHAT)?,
                    kind: SevSectionKind::from_u32(kind)
                        .ok_or_else(|| bad(WHAT, at, format!("unknown section type {kind:#x}")))?,
                })
            })
            .collect()
    }

    /// TDX: the sections of the `TDVF` metadata, in order.
    pub fn tdvf_sections(&self) -> Result<Vec<TdvfSection>, MeasureError> {
        const WHAT: &str = "TDX metadata (TDVF)";
        let start = self.metadata_start(
            guid::TDX_METADATA,
            WHAT,
            "this firmware was not built for TDX guests (a TDVF image or OVMF with TDX support)",
        )?;
        let b = self.bytes;
        let count = self.metadata_header(start, WHAT, b"TDVF", 32)?;
        (0..count)
            .map(|i| {
                let at = start + 16 + 32 * i;
                let s = TdvfSection {
                    data_offset: le_u32(b, at, WHAT)?,
                    raw_data_size: le_u32(b, at + 4, WHAT)?,
                    memory_address: le_u64(b, at + 8, WHAT)?,
                    memory_size: le_u64(b, at + 16, WHAT)?,
                    kind: le_u32(b, at + 24, WHAT)?,
                    attributes: le_u32(b, at + 28, WHAT)?,
                };
                s.check(b.len()).map_err(|why| bad(WHAT, at, why))?;
                Ok(s)
            })
            .collect()
    }
}

fn bad(what: &'static str, offset: usize, why: String) -> MeasureError {
    MeasureError::BadMetadata { what, offset, why }
}

/// What QEMU does with an SEV-SNP metadata section before launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SevSectionKind {
    /// Pre-validated zero memory (SEC stacks, page tables).
    SecMemory,
    /// The secrets page the PSP fills.
    Secrets,
    /// The CPUID page the PSP checks.
    Cpuid,
    /// The SVSM calling area (zero).
    SvsmCaa,
    /// The page QEMU writes the kernel/initrd/command-line hashes into.
    KernelHashes,
}

impl SevSectionKind {
    fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::SecMemory,
            2 => Self::Secrets,
            3 => Self::Cpuid,
            4 => Self::SvsmCaa,
            0x10 => Self::KernelHashes,
            _ => return None,
        })
    }
}

/// One section of the SEV-SNP metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SevSection {
    /// Guest physical address.
    pub gpa: u32,
    /// Size in bytes.
    pub size: u32,
    /// What it is.
    pub kind: SevSectionKind,
}

/// One section of the TDVF metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdvfSection {
    /// Offset of the section's bytes in the image.
    pub data_offset: u32,
    /// How many bytes of the image the section holds.
    pub raw_data_size: u32,
    /// Guest physical address.
    pub memory_address: u64,
    /// Size in guest memory.
    pub memory_size: u64,
    /// Section type (0 BFV, 1 CFV, 2 TD HOB, 3 temporary memory, ...).
    pub kind: u32,
    /// Bit 0: the contents are measured (TDH.MR.EXTEND); bit 1: added after launch (PAGE.AUG, unmeasured).
    pub attributes: u32,
}

impl TdvfSection {
    /// Bit 0 of `attributes`.
    pub const MR_EXTEND: u32 = 1;
    /// Bit 1 of `attributes`.
    pub const PAGE_AUG: u32 = 2;

    fn check(&self, image_len: usize) -> Result<(), String> {
        if !self.memory_address.is_multiple_of(4096) || !self.memory_size.is_multiple_of(4096) {
            return Err("memory address or size not 4 KiB aligned".into());
        }
        if self.memory_size > MAX_SECTION_MEMORY
            || self.memory_address.checked_add(self.memory_size).is_none()
        {
            return Err(format!(
                "memory size {:#x} at {:#x} is implausible (firmware sections are at most {MAX_SECTION_MEMORY:#x} bytes)",
                self.memory_size, self.memory_address
            ));
        }
        if u64::from(self.raw_data_size) > self.memory_size {
            return Err("more raw data than memory".into());
        }
        let end = u64::from(self.data_offset) + u64::from(self.raw_data_size);
        if end > image_len as u64 {
            return Err(format!(
                "its data (bytes {}..{end}) runs past the image's end ({image_len}): \
                 is this the code-only half of a split firmware? Measure the unified image",
                self.data_offset
            ));
        }
        if self.attributes & Self::MR_EXTEND != 0
            && u64::from(self.raw_data_size) != self.memory_size
        {
            return Err("a measured section must hold exactly its memory size of data".into());
        }
        Ok(())
    }
}

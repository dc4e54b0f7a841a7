//! Intel TDX: MRTD from the TDVF image, and RTMR2 of a directly booted kernel.
//!
//! MRTD is one SHA-384 over what the TDX module absorbs while the host builds
//! the TD (TDX module ABI, TDH.MEM.PAGE.ADD and TDH.MR.EXTEND): for each page
//! added, a 128-byte block `"MEM.PAGE.ADD"`, zero-padded to 16, the page's GPA
//! (u64 LE), zeros; for each 256-byte chunk extended, a block `"MR.EXTEND"`
//! with the chunk's GPA the same way, then the chunk's 256 bytes. The host
//! adds every page of every TDVF section except those marked PAGE.AUG, and
//! extends those marked MR_EXTEND with the image's bytes.
//!
//! RTMR0 (firmware configuration: TD HOB, ACPI tables QEMU generates, the
//! variable store) and RTMR1 (the kernel image after QEMU patched its setup
//! header for the memory size and initrd) depend on QEMU's version and
//! machine options byte for byte; they are not computed here (see
//! docs/measurements.md). RTMR2 is the kernel command line and the initrd.

use sha2::{Digest as _, Sha384};

use crate::firmware::{Firmware, TdvfSection};
use crate::{Digest48, MeasureError};

const PAGE: u64 = 4096;
const PAGE_BYTES: usize = 4096;
const CHUNK: usize = 256;

/// In which order the host's kernel adds and measures the TDVF pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PageOrder {
    /// Each page is added, then its chunks extended, before the next page
    /// (upstream Linux KVM: `KVM_TDX_INIT_MEM_REGION` with the measure flag).
    #[default]
    PerPage,
    /// All pages of a section are added first, then all of its chunks
    /// extended (the TDX host kernels that preceded upstream KVM support).
    PerSection,
}

fn block(tag: &[u8], gpa: u64) -> [u8; 128] {
    let mut b = [0u8; 128];
    for (dst, src) in b.iter_mut().zip(tag.iter().take(16)) {
        *dst = *src;
    }
    for (dst, src) in b.iter_mut().skip(16).zip(gpa.to_le_bytes()) {
        *dst = src;
    }
    b
}

/// MRTD of a TD built from this TDVF image (the whole image: for a split
/// CODE/VARS firmware, the unified file).
pub fn mrtd(tdvf: &[u8], order: PageOrder) -> Result<Digest48, MeasureError> {
    let fw = Firmware::parse(tdvf)?;
    let image = fw.bytes();
    let sections = fw.tdvf_sections()?;
    let mut h = Sha384::new();
    let add = |h: &mut Sha384, s: &TdvfSection, page: u64| {
        if s.attributes & TdvfSection::PAGE_AUG == 0 {
            h.update(block(b"MEM.PAGE.ADD", s.memory_address + page * PAGE));
        }
    };
    // Section data lies within the image: `tdvf_sections` checked it, and a
    // measured section holds exactly its memory size of data.
    let extend = |h: &mut Sha384, s: &TdvfSection, page: u64| {
        if s.attributes & TdvfSection::MR_EXTEND != 0 {
            let start = u64::from(s.data_offset) + page * PAGE;
            let data = usize::try_from(start)
                .ok()
                .and_then(|start| image.get(start..start + PAGE_BYTES))
                .unwrap_or_default();
            for (i, chunk) in data.chunks(CHUNK).enumerate() {
                h.update(block(
                    b"MR.EXTEND",
                    s.memory_address + page * PAGE + (i * CHUNK) as u64,
                ));
                h.update(chunk);
            }
        }
    };
    for s in &sections {
        let pages = s.memory_size / PAGE;
        match order {
            PageOrder::PerPage => (0..pages).for_each(|p| {
                add(&mut h, s, p);
                extend(&mut h, s, p);
            }),
            PageOrder::PerSection => {
                (0..pages).for_each(|p| add(&mut h, s, p));
                (0..pages).for_each(|p| extend(&mut h, s, p));
            }
        }
    }
    Ok(h.finalize().into())
}

/// The digest OVMF's direct-boot loader extends into RTMR2 for the command
/// line: SHA-384 of its UTF-16LE encoding with a terminating NUL.
pub fn cmdline_event_digest(cmdline: &str) -> Digest48 {
    let mut h = Sha384::new();
    for unit in cmdline.encode_utf16().chain([0]) {
        h.update(unit.to_le_bytes());
    }
    h.finalize().into()
}

/// RTMR2 after a direct boot: the command line's event, then the initrd's
/// SHA-384 (absent without an initrd), each extended as
/// `rtmr = SHA-384(rtmr || digest)` from zero.
pub fn rtmr2(cmdline: &str, initrd_sha384: Option<Digest48>) -> Digest48 {
    let mut rtmr = [0u8; 48];
    for digest in [Some(cmdline_event_digest(cmdline)), initrd_sha384]
        .into_iter()
        .flatten()
    {
        let mut h = Sha384::new();
        h.update(rtmr);
        h.update(digest);
        rtmr = h.finalize().into();
    }
    rtmr
}

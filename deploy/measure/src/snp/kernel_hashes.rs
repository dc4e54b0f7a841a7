//! The table of SHA-256 hashes QEMU writes into the guest (`kernel-hashes=on`)
//! so that OVMF can check the kernel, initrd and command line it was given:
//! a header GUID and length, then three entries (command line, initrd,
//! kernel) of GUID, length and hash, padded to 16 bytes, placed in its page
//! at the offset OVMF's footer table names.

use sha2::{Digest as _, Sha256};

use crate::guid;

/// SHA-256 of the kernel, the initrd and the command line QEMU passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelHashes {
    /// SHA-256 of the kernel image file.
    pub kernel: [u8; 32],
    /// SHA-256 of the initrd file (of no bytes without an initrd).
    pub initrd: [u8; 32],
    /// SHA-256 of the command line with its terminating NUL.
    pub cmdline: [u8; 32],
}

const ENTRY_LEN: u16 = 16 + 2 + 32;
const TABLE_LEN: u16 = 16 + 2 + 3 * ENTRY_LEN;

impl KernelHashes {
    /// From the kernel's and initrd's SHA-256 and the command line
    /// (`-append`; empty without one).
    pub fn new(kernel_sha256: [u8; 32], initrd_sha256: Option<[u8; 32]>, cmdline: &str) -> Self {
        let mut c = Sha256::new();
        c.update(cmdline.as_bytes());
        c.update([0]);
        Self {
            kernel: kernel_sha256,
            initrd: initrd_sha256.unwrap_or_else(|| Sha256::digest([]).into()),
            cmdline: c.finalize().into(),
        }
    }

    /// The table as QEMU writes it, padded to a multiple of 16 bytes.
    pub fn table(&self) -> Vec<u8> {
        let padded = usize::from(TABLE_LEN.next_multiple_of(16));
        let mut t = Vec::with_capacity(padded);
        t.extend_from_slice(&guid::parse(guid::HASH_TABLE_HEADER));
        t.extend_from_slice(&TABLE_LEN.to_le_bytes());
        for (g, hash) in [
            (guid::HASH_CMDLINE, &self.cmdline),
            (guid::HASH_INITRD, &self.initrd),
            (guid::HASH_KERNEL, &self.kernel),
        ] {
            t.extend_from_slice(&guid::parse(g));
            t.extend_from_slice(&ENTRY_LEN.to_le_bytes());
            t.extend_from_slice(hash);
        }
        t.resize(padded, 0);
        t
    }

    /// The page holding the table at `offset` (the table's address within
    /// its page; the caller checked that the table fits).
    pub(super) fn page(&self, offset: usize) -> Vec<u8> {
        let mut page = vec![0u8; offset];
        page.extend_from_slice(&self.table());
        page.resize(4096, 0);
        page
    }
}

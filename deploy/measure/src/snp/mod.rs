//! The AMD SEV-SNP launch digest of a QEMU guest booted from OVMF.
//!
//! The PSP folds every page QEMU hands it at launch into a running SHA-384
//! (SEV-SNP firmware ABI, SNP_LAUNCH_UPDATE and the PAGE_INFO structure):
//! `digest = SHA-384(previous digest || contents hash || length 0x70 ||
//! page type || imi || vmpl3..1 permissions || reserved || gpa)`. QEMU adds,
//! in order: the OVMF image mapped to end at 4 GiB (normal pages), then each
//! section of OVMF's SEV metadata (zero pages, the secrets page, the CPUID
//! page, the kernel hashes page), then one VMSA page per vCPU.

mod cpu;
mod kernel_hashes;
mod vmsa;

pub use cpu::{CPU_TYPES, CpuType, vcpu_signature};
pub use kernel_hashes::KernelHashes;

use sha2::{Digest as _, Sha384};

use crate::firmware::{Firmware, SevSectionKind};
use crate::{Digest48, MeasureError};

const PAGE: usize = 4096;
/// The VMSA's GPA in the launch digest: `u64::MAX` page-aligned, bits above 51 clear.
const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;

/// Everything the launch digest depends on.
#[derive(Debug, Clone)]
pub struct SnpLaunch<'a> {
    /// The OVMF image QEMU maps (`-bios`), whole.
    pub ovmf: &'a [u8],
    /// Number of vCPUs (`-smp`).
    pub vcpus: u32,
    /// CPUID signature of the vCPU model (`-cpu`), see [`CpuType`].
    pub vcpu_signature: u32,
    /// SEV features in every VMSA (QEMU's default is 0x1: SNP active).
    pub guest_features: u64,
    /// Hashes of a directly booted kernel, initrd and command line
    /// (`-kernel`, `-initrd`, `-append` with `kernel-hashes=on`).
    pub kernel: Option<KernelHashes>,
}

/// The running launch digest (the PSP's guest context).
struct LaunchDigest(Digest48);

impl LaunchDigest {
    fn update(&mut self, page_type: u8, gpa: u64, contents: &Digest48) {
        let mut h = Sha384::new();
        h.update(self.0);
        h.update(contents);
        h.update(0x70u16.to_le_bytes());
        h.update([page_type, 0, 0, 0, 0, 0]);
        h.update(gpa.to_le_bytes());
        self.0 = h.finalize().into();
    }

    fn normal_pages(&mut self, gpa: u64, data: &[u8]) {
        for (i, page) in data.chunks(PAGE).enumerate() {
            self.update(0x01, gpa + (i * PAGE) as u64, &Sha384::digest(page).into());
        }
    }

    fn repeated(&mut self, page_type: u8, gpa: u64, size: u64) {
        for offset in (0..size).step_by(PAGE) {
            self.update(page_type, gpa + offset, &[0; 48]);
        }
    }
}

/// The launch digest (the attestation report's `measurement`).
pub fn launch_digest(launch: &SnpLaunch<'_>) -> Result<Digest48, MeasureError> {
    if launch.vcpus == 0 || launch.vcpus > 512 {
        return Err(MeasureError::Shape(format!(
            "{} vCPUs (1 to 512)",
            launch.vcpus
        )));
    }
    let ovmf = Firmware::parse(launch.ovmf)?;
    let image = ovmf.bytes();
    if image.len() % PAGE != 0 || image.len() as u64 > 1 << 32 {
        return Err(MeasureError::Shape(format!(
            "the OVMF image is {} bytes: it must be a whole number of 4 KiB pages below 4 GiB",
            image.len()
        )));
    }
    let sections = ovmf.sev_sections()?;
    let mut ld = LaunchDigest([0; 48]);
    ld.normal_pages((1u64 << 32) - image.len() as u64, image);

    for s in &sections {
        let (gpa, size) = (u64::from(s.gpa), u64::from(s.size));
        if size % PAGE as u64 != 0 {
            return Err(MeasureError::BadMetadata {
                what: "SEV metadata (ASEV)",
                offset: 0,
                why: format!("section at {gpa:#x} has size {size:#x}, not whole pages"),
            });
        }
        match s.kind {
            SevSectionKind::SecMemory | SevSectionKind::SvsmCaa => ld.repeated(0x03, gpa, size),
            SevSectionKind::Secrets => ld.update(0x05, gpa, &[0; 48]),
            SevSectionKind::Cpuid => ld.update(0x06, gpa, &[0; 48]),
            SevSectionKind::KernelHashes => match &launch.kernel {
                None => ld.repeated(0x03, gpa, size),
                Some(hashes) => {
                    if size != PAGE as u64 {
                        return Err(MeasureError::BadMetadata {
                            what: "SEV metadata (ASEV)",
                            offset: 0,
                            why: format!("kernel hashes section is {size:#x} bytes, not one page"),
                        });
                    }
                    let table = ovmf
                        .sev_hash_table_gpa()?
                        .ok_or(MeasureError::NoKernelHashes)?;
                    let offset = table as usize % PAGE;
                    if offset + hashes.table().len() > PAGE {
                        return Err(MeasureError::BadMetadata {
                            what: "SEV hash table address",
                            offset: 0,
                            why: format!("the table at {table:#x} would cross its page"),
                        });
                    }
                    ld.normal_pages(gpa, &hashes.page(offset));
                }
            },
        }
    }
    if launch.kernel.is_some()
        && !sections
            .iter()
            .any(|s| s.kind == SevSectionKind::KernelHashes)
    {
        return Err(MeasureError::NoKernelHashes);
    }

    let ap_eip = ovmf.sev_es_reset_eip()?;
    let bsp = vmsa::page(vmsa::BSP_EIP, launch.guest_features, launch.vcpu_signature);
    let ap = vmsa::page(ap_eip, launch.guest_features, launch.vcpu_signature);
    let bsp_hash: Digest48 = Sha384::digest(bsp).into();
    let ap_hash: Digest48 = Sha384::digest(ap).into();
    for cpu in 0..launch.vcpus {
        ld.update(0x02, VMSA_GPA, if cpu == 0 { &bsp_hash } else { &ap_hash });
    }
    Ok(ld.0)
}

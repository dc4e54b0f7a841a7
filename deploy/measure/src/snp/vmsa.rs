//! The initial VMSA (the encrypted register save area) QEMU/KVM give each
//! vCPU of an SEV-SNP guest. Offsets are those of AMD's APM volume 2, table
//! B-4 (VMSA layout, state save area for SEV-ES); values are the x86 reset
//! state plus what KVM sets (EFER.SVME, CR4.MCE) and QEMU's FPU defaults.

/// The bootstrap processor starts at the reset vector.
pub(super) const BSP_EIP: u32 = 0xffff_fff0;

/// A VMSA page for a vCPU starting at `eip`.
pub(super) fn page(eip: u32, sev_features: u64, vcpu_signature: u32) -> [u8; 4096] {
    let mut p = [0u8; 4096];
    // Segment registers: selector u16, attributes u16, limit u32, base u64.
    let mut seg = |at: usize, selector: u16, attrib: u16, base: u64| {
        put(&mut p, at, &selector.to_le_bytes());
        put(&mut p, at + 2, &attrib.to_le_bytes());
        put(&mut p, at + 4, &0xffffu32.to_le_bytes());
        put(&mut p, at + 8, &base.to_le_bytes());
    };
    seg(0x00, 0, 0x93, 0); // es
    seg(0x10, 0xf000, 0x9b, u64::from(eip & 0xffff_0000)); // cs: real mode, base from eip
    seg(0x20, 0, 0x93, 0); // ss
    seg(0x30, 0, 0x93, 0); // ds
    seg(0x40, 0, 0x93, 0); // fs
    seg(0x50, 0, 0x93, 0); // gs
    seg(0x60, 0, 0, 0); // gdtr
    seg(0x70, 0, 0x82, 0); // ldtr
    seg(0x80, 0, 0, 0); // idtr
    seg(0x90, 0, 0x8b, 0); // tr
    let mut u64_at = |at: usize, v: u64| put(&mut p, at, &v.to_le_bytes());
    u64_at(0xd0, 0x1000); // efer: SVME
    u64_at(0x148, 0x40); // cr4: MCE
    u64_at(0x158, 0x10); // cr0: ET
    u64_at(0x160, 0x400); // dr7
    u64_at(0x168, 0xffff_0ff0); // dr6
    u64_at(0x170, 0x2); // rflags
    u64_at(0x178, u64::from(eip & 0xffff)); // rip
    u64_at(0x268, 0x0007_0406_0007_0406); // g_pat: the PAT MSR's reset value
    u64_at(0x310, u64::from(vcpu_signature)); // rdx: CPUID signature at reset
    u64_at(0x3b0, sev_features);
    u64_at(0x3e8, 0x1); // xcr0: x87
    put(&mut p, 0x408, &0x1f80u32.to_le_bytes()); // mxcsr
    put(&mut p, 0x410, &0x037fu16.to_le_bytes()); // x87 fcw
    p
}

/// Writes `bytes` at `at` (all offsets above are constants inside the page).
fn put(page: &mut [u8; 4096], at: usize, bytes: &[u8]) {
    if let Some(dst) = page.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

//! EFI GUIDs as they are laid out in firmware (the first three fields little-endian).

/// A GUID in its in-memory (mixed-endian) byte order.
pub(crate) type Guid = [u8; 16];

/// The in-memory bytes of a GUID written `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
///
/// Only called on the constants below; a malformed one is a programming error
/// caught by the unit test, so it yields zeros rather than panicking.
pub(crate) fn parse(text: &str) -> Guid {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let mut big = [0u8; 16];
    if hex::decode_to_slice(&hex, &mut big).is_err() {
        return [0; 16];
    }
    let mut out = big;
    out[0..4].reverse();
    out[4..6].reverse();
    out[6..8].reverse();
    out
}

/// The table at the end of every OVMF/TDVF image.
pub(crate) const FOOTER_TABLE: &str = "96b582de-1fb2-45f7-baea-a366c55a082d";
/// SEV-ES/SNP: where application processors start (the AP reset vector).
pub(crate) const SEV_ES_RESET_BLOCK: &str = "00f771de-1a7e-4fcb-890e-68c77e2fb44e";
/// SEV: where QEMU writes the kernel/initrd/command-line hashes table.
pub(crate) const SEV_HASH_TABLE: &str = "7255371f-3a3b-4b04-927b-1da6efa8d454";
/// SEV-SNP: offset of the `ASEV` metadata (pages QEMU must pre-validate).
pub(crate) const SEV_METADATA: &str = "dc886566-984a-4798-a75e-5585a7bf67cc";
/// TDX: offset of the `TDVF` metadata.
pub(crate) const TDX_METADATA: &str = "e47a6535-984a-4798-865e-4685a7bf8ec2";
/// Header of the hashes table QEMU writes.
pub(crate) const HASH_TABLE_HEADER: &str = "9438d606-4f22-4cc9-b479-a793d411fd21";
/// Hashes table entry: the kernel.
pub(crate) const HASH_KERNEL: &str = "4de79437-abd2-427f-b835-d5b172d2045b";
/// Hashes table entry: the initrd.
pub(crate) const HASH_INITRD: &str = "44baf731-3a2f-4bd7-9af1-41e29169781d";
/// Hashes table entry: the command line.
pub(crate) const HASH_CMDLINE: &str = "97d02dd8-bd20-4c94-aa78-e7714d36ab2a";

#[cfg(test)]
mod tests {
    #[test]
    fn mixed_endian_layout() {
        assert_eq!(
            super::parse(super::FOOTER_TABLE),
            [
                0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45, 0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a,
                0x08, 0x2d
            ]
        );
    }
}

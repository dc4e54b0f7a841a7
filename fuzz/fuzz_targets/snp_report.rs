//! `snp::Report::parse` on arbitrary bytes: never panics, succeeds only on
//! exactly 1184 bytes of a known version with zeros after the signature, and
//! every field is read from its offset in the ABI's table.
#![no_main]

use cloister_attestation::snp::{REPORT_LEN, Report, SIGNED_LEN};
use libfuzzer_sys::fuzz_target;

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().unwrap())
}
fn u64_at(data: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(data[at..at + 8].try_into().unwrap())
}

fuzz_target!(|data: &[u8]| {
    let report = match Report::parse(data) {
        Ok(r) => r,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert_eq!(
        data.len(),
        REPORT_LEN,
        "parsed a report that is not {REPORT_LEN} bytes"
    );
    assert!(matches!(report.version, 2 | 3 | 5));
    assert!(std::ptr::eq(report.raw(), data));
    assert_eq!(report.signed_bytes(), &data[..SIGNED_LEN]);
    assert_eq!(report.version, u32_at(data, 0x000));
    assert_eq!(report.guest_svn, u32_at(data, 0x004));
    assert_eq!(report.policy.0, u64_at(data, 0x008));
    assert_eq!(report.vmpl, u32_at(data, 0x030));
    assert_eq!(report.signature_algo, u32_at(data, 0x034));
    assert_eq!(report.current_tcb, u64_at(data, 0x038));
    assert_eq!(report.platform_info.0, u64_at(data, 0x040));
    assert_eq!(report.key_info, u32_at(data, 0x048));
    assert_eq!(&report.report_data[..], &data[0x050..0x090]);
    assert_eq!(&report.measurement[..], &data[0x090..0x0C0]);
    assert_eq!(&report.host_data[..], &data[0x0C0..0x0E0]);
    assert_eq!(&report.report_id[..], &data[0x140..0x160]);
    assert_eq!(report.reported_tcb, u64_at(data, 0x180));
    assert_eq!(report.cpuid.is_some(), report.version >= 3);
    assert_eq!(&report.chip_id[..], &data[0x1A0..0x1E0]);
    assert_eq!(report.committed_tcb, u64_at(data, 0x1E0));
    assert_eq!(report.launch_tcb, u64_at(data, 0x1F0));
    assert_eq!(&report.signature_r[..], &data[0x2A0..0x2E8]);
    assert_eq!(&report.signature_s[..], &data[0x2E8..0x330]);
    assert!(
        data[0x330..].iter().all(|&b| b == 0),
        "parsed a report with non-zero bytes after the signature"
    );
    let _ = (
        report.signing_key().to_string(),
        report.product_from_cpuid(),
    );
});

//! `gpu::GpuReport::parse` on arbitrary bytes: never panics, and a parsed
//! report's fields, blocks and signed range are the bytes they claim to be.
#![no_main]

use cloister_attestation::gpu::{GpuReport, SIGNATURE_LEN};
use cloister_attestation_fuzz::within;
use libfuzzer_sys::fuzz_target;

/// Request (37) + response header (4) + count (1) + record length (3) +
/// responder nonce (32) + opaque length (2) + signature (96).
const MIN_LEN: usize = 37 + 4 + 1 + 3 + 32 + 2 + SIGNATURE_LEN;

fuzz_target!(|data: &[u8]| {
    let report = match GpuReport::parse(data) {
        Ok(r) => r,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let len = data.len();
    assert!(
        len >= MIN_LEN,
        "parsed a {len}-byte report; the minimum is {MIN_LEN}"
    );
    assert!(matches!(report.version, 0x11..=0x13));
    assert_eq!(
        (data[0], data[1], data[37], data[38]),
        (report.version, 0xE0, report.version, 0x60)
    );
    assert_eq!(data[2] & 1, 1, "an unsigned request parsed");
    assert_eq!(report.operation, data[3]);
    assert_eq!(&report.nonce[..], &data[4..36]);
    assert_eq!(report.slot_id, data[36]);
    assert_eq!(report.blocks.len(), usize::from(data[41]));

    // The signature covers everything before it; only zeros follow it.
    assert_eq!(report.signed.start, 0);
    assert_eq!(report.signed.end + SIGNATURE_LEN + report.padding, len);
    assert_eq!(report.signed_bytes(), &data[report.signed.clone()]);
    assert_eq!(
        &report.signature[..],
        &data[report.signed.end..report.signed.end + SIGNATURE_LEN]
    );
    assert!(data[len - report.padding..].iter().all(|&b| b == 0));

    // The record holds exactly the blocks; the opaque data exactly its TLVs.
    let record_len = u32::from_le_bytes([data[42], data[43], data[44], 0]) as usize;
    let record_bytes: usize = report.blocks.iter().map(|b| 4 + 3 + b.value.len()).sum();
    assert_eq!(record_bytes, record_len);
    for b in &report.blocks {
        assert!(within(data, b.value));
    }
    let nonce_at = 45 + record_len;
    assert_eq!(&report.responder_nonce[..], &data[nonce_at..nonce_at + 32]);
    let opaque_len = usize::from(u16::from_le_bytes([
        data[nonce_at + 32],
        data[nonce_at + 33],
    ]));
    let opaque_bytes: usize = report.opaque.values().map(|v| 4 + v.len()).sum();
    assert_eq!(opaque_bytes, opaque_len);
    assert_eq!(nonce_at + 34 + opaque_len, report.signed.end);
    for v in report.opaque.values() {
        assert!(within(data, v));
    }
    let _ = (report.driver_version(), report.vbios_version());

    let trimmed =
        GpuReport::parse(&data[..len - report.padding]).expect("report without its padding");
    assert_eq!(
        (
            trimmed.padding,
            &trimmed.blocks,
            &trimmed.opaque,
            trimmed.signed.clone()
        ),
        (0, &report.blocks, &report.opaque, report.signed.clone())
    );
});

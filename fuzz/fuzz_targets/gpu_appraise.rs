//! End to end: `gpu::verdict` (which runs `gpu::appraise`) of an arbitrary
//! report with a real device chain (the fixture the input most resembles).
//! A report accepted for the fixture's nonce must carry bytes the device
//! really signed.
#![no_main]

use cloister_attestation::gpu::{self, GpuReport};
use cloister_attestation_fuzz::{GPU, check_verdict, closest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fixture = &GPU[closest(data, GPU.iter().map(|f| f.report))];
    let nonce = GpuReport::parse(fixture.report)
        .expect("fixture parses")
        .nonce;
    let verdict = gpu::verdict(data, fixture.chain_pem, Some(&nonce), fixture.at);
    check_verdict(&verdict);
    if verdict.accepted {
        let report = GpuReport::parse(data).expect("accepted implies parsed");
        assert_eq!(report.nonce, nonce);
        assert!(
            GPU.iter().any(|f| GpuReport::parse(f.report)
                .is_ok_and(|g| g.signed_bytes() == report.signed_bytes())),
            "accepted a report whose signed bytes no real report has"
        );
    }
});

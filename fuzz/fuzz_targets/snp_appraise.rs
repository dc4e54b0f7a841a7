//! End to end: `snp::appraise` of an arbitrary report with a real
//! ARK/ASK/VEK chain (the fixture the input most resembles, at a time inside
//! its certificates' validity). A report the strict policy accepts must carry
//! signed bytes an AMD key really signed.
#![no_main]

use cloister_attestation::Policy;
use cloister_attestation::snp::{self, Report, SIGNED_LEN};
use cloister_attestation_fuzz::{SNP, check_verdict, closest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fixture = &SNP[closest(data, SNP.iter().map(|f| f.report))];
    let parsed = Report::parse(data);
    let verdict = snp::appraise(data, &fixture.chain, &Policy::strict(), fixture.at, None);
    assert_eq!(
        parsed.is_ok(),
        verdict.is_ok(),
        "appraise errs exactly when parse does"
    );
    let Ok(verdict) = verdict else {
        return;
    };
    check_verdict(&verdict);
    if verdict.accepted {
        assert!(
            SNP.iter()
                .any(|f| f.report[..SIGNED_LEN] == data[..SIGNED_LEN]),
            "accepted a report whose signed bytes no real report has"
        );
    }
});

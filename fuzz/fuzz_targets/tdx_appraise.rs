//! End to end: `tdx::appraise` of an arbitrary quote with real collateral
//! (the fixture the input most resembles, at a time inside its window).
//! Drives dcap-qvl on mutated quotes. A quote the strict policy accepts must
//! carry a header, body and QE report Intel's keys really signed.
#![no_main]

use cloister_attestation::Policy;
use cloister_attestation::tdx::{self, Quote};
use cloister_attestation_fuzz::{TDX, check_verdict, closest};
use libfuzzer_sys::fuzz_target;

/// What Intel's keys vouch for: header and body (attestation key), the
/// attestation key itself and the QE report (PCK key).
fn signed<'a>(q: &Quote<'a>) -> (&'a [u8], &'a [u8], &'a [u8]) {
    (
        &q.raw()[q.spans.header_and_body.clone()],
        q.signature.qe_report,
        &q.raw()[q.spans.attestation_key.clone()],
    )
}

fuzz_target!(|data: &[u8]| {
    let fixture = &TDX[closest(data, TDX.iter().map(|f| f.quote))];
    let parsed = Quote::parse(data);
    let verdict = tdx::appraise(
        data,
        &fixture.collateral,
        &Policy::strict(),
        fixture.at,
        None,
    );
    assert_eq!(
        parsed.is_ok(),
        verdict.is_ok(),
        "appraise errs exactly when parse does"
    );
    let (Ok(quote), Ok(verdict)) = (parsed, verdict) else {
        return;
    };
    check_verdict(&verdict);
    if verdict.accepted {
        assert!(
            TDX.iter()
                .filter_map(|f| Quote::parse(f.quote).ok())
                .any(|f| signed(&f) == signed(&quote)),
            "accepted a quote whose signed bytes no real quote has"
        );
    }
});

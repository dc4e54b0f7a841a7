//! `tdx::TdxCollateral::from_json` on arbitrary bytes, then (when it parses)
//! a real quote appraised with that collateral: drives dcap-qvl's TCB info,
//! QE identity, CRL and issuer-chain handling with hostile collateral, as a
//! bundle's `certs.tdx_collateral` can carry.
#![no_main]

use cloister_attestation::Policy;
use cloister_attestation::tdx::{self, TdxCollateral};
use cloister_attestation_fuzz::{TDX, check_verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let collateral = match TdxCollateral::from_json(data) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    // Accessors and the JSON round trip.
    let _ = (
        collateral.fmspc(),
        collateral.tcb_info_id(),
        collateral.tcb_info_issue_date(),
        collateral.tcb_info_next_update(),
        collateral.tcb_evaluation_data_number(),
    );
    let again =
        TdxCollateral::from_json(collateral.to_json().as_bytes()).expect("to_json output parses");
    assert_eq!(again, collateral, "collateral JSON round trip");

    // Appraise the real quote whose collateral has this FMSPC (else the first).
    let fixture = TDX
        .iter()
        .find(|f| {
            f.collateral
                .fmspc()
                .eq_ignore_ascii_case(collateral.fmspc())
        })
        .unwrap_or(&TDX[0]);
    let verdict = tdx::appraise(
        fixture.quote,
        &collateral,
        &Policy::strict(),
        fixture.at,
        None,
    )
    .expect("a real quote parses whatever the collateral");
    check_verdict(&verdict);
    if verdict.accepted {
        // TCB info and QE identity are signed by Intel: an accepted quote
        // must have been checked against bodies Intel really signed.
        assert!(
            TDX.iter().any(
                |f| f.collateral.tcb_info_json() == collateral.tcb_info_json()
                    && f.collateral.qe_identity_json() == collateral.qe_identity_json()
            ),
            "accepted with TCB info / QE identity Intel never signed"
        );
    }
});

//! `bundle::EvidenceBundle::from_json` on arbitrary bytes, its JSON round
//! trip, and `bundle::appraise` of every bundle that parses, under the strict
//! policy. The evidence in the seeds is real but was not bound to any
//! Cloister nonce/identity, so no bundle can be accepted: that would need a
//! SHA-512 preimage or a forged hardware signature.
#![no_main]

use cloister_attestation::bundle::{self, BundleOptions, EvidenceBundle};
use cloister_attestation::{Platform, Policy, Timestamp};
use cloister_attestation_fuzz::check_verdict;
use libfuzzer_sys::fuzz_target;

/// Inside the TDX b0c06f / SGX collateral window; SNP and GPU chains are valid then too.
const NOW: Timestamp = Timestamp::from_unix(1_751_328_000);

fuzz_target!(|data: &[u8]| {
    let b = match EvidenceBundle::from_json(data) {
        Ok(b) => b,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert_eq!(b.version, bundle::BUNDLE_VERSION);
    assert!(matches!(
        b.platform,
        Platform::Tdx | Platform::SevSnp | Platform::Simulated
    ));
    b.nonce_bytes().expect("from_json checked the nonce");
    b.typed_identity().expect("from_json checked the identity");
    b.expected_report_data()
        .expect("binding of a parsed bundle");
    let again = EvidenceBundle::from_json(b.to_json().as_bytes()).expect("to_json output parses");
    assert_eq!(again, b, "bundle JSON round trip");

    match bundle::appraise(&b, &Policy::strict(), NOW, &BundleOptions::default()) {
        Ok(v) => {
            check_verdict(&v);
            assert!(
                !v.accepted,
                "accepted evidence not bound to this bundle: {v:?}"
            );
            assert_eq!(v.gpus.len(), b.gpu.len());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});

//! Verifies one TDX quote N times, either through Cloister or by calling
//! dcap-qvl directly; used by `scripts/bench-attestation.sh` to compare
//! instruction counts under `valgrind --tool=callgrind`, which, unlike
//! wall-clock time, does not depend on what else the machine is doing.
//!
//! `cargo run --release --example tdx_verify_loop -- MODE N` with MODE one of
//! `dcap-qvl`, `cloister` (verify_quote), `cloister-appraise`, `parse`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use cloister_attestation::tdx::{self, Quote, TdxCollateral};
use cloister_attestation::{Timestamp, roots};

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "cloister".into());
    let n: u32 = args.next().map_or(100, |s| s.parse().unwrap());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/tdx/v4-uptodate-b0c06f-dcapqvl");
    let quote = std::fs::read(dir.join("quote.bin")).unwrap();
    let json = std::fs::read(dir.join("collateral.json")).unwrap();
    let now = Timestamp::parse_rfc3339("2025-07-01T00:00:00Z").unwrap();
    let ours = TdxCollateral::from_json(&json).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let s = |k: &str| v[k].as_str().unwrap().to_owned();
    let h = |k: &str| hex::decode(v[k].as_str().unwrap()).unwrap();
    let theirs = dcap_qvl::QuoteCollateralV3 {
        pck_crl_issuer_chain: s("pck_crl_issuer_chain"),
        root_ca_crl: h("root_ca_crl"),
        pck_crl: h("pck_crl"),
        tcb_info_issuer_chain: s("tcb_info_issuer_chain"),
        tcb_info: s("tcb_info"),
        tcb_info_signature: h("tcb_info_signature"),
        qe_identity_issuer_chain: s("qe_identity_issuer_chain"),
        qe_identity: s("qe_identity"),
        qe_identity_signature: h("qe_identity_signature"),
        pck_certificate_chain: None,
    };
    for _ in 0..n {
        match mode.as_str() {
            "cloister" => {
                std::hint::black_box(tdx::verify_quote(&quote, &ours, now).unwrap());
            }
            "dcap-qvl" => {
                let verifier =
                    dcap_qvl::verify::QuoteVerifier::new(roots::INTEL_SGX_ROOT_CA_DER.to_vec())
                        .allow_debug(true);
                std::hint::black_box(verifier.verify(&quote, &theirs, now.unix()).unwrap());
            }
            "cloister-appraise" => {
                let policy = cloister_attestation::Policy::strict();
                let v = tdx::appraise(&quote, &ours, &policy, now, None).unwrap();
                assert!(v.accepted);
                std::hint::black_box(v);
            }
            "parse" => {
                let q = Quote::parse(&quote).unwrap();
                std::hint::black_box(q.pck_chain().unwrap());
            }
            other => panic!("mode {other}: dcap-qvl, cloister, cloister-appraise or parse"),
        }
    }
}

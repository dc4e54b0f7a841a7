//! Both recorded H100 reports verify: signature with the device leaf key,
//! chain to the NVIDIA Device Identity CA, nonce as recorded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use cloister_attestation::gpu::{self, GpuError, GpuReport, verify_report};
use cloister_attestation::{Platform, ReasonCode, Timestamp};
use common::{expected, read, vectors};

fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
}

fn nonce_of(exp: &serde_json::Value) -> [u8; 32] {
    hex::decode(exp["expected"]["expected_nonce"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

#[test]
fn every_gpu_vector_verifies_with_its_recorded_nonce() {
    for name in vectors("gpu") {
        let exp = expected("gpu", &name);
        let raw = read("gpu", &name, "attestation_report.bin");
        let chain = read("gpu", &name, "cert_chain.pem");
        let verified = verify_report(&raw, &chain, Some(&nonce_of(&exp)), now()).unwrap();
        assert_eq!(verified.device(), Some("GH100 A01 GSP FMC LF"));
        assert_eq!(
            verified.driver_version(),
            exp["opaque_data"]["driver_version"].as_str()
        );
        assert_eq!(
            verified.vbios_version(),
            exp["opaque_data"]["vbios_version_derived"].as_str()
        );
        assert_eq!(
            verified.measurements().len() as u64,
            exp["number_of_measurement_blocks"].as_u64().unwrap()
        );
        for block in exp["measurements"].as_array().unwrap() {
            let index = u8::try_from(block["index"].as_u64().unwrap()).unwrap();
            assert_eq!(
                hex::encode(&verified.measurements()[&index]),
                block["value"].as_str().unwrap(),
                "{name} block {index}"
            );
        }
    }
}

#[test]
fn parser_finds_the_signature_by_structure_not_by_position() {
    for name in vectors("gpu") {
        let exp = expected("gpu", &name);
        let raw = read("gpu", &name, "attestation_report.bin");
        let report = GpuReport::parse(&raw).unwrap();
        let format = &exp["format"];
        assert_eq!(
            report.signed.end as u64,
            format["signature_offset"].as_u64().unwrap()
        );
        assert_eq!(
            report.padding as u64,
            format["bytes_after_signature"].as_u64().unwrap()
        );
        assert_eq!(
            hex::encode(report.nonce),
            exp["request"]["nonce"].as_str().unwrap()
        );
        assert_eq!(
            hex::encode(report.responder_nonce),
            exp["responder_nonce"].as_str().unwrap()
        );
    }
    // The report with one trailing zero byte: taking "the last 96 bytes" as
    // the signature would be wrong; the parser's signature is not that.
    let raw = read("gpu", "h100-coco-ci-trustee", "attestation_report.bin");
    let report = GpuReport::parse(&raw).unwrap();
    assert_eq!(report.padding, 1);
    assert_ne!(&report.signature[..], &raw[raw.len() - 96..]);
}

#[test]
fn a_wrong_nonce_is_refused() {
    let raw = read("gpu", "h100-nvtrust-sample", "attestation_report.bin");
    let chain = read("gpu", "h100-nvtrust-sample", "cert_chain.pem");
    let err = verify_report(&raw, &chain, Some(&[0u8; 32]), now()).unwrap_err();
    assert!(matches!(err, GpuError::NonceMismatch { .. }), "{err}");
    assert_eq!(err.code(), ReasonCode::NonceMismatch);
}

#[test]
fn the_standalone_verdict_lists_what_it_did_not_check() {
    let raw = read("gpu", "h100-nvtrust-sample", "attestation_report.bin");
    let chain = read("gpu", "h100-nvtrust-sample", "cert_chain.pem");
    let v = gpu::verdict(&raw, &chain, None, now());
    assert!(v.accepted, "{:?}", v.reasons);
    assert_eq!(v.platform, Platform::NvidiaGpu);
    assert_eq!(v.facts["driver_version"], "550.90.07");
    assert!(v.not_checked.iter().any(|s| s.contains("RIM")));
    assert!(v.not_checked.iter().any(|s| s.contains("OCSP")));
}

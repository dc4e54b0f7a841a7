//! Forgeries and mismatches on real vectors: flipped bits in every signed
//! span, certificates from the wrong chain or product, wrong times, wrong
//! nonces and report data, measurements off the allowlist. Each is rejected
//! with the right reason code; none is left unclassified.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::ops::Range;

use ReasonCode::*;
use cloister_attestation::gpu::{self, GpuReport};
use cloister_attestation::snp::{self, Report, SnpCertChain};
use cloister_attestation::tdx::{self, Quote, TdxCollateral};
use cloister_attestation::{CertError, Policy, ReasonCode, Timestamp, Verdict};
use common::{expected, read, testdata, verify_at};

/// Flips one bit in every `stride`-th byte of `span` (a different bit each
/// time) and hands the result to `check` with the byte offset.
fn flip_each_byte(
    raw: &[u8],
    span: Range<usize>,
    stride: usize,
    mut check: impl FnMut(usize, &[u8]),
) {
    let mut bad = raw.to_vec();
    for offset in span.step_by(stride) {
        let mask = 1u8 << (offset % 8);
        bad[offset] ^= mask;
        check(offset, &bad);
        bad[offset] ^= mask;
    }
}

/// The codes a verdict (or a parse error) gives; empty when accepted.
fn codes<E: std::fmt::Display>(
    result: Result<Verdict, E>,
    parse_code: impl Fn(&E) -> ReasonCode,
) -> Vec<ReasonCode> {
    match result {
        Ok(v) => {
            assert_eq!(v.accepted, v.reason_codes().is_empty());
            v.reason_codes()
        }
        Err(e) => vec![parse_code(&e)],
    }
}

/// The first code, or `None` when accepted.
fn first(codes: &[ReasonCode]) -> Option<ReasonCode> {
    codes.first().copied()
}

// ---------------------------------------------------------------- TDX

fn tdx_vector(name: &str) -> (Vec<u8>, TdxCollateral, Timestamp) {
    let exp = expected("tdx", name);
    let raw = read("tdx", name, "quote.bin");
    let coll = TdxCollateral::from_json(&read("tdx", name, "collateral.json")).unwrap();
    (raw, coll, verify_at(&exp))
}

fn tdx_codes(raw: &[u8], coll: &TdxCollateral, at: Timestamp) -> Vec<ReasonCode> {
    codes(tdx::appraise(raw, coll, &Policy::strict(), at, None), |e| {
        e.code()
    })
}

#[test]
fn tdx_every_signed_span_rejects_a_flipped_bit() {
    for name in [
        "v4-uptodate-b0c06f-dcapqvl",
        "v5-uptodate-90c06f-gotdxguest",
    ] {
        let (raw, coll, at) = tdx_vector(name);
        assert!(
            tdx::appraise(&raw, &coll, &Policy::strict(), at, None)
                .unwrap()
                .accepted
        );
        let quote = Quote::parse(&raw).unwrap();
        let spans = quote.spans.clone();
        let body_start = if quote.header.version == 5 { 54 } else { 48 };
        let sig_start = spans.header_and_body.end + 4;
        drop(quote);

        // Header: structural fields fail to parse, the rest breaks the signature.
        flip_each_byte(&raw, 0..48, 1, |at_byte, bad| {
            let got = tdx_codes(bad, &coll, at);
            let ok = got.contains(&EvidenceSignatureInvalid)
                || matches!(
                    first(&got),
                    Some(UnsupportedVersion | WrongPlatform | MalformedEvidence)
                );
            assert!(ok, "{name} header byte {at_byte}: {got:?}");
        });
        // TD report body (every byte): the quote signature fails.
        flip_each_byte(
            &raw,
            body_start..spans.header_and_body.end,
            1,
            |at_byte, bad| {
                let got = tdx_codes(bad, &coll, at);
                assert_eq!(
                    first(&got),
                    Some(EvidenceSignatureInvalid),
                    "{name} body byte {at_byte}: {got:?}"
                );
            },
        );
        // The quote signature itself.
        flip_each_byte(&raw, sig_start..sig_start + 64, 1, |at_byte, bad| {
            assert_eq!(
                tdx_codes(bad, &coll, at),
                vec![EvidenceSignatureInvalid],
                "{name} sig {at_byte}"
            );
        });
        // Attestation key and QE auth data are bound into the QE report.
        for span in [spans.attestation_key.clone(), spans.qe_auth_data.clone()] {
            flip_each_byte(&raw, span, 1, |at_byte, bad| {
                assert_eq!(
                    tdx_codes(bad, &coll, at),
                    vec![QeReportBindingInvalid],
                    "{name} {at_byte}"
                );
            });
        }
        // The QE report and its signature are signed by the PCK key.
        let qe = spans.qe_report.clone();
        flip_each_byte(&raw, qe.start..qe.end + 64, 1, |at_byte, bad| {
            assert_eq!(
                tdx_codes(bad, &coll, at),
                vec![QeReportSignatureInvalid],
                "{name} QE {at_byte}"
            );
        });
        // The PCK chain in the quote (PEM text, sampled: every 3rd byte).
        flip_each_byte(&raw, spans.certification_data.clone(), 3, |at_byte, bad| {
            let got = tdx_codes(bad, &coll, at);
            assert!(
                matches!(
                    first(&got),
                    Some(CertificateChainInvalid | CertificateExpired | UntrustedRoot)
                ),
                "{name} PCK chain byte {at_byte}: {got:?}"
            );
        });
    }
}

#[test]
fn tdx_nonzero_trailing_bytes_are_refused_but_zero_padding_is_not() {
    let (raw, coll, at) = tdx_vector("v4-outofdate-00806f-automata");
    let mut bad = raw.clone();
    let last = bad.len() - 1;
    bad[last] = 1;
    assert_eq!(tdx_codes(&bad, &coll, at), vec![TrailingBytes]);
    let (raw, coll, at) = tdx_vector("v4-uptodate-b0c06f-dcapqvl");
    let mut padded = raw.clone();
    padded.extend_from_slice(&[0; 100]);
    assert!(
        tdx::appraise(&padded, &coll, &Policy::strict(), at, None)
            .unwrap()
            .accepted
    );
}

/// Collateral JSON of a vector with one field replaced.
fn collateral_with(name: &str, field: &str, value: serde_json::Value) -> TdxCollateral {
    let mut json: serde_json::Value =
        serde_json::from_slice(&read("tdx", name, "collateral.json")).unwrap();
    json[field] = value;
    TdxCollateral::from_json(&serde_json::to_vec(&json).unwrap()).unwrap()
}

#[test]
fn tdx_collateral_from_the_wrong_platform_or_chain_is_refused() {
    let name = "v4-uptodate-b0c06f-dcapqvl";
    let (raw, _, at) = tdx_vector(name);
    let sgx: serde_json::Value = serde_json::from_slice(&read(
        "sgx",
        "v3-sgx-config-and-sw-hardening-dcapqvl",
        "collateral.json",
    ))
    .unwrap();

    // Intel-signed TCB info for another FMSPC (an SGX platform), same window.
    let mut other = collateral_with(name, "tcb_info", sgx["tcb_info"].clone());
    other = {
        let mut json: serde_json::Value = serde_json::from_str(&other.to_json()).unwrap();
        json["tcb_info_signature"] = sgx["tcb_info_signature"].clone();
        TdxCollateral::from_json(&serde_json::to_vec(&json).unwrap()).unwrap()
    };
    assert_eq!(tdx_codes(&raw, &other, at), vec![CollateralMismatch]);

    // The whole SGX collateral: its QE identity is the SGX QE's, not the TD QE's.
    let whole = TdxCollateral::from_json(&serde_json::to_vec(&sgx).unwrap()).unwrap();
    assert_eq!(tdx_codes(&raw, &whole, at), vec![CollateralMismatch]);

    // A TCB info signature that is not Intel's.
    let mut sig = hex::decode(sgx["tcb_info_signature"].as_str().unwrap()).unwrap();
    sig[10] ^= 1;
    let forged = collateral_with(name, "tcb_info_signature", hex::encode(sig).into());
    assert_eq!(
        tdx_codes(&raw, &forged, at),
        vec![CollateralSignatureInvalid]
    );

    // A TCB info signing chain that does not end in the Intel SGX Root CA.
    let nvidia = String::from_utf8(read("gpu", "h100-nvtrust-sample", "cert_chain.pem")).unwrap();
    let foreign = collateral_with(name, "tcb_info_issuer_chain", nvidia.into());
    assert_eq!(tdx_codes(&raw, &foreign, at), vec![CertificateChainInvalid]);
}

#[test]
fn tdx_wrong_report_data_and_measurements_off_the_allowlist() {
    let name = "v5-uptodate-90c06f-gotdxguest";
    let (raw, coll, at) = tdx_vector(name);
    let exp = expected("tdx", name);
    let real: [u8; 64] = hex::decode(exp["td_report"]["report_data"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    assert!(
        tdx::appraise(&raw, &coll, &Policy::strict(), at, Some(&real))
            .unwrap()
            .accepted
    );
    let mut wrong = real;
    wrong[63] ^= 1;
    let v = tdx::appraise(&raw, &coll, &Policy::strict(), at, Some(&wrong)).unwrap();
    assert_eq!(v.reason_codes(), vec![ReportDataMismatch]);

    for register in ["mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrseam"] {
        let other = "11".repeat(48);
        let policy = Policy::from_toml(&format!("[tdx]\n{register} = [\"{other}\"]\n")).unwrap();
        let v = tdx::appraise(&raw, &coll, &policy, at, None).unwrap();
        assert_eq!(v.reason_codes(), vec![MeasurementNotAllowed], "{register}");
        assert!(v.reasons[0].detail.contains(register));
        // The real value on the list is accepted.
        let theirs = match register {
            "mrtd" => "mr_td",
            "mrseam" => "mr_seam",
            r => r,
        };
        let value = exp["td_report"][theirs].as_str().unwrap();
        let policy =
            Policy::from_toml(&format!("[tdx]\n{register} = [\"{other}\", \"{value}\"]\n"))
                .unwrap();
        assert!(
            tdx::appraise(&raw, &coll, &policy, at, None)
                .unwrap()
                .accepted,
            "{register}"
        );
    }
}

// ---------------------------------------------------------------- SNP

fn snp_file(name: &str, stems: &[&str]) -> Vec<u8> {
    let dir = testdata().join("snp").join(name);
    stems
        .iter()
        .find_map(|stem| {
            ["pem", "der"]
                .iter()
                .find_map(|ext| std::fs::read(dir.join(format!("{stem}.{ext}"))).ok())
        })
        .unwrap_or_else(|| panic!("{name}: none of {stems:?}"))
}

fn snp_chain_of(ark_from: &str, ask_from: &str, vek_from: &str) -> SnpCertChain {
    SnpCertChain::parse(
        Some(&snp_file(ark_from, &["ark"])),
        &snp_file(ask_from, &["ask", "asvk"]),
        &snp_file(vek_from, &["vcek", "vlek"]),
    )
    .unwrap()
}

fn snp_codes(raw: &[u8], chain: &SnpCertChain, at: Timestamp) -> Vec<ReasonCode> {
    let policy = Policy::from_toml("[sev_snp]\nallow_debug = true\n").unwrap();
    codes(snp::appraise(raw, chain, &policy, at, None), |e| {
        snp::SnpError::from(e.clone()).code()
    })
}

#[test]
fn snp_every_signed_byte_and_the_signature_reject_a_flipped_bit() {
    for name in [
        "milan-v2-virtee",
        "genoa-v5-oak",
        "turin-v5-oak",
        "milan-v3-vlek-aws-trustee",
    ] {
        let exp = expected("snp", name);
        let at = verify_at(&exp);
        let raw = read("snp", name, "report.bin");
        let chain = snp_chain_of(name, name, name);
        assert!(
            snp::appraise(&raw, &chain, &Policy::strict(), at, None)
                .unwrap()
                .accepted
        );
        flip_each_byte(&raw, 0..snp::SIGNED_LEN + 144, 1, |offset, bad| {
            let got = snp_codes(bad, &chain, at);
            let allowed: &[ReasonCode] = match offset {
                // 2 <-> 3 and 5 -> 4/7/1: another or an unknown version.
                0x00..=0x03 => &[
                    UnsupportedVersion,
                    MalformedEvidence,
                    EvidenceSignatureInvalid,
                ],
                0x34..=0x37 => &[MalformedEvidence],
                0x48..=0x4B => &[
                    MalformedEvidence,
                    CertificateMismatch,
                    EvidenceSignatureInvalid,
                ],
                // Reserved TCB bytes are not compared, but signed.
                0x180..=0x187 => &[TcbMismatch, EvidenceSignatureInvalid],
                0x188..=0x18A => &[
                    CertificateMismatch,
                    MalformedEvidence,
                    TcbMismatch,
                    EvidenceSignatureInvalid,
                ],
                0x1A0..=0x1DF => &[ChipIdMismatch, EvidenceSignatureInvalid],
                _ => &[EvidenceSignatureInvalid],
            };
            assert!(
                first(&got).is_some_and(|c| allowed.contains(&c)),
                "{name} byte {offset:#x}: {got:?}"
            );
        });
        // Nothing in the unsigned area after the signature may change: one
        // report, one encoding (but for S and n - S; see snp/verify.rs).
        flip_each_byte(
            &raw,
            snp::SIGNED_LEN + 144..snp::REPORT_LEN,
            7,
            |offset, bad| {
                assert!(
                    matches!(
                        Report::parse(bad),
                        Err(snp::ReportError::NonZeroAfterSignature { offset: o, .. }) if o == offset
                    ),
                    "{name} byte {offset:#x}"
                );
                assert_eq!(
                    snp_codes(bad, &chain, at),
                    vec![TrailingBytes],
                    "{name} byte {offset:#x}"
                );
            },
        );
    }
}

#[test]
fn snp_reports_are_exactly_1184_bytes() {
    let exp = expected("snp", "genoa-v5-oak");
    let raw = read("snp", "genoa-v5-oak", "report.bin");
    let chain = snp_chain_of("genoa-v5-oak", "genoa-v5-oak", "genoa-v5-oak");
    let mut long = raw.clone();
    long.push(0);
    assert_eq!(
        snp_codes(&long, &chain, verify_at(&exp)),
        vec![TrailingBytes]
    );
    assert_eq!(
        snp_codes(&raw[..1000], &chain, verify_at(&exp)),
        vec![MalformedEvidence]
    );
    assert!(Report::parse(&raw).is_ok());
}

#[test]
fn snp_certificates_from_the_wrong_chain_or_product_are_refused() {
    let at = verify_at(&expected("snp", "milan-v5-gcp-teekit"));
    let milan_v5 = read("snp", "milan-v5-gcp-teekit", "report.bin");
    let milan_v2 = read("snp", "milan-v2-virtee", "report.bin");
    let v2_at = verify_at(&expected("snp", "milan-v2-virtee"));

    // A Genoa ARK offered for a Milan report: not AMD's Milan root.
    let chain = snp_chain_of("genoa-v5-oak", "milan-v5-gcp-teekit", "milan-v5-gcp-teekit");
    assert_eq!(snp_codes(&milan_v5, &chain, at), vec![UntrustedRoot]);
    // A Genoa chain for a report whose CPUID says Milan.
    let chain = snp_chain_of("genoa-v5-oak", "genoa-v5-oak", "genoa-v5-oak");
    assert_eq!(snp_codes(&milan_v5, &chain, at), vec![CertificateMismatch]);
    // The VCEK of another Milan chip (other TCB, other chip id).
    let chain = snp_chain_of("milan-v2-virtee", "milan-v2-virtee", "milan-v5-gcp-teekit");
    let got = snp_codes(&milan_v2, &chain, at);
    assert!(
        matches!(first(&got), Some(TcbMismatch | ChipIdMismatch)),
        "{got:?}"
    );
    // A VCEK under a Genoa ASK: the ASK did not sign it.
    let chain = SnpCertChain::parse(
        None,
        &snp_file("genoa-v5-oak", &["ask"]),
        &snp_file("milan-v2-virtee", &["vcek"]),
    )
    .unwrap();
    assert_eq!(
        snp_codes(&milan_v2, &chain, v2_at),
        vec![CertificateChainInvalid]
    );
    // A VCEK where the report says VLEK.
    let vlek_report = read("snp", "milan-v3-vlek-aws-trustee", "report.bin");
    let vlek_at = verify_at(&expected("snp", "milan-v3-vlek-aws-trustee"));
    let chain = snp_chain_of("milan-v2-virtee", "milan-v2-virtee", "milan-v2-virtee");
    assert_eq!(
        snp_codes(&vlek_report, &chain, vlek_at),
        vec![CertificateMismatch]
    );
}

#[test]
fn snp_times_outside_the_certificates_and_wrong_report_data() {
    let name = "genoa-v3-azure-trustee";
    let exp = expected("snp", name);
    let raw = read("snp", name, "report.bin");
    let chain = snp_chain_of(name, name, name);
    let before = Timestamp::parse_rfc3339("2015-01-01T00:00:00Z").unwrap();
    assert_eq!(snp_codes(&raw, &chain, before), vec![CertificateExpired]);
    let mut wrong: [u8; 64] = hex::decode(exp["report"]["report_data"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    wrong[0] ^= 0x80;
    let v = snp::appraise(
        &raw,
        &chain,
        &Policy::strict(),
        verify_at(&exp),
        Some(&wrong),
    )
    .unwrap();
    assert_eq!(v.reason_codes(), vec![ReportDataMismatch]);
}

// ---------------------------------------------------------------- GPU

fn gpu_codes(raw: &[u8], chain: &[u8], nonce: Option<&[u8; 32]>, at: Timestamp) -> Vec<ReasonCode> {
    gpu::appraise(raw, chain, nonce, at)
        .reasons
        .iter()
        .map(|r| r.code)
        .collect()
}

fn gpu_now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
}

#[test]
fn gpu_every_signed_span_and_the_signature_reject_a_flipped_bit() {
    let raw = read("gpu", "h100-coco-ci-trustee", "attestation_report.bin");
    let chain = read("gpu", "h100-coco-ci-trustee", "cert_chain.pem");
    assert!(gpu_codes(&raw, &chain, None, gpu_now()).is_empty());
    let report = GpuReport::parse(&raw).unwrap();
    let signed = report.signed.clone();
    let structural = [0..4, 36..42, 42..46];
    // Every 3rd byte of request and response, and every byte of the signature.
    flip_each_byte(&raw, signed.clone(), 3, |offset, bad| {
        let got = gpu_codes(bad, &chain, None, gpu_now());
        let ok = got == vec![EvidenceSignatureInvalid]
            || (matches!(got[0], MalformedEvidence | UnsupportedVersion)
                && (structural.iter().any(|s| s.contains(&offset))
                    || GpuReport::parse(bad).is_err()));
        assert!(ok, "byte {offset}: {got:?}");
    });
    flip_each_byte(&raw, signed.end..signed.end + 96, 1, |offset, bad| {
        assert_eq!(
            gpu_codes(bad, &chain, None, gpu_now()),
            vec![EvidenceSignatureInvalid],
            "sig byte {offset}"
        );
    });
    let mut trailing = raw.clone();
    *trailing.last_mut().unwrap() = 7;
    assert_eq!(
        gpu_codes(&trailing, &chain, None, gpu_now()),
        vec![TrailingBytes]
    );
}

#[test]
fn gpu_chains_of_another_device_or_root_are_refused() {
    let raw = read("gpu", "h100-coco-ci-trustee", "attestation_report.bin");
    let other = read("gpu", "h100-nvtrust-sample", "cert_chain.pem");
    // Another GPU's (genuine) chain: its leaf key did not sign this report.
    assert_eq!(
        gpu_codes(&raw, &other, None, gpu_now()),
        vec![EvidenceSignatureInvalid]
    );
    // Another vendor's root as the whole chain: a CA cannot sign evidence.
    let intel = std::fs::read(testdata().join("tdx/intel_sgx_root_ca.pem")).unwrap();
    assert_eq!(
        gpu_codes(&raw, &intel, None, gpu_now()),
        vec![CertificateChainInvalid]
    );
    let own = String::from_utf8(read("gpu", "h100-coco-ci-trustee", "cert_chain.pem")).unwrap();
    let blocks = gpu_blocks(&own);
    // A chain that stops before NVIDIA's root and its GH100 identity CA.
    assert_eq!(
        gpu_codes(&raw, blocks[..3].concat().as_bytes(), None, gpu_now()),
        vec![UntrustedRoot]
    );
    // Intermediates out of order.
    let mut blocks = blocks;
    blocks.swap(1, 2);
    assert_eq!(
        gpu_codes(&raw, blocks.concat().as_bytes(), None, gpu_now()),
        vec![CertificateChainInvalid]
    );
    // Before the device certificates were issued.
    let early = Timestamp::parse_rfc3339("2019-01-01T00:00:00Z").unwrap();
    assert_eq!(
        gpu_codes(&raw, own.as_bytes(), None, early),
        vec![CertificateExpired]
    );
    // A nonce the verifier did not send.
    assert_eq!(
        gpu_codes(&raw, own.as_bytes(), Some(&[9; 32]), gpu_now()),
        vec![NonceMismatch]
    );
}

fn gpu_blocks(pem: &str) -> Vec<&str> {
    pem.split_inclusive("-----END CERTIFICATE-----")
        .filter(|b| b.contains("BEGIN"))
        .collect()
}

fn gpu_chain_error(chain: &str) -> gpu::GpuError {
    let raw = read("gpu", "h100-coco-ci-trustee", "attestation_report.bin");
    gpu::verify_report(&raw, chain.as_bytes(), None, gpu_now()).unwrap_err()
}

#[test]
fn gpu_chains_longer_than_nvidias_are_refused_before_any_signature_check() {
    let own = String::from_utf8(read("gpu", "h100-coco-ci-trustee", "cert_chain.pem")).unwrap();
    let root = gpu_blocks(&own)[4].to_owned();
    // Thousands of copies of the pinned root: refused on the count alone.
    let huge = own.clone() + &root.repeat(2_000);
    match gpu_chain_error(&huge) {
        gpu::GpuError::Chain(CertError::ChainTooLong { found, max }) => {
            assert_eq!((found, max), (2_005, gpu::MAX_CHAIN_CERTS));
        }
        other => panic!("{other:?}"),
    }
    let one_more = own.clone() + &root;
    assert!(matches!(
        gpu_chain_error(&one_more),
        gpu::GpuError::Chain(CertError::ChainTooLong { found: 6, .. })
    ));
    let raw = read("gpu", "h100-coco-ci-trustee", "attestation_report.bin");
    assert_eq!(
        gpu_codes(&raw, huge.as_bytes(), None, gpu_now()),
        vec![CertificateChainInvalid]
    );
}

#[test]
fn gpu_chain_links_must_be_cas_allowed_to_issue_and_the_leaf_a_signing_key() {
    let own = String::from_utf8(read("gpu", "h100-coco-ci-trustee", "cert_chain.pem")).unwrap();
    let b = gpu_blocks(&own);
    let constraint = |chain: &str, at: usize| match gpu_chain_error(chain) {
        gpu::GpuError::ChainInvalid { index, error } => {
            assert_eq!(index, at, "{error}");
            error
        }
        other => panic!("{other:?}"),
    };
    // The device leaf (not a CA) as the issuer of another certificate.
    let leaf_issues = [b[0], b[0], b[2], b[3], b[4]].concat();
    assert!(matches!(
        constraint(&leaf_issues, 1),
        CertError::BasicConstraints { .. }
    ));
    // A CA (the BROM certificate) as the leaf that signs the report.
    let ca_signs = [b[1], b[2], b[3], b[4]].concat();
    assert!(matches!(
        constraint(&ca_signs, 0),
        CertError::BasicConstraints { .. }
    ));
    // AMD's ASK (pathLenConstraint 0) with a CA certificate below it.
    let ask = String::from_utf8(read("snp", "milan-v2-virtee", "ask.pem")).unwrap();
    let too_deep = [b[0], b[1], &ask, b[3], b[4]].concat();
    let error = constraint(&too_deep, 2);
    assert!(
        matches!(error, CertError::BasicConstraints { ref detail, .. } if detail.contains("path length")),
        "{error}"
    );
    // A CA whose key usage omits keyCertSign.
    let no_cert_sign = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/ca-without-keycertsign.pem"),
    )
    .unwrap();
    let error = constraint(&[b[0], &no_cert_sign, b[2], b[3], b[4]].concat(), 1);
    assert!(
        matches!(
            error,
            CertError::KeyUsage {
                needed: "keyCertSign",
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn snp_chain_links_need_amds_exact_rsa_pss_parameters_and_signature() {
    let name = "genoa-v5-oak";
    let at = verify_at(&expected("snp", name));
    let raw = read("snp", name, "report.bin");
    let ask = snp_file(name, &["ask"]);
    let vcek = snp_file(name, &["vcek"]);
    let link_error = |vcek: &[u8]| match snp::verify_report(
        &raw,
        &SnpCertChain::parse(None, &ask, vcek).unwrap(),
        at,
    ) {
        Err(snp::SnpError::ChainInvalid { detail, .. }) => detail,
        other => panic!("{other:?}"),
    };
    // Salt length 48 -> 32, in both algorithm identifiers (TBS and outer).
    let salt48 = [0xa2, 0x03, 0x02, 0x01, 0x30];
    let mut salt32 = vcek.clone();
    let mut found = 0;
    for i in 0..salt32.len() - salt48.len() {
        if salt32[i..i + 5] == salt48 {
            salt32[i + 4] = 0x20;
            found += 1;
        }
    }
    assert_eq!(found, 2);
    let detail = link_error(&salt32);
    assert!(detail.contains("RSASSA-PSS"), "{detail}");
    // One bit of the ASK's signature over the VCEK.
    let mut flipped = vcek.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let detail = link_error(&flipped);
    assert!(detail.contains("not signed by"), "{detail}");
}

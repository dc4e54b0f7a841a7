//! Verification cost per platform with collateral at hand, and TDX side by
//! side with calling `dcap-qvl` directly on the same quote and collateral.
//!
//! Run: `scripts/bench-attestation.sh` (prints the table for BENCHMARKS.md).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use cloister_attestation::bundle::{self, Base64Bytes, BundleCerts, BundleOptions, EvidenceBundle};
use cloister_attestation::snp::{self, SnpCertChain};
use cloister_attestation::tdx::{self, TdxCollateral};
use cloister_attestation::{Platform, Policy, Timestamp, gpu, roots, simulated};
use criterion::{Criterion, criterion_group, criterion_main};

fn read(path: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(path),
    )
    .unwrap()
}

fn at(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

/// The collateral JSON as `dcap-qvl`'s own type, built here so the direct
/// call gets exactly what it would get from any caller.
fn dcap_collateral(json: &[u8]) -> dcap_qvl::QuoteCollateralV3 {
    let v: serde_json::Value = serde_json::from_slice(json).unwrap();
    let s = |k: &str| v[k].as_str().unwrap().to_owned();
    let h = |k: &str| hex::decode(v[k].as_str().unwrap()).unwrap();
    dcap_qvl::QuoteCollateralV3 {
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
    }
}

fn tdx(c: &mut Criterion) {
    for (name, when) in [
        ("v4-uptodate-b0c06f-dcapqvl", "2025-07-01T00:00:00Z"),
        ("v5-uptodate-90c06f-gotdxguest", "2026-03-01T00:00:00Z"),
    ] {
        let quote = read(&format!("tdx/{name}/quote.bin"));
        let json = read(&format!("tdx/{name}/collateral.json"));
        let ours = TdxCollateral::from_json(&json).unwrap();
        let theirs = dcap_collateral(&json);
        let now = at(when);
        let mut group = c.benchmark_group(format!("tdx/{name}"));
        group.bench_function("dcap-qvl direct", |b| {
            let verifier =
                dcap_qvl::verify::QuoteVerifier::new(roots::INTEL_SGX_ROOT_CA_DER.to_vec())
                    .allow_debug(true);
            b.iter(|| {
                verifier
                    .verify(black_box(&quote), &theirs, now.unix())
                    .unwrap()
            })
        });
        group.bench_function("cloister parse + pck_chain", |b| {
            b.iter(|| {
                let q = tdx::Quote::parse(black_box(&quote)).unwrap();
                q.pck_chain().unwrap()
            })
        });
        group.bench_function("cloister verify_quote", |b| {
            b.iter(|| tdx::verify_quote(black_box(&quote), &ours, now).unwrap())
        });
        group.bench_function("cloister appraise", |b| {
            b.iter(|| {
                let v =
                    tdx::appraise(black_box(&quote), &ours, &Policy::strict(), now, None).unwrap();
                assert!(v.accepted);
                v
            })
        });
        group.finish();
    }
}

fn snp(c: &mut Criterion) {
    let mut group = c.benchmark_group("snp");
    for (name, vek, ask, when) in [
        (
            "genoa-v5-oak",
            "vcek.der",
            "ask.pem",
            "2026-01-01T00:00:00Z",
        ),
        (
            "milan-v3-vlek-aws-trustee",
            "vlek.der",
            "asvk.pem",
            "2025-06-01T00:00:00Z",
        ),
    ] {
        let report = read(&format!("snp/{name}/report.bin"));
        let chain = SnpCertChain::parse(
            Some(&read(&format!("snp/{name}/ark.pem"))),
            &read(&format!("snp/{name}/{ask}")),
            &read(&format!("snp/{name}/{vek}")),
        )
        .unwrap();
        let now = at(when);
        group.bench_function(format!("{name} verify_report"), |b| {
            b.iter(|| snp::verify_report(black_box(&report), &chain, now).unwrap())
        });
        // Baseline: the two RSA-PSS links alone through the `sev` crate's
        // pure-Rust backend, which verify_report used before `ring`.
        let sev_cert = |file: &str| {
            let bytes = read(&format!("snp/{name}/{file}"));
            if file.ends_with(".pem") {
                sev::certs::snp::Certificate::from_pem(&bytes).unwrap()
            } else {
                sev::certs::snp::Certificate::from_der(&bytes).unwrap()
            }
        };
        let (ark, ask_cert, vek_cert) = (sev_cert("ark.pem"), sev_cert(ask), sev_cert(vek));
        group.bench_function(format!("{name} sev crate RSA-PSS links only"), |b| {
            b.iter(|| {
                use sev::certs::snp::Verifiable as _;
                (&ark, black_box(&ask_cert)).verify().unwrap();
                (&ask_cert, black_box(&vek_cert)).verify().unwrap();
            })
        });
    }
    group.finish();
}

fn gpu_and_bundle(c: &mut Criterion) {
    let report = read("gpu/h100-nvtrust-sample/attestation_report.bin");
    let chain = read("gpu/h100-nvtrust-sample/cert_chain.pem");
    let now = at("2026-01-01T00:00:00Z");
    let mut group = c.benchmark_group("gpu");
    group.bench_function("h100-nvtrust-sample verify_report", |b| {
        b.iter(|| gpu::verify_report(black_box(&report), &chain, None, now).unwrap())
    });
    group.finish();

    let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let mut b = EvidenceBundle {
        version: 1,
        platform: Platform::Simulated,
        evidence: Base64Bytes(Vec::new()),
        certs: BundleCerts::default(),
        gpu: vec![bundle::GpuEvidence {
            report: Base64Bytes(report.clone()),
            cert_chain: String::from_utf8(chain.clone()).unwrap(),
        }],
        identity: serde_json::json!({"hpke_key_config": "AA==", "signer": "0x00",
            "model": {"id": "m", "weights_sha256": "00"}, "app": {"version": "0", "git": "0"}}),
        nonce: "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb".into(),
    };
    let rd = b.expected_report_data().unwrap();
    b.evidence = Base64Bytes(simulated::encode(&[0; 48], &rd, &key));
    let json = b.to_json();
    let policy = Policy::from_toml("[simulated]\nallow = true\n").unwrap();
    let mut group = c.benchmark_group("bundle");
    group.bench_function("simulated + 1 GPU, parse and appraise", |bench| {
        bench.iter(|| {
            let parsed = EvidenceBundle::from_json(black_box(json.as_bytes())).unwrap();
            let v = bundle::appraise(&parsed, &policy, now, &BundleOptions::default()).unwrap();
            assert!(v.accepted);
            v
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(60)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6));
    targets = tdx, snp, gpu_and_bundle
}
criterion_main!(benches);

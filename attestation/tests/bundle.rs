//! Evidence bundles: the binding of nonce, identity and GPU reports into the
//! report data, and the bundle-level checks, on simulated evidence carrying
//! real GPU reports and on real TDX/SNP evidence.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use cloister_attestation::bundle::{
    self, Base64Bytes, BundleCerts, BundleError, BundleOptions, EvidenceBundle, GpuEvidence,
};
use cloister_attestation::{Platform, Policy, ReasonCode, Timestamp, binding, simulated, snp};
use common::{expected, read, testdata, verify_at};
use serde_json::json;

fn identity() -> serde_json::Value {
    json!({
        "hpke_key_config": "AQAgAAEAAQ==",
        "signer": "0x1111111111111111111111111111111111111111",
        "model": { "id": "smollm2-135m", "weights_sha256": "ab".repeat(32) },
        "app": { "version": "0.1.0", "git": "0000000" },
    })
}

fn key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap()
}

fn gpu_evidence(name: &str) -> GpuEvidence {
    GpuEvidence {
        report: Base64Bytes(read("gpu", name, "attestation_report.bin")),
        cert_chain: String::from_utf8(read("gpu", name, "cert_chain.pem")).unwrap(),
    }
}

fn gpu_nonce(name: &str) -> String {
    expected("gpu", name)["expected"]["expected_nonce"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A simulated bundle whose evidence binds the given nonce, identity and GPUs.
fn simulated_bundle(
    nonce: &str,
    identity: serde_json::Value,
    gpu: Vec<GpuEvidence>,
) -> EvidenceBundle {
    let mut bundle = EvidenceBundle {
        version: 1,
        platform: Platform::Simulated,
        evidence: Base64Bytes(Vec::new()),
        certs: BundleCerts::default(),
        gpu,
        identity,
        nonce: nonce.to_owned(),
    };
    let report_data = bundle.expected_report_data().unwrap();
    bundle.evidence = Base64Bytes(simulated::encode(&[0x5a; 48], &report_data, &key()));
    bundle
}

fn dev_policy() -> Policy {
    Policy::from_toml("[simulated]\nallow = true\n").unwrap()
}

fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
}

#[test]
fn a_simulated_bundle_with_real_gpu_evidence_round_trips_through_json() {
    let name = "h100-nvtrust-sample";
    let original = simulated_bundle(&gpu_nonce(name), identity(), vec![gpu_evidence(name)]);
    let parsed = EvidenceBundle::from_json(original.to_json().as_bytes()).unwrap();
    assert_eq!(parsed, original);

    let nonce: [u8; 32] = hex::decode(gpu_nonce(name)).unwrap().try_into().unwrap();
    let options = BundleOptions {
        expected_nonce: Some(nonce),
        ..Default::default()
    };
    let v = bundle::appraise(&parsed, &dev_policy(), now(), &options).unwrap();
    assert!(v.accepted, "{:?} {:?}", v.reasons, v.gpus);
    assert!(v.simulated);
    assert_eq!(v.gpus.len(), 1);
    assert!(v.gpus[0].accepted);
    assert_eq!(v.facts["identity.model.id"], "smollm2-135m");
    assert!(v.not_checked.iter().any(|s| s.starts_with("simulated:")));
    assert!(v.not_checked.iter().any(|s| s.contains("RIM")));

    // The default policy refuses simulated evidence.
    let strict = bundle::appraise(&parsed, &Policy::strict(), now(), &options).unwrap();
    assert_eq!(strict.reason_codes(), vec![ReasonCode::SimulatedNotAllowed]);
}

#[test]
fn changing_any_bound_input_breaks_the_binding() {
    let name = "h100-nvtrust-sample";
    let good = simulated_bundle(&gpu_nonce(name), identity(), vec![gpu_evidence(name)]);
    let check = |bundle: &EvidenceBundle| {
        bundle::appraise(bundle, &dev_policy(), now(), &BundleOptions::default())
            .unwrap()
            .reason_codes()
    };
    assert!(check(&good).is_empty());

    let mut other_signer = good.clone();
    other_signer.identity["signer"] = json!("0x2222222222222222222222222222222222222222");
    assert_eq!(check(&other_signer), vec![ReasonCode::ReportDataMismatch]);

    let mut extra_field = good.clone();
    extra_field.identity["note"] = json!("added later");
    assert_eq!(check(&extra_field), vec![ReasonCode::ReportDataMismatch]);

    let mut no_gpu = good.clone();
    no_gpu.gpu.clear();
    assert_eq!(check(&no_gpu), vec![ReasonCode::ReportDataMismatch]);

    // Another (genuine) GPU report: the binding and its nonce both fail.
    let mut swapped = good.clone();
    swapped.gpu = vec![gpu_evidence("h100-coco-ci-trustee")];
    let codes = check(&swapped);
    assert!(codes.contains(&ReasonCode::ReportDataMismatch), "{codes:?}");
    assert!(codes.contains(&ReasonCode::NonceMismatch), "{codes:?}");

    // The same identity with its keys in another order keeps the binding.
    let reordered: serde_json::Value = serde_json::from_str(&format!(
        r#"{{"app": {{"git": "0000000", "version": "0.1.0"}},
            "model": {{"weights_sha256": "{}", "id": "smollm2-135m"}},
            "signer": "0x1111111111111111111111111111111111111111",
            "hpke_key_config": "AQAgAAEAAQ=="}}"#,
        "ab".repeat(32)
    ))
    .unwrap();
    assert_ne!(
        serde_json::to_string(&reordered).unwrap(),
        serde_json::to_string(&good.identity).unwrap()
    );
    let mut same = good.clone();
    same.identity = reordered;
    assert!(check(&same).is_empty());
}

#[test]
fn the_verifier_nonce_the_model_allowlist_and_required_gpus() {
    let nonce = "cd".repeat(32);
    let b = simulated_bundle(&nonce, identity(), Vec::new());
    let wrong = BundleOptions {
        expected_nonce: Some([0xab; 32]),
        ..Default::default()
    };
    let v = bundle::appraise(&b, &dev_policy(), now(), &wrong).unwrap();
    assert_eq!(v.reason_codes(), vec![ReasonCode::NonceMismatch]);

    let models = Policy::from_toml(&format!(
        "[simulated]\nallow = true\n[models]\nweights_sha256 = [\"{}\"]\n",
        "cd".repeat(32)
    ))
    .unwrap();
    let v = bundle::appraise(&b, &models, now(), &BundleOptions::default()).unwrap();
    assert_eq!(v.reason_codes(), vec![ReasonCode::ModelNotAllowed]);

    let gpus = Policy::from_toml("[simulated]\nallow = true\n[gpu]\nrequired = true\n").unwrap();
    let v = bundle::appraise(&b, &gpus, now(), &BundleOptions::default()).unwrap();
    assert_eq!(v.reason_codes(), vec![ReasonCode::GpuEvidenceMissing]);
}

#[test]
fn real_tdx_evidence_in_a_bundle_verifies_but_is_not_bound_to_this_identity() {
    let name = "v5-uptodate-90c06f-gotdxguest";
    let collateral: serde_json::Value =
        serde_json::from_slice(&read("tdx", name, "collateral.json")).unwrap();
    let b = EvidenceBundle {
        version: 1,
        platform: Platform::Tdx,
        evidence: Base64Bytes(read("tdx", name, "quote.bin")),
        certs: BundleCerts {
            tdx_collateral: Some(collateral),
            ..Default::default()
        },
        gpu: Vec::new(),
        identity: identity(),
        nonce: "00".repeat(32),
    };
    let b = EvidenceBundle::from_json(b.to_json().as_bytes()).unwrap();
    let v = bundle::appraise(
        &b,
        &Policy::strict(),
        verify_at(&expected("tdx", name)),
        &BundleOptions::default(),
    )
    .unwrap();
    // Every hardware check passes; only the binding to our identity fails.
    assert_eq!(v.tcb_status.as_deref(), Some("UpToDate"));
    assert_eq!(v.reason_codes(), vec![ReasonCode::ReportDataMismatch]);

    let mut bare = b.clone();
    bare.certs.tdx_collateral = None;
    let err =
        bundle::appraise(&bare, &Policy::strict(), now(), &BundleOptions::default()).unwrap_err();
    assert_eq!(err, BundleError::MissingCollateral);
}

/// A bundle around a real SNP report with its vector's VCEK, ASK and ARK
/// (not bound to `identity()`: the binding check fails, nothing else).
fn snp_bundle(name: &str) -> EvidenceBundle {
    let dir = testdata().join("snp").join(name);
    let pem = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    EvidenceBundle {
        version: 1,
        platform: Platform::SevSnp,
        evidence: Base64Bytes(read("snp", name, "report.bin")),
        certs: BundleCerts {
            vcek: Some(pem("vcek.pem")),
            ask: Some(pem("ask.pem")),
            ark: Some(pem("ark.pem")),
            ..Default::default()
        },
        gpu: Vec::new(),
        identity: identity(),
        nonce: "00".repeat(32),
    }
}

#[test]
fn real_snp_evidence_in_a_bundle_uses_the_bundle_certificates() {
    let name = "genoa-v3-azure-trustee";
    let b = snp_bundle(name);
    let v = bundle::appraise(
        &b,
        &Policy::strict(),
        verify_at(&expected("snp", name)),
        &BundleOptions::default(),
    )
    .unwrap();
    assert_eq!(v.platform, Platform::SevSnp);
    assert_eq!(v.reason_codes(), vec![ReasonCode::ReportDataMismatch]);

    let mut no_vcek = b.clone();
    no_vcek.certs.vcek = None;
    assert!(matches!(
        bundle::appraise(
            &no_vcek,
            &Policy::strict(),
            now(),
            &BundleOptions::default()
        ),
        Err(BundleError::MissingCertificate(_))
    ));
}

#[test]
fn malformed_bundles_are_typed_errors_and_bad_evidence_is_a_rejection() {
    let good = simulated_bundle(&"ab".repeat(32), identity(), Vec::new());
    let json: serde_json::Value = serde_json::from_str(&good.to_json()).unwrap();
    let with = |key: &str, value: serde_json::Value| {
        let mut j = json.clone();
        j[key] = value;
        EvidenceBundle::from_json(&serde_json::to_vec(&j).unwrap())
    };
    assert!(matches!(
        EvidenceBundle::from_json(b"{"),
        Err(BundleError::Json(_))
    ));
    assert!(matches!(
        with("version", json!(2)),
        Err(BundleError::UnsupportedVersion(2))
    ));
    assert!(matches!(
        with("nonce", json!("abc")),
        Err(BundleError::Nonce(_))
    ));
    assert!(matches!(
        with("evidence", json!("***")),
        Err(BundleError::Json(_))
    ));
    assert!(matches!(
        with("platform", json!("nvidia-gpu")),
        Err(BundleError::UnsupportedPlatform(_))
    ));
    assert!(matches!(
        with("identity", json!({"signer": 1})),
        Err(BundleError::Identity(_))
    ));

    // Evidence that does not parse is the node's fault: a rejection.
    let mut garbage = good.clone();
    garbage.evidence = Base64Bytes(b"not evidence".to_vec());
    let v = bundle::appraise(&garbage, &dev_policy(), now(), &BundleOptions::default()).unwrap();
    assert!(!v.accepted && v.simulated);
    assert_eq!(v.reason_codes(), vec![ReasonCode::MalformedEvidence]);
}

#[test]
fn binding_matches_the_documented_formula() {
    let b = simulated_bundle(
        &"01".repeat(32),
        identity(),
        vec![gpu_evidence("h100-nvtrust-sample")],
    );
    let nonce: [u8; 32] = [1; 32];
    let report = read("gpu", "h100-nvtrust-sample", "attestation_report.bin");
    assert_eq!(
        b.expected_report_data().unwrap(),
        binding::report_data(&nonce, &identity(), [report.as_slice()])
    );
}

#[test]
fn a_bundle_with_a_duplicate_key_anywhere_is_refused() {
    let bundle = simulated_bundle(&"42".repeat(32), identity(), Vec::new());
    let text = bundle.to_json();
    assert!(EvidenceBundle::from_json(text.as_bytes()).is_ok());
    // A fake signer first, the bound one last: a first-wins reader would
    // see the fake one, serde's last-wins reader the bound one.
    let bound = "\"signer\": \"0x1111111111111111111111111111111111111111\"";
    assert!(text.contains(bound), "{text}");
    let forked = text.replace(
        bound,
        &format!("\"signer\": \"0x2222222222222222222222222222222222222222\", {bound}"),
    );
    match EvidenceBundle::from_json(forked.as_bytes()) {
        Err(BundleError::Json(message)) => assert!(message.contains("duplicate key \"signer\"")),
        other => panic!("{other:?}"),
    }
    // At the top level too.
    let twice = text.replacen("\"version\": 1", "\"version\": 1, \"version\": 1", 1);
    assert!(matches!(
        EvidenceBundle::from_json(twice.as_bytes()),
        Err(BundleError::Json(_))
    ));
}

#[test]
fn an_amd_crl_in_a_bundle_or_from_the_verifier_is_checked() {
    let name = "genoa-v3-azure-trustee";
    let at = verify_at(&expected("snp", name));
    let mut b = snp_bundle(name);
    let v = bundle::appraise(&b, &Policy::strict(), at, &BundleOptions::default()).unwrap();
    assert!(
        v.not_checked.contains(&snp::CRL_NOT_CHECKED.to_owned()),
        "{:?}",
        v.not_checked
    );
    // A CRL that is not AMD's (a test ARK signed it) is refused as
    // collateral for another issuer, whether the bundle or the verifier
    // brings it.
    let synthetic = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let crl_pem = std::fs::read_to_string(synthetic.join("test-ark-crl.pem")).unwrap();
    b.certs.amd_crl = Some(crl_pem.clone());
    let b = EvidenceBundle::from_json(b.to_json().as_bytes()).unwrap();
    let v = bundle::appraise(&b, &Policy::strict(), at, &BundleOptions::default()).unwrap();
    assert!(
        v.has_reason(ReasonCode::CollateralMismatch),
        "{:?}",
        v.reasons
    );
    assert!(!v.not_checked.contains(&snp::CRL_NOT_CHECKED.to_owned()));
    let mut plain = b.clone();
    plain.certs.amd_crl = None;
    let crl = snp::AmdCrl::parse(crl_pem.as_bytes()).unwrap();
    let options = BundleOptions {
        amd_crl: Some(&crl),
        ..Default::default()
    };
    let v = bundle::appraise(&plain, &Policy::strict(), at, &options).unwrap();
    assert!(
        v.has_reason(ReasonCode::CollateralMismatch),
        "{:?}",
        v.reasons
    );
}

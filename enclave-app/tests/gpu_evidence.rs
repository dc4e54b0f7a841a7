//! GPU confidential-computing evidence in the node's bundles, collected
//! through NVML from a fake `libnvidia-ml` (compiled here from
//! `attestation/collect/tests/nvml-fake/fake_nvml.c`) that serves the
//! recorded H100 report and certificate chain of
//! `attestation/testdata/gpu/h100-nvtrust-sample`. That report answers one
//! nonce only, so only that nonce yields a bundle.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::Request;
use cloister_attestation::bundle::{self, BundleOptions};
use cloister_attestation::{Policy, Timestamp};
use common::*;
use tower::ServiceExt as _;

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../attestation/testdata/gpu/h100-nvtrust-sample")
}

fn recorded_nonce() -> [u8; 32] {
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sample().join("expected.json")).unwrap()).unwrap();
    hex::decode(expected["request"]["nonce"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

/// Compiles the fake NVML library serving the recorded evidence.
fn fake_nvml(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../attestation/collect/tests/nvml-fake/fake_nvml.c");
    let lib = dir.join("libnvidia-ml.so.1");
    let define = |name: &str, file: &str| format!("-D{name}=\"{}\"", sample().join(file).display());
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let output = std::process::Command::new(&cc)
        .args([
            "-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-shared", "-fPIC",
        ])
        .arg(define("FAKE_NVML_REPORT_PATH", "attestation_report.bin"))
        .arg(define("FAKE_NVML_CHAIN_PATH", "cert_chain.pem"))
        .arg("-o")
        .arg(&lib)
        .arg(&source)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run the C compiler {cc:?} (Debian: apt-get install gcc): {e}")
        });
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    lib
}

#[tokio::test]
async fn with_gpu_required_the_bundle_carries_verifiable_gpu_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let lib = fake_nvml(dir.path());
    let (state, _model) =
        tiny_node(&["--gpu", "required", "--nvml-lib", lib.to_str().unwrap()]).await;
    let app = cloister_enclave::server::app(state.clone());
    let nonce = recorded_nonce();
    let b = bundle(&app, nonce).await;
    assert_eq!(b.gpu.len(), 1);
    assert_eq!(b.identity["gpu"]["mode"], "required");
    assert_eq!(b.identity["gpu"]["devices"].as_array().unwrap().len(), 1);
    assert_eq!(
        b.gpu[0].report.0,
        std::fs::read(sample().join("attestation_report.bin")).unwrap()
    );

    // A verifier that requires GPU evidence accepts it: GPU signature, chain
    // to the pinned NVIDIA root, nonce, and the report bound into the
    // (simulated) platform evidence.
    let policy = Policy::from_toml("[simulated]\nallow = true\n[gpu]\nrequired = true\n").unwrap();
    let options = BundleOptions {
        expected_nonce: Some(nonce),
        ..BundleOptions::default()
    };
    let verdict = bundle::appraise(&b, &policy, Timestamp::now(), &options).unwrap();
    assert!(verdict.accepted, "{verdict:?}");
    assert_eq!(verdict.gpus.len(), 1);

    // Dropping the GPU evidence breaks the binding.
    let mut stripped = b.clone();
    stripped.gpu.clear();
    let verdict = bundle::appraise(&stripped, &policy, Timestamp::now(), &options).unwrap();
    assert!(!verdict.accepted);

    // Any other nonce gets the recorded (stale) report from the "GPU": the
    // node refuses to serve it rather than bundle stale evidence.
    let response = app
        .oneshot(
            Request::get(format!("/attestation?nonce={}", "00".repeat(32)))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(response.status().is_server_error(), "{}", response.status());
}

#[tokio::test]
async fn gpu_required_without_nvml_fails_at_start_and_auto_on_cpu_is_off() {
    let model = tiny_model();
    let missing = model.path().join("no-such-libnvidia-ml.so");
    let err = cloister_enclave::prepare(&args(
        model.path(),
        &["--gpu", "required", "--nvml-lib", missing.to_str().unwrap()],
    ))
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("no-such-libnvidia-ml.so"), "{err}");
    assert!(err.contains("--gpu off"), "{err}");

    let (state, _model) = tiny_node(&[]).await;
    let b = bundle(&cloister_enclave::server::app(state), [3; 32]).await;
    assert!(b.gpu.is_empty());
    assert_eq!(b.identity["gpu"]["mode"], "off");
}

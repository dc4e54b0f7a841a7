//! The evidence endpoint: bundles bind the verifier's nonce and the node's
//! identity, verify under a policy that allows simulated evidence and fail
//! under the default; the configfs-tsm path against an emulated directory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
#[allow(dead_code, unreachable_pub)]
#[path = "../../attestation/collect/tests/common/tsm_emulator.rs"]
mod tsm_emulator;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cloister_attestation::bundle::{self, BundleOptions};
use cloister_attestation::{Platform, Policy, ReasonCode, Timestamp, binding};
use common::*;
use tower::ServiceExt as _;

#[tokio::test]
async fn the_bundle_verifies_when_simulated_evidence_is_allowed_and_not_otherwise() {
    let (state, _model) = tiny_node(&[]).await;
    let app = cloister_enclave::server::app(state.clone());
    let nonce = [0x42; 32];
    let b = bundle(&app, nonce).await;
    assert_eq!(b.platform, Platform::Simulated);
    assert_eq!(b.nonce, hex::encode(nonce));
    let identity = b.typed_identity().unwrap();
    assert_eq!(identity.signer, state.keys.signer_address().to_string());
    assert_eq!(identity.model.id, "tiny");
    assert_eq!(identity.model.weights_sha256.len(), 64);

    let options = BundleOptions {
        expected_nonce: Some(nonce),
        ..Default::default()
    };
    let dev = Policy::from_toml("[simulated]\nallow = true\n").unwrap();
    let v = bundle::appraise(&b, &dev, Timestamp::now(), &options).unwrap();
    assert!(v.accepted, "{:?}", v.reasons);
    assert!(v.simulated);

    let strict = bundle::appraise(&b, &Policy::strict(), Timestamp::now(), &options).unwrap();
    assert_eq!(strict.reason_codes(), vec![ReasonCode::SimulatedNotAllowed]);

    // A bundle for one nonce does not answer another.
    let other = BundleOptions {
        expected_nonce: Some([0x43; 32]),
        ..Default::default()
    };
    let v = bundle::appraise(&b, &dev, Timestamp::now(), &other).unwrap();
    assert_eq!(v.reason_codes(), vec![ReasonCode::NonceMismatch]);
}

#[tokio::test]
async fn a_missing_or_malformed_nonce_is_a_clear_400() {
    let (state, _model) = tiny_node(&[]).await;
    let app = cloister_enclave::server::app(state);
    for uri in [
        "/attestation",
        "/attestation?nonce=abc",
        "/attestation?nonce=zz",
    ] {
        let response = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{uri}");
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(json["error"]["message"].as_str().unwrap().contains("nonce"));
    }
}

#[tokio::test]
async fn with_configfs_tsm_the_bundle_carries_the_quote_the_kernel_made_for_our_binding() {
    // A temporary directory laid out like configfs-tsm with a TDX provider;
    // its "quote" is a recognisable blob embedding the 64 bytes written.
    let emulator = tsm_emulator::Emulator::start(tsm_emulator::Config::new("tdx_guest", |rd| {
        let mut quote = b"FAKE-TDX-QUOTE:".to_vec();
        quote.extend_from_slice(rd);
        quote
    }));
    let model = tiny_model();
    let root = emulator.root().to_str().unwrap().to_owned();
    let args = args(
        model.path(),
        &[
            "--tee",
            "tdx",
            "--configfs-root",
            &root,
            "--chain-id",
            "1",
            "--settlement-contract",
            "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        ],
    );
    let state = cloister_enclave::prepare(&args).await.unwrap();
    let app = cloister_enclave::server::app(state);

    let nonce = [9; 32];
    let b = bundle(&app, nonce).await;
    assert_eq!(b.platform, Platform::Tdx);
    let expected = binding::report_data(&nonce, &b.identity, std::iter::empty::<&[u8]>());
    assert_eq!(b.evidence.0.get(..15).unwrap(), b"FAKE-TDX-QUOTE:");
    assert_eq!(b.evidence.0.get(15..).unwrap(), &expected[..]);
    let seen = emulator.seen();
    assert_eq!(seen.last().unwrap().inblob, expected.to_vec());
}

#[tokio::test]
async fn asking_for_a_tee_the_machine_lacks_fails_at_start_with_advice() {
    let model = tiny_model();
    let empty = tempfile::tempdir().unwrap();
    let args = args(
        model.path(),
        &[
            "--tee",
            "auto",
            "--configfs-root",
            empty.path().join("none").to_str().unwrap(),
            "--chain-id",
            "1",
            "--settlement-contract",
            "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        ],
    );
    let err = cloister_enclave::prepare(&args)
        .await
        .unwrap_err()
        .to_string();
    // This machine may or may not have /dev/sev-guest; CI machines do not.
    if !std::path::Path::new("/dev/sev-guest").exists()
        && !std::path::Path::new("/dev/tdx_guest").exists()
    {
        assert!(err.contains("--tee simulated"), "{err}");
    }
}

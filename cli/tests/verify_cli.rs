//! `cloister verify` as an auditor runs it: exit status 0 accepted, 1
//! rejected, 2 unusable input; `--json` carries the verdict fields.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cloister_attestation::bundle::{Base64Bytes, BundleCerts, EvidenceBundle};
use cloister_attestation::{Platform, simulated};

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../attestation/testdata")
        .join(path)
}

fn cloister(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(args)
        .output()
        .unwrap()
}

fn arg(path: PathBuf) -> String {
    path.to_str().unwrap().to_owned()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn tdx(name: &str, extra: &[&str]) -> Output {
    let quote = arg(data(&format!("tdx/{name}/quote.bin")));
    let coll = arg(data(&format!("tdx/{name}/collateral.json")));
    let mut args = vec!["verify", "tdx", &quote, "--collateral", &coll];
    args.extend_from_slice(extra);
    cloister(&args)
}

#[test]
fn tdx_exit_status_follows_the_verdict() {
    let ok = tdx(
        "v4-uptodate-b0c06f-dcapqvl",
        &["--at", "2025-07-01T00:00:00Z"],
    );
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let table = String::from_utf8(ok.stdout).unwrap();
    assert!(table.starts_with("ACCEPTED: tdx evidence"), "{table}");
    assert!(table.contains("UpToDate") && table.contains("mrtd"));
    // The default policy pins no code: the line right under the decision
    // says so.
    let second = table.lines().nth(1).unwrap();
    assert!(
        second.contains("!!") && second.contains("measurements not pinned"),
        "{table}"
    );

    let old = tdx(
        "v4-outofdate-00806f-automata",
        &["--at", "2025-03-01T00:00:00Z", "--json"],
    );
    assert_eq!(old.status.code(), Some(1));
    let v = json(&old);
    assert_eq!(v["accepted"], false);
    assert_eq!(v["platform"], "tdx");
    assert_eq!(v["tcb_status"], "OutOfDate");
    assert_eq!(v["advisory_ids"].as_array().unwrap().len(), 3);
    assert_eq!(v["reasons"][0]["code"], "tcb_status_not_accepted");
    assert!(
        v["reasons"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("OutOfDate")
    );
    assert_eq!(v["measurements"]["mrtd"].as_str().unwrap().len(), 96);

    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[tdx]\naccept_tcb = [\"UpToDate\", \"OutOfDate\"]\n",
    )
    .unwrap();
    let accepted = tdx(
        "v4-outofdate-00806f-automata",
        &[
            "--at",
            "2025-03-01T00:00:00Z",
            "--policy",
            policy.to_str().unwrap(),
        ],
    );
    assert_eq!(accepted.status.code(), Some(0));

    let late = tdx(
        "v4-uptodate-b0c06f-dcapqvl",
        &["--at", "2030-01-01T00:00:00Z", "--json"],
    );
    assert_eq!(late.status.code(), Some(1));
    assert_eq!(json(&late)["reasons"][0]["code"], "collateral_expired");
}

#[test]
fn the_sgx_quote_is_rejected_as_tdx_evidence() {
    let quote = arg(data("sgx/v3-sgx-config-and-sw-hardening-dcapqvl/quote.bin"));
    let coll = arg(data(
        "sgx/v3-sgx-config-and-sw-hardening-dcapqvl/collateral.json",
    ));
    let out = cloister(&[
        "verify",
        "tdx",
        &quote,
        "--collateral",
        &coll,
        "--at",
        "2025-07-01T00:00:00Z",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["platform"], "sgx");
    assert_eq!(v["reasons"][0]["code"], "wrong_platform");
}

#[test]
fn unusable_input_exits_2_with_a_message_naming_the_problem() {
    let missing = tdx("does-not-exist", &[]);
    assert_eq!(missing.status.code(), Some(2));
    let err = String::from_utf8(missing.stderr).unwrap();
    assert!(
        err.contains("cannot read quote") && err.contains("does-not-exist"),
        "{err}"
    );

    // Collateral given as the quote.
    let coll = arg(data("tdx/v4-uptodate-b0c06f-dcapqvl/collateral.json"));
    let out = cloister(&["verify", "tdx", &coll, "--collateral", &coll, "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v = json(&out);
    assert_eq!(v["error"]["code"], "unusable_input");
    assert!(
        v["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("not a DCAP quote")
    );

    let bad_time = tdx("v4-uptodate-b0c06f-dcapqvl", &["--at", "last week"]);
    assert_eq!(bad_time.status.code(), Some(2));
    assert!(
        String::from_utf8(bad_time.stderr)
            .unwrap()
            .contains("RFC 3339")
    );

    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("typo.toml");
    std::fs::write(&policy, "[tdx]\nalow_debug = true\n").unwrap();
    let typo = tdx(
        "v4-uptodate-b0c06f-dcapqvl",
        &["--policy", policy.to_str().unwrap()],
    );
    assert_eq!(typo.status.code(), Some(2));
    assert!(
        String::from_utf8(typo.stderr)
            .unwrap()
            .contains("alow_debug")
    );

    let bad_hex = tdx("v4-uptodate-b0c06f-dcapqvl", &["--report-data", "xyz"]);
    assert_eq!(bad_hex.status.code(), Some(2));
}

#[test]
fn snp_with_vcek_and_with_vlek() {
    let dir = "snp/genoa-v5-oak";
    let out = cloister(&[
        "verify",
        "snp",
        &arg(data(&format!("{dir}/report.bin"))),
        "--vcek",
        &arg(data(&format!("{dir}/vcek.der"))),
        "--ask",
        &arg(data(&format!("{dir}/ask.pem"))),
        "--ark",
        &arg(data(&format!("{dir}/ark.pem"))),
        "--at",
        "2026-01-01T00:00:00Z",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["platform"], "sev-snp");
    assert_eq!(v["facts"]["product"], "Genoa");

    let dir = "snp/milan-v3-vlek-aws-trustee";
    let out = cloister(&[
        "verify",
        "snp",
        &arg(data(&format!("{dir}/report.bin"))),
        "--vlek",
        &arg(data(&format!("{dir}/vlek.der"))),
        "--asvk",
        &arg(data(&format!("{dir}/asvk.pem"))),
        "--at",
        "2025-06-01T00:00:00Z",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let dir = "snp/milan-v2-debug-policy-gosevguest";
    let out = cloister(&[
        "verify",
        "snp",
        &arg(data(&format!("{dir}/report.bin"))),
        "--vcek",
        &arg(data(&format!("{dir}/vcek.der"))),
        "--ask",
        &arg(data(&format!("{dir}/ask.pem"))),
        "--at",
        "2025-01-01T00:00:00Z",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["reasons"][0]["code"], "debug_enabled");

    // --vcek or --vlek is required.
    let out = cloister(&[
        "verify",
        "snp",
        &arg(data(&format!("{dir}/report.bin"))),
        "--ask",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn gpu_with_and_without_the_right_nonce() {
    let dir = "gpu/h100-nvtrust-sample";
    let report = arg(data(&format!("{dir}/attestation_report.bin")));
    let chain = arg(data(&format!("{dir}/cert_chain.pem")));
    let nonce = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";
    let ok = cloister(&[
        "verify", "gpu", &report, "--chain", &chain, "--nonce", nonce,
    ]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let table = String::from_utf8(ok.stdout).unwrap();
    assert!(
        table.contains("not checked") && table.contains("RIM"),
        "{table}"
    );

    let wrong = cloister(&[
        "verify",
        "gpu",
        &report,
        "--chain",
        &chain,
        "--nonce",
        &"00".repeat(32),
        "--json",
    ]);
    assert_eq!(wrong.status.code(), Some(1));
    assert_eq!(json(&wrong)["reasons"][0]["code"], "nonce_mismatch");
}

#[test]
fn bundles_need_a_policy_that_allows_simulated_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let key = p256::ecdsa::SigningKey::from_slice(&[3u8; 32]).unwrap();
    let mut bundle = EvidenceBundle {
        version: 1,
        platform: Platform::Simulated,
        evidence: Base64Bytes(Vec::new()),
        certs: BundleCerts::default(),
        gpu: Vec::new(),
        identity: serde_json::json!({
            "hpke_key_config": "AA==", "signer": "0x0000000000000000000000000000000000000001",
            "model": {"id": "m", "weights_sha256": "00"}, "app": {"version": "0", "git": "0"}
        }),
        nonce: "42".repeat(32),
    };
    let rd = bundle.expected_report_data().unwrap();
    bundle.evidence = Base64Bytes(simulated::encode(&[0; 48], &rd, &key));
    let path = dir.path().join("bundle.json");
    std::fs::write(&path, bundle.to_json()).unwrap();
    let policy = dir.path().join("dev.toml");
    std::fs::write(&policy, "[simulated]\nallow = true\n").unwrap();
    let path = path.to_str().unwrap();

    let strict = cloister(&["verify", "bundle", path, "--any-nonce", "--json"]);
    assert_eq!(strict.status.code(), Some(1));
    let v = json(&strict);
    assert_eq!(v["simulated"], true);
    assert_eq!(v["reasons"][0]["code"], "simulated_not_allowed");
    assert!(
        v["not_checked"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().starts_with("freshness")),
        "{v}"
    );

    let dev = cloister(&[
        "verify",
        "bundle",
        path,
        "--policy",
        policy.to_str().unwrap(),
        "--nonce",
        &"42".repeat(32),
    ]);
    assert_eq!(
        dev.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&dev.stdout)
    );
    assert!(String::from_utf8(dev.stdout).unwrap().contains("SIMULATED"));

    let other_nonce = cloister(&[
        "verify",
        "bundle",
        path,
        "--policy",
        policy.to_str().unwrap(),
        "--nonce",
        &"43".repeat(32),
        "--json",
    ]);
    assert_eq!(other_nonce.status.code(), Some(1));
    assert_eq!(json(&other_nonce)["reasons"][0]["code"], "nonce_mismatch");

    std::fs::write(dir.path().join("broken.json"), "{\"version\": 1}").unwrap();
    let broken = cloister(&[
        "verify",
        "bundle",
        dir.path().join("broken.json").to_str().unwrap(),
        "--any-nonce",
    ]);
    assert_eq!(broken.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&broken.stderr).contains("not an evidence bundle"));
}

#[test]
fn freshness_must_be_explicit_for_gpu_reports_and_bundles() {
    let dir = "gpu/h100-nvtrust-sample";
    let report = arg(data(&format!("{dir}/attestation_report.bin")));
    let chain = arg(data(&format!("{dir}/cert_chain.pem")));
    let silent = cloister(&["verify", "gpu", &report, "--chain", &chain]);
    assert_eq!(silent.status.code(), Some(2));
    let message = String::from_utf8_lossy(&silent.stderr);
    assert!(
        message.contains("--nonce")
            && message.contains("--any-nonce")
            && message.contains("replay"),
        "{message}"
    );
    let silent_json = cloister(&["verify", "gpu", &report, "--chain", &chain, "--json"]);
    assert_eq!(json(&silent_json)["error"]["code"], "unusable_input");

    let any = cloister(&["verify", "gpu", &report, "--chain", &chain, "--any-nonce"]);
    assert_eq!(any.status.code(), Some(0));
    let table = String::from_utf8(any.stdout).unwrap();
    assert!(table.contains("freshness"), "{table}");

    let both = cloister(&[
        "verify",
        "gpu",
        &report,
        "--chain",
        &chain,
        "--any-nonce",
        "--nonce",
        &"00".repeat(32),
    ]);
    assert_eq!(both.status.code(), Some(2));

    let bundle = cloister(&["verify", "bundle", "does-not-matter.json"]);
    assert_eq!(bundle.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bundle.stderr).contains("--any-nonce"));
}

#[test]
fn help_teaches_the_exit_statuses() {
    let help = cloister(&["verify", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8(help.stdout).unwrap();
    for sub in ["tdx", "snp", "gpu", "bundle"] {
        assert!(text.contains(sub), "{text}");
    }
    assert!(text.contains("Exit status"), "{text}");
}

#[test]
fn policy_platforms_and_pins_show_next_to_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    let name = "v4-uptodate-b0c06f-dcapqvl";
    let at = ["--at", "2025-07-01T00:00:00Z"];
    let mrtd = json(&tdx(name, &[at[0], at[1], "--json"]))["measurements"]["mrtd"]
        .as_str()
        .unwrap()
        .to_owned();

    let snp_only = dir.path().join("snp-only.toml");
    std::fs::write(&snp_only, "platforms = [\"sev-snp\"]\n").unwrap();
    let refused = tdx(
        name,
        &[
            at[0],
            at[1],
            "--policy",
            snp_only.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(json(&refused)["reasons"][0]["code"], "platform_not_allowed");

    let pinned = dir.path().join("pinned.toml");
    std::fs::write(&pinned, format!("[tdx]\nmrtd = [\"{mrtd}\"]\n")).unwrap();
    let ok = tdx(name, &[at[0], at[1], "--policy", pinned.to_str().unwrap()]);
    assert_eq!(ok.status.code(), Some(0));
    let table = String::from_utf8(ok.stdout).unwrap();
    assert!(!table.contains("not pinned"), "{table}");

    let snp = "snp/milan-v2-virtee";
    let out = cloister(&[
        "verify",
        "snp",
        &arg(data(&format!("{snp}/report.bin"))),
        "--vcek",
        &arg(data(&format!("{snp}/vcek.der"))),
        "--ask",
        &arg(data(&format!("{snp}/ask.pem"))),
        "--at",
        "2024-06-01T00:00:00Z",
    ]);
    let table = String::from_utf8(out.stdout).unwrap();
    let first = table.lines().next().unwrap();
    assert!(
        first.contains("sev-snp") && first.contains("VMPL"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .nth(1)
            .unwrap()
            .contains("measurements not pinned"),
        "{table}"
    );
}

#[test]
fn snp_with_an_amd_crl_that_is_not_the_arks() {
    let dir = "snp/genoa-v5-oak";
    let crl =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../attestation/tests/data/test-ark-crl.der");
    let report = arg(data(&format!("{dir}/report.bin")));
    let vcek = arg(data(&format!("{dir}/vcek.der")));
    let ask = arg(data(&format!("{dir}/ask.pem")));
    let base = [
        "verify",
        "snp",
        &report,
        "--vcek",
        &vcek,
        "--ask",
        &ask,
        "--at",
        "2026-01-01T00:00:00Z",
    ];
    let without = cloister(&[&base[..], &["--json"]].concat());
    assert_eq!(without.status.code(), Some(0));
    assert!(
        json(&without)["not_checked"]
            .to_string()
            .contains("revocation")
    );
    let with = cloister(&[&base[..], &["--crl", crl.to_str().unwrap(), "--json"]].concat());
    assert_eq!(with.status.code(), Some(1));
    assert_eq!(json(&with)["reasons"][0]["code"], "collateral_mismatch");
    let missing = cloister(&[&base[..], &["--crl", "no-such.crl"]].concat());
    assert_eq!(missing.status.code(), Some(2));
}

//! Every recorded SEV-SNP report verifies as its expected.json states, at its
//! verify_at time, under the default policy and one that allows debug guests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use cloister_attestation::snp::{self, Product, SigningKey, SnpCertChain, verify_report};
use cloister_attestation::{Platform, Policy, ReasonCode, Timestamp, Verdict};
use common::{expected, read, testdata, vectors, verify_at};

/// The first of `stems` that exists in the vector, as PEM or DER.
fn cert(name: &str, stems: &[&str]) -> Option<Vec<u8>> {
    let dir = testdata().join("snp").join(name);
    stems.iter().find_map(|stem| {
        ["pem", "der"]
            .iter()
            .find_map(|ext| std::fs::read(dir.join(format!("{stem}.{ext}"))).ok())
    })
}

fn chain(name: &str) -> SnpCertChain {
    SnpCertChain::parse(
        cert(name, &["ark"]).as_deref(),
        &cert(name, &["ask", "asvk"]).unwrap(),
        &cert(name, &["vcek", "vlek"]).unwrap(),
    )
    .unwrap()
}

fn appraise(name: &str, policy: &Policy, at: Timestamp) -> Verdict {
    snp::appraise(
        &read("snp", name, "report.bin"),
        &chain(name),
        policy,
        at,
        None,
    )
    .unwrap()
}

#[test]
fn every_snp_vector_verifies_and_the_default_policy_refuses_only_debug_guests() {
    let allow_debug = Policy::from_toml("[sev_snp]\nallow_debug = true\n").unwrap();
    for name in vectors("snp") {
        let exp = expected("snp", &name);
        let at = verify_at(&exp);
        assert_eq!(exp["expected"]["report_signature_valid"], true);
        let lax = appraise(&name, &allow_debug, at);
        assert!(lax.accepted, "{name}: {:?}", lax.reasons);
        assert_eq!(lax.platform, Platform::SevSnp);

        let strict = appraise(&name, &Policy::strict(), at);
        let debug = exp["policy"]["debug_allowed"].as_bool().unwrap();
        assert_eq!(strict.accepted, !debug, "{name}: {:?}", strict.reasons);
        if debug {
            assert_eq!(strict.reason_codes(), vec![ReasonCode::DebugEnabled]);
        }
    }
}

#[test]
fn verified_fields_match_expected_json() {
    for name in vectors("snp") {
        let exp = expected("snp", &name);
        let report = &exp["report"];
        let verified = verify_report(
            &read("snp", &name, "report.bin"),
            &chain(&name),
            verify_at(&exp),
        )
        .unwrap();
        assert_eq!(
            verified.product().name(),
            exp["product"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            u64::from(verified.version()),
            report["version"].as_u64().unwrap()
        );
        assert_eq!(u64::from(verified.vmpl()), report["vmpl"].as_u64().unwrap());
        assert_eq!(
            hex::encode(verified.measurement()),
            report["measurement"].as_str().unwrap()
        );
        assert_eq!(
            hex::encode(verified.report_data()),
            report["report_data"].as_str().unwrap()
        );
        assert_eq!(
            hex::encode(verified.host_data()),
            report["host_data"].as_str().unwrap()
        );
        assert_eq!(
            hex::encode(verified.chip_id()),
            report["chip_id"].as_str().unwrap()
        );
        let policy_raw = exp["policy"]["raw"].as_str().unwrap();
        assert_eq!(format!("{:#x}", verified.guest_policy()), policy_raw);
        let key = match exp["signing_key"].as_str().unwrap() {
            "VCEK" => SigningKey::Vcek,
            "VLEK" => SigningKey::Vlek,
            other => panic!("{other}"),
        };
        assert_eq!(verified.signing_key(), key, "{name}");
        let tcb = verified.reported_tcb();
        let want = &report["reported_tcb"];
        assert_eq!(
            u64::from(tcb.bootloader),
            want["bootloader"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(u64::from(tcb.tee), want["tee"].as_u64().unwrap(), "{name}");
        assert_eq!(u64::from(tcb.snp), want["snp"].as_u64().unwrap(), "{name}");
        assert_eq!(
            u64::from(tcb.microcode),
            want["microcode"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(tcb.fmc.map(u64::from), want["fmc"].as_u64(), "{name}");
    }
}

#[test]
fn turin_uses_its_own_tcb_layout_and_eight_byte_hwid() {
    let name = "turin-v5-oak";
    let exp = expected("snp", name);
    let verified = verify_report(
        &read("snp", name, "report.bin"),
        &chain(name),
        verify_at(&exp),
    )
    .unwrap();
    assert_eq!(verified.product(), Product::Turin);
    assert_eq!(verified.reported_tcb().fmc, Some(0));
    assert_eq!(verified.reported_tcb().microcode, 71);
    // Read with the Milan/Genoa layout the same bytes give other values.
    let raw = u64::from_le_bytes(
        hex::decode(exp["reported_tcb_raw_le_hex"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
    );
    let wrong = snp::Tcb::from_raw(raw, Product::Genoa);
    assert_ne!(wrong, verified.reported_tcb());
}

#[test]
fn the_vlek_chain_goes_through_the_asvk_and_names_the_cloud() {
    let name = "milan-v3-vlek-aws-trustee";
    let exp = expected("snp", name);
    let v = appraise(name, &Policy::strict(), verify_at(&exp));
    assert!(v.accepted, "{:?}", v.reasons);
    assert_eq!(v.facts["signing_key"], "VLEK");
    assert_eq!(v.facts["vlek_csp_id"], "CN=cc-us-east-2.amazonaws.com");
    // The VLEK certificate is valid 2024-12-10 .. 2025-12-10.
    let late = appraise(
        name,
        &Policy::strict(),
        Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap(),
    );
    assert_eq!(late.reason_codes(), vec![ReasonCode::CertificateExpired]);
    // VMPL 1: refused by a policy that wants VMPL 0 reports.
    let vmpl0 = Policy::from_toml("[sev_snp]\nmax_vmpl = 0\n").unwrap();
    let v = appraise(name, &vmpl0, verify_at(&exp));
    assert_eq!(v.reason_codes(), vec![ReasonCode::VmplNotAllowed]);
}

#[test]
fn policy_measurement_allowlist_and_min_tcb() {
    let name = "genoa-v5-oak";
    let exp = expected("snp", name);
    let at = verify_at(&exp);
    let measurement = exp["report"]["measurement"].as_str().unwrap();
    let ok = Policy::from_toml(&format!(
        "[sev_snp]\nmeasurement = [\"{measurement}\"]\nmin_tcb = {{ bootloader = 1, snp = 1 }}\n"
    ))
    .unwrap();
    let v = appraise(name, &ok, at);
    assert!(v.accepted, "{:?}", v.reasons);
    assert!(v.policy_rule.unwrap().contains("measurement allowlisted"));

    let other = Policy::from_toml(&format!(
        "[sev_snp]\nmeasurement = [\"{}\"]\n",
        "00".repeat(48)
    ))
    .unwrap();
    assert_eq!(
        appraise(name, &other, at).reason_codes(),
        vec![ReasonCode::MeasurementNotAllowed]
    );

    let high = Policy::from_toml("[sev_snp]\nmin_tcb = { microcode = 255 }\n").unwrap();
    assert_eq!(
        appraise(name, &high, at).reason_codes(),
        vec![ReasonCode::TcbBelowMinimum]
    );

    let no_smt = Policy::from_toml("[sev_snp]\nallow_smt = false\n").unwrap();
    assert_eq!(
        appraise(name, &no_smt, at).reason_codes(),
        vec![ReasonCode::SmtNotAllowed]
    );
}

#[test]
fn snp_verdicts_rate_the_tcb_against_the_minimum_for_their_product() {
    let name = "genoa-v5-oak";
    let at = verify_at(&expected("snp", name));
    let verified = verify_report(&read("snp", name, "report.bin"), &chain(name), at).unwrap();
    assert_eq!(verified.product(), Product::Genoa);
    let snp = verified.reported_tcb().snp;

    let none = appraise(name, &Policy::strict(), at);
    assert_eq!(none.tcb_status.as_deref(), Some("NoMinimum"));
    assert!(none.not_checked.iter().any(|n| n.contains("TCB currency")));
    assert!(
        none.not_checked
            .iter()
            .any(|n| n.contains("measurements not pinned"))
    );

    // A Milan minimum does not apply to a Genoa report; a Genoa one does.
    let milan_only =
        Policy::from_toml(&format!("[sev_snp.min_tcb.milan]\nsnp = {}\n", snp + 1)).unwrap();
    let v = appraise(name, &milan_only, at);
    assert!(v.accepted, "{:?}", v.reasons);
    assert_eq!(v.tcb_status.as_deref(), Some("NoMinimum"));

    let genoa_met = Policy::from_toml(&format!(
        "[sev_snp.min_tcb]\nsnp = 255\n[sev_snp.min_tcb.genoa]\nsnp = {snp}\n"
    ))
    .unwrap();
    let v = appraise(name, &genoa_met, at);
    assert!(v.accepted, "{:?}", v.reasons);
    assert_eq!(v.tcb_status.as_deref(), Some("MeetsMinimum"));

    let genoa_above =
        Policy::from_toml(&format!("[sev_snp.min_tcb.genoa]\nsnp = {}\n", snp + 1)).unwrap();
    let v = appraise(name, &genoa_above, at);
    assert_eq!(v.reason_codes(), vec![ReasonCode::TcbBelowMinimum]);
    assert_eq!(v.tcb_status.as_deref(), Some("BelowMinimum"));
}

#[test]
fn a_policy_for_tdx_only_refuses_genuine_snp_reports() {
    let name = "milan-v2-virtee";
    let at = verify_at(&expected("snp", name));
    let tdx_only = Policy::from_toml("platforms = [\"tdx\"]\n").unwrap();
    let v = appraise(name, &tdx_only, at);
    assert_eq!(v.reason_codes(), vec![ReasonCode::PlatformNotAllowed]);
    // The pins of another platform do not matter.
    let mr = "ab".repeat(48);
    let tdx_pinned = Policy::from_toml(&format!("[tdx]\nmrtd = [\"{mr}\"]\n")).unwrap();
    let v = appraise(name, &tdx_pinned, at);
    assert!(v.accepted, "{:?}", v.reasons);
    assert!(
        v.not_checked
            .iter()
            .any(|n| n.starts_with("sev-snp: measurements not pinned"))
    );
}

//! Every recorded TDX and SGX quote gives the verdict its expected.json
//! states, at its verify_at time, under the default policy and under one that
//! accepts every non-revoked TCB status (and, separately, debug TDs).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use cloister_attestation::tdx::{self, Quote, TdxCollateral, TdxError, verify_quote};
use cloister_attestation::{Platform, Policy, ReasonCode, Timestamp, Verdict};
use common::{expected, read, vectors, verify_at};
use serde_json::Value;

fn collateral(platform: &str, name: &str) -> TdxCollateral {
    TdxCollateral::from_json(&read(platform, name, "collateral.json")).unwrap()
}

/// Accepts every TCB status except Revoked; debug TDs still refused.
fn any_tcb_policy() -> Policy {
    Policy::from_toml(
        r#"[tdx]
        accept_tcb = ["UpToDate", "SWHardeningNeeded", "ConfigurationNeeded",
                      "ConfigurationAndSWHardeningNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"]"#,
    )
    .unwrap()
}

fn appraise(name: &str, policy: &Policy, at: Timestamp) -> Verdict {
    tdx::appraise(
        &read("tdx", name, "quote.bin"),
        &collateral("tdx", name),
        policy,
        at,
        None,
    )
    .unwrap()
}

/// The reason code our verifier gives for a `dcap-qvl` error message in
/// expected.json.
fn code_for(dcap_error: &str) -> ReasonCode {
    match dcap_error {
        "TCBInfo issue date is in the future" | "QE Identity issue date is in the future" => {
            ReasonCode::CollateralNotYetValid
        }
        "TCBInfo expired" | "QE Identity expired" => ReasonCode::CollateralExpired,
        e if e.contains("CrlExpired") => ReasonCode::CollateralExpired,
        "Debug mode is enabled" => ReasonCode::DebugEnabled,
        "SEPT_VE_DISABLE is not enabled" => ReasonCode::TdAttributesRefused,
        "No matching TCB level found" => ReasonCode::TcbLevelNotFound,
        other => panic!("no mapping for dcap-qvl error {other:?}"),
    }
}

fn check_outcome(name: &str, label: &str, outcome: &Value, v: &Verdict) {
    if outcome["ok"].as_bool().unwrap() {
        assert!(
            v.accepted,
            "{name} {label}: expected ok, got {:?}",
            v.reasons
        );
    } else {
        let code = code_for(outcome["error"].as_str().unwrap());
        assert!(!v.accepted, "{name} {label}: expected rejection");
        assert!(
            v.has_reason(code),
            "{name} {label}: expected {code}, got {:?}",
            v.reasons
        );
    }
}

#[test]
fn every_tdx_vector_gives_its_expected_verdict() {
    for name in vectors("tdx") {
        let exp = expected("tdx", &name);
        let at = verify_at(&exp);
        let outcome = &exp["expected"];
        let v = appraise(&name, &any_tcb_policy(), at);
        assert_eq!(v.platform, Platform::Tdx);
        check_outcome(&name, "at verify_at", outcome, &v);
        if outcome["ok"].as_bool().unwrap() {
            assert_eq!(
                v.tcb_status.as_deref(),
                outcome["tcb_status"].as_str(),
                "{name}"
            );
            let advisories: Vec<String> =
                serde_json::from_value(outcome["advisory_ids"].clone()).unwrap();
            assert_eq!(v.advisory_ids, advisories, "{name}");
            assert_eq!(
                v.facts["platform_tcb_status"].as_str(),
                outcome["platform_status"]["status"].as_str().unwrap()
            );
            assert_eq!(
                v.facts["qe_tcb_status"].as_str(),
                outcome["qe_status"]["status"].as_str().unwrap()
            );
            // The strict default accepts exactly the UpToDate ones.
            let strict = appraise(&name, &Policy::strict(), at);
            let up_to_date = outcome["tcb_status"] == "UpToDate";
            assert_eq!(strict.accepted, up_to_date, "{name}: {:?}", strict.reasons);
            if !up_to_date {
                assert!(strict.has_reason(ReasonCode::TcbStatusNotAccepted));
            }
        }
    }
}

#[test]
fn measurements_in_the_verdict_are_those_of_the_td_report() {
    for name in vectors("tdx") {
        let exp = expected("tdx", &name);
        let v = appraise(&name, &Policy::strict(), verify_at(&exp));
        let td = &exp["td_report"];
        let pairs = [
            ("mrtd", "mr_td"),
            ("rtmr0", "rtmr0"),
            ("rtmr1", "rtmr1"),
            ("rtmr2", "rtmr2"),
            ("rtmr3", "rtmr3"),
            ("mrseam", "mr_seam"),
            ("mrsignerseam", "mr_signer_seam"),
            ("td_attributes", "td_attributes"),
            ("xfam", "xfam"),
            ("report_data", "report_data"),
            ("tee_tcb_svn", "tee_tcb_svn"),
            ("mrconfigid", "mr_config_id"),
        ];
        for (ours, theirs) in pairs {
            assert_eq!(
                v.measurements[ours],
                td[theirs].as_str().unwrap(),
                "{name} {ours}"
            );
        }
        if let Some(svn2) = td.get("tee_tcb_svn2") {
            assert_eq!(v.measurements["tee_tcb_svn2"], svn2.as_str().unwrap());
        }
    }
}

#[test]
fn parser_reads_the_format_fields_expected_json_records() {
    for name in vectors("tdx")
        .into_iter()
        .map(|n| ("tdx", n))
        .chain(vectors("sgx").into_iter().map(|n| ("sgx", n)))
    {
        let (platform, name) = name;
        let exp = expected(platform, &name);
        let raw = read(platform, &name, "quote.bin");
        let quote = Quote::parse(&raw).unwrap();
        let format = &exp["format"];
        assert_eq!(
            u64::from(quote.header.version),
            format["quote_version"].as_u64().unwrap()
        );
        assert_eq!(raw.len() as u64, format["quote_len"].as_u64().unwrap());
        assert_eq!(
            quote.padding as u64,
            format["zero_bytes_after_signature_data"].as_u64().unwrap(),
            "{name}"
        );
        if platform == "tdx" {
            assert_eq!(quote.signature.certification_data_type, 5, "{name}");
            assert_eq!(
                quote.signature.qe_auth_data.len() as u64,
                format["qe_auth_data_len"].as_u64().unwrap()
            );
            let body_size = usize::try_from(format["body_size"].as_u64().unwrap()).unwrap();
            let descriptor = if quote.header.version == 5 { 6 } else { 0 };
            assert_eq!(quote.spans.header_and_body, 0..48 + descriptor + body_size);
        }
        assert_eq!(quote.spans.qe_report.len(), 384);
        assert_eq!(
            &raw[quote.spans.qe_report.clone()],
            quote.signature.qe_report
        );
    }
}

#[test]
fn debug_td_is_refused_by_default_and_accepted_when_the_policy_allows_debug() {
    let name = "v4-debug-td-50806f-trustee";
    let exp = expected("tdx", name);
    let at = verify_at(&exp);
    let strict = appraise(name, &Policy::strict(), at);
    assert!(!strict.accepted);
    assert_eq!(strict.reason_codes(), vec![ReasonCode::DebugEnabled]);

    let allow_debug = Policy::from_toml("[tdx]\nallow_debug = true\n").unwrap();
    let v = appraise(name, &allow_debug, at);
    let with_debug = &exp["expected"]["with_allow_debug_true"];
    assert!(v.accepted, "{:?}", v.reasons);
    assert_eq!(v.tcb_status.as_deref(), with_debug["tcb_status"].as_str());
    assert!(v.policy_rule.unwrap().contains("allow_debug"));
}

#[test]
fn outofdate_is_accepted_only_when_listed_and_only_inside_the_grace_window() {
    let name = "v4-outofdate-00806f-automata";
    let at = verify_at(&expected("tdx", name));
    let listed = Policy::from_toml(
        "[tdx]\naccept_tcb = [\"UpToDate\", \"OutOfDate\"]\ngrace_until = \"2025-03-10T00:00:00Z\"\n",
    )
    .unwrap();
    assert!(appraise(name, &listed, at).accepted);
    let late = appraise(
        name,
        &listed,
        Timestamp::parse_rfc3339("2025-03-11T00:00:00Z").unwrap(),
    );
    assert_eq!(late.reason_codes(), vec![ReasonCode::TcbGraceExpired]);
}

#[test]
fn boundary_times_give_the_recorded_outcomes() {
    for name in vectors("tdx") {
        let exp = expected("tdx", &name);
        let window = &exp["collateral"];
        let nb = Timestamp::parse_rfc3339(window["validity_window_not_before"].as_str().unwrap())
            .unwrap();
        let na = Timestamp::parse_rfc3339(window["validity_window_not_after"].as_str().unwrap())
            .unwrap();
        let outcome = &exp["expected"];
        let checks = [
            (
                "at_window_not_before",
                nb,
                &outcome["boundary_checks"]["at_window_not_before"],
            ),
            (
                "at_window_not_before_minus_1s",
                nb.minus_secs(1),
                &outcome["boundary_checks"]["at_window_not_before_minus_1s"],
            ),
            (
                "at_window_not_after_minus_1s",
                na.minus_secs(1),
                &outcome["boundary_checks"]["at_window_not_after_minus_1s"],
            ),
            (
                "at_window_not_after_plus_60s",
                na.plus_secs(60),
                &outcome["boundary_checks"]["at_window_not_after_plus_60s"],
            ),
            (
                "at_window_not_after_plus_1d",
                na.plus_secs(86_400),
                &outcome["at_window_not_after_plus_1d"],
            ),
            (
                "at_window_not_before_minus_1d",
                nb.minus_secs(86_400),
                &outcome["at_window_not_before_minus_1d"],
            ),
        ];
        for (label, at, recorded) in checks {
            let v = appraise(&name, &any_tcb_policy(), at);
            check_outcome(&name, label, recorded, &v);
        }
    }
}

#[test]
fn expired_collateral_is_a_collateral_fault_that_a_retry_may_fix() {
    let name = "v4-uptodate-b0c06f-dcapqvl";
    let exp = expected("tdx", name);
    let na = Timestamp::parse_rfc3339(
        exp["collateral"]["validity_window_not_after"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let v = appraise(name, &Policy::strict(), na.plus_secs(86_400));
    let reason = &v.reasons[0];
    assert_eq!(reason.code, ReasonCode::CollateralExpired);
    assert_eq!(reason.fault, cloister_attestation::Fault::Collateral);
    assert!(reason.retry_may_help);
    // No TCB status is claimed for a quote that did not verify.
    assert_eq!(v.tcb_status, None);
}

#[test]
fn the_sgx_quote_is_recognised_and_refused_as_tdx_evidence() {
    let name = "v3-sgx-config-and-sw-hardening-dcapqvl";
    let exp = expected("sgx", name);
    let raw = read("sgx", name, "quote.bin");
    let coll = collateral("sgx", name);
    let at = verify_at(&exp);
    let err = verify_quote(&raw, &coll, at).unwrap_err();
    assert!(matches!(err, TdxError::NotTdx { version: 3, .. }), "{err}");
    assert_eq!(err.code(), ReasonCode::WrongPlatform);

    let v = tdx::appraise(&raw, &coll, &any_tcb_policy(), at, None).unwrap();
    assert!(!v.accepted);
    assert_eq!(v.platform, Platform::Sgx);
    assert_eq!(v.reason_codes(), vec![ReasonCode::WrongPlatform]);
    assert_eq!(
        v.measurements["mr_enclave"],
        exp["enclave_report"]["mr_enclave"].as_str().unwrap()
    );
}

#[test]
fn sept_ve_disable_off_is_refused_whatever_the_policy() {
    let name = "v4-azure-no-sept-ve-disable-00806f-trustee";
    let at = verify_at(&expected("tdx", name));
    let lax = Policy::from_toml(
        "[tdx]\nallow_debug = true\naccept_tcb = [\"UpToDate\", \"OutOfDate\"]\n",
    )
    .unwrap();
    let v = appraise(name, &lax, at);
    assert_eq!(v.reason_codes(), vec![ReasonCode::TdAttributesRefused]);
    assert!(v.reasons[0].detail.contains("SEPT_VE_DISABLE"));
}

#[test]
fn a_verified_quote_exposes_its_tcb_and_report() {
    let name = "v5-uptodate-90c06f-gotdxguest";
    let exp = expected("tdx", name);
    let raw = read("tdx", name, "quote.bin");
    let verified = verify_quote(&raw, &collateral("tdx", name), verify_at(&exp)).unwrap();
    assert_eq!(verified.version(), 5);
    assert_eq!(verified.tcb_status().as_str(), "UpToDate");
    assert_eq!(verified.fmspc(), "90C06F000000");
    assert_eq!(
        hex::encode(verified.td_report().mr_td),
        exp["td_report"]["mr_td"].as_str().unwrap()
    );
    assert!(verified.td_report().tee_tcb_svn2.is_some());
}

/// A real quote with one TD-attribute bit changed. Its signature no longer
/// verifies, but the attribute checks run on the report as received, so the
/// verdict must name the attribute too: this is how the profiling hole is
/// tested without a genuine quote from a profiled TD.
fn appraise_with_attributes(flip: u64, policy: &Policy) -> Verdict {
    let name = "v4-uptodate-b0c06f-dcapqvl";
    let mut raw = read("tdx", name, "quote.bin");
    // v4: header (48) + TEE_TCB_SVN (16) + MRSEAM (48) + MRSIGNERSEAM (48) +
    // SEAMATTRIBUTES (8).
    let at = 48 + 16 + 48 + 48 + 8;
    let attrs = u64::from_le_bytes(raw[at..at + 8].try_into().unwrap()) ^ flip;
    raw[at..at + 8].copy_from_slice(&attrs.to_le_bytes());
    tdx::appraise(
        &raw,
        &collateral("tdx", name),
        policy,
        verify_at(&expected("tdx", name)),
        None,
    )
    .unwrap()
}

#[test]
fn a_profiling_bit_is_refused_as_debug_unless_debug_is_allowed() {
    for bit in [4, 5, 6] {
        let v = appraise_with_attributes(1 << bit, &Policy::strict());
        let attrs = u64::from_str_radix(&v.measurements["td_attributes"], 16).unwrap();
        assert_ne!(
            attrs.swap_bytes() & 1 << bit,
            0,
            "bit {bit} was not flipped"
        );
        assert!(v.has_reason(ReasonCode::DebugEnabled), "bit {bit}: {v:?}");
        assert!(v.has_reason(ReasonCode::EvidenceSignatureInvalid));
        let lax = Policy::from_toml("[tdx]\nallow_debug = true\n").unwrap();
        let v = appraise_with_attributes(1 << bit, &lax);
        assert!(!v.has_reason(ReasonCode::DebugEnabled), "bit {bit}: {v:?}");
    }
}

#[test]
fn reserved_attribute_bits_are_refused_whatever_the_policy() {
    let lax = Policy::from_toml("[tdx]\nallow_debug = true\n").unwrap();
    for bit in [2, 7, 9, 24, 40] {
        let v = appraise_with_attributes(1 << bit, &lax);
        assert!(
            v.has_reason(ReasonCode::TdAttributesRefused),
            "bit {bit}: {v:?}"
        );
    }
}

#[test]
fn collateral_older_than_the_policy_minimum_is_refused() {
    let name = "v4-uptodate-b0c06f-dcapqvl";
    let at = verify_at(&expected("tdx", name));
    let coll = collateral("tdx", name);
    let number = coll.tcb_evaluation_data_number().unwrap();
    let v = appraise(name, &Policy::strict(), at);
    assert!(v.accepted, "{:?}", v.reasons);
    assert_eq!(v.facts["tcb_evaluation_data_number"], number.to_string());

    let current = Policy::from_toml(&format!(
        "[tdx]\nmin_tcb_evaluation_data_number = {}\n",
        number.min(coll.qe_tcb_evaluation_data_number().unwrap())
    ))
    .unwrap();
    assert!(appraise(name, &current, at).accepted);

    let newer = Policy::from_toml(&format!(
        "[tdx]\nmin_tcb_evaluation_data_number = {}\n",
        number + 1
    ))
    .unwrap();
    let v = appraise(name, &newer, at);
    assert!(!v.accepted);
    assert!(
        v.has_reason(ReasonCode::CollateralTooOld),
        "{:?}",
        v.reasons
    );
    let reason = &v.reasons[0];
    assert!(reason.retry_may_help && reason.detail.contains("TCB info"));
}

#[test]
fn a_policy_for_snp_only_refuses_genuine_tdx_quotes() {
    let name = "v4-uptodate-b0c06f-dcapqvl";
    let at = verify_at(&expected("tdx", name));
    let snp_only = Policy::from_toml("platforms = [\"sev-snp\"]\n").unwrap();
    let v = appraise(name, &snp_only, at);
    assert_eq!(v.reason_codes(), vec![ReasonCode::PlatformNotAllowed]);
}

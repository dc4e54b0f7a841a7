//! TDX appraisal: verification plus policy, as a [`Verdict`].

use super::collateral::TdxCollateral;
use super::quote::{Body, Quote, QuoteError, TdReport};
use super::verify::{TcbStatus, VerifiedTdxQuote, verify_parsed};
use crate::policy::{Policy, TdxPolicy, allowed};
use crate::time::Timestamp;
use crate::verdict::{Platform, ReasonCode, Verdict};

/// Verifies a DCAP quote and appraises it against `policy` at `now`.
///
/// `expected_report_data`, when given, must equal the TD's report data (see
/// [`crate::binding`]). Returns `Err` only when the bytes are not a DCAP
/// quote at all; every other failure is a reason in the verdict, and all
/// policy checks run even when verification fails, so the verdict lists
/// every reason.
pub fn appraise(
    raw: &[u8],
    collateral: &TdxCollateral,
    policy: &Policy,
    now: Timestamp,
    expected_report_data: Option<&[u8; 64]>,
) -> Result<Verdict, QuoteError> {
    let quote = Quote::parse(raw)?;
    let td = match &quote.body {
        Body::Td(td) => td,
        Body::Sgx(sgx) => {
            let mut v = Verdict::new(Platform::Sgx, now);
            v.measurements
                .insert("mr_enclave".into(), hex::encode(sgx.mr_enclave));
            v.measurements
                .insert("mr_signer".into(), hex::encode(sgx.mr_signer));
            v.facts
                .insert("quote_version".into(), quote.header.version.to_string());
            v.reject(
                ReasonCode::WrongPlatform,
                "an SGX enclave quote is not evidence of a TDX trust domain",
            );
            v.settle(None);
            return Ok(v);
        }
    };
    let mut v = Verdict::new(Platform::Tdx, now);
    v.check_platform_allowed(policy);
    record_measurements(&mut v, td);
    v.facts
        .insert("quote_version".into(), quote.header.version.to_string());
    v.facts
        .insert("zero_padding_bytes".into(), quote.padding.to_string());
    v.facts.insert(
        "tcb_info_fmspc".into(),
        collateral.fmspc().to_ascii_uppercase(),
    );
    v.facts.insert(
        "tcb_info_next_update".into(),
        collateral.tcb_info_next_update().into(),
    );

    let verified = match verify_parsed(&quote, collateral, now) {
        Ok(verified) => Some(verified),
        Err(e) => {
            v.reject(e.code(), e.to_string());
            None
        }
    };
    if let Some(verified) = &verified {
        record_tcb(&mut v, verified);
    }
    check_collateral_age(&mut v, &policy.tdx, collateral);
    let rule = check_policy(&mut v, &policy.tdx, td, verified.as_ref(), now);
    v.check_report_data(&td.report_data, expected_report_data);
    v.settle(Some(rule));
    Ok(v)
}

/// Refuses collateral older than the policy's TCB evaluation data number:
/// a bundle may carry its own collateral, and older (still valid) TCB info
/// can rate a platform better than the current one.
fn check_collateral_age(v: &mut Verdict, policy: &TdxPolicy, collateral: &TdxCollateral) {
    let tcb_info = collateral.tcb_evaluation_data_number();
    let qe = collateral.qe_tcb_evaluation_data_number();
    if let Some(n) = tcb_info {
        v.facts
            .insert("tcb_evaluation_data_number".into(), n.to_string());
    }
    let Some(min) = policy.min_tcb_evaluation_data_number else {
        return;
    };
    for (item, number) in [("TCB info", tcb_info), ("QE identity", qe)] {
        if number.is_none_or(|n| n < min) {
            let have = number.map_or_else(|| "none".to_owned(), |n| n.to_string());
            v.reject(
                ReasonCode::CollateralTooOld,
                format!(
                    "the {item}'s TCB evaluation data number is {have}; \
                     tdx.min_tcb_evaluation_data_number is {min}"
                ),
            );
        }
    }
}

fn record_measurements(v: &mut Verdict, td: &TdReport) {
    let m = &mut v.measurements;
    m.insert("mrtd".into(), hex::encode(td.mr_td));
    for (i, rtmr) in td.rtmr.iter().enumerate() {
        m.insert(format!("rtmr{i}"), hex::encode(rtmr));
    }
    m.insert("mrseam".into(), hex::encode(td.mr_seam));
    m.insert("mrsignerseam".into(), hex::encode(td.mr_signer_seam));
    m.insert(
        "td_attributes".into(),
        hex::encode(td.td_attributes.0.to_le_bytes()),
    );
    m.insert("xfam".into(), hex::encode(td.xfam));
    m.insert("mrconfigid".into(), hex::encode(td.mr_config_id));
    m.insert("mrowner".into(), hex::encode(td.mr_owner));
    m.insert("mrownerconfig".into(), hex::encode(td.mr_owner_config));
    m.insert("tee_tcb_svn".into(), hex::encode(td.tee_tcb_svn));
    if let Some(svn2) = td.tee_tcb_svn2 {
        m.insert("tee_tcb_svn2".into(), hex::encode(svn2));
    }
    if let Some(servtd) = td.mr_service_td {
        m.insert("mrservicetd".into(), hex::encode(servtd));
    }
    m.insert("report_data".into(), hex::encode(td.report_data));
}

fn record_tcb(v: &mut Verdict, verified: &VerifiedTdxQuote) {
    v.tcb_status = Some(verified.tcb_status().to_string());
    v.advisory_ids = verified.advisory_ids().to_vec();
    v.facts.insert(
        "platform_tcb_status".into(),
        verified.platform_status().to_string(),
    );
    v.facts
        .insert("qe_tcb_status".into(), verified.qe_status().to_string());
}

/// Applies the TDX policy; returns a description of the rule that accepts
/// the quote if nothing else rejects it.
fn check_policy(
    v: &mut Verdict,
    policy: &TdxPolicy,
    td: &TdReport,
    verified: Option<&VerifiedTdxQuote>,
    now: Timestamp,
) -> String {
    let attrs = td.td_attributes;
    check_td_attributes(v, attrs, policy.allow_debug);
    let registers: [(&str, Option<&Vec<_>>, &[u8; 48]); 6] = [
        ("mrtd", policy.mrtd.as_ref(), &td.mr_td),
        ("rtmr0", policy.rtmr0.as_ref(), &td.rtmr[0]),
        ("rtmr1", policy.rtmr1.as_ref(), &td.rtmr[1]),
        ("rtmr2", policy.rtmr2.as_ref(), &td.rtmr[2]),
        ("rtmr3", policy.rtmr3.as_ref(), &td.rtmr[3]),
        ("mrseam", policy.mrseam.as_ref(), &td.mr_seam),
    ];
    let mut pinned = Vec::new();
    for (name, list, value) in registers {
        if list.is_some() {
            pinned.push(name);
        }
        if !allowed(list, value) {
            v.reject(
                ReasonCode::MeasurementNotAllowed,
                format!(
                    "{name} {} is not in the policy's tdx.{name} allowlist",
                    hex::encode(value)
                ),
            );
        }
    }
    let Some(verified) = verified else {
        return String::new();
    };
    let status = verified.tcb_status();
    if !policy.accept_tcb.contains(&status) {
        let advisories = verified.advisory_ids().join(", ");
        v.reject(
            ReasonCode::TcbStatusNotAccepted,
            format!(
                "TCB status {status} (advisories: {}) is not in tdx.accept_tcb {:?}",
                if advisories.is_empty() {
                    "none"
                } else {
                    &advisories
                },
                policy
                    .accept_tcb
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
            ),
        );
    } else if status != TcbStatus::UpToDate
        && let Some(grace) = policy.grace_until
        && now > grace
    {
        v.reject(
            ReasonCode::TcbGraceExpired,
            format!("TCB status {status} was accepted only until tdx.grace_until {grace}"),
        );
    }
    let mut rule = format!("tdx.accept_tcb includes {status}");
    if status != TcbStatus::UpToDate
        && let Some(grace) = policy.grace_until
    {
        rule.push_str(&format!(" until {grace}"));
    }
    if attrs.tud() != 0 {
        rule.push_str("; tdx.allow_debug = true");
    }
    if !pinned.is_empty() {
        rule.push_str(&format!("; allowlisted: {}", pinned.join(", ")));
    }
    rule
}

/// Checks the TD attributes ourselves, on the report as received, whatever
/// the DCAP library checked: `dcap-qvl` run with debug allowed (debug is
/// policy here) also skips its check of the profiling bits, so this is the
/// check that counts.
///
/// Any TUD bit (debug or profiling) is refused unless `tdx.allow_debug`;
/// reserved bits, MIGRATABLE and a missing SEPT_VE_DISABLE are refused
/// under every policy (once: a refusal already reported by the DCAP
/// verifier is not repeated).
pub(crate) fn check_td_attributes(
    v: &mut Verdict,
    attrs: super::quote::TdAttributes,
    allow_debug: bool,
) {
    let tud = attrs.tud() & !super::quote::TdAttributes::RESERVED_MASK;
    if tud != 0 && !allow_debug {
        let mut what = Vec::new();
        if attrs.debug() {
            what.push("DEBUG: the host can read and change its memory");
        }
        if tud & 0x70 != 0 {
            what.push("profiling (bits 6:4): the host can observe its execution");
        }
        v.reject(
            ReasonCode::DebugEnabled,
            format!(
                "TD attributes {:#018x} put the TD under debug ({}); tdx.allow_debug is false",
                attrs.0,
                what.join("; ")
            ),
        );
    }
    let mut refused = Vec::new();
    if attrs.reserved() != 0 {
        refused.push(format!("reserved bits {:#018x} are set", attrs.reserved()));
    }
    if attrs.migratable() {
        refused.push("MIGRATABLE is set".to_owned());
    }
    if !attrs.sept_ve_disable() {
        refused.push("SEPT_VE_DISABLE is not set".to_owned());
    }
    if !refused.is_empty() && !v.has_reason(ReasonCode::TdAttributesRefused) {
        v.reject(
            ReasonCode::TdAttributesRefused,
            format!("TD attributes {:#018x}: {}", attrs.0, refused.join("; ")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tdx::TdAttributes;

    const SEPT_VE_DISABLE: u64 = 1 << 28;

    fn codes(attrs: u64, allow_debug: bool) -> Vec<ReasonCode> {
        let mut v = Verdict::new(Platform::Tdx, Timestamp::from_unix(0));
        check_td_attributes(&mut v, TdAttributes(attrs), allow_debug);
        v.reason_codes()
    }

    #[test]
    fn every_tud_bit_is_refused_unless_debug_is_allowed() {
        for bit in 0..8 {
            let attrs = SEPT_VE_DISABLE | 1 << bit;
            let strict = codes(attrs, false);
            let lax = codes(attrs, true);
            if TdAttributes(attrs).reserved() != 0 {
                assert_eq!(strict, vec![ReasonCode::TdAttributesRefused], "bit {bit}");
                assert_eq!(lax, vec![ReasonCode::TdAttributesRefused], "bit {bit}");
            } else {
                // Bits 0 (DEBUG) and 4..=6 (profiling).
                assert_eq!(strict, vec![ReasonCode::DebugEnabled], "bit {bit}");
                assert!(lax.is_empty(), "bit {bit}: {lax:?}");
            }
        }
    }

    #[test]
    fn reserved_bits_are_refused_under_every_policy() {
        let defined = [
            0, 4, 5, 6, 16, 17, 18, 19, 20, 21, 22, 27, 28, 29, 30, 31, 62, 63,
        ];
        for bit in 0..64 {
            let attrs = SEPT_VE_DISABLE | 1 << bit;
            let refused = codes(attrs, true).contains(&ReasonCode::TdAttributesRefused);
            // MIGRATABLE (29) is defined but refused too.
            let expect = !defined.contains(&bit) || bit == 29;
            assert_eq!(refused, expect, "bit {bit}");
        }
    }

    #[test]
    fn a_plain_production_td_passes() {
        assert!(codes(SEPT_VE_DISABLE, false).is_empty());
        // PERFMON (63), PKS (30), LASS (27) are the TD's own business.
        assert!(codes(SEPT_VE_DISABLE | 1 << 63 | 1 << 30 | 1 << 27, false).is_empty());
        assert_eq!(codes(0, false), vec![ReasonCode::TdAttributesRefused]);
    }
}

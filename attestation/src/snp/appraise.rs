//! SEV-SNP appraisal: verification plus policy, as a [`Verdict`].

use super::report::{Product, Report, ReportError, Tcb};
use super::verify::{SnpCertChain, VerifiedSnpReport, product_of, verify_parsed};
use crate::policy::{Policy, SnpPolicy, allowed};
use crate::time::Timestamp;
use crate::verdict::{Platform, ReasonCode, Verdict};

/// Verifies an SNP report with its certificate chain and appraises it
/// against `policy` at `now`.
///
/// `expected_report_data`, when given, must equal the report data (see
/// [`crate::binding`]). Returns `Err` only when the bytes are not an SNP
/// report; all other failures are reasons in the verdict, and every policy
/// check runs even when verification fails.
pub fn appraise(
    raw: &[u8],
    chain: &SnpCertChain,
    policy: &Policy,
    now: Timestamp,
    expected_report_data: Option<&[u8; 64]>,
) -> Result<Verdict, ReportError> {
    let report = Report::parse(raw)?;
    let mut v = Verdict::new(Platform::SevSnp, now);
    v.check_platform_allowed(policy);
    record(&mut v, &report, product_of(&report, chain).ok());
    let verified = match verify_parsed(&report, chain, now) {
        Ok(verified) => {
            record_verified(&mut v, &verified);
            Some(verified)
        }
        Err(e) => {
            v.reject(e.code(), e.to_string());
            None
        }
    };
    if !chain.has_crl() {
        v.not_checked.push(super::CRL_NOT_CHECKED.to_owned());
    }
    let rule = check_policy(&mut v, &policy.sev_snp, &report, verified.as_ref());
    v.check_report_data(&report.report_data, expected_report_data);
    v.settle(Some(rule));
    Ok(v)
}

fn record(v: &mut Verdict, report: &Report<'_>, product: Option<Product>) {
    let m = &mut v.measurements;
    m.insert("measurement".into(), hex::encode(report.measurement));
    m.insert("host_data".into(), hex::encode(report.host_data));
    m.insert("report_data".into(), hex::encode(report.report_data));
    m.insert("id_key_digest".into(), hex::encode(report.id_key_digest));
    m.insert(
        "author_key_digest".into(),
        hex::encode(report.author_key_digest),
    );
    m.insert("family_id".into(), hex::encode(report.family_id));
    m.insert("image_id".into(), hex::encode(report.image_id));
    m.insert("chip_id".into(), hex::encode(report.chip_id));
    m.insert("policy".into(), format!("{:#x}", report.policy.0));
    let f = &mut v.facts;
    f.insert("report_version".into(), report.version.to_string());
    f.insert("vmpl".into(), report.vmpl.to_string());
    f.insert("guest_svn".into(), report.guest_svn.to_string());
    f.insert(
        "platform_info".into(),
        format!("{:#x}", report.platform_info.0),
    );
    f.insert("signing_key".into(), report.signing_key().to_string());
    let (major, minor, build) = report.current_version;
    f.insert("firmware".into(), format!("{major}.{minor}.{build}"));
    if let Some(product) = product {
        f.insert("product".into(), product.to_string());
        let tcb = Tcb::from_raw(report.reported_tcb, product);
        v.measurements
            .insert("reported_tcb".into(), tcb.to_string());
    }
}

fn record_verified(v: &mut Verdict, verified: &VerifiedSnpReport) {
    v.facts
        .insert("product".into(), verified.product().to_string());
    if let Some(csp) = verified.csp_id() {
        v.facts.insert("vlek_csp_id".into(), csp.to_owned());
    }
}

fn check_policy(
    v: &mut Verdict,
    policy: &SnpPolicy,
    report: &Report<'_>,
    verified: Option<&VerifiedSnpReport>,
) -> String {
    let guest = report.policy;
    if guest.debug() && !policy.allow_debug {
        v.reject(
            ReasonCode::DebugEnabled,
            format!(
                "guest policy {:#x} allows debugging: the host can read guest memory",
                guest.0
            ),
        );
    }
    if guest.migrate_ma() && !policy.allow_migration_agent {
        v.reject(
            ReasonCode::MigrationAgentAllowed,
            format!("guest policy {:#x} allows a migration agent", guest.0),
        );
    }
    if !policy.allow_smt && report.platform_info.smt_enabled() {
        v.reject(
            ReasonCode::SmtNotAllowed,
            "SMT is enabled on the host and sev_snp.allow_smt is false",
        );
    }
    if report.vmpl > policy.max_vmpl {
        v.reject(
            ReasonCode::VmplNotAllowed,
            format!(
                "the report was requested at VMPL {}; sev_snp.max_vmpl is {}",
                report.vmpl, policy.max_vmpl
            ),
        );
    }
    if !allowed(policy.measurement.as_ref(), &report.measurement) {
        v.reject(
            ReasonCode::MeasurementNotAllowed,
            format!(
                "measurement {} is not in the sev_snp.measurement allowlist",
                hex::encode(report.measurement)
            ),
        );
    }
    if !allowed(policy.host_data.as_ref(), &report.host_data) {
        v.reject(
            ReasonCode::MeasurementNotAllowed,
            format!(
                "host data {} is not in the sev_snp.host_data allowlist",
                hex::encode(report.host_data)
            ),
        );
    }
    let min = verified.and_then(|verified| {
        let min = policy
            .min_tcb
            .and_then(|m| m.for_product(verified.product()));
        v.tcb_status = Some(if min.is_some() { "MeetsMinimum" } else { "NoMinimum" }.to_owned());
        if min.is_none() {
            v.not_checked.push(format!(
                "sev-snp: TCB currency (no sev_snp.min_tcb for {}): any TCB the VCEK certifies is accepted",
                verified.product()
            ));
        }
        min.map(|min| (min, verified))
    });
    let min_applied = min.map(|(_, verified)| verified.product());
    if let Some((min, verified)) = min {
        let tcb = verified.reported_tcb();
        let below = [
            ("bootloader", tcb.bootloader, min.bootloader),
            ("tee", tcb.tee, min.tee),
            ("snp", tcb.snp, min.snp),
            ("microcode", tcb.microcode, min.microcode),
            ("fmc", tcb.fmc.unwrap_or(u8::MAX), min.fmc),
        ];
        for (name, have, need) in below {
            if have < need {
                v.tcb_status = Some("BelowMinimum".to_owned());
                v.reject(
                    ReasonCode::TcbBelowMinimum,
                    format!(
                        "reported TCB {name} {have} is below the sev_snp.min_tcb {name} {need} for {}",
                        verified.product()
                    ),
                );
            }
        }
    }
    let mut rule = String::from("sev_snp: chain to AMD root, reported TCB certified");
    if guest.debug() {
        rule.push_str("; sev_snp.allow_debug = true");
    }
    if policy.measurement.is_some() {
        rule.push_str("; measurement allowlisted");
    }
    if let Some(product) = min_applied {
        rule.push_str(&format!("; reported TCB >= sev_snp.min_tcb for {product}"));
    }
    rule
}

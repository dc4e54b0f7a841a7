//! Human and JSON output of verdicts and errors.

use std::fmt::Write as _;

use cloister_attestation::{GpuVerdict, Reason, Verdict};

/// Prints a verdict to stdout.
pub(crate) fn verdict(v: &Verdict, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        print!("{}", table(v));
    }
}

/// Prints an unusable-input error: always a line on stderr, and with
/// `--json` also a JSON object on stdout so scripts need not parse stderr.
pub(crate) fn unusable_input(error: &anyhow::Error, json: bool) {
    eprintln!("error: {error:#}");
    if json {
        let body = serde_json::json!({
            "accepted": false,
            "error": { "code": "unusable_input", "detail": format!("{error:#}") },
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
    }
}

/// Not-checked items that change what the decision means.
fn is_loud(note: &str) -> bool {
    note.contains("measurements not pinned") || note.starts_with("freshness")
}

fn row(out: &mut String, key: &str, value: &str) {
    let _ = writeln!(out, "  {key:<22} {value}");
}

fn reasons(out: &mut String, reasons: &[Reason]) {
    for r in reasons {
        let _ = writeln!(out, "  - {:<28} {}", r.code.to_string(), r.detail);
    }
}

/// The verdict as an aligned, sectioned table.
pub(crate) fn table(v: &Verdict) -> String {
    let mut out = String::new();
    let decision = if v.accepted { "ACCEPTED" } else { "REJECTED" };
    let _ = write!(out, "{decision}: {} evidence", v.platform);
    if let Some(vmpl) = v.facts.get("vmpl") {
        let _ = write!(out, " (report requested at VMPL {vmpl})");
    }
    let _ = writeln!(out);
    // What the decision does not cover goes next to it, not at the end.
    for note in v.not_checked.iter().filter(|n| is_loud(n)) {
        let _ = writeln!(out, "  !! {note}");
    }
    row(&mut out, "platform", v.platform.as_str());
    if v.simulated {
        let _ = writeln!(
            out,
            "  ** SIMULATED: no hardware root of trust; development only **"
        );
    }
    row(&mut out, "verified at", &v.verified_at.to_string());
    row(
        &mut out,
        "tcb status",
        v.tcb_status.as_deref().unwrap_or("-"),
    );
    let advisories = if v.advisory_ids.is_empty() {
        "none".to_owned()
    } else {
        v.advisory_ids.join(", ")
    };
    row(&mut out, "advisories", &advisories);
    if let Some(rule) = &v.policy_rule {
        row(&mut out, "accepted by", rule);
    }
    for (key, value) in &v.facts {
        row(&mut out, key, value);
    }
    if !v.measurements.is_empty() {
        let _ = writeln!(out, "measurements");
        for (key, value) in &v.measurements {
            row(&mut out, key, value);
        }
    }
    for (i, gpu) in v.gpus.iter().enumerate() {
        gpu_section(&mut out, i, gpu);
    }
    if !v.reasons.is_empty() {
        let _ = writeln!(out, "reasons");
        reasons(&mut out, &v.reasons);
    }
    if !v.not_checked.is_empty() {
        let _ = writeln!(out, "not checked");
        for item in &v.not_checked {
            let _ = writeln!(out, "  - {item}");
        }
    }
    out
}

fn gpu_section(out: &mut String, index: usize, gpu: &GpuVerdict) {
    let decision = if gpu.accepted { "accepted" } else { "REJECTED" };
    let _ = writeln!(out, "gpu {index}: {decision}");
    let fields = [
        ("device", &gpu.device),
        ("driver", &gpu.driver_version),
        ("vbios", &gpu.vbios_version),
        ("nonce", &gpu.nonce),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            row(out, key, value);
        }
    }
    row(
        out,
        "measurement blocks",
        &gpu.measurements.len().to_string(),
    );
    reasons(out, &gpu.reasons);
}

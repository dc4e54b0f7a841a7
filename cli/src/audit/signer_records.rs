//! `cloister audit chain`, second part: each Registry record of a signer
//! whose receipts were settled, against the bundle it names. The operator
//! writes these records; an honest one writes what an accepted bundle in its
//! attestation log says. So for every signer: the record's `bundleHash` must
//! be the SHA-256 of a logged bundle that was accepted, whose identity names
//! that signer and, as payout address, the provider the record credits, and
//! whose verdict and model give the record's measurement-set and model
//! digests. Whether that bundle deserved acceptance under YOUR policy is
//! `cloister audit log`'s question.

use std::collections::{BTreeSet, HashMap};

use alloy::primitives::{Address, B256};
use anyhow::Result;
use cloister_contracts::signer_record::{measurement_digest, model_digest};
use cloister_router::ledger::LogEntry;
use serde_json::Value;

use super::api::Api;
use super::chain::Chain;
use super::{Finding, field};

/// What a logged bundle says of its signer.
struct Logged {
    entry: i64,
    accepted: bool,
    signer: Option<Address>,
    payout: Option<Address>,
    measurement: Option<B256>,
    model: Option<B256>,
}

fn read_entry(e: &LogEntry) -> Logged {
    let bundle: Value = serde_json::from_str(&e.bundle).unwrap_or(Value::Null);
    let identity = field(&bundle, "identity");
    let address = |v: &Value| v.as_str().and_then(|s| s.parse::<Address>().ok());
    let verdict: Value = serde_json::from_str(&e.verdict).unwrap_or(Value::Null);
    let verdict = field(&verdict, "verdict");
    let measurement = verdict
        .get("platform")
        .and_then(Value::as_str)
        .zip(
            verdict
                .get("measurements")
                .and_then(|m| serde_json::from_value(m.clone()).ok()),
        )
        .and_then(|(platform, measurements)| measurement_digest(platform, &measurements).ok());
    Logged {
        entry: e.id,
        accepted: e.accepted,
        signer: address(field(identity, "signer")),
        payout: address(field(field(identity, "receipts"), "payout_address")),
        measurement,
        model: field(field(identity, "model"), "weights_sha256")
            .as_str()
            .and_then(|w| model_digest(w).ok()),
    }
}

fn sha256(bytes: &[u8]) -> B256 {
    B256::from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Checks the Registry record of each of `signers` against the router's
/// attestation log.
pub(super) async fn check(
    api: &Api,
    chain: &Chain,
    signers: &BTreeSet<Address>,
    findings: &mut Vec<Finding>,
) -> Result<()> {
    if signers.is_empty() {
        return Ok(());
    }
    let mut logged: HashMap<B256, Logged> = HashMap::new();
    api.log_pages(0, |entries| {
        for e in entries {
            logged.insert(sha256(e.bundle.as_bytes()), read_entry(&e));
        }
    })
    .await?;
    for &signer in signers {
        let record = chain.registry.signerRecord(signer).call().await?;
        let differs =
            |detail: String| Finding::new("signer_record", format!("signer {signer:#x}: {detail}"));
        let Some(l) = logged.get(&record.bundleHash) else {
            findings.push(differs(format!(
                "the Registry names bundle {} (sha256), which is not in the router's attestation log",
                record.bundleHash
            )));
            continue;
        };
        let at = format!("log entry {}", l.entry);
        if !l.accepted {
            findings.push(differs(format!(
                "{at} holds the bundle, and it was refused"
            )));
        }
        if l.signer != Some(signer) {
            findings.push(differs(format!(
                "{at}'s bundle attests signer {:?}",
                l.signer
            )));
        }
        if l.payout != Some(record.provider) {
            findings.push(differs(format!(
                "recorded for provider {:#x}, the bundle ({at}) names payout address {:?}",
                record.provider, l.payout
            )));
        }
        if l.measurement != Some(record.measurement) {
            findings.push(differs(format!(
                "recorded measurement set {}, the bundle's verdict ({at}) gives {:?}",
                record.measurement, l.measurement
            )));
        }
        if l.model != Some(record.model) {
            findings.push(differs(format!(
                "recorded model {}, the bundle ({at}) gives {:?}",
                record.model, l.model
            )));
        }
    }
    Ok(())
}

//! `cloister audit log`: the attestation log's chain, each logged verdict
//! re-reached under the auditor's policy, and served receipts against the
//! node states the log shows.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Result;
use cloister_attestation::Timestamp;
use cloister_attestation::bundle::EvidenceBundle;
use cloister_protocol::Address;
use cloister_router::ledger::{GENESIS_PREV_HASH, LogEntry, log_entry_hash};
use cloister_router::nodes::attest::{OwnCollateral, judge};
use serde_json::{Value, json};

use super::api::Api;
use super::field;
use super::{Finding, Judge, LogArgs, finish, unusable};
use crate::input::hex_bytes;

/// The auditor's own verdict on one logged entry.
#[derive(Debug, Clone)]
pub(crate) struct Judged {
    pub(crate) id: i64,
    pub(crate) verified_at: i64,
    /// Whether the auditor accepts the entry's bundle.
    pub(crate) accepted: bool,
    /// Whether the router logged it as accepted.
    pub(crate) logged_accepted: bool,
    /// The receipt signer the bundle attests, when accepted.
    pub(crate) signer: Option<Address>,
}

/// Every node's entries as the auditor judged them, in log order.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    pub(crate) nodes: BTreeMap<String, Vec<Judged>>,
    /// `verified_at` of the first entry checked.
    pub(crate) starts_at: Option<i64>,
}

impl Timeline {
    /// The node's entry in force at `at`: the last one logged at or before it.
    fn state_at(entries: &[Judged], at: i64) -> Option<&Judged> {
        entries.iter().rev().find(|e| e.verified_at <= at)
    }

    /// The latest entry of `node` at or before `at` that the auditor
    /// accepts.
    pub(crate) fn accepted_at(&self, node: &str, at: i64) -> Option<&Judged> {
        self.nodes
            .get(node)?
            .iter()
            .rev()
            .find(|e| e.verified_at <= at && e.accepted)
    }
}

/// The result of going through the log.
#[derive(Debug, Default)]
pub(crate) struct LogAudit {
    pub(crate) findings: Vec<Finding>,
    pub(crate) notes: Vec<String>,
    pub(crate) timeline: Timeline,
    pub(crate) entries: u64,
    pub(crate) head: Option<(i64, String)>,
}

/// Re-reaches the verdict on one logged entry: the bundle appraised at its
/// logged time, against its logged nonce, with its logged collateral (the
/// bundle's own when none was logged), under the auditor's policy; accepted
/// only when the identity is usable too, as the router decides.
/// Returns (accepted, signer, why not).
fn reverify(entry: &LogEntry, judge_with: &Judge) -> (bool, Option<Address>, String) {
    let nonce = match hex_bytes::<32>("logged nonce", &entry.nonce) {
        Ok(n) => n,
        Err(e) => return (false, None, format!("{e:#}")),
    };
    let bundle = match EvidenceBundle::from_json(entry.bundle.as_bytes()) {
        Ok(b) => b,
        Err(e) => return (false, None, format!("malformed bundle: {e}")),
    };
    let collateral = match entry.collateral.as_deref().map(OwnCollateral::from_json) {
        None => OwnCollateral::default(),
        Some(Ok(c)) => c,
        Some(Err(e)) => return (false, None, e.to_string()),
    };
    let Ok(at) = u64::try_from(entry.verified_at) else {
        return (false, None, "verified_at is before 1970".into());
    };
    let judgement = judge(
        &bundle,
        &judge_with.policy,
        Timestamp::from_unix(at),
        &collateral.options(nonce),
        &judge_with.domain,
    );
    let mut why: Vec<String> = Vec::new();
    if let Some(v) = &judgement.verdict {
        for r in v
            .reasons
            .iter()
            .chain(v.gpus.iter().flat_map(|g| g.reasons.iter()))
        {
            why.push(format!("{}: {}", r.code.as_str(), r.detail));
        }
    }
    for (code, detail) in &judgement.refusals {
        why.push(format!("{code}: {detail}"));
    }
    let accepted = judgement.accepted();
    (
        accepted,
        judgement.attested.map(|a| a.signer),
        why.join("; "),
    )
}

/// Walks the chain and re-verifies each entry of one page.
struct Walker<'a> {
    judge_with: &'a Judge,
    from: Option<i64>,
    expected_id: i64,
    prev: Option<String>,
    audit: LogAudit,
}

impl Walker<'_> {
    fn entry(&mut self, entry: &LogEntry) {
        let node = entry.node_id.as_str();
        let finding = |kind, detail: String| Finding::new(kind, detail).entry(entry.id).node(node);
        // The chain.
        if entry.id != self.expected_id {
            self.audit.findings.push(finding(
                "chain",
                format!(
                    "expected entry {} here, found entry {}: entries were removed, added or reordered",
                    self.expected_id, entry.id
                ),
            ));
        }
        let prev = match self.prev.take() {
            Some(prev) => prev,
            None if self.from.is_none() => GENESIS_PREV_HASH.to_owned(),
            None => {
                self.audit.notes.push(format!(
                    "--from {}: the chain starts at entry {} and its prev_hash {} is taken on trust",
                    self.from.unwrap_or(entry.id),
                    entry.id,
                    entry.prev_hash
                ));
                entry.prev_hash.clone()
            }
        };
        if entry.prev_hash != prev {
            self.audit.findings.push(finding(
                "chain",
                format!(
                    "prev_hash is {}, the entry before hashes to {prev}",
                    entry.prev_hash
                ),
            ));
        }
        let computed = log_entry_hash(entry);
        if computed != entry.entry_hash {
            self.audit.findings.push(finding(
                "chain",
                format!(
                    "entry_hash is {}, its contents hash to {computed}: the entry was altered",
                    entry.entry_hash
                ),
            ));
        }
        // Go on from what the router stored, so one alteration is one line.
        self.prev = Some(entry.entry_hash.clone());
        self.expected_id = entry.id.saturating_add(1);

        // The logged verdict document must say what the flag says.
        let document: Option<bool> = serde_json::from_str::<Value>(&entry.verdict)
            .ok()
            .and_then(|v| field(&v, "accepted").as_bool());
        if document != Some(entry.accepted) {
            self.audit.findings.push(finding(
                "verdict",
                format!(
                    "logged accepted={} but the logged verdict document says {}",
                    entry.accepted,
                    document.map_or("nothing readable".to_owned(), |d| format!("accepted={d}"))
                ),
            ));
        }
        // The auditor's own verdict.
        let (accepted, signer, why) = reverify(entry, self.judge_with);
        if accepted != entry.accepted {
            let detail = if entry.accepted {
                format!("the router accepted the node, your policy refuses it ({why})")
            } else {
                "the router refused the node, your policy accepts it".to_owned()
            };
            self.audit.findings.push(finding("verdict", detail));
        }
        self.audit
            .timeline
            .starts_at
            .get_or_insert(entry.verified_at);
        self.audit
            .timeline
            .nodes
            .entry(entry.node_id.clone())
            .or_default()
            .push(Judged {
                id: entry.id,
                verified_at: entry.verified_at,
                accepted,
                logged_accepted: entry.accepted,
                signer,
            });
        self.audit.entries += 1;
        self.audit.head = Some((entry.id, entry.entry_hash.clone()));
    }
}

/// Pages through the whole log (from `from`) and judges every entry.
pub(crate) async fn walk(api: &Api, judge_with: &Judge, from: Option<i64>) -> Result<LogAudit> {
    let mut walker = Walker {
        judge_with,
        from,
        expected_id: from.unwrap_or(1),
        prev: None,
        audit: LogAudit::default(),
    };
    api.log_pages(from.unwrap_or(1).saturating_sub(1), |page| {
        for entry in &page {
            walker.entry(entry);
        }
    })
    .await?;
    if let Some(from) = from.filter(|_| walker.audit.entries == 0) {
        anyhow::bail!("the router's log has no entry {from}");
    }
    Ok(walker.audit)
}

/// Checks every served receipt against the node's state when it was
/// recorded (the router's clock, as the log's times): allowed when, at some
/// moment within `grace` seconds before, the node's entry in force was one
/// the auditor accepts, attesting the receipt's signer.
fn check_served(
    timeline: &Timeline,
    served: &[Value],
    grace: u64,
    from: Option<i64>,
    findings: &mut Vec<Finding>,
    notes: &mut Vec<String>,
) {
    let grace = i64::try_from(grace).unwrap_or(i64::MAX);
    let mut skipped = 0u64;
    for item in served {
        let id = field(item, "id").as_str().unwrap_or("?");
        let node = field(item, "node_id").as_str().unwrap_or("?");
        let finding = |kind, detail: String| Finding::new(kind, detail).receipt(id).node(node);
        let Some(at) = field(item, "recorded_at").as_i64() else {
            findings.push(finding("served", "the router lists no recorded_at".into()));
            continue;
        };
        let signer: Option<Address> = field(item, "signer").as_str().and_then(|s| s.parse().ok());
        let window_start = at.saturating_sub(grace);
        if from.is_some() && timeline.starts_at.is_none_or(|start| window_start < start) {
            skipped += 1;
            continue;
        }
        let entries = timeline.nodes.get(node).map_or(&[][..], Vec::as_slice);
        // The entry in force at the window's start, and every later one up
        // to `at`.
        let mut candidates: Vec<&Judged> = Timeline::state_at(entries, window_start)
            .into_iter()
            .collect();
        candidates.extend(
            entries
                .iter()
                .filter(|e| e.verified_at > window_start && e.verified_at <= at),
        );
        if candidates
            .iter()
            .any(|e| e.accepted && e.signer == signer && signer.is_some())
        {
            continue;
        }
        let in_force = Timeline::state_at(entries, at);
        let detail = match (in_force, candidates.iter().find(|e| e.accepted)) {
            (None, _) => {
                format!("served (recorded at {at}) with no attestation of the node logged before")
            }
            (Some(_), Some(accepted)) => format!(
                "signed by {} but entry {} attested signer {}",
                field(item, "signer").as_str().unwrap_or("?"),
                accepted.id,
                accepted
                    .signer
                    .map_or("?".to_owned(), |s| format!("{s:#x}")),
            ),
            (Some(e), None) => format!(
                "served (recorded at {at}) while the node's latest entry {} (verified at {}) is a refusal{}",
                e.id,
                e.verified_at,
                if e.logged_accepted {
                    " by your policy (the router logged it accepted)"
                } else {
                    ""
                }
            ),
        };
        let mut f = finding("served", detail);
        if let Some(e) = in_force {
            f = f.entry(e.id);
        }
        findings.push(f);
    }
    if skipped > 0 {
        notes.push(format!(
            "{skipped} receipt(s) recorded before the first entry checked (--from) were not checked"
        ));
    }
}

/// `cloister audit log`
pub(crate) async fn run(args: LogArgs) -> ExitCode {
    let json = args.json;
    let result = async {
        let judge_with = args.judge.read()?;
        let api = Api::new(&args.router)?;
        let mut audit = walk(&api, &judge_with, args.from).await?;
        let served = api.receipt_pages("/v1/audit/receipts", None).await?;
        check_served(
            &audit.timeline,
            &served,
            args.drain_grace,
            args.from,
            &mut audit.findings,
            &mut audit.notes,
        );
        if judge_with.default_policy {
            audit.notes.push(
                "no --policy: the default policy pins no measurement and refuses simulated evidence"
                    .into(),
            );
        }
        Ok::<_, anyhow::Error>((audit, served.len()))
    }
    .await;
    let (mut audit, served) = match result {
        Ok(r) => r,
        Err(e) => return unusable(&e, json),
    };
    let head = audit.head.clone();
    if let Some((id, hash)) = &head {
        audit.notes.push(format!(
            "log head: entry {id}, hash {hash} (keep it: a later audit must find this entry unchanged)"
        ));
    }
    let summary = json!({
        "entries": audit.entries,
        "from": args.from,
        "head": head.map(|(id, hash)| json!({"id": id, "entry_hash": hash})),
        "receipts": served,
        "nodes": audit.timeline.nodes.len(),
    });
    let what = format!("{} log entries and {served} served receipts", audit.entries);
    finish(json, summary, &audit.notes, &audit.findings, &what)
}

//! `cloister audit receipts`: an account's receipts and the router's bill,
//! re-checked against the enclaves' signatures and the auditor's own view of
//! the attestation log.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use cloister_protocol::{Address, PayerKey, SignedReceipt, U256};
use serde_json::{Value, json};

use super::api::Api;
use super::field;
use super::log::{Timeline, walk};
use super::{Finding, Judge, JudgeArgs, RouterArgs, finish, unusable};
use crate::input::{hex_bytes, read_file};

/// `cloister audit receipts` options.
#[derive(Debug, Args)]
pub(crate) struct ReceiptsArgs {
    #[command(flatten)]
    router: RouterArgs,
    /// The account's API key (sent as Bearer): the router shows an account's
    /// receipts only to its keys.
    #[arg(
        long,
        value_name = "KEY",
        env = "CLOISTER_API_KEY",
        hide_env_values = true
    )]
    account: String,
    /// A file holding your payer key's 32-byte secret (64 hex digits): every
    /// receipt must name its address as payer.
    #[arg(long, value_name = "FILE", conflicts_with = "payer")]
    payer_key: Option<PathBuf>,
    /// Your payer address (repeat for several): every receipt must name one
    /// of them as payer.
    #[arg(long, value_name = "ADDRESS")]
    payer: Vec<String>,
    #[command(flatten)]
    judge: JudgeArgs,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

/// The payers receipts may name, and whether they came from the router.
fn payers(args: &ReceiptsArgs, listed: &Value) -> Result<(BTreeSet<Address>, bool)> {
    if let Some(path) = &args.payer_key {
        let bytes = read_file("payer key", path)?;
        let text = String::from_utf8(bytes).context("the payer key file is not text")?;
        let secret = hex_bytes::<32>("the payer key file", &text)?;
        let key = PayerKey::from_secret(&secret)
            .map_err(|e| anyhow::anyhow!("the payer key file: {e}"))?;
        return Ok((BTreeSet::from([key.address()]), false));
    }
    if !args.payer.is_empty() {
        let set = args
            .payer
            .iter()
            .map(|p| {
                p.trim()
                    .parse::<Address>()
                    .map_err(|_| anyhow::anyhow!("--payer {p:?} is not a 0x address"))
            })
            .collect::<Result<_>>()?;
        return Ok((set, false));
    }
    let set = field(listed, "payers")
        .as_array()
        .context("/v1/account lists no payers")?
        .iter()
        .filter_map(|p| p.as_str()?.parse().ok())
        .collect();
    Ok((set, true))
}

/// What the auditor totals.
#[derive(Debug, Default)]
struct Totals {
    receipts: u64,
    recomputed: U256,
    recorded: i128,
    charged: i128,
}

/// Checks one listed receipt; adds its findings and its charge.
fn check_one(
    item: &Value,
    judge_with: &Judge,
    timeline: &Timeline,
    payers: &BTreeSet<Address>,
    totals: &mut Totals,
    findings: &mut Vec<Finding>,
) {
    let id = field(item, "id").as_str().unwrap_or("?").to_owned();
    let node = field(item, "node_id").as_str().unwrap_or("?").to_owned();
    let mut differs = |kind: &'static str, detail: String| {
        findings.push(Finding::new(kind, detail).receipt(&id).node(&node));
    };
    totals.receipts += 1;
    let recorded = field(item, "recorded");
    totals.recorded += i128::from(field(recorded, "charge").as_i64().unwrap_or(0));
    match field(item, "charged").as_i64() {
        Some(c) => totals.charged += i128::from(c),
        None => differs("charge", "the router recorded no charge for it".into()),
    }
    let signed: SignedReceipt = match serde_json::from_value(field(item, "receipt").clone()) {
        Ok(s) => s,
        Err(e) => {
            differs(
                "receipt",
                format!("the stored receipt is not a signed receipt: {e}"),
            );
            return;
        }
    };
    let r = &signed.receipt;
    // The signature, and the signer the node attested.
    let digest = format!("{:#x}", r.signing_hash(&judge_with.domain));
    if digest != id {
        differs(
            "receipt",
            format!("its id is not its EIP-712 digest {digest}"),
        );
    }
    match signed.recover_signer(&judge_with.domain) {
        Err(e) => differs("signature", format!("does not verify: {e}")),
        Ok(recovered) => {
            if recovered != r.node_signer {
                differs(
                    "signature",
                    format!(
                        "signed by {recovered:#x}, names signer {:#x}",
                        r.node_signer
                    ),
                );
            }
            let issued = i64::try_from(r.issued_at).unwrap_or(i64::MAX);
            match timeline.accepted_at(&node, issued) {
                None => differs(
                    "signer",
                    format!(
                        "no entry of the log accepted under your policy attests node {node} at or before issued_at {issued}"
                    ),
                ),
                Some(entry) if entry.signer != Some(recovered) => differs(
                    "signer",
                    format!(
                        "signed by {recovered:#x}, but entry {} (the node's latest accepted) attested {}",
                        entry.id,
                        entry.signer.map_or("?".to_owned(), |s| format!("{s:#x}"))
                    ),
                ),
                Some(_) => {}
            }
        }
    }
    if !payers.contains(&r.payer) {
        differs(
            "payer",
            format!("billed to payer {:#x}, which is not yours", r.payer),
        );
    }
    // What the router recorded against what was signed.
    let fields: [(&str, String, String); 6] = [
        (
            "payer",
            format!("{:#x}", r.payer),
            field(recorded, "payer").as_str().unwrap_or("").to_owned(),
        ),
        (
            "signer",
            format!("{:#x}", r.node_signer),
            field(recorded, "signer").as_str().unwrap_or("").to_owned(),
        ),
        (
            "model",
            r.model_id.clone(),
            field(recorded, "model").as_str().unwrap_or("").to_owned(),
        ),
        (
            "request_id",
            format!("{:#x}", r.request_id),
            field(recorded, "request_id")
                .as_str()
                .unwrap_or("")
                .to_owned(),
        ),
        (
            "prompt_tokens",
            r.prompt_tokens.to_string(),
            field(recorded, "prompt_tokens").to_string(),
        ),
        (
            "completion_tokens",
            r.completion_tokens.to_string(),
            field(recorded, "completion_tokens").to_string(),
        ),
    ];
    for (name, signed_value, recorded_value) in fields {
        if signed_value != recorded_value {
            differs(
                "recorded",
                format!(
                    "the router recorded {name} {recorded_value}, the signed receipt says {signed_value}"
                ),
            );
        }
    }
    let charge = r.charge();
    totals.recomputed += charge;
    for (what, value) in [
        ("recorded charge", field(recorded, "charge")),
        ("charged", field(item, "charged")),
    ] {
        if let Some(v) = value
            .as_i64()
            .filter(|&v| U256::try_from(v).ok() != Some(charge))
        {
            differs(
                "charge",
                format!("{what} {v}, the receipt's tokens × prices make {charge}"),
            );
        }
    }
}

/// `cloister audit receipts`
pub(crate) async fn run(args: ReceiptsArgs) -> ExitCode {
    let json = args.json;
    let result = async {
        let judge_with = args.judge.read()?;
        let api = Api::new(&args.router)?;
        let key = args.account.trim();
        let account = api.get("/v1/account", Some(key)).await?;
        let (payers, from_router) = payers(&args, &account)?;
        let log = walk(&api, &judge_with, None).await?;
        let listed = api.receipt_pages("/v1/receipts", Some(key)).await?;
        Ok::<_, anyhow::Error>((judge_with, account, payers, from_router, log, listed))
    }
    .await;
    let (judge_with, account, payers, from_router, log, listed) = match result {
        Ok(r) => r,
        Err(e) => return unusable(&e, json),
    };
    let mut notes = Vec::new();
    if from_router {
        notes.push(format!(
            "payers taken from the router ({}): this trusts the router; give --payer-key or --payer to check them yourself",
            payers.iter().map(|p| format!("{p:#x}")).collect::<Vec<_>>().join(", ")
        ));
    }
    if !log.findings.is_empty() {
        notes.push(format!(
            "the attestation log has {} difference(s) of its own: run `cloister audit log`",
            log.findings.len()
        ));
    }
    let mut findings = Vec::new();
    let mut totals = Totals::default();
    for item in &listed {
        check_one(
            item,
            &judge_with,
            &log.timeline,
            &payers,
            &mut totals,
            &mut findings,
        );
    }
    let bill = field(&account, "charged").as_i64();
    match bill {
        Some(bill) if U256::try_from(bill).ok() == Some(totals.recomputed) => {}
        Some(bill) => findings.push(Finding::new(
            "bill",
            format!(
                "the router's bill is {bill}, the receipts' recomputed charges sum to {}",
                totals.recomputed
            ),
        )),
        None => findings.push(Finding::new("bill", "the router states no bill (charged)")),
    }
    if let Some(requests) = field(&account, "requests")
        .as_u64()
        .filter(|&r| r != totals.receipts)
    {
        findings.push(Finding::new(
            "bill",
            format!(
                "the router counts {requests} receipts for the account, it listed {}",
                totals.receipts
            ),
        ));
    }
    let summary = json!({
        "account": field(&account, "name"),
        "balance": field(&account, "balance"),
        "bill": bill,
        "receipts": totals.receipts,
        "recomputed_total": totals.recomputed.to_string(),
        "recorded_total": totals.recorded.to_string(),
        "charged_total": totals.charged.to_string(),
        "payers": payers.iter().map(|p| format!("{p:#x}")).collect::<Vec<_>>(),
        "payers_from_router": from_router,
    });
    if !json {
        println!(
            "account {}: {} receipts, recomputed total {}, router's bill {}, balance {}",
            field(&account, "name").as_str().unwrap_or("?"),
            totals.receipts,
            totals.recomputed,
            bill.map_or("?".to_owned(), |b| b.to_string()),
            field(&account, "balance")
        );
    }
    finish(
        json,
        summary,
        &notes,
        &findings,
        &format!("{} receipts and the bill", totals.receipts),
    )
}

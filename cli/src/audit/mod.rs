//! `cloister audit`: re-checking a router's books from outside, with the
//! auditor's own policy.
//!
//! - `audit log` ([`log`]): the attestation log's hash chain, every logged
//!   bundle re-verified at its logged time, and where traffic went
//!   (`/v1/audit/receipts`) against what the log allowed.
//! - `audit receipts` ([`receipts`]): an account's receipts, signatures,
//!   payers and charges against the router's bill.
//! - `audit chain` ([`chain`]): the router's settlement batches against the
//!   Settlement and Registry contracts.
//!
//! Exit status: 0 consistent, 1 differences (every one listed, one line
//! each), 2 unusable input or the router could not be read.

mod api;
mod chain;
mod log;
mod receipts;
mod signer_records;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use cloister_attestation::Policy;
use cloister_protocol::{Address, ReceiptDomain};
use serde_json::json;

use crate::input::policy;

/// `cloister audit ...`
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Re-verify the router's attestation log and where it sent traffic.
    ///
    /// Pages through GET /v1/attestation/log and checks the hash chain (ids
    /// consecutive, each entry linked to the one before, each hash
    /// recomputed). Re-verifies every logged bundle offline, at the time it
    /// was logged, with the collateral the router logged and the nonce it
    /// logged, under YOUR policy, and lists every entry whose logged verdict
    /// differs from yours. Then pages through GET /v1/audit/receipts (what
    /// was served: node, signer, times; no payer or token counts) and lists
    /// every receipt recorded while its node's latest entry was a refusal,
    /// or signed by a key that the latest accepted entry did not attest.
    ///
    /// Trusts only the hardware vendors' roots pinned in this binary and
    /// your policy. What it cannot see: entries cut from the END of the log
    /// (keep the head it prints and compare next time), and receipts the
    /// router never recorded.
    #[command(after_help = LOG_EXAMPLES)]
    Log(LogArgs),
    /// Re-check an account's receipts and the router's bill for it.
    ///
    /// Reads GET /v1/account and GET /v1/receipts with the account's API key.
    /// For every receipt: the enclave's EIP-712 signature, that the signer is
    /// the key the node attested (an entry of the log accepted under YOUR
    /// policy, at or before the receipt's issued_at), that the payer is
    /// yours, that what the router recorded (tokens, payer, signer, charge)
    /// is what the node signed, and the charge recomputed as tokens × price.
    /// Then the recomputed total against the router's bill.
    #[command(after_help = RECEIPTS_EXAMPLES)]
    Receipts(receipts::ReceiptsArgs),
    /// Re-check the router's settlement batches against the chain.
    ///
    /// Reads GET /v1/audit/batches and each batch's receipts, and the
    /// Settlement and Registry contracts over --rpc. For every batch the
    /// chain holds: each receipt's enclave signature, its signer registered
    /// in the Registry at the receipt's issued_at (the provider credited is
    /// the one the signer was recorded for), the Merkle root over the
    /// receipt digests, the receipt count, total and fee, and the per-user
    /// debits and per-provider credits, recomputed and compared with the
    /// chain. Also: batches the router calls confirmed that the chain lacks,
    /// and abandoned batches the chain holds. Then, for every signer of a
    /// settled receipt, the Registry's record against the bundle it names in
    /// the router's attestation log (GET /v1/attestation/log): accepted,
    /// attesting that signer, naming the credited provider as its payout
    /// address, and giving the recorded measurement-set and model digests.
    ///
    /// Trusts the chain (through your RPC) and nothing the router says. What
    /// it cannot see: receipts the router never put in a batch.
    #[command(after_help = chain::CHAIN_EXAMPLES)]
    Chain(chain::ChainArgs),
}

const LOG_EXAMPLES: &str = "Examples:
  cloister audit log --router https://router.example --policy policy.toml
  cloister audit log --router https://router.example --policy policy.toml --from 5012 --json

Exit status: 0 consistent; 1 differences, one line each (entry id, node,
what differs); 2 unusable input or the router could not be read.";

const RECEIPTS_EXAMPLES: &str = "Examples:
  cloister audit receipts --router https://router.example --account \"$CLOISTER_API_KEY\" \\
      --payer-key payer.hex --policy policy.toml
  CLOISTER_API_KEY=sk-cloister-... cloister audit receipts --router https://router.example \\
      --payer 0x1234...abcd --policy policy.toml --json

Without --payer-key or --payer the account's payer addresses are taken from
the router, which the output says: a receipt billed to someone else's payer
is then found only if the router lists that payer as yours.

Exit status: 0 everything agrees; 1 disagreements, one line each; 2 unusable
input or the router could not be read.";

/// `value[key]`, or null: reading what a router sent never panics.
pub(crate) fn field<'a>(value: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    static NULL: serde_json::Value = serde_json::Value::Null;
    value.get(key).unwrap_or(&NULL)
}

/// Where the router is.
#[derive(Debug, Args)]
pub(crate) struct RouterArgs {
    /// The router's base URL (http:// or https://).
    #[arg(long, value_name = "URL")]
    router: String,
    /// PEM CA certificate(s) to trust for an https router, besides the
    /// public web roots.
    #[arg(long, value_name = "FILE")]
    router_ca: Option<PathBuf>,
}

/// How the auditor judges: its own policy and the receipts' domain.
#[derive(Debug, Args)]
pub(crate) struct JudgeArgs {
    /// Your appraisal policy (TOML), parsed as `cloister verify` parses it.
    /// Without it, `cloister verify`'s default: genuine TDX or SEV-SNP
    /// hardware, no debug, simulated evidence refused, NO measurement pinned
    /// (see docs/attestation-policy.md). A router using a laxer policy than
    /// yours shows up as differences.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Chain id of the receipts' EIP-712 domain (the router's `chain_id`).
    #[arg(long, value_name = "ID", default_value_t = ReceiptDomain::DEVELOPMENT.chain_id)]
    chain_id: u64,
    /// Settlement contract of the receipts' EIP-712 domain (the router's
    /// `settlement_contract`).
    #[arg(
        long,
        value_name = "ADDRESS",
        default_value = "0x0000000000000000000000000000000000000000"
    )]
    settlement_contract: String,
}

/// The auditor's policy and domain, read.
#[derive(Debug)]
pub(crate) struct Judge {
    pub(crate) policy: Policy,
    pub(crate) domain: ReceiptDomain,
    /// Whether the policy is the built-in default.
    pub(crate) default_policy: bool,
}

impl JudgeArgs {
    fn read(&self) -> anyhow::Result<Judge> {
        let verifying_contract: Address =
            self.settlement_contract.trim().parse().map_err(|_| {
                anyhow::anyhow!(
                    "--settlement-contract {:?} is not a 0x address",
                    self.settlement_contract
                )
            })?;
        Ok(Judge {
            policy: policy(self.policy.as_deref())?,
            domain: ReceiptDomain {
                chain_id: self.chain_id,
                verifying_contract,
            },
            default_policy: self.policy.is_none(),
        })
    }
}

/// `cloister audit log` options.
#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    #[command(flatten)]
    router: RouterArgs,
    #[command(flatten)]
    judge: JudgeArgs,
    /// Start at this entry instead of entry 1: its prev_hash is taken on
    /// trust (the output says so); receipts recorded before it are not
    /// checked.
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
    from: Option<i64>,
    /// Seconds a request may still run after its node was refused (the
    /// router drains a node, it does not cut requests in flight): a receipt
    /// recorded within this long after a refusal is not reported.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    drain_grace: u64,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

/// One difference found: the line that reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    /// What kind of difference (stable, for scripts).
    pub(crate) kind: &'static str,
    /// The log entry concerned.
    pub(crate) entry: Option<i64>,
    /// The node concerned.
    pub(crate) node: Option<String>,
    /// The receipt concerned (its id).
    pub(crate) receipt: Option<String>,
    /// What differs.
    pub(crate) detail: String,
}

impl Finding {
    pub(crate) fn new(kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind,
            entry: None,
            node: None,
            receipt: None,
            detail: detail.into(),
        }
    }

    pub(crate) fn entry(mut self, id: i64) -> Self {
        self.entry = Some(id);
        self
    }

    pub(crate) fn node(mut self, node: &str) -> Self {
        self.node = Some(node.to_owned());
        self
    }

    pub(crate) fn receipt(mut self, id: &str) -> Self {
        self.receipt = Some(id.to_owned());
        self
    }

    /// The one line a human reads.
    pub(crate) fn line(&self) -> String {
        let mut head = Vec::new();
        if let Some(id) = self.entry {
            head.push(format!("entry {id}"));
        }
        if let Some(receipt) = &self.receipt {
            head.push(format!("receipt {receipt}"));
        }
        if let Some(node) = &self.node {
            head.push(format!("node {node}"));
        }
        format!("{}: {}: {}", head.join(", "), self.kind, self.detail)
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        json!({
            "kind": self.kind,
            "entry": self.entry,
            "node": self.node,
            "receipt": self.receipt,
            "detail": self.detail,
        })
    }
}

/// Prints a report: notes, then every finding, then the verdict line;
/// returns the exit status.
pub(crate) fn finish(
    json: bool,
    summary: serde_json::Value,
    notes: &[String],
    findings: &[Finding],
    what: &str,
) -> ExitCode {
    if json {
        let out = json!({
            "consistent": findings.is_empty(),
            "summary": summary,
            "notes": notes,
            "differences": findings.iter().map(Finding::to_json).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        for note in notes {
            println!("note: {note}");
        }
        for finding in findings {
            println!("DIFFERS {}", finding.line());
        }
        if findings.is_empty() {
            println!("CONSISTENT: {what}");
        } else {
            println!("INCONSISTENT: {} difference(s) in {what}", findings.len());
        }
    }
    if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Prints an unusable-input or network error; exit status 2.
pub(crate) fn unusable(error: &anyhow::Error, json: bool) -> ExitCode {
    eprintln!("error: {error:#}");
    if json {
        let body = json!({
            "consistent": null,
            "error": { "code": "unusable_input", "detail": format!("{error:#}") },
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
    }
    ExitCode::from(2)
}

/// Runs an audit subcommand; returns the process exit status.
pub(crate) fn run(command: AuditCommand) -> ExitCode {
    let json = match &command {
        AuditCommand::Log(args) => args.json,
        AuditCommand::Receipts(args) => args.json,
        AuditCommand::Chain(args) => args.json,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return unusable(
                &anyhow::anyhow!("cannot start the async runtime: {e}"),
                json,
            );
        }
    };
    match command {
        AuditCommand::Log(args) => runtime.block_on(log::run(args)),
        AuditCommand::Receipts(args) => runtime.block_on(receipts::run(args)),
        AuditCommand::Chain(args) => runtime.block_on(chain::run(args)),
    }
}

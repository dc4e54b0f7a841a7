//! `cloister audit chain`: the router's settlement batches against the
//! chain. For every batch: each receipt's enclave signature, its signer as
//! the Registry had it at the receipt's `issued_at` (and the provider it was
//! recorded for), the Merkle root over the receipt digests, the receipt
//! count, the total, the fee and the per-user debits and per-provider
//! credits, recomputed from the receipts and compared with what the
//! Settlement contract holds. Then each settled signer's Registry record
//! against the bundle it names ([`super::signer_records`]).

use std::collections::BTreeSet;
use std::process::ExitCode;

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::providers::{DynProvider, Provider};
use alloy::sol_types::SolValue;
use anyhow::{Context, Result, bail};
use clap::Args;
use cloister_contracts::bindings::{Registry, Settlement, entries};
use cloister_contracts::rpc::connect_read_only;
use cloister_contracts::{BatchItem, BatchPlan};
use cloister_protocol::{ReceiptDomain, SignedReceipt};
use serde_json::{Value, json};

use super::api::Api;
use super::{Finding, RouterArgs, field, finish, unusable};

/// `cloister audit chain` options.
#[derive(Debug, Args)]
pub(crate) struct ChainArgs {
    #[command(flatten)]
    router: RouterArgs,
    /// The chain's JSON-RPC URL (read only; no key needed).
    #[arg(long, env = "CLOISTER_RPC_URL", value_name = "URL")]
    rpc: String,
    /// Check only this batch.
    #[arg(long, value_name = "ID")]
    batch: Option<u64>,
    /// The Settlement contract to hold the router to [default: the one the
    /// router names; the output says so].
    #[arg(long, value_name = "ADDRESS")]
    settlement: Option<Address>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) const CHAIN_EXAMPLES: &str = "Examples:
  cloister audit chain --rpc http://127.0.0.1:8545 --router https://router.example
  cloister audit chain --rpc $CLOISTER_RPC_URL --router https://router.example --batch 12 --json

Exit status: 0 every batch matches the chain; 1 differences, one line each
(batch, receipt, what differs); 2 unusable input, or the router or the chain
could not be read.";

/// What the run saw, for the summary line.
#[derive(Debug, Default)]
struct Tally {
    batches: usize,
    on_chain: usize,
    receipts: usize,
    /// Signers of the settled receipts seen.
    signers: BTreeSet<Address>,
}

pub(crate) async fn run(args: ChainArgs) -> ExitCode {
    let mut notes = Vec::new();
    let mut findings = Vec::new();
    match audit(&args, &mut notes, &mut findings).await {
        Ok(tally) => finish(
            args.json,
            json!({
                "batches": tally.batches,
                "batches_on_chain": tally.on_chain,
                "receipts": tally.receipts,
            }),
            &notes,
            &findings,
            &format!(
                "{} batch(es), {} on chain, {} receipt(s)",
                tally.batches, tally.on_chain, tally.receipts
            ),
        ),
        Err(e) => unusable(&e, args.json),
    }
}

/// The contracts as the auditor reads them.
pub(super) struct Chain {
    pub(super) settlement: Settlement::SettlementInstance<DynProvider>,
    pub(super) registry: Registry::RegistryInstance<DynProvider>,
    pub(super) domain: ReceiptDomain,
    pub(super) fee_bps: u16,
}

async fn audit(
    args: &ChainArgs,
    notes: &mut Vec<String>,
    findings: &mut Vec<Finding>,
) -> Result<Tally> {
    let api = Api::new(&args.router)?;
    let first = api.get("/v1/audit/batches?limit=1", None).await?;
    let named = field(field(&first, "chain"), "settlement")
        .as_str()
        .and_then(|s| s.parse::<Address>().ok())
        .context("the router does not name its Settlement contract (GET /v1/audit/batches)")?;
    let router_chain_id = field(field(&first, "chain"), "chain_id").as_u64();
    let settlement_address = match args.settlement {
        Some(pinned) if pinned != named => {
            findings.push(Finding::new(
                "settlement_contract",
                format!("the router settles to {named:#x}, not {pinned:#x}"),
            ));
            return Ok(Tally::default());
        }
        Some(pinned) => pinned,
        None => {
            notes.push(format!(
                "Settlement contract {named:#x} as the router names it (pin it with --settlement)"
            ));
            named
        }
    };
    let chain = connect(&args.rpc, settlement_address).await?;
    if router_chain_id != Some(chain.domain.chain_id) {
        findings.push(Finding::new(
            "chain_id",
            format!(
                "the router signs for chain {router_chain_id:?}, the RPC serves chain {}",
                chain.domain.chain_id
            ),
        ));
    }
    let mut tally = Tally::default();
    for batch in batch_list(&api, args.batch).await? {
        tally.batches += 1;
        check_batch(&api, &chain, &batch, &mut tally, notes, findings).await?;
    }
    super::signer_records::check(&api, &chain, &tally.signers, findings).await?;
    if let (Some(id), 0) = (args.batch, tally.batches) {
        bail!("the router has no batch {id}");
    }
    Ok(tally)
}

async fn connect(rpc: &str, settlement: Address) -> Result<Chain> {
    let url = rpc
        .parse()
        .map_err(|e| anyhow::anyhow!("--rpc {rpc:?}: {e}"))?;
    let provider = connect_read_only(url);
    let chain_id = provider
        .get_chain_id()
        .await
        .with_context(|| format!("cannot read the chain id from {rpc}"))?;
    let settlement = Settlement::new(settlement, provider.clone());
    let registry = settlement.registry().call().await.with_context(|| {
        format!(
            "no Settlement contract at {:#x} on {rpc}",
            settlement.address()
        )
    })?;
    let fee_bps = settlement
        .feeBps()
        .call()
        .await
        .context("Settlement.feeBps")?;
    Ok(Chain {
        domain: ReceiptDomain {
            chain_id,
            verifying_contract: *settlement.address(),
        },
        registry: Registry::new(registry, provider),
        settlement,
        fee_bps,
    })
}

/// The router's batches (or the one asked for).
async fn batch_list(api: &Api, only: Option<u64>) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut after: i64 = 0;
    loop {
        let page = api
            .get(&format!("/v1/audit/batches?after={after}&limit=1000"), None)
            .await?;
        let Some(data) = field(&page, "data").as_array() else {
            bail!("/v1/audit/batches did not answer a list");
        };
        let Some(last) = data.last().and_then(|b| field(b, "id").as_i64()) else {
            return Ok(out);
        };
        if last <= after {
            bail!("the router paged backwards: asked for batches after {after}, got {last}");
        }
        after = last;
        out.extend(
            data.iter()
                .filter(|b| only.is_none_or(|id| field(b, "id").as_u64() == Some(id)))
                .cloned(),
        );
    }
}

/// Every receipt of batch `id`, following `next_after`.
async fn batch_receipts(api: &Api, id: u64) -> Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut after = String::new();
    loop {
        let page = api
            .get(
                &format!("/v1/audit/batches/{id}?limit=1000&after={after}"),
                None,
            )
            .await?;
        let Some(data) = field(&page, "data").as_array() else {
            bail!("/v1/audit/batches/{id} did not answer a list");
        };
        if data.is_empty() {
            return Ok(items);
        }
        let next = field(&page, "next_after").as_str().unwrap_or_default();
        if next.is_empty() || next <= after.as_str() {
            bail!("/v1/audit/batches/{id} gave no way to the next page");
        }
        after = next.to_owned();
        items.extend(data.iter().cloned());
    }
}

async fn check_batch(
    api: &Api,
    chain: &Chain,
    batch: &Value,
    tally: &mut Tally,
    notes: &mut Vec<String>,
    findings: &mut Vec<Finding>,
) -> Result<()> {
    let id = field(batch, "id")
        .as_u64()
        .context("a batch without a numeric id")?;
    let state = field(batch, "state").as_str().unwrap_or_default();
    let differs =
        |kind: &'static str, detail: String| Finding::new(kind, format!("batch {id}: {detail}"));
    let onchain = chain
        .settlement
        .batches(id)
        .call()
        .await
        .with_context(|| format!("Settlement.batches({id})"))?;
    let router_root: Option<B256> = field(batch, "root").as_str().and_then(|r| r.parse().ok());
    if onchain.state == 0 {
        match state {
            "confirmed" | "finalized" => findings.push(differs(
                "batch_missing",
                format!("the router says {state}, the chain holds no batch {id}"),
            )),
            _ => notes.push(format!("batch {id} ({state}) is not on chain")),
        }
        return Ok(());
    }
    if state == "abandoned" {
        if router_root == Some(onchain.root) {
            findings.push(differs(
                "abandoned_on_chain",
                "the router abandoned this batch and released its receipts, but the chain holds it"
                    .into(),
            ));
        } else {
            notes.push(format!(
                "batch {id} was abandoned by the router; the chain's batch {id} is another"
            ));
        }
        return Ok(());
    }
    tally.on_chain += 1;
    if router_root != Some(onchain.root) {
        findings.push(differs(
            "merkle_root",
            format!(
                "the router stored root {}, the chain holds {}",
                field(batch, "root"),
                onchain.root
            ),
        ));
    }
    let receipts = batch_receipts(api, id).await?;
    tally.receipts += receipts.len();
    let mut items = Vec::with_capacity(receipts.len());
    for item in &receipts {
        if let Some((batch_item, signer)) = check_receipt(chain, id, item, findings).await? {
            items.push(batch_item);
            tally.signers.insert(signer);
        }
    }
    if u32::try_from(receipts.len()).ok() != Some(onchain.receiptCount) {
        findings.push(differs(
            "receipt_count",
            format!(
                "the router lists {} receipts, the chain counts {}",
                receipts.len(),
                onchain.receiptCount
            ),
        ));
    }
    let Ok(plan) = BatchPlan::new(id, items, chain.fee_bps) else {
        findings.push(differs(
            "receipts",
            "no usable receipt to recompute from".into(),
        ));
        return Ok(());
    };
    if plan.root() != onchain.root {
        findings.push(differs(
            "merkle_root",
            format!(
                "recomputed from the receipts: {}, the chain holds {}",
                plan.root(),
                onchain.root
            ),
        ));
    }
    if plan.total != U256::from(onchain.total) {
        findings.push(differs(
            "total",
            format!(
                "receipts charge {}, the chain debited {}",
                plan.total, onchain.total
            ),
        ));
    }
    if plan.fee != U256::from(onchain.fee) {
        findings.push(differs(
            "fee",
            format!(
                "{} at today's {} bps, the chain took {} (the fee rate may have changed since)",
                plan.fee, chain.fee_bps, onchain.fee
            ),
        ));
    }
    if keccak256(entries(&plan.debits).abi_encode()) != onchain.debitsHash {
        findings.push(differs(
            "debits",
            format!(
                "the per-user debits recomputed from the receipts ({}) are not the chain's",
                list(&plan.debits)
            ),
        ));
    }
    if keccak256(entries(&plan.credits).abi_encode()) != onchain.creditsHash {
        findings.push(differs(
            "credits",
            format!(
                "the per-provider credits recomputed from the receipts ({}) are not the chain's",
                list(&plan.credits)
            ),
        ));
    }
    Ok(())
}

fn list(entries: &[(Address, U256)]) -> String {
    entries
        .iter()
        .map(|(a, v)| format!("{a:#x}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks one receipt; the batch item it stands for when it is usable.
async fn check_receipt(
    chain: &Chain,
    batch: u64,
    item: &Value,
    findings: &mut Vec<Finding>,
) -> Result<Option<(BatchItem, Address)>> {
    let listed = field(item, "id").as_str().unwrap_or_default().to_owned();
    let differs = |kind: &'static str, detail: String| {
        Finding::new(kind, format!("batch {batch}: {detail}")).receipt(&listed)
    };
    let signed: SignedReceipt = match serde_json::from_value(field(item, "receipt").clone()) {
        Ok(s) => s,
        Err(e) => {
            findings.push(differs("receipt_unreadable", e.to_string()));
            return Ok(None);
        }
    };
    let r = &signed.receipt;
    let digest = r.signing_hash(&chain.domain);
    if format!("{digest:#x}") != listed.to_ascii_lowercase() {
        findings.push(differs(
            "receipt_id",
            format!("the receipt's EIP-712 digest is {digest:#x}"),
        ));
    }
    match signed.recover_signer(&chain.domain) {
        Err(e) => findings.push(differs("signature", format!("does not verify: {e}"))),
        Ok(recovered) if recovered != r.node_signer => findings.push(differs(
            "signature",
            format!(
                "signed by {recovered:#x}, names signer {:#x}",
                r.node_signer
            ),
        )),
        Ok(_) => {}
    }
    let at = chain
        .registry
        .signerActiveAt(r.node_signer, r.issued_at)
        .call()
        .await
        .context("Registry.signerActiveAt")?;
    if !at.active {
        findings.push(differs(
            "signer_not_registered",
            format!(
                "signer {:#x} was not registered at issued_at {}",
                r.node_signer, r.issued_at
            ),
        ));
    }
    Ok(Some((
        BatchItem {
            digest,
            charge: r.charge(),
            payer: r.payer,
            provider: at.provider,
        },
        r.node_signer,
    )))
}

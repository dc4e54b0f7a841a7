//! The settlement worker (DESIGN.md section 6): batches stored receipts,
//! posts them to the Settlement contract, waits for the chain to hold them,
//! and releases their credits after the challenge window.
//!
//! Crash safety rests on two facts: a batch is written to the ledger, with
//! its receipts assigned to it, before its transaction is sent; and the
//! contract accepts a batch id once. So whatever stopped the worker (a
//! crash, an RPC outage, a dropped or replaced transaction), the next tick
//! finds the batch still `written`, asks the chain whether it holds that id,
//! and either marks it confirmed or sends the same batch again. A receipt is
//! never in two batches and never left out: it stays unbatched until a
//! batch that includes it is written, and is released only when the chain
//! refuses that batch for good.
//!
//! Only receipts the chain will accept are batched: the receipt's signature
//! must verify in the settlement domain, its signer must have been
//! registered in the Registry at the receipt's `issued_at` (else anyone
//! could invalidate the batch), and its payer's escrow must cover it. Other
//! receipts wait, and are counted in each tick's report.
//!
//! With PostgreSQL and several routers, one settles at a time: the worker
//! holds the session advisory lock [`SETTLEMENT_LOCK_KEY`] and the others
//! skip their ticks.
//!
//! Each round also keeps the Registry's signers in step with attestation
//! ([`signers`]).

pub mod signers;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider};
use cloister_contracts::bindings::{Registry, Settlement};
use cloister_contracts::deploy::Deployment;
use cloister_contracts::revert::{ChainError, Revert, send_and_confirm};
use cloister_contracts::{BatchError, BatchItem, BatchPlan};
use cloister_protocol::{ReceiptDomain, SignedReceipt};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::{Mutex, watch};

use crate::ledger::{
    BatchRow, BatchState, BatchWrite, Ledger, LedgerError, NewBatch, SETTLEMENT_LOCK_KEY,
};
use signers::{KnownSigners, SignerSource};

/// Each signer's provider and registration periods (from, until; 0 open),
/// read once per round.
type SignerPeriods = HashMap<Address, (Address, Vec<(u64, u64)>)>;

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct SettlementSettings {
    /// Time between ticks.
    pub interval: Duration,
    /// Most receipts in one batch; this many new receipts start a round
    /// before the interval is over.
    pub max_receipts: usize,
}

impl Default for SettlementSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            max_receipts: 1000,
        }
    }
}

/// Why a tick stopped.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SettleError {
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("chain: {0}")]
    Chain(#[from] ChainError),
    #[error("forming a batch: {0}")]
    Plan(#[from] BatchError),
    #[error("stored data unreadable: {0}")]
    Corrupt(String),
}

impl SettleError {
    /// Whether the next tick can succeed without anyone doing anything.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Chain(e) => e.retryable(),
            Self::Ledger(LedgerError::Database { .. }) => true,
            _ => false,
        }
    }
}

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// Another router holds the settlement lock; nothing was done.
    pub not_leader: bool,
    /// Written batches the chain was found (or made) to hold.
    pub confirmed: Vec<i64>,
    /// Batches the chain refused for good; their receipts were released.
    pub abandoned: Vec<i64>,
    /// The batch written this tick, and how many receipts it holds.
    pub written: Option<(i64, usize)>,
    /// Receipts left for later: signer not registered at their time.
    pub waiting_for_signer: usize,
    /// Receipts left for later: payer's escrow too low.
    pub waiting_for_escrow: usize,
    /// Receipts never posted: their signature does not verify in the
    /// settlement domain.
    pub unverifiable: usize,
    /// Batches whose credits were released.
    pub finalized: Vec<i64>,
    /// Confirmed batches the chain no longer holds (reorganisation), set
    /// back to written to be sent again.
    pub reopened: Vec<i64>,
    /// Enclave signers recorded in the Registry this round.
    pub signers_recorded: Vec<Address>,
    /// Enclave signers removed from the Registry this round.
    pub signers_removed: Vec<Address>,
    /// Serving nodes that name no payout address (their receipts wait).
    pub signers_without_payout: usize,
    /// Signers the Registry refused to record this round.
    pub signers_refused: usize,
}

/// A batch as posted, stored with it in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPlan {
    pub root: B256,
    pub receipt_count: u32,
    pub debits: Vec<(Address, U256)>,
    pub credits: Vec<(Address, U256)>,
    pub total: U256,
    pub fee: U256,
}

/// The worker.
pub struct Settler {
    ledger: Ledger,
    settlement: Settlement::SettlementInstance<DynProvider>,
    registry: Registry::RegistryInstance<DynProvider>,
    provider: DynProvider,
    domain: ReceiptDomain,
    settings: SettlementSettings,
    lock: Mutex<Option<sqlx::pool::PoolConnection<sqlx::Any>>>,
    signers: Option<SignerSource>,
    known: Mutex<KnownSigners>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl std::fmt::Debug for Settler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settler")
            .field("domain", &self.domain)
            .field("settings", &self.settings)
            .field("signers", &self.signers.is_some())
            .finish_non_exhaustive()
    }
}

impl Settler {
    /// A worker posting with `provider` (which signs as the Registry's
    /// operator) to the contracts of `deployment`.
    pub fn new(
        ledger: Ledger,
        provider: DynProvider,
        deployment: &Deployment,
        settings: SettlementSettings,
    ) -> Self {
        Self {
            ledger,
            settlement: Settlement::new(deployment.settlement, provider.clone()),
            registry: Registry::new(deployment.registry, provider.clone()),
            provider,
            domain: ReceiptDomain {
                chain_id: deployment.chain_id,
                verifying_contract: deployment.settlement,
            },
            settings,
            lock: Mutex::new(None),
            signers: None,
            known: Mutex::default(),
            metrics: None,
        }
    }

    /// Reports each round on `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Records the signers `source` names as attested, each round.
    #[must_use]
    pub fn with_signers(mut self, source: SignerSource) -> Self {
        self.signers = Some(source);
        self
    }

    /// Ticks every interval until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(
            settlement = %self.domain.verifying_contract,
            chain_id = self.domain.chain_id,
            interval_s = self.settings.interval.as_secs(),
            "settlement worker started"
        );
        loop {
            let outcome = self.tick().await;
            match &outcome {
                Ok(report) => log_report(report),
                Err(e) if e.retryable() => {
                    tracing::warn!(error = %e, "settlement tick failed; retrying next tick");
                }
                Err(e) => tracing::error!(error = %e, "settlement tick failed"),
            }
            self.report_metrics(&outcome).await;
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => break,
                () = self.until_next_round() => {}
            }
        }
        tracing::info!("settlement worker stopped");
    }

    /// Waits for the interval, or less when `max_receipts` receipts arrived
    /// since this call began (checked every second).
    async fn until_next_round(&self) {
        let deadline = tokio::time::Instant::now() + self.settings.interval;
        let max = i64::try_from(self.settings.max_receipts).unwrap_or(i64::MAX);
        let start = self.ledger.unbatched_count().await.ok();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left.min(Duration::from_secs(1))).await;
            if let (Some(start), Ok(now)) = (start, self.ledger.unbatched_count().await)
                && now.saturating_sub(start) >= max
            {
                return;
            }
        }
    }

    async fn report_metrics(&self, outcome: &Result<TickReport, SettleError>) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        let (result, batches, completed) = match outcome {
            Ok(r) if r.not_leader => ("not_leader", Vec::new(), None),
            Ok(r) => (
                "ok",
                vec![
                    ("written", usize::from(r.written.is_some())),
                    ("confirmed", r.confirmed.len()),
                    ("abandoned", r.abandoned.len()),
                    ("finalized", r.finalized.len()),
                    ("reopened", r.reopened.len()),
                ],
                Some(crate::state::now_unix()),
            ),
            Err(e) if e.retryable() => ("retryable", Vec::new(), None),
            Err(_) => ("failed", Vec::new(), None),
        };
        let unbatched = self.ledger.unbatched_count().await.ok();
        metrics.settlement_round(result, &batches, unbatched, completed);
    }

    /// One round: resume written batches, write and post a new one, release
    /// credits of batches past their challenge window.
    pub async fn tick(&self) -> Result<TickReport, SettleError> {
        let mut report = TickReport::default();
        if !self.lead().await? {
            report.not_leader = true;
            return Ok(report);
        }
        self.sync_signers(&mut report).await?;
        self.resume(&mut report).await?;
        let written = match self.write_next_batch(&mut report).await? {
            Some(id) => self.ledger.batch(id).await?,
            None => None,
        };
        if let Some(row) = written {
            self.post(&row, &mut report).await?;
        }
        self.finalize_due(&mut report).await?;
        Ok(report)
    }

    /// Whether this router is the one that settles (keeps the lock's
    /// connection between ticks; re-takes it after the connection is lost).
    async fn lead(&self) -> Result<bool, SettleError> {
        let mut lock = self.lock.lock().await;
        if let Some(conn) = lock.as_mut() {
            if sqlx::query("SELECT 1").execute(&mut **conn).await.is_ok() {
                return Ok(true);
            }
            if let Some(broken) = lock.take() {
                drop(broken.detach());
            }
        }
        *lock = self.ledger.try_settlement_lock().await?;
        if lock.is_none() {
            tracing::debug!(key = SETTLEMENT_LOCK_KEY, "another router settles");
        }
        Ok(lock.is_some())
    }

    /// Sends (again) or confirms every written batch.
    async fn resume(&self, report: &mut TickReport) -> Result<(), SettleError> {
        for row in self.ledger.batches_in_state(BatchState::Written).await? {
            self.post(&row, report).await?;
        }
        Ok(())
    }

    /// Forms and writes the next batch from unbatched receipts the chain will
    /// accept; does not send it. `None` when there is nothing to batch.
    pub async fn write_next_batch(
        &self,
        report: &mut TickReport,
    ) -> Result<Option<i64>, SettleError> {
        // Receipts that cannot be settled yet (signer not recorded, payer's
        // escrow short) or ever (unverifiable) must not starve the others:
        // page on past them until the batch is full or every unbatched
        // receipt was seen. Each payer's receipts are taken in order while its
        // escrow covers them.
        let max = self.settings.max_receipts;
        let page = i64::try_from(max.max(1)).unwrap_or(i64::MAX);
        let mut signers = SignerPeriods::new();
        let mut escrow: BTreeMap<Address, U256> = BTreeMap::new();
        let mut items = Vec::new();
        let mut cursor: Option<(i64, String)> = None;
        while items.len() < max {
            let stored = self
                .ledger
                .unbatched_receipts(cursor.as_ref().map(|(t, d)| (*t, d.as_str())), page)
                .await?;
            let Some(last) = stored.last() else {
                break;
            };
            cursor = Some((last.received_at, last.digest.clone()));
            let full_page = i64::try_from(stored.len()).unwrap_or(i64::MAX) == page;
            for row in &stored {
                if items.len() >= max {
                    break;
                }
                let Some(item) = self.candidate(row, &mut signers, report).await? else {
                    continue;
                };
                if let std::collections::btree_map::Entry::Vacant(slot) = escrow.entry(item.payer) {
                    let balance = self
                        .settlement
                        .escrow(item.payer)
                        .call()
                        .await
                        .map_err(|e| ChainError::from_contract("Settlement.escrow", e))?;
                    slot.insert(balance);
                }
                let left = escrow.entry(item.payer).or_default();
                if *left >= item.charge {
                    *left -= item.charge;
                    items.push(item);
                } else {
                    report.waiting_for_escrow += 1;
                }
            }
            if !full_page {
                break;
            }
        }
        if items.is_empty() {
            return Ok(None);
        }
        let fee_bps = self
            .settlement
            .feeBps()
            .call()
            .await
            .map_err(|e| ChainError::from_contract("Settlement.feeBps", e))?;
        let id = self.ledger.next_batch_id().await?;
        let id_u64 =
            u64::try_from(id).map_err(|_| SettleError::Corrupt(format!("batch id {id}")))?;
        let plan = BatchPlan::new(id_u64, items, fee_bps)?;
        let stored_plan = StoredPlan {
            root: plan.root(),
            receipt_count: plan.receipt_count(),
            debits: plan.debits.clone(),
            credits: plan.credits.clone(),
            total: plan.total,
            fee: plan.fee,
        };
        let new = NewBatch {
            id,
            root: format!("{:#x}", plan.root()),
            total: plan.total.to_string(),
            fee: plan.fee.to_string(),
            plan: serde_json::to_string(&stored_plan)
                .map_err(|e| SettleError::Corrupt(e.to_string()))?,
            digests: plan
                .items
                .iter()
                .map(|i| format!("{:#x}", i.digest))
                .collect(),
        };
        match self.ledger.write_batch(&new).await? {
            BatchWrite::Written => {
                tracing::info!(batch = id, receipts = plan.items.len(), total = %plan.total, fee = %plan.fee, "settlement batch written");
                report.written = Some((id, plan.items.len()));
                Ok(Some(id))
            }
            BatchWrite::Conflict => {
                tracing::warn!(
                    batch = id,
                    "another writer took these receipts or this id; trying next tick"
                );
                Ok(None)
            }
        }
    }

    /// The batch item of a stored receipt, when the chain will take it now:
    /// its signature verifies in the settlement domain and its signer was
    /// registered at its `issued_at`. Counts the others in `report`.
    async fn candidate(
        &self,
        row: &crate::ledger::UnbatchedReceipt,
        signers: &mut SignerPeriods,
        report: &mut TickReport,
    ) -> Result<Option<BatchItem>, SettleError> {
        // A receipt that does not parse, or whose signature does not verify
        // in this domain (signed for another contract, or altered in
        // storage), would let anyone invalidate the batch: never posted.
        let Ok(signed) = serde_json::from_str::<SignedReceipt>(&row.receipt) else {
            tracing::error!(receipt = %row.digest, "stored receipt does not parse; never settled");
            report.unverifiable += 1;
            return Ok(None);
        };
        let r = &signed.receipt;
        if signed.recover_signer(&self.domain).ok() != Some(r.node_signer) {
            report.unverifiable += 1;
            return Ok(None);
        }
        if let std::collections::hash_map::Entry::Vacant(slot) = signers.entry(r.node_signer) {
            let record = self
                .registry
                .signerRecord(r.node_signer)
                .call()
                .await
                .map_err(|e| ChainError::from_contract("Registry.signerRecord", e))?;
            let periods = record.periods.iter().map(|p| (p.from, p.until)).collect();
            slot.insert((record.provider, periods));
        }
        let Some((provider, periods)) = signers.get(&r.node_signer) else {
            return Ok(None);
        };
        let t = r.issued_at;
        let covered = periods
            .iter()
            .any(|(from, until)| t >= *from && (*until == 0 || t < *until));
        if !covered {
            report.waiting_for_signer += 1;
            return Ok(None);
        }
        Ok(Some(BatchItem {
            digest: r.signing_hash(&self.domain),
            charge: r.charge(),
            payer: r.payer,
            provider: *provider,
        }))
    }

    /// Makes the chain hold a written batch: confirms it when the chain
    /// already does, else sends it; abandons it when the chain refuses it.
    async fn post(&self, row: &BatchRow, report: &mut TickReport) -> Result<(), SettleError> {
        let plan: StoredPlan = serde_json::from_str(&row.plan)
            .map_err(|e| SettleError::Corrupt(format!("batch {} plan: {e}", row.id)))?;
        let id = u64::try_from(row.id)
            .map_err(|_| SettleError::Corrupt(format!("batch id {}", row.id)))?;
        if self.held_by_chain(id, &plan, report).await? {
            return Ok(());
        }
        let call = self.settlement.postBatch(
            id,
            plan.root,
            plan.receipt_count,
            cloister_contracts::bindings::entries(&plan.debits),
            cloister_contracts::bindings::entries(&plan.credits),
            plan.fee,
        );
        match send_and_confirm("Settlement.postBatch", call).await {
            Ok(receipt) => {
                self.ledger
                    .set_batch_tx(row.id, &format!("{:#x}", receipt.transaction_hash))
                    .await?;
                self.ledger.confirm_batch(row.id).await?;
                tracing::info!(batch = row.id, tx = %receipt.transaction_hash, gas = receipt.gas_used, "settlement batch confirmed");
                report.confirmed.push(row.id);
                Ok(())
            }
            Err(ChainError::Reverted {
                revert: Revert::Settlement(Settlement::SettlementErrors::BatchExists(_)),
                ..
            }) => {
                self.held_by_chain(id, &plan, report).await?;
                Ok(())
            }
            Err(e @ ChainError::Reverted { .. }) => {
                let note = e.to_string();
                tracing::error!(batch = row.id, error = %note, "the chain refused the batch; its receipts go back to the queue");
                self.ledger.abandon_batch(row.id, &note).await?;
                report.abandoned.push(row.id);
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the chain holds batch `id`; confirms or abandons the row.
    async fn held_by_chain(
        &self,
        id: u64,
        plan: &StoredPlan,
        report: &mut TickReport,
    ) -> Result<bool, SettleError> {
        let onchain = self
            .settlement
            .batches(id)
            .call()
            .await
            .map_err(|e| ChainError::from_contract("Settlement.batches", e))?;
        if onchain.state == 0 {
            return Ok(false);
        }
        let row_id = i64::try_from(id).unwrap_or(i64::MAX);
        if onchain.root == plan.root {
            self.ledger.confirm_batch(row_id).await?;
            report.confirmed.push(row_id);
        } else {
            let note = format!(
                "batch id {id} holds root {} on chain, not ours",
                onchain.root
            );
            tracing::error!(batch = id, %note, "batch id taken on chain by another batch; receipts go back to the queue");
            self.ledger.abandon_batch(row_id, &note).await?;
            report.abandoned.push(row_id);
        }
        Ok(true)
    }

    /// Releases the credits of confirmed batches whose window has passed.
    async fn finalize_due(&self, report: &mut TickReport) -> Result<(), SettleError> {
        let confirmed = self.ledger.batches_in_state(BatchState::Confirmed).await?;
        if confirmed.is_empty() {
            return Ok(());
        }
        let window = self
            .settlement
            .challengeWindow()
            .call()
            .await
            .map_err(|e| ChainError::from_contract("Settlement.challengeWindow", e))?;
        let now = self
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(|e| ChainError::Rpc {
                call: "eth_getBlockByNumber",
                source: alloy::contract::Error::TransportError(e),
            })?
            .map_or(0, |b| b.header.timestamp);
        for row in confirmed {
            let id = u64::try_from(row.id)
                .map_err(|_| SettleError::Corrupt(format!("batch id {}", row.id)))?;
            let onchain = self
                .settlement
                .batches(id)
                .call()
                .await
                .map_err(|e| ChainError::from_contract("Settlement.batches", e))?;
            match onchain.state {
                0 => {
                    // Confirmed once, gone now: a reorganisation dropped it.
                    // Written again, it is sent again next round (same id).
                    tracing::warn!(
                        batch = row.id,
                        "the chain no longer holds this confirmed batch; sending it again"
                    );
                    self.ledger.reopen_batch(row.id).await?;
                    report.reopened.push(row.id);
                    continue;
                }
                1 if now >= onchain.postedAt.saturating_add(window) => {}
                1 => continue,
                2 => {
                    self.ledger.finalize_batch(row.id).await?;
                    continue;
                }
                state => {
                    tracing::error!(batch = row.id, state, "batch was invalidated on chain");
                    continue;
                }
            }
            let plan: StoredPlan = serde_json::from_str(&row.plan)
                .map_err(|e| SettleError::Corrupt(format!("batch {} plan: {e}", row.id)))?;
            let call = self
                .settlement
                .finalizeBatch(id, cloister_contracts::bindings::entries(&plan.credits));
            match send_and_confirm("Settlement.finalizeBatch", call).await {
                Ok(_)
                | Err(ChainError::Reverted {
                    revert: Revert::Settlement(Settlement::SettlementErrors::BatchNotPosted(_)),
                    ..
                }) => {
                    self.ledger.finalize_batch(row.id).await?;
                    report.finalized.push(row.id);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

impl Drop for Settler {
    /// Closes the lock's connection instead of returning it to the pool,
    /// where it would keep the session lock and shut out the next settler.
    fn drop(&mut self) {
        if let Some(conn) = self.lock.get_mut().take() {
            drop(conn.detach());
        }
    }
}

fn log_report(report: &TickReport) {
    if report.not_leader {
        return;
    }
    if report.written.is_some()
        || !report.confirmed.is_empty()
        || !report.abandoned.is_empty()
        || !report.finalized.is_empty()
        || !report.reopened.is_empty()
        || report.waiting_for_signer > 0
        || report.waiting_for_escrow > 0
        || report.unverifiable > 0
        || !report.signers_recorded.is_empty()
        || !report.signers_removed.is_empty()
        || report.signers_refused > 0
    {
        tracing::info!(
            written = ?report.written,
            confirmed = ?report.confirmed,
            abandoned = ?report.abandoned,
            finalized = ?report.finalized,
            reopened = ?report.reopened,
            waiting_for_signer = report.waiting_for_signer,
            waiting_for_escrow = report.waiting_for_escrow,
            unverifiable = report.unverifiable,
            signers_recorded = report.signers_recorded.len(),
            signers_removed = report.signers_removed.len(),
            signers_refused = report.signers_refused,
            signers_without_payout = report.signers_without_payout,
            "settlement tick"
        );
    }
}

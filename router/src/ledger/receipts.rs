//! Usage receipts and the charges they cause: each receipt is stored once and
//! charged once, however often and however concurrently it is delivered.
//!
//! The router verifies a receipt (signature, signer, hashes, payer) before it
//! records it; the ledger does not.

use cloister_protocol::{Address, B256, ReceiptDomain, SignedReceipt};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Ledger, LedgerError, db, unix_now};

/// A verified receipt to record, with what the router knows about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptRecord {
    /// The receipt's EIP-712 signing hash.
    pub digest: B256,
    /// The receipt's request id.
    pub request_id: B256,
    /// The node that served the request.
    pub node_id: String,
    /// The account charged.
    pub account: String,
    /// The payer the receipt names.
    pub payer: Address,
    /// The enclave key that signed it.
    pub signer: Address,
    /// The model served.
    pub model: String,
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Completion tokens.
    pub completion_tokens: i64,
    /// What the receipt charges (computed and range-checked by the caller).
    pub charge: i64,
    /// The [`SignedReceipt`] as JSON.
    pub receipt: String,
    /// When the router received it (Unix seconds).
    pub received_at: i64,
}

impl ReceiptRecord {
    /// The record for a receipt already verified under `domain`, charging its
    /// [`charge`](cloister_protocol::UsageReceipt::charge) to `account`.
    pub fn new(
        signed: &SignedReceipt,
        domain: &ReceiptDomain,
        node_id: &str,
        account: &str,
        received_at: i64,
    ) -> Result<Self, LedgerError> {
        let r = &signed.receipt;
        let out_of_range =
            |field| move |_: std::num::TryFromIntError| LedgerError::ValueOutOfRange { field };
        Ok(Self {
            digest: r.signing_hash(domain),
            request_id: r.request_id,
            node_id: node_id.to_owned(),
            account: account.to_owned(),
            payer: r.payer,
            signer: r.node_signer,
            model: r.model_id.clone(),
            prompt_tokens: i64::try_from(r.prompt_tokens).map_err(out_of_range("prompt_tokens"))?,
            completion_tokens: i64::try_from(r.completion_tokens)
                .map_err(out_of_range("completion_tokens"))?,
            charge: i64::try_from(r.charge())
                .map_err(|_| LedgerError::ValueOutOfRange { field: "charge" })?,
            receipt: serde_json::to_string(signed).map_err(LedgerError::Json)?,
            received_at,
        })
    }
}

/// What recording a receipt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The receipt (or another with its digest or request id) was already
    /// recorded; nothing was charged.
    Duplicate,
    /// The receipt was stored and charged.
    Charged {
        /// The amount taken from the account.
        amount: i64,
        /// The account's balance afterwards (may be negative).
        balance_after: i64,
    },
}

/// A stored receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptRow {
    /// The receipt's EIP-712 signing hash.
    pub digest: B256,
    /// The receipt's request id.
    pub request_id: B256,
    /// The node that served the request.
    pub node_id: String,
    /// The account charged.
    pub account: String,
    /// The payer the receipt names.
    pub payer: Address,
    /// The enclave key that signed it.
    pub signer: Address,
    /// The model served.
    pub model: String,
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Completion tokens.
    pub completion_tokens: i64,
    /// What it charged.
    pub charge: i64,
    /// The [`SignedReceipt`] as JSON.
    pub receipt: String,
    /// When the router received it (Unix seconds).
    pub received_at: i64,
    /// The settlement batch that includes it, once settled.
    pub settled_batch: Option<String>,
}

const RECEIPT_COLUMNS: &str = "digest, request_id, node_id, account, payer, signer, model, \
    prompt_tokens, completion_tokens, charge, receipt, received_at, settled_batch";

fn hex_b256(value: &B256) -> String {
    format!("{value:#x}")
}

fn hex_address(value: &Address) -> String {
    format!("{value:#x}")
}

fn parse<T: std::str::FromStr>(text: &str, column: &'static str) -> Result<T, LedgerError>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e: T::Err| LedgerError::Corrupt {
        table: "receipts",
        column,
        detail: e.to_string(),
    })
}

fn row_to_receipt(row: &AnyRow) -> Result<ReceiptRow, LedgerError> {
    let text = |column: &'static str| -> Result<String, LedgerError> {
        row.try_get(column).map_err(db("read receipts"))
    };
    let int = |column: &'static str| -> Result<i64, LedgerError> {
        row.try_get(column).map_err(db("read receipts"))
    };
    Ok(ReceiptRow {
        digest: parse(&text("digest")?, "digest")?,
        request_id: parse(&text("request_id")?, "request_id")?,
        node_id: text("node_id")?,
        account: text("account")?,
        payer: parse(&text("payer")?, "payer")?,
        signer: parse(&text("signer")?, "signer")?,
        model: text("model")?,
        prompt_tokens: int("prompt_tokens")?,
        completion_tokens: int("completion_tokens")?,
        charge: int("charge")?,
        receipt: text("receipt")?,
        received_at: int("received_at")?,
        settled_batch: row.try_get("settled_batch").map_err(db("read receipts"))?,
    })
}

impl Ledger {
    /// Stores a verified receipt and charges its account, in one transaction.
    /// A receipt whose digest or request id is already stored is not charged
    /// again: [`Recorded::Duplicate`].
    pub async fn record_receipt(&self, record: &ReceiptRecord) -> Result<Recorded, LedgerError> {
        if record.charge < 0 {
            return Err(LedgerError::NegativeAmount {
                what: "charge",
                amount: record.charge,
            });
        }
        let digest = hex_b256(&record.digest);
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO receipts (digest, request_id, node_id, account, payer, signer, model, \
             prompt_tokens, completion_tokens, charge, receipt, received_at, settled_batch) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL) \
             ON CONFLICT DO NOTHING",
        )
        .bind(digest.as_str())
        .bind(hex_b256(&record.request_id))
        .bind(record.node_id.as_str())
        .bind(record.account.as_str())
        .bind(hex_address(&record.payer))
        .bind(hex_address(&record.signer))
        .bind(record.model.as_str())
        .bind(record.prompt_tokens)
        .bind(record.completion_tokens)
        .bind(record.charge)
        .bind(record.receipt.as_str())
        .bind(record.received_at)
        .execute(&mut *tx)
        .await
        .map_err(db("store receipt"))?;
        if inserted.rows_affected() == 0 {
            tx.rollback().await.map_err(db("store receipt"))?;
            return Ok(Recorded::Duplicate);
        }
        let row = sqlx::query(
            "UPDATE accounts SET balance = balance - $1 WHERE name = $2 AND balance >= $3 \
             RETURNING balance",
        )
        .bind(record.charge)
        .bind(record.account.as_str())
        .bind(i64::MIN + record.charge)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("charge account"))?;
        let Some(row) = row else {
            return Err(self.missing_or_overflow(&mut tx, &record.account).await);
        };
        let balance_after: i64 = row.try_get(0).map_err(db("charge account"))?;
        sqlx::query(
            "INSERT INTO charges (receipt_digest, account, amount, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(digest.as_str())
        .bind(record.account.as_str())
        .bind(record.charge)
        .bind(unix_now())
        .execute(&mut *tx)
        .await
        .map_err(db("record charge"))?;
        tx.commit().await.map_err(db("record receipt"))?;
        Ok(Recorded::Charged {
            amount: record.charge,
            balance_after,
        })
    }

    /// The `limit` most recently received receipts, newest first.
    pub async fn recent_receipts(&self, limit: u32) -> Result<Vec<ReceiptRow>, LedgerError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RECEIPT_COLUMNS} FROM receipts \
             ORDER BY received_at DESC, digest DESC LIMIT $1"
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db("read receipts"))?;
        rows.iter().map(row_to_receipt).collect()
    }

    /// Up to `limit` receipts of `account` received after `after_received_at`
    /// (Unix seconds), oldest first. Receipts received in the same second are
    /// ordered by digest; page by the last `received_at` seen minus one and
    /// skip digests already seen when a page ends within a second.
    pub async fn receipts_for_account(
        &self,
        account: &str,
        after_received_at: i64,
        limit: u32,
    ) -> Result<Vec<ReceiptRow>, LedgerError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RECEIPT_COLUMNS} FROM receipts WHERE account = $1 AND received_at > $2 \
             ORDER BY received_at, digest LIMIT $3"
        )))
        .bind(account)
        .bind(after_received_at)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db("read receipts"))?;
        rows.iter().map(row_to_receipt).collect()
    }
}

/// A stored receipt with what its charge took from the account's balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BilledReceipt {
    /// The stored receipt.
    pub row: ReceiptRow,
    /// The amount of its row in `charges` (`None`: no charge recorded).
    pub charged: Option<i64>,
}

/// The most receipts [`Ledger::receipt_page`] returns at once.
pub const RECEIPT_PAGE_MAX: u32 = 500;

impl Ledger {
    /// Up to `limit` receipts (at most [`RECEIPT_PAGE_MAX`]) in the order they
    /// were received (by `received_at`, then digest), with their charges:
    /// those of `account` only when it is given, all otherwise. `after` is
    /// the digest of the last receipt of the page before (within `account`
    /// when given); `Ok(None)` when no such receipt exists there.
    ///
    /// Receipts are recorded with the router's clock, so one recorded while
    /// an auditor pages may land before the auditor's cursor; an audit reads
    /// what was recorded when its pages were read.
    pub async fn receipt_page(
        &self,
        account: Option<&str>,
        after: Option<&B256>,
        limit: u32,
    ) -> Result<Option<Vec<BilledReceipt>>, LedgerError> {
        let limit = i64::from(limit.clamp(1, RECEIPT_PAGE_MAX));
        let cursor = match after {
            None => None,
            Some(digest) => {
                let row = sqlx::query(
                    "SELECT received_at FROM receipts WHERE digest = $1 AND ($2 = '' OR account = $2)",
                )
                .bind(hex_b256(digest))
                .bind(account.unwrap_or(""))
                .fetch_optional(&self.pool)
                .await
                .map_err(db("read receipts"))?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let received_at: i64 = row.try_get(0).map_err(db("read receipts"))?;
                Some((received_at, hex_b256(digest)))
            }
        };
        let (after_at, after_digest) = cursor.unwrap_or((i64::MIN, String::new()));
        let rows = sqlx::query(
            "SELECT r.digest, r.request_id, r.node_id, r.account, r.payer, r.signer, r.model, \
               r.prompt_tokens, r.completion_tokens, r.charge, r.receipt, r.received_at, \
               r.settled_batch, c.amount AS charged \
             FROM receipts r LEFT JOIN charges c ON c.receipt_digest = r.digest \
             WHERE ($1 = '' OR r.account = $1) \
               AND (r.received_at > $2 OR (r.received_at = $3 AND r.digest > $4)) \
             ORDER BY r.received_at, r.digest LIMIT $5",
        )
        .bind(account.unwrap_or(""))
        .bind(after_at)
        .bind(after_at)
        .bind(after_digest)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db("read receipts"))?;
        rows.iter()
            .map(|row| {
                Ok(BilledReceipt {
                    row: row_to_receipt(row)?,
                    charged: row.try_get("charged").map_err(db("read receipts"))?,
                })
            })
            .collect::<Result<Vec<_>, LedgerError>>()
            .map(Some)
    }
}

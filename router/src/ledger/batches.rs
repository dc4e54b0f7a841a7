//! Settlement batches: receipts not yet in a batch, batches written before
//! they are sent, and their state as the chain confirms them.
//!
//! A receipt belongs to at most one batch that is not abandoned:
//! [`Ledger::write_batch`] assigns receipts only while they are unassigned,
//! in the same transaction that stores the batch.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{DbKind, Ledger, LedgerError, db, unix_now};

/// PostgreSQL session advisory lock held by the one router that settles:
/// [`super::MIGRATION_LOCK_KEY`] + 2.
pub const SETTLEMENT_LOCK_KEY: i64 = super::MIGRATION_LOCK_KEY + 2;

/// A stored receipt that is in no batch yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnbatchedReceipt {
    /// EIP-712 signing hash (0x hex).
    pub digest: String,
    /// The `SignedReceipt` JSON.
    pub receipt: String,
    /// When the router stored it (Unix seconds).
    pub received_at: i64,
}

/// Where a batch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    /// Stored with its receipts; its transaction may or may not have been sent.
    Written,
    /// The chain holds it.
    Confirmed,
    /// Its challenge window passed and its credits were released.
    Finalized,
    /// It will never be posted (the chain refused it); its receipts were
    /// released for a later batch.
    Abandoned,
}

impl BatchState {
    /// The state's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Written => "written",
            Self::Confirmed => "confirmed",
            Self::Finalized => "finalized",
            Self::Abandoned => "abandoned",
        }
    }

    fn parse(text: &str) -> Result<Self, LedgerError> {
        Ok(match text {
            "written" => Self::Written,
            "confirmed" => Self::Confirmed,
            "finalized" => Self::Finalized,
            "abandoned" => Self::Abandoned,
            other => {
                return Err(LedgerError::Corrupt {
                    table: "settlement_batches",
                    column: "state",
                    detail: format!("unknown state {other:?}"),
                });
            }
        })
    }
}

/// A stored batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRow {
    /// The batch id on chain.
    pub id: i64,
    /// Merkle root (0x hex).
    pub root: String,
    /// Receipts in it.
    pub receipt_count: i64,
    /// Sum of debits (decimal).
    pub total: String,
    /// Protocol fee (decimal).
    pub fee: String,
    /// The batch as posted (JSON).
    pub plan: String,
    /// Where it stands.
    pub state: BatchState,
    /// The last transaction sent for it.
    pub tx_hash: Option<String>,
    /// Why it was abandoned, if it was.
    pub note: Option<String>,
    /// When it was written (Unix seconds).
    pub created_at: i64,
    /// When the chain was seen to hold it.
    pub confirmed_at: Option<i64>,
}

/// A batch to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBatch {
    /// The batch id on chain.
    pub id: i64,
    /// Merkle root (0x hex).
    pub root: String,
    /// Sum of debits (decimal).
    pub total: String,
    /// Protocol fee (decimal).
    pub fee: String,
    /// The batch as it will be posted (JSON).
    pub plan: String,
    /// Digests (0x hex) of its receipts.
    pub digests: Vec<String>,
}

/// What writing a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchWrite {
    /// Stored, every receipt assigned.
    Written,
    /// Another writer assigned some of the receipts or took the id first;
    /// nothing was stored.
    Conflict,
}

const BATCH_COLUMNS: &str =
    "id, root, receipt_count, total, fee, plan, state, tx_hash, note, created_at, confirmed_at";

fn row_to_batch(row: &AnyRow) -> Result<BatchRow, LedgerError> {
    let read = db("read settlement_batches");
    let state: String = row
        .try_get("state")
        .map_err(db("read settlement_batches"))?;
    Ok(BatchRow {
        id: row.try_get("id").map_err(db("read settlement_batches"))?,
        root: row.try_get("root").map_err(db("read settlement_batches"))?,
        receipt_count: row
            .try_get("receipt_count")
            .map_err(db("read settlement_batches"))?,
        total: row
            .try_get("total")
            .map_err(db("read settlement_batches"))?,
        fee: row.try_get("fee").map_err(db("read settlement_batches"))?,
        plan: row.try_get("plan").map_err(db("read settlement_batches"))?,
        state: BatchState::parse(&state)?,
        tx_hash: row
            .try_get("tx_hash")
            .map_err(db("read settlement_batches"))?,
        note: row.try_get("note").map_err(db("read settlement_batches"))?,
        created_at: row
            .try_get("created_at")
            .map_err(db("read settlement_batches"))?,
        confirmed_at: row.try_get("confirmed_at").map_err(read)?,
    })
}

impl Ledger {
    /// Up to `limit` receipts in no batch, oldest first (then by digest),
    /// after the position `after` (`received_at`, digest) of an earlier page.
    pub async fn unbatched_receipts(
        &self,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<UnbatchedReceipt>, LedgerError> {
        let (at, digest) = after.unwrap_or((i64::MIN, ""));
        let rows = sqlx::query(
            "SELECT digest, receipt, received_at FROM receipts WHERE settled_batch IS NULL \
             AND (received_at > $1 OR (received_at = $1 AND digest > $2)) \
             ORDER BY received_at, digest LIMIT $3",
        )
        .bind(at)
        .bind(digest)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(db("list unbatched receipts"))?;
        rows.iter()
            .map(|row| {
                Ok(UnbatchedReceipt {
                    digest: row.try_get("digest").map_err(db("read receipts"))?,
                    receipt: row.try_get("receipt").map_err(db("read receipts"))?,
                    received_at: row.try_get("received_at").map_err(db("read receipts"))?,
                })
            })
            .collect()
    }

    /// Number of receipts in no batch.
    pub async fn unbatched_count(&self) -> Result<i64, LedgerError> {
        sqlx::query("SELECT COUNT(*) AS n FROM receipts WHERE settled_batch IS NULL")
            .fetch_one(self.pool())
            .await
            .and_then(|row| row.try_get("n"))
            .map_err(db("count unbatched receipts"))
    }

    /// The next batch id: one more than any stored.
    pub async fn next_batch_id(&self) -> Result<i64, LedgerError> {
        let max: Option<i64> = sqlx::query("SELECT MAX(id) AS m FROM settlement_batches")
            .fetch_one(self.pool())
            .await
            .and_then(|row| row.try_get("m"))
            .map_err(db("next batch id"))?;
        Ok(max.unwrap_or(0) + 1)
    }

    /// Stores `batch` and assigns its receipts to it, all or nothing.
    pub async fn write_batch(&self, batch: &NewBatch) -> Result<BatchWrite, LedgerError> {
        let mut tx = self.begin_write().await?;
        let count =
            i64::try_from(batch.digests.len()).map_err(|_| LedgerError::ValueOutOfRange {
                field: "receipt_count",
            })?;
        let inserted = sqlx::query(
            "INSERT INTO settlement_batches (id, root, receipt_count, total, fee, plan, state, \
             tx_hash, note, created_at, confirmed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'written', NULL, NULL, $7, NULL) ON CONFLICT DO NOTHING",
        )
        .bind(batch.id)
        .bind(batch.root.as_str())
        .bind(count)
        .bind(batch.total.as_str())
        .bind(batch.fee.as_str())
        .bind(batch.plan.as_str())
        .bind(unix_now())
        .execute(&mut *tx)
        .await
        .map_err(db("store batch"))?;
        if inserted.rows_affected() != 1 {
            tx.rollback().await.map_err(db("roll back batch"))?;
            return Ok(BatchWrite::Conflict);
        }
        let id_text = batch.id.to_string();
        for digest in &batch.digests {
            let assigned = sqlx::query(
                "UPDATE receipts SET settled_batch = $1 WHERE digest = $2 AND settled_batch IS NULL",
            )
            .bind(id_text.as_str())
            .bind(digest.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db("assign receipt to batch"))?;
            if assigned.rows_affected() != 1 {
                tx.rollback().await.map_err(db("roll back batch"))?;
                return Ok(BatchWrite::Conflict);
            }
        }
        tx.commit().await.map_err(db("commit batch"))?;
        Ok(BatchWrite::Written)
    }

    /// Batches in `state`, by id.
    pub async fn batches_in_state(&self, state: BatchState) -> Result<Vec<BatchRow>, LedgerError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BATCH_COLUMNS} FROM settlement_batches WHERE state = $1 ORDER BY id"
        )))
        .bind(state.as_str())
        .fetch_all(self.pool())
        .await
        .map_err(db("list batches"))?;
        rows.iter().map(row_to_batch).collect()
    }

    /// One batch.
    pub async fn batch(&self, id: i64) -> Result<Option<BatchRow>, LedgerError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BATCH_COLUMNS} FROM settlement_batches WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(db("read batch"))?;
        row.as_ref().map(row_to_batch).transpose()
    }

    /// Up to `limit` batches with ids above `after`, by id.
    pub async fn batch_page(&self, after: i64, limit: u32) -> Result<Vec<BatchRow>, LedgerError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BATCH_COLUMNS} FROM settlement_batches WHERE id > $1 ORDER BY id LIMIT $2"
        )))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(db("list batches"))?;
        rows.iter().map(row_to_batch).collect()
    }

    /// Up to `limit` receipts of batch `id` with digests above `after`
    /// (0x hex, lowercase as stored), by digest.
    pub async fn batch_receipt_page(
        &self,
        id: i64,
        after: &str,
        limit: u32,
    ) -> Result<Vec<UnbatchedReceipt>, LedgerError> {
        let rows = sqlx::query(
            "SELECT digest, receipt, received_at FROM receipts WHERE settled_batch = $1 \
             AND digest > $2 ORDER BY digest LIMIT $3",
        )
        .bind(id.to_string())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(db("list batch receipts"))?;
        rows.iter()
            .map(|row| {
                Ok(UnbatchedReceipt {
                    digest: row.try_get("digest").map_err(db("read receipts"))?,
                    receipt: row.try_get("receipt").map_err(db("read receipts"))?,
                    received_at: row.try_get("received_at").map_err(db("read receipts"))?,
                })
            })
            .collect()
    }

    /// Digests and receipt JSON of a batch's receipts, by digest.
    pub async fn batch_receipts(&self, id: i64) -> Result<Vec<UnbatchedReceipt>, LedgerError> {
        self.batch_receipt_page(id, "", u32::MAX).await
    }

    /// Records the transaction last sent for a batch.
    pub async fn set_batch_tx(&self, id: i64, tx_hash: &str) -> Result<(), LedgerError> {
        sqlx::query("UPDATE settlement_batches SET tx_hash = $1 WHERE id = $2")
            .bind(tx_hash)
            .bind(id)
            .execute(self.pool())
            .await
            .map(|_| ())
            .map_err(db("record batch transaction"))
    }

    /// Marks a written batch confirmed (idempotent).
    pub async fn confirm_batch(&self, id: i64) -> Result<(), LedgerError> {
        sqlx::query(
            "UPDATE settlement_batches SET state = 'confirmed', confirmed_at = $1 \
             WHERE id = $2 AND state = 'written'",
        )
        .bind(unix_now())
        .bind(id)
        .execute(self.pool())
        .await
        .map(|_| ())
        .map_err(db("confirm batch"))
    }

    /// Sets a confirmed batch back to written: the chain no longer holds it
    /// (a reorganisation dropped its transaction), so it is sent again.
    pub async fn reopen_batch(&self, id: i64) -> Result<(), LedgerError> {
        sqlx::query(
            "UPDATE settlement_batches SET state = 'written', confirmed_at = NULL \
             WHERE id = $1 AND state = 'confirmed'",
        )
        .bind(id)
        .execute(self.pool())
        .await
        .map(|_| ())
        .map_err(db("reopen batch"))
    }

    /// Marks a confirmed batch finalized (idempotent).
    pub async fn finalize_batch(&self, id: i64) -> Result<(), LedgerError> {
        sqlx::query("UPDATE settlement_batches SET state = 'finalized' WHERE id = $1 AND state = 'confirmed'")
            .bind(id)
            .execute(self.pool())
            .await
            .map(|_| ())
            .map_err(db("finalize batch"))
    }

    /// Abandons a written batch and releases its receipts, in one transaction.
    pub async fn abandon_batch(&self, id: i64, note: &str) -> Result<(), LedgerError> {
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE settlement_batches SET state = 'abandoned', note = $1 WHERE id = $2 AND state = 'written'",
        )
        .bind(note)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db("abandon batch"))?;
        if changed.rows_affected() == 1 {
            sqlx::query("UPDATE receipts SET settled_batch = NULL WHERE settled_batch = $1")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db("release receipts"))?;
        }
        tx.commit().await.map_err(db("commit abandon"))
    }

    /// On PostgreSQL, a connection holding [`SETTLEMENT_LOCK_KEY`] when no
    /// other session holds it (`None` when one does); on SQLite (one router
    /// per file) always a plain connection.
    pub async fn try_settlement_lock(
        &self,
    ) -> Result<Option<sqlx::pool::PoolConnection<sqlx::Any>>, LedgerError> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(db("acquire connection"))?;
        if self.kind() == DbKind::Postgres {
            let locked: bool = sqlx::query("SELECT pg_try_advisory_lock($1) AS locked")
                .bind(SETTLEMENT_LOCK_KEY)
                .fetch_one(&mut *conn)
                .await
                .and_then(|row| row.try_get("locked"))
                .map_err(db("take settlement lock"))?;
            if !locked {
                return Ok(None);
            }
        }
        Ok(Some(conn))
    }
}

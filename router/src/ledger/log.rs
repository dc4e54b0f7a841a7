//! The attestation log: every verdict the router reached about a node, with
//! the raw bundle and collateral it judged, in one hash chain that auditors
//! page through and re-verify offline.
//!
//! Entries are numbered 1, 2, 3, ... without gaps. Each entry stores the
//! previous entry's hash (`prev_hash`; 64 `0` digits for entry 1, see
//! [`GENESIS_PREV_HASH`]) and its own `entry_hash`, which is the lowercase hex
//! SHA-256 of this byte string:
//!
//! ```text
//! str("cloister/attestation-log/v1")
//! i64(id)
//! str(prev_hash)                 the 64 lowercase hex digits, as text
//! str(node_id)
//! str(node_url)
//! i64(verified_at)               Unix seconds
//! str(nonce)
//! SHA-256(bundle)                32 bytes, over the stored JSON text's UTF-8
//! 0x00 || SHA-256("")            when there is no collateral, else
//! 0x01 || SHA-256(collateral)    (32 bytes, over the JSON text's UTF-8)
//! SHA-256(verdict)               32 bytes, over the JSON text's UTF-8
//! 0x00 or 0x01                   accepted
//! ```
//!
//! where `str(s)` is the length of `s` in UTF-8 bytes as an unsigned 64-bit
//! big-endian integer followed by those bytes, and `i64(n)` is `n` as a signed
//! 64-bit big-endian (two's complement) integer. Fields are concatenated in
//! this order with nothing in between. The JSON documents are hashed exactly as
//! stored (and served): never re-encode them before hashing.
//!
//! Test vector: id 1, prev_hash [`GENESIS_PREV_HASH`], node_id `n1`,
//! node_url `https://n1`, verified_at 1700000001, nonce `00ff`, bundle `{}`,
//! no collateral, verdict `{"ok":true}`, accepted: entry_hash
//! `851f22b5ced7edf7384d9d9ffe42c302a5714e8c4567a2c45caf22377d0c8d87`.
//!
//! [`verify_log_chain`] rechecks a page: ids consecutive, each `prev_hash`
//! equal to the previous entry's `entry_hash` (or to the hash the auditor
//! holds from the page before), each `entry_hash` recomputed.
//!
//! Several routers may append to one PostgreSQL database at once: each
//! append runs in a transaction holding the advisory lock
//! [`LOG_LOCK_KEY`](super::LOG_LOCK_KEY), and an append that still loses a
//! race for the next id (a primary-key conflict) is retried, a bounded number
//! of times. On SQLite the write transaction serializes appends.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;
use thiserror::Error;

use super::{DbKind, LOG_LOCK_KEY, Ledger, LedgerError, db, is_unique_violation, random_bytes};

/// The domain string that starts every entry's hashed encoding.
pub const LOG_DOMAIN: &str = "cloister/attestation-log/v1";

/// The `prev_hash` of entry 1: 64 zero hex digits.
pub const GENESIS_PREV_HASH: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// The most entries [`Ledger::attestation_log`] returns at once.
pub const LOG_PAGE_MAX: u32 = 500;

/// How many times an append is tried before [`LedgerError::LogContention`].
const MAX_APPEND_ATTEMPTS: u32 = 20;

/// A verdict to append to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLogEntry {
    /// The node's id.
    pub node_id: String,
    /// The node's URL when it was verified.
    pub node_url: String,
    /// When the verdict was reached (Unix seconds).
    pub verified_at: i64,
    /// The challenge nonce the bundle answers (hex).
    pub nonce: String,
    /// The attestation bundle as JSON.
    pub bundle: String,
    /// The collateral used (certificates, CRLs, TCB info) as JSON, if any.
    pub collateral: Option<String>,
    /// The verdict as JSON.
    pub verdict: String,
    /// Whether the node was accepted.
    pub accepted: bool,
}

/// A stored log entry, as served to auditors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the log, from 1.
    pub id: i64,
    /// The node's id.
    pub node_id: String,
    /// The node's URL when it was verified.
    pub node_url: String,
    /// When the verdict was reached (Unix seconds).
    pub verified_at: i64,
    /// The challenge nonce.
    pub nonce: String,
    /// The attestation bundle as JSON text.
    pub bundle: String,
    /// The collateral used as JSON text, if any.
    pub collateral: Option<String>,
    /// The verdict as JSON text.
    pub verdict: String,
    /// Whether the node was accepted.
    pub accepted: bool,
    /// The previous entry's `entry_hash` ([`GENESIS_PREV_HASH`] for entry 1).
    pub prev_hash: String,
    /// [`log_entry_hash`] of this entry.
    pub entry_hash: String,
}

/// Where a chain of log entries does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ChainBreak {
    /// An entry's id is not the one expected (entries removed, reordered, or
    /// a chain from genesis not starting at 1).
    #[error("expected entry {expected}, found entry {found}")]
    WrongId {
        /// The id that should come next.
        expected: i64,
        /// The id found.
        found: i64,
    },
    /// An entry does not link to the entry before it.
    #[error("entry {id} links to {found}, expected {expected}")]
    WrongPrevHash {
        /// The entry.
        id: i64,
        /// The previous entry's hash.
        expected: String,
        /// The entry's `prev_hash`.
        found: String,
    },
    /// An entry's stored hash is not the hash of its contents.
    #[error("entry {id} has hash {stored}, its contents hash to {computed}")]
    WrongEntryHash {
        /// The entry.
        id: i64,
        /// Its `entry_hash`.
        stored: String,
        /// [`log_entry_hash`] of its contents.
        computed: String,
    },
}

fn put_str(hasher: &mut Sha256, s: &str) {
    let len = u64::try_from(s.len()).unwrap_or(u64::MAX);
    hasher.update(len.to_be_bytes());
    hasher.update(s.as_bytes());
}

/// The hash of an entry (its `entry_hash` field is ignored), encoded as the
/// module documentation describes.
pub fn log_entry_hash(entry: &LogEntry) -> String {
    let mut h = Sha256::new();
    put_str(&mut h, LOG_DOMAIN);
    h.update(entry.id.to_be_bytes());
    put_str(&mut h, &entry.prev_hash);
    put_str(&mut h, &entry.node_id);
    put_str(&mut h, &entry.node_url);
    h.update(entry.verified_at.to_be_bytes());
    put_str(&mut h, &entry.nonce);
    h.update(Sha256::digest(entry.bundle.as_bytes()));
    match &entry.collateral {
        Some(collateral) => {
            h.update([1u8]);
            h.update(Sha256::digest(collateral.as_bytes()));
        }
        None => {
            h.update([0u8]);
            h.update(Sha256::digest(b""));
        }
    }
    h.update(Sha256::digest(entry.verdict.as_bytes()));
    h.update([u8::from(entry.accepted)]);
    hex::encode(h.finalize())
}

/// Checks that `entries` form an unbroken chain continuing from
/// `prev_hash_before_first` (the `entry_hash` of the entry before the first
/// one, or [`GENESIS_PREV_HASH`] when the first is entry 1): consecutive ids,
/// each linked to its predecessor, each hash matching its contents.
pub fn verify_log_chain(
    entries: &[LogEntry],
    prev_hash_before_first: &str,
) -> Result<(), ChainBreak> {
    let mut expected_id = (prev_hash_before_first == GENESIS_PREV_HASH).then_some(1);
    let mut expected_prev = prev_hash_before_first;
    for entry in entries {
        if let Some(expected) = expected_id.filter(|&e| e != entry.id) {
            return Err(ChainBreak::WrongId {
                expected,
                found: entry.id,
            });
        }
        if entry.prev_hash != expected_prev {
            return Err(ChainBreak::WrongPrevHash {
                id: entry.id,
                expected: expected_prev.to_owned(),
                found: entry.prev_hash.clone(),
            });
        }
        let computed = log_entry_hash(entry);
        if computed != entry.entry_hash {
            return Err(ChainBreak::WrongEntryHash {
                id: entry.id,
                stored: entry.entry_hash.clone(),
                computed,
            });
        }
        expected_id = entry.id.checked_add(1);
        expected_prev = &entry.entry_hash;
    }
    Ok(())
}

const LOG_COLUMNS: &str = "id, node_id, node_url, verified_at, nonce, bundle, collateral, \
                           verdict, accepted, prev_hash, entry_hash";

fn entry_from_row(row: &AnyRow) -> Result<LogEntry, LedgerError> {
    let read = || -> Result<(LogEntry, i64), sqlx::Error> {
        Ok((
            LogEntry {
                id: row.try_get("id")?,
                node_id: row.try_get("node_id")?,
                node_url: row.try_get("node_url")?,
                verified_at: row.try_get("verified_at")?,
                nonce: row.try_get("nonce")?,
                bundle: row.try_get("bundle")?,
                collateral: row.try_get("collateral")?,
                verdict: row.try_get("verdict")?,
                accepted: false,
                prev_hash: row.try_get("prev_hash")?,
                entry_hash: row.try_get("entry_hash")?,
            },
            row.try_get("accepted")?,
        ))
    };
    let (mut entry, accepted) = read().map_err(db("read attestation log"))?;
    entry.accepted = match accepted {
        0 => false,
        1 => true,
        other => {
            return Err(LedgerError::Corrupt {
                table: "attestation_log",
                column: "accepted",
                detail: format!("{other} is not 0 or 1"),
            });
        }
    };
    Ok(entry)
}

impl Ledger {
    /// Appends a verdict to the log as the next entry and returns it.
    pub async fn append_attestation(&self, new: NewLogEntry) -> Result<LogEntry, LedgerError> {
        let mut entry = LogEntry {
            id: 0,
            node_id: new.node_id,
            node_url: new.node_url,
            verified_at: new.verified_at,
            nonce: new.nonce,
            bundle: new.bundle,
            collateral: new.collateral,
            verdict: new.verdict,
            accepted: new.accepted,
            prev_hash: String::new(),
            entry_hash: String::new(),
        };
        for attempt in 1..=MAX_APPEND_ATTEMPTS {
            if self.try_append(&mut entry).await? {
                return Ok(entry);
            }
            tracing::debug!(attempt, "attestation log append conflicted, retrying");
            // Up to 2^attempt ms (at most 256 ms), randomized.
            let cap = 1u64 << attempt.min(8);
            let jitter = u64::from(u16::from_be_bytes(random_bytes::<2>()?)) % cap;
            tokio::time::sleep(Duration::from_millis(jitter.saturating_add(1))).await;
        }
        Err(LedgerError::LogContention {
            attempts: MAX_APPEND_ATTEMPTS,
        })
    }

    /// One append attempt: `false` when another writer took the id.
    async fn try_append(&self, entry: &mut LogEntry) -> Result<bool, LedgerError> {
        let mut tx = self.begin_write().await?;
        if self.kind == DbKind::Postgres {
            sqlx::query("SELECT 1 FROM pg_advisory_xact_lock($1)")
                .bind(LOG_LOCK_KEY)
                .execute(&mut *tx)
                .await
                .map_err(db("take log lock"))?;
        }
        let head =
            sqlx::query("SELECT id, entry_hash FROM attestation_log ORDER BY id DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("read log head"))?;
        (entry.id, entry.prev_hash) = match head {
            None => (1, GENESIS_PREV_HASH.to_owned()),
            Some(row) => {
                let id: i64 = row.try_get(0).map_err(db("read log head"))?;
                let id = id.checked_add(1).ok_or_else(|| LedgerError::Corrupt {
                    table: "attestation_log",
                    column: "id",
                    detail: "log is full".to_owned(),
                })?;
                (id, row.try_get(1).map_err(db("read log head"))?)
            }
        };
        entry.entry_hash = log_entry_hash(entry);
        let inserted = sqlx::query(
            "INSERT INTO attestation_log (id, node_id, node_url, verified_at, nonce, bundle, \
             collateral, verdict, accepted, prev_hash, entry_hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(entry.id)
        .bind(entry.node_id.as_str())
        .bind(entry.node_url.as_str())
        .bind(entry.verified_at)
        .bind(entry.nonce.as_str())
        .bind(entry.bundle.as_str())
        .bind(entry.collateral.as_deref())
        .bind(entry.verdict.as_str())
        .bind(i64::from(entry.accepted))
        .bind(entry.prev_hash.as_str())
        .bind(entry.entry_hash.as_str())
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Ok(false),
            Err(e) => return Err(db("append to attestation log")(e)),
        }
        match tx.commit().await {
            Ok(()) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(db("append to attestation log")(e)),
        }
    }

    /// Up to `limit` entries (at most [`LOG_PAGE_MAX`]) with ids above
    /// `after`, in order.
    pub async fn attestation_log(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<LogEntry>, LedgerError> {
        let limit = limit.min(LOG_PAGE_MAX);
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LOG_COLUMNS} FROM attestation_log WHERE id > $1 ORDER BY id LIMIT $2"
        )))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db("read attestation log"))?;
        rows.iter().map(entry_from_row).collect()
    }

    /// The last entry about node `node_id`, if any.
    pub async fn latest_for_node(&self, node_id: &str) -> Result<Option<LogEntry>, LedgerError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LOG_COLUMNS} FROM attestation_log WHERE node_id = $1 ORDER BY id DESC LIMIT 1"
        )))
        .bind(node_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("read attestation log"))?;
        row.as_ref().map(entry_from_row).transpose()
    }

    /// The last entry of the log, if any.
    pub async fn latest_log_entry(&self) -> Result<Option<LogEntry>, LedgerError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LOG_COLUMNS} FROM attestation_log ORDER BY id DESC LIMIT 1"
        )))
        .fetch_optional(&self.pool)
        .await
        .map_err(db("read attestation log"))?;
        row.as_ref().map(entry_from_row).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of the module docs.
    const KNOWN_HASH: &str = "851f22b5ced7edf7384d9d9ffe42c302a5714e8c4567a2c45caf22377d0c8d87";

    fn entry(id: i64, prev_hash: &str) -> LogEntry {
        let mut e = LogEntry {
            id,
            node_id: "n1".into(),
            node_url: "https://n1".into(),
            verified_at: 1_700_000_000 + id,
            nonce: "00ff".into(),
            bundle: "{}".into(),
            collateral: None,
            verdict: r#"{"ok":true}"#.into(),
            accepted: true,
            prev_hash: prev_hash.into(),
            entry_hash: String::new(),
        };
        e.entry_hash = log_entry_hash(&e);
        e
    }

    /// Builds the documented encoding by hand.
    fn encode_by_hand(e: &LogEntry) -> Vec<u8> {
        let mut m = Vec::new();
        let put_str = |m: &mut Vec<u8>, s: &str| {
            m.extend(u64::try_from(s.len()).unwrap_or(u64::MAX).to_be_bytes());
            m.extend(s.as_bytes());
        };
        put_str(&mut m, "cloister/attestation-log/v1");
        m.extend(e.id.to_be_bytes());
        put_str(&mut m, &e.prev_hash);
        put_str(&mut m, &e.node_id);
        put_str(&mut m, &e.node_url);
        m.extend(e.verified_at.to_be_bytes());
        put_str(&mut m, &e.nonce);
        m.extend(Sha256::digest(e.bundle.as_bytes()));
        m.push(u8::from(e.collateral.is_some()));
        m.extend(Sha256::digest(
            e.collateral.as_deref().unwrap_or("").as_bytes(),
        ));
        m.extend(Sha256::digest(e.verdict.as_bytes()));
        m.push(u8::from(e.accepted));
        m
    }

    #[test]
    fn known_answer() {
        let mut e = entry(1, GENESIS_PREV_HASH);
        assert_eq!(
            e.entry_hash,
            hex::encode(Sha256::digest(encode_by_hand(&e)))
        );
        assert_eq!(e.entry_hash, KNOWN_HASH);
        e.collateral = Some(r#"{"crl":"x"}"#.into());
        e.accepted = false;
        assert_eq!(
            log_entry_hash(&e),
            hex::encode(Sha256::digest(encode_by_hand(&e)))
        );
    }

    #[test]
    fn collateral_presence_matters() {
        let mut a = entry(1, GENESIS_PREV_HASH);
        a.collateral = Some(String::new());
        assert_ne!(log_entry_hash(&a), entry(1, GENESIS_PREV_HASH).entry_hash);
    }

    #[test]
    fn chain_checks() {
        let first = entry(1, GENESIS_PREV_HASH);
        let second = entry(2, &first.entry_hash);
        assert_eq!(
            verify_log_chain(&[first.clone(), second.clone()], GENESIS_PREV_HASH),
            Ok(())
        );
        assert_eq!(
            verify_log_chain(std::slice::from_ref(&second), &first.entry_hash),
            Ok(())
        );
        assert!(matches!(
            verify_log_chain(std::slice::from_ref(&second), GENESIS_PREV_HASH),
            Err(ChainBreak::WrongId {
                expected: 1,
                found: 2
            })
        ));
        assert!(matches!(
            verify_log_chain(&[second, first], GENESIS_PREV_HASH),
            Err(ChainBreak::WrongId { .. })
        ));
    }
}

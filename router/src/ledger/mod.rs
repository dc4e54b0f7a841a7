//! The router's ledger (DESIGN.md section 5): accounts and their API keys
//! (stored hashed), known nodes, the hash-chained attestation log, usage
//! receipts and the charges they caused.
//!
//! One [`Ledger`] type over an [`AnyPool`]: a SQLite file by default
//! (`sqlite://PATH`, created when missing, WAL mode, writers wait for each
//! other), or a PostgreSQL database shared by several routers
//! (`postgres://...`). Both run the same plain-SQL migrations from
//! `router/migrations/`, applied at [`Ledger::connect`].
//!
//! Conventions of the stored data:
//! - no table holds prompt or completion text, and none may ever;
//! - hashes and addresses are lowercase hex text: receipt digests, request ids
//!   and addresses with a `0x` prefix, the log's SHA-256 hashes and API key
//!   hashes without;
//! - timestamps are Unix seconds supplied by the caller, except the creation
//!   times of accounts and keys;
//! - amounts are `BIGINT` in the settlement token's smallest unit; balances may
//!   go negative when a served request costs more than was left (the router
//!   admits requests only while the balance is positive, and a receipt is
//!   always charged).
//!
//! On PostgreSQL the ledger takes the session advisory lock
//! [`MIGRATION_LOCK_KEY`] while migrating, the transaction advisory lock
//! [`LOG_LOCK_KEY`] while appending to the attestation log, and the session
//! lock [`SETTLEMENT_LOCK_KEY`] while it settles; other users of
//! advisory locks on the same database must pick other keys.

mod batches;
mod keys;
mod log;
mod migrate;
mod nodes;
mod receipts;
#[cfg(feature = "testing")]
pub mod testing;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use cloister_protocol::Address;
use ring::rand::{SecureRandom, SystemRandom};
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, Transaction};
use thiserror::Error;

pub use batches::{
    BatchRow, BatchState, BatchWrite, NewBatch, SETTLEMENT_LOCK_KEY, UnbatchedReceipt,
};
pub use keys::{
    AccountOverview, AccountSummary, Caller, KEY_PREFIX, NewKey, validate_account_name,
};
pub use log::{
    ChainBreak, GENESIS_PREV_HASH, LOG_DOMAIN, LOG_PAGE_MAX, LogEntry, NewLogEntry, log_entry_hash,
    verify_log_chain,
};
pub use migrate::{LATEST_VERSION, MIGRATIONS, Migration};
pub use nodes::{NodeRow, NodeSource};
pub use receipts::{BilledReceipt, RECEIPT_PAGE_MAX, ReceiptRecord, ReceiptRow, Recorded};

/// PostgreSQL advisory lock key held (per session) while migrations run:
/// `"Cloister"` in ASCII as a big-endian integer.
pub const MIGRATION_LOCK_KEY: i64 = 0x436c_6f69_7374_6572;

/// PostgreSQL advisory lock key held (per transaction) while an attestation
/// log entry is appended: [`MIGRATION_LOCK_KEY`] + 1.
pub const LOG_LOCK_KEY: i64 = MIGRATION_LOCK_KEY + 1;

/// Which database engine a [`Ledger`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DbKind {
    /// A SQLite file (or `sqlite::memory:`).
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

impl DbKind {
    /// The engine a database URL names, by its scheme.
    pub fn from_url(url: &str) -> Result<Self, LedgerError> {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            _ => Err(LedgerError::UnsupportedUrl {
                scheme: scheme.to_owned(),
            }),
        }
    }
}

impl std::fmt::Display for DbKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        })
    }
}

/// A ledger operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The database URL is neither `sqlite:` nor `postgres:`.
    #[error("unsupported database URL scheme {scheme:?} (expected sqlite: or postgres:)")]
    UnsupportedUrl {
        /// The URL's scheme.
        scheme: String,
    },
    /// The directory for a SQLite file could not be created.
    #[error("cannot create directory {} for the SQLite database: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The database reported an error.
    #[error("database error ({op}): {source}")]
    Database {
        /// What the ledger was doing.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// An applied migration differs from the one this build embeds.
    #[error(
        "migration {version} ({name}) was applied with checksum {applied}, this build has {embedded}"
    )]
    MigrationChecksum {
        /// The migration's version.
        version: i64,
        /// Its name as recorded.
        name: String,
        /// The checksum recorded when it was applied.
        applied: String,
        /// The checksum of this build's file.
        embedded: String,
    },
    /// The database has a migration this build does not know (a newer router
    /// migrated it).
    #[error("database has migration {version} ({name}); this build knows up to {latest_known}")]
    SchemaTooNew {
        /// The unknown migration's version.
        version: i64,
        /// Its name as recorded.
        name: String,
        /// The highest version this build knows.
        latest_known: i64,
    },
    /// Applying a migration failed; it was rolled back.
    #[error("applying migration {version} ({name}) failed: {source}")]
    MigrationFailed {
        /// The migration's version.
        version: i64,
        /// Its name.
        name: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// An account name is empty, too long or has characters outside
    /// `[A-Za-z0-9._-]`.
    #[error("invalid account name {name:?}: use 1 to 64 characters of A-Z a-z 0-9 . _ -")]
    InvalidAccountName {
        /// The name given.
        name: String,
    },
    /// No account has this name.
    #[error("unknown account {account:?}")]
    UnknownAccount {
        /// The name given.
        account: String,
    },
    /// An amount that must not be negative is.
    #[error("{what} must not be negative, got {amount}")]
    NegativeAmount {
        /// Which amount.
        what: &'static str,
        /// Its value.
        amount: i64,
    },
    /// The balance would leave the signed 64-bit range.
    #[error("balance of account {account:?} would overflow")]
    BalanceOverflow {
        /// The account.
        account: String,
    },
    /// A receipt value does not fit the ledger's signed 64-bit columns.
    #[error("receipt field {field} does not fit in a signed 64-bit integer")]
    ValueOutOfRange {
        /// The receipt field.
        field: &'static str,
    },
    /// Serializing a receipt to JSON failed.
    #[error("cannot serialize the receipt: {0}")]
    Json(#[source] serde_json::Error),
    /// A payer address is already paid for by another account.
    #[error("payer {payer} belongs to account {account:?}")]
    PayerTaken {
        /// The payer address.
        payer: Address,
        /// The account that pays for it.
        account: String,
    },
    /// Appending to the attestation log kept conflicting with other writers.
    #[error("appending to the attestation log conflicted {attempts} times in a row")]
    LogContention {
        /// How many attempts were made.
        attempts: u32,
    },
    /// A stored value could not be read back as its type.
    #[error("malformed value in {table}.{column}: {detail}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

/// Maps a sqlx error to [`LedgerError::Database`] with what was being done.
pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> LedgerError {
    move |source| LedgerError::Database { op, source }
}

/// The ledger: a pool of connections to one migrated database.
#[derive(Debug, Clone)]
pub struct Ledger {
    pool: AnyPool,
    kind: DbKind,
}

impl Ledger {
    /// Connects to `url` and applies pending migrations.
    ///
    /// Accepts `sqlite://PATH` (the file and its directory are created when
    /// missing), `sqlite::memory:` (one connection, gone with the ledger: for
    /// development only) and `postgres://...`. Refuses to start when an applied
    /// migration differs from this build's or the database was migrated by a
    /// newer build.
    pub async fn connect(url: &str) -> Result<Self, LedgerError> {
        sqlx::any::install_default_drivers();
        let kind = DbKind::from_url(url)?;
        let pool = match kind {
            DbKind::Sqlite => {
                let (url, in_memory) = prepare_sqlite_url(url)?;
                let options = if in_memory {
                    // Each new connection to `:memory:` would be a new database.
                    AnyPoolOptions::new()
                        .max_connections(1)
                        .min_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None)
                } else {
                    AnyPoolOptions::new().max_connections(8)
                };
                options
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            // Wait up to 30 s for other writers; WAL lets
                            // readers run alongside the writer.
                            sqlx::raw_sql("PRAGMA busy_timeout = 30000; PRAGMA journal_mode = WAL;")
                                .execute(conn)
                                .await
                                .map(|_| ())
                        })
                    })
                    .connect(&url)
                    .await
            }
            DbKind::Postgres => AnyPoolOptions::new().max_connections(16).connect(url).await,
        }
        .map_err(db("connect"))?;
        let ledger = Self { pool, kind };
        migrate::run(&ledger).await?;
        tracing::debug!(url = %redacted_url(url), %kind, "ledger connected and migrated");
        Ok(ledger)
    }

    /// The database engine.
    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// The connection pool, for queries this module does not offer.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), LedgerError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(db("ping"))
    }

    /// Closes all connections.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Begins a transaction that will write: on SQLite it takes the write lock
    /// at once (`BEGIN IMMEDIATE`), so that it waits for other writers instead
    /// of failing when it upgrades from reading.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Any>, LedgerError> {
        match self.kind {
            DbKind::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            DbKind::Postgres => self.pool.begin().await,
        }
        .map_err(db("begin transaction"))
    }
}

/// `url` with any password replaced by `***` (in the user-info part and in
/// query parameters whose name contains "password"), for logs.
pub fn redacted_url(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    // Everything before the last '@' is user information, even if a
    // malformed password holds '/' or '@': better to hide too much.
    let mut out = match head.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
                None => head.to_owned(),
            },
            None => head.to_owned(),
        },
        None => head.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.to_ascii_lowercase().contains("password") => {
                    format!("{key}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

/// Makes a SQLite URL ready to open: creates the file's directory and asks
/// for the file to be created (`mode=rwc`) unless the URL sets a mode. Returns
/// the URL and whether it names an in-memory database.
fn prepare_sqlite_url(url: &str) -> Result<(String, bool), LedgerError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let params: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    let in_memory = path.is_empty()
        || path == ":memory:"
        || params.iter().any(|&(k, v)| k == "mode" && v == "memory");
    if in_memory {
        return Ok((url.to_owned(), true));
    }
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|source| LedgerError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    }
    if params.iter().any(|&(k, _)| k == "mode") {
        Ok((url.to_owned(), false))
    } else if query.is_empty() {
        Ok((format!("{}?mode=rwc", url.trim_end_matches('?')), false))
    } else {
        Ok((format!("{url}&mode=rwc"), false))
    }
}

/// The current Unix time in seconds (for creation times only).
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `N` bytes from the system's secure random number generator.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], LedgerError> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| LedgerError::Random)?;
    Ok(bytes)
}

/// Whether a database error is a unique or primary-key violation.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redacted_url("postgres://app:s3cr%40t@db.example:5432/cloister?sslmode=require"),
            "postgres://app:***@db.example:5432/cloister?sslmode=require"
        );
        assert_eq!(
            redacted_url("postgres://app@db/x?password=hunter2&sslmode=disable"),
            "postgres://app@db/x?password=***&sslmode=disable"
        );
        assert_eq!(
            redacted_url("sqlite://data/ledger.db"),
            "sqlite://data/ledger.db"
        );
        assert_eq!(redacted_url("postgres://u:p@h"), "postgres://u:***@h");
        assert_eq!(
            redacted_url("postgres://u:a/b@c@h/db"),
            "postgres://u:***@h/db"
        );
    }

    #[test]
    fn kinds_from_urls() {
        assert_eq!(
            DbKind::from_url("sqlite::memory:").ok(),
            Some(DbKind::Sqlite)
        );
        assert_eq!(
            DbKind::from_url("postgresql://h/d").ok(),
            Some(DbKind::Postgres)
        );
        assert!(DbKind::from_url("mysql://h/d").is_err());
    }

    #[test]
    fn sqlite_urls_get_create_mode() {
        let dir = std::env::temp_dir().join(format!("cloister-url-{}", std::process::id()));
        let file = dir.join("sub/ledger.db");
        let url = format!("sqlite://{}", file.display());
        let (prepared, memory) = prepare_sqlite_url(&url).unwrap_or_default();
        assert!(!memory);
        assert_eq!(prepared, format!("{url}?mode=rwc"));
        assert!(dir.join("sub").is_dir());
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            prepare_sqlite_url("sqlite::memory:").ok(),
            Some(("sqlite::memory:".to_owned(), true))
        );
    }
}

//! The migration runner: plain SQL files from `router/migrations/`, embedded
//! at build time, applied in order, each in its own transaction, and recorded
//! in `schema_migrations` with the SHA-256 of their text.
//!
//! A database whose applied migrations differ from the embedded ones, or that
//! has a migration this build does not know, is refused. On PostgreSQL the
//! runner holds the advisory lock [`MIGRATION_LOCK_KEY`], so that routers
//! starting together apply each migration once; on SQLite each migration's
//! `BEGIN IMMEDIATE` transaction re-checks whether it is still pending.

use sha2::{Digest, Sha256};
use sqlx::AnyConnection;
use sqlx::{Connection, Row};

use super::{DbKind, Ledger, LedgerError, MIGRATION_LOCK_KEY, db, unix_now};

/// One schema migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Its number, from the file name `NNNN_name.sql`.
    pub version: i64,
    /// Its name, from the file name.
    pub name: &'static str,
    /// The SQL text: statements that work on SQLite and PostgreSQL alike.
    pub sql: &'static str,
}

impl Migration {
    /// Hex SHA-256 of the SQL text, as recorded in `schema_migrations`.
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

/// The migrations this build knows, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../../migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "settlement",
        sql: include_str!("../../migrations/0002_settlement.sql"),
    },
];

/// The highest migration version this build knows.
pub const LATEST_VERSION: i64 = 2;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)";

/// Applies pending migrations (see the module docs).
pub(super) async fn run(ledger: &Ledger) -> Result<(), LedgerError> {
    let mut conn = ledger
        .pool
        .acquire()
        .await
        .map_err(db("acquire connection for migrations"))?;
    let conn: &mut AnyConnection = &mut conn;
    match ledger.kind {
        DbKind::Sqlite => run_locked(conn, ledger.kind).await,
        DbKind::Postgres => {
            // `pg_advisory_lock` returns `void`, which the Any driver cannot
            // decode; calling it in FROM yields a plain integer row.
            sqlx::query("SELECT 1 FROM pg_advisory_lock($1)")
                .bind(MIGRATION_LOCK_KEY)
                .execute(&mut *conn)
                .await
                .map_err(db("take migration lock"))?;
            let result = run_locked(conn, ledger.kind).await;
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(MIGRATION_LOCK_KEY)
                .execute(&mut *conn)
                .await
                .map_err(db("release migration lock"));
            result.and(unlocked.map(|_| ()))
        }
    }
}

async fn run_locked(conn: &mut AnyConnection, kind: DbKind) -> Result<(), LedgerError> {
    sqlx::raw_sql(CREATE_TABLE)
        .execute(&mut *conn)
        .await
        .map_err(db("create schema_migrations"))?;

    for (version, name, applied) in applied_migrations(&mut *conn).await? {
        check_applied(version, name, &applied)?;
    }

    for migration in MIGRATIONS {
        let mut tx = match kind {
            DbKind::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await,
            DbKind::Postgres => conn.begin().await,
        }
        .map_err(db("begin migration"))?;
        let applied = sqlx::query("SELECT checksum FROM schema_migrations WHERE version = $1")
            .bind(migration.version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("read schema_migrations"))?;
        if applied.is_some() {
            // Checked above (or applied meanwhile by another SQLite process).
            continue;
        }
        let failed = |source| LedgerError::MigrationFailed {
            version: migration.version,
            name: migration.name,
            source,
        };
        sqlx::raw_sql(migration.sql)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(migration.version)
        .bind(migration.name)
        .bind(migration.checksum())
        .bind(unix_now())
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied ledger migration"
        );
    }
    Ok(())
}

async fn applied_migrations(
    conn: &mut AnyConnection,
) -> Result<Vec<(i64, String, String)>, LedgerError> {
    let rows =
        sqlx::query("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
            .fetch_all(conn)
            .await
            .map_err(db("read schema_migrations"))?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("version")?,
                row.try_get("name")?,
                row.try_get("checksum")?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(db("read schema_migrations"))
}

fn check_applied(version: i64, name: String, applied: &str) -> Result<(), LedgerError> {
    let Some(known) = MIGRATIONS.iter().find(|m| m.version == version) else {
        return Err(LedgerError::SchemaTooNew {
            version,
            name,
            latest_known: LATEST_VERSION,
        });
    };
    let embedded = known.checksum();
    if applied != embedded {
        return Err(LedgerError::MigrationChecksum {
            version,
            name,
            applied: applied.to_owned(),
            embedded,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i64::try_from(i).unwrap_or(-1) + 1, "{}", m.name);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(LATEST_VERSION));
    }
}

//! Fresh, empty databases for tests (feature `testing`).
//!
//! By default a SQLite file in a new temporary directory. When the
//! environment variable [`POSTGRES_ENV`] holds an admin URL
//! (`postgres://postgres@127.0.0.1:PORT/postgres`, see `scripts/postgres.sh`),
//! a new uniquely named PostgreSQL database instead. Either is removed when
//! the [`TestDatabase`] is dropped.

use std::path::PathBuf;

use sqlx::{Connection, PgConnection};

use super::{DbKind, Ledger, LedgerError, db, random_bytes};

/// The environment variable naming a PostgreSQL server for tests.
pub const POSTGRES_ENV: &str = "CLOISTER_TEST_POSTGRES_URL";

/// A fresh database, removed on drop.
#[derive(Debug)]
pub struct TestDatabase {
    /// The database URL, for [`Ledger::connect`].
    pub url: String,
    kind: DbKind,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Directory(PathBuf),
    Postgres { admin_url: String, name: String },
}

impl TestDatabase {
    /// A new empty database (see the module docs).
    pub async fn new() -> Result<Self, LedgerError> {
        let suffix = hex::encode(random_bytes::<8>()?);
        match std::env::var(POSTGRES_ENV) {
            Ok(admin_url) if !admin_url.is_empty() => {
                let name = format!("cloister_test_{suffix}");
                let mut conn = PgConnection::connect(&admin_url)
                    .await
                    .map_err(db("connect to test PostgreSQL"))?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .map_err(db("create test database"))?;
                let _ = conn.close().await;
                Ok(Self {
                    url: database_url(&admin_url, &name),
                    kind: DbKind::Postgres,
                    cleanup: Cleanup::Postgres { admin_url, name },
                })
            }
            _ => {
                let dir = std::env::temp_dir().join(format!("cloister-ledger-test-{suffix}"));
                std::fs::create_dir_all(&dir).map_err(|source| LedgerError::CreateDir {
                    path: dir.clone(),
                    source,
                })?;
                Ok(Self {
                    url: format!("sqlite://{}", dir.join("ledger.db").display()),
                    kind: DbKind::Sqlite,
                    cleanup: Cleanup::Directory(dir),
                })
            }
        }
    }

    /// The database engine.
    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// A ledger connected to this database (migrated).
    pub async fn ledger(&self) -> Result<Ledger, LedgerError> {
        Ledger::connect(&self.url).await
    }
}

/// `admin_url` with its database name replaced by `name`.
fn database_url(admin_url: &str, name: &str) -> String {
    let (head, query) = match admin_url.split_once('?') {
        Some((head, query)) => (head, format!("?{query}")),
        None => (admin_url, String::new()),
    };
    let authority_start = head.find("://").map_or(0, |i| i.saturating_add(3));
    let base = match head.get(authority_start..).and_then(|rest| rest.find('/')) {
        Some(slash) => head
            .get(..authority_start.saturating_add(slash))
            .unwrap_or(head),
        None => head,
    };
    format!("{base}/{name}{query}")
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Directory(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Postgres { admin_url, name } => {
                // Drop runs inside the test's runtime: use a thread with its own.
                let (admin_url, database) = (admin_url.clone(), name.clone());
                let dropped = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .ok()?;
                    runtime.block_on(async {
                        let mut conn = PgConnection::connect(&admin_url).await.ok()?;
                        let sql = format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)");
                        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                            .execute(&mut conn)
                            .await
                            .ok()?;
                        conn.close().await.ok()
                    })
                })
                .join();
                if !matches!(dropped, Ok(Some(()))) {
                    tracing::warn!(%name, "could not drop the test database");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn replaces_database_name() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5433/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5433/t1"
        );
        assert_eq!(
            database_url("postgres://u:p@h:1/postgres?sslmode=disable", "t1"),
            "postgres://u:p@h:1/t1?sslmode=disable"
        );
        assert_eq!(database_url("postgres://h", "t1"), "postgres://h/t1");
    }
}

//! The nodes a router knows: configured ones and ones that joined.

use sqlx::Row;

use super::{Ledger, LedgerError, db};

/// How a node came to be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeSource {
    /// From the router's configuration.
    Static,
    /// Announced itself and passed attestation.
    Joined,
}

impl NodeSource {
    /// The stored form: `static` or `joined`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Joined => "joined",
        }
    }

    fn parse(text: &str) -> Result<Self, LedgerError> {
        match text {
            "static" => Ok(Self::Static),
            "joined" => Ok(Self::Joined),
            other => Err(LedgerError::Corrupt {
                table: "nodes",
                column: "source",
                detail: format!("unknown source {other:?}"),
            }),
        }
    }
}

/// A known node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// The node's id.
    pub id: String,
    /// Its base URL.
    pub url: String,
    /// How it came to be known.
    pub source: NodeSource,
    /// When it was first added (Unix seconds).
    pub added_at: i64,
}

impl Ledger {
    /// Adds a node or updates its URL and source (its `added_at` stays). A
    /// different node previously at the same URL is removed.
    pub async fn upsert_node(
        &self,
        id: &str,
        url: &str,
        source: NodeSource,
        added_at: i64,
    ) -> Result<(), LedgerError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM nodes WHERE url = $1 AND id <> $2")
            .bind(url)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db("upsert node"))?;
        sqlx::query(
            "INSERT INTO nodes (id, url, source, added_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET url = excluded.url, source = excluded.source",
        )
        .bind(id)
        .bind(url)
        .bind(source.as_str())
        .bind(added_at)
        .execute(&mut *tx)
        .await
        .map_err(db("upsert node"))?;
        tx.commit().await.map_err(db("upsert node"))
    }

    /// All known nodes, by id.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, LedgerError> {
        let rows = sqlx::query("SELECT id, url, source, added_at FROM nodes ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(db("list nodes"))?;
        rows.iter()
            .map(|row| {
                let source: String = row.try_get("source").map_err(db("list nodes"))?;
                Ok(NodeRow {
                    id: row.try_get("id").map_err(db("list nodes"))?,
                    url: row.try_get("url").map_err(db("list nodes"))?,
                    source: NodeSource::parse(&source)?,
                    added_at: row.try_get("added_at").map_err(db("list nodes"))?,
                })
            })
            .collect()
    }

    /// Forgets a node; returns whether it was known. Its log entries and
    /// receipts stay.
    pub async fn remove_node(&self, id: &str) -> Result<bool, LedgerError> {
        let done = sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db("remove node"))?;
        Ok(done.rows_affected() > 0)
    }
}

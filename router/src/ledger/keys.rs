//! Accounts and API keys.
//!
//! An API key is `sk-cloister-` followed by 43 characters of unpadded URL-safe
//! base64 (32 random bytes). Only its hex SHA-256 is stored; the secret is
//! shown once, by [`Ledger::create_key`]. Each key also has a short public id
//! (`key-` and 16 hex digits) to list and revoke it by.
//!
//! Each account holds a payer key: the router signs payer authorizations with
//! it for requests on its plain OpenAI endpoint (see
//! [`cloister_protocol::envelope`]), so receipts for those requests name the
//! account's payer address.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloister_protocol::{Address, PayerKey, PayerKeyError};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Ledger, LedgerError, db, random_bytes, unix_now};

/// The prefix of every API key secret.
pub const KEY_PREFIX: &str = "sk-cloister-";

/// A key just created. The secret is not stored anywhere: show it once.
#[derive(Clone, PartialEq, Eq)]
pub struct NewKey {
    /// The API key (`sk-cloister-...`).
    pub secret: String,
    /// The key's public id.
    pub key_id: String,
    /// The account the key spends from.
    pub account: String,
    /// The account's payer address.
    pub payer_address: Address,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("key_id", &self.key_id)
            .field("account", &self.account)
            .field("payer_address", &self.payer_address)
            .finish_non_exhaustive()
    }
}

/// Who an API key belongs to.
#[derive(Clone, PartialEq, Eq)]
pub struct Caller {
    /// The account.
    pub account: String,
    /// The public id of the key used.
    pub key_id: String,
    /// The account's balance when authenticated.
    pub balance: i64,
    /// The secret of the account's payer key. Never log it.
    pub payer_secret: [u8; 32],
}

impl Caller {
    /// The account's payer key.
    pub fn payer_key(&self) -> Result<PayerKey, PayerKeyError> {
        PayerKey::from_secret(&self.payer_secret)
    }
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("account", &self.account)
            .field("key_id", &self.key_id)
            .field("balance", &self.balance)
            .finish_non_exhaustive()
    }
}

/// An account with its usage, for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummary {
    /// The account's name.
    pub name: String,
    /// Its balance.
    pub balance: i64,
    /// The address of its payer key.
    pub payer_address: Address,
    /// Keys not revoked.
    pub active_keys: i64,
    /// Receipts recorded for it.
    pub requests: i64,
    /// Prompt tokens over those receipts.
    pub prompt_tokens: i64,
    /// Completion tokens over those receipts.
    pub completion_tokens: i64,
    /// Total charged.
    pub charged: i64,
}

/// What an account's own key holder may see of it: the router's bill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountOverview {
    /// The account's name.
    pub name: String,
    /// Its balance.
    pub balance: i64,
    /// Receipts recorded for it.
    pub requests: i64,
    /// Total charged (the sum of its rows in `charges`).
    pub charged: i64,
    /// The payer addresses it answers for: its own payer key's first, then
    /// those registered, in address order.
    pub payers: Vec<Address>,
}

/// Checks an account name: 1 to 64 characters of `[A-Za-z0-9._-]`.
pub fn validate_account_name(name: &str) -> Result<(), LedgerError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(LedgerError::InvalidAccountName {
            name: name.to_owned(),
        })
    }
}

/// The account paying for a lowercase `0x` address, if any.
async fn payer_owner(
    conn: &mut sqlx::AnyConnection,
    address: &str,
) -> Result<Option<String>, LedgerError> {
    let row = sqlx::query(
        "SELECT name FROM accounts WHERE payer_address = $1 \
         UNION ALL SELECT account FROM account_payers WHERE address = $1",
    )
    .bind(address)
    .fetch_optional(conn)
    .await
    .map_err(db("look up payer"))?;
    row.map(|row| row.try_get(0))
        .transpose()
        .map_err(db("look up payer"))
}

/// Hex SHA-256 of a key secret: what `api_keys.key_hash` holds.
fn key_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn parse_address(text: &str, table: &'static str) -> Result<Address, LedgerError> {
    text.parse().map_err(|e| LedgerError::Corrupt {
        table,
        column: "payer_address",
        detail: format!("{e}"),
    })
}

impl Ledger {
    /// Creates `account` when missing (with a fresh payer key), adds `credit`
    /// to its balance and creates an API key for it.
    pub async fn create_key(&self, account: &str, credit: i64) -> Result<NewKey, LedgerError> {
        validate_account_name(account)?;
        if credit < 0 {
            return Err(LedgerError::NegativeAmount {
                what: "credit",
                amount: credit,
            });
        }
        let payer = PayerKey::generate();
        let secret = format!(
            "{KEY_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)
        );
        let key_id = format!("key-{}", hex::encode(random_bytes::<8>()?));
        let now = unix_now();

        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO accounts (name, balance, payer_secret, payer_address, created_at) \
             VALUES ($1, 0, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(account)
        .bind(hex::encode(payer.secret()))
        .bind(format!("{:#x}", payer.address()))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("create account"))?;
        let row = sqlx::query(
            "UPDATE accounts SET balance = balance + $1 WHERE name = $2 AND balance <= $3 \
             RETURNING payer_address",
        )
        .bind(credit)
        .bind(account)
        .bind(i64::MAX - credit)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("credit account"))?
        .ok_or_else(|| LedgerError::BalanceOverflow {
            account: account.to_owned(),
        })?;
        let payer_address: String = row.try_get(0).map_err(db("credit account"))?;
        sqlx::query(
            "INSERT INTO api_keys (id, account, key_hash, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, NULL)",
        )
        .bind(&key_id)
        .bind(account)
        .bind(key_hash(&secret))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("create key"))?;
        tx.commit().await.map_err(db("create key"))?;
        tracing::info!(%account, %key_id, "API key created");
        Ok(NewKey {
            secret,
            key_id,
            account: account.to_owned(),
            payer_address: parse_address(&payer_address, "accounts")?,
        })
    }

    /// Revokes a key, named by its id or by its secret. Returns whether a key
    /// that was active is now revoked.
    pub async fn revoke_key(&self, key_id_or_secret: &str) -> Result<bool, LedgerError> {
        let (sql, value) = if key_id_or_secret.starts_with(KEY_PREFIX) {
            (
                "UPDATE api_keys SET revoked_at = $1 WHERE key_hash = $2 AND revoked_at IS NULL",
                key_hash(key_id_or_secret),
            )
        } else {
            (
                "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                key_id_or_secret.to_owned(),
            )
        };
        let done = sqlx::query(sql)
            .bind(unix_now())
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err(db("revoke key"))?;
        Ok(done.rows_affected() > 0)
    }

    /// The caller an API key belongs to, or `None` for an unknown or revoked
    /// key.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Caller>, LedgerError> {
        if !secret.starts_with(KEY_PREFIX) {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT k.id, a.name, a.balance, a.payer_secret FROM api_keys k \
             JOIN accounts a ON a.name = k.account \
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        )
        .bind(key_hash(secret))
        .fetch_optional(&self.pool)
        .await
        .map_err(db("authenticate"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let read = |row: &AnyRow| -> Result<(String, String, i64, String), sqlx::Error> {
            Ok((
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
            ))
        };
        let (key_id, account, balance, payer_hex) = read(&row).map_err(db("authenticate"))?;
        let mut payer_secret = [0u8; 32];
        hex::decode_to_slice(&payer_hex, &mut payer_secret).map_err(|e| LedgerError::Corrupt {
            table: "accounts",
            column: "payer_secret",
            detail: format!("{e}"),
        })?;
        Ok(Some(Caller {
            account,
            key_id,
            balance,
            payer_secret,
        }))
    }

    /// Adds `amount` (not negative) to an account's balance; returns the new
    /// balance.
    pub async fn add_credit(&self, account: &str, amount: i64) -> Result<i64, LedgerError> {
        validate_account_name(account)?;
        if amount < 0 {
            return Err(LedgerError::NegativeAmount {
                what: "credit",
                amount,
            });
        }
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE accounts SET balance = balance + $1 WHERE name = $2 AND balance <= $3 \
             RETURNING balance",
        )
        .bind(amount)
        .bind(account)
        .bind(i64::MAX - amount)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("add credit"))?;
        let Some(row) = row else {
            return Err(self.missing_or_overflow(&mut tx, account).await);
        };
        let balance: i64 = row.try_get(0).map_err(db("add credit"))?;
        tx.commit().await.map_err(db("add credit"))?;
        Ok(balance)
    }

    /// Why an account's balance update matched no row: the account does not
    /// exist, or the new balance would overflow.
    pub(crate) async fn missing_or_overflow(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        account: &str,
    ) -> LedgerError {
        let exists = sqlx::query("SELECT 1 FROM accounts WHERE name = $1")
            .bind(account)
            .fetch_optional(&mut **tx)
            .await;
        match exists {
            Ok(Some(_)) => LedgerError::BalanceOverflow {
                account: account.to_owned(),
            },
            Ok(None) => LedgerError::UnknownAccount {
                account: account.to_owned(),
            },
            Err(source) => LedgerError::Database {
                op: "read account",
                source,
            },
        }
    }

    /// Registers `payer` (an address whose key the account's user holds, for
    /// requests the user seals) as paid for by `account`. Returns `false` when
    /// it already was; fails with [`LedgerError::PayerTaken`] when another
    /// account answers for it.
    pub async fn register_payer(&self, account: &str, payer: Address) -> Result<bool, LedgerError> {
        validate_account_name(account)?;
        let address = format!("{payer:#x}");
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT 1 FROM accounts WHERE name = $1")
            .bind(account)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("register payer"))?;
        if exists.is_none() {
            return Err(LedgerError::UnknownAccount {
                account: account.to_owned(),
            });
        }
        if let Some(owner) = payer_owner(&mut tx, &address).await? {
            return if owner == account {
                Ok(false)
            } else {
                Err(LedgerError::PayerTaken {
                    payer,
                    account: owner,
                })
            };
        }
        sqlx::query("INSERT INTO account_payers (address, account, added_at) VALUES ($1, $2, $3)")
            .bind(address.as_str())
            .bind(account)
            .bind(unix_now())
            .execute(&mut *tx)
            .await
            .map_err(db("register payer"))?;
        tx.commit().await.map_err(db("register payer"))?;
        tracing::info!(%account, payer = %address, "payer registered");
        Ok(true)
    }

    /// Forgets a registered payer address; returns whether it was registered.
    /// (An account's own payer key cannot be removed.)
    pub async fn unregister_payer(&self, payer: Address) -> Result<bool, LedgerError> {
        let done = sqlx::query("DELETE FROM account_payers WHERE address = $1")
            .bind(format!("{payer:#x}"))
            .execute(&self.pool)
            .await
            .map_err(db("unregister payer"))?;
        Ok(done.rows_affected() > 0)
    }

    /// The account that pays for `payer` (hex address, `0x` optional, any
    /// case): the account whose own payer key it is, or that registered it.
    pub async fn payer_account(&self, payer: &str) -> Result<Option<String>, LedgerError> {
        let hex = payer.trim();
        let hex = hex
            .strip_prefix("0x")
            .or_else(|| hex.strip_prefix("0X"))
            .unwrap_or(hex);
        let address = format!("0x{}", hex.to_ascii_lowercase());
        let mut conn = self.pool.acquire().await.map_err(db("look up payer"))?;
        payer_owner(&mut conn, &address).await
    }

    /// The overview of one account, or `None` when it does not exist.
    pub async fn account_overview(
        &self,
        account: &str,
    ) -> Result<Option<AccountOverview>, LedgerError> {
        let row = sqlx::query(
            "SELECT a.name, a.balance, a.payer_address, \
               (SELECT COUNT(*) FROM receipts r WHERE r.account = a.name) AS requests, \
               (SELECT CAST(COALESCE(SUM(c.amount), 0) AS BIGINT) FROM charges c \
                  WHERE c.account = a.name) AS charged \
             FROM accounts a WHERE a.name = $1",
        )
        .bind(account)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("read account"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let read = || -> Result<(String, i64, String, i64, i64), sqlx::Error> {
            Ok((
                row.try_get("name")?,
                row.try_get("balance")?,
                row.try_get("payer_address")?,
                row.try_get("requests")?,
                row.try_get("charged")?,
            ))
        };
        let (name, balance, own_payer, requests, charged) = read().map_err(db("read account"))?;
        let mut payers = vec![parse_address(&own_payer, "accounts")?];
        let registered =
            sqlx::query("SELECT address FROM account_payers WHERE account = $1 ORDER BY address")
                .bind(account)
                .fetch_all(&self.pool)
                .await
                .map_err(db("read account payers"))?;
        for row in &registered {
            let address: String = row.try_get(0).map_err(db("read account payers"))?;
            payers.push(parse_address(&address, "account_payers")?);
        }
        Ok(Some(AccountOverview {
            name,
            balance,
            requests,
            charged,
            payers,
        }))
    }

    /// Every account with its key count and usage, by name.
    pub async fn accounts(&self) -> Result<Vec<AccountSummary>, LedgerError> {
        let rows = sqlx::query(
            "SELECT a.name, a.balance, a.payer_address, \
               (SELECT COUNT(*) FROM api_keys k \
                  WHERE k.account = a.name AND k.revoked_at IS NULL) AS active_keys, \
               (SELECT COUNT(*) FROM receipts r WHERE r.account = a.name) AS requests, \
               (SELECT CAST(COALESCE(SUM(r.prompt_tokens), 0) AS BIGINT) FROM receipts r \
                  WHERE r.account = a.name) AS prompt_tokens, \
               (SELECT CAST(COALESCE(SUM(r.completion_tokens), 0) AS BIGINT) FROM receipts r \
                  WHERE r.account = a.name) AS completion_tokens, \
               (SELECT CAST(COALESCE(SUM(c.amount), 0) AS BIGINT) FROM charges c \
                  WHERE c.account = a.name) AS charged \
             FROM accounts a ORDER BY a.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("list accounts"))?;
        rows.iter()
            .map(|row| {
                let read = || -> Result<(AccountSummary, String), sqlx::Error> {
                    Ok((
                        AccountSummary {
                            name: row.try_get("name")?,
                            balance: row.try_get("balance")?,
                            payer_address: Address::ZERO,
                            active_keys: row.try_get("active_keys")?,
                            requests: row.try_get("requests")?,
                            prompt_tokens: row.try_get("prompt_tokens")?,
                            completion_tokens: row.try_get("completion_tokens")?,
                            charged: row.try_get("charged")?,
                        },
                        row.try_get("payer_address")?,
                    ))
                };
                let (mut summary, address) = read().map_err(db("list accounts"))?;
                summary.payer_address = parse_address(&address, "accounts")?;
                Ok(summary)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names() {
        for ok in ["a", "alice", "Team-1.prod_x", &"x".repeat(64)] {
            assert!(validate_account_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "ä", "a/b", &"x".repeat(65)] {
            assert!(validate_account_name(bad).is_err(), "{bad}");
        }
    }
}

//! Reading the router: JSON pages over HTTP(S), with errors that say which
//! URL failed and how.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use cloister_router::ledger::LogEntry;
use serde_json::Value;

use super::{RouterArgs, field};

/// Entries or receipts asked for per page.
const PAGE: u32 = 100;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A router to read from.
#[derive(Debug)]
pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    pub(crate) fn new(args: &RouterArgs) -> Result<Self> {
        let base = args.router.trim().trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!(
                "--router {:?} must be an http:// or https:// URL",
                args.router
            );
        }
        let http =
            cloister_router::upstream::client(args.router_ca.as_deref(), Duration::from_secs(10))
                .context("--router-ca")?;
        Ok(Self { http, base })
    }

    /// `GET path` (with `key` as Bearer when given), as JSON.
    pub(crate) async fn get(&self, path: &str, key: Option<&str>) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.get(&url);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let fetch = async {
            let response = request
                .send()
                .await
                .with_context(|| format!("cannot reach {url}"))?;
            let status = response.status();
            let body = response
                .bytes()
                .await
                .with_context(|| format!("reading {url}"))?;
            if !status.is_success() {
                let message = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| {
                        field(field(&v, "error"), "message")
                            .as_str()
                            .map(str::to_owned)
                    })
                    .unwrap_or_default();
                bail!("{url} answered HTTP {status} {message}");
            }
            serde_json::from_slice::<Value>(&body)
                .with_context(|| format!("{url} did not answer JSON"))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, fetch)
            .await
            .unwrap_or_else(|_| bail!("{url} did not answer within {REQUEST_TIMEOUT:?}"))
    }

    /// Every log entry with an id above `after`, in order, a page at a time.
    pub(crate) async fn log_pages(
        &self,
        after: i64,
        mut each: impl FnMut(Vec<LogEntry>),
    ) -> Result<()> {
        let mut after = after;
        loop {
            let page = self
                .get(
                    &format!("/v1/attestation/log?after={after}&limit={PAGE}"),
                    None,
                )
                .await?;
            let entries: Vec<LogEntry> = serde_json::from_value(field(&page, "data").clone())
                .context("the attestation log page is not a list of log entries")?;
            let Some(last) = entries.last().map(|e| e.id) else {
                return Ok(());
            };
            if last <= after {
                bail!("the router paged backwards: asked for entries after {after}, got {last}");
            }
            after = last;
            each(entries);
        }
    }

    /// Every item of a receipt list (`/v1/audit/receipts` or `/v1/receipts`),
    /// following `next_after`.
    pub(crate) async fn receipt_pages(&self, path: &str, key: Option<&str>) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let query = match &after {
                None => format!("{path}?limit={PAGE}"),
                Some(a) => format!("{path}?limit={PAGE}&after={a}"),
            };
            let page = self.get(&query, key).await?;
            let Some(data) = field(&page, "data").as_array() else {
                bail!("{path} did not answer a list");
            };
            if data.is_empty() {
                return Ok(items);
            }
            let next = field(&page, "next_after").as_str().map(str::to_owned);
            if next.is_none() || next == after {
                bail!("{path} gave no way to the next page");
            }
            items.extend(data.iter().cloned());
            after = next;
        }
    }
}

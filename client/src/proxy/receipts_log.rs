//! The proxy's local receipt log: one JSON line per verified receipt, so a
//! user can check the router's bill later (`cloister audit receipts`). It
//! holds no prompt or completion text.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cloister_protocol::VerifiedReceipt;
use serde_json::json;

/// An append-only JSONL file.
#[derive(Debug, Clone)]
pub struct ReceiptLog {
    path: PathBuf,
    file: Arc<Mutex<std::fs::File>>,
}

impl ReceiptLog {
    /// Opens (creating it and its directory) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            path: path.to_owned(),
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Where it writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one receipt (and syncs it to disk) off the async threads.
    pub async fn append(&self, node: &str, receipt: &VerifiedReceipt) -> std::io::Result<()> {
        let r = &receipt.receipt.receipt;
        let line = json!({
            "recorded_at": cloister_attestation::Timestamp::now().unix(),
            "node": node,
            "charge": r.charge().to_string(),
            "receipt": receipt.receipt,
        });
        let mut bytes = serde_json::to_vec(&line)?;
        bytes.push(b'\n');
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            let file = file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut writer: &std::fs::File = &file;
            writer.write_all(&bytes)?;
            file.sync_data()
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

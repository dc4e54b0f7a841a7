//! Accepting a usage receipt: the only thing the router charges from.
//!
//! A receipt is stored (and its charge made) only when its signature
//! recovers to the signer the node attested, its request hash is the hash of
//! the sealed body the router forwarded, its response hash is the hash of the
//! ciphertext the router relayed, its payer is the payer of the account that
//! sent the request, and its model and prices are the node's attested ones.
//! The ledger stores each receipt once: a receipt delivered twice is charged
//! once.

use cloister_protocol::{Address, ExpectedReceipt, SignedReceipt};

use crate::ledger::{ReceiptRecord, Recorded};
use crate::nodes::Attested;
use crate::state::RouterState;

/// Why a receipt was not stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptRefused {
    /// Signature, signer, hashes or payer do not match.
    #[error("receipt does not verify: {0}")]
    Invalid(#[from] cloister_protocol::ReceiptError),
    /// The receipt names another model than the node attested.
    #[error("receipt names model {found:?}; the node attested {attested:?}")]
    WrongModel {
        /// In the receipt.
        found: String,
        /// Attested.
        attested: String,
    },
    /// The receipt's prices differ from the attested ones.
    #[error("receipt prices {found:?} differ from the attested {attested:?}")]
    WrongPrice {
        /// In the receipt (prompt, completion).
        found: (u64, u64),
        /// Attested.
        attested: (u64, u64),
    },
    /// The charge does not fit the ledger's integer.
    #[error("receipt charge {0} is out of range")]
    ChargeOutOfRange(String),
    /// The ledger failed.
    #[error("ledger: {0}")]
    Ledger(String),
}

/// What the router expects of a receipt for one request.
#[derive(Debug, Clone)]
pub struct Expectation<'a> {
    /// The node's attested identity.
    pub attested: &'a Attested,
    /// The node's id.
    pub node_id: &'a str,
    /// The account that sent the request.
    pub account: &'a str,
    /// Hashes and payer the router computed itself.
    pub expected: ExpectedReceipt,
}

/// Verifies `receipt` against `expectation` and records it (charging once).
pub async fn accept(
    state: &RouterState,
    receipt: &SignedReceipt,
    expectation: &Expectation<'_>,
) -> Result<Recorded, ReceiptRefused> {
    let outcome = check_and_record(state, receipt, expectation).await;
    match &outcome {
        Ok(Recorded::Charged { amount, .. }) => {
            state.metrics.receipt("charged");
            state.metrics.tokens(
                &receipt.receipt.model_id,
                receipt.receipt.prompt_tokens,
                receipt.receipt.completion_tokens,
            );
            tracing::info!(
                node = %expectation.node_id, account = %expectation.account,
                prompt_tokens = receipt.receipt.prompt_tokens,
                completion_tokens = receipt.receipt.completion_tokens,
                charge = amount, "receipt stored and charged"
            );
        }
        Ok(Recorded::Duplicate) => {
            state.metrics.receipt("duplicate");
            tracing::warn!(node = %expectation.node_id, "receipt delivered again: not charged twice");
        }
        Err(e) => {
            state.metrics.receipt("refused");
            tracing::warn!(node = %expectation.node_id, account = %expectation.account, error = %e, "receipt refused: nothing charged");
        }
    }
    outcome
}

async fn check_and_record(
    state: &RouterState,
    receipt: &SignedReceipt,
    expectation: &Expectation<'_>,
) -> Result<Recorded, ReceiptRefused> {
    let attested = expectation.attested;
    receipt.verify(&state.domain, attested.signer, &expectation.expected)?;
    let r = &receipt.receipt;
    if r.model_id != attested.model {
        return Err(ReceiptRefused::WrongModel {
            found: r.model_id.clone(),
            attested: attested.model.clone(),
        });
    }
    if (r.prompt_price, r.completion_price) != (attested.prompt_price, attested.completion_price) {
        return Err(ReceiptRefused::WrongPrice {
            found: (r.prompt_price, r.completion_price),
            attested: (attested.prompt_price, attested.completion_price),
        });
    }
    let record = ReceiptRecord::new(
        receipt,
        &state.domain,
        expectation.node_id,
        expectation.account,
        crate::state::now_unix(),
    )
    .map_err(|e| ReceiptRefused::ChargeOutOfRange(e.to_string()))?;
    state
        .ledger
        .record_receipt(&record)
        .await
        .map_err(|e| ReceiptRefused::Ledger(e.to_string()))
}

/// Lowercase `0x` hex of an address (as the ledger stores addresses).
pub fn address_hex(address: Address) -> String {
    format!("0x{}", hex::encode(address.as_slice()))
}

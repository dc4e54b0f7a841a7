//! Bindings generated from the compiled artifacts (`artifacts/*.json`).
#![allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all
)]

use alloy::sol;

sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    Registry,
    "artifacts/Registry.json"
);

sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    Settlement,
    "artifacts/Settlement.json"
);

sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    TestToken,
    "artifacts/TestToken.json"
);

impl From<&cloister_protocol::UsageReceipt> for Settlement::UsageReceipt {
    fn from(r: &cloister_protocol::UsageReceipt) -> Self {
        Self {
            requestId: r.request_id,
            nodeSigner: r.node_signer,
            payer: r.payer,
            modelId: r.model_id.clone(),
            promptTokens: r.prompt_tokens,
            completionTokens: r.completion_tokens,
            promptPrice: r.prompt_price,
            completionPrice: r.completion_price,
            requestHash: r.request_hash,
            responseHash: r.response_hash,
            issuedAt: r.issued_at,
        }
    }
}

/// The `Settlement.Entry` list of (account, amount) pairs.
pub fn entries(
    list: &[(alloy::primitives::Address, alloy::primitives::U256)],
) -> Vec<Settlement::Entry> {
    list.iter()
        .map(|(account, amount)| Settlement::Entry {
            account: *account,
            amount: *amount,
        })
        .collect()
}

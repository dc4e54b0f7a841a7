//! Chain errors: whose fault, and whether a retry can help.
//!
//! A contract's refusal is decoded into that contract's own error enum
//! ([`Revert`]); transport failures and unconfirmed transactions are kept
//! apart because retrying them is safe and can succeed.

use std::fmt;
use std::time::{Duration, Instant};

use alloy::contract::{CallBuilder, CallDecoder};
use alloy::primitives::{B256, Bytes};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionReceipt;
use alloy::sol_types::SolInterface;
use thiserror::Error;

use crate::bindings::{Registry, Settlement, TestToken};

/// A revert decoded with the contracts' ABIs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revert {
    Settlement(Settlement::SettlementErrors),
    Registry(Registry::RegistryErrors),
    Token(TestToken::TestTokenErrors),
    /// Revert data none of the ABIs knows (a `require` string, a panic, an
    /// unknown contract).
    Unknown(Bytes),
}

impl Revert {
    /// Decodes revert data, trying Settlement, Registry and the token.
    pub fn decode(data: &[u8]) -> Self {
        if let Ok(e) = Settlement::SettlementErrors::abi_decode(data) {
            return Self::Settlement(e);
        }
        if let Ok(e) = Registry::RegistryErrors::abi_decode(data) {
            return Self::Registry(e);
        }
        if let Ok(e) = TestToken::TestTokenErrors::abi_decode(data) {
            return Self::Token(e);
        }
        Self::Unknown(Bytes::copy_from_slice(data))
    }

    /// The error's Solidity name (`InsufficientEscrow`, ...), or `unknown`.
    pub fn name(&self) -> String {
        let debug = match self {
            Self::Settlement(e) => format!("{e:?}"),
            Self::Registry(e) => format!("{e:?}"),
            Self::Token(e) => format!("{e:?}"),
            Self::Unknown(_) => return "unknown".into(),
        };
        debug
            .split(['(', ' ', '{'])
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}

impl fmt::Display for Revert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Settlement(e) => write!(f, "Settlement: {e:?}"),
            Self::Registry(e) => write!(f, "Registry: {e:?}"),
            Self::Token(e) => write!(f, "token: {e:?}"),
            Self::Unknown(data) => write!(f, "unrecognized revert data {data}"),
        }
    }
}

/// A chain call that did not go through.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The contract refused the call (the caller's or the state's fault): the
    /// same call will be refused again until the state changes.
    #[error("{call} reverted: {revert}")]
    Reverted { call: &'static str, revert: Revert },
    /// Talking to the RPC endpoint failed (the network's or the node's
    /// fault): retrying can help.
    #[error("{call}: RPC failed: {source}")]
    Rpc {
        call: &'static str,
        #[source]
        source: alloy::contract::Error,
    },
    /// Sent, but not seen mined within the wait (dropped, replaced, stuck
    /// or the RPC went away): retrying is safe where the call is idempotent.
    #[error("{call}: transaction {tx} not mined after {waited:?}")]
    Unconfirmed {
        call: &'static str,
        tx: B256,
        waited: Duration,
    },
    /// Mined but failed (status 0).
    #[error("{call}: transaction {tx} failed on chain")]
    FailedOnChain { call: &'static str, tx: B256 },
    /// Not sent: the call does not apply to this deployment (the caller's
    /// fault).
    #[error("{call}: {detail}")]
    NotAllowed { call: &'static str, detail: String },
}

impl ChainError {
    /// Classifies an error from a contract call or transaction.
    pub fn from_contract(call: &'static str, source: alloy::contract::Error) -> Self {
        match source.as_revert_data() {
            Some(data) => Self::Reverted {
                call,
                revert: Revert::decode(&data),
            },
            None => Self::Rpc { call, source },
        }
    }

    /// Whether trying again later can help.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Rpc { .. } | Self::Unconfirmed { .. })
    }

    /// The decoded revert, when the contract refused.
    pub fn revert(&self) -> Option<&Revert> {
        match self {
            Self::Reverted { revert, .. } => Some(revert),
            _ => None,
        }
    }
}

/// How long [`send_and_confirm`] waits for a transaction to be mined.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(120);

/// Sends a transaction and waits for its receipt (polling by hash, from 50 ms
/// up to every 2 s, for [`CONFIRM_TIMEOUT`]); a revert at estimation or a
/// failed status is an error.
pub async fn send_and_confirm<P, D>(
    call: &'static str,
    builder: CallBuilder<P, D>,
) -> Result<TransactionReceipt, ChainError>
where
    P: Provider,
    D: CallDecoder,
{
    let provider = builder.provider.root().clone();
    let pending = builder
        .send()
        .await
        .map_err(|e| ChainError::from_contract(call, e))?;
    let tx = *pending.tx_hash();
    wait_for_receipt(&provider, call, tx, CONFIRM_TIMEOUT).await
}

/// Polls for the receipt of `tx` until `timeout`.
pub async fn wait_for_receipt<P: Provider>(
    provider: &P,
    call: &'static str,
    tx: B256,
    timeout: Duration,
) -> Result<TransactionReceipt, ChainError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        match provider.get_transaction_receipt(tx).await {
            Ok(Some(receipt)) if receipt.status() => return Ok(receipt),
            Ok(Some(_)) => return Err(ChainError::FailedOnChain { call, tx }),
            Ok(None) => {}
            Err(e) if started.elapsed() >= timeout => {
                return Err(ChainError::Rpc {
                    call,
                    source: alloy::contract::Error::TransportError(e),
                });
            }
            Err(e) => tracing::debug!(%tx, error = %e, "receipt poll failed; retrying"),
        }
        if started.elapsed() >= timeout {
            return Err(ChainError::Unconfirmed {
                call,
                tx,
                waited: started.elapsed(),
            });
        }
        tokio_sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

async fn tokio_sleep(d: Duration) {
    tokio::time::sleep(d).await;
}

//! Deploying the contracts, and the addresses file the router reads.

use std::path::{Path, PathBuf};

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::bindings::{Registry, Settlement, TestToken};
use crate::revert::{ChainError, send_and_confirm};

/// What to deploy with.
#[derive(Debug, Clone)]
pub struct DeployConfig {
    /// The settlement and stake token; `None` deploys a [`TestToken`]
    /// (development only) minted by the deployer.
    pub token: Option<Address>,
    /// The router's settlement key (records signers, posts batches).
    pub operator: Address,
    /// Protocol fee in basis points (250 = 2.5 %).
    pub fee_bps: u16,
    /// Seconds after posting during which a batch can be challenged.
    pub challenge_window_secs: u64,
    /// Seconds between a user's withdrawal request and the withdrawal.
    pub withdrawal_delay_secs: u64,
    /// Seconds between a provider's unbonding and the stake withdrawal.
    pub unbonding_delay_secs: u64,
    /// Stake a provider needs for its signers to be recorded.
    pub minimum_stake: U256,
    /// Operator bond needed to post batches (paid to a successful challenger).
    pub required_bond: U256,
}

impl DeployConfig {
    /// Defaults for `operator`: 2.5 % fee, 1 hour challenge window, 1 day
    /// withdrawal delay, 7 days unbonding, 1 000 and 10 000 whole tokens
    /// (6 decimals) of minimum stake and operator bond.
    pub fn new(operator: Address) -> Self {
        Self {
            token: None,
            operator,
            fee_bps: 250,
            challenge_window_secs: 3600,
            withdrawal_delay_secs: 86_400,
            unbonding_delay_secs: 7 * 86_400,
            minimum_stake: U256::from(1_000_000_000u64),
            required_bond: U256::from(10_000_000_000u64),
        }
    }
}

/// Where the contracts are: written by `cloister chain deploy`, read by the
/// router (`--chain-deployment`) and by `cloister audit chain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    pub chain_id: u64,
    pub token: Address,
    /// Whether `token` is the development [`TestToken`].
    pub test_token: bool,
    pub registry: Address,
    pub settlement: Address,
    pub governance: Address,
    pub operator: Address,
    /// The block of the Settlement deployment (where event scans start).
    pub block: u64,
}

/// Reading or writing the deployment file failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DeploymentFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a Cloister deployment file: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Deployment {
    /// Reads a deployment file.
    pub fn read(path: &Path) -> Result<Self, DeploymentFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| DeploymentFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| DeploymentFileError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Writes the file whole or not at all (a temporary file renamed over it).
    pub fn write(&self, path: &Path) -> Result<(), DeploymentFileError> {
        let fail = |source| DeploymentFileError::Write {
            path: path.to_owned(),
            source,
        };
        let mut text =
            serde_json::to_string_pretty(self).map_err(|e| fail(std::io::Error::other(e)))?;
        text.push('\n');
        let mut temp = path.as_os_str().to_owned();
        temp.push(".part");
        let temp = PathBuf::from(temp);
        std::fs::write(&temp, text).map_err(fail)?;
        std::fs::rename(&temp, path).map_err(fail)
    }
}

/// Deploys (a test token,) Registry and Settlement with the provider's
/// signer as governance; waits for each deployment to be mined.
pub async fn deploy<P: Provider + Clone>(
    provider: P,
    config: &DeployConfig,
) -> Result<Deployment, ChainError> {
    let chain_id = provider.get_chain_id().await.map_err(|e| ChainError::Rpc {
        call: "eth_chainId",
        source: alloy::contract::Error::TransportError(e),
    })?;
    let governance = provider
        .get_accounts()
        .await
        .ok()
        .and_then(|a| a.first().copied())
        .unwrap_or_default();
    let (token, test_token) = match config.token {
        Some(token) => (token, false),
        None => {
            let builder = TestToken::deploy_builder(
                provider.clone(),
                "Cloister Test USD".into(),
                "cUSD".into(),
            );
            (deployed("deploy TestToken", builder).await?, true)
        }
    };
    let registry = deployed(
        "deploy Registry",
        Registry::deploy_builder(
            provider.clone(),
            token,
            config.operator,
            config.minimum_stake,
            config.unbonding_delay_secs,
        ),
    )
    .await?;
    let settlement = deployed(
        "deploy Settlement",
        Settlement::deploy_builder(
            provider.clone(),
            token,
            registry,
            config.fee_bps,
            config.challenge_window_secs,
            config.withdrawal_delay_secs,
            config.required_bond,
        ),
    )
    .await?;
    let block = provider
        .get_block_number()
        .await
        .map_err(|e| ChainError::Rpc {
            call: "eth_blockNumber",
            source: alloy::contract::Error::TransportError(e),
        })?;
    let governance = Registry::new(registry, provider.clone())
        .governance()
        .call()
        .await
        .unwrap_or(governance);
    Ok(Deployment {
        chain_id,
        token,
        test_token,
        registry,
        settlement,
        governance,
        operator: config.operator,
        block,
    })
}

/// Sends a deployment and returns the new contract's address.
pub async fn deployed<P: Provider>(
    call: &'static str,
    builder: alloy::contract::RawCallBuilder<P>,
) -> Result<Address, ChainError> {
    let receipt = send_and_confirm(call, builder).await?;
    receipt.contract_address.ok_or(ChainError::FailedOnChain {
        call,
        tx: receipt.transaction_hash,
    })
}

/// Development funding with a [`TestToken`] the caller owns: mints `amount`
/// to `to`.
pub async fn mint_test_tokens<P: Provider + Clone>(
    provider: P,
    deployment: &Deployment,
    to: Address,
    amount: U256,
) -> Result<(), ChainError> {
    let token = TestToken::new(deployment.token, provider);
    send_and_confirm("TestToken.mint", token.mint(to, amount)).await?;
    Ok(())
}

//! Setting up a development chain with the [`TestToken`]: the operator's
//! bond, a provider's stake, users' escrow, governance allowlists. Each step
//! mints what it spends (only the test token allows that), approves the
//! contract and calls it, waiting for every transaction. Used by
//! `cloister dev` and by tests; never by a production deployment, whose
//! parties fund themselves.

use std::path::PathBuf;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;

use crate::bindings::{Registry, Settlement, TestToken};
use crate::deploy::Deployment;
use crate::revert::{ChainError, send_and_confirm};

/// The anvil binary: `$CLOISTER_ANVIL`, else where `scripts/setup.sh`
/// installs it from the npm registry (`$CLOISTER_CHAIN_TOOLS`, default
/// `~/.cache/cloister/chain`).
pub fn anvil_path() -> PathBuf {
    if let Some(path) = std::env::var_os("CLOISTER_ANVIL") {
        return PathBuf::from(path);
    }
    let tools = std::env::var_os("CLOISTER_CHAIN_TOOLS").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/cloister/chain")
        },
        PathBuf::from,
    );
    tools.join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
}

/// Why a development step was refused before it reached the chain.
fn not_test_token(call: &'static str) -> ChainError {
    ChainError::NotAllowed {
        call,
        detail: "the deployment's token is not the development TestToken".into(),
    }
}

/// A party to a development step: its signing provider and its address.
#[derive(Debug)]
pub struct Party<'a, P> {
    /// Signs as the party.
    pub provider: &'a P,
    /// The party's address.
    pub address: Address,
}

impl<P> Clone for Party<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P> Copy for Party<'_, P> {}

/// The token's owner (the deployer) mints `amount` to `party`, which
/// approves `spender` for it.
async fn mint_and_approve<P: Provider + Clone>(
    owner: &P,
    party: Party<'_, P>,
    deployment: &Deployment,
    spender: Address,
    amount: U256,
) -> Result<(), ChainError> {
    if !deployment.test_token {
        return Err(not_test_token("TestToken.mint"));
    }
    let token = TestToken::new(deployment.token, owner.clone());
    send_and_confirm("TestToken.mint", token.mint(party.address, amount)).await?;
    let token = TestToken::new(deployment.token, party.provider.clone());
    send_and_confirm("TestToken.approve", token.approve(spender, amount)).await?;
    Ok(())
}

/// The operator deposits `amount` of bond (minted by the token's owner).
pub async fn bond_operator<P: Provider + Clone>(
    owner: &P,
    operator: Party<'_, P>,
    deployment: &Deployment,
    amount: U256,
) -> Result<(), ChainError> {
    mint_and_approve(owner, operator, deployment, deployment.settlement, amount).await?;
    let settlement = Settlement::new(deployment.settlement, operator.provider.clone());
    send_and_confirm("Settlement.depositBond", settlement.depositBond(amount)).await?;
    Ok(())
}

/// A provider registers with `stake` (minted by the token's owner).
pub async fn register_provider<P: Provider + Clone>(
    owner: &P,
    provider: Party<'_, P>,
    deployment: &Deployment,
    stake: U256,
) -> Result<(), ChainError> {
    mint_and_approve(owner, provider, deployment, deployment.registry, stake).await?;
    let registry = Registry::new(deployment.registry, provider.provider.clone());
    send_and_confirm("Registry.register", registry.register(stake)).await?;
    Ok(())
}

/// The token's owner (`owner_address`) mints `amount` and deposits it into
/// `user`'s escrow.
pub async fn deposit_escrow<P: Provider + Clone>(
    owner: Party<'_, P>,
    deployment: &Deployment,
    user: Address,
    amount: U256,
) -> Result<(), ChainError> {
    mint_and_approve(
        owner.provider,
        owner,
        deployment,
        deployment.settlement,
        amount,
    )
    .await?;
    let settlement = Settlement::new(deployment.settlement, owner.provider.clone());
    send_and_confirm("Settlement.depositFor", settlement.depositFor(user, amount)).await?;
    Ok(())
}

/// Governance (`provider`'s key) allows a measurement-set digest and a
/// model digest.
pub async fn allow_code<P: Provider + Clone>(
    provider: &P,
    deployment: &Deployment,
    measurement: B256,
    model: B256,
) -> Result<(), ChainError> {
    let registry = Registry::new(deployment.registry, provider.clone());
    send_and_confirm(
        "Registry.setMeasurementAllowed",
        registry.setMeasurementAllowed(measurement, true),
    )
    .await?;
    send_and_confirm(
        "Registry.setModelAllowed",
        registry.setModelAllowed(model, true),
    )
    .await?;
    Ok(())
}

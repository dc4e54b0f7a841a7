//! `cloister chain`: deploy the Registry and Settlement contracts, and keep
//! the Registry's allowlists (governance).

use std::path::PathBuf;
use std::process::ExitCode;

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use clap::{Args, Subcommand};
use cloister_contracts::bindings::{Registry, TestToken};
use cloister_contracts::deploy::{DeployConfig, Deployment, deploy, mint_test_tokens};
use cloister_contracts::revert::send_and_confirm;
use cloister_contracts::rpc::connect;

use crate::router::runtime;

/// `cloister chain` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ChainCommand {
    /// Deploy Registry and Settlement (and, without --token, a test ERC-20
    /// for development) and write their addresses to a file the router
    /// reads (--chain-deployment).
    #[command(after_help = DEPLOY_EXAMPLES)]
    Deploy(DeployArgs),
    /// Governance: allow (or with --revoke, disallow) a measurement set and
    /// model digest in the Registry, so that the operator can record signers
    /// of nodes that run them.
    Allow(AllowArgs),
    /// A provider stakes in the Registry (registering on the first stake,
    /// adding to it after): approves the Registry for the amount of the
    /// settlement token, then registers or adds. The key is the provider's:
    /// the address nodes name with `cloister enclave --payout-address`.
    #[command(after_help = STAKE_EXAMPLES)]
    Stake(StakeArgs),
}

const STAKE_EXAMPLES: &str = "Examples:
  cloister chain stake --rpc $CLOISTER_RPC_URL --key-file provider.key \\
      --deployment cloister-chain.json --amount 1000000000000000000000

The amount is in the token's smallest unit and must reach the Registry's
minimum stake on the first call. Stake is withdrawn through unbonding
(Registry.startUnbonding, then withdrawStake after the delay), and can be
slashed by governance until then.";

const DEPLOY_EXAMPLES: &str = "Examples:
  cloister chain deploy --rpc http://127.0.0.1:8545 --key-file gov.key --operator 0x70997970C51812dc3A010C7d01b50e0d17dc79C8
  cloister router --chain-rpc http://127.0.0.1:8545 --chain-deployment cloister-chain.json \\
      --settlement-key-file operator.key --policy policy.toml

The deploying key becomes governance (replaceable by a multisig:
Registry.transferGovernance, then acceptGovernance from the multisig).";

#[derive(Debug, Args)]
pub(crate) struct KeyArgs {
    /// The chain's JSON-RPC URL.
    #[arg(long, env = "CLOISTER_RPC_URL", value_name = "URL")]
    rpc: String,
    /// File holding the signing key (0x hex secp256k1 secret).
    #[arg(long, env = "CLOISTER_CHAIN_KEY_FILE", value_name = "FILE")]
    key_file: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// The operator (the router's settlement key address) [default: the deployer].
    #[arg(long, value_name = "ADDRESS")]
    operator: Option<Address>,
    /// The settlement and stake ERC-20; without it a test token is deployed.
    #[arg(long, value_name = "ADDRESS")]
    token: Option<Address>,
    /// Protocol fee in basis points.
    #[arg(long, default_value = "250", value_name = "BPS")]
    fee_bps: u16,
    /// Seconds during which a posted batch can be challenged.
    #[arg(long, default_value = "3600", value_name = "SECONDS")]
    challenge_window: u64,
    /// Seconds between a user's withdrawal request and the withdrawal.
    #[arg(long, default_value = "86400", value_name = "SECONDS")]
    withdrawal_delay: u64,
    /// Seconds between a provider's unbonding and its stake withdrawal.
    #[arg(long, default_value = "604800", value_name = "SECONDS")]
    unbonding_delay: u64,
    /// Minimum provider stake, in the token's smallest unit.
    #[arg(long, default_value = "1000000000", value_name = "UNITS")]
    minimum_stake: u64,
    /// Operator bond required to post batches, in the token's smallest unit.
    #[arg(long, default_value = "10000000000", value_name = "UNITS")]
    required_bond: u64,
    /// With the test token: mint this many units to the deployer.
    #[arg(long, default_value = "0", value_name = "UNITS")]
    mint: u64,
    /// Where to write the addresses.
    #[arg(long, default_value = "cloister-chain.json", value_name = "FILE")]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct AllowArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// The deployment file.
    #[arg(long, default_value = "cloister-chain.json", value_name = "FILE")]
    deployment: PathBuf,
    /// Measurement-set hash (32 bytes, 0x hex) to allow.
    #[arg(long, value_name = "HEX")]
    measurement: Option<B256>,
    /// Model digest (the weights' SHA-256, 0x hex) to allow.
    #[arg(long, value_name = "HEX")]
    model: Option<B256>,
    /// Disallow instead.
    #[arg(long)]
    revoke: bool,
}

#[derive(Debug, Args)]
pub(crate) struct StakeArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// The deployment file.
    #[arg(long, default_value = "cloister-chain.json", value_name = "FILE")]
    deployment: PathBuf,
    /// Stake to add, in the settlement token's smallest unit.
    #[arg(long, value_name = "UNITS")]
    amount: U256,
}

pub(crate) fn run(command: ChainCommand) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = rt.block_on(async {
        match command {
            ChainCommand::Deploy(args) => deploy_command(args).await,
            ChainCommand::Allow(args) => allow_command(args).await,
            ChainCommand::Stake(args) => stake_command(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cloister chain: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn signer(key: &KeyArgs) -> anyhow::Result<(alloy::providers::DynProvider, Address)> {
    let text = std::fs::read_to_string(&key.key_file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", key.key_file.display()))?;
    let secret: PrivateKeySigner = text.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "{} does not hold a 0x hex secp256k1 key",
            key.key_file.display()
        )
    })?;
    let address = secret.address();
    let url = key
        .rpc
        .parse()
        .map_err(|e| anyhow::anyhow!("--rpc {:?}: {e}", key.rpc))?;
    Ok((connect(url, secret), address))
}

async fn deploy_command(args: DeployArgs) -> anyhow::Result<()> {
    let (provider, deployer) = signer(&args.key)?;
    let mut config = DeployConfig::new(args.operator.unwrap_or(deployer));
    config.token = args.token;
    config.fee_bps = args.fee_bps;
    config.challenge_window_secs = args.challenge_window;
    config.withdrawal_delay_secs = args.withdrawal_delay;
    config.unbonding_delay_secs = args.unbonding_delay;
    config.minimum_stake = U256::from(args.minimum_stake);
    config.required_bond = U256::from(args.required_bond);
    let deployment: Deployment = deploy(provider.clone(), &config).await?;
    if args.mint > 0 {
        if !deployment.test_token {
            anyhow::bail!("--mint needs the test token (no --token)");
        }
        mint_test_tokens(provider, &deployment, deployer, U256::from(args.mint)).await?;
    }
    deployment.write(&args.out)?;
    println!("chain id    {}", deployment.chain_id);
    println!(
        "token       {}{}",
        deployment.token,
        if deployment.test_token {
            " (test token)"
        } else {
            ""
        }
    );
    println!("Registry    {}", deployment.registry);
    println!("Settlement  {}", deployment.settlement);
    println!("governance  {}", deployment.governance);
    println!("operator    {}", deployment.operator);
    println!("written to  {}", args.out.display());
    Ok(())
}

async fn allow_command(args: AllowArgs) -> anyhow::Result<()> {
    if args.measurement.is_none() && args.model.is_none() {
        anyhow::bail!("give --measurement and/or --model");
    }
    let deployment = Deployment::read(&args.deployment)?;
    let (provider, _) = signer(&args.key)?;
    let registry = Registry::new(deployment.registry, provider);
    let allowed = !args.revoke;
    if let Some(m) = args.measurement {
        send_and_confirm(
            "Registry.setMeasurementAllowed",
            registry.setMeasurementAllowed(m, allowed),
        )
        .await?;
        println!(
            "measurement {m} {}",
            if allowed { "allowed" } else { "disallowed" }
        );
    }
    if let Some(m) = args.model {
        send_and_confirm(
            "Registry.setModelAllowed",
            registry.setModelAllowed(m, allowed),
        )
        .await?;
        println!(
            "model {m} {}",
            if allowed { "allowed" } else { "disallowed" }
        );
    }
    Ok(())
}

async fn stake_command(args: StakeArgs) -> anyhow::Result<()> {
    if args.amount.is_zero() {
        anyhow::bail!("--amount must be more than 0");
    }
    let deployment = Deployment::read(&args.deployment)?;
    let (provider, address) = signer(&args.key)?;
    let registry = Registry::new(deployment.registry, provider.clone());
    let before = registry
        .providers(address)
        .call()
        .await
        .map_err(|e| anyhow::anyhow!("reading the Registry at {}: {e}", deployment.registry))?;
    // `approve` is the ERC-20 standard call; the test token's binding speaks it.
    let token = TestToken::new(deployment.token, provider);
    send_and_confirm(
        "token.approve",
        token.approve(deployment.registry, args.amount),
    )
    .await?;
    if before.registered {
        send_and_confirm("Registry.addStake", registry.addStake(args.amount)).await?;
    } else {
        send_and_confirm("Registry.register", registry.register(args.amount)).await?;
    }
    let after = registry.providers(address).call().await?;
    println!("provider    {address}");
    println!(
        "stake       {} (was {}{})",
        after.stake,
        before.stake,
        if before.registered {
            ""
        } else {
            ", newly registered"
        }
    );
    println!("unbonding   {}", after.unbonding);
    Ok(())
}

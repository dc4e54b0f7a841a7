//! `cloister dev`'s chain: anvil (when `scripts/setup.sh` installed it) with
//! the contracts deployed and funded, so that the router settles what the
//! dev node serves. One development key (anvil's first account, known to
//! everyone: development only) is governance, operator and provider.
//!
//! The chain's state is kept in the data directory (`anvil-state.json`,
//! written every few seconds), with the deployment file (`chain.json`), so a
//! second run finds its contracts and its settled batches again.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, Result};
use cloister_contracts::bindings::Settlement;
use cloister_contracts::deploy::{DeployConfig, Deployment, deploy};
use cloister_contracts::dev_funding::{self, Party};
use cloister_contracts::signer_record::{measurement_digest, model_digest};
use cloister_router::nodes::Attested;

/// anvil's first development account (from its public default mnemonic).
const DEV_CHAIN_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// Escrow topped up for each dev payer (test-token units, 6 decimals).
const DEV_ESCROW: u64 = 1_000_000_000_000;
/// Short windows, so that batches finalize while one watches.
const DEV_CHALLENGE_WINDOW_SECS: u64 = 60;

/// The anvil process, killed when dropped (its state was dumped within the
/// last few seconds).
struct Anvil(Child);

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Anvil {
    fn wait_ready(&mut self, port: u16) -> Result<()> {
        let started = Instant::now();
        while TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err() {
            if let Some(status) = self.0.try_wait()? {
                anyhow::bail!("anvil exited ({status}) before listening on port {port}");
            }
            if started.elapsed() > Duration::from_secs(20) {
                anyhow::bail!("anvil did not listen on port {port} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

/// A running development chain with the contracts deployed.
pub(crate) struct DevChain {
    _anvil: Anvil,
    pub(crate) url: String,
    pub(crate) deployment: Deployment,
    pub(crate) deployment_file: PathBuf,
    pub(crate) key_file: PathBuf,
    pub(crate) dev_address: Address,
    provider: DynProvider,
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

impl DevChain {
    /// Starts anvil and deploys (or finds) the contracts; `None` when anvil
    /// is not installed (settlement stays off; the log says so).
    pub(crate) async fn start(data_dir: &Path, preferred_port: u16) -> Result<Option<Self>> {
        let anvil_bin = dev_funding::anvil_path();
        if !anvil_bin.exists() {
            tracing::info!(
                anvil = %anvil_bin.display(),
                "anvil not installed (scripts/setup.sh installs it): settlement off, receipts accumulate"
            );
            return Ok(None);
        }
        let port = if port_free(preferred_port) {
            preferred_port
        } else {
            crate::dev::free_port()?
        };
        let state = data_dir.join("anvil-state.json");
        let mut anvil = Anvil(
            Command::new(&anvil_bin)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .arg("--state")
                .arg(&state)
                .args(["--state-interval", "5", "--silent"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .with_context(|| format!("cannot start {}", anvil_bin.display()))?,
        );
        anvil.wait_ready(port)?;
        let url = format!("http://127.0.0.1:{port}");
        let key_file = data_dir.join("dev-chain-key");
        crate::dev::write_secret(&key_file, DEV_CHAIN_KEY)?;
        let key: PrivateKeySigner = DEV_CHAIN_KEY.parse().context("the dev chain key")?;
        let dev_address = key.address();
        let provider = cloister_contracts::rpc::connect(url.parse()?, key);
        let deployment_file = data_dir.join("chain.json");
        let deployment = deploy_or_find(&provider, &deployment_file, dev_address).await?;
        Ok(Some(Self {
            _anvil: anvil,
            url,
            deployment,
            deployment_file,
            key_file,
            dev_address,
            provider,
        }))
    }
}

/// The deployment of an earlier run when the chain still holds it, else a
/// new one: contracts, the operator's bond, the provider's stake.
async fn deploy_or_find(
    provider: &DynProvider,
    file: &Path,
    dev_address: Address,
) -> Result<Deployment> {
    if let Ok(previous) = Deployment::read(file) {
        let code = provider
            .get_code_at(previous.settlement)
            .await
            .context("reading the dev chain")?;
        if !code.is_empty() {
            tracing::info!(settlement = %previous.settlement, "dev chain: contracts of an earlier run");
            return Ok(previous);
        }
    }
    let mut config = DeployConfig::new(dev_address);
    config.challenge_window_secs = DEV_CHALLENGE_WINDOW_SECS;
    config.withdrawal_delay_secs = DEV_CHALLENGE_WINDOW_SECS;
    config.unbonding_delay_secs = DEV_CHALLENGE_WINDOW_SECS;
    let deployment = deploy(provider.clone(), &config).await?;
    let me = Party {
        provider,
        address: dev_address,
    };
    dev_funding::bond_operator(provider, me, &deployment, config.required_bond).await?;
    dev_funding::register_provider(provider, me, &deployment, config.minimum_stake).await?;
    deployment.write(file)?;
    tracing::info!(settlement = %deployment.settlement, registry = %deployment.registry, "dev chain: contracts deployed");
    Ok(deployment)
}

impl DevChain {
    /// Tops up the escrow of each payer below half of [`DEV_ESCROW`].
    pub(crate) async fn fund_payers(&self, payers: &[Address]) -> Result<()> {
        let settlement = Settlement::new(self.deployment.settlement, self.provider.clone());
        for &payer in payers {
            let balance = settlement.escrow(payer).call().await?;
            if balance < U256::from(DEV_ESCROW / 2) {
                dev_funding::deposit_escrow(
                    Party {
                        provider: &self.provider,
                        address: self.dev_address,
                    },
                    &self.deployment,
                    payer,
                    U256::from(DEV_ESCROW),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Governance allows the dev node's code and model.
    pub(crate) async fn allow_node(&self, attested: &Attested) -> Result<()> {
        let measurement = measurement_digest(&attested.platform, &attested.measurements)?;
        let model = model_digest(&attested.weights_sha256)?;
        dev_funding::allow_code(&self.provider, &self.deployment, measurement, model).await?;
        Ok(())
    }
}

//! `cloister dev`: the whole stack on localhost in one process: the router
//! with SQLite in a data directory, and one `cloister enclave` on the
//! simulated TEE serving SmolLM2-135M-Instruct, which joins the router with
//! a one-time join token. The router's policy allows simulated evidence and
//! no hardware: it is for this stack only.
//!
//! When anvil is installed (scripts/setup.sh installs it), a development
//! chain too ([`crate::dev_chain`]): the contracts deployed and funded, the
//! node's signer recorded by the router, and what the node serves settled
//! every 10 seconds.
//!
//! When the node passes, it prints lines a shell can paste (the base URL, an
//! API key with credit, the chain's RPC URL), the status page and a ready
//! curl line. Ctrl-C stops everything (requests in flight finish). A second
//! run reuses the data directory, the ledger, the key and the chain.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser};
use cloister_attestation::Policy;
use cloister_enclave::EnclaveArgs;
use cloister_router::RouterConfig;
use cloister_router::config::LogFormat;
use tokio::sync::watch;

use crate::dev_chain::DevChain;
use crate::router::{init_logging, runtime};

/// The model file the setup script installs.
pub(crate) const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The model id the dev node serves.
pub(crate) const DEV_MODEL_ID: &str = "SmolLM2-135M-Instruct";
const DEV_CREDIT: i64 = 1_000_000_000;

/// `cloister dev` arguments.
#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// Router port on 127.0.0.1.
    #[arg(long, value_name = "N", default_value = "8080")]
    port: u16,
    /// Data directory (SQLite ledger, the dev key, collateral cache).
    #[arg(long, value_name = "DIR", default_value = ".cloister")]
    data_dir: PathBuf,
    /// The model (default: SmolLM2-135M-Instruct as scripts/setup.sh installs it).
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,
    /// Requests per minute per API key (the router's default: 600).
    #[arg(long, value_name = "N", default_value = "600")]
    requests_per_minute: u32,
    /// Port of the development chain (anvil) on 127.0.0.1; another free
    /// port when it is taken.
    #[arg(long, value_name = "N", default_value = "8545")]
    chain_port: u16,
    /// No chain, even when anvil is installed: receipts accumulate unsettled.
    #[arg(long)]
    no_chain: bool,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

fn default_model() -> PathBuf {
    let dir = std::env::var_os("CLOISTER_MODELS_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/cloister/models"))
        })
        .unwrap_or_else(|| PathBuf::from("."));
    dir.join(SMOLLM2_FILE)
}

#[derive(Debug, Parser)]
struct EnclaveCli {
    #[command(flatten)]
    args: EnclaveArgs,
}

fn random_token() -> String {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 24];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    hex::encode(bytes)
}

/// A free port on 127.0.0.1 (bound and released: fine for a dev stack).
pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The dev account's key: the stored one while it still authenticates,
/// else a new one with credit, stored (mode 0600) for the next run.
async fn dev_key(
    ledger: &cloister_router::ledger::Ledger,
    data_dir: &Path,
) -> anyhow::Result<String> {
    let path = data_dir.join("dev-api-key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let key = text.trim().to_owned();
        if let Some(caller) = ledger.authenticate(&key).await? {
            if caller.balance <= 0 {
                ledger.add_credit(&caller.account, DEV_CREDIT).await?;
            }
            return Ok(key);
        }
    }
    let key = ledger.create_key("dev", DEV_CREDIT).await?;
    write_secret(&path, &key.secret)?;
    Ok(key.secret)
}

/// Writes a secret to `path`, readable by its owner only (mode 0600).
pub(crate) fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path)?, secret.as_bytes())
}

/// The dev account's payer key for `cloister proxy` (created and registered
/// on first use) and a policy that accepts this stack's simulated node: the
/// `cloister proxy` flags that use them.
async fn proxy_files(
    ledger: &cloister_router::ledger::Ledger,
    data_dir: &Path,
    chain: Option<&DevChain>,
) -> anyhow::Result<String> {
    let payer_path = data_dir.join("dev-payer-key");
    let (payer, _) = crate::proxy::payer_key(&payer_path)?;
    ledger.register_payer("dev", payer.address()).await?;
    let policy_path = data_dir.join("dev-policy.toml");
    std::fs::write(
        &policy_path,
        "# cloister dev's own node runs on the simulated TEE: development only.\n\
         platforms = []\n\n[simulated]\nallow = true\n",
    )?;
    let domain = chain.map_or_else(String::new, |c| {
        format!(
            " --chain-id {} --settlement-contract {}",
            c.deployment.chain_id, c.deployment.settlement
        )
    });
    Ok(format!(
        "--policy {} --payer-key {} --receipts {}{domain}",
        policy_path.display(),
        payer_path.display(),
        data_dir.join("receipts.jsonl").display()
    ))
}

/// `cloister dev`
pub(crate) fn run(args: DevArgs) -> ExitCode {
    init_logging(args.log_format);
    let Ok(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(stack(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn stack(args: DevArgs) -> anyhow::Result<()> {
    let model = args.model.clone().unwrap_or_else(default_model);
    if !model.exists() {
        anyhow::bail!(
            "model {} not found: run scripts/setup.sh (it installs SmolLM2-135M-Instruct), or give --model",
            model.display()
        );
    }
    std::fs::create_dir_all(&args.data_dir)?;
    let chain = if args.no_chain {
        None
    } else {
        DevChain::start(&args.data_dir, args.chain_port).await?
    };
    let token = random_token();
    let config = RouterConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], args.port)),
        data_dir: args.data_dir.clone(),
        // No hardware nodes here: nothing to fetch collateral for.
        collateral: args.data_dir.join("collateral").display().to_string(),
        join_tokens: vec![token.clone()],
        reattest_interval_secs: 60,
        requests_per_minute: args.requests_per_minute,
        log_format: args.log_format,
        chain_rpc_url: chain.as_ref().map(|c| c.url.clone()),
        chain_deployment: chain.as_ref().map(|c| c.deployment_file.clone()),
        settlement_key_file: chain.as_ref().map(|c| c.key_file.clone()),
        settlement_interval_secs: 10,
        ..RouterConfig::default()
    };
    // This stack's policy: simulated evidence only, no hardware platform.
    let mut policy = Policy::strict();
    policy.platforms.clear();
    policy.simulated.allow = true;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {}: {e} (another `cloister dev`? use --port)",
                config.listen
            )
        })?;
    let state = cloister_router::start(config, policy).await?;
    let key = dev_key(&state.ledger, &args.data_dir).await?;
    let proxy_files = proxy_files(&state.ledger, &args.data_dir, chain.as_ref()).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let wait_stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let router = tokio::spawn(cloister_router::serve(
        listener,
        state.clone(),
        wait_stop(stop_rx.clone()),
    ));

    // The node's address is stored in the ledger: the same port on every run
    // keeps one node entry (the router's port + 1 when free).
    let enclave_port = match std::net::TcpListener::bind(("127.0.0.1", args.port.wrapping_add(1))) {
        Ok(probe) => probe.local_addr()?.port(),
        Err(_) => free_port()?,
    };
    let router_url = format!("http://127.0.0.1:{}", args.port);
    let mut enclave_argv = vec![
        "enclave".to_owned(),
        "--model".into(),
        model.display().to_string(),
        "--model-id".into(),
        DEV_MODEL_ID.into(),
        "--tee".into(),
        "simulated".into(),
        // Prices, so that receipts and balances visibly move.
        "--prompt-price".into(),
        "1".into(),
        "--completion-price".into(),
        "2".into(),
        "--listen".into(),
        format!("127.0.0.1:{enclave_port}"),
        "--router".into(),
        router_url.clone(),
        "--advertise".into(),
        format!("http://127.0.0.1:{enclave_port}"),
        "--join-token".into(),
        token,
    ];
    if let Some(chain) = &chain {
        enclave_argv.extend([
            "--chain-id".into(),
            chain.deployment.chain_id.to_string(),
            "--settlement-contract".into(),
            chain.deployment.settlement.to_string(),
            "--payout-address".into(),
            chain.dev_address.to_string(),
        ]);
    }
    let enclave = EnclaveCli::try_parse_from(enclave_argv)?.args;
    let node = tokio::spawn(cloister_enclave::run(enclave, wait_stop(stop_rx.clone())));

    let ready = async {
        let started = Instant::now();
        loop {
            if !state.nodes.models().is_empty() {
                return Ok(());
            }
            if node.is_finished() {
                anyhow::bail!("the enclave stopped before it was ready (see the log above)");
            }
            if started.elapsed() > Duration::from_secs(600) {
                anyhow::bail!("the node did not pass attestation within 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        r = ready => r?,
        () = crate::enclave::shutdown_signal() => {
            let _ = stop_tx.send(true);
            return Ok(());
        }
    }
    let chain_lines = match &chain {
        Some(chain) => {
            fund_dev_chain(chain, &state).await?;
            format!("export CLOISTER_RPC_URL={}\n", chain.url)
        }
        None => String::new(),
    };
    let settlement_line = match &chain {
        Some(chain) => format!(
            "Settlement: every 10 s to {} on the dev chain; check it with\n\n\
             cloister audit chain --rpc $CLOISTER_RPC_URL --router {router_url}\n\n",
            chain.deployment.settlement
        ),
        None => "Settlement: off (no anvil; scripts/setup.sh installs it).\n\n".into(),
    };
    println!(
        "\nCloister is running (development stack: simulated TEE, not confidential).\n\n\
         export OPENAI_BASE_URL={router_url}/v1\n\
         export OPENAI_API_KEY={key}\n\
         {chain_lines}\n\
         Status page: {router_url}/\n\n\
         curl {router_url}/v1/chat/completions -H \"Authorization: Bearer $OPENAI_API_KEY\" \
         -H 'Content-Type: application/json' \
         -d '{{\"model\":\"{DEV_MODEL_ID}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Say hello.\"}}],\"max_tokens\":32}}'\n\n\
         End to end, through a local proxy that verifies the node under your own policy \
         (the router then sees only ciphertext):\n\n\
         cloister proxy --router {router_url} --api-key $OPENAI_API_KEY {proxy_files}\n\n\
         {settlement_line}\
         Ctrl-C stops everything.\n"
    );
    crate::enclave::shutdown_signal().await;
    eprintln!("stopping: requests in flight finish first");
    let _ = stop_tx.send(true);
    let (node, router) = tokio::join!(node, router);
    if let Ok(Err(e)) = node {
        tracing::warn!("enclave: {e}");
    }
    if let Ok(Err(e)) = router {
        tracing::warn!("router: {e}");
    }
    Ok(())
}

/// Escrow for the dev account's payers, and the dev node's code and model
/// allowed, so that its signer can be recorded and its receipts settled.
async fn fund_dev_chain(
    chain: &DevChain,
    state: &cloister_router::RouterState,
) -> anyhow::Result<()> {
    let payers = state
        .ledger
        .account_overview("dev")
        .await?
        .map(|a| a.payers)
        .unwrap_or_default();
    chain.fund_payers(&payers).await?;
    for node in state.nodes.all() {
        if let Some(attested) = node.serving() {
            chain.allow_node(&attested).await?;
        }
    }
    Ok(())
}

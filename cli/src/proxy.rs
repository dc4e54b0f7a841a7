//! `cloister proxy`: a local OpenAI-compatible endpoint that seals every
//! request end to end to a node that passes the user's own policy
//! (`cloister_client::proxy` does the work; this is the command line).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use cloister_attestation_collect::collateral::{
    CachingCollateral, CollateralSource, FileCollateral, HttpCollateral, HttpConfig,
};
use cloister_client::proxy::{ProxyState, ReceiptLog};
use cloister_client::{Client, ClientConfig};
use cloister_protocol::PayerKey;
use cloister_router::config::LogFormat;

use crate::router::{init_logging, runtime};

/// `cloister proxy` arguments.
#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// The router's URL (`https://router.example`; a trailing /v1 is fine).
    #[arg(long, env = "CLOISTER_ROUTER", value_name = "URL")]
    router: String,
    /// Your attestation policy (TOML, docs/attestation-policy.md). Nodes it
    /// refuses get nothing, whatever the router's own policy says. It must
    /// pin the code of every platform it allows (or say
    /// allow_any_measurement).
    #[arg(long, env = "CLOISTER_POLICY", value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Where the local endpoint listens.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// The router API key used for every request. Without it, each
    /// request's own `Authorization: Bearer` header is passed on.
    #[arg(
        long,
        env = "CLOISTER_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,
    /// Your payer key (64 hex digits), registered to the API key's account
    /// (`cloister keys create --account NAME --payer ADDRESS`). Created,
    /// mode 0600, when the file does not exist.
    #[arg(long, value_name = "FILE")]
    payer_key: Option<PathBuf>,
    /// The receipt log (JSONL), to check the router's bill later
    /// (`cloister audit receipts`).
    #[arg(long, value_name = "FILE")]
    receipts: Option<PathBuf>,
    /// Seconds a node's verdict is trusted before it is challenged again
    /// with a fresh nonce.
    #[arg(long, value_name = "SECS", default_value = "300")]
    verdict_ttl_secs: u64,
    /// Where TDX collateral and AMD CRLs for verifying nodes come from:
    /// `http` (Intel PCS and AMD KDS, cached under
    /// ~/.cache/cloister/collateral), a directory laid out as
    /// `cloister-attestation-collect` writes it (offline), or `bundle`
    /// (only what each node ships in its bundle).
    #[arg(long, value_name = "SOURCE", default_value = "http")]
    collateral: String,
    /// Chain id of the receipts' EIP-712 domain: the router's settlement
    /// chain [default: the development chain, 31337].
    #[arg(long, env = "CLOISTER_CHAIN_ID", value_name = "ID")]
    chain_id: Option<u64>,
    /// Settlement contract of the receipts' EIP-712 domain (0x...): the
    /// router's (`cloister audit chain` names it) [default: the zero address
    /// of the development domain]. Nodes signing for another are refused.
    #[arg(long, env = "CLOISTER_SETTLEMENT_CONTRACT", value_name = "ADDRESS")]
    settlement_contract: Option<cloister_protocol::Address>,
    /// Extra CA certificates (PEM) for the router's TLS.
    #[arg(long, value_name = "FILE")]
    router_ca: Option<PathBuf>,
    /// The largest request body forwarded.
    #[arg(long, value_name = "BYTES", default_value = "4194304")]
    max_request_bytes: usize,
    /// Log format (logs never hold prompt or completion text).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

fn state_dir(kind: &str, xdg: &str, fallback: &str) -> PathBuf {
    std::env::var_os(xdg)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(fallback)))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("cloister")
        .join(kind)
}

/// Reads the payer key at `path`, or creates one there (mode 0600).
pub(crate) fn payer_key(path: &Path) -> anyhow::Result<(PayerKey, bool)> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim().trim_start_matches("0x")).map_err(|_| {
                anyhow::anyhow!("{}: not a payer key (64 hex digits)", path.display())
            })?;
            let secret: [u8; 32] = bytes.try_into().map_err(|_| {
                anyhow::anyhow!(
                    "{}: a payer key is 32 bytes (64 hex digits)",
                    path.display()
                )
            })?;
            Ok((PayerKey::from_secret(&secret)?, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = PayerKey::generate();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            std::io::Write::write_all(
                &mut options.open(path)?,
                hex::encode(key.secret()).as_bytes(),
            )?;
            Ok((key, true))
        }
        Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
    }
}

fn collateral_source(source: &str) -> Option<Arc<dyn CollateralSource>> {
    match source {
        "bundle" => None,
        "http" => Some(Arc::new(CachingCollateral::new(
            HttpCollateral::new(HttpConfig::default()),
            state_dir("collateral", "XDG_CACHE_HOME", ".cache"),
        ))),
        dir => Some(Arc::new(FileCollateral::new(dir))),
    }
}

/// `cloister proxy`
pub(crate) fn run(args: ProxyArgs) -> ExitCode {
    init_logging(args.log_format);
    let Ok(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(proxy(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn proxy(args: ProxyArgs) -> anyhow::Result<()> {
    let policy = cloister_router::load_policy(args.policy.as_deref())?;
    let payer_path = args
        .payer_key
        .clone()
        .unwrap_or_else(|| state_dir("payer-key", "XDG_CONFIG_HOME", ".config"));
    let (payer, created) = payer_key(&payer_path)?;
    let payer_address = payer.address();
    if created {
        eprintln!(
            "created payer key {} (address {payer_address}); register it to your account: \
             cloister keys create --account NAME --payer {payer_address}",
            payer_path.display()
        );
    }
    let receipts_path = args
        .receipts
        .clone()
        .unwrap_or_else(|| state_dir("receipts.jsonl", "XDG_DATA_HOME", ".local/share"));
    let receipts = ReceiptLog::open(&receipts_path)
        .map_err(|e| anyhow::anyhow!("receipt log {}: {e}", receipts_path.display()))?;
    let mut config = ClientConfig::new(args.router.clone(), policy, payer);
    config.api_key = args.api_key.clone();
    config.verdict_ttl = Duration::from_secs(args.verdict_ttl_secs.max(1));
    config.router_ca = args.router_ca.clone();
    config.collateral = collateral_source(&args.collateral);
    if let Some(id) = args.chain_id {
        config.domain.chain_id = id;
    }
    if let Some(contract) = args.settlement_contract {
        config.domain.verifying_contract = contract;
    }
    let client = Arc::new(Client::new(config)?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let local = listener.local_addr()?;

    // What this proxy trusts, before anything is sent.
    if args.api_key.is_some() {
        match client.survey(None).await {
            Ok(survey) => {
                for node in &survey.trusted {
                    println!("trusted: {}", node.summary());
                }
                for refusal in &survey.refused {
                    println!("refused: {refusal}");
                }
                if survey.trusted.is_empty() {
                    eprintln!(
                        "warning: no node passes your policy: nothing will be sent until one does"
                    );
                }
            }
            Err(e) => eprintln!("warning: cannot verify the router's nodes yet: {e}"),
        }
    } else {
        println!("no --api-key: nodes are verified at the first request, with its key");
    }
    println!(
        "\ncloister proxy: sealing end to end via {} (payer {payer_address})\n\
         receipts: {}\n\n\
         export OPENAI_BASE_URL=http://{local}/v1\n",
        client.router(),
        receipts_path.display()
    );
    let state = Arc::new(ProxyState {
        client,
        pass_authorization: args.api_key.is_none(),
        receipts: Some(receipts),
        max_request_bytes: args.max_request_bytes,
    });
    cloister_client::proxy::serve(listener, state, crate::enclave::shutdown_signal()).await?;
    Ok(())
}

//! `cloister router`, `cloister keys`, `cloister accounts`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use cloister_router::config::LogFormat;
use cloister_router::ledger::Ledger;
use cloister_router::{RouterArgs, RouterConfig};

use crate::enclave::shutdown_signal;

/// Logging for the router and dev stack: stderr, text or JSON, `RUST_LOG`
/// (default info). The router logs ids, sizes, counts and timings, never
/// prompt or completion text.
pub(crate) fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sqlx=warn,hyper=warn,reqwest=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

/// `cloister router`
pub(crate) fn run(args: RouterArgs) -> ExitCode {
    let config = match RouterConfig::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.print_config {
        print!("{}", config.to_redacted_toml());
        return ExitCode::SUCCESS;
    }
    init_logging(config.log_format);
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(cloister_router::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where the ledger is, for the admin commands (the router's defaults).
#[derive(Debug, Clone, Args)]
pub(crate) struct LedgerArgs {
    /// Database URL [default: SQLite in the data directory].
    #[arg(long, value_name = "URL", env = "DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// The router's data directory.
    #[arg(
        long,
        value_name = "DIR",
        env = "CLOISTER_DATA_DIR",
        default_value = ".cloister",
        global = true
    )]
    data_dir: PathBuf,
}

impl LedgerArgs {
    fn url(&self) -> String {
        RouterConfig {
            database_url: self.database_url.clone(),
            data_dir: self.data_dir.clone(),
            ..RouterConfig::default()
        }
        .effective_database_url()
    }

    async fn connect(&self) -> anyhow::Result<Ledger> {
        if self.database_url.is_none() {
            std::fs::create_dir_all(&self.data_dir)?;
        }
        let url = self.url();
        Ledger::connect(&url)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", cloister_router::ledger::redacted_url(&url)))
    }
}

/// `cloister keys ...`
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create an API key (and the account, when new). The key is printed
    /// once; only its hash is stored.
    Create {
        /// Account name (letters, digits, `.`, `_`, `-`).
        #[arg(long, value_name = "NAME")]
        account: String,
        /// Add this much credit to the account (settlement token units).
        #[arg(long, value_name = "N", default_value = "0")]
        credit: i64,
        /// Register a payer address the account's users seal with themselves
        /// (for the sealed API); receipts billed to it are charged here.
        #[arg(long, value_name = "ADDRESS")]
        payer: Vec<String>,
        #[command(flatten)]
        ledger: LedgerArgs,
    },
    /// Revoke a key by its id or by the key itself.
    Revoke {
        /// Key id (as `cloister accounts` lists) or the key.
        key: String,
        #[command(flatten)]
        ledger: LedgerArgs,
    },
}

/// `cloister keys`
pub(crate) fn keys(command: KeysCommand) -> ExitCode {
    let Ok(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(async {
        match command {
            KeysCommand::Create {
                account,
                credit,
                payer,
                ledger,
            } => {
                let ledger = ledger.connect().await?;
                let key = ledger.create_key(&account, credit).await?;
                for address in &payer {
                    let address: cloister_protocol::Address = address
                        .parse()
                        .map_err(|_| anyhow::anyhow!("--payer {address:?} is not a 0x address"))?;
                    ledger.register_payer(&account, address).await?;
                }
                println!("{}", key.secret);
                eprintln!(
                    "created key {} for account {} (payer {}); the key above is shown only now",
                    key.key_id, key.account, key.payer_address
                );
                ledger.close().await;
                anyhow::Ok(true)
            }
            KeysCommand::Revoke { key, ledger } => {
                let ledger = ledger.connect().await?;
                let revoked = ledger.revoke_key(&key).await?;
                ledger.close().await;
                if revoked {
                    eprintln!("revoked");
                } else {
                    eprintln!("no such active key");
                }
                anyhow::Ok(revoked)
            }
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `cloister accounts`
#[derive(Debug, Args)]
pub(crate) struct AccountsArgs {
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    ledger: LedgerArgs,
}

/// Lists accounts with balances and usage.
pub(crate) fn accounts(args: AccountsArgs) -> ExitCode {
    let Ok(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(async {
        let ledger = args.ledger.connect().await?;
        let accounts = ledger.accounts().await?;
        ledger.close().await;
        anyhow::Ok(accounts)
    });
    let accounts = match result {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        let rows: Vec<_> = accounts
            .iter()
            .map(|a| {
                serde_json::json!({
                    "account": a.name, "balance": a.balance, "payer": a.payer_address,
                    "active_keys": a.active_keys, "requests": a.requests,
                    "prompt_tokens": a.prompt_tokens, "completion_tokens": a.completion_tokens,
                    "charged": a.charged,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<20} {:>14} {:>5} {:>9} {:>13} {:>17} {:>12}  payer",
        "account", "balance", "keys", "requests", "prompt_tokens", "completion_tokens", "charged"
    );
    for a in &accounts {
        println!(
            "{:<20} {:>14} {:>5} {:>9} {:>13} {:>17} {:>12}  {}",
            a.name,
            a.balance,
            a.active_keys,
            a.requests,
            a.prompt_tokens,
            a.completion_tokens,
            a.charged,
            a.payer_address
        );
    }
    ExitCode::SUCCESS
}

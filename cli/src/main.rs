//! `cloister`: the one front door to Cloister.
//!
//! `verify` (offline attestation), `enclave` (the node), `router` (the
//! OpenAI endpoint), `keys` / `accounts` (the router's ledger), `dev` (the
//! whole stack on localhost), `proxy` (end-to-end sealing for any OpenAI
//! client) and `audit` (the router's attestation history and bills,
//! re-checked), `chain` (the contracts) and `measure` (expected launch
//! measurements of an image, for auditors).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

mod audit;
mod chain;
mod config_reference;
mod dev;
mod dev_chain;
mod enclave;
mod input;
mod measure;
mod proxy;
mod render;
mod router;
mod verify;

/// Cloister: confidential LLM inference on attested TDX / SEV-SNP nodes.
#[derive(Debug, Parser)]
#[command(name = "cloister", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify attestation evidence offline: TDX quotes, SEV-SNP reports,
    /// NVIDIA GPU reports and Cloister evidence bundles.
    ///
    /// Exit status: 0 genuine and accepted by the policy; 1 rejected (every
    /// reason is listed); 2 unusable input (missing file, not evidence, bad
    /// policy, ...).
    #[command(subcommand, after_help = VERIFY_EXAMPLES)]
    Verify(verify::VerifyCommand),
    /// Run the enclave app inside a confidential VM: attested keys, sealed
    /// inference on mistral.rs, signed usage receipts.
    ///
    /// Serves GET /attestation?nonce=<64 hex>, POST /v1/sealed and
    /// GET /healthz. Outside a TDX or SEV-SNP guest, use --tee simulated
    /// (development only: its evidence proves nothing). Logs go to stderr
    /// (RUST_LOG to filter); they never contain prompt or completion text.
    #[command(after_help = ENCLAVE_EXAMPLES)]
    Enclave(cloister_enclave::EnclaveArgs),
    /// Run the router: an OpenAI-compatible endpoint in front of attested
    /// nodes, with a ledger (SQLite, or PostgreSQL via DATABASE_URL).
    ///
    /// Nodes are challenged with a fresh nonce and get traffic only while
    /// their re-attestation passes --policy. Plain requests are sealed to the
    /// node by the router; clients may seal themselves (/v1/sealed/{node}).
    /// Settings: --config FILE (TOML), environment, flags, in rising
    /// precedence; --print-config shows the result.
    #[command(after_help = ROUTER_EXAMPLES)]
    Router(cloister_router::RouterArgs),
    /// Manage the router's API keys (stored hashed).
    #[command(subcommand)]
    Keys(router::KeysCommand),
    /// List the router's accounts: balances and usage.
    Accounts(router::AccountsArgs),
    /// Run the whole stack on localhost: the router on 127.0.0.1:8080 with
    /// SQLite in ./.cloister, and one simulated-TEE enclave serving
    /// SmolLM2-135M-Instruct (development only). Prints the lines to paste.
    Dev(dev::DevArgs),
    /// A local OpenAI-compatible endpoint that seals every request end to
    /// end: nodes are verified under your own --policy with fresh nonces,
    /// answers and receipts are checked, receipts are logged locally. Any
    /// OpenAI client works through it unchanged; the router sees only
    /// ciphertext.
    #[command(after_help = PROXY_EXAMPLES)]
    Proxy(proxy::ProxyArgs),
    /// Audit a router from outside: re-verify its attestation log under your
    /// own policy and check where it sent traffic (`audit log`), or check an
    /// account's receipts and bill (`audit receipts`).
    ///
    /// Exit status: 0 consistent; 1 differences (every one listed, one line
    /// each); 2 unusable input or the router could not be read.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The chain: deploy the Registry and Settlement contracts, keep the
    /// Registry's allowlists (governance).
    ///
    /// Exit status: 0 done; 2 failed (the message says whether the chain
    /// refused, and why, or could not be reached).
    #[command(subcommand)]
    Chain(chain::ChainCommand),
    /// The launch measurements a genuine launch of an image gives (SEV-SNP
    /// launch digest; TDX MRTD and RTMR2), computed from the firmware, kernel,
    /// initrd, command line and VM shape, with the policy lines to pin them.
    #[command(subcommand)]
    Measure(measure::MeasureCommand),
    /// Print the configuration reference (every option of router, enclave,
    /// proxy and dev, with environment variables and defaults) as Markdown:
    /// docs/configuration.md is its output.
    #[command(hide = true)]
    ConfigReference,
}

const PROXY_EXAMPLES: &str = "Examples:
  cloister proxy --router https://router.example --policy my-policy.toml --api-key $KEY
  OPENAI_BASE_URL=http://127.0.0.1:8090/v1 python my_app.py

Exit status: 2 when it cannot start (no policy, an unusable payer key, the port taken).";

const ROUTER_EXAMPLES: &str = "Examples:
  cloister router --policy policy.toml --node http://10.0.0.5:7070
  cloister router --config router.toml --print-config
  DATABASE_URL=postgres://cloister@db/cloister cloister router --policy policy.toml \\
      --join-token \"$PROVIDER_TOKEN\" --tls-cert cert.pem --tls-key key.pem --listen 0.0.0.0:443

Then: cloister keys create --account alice --credit 1000000";

const ENCLAVE_EXAMPLES: &str = "Examples:
  cloister enclave --model SmolLM2-135M-Instruct.Q4_1.gguf --tee simulated
  cloister enclave --model /models/llama-3.1-8b --model-id llama-3.1-8b --listen 0.0.0.0:7070

Stops on SIGINT or SIGTERM after finishing the requests in flight.";

const VERIFY_EXAMPLES: &str = "Examples:
  cloister verify tdx quote.bin --collateral collateral.json
  cloister verify snp report.bin --vcek vcek.der --ask ask.pem --at 2026-01-01T00:00:00Z
  cloister verify snp report.bin --vcek vcek.der --ask ask.pem --crl milan-crl.der
  cloister verify gpu report.bin --chain chain.pem --nonce <64 hex>
  cloister verify bundle bundle.json --nonce <64 hex you sent> --policy policy.toml --json
  cloister verify bundle logged-bundle.json --any-nonce --at 2026-06-01T00:00:00Z

Without --policy no measurement is pinned: the verdict says whether the
hardware is genuine, not which code runs on it (see \"not checked\").
The policy format: README.md (Policy) and docs/attestation-policy.md.";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Verify(command) => verify::run(command),
        Command::Enclave(args) => enclave::run(args),
        Command::Router(args) => router::run(args),
        Command::Keys(command) => router::keys(command),
        Command::Accounts(args) => router::accounts(args),
        Command::Dev(args) => dev::run(args),
        Command::Proxy(args) => proxy::run(args),
        Command::Audit(command) => audit::run(command),
        Command::Chain(command) => chain::run(command),
        Command::Measure(command) => measure::run(command),
        Command::ConfigReference => {
            print!("{}", config_reference::render(&Cli::command()));
            ExitCode::SUCCESS
        }
    }
}

//! Command-line configuration of `cloister enclave`.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::engine::{DeviceChoice, DtypeChoice};

/// Where evidence comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum TeeChoice {
    /// Find configfs-tsm or /dev/sev-guest; fail if there is neither.
    #[default]
    Auto,
    /// Intel TDX (configfs-tsm, or libtdx_attest in builds that have it).
    Tdx,
    /// AMD SEV-SNP (configfs-tsm or /dev/sev-guest).
    SevSnp,
    /// A software TEE for development. Proves nothing; every bundle says so,
    /// and verifiers refuse it unless their policy allows simulated evidence.
    Simulated,
}

/// `cloister enclave`: serve sealed inference from inside a confidential VM.
#[derive(Debug, Clone, Args)]
pub struct EnclaveArgs {
    /// The model: a .gguf file, or a directory with one .gguf file or with
    /// config.json, tokenizer.json and *.safetensors.
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,
    /// The model id clients name in requests (default: the file or
    /// directory name). Bound into the attested identity.
    #[arg(long, value_name = "NAME")]
    pub model_id: Option<String>,
    /// Where attestation evidence comes from.
    #[arg(long, value_enum, default_value_t = TeeChoice::Auto)]
    pub tee: TeeChoice,
    /// configfs-tsm report directory.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/sys/kernel/config/tsm/report"
    )]
    pub configfs_root: PathBuf,
    /// SEV-SNP: VMPL to request reports at (default: the kernel's).
    #[arg(long, value_name = "N")]
    pub vmpl: Option<u32>,
    /// Address to listen on. Inside a CVM use 0.0.0.0:PORT.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Device to run the model on.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
    /// Dtype for activations and unquantized weights (auto: F32 on CPU).
    #[arg(long, value_enum, default_value_t = DtypeChoice::Auto)]
    pub dtype: DtypeChoice,
    /// Requests generating at once (mistral.rs batches them).
    #[arg(long, value_name = "N", default_value = "4")]
    pub max_concurrent: NonZeroUsize,
    /// Requests that may wait for a slot; more are answered "busy" (503).
    #[arg(long, value_name = "N", default_value = "16")]
    pub queue: usize,
    /// Largest max_tokens a request may ask for; also the default.
    #[arg(long, value_name = "N", default_value = "1024")]
    pub max_tokens: u64,
    /// Largest sealed request body, in bytes.
    #[arg(long, value_name = "BYTES", default_value = "1048576")]
    pub max_request_bytes: usize,
    /// Reuse KV caches across requests sharing a prefix. Faster, but a
    /// cache hit is visible in timing to whoever sees the traffic.
    #[arg(long)]
    pub prefix_cache: bool,
    /// EIP-712 domain of receipts: chain id of the settlement chain.
    #[arg(long, value_name = "ID", default_value = "31337")]
    pub chain_id: u64,
    /// EIP-712 domain of receipts: the settlement contract (0x...).
    #[arg(long, value_name = "ADDRESS")]
    pub settlement_contract: Option<String>,
}

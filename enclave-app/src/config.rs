//! Command-line configuration of `cloister enclave`.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Required outside `--tee simulated` (which defaults to the local
    /// development chain, 31337).
    #[arg(long, value_name = "ID")]
    pub chain_id: Option<u64>,
    /// EIP-712 domain of receipts: the settlement contract (0x...).
    /// Required outside `--tee simulated` (which defaults to the zero address).
    #[arg(long, value_name = "ADDRESS")]
    pub settlement_contract: Option<String>,
    /// Price per prompt token signed into every receipt, in the settlement
    /// token's smallest unit. Part of the attested identity.
    #[arg(long, value_name = "UNITS", default_value = "0")]
    pub prompt_price: u64,
    /// Price per completion token signed into every receipt, in the
    /// settlement token's smallest unit. Part of the attested identity.
    #[arg(long, value_name = "UNITS", default_value = "0")]
    pub completion_price: u64,
    /// The provider address paid for this node's receipts (0x...): the
    /// address staked in the Registry. Part of the attested identity, so the
    /// router records this node's receipt signer for exactly this provider.
    /// Without it the node serves, but its receipts cannot be settled.
    #[arg(long, value_name = "ADDRESS", env = "CLOISTER_PAYOUT_ADDRESS")]
    pub payout_address: Option<String>,

    /// Where the model is copied (and hashed while copied) before loading,
    /// so the engine reads exactly the bytes the identity attests: a tmpfs
    /// inside the confidential VM, which the host cannot touch.
    #[arg(long, value_name = "DIR", default_value = "/dev/shm")]
    pub model_staging: PathBuf,
    /// Load the model in place instead (for models that do not fit in
    /// memory twice): hashed before and after loading; relies on dm-verity
    /// for files swapped during the load.
    #[arg(long)]
    pub no_model_staging: bool,

    /// NVIDIA GPU confidential-computing evidence: `auto` is `required` with
    /// `--device cuda` and `off` otherwise. `required` refuses to start
    /// unless every GPU is in CC mode and its evidence can be collected.
    #[arg(long, value_enum, default_value_t = GpuChoice::Auto)]
    pub gpu: GpuChoice,
    /// The NVML library to load (default: the system's libnvidia-ml.so.1).
    #[arg(long, value_name = "PATH")]
    pub nvml_lib: Option<PathBuf>,

    /// A client's sealing time must be within this many seconds of the
    /// node's clock; sealed requests are remembered that long to refuse
    /// replays.
    #[arg(long, value_name = "SECONDS", default_value = "300")]
    pub replay_window: u64,
    /// Sealed requests remembered within the window; beyond it new requests
    /// are refused as busy (never forgotten early).
    #[arg(long, value_name = "N", default_value = "262144")]
    pub replay_capacity: usize,
    /// A response frame waiting longer than this for the client to read
    /// cancels the generation (no receipt) and frees its slot.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub send_timeout: Duration,
    /// The whole sealed body must arrive within this.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub body_timeout: Duration,
    /// A request head must arrive within this, on a new connection and
    /// between keep-alive requests (so idle connections close after it).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Connections open at once; more are closed on accept.
    #[arg(long, value_name = "N", default_value = "512")]
    pub max_connections: usize,
    /// Evidence collections at once on /attestation; more get 429.
    #[arg(long, value_name = "N", default_value = "2")]
    pub max_quote_generations: usize,
    /// Sealed response chunks are padded to a multiple of this many bytes
    /// of plaintext, so their sizes do not reveal token lengths (0: off).
    #[arg(long, value_name = "BYTES", default_value = "256")]
    pub pad_bucket: usize,
    /// Tokens arriving within this interval go out in one sealed chunk,
    /// hiding per-token timing at the cost of latency (0: off).
    #[arg(long, value_name = "DURATION", default_value = "0ms", value_parser = parse_duration)]
    pub coalesce: Duration,

    /// A router to announce this node to (its base URL). Announcing only
    /// names the address: the router then challenges the node and routes to
    /// it only while it passes. Needs --advertise and --join-token. (The
    /// host can do the same from outside the VM, since nothing secret is
    /// sent; a static node list in the router needs neither.)
    #[arg(long, value_name = "URL", requires_all = ["advertise", "join_token"])]
    pub router: Option<String>,
    /// The address the router reaches this node at (http:// or https://).
    #[arg(long, value_name = "URL", requires = "router")]
    pub advertise: Option<String>,
    /// The provider join token the router was configured with.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "CLOISTER_JOIN_TOKEN",
        hide_env_values = true,
        requires = "router"
    )]
    pub join_token: Option<String>,
}

/// GPU evidence policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum GpuChoice {
    /// `required` with `--device cuda`, `off` on the CPU.
    #[default]
    Auto,
    /// Collect evidence from every GPU through NVML; refuse to start without it.
    Required,
    /// No GPU evidence (bundles say so in the identity).
    Off,
}

/// Parses `250ms`, `5s`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (examples: 250ms, 5s, 2m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use ms, s or m)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}

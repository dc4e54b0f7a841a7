//! The router's configuration: a TOML file, then environment variables,
//! then command-line flags, each overriding the one before.
//! `cloister router --print-config` prints the effective result (secrets
//! redacted) as TOML that can be fed back with `--config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The effective configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// Address the OpenAI API, the sealed API and the status page listen on.
    pub listen: SocketAddr,
    /// PEM certificate chain for TLS on the listener (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS on the listener.
    pub tls_key: Option<PathBuf>,
    /// Where the SQLite ledger and the collateral cache live.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; default: SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// The attestation policy nodes must pass (TOML, see
    /// docs/attestation-policy.md). Required: without one no hardware node
    /// could be trusted.
    pub policy: Option<PathBuf>,
    /// Where TDX collateral and AMD CRLs come from: `http` (Intel PCS and
    /// AMD KDS, cached in `data_dir`) or a directory laid out like the
    /// collateral cache (offline).
    pub collateral: String,
    /// Nodes to attest at start (`http://` or `https://` base URLs).
    pub nodes: Vec<String>,
    /// Tokens providers present to join (`cloister enclave --join-token`).
    pub join_tokens: Vec<String>,
    /// PEM CA certificates trusted for `https://` node addresses, besides
    /// the public web roots.
    pub node_ca: Option<PathBuf>,
    /// Seconds between re-attestations of a node.
    pub reattest_interval_secs: u64,
    /// Seconds a node may take to answer an attestation challenge.
    pub attestation_timeout_secs: u64,
    /// EIP-712 domain of receipts: chain id.
    pub chain_id: u64,
    /// EIP-712 domain of receipts: settlement contract (0x...).
    pub settlement_contract: String,
    /// Settlement: the chain's JSON-RPC URL. Without it settlement is off
    /// and receipts accumulate in the ledger.
    pub chain_rpc_url: Option<String>,
    /// Settlement: the deployment file `cloister chain deploy` wrote; its
    /// chain id and Settlement address become the receipts' domain.
    pub chain_deployment: Option<PathBuf>,
    /// Settlement: file holding the operator's secp256k1 key (0x hex), the
    /// key that records signers and posts batches.
    pub settlement_key_file: Option<PathBuf>,
    /// Settlement: seconds between settlement rounds.
    pub settlement_interval_secs: u64,
    /// Settlement: most receipts in one batch.
    pub settlement_max_receipts: usize,
    /// Requests per minute per API key.
    pub requests_per_minute: u32,
    /// Tokens (prompt + completion) per minute per API key.
    pub tokens_per_minute: u64,
    /// Largest request body in bytes.
    pub max_request_bytes: usize,
    /// Seconds a client may take to send a request body.
    pub body_timeout_secs: u64,
    /// Seconds to connect to a node.
    pub connect_timeout_secs: u64,
    /// Seconds a node may take before the first frame of an answer.
    pub first_byte_timeout_secs: u64,
    /// Seconds a node may stay silent between frames of an answer.
    pub idle_timeout_secs: u64,
    /// Other nodes tried when one fails before the first byte.
    pub max_retries: u32,
    /// Consecutive failures that open a node's circuit breaker.
    pub breaker_failures: u32,
    /// Seconds an open breaker keeps a node out of routing.
    pub breaker_cooldown_secs: u64,
    /// Log format.
    pub log_format: LogFormat,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls_cert: None,
            tls_key: None,
            data_dir: PathBuf::from(".cloister"),
            database_url: None,
            policy: None,
            collateral: "http".into(),
            nodes: Vec::new(),
            join_tokens: Vec::new(),
            node_ca: None,
            reattest_interval_secs: 300,
            attestation_timeout_secs: 30,
            chain_id: 31337,
            settlement_contract: "0x0000000000000000000000000000000000000000".into(),
            chain_rpc_url: None,
            chain_deployment: None,
            settlement_key_file: None,
            settlement_interval_secs: 30,
            settlement_max_receipts: 1000,
            requests_per_minute: 600,
            tokens_per_minute: 2_000_000,
            max_request_bytes: 1024 * 1024,
            body_timeout_secs: 30,
            connect_timeout_secs: 5,
            first_byte_timeout_secs: 120,
            idle_timeout_secs: 60,
            max_retries: 2,
            breaker_failures: 3,
            breaker_cooldown_secs: 30,
            log_format: LogFormat::Text,
        }
    }
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for this configuration.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("{0}")]
    Invalid(String),
}

/// `cloister router` flags. Every flag also reads an environment variable;
/// flags win over the environment, which wins over the file.
#[derive(Debug, Clone, Default, Args)]
pub struct RouterArgs {
    /// TOML configuration file (see `--print-config` for every key).
    #[arg(long, value_name = "FILE", env = "CLOISTER_ROUTER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR", env = "CLOISTER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// TLS certificate chain (PEM) for the listener.
    #[arg(
        long,
        value_name = "FILE",
        env = "CLOISTER_TLS_CERT",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the listener.
    #[arg(
        long,
        value_name = "FILE",
        env = "CLOISTER_TLS_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Data directory (SQLite ledger, collateral cache) [default: ./.cloister].
    #[arg(long, value_name = "DIR", env = "CLOISTER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database: `sqlite://FILE` or `postgres://USER@HOST:PORT/DB`
    /// [default: SQLite in the data directory].
    #[arg(long, value_name = "URL", env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Attestation policy (TOML) every node must pass.
    #[arg(long, value_name = "FILE", env = "CLOISTER_POLICY")]
    pub policy: Option<PathBuf>,
    /// Collateral source: `http` or an offline directory [default: http].
    #[arg(long, value_name = "SOURCE", env = "CLOISTER_COLLATERAL")]
    pub collateral: Option<String>,
    /// A node to attest and route to (repeatable; adds to the file's list).
    #[arg(long = "node", value_name = "URL")]
    pub nodes: Vec<String>,
    /// A provider join token (repeatable; env: comma-separated).
    #[arg(
        long = "join-token",
        value_name = "TOKEN",
        env = "CLOISTER_JOIN_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub join_tokens: Vec<String>,
    /// Seconds between re-attestations of each node [default: 300].
    #[arg(long, value_name = "SECONDS", env = "CLOISTER_REATTEST_INTERVAL")]
    pub reattest_interval: Option<u64>,
    /// Settle receipts on this chain (JSON-RPC URL); needs
    /// --chain-deployment and --settlement-key-file.
    #[arg(long, value_name = "URL", env = "CLOISTER_RPC_URL")]
    pub chain_rpc: Option<String>,
    /// Deployment file from `cloister chain deploy` (contract addresses).
    #[arg(long, value_name = "FILE", env = "CLOISTER_CHAIN_DEPLOYMENT")]
    pub chain_deployment: Option<PathBuf>,
    /// File with the operator key that posts settlement batches (0x hex).
    #[arg(long, value_name = "FILE", env = "CLOISTER_SETTLEMENT_KEY_FILE")]
    pub settlement_key_file: Option<PathBuf>,
    /// Seconds between settlement rounds [default: 30].
    #[arg(long, value_name = "SECONDS", env = "CLOISTER_SETTLEMENT_INTERVAL")]
    pub settlement_interval: Option<u64>,
    /// Requests per minute per API key [default: 600].
    #[arg(long, value_name = "N", env = "CLOISTER_REQUESTS_PER_MINUTE")]
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute per API key [default: 2000000].
    #[arg(long, value_name = "N", env = "CLOISTER_TOKENS_PER_MINUTE")]
    pub tokens_per_minute: Option<u64>,
    /// Log format.
    #[arg(long, value_enum, env = "CLOISTER_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
}

impl RouterConfig {
    /// File, then environment and flags (clap has merged those two).
    pub fn load(args: &RouterArgs) -> Result<Self, ConfigError> {
        let mut config = match &args.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        config.apply(args);
        config.validate()?;
        Ok(config)
    }

    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.message().to_owned(),
        })
    }

    fn apply(&mut self, args: &RouterArgs) {
        fn set<T: Clone>(slot: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *slot = v.clone();
            }
        }
        set(&mut self.listen, &args.listen);
        if args.tls_cert.is_some() {
            self.tls_cert.clone_from(&args.tls_cert);
            self.tls_key.clone_from(&args.tls_key);
        }
        set(&mut self.data_dir, &args.data_dir);
        if args.database_url.is_some() {
            self.database_url.clone_from(&args.database_url);
        }
        if args.policy.is_some() {
            self.policy.clone_from(&args.policy);
        }
        set(&mut self.collateral, &args.collateral);
        for node in &args.nodes {
            if !self.nodes.contains(node) {
                self.nodes.push(node.clone());
            }
        }
        for token in &args.join_tokens {
            if !token.is_empty() && !self.join_tokens.contains(token) {
                self.join_tokens.push(token.clone());
            }
        }
        set(&mut self.reattest_interval_secs, &args.reattest_interval);
        if args.chain_rpc.is_some() {
            self.chain_rpc_url.clone_from(&args.chain_rpc);
        }
        if args.chain_deployment.is_some() {
            self.chain_deployment.clone_from(&args.chain_deployment);
        }
        if args.settlement_key_file.is_some() {
            self.settlement_key_file
                .clone_from(&args.settlement_key_file);
        }
        set(
            &mut self.settlement_interval_secs,
            &args.settlement_interval,
        );
        set(&mut self.requests_per_minute, &args.requests_per_minute);
        set(&mut self.tokens_per_minute, &args.tokens_per_minute);
        set(&mut self.log_format, &args.log_format);
    }

    /// Checks ranges and combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return invalid("tls_cert and tls_key go together".into());
        }
        if self.reattest_interval_secs == 0 {
            return invalid("reattest_interval_secs must be at least 1".into());
        }
        if self.requests_per_minute == 0 || self.tokens_per_minute == 0 {
            return invalid("rate limits must be at least 1 (per minute)".into());
        }
        if self.max_request_bytes < 1024 {
            return invalid("max_request_bytes must be at least 1024".into());
        }
        if self
            .settlement_contract
            .parse::<cloister_protocol::Address>()
            .is_err()
        {
            return invalid(format!(
                "settlement_contract {:?} is not a 0x address",
                self.settlement_contract
            ));
        }
        if self.chain_rpc_url.is_some()
            && (self.chain_deployment.is_none() || self.settlement_key_file.is_none())
        {
            return invalid(
                "settlement needs chain_deployment (from `cloister chain deploy`) and \
                 settlement_key_file besides chain_rpc_url"
                    .into(),
            );
        }
        if self.settlement_interval_secs == 0 || self.settlement_max_receipts == 0 {
            return invalid(
                "settlement_interval_secs and settlement_max_receipts must be at least 1".into(),
            );
        }
        for token in &self.join_tokens {
            if token.len() < 16 {
                return invalid(
                    "join tokens must be at least 16 characters (they are the only thing \
                     between the internet and the node list)"
                        .into(),
                );
            }
        }
        for url in &self.nodes {
            crate::nodes::check_node_url(url).map_err(ConfigError::Invalid)?;
        }
        Ok(())
    }

    /// The database URL in use.
    pub fn effective_database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("router.db").display()))
    }

    /// The effective configuration as TOML, join tokens and database
    /// passwords redacted.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.join_tokens = shown
            .join_tokens
            .iter()
            .map(|_| "<redacted>".to_owned())
            .collect();
        shown.database_url = Some(crate::ledger::redacted_url(&self.effective_database_url()));
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }

    /// Seconds between re-attestations.
    pub fn reattest_interval(&self) -> Duration {
        Duration::from_secs(self.reattest_interval_secs)
    }

    /// Deadline for a request body.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_secs.max(1))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn file_then_env_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("router.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nrequests_per_minute = 5\nnodes = [\"http://10.0.0.1:7070\"]\n",
        )
        .unwrap();
        let args = RouterArgs {
            config: Some(path),
            requests_per_minute: Some(7),
            nodes: vec!["http://10.0.0.2:7070".into()],
            ..RouterArgs::default()
        };
        let config = RouterConfig::load(&args).unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.requests_per_minute, 7);
        assert_eq!(config.nodes.len(), 2);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("router.toml");
        std::fs::write(&path, "listne = \"127.0.0.1:9000\"\n").unwrap();
        let err = RouterConfig::from_file(&path).unwrap_err();
        assert!(err.to_string().contains("listne"), "{err}");
        let config = RouterConfig {
            join_tokens: vec!["short".into()],
            ..RouterConfig::default()
        };
        assert!(config.validate().is_err());
        let config = RouterConfig {
            nodes: vec!["ftp://x".into()],
            ..RouterConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn printed_config_hides_secrets_and_reads_back() {
        let config = RouterConfig {
            join_tokens: vec!["provider-token-0123456789".into()],
            database_url: Some("postgres://cloister:hunter2hunter2@db:5432/c".into()),
            ..RouterConfig::default()
        };
        let text = config.to_redacted_toml();
        assert!(!text.contains("provider-token"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let back: RouterConfig = toml::from_str(&text).unwrap();
        assert_eq!(back.listen, config.listen);
    }
}

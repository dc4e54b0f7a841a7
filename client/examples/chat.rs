//! One chat request sealed end to end, streamed as it opens.
//!
//! Against `cloister dev` (which prints the key and writes the payer key and
//! a development policy into its data directory):
//!
//! ```text
//! cargo run -p cloister-client --example chat -- \
//!     --router http://127.0.0.1:8080 --api-key "$OPENAI_API_KEY" \
//!     --payer-key .cloister/dev-payer-key --policy .cloister/dev-policy.toml \
//!     --model SmolLM2-135M-Instruct "Say hello."
//! ```
#![allow(clippy::print_stdout)]

use std::io::Write as _;
use std::path::PathBuf;

use clap::Parser;
use cloister_attestation::Policy;
use cloister_client::{Client, ClientConfig};
use cloister_protocol::PayerKey;

#[derive(Parser)]
struct Options {
    /// The router's URL.
    #[arg(long)]
    router: String,
    /// The router API key.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    api_key: String,
    /// The payer key file (64 hex digits), registered to the key's account.
    #[arg(long)]
    payer_key: PathBuf,
    /// Your attestation policy (TOML).
    #[arg(long)]
    policy: PathBuf,
    /// The model.
    #[arg(long, default_value = "SmolLM2-135M-Instruct")]
    model: String,
    /// The prompt.
    prompt: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = Options::parse();
    let policy = Policy::from_toml(&std::fs::read_to_string(&options.policy)?)?;
    let secret: [u8; 32] = hex::decode(std::fs::read_to_string(&options.payer_key)?.trim())?
        .try_into()
        .map_err(|_| "a payer key is 64 hex digits")?;
    let mut config = ClientConfig::new(options.router, policy, PayerKey::from_secret(&secret)?);
    config.api_key = Some(options.api_key);
    let client = Client::new(config)?;

    let survey = client.survey(None).await?;
    for node in &survey.trusted {
        eprintln!("trusted: {}", node.summary());
    }
    for refusal in &survey.refused {
        eprintln!("refused: {refusal}");
    }
    let body = serde_json::json!({
        "model": options.model,
        "messages": [{"role": "user", "content": options.prompt}],
        "stream": true,
        "max_tokens": 64,
    });
    let mut answer = client
        .send(&options.model, serde_json::to_vec(&body)?, None)
        .await?;
    // SSE as the node wrote it: print each delta's text as it opens.
    let mut pending = String::new();
    while let Some(chunk) = answer.next_chunk().await? {
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            let data = event.trim().trim_start_matches("data:").trim();
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(data)
                && let Some(text) = value
                    .pointer("/choices/0/delta/content")
                    .and_then(serde_json::Value::as_str)
            {
                print!("{text}");
                std::io::stdout().flush()?;
            }
        }
    }
    let receipt = answer.receipt().ok_or("no receipt")?;
    let r = &receipt.receipt.receipt;
    println!(
        "\n\nverified receipt from {}: {} prompt + {} completion tokens, charge {}",
        r.node_signer,
        r.prompt_tokens,
        r.completion_tokens,
        r.charge()
    );
    Ok(())
}

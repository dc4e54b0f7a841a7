//! End-to-end sealing for applications that do not trust the router.
//!
//! A [`Client`] lists the nodes a router knows (`GET /v1/attestation`),
//! challenges each with its own fresh nonce through the router
//! (`GET /v1/attestation/{node}?nonce=…`, which the router forwards to the
//! node), verifies the bundle under the caller's own [`Policy`], and
//! remembers the verdict for a bounded time. A request is sealed to a
//! trusted node's attested key, sent to `POST /v1/sealed/{node}`, and
//! opened as it streams ([`Answer`]); the answer is complete only when its
//! receipt verified: signed by the attested signer, over this request's
//! hash and the ciphertext received, billing the caller's payer. A node
//! that fails before the first chunk is left for another (a fresh seal);
//! a tampered, truncated, reordered or replayed answer is an error
//! ([`ClientError::Tampered`]), never partial text passed off as complete.
//!
//! The router sees ciphertext, the payer address and the receipt, never
//! the prompt or the completion.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use cloister_client::{Client, ClientConfig};
//! use cloister_attestation::Policy;
//! use cloister_protocol::PayerKey;
//!
//! let policy = Policy::from_toml(&std::fs::read_to_string("policy.toml")?)?;
//! let payer = PayerKey::from_secret(&[0x11; 32])?; // registered to the key's account
//! let mut config = ClientConfig::new("https://router.example", policy, payer);
//! config.api_key = Some(std::env::var("CLOISTER_API_KEY")?);
//! let client = Client::new(config)?;
//!
//! let body = br#"{"model":"SmolLM2-135M-Instruct","messages":[{"role":"user","content":"Hi"}]}"#;
//! let answer = client.send("SmolLM2-135M-Instruct", body.to_vec(), None).await?;
//! let done = answer.collect().await?;
//! println!("{}", String::from_utf8_lossy(&done.plaintext));
//! println!("charged {} (receipt by {})", done.receipt.receipt.receipt.charge(), done.node.identity.signer);
//! # Ok(()) }
//! ```
//!
//! `examples/chat.rs` is the same as a program to run against `cloister dev`.
//! `cloister proxy` (feature `proxy`) puts all of it behind a local
//! OpenAI-compatible endpoint.

mod answer;
mod client;
mod error;
mod identity;
pub mod openai_body;
mod router_api;
pub mod tls;
mod verify;

#[cfg(feature = "proxy")]
pub mod proxy;

pub use answer::{Answer, CompleteAnswer};
pub use client::{Client, ClientConfig, RoundTrips, Survey};
pub use error::{ClientError, Fault, NodeRefusal};
pub use identity::{IdentityError, NodeIdentity};
pub use router_api::NodeListing;
pub use verify::{VerifiedNode, appraise_fresh};

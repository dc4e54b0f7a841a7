//! Cloister's contracts on an EVM chain, from Rust.
//!
//! - [`bindings`]: alloy bindings generated (`sol!`) from the compiled
//!   artifacts in `artifacts/` (built by `scripts/compile-contracts.sh` from
//!   `solidity/`; a test fails when they are stale).
//! - [`merkle`]: the batch Merkle tree exactly as `Settlement.verifyProof`
//!   checks it.
//! - [`batch`]: a settlement batch from stored receipts (deterministic order,
//!   per-user debits, per-provider credits, protocol fee).
//! - [`deploy`]: deploying Registry + Settlement (+ a test token) and the
//!   addresses file the router reads.
//! - [`dev_funding`]: funding a development chain with the test token.
//! - [`revert`]: contract reverts decoded into the contracts' own error types.
//! - [`rpc`]: a signing provider with node-side nonces.
//! - [`signer_record`]: the measurement-set and model digests the Registry
//!   records with an attested signer and governance allows.

pub mod batch;
pub mod bindings;
pub mod deploy;
pub mod dev_funding;
pub mod merkle;
pub mod revert;
pub mod rpc;
pub mod signer_record;
#[cfg(feature = "testing")]
pub mod testing;

pub use batch::{BatchError, BatchItem, BatchPlan};
pub use deploy::{DeployConfig, Deployment, DeploymentFileError};
pub use merkle::MerkleTree;
pub use revert::{ChainError, Revert};

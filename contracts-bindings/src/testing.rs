//! Test helpers (feature `testing`): a throwaway anvil chain.

use std::path::PathBuf;

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::signers::local::PrivateKeySigner;

/// The anvil binary (see [`crate::dev_funding::anvil_path`]).
pub fn anvil_path() -> PathBuf {
    crate::dev_funding::anvil_path()
}

/// A running anvil (killed on drop) and its funded development keys.
#[derive(Debug)]
pub struct TestChain {
    pub anvil: AnvilInstance,
}

impl TestChain {
    /// Starts anvil on a free port. Panics with the install hint when the
    /// binary is missing: tests that need a chain must not pass without one.
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    /// [`Self::start`] with extra anvil arguments (`--gas-limit N`, ...).
    #[allow(clippy::panic)]
    pub fn start_with_args(args: &[&str]) -> Self {
        let path = anvil_path();
        assert!(
            path.exists(),
            "anvil not found at {} (run scripts/setup.sh, or set CLOISTER_ANVIL)",
            path.display()
        );
        let anvil = Anvil::at(path).args(args.iter().copied()).spawn();
        Self { anvil }
    }

    /// The RPC URL.
    pub fn url(&self) -> String {
        self.anvil.endpoint()
    }

    /// Development key `i` (anvil funds ten with ether).
    #[allow(clippy::expect_used)]
    pub fn key(&self, i: usize) -> PrivateKeySigner {
        let keys = self.anvil.keys();
        PrivateKeySigner::from_signing_key(keys.get(i).expect("anvil has ten keys").clone().into())
    }
}

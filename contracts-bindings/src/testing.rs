//! Test helpers (feature `testing`): a throwaway anvil chain.

use std::path::PathBuf;

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::signers::local::PrivateKeySigner;

/// The anvil binary: `$CLOISTER_ANVIL`, else where `scripts/setup.sh`
/// installs it from the npm registry.
pub fn anvil_path() -> PathBuf {
    if let Some(path) = std::env::var_os("CLOISTER_ANVIL") {
        return PathBuf::from(path);
    }
    let tools = std::env::var_os("CLOISTER_CHAIN_TOOLS").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/cloister/chain")
        },
        PathBuf::from,
    );
    tools.join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
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

//! Connecting to a chain with a signing key.

use alloy::network::EthereumWallet;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::http::reqwest::Url;

/// An HTTP provider that signs with `key`.
///
/// Nonces are asked of the node for every transaction ("pending" count)
/// rather than counted locally: a call refused at gas estimation must not
/// leave a gap that holds every later transaction back, and a restarted
/// process must not reuse or skip a nonce.
pub fn connect(url: Url, key: PrivateKeySigner) -> DynProvider {
    ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(EthereumWallet::from(key))
        .connect_http(url)
        .erased()
}

/// A read-only HTTP provider.
pub fn connect_read_only(url: Url) -> DynProvider {
    ProviderBuilder::new()
        .disable_recommended_fillers()
        .connect_http(url)
        .erased()
}

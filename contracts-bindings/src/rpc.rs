//! Connecting to a chain with a signing key.

use alloy::network::EthereumWallet;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::client::RpcClient;
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::http::reqwest::{self, Url};
use std::time::Duration;

/// How long one RPC request may take before it fails (and can be retried).
pub const RPC_TIMEOUT: Duration = Duration::from_secs(30);

fn client(url: Url, timeout: Duration) -> RpcClient {
    // Building a client without TLS settings cannot fail in practice; fall
    // back to the default client (no timeout) rather than panic.
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .build()
        .unwrap_or_default();
    RpcClient::new_http_with_client(http, url)
}

/// An HTTP provider that signs with `key`.
///
/// Nonces are asked of the node for every transaction ("pending" count)
/// rather than counted locally: a call refused at gas estimation must not
/// leave a gap that holds every later transaction back, and a restarted
/// process must not reuse or skip a nonce.
pub fn connect(url: Url, key: PrivateKeySigner) -> DynProvider {
    connect_with_timeout(url, key, RPC_TIMEOUT)
}

/// [`connect`] with another per-request timeout.
pub fn connect_with_timeout(url: Url, key: PrivateKeySigner, timeout: Duration) -> DynProvider {
    ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(EthereumWallet::from(key))
        .connect_client(client(url, timeout))
        .erased()
}

/// A read-only HTTP provider.
pub fn connect_read_only(url: Url) -> DynProvider {
    ProviderBuilder::new()
        .disable_recommended_fillers()
        .connect_client(client(url, RPC_TIMEOUT))
        .erased()
}

//! A deployed world on a throwaway anvil: governance, operator, provider,
//! users, a challenger, and an enclave key that signs receipts.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic
)]

use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::signers::local::PrivateKeySigner;
use cloister_contracts::bindings::{Registry, Settlement, TestToken};
use cloister_contracts::deploy::{DeployConfig, Deployment, deploy};
use cloister_contracts::revert::{ChainError, Revert, send_and_confirm};
use cloister_contracts::testing::TestChain;
use cloister_protocol::{NodeKeys, ReceiptDomain, SignedReceipt, UsageReceipt};

pub const WINDOW: u64 = 100;
pub const WITHDRAWAL_DELAY: u64 = 50;
pub const UNBONDING: u64 = 200;
pub const MIN_STAKE: u64 = 1_000;
pub const BOND: u64 = 500;
pub const FEE_BPS: u16 = 250;

pub struct Party {
    pub key: PrivateKeySigner,
    pub provider: DynProvider,
}

impl Party {
    pub fn address(&self) -> Address {
        self.key.address()
    }
    pub fn settlement(&self, w: &World) -> Settlement::SettlementInstance<DynProvider> {
        Settlement::new(w.deployment.settlement, self.provider.clone())
    }
    pub fn registry(&self, w: &World) -> Registry::RegistryInstance<DynProvider> {
        Registry::new(w.deployment.registry, self.provider.clone())
    }
    pub fn token(&self, w: &World) -> TestToken::TestTokenInstance<DynProvider> {
        TestToken::new(w.deployment.token, self.provider.clone())
    }
}

pub struct World {
    pub chain: TestChain,
    pub deployment: Deployment,
    pub governance: Party,
    pub operator: Party,
    pub provider: Party,
    pub user: Party,
    pub user2: Party,
    pub challenger: Party,
    pub node: NodeKeys,
    pub measurement: B256,
    pub model: B256,
}

pub fn party(chain: &TestChain, i: usize) -> Party {
    let key = chain.key(i);
    let provider = cloister_contracts::rpc::connect(chain.url().parse().expect("url"), key.clone());
    Party { key, provider }
}

/// Asserts that `result` failed with a revert whose error is named `name`.
pub fn assert_reverts<T: std::fmt::Debug>(result: Result<T, ChainError>, name: &str) {
    match result {
        Err(ChainError::Reverted { revert, .. }) => {
            assert_eq!(revert.name(), name, "reverted with {revert}")
        }
        other => panic!("expected revert {name}, got {other:?}"),
    }
}

pub fn revert_of<T: std::fmt::Debug>(result: Result<T, ChainError>) -> Revert {
    match result {
        Err(ChainError::Reverted { revert, .. }) => revert,
        other => panic!("expected a revert, got {other:?}"),
    }
}

pub async fn send<D: alloy::contract::CallDecoder>(
    call: &'static str,
    builder: alloy::contract::CallBuilder<&DynProvider, D>,
) -> Result<(), ChainError> {
    send_and_confirm(call, builder).await.map(|_| ())
}

impl World {
    /// Deploys everything, mints tokens, registers the provider with the
    /// minimum stake, allows a measurement and a model, deposits the bond.
    pub async fn new() -> Self {
        let chain = TestChain::start();
        let governance = party(&chain, 0);
        let operator = party(&chain, 1);
        let provider = party(&chain, 2);
        let user = party(&chain, 3);
        let user2 = party(&chain, 4);
        let challenger = party(&chain, 5);
        let mut config = DeployConfig::new(operator.address());
        config.fee_bps = FEE_BPS;
        config.challenge_window_secs = WINDOW;
        config.withdrawal_delay_secs = WITHDRAWAL_DELAY;
        config.unbonding_delay_secs = UNBONDING;
        config.minimum_stake = U256::from(MIN_STAKE);
        config.required_bond = U256::from(BOND);
        let deployment = deploy(governance.provider.clone(), &config)
            .await
            .expect("deploy");
        let w = Self {
            chain,
            deployment,
            governance,
            operator,
            provider,
            user,
            user2,
            challenger,
            node: NodeKeys::generate().expect("keys"),
            measurement: B256::repeat_byte(0x11),
            model: B256::repeat_byte(0x22),
        };
        let token = w.governance.token(&w);
        for p in [&w.operator, &w.provider, &w.user, &w.user2, &w.challenger] {
            send("mint", token.mint(p.address(), U256::from(1_000_000u64)))
                .await
                .unwrap();
            let t = p.token(&w);
            send("approve", t.approve(w.deployment.registry, U256::MAX))
                .await
                .unwrap();
            send("approve", t.approve(w.deployment.settlement, U256::MAX))
                .await
                .unwrap();
        }
        let reg = w.governance.registry(&w);
        send(
            "allow measurement",
            reg.setMeasurementAllowed(w.measurement, true),
        )
        .await
        .unwrap();
        send("allow model", reg.setModelAllowed(w.model, true))
            .await
            .unwrap();
        send(
            "register",
            w.provider.registry(&w).register(U256::from(MIN_STAKE)),
        )
        .await
        .unwrap();
        send(
            "bond",
            w.operator.settlement(&w).depositBond(U256::from(BOND)),
        )
        .await
        .unwrap();
        w
    }

    pub fn domain(&self) -> ReceiptDomain {
        ReceiptDomain {
            chain_id: self.deployment.chain_id,
            verifying_contract: self.deployment.settlement,
        }
    }

    pub async fn now(&self) -> u64 {
        let block = self
            .governance
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .unwrap()
            .unwrap();
        block.header.timestamp
    }

    /// Moves the chain's clock forward and mines a block.
    pub async fn advance(&self, secs: u64) {
        let p = &self.governance.provider;
        let _: serde_json::Value = p
            .raw_request("evm_increaseTime".into(), (secs,))
            .await
            .unwrap();
        let _: serde_json::Value = p.raw_request("evm_mine".into(), ()).await.unwrap();
    }

    /// Records the node's signer for the provider, valid from now.
    pub async fn record_node(&self) {
        let now = self.now().await;
        send(
            "recordSigner",
            self.operator.registry(self).recordSigner(
                self.node.signer_address(),
                self.provider.address(),
                B256::repeat_byte(0x33),
                self.measurement,
                self.model,
                now,
            ),
        )
        .await
        .unwrap();
    }

    /// A receipt signed by `keys` for `payer`, issued at `issued_at`.
    pub fn receipt(&self, keys: &NodeKeys, payer: Address, n: u8, issued_at: u64) -> SignedReceipt {
        let receipt = UsageReceipt {
            request_id: B256::repeat_byte(n),
            node_signer: keys.signer_address(),
            payer,
            model_id: "smollm2".into(),
            prompt_tokens: 10 + u64::from(n),
            completion_tokens: 20,
            prompt_price: 3,
            completion_price: 5,
            request_hash: B256::repeat_byte(0xa0 ^ n),
            response_hash: B256::repeat_byte(0xb0 ^ n),
            issued_at,
        };
        keys.sign_receipt(receipt, &self.domain()).expect("sign")
    }
}

//! The settlement worker against a real Settlement contract on anvil, with
//! the router's ledger (SQLite, or PostgreSQL in the suite's second pass):
//! receipts settle once, the provider withdraws exactly its credit, a crash
//! between writing a batch and seeing it confirmed settles it once, an RPC
//! outage only delays settlement, and on PostgreSQL one router settles.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::http::reqwest::Url;
use cloister_contracts::bindings::{Registry, Settlement, TestToken};
use cloister_contracts::deploy::{DeployConfig, Deployment, deploy};
use cloister_contracts::revert::send_and_confirm;
use cloister_contracts::rpc::{connect, connect_with_timeout};
use cloister_contracts::testing::TestChain;
use cloister_protocol::{NodeKeys, ReceiptDomain, UsageReceipt};
use cloister_router::ledger::testing::TestDatabase;
use cloister_router::ledger::{BatchState, DbKind, Ledger, ReceiptRecord};
use cloister_router::settlement::{SettlementSettings, Settler, TickReport};

const WINDOW: u64 = 100;
const ESCROW: u64 = 100_000;

struct Env {
    chain: TestChain,
    deployment: Deployment,
    operator: PrivateKeySigner,
    provider: DynProvider,
    provider_address: Address,
    user: Address,
    gov: DynProvider,
    node: NodeKeys,
    db: TestDatabase,
    ledger: Ledger,
    next: std::sync::atomic::AtomicU8,
}

async fn ok<D: alloy::contract::CallDecoder>(
    builder: alloy::contract::CallBuilder<&DynProvider, D>,
) {
    send_and_confirm("setup", builder).await.unwrap();
}

impl Env {
    async fn new() -> Self {
        let chain = TestChain::start();
        let url: Url = chain.url().parse().unwrap();
        let gov = connect(url.clone(), chain.key(0));
        let operator = chain.key(1);
        let provider_key = chain.key(2);
        let user_key = chain.key(3);
        let mut config = DeployConfig::new(operator.address());
        config.challenge_window_secs = WINDOW;
        config.minimum_stake = U256::from(1_000u64);
        config.required_bond = U256::from(500u64);
        let deployment = deploy(gov.clone(), &config).await.unwrap();
        let token = TestToken::new(deployment.token, gov.clone());
        let op = connect(url.clone(), operator.clone());
        let provider = connect(url.clone(), provider_key.clone());
        let user = connect(url.clone(), user_key.clone());
        for (p, who) in [
            (&op, operator.address()),
            (&provider, provider_key.address()),
            (&user, user_key.address()),
        ] {
            ok(token.mint(who, U256::from(1_000_000u64))).await;
            let t = TestToken::new(deployment.token, p.clone());
            ok(t.approve(deployment.registry, U256::MAX)).await;
            ok(t.approve(deployment.settlement, U256::MAX)).await;
        }
        let registry = Registry::new(deployment.registry, gov.clone());
        ok(registry.setMeasurementAllowed(B256::repeat_byte(1), true)).await;
        ok(registry.setModelAllowed(B256::repeat_byte(2), true)).await;
        ok(Registry::new(deployment.registry, provider.clone()).register(U256::from(1_000u64)))
            .await;
        ok(Settlement::new(deployment.settlement, op.clone()).depositBond(U256::from(500u64)))
            .await;
        ok(Settlement::new(deployment.settlement, user.clone()).deposit(U256::from(ESCROW))).await;
        let node = NodeKeys::generate().unwrap();
        let db = TestDatabase::new().await.unwrap();
        let ledger = db.ledger().await.unwrap();
        ledger.create_key("alice", 1_000_000).await.unwrap();
        let env = Self {
            chain,
            deployment,
            operator,
            provider,
            provider_address: provider_key.address(),
            user: user_key.address(),
            gov,
            node,
            db,
            ledger,
            next: std::sync::atomic::AtomicU8::new(0),
        };
        env.record_signer(&env.node).await;
        env
    }

    fn url(&self) -> Url {
        self.chain.url().parse().unwrap()
    }

    fn domain(&self) -> ReceiptDomain {
        ReceiptDomain {
            chain_id: self.deployment.chain_id,
            verifying_contract: self.deployment.settlement,
        }
    }

    async fn now(&self) -> u64 {
        self.gov
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .unwrap()
            .unwrap()
            .header
            .timestamp
    }

    async fn record_signer(&self, keys: &NodeKeys) {
        let op = connect(self.url(), self.operator.clone());
        let now = self.now().await;
        let registry = Registry::new(self.deployment.registry, op);
        send_and_confirm(
            "recordSigner",
            registry.recordSigner(
                keys.signer_address(),
                self.provider_address,
                B256::repeat_byte(3),
                B256::repeat_byte(1),
                B256::repeat_byte(2),
                now,
            ),
        )
        .await
        .unwrap();
    }

    /// Stores a receipt signed by `keys` for `payer`, as the router does.
    async fn store(&self, keys: &NodeKeys, payer: Address) -> B256 {
        let now = self.now().await;
        self.store_at(keys, payer, now).await
    }

    /// [`Self::store`] with the issue time given (the chain may not answer).
    async fn store_at(&self, keys: &NodeKeys, payer: Address, issued_at: u64) -> B256 {
        self.store_in(keys, payer, issued_at, &self.domain(), 1)
            .await
    }

    /// A receipt signed in `domain`, stored as received at `received_at`.
    async fn store_in(
        &self,
        keys: &NodeKeys,
        payer: Address,
        issued_at: u64,
        domain: &ReceiptDomain,
        received_at: i64,
    ) -> B256 {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let receipt = UsageReceipt {
            request_id: B256::repeat_byte(n),
            node_signer: keys.signer_address(),
            payer,
            model_id: "smollm2".into(),
            prompt_tokens: 10,
            completion_tokens: 20 + u64::from(n),
            prompt_price: 3,
            completion_price: 7,
            request_hash: B256::repeat_byte(0x40 ^ n),
            response_hash: B256::repeat_byte(0x80 ^ n),
            issued_at,
        };
        let signed = keys.sign_receipt(receipt, domain).unwrap();
        let record = ReceiptRecord::new(&signed, domain, "node-1", "alice", received_at).unwrap();
        self.ledger.record_receipt(&record).await.unwrap();
        record.digest
    }

    fn settler_on(&self, ledger: Ledger, timeout: Duration) -> Settler {
        self.settler_with(ledger, timeout, 1000)
    }

    fn settler_with(&self, ledger: Ledger, timeout: Duration, max_receipts: usize) -> Settler {
        Settler::new(
            ledger,
            connect_with_timeout(self.url(), self.operator.clone(), timeout),
            &self.deployment,
            SettlementSettings {
                interval: Duration::from_secs(1),
                max_receipts,
            },
        )
    }

    fn settler(&self) -> Settler {
        self.settler_on(self.ledger.clone(), Duration::from_secs(30))
    }

    async fn advance(&self, secs: u64) {
        let _: serde_json::Value = self
            .gov
            .raw_request("evm_increaseTime".into(), (secs,))
            .await
            .unwrap();
        let _: serde_json::Value = self.gov.raw_request("evm_mine".into(), ()).await.unwrap();
    }

    async fn escrow(&self, who: Address) -> U256 {
        Settlement::new(self.deployment.settlement, self.gov.clone())
            .escrow(who)
            .call()
            .await
            .unwrap()
    }

    async fn chain_batch_state(&self, id: u64) -> u8 {
        Settlement::new(self.deployment.settlement, self.gov.clone())
            .batches(id)
            .call()
            .await
            .unwrap()
            .state
    }

    /// Sum of the charges of every stored receipt.
    async fn stored_total(&self) -> U256 {
        let mut total = U256::ZERO;
        for state in [BatchState::Confirmed, BatchState::Finalized] {
            for b in self.ledger.batches_in_state(state).await.unwrap() {
                total += b.total.parse::<U256>().unwrap();
            }
        }
        total
    }
}

#[tokio::test]
async fn receipts_settle_once_and_the_provider_withdraws_exactly_its_credit() {
    let env = Env::new().await;
    for _ in 0..5 {
        env.store(&env.node, env.user).await;
    }
    // Waiting receipts: a signer never registered, a payer without escrow.
    let rogue = NodeKeys::generate().unwrap();
    env.store(&rogue, env.user).await;
    env.store(&env.node, Address::repeat_byte(0x99)).await;

    let settler = env.settler();
    let report = settler.tick().await.unwrap();
    assert_eq!(report.written, Some((1, 5)), "{report:?}");
    assert_eq!(report.confirmed, vec![1]);
    assert_eq!(
        (report.waiting_for_signer, report.waiting_for_escrow),
        (1, 1)
    );
    assert_eq!(env.chain_batch_state(1).await, 1, "posted");
    let batch = env.ledger.batch(1).await.unwrap().unwrap();
    assert_eq!(batch.state, BatchState::Confirmed);
    let total: U256 = batch.total.parse().unwrap();
    assert_eq!(env.escrow(env.user).await, U256::from(ESCROW) - total);
    assert_eq!(env.ledger.batch_receipts(1).await.unwrap().len(), 5);
    assert_eq!(env.ledger.unbatched_count().await.unwrap(), 2);

    // A second tick posts nothing new.
    let again = settler.tick().await.unwrap();
    assert_eq!(again.written, None, "{again:?}");
    assert_eq!(env.chain_batch_state(2).await, 0);

    // After the window the worker releases the credits.
    env.advance(WINDOW).await;
    let report = settler.tick().await.unwrap();
    assert_eq!(report.finalized, vec![1]);
    assert_eq!(
        env.ledger.batch(1).await.unwrap().unwrap().state,
        BatchState::Finalized
    );
    let fee: U256 = batch.fee.parse().unwrap();
    let token = TestToken::new(env.deployment.token, env.provider.clone());
    let before = token.balanceOf(env.provider_address).call().await.unwrap();
    send_and_confirm(
        "withdrawCredit",
        Settlement::new(env.deployment.settlement, env.provider.clone()).withdrawCredit(),
    )
    .await
    .unwrap();
    let after = token.balanceOf(env.provider_address).call().await.unwrap();
    assert_eq!(
        after - before,
        total - fee,
        "the provider gets the batch minus the fee"
    );
}

#[tokio::test]
async fn receipts_that_cannot_settle_do_not_hold_back_the_others() {
    let env = Env::new().await;
    let now = env.now().await;
    // Ahead of the good receipts, more than a batch holds: an unrecorded
    // signer's, a payer's without escrow, one signed for another contract,
    // one the database holds unreadable.
    let rogue = NodeKeys::generate().unwrap();
    for _ in 0..2 {
        env.store_at(&rogue, env.user, now).await;
        env.store_at(&env.node, Address::repeat_byte(0x99), now)
            .await;
    }
    let elsewhere = ReceiptDomain {
        chain_id: 1,
        verifying_contract: Address::repeat_byte(7),
    };
    env.store_in(&env.node, env.user, now, &elsewhere, 1).await;
    let broken = env.store_at(&env.node, env.user, now).await;
    sqlx::query("UPDATE receipts SET receipt = 'not json' WHERE digest = $1")
        .bind(format!("{broken:#x}"))
        .execute(env.ledger.pool())
        .await
        .unwrap();
    let mut good = vec![
        format!(
            "{:#x}",
            env.store_in(&env.node, env.user, now, &env.domain(), 2)
                .await
        ),
        format!(
            "{:#x}",
            env.store_in(&env.node, env.user, now, &env.domain(), 2)
                .await
        ),
    ];
    good.sort();

    let settler = env.settler_with(env.ledger.clone(), Duration::from_secs(30), 2);
    let report = settler.tick().await.unwrap();
    assert_eq!(report.written, Some((1, 2)), "{report:?}");
    assert_eq!(
        (
            report.waiting_for_signer,
            report.waiting_for_escrow,
            report.unverifiable
        ),
        (2, 2, 2),
        "{report:?}"
    );
    let batched: Vec<String> = env
        .ledger
        .batch_receipts(1)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.digest)
        .collect();
    assert_eq!(batched, good);
    assert_eq!(env.ledger.unbatched_count().await.unwrap(), 6);
}

#[tokio::test]
async fn a_batch_lost_in_a_reorganisation_is_sent_again_once() {
    let env = Env::new().await;
    for _ in 0..3 {
        env.store(&env.node, env.user).await;
    }
    let snapshot: String = env
        .gov
        .raw_request("evm_snapshot".into(), ())
        .await
        .unwrap();
    let settler = env.settler();
    let report = settler.tick().await.unwrap();
    assert_eq!(report.confirmed, vec![1], "{report:?}");
    let total: U256 = env
        .ledger
        .batch(1)
        .await
        .unwrap()
        .unwrap()
        .total
        .parse()
        .unwrap();

    // The chain forgets the block that held the batch.
    let reverted: bool = env
        .gov
        .raw_request("evm_revert".into(), (snapshot,))
        .await
        .unwrap();
    assert!(reverted);
    assert_eq!(env.chain_batch_state(1).await, 0);
    assert_eq!(env.escrow(env.user).await, U256::from(ESCROW));

    let report = settler.tick().await.unwrap();
    assert_eq!(report.reopened, vec![1], "{report:?}");
    let report = settler.tick().await.unwrap();
    assert_eq!(report.confirmed, vec![1], "{report:?}");
    assert_eq!(report.written, None, "the same batch, not a new one");
    assert_eq!(env.chain_batch_state(1).await, 1);
    assert_eq!(env.escrow(env.user).await, U256::from(ESCROW) - total);
}

#[tokio::test]
async fn a_full_batch_of_new_receipts_starts_a_round_before_the_interval() {
    let env = Env::new().await;
    let settler = std::sync::Arc::new(Settler::new(
        env.ledger.clone(),
        connect_with_timeout(env.url(), env.operator.clone(), Duration::from_secs(30)),
        &env.deployment,
        SettlementSettings {
            interval: Duration::from_secs(3600),
            max_receipts: 2,
        },
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(settler.run(stopped));
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.store(&env.node, env.user).await;
    env.store(&env.node, env.user).await;
    let started = std::time::Instant::now();
    loop {
        let state = env.ledger.batch(1).await.unwrap().map(|b| b.state);
        if state == Some(BatchState::Confirmed) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no round within 20 s of two new receipts (interval one hour)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(true).unwrap();
    worker.await.unwrap();
}

#[tokio::test]
async fn a_crash_between_writing_and_confirmation_settles_once() {
    let env = Env::new().await;
    for _ in 0..4 {
        env.store(&env.node, env.user).await;
    }
    // Crash 1: the batch is written, nothing sent.
    {
        let crashed = env.settler();
        let mut report = TickReport::default();
        assert_eq!(
            crashed.write_next_batch(&mut report).await.unwrap(),
            Some(1)
        );
    }
    assert_eq!(env.chain_batch_state(1).await, 0);
    let restarted = env.settler();
    let report = restarted.tick().await.unwrap();
    assert_eq!(report.confirmed, vec![1], "{report:?}");
    assert_eq!(report.written, None, "the receipts were already in batch 1");
    assert_eq!(env.chain_batch_state(1).await, 1);
    // On PostgreSQL it holds the settlement lock while it lives.
    drop(restarted);

    // Crash 2: the transaction went out and was mined, but the worker died
    // before it marked the batch: the restarted worker finds it on chain and
    // does not post it again.
    for _ in 0..3 {
        env.store(&env.node, env.user).await;
    }
    let mut report = TickReport::default();
    let crashed = env.settler();
    assert_eq!(
        crashed.write_next_batch(&mut report).await.unwrap(),
        Some(2)
    );
    let row = env.ledger.batch(2).await.unwrap().unwrap();
    let plan: cloister_router::settlement::StoredPlan = serde_json::from_str(&row.plan).unwrap();
    let op = connect(env.url(), env.operator.clone());
    send_and_confirm(
        "postBatch (the crashed worker's)",
        Settlement::new(env.deployment.settlement, op).postBatch(
            2,
            plan.root,
            plan.receipt_count,
            cloister_contracts::bindings::entries(&plan.debits),
            cloister_contracts::bindings::entries(&plan.credits),
            plan.fee,
        ),
    )
    .await
    .unwrap();
    drop(crashed);
    let report = env.settler().tick().await.unwrap();
    assert_eq!(report.confirmed, vec![2], "{report:?}");
    assert_eq!(report.written, None);
    assert_eq!(env.chain_batch_state(3).await, 0);
    // Every receipt settled exactly once: escrow fell by the two batches.
    assert_eq!(env.ledger.unbatched_count().await.unwrap(), 0);
    assert_eq!(
        env.escrow(env.user).await,
        U256::from(ESCROW) - env.stored_total().await
    );
    assert_eq!(
        env.ledger.batch_receipts(1).await.unwrap().len()
            + env.ledger.batch_receipts(2).await.unwrap().len(),
        7
    );
}

#[tokio::test]
async fn an_rpc_outage_delays_settlement_without_duplicates() {
    let env = Env::new().await;
    for _ in 0..3 {
        env.store(&env.node, env.user).await;
    }
    let pid = env.chain.anvil.child().id();
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    let settler = env.settler_on(env.ledger.clone(), Duration::from_secs(2));
    let before_outage = env.now().await;
    signal("-STOP");
    let err = settler.tick().await.expect_err("the chain does not answer");
    assert!(err.retryable(), "{err}");
    // Receipts keep accumulating while the chain is away.
    let during = env.ledger.clone();
    for _ in 0..2 {
        env.store_at(&env.node, env.user, before_outage).await;
    }
    assert!(settler.tick().await.is_err());
    assert_eq!(during.unbatched_count().await.unwrap(), 5);
    signal("-CONT");
    let report = settler.tick().await.unwrap();
    assert_eq!(report.written, Some((1, 5)), "{report:?}");
    assert_eq!(report.confirmed, vec![1]);
    assert_eq!(settler.tick().await.unwrap().written, None);
    assert_eq!(env.chain_batch_state(2).await, 0);
    assert_eq!(
        env.escrow(env.user).await,
        U256::from(ESCROW) - env.stored_total().await
    );
}

#[tokio::test]
async fn on_postgres_one_router_settles_at_a_time() {
    let env = Env::new().await;
    if env.db.kind() != DbKind::Postgres {
        // SQLite serves one router per file; the lock exists for PostgreSQL
        // (this test runs again with CLOISTER_TEST_POSTGRES_URL set).
        assert!(!env.settler().tick().await.unwrap().not_leader);
        return;
    }
    env.store(&env.node, env.user).await;
    let first = env.settler_on(env.db.ledger().await.unwrap(), Duration::from_secs(30));
    let second = env.settler_on(env.db.ledger().await.unwrap(), Duration::from_secs(30));
    let a = first.tick().await.unwrap();
    assert!(!a.not_leader);
    assert_eq!(a.written, Some((1, 1)));
    let b = second.tick().await.unwrap();
    assert!(b.not_leader, "{b:?}");
    drop(first);
    // The lock goes with the first router's connection.
    let mut taken = false;
    for _ in 0..50 {
        if !second.tick().await.unwrap().not_leader {
            taken = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(taken, "the second router takes over when the first is gone");
}

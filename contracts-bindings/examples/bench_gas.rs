//! Gas of settlement on anvil: `postBatch` and `finalizeBatch` for batches of
//! 1 to 10 000 receipts over 1, 10 and 100 distinct users and providers, a
//! successful challenge, and the time to form and to submit a 1000-receipt
//! batch. Prints markdown tables.
//!
//! `cargo run -p cloister-contracts --example bench_gas --features testing`
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::print_stdout
)]

use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider};
use cloister_contracts::bindings::{Registry, Settlement, TestToken};
use cloister_contracts::deploy::{DeployConfig, Deployment, deploy};
use cloister_contracts::revert::send_and_confirm;
use cloister_contracts::rpc::connect;
use cloister_contracts::testing::TestChain;
use cloister_contracts::{BatchItem, BatchPlan};
use cloister_protocol::{NodeKeys, ReceiptDomain, SignedReceipt, UsageReceipt};

const WINDOW: u64 = 100;

struct Bench {
    chain: TestChain,
    d: Deployment,
    gov: DynProvider,
    op: DynProvider,
    next_batch: u64,
    next_request: u64,
}

impl Bench {
    async fn new() -> Self {
        let chain = TestChain::start_with_args(&[
            "--gas-limit",
            "1000000000",
            "--code-size-limit",
            "50000",
        ]);
        let url: alloy::transports::http::reqwest::Url = chain.url().parse().unwrap();
        let gov = connect(url.clone(), chain.key(0));
        let op = connect(url, chain.key(1));
        let mut config = DeployConfig::new(chain.key(1).address());
        config.challenge_window_secs = WINDOW;
        config.minimum_stake = U256::from(1u64);
        config.required_bond = U256::from(1u64);
        let d = deploy(gov.clone(), &config).await.unwrap();
        let token = TestToken::new(d.token, gov.clone());
        let big = U256::from(10u64).pow(U256::from(30u64));
        send_and_confirm("mint", token.mint(chain.key(0).address(), big))
            .await
            .unwrap();
        send_and_confirm("mint", token.mint(chain.key(1).address(), big))
            .await
            .unwrap();
        send_and_confirm("approve", token.approve(d.settlement, U256::MAX))
            .await
            .unwrap();
        send_and_confirm(
            "approve",
            TestToken::new(d.token, op.clone()).approve(d.settlement, U256::MAX),
        )
        .await
        .unwrap();
        send_and_confirm(
            "bond",
            Settlement::new(d.settlement, op.clone()).depositBond(U256::from(1u64)),
        )
        .await
        .unwrap();
        let reg = Registry::new(d.registry, gov.clone());
        send_and_confirm("m", reg.setMeasurementAllowed(B256::repeat_byte(1), true))
            .await
            .unwrap();
        send_and_confirm("m", reg.setModelAllowed(B256::repeat_byte(2), true))
            .await
            .unwrap();
        Self {
            chain,
            d,
            gov,
            op,
            next_batch: 1,
            next_request: 1,
        }
    }

    fn domain(&self) -> ReceiptDomain {
        ReceiptDomain {
            chain_id: self.d.chain_id,
            verifying_contract: self.d.settlement,
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

    async fn advance(&self, secs: u64) {
        let _: serde_json::Value = self
            .gov
            .raw_request("evm_increaseTime".into(), (secs,))
            .await
            .unwrap();
        let _: serde_json::Value = self.gov.raw_request("evm_mine".into(), ()).await.unwrap();
    }

    /// Receipts from `providers` nodes (signers recorded) to `users` payers
    /// (escrow deposited), round robin.
    async fn receipts(
        &mut self,
        n: usize,
        users: usize,
        providers: usize,
    ) -> (Vec<SignedReceipt>, Vec<Address>) {
        let settlement = Settlement::new(self.d.settlement, self.gov.clone());
        let payers: Vec<Address> = (0..users)
            .map(|_| NodeKeys::generate().unwrap().signer_address())
            .collect();
        for p in &payers {
            send_and_confirm("deposit", settlement.depositFor(*p, U256::from(u64::MAX)))
                .await
                .unwrap();
        }
        let nodes: Vec<NodeKeys> = (0..providers)
            .map(|_| NodeKeys::generate().unwrap())
            .collect();
        let provider_addrs: Vec<Address> = (0..providers)
            .map(|_| NodeKeys::generate().unwrap().signer_address())
            .collect();
        let now = self.now().await;
        let reg = Registry::new(self.d.registry, self.op.clone());
        // Providers must be registered to get signers recorded: stake from
        // governance is not possible for another address, so record signers
        // under one registered provider and credit distinct addresses.
        let gov_addr = self.chain.key(0).address();
        let registered = Registry::new(self.d.registry, self.gov.clone())
            .providers(gov_addr)
            .call()
            .await
            .unwrap();
        if !registered.registered {
            let t = TestToken::new(self.d.token, self.gov.clone());
            send_and_confirm("approve", t.approve(self.d.registry, U256::MAX))
                .await
                .unwrap();
            send_and_confirm(
                "register",
                Registry::new(self.d.registry, self.gov.clone()).register(U256::from(1u64)),
            )
            .await
            .unwrap();
        }
        for node in &nodes {
            send_and_confirm(
                "record",
                reg.recordSigner(
                    node.signer_address(),
                    gov_addr,
                    B256::ZERO,
                    B256::repeat_byte(1),
                    B256::repeat_byte(2),
                    now,
                ),
            )
            .await
            .unwrap();
        }
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let node = &nodes[i % providers];
            let id = self.next_request;
            self.next_request += 1;
            let receipt = UsageReceipt {
                request_id: B256::from(U256::from(id)),
                node_signer: node.signer_address(),
                payer: payers[i % users],
                model_id: "smollm2".into(),
                prompt_tokens: 100 + (i as u64 % 50),
                completion_tokens: 200,
                prompt_price: 3,
                completion_price: 7,
                request_hash: B256::repeat_byte(7),
                response_hash: B256::repeat_byte(8),
                issued_at: now,
            };
            out.push(node.sign_receipt(receipt, &self.domain()).unwrap());
        }
        (out, provider_addrs)
    }

    fn plan(
        &mut self,
        receipts: &[SignedReceipt],
        providers: &[Address],
        signer_index: impl Fn(usize) -> usize,
    ) -> BatchPlan {
        let items = receipts
            .iter()
            .enumerate()
            .map(|(i, r)| BatchItem {
                digest: r.receipt.signing_hash(&self.domain()),
                charge: r.receipt.charge(),
                payer: r.receipt.payer,
                provider: providers[signer_index(i)],
            })
            .collect();
        let id = self.next_batch;
        self.next_batch += 1;
        BatchPlan::new(id, items, 250).unwrap()
    }

    async fn post(&self, plan: &BatchPlan) -> (u64, Duration) {
        let s = Settlement::new(self.d.settlement, self.op.clone());
        let started = Instant::now();
        let r = send_and_confirm(
            "postBatch",
            s.postBatch(
                plan.batch_id,
                plan.root(),
                plan.receipt_count(),
                plan.debit_entries(),
                plan.credit_entries(),
                plan.fee,
            ),
        )
        .await
        .unwrap();
        (r.gas_used, started.elapsed())
    }

    async fn finalize(&self, plan: &BatchPlan) -> u64 {
        let s = Settlement::new(self.d.settlement, self.gov.clone());
        send_and_confirm(
            "finalize",
            s.finalizeBatch(plan.batch_id, plan.credit_entries()),
        )
        .await
        .unwrap()
        .gas_used
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let mut b = Bench::new().await;
    println!(
        "| receipts | distinct users | distinct providers | postBatch gas | finalizeBatch gas | total gas | gas per receipt |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &[1usize, 10, 100, 1000, 10_000] {
        for &k in &[1usize, 10, 100] {
            if k > n {
                continue;
            }
            let (receipts, providers) = b.receipts(n, k, k).await;
            let plan = b.plan(&receipts, &providers, |i| i % k);
            let (post, _) = b.post(&plan).await;
            b.advance(WINDOW).await;
            let fin = b.finalize(&plan).await;
            let total = post + fin;
            println!(
                "| {n} | {k} | {k} | {post} | {fin} | {total} | {:.1} |",
                total as f64 / n as f64
            );
        }
    }

    // A successful challenge: a receipt from a signer never recorded.
    let (mut receipts, providers) = b.receipts(99, 1, 1).await;
    let rogue = NodeKeys::generate().unwrap();
    let now = b.now().await;
    let bad = rogue
        .sign_receipt(
            UsageReceipt {
                request_id: B256::repeat_byte(0xee),
                node_signer: rogue.signer_address(),
                payer: receipts[0].receipt.payer,
                model_id: "smollm2".into(),
                prompt_tokens: 1,
                completion_tokens: 1,
                prompt_price: 1,
                completion_price: 1,
                request_hash: B256::ZERO,
                response_hash: B256::ZERO,
                issued_at: now,
            },
            &b.domain(),
        )
        .unwrap();
    receipts.push(bad.clone());
    let plan = b.plan(&receipts, &providers, |_| 0);
    b.post(&plan).await;
    let digest = bad.receipt.signing_hash(&b.domain());
    let challenger = connect(b.chain.url().parse().unwrap(), b.chain.key(5));
    let s = Settlement::new(b.d.settlement, challenger);
    let proof = plan.proof(digest).unwrap();
    let sound = &receipts[0];
    let sound_digest = sound.receipt.signing_hash(&b.domain());
    let failed_estimate = s
        .isIncluded(
            plan.batch_id,
            sound_digest,
            sound.receipt.charge(),
            plan.proof(sound_digest).unwrap(),
        )
        .estimate_gas()
        .await
        .unwrap();
    let challenge = send_and_confirm(
        "challenge",
        s.challenge(
            plan.batch_id,
            Settlement::UsageReceipt::from(&bad.receipt),
            bad.signature.to_vec().into(),
            bad.receipt.charge(),
            proof.clone(),
        ),
    )
    .await
    .unwrap();
    println!();
    println!(
        "| operation (batch of 100 receipts, proof of {} hashes) | gas |",
        proof.len()
    );
    println!("|---|---:|");
    println!(
        "| successful challenge (unregistered signer; bond paid to the challenger) | {} |",
        challenge.gas_used
    );
    println!(
        "| isIncluded for a sound receipt (the inclusion part of a failed challenge, as a transaction) | {failed_estimate} |"
    );

    // The challenge took the bond; put one back.
    send_and_confirm(
        "bond",
        Settlement::new(b.d.settlement, b.op.clone()).depositBond(U256::from(1u64)),
    )
    .await
    .unwrap();

    // Time to form and to submit a 1000-receipt batch.
    let (receipts, providers) = b.receipts(1000, 10, 10).await;
    let mut form = Vec::new();
    let mut submit = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let plan = b.plan(&receipts, &providers, |i| i % 10);
        form.push(started.elapsed());
        // A fresh id each time; the same receipts again are fine on chain
        // (the contract does not track receipts, only batches).
        let (_, took) = b.post(&plan).await;
        submit.push(took);
    }
    println!();
    println!("| 1000 receipts, 10 users, 10 providers | median of 5 |");
    println!("|---|---:|");
    println!(
        "| form the batch (EIP-712 digests, sort, Merkle tree, sums) | {:.1} ms |",
        median(form).as_secs_f64() * 1000.0
    );
    println!(
        "| submit (estimate, send, mined on anvil, receipt) | {:.1} ms |",
        median(submit).as_secs_f64() * 1000.0
    );
}

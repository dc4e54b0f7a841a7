//! Settlement on anvil: escrow, batches, finalization, withdrawals,
//! challenges, and the digest/leaf agreement between Rust and Solidity.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::SolCall;
use cloister_contracts::bindings::Settlement;
use cloister_contracts::merkle;
use cloister_contracts::{BatchItem, BatchPlan};
use cloister_protocol::{NodeKeys, SignedReceipt};
use common::*;

fn item(w: &World, r: &SignedReceipt) -> BatchItem {
    BatchItem {
        digest: r.receipt.signing_hash(&w.domain()),
        charge: r.receipt.charge(),
        payer: r.receipt.payer,
        provider: w.provider.address(),
    }
}

async fn post(w: &World, plan: &BatchPlan) -> Result<(), cloister_contracts::ChainError> {
    send(
        "postBatch",
        w.operator.settlement(w).postBatch(
            plan.batch_id,
            plan.root(),
            plan.receipt_count(),
            plan.debit_entries(),
            plan.credit_entries(),
            plan.fee,
        ),
    )
    .await
}

async fn funded_world() -> World {
    let w = World::new().await;
    send(
        "deposit",
        w.user.settlement(&w).deposit(U256::from(10_000u64)),
    )
    .await
    .unwrap();
    send(
        "deposit",
        w.user2.settlement(&w).deposit(U256::from(10_000u64)),
    )
    .await
    .unwrap();
    w
}

async fn challenge(
    w: &World,
    plan: &BatchPlan,
    r: &SignedReceipt,
    charged: U256,
) -> Result<(), cloister_contracts::ChainError> {
    let digest = r.receipt.signing_hash(&w.domain());
    let proof = plan.proof(digest).expect("in batch");
    send(
        "challenge",
        w.challenger.settlement(w).challenge(
            plan.batch_id,
            Settlement::UsageReceipt::from(&r.receipt),
            r.signature.to_vec().into(),
            charged,
            proof,
        ),
    )
    .await
}

#[tokio::test]
async fn digest_signature_and_leaf_agree_with_the_contract() {
    let w = World::new().await;
    let r = w.receipt(&w.node, w.user.address(), 7, 1_700_000_000);
    let s = w.user.settlement(&w);
    let digest = s
        .receiptDigest(Settlement::UsageReceipt::from(&r.receipt))
        .call()
        .await
        .unwrap();
    assert_eq!(digest, r.receipt.signing_hash(&w.domain()));
    let signer = s
        .recoverSigner(digest, r.signature.to_vec().into())
        .call()
        .await
        .unwrap();
    assert_eq!(signer, w.node.signer_address());
    let leaf = s.leaf(digest, r.receipt.charge()).call().await.unwrap();
    assert_eq!(leaf, merkle::leaf(digest, r.receipt.charge()));
    // The malleable twin of the signature (s → n − s, v flipped) is refused.
    let mut twin = r.signature;
    let n = U256::from_be_slice(&hex_n());
    let s_value = U256::from_be_slice(&twin[32..64]);
    twin[32..64].copy_from_slice(&(n - s_value).to_be_bytes::<32>());
    twin[64] = if twin[64] == 27 { 28 } else { 27 };
    let recovered = s
        .recoverSigner(digest, twin.to_vec().into())
        .call()
        .await
        .unwrap();
    assert_eq!(recovered, Address::ZERO);
}

fn hex_n() -> [u8; 32] {
    // secp256k1 group order.
    let mut n = [0u8; 32];
    let text = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
    for (i, byte) in n.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap();
    }
    n
}

#[tokio::test]
async fn a_batch_settles_and_everyone_withdraws_exactly_their_share() {
    let w = funded_world().await;
    w.record_node().await;
    let now = w.now().await;
    let receipts: Vec<_> = (1..=5)
        .map(|n| {
            w.receipt(
                &w.node,
                if n % 2 == 0 {
                    w.user.address()
                } else {
                    w.user2.address()
                },
                n,
                now,
            )
        })
        .collect();
    let plan = BatchPlan::new(1, receipts.iter().map(|r| item(&w, r)).collect(), FEE_BPS).unwrap();
    post(&w, &plan).await.unwrap();

    let s = w.user.settlement(&w);
    for (user, party) in [(w.user.address(), &w.user), (w.user2.address(), &w.user2)] {
        let debit = plan.debits.iter().find(|d| d.0 == user).unwrap().1;
        assert_eq!(
            s.escrow(party.address()).call().await.unwrap(),
            U256::from(10_000u64) - debit
        );
    }
    for r in &receipts {
        let digest = r.receipt.signing_hash(&w.domain());
        let proof = plan.proof(digest).unwrap();
        assert!(
            s.isIncluded(1, digest, r.receipt.charge(), proof.clone())
                .call()
                .await
                .unwrap()
        );
        assert!(
            !s.isIncluded(1, digest, r.receipt.charge() + U256::from(1), proof)
                .call()
                .await
                .unwrap()
        );
    }

    // Credits wait for the challenge window.
    assert_reverts(
        send("finalize", s.finalizeBatch(1, plan.credit_entries())).await,
        "ChallengeWindowOpen",
    );
    w.advance(WINDOW).await;
    let mut wrong = plan.credit_entries();
    wrong[0].amount += U256::from(1);
    assert_reverts(
        send("finalize", s.finalizeBatch(1, wrong)).await,
        "ListMismatch",
    );
    send("finalize", s.finalizeBatch(1, plan.credit_entries()))
        .await
        .unwrap();
    assert_reverts(
        send("finalize", s.finalizeBatch(1, plan.credit_entries())).await,
        "BatchNotPosted",
    );

    let token = w.provider.token(&w);
    let before = token.balanceOf(w.provider.address()).call().await.unwrap();
    send("withdrawCredit", w.provider.settlement(&w).withdrawCredit())
        .await
        .unwrap();
    let after = token.balanceOf(w.provider.address()).call().await.unwrap();
    assert_eq!(after - before, plan.credits[0].1);
    assert_eq!(plan.credits[0].1 + plan.fee, plan.total);
    assert_reverts(
        send("withdrawCredit", w.provider.settlement(&w).withdrawCredit()).await,
        "NothingToWithdraw",
    );
    let gov_before = token
        .balanceOf(w.governance.address())
        .call()
        .await
        .unwrap();
    assert_reverts(
        send(
            "withdrawFees",
            w.user.settlement(&w).withdrawFees(w.user.address()),
        )
        .await,
        "NotGovernance",
    );
    send(
        "withdrawFees",
        w.governance
            .settlement(&w)
            .withdrawFees(w.governance.address()),
    )
    .await
    .unwrap();
    let gov_after = token
        .balanceOf(w.governance.address())
        .call()
        .await
        .unwrap();
    assert_eq!(gov_after - gov_before, plan.fee);
}

#[tokio::test]
async fn every_malformed_batch_is_refused() {
    let w = funded_world().await;
    w.record_node().await;
    let now = w.now().await;
    let r1 = w.receipt(&w.node, w.user.address(), 1, now);
    let r2 = w.receipt(&w.node, w.user2.address(), 2, now);
    let plan = BatchPlan::new(1, vec![item(&w, &r1), item(&w, &r2)], FEE_BPS).unwrap();
    let s = w.operator.settlement(&w);
    let (root, count, fee) = (plan.root(), plan.receipt_count(), plan.fee);

    // Not the operator.
    let as_user = w.user.settlement(&w);
    let by_user = as_user.postBatch(
        1,
        root,
        count,
        plan.debit_entries(),
        plan.credit_entries(),
        fee,
    );
    assert_reverts(send("post", by_user).await, "NotOperator");
    // Unsorted debits.
    let mut reversed = plan.debit_entries();
    reversed.reverse();
    assert_reverts(
        send(
            "post",
            s.postBatch(1, root, count, reversed, plan.credit_entries(), fee),
        )
        .await,
        "NotSorted",
    );
    // Duplicate account (also "not sorted").
    let mut dup = plan.debit_entries();
    dup[1].account = dup[0].account;
    assert_reverts(
        send(
            "post",
            s.postBatch(1, root, count, dup, plan.credit_entries(), fee),
        )
        .await,
        "NotSorted",
    );
    // Debits over the escrow.
    let mut big = plan.debit_entries();
    big[0].amount = U256::from(10_001u64);
    assert_reverts(
        send(
            "post",
            s.postBatch(1, root, count, big, plan.credit_entries(), fee),
        )
        .await,
        "InsufficientEscrow",
    );
    // Sums that do not balance.
    let mut credits = plan.credit_entries();
    credits[0].amount += U256::from(1);
    assert_reverts(
        send(
            "post",
            s.postBatch(1, root, count, plan.debit_entries(), credits, fee),
        )
        .await,
        "Unbalanced",
    );
    // Balanced, but the fee is not feeBps of the total.
    let mut credits = plan.credit_entries();
    credits[0].amount += U256::from(1);
    assert_reverts(
        send(
            "post",
            s.postBatch(
                1,
                root,
                count,
                plan.debit_entries(),
                credits,
                fee - U256::from(1),
            ),
        )
        .await,
        "WrongFee",
    );
    // Empty.
    assert_reverts(
        send("post", s.postBatch(1, root, 0, vec![], vec![], U256::ZERO)).await,
        "EmptyBatch",
    );
    // Nothing above changed escrow.
    assert_eq!(
        s.escrow(w.user.address()).call().await.unwrap(),
        U256::from(10_000u64)
    );

    // The batch goes in once; the same id again is refused (replay).
    post(&w, &plan).await.unwrap();
    assert_reverts(post(&w, &plan).await, "BatchExists");
    let other = BatchPlan::new(1, vec![item(&w, &r1)], FEE_BPS).unwrap();
    assert_reverts(post(&w, &other).await, "BatchExists");
}

#[tokio::test]
async fn a_receipt_from_an_unregistered_signer_invalidates_the_batch_and_slashes_the_bond() {
    let w = funded_world().await;
    let now = w.now().await;
    let rogue = NodeKeys::generate().unwrap();
    let good_plan_receipt = w.receipt(&rogue, w.user.address(), 1, now);
    let r2 = w.receipt(&rogue, w.user2.address(), 2, now);
    let plan = BatchPlan::new(
        4,
        vec![item(&w, &good_plan_receipt), item(&w, &r2)],
        FEE_BPS,
    )
    .unwrap();
    post(&w, &plan).await.unwrap();

    let token = w.challenger.token(&w);
    let before = token
        .balanceOf(w.challenger.address())
        .call()
        .await
        .unwrap();
    challenge(&w, &plan, &r2, r2.receipt.charge())
        .await
        .unwrap();
    let after = token
        .balanceOf(w.challenger.address())
        .call()
        .await
        .unwrap();
    assert_eq!(
        after - before,
        U256::from(BOND),
        "the challenger gets the operator's bond"
    );
    let s = w.user.settlement(&w);
    let batch = s.batches(4).call().await.unwrap();
    assert_eq!(batch.state, 3, "Invalid");
    assert_eq!(s.operatorBond().call().await.unwrap(), U256::ZERO);

    // The debits go back to escrow; credits are never paid.
    assert_reverts(
        send("finalize", s.finalizeBatch(4, plan.credit_entries())).await,
        "BatchNotPosted",
    );
    send("refund", s.refundBatch(4, plan.debit_entries()))
        .await
        .unwrap();
    assert_eq!(
        s.escrow(w.user.address()).call().await.unwrap(),
        U256::from(10_000u64)
    );
    assert_eq!(
        s.escrow(w.user2.address()).call().await.unwrap(),
        U256::from(10_000u64)
    );
    assert_reverts(
        send("refund", s.refundBatch(4, plan.debit_entries())).await,
        "BatchNotInvalid",
    );

    // Without a bond the operator cannot post.
    let next = BatchPlan::new(5, vec![item(&w, &r2)], FEE_BPS).unwrap();
    assert_reverts(post(&w, &next).await, "BondTooLow");
}

#[tokio::test]
async fn a_wrong_charge_or_a_receipt_outside_the_signer_period_invalidates() {
    // Overbilled by one unit.
    let w = funded_world().await;
    w.record_node().await;
    let now = w.now().await;
    let r = w.receipt(&w.node, w.user.address(), 1, now);
    let mut over = item(&w, &r);
    over.charge += U256::from(1);
    let plan = BatchPlan::new(1, vec![over], FEE_BPS).unwrap();
    post(&w, &plan).await.unwrap();
    challenge(&w, &plan, &r, over.charge).await.unwrap();
    let fault = w.user.settlement(&w).batches(1).call().await.unwrap().state;
    assert_eq!(fault, 3);

    // Issued before the signer's registration, and after its removal.
    let w = funded_world().await;
    let early = w.receipt(&w.node, w.user.address(), 1, w.now().await - 10);
    w.record_node().await;
    w.advance(5).await;
    send(
        "remove",
        w.operator
            .registry(&w)
            .removeSigner(w.node.signer_address(), "left policy".into()),
    )
    .await
    .unwrap();
    let late = w.receipt(&w.node, w.user.address(), 2, w.now().await + 1);
    let plan = BatchPlan::new(2, vec![item(&w, &early), item(&w, &late)], FEE_BPS).unwrap();
    post(&w, &plan).await.unwrap();
    challenge(&w, &plan, &late, late.receipt.charge())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_sound_receipt_a_wrong_proof_or_a_late_challenge_fails() {
    let w = funded_world().await;
    w.record_node().await;
    let now = w.now().await;
    let r1 = w.receipt(&w.node, w.user.address(), 1, now);
    let r2 = w.receipt(&w.node, w.user2.address(), 2, now);
    let plan = BatchPlan::new(1, vec![item(&w, &r1), item(&w, &r2)], FEE_BPS).unwrap();
    post(&w, &plan).await.unwrap();
    assert_reverts(
        challenge(&w, &plan, &r1, r1.receipt.charge()).await,
        "ChallengeFailed",
    );
    // The right receipt with another charge is not in the batch.
    let digest = r1.receipt.signing_hash(&w.domain());
    let as_challenger = w.challenger.settlement(&w);
    let call = as_challenger.challenge(
        1,
        Settlement::UsageReceipt::from(&r1.receipt),
        r1.signature.to_vec().into(),
        r1.receipt.charge() + U256::from(1),
        plan.proof(digest).unwrap(),
    );
    assert_reverts(send("challenge", call).await, "NotInBatch");
    // A receipt with a forged signature that is in no batch.
    let mut forged = r1.clone();
    forged.receipt.completion_tokens += 1;
    let call = as_challenger.challenge(
        1,
        Settlement::UsageReceipt::from(&forged.receipt),
        forged.signature.to_vec().into(),
        forged.receipt.charge(),
        plan.proof(digest).unwrap(),
    );
    assert_reverts(send("challenge", call).await, "NotInBatch");
    w.advance(WINDOW).await;
    assert_reverts(
        challenge(&w, &plan, &r1, r1.receipt.charge()).await,
        "ChallengeWindowClosed",
    );
    assert_eq!(
        w.user.settlement(&w).batches(1).call().await.unwrap().state,
        1,
        "still Posted"
    );
}

#[tokio::test]
async fn users_withdraw_unspent_escrow_after_the_delay() {
    let w = funded_world().await;
    let s = w.user.settlement(&w);
    assert_reverts(send("withdraw", s.withdraw()).await, "NothingToWithdraw");
    send("request", s.requestWithdrawal(U256::from(4_000u64)))
        .await
        .unwrap();
    assert_reverts(send("withdraw", s.withdraw()).await, "WithdrawalNotReady");
    // A batch can still debit the escrow during the delay.
    w.record_node().await;
    let r = w.receipt(&w.node, w.user.address(), 1, w.now().await);
    let plan = BatchPlan::new(1, vec![item(&w, &r)], FEE_BPS).unwrap();
    post(&w, &plan).await.unwrap();
    w.advance(WITHDRAWAL_DELAY).await;
    let token = w.user.token(&w);
    let before = token.balanceOf(w.user.address()).call().await.unwrap();
    send("withdraw", s.withdraw()).await.unwrap();
    let after = token.balanceOf(w.user.address()).call().await.unwrap();
    assert_eq!(after - before, U256::from(4_000u64));
    assert_eq!(
        s.escrow(w.user.address()).call().await.unwrap(),
        U256::from(6_000u64) - plan.total
    );
    assert_reverts(send("withdraw", s.withdraw()).await, "NothingToWithdraw");
    // Asking for more than is left pays what is left.
    send("request", s.requestWithdrawal(U256::from(1_000_000u64)))
        .await
        .unwrap();
    w.advance(WITHDRAWAL_DELAY).await;
    send("withdraw", s.withdraw()).await.unwrap();
    assert_eq!(s.escrow(w.user.address()).call().await.unwrap(), U256::ZERO);
    assert_reverts(send("deposit", s.deposit(U256::ZERO)).await, "ZeroAmount");
}

#[tokio::test]
async fn governance_sets_the_fee_within_bounds() {
    let w = World::new().await;
    let s = w.governance.settlement(&w);
    assert_eq!(s.feeBps().call().await.unwrap(), FEE_BPS);
    assert_reverts(send("fee", s.setFeeBps(1001)).await, "FeeTooHigh");
    assert_reverts(
        send("fee", w.user.settlement(&w).setFeeBps(300)).await,
        "NotGovernance",
    );
    send("fee", s.setFeeBps(300)).await.unwrap();
    assert_eq!(s.feeBps().call().await.unwrap(), 300);
}

mod reentrancy {
    use super::*;
    use alloy::providers::DynProvider;
    use cloister_contracts::bindings::Registry;
    use cloister_contracts::deploy::deployed;

    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        ReentrantToken,
        "artifacts/ReentrantToken.json"
    );

    #[tokio::test]
    async fn withdrawing_credit_cannot_be_reentered() {
        let w = World::new().await;
        let gov = &w.governance.provider;
        let token = deployed("token", ReentrantToken::deploy_builder(gov.clone()))
            .await
            .unwrap();
        let token = ReentrantToken::new(token, gov.clone());
        let registry = deployed(
            "registry",
            Registry::deploy_builder(
                gov.clone(),
                *token.address(),
                w.operator.address(),
                U256::from(1u64),
                10u64,
            ),
        )
        .await
        .unwrap();
        let settlement = deployed(
            "settlement",
            Settlement::deploy_builder(
                gov.clone(),
                *token.address(),
                registry,
                FEE_BPS,
                WINDOW,
                WITHDRAWAL_DELAY,
                U256::from(1u64),
            ),
        )
        .await
        .unwrap();
        let settlement = Settlement::new(settlement, gov.clone());
        let attacker = *token.address();
        let on = |p: &DynProvider| Settlement::new(*settlement.address(), p.clone());
        let token_as = |p: &DynProvider| ReentrantToken::new(attacker, p.clone());
        for p in [&w.operator, &w.user] {
            send("mint", token.mint(p.address(), U256::from(100_000u64)))
                .await
                .unwrap();
            send(
                "approve",
                token_as(&p.provider).approve(*settlement.address(), U256::MAX),
            )
            .await
            .unwrap();
        }
        send(
            "bond",
            on(&w.operator.provider).depositBond(U256::from(1u64)),
        )
        .await
        .unwrap();
        send(
            "deposit",
            on(&w.user.provider).deposit(U256::from(10_000u64)),
        )
        .await
        .unwrap();
        // A batch that credits the attacking contract.
        let items = vec![BatchItem {
            digest: B256::repeat_byte(1),
            charge: U256::from(4_000u64),
            payer: w.user.address(),
            provider: attacker,
        }];
        let plan = BatchPlan::new(1, items, FEE_BPS).unwrap();
        send(
            "post",
            on(&w.operator.provider).postBatch(
                1,
                plan.root(),
                1,
                plan.debit_entries(),
                plan.credit_entries(),
                plan.fee,
            ),
        )
        .await
        .unwrap();
        w.advance(WINDOW).await;
        send("finalize", on(gov).finalizeBatch(1, plan.credit_entries()))
            .await
            .unwrap();
        let credit = plan.credits[0].1;

        let call = Settlement::withdrawCreditCall {}.abi_encode();
        send("arm", token.arm(*settlement.address(), call.into()))
            .await
            .unwrap();
        send("attack", token.attack()).await.unwrap();
        assert!(token.reentryAttempted().call().await.unwrap());
        assert!(
            !token.reentrySucceeded().call().await.unwrap(),
            "the nested withdrawCredit must fail"
        );
        let revert = token.reentryRevert().call().await.unwrap();
        assert_eq!(
            cloister_contracts::Revert::decode(&revert).name(),
            "Reentered",
            "the guard stopped it"
        );
        assert_eq!(
            token.balanceOf(attacker).call().await.unwrap(),
            credit,
            "paid once"
        );
        assert_eq!(on(gov).credits(attacker).call().await.unwrap(), U256::ZERO);
    }
}

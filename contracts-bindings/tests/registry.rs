//! Registry on anvil: stake, unbonding, slashing, governance, signer periods.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use alloy::primitives::{Address, B256, U256};
use cloister_protocol::NodeKeys;
use common::*;

#[tokio::test]
async fn providers_stake_unbond_and_withdraw_after_the_delay() {
    let w = World::new().await;
    let reg = w.user.registry(&w);
    assert_reverts(
        send("register", reg.register(U256::from(MIN_STAKE - 1))).await,
        "StakeBelowMinimum",
    );
    send("register", reg.register(U256::from(MIN_STAKE)))
        .await
        .unwrap();
    assert_reverts(
        send("register", reg.register(U256::from(MIN_STAKE))).await,
        "AlreadyRegistered",
    );
    assert_reverts(
        send("add", w.user2.registry(&w).addStake(U256::from(1u64))).await,
        "NotRegistered",
    );
    send("add", reg.addStake(U256::from(500u64))).await.unwrap();
    assert_reverts(send("add", reg.addStake(U256::ZERO)).await, "ZeroAmount");
    assert_reverts(
        send("withdraw", reg.withdrawStake()).await,
        "NothingUnbonding",
    );
    assert_reverts(
        send("unbond", reg.startUnbonding(U256::from(1_501u64))).await,
        "InsufficientStake",
    );
    send("unbond", reg.startUnbonding(U256::from(700u64)))
        .await
        .unwrap();
    assert_reverts(
        send("withdraw", reg.withdrawStake()).await,
        "UnbondingNotReady",
    );
    w.advance(UNBONDING).await;
    let token = w.user.token(&w);
    let before = token.balanceOf(w.user.address()).call().await.unwrap();
    send("withdraw", reg.withdrawStake()).await.unwrap();
    let after = token.balanceOf(w.user.address()).call().await.unwrap();
    assert_eq!(after - before, U256::from(700u64));
    let p = reg.providers(w.user.address()).call().await.unwrap();
    assert_eq!(p.stake, U256::from(800u64));
    assert_eq!(p.unbonding, U256::ZERO);
}

#[tokio::test]
async fn governance_slashes_stake_then_unbonding_with_a_reason() {
    let w = World::new().await;
    let provider = w.provider.address();
    send(
        "unbond",
        w.provider.registry(&w).startUnbonding(U256::from(400u64)),
    )
    .await
    .unwrap();
    let as_user = w.user.registry(&w);
    let by_user = as_user.slash(provider, U256::from(1u64), "no".into());
    assert_reverts(send("slash", by_user).await, "NotGovernance");
    let gov = w.governance.registry(&w);
    assert_reverts(
        send(
            "slash",
            gov.slash(w.user.address(), U256::from(1u64), "x".into()),
        )
        .await,
        "NotRegistered",
    );
    let token = w.governance.token(&w);
    let before = token
        .balanceOf(w.governance.address())
        .call()
        .await
        .unwrap();
    let receipt = cloister_contracts::revert::send_and_confirm(
        "slash",
        gov.slash(
            provider,
            U256::from(700u64),
            "served an unlisted model".into(),
        ),
    )
    .await
    .unwrap();
    let after = token
        .balanceOf(w.governance.address())
        .call()
        .await
        .unwrap();
    assert_eq!(after - before, U256::from(700u64));
    let p = gov.providers(provider).call().await.unwrap();
    assert_eq!((p.stake, p.unbonding), (U256::ZERO, U256::from(300u64)));
    let slashed = receipt
        .inner
        .logs()
        .iter()
        .find_map(|log| {
            log.log_decode::<cloister_contracts::bindings::Registry::Slashed>()
                .ok()
        })
        .expect("Slashed event");
    assert_eq!(slashed.inner.data.reason, "served an unlisted model");
    assert_eq!(slashed.inner.data.amount, U256::from(700u64));
}

#[tokio::test]
async fn governance_moves_in_two_steps_and_keeps_the_allowlists() {
    let w = World::new().await;
    let gov = w.governance.registry(&w);
    assert_reverts(
        send(
            "allow",
            w.user.registry(&w).setModelAllowed(B256::ZERO, true),
        )
        .await,
        "NotGovernance",
    );
    send("transfer", gov.transferGovernance(w.user2.address()))
        .await
        .unwrap();
    assert_reverts(
        send("accept", w.user.registry(&w).acceptGovernance()).await,
        "NotPendingGovernance",
    );
    send("accept", w.user2.registry(&w).acceptGovernance())
        .await
        .unwrap();
    assert_eq!(gov.governance().call().await.unwrap(), w.user2.address());
    assert_reverts(
        send("allow", gov.setModelAllowed(B256::ZERO, true)).await,
        "NotGovernance",
    );
    let next = w.user2.registry(&w);
    send("disallow", next.setMeasurementAllowed(w.measurement, false))
        .await
        .unwrap();
    assert!(
        !next
            .allowedMeasurements(w.measurement)
            .call()
            .await
            .unwrap()
    );
    assert_reverts(
        send("operator", next.setOperator(Address::ZERO)).await,
        "ZeroAddress",
    );
    send("operator", next.setOperator(w.user.address()))
        .await
        .unwrap();
    assert_eq!(next.operator().call().await.unwrap(), w.user.address());
}

#[tokio::test]
async fn signers_are_recorded_only_for_staked_providers_and_allowed_code() {
    let w = World::new().await;
    let op = w.operator.registry(&w);
    let now = w.now().await;
    let signer = w.node.signer_address();
    let bundle = B256::repeat_byte(0x44);
    let provider = w.provider.address();
    let rec = |who: Address, measurement: B256, model: B256, from: u64| {
        op.recordSigner(signer, who, bundle, measurement, model, from)
    };
    let as_user = w.user.registry(&w);
    let by_user = as_user.recordSigner(signer, provider, bundle, w.measurement, w.model, now);
    assert_reverts(send("record", by_user).await, "NotOperator");
    assert_reverts(
        send("record", rec(w.user.address(), w.measurement, w.model, now)).await,
        "NotRegistered",
    );
    assert_reverts(
        send("record", rec(provider, B256::ZERO, w.model, now)).await,
        "MeasurementNotAllowed",
    );
    assert_reverts(
        send("record", rec(provider, w.measurement, B256::ZERO, now)).await,
        "ModelNotAllowed",
    );
    assert_reverts(
        send("record", rec(provider, w.measurement, w.model, now + 1000)).await,
        "BadValidFrom",
    );
    assert_reverts(
        send("record", rec(provider, w.measurement, w.model, now - 7200)).await,
        "BadValidFrom",
    );
    // Backdated to the attestation (within the hour): covers receipts since then.
    send("record", rec(provider, w.measurement, w.model, now - 60))
        .await
        .unwrap();
    assert_reverts(
        send("record", rec(provider, w.measurement, w.model, now)).await,
        "SignerAlreadyActive",
    );
    let (active, who) = op
        .signerActiveAt(signer, now - 30)
        .call()
        .await
        .unwrap()
        .into();
    assert!(active);
    assert_eq!(who, provider);
    assert!(
        !op.signerActiveAt(signer, now - 61)
            .call()
            .await
            .unwrap()
            .active
    );

    w.advance(10).await;
    send(
        "remove",
        op.removeSigner(signer, "re-attestation failed".into()),
    )
    .await
    .unwrap();
    assert_reverts(
        send("remove", op.removeSigner(signer, "again".into())).await,
        "SignerNotActive",
    );
    let removed_at = w.now().await;
    assert!(!op.signerActive(signer).call().await.unwrap());
    assert!(
        !op.signerActiveAt(signer, removed_at + 1)
            .call()
            .await
            .unwrap()
            .active
    );

    // A provider whose stake fell below the minimum gets no new signer.
    let other = NodeKeys::generate().unwrap().signer_address();
    send(
        "unbond",
        w.provider.registry(&w).startUnbonding(U256::from(1u64)),
    )
    .await
    .unwrap();
    let call = op.recordSigner(
        other,
        provider,
        bundle,
        w.measurement,
        w.model,
        w.now().await,
    );
    assert_reverts(send("record", call).await, "StakeBelowMinimum");
    send("stake", w.provider.registry(&w).addStake(U256::from(1u64)))
        .await
        .unwrap();

    // Back in policy: a second period, the gap between them uncovered; the
    // signer stays with its provider.
    w.advance(10).await;
    let again = w.now().await;
    send("record", rec(provider, w.measurement, w.model, again))
        .await
        .unwrap();
    assert!(
        op.signerActiveAt(signer, now - 30)
            .call()
            .await
            .unwrap()
            .active
    );
    assert!(
        !op.signerActiveAt(signer, removed_at + 1)
            .call()
            .await
            .unwrap()
            .active
    );
    assert!(
        op.signerActiveAt(signer, again + 5)
            .call()
            .await
            .unwrap()
            .active
    );
    send(
        "register",
        w.user.registry(&w).register(U256::from(MIN_STAKE)),
    )
    .await
    .unwrap();
    send("remove", op.removeSigner(signer, "x".into()))
        .await
        .unwrap();
    let call = op.recordSigner(
        signer,
        w.user.address(),
        bundle,
        w.measurement,
        w.model,
        w.now().await,
    );
    assert_reverts(send("record", call).await, "SignerOfOtherProvider");
}

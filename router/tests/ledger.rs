//! Ledger tests. They run on a fresh SQLite file each, or on a fresh
//! PostgreSQL database each when `CLOISTER_TEST_POSTGRES_URL` is set (start
//! one with `scripts/postgres.sh start DIR`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use cloister_protocol::{Address, B256, NodeKeys, ReceiptDomain, UsageReceipt};
use cloister_router::ledger::testing::TestDatabase;
use cloister_router::ledger::{
    ChainBreak, DbKind, GENESIS_PREV_HASH, KEY_PREFIX, Ledger, LedgerError, LogEntry, NewLogEntry,
    NodeSource, ReceiptRecord, Recorded, log_entry_hash, verify_log_chain,
};
use sha2::{Digest, Sha256};
use sqlx::Row;

async fn fresh() -> (TestDatabase, Ledger) {
    let db = TestDatabase::new().await.unwrap();
    let ledger = db.ledger().await.unwrap();
    (db, ledger)
}

fn record(n: u8, account: &str, charge: i64, received_at: i64) -> ReceiptRecord {
    ReceiptRecord {
        digest: B256::repeat_byte(n),
        request_id: B256::repeat_byte(n.wrapping_add(100)),
        node_id: "node-1".into(),
        account: account.into(),
        payer: Address::repeat_byte(1),
        signer: Address::repeat_byte(2),
        model: "m".into(),
        prompt_tokens: 10,
        completion_tokens: 5,
        charge,
        receipt: format!(r#"{{"n":{n}}}"#),
        received_at,
    }
}

fn log_entry(i: usize) -> NewLogEntry {
    NewLogEntry {
        node_id: format!("node-{}", i % 3),
        node_url: format!("https://node-{}.example", i % 3),
        verified_at: 1_700_000_000 + i64::try_from(i).unwrap(),
        nonce: format!("{i:064x}"),
        bundle: format!(r#"{{"bundle":{i}}}"#),
        collateral: i.is_multiple_of(2).then(|| format!(r#"{{"crl":{i}}}"#)),
        verdict: format!(r#"{{"ok":{}}}"#, !i.is_multiple_of(5)),
        accepted: !i.is_multiple_of(5),
    }
}

async fn balance(ledger: &Ledger, account: &str) -> i64 {
    ledger
        .accounts()
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.name == account)
        .unwrap()
        .balance
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let (db, ledger) = fresh().await;
    let key = ledger.create_key("alice", 5).await.unwrap();
    ledger.close().await;
    let again = db.ledger().await.unwrap();
    let third = db.ledger().await.unwrap();
    assert_eq!(again.kind(), db.kind());
    let rows = sqlx::query("SELECT version, name FROM schema_migrations")
        .fetch_all(third.pool())
        .await
        .unwrap();
    assert_eq!(rows.len(), cloister_router::ledger::MIGRATIONS.len());
    assert_eq!(rows[0].try_get::<i64, _>(0).unwrap(), 1);
    let caller = again.authenticate(&key.secret).await.unwrap().unwrap();
    assert_eq!(caller.balance, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_starts_migrate_once() {
    let db = TestDatabase::new().await.unwrap();
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { Ledger::connect(&url).await })
        })
        .collect();
    let mut ledgers = Vec::new();
    for start in starts {
        ledgers.push(start.await.unwrap().unwrap());
    }
    let count: i64 = sqlx::query("SELECT COUNT(*) FROM schema_migrations")
        .fetch_one(ledgers[0].pool())
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert_eq!(
        count,
        i64::try_from(cloister_router::ledger::MIGRATIONS.len()).unwrap()
    );
    for ledger in &ledgers {
        ledger.ping().await.unwrap();
        ledger.close().await;
    }
}

#[tokio::test]
async fn changed_migration_is_refused() {
    let (db, ledger) = fresh().await;
    sqlx::query("UPDATE schema_migrations SET checksum = $1 WHERE version = 1")
        .bind("00".repeat(32))
        .execute(ledger.pool())
        .await
        .unwrap();
    ledger.close().await;
    match db.ledger().await {
        Err(LedgerError::MigrationChecksum {
            version: 1,
            applied,
            ..
        }) => assert_eq!(applied, "00".repeat(32)),
        other => panic!("expected a checksum error, got {other:?}"),
    }
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let (db, ledger) = fresh().await;
    sqlx::query(
        "INSERT INTO schema_migrations (version, name, checksum, applied_at) \
         VALUES ($1, 'future', 'ab', 0)",
    )
    .bind(cloister_router::ledger::LATEST_VERSION + 1)
    .execute(ledger.pool())
    .await
    .unwrap();
    ledger.close().await;
    assert!(matches!(
        db.ledger().await,
        Err(LedgerError::SchemaTooNew {
            version,
            latest_known: cloister_router::ledger::LATEST_VERSION,
            ..
        }) if version == cloister_router::ledger::LATEST_VERSION + 1
    ));
}

#[tokio::test]
async fn in_memory_sqlite_works() {
    let ledger = Ledger::connect("sqlite::memory:").await.unwrap();
    assert_eq!(ledger.kind(), DbKind::Sqlite);
    let key = ledger.create_key("mem", 3).await.unwrap();
    assert!(ledger.authenticate(&key.secret).await.unwrap().is_some());
}

#[tokio::test]
async fn keys_create_authenticate_revoke() {
    let (_db, ledger) = fresh().await;
    let key = ledger.create_key("alice", 1000).await.unwrap();
    assert!(key.secret.starts_with(KEY_PREFIX));
    assert_eq!(key.secret.len(), KEY_PREFIX.len() + 43);
    assert!(!format!("{key:?}").contains(&key.secret));

    let caller = ledger.authenticate(&key.secret).await.unwrap().unwrap();
    assert_eq!(caller.account, "alice");
    assert_eq!(caller.key_id, key.key_id);
    assert_eq!(caller.balance, 1000);
    assert_eq!(caller.payer_key().unwrap().address(), key.payer_address);
    assert!(!format!("{caller:?}").contains(&hex::encode(caller.payer_secret)));

    // A second key for the same account: more credit, same payer.
    let second = ledger.create_key("alice", 500).await.unwrap();
    assert_ne!(second.key_id, key.key_id);
    assert_eq!(second.payer_address, key.payer_address);
    assert_eq!(
        ledger
            .authenticate(&second.secret)
            .await
            .unwrap()
            .unwrap()
            .balance,
        1500
    );
    let bob = ledger.create_key("bob", 0).await.unwrap();
    assert_ne!(bob.payer_address, key.payer_address);

    // Wrong keys.
    let mut wrong = key.secret.clone();
    wrong.pop();
    wrong.push(if key.secret.ends_with('A') { 'B' } else { 'A' });
    assert!(ledger.authenticate(&wrong).await.unwrap().is_none());
    assert!(ledger.authenticate("").await.unwrap().is_none());
    assert!(ledger.authenticate(&key.key_id).await.unwrap().is_none());

    // Revoke by id, then by secret.
    assert!(ledger.revoke_key(&key.key_id).await.unwrap());
    assert!(!ledger.revoke_key(&key.key_id).await.unwrap());
    assert!(ledger.authenticate(&key.secret).await.unwrap().is_none());
    assert!(ledger.authenticate(&second.secret).await.unwrap().is_some());
    assert!(ledger.revoke_key(&second.secret).await.unwrap());
    assert!(ledger.authenticate(&second.secret).await.unwrap().is_none());
    assert!(!ledger.revoke_key("key-unknown").await.unwrap());

    let alice = ledger.accounts().await.unwrap();
    assert_eq!(alice[0].name, "alice");
    assert_eq!(alice[0].active_keys, 0);
    assert_eq!(alice[1].active_keys, 1);
}

#[tokio::test]
async fn bad_account_names_and_amounts() {
    let (_db, ledger) = fresh().await;
    for name in ["", "a b", "x/y", "é", &"a".repeat(65)] {
        assert!(matches!(
            ledger.create_key(name, 1).await,
            Err(LedgerError::InvalidAccountName { .. })
        ));
    }
    assert!(matches!(
        ledger.create_key("ok", -1).await,
        Err(LedgerError::NegativeAmount { amount: -1, .. })
    ));
    assert!(matches!(
        ledger.add_credit("nobody", 1).await,
        Err(LedgerError::UnknownAccount { .. })
    ));
}

#[tokio::test]
async fn keys_are_stored_hashed() {
    let (_db, ledger) = fresh().await;
    let key = ledger.create_key("alice", 1).await.unwrap();
    let body = key.secret.strip_prefix(KEY_PREFIX).unwrap();
    let rows = sqlx::query(
        "SELECT id, account, key_hash, CAST(created_at AS TEXT) AS created_at, \
         CAST(revoked_at AS TEXT) AS revoked_at FROM api_keys",
    )
    .fetch_all(ledger.pool())
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    for row in &rows {
        for i in 0..5 {
            let value: Option<String> = row.try_get(i).unwrap();
            let value = value.unwrap_or_default();
            assert!(!value.contains(body), "column {i} holds the secret");
        }
        let hash: String = row.try_get("key_hash").unwrap();
        assert_eq!(hash, hex::encode(Sha256::digest(key.secret.as_bytes())));
    }
    let accounts = sqlx::query("SELECT name, payer_secret, payer_address FROM accounts")
        .fetch_all(ledger.pool())
        .await
        .unwrap();
    for row in &accounts {
        for i in 0..3 {
            let value: String = row.try_get(i).unwrap();
            assert!(!value.contains(body));
        }
    }
}

#[tokio::test]
async fn receipt_is_charged_once() {
    let (_db, ledger) = fresh().await;
    ledger.create_key("alice", 1000).await.unwrap();
    let r = record(1, "alice", 30, 100);
    assert_eq!(
        ledger.record_receipt(&r).await.unwrap(),
        Recorded::Charged {
            amount: 30,
            balance_after: 970
        }
    );
    assert_eq!(
        ledger.record_receipt(&r).await.unwrap(),
        Recorded::Duplicate
    );
    // Same request id under another digest: still a duplicate.
    let mut same_request = record(2, "alice", 30, 100);
    same_request.request_id = r.request_id;
    assert_eq!(
        ledger.record_receipt(&same_request).await.unwrap(),
        Recorded::Duplicate
    );
    assert_eq!(balance(&ledger, "alice").await, 970);
    assert_eq!(ledger.recent_receipts(10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deliveries_charge_once() {
    let (_db, ledger) = fresh().await;
    ledger.create_key("alice", 1000).await.unwrap();
    let r = record(7, "alice", 250, 100);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (ledger, r) = (ledger.clone(), r.clone());
            tokio::spawn(async move { ledger.record_receipt(&r).await.unwrap() })
        })
        .collect();
    let mut charged = 0;
    for task in tasks {
        match task.await.unwrap() {
            Recorded::Charged {
                amount,
                balance_after,
            } => {
                assert_eq!((amount, balance_after), (250, 750));
                charged += 1;
            }
            Recorded::Duplicate => {}
        }
    }
    assert_eq!(charged, 1);
    assert_eq!(balance(&ledger, "alice").await, 750);
    let charges: i64 = sqlx::query("SELECT COUNT(*) FROM charges")
        .fetch_one(ledger.pool())
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert_eq!(charges, 1);
}

#[tokio::test]
async fn balance_arithmetic() {
    let (_db, ledger) = fresh().await;
    ledger.create_key("alice", 100).await.unwrap();
    assert_eq!(ledger.add_credit("alice", 50).await.unwrap(), 150);
    for (n, charge) in [(1u8, 40), (2, 0), (3, 100)] {
        ledger
            .record_receipt(&record(n, "alice", charge, 1))
            .await
            .unwrap();
    }
    assert_eq!(balance(&ledger, "alice").await, 10);
    // A served request is charged even past zero.
    assert_eq!(
        ledger
            .record_receipt(&record(4, "alice", 25, 2))
            .await
            .unwrap(),
        Recorded::Charged {
            amount: 25,
            balance_after: -15
        }
    );
    assert_eq!(ledger.add_credit("alice", 15).await.unwrap(), 0);
    assert!(matches!(
        ledger.record_receipt(&record(5, "alice", -1, 3)).await,
        Err(LedgerError::NegativeAmount { .. })
    ));
    // Unknown account: nothing is stored.
    assert!(matches!(
        ledger.record_receipt(&record(6, "nobody", 1, 3)).await,
        Err(LedgerError::UnknownAccount { .. })
    ));
    assert_eq!(ledger.recent_receipts(100).await.unwrap().len(), 4);
    assert_eq!(balance(&ledger, "alice").await, 0);
    // No overflow past i64::MAX.
    assert_eq!(
        ledger.add_credit("alice", i64::MAX).await.unwrap(),
        i64::MAX
    );
    assert!(matches!(
        ledger.add_credit("alice", 1).await,
        Err(LedgerError::BalanceOverflow { .. })
    ));
    assert!(matches!(
        ledger.create_key("alice", 1).await,
        Err(LedgerError::BalanceOverflow { .. })
    ));
    assert_eq!(balance(&ledger, "alice").await, i64::MAX);
}

#[tokio::test]
async fn signed_receipt_round_trip() {
    let (_db, ledger) = fresh().await;
    let key = ledger.create_key("alice", 1_000_000).await.unwrap();
    let node = NodeKeys::generate().unwrap();
    let domain = ReceiptDomain::default();
    let receipt = UsageReceipt {
        request_id: B256::repeat_byte(9),
        node_signer: node.signer_address(),
        payer: key.payer_address,
        model_id: "tiny".into(),
        prompt_tokens: 12,
        completion_tokens: 7,
        prompt_price: 3,
        completion_price: 11,
        request_hash: B256::repeat_byte(3),
        response_hash: B256::repeat_byte(4),
        issued_at: 1_763_700_000,
    };
    let signed = node.sign_receipt(receipt, &domain).unwrap();
    let rec = ReceiptRecord::new(&signed, &domain, "node-a", "alice", 1_763_700_001).unwrap();
    assert_eq!(rec.charge, 12 * 3 + 7 * 11);
    assert_eq!(
        ledger.record_receipt(&rec).await.unwrap(),
        Recorded::Charged {
            amount: 113,
            balance_after: 1_000_000 - 113
        }
    );
    let rows = ledger.receipts_for_account("alice", 0, 10).await.unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.digest, signed.receipt.signing_hash(&domain));
    assert_eq!(row.payer, key.payer_address);
    assert_eq!(row.signer, node.signer_address());
    assert_eq!((row.prompt_tokens, row.completion_tokens), (12, 7));
    assert_eq!(row.settled_batch, None);
    let back: cloister_protocol::SignedReceipt = serde_json::from_str(&row.receipt).unwrap();
    assert_eq!(back, signed);
    // Stored hex is lowercase.
    let payer: String = sqlx::query("SELECT payer FROM receipts")
        .fetch_one(ledger.pool())
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert_eq!(payer, payer.to_lowercase());
    assert!(payer.starts_with("0x") && payer.len() == 42, "{payer}");
}

#[tokio::test]
async fn receipt_listings() {
    let (_db, ledger) = fresh().await;
    ledger.create_key("alice", 1000).await.unwrap();
    ledger.create_key("bob", 1000).await.unwrap();
    for n in 1..=6u8 {
        let account = if n % 2 == 0 { "bob" } else { "alice" };
        ledger
            .record_receipt(&record(n, account, 1, i64::from(n) * 10))
            .await
            .unwrap();
    }
    let recent = ledger.recent_receipts(3).await.unwrap();
    let times: Vec<i64> = recent.iter().map(|r| r.received_at).collect();
    assert_eq!(times, [60, 50, 40]);
    let alice = ledger.receipts_for_account("alice", 10, 10).await.unwrap();
    let times: Vec<i64> = alice.iter().map(|r| r.received_at).collect();
    assert_eq!(times, [30, 50]);
    assert_eq!(
        ledger
            .receipts_for_account("alice", 0, 1)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn accounts_summary_sums_usage() {
    let (_db, ledger) = fresh().await;
    ledger.create_key("alice", 1000).await.unwrap();
    ledger.create_key("alice", 0).await.unwrap();
    ledger.create_key("bob", 50).await.unwrap();
    ledger.create_key("carol", 0).await.unwrap();
    ledger
        .record_receipt(&record(1, "alice", 30, 1))
        .await
        .unwrap();
    ledger
        .record_receipt(&record(2, "alice", 12, 2))
        .await
        .unwrap();
    ledger
        .record_receipt(&record(3, "bob", 7, 3))
        .await
        .unwrap();
    ledger
        .record_receipt(&record(3, "bob", 7, 3))
        .await
        .unwrap();

    let accounts = ledger.accounts().await.unwrap();
    let names: Vec<&str> = accounts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["alice", "bob", "carol"]);
    let alice = &accounts[0];
    assert_eq!(
        (alice.balance, alice.active_keys, alice.requests),
        (958, 2, 2)
    );
    assert_eq!((alice.prompt_tokens, alice.completion_tokens), (20, 10));
    assert_eq!(alice.charged, 42);
    let bob = &accounts[1];
    assert_eq!((bob.balance, bob.requests, bob.charged), (43, 1, 7));
    let carol = &accounts[2];
    assert_eq!(
        (
            carol.requests,
            carol.prompt_tokens,
            carol.completion_tokens,
            carol.charged
        ),
        (0, 0, 0, 0)
    );
}

#[tokio::test]
async fn nodes_upsert_list_remove() {
    let (_db, ledger) = fresh().await;
    ledger
        .upsert_node("a", "https://a", NodeSource::Static, 10)
        .await
        .unwrap();
    ledger
        .upsert_node("b", "https://b", NodeSource::Joined, 11)
        .await
        .unwrap();
    ledger
        .upsert_node("a", "https://a2", NodeSource::Joined, 99)
        .await
        .unwrap();
    let nodes = ledger.nodes().await.unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(
        (nodes[0].url.as_str(), nodes[0].source, nodes[0].added_at),
        ("https://a2", NodeSource::Joined, 10)
    );
    // Another node taking b's URL replaces it.
    ledger
        .upsert_node("c", "https://b", NodeSource::Joined, 12)
        .await
        .unwrap();
    let ids: Vec<String> = ledger
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(ids, ["a", "c"]);
    assert!(ledger.remove_node("a").await.unwrap());
    assert!(!ledger.remove_node("a").await.unwrap());
    assert_eq!(ledger.nodes().await.unwrap().len(), 1);
}

async fn whole_log(ledger: &Ledger) -> Vec<LogEntry> {
    let mut all = Vec::new();
    loop {
        let after = all.last().map_or(0, |e: &LogEntry| e.id);
        let page = ledger.attestation_log(after, 7).await.unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_form_one_chain() {
    let (_db, ledger) = fresh().await;
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in (t..50).step_by(4) {
                    ids.push(ledger.append_attestation(log_entry(i)).await.unwrap().id);
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=50).collect::<Vec<i64>>());

    let log = whole_log(&ledger).await;
    assert_eq!(log.len(), 50);
    verify_log_chain(&log, GENESIS_PREV_HASH).unwrap();
    assert_eq!(log[0].prev_hash, GENESIS_PREV_HASH);
    assert_eq!(
        ledger.latest_log_entry().await.unwrap().as_ref(),
        log.last()
    );

    // Altering any field of one entry breaks the chain.
    let alterations: Vec<fn(&mut LogEntry)> = vec![
        |e| e.id += 1,
        |e| e.node_id.push('x'),
        |e| e.node_url.push('/'),
        |e| e.verified_at += 1,
        |e| e.nonce.replace_range(0..1, "f"),
        |e| e.bundle.push(' '),
        |e| {
            e.collateral = match e.collateral.take() {
                Some(_) => None,
                None => Some(String::new()),
            }
        },
        |e| e.verdict = e.verdict.replace("true", "false").replace("ok", "ko"),
        |e| e.accepted = !e.accepted,
        |e| e.prev_hash = "1".repeat(64),
        |e| e.entry_hash = "2".repeat(64),
    ];
    for (k, alter) in alterations.iter().enumerate() {
        for target in [0, 20, 49] {
            let mut copy = log.clone();
            alter(&mut copy[target]);
            assert!(
                verify_log_chain(&copy, GENESIS_PREV_HASH).is_err(),
                "alteration {k} of entry {target} went unnoticed"
            );
        }
    }
    // Removing an entry (first, middle, last but not the tail).
    for target in [0, 20, 48] {
        let mut copy = log.clone();
        copy.remove(target);
        assert!(verify_log_chain(&copy, GENESIS_PREV_HASH).is_err());
    }
    // Swapping two entries.
    for (a, b) in [(0, 1), (10, 30), (48, 49)] {
        let mut copy = log.clone();
        copy.swap(a, b);
        assert!(verify_log_chain(&copy, GENESIS_PREV_HASH).is_err());
    }
    // Recomputing the hash of an altered entry still breaks the next link.
    let mut copy = log.clone();
    copy[20].bundle.push(' ');
    copy[20].entry_hash = log_entry_hash(&copy[20]);
    assert!(matches!(
        verify_log_chain(&copy, GENESIS_PREV_HASH),
        Err(ChainBreak::WrongPrevHash { id: 22, .. })
    ));
}

#[tokio::test]
async fn log_paging() {
    let (_db, ledger) = fresh().await;
    assert!(ledger.latest_log_entry().await.unwrap().is_none());
    assert!(ledger.attestation_log(0, 10).await.unwrap().is_empty());
    for i in 0..25 {
        let e = ledger.append_attestation(log_entry(i)).await.unwrap();
        assert_eq!(e.id, i64::try_from(i).unwrap() + 1);
        assert_eq!(e.entry_hash, log_entry_hash(&e));
    }
    let first = ledger.attestation_log(0, 10).await.unwrap();
    let ids: Vec<i64> = first.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=10).collect::<Vec<_>>());
    let second = ledger.attestation_log(10, 10).await.unwrap();
    assert_eq!(second.first().map(|e| e.id), Some(11));
    assert_eq!(second.len(), 10);
    // A page verifies on its own, given the hash before it.
    verify_log_chain(&second, &first[9].entry_hash).unwrap();
    assert!(verify_log_chain(&second, GENESIS_PREV_HASH).is_err());
    let tail = ledger.attestation_log(20, 500).await.unwrap();
    assert_eq!(tail.len(), 5);
    assert!(ledger.attestation_log(25, 10).await.unwrap().is_empty());
    assert!(ledger.attestation_log(0, 0).await.unwrap().is_empty());
    // Stored entries keep their documents exactly.
    let stored = &first[0];
    let original = log_entry(0);
    assert_eq!(stored.bundle, original.bundle);
    assert_eq!(stored.collateral, original.collateral);
    assert_eq!(stored.verdict, original.verdict);
    assert_eq!(stored.accepted, original.accepted);
    assert_eq!(ledger.latest_log_entry().await.unwrap().unwrap().id, 25);
}

#[tokio::test]
async fn payers_map_to_accounts() {
    let (_db, ledger) = fresh().await;
    ledger.ping().await.unwrap();
    let alice = ledger.create_key("alice", 1).await.unwrap();
    ledger.create_key("bob", 1).await.unwrap();
    // The account's own payer key, in any spelling.
    let own = format!("{:#x}", alice.payer_address);
    assert_eq!(
        ledger.payer_account(&own).await.unwrap().as_deref(),
        Some("alice")
    );
    let upper = format!("0x{}", own.trim_start_matches("0x").to_uppercase());
    assert_eq!(
        ledger.payer_account(&upper).await.unwrap().as_deref(),
        Some("alice")
    );

    let external = Address::repeat_byte(0xab);
    let hex = format!("{external:#x}");
    assert_eq!(ledger.payer_account(&hex).await.unwrap(), None);
    assert!(ledger.register_payer("alice", external).await.unwrap());
    assert!(!ledger.register_payer("alice", external).await.unwrap());
    assert_eq!(
        ledger.payer_account(&hex).await.unwrap().as_deref(),
        Some("alice")
    );
    assert!(matches!(
        ledger.register_payer("bob", external).await,
        Err(LedgerError::PayerTaken { .. })
    ));
    assert!(matches!(
        ledger.register_payer("bob", alice.payer_address).await,
        Err(LedgerError::PayerTaken { .. })
    ));
    assert!(matches!(
        ledger
            .register_payer("carol", Address::repeat_byte(1))
            .await,
        Err(LedgerError::UnknownAccount { .. })
    ));
    assert!(ledger.unregister_payer(external).await.unwrap());
    assert!(!ledger.unregister_payer(external).await.unwrap());
    assert_eq!(ledger.payer_account(&hex).await.unwrap(), None);
    assert!(ledger.register_payer("bob", external).await.unwrap());
}

#[tokio::test]
async fn log_pages_are_capped() {
    let (_db, ledger) = fresh().await;
    // Rows written directly (not a valid chain): only the paging is tested.
    let mut tx = ledger.pool().begin().await.unwrap();
    for id in 1..=501i64 {
        sqlx::query(
            "INSERT INTO attestation_log (id, node_id, node_url, verified_at, nonce, bundle, \
             collateral, verdict, accepted, prev_hash, entry_hash) \
             VALUES ($1, 'n', 'u', 0, '', '{}', NULL, '{}', 1, '', '')",
        )
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(
        ledger.attestation_log(0, u32::MAX).await.unwrap().len(),
        500
    );
    assert_eq!(
        ledger.attestation_log(500, u32::MAX).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn latest_entry_per_node() {
    let (_db, ledger) = fresh().await;
    for i in 0..7 {
        ledger.append_attestation(log_entry(i)).await.unwrap();
    }
    // Entries i = 1 and 4 are node-1's (ids 2 and 5).
    let latest = ledger.latest_for_node("node-1").await.unwrap().unwrap();
    assert_eq!((latest.id, latest.node_id.as_str()), (5, "node-1"));
    assert!(ledger.latest_for_node("node-9").await.unwrap().is_none());
}

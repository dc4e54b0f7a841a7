//! Settlement end to end, as operators, providers and auditors run it: anvil,
//! `cloister chain deploy`, a `cloister router` settling to it, a
//! `cloister enclave` (simulated TEE, tiny model) naming its provider's
//! payout address, requests through the router's OpenAI endpoint. The router
//! records the node's signer in the Registry itself, settles the receipts,
//! the provider withdraws exactly its credit, the user's escrow goes down by
//! exactly the debits, and `cloister audit chain` agrees until one stored
//! receipt is altered. Then the router is SIGKILLed between writing a batch
//! and seeing its transaction confirmed, and restarted: settled once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::signers::local::PrivateKeySigner;
use cloister_contracts::bindings::{Registry, Settlement, TestToken};
use cloister_contracts::deploy::Deployment;
use cloister_contracts::dev_funding::{self, Party};
use cloister_contracts::revert::send_and_confirm;
use cloister_contracts::rpc::connect;
use cloister_contracts::signer_record::{measurement_digest, model_digest};
use cloister_contracts::testing::TestChain;
use serde_json::{Value, json};

use common::{cloister, spawn, text};

const WINDOW: u64 = 30;
const ESCROW: u64 = 10_000_000;
const POLICY: &str = "platforms = [\"tdx\"]\n[tdx]\nmrtd = [\"000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\"]\n[simulated]\nallow = true\n";

struct Stack {
    dir: tempfile::TempDir,
    chain: TestChain,
    deployment: Deployment,
    gov: DynProvider,
    gov_address: Address,
    provider: DynProvider,
    provider_address: Address,
    enclave: Child,
    enclave_addr: String,
    router: Option<Child>,
    router_url: String,
    key: String,
    payer: Address,
    rt: tokio::runtime::Runtime,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.enclave.kill();
        let _ = self.enclave.wait();
        self.stop_router();
    }
}

fn write_key(path: &Path, key: &PrivateKeySigner) {
    std::fs::write(path, format!("0x{}", hex::encode(key.to_bytes()))).unwrap();
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Stack {
    /// Chain, contracts, provider staked, node and router running, an
    /// account with escrow on chain, the node's code allowed.
    fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let chain = TestChain::start();
        let dir = tempfile::tempdir().unwrap();
        let gov_key = chain.key(0);
        let gov_key_address = gov_key.address();
        let operator_key = chain.key(1);
        let provider_key = chain.key(2);
        write_key(&dir.path().join("gov.key"), &gov_key);
        write_key(&dir.path().join("operator.key"), &operator_key);
        let deployment_file = dir.path().join("chain.json");
        let deployed = cloister()
            .args(["chain", "deploy", "--rpc", &chain.url(), "--key-file"])
            .arg(dir.path().join("gov.key"))
            .args(["--operator", &operator_key.address().to_string()])
            .args(["--challenge-window", &WINDOW.to_string()])
            .arg("--out")
            .arg(&deployment_file)
            .output()
            .unwrap();
        assert!(deployed.status.success(), "{}", text(&deployed.stderr));
        let deployment = Deployment::read(&deployment_file).unwrap();
        let url = chain.url().parse().unwrap();
        let gov = connect(url, gov_key);
        let operator = connect(chain.url().parse().unwrap(), operator_key.clone());
        let provider = connect(chain.url().parse().unwrap(), provider_key.clone());
        rt.block_on(async {
            let settlement = Settlement::new(deployment.settlement, &gov);
            let bond = settlement.requiredBond().call().await.unwrap();
            let operator = Party {
                provider: &operator,
                address: operator_key.address(),
            };
            dev_funding::bond_operator(&gov, operator, &deployment, bond)
                .await
                .unwrap();
            let registry = Registry::new(deployment.registry, &gov);
            let stake = registry.minimumStake().call().await.unwrap();
            let staker = Party {
                provider: &provider,
                address: provider_key.address(),
            };
            dev_funding::register_provider(&gov, staker, &deployment, stake)
                .await
                .unwrap();
        });

        let model = dir.path().join("model");
        std::fs::create_dir_all(&model).unwrap();
        cloister_enclave::testing::write_tiny_llama(&model).unwrap();
        let (enclave, enclave_addr) = spawn(
            cloister()
                .args(["enclave", "--model"])
                .arg(&model)
                .args(["--model-id", "tiny", "--tee", "simulated"])
                .args(["--listen", "127.0.0.1:0", "--no-model-staging"])
                .args(["--prompt-price", "3", "--completion-price", "5"])
                .args(["--chain-id", &deployment.chain_id.to_string()])
                .args(["--settlement-contract", &deployment.settlement.to_string()])
                .args(["--payout-address", &provider_key.address().to_string()]),
            "cloister enclave listening on ",
        );
        std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
        let mut stack = Self {
            dir,
            chain,
            deployment,
            gov,
            gov_address: gov_key_address,
            provider,
            provider_address: provider_key.address(),
            enclave,
            enclave_addr,
            router: None,
            router_url: String::new(),
            key: String::new(),
            payer: Address::ZERO,
            rt,
        };
        stack.start_router();
        let created = cloister()
            .args([
                "keys",
                "create",
                "--account",
                "alice",
                "--credit",
                "1000000000",
            ])
            .arg("--data-dir")
            .arg(stack.data_dir())
            .output()
            .unwrap();
        assert!(created.status.success(), "{}", text(&created.stderr));
        stack.key = text(&created.stdout).trim().to_owned();
        let account = stack.get("/v1/account", true);
        stack.payer = account["payers"][0].as_str().unwrap().parse().unwrap();
        stack.rt.block_on(async {
            dev_funding::deposit_escrow(
                Party {
                    provider: &stack.gov,
                    address: stack.gov_address,
                },
                &stack.deployment,
                stack.payer,
                U256::from(ESCROW),
            )
            .await
            .unwrap();
        });
        wait_for("the node to serve", Duration::from_secs(60), || {
            stack.get("/v1/attestation", false)["data"][0]["state"] == "serving"
        });
        stack.allow_node_code();
        stack
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn start_router(&mut self) {
        let (router, addr) = spawn(
            cloister()
                .args(["router", "--listen", "127.0.0.1:0", "--policy"])
                .arg(self.dir.path().join("policy.toml"))
                .arg("--data-dir")
                .arg(self.data_dir())
                .args(["--node", &format!("http://{}", self.enclave_addr)])
                .args(["--chain-rpc", &self.chain.url()])
                .arg("--chain-deployment")
                .arg(self.dir.path().join("chain.json"))
                .arg("--settlement-key-file")
                .arg(self.dir.path().join("operator.key"))
                .args(["--settlement-interval", "1"]),
            "cloister router listening on ",
        );
        self.router = Some(router);
        self.router_url = format!("http://{addr}");
    }

    /// SIGKILL: no shutdown code runs.
    fn stop_router(&mut self) {
        if let Some(mut router) = self.router.take() {
            let _ = router.kill();
            let _ = router.wait();
        }
    }

    fn get(&self, path: &str, with_key: bool) -> Value {
        self.rt.block_on(async {
            let mut request = reqwest::Client::new().get(format!("{}{path}", self.router_url));
            if with_key {
                request = request.bearer_auth(&self.key);
            }
            request.send().await.unwrap().json().await.unwrap()
        })
    }

    /// Governance allows the node's measurement set and model, computed
    /// from what the router shows of its verdict and identity.
    fn allow_node_code(&self) {
        let node = &self.get("/v1/attestation", false)["data"][0];
        let verdict = &node["verdict"]["verdict"];
        let measurements: BTreeMap<String, String> =
            serde_json::from_value(verdict["measurements"].clone()).unwrap();
        let platform = verdict["platform"].as_str().unwrap();
        let measurement = measurement_digest(platform, &measurements).unwrap();
        let bundle: Value = match &node["bundle"] {
            Value::String(s) => serde_json::from_str(s).unwrap(),
            other => other.clone(),
        };
        let model = model_digest(
            bundle["identity"]["model"]["weights_sha256"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        self.rt.block_on(async {
            dev_funding::allow_code(&self.gov, &self.deployment, measurement, model)
                .await
                .unwrap();
        });
    }

    fn signer_recorded(&self) -> bool {
        let signer: Address = self.get("/v1/audit/receipts", false)["data"]
            .as_array()
            .and_then(|d| d.first())
            .and_then(|r| r["signer"].as_str())
            .map_or(Address::ZERO, |s| s.parse().unwrap());
        if signer.is_zero() {
            return false;
        }
        self.rt.block_on(async {
            Registry::new(self.deployment.registry, &self.gov)
                .signerActive(signer)
                .call()
                .await
                .unwrap()
        })
    }

    fn request(&self, i: usize) {
        let body = json!({
            "model": "tiny",
            "messages": [{"role": "user", "content": format!("Count to {i}.")}],
            "max_tokens": 4,
            "temperature": 0.0,
        });
        let status = self.rt.block_on(async {
            reqwest::Client::new()
                .post(format!("{}/v1/chat/completions", self.router_url))
                .bearer_auth(&self.key)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        });
        assert!(status.is_success(), "{status}");
    }

    fn batches(&self) -> Vec<Value> {
        self.get("/v1/audit/batches", false)["data"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Receipts in batches in `states`.
    fn settled(&self, states: &[&str]) -> i64 {
        self.batches()
            .iter()
            .filter(|b| states.contains(&b["state"].as_str().unwrap()))
            .map(|b| b["receipt_count"].as_i64().unwrap())
            .sum()
    }

    /// What the account was charged for its receipts, summed.
    fn charged(&self) -> U256 {
        self.get("/v1/receipts", true)["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| U256::from(r["recorded"]["charge"].as_u64().unwrap()))
            .sum()
    }

    fn escrow(&self) -> U256 {
        self.rt.block_on(async {
            Settlement::new(self.deployment.settlement, &self.gov)
                .escrow(self.payer)
                .call()
                .await
                .unwrap()
        })
    }

    fn rpc(&self, method: &'static str, params: Value) {
        self.rt.block_on(async {
            let _: Value = self.gov.raw_request(method.into(), params).await.unwrap();
        });
    }

    fn audit_chain(&self) -> Output {
        cloister()
            .args(["audit", "chain", "--rpc", &self.chain.url()])
            .args(["--router", &self.router_url])
            .args(["--settlement", &self.deployment.settlement.to_string()])
            .output()
            .unwrap()
    }

    fn sql(&self, statement: &str) {
        let url = format!("sqlite://{}", self.data_dir().join("router.db").display());
        self.rt.block_on(async {
            let ledger = cloister_router::ledger::Ledger::connect(&url)
                .await
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
                .execute(ledger.pool())
                .await
                .unwrap();
            ledger.close().await;
        });
    }
}

#[test]
fn requests_settle_on_chain_and_the_audit_catches_an_altered_receipt() {
    let stack = Stack::start();
    let escrow_before = stack.escrow();
    for i in 0..3 {
        stack.request(i);
    }
    // The router records the node's signer itself, then settles.
    wait_for(
        "the signer in the Registry",
        Duration::from_secs(60),
        || stack.signer_recorded(),
    );
    wait_for("3 receipts on chain", Duration::from_secs(60), || {
        stack.settled(&["confirmed", "finalized"]) == 3
    });
    let charged = stack.charged();
    assert!(charged > U256::ZERO);
    assert_eq!(
        escrow_before - stack.escrow(),
        charged,
        "escrow goes down by exactly the debits"
    );

    // After the challenge window the credits are released.
    stack.rpc("evm_increaseTime", json!([WINDOW + 1]));
    stack.rpc("evm_mine", json!([]));
    wait_for("the batches to finalize", Duration::from_secs(60), || {
        stack.settled(&["finalized"]) == 3
    });
    let fees: U256 = stack
        .batches()
        .iter()
        .map(|b| b["fee"].as_str().unwrap().parse::<U256>().unwrap())
        .sum();
    stack.rt.block_on(async {
        let settlement = Settlement::new(stack.deployment.settlement, &stack.provider);
        let credit = settlement
            .credits(stack.provider_address)
            .call()
            .await
            .unwrap();
        assert_eq!(
            credit,
            charged - fees,
            "the provider's credit is the debits less the fee"
        );
        let token = TestToken::new(stack.deployment.token, &stack.provider);
        let before = token
            .balanceOf(stack.provider_address)
            .call()
            .await
            .unwrap();
        send_and_confirm("withdrawCredit", settlement.withdrawCredit())
            .await
            .unwrap();
        let after = token
            .balanceOf(stack.provider_address)
            .call()
            .await
            .unwrap();
        assert_eq!(
            after - before,
            credit,
            "the provider withdraws exactly its credit"
        );
    });

    let metrics = stack.rt.block_on(async {
        reqwest::get(format!("{}/metrics", stack.router_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(
        metrics.contains("cloister_router_settlement_rounds_total{result=\"ok\"}")
            && metrics.contains("cloister_router_settlement_unbatched_receipts 0"),
        "{metrics}"
    );

    let audit = stack.audit_chain();
    assert_eq!(
        audit.status.code(),
        Some(0),
        "{}{}",
        text(&audit.stdout),
        text(&audit.stderr)
    );
    assert!(
        text(&audit.stdout).contains("CONSISTENT"),
        "{}",
        text(&audit.stdout)
    );

    // Bad input to the new entry points: typed answers, nothing changed.
    let missing = stack.get("/v1/audit/batches/999", false);
    assert_eq!(missing["error"]["code"], "batch_not_found", "{missing}");
    let bad_after = stack.get("/v1/audit/batches/1?after=nope", false);
    assert_eq!(bad_after["error"]["param"], "after", "{bad_after}");
    let unreachable = cloister()
        .args(["audit", "chain", "--rpc", "http://127.0.0.1:9"])
        .args(["--router", &stack.router_url])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(2));
    assert!(
        text(&unreachable.stderr).contains("127.0.0.1:9"),
        "{}",
        text(&unreachable.stderr)
    );
    let no_router = cloister()
        .args(["audit", "chain", "--rpc", &stack.chain.url()])
        .args(["--router", "ftp://router"])
        .output()
        .unwrap();
    assert_eq!(no_router.status.code(), Some(2));
    assert!(
        text(&no_router.stderr).contains("--router"),
        "{}",
        text(&no_router.stderr)
    );
    let no_batch = cloister()
        .args(["audit", "chain", "--rpc", &stack.chain.url()])
        .args(["--router", &stack.router_url, "--batch", "999"])
        .output()
        .unwrap();
    assert_eq!(no_batch.status.code(), Some(2));
    assert!(
        text(&no_batch.stderr).contains("no batch 999"),
        "{}",
        text(&no_batch.stderr)
    );
    let pinned_elsewhere = cloister()
        .args(["audit", "chain", "--rpc", &stack.chain.url()])
        .args(["--router", &stack.router_url])
        .args(["--settlement", "0x00000000000000000000000000000000000000aa"])
        .output()
        .unwrap();
    assert_eq!(pinned_elsewhere.status.code(), Some(1));
    assert!(text(&pinned_elsewhere.stdout).contains("settlement_contract"));
    assert_eq!(
        stack.audit_chain().status.code(),
        Some(0),
        "still consistent"
    );

    // A dishonest router inflates one stored receipt's completion tokens.
    let receipt = stack.get("/v1/receipts", true)["data"][0].clone();
    let id = receipt["id"].as_str().unwrap();
    let tokens = receipt["receipt"]["receipt"]["completionTokens"]
        .as_u64()
        .unwrap();
    stack.sql(&format!(
        "UPDATE receipts SET receipt = replace(receipt, '\"completionTokens\":{tokens}', \
         '\"completionTokens\":{}') WHERE digest = '{id}'",
        tokens + 100
    ));
    let audit = stack.audit_chain();
    let out = text(&audit.stdout);
    assert_eq!(audit.status.code(), Some(1), "{out}{}", text(&audit.stderr));
    assert!(out.contains("DIFFERS"), "{out}");
    assert!(
        out.contains("signature") || out.contains("receipt_id"),
        "{out}"
    );
    assert!(out.contains("merkle_root"), "{out}");

    // A dishonest operator rewrites the logged bundle that its Registry
    // record of the signer names: the record is no longer backed by the log.
    stack.sql(&format!(
        "UPDATE attestation_log SET bundle = replace(bundle, '{}', '{}')",
        stack.provider_address, stack.gov_address
    ));
    let audit = stack.audit_chain();
    let out = text(&audit.stdout);
    assert_eq!(audit.status.code(), Some(1), "{out}");
    assert!(
        out.contains("signer_record") && out.contains("not in the router's attestation log"),
        "{out}"
    );
}

#[test]
fn a_router_killed_between_writing_a_batch_and_its_confirmation_settles_once() {
    let mut stack = Stack::start();
    stack.request(0);
    wait_for(
        "the signer in the Registry",
        Duration::from_secs(60),
        || stack.signer_recorded(),
    );
    wait_for("the first batch on chain", Duration::from_secs(60), || {
        stack.settled(&["confirmed"]) == 1
    });
    let escrow_before = stack.escrow();

    // The chain stops mining: the next batch is written and sent, and stays
    // unconfirmed; the router is killed then.
    stack.rpc("evm_setAutomine", json!([false]));
    stack.request(1);
    stack.request(2);
    wait_for("the second batch written", Duration::from_secs(60), || {
        stack.batches().iter().any(|b| b["state"] == "written")
    });
    // Kill the router once its transaction waits in the pool.
    wait_for(
        "the batch transaction pending",
        Duration::from_secs(30),
        || {
            stack.rt.block_on(async {
                let block: Option<Value> = stack
                    .gov
                    .raw_request("eth_getBlockByNumber".into(), json!(["pending", false]))
                    .await
                    .unwrap();
                block.is_some_and(|b| b["transactions"].as_array().is_some_and(|t| !t.is_empty()))
            })
        },
    );
    stack.stop_router();
    // The transaction is mined after the router died: the chain holds the
    // batch, the router's ledger still says written.
    stack.rpc("evm_mine", json!([]));
    stack.rpc("evm_setAutomine", json!([true]));

    stack.start_router();
    wait_for(
        "the second batch confirmed",
        Duration::from_secs(60),
        || stack.settled(&["confirmed"]) == 3,
    );
    let batches = stack.batches();
    assert!(
        batches.iter().all(|b| b["state"] == "confirmed"),
        "{batches:?}"
    );
    let charged = stack.charged();
    let first: U256 = batches[0]["total"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        escrow_before - stack.escrow(),
        charged - first,
        "every later receipt was debited once"
    );
    stack.rt.block_on(async {
        let settlement = Settlement::new(stack.deployment.settlement, &stack.gov);
        let next = u64::try_from(batches.len()).unwrap() + 1;
        let extra = settlement.batches(next).call().await.unwrap();
        assert_eq!(extra.state, 0, "the chain holds no batch the router lacks");
    });
    let audit = stack.audit_chain();
    assert_eq!(audit.status.code(), Some(0), "{}", text(&audit.stdout));
}

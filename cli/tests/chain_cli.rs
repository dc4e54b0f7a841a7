//! `cloister chain deploy` and `allow` against anvil, and their errors.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::process::Command;

use cloister_contracts::Deployment;
use cloister_contracts::testing::TestChain;

fn cloister() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cloister"))
}

fn key_file(dir: &std::path::Path, chain: &TestChain, i: usize) -> std::path::PathBuf {
    let path = dir.join(format!("key{i}"));
    let secret = chain.key(i).to_bytes();
    std::fs::write(&path, format!("0x{}\n", hex_encode(secret.as_slice()))).unwrap();
    path
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn deploy_writes_the_addresses_and_allow_updates_the_registry() {
    let chain = TestChain::start();
    let dir = tempfile::tempdir().unwrap();
    let gov = key_file(dir.path(), &chain, 0);
    let operator = chain.key(1).address();
    let out = dir.path().join("chain.json");
    let run = cloister()
        .args(["chain", "deploy", "--rpc", &chain.url(), "--key-file"])
        .arg(&gov)
        .args([
            "--operator",
            &operator.to_string(),
            "--mint",
            "5000",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let deployment = Deployment::read(&out).unwrap();
    assert_eq!(deployment.chain_id, 31337);
    assert_eq!(deployment.operator, operator);
    assert_eq!(deployment.governance, chain.key(0).address());
    assert!(deployment.test_token);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains(&deployment.settlement.to_string()),
        "{stdout}"
    );

    let model = format!("0x{}", "22".repeat(32));
    let allow = cloister()
        .args(["chain", "allow", "--rpc", &chain.url(), "--key-file"])
        .arg(&gov)
        .arg("--deployment")
        .arg(&out)
        .args(["--model", &model])
        .output()
        .unwrap();
    assert!(
        allow.status.success(),
        "{}",
        String::from_utf8_lossy(&allow.stderr)
    );
    // Only governance may: the operator's key is refused with the contract's reason.
    let op = key_file(dir.path(), &chain, 1);
    let refused = cloister()
        .args(["chain", "allow", "--rpc", &chain.url(), "--key-file"])
        .arg(&op)
        .arg("--deployment")
        .arg(&out)
        .args(["--model", &model])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("NotGovernance"), "{stderr}");
}

#[test]
fn deploy_refuses_a_bad_key_file_and_an_unreachable_chain() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, "not a key").unwrap();
    let run = cloister()
        .args([
            "chain",
            "deploy",
            "--rpc",
            "http://127.0.0.1:1",
            "--key-file",
        ])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("does not hold a 0x hex secp256k1 key"));
    let good = dir.path().join("good.key");
    std::fs::write(&good, format!("0x{}", "11".repeat(32))).unwrap();
    let out = dir.path().join("chain.json");
    let run = cloister()
        .args([
            "chain",
            "deploy",
            "--rpc",
            "http://127.0.0.1:1",
            "--key-file",
        ])
        .arg(&good)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("RPC failed"));
    assert!(!out.exists(), "nothing written");
}

fn stake(
    chain: &TestChain,
    key: &std::path::Path,
    deployment: &std::path::Path,
    amount: &str,
) -> std::process::Output {
    cloister()
        .args(["chain", "stake", "--rpc", &chain.url(), "--key-file"])
        .arg(key)
        .arg("--deployment")
        .arg(deployment)
        .args(["--amount", amount])
        .output()
        .unwrap()
}

#[test]
fn stake_registers_then_adds_and_refuses_what_the_registry_refuses() {
    let chain = TestChain::start();
    let dir = tempfile::tempdir().unwrap();
    let gov = key_file(dir.path(), &chain, 0);
    let out = dir.path().join("chain.json");
    let run = cloister()
        .args(["chain", "deploy", "--rpc", &chain.url(), "--key-file"])
        .arg(&gov)
        .args(["--mint", "5000", "--minimum-stake", "1000", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    // Below the minimum on the first stake: the contract's reason, exit 2.
    let low = stake(&chain, &gov, &out, "500");
    assert_eq!(low.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&low.stderr).contains("StakeBelowMinimum"),
        "{}",
        String::from_utf8_lossy(&low.stderr)
    );

    let first = stake(&chain, &gov, &out, "1500");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(
        text.contains("stake       1500 (was 0, newly registered)"),
        "{text}"
    );

    let more = stake(&chain, &gov, &out, "700");
    assert!(
        more.status.success(),
        "{}",
        String::from_utf8_lossy(&more.stderr)
    );
    assert!(String::from_utf8_lossy(&more.stdout).contains("stake       2200 (was 1500)"));

    // More than the key holds (5000 minted, 2200 staked): refused, stake unchanged.
    let broke = stake(&chain, &gov, &out, "4000");
    assert_eq!(
        broke.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&broke.stdout)
    );
    let zero = stake(&chain, &gov, &out, "0");
    assert_eq!(zero.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&zero.stderr).contains("more than 0"));
    let again = stake(&chain, &gov, &out, "1");
    assert!(String::from_utf8_lossy(&again.stdout).contains("stake       2201 (was 2200)"));
}

//! `cloister proxy` as a user starts it: refusing to start without a policy
//! that can be trusted or with an unusable payer key (exit 2, a clear
//! message), and creating the payer key (mode 0600) on first use.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn cloister() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloister"));
    for var in ["CLOISTER_POLICY", "CLOISTER_API_KEY", "CLOISTER_ROUTER"] {
        command.env_remove(var);
    }
    command
}

const DEV_POLICY: &str = "platforms = []\n[simulated]\nallow = true\n";

#[test]
fn the_proxy_refuses_to_start_without_a_trustworthy_policy_or_a_usable_payer_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = cloister()
        .args(["proxy", "--router", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give --policy FILE"));

    // A policy that pins no code for a hardware platform it allows.
    let lax = dir.path().join("lax.toml");
    std::fs::write(&lax, "platforms = [\"tdx\"]\n").unwrap();
    let out = cloister()
        .args(["proxy", "--router", "http://127.0.0.1:9", "--policy"])
        .arg(&lax)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lax.toml"));

    let policy = dir.path().join("dev.toml");
    std::fs::write(&policy, DEV_POLICY).unwrap();
    let bad_key = dir.path().join("payer-key");
    std::fs::write(&bad_key, "not hex\n").unwrap();
    let out = cloister()
        .args(["proxy", "--router", "http://127.0.0.1:9", "--policy"])
        .arg(&policy)
        .arg("--payer-key")
        .arg(&bad_key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a payer key"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&bad_key).unwrap(),
        "not hex\n",
        "left as it was"
    );
}

#[test]
fn the_proxy_creates_its_payer_key_and_says_how_to_register_it() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("dev.toml");
    std::fs::write(&policy, DEV_POLICY).unwrap();
    let key = dir.path().join("keys/payer-key");
    let mut child = cloister()
        .args([
            "proxy",
            "--router",
            "http://127.0.0.1:9",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--policy")
        .arg(&policy)
        .arg("--payer-key")
        .arg(&key)
        .arg("--receipts")
        .arg(dir.path().join("receipts.jsonl"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("export OPENAI_BASE_URL=http://127.0.0.1:") {
            break;
        }
    }
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(seen.contains("no --api-key"), "{seen}");
    assert!(stderr.contains("created payer key"), "{stderr}");
    assert!(
        stderr.contains("cloister keys create --account NAME --payer 0x"),
        "{stderr}"
    );
    let secret = std::fs::read_to_string(&key).unwrap();
    assert_eq!(secret.len(), 64, "64 hex digits");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let address = stderr
        .split("(address ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap();
    assert!(seen.contains(&format!("payer {address}")), "{seen}");
}

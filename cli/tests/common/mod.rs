//! Running `cloister` as a user does: a clean environment, children that
//! print their address on their first line.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// `cloister` without the environment variables that would change its
/// configuration behind the test's back.
pub(crate) fn cloister() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloister"));
    for var in [
        "DATABASE_URL",
        "CLOISTER_DATA_DIR",
        "CLOISTER_POLICY",
        "CLOISTER_JOIN_TOKENS",
        "CLOISTER_API_KEY",
        "CLOISTER_RPC_URL",
        "CLOISTER_CHAIN_DEPLOYMENT",
        "CLOISTER_SETTLEMENT_KEY_FILE",
        "CLOISTER_PAYOUT_ADDRESS",
    ] {
        command.env_remove(var);
    }
    command
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Starts a child that prints `prefix ADDR` as its first line.
pub(crate) fn spawn(command: &mut Command, prefix: &str) -> (Child, String) {
    let mut child = command
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().expect("printed nothing").unwrap();
    let addr = line
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    (child, addr)
}

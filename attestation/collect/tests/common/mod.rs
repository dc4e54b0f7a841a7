//! Helpers shared by the integration tests: the recorded vectors, a log
//! capture, a configfs-tsm kernel emulator and a tiny HTTP server.
#![allow(dead_code, unreachable_pub)]

pub mod http_server;
pub mod logs;
pub mod tsm_emulator;

use std::path::{Path, PathBuf};

use cloister_attestation::Timestamp;
use serde_json::Value;

/// `attestation/testdata`.
pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

pub fn read(platform: &str, name: &str, file: &str) -> Vec<u8> {
    let path = testdata().join(platform).join(name).join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn expected(platform: &str, name: &str) -> Value {
    serde_json::from_slice(&read(platform, name, "expected.json")).unwrap()
}

pub fn verify_at(platform: &str, name: &str) -> Timestamp {
    Timestamp::parse_rfc3339(expected(platform, name)["verify_at"].as_str().unwrap()).unwrap()
}

pub fn time(rfc3339: &str) -> Timestamp {
    Timestamp::parse_rfc3339(rfc3339).unwrap()
}

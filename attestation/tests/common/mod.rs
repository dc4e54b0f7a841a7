//! Loading the recorded hardware vectors in `attestation/testdata/`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use cloister_attestation::Timestamp;
use serde_json::Value;

pub(crate) fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// Names of the vectors in `testdata/<platform>/`.
pub(crate) fn vectors(platform: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(testdata().join(platform))
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            e.file_type()
                .unwrap()
                .is_dir()
                .then(|| e.file_name().into_string().unwrap())
        })
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no {platform} vectors");
    names
}

pub(crate) fn read(platform: &str, name: &str, file: &str) -> Vec<u8> {
    let path = testdata().join(platform).join(name).join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn expected(platform: &str, name: &str) -> Value {
    serde_json::from_slice(&read(platform, name, "expected.json")).unwrap()
}

pub(crate) fn verify_at(expected: &Value) -> Timestamp {
    Timestamp::parse_rfc3339(expected["verify_at"].as_str().unwrap()).unwrap()
}

//! The committed artifacts were compiled from the sources as they are now:
//! `artifacts/SOURCES.sha256` lists the SHA-256 of every Solidity source the
//! artifacts came from (`scripts/compile-contracts.sh` writes it; its
//! `--check` recompiles and compares the bytecode too).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn sources(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).expect("solidity dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "sol") {
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .replace('\\', "/");
            let digest = Sha256::digest(std::fs::read(&path).expect("read source"));
            out.insert(rel, hex::encode(digest));
        }
    }
}

#[test]
fn artifacts_are_current() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = crate_dir.join("solidity");
    let mut now = BTreeMap::new();
    sources(&root, &root, &mut now);
    let manifest =
        std::fs::read_to_string(crate_dir.join("artifacts/SOURCES.sha256")).expect("manifest");
    let compiled: BTreeMap<String, String> = manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (hash, path) = l.split_once("  ").expect("sha256sum format");
            (path.to_owned(), hash.to_owned())
        })
        .collect();
    assert!(
        compiled == now,
        "contracts-bindings/artifacts are stale: the Solidity sources changed since they were compiled \
         (run scripts/compile-contracts.sh and commit the artifacts)\ncompiled from: {compiled:#?}\nsources now: {now:#?}"
    );
    for name in ["Registry", "Settlement", "TestToken"] {
        let text = std::fs::read_to_string(crate_dir.join(format!("artifacts/{name}.json")))
            .expect("artifact");
        let json: serde_json::Value = serde_json::from_str(&text).expect("json");
        let code = json["bytecode"]["object"].as_str().expect("bytecode");
        assert!(code.len() > 1000, "{name} has bytecode");
    }
}

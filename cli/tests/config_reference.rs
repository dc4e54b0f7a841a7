//! docs/configuration.md is exactly what `cloister config-reference` prints,
//! so the reference cannot fall behind the options the code parses.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use std::path::Path;
use std::process::Command;

#[test]
fn docs_configuration_md_is_current() {
    let out = Command::new(env!("CARGO_BIN_EXE_cloister"))
        .arg("config-reference")
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).expect("utf-8");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    if std::env::var_os("CLOISTER_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write docs/configuration.md");
    }
    let committed = std::fs::read_to_string(&path).expect("docs/configuration.md");
    assert!(
        committed == generated,
        "docs/configuration.md is out of date: run `cloister config-reference > docs/configuration.md` \
         (or this test with CLOISTER_BLESS=1)"
    );
    // It covers every command and names environment variables and defaults.
    for needle in [
        "## `cloister router`",
        "## `cloister enclave`",
        "## `cloister proxy`",
        "## `cloister dev`",
        "`DATABASE_URL`",
        "`CLOISTER_PAYOUT_ADDRESS`",
        "| `--listen <ADDR>` |",
        "`127.0.0.1:7070`",
        "reattest_interval_secs = 300",
    ] {
        assert!(generated.contains(needle), "missing {needle}");
    }
}

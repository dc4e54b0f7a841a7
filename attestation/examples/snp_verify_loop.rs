//! Runs one SEV-SNP verification mode N times, for instruction counting
//! under valgrind (see `scripts/bench-attestation.sh`):
//! `snp_verify_loop <cloister|sev-links> N`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use cloister_attestation::Timestamp;
use cloister_attestation::snp::{self, SnpCertChain};
use sev::certs::snp::Verifiable as _;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "cloister".into());
    let n: u32 = args.next().map_or(100, |s| s.parse().unwrap());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/snp/genoa-v5-oak");
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let (report, ark, ask, vcek) = (
        read("report.bin"),
        read("ark.pem"),
        read("ask.pem"),
        read("vcek.der"),
    );
    let now = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let chain = SnpCertChain::parse(Some(&ark), &ask, &vcek).unwrap();
    let sev_ark = sev::certs::snp::Certificate::from_pem(&ark).unwrap();
    let sev_ask = sev::certs::snp::Certificate::from_pem(&ask).unwrap();
    let sev_vcek = sev::certs::snp::Certificate::from_der(&vcek).unwrap();
    for _ in 0..n {
        match mode.as_str() {
            "cloister" => {
                std::hint::black_box(snp::verify_report(&report, &chain, now).unwrap());
            }
            // The two RSA-PSS links alone, through the `sev` crate's
            // pure-Rust backend (what verify_report used before `ring`).
            "sev-links" => {
                (&sev_ark, std::hint::black_box(&sev_ask)).verify().unwrap();
                (&sev_ask, std::hint::black_box(&sev_vcek))
                    .verify()
                    .unwrap();
            }
            other => panic!("mode {other}: cloister or sev-links"),
        }
    }
}

//! Fixed real evidence, certificates and collateral for the fuzz targets,
//! embedded from `attestation/testdata/`, and small helpers the targets share.

use std::sync::LazyLock;

use cloister_attestation::snp::SnpCertChain;
use cloister_attestation::tdx::TdxCollateral;
use cloister_attestation::{Timestamp, Verdict};

macro_rules! testdata {
    ($path:expr) => {
        include_bytes!(concat!("../../attestation/testdata/", $path)).as_slice()
    };
}

/// A real DCAP quote with the collateral it verifies against and a time
/// inside the collateral's validity window.
#[derive(Debug)]
pub struct TdxFixture {
    pub name: &'static str,
    pub quote: &'static [u8],
    pub collateral_json: &'static [u8],
    pub collateral: TdxCollateral,
    pub at: Timestamp,
}

/// A real SEV-SNP report with its ARK/ASK/VEK chain and a time inside the
/// certificates' validity.
#[derive(Debug)]
pub struct SnpFixture {
    pub name: &'static str,
    pub report: &'static [u8],
    pub chain: SnpCertChain,
    pub at: Timestamp,
}

/// A real NVIDIA SPDM report with its device chain.
#[derive(Debug)]
pub struct GpuFixture {
    pub name: &'static str,
    pub report: &'static [u8],
    pub chain_pem: &'static [u8],
    pub at: Timestamp,
}

macro_rules! tdx {
    ($dir:literal, $at:expr) => {
        (
            $dir,
            testdata!(concat!($dir, "/quote.bin")),
            testdata!(concat!($dir, "/collateral.json")),
            $at,
        )
    };
}

/// Every TDX/SGX vector (verify_at_unix from its expected.json).
pub static TDX: LazyLock<Vec<TdxFixture>> = LazyLock::new(|| {
    [
        tdx!(
            "tdx/v4-azure-no-sept-ve-disable-00806f-trustee",
            1_740_787_200
        ),
        tdx!("tdx/v4-debug-td-50806f-trustee", 1_688_169_600),
        tdx!("tdx/v4-outofdate-00806f-automata", 1_740_787_200),
        tdx!("tdx/v4-uptodate-20a06f-near", 1_757_894_400),
        tdx!("tdx/v4-uptodate-b0c06f-dcapqvl", 1_751_328_000),
        tdx!("tdx/v5-tcb-not-supported-90c06f-dcapqvl", 1_772_323_200),
        tdx!("tdx/v5-uptodate-90c06f-gotdxguest", 1_772_323_200),
        tdx!("sgx/v3-sgx-config-and-sw-hardening-dcapqvl", 1_751_328_000),
    ]
    .into_iter()
    .map(|(name, quote, collateral_json, at)| TdxFixture {
        name,
        quote,
        collateral_json,
        collateral: TdxCollateral::from_json(collateral_json)
            .unwrap_or_else(|e| panic!("fixture {name}: {e}")),
        at: Timestamp::from_unix(at),
    })
    .collect()
});

macro_rules! snp {
    ($dir:literal, $ask:literal, $vek:literal, $at:expr) => {
        (
            $dir,
            testdata!(concat!($dir, "/report.bin")),
            testdata!(concat!($dir, "/ark.pem")),
            testdata!(concat!($dir, "/", $ask)),
            testdata!(concat!($dir, "/", $vek)),
            $at,
        )
    };
}

/// Every SEV-SNP vector (verify_at from its expected.json).
pub static SNP: LazyLock<Vec<SnpFixture>> = LazyLock::new(|| {
    const Y2026: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
    const Y2025: u64 = 1_735_689_600; // 2025-01-01T00:00:00Z
    const JUNE_2025: u64 = 1_748_736_000; // 2025-06-01T00:00:00Z
    [
        snp!("snp/genoa-v3-azure-trustee", "ask.pem", "vcek.pem", Y2026),
        snp!("snp/genoa-v5-oak", "ask.pem", "vcek.der", Y2026),
        snp!(
            "snp/milan-v2-debug-policy-gosevguest",
            "ask.pem",
            "vcek.der",
            Y2025
        ),
        snp!("snp/milan-v2-virtee", "ask.pem", "vcek.der", Y2025),
        snp!(
            "snp/milan-v3-vlek-aws-trustee",
            "asvk.pem",
            "vlek.der",
            JUNE_2025
        ),
        snp!("snp/milan-v5-gcp-teekit", "ask.pem", "vcek.pem", Y2026),
        snp!("snp/turin-v5-oak", "ask.pem", "vcek.der", Y2026),
    ]
    .into_iter()
    .map(|(name, report, ark, ask, vek, at)| SnpFixture {
        name,
        report,
        chain: SnpCertChain::parse(Some(ark), ask, vek)
            .unwrap_or_else(|e| panic!("fixture {name}: {e}")),
        at: Timestamp::from_unix(at),
    })
    .collect()
});

/// Both GPU vectors (the time `attestation/tests/gpu_vectors.rs` uses).
pub static GPU: LazyLock<Vec<GpuFixture>> = LazyLock::new(|| {
    const Y2026: u64 = 1_767_225_600;
    vec![
        GpuFixture {
            name: "gpu/h100-coco-ci-trustee",
            report: testdata!("gpu/h100-coco-ci-trustee/attestation_report.bin"),
            chain_pem: testdata!("gpu/h100-coco-ci-trustee/cert_chain.pem"),
            at: Timestamp::from_unix(Y2026),
        },
        GpuFixture {
            name: "gpu/h100-nvtrust-sample",
            report: testdata!("gpu/h100-nvtrust-sample/attestation_report.bin"),
            chain_pem: testdata!("gpu/h100-nvtrust-sample/cert_chain.pem"),
            at: Timestamp::from_unix(Y2026),
        },
    ]
});

/// Index of the candidate `data` most likely derives from: the longest
/// common prefix plus common suffix (robust to insertions and deletions in
/// the middle, which libFuzzer's mutators make). Ties go to the first.
pub fn closest<'a>(data: &[u8], candidates: impl IntoIterator<Item = &'a [u8]>) -> usize {
    let mut best = (0, 0);
    for (i, c) in candidates.into_iter().enumerate() {
        let prefix = data.iter().zip(c).take_while(|(a, b)| a == b).count();
        let suffix = data
            .iter()
            .rev()
            .zip(c.iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        let score = (prefix + suffix).min(data.len().min(c.len()));
        if score > best.1 || i == 0 {
            best = (i, score);
        }
    }
    best.0
}

/// Whether `inner` is a sub-slice of `outer` (same memory, not just equal bytes).
pub fn within(outer: &[u8], inner: &[u8]) -> bool {
    let o = outer.as_ptr_range();
    let i = inner.as_ptr_range();
    o.start <= i.start && i.end <= o.end
}

/// Invariants every verdict keeps: accepted exactly when no reason (own or
/// of a GPU) rejects it, a policy rule only when accepted, and a JSON form
/// that reads back to the same verdict.
pub fn check_verdict(v: &Verdict) {
    let own = v.reasons.is_empty();
    let gpus = v.gpus.iter().all(|g| g.accepted);
    assert_eq!(
        v.accepted,
        own && gpus,
        "accepted flag disagrees with reasons"
    );
    assert_eq!(
        v.accepted,
        v.policy_rule.is_some(),
        "policy rule without acceptance"
    );
    for g in &v.gpus {
        assert_eq!(
            g.accepted,
            g.reasons.is_empty(),
            "GPU accepted flag disagrees"
        );
    }
    let json = serde_json::to_string(v).expect("a verdict always serialises");
    let back: Verdict = serde_json::from_str(&json).expect("a verdict's JSON reads back");
    assert_eq!(&back, v, "verdict JSON round trip");
}

#[cfg(test)]
mod tests {
    //! The fixtures behave as the vectors' expected.json say, so that the
    //! targets' "accepted implies genuine" checks are not vacuous.
    use cloister_attestation::{Policy, gpu, snp, tdx};

    use super::*;

    #[test]
    fn tdx_fixtures_verify_at_their_times() {
        for f in TDX.iter() {
            let v = tdx::appraise(f.quote, &f.collateral, &Policy::strict(), f.at, None).unwrap();
            check_verdict(&v);
            let expect_accepted = f.name.contains("uptodate");
            assert_eq!(v.accepted, expect_accepted, "{}: {:?}", f.name, v.reasons);
            assert_eq!(
                closest(f.quote, TDX.iter().map(|g| g.quote)),
                TDX.iter().position(|g| g.name == f.name).unwrap()
            );
        }
    }

    #[test]
    fn snp_fixtures_verify_at_their_times() {
        for f in SNP.iter() {
            let v = snp::appraise(f.report, &f.chain, &Policy::strict(), f.at, None).unwrap();
            check_verdict(&v);
            // Only the debug-policy guest is refused by the strict policy.
            assert_eq!(
                v.accepted,
                !f.name.contains("debug"),
                "{}: {:?}",
                f.name,
                v.reasons
            );
        }
    }

    #[test]
    fn gpu_fixtures_verify() {
        for f in GPU.iter() {
            let v = gpu::verdict(f.report, f.chain_pem, None, f.at);
            check_verdict(&v);
            assert!(v.accepted, "{}: {:?}", f.name, v.reasons);
        }
    }

    #[test]
    fn closest_prefers_shared_prefix_and_suffix() {
        let a: &[u8] = b"aaaaaaaaaa";
        let b: &[u8] = b"bbbbbbbbbb";
        assert_eq!(closest(b"bbbbXbbbbbb", [a, b]), 1);
        assert_eq!(closest(b"", [a, b]), 0);
    }
}

//! `cloister measure` against independent implementations:
//!
//! - SEV-SNP: the `sev-snp-measure` package (PyPI, installed by
//!   scripts/lib/deploy-tools.sh) on Debian's `ovmf` firmware over several
//!   VM shapes, and on a firmware made here with a kernel hashes section
//!   (Debian's OVMF.fd with one SEV metadata section retyped and the hashes
//!   table's address set, the layout of OVMF's AmdSev build) for the
//!   kernel/initrd/command-line path.
//! - TDX: MRTD and RTMR2 vectors recorded from dstack-mr (see
//!   tests/data/measure/PROVENANCE.md), for the firmware files they name.
//!
//! Bad input gets exit status 2 and a message naming the problem.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};

const OVMF: &str = "/usr/share/ovmf/OVMF.fd";
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";

fn cloister() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cloister"))
}

/// A file the tests need from a Debian package, or a failure saying how to get it.
fn debian_file(path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.is_file(),
        "{path} is missing: install Debian's `ovmf` package (scripts/lib/deploy-tools.sh does)"
    );
    p
}

/// `sev-snp-measure` as a command: its package directory on PYTHONPATH.
fn sev_snp_measure(args: &[&str]) -> String {
    let dir = std::env::var_os("CLOISTER_SEV_SNP_MEASURE").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/cloister/tools/sev-snp-measure")
        },
        PathBuf::from,
    );
    assert!(
        dir.join("sevsnpmeasure").is_dir(),
        "sev-snp-measure is not installed in {}: run scripts/lib/deploy-tools.sh",
        dir.display()
    );
    let out = Command::new("python3")
        .env("PYTHONPATH", &dir)
        .args([
            "-c",
            "import sys, sevsnpmeasure.cli as c; sys.argv[0] = 'sev-snp-measure'; c.main()",
        ])
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "sev-snp-measure {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

fn measure_json(args: &[&str]) -> serde_json::Value {
    let out = cloister()
        .arg("measure")
        .args(args)
        .arg("--json")
        .output()
        .expect("cloister runs");
    assert!(
        out.status.success(),
        "cloister measure {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn snp_digest(args: &[&str]) -> String {
    let mut full = vec!["snp"];
    full.extend_from_slice(args);
    measure_json(&full)["measurement"]
        .as_str()
        .expect("measurement")
        .to_string()
}

#[test]
fn snp_agrees_with_sev_snp_measure_on_debian_ovmf() {
    let shapes: &[(&str, &str, &str)] = &[
        ("1", "EPYC-Milan", "0x1"),
        ("2", "EPYC-Genoa", "0x1"),
        ("4", "EPYC-Rome", "0x1"),
        ("8", "EPYC-v4", "0x1"),
        ("16", "EPYC-Turin", "0x1"),
        ("64", "EPYC-Genoa-v1", "0x1"),
        ("3", "EPYC-Milan", "0x21"),
    ];
    for fw in [debian_file(OVMF), debian_file(OVMF_CODE)] {
        let fw = fw.to_str().expect("utf-8 path");
        for (vcpus, cpu, features) in shapes {
            let ours = snp_digest(&[
                "--ovmf",
                fw,
                "--vcpus",
                vcpus,
                "--vcpu-type",
                cpu,
                "--guest-features",
                features,
            ]);
            let theirs = sev_snp_measure(&[
                "--mode",
                "snp",
                "--ovmf",
                fw,
                "--vcpus",
                vcpus,
                "--vcpu-type",
                cpu,
                "--guest-features",
                features,
            ]);
            assert_eq!(
                ours, theirs,
                "{fw} with {vcpus} x {cpu}, features {features}"
            );
        }
    }
    // A signature given directly equals the named type's.
    let named = snp_digest(&["--ovmf", OVMF, "--vcpus", "2", "--vcpu-type", "EPYC-Milan"]);
    assert_eq!(
        named,
        snp_digest(&[
            "--ovmf",
            OVMF,
            "--vcpus",
            "2",
            "--vcpu-signature",
            "0xa00f11"
        ])
    );
}

/// Debian's OVMF.fd turned into a firmware with an SEV-SNP kernel hashes
/// section: the second SEC memory section (0x80a000, 3 pages) becomes a
/// one-page kernel hashes section, and the footer table's hash table entry
/// points into it at `offset` within the page.
fn with_kernel_hashes_section(ovmf: &[u8], offset: u32) -> Vec<u8> {
    let mut fw = ovmf.to_vec();
    let guid_at = |fw: &[u8], g: [u8; 16]| {
        let tail = fw.len() - 4096;
        tail + fw[tail..]
            .windows(16)
            .position(|w| w == g)
            .expect("GUID in the footer table")
    };
    // Entry layout: data, size (u16), GUID; the data ends 2 bytes before the GUID.
    let sev_meta = guid_at(&fw, guid_bytes("dc886566-984a-4798-a75e-5585a7bf67cc"));
    let from_end = u32::from_le_bytes(fw[sev_meta - 6..sev_meta - 2].try_into().expect("4 bytes"));
    let meta = fw.len() - from_end as usize;
    assert_eq!(&fw[meta..meta + 4], b"ASEV");
    let section = meta + 16 + 12; // the second section
    assert_eq!(
        u32::from_le_bytes(fw[section..section + 4].try_into().expect("4")),
        0x80a000
    );
    fw[section + 4..section + 8].copy_from_slice(&0x1000u32.to_le_bytes());
    fw[section + 8..section + 12].copy_from_slice(&0x10u32.to_le_bytes());
    let hash_table = guid_at(&fw, guid_bytes("7255371f-3a3b-4b04-927b-1da6efa8d454"));
    fw[hash_table - 10..hash_table - 6].copy_from_slice(&(0x80a000 + offset).to_le_bytes());
    fw[hash_table - 6..hash_table - 2].copy_from_slice(&0x400u32.to_le_bytes());
    fw
}

fn guid_bytes(text: &str) -> [u8; 16] {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let mut b = [0u8; 16];
    hex::decode_to_slice(hex, &mut b).expect("hex");
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

#[test]
fn snp_kernel_hashes_agree_with_sev_snp_measure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ovmf = std::fs::read(debian_file(OVMF)).expect("read OVMF");
    let kernel = dir.path().join("vmlinuz");
    let initrd = dir.path().join("initrd.img");
    std::fs::write(
        &kernel,
        (0..3_000_000u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .expect("write");
    std::fs::write(
        &initrd,
        (0..1_500_000u32)
            .map(|i| (i * 13 % 241) as u8)
            .collect::<Vec<_>>(),
    )
    .expect("write");
    let (k, i) = (
        kernel.to_str().expect("utf-8"),
        initrd.to_str().expect("utf-8"),
    );
    let mut seen = std::collections::BTreeSet::new();
    for offset in [0u32, 0xc00] {
        let fw = dir.path().join(format!("OVMF.hashes-{offset:x}.fd"));
        std::fs::write(&fw, with_kernel_hashes_section(&ovmf, offset)).expect("write");
        let fw = fw.to_str().expect("utf-8");
        let cases: &[&[&str]] = &[
            &["--kernel", k],
            &["--kernel", k, "--initrd", i],
            &[
                "--kernel",
                k,
                "--initrd",
                i,
                "--append",
                "console=ttyS0 root=/dev/vda1 roothash=ab12 cloister.model_verity=cd34 -- é",
            ],
            &[],
        ];
        for (vcpus, cpu) in [("1", "EPYC-Milan"), ("4", "EPYC-Genoa")] {
            for extra in cases {
                let mut ours = vec!["--ovmf", fw, "--vcpus", vcpus, "--vcpu-type", cpu];
                ours.extend_from_slice(extra);
                let mut theirs = vec![
                    "--mode",
                    "snp",
                    "--ovmf",
                    fw,
                    "--vcpus",
                    vcpus,
                    "--vcpu-type",
                    cpu,
                ];
                theirs.extend_from_slice(extra);
                let digest = snp_digest(&ours);
                assert_eq!(
                    digest,
                    sev_snp_measure(&theirs),
                    "{offset:#x} {vcpus} {cpu} {extra:?}"
                );
                seen.insert(digest);
            }
        }
    }
    // Every input changes the digest (the hashes page is really measured;
    // the two firmware files differ in their footer table).
    assert_eq!(seen.len(), 2 * 2 * 4, "every launch has its own digest");
}

fn measure_fails(args: &[&str], needle: &str) {
    let out = cloister()
        .arg("measure")
        .args(args)
        .output()
        .expect("cloister runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in {err}"
    );
    assert!(
        out.stdout.is_empty(),
        "{args:?} printed a result: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn bad_input_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.fd");
    std::fs::write(&junk, vec![0u8; 8192]).expect("write");
    let j = junk.to_str().expect("utf-8");
    let kernel = dir.path().join("vmlinuz");
    std::fs::write(&kernel, b"kernel").expect("write");
    let k = kernel.to_str().expect("utf-8");
    measure_fails(
        &["snp", "--ovmf", j, "--vcpus", "1", "--vcpu-type", "EPYC"],
        "no OVMF footer table",
    );
    measure_fails(&["tdx", "--tdvf", j], "no OVMF footer table");
    measure_fails(
        &[
            "snp",
            "--ovmf",
            "/nonexistent.fd",
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC",
        ],
        "cannot read /nonexistent.fd",
    );
    let ovmf = debian_file(OVMF);
    let o = ovmf.to_str().expect("utf-8");
    measure_fails(
        &["snp", "--ovmf", o, "--vcpus", "1", "--vcpu-type", "Skylake"],
        "unknown --vcpu-type",
    );
    measure_fails(
        &["snp", "--ovmf", o, "--vcpus", "0", "--vcpu-type", "EPYC"],
        "0 vCPUs",
    );
    // Plain OVMF boots a kernel unmeasured: refused rather than a digest no launch gives.
    measure_fails(
        &[
            "snp",
            "--ovmf",
            o,
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC",
            "--kernel",
            k,
        ],
        "no SEV-SNP kernel hashes section",
    );
    // The code-only half of a split firmware has TDVF sections outside it.
    let code = debian_file(OVMF_CODE);
    measure_fails(
        &["tdx", "--tdvf", code.to_str().expect("utf-8")],
        "runs past the image's end",
    );
    // A truncated footer table.
    let mut cut = std::fs::read(&ovmf).expect("read");
    let n = cut.len();
    cut[n - 50..n - 48].copy_from_slice(&0xffffu16.to_le_bytes());
    let cut_path = dir.path().join("cut.fd");
    std::fs::write(&cut_path, cut).expect("write");
    measure_fails(
        &["tdx", "--tdvf", cut_path.to_str().expect("utf-8")],
        "malformed",
    );
    // --initrd without --kernel is a usage error (clap's own exit status 2).
    measure_fails(&["tdx", "--tdvf", o, "--initrd", k], "--kernel");
}

#[derive(serde::Deserialize)]
struct TdxVector {
    firmware: String,
    sha256: String,
    mrtd_per_page: String,
    mrtd_per_section: String,
}

#[derive(serde::Deserialize)]
struct Rtmr2Vector {
    append: String,
    initrd_len: Option<u32>,
    rtmr2: String,
}

#[derive(serde::Deserialize)]
struct Vectors {
    tdx_mrtd: Vec<TdxVector>,
    tdx_rtmr2: Vec<Rtmr2Vector>,
}

fn vectors() -> Vectors {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/measure/vectors.json");
    serde_json::from_slice(&std::fs::read(&path).expect("vectors.json")).expect("vectors parse")
}

/// The deterministic initrd the RTMR2 vectors were computed over.
fn initrd_bytes(len: u32) -> Vec<u8> {
    (0..len).map(|i| (i * 13 % 241) as u8).collect()
}

#[test]
fn tdx_mrtd_matches_recorded_vectors_for_the_installed_firmware() {
    let ovmf = std::fs::read(debian_file(OVMF)).expect("read");
    let sha = hex::encode(Sha256::digest(&ovmf));
    let vectors = vectors();
    let v = vectors.tdx_mrtd.iter().find(|v| v.sha256 == sha).unwrap_or_else(|| {
        panic!(
            "{OVMF} (sha256 {sha}) is not among the recorded firmware ({}): Debian's ovmf changed; \
             record its MRTD as tests/data/measure/PROVENANCE.md says",
            vectors.tdx_mrtd.iter().map(|v| v.firmware.as_str()).collect::<Vec<_>>().join("; ")
        )
    });
    let got = measure_json(&["tdx", "--tdvf", OVMF]);
    assert_eq!(got["mrtd"], v.mrtd_per_page.as_str(), "{}", v.firmware);
    let got = measure_json(&["tdx", "--tdvf", OVMF, "--page-order", "per-section"]);
    assert_eq!(got["mrtd"], v.mrtd_per_section.as_str(), "{}", v.firmware);
    assert_ne!(v.mrtd_per_page, v.mrtd_per_section);
}

#[test]
fn tdx_rtmr2_matches_recorded_vectors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = dir.path().join("vmlinuz");
    std::fs::write(&kernel, b"any kernel").expect("write");
    let ovmf = debian_file(OVMF);
    for v in vectors().tdx_rtmr2 {
        let mut args = vec![
            "tdx".to_string(),
            "--tdvf".into(),
            ovmf.display().to_string(),
            "--kernel".into(),
            kernel.display().to_string(),
            "--append".into(),
            v.append.clone(),
        ];
        if let Some(len) = v.initrd_len {
            let initrd = dir.path().join(format!("initrd-{len}"));
            std::fs::write(&initrd, initrd_bytes(len)).expect("write");
            args.extend(["--initrd".into(), initrd.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let got = measure_json(&args);
        assert_eq!(
            got["rtmr2"],
            v.rtmr2.as_str(),
            "append {:?}, initrd {:?}",
            v.append,
            v.initrd_len
        );
        let policy = got["policy"].as_str().expect("policy");
        assert!(
            policy.contains(&format!("rtmr2 = [\"{}\"]", v.rtmr2)),
            "{policy}"
        );
    }
}

#[test]
fn text_output_gives_the_policy_lines() {
    let out = cloister()
        .args([
            "measure",
            "snp",
            "--ovmf",
            debian_file(OVMF).to_str().expect("utf-8"),
            "--vcpus",
            "2",
            "--vcpu-type",
            "EPYC-Genoa",
        ])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let digest = snp_digest(&["--ovmf", OVMF, "--vcpus", "2", "--vcpu-type", "EPYC-Genoa"]);
    assert!(
        text.contains(&format!("[sev_snp]\nmeasurement = [\"{digest}\"]")),
        "{text}"
    );
    assert!(
        text.contains("2 x EPYC-Genoa (CPUID signature 0xa10f10)"),
        "{text}"
    );
}

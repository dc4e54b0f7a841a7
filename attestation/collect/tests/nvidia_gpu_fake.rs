//! NVIDIA GPU evidence collection against a fake `libnvidia-ml`
//! (`tests/nvml-fake/fake_nvml.c`), compiled by each test into its own
//! directory with the system C compiler (`$CC`, default `cc`). The fake
//! serves the recorded H100 report and certificate chain of
//! `attestation/testdata/gpu/h100-nvtrust-sample`, which answer one nonce
//! only: asking for any other gets that stale report back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cloister_attestation::bundle::{self, BundleOptions, EvidenceBundle, GpuEvidence};
use cloister_attestation::{Platform, Policy, Timestamp, binding, gpu};
use cloister_attestation_collect::nvidia_gpu::DEFAULT_LIBRARY;
use cloister_attestation_collect::{Blame, EvidenceSource, GpuCollectError, NvidiaGpus};
use fake::FakeNvml;
use sha2::{Digest as _, Sha256};

const SAMPLE: &str = "h100-nvtrust-sample";
const REPORT_CALL: &str = "nvmlDeviceGetConfComputeGpuAttestationReport";
const CERT_CALL: &str = "nvmlDeviceGetConfComputeGpuCertificate";

/// Loading and poking the fake library: the one place with `unsafe`.
#[allow(unsafe_code)]
mod fake {
    use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
    use std::path::{Path, PathBuf};
    use std::process::Command;

    type SetFn = unsafe extern "C" fn(*const c_char, *const c_char) -> c_int;
    type CallsFn = unsafe extern "C" fn(*const c_char) -> c_uint;
    type IntFn = unsafe extern "C" fn() -> c_int;
    type UintFn = unsafe extern "C" fn() -> c_uint;
    type NonceFn = unsafe extern "C" fn(*mut u8) -> c_int;

    /// One compiled copy of the fake, loaded into this process. Loading the
    /// same path again (as NVML does) shares this copy's state.
    pub(crate) struct FakeNvml {
        dir: tempfile::TempDir,
        lib: PathBuf,
        handle: *mut c_void,
    }

    impl FakeNvml {
        /// Compiles the fake with extra compiler arguments and loads it.
        pub(crate) fn build(extra: &[&str]) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let lib = dir.path().join("libnvidia-ml.so.1");
            let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nvml-fake/fake_nvml.c");
            let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
            let output = Command::new(&cc)
                .args([
                    "-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-shared", "-fPIC",
                ])
                .args(extra)
                .arg("-o")
                .arg(&lib)
                .arg(&source)
                .output()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run the C compiler {cc:?}: {e}. These tests compile a fake \
                         libnvidia-ml from {}; install a C compiler (Debian: apt-get install gcc) \
                         or point CC at one",
                        source.display()
                    )
                });
            assert!(
                output.status.success(),
                "compiling the NVML fake failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let path = CString::new(lib.to_str().unwrap()).unwrap();
            // SAFETY: loads a library we just compiled; its initialisers do nothing.
            let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            assert!(!handle.is_null(), "dlopen {}", lib.display());
            Self { dir, lib, handle }
        }

        pub(crate) fn lib(&self) -> &Path {
            &self.lib
        }

        pub(crate) fn dir(&self) -> &Path {
            self.dir.path()
        }

        fn symbol(&self, name: &str) -> *mut c_void {
            let name = CString::new(name).unwrap();
            // SAFETY: a valid handle and a NUL-terminated name.
            let sym = unsafe { libc::dlsym(self.handle, name.as_ptr()) };
            assert!(!sym.is_null(), "fake lacks {name:?}");
            sym
        }

        /// Sets a configuration key (see fake_nvml.c).
        pub(crate) fn set(&self, key: &str, value: &str) {
            // SAFETY: the symbol has this signature in fake_nvml.c.
            let f =
                unsafe { std::mem::transmute::<*mut c_void, SetFn>(self.symbol("fake_nvml_set")) };
            let (k, v) = (CString::new(key).unwrap(), CString::new(value).unwrap());
            // SAFETY: two NUL-terminated strings that outlive the call.
            let rc = unsafe { f(k.as_ptr(), v.as_ptr()) };
            assert_eq!(rc, 0, "fake_nvml_set({key}, {value})");
        }

        /// Calls of the named NVML function so far.
        pub(crate) fn calls(&self, name: &str) -> u32 {
            // SAFETY: the symbol has this signature in fake_nvml.c.
            let f = unsafe {
                std::mem::transmute::<*mut c_void, CallsFn>(self.symbol("fake_nvml_calls"))
            };
            let name: &CStr = &CString::new(name).unwrap();
            // SAFETY: a NUL-terminated string that outlives the call.
            unsafe { f(name.as_ptr()) }
        }

        /// Outstanding NVML initialisations.
        pub(crate) fn initialized(&self) -> i32 {
            // SAFETY: the symbol has this signature in fake_nvml.c.
            let f = unsafe {
                std::mem::transmute::<*mut c_void, IntFn>(self.symbol("fake_nvml_initialized"))
            };
            // SAFETY: reads a static int.
            unsafe { f() }
        }

        /// Times two report requests ran at once.
        pub(crate) fn overlaps(&self) -> u32 {
            // SAFETY: the symbol has this signature in fake_nvml.c.
            let f = unsafe {
                std::mem::transmute::<*mut c_void, UintFn>(self.symbol("fake_nvml_overlaps"))
            };
            // SAFETY: reads a static unsigned.
            unsafe { f() }
        }

        /// The nonce NVML was last asked to put in a report.
        pub(crate) fn last_nonce(&self) -> Option<[u8; 32]> {
            // SAFETY: the symbol has this signature in fake_nvml.c.
            let f = unsafe {
                std::mem::transmute::<*mut c_void, NonceFn>(self.symbol("fake_nvml_last_nonce"))
            };
            let mut nonce = [0u8; 32];
            // SAFETY: writes at most 32 bytes into our 32-byte buffer.
            (unsafe { f(nonce.as_mut_ptr()) } == 0).then_some(nonce)
        }
    }

    impl Drop for FakeNvml {
        fn drop(&mut self) {
            // SAFETY: our own handle, closed once.
            unsafe { libc::dlclose(self.handle) };
        }
    }
}

fn testdata(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/gpu")
        .join(SAMPLE)
        .join(file)
}

fn recorded_nonce() -> [u8; 32] {
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(testdata("expected.json")).unwrap()).unwrap();
    let nonce = expected["request"]["nonce"].as_str().unwrap();
    hex::decode(nonce).unwrap().try_into().unwrap()
}

/// The fake serving the recorded report and chain, configured by `settings`.
fn fake_with(settings: &[(&str, &str)]) -> FakeNvml {
    let fake = FakeNvml::build(&[]);
    fake.set(
        "report",
        testdata("attestation_report.bin").to_str().unwrap(),
    );
    fake.set("chain", testdata("cert_chain.pem").to_str().unwrap());
    for (key, value) in settings {
        fake.set(key, value);
    }
    fake
}

fn open(fake: &FakeNvml) -> NvidiaGpus {
    NvidiaGpus::open(Some(fake.lib())).unwrap()
}

#[test]
fn recorded_evidence_verifies_and_binds_into_a_bundle() {
    let fake = fake_with(&[]);
    let gpus = open(&fake);
    let nonce = recorded_nonce();
    let collected = gpus.collect(&nonce).unwrap();
    assert_eq!(collected.len(), 1);
    let gpu0 = &collected[0];
    assert_eq!(gpu0.index, 0);
    assert_eq!(gpu0.uuid, "GPU-fa4e0000-0000-4000-8000-000000000000");
    assert_eq!(
        gpu0.report,
        std::fs::read(testdata("attestation_report.bin")).unwrap()
    );
    assert_eq!(
        gpu0.cert_chain_pem,
        std::fs::read_to_string(testdata("cert_chain.pem")).unwrap()
    );
    // Our nonce went to the GPU.
    assert_eq!(fake.last_nonce(), Some(nonce));

    // The verifier accepts it: signature by the leaf, chain to the pinned
    // NVIDIA root, nonce.
    let verified = gpu::verify_report(
        &gpu0.report,
        gpu0.cert_chain_pem.as_bytes(),
        Some(&nonce),
        Timestamp::now(),
    )
    .unwrap();
    assert_eq!(verified.nonce(), &nonce);
    assert!(
        verified.device().unwrap().contains("GH100"),
        "{:?}",
        verified.device()
    );

    // And inside a bundle: simulated platform evidence binding the GPU
    // report, a policy that requires GPUs.
    let mut b = EvidenceBundle {
        version: 1,
        platform: Platform::Simulated,
        evidence: bundle::Base64Bytes(Vec::new()),
        certs: bundle::BundleCerts::default(),
        gpu: collected.into_iter().map(GpuEvidence::from).collect(),
        identity: serde_json::json!({
            "hpke_key_config": "AQAgAAEAAQ==",
            "signer": "0x1111111111111111111111111111111111111111",
            "model": { "id": "m", "weights_sha256": "ab".repeat(32) },
            "app": { "version": "0.1.0", "git": "0000000" },
        }),
        nonce: hex::encode(nonce),
    };
    let report_data = binding::report_data(
        &nonce,
        &b.identity,
        b.gpu.iter().map(|g| g.report.0.as_slice()),
    );
    b.evidence = bundle::Base64Bytes(
        EvidenceSource::simulated([1; 48])
            .collect(&report_data)
            .unwrap()
            .evidence,
    );
    let b = EvidenceBundle::from_json(b.to_json().as_bytes()).unwrap();
    let policy = Policy::from_toml("[simulated]\nallow = true\n[gpu]\nrequired = true\n").unwrap();
    let options = BundleOptions {
        expected_nonce: Some(nonce),
        ..BundleOptions::default()
    };
    let verdict = bundle::appraise(&b, &policy, Timestamp::now(), &options).unwrap();
    assert!(verdict.accepted, "{:?} {:?}", verdict.reasons, verdict.gpus);
    assert_eq!(verdict.gpus.len(), 1);
    assert!(verdict.gpus[0].accepted);
}

#[test]
fn a_report_for_another_nonce_is_refused() {
    let fake = fake_with(&[]);
    let gpus = open(&fake);
    let asked = [0x11; 32];
    let err = gpus.collect(&asked).unwrap_err();
    match &err {
        GpuCollectError::NonceMismatch {
            index,
            expected,
            found,
        } => {
            assert_eq!(*index, 0);
            assert_eq!(expected, &hex::encode(asked));
            assert_eq!(found, &hex::encode(recorded_nonce()));
        }
        other => panic!("expected NonceMismatch, got {other:?}"),
    }
    assert_eq!(
        fake.last_nonce(),
        Some(asked),
        "the nonce was passed to NVML"
    );
    assert_eq!(err.blame(), Blame::Platform);
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("stale or replayed"), "{err}");
}

#[test]
fn cc_off_is_refused_before_any_gpu_is_asked() {
    let fake = fake_with(&[("cc", "0")]);
    let gpus = open(&fake);
    for err in [
        gpus.devices().unwrap_err(),
        gpus.collect(&recorded_nonce()).unwrap_err(),
    ] {
        assert!(
            matches!(err, GpuCollectError::CcModeOff { gpus: 1 }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("confidential computing is off"),
            "{err}"
        );
        assert_eq!(err.blame(), Blame::Platform);
    }
    assert_eq!(fake.calls(REPORT_CALL), 0);
    assert_eq!(fake.calls(CERT_CALL), 0);
}

#[test]
fn dev_tools_mode_is_refused() {
    let fake = fake_with(&[("dev_tools", "1")]);
    let gpus = open(&fake);
    let err = gpus.collect(&recorded_nonce()).unwrap_err();
    assert!(matches!(err, GpuCollectError::DevToolsMode), "{err:?}");
    assert!(err.to_string().contains("dev-tools mode"), "{err}");
    assert!(matches!(
        gpus.devices().unwrap_err(),
        GpuCollectError::DevToolsMode
    ));
    assert_eq!(fake.calls(REPORT_CALL), 0);
}

#[test]
fn gpus_not_ready_and_a_non_production_environment_are_refused() {
    let fake = fake_with(&[("ready", "0")]);
    let gpus = open(&fake);
    let err = gpus.collect(&recorded_nonce()).unwrap_err();
    assert!(
        matches!(err, GpuCollectError::GpusNotReady { gpus: 1 }),
        "{err:?}"
    );
    assert!(err.is_retryable());

    fake.set("ready", "1");
    fake.set("environment", "1");
    let err = gpus.devices().unwrap_err();
    assert!(matches!(err, GpuCollectError::NotProduction), "{err:?}");
    assert_eq!(fake.calls(REPORT_CALL), 0);

    // Once everything is in order the same handle works.
    fake.set("environment", "2");
    assert_eq!(gpus.devices().unwrap().len(), 1);
}

#[test]
fn a_missing_or_foreign_library_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-libnvidia-ml.so.1");
    let err = NvidiaGpus::open(Some(&missing)).unwrap_err();
    assert!(
        matches!(err, GpuCollectError::LibraryNotFound { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(missing.to_str().unwrap()), "{err}");

    let garbage = dir.path().join("garbage.so");
    std::fs::write(&garbage, b"not an ELF file").unwrap();
    let err = NvidiaGpus::open(Some(&garbage)).unwrap_err();
    assert!(
        matches!(err, GpuCollectError::LibraryNotFound { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("garbage.so"), "{err}");

    // A real library with no NVML in it.
    let err = NvidiaGpus::open(Some(Path::new("libc.so.6"))).unwrap_err();
    assert!(matches!(err, GpuCollectError::NotNvml { .. }), "{err:?}");
    assert!(err.to_string().contains("libc.so.6"), "{err}");
    assert_eq!(DEFAULT_LIBRARY, "libnvidia-ml.so.1");
}

#[test]
fn two_gpus_give_two_entries() {
    let fake = fake_with(&[("gpus", "2")]);
    let gpus = open(&fake);
    let chain_digest = hex::encode(Sha256::digest(
        std::fs::read(testdata("cert_chain.pem")).unwrap(),
    ));
    let devices = gpus.devices().unwrap();
    assert_eq!(devices.len(), 2);
    for (i, device) in devices.iter().enumerate() {
        assert_eq!(device.index as usize, i);
        assert_eq!(device.uuid, format!("GPU-fa4e0000-0000-4000-8000-{i:012}"));
        assert_eq!(device.cert_chain_sha256, chain_digest);
    }
    let collected = gpus.collect(&recorded_nonce()).unwrap();
    assert_eq!(
        collected.iter().map(|c| c.index).collect::<Vec<_>>(),
        [0, 1]
    );
    assert_ne!(collected[0].uuid, collected[1].uuid);
    assert_eq!(fake.calls(REPORT_CALL), 2);
}

#[test]
fn no_gpus_is_an_error() {
    let fake = fake_with(&[("gpus", "0")]);
    let err = open(&fake).collect(&recorded_nonce()).unwrap_err();
    assert!(matches!(err, GpuCollectError::NoGpus { .. }), "{err:?}");
}

#[test]
fn a_size_beyond_nvmls_buffer_is_an_error_not_a_crash() {
    let fake = fake_with(&[("report_size", "9000")]);
    let gpus = open(&fake);
    let err = gpus.collect(&recorded_nonce()).unwrap_err();
    assert!(
        matches!(
            err,
            GpuCollectError::BufferOverrun {
                call: REPORT_CALL,
                index: 0
            }
        ),
        "{err:?}"
    );
    // The handle is still usable afterwards.
    fake.set("report_size", "-1");
    assert_eq!(gpus.collect(&recorded_nonce()).unwrap().len(), 1);
}

#[test]
fn malformed_evidence_is_refused() {
    // A report that is not SPDM: the chain's bytes.
    let fake = fake_with(&[]);
    fake.set("report", testdata("cert_chain.pem").to_str().unwrap());
    let err = open(&fake).collect(&recorded_nonce()).unwrap_err();
    assert!(
        matches!(err, GpuCollectError::MalformedReport { index: 0, .. }),
        "{err:?}"
    );

    // A chain that is not PEM certificates.
    let fake = fake_with(&[]);
    let junk = fake.dir().join("junk.pem");
    std::fs::write(
        &junk,
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    fake.set("chain", junk.to_str().unwrap());
    let gpus = open(&fake);
    let err = gpus.collect(&recorded_nonce()).unwrap_err();
    assert!(
        matches!(err, GpuCollectError::CertChain { index: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn a_root_first_chain_comes_out_leaf_first() {
    let fake = fake_with(&[]);
    let text = std::fs::read_to_string(testdata("cert_chain.pem")).unwrap();
    let root_first: String = pem::parse_many(&text)
        .unwrap()
        .iter()
        .rev()
        .map(pem::encode)
        .collect();
    let path = fake.dir().join("root-first.pem");
    std::fs::write(&path, root_first).unwrap();
    fake.set("chain", path.to_str().unwrap());
    let nonce = recorded_nonce();
    let collected = open(&fake).collect(&nonce).unwrap();
    gpu::verify_report(
        &collected[0].report,
        collected[0].cert_chain_pem.as_bytes(),
        Some(&nonce),
        Timestamp::now(),
    )
    .unwrap();
}

#[test]
fn nvml_errors_keep_the_call_and_whose_fault() {
    let fake = fake_with(&[("report_error", "10")]); // NVML_ERROR_TIMEOUT
    let gpus = open(&fake);
    let err = gpus.collect(&recorded_nonce()).unwrap_err();
    match &err {
        GpuCollectError::Nvml { call, index, .. } => {
            assert_eq!(*call, REPORT_CALL);
            assert_eq!(*index, Some(0));
        }
        other => panic!("expected Nvml, got {other:?}"),
    }
    assert!(err.is_retryable());
    assert!(err.to_string().contains(REPORT_CALL), "{err}");

    fake.set("report_error", "4"); // NVML_ERROR_NO_PERMISSION
    let err = gpus.collect(&recorded_nonce()).unwrap_err();
    assert!(
        matches!(err, GpuCollectError::PermissionDenied { call: REPORT_CALL }),
        "{err:?}"
    );
    assert_eq!(err.blame(), Blame::Local);
    assert!(!err.is_retryable());
}

#[test]
fn a_driver_without_cc_settings_is_named_too_old() {
    let fake = FakeNvml::build(&["-DFAKE_NVML_NO_CC_SETTINGS"]);
    let err = NvidiaGpus::open(Some(fake.lib()))
        .unwrap()
        .devices()
        .unwrap_err();
    match &err {
        GpuCollectError::MissingFunction { call, .. } => {
            assert_eq!(*call, "nvmlSystemGetConfComputeSettings");
        }
        other => panic!("expected MissingFunction, got {other:?}"),
    }
    assert!(err.to_string().contains("too old"), "{err}");
}

#[test]
fn collect_is_serialised_across_threads_and_nvml_is_shut_down_on_drop() {
    let fake = fake_with(&[("gpus", "2")]);
    let gpus = Arc::new(open(&fake));
    assert_eq!(fake.initialized(), 1);
    let nonce = recorded_nonce();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let gpus = Arc::clone(&gpus);
            std::thread::spawn(move || {
                for _ in 0..3 {
                    assert_eq!(gpus.collect(&nonce).unwrap().len(), 2);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(fake.calls(REPORT_CALL), 4 * 3 * 2);
    assert_eq!(fake.overlaps(), 0, "two NVML report calls ran at once");
    drop(gpus);
    assert_eq!(fake.initialized(), 0, "NVML not shut down");
}

#[test]
fn debug_output_shows_sizes_not_evidence() {
    let fake = fake_with(&[]);
    let gpus = open(&fake);
    let collected = gpus.collect(&recorded_nonce()).unwrap();
    let debug = format!("{:?} {gpus:?}", collected[0]);
    assert!(debug.contains("report_len: 4117"), "{debug}");
    assert!(!debug.contains("BEGIN CERTIFICATE"), "{debug}");
    let report_hex = hex::encode(&collected[0].report[..16]);
    assert!(!debug.contains(&report_hex), "{debug}");
    assert!(!debug.contains("[17, 224"), "{debug}");
}

//! configfs-tsm collection against a temporary directory driven by an
//! emulated kernel (see `common/tsm_emulator.rs`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use cloister_attestation::snp::{Report, SnpCertChain};
use cloister_attestation::tdx::Quote;
use cloister_attestation_collect::cert_table::{self, CertTableError, HostCert, HostCertKind};
use cloister_attestation_collect::configfs_tsm::{ConfigfsTsm, Provider, TsmError, TsmRequest};
use cloister_attestation_collect::{AutoConfig, Blame, DetectError, EvidenceSource, Tee, Via};
use common::tsm_emulator::{Config, Emulator};
use common::{logs, read};

/// Offset of REPORTDATA in a v4 TDX quote (header 48 + TD report 520).
const TDX_REPORT_DATA: usize = 48 + 520;
/// Offset of REPORT_DATA in an SNP report.
const SNP_REPORT_DATA: usize = 0x50;

fn tdx_quote_for(report_data: &[u8; 64]) -> Vec<u8> {
    let mut quote = read("tdx", "v4-uptodate-b0c06f-dcapqvl", "quote.bin");
    quote[TDX_REPORT_DATA..TDX_REPORT_DATA + 64].copy_from_slice(report_data);
    quote
}

fn snp_report_for(report_data: &[u8; 64]) -> Vec<u8> {
    let mut report = read("snp", "milan-v2-virtee", "report.bin");
    report[SNP_REPORT_DATA..SNP_REPORT_DATA + 64].copy_from_slice(report_data);
    report
}

fn tdx_emulator() -> Emulator {
    Emulator::start(Config::new("tdx_guest", tdx_quote_for))
}

/// The host certificate table built from the milan-v2-virtee certificates.
fn vector_auxblob() -> (Vec<u8>, Vec<HostCert>) {
    let certs = vec![
        HostCert {
            kind: HostCertKind::Vcek,
            data: read("snp", "milan-v2-virtee", "vcek.der"),
        },
        HostCert {
            kind: HostCertKind::Ask,
            data: read("snp", "milan-v2-virtee", "ask.pem"),
        },
        HostCert {
            kind: HostCertKind::Ark,
            data: read("snp", "milan-v2-virtee", "ark.pem"),
        },
    ];
    (cert_table::encode(&certs), certs)
}

fn snp_emulator(auxblob: Option<Vec<u8>>) -> Emulator {
    let mut config = Config::new("sev_guest", snp_report_for);
    config.auxblob = auxblob;
    config.privlevel_floor = 0;
    Emulator::start(config)
}

fn report_data(tag: u8) -> [u8; 64] {
    std::array::from_fn(|i| tag ^ u8::try_from(i).unwrap())
}

#[test]
fn tdx_happy_path_returns_the_quote_for_our_report_data() {
    let emulator = tdx_emulator();
    let tsm = ConfigfsTsm::new(emulator.root());
    let rd = report_data(0x11);
    let (evidence, log) = logs::capture(|| {
        tsm.collect(&TsmRequest::new(rd).expect_provider(Provider::TdxGuest))
            .unwrap()
    });
    assert_eq!(evidence.provider, Provider::TdxGuest);
    assert_eq!(evidence.generation, 1);
    assert!(evidence.host_certs.is_empty());
    // The kernel got exactly our 64 bytes, once.
    let seen = emulator.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].inblob, rd);
    assert_eq!(seen[0].privlevel, None);
    // The outblob is a quote for them.
    let quote = Quote::parse(&evidence.outblob).unwrap();
    assert_eq!(quote.report_data(), &rd);
    // The entry name is ours and unique; logs carry sizes, not contents.
    assert!(seen[0].entry.starts_with("cloister-"));
    assert!(log.contains("outblob_len=5006"), "{log}");
    assert!(!log.contains(&hex::encode(rd)), "{log}");
    assert!(!format!("{evidence:?}").contains(&format!("{:?}", &rd[..8])));
}

#[test]
fn entry_removal_failure_is_only_a_warning() {
    // On a real configfs, rmdir removes the entry with its attributes; in a
    // plain directory it fails (not empty), which must not fail collection.
    let emulator = tdx_emulator();
    let tsm = ConfigfsTsm::new(emulator.root());
    let (result, log) = logs::capture(|| tsm.collect(&TsmRequest::new(report_data(1))));
    result.unwrap();
    assert!(log.contains("WARN"), "{log}");
    assert!(log.contains("could not remove configfs-tsm entry"), "{log}");
    assert_eq!(emulator.entries().len(), 1);
}

#[test]
fn two_collections_use_distinct_entries() {
    let emulator = tdx_emulator();
    let tsm = ConfigfsTsm::new(emulator.root());
    std::thread::scope(|s| {
        for tag in [1u8, 2, 3] {
            let tsm = &tsm;
            s.spawn(move || {
                let rd = report_data(tag);
                let evidence = tsm.collect(&TsmRequest::new(rd)).unwrap();
                assert_eq!(Quote::parse(&evidence.outblob).unwrap().report_data(), &rd);
            });
        }
    });
    let mut entries: Vec<_> = emulator.seen().into_iter().map(|s| s.entry).collect();
    entries.sort();
    entries.dedup();
    assert_eq!(entries.len(), 3);
}

#[test]
fn snp_with_auxblob_returns_the_host_certificates() {
    let (auxblob, certs) = vector_auxblob();
    let emulator = snp_emulator(Some(auxblob));
    let tsm = ConfigfsTsm::new(emulator.root());
    let rd = report_data(0x22);
    let evidence = tsm
        .collect(
            &TsmRequest::new(rd)
                .expect_provider(Provider::SevGuest)
                .privlevel(2),
        )
        .unwrap();
    assert_eq!(evidence.provider, Provider::SevGuest);
    // privlevel and inblob: two writes.
    assert_eq!(evidence.generation, 2);
    let seen = emulator.seen();
    assert_eq!(seen[0].inblob, rd);
    assert_eq!(seen[0].privlevel.as_deref(), Some("2"));

    assert_eq!(evidence.host_certs.0, certs);
    let report = Report::parse(&evidence.outblob).unwrap();
    assert_eq!(report.report_data, rd);
    // The certificates are usable as a chain.
    let hc = &evidence.host_certs;
    SnpCertChain::parse(hc.ark(), hc.ask().unwrap(), hc.vcek().unwrap()).unwrap();
}

#[test]
fn snp_without_auxblob_has_no_certificates() {
    let emulator = snp_emulator(None);
    let evidence = ConfigfsTsm::new(emulator.root())
        .collect(&TsmRequest::new(report_data(3)))
        .unwrap();
    assert!(evidence.host_certs.is_empty());
    assert_eq!(evidence.generation, 1);
}

#[test]
fn wrong_provider_is_refused_before_asking_the_hardware() {
    let emulator = tdx_emulator();
    let err = ConfigfsTsm::new(emulator.root())
        .collect(&TsmRequest::new(report_data(4)).expect_provider(Provider::SevGuest))
        .unwrap_err();
    match &err {
        TsmError::WrongProvider { expected, found } => {
            assert_eq!(expected, &Provider::SevGuest);
            assert_eq!(found, &Provider::TdxGuest);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.blame(), Blame::Caller);
    assert!(emulator.seen().is_empty(), "report data was written");
}

#[test]
fn generation_mismatch_is_concurrent_use() {
    let mut config = Config::new("tdx_guest", tdx_quote_for);
    config.concurrent_writes = 1;
    let emulator = Emulator::start(config);
    let err = ConfigfsTsm::new(emulator.root())
        .collect(&TsmRequest::new(report_data(5)))
        .unwrap_err();
    match &err {
        TsmError::ConcurrentUse {
            expected, found, ..
        } => assert_eq!((*expected, *found), (1, 2)),
        other => panic!("{other:?}"),
    }
    assert!(err.is_retryable());
}

#[test]
fn missing_root_is_not_available() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("sys/kernel/config/tsm/report");
    let tsm = ConfigfsTsm::new(&root);
    assert!(!tsm.is_present());
    let err = tsm.collect(&TsmRequest::new([0; 64])).unwrap_err();
    assert!(
        matches!(&err, TsmError::NotAvailable { root: r } if r == &root),
        "{err:?}"
    );
    assert_eq!(err.blame(), Blame::Platform);
    assert!(err.to_string().contains("6.7"));
}

#[test]
fn a_directory_that_never_gets_attributes_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let tsm = ConfigfsTsm::new(dir.path()).with_attribute_wait(Duration::from_millis(50));
    let err = tsm.collect(&TsmRequest::new([0; 64])).unwrap_err();
    assert!(matches!(err, TsmError::MissingAttribute { .. }), "{err:?}");
}

#[test]
fn attributes_that_appear_late_are_waited_for() {
    let mut config = Config::new("tdx_guest", tdx_quote_for);
    config.populate_delay = Duration::from_millis(300);
    let emulator = Emulator::start(config);
    let evidence = ConfigfsTsm::new(emulator.root())
        .collect(&TsmRequest::new(report_data(6)))
        .unwrap();
    assert_eq!(evidence.generation, 1);
}

#[test]
fn truncated_or_garbage_auxblob_is_a_typed_error() {
    let (auxblob, _) = vector_auxblob();
    type Check = fn(&CertTableError) -> bool;
    let cases: Vec<(Vec<u8>, Check)> = vec![
        // Cut inside the certificate data.
        (auxblob[..auxblob.len() - 10].to_vec(), |e| {
            matches!(e, CertTableError::OutOfBounds { .. })
        }),
        // Cut inside the entries.
        (auxblob[..30].to_vec(), |e| {
            matches!(e, CertTableError::Unterminated { .. })
        }),
        (vec![0xA5; 200], |e| {
            matches!(e, CertTableError::Unterminated { .. })
        }),
    ];
    for (aux, check) in cases {
        let emulator = snp_emulator(Some(aux));
        let err = ConfigfsTsm::new(emulator.root())
            .collect(&TsmRequest::new(report_data(7)))
            .unwrap_err();
        match &err {
            TsmError::AuxBlob(inner) => assert!(check(inner), "{inner:?}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(err.blame(), Blame::Platform);
    }
}

#[test]
fn privilege_levels_are_checked() {
    let mut config = Config::new("sev_guest", snp_report_for);
    config.privlevel_floor = 1;
    let emulator = Emulator::start(config);
    let tsm = ConfigfsTsm::new(emulator.root());
    let err = tsm
        .collect(&TsmRequest::new([0; 64]).privlevel(0))
        .unwrap_err();
    assert!(
        matches!(
            err,
            TsmError::PrivlevelBelowFloor {
                requested: 0,
                floor: 1
            }
        ),
        "{err:?}"
    );
    let err = tsm
        .collect(&TsmRequest::new([0; 64]).privlevel(4))
        .unwrap_err();
    assert!(matches!(err, TsmError::InvalidPrivlevel { requested: 4 }));

    let tdx = tdx_emulator();
    let err = ConfigfsTsm::new(tdx.root())
        .collect(&TsmRequest::new([0; 64]).privlevel(1))
        .unwrap_err();
    assert!(
        matches!(err, TsmError::PrivlevelUnsupported { .. }),
        "{err:?}"
    );
}

#[test]
fn auto_detection_uses_the_provider() {
    for (emulator, tee) in [
        (tdx_emulator(), Tee::Tdx),
        (snp_emulator(Some(vector_auxblob().0)), Tee::SevSnp),
    ] {
        let config = AutoConfig {
            configfs_root: emulator.root().to_path_buf(),
            vmpl: None,
        };
        let source = EvidenceSource::detect(&config).unwrap();
        assert_eq!(source.tee(), tee);
        let rd = report_data(8);
        let collected = source.collect(&rd).unwrap();
        assert_eq!(collected.tee, tee);
        assert_eq!(collected.via, Via::ConfigfsTsm);
        assert_eq!(emulator.seen().last().unwrap().inblob, rd);
        assert_eq!(
            collected.host_certs.len(),
            if tee == Tee::SevSnp { 3 } else { 0 }
        );
    }
}

#[test]
fn no_tee_anywhere_says_how_to_develop() {
    if std::path::Path::new("/dev/sev-guest").exists()
        || std::path::Path::new("/dev/tdx_guest").exists()
    {
        eprintln!("skipped: this machine has a TEE device");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = AutoConfig {
        configfs_root: dir.path().join("absent"),
        vmpl: None,
    };
    let err = EvidenceSource::detect(&config).unwrap_err();
    assert!(matches!(err, DetectError::NoTee { .. }), "{err:?}");
    assert!(err.to_string().contains("--tee simulated"), "{err}");

    let simulated = EvidenceSource::simulated([1; 48]);
    let collected = simulated.collect(&[2; 64]).unwrap();
    assert_eq!(collected.tee, Tee::Simulated);
    let parsed =
        cloister_attestation::simulated::SimulatedEvidence::parse(&collected.evidence).unwrap();
    assert_eq!(parsed.report_data, [2; 64]);
}

#[test]
fn an_empty_report_is_a_typed_error() {
    let emulator = Emulator::start(Config::new("tdx_guest", |_| Vec::new()));
    let err = ConfigfsTsm::new(emulator.root())
        .collect(&TsmRequest::new(report_data(9)))
        .unwrap_err();
    assert!(matches!(err, TsmError::EmptyOutblob { .. }), "{err:?}");
    assert_eq!(err.blame(), Blame::Platform);
    assert!(err.is_retryable());
}

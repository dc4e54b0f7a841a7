//! Collateral sources against a local server that answers like Intel PCS and
//! AMD KDS with the recorded vectors' collateral. Never touches the internet.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloister_attestation::bundle::{Base64Bytes, BundleCerts, EvidenceBundle};
use cloister_attestation::snp::{Product, SnpCertChain, verify_report};
use cloister_attestation::tdx::TdxCollateral;
use cloister_attestation::{Platform, Policy, Timestamp};
use cloister_attestation_collect::Blame;
use cloister_attestation_collect::collateral::{
    CachingCollateral, CollateralError, CollateralSource, FileCollateral, HttpCollateral,
    HttpConfig, OwnCollateral, PckCa, SnpKeyKind, TdxCollateralKey, TransportKind,
    collateral_expiry,
};
use common::http_server::{Reply, Server};
use common::{expected, logs, read, time, verify_at};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

const TDX: &str = "v4-uptodate-b0c06f-dcapqvl";
const MILAN: &str = "milan-v2-virtee";
const TURIN: &str = "turin-v5-oak";
const VLEK: &str = "milan-v3-vlek-aws-trustee";

/// Requests that should fail, by target prefix, with this status.
type Failures = Arc<Mutex<Vec<(String, u16)>>>;

fn encoded(pem: &str) -> String {
    utf8_percent_encode(pem, NON_ALPHANUMERIC).to_string()
}

/// Answers PCS requests for the TDX vector and KDS requests for the SNP
/// vectors (each product served from its vector directory).
fn pcs_and_kds(failures: Failures) -> Server {
    let c: Value = serde_json::from_slice(&read("tdx", TDX, "collateral.json")).unwrap();
    let s = |k: &str| c[k].as_str().unwrap().to_owned();
    let (tcb, qe) = (s("tcb_info"), s("qe_identity"));
    let tcb_body = format!(
        r#"{{"tcbInfo":{tcb},"signature":"{}"}}"#,
        s("tcb_info_signature")
    );
    let qe_body = format!(
        r#"{{"enclaveIdentity":{qe},"signature":"{}"}}"#,
        s("qe_identity_signature")
    );
    let pck_crl = hex::decode(s("pck_crl")).unwrap();
    let root_crl = hex::decode(s("root_ca_crl")).unwrap();
    let (tcb_chain, qe_chain, crl_chain) = (
        encoded(&s("tcb_info_issuer_chain")),
        encoded(&s("qe_identity_issuer_chain")),
        encoded(&s("pck_crl_issuer_chain")),
    );
    let snp = |name: &str, file: &str| read("snp", name, file);
    let chain = |name: &str, ask: &str| {
        let mut pem = snp(name, ask);
        pem.extend_from_slice(&snp(name, "ark.pem"));
        pem
    };
    let milan_vcek = snp(MILAN, "vcek.der");
    let turin_vcek = snp(TURIN, "vcek.der");
    let (milan_chain, turin_chain, vlek_chain) = (
        chain(MILAN, "ask.pem"),
        chain(TURIN, "ask.pem"),
        chain(VLEK, "asvk.pem"),
    );

    Server::start(move |target| {
        if let Some((_, status)) = failures
            .lock()
            .unwrap()
            .iter()
            .find(|(prefix, _)| target.starts_with(prefix.as_str()))
        {
            return Reply::status(*status);
        }
        match target {
            "/tdx/certification/v4/tcb?fmspc=B0C06F000000" => {
                Reply::ok(tcb_body.clone()).header("TCB-Info-Issuer-Chain", &tcb_chain)
            }
            "/tdx/certification/v4/qe/identity" => {
                Reply::ok(qe_body.clone()).header("SGX-Enclave-Identity-Issuer-Chain", &qe_chain)
            }
            "/sgx/certification/v4/pckcrl?ca=platform&encoding=der" => {
                Reply::ok(pck_crl.clone()).header("SGX-PCK-CRL-Issuer-Chain", &crl_chain)
            }
            "/IntelSGXRootCA.der" => Reply::ok(root_crl.clone()),
            "/vcek/v1/Milan/cert_chain" => Reply::ok(milan_chain.clone()),
            "/vcek/v1/Turin/cert_chain" => Reply::ok(turin_chain.clone()),
            "/vlek/v1/Milan/cert_chain" => Reply::ok(vlek_chain.clone()),
            "/vcek/v1/Milan/crl" => Reply::ok(synthetic_crl()),
            t if t.starts_with("/vcek/v1/Milan/") => Reply::ok(milan_vcek.clone()),
            t if t.starts_with("/vcek/v1/Turin/") => Reply::ok(turin_vcek.clone()),
            _ => Reply::status(404),
        }
    })
}

/// A CRL in AMD's format, signed by a test ARK (the attestation crate's
/// synthetic test data): fetching and caching do not check signatures.
fn synthetic_crl() -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/test-ark-crl.der"),
    )
    .unwrap()
}

fn config(server: &Server) -> HttpConfig {
    HttpConfig {
        pcs_base_url: server.url(),
        root_ca_crl_url: format!("{}/IntelSGXRootCA.der", server.url()),
        kds_base_url: format!("{}/", server.url()),
        timeout: Duration::from_secs(10),
        proxy_from_env: false,
    }
}

fn setup() -> (Server, Failures, HttpCollateral) {
    let failures = Failures::default();
    let server = pcs_and_kds(failures.clone());
    let http = HttpCollateral::new(config(&server));
    (server, failures, http)
}

fn vector_collateral() -> TdxCollateral {
    TdxCollateral::from_json(&read("tdx", TDX, "collateral.json")).unwrap()
}

#[test]
fn pck_certificates_name_fmspc_and_ca() {
    for name in [
        TDX,
        "v4-outofdate-00806f-automata",
        "v4-uptodate-20a06f-near",
        "v5-uptodate-90c06f-gotdxguest",
    ] {
        let key = TdxCollateralKey::from_quote(&read("tdx", name, "quote.bin")).unwrap();
        let exp = expected("tdx", name);
        assert_eq!(
            key.fmspc_hex(),
            exp["pck"]["fmspc"].as_str().unwrap().to_uppercase()
        );
        let ca = match exp["pck"]["issuer_ca"].as_str().unwrap() {
            "Intel SGX PCK Platform CA" => PckCa::Platform,
            "Intel SGX PCK Processor CA" => PckCa::Processor,
            other => panic!("{other}"),
        };
        assert_eq!(key.ca, ca, "{name}");
    }
    let err = TdxCollateralKey::from_quote(b"not a quote").unwrap_err();
    assert!(matches!(err, CollateralError::Evidence(_)));
    assert_eq!(err.blame(), Blame::Caller);
}

#[test]
fn pcs_collateral_equals_the_vector_and_verifies_the_quote() {
    let (server, _, http) = setup();
    let quote = read("tdx", TDX, "quote.bin");
    let at = verify_at("tdx", TDX);
    let fetched = http.tdx_collateral_for_quote(&quote, at).unwrap();

    let vector = vector_collateral();
    assert_eq!(fetched.tcb_info_json(), vector.tcb_info_json());
    assert_eq!(fetched.qe_identity_json(), vector.qe_identity_json());
    assert_eq!(fetched.fmspc(), vector.fmspc());
    assert_eq!(fetched.to_json(), vector.to_json());
    assert_eq!(fetched, vector);

    let verdict =
        cloister_attestation::tdx::appraise(&quote, &fetched, &Policy::strict(), at, None).unwrap();
    assert!(verdict.accepted, "{:?}", verdict.reasons);

    assert_eq!(
        server.hits(),
        [
            "/tdx/certification/v4/tcb?fmspc=B0C06F000000",
            "/tdx/certification/v4/qe/identity",
            "/sgx/certification/v4/pckcrl?ca=platform&encoding=der",
            "/IntelSGXRootCA.der",
        ]
    );
}

#[test]
fn kds_urls_carry_product_hwid_and_spls_from_the_report() {
    let (server, _, http) = setup();

    // Milan v2 report: no CPUID, so the product is given.
    let report = read("snp", MILAN, "report.bin");
    let certs = http
        .snp_certs_for_report(&report, Some(Product::Milan))
        .unwrap();
    let chip_id = expected("snp", MILAN)["report"]["chip_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        server.hits(),
        [
            format!("/vcek/v1/Milan/{chip_id}?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115"),
            "/vcek/v1/Milan/cert_chain".to_owned(),
        ]
    );
    assert_eq!(certs.vek, read("snp", MILAN, "vcek.der"));
    verify_report(&report, &certs.to_chain().unwrap(), verify_at("snp", MILAN)).unwrap();

    // Without the product a v2 report is a typed error.
    let err = http.snp_certs_for_report(&report, None).unwrap_err();
    assert!(matches!(err, CollateralError::UnknownProduct(_)), "{err:?}");

    // Turin v5: product from CPUID, 8-byte hwID, fmcSPL.
    let report = read("snp", TURIN, "report.bin");
    let certs = http.snp_certs_for_report(&report, None).unwrap();
    let chip_id = expected("snp", TURIN)["report"]["chip_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let hits = server.hits();
    assert_eq!(
        hits[hits.len() - 2],
        format!(
            "/vcek/v1/Turin/{}?blSPL=01&teeSPL=00&snpSPL=02&ucodeSPL=71&fmcSPL=00",
            &chip_id[..16]
        )
    );
    let chain: SnpCertChain = certs.to_chain().unwrap();
    verify_report(&report, &chain, verify_at("snp", TURIN)).unwrap();
}

#[test]
fn vlek_reports_need_the_host_certificate() {
    let (server, _, http) = setup();
    let err = http
        .snp_certs_for_report(&read("snp", VLEK, "report.bin"), None)
        .unwrap_err();
    assert!(matches!(err, CollateralError::VlekNotOnKds), "{err:?}");
    assert!(!err.is_retryable());
    assert!(server.hits().is_empty());
    // The ASVK chain itself is on KDS.
    let chain = http.snp_chain(Product::Milan, SnpKeyKind::Vlek).unwrap();
    assert_eq!(server.hits(), ["/vlek/v1/Milan/cert_chain"]);
    SnpCertChain::parse(Some(&chain.ark), &chain.ask, &read("snp", VLEK, "vlek.der")).unwrap();
}

#[test]
fn cache_serves_until_expiry_then_refetches() {
    let (server, _, http) = setup();
    let dir = tempfile::tempdir().unwrap();
    let cache = CachingCollateral::new(http, dir.path().join("collateral"));
    let quote = read("tdx", TDX, "quote.bin");
    let at = verify_at("tdx", TDX);

    let first = cache.tdx_collateral_for_quote(&quote, at).unwrap();
    assert_eq!(server.hits().len(), 4);
    let second = cache.tdx_collateral_for_quote(&quote, at).unwrap();
    assert_eq!(
        server.hits().len(),
        4,
        "second fetch was not from the cache"
    );
    assert_eq!(first, second);
    assert_eq!(second, vector_collateral());
    assert!(
        dir.path()
            .join("collateral/tdx/B0C06F000000-platform.json")
            .is_file()
    );

    // Expiry: the PCK CRL's nextUpdate is the earliest of the four.
    let expires = collateral_expiry(&first).unwrap();
    assert_eq!(expires, time("2025-07-19T10:00:35Z"));
    cache
        .tdx_collateral_for_quote(&quote, expires.minus_secs(1))
        .unwrap();
    assert_eq!(server.hits().len(), 4);
    cache.tdx_collateral_for_quote(&quote, expires).unwrap();
    assert_eq!(server.hits().len(), 8, "expired entry was not refetched");
    // And the refreshed entry is served again.
    cache.tdx_collateral_for_quote(&quote, at).unwrap();
    assert_eq!(server.hits().len(), 8);

    // AMD certificates are cached per request, indefinitely.
    let report = read("snp", MILAN, "report.bin");
    for _ in 0..3 {
        cache
            .snp_certs_for_report(&report, Some(Product::Milan))
            .unwrap();
    }
    assert_eq!(server.count("/vcek/v1/Milan/"), 2);
    assert_eq!(server.count("/vcek/v1/Milan/cert_chain"), 1);

    // No temporary files are left behind.
    let leftovers: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn corrupt_cache_entries_are_misses_and_are_overwritten() {
    let (server, _, http) = setup();
    let dir = tempfile::tempdir().unwrap();
    let cache = CachingCollateral::new(http, dir.path());
    let quote = read("tdx", TDX, "quote.bin");
    let at = verify_at("tdx", TDX);
    cache.tdx_collateral_for_quote(&quote, at).unwrap();
    let report = read("snp", MILAN, "report.bin");
    cache
        .snp_certs_for_report(&report, Some(Product::Milan))
        .unwrap();
    let hits = server.hits().len();

    let tdx_entry = dir.path().join("tdx/B0C06F000000-platform.json");
    let good = std::fs::read(&tdx_entry).unwrap();
    // A half-written (truncated) entry, and a VCEK entry of garbage.
    std::fs::write(&tdx_entry, &good[..good.len() / 2]).unwrap();
    let vcek_dir = dir.path().join("amd/Milan");
    let vcek_entry = std::fs::read_dir(&vcek_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "der"))
        .unwrap();
    std::fs::write(&vcek_entry, b"garbage").unwrap();

    let ((tdx, snp), log) = logs::capture(|| {
        (
            cache.tdx_collateral_for_quote(&quote, at).unwrap(),
            cache
                .snp_certs_for_report(&report, Some(Product::Milan))
                .unwrap(),
        )
    });
    assert_eq!(tdx, vector_collateral());
    assert_eq!(snp.vek, read("snp", MILAN, "vcek.der"));
    assert_eq!(server.hits().len(), hits + 5, "{:?}", server.hits());
    assert_eq!(
        log.matches("corrupt collateral cache entry").count(),
        2,
        "{log}"
    );
    // Overwritten with good data.
    assert_eq!(std::fs::read(&tdx_entry).unwrap(), good);
    assert!(std::fs::read(&vcek_entry).unwrap() == read("snp", MILAN, "vcek.der"));
}

#[test]
fn file_collateral_reads_what_the_cache_wrote() {
    let (_server, _, http) = setup();
    let dir = tempfile::tempdir().unwrap();
    let cache = CachingCollateral::new(http, dir.path());
    let quote = read("tdx", TDX, "quote.bin");
    let report = read("snp", MILAN, "report.bin");
    let at = verify_at("tdx", TDX);
    let cached = cache.tdx_collateral_for_quote(&quote, at).unwrap();
    let certs = cache
        .snp_certs_for_report(&report, Some(Product::Milan))
        .unwrap();

    let files = FileCollateral::new(dir.path());
    assert_eq!(files.tdx_collateral_for_quote(&quote, at).unwrap(), cached);
    assert_eq!(
        files
            .snp_certs_for_report(&report, Some(Product::Milan))
            .unwrap(),
        certs
    );

    let empty = FileCollateral::new(dir.path().join("nothing"));
    let err = empty.tdx_collateral_for_quote(&quote, at).unwrap_err();
    assert!(matches!(err, CollateralError::NotFound { .. }), "{err:?}");
    assert_eq!(err.blame(), Blame::Local);

    // What a verifier (router, client) supplies for a bundle, and reads back
    // from the attestation log.
    let bundle = |platform, evidence: &[u8]| EvidenceBundle {
        version: 1,
        platform,
        evidence: Base64Bytes(evidence.to_vec()),
        certs: BundleCerts::default(),
        gpu: Vec::new(),
        identity: serde_json::json!({}),
        nonce: "00".repeat(32),
    };
    let own = OwnCollateral::fetch(&files, &bundle(Platform::Tdx, &quote), at).unwrap();
    assert_eq!(own.tdx.as_ref(), Some(&cached));
    let logged = own.to_json().unwrap();
    let back = OwnCollateral::from_json(&logged).unwrap();
    assert_eq!(back.tdx.as_ref(), Some(&cached));
    assert!(back.options([7; 32]).tdx_collateral.is_some());
    let none = OwnCollateral::fetch(&files, &bundle(Platform::Simulated, b"x"), at).unwrap();
    assert!(none.tdx.is_none() && none.amd_crl.is_none() && none.to_json().is_none());
    let missing = OwnCollateral::fetch(&empty, &bundle(Platform::SevSnp, &report), at).unwrap_err();
    // (This Milan report predates the CPUID fields: no product, so no CRL.)
    assert!(
        missing.contains("AMD CRL") || missing.contains("no known product"),
        "{missing}"
    );
    assert!(OwnCollateral::from_json("{\"other\": 1}").is_err());
}

#[test]
fn server_errors_say_whether_to_retry() {
    let (_server, failures, http) = setup();
    let quote = read("tdx", TDX, "quote.bin");
    let at = Timestamp::from_unix(0);

    failures
        .lock()
        .unwrap()
        .push(("/tdx/certification/v4/tcb".into(), 500));
    let err = http.tdx_collateral_for_quote(&quote, at).unwrap_err();
    assert!(
        matches!(err, CollateralError::Status { status: 500, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(err.blame(), Blame::Server);

    failures.lock().unwrap()[0].1 = 404;
    let err = http.tdx_collateral_for_quote(&quote, at).unwrap_err();
    assert!(
        matches!(err, CollateralError::Status { status: 404, .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());

    failures.lock().unwrap().clear();
    failures
        .lock()
        .unwrap()
        .push(("/vcek/v1/Milan/cert_chain".into(), 503));
    let err = http
        .snp_certs_for_report(&read("snp", MILAN, "report.bin"), Some(Product::Milan))
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

#[test]
fn malformed_answers_are_not_retryable() {
    let server = Server::start(|target| match target {
        t if t.starts_with("/tdx/certification/v4/tcb") => Reply::ok("{\"tcbInfo\": 5}"),
        t if t.starts_with("/vcek/v1/Milan/cert_chain") => Reply::ok("-----BEGIN nothing"),
        t if t.starts_with("/vcek/") => Reply::ok("not a certificate"),
        _ => Reply::status(404),
    });
    let http = HttpCollateral::new(config(&server));
    let quote = read("tdx", TDX, "quote.bin");
    let err = http
        .tdx_collateral_for_quote(&quote, Timestamp::from_unix(0))
        .unwrap_err();
    assert!(
        matches!(err, CollateralError::MalformedResponse { .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(err.blame(), Blame::Server);

    let report = read("snp", MILAN, "report.bin");
    let err = http
        .snp_certs_for_report(&report, Some(Product::Milan))
        .unwrap_err();
    assert!(
        matches!(err, CollateralError::MalformedResponse { .. }),
        "{err:?}"
    );
    let err = http
        .snp_chain(Product::Milan, SnpKeyKind::Vcek)
        .unwrap_err();
    assert!(
        matches!(err, CollateralError::MalformedResponse { .. }),
        "{err:?}"
    );

    // A signed body without its issuer chain header.
    let c: Value = serde_json::from_slice(&read("tdx", TDX, "collateral.json")).unwrap();
    let body = format!(
        r#"{{"tcbInfo":{},"signature":"{}"}}"#,
        c["tcb_info"].as_str().unwrap(),
        c["tcb_info_signature"].as_str().unwrap()
    );
    let server = Server::start(move |_| Reply::ok(body.clone()));
    let err = HttpCollateral::new(config(&server))
        .tdx_collateral_for_quote(&quote, Timestamp::from_unix(0))
        .unwrap_err();
    match err {
        CollateralError::MalformedResponse { what, reason, .. } => {
            assert_eq!(what, "issuer chain header");
            assert!(reason.contains("TCB-Info-Issuer-Chain"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn network_failures_are_retryable() {
    // Nothing listens on a port we bound and released.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut cfg = HttpConfig {
        pcs_base_url: format!("http://127.0.0.1:{port}"),
        root_ca_crl_url: format!("http://127.0.0.1:{port}/crl"),
        kds_base_url: format!("http://127.0.0.1:{port}"),
        timeout: Duration::from_secs(5),
        proxy_from_env: false,
    };
    let quote = read("tdx", TDX, "quote.bin");
    let err = HttpCollateral::new(cfg.clone())
        .tdx_collateral_for_quote(&quote, Timestamp::from_unix(0))
        .unwrap_err();
    assert!(
        matches!(
            err,
            CollateralError::Transport {
                kind: TransportKind::Connect,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(err.blame(), Blame::Network);

    // A server that accepts and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let _hold = std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().take(1).collect();
        std::thread::sleep(Duration::from_secs(3));
        drop(held);
    });
    cfg.pcs_base_url = format!("http://{addr}");
    cfg.timeout = Duration::from_millis(300);
    let err = HttpCollateral::new(cfg)
        .tdx_collateral_for_quote(&quote, Timestamp::from_unix(0))
        .unwrap_err();
    assert!(
        matches!(
            err,
            CollateralError::Transport {
                kind: TransportKind::Timeout,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

#[test]
fn amd_crls_are_fetched_from_kds_and_cached_until_their_next_update() {
    let (server, _, http) = setup();
    let dir = tempfile::tempdir().unwrap();
    let cache = CachingCollateral::new(http, dir.path().join("collateral"));
    let now = time("2030-01-01T00:00:00Z");
    for _ in 0..3 {
        let crl = cache
            .snp_crl(Product::Milan, SnpKeyKind::Vcek, now)
            .unwrap();
        assert_eq!(crl, synthetic_crl());
    }
    assert_eq!(server.hits(), ["/vcek/v1/Milan/crl"]);
    // Past its nextUpdate (2126) the cached copy is refetched.
    cache
        .snp_crl(
            Product::Milan,
            SnpKeyKind::Vcek,
            time("2127-01-01T00:00:00Z"),
        )
        .unwrap();
    assert_eq!(server.count("/vcek/v1/Milan/crl"), 2);
    // The cache directory reads back as offline files.
    let files = FileCollateral::new(dir.path().join("collateral"));
    assert_eq!(
        files
            .snp_crl(Product::Milan, SnpKeyKind::Vcek, now)
            .unwrap(),
        synthetic_crl()
    );
    // What is not a CRL is refused and never cached.
    let err = cache
        .snp_crl(Product::Turin, SnpKeyKind::Vcek, now)
        .unwrap_err();
    assert!(
        matches!(err, CollateralError::MalformedResponse { what: "CRL", .. })
            && !err.is_retryable(),
        "{err}"
    );
    assert!(
        !dir.path()
            .join("collateral/amd/Turin/vcek-crl.der")
            .exists()
    );
}

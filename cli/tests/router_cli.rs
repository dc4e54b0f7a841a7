//! `cloister router`, `cloister keys` and `cloister accounts` as an operator
//! runs them: configuration precedence and redaction, refusing to start
//! without a fit policy, TLS on the listener, clean stop on SIGTERM, and the
//! ledger admin commands.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

fn cloister() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloister"));
    for var in [
        "DATABASE_URL",
        "CLOISTER_DATA_DIR",
        "CLOISTER_POLICY",
        "CLOISTER_JOIN_TOKENS",
    ] {
        command.env_remove(var);
    }
    command
}

fn run(args: &[&str], data_dir: &Path) -> Output {
    cloister()
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn keys_and_accounts_manage_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let created = run(
        &["keys", "create", "--account", "acme", "--credit", "500"],
        dir.path(),
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    let key = text(&created.stdout).trim().to_owned();
    assert!(key.starts_with("sk-cloister-"), "{key}");
    assert!(text(&created.stderr).contains("shown only now"));

    let payer = "0x00000000000000000000000000000000000000aa";
    let second = run(
        &[
            "keys",
            "create",
            "--account",
            "acme",
            "--credit",
            "100",
            "--payer",
            payer,
        ],
        dir.path(),
    );
    assert!(second.status.success(), "{}", text(&second.stderr));

    let listed = run(&["accounts", "--json"], dir.path());
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let accounts: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(accounts[0]["account"], "acme");
    assert_eq!(accounts[0]["balance"], 600);
    assert_eq!(accounts[0]["active_keys"], 2);
    let table = run(&["accounts"], dir.path());
    assert!(text(&table.stdout).contains("acme"));

    let revoked = run(&["keys", "revoke", &key], dir.path());
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    let again = run(&["keys", "revoke", &key], dir.path());
    assert_eq!(again.status.code(), Some(1), "nothing left to revoke");
    let listed = run(&["accounts", "--json"], dir.path());
    let accounts: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(accounts[0]["active_keys"], 1);

    let bad = run(
        &["keys", "create", "--account", "no spaces allowed"],
        dir.path(),
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("account"),
        "{}",
        text(&bad.stderr)
    );
    let the_db = std::fs::read(dir.path().join("router.db")).unwrap();
    assert!(
        !the_db.windows(key.len()).any(|w| w == key.as_bytes()),
        "the key itself is not stored"
    );
}

#[test]
fn print_config_merges_file_env_and_flags_and_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("router.toml");
    std::fs::write(&file, "requests_per_minute = 5\ntokens_per_minute = 77\n").unwrap();
    let out = cloister()
        .args(["router", "--print-config", "--config"])
        .arg(&file)
        .args([
            "--requests-per-minute",
            "9",
            "--join-token",
            "a-provider-token-0123456789",
        ])
        .env(
            "DATABASE_URL",
            "postgres://cloister:s3cret-pw@db:5432/ledger",
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("requests_per_minute = 9"),
        "flag beats file:\n{shown}"
    );
    assert!(
        shown.contains("tokens_per_minute = 77"),
        "file beats default:\n{shown}"
    );
    assert!(
        shown.contains("postgres://cloister:"),
        "env is applied:\n{shown}"
    );
    assert!(
        !shown.contains("s3cret-pw") && !shown.contains("a-provider-token"),
        "redacted:\n{shown}"
    );
    let bad = cloister()
        .args(["router", "--print-config", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn refuses_to_start_without_a_policy_fit_for_serving() {
    let dir = tempfile::tempdir().unwrap();
    let out = cloister()
        .args(["router", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--policy"),
        "{}",
        text(&out.stderr)
    );
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "platforms = [\"tdx\"]\n").unwrap();
    let out = cloister()
        .args(["router", "--listen", "127.0.0.1:0", "--policy"])
        .arg(&policy)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not pinned") || text(&out.stderr).contains("pin"),
        "{}",
        text(&out.stderr)
    );
}

/// A test CA and a certificate for 127.0.0.1 it signed
/// (scripts/tests/test-pki.sh). Returns (CA, certificate, key).
fn test_pki(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/tests/test-pki.sh");
    assert!(Command::new(script).arg(dir).status().unwrap().success());
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

#[test]
fn serves_tls_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki(dir.path());
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "platforms = [\"tdx\"]\n[tdx]\nmrtd = [\"{}\"]\n",
            "00".repeat(48)
        ),
    )
    .unwrap();
    let mut child = cloister()
        .args([
            "router",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--policy",
        ])
        .arg(&policy)
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().expect("the router printed nothing").unwrap();
    let addr = line
        .strip_prefix("cloister router listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&ca).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let health: serde_json::Value = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .unwrap();
        client
            .get(format!("https://{addr}/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(health["status"], "ok");
    let plain = std::net::TcpStream::connect(&addr).unwrap();
    drop(plain);

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    let first = log.lines().next().unwrap();
    let parsed: serde_json::Value =
        serde_json::from_str(first).unwrap_or_else(|e| panic!("JSON logs: {e}: {first}"));
    assert!(parsed.get("level").is_some());
    assert!(log.contains("router stopped"), "{log}");
}

//! Crash hygiene, played out in child processes (this test binary run again
//! with one test selected and an environment variable telling it to be the
//! child), so the hook and the limits never touch the parent:
//! a panic carrying request text prints only its location; after hardening
//! the process is not dumpable and its core limit is zero.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;

use cloister_enclave::hardening;

const CHILD: &str = "CLOISTER_HARDENING_TEST_CHILD";
const CANARY: &str = "SECRET-PROMPT-CANARY: tell me about the moon";

/// Runs test `name` of this binary in a child with `CHILD=role`.
fn child(name: &str, role: &str) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, role)
        .output()
        .unwrap()
}

fn role() -> Option<String> {
    std::env::var(CHILD).ok()
}

#[test]
fn a_panic_prints_its_location_never_its_message() {
    match role().as_deref() {
        Some("main-thread") => {
            hardening::install_panic_hook();
            let prompt = CANARY.to_owned();
            panic!("failed while handling {prompt}");
        }
        Some("other-thread") => {
            hardening::install_panic_hook();
            let worker = std::thread::Builder::new()
                .name("engine-worker".into())
                .spawn(|| {
                    let prompt = CANARY.to_owned();
                    std::hint::black_box(Err::<u32, String>(prompt)).unwrap()
                })
                .unwrap();
            let _ = worker.join();
            return;
        }
        Some(_) => return,
        None => {}
    }
    for (role, thread) in [
        ("main-thread", None),
        ("other-thread", Some("engine-worker")),
    ] {
        let out = child("a_panic_prints_its_location_never_its_message", role);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stderr.contains("SECRET-PROMPT-CANARY"), "{role}: {stderr}");
        assert!(!stdout.contains("SECRET-PROMPT-CANARY"), "{role}: {stdout}");
        assert!(
            stderr.contains("internal error (panic) at"),
            "{role}: {stderr}"
        );
        assert!(stderr.contains("hardening.rs:"), "{role}: {stderr}");
        if let Some(thread) = thread {
            assert!(stderr.contains(thread), "{role}: {stderr}");
        }
    }
}

#[test]
fn the_hook_is_needed_the_default_one_leaks() {
    // Without the hook, the same panic prints the canary: what the hook
    // prevents is real.
    if role().as_deref() == Some("default-hook") {
        panic!("failed while handling {CANARY}");
    }
    if role().is_some() {
        return;
    }
    let out = child("the_hook_is_needed_the_default_one_leaks", "default-hook");
    assert!(String::from_utf8_lossy(&out.stderr).contains("SECRET-PROMPT-CANARY"));
}

#[test]
fn hardening_turns_core_dumps_off_and_makes_the_process_non_dumpable() {
    match role().as_deref() {
        Some("harden") => {
            assert!(hardening::is_dumpable(), "a fresh process is dumpable");
            hardening::harden_process().unwrap();
            assert!(!hardening::is_dumpable());
            assert_eq!(hardening::core_limit(), (0, 0));
            // The hard limit is zero too: it cannot be raised back.
            println!("HARDENED-OK");
            return;
        }
        Some(_) => return,
        None => {}
    }
    let out = child(
        "hardening_turns_core_dumps_off_and_makes_the_process_non_dumpable",
        "harden",
    );
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("HARDENED-OK"),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

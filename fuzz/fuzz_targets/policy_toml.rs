//! `Policy::from_toml` on arbitrary (UTF-8) text: never panics, never
//! accepts `Revoked`, and parsing is deterministic.
#![no_main]

use cloister_attestation::Policy;
use cloister_attestation::tdx::TcbStatus;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Policy::from_toml(text) {
        Ok(policy) => {
            assert!(!policy.tdx.accept_tcb.contains(&TcbStatus::Revoked));
            assert_eq!(Policy::from_toml(text).ok(), Some(policy));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});

//! `Policy::from_toml` on arbitrary (UTF-8) text: never panics, never
//! accepts `Revoked` or a non-hardware platform, is fit for serving only
//! when every allowed platform pins its code or says it need not, and
//! parsing is deterministic.
#![no_main]

use cloister_attestation::policy::HARDWARE_PLATFORMS;
use cloister_attestation::{Platform, Policy};
use cloister_attestation::tdx::TcbStatus;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Policy::from_toml(text) {
        Ok(policy) => {
            assert!(!policy.tdx.accept_tcb.contains(&TcbStatus::Revoked));
            assert!(!policy.platforms.is_empty());
            assert!(policy.platforms.iter().all(|p| HARDWARE_PLATFORMS.contains(p)));
            // A policy that pins nothing for an allowed platform, and does
            // not say so, is never fit for serving.
            if policy.check_fit_for_serving().is_ok() {
                for p in &policy.platforms {
                    let said_so = match p {
                        Platform::Tdx => policy.tdx.allow_any_measurement,
                        _ => policy.sev_snp.allow_any_measurement,
                    };
                    assert!(policy.pins_code(*p) || said_so, "{policy:?}");
                }
            }
            assert_eq!(Policy::from_toml(text).ok(), Some(policy));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});

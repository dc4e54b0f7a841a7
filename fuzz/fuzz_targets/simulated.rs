//! `simulated::SimulatedEvidence::parse` and `simulated::appraise` on
//! arbitrary bytes: parse succeeds only on exactly `LEN` bytes with the
//! magic; the strict policy never accepts simulated evidence; a permissive
//! one accepts only a valid self-signature. Also checks that `encode` output
//! always parses and verifies.
#![no_main]

use std::sync::LazyLock;

use cloister_attestation::simulated::{self, LEN, MAGIC, SimulatedEvidence};
use cloister_attestation::{Platform, Policy, Timestamp};
use cloister_attestation_fuzz::check_verdict;
use libfuzzer_sys::fuzz_target;

static KEY: LazyLock<p256::ecdsa::SigningKey> =
    LazyLock::new(|| p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).expect("valid scalar"));
static DEV: LazyLock<Policy> = LazyLock::new(|| {
    let mut p = Policy::strict();
    p.simulated.allow = true;
    p
});
const NOW: Timestamp = Timestamp::from_unix(1_800_000_000);

fuzz_target!(|data: &[u8]| {
    match SimulatedEvidence::parse(data) {
        Ok(e) => {
            assert_eq!(
                data.len(),
                LEN,
                "parsed simulated evidence that is not {LEN} bytes"
            );
            assert_eq!(&data[..8], MAGIC);
            assert_eq!(&e.measurement[..], &data[12..60]);
            assert_eq!(&e.report_data[..], &data[60..124]);
            assert_eq!(&e.public_key[..], &data[124..189]);
            assert_eq!(&e.signature[..], &data[189..]);
            let self_signed = e.verify_self_signature().is_ok();

            let strict = simulated::appraise(data, &Policy::strict(), NOW, None).expect("parsed");
            check_verdict(&strict);
            assert!(!strict.accepted && strict.simulated && strict.platform == Platform::Simulated);
            let dev = simulated::appraise(data, &DEV, NOW, Some(&e.report_data)).expect("parsed");
            check_verdict(&dev);
            assert_eq!(dev.accepted, self_signed);
            assert!(dev.simulated);
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(simulated::appraise(data, &DEV, NOW, None).is_err());
        }
    }

    // Whatever measurement and report data, encoding yields evidence that
    // parses back to them and verifies. (Only for 112-byte inputs: signing
    // is the slowest thing here.)
    if let (112, Some(m), Some(rd)) = (data.len(), data.get(..48), data.get(48..112)) {
        let m: [u8; 48] = m.try_into().unwrap();
        let rd: [u8; 64] = rd.try_into().unwrap();
        let raw = simulated::encode(&m, &rd, &KEY);
        let e = SimulatedEvidence::parse(&raw).expect("encode output parses");
        assert_eq!((e.measurement, e.report_data), (m, rd));
        e.verify_self_signature().expect("encode output verifies");
    }
});

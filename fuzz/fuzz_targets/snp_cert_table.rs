//! `cert_table::parse` (the SEV-SNP host certificate table that configfs-tsm's
//! `auxblob` and `/dev/sev-guest` hand the guest) on arbitrary bytes: never
//! panics, and what it parses re-encodes to a table that parses the same.
#![no_main]

use cloister_attestation_collect::cert_table;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(certs) = cert_table::parse(data) else {
        return;
    };
    for cert in &certs.0 {
        assert!(!cert.data.is_empty(), "an empty entry was accepted");
    }
    let again = cert_table::parse(&cert_table::encode(&certs.0)).expect("re-encoded table");
    assert_eq!(again, certs);
});

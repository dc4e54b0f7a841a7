mod common;

use cloister_attestation::Timestamp;
use cloister_attestation::gpu;
use common::{expected, read, vectors};

#[test]
fn print_all() {
    for name in vectors("gpu") {
        let exp = expected("gpu", &name);
        let v = gpu::appraise(
            &read("gpu", &name, "attestation_report.bin"),
            &read("gpu", &name, "cert_chain.pem"),
            None,
            Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap(),
        );
        println!(
            "{name}: {:?} {:?} {:?} {:?} {:?}",
            v.accepted, v.device, v.driver_version, v.vbios_version, v.reasons
        );
        println!("  {}", exp["opaque_data"]);
    }
}

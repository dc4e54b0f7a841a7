mod common;

use cloister_attestation::Policy;
use cloister_attestation::snp::{self, SnpCertChain};
use common::{expected, read, testdata, vectors, verify_at};

#[test]
fn print_all() {
    for name in vectors("snp") {
        let exp = expected("snp", &name);
        let dir = testdata().join("snp").join(&name);
        let f = |stem: &str| {
            ["pem", "der"]
                .iter()
                .find_map(|ext| std::fs::read(dir.join(format!("{stem}.{ext}"))).ok())
        };
        let ask = f("ask").or_else(|| f("asvk")).unwrap();
        let vek = f("vcek").or_else(|| f("vlek")).unwrap();
        let chain = SnpCertChain::parse(f("ark").as_deref(), &ask, &vek).unwrap();
        let v = snp::appraise(
            &read("snp", &name, "report.bin"),
            &chain,
            &Policy::strict(),
            verify_at(&exp),
            None,
        )
        .unwrap();
        println!(
            "{name}: accepted={} {:?} {:?}",
            v.accepted, v.reasons, v.facts
        );
    }
}

//! `snp::AmdCrl::parse` on arbitrary bytes, and every CRL that parses put
//! into a real SEV-SNP chain: verification never panics and never succeeds,
//! because no input can carry a signature by AMD's pinned ARK (the seeds
//! are CRLs of a test ARK). Without the CRL the same report verifies, so
//! every refusal is the CRL's.
#![no_main]

use cloister_attestation::snp::{self, AmdCrl, SnpError};
use cloister_attestation_fuzz::SNP;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let crl = match AmdCrl::parse(data) {
        Ok(crl) => crl,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let fixture = &SNP[data.len() % SNP.len()];
    let chain = fixture.chain.clone().with_crl(crl);
    match snp::verify_report(fixture.report, &chain, fixture.at) {
        Ok(_) => panic!("a CRL not signed by AMD's ARK was accepted"),
        Err(SnpError::Crl(e)) => {
            let _ = (e.to_string(), SnpError::Crl(e).code());
        }
        Err(other) => panic!("the fixture failed for another reason: {other}"),
    }
});

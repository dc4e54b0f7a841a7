//! `cloister-measure` on arbitrary firmware bytes: the footer table, SEV and
//! TDVF metadata parsers and both measurements must return a value or a
//! typed error, never panic or read out of bounds. Seeds: a real OVMF tail
//! is too large for the corpus; seed.sh copies the last 64 KiB of Debian's
//! OVMF.fd when it is installed.
#![no_main]

use cloister_measure::firmware::Firmware;
use cloister_measure::snp::{KernelHashes, SnpLaunch, launch_digest};
use cloister_measure::tdx::{PageOrder, mrtd};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(fw) = Firmware::parse(data) {
        let _ = fw.sev_sections().map_err(|e| e.to_string());
        let _ = fw.tdvf_sections().map_err(|e| e.to_string());
        let _ = fw.sev_es_reset_eip();
        let _ = fw.sev_hash_table_gpa();
    }
    let _ = mrtd(data, PageOrder::PerPage).map_err(|e| e.to_string());
    let _ = mrtd(data, PageOrder::PerSection);
    for kernel in [None, Some(KernelHashes::new([1; 32], None, "console=ttyS0"))] {
        let _ = launch_digest(&SnpLaunch {
            ovmf: data,
            vcpus: 2,
            vcpu_signature: 0xa00f11,
            guest_features: 1,
            kernel,
        });
    }
});

//! The libtdx_attest wrapper against the fake library of
//! `tests/tdx-attest-fake/` (run `tests/tdx-attest-fake/run.sh`). Compiled
//! only when build.rs saw `TDX_ATTEST_FAKE`, since the real library has no
//! introspection hooks.
#![cfg(all(feature = "tdx-attest-lib", tdx_attest_fake))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cloister_attestation_collect::tdx_attest::{TdxAttestError, get_quote};
use cloister_attestation_collect::{EvidenceSource, Tee, Via};

#[allow(unsafe_code)]
mod hooks {
    unsafe extern "C" {
        fn fake_tdx_attest_outstanding() -> i32;
        fn fake_tdx_attest_calls() -> u32;
    }

    pub(crate) fn outstanding() -> i32 {
        // SAFETY: a plain getter of a static int in the fake library.
        unsafe { fake_tdx_attest_outstanding() }
    }

    pub(crate) fn calls() -> u32 {
        // SAFETY: a plain getter of a static unsigned in the fake library.
        unsafe { fake_tdx_attest_calls() }
    }
}

fn report_data(prefix: &[u8]) -> [u8; 64] {
    let mut rd = [0x5a; 64];
    rd[..prefix.len()].copy_from_slice(prefix);
    rd
}

/// One test so the library's global counters are not shared between
/// concurrently running tests.
#[test]
fn quotes_errors_and_frees_through_the_fake_library() {
    let before = hooks::calls();

    // Success: the quote carries our report data; the buffer is freed.
    let rd = report_data(b"ok");
    let quote = get_quote(&rd).unwrap();
    assert_eq!(&quote.quote[..16], b"FAKE-TDX-QUOTE\0\0");
    assert_eq!(&quote.quote[16..80], &rd);
    assert_eq!(&quote.quote[80..], &quote.att_key_id);
    assert_eq!(
        hex::encode(quote.att_key_id),
        "e86c046e8cc44d958173fc43c1fa4f3f"
    );
    assert_eq!(hooks::outstanding(), 0, "quote buffer not freed");

    // Every library error code maps to its variant.
    let expected = [
        (1, TdxAttestError::Unexpected),
        (2, TdxAttestError::InvalidParameter),
        (3, TdxAttestError::OutOfMemory),
        (4, TdxAttestError::VsockFailure),
        (5, TdxAttestError::ReportFailure),
        (6, TdxAttestError::ExtendFailure),
        (7, TdxAttestError::NotSupported),
        (8, TdxAttestError::QuoteFailure),
        (9, TdxAttestError::Busy),
        (10, TdxAttestError::DeviceFailure),
        (11, TdxAttestError::InvalidRtmrIndex),
        (12, TdxAttestError::UnsupportedAttKeyId),
        (0x42, TdxAttestError::Unknown(0x42)),
    ];
    for (code, error) in expected {
        let mut rd = report_data(b"FAIL");
        rd[4] = code;
        assert_eq!(get_quote(&rd).unwrap_err(), error, "code {code}");
    }

    // Success without a buffer is an error, not a crash.
    assert_eq!(
        get_quote(&report_data(b"NULQ")).unwrap_err(),
        TdxAttestError::EmptyQuote
    );

    // Through the evidence source, from several threads at once.
    let source = EvidenceSource::TdxAttestLib;
    std::thread::scope(|s| {
        for i in 0..8u8 {
            let source = &source;
            s.spawn(move || {
                let rd = report_data(&[b'T', i]);
                let collected = source.collect(&rd).unwrap();
                assert_eq!(collected.tee, Tee::Tdx);
                assert_eq!(collected.via, Via::TdxAttestLib);
                assert_eq!(&collected.evidence[16..80], &rd);
            });
        }
    });

    assert_eq!(hooks::outstanding(), 0, "a quote buffer leaked");
    assert_eq!(hooks::calls() - before, 1 + 13 + 1 + 8);
}

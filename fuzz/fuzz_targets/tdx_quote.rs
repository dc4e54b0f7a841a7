//! `tdx::Quote::parse` on arbitrary bytes: never panics, and a parsed quote's
//! fields and signed spans are exactly the bytes they claim to be.
#![no_main]

use cloister_attestation::tdx::{Body, Quote, TeeType};
use cloister_attestation_fuzz::within;
use libfuzzer_sys::fuzz_target;

const HEADER: usize = 48;
/// Shortest possible signature data: v3 (inline QE report), v4/v5 (wrapped
/// in type-6 certification data, 6 bytes more), all variable parts empty.
const SIG_V3: usize = 64 + 64 + 384 + 64 + 2 + 2 + 4;
const SIG_V4: usize = SIG_V3 + 6;

fuzz_target!(|data: &[u8]| {
    let quote = match Quote::parse(data) {
        Ok(quote) => quote,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let len = data.len();
    let h = &quote.header;
    assert!(matches!(h.version, 3..=5));
    assert_eq!(h.attestation_key_type, 2);
    assert_eq!(
        h.qe_vendor_id,
        cloister_attestation::tdx::INTEL_QE_VENDOR_ID
    );
    assert!(std::ptr::eq(quote.raw(), data));

    // Header and body: version 3 is SGX only, 4 TDX only, 5 either with a
    // 6-byte body descriptor.
    let body_len = match (&quote.body, h.tee_type) {
        (Body::Sgx(_), TeeType::Sgx) => 384,
        (Body::Td(td), TeeType::Tdx) => {
            assert_eq!(td.tee_tcb_svn2.is_some(), td.mr_service_td.is_some());
            if td.tee_tcb_svn2.is_some() {
                assert_eq!(h.version, 5, "a TD 1.5 body needs a v5 quote");
                648
            } else {
                584
            }
        }
        (body, tee) => panic!("{tee} quote with body {body:?}"),
    };
    match h.version {
        3 => assert_eq!(h.tee_type, TeeType::Sgx),
        4 => assert_eq!(h.tee_type, TeeType::Tdx),
        _ => {}
    }
    let descriptor = if h.version == 5 { 6 } else { 0 };
    let s = &quote.spans;
    assert_eq!(s.header_and_body, 0..HEADER + descriptor + body_len);
    let min = HEADER + descriptor + body_len + 4 + if h.version == 3 { SIG_V3 } else { SIG_V4 };
    assert!(
        len >= min,
        "parsed a {len}-byte quote; the minimum is {min}"
    );

    // The report data is the last 64 bytes of the 1.0 / SGX body.
    let rd_end = HEADER + descriptor + if body_len == 648 { 584 } else { body_len };
    assert_eq!(&data[rd_end - 64..rd_end], quote.report_data());

    // Every span lies inside the input, in layout order, and the borrowed
    // fields are exactly those bytes.
    for span in [
        &s.qe_report,
        &s.attestation_key,
        &s.qe_auth_data,
        &s.certification_data,
    ] {
        assert!(
            span.start <= span.end && span.end <= len,
            "span {span:?} outside {len} bytes"
        );
    }
    let sig_start = s.header_and_body.end + 4;
    let sig_len = u32::from_le_bytes(data[sig_start - 4..sig_start].try_into().unwrap()) as usize;
    assert_eq!(sig_start + sig_len + quote.padding, len);
    assert_eq!(s.attestation_key, sig_start + 64..sig_start + 128);
    assert!(s.attestation_key.end <= s.qe_report.start);
    assert_eq!(s.qe_report.len(), 384);
    assert!(s.qe_report.end + 64 + 2 == s.qe_auth_data.start);
    assert!(s.qe_auth_data.end + 6 == s.certification_data.start);
    assert_eq!(s.certification_data.end, sig_start + sig_len);
    let sig = &quote.signature;
    assert_eq!(&sig.quote_signature[..], &data[sig_start..sig_start + 64]);
    assert_eq!(&sig.attestation_key[..], &data[s.attestation_key.clone()]);
    assert_eq!(sig.qe_report, &data[s.qe_report.clone()]);
    assert_eq!(
        &sig.qe_report_signature[..],
        &data[s.qe_report.end..s.qe_report.end + 64]
    );
    assert_eq!(sig.qe_auth_data, &data[s.qe_auth_data.clone()]);
    assert_eq!(sig.certification_data, &data[s.certification_data.clone()]);
    for field in [sig.qe_report, sig.qe_auth_data, sig.certification_data] {
        assert!(within(data, field));
    }

    // Padding is zeros only, and the quote without it parses the same.
    assert!(data[len - quote.padding..].iter().all(|&b| b == 0));
    let trimmed = Quote::parse(&data[..len - quote.padding]).expect("quote without its padding");
    assert_eq!(trimmed.padding, 0);
    assert_eq!(
        (
            &trimmed.header,
            &trimmed.body,
            &trimmed.signature,
            &trimmed.spans
        ),
        (&quote.header, &quote.body, &quote.signature, &quote.spans)
    );
});

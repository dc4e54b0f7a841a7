//! `SignedReceipt` JSON on arbitrary text: never panics; a receipt that
//! parses re-serialises and parses to the same value; recovery never panics.
#![no_main]

use cloister_protocol::{ReceiptDomain, SignedReceipt};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(receipt) = serde_json::from_slice::<SignedReceipt>(data) else {
        return;
    };
    let again: SignedReceipt =
        serde_json::from_str(&serde_json::to_string(&receipt).expect("serialise")).expect("parse");
    assert_eq!(again, receipt);
    let _ = receipt.recover_signer(&ReceiptDomain::default());
});

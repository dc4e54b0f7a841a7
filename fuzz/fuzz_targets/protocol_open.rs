//! The enclave's side on arbitrary input: `KeyConfigInfo::parse` and
//! `open_request` never panic; a client's side: `ResponseOpener::push` on
//! arbitrary "ciphertext" never panics and never yields plaintext.
#![no_main]

use std::sync::LazyLock;

use cloister_protocol::{
    KeyConfigInfo, NodeKeys, PayerKey, ReceiptDomain, RequestEnvelope, open_request, seal_request,
};
use libfuzzer_sys::fuzz_target;

static NODE: LazyLock<NodeKeys> = LazyLock::new(|| NodeKeys::generate().expect("node keys"));

fuzz_target!(|data: &[u8]| {
    let _ = KeyConfigInfo::parse(data);
    let _ = RequestEnvelope::parse(data);
    let domain = ReceiptDomain::default();
    if let Ok(opened) = open_request(&NODE, &domain, data) {
        // Only a request sealed to this node's key opens: random bytes never do.
        panic!("opened a {}-byte request that nobody sealed", opened.body.len());
    }
    let envelope = PayerKey::from_secret(&[1; 32])
        .expect("payer")
        .envelope(NODE.signer_address(), &domain, 1, b"{}".to_vec())
        .expect("envelope");
    let (_, mut opener) = seal_request(&NODE.key_config(), &envelope).expect("seal");
    if let Ok(plaintext) = opener.push(data) {
        assert!(plaintext.is_empty(), "random bytes decrypted to plaintext");
    }
});

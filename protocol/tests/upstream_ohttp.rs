#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Facts about `ohttp` 0.8.0 that this crate works around.
//!
//! Its stream decoder reads non-minimal chunk-length varints, so a forwarder
//! could re-encode a sealed body into different bytes (another request hash)
//! that open to the same plaintext; `open_request` refuses them (see
//! `canonical.rs`).
//!
//! Why the suite is AES-128-GCM (see `SUITE` in src/keyconfig.rs): with `ohttp`
//! 0.8.0 the chunked-response reader panics for AEADs with a 32-byte key. It
//! reads the max(Nn, Nk)-byte response nonce into a 16-byte buffer
//! (`nonce: [0; 16]` in `stream::ClientRequest::response`). When the
//! `should_panic` test below starts failing, `ohttp` has been fixed and the
//! suite can move to ChaCha20-Poly1305 as DESIGN.md section 4 asks.

use std::{
    pin::Pin,
    task::{Context, Waker},
};

use futures_io::AsyncRead;
use ohttp::{
    ClientRequest, KeyConfig, SymmetricSuite,
    hpke::{Aead, Kdf, Kem},
};

fn read_a_response_with(aead: Aead) {
    let suite = SymmetricSuite::new(Kdf::HkdfSha256, aead);
    let mut config = KeyConfig::new(1, Kem::X25519Sha256, vec![suite]).unwrap();
    let request = ClientRequest::from_config(&mut config)
        .unwrap()
        .encapsulate_stream(Vec::<u8>::new())
        .unwrap();
    let garbage = [0u8; 64];
    let mut response = request.response(&garbage[..]).unwrap();
    let mut out = [0u8; 64];
    let read = Pin::new(&mut response).poll_read(&mut Context::from_waker(Waker::noop()), &mut out);
    assert!(read.is_ready(), "the input is all there");
}

#[test]
#[should_panic(expected = "out of range for slice of length 16")]
fn ohttp_chunked_response_reader_panics_for_32_byte_keys() {
    read_a_response_with(Aead::ChaCha20Poly1305);
}

#[test]
fn ohttp_chunked_response_reader_works_for_aes_128_gcm() {
    read_a_response_with(Aead::Aes128Gcm);
}

#[test]
fn ohttp_opens_a_body_whose_chunk_length_was_reencoded() {
    use cloister_protocol::{Address, PayerKey, ReceiptDomain, seal_request};
    let suite = SymmetricSuite::new(Kdf::HkdfSha256, Aead::Aes128Gcm);
    let config = KeyConfig::new(1, Kem::X25519Sha256, vec![suite]).unwrap();
    let server = ohttp::Server::new(config).unwrap();
    let encoded = server.config().encode().unwrap();
    let envelope = PayerKey::generate()
        .envelope(Address::ZERO, &ReceiptDomain::default(), 1, b"{}".to_vec())
        .unwrap();
    let (body, _) = seal_request(&encoded, &envelope).unwrap();
    let open = |bytes: &[u8]| -> Vec<u8> {
        let mut stream = server.clone().decapsulate_stream(bytes);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let read =
                Pin::new(&mut stream).poll_read(&mut Context::from_waker(Waker::noop()), &mut buf);
            match read {
                std::task::Poll::Ready(Ok(0)) => return out,
                std::task::Poll::Ready(Ok(n)) => out.extend_from_slice(&buf[..n]),
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    // The first chunk's length (after 7 header bytes and the 32-byte
    // encapsulated key) is a 2-byte varint here; write it in 4 bytes.
    assert_eq!(body[39] >> 6, 1);
    let value = u32::from(body[39] & 0x3f) << 8 | u32::from(body[40]);
    let reencoded = [
        &body[..39],
        &(0x8000_0000 | value).to_be_bytes()[..],
        &body[41..],
    ]
    .concat();
    assert_eq!(
        open(&reencoded),
        open(&body),
        "same plaintext from different bytes"
    );
    assert_eq!(open(&body), envelope.encode());
}

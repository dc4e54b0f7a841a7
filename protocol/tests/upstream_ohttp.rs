#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
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

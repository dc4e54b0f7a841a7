#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Seal → open → seal chunks → frames → decode → open → same plaintext.

mod common;

use cloister_protocol::{
    Frame, MAX_FRAME_PAYLOAD, MAX_SEAL_PLAINTEXT, NodeKeys, ReceiptDomain, ResponseEvent,
    ResponseReader, SealError,
};
use common::{Rng, encode, frames, open, seal, seal_exchange, sse_events};

#[test]
fn streaming_twenty_sse_events() {
    let node = NodeKeys::generate().unwrap();
    let request =
        br#"{"model":"smollm2","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let events = sse_events(20);
    let sealed = seal_exchange(&node, request, &events);
    assert_eq!(sealed.payloads.len(), 21, "20 chunks and the final one");
    let body = encode(&frames(&node, &sealed));

    // Feed the body in awkward 7-byte pieces, as a network might.
    let mut reader = ResponseReader::new(
        sealed.opener,
        node.signer_address(),
        ReceiptDomain::default(),
    );
    let mut got = Vec::new();
    let mut receipt = None;
    for piece in body.chunks(7) {
        reader.push(piece);
        while let Some(event) = reader.next_event().unwrap() {
            match event {
                ResponseEvent::Plaintext(p) => got.push(p),
                ResponseEvent::Receipt(r) => receipt = Some(r),
            }
        }
    }
    reader.finish().unwrap();
    assert_eq!(got, events, "one plaintext event per SSE event");
    let receipt = receipt.unwrap();
    assert_eq!(receipt.response.response_hash, sealed.response_hash);
    assert_eq!(receipt.response.request_hash, sealed.request_hash);
    assert_eq!(
        receipt
            .receipt
            .recover_signer(&ReceiptDomain::default())
            .unwrap(),
        node.signer_address()
    );
}

#[test]
fn one_large_json_body() {
    let node = NodeKeys::generate().unwrap();
    let content = "x".repeat(40 * 1024);
    let json =
        format!(r#"{{"id":"chatcmpl-1","choices":[{{"message":{{"content":"{content}"}}}}]}}"#);
    let sealed = seal_exchange(&node, b"{}", &[json.clone().into_bytes()]);
    assert_eq!(
        sealed.payloads.len(),
        2,
        "one ciphertext frame plus the final one"
    );
    let body = encode(&frames(&node, &sealed));
    let done = ResponseReader::new(
        sealed.opener,
        node.signer_address(),
        ReceiptDomain::default(),
    )
    .read_all(&body)
    .unwrap();
    assert_eq!(done.plaintext, json.as_bytes());
}

#[test]
fn random_sizes_and_splits() {
    let node = NodeKeys::generate().unwrap();
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    for round in 0..40 {
        let request_len = match round {
            0 => 0,
            1 => 16 * 1024,
            _ => rng.below(40_000),
        };
        let request = rng.bytes(request_len);
        let chunks: Vec<Vec<u8>> = (0..rng.below(6))
            .map(|_| {
                let n = if rng.below(4) == 0 {
                    rng.below(70_000)
                } else {
                    rng.below(300)
                };
                rng.bytes(n)
            })
            .collect();
        let sealed = seal_exchange(&node, &request, &chunks);
        let body = encode(&frames(&node, &sealed));
        let mut reader = ResponseReader::new(
            sealed.opener,
            node.signer_address(),
            ReceiptDomain::default(),
        );
        let mut got = Vec::new();
        let mut rest = &body[..];
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(1 + rng.below(rest.len().min(5000)));
            rest = tail;
            reader.push(piece);
            while let Some(event) = reader.next_event().unwrap() {
                if let ResponseEvent::Plaintext(p) = event {
                    got.extend_from_slice(&p);
                }
            }
        }
        reader.finish().unwrap();
        assert_eq!(got, chunks.concat(), "round {round}");
    }
}

#[test]
fn empty_chunks_and_empty_response() {
    let node = NodeKeys::generate().unwrap();
    for chunks in [vec![], vec![vec![]], vec![vec![], b"a".to_vec(), vec![]]] {
        let sealed = seal_exchange(&node, b"{}", &chunks);
        let body = encode(&frames(&node, &sealed));
        let done = ResponseReader::new(
            sealed.opener,
            node.signer_address(),
            ReceiptDomain::default(),
        )
        .read_all(&body)
        .unwrap();
        assert_eq!(done.plaintext, chunks.concat());
    }
}

#[test]
fn largest_chunk_fits_one_frame_and_larger_is_refused() {
    let node = NodeKeys::generate().unwrap();
    let (body, _) = seal(&node, b"{}");
    let mut sealer = open(&node, &body).unwrap().sealer;
    let ct = sealer.seal_chunk(&vec![0u8; MAX_SEAL_PLAINTEXT]).unwrap();
    assert!(ct.len() <= MAX_FRAME_PAYLOAD);
    Frame::Ciphertext(ct).encode().unwrap();
    assert!(matches!(
        sealer.seal_chunk(&vec![0u8; MAX_SEAL_PLAINTEXT + 1]),
        Err(SealError::ChunkTooLarge { .. })
    ));
}

#[test]
fn opener_can_be_fed_byte_by_byte() {
    let node = NodeKeys::generate().unwrap();
    let events = sse_events(3);
    let mut sealed = seal_exchange(&node, b"{}", &events);
    let mut got = Vec::new();
    for byte in sealed.payloads.concat() {
        got.extend(sealed.opener.push(&[byte]).unwrap());
    }
    let opened = sealed.opener.finish().unwrap();
    assert_eq!(got, events.concat());
    assert_eq!(opened.response_hash, sealed.response_hash);
    assert_eq!(opened.request_hash, sealed.request_hash);
}

#[test]
fn node_key_config_and_debug_show_no_secret() {
    let node = NodeKeys::generate().unwrap();
    let config = node.key_config();
    // key id | KEM 0x0020 | 32-byte public key | suites length 4 | HKDF-SHA256, AES-128-GCM
    assert_eq!(config.len(), 1 + 2 + 32 + 2 + 4);
    assert_eq!(config[0], node.key_id());
    assert_eq!(&config[1..3], &[0x00, 0x20]);
    assert_eq!(&config[35..], &[0x00, 0x04, 0x00, 0x01, 0x00, 0x01]);
    let debug = format!("{node:?}");
    assert!(debug.contains(&format!("{:?}", node.signer_address())));
    assert!(!debug.to_lowercase().contains("secret") && !debug.contains("sk"));
    fn send_sync<T: Send + Sync>() {}
    send_sync::<NodeKeys>();
    send_sync::<cloister_protocol::ResponseSealer>();
    send_sync::<cloister_protocol::ResponseOpener>();
    send_sync::<ResponseReader>();
}

#[test]
fn opener_random_splits_across_length_fields() {
    let node = NodeKeys::generate().unwrap();
    let mut rng = Rng(0x0dd_ba11);
    for round in 0..30 {
        let chunks: Vec<Vec<u8>> = (0..1 + rng.below(5))
            .map(|_| {
                let n = [rng.below(50), 48 + rng.below(400), rng.below(40_000)][rng.below(3)];
                rng.bytes(n)
            })
            .collect();
        let mut sealed = seal_exchange(&node, b"{}", &chunks);
        let stream = sealed.payloads.concat();
        let mut got = Vec::new();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(1 + rng.below(rest.len().min(100)));
            rest = tail;
            got.extend(sealed.opener.push(piece).unwrap());
        }
        let opened = sealed.opener.finish().unwrap();
        assert_eq!(got, chunks.concat(), "round {round}");
        assert_eq!(opened.response_hash, sealed.response_hash);
    }
}

#[test]
fn chunk_sizes_do_not_reveal_token_lengths() {
    let node = NodeKeys::generate().unwrap();
    let event = |token: &str| {
        format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"{token}\"}}}}]}}\n\n")
            .into_bytes()
    };
    let short: Vec<Vec<u8>> = ["a", "b", "c"].iter().map(|t| event(t)).collect();
    let long: Vec<Vec<u8>> = ["antidisestablish", "mentarianism", "!"]
        .iter()
        .map(|t| event(t))
        .collect();
    let sizes = |chunks: &[Vec<u8>]| -> Vec<usize> {
        seal_exchange(&node, b"{}", chunks)
            .payloads
            .iter()
            .map(Vec::len)
            .collect()
    };
    assert_eq!(
        sizes(&short),
        sizes(&long),
        "same frame sizes whatever the tokens"
    );

    // Without padding the sizes differ (what the padding hides).
    let unpadded = |chunks: &[Vec<u8>]| -> Vec<usize> {
        let (body, _) = seal(&node, b"{}");
        let mut sealer = open(&node, &body).unwrap().sealer;
        sealer.set_pad_bucket(0);
        chunks
            .iter()
            .map(|c| sealer.seal_chunk(c).unwrap().len())
            .collect()
    };
    assert_ne!(unpadded(&short), unpadded(&long));
}

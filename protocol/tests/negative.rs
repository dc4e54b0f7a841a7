#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Sealing and opening under attack: wrong keys, bit flips, reordering,
//! truncation, splicing and replay.

mod common;

use cloister_protocol::{
    Address, CipherFault, EnvelopeError, KeyConfigError, NodeKeys, NotSealedReason, OpenError,
    PayerKey, ReceiptDomain, SealError, open_request, seal_request,
};
use common::{Rng, envelope, open, payer, seal, seal_exchange, sse_events};

fn not_for_this_node(
    result: Result<cloister_protocol::OpenedRequest, OpenError>,
) -> NotSealedReason {
    match result {
        Err(OpenError::NotSealedToThisNode(reason)) => reason,
        other => panic!("expected NotSealedToThisNode, got {other:?}"),
    }
}

#[test]
fn request_sealed_to_another_node_fails_cleanly() {
    let node = NodeKeys::generate().unwrap();
    for _ in 0..20 {
        let other = NodeKeys::generate().unwrap();
        let (body, _) = seal(&other, b"{}");
        let reason = not_for_this_node(open(&node, &body));
        // Key ids are one random byte: most of the time they differ; when they
        // collide, HPKE decryption fails instead.
        assert!(
            matches!(
                reason,
                NotSealedReason::WrongKeyId { .. } | NotSealedReason::Cipher(_)
            ),
            "{reason}"
        );
        let message = OpenError::NotSealedToThisNode(reason).to_string();
        assert!(message.contains("not sealed to this node's key or corrupted"));
    }
}

#[test]
fn every_bit_flip_in_a_request_body_is_rejected() {
    let node = NodeKeys::generate().unwrap();
    let (body, _) = seal(&node, br#"{"model":"m"}"#);
    for bit in 0..body.len() * 8 {
        let mut bad = body.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        not_for_this_node(open(&node, &bad));
    }
    for cut in 0..body.len() {
        not_for_this_node(open(&node, &body[..cut]));
    }
    let mut long = body.clone();
    long.push(0);
    not_for_this_node(open(&node, &long));
}

#[test]
fn header_checks_give_specific_reasons() {
    let node = NodeKeys::generate().unwrap();
    let (body, _) = seal(&node, b"{}");
    assert!(matches!(
        not_for_this_node(open(&node, &body[..10])),
        NotSealedReason::TooShort { len: 10, min: 39 }
    ));
    let mut chacha = body.clone();
    chacha[6] = 0x03;
    assert_eq!(
        not_for_this_node(open(&node, &chacha)),
        NotSealedReason::UnsupportedSuite {
            kem: 0x20,
            kdf: 1,
            aead: 3
        }
    );
}

#[test]
fn unusable_key_configs_are_refused_without_panicking() {
    let node = NodeKeys::generate().unwrap();
    let mut only_aes256 = node.key_config();
    let n = only_aes256.len();
    only_aes256[n - 1] = 0x02;
    assert!(matches!(
        seal_request(&only_aes256, &envelope(&node, b"{}")),
        Err(SealError::KeyConfig(KeyConfigError::NoSupportedSuite))
    ));
    assert!(matches!(
        seal_request(&[], &envelope(&node, b"{}")),
        Err(SealError::KeyConfig(KeyConfigError::Truncated { .. }))
    ));
}

#[test]
fn flipped_bit_in_a_ciphertext_chunk_fails_at_push() {
    let node = NodeKeys::generate().unwrap();
    let mut sealed = seal_exchange(&node, b"{}", &sse_events(4));
    sealed.opener.push(&sealed.payloads[0]).unwrap();
    let mut bad = sealed.payloads[1].clone();
    *bad.last_mut().unwrap() ^= 0x01;
    assert_eq!(
        sealed.opener.push(&bad),
        Err(OpenError::ResponseCorrupted(CipherFault::Authentication))
    );
    assert_eq!(
        sealed.opener.push(&sealed.payloads[2]),
        Err(OpenError::AfterError)
    );
    assert_eq!(sealed.opener.finish(), Err(OpenError::AfterError));
}

#[test]
fn any_single_bit_flip_in_a_response_is_detected() {
    let node = NodeKeys::generate().unwrap();
    let chunks = vec![b"data: a\n\n".to_vec(), b"data: bb\n\n".to_vec()];
    let len = seal_exchange(&node, b"{}", &chunks).payloads.concat().len();
    for bit in 0..len * 8 {
        let mut sealed = seal_exchange(&node, b"{}", &chunks);
        let mut stream = sealed.payloads.concat();
        stream[bit / 8] ^= 1 << (bit % 8);
        let outcome = sealed
            .opener
            .push(&stream)
            .and_then(|pt| sealed.opener.finish().map(|_| pt));
        assert!(
            outcome.is_err(),
            "bit {bit} flipped went unnoticed: {outcome:?}"
        );
    }
}

#[test]
fn swapped_chunks_fail() {
    let node = NodeKeys::generate().unwrap();
    let mut sealed = seal_exchange(&node, b"{}", &sse_events(5));
    sealed.payloads.swap(2, 3);
    sealed.opener.push(&sealed.payloads[0]).unwrap();
    sealed.opener.push(&sealed.payloads[1]).unwrap();
    assert!(matches!(
        sealed.opener.push(&sealed.payloads[2]),
        Err(OpenError::ResponseCorrupted(_))
    ));
}

#[test]
fn dropped_final_chunk_is_truncation() {
    let node = NodeKeys::generate().unwrap();
    let mut sealed = seal_exchange(&node, b"{}", &sse_events(5));
    sealed.payloads.pop();
    for p in &sealed.payloads {
        sealed.opener.push(p).unwrap();
    }
    assert_eq!(sealed.opener.finish(), Err(OpenError::Truncated));

    // Cut inside a chunk, too.
    let mut sealed = seal_exchange(&node, b"{}", &sse_events(2));
    let first = &sealed.payloads[0];
    sealed.opener.push(&first[..first.len() - 3]).unwrap();
    assert_eq!(sealed.opener.finish(), Err(OpenError::Truncated));
}

#[test]
fn every_truncation_is_detected() {
    let node = NodeKeys::generate().unwrap();
    let chunks = vec![b"data: a\n\n".to_vec(), vec![b'x'; 300]];
    let len = seal_exchange(&node, b"{}", &chunks).payloads.concat().len();
    for cut in 0..len {
        let mut sealed = seal_exchange(&node, b"{}", &chunks);
        let stream = sealed.payloads.concat();
        let final_chunk_starts = stream.len() - sealed.payloads.last().unwrap().len();
        sealed.opener.push(&stream[..cut]).unwrap();
        let result = sealed.opener.finish();
        if cut <= final_chunk_starts {
            assert_eq!(result, Err(OpenError::Truncated), "cut at {cut}");
        } else {
            // Inside the final chunk, which runs to the end: its tag fails.
            assert!(
                matches!(result, Err(OpenError::ResponseCorrupted(_))),
                "cut at {cut}"
            );
        }
    }
}

#[test]
fn data_after_the_final_chunk_fails() {
    let node = NodeKeys::generate().unwrap();
    let mut sealed = seal_exchange(&node, b"{}", &sse_events(2));
    for p in &sealed.payloads {
        sealed.opener.push(p).unwrap();
    }
    sealed.opener.push(b"x").unwrap();
    assert!(matches!(
        sealed.opener.finish(),
        Err(OpenError::ResponseCorrupted(_))
    ));
}

#[test]
fn response_to_another_request_fails() {
    let node = NodeKeys::generate().unwrap();
    let a = seal_exchange(&node, b"{}", &sse_events(3));
    let mut b = seal_exchange(&node, b"{}", &sse_events(3));
    assert!(matches!(
        b.opener.push(&a.payloads[0]),
        Err(OpenError::ResponseCorrupted(_))
    ));
    // Splicing: b's first chunk, then a's second.
    let mut b = seal_exchange(&node, b"{}", &sse_events(3));
    b.opener.push(&b.payloads[0]).unwrap();
    assert!(b.opener.push(&a.payloads[1]).is_err());
}

#[test]
fn replayed_request_has_the_same_replay_id() {
    let node = NodeKeys::generate().unwrap();
    let (body, _) = seal(&node, b"{}");
    let first = open(&node, &body).unwrap();
    let second = open(&node, &body).unwrap();
    assert_eq!(first.replay_id, second.replay_id);
    assert_eq!(first.request_hash, second.request_hash);
    let (other, _) = seal(&node, b"{}");
    assert_ne!(open(&node, &other).unwrap().replay_id, first.replay_id);
    // Debug output never shows the prompt.
    let secret_prompt = b"my secret prompt";
    let (body, _) = seal(&node, secret_prompt);
    let opened = open(&node, &body).unwrap();
    assert!(!format!("{opened:?}").contains("secret"));
}

#[test]
fn random_garbage_never_opens() {
    let node = NodeKeys::generate().unwrap();
    let mut rng = Rng(7);
    let mut config = node.key_config();
    config.truncate(1);
    for _ in 0..500 {
        let mut body = config.clone();
        body.extend_from_slice(&[0x00, 0x20, 0x00, 0x01, 0x00, 0x01]);
        let n = rng.below(200);
        body.extend(rng.bytes(n));
        assert!(open(&node, &body).is_err());
    }
}

/// Rewrites the first chunk length of a sealed body (at byte 39, after the
/// header and the encapsulated key) in the next longer varint form.
pub(crate) fn reencode_first_length(body: &[u8]) -> Vec<u8> {
    let at = 39;
    let width = 1usize << (body[at] >> 6);
    let mut value = u64::from(body[at] & 0x3f);
    for b in &body[at + 1..at + width] {
        value = (value << 8) | u64::from(*b);
    }
    let longer: Vec<u8> = match width {
        1 => vec![0x40, u8::try_from(value).unwrap()],
        2 => (0x8000_0000u32 | u32::try_from(value).unwrap())
            .to_be_bytes()
            .to_vec(),
        _ => panic!("test bodies have short first chunks"),
    };
    [&body[..at], &longer[..], &body[at + width..]].concat()
}

#[test]
fn a_reencoded_body_is_refused_so_its_hash_cannot_change() {
    let node = NodeKeys::generate().unwrap();
    let (body, _) = seal(&node, br#"{"model":"m"}"#);
    let reencoded = reencode_first_length(&body);
    assert_ne!(reencoded, body);
    assert!(matches!(
        not_for_this_node(open(&node, &reencoded)),
        NotSealedReason::NonCanonical { offset: 39, .. }
    ));
    // The canonical body still opens.
    open(&node, &body).unwrap();
}

#[test]
fn a_router_cannot_bill_another_payer() {
    let node = NodeKeys::generate().unwrap();
    let domain = ReceiptDomain::default();
    let victim = payer();
    let router = PayerKey::generate();
    // The router seals its own request, claims the victim as payer, and signs
    // with its own key.
    let mut forged = router
        .envelope(
            node.signer_address(),
            &domain,
            1_763_700_000,
            b"{}".to_vec(),
        )
        .unwrap();
    forged.payer = victim.address();
    let (body, _) = seal_request(&node.key_config(), &forged).unwrap();
    assert!(matches!(
        open(&node, &body),
        Err(OpenError::BadEnvelope(EnvelopeError::PayerMismatch { claimed, .. })) if claimed == victim.address()
    ));
    // An authorization the victim made for another node, another body, time or
    // settlement domain does not carry over.
    let real = envelope(&node, b"{}");
    let other_node = victim
        .envelope(
            Address::repeat_byte(9),
            &domain,
            1_763_700_000,
            b"{}".to_vec(),
        )
        .unwrap();
    let mut other_body = real.clone();
    other_body.body = b"{\"x\":1}".to_vec();
    let mut other_time = real.clone();
    other_time.issued_at += 1;
    for envelope in [other_node, other_body, other_time] {
        let (body, _) = seal_request(&node.key_config(), &envelope).unwrap();
        assert!(matches!(
            open(&node, &body),
            Err(OpenError::BadEnvelope(EnvelopeError::PayerMismatch { .. }))
        ));
    }
    let (body, _) = seal_request(&node.key_config(), &real).unwrap();
    let elsewhere = ReceiptDomain {
        chain_id: 1,
        ..domain
    };
    assert!(matches!(
        open_request(&node, &elsewhere, &body),
        Err(OpenError::BadEnvelope(EnvelopeError::PayerMismatch { .. }))
    ));
    let opened = open(&node, &body).unwrap();
    assert_eq!(opened.payer, victim.address());
    assert_eq!(opened.issued_at, 1_763_700_000);
}

#[test]
fn a_malformed_payer_signature_is_refused() {
    let node = NodeKeys::generate().unwrap();
    let mut bad_v = envelope(&node, b"{}");
    bad_v.payer_signature.0[64] = 29;
    let (body, _) = seal_request(&node.key_config(), &bad_v).unwrap();
    assert!(matches!(
        open(&node, &body),
        Err(OpenError::BadEnvelope(EnvelopeError::BadPayerSignature(_)))
    ));
}

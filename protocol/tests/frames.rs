#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The frame format and the client-side ordering rules.

mod common;

use cloister_protocol::{
    ErrorFrame, FRAME_HEADER_LEN, Frame, FrameDecoder, FrameError, FrameType, MAX_FRAME_PAYLOAD,
    NodeKeys, OpenError, ReceiptDomain, ReceiptError, ResponseError, ResponseEvent, ResponseReader,
};
use common::{encode, frames, receipt, seal_exchange, sse_events};

fn error_frame() -> ErrorFrame {
    ErrorFrame {
        code: "node_failed".into(),
        message: "the node stopped".into(),
        retryable: false,
    }
}

#[test]
fn frames_round_trip_byte_by_byte() {
    let node = NodeKeys::generate().unwrap();
    let all = vec![
        Frame::Ciphertext(vec![]),
        Frame::Ciphertext(vec![1, 2, 3]),
        Frame::Receipt(receipt(&node, [1; 32], [2; 32])),
        Frame::Error(error_frame()),
    ];
    let bytes = encode(&all);
    assert_eq!(&bytes[..FRAME_HEADER_LEN], &[1, 0, 0, 0, 0]);
    assert_eq!(&bytes[5..13], &[1, 0, 0, 0, 3, 1, 2, 3]);
    let mut decoder = FrameDecoder::new();
    let mut got = Vec::new();
    for b in &bytes {
        decoder.push(&[*b]);
        while let Some(f) = decoder.next_frame().unwrap() {
            got.push(f);
        }
    }
    assert_eq!(decoder.buffered(), 0);
    decoder.finish().unwrap();
    assert_eq!(got, all);
}

#[test]
fn truncated_frame_is_reported_at_finish() {
    let bytes = Frame::Ciphertext(vec![9; 10]).encode().unwrap();
    for cut in 1..bytes.len() {
        let mut decoder = FrameDecoder::new();
        decoder.push(&bytes[..cut]);
        assert!(decoder.next_frame().unwrap().is_none());
        assert!(matches!(
            decoder.finish(),
            Err(FrameError::Truncated { buffered }) if buffered == cut
        ));
    }
}

#[test]
fn unknown_type_fails_on_its_first_byte() {
    for t in [0u8, 4, 0xff] {
        let mut decoder = FrameDecoder::new();
        decoder.push(&[t]);
        assert!(matches!(
            decoder.next_frame(),
            Err(FrameError::UnknownType { frame_type }) if frame_type == t
        ));
        assert!(matches!(decoder.next_frame(), Err(FrameError::AfterError)));
    }
}

#[test]
fn oversize_length_fails_before_the_payload_arrives() {
    let mut decoder = FrameDecoder::new();
    let len = u32::try_from(MAX_FRAME_PAYLOAD + 1).unwrap();
    decoder.push(&[1]);
    decoder.push(&len.to_be_bytes());
    assert!(matches!(
        decoder.next_frame(),
        Err(FrameError::TooLarge {
            frame_type: FrameType::Ciphertext,
            ..
        })
    ));
    let mut max = FrameDecoder::new();
    max.push(&[1, 0xff, 0xff, 0xff, 0xff]);
    assert!(matches!(max.next_frame(), Err(FrameError::TooLarge { .. })));
    assert!(matches!(
        Frame::Ciphertext(vec![0; MAX_FRAME_PAYLOAD + 1]).encode(),
        Err(FrameError::TooLarge { .. })
    ));
    Frame::Ciphertext(vec![0; MAX_FRAME_PAYLOAD])
        .encode()
        .unwrap();
}

#[test]
fn bad_json_payloads_are_rejected() {
    for (t, payload) in [(2u8, &b"{}"[..]), (3, b"not json"), (2, b"")] {
        let mut bytes = vec![t];
        bytes.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(payload);
        let mut decoder = FrameDecoder::new();
        decoder.push(&bytes);
        assert!(matches!(
            decoder.next_frame(),
            Err(FrameError::BadPayload { .. })
        ));
    }
}

fn read(
    node: &NodeKeys,
    sealed: common::Sealed,
    frames: &[Frame],
) -> Result<Vec<u8>, ResponseError> {
    ResponseReader::new(
        sealed.opener,
        node.signer_address(),
        ReceiptDomain::default(),
    )
    .read_all(&encode(frames))
    .map(|done| done.plaintext)
}

#[test]
fn frames_after_the_receipt_are_errors() {
    let node = NodeKeys::generate().unwrap();
    for extra in [
        Frame::Ciphertext(vec![1]),
        Frame::Error(error_frame()),
        Frame::Receipt(receipt(&node, [0; 32], [0; 32])),
    ] {
        let sealed = seal_exchange(&node, b"{}", &sse_events(3));
        let mut all = frames(&node, &sealed);
        let expected_type = extra.frame_type();
        all.push(extra);
        match read(&node, sealed, &all) {
            Err(ResponseError::FrameAfterEnd { frame_type }) => {
                assert_eq!(frame_type, expected_type)
            }
            other => panic!("{other:?}"),
        }
    }
    // Streaming: the receipt event comes out, then the extra frame fails.
    let sealed = seal_exchange(&node, b"{}", &sse_events(2));
    let mut all = frames(&node, &sealed);
    all.push(Frame::Ciphertext(vec![]));
    let mut reader = ResponseReader::new(
        sealed.opener,
        node.signer_address(),
        ReceiptDomain::default(),
    );
    reader.push(&encode(&all));
    let mut saw_receipt = false;
    let err = loop {
        match reader.next_event() {
            Ok(Some(ResponseEvent::Receipt(_))) => saw_receipt = true,
            Ok(Some(_)) => {}
            Ok(None) => panic!("no error"),
            Err(e) => break e,
        }
    };
    assert!(saw_receipt);
    assert!(matches!(err, ResponseError::FrameAfterEnd { .. }));
}

#[test]
fn receipt_before_the_final_chunk_is_an_error() {
    let node = NodeKeys::generate().unwrap();
    let sealed = seal_exchange(&node, b"{}", &sse_events(3));
    let mut all = frames(&node, &sealed);
    all.remove(all.len() - 2); // the final ciphertext chunk
    assert!(matches!(
        read(&node, sealed, &all),
        Err(ResponseError::ReceiptBeforeFinalChunk)
    ));
    let sealed = seal_exchange(&node, b"{}", &[]);
    let only_receipt = vec![Frame::Receipt(receipt(
        &node,
        sealed.request_hash,
        sealed.response_hash,
    ))];
    assert!(matches!(
        read(&node, sealed, &only_receipt),
        Err(ResponseError::ReceiptBeforeFinalChunk)
    ));
}

#[test]
fn error_frame_ends_the_response_as_an_error() {
    let node = NodeKeys::generate().unwrap();
    let sealed = seal_exchange(&node, b"{}", &sse_events(3));
    let all = vec![
        Frame::Ciphertext(sealed.payloads[0].clone()),
        Frame::Error(error_frame()),
    ];
    match read(&node, sealed, &all) {
        Err(ResponseError::Remote(e)) => assert_eq!(e, error_frame()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_receipt_and_trailing_bytes_are_errors() {
    let node = NodeKeys::generate().unwrap();
    let sealed = seal_exchange(&node, b"{}", &sse_events(3));
    let mut all = frames(&node, &sealed);
    all.pop();
    assert!(matches!(
        read(&node, sealed, &all),
        Err(ResponseError::Incomplete)
    ));

    let sealed = seal_exchange(&node, b"{}", &sse_events(3));
    let mut body = encode(&frames(&node, &sealed));
    body.extend_from_slice(&[1, 0]);
    let reader = ResponseReader::new(
        sealed.opener,
        node.signer_address(),
        ReceiptDomain::default(),
    );
    assert!(matches!(
        reader.read_all(&body),
        Err(ResponseError::Frame(FrameError::Truncated { buffered: 2 }))
    ));
}

#[test]
fn receipts_that_do_not_match_the_response_are_rejected() {
    let node = NodeKeys::generate().unwrap();
    let other = NodeKeys::generate().unwrap();

    let sealed = seal_exchange(&node, b"{}", &sse_events(3));
    let mut all = frames(&node, &sealed);
    *all.last_mut().unwrap() =
        Frame::Receipt(receipt(&other, sealed.request_hash, sealed.response_hash));
    assert!(matches!(
        read(&node, sealed, &all),
        Err(ResponseError::Receipt(ReceiptError::WrongSigner { .. }))
    ));

    let sealed = seal_exchange(&node, b"{}", &sse_events(3));
    let mut all = frames(&node, &sealed);
    *all.last_mut().unwrap() = Frame::Receipt(receipt(&node, sealed.request_hash, [0; 32]));
    assert!(matches!(
        read(&node, sealed, &all),
        Err(ResponseError::Receipt(
            ReceiptError::ResponseHashMismatch { .. }
        ))
    ));

    let sealed = seal_exchange(&node, b"{}", &sse_events(3));
    let mut all = frames(&node, &sealed);
    *all.last_mut().unwrap() = Frame::Receipt(receipt(&node, [0; 32], sealed.response_hash));
    assert!(matches!(
        read(&node, sealed, &all),
        Err(ResponseError::Receipt(
            ReceiptError::RequestHashMismatch { .. }
        ))
    ));
}

#[test]
fn tampered_ciphertext_frame_fails_in_the_reader() {
    let node = NodeKeys::generate().unwrap();
    let sealed = seal_exchange(&node, b"{}", &sse_events(3));
    let mut all = frames(&node, &sealed);
    if let Frame::Ciphertext(ct) = &mut all[1] {
        ct[3] ^= 0x40;
    }
    assert!(matches!(
        read(&node, sealed, &all),
        Err(ResponseError::Open(OpenError::ResponseCorrupted(_)))
    ));
}

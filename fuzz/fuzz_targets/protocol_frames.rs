//! `FrameDecoder` on arbitrary bytes fed in arbitrary pieces: never panics;
//! every decoded frame re-encodes to exactly the bytes it came from.
#![no_main]

use cloister_protocol::FrameDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let cut = usize::from(split).min(body.len());
    let (a, b) = body.split_at(cut);
    let mut decoder = FrameDecoder::new();
    let mut decoded = Vec::new();
    for part in [a, b] {
        decoder.push(part);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => decoded.push(frame),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    if decoder.finish().is_ok() {
        // Receipt and error payloads are JSON, which may be re-serialised
        // differently; ciphertext frames are bytes and must round-trip.
        let mut offset = 0;
        for frame in &decoded {
            let encoded = frame.encode().expect("a decoded frame encodes");
            if let cloister_protocol::Frame::Ciphertext(_) = frame {
                assert_eq!(&body[offset..offset + encoded.len()], &encoded[..]);
            }
            let len = u32::from_be_bytes(body[offset + 1..offset + 5].try_into().unwrap()) as usize;
            offset += 5 + len;
        }
        assert_eq!(offset, body.len());
    }
});

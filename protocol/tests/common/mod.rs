//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, clippy::cast_possible_truncation)]

use cloister_protocol::{
    Frame, NodeKeys, OpenError, OpenedRequest, PayerKey, ReceiptDomain, RequestEnvelope,
    ResponseOpener, SignedReceipt, UsageReceipt, open_request, seal_request,
};

/// The payer every test request is billed to.
pub fn payer() -> PayerKey {
    PayerKey::from_secret(&[0x5a; 32]).unwrap()
}

/// `body` in an envelope authorized by [`payer`] for `node`.
pub fn envelope(node: &NodeKeys, body: &[u8]) -> RequestEnvelope {
    payer()
        .envelope(
            node.signer_address(),
            &ReceiptDomain::default(),
            1_763_700_000,
            body.to_vec(),
        )
        .unwrap()
}

/// Seals `body` to `node` for [`payer`].
pub fn seal(node: &NodeKeys, body: &[u8]) -> (Vec<u8>, ResponseOpener) {
    seal_request(&node.key_config(), &envelope(node, body)).unwrap()
}

/// Opens a sealed body in the default receipt domain.
pub fn open(node: &NodeKeys, body: &[u8]) -> Result<OpenedRequest, OpenError> {
    open_request(node, &ReceiptDomain::default(), body)
}

/// A tiny deterministic PRNG (xorshift64*), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// `n` OpenAI-style SSE events, the last one `[DONE]`.
pub fn sse_events(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            if i + 1 == n {
                b"data: [DONE]\n\n".to_vec()
            } else {
                format!(
                    "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i}\"}}}}]}}\n\n"
                )
                .into_bytes()
            }
        })
        .collect()
}

/// One sealed exchange, enclave side done: the ciphertext payloads (one per
/// chunk, then the final one), with the hashes the receipt needs.
pub struct Sealed {
    pub opener: ResponseOpener,
    pub body: Vec<u8>,
    pub payloads: Vec<Vec<u8>>,
    pub request_hash: [u8; 32],
    pub response_hash: [u8; 32],
}

pub fn seal_exchange(node: &NodeKeys, request: &[u8], chunks: &[Vec<u8>]) -> Sealed {
    let (body, opener) = seal(node, request);
    let mut opened = open(node, &body).unwrap();
    assert_eq!(opened.body, request);
    assert_eq!(opened.payer, payer().address());
    let mut payloads: Vec<Vec<u8>> = chunks
        .iter()
        .map(|c| opened.sealer.seal_chunk(c).unwrap())
        .collect();
    let (last, response_hash) = opened.sealer.finish().unwrap();
    payloads.push(last);
    Sealed {
        opener,
        body,
        payloads,
        request_hash: opened.request_hash,
        response_hash,
    }
}

pub fn receipt(node: &NodeKeys, request_hash: [u8; 32], response_hash: [u8; 32]) -> SignedReceipt {
    let receipt = UsageReceipt {
        request_id: [9; 32].into(),
        node_signer: node.signer_address(),
        payer: payer().address(),
        model_id: "smollm2-135m".into(),
        prompt_tokens: 12,
        completion_tokens: 34,
        prompt_price: 1,
        completion_price: 2,
        request_hash: request_hash.into(),
        response_hash: response_hash.into(),
        issued_at: 1_763_700_000,
    };
    node.sign_receipt(receipt, &ReceiptDomain::default())
        .unwrap()
}

/// The whole frame sequence for `sealed`: ciphertext frames, then the receipt.
pub fn frames(node: &NodeKeys, sealed: &Sealed) -> Vec<Frame> {
    let mut frames: Vec<Frame> = sealed
        .payloads
        .iter()
        .map(|p| Frame::Ciphertext(p.clone()))
        .collect();
    frames.push(Frame::Receipt(receipt(
        node,
        sealed.request_hash,
        sealed.response_hash,
    )));
    frames
}

pub fn encode(frames: &[Frame]) -> Vec<u8> {
    frames.iter().flat_map(|f| f.encode().unwrap()).collect()
}

//! Costs of the protocol operations on one request's path.
//! `cargo bench -p cloister-protocol -- --noplot`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use cloister_protocol::{
    NodeKeys, PayerKey, ReceiptDomain, RequestEnvelope, ResponseOpener, ResponseSealer,
    UsageReceipt, open_request, seal_request,
};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

/// One 200-byte OpenAI-style SSE event.
fn sse_event() -> Vec<u8> {
    let head = r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"smollm2","choices":[{"index":0,"delta":{"content":""#;
    let tail = "\"},\"finish_reason\":null}]}\n\n";
    let pad = 200 - head.len() - tail.len();
    format!("{head}{}{tail}", "x".repeat(pad)).into_bytes()
}

/// A sealer and opener for one request, the first chunk already exchanged.
fn exchange(
    node: &NodeKeys,
    request: &RequestEnvelope,
    sse: &[u8],
) -> (ResponseSealer, ResponseOpener) {
    let (body, mut opener) = seal_request(&node.key_config(), request).unwrap();
    let mut sealer = open_request(node, &ReceiptDomain::default(), &body)
        .unwrap()
        .sealer;
    opener.push(&sealer.seal_chunk(sse).unwrap()).unwrap();
    (sealer, opener)
}

fn bench(c: &mut Criterion) {
    let node = NodeKeys::generate().unwrap();
    let config = node.key_config();
    let domain = ReceiptDomain::default();
    let payer = PayerKey::generate();
    let request = payer
        .envelope(
            node.signer_address(),
            &domain,
            1_763_700_000,
            vec![b'x'; 2048],
        )
        .unwrap();
    let sse = sse_event();
    assert_eq!(sse.len(), 200);
    let sse = &sse[..];

    c.bench_function("seal_request_2KiB", |b| {
        b.iter(|| seal_request(black_box(&config), black_box(&request)).unwrap())
    });
    let (body, _) = seal_request(&config, &request).unwrap();
    c.bench_function("open_request_2KiB", |b| {
        b.iter(|| open_request(black_box(&node), &domain, black_box(&body)).unwrap())
    });
    let (mut sealer, _) = exchange(&node, &request, sse);
    c.bench_function("seal_chunk_200B", |b| {
        b.iter(|| sealer.seal_chunk(black_box(sse)).unwrap())
    });
    c.bench_function("open_chunk_200B", |b| {
        b.iter_batched(
            || {
                let (mut sealer, opener) = exchange(&node, &request, sse);
                (sealer.seal_chunk(sse).unwrap(), opener)
            },
            |(chunk, mut opener)| opener.push(&chunk).unwrap(),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("finish_seal_and_open", |b| {
        b.iter_batched(
            || exchange(&node, &request, sse),
            |(sealer, mut opener)| {
                let (last, hash) = sealer.finish().unwrap();
                opener.push(&last).unwrap();
                assert_eq!(opener.finish().unwrap().response_hash, hash);
            },
            BatchSize::SmallInput,
        )
    });
    let receipt = UsageReceipt {
        request_id: [1; 32].into(),
        node_signer: node.signer_address(),
        payer: payer.address(),
        model_id: "smollm2-135m-instruct-q4_1".into(),
        prompt_tokens: 42,
        completion_tokens: 1337,
        prompt_price: 1,
        completion_price: 3,
        request_hash: [2; 32].into(),
        response_hash: [3; 32].into(),
        issued_at: 1_763_700_000,
    };
    c.bench_function("sign_receipt", |b| {
        b.iter(|| {
            node.sign_receipt(black_box(receipt.clone()), &domain)
                .unwrap()
        })
    });
    let signed = node.sign_receipt(receipt, &domain).unwrap();
    c.bench_function("recover_receipt_signer", |b| {
        b.iter(|| black_box(&signed).recover_signer(&domain).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

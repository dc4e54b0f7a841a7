//! Sealed inference end to end on the tiny model: client seals, enclave
//! opens and generates, frames come back, the client opens them and checks
//! the receipt; and every way that must fail, fails cleanly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use axum::http::StatusCode;
use cloister_protocol::{
    Frame, NodeKeys, OpenError, ReceiptDomain, ResponseError, ResponseReader, seal_request,
};
use common::*;

#[tokio::test]
async fn streaming_chat_round_trip_with_a_receipt_for_the_tokens_generated() {
    let (state, _model) = tiny_node(&[]).await;
    let (status, body, opener) = send(&state, &chat(true, 12)).await;
    assert_eq!(status, StatusCode::OK);
    let request_hash = opener.request_hash();
    let done = open(&state, opener, &body).unwrap();

    let events = sse_events(&done.plaintext);
    assert!(events.len() >= 2, "{} events", events.len());
    assert!(String::from_utf8_lossy(&done.plaintext).ends_with("data: [DONE]\n\n"));
    for event in &events {
        assert_eq!(event["object"], "chat.completion.chunk");
    }
    // Each SSE event travelled as its own ciphertext frame.
    let ciphertext_frames = frames(&body)
        .iter()
        .filter(|f| matches!(f, Frame::Ciphertext(_)))
        .count();
    assert!(
        ciphertext_frames > events.len(),
        "{ciphertext_frames} frames for {} events",
        events.len()
    );

    let receipt = &done.receipt.receipt.receipt;
    let usage = &events.last().unwrap()["usage"];
    assert_eq!(
        receipt.completion_tokens,
        usage["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        receipt.prompt_tokens,
        usage["prompt_tokens"].as_u64().unwrap()
    );
    assert!(receipt.completion_tokens > 0 && receipt.completion_tokens <= 12);
    assert!(
        receipt.prompt_tokens > 10,
        "the prompt is tokenised bytes: {}",
        receipt.prompt_tokens
    );
    assert_eq!(receipt.model_id, "tiny");
    assert_eq!(receipt.node_signer, state.keys.signer_address());
    assert_eq!(receipt.request_hash.0, request_hash);
}

#[tokio::test]
async fn non_streaming_chat_and_completions() {
    let (state, _model) = tiny_node(&[]).await;
    let (status, body, opener) = send(&state, &chat(false, 8)).await;
    assert_eq!(status, StatusCode::OK);
    let done = open(&state, opener, &body).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&done.plaintext).unwrap();
    assert_eq!(json["object"], "chat.completion");
    assert_eq!(
        json["usage"]["completion_tokens"].as_u64().unwrap(),
        done.receipt.receipt.receipt.completion_tokens
    );
    // One ciphertext frame for the JSON, one final one.
    let n = frames(&body)
        .iter()
        .filter(|f| matches!(f, Frame::Ciphertext(_)))
        .count();
    assert_eq!(n, 2);

    let (status, body, opener) = send(&state, &completion(false, 8)).await;
    assert_eq!(status, StatusCode::OK);
    let whole = open(&state, opener, &body).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&whole.plaintext).unwrap();
    assert_eq!(json["object"], "text_completion");
    assert_eq!(
        json["model"], "tiny",
        "responses name the model id, not a path"
    );
    let whole_receipt = &whole.receipt.receipt.receipt;
    assert_eq!(
        json["usage"]["prompt_tokens"].as_u64().unwrap(),
        whole_receipt.prompt_tokens
    );
    assert_eq!(
        json["usage"]["completion_tokens"].as_u64().unwrap(),
        whole_receipt.completion_tokens
    );

    // mistral.rs sends no usage on completion streams: the receipt counts
    // the same prompt with the same tokenizer (exactly), and the streamed
    // text within [events, max_tokens].
    let (status, body, opener) = send(&state, &completion(true, 8)).await;
    assert_eq!(status, StatusCode::OK);
    let streamed = open(&state, opener, &body).unwrap();
    let events = sse_events(&streamed.plaintext);
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e["model"] == "tiny"));
    let streamed_receipt = &streamed.receipt.receipt.receipt;
    assert_eq!(streamed_receipt.prompt_tokens, whole_receipt.prompt_tokens);
    let n = streamed_receipt.completion_tokens;
    assert!(
        n >= events.len() as u64 && n <= 8,
        "{n} tokens for {} events",
        events.len()
    );
}

#[tokio::test]
async fn a_request_sealed_to_another_key_is_refused_before_anything_runs() {
    let (state, _model) = tiny_node(&[]).await;
    let other = NodeKeys::generate().unwrap();
    let envelope = payer()
        .envelope(
            other.signer_address(),
            &ReceiptDomain::default(),
            unix_now(),
            chat(false, 4).to_string().into_bytes(),
        )
        .unwrap();
    let (sealed, _) = seal_request(&other.key_config(), &envelope).unwrap();
    let (status, body) = post(&cloister_enclave::server::app(state.clone()), sealed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body).as_deref(), Some("undecryptable"));

    let (status, body) = post(
        &cloister_enclave::server::app(state),
        b"not sealed at all".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body).as_deref(), Some("undecryptable"));
}

#[tokio::test]
async fn a_replayed_request_is_refused() {
    let (state, _model) = tiny_node(&[]).await;
    let app = cloister_enclave::server::app(state.clone());
    let (sealed, _) = seal(&state, &chat(false, 4));
    let (first, _) = post(&app, sealed.clone()).await;
    assert_eq!(first, StatusCode::OK);
    let (again, body) = post(&app, sealed).await;
    assert_eq!(again, StatusCode::CONFLICT);
    assert_eq!(error_code(&body).as_deref(), Some("replayed"));
}

/// Rebuilds a frame sequence after `edit` on its frames.
fn reframe(body: &[u8], edit: impl FnOnce(&mut Vec<Frame>)) -> Vec<u8> {
    let mut all = frames(body);
    edit(&mut all);
    all.iter().flat_map(|f| f.encode().unwrap()).collect()
}

#[tokio::test]
async fn tampered_reordered_and_truncated_responses_fail_on_the_client() {
    let (state, _model) = tiny_node(&[]).await;
    let reader = |opener| {
        ResponseReader::new(
            opener,
            state.keys.signer_address(),
            ReceiptDomain::default(),
        )
    };

    // A flipped bit in a ciphertext chunk.
    let (_, body, opener) = send(&state, &chat(true, 8)).await;
    let tampered = reframe(&body, |f| {
        if let Frame::Ciphertext(c) = &mut f[1] {
            let last = c.len() - 1;
            c[last] ^= 1;
        }
    });
    assert!(matches!(
        reader(opener).read_all(&tampered),
        Err(ResponseError::Open(_))
    ));

    // Two chunks swapped.
    let (_, body, opener) = send(&state, &chat(true, 8)).await;
    let swapped = reframe(&body, |f| f.swap(1, 2));
    assert!(matches!(
        reader(opener).read_all(&swapped),
        Err(ResponseError::Open(_))
    ));

    // The final chunk and the receipt dropped: truncation.
    let (_, body, opener) = send(&state, &chat(true, 8)).await;
    let truncated = reframe(&body, |f| {
        f.truncate(f.len() - 2);
    });
    let err = reader(opener).read_all(&truncated).unwrap_err();
    assert!(
        matches!(
            err,
            ResponseError::Incomplete | ResponseError::Open(OpenError::Truncated)
        ),
        "{err}"
    );

    // Another request's (genuine) response.
    let (_, body_a, _opener_a) = send(&state, &chat(false, 4)).await;
    let (_, _body_b, opener_b) = send(&state, &chat(false, 4)).await;
    assert!(reader(opener_b).read_all(&body_a).is_err());
}

#[tokio::test]
async fn max_tokens_over_the_limit_and_invalid_json_fail_with_a_sealed_explanation() {
    let (state, _model) = tiny_node(&["--max-tokens", "16"]).await;
    let (status, body, opener) = send(&state, &chat(false, 17)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body).as_deref(), Some("max_tokens_exceeded"));
    // The router sees only the code; the client opens the explanation.
    let Frame::Error(frame) = frames(&body).pop().unwrap() else {
        panic!()
    };
    assert!(!frame.message.contains("16"), "{}", frame.message);
    let mut opener = opener;
    let mut plaintext = Vec::new();
    for f in frames(&body) {
        if let Frame::Ciphertext(c) = f {
            plaintext.extend(opener.push(&c).unwrap());
        }
    }
    opener.finish().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&plaintext).unwrap();
    assert_eq!(json["error"]["code"], "max_tokens_exceeded");
    assert!(json["error"]["message"].as_str().unwrap().contains("16"));

    let (sealed, _) = seal_bytes_at(&state, b"{not json", unix_now());
    let (status, body) = post(&cloister_enclave::server::app(state.clone()), sealed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body).as_deref(), Some("not_json"));

    let wrong_model = serde_json::json!({"model": "not-this-one", "messages": [{"role": "user", "content": "hi"}]});
    let (status, body, _) = send(&state, &wrong_model).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body).as_deref(), Some("rejected"));
}

#[tokio::test]
async fn receipts_recover_to_the_attested_signer_and_altered_ones_do_not() {
    let (state, _model) = tiny_node(&[]).await;
    let app = cloister_enclave::server::app(state.clone());
    let bundle = bundle(&app, [5; 32]).await;
    let attested: cloister_protocol::Address =
        bundle.identity["signer"].as_str().unwrap().parse().unwrap();

    let (_, body, opener) = send(&state, &chat(false, 6)).await;
    let done = open(&state, opener, &body).unwrap();
    let signed = done.receipt.receipt;
    let domain = ReceiptDomain::default();
    assert_eq!(signed.recover_signer(&domain).unwrap(), attested);

    let alterations: [fn(&mut cloister_protocol::UsageReceipt); 8] = [
        |r| r.completion_tokens += 1,
        |r| r.prompt_tokens -= 1,
        |r| r.payer.0[0] ^= 1,
        |r| r.prompt_price += 1,
        |r| r.completion_price += 1,
        |r| r.model_id.push('x'),
        |r| r.issued_at += 1,
        |r| r.response_hash.0[0] ^= 1,
    ];
    for alter in alterations {
        let mut forged = signed.clone();
        alter(&mut forged.receipt);
        assert_ne!(forged.recover_signer(&domain).ok(), Some(attested));
    }
    // Another chain's domain does not verify either.
    let other = ReceiptDomain {
        chain_id: 1,
        ..domain
    };
    assert_ne!(signed.recover_signer(&other).ok(), Some(attested));
}

#[tokio::test]
async fn a_full_node_answers_busy_at_once() {
    let (state, _model) = tiny_node(&["--max-concurrent", "1", "--queue", "0"]).await;
    let _held = state.admission.try_admit().unwrap();
    let (status, body, _) = send(&state, &chat(false, 4)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let Frame::Error(frame) = frames(&body).pop().unwrap() else {
        panic!()
    };
    assert_eq!(frame.code, "busy");
    assert!(frame.retryable);
}

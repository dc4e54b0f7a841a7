//! The enclave's request filter on arbitrary bytes: never panics, and
//! - an accepted body is an object with allowlisted keys only, its message
//!   content is strings or text parts only, and `max_tokens` is present and
//!   within the limit;
//! - filtering an accepted body again accepts it unchanged (idempotence; up
//!   to serde_json's float printing round trip);
//! - a refusal's `param` names something in the input (it is a key of the
//!   input object, or a path below one).
#![no_main]

use cloister_protocol::request_filter::{ApiKind, FilterLimits, filter_request};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const LIMITS: FilterLimits = FilterLimits { max_tokens: 512 };

const CHAT: &[&str] = &[
    "messages", "model", "max_tokens", "temperature", "top_p", "min_p", "top_k",
    "presence_penalty", "frequency_penalty", "repetition_penalty", "stop", "stream", "n",
    "logprobs", "top_logprobs", "logit_bias", "response_format", "enable_thinking",
];
const COMPLETION: &[&str] = &[
    "prompt", "model", "max_tokens", "temperature", "top_p", "min_p", "top_k",
    "presence_penalty", "frequency_penalty", "repetition_penalty", "stop", "stream", "n",
    "best_of", "logprobs", "logit_bias", "echo", "suffix",
];

/// Equal JSON, floats within a few ULPs: serde_json (without its
/// `float_roundtrip` feature) may parse a printed float one ULP off.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    match filter_request(data, &LIMITS) {
        Ok(accepted) => {
            let body = accepted.body.as_object().expect("an object");
            let allowed = match accepted.kind {
                ApiKind::Chat => CHAT,
                ApiKind::Completion => COMPLETION,
            };
            for key in body.keys() {
                assert!(allowed.contains(&key.as_str()), "{key} passed the filter");
            }
            let max = body.get("max_tokens").and_then(Value::as_u64).expect("max_tokens");
            assert!(max >= 1 && max <= LIMITS.max_tokens && max == accepted.max_tokens);
            if let Some(messages) = body.get("messages") {
                for message in messages.as_array().expect("messages array") {
                    match &message["content"] {
                        Value::String(_) => {}
                        Value::Array(parts) => {
                            for part in parts {
                                assert_eq!(part["type"], "text");
                                assert!(part.as_object().unwrap().len() == 2);
                            }
                        }
                        other => panic!("content {other} passed the filter"),
                    }
                }
            }
            let again = filter_request(accepted.body.to_string().as_bytes(), &LIMITS)
                .expect("an accepted body is accepted again");
            assert!(same(&again.body, &accepted.body), "{} vs {}", again.body, accepted.body);
        }
        Err(rejected) => {
            let _ = rejected.openai_error();
            if let (Some(param), Ok(Value::Object(input))) =
                (&rejected.param, serde_json::from_slice::<Value>(data))
            {
                let names_a_key = input.keys().any(|key| {
                    param == key
                        || param
                            .strip_prefix(key.as_str())
                            .is_some_and(|rest| rest.starts_with(['.', '[']))
                });
                assert!(names_a_key, "param {param} names nothing in the input");
            }
        }
    }
});

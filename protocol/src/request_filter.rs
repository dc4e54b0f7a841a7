//! The request filter: an explicit allowlist that every OpenAI request body
//! passes before it reaches the engine.
//!
//! mistral.rs's OpenAI layer (`mistralrs-server-core` 0.8.1) fetches
//! `image_url` / `audio_url` / `video_url` contents over HTTP (no timeout, no
//! size limit; `file://` URLs and bare paths are read from disk), lets
//! `web_search_options` send model-written queries out, and ignores unknown
//! fields. Inside a confidential VM that is exfiltration, SSRF, a file-read
//! primitive and an out-of-memory switch. So only what the service supports
//! on purpose passes: text content, and the fields below; everything else is
//! refused with an OpenAI-style 400 that names the field (`param`) and never
//! echoes a value (values may be prompt text).
//!
//! | field | chat | completion | rule | mistral.rs field |
//! |---|---|---|---|---|
//! | `messages` | required | — | 1..=4096 objects: `role` ∈ {system, developer, user, assistant}, `content` a string or text parts `{type:"text", text}`, optional `name` | `messages` |
//! | `prompt` | — | required | a string | `prompt` |
//! | `model` | ✓ | ✓ | string | `model` |
//! | `max_tokens`, `max_completion_tokens` | ✓ | ✓ | 1..=the node's limit, filled in with the limit when absent; both given must agree | `max_tokens` |
//! | `temperature` | ✓ | ✓ | 0..=2 | `temperature` |
//! | `top_p`, `min_p` | ✓ | ✓ | 0..=1 | `top_p`, `min_p` |
//! | `top_k` | ✓ | ✓ | integer ≥ 1 | `top_k` |
//! | `presence_penalty`, `frequency_penalty` | ✓ | ✓ | -2..=2 | same |
//! | `repetition_penalty` | ✓ | ✓ | (0, 10] | same |
//! | `stop` | ✓ | ✓ | a string or up to 4 strings of at most 256 bytes | `stop` |
//! | `stream` | ✓ | ✓ | bool | `stream` |
//! | `stream_options` | ✓ | ✓ | `{include_usage: bool}`, only with `stream: true`; removed from the body | — |
//! | `n` | ✓ | ✓ | 1 | `n` |
//! | `best_of` | — | ✓ | 1 | `best_of` |
//! | `logprobs` | bool | integer 0..=5 | | `logprobs` |
//! | `top_logprobs` | ✓ | — | 0..=20, only with `logprobs: true` | `top_logprobs` |
//! | `logit_bias` | ✓ | ✓ | up to 300 entries, token id (decimal) → -100..=100 | `logit_bias` |
//! | `response_format` | ✓ | — | `{type:"text"}` or `{type:"json_schema", json_schema:{name, schema, strict?, description?}}` | `response_format` |
//! | `echo` | — | ✓ | bool | `echo` |
//! | `suffix` | — | ✓ | string | `suffix` |
//! | `enable_thinking` | ✓ | — | bool | `enable_thinking` |
//! | `user` | ✓ | ✓ | string; removed from the body | — |
//!
//! Refused on purpose (until supported on purpose): `tools`, `tool_choice`,
//! `parallel_tool_calls`, `functions`, `function_call`, `web_search_options`,
//! `grammar`, the `dry_*` sampler, `audio`, `modalities`, `prediction`,
//! `seed` (mistral.rs would silently ignore it), `reasoning_effort`,
//! `truncate_sequence`, messages given as a bare string, non-text content
//! parts (image, audio, video, file, refusal), `tool` and `function` roles,
//! `tool_calls` and `tool_call_id`; and every field not named above.
//!
//! The version of these rules is [`FILTER_VERSION`]; it is part of the
//! enclave's attested identity.

use serde_json::{Map, Value};
use thiserror::Error;

/// The version of the allowlist, bound into the node's identity.
pub const FILTER_VERSION: u32 = 1;

/// Most messages in one chat request.
pub const MAX_MESSAGES: usize = 4096;
/// Most stop sequences.
pub const MAX_STOP: usize = 4;
/// Longest stop sequence, in bytes.
pub const MAX_STOP_BYTES: usize = 256;
/// Most `logit_bias` entries.
pub const MAX_LOGIT_BIAS: usize = 300;

/// Which OpenAI endpoint a body is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKind {
    /// `chat/completions` (the body has `messages`).
    Chat,
    /// `completions` (the body has `prompt`).
    Completion,
}

/// The node's limits the filter applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterLimits {
    /// The largest `max_tokens`, also the default.
    pub max_tokens: u64,
}

/// A request that passed the filter.
#[derive(Debug, Clone, PartialEq)]
pub struct FilteredRequest {
    /// Which endpoint.
    pub kind: ApiKind,
    /// The body to hand to mistral.rs: only allowlisted fields, `max_tokens`
    /// always set, `max_completion_tokens`, `stream_options` and `user`
    /// removed. Never log it.
    pub body: Value,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// The token limit that applies.
    pub max_tokens: u64,
}

/// Why a body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectCode {
    /// Not JSON.
    NotJson,
    /// JSON, but not an object.
    NotAnObject,
    /// Neither a chat nor a completion request.
    UnknownEndpoint,
    /// A field this service does not support (or does not know).
    UnsupportedField,
    /// Message content other than text.
    UnsupportedContent,
    /// A supported field with a value of the wrong type or out of range.
    InvalidValue,
    /// `max_tokens` above the node's limit.
    MaxTokensExceeded,
}

impl RejectCode {
    /// The stable code (OpenAI's `error.code`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NotJson => "not_json",
            Self::NotAnObject => "not_an_object",
            Self::UnknownEndpoint => "unknown_endpoint",
            Self::UnsupportedField => "unsupported_field",
            Self::UnsupportedContent => "unsupported_content",
            Self::InvalidValue => "invalid_value",
            Self::MaxTokensExceeded => "max_tokens_exceeded",
        }
    }
}

/// A refused request: the client's fault. `message` names fields and types,
/// never values.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct RequestRejected {
    /// What kind of refusal.
    pub code: RejectCode,
    /// The offending field as a path (`tools`, `messages[2].content[1].type`).
    pub param: Option<String>,
    /// Why, for the client.
    pub message: String,
}

impl RequestRejected {
    fn new(code: RejectCode, param: impl Into<Option<String>>, message: impl Into<String>) -> Self {
        Self {
            code,
            param: param.into(),
            message: message.into(),
        }
    }

    /// OpenAI's error shape: `{"error": {"message", "type", "param", "code"}}`.
    pub fn openai_error(&self) -> Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": "invalid_request_error",
                "param": self.param,
                "code": self.code.as_str(),
            }
        })
    }
}

type Checked<T> = Result<T, RequestRejected>;

fn unsupported(param: &str, why: &str) -> RequestRejected {
    RequestRejected::new(
        RejectCode::UnsupportedField,
        param.to_owned(),
        format!("`{param}` is not supported by this node: {why}"),
    )
}

fn invalid(param: &str, expected: &str) -> RequestRejected {
    RequestRejected::new(
        RejectCode::InvalidValue,
        param.to_owned(),
        format!("`{param}` must be {expected}"),
    )
}

/// Why a known field is refused, for the message.
fn refused_reason(field: &str) -> Option<&'static str> {
    Some(match field {
        "tools" | "tool_choice" | "parallel_tool_calls" | "functions" | "function_call" => {
            "tool calling is not offered"
        }
        "web_search_options" => "the node never reaches the network for a request",
        "grammar" => "grammar-constrained decoding is not offered",
        "dry_multiplier" | "dry_base" | "dry_allowed_length" | "dry_sequence_breakers" => {
            "the DRY sampler is not offered"
        }
        "audio" | "modalities" => "only text output is offered",
        "prediction" => "predicted outputs are not offered",
        "seed" => "seeded sampling is not offered (it would be silently ignored)",
        "reasoning_effort" | "truncate_sequence" => "not offered",
        _ => return None,
    })
}

/// Filters an opened request body.
pub fn filter_request(body: &[u8], limits: &FilterLimits) -> Checked<FilteredRequest> {
    let json: Value = serde_json::from_slice(body).map_err(|e| {
        RequestRejected::new(
            RejectCode::NotJson,
            None,
            format!(
                "the body is not JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    let Value::Object(object) = json else {
        return Err(RequestRejected::new(
            RejectCode::NotAnObject,
            None,
            "the body must be a JSON object",
        ));
    };
    let kind = match (
        object.contains_key("messages"),
        object.contains_key("prompt"),
    ) {
        (true, false) => ApiKind::Chat,
        (false, true) => ApiKind::Completion,
        _ => {
            return Err(RequestRejected::new(
                RejectCode::UnknownEndpoint,
                None,
                "expected a chat request (with `messages`) or a completion request (with `prompt`), not both",
            ));
        }
    };
    let mut out = Map::new();
    let mut stream = false;
    let mut stream_options = None;
    let mut max_tokens: Option<(u64, &str)> = None;
    let mut logprobs_on = false;
    let mut top_logprobs = None;
    for (key, value) in &object {
        let key = key.as_str();
        let chat = kind == ApiKind::Chat;
        match key {
            "messages" => {
                check_messages(value)?;
                out.insert(key.into(), value.clone());
            }
            "prompt" => {
                if !value.is_string() {
                    return Err(invalid(
                        "prompt",
                        "a string (arrays of prompts or token ids are not supported)",
                    ));
                }
                out.insert(key.into(), value.clone());
            }
            "model" | "suffix" if key == "model" || !chat => {
                if !value.is_string() {
                    return Err(invalid(key, "a string"));
                }
                out.insert(key.into(), value.clone());
            }
            "user" => {
                if !value.is_string() {
                    return Err(invalid(key, "a string"));
                }
            }
            "max_tokens" | "max_completion_tokens" => {
                let n = value
                    .as_u64()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| invalid(key, "a positive integer"))?;
                if let Some((other, other_key)) = max_tokens
                    && other != n
                {
                    return Err(RequestRejected::new(
                        RejectCode::InvalidValue,
                        key.to_owned(),
                        format!("`{key}` and `{other_key}` disagree; give one"),
                    ));
                }
                max_tokens = Some((n, key));
            }
            "temperature" => number_in(&mut out, key, value, 0.0, 2.0)?,
            "top_p" | "min_p" => number_in(&mut out, key, value, 0.0, 1.0)?,
            "presence_penalty" | "frequency_penalty" => {
                number_in(&mut out, key, value, -2.0, 2.0)?;
            }
            "repetition_penalty" => {
                let x = value.as_f64().filter(|x| *x > 0.0 && *x <= 10.0);
                x.ok_or_else(|| invalid(key, "a number above 0 and at most 10"))?;
                out.insert(key.into(), value.clone());
            }
            "top_k" => {
                value
                    .as_u64()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| invalid(key, "an integer of at least 1"))?;
                out.insert(key.into(), value.clone());
            }
            "stop" => {
                check_stop(value)?;
                out.insert(key.into(), value.clone());
            }
            "stream" => {
                stream = value
                    .as_bool()
                    .ok_or_else(|| invalid(key, "true or false"))?;
                out.insert(key.into(), value.clone());
            }
            "stream_options" => stream_options = Some(check_stream_options(value)?),
            "n" | "best_of" if key == "n" || !chat => {
                if value.as_u64() != Some(1) {
                    return Err(RequestRejected::new(
                        RejectCode::UnsupportedField,
                        key.to_owned(),
                        format!("`{key}` must be 1: one choice per request"),
                    ));
                }
                out.insert(key.into(), value.clone());
            }
            "logprobs" if chat => {
                logprobs_on = value
                    .as_bool()
                    .ok_or_else(|| invalid(key, "true or false"))?;
                out.insert(key.into(), value.clone());
            }
            "logprobs" => {
                value
                    .as_u64()
                    .filter(|n| *n <= 5)
                    .ok_or_else(|| invalid(key, "an integer from 0 to 5"))?;
                out.insert(key.into(), value.clone());
            }
            "top_logprobs" if chat => {
                top_logprobs = Some(
                    value
                        .as_u64()
                        .filter(|n| *n <= 20)
                        .ok_or_else(|| invalid(key, "an integer from 0 to 20"))?,
                );
                out.insert(key.into(), value.clone());
            }
            "logit_bias" => {
                check_logit_bias(value)?;
                out.insert(key.into(), value.clone());
            }
            "response_format" if chat => {
                check_response_format(value)?;
                out.insert(key.into(), value.clone());
            }
            "echo" if !chat => {
                value
                    .as_bool()
                    .ok_or_else(|| invalid(key, "true or false"))?;
                out.insert(key.into(), value.clone());
            }
            "enable_thinking" if chat => {
                value
                    .as_bool()
                    .ok_or_else(|| invalid(key, "true or false"))?;
                out.insert(key.into(), value.clone());
            }
            other => {
                let why = refused_reason(other).unwrap_or(if refused_reason_for_kind(other) {
                    "not a field of this endpoint"
                } else {
                    "unknown field"
                });
                return Err(unsupported(other, why));
            }
        }
    }
    if top_logprobs.is_some() && !logprobs_on {
        return Err(invalid("top_logprobs", "used only with `logprobs: true`"));
    }
    let include_usage = match stream_options {
        Some(_) if !stream => {
            return Err(invalid("stream_options", "used only with `stream: true`"));
        }
        Some(include) => include,
        None => false,
    };
    let max_tokens = match max_tokens {
        Some((n, key)) if n > limits.max_tokens => {
            return Err(RequestRejected::new(
                RejectCode::MaxTokensExceeded,
                key.to_owned(),
                format!(
                    "`{key}` {n} exceeds this node's limit of {}",
                    limits.max_tokens
                ),
            ));
        }
        Some((n, _)) => n,
        None => limits.max_tokens,
    };
    out.insert("max_tokens".into(), max_tokens.into());
    Ok(FilteredRequest {
        kind,
        body: Value::Object(out),
        stream,
        include_usage,
        max_tokens,
    })
}

/// Fields the other endpoint has: refused here with "not a field of this
/// endpoint" rather than "unknown".
fn refused_reason_for_kind(field: &str) -> bool {
    matches!(
        field,
        "suffix"
            | "best_of"
            | "echo"
            | "top_logprobs"
            | "response_format"
            | "enable_thinking"
            | "logprobs"
    )
}

fn number_in(
    out: &mut Map<String, Value>,
    key: &str,
    value: &Value,
    min: f64,
    max: f64,
) -> Checked<()> {
    value
        .as_f64()
        .filter(|x| (min..=max).contains(x))
        .ok_or_else(|| invalid(key, &format!("a number from {min} to {max}")))?;
    out.insert(key.into(), value.clone());
    Ok(())
}

fn check_stop(value: &Value) -> Checked<()> {
    let ok = |s: &str| s.len() <= MAX_STOP_BYTES;
    let expected =
        format!("a string or up to {MAX_STOP} strings, each at most {MAX_STOP_BYTES} bytes");
    match value {
        Value::String(s) if ok(s) => Ok(()),
        Value::Array(items)
            if items.len() <= MAX_STOP && items.iter().all(|i| i.as_str().is_some_and(ok)) =>
        {
            Ok(())
        }
        _ => Err(invalid("stop", &expected)),
    }
}

fn check_stream_options(value: &Value) -> Checked<bool> {
    let object = value
        .as_object()
        .ok_or_else(|| invalid("stream_options", "an object"))?;
    let mut include = false;
    for (key, value) in object {
        if key != "include_usage" {
            return Err(unsupported(
                &format!("stream_options.{key}"),
                "unknown field",
            ));
        }
        include = value
            .as_bool()
            .ok_or_else(|| invalid("stream_options.include_usage", "true or false"))?;
    }
    Ok(include)
}

fn check_logit_bias(value: &Value) -> Checked<()> {
    let object = value
        .as_object()
        .ok_or_else(|| invalid("logit_bias", "an object of token ids to numbers"))?;
    if object.len() > MAX_LOGIT_BIAS {
        return Err(invalid(
            "logit_bias",
            &format!("at most {MAX_LOGIT_BIAS} entries"),
        ));
    }
    for (token, bias) in object {
        if token.parse::<u32>().is_err()
            || !bias.as_f64().is_some_and(|b| (-100.0..=100.0).contains(&b))
        {
            return Err(invalid(
                "logit_bias",
                "an object mapping token ids (decimal strings) to numbers from -100 to 100",
            ));
        }
    }
    Ok(())
}

fn check_response_format(value: &Value) -> Checked<()> {
    let object = value
        .as_object()
        .ok_or_else(|| invalid("response_format", "an object"))?;
    match object.get("type").and_then(Value::as_str) {
        Some("text") => {
            if let Some(key) = object.keys().find(|k| *k != "type") {
                return Err(unsupported(
                    &format!("response_format.{key}"),
                    "unknown field",
                ));
            }
            Ok(())
        }
        Some("json_schema") => {
            for key in object.keys() {
                if key != "type" && key != "json_schema" {
                    return Err(unsupported(
                        &format!("response_format.{key}"),
                        "unknown field",
                    ));
                }
            }
            let schema = object
                .get("json_schema")
                .and_then(Value::as_object)
                .ok_or_else(|| invalid("response_format.json_schema", "an object"))?;
            for (key, value) in schema {
                let ok = match key.as_str() {
                    "name" | "description" => value.is_string(),
                    "schema" => value.is_object(),
                    "strict" => value.is_boolean(),
                    _ => {
                        return Err(unsupported(
                            &format!("response_format.json_schema.{key}"),
                            "unknown field",
                        ));
                    }
                };
                if !ok {
                    return Err(invalid(
                        &format!("response_format.json_schema.{key}"),
                        "of the type OpenAI documents",
                    ));
                }
            }
            if !schema.contains_key("name") || !schema.contains_key("schema") {
                return Err(invalid(
                    "response_format.json_schema",
                    "an object with `name` and `schema`",
                ));
            }
            Ok(())
        }
        Some("json_object") => Err(unsupported(
            "response_format.type",
            "`json_object` is not offered; use `json_schema`",
        )),
        _ => Err(invalid(
            "response_format.type",
            "\"text\" or \"json_schema\"",
        )),
    }
}

fn check_messages(value: &Value) -> Checked<()> {
    let messages = match value {
        Value::Array(messages) => messages,
        Value::String(_) => {
            return Err(invalid(
                "messages",
                "an array of message objects (not a string)",
            ));
        }
        _ => return Err(invalid("messages", "an array of message objects")),
    };
    if messages.is_empty() || messages.len() > MAX_MESSAGES {
        return Err(invalid(
            "messages",
            &format!("an array of 1 to {MAX_MESSAGES} messages"),
        ));
    }
    for (i, message) in messages.iter().enumerate() {
        let at = |field: &str| format!("messages[{i}].{field}");
        let object = message
            .as_object()
            .ok_or_else(|| invalid(&format!("messages[{i}]"), "an object"))?;
        for (key, value) in object {
            match key.as_str() {
                "role" => match value.as_str() {
                    Some("system" | "developer" | "user" | "assistant") => {}
                    Some("tool" | "function") => {
                        return Err(unsupported(&at("role"), "tool calling is not offered"));
                    }
                    _ => {
                        return Err(invalid(
                            &at("role"),
                            "one of \"system\", \"developer\", \"user\", \"assistant\"",
                        ));
                    }
                },
                "content" => check_content(value, i)?,
                "name" => {
                    if !value.is_string() {
                        return Err(invalid(&at("name"), "a string"));
                    }
                }
                "tool_calls" | "tool_call_id" | "function_call" => {
                    return Err(unsupported(&at(key), "tool calling is not offered"));
                }
                "audio" | "refusal" => return Err(unsupported(&at(key), "only text is offered")),
                other => return Err(unsupported(&at(other), "unknown field")),
            }
        }
        if !object.contains_key("role") {
            return Err(invalid(&at("role"), "present"));
        }
        if !object.contains_key("content") {
            return Err(invalid(&at("content"), "present (a string or text parts)"));
        }
    }
    Ok(())
}

fn check_content(value: &Value, i: usize) -> Checked<()> {
    let parts = match value {
        Value::String(_) => return Ok(()),
        Value::Array(parts) if !parts.is_empty() => parts,
        _ => {
            return Err(invalid(
                &format!("messages[{i}].content"),
                "a string or a non-empty array of text parts",
            ));
        }
    };
    for (j, part) in parts.iter().enumerate() {
        let at = |field: &str| format!("messages[{i}].content[{j}].{field}");
        let object = part
            .as_object()
            .ok_or_else(|| invalid(&format!("messages[{i}].content[{j}]"), "an object"))?;
        match object.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some(_) => {
                return Err(RequestRejected::new(
                    RejectCode::UnsupportedContent,
                    at("type"),
                    format!(
                        "`{}` must be \"text\": images, audio, video, files and URLs are not offered",
                        at("type")
                    ),
                ));
            }
            None => return Err(invalid(&at("type"), "\"text\"")),
        }
        for (key, value) in object {
            match key.as_str() {
                "type" => {}
                "text" if value.is_string() => {}
                "text" => return Err(invalid(&at("text"), "a string")),
                other => return Err(unsupported(&at(other), "unknown field of a text part")),
            }
        }
        if !object.contains_key("text") {
            return Err(invalid(&at("text"), "present"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: FilterLimits = FilterLimits { max_tokens: 256 };

    fn filter(body: Value) -> Checked<FilteredRequest> {
        filter_request(body.to_string().as_bytes(), &LIMITS)
    }

    fn refused(body: Value) -> RequestRejected {
        filter(body).unwrap_err()
    }

    fn chat(extra: Value) -> Value {
        let mut body =
            json!({"model": "m", "messages": [{"role": "user", "content": "SECRET-CANARY hello"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    }

    fn completion(extra: Value) -> Value {
        let mut body = json!({"model": "m", "prompt": "SECRET-CANARY once upon"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    }

    fn part(part: Value) -> Value {
        json!({"model": "m", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "SECRET-CANARY"}, part]}]})
    }

    #[test]
    fn typical_sdk_requests_pass_with_max_tokens_filled_and_extras_removed() {
        let passed = filter(chat(json!({
            "temperature": 0.7, "top_p": 1, "stream": true,
            "stream_options": {"include_usage": true}, "user": "u-1",
            "stop": ["\n\n"], "presence_penalty": 0, "frequency_penalty": 0.5,
            "logprobs": true, "top_logprobs": 3, "logit_bias": {"50256": -100},
            "max_completion_tokens": 64, "n": 1,
        })))
        .unwrap();
        assert_eq!(passed.kind, ApiKind::Chat);
        assert!(passed.stream && passed.include_usage);
        assert_eq!(passed.max_tokens, 64);
        let body = passed.body.as_object().unwrap();
        assert_eq!(body["max_tokens"], 64);
        for gone in ["max_completion_tokens", "stream_options", "user"] {
            assert!(!body.contains_key(gone), "{gone}");
        }
        assert_eq!(body["messages"], chat(json!({}))["messages"]);

        let passed = filter(completion(
            json!({"echo": false, "best_of": 1, "logprobs": 2, "suffix": "."}),
        ))
        .unwrap();
        assert_eq!(passed.kind, ApiKind::Completion);
        assert_eq!(passed.max_tokens, 256, "the node's limit by default");
        assert_eq!(passed.body["max_tokens"], 256);

        let text_parts = filter(part(json!({"type": "text", "text": "more"}))).unwrap();
        assert_eq!(text_parts.body["messages"][1]["content"][1]["text"], "more");
        let json_schema = filter(chat(json!({"response_format": {"type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": true}}})));
        assert!(json_schema.is_ok());
    }

    #[test]
    fn content_that_would_be_fetched_or_read_is_refused_naming_the_part() {
        for p in [
            json!({"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/x.png"}}),
            json!({"type": "image_url", "image_url": {"url": "file:///etc/shadow"}}),
            json!({"type": "image_url", "image_url": {"url": "/etc/shadow"}}),
            json!({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}),
            json!({"type": "audio_url", "audio_url": {"url": "http://x/a.wav"}}),
            json!({"type": "video_url", "video_url": {"url": "http://x/v.mp4"}}),
            json!({"type": "file", "file": {"file_id": "f"}}),
            json!({"type": "refusal", "refusal": "no"}),
        ] {
            let e = refused(part(p));
            assert_eq!(e.code, RejectCode::UnsupportedContent);
            assert_eq!(e.param.as_deref(), Some("messages[1].content[1].type"));
        }
        let e = refused(part(
            json!({"type": "text", "text": "x", "image_url": {"url": "http://x"}}),
        ));
        assert_eq!(e.param.as_deref(), Some("messages[1].content[1].image_url"));
    }

    #[test]
    fn tools_search_and_unknown_fields_are_refused_by_name() {
        for (extra, param) in [
            (json!({"tools": []}), "tools"),
            (json!({"tool_choice": "none"}), "tool_choice"),
            (json!({"web_search_options": {}}), "web_search_options"),
            (
                json!({"grammar": {"type": "regex", "value": "a"}}),
                "grammar",
            ),
            (json!({"seed": 1}), "seed"),
            (json!({"n": 2}), "n"),
            (json!({"dry_multiplier": 0.8}), "dry_multiplier"),
            (json!({"surprise": 1}), "surprise"),
            (json!({"best_of": 1}), "best_of"),
            (
                json!({"stream": true, "stream_options": {"include_usage": true, "x": 1}}),
                "stream_options.x",
            ),
        ] {
            let e = refused(chat(extra));
            assert_eq!(e.param.as_deref(), Some(param), "{e:?}");
            assert_eq!(e.code, RejectCode::UnsupportedField);
        }
        assert_eq!(
            refused(completion(json!({"best_of": 3}))).param.as_deref(),
            Some("best_of")
        );
        assert_eq!(
            refused(completion(json!({"tools": []}))).param.as_deref(),
            Some("tools")
        );
        for (message, param) in [
            (
                json!({"role": "tool", "content": "x", "tool_call_id": "1"}),
                "messages[0]",
            ),
            (
                json!({"role": "assistant", "content": "x", "tool_calls": []}),
                "messages[0].tool_calls",
            ),
            (
                json!({"role": "user", "content": "x", "extra": 1}),
                "messages[0].extra",
            ),
            (
                json!({"role": "user", "content": null}),
                "messages[0].content",
            ),
            (json!({"role": "user"}), "messages[0].content"),
        ] {
            let e = refused(json!({"model": "m", "messages": [message]}));
            assert!(e.param.as_deref().unwrap().starts_with(param), "{e:?}");
        }
        let e = refused(json!({"model": "m", "messages": "a bare string"}));
        assert_eq!(e.param.as_deref(), Some("messages"));
    }

    #[test]
    fn limits_and_types() {
        let e = refused(chat(json!({"max_tokens": 257})));
        assert_eq!(
            (e.code, e.param.as_deref()),
            (RejectCode::MaxTokensExceeded, Some("max_tokens"))
        );
        assert!(
            refused(chat(json!({"max_tokens": 10, "max_completion_tokens": 11})))
                .message
                .contains("disagree")
        );
        assert!(filter(chat(json!({"max_tokens": 10, "max_completion_tokens": 10}))).is_ok());
        for (extra, param) in [
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"max_tokens": "5"}), "max_tokens"),
            (json!({"temperature": 3}), "temperature"),
            (json!({"stop": ["a", "b", "c", "d", "e"]}), "stop"),
            (json!({"stop": "x".repeat(257)}), "stop"),
            (
                json!({"logit_bias": (0..301).map(|i| (i.to_string(), json!(1))).collect::<Map<_, _>>()}),
                "logit_bias",
            ),
            (json!({"logit_bias": {"abc": 1}}), "logit_bias"),
            (
                json!({"stream_options": {"include_usage": true}}),
                "stream_options",
            ),
            (json!({"top_logprobs": 2}), "top_logprobs"),
            (
                json!({"response_format": {"type": "json_object"}}),
                "response_format.type",
            ),
        ] {
            assert_eq!(
                refused(chat(extra.clone())).param.as_deref(),
                Some(param),
                "{extra}"
            );
        }
        assert_eq!(
            refused(completion(json!({"prompt": ["a", "b"]})))
                .param
                .as_deref(),
            Some("prompt")
        );
        assert_eq!(
            refused(json!({"messages": [], "prompt": "x"})).code,
            RejectCode::UnknownEndpoint
        );
        assert_eq!(refused(json!([1])).code, RejectCode::NotAnObject);
        assert_eq!(
            filter_request(b"{nope", &LIMITS).unwrap_err().code,
            RejectCode::NotJson
        );
    }

    #[test]
    fn refusals_never_echo_request_text_and_are_openai_shaped() {
        for body in [
            chat(json!({"tools": "SECRET-CANARY"})),
            chat(json!({"stop": "SECRET-CANARY".repeat(40)})),
            part(json!({"type": "image_url", "image_url": {"url": "http://SECRET-CANARY"}})),
            json!({"model": "m", "messages": [{"role": "SECRET-CANARY", "content": "x"}]}),
        ] {
            let e = refused(body);
            let error = e.openai_error();
            assert!(!error.to_string().contains("SECRET-CANARY"), "{error}");
            assert_eq!(error["error"]["type"], "invalid_request_error");
            assert_eq!(error["error"]["code"], e.code.as_str());
            assert_eq!(error["error"]["param"], e.param.clone().unwrap());
        }
        let e = filter_request(b"SECRET-CANARY", &LIMITS).unwrap_err();
        assert!(!e.message.contains("SECRET"));
    }

    #[test]
    fn filtering_an_accepted_body_again_gives_the_same_body() {
        let first = filter(chat(
            json!({"stream": true, "stream_options": {"include_usage": false}, "user": "x"}),
        ))
        .unwrap();
        let again = filter(first.body.clone()).unwrap();
        assert_eq!(again.body, first.body);
    }
}

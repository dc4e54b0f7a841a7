//! What a forwarder may read of an OpenAI request body before sealing it
//! unchanged: `model`, `stream`, the token limit, and whether it has
//! `messages` (chat) or `prompt` (completions). The router and
//! `cloister proxy` read bodies through this one function.

use serde::Deserialize;

/// Which OpenAI endpoint a body was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`
    Chat,
    /// `/v1/completions`
    Completions,
}

impl Endpoint {
    /// A label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Chat => "chat_completions",
            Self::Completions => "completions",
        }
    }
}

/// The fields a forwarder reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peeked {
    /// `model`.
    pub model: String,
    /// `stream`.
    pub stream: bool,
    /// `max_completion_tokens`, else `max_tokens`, if given.
    pub max_tokens: Option<u64>,
}

/// Why a body is refused, as OpenAI words a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BodyError {
    /// What is wrong.
    pub message: String,
    /// The offending field.
    pub param: Option<&'static str>,
}

fn refuse(message: impl Into<String>, param: Option<&'static str>) -> BodyError {
    BodyError {
        message: message.into(),
        param,
    }
}

#[derive(Deserialize)]
struct Peek {
    model: Option<serde_json::Value>,
    stream: Option<serde_json::Value>,
    max_tokens: Option<serde_json::Value>,
    max_completion_tokens: Option<serde_json::Value>,
    messages: Option<serde::de::IgnoredAny>,
    prompt: Option<serde::de::IgnoredAny>,
}

/// Reads the routing fields of `body` sent to `endpoint`.
pub fn peek(body: &[u8], endpoint: Endpoint) -> Result<Peeked, BodyError> {
    let peek: Peek = serde_json::from_slice(body).map_err(|e| {
        refuse(
            format!("The body is not a JSON object this endpoint takes ({e})."),
            None,
        )
    })?;
    let model = match peek.model {
        Some(serde_json::Value::String(m)) if !m.is_empty() => m,
        Some(_) => return Err(refuse("`model` must be a string.", Some("model"))),
        None => {
            return Err(refuse("You must provide a model parameter.", Some("model")));
        }
    };
    match (endpoint, peek.messages.is_some(), peek.prompt.is_some()) {
        (Endpoint::Chat, true, false) | (Endpoint::Completions, false, true) => {}
        (Endpoint::Chat, _, _) => {
            return Err(refuse(
                "Chat completions take `messages` (and no `prompt`).",
                Some("messages"),
            ));
        }
        (Endpoint::Completions, _, _) => {
            return Err(refuse(
                "Completions take `prompt` (and no `messages`).",
                Some("prompt"),
            ));
        }
    }
    let stream = match peek.stream {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => b,
        Some(_) => return Err(refuse("`stream` must be a boolean.", Some("stream"))),
    };
    let limit = |v: Option<serde_json::Value>, name: &'static str| match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| refuse(format!("`{name}` must be a positive integer."), Some(name))),
    };
    let max_tokens = limit(peek.max_completion_tokens, "max_completion_tokens")?
        .or(limit(peek.max_tokens, "max_tokens")?);
    Ok(Peeked {
        model,
        stream,
        max_tokens,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_routing_fields_and_refuses_the_wrong_shape() {
        let chat = br#"{"model":"m","messages":[],"stream":true,"max_tokens":5}"#;
        let p = peek(chat, Endpoint::Chat).unwrap();
        assert_eq!(
            (p.model.as_str(), p.stream, p.max_tokens),
            ("m", true, Some(5))
        );
        assert_eq!(
            peek(chat, Endpoint::Completions).unwrap_err().param,
            Some("prompt")
        );
        let e = peek(br#"{"messages":[]}"#, Endpoint::Chat).unwrap_err();
        assert_eq!(e.param, Some("model"));
        let e = peek(
            br#"{"model":"m","prompt":"x","stream":"yes"}"#,
            Endpoint::Completions,
        )
        .unwrap_err();
        assert_eq!(e.param, Some("stream"));
        assert!(peek(b"[1]", Endpoint::Chat).unwrap_err().param.is_none());
    }
}

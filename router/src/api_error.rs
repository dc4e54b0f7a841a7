//! Every error a client can see, mapped to an HTTP status and OpenAI's error
//! JSON (`{"error":{"message","type","param","code"}}`) in one place.
//! Messages say whose fault it is and what to do; they never carry internal
//! detail (database errors, node addresses) or request text.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answered to an API client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No or malformed `Authorization: Bearer` header.
    #[error("missing API key")]
    MissingKey,
    /// The key is unknown or revoked.
    #[error("invalid API key")]
    InvalidKey,
    /// The request body is not what the endpoint takes.
    #[error("{message}")]
    BadRequest {
        /// What is wrong.
        message: String,
        /// The offending field, when there is one.
        param: Option<&'static str>,
    },
    /// The body is larger than the router accepts.
    #[error("request body larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// No attested node serves the model.
    #[error("model {model:?} not found")]
    UnknownModel {
        /// The model asked for.
        model: String,
    },
    /// The node id is not known.
    #[error("node {0:?} not found")]
    UnknownNode(String),
    /// No settlement batch has this id.
    #[error("settlement batch {0} not found")]
    UnknownBatch(i64),
    /// Over the key's requests or tokens per minute.
    #[error("rate limit reached")]
    RateLimited {
        /// Which limit.
        limit: &'static str,
        /// Seconds until a retry can succeed.
        retry_after_secs: u64,
    },
    /// The account has no balance left.
    #[error("insufficient quota")]
    InsufficientQuota,
    /// No attested node can take the request now.
    #[error("no attested node available")]
    NoNode {
        /// Why.
        detail: String,
    },
    /// Every node tried failed before answering.
    #[error("upstream failure")]
    Upstream {
        /// What happened (safe to show: no addresses).
        detail: String,
    },
    /// The router's own failure (database, ...).
    #[error("internal error")]
    Internal,
    /// A join with a wrong token.
    #[error("invalid join token")]
    InvalidJoinToken,
}

impl ApiError {
    /// A 400 naming a field.
    pub fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self::BadRequest {
            message: message.into(),
            param,
        }
    }

    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingKey | Self::InvalidKey | Self::InvalidJoinToken => {
                StatusCode::UNAUTHORIZED
            }
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnknownModel { .. } | Self::UnknownNode(_) | Self::UnknownBatch(_) => {
                StatusCode::NOT_FOUND
            }
            Self::RateLimited { .. } | Self::InsufficientQuota => StatusCode::TOO_MANY_REQUESTS,
            Self::NoNode { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `type` and `code`.
    fn type_and_code(&self) -> (&'static str, &'static str) {
        match self {
            Self::MissingKey => ("invalid_request_error", "missing_api_key"),
            Self::InvalidKey => ("invalid_request_error", "invalid_api_key"),
            Self::InvalidJoinToken => ("invalid_request_error", "invalid_join_token"),
            Self::BadRequest { .. } => ("invalid_request_error", "invalid_request"),
            Self::TooLarge { .. } => ("invalid_request_error", "request_too_large"),
            Self::UnknownModel { .. } => ("invalid_request_error", "model_not_found"),
            Self::UnknownNode(_) => ("invalid_request_error", "node_not_found"),
            Self::UnknownBatch(_) => ("invalid_request_error", "batch_not_found"),
            Self::RateLimited { .. } => ("requests", "rate_limit_exceeded"),
            Self::InsufficientQuota => ("insufficient_quota", "insufficient_quota"),
            Self::NoNode { .. } => ("server_error", "no_attested_node"),
            Self::Upstream { .. } => ("server_error", "upstream_error"),
            Self::Internal => ("server_error", "internal_error"),
        }
    }

    /// The message shown to the client.
    pub fn message(&self) -> String {
        match self {
            Self::MissingKey => {
                "You didn't provide an API key. Send it as `Authorization: Bearer <key>`.".into()
            }
            Self::InvalidKey => "Incorrect or revoked API key.".into(),
            Self::InvalidJoinToken => "The join token is not one this router accepts.".into(),
            Self::BadRequest { message, .. } => message.clone(),
            Self::TooLarge { limit } => format!("The request body is larger than {limit} bytes."),
            Self::UnknownModel { model } => format!(
                "The model `{model}` does not exist or no attested node serves it (GET /v1/models lists those that do)."
            ),
            Self::UnknownNode(id) => {
                format!("No node with id `{id}` (GET /v1/attestation lists them).")
            }
            Self::UnknownBatch(id) => {
                format!("No settlement batch {id} (GET /v1/audit/batches lists them).")
            }
            Self::RateLimited {
                limit,
                retry_after_secs,
            } => format!("Rate limit reached for {limit}; retry in {retry_after_secs} s."),
            Self::InsufficientQuota => {
                "You exceeded your current quota: the account has no balance left.".into()
            }
            Self::NoNode { detail } => {
                format!("No attested node can take this request now ({detail}); retry later.")
            }
            Self::Upstream { detail } => format!(
                "The node failed before answering ({detail}); nothing was charged. Retry may help."
            ),
            Self::Internal => "The router failed; nothing was charged. Retry may help.".into(),
        }
    }

    /// The OpenAI error JSON.
    pub fn body(&self) -> serde_json::Value {
        let (kind, code) = self.type_and_code();
        let param = match self {
            Self::BadRequest { param, .. } => *param,
            Self::UnknownModel { .. } => Some("model"),
            _ => None,
        };
        json!({ "error": { "message": self.message(), "type": kind, "param": param, "code": code } })
    }

    /// The stable code, for metrics and logs.
    pub fn code(&self) -> &'static str {
        self.type_and_code().1
    }

    /// An SSE event carrying the error, for a stream that already started.
    pub fn sse_event(&self) -> String {
        format!("data: {}\n\n", self.body())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        let retry = match &self {
            Self::RateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            Self::NoNode { .. } | Self::Upstream { .. } => Some(1),
            _ => None,
        };
        if let Some(secs) = retry
            && let Ok(value) = HeaderValue::from_str(&secs.max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if matches!(self, Self::MissingKey | Self::InvalidKey) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_match_openai() {
        let e = ApiError::UnknownModel {
            model: "gpt-x".into(),
        };
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        let body = e.body();
        assert_eq!(body["error"]["code"], "model_not_found");
        assert_eq!(body["error"]["param"], "model");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        let e = ApiError::RateLimited {
            limit: "requests per minute",
            retry_after_secs: 3,
        };
        let response = e.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        assert_eq!(
            ApiError::InsufficientQuota.body()["error"]["type"],
            "insufficient_quota"
        );
    }
}

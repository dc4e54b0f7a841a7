//! Every error the proxy answers, as OpenAI's error JSON, in one place.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ClientError;

/// An error answered by the proxy.
#[derive(Debug)]
pub(crate) enum ProxyError {
    /// No `Authorization` header and no `--api-key`.
    MissingKey,
    /// The body is not what the endpoint takes.
    BadRequest {
        message: String,
        param: Option<&'static str>,
    },
    /// Larger than the proxy forwards.
    TooLarge { limit: usize },
    /// A client error (the router's own answers pass through unchanged).
    Client(ClientError),
}

impl ProxyError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str, String) {
        match self {
            Self::MissingKey => (
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "missing_api_key",
                "You didn't provide an API key: send `Authorization: Bearer <key>`, or start the proxy with --api-key.".into(),
            ),
            Self::BadRequest { message, .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request",
                message.clone(),
            ),
            Self::TooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "request_too_large",
                format!("The request body is larger than {limit} bytes."),
            ),
            Self::Client(e) => match e {
                ClientError::NoTrustedNode { .. } => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "no_trusted_node",
                    format!("Nothing was sent: {e}."),
                ),
                ClientError::UnknownModel { .. } => (
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    "model_not_found",
                    format!("{e}."),
                ),
                ClientError::Config(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "proxy_error",
                    format!("The proxy failed: {e}."),
                ),
                _ => (
                    StatusCode::BAD_GATEWAY,
                    "server_error",
                    "upstream_error",
                    format!("{e}. Nothing incomplete was passed on as complete; retry may help."),
                ),
            },
        }
    }

    /// The error JSON.
    pub(crate) fn body(&self) -> serde_json::Value {
        let (_, kind, code, message) = self.parts();
        let param = match self {
            Self::BadRequest { param, .. } => *param,
            Self::Client(ClientError::UnknownModel { .. }) => Some("model"),
            _ => None,
        };
        json!({ "error": { "message": message, "type": kind, "param": param, "code": code } })
    }

    /// An SSE event carrying the error, for a stream that already started.
    pub(crate) fn sse_event(&self) -> String {
        format!("data: {}\n\n", self.body())
    }
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        // The router's and the node's own answers pass through as they are.
        match self {
            Self::Client(ClientError::Router {
                status,
                body,
                retry_after,
                ..
            }) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                let mut response =
                    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
                if let Some(secs) = retry_after
                    && let Ok(value) = HeaderValue::from_str(&secs.to_string())
                {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                response
            }
            Self::Client(ClientError::NodeRefused { status, body, .. }) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
                (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
            }
            other => {
                let (status, ..) = other.parts();
                let mut response = (status, axum::Json(other.body())).into_response();
                if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::BAD_GATEWAY {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                }
                response
            }
        }
    }
}

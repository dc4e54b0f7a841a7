//! Answers that are not a stream: frames with an HTTP status.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloister_protocol::{CONTENT_TYPE as FRAMES_CONTENT_TYPE, ErrorFrame, Frame, ResponseSealer};

use crate::inference::InferenceError;

/// An error frame. `message` is shown to the router: never request text.
pub(crate) fn error_frame(code: &str, message: impl Into<String>, retryable: bool) -> Frame {
    Frame::Error(ErrorFrame {
        code: code.to_owned(),
        message: message.into(),
        retryable,
    })
}

/// A response made of frames, with a status.
pub(crate) fn frames_response(
    status: StatusCode,
    frames: &[Frame],
    retry_after: Option<u64>,
) -> Response {
    // Every frame here is small; encoding only fails for payloads over the
    // frame limit.
    let body: Vec<u8> = frames
        .iter()
        .filter_map(|f| f.encode().ok())
        .flatten()
        .collect();
    let mut response =
        (status, [(header::CONTENT_TYPE, FRAMES_CONTENT_TYPE)], body).into_response();
    if let Some(secs) = retry_after
        && let Ok(value) = header::HeaderValue::from_str(&secs.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// An error in the clear only: the request could not be opened, so there is
/// nothing to seal to.
pub(crate) fn clear_failure(
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
    retryable: bool,
) -> Response {
    let retry_after = retryable.then_some(1);
    frames_response(
        status,
        &[error_frame(code, message, retryable)],
        retry_after,
    )
}

/// The frames that end a request in error: the OpenAI-shaped error sealed
/// for the client (an SSE event when streaming), the final chunk, then an
/// error frame whose clear text is only the code and `clear_message`.
pub(crate) fn error_frames(
    mut sealer: ResponseSealer,
    error: &InferenceError,
    stream: bool,
    clear_message: &str,
    retryable: bool,
) -> Vec<Frame> {
    let body = error.client_body().to_string();
    let plaintext = if stream {
        format!("data: {body}\n\n")
    } else {
        body
    };
    let mut frames = Vec::new();
    if let Ok(chunk) = sealer.seal_chunk(plaintext.as_bytes()) {
        frames.push(Frame::Ciphertext(chunk));
    }
    if let Ok((last, _)) = sealer.finish() {
        frames.push(Frame::Ciphertext(last));
    }
    frames.push(error_frame(error.code(), clear_message, retryable));
    frames
}

/// A refusal before generation: the sealed explanation, with a status.
pub(crate) fn sealed_failure(
    status: StatusCode,
    sealer: ResponseSealer,
    error: &InferenceError,
    stream: bool,
) -> Response {
    let frames = error_frames(
        sealer,
        error,
        stream,
        "the request failed; details are in the sealed response",
        false,
    );
    frames_response(status, &frames, None)
}

/// HTTP status for an error before the first chunk.
pub(crate) fn status_of(error: &InferenceError) -> StatusCode {
    if error.is_client_error() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

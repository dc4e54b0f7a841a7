//! The response body from enclave to router to client: a sequence of frames
//! `type u8 | length u32 big-endian | payload`.
//!
//! | type | frame | payload |
//! | --- | --- | --- |
//! | 1 | ciphertext | chunked-OHTTP bytes from [`ResponseSealer`](crate::ResponseSealer) |
//! | 2 | receipt | [`SignedReceipt`] as JSON |
//! | 3 | error | [`ErrorFrame`] as JSON |

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::receipt::SignedReceipt;

/// The media type of a frame sequence.
pub const CONTENT_TYPE: &str = "application/vnd.cloister.frames";
/// Bytes before each payload: type and length.
pub const FRAME_HEADER_LEN: usize = 5;
/// The largest payload accepted (1 MiB).
pub const MAX_FRAME_PAYLOAD: usize = 1 << 20;

/// The frame type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    Ciphertext = 1,
    Receipt = 2,
    Error = 3,
}

impl TryFrom<u8> for FrameType {
    type Error = FrameError;

    fn try_from(byte: u8) -> Result<Self, FrameError> {
        match byte {
            1 => Ok(Self::Ciphertext),
            2 => Ok(Self::Receipt),
            3 => Ok(Self::Error),
            frame_type => Err(FrameError::UnknownType { frame_type }),
        }
    }
}

/// An error reported in band, after which no more frames follow. `code` is a
/// stable machine-readable string; `message` has no internal detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorFrame {
    pub code: String,
    pub message: String,
    /// Whether sending the same request again (resealed) may succeed.
    pub retryable: bool,
}

/// One frame. (Frames are handled one at a time, so the receipt variant's
/// size does not matter.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Ciphertext(Vec<u8>),
    Receipt(SignedReceipt),
    Error(ErrorFrame),
}

/// A frame sequence that cannot be encoded or decoded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("unknown frame type {frame_type}")]
    UnknownType { frame_type: u8 },
    #[error("{frame_type:?} frame of {len} bytes exceeds the {max}-byte maximum")]
    TooLarge {
        frame_type: FrameType,
        len: usize,
        max: usize,
    },
    #[error("frame sequence ends inside a frame: {buffered} bytes left over")]
    Truncated { buffered: usize },
    #[error("{frame_type:?} frame payload is not valid JSON of its type: {source}")]
    BadPayload {
        frame_type: FrameType,
        #[source]
        source: serde_json::Error,
    },
    #[error("the decoder failed earlier")]
    AfterError,
}

impl Frame {
    pub fn frame_type(&self) -> FrameType {
        match self {
            Self::Ciphertext(_) => FrameType::Ciphertext,
            Self::Receipt(_) => FrameType::Receipt,
            Self::Error(_) => FrameType::Error,
        }
    }

    /// The encoded frame. Fails when the payload exceeds [`MAX_FRAME_PAYLOAD`]
    /// (no decoder would accept it) or cannot be serialised.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let frame_type = self.frame_type();
        let json = |r: Result<Vec<u8>, serde_json::Error>| {
            r.map_err(|source| FrameError::BadPayload { frame_type, source })
        };
        let owned;
        let payload: &[u8] = match self {
            Self::Ciphertext(bytes) => bytes,
            Self::Receipt(receipt) => {
                owned = json(serde_json::to_vec(receipt))?;
                &owned
            }
            Self::Error(error) => {
                owned = json(serde_json::to_vec(error))?;
                &owned
            }
        };
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|_| payload.len() <= MAX_FRAME_PAYLOAD)
            .ok_or(FrameError::TooLarge {
                frame_type,
                len: payload.len(),
                max: MAX_FRAME_PAYLOAD,
            })?;
        let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
        out.push(frame_type as u8);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(payload);
        Ok(out)
    }
}

/// Splits a byte stream, pushed in pieces of any size, into frames. After an
/// error every call fails.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already decoded.
    pos: usize,
    failed: bool,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes. Call [`next_frame`](Self::next_frame) until it returns
    /// `None` after each push; only one partial frame is ever buffered then.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes pushed and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete frame, or `None` when more bytes are needed. Unknown
    /// types and oversize lengths fail as soon as the header has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.failed {
            return Err(FrameError::AfterError);
        }
        let result = self.decode();
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn decode(&mut self) -> Result<Option<Frame>, FrameError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let Some((&type_byte, after_type)) = rest.split_first() else {
            return Ok(None);
        };
        let frame_type = FrameType::try_from(type_byte)?;
        let Some((len_bytes, after_len)) = after_type.split_first_chunk::<4>() else {
            return Ok(None);
        };
        let len = usize::try_from(u32::from_be_bytes(*len_bytes)).unwrap_or(usize::MAX);
        if len > MAX_FRAME_PAYLOAD {
            return Err(FrameError::TooLarge {
                frame_type,
                len,
                max: MAX_FRAME_PAYLOAD,
            });
        }
        let Some(payload) = after_len.get(..len) else {
            return Ok(None);
        };
        let json = |source| FrameError::BadPayload { frame_type, source };
        let frame = match frame_type {
            FrameType::Ciphertext => Frame::Ciphertext(payload.to_vec()),
            FrameType::Receipt => Frame::Receipt(serde_json::from_slice(payload).map_err(json)?),
            FrameType::Error => Frame::Error(serde_json::from_slice(payload).map_err(json)?),
        };
        self.pos += FRAME_HEADER_LEN + len;
        Ok(Some(frame))
    }

    /// Declares the stream ended: fails if a partial frame is left over.
    pub fn finish(self) -> Result<(), FrameError> {
        if self.failed {
            return Err(FrameError::AfterError);
        }
        match self.buffered() {
            0 => Ok(()),
            buffered => Err(FrameError::Truncated { buffered }),
        }
    }
}

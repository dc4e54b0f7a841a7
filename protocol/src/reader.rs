//! Client side of a whole response: frames in, plaintext and a verified
//! receipt out.
//!
//! Ordering rules: ciphertext frames, then exactly one receipt or one error
//! frame, then nothing. A receipt before the final ciphertext chunk, a second
//! receipt, or any frame after the receipt is an error.

use alloy_primitives::Address;
use thiserror::Error;

use crate::{
    error::OpenError,
    frames::{ErrorFrame, Frame, FrameDecoder, FrameError, FrameType},
    receipt::{ExpectedReceipt, ReceiptDomain, ReceiptError, SignedReceipt},
    seal::{OpenedResponse, ResponseOpener},
};

impl From<&OpenedResponse> for ExpectedReceipt {
    fn from(r: &OpenedResponse) -> Self {
        Self {
            request_hash: r.request_hash.into(),
            response_hash: r.response_hash.into(),
            payer: r.payer,
        }
    }
}

/// A receipt that verified against the expected signer, this request's hash
/// and the hash of the ciphertext actually received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReceipt {
    pub receipt: SignedReceipt,
    pub response: OpenedResponse,
}

/// What [`ResponseReader::next_event`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseEvent {
    /// Newly decrypted plaintext (never empty).
    Plaintext(Vec<u8>),
    /// The response is complete and authentic; nothing may follow.
    Receipt(Box<VerifiedReceipt>),
}

/// A whole response read with [`ResponseReader::read_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteResponse {
    pub plaintext: Vec<u8>,
    pub receipt: VerifiedReceipt,
}

/// Why a response was not accepted.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ResponseError {
    #[error("bad frame sequence: {0}")]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("receipt rejected: {0}")]
    Receipt(#[from] ReceiptError),
    #[error("the server reported an error ({}): {}", .0.code, .0.message)]
    Remote(ErrorFrame),
    #[error("a receipt arrived before the final ciphertext chunk")]
    ReceiptBeforeFinalChunk,
    #[error("a {frame_type:?} frame followed the receipt")]
    FrameAfterEnd { frame_type: FrameType },
    #[error("the response ended without a receipt")]
    Incomplete,
    #[error("the reader failed earlier")]
    AfterError,
}

#[derive(Debug)]
enum State {
    Open(Box<ResponseOpener>),
    Done,
    Failed,
}

/// Reads one response body (a frame sequence) for one sealed request.
#[derive(Debug)]
pub struct ResponseReader {
    decoder: FrameDecoder,
    state: State,
    expected_signer: Address,
    domain: ReceiptDomain,
}

impl ResponseReader {
    /// `expected_signer` is the receipt-signing address that the node's
    /// attestation bound; `domain` the EIP-712 domain receipts are signed in.
    pub fn new(opener: ResponseOpener, expected_signer: Address, domain: ReceiptDomain) -> Self {
        Self {
            decoder: FrameDecoder::new(),
            state: State::Open(Box::new(opener)),
            expected_signer,
            domain,
        }
    }

    /// Adds body bytes as they arrive; then call [`next_event`](Self::next_event)
    /// until it returns `None`.
    pub fn push(&mut self, bytes: &[u8]) {
        self.decoder.push(bytes);
    }

    /// The next event, or `None` when more bytes are needed. An error frame
    /// from the server is returned as [`ResponseError::Remote`]. After any
    /// error every call fails.
    pub fn next_event(&mut self) -> Result<Option<ResponseEvent>, ResponseError> {
        loop {
            if matches!(self.state, State::Failed) {
                return Err(ResponseError::AfterError);
            }
            let frame = match self.decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(None),
                Err(e) => {
                    self.state = State::Failed;
                    return Err(e.into());
                }
            };
            if let Some(event) = self.on_frame(frame)? {
                return Ok(Some(event));
            }
        }
    }

    /// Leaves `state` as `Failed` on every error path.
    fn on_frame(&mut self, frame: Frame) -> Result<Option<ResponseEvent>, ResponseError> {
        let State::Open(mut opener) = std::mem::replace(&mut self.state, State::Failed) else {
            return Err(ResponseError::FrameAfterEnd {
                frame_type: frame.frame_type(),
            });
        };
        match frame {
            Frame::Ciphertext(ciphertext) => {
                let plaintext = opener.push(&ciphertext)?;
                self.state = State::Open(opener);
                Ok((!plaintext.is_empty()).then_some(ResponseEvent::Plaintext(plaintext)))
            }
            Frame::Error(error) => Err(ResponseError::Remote(error)),
            Frame::Receipt(receipt) => {
                let response = opener.finish().map_err(|e| match e {
                    OpenError::Truncated => ResponseError::ReceiptBeforeFinalChunk,
                    e => e.into(),
                })?;
                let expected = ExpectedReceipt::from(&response);
                receipt.verify(&self.domain, self.expected_signer, &expected)?;
                self.state = State::Done;
                Ok(Some(ResponseEvent::Receipt(Box::new(VerifiedReceipt {
                    receipt,
                    response,
                }))))
            }
        }
    }

    /// Declares the body ended: fails unless a verified receipt was the last
    /// frame and no partial frame is left over.
    pub fn finish(self) -> Result<(), ResponseError> {
        match self.state {
            State::Done => Ok(self.decoder.finish()?),
            State::Open(_) => Err(ResponseError::Incomplete),
            State::Failed => Err(ResponseError::AfterError),
        }
    }

    /// Reads a whole body at once.
    pub fn read_all(mut self, body: &[u8]) -> Result<CompleteResponse, ResponseError> {
        self.push(body);
        let mut plaintext = Vec::new();
        let mut receipt = None;
        while let Some(event) = self.next_event()? {
            match event {
                ResponseEvent::Plaintext(bytes) => plaintext.extend_from_slice(&bytes),
                ResponseEvent::Receipt(r) => receipt = Some(*r),
            }
        }
        self.finish()?;
        let receipt = receipt.ok_or(ResponseError::Incomplete)?;
        Ok(CompleteResponse { plaintext, receipt })
    }
}

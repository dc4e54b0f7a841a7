//! Client side: seal a request to a node's key configuration, then open the
//! response chunk by chunk as its ciphertext frames arrive.

use sha2::{Digest, Sha256};

use alloy_primitives::Address;

use crate::{
    boundary::Boundary,
    envelope::RequestEnvelope,
    error::{CipherFault, OpenError, SealError},
    frames::MAX_FRAME_PAYLOAD,
    keyconfig::KeyConfigInfo,
    padding::RecordReader,
    pipe::{self, Pipe},
};

/// Large enough for any chunked-OHTTP chunk (16 KiB plaintext plus tag), so
/// that each chunk is decrypted straight into it.
pub(crate) const SCRATCH_LEN: usize = (1 << 14) + 64;

/// Seals `envelope` (the OpenAI request body with the client's time and the
/// payer's authorization, see [`PayerKey::envelope`](crate::PayerKey::envelope))
/// to the node whose encoded key configuration is `key_config`. Returns the
/// body to send and the opener for the response to this request alone.
pub fn seal_request(
    key_config: &[u8],
    envelope: &RequestEnvelope,
) -> Result<(Vec<u8>, ResponseOpener), SealError> {
    let plaintext = envelope.encode();
    let info = KeyConfigInfo::parse(key_config)?;
    let cipher = |e: ohttp::Error| SealError::Cipher(CipherFault::from_ohttp(&e));
    let client =
        ohttp::ClientRequest::from_encoded_config(&info.encode_with_our_suite()).map_err(cipher)?;
    let sink = Pipe::default();
    let mut request = client.encapsulate_stream(sink.clone()).map_err(cipher)?;
    let io = |e: std::io::Error| SealError::Cipher(CipherFault::from_io(&e));
    pipe::write_all(&mut request, &plaintext).map_err(io)?;
    pipe::close(&mut request).map_err(io)?;
    let body = sink.take();

    let source = Pipe::default();
    let reader = request.response(source.clone()).map_err(cipher)?;
    let opener = ResponseOpener {
        reader: Box::new(reader),
        source,
        hasher: Sha256::new(),
        request_hash: Sha256::digest(&body).into(),
        payer: envelope.payer,
        records: RecordReader::new(MAX_FRAME_PAYLOAD),
        boundary: Boundary::new(),
        held: Vec::new(),
        received: 0,
        failed: false,
    };
    Ok((body, opener))
}

/// What a complete, authentic response hashed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenedResponse {
    /// SHA-256 of all ciphertext bytes pushed, in order.
    pub response_hash: [u8; 32],
    /// SHA-256 of the sealed request body.
    pub request_hash: [u8; 32],
    /// The payer that authorized the request.
    pub payer: Address,
}

/// Opens the response to one sealed request. Feed it ciphertext as it arrives
/// (any split: frame by frame or byte by byte), then call
/// [`finish`](Self::finish) once the sender says the ciphertext is complete.
pub struct ResponseOpener {
    /// `ohttp`'s chunked response reader; its type is not nameable.
    reader: Box<dyn futures_io::AsyncRead + Send + Sync + Unpin>,
    source: Pipe,
    hasher: Sha256,
    request_hash: [u8; 32],
    payer: Address,
    /// Splits the decrypted stream into padded records.
    records: RecordReader,
    /// Holds back a partially received chunk length (see `boundary.rs`).
    boundary: Boundary,
    held: Vec<u8>,
    received: usize,
    failed: bool,
}

impl ResponseOpener {
    /// SHA-256 of the sealed request body this opener belongs to.
    pub fn request_hash(&self) -> [u8; 32] {
        self.request_hash
    }

    /// Adds ciphertext and returns the data of every record completed by it
    /// (possibly empty; padding removed). A chunk that fails to authenticate (tampered,
    /// reordered, or belonging to another request) is an error, and every later
    /// call fails too.
    pub fn push(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, OpenError> {
        if self.failed {
            return Err(OpenError::AfterError);
        }
        self.hasher.update(ciphertext);
        self.received += ciphertext.len();
        self.held.extend_from_slice(ciphertext);
        let n = self.boundary.releasable(&self.held).min(self.held.len());
        self.source.push(self.held.get(..n).unwrap_or_default());
        self.held.drain(..n);
        let mut decrypted = Vec::new();
        // A read buffer per call, no larger than what was pushed (plaintext
        // is never longer than its ciphertext): an opener held for a long
        // stream keeps no 16 KiB buffer (a router holds one per request).
        let mut scratch = vec![0; ciphertext.len().clamp(256, SCRATCH_LEN)];
        match pipe::read_available(&mut *self.reader, &mut scratch, &mut decrypted) {
            Ok(false) => {
                let mut out = Vec::new();
                match self.records.push(&decrypted, &mut out) {
                    Ok(()) => Ok(out),
                    Err(e) => self.fail(e.into()),
                }
            }
            // The source is still open, so the reader cannot have ended.
            Ok(true) => self.fail(OpenError::ResponseCorrupted(CipherFault::Internal)),
            Err(e) => self.fail(OpenError::ResponseCorrupted(CipherFault::from_io(&e))),
        }
    }

    fn fail<T>(&mut self, e: OpenError) -> Result<T, OpenError> {
        self.failed = true;
        Err(e)
    }

    /// Declares the ciphertext complete. Fails with [`OpenError::Truncated`]
    /// when the final (marked) chunk never arrived.
    pub fn finish(mut self) -> Result<OpenedResponse, OpenError> {
        if self.failed {
            return Err(OpenError::AfterError);
        }
        // Held-back bytes are an incomplete length field: the stream is cut.
        if !self.held.is_empty() {
            return Err(OpenError::Truncated);
        }
        self.source.close();
        let mut out = Vec::new();
        let mut scratch = [0u8; 256];
        match pipe::read_available(&mut *self.reader, &mut scratch, &mut out) {
            Ok(true) if out.is_empty() => {
                self.records.finish()?;
                Ok(OpenedResponse {
                    response_hash: self.hasher.finalize().into(),
                    request_hash: self.request_hash,
                    payer: self.payer,
                })
            }
            Ok(true) => Err(OpenError::NonEmptyFinalChunk { len: out.len() }),
            Ok(false) => Err(OpenError::ResponseCorrupted(CipherFault::Internal)),
            Err(e) => Err(match CipherFault::from_io(&e) {
                CipherFault::Truncated => OpenError::Truncated,
                fault => OpenError::ResponseCorrupted(fault),
            }),
        }
    }
}

impl std::fmt::Debug for ResponseOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseOpener")
            .field(
                "request_hash",
                &alloy_primitives::hex::encode(self.request_hash),
            )
            .field("ciphertext_received", &self.received)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

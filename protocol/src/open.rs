//! Enclave side: open a sealed request with the node's key, then seal the
//! response chunk by chunk.

use alloy_primitives::Address;
use sha2::{Digest, Sha256};

use crate::{
    canonical,
    envelope::RequestEnvelope,
    error::{CipherFault, NotSealedReason, OpenError, SealError},
    frames::MAX_FRAME_PAYLOAD,
    keyconfig::{KEM_X25519, SUITE, X25519_LEN},
    keys::NodeKeys,
    padding::{self, DEFAULT_PAD_BUCKET, MAX_PAD_BUCKET},
    pipe::{self, Pipe},
    receipt::ReceiptDomain,
    seal::SCRATCH_LEN,
};

/// The request header: key id, KEM, KDF and AEAD identifiers.
const HEADER_LEN: usize = 7;

/// The largest plaintext one [`ResponseSealer::seal_chunk`] call takes, so that
/// its output always fits in one frame: the record header and at most
/// [`MAX_PAD_BUCKET`] of padding, then chunked OHTTP's 16 bytes of tag and up
/// to 4 of length per 16 KiB, and the 16-byte response nonce once.
pub const MAX_SEAL_PLAINTEXT: usize = MAX_FRAME_PAYLOAD - MAX_PAD_BUCKET - 32 * 1024;

/// A request opened by the enclave, its payer's authorization verified.
pub struct OpenedRequest {
    /// The client's OpenAI request body. Never log it.
    pub body: Vec<u8>,
    /// The client's clock when it sealed the request (Unix seconds): check it
    /// against a replay window.
    pub issued_at: u64,
    /// The payer who authorized this request (signature checked).
    pub payer: Address,
    /// SHA-256 of the sealed body as received (a canonical encoding, so the
    /// client, the router and the enclave all compute the same value); goes
    /// into the receipt.
    pub request_hash: [u8; 32],
    /// SHA-256 of the request's HPKE encapsulated key: unique per sealed
    /// request, the same every time the same body is replayed. Keep these in a
    /// replay cache and refuse a repeat.
    pub replay_id: [u8; 32],
    /// Seals the response to this request (and only this one).
    pub sealer: ResponseSealer,
}

impl std::fmt::Debug for OpenedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedRequest")
            .field("body_len", &self.body.len())
            .field("issued_at", &self.issued_at)
            .field("payer", &self.payer)
            .field(
                "request_hash",
                &alloy_primitives::hex::encode(self.request_hash),
            )
            .field("replay_id", &alloy_primitives::hex::encode(self.replay_id))
            .finish_non_exhaustive()
    }
}

/// Opens a request body sealed with [`seal_request`](crate::seal_request) to
/// `keys` and checks its envelope: the payer's authorization must be signed
/// for this node's receipt signer in `domain`.
///
/// Anything not sealed to this node's current key, altered in any bit, or
/// re-encoded (a non-minimal chunk length, see `canonical.rs`) fails with
/// [`OpenError::NotSealedToThisNode`]; a bad envelope or payer signature with
/// [`OpenError::BadEnvelope`].
pub fn open_request(
    keys: &NodeKeys,
    domain: &ReceiptDomain,
    body: &[u8],
) -> Result<OpenedRequest, OpenError> {
    let not_sealed = OpenError::NotSealedToThisNode;
    let min = HEADER_LEN + X25519_LEN;
    let (Some(header), Some(enc)) = (body.get(..HEADER_LEN), body.get(HEADER_LEN..min)) else {
        return Err(not_sealed(NotSealedReason::TooShort {
            len: body.len(),
            min,
        }));
    };
    check_header(keys.key_id(), header).map_err(not_sealed)?;
    canonical::check_request_chunks(body, min).map_err(not_sealed)?;

    let cipher = |e: &std::io::Error| not_sealed(NotSealedReason::Cipher(CipherFault::from_io(e)));
    let mut request = keys.server().clone().decapsulate_stream(body);
    let mut plaintext = Vec::new();
    let mut scratch = vec![0; SCRATCH_LEN];
    match pipe::read_available(&mut request, &mut scratch, &mut plaintext) {
        Ok(true) => {}
        Ok(false) => return Err(not_sealed(NotSealedReason::Cipher(CipherFault::Internal))),
        Err(e) => return Err(cipher(&e)),
    }

    let sink = Pipe::default();
    let writer = request
        .response(sink.clone())
        .map_err(|e| not_sealed(NotSealedReason::Cipher(CipherFault::from_ohttp(&e))))?;
    let envelope = RequestEnvelope::parse(&plaintext)?;
    envelope.verify_payer(keys.signer_address(), domain)?;
    let RequestEnvelope {
        issued_at,
        payer,
        body: request_body,
        ..
    } = envelope;
    Ok(OpenedRequest {
        body: request_body,
        issued_at,
        payer,
        request_hash: Sha256::digest(body).into(),
        replay_id: Sha256::digest(enc).into(),
        sealer: ResponseSealer {
            writer: Box::new(writer),
            sink,
            hasher: Sha256::new(),
            pad_bucket: DEFAULT_PAD_BUCKET,
            emitted: 0,
            failed: false,
        },
    })
}

fn check_header(key_id: u8, header: &[u8]) -> Result<(), NotSealedReason> {
    let &[found, k0, k1, d0, d1, a0, a1] = header else {
        return Err(NotSealedReason::Cipher(CipherFault::Internal));
    };
    if found != key_id {
        return Err(NotSealedReason::WrongKeyId {
            expected: key_id,
            found,
        });
    }
    let (kem, kdf, aead) = (
        u16::from_be_bytes([k0, k1]),
        u16::from_be_bytes([d0, d1]),
        u16::from_be_bytes([a0, a1]),
    );
    // The node offers exactly one suite; `ohttp`'s stream decoder would accept
    // any suite its backend implements.
    if kem != KEM_X25519 || kdf != SUITE.kdf || aead != SUITE.aead {
        return Err(NotSealedReason::UnsupportedSuite { kem, kdf, aead });
    }
    Ok(())
}

/// Seals the response to one request. Each [`seal_chunk`](Self::seal_chunk)
/// call returns the payload of one ciphertext frame; [`finish`](Self::finish)
/// returns the last one, holding the chunk marked final. Every chunk's
/// plaintext is one record padded to the bucket (see `padding.rs`).
pub struct ResponseSealer {
    /// `ohttp`'s chunked response writer; its type is not nameable.
    writer: Box<dyn futures_io::AsyncWrite + Send + Sync + Unpin>,
    sink: Pipe,
    hasher: Sha256,
    pad_bucket: usize,
    emitted: usize,
    failed: bool,
}

impl ResponseSealer {
    /// Pads every later chunk's plaintext to a multiple of `bucket` bytes
    /// (default [`DEFAULT_PAD_BUCKET`]; 0 or 1 turns padding off; at most
    /// [`MAX_PAD_BUCKET`]).
    pub fn set_pad_bucket(&mut self, bucket: usize) {
        self.pad_bucket = bucket.min(MAX_PAD_BUCKET);
    }

    /// Seals `plaintext` (SSE events, or a whole JSON body) as one padded
    /// record and returns the ciphertext for one frame. The first call's
    /// output also carries the response nonce. A record above 16 KiB becomes
    /// several chunks in the same output; plaintext above
    /// [`MAX_SEAL_PLAINTEXT`] is refused.
    pub fn seal_chunk(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        if plaintext.len() > MAX_SEAL_PLAINTEXT {
            return Err(SealError::ChunkTooLarge {
                len: plaintext.len(),
                max: MAX_SEAL_PLAINTEXT,
            });
        }
        let record = padding::encode_record(plaintext, self.pad_bucket);
        self.step(|w| {
            pipe::write_all(w, &record)?;
            pipe::flush(w)
        })
    }

    /// Seals the final, empty chunk and returns it (one more frame) with the
    /// response hash: SHA-256 of all ciphertext bytes emitted, in order.
    pub fn finish(mut self) -> Result<(Vec<u8>, [u8; 32]), SealError> {
        let last = self.step(|w| pipe::close(w))?;
        Ok((last, self.hasher.finalize().into()))
    }

    fn step(
        &mut self,
        op: impl FnOnce(&mut (dyn futures_io::AsyncWrite + Send + Sync + Unpin)) -> std::io::Result<()>,
    ) -> Result<Vec<u8>, SealError> {
        if self.failed {
            return Err(SealError::AfterError);
        }
        if let Err(e) = op(&mut *self.writer) {
            self.failed = true;
            return Err(SealError::Cipher(CipherFault::from_io(&e)));
        }
        let out = self.sink.take();
        self.hasher.update(&out);
        self.emitted += out.len();
        Ok(out)
    }
}

impl std::fmt::Debug for ResponseSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseSealer")
            .field("ciphertext_emitted", &self.emitted)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

//! Errors of key generation, sealing and opening, and the mapping from the
//! `ohttp` crate's errors (which arrive wrapped in `std::io::Error` from its
//! stream types) to [`CipherFault`], so that its types stay out of our API.

use std::io;

use thiserror::Error;

/// What went wrong inside the HPKE / chunked-OHTTP layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CipherFault {
    /// An AEAD tag did not verify: wrong key, tampered, reordered or spliced data.
    Authentication,
    /// HPKE decapsulation or decryption failed (wrong key or corrupted data).
    Hpke,
    /// The data ended in the middle of a field or chunk.
    Truncated,
    /// A chunk declared a length above the chunked-OHTTP maximum.
    ChunkTooLarge,
    /// A header or configuration field was malformed or inconsistent.
    Malformed,
    /// An algorithm or configuration is not supported.
    Unsupported,
    /// An internal invariant failed (a bug here or in the `ohttp` crate).
    Internal,
}

impl std::fmt::Display for CipherFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Authentication => "authentication failed (AEAD tag mismatch)",
            Self::Hpke => "HPKE decapsulation or decryption failed",
            Self::Truncated => "data truncated",
            Self::ChunkTooLarge => "chunk larger than allowed",
            Self::Malformed => "malformed data",
            Self::Unsupported => "unsupported algorithm or configuration",
            Self::Internal => "internal error",
        })
    }
}

impl CipherFault {
    pub(crate) fn from_ohttp(e: &ohttp::Error) -> Self {
        match e {
            ohttp::Error::Aead(_) => Self::Authentication,
            ohttp::Error::Hpke(_) => Self::Hpke,
            ohttp::Error::Truncated => Self::Truncated,
            ohttp::Error::ChunkTooLarge => Self::ChunkTooLarge,
            ohttp::Error::Format
            | ohttp::Error::ExtraData
            | ohttp::Error::KeyId
            | ohttp::Error::InvalidKem
            | ohttp::Error::InvalidKeyType
            | ohttp::Error::TooManySymmetricSuites => Self::Malformed,
            ohttp::Error::Unsupported => Self::Unsupported,
            ohttp::Error::Io(inner) => Self::from_io(inner),
            _ => Self::Internal,
        }
    }

    pub(crate) fn from_io(e: &io::Error) -> Self {
        match e.get_ref().and_then(|i| i.downcast_ref::<ohttp::Error>()) {
            Some(inner) => Self::from_ohttp(inner),
            None if e.kind() == io::ErrorKind::UnexpectedEof => Self::Truncated,
            None => Self::Internal,
        }
    }
}

/// A key configuration (RFC 9458 section 3) that a client cannot seal to.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyConfigError {
    #[error("key configuration truncated: {needed} more bytes needed at offset {offset}")]
    Truncated { offset: usize, needed: usize },
    #[error(
        "key configuration uses KEM {kem:#06x}; only DHKEM(X25519, HKDF-SHA256) (0x0020) is accepted"
    )]
    UnsupportedKem { kem: u16 },
    #[error("key configuration's cipher-suite list has invalid length {len}")]
    BadSuiteList { len: usize },
    #[error("key configuration offers no supported cipher suite (HKDF-SHA256 with AES-128-GCM)")]
    NoSupportedSuite,
    #[error("key configuration has {extra} trailing bytes")]
    TrailingBytes { extra: usize },
}

/// Generating a node's keys failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("the operating system's random number generator failed: {reason}")]
    Randomness { reason: String },
    #[error("HPKE key generation failed: {0}")]
    Hpke(CipherFault),
}

/// Sealing a request (client) or a response chunk (enclave) failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SealError {
    #[error("cannot seal to this key configuration: {0}")]
    KeyConfig(#[from] KeyConfigError),
    #[error("sealing failed: {0}")]
    Cipher(CipherFault),
    #[error("response chunk of {len} bytes is larger than {max}; seal it in several calls")]
    ChunkTooLarge { len: usize, max: usize },
    #[error("the sealer failed earlier; its output can no longer be continued")]
    AfterError,
}

/// Why a request body could not be opened with this node's key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NotSealedReason {
    #[error("body of {len} bytes is shorter than the {min}-byte request header")]
    TooShort { len: usize, min: usize },
    #[error("sealed to key id {found}, this node's key id is {expected}")]
    WrongKeyId { expected: u8, found: u8 },
    #[error("unsupported suite: KEM {kem:#06x}, KDF {kdf:#06x}, AEAD {aead:#06x}")]
    UnsupportedSuite { kem: u16, kdf: u16, aead: u16 },
    #[error("non-canonical encoding at byte {offset}: {problem}")]
    NonCanonical {
        offset: usize,
        problem: &'static str,
    },
    #[error("{0}")]
    Cipher(CipherFault),
}

/// Opening a request (enclave) or a response (client) failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("request not sealed to this node's key or corrupted: {0}")]
    NotSealedToThisNode(NotSealedReason),
    #[error("the opened request is not a valid envelope: {0}")]
    BadEnvelope(#[from] crate::envelope::EnvelopeError),
    #[error("response chunk failed to open (tampered, reordered, or from another request): {0}")]
    ResponseCorrupted(CipherFault),
    #[error("response truncated: the final chunk never arrived")]
    Truncated,
    #[error("the final response chunk carries {len} bytes of plaintext; this protocol sends none")]
    NonEmptyFinalChunk { len: usize },
    #[error("a response record is malformed: {0}")]
    BadRecord(#[from] crate::padding::RecordError),
    #[error("the opener failed earlier; the response cannot be trusted")]
    AfterError,
}

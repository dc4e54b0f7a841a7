//! The plaintext of a sealed request: an envelope around the OpenAI body that
//! carries the client's clock and the payer's authorization.
//!
//! ```text
//! version           u8      1
//! issued_at         u64 BE  the client's Unix time, seconds
//! payer             20      address of the payer key
//! payer_signature   65      r || s || v over the EIP-712 PayerAuthorization
//! body              rest    the OpenAI JSON request body
//! ```
//!
//! The whole envelope is sealed, so the router sees none of it and cannot
//! change any of it.
//!
//! # Payers
//!
//! A payer is a secp256k1 key the user holds (its 32-byte secret is the
//! user's secret; [`PayerKey`]). The payer tag in receipts is that key's
//! Ethereum address. Each request carries the payer's EIP-712 signature over
//!
//! ```text
//! PayerAuthorization(address node,uint64 issuedAt,bytes32 bodyHash)
//! ```
//!
//! in the receipts' domain (chain id and settlement contract), where `node` is
//! the receipt signer the client attested and `bodyHash` the SHA-256 of the
//! body. The enclave verifies the signature before it runs anything and signs
//! the recovered address into the receipt's `payer`. Hence:
//!
//! - a user recognises every receipt billed to them: its `payer` is their
//!   address, which they derive from their secret;
//! - a router cannot move a receipt to another payer (the receipt is signed by
//!   the enclave), nor make a payer pay for requests the payer did not send
//!   (it cannot sign as the payer), nor reuse an authorization for another
//!   body, node, time or settlement deployment (the signature covers them);
//! - an observer of receipts links requests to payer addresses and nothing
//!   more; a user who wants unlinkable requests uses several payer keys.
//!
//! Users of the router's plain OpenAI endpoint trust the router with their
//! prompts; for them the router holds a payer key per account.

use alloy_primitives::{Address, B256, FixedBytes};
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::SolStruct;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::receipt::{ReceiptDomain, SignatureFault};

/// The envelope format version this crate writes and accepts.
pub const ENVELOPE_VERSION: u8 = 1;
/// Bytes before the body.
pub const ENVELOPE_HEADER_LEN: usize = 1 + 8 + 20 + 65;

mod sol {
    alloy_sol_types::sol! {
        struct PayerAuthorization {
            address node;
            uint64 issuedAt;
            bytes32 bodyHash;
        }
    }
}

/// The EIP-712 `encodeType` string of the payer's authorization.
pub const PAYER_AUTHORIZATION_TYPE: &str =
    "PayerAuthorization(address node,uint64 issuedAt,bytes32 bodyHash)";

/// The digest a payer signs for one request.
pub fn payer_authorization_digest(
    node: Address,
    issued_at: u64,
    body: &[u8],
    domain: &ReceiptDomain,
) -> B256 {
    let body_hash: [u8; 32] = Sha256::digest(body).into();
    sol::PayerAuthorization {
        node,
        issuedAt: issued_at,
        bodyHash: body_hash.into(),
    }
    .eip712_signing_hash(&domain.eip712_domain())
}

/// Why a payer key could not be made or used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PayerKeyError {
    /// The 32 bytes are not a valid secp256k1 secret (zero or above the order).
    #[error("the payer secret is not a valid secp256k1 private key")]
    InvalidSecret,
    /// Signing failed.
    #[error("signing the payer authorization failed: {0}")]
    Signing(#[source] alloy_signer::Error),
}

/// A payer's key: the user's secret. Never printed.
pub struct PayerKey {
    signer: PrivateKeySigner,
}

impl PayerKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self {
            signer: PrivateKeySigner::random(),
        }
    }

    /// The key for a stored 32-byte secret.
    pub fn from_secret(secret: &[u8; 32]) -> Result<Self, PayerKeyError> {
        PrivateKeySigner::from_bytes(&B256::from(*secret))
            .map(|signer| Self { signer })
            .map_err(|_| PayerKeyError::InvalidSecret)
    }

    /// The 32-byte secret, to store (keep it private).
    pub fn secret(&self) -> [u8; 32] {
        self.signer.to_bytes().0
    }

    /// The payer tag that receipts carry.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// Wraps `body` in an envelope authorized by this payer for the node whose
    /// receipt signer is `node`, in the receipts' `domain`.
    pub fn envelope(
        &self,
        node: Address,
        domain: &ReceiptDomain,
        issued_at: u64,
        body: Vec<u8>,
    ) -> Result<RequestEnvelope, PayerKeyError> {
        let digest = payer_authorization_digest(node, issued_at, &body, domain);
        let payer_signature =
            crate::signature::sign_digest(&self.signer, &digest).map_err(PayerKeyError::Signing)?;
        Ok(RequestEnvelope {
            issued_at,
            payer: self.address(),
            payer_signature,
            body,
        })
    }
}

impl std::fmt::Debug for PayerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayerKey")
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

/// A sealed request's plaintext.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestEnvelope {
    /// The client's Unix time in seconds when it sealed the request.
    pub issued_at: u64,
    /// The payer the request is billed to.
    pub payer: Address,
    /// The payer's signature over [`payer_authorization_digest`].
    pub payer_signature: FixedBytes<65>,
    /// The OpenAI request body. Never log it.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for RequestEnvelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestEnvelope")
            .field("issued_at", &self.issued_at)
            .field("payer", &self.payer)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// A sealed request whose plaintext is not a valid envelope. All of these
/// are the sender's fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    #[error("request envelope of {len} bytes is shorter than its {min}-byte header")]
    Truncated { len: usize, min: usize },
    #[error(
        "request envelope version {found} is not supported (this node speaks {ENVELOPE_VERSION})"
    )]
    UnsupportedVersion { found: u8 },
    #[error("the payer's authorization signature is unusable: {0}")]
    BadPayerSignature(SignatureFault),
    #[error(
        "the payer authorization names {claimed} but was signed by {recovered} (wrong node, time, body or settlement domain)"
    )]
    PayerMismatch {
        claimed: Address,
        recovered: Address,
    },
}

impl RequestEnvelope {
    /// The bytes to seal.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENVELOPE_HEADER_LEN + self.body.len());
        out.push(ENVELOPE_VERSION);
        out.extend_from_slice(&self.issued_at.to_be_bytes());
        out.extend_from_slice(self.payer.as_slice());
        out.extend_from_slice(self.payer_signature.as_slice());
        out.extend_from_slice(&self.body);
        out
    }

    /// Parses opened plaintext. The signature is not checked here: see
    /// [`verify_payer`](Self::verify_payer).
    pub fn parse(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let truncated = EnvelopeError::Truncated {
            len: bytes.len(),
            min: ENVELOPE_HEADER_LEN,
        };
        let (&version, rest) = bytes.split_first().ok_or(truncated.clone())?;
        if version != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion { found: version });
        }
        let (issued_at, rest) = rest.split_first_chunk::<8>().ok_or(truncated.clone())?;
        let (payer, rest) = rest.split_first_chunk::<20>().ok_or(truncated.clone())?;
        let (signature, body) = rest.split_first_chunk::<65>().ok_or(truncated)?;
        Ok(Self {
            issued_at: u64::from_be_bytes(*issued_at),
            payer: Address::from(*payer),
            payer_signature: FixedBytes(*signature),
            body: body.to_vec(),
        })
    }

    /// Checks that the payer signed this body, time and node in `domain`.
    pub fn verify_payer(&self, node: Address, domain: &ReceiptDomain) -> Result<(), EnvelopeError> {
        let digest = payer_authorization_digest(node, self.issued_at, &self.body, domain);
        let recovered = crate::signature::recover(&self.payer_signature, &digest)
            .map_err(EnvelopeError::BadPayerSignature)?;
        if recovered != self.payer {
            return Err(EnvelopeError::PayerMismatch {
                claimed: self.payer,
                recovered,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_string_matches_sol_macro() {
        assert_eq!(
            sol::PayerAuthorization::eip712_encode_type(),
            PAYER_AUTHORIZATION_TYPE
        );
    }

    #[test]
    fn encode_parse_round_trip_and_strictness() {
        let key = PayerKey::generate();
        let node = Address::repeat_byte(7);
        let domain = ReceiptDomain::default();
        let envelope = key
            .envelope(node, &domain, 1_800_000_000, b"{}".to_vec())
            .unwrap();
        let bytes = envelope.encode();
        let parsed = RequestEnvelope::parse(&bytes).unwrap();
        assert_eq!(parsed, envelope);
        parsed.verify_payer(node, &domain).unwrap();
        assert!(matches!(
            parsed.verify_payer(Address::repeat_byte(8), &domain),
            Err(EnvelopeError::PayerMismatch { .. })
        ));
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 2;
        assert_eq!(
            RequestEnvelope::parse(&wrong_version),
            Err(EnvelopeError::UnsupportedVersion { found: 2 })
        );
        assert!(matches!(
            RequestEnvelope::parse(&bytes[..ENVELOPE_HEADER_LEN - 1]),
            Err(EnvelopeError::Truncated { .. })
        ));
        let secret = key.secret();
        assert_eq!(
            PayerKey::from_secret(&secret).unwrap().address(),
            key.address()
        );
        assert!(PayerKey::from_secret(&[0; 32]).is_err());
    }
}

//! The Cloister wire protocol (DESIGN.md section 4), shared by the enclave, the
//! router and the client SDK. Pure: no I/O, no async runtime.
//!
//! - [`NodeKeys`]: the enclave's HPKE key pair (published as an Oblivious HTTP key
//!   configuration, RFC 9458 section 3: X25519, HKDF-SHA256, AES-128-GCM) and its
//!   secp256k1 receipt-signing key.
//! - [`PayerKey`] / [`RequestEnvelope`]: what is sealed: the OpenAI body, the
//!   client's clock (for the node's replay window) and the payer's EIP-712
//!   authorization, so receipts name a payer the router cannot change or forge
//!   ([`envelope`] describes the scheme).
//! - [`seal_request`] / [`open_request`]: the envelope sealed with chunked
//!   Oblivious HTTP (draft-ietf-ohai-chunked-ohttp) to the node's key, in a
//!   canonical encoding (a forwarder cannot re-encode it to another hash).
//! - [`ResponseSealer`] / [`ResponseOpener`]: the response, sealed chunk by chunk
//!   under a key exported from the request's HPKE context. Chunks are
//!   sequence-numbered by their AEAD nonce and the last one is marked, so
//!   tampering, reordering, truncation and splicing between requests are detected.
//!   Each chunk's plaintext is padded to a bucket (256 bytes by default) so
//!   chunk sizes do not reveal token lengths.
//! - [`Frame`] / [`FrameDecoder`]: the response body that travels from enclave to
//!   router to client (`type u8 | length u32 BE | payload`).
//! - [`UsageReceipt`] / [`SignedReceipt`]: EIP-712 typed data signed by the
//!   enclave, verifiable by anyone, including a Solidity contract.
//! - [`ResponseReader`]: the client side of a whole response: frames in,
//!   plaintext and a verified receipt out, with the ordering rules enforced.
//!
//! A sketch of one exchange:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use cloister_protocol::*;
//! let node = NodeKeys::generate()?;
//! let domain = ReceiptDomain::default();
//! let payer = PayerKey::generate();
//! let envelope = payer.envelope(node.signer_address(), &domain, 1_763_700_000, br#"{"model":"m"}"#.to_vec())?;
//! let (body, opener) = seal_request(&node.key_config(), &envelope)?;
//!
//! // Enclave: open (checks the payer's authorization), answer, seal, sign.
//! let mut opened = open_request(&node, &domain, &body)?;
//! let mut frames = Vec::new();
//! let ct = opened.sealer.seal_chunk(b"data: hello\n\n")?;
//! frames.extend(Frame::Ciphertext(ct).encode()?);
//! let (last, response_hash) = opened.sealer.finish()?;
//! frames.extend(Frame::Ciphertext(last).encode()?);
//! let receipt = UsageReceipt {
//!     request_id: [7; 32].into(),
//!     node_signer: node.signer_address(),
//!     payer: opened.payer,
//!     model_id: "m".into(),
//!     prompt_tokens: 3,
//!     completion_tokens: 1,
//!     prompt_price: 2,
//!     completion_price: 5,
//!     request_hash: opened.request_hash.into(),
//!     response_hash: response_hash.into(),
//!     issued_at: 1_763_700_000,
//! };
//! frames.extend(Frame::Receipt(node.sign_receipt(receipt, &domain)?).encode()?);
//!
//! // Client: open and verify.
//! let done = ResponseReader::new(opener, node.signer_address(), domain).read_all(&frames)?;
//! assert_eq!(done.plaintext, b"data: hello\n\n");
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod boundary;
mod canonical;
pub mod envelope;
mod error;
mod frames;
mod keyconfig;
mod keys;
mod open;
mod padding;
mod pipe;
mod reader;
mod receipt;
pub mod request_filter;
mod seal;
mod signature;

pub use crate::{
    envelope::{EnvelopeError, PayerKey, PayerKeyError, RequestEnvelope},
    error::{CipherFault, KeyConfigError, KeyError, NotSealedReason, OpenError, SealError},
    frames::{
        CONTENT_TYPE, ErrorFrame, FRAME_HEADER_LEN, Frame, FrameDecoder, FrameError, FrameType,
        MAX_FRAME_PAYLOAD,
    },
    keyconfig::{CipherSuite, KeyConfigInfo},
    keys::NodeKeys,
    open::{MAX_SEAL_PLAINTEXT, OpenedRequest, ResponseSealer, open_request},
    padding::{DEFAULT_PAD_BUCKET, MAX_PAD_BUCKET, RecordError},
    reader::{CompleteResponse, ResponseError, ResponseEvent, ResponseReader, VerifiedReceipt},
    receipt::{
        ExpectedReceipt, ReceiptDomain, ReceiptError, SignatureFault, SignedReceipt, UsageReceipt,
    },
    seal::{OpenedResponse, ResponseOpener, seal_request},
};
/// Re-exported so that users name the same types as this crate's API.
pub use alloy_primitives::{Address, B256, U256};

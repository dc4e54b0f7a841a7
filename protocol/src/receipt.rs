//! Usage receipts: EIP-712 typed data signed by the enclave's secp256k1 key, so
//! that the router, an auditor or a Solidity contract (`ecrecover` over the
//! standard `eip712_signing_hash`) can check them.
//!
//! A receipt names who served (`nodeSigner`), who pays (`payer`: the address
//! of the payer key that authorized the sealed request, see
//! [`envelope`](crate::envelope)), what was served (model, token counts) and
//! at which per-token prices, and binds the exact request and response bytes.
//! The router cannot change any of it: the payer is inside the sealed request
//! and the enclave signs the whole receipt.
//!
//! Signatures are 65 bytes `r || s || v` with `v` in {27, 28} and low `s`
//! (what OpenZeppelin's `ECDSA.recover` accepts); anything else is rejected, so
//! there is exactly one valid signature encoding per receipt and key.

use std::borrow::Cow;

use alloy_primitives::{Address, B256, FixedBytes, U256};
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{Eip712Domain, SolStruct};
use serde::{Deserialize, Serialize};
use thiserror::Error;

mod sol {
    alloy_sol_types::sol! {
        struct UsageReceipt {
            bytes32 requestId;
            address nodeSigner;
            address payer;
            string modelId;
            uint64 promptTokens;
            uint64 completionTokens;
            uint64 promptPrice;
            uint64 completionPrice;
            bytes32 requestHash;
            bytes32 responseHash;
            uint64 issuedAt;
        }
    }
}

/// What the enclave signs after each request. The JSON form uses the EIP-712
/// member names, so the `receipt` object of a [`SignedReceipt`] is the typed-data
/// `message` as wallets and `eth_signTypedData` expect it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsageReceipt {
    pub request_id: B256,
    pub node_signer: Address,
    /// The address of the payer key that authorized the sealed request.
    pub payer: Address,
    pub model_id: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Price per prompt token, in the settlement token's smallest unit.
    pub prompt_price: u64,
    /// Price per completion token, in the settlement token's smallest unit.
    pub completion_price: u64,
    /// SHA-256 of the sealed request body as the enclave received it (its
    /// encoding is canonical: see [`open_request`](crate::open_request)).
    pub request_hash: B256,
    /// SHA-256 of all response ciphertext bytes, in order.
    pub response_hash: B256,
    /// Unix time, seconds.
    pub issued_at: u64,
}

impl UsageReceipt {
    /// The EIP-712 `encodeType` string of the struct.
    pub const EIP712_TYPE: &'static str = "UsageReceipt(bytes32 requestId,address nodeSigner,address payer,string modelId,uint64 promptTokens,uint64 completionTokens,uint64 promptPrice,uint64 completionPrice,bytes32 requestHash,bytes32 responseHash,uint64 issuedAt)";

    /// What this receipt charges: `prompt_tokens × prompt_price +
    /// completion_tokens × completion_price`, exactly (no overflow in 256
    /// bits), as a settlement contract computes it.
    pub fn charge(&self) -> U256 {
        U256::from(self.prompt_tokens) * U256::from(self.prompt_price)
            + U256::from(self.completion_tokens) * U256::from(self.completion_price)
    }

    fn to_sol(&self) -> sol::UsageReceipt {
        sol::UsageReceipt {
            requestId: self.request_id,
            nodeSigner: self.node_signer,
            payer: self.payer,
            modelId: self.model_id.clone(),
            promptTokens: self.prompt_tokens,
            completionTokens: self.completion_tokens,
            promptPrice: self.prompt_price,
            completionPrice: self.completion_price,
            requestHash: self.request_hash,
            responseHash: self.response_hash,
            issuedAt: self.issued_at,
        }
    }

    /// EIP-712 `hashStruct(message)`.
    pub fn struct_hash(&self) -> B256 {
        self.to_sol().eip712_hash_struct()
    }

    /// `keccak256("\x19\x01" || domainSeparator || hashStruct(message))`: the
    /// digest that is signed and that `ecrecover` takes.
    pub fn signing_hash(&self, domain: &ReceiptDomain) -> B256 {
        self.to_sol().eip712_signing_hash(&domain.eip712_domain())
    }
}

/// The EIP-712 domain: name "Cloister", version "1", and the chain and contract
/// that will verify receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptDomain {
    pub chain_id: u64,
    pub verifying_contract: Address,
}

impl ReceiptDomain {
    /// The development chain: anvil's chain id 31337 and the zero address as
    /// verifying contract. This is also the [`Default`].
    pub const DEVELOPMENT: Self = Self {
        chain_id: 31337,
        verifying_contract: Address::ZERO,
    };

    /// The domain as alloy's [`Eip712Domain`].
    pub fn eip712_domain(&self) -> Eip712Domain {
        Eip712Domain::new(
            Some(Cow::Borrowed("Cloister")),
            Some(Cow::Borrowed("1")),
            Some(U256::from(self.chain_id)),
            Some(self.verifying_contract),
            None,
        )
    }

    /// The EIP-712 domain separator.
    pub fn separator(&self) -> B256 {
        self.eip712_domain().separator()
    }
}

impl Default for ReceiptDomain {
    fn default() -> Self {
        Self::DEVELOPMENT
    }
}

/// A receipt and the enclave's signature over its EIP-712 signing hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedReceipt {
    pub receipt: UsageReceipt,
    /// `r || s || v`, `v` in {27, 28}, as 0x-hex in JSON.
    pub signature: FixedBytes<65>,
}

/// The hashes a verifier computed itself and expects the receipt to carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedReceipt {
    pub request_hash: B256,
    pub response_hash: B256,
    /// The payer whose key authorized the request.
    pub payer: Address,
}

/// Why a signature could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SignatureFault {
    #[error("v is {v}, expected 27 or 28")]
    InvalidV { v: u8 },
    #[error("s is in the upper half of the curve order (malleable form)")]
    HighS,
    #[error("no public key recovers from this signature")]
    Unrecoverable,
}

/// Signing or verifying a receipt failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReceiptError {
    #[error("receipt names signer {in_receipt} but is being signed by {key}")]
    SignerFieldMismatch { in_receipt: Address, key: Address },
    #[error("signing failed: {0}")]
    Signing(#[source] alloy_signer::Error),
    #[error("bad signature: {0}")]
    BadSignature(SignatureFault),
    #[error("receipt signed by {recovered}, expected {expected}")]
    WrongSigner {
        expected: Address,
        recovered: Address,
    },
    #[error("receipt names signer {in_receipt} but was signed by {recovered}")]
    NodeSignerMismatch {
        in_receipt: Address,
        recovered: Address,
    },
    #[error("receipt request hash {found} does not match {expected}")]
    RequestHashMismatch { expected: B256, found: B256 },
    #[error("receipt response hash {found} does not match {expected}")]
    ResponseHashMismatch { expected: B256, found: B256 },
    #[error("receipt bills payer {found}, but the request was authorized by {expected}")]
    PayerMismatch { expected: Address, found: Address },
}

pub(crate) fn sign(
    signer: &PrivateKeySigner,
    receipt: UsageReceipt,
    domain: &ReceiptDomain,
) -> Result<SignedReceipt, ReceiptError> {
    if receipt.node_signer != signer.address() {
        return Err(ReceiptError::SignerFieldMismatch {
            in_receipt: receipt.node_signer,
            key: signer.address(),
        });
    }
    let signature = crate::signature::sign_digest(signer, &receipt.signing_hash(domain))
        .map_err(ReceiptError::Signing)?;
    Ok(SignedReceipt { receipt, signature })
}

impl SignedReceipt {
    /// The address whose key made this signature under `domain`.
    pub fn recover_signer(&self, domain: &ReceiptDomain) -> Result<Address, ReceiptError> {
        crate::signature::recover(&self.signature, &self.receipt.signing_hash(domain))
            .map_err(ReceiptError::BadSignature)
    }

    /// Checks the signature, that it was made by `expected_signer`, that the
    /// receipt names that signer, and that it carries the expected hashes and
    /// payer.
    pub fn verify(
        &self,
        domain: &ReceiptDomain,
        expected_signer: Address,
        expected: &ExpectedReceipt,
    ) -> Result<(), ReceiptError> {
        let recovered = self.recover_signer(domain)?;
        if recovered != expected_signer {
            return Err(ReceiptError::WrongSigner {
                expected: expected_signer,
                recovered,
            });
        }
        let r = &self.receipt;
        if r.node_signer != recovered {
            return Err(ReceiptError::NodeSignerMismatch {
                in_receipt: r.node_signer,
                recovered,
            });
        }
        if r.request_hash != expected.request_hash {
            return Err(ReceiptError::RequestHashMismatch {
                expected: expected.request_hash,
                found: r.request_hash,
            });
        }
        if r.response_hash != expected.response_hash {
            return Err(ReceiptError::ResponseHashMismatch {
                expected: expected.response_hash,
                found: r.response_hash,
            });
        }
        if r.payer != expected.payer {
            return Err(ReceiptError::PayerMismatch {
                expected: expected.payer,
                found: r.payer,
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
            sol::UsageReceipt::eip712_encode_type(),
            UsageReceipt::EIP712_TYPE
        );
    }
}

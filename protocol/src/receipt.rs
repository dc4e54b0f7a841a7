//! Usage receipts: EIP-712 typed data signed by the enclave's secp256k1 key, so
//! that the router, an auditor or a Solidity contract (`ecrecover` over the
//! standard `eip712_signing_hash`) can check them.
//!
//! Signatures are 65 bytes `r || s || v` with `v` in {27, 28} and low `s`
//! (what OpenZeppelin's `ECDSA.recover` accepts); anything else is rejected, so
//! there is exactly one valid signature encoding per receipt and key.

use std::borrow::Cow;

use alloy_primitives::{Address, B256, FixedBytes, Signature, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{Eip712Domain, SolStruct};
use serde::{Deserialize, Serialize};
use thiserror::Error;

mod sol {
    alloy_sol_types::sol! {
        struct UsageReceipt {
            bytes32 requestId;
            address nodeSigner;
            string modelId;
            uint64 promptTokens;
            uint64 completionTokens;
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
    pub model_id: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// SHA-256 of the sealed request body as the enclave received it.
    pub request_hash: B256,
    /// SHA-256 of all response ciphertext bytes, in order.
    pub response_hash: B256,
    /// Unix time, seconds.
    pub issued_at: u64,
}

impl UsageReceipt {
    /// The EIP-712 `encodeType` string of the struct.
    pub const EIP712_TYPE: &'static str = "UsageReceipt(bytes32 requestId,address nodeSigner,string modelId,uint64 promptTokens,uint64 completionTokens,bytes32 requestHash,bytes32 responseHash,uint64 issuedAt)";

    fn to_sol(&self) -> sol::UsageReceipt {
        sol::UsageReceipt {
            requestId: self.request_id,
            nodeSigner: self.node_signer,
            modelId: self.model_id.clone(),
            promptTokens: self.prompt_tokens,
            completionTokens: self.completion_tokens,
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
    let hash = receipt.signing_hash(domain);
    let signature = signer
        .sign_hash_sync(&hash)
        .map_err(ReceiptError::Signing)?
        .normalized_s();
    Ok(SignedReceipt {
        receipt,
        signature: FixedBytes(signature.as_bytes()),
    })
}

impl SignedReceipt {
    /// The address whose key made this signature under `domain`.
    pub fn recover_signer(&self, domain: &ReceiptDomain) -> Result<Address, ReceiptError> {
        let bad = ReceiptError::BadSignature;
        let [.., v] = self.signature.0;
        if v != 27 && v != 28 {
            return Err(bad(SignatureFault::InvalidV { v }));
        }
        let signature = Signature::from_raw_array(&self.signature.0)
            .map_err(|_| bad(SignatureFault::InvalidV { v }))?;
        if signature.normalize_s().is_some() {
            return Err(bad(SignatureFault::HighS));
        }
        signature
            .recover_address_from_prehash(&self.receipt.signing_hash(domain))
            .map_err(|_| bad(SignatureFault::Unrecoverable))
    }

    /// Checks the signature, that it was made by `expected_signer`, that the
    /// receipt names that signer, and that it carries the expected hashes.
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

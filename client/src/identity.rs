//! What a client takes from a node's attested identity: the key requests
//! are sealed to, the receipt signer, the model, the prices, and the
//! receipts' EIP-712 domain. Read from the bundle's identity, which the
//! verified report data binds, so none of it can differ from what the
//! hardware attested. The router reads nodes the same way.

use base64::Engine as _;
use cloister_attestation::bundle::EvidenceBundle;
use cloister_protocol::{Address, KeyConfigInfo, ReceiptDomain};

/// A node's identity, read from a bundle whose verdict accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Model id clients name.
    pub model: String,
    /// SHA-256 of the weights (hex).
    pub weights_sha256: String,
    /// Receipt-signing address.
    pub signer: Address,
    /// OHTTP key configuration requests are sealed to.
    pub key_config: Vec<u8>,
    /// Price per prompt token (settlement token units).
    pub prompt_price: u64,
    /// Price per completion token.
    pub completion_price: u64,
    /// The provider paid for this node's receipts, when the node names one.
    pub payout: Option<Address>,
}

/// Why an identity is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A field is missing or malformed.
    #[error("identity field {field}: {problem}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The node signs receipts for another chain or contract.
    #[error(
        "the node signs receipts for chain {chain_id} contract {contract}, and the expected domain is chain {want_chain} contract {want_contract}"
    )]
    WrongReceiptDomain {
        /// The node's chain id.
        chain_id: u64,
        /// The node's contract.
        contract: String,
        /// The expected chain id.
        want_chain: u64,
        /// The expected contract.
        want_contract: Address,
    },
}

fn field(field: &'static str, problem: impl Into<String>) -> IdentityError {
    IdentityError::Field {
        field,
        problem: problem.into(),
    }
}

impl NodeIdentity {
    /// Reads the identity of `bundle`, requiring receipts signed in `domain`.
    /// Call it only on a bundle whose verdict accepted it: the identity is
    /// bound by the report data, which only the verdict checks.
    pub fn from_bundle(
        bundle: &EvidenceBundle,
        domain: &ReceiptDomain,
    ) -> Result<Self, IdentityError> {
        let typed = bundle
            .typed_identity()
            .map_err(|e| field("identity", e.to_string()))?;
        let key_config = base64::engine::general_purpose::STANDARD
            .decode(&typed.hpke_key_config)
            .map_err(|e| field("hpke_key_config", e.to_string()))?;
        KeyConfigInfo::parse(&key_config).map_err(|e| field("hpke_key_config", e.to_string()))?;
        let signer: Address = typed
            .signer
            .parse()
            .map_err(|_| field("signer", "not a 0x address"))?;
        let receipts = bundle
            .identity
            .get("receipts")
            .ok_or_else(|| field("receipts", "missing"))?;
        let number = |name: &'static str| {
            receipts
                .get(name)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| field("receipts", format!("{name} missing or not a number")))
        };
        let chain_id = number("chain_id")?;
        let contract = receipts
            .get("verifying_contract")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| field("receipts", "verifying_contract missing"))?;
        let contract_address: Address = contract
            .parse()
            .map_err(|_| field("receipts", "verifying_contract is not a 0x address"))?;
        if chain_id != domain.chain_id || contract_address != domain.verifying_contract {
            return Err(IdentityError::WrongReceiptDomain {
                chain_id,
                contract: contract.to_owned(),
                want_chain: domain.chain_id,
                want_contract: domain.verifying_contract,
            });
        }
        let payout = match receipts.get("payout_address") {
            None | Some(serde_json::Value::Null) => None,
            Some(value) => Some(
                value
                    .as_str()
                    .and_then(|text| text.parse::<Address>().ok())
                    .filter(|a| !a.is_zero())
                    .ok_or_else(|| field("receipts", "payout_address is not a 0x address"))?,
            ),
        };
        Ok(Self {
            model: typed.model.id,
            weights_sha256: typed.model.weights_sha256,
            signer,
            key_config,
            prompt_price: number("prompt_price")?,
            completion_price: number("completion_price")?,
            payout,
        })
    }
}

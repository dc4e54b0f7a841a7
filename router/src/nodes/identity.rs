//! What the router takes from a node's attested identity
//! ([`NodeIdentity`], read as every client reads it) and from the verdict
//! that accepted it.

use std::collections::BTreeMap;

use cloister_attestation::Verdict;
use cloister_attestation::bundle::EvidenceBundle;
pub use cloister_client::IdentityError;
use cloister_client::NodeIdentity;
use cloister_protocol::{Address, ReceiptDomain};

/// A node's identity after its bundle passed.
#[derive(Debug, Clone)]
pub struct Attested {
    /// Model id clients name.
    pub model: String,
    /// SHA-256 of the weights.
    pub weights_sha256: String,
    /// Receipt-signing address.
    pub signer: Address,
    /// OHTTP key configuration requests are sealed to.
    pub key_config: Vec<u8>,
    /// Price per prompt token (settlement token units).
    pub prompt_price: u64,
    /// Price per completion token.
    pub completion_price: u64,
    /// The provider paid for this node's receipts (recorded with the signer
    /// in the Registry), when the node names one.
    pub payout: Option<Address>,
    /// SHA-256 of the bundle bytes as received (the attestation log holds
    /// them; the Registry records this hash with the signer).
    pub bundle_sha256: [u8; 32],
    /// `tdx`, `sev-snp`, `simulated`.
    pub platform: String,
    /// TCB status from the verdict.
    pub tcb_status: Option<String>,
    /// Measurements from the verdict.
    pub measurements: BTreeMap<String, String>,
    /// Unix seconds of the verification.
    pub verified_at: i64,
    /// Unix seconds of the first accepted verification of this signer at
    /// this node (re-attestations carry it over while the key stays).
    pub signer_since: i64,
    /// The attestation log entry that recorded it.
    pub log_id: i64,
}

impl Attested {
    /// Reads the identity of a bundle whose verdict accepted it.
    pub fn from_bundle(
        bundle: &EvidenceBundle,
        verdict: &Verdict,
        domain: &ReceiptDomain,
        log_id: i64,
    ) -> Result<Self, IdentityError> {
        let identity = NodeIdentity::from_bundle(bundle, domain)?;
        Ok(Self {
            model: identity.model,
            weights_sha256: identity.weights_sha256,
            signer: identity.signer,
            key_config: identity.key_config,
            prompt_price: identity.prompt_price,
            completion_price: identity.completion_price,
            payout: identity.payout,
            bundle_sha256: [0; 32],
            platform: verdict.platform.to_string(),
            tcb_status: verdict.tcb_status.clone(),
            measurements: verdict.measurements.clone(),
            verified_at: i64::try_from(verdict.verified_at.unix()).unwrap_or(i64::MAX),
            signer_since: i64::try_from(verdict.verified_at.unix()).unwrap_or(i64::MAX),
            log_id,
        })
    }
}

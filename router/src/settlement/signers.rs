//! Keeping the Registry's enclave signers in step with attestation: the
//! signer of every serving node that names a payout address is recorded
//! (`Registry.recordSigner`) for that provider, with the hash of the bundle
//! that proved it, its measurement-set and model digests, and the time it
//! was first attested; the signer of a node whose attestation is refused is
//! removed (`Registry.removeSigner`). An unreachable node's signer stays: its
//! key lives only in that enclave, and the receipts it signed remain good.
//!
//! The chain refuses a signer whose provider is not staked or whose code or
//! model governance has not allowed; the worker says what to do and tries
//! again next round. Receipts of a signer not yet recorded wait.

use std::collections::HashSet;
use std::sync::Arc;

use alloy::primitives::{Address, B256};
use cloister_contracts::bindings::Registry::RegistryErrors;
use cloister_contracts::revert::{ChainError, Revert, send_and_confirm};
use cloister_contracts::signer_record::{measurement_digest, model_digest};

use super::{SettleError, Settler, TickReport};
use crate::nodes::{Attested, NodeRegistry, NodeStatus};

/// The Registry accepts a `validFrom` at most this far back (its
/// `MAX_BACKDATE`, one hour), less a margin for the time the transaction
/// takes to be mined.
const BACKDATE_LIMIT_SECS: i64 = 3600 - 300;

/// A signer the chain should hold (serving) or no longer hold (refused).
#[derive(Debug, Clone)]
pub struct SignerClaim {
    /// What the node's latest accepted bundle attested.
    pub attested: Arc<Attested>,
    /// `None`: serving. `Some(reason)`: refused, the signer is to go.
    pub refused: Option<String>,
}

/// Where the worker learns which signers are attested now.
pub type SignerSource = Arc<dyn Fn() -> Vec<SignerClaim> + Send + Sync>;

/// The claims of a router's nodes.
pub fn claims_of(nodes: &NodeRegistry) -> Vec<SignerClaim> {
    nodes
        .all()
        .iter()
        .filter_map(|node| match node.status() {
            NodeStatus::Serving(attested) => Some(SignerClaim {
                attested,
                refused: None,
            }),
            NodeStatus::Refused {
                attested: Some(attested),
                reasons,
                ..
            } => Some(SignerClaim {
                attested,
                refused: Some(format!("attestation refused: {}", reasons.join("; "))),
            }),
            _ => None,
        })
        .collect()
}

/// Which signers the worker knows the chain holds, so that it asks once.
#[derive(Debug, Default)]
pub(super) struct KnownSigners {
    active: HashSet<Address>,
    removed: HashSet<Address>,
}

impl Settler {
    /// Records serving signers and removes refused ones.
    pub(super) async fn sync_signers(&self, report: &mut TickReport) -> Result<(), SettleError> {
        let Some(source) = &self.signers else {
            return Ok(());
        };
        for claim in source() {
            let a = &claim.attested;
            match &claim.refused {
                None => self.record(a, report).await?,
                Some(reason) => self.remove(a.signer, reason, report).await?,
            }
        }
        Ok(())
    }

    async fn record(&self, a: &Attested, report: &mut TickReport) -> Result<(), SettleError> {
        if self.known.lock().await.active.contains(&a.signer) {
            return Ok(());
        }
        let Some(provider) = a.payout else {
            report.signers_without_payout += 1;
            return Ok(());
        };
        let active = self
            .registry
            .signerActive(a.signer)
            .call()
            .await
            .map_err(|e| ChainError::from_contract("Registry.signerActive", e))?;
        if active {
            let mut known = self.known.lock().await;
            known.active.insert(a.signer);
            known.removed.remove(&a.signer);
            return Ok(());
        }
        let (measurement, model) = match (
            measurement_digest(&a.platform, &a.measurements),
            model_digest(&a.weights_sha256),
        ) {
            (Ok(m), Ok(w)) => (m, w),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(signer = %a.signer, error = %e, "cannot form the Registry record of this signer");
                return Ok(());
            }
        };
        let now = crate::state::now_unix();
        let valid_from = a
            .signer_since
            .max(now - BACKDATE_LIMIT_SECS)
            .min(now - 5)
            .max(0);
        let call = self.registry.recordSigner(
            a.signer,
            provider,
            B256::from(a.bundle_sha256),
            measurement,
            model,
            u64::try_from(valid_from).unwrap_or(0),
        );
        match send_and_confirm("Registry.recordSigner", call).await {
            Ok(_)
            | Err(ChainError::Reverted {
                revert: Revert::Registry(RegistryErrors::SignerAlreadyActive(_)),
                ..
            }) => {
                tracing::info!(signer = %a.signer, %provider, valid_from, log_id = a.log_id, "enclave signer recorded in the Registry");
                let mut known = self.known.lock().await;
                known.active.insert(a.signer);
                known.removed.remove(&a.signer);
                report.signers_recorded.push(a.signer);
                Ok(())
            }
            Err(ChainError::Reverted { revert, .. }) => {
                report.signers_refused += 1;
                let hint = match &revert {
                    Revert::Registry(
                        RegistryErrors::MeasurementNotAllowed(_)
                        | RegistryErrors::ModelNotAllowed(_),
                    ) => format!(
                        "governance allows it with: cloister chain allow --measurement {measurement} --model {model}"
                    ),
                    Revert::Registry(
                        RegistryErrors::NotRegistered(_) | RegistryErrors::StakeBelowMinimum(_),
                    ) => format!("the provider {provider} must register and stake in the Registry"),
                    _ => String::new(),
                };
                tracing::warn!(signer = %a.signer, %provider, refusal = %revert.name(), %hint, "the Registry refused this node's signer; its receipts wait");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn remove(
        &self,
        signer: Address,
        reason: &str,
        report: &mut TickReport,
    ) -> Result<(), SettleError> {
        if self.known.lock().await.removed.contains(&signer) {
            return Ok(());
        }
        let active = self
            .registry
            .signerActive(signer)
            .call()
            .await
            .map_err(|e| ChainError::from_contract("Registry.signerActive", e))?;
        if active {
            let reason: String = reason.chars().take(200).collect();
            match send_and_confirm(
                "Registry.removeSigner",
                self.registry.removeSigner(signer, reason.clone()),
            )
            .await
            {
                Ok(_)
                | Err(ChainError::Reverted {
                    revert: Revert::Registry(RegistryErrors::SignerNotActive(_)),
                    ..
                }) => {
                    tracing::warn!(%signer, %reason, "enclave signer removed from the Registry");
                    report.signers_removed.push(signer);
                }
                Err(e) => return Err(e.into()),
            }
        }
        let mut known = self.known.lock().await;
        known.active.remove(&signer);
        known.removed.insert(signer);
        Ok(())
    }
}

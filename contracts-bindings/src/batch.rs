//! A settlement batch from stored receipts, in the one canonical form the
//! Settlement contract accepts: receipts ordered by digest, debits per payer
//! and credits per provider each sorted by address, and the protocol fee
//! `floor(total × feeBps / 10 000)`.
//!
//! Each provider's credit is its gross minus its share of the fee,
//! `gross − floor(gross × feeBps / 10 000)`; the few units that flooring
//! leaves over (fewer than the number of providers) are taken from the
//! provider with the largest gross (lowest address on a tie), so that
//! debits = credits + fee exactly.

use std::collections::BTreeMap;

use alloy::primitives::{Address, B256, U256};
use thiserror::Error;

use crate::bindings::Settlement;
use crate::merkle::{self, MerkleTree};

/// One receipt as the batch needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchItem {
    /// The receipt's EIP-712 signing hash under the Settlement domain.
    pub digest: B256,
    /// What the receipt charges (tokens × prices).
    pub charge: U256,
    /// Whose escrow pays (the receipt's payer).
    pub payer: Address,
    /// Who is paid (the provider of the node that signed it).
    pub provider: Address,
}

/// Why a batch could not be formed.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    #[error("a batch needs at least one receipt")]
    Empty,
    #[error("receipt {0} appears twice")]
    Duplicate(B256),
    #[error("fee of {fee_bps} basis points is over 10000")]
    FeeOutOfRange { fee_bps: u16 },
    #[error("{count} receipts do not fit a batch (at most {max})")]
    TooMany { count: usize, max: u32 },
}

/// A batch ready to post.
#[derive(Debug, Clone)]
pub struct BatchPlan {
    pub batch_id: u64,
    /// Receipts in tree order (by digest).
    pub items: Vec<BatchItem>,
    pub tree: MerkleTree,
    /// (payer, amount), sorted by address.
    pub debits: Vec<(Address, U256)>,
    /// (provider, amount), sorted by address.
    pub credits: Vec<(Address, U256)>,
    pub total: U256,
    pub fee: U256,
}

impl BatchPlan {
    /// Forms batch `batch_id` over `items` with the contract's fee.
    pub fn new(batch_id: u64, mut items: Vec<BatchItem>, fee_bps: u16) -> Result<Self, BatchError> {
        if items.is_empty() {
            return Err(BatchError::Empty);
        }
        if fee_bps > 10_000 {
            return Err(BatchError::FeeOutOfRange { fee_bps });
        }
        if u32::try_from(items.len()).is_err() {
            return Err(BatchError::TooMany {
                count: items.len(),
                max: u32::MAX,
            });
        }
        items.sort_by_key(|i| i.digest);
        if let Some(dup) = items
            .iter()
            .zip(items.iter().skip(1))
            .find(|(a, b)| a.digest == b.digest)
        {
            return Err(BatchError::Duplicate(dup.0.digest));
        }
        let tree = MerkleTree::new(
            items
                .iter()
                .map(|i| merkle::leaf(i.digest, i.charge))
                .collect(),
        )
        .ok_or(BatchError::Empty)?;

        let mut debits: BTreeMap<Address, U256> = BTreeMap::new();
        let mut gross: BTreeMap<Address, U256> = BTreeMap::new();
        for item in &items {
            *debits.entry(item.payer).or_default() += item.charge;
            *gross.entry(item.provider).or_default() += item.charge;
        }
        let total: U256 = debits.values().copied().sum();
        let bps = U256::from(fee_bps);
        let ten_thousand = U256::from(10_000u64);
        let fee = total * bps / ten_thousand;
        let mut credits: BTreeMap<Address, U256> = gross
            .iter()
            .map(|(p, g)| (*p, *g - *g * bps / ten_thousand))
            .collect();
        let credited: U256 = credits.values().copied().sum();
        // Flooring per provider leaves credits ≥ total − fee; the excess goes
        // to the fee side by taking it from the largest provider.
        let excess = credited - (total - fee);
        if !excess.is_zero() {
            let largest = gross
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map(|(p, _)| *p);
            if let Some(credit) = largest.and_then(|p| credits.get_mut(&p)) {
                *credit -= excess;
            }
        }
        credits.retain(|_, amount| !amount.is_zero());
        Ok(Self {
            batch_id,
            items,
            tree,
            debits: debits.into_iter().collect(),
            credits: credits.into_iter().collect(),
            total,
            fee,
        })
    }

    /// The Merkle root.
    pub fn root(&self) -> B256 {
        self.tree.root()
    }

    /// Number of receipts.
    pub fn receipt_count(&self) -> u32 {
        u32::try_from(self.items.len()).unwrap_or(u32::MAX)
    }

    /// The proof for the receipt with `digest`, if it is in the batch.
    pub fn proof(&self, digest: B256) -> Option<Vec<B256>> {
        let index = self
            .items
            .binary_search_by_key(&digest, |i| i.digest)
            .ok()?;
        self.tree.proof(index)
    }

    /// The debit list as the contract takes it.
    pub fn debit_entries(&self) -> Vec<Settlement::Entry> {
        crate::bindings::entries(&self.debits)
    }

    /// The credit list as the contract takes it.
    pub fn credit_entries(&self) -> Vec<Settlement::Entry> {
        crate::bindings::entries(&self.credits)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::expect_used)]
    use super::*;

    fn item(n: u8, charge: u64, payer: u8, provider: u8) -> BatchItem {
        BatchItem {
            digest: B256::repeat_byte(n),
            charge: U256::from(charge),
            payer: Address::repeat_byte(payer),
            provider: Address::repeat_byte(provider),
        }
    }

    #[test]
    fn sums_balance_and_lists_are_sorted() {
        let items = vec![
            item(3, 1001, 2, 9),
            item(1, 999, 1, 8),
            item(2, 7, 2, 9),
            item(4, 333, 1, 7),
        ];
        let plan = BatchPlan::new(1, items, 250).expect("valid");
        let debits: U256 = plan.debits.iter().map(|d| d.1).sum();
        let credits: U256 = plan.credits.iter().map(|c| c.1).sum();
        assert_eq!(plan.total, U256::from(2340));
        assert_eq!(plan.fee, U256::from(58)); // floor(2340 × 0.025)
        assert_eq!(debits, plan.total);
        assert_eq!(credits + plan.fee, plan.total);
        assert!(plan.debits.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(plan.credits.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(plan.items.windows(2).all(|w| w[0].digest < w[1].digest));
        for i in &plan.items {
            let proof = plan.proof(i.digest).expect("in batch");
            assert!(merkle::verify(
                plan.root(),
                merkle::leaf(i.digest, i.charge),
                &proof
            ));
        }
    }

    #[test]
    fn same_receipts_in_any_order_give_the_same_batch() {
        let a = vec![item(1, 5, 1, 7), item(2, 6, 2, 8), item(3, 7, 1, 8)];
        let mut b = a.clone();
        b.reverse();
        let pa = BatchPlan::new(9, a, 300).expect("valid");
        let pb = BatchPlan::new(9, b, 300).expect("valid");
        assert_eq!(pa.root(), pb.root());
        assert_eq!(pa.credits, pb.credits);
        assert_eq!(pa.debits, pb.debits);
    }

    #[test]
    fn refuses_empty_duplicate_and_bad_fee() {
        assert_eq!(
            BatchPlan::new(1, vec![], 250).err(),
            Some(BatchError::Empty)
        );
        let dup = vec![item(1, 5, 1, 7), item(1, 5, 1, 7)];
        assert_eq!(
            BatchPlan::new(1, dup, 250).err(),
            Some(BatchError::Duplicate(B256::repeat_byte(1)))
        );
        assert_eq!(
            BatchPlan::new(1, vec![item(1, 5, 1, 7)], 10_001).err(),
            Some(BatchError::FeeOutOfRange { fee_bps: 10_001 })
        );
    }
}

//! The batch Merkle tree, as `Settlement.verifyProof` checks it.
//!
//! Leaf: `keccak256(keccak256(abi.encode(receiptDigest, charge)))`. Inner
//! node: `keccak256(min(a, b) ‖ max(a, b))`. A level with an odd number of
//! nodes carries its last node up unchanged. A proof is the list of siblings
//! from the leaf up (carried levels contribute nothing).

use alloy::primitives::{B256, U256, keccak256};
use alloy::sol_types::SolValue;

/// The leaf of a receipt (its EIP-712 signing hash) and the charge billed for it.
pub fn leaf(digest: B256, charge: U256) -> B256 {
    keccak256(keccak256((digest, charge).abi_encode()))
}

fn parent(a: B256, b: B256) -> B256 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    let mut both = [0u8; 64];
    both[..32].copy_from_slice(lo.as_slice());
    both[32..].copy_from_slice(hi.as_slice());
    keccak256(both)
}

/// A tree over at least one leaf, all levels kept for proofs.
#[derive(Debug, Clone)]
pub struct MerkleTree {
    levels: Vec<Vec<B256>>,
}

impl MerkleTree {
    /// Builds the tree over `leaves` in the given order; `None` when empty.
    pub fn new(leaves: Vec<B256>) -> Option<Self> {
        if leaves.is_empty() {
            return None;
        }
        let mut levels = vec![leaves];
        while let Some(level) = levels.last().filter(|l| l.len() > 1) {
            let next = level
                .chunks(2)
                .map(|pair| match pair {
                    [a, b] => parent(*a, *b),
                    [a] => *a,
                    _ => B256::ZERO,
                })
                .collect();
            levels.push(next);
        }
        Some(Self { levels })
    }

    /// The root.
    pub fn root(&self) -> B256 {
        self.levels
            .last()
            .and_then(|top| top.first())
            .copied()
            .unwrap_or_default()
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.levels.first().map_or(0, Vec::len)
    }

    /// Always false: a tree has at least one leaf.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The proof for the leaf at `index`, `None` when out of range.
    pub fn proof(&self, mut index: usize) -> Option<Vec<B256>> {
        if index >= self.len() {
            return None;
        }
        let mut proof = Vec::new();
        // Every level but the root's.
        for level in self.levels.iter().take(self.levels.len() - 1) {
            let sibling = index ^ 1;
            if let Some(node) = level.get(sibling) {
                proof.push(*node);
            }
            index /= 2;
        }
        Some(proof)
    }
}

/// Checks `proof` for `leaf` against `root` (what the contract does).
pub fn verify(root: B256, leaf: B256, proof: &[B256]) -> bool {
    proof
        .iter()
        .fold(leaf, |node, sibling| parent(node, *sibling))
        == root
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::indexing_slicing,
        clippy::expect_used,
        clippy::cast_possible_truncation
    )]
    use super::*;

    fn leaves(n: u8) -> Vec<B256> {
        (0..n)
            .map(|i| leaf(B256::repeat_byte(i), U256::from(i)))
            .collect()
    }

    #[test]
    fn every_leaf_proves_for_every_size() {
        for n in 1..=17 {
            let tree = MerkleTree::new(leaves(n)).expect("non-empty");
            for (i, l) in leaves(n).iter().enumerate() {
                let proof = tree.proof(i).expect("in range");
                assert!(verify(tree.root(), *l, &proof), "n={n} i={i}");
            }
            assert!(tree.proof(n as usize).is_none());
        }
    }

    #[test]
    fn a_different_charge_or_leaf_does_not_prove() {
        let tree = MerkleTree::new(leaves(5)).expect("non-empty");
        let proof = tree.proof(2).expect("in range");
        assert!(!verify(
            tree.root(),
            leaf(B256::repeat_byte(2), U256::from(3)),
            &proof
        ));
        assert!(!verify(
            tree.root(),
            leaf(B256::repeat_byte(9), U256::from(2)),
            &proof
        ));
        let inner = parent(leaves(5)[0], leaves(5)[1]);
        assert!(!verify(tree.root(), inner, &proof));
    }

    #[test]
    fn one_leaf_is_its_own_root() {
        let l = leaves(1);
        let tree = MerkleTree::new(l.clone()).expect("non-empty");
        assert_eq!(tree.root(), l[0]);
        assert_eq!(tree.proof(0), Some(vec![]));
        assert!(MerkleTree::new(vec![]).is_none());
    }
}

//! The enclave's two secrets: the HPKE key pair that requests are sealed to and
//! the secp256k1 key that signs usage receipts. Neither is serialisable,
//! printable or reachable from outside this crate.

use alloy_primitives::Address;
use alloy_signer_local::PrivateKeySigner;
use ohttp::{
    KeyConfig, Server, SymmetricSuite,
    hpke::{Aead, Kdf, Kem},
};
use rand_core::{OsRng, RngCore};

use crate::{
    error::{CipherFault, KeyError},
    receipt::{self, ReceiptDomain, ReceiptError, SignedReceipt, UsageReceipt},
};

/// A node's keys, created fresh at enclave start.
pub struct NodeKeys {
    server: Server,
    key_config: Vec<u8>,
    key_id: u8,
    signer: PrivateKeySigner,
}

impl NodeKeys {
    /// A fresh HPKE key pair, published as an Oblivious HTTP key configuration
    /// (KEM DHKEM(X25519, HKDF-SHA256), KDF HKDF-SHA256, AEAD AES-128-GCM, key
    /// id chosen at random), and a fresh receipt-signing key.
    ///
    /// Why AES-128-GCM and not AES-256-GCM or ChaCha20-Poly1305: see the
    /// suite policy in `keyconfig.rs` (limits of `ohttp` 0.8.0).
    pub fn generate() -> Result<Self, KeyError> {
        let mut id = [0u8; 1];
        OsRng
            .try_fill_bytes(&mut id)
            .map_err(|e| KeyError::Randomness {
                reason: e.to_string(),
            })?;
        let [key_id] = id;
        let suite = SymmetricSuite::new(Kdf::HkdfSha256, Aead::Aes128Gcm);
        let hpke = |e: ohttp::Error| KeyError::Hpke(CipherFault::from_ohttp(&e));
        let config = KeyConfig::new(key_id, Kem::X25519Sha256, vec![suite]).map_err(hpke)?;
        let server = Server::new(config).map_err(hpke)?;
        let key_config = server.config().encode().map_err(hpke)?;
        Ok(Self {
            server,
            key_config,
            key_id,
            signer: PrivateKeySigner::random(),
        })
    }

    /// The encoded key configuration (RFC 9458 section 3) that clients seal to.
    pub fn key_config(&self) -> Vec<u8> {
        self.key_config.clone()
    }

    /// The key id inside [`key_config`](Self::key_config).
    pub fn key_id(&self) -> u8 {
        self.key_id
    }

    /// The Ethereum address of the receipt-signing key.
    pub fn signer_address(&self) -> Address {
        self.signer.address()
    }

    /// Signs `receipt` as EIP-712 typed data under `domain`.
    /// `receipt.node_signer` must be [`signer_address`](Self::signer_address).
    pub fn sign_receipt(
        &self,
        receipt: UsageReceipt,
        domain: &ReceiptDomain,
    ) -> Result<SignedReceipt, ReceiptError> {
        receipt::sign(&self.signer, receipt, domain)
    }

    pub(crate) fn server(&self) -> &Server {
        &self.server
    }
}

impl std::fmt::Debug for NodeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKeys")
            .field("key_id", &self.key_id)
            .field(
                "key_config",
                &alloy_primitives::hex::encode(&self.key_config),
            )
            .field("signer_address", &self.signer.address())
            .finish_non_exhaustive()
    }
}

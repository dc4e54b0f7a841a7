//! secp256k1 signatures in the one encoding this protocol accepts: 65 bytes
//! `r || s || v`, `v` in {27, 28}, low `s` (what OpenZeppelin's
//! `ECDSA.recover` accepts), so there is exactly one valid encoding per
//! message and key. Used for usage receipts and payer authorizations.

use alloy_primitives::{Address, B256, FixedBytes, Signature};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;

use crate::receipt::SignatureFault;

/// Signs a 32-byte EIP-712 digest.
pub(crate) fn sign_digest(
    signer: &PrivateKeySigner,
    digest: &B256,
) -> Result<FixedBytes<65>, alloy_signer::Error> {
    let signature = signer.sign_hash_sync(digest)?.normalized_s();
    Ok(FixedBytes(signature.as_bytes()))
}

/// The address whose key signed `digest`, for a signature in the accepted
/// encoding only.
pub(crate) fn recover(
    signature: &FixedBytes<65>,
    digest: &B256,
) -> Result<Address, SignatureFault> {
    let [.., v] = signature.0;
    if v != 27 && v != 28 {
        return Err(SignatureFault::InvalidV { v });
    }
    let parsed =
        Signature::from_raw_array(&signature.0).map_err(|_| SignatureFault::InvalidV { v })?;
    if parsed.normalize_s().is_some() {
        return Err(SignatureFault::HighS);
    }
    parsed
        .recover_address_from_prehash(digest)
        .map_err(|_| SignatureFault::Unrecoverable)
}

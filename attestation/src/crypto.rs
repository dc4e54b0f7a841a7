//! Signature checks used by several verifiers, on `ring` (constant-time,
//! and several times faster than the pure-Rust P-384 arithmetic).

use ring::signature::{
    ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_FIXED, RSA_PSS_2048_8192_SHA384, UnparsedPublicKey,
};

/// ECDSA P-384 / SHA-384 with a DER signature (X.509 certificates).
pub(crate) fn p384_der_signature_ok(public_key_sec1: &[u8], message: &[u8], der: &[u8]) -> bool {
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, public_key_sec1)
        .verify(message, der)
        .is_ok()
}

/// ECDSA P-384 / SHA-384 with a raw big-endian `r‖s` signature (SPDM, SNP).
pub(crate) fn p384_fixed_signature_ok(
    public_key_sec1: &[u8],
    message: &[u8],
    r_s: &[u8; 96],
) -> bool {
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, public_key_sec1)
        .verify(message, r_s)
        .is_ok()
}

/// RSASSA-PSS / SHA-384 (MGF1-SHA-384, salt 48) with an RSA key of 2048 to
/// 8192 bits given as a DER `RSAPublicKey` (AMD's ARK, ASK and ASVK).
pub(crate) fn rsa_pss_sha384_signature_ok(
    rsa_public_key_der: &[u8],
    message: &[u8],
    signature: &[u8],
) -> bool {
    UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA384, rsa_public_key_der)
        .verify(message, signature)
        .is_ok()
}

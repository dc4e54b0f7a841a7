//! Binding evidence to a verifier's nonce and a node's identity.
//!
//! ```text
//! report_data = SHA-512( "cloister/attest/v1"
//!                      || nonce                                  32 bytes
//!                      || SHA-256(canonical JSON of identity)    32 bytes
//!                      || SHA-256(GPU reports) )                 32 bytes
//! SHA-256(GPU reports) = SHA-256( for each report in bundle order:
//!                                 u32 big-endian length || report bytes )
//! ```
//!
//! Canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace,
//! strings and integers written as `serde_json` writes them (for the
//! string-valued identity this is RFC 8785 JCS). The identity is hashed as
//! received, unknown keys included, so nothing in it escapes the binding.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

/// Domain separation prefix of the binding.
pub const DOMAIN: &[u8] = b"cloister/attest/v1";

/// The identity a node binds into its evidence (DESIGN.md section 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// OHTTP key configuration of the node's HPKE key (base64).
    pub hpke_key_config: String,
    /// Ethereum address of the node's receipt-signing key (`0x` + 40 hex).
    pub signer: String,
    /// The model served.
    pub model: ModelIdentity,
    /// The enclave application.
    pub app: AppIdentity,
}

/// Model identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelIdentity {
    /// Model id as clients name it.
    pub id: String,
    /// SHA-256 over the weight files (hex).
    pub weights_sha256: String,
}

/// Enclave application identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppIdentity {
    /// Version.
    pub version: String,
    /// Source revision.
    pub git: String,
}

/// Writes `value` as canonical JSON.
pub fn canonical_json(value: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(b':');
                write_canonical(value, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &serde_json::Value, out: &mut Vec<u8>) {
    // Serialising a scalar cannot fail.
    if let Ok(text) = serde_json::to_vec(value) {
        out.extend_from_slice(&text);
    }
}

/// SHA-256 of the canonical JSON of an identity.
pub fn identity_digest(identity: &serde_json::Value) -> [u8; 32] {
    Sha256::digest(canonical_json(identity)).into()
}

/// SHA-256 over the GPU reports, each prefixed by its length.
pub fn gpu_reports_digest<'a>(reports: impl IntoIterator<Item = &'a [u8]>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for report in reports {
        // Reports are a few kilobytes; a longer one cannot be real evidence.
        let len = u32::try_from(report.len()).unwrap_or(u32::MAX);
        hasher.update(len.to_be_bytes());
        hasher.update(report);
    }
    hasher.finalize().into()
}

/// The 64-byte report data a node puts in its TDX/SNP evidence.
pub fn report_data<'a>(
    nonce: &[u8; 32],
    identity: &serde_json::Value,
    gpu_reports: impl IntoIterator<Item = &'a [u8]>,
) -> [u8; 64] {
    let mut hasher = Sha512::new();
    hasher.update(DOMAIN);
    hasher.update(nonce);
    hasher.update(identity_digest(identity));
    hasher.update(gpu_reports_digest(gpu_reports));
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level_and_drops_whitespace() {
        let v = json!({"b": 1, "a": {"z": "x", "y": [true, null, "é\n"]}});
        assert_eq!(
            String::from_utf8(canonical_json(&v)).unwrap(),
            r#"{"a":{"y":[true,null,"é\n"],"z":"x"},"b":1}"#
        );
    }

    #[test]
    fn key_order_does_not_change_the_digest_but_any_value_does() {
        let a: serde_json::Value = serde_json::from_str(r#"{"x":"1","y":"2"}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{ "y" : "2", "x" : "1" }"#).unwrap();
        let c: serde_json::Value = serde_json::from_str(r#"{"x":"1","y":"3"}"#).unwrap();
        assert_eq!(identity_digest(&a), identity_digest(&b));
        assert_ne!(identity_digest(&a), identity_digest(&c));
    }

    #[test]
    fn report_data_depends_on_every_input() {
        let id = json!({"signer": "0xabc"});
        let nonce = [7u8; 32];
        let base = report_data(&nonce, &id, [&b"gpu"[..]]);
        assert_ne!(base, report_data(&[8u8; 32], &id, [&b"gpu"[..]]));
        assert_ne!(
            base,
            report_data(&nonce, &json!({"signer": "0xabd"}), [&b"gpu"[..]])
        );
        assert_ne!(base, report_data(&nonce, &id, [&b"gpv"[..]]));
        assert_ne!(base, report_data(&nonce, &id, []));
        // Length prefixes keep report boundaries apart.
        assert_ne!(
            gpu_reports_digest([&b"ab"[..], &b"c"[..]]),
            gpu_reports_digest([&b"a"[..], &b"bc"[..]])
        );
    }

    #[test]
    fn known_answer() {
        // Independent computation: python3 -c 'import hashlib;
        // i=hashlib.sha256(b"{\"a\":\"b\"}").digest(); g=hashlib.sha256(b"").digest();
        // print(hashlib.sha512(b"cloister/attest/v1"+bytes(32)+i+g).hexdigest())'
        let rd = report_data(&[0u8; 32], &json!({"a": "b"}), []);
        assert_eq!(hex::encode(rd), KNOWN_ANSWER);
    }

    const KNOWN_ANSWER: &str = "5ebf23ecb84359ffba8c900b590e0c2d9e69c67dc1973830f803c531d20c89b4bd820bb0248b2815d82ef372939a0a88698d2edb607da38ed873533eafea6562";
}

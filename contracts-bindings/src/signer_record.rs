//! What the Registry records with an attested enclave signer
//! (`Registry.recordSigner`): the digest of the node's code measurements and
//! the digest of its model, which governance allows by the same values
//! (`setMeasurementAllowed`, `setModelAllowed`; `cloister chain allow`).
//!
//! Measurement-set digest: `keccak256` of the UTF-8 text
//!
//! ```text
//! cloister-measurement-set-v1
//! platform=<platform>
//! <register>=<lowercase hex>
//! ...
//! ```
//!
//! each line ending in `\n`, with the registers that identify the code, in
//! this order: TDX `mrtd`, `rtmr0`, `rtmr1`, `rtmr2`, `rtmr3`; SEV-SNP and
//! the simulated TEE `measurement`. Per-machine values (chip id, TCB, report
//! data) are left out, so one image gives one digest on every machine.
//!
//! Model digest: the weights' SHA-256 (the identity's `weights_sha256`) as 32
//! bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use alloy::primitives::{B256, keccak256};
use thiserror::Error;

/// First line of the hashed text; a new layout gets a new version.
pub const MEASUREMENT_SET_VERSION: &str = "cloister-measurement-set-v1";

/// Why a digest could not be formed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DigestError {
    /// The platform has no measurement-set layout.
    #[error("no measurement-set layout for platform {0:?}")]
    UnknownPlatform(String),
    /// A register the layout needs is missing from the verdict.
    #[error("the {platform} measurements lack {register}")]
    MissingRegister {
        platform: String,
        register: &'static str,
    },
    /// A register or the weights digest is not hex of the right length.
    #[error("{name} is not {bytes} bytes of hex")]
    NotHex { name: String, bytes: usize },
}

/// The registers that identify a platform's code, in digest order.
pub fn code_registers(platform: &str) -> Option<&'static [&'static str]> {
    match platform {
        "tdx" => Some(&["mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3"]),
        "sev-snp" | "simulated" => Some(&["measurement"]),
        _ => None,
    }
}

/// The measurement-set digest of a verdict's `platform` and `measurements`.
pub fn measurement_digest(
    platform: &str,
    measurements: &BTreeMap<String, String>,
) -> Result<B256, DigestError> {
    let registers =
        code_registers(platform).ok_or_else(|| DigestError::UnknownPlatform(platform.into()))?;
    let mut text = format!("{MEASUREMENT_SET_VERSION}\nplatform={platform}\n");
    for &register in registers {
        let value = measurements
            .get(register)
            .ok_or_else(|| DigestError::MissingRegister {
                platform: platform.into(),
                register,
            })?
            .trim()
            .to_ascii_lowercase();
        if value.is_empty() || value.len() % 2 != 0 || !value.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(DigestError::NotHex {
                name: register.into(),
                bytes: value.len() / 2,
            });
        }
        let _ = writeln!(text, "{register}={value}");
    }
    Ok(keccak256(text.as_bytes()))
}

/// The model digest: the weights' SHA-256 (64 hex digits, `0x` optional).
pub fn model_digest(weights_sha256: &str) -> Result<B256, DigestError> {
    let text = weights_sha256.trim();
    let text = text.strip_prefix("0x").unwrap_or(text);
    if text.len() != 64 {
        return Err(DigestError::NotHex {
            name: "weights_sha256".into(),
            bytes: 32,
        });
    }
    text.parse().map_err(|_| DigestError::NotHex {
        name: "weights_sha256".into(),
        bytes: 32,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn tdx() -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("mrtd".into(), "AA".repeat(48));
        for i in 0..4 {
            m.insert(format!("rtmr{i}"), format!("{i:02x}").repeat(48));
        }
        m.insert("mrseam".into(), "11".repeat(48));
        m.insert("report_data".into(), "22".repeat(64));
        m
    }

    #[test]
    fn tdx_digest_is_keccak_of_the_documented_text() {
        let want = format!(
            "cloister-measurement-set-v1\nplatform=tdx\nmrtd={}\nrtmr0={}\nrtmr1={}\nrtmr2={}\nrtmr3={}\n",
            "aa".repeat(48),
            "00".repeat(48),
            "01".repeat(48),
            "02".repeat(48),
            "03".repeat(48)
        );
        assert_eq!(
            measurement_digest("tdx", &tdx()).unwrap(),
            keccak256(want.as_bytes())
        );
    }

    #[test]
    fn per_machine_values_do_not_change_the_digest() {
        let mut other = tdx();
        other.insert("report_data".into(), "33".repeat(64));
        other.insert("mrseam".into(), "44".repeat(48));
        assert_eq!(
            measurement_digest("tdx", &tdx()).unwrap(),
            measurement_digest("tdx", &other).unwrap()
        );
        other.insert("rtmr3".into(), "55".repeat(48));
        assert_ne!(
            measurement_digest("tdx", &tdx()).unwrap(),
            measurement_digest("tdx", &other).unwrap()
        );
    }

    #[test]
    fn platform_is_part_of_the_digest_and_layouts_are_checked() {
        let mut m = BTreeMap::new();
        m.insert("measurement".into(), "ab".repeat(48));
        assert_ne!(
            measurement_digest("sev-snp", &m).unwrap(),
            measurement_digest("simulated", &m).unwrap()
        );
        assert_eq!(
            measurement_digest("tdx", &m),
            Err(DigestError::MissingRegister {
                platform: "tdx".into(),
                register: "mrtd"
            })
        );
        assert!(matches!(
            measurement_digest("sgx", &m),
            Err(DigestError::UnknownPlatform(_))
        ));
        m.insert("measurement".into(), "xyz".into());
        assert!(matches!(
            measurement_digest("sev-snp", &m),
            Err(DigestError::NotHex { .. })
        ));
    }

    #[test]
    fn model_digest_is_the_weights_hash() {
        let hex = "0f".repeat(32);
        assert_eq!(model_digest(&hex).unwrap(), B256::repeat_byte(0x0f));
        assert_eq!(
            model_digest(&format!("0x{hex}")).unwrap(),
            B256::repeat_byte(0x0f)
        );
        assert!(model_digest("abcd").is_err());
        assert!(model_digest(&"zz".repeat(32)).is_err());
    }
}

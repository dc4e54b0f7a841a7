//! Appraisal policy, read from TOML.
//!
//! The default (no file, or an empty file) is strict: TDX `UpToDate` only, no
//! debug TDs or guests, no SNP migration agent, GPU evidence optional and
//! checked when present, simulated evidence refused. Every key is optional;
//! unknown keys are an error so that a typo never loosens a policy silently.
//!
//! ```toml
//! [tdx]
//! accept_tcb = ["UpToDate"]          # also SWHardeningNeeded, ConfigurationNeeded,
//!                                    # ConfigurationAndSWHardeningNeeded, OutOfDate, ...
//! grace_until = "2026-01-01T00:00:00Z" # non-UpToDate statuses accepted only until then
//! allow_debug = false
//! mrtd = ["<96 hex>"]                # allowlists; absent = any value
//! rtmr0 = ["<96 hex>"]               # rtmr1, rtmr2, rtmr3, mrseam likewise
//!
//! [sev_snp]
//! allow_debug = false
//! allow_migration_agent = false
//! allow_smt = true
//! max_vmpl = 3                       # accept reports requested at VMPL 0..=max_vmpl
//! measurement = ["<96 hex>"]
//! host_data = ["<64 hex>"]
//! min_tcb = { bootloader = 0, tee = 0, snp = 0, microcode = 0 }   # fmc for Turin
//!
//! [gpu]
//! required = false
//!
//! [simulated]
//! allow = false
//!
//! [models]
//! weights_sha256 = ["<64 hex>"]      # allowed model digests; absent = any
//! ```

use serde::{Deserialize, Deserializer};

use crate::tdx::TcbStatus;
use crate::time::Timestamp;

/// Why a policy file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Not valid TOML, an unknown key, or a value of the wrong type (the
    /// message names the key, line and column).
    #[error("policy is not valid: {0}")]
    Toml(String),
    /// `accept_tcb` lists `Revoked`, which is never acceptable.
    #[error("policy tdx.accept_tcb may not contain Revoked")]
    RevokedAccepted,
}

/// A whole policy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Intel TDX rules.
    pub tdx: TdxPolicy,
    /// AMD SEV-SNP rules.
    pub sev_snp: SnpPolicy,
    /// NVIDIA GPU rules.
    pub gpu: GpuPolicy,
    /// Simulated TEE rules.
    pub simulated: SimulatedPolicy,
    /// Model rules.
    pub models: ModelPolicy,
}

/// TDX rules.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TdxPolicy {
    /// Accepted TCB statuses.
    pub accept_tcb: Vec<TcbStatus>,
    /// Statuses other than `UpToDate` are accepted only until this time.
    #[serde(deserialize_with = "optional_time")]
    pub grace_until: Option<Timestamp>,
    /// Accept debug TDs (never in production).
    pub allow_debug: bool,
    /// Allowed MRTD values.
    pub mrtd: Option<Vec<Digest48>>,
    /// Allowed RTMR0 values.
    pub rtmr0: Option<Vec<Digest48>>,
    /// Allowed RTMR1 values.
    pub rtmr1: Option<Vec<Digest48>>,
    /// Allowed RTMR2 values.
    pub rtmr2: Option<Vec<Digest48>>,
    /// Allowed RTMR3 values.
    pub rtmr3: Option<Vec<Digest48>>,
    /// Allowed TDX module measurements.
    pub mrseam: Option<Vec<Digest48>>,
}

impl Default for TdxPolicy {
    fn default() -> Self {
        Self {
            accept_tcb: vec![TcbStatus::UpToDate],
            grace_until: None,
            allow_debug: false,
            mrtd: None,
            rtmr0: None,
            rtmr1: None,
            rtmr2: None,
            rtmr3: None,
            mrseam: None,
        }
    }
}

/// SEV-SNP rules.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnpPolicy {
    /// Accept guests whose policy allows debugging.
    pub allow_debug: bool,
    /// Accept guests whose policy allows a migration agent.
    pub allow_migration_agent: bool,
    /// Accept guests whose policy allows SMT.
    pub allow_smt: bool,
    /// Highest (least privileged) VMPL a report may be requested at.
    pub max_vmpl: u32,
    /// Allowed launch measurements.
    pub measurement: Option<Vec<Digest48>>,
    /// Allowed host data values.
    pub host_data: Option<Vec<Digest32>>,
    /// Minimum reported TCB.
    pub min_tcb: Option<MinTcb>,
}

impl Default for SnpPolicy {
    fn default() -> Self {
        Self {
            allow_debug: false,
            allow_migration_agent: false,
            allow_smt: true,
            max_vmpl: 3,
            measurement: None,
            host_data: None,
            min_tcb: None,
        }
    }
}

/// Minimum SNP TCB component versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MinTcb {
    /// Boot loader SVN.
    pub bootloader: u8,
    /// PSP OS (TEE) SVN.
    pub tee: u8,
    /// SNP firmware SVN.
    pub snp: u8,
    /// Microcode patch level.
    pub microcode: u8,
    /// Turin FMC SVN.
    pub fmc: u8,
}

/// GPU rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpuPolicy {
    /// Refuse a node that presents no GPU evidence.
    pub required: bool,
}

/// Simulated TEE rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatedPolicy {
    /// Accept simulated evidence (development only).
    pub allow: bool,
}

/// Model rules.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelPolicy {
    /// Allowed SHA-256 digests of model weights.
    pub weights_sha256: Option<Vec<Digest32>>,
}

impl Policy {
    /// The strict default policy.
    pub fn strict() -> Self {
        Self::default()
    }

    /// Parses a TOML policy.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let policy: Self = toml::from_str(text).map_err(|e| PolicyError::Toml(e.to_string()))?;
        if policy.tdx.accept_tcb.contains(&TcbStatus::Revoked) {
            return Err(PolicyError::RevokedAccepted);
        }
        Ok(policy)
    }
}

/// A 48-byte digest given as hex in a policy (MRTD, RTMRs, SNP measurement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest48(pub [u8; 48]);

/// A 32-byte digest given as hex in a policy (host data, model digest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest32(pub [u8; 32]);

fn decode_digest<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.trim().trim_start_matches("0x");
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

impl<'de> Deserialize<'de> for Digest48 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        decode_digest(&text).map(Self).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not 48 bytes of hex (96 hex digits)"))
        })
    }
}

impl<'de> Deserialize<'de> for Digest32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        decode_digest(&text).map(Self).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not 32 bytes of hex (64 hex digits)"))
        })
    }
}

/// Accepts a quoted RFC 3339 string or a TOML offset date-time.
fn optional_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TimeValue {
        Text(String),
        Toml(toml::value::Datetime),
    }
    let text = match Option::<TimeValue>::deserialize(d)? {
        None => return Ok(None),
        Some(TimeValue::Text(text)) => text,
        Some(TimeValue::Toml(dt)) => dt.to_string(),
    };
    Timestamp::parse_rfc3339(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// Whether `value` is allowed by an optional allowlist.
pub(crate) fn allowed<const N: usize, T>(list: Option<&Vec<T>>, value: &[u8; N]) -> bool
where
    T: AsRef<[u8; N]>,
{
    list.is_none_or(|list| list.iter().any(|entry| entry.as_ref() == value))
}

impl AsRef<[u8; 48]> for Digest48 {
    fn as_ref(&self) -> &[u8; 48] {
        &self.0
    }
}

impl AsRef<[u8; 32]> for Digest32 {
    fn as_ref(&self) -> &[u8; 32] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_strict_default() {
        let p = Policy::from_toml("").unwrap();
        assert_eq!(p, Policy::strict());
        assert_eq!(p.tdx.accept_tcb, vec![TcbStatus::UpToDate]);
        assert!(!p.tdx.allow_debug && !p.sev_snp.allow_debug && !p.simulated.allow);
        assert!(!p.gpu.required);
    }

    #[test]
    fn reads_the_documented_example() {
        let text = format!(
            r#"
            [tdx]
            accept_tcb = ["UpToDate", "OutOfDate"]
            grace_until = "2026-01-01T00:00:00Z"
            allow_debug = false
            mrtd = ["{mr}"]
            [sev_snp]
            allow_debug = true
            max_vmpl = 0
            measurement = ["{mr}"]
            min_tcb = {{ bootloader = 1, tee = 0, snp = 8, microcode = 115 }}
            [gpu]
            required = true
            [simulated]
            allow = true
            [models]
            weights_sha256 = ["{d32}"]
            "#,
            mr = "ab".repeat(48),
            d32 = "cd".repeat(32)
        );
        let p = Policy::from_toml(&text).unwrap();
        assert_eq!(
            p.tdx.accept_tcb,
            vec![TcbStatus::UpToDate, TcbStatus::OutOfDate]
        );
        assert_eq!(
            p.tdx.grace_until.unwrap().to_string(),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(p.tdx.mrtd.unwrap()[0].0, [0xab; 48]);
        assert_eq!(p.sev_snp.min_tcb.unwrap().microcode, 115);
        assert_eq!(p.sev_snp.max_vmpl, 0);
        assert!(p.gpu.required && p.simulated.allow);
        assert_eq!(p.models.weights_sha256.unwrap()[0].0, [0xcd; 32]);
    }

    #[test]
    fn a_toml_datetime_is_accepted_for_grace_until() {
        let p = Policy::from_toml("[tdx]\ngrace_until = 2026-01-01T00:00:00Z\n").unwrap();
        assert_eq!(p.tdx.grace_until.unwrap().unix(), 1_767_225_600);
    }

    #[test]
    fn typos_and_bad_values_are_errors_not_silently_ignored() {
        let typo = Policy::from_toml("[tdx]\nallow_debgu = true\n").unwrap_err();
        assert!(typo.to_string().contains("allow_debgu"), "{typo}");
        let short = Policy::from_toml("[tdx]\nmrtd = [\"abcd\"]\n").unwrap_err();
        assert!(short.to_string().contains("48 bytes"), "{short}");
        let status = Policy::from_toml("[tdx]\naccept_tcb = [\"Fine\"]\n").unwrap_err();
        assert!(status.to_string().contains("Fine"), "{status}");
        assert_eq!(
            Policy::from_toml("[tdx]\naccept_tcb = [\"Revoked\"]\n").unwrap_err(),
            PolicyError::RevokedAccepted
        );
        assert!(Policy::from_toml("[tdx]\ngrace_until = \"soon\"\n").is_err());
    }
}

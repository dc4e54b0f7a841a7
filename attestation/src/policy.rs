//! Appraisal policy, read from TOML.
//!
//! The default (no file, or an empty file) is strict about the platform and
//! silent about the code: genuine TDX or SEV-SNP hardware, TDX `UpToDate`
//! only, no debug or profiled TDs, no debuggable SNP guests, no SNP
//! migration agent, GPU evidence optional and checked when present,
//! simulated evidence refused. It pins **no measurement**: any code running
//! in a genuine confidential VM is accepted, and every verdict says so in
//! `not_checked`. That is the auditor's "is this genuine hardware" check;
//! anything that sends prompts on the strength of a verdict must call
//! [`Policy::check_fit_for_serving`], which refuses such a policy unless it
//! says `allow_any_measurement = true` for the platform.
//!
//! Every key is optional; unknown keys are an error so that a typo never
//! loosens a policy silently.
//!
//! ```toml
//! platforms = ["tdx", "sev-snp"]     # hardware platforms accepted (default: both)
//!
//! [tdx]
//! accept_tcb = ["UpToDate"]          # also SWHardeningNeeded, ConfigurationNeeded,
//!                                    # ConfigurationAndSWHardeningNeeded, OutOfDate, ...
//! grace_until = "2026-01-01T00:00:00Z" # non-UpToDate statuses accepted only until then
//! allow_debug = false                # debug and profiling TD attributes (TUD group)
//! mrtd = ["<96 hex>"]                # allowlists; absent = any value
//! rtmr0 = ["<96 hex>"]               # rtmr1, rtmr2, rtmr3, mrseam likewise
//! allow_any_measurement = false      # let a serving component accept no mrtd/rtmr pin
//! min_tcb_evaluation_data_number = 17  # refuse older Intel collateral (TCB info, QE identity)
//!
//! [sev_snp]
//! allow_debug = false
//! allow_migration_agent = false
//! allow_smt = true
//! max_vmpl = 3                       # accept reports requested at VMPL 0..=max_vmpl
//! measurement = ["<96 hex>"]
//! host_data = ["<64 hex>"]
//! allow_any_measurement = false
//! min_tcb = { bootloader = 0, tee = 0, snp = 0, microcode = 0 }   # every product
//!
//! [sev_snp.min_tcb.genoa]            # per product (milan, genoa, turin): replaces
//! bootloader = 9                     # the general minimum for that product
//! tee = 0
//! snp = 23
//! microcode = 72
//!
//! [gpu]
//! required = false
//!
//! [simulated]
//! allow = false
//! measurement = ["<96 hex>"]         # optional allowlist of simulated measurements
//!
//! [models]
//! weights_sha256 = ["<64 hex>"]      # allowed model digests; absent = any
//! ```

use serde::{Deserialize, Deserializer};

use crate::snp::Product;
use crate::tdx::TcbStatus;
use crate::time::Timestamp;
use crate::verdict::Platform;

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
    /// `platforms` names something that is not a hardware TEE platform.
    #[error(
        "policy platforms may list \"tdx\" and \"sev-snp\", not \"{0}\" \
         (simulated evidence is governed by [simulated] allow)"
    )]
    NotAHardwarePlatform(Platform),
    /// `platforms` is empty and simulated evidence is not allowed: nothing
    /// could ever be accepted.
    #[error(
        "policy platforms is empty (and [simulated] allow is off): no evidence could ever be accepted"
    )]
    NoPlatforms,
    /// A component that sends prompts on a verdict was given a policy that
    /// pins no code measurement for a platform it allows.
    #[error(
        "policy pins no measurement for {}: any code in a genuine VM would get prompts. \
         Pin the code ({}), or say allow_any_measurement = true for it",
        .0.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", "),
        .0.iter().map(|p| pin_keys(*p)).collect::<Vec<_>>().join("; ")
    )]
    MeasurementsNotPinned(Vec<Platform>),
}

/// The policy keys that pin a platform's code.
fn pin_keys(platform: Platform) -> &'static str {
    match platform {
        Platform::Tdx => "tdx.mrtd or tdx.rtmr0..rtmr3",
        Platform::SevSnp => "sev_snp.measurement",
        _ => "none",
    }
}

/// A whole policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Hardware platforms accepted (`tdx`, `sev-snp`); default both.
    pub platforms: Vec<Platform>,
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
    /// Lets a serving component use this policy with no MRTD/RTMR pin.
    pub allow_any_measurement: bool,
    /// Refuse collateral (TCB info or QE identity) whose TCB evaluation
    /// data number is below this, so that a node cannot pick older
    /// (still valid) collateral that rates its platform better.
    pub min_tcb_evaluation_data_number: Option<u32>,
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
            allow_any_measurement: false,
            min_tcb_evaluation_data_number: None,
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
    /// Minimum reported TCB, for every product or per product.
    pub min_tcb: Option<SnpMinTcb>,
    /// Lets a serving component use this policy with no measurement pin.
    pub allow_any_measurement: bool,
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
            allow_any_measurement: false,
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

/// `[sev_snp.min_tcb]`: component minimums for every product, and tables
/// `milan`, `genoa`, `turin` that replace them for one product (SVN
/// numbering differs between generations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnpMinTcb {
    /// Boot loader SVN, every product.
    pub bootloader: Option<u8>,
    /// PSP OS (TEE) SVN, every product.
    pub tee: Option<u8>,
    /// SNP firmware SVN, every product.
    pub snp: Option<u8>,
    /// Microcode patch level, every product.
    pub microcode: Option<u8>,
    /// FMC SVN (Turin only).
    pub fmc: Option<u8>,
    /// Minimum for Milan.
    pub milan: Option<MinTcb>,
    /// Minimum for Genoa.
    pub genoa: Option<MinTcb>,
    /// Minimum for Turin.
    pub turin: Option<MinTcb>,
}

impl SnpMinTcb {
    /// The minimum that applies to `product`, if any: the product's own
    /// table, else the general components (unset ones are 0).
    pub fn for_product(&self, product: Product) -> Option<MinTcb> {
        let own = match product {
            Product::Milan => self.milan,
            Product::Genoa => self.genoa,
            Product::Turin => self.turin,
        };
        if own.is_some() {
            return own;
        }
        let general = [
            self.bootloader,
            self.tee,
            self.snp,
            self.microcode,
            self.fmc,
        ];
        general.iter().any(Option::is_some).then(|| MinTcb {
            bootloader: self.bootloader.unwrap_or(0),
            tee: self.tee.unwrap_or(0),
            snp: self.snp.unwrap_or(0),
            microcode: self.microcode.unwrap_or(0),
            fmc: self.fmc.unwrap_or(0),
        })
    }
}

/// GPU rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpuPolicy {
    /// Refuse a node that presents no GPU evidence.
    pub required: bool,
}

/// Simulated TEE rules.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatedPolicy {
    /// Accept simulated evidence (development only).
    pub allow: bool,
    /// Allowlist of simulated measurements (96 hex; absent = any). The
    /// simulated TEE measures the app version and the model, so a
    /// development stack can still tell its own node from another.
    pub measurement: Option<Vec<Digest48>>,
}

/// Model rules.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelPolicy {
    /// Allowed SHA-256 digests of model weights.
    pub weights_sha256: Option<Vec<Digest32>>,
}

/// The hardware platforms a policy can accept.
pub const HARDWARE_PLATFORMS: [Platform; 2] = [Platform::Tdx, Platform::SevSnp];

impl Default for Policy {
    fn default() -> Self {
        Self {
            platforms: HARDWARE_PLATFORMS.to_vec(),
            tdx: TdxPolicy::default(),
            sev_snp: SnpPolicy::default(),
            gpu: GpuPolicy::default(),
            simulated: SimulatedPolicy::default(),
            models: ModelPolicy::default(),
        }
    }
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
        if let Some(other) = policy
            .platforms
            .iter()
            .find(|p| !HARDWARE_PLATFORMS.contains(p))
        {
            return Err(PolicyError::NotAHardwarePlatform(*other));
        }
        // A development stack's policy may accept simulated evidence only.
        if policy.platforms.is_empty() && !policy.simulated.allow {
            return Err(PolicyError::NoPlatforms);
        }
        Ok(policy)
    }

    /// Whether evidence of `platform` may be accepted at all: a hardware
    /// platform listed in `platforms`, or simulated evidence under
    /// `[simulated] allow`.
    pub fn allows_platform(&self, platform: Platform) -> bool {
        match platform {
            Platform::Simulated => self.simulated.allow,
            other => self.platforms.contains(&other),
        }
    }

    /// Whether the policy pins the code of `platform` (TDX: an MRTD or RTMR
    /// allowlist; SEV-SNP: a launch measurement allowlist).
    pub fn pins_code(&self, platform: Platform) -> bool {
        match platform {
            Platform::Tdx => {
                let t = &self.tdx;
                [&t.mrtd, &t.rtmr0, &t.rtmr1, &t.rtmr2, &t.rtmr3]
                    .iter()
                    .any(|list| list.is_some())
            }
            Platform::SevSnp => self.sev_snp.measurement.is_some(),
            _ => false,
        }
    }

    /// The `not_checked` line for a platform whose code is not pinned.
    pub fn unpinned_note(&self, platform: Platform) -> Option<String> {
        (matches!(platform, Platform::Tdx | Platform::SevSnp) && !self.pins_code(platform)).then(
            || {
                format!(
                    "{platform}: measurements not pinned (no {}): any code in a genuine VM is accepted",
                    pin_keys(platform)
                )
            },
        )
    }

    /// Refuses a policy that would let a serving component (router, proxy)
    /// send prompts to any code: every hardware platform it allows must pin
    /// the code or say `allow_any_measurement = true`. Simulated evidence
    /// (under `[simulated] allow`) needs no pin: it proves nothing anyway.
    pub fn check_fit_for_serving(&self) -> Result<(), PolicyError> {
        let unpinned: Vec<Platform> = self
            .platforms
            .iter()
            .copied()
            .filter(|&p| {
                let allow_any = match p {
                    Platform::Tdx => self.tdx.allow_any_measurement,
                    Platform::SevSnp => self.sev_snp.allow_any_measurement,
                    _ => false,
                };
                !self.pins_code(p) && !allow_any
            })
            .collect();
        if unpinned.is_empty() {
            Ok(())
        } else {
            Err(PolicyError::MeasurementsNotPinned(unpinned))
        }
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
        let min = p.sev_snp.min_tcb.unwrap();
        assert_eq!(min.for_product(Product::Genoa).unwrap().microcode, 115);
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

    #[test]
    fn platforms_default_to_both_hardware_platforms_and_are_checked() {
        let p = Policy::strict();
        assert!(p.allows_platform(Platform::Tdx) && p.allows_platform(Platform::SevSnp));
        assert!(!p.allows_platform(Platform::Simulated));
        let snp_only = Policy::from_toml("platforms = [\"sev-snp\"]\n").unwrap();
        assert!(!snp_only.allows_platform(Platform::Tdx));
        assert!(snp_only.allows_platform(Platform::SevSnp));
        assert_eq!(
            Policy::from_toml("platforms = [\"simulated\"]\n").unwrap_err(),
            PolicyError::NotAHardwarePlatform(Platform::Simulated)
        );
        assert_eq!(
            Policy::from_toml("platforms = []\n").unwrap_err(),
            PolicyError::NoPlatforms
        );
        let dev = Policy::from_toml("platforms = []\n[simulated]\nallow = true\n").unwrap();
        assert!(dev.platforms.is_empty() && dev.check_fit_for_serving().is_ok());
        assert!(Policy::from_toml("platforms = [\"tdx2\"]\n").is_err());
    }

    #[test]
    fn a_serving_policy_must_pin_code_or_say_it_does_not() {
        let err = Policy::strict().check_fit_for_serving().unwrap_err();
        assert_eq!(
            err,
            PolicyError::MeasurementsNotPinned(vec![Platform::Tdx, Platform::SevSnp])
        );
        assert!(err.to_string().contains("tdx.mrtd"), "{err}");
        let mr = "ab".repeat(48);
        let tdx_pinned = Policy::from_toml(&format!(
            "platforms = [\"tdx\"]\n[tdx]\nmrtd = [\"{mr}\"]\n"
        ))
        .unwrap();
        tdx_pinned.check_fit_for_serving().unwrap();
        // Pinning TDX says nothing about SNP, which is still allowed.
        let only_tdx_pinned = Policy::from_toml(&format!("[tdx]\nmrtd = [\"{mr}\"]\n")).unwrap();
        assert_eq!(
            only_tdx_pinned.check_fit_for_serving().unwrap_err(),
            PolicyError::MeasurementsNotPinned(vec![Platform::SevSnp])
        );
        let said_so = Policy::from_toml(&format!(
            "[tdx]\nmrtd = [\"{mr}\"]\n[sev_snp]\nallow_any_measurement = true\n"
        ))
        .unwrap();
        said_so.check_fit_for_serving().unwrap();
        // MRSEAM pins the TDX module, not the code in the TD.
        let seam_only = Policy::from_toml(&format!(
            "platforms = [\"tdx\"]\n[tdx]\nmrseam = [\"{mr}\"]\n"
        ))
        .unwrap();
        assert!(seam_only.check_fit_for_serving().is_err());
        assert!(seam_only.unpinned_note(Platform::Tdx).is_some());
    }

    #[test]
    fn snp_min_tcb_can_be_given_per_product() {
        let p = Policy::from_toml(
            "[sev_snp.min_tcb]\nsnp = 8\n[sev_snp.min_tcb.genoa]\nsnp = 23\nmicrocode = 72\n",
        )
        .unwrap();
        let min = p.sev_snp.min_tcb.unwrap();
        assert_eq!(min.for_product(Product::Milan).unwrap().snp, 8);
        assert_eq!(min.for_product(Product::Turin).unwrap().microcode, 0);
        let genoa = min.for_product(Product::Genoa).unwrap();
        assert_eq!((genoa.snp, genoa.microcode, genoa.bootloader), (23, 72, 0));
        let only_genoa = Policy::from_toml("[sev_snp.min_tcb.genoa]\nsnp = 23\n").unwrap();
        assert_eq!(
            only_genoa
                .sev_snp
                .min_tcb
                .unwrap()
                .for_product(Product::Milan),
            None
        );
        assert!(Policy::from_toml("[sev_snp.min_tcb.rome]\nsnp = 1\n").is_err());
    }
}

//! The simulated TEE: a quote-like structure signed by a local key, for
//! development and tests on machines without TDX or SEV-SNP.
//!
//! It proves nothing: the signing key is in the structure itself and nothing
//! vouches for it. Appraisal refuses it unless the policy says
//! `[simulated] allow = true`, and every verdict about it says `simulated`.
//!
//! ```text
//! magic        [8]   "CLSIMTEE"
//! version      u16   1 (little-endian)
//! reserved     u16   0
//! measurement  [48]  what the simulated "TEE" claims to run
//! report_data  [64]  the binding (see crate::binding)
//! public key   [65]  P-256, SEC1 uncompressed
//! signature    [64]  ECDSA P-256 / SHA-256, r‖s, over all bytes before it
//! ```

use p256::ecdsa::signature::{Signer as _, Verifier as _};

use crate::policy::Policy;
use crate::reader::{Reader, Truncated};
use crate::time::Timestamp;
use crate::verdict::{Platform, ReasonCode, Verdict};

/// Magic bytes that start simulated evidence.
pub const MAGIC: &[u8; 8] = b"CLSIMTEE";
/// The only version.
pub const VERSION: u16 = 1;
/// Length of simulated evidence.
pub const LEN: usize = 8 + 2 + 2 + 48 + 64 + 65 + 64;
const SIGNED_LEN: usize = LEN - 64;

/// Listed as not checked in every simulated verdict.
pub const SIMULATED_NOT_CHECKED: &str =
    "simulated: no hardware root of trust; the evidence is signed by a key it carries itself";

/// Why bytes are not valid simulated evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimulatedError {
    /// Too short.
    #[error("not complete simulated evidence: {0}")]
    Truncated(#[from] Truncated),
    /// Wrong magic.
    #[error("not simulated evidence (no CLSIMTEE magic)")]
    BadMagic,
    /// Unknown version.
    #[error("simulated evidence version {0} is not supported (1 is)")]
    UnsupportedVersion(u16),
    /// Longer than the structure.
    #[error("simulated evidence is {LEN} bytes; {0} given")]
    TrailingBytes(usize),
    /// Not a P-256 point.
    #[error("the simulated evidence key is not a P-256 public key")]
    BadKey,
    /// Signature does not verify.
    #[error("the simulated evidence signature does not verify")]
    SignatureInvalid,
}

impl SimulatedError {
    /// The verdict reason code for this error.
    pub fn code(&self) -> ReasonCode {
        match self {
            Self::UnsupportedVersion(_) => ReasonCode::UnsupportedVersion,
            Self::TrailingBytes(_) => ReasonCode::TrailingBytes,
            Self::SignatureInvalid => ReasonCode::EvidenceSignatureInvalid,
            _ => ReasonCode::MalformedEvidence,
        }
    }
}

/// Parsed simulated evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedEvidence<'a> {
    /// Claimed measurement.
    pub measurement: [u8; 48],
    /// Report data.
    pub report_data: [u8; 64],
    /// Signing key, SEC1 uncompressed.
    pub public_key: [u8; 65],
    /// Signature r‖s.
    pub signature: [u8; 64],
    raw: &'a [u8],
}

impl<'a> SimulatedEvidence<'a> {
    /// Parses simulated evidence.
    pub fn parse(raw: &'a [u8]) -> Result<Self, SimulatedError> {
        let mut r = Reader::new(raw);
        if &r.array::<8>("magic")? != MAGIC {
            return Err(SimulatedError::BadMagic);
        }
        let version = r.u16_le("version")?;
        if version != VERSION {
            return Err(SimulatedError::UnsupportedVersion(version));
        }
        if raw.len() > LEN {
            return Err(SimulatedError::TrailingBytes(raw.len()));
        }
        r.take(2, "reserved")?;
        Ok(Self {
            measurement: r.array("measurement")?,
            report_data: r.array("report data")?,
            public_key: r.array("public key")?,
            signature: r.array("signature")?,
            raw,
        })
    }

    /// Checks the self-signature. This shows the bytes are intact; it does
    /// not show they come from any TEE.
    pub fn verify_self_signature(&self) -> Result<(), SimulatedError> {
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&self.public_key)
            .map_err(|_| SimulatedError::BadKey)?;
        let signature = p256::ecdsa::Signature::from_slice(&self.signature)
            .map_err(|_| SimulatedError::SignatureInvalid)?;
        let signed = self.raw.get(..SIGNED_LEN).unwrap_or_default();
        key.verify(signed, &signature)
            .map_err(|_| SimulatedError::SignatureInvalid)
    }
}

/// Builds simulated evidence signed with `key` (deterministic ECDSA, so
/// this needs no randomness; callers generate the key).
pub fn encode(
    measurement: &[u8; 48],
    report_data: &[u8; 64],
    key: &p256::ecdsa::SigningKey,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(measurement);
    out.extend_from_slice(report_data);
    out.extend_from_slice(key.verifying_key().to_encoded_point(false).as_bytes());
    let signature: p256::ecdsa::Signature = key.sign(&out);
    out.extend_from_slice(&signature.to_bytes());
    out
}

/// Appraises simulated evidence. Refused unless `policy.simulated.allow`.
pub fn appraise(
    raw: &[u8],
    policy: &Policy,
    now: Timestamp,
    expected_report_data: Option<&[u8; 64]>,
) -> Result<Verdict, SimulatedError> {
    let evidence = SimulatedEvidence::parse(raw)?;
    let mut v = Verdict::new(Platform::Simulated, now);
    v.measurements
        .insert("measurement".into(), hex::encode(evidence.measurement));
    v.measurements
        .insert("report_data".into(), hex::encode(evidence.report_data));
    v.facts
        .insert("simulated_key".into(), hex::encode(evidence.public_key));
    v.not_checked.push(SIMULATED_NOT_CHECKED.into());
    if let Err(e) = evidence.verify_self_signature() {
        v.reject(e.code(), e.to_string());
    }
    if !policy.simulated.allow {
        v.reject(
            ReasonCode::SimulatedNotAllowed,
            "simulated evidence proves nothing about hardware; the policy does not set [simulated] allow = true",
        );
    }
    if let Some(list) = &policy.simulated.measurement
        && !list.iter().any(|d| d.0 == evidence.measurement)
    {
        v.reject(
            ReasonCode::MeasurementNotAllowed,
            format!(
                "simulated measurement {} is not in the policy's simulated.measurement allowlist",
                hex::encode(evidence.measurement)
            ),
        );
    }
    v.check_report_data(&evidence.report_data, expected_report_data);
    v.settle(Some("simulated.allow = true (development only)".into()));
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap()
    }

    #[test]
    fn round_trips_and_is_refused_by_default() {
        let raw = encode(&[1; 48], &[2; 64], &key());
        assert_eq!(raw.len(), LEN);
        let parsed = SimulatedEvidence::parse(&raw).unwrap();
        assert_eq!(parsed.report_data, [2; 64]);
        parsed.verify_self_signature().unwrap();

        let now = Timestamp::from_unix(1_800_000_000);
        let strict = appraise(&raw, &Policy::strict(), now, Some(&[2; 64])).unwrap();
        assert!(!strict.accepted && strict.simulated);
        assert!(strict.has_reason(ReasonCode::SimulatedNotAllowed));

        let mut dev = Policy::strict();
        dev.simulated.allow = true;
        let ok = appraise(&raw, &dev, now, Some(&[2; 64])).unwrap();
        assert!(ok.accepted && ok.simulated, "{:?}", ok.reasons);
        assert_eq!(ok.platform, Platform::Simulated);

        let mut pinned = dev.clone();
        pinned.simulated.measurement = Some(vec![crate::policy::Digest48([1; 48])]);
        assert!(
            appraise(&raw, &pinned, now, Some(&[2; 64]))
                .unwrap()
                .accepted
        );
        pinned.simulated.measurement = Some(vec![crate::policy::Digest48([9; 48])]);
        let other = appraise(&raw, &pinned, now, Some(&[2; 64])).unwrap();
        assert!(
            other.has_reason(ReasonCode::MeasurementNotAllowed),
            "{:?}",
            other.reasons
        );

        let wrong = appraise(&raw, &dev, now, Some(&[3; 64])).unwrap();
        assert!(wrong.has_reason(ReasonCode::ReportDataMismatch));
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let raw = encode(&[1; 48], &[2; 64], &key());
        for bit in 0..raw.len() * 8 {
            let mut bad = raw.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let caught = SimulatedEvidence::parse(&bad)
                .and_then(|e| e.verify_self_signature())
                .is_err();
            assert!(caught, "bit {bit} flipped and still verified");
        }
    }

    #[test]
    fn bad_input_is_typed() {
        assert!(matches!(
            SimulatedEvidence::parse(b"CLSIMTE"),
            Err(SimulatedError::Truncated(_))
        ));
        assert!(matches!(
            SimulatedEvidence::parse(&[0; LEN]),
            Err(SimulatedError::BadMagic)
        ));
        let mut long = encode(&[1; 48], &[2; 64], &key());
        long.push(0);
        assert!(matches!(
            SimulatedEvidence::parse(&long),
            Err(SimulatedError::TrailingBytes(_))
        ));
    }
}

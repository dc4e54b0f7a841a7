//! The simulated TEE: evidence signed by a key held in this process.
//!
//! **Development only.** It proves nothing about hardware: the key lives in
//! ordinary memory and the evidence carries its own public key. Verifiers
//! refuse it unless their policy explicitly allows simulated evidence
//! (see `cloister_attestation::simulated`).

use std::fmt;

use p256::ecdsa::SigningKey;

/// A simulated TEE with a fresh P-256 key and a fixed claimed measurement.
#[derive(Clone)]
pub struct SimulatedTee {
    key: SigningKey,
    measurement: [u8; 48],
}

impl fmt::Debug for SimulatedTee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulatedTee")
            .field("public_key", &hex::encode(self.public_key()))
            .field("measurement", &hex::encode(self.measurement))
            .finish_non_exhaustive()
    }
}

impl SimulatedTee {
    /// A simulated TEE with a new random key, claiming `measurement`.
    pub fn generate(measurement: [u8; 48]) -> Self {
        Self {
            key: SigningKey::random(&mut rand_core::OsRng),
            measurement,
        }
    }

    /// A simulated TEE with a given key (deterministic tests).
    pub fn from_key(key: SigningKey, measurement: [u8; 48]) -> Self {
        Self { key, measurement }
    }

    /// The claimed measurement.
    pub fn measurement(&self) -> &[u8; 48] {
        &self.measurement
    }

    /// The public key, SEC1 uncompressed (65 bytes).
    pub fn public_key(&self) -> Vec<u8> {
        self.key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    /// Simulated evidence binding `report_data`.
    pub fn evidence(&self, report_data: &[u8; 64]) -> Vec<u8> {
        cloister_attestation::simulated::encode(&self.measurement, report_data, &self.key)
    }
}

#[cfg(test)]
mod tests {
    use cloister_attestation::simulated::SimulatedEvidence;

    use super::*;

    #[test]
    fn evidence_parses_and_self_verifies() {
        let tee = SimulatedTee::generate([7; 48]);
        let raw = tee.evidence(&[9; 64]);
        let parsed = SimulatedEvidence::parse(&raw).unwrap();
        parsed.verify_self_signature().unwrap();
        assert_eq!(parsed.report_data, [9; 64]);
        assert_eq!(parsed.measurement, [7; 48]);
        assert_eq!(parsed.public_key.to_vec(), tee.public_key());
        // Two instances have different keys.
        assert_ne!(
            SimulatedTee::generate([7; 48]).public_key(),
            tee.public_key()
        );
        assert!(!format!("{tee:?}").contains("key: SigningKey"));
    }
}

//! AMD's certificate revocation list for an ARK: the ASKs (or ASVKs) it
//! has revoked. AMD KDS serves it at `/vcek/v1/{product}/crl` (VCEK chains)
//! and `/vlek/v1/{product}/crl` (VLEK chains), signed by the ARK with
//! RSASSA-PSS/SHA-384 like the certificates themselves.
//!
//! A CRL is collateral: when one is given (the bundle's `certs.amd_crl`,
//! `cloister verify snp --crl`, or fetched by `cloister-attestation-collect`)
//! it must verify and be current, and no certificate of the chain may be on
//! it; when none is given the verdict lists revocation under `not_checked`.

use der::{Decode, Encode};
use x509_cert::crl::CertificateList;

use crate::time::Timestamp;
use crate::x509::{Cert, PSS_SHA384_NAME, check_pss_sha384, first_inner_element, looks_like_pem};

/// What `not_checked` says when no CRL was given.
pub const CRL_NOT_CHECKED: &str =
    "sev-snp: revocation of the ASK/ASVK (no AMD CRL given; AMD KDS serves one per product)";

/// Why a CRL could not be used, or what it says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CrlError {
    /// Not a DER or PEM X.509 CRL, or not in canonical DER.
    #[error("AMD CRL is not usable: {0}")]
    Malformed(String),
    /// Issued by someone other than the chain's ARK.
    #[error("AMD CRL is issued by {issuer:?}, not by the ARK {ark:?}")]
    WrongIssuer {
        /// Issuer named by the CRL.
        issuer: String,
        /// Subject of the ARK.
        ark: String,
    },
    /// Signed with another algorithm or parameters.
    #[error("AMD CRL is signed with {found}, expected {PSS_SHA384_NAME}")]
    UnexpectedAlgorithm {
        /// What was found.
        found: String,
    },
    /// The ARK's signature over the CRL does not verify.
    #[error("the ARK's signature over the AMD CRL does not verify")]
    SignatureInvalid,
    /// Issued after the verification time.
    #[error("AMD CRL is issued {this_update}, after the verification time {at}")]
    NotYetValid {
        /// thisUpdate.
        this_update: Timestamp,
        /// Verification time.
        at: Timestamp,
    },
    /// Past its nextUpdate (or without one).
    #[error("AMD CRL expired: next update was due {next_update:?}, verification time {at}")]
    Expired {
        /// nextUpdate, when the CRL has one.
        next_update: Option<Timestamp>,
        /// Verification time.
        at: Timestamp,
    },
    /// A certificate of the chain is on the list.
    #[error("certificate {subject:?} (serial {serial}) is revoked by AMD since {since}")]
    Revoked {
        /// Subject of the revoked certificate.
        subject: String,
        /// Its serial number, hex.
        serial: String,
        /// Revocation date.
        since: Timestamp,
    },
}

/// A parsed CRL with the bytes it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmdCrl {
    der: Vec<u8>,
    parsed: CertificateList,
}

impl AmdCrl {
    /// Parses a CRL given as DER or PEM (`X509 CRL`), in canonical DER.
    pub fn parse(bytes: &[u8]) -> Result<Self, CrlError> {
        let der = if looks_like_pem(bytes) {
            let block = pem::parse(bytes).map_err(|e| CrlError::Malformed(e.to_string()))?;
            if block.tag() != "X509 CRL" {
                return Err(CrlError::Malformed(format!(
                    "PEM block {:?}, expected \"X509 CRL\"",
                    block.tag()
                )));
            }
            block.into_contents()
        } else {
            bytes.to_vec()
        };
        let parsed =
            CertificateList::from_der(&der).map_err(|e| CrlError::Malformed(e.to_string()))?;
        let crl = Self { der, parsed };
        let reencoded = crl
            .parsed
            .tbs_cert_list
            .to_der()
            .map_err(|e| CrlError::Malformed(e.to_string()))?;
        if Some(reencoded.as_slice()) != first_inner_element(&crl.der) {
            return Err(CrlError::Malformed("not in canonical DER".into()));
        }
        Ok(crl)
    }

    /// Checks that `ark` signed this CRL and that it is current at `now`,
    /// then that none of `chain` is on it.
    pub(crate) fn check(
        &self,
        ark: &Cert,
        chain: &[&Cert],
        now: Timestamp,
    ) -> Result<(), CrlError> {
        let tbs = &self.parsed.tbs_cert_list;
        if &tbs.issuer != ark.subject_name() {
            return Err(CrlError::WrongIssuer {
                issuer: tbs.issuer.to_string(),
                ark: ark.subject(),
            });
        }
        check_pss_sha384(&self.parsed.signature_algorithm, &tbs.signature)
            .map_err(|found| CrlError::UnexpectedAlgorithm { found })?;
        let signed = first_inner_element(&self.der)
            .ok_or_else(|| CrlError::Malformed("no signed part".into()))?;
        let signature = self
            .parsed
            .signature
            .as_bytes()
            .ok_or(CrlError::SignatureInvalid)?;
        if !crate::crypto::rsa_pss_sha384_signature_ok(ark.public_key_bytes(), signed, signature) {
            return Err(CrlError::SignatureInvalid);
        }
        let this_update = Timestamp::from_x509(tbs.this_update);
        if now < this_update {
            return Err(CrlError::NotYetValid {
                this_update,
                at: now,
            });
        }
        let next_update = tbs.next_update.map(Timestamp::from_x509);
        if next_update.is_none_or(|next| now > next) {
            return Err(CrlError::Expired {
                next_update,
                at: now,
            });
        }
        for entry in tbs.revoked_certificates.iter().flatten() {
            if let Some(cert) = chain
                .iter()
                .find(|c| c.serial() == entry.serial_number.as_bytes())
            {
                return Err(CrlError::Revoked {
                    subject: cert.subject(),
                    serial: hex::encode(cert.serial()),
                    since: Timestamp::from_x509(entry.revocation_date),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARK: &[u8] = include_bytes!("../../tests/data/test-ark.pem");
    const GOOD: &[u8] = include_bytes!("../../tests/data/test-ask-good.pem");
    const REVOKED: &[u8] = include_bytes!("../../tests/data/test-ask-revoked.pem");
    const CRL_DER: &[u8] = include_bytes!("../../tests/data/test-ark-crl.der");
    const CRL_PEM: &[u8] = include_bytes!("../../tests/data/test-ark-crl.pem");

    fn cert(pem: &[u8]) -> Cert {
        Cert::from_pem_or_der(pem).unwrap()
    }

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn a_current_crl_signed_by_the_ark_clears_or_revokes() {
        let (ark, good, revoked) = (cert(ARK), cert(GOOD), cert(REVOKED));
        // The test ASKs are signed like AMD's (RSA-PSS SHA-384 over the TBS).
        good.verify_rsa_pss_sha384_signed_by(&ark).unwrap();
        let now = at("2030-01-01T00:00:00Z");
        for bytes in [CRL_DER, CRL_PEM] {
            let crl = AmdCrl::parse(bytes).unwrap();
            crl.check(&ark, &[&good], now).unwrap();
            match crl.check(&ark, &[&good, &revoked], now) {
                Err(CrlError::Revoked { serial, .. }) => assert_eq!(serial, "0bad"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_crl_must_be_current_signed_and_from_the_ark() {
        let (ark, good) = (cert(ARK), cert(GOOD));
        let crl = AmdCrl::parse(CRL_DER).unwrap();
        assert!(matches!(
            crl.check(&ark, &[&good], at("2020-01-01T00:00:00Z")),
            Err(CrlError::NotYetValid { .. })
        ));
        assert!(matches!(
            crl.check(&ark, &[&good], at("2200-01-01T00:00:00Z")),
            Err(CrlError::Expired { .. })
        ));
        // Another issuer: the test ASK is not its ARK.
        assert!(matches!(
            crl.check(&good, &[&good], at("2030-01-01T00:00:00Z")),
            Err(CrlError::WrongIssuer { .. })
        ));
        // One bit of the signature.
        let mut flipped = CRL_DER.to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let crl = AmdCrl::parse(&flipped).unwrap();
        assert_eq!(
            crl.check(&ark, &[&good], at("2030-01-01T00:00:00Z")),
            Err(CrlError::SignatureInvalid)
        );
        assert!(matches!(
            AmdCrl::parse(b"not a crl"),
            Err(CrlError::Malformed(_))
        ));
        assert!(matches!(AmdCrl::parse(ARK), Err(CrlError::Malformed(_))));
    }
}

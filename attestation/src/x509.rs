//! X.509 helpers shared by the SNP and GPU verifiers: PEM/DER parsing that
//! keeps the bytes received, validity checks, and ECDSA P-384 signature
//! checks over the TBS bytes exactly as received.

use der::{Decode, Encode};
use x509_cert::Certificate;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};

use crate::time::Timestamp;

/// OID of ecdsa-with-SHA384.
const ECDSA_WITH_SHA384: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");

/// OID of id-RSASSA-PSS.
const RSASSA_PSS: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");

/// RSASSA-PSS-params: hash SHA-384, MGF1 with SHA-384, salt length 48, as
/// AMD's certificates carry them, with the default trailerField 1 written
/// out (ARK, ASK, Milan VCEKs) and omitted (Genoa and Turin VCEKs, VLEKs).
/// Nothing else is accepted: these are the parameters `ring` verifies.
const PSS_SHA384_PARAMS: [&[u8]; 2] = [
    &[
        0x30, 0x39, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
        0x02, 0x02, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
        0x0d, 0x01, 0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
        0x02, 0x02, 0x05, 0x00, 0xa2, 0x03, 0x02, 0x01, 0x30, 0xa3, 0x03, 0x02, 0x01, 0x01,
    ],
    &[
        0x30, 0x34, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
        0x02, 0x02, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
        0x0d, 0x01, 0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
        0x02, 0x02, 0x05, 0x00, 0xa2, 0x03, 0x02, 0x01, 0x30,
    ],
];

/// Why a certificate could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// Not PEM or DER, or not an X.509 certificate.
    #[error("not an X.509 certificate: {0}")]
    Malformed(String),
    /// No certificate in the input.
    #[error("no certificate found")]
    Empty,
    /// The DER does not re-encode to the bytes received (non-canonical DER).
    #[error("certificate {0:?} is not in canonical DER")]
    NonCanonical(String),
    /// Signed with an algorithm this verifier does not accept here.
    #[error("certificate {subject:?} is signed with {algorithm}, expected {expected}")]
    UnexpectedAlgorithm {
        /// Subject of the certificate.
        subject: String,
        /// OID found.
        algorithm: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The issuer's key does not verify the signature.
    #[error("certificate {subject:?} is not signed by {issuer:?}")]
    BadSignature {
        /// Subject of the signed certificate.
        subject: String,
        /// Subject of the supposed issuer.
        issuer: String,
    },
    /// The issuer name does not match the issuer certificate's subject.
    #[error(
        "certificate {subject:?} names issuer {named:?}, but the next certificate is {actual:?}"
    )]
    IssuerMismatch {
        /// Subject of the certificate.
        subject: String,
        /// Issuer it names.
        named: String,
        /// Subject of the next certificate in the chain.
        actual: String,
    },
    /// An issuing certificate that is not a CA, or one whose path length
    /// constraint the chain below it exceeds; or a leaf that is a CA.
    #[error("certificate {subject:?} basic constraints: {detail}")]
    BasicConstraints {
        /// Subject of the certificate.
        subject: String,
        /// What is wrong.
        detail: String,
    },
    /// A key usage extension that does not allow what the certificate is
    /// used for here.
    #[error("certificate {subject:?} key usage does not include {needed}")]
    KeyUsage {
        /// Subject of the certificate.
        subject: String,
        /// The usage needed.
        needed: &'static str,
    },
    /// More certificates than the chain may hold; refused before any
    /// signature is checked.
    #[error("certificate chain holds {found} certificates; at most {max} are accepted")]
    ChainTooLong {
        /// Certificates found.
        found: usize,
        /// The cap.
        max: usize,
    },
    /// Outside its validity period.
    #[error("certificate {subject:?} is valid {not_before} .. {not_after}, not at {at}")]
    NotValidAt {
        /// Subject.
        subject: String,
        /// Start of validity.
        not_before: Timestamp,
        /// End of validity.
        not_after: Timestamp,
        /// Verification time.
        at: Timestamp,
    },
}

/// A certificate with the DER bytes it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cert {
    der: Vec<u8>,
    parsed: Certificate,
}

impl Cert {
    pub(crate) fn from_der(der: &[u8]) -> Result<Self, CertError> {
        let parsed = Certificate::from_der(der).map_err(|e| CertError::Malformed(e.to_string()))?;
        Ok(Self {
            der: der.to_vec(),
            parsed,
        })
    }

    /// Reads one certificate given as PEM or DER.
    pub(crate) fn from_pem_or_der(bytes: &[u8]) -> Result<Self, CertError> {
        if looks_like_pem(bytes) {
            let mut chain = parse_pem_chain(bytes)?;
            if chain.len() != 1 {
                return Err(CertError::Malformed(format!(
                    "expected one certificate, found {}",
                    chain.len()
                )));
            }
            chain.pop().ok_or(CertError::Empty)
        } else {
            Self::from_der(bytes)
        }
    }

    pub(crate) fn der(&self) -> &[u8] {
        &self.der
    }

    pub(crate) fn subject(&self) -> String {
        self.parsed.tbs_certificate.subject.to_string()
    }

    pub(crate) fn issuer(&self) -> String {
        self.parsed.tbs_certificate.issuer.to_string()
    }

    /// The subject's common name, if any.
    pub(crate) fn subject_cn(&self) -> Option<String> {
        common_name(&self.parsed.tbs_certificate.subject)
    }

    /// The raw TBS bytes as received: the first element of the outer
    /// SEQUENCE, header included.
    pub(crate) fn raw_tbs(&self) -> Result<&[u8], CertError> {
        first_inner_element(&self.der).ok_or_else(|| self.malformed("TBS"))
    }

    /// The serial number's bytes.
    pub(crate) fn serial(&self) -> &[u8] {
        self.parsed.tbs_certificate.serial_number.as_bytes()
    }

    /// The subject name.
    pub(crate) fn subject_name(&self) -> &x509_cert::name::Name {
        &self.parsed.tbs_certificate.subject
    }

    /// Fails unless the parsed TBS re-encodes to exactly the bytes received,
    /// so a verifier that re-encodes checks the bytes we hold.
    pub(crate) fn require_canonical(&self) -> Result<(), CertError> {
        let reencoded = self
            .parsed
            .tbs_certificate
            .to_der()
            .map_err(|e| CertError::Malformed(e.to_string()))?;
        if reencoded.as_slice() == self.raw_tbs()? {
            Ok(())
        } else {
            Err(CertError::NonCanonical(self.subject()))
        }
    }

    pub(crate) fn not_before(&self) -> Timestamp {
        Timestamp::from_x509(self.parsed.tbs_certificate.validity.not_before)
    }

    pub(crate) fn not_after(&self) -> Timestamp {
        Timestamp::from_x509(self.parsed.tbs_certificate.validity.not_after)
    }

    pub(crate) fn check_valid_at(&self, at: Timestamp) -> Result<(), CertError> {
        let (not_before, not_after) = (self.not_before(), self.not_after());
        if at < not_before || at > not_after {
            return Err(CertError::NotValidAt {
                subject: self.subject(),
                not_before,
                not_after,
                at,
            });
        }
        Ok(())
    }

    /// The raw subject public key bytes (SEC1 point for EC keys).
    pub(crate) fn public_key_bytes(&self) -> &[u8] {
        self.parsed
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes()
    }

    /// The value of an extension, if present.
    pub(crate) fn extension(&self, oid: &der::asn1::ObjectIdentifier) -> Option<&[u8]> {
        self.parsed
            .tbs_certificate
            .extensions
            .as_ref()?
            .iter()
            .find(|ext| &ext.extn_id == oid)
            .map(|ext| ext.extn_value.as_bytes())
    }

    /// Checks that `issuer` signed this certificate with ECDSA P-384/SHA-384
    /// over the TBS bytes as received, and that the names chain.
    pub(crate) fn verify_p384_signed_by(&self, issuer: &Cert) -> Result<(), CertError> {
        self.check_issuer_name(issuer)?;
        let algorithm = &self.parsed.signature_algorithm.oid;
        if algorithm != &ECDSA_WITH_SHA384 {
            return Err(CertError::UnexpectedAlgorithm {
                subject: self.subject(),
                algorithm: algorithm.to_string(),
                expected: "ecdsa-with-SHA384",
            });
        }
        self.check_signature_by(issuer, crate::crypto::p384_der_signature_ok)
    }

    /// A decoded extension of type `T`, if present.
    fn decoded_extension<T>(&self) -> Result<Option<T>, CertError>
    where
        T: der::oid::AssociatedOid + for<'a> Decode<'a>,
    {
        self.extension(&T::OID)
            .map(|bytes| {
                T::from_der(bytes).map_err(|e| {
                    CertError::Malformed(format!("{} of {:?}: {e}", T::OID, self.subject()))
                })
            })
            .transpose()
    }

    /// Checks that this certificate may issue certificates with
    /// `intermediates_below` CA certificates between it and the leaf:
    /// basicConstraints with cA set and a path length constraint (when
    /// given) of at least that many, and keyCertSign when key usage is given.
    pub(crate) fn check_may_issue(&self, intermediates_below: usize) -> Result<(), CertError> {
        let constraint = |detail: String| CertError::BasicConstraints {
            subject: self.subject(),
            detail,
        };
        let Some(bc) = self.decoded_extension::<BasicConstraints>()? else {
            return Err(constraint("missing, so it is not a CA".into()));
        };
        if !bc.ca {
            return Err(constraint(
                "cA is false, so it may not issue certificates".into(),
            ));
        }
        if let Some(max) = bc.path_len_constraint
            && intermediates_below > usize::from(max)
        {
            return Err(constraint(format!(
                "path length constraint {max}, but {intermediates_below} CA certificates follow it"
            )));
        }
        if let Some(ku) = self.decoded_extension::<KeyUsage>()?
            && !ku.key_cert_sign()
        {
            return Err(CertError::KeyUsage {
                subject: self.subject(),
                needed: "keyCertSign",
            });
        }
        Ok(())
    }

    /// Checks that this certificate may sign evidence: not a CA, and
    /// digitalSignature when key usage is given.
    pub(crate) fn check_signing_leaf(&self) -> Result<(), CertError> {
        if let Some(bc) = self.decoded_extension::<BasicConstraints>()?
            && bc.ca
        {
            return Err(CertError::BasicConstraints {
                subject: self.subject(),
                detail: "cA is true, but a CA certificate may not sign evidence".into(),
            });
        }
        if let Some(ku) = self.decoded_extension::<KeyUsage>()?
            && !ku.digital_signature()
        {
            return Err(CertError::KeyUsage {
                subject: self.subject(),
                needed: "digitalSignature",
            });
        }
        Ok(())
    }

    /// Checks that `issuer` signed this certificate with RSASSA-PSS
    /// (SHA-384, MGF1-SHA-384, salt 48) over the TBS bytes as received,
    /// with `ring`, and that the names chain. The algorithm identifier must
    /// be one of the two encodings AMD uses, outside and inside the TBS.
    pub(crate) fn verify_rsa_pss_sha384_signed_by(&self, issuer: &Cert) -> Result<(), CertError> {
        self.check_issuer_name(issuer)?;
        check_pss_sha384(
            &self.parsed.signature_algorithm,
            &self.parsed.tbs_certificate.signature,
        )
        .map_err(|algorithm| CertError::UnexpectedAlgorithm {
            subject: self.subject(),
            algorithm,
            expected: PSS_SHA384_NAME,
        })?;
        self.check_signature_by(issuer, crate::crypto::rsa_pss_sha384_signature_ok)
    }

    /// Checks the signature over the TBS bytes as received with the
    /// issuer's key, by `signature_ok(public key, message, signature)`.
    fn check_signature_by(
        &self,
        issuer: &Cert,
        signature_ok: fn(&[u8], &[u8], &[u8]) -> bool,
    ) -> Result<(), CertError> {
        let bad = || CertError::BadSignature {
            subject: self.subject(),
            issuer: issuer.subject(),
        };
        let signature = self.parsed.signature.as_bytes().ok_or_else(bad)?;
        if signature_ok(issuer.public_key_bytes(), self.raw_tbs()?, signature) {
            Ok(())
        } else {
            Err(bad())
        }
    }

    pub(crate) fn check_issuer_name(&self, issuer: &Cert) -> Result<(), CertError> {
        if self.parsed.tbs_certificate.issuer != issuer.parsed.tbs_certificate.subject {
            return Err(CertError::IssuerMismatch {
                subject: self.subject(),
                named: self.issuer(),
                actual: issuer.subject(),
            });
        }
        Ok(())
    }

    fn malformed(&self, what: &str) -> CertError {
        CertError::Malformed(format!("{what} of {:?}", self.subject()))
    }
}

fn common_name(name: &x509_cert::name::Name) -> Option<String> {
    const CN: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
    name.0.iter().flat_map(|rdn| rdn.0.iter()).find_map(|atv| {
        (atv.oid == CN).then(|| {
            atv.value
                .decode_as::<String>()
                .or_else(|_| {
                    atv.value
                        .decode_as::<der::asn1::PrintableStringRef<'_>>()
                        .map(|s| s.to_string())
                })
                .unwrap_or_else(|_| String::from_utf8_lossy(atv.value.value()).into_owned())
        })
    })
}

pub(crate) fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes
        .windows(b"-----BEGIN".len())
        .any(|w| w == b"-----BEGIN")
}

/// Parses a PEM chain of at most `max` certificates. The blocks are
/// counted before any is decoded, so a huge chain costs one scan.
pub(crate) fn parse_pem_chain_capped(bytes: &[u8], max: usize) -> Result<Vec<Cert>, CertError> {
    const BEGIN: &[u8] = b"-----BEGIN";
    let found = bytes.windows(BEGIN.len()).filter(|w| *w == BEGIN).count();
    if found > max {
        return Err(CertError::ChainTooLong { found, max });
    }
    parse_pem_chain(bytes)
}

/// Parses every `CERTIFICATE` block of a PEM text, in order.
pub(crate) fn parse_pem_chain(bytes: &[u8]) -> Result<Vec<Cert>, CertError> {
    let blocks = pem::parse_many(bytes).map_err(|e| CertError::Malformed(e.to_string()))?;
    let certs = blocks
        .iter()
        .filter(|block| block.tag() == "CERTIFICATE")
        .map(|block| Cert::from_der(block.contents()))
        .collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(CertError::Empty);
    }
    Ok(certs)
}

/// Human name of the one RSA-PSS profile accepted.
pub(crate) const PSS_SHA384_NAME: &str = "RSASSA-PSS with SHA-384, MGF1-SHA-384, salt 48";

/// Checks that a signature algorithm is RSASSA-PSS with exactly AMD's
/// SHA-384 parameters, and that the copy inside the signed part says the
/// same; `Err` describes what was found instead.
pub(crate) fn check_pss_sha384(
    outer: &x509_cert::spki::AlgorithmIdentifierOwned,
    signed_copy: &x509_cert::spki::AlgorithmIdentifierOwned,
) -> Result<(), String> {
    if outer != signed_copy {
        return Err("an outer signature algorithm that differs from the signed one".into());
    }
    if outer.oid != RSASSA_PSS {
        return Err(outer.oid.to_string());
    }
    let params = outer
        .parameters
        .as_ref()
        .and_then(|p| p.to_der().ok())
        .unwrap_or_default();
    if PSS_SHA384_PARAMS.contains(&params.as_slice()) {
        Ok(())
    } else {
        Err(format!(
            "RSASSA-PSS with parameters {}",
            hex::encode(&params)
        ))
    }
}

/// The first element inside the DER SEQUENCE at the start of `der`, header
/// included, as received: the signed part of a certificate or CRL.
pub(crate) fn first_inner_element(der: &[u8]) -> Option<&[u8]> {
    let outer = der_content(der)?;
    let (header, len) = der_header(outer)?;
    outer.get(..header.checked_add(len)?)
}

/// Length of a DER header and of its content.
fn der_header(bytes: &[u8]) -> Option<(usize, usize)> {
    let first_len = *bytes.get(1)?;
    if first_len < 0x80 {
        return Some((2, usize::from(first_len)));
    }
    let n = usize::from(first_len & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    let len = bytes
        .get(2..2 + n)?
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    Some((2 + n, len))
}

/// The content of the DER element at the start of `bytes`.
fn der_content(bytes: &[u8]) -> Option<&[u8]> {
    let (header, len) = der_header(bytes)?;
    bytes.get(header..header.checked_add(len)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_short_and_long_form() {
        assert_eq!(der_header(&[0x30, 0x05]), Some((2, 5)));
        assert_eq!(der_header(&[0x30, 0x82, 0x01, 0x00]), Some((4, 256)));
        assert_eq!(der_header(&[0x30, 0x80]), None);
        assert_eq!(der_header(&[0x30]), None);
        assert_eq!(der_content(&[0x30, 0x03, 1, 2]), None);
    }

    #[test]
    fn raw_tbs_is_the_signed_part_and_round_trips() {
        let pem = crate::roots::NVIDIA_DEVICE_IDENTITY_CA_PEM;
        let root = Cert::from_pem_or_der(pem).unwrap();
        root.require_canonical().unwrap();
        let tbs = root.raw_tbs().unwrap();
        assert_eq!(tbs[0], 0x30);
        // Self-signed with ECDSA P-384.
        root.verify_p384_signed_by(&root).unwrap();
        assert_eq!(
            root.subject_cn().as_deref(),
            Some("NVIDIA Device Identity CA")
        );
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert!(matches!(
            Cert::from_pem_or_der(b"nope"),
            Err(CertError::Malformed(_))
        ));
        assert!(matches!(
            parse_pem_chain(b"-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n"),
            Err(CertError::Empty)
        ));
    }
}

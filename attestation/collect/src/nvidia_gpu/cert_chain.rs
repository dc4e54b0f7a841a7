//! NVML's attestation certificate chain buffer to the bundle's form: PEM
//! certificates, leaf first.
//!
//! NVML returns concatenated PEM, leaf first, ending in the NVIDIA Device
//! Identity CA. This checks that the text is only `CERTIFICATE` blocks of
//! well-formed X.509, and orders the chain by name: subjects and issuers
//! must link leaf to root, or root to leaf (then it is reversed). Whether
//! the signatures link is the verifier's business.

use der::Decode as _;
use pem::{EncodeConfig, LineEnding, Pem};
use x509_cert::Certificate;

/// The chain as the bundle carries it, or what is wrong with it.
pub(super) fn leaf_first_pem(raw: &[u8]) -> Result<String, String> {
    let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let bytes = raw.get(..end).unwrap_or_default();
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not text: {e}"))?;
    let blocks = pem::parse_many(text).map_err(|e| format!("not PEM: {e}"))?;
    if blocks.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    let begins = text.matches("-----BEGIN").count();
    if begins != blocks.len() {
        return Err(format!(
            "{begins} PEM headers but only {} well-formed blocks",
            blocks.len()
        ));
    }
    if let Some(other) = blocks.iter().find(|b| b.tag() != "CERTIFICATE") {
        return Err(format!("holds a {} block", other.tag()));
    }
    let certs = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| {
            Certificate::from_der(b.contents()).map_err(|e| format!("certificate {i}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if links(&certs) {
        return Ok(text.to_owned());
    }
    let reversed: Vec<&Certificate> = certs.iter().rev().collect();
    if links_refs(&reversed) {
        let config = EncodeConfig::new().set_line_ending(LineEnding::LF);
        return Ok(blocks
            .iter()
            .rev()
            .map(|b| pem::encode_config(&Pem::new("CERTIFICATE", b.contents()), config))
            .collect());
    }
    Err("the certificates' subjects and issuers do not form a chain".into())
}

/// Whether each certificate's issuer is the next one's subject.
fn links(certs: &[Certificate]) -> bool {
    links_refs(&certs.iter().collect::<Vec<_>>())
}

fn links_refs(certs: &[&Certificate]) -> bool {
    certs
        .windows(2)
        .all(|pair| matches!(pair, [child, parent] if child.tbs_certificate.issuer == parent.tbs_certificate.subject))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    const CHAIN: &[u8] = include_bytes!("../../../testdata/gpu/h100-nvtrust-sample/cert_chain.pem");

    fn reversed(text: &str) -> String {
        pem::parse_many(text)
            .unwrap()
            .iter()
            .rev()
            .map(pem::encode)
            .collect()
    }

    #[test]
    fn nvml_chain_passes_through_unchanged_without_nul_padding() {
        let text = std::str::from_utf8(CHAIN).unwrap();
        assert_eq!(leaf_first_pem(CHAIN).unwrap(), text);
        let mut padded = CHAIN.to_vec();
        padded.extend_from_slice(&[0; 100]);
        assert_eq!(leaf_first_pem(&padded).unwrap(), text);
    }

    #[test]
    fn a_root_first_chain_is_reversed() {
        let text = std::str::from_utf8(CHAIN).unwrap();
        let root_first = reversed(text);
        let fixed = leaf_first_pem(root_first.as_bytes()).unwrap();
        let ders = |t: &str| -> Vec<Vec<u8>> {
            pem::parse_many(t)
                .unwrap()
                .into_iter()
                .map(Pem::into_contents)
                .collect()
        };
        assert_eq!(ders(&fixed), ders(text));
        assert!(!fixed.contains('\r'));
    }

    #[test]
    fn junk_is_refused() {
        let text = std::str::from_utf8(CHAIN).unwrap();
        // Not text, not PEM, empty.
        assert!(leaf_first_pem(&[0xff, 0xfe, 0x00, 0x41]).is_err());
        assert!(leaf_first_pem(b"hello").unwrap_err().contains("no PEM"));
        assert!(leaf_first_pem(&[0; 64]).is_err());
        // A key among the certificates.
        let with_key = format!("{text}{}", pem::encode(&Pem::new("PRIVATE KEY", [1, 2, 3])));
        assert!(
            leaf_first_pem(with_key.as_bytes())
                .unwrap_err()
                .contains("PRIVATE KEY")
        );
        // A block whose base64 is broken.
        let broken = text.replacen("MII", "M!I", 1);
        assert!(leaf_first_pem(broken.as_bytes()).is_err());
        // A block that is not X.509.
        let not_x509 = pem::encode(&Pem::new("CERTIFICATE", [0x30, 0x03, 1, 2, 3]));
        assert!(
            leaf_first_pem(not_x509.as_bytes())
                .unwrap_err()
                .contains("certificate 0")
        );
        // Certificates that do not link: the leaf twice.
        let blocks = pem::parse_many(text).unwrap();
        let leaf = pem::encode(&blocks[0]);
        let twice = format!("{leaf}{leaf}");
        assert!(
            leaf_first_pem(twice.as_bytes())
                .unwrap_err()
                .contains("chain")
        );
    }
}

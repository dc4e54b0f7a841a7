//! Reading Intel PCS / PCCS responses (API v4).
//!
//! TCB info and QE identity come as `{"tcbInfo": {...}, "signature": "hex"}`
//! and `{"enclaveIdentity": {...}, "signature": "hex"}`. Intel signs the
//! bytes of the inner object exactly as they appear in the body, so it is
//! cut out of the body as a raw slice and never re-serialised.

use std::collections::BTreeMap;

use der::Decode as _;
use serde_json::value::RawValue;

/// A signed body and its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Signed {
    /// The signed JSON object, byte for byte as in the response.
    pub(super) body: String,
    /// Raw ECDSA P-256 `r‖s`.
    pub(super) signature: Vec<u8>,
}

/// Cuts `field` and `signature` out of a PCS response body.
pub(super) fn signed_body(json: &[u8], field: &str) -> Result<Signed, String> {
    let map: BTreeMap<String, &RawValue> =
        serde_json::from_slice(json).map_err(|e| format!("not a JSON object: {e}"))?;
    let body = map
        .get(field)
        .ok_or_else(|| format!("no {field:?} member"))?
        .get();
    if !body.starts_with('{') {
        return Err(format!("{field:?} is not a JSON object"));
    }
    let signature = map.get("signature").ok_or("no \"signature\" member")?.get();
    let signature: String =
        serde_json::from_str(signature).map_err(|_| "\"signature\" is not a string".to_owned())?;
    let signature = hex::decode(signature.trim()).map_err(|e| format!("signature: {e}"))?;
    if signature.len() != 64 {
        return Err(format!(
            "signature is {} bytes, not 64 (ECDSA P-256 r||s)",
            signature.len()
        ));
    }
    Ok(Signed {
        body: body.to_owned(),
        signature,
    })
}

/// Decodes a URL-encoded PEM issuer chain header.
pub(super) fn issuer_chain(header: &str) -> Result<String, String> {
    let pem_text = percent_encoding::percent_decode_str(header.trim())
        .decode_utf8()
        .map_err(|e| format!("not UTF-8 after percent-decoding: {e}"))?
        .into_owned();
    let blocks = pem::parse_many(pem_text.as_bytes()).map_err(|e| e.to_string())?;
    let certs = blocks.iter().filter(|b| b.tag() == "CERTIFICATE").count();
    if certs == 0 {
        return Err("holds no PEM certificate".into());
    }
    for block in &blocks {
        super::check_certificate_der(block.contents())?;
    }
    Ok(pem_text)
}

/// A CRL body as DER. PCS serves DER with `encoding=der`; PCCS and mirrors
/// may serve hex or PEM, so those are accepted too.
pub(super) fn crl_der(body: &[u8]) -> Result<Vec<u8>, String> {
    let der = if body.first() == Some(&0x30) {
        body.to_vec()
    } else {
        let text = std::str::from_utf8(body)
            .map_err(|_| "neither DER, PEM nor hex".to_owned())?
            .trim();
        if text.starts_with("-----BEGIN") {
            pem::parse(text).map_err(|e| e.to_string())?.into_contents()
        } else {
            hex::decode(text).map_err(|_| "neither DER, PEM nor hex".to_owned())?
        }
    };
    x509_cert::crl::CertificateList::from_der(&der).map_err(|e| format!("not a CRL: {e}"))?;
    Ok(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_body_is_the_exact_substring() {
        let body = r#"{"b":1,  "a" : [2, 3] ,"z":"\u00e9"}"#;
        let json = format!(
            r#"{{ "tcbInfo" :{body} , "signature":"{}"}}"#,
            "ab".repeat(64)
        );
        let signed = signed_body(json.as_bytes(), "tcbInfo").unwrap();
        assert_eq!(signed.body, body);
        assert_eq!(signed.signature, vec![0xab; 64]);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let sig = "00".repeat(64);
        for bad in [
            "[]".to_owned(),
            "{}".to_owned(),
            format!(r#"{{"tcbInfo":"text","signature":"{sig}"}}"#),
            r#"{"tcbInfo":{},"signature":"zz"}"#.to_owned(),
            r#"{"tcbInfo":{},"signature":"00"}"#.to_owned(),
            r#"{"tcbInfo":{},"signature":7}"#.to_owned(),
            format!(r#"{{"tcbInfo":{{}},"signature":"{sig}""#),
        ] {
            assert!(signed_body(bad.as_bytes(), "tcbInfo").is_err(), "{bad}");
        }
    }

    #[test]
    fn crls_are_accepted_as_der_hex_or_pem_only() {
        assert!(crl_der(b"\x30\x03\x02\x01\x00").is_err());
        assert!(crl_der(b"hello").is_err());
        assert!(crl_der(b"").is_err());
        assert!(issuer_chain("no%20pem").is_err());
    }
}

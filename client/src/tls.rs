//! TLS trust for HTTP clients (this crate's, and the router's towards
//! nodes): the public web roots, plus the certificates of an optional PEM
//! file (a private CA).

use std::path::Path;

use rustls_pki_types::pem::PemObject as _;

/// The web roots plus every certificate in `extra_ca`; the error says what
/// is wrong with the file.
pub fn root_store(extra_ca: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let Some(path) = extra_ca else {
        return Ok(roots);
    };
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut added = 0;
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| e.to_string())?;
        roots.add(cert).map_err(|e| e.to_string())?;
        added += 1;
    }
    if added == 0 {
        return Err("no PEM certificate".into());
    }
    Ok(roots)
}

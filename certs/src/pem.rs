//! PEM files: encoding with the `pem` crate, parsing with rustls' PEM reader, and
//! errors that name the file.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;

pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der.to_vec()))
}

pub(crate) fn certificates(
    text: &[u8],
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(text).collect();
    let certs = certs.map_err(|e| {
        Error::file(
            path,
            format!("corrupt PEM ({e}); restore it or enroll again"),
        )
    })?;
    if certs.is_empty() {
        return Err(Error::file(
            path,
            "no certificate in it (truncated or wrong file?)",
        ));
    }
    for c in &certs {
        x509_parser::parse_x509_certificate(c.as_ref()).map_err(|e| {
            Error::file(
                path,
                format!("certificate does not parse ({e}); restore it or enroll again"),
            )
        })?;
    }
    Ok(certs)
}

pub(crate) fn private_key(text: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(text).map_err(|e| {
        Error::file(
            path,
            format!("no usable private key ({e}); restore it or enroll again"),
        )
    })
}

//! The authenticated identity of a peer, read from its verified certificate.

use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::Error;

/// Who is on the other end of a link. Taken from the leaf certificate the TLS
/// handshake verified: the node name is its single DNS subject-alternative name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    pub node: String,
    /// The certificate's serial number, big-endian.
    pub serial: Vec<u8>,
    pub not_after: SystemTime,
}

impl PeerIdentity {
    pub fn from_certificate(cert: &CertificateDer<'_>) -> Result<Self, Error> {
        let (_, x509) = X509Certificate::from_der(cert.as_ref())
            .map_err(|e| Error::Identity(format!("unparsable certificate: {e}")))?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = x509.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::DNSName(n) = name {
                    names.push(n.to_string());
                }
            }
        }
        let node = match names.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(Error::Identity(
                    "no DNS name: the certificate names no node".into(),
                ))
            }
            _ => {
                return Err(Error::Identity(format!(
                    "several DNS names {names:?}: one node per certificate"
                )))
            }
        };
        let secs = x509.validity().not_after.timestamp();
        let not_after = SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
        Ok(Self {
            node,
            serial: x509.raw_serial().to_vec(),
            not_after,
        })
    }

    /// The serial as lowercase hex, as `netmsg cert status` prints it.
    pub fn serial_hex(&self) -> String {
        self.serial.iter().map(|b| format!("{b:02x}")).collect()
    }
}

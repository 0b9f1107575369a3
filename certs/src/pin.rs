//! The CA pin: SHA-256 of a certificate's SubjectPublicKeyInfo, and the server
//! verifier an enrolling node uses before it has any trust anchor but the pin.

use std::sync::Arc;

use ring::digest;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// SHA-256 of the certificate's SubjectPublicKeyInfo (DER).
pub fn spki_sha256(cert: &CertificateDer<'_>) -> Option<[u8; 32]> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let spki = x509.tbs_certificate.subject_pki.raw;
    Some(
        digest::digest(&digest::SHA256, spki)
            .as_ref()
            .try_into()
            .expect("32 bytes"),
    )
}

/// Accepts a server whose chain contains a certificate with the pinned key and
/// chains to it. The server's name is not checked: only the CA node can answer
/// with a chain to the pinned CA, and the proof is bound to the session.
#[derive(Debug)]
pub(crate) struct PinnedCa {
    pub(crate) pin: [u8; 32],
    pub(crate) provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let found: Vec<String> = std::iter::once(end_entity)
            .chain(intermediates)
            .filter_map(spki_sha256)
            .map(hex::encode)
            .collect();
        let Some(anchor) = std::iter::once(end_entity)
            .chain(intermediates)
            .find(|c| spki_sha256(c) == Some(self.pin))
        else {
            return Err(rustls::Error::General(format!(
                "pin mismatch: expected {} found {}",
                hex::encode(self.pin),
                found.join(",")
            )));
        };
        let mut roots = RootCertStore::empty();
        roots
            .add(anchor.clone().into_owned())
            .map_err(|e| rustls::Error::General(format!("pinned CA: {e}")))?;
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

//! TLS for links: rustls with the ring provider passed explicitly, TLS 1.3 only,
//! client certificates required, 0-RTT off. The verifiers are injected (the
//! `certs` crate builds them from the cluster CA and its CRL); [`NodeTls::from_ca`]
//! builds the usual ones.

use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::{Error, ALPN};

/// A node's TLS material and the verifiers it applies to peers.
#[derive(Debug)]
pub struct NodeTls {
    pub cert_chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// Checks client certificates (peers that dial us).
    pub client_verifier: Arc<dyn ClientCertVerifier>,
    /// Checks server certificates (peers we dial), including the node name.
    pub server_verifier: Arc<dyn ServerCertVerifier>,
    /// Other ALPN protocols this node serves on the same port (for example
    /// enrollment). Their clients need not present a certificate, so the client
    /// verifier must allow that; cluster links (`netmsg/1`) still require one.
    pub extra_alpns: Vec<Vec<u8>>,
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl NodeTls {
    /// Verifiers that accept certificates chaining to `ca` only, checked against
    /// `crls`. With `strict_crl`, a CRL past its next-update time is refused;
    /// an unknown revocation status is always denied.
    pub fn from_ca(
        cert_chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        ca: &[CertificateDer<'static>],
        crls: Vec<CertificateRevocationListDer<'static>>,
        strict_crl: bool,
    ) -> Result<Self, Error> {
        let mut roots = RootCertStore::empty();
        for c in ca {
            roots
                .add(c.clone())
                .map_err(|e| Error::TlsConfig(format!("CA certificate: {e}")))?;
        }
        let roots = Arc::new(roots);
        let mut client = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .with_crls(crls.clone());
        let mut server =
            WebPkiServerVerifier::builder_with_provider(roots, provider()).with_crls(crls);
        if strict_crl {
            client = client.enforce_revocation_expiration();
            server = server.enforce_revocation_expiration();
        }
        let client_verifier = client
            .build()
            .map_err(|e| Error::TlsConfig(e.to_string()))?;
        let server_verifier = server
            .build()
            .map_err(|e| Error::TlsConfig(e.to_string()))?;
        Ok(Self {
            cert_chain,
            key,
            client_verifier,
            server_verifier,
            extra_alpns: Vec::new(),
        })
    }

    /// As [`NodeTls::from_ca`], also serving `extra_alpns` on the same port to
    /// clients without a certificate (cluster links still require one).
    pub fn from_ca_serving(
        cert_chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        ca: &[CertificateDer<'static>],
        crls: Vec<CertificateRevocationListDer<'static>>,
        strict_crl: bool,
        extra_alpns: Vec<Vec<u8>>,
    ) -> Result<Self, Error> {
        let mut tls = Self::from_ca(cert_chain, key, ca, crls.clone(), strict_crl)?;
        if !extra_alpns.is_empty() {
            let mut roots = RootCertStore::empty();
            for c in ca {
                roots
                    .add(c.clone())
                    .map_err(|e| Error::TlsConfig(format!("CA certificate: {e}")))?;
            }
            let mut client =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .with_crls(crls)
                    .allow_unauthenticated();
            if strict_crl {
                client = client.enforce_revocation_expiration();
            }
            tls.client_verifier = client
                .build()
                .map_err(|e| Error::TlsConfig(e.to_string()))?;
            tls.extra_alpns = extra_alpns;
        }
        Ok(tls)
    }

    /// The QUIC server crypto config links use (also for baselines and tools).
    pub fn server_config(&self) -> Result<QuicServerConfig, Error> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| Error::TlsConfig(e.to_string()))?
            .with_client_cert_verifier(self.client_verifier.clone())
            .with_single_cert(self.cert_chain.clone(), self.key.clone_key())
            .map_err(|e| Error::TlsConfig(format!("node certificate and key: {e}")))?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        config
            .alpn_protocols
            .extend(self.extra_alpns.iter().cloned());
        config.max_early_data_size = 0;
        QuicServerConfig::try_from(config).map_err(|e| Error::TlsConfig(e.to_string()))
    }

    /// The QUIC client crypto config links use.
    pub fn client_config(&self) -> Result<QuicClientConfig, Error> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| Error::TlsConfig(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(self.server_verifier.clone())
            .with_client_auth_cert(self.cert_chain.clone(), self.key.clone_key())
            .map_err(|e| Error::TlsConfig(format!("node certificate and key: {e}")))?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        config.enable_early_data = false;
        QuicClientConfig::try_from(config).map_err(|e| Error::TlsConfig(e.to_string()))
    }
}

//! Throwaway cluster certificates for tests and benchmarks on one machine
//! (feature `test-support`): a fresh CA and a node certificate per name.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::PrivatePkcs8KeyDer;

use crate::NodeTls;

/// TLS for each of `names`, all signed by one new CA, without a CRL.
pub fn throwaway_cluster(names: &[&str]) -> Vec<NodeTls> {
    let ca_key = KeyPair::generate().expect("key generation");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.distinguished_name
        .push(DnType::CommonName, "throwaway CA");
    let ca = p.self_signed(&ca_key).expect("CA certificate");
    names
        .iter()
        .map(|name| {
            let key = KeyPair::generate().expect("key generation");
            let mut p = CertificateParams::new(vec![name.to_string()]).expect("node name");
            p.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cert = p.signed_by(&key, &ca, &ca_key).expect("node certificate");
            NodeTls::from_ca(
                vec![cert.der().clone()],
                PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
                &[ca.der().clone()],
                vec![],
                false,
            )
            .expect("node TLS")
        })
        .collect()
}

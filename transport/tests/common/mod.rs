//! A throwaway cluster CA and nodes on loopback for transport tests.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SerialNumber,
};
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};
use time::OffsetDateTime;
use transport::{Node, NodeTls, TransportOptions};

pub struct Ca {
    pub cert: rcgen::Certificate,
    key: KeyPair,
    revoked: Vec<SerialNumber>,
    next_serial: u64,
}

pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub serial: Vec<u8>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert,
            key,
            revoked: Vec::new(),
            next_serial: 1,
        }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// A node certificate valid from `from` to `until` (relative to now).
    pub fn leaf_valid(&mut self, node: &str, from: time::Duration, until: time::Duration) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![node.to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, node);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let serial = self.next_serial.to_be_bytes().to_vec();
        self.next_serial += 1;
        params.serial_number = Some(SerialNumber::from(serial.clone()));
        let now = OffsetDateTime::now_utc();
        params.not_before = now + from;
        params.not_after = now + until;
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            serial: SerialNumber::from(serial).as_ref().to_vec(),
        }
    }

    pub fn leaf(&mut self, node: &str) -> Leaf {
        self.leaf_valid(node, time::Duration::minutes(-5), time::Duration::days(30))
    }

    pub fn revoke(&mut self, leaf: &Leaf) {
        self.revoked.push(SerialNumber::from(leaf.serial.clone()));
    }

    /// A CRL of everything revoked so far, valid for `lifetime` from `issued`.
    pub fn crl_at(
        &self,
        issued: time::Duration,
        lifetime: time::Duration,
    ) -> CertificateRevocationListDer<'static> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now + issued,
            next_update: now + issued + lifetime,
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: self
                .revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: s.clone(),
                    revocation_time: now,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.cert, &self.key)
            .unwrap()
            .der()
            .clone()
    }

    pub fn crl(&self) -> CertificateRevocationListDer<'static> {
        self.crl_at(time::Duration::minutes(-1), time::Duration::days(1))
    }

    pub fn tls(&mut self, node: &str) -> NodeTls {
        let leaf = self.leaf(node);
        self.tls_for(leaf)
    }

    pub fn tls_for(&self, leaf: Leaf) -> NodeTls {
        NodeTls::from_ca(leaf.chain, leaf.key, &[self.der()], vec![self.crl()], false).unwrap()
    }
}

pub fn fast_options() -> TransportOptions {
    TransportOptions {
        keep_alive: Duration::from_millis(200),
        idle_timeout: Duration::from_secs(1),
        handshake_timeout: Duration::from_secs(5),
        ..TransportOptions::default()
    }
}

pub fn node(ca: &mut Ca, name: &str, options: TransportOptions) -> Node {
    let tls = ca.tls(name);
    Node::bind(name, loopback(), &tls, options).unwrap()
}

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub fn addr(node: &Node) -> SocketAddr {
    node.local_addr().unwrap()
}

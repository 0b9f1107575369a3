//! A node's credentials as links use them: its certificate and key, the CA
//! bundle and the CRL, with checks that name the broken file.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::authority::unix;
use crate::pem;
use crate::pin::spki_sha256;
use crate::state::{StateDir, CA_CERT, CRL, NODE_CERT, NODE_KEY};
use crate::Error;

const ENROLL_HINT: &str = "this node is not enrolled: run `netmsg cert enroll --token T HOST` (or `netmsg cert init-ca` on the first node)";

/// What a CRL says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlInfo {
    pub number: u64,
    pub this_update: u64,
    pub next_update: Option<u64>,
    /// Revoked serials, lowercase hex without leading zero bytes.
    pub revoked: HashSet<String>,
}

impl CrlInfo {
    /// Whether the certificate with this serial (big-endian bytes) is revoked.
    pub fn revokes(&self, serial: &[u8]) -> bool {
        self.revoked.contains(&normalize_serial(serial))
    }

    pub fn is_stale(&self, now: SystemTime) -> bool {
        self.next_update.is_some_and(|n| n < unix(now))
    }
}

/// A node's identity and trust material.
#[derive(Debug)]
pub struct Credentials {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub ca: Vec<CertificateDer<'static>>,
    pub crl: Vec<u8>,
    pub node: String,
    /// Serial, lowercase hex without leading zero bytes.
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

pub(crate) fn normalize_serial(bytes: &[u8]) -> String {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|&b| b == 0).collect();
    hex::encode(trimmed)
}

impl Credentials {
    /// Loads and cross-checks `node.pem`, `node.key`, `ca.pem` and `crl.der`.
    pub fn load(state: &StateDir) -> Result<Self, Error> {
        let cert_text = state.read(NODE_CERT, ENROLL_HINT)?;
        let chain = pem::certificates(&cert_text, &state.path(NODE_CERT))?;
        let key_text = state.read(NODE_KEY, ENROLL_HINT)?;
        let key = pem::private_key(&key_text, &state.path(NODE_KEY))?;
        let ca_text = state.read(CA_CERT, ENROLL_HINT)?;
        let ca = pem::certificates(&ca_text, &state.path(CA_CERT))?;
        let crl = state.read(
            CRL,
            "the CRL is missing: `netmsg cert crl import FILE` with one exported on the CA node",
        )?;
        parse_crl(&crl).map_err(|what| Error::file(&state.path(CRL), what))?;
        let (_, leaf) = x509_parser::parse_x509_certificate(chain[0].as_ref())
            .expect("checked by pem::certificates");
        let node = node_name(&leaf).ok_or_else(|| {
            Error::file(
                &state.path(NODE_CERT),
                "the certificate names no node (no DNS name)",
            )
        })?;
        let serial = normalize_serial(leaf.raw_serial());
        let at = |t: i64| UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
        let not_before = at(leaf.validity().not_before.timestamp());
        let not_after = at(leaf.validity().not_after.timestamp());
        // The key must be the certificate's.
        let key_pem = String::from_utf8_lossy(&key_text).into_owned();
        let key_pair = rcgen::KeyPair::from_pem(&key_pem)
            .map_err(|e| Error::file(&state.path(NODE_KEY), format!("not a usable key ({e})")))?;
        if key_pair.public_key_der() != leaf.tbs_certificate.subject_pki.raw {
            return Err(Error::file(
                &state.path(NODE_KEY),
                format!(
                    "this key does not belong to {} (restore the matching key, or re-enroll)",
                    state.path(NODE_CERT).display()
                ),
            ));
        }
        // Present the CA bundle after the leaf: an enrolling node finds the pinned
        // CA key in it, and verifiers treat it as the issuer.
        let mut chain = chain;
        chain.truncate(1);
        chain.extend(ca.iter().cloned());
        Ok(Self {
            chain,
            key,
            ca,
            crl,
            node,
            serial,
            not_before,
            not_after,
        })
    }

    pub fn crl_info(&self) -> CrlInfo {
        parse_crl(&self.crl).expect("checked at load")
    }

    /// SHA-256 of the (first) CA's public key, as tokens pin it.
    pub fn ca_pin(&self) -> [u8; 32] {
        spki_sha256(&self.ca[0]).expect("checked at load")
    }

    /// Replaces `crl.der` with `der` if it is signed by this node's CA and newer
    /// than the current one.
    pub fn import_crl(state: &StateDir, der: &[u8]) -> Result<CrlInfo, Error> {
        let ca_text = state.read(CA_CERT, ENROLL_HINT)?;
        let ca = pem::certificates(&ca_text, &state.path(CA_CERT))?;
        let (_, crl) = CertificateRevocationList::from_der(der)
            .map_err(|e| Error::Usage(format!("not a DER CRL ({e})")))?;
        let signed = ca.iter().any(|c| {
            x509_parser::parse_x509_certificate(c.as_ref())
                .ok()
                .is_some_and(|(_, ca)| crl.verify_signature(ca.public_key()).is_ok())
        });
        if !signed {
            return Err(Error::Refused(
                "this CRL is not signed by the cluster CA".into(),
            ));
        }
        let new = parse_crl(der).map_err(Error::Usage)?;
        if let Ok(current) = state.read(CRL, "") {
            if let Ok(cur) = parse_crl(&current) {
                if new.number <= cur.number {
                    return Err(Error::Refused(format!(
                        "this CRL (number {}) is not newer than the current one ({})",
                        new.number, cur.number
                    )));
                }
            }
        }
        state.write(CRL, der, false, false)?;
        Ok(new)
    }
}

/// The node a certificate names: its first DNS subject-alternative name.
pub(crate) fn node_name(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<String> {
    let san = cert.subject_alternative_name().ok().flatten()?;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
        _ => None,
    })
}

pub(crate) fn parse_crl(der: &[u8]) -> Result<CrlInfo, String> {
    let (_, crl) = CertificateRevocationList::from_der(der).map_err(|e| {
        format!("not a valid CRL ({e}); import a fresh one with `netmsg cert crl import`")
    })?;
    let number = crl
        .crl_number()
        .map(|n| u64::try_from(n.clone()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let revoked = crl
        .iter_revoked_certificates()
        .map(|r| normalize_serial(r.raw_serial()))
        .collect();
    Ok(CrlInfo {
        number,
        this_update: crl.last_update().timestamp().max(0) as u64,
        next_update: crl.next_update().map(|t| t.timestamp().max(0) as u64),
        revoked,
    })
}

/// When to renew a certificate valid from `not_before` to `not_after`: at two
/// thirds of its life, moved by `jitter` (in [0, 1)) within ±1/30 of the life so
/// that nodes enrolled together do not renew together.
pub fn renewal_time(not_before: SystemTime, not_after: SystemTime, jitter: f64) -> SystemTime {
    let life = not_after
        .duration_since(not_before)
        .unwrap_or_default()
        .as_secs_f64();
    let offset = life * 2.0 / 3.0 + (jitter.clamp(0.0, 1.0) - 0.5) * life / 15.0;
    not_before + Duration::from_secs_f64(offset.max(0.0))
}

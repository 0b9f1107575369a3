//! The cluster CA on the CA node: its key and certificate, the registry of join
//! tokens and issued certificates, and the CRL. The CA sets every field of an
//! issued certificate itself; from a CSR it takes only the public key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SerialNumber, SubjectPublicKeyInfo,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::{CertificateDer, ServerName};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_parser::prelude::FromDer;

use crate::pem;
use crate::pin::spki_sha256;
use crate::state::{StateDir, CA_CERT, CA_KEY, CRL, NODE_CERT, NODE_KEY, REGISTRY};
use crate::token::{secret_hash, JoinToken};
use crate::Error;

/// Default life of a node certificate.
pub const LEAF_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
const CA_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// A CRL is re-signed at least this often; nodes call it stale after.
pub const CRL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TokenRecord {
    id: String,
    secret_sha256: String,
    name: String,
    created: u64,
    expires: u64,
    uses_left: u32,
    replace: bool,
    revoked: bool,
}

/// A certificate the CA issued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCert {
    pub node: String,
    /// Serial, lowercase hex.
    pub serial: String,
    pub not_before: u64,
    pub not_after: u64,
    /// When it was revoked (Unix seconds).
    pub revoked: Option<u64>,
}

/// What `token list` shows (never the secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub expires: u64,
    pub uses_left: u32,
    pub revoked: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Registry {
    cluster: String,
    crl_number: u64,
    tokens: Vec<TokenRecord>,
    issued: Vec<IssuedCert>,
}

/// A certificate issued to a node, with what it needs to trust the cluster.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert: CertificateDer<'static>,
    pub ca: CertificateDer<'static>,
    pub crl: Vec<u8>,
}

/// The CA, loaded from the CA node's state directory.
pub struct Authority {
    state: StateDir,
    ca_der: CertificateDer<'static>,
    issuer: rcgen::Certificate,
    key: KeyPair,
    registry: Registry,
    pin: [u8; 32],
    rng: SystemRandom,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("cluster", &self.registry.cluster)
            .field("pin", &hex::encode(self.pin))
            .finish()
    }
}

pub(crate) fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn odt(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}

pub(crate) fn valid_node_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && ServerName::try_from(name.to_owned()).is_ok();
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{name:?} is not a valid node name (letters, digits and '-', at most 63)"
        )))
    }
}

impl Authority {
    /// Creates the CA (key and certificate constrained to signing certificates
    /// and CRLs), this node's own certificate, an empty CRL and the registry.
    /// Refuses to overwrite an existing CA or node key.
    pub fn init(
        state: &StateDir,
        cluster: &str,
        node: &str,
        now: SystemTime,
    ) -> Result<Authority, Error> {
        valid_node_name(node)?;
        for f in [CA_KEY, NODE_KEY] {
            if state.exists(f) {
                return Err(Error::Exists { path: state.path(f), hint: "this state directory already has a CA or a node identity; use another --state" });
            }
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(DnType::CommonName, format!("netmsg cluster CA ({cluster})"));
        params.not_before = odt(now - Duration::from_secs(300));
        params.not_after = odt(now + CA_TTL);
        let ca = params.self_signed(&key)?;
        let ca_der = ca.der().clone();
        state.write(CA_KEY, key.serialize_pem().as_bytes(), true, true)?;
        state.write(
            CA_CERT,
            pem::encode("CERTIFICATE", &ca_der).as_bytes(),
            false,
            false,
        )?;
        let pin = spki_sha256(&ca_der).expect("own certificate parses");
        let mut authority = Authority {
            state: state.clone(),
            ca_der,
            issuer: ca,
            key,
            registry: Registry {
                cluster: cluster.to_owned(),
                crl_number: 0,
                ..Registry::default()
            },
            pin,
            rng: SystemRandom::new(),
        };
        // This node's own identity.
        let node_key = KeyPair::generate()?;
        let leaf = authority.issue(node, &node_key, now, LEAF_TTL)?;
        state.write(NODE_KEY, node_key.serialize_pem().as_bytes(), true, true)?;
        state.write(
            NODE_CERT,
            pem::encode("CERTIFICATE", &leaf).as_bytes(),
            false,
            false,
        )?;
        authority.publish_crl(now)?;
        authority.save()?;
        Ok(authority)
    }

    pub fn load(state: &StateDir) -> Result<Authority, Error> {
        let hint = "this is not the CA node's state directory (run `netmsg cert init-ca` there first, or pass --state)";
        let key_pem = state.read_text(CA_KEY, hint)?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| Error::file(&state.path(CA_KEY), format!("not a usable key ({e})")))?;
        let ca_text = state.read(CA_CERT, hint)?;
        let ca_der = pem::certificates(&ca_text, &state.path(CA_CERT))?.remove(0);
        let params = CertificateParams::from_ca_cert_der(&ca_der).map_err(|e| {
            Error::file(&state.path(CA_CERT), format!("not a CA certificate ({e})"))
        })?;
        let issuer = params.self_signed(&key)?;
        let reg_bytes = state.read(REGISTRY, hint)?;
        let registry: Registry = serde_json::from_slice(&reg_bytes)
            .map_err(|e| Error::file(&state.path(REGISTRY), format!("corrupt registry ({e})")))?;
        let pin = spki_sha256(&ca_der)
            .ok_or_else(|| Error::file(&state.path(CA_CERT), "unparsable certificate"))?;
        Ok(Authority {
            state: state.clone(),
            ca_der,
            issuer,
            key,
            registry,
            pin,
            rng: SystemRandom::new(),
        })
    }

    fn save(&self) -> Result<(), Error> {
        let json = serde_json::to_vec_pretty(&self.registry).expect("registry serializes");
        self.state.write(REGISTRY, &json, true, false)
    }

    /// SHA-256 of the CA's public key: what join tokens pin.
    pub fn pin(&self) -> [u8; 32] {
        self.pin
    }

    pub fn ca_certificate(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    pub fn cluster(&self) -> &str {
        &self.registry.cluster
    }

    fn random<const N: usize>(&self) -> [u8; N] {
        let mut b = [0u8; N];
        self.rng.fill(&mut b).expect("system randomness");
        b
    }

    /// Issues a certificate for `node` on `public_key`; every field is the CA's.
    fn issue(
        &mut self,
        node: &str,
        public_key: &impl rcgen::PublicKeyData,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<CertificateDer<'static>, Error> {
        let mut params = CertificateParams::new(vec![node.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, node);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let mut serial = self.random::<16>();
        serial[0] &= 0x7f; // positive
        serial[0] |= 0x01; // and no leading zero byte
        params.serial_number = Some(SerialNumber::from(serial.to_vec()));
        let not_after = (now + ttl).min(self.ca_not_after());
        params.not_before = odt(now - Duration::from_secs(300));
        params.not_after = odt(not_after);
        let cert = params.signed_by(public_key, &self.issuer, &self.key)?;
        self.registry.issued.push(IssuedCert {
            node: node.to_owned(),
            serial: hex::encode(serial),
            not_before: unix(now) - 300,
            not_after: unix(not_after),
            revoked: None,
        });
        Ok(cert.der().clone())
    }

    fn ca_not_after(&self) -> SystemTime {
        let (_, x509) =
            x509_parser::parse_x509_certificate(self.ca_der.as_ref()).expect("own CA parses");
        UNIX_EPOCH + Duration::from_secs(x509.validity().not_after.timestamp().max(0) as u64)
    }

    /// A one-time (or `uses`-time) join token for `name`, valid for `ttl`.
    pub fn create_token(
        &mut self,
        name: &str,
        ttl: Duration,
        uses: u32,
        replace: bool,
        now: SystemTime,
    ) -> Result<JoinToken, Error> {
        valid_node_name(name)?;
        if uses == 0 {
            return Err(Error::Usage("--uses must be at least 1".into()));
        }
        let id = hex::encode(self.random::<8>());
        let secret = self.random::<32>();
        self.registry.tokens.push(TokenRecord {
            id: id.clone(),
            secret_sha256: hex::encode(secret_hash(&secret)),
            name: name.to_owned(),
            created: unix(now),
            expires: unix(now + ttl),
            uses_left: uses,
            replace,
            revoked: false,
        });
        self.save()?;
        tracing::info!(token = %id, node = %name, "join token created");
        Ok(JoinToken::new(self.pin, id, secret))
    }

    pub fn tokens(&self) -> Vec<TokenInfo> {
        self.registry
            .tokens
            .iter()
            .map(|t| TokenInfo {
                id: t.id.clone(),
                name: t.name.clone(),
                expires: t.expires,
                uses_left: t.uses_left,
                revoked: t.revoked,
            })
            .collect()
    }

    pub fn revoke_token(&mut self, id: &str) -> Result<(), Error> {
        let t = self
            .registry
            .tokens
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or_else(|| Error::Usage(format!("no token {id}; see `netmsg cert token list`")))?;
        t.revoked = true;
        self.save()
    }

    /// Enrollment: checks the token (exists, not revoked, unexpired, uses left),
    /// the proof (by `check_proof` with the stored secret hash), the CSR, and the
    /// name; then issues. Failures consume nothing.
    pub fn enroll(
        &mut self,
        token_id: &str,
        name: &str,
        csr_der: &[u8],
        check_proof: impl FnOnce(&[u8; 32]) -> bool,
        now: SystemTime,
    ) -> Result<Issued, Error> {
        let fresh = "ask the CA operator for a new one: `netmsg cert token --name NODE`";
        let t = self
            .registry
            .tokens
            .iter()
            .find(|t| t.id == token_id)
            .cloned();
        let Some(t) = t else {
            return Err(Error::Refused(format!("unknown token; {fresh}")));
        };
        if t.revoked {
            return Err(Error::Refused(format!(
                "token {token_id} was revoked; {fresh}"
            )));
        }
        if t.expires <= unix(now) {
            return Err(Error::Refused(format!(
                "token {token_id} has expired; {fresh}"
            )));
        }
        if t.uses_left == 0 {
            return Err(Error::Refused(format!(
                "token {token_id} was already used; {fresh}"
            )));
        }
        let key: [u8; 32] = hex::decode(&t.secret_sha256)
            .ok()
            .and_then(|v| v.try_into().ok())
            .expect("stored hash");
        if !check_proof(&key) {
            return Err(Error::Refused(format!(
                "proof of token {token_id} does not match (wrong token secret?)"
            )));
        }
        if name != t.name {
            return Err(Error::Refused(format!(
                "token {token_id} is for node {:?}, not {name:?}",
                t.name
            )));
        }
        let spki = csr_public_key(csr_der)?;
        let active: Vec<String> = self
            .registry
            .issued
            .iter()
            .filter(|c| c.node == name && c.revoked.is_none() && c.not_after > unix(now))
            .map(|c| c.serial.clone())
            .collect();
        if !active.is_empty() && !t.replace {
            return Err(Error::Refused(format!(
                "node {name:?} already has a certificate (serial {}); to re-enroll it, get a token with `netmsg cert token --name {name} --replace`",
                active.join(", ")
            )));
        }
        let cert = self.issue(name, &spki, now, LEAF_TTL)?;
        for serial in active {
            self.mark_revoked(&serial, now);
        }
        let record = self
            .registry
            .tokens
            .iter_mut()
            .find(|r| r.id == token_id)
            .expect("found above");
        record.uses_left -= 1;
        let crl = self.publish_crl(now)?;
        self.save()?;
        tracing::info!(token = %token_id, node = %name, "node enrolled");
        Ok(Issued {
            cert,
            ca: self.ca_der.clone(),
            crl,
        })
    }

    /// Renewal over the node's own identity: the caller's certificate must be
    /// its current, unrevoked, unexpired one; the new one has a new key.
    pub fn renew(
        &mut self,
        node: &str,
        serial: &str,
        csr_der: &[u8],
        now: SystemTime,
    ) -> Result<Issued, Error> {
        let current = self
            .registry
            .issued
            .iter()
            .rev()
            .find(|c| c.node == node)
            .cloned();
        let again =
            format!("re-enroll with a token from `netmsg cert token --name {node} --replace`");
        match current {
            Some(c) if c.serial == serial && c.revoked.is_none() && c.not_after > unix(now) => {}
            Some(c) if c.revoked.is_some() => {
                return Err(Error::Refused(format!(
                    "certificate {} of {node} is revoked; {again}",
                    c.serial
                )))
            }
            Some(c) if c.serial != serial => {
                return Err(Error::Refused(format!(
                    "certificate {serial} is not {node}'s current one ({}); {again}",
                    c.serial
                )))
            }
            _ => {
                return Err(Error::Refused(format!(
                    "no valid certificate of {node} to renew; {again}"
                )))
            }
        }
        let spki = csr_public_key(csr_der)?;
        let cert = self.issue(node, &spki, now, LEAF_TTL)?;
        let crl = self.crl_bytes()?;
        self.save()?;
        tracing::info!(node = %node, "certificate renewed");
        Ok(Issued {
            cert,
            ca: self.ca_der.clone(),
            crl,
        })
    }

    fn mark_revoked(&mut self, serial: &str, now: SystemTime) -> bool {
        let mut any = false;
        for c in self
            .registry
            .issued
            .iter_mut()
            .filter(|c| c.serial == serial && c.revoked.is_none())
        {
            c.revoked = Some(unix(now));
            any = true;
        }
        any
    }

    /// Revokes every certificate of `node`, or one serial; publishes a new CRL.
    pub fn revoke(
        &mut self,
        node: Option<&str>,
        serial: Option<&str>,
        now: SystemTime,
    ) -> Result<Vec<String>, Error> {
        let serials: Vec<String> = self
            .registry
            .issued
            .iter()
            .filter(|c| c.revoked.is_none())
            .filter(|c| {
                node.is_some_and(|n| c.node == n)
                    || serial.is_some_and(|s| c.serial.eq_ignore_ascii_case(s))
            })
            .map(|c| c.serial.clone())
            .collect();
        if serials.is_empty() {
            return Err(Error::Usage(
                "no such unrevoked certificate; see `netmsg cert status`".into(),
            ));
        }
        for s in &serials {
            self.mark_revoked(s, now);
        }
        self.publish_crl(now)?;
        self.save()?;
        Ok(serials)
    }

    pub fn issued(&self) -> &[IssuedCert] {
        &self.registry.issued
    }

    /// Signs a new CRL (number + 1) of every revoked serial and writes `crl.der`.
    pub fn publish_crl(&mut self, now: SystemTime) -> Result<Vec<u8>, Error> {
        self.registry.crl_number += 1;
        let revoked = self
            .registry
            .issued
            .iter()
            .filter_map(|c| c.revoked.map(|at| (c.serial.clone(), at)))
            .map(|(serial, at)| RevokedCertParams {
                serial_number: SerialNumber::from(hex::decode(serial).expect("stored hex")),
                revocation_time: odt(UNIX_EPOCH + Duration::from_secs(at)),
                reason_code: None,
                invalidity_date: None,
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: odt(now),
            next_update: odt(now + CRL_TTL),
            crl_number: SerialNumber::from(self.registry.crl_number),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer, &self.key)?.der().to_vec();
        self.state.write(CRL, &crl, false, false)?;
        Ok(crl)
    }

    fn crl_bytes(&self) -> Result<Vec<u8>, Error> {
        self.state.read(
            CRL,
            "the CA's CRL is missing; `netmsg cert revoke` or re-running the CA republishes it",
        )
    }
}

/// Verifies a CSR's self-signature and returns its public key, ignoring every
/// extension it asks for (CA:true, key usages, names).
fn csr_public_key(csr_der: &[u8]) -> Result<SubjectPublicKeyInfo, Error> {
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(csr_der)
        .map_err(|e| Error::Refused(format!("the CSR does not parse ({e})")))?;
    csr.verify_signature()
        .map_err(|_| Error::Refused("the CSR's signature does not verify".into()))?;
    SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw)
        .map_err(|e| Error::Refused(format!("the CSR's key type is not supported ({e})")))
}

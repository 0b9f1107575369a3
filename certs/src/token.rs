//! Join tokens: `NMT1-<CA SPKI SHA-256>-<id>.<secret>`. The prefix lets secret
//! scanners spot a leaked token; the pin lets the new node check the CA before
//! it sends anything; the CA keeps only the secret's SHA-256.

use std::fmt;

use ring::digest;

use crate::Error;

pub(crate) const PREFIX: &str = "NMT1-";

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the CA certificate's SubjectPublicKeyInfo.
    pub pin: [u8; 32],
    pub id: String,
    secret: [u8; 32],
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.debug_struct("JoinToken")
            .field("pin", &hex::encode(self.pin))
            .field("id", &self.id)
            .finish()
    }
}

impl JoinToken {
    pub(crate) fn new(pin: [u8; 32], id: String, secret: [u8; 32]) -> Self {
        Self { pin, id, secret }
    }

    pub fn parse(text: &str) -> Result<Self, Error> {
        let rest = text.trim().strip_prefix(PREFIX).ok_or(Error::BadToken)?;
        let (pin, rest) = rest.split_once('-').ok_or(Error::BadToken)?;
        let (id, secret) = rest.split_once('.').ok_or(Error::BadToken)?;
        let pin: [u8; 32] = hex::decode(pin)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(Error::BadToken)?;
        let secret: [u8; 32] = hex::decode(secret)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(Error::BadToken)?;
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::BadToken);
        }
        Ok(Self {
            pin,
            id: id.to_owned(),
            secret,
        })
    }

    /// The key both sides use for the proof: the CA stores only this.
    pub(crate) fn secret_hash(&self) -> [u8; 32] {
        secret_hash(&self.secret)
    }

    /// The token as text (contains the secret).
    pub fn reveal(&self) -> String {
        format!(
            "{PREFIX}{}-{}.{}",
            hex::encode(self.pin),
            self.id,
            hex::encode(self.secret)
        )
    }
}

pub(crate) fn secret_hash(secret: &[u8]) -> [u8; 32] {
    digest::digest(&digest::SHA256, secret)
        .as_ref()
        .try_into()
        .expect("32 bytes")
}

/// `HMAC-SHA256(key, "netmsg-enroll-v1" ‖ exporter ‖ SHA-256(csr))`: proves the
/// token without sending it, bound to one TLS session.
pub(crate) fn proof(key: &[u8; 32], exporter: &[u8], csr: &[u8]) -> Vec<u8> {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut ctx = ring::hmac::Context::with_key(&k);
    ctx.update(b"netmsg-enroll-v1");
    ctx.update(exporter);
    ctx.update(digest::digest(&digest::SHA256, csr).as_ref());
    ctx.sign().as_ref().to_vec()
}

pub(crate) fn verify_proof(key: &[u8; 32], exporter: &[u8], csr: &[u8], proof: &[u8]) -> bool {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut msg = b"netmsg-enroll-v1".to_vec();
    msg.extend_from_slice(exporter);
    msg.extend_from_slice(digest::digest(&digest::SHA256, csr).as_ref());
    ring::hmac::verify(&k, &msg, proof).is_ok()
}

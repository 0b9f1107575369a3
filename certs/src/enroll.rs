//! The enrollment protocol (ALPN `netmsg-enroll/1`, on the cluster's UDP port).
//!
//! One bidirectional stream, one request frame and one response frame, each a
//! 32-bit little-endian length and a JSON object. The client checks the server
//! by the token's CA pin during the handshake, before it sends anything.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use quinn::crypto::rustls::QuicClientConfig;
use rcgen::{CertificateParams, KeyPair};
use serde::{Deserialize, Serialize};

use crate::authority::{valid_node_name, Authority};
use crate::credentials::{normalize_serial, Credentials};
use crate::pin::{spki_sha256, PinnedCa};
use crate::state::{StateDir, CA_CERT, CRL, NODE_CERT, NODE_KEY};
use crate::token::{proof, verify_proof, JoinToken};
use crate::{pem, Error};

pub const ENROLL_ALPN: &[u8] = b"netmsg-enroll/1";
const EXPORTER_LABEL: &[u8] = b"EXPORTER-netmsg-enroll";
const MAX_FRAME: usize = 64 * 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Request {
    Enroll {
        token_id: String,
        name: String,
        csr: String,
        proof: String,
    },
    Renew {
        csr: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Response {
    ok: bool,
    #[serde(default)]
    error: String,
    #[serde(default)]
    cert: String,
    #[serde(default)]
    ca: String,
    #[serde(default)]
    crl: String,
}

async fn write_json<T: Serialize>(tx: &mut quinn::SendStream, value: &T) -> Result<(), Error> {
    let body = serde_json::to_vec(value).expect("serializes");
    tx.write_all(&(body.len() as u32).to_le_bytes())
        .await
        .map_err(net)?;
    tx.write_all(&body).await.map_err(net)?;
    let _ = tx.finish();
    Ok(())
}

async fn read_json<T: for<'de> Deserialize<'de>>(rx: &mut quinn::RecvStream) -> Result<T, Error> {
    let mut len = [0u8; 4];
    rx.read_exact(&mut len)
        .await
        .map_err(|e| Error::Protocol(format!("reading a frame header: {e}")))?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(Error::Protocol(format!(
            "frame of {len} bytes (limit {MAX_FRAME})"
        )));
    }
    let mut body = vec![0u8; len];
    rx.read_exact(&mut body)
        .await
        .map_err(|e| Error::Protocol(format!("reading a frame: {e}")))?;
    serde_json::from_slice(&body).map_err(|e| Error::Protocol(format!("malformed message: {e}")))
}

fn net(e: impl std::fmt::Display) -> Error {
    Error::Network(e.to_string())
}

fn unhex(field: &str, v: &str) -> Result<Vec<u8>, Error> {
    hex::decode(v).map_err(|_| Error::Protocol(format!("{field} is not hex")))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Connects to the enrollment endpoint, trusting only the CA with `pin`, with
/// an optional client identity (for renewal).
async fn connect(
    server: SocketAddr,
    pin: [u8; 32],
    identity: Option<&Credentials>,
) -> Result<(quinn::Endpoint, quinn::Connection), Error> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa { pin, provider }));
    let mut config = match identity {
        Some(c) => builder
            .with_client_auth_cert(c.chain.clone(), c.key.clone_key())
            .map_err(|e| Error::Tls(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ENROLL_ALPN.to_vec()];
    config.enable_early_data = false;
    let quic = QuicClientConfig::try_from(config).map_err(|e| Error::Tls(e.to_string()))?;
    let bind: SocketAddr = if server.is_ipv6() {
        "[::]:0".parse().expect("addr")
    } else {
        "0.0.0.0:0".parse().expect("addr")
    };
    let endpoint = quinn::Endpoint::client(bind).map_err(net)?;
    let connecting = endpoint
        .connect_with(
            quinn::ClientConfig::new(Arc::new(quic)),
            server,
            "netmsg-ca",
        )
        .map_err(net)?;
    let conn = match tokio::time::timeout(Duration::from_secs(10), connecting).await {
        Err(_) => {
            return Err(Error::Network(format!(
                "no answer from {server} within 10 s (is `netmsg serve --enroll` running there?)"
            )))
        }
        Ok(Err(e)) => {
            let text = e.to_string();
            if let Some(i) = text.find("pin mismatch: expected ") {
                let rest = &text[i + "pin mismatch: expected ".len()..];
                let (expected, found) = rest.split_once(" found ").unwrap_or((rest, "?"));
                return Err(Error::PinMismatch {
                    expected: expected.to_owned(),
                    found: found.trim_end_matches(')').to_owned(),
                });
            }
            return Err(Error::Network(format!("connecting to {server}: {text}")));
        }
        Ok(Ok(c)) => c,
    };
    Ok((endpoint, conn))
}

async fn exchange(conn: &quinn::Connection, request: &Request) -> Result<Response, Error> {
    let attempt = async {
        let (mut tx, mut rx) = conn.open_bi().await.map_err(net)?;
        write_json(&mut tx, request).await?;
        read_json::<Response>(&mut rx).await
    };
    let response = match attempt.await {
        Ok(r) => r,
        Err(e) => {
            // In TLS 1.3 the server judges our certificate after we think we are
            // connected: its verdict arrives as the connection's close reason.
            return Err(match conn.close_reason() {
                Some(reason) => Error::Refused(format!(
                    "the CA closed the connection ({reason}); if this node's certificate was revoked or has expired, re-enroll with a token from `netmsg cert token --name NODE --replace`"
                )),
                None => e,
            });
        }
    };
    conn.close(0u32.into(), b"done");
    if !response.ok {
        return Err(Error::Refused(response.error));
    }
    Ok(response)
}

/// Writes what the CA returned after checking it chains to the pinned CA and
/// carries our key.
fn store(
    state: &StateDir,
    key: &KeyPair,
    response: &Response,
    pin: [u8; 32],
    create_new: bool,
) -> Result<Credentials, Error> {
    let cert = unhex("cert", &response.cert)?;
    let ca = unhex("ca", &response.ca)?;
    let crl = unhex("crl", &response.crl)?;
    let ca_der = rustls_pki_types::CertificateDer::from(ca.clone());
    if spki_sha256(&ca_der) != Some(pin) {
        return Err(Error::Protocol(
            "the CA certificate returned is not the pinned one".into(),
        ));
    }
    let (_, leaf) = x509_parser::parse_x509_certificate(&cert)
        .map_err(|e| Error::Protocol(format!("certificate: {e}")))?;
    if leaf.tbs_certificate.subject_pki.raw != key.public_key_der() {
        return Err(Error::Protocol(
            "the certificate returned is not for our key".into(),
        ));
    }
    let (_, ca_x509) = x509_parser::parse_x509_certificate(&ca)
        .map_err(|e| Error::Protocol(format!("CA: {e}")))?;
    leaf.verify_signature(Some(ca_x509.public_key()))
        .map_err(|_| Error::Protocol("the certificate is not signed by the pinned CA".into()))?;
    state.write(NODE_KEY, key.serialize_pem().as_bytes(), true, create_new)?;
    state.write(
        NODE_CERT,
        pem::encode("CERTIFICATE", &cert).as_bytes(),
        false,
        false,
    )?;
    state.write(
        CA_CERT,
        pem::encode("CERTIFICATE", &ca).as_bytes(),
        false,
        false,
    )?;
    state.write(CRL, &crl, false, false)?;
    Credentials::load(state)
}

/// Enrolls this node as `name` with `token` at the CA node's `server`: makes the
/// key here, checks the CA by the pin, proves the token bound to the session.
pub async fn enroll(
    state: &StateDir,
    server: SocketAddr,
    token: &JoinToken,
    name: &str,
) -> Result<Credentials, Error> {
    valid_node_name(name)?;
    if state.exists(NODE_KEY) {
        return Err(Error::Exists {
            path: state.path(NODE_KEY),
            hint: "this node is already enrolled; use another --state to enroll again",
        });
    }
    let key = KeyPair::generate()?;
    let csr = CertificateParams::new(vec![name.to_owned()])?.serialize_request(&key)?;
    let csr = csr.der().to_vec();
    let (_endpoint, conn) = connect(server, token.pin, None).await?;
    let mut exporter = [0u8; 32];
    conn.export_keying_material(&mut exporter, EXPORTER_LABEL, token.id.as_bytes())
        .map_err(|_| Error::Tls("no TLS exporter".into()))?;
    let proof = proof(&token.secret_hash(), &exporter, &csr);
    let request = Request::Enroll {
        token_id: token.id.clone(),
        name: name.to_owned(),
        csr: hex::encode(&csr),
        proof: hex::encode(proof),
    };
    let response = exchange(&conn, &request).await?;
    store(state, &key, &response, token.pin, true)
}

/// Renews this node's certificate with a new key, over its current identity.
pub async fn renew(state: &StateDir, server: SocketAddr) -> Result<Credentials, Error> {
    let current = Credentials::load(state)?;
    let key = KeyPair::generate()?;
    let csr = CertificateParams::new(vec![current.node.clone()])?.serialize_request(&key)?;
    let (_endpoint, conn) = connect(server, current.ca_pin(), Some(&current)).await?;
    let response = exchange(
        &conn,
        &Request::Renew {
            csr: hex::encode(csr.der()),
        },
    )
    .await?;
    store(state, &key, &response, current.ca_pin(), false)
}

/// Renews the CA node's own certificate with a new key, without the network.
pub fn renew_local(
    state: &StateDir,
    authority: &mut Authority,
    now: SystemTime,
) -> Result<Credentials, Error> {
    let current = Credentials::load(state)?;
    let key = KeyPair::generate()?;
    let csr = CertificateParams::new(vec![current.node.clone()])?.serialize_request(&key)?;
    let issued = authority.renew(&current.node, &current.serial, csr.der(), now)?;
    let response = Response {
        ok: true,
        error: String::new(),
        cert: hex::encode(&issued.cert),
        ca: hex::encode(&issued.ca),
        crl: hex::encode(&issued.crl),
    };
    store(state, &key, &response, current.ca_pin(), false)
}

/// Limits failed enrollment attempts per source address.
#[derive(Debug)]
pub struct EnrollmentGuard {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    limit: u32,
    window: Duration,
}

impl Default for EnrollmentGuard {
    fn default() -> Self {
        Self::new(5, Duration::from_secs(60))
    }
}

impl EnrollmentGuard {
    /// At most `limit` failures per address per `window`.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            failures: Mutex::new(HashMap::new()),
            limit,
            window,
        }
    }

    fn blocked(&self, ip: IpAddr) -> bool {
        let mut f = self.failures.lock().expect("lock");
        match f.get(&ip) {
            Some(&(n, since)) if since.elapsed() < self.window => n >= self.limit,
            Some(_) => {
                f.remove(&ip);
                false
            }
            None => false,
        }
    }

    fn failed(&self, ip: IpAddr) {
        let mut f = self.failures.lock().expect("lock");
        let e = f.entry(ip).or_insert((0, Instant::now()));
        if e.1.elapsed() >= self.window {
            *e = (0, Instant::now());
        }
        e.0 += 1;
    }
}

/// Serves one enrollment connection on the CA node.
pub async fn serve_connection(
    conn: quinn::Connection,
    authority: &Mutex<Authority>,
    guard: &EnrollmentGuard,
    now: impl Fn() -> SystemTime,
) -> Result<(), Error> {
    let ip = conn.remote_address().ip();
    let (mut tx, mut rx) = tokio::time::timeout(Duration::from_secs(10), conn.accept_bi())
        .await
        .map_err(|_| Error::Protocol("no request in time".into()))?
        .map_err(net)?;
    let result = if guard.blocked(ip) {
        Err(Error::Refused(
            "too many failed attempts from this address; wait a minute".into(),
        ))
    } else {
        match read_json::<Request>(&mut rx).await {
            Ok(request) => handle(&conn, request, authority, now()),
            Err(e) => Err(e),
        }
    };
    let response = match &result {
        Ok(issued) => Response {
            ok: true,
            error: String::new(),
            cert: hex::encode(&issued.cert),
            ca: hex::encode(&issued.ca),
            crl: hex::encode(&issued.crl),
        },
        Err(e) => {
            guard.failed(ip);
            tracing::warn!(%ip, error = %e, "enrollment refused");
            Response {
                ok: false,
                error: e.to_string(),
                cert: String::new(),
                ca: String::new(),
                crl: String::new(),
            }
        }
    };
    write_json(&mut tx, &response).await?;
    // The client closes once it has the answer.
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
    result.map(|_| ())
}

fn handle(
    conn: &quinn::Connection,
    request: Request,
    authority: &Mutex<Authority>,
    now: SystemTime,
) -> Result<crate::authority::Issued, Error> {
    match request {
        Request::Enroll {
            token_id,
            name,
            csr,
            proof,
        } => {
            let csr = unhex("csr", &csr)?;
            let proof = unhex("proof", &proof)?;
            let mut exporter = [0u8; 32];
            conn.export_keying_material(&mut exporter, EXPORTER_LABEL, token_id.as_bytes())
                .map_err(|_| Error::Tls("no TLS exporter".into()))?;
            let mut ca = authority.lock().expect("lock");
            ca.enroll(
                &token_id,
                &name,
                &csr,
                |key| verify_proof(key, &exporter, &csr, &proof),
                now,
            )
        }
        Request::Renew { csr } => {
            let csr = unhex("csr", &csr)?;
            let certs = conn
                .peer_identity()
                .and_then(|a| {
                    a.downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
                        .ok()
                })
                .ok_or_else(|| {
                    Error::Refused("renewal needs the node's current certificate".into())
                })?;
            let (_, leaf) = x509_parser::parse_x509_certificate(certs[0].as_ref())
                .map_err(|e| Error::Protocol(e.to_string()))?;
            let node = crate::credentials::node_name(&leaf)
                .ok_or_else(|| Error::Refused("the certificate names no node".into()))?;
            let serial = normalize_serial(leaf.raw_serial());
            let mut ca = authority.lock().expect("lock");
            ca.renew(&node, &serial, &csr, now)
        }
    }
}

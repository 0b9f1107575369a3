//! Enrollment, renewal and revocation end to end on loopback: a CA node serving
//! `netmsg-enroll/1` on its cluster port (through the transport's ALPN hook).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use x509_parser::prelude::FromDer;

use certs::{
    enroll, renew, Authority, Credentials, EnrollmentGuard, Error, JoinToken, StateDir, ENROLL_ALPN,
};
use transport::{CloseCode, Node, NodeTls, TransportOptions};

fn temp_state(tag: &str) -> StateDir {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "netmsg-certs-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    StateDir::new(Some(dir)).unwrap()
}

fn tls(creds: &Credentials, serving: bool) -> NodeTls {
    let alpns = if serving {
        vec![ENROLL_ALPN.to_vec()]
    } else {
        vec![]
    };
    NodeTls::from_ca_serving(
        creds.chain.clone(),
        creds.key.clone_key(),
        &creds.ca,
        vec![creds.crl.clone().into()],
        false,
        alpns,
    )
    .unwrap()
}

fn options() -> TransportOptions {
    TransportOptions {
        idle_timeout: Duration::from_secs(2),
        keep_alive: Duration::from_millis(300),
        ..TransportOptions::default()
    }
}

struct CaNode {
    state: StateDir,
    authority: Arc<Mutex<Authority>>,
    node: Node,
    handled: Arc<AtomicUsize>,
}

impl CaNode {
    async fn start() -> CaNode {
        Self::start_with_limit(5).await
    }

    async fn start_with_limit(limit: u32) -> CaNode {
        let state = temp_state("ca");
        let authority = Authority::init(&state, "test", "ca-node", SystemTime::now()).unwrap();
        let creds = Credentials::load(&state).unwrap();
        let node = Node::bind(
            "ca-node",
            "127.0.0.1:0".parse().unwrap(),
            &tls(&creds, true),
            options(),
        )
        .unwrap();
        let mut incoming = node.serve_alpn(ENROLL_ALPN, 16);
        let authority = Arc::new(Mutex::new(authority));
        let handled = Arc::new(AtomicUsize::new(0));
        let guard = Arc::new(EnrollmentGuard::new(limit, Duration::from_secs(60)));
        {
            let (authority, handled) = (authority.clone(), handled.clone());
            tokio::spawn(async move {
                while let Some(conn) = incoming.recv().await {
                    handled.fetch_add(1, Ordering::Relaxed);
                    let (authority, guard) = (authority.clone(), guard.clone());
                    tokio::spawn(async move {
                        let _ = certs::serve_connection(conn, &authority, &guard, SystemTime::now)
                            .await;
                    });
                }
            });
        }
        CaNode {
            state,
            authority,
            node,
            handled,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.node.local_addr().unwrap()
    }

    fn token(&self, name: &str, ttl: Duration, uses: u32, replace: bool) -> JoinToken {
        self.authority
            .lock()
            .unwrap()
            .create_token(name, ttl, uses, replace, SystemTime::now())
            .unwrap()
    }
}

#[tokio::test]
async fn enrollment_succeeds_and_the_node_links_with_its_new_identity() {
    let ca = CaNode::start().await;
    let token = ca.token("node-b", Duration::from_secs(3600), 1, false);
    let text = token.reveal();
    assert!(text.starts_with("NMT1-"), "{text}");
    assert!(
        !format!("{token:?}").contains(&text[text.find('.').unwrap() + 1..]),
        "Debug never shows the secret"
    );
    let state = temp_state("b");
    let creds = enroll(
        &state,
        ca.addr(),
        &JoinToken::parse(&text).unwrap(),
        "node-b",
    )
    .await
    .unwrap();
    assert_eq!(creds.node, "node-b");
    let days = creds
        .not_after
        .duration_since(SystemTime::now())
        .unwrap()
        .as_secs()
        / 86400;
    assert!((29..=30).contains(&days), "30-day default life, got {days}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(state.path("node.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the key is private");
    // The new identity works on the cluster protocol, both ways.
    let b = Node::bind(
        "node-b",
        "127.0.0.1:0".parse().unwrap(),
        &tls(&creds, false),
        options(),
    )
    .unwrap();
    let link = b.dial("ca-node", ca.addr()).await.unwrap();
    assert_eq!(link.peer().node, "ca-node");
    let back = ca.node.link("node-b").unwrap();
    assert_eq!(
        back.peer().serial_hex().trim_start_matches('0'),
        creds.serial.trim_start_matches('0')
    );
}

#[tokio::test]
async fn a_wrong_pin_aborts_before_anything_is_sent() {
    let ca = CaNode::start().await;
    let token = ca.token("node-b", Duration::from_secs(3600), 1, false);
    let mut text = token.reveal();
    // Flip one hex digit of the pin.
    let flipped = if &text[5..6] == "0" { "1" } else { "0" };
    text.replace_range(5..6, flipped);
    let state = temp_state("b");
    let err = enroll(
        &state,
        ca.addr(),
        &JoinToken::parse(&text).unwrap(),
        "node-b",
    )
    .await
    .unwrap_err();
    let Error::PinMismatch { expected, found } = &err else {
        panic!("{err}")
    };
    assert!(
        found.contains(&hex::encode(ca.authority.lock().unwrap().pin())),
        "{found}"
    );
    assert_ne!(expected, found);
    assert!(err.to_string().contains("nothing was sent"), "{err}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        ca.handled.load(Ordering::Relaxed),
        0,
        "no request reached the CA"
    );
    assert_eq!(
        ca.authority.lock().unwrap().tokens()[0].uses_left,
        1,
        "the token is untouched"
    );
    assert!(!state.exists("node.pem"));
}

#[tokio::test]
async fn used_expired_revoked_and_wrong_name_tokens_are_refused() {
    let ca = CaNode::start_with_limit(100).await;
    let once = ca.token("node-b", Duration::from_secs(3600), 1, false);
    enroll(&temp_state("b1"), ca.addr(), &once, "node-b")
        .await
        .unwrap();
    let err = enroll(&temp_state("b2"), ca.addr(), &once, "node-b")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("already used")
            && err.to_string().contains("netmsg cert token --name"),
        "{err}"
    );

    let expired = ca.token("node-c", Duration::ZERO, 1, false);
    let err = enroll(&temp_state("c"), ca.addr(), &expired, "node-c")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");

    let revoked = ca.token("node-d", Duration::from_secs(3600), 1, false);
    ca.authority
        .lock()
        .unwrap()
        .revoke_token(&revoked.id)
        .unwrap();
    let err = enroll(&temp_state("d"), ca.addr(), &revoked, "node-d")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");

    let named = ca.token("node-e", Duration::from_secs(3600), 1, false);
    let err = enroll(&temp_state("x"), ca.addr(), &named, "node-x")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is for node \"node-e\""), "{err}");
    // A second node may not take an enrolled name without --replace.
    let again = ca.token("node-b", Duration::from_secs(3600), 1, false);
    let err = enroll(&temp_state("b3"), ca.addr(), &again, "node-b")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--replace"), "{err}");
    let replace = ca.token("node-b", Duration::from_secs(3600), 1, true);
    enroll(&temp_state("b4"), ca.addr(), &replace, "node-b")
        .await
        .unwrap();
    let issued = ca.authority.lock().unwrap().issued().to_vec();
    let b: Vec<_> = issued.iter().filter(|c| c.node == "node-b").collect();
    assert_eq!(b.len(), 2);
    assert!(
        b[0].revoked.is_some() && b[1].revoked.is_none(),
        "--replace revokes the old certificate"
    );
}

#[tokio::test]
async fn a_wrong_secret_is_refused_and_failures_are_rate_limited() {
    let ca = CaNode::start().await;
    let token = ca.token("node-b", Duration::from_secs(3600), 1, false);
    let text = token.reveal();
    let dot = text.find('.').unwrap();
    let forged = format!("{}.{}", &text[..dot], "ab".repeat(32));
    for _ in 0..5 {
        let err = enroll(
            &temp_state("f"),
            ca.addr(),
            &JoinToken::parse(&forged).unwrap(),
            "node-b",
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("proof"), "{err}");
    }
    // Even the right token is refused while the address is blocked.
    let err = enroll(&temp_state("g"), ca.addr(), &token, "node-b")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("too many failed attempts"),
        "{err}"
    );
    assert_eq!(ca.authority.lock().unwrap().tokens()[0].uses_left, 1);
}

#[tokio::test]
async fn a_csr_asking_for_ca_true_still_yields_a_leaf() {
    let state = temp_state("ca-direct");
    let mut authority = Authority::init(&state, "test", "ca-node", SystemTime::now()).unwrap();
    let token = authority
        .create_token(
            "node-b",
            Duration::from_secs(60),
            1,
            false,
            SystemTime::now(),
        )
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["node-b".to_string(), "evil.example".to_string()])
            .unwrap();
    // rcgen will not put CA:true in a CSR itself: add basicConstraints by hand
    // (SEQUENCE { BOOLEAN TRUE }, critical).
    let mut ca_true = rcgen::CustomExtension::from_oid_content(
        &[2, 5, 29, 19],
        vec![0x30, 0x03, 0x01, 0x01, 0xff],
    );
    ca_true.set_criticality(true);
    params.custom_extensions = vec![ca_true];
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let csr = params.serialize_request(&key).unwrap();
    let (_, parsed) =
        x509_parser::certification_request::X509CertificationRequest::from_der(csr.der()).unwrap();
    let asks_ca = parsed.requested_extensions().into_iter().flatten().any(
        |e| matches!(e, x509_parser::extensions::ParsedExtension::BasicConstraints(bc) if bc.ca),
    );
    assert!(asks_ca, "the CSR really asks for CA:true");
    let issued = authority
        .enroll(&token.id, "node-b", csr.der(), |_| true, SystemTime::now())
        .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&issued.cert).unwrap();
    let bc = cert.basic_constraints().unwrap().map(|e| e.value.ca);
    assert_ne!(bc, Some(true), "never a CA");
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(!ku.key_cert_sign() && ku.digital_signature());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth, "both usages");
    let names: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(
        names,
        ["DNSName(node-b)"],
        "the CA names the node, not the CSR"
    );
    assert_eq!(
        cert.tbs_certificate.subject_pki.raw,
        key.public_key_der(),
        "only the key comes from the CSR"
    );
    assert!(cert.raw_serial().len() >= 16, "random 128-bit serial");
}

#[tokio::test]
async fn renewal_rotates_key_and_serial_and_old_certificates_cannot_renew() {
    let ca = CaNode::start().await;
    let token = ca.token("node-b", Duration::from_secs(3600), 1, false);
    let state = temp_state("b");
    let first = enroll(&state, ca.addr(), &token, "node-b").await.unwrap();
    let old_key = std::fs::read(state.path("node.key")).unwrap();
    let old_pem = std::fs::read(state.path("node.pem")).unwrap();
    let second = renew(&state, ca.addr()).await.unwrap();
    assert_ne!(first.serial, second.serial);
    assert_ne!(
        std::fs::read(state.path("node.key")).unwrap(),
        old_key,
        "a new key"
    );
    // The previous certificate is no longer the node's current one.
    let old_state = temp_state("old");
    std::fs::create_dir_all(old_state.root()).unwrap();
    for f in ["ca.pem", "crl.der"] {
        std::fs::copy(state.path(f), old_state.path(f)).unwrap();
    }
    std::fs::write(old_state.path("node.key"), &old_key).unwrap();
    std::fs::write(old_state.path("node.pem"), &old_pem).unwrap();
    let err = renew(&old_state, ca.addr()).await.unwrap_err();
    assert!(
        err.to_string().contains("not node-b's current one"),
        "{err}"
    );
}

#[tokio::test]
async fn revocation_refuses_the_handshake_and_closes_the_open_link() {
    let ca = CaNode::start().await;
    let token = ca.token("node-b", Duration::from_secs(3600), 1, false);
    let state = temp_state("b");
    let creds = enroll(&state, ca.addr(), &token, "node-b").await.unwrap();
    let b = Node::bind(
        "node-b",
        "127.0.0.1:0".parse().unwrap(),
        &tls(&creds, false),
        options(),
    )
    .unwrap();
    let link = b.dial("ca-node", ca.addr()).await.unwrap();
    // Revoke; the CA node loads the new CRL and sweeps (what `netmsg serve` does).
    let revoked = ca
        .authority
        .lock()
        .unwrap()
        .revoke(Some("node-b"), None, SystemTime::now())
        .unwrap();
    let ca_creds = Credentials::load(&ca.state).unwrap();
    assert!(ca_creds
        .crl_info()
        .revokes(&hex::decode(&revoked[0]).unwrap()));
    ca.node.set_tls(&tls(&ca_creds, true)).unwrap();
    let info = ca_creds.crl_info();
    let closed = ca
        .node
        .close_links_where(CloseCode::Revoked, "certificate revoked", |p| {
            info.revokes(&p.serial)
        });
    assert_eq!(closed, ["node-b"]);
    let why = link.closed().await;
    assert_eq!(why.code, Some(CloseCode::Revoked));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        b.dial("ca-node", ca.addr()).await.is_err(),
        "a revoked certificate no longer completes a handshake"
    );
    // And it cannot renew.
    let err = renew(&state, ca.addr()).await.unwrap_err();
    assert!(
        err.to_string().contains("revoked") || matches!(err, Error::Network(_)),
        "{err}"
    );
}

#[test]
fn damaged_files_give_errors_that_name_the_file() {
    let state = temp_state("files");
    Authority::init(&state, "test", "ca-node", SystemTime::now()).unwrap();
    Credentials::load(&state).unwrap();
    let path = |f: &str| -> PathBuf { state.path(f) };
    let check = |f: &str, contents: &[u8], expect: &str| {
        let saved = std::fs::read(path(f)).unwrap();
        std::fs::write(path(f), contents).unwrap();
        let err = Credentials::load(&state).unwrap_err().to_string();
        assert!(err.contains(path(f).to_str().unwrap()), "{f}: {err}");
        assert!(err.contains(expect), "{f}: {err}");
        std::fs::write(path(f), saved).unwrap();
    };
    let pem = std::fs::read(path("node.pem")).unwrap();
    check("node.pem", &pem[..pem.len() / 2], "PEM");
    check("node.pem", b"hello", "no certificate");
    check(
        "node.key",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "key",
    );
    check("crl.der", b"\x30\x03\x02\x01", "CRL");
    let other = temp_state("other");
    Authority::init(&other, "test", "x", SystemTime::now()).unwrap();
    check(
        "node.key",
        &std::fs::read(other.path("node.key")).unwrap(),
        "does not belong",
    );
    std::fs::remove_file(path("node.pem")).unwrap();
    let err = Credentials::load(&state).unwrap_err().to_string();
    assert!(
        err.contains("netmsg cert enroll"),
        "tells what to do: {err}"
    );
    // init-ca refuses to overwrite.
    let err = Authority::init(&state, "test", "ca-node", SystemTime::now()).unwrap_err();
    assert!(matches!(err, Error::Exists { .. }), "{err}");
}

#[test]
fn renewal_time_is_two_thirds_of_the_life_with_jitter() {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let end = start + Duration::from_secs(30 * 86400);
    let at = |j| renewal_offset(certs::renewal_time(start, end, j), start);
    assert_eq!(at(0.5), 20 * 86400);
    assert_eq!(at(0.0), 20 * 86400 - 86400);
    assert!(
        (20 * 86400 + 86400 - 1..=20 * 86400 + 86400).contains(&at(0.999_999)),
        "{}",
        at(0.999_999)
    );
}

fn renewal_offset(t: SystemTime, start: SystemTime) -> u64 {
    t.duration_since(start).unwrap().as_secs()
}

#[test]
fn tokens_parse_strictly() {
    for bad in [
        "",
        "NMT1-",
        "NMT2-00-00.00",
        "NMT1-zz-0123456789abcdef.00",
        "K10abc",
    ] {
        assert!(
            matches!(JoinToken::parse(bad), Err(Error::BadToken)),
            "{bad}"
        );
    }
}

#[test]
fn a_crl_past_its_next_update_is_reported_stale() {
    let state = temp_state("stale");
    let ten_days_ago = SystemTime::now() - Duration::from_secs(10 * 86400);
    Authority::init(&state, "test", "ca-node", ten_days_ago).unwrap();
    let creds = Credentials::load(&state).unwrap();
    let info = creds.crl_info();
    assert!(
        info.is_stale(SystemTime::now()),
        "next update was 3 days ago"
    );
    assert!(!info.is_stale(ten_days_ago));
}

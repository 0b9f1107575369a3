//! Handshakes that must fail, in both directions: another CA, an expired
//! certificate, a revoked one (CRL); and the CRL freshness policy.

mod common;

use std::time::Duration;

use common::{addr, fast_options, loopback, node, Ca};
use transport::{Node, NodeTls};

/// `dialer` dialing `listener` fails, and neither ends up with a link.
async fn refused(dialer: &Node, listener: &Node) {
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        dialer.dial(listener.name(), addr(listener)),
    )
    .await
    .expect("fails promptly");
    assert!(
        r.is_err(),
        "{} -> {} should fail",
        dialer.name(),
        listener.name()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(dialer.link(listener.name()).is_none());
    assert!(listener.link(dialer.name()).is_none());
}

#[tokio::test]
async fn another_cluster_ca_is_refused_both_ways() {
    let mut ca = Ca::new("cluster CA");
    let mut other = Ca::new("other CA");
    let a = node(&mut ca, "node-a", fast_options());
    let x = node(&mut other, "node-x", fast_options());
    refused(&x, &a).await;
    refused(&a, &x).await;
    // A node with a certificate from the other CA but trusting ours: its client
    // certificate is refused by a.
    let leaf = other.leaf("node-y");
    let y_tls = NodeTls::from_ca(leaf.chain, leaf.key, &[ca.der()], vec![ca.crl()], false).unwrap();
    let y = Node::bind("node-y", loopback(), &y_tls, fast_options()).unwrap();
    refused(&y, &a).await;
}

#[tokio::test]
async fn an_expired_certificate_is_refused_both_ways() {
    let mut ca = Ca::new("cluster CA");
    let a = node(&mut ca, "node-a", fast_options());
    let old = ca.leaf_valid(
        "node-old",
        time::Duration::days(-40),
        time::Duration::days(-10),
    );
    let old_tls = ca.tls_for(old);
    let o = Node::bind("node-old", loopback(), &old_tls, fast_options()).unwrap();
    refused(&o, &a).await;
    refused(&a, &o).await;
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_both_ways() {
    let mut ca = Ca::new("cluster CA");
    let bad = ca.leaf("node-bad");
    ca.revoke(&bad);
    // Every node's verifiers carry the CRL that lists node-bad.
    let a = node(&mut ca, "node-a", fast_options());
    let bad_tls = ca.tls_for(bad);
    let b = Node::bind("node-bad", loopback(), &bad_tls, fast_options()).unwrap();
    refused(&b, &a).await;
    refused(&a, &b).await;
    // A good node still connects.
    let c = node(&mut ca, "node-c", fast_options());
    a.dial("node-c", addr(&c)).await.unwrap();
}

#[tokio::test]
async fn a_stale_crl_is_accepted_unless_strict() {
    let mut ca = Ca::new("cluster CA");
    let stale = ca.crl_at(time::Duration::days(-3), time::Duration::days(1));
    let with_crl = |ca: &mut Ca, name: &str, strict: bool| {
        let leaf = ca.leaf(name);
        let tls = NodeTls::from_ca(
            leaf.chain,
            leaf.key,
            &[ca.der()],
            vec![stale.clone()],
            strict,
        )
        .unwrap();
        Node::bind(name, loopback(), &tls, fast_options()).unwrap()
    };
    let lenient = with_crl(&mut ca, "node-l", false);
    let strict = with_crl(&mut ca, "node-s", true);
    let peer = node(&mut ca, "node-p", fast_options());
    lenient
        .dial("node-p", addr(&peer))
        .await
        .expect("a stale CRL is still used by default");
    refused(&strict, &peer).await;
}

#[tokio::test]
async fn set_tls_swaps_the_certificate_for_new_links() {
    let mut ca = Ca::new("cluster CA");
    let a = node(&mut ca, "node-a", fast_options());
    let first = ca.leaf("node-b");
    let first_serial = first.serial.clone();
    let b = Node::bind("node-b", loopback(), &ca.tls_for(first), fast_options()).unwrap();
    let link = a.dial("node-b", addr(&b)).await.unwrap();
    assert_eq!(strip(&link.peer().serial), strip(&first_serial));
    let renewed = ca.leaf("node-b");
    let renewed_serial = renewed.serial.clone();
    b.set_tls(&ca.tls_for(renewed)).unwrap();
    link.close(transport::CloseCode::Done, "reconnect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let again = a.dial("node-b", addr(&b)).await.unwrap();
    assert_eq!(
        strip(&again.peer().serial),
        strip(&renewed_serial),
        "new handshakes present the new certificate"
    );
}

fn strip(serial: &[u8]) -> Vec<u8> {
    serial.iter().copied().skip_while(|&b| b == 0).collect()
}

const OTHER_ALPN: &[u8] = b"netmsg-test/1";

fn serving(ca: &mut Ca, name: &str) -> Node {
    let leaf = ca.leaf(name);
    let tls = NodeTls::from_ca_serving(
        leaf.chain,
        leaf.key,
        &[ca.der()],
        vec![ca.crl()],
        false,
        vec![OTHER_ALPN.to_vec()],
    )
    .unwrap();
    Node::bind(name, loopback(), &tls, fast_options()).unwrap()
}

/// A bare QUIC client trusting `ca`, with no client certificate.
async fn anonymous(
    ca: &Ca,
    to: &Node,
    alpn: &[u8],
) -> Result<(quinn::Endpoint, quinn::Connection), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(config).unwrap();
    let mut endpoint = quinn::Endpoint::client(loopback()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(quic)));
    let conn = endpoint
        .connect(addr(to), to.name())
        .unwrap()
        .await
        .map_err(|e| e.to_string())?;
    Ok((endpoint, conn))
}

#[tokio::test]
async fn other_alpns_reach_their_handler_without_a_client_certificate() {
    let mut ca = Ca::new("cluster CA");
    let a = serving(&mut ca, "node-a");
    let mut handler = a.serve_alpn(OTHER_ALPN, 4);
    let (_ep1, conn) = anonymous(&ca, &a, OTHER_ALPN).await.unwrap();
    let served = tokio::time::timeout(Duration::from_secs(2), handler.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(served.peer_identity().is_none(), "no client certificate");
    drop(conn);
    // The cluster protocol without a certificate is refused at once.
    let (_ep2, conn) = anonymous(&ca, &a, transport::ALPN).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(2), conn.closed())
        .await
        .unwrap();
    let quinn::ConnectionError::ApplicationClosed(close) = &e else {
        panic!("{e}")
    };
    assert_eq!(
        close.error_code.into_inner(),
        u64::from(transport::CloseCode::BadIdentity.code())
    );
    assert!(a.links().is_empty());
    // Certified nodes still link.
    let b = node(&mut ca, "node-b", fast_options());
    b.dial("node-a", addr(&a)).await.unwrap();
}

#[tokio::test]
async fn a_link_ends_when_the_peer_certificate_expires() {
    let mut ca = Ca::new("cluster CA");
    let a = node(&mut ca, "node-a", fast_options());
    let short = ca.leaf_valid(
        "node-short",
        time::Duration::minutes(-5),
        time::Duration::seconds(2),
    );
    let s = Node::bind("node-short", loopback(), &ca.tls_for(short), fast_options()).unwrap();
    let link = a.dial("node-short", addr(&s)).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), link.closed())
        .await
        .expect("closed at expiry");
    assert_eq!(closed.code, Some(transport::CloseCode::Revoked));
    assert!(closed.reason.contains("expired"), "{closed}");
}

#[tokio::test]
async fn close_links_where_sweeps_condemned_peers() {
    let mut ca = Ca::new("cluster CA");
    let a = node(&mut ca, "node-a", fast_options());
    let b = node(&mut ca, "node-b", fast_options());
    let c = node(&mut ca, "node-c", fast_options());
    let to_b = a.dial("node-b", addr(&b)).await.unwrap();
    let to_c = a.dial("node-c", addr(&c)).await.unwrap();
    let closed = a.close_links_where(transport::CloseCode::Revoked, "revoked", |p| {
        p.node == "node-b"
    });
    assert_eq!(closed, ["node-b"]);
    let why = to_b.closed().await;
    assert_eq!(why.code, Some(transport::CloseCode::Revoked));
    assert!(!to_c.is_closed());
}

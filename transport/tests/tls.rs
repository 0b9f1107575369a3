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

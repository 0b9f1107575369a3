//! Links between nodes on loopback.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{addr, fast_options, node, Ca};
use transport::{CloseCode, CreditPolicy, Error, Link, Node, NodeEvent, TransportOptions};

fn frame(i: u32, len: usize) -> Bytes {
    let mut v = i.to_le_bytes().to_vec();
    v.resize(len.max(4), (i % 251) as u8);
    Bytes::from(v)
}

#[tokio::test]
async fn frames_arrive_in_order_and_fin_ends_the_stream() {
    let mut ca = Ca::new("test CA");
    let a = node(&mut ca, "node-a", fast_options());
    let b = node(&mut ca, "node-b", fast_options());
    let link = a.dial("node-b", addr(&b)).await.unwrap();
    assert_eq!(link.peer().node, "node-b");
    let mut tx = link.open_port(0xdead_beef_0000_0007).await.unwrap();
    let sender = tokio::spawn(async move {
        for i in 0..2000 {
            tx.send(frame(i, 1 + (i as usize * 37) % 3000))
                .await
                .unwrap();
        }
        tx.finish().await.unwrap();
    });
    let NodeEvent::LinkUp(b_link) = b.next_event().await.unwrap() else {
        panic!("expected LinkUp")
    };
    assert_eq!(b_link.peer().node, "node-a");
    let mut rx = b_link.accept_port().await.unwrap();
    assert_eq!(rx.port(), 0xdead_beef_0000_0007);
    for i in 0..2000u32 {
        let f = rx.recv().await.unwrap().unwrap();
        assert_eq!(f, frame(i, 1 + (i as usize * 37) % 3000), "frame {i}");
    }
    assert!(
        rx.recv().await.unwrap().is_none(),
        "FIN after the last frame"
    );
    sender.await.unwrap();
    // The control stream works both ways.
    link.send_control(Bytes::from_static(b"ping"))
        .await
        .unwrap();
    assert_eq!(b_link.recv_control().await.unwrap().unwrap(), "ping");
    b_link
        .send_control(Bytes::from_static(b"pong"))
        .await
        .unwrap();
    assert_eq!(link.recv_control().await.unwrap().unwrap(), "pong");
}

#[tokio::test]
async fn peer_identity_comes_from_the_certificate() {
    let mut ca = Ca::new("test CA");
    let leaf = ca.leaf("node-b");
    let serial = leaf.serial.clone();
    let b_tls = ca.tls_for(leaf);
    let b = transport::Node::bind("node-b", common::loopback(), &b_tls, fast_options()).unwrap();
    let a = node(&mut ca, "node-a", fast_options());
    let link = a.dial("node-b", addr(&b)).await.unwrap();
    let id = link.peer();
    assert_eq!(id.node, "node-b");
    assert_eq!(
        id.serial
            .iter()
            .skip_while(|&&b| b == 0)
            .collect::<Vec<_>>(),
        serial.iter().skip_while(|&&b| b == 0).collect::<Vec<_>>()
    );
    let days = id
        .not_after
        .duration_since(std::time::SystemTime::now())
        .unwrap()
        .as_secs()
        / 86400;
    assert!((29..=30).contains(&days), "{days}");
    // Dialing an address whose certificate names another node fails.
    let c = node(&mut ca, "node-c", fast_options());
    let err = a.dial("node-x", addr(&c)).await.unwrap_err();
    assert!(
        matches!(err, Error::Connection(_) | Error::Identity(_)),
        "{err}"
    );
}

/// Nodes A and B with stream windows of `window` bytes, and links both
/// ways (the nodes must outlive the links).
async fn linked_with_window(window: u32) -> (Node, Node, Link, Link) {
    let mut ca = Ca::new("test CA");
    let opts = TransportOptions {
        stream_receive_window: window,
        ..fast_options()
    };
    let a = node(&mut ca, "node-a", opts.clone());
    let b = node(&mut ca, "node-b", opts);
    let link = a.dial("node-b", addr(&b)).await.unwrap();
    let b_link = b.dial("node-a", addr(&a)).await.unwrap();
    (a, b, link, b_link)
}

#[tokio::test]
async fn a_stalled_stream_does_not_block_others() {
    let (_a, _b, link, b_link) = linked_with_window(64 * 1024).await;
    let mut stalled = link.open_port(1).await.unwrap();
    let mut flowing = link.open_port(2).await.unwrap();
    // Fill port 1's window: nobody reads it, so its sender blocks.
    let blocked = tokio::spawn(async move {
        for i in 0..1000 {
            stalled.send(frame(i, 4096)).await.unwrap();
        }
        stalled
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !blocked.is_finished(),
        "flow control stops the unread stream's sender"
    );
    for i in 0..200 {
        flowing.send(frame(i, 100)).await.unwrap();
    }
    flowing.finish().await.unwrap();
    let mut rx1 = b_link.accept_port().await.unwrap();
    let mut rx2 = b_link.accept_port().await.unwrap();
    if rx1.port() == 2 {
        std::mem::swap(&mut rx1, &mut rx2);
    }
    for i in 0..200 {
        assert_eq!(rx2.recv().await.unwrap().unwrap(), frame(i, 100));
    }
    assert!(rx2.recv().await.unwrap().is_none());
    // Reading port 1 releases its sender.
    for i in 0..1000 {
        assert_eq!(rx1.recv().await.unwrap().unwrap(), frame(i, 4096));
    }
    blocked.await.unwrap();
}

#[tokio::test]
async fn try_send_takes_what_the_window_allows_and_the_rest_follows_in_order() {
    let (_a, _b, link, b_link) = linked_with_window(16 * 1024).await;
    let mut tx = link.open_port(5).await.unwrap();
    // Nobody reads yet: frames go whole until the window runs out; the
    // frame that meets its end goes in part, or not at all.
    let mut sent = 0u32;
    let rest = loop {
        match tx.try_send(frame(sent, 3000)).unwrap() {
            transport::TrySend::Sent => sent += 1,
            transport::TrySend::Rest(rest) => break rest,
        }
        assert!(
            sent < 100,
            "a 16 KiB window takes fewer than 100 frames of 3 KB"
        );
    };
    assert!(sent >= 2, "the window took {sent} whole frames");
    assert!(
        !rest.is_empty() && rest.len() <= 3004,
        "the rest is part of one framed frame: {} bytes",
        rest.len()
    );
    let reader = tokio::spawn(async move {
        let mut rx = b_link.accept_port().await.unwrap();
        let mut got = Vec::new();
        while let Some(f) = rx.recv().await.unwrap() {
            got.push(f);
        }
        got
    });
    // The rest first, then more frames; the reader frees the window.
    tx.send_rest(rest).await.unwrap();
    for i in sent + 1..sent + 40 {
        tx.send(frame(i, 3000)).await.unwrap();
    }
    tx.finish().await.unwrap();
    let got = reader.await.unwrap();
    assert_eq!(got.len(), (sent + 40) as usize);
    for (i, f) in got.iter().enumerate() {
        assert_eq!(*f, frame(i as u32, 3000), "frame {i}");
    }
}

#[tokio::test]
async fn the_rest_of_a_frame_goes_only_to_the_sender_that_began_it() {
    let (_a, _b, link, _b_link) = linked_with_window(16 * 1024).await;
    let mut tx7 = link.open_port(7).await.unwrap();
    let mut tx8 = link.open_port(8).await.unwrap();
    let rest = loop {
        if let transport::TrySend::Rest(rest) = tx7.try_send(frame(0, 3000)).unwrap() {
            break rest;
        }
    };
    let err = tx8.send_rest(rest).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::RestOfAnotherSender {
                rest_of: 7,
                sender: 8
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn crossed_dials_end_with_one_link() {
    let mut crossings = 0;
    for round in 0..10 {
        let mut ca = Ca::new("test CA");
        let a = node(&mut ca, "node-a", fast_options());
        let b = node(&mut ca, "node-b", fast_options());
        let (ab, ba) = tokio::join!(a.dial("node-b", addr(&b)), b.dial("node-a", addr(&a)));
        let (ab, ba) = (ab.unwrap(), ba.unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !ab.is_closed() && !ba.is_closed(),
            "round {round}: both keep a live link"
        );
        assert_eq!(a.links().len(), 1, "round {round}");
        assert_eq!(b.links().len(), 1, "round {round}");
        // The losing connection was closed; quinn forgets it once it has drained.
        let drained = async {
            while a.open_connections() > 1 || b.open_connections() > 1 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(3), drained)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "round {round}: {} and {} connections remain",
                    a.open_connections(),
                    b.open_connections()
                )
            });
        // It is the same connection: a stream opened on one side arrives on the other.
        let mut tx = ab.open_port(round).await.unwrap();
        tx.send(Bytes::from_static(b"hi")).await.unwrap();
        let mut rx = ba.accept_port().await.unwrap();
        assert_eq!(rx.port(), round);
        assert_eq!(rx.recv().await.unwrap().unwrap(), "hi");
        // Only node-a (the smaller name) refuses the connection node-b dialed.
        assert_eq!(b.duplicates_refused(), 0);
        crossings += a.duplicates_refused();
    }
    assert!(
        crossings > 0,
        "the dials never crossed; the test proves nothing"
    );
}

#[tokio::test]
async fn oversized_frame_closes_only_that_link() {
    let mut ca = Ca::new("test CA");
    let small = TransportOptions {
        max_frame: 1024,
        ..fast_options()
    };
    let a = node(&mut ca, "node-a", small);
    let b = node(&mut ca, "node-b", fast_options());
    let c = node(&mut ca, "node-c", fast_options());
    let from_b = b.dial("node-a", addr(&a)).await.unwrap();
    let from_c = c.dial("node-a", addr(&a)).await.unwrap();
    let mut tx = from_b.open_port(5).await.unwrap();
    tx.send(Bytes::from(vec![0u8; 4096])).await.unwrap();
    let a_b = a.link("node-b").unwrap();
    let mut rx = a_b.accept_port().await.unwrap();
    let err = rx.recv().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::FrameTooLarge {
                length: 4096,
                max: 1024
            }
        ),
        "{err}"
    );
    let closed = from_b.closed().await;
    assert_eq!(closed.code, Some(CloseCode::ProtocolViolation));
    assert!(closed.by_peer);
    assert!(closed.reason.contains("4096"), "{}", closed.reason);
    // The other link is untouched.
    let mut tx = from_c.open_port(6).await.unwrap();
    tx.send(Bytes::from_static(b"still here")).await.unwrap();
    let mut rx = a.link("node-c").unwrap().accept_port().await.unwrap();
    assert_eq!(rx.recv().await.unwrap().unwrap(), "still here");
}

#[tokio::test]
async fn garbage_stream_header_closes_the_link() {
    let mut ca = Ca::new("test CA");
    let a = node(&mut ca, "node-a", fast_options());
    let b = node(&mut ca, "node-b", fast_options());
    let link = b.dial("node-a", addr(&a)).await.unwrap();
    let mut raw = link.quic_connection().open_uni().await.unwrap();
    raw.write_all(b"\x05\x00\x00\x00garbage").await.unwrap();
    let closed = link.closed().await;
    assert_eq!(closed.code, Some(CloseCode::ProtocolViolation), "{closed}");
    assert!(closed.reason.contains("header"), "{}", closed.reason);
}

#[tokio::test]
async fn a_vanished_peer_is_reported_within_the_idle_timeout() {
    let mut ca = Ca::new("test CA");
    let a = node(&mut ca, "node-a", fast_options());
    let b = node(&mut ca, "node-b", fast_options());
    let relay = transport::relay::Relay::start(addr(&b), 7).await.unwrap();
    let link = a.dial("node-b", relay.addr()).await.unwrap();
    let NodeEvent::LinkUp(_) = a.next_event().await.unwrap() else {
        panic!()
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!link.is_closed(), "keep-alives hold an idle link open");
    relay.set_blackhole(true);
    let start = std::time::Instant::now();
    let event = tokio::time::timeout(Duration::from_secs(5), a.next_event())
        .await
        .unwrap()
        .unwrap();
    let NodeEvent::LinkDown { peer, closed } = event else {
        panic!("expected LinkDown")
    };
    assert_eq!(peer, "node-b");
    assert!(closed.timed_out, "{closed}");
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "reported after {took:?}"
    );
    assert!(a.link("node-b").is_none());
}

#[tokio::test]
async fn a_peer_that_shuts_down_is_reported_at_once() {
    let mut ca = Ca::new("test CA");
    let a = node(&mut ca, "node-a", fast_options());
    let b = node(&mut ca, "node-b", fast_options());
    let link = a.dial("node-b", addr(&b)).await.unwrap();
    b.shutdown();
    let closed = tokio::time::timeout(Duration::from_millis(500), link.closed())
        .await
        .unwrap();
    assert_eq!(closed.code, Some(CloseCode::Shutdown));
    assert!(closed.by_peer);
}

#[tokio::test]
async fn with_the_wait_policy_credit_exhaustion_waits_then_recovers() {
    let mut ca = Ca::new("test CA");
    let tight = TransportOptions {
        max_port_streams: 4,
        ..fast_options()
    };
    let a = node(
        &mut ca,
        "node-a",
        TransportOptions {
            credit_policy: CreditPolicy::Wait,
            ..fast_options()
        },
    );
    let b = node(&mut ca, "node-b", tight);
    let link = a.dial("node-b", addr(&b)).await.unwrap();
    let b_link = b.link("node-a").unwrap();
    // The overflow stream holds one of the 4 credits from the start.
    let mut senders = Vec::new();
    for p in 0..3 {
        let mut s = link.open_port(p).await.unwrap();
        s.send(Bytes::from_static(b"x")).await.unwrap();
        senders.push(s);
    }
    let fourth = {
        let link = link.clone();
        tokio::spawn(async move { link.open_port(3).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!fourth.is_finished(), "the fourth open waits for credit");
    assert_eq!(link.stats().opens_blocked_on_credit, 1);
    // Finishing a stream and reading it to the end returns its credit.
    let first = senders.remove(0);
    first.finish().await.unwrap();
    let mut rx = b_link.accept_port().await.unwrap();
    assert_eq!(rx.port(), 0);
    assert_eq!(rx.recv().await.unwrap().unwrap(), "x");
    assert!(rx.recv().await.unwrap().is_none());
    drop(rx);
    let mut s4 = tokio::time::timeout(Duration::from_secs(2), fourth)
        .await
        .expect("credit came back")
        .unwrap()
        .unwrap();
    assert!(!s4.on_overflow());
    s4.send(Bytes::from_static(b"y")).await.unwrap();
}

#[tokio::test]
async fn with_the_overflow_policy_ports_share_one_stream_when_credit_runs_out() {
    let mut ca = Ca::new("test CA");
    let tight = TransportOptions {
        max_port_streams: 4,
        ..fast_options()
    };
    let a = node(&mut ca, "node-a", fast_options());
    let b = node(&mut ca, "node-b", tight);
    let link = a.dial("node-b", addr(&b)).await.unwrap();
    let b_link = b.link("node-a").unwrap();
    let mut senders = Vec::new();
    for p in 0..10u64 {
        let s = tokio::time::timeout(Duration::from_secs(1), link.open_port(p))
            .await
            .expect("never waits")
            .unwrap();
        assert_eq!(s.on_overflow(), p >= 3, "port {p}");
        senders.push(s);
    }
    let stats = link.stats();
    assert_eq!(
        (stats.opens_blocked_on_credit, stats.ports_on_overflow),
        (7, 7)
    );
    // Interleave frames across all ports; each port's order holds.
    for round in 0..20u32 {
        for s in senders.iter_mut() {
            let port = s.port();
            s.send(Bytes::from(format!("{port}:{round}")))
                .await
                .unwrap();
        }
    }
    for s in senders {
        s.finish().await.unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let mut rx = b_link.accept_port().await.unwrap();
        let port = rx.port();
        for round in 0..20u32 {
            assert_eq!(rx.recv().await.unwrap().unwrap(), format!("{port}:{round}"));
        }
        assert!(
            rx.recv().await.unwrap().is_none(),
            "port {port} ends with its FIN"
        );
        seen.insert(port);
    }
    assert_eq!(seen, (0..10).collect());
}

#[tokio::test]
async fn a_stalled_overflow_port_holds_up_only_the_overflow_stream() {
    let mut ca = Ca::new("test CA");
    let tight = TransportOptions {
        max_port_streams: 2,
        stream_receive_window: 16 * 1024,
        ..fast_options()
    };
    let a = node(&mut ca, "node-a", fast_options());
    let b = node(&mut ca, "node-b", tight);
    let link = a.dial("node-b", addr(&b)).await.unwrap();
    let b_link = b.link("node-a").unwrap();
    let mut dedicated = link.open_port(1).await.unwrap();
    let mut cold = link.open_port(2).await.unwrap();
    let mut other_cold = link.open_port(3).await.unwrap();
    assert!(!dedicated.on_overflow() && cold.on_overflow() && other_cold.on_overflow());
    // Nobody reads port 2: its frames fill its buffer, then the overflow stream.
    let stalled = tokio::spawn(async move {
        for i in 0..200 {
            cold.send(frame(i, 1024)).await.unwrap();
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !stalled.is_finished(),
        "the overflow stream is flow-controlled"
    );
    // A dedicated port still flows (within its own 16 KiB window).
    for i in 0..50 {
        dedicated.send(frame(i, 100)).await.unwrap();
    }
    let mut rx1 = b_link.accept_port().await.unwrap();
    let mut rx2 = b_link.accept_port().await.unwrap();
    if rx1.port() != 1 {
        std::mem::swap(&mut rx1, &mut rx2);
    }
    for i in 0..50 {
        assert_eq!(rx1.recv().await.unwrap().unwrap(), frame(i, 100));
    }
    // Draining port 2 lets the overflow stream, and port 3, move again.
    let sender3 = tokio::spawn(async move { other_cold.send(Bytes::from_static(b"late")).await });
    for i in 0..200 {
        assert_eq!(rx2.recv().await.unwrap().unwrap(), frame(i, 1024));
    }
    stalled.await.unwrap();
    sender3.await.unwrap().unwrap();
    let mut rx3 = b_link.accept_port().await.unwrap();
    assert_eq!(
        (rx3.port(), rx3.recv().await.unwrap().unwrap()),
        (3, Bytes::from_static(b"late"))
    );
}

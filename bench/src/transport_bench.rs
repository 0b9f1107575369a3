//! `transport`: netmsg's transport against plain quinn with the same TLS and
//! transport configuration, on loopback, in one run:
//! (a) 64-byte ping-pong on one stream (latency p50/p99),
//! (b) bulk throughput on one stream,
//! (c) 64-byte request/response across many concurrent port streams.
//!
//! netmsg sends each direction on its own port stream (unidirectional, framed);
//! plain quinn uses one bidirectional stream per pair with fixed-size reads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use transport::{Node, NodeTls, TransportOptions};

use crate::{stats, Stats};

const SMALL: usize = 64;
const CHUNK: usize = 64 * 1024;

pub(crate) struct Certs {
    pub(crate) a: NodeTls,
    pub(crate) b: NodeTls,
}

pub(crate) fn certs() -> Certs {
    let mut tls = transport::test_support::throwaway_cluster(&["bench-a", "bench-b"]);
    let b = tls.pop().expect("two nodes");
    let a = tls.pop().expect("two nodes");
    Certs { a, b }
}

fn options(streams: usize) -> TransportOptions {
    TransportOptions {
        max_port_streams: (streams as u32 * 2).max(4096),
        idle_timeout: Duration::from_secs(30),
        ..TransportOptions::default()
    }
}

pub(crate) fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

struct Results {
    latency: Stats,
    bulk_mib_s: f64,
    many_per_sec: f64,
}

async fn netmsg(certs: &Certs, rounds: usize, bulk: usize, streams: usize) -> Results {
    let opts = options(streams);
    let a = Node::bind("bench-a", loopback(), &certs.a, opts.clone()).unwrap();
    let b = Node::bind("bench-b", loopback(), &certs.b, opts).unwrap();
    let link = a.dial("bench-b", b.local_addr().unwrap()).await.unwrap();
    let b_link = loop {
        if let Some(l) = b.link("bench-a") {
            break l;
        }
        tokio::task::yield_now().await;
    };
    // Echo server: for each accepted port stream, open the reverse one and echo.
    let echo_link = b_link.clone();
    tokio::spawn(async move {
        while let Ok(mut rx) = echo_link.accept_port().await {
            let link = echo_link.clone();
            tokio::spawn(async move {
                if rx.port() == u64::MAX {
                    // Bulk sink: read to the end and answer once.
                    let mut n = 0usize;
                    while let Ok(Some(f)) = rx.recv().await {
                        n += f.len();
                    }
                    let mut tx = link.open_port(u64::MAX).await.unwrap();
                    tx.send(Bytes::from(n.to_le_bytes().to_vec()))
                        .await
                        .unwrap();
                    return;
                }
                let mut tx = link.open_port(rx.port()).await.unwrap();
                while let Ok(Some(f)) = rx.recv().await {
                    if tx.send(f).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let replies = Arc::new(tokio::sync::Mutex::new(std::collections::HashMap::new()));
    let collector = {
        let (link, replies) = (link.clone(), replies.clone());
        tokio::spawn(async move {
            while let Ok(rx) = link.accept_port().await {
                let waiter: Option<tokio::sync::oneshot::Sender<transport::PortReceiver>> =
                    replies.lock().await.remove(&rx.port());
                if let Some(w) = waiter {
                    let _ = w.send(rx);
                }
            }
        })
    };
    let open_pair = |port: u64| {
        let (link, replies) = (link.clone(), replies.clone());
        async move {
            let (tx_wait, rx_wait) = tokio::sync::oneshot::channel();
            replies.lock().await.insert(port, tx_wait);
            let mut tx = link.open_port(port).await.unwrap();
            tx.send(Bytes::from(vec![0u8; SMALL])).await.unwrap();
            let mut rx = rx_wait.await.unwrap();
            rx.recv().await.unwrap().unwrap();
            (tx, rx)
        }
    };
    // (a) ping-pong latency on one port.
    let (mut tx, mut rx) = open_pair(1).await;
    let payload = Bytes::from(vec![7u8; SMALL]);
    let mut samples = Vec::with_capacity(rounds);
    let start = Instant::now();
    for _ in 0..rounds {
        let t = Instant::now();
        tx.send(payload.clone()).await.unwrap();
        let got = rx.recv().await.unwrap().unwrap();
        debug_assert_eq!(got.len(), SMALL);
        samples.push(t.elapsed());
    }
    let latency = stats("netmsg transport, 1 port stream", samples, start.elapsed());
    // (b) bulk on one port.
    let (tx_wait, rx_wait) = tokio::sync::oneshot::channel();
    replies.lock().await.insert(u64::MAX, tx_wait);
    let chunk = Bytes::from(vec![1u8; CHUNK]);
    let total = bulk << 20;
    let start = Instant::now();
    let mut sink = link.open_port(u64::MAX).await.unwrap();
    for _ in 0..total / CHUNK {
        sink.send(chunk.clone()).await.unwrap();
    }
    sink.finish().await.unwrap();
    let mut done = rx_wait.await.unwrap();
    let n = done.recv().await.unwrap().unwrap();
    assert_eq!(usize::from_le_bytes(n[..8].try_into().unwrap()), total);
    let bulk_mib_s = bulk as f64 / start.elapsed().as_secs_f64();
    // (c) many concurrent port streams.
    let per_stream = 200;
    let mut pairs = Vec::with_capacity(streams);
    for p in 0..streams {
        pairs.push(open_pair(1000 + p as u64).await);
    }
    let start = Instant::now();
    let tasks: Vec<_> = pairs
        .into_iter()
        .map(|(mut tx, mut rx)| {
            let payload = payload.clone();
            tokio::spawn(async move {
                for _ in 0..per_stream {
                    tx.send(payload.clone()).await.unwrap();
                    rx.recv().await.unwrap().unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let many_per_sec = (streams * per_stream) as f64 / start.elapsed().as_secs_f64();
    collector.abort();
    a.shutdown();
    b.shutdown();
    Results {
        latency,
        bulk_mib_s,
        many_per_sec,
    }
}

async fn raw_quinn(certs: &Certs, rounds: usize, bulk: usize, streams: usize) -> Results {
    let opts = options(streams);
    let mut transport = opts.transport_config().unwrap();
    // Plain quinn needs bidirectional streams where netmsg uses two unidirectional.
    transport.max_concurrent_bidi_streams(quinn::VarInt::from_u32(opts.max_port_streams));
    let transport = Arc::new(transport);
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(certs.b.server_config().unwrap()));
    server.transport_config(transport.clone());
    let mut client = quinn::ClientConfig::new(Arc::new(certs.a.client_config().unwrap()));
    client.transport_config(transport);
    let server_ep = quinn::Endpoint::server(server, loopback()).unwrap();
    let client_ep = quinn::Endpoint::client(loopback()).unwrap();
    let server_addr = server_ep.local_addr().unwrap();
    tokio::spawn(async move {
        let conn = server_ep.accept().await.unwrap().await.unwrap();
        let uni = conn.clone();
        tokio::spawn(async move {
            while let Ok(mut rx) = uni.accept_uni().await {
                let conn = uni.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; CHUNK];
                    let mut n = 0usize;
                    while let Some(k) = rx.read(&mut buf).await.unwrap() {
                        n += k;
                    }
                    let mut tx = conn.open_uni().await.unwrap();
                    tx.write_all(&n.to_le_bytes()).await.unwrap();
                    tx.finish().unwrap();
                });
            }
        });
        while let Ok((mut tx, mut rx)) = conn.accept_bi().await {
            tokio::spawn(async move {
                let mut buf = [0u8; SMALL];
                while rx.read_exact(&mut buf).await.is_ok() {
                    if tx.write_all(&buf).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let conn = client_ep
        .connect_with(client, server_addr, "bench-b")
        .unwrap()
        .await
        .unwrap();
    let payload = [7u8; SMALL];
    let mut buf = [0u8; SMALL];
    // (a)
    let (mut tx, mut rx) = conn.open_bi().await.unwrap();
    let mut samples = Vec::with_capacity(rounds);
    let start = Instant::now();
    for _ in 0..rounds {
        let t = Instant::now();
        tx.write_all(&payload).await.unwrap();
        rx.read_exact(&mut buf).await.unwrap();
        samples.push(t.elapsed());
    }
    let latency = stats(
        "plain quinn, 1 bidirectional stream",
        samples,
        start.elapsed(),
    );
    // (b)
    let chunk = vec![1u8; CHUNK];
    let total = bulk << 20;
    let start = Instant::now();
    let mut sink = conn.open_uni().await.unwrap();
    for _ in 0..total / CHUNK {
        sink.write_all(&chunk).await.unwrap();
    }
    sink.finish().unwrap();
    let mut done = conn.accept_uni().await.unwrap();
    let n = done.read_to_end(16).await.unwrap();
    assert_eq!(usize::from_le_bytes(n[..8].try_into().unwrap()), total);
    let bulk_mib_s = bulk as f64 / start.elapsed().as_secs_f64();
    // (c)
    let per_stream = 200;
    let mut pairs = Vec::with_capacity(streams);
    for _ in 0..streams {
        let (mut tx, mut rx) = conn.open_bi().await.unwrap();
        tx.write_all(&payload).await.unwrap();
        rx.read_exact(&mut buf).await.unwrap();
        pairs.push((tx, rx));
    }
    let start = Instant::now();
    let tasks: Vec<_> = pairs
        .into_iter()
        .map(|(mut tx, mut rx)| {
            tokio::spawn(async move {
                let mut buf = [0u8; SMALL];
                for _ in 0..per_stream {
                    tx.write_all(&payload).await.unwrap();
                    rx.read_exact(&mut buf).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let many_per_sec = (streams * per_stream) as f64 / start.elapsed().as_secs_f64();
    conn.close(0u32.into(), b"done");
    Results {
        latency,
        bulk_mib_s,
        many_per_sec,
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(crate) fn run(rounds: usize, bulk_mib: usize, streams: usize) {
    const TRIALS: usize = 5;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let certs = certs();
    rt.block_on(raw_quinn(&certs, rounds / 10, 16, 10));
    rt.block_on(netmsg(&certs, rounds / 10, 16, 10));
    let (mut q, mut n) = (Vec::new(), Vec::new());
    for _ in 0..TRIALS {
        q.push(rt.block_on(raw_quinn(&certs, rounds, bulk_mib, streams)));
        n.push(rt.block_on(netmsg(&certs, rounds, bulk_mib, streams)));
    }
    let med = |v: &[Results], f: fn(&Results) -> f64| median(v.iter().map(f).collect());
    let row = |name: &str, v: &[Results]| {
        (
            name.to_string(),
            med(v, |r| us(r.latency.p50)),
            med(v, |r| us(r.latency.p99)),
            med(v, |r| r.latency.per_sec),
            med(v, |r| r.bulk_mib_s),
            med(v, |r| r.many_per_sec),
        )
    };
    let (qr, nr) = (
        row("plain quinn (same TLS and transport config)", &q),
        row("netmsg transport", &n),
    );
    println!("transport on loopback, tokio 2 workers, medians of {TRIALS} alternating trials:");
    println!("  (a) {rounds} ping-pongs of {SMALL} B on one stream; (b) {bulk_mib} MiB on one stream; (c) {streams} streams x 200 requests of {SMALL} B");
    println!(
        "{:<46} {:>9} {:>9} {:>10} {:>10} {:>12}",
        "subject", "p50 us", "p99 us", "rt/s", "MiB/s", "(c) req/s"
    );
    for r in [&qr, &nr] {
        println!(
            "{:<46} {:>9.1} {:>9.1} {:>10.0} {:>10.0} {:>12.0}",
            r.0, r.1, r.2, r.3, r.4, r.5
        );
    }
    println!(
        "{:<46} {:>8.2}x {:>8.2}x {:>9.2}x {:>9.2}x {:>11.2}x",
        "ratio netmsg / quinn",
        nr.1 / qr.1,
        nr.2 / qr.2,
        nr.3 / qr.3,
        nr.4 / qr.4,
        nr.5 / qr.5
    );
}

//! Mach RPC through two netmsg nodes on loopback QUIC, side by side with a
//! raw transport ping-pong over the same links (and one whose pongs each take
//! a new stream, as replies did before they shared the link's one-shot
//! stream): null RPC latency with the nodes on one runtime (the client in
//! `block_on` or in a worker's task), with each node on a thread of its own,
//! as on two machines, and with each node on a multi-thread runtime of its
//! own, as in a process of its own (on the daemon's workers, and on two);
//! RPCs per second spread over many ports; memory for many live imports;
//! one-way bulk throughput against the transport's on one stream.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mach::runtime::Host;
use mach::types::msg_type;
use mach::{Abi, Item, Kernel, Message, Name, PortRight, RecvOptions, TaskId, NAME_NULL};
use netmsg::driver::{Netmsg, Root, NODE_WORKERS};
use transport::{Node, TransportOptions};

use crate::transport_bench::{certs, loopback, Certs};
use crate::{print_latency, stats};

const GET_PORT: i32 = 3000;
const NULL_RPC: i32 = 3001;
const BULK: i32 = 3002;
/// The ping-pong's frame; the echo answers no larger one.
const PING_BYTES: usize = 64;

struct Pair {
    host_b: Host,
    client: TaskId,
    root: Name,
    /// Nodes on this runtime, shut down by [`Pair::shutdown`].
    nodes: Vec<Node>,
    _remote: Option<Remote>,
}

impl Pair {
    /// A receive right of the client's for replies.
    fn reply_port(&self) -> Name {
        self.host_b
            .with(|k| k.port_allocate(self.client, PortRight::Receive).unwrap())
    }

    async fn null_call(&self, reply: Name) {
        call(&self.host_b, self.client, self.root, reply, NULL_RPC).await;
    }

    fn shutdown(&self) {
        for node in &self.nodes {
            node.shutdown();
        }
    }
}

fn options() -> TransportOptions {
    TransportOptions {
        max_port_streams: 40_000,
        idle_timeout: Duration::from_secs(30),
        ..TransportOptions::default()
    }
}

/// Where the other node runs.
#[derive(Clone, Copy, Debug)]
enum Placement {
    /// On the bench's runtime, beside the first.
    Shared,
    /// On a thread and current-thread runtime of its own.
    Thread,
    /// On a runtime of this many workers of its own, as a node in a
    /// process of its own runs.
    Workers(usize),
}

/// A multi-thread runtime of `n` workers.
fn workers_runtime(n: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(n)
        .enable_all()
        .build()
        .unwrap()
}

/// A node on a runtime of its own, as on a machine of its own: its packets
/// reach the bench's runtime through the kernel's loopback only. Dropped, it
/// shuts down.
struct Remote {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Remote {
    /// Runs `setup` there; the node it makes lives until the drop, the value
    /// it returns comes back.
    fn start<T, F, Fut>(workers: Option<usize>, setup: F) -> (Remote, T)
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = (Node, T)>,
    {
        let (value_tx, value_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = match workers {
                Some(n) => workers_runtime(n),
                None => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap(),
            };
            rt.block_on(async move {
                let (node, value) = setup().await;
                let _ = value_tx.send(value);
                let _ = stopped.await;
                node.shutdown();
            });
        });
        // (Blocks the caller's thread while the node starts: the node's
        // thread needs nothing from it.)
        let value = value_rx.recv().expect("the remote node started");
        let remote = Remote {
            stop: Some(stop),
            thread: Some(thread),
        };
        (remote, value)
    }

    /// Starts the node `setup` makes where `placement` says, and gives its
    /// address.
    async fn start_node<F, Fut>(
        placement: Placement,
        setup: F,
    ) -> (Option<Remote>, Option<Node>, SocketAddr)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Node>,
    {
        let workers = match placement {
            Placement::Shared => {
                let node = setup().await;
                let addr = node.local_addr().unwrap();
                return (None, Some(node), addr);
            }
            Placement::Thread => None,
            Placement::Workers(n) => Some(n),
        };
        let (remote, addr) = Remote::start(workers, move || async move {
            let node = setup().await;
            let addr = node.local_addr().unwrap();
            (node, addr)
        });
        (Some(remote), None, addr)
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Node A: `GET_PORT` answers with a send right to a new port it serves
/// too; anything else gets an empty reply.
async fn serving_node(certs: &Certs) -> Node {
    let node_a = Node::bind("bench-a", loopback(), &certs.a, options()).unwrap();
    let host_a = Host::new(Kernel::new(Abi::X86_64));
    let (server, root, set) = host_a.with(|k| {
        let t = k.create_task();
        let root = k.port_allocate(t, PortRight::Receive).unwrap();
        let set = k.port_allocate(t, PortRight::PortSet).unwrap();
        k.port_move_member(t, root, set).unwrap();
        (t, root, set)
    });
    Netmsg::start(
        host_a.clone(),
        node_a.clone(),
        Some(Root {
            task: server,
            name: root,
        }),
    )
    .unwrap();
    tokio::spawn(async move {
        while let Ok(m) = host_a
            .receive(server, set, RecvOptions::default(), None)
            .await
        {
            if m.remote_port == NAME_NULL {
                continue; // one-way (the bulk transfer's)
            }
            let body = if m.id == GET_PORT {
                let p = host_a.with(|k| {
                    let p = k.port_allocate(server, PortRight::Receive).unwrap();
                    k.port_move_member(server, p, set).unwrap();
                    p
                });
                vec![Item::port(msg_type::MAKE_SEND, p)]
            } else {
                Vec::new()
            };
            let reply = Message::simple(m.remote_port, msg_type::MOVE_SEND_ONCE, m.id + 100, body);
            let _ = host_a.send(server, reply, None).await;
        }
    });
    node_a
}

/// Node A serving (placed by `placement`), and a client task on node B (on
/// this runtime) holding a send right to A's root.
async fn netmsg_pair(certs: &Arc<Certs>, placement: Placement) -> Pair {
    let for_a = certs.clone();
    let (remote, node_a, addr) =
        Remote::start_node(placement, move || async move { serving_node(&for_a).await }).await;
    let node_b = Node::bind("bench-b", loopback(), &certs.b, options()).unwrap();
    let host_b = Host::new(Kernel::new(Abi::X86_64));
    let net_b = Netmsg::start(host_b.clone(), node_b.clone(), None).unwrap();
    node_b.dial("bench-a", addr).await.unwrap();
    let client = host_b.with(|k| k.create_task());
    let root = loop {
        match net_b.root("bench-a", client).await {
            Ok(n) => break n,
            Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    };
    Pair {
        host_b,
        client,
        root,
        nodes: node_a.into_iter().chain([node_b]).collect(),
        _remote: remote,
    }
}

async fn call(host: &Host, task: TaskId, dest: Name, reply: Name, id: i32) -> Message {
    let m = Message::new(
        dest,
        msg_type::COPY_SEND,
        reply,
        msg_type::MAKE_SEND_ONCE,
        id,
        Vec::new(),
    );
    host.call(task, m, reply).await.unwrap()
}

/// Node "bench-b", answering the first link from "bench-a": each frame of
/// the first port stream back on one stream, or (`fresh`) each on a new
/// stream FINed after it, as a reply through a send-once right travels.
async fn echo_node(certs: &Certs, fresh: bool) -> Node {
    let b = Node::bind("bench-b", loopback(), &certs.b, options()).unwrap();
    let node = b.clone();
    tokio::spawn(async move {
        let link = loop {
            if let Some(l) = node.link("bench-a") {
                break l;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let Ok(mut rx) = link.accept_port().await else {
            return;
        };
        if fresh {
            let mut id = 1u64 << 63;
            while let Ok(Some(f)) = rx.recv().await {
                id += 1;
                let Ok(mut tx) = link.open_port(id).await else {
                    return;
                };
                let _ = tx.send(f).await;
                let _ = tx.finish().await;
            }
        } else {
            let Ok(mut tx) = link.open_port(1).await else {
                return;
            };
            while let Ok(Some(f)) = rx.recv().await {
                // (A bulk transfer's frames are taken, not echoed.)
                if f.len() <= PING_BYTES && tx.send(f).await.is_err() {
                    return;
                }
            }
        }
    });
    b
}

/// A link from node "bench-a" (on this runtime) to an echoing "bench-b"
/// (placed by `placement`).
async fn echo_link(
    certs: &Arc<Certs>,
    fresh: bool,
    placement: Placement,
) -> (Option<Remote>, Vec<Node>, transport::Link) {
    let for_b = certs.clone();
    let (remote, node_b, addr) =
        Remote::start_node(
            placement,
            move || async move { echo_node(&for_b, fresh).await },
        )
        .await;
    let a = Node::bind("bench-a", loopback(), &certs.a, options()).unwrap();
    let link = a.dial("bench-b", addr).await.unwrap();
    (remote, node_b.into_iter().chain([a]).collect(), link)
}

/// Raw transport ping-pong of a 64-byte frame on one port stream each way.
async fn transport_ping_pong(
    certs: &Arc<Certs>,
    rounds: usize,
    placement: Placement,
) -> crate::Stats {
    let mut echo = Echo::start(certs, placement).await;
    let mut samples = Vec::with_capacity(rounds);
    let start = Instant::now();
    for _ in 0..rounds {
        let t = Instant::now();
        echo.round().await;
        samples.push(t.elapsed());
    }
    let s = stats(
        "transport ping-pong, 64 B, 1 stream",
        samples,
        start.elapsed(),
    );
    echo.shutdown();
    s
}

/// A ping-pong link to an echoing node, warmed by one round.
struct Echo {
    _remote: Option<Remote>,
    nodes: Vec<Node>,
    tx: transport::PortSender,
    rx: transport::PortReceiver,
    payload: Bytes,
}

impl Echo {
    async fn start(certs: &Arc<Certs>, placement: Placement) -> Echo {
        let (remote, nodes, link) = echo_link(certs, false, placement).await;
        let mut tx = link.open_port(1).await.unwrap();
        let payload = Bytes::from(vec![7u8; PING_BYTES]);
        // (The echo opens its stream back when the first frame comes.)
        tx.send(payload.clone()).await.unwrap();
        let mut rx = link.accept_port().await.unwrap();
        rx.recv().await.unwrap().unwrap();
        Echo {
            _remote: remote,
            nodes,
            tx,
            rx,
            payload,
        }
    }

    /// One 64-byte frame there and back.
    async fn round(&mut self) {
        self.tx.send(self.payload.clone()).await.unwrap();
        self.rx.recv().await.unwrap().unwrap();
    }

    fn shutdown(self) {
        for node in self.nodes {
            node.shutdown();
        }
    }
}

/// The ping-pong with each pong on a new port stream, FINed after it, as a
/// reply through a send-once right travelled before replies shared the
/// link's one-shot stream: what a stream per reply costs.
async fn transport_ping_fresh_pong(
    certs: &Arc<Certs>,
    rounds: usize,
    placement: Placement,
) -> crate::Stats {
    let (_remote, nodes, link) = echo_link(certs, true, placement).await;
    let mut tx = link.open_port(1).await.unwrap();
    let payload = Bytes::from(vec![7u8; 64]);
    let (got_tx, mut got) = tokio::sync::mpsc::unbounded_channel();
    let l2 = link.clone();
    tokio::spawn(async move {
        while let Ok(mut rx) = l2.accept_port().await {
            let got_tx = got_tx.clone();
            tokio::spawn(async move {
                while let Ok(Some(f)) = rx.recv().await {
                    let _ = got_tx.send(f);
                }
            });
        }
    });
    tx.send(payload.clone()).await.unwrap();
    got.recv().await.unwrap();
    let mut samples = Vec::with_capacity(rounds);
    let start = Instant::now();
    for _ in 0..rounds {
        let t = Instant::now();
        tx.send(payload.clone()).await.unwrap();
        got.recv().await.unwrap();
        samples.push(t.elapsed());
    }
    let s = stats(
        "transport ping, each pong on a new stream",
        samples,
        start.elapsed(),
    );
    for node in nodes {
        node.shutdown();
    }
    s
}

async fn null_rpc(certs: &Arc<Certs>, rounds: usize, placement: Placement) -> crate::Stats {
    let pair = netmsg_pair(certs, placement).await;
    let reply = pair.reply_port();
    for _ in 0..100 {
        pair.null_call(reply).await;
    }
    let mut samples = Vec::with_capacity(rounds);
    let start = Instant::now();
    for _ in 0..rounds {
        let t = Instant::now();
        pair.null_call(reply).await;
        samples.push(t.elapsed());
    }
    let s = stats(
        "netmsg null RPC (B task -> A task -> reply)",
        samples,
        start.elapsed(),
    );
    pair.shutdown();
    s
}

/// The ping-pong and the null RPC in the same run, round by round (which
/// goes first alternates): each round trip of one is measured beside one of
/// the other, so a change in the machine's state between trials (frequency,
/// a neighbour's load) falls on both alike.
async fn interleaved(
    certs: &Arc<Certs>,
    rounds: usize,
    placement: Placement,
) -> (crate::Stats, crate::Stats, (f64, f64, f64)) {
    let mut echo = Echo::start(certs, placement).await;
    let pair = netmsg_pair(certs, placement).await;
    let reply = pair.reply_port();
    for _ in 0..100 {
        pair.null_call(reply).await;
        echo.round().await;
    }
    let (mut pings, mut rpcs) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for round in 0..rounds {
        for ping in [round % 2 == 0, round % 2 == 1] {
            let t = Instant::now();
            if ping {
                echo.round().await;
                pings.push(t.elapsed());
            } else {
                pair.null_call(reply).await;
                rpcs.push(t.elapsed());
            }
        }
    }
    pair.shutdown();
    echo.shutdown();
    // (Each subject's rate counts its own round trips' time only.)
    let own = |samples: &Vec<Duration>| samples.iter().sum::<Duration>();
    let (ping_time, rpc_time) = (own(&pings), own(&rpcs));
    let ratio = crate::p50_ratio_interval(&pings, &rpcs);
    (
        crate::stats("transport ping-pong, 64 B, 1 stream", pings, ping_time),
        crate::stats(
            "netmsg null RPC (B task -> A task -> reply)",
            rpcs,
            rpc_time,
        ),
        ratio,
    )
}

/// The right to a new server port, fetched through the root.
async fn get_port(pair: &Pair, reply: Name) -> Name {
    let m = call(&pair.host_b, pair.client, pair.root, reply, GET_PORT).await;
    m.body[0].names_payload().unwrap()[0]
}

async fn many_ports(certs: &Arc<Certs>, ports: usize, per_port: usize, workers: usize) -> f64 {
    let pair = Arc::new(netmsg_pair(certs, Placement::Shared).await);
    let reply = pair.reply_port();
    let mut names = Vec::with_capacity(ports);
    for _ in 0..ports {
        names.push(get_port(&pair, reply).await);
    }
    let names = Arc::new(names);
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (pair, names) = (pair.clone(), names.clone());
            tokio::spawn(async move {
                let reply = pair.reply_port();
                for _ in 0..per_port {
                    for (i, &dest) in names.iter().enumerate() {
                        if i % workers == w {
                            call(&pair.host_b, pair.client, dest, reply, NULL_RPC).await;
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let rate = (ports * per_port) as f64 / start.elapsed().as_secs_f64();
    pair.shutdown();
    rate
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// [`imports_memory`] in a process of its own (this program, `rpc-imports
/// N`): RSS grows only by what its allocator has not got already, so after
/// other benchmarks freed memory the growth would show nothing.
fn imports_in_a_fresh_process(imports: usize) -> (u64, f64) {
    let exe = std::env::current_exe().expect("this program's path");
    let out = std::process::Command::new(exe)
        .args(["rpc-imports", &imports.to_string()])
        .output()
        .expect("running rpc-imports");
    let text = String::from_utf8_lossy(&out.stdout);
    let parsed = text.split_whitespace().collect::<Vec<_>>();
    match (out.status.success(), parsed.as_slice()) {
        (true, [bytes, per_sec]) => (
            bytes.parse().expect("bytes"),
            per_sec.parse().expect("imports per second"),
        ),
        _ => panic!(
            "rpc-imports failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// `netmsg-bench rpc-imports N`: [`imports_memory`] alone, printed as
/// `bytes imports-per-second`.
pub(crate) fn imports_subject(imports: usize) {
    let rt = workers_runtime(2);
    let certs = Arc::new(certs());
    let (bytes, per_sec) = rt.block_on(imports_memory(&certs, imports));
    println!("{bytes} {per_sec}");
}

async fn imports_memory(certs: &Arc<Certs>, imports: usize) -> (u64, f64) {
    let pair = netmsg_pair(certs, Placement::Shared).await;
    let reply = pair.reply_port();
    // Warm up allocators and the link first.
    for _ in 0..100 {
        pair.null_call(reply).await;
    }
    let before = rss_bytes();
    let start = Instant::now();
    let mut names = Vec::with_capacity(imports);
    for _ in 0..imports {
        names.push(get_port(&pair, reply).await);
    }
    let secs = start.elapsed().as_secs_f64();
    let after = rss_bytes();
    // Each import is a live proxy on B and an export on A.
    assert_eq!(names.len(), imports);
    pair.shutdown();
    (after.saturating_sub(before), imports as f64 / secs)
}

/// Both nodes' translators and kernels through `rounds` null RPCs with no
/// I/O and no tasks (`netmsg::sim::Cluster` hands the frames over): the
/// CPU the RPC costs netmsg, apart from the runtime and the links.
fn translators_alone(rounds: usize) -> Duration {
    let mut c = netmsg::sim::Cluster::new(2, 1);
    let (server, client) = (c.task(0), c.task(1));
    let p = c.port(server);
    let to_p = c.give_send(server, p, client);
    let reply = c
        .k(client)
        .port_allocate(client.task, PortRight::Receive)
        .unwrap();
    let start = Instant::now();
    for _ in 0..rounds {
        let request = Message::new(
            to_p,
            msg_type::COPY_SEND,
            reply,
            msg_type::MAKE_SEND_ONCE,
            NULL_RPC,
            Vec::new(),
        );
        c.k(client).send(client.task, request, false).unwrap();
        c.settle();
        let m = c.receive(server, p).expect("the request");
        let answer = Message::simple(
            m.remote_port,
            msg_type::MOVE_SEND_ONCE,
            NULL_RPC + 100,
            Vec::new(),
        );
        c.k(server).send(server.task, answer, false).unwrap();
        c.settle();
        c.receive(client, reply).expect("the reply");
    }
    start.elapsed() / rounds as u32
}

/// The null RPC and the ping-pongs, `trials` alternating trials (odd; the
/// median of each is shown), on `rt`: in `block_on`, or (`on_worker`) each
/// in a task of the runtime's own.
fn latency(
    rt: &tokio::runtime::Runtime,
    certs: &Arc<Certs>,
    rounds: usize,
    trials: usize,
    placement: Placement,
    on_worker: bool,
) {
    let run = |fut: std::pin::Pin<Box<dyn Future<Output = crate::Stats> + Send>>| {
        if on_worker {
            rt.block_on(rt.spawn(fut)).unwrap()
        } else {
            rt.block_on(fut)
        }
    };
    let c = certs.clone();
    run(Box::pin(async move {
        transport_ping_pong(&c, rounds / 10, placement).await
    }));
    let c = certs.clone();
    run(Box::pin(async move {
        null_rpc(&c, rounds / 10, placement).await
    }));
    let mut t = Vec::new();
    let mut n = Vec::new();
    let mut f = Vec::new();
    for _ in 0..trials {
        let c = certs.clone();
        t.push(run(Box::pin(async move {
            transport_ping_pong(&c, rounds, placement).await
        })));
        let c = certs.clone();
        n.push(run(Box::pin(async move {
            null_rpc(&c, rounds, placement).await
        })));
        let c = certs.clone();
        f.push(run(Box::pin(async move {
            transport_ping_fresh_pong(&c, rounds, placement).await
        })));
    }
    let mid = |mut v: Vec<crate::Stats>| {
        v.sort_by_key(|s| s.p50);
        v.swap_remove(trials / 2)
    };
    print_latency(&[mid(t), mid(n), mid(f)], 0);
    let c = certs.clone();
    let (ping, rpc, (ratio, low, high)) = if on_worker {
        rt.block_on(rt.spawn(async move { interleaved(&c, rounds * trials, placement).await }))
            .unwrap()
    } else {
        rt.block_on(async move { interleaved(&c, rounds * trials, placement).await })
    };
    println!(
        "  the same two interleaved round by round, {} rounds:",
        rounds * trials
    );
    print_latency(&[ping, rpc], 0);
    println!(
        "  p50 ratio {ratio:.3}x, 95 % interval {low:.3}-{high:.3}x (bootstrap over the paired rounds)"
    );
}

pub(crate) fn run(rounds: usize, trials: usize, ports: usize, imports: usize) {
    // (An odd count has one median.)
    let trials = trials.max(1) | 1;
    let rt = workers_runtime(2);
    let certs = Arc::new(certs());
    println!(
        "null RPC on loopback QUIC, median of {trials} alternating trials of {rounds}; \
         (a) both nodes on one tokio runtime of 2 workers, the client in block_on:"
    );
    latency(&rt, &certs, rounds, trials, Placement::Shared, false);
    println!("(c) the same runtime, each subject a task on a worker:");
    latency(&rt, &certs, rounds, trials, Placement::Shared, true);
    // Each node a thread of its own, as on two machines: the client's node
    // on this current-thread runtime, the serving node on another.
    let own = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "(b) each node on a thread and current-thread runtime of its own (client and node B on one, node A on the other):"
    );
    latency(&own, &certs, rounds, trials, Placement::Thread, false);
    drop(own);
    // Each node on a runtime of its own as `netmsg serve` runs it
    // (`netmsg::driver::node_runtime`), the client a task on node B's; then
    // the same with two workers per node, for comparison.
    for (label, workers) in [("(d)", NODE_WORKERS), ("(e)", 2)] {
        let serve = if workers == NODE_WORKERS {
            ", as netmsg serve runs a node"
        } else {
            ""
        };
        println!(
            "{label} each node on a runtime of {workers} worker(s) of its own (the client a task on node B's){serve}:"
        );
        let rt = workers_runtime(workers);
        latency(
            &rt,
            &certs,
            rounds,
            trials,
            Placement::Workers(workers),
            true,
        );
    }
    println!(
        "the null RPC's translators and kernels alone (no I/O, no tasks): {:.2?} per RPC",
        translators_alone(rounds * 10)
    );
    let rate = rt.block_on(many_ports(&certs, ports, 5, 8));
    println!("RPCs across {ports} ports (8 client workers, 5 rounds): {rate:.0} RPC/s");
    let (bytes, per_sec) = imports_in_a_fresh_process(imports);
    println!(
        "{imports} live imports on one link: RSS grew {:.1} MiB for both nodes together ({:.0} B per import; {per_sec:.0} imports/s)",
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 / imports as f64
    );
}

/// One-way throughput in arrangement (b): `count` messages of `size` bytes
/// out of line from B's client task to A's server task, then a null RPC
/// behind them (one port stream, so its reply means all arrived), against
/// the transport carrying frames of the same size on one stream, then a
/// ping-pong round behind them; `trials` alternating trials, MiB/s.
pub(crate) fn bulk(count: usize, size: usize, trials: usize) {
    if size <= PING_BYTES || count == 0 {
        // (The echo answers frames of up to PING_BYTES: those are its pings.)
        eprintln!("netmsg-bench: rpc-bulk takes --size above {PING_BYTES} and --count above 0");
        std::process::exit(2);
    }
    let certs = Arc::new(certs());
    let own = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mib = (count * size) as f64 / f64::from(1 << 20);
    let (mut transport, mut netmsg) = (Vec::new(), Vec::new());
    own.block_on(async {
        let mut echo = Echo::start(&certs, Placement::Thread).await;
        let pair = netmsg_pair(&certs, Placement::Thread).await;
        let reply = pair.reply_port();
        let frame = Bytes::from(vec![5u8; size]);
        let payload = vec![5u8; size];
        let one_way = || {
            Message::simple(
                pair.root,
                msg_type::COPY_SEND,
                BULK,
                // (The client's own buffer, as a Mach sender hands over.)
                vec![Item::ool_bytes(payload.clone(), false)],
            )
        };
        // Warm: each stream's window grown, the writer paths taken.
        for _ in 0..count.min(64) {
            echo.tx.send(frame.clone()).await.unwrap();
            pair.host_b
                .send(pair.client, one_way(), None)
                .await
                .unwrap();
        }
        echo.round().await;
        pair.null_call(reply).await;
        for _ in 0..trials {
            let t = Instant::now();
            for _ in 0..count {
                echo.tx.send(frame.clone()).await.unwrap();
            }
            echo.round().await;
            transport.push(mib / t.elapsed().as_secs_f64());
            let t = Instant::now();
            for _ in 0..count {
                pair.host_b
                    .send(pair.client, one_way(), None)
                    .await
                    .unwrap();
            }
            pair.null_call(reply).await;
            netmsg.push(mib / t.elapsed().as_secs_f64());
        }
        pair.shutdown();
        echo.shutdown();
    });
    let mid = |mut v: Vec<f64>| {
        v.sort_unstable_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (t, n) = (mid(transport), mid(netmsg));
    println!(
        "one-way bulk, {count} x {size} B ({mib:.0} MiB) on one stream, arrangement (b), median of {trials} alternating trials:"
    );
    println!("{:<52} {:>10}", "subject", "MiB/s");
    println!("{:<52} {t:>10.0}", "transport, frames on one port stream");
    println!(
        "{:<52} {n:>10.0}   {:.2}x the transport",
        "netmsg, out-of-line messages to one port",
        n / t
    );
}

/// One subject alone in arrangement (b), for counting its instructions per
/// round trip under callgrind (two runs of different lengths, subtracted):
/// `netmsg` (the null RPC), `transport` (the ping-pong) or `fresh` (the
/// ping-pong with each pong on a new stream).
pub(crate) fn one_subject(subject: &str, rounds: usize) {
    let certs = Arc::new(certs());
    let own = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stats = match subject {
        "netmsg" => own.block_on(null_rpc(&certs, rounds, Placement::Thread)),
        "transport" => own.block_on(transport_ping_pong(&certs, rounds, Placement::Thread)),
        "fresh" => own.block_on(transport_ping_fresh_pong(&certs, rounds, Placement::Thread)),
        other => {
            eprintln!(
                "netmsg-bench: unknown subject {other:?}; available: netmsg, transport, fresh"
            );
            std::process::exit(2);
        }
    };
    print_latency(&[stats], 0);
}

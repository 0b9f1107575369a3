//! netmsg over real QUIC links on loopback: a client task on node B calls a
//! server task on node A through the root port it got in the bootstrap
//! exchange, and dropping the right gives the server its no-senders.

use std::time::Duration;

use mach::runtime::Host;
use mach::types::{msg_type, notify_id};
use mach::{Abi, Item, Kernel, Message, Name, PortRight, RecvOptions, TaskId, NAME_NULL};
use netmsg::driver::{Netmsg, Root};
use transport::{Node, TransportOptions};

/// Nodes A and B joined by netmsg over QUIC on loopback. `serve` makes A's
/// root on A's kernel (the server task and its receive right); B's new client
/// task gets a send right to it.
async fn two_nodes(
    options: TransportOptions,
    serve: impl FnOnce(&mut Kernel) -> (TaskId, Name),
) -> Pair {
    two_nodes_and(&[], options, serve).await.0
}

/// [`two_nodes`] whose root is a port of a new server task on A: the pair,
/// the server and its name for the port.
async fn two_nodes_serving_a_port() -> (Pair, TaskId, Name) {
    let mut served = None;
    let pair = two_nodes(TransportOptions::default(), |k| {
        let t = k.create_task();
        let p = k.port_allocate(t, PortRight::Receive).unwrap();
        served = Some((t, p));
        (t, p)
    })
    .await;
    let (server, port) = served.unwrap();
    (pair, server, port)
}

/// [`two_nodes`], and the credentials of further members of their cluster,
/// named `others`.
async fn two_nodes_and(
    others: &[&str],
    options: TransportOptions,
    serve: impl FnOnce(&mut Kernel) -> (TaskId, Name),
) -> (Pair, Vec<transport::NodeTls>) {
    let names: Vec<&str> = ["node-a", "node-b"].iter().chain(others).copied().collect();
    let mut cluster = transport::test_support::throwaway_cluster(&names);
    let others = cluster.split_off(2);
    let [tls_a, tls_b]: [_; 2] = cluster.try_into().ok().unwrap();
    let addr = "127.0.0.1:0".parse().unwrap();
    let node_a = Node::bind("node-a", addr, &tls_a, options.clone()).unwrap();
    let node_b = Node::bind("node-b", addr, &tls_b, options).unwrap();
    let host_a = Host::new(Kernel::new(Abi::X86_64));
    let host_b = Host::new(Kernel::new(Abi::X86_64));
    let (task, name) = host_a.with(serve);
    Netmsg::start(host_a.clone(), node_a.clone(), Some(Root { task, name })).unwrap();
    let net_b = Netmsg::start(host_b.clone(), node_b.clone(), None).unwrap();
    node_b
        .dial("node-a", node_a.local_addr().unwrap())
        .await
        .unwrap();
    let client = host_b.with(|k| k.create_task());
    let to_root = root_of_a(&net_b, client).await;
    let pair = Pair {
        hosts: [host_a, host_b],
        nodes: [node_a, node_b],
        net_b,
        client,
        to_root,
    };
    (pair, others)
}

/// [`two_nodes_and`] with an echo server ([`spawn_echo`]) as A's root, and
/// a reply port for the client.
async fn echo_pair(
    others: &[&str],
    options: TransportOptions,
) -> (Pair, Vec<transport::NodeTls>, Name) {
    let mut served = None;
    let (pair, tls) = two_nodes_and(others, options, |k| {
        let t = k.create_task();
        let p = k.port_allocate(t, PortRight::Receive).unwrap();
        served = Some((t, p));
        (t, p)
    })
    .await;
    let (server, root) = served.unwrap();
    // (No no-senders was requested: nothing comes out of the channel.)
    drop(spawn_echo(pair.hosts[0].clone(), server, root));
    let reply_port =
        pair.hosts[1].with(|k| k.port_allocate(pair.client, PortRight::Receive).unwrap());
    (pair, tls, reply_port)
}

/// What `two_nodes` sets up.
struct Pair {
    hosts: [Host; 2],
    nodes: [Node; 2],
    net_b: Netmsg,
    client: TaskId,
    to_root: Name,
}

/// `client` asks node A for its root, once a link is up (asked on a link
/// that a restarted peer's new one replaces meanwhile, it asks again).
async fn root_of_a(net_b: &Netmsg, client: TaskId) -> Name {
    loop {
        match net_b.root("node-a", client).await {
            Ok(name) => return name,
            Err(e) if e.starts_with("no link") || e.ends_with("lost") => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_and_release_over_quic() {
    let mut root = NAME_NULL;
    let mut server = None;
    // Little stream credit: were each reply on a stream of its own, the
    // credit would run out without FINs.
    let options = TransportOptions {
        max_port_streams: 16,
        ..TransportOptions::default()
    };
    let Pair {
        hosts: [host_a, host_b],
        nodes,
        client,
        to_root,
        ..
    } = two_nodes(options, |k| {
        let t = k.create_task();
        let p = k.port_allocate(t, PortRight::Receive).unwrap();
        k.port_request_notification(t, p, notify_id::NO_SENDERS, 1, p, msg_type::MAKE_SEND_ONCE)
            .unwrap();
        (root, server) = (p, Some(t));
        (t, p)
    })
    .await;
    let server = server.unwrap();

    // The server answers every request with its argument plus one.
    let server_host = host_a.clone();
    let server_loop = tokio::spawn(async move {
        loop {
            let m = server_host
                .receive(server, root, RecvOptions::default(), None)
                .await
                .unwrap();
            if m.id == notify_id::NO_SENDERS {
                return m;
            }
            let v = i32::from_le_bytes(m.body[0].bytes_payload().unwrap().try_into().unwrap());
            let reply = Message::simple(
                m.remote_port,
                msg_type::MOVE_SEND_ONCE,
                m.id + 100,
                vec![Item::int32(v + 1)],
            );
            server_host.send(server, reply, None).await.unwrap();
        }
    });

    let reply_port = host_b.with(|k| k.port_allocate(client, PortRight::Receive).unwrap());
    for i in 0..200 {
        let request = Message::new(
            to_root,
            msg_type::COPY_SEND,
            reply_port,
            msg_type::MAKE_SEND_ONCE,
            2000,
            vec![Item::int32(i)],
        );
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            host_b.call(client, request, reply_port),
        )
        .await
        .expect("reply in time")
        .unwrap();
        assert_eq!(reply.id, 2100);
        assert_eq!(
            reply.body[0].bytes_payload().unwrap(),
            (i + 1).to_le_bytes()
        );
    }

    // The replies shared the server's one-shot stream: each side opened one
    // stream (requests to the root; replies), not one per reply.
    for node in &nodes {
        for link in node.links() {
            let stats = link.stats();
            assert_eq!(stats.opens_blocked_on_credit, 0, "{stats:?}");
            assert_eq!(stats.ports_opened, 1, "{stats:?}");
        }
    }

    // Dropping the only remote right releases the export: no-senders at home.
    host_b.with(|k| k.port_deallocate(client, to_root).unwrap());
    let ns = tokio::time::timeout(Duration::from_secs(5), server_loop)
        .await
        .expect("no-senders in time")
        .unwrap();
    assert_eq!(ns.id, notify_id::NO_SENDERS);
    assert_eq!(ns.remote_port, NAME_NULL);
}

/// Short-lived ports give their streams' credit back: each RPC carries a
/// new port's send right, which the echo sends home again, so its export
/// ends (the importer's `Release`, the exporter's `Ack`) and both port
/// streams are FINed. With 16 stream credits, 100 such RPCs (200 streams)
/// go through with hardly an open that finds the credit used up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_ports_give_their_stream_credit_back() {
    let options = TransportOptions {
        max_port_streams: 16,
        ..TransportOptions::default()
    };
    let (pair, _, reply_port) = echo_pair(&[], options).await;
    let host_b = &pair.hosts[1];
    let client = pair.client;
    for i in 0..100 {
        let port = host_b.with(|k| k.port_allocate(client, PortRight::Receive).unwrap());
        let request = Message::new(
            pair.to_root,
            msg_type::COPY_SEND,
            reply_port,
            msg_type::MAKE_SEND_ONCE,
            4,
            vec![Item::port(msg_type::MAKE_SEND, port)],
        );
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            host_b.call(client, request, reply_port),
        )
        .await
        .unwrap_or_else(|_| panic!("reply {i} in time"))
        .unwrap();
        // The right came home as the port itself.
        assert_eq!(reply.body[0].names_payload(), Some(&[port][..]), "{i}");
        host_b.with(|k| k.port_destroy(client, port).unwrap());
    }
    let settled = async {
        loop {
            let stats: Vec<_> = pair
                .nodes
                .iter()
                .flat_map(|n| n.links())
                .map(|l| l.stats())
                .collect();
            // Each side opened a stream per port (the Release, the Ack),
            // and the replies' one-shot stream.
            if stats.iter().all(|s| s.ports_opened >= 100) {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let stats = tokio::time::timeout(Duration::from_secs(5), settled)
        .await
        .expect("every export released");
    // Were credit not given back, every open after the 16th would find it
    // used up: 84 of each side's 100. A peer's MAX_STREAMS comes a round
    // trip or so after the FIN, so on a loaded machine an open may come
    // before it now and then (that open goes on the overflow stream).
    for s in stats {
        assert!(s.opens_blocked_on_credit < 16, "{s:?}");
        assert_eq!(s.opens_blocked_on_credit, s.ports_on_overflow, "{s:?}");
    }
}

/// A peer that breaks the one-shot stream's rules loses its link, with the
/// violation named, and the node serves its other peer throughout: a
/// one-shot port stream opened on its own, a second one-shot stream, and a
/// frame whose tag names no one-shot port stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_breaking_the_one_shot_streams_rules_loses_only_its_link() {
    use netmsg::driver::ONE_SHOT_STREAM;
    use netmsg::release::Frame;
    use netmsg::wire::StreamFrame;

    let others = ["evil-1", "evil-2", "evil-3"];
    let (pair, evil, reply_port) = echo_pair(&others, TransportOptions::default()).await;
    let host_b = &pair.hosts[1];
    echo_call(host_b, pair.client, reply_port, pair.to_root, 0).await;

    let at_a = pair.nodes[0].local_addr().unwrap();
    let destroyed = StreamFrame::Release(Frame::SendOnceDestroyed {
        id: 5 | ONE_SHOT_STREAM,
    });
    let expected = [
        "one-shot port stream 9223372036854775813 opened on its own",
        "a second one-shot stream",
        "one-shot stream: byte 0: one-shot stream id has the invalid value 5",
    ];
    for (i, (tls, name)) in evil.iter().zip(others).enumerate() {
        let node = Node::bind(
            name,
            "127.0.0.1:0".parse().unwrap(),
            tls,
            Default::default(),
        )
        .unwrap();
        let link = node.dial("node-a", at_a).await.unwrap();
        match i {
            0 => {
                let mut tx = link.open_port(5 | ONE_SHOT_STREAM).await.unwrap();
                tx.send(destroyed.encode().into()).await.unwrap();
            }
            // (Headers only: the first stream's frames could be refused first.)
            1 => {
                let _first = link.open_port(ONE_SHOT_STREAM).await.unwrap();
                let _second = link.open_port(ONE_SHOT_STREAM).await.unwrap();
            }
            _ => {
                let mut tx = link.open_port(ONE_SHOT_STREAM).await.unwrap();
                tx.send(destroyed.encode_tagged(5).into()).await.unwrap();
            }
        }
        let closed = tokio::time::timeout(Duration::from_secs(5), link.closed())
            .await
            .expect("the link closed in time");
        assert_eq!(
            closed.code,
            Some(transport::CloseCode::ProtocolViolation),
            "{closed}"
        );
        assert!(closed.by_peer, "{closed}");
        assert_eq!(closed.reason, expected[i]);
        echo_call(host_b, pair.client, reply_port, pair.to_root, i as i32 + 1).await;
    }
}

/// Back-pressure over real links: a server that stops reading one port holds
/// its remote sender back (the sender's sends time out once a bounded number
/// are buffered on the way), while RPCs on another port of the same server
/// go on; once the server reads again, every buffered message arrives, in
/// order and intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_holds_its_sender_back_and_no_other_port() {
    const PAYLOAD: usize = 64 * 1024;
    let (
        Pair {
            hosts: [host_a, host_b],
            client,
            to_root: to_bulk,
            ..
        },
        server,
        bulk,
    ) = two_nodes_serving_a_port().await;
    let echo = host_a.with(|k| k.port_allocate(server, PortRight::Receive).unwrap());
    let reply_port = host_b.with(|k| k.port_allocate(client, PortRight::Receive).unwrap());

    // The first message on the bulk port asks for the echo port.
    let ask = Message::new(
        to_bulk,
        msg_type::COPY_SEND,
        reply_port,
        msg_type::MAKE_SEND_ONCE,
        1,
        vec![],
    );
    host_b.send(client, ask, None).await.unwrap();
    let m = host_a
        .receive(server, bulk, RecvOptions::default(), None)
        .await
        .unwrap();
    let give = Message::simple(
        m.remote_port,
        msg_type::MOVE_SEND_ONCE,
        2,
        vec![Item::port(msg_type::MAKE_SEND, echo)],
    );
    host_a.send(server, give, None).await.unwrap();
    let given = host_b
        .receive(client, reply_port, RecvOptions::default(), None)
        .await
        .unwrap();
    let to_echo = given.body[0].names_payload().unwrap()[0];
    spawn_echo(host_a.clone(), server, echo);

    // Flood the bulk port, which nobody reads now, until a send blocks.
    let mut accepted: u32 = 0;
    loop {
        let m = numbered(to_bulk, accepted, PAYLOAD);
        match host_b
            .send(client, m, Some(Duration::from_millis(500)))
            .await
        {
            Ok(()) => accepted += 1,
            Err(e) => {
                assert_eq!(e.code, mach::MsgReturn::SendTimedOut);
                break;
            }
        }
        assert!(
            accepted < 1000,
            "1000 messages of 64 KiB taken without back-pressure"
        );
    }
    eprintln!("{accepted} sends of 64 KiB taken before the sender blocked");
    // Bounded: the proxy's and the port's queues, a stream window and the
    // congestion threshold on the way (about 16 messages each), a few more.
    assert!(accepted >= 5, "only {accepted} sends before blocking");
    assert!(accepted <= 80, "{accepted} messages buffered on the way");

    // The echo port's stream is not held back by the stalled bulk stream.
    for i in 0..20 {
        echo_call(&host_b, client, reply_port, to_echo, i).await;
    }

    // The server reads again: every accepted message arrives, in order.
    for i in 0..accepted {
        receive_numbered(&host_a, server, bulk, i, PAYLOAD).await;
    }
    // And the sender is free again.
    let m = Message::simple(to_bulk, msg_type::COPY_SEND, 11, vec![Item::int32(7)]);
    host_b
        .send(client, m, Some(Duration::from_secs(5)))
        .await
        .unwrap();
    let m = tokio::time::timeout(
        Duration::from_secs(5),
        host_a.receive(server, bulk, RecvOptions::default(), None),
    )
    .await
    .expect("sender free again")
    .unwrap();
    assert_eq!(m.id, 11);
}

/// A link lost and a new one (DESIGN §4.2 item 6): the client's right over
/// the lost link becomes a dead name, the server's port gets its
/// no-senders, and over the new link a new root right works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_link_kills_its_rights_and_a_new_link_serves_again() {
    let mut served = None;
    let pair = two_nodes(TransportOptions::default(), |k| {
        let t = k.create_task();
        let p = k.port_allocate(t, PortRight::Receive).unwrap();
        k.port_request_notification(t, p, notify_id::NO_SENDERS, 1, p, msg_type::MAKE_SEND_ONCE)
            .unwrap();
        served = Some((t, p));
        (t, p)
    })
    .await;
    let (server, root) = served.unwrap();
    let [host_a, host_b] = pair.hosts.clone();
    let client = pair.client;

    let mut noticed = spawn_echo(host_a.clone(), server, root);
    let reply_port = host_b.with(|k| k.port_allocate(client, PortRight::Receive).unwrap());
    echo_call(&host_b, client, reply_port, pair.to_root, 1).await;

    // The link goes: the server sees no-senders, the client's right dies.
    let closed = pair.nodes[0].close_links_where(transport::CloseCode::Done, "test", |_| true);
    assert_eq!(closed, ["node-b"]);
    let ns = tokio::time::timeout(Duration::from_secs(5), noticed.recv())
        .await
        .expect("no-senders in time")
        .unwrap();
    assert_eq!(ns.id, notify_id::NO_SENDERS);
    let dead = async {
        loop {
            let t = host_b.with(|k| k.port_type(client, pair.to_root));
            if t.is_ok_and(|t| t & mach::types::port_type::DEAD_NAME != 0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), dead)
        .await
        .expect("the right over the lost link becomes a dead name");

    // A new link, a new root right: RPCs work again.
    pair.nodes[1]
        .dial("node-a", pair.nodes[0].local_addr().unwrap())
        .await
        .unwrap();
    let again = root_of_a(&pair.net_b, client).await;
    assert_ne!(again, pair.to_root, "a new right, not the dead name");
    for i in 2..20 {
        echo_call(&host_b, client, reply_port, again, i).await;
    }
}

/// A peer that restarts: its new link supersedes the old one, whose end is
/// announced after the new one came up. The old link's rights die, and the
/// new link is kept and serves (before, the old link's end tore the new
/// link's state down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_served_over_its_new_link() {
    let [tls_a, tls_b]: [_; 2] = transport::test_support::throwaway_cluster(&["node-a", "node-b"])
        .try_into()
        .ok()
        .unwrap();
    let addr = "127.0.0.1:0".parse().unwrap();
    let node_b = Node::bind("node-b", addr, &tls_b, TransportOptions::default()).unwrap();
    let host_b = Host::new(Kernel::new(Abi::X86_64));
    let net_b = Netmsg::start(host_b.clone(), node_b.clone(), None).unwrap();
    let client = host_b.with(|k| k.create_task());
    let reply_port = host_b.with(|k| k.port_allocate(client, PortRight::Receive).unwrap());

    // Node A, started (again) with an echo server as its root.
    let start_a = || {
        let node = Node::bind("node-a", addr, &tls_a, TransportOptions::default()).unwrap();
        let host = Host::new(Kernel::new(Abi::X86_64));
        let (server, root) = host.with(|k| {
            let t = k.create_task();
            (t, k.port_allocate(t, PortRight::Receive).unwrap())
        });
        Netmsg::start(
            host.clone(),
            node.clone(),
            Some(Root {
                task: server,
                name: root,
            }),
        )
        .unwrap();
        spawn_echo(host, server, root);
        node
    };
    let first = start_a();
    node_b
        .dial("node-a", first.local_addr().unwrap())
        .await
        .unwrap();
    let old = root_of_a(&net_b, client).await;
    echo_call(&host_b, client, reply_port, old, 1).await;

    // A restarts (a new incarnation, the old process still up for a while).
    let second = start_a();
    second
        .dial("node-b", node_b.local_addr().unwrap())
        .await
        .unwrap();
    let new = tokio::time::timeout(Duration::from_secs(5), root_of_a(&net_b, client))
        .await
        .expect("the new link serves the root");
    for i in 2..10 {
        echo_call(&host_b, client, reply_port, new, i).await;
    }
    let dead = host_b.with(|k| k.port_type(client, old));
    assert!(
        dead.is_ok_and(|t| t & mach::types::port_type::DEAD_NAME != 0),
        "the right over the replaced link is dead: {dead:?}"
    );
    drop(first);
}

/// `client` calls `to` with `i` (replies to `reply_port`) and checks that it
/// comes back, within 5 s.
/// Message `i` of a numbered run to `to`: `len` bytes out of line, `i` in
/// the first four and `i % 251` in the rest.
fn numbered(to: Name, i: u32, len: usize) -> Message {
    let mut payload = vec![(i % 251) as u8; len];
    payload[..4].copy_from_slice(&i.to_le_bytes());
    Message::simple(
        to,
        msg_type::COPY_SEND,
        10,
        vec![Item::ool_bytes(payload, false)],
    )
}

/// Receives the next message on `port`, which must be [`numbered`] `i`.
async fn receive_numbered(host: &Host, task: TaskId, port: Name, i: u32, len: usize) {
    let m = tokio::time::timeout(
        Duration::from_secs(10),
        host.receive(task, port, RecvOptions::default(), None),
    )
    .await
    .expect("the next message in time")
    .unwrap();
    let data = m.body[0].bytes_payload().unwrap();
    assert_eq!(data.len(), len);
    assert_eq!(data[..4], i.to_le_bytes(), "message {i} out of order");
    assert!(data[4..].iter().all(|&b| b == (i % 251) as u8));
}

async fn echo_call(host: &Host, client: TaskId, reply_port: Name, to: Name, i: i32) {
    let request = Message::new(
        to,
        msg_type::COPY_SEND,
        reply_port,
        msg_type::MAKE_SEND_ONCE,
        4,
        vec![Item::int32(i)],
    );
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        host.call(client, request, reply_port),
    )
    .await
    .expect("the echo in time")
    .unwrap();
    assert_eq!(reply.body[0].bytes_payload().unwrap(), i.to_le_bytes());
}

/// A server task answering each request on `port` with its body; no-senders
/// notifications on it come out of the returned channel.
fn spawn_echo(
    host: Host,
    server: TaskId,
    port: Name,
) -> tokio::sync::mpsc::UnboundedReceiver<Message> {
    let (notices, noticed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(m) = host
            .receive(server, port, RecvOptions::default(), None)
            .await
        {
            if m.id == notify_id::NO_SENDERS {
                let _ = notices.send(m);
                continue;
            }
            let reply = Message::simple(m.remote_port, msg_type::MOVE_SEND_ONCE, 8, m.body);
            if host.send(server, reply, None).await.is_err() {
                return;
            }
        }
    });
    noticed
}

/// A task's message to a proxy is forwarded in the sending task's own turn;
/// a task running outside netmsg's runtime (here on a thread with a runtime
/// of its own, without timers or I/O) is served the same: the turn runs in
/// netmsg's runtime, whatever the sender's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_outside_netmsgs_runtime_is_served() {
    let mut server = None;
    let Pair {
        hosts: [host_a, host_b],
        nodes,
        net_b: _net_b,
        client,
        to_root,
    } = two_nodes(TransportOptions::default(), |k| {
        let t = k.create_task();
        server = Some(t);
        (t, k.port_allocate(t, PortRight::Receive).unwrap())
    })
    .await;
    let server = server.unwrap();
    let port = host_a.with(|k| k.names(server).unwrap()[0].0);
    let _notices = spawn_echo(host_a.clone(), server, port);
    let reply_port = host_b.with(|k| k.port_allocate(client, PortRight::Receive).unwrap());
    let bare = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async move {
            for i in 0..20 {
                let request = Message::new(
                    to_root,
                    msg_type::COPY_SEND,
                    reply_port,
                    msg_type::MAKE_SEND_ONCE,
                    4,
                    vec![Item::int32(i)],
                );
                let reply = host_b.call(client, request, reply_port).await.unwrap();
                assert_eq!(reply.body[0].bytes_payload().unwrap(), i.to_le_bytes());
            }
        })
    });
    tokio::task::spawn_blocking(move || bare.join())
        .await
        .unwrap()
        .expect("the bare thread's calls come back");
    for node in nodes {
        node.shutdown();
    }
}

/// A port flooded while its receiver reads it, slowly now and then: the
/// link's stream fills and drains again and again (a writer task takes it
/// over and hands it back some twenty times), and every message arrives,
/// whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_flooded_while_read_gets_every_message_in_order() {
    const PAYLOAD: usize = 8 * 1024;
    const MESSAGES: u32 = 3000;
    let (
        Pair {
            hosts: [host_a, host_b],
            client,
            to_root: to_bulk,
            ..
        },
        server,
        bulk,
    ) = two_nodes_serving_a_port().await;
    let reader = tokio::spawn(async move {
        for i in 0..MESSAGES {
            receive_numbered(&host_a, server, bulk, i, PAYLOAD).await;
            // A slow reader now and then, so that the stream stalls.
            if i % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    for i in 0..MESSAGES {
        let m = numbered(to_bulk, i, PAYLOAD);
        host_b
            .send(client, m, Some(Duration::from_secs(10)))
            .await
            .unwrap();
    }
    tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("every message in time")
        .unwrap();
}

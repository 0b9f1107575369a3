//! netmsg over real QUIC links on loopback: a client task on node B calls a
//! server task on node A through the root port it got in the bootstrap
//! exchange, and dropping the right gives the server its no-senders.

use std::time::Duration;

use mach::runtime::Host;
use mach::types::{msg_type, notify_id};
use mach::{Abi, Item, Kernel, Message, PortRight, RecvOptions, NAME_NULL};
use netmsg::driver::{Netmsg, Root};
use transport::{Node, TransportOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_and_release_over_quic() {
    let [tls_a, tls_b]: [_; 2] = transport::test_support::throwaway_cluster(&["node-a", "node-b"])
        .try_into()
        .ok()
        .unwrap();
    let addr = "127.0.0.1:0".parse().unwrap();
    let node_a = Node::bind("node-a", addr, &tls_a, TransportOptions::default()).unwrap();
    let node_b = Node::bind("node-b", addr, &tls_b, TransportOptions::default()).unwrap();
    let host_a = Host::new(Kernel::new(Abi::X86_64));
    let host_b = Host::new(Kernel::new(Abi::X86_64));

    let (server, root) = host_a.with(|k| {
        let t = k.create_task();
        let p = k.port_allocate(t, PortRight::Receive).unwrap();
        k.port_request_notification(t, p, notify_id::NO_SENDERS, 1, p, msg_type::MAKE_SEND_ONCE)
            .unwrap();
        (t, p)
    });
    let _net_a = Netmsg::start(
        host_a.clone(),
        node_a.clone(),
        Some(Root {
            task: server,
            name: root,
        }),
    )
    .unwrap();
    let net_b = Netmsg::start(host_b.clone(), node_b.clone(), None).unwrap();
    node_b
        .dial("node-a", node_a.local_addr().unwrap())
        .await
        .unwrap();

    let client = host_b.with(|k| k.create_task());
    let to_root = loop {
        match net_b.root("node-a", client).await {
            Ok(name) => break name,
            Err(e) if e.starts_with("no link") => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Err(e) => panic!("{e}"),
        }
    };

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

    // Dropping the only remote right releases the export: no-senders at home.
    host_b.with(|k| k.port_deallocate(client, to_root).unwrap());
    let ns = tokio::time::timeout(Duration::from_secs(5), server_loop)
        .await
        .expect("no-senders in time")
        .unwrap();
    assert_eq!(ns.id, notify_id::NO_SENDERS);
    assert_eq!(ns.remote_port, NAME_NULL);
}

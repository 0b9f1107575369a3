//! Differential conformance: each scenario runs once with every task on one
//! Mach kernel and again with the tasks spread over two and over three nodes
//! joined by netmsg translators (frames delivered in seeded random
//! interleavings across streams, FIFO within one), and what the tasks observe
//! must be identical. A scenario's tasks name their node (0, 1, 2); with two
//! nodes, node 2's tasks live on node 1. Afterwards every translator is idle,
//! netmsg holds no rights beyond its own ports, and each kernel's invariants
//! hold.

use std::ops::{Deref, DerefMut};

use mach::types::{msg_type, notify_id, port_type};
use mach::{Item, Message, Name, Payload, PortRight};
use mach::{NAME_DEAD, NAME_NULL};
use netmsg::release::Frame;
use netmsg::sim::{self, Task as T};
use netmsg::wire::StreamFrame;

/// The simulation cluster plus the trace of what tasks observed.
struct Cluster {
    c: sim::Cluster,
    trace: Vec<String>,
}

impl Deref for Cluster {
    type Target = sim::Cluster;
    fn deref(&self) -> &sim::Cluster {
        &self.c
    }
}

impl DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut sim::Cluster {
        &mut self.c
    }
}

impl Cluster {
    fn new(nodes: usize, seed: u64) -> Self {
        Self {
            c: sim::Cluster::new(nodes, seed),
            trace: Vec::new(),
        }
    }

    fn watch_no_senders(&mut self, t: T, name: Name) {
        self.k(t)
            .port_request_notification(
                t.task,
                name,
                notify_id::NO_SENDERS,
                1,
                name,
                msg_type::MAKE_SEND_ONCE,
            )
            .unwrap();
    }

    /// `t` destroys its receive right `name`.
    fn destroy_port(&mut self, t: T, name: Name) {
        self.k(t)
            .port_mod_refs(t.task, name, PortRight::Receive as u32, -1)
            .unwrap();
    }

    fn send(&mut self, t: T, msg: Message) {
        self.k(t).send(t.task, msg, false).expect("send");
    }

    fn observe(&mut self, who: &str, t: T, name: Name) -> Option<Message> {
        let msg = self.receive(t, name);
        let line = match &msg {
            None => format!("{who}: nothing"),
            Some(m) => {
                let reply = match m.remote_type() {
                    0 => "none".to_owned(),
                    ty => format!(
                        "{} {}",
                        msg_type::name(ty),
                        match m.remote_port {
                            NAME_NULL => "null",
                            NAME_DEAD => "dead",
                            _ => "name",
                        }
                    ),
                };
                let items: Vec<String> = m
                    .body
                    .iter()
                    .map(|i| match &i.payload {
                        Payload::Bytes(b) if i.type_name == msg_type::PORT_NAME => {
                            format!("port-name({})", b.len())
                        }
                        Payload::Bytes(b) if b.len() > 16 => format!(
                            "data {} inline {} {} bytes sum {}",
                            i.type_name,
                            i.inline,
                            b.len(),
                            b.iter().map(|&x| u64::from(x)).sum::<u64>()
                        ),
                        Payload::Bytes(b) => {
                            format!("data {} inline {} {:?}", i.type_name, i.inline, b)
                        }
                        Payload::Names(ns) => format!(
                            "{} {:?}",
                            msg_type::name(i.type_name),
                            ns.iter()
                                .map(|&n| match n {
                                    NAME_NULL => "null",
                                    NAME_DEAD => "dead",
                                    _ => "name",
                                })
                                .collect::<Vec<_>>()
                        ),
                        Payload::Address(_) => "address".into(),
                    })
                    .collect();
                format!(
                    "{who}: id {} dest {} reply {reply} items {items:?}",
                    m.id,
                    msg_type::name(m.local_type())
                )
            }
        };
        self.trace.push(line);
        msg
    }

    fn note(&mut self, line: String) {
        self.trace.push(line);
    }

    fn check_clean(&mut self) {
        self.c.check_clean().unwrap_or_else(|e| panic!("{e}"));
    }
}

/// A server task on node 0 with a port, and a client task on node 1.
fn server_and_client(c: &mut Cluster) -> (T, T, Name) {
    let server = c.task(0);
    let client = c.task(1);
    let p = c.port(server);
    (server, client, p)
}

/// `t` asks for notification `id` (dead name, or no-senders from make-send
/// count 1) on `name`, to its port `notify`.
fn ask_notification(c: &mut Cluster, t: T, name: Name, id: i32, notify: Name) {
    let sync = u32::from(id == notify_id::NO_SENDERS);
    c.k(t)
        .port_request_notification(t.task, name, id, sync, notify, msg_type::MAKE_SEND_ONCE)
        .unwrap();
}

/// `t` drops every dead-name reference it has under `name`; whether it had
/// any.
fn drop_dead_name(c: &mut Cluster, t: T, name: Name) -> bool {
    let refs = c
        .k(t)
        .port_get_refs(t.task, name, PortRight::DeadName as u32)
        .unwrap();
    c.k(t)
        .port_mod_refs(t.task, name, PortRight::DeadName as u32, -(refs as i32))
        .unwrap();
    refs > 0
}

fn int(v: i32) -> Item {
    Item::int32(v)
}

/// Message 100 to `dest` with a send-once reply right made from `reply`.
fn request(c: &mut Cluster, client: T, dest: Name, reply: Name, body: Vec<Item>) {
    let msg = Message::new(
        dest,
        msg_type::COPY_SEND,
        reply,
        msg_type::MAKE_SEND_ONCE,
        100,
        body,
    );
    c.send(client, msg);
}

/// Runs `scenario` on one kernel and over two and three nodes with several
/// seeds; the traces must agree.
fn differential(scenario: fn(&mut Cluster)) {
    let mut single = Cluster::new(1, 1);
    scenario(&mut single);
    assert!(!single.trace.is_empty());
    for nodes in [2, 3] {
        for seed in 1..=20 {
            let mut many = Cluster::new(nodes, seed);
            scenario(&mut many);
            assert_eq!(
                many.trace, single.trace,
                "seed {seed}: {nodes} nodes differ from one"
            );
            many.check_clean();
        }
    }
}

/// `t` receives on `name` as soon as a message is there, while frames move
/// one at a time (so that whatever is still on its way stays there).
fn receive_at_once(c: &mut Cluster, t: T, name: Name) -> Message {
    for _ in 0..100_000 {
        if let Some(m) = c.receive(t, name) {
            return m;
        }
        if !c.step() {
            break;
        }
    }
    c.receive(t, name).expect("the message arrives")
}

/// A client on node 1 calls a server on node 0 with a send-once reply port;
/// the reply carries a send right to a new port, which the client then uses;
/// both rights are dropped and the server sees no-senders on both ports.
fn rpc_round_trip(c: &mut Cluster) {
    let (server, client, p) = server_and_client(c);
    let q = c.port(server);
    for port in [p, q] {
        c.watch_no_senders(server, port);
    }
    let to_p = c.give_send(server, p, client);
    let reply = c.port(client);
    request(
        c,
        client,
        to_p,
        reply,
        vec![int(42), Item::ool_bytes(vec![7; 300], false)],
    );
    c.settle();
    let req = c.observe("server", server, p).expect("request");
    c.send(
        server,
        Message::new(
            req.remote_port,
            msg_type::MOVE_SEND_ONCE,
            NAME_NULL,
            0,
            200,
            vec![int(0), Item::port(msg_type::MAKE_SEND, q)],
        ),
    );
    c.settle();
    let rep = c.observe("client", client, reply).expect("reply");
    let to_q = rep.body[1].names_payload().unwrap()[0];
    c.send(
        client,
        Message::simple(to_q, msg_type::MOVE_SEND, 300, vec![int(3)]),
    );
    c.settle();
    c.observe("server", server, q);
    c.k(client).port_deallocate(client.task, to_p).unwrap();
    c.settle();
    c.observe("server no-senders p", server, p);
    c.observe("server no-senders q", server, q);
}

/// The server destroys the reply right unused: the client's reply port gets
/// the send-once notification.
fn reply_destroyed_unused(c: &mut Cluster) {
    let (server, client, p) = server_and_client(c);
    let to_p = c.give_send(server, p, client);
    let reply = c.port(client);
    request(c, client, to_p, reply, vec![]);
    c.settle();
    let req = c.observe("server", server, p).expect("request");
    c.k(server)
        .port_deallocate(server.task, req.remote_port)
        .unwrap();
    c.settle();
    c.observe("client", client, reply);
    c.k(client).port_deallocate(client.task, to_p).unwrap();
    c.destroy_port(server, p);
}

/// The server's port dies: the client's right becomes a dead name and its
/// dead-name request fires.
fn server_dies(c: &mut Cluster) {
    let (server, client, p) = server_and_client(c);
    let to_p = c.give_send(server, p, client);
    let notify = c.port(client);
    ask_notification(c, client, to_p, notify_id::DEAD_NAME, notify);
    c.destroy_port(server, p);
    c.settle();
    c.observe("client", client, notify);
    let t = c.k(client).port_type(client.task, to_p).unwrap();
    c.note(format!(
        "client right dead: {}",
        t & port_type::DEAD_NAME != 0
    ));
    drop_dead_name(c, client, to_p);
}

/// The original's race 4, sends into limbo: the client's messages, each
/// with a send-once reply right, are on their way when the server destroys
/// the port. One kernel destroys them with the port's queue; netmsg
/// destroys them where they arrive, after the death: either way each reply
/// right ends in a send-once notification, and the client's right becomes a
/// dead name with its notification. (A send made after the death but before
/// the notice arrives also succeeds and is destroyed in the same way: as if
/// it had been made just before the death, a valid order of one kernel.)
fn sends_into_limbo(c: &mut Cluster) {
    let (server, client, p) = server_and_client(c);
    let to_p = c.give_send(server, p, client);
    let notify = c.port(client);
    ask_notification(c, client, to_p, notify_id::DEAD_NAME, notify);
    let reply = c.port(client);
    for i in 0..3 {
        c.send(
            client,
            Message::new(
                to_p,
                msg_type::COPY_SEND,
                reply,
                msg_type::MAKE_SEND_ONCE,
                640 + i,
                vec![int(i)],
            ),
        );
    }
    // Some frames move: the first messages may be in the port's queue by
    // now, the others still on their way.
    for _ in 0..c.rand(4) {
        c.step();
    }
    c.destroy_port(server, p);
    c.settle();
    for _ in 0..3 {
        c.observe("client's reply port", client, reply);
    }
    c.observe("client's reply port, nothing more", client, reply);
    c.observe("client's notify port", client, notify);
    drop_dead_name(c, client, to_p);
    c.destroy_port(client, reply);
    c.destroy_port(client, notify);
}

#[test]
fn race_4_sends_into_limbo_match_one_kernel() {
    differential(sends_into_limbo);
}

/// A right to the server's port travels to the client and back in a message
/// to that same port: the server gets its own port's name.
fn right_comes_home(c: &mut Cluster) {
    let (server, client, p) = server_and_client(c);
    let to_p = c.give_send(server, p, client);
    c.send(
        client,
        Message::simple(
            to_p,
            msg_type::COPY_SEND,
            400,
            vec![Item::port(msg_type::COPY_SEND, to_p)],
        ),
    );
    c.settle();
    let m = c.observe("server", server, p).expect("message");
    let got = m.body[0].names_payload().unwrap()[0];
    c.note(format!("came home as the original port: {}", got == p));
    c.k(server).port_deallocate(server.task, got).unwrap();
    c.k(client).port_deallocate(client.task, to_p).unwrap();
    c.settle();
    c.destroy_port(server, p);
}

#[test]
fn rpc_round_trip_matches_one_kernel() {
    differential(rpc_round_trip);
}

#[test]
fn reply_destroyed_unused_matches_one_kernel() {
    differential(reply_destroyed_unused);
}

#[test]
fn server_death_matches_one_kernel() {
    differential(server_dies);
}

#[test]
fn a_right_coming_home_matches_one_kernel() {
    differential(right_comes_home);
}

/// Many messages from one sender to one port arrive in order, with null and
/// dead rights kept as such.
fn ordered_messages_with_null_and_dead(c: &mut Cluster) {
    let (server, client, p) = server_and_client(c);
    let to_p = c.give_send(server, p, client);
    for i in 0..12 {
        let rights = Item::ports(msg_type::COPY_SEND, vec![NAME_NULL, NAME_DEAD]);
        c.send(
            client,
            Message::simple(to_p, msg_type::COPY_SEND, 500 + i, vec![int(i), rights]),
        );
        if i % 5 == 4 {
            c.settle();
            // The queue limit (5) holds the rest back until the server reads.
            for _ in 0..5 {
                c.observe("server", server, p);
            }
        }
    }
    c.settle();
    while c.observe("server", server, p).is_some() {}
    c.k(client).port_deallocate(client.task, to_p).unwrap();
    c.settle();
    c.destroy_port(server, p);
}

/// The client task is destroyed while holding a send right and a pending
/// request: the server sees the request, then no-senders.
fn client_dies(c: &mut Cluster) {
    let (server, client, p) = server_and_client(c);
    c.watch_no_senders(server, p);
    let to_p = c.give_send(server, p, client);
    let reply = c.port(client);
    request(c, client, to_p, reply, vec![int(1)]);
    c.k(client).destroy_task(client.task).unwrap();
    c.settle();
    let req = c.observe("server", server, p).expect("request");
    // The reply port died with the client: the reply right is dead (now, or
    // by the time the reply reaches the client's node).
    let sent = c.k(server).send(
        server.task,
        Message::simple(req.remote_port, msg_type::MOVE_SEND_ONCE, 200, vec![]),
        false,
    );
    c.note(format!(
        "reply to a dead client: {:?}",
        sent.map_err(|e| e.code)
    ));
    c.settle();
    c.observe("server no-senders", server, p);
    c.destroy_port(server, p);
}

#[test]
fn ordered_messages_match_one_kernel() {
    differential(ordered_messages_with_null_and_dead);
}

#[test]
fn client_death_matches_one_kernel() {
    differential(client_dies);
}

/// Link loss (DESIGN §4.2 item 6): the client's right becomes a dead name,
/// the server's pending reply right is a dead name, the client's reply port
/// gets its send-once notification, and the server's port has no senders.
#[test]
fn link_loss_turns_rights_dead_and_notifies() {
    for seed in 1..=10 {
        let mut c = Cluster::new(2, seed);
        let (server, client, p) = server_and_client(&mut c);
        c.watch_no_senders(server, p);
        let to_p = c.give_send(server, p, client);
        let reply = c.port(client);
        request(&mut c, client, to_p, reply, vec![]);
        c.settle();
        let req = c.receive(server, p).expect("request");
        // A message in flight when the link goes is lost with it.
        request(&mut c, client, to_p, reply, vec![]);
        let cl = &mut c.c;
        let mut out = Vec::new();
        let errors = cl.nets[1].pump(&mut cl.kernels[1], &mut out);
        assert!(errors.is_empty() && !out.is_empty());
        cl.route(1, out);
        cl.lose_link(0, 1);
        c.settle();
        let t = c.k(client).port_type(client.task, to_p).unwrap();
        assert_ne!(t & port_type::DEAD_NAME, 0, "client's right is a dead name");
        let t = c.k(server).port_type(server.task, req.remote_port).unwrap();
        assert_ne!(t & port_type::DEAD_NAME, 0, "server's reply right is dead");
        let ids: Vec<i32> = std::iter::from_fn(|| c.receive(client, reply))
            .map(|m| m.id)
            .collect();
        // Both reply rights (the answered request's and the lost one's).
        assert_eq!(ids, [notify_id::SEND_ONCE, notify_id::SEND_ONCE]);
        let m = c.receive(server, p).expect("no-senders");
        assert_eq!(m.id, notify_id::NO_SENDERS);
        assert!(c.receive(server, p).is_none());
        c.check_clean();
    }
}

/// Causality for a right coming home (DESIGN §4.2 item 4): the client sends
/// a message to port X, then sends X's right home in a message to port Y;
/// the server takes the right from Y and sends to X itself. On one kernel the
/// client's message is first in X's queue; netmsg must keep it so, although
/// the two messages travel on different streams.
fn right_home_after_messages(c: &mut Cluster) {
    let server = c.task(0);
    let client = c.task(1);
    let x = c.port(server);
    let y = c.port(server);
    let to_x = c.give_send(server, x, client);
    let to_y = c.give_send(server, y, client);
    for i in 0..3 {
        c.send(
            client,
            Message::simple(to_x, msg_type::COPY_SEND, 600 + i, vec![int(i)]),
        );
    }
    c.send(
        client,
        Message::simple(
            to_y,
            msg_type::COPY_SEND,
            700,
            vec![Item::port(msg_type::COPY_SEND, to_x)],
        ),
    );
    // The server acts as soon as the carrier is there.
    let mut carrier = None;
    for _ in 0..10_000 {
        carrier = c.receive(server, y);
        if carrier.is_some() || !c.step() {
            break;
        }
    }
    let carrier = carrier.expect("the carrier arrives");
    c.note(format!("carrier {}", carrier.id));
    let x_again = carrier.body[0].names_payload().unwrap()[0];
    c.send(
        server,
        Message::simple(x_again, msg_type::MOVE_SEND, 800, vec![]),
    );
    c.settle();
    while c.observe("server on x", server, x).is_some() {}
    c.k(client).port_deallocate(client.task, to_x).unwrap();
    c.k(client).port_deallocate(client.task, to_y).unwrap();
    c.settle();
    c.destroy_port(server, x);
    c.destroy_port(server, y);
}

#[test]
fn a_right_coming_home_keeps_causal_order() {
    differential(right_home_after_messages);
}

/// A right passed on to a third node (a proxy of a proxy there), which also
/// holds the port directly: the task gets one name for it, and its messages
/// come after those the client sent before passing the right (the Hurd auth
/// rendezvous needs the one name; one kernel gives both).
fn third_node_uses_a_passed_right(c: &mut Cluster) {
    let server = c.task(0);
    let client = c.task(1);
    let third = c.task(2);
    let p = c.port(server);
    let q = c.port(third);
    let to_p = c.give_send(server, p, client);
    let direct = c.give_send(server, p, third);
    let to_q = c.give_send(third, q, client);
    for i in 0..3 {
        c.send(
            client,
            Message::simple(to_p, msg_type::COPY_SEND, 900 + i, vec![int(i)]),
        );
    }
    c.send(
        client,
        Message::simple(
            to_q,
            msg_type::COPY_SEND,
            910,
            vec![Item::port(msg_type::COPY_SEND, to_p)],
        ),
    );
    let carrier = receive_at_once(c, third, q);
    let got = carrier.body[0].names_payload().unwrap()[0];
    c.note(format!("one name for the port: {}", got == direct));
    c.send(
        third,
        Message::simple(got, msg_type::COPY_SEND, 920, vec![]),
    );
    c.settle();
    while c.observe("server", server, p).is_some() {}
    c.k(third).port_deallocate(third.task, got).unwrap();
    if got != direct {
        c.k(third).port_deallocate(third.task, direct).unwrap();
    }
    c.k(client).port_deallocate(client.task, to_p).unwrap();
    c.k(client).port_deallocate(client.task, to_q).unwrap();
    c.settle();
    c.destroy_port(server, p);
    c.destroy_port(third, q);
}

/// A right to the server's port goes client → third node → a task on the
/// server's node: it arrives as the port itself (no proxy of a proxy of a
/// proxy), and that task's message to it comes after the client's earlier
/// ones, which went through the third node's way.
fn right_home_by_another_path(c: &mut Cluster) {
    let server = c.task(0);
    let neighbour = c.task(0);
    let client = c.task(1);
    let third = c.task(2);
    let p = c.port(server);
    let r = c.port(neighbour);
    let q = c.port(third);
    let to_p = c.give_send(server, p, client);
    let to_q = c.give_send(third, q, client);
    let to_r = c.give_send(neighbour, r, third);
    // The third node reaches the port only through the client's right.
    c.send(
        client,
        Message::simple(
            to_q,
            msg_type::COPY_SEND,
            1000,
            vec![Item::port(msg_type::COPY_SEND, to_p)],
        ),
    );
    let first = receive_at_once(c, third, q);
    let via_third = first.body[0].names_payload().unwrap()[0];
    for i in 0..3 {
        c.send(
            third,
            Message::simple(via_third, msg_type::COPY_SEND, 1010 + i, vec![int(i)]),
        );
    }
    c.send(
        third,
        Message::simple(
            to_r,
            msg_type::COPY_SEND,
            1020,
            vec![Item::port(msg_type::COPY_SEND, via_third)],
        ),
    );
    let carrier = receive_at_once(c, neighbour, r);
    let got = carrier.body[0].names_payload().unwrap()[0];
    let same = c.k(server).same_port(neighbour.task, got, server.task, p);
    c.note(format!("arrived as the port itself: {same}"));
    c.send(
        neighbour,
        Message::simple(got, msg_type::MOVE_SEND, 1030, vec![]),
    );
    c.settle();
    while c.observe("server", server, p).is_some() {}
    c.k(third).port_deallocate(third.task, via_third).unwrap();
    c.k(third).port_deallocate(third.task, to_r).unwrap();
    c.k(client).port_deallocate(client.task, to_p).unwrap();
    c.k(client).port_deallocate(client.task, to_q).unwrap();
    c.settle();
    c.destroy_port(server, p);
    c.destroy_port(neighbour, r);
    c.destroy_port(third, q);
}

/// Two nodes pass each other rights right after using them (the pattern that
/// deadlocks holds that wait on forwarded messages): both orders are kept
/// and nothing waits forever.
fn crossing_rights(c: &mut Cluster) {
    let server = c.task(0);
    let a = c.task(1);
    let b = c.task(2);
    let x = c.port(server);
    let y = c.port(server);
    let pa = c.port(a);
    let pb = c.port(b);
    let a_x = c.give_send(server, x, a);
    let b_y = c.give_send(server, y, b);
    let a_pb = c.give_send(b, pb, a);
    let b_pa = c.give_send(a, pa, b);
    for i in 0..2 {
        c.send(
            a,
            Message::simple(a_x, msg_type::COPY_SEND, 1100 + i, vec![]),
        );
        c.send(
            b,
            Message::simple(b_y, msg_type::COPY_SEND, 1200 + i, vec![]),
        );
    }
    c.send(
        a,
        Message::simple(
            a_pb,
            msg_type::COPY_SEND,
            1110,
            vec![Item::port(msg_type::COPY_SEND, a_x)],
        ),
    );
    c.send(
        b,
        Message::simple(
            b_pa,
            msg_type::COPY_SEND,
            1210,
            vec![Item::port(msg_type::COPY_SEND, b_y)],
        ),
    );
    let at_b = receive_at_once(c, b, pb);
    let b_x = at_b.body[0].names_payload().unwrap()[0];
    let at_a = receive_at_once(c, a, pa);
    let a_y = at_a.body[0].names_payload().unwrap()[0];
    c.send(b, Message::simple(b_x, msg_type::MOVE_SEND, 1220, vec![]));
    c.send(a, Message::simple(a_y, msg_type::MOVE_SEND, 1120, vec![]));
    c.settle();
    while c.observe("server on x", server, x).is_some() {}
    while c.observe("server on y", server, y).is_some() {}
    for (t, n) in [(a, a_x), (a, a_pb), (b, b_y), (b, b_pa)] {
        c.k(t).port_deallocate(t.task, n).unwrap();
    }
    c.settle();
    for (t, n) in [(server, x), (server, y), (a, pa), (b, pb)] {
        c.destroy_port(t, n);
    }
}

#[test]
fn a_right_passed_to_a_third_node_matches_one_kernel() {
    differential(third_node_uses_a_passed_right);
}

#[test]
fn a_right_home_by_another_path_matches_one_kernel() {
    differential(right_home_by_another_path);
}

#[test]
fn crossing_rights_match_one_kernel() {
    differential(crossing_rights);
}

/// netmsg-test 13: header-only messages with id 71 (the send-once
/// notification's id) through a send right and through a send-once right.
fn header_only_id_71(c: &mut Cluster) {
    let (server, client, p) = server_and_client(c);
    let to_p = c.give_send(server, p, client);
    c.send(
        client,
        Message::simple(to_p, msg_type::COPY_SEND, notify_id::SEND_ONCE, vec![]),
    );
    let reply = c.port(client);
    request(c, client, to_p, reply, vec![]);
    c.settle();
    c.observe("server", server, p);
    let req = c.observe("server", server, p).expect("request");
    c.send(
        server,
        Message::simple(
            req.remote_port,
            msg_type::MOVE_SEND_ONCE,
            notify_id::SEND_ONCE,
            vec![],
        ),
    );
    c.settle();
    c.observe("client", client, reply);
    c.k(client).port_deallocate(client.task, to_p).unwrap();
    c.settle();
    c.destroy_port(server, p);
}

/// netmsg-test 12: the server sees no-senders only when the last send right
/// anywhere is gone — two remote holders and a local one, dropped in turn.
fn no_senders_after_the_last_right(c: &mut Cluster) {
    let server = c.task(0);
    let local = c.task(0);
    let a = c.task(1);
    let b = c.task(1);
    let p = c.port(server);
    c.watch_no_senders(server, p);
    let rights = [
        (a, c.give_send(server, p, a)),
        (local, c.give_send(server, p, local)),
        (b, c.give_send(server, p, b)),
    ];
    for (i, (t, name)) in rights.into_iter().enumerate() {
        c.settle();
        c.observe(&format!("server before drop {i}"), server, p);
        c.k(t).port_deallocate(t.task, name).unwrap();
    }
    c.settle();
    c.observe("server after the last drop", server, p);
    c.destroy_port(server, p);
}

/// The TODO list: every data type, out-of-line data with and without
/// deallocate, port arrays inline and out of line, port names as data, and a
/// null reply port.
fn all_data_types_and_ool(c: &mut Cluster) {
    let (server, client, p) = server_and_client(c);
    let q = c.port(client);
    let to_p = c.give_send(server, p, client);
    let body = vec![
        Item::boolean(true),
        Item::int16(-2),
        int(-3),
        Item::int64(-4),
        Item::data(msg_type::CHAR, 8, 3, b"abc".to_vec()),
        Item::data(msg_type::REAL, 64, 1, 1.5f64.to_le_bytes().to_vec()),
        Item::data(msg_type::BIT, 1, 13, vec![0xff, 0x1f]),
        Item::c_string("netmsg", 16),
        Item::bytes(vec![1, 2, 3]),
        Item::ool_bytes(vec![9; 5000], true),
        Item::ool_bytes(Vec::new(), false),
        Item::port_name(to_p),
        Item::ports(msg_type::MAKE_SEND, vec![q, NAME_NULL, q]),
        Item::ool_ports(msg_type::COPY_SEND, vec![to_p, NAME_DEAD], false),
    ];
    c.send(
        client,
        Message::new(
            to_p,
            msg_type::COPY_SEND,
            NAME_NULL,
            msg_type::MAKE_SEND_ONCE,
            900,
            body,
        ),
    );
    c.settle();
    let m = c.observe("server", server, p).expect("message");
    // What came in the port arrays: rights to the client's port and the
    // server's own port coming home.
    let names: Vec<Name> = m
        .body
        .iter()
        .filter_map(Item::names_payload)
        .flatten()
        .copied()
        .collect();
    c.note(format!(
        "home right is the port itself: {}",
        names.contains(&p)
    ));
    for n in names {
        if n != NAME_NULL && n != NAME_DEAD {
            c.k(server).port_deallocate(server.task, n).unwrap();
        }
    }
    c.k(client).port_deallocate(client.task, to_p).unwrap();
    c.settle();
    c.destroy_port(server, p);
    c.destroy_port(client, q);
}

/// Race 1 of the original (a no-senders crossing an in-flight send right):
/// the client drops its right while the server sends it a new one.
fn no_senders_crossing_a_new_right(c: &mut Cluster) {
    let (server, client, p) = server_and_client(c);
    let inbox = c.port(client);
    let to_p = c.give_send(server, p, client);
    let to_inbox = c.give_send(client, inbox, server);
    c.send(
        server,
        Message::simple(
            to_inbox,
            msg_type::COPY_SEND,
            1000,
            vec![Item::port(msg_type::MAKE_SEND, p)],
        ),
    );
    c.k(client).port_deallocate(client.task, to_p).unwrap();
    // Let the frames cross in whatever order the seed picks.
    for _ in 0..3 {
        c.step();
    }
    c.settle();
    let m = c.observe("client", client, inbox).expect("message");
    let again = m.body[0].names_payload().unwrap()[0];
    c.send(
        client,
        Message::simple(again, msg_type::MOVE_SEND, 1001, vec![]),
    );
    c.settle();
    c.observe("server", server, p);
    c.k(server).port_deallocate(server.task, to_inbox).unwrap();
    c.settle();
    c.destroy_port(server, p);
    c.destroy_port(client, inbox);
}

#[test]
fn header_only_id_71_matches_one_kernel() {
    differential(header_only_id_71);
}

#[test]
fn no_senders_waits_for_the_last_right() {
    differential(no_senders_after_the_last_right);
}

#[test]
fn all_data_types_match_one_kernel() {
    differential(all_data_types_and_ool);
}

#[test]
fn no_senders_crossing_a_new_right_matches_one_kernel() {
    differential(no_senders_crossing_a_new_right);
}

/// A stream whose message waits for room in a full queue is not read on
/// (back-pressure), unless a held frame waits for a later message of it: a
/// right to the port coming home in a message on another stream waits for
/// every message sent before it (its watermark). One kernel's sender would
/// have blocked at the full queue before sending that right; through netmsg
/// it did not, and when the receive right that would drain the queue is in
/// a message behind that right, nothing moved again (the 2-node simulator
/// with moves, seeds 807 and 997). The stream is read on: what it carries
/// waits in the kernel in order, and the right arrives at once.
#[test]
fn a_full_queue_is_read_past_for_a_held_right() {
    for seed in 1..=10 {
        let mut c = Cluster::new(2, seed);
        let (server, client, p) = server_and_client(&mut c);
        c.k(server).port_set_qlimit(server.task, p, 1).unwrap();
        let q = c.port(server);
        let to_p = c.give_send(server, p, client);
        let to_q = c.give_send(server, q, client);
        for i in 0..3 {
            send_int(&mut c, client, to_p, 900 + i, i);
        }
        send_right(&mut c, client, to_q, 910, msg_type::COPY_SEND, to_p);
        c.settle();
        let m = c
            .receive(server, q)
            .unwrap_or_else(|| panic!("seed {seed}: the right is held behind the full queue"));
        let home = m.body[1].names_payload().unwrap()[0];
        assert_eq!(home, p, "seed {seed}: the right comes home as the port");
        c.k(server).port_deallocate(server.task, home).unwrap();
        for i in 0..3 {
            let m = c.receive(server, p).expect("queued in order");
            assert_eq!(m.id, 900 + i, "seed {seed}");
            c.settle();
        }
        c.k(client).port_deallocate(client.task, to_p).unwrap();
        c.k(client).port_deallocate(client.task, to_q).unwrap();
        c.settle();
        c.destroy_port(server, p);
        c.destroy_port(server, q);
        c.check_clean();
    }
}

/// The server moves its port `r` to the client (which names it) with a
/// message queued on it that carries a right to the client's port `q`,
/// whose queue is full of the server's messages: the queued message waits
/// for them, and they for room. A task holds `q`'s receive right, so room
/// will come: the embargo waits for it rather than giving up (as when the
/// receive right is in a message behind the carrying one), and the client
/// takes `r` under its one name once it has read `q`. (The embargo used to
/// be given up: a second name.)
#[test]
fn an_embargo_waits_for_room_a_task_will_make() {
    for seed in 1..=10 {
        let mut c = Cluster::new(2, seed);
        let x = pair(&mut c);
        let q = c.port(x.client);
        c.k(x.client).port_set_qlimit(x.client.task, q, 1).unwrap();
        let to_q = c.give_send(x.client, q, x.server);
        let r = c.port(x.server);
        let to_r = c.give_send(x.server, r, x.client);
        c.k(x.server)
            .port_insert_right(x.server.task, r, x.server.task, r, msg_type::MAKE_SEND)
            .unwrap();
        c.settle();
        for i in 0..3 {
            send_int(&mut c, x.server, to_q, 920 + i, i);
        }
        send_right(&mut c, x.server, r, 930, msg_type::COPY_SEND, to_q);
        move_receive(&mut c, x.server, x.to_inbox, r);
        c.settle();
        for i in 0..3 {
            let m = c
                .receive(x.client, q)
                .expect("the server's messages, in order");
            assert_eq!(m.id, 920 + i, "seed {seed}");
            c.settle();
        }
        let rr = right_in_next(&mut c, x.client, x.inbox, "the receive right");
        assert_eq!(rr, to_r, "seed {seed}: the client's one name for r");
        let m = c.receive(x.client, rr).expect("the queued message");
        assert_eq!(m.id, 930, "seed {seed}");
        let right = m.body[1].names_payload().unwrap()[0];
        assert_eq!(right, q, "seed {seed}: the right comes home as q");
        c.k(x.client)
            .port_mod_refs(x.client.task, q, PortRight::Send as u32, -1)
            .unwrap();
        c.k(x.server).port_deallocate(x.server.task, to_q).unwrap();
        c.k(x.server).port_deallocate(x.server.task, r).unwrap();
        drop_sends(&mut c, x.client, rr);
        c.destroy_port(x.client, rr);
        c.settle();
        c.destroy_port(x.client, q);
        end_pair(&mut c, &x);
        c.check_clean();
    }
}

/// The client sends through a send-once right to the server's port `r` on
/// its send right's stream, and the server moves `r` to the client before
/// it reads that message: it goes into `r`'s forwarder through the one-shot
/// export's right and comes back in the server's lane, not the client's.
/// The client's embargo leaves it out of what it waits for in its own lane
/// (the server's count leaves it out too), so the client takes `r` under
/// its one name. (It used to wait for it there until the embargo clock gave
/// up: a second name, the most common one on two nodes.)
#[test]
fn an_embargo_leaves_out_send_once_messages_on_the_stream() {
    for seed in 1..=10 {
        let mut c = Cluster::new(2, seed);
        let x = pair(&mut c);
        let r = c.port(x.server);
        let to_r = c.give_send(x.server, r, x.client);
        send_right(
            &mut c,
            x.server,
            x.to_inbox,
            940,
            msg_type::MAKE_SEND_ONCE,
            r,
        );
        c.settle();
        let once = right_in_next(&mut c, x.client, x.inbox, "the send-once right");
        c.send(
            x.client,
            Message::simple(once, msg_type::MOVE_SEND_ONCE, 941, vec![int(941)]),
        );
        move_receive(&mut c, x.server, x.to_inbox, r);
        c.settle();
        let rr = right_in_next(&mut c, x.client, x.inbox, "the receive right");
        assert_eq!(rr, to_r, "seed {seed}: the client's one name for r");
        let m = c.receive(x.client, rr).expect("the send-once message");
        assert_eq!(
            (m.id, m.local_type()),
            (941, msg_type::PORT_SEND_ONCE),
            "seed {seed}"
        );
        moved_port_then_end(&mut c, &x, rr);
    }
}

/// The client sends the server's port `r` a message carrying the receive
/// right of its own port `s`, which waits in `r`'s queue, then another
/// message; the server moves `r` to the client meanwhile. The first comes
/// back in the server's lane as `r`'s queue, held at the client until `s`
/// is ready there; the second, taken in after the move, is relayed in the
/// client's lane. It waits for the queue: the client reads them in the
/// order it sent them. (It went first in the 2-node simulator.)
#[test]
fn what_is_relayed_after_a_move_waits_for_the_queue() {
    for seed in 1..=20 {
        let mut c = Cluster::new(2, seed);
        let x = pair(&mut c);
        let r = c.port(x.server);
        let to_r = c.give_send(x.server, r, x.client);
        let rr = queue_then_relayed(&mut c, &x, x.client, (r, to_r), 950, seed);
        moved_port_then_end(&mut c, &x, rr);
    }
}

/// `sender` sends the server's port `r` (through its right `to_r`) message
/// `id`, carrying the receive right of a port of its own, then `id + 1`;
/// the server moves `r` to the client meanwhile. The client reads them in
/// that order, and keeps the receive right of `r` under the name returned.
fn queue_then_relayed(
    c: &mut Cluster,
    x: &Pair,
    sender: T,
    (r, to_r): (Name, Name),
    id: i32,
    seed: u64,
) -> Name {
    let s = c.port(sender);
    c.settle();
    c.send(
        sender,
        Message::simple(
            to_r,
            msg_type::COPY_SEND,
            id,
            vec![int(id), Item::port(msg_type::MOVE_RECEIVE, s)],
        ),
    );
    c.settle();
    send_int(c, sender, to_r, id + 1, id + 1);
    move_receive(c, x.server, x.to_inbox, r);
    c.settle();
    let rr = right_in_next(c, x.client, x.inbox, "the receive right");
    let first = c.receive(x.client, rr).expect("the first message");
    let second = c.receive(x.client, rr).expect("the second message");
    assert_eq!((first.id, second.id), (id, id + 1), "seed {seed}");
    let s = first.body[1].names_payload().unwrap()[0];
    c.destroy_port(x.client, s);
    rr
}

/// As above, with the port moving to a node that has no name for it (no
/// embargo): a third node's task sends `r` a message carrying the receive
/// right of its own port `s`, then another; the server moves `r` to the
/// client meanwhile. The first goes with `r`'s queue and is held at the
/// client until `s` is ready there; the second, relayed after the move in
/// the third node's lane, waits for the queue. (It went first in the
/// 2-node simulator, where a chain of moves made most of the moved-port
/// disorder.)
#[test]
fn what_is_relayed_after_a_move_waits_for_the_queue_without_an_embargo() {
    for seed in 1..=20 {
        let mut c = Cluster::new(3, seed);
        let x = pair(&mut c);
        let third = c.task(2);
        let r = c.port(x.server);
        let to_r = c.give_send(x.server, r, third);
        let rr = queue_then_relayed(&mut c, &x, third, (r, to_r), 970, seed);
        drop_sends(&mut c, third, to_r);
        c.destroy_port(x.client, rr);
        c.settle();
        end_pair(&mut c, &x);
        c.check_clean();
    }
}

/// The client's second message to the server's port `r` waits at the
/// server for room in `r`'s full queue when the server moves `r` to the
/// client. It goes with the queue (netmsg, holding `r` then, lets it in
/// first), so the client's embargo waits for it: the message the client
/// sends while `r` is on its way comes after it. (Let in behind the
/// queue's end, it used to arrive after the embargo ended, behind that
/// later message: most of the 2-node simulator's moved-port disorder.)
#[test]
fn a_message_waiting_for_room_moves_with_the_queue() {
    for seed in 1..=30 {
        let mut c = Cluster::new(2, seed);
        let x = pair(&mut c);
        let r = c.port(x.server);
        c.k(x.server).port_set_qlimit(x.server.task, r, 1).unwrap();
        let to_r = c.give_send(x.server, r, x.client);
        c.settle();
        send_int(&mut c, x.client, to_r, 960, 960);
        send_int(&mut c, x.client, to_r, 961, 961);
        c.settle();
        move_receive(&mut c, x.server, x.to_inbox, r);
        for _ in 0..seed % 8 {
            c.step();
        }
        // (Once `r` is the client's, its queue is full: this send waits.)
        let late = Message::simple(to_r, msg_type::COPY_SEND, 962, vec![int(962)]);
        c.k(x.client).send(x.client.task, late, true).expect("send");
        c.settle();
        let rr = right_in_next(&mut c, x.client, x.inbox, "the receive right");
        let ids: Vec<i32> = (0..3)
            .map(|_| c.receive(x.client, rr).expect("the client's messages").id)
            .collect();
        assert_eq!(ids, [960, 961, 962], "seed {seed}");
        moved_port_then_end(&mut c, &x, rr);
    }
}

/// `t` takes the next message on `name` as soon as it is there, stepping
/// the cluster until then: the right it carries.
fn right_at_once(c: &mut Cluster, t: T, name: Name) -> Name {
    loop {
        if let Some(m) = c.receive(t, name) {
            return m.body[1].names_payload().unwrap()[0];
        }
        assert!(c.step() || c.tick(), "nothing left to happen");
    }
}

/// The server's port `r` goes to the client (which names it), back, and to
/// the client again, each time as soon as it arrives, so that the export
/// of `r` the client first had a right through may still be live at the
/// server when the client's name for `r` is the forwarder `r` left. The
/// server counts the newer export, the forwarder's: the client takes `r`
/// under its one name each time, though it holds a send-once right to the
/// forwarder. (Counting the older one, the client's forwarder led through
/// an export the server had not counted, and with a send-once right to it
/// no flush markers would do: a second name, most of those on two nodes.)
#[test]
fn a_receive_right_back_and_forth_keeps_one_name() {
    for seed in 1..=30 {
        let mut c = Cluster::new(2, seed);
        let x = pair(&mut c);
        let r = c.port(x.server);
        let to_r = c.give_send(x.server, r, x.client);
        c.settle();
        move_receive(&mut c, x.server, x.to_inbox, r);
        let at_client = right_at_once(&mut c, x.client, x.inbox);
        assert_eq!(at_client, to_r, "seed {seed}: the first move");
        // (Kept while the port is away: the forwarder has a send-once right
        // to it, so no flush markers would do.)
        let (once, _) = c
            .k(x.client)
            .port_extract_right(
                x.client.task,
                at_client,
                msg_type::MAKE_SEND_ONCE,
                x.client.task,
            )
            .unwrap();
        move_receive(&mut c, x.client, x.to_p, at_client);
        let at_server = right_at_once(&mut c, x.server, x.p);
        move_receive(&mut c, x.server, x.to_inbox, at_server);
        let again = right_at_once(&mut c, x.client, x.inbox);
        assert_eq!(again, to_r, "seed {seed}: the second move to the client");
        c.send(
            x.client,
            Message::simple(once, msg_type::MOVE_SEND_ONCE, 981, vec![int(1)]),
        );
        c.settle();
        let m = c.receive(x.client, again).expect("the send-once message");
        assert_eq!(m.local_type(), msg_type::PORT_SEND_ONCE, "seed {seed}");
        drop_sends(&mut c, x.client, again);
        c.destroy_port(x.client, again);
        c.settle();
        end_pair(&mut c, &x);
        c.check_clean();
    }
}

/// Node `from`'s netmsg pumps; the frames it wrote to node `to` are handled
/// there before `to`'s netmsg looks at its own queue.
fn frames_before_pump(c: &mut Cluster, from: usize, to: usize) {
    let mut out = Vec::new();
    let errors = c.c.nets[from].pump(&mut c.c.kernels[from], &mut out);
    assert!(errors.is_empty(), "{errors:?}");
    c.route(from, out);
    let frames: Vec<(u64, netmsg::wire::StreamFrame)> =
        c.c.streams
            .iter_mut()
            .filter(|((f, t, _), _)| (*f, *t) == (from, to))
            .flat_map(|(_, q)| q.drain(..).collect::<Vec<_>>())
            .collect();
    assert!(!frames.is_empty());
    for (id, frame) in frames {
        let net = &mut c.c.nets[to];
        let peer = net.peer_id(&sim::node_name(from));
        let out = net
            .on_frame(
                &mut c.c.kernels[to],
                peer,
                id & !netmsg::translate::ABOUT_SENDERS_EXPORT,
                frame,
            )
            .expect("frame");
        c.route(to, out);
    }
}

/// A reply (send-once) right exported one-shot whose port dies: the reply
/// that uses it arrives before netmsg has seen the right's dead-name
/// notification. The reply is discarded, as one kernel discards a message to
/// a dead port, and netmsg keeps nothing of the right (found by the 3-node
/// simulator after a link cut: the dead name leaked).
#[test]
fn a_reply_to_a_port_that_died_meanwhile_leaves_nothing() {
    let mut c = Cluster::new(2, 1);
    let (server, client, p) = server_and_client(&mut c);
    let inbox = c.port(client);
    let to_p = c.give_send(server, p, client);
    c.settle();
    request(&mut c, client, to_p, inbox, vec![int(1)]);
    c.settle();
    let m = c.receive(server, p).expect("the request");
    // The client's reply port dies; node 1's netmsg has not looked yet.
    c.destroy_port(client, inbox);
    c.send(
        server,
        Message::simple(m.remote_port, msg_type::MOVE_SEND_ONCE, 101, vec![int(2)]),
    );
    frames_before_pump(&mut c, 0, 1);
    c.k(client).port_deallocate(client.task, to_p).unwrap();
    c.check_clean();
}

/// The original's race 2 (seed-netmsg §1.7), within one node: the proxy's
/// no-senders is already queued when a new right to the same port arrives
/// from the wire. netmsg must see the notification is stale (its make-send
/// count is behind) and keep the proxy: the new right works, and the server
/// gets no-senders only after the client drops that one too.
#[test]
fn stale_no_senders_queued_behind_a_new_right() {
    let mut c = Cluster::new(2, 1);
    let (server, client, p) = server_and_client(&mut c);
    c.watch_no_senders(server, p);
    let inbox = c.port(client);
    let to_p = c.give_send(server, p, client);
    let to_inbox = c.give_send(client, inbox, server);
    c.settle();
    c.send(
        server,
        Message::simple(
            to_inbox,
            msg_type::COPY_SEND,
            1100,
            vec![Item::port(msg_type::MAKE_SEND, p)],
        ),
    );
    // The server's netmsg sends the right on its way ...
    let mut out = Vec::new();
    let errors = c.c.nets[0].pump(&mut c.c.kernels[0], &mut out);
    assert!(errors.is_empty(), "{errors:?}");
    c.route(0, out);
    // ... the client drops its right: the proxy's no-senders is queued ...
    c.k(client).port_deallocate(client.task, to_p).unwrap();
    // ... and the new right is handled before netmsg looks at its queue.
    frames_before_pump(&mut c, 0, 1);
    c.settle();
    let m = c
        .receive(client, inbox)
        .expect("the message with the new right");
    let again = m.body[0].names_payload().unwrap()[0];
    assert_ne!(again, NAME_DEAD, "the new right must be live");
    c.send(
        client,
        Message::simple(again, msg_type::COPY_SEND, 1101, vec![]),
    );
    c.settle();
    let got = c.receive(server, p).expect("the client's message");
    assert_eq!(got.id, 1101);
    assert!(
        c.receive(server, p).is_none(),
        "no no-senders while the client holds a right"
    );
    c.k(client).port_deallocate(client.task, again).unwrap();
    c.settle();
    let ns = c
        .receive(server, p)
        .expect("no-senders after the last right");
    assert_eq!(ns.id, notify_id::NO_SENDERS);
    c.k(server).port_deallocate(server.task, to_inbox).unwrap();
    c.settle();
    c.destroy_port(server, p);
    c.destroy_port(client, inbox);
    c.check_clean();
}

// ----- receive rights moving between nodes (forwarding) -----------------------

/// The client's port `r` with a send right under the same name, and two
/// messages already queued on it.
fn port_with_queued_messages(c: &mut Cluster, client: T) -> Name {
    let r = c.port(client);
    c.k(client)
        .port_insert_right(client.task, r, client.task, r, msg_type::MAKE_SEND)
        .unwrap();
    for i in 0..2 {
        c.send(
            client,
            Message::simple(r, msg_type::COPY_SEND, 600 + i, vec![int(i)]),
        );
    }
    r
}

/// Moves `r`'s receive right from `from` to the holder of `dest` in message
/// 700.
fn move_receive(c: &mut Cluster, from: T, dest: Name, r: Name) {
    c.send(
        from,
        Message::simple(
            dest,
            msg_type::COPY_SEND,
            700,
            vec![int(7), Item::port(msg_type::MOVE_RECEIVE, r)],
        ),
    );
}

/// netmsg-test 2: the receive right crosses. Messages queued on it before
/// it left and sent after arrive in order; when the client drops its send
/// right the new receiver gets no-senders with the port's make-send count.
fn receive_right_crosses(c: &mut Cluster) {
    let (server, client, p) = server_and_client(c);
    let to_p = c.give_send(server, p, client);
    let r = port_with_queued_messages(c, client);
    move_receive(c, client, to_p, r);
    for i in 2..4 {
        c.send(
            client,
            Message::simple(r, msg_type::COPY_SEND, 600 + i, vec![int(i)]),
        );
    }
    c.settle();
    let m = c.observe("server", server, p).expect("the receive right");
    let rr = m.body[1].names_payload().unwrap()[0];
    let status = c
        .k(server)
        .port_get_receive_status(server.task, rr)
        .unwrap();
    c.note(format!(
        "moved port: mscount {} seqno {} qlimit {}",
        status.mscount, status.seqno, status.qlimit
    ));
    c.watch_no_senders(server, rr);
    for _ in 0..4 {
        c.observe("server on the moved port", server, rr);
    }
    c.k(client).port_deallocate(client.task, r).unwrap();
    c.settle();
    c.observe("server no-senders on the moved port", server, rr);
    c.destroy_port(server, rr);
    c.k(client).port_deallocate(client.task, to_p).unwrap();
    c.settle();
    c.destroy_port(server, p);
}

/// netmsg-test 3 after a move: the new receiver destroys the port; the
/// client's send right becomes a dead name and its dead-name request fires.
fn moved_port_dies(c: &mut Cluster) {
    let (server, client, p) = server_and_client(c);
    let to_p = c.give_send(server, p, client);
    let r = port_with_queued_messages(c, client);
    let notify = c.port(client);
    ask_notification(c, client, r, notify_id::DEAD_NAME, notify);
    move_receive(c, client, to_p, r);
    c.settle();
    let m = c.observe("server", server, p).expect("the receive right");
    let rr = m.body[1].names_payload().unwrap()[0];
    c.observe("server on the moved port", server, rr);
    c.destroy_port(server, rr);
    c.settle();
    c.observe("client dead-name", client, notify);
    let t = c.k(client).port_type(client.task, r).unwrap();
    c.note(format!(
        "client right dead: {}",
        t & port_type::DEAD_NAME != 0
    ));
    drop_dead_name(c, client, r);
    c.k(client).port_deallocate(client.task, to_p).unwrap();
    c.destroy_port(client, notify);
    c.settle();
    c.destroy_port(server, p);
}

/// netmsg-test 5a: a no-senders request on a receive right that moves goes
/// with it: it fires, for the task that asked, when the last send right
/// anywhere is gone.
fn no_senders_request_moves(c: &mut Cluster) {
    let (server, client, p) = server_and_client(c);
    let to_p = c.give_send(server, p, client);
    let r = port_with_queued_messages(c, client);
    let notify = c.port(client);
    ask_notification(c, client, r, notify_id::NO_SENDERS, notify);
    move_receive(c, client, to_p, r);
    c.settle();
    let m = c.observe("server", server, p).expect("the receive right");
    let rr = m.body[1].names_payload().unwrap()[0];
    c.observe("client before the drop", client, notify);
    c.k(client).port_deallocate(client.task, r).unwrap();
    c.settle();
    c.observe("client no-senders", client, notify);
    for _ in 0..2 {
        c.observe("server on the moved port", server, rr);
    }
    c.destroy_port(server, rr);
    c.destroy_port(client, notify);
    c.k(client).port_deallocate(client.task, to_p).unwrap();
    c.settle();
    c.destroy_port(server, p);
}

/// A port-destroyed request on a receive right that moves goes with it:
/// when the new receiver destroys the port, the receive right comes back
/// to the task that asked, in the notification, with what was queued on it
/// since; the port lives on there.
fn port_destroyed_request_moves(c: &mut Cluster) {
    let (server, client, p) = server_and_client(c);
    let to_p = c.give_send(server, p, client);
    let r = c.port(client);
    let to_r = c.give_send(client, r, client);
    let notify = c.port(client);
    ask_notification(c, client, r, notify_id::PORT_DESTROYED, notify);
    move_receive(c, client, to_p, r);
    c.settle();
    let rr = observe_right(c, "server", server, p);
    send_int(c, client, to_r, 650, 0);
    send_int(c, client, to_r, 651, 1);
    c.settle();
    c.observe("server on the moved port", server, rr);
    c.destroy_port(server, rr);
    c.settle();
    let m = c
        .observe("client port-destroyed", client, notify)
        .expect("the port-destroyed notification");
    let back = m.body[0].names_payload().unwrap()[0];
    send_int(c, client, to_r, 652, 2);
    c.settle();
    for _ in 0..2 {
        c.observe("client on the port back", client, back);
    }
    c.observe("client, nothing more", client, back);
    c.k(client).port_deallocate(client.task, to_r).unwrap();
    c.destroy_port(client, back);
    c.destroy_port(client, notify);
    c.k(client).port_deallocate(client.task, to_p).unwrap();
    c.settle();
    c.destroy_port(server, p);
}

#[test]
fn a_port_destroyed_request_moving_matches_one_kernel() {
    differential(port_destroyed_request_moves);
}

/// A receive right passed on twice (client on node 1 → server on node 0 →
/// a third task on node 2): every message to it, from before, between and
/// after the moves, arrives in order at the last holder.
fn receive_right_moves_twice(c: &mut Cluster) {
    let (server, client, p) = server_and_client(c);
    let third = c.task(2);
    let q = c.port(third);
    let to_p = c.give_send(server, p, client);
    let to_q = c.give_send(third, q, server);
    let r = port_with_queued_messages(c, client);
    move_receive(c, client, to_p, r);
    c.send(
        client,
        Message::simple(r, msg_type::COPY_SEND, 602, vec![int(2)]),
    );
    c.settle();
    let m = c.observe("server", server, p).expect("the receive right");
    let rr = m.body[1].names_payload().unwrap()[0];
    c.send(
        client,
        Message::simple(r, msg_type::COPY_SEND, 603, vec![int(3)]),
    );
    move_receive(c, server, to_q, rr);
    c.send(
        client,
        Message::simple(r, msg_type::COPY_SEND, 604, vec![int(4)]),
    );
    c.settle();
    let m = c.observe("third", third, q).expect("the receive right");
    let r3 = m.body[1].names_payload().unwrap()[0];
    c.watch_no_senders(third, r3);
    for _ in 0..5 {
        c.observe("third on the moved port", third, r3);
    }
    c.k(client).port_deallocate(client.task, r).unwrap();
    c.settle();
    c.observe("third no-senders", third, r3);
    c.destroy_port(third, r3);
    c.k(client).port_deallocate(client.task, to_p).unwrap();
    c.k(server).port_deallocate(server.task, to_q).unwrap();
    c.settle();
    c.destroy_port(server, p);
    c.destroy_port(third, q);
}

#[test]
fn a_receive_right_crossing_matches_one_kernel() {
    differential(receive_right_crosses);
}

#[test]
fn a_moved_port_dying_matches_one_kernel() {
    differential(moved_port_dies);
}

#[test]
fn a_no_senders_request_moving_matches_one_kernel() {
    differential(no_senders_request_moves);
}

#[test]
fn a_receive_right_moving_twice_matches_one_kernel() {
    differential(receive_right_moves_twice);
}

/// A client holding a send right and send-once rights to a server's port
/// sends through them in turn: the server gets the messages in the order
/// sent, as from one kernel (messages through a send-once right keep their
/// place among the sender's others to the port, in both orders).
fn send_and_send_once_rights_interleaved(c: &mut Cluster) {
    let (server, client, p) = server_and_client(c);
    let to_p = c.give_send(server, p, client);
    let inbox = c.port(client);
    let to_inbox = c.give_send(client, inbox, server);
    c.settle();
    for id in [1, 2] {
        send_right(c, server, to_inbox, id, msg_type::MAKE_SEND_ONCE, p);
    }
    c.settle();
    let once: Vec<Name> = (0..2)
        .map(|_| right_in_next(c, client, inbox, "a send-once right"))
        .collect();
    send_int(c, client, to_p, 10, 1);
    let through_once = |c: &mut Cluster, right: Name, v: i32| {
        let msg = Message::simple(right, msg_type::MOVE_SEND_ONCE, 11, vec![int(v)]);
        c.send(client, msg);
    };
    through_once(c, once[0], 2);
    send_int(c, client, to_p, 10, 3);
    through_once(c, once[1], 4);
    send_int(c, client, to_p, 10, 5);
    c.settle();
    for _ in 0..5 {
        c.observe("server", server, p);
    }
    c.observe("server, nothing more", server, p);
    c.k(client).port_deallocate(client.task, to_p).unwrap();
    c.k(server).port_deallocate(server.task, to_inbox).unwrap();
    c.settle();
    c.destroy_port(client, inbox);
    c.destroy_port(server, p);
}

#[test]
fn send_and_send_once_rights_interleaved_keep_order() {
    differential(send_and_send_once_rights_interleaved);
}

/// Send-once rights to a port whose receive right moves: a message queued
/// through one before the move, one used after it, one destroyed unused (its
/// notification) all reach the new receiver as through a send-once right.
fn send_once_rights_to_a_moving_port(c: &mut Cluster) {
    let (server, client, p) = server_and_client(c);
    let other = c.task(1);
    let to_p = c.give_send(server, p, client);
    let r = c.port(client);
    let make_once = |c: &mut Cluster, to: T| {
        c.k(client)
            .port_extract_right(client.task, r, msg_type::MAKE_SEND_ONCE, to.task)
            .unwrap()
            .0
    };
    let queued = make_once(c, client);
    let used = make_once(c, other);
    let unused = make_once(c, other);
    c.send(
        client,
        Message::simple(queued, msg_type::MOVE_SEND_ONCE, 610, vec![int(10)]),
    );
    move_receive(c, client, to_p, r);
    c.settle();
    let m = c.observe("server", server, p).expect("the receive right");
    let rr = m.body[1].names_payload().unwrap()[0];
    c.send(
        other,
        Message::simple(used, msg_type::MOVE_SEND_ONCE, 611, vec![int(11)]),
    );
    c.k(other).port_deallocate(other.task, unused).unwrap();
    c.settle();
    for _ in 0..3 {
        c.observe("server on the moved port", server, rr);
    }
    c.observe("server, nothing more", server, rr);
    c.destroy_port(server, rr);
    c.k(client).port_deallocate(client.task, to_p).unwrap();
    c.settle();
    c.destroy_port(server, p);
}

#[test]
fn send_once_rights_to_a_moving_port_match_one_kernel() {
    differential(send_once_rights_to_a_moving_port);
}

/// netmsg-test 11 (race 3): the client moves a receive right to the server,
/// sends three messages to it, each with a send right to another of its
/// ports, and asks for the right's death; the server destroys the receive
/// right as soon as it has it. The three messages die with the port (their
/// rights released: the client's other port gets no-senders), and the
/// client gets exactly one dead-name notification, for its own right.
fn receive_right_destroyed_on_arrival(c: &mut Cluster) {
    let (server, client, p) = server_and_client(c);
    let to_p = c.give_send(server, p, client);
    let r = c.port(client);
    let q = c.port(client);
    c.watch_no_senders(client, q);
    c.k(client)
        .port_insert_right(client.task, r, client.task, r, msg_type::MAKE_SEND)
        .unwrap();
    move_receive(c, client, to_p, r);
    for i in 0..3 {
        c.send(
            client,
            Message::simple(
                r,
                msg_type::COPY_SEND,
                620 + i,
                vec![int(i), Item::port(msg_type::MAKE_SEND, q)],
            ),
        );
    }
    let notify = c.port(client);
    ask_notification(c, client, r, notify_id::DEAD_NAME, notify);
    let m = receive_at_once(c, server, p);
    c.note(format!("server gets message {}", m.id));
    let rr = m.body[1].names_payload().unwrap()[0];
    c.destroy_port(server, rr);
    c.settle();
    c.observe("client dead-name", client, notify);
    c.observe("client, nothing more", client, notify);
    c.observe("client no-senders on its other port", client, q);
    let refs = c
        .k(client)
        .port_get_refs(client.task, r, PortRight::DeadName as u32)
        .unwrap();
    c.k(client)
        .port_mod_refs(client.task, r, PortRight::DeadName as u32, -(refs as i32))
        .unwrap();
    for port in [q, notify] {
        c.destroy_port(client, port);
    }
    c.k(client).port_deallocate(client.task, to_p).unwrap();
    c.settle();
    c.destroy_port(server, p);
}

#[test]
fn race_3_a_receive_right_destroyed_on_arrival_matches_one_kernel() {
    differential(receive_right_destroyed_on_arrival);
}

/// Race 5 of the original: messages on their way to a port whose receive
/// right moves toward their sender's node (the original dropped them). The
/// server on node 0 sends to the client's port, the client moves that port's
/// receive right to the server, and the server sends once more: all three
/// messages reach the server on the moved port, in order, and the server
/// holds the port under one name (route shortening with an embargo).
fn race_5_messages_to_a_port_moving_toward_their_sender(c: &mut Cluster) {
    let (server, client, p) = server_and_client(c);
    let to_p = c.give_send(server, p, client);
    let r = c.port(client);
    let to_r = c.give_send(client, r, server);
    for i in 0..2 {
        c.send(
            server,
            Message::simple(to_r, msg_type::COPY_SEND, 630 + i, vec![int(i)]),
        );
    }
    move_receive(c, client, to_p, r);
    c.send(
        server,
        Message::simple(to_r, msg_type::COPY_SEND, 632, vec![int(2)]),
    );
    c.settle();
    let m = c.observe("server", server, p).expect("the receive right");
    let rr = m.body[1].names_payload().unwrap()[0];
    note_name(c, "server's receive right", server, rr, to_r);
    for _ in 0..3 {
        c.observe("server on the moved port", server, rr);
    }
    c.observe("server, nothing more", server, rr);
    c.k(server).port_deallocate(server.task, to_r).unwrap();
    c.destroy_port(server, rr);
    c.k(client).port_deallocate(client.task, to_p).unwrap();
    c.settle();
    c.destroy_port(server, p);
}

#[test]
fn race_5_messages_to_a_moving_port_match_one_kernel() {
    differential(race_5_messages_to_a_port_moving_toward_their_sender);
}

// ----- route shortening: one name for a port whose receive right arrives ------

/// A server port `p` the client has a send right to, and a client port
/// `inbox` the server has a send right to.
struct Pair {
    server: T,
    client: T,
    p: Name,
    to_p: Name,
    inbox: Name,
    to_inbox: Name,
}

fn pair(c: &mut Cluster) -> Pair {
    let (server, client, p) = server_and_client(c);
    let to_p = c.give_send(server, p, client);
    let inbox = c.port(client);
    let to_inbox = c.give_send(client, inbox, server);
    Pair {
        server,
        client,
        p,
        to_p,
        inbox,
        to_inbox,
    }
}

/// Drops the pair's rights and ports.
fn end_pair(c: &mut Cluster, x: &Pair) {
    c.k(x.client)
        .port_deallocate(x.client.task, x.to_p)
        .unwrap();
    c.k(x.server)
        .port_deallocate(x.server.task, x.to_inbox)
        .unwrap();
    c.settle();
    c.destroy_port(x.client, x.inbox);
    c.destroy_port(x.server, x.p);
}

/// The client, holding `rr`'s receive right and the last send rights,
/// drops those and sees no-senders; then `rr` and the pair go.
fn last_sends_then_end(c: &mut Cluster, x: &Pair, rr: Name) {
    c.watch_no_senders(x.client, rr);
    drop_sends(c, x.client, rr);
    c.settle();
    c.observe("client no-senders", x.client, rr);
    c.destroy_port(x.client, rr);
    end_pair(c, x);
}

/// The client drops its send rights to the port `rr` it now holds the
/// receive right of and destroys it; then the pair goes, leaving nothing.
fn moved_port_then_end(c: &mut Cluster, x: &Pair, rr: Name) {
    drop_sends(c, x.client, rr);
    c.destroy_port(x.client, rr);
    c.settle();
    end_pair(c, x);
    c.check_clean();
}

/// `t` drops every send reference it has under `name`.
fn drop_sends(c: &mut Cluster, t: T, name: Name) {
    let refs = c
        .k(t)
        .port_get_refs(t.task, name, PortRight::Send as u32)
        .unwrap();
    c.k(t)
        .port_mod_refs(t.task, name, PortRight::Send as u32, -(refs as i32))
        .unwrap();
}

/// Drops the send rights `t` holds under any of `names` (one name, or two
/// when a port got a second name).
fn drop_any_sends(c: &mut Cluster, t: T, names: &[Name]) {
    for &name in names {
        let ty = c.k(t).port_type(t.task, name).unwrap_or(0);
        if ty & port_type::SEND != 0 {
            drop_sends(c, t, name);
        }
    }
}

/// `t` sends message `id` carrying `v` to `dest`.
fn send_int(c: &mut Cluster, t: T, dest: Name, id: i32, v: i32) {
    c.send(
        t,
        Message::simple(dest, msg_type::COPY_SEND, id, vec![int(v)]),
    );
}

/// `t` sends message `id` to `dest` with a right to `name` (`disposition`).
fn send_right(c: &mut Cluster, t: T, dest: Name, id: i32, disposition: u8, name: Name) {
    c.send(
        t,
        Message::simple(
            dest,
            msg_type::COPY_SEND,
            id,
            vec![int(id), Item::port(disposition, name)],
        ),
    );
}

/// `t`'s next message on `name` (`what`, which must have come), which
/// carries a right: its name.
fn right_in_next(c: &mut Cluster, t: T, name: Name, what: &str) -> Name {
    let m = c.receive(t, name).unwrap_or_else(|| panic!("{what}"));
    m.body[1].names_payload().unwrap()[0]
}

/// `who` observes the next message on `name`, which carries a right: its name.
fn observe_right(c: &mut Cluster, who: &str, t: T, name: Name) -> Name {
    let m = c.observe(who, t, name).expect("a message with a right");
    m.body[1].names_payload().unwrap()[0]
}

/// `t`'s name `name` as what it holds: the rights, and whether it is `other`.
fn note_name(c: &mut Cluster, who: &str, t: T, name: Name, other: Name) {
    let ty = c.k(t).port_type(t.task, name).unwrap_or(0);
    c.note(format!(
        "{who}: receive {} send {} same name {}",
        ty & port_type::RECEIVE != 0,
        ty & port_type::SEND != 0,
        name == other
    ));
}

/// netmsg-test 4: a send right goes over and comes back under the name it
/// left with.
fn send_right_over_and_back(c: &mut Cluster) {
    let x = pair(c);
    let r = c.port(x.server);
    c.k(x.server)
        .port_insert_right(x.server.task, r, x.server.task, r, msg_type::MAKE_SEND)
        .unwrap();
    send_right(c, x.server, x.to_inbox, 800, msg_type::COPY_SEND, r);
    c.settle();
    let over = observe_right(c, "client", x.client, x.inbox);
    send_right(c, x.client, x.to_p, 801, msg_type::MOVE_SEND, over);
    c.settle();
    let back = observe_right(c, "server", x.server, x.p);
    note_name(c, "server's right back", x.server, back, r);
    let refs = c
        .k(x.server)
        .port_get_refs(x.server.task, r, PortRight::Send as u32)
        .unwrap();
    c.note(format!("server's send references {refs}"));
    end_pair(c, &x);
    c.destroy_port(x.server, r);
}

/// netmsg-test 5: a receive right goes over and comes back under the name
/// it left with (its holder kept a send right there), with the messages
/// sent to it meanwhile, in order.
fn receive_right_over_and_back(c: &mut Cluster) {
    let x = pair(c);
    let r = port_with_queued_messages(c, x.client);
    move_receive(c, x.client, x.to_p, r);
    send_int(c, x.client, r, 602, 2);
    c.settle();
    let rr = observe_right(c, "server", x.server, x.p);
    c.observe("server on the moved port", x.server, rr);
    move_receive(c, x.server, x.to_inbox, rr);
    send_int(c, x.client, r, 603, 3);
    c.settle();
    let back = observe_right(c, "client", x.client, x.inbox);
    note_name(c, "client's right back", x.client, back, r);
    for _ in 0..3 {
        c.observe("client on its port", x.client, back);
    }
    c.observe("client, nothing more", x.client, back);
    c.watch_no_senders(x.client, back);
    c.k(x.client).port_deallocate(x.client.task, back).unwrap();
    end_pair(c, &x);
    c.observe("client no-senders", x.client, back);
    c.destroy_port(x.client, back);
}

/// A receive right moves to the client, which names the port already (its
/// proxy becomes the port), and the server's node lets its forwarder go;
/// then the client sends a send right to the port back to the server: it
/// names the live port at its new home, and a message through it arrives.
/// (The simulator found such a right arriving dead when the forwarder was
/// gone but netmsg still held its dead name: `seeds_with_moves_found_by_soaks`
/// in tests/sim.rs.)
fn right_to_a_port_that_moved_away_comes_back(c: &mut Cluster) {
    let x = pair(c);
    let r = c.port(x.server);
    let to_r = c.give_send(x.server, r, x.client);
    send_int(c, x.client, to_r, 830, 0);
    move_receive(c, x.server, x.to_inbox, r);
    c.settle();
    let rr = observe_right(c, "client", x.client, x.inbox);
    note_name(c, "client's receive right", x.client, rr, to_r);
    c.observe("client on r", x.client, rr);
    send_right(c, x.client, x.to_p, 831, msg_type::MAKE_SEND, rr);
    c.settle();
    let s = observe_right(c, "server", x.server, x.p);
    let ty = c.k(x.server).port_type(x.server.task, s).unwrap_or(0);
    c.note(format!(
        "server's right: send {} dead {}",
        ty & port_type::SEND != 0,
        ty & port_type::DEAD_NAME != 0
    ));
    send_int(c, x.server, s, 832, 2);
    c.settle();
    c.observe("client on r", x.client, rr);
    drop_sends(c, x.server, s);
    last_sends_then_end(c, &x, rr);
}

#[test]
fn a_right_to_a_port_that_moved_away_coming_back_names_it() {
    differential(right_to_a_port_that_moved_away_comes_back);
}

/// The client sends its right to the server's port `r` home, and `r`'s
/// receive right comes to it before the server's confirmation does: the
/// client's proxy becomes the port at once (one name), the import's release
/// waits for the confirmation, and the rights it kept for it go then.
/// (The hand-over used to wait for the confirmation, and gave up the
/// embargo, leaving a second name, when the carrying message waited on it.)
#[test]
fn a_proxy_becomes_the_port_before_its_right_sent_home_is_confirmed() {
    let mut c = Cluster::new(2, 1);
    let x = pair(&mut c);
    let r = c.port(x.server);
    let to_r = c.give_send(x.server, r, x.client);
    c.settle();
    send_right(&mut c, x.client, x.to_p, 900, msg_type::COPY_SEND, to_r);
    frames_before_pump(&mut c, 1, 0);
    let confirmations: Vec<_> =
        c.c.streams
            .iter_mut()
            .filter(|((from, to, _), _)| (*from, *to) == (0, 1))
            .flat_map(|(&key, q)| {
                let held: Vec<_> = q
                    .iter()
                    .filter(|(_, f)| matches!(f, StreamFrame::Release(Frame::HomeArrived { .. })))
                    .cloned()
                    .collect();
                q.retain(|(_, f)| !matches!(f, StreamFrame::Release(Frame::HomeArrived { .. })));
                held.into_iter().map(move |f| (key, f))
            })
            .collect();
    assert_eq!(confirmations.len(), 1, "one confirmation held back");
    move_receive(&mut c, x.server, x.to_inbox, r);
    c.settle();
    let rr = right_in_next(
        &mut c,
        x.client,
        x.inbox,
        "the receive right, before the confirmation",
    );
    assert_eq!(rr, to_r, "the client's one name for the port");
    let home = right_in_next(&mut c, x.server, x.p, "the right sent home");
    assert_eq!(home, r, "the right home names the server's forwarder");
    send_int(&mut c, x.server, home, 901, 1);
    c.settle();
    assert_eq!(c.receive(x.client, rr).map(|m| m.id), Some(901));
    for (key, frame) in confirmations {
        c.c.streams.entry(key).or_default().push_back(frame);
    }
    c.settle();
    drop_sends(&mut c, x.server, home);
    c.settle();
    drop_sends(&mut c, x.client, rr);
    c.destroy_port(x.client, rr);
    end_pair(&mut c, &x);
    c.check_clean();
}

#[test]
fn netmsg_test_4_a_send_right_over_and_back_keeps_its_name() {
    differential(send_right_over_and_back);
}

#[test]
fn netmsg_test_5_a_receive_right_over_and_back_keeps_its_name() {
    differential(receive_right_over_and_back);
}

/// A message queued on the client's port `r` carries a send right to the
/// server's port `p`; `r`'s receive right then goes to the server in a
/// message to `p`. The server, which names `r` already, takes it under that
/// name: the queued message's right, coming home, does not wait for the
/// message carrying the receive right (sent after it was queued), which
/// waits for the queued message (it used to, and the embargo was given up
/// as a cycle: a second name).
fn queued_right_home_with_the_receive_right(c: &mut Cluster) {
    let x = pair(c);
    let r = c.port(x.client);
    let to_r = c.give_send(x.client, r, x.server);
    send_right(c, x.server, to_r, 840, msg_type::MAKE_SEND, x.p);
    c.settle();
    move_receive(c, x.client, x.to_p, r);
    c.settle();
    let rr = observe_right(c, "server", x.server, x.p);
    note_name(c, "server's receive right", x.server, rr, to_r);
    let home = observe_right(c, "server on the moved port", x.server, rr);
    note_name(c, "the right in the queued message", x.server, home, x.p);
    c.k(x.server)
        .port_mod_refs(x.server.task, home, PortRight::Send as u32, -1)
        .unwrap();
    // (Under a second name the server's send right stays on `to_r`.)
    for name in [rr, to_r] {
        let ty = c.k(x.server).port_type(x.server.task, name).unwrap_or(0);
        if ty & port_type::SEND != 0 {
            drop_sends(c, x.server, name);
        }
    }
    c.settle();
    c.destroy_port(x.server, rr);
    end_pair(c, &x);
}

#[test]
fn a_queued_right_coming_home_with_its_receive_right_keeps_one_name() {
    differential(queued_right_home_with_the_receive_right);
}

/// The client's name for the server's port `r` came from a third node (on
/// three nodes it leads through that node). The client sends on it, the
/// third node too, and the server moves `r`'s receive right to the client
/// with some of the client's messages still on their way: the client takes it
/// under the name it has once everything it sent that way is back (flush
/// markers, on three nodes), and its earlier messages come before its later
/// ones.
fn receive_right_to_a_name_through_a_third_node(c: &mut Cluster) {
    let server = c.task(0);
    let third = c.task(1);
    let client = c.task(2);
    let r = c.port(server);
    let inbox = c.port(client);
    let server_to_inbox = c.give_send(client, inbox, server);
    let third_to_inbox = c.give_send(client, inbox, third);
    let third_to_r = c.give_send(server, r, third);
    send_right(
        c,
        third,
        third_to_inbox,
        740,
        msg_type::COPY_SEND,
        third_to_r,
    );
    c.settle();
    let via = observe_right(c, "client", client, inbox);
    send_int(c, client, via, 741, 1);
    c.settle();
    send_int(c, third, third_to_r, 750, 0);
    c.settle();
    send_int(c, client, via, 742, 2);
    move_receive(c, server, server_to_inbox, r);
    send_int(c, client, via, 743, 3);
    c.settle();
    let rr = observe_right(c, "client", client, inbox);
    note_name(c, "client's receive right", client, rr, via);
    send_int(c, client, rr, 744, 4);
    c.settle();
    for _ in 0..5 {
        c.observe("client on the moved port", client, rr);
    }
    c.k(third).port_deallocate(third.task, third_to_r).unwrap();
    c.k(third)
        .port_deallocate(third.task, third_to_inbox)
        .unwrap();
    c.k(server)
        .port_deallocate(server.task, server_to_inbox)
        .unwrap();
    drop_any_sends(c, client, &[rr, via]);
    c.settle();
    c.destroy_port(client, rr);
    c.destroy_port(client, inbox);
}

#[test]
fn a_receive_right_to_a_name_through_a_third_node_keeps_that_name() {
    differential(receive_right_to_a_name_through_a_third_node);
}

/// A receive right goes round three nodes and back to the first, which kept
/// a send right to it: on three nodes its name there is then a forwarder
/// leading through the node the right went to first. It sent nothing
/// through send-once rights, so flush markers that way show everything it
/// sent is in, and the receive right joins the send right under its name;
/// the messages sent on the way arrive in order.
fn receive_right_round_three_nodes(c: &mut Cluster) {
    let first = c.task(1);
    let second = c.task(2);
    let third = c.task(0);
    let p = c.port(first);
    c.k(first)
        .port_insert_right(first.task, p, first.task, p, msg_type::MAKE_SEND)
        .unwrap();
    let inbox_first = c.port(first);
    let inbox_second = c.port(second);
    let inbox_third = c.port(third);
    let to_second = c.give_send(second, inbox_second, first);
    let to_third = c.give_send(third, inbox_third, second);
    let to_first = c.give_send(first, inbox_first, third);
    c.settle();
    move_receive(c, first, to_second, p);
    send_int(c, first, p, 761, 1);
    c.settle();
    let at_second = observe_right(c, "second", second, inbox_second);
    move_receive(c, second, to_third, at_second);
    send_int(c, first, p, 762, 2);
    c.settle();
    let at_third = observe_right(c, "third", third, inbox_third);
    move_receive(c, third, to_first, at_third);
    send_int(c, first, p, 763, 3);
    c.settle();
    let back = observe_right(c, "first", first, inbox_first);
    note_name(c, "first's receive right", first, back, p);
    c.send(
        first,
        Message::simple(back, msg_type::MAKE_SEND, 764, vec![int(4)]),
    );
    c.settle();
    for _ in 0..4 {
        c.observe("first on the port", first, back);
    }
    for (t, name) in [(first, to_second), (second, to_third), (third, to_first)] {
        c.k(t).port_deallocate(t.task, name).unwrap();
    }
    drop_any_sends(c, first, &[back, p]);
    c.settle();
    c.destroy_port(first, back);
    for (t, inbox) in [
        (first, inbox_first),
        (second, inbox_second),
        (third, inbox_third),
    ] {
        c.destroy_port(t, inbox);
    }
}

#[test]
fn a_receive_right_round_three_nodes_comes_back_under_its_name() {
    differential(receive_right_round_three_nodes);
}

/// netmsg-test 5 with send-once rights behind: the client holds a send right
/// and send-once rights to its port while the receive right goes to the
/// server and comes back; one send-once right is used while the port is
/// away, one as it comes back (its message crossing the move), one used and
/// one destroyed once it is back. Each arrives once, through a send-once
/// right, and the receive right joins the client's send right under its old
/// name: the server's node lets go of the send-once rights it kept for the
/// client's forwarder, whose tasks' rights are the port's own again.
fn receive_right_over_and_back_with_send_once_rights(c: &mut Cluster) {
    let x = pair(c);
    let r = c.port(x.client);
    c.k(x.client)
        .port_insert_right(x.client.task, r, x.client.task, r, msg_type::MAKE_SEND)
        .unwrap();
    let once: Vec<Name> = (0..4)
        .map(|_| {
            c.k(x.client)
                .port_extract_right(x.client.task, r, msg_type::MAKE_SEND_ONCE, x.client.task)
                .unwrap()
                .0
        })
        .collect();
    let send_once = |c: &mut Cluster, i: usize| {
        c.send(
            x.client,
            Message::simple(
                once[i],
                msg_type::MOVE_SEND_ONCE,
                620 + i as i32,
                vec![int(0)],
            ),
        );
    };
    move_receive(c, x.client, x.to_p, r);
    c.settle();
    let rr = observe_right(c, "server", x.server, x.p);
    send_once(c, 0);
    c.settle();
    c.observe("server on the moved port", x.server, rr);
    send_once(c, 1);
    move_receive(c, x.server, x.to_inbox, rr);
    c.settle();
    let back = observe_right(c, "client", x.client, x.inbox);
    note_name(c, "client's right back", x.client, back, r);
    send_once(c, 2);
    c.k(x.client)
        .port_deallocate(x.client.task, once[3])
        .unwrap();
    c.settle();
    for _ in 0..3 {
        c.observe("client on its port", x.client, back);
    }
    c.observe("client, nothing more", x.client, back);
    let status = c
        .k(x.client)
        .port_get_receive_status(x.client.task, back)
        .unwrap();
    c.note(format!("send-once rights left: {}", status.sorights));
    last_sends_then_end(c, &x, back);
}

#[test]
fn netmsg_test_5_with_send_once_rights_behind_keeps_one_name() {
    differential(receive_right_over_and_back_with_send_once_rights);
}

/// netmsg-test 7: the receive right goes over, messages follow it, the new
/// receiver sends a send right back: it arrives under the client's old
/// name; messages through it, then its drop, and no-senders at the new
/// receiver.
fn receive_right_over_send_right_back(c: &mut Cluster) {
    let x = pair(c);
    let r = port_with_queued_messages(c, x.client);
    move_receive(c, x.client, x.to_p, r);
    for i in 2..4 {
        send_int(c, x.client, r, 600 + i, i);
    }
    c.settle();
    let rr = observe_right(c, "server", x.server, x.p);
    for _ in 0..4 {
        c.observe("server on the moved port", x.server, rr);
    }
    send_right(c, x.server, x.to_inbox, 801, msg_type::MAKE_SEND, rr);
    c.settle();
    let back = observe_right(c, "client", x.client, x.inbox);
    note_name(c, "client's send right back", x.client, back, r);
    for i in 4..6 {
        send_int(c, x.client, back, 600 + i, i);
    }
    c.watch_no_senders(x.server, rr);
    drop_sends(c, x.client, back);
    c.settle();
    for _ in 0..3 {
        c.observe("server on the moved port", x.server, rr);
    }
    c.destroy_port(x.server, rr);
    end_pair(c, &x);
}

/// netmsg-test 8: a send right goes over twice and arrives under one name;
/// messages, one reference dropped, more messages, the last dropped: then
/// no-senders.
fn send_right_twice(c: &mut Cluster) {
    let x = pair(c);
    let r = c.port(x.server);
    for i in 0..2 {
        send_right(c, x.server, x.to_inbox, 810 + i, msg_type::MAKE_SEND, r);
    }
    c.settle();
    let first = observe_right(c, "client", x.client, x.inbox);
    let second = observe_right(c, "client", x.client, x.inbox);
    note_name(c, "client's second right", x.client, second, first);
    c.watch_no_senders(x.server, r);
    send_int(c, x.client, first, 812, 2);
    c.k(x.client).port_deallocate(x.client.task, first).unwrap();
    send_int(c, x.client, second, 813, 3);
    c.settle();
    c.observe("server on r", x.server, r);
    c.observe("server on r", x.server, r);
    c.observe("server, no no-senders yet", x.server, r);
    c.k(x.client)
        .port_deallocate(x.client.task, second)
        .unwrap();
    c.settle();
    c.observe("server no-senders", x.server, r);
    c.destroy_port(x.server, r);
    end_pair(c, &x);
}

/// netmsg-test 9: the client has a send right to the server's port `r` and
/// sends on it; then `r`'s receive right comes to the client: under the
/// name of its send right, with the client's messages before and after the
/// move in order (those before may still be on their way to the server and
/// back: the embargo). The client drops its send right and gets no-senders.
fn send_right_then_receive_right(c: &mut Cluster) {
    let x = pair(c);
    let r = c.port(x.server);
    let to_r = c.give_send(x.server, r, x.client);
    for i in 0..3 {
        send_int(c, x.client, to_r, 820 + i, i);
    }
    move_receive(c, x.server, x.to_inbox, r);
    // (A few frames move: the client's node may have the port by now, with
    // its first messages still on their way back.)
    for _ in 0..6 {
        c.step();
    }
    send_int(c, x.client, to_r, 823, 3);
    c.settle();
    let rr = observe_right(c, "client", x.client, x.inbox);
    note_name(c, "client's receive right", x.client, rr, to_r);
    for _ in 0..4 {
        c.observe("client on r", x.client, rr);
    }
    c.observe("client, nothing more", x.client, rr);
    last_sends_then_end(c, &x, rr);
}

/// As 9, with a send-once right to the port left where it was: the
/// receive right still joins the client's send right (its route is
/// shortened, and the send-once right's message follows it there), and
/// the message through the send-once right arrives through one.
fn send_right_then_receive_right_with_a_send_once_right_behind(c: &mut Cluster) {
    let x = pair(c);
    let r = c.port(x.server);
    let to_r = c.give_send(x.server, r, x.client);
    let (once, _) = c
        .k(x.server)
        .port_extract_right(x.server.task, r, msg_type::MAKE_SEND_ONCE, x.server.task)
        .unwrap();
    for i in 0..2 {
        send_int(c, x.client, to_r, 840 + i, i);
    }
    move_receive(c, x.server, x.to_inbox, r);
    c.settle();
    let rr = observe_right(c, "client", x.client, x.inbox);
    note_name(c, "client's receive right", x.client, rr, to_r);
    c.send(
        x.server,
        Message::simple(once, msg_type::MOVE_SEND_ONCE, 842, vec![int(2)]),
    );
    // (Two senders: their order is only the order of arrival.)
    c.settle();
    send_int(c, x.client, to_r, 843, 3);
    c.settle();
    for _ in 0..4 {
        c.observe("client on r", x.client, rr);
    }
    c.observe("client, nothing more", x.client, rr);
    last_sends_then_end(c, &x, rr);
}

/// netmsg-test 10: as 9, with a copy of the send right held by a third
/// task (on a third node when there is one), which sends after the move;
/// no-senders once both drop theirs.
fn send_right_copy_then_receive_right(c: &mut Cluster) {
    let x = pair(c);
    let third = c.task(2);
    let r = c.port(x.server);
    let to_r = c.give_send(x.server, r, x.client);
    let copy = c.give_send(x.server, r, third);
    for i in 0..2 {
        send_int(c, x.client, to_r, 830 + i, i);
    }
    move_receive(c, x.server, x.to_inbox, r);
    c.settle();
    let rr = observe_right(c, "client", x.client, x.inbox);
    note_name(c, "client's receive right", x.client, rr, to_r);
    send_int(c, third, copy, 832, 2);
    c.settle();
    for _ in 0..3 {
        c.observe("client on r", x.client, rr);
    }
    c.watch_no_senders(x.client, rr);
    drop_sends(c, x.client, rr);
    c.settle();
    c.observe("client, no no-senders yet", x.client, rr);
    c.k(third).port_deallocate(third.task, copy).unwrap();
    c.settle();
    c.observe("client no-senders", x.client, rr);
    c.destroy_port(x.client, rr);
    end_pair(c, &x);
}

/// netmsg-test 12: a receive right with a no-senders request moves; a send
/// right is made where it arrived; the original send right is dropped (no
/// notification: one is left), then the new one: the notification.
fn no_senders_held_for_the_last_right(c: &mut Cluster) {
    let (server, client, p) = server_and_client(c);
    let to_p = c.give_send(server, p, client);
    let r = c.port(client);
    let to_r = c.give_send(client, r, server);
    let notify = c.port(client);
    ask_notification(c, client, r, notify_id::NO_SENDERS, notify);
    move_receive(c, client, to_p, r);
    c.settle();
    let rr = observe_right(c, "server", server, p);
    note_name(c, "server's receive right", server, rr, to_r);
    let (made, _) = c
        .k(server)
        .port_extract_right(server.task, rr, msg_type::MAKE_SEND, server.task)
        .unwrap();
    let refs = c
        .k(server)
        .port_get_refs(server.task, to_r, PortRight::Send as u32)
        .unwrap();
    c.note(format!("server's send references {refs}"));
    c.k(server)
        .port_mod_refs(server.task, to_r, PortRight::Send as u32, -1)
        .unwrap();
    c.settle();
    c.observe("client, no no-senders yet", client, notify);
    c.k(server).port_deallocate(server.task, made).unwrap();
    c.settle();
    c.observe("client no-senders", client, notify);
    c.destroy_port(server, rr);
    c.destroy_port(client, notify);
    c.k(client).port_deallocate(client.task, to_p).unwrap();
    c.settle();
    c.destroy_port(server, p);
}

#[test]
fn netmsg_test_7_a_send_right_back_to_a_moved_port_keeps_its_name() {
    differential(receive_right_over_send_right_back);
}

#[test]
fn netmsg_test_8_a_send_right_twice_has_one_name() {
    differential(send_right_twice);
}

#[test]
fn netmsg_test_9_a_receive_right_joins_its_send_right() {
    differential(send_right_then_receive_right);
}

#[test]
fn a_receive_right_joins_its_send_right_with_a_send_once_right_behind() {
    differential(send_right_then_receive_right_with_a_send_once_right_behind);
}

#[test]
fn netmsg_test_10_a_receive_right_joins_its_send_right_with_a_copy_elsewhere() {
    differential(send_right_copy_then_receive_right);
}

#[test]
fn netmsg_test_12_no_senders_waits_for_the_last_right_after_a_move() {
    differential(no_senders_held_for_the_last_right);
}

/// `rounds` RPCs from `client` to `server` on `p` (through `to_p`), each
/// reply carrying a send right to a new port that the client uses once and
/// drops, after which the server destroys the port.
fn rpcs_with_short_lived_ports(
    c: &mut Cluster,
    server: T,
    client: T,
    p: Name,
    to_p: Name,
    rounds: usize,
) {
    let reply = c.port(client);
    for _ in 0..rounds {
        request(c, client, to_p, reply, Vec::new());
        c.settle();
        let asked = c.receive(server, p).expect("the request");
        let q = c.port(server);
        let answer = Message::simple(
            asked.remote_port,
            msg_type::MOVE_SEND_ONCE,
            200,
            vec![Item::port(msg_type::MAKE_SEND, q)],
        );
        c.send(server, answer);
        c.settle();
        let answer = c.receive(client, reply).expect("the reply");
        let to_q = answer.body[0].names_payload().unwrap()[0];
        c.send(
            client,
            Message::simple(to_q, msg_type::COPY_SEND, 300, Vec::new()),
        );
        c.settle();
        assert!(
            c.receive(server, q).is_some(),
            "the message to the new port"
        );
        c.k(client).port_deallocate(client.task, to_q).unwrap();
        c.settle();
        c.destroy_port(server, q);
        c.settle();
    }
}

/// Per-stream records (messages written and delivered, causal positions,
/// tombstones) end with their streams: a link's replies, each on a one-shot
/// export's stream, and ports made and released one per request leave
/// nothing behind, however many there were.
#[test]
fn streams_leave_no_records_behind() {
    let mut c = Cluster::new(2, 1);
    let (server, client) = (c.task(0), c.task(1));
    let p = c.port(server);
    let to_p = c.give_send(server, p, client);
    rpcs_with_short_lived_ports(&mut c, server, client, p, to_p, 5);
    let before: Vec<usize> = c.nets.iter().map(|n| n.stream_records()).collect();
    rpcs_with_short_lived_ports(&mut c, server, client, p, to_p, 300);
    let after: Vec<usize> = c.nets.iter().map(|n| n.stream_records()).collect();
    assert_eq!(
        after, before,
        "records per node after 5 and after 305 rounds"
    );
    c.k(client).port_deallocate(client.task, to_p).unwrap();
    c.check_clean();
}

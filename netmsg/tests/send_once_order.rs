//! A task's messages through a send-once right keep their place among its
//! messages through its send right to the same port (`docs/protocol.md`,
//! "Send-once rights in order"), and never overtake one still queued on the
//! send right's proxy: while the proxy's stream is congested, and after the
//! proxy comes back to netmsg's port set with messages queued (they join
//! behind those queued there meanwhile), the one-shot stream is taken.

use mach::types::{msg_type, port_type};
use mach::{Abi, Item, Kernel, Message, Name, PortRight, RecvOptions, TaskId};
use netmsg::release::SEND_ONCE_ID_BIT;
use netmsg::translate::{Out, Translator};
use netmsg::wire::{Form, GlobalId, StreamFrame, WireItem, WireMessage, WireRef, WireRight};

#[path = "common/frames.rs"]
mod frames;
use frames::message_with_right;

/// The server's send export of its port, and two one-shot exports of it.
const SEND: u64 = 3;
const ONCE: [u64; 2] = [5 | SEND_ONCE_ID_BIT, 6 | SEND_ONCE_ID_BIT];

struct Client {
    k: Kernel,
    t: Translator,
    task: TaskId,
    to_port: Name,
    once: Vec<Name>,
}

fn right(form: Form, reference: WireRef) -> WireRight {
    WireRight {
        form,
        reference,
        watermark: 0,
        after: Vec::new(),
        home_stream: None,
    }
}

/// The server's send export of its port, naming `once_exports`.
fn send_right(once_exports: &[u64]) -> WireRight {
    right(
        Form::Send,
        WireRef::SenderExport {
            id: SEND,
            global: GlobalId {
                home: "server".into(),
                port: 9,
                incarnation: 1,
            },
            once_exports: once_exports.to_vec(),
        },
    )
}

/// The two one-shot exports, naming `port_stream`.
fn once_rights(port_stream: Option<u64>) -> WireItem {
    let rights = ONCE
        .iter()
        .map(|&id| right(Form::SendOnce, WireRef::OnceExport { id, port_stream }))
        .collect();
    WireItem::Rights {
        form: Form::SendOnce,
        inline: true,
        longform: false,
        deallocate: false,
        rights,
    }
}

/// A client task holding, from the server, a send right to its port and two
/// send-once rights to it that name the send right's stream.
fn client() -> Client {
    let mut m = message_with_right(send_right(&[]));
    m.items.push(once_rights(Some(SEND)));
    client_given(vec![m])
}

/// A client task given, by the server, `messages`, each carrying a send
/// right to the server's port or send-once rights to it.
fn client_given(messages: Vec<WireMessage>) -> Client {
    let mut k = Kernel::new(Abi::X86_64);
    let mut t = Translator::new(&mut k, "client", b"send-once order test").unwrap();
    let server = t.peer_id("server");
    let task = k.create_task();
    let inbox = k.port_allocate(task, PortRight::Receive).unwrap();
    let (to_inbox, _) = t
        .bootstrap_export(&mut k, "server", task, inbox, msg_type::MAKE_SEND)
        .unwrap();
    let (mut to_port, mut once) = (None, Vec::new());
    for m in messages {
        t.on_frame(&mut k, server, to_inbox, StreamFrame::Message(m))
            .unwrap();
        let m = k
            .receive(task, inbox, RecvOptions::default())
            .unwrap()
            .expect("the rights");
        for item in &m.body {
            let names = item.names_payload().unwrap();
            match item.type_name {
                msg_type::PORT_SEND => to_port = Some(names[0]),
                _ => once.extend_from_slice(names),
            }
        }
    }
    Client {
        k,
        t,
        task,
        to_port: to_port.expect("a send right"),
        once,
    }
}

impl Client {
    fn send(&mut self, v: i32) {
        let m = Message::simple(self.to_port, msg_type::COPY_SEND, 10, vec![Item::int32(v)]);
        self.k.send(self.task, m, false).unwrap();
    }

    fn send_once(&mut self, which: usize, v: i32) {
        let m = Message::simple(
            self.once[which],
            msg_type::MOVE_SEND_ONCE,
            11,
            vec![Item::int32(v)],
        );
        self.k.send(self.task, m, false).unwrap();
    }

    fn congested(&mut self, on: bool) {
        let server = self.t.peer_id("server");
        self.t.set_congested(&mut self.k, server, SEND, on).unwrap();
    }

    /// What netmsg forwards now: (stream, the message's value) in order.
    fn pump(&mut self) -> Vec<(u64, i32)> {
        let mut out: Vec<Out> = Vec::new();
        assert!(self.t.pump(&mut self.k, &mut out).is_empty());
        out.iter()
            .filter_map(|o| match &o.frame {
                StreamFrame::Message(m) => {
                    let WireItem::Data { bytes, .. } = &m.items[0] else {
                        return None;
                    };
                    let v = i32::from_le_bytes(bytes[..4].try_into().unwrap());
                    let once = m.once.map(u64::from);
                    assert_eq!(once.is_some(), o.id == SEND && v % 2 == 0, "{o:?}");
                    Some((o.id, v))
                }
                _ => None,
            })
            .collect()
    }
}

/// What netmsg forwards now, one message carrying rights: its stream and
/// its first right.
fn first_right_out(k: &mut Kernel, t: &mut Translator) -> (u64, WireRef) {
    let mut out: Vec<Out> = Vec::new();
    assert!(t.pump(k, &mut out).is_empty());
    let [Out {
        id,
        frame: StreamFrame::Message(m),
        ..
    }] = &out[..]
    else {
        panic!("one message: {out:?}");
    };
    let WireItem::Rights { rights, .. } = &m.items[0] else {
        panic!("a right: {m:?}");
    };
    (*id, rights[0].reference.clone())
}

/// (Odd values go through the send right, even ones through a send-once.)
#[test]
fn send_once_messages_take_the_send_rights_stream_in_their_place() {
    let mut c = client();
    c.send(1);
    c.send_once(0, 2);
    c.send(3);
    c.send_once(1, 4);
    c.send(5);
    assert_eq!(
        c.pump(),
        [(SEND, 1), (SEND, 2), (SEND, 3), (SEND, 4), (SEND, 5)]
    );
}

#[test]
fn a_send_once_message_never_overtakes_one_queued_on_the_proxy() {
    // The stream is congested: the proxy is not read, and what the task
    // sends through it waits there; a send-once message sent next takes the
    // one-shot stream, not a place ahead of it on the stream.
    let mut c = client();
    c.send(1);
    assert_eq!(c.pump(), [(SEND, 1)]);
    c.congested(true);
    c.send(3);
    c.send_once(0, 2);
    assert_eq!(c.pump(), [(ONCE[0], 2)]);
    c.congested(false);
    assert_eq!(c.pump(), [(SEND, 3)]);
}

#[test]
fn a_proxy_back_in_the_set_with_messages_queued_is_not_overtaken() {
    // Its queued message joins the set behind a send-once message sent after
    // it, which is taken first: it takes the one-shot stream.
    let mut c = client();
    c.congested(true);
    c.send(1);
    c.send_once(0, 2);
    c.congested(false);
    assert_eq!(c.pump(), [(ONCE[0], 2), (SEND, 1)]);
    // Once the proxy's queue is seen empty, the send right's stream is
    // taken again.
    c.send_once(1, 4);
    assert_eq!(c.pump(), [(SEND, 4)]);
}

/// Send-once rights that left before the server exported its port's send
/// right to the client could not name that right's stream; the send right,
/// a new export, names them, and their messages then take its stream in
/// their place. A one-shot export it does not name keeps the one-shot
/// stream.
#[test]
fn a_new_send_export_names_the_one_shot_exports_that_left_before_it() {
    let given = |named: &[u64]| {
        let mut once = message_with_right(send_right(&[]));
        once.items = vec![once_rights(None)];
        client_given(vec![once, message_with_right(send_right(named))])
    };
    let mut c = given(&ONCE);
    c.send(1);
    c.send_once(0, 2);
    c.send(3);
    c.send_once(1, 4);
    assert_eq!(c.pump(), [(SEND, 1), (SEND, 2), (SEND, 3), (SEND, 4)]);
    let mut c = given(&ONCE[1..]);
    c.send(1);
    c.send_once(0, 2);
    c.send_once(1, 4);
    assert_eq!(c.pump(), [(SEND, 1), (ONCE[0], 2), (SEND, 4)]);
}

/// The exporter's side: a new send export of a port names the live one-shot
/// exports to the same peer of send-once rights to that port; an export that
/// exists already, and send-once rights to another port, are not named.
#[test]
fn the_exporter_names_its_one_shot_exports_of_the_port_in_a_new_send_export() {
    let mut k = Kernel::new(Abi::X86_64);
    let mut t = Translator::new(&mut k, "server", b"send-once order test").unwrap();
    let server = k.create_task();
    let p = k.port_allocate(server, PortRight::Receive).unwrap();
    let q = k.port_allocate(server, PortRight::Receive).unwrap();
    let global = GlobalId {
        home: "client".into(),
        port: 4,
        incarnation: 1,
    };
    let (to_client, _) = t
        .bootstrap_import(&mut k, "client", 2, global, server)
        .unwrap();
    // What the server's messages to the client carry, in order.
    let sent = |k: &mut Kernel, t: &mut Translator, disposition: u8, port: Name| {
        let m = Message::simple(
            to_client,
            msg_type::COPY_SEND,
            1,
            vec![Item::port(disposition, port)],
        );
        k.send(server, m, false).unwrap();
        first_right_out(k, t).1
    };
    let once_to = |r: WireRef| match r {
        WireRef::OnceExport {
            id,
            port_stream: None,
        } => id,
        r => panic!("a one-shot export naming no stream: {r:?}"),
    };
    let named = |r: WireRef| match r {
        WireRef::SenderExport { once_exports, .. } => once_exports,
        r => panic!("a send export: {r:?}"),
    };
    let first = once_to(sent(&mut k, &mut t, msg_type::MAKE_SEND_ONCE, p));
    let _other_port = once_to(sent(&mut k, &mut t, msg_type::MAKE_SEND_ONCE, q));
    let second = once_to(sent(&mut k, &mut t, msg_type::MAKE_SEND_ONCE, p));
    let mut both = named(sent(&mut k, &mut t, msg_type::MAKE_SEND, p));
    both.sort_unstable();
    assert_eq!(both, [first, second]);
    assert_eq!(named(sent(&mut k, &mut t, msg_type::MAKE_SEND, p)), []);
    // Those made once the export exists name its stream themselves.
    let third = sent(&mut k, &mut t, msg_type::MAKE_SEND_ONCE, p);
    assert!(
        matches!(
            third,
            WireRef::OnceExport {
                port_stream: Some(_),
                ..
            }
        ),
        "{third:?}"
    );
    k.check_invariants().unwrap();
}

/// A send-once right the server exported, sent back to the server, goes
/// home as that export (`WireRef::OnceHome`): its one-shot proxy goes
/// without a send-once notification (nothing reports it destroyed), and a
/// later `Dead` for it finds nothing.
#[test]
fn a_send_once_right_sent_back_to_its_exporter_goes_home() {
    let mut c = client();
    let carrying = Message::simple(
        c.to_port,
        msg_type::COPY_SEND,
        12,
        vec![Item::port(msg_type::MOVE_SEND_ONCE, c.once[0])],
    );
    c.k.send(c.task, carrying, false).unwrap();
    let (stream, right) = first_right_out(&mut c.k, &mut c.t);
    assert_eq!(stream, SEND, "on the send right's stream");
    assert_eq!(right, WireRef::OnceHome { id: ONCE[0] });
    // Nothing of the right is left in netmsg's space, not even a dead name.
    let left = c.k.names(c.t.task()).unwrap();
    assert!(
        left.iter()
            .all(|&(_, ty, _)| ty & (port_type::SEND_ONCE | port_type::DEAD_NAME) == 0),
        "{left:?}"
    );
    let server = c.t.peer_id("server");
    let dead = StreamFrame::Release(netmsg::release::Frame::Dead { id: ONCE[0] });
    let out = c.t.on_frame(&mut c.k, server, ONCE[0], dead).unwrap();
    assert!(out.is_empty(), "{out:?}");
    let mut out = Vec::new();
    assert!(c.t.pump(&mut c.k, &mut out).is_empty());
    assert!(out.is_empty(), "{out:?}");
    // The other one-shot proxy is still there, and still goes its way.
    c.send_once(1, 4);
    assert_eq!(c.pump(), [(SEND, 4)]);
    c.k.check_invariants().unwrap();
}

//! A task's messages through a send-once right keep their place among its
//! messages through its send right to the same port (`docs/protocol.md`,
//! "Send-once rights in order"), and never overtake one still queued on the
//! send right's proxy: while the proxy's stream is congested, and after the
//! proxy comes back to netmsg's port set with messages queued (they join
//! behind those queued there meanwhile), the one-shot stream is taken.

use mach::types::msg_type;
use mach::{Abi, Item, Kernel, Message, Name, PortRight, RecvOptions, TaskId};
use netmsg::release::SEND_ONCE_ID_BIT;
use netmsg::translate::{Out, Translator};
use netmsg::wire::{Form, GlobalId, StreamFrame, WireItem, WireRef, WireRight};

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

/// A client task holding, from the server, a send right to its port and two
/// send-once rights to it that name the send right's stream.
fn client() -> Client {
    let mut k = Kernel::new(Abi::X86_64);
    let mut t = Translator::new(&mut k, "client", b"send-once order test").unwrap();
    let server = t.peer_id("server");
    let task = k.create_task();
    let inbox = k.port_allocate(task, PortRight::Receive).unwrap();
    let (to_inbox, _) = t
        .bootstrap_export(&mut k, "server", task, inbox, msg_type::MAKE_SEND)
        .unwrap();
    let right = |form, reference| WireRight {
        form,
        reference,
        watermark: 0,
        after: Vec::new(),
        home_stream: None,
    };
    let send = right(
        Form::Send,
        WireRef::SenderExport {
            id: SEND,
            global: GlobalId {
                home: "server".into(),
                port: 9,
                incarnation: 1,
            },
        },
    );
    let once = ONCE
        .iter()
        .map(|&id| {
            let reference = WireRef::OnceExport {
                id,
                port_stream: Some(SEND),
            };
            right(Form::SendOnce, reference)
        })
        .collect();
    let mut m = message_with_right(send);
    m.items.push(WireItem::Rights {
        form: Form::SendOnce,
        inline: true,
        longform: false,
        deallocate: false,
        rights: once,
    });
    t.on_frame(&mut k, server, to_inbox, StreamFrame::Message(m))
        .unwrap();
    let m = k
        .receive(task, inbox, RecvOptions::default())
        .unwrap()
        .expect("the rights");
    let to_port = m.body[0].names_payload().unwrap()[0];
    let once = m.body[1].names_payload().unwrap().to_vec();
    Client {
        k,
        t,
        task,
        to_port,
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

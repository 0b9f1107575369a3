//! A peer that sends anything that decodes: frames for unknown exports,
//! releases of rights never sent, rights of the wrong kind, duplicate
//! one-shot IDs, acknowledgements out of turn. The translator answers with
//! errors, never panics, and the kernel stays consistent.

use mach::types::{msg_type, port_type};
use mach::{Abi, Kernel, Name, PortRight, TaskId};
use netmsg::release::{Frame, MOVED_ID_BIT, SEND_ONCE_ID_BIT};
use netmsg::translate::{TranslateError, Translator};
use netmsg::wire::{
    Dependency, Embargo, Form, GlobalId, HomeLane, MovedPort, Origin, StreamFrame, WireItem,
    WireMessage, WireRef, WireRight, MAX_MOVED_SEND_ONCE,
};
use proptest::prelude::*;

#[path = "common/frames.rs"]
mod frames;
#[path = "common/valid_right.rs"]
mod valid_right;
use frames::message_with_right;
use valid_right::valid_right;

fn id() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..4, (0u64..4).prop_map(|i| i | SEND_ONCE_ID_BIT)]
}

fn moved_id() -> impl Strategy<Value = u64> {
    (0u64..3).prop_map(|i| i | MOVED_ID_BIT)
}

fn right() -> impl Strategy<Value = WireRight> {
    let reference = prop_oneof![
        Just(WireRef::Null),
        Just(WireRef::Dead),
        // Identities naming the peer's ports, or forging this node's,
        // naming one-shot exports, live or not.
        (
            id(),
            node(),
            1u64..4,
            0u64..2,
            prop::collection::vec(id(), 0..2)
        )
            .prop_map(frames::sender_export),
        id().prop_map(|id| WireRef::ReceiverExport { id }),
        id().prop_map(|id| WireRef::OnceHome { id }),
        (id(), prop::option::of(id()))
            .prop_map(|(id, port_stream)| WireRef::OnceExport { id, port_stream }),
        // Receive rights of ports the peer moved here (or did not), with or
        // without notification requests (their IDs may clash).
        (moved_id(), prop::option::of(id()), prop::option::of(id())).prop_map(
            |(id, no_senders, port_destroyed)| {
                let request = |once: u64| {
                    Box::new(valid_right(
                        Form::SendOnce,
                        WireRef::OnceExport {
                            id: once | SEND_ONCE_ID_BIT,
                            port_stream: None,
                        },
                        0,
                        Vec::new(),
                        None,
                    ))
                };
                WireRef::MovedReceive {
                    id,
                    no_senders: no_senders.map(request),
                    port_destroyed: port_destroyed.map(request),
                }
            },
        ),
    ];
    (
        prop_oneof![Just(Form::Send), Just(Form::SendOnce), Just(Form::Receive)],
        reference,
        0u64..3,
        dependencies(),
        prop::option::of(
            (node(), 0u64..4, 0u64..2).prop_map(|(home, stream, era)| HomeLane {
                home,
                stream,
                era,
            }),
        ),
    )
        .prop_map(|(form, reference, watermark, after, home_stream)| {
            valid_right(form, reference, watermark, after, home_stream)
        })
}

fn node() -> impl Strategy<Value = String> {
    prop_oneof![Just("evil".to_owned()), Just("home".to_owned())]
}

fn origin() -> impl Strategy<Value = Origin> {
    (node(), 0u64..2).prop_map(|(node, era)| Origin { node, era })
}

fn dependencies() -> impl Strategy<Value = Vec<Dependency>> {
    prop::collection::vec(
        (node(), node(), 0u64..4, prop::option::of(origin()), 1u64..3).prop_map(
            |(via, home, port, origin, position)| Dependency {
                via,
                home,
                port,
                origin,
                position,
            },
        ),
        0..2,
    )
}

fn frame() -> impl Strategy<Value = (u64, StreamFrame)> {
    let message = (
        prop::option::of(right()),
        prop::collection::vec(right(), 0..3),
        (
            prop_oneof![Just(Form::Send), Just(Form::SendOnce)],
            prop::option::of(id()),
        ),
        dependencies(),
        prop::option::of(origin()),
    )
        .prop_map(|(reply, rights, (dest_form, once), dependencies, origin)| {
            let items = rights
                .into_iter()
                .map(|r| WireItem::Rights {
                    form: r.form,
                    inline: true,
                    longform: false,
                    deallocate: false,
                    rights: vec![r],
                })
                .collect();
            StreamFrame::Message(WireMessage {
                id: 7,
                other_bits: 0,
                marker: false,
                dest_form,
                once: once
                    .and_then(std::num::NonZeroU64::new)
                    .filter(|_| dest_form == Form::SendOnce),
                reply,
                origin,
                dependencies,
                items,
            })
        });
    let release = prop_oneof![
        (id(), 1u64..4).prop_map(|(id, count)| Frame::Release { id, count }),
        id().prop_map(|id| Frame::Dead { id }),
        (id(), 0u64..3).prop_map(|(id, left)| Frame::Ack { id, left }),
        id().prop_map(|id| Frame::SendOnceDestroyed { id }),
        (id(), 1u64..3).prop_map(|(id, count)| Frame::HomeArrived { id, count }),
    ]
    .prop_map(StreamFrame::Release);
    let lane_ended = (id(), origin()).prop_map(|(id, origin)| StreamFrame::LaneEnded {
        id: id & !SEND_ONCE_ID_BIT,
        origin,
    });
    // An embargo naming one of the peer's exports (which home may import),
    // with counts true or not.
    let embargo = prop::option::of(
        (
            0u64..4,
            prop_oneof![0u64..2, Just(u64::MAX)],
            prop_oneof![0u64..3, Just(u64::MAX)],
            prop_oneof![0u32..3, Just(MAX_MOVED_SEND_ONCE)],
            prop::collection::vec(
                (
                    prop::option::of(origin()),
                    prop_oneof![0u64..3, Just(u64::MAX)],
                ),
                0..3,
            ),
        )
            .prop_map(|(export, era, queued, send_once, lanes)| Embargo {
                export,
                era,
                queued,
                send_once,
                lanes,
            }),
    );
    // (Identities as the rights above name them: a moved port may be one
    // this node already reaches.)
    let moved = (
        moved_id(),
        node(),
        1u64..4,
        0u64..2,
        (0u32..3, 0u32..2),
        embargo,
    )
        .prop_map(
            |(id, home, port, incarnation, (qlimit, send_once), embargo)| {
                StreamFrame::Moved(MovedPort {
                    id,
                    global: GlobalId {
                        home,
                        port,
                        incarnation,
                    },
                    mscount: 0,
                    seqno: 0,
                    qlimit,
                    send_once,
                    embargo,
                })
            },
        );
    (
        prop_oneof![id(), moved_id()],
        prop_oneof![message, release, lane_ended, moved],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300), ..ProptestConfig::default() })]
    #[test]
    fn any_decodable_frame_is_answered_without_panic(frames in prop::collection::vec(frame(), 1..40)) {
        answered(frames)?;
    }
}

/// Frames from the peer "evil" to a node exporting a server's port to it
/// twice: each is taken or refused as the peer's error, never panics or
/// breaks the kernel's invariants, and losing the link frees everything.
fn answered(frames: Vec<(u64, StreamFrame)>) -> Result<(), TestCaseError> {
    let mut k = Kernel::new(Abi::X86_64);
    let mut t = Translator::new(&mut k, "home", b"hostile-peer test").unwrap();
    let evil = t.peer_id("evil");
    // Something real to aim at: two exports of a server's port.
    let server = k.create_task();
    let p = k.port_allocate(server, PortRight::Receive).unwrap();
    for _ in 0..2 {
        t.bootstrap_export(&mut k, "evil", server, p, msg_type::MAKE_SEND)
            .unwrap();
    }
    for (stream, f) in frames {
        match t.on_frame(&mut k, evil, stream, f) {
            Ok(_) | Err(TranslateError::Protocol { .. }) => {}
            Err(e) => panic!("not the peer's fault? {e}"),
        }
        // (A held frame freed by a death in the pump may turn out bad
        // then: still the peer's fault.)
        let errors = t.pump(&mut k, &mut Vec::new());
        prop_assert!(
            errors
                .iter()
                .all(|e| matches!(e, TranslateError::Protocol { .. })),
            "{errors:?}"
        );
        k.check_invariants().map_err(TestCaseError::fail)?;
    }
    // Losing the link afterwards frees everything the peer held.
    let _ = t
        .link_lost(&mut k, "evil")
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let errors = t.pump(&mut k, &mut Vec::new());
    prop_assert!(errors.is_empty());
    k.check_invariants().map_err(TestCaseError::fail)?;
    Ok(())
}

/// The kernel is consistent, and losing the link to "evil" leaves the
/// translator idle and the kernel consistent.
fn ends_clean(k: &mut Kernel, t: &mut Translator) {
    k.check_invariants().unwrap();
    t.link_lost(k, "evil").unwrap();
    assert!(t.pump(k, &mut Vec::new()).is_empty());
    k.check_invariants().unwrap();
    assert!(t.is_idle());
}

/// This node ("home") with a server task.
fn home() -> (Kernel, Translator, TaskId) {
    let mut k = Kernel::new(Abi::X86_64);
    let t = Translator::new(&mut k, "home", b"hostile-peer test").unwrap();
    let server = k.create_task();
    (k, t, server)
}

/// A new port of `server`'s, exported to the peer "evil": its name and the
/// export's ID.
fn exported_port(k: &mut Kernel, t: &mut Translator, server: TaskId) -> (Name, u64) {
    let p = k.port_allocate(server, PortRight::Receive).unwrap();
    let (id, _) = t
        .bootstrap_export(k, "evil", server, p, msg_type::MAKE_SEND)
        .unwrap();
    (p, id)
}

/// Message `id`, by a send right, with nothing in it, as a frame.
fn plain(id: i32) -> StreamFrame {
    StreamFrame::Message(WireMessage {
        id,
        other_bits: 0,
        marker: false,
        dest_form: Form::Send,
        once: None,
        reply: None,
        origin: None,
        dependencies: Vec::new(),
        items: Vec::new(),
    })
}

/// A message carrying one right, as a frame.
fn with_right(right: WireRight) -> StreamFrame {
    StreamFrame::Message(message_with_right(right))
}

/// A peer whose embargo lies (its counts are never reached): the receive
/// right it moves to a port this node reaches through it never arrives, and
/// what a task sends that port waits; nothing else is hurt, and losing the
/// link frees it all.
#[test]
fn a_lying_embargo_holds_only_its_own_port() {
    let (mut k, mut t, server) = home();
    let evil = t.peer_id("evil");
    let (p, to_p) = exported_port(&mut k, &mut t, server);
    let global = GlobalId {
        home: "evil".into(),
        port: 5,
        incarnation: 0,
    };
    let send = |reference| WireRight {
        form: Form::Send,
        reference,
        watermark: 0,
        after: Vec::new(),
        home_stream: None,
    };
    // The server gets a send right to the peer's port (import 7).
    let right = send(WireRef::SenderExport {
        id: 7,
        global: global.clone(),
        once_exports: Vec::new(),
    });
    t.on_frame(&mut k, evil, to_p, with_right(right)).unwrap();
    let opts = mach::RecvOptions::default();
    let m = k.receive(server, p, opts).unwrap().unwrap();
    let q = m.body[0].names_payload().unwrap()[0];
    // The peer moves that port here, with an embargo it will never meet.
    let moved = MOVED_ID_BIT | 1;
    let frame = StreamFrame::Moved(MovedPort {
        id: moved,
        global,
        mscount: 0,
        seqno: 0,
        qlimit: 5,
        send_once: 0,
        embargo: Some(Embargo {
            export: 7,
            era: 0,
            queued: u64::MAX,
            send_once: MAX_MOVED_SEND_ONCE,
            lanes: vec![(None, 0)],
        }),
    });
    t.on_frame(&mut k, evil, moved, frame).unwrap();
    let carrying = WireRight {
        form: Form::Receive,
        reference: WireRef::MovedReceive {
            id: moved,
            no_senders: None,
            port_destroyed: None,
        },
        watermark: 0,
        after: Vec::new(),
        home_stream: None,
    };
    t.on_frame(&mut k, evil, to_p, with_right(carrying))
        .unwrap();
    assert!(k.receive(server, p, opts).unwrap().is_none(), "held");
    // The server's messages to that port wait (parked, not forwarded).
    let msg = mach::Message::simple(q, msg_type::COPY_SEND, 9, vec![mach::Item::int32(1)]);
    k.send(server, msg, false).unwrap();
    let mut out = Vec::new();
    let errors = t.pump(&mut k, &mut out);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(out.iter().all(|o| o.id != 7), "{out:?}");
    // Other ports' traffic goes on (the stream of `p` waits behind the
    // carrying message, in order): a plain message to another port arrives.
    let (p2, to_p2) = exported_port(&mut k, &mut t, server);
    t.on_frame(&mut k, evil, to_p2, plain(2)).unwrap();
    assert_eq!(k.receive(server, p2, opts).unwrap().unwrap().id, 2);
    k.check_invariants().unwrap();
    // The link goes: the port and what waited for it go, the server's
    // right is dead, netmsg holds nothing of the peer.
    t.link_lost(&mut k, "evil").unwrap();
    let errors = t.pump(&mut k, &mut Vec::new());
    assert!(errors.is_empty(), "{errors:?}");
    k.check_invariants().unwrap();
    assert!(t.is_idle());
}

/// A peer whose right coming home claims a watermark it never reaches, on
/// the stream of a port whose queue is full: the stream is read on past the
/// full queue for the held message, but only for about one stream window of
/// blocked sends (1 MiB), or 1024 of them; then it stalls again
/// (back-pressure holds), and losing the link frees it all.
#[test]
fn a_lying_watermark_reads_a_full_stream_only_so_far() {
    // (64 KiB messages stop at the bytes, empty ones at the count.)
    for (bytes, most) in [(64 << 10, 16), (0, 1024)] {
        let (mut k, mut t, server) = home();
        let evil = t.peer_id("evil");
        let (p, to_p) = exported_port(&mut k, &mut t, server);
        k.port_set_qlimit(server, p, 1).unwrap();
        let (q, to_q) = exported_port(&mut k, &mut t, server);
        let frame = || {
            let mut m = plain(3);
            if let StreamFrame::Message(m) = &mut m {
                if bytes > 0 {
                    m.items.push(WireItem::Data {
                        type_name: 9,
                        size: 8,
                        number: bytes as u32,
                        inline: false,
                        longform: true,
                        deallocate: false,
                        bytes: vec![7; bytes],
                    });
                }
            }
            m
        };
        // The queue fills, and the next message waits for room.
        for _ in 0..2 {
            t.on_frame(&mut k, evil, to_p, frame()).unwrap();
        }
        assert!(t.stalled(&mut k, evil, to_p).is_some(), "back-pressure");
        // A right to p coming home on q's stream, after more than will ever come.
        let home = WireRight {
            form: Form::Send,
            reference: WireRef::ReceiverExport { id: to_p },
            watermark: u64::MAX,
            after: Vec::new(),
            home_stream: None,
        };
        t.on_frame(&mut k, evil, to_q, with_right(home)).unwrap();
        let opts = mach::RecvOptions::default();
        assert!(k.receive(server, q, opts).unwrap().is_none(), "held");
        // p's stream is read on, a bounded number of messages, then not.
        let mut read_on = 0;
        while t.stalled(&mut k, evil, to_p).is_none() {
            t.on_frame(&mut k, evil, to_p, frame()).unwrap();
            read_on += 1;
            assert!(read_on <= most, "{bytes} bytes: read on without bound");
        }
        assert!(read_on >= most * 9 / 10, "{bytes} bytes: {read_on}");
        k.check_invariants().unwrap();
        t.link_lost(&mut k, "evil").unwrap();
        let errors = t.pump(&mut k, &mut Vec::new());
        assert!(errors.is_empty(), "{errors:?}");
        k.check_invariants().unwrap();
    }
}

/// A server's port p, exported to the peer "evil", and the server's request
/// to a port of the peer's (import 7) with a send-once reply right to p: the
/// reply right's one-shot export, and the port stream it names.
struct Requested {
    k: Kernel,
    t: Translator,
    server: TaskId,
    evil: netmsg::translate::PeerId,
    p: Name,
    to_p: u64,
    once: u64,
    port_stream: Option<u64>,
}

fn requested() -> Requested {
    let (mut k, mut t, server) = home();
    let evil = t.peer_id("evil");
    let (p, to_p) = exported_port(&mut k, &mut t, server);
    let opts = mach::RecvOptions::default();
    let right = WireRight {
        form: Form::Send,
        reference: WireRef::SenderExport {
            id: 7,
            global: GlobalId {
                home: "evil".into(),
                port: 5,
                incarnation: 0,
            },
            once_exports: Vec::new(),
        },
        watermark: 0,
        after: Vec::new(),
        home_stream: None,
    };
    t.on_frame(&mut k, evil, to_p, with_right(right)).unwrap();
    let m = k.receive(server, p, opts).unwrap().unwrap();
    let q = m.body[0].names_payload().unwrap()[0];
    let request = mach::Message::new(
        q,
        msg_type::COPY_SEND,
        p,
        msg_type::MAKE_SEND_ONCE,
        1,
        vec![],
    );
    k.send(server, request, false).unwrap();
    let mut out = Vec::new();
    assert!(t.pump(&mut k, &mut out).is_empty());
    let (once, port_stream) = out
        .iter()
        .find_map(|o| match &o.frame {
            StreamFrame::Message(m) => match m.reply.as_ref()?.reference {
                WireRef::OnceExport { id, port_stream } => Some((id, port_stream)),
                _ => None,
            },
            _ => None,
        })
        .expect("the request, with its reply right");
    Requested {
        k,
        t,
        server,
        evil,
        p,
        to_p,
        once,
        port_stream,
    }
}

/// A send-once right to a port the peer reaches through a send right names
/// that right's stream; a message through it on that stream is delivered as
/// through the send-once right, once. Naming a send export, or a one-shot
/// export on its own stream, or one already used, is refused; the port's
/// other traffic goes on.
#[test]
fn a_message_on_a_send_stream_names_only_a_live_one_shot_export() {
    let Requested {
        mut k,
        mut t,
        server,
        evil,
        p,
        to_p,
        once,
        port_stream,
    } = requested();
    assert_eq!(port_stream, Some(to_p), "names the send right's stream");
    let opts = mach::RecvOptions::default();
    let through = |once: Option<u64>| {
        let mut f = plain(3);
        if let StreamFrame::Message(m) = &mut f {
            m.dest_form = Form::SendOnce;
            m.once = once.and_then(std::num::NonZeroU64::new);
        }
        f
    };
    let refused = |r: Result<Vec<netmsg::translate::Out>, TranslateError>| {
        matches!(r, Err(TranslateError::Protocol { .. }))
    };
    // A send export named as one-shot, a one-shot export on its own stream.
    assert!(refused(t.on_frame(&mut k, evil, to_p, through(Some(to_p)))));
    assert!(refused(t.on_frame(&mut k, evil, once, through(Some(once)))));
    assert!(k.receive(server, p, opts).unwrap().is_none());
    // The right one: delivered through the send-once right, then settled.
    t.on_frame(&mut k, evil, to_p, through(Some(once))).unwrap();
    let m = k.receive(server, p, opts).unwrap().unwrap();
    assert_eq!((m.id, m.local_type()), (3, msg_type::PORT_SEND_ONCE));
    assert!(refused(t.on_frame(&mut k, evil, to_p, through(Some(once)))));
    // p's stream goes on.
    t.on_frame(&mut k, evil, to_p, plain(4)).unwrap();
    assert_eq!(k.receive(server, p, opts).unwrap().unwrap().id, 4);
    ends_clean(&mut k, &mut t);
}

/// A message through a one-shot export on the stream of the peer's send
/// right to the same port, read past a send of that stream that waits for
/// room in the port's full queue (a stream is read on when a held frame
/// waits for its later messages), goes in after that send, as one kernel's
/// sender would have sent it only after its blocked send.
#[test]
fn a_send_once_message_read_past_a_send_waiting_for_room_goes_in_after_it() {
    let Requested {
        mut k,
        mut t,
        server,
        evil: peer,
        p,
        to_p,
        once,
        ..
    } = requested();
    let opts = mach::RecvOptions::default();
    let mut reply = plain(3);
    if let StreamFrame::Message(m) = &mut reply {
        m.dest_form = Form::SendOnce;
        m.once = std::num::NonZeroU64::new(once);
    }
    // p holds one message: 10 fills it, 11 waits for room, and the reply,
    // read past 11, waits behind it.
    k.port_set_qlimit(server, p, 1).unwrap();
    t.on_frame(&mut k, peer, to_p, plain(10)).unwrap();
    t.on_frame(&mut k, peer, to_p, plain(11)).unwrap();
    assert!(t.stalled(&mut k, peer, to_p).is_some(), "11 waits for room");
    t.on_frame(&mut k, peer, to_p, reply).unwrap();
    let mut order = Vec::new();
    while let Some(m) = k.receive(server, p, opts).unwrap() {
        order.push(m.id);
        assert!(t.pump(&mut k, &mut Vec::new()).is_empty());
    }
    assert_eq!(order, [10, 11, 3]);
    t.link_lost(&mut k, "evil").unwrap();
    assert!(t.pump(&mut k, &mut Vec::new()).is_empty());
    k.check_invariants().unwrap();
    assert!(t.is_idle());
}

/// The peer sends the reply right back (`WireRef::OnceHome`): the server's
/// task gets the send-once right netmsg held for the export, which reaches
/// p, and the export is settled. The same right home again, a one-shot
/// export home twice in one message, or a send right of it, is refused.
#[test]
fn a_one_shot_export_coming_home_gives_back_the_right_it_holds() {
    let Requested {
        mut k,
        mut t,
        server,
        evil,
        p,
        to_p,
        once,
        ..
    } = requested();
    let opts = mach::RecvOptions::default();
    let home = |rights: Vec<WireRight>| {
        let mut f = plain(5);
        if let StreamFrame::Message(m) = &mut f {
            m.items = vec![WireItem::Rights {
                form: rights[0].form,
                inline: true,
                longform: false,
                deallocate: false,
                rights,
            }];
        }
        f
    };
    let right = |form, id| WireRight {
        form,
        reference: WireRef::OnceHome { id },
        watermark: 0,
        after: Vec::new(),
        home_stream: None,
    };
    let refused = |r: Result<Vec<netmsg::translate::Out>, TranslateError>| {
        matches!(r, Err(TranslateError::Protocol { .. }))
    };
    let twice = home(vec![
        right(Form::SendOnce, once),
        right(Form::SendOnce, once),
    ]);
    assert!(refused(t.on_frame(&mut k, evil, to_p, twice)));
    assert!(refused(t.on_frame(
        &mut k,
        evil,
        to_p,
        home(vec![right(Form::Send, once)])
    )));
    assert!(k.receive(server, p, opts).unwrap().is_none());
    t.on_frame(&mut k, evil, to_p, home(vec![right(Form::SendOnce, once)]))
        .unwrap();
    // Its dead-name request was cancelled before it left netmsg's space:
    // no port-deleted notification waits for netmsg.
    let waiting: usize = k
        .names(t.task())
        .unwrap()
        .iter()
        .filter_map(|&(name, _, _)| k.queued(t.task(), name).ok())
        .sum();
    assert_eq!(waiting, 0);
    let m = k.receive(server, p, opts).unwrap().unwrap();
    let back = m.body[0].names_payload().unwrap()[0];
    assert_eq!(k.port_type(server, back).unwrap(), port_type::SEND_ONCE);
    // Through it, the server's task reaches p itself.
    let through = mach::Message::simple(back, msg_type::MOVE_SEND_ONCE, 6, vec![]);
    k.send(server, through, false).unwrap();
    let m = k.receive(server, p, opts).unwrap().unwrap();
    assert_eq!((m.id, m.local_type()), (6, msg_type::PORT_SEND_ONCE));
    assert!(t.pump(&mut k, &mut Vec::new()).is_empty());
    // Settled: not again.
    assert!(refused(t.on_frame(
        &mut k,
        evil,
        to_p,
        home(vec![right(Form::SendOnce, once)])
    )));
    ends_clean(&mut k, &mut t);
}

/// A reply right whose port died comes home dead, and nothing of it is
/// left, whether netmsg has handled the port's dead-name notification yet
/// or not (it may be on its way).
#[test]
fn a_one_shot_export_of_a_dead_port_comes_home_dead() {
    for pump_first in [false, true] {
        let Requested {
            mut k,
            mut t,
            server,
            evil,
            p,
            once,
            ..
        } = requested();
        // The server's other port, which the peer reaches, carries the right.
        let (q, to_q) = exported_port(&mut k, &mut t, server);
        k.port_destroy(server, p).unwrap();
        if pump_first {
            let mut out = Vec::new();
            assert!(t.pump(&mut k, &mut out).is_empty());
            let dead = |o: &netmsg::translate::Out| matches!(o.frame, StreamFrame::Release(Frame::Dead { id }) if id == once);
            assert!(out.iter().any(dead), "{out:?}");
        }
        let mut f = plain(7);
        if let StreamFrame::Message(m) = &mut f {
            m.items = vec![WireItem::Rights {
                form: Form::SendOnce,
                inline: true,
                longform: false,
                deallocate: false,
                rights: vec![WireRight {
                    form: Form::SendOnce,
                    reference: WireRef::OnceHome { id: once },
                    watermark: 0,
                    after: Vec::new(),
                    home_stream: None,
                }],
            }];
        }
        t.on_frame(&mut k, evil, to_q, f).unwrap();
        let m = k
            .receive(server, q, mach::RecvOptions::default())
            .unwrap()
            .unwrap();
        assert_eq!(m.body[0].names_payload().unwrap(), [mach::NAME_DEAD]);
        assert!(t.pump(&mut k, &mut Vec::new()).is_empty());
        ends_clean(&mut k, &mut t);
        // netmsg's space holds no right of the port, dead or not.
        let left = k.names(t.task()).unwrap();
        let of_the_port = port_type::SEND_ONCE | port_type::DEAD_NAME;
        assert!(
            left.iter().all(|&(_, ty, _)| ty & of_the_port == 0),
            "{left:?}"
        );
    }
}

/// Found by `any_decodable_frame_is_answered_without_panic`: a message
/// whose reply right is of receive form (netmsg never sends one), to a port
/// that moved here with its own receive right queued in it, was taken and
/// then refused where netmsg passed it on, as if the local side had erred.
/// It is the peer's error, refused before anything of it is taken.
#[test]
fn a_reply_right_of_receive_form_is_the_peers_error() {
    let moved = MOVED_ID_BIT;
    let message = |reply, items, origin| {
        StreamFrame::Message(WireMessage {
            id: 7,
            other_bits: 0,
            marker: false,
            dest_form: Form::Send,
            once: None,
            reply,
            origin,
            dependencies: Vec::new(),
            items,
        })
    };
    let right = |form, reference| WireRight {
        form,
        reference,
        watermark: 0,
        after: Vec::new(),
        home_stream: None,
    };
    let request = right(
        Form::SendOnce,
        WireRef::OnceExport {
            id: SEND_ONCE_ID_BIT,
            port_stream: None,
        },
    );
    let own_receive_right = WireItem::Rights {
        form: Form::Receive,
        inline: true,
        longform: false,
        deallocate: false,
        rights: vec![right(
            Form::Receive,
            WireRef::MovedReceive {
                id: moved,
                no_senders: None,
                port_destroyed: Some(Box::new(request)),
            },
        )],
    };
    let lane = Origin {
        node: "evil".into(),
        era: 0,
    };
    let port = MovedPort {
        id: moved,
        global: GlobalId {
            home: "evil".into(),
            port: 1,
            incarnation: 0,
        },
        mscount: 0,
        seqno: 0,
        qlimit: 0,
        send_once: 0,
        embargo: None,
    };
    let reply = right(Form::Receive, WireRef::Null);
    answered(vec![
        (moved, message(None, vec![own_receive_right], Some(lane))),
        (moved, StreamFrame::Moved(port)),
        (moved, message(Some(reply), Vec::new(), None)),
    ])
    .unwrap();
}

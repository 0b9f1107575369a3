//! The port-stream message encoding: exact round trips, strict rejection.

use netmsg::release::{Frame, MOVED_ID_BIT, SEND_ONCE_ID_BIT};
use netmsg::translate::ABOUT_SENDERS_EXPORT;
use netmsg::wire::{
    fuzz_decode, fuzz_decode_one_shot, Dependency, Embargo, Form, GlobalId, HomeLane, MovedPort,
    OneShotFrame, Origin, StreamFrame, WireError, WireItem, WireMessage, WireRef, WireRight,
    MAX_EMBARGO_LANES, MAX_MOVED_SEND_ONCE,
};
use proptest::prelude::*;
use std::num::NonZeroU64;

#[path = "common/frames.rs"]
mod frames;
#[path = "common/valid_right.rs"]
mod valid_right;
use frames::message_with_right;
use valid_right::valid_right;

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![Just(Form::Receive), Just(Form::Send), Just(Form::SendOnce)]
}

fn node() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,20}"
}

fn reference() -> impl Strategy<Value = WireRef> {
    prop_oneof![
        Just(WireRef::Null),
        Just(WireRef::Dead),
        (
            any::<u64>(),
            node(),
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(any::<u64>().prop_map(|id| id | SEND_ONCE_ID_BIT), 0..3)
        )
            .prop_map(frames::sender_export),
        any::<u64>().prop_map(|id| WireRef::ReceiverExport { id }),
        any::<u64>().prop_map(|id| WireRef::OnceHome { id }),
        (any::<u64>(), prop::option::of(any::<u64>()))
            .prop_map(|(id, port_stream)| WireRef::OnceExport { id, port_stream }),
        (any::<u64>(), request(), request()).prop_map(|(id, no_senders, port_destroyed)| {
            WireRef::MovedReceive {
                id: (id | MOVED_ID_BIT) & !SEND_ONCE_ID_BIT,
                no_senders,
                port_destroyed,
            }
        }),
    ]
}

/// A moved port's notification request: none, or an exported send-once
/// right.
fn request() -> impl Strategy<Value = Option<Box<WireRight>>> {
    prop::option::of((any::<u64>(), any::<u64>())).prop_map(|request| {
        request.map(|(once, watermark)| {
            Box::new(valid_right(
                Form::SendOnce,
                WireRef::OnceExport {
                    id: once | SEND_ONCE_ID_BIT,
                    port_stream: None,
                },
                watermark,
                Vec::new(),
                None,
            ))
        })
    })
}

fn right(form: Form) -> impl Strategy<Value = WireRight> {
    (
        reference(),
        any::<u64>(),
        prop::collection::vec(dependency(), 0..3),
        prop::option::of(
            (node(), any::<u64>(), any::<u64>()).prop_map(|(home, stream, era)| HomeLane {
                home,
                stream,
                era,
            }),
        ),
    )
        .prop_map(move |(reference, watermark, after, home_stream)| {
            valid_right(form, reference, watermark, after, home_stream)
        })
}

fn origin() -> impl Strategy<Value = Origin> {
    (node(), any::<u64>()).prop_map(|(node, era)| Origin { node, era })
}

fn dependency() -> impl Strategy<Value = Dependency> {
    (
        node(),
        node(),
        any::<u64>(),
        prop::option::of(origin()),
        1..=u64::MAX,
    )
        .prop_map(|(via, home, port, origin, position)| Dependency {
            via,
            home,
            port,
            origin,
            position,
        })
}

fn item() -> impl Strategy<Value = WireItem> {
    let data = (
        prop::sample::select(vec![0u8, 1, 2, 8, 9, 10, 11, 12, 15]),
        1u16..64,
        0u32..64,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(|(type_name, size, number, inline, longform, deallocate)| {
            let len = (u64::from(number) * u64::from(size)).div_ceil(8) as usize;
            prop::collection::vec(any::<u8>(), len).prop_map(move |bytes| WireItem::Data {
                type_name,
                size,
                number,
                inline,
                longform,
                deallocate: deallocate && !inline,
                bytes,
            })
        });
    let rights = (form(), any::<bool>(), any::<bool>()).prop_flat_map(|(f, inline, longform)| {
        prop::collection::vec(right(f), 0..5).prop_map(move |rights| WireItem::Rights {
            form: f,
            inline,
            longform,
            deallocate: false,
            rights,
        })
    });
    prop_oneof![data, rights]
}

fn message() -> impl Strategy<Value = WireMessage> {
    (
        any::<i32>(),
        any::<u32>().prop_map(|b| b & 0x7fff_0000),
        (
            prop_oneof![Just(Form::Send), Just(Form::SendOnce)],
            prop::option::of(any::<u64>()),
        ),
        prop::option::of(prop_oneof![Just(Form::Send), Just(Form::SendOnce)].prop_flat_map(right)),
        (
            prop::option::of(origin()),
            prop::collection::vec(dependency(), 0..3),
        ),
        (prop::collection::vec(item(), 0..6), any::<bool>()),
    )
        .prop_map(
            |(
                id,
                other_bits,
                (dest_form, once),
                reply,
                (origin, dependencies),
                (items, marker),
            )| {
                // (A flush marker carries no rights.)
                let marker = marker
                    && reply.is_none()
                    && !items.iter().any(|i| matches!(i, WireItem::Rights { .. }));
                WireMessage {
                    id,
                    other_bits,
                    marker,
                    dest_form,
                    // (Only a message through a send-once right has one.)
                    once: once
                        .and_then(NonZeroU64::new)
                        .filter(|_| dest_form == Form::SendOnce),
                    reply,
                    origin,
                    dependencies,
                    items,
                }
            },
        )
}

proptest! {
    #[test]
    fn encode_then_decode_is_exact(m in message()) {
        let frame = m.encode();
        prop_assert_eq!(WireMessage::decode(&frame).unwrap(), m);
    }

    #[test]
    fn any_bytes_decode_or_fail_cleanly(m in message(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4), cut in any::<prop::sample::Index>()) {
        let frame = damaged(m.encode(), flips);
        fuzz_decode(&frame);
        fuzz_decode(&frame[..cut.index(frame.len() + 1)]);
    }
}

#[test]
fn malformed_frames_are_rejected_with_the_reason() {
    let m = WireMessage {
        id: 2203,
        other_bits: 0,
        marker: false,
        dest_form: Form::Send,
        once: None,
        reply: Some(WireRight {
            form: Form::SendOnce,
            reference: WireRef::OnceExport {
                id: 7,
                port_stream: None,
            },
            watermark: 3,
            after: vec![],
            home_stream: None,
        }),
        origin: None,
        dependencies: vec![],
        items: vec![WireItem::Data {
            type_name: 2,
            size: 32,
            number: 1,
            inline: true,
            longform: false,
            deallocate: false,
            bytes: vec![1, 0, 0, 0],
        }],
    };
    let good = m.encode();
    let err = |bytes: &[u8]| WireMessage::decode(bytes).unwrap_err();
    assert!(matches!(
        err(&good[..good.len() - 1]),
        WireError::Truncated { .. }
    ));
    let mut extra = good.clone();
    extra.push(0);
    assert_eq!(err(&extra), WireError::Trailing(1));
    let mut version = good.clone();
    version[1] = 9;
    assert!(matches!(
        err(&version),
        WireError::Invalid {
            what: "version",
            value: 9,
            ..
        }
    ));
    let mut dest = good.clone();
    dest[10] = 16;
    assert!(matches!(
        err(&dest),
        WireError::Invalid {
            what: "destination form",
            ..
        }
    ));
    // A message through a send-once right may name a one-shot export (not
    // export 0): the form's byte says so, then its ID.
    let through_once = WireMessage {
        dest_form: Form::SendOnce,
        once: NonZeroU64::new(5 | SEND_ONCE_ID_BIT),
        ..m.clone()
    }
    .encode();
    assert_eq!(through_once.len(), good.len() + 8);
    assert_eq!(through_once[10], 18 | 0x80);
    let mut zero = through_once;
    zero[11..19].fill(0);
    assert!(matches!(
        err(&zero),
        WireError::Invalid {
            what: "one-shot export",
            value: 0,
            ..
        }
    ));
    // A count far beyond the frame is refused before anything is allocated.
    let mut items = good.clone();
    let n = items.len();
    let count_at = n - (1 + 1 + 2 + 4 + 1 + 4 + 4) - 4;
    items[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        err(&items),
        WireError::Truncated { what: "items", .. }
    ));
    let mut length = good;
    let n = length.len();
    length[n - 5] = 3; // data length byte says 3 for one 32-bit element
    assert!(matches!(
        err(&length),
        WireError::DataLength { .. } | WireError::Truncated { .. } | WireError::Trailing(_)
    ));
}

#[test]
fn wire_corpus_holds_the_fuzz_property() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/wire_decode");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        // Seeds: real encodings from the property generator's shapes.
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        for i in 0..8 {
            let m =
                proptest::strategy::ValueTree::current(&message().new_tree(&mut runner).unwrap());
            std::fs::write(dir.join(format!("seed-{i}")), m.encode()).unwrap();
            let f = proptest::strategy::ValueTree::current(
                &release_frame().new_tree(&mut runner).unwrap(),
            );
            std::fs::write(
                dir.join(format!("release-{i}")),
                StreamFrame::Release(f).encode(),
            )
            .unwrap();
            let o =
                proptest::strategy::ValueTree::current(&origin().new_tree(&mut runner).unwrap());
            let lane = StreamFrame::LaneEnded { id: i, origin: o };
            std::fs::write(dir.join(format!("lane-ended-{i}")), lane.encode()).unwrap();
            let moved =
                proptest::strategy::ValueTree::current(&moved().new_tree(&mut runner).unwrap());
            std::fs::write(dir.join(format!("moved-{i}")), moved.encode()).unwrap();
        }
    }
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        fuzz_decode(&std::fs::read(entry.unwrap().path()).unwrap());
        count += 1;
    }
    assert!(count >= 3, "{count} inputs in {}", dir.display());
}

fn moved() -> impl Strategy<Value = StreamFrame> {
    (
        any::<u64>(),
        node(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        (0u32..=16, 0u32..=4096),
        proptest::option::of(embargo()),
    )
        .prop_map(
            |(id, home, port, incarnation, mscount, seqno, (qlimit, send_once), embargo)| {
                StreamFrame::Moved(MovedPort {
                    id: (id | MOVED_ID_BIT) & !SEND_ONCE_ID_BIT,
                    global: GlobalId {
                        home,
                        port,
                        incarnation,
                    },
                    mscount,
                    seqno,
                    qlimit,
                    send_once,
                    embargo,
                })
            },
        )
}

fn embargo() -> impl Strategy<Value = Embargo> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        0..=MAX_MOVED_SEND_ONCE,
        proptest::collection::btree_map(proptest::option::of(origin()), any::<u64>(), 0..4),
    )
        .prop_map(|(export, era, queued, send_once, lanes)| {
            let export = export & !SEND_ONCE_ID_BIT;
            // (Export 0 counts only the queue.)
            let counted = export != 0;
            Embargo {
                export,
                era: if counted { era } else { 0 },
                queued,
                send_once: if counted { send_once } else { 0 },
                lanes: if counted {
                    lanes.into_iter().collect()
                } else {
                    Vec::new()
                },
            }
        })
}

fn release_frame() -> impl Strategy<Value = Frame> {
    let send_id = any::<u64>().prop_map(|id| id & !SEND_ONCE_ID_BIT);
    let once_id = any::<u64>().prop_map(|id| id | SEND_ONCE_ID_BIT);
    prop_oneof![
        (send_id.clone(), 1..=u64::MAX).prop_map(|(id, count)| Frame::Release { id, count }),
        any::<u64>().prop_map(|id| Frame::Dead { id }),
        (send_id.clone(), any::<u64>()).prop_map(|(id, left)| Frame::Ack { id, left }),
        (send_id, 1..=u64::MAX).prop_map(|(id, count)| Frame::HomeArrived { id, count }),
        once_id.prop_map(|id| Frame::SendOnceDestroyed { id }),
    ]
}

/// `bytes` with some bytes flipped.
fn damaged(mut bytes: Vec<u8>, flips: Vec<(prop::sample::Index, u8)>) -> Vec<u8> {
    for (i, v) in flips {
        let at = i.index(bytes.len());
        bytes[at] ^= v;
    }
    bytes
}

proptest! {
    #[test]
    fn release_frames_round_trip_exactly(f in release_frame(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3)) {
        let frame = StreamFrame::Release(f);
        let bytes = frame.encode();
        prop_assert_eq!(StreamFrame::decode(&bytes).unwrap(), frame);
        fuzz_decode(&damaged(bytes, flips));
    }

    #[test]
    fn lane_ends_round_trip_exactly(id in any::<u64>().prop_map(|i| i & !SEND_ONCE_ID_BIT), origin in origin(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3)) {
        let frame = StreamFrame::LaneEnded { id, origin };
        let bytes = frame.encode();
        prop_assert_eq!(StreamFrame::decode(&bytes).unwrap(), frame);
        fuzz_decode(&damaged(bytes, flips));
    }

    #[test]
    fn port_states_round_trip_exactly(frame in moved(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3)) {
        let bytes = frame.encode();
        prop_assert_eq!(StreamFrame::decode(&bytes).unwrap(), frame);
        fuzz_decode(&damaged(bytes, flips));
    }

    #[test]
    fn messages_decode_as_stream_frames(m in message()) {
        let bytes = m.encode();
        prop_assert_eq!(StreamFrame::decode(&bytes).unwrap(), StreamFrame::Message(m));
    }
}

#[test]
fn release_frames_the_protocol_never_sends_are_rejected() {
    let encode = |f: Frame| StreamFrame::Release(f).encode();
    let err = |bytes: &[u8]| StreamFrame::decode(bytes).unwrap_err();
    // Exact layout: type, version, id, count.
    let release = encode(Frame::Release { id: 7, count: 3 });
    assert_eq!(
        release,
        [2, 2, 7, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]
    );
    assert!(matches!(
        err(&encode(Frame::Release { id: 7, count: 0 })),
        WireError::Invalid {
            what: "release count",
            ..
        }
    ));
    assert!(matches!(
        err(&encode(Frame::HomeArrived { id: 7, count: 0 })),
        WireError::Invalid {
            what: "arrival count",
            ..
        }
    ));
    let once = 5 | SEND_ONCE_ID_BIT;
    for wrong in [
        encode(Frame::Release { id: once, count: 1 }),
        encode(Frame::Ack { id: once, left: 0 }),
        encode(Frame::HomeArrived { id: once, count: 1 }),
        encode(Frame::SendOnceDestroyed { id: 5 }),
    ] {
        assert!(
            matches!(err(&wrong), WireError::Invalid { at: 2, .. }),
            "{wrong:?}"
        );
    }
    // Dead may name either kind of export.
    assert!(StreamFrame::decode(&encode(Frame::Dead { id: once })).is_ok());
    let mut trailing = release.clone();
    trailing.push(0);
    assert_eq!(err(&trailing), WireError::Trailing(1));
    assert!(matches!(
        err(&release[..10]),
        WireError::Truncated {
            what: "release count",
            ..
        }
    ));
    let mut version = release.clone();
    version[1] = 1; // the format before one-shot port streams
    assert!(matches!(
        err(&version),
        WireError::Invalid {
            what: "version",
            ..
        }
    ));
    assert!(matches!(
        err(&[9, 1]),
        WireError::Invalid {
            what: "frame type",
            value: 9,
            ..
        }
    ));
}

#[test]
fn positions_the_protocol_never_sends_are_rejected() {
    let dep = Dependency {
        via: "node-b".into(),
        home: "node-a".into(),
        port: 4,
        origin: Some(Origin {
            node: "node-c".into(),
            era: 2,
        }),
        position: 2,
    };
    let right = |reference, after: Vec<Dependency>, home_stream| WireRight {
        form: Form::Send,
        reference,
        watermark: 0,
        after,
        home_stream,
    };
    let message = |reply| WireMessage {
        id: 1,
        other_bits: 0,
        marker: false,
        dest_form: Form::Send,
        once: None,
        reply: Some(reply),
        origin: Some(Origin {
            node: "node-a".into(),
            era: 0,
        }),
        dependencies: vec![dep.clone()],
        items: vec![],
    };
    let good = message(right(
        WireRef::SenderExport {
            id: 3,
            global: GlobalId {
                home: "node-b".into(),
                port: 9,
                incarnation: 1,
            },
            once_exports: Vec::new(),
        },
        vec![dep.clone()],
        Some(HomeLane {
            home: "node-c".into(),
            stream: 4,
            era: 1,
        }),
    ));
    assert_eq!(WireMessage::decode(&good.encode()).unwrap(), good);
    let err = |m: WireMessage| WireMessage::decode(&m.encode()).unwrap_err();
    assert!(matches!(
        err(message(right(WireRef::Dead, vec![dep.clone()], None))),
        WireError::Invalid {
            what: "positions on a null, dead, receive or one-shot right",
            ..
        }
    ));
    let once = |after, home_stream| WireRight {
        form: Form::SendOnce,
        ..right(
            WireRef::OnceExport {
                id: 3,
                port_stream: None,
            },
            after,
            home_stream,
        )
    };
    let plain = message(once(vec![], None));
    assert_eq!(WireMessage::decode(&plain.encode()).unwrap(), plain);
    assert!(matches!(
        err(message(once(vec![dep.clone()], None))),
        WireError::Invalid {
            what: "positions on a null, dead, receive or one-shot right",
            ..
        }
    ));
    let lane = Some(HomeLane {
        home: "node-c".into(),
        stream: 4,
        era: 0,
    });
    for not_exported in [
        right(WireRef::ReceiverExport { id: 3 }, vec![], lane.clone()),
        once(vec![], lane),
    ] {
        assert!(matches!(
            err(message(not_exported)),
            WireError::Invalid {
                what: "home stream on a right the sender does not export",
                ..
            }
        ));
    }
    let zero = WireMessage {
        dependencies: vec![Dependency {
            position: 0,
            ..dep.clone()
        }],
        ..good.clone()
    };
    assert!(matches!(
        err(zero),
        WireError::Invalid {
            what: "dependency position",
            ..
        }
    ));
    let marker_with_right = WireMessage {
        marker: true,
        ..good.clone()
    };
    assert!(matches!(
        err(marker_with_right),
        WireError::Invalid {
            what: "flush marker with rights",
            ..
        }
    ));
    let bad_origin = WireMessage {
        origin: Some(Origin {
            node: "no spaces".into(),
            era: 0,
        }),
        ..good
    };
    assert!(matches!(
        err(bad_origin),
        WireError::Invalid {
            what: "node name",
            ..
        }
    ));
}

#[test]
fn lane_ends_the_protocol_never_sends_are_rejected() {
    let origin = Origin {
        node: "node-b".into(),
        era: 1,
    };
    let good = StreamFrame::LaneEnded {
        id: 7,
        origin: origin.clone(),
    }
    .encode();
    // type, version, id, origin presence, origin name, era.
    assert_eq!(good.len(), 2 + 8 + 1 + 4 + 6 + 8);
    let err = |bytes: &[u8]| StreamFrame::decode(bytes).unwrap_err();
    let once = StreamFrame::LaneEnded {
        id: 7 | SEND_ONCE_ID_BIT,
        origin,
    }
    .encode();
    assert!(matches!(err(&once), WireError::Invalid { at: 2, .. }));
    let mut none = good.clone();
    none.truncate(10);
    none.push(0);
    assert!(matches!(
        err(&none),
        WireError::Invalid {
            what: "lane end without its lane",
            ..
        }
    ));
    let mut trailing = good;
    trailing.push(0);
    assert_eq!(err(&trailing), WireError::Trailing(1));
}

#[test]
fn receive_rights_the_protocol_never_sends_are_rejected() {
    let request = WireRight {
        form: Form::SendOnce,
        reference: WireRef::OnceExport {
            id: 5 | SEND_ONCE_ID_BIT,
            port_stream: None,
        },
        watermark: 0,
        after: Vec::new(),
        home_stream: None,
    };
    let moved = |id: u64, no_senders: Option<WireRight>| WireRight {
        form: Form::Receive,
        reference: WireRef::MovedReceive {
            id,
            no_senders: no_senders.map(Box::new),
            port_destroyed: None,
        },
        watermark: 0,
        after: Vec::new(),
        home_stream: None,
    };
    let message = message_with_right;
    let decode = |right: WireRight| WireMessage::decode(&message(right).encode());
    let good = moved(MOVED_ID_BIT | 1, Some(request.clone()));
    assert_eq!(decode(good.clone()).unwrap(), message(good.clone()));
    // An ID the sender did not choose, or a one-shot one.
    assert!(decode(moved(1, None)).is_err());
    assert!(decode(moved(MOVED_ID_BIT | SEND_ONCE_ID_BIT | 1, None)).is_err());
    // A request that is not an exported send-once right, or holds a receive
    // right itself.
    let send = WireRight {
        form: Form::Send,
        reference: WireRef::SenderExport {
            id: 5,
            global: GlobalId {
                home: "node-a".into(),
                port: 9,
                incarnation: 3,
            },
            once_exports: Vec::new(),
        },
        ..request.clone()
    };
    assert!(decode(moved(MOVED_ID_BIT | 1, Some(send.clone()))).is_err());
    // The same for a port-destroyed request.
    let destroyed = |request: WireRight| WireRight {
        reference: WireRef::MovedReceive {
            id: MOVED_ID_BIT | 1,
            no_senders: None,
            port_destroyed: Some(Box::new(request)),
        },
        ..good.clone()
    };
    let both = destroyed(request.clone());
    assert_eq!(decode(both.clone()).unwrap(), message(both));
    assert!(decode(destroyed(send)).is_err());
    assert!(decode(moved(MOVED_ID_BIT | 1, Some(good.clone()))).is_err());
    // A watermark or positions on a receive right.
    assert!(decode(WireRight {
        watermark: 1,
        ..good.clone()
    })
    .is_err());
    // A moved reference under another form, and a receive right any other way.
    assert!(decode(WireRight {
        form: Form::Send,
        ..good.clone()
    })
    .is_err());
    assert!(decode(WireRight {
        form: Form::Receive,
        reference: WireRef::ReceiverExport { id: 3 },
        ..request.clone()
    })
    .is_err());
    // A receive right as the reply port.
    let mut reply = message(good.clone());
    reply.items.clear();
    reply.reply = Some(good);
    assert!(WireMessage::decode(&reply.encode()).is_err());
    // Null and dead receive rights are fine.
    for reference in [WireRef::Null, WireRef::Dead] {
        let r = WireRight {
            form: Form::Receive,
            reference,
            watermark: 0,
            after: Vec::new(),
            home_stream: None,
        };
        assert!(decode(r).is_ok());
    }
    // Port state frames: an ID the sender did not choose, a queue limit
    // Mach does not have, too many send-once rights, trailing bytes.
    let moved = |id: u64, qlimit: u32, send_once: u32, embargo: Option<Embargo>| {
        StreamFrame::Moved(MovedPort {
            id,
            global: GlobalId {
                home: "node-a".into(),
                port: 9,
                incarnation: 3,
            },
            mscount: 0,
            seqno: 0,
            qlimit,
            send_once,
            embargo,
        })
        .encode()
    };
    let state = |id: u64, qlimit: u32, send_once: u32| moved(id, qlimit, send_once, None);
    assert!(StreamFrame::decode(&state(MOVED_ID_BIT | 2, 5, 4096)).is_ok());
    assert!(StreamFrame::decode(&state(2, 5, 0)).is_err());
    assert!(StreamFrame::decode(&state(MOVED_ID_BIT | 2, 17, 0)).is_err());
    assert!(StreamFrame::decode(&state(MOVED_ID_BIT | 2, 5, 4097)).is_err());
    let mut trailing = state(MOVED_ID_BIT | 2, 5, 0);
    trailing.push(0);
    assert_eq!(
        StreamFrame::decode(&trailing).unwrap_err(),
        WireError::Trailing(1)
    );
    // Embargoes: a one-shot export, too many lanes, a lane counted twice,
    // counts with no export (which counts only the queue).
    let with = |embargo: Embargo| moved(MOVED_ID_BIT | 2, 5, 0, Some(embargo));
    let lane = |n: u64| {
        Some(Origin {
            node: format!("node-{n}"),
            era: 0,
        })
    };
    let good = Embargo {
        export: 4,
        era: 1,
        queued: 2,
        send_once: MAX_MOVED_SEND_ONCE,
        lanes: vec![(None, 3), (lane(1), 1)],
    };
    assert!(StreamFrame::decode(&with(good.clone())).is_ok());
    assert!(StreamFrame::decode(&with(Embargo {
        send_once: MAX_MOVED_SEND_ONCE + 1,
        ..good.clone()
    }))
    .is_err());
    assert!(StreamFrame::decode(&with(Embargo {
        export: 4 | SEND_ONCE_ID_BIT,
        ..good.clone()
    }))
    .is_err());
    assert!(StreamFrame::decode(&with(Embargo {
        lanes: (0..=MAX_EMBARGO_LANES as u64)
            .map(|n| (lane(n), 1))
            .collect(),
        ..good.clone()
    }))
    .is_err());
    assert!(StreamFrame::decode(&with(Embargo {
        lanes: vec![(None, 3), (None, 1)],
        ..good.clone()
    }))
    .is_err());
    let queue_only = Embargo {
        export: 0,
        era: 0,
        queued: 2,
        send_once: 0,
        lanes: vec![],
    };
    assert!(StreamFrame::decode(&with(queue_only.clone())).is_ok());
    for counts in [
        Embargo {
            era: 1,
            ..queue_only.clone()
        },
        Embargo {
            send_once: 1,
            ..queue_only.clone()
        },
        Embargo {
            lanes: vec![(None, 1)],
            ..queue_only
        },
    ] {
        assert!(matches!(
            StreamFrame::decode(&with(counts)),
            Err(WireError::Invalid {
                what: "counts in an embargo of no export",
                ..
            })
        ));
    }
}

/// A one-shot port stream ID: `SEND_ONCE_ID_BIT`, maybe the about-sender
/// bit, and an export number that is not 0 and below `MOVED_ID_BIT`.
fn one_shot_stream() -> impl Strategy<Value = u64> {
    (1..MOVED_ID_BIT, any::<bool>())
        .prop_map(|(n, about)| n | SEND_ONCE_ID_BIT | if about { ABOUT_SENDERS_EXPORT } else { 0 })
}

fn any_frame() -> impl Strategy<Value = StreamFrame> {
    prop_oneof![
        message().prop_map(StreamFrame::Message),
        release_frame().prop_map(StreamFrame::Release),
        moved(),
    ]
}

proptest! {
    #[test]
    fn one_shot_frames_round_trip_exactly(stream in one_shot_stream(), frame in any_frame(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3), cut in any::<prop::sample::Index>()) {
        let tagged = OneShotFrame { stream, frame };
        let bytes = tagged.encode();
        prop_assert_eq!(&bytes[..8], stream.to_le_bytes());
        prop_assert_eq!(&bytes[8..], tagged.frame.encode());
        prop_assert_eq!(OneShotFrame::decode(&bytes).unwrap(), tagged);
        let bytes = damaged(bytes, flips);
        fuzz_decode_one_shot(&bytes);
        fuzz_decode_one_shot(&bytes[..cut.index(bytes.len() + 1)]);
    }
}

proptest! {
    /// The driver encodes a turn's frames one after another into one
    /// buffer and splits each off: each is exactly its own encoding.
    #[test]
    fn frames_split_off_one_buffer_are_each_their_own(frames in prop::collection::vec((prop::option::of(one_shot_stream()), any_frame()), 1..6)) {
        let mut buf = bytes::BytesMut::with_capacity(64);
        let mut split = Vec::new();
        for (tag, frame) in &frames {
            match tag {
                Some(stream) => frame.encode_tagged_into(*stream, &mut buf),
                None => frame.encode_into(&mut buf),
            }
            split.push(buf.split().freeze());
        }
        prop_assert!(buf.is_empty());
        let mut whole = Vec::new();
        for ((tag, frame), bytes) in frames.iter().zip(&split) {
            let alone = match tag {
                Some(stream) => frame.encode_tagged(*stream),
                None => frame.encode(),
            };
            prop_assert_eq!(&bytes[..], &alone[..]);
            whole.extend_from_slice(&alone);
        }
        // Encoding appends to what the buffer holds.
        for (tag, frame) in &frames {
            match tag {
                Some(stream) => frame.encode_tagged_into(*stream, &mut buf),
                None => frame.encode_into(&mut buf),
            }
        }
        prop_assert_eq!(&buf[..], &whole[..]);
    }
}

#[test]
fn one_shot_tags_name_only_one_shot_port_streams() {
    let frame = StreamFrame::Release(Frame::SendOnceDestroyed {
        id: 3 | SEND_ONCE_ID_BIT,
    });
    let tagged = |stream: u64| frame.encode_tagged(stream);
    for stream in [
        3,                                       // a send export's stream
        3 | ABOUT_SENDERS_EXPORT,                // its about-sender stream
        SEND_ONCE_ID_BIT,                        // export 0: the one-shot stream itself
        SEND_ONCE_ID_BIT | ABOUT_SENDERS_EXPORT, // nor its about-sender twin
        3 | SEND_ONCE_ID_BIT | MOVED_ID_BIT,     // a moved port's export is never one-shot
    ] {
        assert_eq!(
            OneShotFrame::decode(&tagged(stream)),
            Err(WireError::Invalid {
                at: 0,
                what: "one-shot stream id",
                value: stream
            }),
            "{stream:#x}"
        );
    }
    assert!(matches!(
        OneShotFrame::decode(&tagged(3 | SEND_ONCE_ID_BIT)[..7]),
        Err(WireError::Truncated { at: 0, .. })
    ));
    // The frame's own errors are reported where they are in the input.
    let mut bad_version = tagged(3 | SEND_ONCE_ID_BIT);
    bad_version[9] = 9;
    assert_eq!(
        OneShotFrame::decode(&bad_version),
        Err(WireError::Invalid {
            at: 9,
            what: "version",
            value: 9
        })
    );
    assert_eq!(
        OneShotFrame::decode(&tagged(3 | SEND_ONCE_ID_BIT | ABOUT_SENDERS_EXPORT)).map(|f| f.frame),
        Ok(frame.clone())
    );
}

#[test]
fn one_shot_corpus_holds_the_fuzz_property() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/one_shot_decode");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        for i in 0..8 {
            let stream = proptest::strategy::ValueTree::current(
                &one_shot_stream().new_tree(&mut runner).unwrap(),
            );
            let frame =
                proptest::strategy::ValueTree::current(&any_frame().new_tree(&mut runner).unwrap());
            let tagged = OneShotFrame { stream, frame };
            std::fs::write(dir.join(format!("seed-{i}")), tagged.encode()).unwrap();
        }
    }
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        fuzz_decode_one_shot(&std::fs::read(entry.unwrap().path()).unwrap());
        count += 1;
    }
    assert!(count >= 8, "{count} inputs in {}", dir.display());
}

/// A send-once right travels only as a one-shot export (no global
/// identity: send-once rights are never merged), and a one-shot export only
/// as a send-once right.
#[test]
fn references_of_another_form_are_rejected() {
    let global = GlobalId {
        home: "node-a".into(),
        port: 9,
        incarnation: 1,
    };
    let right = |form, reference| WireRight {
        form,
        reference,
        watermark: 0,
        after: vec![],
        home_stream: None,
    };
    let decode = |r: WireRight| WireMessage::decode(&message_with_right(r).encode());
    let once_id = 5 | SEND_ONCE_ID_BIT;
    for good in [
        right(
            Form::SendOnce,
            WireRef::OnceExport {
                id: once_id,
                port_stream: None,
            },
        ),
        right(Form::SendOnce, WireRef::Null),
        right(Form::SendOnce, WireRef::Dead),
        right(Form::Send, WireRef::ReceiverExport { id: 5 }),
        right(Form::SendOnce, WireRef::OnceHome { id: once_id }),
        right(
            Form::Send,
            WireRef::SenderExport {
                id: 5,
                global: global.clone(),
                once_exports: Vec::new(),
            },
        ),
    ] {
        assert_eq!(decode(good.clone()).unwrap(), message_with_right(good));
    }
    for bad in [
        right(
            Form::SendOnce,
            WireRef::SenderExport {
                id: once_id,
                global: global.clone(),
                once_exports: Vec::new(),
            },
        ),
        right(Form::SendOnce, WireRef::ReceiverExport { id: once_id }),
        right(Form::Send, WireRef::OnceHome { id: once_id }),
        right(
            Form::Send,
            WireRef::OnceExport {
                id: once_id,
                port_stream: None,
            },
        ),
        right(
            Form::Receive,
            WireRef::OnceExport {
                id: once_id,
                port_stream: None,
            },
        ),
    ] {
        assert!(
            matches!(
                decode(bad.clone()),
                Err(WireError::Invalid {
                    what: "reference tag for the right's form",
                    ..
                })
            ),
            "{bad:?}"
        );
    }
}

/// A send export naming one-shot exports (tag 7) names at least one, each
/// a one-shot ID.
#[test]
fn a_send_export_names_only_one_shot_exports() {
    let once_id = 5 | SEND_ONCE_ID_BIT;
    let right = WireRight {
        form: Form::Send,
        reference: WireRef::SenderExport {
            id: 3,
            global: GlobalId {
                home: "node-a".into(),
                port: 9,
                incarnation: 1,
            },
            once_exports: vec![once_id],
        },
        watermark: 0,
        after: vec![],
        home_stream: None,
    };
    let good = message_with_right(right).encode();
    assert_eq!(
        WireMessage::decode(&good),
        Ok(message_with_right(
            match WireMessage::decode(&good).unwrap().items.remove(0) {
                WireItem::Rights { mut rights, .. } => rights.remove(0),
                other => panic!("{other:?}"),
            }
        ))
    );
    let at = good
        .windows(8)
        .position(|w| w == once_id.to_le_bytes())
        .expect("the ID");
    let mut not_once = good.clone();
    not_once[at + 7] &= 0x7f;
    assert_eq!(
        WireMessage::decode(&not_once),
        Err(WireError::Invalid {
            at,
            what: "one-shot export id",
            value: 5
        })
    );
    let mut none = good.clone();
    none[at - 2] = 0;
    assert_eq!(
        WireMessage::decode(&none),
        Err(WireError::Invalid {
            at: at - 2,
            what: "one-shot export count (tag 7 names at least one)",
            value: 0
        })
    );
}

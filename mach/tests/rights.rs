//! Rights, dispositions and port operations, each case asserting what GNU Mach
//! does (the routine is named in the case or the test).

use mach::types::{msg_type as mt, notify_id, port_type as ty, PortRight};
use mach::{
    Item, KernReturn, Kernel, Message, MsgReturn, Name, Payload, RecvOptions, SendStatus, TaskId,
    NAME_DEAD, NAME_NULL,
};

fn kernel() -> (Kernel, TaskId, TaskId) {
    let mut k = Kernel::default();
    let a = k.create_task();
    let b = k.create_task();
    (k, a, b)
}

fn recv(k: &mut Kernel, t: TaskId, name: Name) -> Message {
    k.receive(t, name, RecvOptions::default())
        .expect("receive")
        .expect("a message is queued")
}

fn nothing_queued(k: &mut Kernel, t: TaskId, name: Name) -> bool {
    k.receive(t, name, RecvOptions::default())
        .expect("receive")
        .is_none()
}

fn send(k: &mut Kernel, t: TaskId, msg: Message) {
    assert_eq!(k.send(t, msg, false).expect("send"), SendStatus::Sent);
}

fn make_send(k: &mut Kernel, t: TaskId, name: Name) {
    k.port_insert_right(t, name, t, name, mt::MAKE_SEND)
        .expect("insert MAKE_SEND");
}

/// Gives `to` a send right (made from `from`'s receive right) and returns its name.
fn give_send(k: &mut Kernel, from: TaskId, name: Name, to: TaskId) -> Name {
    k.port_extract_right(from, name, mt::MAKE_SEND, to)
        .expect("extract")
        .0
}

fn give_send_once(k: &mut Kernel, from: TaskId, name: Name, to: TaskId) -> Name {
    k.port_extract_right(from, name, mt::MAKE_SEND_ONCE, to)
        .expect("extract")
        .0
}

fn receive_right(k: &mut Kernel, t: TaskId) -> Name {
    k.port_allocate(t, PortRight::Receive).unwrap()
}

fn notified_name(msg: &Message) -> Name {
    let bytes = msg.body[0].bytes_payload().expect("name item");
    u32::from_le_bytes(bytes.try_into().unwrap())
}

fn type_of(k: &mut Kernel, t: TaskId, name: Name) -> Result<u32, KernReturn> {
    k.port_type(t, name)
}

// ----- dispositions × held rights (ipc_right_copyin) ---------------------------------

#[derive(Clone, Copy, Debug)]
enum Held {
    Receive,
    SendReceive,
    Send,
    SendOnce,
    DeadName,
    PortSet,
    Nothing,
}

/// What the sender holds under the name after the send, if it succeeds.
#[derive(Clone, Copy, Debug, PartialEq)]
enum After {
    Gone,
    Same,
    Type(u32, u32),
}

fn hold(k: &mut Kernel, a: TaskId, b: TaskId, held: Held) -> Name {
    match held {
        Held::Receive => receive_right(k, a),
        Held::SendReceive => {
            let n = receive_right(k, a);
            make_send(k, a, n);
            n
        }
        Held::Send => {
            let n = receive_right(k, b);
            give_send(k, b, n, a)
        }
        Held::SendOnce => {
            let n = receive_right(k, b);
            give_send_once(k, b, n, a)
        }
        Held::DeadName => k.port_allocate(a, PortRight::DeadName).unwrap(),
        Held::PortSet => k.port_allocate(a, PortRight::PortSet).unwrap(),
        Held::Nothing => 0x4242,
    }
}

#[test]
fn every_disposition_against_every_right_matches_ipc_right_copyin() {
    use After::*;
    use Held::*;
    let invalid = Err(MsgReturn::SendInvalidRight);
    #[rustfmt::skip]
    let table: &[(u8, Held, Result<u8, MsgReturn>, After)] = &[
        // MOVE_RECEIVE needs the receive right; a send right under the name stays.
        (mt::MOVE_RECEIVE, Receive, Ok(mt::PORT_RECEIVE), Gone),
        (mt::MOVE_RECEIVE, SendReceive, Ok(mt::PORT_RECEIVE), Type(ty::SEND, 1)),
        (mt::MOVE_RECEIVE, Send, invalid, Same),
        (mt::MOVE_RECEIVE, SendOnce, invalid, Same),
        (mt::MOVE_RECEIVE, DeadName, invalid, Same),
        (mt::MOVE_RECEIVE, PortSet, invalid, Same),
        (mt::MOVE_RECEIVE, Nothing, invalid, Same),
        // MOVE_SEND takes one user reference; a dead name moves as MACH_PORT_DEAD.
        (mt::MOVE_SEND, Receive, invalid, Same),
        (mt::MOVE_SEND, SendReceive, Ok(mt::PORT_SEND), Type(ty::RECEIVE, 0)),
        (mt::MOVE_SEND, Send, Ok(mt::PORT_SEND), Gone),
        (mt::MOVE_SEND, SendOnce, invalid, Same),
        (mt::MOVE_SEND, DeadName, Ok(mt::PORT_SEND), Gone),
        (mt::MOVE_SEND, PortSet, invalid, Same),
        (mt::MOVE_SEND, Nothing, invalid, Same),
        // MOVE_SEND_ONCE needs a send-once right.
        (mt::MOVE_SEND_ONCE, Receive, invalid, Same),
        (mt::MOVE_SEND_ONCE, SendReceive, invalid, Same),
        (mt::MOVE_SEND_ONCE, Send, invalid, Same),
        (mt::MOVE_SEND_ONCE, SendOnce, Ok(mt::PORT_SEND_ONCE), Gone),
        (mt::MOVE_SEND_ONCE, DeadName, Ok(mt::PORT_SEND_ONCE), Gone),
        (mt::MOVE_SEND_ONCE, PortSet, invalid, Same),
        (mt::MOVE_SEND_ONCE, Nothing, invalid, Same),
        // COPY_SEND leaves the sender's references alone.
        (mt::COPY_SEND, Receive, invalid, Same),
        (mt::COPY_SEND, SendReceive, Ok(mt::PORT_SEND), Same),
        (mt::COPY_SEND, Send, Ok(mt::PORT_SEND), Same),
        (mt::COPY_SEND, SendOnce, invalid, Same),
        (mt::COPY_SEND, DeadName, Ok(mt::PORT_SEND), Same),
        (mt::COPY_SEND, PortSet, invalid, Same),
        (mt::COPY_SEND, Nothing, invalid, Same),
        // MAKE_SEND and MAKE_SEND_ONCE need the receive right.
        (mt::MAKE_SEND, Receive, Ok(mt::PORT_SEND), Same),
        (mt::MAKE_SEND, SendReceive, Ok(mt::PORT_SEND), Same),
        (mt::MAKE_SEND, Send, invalid, Same),
        (mt::MAKE_SEND, SendOnce, invalid, Same),
        (mt::MAKE_SEND, DeadName, invalid, Same),
        (mt::MAKE_SEND, PortSet, invalid, Same),
        (mt::MAKE_SEND, Nothing, invalid, Same),
        (mt::MAKE_SEND_ONCE, Receive, Ok(mt::PORT_SEND_ONCE), Same),
        (mt::MAKE_SEND_ONCE, SendReceive, Ok(mt::PORT_SEND_ONCE), Same),
        (mt::MAKE_SEND_ONCE, Send, invalid, Same),
        (mt::MAKE_SEND_ONCE, SendOnce, invalid, Same),
        (mt::MAKE_SEND_ONCE, DeadName, invalid, Same),
        (mt::MAKE_SEND_ONCE, PortSet, invalid, Same),
        (mt::MAKE_SEND_ONCE, Nothing, invalid, Same),
    ];
    for &(disposition, held, expected, after) in table {
        let (mut k, a, b) = kernel();
        let server = receive_right(&mut k, b);
        let to_server = give_send(&mut k, b, server, a);
        let name = hold(&mut k, a, b, held);
        let before = (type_of(&mut k, a, name), k.port_get_refs(a, name, 0));
        let msg = Message::simple(
            to_server,
            mt::COPY_SEND,
            1000,
            vec![Item::port(disposition, name)],
        );
        let result = k.send(a, msg, false);
        let case = format!("{} with {held:?}", mt::name(disposition));
        match expected {
            Ok(form) => {
                assert!(result.is_ok(), "{case}: {result:?}");
                let got = recv(&mut k, b, server);
                assert_eq!(got.body[0].type_name, form, "{case}: received form");
                let names = got.body[0].names_payload().unwrap();
                if matches!(held, DeadName) {
                    assert_eq!(
                        names,
                        [NAME_DEAD],
                        "{case}: a dead name arrives as MACH_PORT_DEAD"
                    );
                } else {
                    assert!(mach::types::name_valid(names[0]), "{case}: right arrives");
                }
            }
            Err(code) => {
                let err = result.expect_err(&case);
                assert_eq!(err.code, code, "{case}");
                assert!(
                    nothing_queued(&mut k, b, server),
                    "{case}: nothing delivered"
                );
            }
        }
        match after {
            Gone => assert_eq!(
                type_of(&mut k, a, name),
                Err(KernReturn::InvalidName),
                "{case}"
            ),
            Same => assert_eq!(
                (type_of(&mut k, a, name), k.port_get_refs(a, name, 0)),
                before,
                "{case}"
            ),
            Type(t, urefs) => {
                assert_eq!(type_of(&mut k, a, name), Ok(t), "{case}");
                assert_eq!(k.port_get_refs(a, name, 0), Ok(urefs), "{case}");
            }
        }
    }
}

#[test]
fn port_name_items_carry_no_right() {
    let (mut k, a, b) = kernel();
    let server = receive_right(&mut k, b);
    let to_server = give_send(&mut k, b, server, a);
    let mine = receive_right(&mut k, a);
    send(
        &mut k,
        a,
        Message::simple(to_server, mt::COPY_SEND, 1, vec![Item::port_name(mine)]),
    );
    let got = recv(&mut k, b, server);
    assert_eq!(got.body[0].type_name, mt::PORT_NAME);
    assert_eq!(notified_name(&got), mine, "the number travels unchanged");
    assert_eq!(type_of(&mut k, a, mine), Ok(ty::RECEIVE));
}

#[test]
fn body_error_destroys_header_rights_like_ipc_kmsg_clean_partial() {
    let (mut k, a, b) = kernel();
    let server = receive_right(&mut k, b);
    let to_server = give_send(&mut k, b, server, a);
    let reply = receive_right(&mut k, a);
    let msg = Message::new(
        to_server,
        mt::COPY_SEND,
        reply,
        mt::MAKE_SEND_ONCE,
        7,
        vec![Item::port(mt::MOVE_SEND, 0x999)],
    );
    let err = k.send(a, msg.clone(), false).unwrap_err();
    assert_eq!(err.code, MsgReturn::SendInvalidRight);
    assert_eq!(err.message, msg, "the task's buffer is returned unchanged");
    // The copied-in MAKE_SEND_ONCE reply right was destroyed: send-once notification.
    let n = recv(&mut k, a, reply);
    assert_eq!(n.id, notify_id::SEND_ONCE);
    assert!(nothing_queued(&mut k, b, server));
}

#[test]
fn header_errors_follow_ipc_kmsg_copyin_header() {
    let (mut k, a, b) = kernel();
    let server = receive_right(&mut k, b);
    let to_server = give_send(&mut k, b, server, a);
    let reply = receive_right(&mut k, a);
    let cases: &[(u8, Name, u8, Name, MsgReturn)] = &[
        (
            mt::MOVE_RECEIVE,
            to_server,
            0,
            0,
            MsgReturn::SendInvalidHeader,
        ),
        (
            mt::COPY_SEND,
            to_server,
            0,
            reply,
            MsgReturn::SendInvalidHeader,
        ),
        (
            mt::COPY_SEND,
            to_server,
            mt::PORT_NAME,
            reply,
            MsgReturn::SendInvalidHeader,
        ),
        (mt::COPY_SEND, 0x777, 0, 0, MsgReturn::SendInvalidDest),
        (mt::COPY_SEND, NAME_NULL, 0, 0, MsgReturn::SendInvalidDest),
        (mt::MAKE_SEND, to_server, 0, 0, MsgReturn::SendInvalidDest),
        (
            mt::COPY_SEND,
            to_server,
            mt::MAKE_SEND_ONCE,
            0x777,
            MsgReturn::SendInvalidReply,
        ),
        (
            mt::COPY_SEND,
            to_server,
            mt::COPY_SEND,
            reply,
            MsgReturn::SendInvalidReply,
        ),
        // Same name, one of them MOVE_SEND_ONCE: always a destination error.
        (
            mt::MOVE_SEND_ONCE,
            reply,
            mt::MAKE_SEND,
            reply,
            MsgReturn::SendInvalidDest,
        ),
    ];
    for &(dt, d, rt, r, code) in cases {
        let msg = Message::new(d, dt, r, rt, 1, vec![]);
        assert_eq!(
            k.send(a, msg, false).unwrap_err().code,
            code,
            "dest {dt}/{d:#x} reply {rt}/{r:#x}"
        );
    }
    assert_eq!(
        type_of(&mut k, a, reply),
        Ok(ty::RECEIVE),
        "nothing consumed"
    );
}

#[test]
fn dead_destination_is_invalid_dest_and_dead_reply_is_carried_as_dead() {
    let (mut k, a, b) = kernel();
    let server = receive_right(&mut k, b);
    let to_server = give_send(&mut k, b, server, a);
    let other = receive_right(&mut k, b);
    let to_other = give_send(&mut k, b, other, a);
    k.port_mod_refs(b, other, PortRight::Receive as u32, -1)
        .unwrap();
    let msg = Message::simple(to_other, mt::COPY_SEND, 1, vec![]);
    assert_eq!(
        k.send(a, msg, false).unwrap_err().code,
        MsgReturn::SendInvalidDest
    );
    // As a reply port, the dead name travels as MACH_PORT_DEAD and is consumed.
    send(
        &mut k,
        a,
        Message::new(to_server, mt::COPY_SEND, to_other, mt::MOVE_SEND, 1, vec![]),
    );
    let got = recv(&mut k, b, server);
    assert_eq!(got.remote_port, NAME_DEAD);
    assert_eq!(type_of(&mut k, a, to_other), Err(KernReturn::InvalidName));
}

#[test]
fn same_name_for_destination_and_reply() {
    let (mut k, a, _) = kernel();
    let port = receive_right(&mut k, a);
    make_send(&mut k, a, port);
    k.port_mod_refs(a, port, PortRight::Send as u32, 1).unwrap();
    // MOVE_SEND twice on a name with 2 references (ipc_right_copyin_two).
    send(
        &mut k,
        a,
        Message::new(port, mt::MOVE_SEND, port, mt::MOVE_SEND, 5, vec![]),
    );
    assert_eq!(type_of(&mut k, a, port), Ok(ty::RECEIVE));
    let got = recv(&mut k, a, port);
    assert_eq!(
        (got.local_port, got.remote_port),
        (port, port),
        "reply right merges into the name"
    );
    assert_eq!(k.port_get_refs(a, port, PortRight::Send as u32), Ok(1));
    // MAKE_SEND destination with a MAKE_SEND_ONCE reply on the receive right.
    send(
        &mut k,
        a,
        Message::new(port, mt::MAKE_SEND, port, mt::MAKE_SEND_ONCE, 6, vec![]),
    );
    let got = recv(&mut k, a, port);
    assert_eq!(got.local_type(), mt::PORT_SEND);
    assert_eq!(got.remote_type(), mt::PORT_SEND_ONCE);
    assert_ne!(
        got.remote_port, port,
        "a send-once right always gets its own name"
    );
}

// ----- port operations (mach_port.defs) --------------------------------------------

#[test]
fn mod_refs_and_deallocate_follow_ipc_right_delta_and_dealloc() {
    let (mut k, a, b) = kernel();
    let r = receive_right(&mut k, a);
    let send_right = PortRight::Send as u32;
    let recv_right = PortRight::Receive as u32;
    let dead = PortRight::DeadName as u32;
    assert_eq!(
        k.port_mod_refs(a, r, send_right, 1),
        Err(KernReturn::InvalidRight),
        "no send right yet"
    );
    assert_eq!(
        k.port_mod_refs(a, r, recv_right, 2),
        Err(KernReturn::InvalidValue)
    );
    assert_eq!(
        k.port_mod_refs(a, r, 9, 1),
        Err(KernReturn::InvalidValue),
        "right >= MACH_PORT_RIGHT_NUMBER"
    );
    assert_eq!(
        k.port_mod_refs(a, 0x55, send_right, 1),
        Err(KernReturn::InvalidName)
    );
    make_send(&mut k, a, r);
    assert_eq!(
        k.port_mod_refs(a, r, send_right, -2),
        Err(KernReturn::InvalidValue),
        "underflow"
    );
    // Send rights stop at MACH_PORT_UREFS_MAX - 1.
    assert_eq!(k.port_mod_refs(a, r, send_right, 65533), Ok(()));
    assert_eq!(k.port_get_refs(a, r, send_right), Ok(65534));
    assert_eq!(
        k.port_mod_refs(a, r, send_right, 1),
        Err(KernReturn::UrefsOverflow)
    );
    // Copyout at the maximum pegs the count instead of failing.
    let peer = give_send(&mut k, a, r, b);
    send(
        &mut k,
        b,
        Message::simple(
            peer,
            mt::COPY_SEND,
            1,
            vec![Item::port(mt::COPY_SEND, peer)],
        ),
    );
    recv(&mut k, a, r);
    assert_eq!(k.port_get_refs(a, r, send_right), Ok(65534));
    assert_eq!(k.port_mod_refs(a, r, send_right, -65534), Ok(()));
    assert_eq!(type_of(&mut k, a, r), Ok(ty::RECEIVE));
    assert_eq!(
        k.port_deallocate(a, r),
        Err(KernReturn::InvalidRight),
        "deallocate of a receive right"
    );
    // Dead names count to MACH_PORT_UREFS_MAX.
    let d = k.port_allocate(a, PortRight::DeadName).unwrap();
    assert_eq!(k.port_mod_refs(a, d, dead, 65534), Ok(()));
    assert_eq!(
        k.port_mod_refs(a, d, dead, 1),
        Err(KernReturn::UrefsOverflow)
    );
    assert_eq!(k.port_mod_refs(a, d, dead, -65535), Ok(()));
    assert_eq!(type_of(&mut k, a, d), Err(KernReturn::InvalidName));
    assert_eq!(k.port_deallocate(a, d), Err(KernReturn::InvalidName));
}

#[test]
fn allocate_name_insert_and_extract_errors() {
    let (mut k, a, b) = kernel();
    assert_eq!(k.port_allocate_name(a, PortRight::Receive, 0x100), Ok(()));
    assert_eq!(
        k.port_allocate_name(a, PortRight::Receive, 0x100),
        Err(KernReturn::NameExists)
    );
    assert_eq!(
        k.port_allocate_name(a, PortRight::Send, 0x101),
        Err(KernReturn::InvalidValue)
    );
    assert_eq!(
        k.port_allocate_name(a, PortRight::Receive, NAME_DEAD),
        Err(KernReturn::InvalidValue)
    );
    assert_eq!(
        k.port_allocate(a, PortRight::SendOnce),
        Err(KernReturn::InvalidValue)
    );
    // A task holds one name per port for send and receive rights.
    k.port_insert_right(b, 0x200, a, 0x100, mt::MAKE_SEND)
        .unwrap();
    assert_eq!(
        k.port_insert_right(b, 0x201, a, 0x100, mt::MAKE_SEND),
        Err(KernReturn::RightExists)
    );
    k.port_insert_right(b, 0x200, a, 0x100, mt::MAKE_SEND)
        .unwrap();
    assert_eq!(k.port_get_refs(b, 0x200, 0), Ok(2));
    let other = receive_right(&mut k, a);
    assert_eq!(
        k.port_insert_right(b, 0x200, a, other, mt::MAKE_SEND),
        Err(KernReturn::NameExists)
    );
    // Send-once rights always take a fresh name.
    assert_eq!(
        k.port_insert_right(b, 0x200, a, 0x100, mt::MAKE_SEND_ONCE),
        Err(KernReturn::NameExists)
    );
    assert_eq!(
        k.port_insert_right(b, NAME_NULL, a, 0x100, mt::MAKE_SEND),
        Err(KernReturn::InvalidValue)
    );
    assert_eq!(
        k.port_extract_right(a, 0x100, mt::PORT_NAME, b),
        Err(KernReturn::InvalidValue)
    );
    assert_eq!(
        k.port_extract_right(a, 0x999, mt::MAKE_SEND, b),
        Err(KernReturn::InvalidName)
    );
    // Extracting the receive right moves it.
    let (name, form) = k.port_extract_right(a, 0x100, mt::MOVE_RECEIVE, b).unwrap();
    assert_eq!(
        (name, form),
        (0x200, mt::PORT_RECEIVE),
        "joins the send right's name"
    );
    assert_eq!(type_of(&mut k, b, 0x200), Ok(ty::SEND_RECEIVE));
    assert_eq!(type_of(&mut k, a, 0x100), Err(KernReturn::InvalidName));
}

#[test]
fn names_are_reused_lifo_then_lowest_free() {
    let (mut k, a, _) = kernel();
    let n: Vec<Name> = (0..3).map(|_| receive_right(&mut k, a)).collect();
    assert_eq!(n, [1, 2, 3]);
    k.port_mod_refs(a, 1, PortRight::Receive as u32, -1)
        .unwrap();
    k.port_mod_refs(a, 2, PortRight::Receive as u32, -1)
        .unwrap();
    assert_eq!(
        receive_right(&mut k, a),
        2,
        "free list is last-in first-out"
    );
    assert_eq!(receive_right(&mut k, a), 1);
    assert_eq!(receive_right(&mut k, a), 4);
}

#[test]
fn port_sets_move_member_and_receive_in_arrival_order() {
    let (mut k, a, b) = kernel();
    let set = k.port_allocate(a, PortRight::PortSet).unwrap();
    let p1 = receive_right(&mut k, a);
    let p2 = receive_right(&mut k, a);
    assert_eq!(
        k.port_move_member(a, p1, NAME_NULL),
        Err(KernReturn::NotInSet)
    );
    assert_eq!(k.port_move_member(a, p1, p2), Err(KernReturn::InvalidRight));
    assert_eq!(
        k.port_move_member(a, set, set),
        Err(KernReturn::InvalidRight)
    );
    let s1 = give_send(&mut k, a, p1, b);
    let s2 = give_send(&mut k, a, p2, b);
    send(&mut k, b, Message::simple(s1, mt::COPY_SEND, 1, vec![]));
    k.port_move_member(a, p1, set).unwrap();
    k.port_move_member(a, p2, set).unwrap();
    send(&mut k, b, Message::simple(s2, mt::COPY_SEND, 2, vec![]));
    send(&mut k, b, Message::simple(s1, mt::COPY_SEND, 3, vec![]));
    assert_eq!(
        k.receive(a, p1, RecvOptions::default()).unwrap_err().code,
        MsgReturn::RcvInSet
    );
    let ids: Vec<(i32, Name)> = (0..3)
        .map(|_| recv(&mut k, a, set))
        .map(|m| (m.id, m.local_port))
        .collect();
    assert_eq!(ids, [(1, p1), (2, p2), (3, p1)]);
    assert_eq!(k.port_get_receive_status(a, p1).unwrap().pset, set);
    k.port_destroy(a, set).unwrap();
    assert_eq!(
        k.port_get_receive_status(a, p1).unwrap().pset,
        NAME_NULL,
        "members leave a destroyed set"
    );
}

/// A set of many members under random sends, receives, members leaving
/// and coming back with messages queued, and members dying: the set hands
/// out messages in the order they reached it (a member's queue joins at the
/// back when it comes back), checked against a model of that order.
#[test]
fn a_large_port_set_receives_in_arrival_order_as_members_come_and_go() {
    let (mut k, a, b) = kernel();
    let set = k.port_allocate(a, PortRight::PortSet).unwrap();
    let mut ports: Vec<(Name, Name)> = (0..200)
        .map(|_| {
            let p = receive_right(&mut k, a);
            k.port_set_qlimit(a, p, mach::types::QLIMIT_MAX).unwrap();
            k.port_move_member(a, p, set).unwrap();
            (p, give_send(&mut k, a, p, b))
        })
        .collect();
    let mut in_set: Vec<bool> = vec![true; ports.len()];
    let mut queued: Vec<std::collections::VecDeque<i32>> = vec![Default::default(); ports.len()];
    // The model: (member, id) in the order the set hands them out.
    let mut order: std::collections::VecDeque<(usize, i32)> = Default::default();
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    for id in 1..=5000 {
        let i = next(ports.len());
        match next(10) {
            0..=4 if queued[i].len() < mach::types::QLIMIT_MAX as usize => {
                send(
                    &mut k,
                    b,
                    Message::simple(ports[i].1, mt::COPY_SEND, id, vec![]),
                );
                queued[i].push_back(id);
                if in_set[i] {
                    order.push_back((i, id));
                }
            }
            5..=7 => match order.pop_front() {
                Some((j, want)) => {
                    let m = recv(&mut k, a, set);
                    assert_eq!((m.local_port, m.id), (ports[j].0, want));
                    assert_eq!(queued[j].pop_front(), Some(want));
                }
                None => assert!(nothing_queued(&mut k, a, set)),
            },
            8 => {
                let to = if in_set[i] { NAME_NULL } else { set };
                k.port_move_member(a, ports[i].0, to).unwrap();
                in_set[i] = !in_set[i];
                order.retain(|&(j, _)| j != i);
                if in_set[i] {
                    order.extend(queued[i].iter().map(|&q| (i, q)));
                }
            }
            _ => {
                // The member dies with its queue; a new port takes its place.
                k.port_mod_refs(a, ports[i].0, PortRight::Receive as u32, -1)
                    .unwrap();
                k.port_deallocate(b, ports[i].1).unwrap();
                order.retain(|&(j, _)| j != i);
                queued[i].clear();
                let p = receive_right(&mut k, a);
                k.port_set_qlimit(a, p, mach::types::QLIMIT_MAX).unwrap();
                k.port_move_member(a, p, set).unwrap();
                in_set[i] = true;
                ports[i] = (p, give_send(&mut k, a, p, b));
            }
        }
        k.check_invariants()
            .unwrap_or_else(|e| panic!("after {id}: {e}"));
    }
    while let Some((j, want)) = order.pop_front() {
        let m = recv(&mut k, a, set);
        assert_eq!((m.local_port, m.id), (ports[j].0, want));
    }
    assert!(nothing_queued(&mut k, a, set));
}

// ----- notifications (ipc_notify.c) ------------------------------------------------------

fn request(
    k: &mut Kernel,
    t: TaskId,
    name: Name,
    id: i32,
    sync: u32,
    notify: Name,
) -> Result<Name, KernReturn> {
    k.port_request_notification(t, name, id, sync, notify, mt::MAKE_SEND_ONCE)
}

#[test]
fn no_senders_carries_the_make_send_count() {
    let (mut k, a, b) = kernel();
    let port = receive_right(&mut k, a);
    let notify = receive_right(&mut k, a);
    let s = give_send(&mut k, a, port, b);
    let _second = give_send(&mut k, a, port, b);
    assert_eq!(k.port_get_refs(b, s, 0), Ok(2));
    assert_eq!(
        request(&mut k, a, port, notify_id::NO_SENDERS, 0, notify),
        Ok(NAME_NULL)
    );
    k.port_deallocate(b, s).unwrap();
    assert!(nothing_queued(&mut k, a, notify), "one reference left");
    k.port_deallocate(b, s).unwrap();
    let n = recv(&mut k, a, notify);
    assert_eq!(n.id, notify_id::NO_SENDERS);
    assert_eq!(n.remote_port, NAME_NULL);
    assert_eq!(n.local_type(), mt::PORT_SEND_ONCE);
    assert_eq!(n.body[0].type_name, mt::INTEGER_32);
    assert_eq!(
        n.body[0].bytes_payload().unwrap(),
        2u32.to_le_bytes(),
        "make-send count 2"
    );
    // The request is used up; a new one with sync <= mscount and no senders fires now.
    assert_eq!(
        request(&mut k, a, port, notify_id::NO_SENDERS, 3, notify),
        Ok(NAME_NULL)
    );
    assert!(
        nothing_queued(&mut k, a, notify),
        "sync 3 > mscount 2: armed, not fired"
    );
    let prev = request(&mut k, a, port, notify_id::NO_SENDERS, 2, notify).unwrap();
    assert_ne!(
        prev, NAME_NULL,
        "the previous request's send-once right comes back"
    );
    assert_eq!(type_of(&mut k, a, prev), Ok(ty::SEND_ONCE));
    assert_eq!(recv(&mut k, a, notify).id, notify_id::NO_SENDERS);
}

#[test]
fn no_senders_fires_when_the_last_send_right_is_delivered() {
    let (mut k, a, b) = kernel();
    let port = receive_right(&mut k, a);
    let notify = receive_right(&mut k, a);
    let s = give_send(&mut k, a, port, b);
    request(&mut k, a, port, notify_id::NO_SENDERS, 0, notify).unwrap();
    send(&mut k, b, Message::simple(s, mt::MOVE_SEND, 9, vec![]));
    assert!(
        nothing_queued(&mut k, a, notify),
        "the right is in the message"
    );
    assert_eq!(recv(&mut k, a, port).id, 9);
    assert_eq!(
        recv(&mut k, a, notify).id,
        notify_id::NO_SENDERS,
        "consumed by delivery (copyout_dest)"
    );
}

#[test]
fn dead_name_adds_a_reference_and_names_the_right() {
    let (mut k, a, b) = kernel();
    let port = receive_right(&mut k, a);
    let notify = receive_right(&mut k, b);
    let s = give_send(&mut k, a, port, b);
    assert_eq!(
        request(&mut k, b, s, notify_id::DEAD_NAME, 0, notify),
        Ok(NAME_NULL)
    );
    assert_eq!(type_of(&mut k, b, s), Ok(ty::SEND | ty::DNREQUEST));
    k.port_mod_refs(a, port, PortRight::Receive as u32, -1)
        .unwrap();
    let n = recv(&mut k, b, notify);
    assert_eq!(n.id, notify_id::DEAD_NAME);
    assert_eq!(n.body[0].type_name, mt::PORT_NAME);
    assert_eq!(notified_name(&n), s);
    assert_eq!(type_of(&mut k, b, s), Ok(ty::DEAD_NAME));
    assert_eq!(
        k.port_get_refs(b, s, PortRight::DeadName as u32),
        Ok(2),
        "1 + the dead-name request's"
    );
    // On a dead name, a request with sync != 0 fires at once (and adds a reference).
    assert_eq!(
        request(&mut k, b, s, notify_id::DEAD_NAME, 1, notify),
        Ok(NAME_NULL)
    );
    assert_eq!(notified_name(&recv(&mut k, b, notify)), s);
    assert_eq!(k.port_get_refs(b, s, PortRight::DeadName as u32), Ok(3));
    assert_eq!(
        request(&mut k, b, s, notify_id::DEAD_NAME, 0, notify),
        Err(KernReturn::InvalidArgument)
    );
    let set = k.port_allocate(b, PortRight::PortSet).unwrap();
    assert_eq!(
        request(&mut k, b, set, notify_id::DEAD_NAME, 0, notify),
        Err(KernReturn::InvalidRight)
    );
    // A failed request destroys the send-once right it carried.
    assert_eq!(recv(&mut k, b, notify).id, notify_id::SEND_ONCE);
    assert_eq!(recv(&mut k, b, notify).id, notify_id::SEND_ONCE);
}

#[test]
fn port_deleted_when_a_right_with_a_request_goes_away() {
    let (mut k, a, b) = kernel();
    let port = receive_right(&mut k, a);
    let notify = receive_right(&mut k, b);
    let s = give_send(&mut k, a, port, b);
    request(&mut k, b, s, notify_id::DEAD_NAME, 0, notify).unwrap();
    k.port_deallocate(b, s).unwrap();
    let n = recv(&mut k, b, notify);
    assert_eq!(n.id, notify_id::PORT_DELETED);
    assert_eq!(notified_name(&n), s);
    // Moving the right away in a message deletes it too (ipc_object_copyin).
    let so = give_send_once(&mut k, a, port, b);
    request(&mut k, b, so, notify_id::DEAD_NAME, 0, notify).unwrap();
    let to_a = give_send(&mut k, a, port, b);
    send(
        &mut k,
        b,
        Message::simple(
            to_a,
            mt::COPY_SEND,
            1,
            vec![Item::port(mt::MOVE_SEND_ONCE, so)],
        ),
    );
    assert_eq!(notified_name(&recv(&mut k, b, notify)), so);
}

#[test]
fn send_once_notification_when_a_send_once_right_dies_unused() {
    let (mut k, a, b) = kernel();
    let port = receive_right(&mut k, a);
    let so = give_send_once(&mut k, a, port, b);
    assert_eq!(k.port_get_receive_status(a, port).unwrap().sorights, 1);
    k.port_deallocate(b, so).unwrap();
    let n = recv(&mut k, a, port);
    assert_eq!(n.id, notify_id::SEND_ONCE);
    assert!(n.body.is_empty());
    assert_eq!(n.local_type(), mt::PORT_SEND_ONCE);
    assert_eq!(k.port_get_receive_status(a, port).unwrap().sorights, 0);
    // A queued message destroyed with its port destroys the send-once right it carries.
    let victim = receive_right(&mut k, b);
    let to_victim = give_send(&mut k, b, victim, a);
    send(
        &mut k,
        a,
        Message::simple(
            to_victim,
            mt::COPY_SEND,
            1,
            vec![Item::port(mt::MAKE_SEND_ONCE, port)],
        ),
    );
    k.port_destroy(b, victim).unwrap();
    assert_eq!(recv(&mut k, a, port).id, notify_id::SEND_ONCE);
    // Destroying the task that holds a send-once right does the same.
    let so = give_send_once(&mut k, a, port, b);
    let _ = so;
    k.destroy_task(b).unwrap();
    assert_eq!(recv(&mut k, a, port).id, notify_id::SEND_ONCE);
}

#[test]
fn port_destroyed_hands_back_the_receive_right_with_its_messages() {
    let (mut k, a, b) = kernel();
    let port = receive_right(&mut k, a);
    let backup = receive_right(&mut k, b);
    let s = give_send(&mut k, a, port, b);
    let notify_so = give_send_once(&mut k, b, backup, a);
    assert_eq!(
        k.port_request_notification(
            a,
            port,
            notify_id::PORT_DESTROYED,
            1,
            notify_so,
            mt::MOVE_SEND_ONCE
        ),
        Err(KernReturn::InvalidValue),
        "sync must be 0"
    );
    let notify_so = give_send_once(&mut k, b, backup, a);
    k.port_request_notification(
        a,
        port,
        notify_id::PORT_DESTROYED,
        0,
        notify_so,
        mt::MOVE_SEND_ONCE,
    )
    .unwrap();
    assert_eq!(
        recv(&mut k, b, backup).id,
        notify_id::SEND_ONCE,
        "the failed request's right was destroyed"
    );
    send(&mut k, b, Message::simple(s, mt::COPY_SEND, 42, vec![]));
    k.port_destroy(a, port).unwrap();
    let n = recv(&mut k, b, backup);
    assert_eq!(n.id, notify_id::PORT_DESTROYED);
    assert!(n.is_complex());
    assert_eq!(n.body[0].type_name, mt::PORT_RECEIVE);
    let got = n.body[0].names_payload().unwrap()[0];
    assert_eq!(got, s, "the receive right joins b's send right");
    assert_eq!(type_of(&mut k, b, got), Ok(ty::SEND_RECEIVE));
    assert_eq!(recv(&mut k, b, got).id, 42, "queued messages survive");
    assert_eq!(
        k.port_get_receive_status(b, got).unwrap().mscount,
        0,
        "mscount reset with the receiver"
    );
}

#[test]
fn circular_receive_right_message_is_destroyed() {
    let (mut k, a, _) = kernel();
    let port = receive_right(&mut k, a);
    make_send(&mut k, a, port);
    // Sending a port's receive right to itself: accepted and destroyed.
    send(
        &mut k,
        a,
        Message::simple(
            port,
            mt::COPY_SEND,
            1,
            vec![Item::port(mt::MOVE_RECEIVE, port)],
        ),
    );
    assert_eq!(type_of(&mut k, a, port), Ok(ty::DEAD_NAME));
}

// ----- messages -----------------------------------------------------------------------------

#[test]
fn queue_limit_blocks_and_send_once_destinations_do_not() {
    let (mut k, a, b) = kernel();
    let port = receive_right(&mut k, a);
    let s = give_send(&mut k, a, port, b);
    for i in 0..5 {
        send(&mut k, b, Message::simple(s, mt::COPY_SEND, i, vec![]));
    }
    let reply = receive_right(&mut k, b);
    let msg = Message::new(s, mt::COPY_SEND, reply, mt::MAKE_SEND, 5, vec![]);
    let err = k.send(b, msg, false).unwrap_err();
    assert_eq!(err.code, MsgReturn::SendTimedOut);
    assert_eq!(
        err.message.remote_port, s,
        "pseudo-copyout returns the rights"
    );
    assert_eq!(err.message.local_port, reply);
    assert_eq!(
        k.port_get_refs(b, reply, 0),
        Ok(1),
        "the made send right came back to b"
    );
    let so = give_send_once(&mut k, a, port, b);
    send(
        &mut k,
        b,
        Message::simple(so, mt::MOVE_SEND_ONCE, 6, vec![]),
    );
    // A blocking send waits and completes once there is room, in order.
    let status = k
        .send(b, Message::simple(s, mt::COPY_SEND, 7, vec![]), true)
        .unwrap();
    let SendStatus::Pending(ticket) = status else {
        panic!("queue is full")
    };
    assert!(!k.send_completed(ticket));
    let ids: Vec<i32> = (0..2).map(|_| recv(&mut k, a, port).id).collect();
    assert_eq!(ids, [0, 1]);
    assert!(k.send_completed(ticket));
    let rest: Vec<(i32, u32)> = (0..5)
        .map(|_| recv(&mut k, a, port))
        .map(|m| (m.id, m.seqno))
        .collect();
    assert_eq!(
        rest,
        [(2, 2), (3, 3), (4, 4), (6, 5), (7, 6)],
        "FIFO with per-port seqno"
    );
}

#[test]
fn rcv_too_large_with_and_without_rcv_large() {
    let (mut k, a, b) = kernel();
    let port = receive_right(&mut k, a);
    let s = give_send(&mut k, a, port, b);
    let reply = receive_right(&mut k, b);
    let big = Message::new(
        s,
        mt::COPY_SEND,
        reply,
        mt::MAKE_SEND_ONCE,
        3,
        vec![Item::bytes(vec![7; 100])],
    );
    send(&mut k, b, big);
    let opts = RecvOptions {
        max_size: Some(64),
        large: true,
    };
    let err = k.receive(a, port, opts).unwrap_err();
    assert_eq!(
        (err.code, err.size),
        (MsgReturn::RcvTooLarge, Some(32 + 8 + 104))
    );
    assert_eq!(k.queued(a, port), Ok(1), "MACH_RCV_LARGE leaves it queued");
    let err = k
        .receive(
            a,
            port,
            RecvOptions {
                max_size: Some(64),
                large: false,
            },
        )
        .unwrap_err();
    assert_eq!(err.code, MsgReturn::RcvTooLarge);
    let header = err.header.expect("destination copied out");
    assert_eq!(
        (header.local_port, header.remote_port, header.id),
        (port, NAME_NULL, 3)
    );
    assert_eq!(k.queued(a, port), Ok(0));
    assert_eq!(
        recv(&mut k, b, reply).id,
        notify_id::SEND_ONCE,
        "the reply right was destroyed"
    );
}

#[test]
fn typed_data_and_out_of_line_memory_arrive_as_sent() {
    let (mut k, a, b) = kernel();
    let port = receive_right(&mut k, a);
    let s = give_send(&mut k, a, port, b);
    let body = vec![
        Item::int16(-2),
        Item::int32(-3),
        Item::int64(1 << 40),
        Item::boolean(true),
        Item::data(mt::CHAR, 8, 3, b"abc".to_vec()),
        Item::data(mt::REAL, 64, 1, 1.5f64.to_le_bytes().to_vec()),
        Item::data(mt::BIT, 1, 12, vec![0xff, 0x0f]),
        Item::c_string("/etc/motd", 1024),
        Item::ool_bytes(vec![9; 10_000], true),
        Item::ool_bytes(vec![1; 3], false),
    ];
    send(
        &mut k,
        b,
        Message::simple(s, mt::COPY_SEND, 1, body.clone()),
    );
    let got = recv(&mut k, a, port);
    assert!(got.is_complex(), "out-of-line memory makes it complex");
    for (sent, received) in body.iter().zip(&got.body) {
        assert_eq!(sent.payload, received.payload);
        assert_eq!(
            (sent.type_name, sent.size, sent.number),
            (received.type_name, received.size, received.number)
        );
        assert_eq!(
            received.deallocate, !received.inline,
            "received out-of-line memory is the task's to free"
        );
    }
    assert_eq!(got.body[8].payload, Payload::Bytes(vec![9; 10_000]));
    let bad = Message::simple(
        s,
        mt::COPY_SEND,
        1,
        vec![Item {
            deallocate: true,
            ..Item::int32(1)
        }],
    );
    let bad = Message {
        bits: bad.bits | mach::types::msgh_bits::COMPLEX,
        ..bad
    };
    assert_eq!(
        k.send(b, bad, false).unwrap_err().code,
        MsgReturn::SendInvalidType
    );
}

#[test]
fn destroying_everything_leaves_no_port_objects() {
    let (mut k, a, b) = kernel();
    let port = receive_right(&mut k, a);
    let notify = receive_right(&mut k, b);
    let s = give_send(&mut k, a, port, b);
    request(&mut k, b, s, notify_id::DEAD_NAME, 0, notify).unwrap();
    request(&mut k, a, port, notify_id::NO_SENDERS, 0, notify).ok();
    let so = give_send_once(&mut k, a, port, b);
    send(
        &mut k,
        b,
        Message::simple(
            s,
            mt::COPY_SEND,
            1,
            vec![
                Item::port(mt::MOVE_SEND_ONCE, so),
                Item::port(mt::MAKE_SEND, notify),
            ],
        ),
    );
    k.destroy_task(a).unwrap();
    k.destroy_task(b).unwrap();
    assert_eq!(k.port_objects(), 0);
}

#[test]
fn receive_right_removed_by_mod_refs_keeps_its_send_count_like_gnu_mach() {
    // ipc_right_delta(RECEIVE, -1) on a name that also holds a send right makes the
    // send right a dead name without decrementing ip_srights ("the port is
    // destroyed first"). With a port-destroyed request the port lives on, and its
    // no-senders notification can no longer fire.
    let (mut k, a, b) = kernel();
    let port = receive_right(&mut k, a);
    make_send(&mut k, a, port);
    let backup = receive_right(&mut k, b);
    let so = give_send_once(&mut k, b, backup, a);
    k.port_request_notification(
        a,
        port,
        notify_id::PORT_DESTROYED,
        0,
        so,
        mt::MOVE_SEND_ONCE,
    )
    .unwrap();
    k.port_mod_refs(a, port, PortRight::Receive as u32, -1)
        .unwrap();
    assert_eq!(type_of(&mut k, a, port), Ok(ty::DEAD_NAME));
    let n = recv(&mut k, b, backup);
    assert_eq!(n.id, notify_id::PORT_DESTROYED);
    let saved = n.body[0].names_payload().unwrap()[0];
    let status = k.port_get_receive_status(b, saved).unwrap();
    assert!(
        status.srights,
        "the dead name's send right is still counted"
    );
    assert_eq!(
        request(&mut k, b, saved, notify_id::NO_SENDERS, 0, backup),
        Ok(NAME_NULL)
    );
    assert!(
        nothing_queued(&mut k, b, backup),
        "no-senders does not fire"
    );
    k.check_invariants().unwrap();
}

#[test]
fn out_of_line_and_inline_port_arrays() {
    let (mut k, a, b) = kernel();
    let server = receive_right(&mut k, b);
    let to_server = give_send(&mut k, b, server, a);
    let p: Vec<Name> = (0..3).map(|_| receive_right(&mut k, a)).collect();
    let body = vec![
        Item::ool_ports(mt::MAKE_SEND, p.clone(), true),
        Item::ports(mt::MAKE_SEND_ONCE, vec![p[0], NAME_NULL, NAME_DEAD]),
    ];
    send(
        &mut k,
        a,
        Message::simple(to_server, mt::COPY_SEND, 1, body),
    );
    let got = recv(&mut k, b, server);
    let ool = &got.body[0];
    assert!(
        !ool.inline && ool.deallocate,
        "out-of-line arrays arrive as the receiver's memory"
    );
    assert_eq!(
        (ool.type_name, ool.size, ool.number),
        (mt::PORT_SEND, 32, 3),
        "32-bit names out of line"
    );
    let names = ool.names_payload().unwrap();
    for (&n, &orig) in names.iter().zip(&p) {
        assert!(k.same_port(b, n, a, orig));
        assert_eq!(type_of(&mut k, b, n), Ok(ty::SEND));
    }
    let inline = &got.body[1];
    assert_eq!(
        (inline.type_name, inline.size),
        (mt::PORT_SEND_ONCE, 64),
        "8-byte slots inline on x86_64"
    );
    let names = inline.names_payload().unwrap();
    assert_eq!(
        &names[1..],
        [NAME_NULL, NAME_DEAD],
        "null and dead pass through"
    );
    assert_eq!(type_of(&mut k, b, names[0]), Ok(ty::SEND_ONCE));
    k.check_invariants().unwrap();
}

/// Names a task chooses far above the ones the kernel hands out (which are
/// kept apart from them) hold rights, carry messages, list in name order and
/// go away like any other.
#[test]
fn names_far_above_the_rest_work_as_any_other() {
    let (mut k, a, b) = kernel();
    let near = receive_right(&mut k, a);
    let far: Name = 0x4000_0000;
    let farther: Name = NAME_DEAD - 1;
    assert_eq!(k.port_allocate_name(a, PortRight::Receive, far), Ok(()));
    assert_eq!(k.port_allocate_name(a, PortRight::Receive, farther), Ok(()));
    assert_eq!(
        k.port_allocate_name(a, PortRight::Receive, far),
        Err(KernReturn::NameExists)
    );
    // A send right to a far name under a far name of another task's.
    k.port_insert_right(b, far + 1, a, far, mt::MAKE_SEND)
        .unwrap();
    send(
        &mut k,
        b,
        Message::simple(far + 1, mt::COPY_SEND, 7, vec![Item::int32(1)]),
    );
    assert_eq!(recv(&mut k, a, far).id, 7);
    let names: Vec<Name> = k.names(a).unwrap().iter().map(|&(n, _, _)| n).collect();
    assert_eq!(names, vec![near, far, farther]);
    assert_eq!(k.port_type(b, far + 1), Ok(ty::SEND));
    // Its receive right destroyed, the other task's right is a dead name.
    assert_eq!(k.port_destroy(a, far), Ok(()));
    assert_eq!(k.port_type(b, far + 1), Ok(ty::DEAD_NAME));
    assert_eq!(k.port_deallocate(b, far + 1), Ok(()));
    assert_eq!(k.port_type(b, far + 1), Err(KernReturn::InvalidName));
    assert_eq!(k.port_destroy(a, farther), Ok(()));
    let names: Vec<Name> = k.names(a).unwrap().iter().map(|&(n, _, _)| n).collect();
    assert_eq!(names, vec![near]);
    assert!(k.names(b).unwrap().is_empty());
    k.check_invariants().unwrap();
    // A destroyed task's far names go with it.
    assert_eq!(k.port_allocate_name(b, PortRight::Receive, far), Ok(()));
    assert_eq!(k.destroy_task(b), Ok(()));
    k.check_invariants().unwrap();
}

/// `send_name_of` is `ipc_right_reverse` for the port a right names: the
/// receive right's name in its holder's space, the send right's in another,
/// none where the space holds only send-once rights or a dead name.
#[test]
fn the_name_of_a_port_behind_a_send_once_right() {
    let (mut k, a, b) = kernel();
    let p = receive_right(&mut k, a);
    let once_a = give_send_once(&mut k, a, p, a);
    assert_eq!(k.send_name_of(a, once_a), Some(p));
    let once_b = give_send_once(&mut k, a, p, b);
    assert_eq!(k.send_name_of(b, once_b), None, "no send right in b");
    let send_b = give_send(&mut k, a, p, b);
    assert_eq!(k.send_name_of(b, once_b), Some(send_b));
    assert_eq!(k.send_name_of(b, send_b), Some(send_b));
    k.port_mod_refs(a, p, PortRight::Receive as u32, -1)
        .unwrap();
    assert_eq!(k.send_name_of(b, once_b), None, "the port died");
}

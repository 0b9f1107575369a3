//! Random operation sequences against the kernel, with its oracle
//! (`check_invariants`) after every step: no panic on any input, reference and
//! right counts always consistent, and nothing left after every task is destroyed.

use mach::types::{msg_type as mt, port_type as ty, PortRight};
use mach::{
    Item, Kernel, Message, Name, RecvOptions, SendStatus, SendTicket, TaskId, NAME_DEAD, NAME_NULL,
};
use proptest::prelude::*;

const TASKS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    Allocate {
        task: usize,
        right: u32,
    },
    Deallocate {
        task: usize,
        pick: u8,
    },
    ModRefs {
        task: usize,
        pick: u8,
        right: u32,
        delta: i32,
    },
    Destroy {
        task: usize,
        pick: u8,
    },
    Insert {
        task: usize,
        at: u8,
        from: usize,
        pick: u8,
        disposition: u8,
    },
    Extract {
        task: usize,
        pick: u8,
        disposition: u8,
        to: usize,
    },
    MoveMember {
        task: usize,
        member: u8,
        set: u8,
    },
    Request {
        task: usize,
        pick: u8,
        id: i32,
        sync: u32,
        notify: u8,
        disposition: u8,
    },
    SetQlimit {
        task: usize,
        pick: u8,
        qlimit: u32,
    },
    Send {
        task: usize,
        dest: u8,
        dest_type: u8,
        reply: u8,
        reply_type: u8,
        items: Vec<(u8, Vec<u8>, bool)>,
        block: bool,
        complex: bool,
    },
    Receive {
        task: usize,
        pick: u8,
        max_size: Option<u32>,
        large: bool,
    },
    CancelPending,
    DestroyTask {
        task: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let task = 0..TASKS;
    let disposition = 15u8..=22;
    prop_oneof![
        4 => (task.clone(), 0u32..6).prop_map(|(task, right)| Op::Allocate { task, right }),
        2 => (task.clone(), any::<u8>()).prop_map(|(task, pick)| Op::Deallocate { task, pick }),
        2 => (task.clone(), any::<u8>(), 0u32..6, -2i32..=2).prop_map(|(task, pick, right, delta)| Op::ModRefs { task, pick, right, delta }),
        1 => (task.clone(), any::<u8>()).prop_map(|(task, pick)| Op::Destroy { task, pick }),
        3 => (task.clone(), any::<u8>(), task.clone(), any::<u8>(), disposition.clone()).prop_map(|(task, at, from, pick, disposition)| Op::Insert { task, at, from, pick, disposition }),
        3 => (task.clone(), any::<u8>(), disposition.clone(), task.clone()).prop_map(|(task, pick, disposition, to)| Op::Extract { task, pick, disposition, to }),
        1 => (task.clone(), any::<u8>(), any::<u8>()).prop_map(|(task, member, set)| Op::MoveMember { task, member, set }),
        3 => (task.clone(), any::<u8>(), prop::sample::select(vec![65, 69, 70, 71, 72]), 0u32..3, any::<u8>(), prop::sample::select(vec![mt::MAKE_SEND_ONCE, mt::MOVE_SEND_ONCE, mt::MAKE_SEND]))
            .prop_map(|(task, pick, id, sync, notify, disposition)| Op::Request { task, pick, id, sync, notify, disposition }),
        1 => (task.clone(), any::<u8>(), 0u32..=17).prop_map(|(task, pick, qlimit)| Op::SetQlimit { task, pick, qlimit }),
        8 => (task.clone(), any::<u8>(), disposition.clone(), any::<u8>(), prop::sample::select(vec![0u8, 17, 18, 19, 20, 21, 16]),
              prop::collection::vec((15u8..=21, prop::collection::vec(any::<u8>(), 0..3), any::<bool>()), 0..3), any::<bool>(), prop::bool::weighted(0.9))
            .prop_map(|(task, dest, dest_type, reply, reply_type, items, block, complex)| Op::Send { task, dest, dest_type, reply, reply_type, items, block, complex }),
        6 => (task.clone(), any::<u8>(), prop::option::of(24u32..80), any::<bool>()).prop_map(|(task, pick, max_size, large)| Op::Receive { task, pick, max_size, large }),
        1 => Just(Op::CancelPending),
    ]
}

/// A name holding one of the `wanted` rights (most of the time), with a
/// disposition that fits it; sometimes anything, to reach the error paths.
fn right_for(k: &mut Kernel, t: TaskId, p: u8, wanted: u32, random_disposition: u8) -> (Name, u8) {
    let names: Vec<(Name, u32)> = k
        .names(t)
        .map(|v| v.into_iter().map(|(n, kind, _)| (n, kind)).collect())
        .unwrap_or_default();
    let fitting: Vec<(Name, u32)> = names
        .iter()
        .copied()
        .filter(|&(_, kind)| kind & wanted != 0)
        .collect();
    if p % 8 == 0 || fitting.is_empty() {
        return (pick(k, t, p), random_disposition);
    }
    let (name, kind) = fitting[(p as usize / 8) % fitting.len()];
    let choose = |options: &[u8]| options[(p as usize / 3) % options.len()];
    let disposition = if kind & ty::SEND_ONCE != 0 {
        mt::MOVE_SEND_ONCE
    } else if kind & ty::RECEIVE != 0 && wanted & ty::RECEIVE != 0 {
        if kind & ty::SEND != 0 {
            choose(&[
                mt::MAKE_SEND,
                mt::MAKE_SEND_ONCE,
                mt::COPY_SEND,
                mt::MOVE_SEND,
                mt::MOVE_RECEIVE,
            ])
        } else {
            choose(&[
                mt::MAKE_SEND,
                mt::MAKE_SEND_ONCE,
                mt::MAKE_SEND_ONCE,
                mt::MOVE_RECEIVE,
            ])
        }
    } else if kind & (ty::SEND | ty::DEAD_NAME) != 0 {
        choose(&[mt::COPY_SEND, mt::COPY_SEND, mt::MOVE_SEND])
    } else {
        random_disposition
    };
    (name, disposition)
}

/// A name of the task's, or a null, dead or never-allocated one.
fn pick(k: &mut Kernel, t: TaskId, p: u8) -> Name {
    let names: Vec<Name> = k
        .names(t)
        .map(|v| v.into_iter().map(|(n, _, _)| n).collect())
        .unwrap_or_default();
    let extra = [NAME_NULL, NAME_DEAD, 0x4242];
    let i = p as usize % (names.len() + extra.len());
    names
        .get(i)
        .copied()
        .unwrap_or_else(|| extra[i - names.len()])
}

fn apply(k: &mut Kernel, tasks: &[TaskId], pending: &mut Vec<SendTicket>, op: &Op) {
    match *op {
        Op::Allocate { task, right } => {
            if let Some(r) = PortRight::from_u32(right) {
                let _ = k.port_allocate(tasks[task], r);
            }
        }
        Op::Deallocate { task, pick: p } => {
            let n = pick(k, tasks[task], p);
            let _ = k.port_deallocate(tasks[task], n);
        }
        Op::ModRefs {
            task,
            pick: p,
            right,
            delta,
        } => {
            let n = pick(k, tasks[task], p);
            let _ = k.port_mod_refs(tasks[task], n, right, delta);
        }
        Op::Destroy { task, pick: p } => {
            let n = pick(k, tasks[task], p);
            let _ = k.port_destroy(tasks[task], n);
        }
        Op::Insert {
            task,
            at,
            from,
            pick: p,
            disposition,
        } => {
            let at = if at % 2 == 0 {
                pick(k, tasks[task], at)
            } else {
                0x1000 + u32::from(at)
            };
            let (n, disposition) = right_for(
                k,
                tasks[from],
                p,
                ty::PORT_RIGHTS | ty::DEAD_NAME,
                disposition,
            );
            let _ = k.port_insert_right(tasks[task], at, tasks[from], n, disposition);
        }
        Op::Extract {
            task,
            pick: p,
            disposition,
            to,
        } => {
            let (n, disposition) = right_for(
                k,
                tasks[task],
                p,
                ty::PORT_RIGHTS | ty::DEAD_NAME,
                disposition,
            );
            let _ = k.port_extract_right(tasks[task], n, disposition, tasks[to]);
        }
        Op::MoveMember { task, member, set } => {
            let (m, _) = right_for(k, tasks[task], member, ty::RECEIVE, 0);
            let s = if set % 3 == 0 {
                NAME_NULL
            } else {
                right_for(k, tasks[task], set, ty::PORT_SET, 0).0
            };
            let _ = k.port_move_member(tasks[task], m, s);
        }
        Op::Request {
            task,
            pick: p,
            id,
            sync,
            notify,
            disposition,
        } => {
            let (n, _) = right_for(k, tasks[task], p, ty::PORT_RIGHTS | ty::DEAD_NAME, 0);
            let (notify, so) = right_for(
                k,
                tasks[task],
                notify,
                ty::RECEIVE | ty::SEND_ONCE,
                disposition,
            );
            let disposition = if so == mt::MOVE_SEND_ONCE || disposition == mt::MAKE_SEND {
                so
            } else {
                disposition
            };
            let _ = k.port_request_notification(tasks[task], n, id, sync, notify, disposition);
        }
        Op::SetQlimit {
            task,
            pick: p,
            qlimit,
        } => {
            let (n, _) = right_for(k, tasks[task], p, ty::RECEIVE, 0);
            let _ = k.port_set_qlimit(tasks[task], n, qlimit);
        }
        Op::Send {
            task,
            dest,
            dest_type,
            reply,
            reply_type,
            ref items,
            block,
            complex,
        } => {
            let t = tasks[task];
            let (dest, dest_type) = right_for(
                k,
                t,
                dest,
                ty::SEND_RIGHTS | ty::RECEIVE | ty::DEAD_NAME,
                dest_type,
            );
            let (reply, reply_type) = if reply_type == 0 {
                (NAME_NULL, 0)
            } else {
                let (n, d) = right_for(k, t, reply, ty::RECEIVE | ty::SEND_RIGHTS, reply_type);
                (
                    n,
                    if d == mt::MOVE_RECEIVE {
                        mt::MAKE_SEND_ONCE
                    } else {
                        d
                    },
                )
            };
            let body = items
                .iter()
                .map(|(disposition, picks, inline)| {
                    let first = picks.first().copied().unwrap_or(0);
                    let (_, disposition) =
                        right_for(k, t, first, ty::PORT_RIGHTS | ty::DEAD_NAME, *disposition);
                    let names: Vec<Name> = picks
                        .iter()
                        .map(|&p| {
                            right_for(k, t, p, ty::PORT_RIGHTS | ty::DEAD_NAME, disposition).0
                        })
                        .collect();
                    if disposition == mt::PORT_NAME {
                        Item::port_name(names.first().copied().unwrap_or(0))
                    } else if *inline {
                        Item::ports(disposition, names)
                    } else {
                        Item::ool_ports(disposition, names, false)
                    }
                })
                .collect();
            let mut msg = Message::new(dest, dest_type, reply, reply_type, 77, body);
            if !complex {
                msg.bits &= !mach::types::msgh_bits::COMPLEX;
            }
            if let Ok(SendStatus::Pending(ticket)) = k.send(t, msg, block) {
                pending.push(ticket);
            }
        }
        Op::Receive {
            task,
            pick: p,
            max_size,
            large,
        } => {
            let (n, _) = right_for(k, tasks[task], p, ty::RECEIVE | ty::PORT_SET, 0);
            let _ = k.receive(tasks[task], n, RecvOptions { max_size, large });
        }
        Op::CancelPending => {
            if !pending.is_empty() {
                let ticket = pending.remove(0);
                let _ = k.cancel_send(ticket);
            }
        }
        Op::DestroyTask { task } => {
            let _ = k.destroy_task(tasks[task]);
        }
    }
}

fn run(ops: &[Op], destroy_at: Option<(usize, usize)>) -> Result<(), TestCaseError> {
    let mut k = Kernel::default();
    let tasks: Vec<TaskId> = (0..TASKS).map(|_| k.create_task()).collect();
    // Every task starts with two ports, a set, and send rights to each other's first.
    let firsts: Vec<Name> = tasks
        .iter()
        .map(|&t| {
            let first = k.port_allocate(t, PortRight::Receive).unwrap();
            k.port_allocate(t, PortRight::Receive).unwrap();
            k.port_allocate(t, PortRight::PortSet).unwrap();
            first
        })
        .collect();
    for (i, &from) in tasks.iter().enumerate() {
        for &to in &tasks {
            k.port_extract_right(from, firsts[i], mt::MAKE_SEND, to)
                .unwrap();
        }
    }
    let mut pending = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if let Some((at, task)) = destroy_at {
            if at % ops.len() == i {
                apply(&mut k, &tasks, &mut pending, &Op::DestroyTask { task });
            }
        }
        apply(&mut k, &tasks, &mut pending, op);
        k.take_wakes();
        if let Err(e) = k.check_invariants() {
            return Err(TestCaseError::fail(format!("after op {i} {op:?}: {e}")));
        }
    }
    for &t in &tasks {
        let _ = k.destroy_task(t);
        k.check_invariants()
            .map_err(|e| TestCaseError::fail(format!("destroying {t:?}: {e}")))?;
    }
    prop_assert_eq!(k.port_objects(), 0, "ports leaked");
    Ok(())
}

proptest! {
    // PROPTEST_CASES=N runs a longer soak.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400),
        max_shrink_iters: 20_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operations_keep_the_kernel_consistent(
        ops in prop::collection::vec(op(), 1..200),
        destroy_at in prop::option::weighted(0.3, (any::<usize>(), 0..TASKS)),
    ) {
        run(&ops, destroy_at)?;
    }
}

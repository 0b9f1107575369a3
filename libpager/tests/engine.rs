//! The engine's behaviour case by case: each of the original libpager's known
//! limits (seed-netmsg.md §3.4) and how this engine does better; and the
//! transition table, kept as a snapshot so any change to a transition shows.

use std::time::Duration;

use libpager::{Access, Action, Config, Engine, Event};
use mach::types::{should_return, vm_prot};

const PS: u64 = 4096;

/// The backing store answered the read of `p` with its contents.
fn page_read(p: u64) -> Event {
    Event::PageRead {
        page: p,
        result: Ok(page(p as u8)),
    }
}
fn engine(hold_ms: u64) -> Engine {
    let mut e = Engine::new(Config {
        page_size: PS,
        hold: Duration::from_millis(hold_ms),
        lease: Duration::from_secs(1),
    });
    for c in 1..=3 {
        assert_eq!(
            e.handle(ms(0), Event::Init { client: c }),
            [Action::Ready { client: c }]
        );
    }
    e
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn page(fill: u8) -> Vec<u8> {
    vec![fill; PS as usize]
}

fn no_timers(actions: Vec<Action>) -> Vec<Action> {
    actions
        .into_iter()
        .filter(|a| !matches!(a, Action::ArmTimer { .. }))
        .collect()
}

fn req(client: u32, p: u64, n: u64, access: Access) -> Event {
    Event::DataRequest {
        client,
        offset: p * PS,
        length: n * PS,
        access,
    }
}

fn completed(client: u32, p: u64) -> Event {
    Event::LockCompleted {
        client,
        offset: p * PS,
        length: PS,
    }
}

#[test]
fn multi_page_requests_get_one_multi_page_supply() {
    let mut e = engine(0);
    let a = e.handle(ms(0), req(1, 0, 3, Access::Read));
    assert_eq!(
        a,
        [
            Action::ReadPage { page: 0 },
            Action::ReadPage { page: 1 },
            Action::ReadPage { page: 2 }
        ]
    );
    // Pages arrive out of order; contiguous supplies are merged.
    assert_eq!(
        e.handle(
            ms(1),
            Event::PageRead {
                page: 2,
                result: Ok(page(2))
            }
        ),
        [Action::Supply {
            client: 1,
            offset: 2 * PS,
            data: page(2),
            lock_value: vm_prot::WRITE
        }]
    );
    let a = e.handle(ms(1), page_read(0));
    assert_eq!(a.len(), 1);
    let mut both = e.handle(ms(1), page_read(1));
    assert_eq!(both.len(), 1);
    // A second kernel asking for all three pages at once gets one message.
    let a = e.handle(ms(2), req(2, 0, 3, Access::Read));
    assert_eq!(
        a,
        [
            Action::ReadPage { page: 0 },
            Action::ReadPage { page: 1 },
            Action::ReadPage { page: 2 }
        ]
    );
    for p in [1, 0, 2] {
        both = e.handle(
            ms(3),
            Event::PageRead {
                page: p,
                result: Ok(page(p as u8)),
            },
        );
    }
    assert!(matches!(&both[..], [Action::Supply { client: 2, .. }]));
    // Revocations coalesce too: one lock request over the run.
    let a = no_timers(e.handle(ms(4), req(3, 0, 3, Access::Write)));
    assert_eq!(
        a,
        [
            Action::LockRequest {
                client: 1,
                offset: 0,
                length: 3 * PS,
                should_return: should_return::NONE,
                should_flush: true,
                lock_value: vm_prot::NO_CHANGE,
                reply: true
            },
            Action::LockRequest {
                client: 2,
                offset: 0,
                length: 3 * PS,
                should_return: should_return::NONE,
                should_flush: true,
                lock_value: vm_prot::NO_CHANGE,
                reply: true
            },
        ]
    );
}

#[test]
fn a_writer_is_downgraded_and_its_returned_data_goes_straight_to_the_reader() {
    let mut e = engine(0);
    e.handle(ms(0), req(1, 0, 1, Access::Write));
    e.handle(ms(0), page_read(0));
    assert_eq!(e.holders(0), (vec![], Some(1)));
    // A reader arrives: the writer is asked to return dirty data and keep a
    // read-only copy (no flush).
    let a = no_timers(e.handle(ms(5), req(2, 0, 1, Access::Read)));
    assert_eq!(
        a,
        [Action::LockRequest {
            client: 1,
            offset: 0,
            length: PS,
            should_return: should_return::DIRTY,
            should_flush: false,
            lock_value: vm_prot::WRITE,
            reply: true
        }]
    );
    let a = e.handle(
        ms(6),
        Event::DataReturn {
            client: 1,
            offset: 0,
            data: page(9),
            dirty: true,
            kernel_copy: true,
        },
    );
    assert_eq!(
        a,
        [Action::WritePage {
            page: 0,
            data: page(9)
        }]
    );
    // On completion the reader gets the returned data at once: no disk read,
    // even though the write is still in flight.
    let a = e.handle(ms(7), completed(1, 0));
    assert_eq!(
        a,
        [Action::Supply {
            client: 2,
            offset: 0,
            data: page(9),
            lock_value: vm_prot::WRITE
        }]
    );
    assert_eq!(
        e.holders(0),
        (vec![1, 2], None),
        "the old writer keeps a read-only copy"
    );
    assert_eq!(
        e.handle(
            ms(8),
            Event::PageWritten {
                page: 0,
                result: Ok(())
            }
        ),
        []
    );
}

/// Counts a transfer of write access and checks it respects the hold time.
fn transfer(last: &mut Option<u64>, transfers: &mut u64, now: u64, hold: u64) {
    if let Some(l) = *last {
        assert!(now - l >= hold, "page moved after {} ms", now - l);
    }
    *last = Some(now);
    *transfers += 1;
}

#[test]
fn the_hold_time_bounds_ping_pong() {
    let hold = 50;
    let mut e = engine(hold);
    let mut now = 0;
    let mut transfers = 0;
    let mut last_transfer = None;
    // Kernels 1 and 2 both want to write page 0 as often as they can for 1 s.
    e.handle(ms(0), req(1, 0, 1, Access::Write));
    e.handle(ms(0), page_read(0));
    let mut holder = 1;
    let mut timer = None;
    while now < 1000 {
        let other = 3 - holder;
        let mut actions = e.handle(ms(now), req(other, 0, 1, Access::Write));
        // Fire timers and answer revocations at once, as a fast kernel would.
        loop {
            let mut next = Vec::new();
            for a in actions {
                match a {
                    Action::ArmTimer { at } => timer = Some(at),
                    Action::LockRequest {
                        client,
                        reply: true,
                        ..
                    } => {
                        next.extend(e.handle(
                            ms(now),
                            Event::DataReturn {
                                client,
                                offset: 0,
                                data: page(client as u8),
                                dirty: true,
                                kernel_copy: false,
                            },
                        ));
                        next.extend(e.handle(ms(now), completed(client, 0)));
                    }
                    Action::WritePage { .. } => next.extend(e.handle(
                        ms(now),
                        Event::PageWritten {
                            page: 0,
                            result: Ok(()),
                        },
                    )),
                    Action::Supply {
                        client,
                        lock_value: vm_prot::NONE,
                        ..
                    } => {
                        transfer(&mut last_transfer, &mut transfers, now, hold);
                        holder = client;
                    }
                    _ => {}
                }
            }
            if next.is_empty() {
                break;
            }
            actions = next;
        }
        now += 1;
        if let Some(t) = timer.filter(|t| *t <= ms(now)) {
            timer = None;
            let _ = t;
            let mut fired = e.handle(ms(now), Event::Timer);
            fired.retain(|a| !matches!(a, Action::ArmTimer { .. }));
            for a in fired {
                if let Action::LockRequest { client, .. } = a {
                    let mut more = e.handle(
                        ms(now),
                        Event::DataReturn {
                            client,
                            offset: 0,
                            data: page(1),
                            dirty: true,
                            kernel_copy: false,
                        },
                    );
                    more.extend(e.handle(ms(now), completed(client, 0)));
                    for m in more {
                        match m {
                            Action::Supply {
                                client,
                                lock_value: vm_prot::NONE,
                                ..
                            } => {
                                transfer(&mut last_transfer, &mut transfers, now, hold);
                                holder = client;
                            }
                            Action::WritePage { .. } => {
                                e.handle(
                                    ms(now),
                                    Event::PageWritten {
                                        page: 0,
                                        result: Ok(()),
                                    },
                                );
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    assert!(transfers >= 10, "the page does move ({transfers})");
    assert!(
        transfers <= 1000 / hold + 1,
        "{transfers} transfers in 1 s with a {hold} ms hold"
    );
}

#[test]
fn writes_to_different_pages_are_not_serialized() {
    let mut e = engine(0);
    e.handle(ms(0), req(1, 0, 2, Access::Write));
    e.handle(ms(0), page_read(0));
    e.handle(
        ms(0),
        Event::PageRead {
            page: 1,
            result: Ok(page(0)),
        },
    );
    let a = e.handle(
        ms(1),
        Event::DataReturn {
            client: 1,
            offset: 0,
            data: [page(5), page(6)].concat(),
            dirty: true,
            kernel_copy: false,
        },
    );
    assert_eq!(
        a,
        [
            Action::WritePage {
                page: 0,
                data: page(5)
            },
            Action::WritePage {
                page: 1,
                data: page(6)
            }
        ],
        "both writes start at once"
    );
    // A second return for page 0 waits for the first write of page 0 only.
    let a = e.handle(
        ms(2),
        Event::DataReturn {
            client: 1,
            offset: 0,
            data: page(7),
            dirty: true,
            kernel_copy: false,
        },
    );
    assert_eq!(a, []);
    assert_eq!(
        e.handle(
            ms(3),
            Event::PageWritten {
                page: 1,
                result: Ok(())
            }
        ),
        []
    );
    assert_eq!(
        e.handle(
            ms(4),
            Event::PageWritten {
                page: 0,
                result: Ok(())
            }
        ),
        [Action::WritePage {
            page: 0,
            data: page(7)
        }],
        "same-page writes stay ordered"
    );
}

#[test]
fn a_silent_kernel_is_dropped_after_its_lease_and_a_dead_one_at_once() {
    let mut e = engine(0);
    e.handle(ms(0), req(1, 0, 1, Access::Write));
    e.handle(ms(0), page_read(0));
    let a = e.handle(ms(10), req(2, 0, 1, Access::Read));
    assert!(a.contains(&Action::ArmTimer { at: ms(1010) }), "{a:?}");
    assert_eq!(no_timers(e.handle(ms(500), Event::Timer)), [], "not yet");
    // Kernel 1 never answers: at the lease it is dropped and kernel 2 served.
    let a = e.handle(ms(1010), Event::Timer);
    assert_eq!(
        a,
        [
            Action::DropClient { client: 1 },
            Action::ReadPage { page: 0 }
        ]
    );
    let a = e.handle(ms(1011), page_read(0));
    assert_eq!(
        a,
        [Action::Supply {
            client: 2,
            offset: 0,
            data: page(0),
            lock_value: vm_prot::WRITE
        }]
    );
    // Its late messages are ignored.
    assert_eq!(
        e.handle(
            ms(1012),
            Event::DataReturn {
                client: 1,
                offset: 0,
                data: page(9),
                dirty: true,
                kernel_copy: false
            }
        ),
        []
    );
    // A dead-name notification drops a kernel without waiting.
    e.handle(ms(1100), req(3, 0, 1, Access::Write));
    let a = no_timers(e.handle(ms(1101), Event::ClientGone { client: 2 }));
    assert_eq!(
        a,
        [Action::ReadPage { page: 0 }],
        "kernel 3 no longer waits on kernel 2"
    );
    let a = e.handle(ms(1102), page_read(0));
    assert_eq!(
        a,
        [Action::Supply {
            client: 3,
            offset: 0,
            data: page(0),
            lock_value: vm_prot::NONE
        }]
    );
}

#[test]
fn an_unlock_error_flushes_then_fails_the_next_request() {
    let mut e = engine(0);
    e.handle(ms(0), req(1, 0, 1, Access::Read));
    e.handle(ms(0), page_read(0));
    let a = e.handle(
        ms(1),
        Event::DataUnlock {
            client: 1,
            offset: 0,
            length: PS,
            access: Access::Write,
        },
    );
    assert_eq!(a, [Action::UnlockPage { page: 0 }]);
    // The file system cannot allocate the block (ENOSPC): the manual's rule.
    let a = no_timers(e.handle(
        ms(2),
        Event::PageUnlocked {
            page: 0,
            result: Err(28),
        },
    ));
    assert_eq!(
        a,
        [Action::LockRequest {
            client: 1,
            offset: 0,
            length: PS,
            should_return: should_return::NONE,
            should_flush: true,
            lock_value: vm_prot::NO_CHANGE,
            reply: true
        }]
    );
    e.handle(ms(3), completed(1, 0));
    let a = e.handle(ms(4), req(1, 0, 1, Access::Write));
    assert_eq!(
        a,
        [Action::DataError {
            client: 1,
            offset: 0,
            length: PS,
            error: 28
        }]
    );
    // Only once.
    assert_eq!(
        e.handle(ms(5), req(1, 0, 1, Access::Read)),
        [Action::ReadPage { page: 0 }]
    );
}

#[test]
fn a_read_error_fails_every_waiter_and_a_write_error_keeps_the_data() {
    let mut e = engine(0);
    e.handle(ms(0), req(1, 0, 1, Access::Read));
    e.handle(ms(0), req(2, 0, 1, Access::Read));
    let a = e.handle(
        ms(1),
        Event::PageRead {
            page: 0,
            result: Err(5),
        },
    );
    assert_eq!(
        a,
        [
            Action::DataError {
                client: 1,
                offset: 0,
                length: PS,
                error: 5
            },
            Action::DataError {
                client: 2,
                offset: 0,
                length: PS,
                error: 5
            }
        ]
    );
    e.handle(ms(2), req(1, 1, 1, Access::Write));
    e.handle(
        ms(2),
        Event::PageRead {
            page: 1,
            result: Ok(page(0)),
        },
    );
    e.handle(
        ms(3),
        Event::DataReturn {
            client: 1,
            offset: PS,
            data: page(4),
            dirty: true,
            kernel_copy: false,
        },
    );
    e.handle(
        ms(4),
        Event::PageWritten {
            page: 1,
            result: Err(5),
        },
    );
    assert_eq!(e.write_errors(), [(1, 5)]);
    // The data was not lost: the next reader gets it from memory.
    assert_eq!(
        e.handle(ms(5), req(2, 1, 1, Access::Read)),
        [Action::Supply {
            client: 2,
            offset: PS,
            data: page(4),
            lock_value: vm_prot::WRITE
        }]
    );
}

#[test]
fn sync_return_and_flush_reach_the_holders_and_report_completion() {
    let mut e = engine(0);
    e.handle(ms(0), req(1, 0, 1, Access::Write));
    e.handle(ms(0), page_read(0));
    e.handle(ms(0), req(2, 1, 1, Access::Read));
    e.handle(
        ms(0),
        Event::PageRead {
            page: 1,
            result: Ok(page(0)),
        },
    );
    // pager_sync: RETURN_ALL without flush, to every holder.
    let (id, a) = e.lock_range(ms(1), 0, 2 * PS, should_return::ALL, false, true);
    assert_eq!(
        no_timers(a),
        [
            Action::LockRequest {
                client: 1,
                offset: 0,
                length: PS,
                should_return: should_return::ALL,
                should_flush: false,
                lock_value: vm_prot::NO_CHANGE,
                reply: true
            },
            Action::LockRequest {
                client: 2,
                offset: PS,
                length: PS,
                should_return: should_return::ALL,
                should_flush: false,
                lock_value: vm_prot::NO_CHANGE,
                reply: true
            },
        ]
    );
    // With RETURN_DIRTY only the writer is asked.
    let (_, a) = e.lock_range(ms(1), PS, PS, should_return::DIRTY, false, false);
    assert_eq!(
        no_timers(a),
        [],
        "page 1 has no writer (and its reader is already being asked)"
    );
    e.handle(ms(2), completed(2, 1));
    let a = e.handle(
        ms(2),
        Event::DataReturn {
            client: 1,
            offset: 0,
            data: page(3),
            dirty: true,
            kernel_copy: true,
        },
    );
    assert_eq!(
        a,
        [Action::WritePage {
            page: 0,
            data: page(3)
        }]
    );
    assert_eq!(
        no_timers(e.handle(ms(3), completed(1, 0))),
        [],
        "done only when the data is on disk"
    );
    assert_eq!(
        e.handle(
            ms(4),
            Event::PageWritten {
                page: 0,
                result: Ok(())
            }
        ),
        [Action::LockDone { request: id }]
    );
    assert_eq!(e.holders(0), (vec![], Some(1)), "a sync takes nothing away");
    // pager_flush: RETURN_NONE with flush, everyone.
    let (_, a) = e.lock_range(ms(5), 0, 2 * PS, should_return::NONE, true, false);
    assert_eq!(no_timers(a).len(), 2);
}

/// Every transition from a set of canonical states, as text. Review any change.
fn transition_table() -> String {
    type Setup = fn(&mut Engine);
    let states: Vec<(&str, Setup)> = vec![
        ("idle", |_| {}),
        ("R[1]", |e| {
            e.handle(ms(0), req(1, 0, 1, Access::Read));
            e.handle(ms(0), page_read(0));
        }),
        ("R[1,2]", |e| {
            e.handle(ms(0), req(1, 0, 1, Access::Read));
            e.handle(ms(0), req(2, 0, 1, Access::Read));
            e.handle(ms(0), page_read(0));
        }),
        ("W[1]", |e| {
            e.handle(ms(0), req(1, 0, 1, Access::Write));
            e.handle(ms(0), page_read(0));
        }),
        ("W[1] revoking for 2r", |e| {
            e.handle(ms(0), req(1, 0, 1, Access::Write));
            e.handle(ms(0), page_read(0));
            e.handle(ms(20), req(2, 0, 1, Access::Read));
        }),
        ("reading for 1w", |e| {
            e.handle(ms(0), req(1, 0, 1, Access::Write));
        }),
    ];
    let events: Vec<(&str, Event)> = vec![
        ("1 asks read", req(1, 0, 1, Access::Read)),
        ("1 asks write", req(1, 0, 1, Access::Write)),
        ("2 asks read", req(2, 0, 1, Access::Read)),
        ("2 asks write", req(2, 0, 1, Access::Write)),
        (
            "1 unlocks",
            Event::DataUnlock {
                client: 1,
                offset: 0,
                length: PS,
                access: Access::Write,
            },
        ),
        (
            "1 returns dirty, keeps copy",
            Event::DataReturn {
                client: 1,
                offset: 0,
                data: page(7),
                dirty: true,
                kernel_copy: true,
            },
        ),
        (
            "1 returns clean, drops",
            Event::DataReturn {
                client: 1,
                offset: 0,
                data: page(7),
                dirty: false,
                kernel_copy: false,
            },
        ),
        ("1 completes lock", completed(1, 0)),
        (
            "page read",
            Event::PageRead {
                page: 0,
                result: Ok(page(1)),
            },
        ),
        (
            "page read fails",
            Event::PageRead {
                page: 0,
                result: Err(5),
            },
        ),
        ("1 is gone", Event::ClientGone { client: 1 }),
        ("timer (hold over)", Event::Timer),
    ];
    let mut out = String::from("# libpager transition table: state | event -> actions => state\n");
    for (name, setup) in &states {
        for (ev_name, ev) in &events {
            let mut e = Engine::new(Config {
                page_size: PS,
                hold: Duration::from_millis(10),
                lease: Duration::from_secs(1),
            });
            for c in 1..=3 {
                e.handle(ms(0), Event::Init { client: c });
            }
            setup(&mut e);
            let before = e.describe(0);
            let actions: Vec<String> = e
                .handle(ms(30), ev.clone())
                .iter()
                .map(|a| match a {
                    Action::Supply { client, lock_value, .. } => format!("supply({client}, {})", if *lock_value == vm_prot::NONE { "rw" } else { "ro" }),
                    Action::LockRequest { client, should_return, should_flush, lock_value, reply, .. } => {
                        format!("lock({client}, ret={should_return}, flush={should_flush}, lock={lock_value}, reply={reply})")
                    }
                    Action::DataError { client, error, .. } => format!("error({client}, {error})"),
                    Action::ReadPage { .. } => "read".into(),
                    Action::WritePage { .. } => "write".into(),
                    Action::UnlockPage { .. } => "unlock".into(),
                    Action::ArmTimer { at } => format!("timer({}ms)", at.as_millis()),
                    other => format!("{other:?}"),
                })
                .collect();
            out.push_str(&format!(
                "{name:<22} [{before}] | {ev_name:<28} -> {} => {}\n",
                actions.join(", "),
                e.describe(0)
            ));
        }
    }
    out
}

#[test]
fn transition_table_matches_the_snapshot() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/transitions.txt");
    let table = transition_table();
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &table).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .expect("tests/transitions.txt (UPDATE_SNAPSHOTS=1 writes it)");
    assert_eq!(
        table, expected,
        "a transition changed: review the diff, then UPDATE_SNAPSHOTS=1"
    );
}

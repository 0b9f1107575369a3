//! The release protocol between two nodes, randomized, with the invariants of
//! `shared/models/release.pml` checked as it runs: A exports ports to B, B's
//! tasks send to them and drop their rights, no-senders notifications arrive
//! late, ports die at any moment, and the rights travel in messages on other
//! streams (in any order relative to the port's own stream).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use netmsg::release::{Effect, Effects, Frame, Imported, Ledger};
/// Effects as the ledger returns them.
macro_rules! effects {
    ($($e:expr),* $(,)?) => {{
        let e: Effects = smallvec::smallvec![$($e),*];
        e
    }};
}
use proptest::prelude::*;

mod common;

#[derive(Clone, Copy, Debug, PartialEq)]
enum OnStream {
    Msg,
    Frame(Frame),
}

#[derive(Default)]
struct World {
    a: Ledger,
    b: Ledger,
    ports_alive: BTreeMap<u64, bool>,
    /// Rights (export ids) in flight from A to B, in any order.
    carried: Vec<u64>,
    /// Per export id: B -> A (messages, releases) and A -> B (dead, ack).
    to_a: BTreeMap<u64, VecDeque<OnStream>>,
    to_b: BTreeMap<u64, VecDeque<Frame>>,
    /// B's kernel: send rights its tasks hold per proxy, make-send counts,
    /// pending no-senders notifications (proxy, mscount).
    b_rights: BTreeMap<u64, u64>,
    /// References B's netmsg keeps for rights it sent home (per proxy).
    b_kept: BTreeMap<u64, u64>,
    /// Rights going home to A (export ids), in any order.
    home: Vec<u64>,
    made: BTreeMap<u64, u64>,
    proxy_id: BTreeMap<u64, u64>,
    no_senders: Vec<(u64, u64)>,
    b_saw_dead: BTreeSet<u64>,
    sent_msgs: u64,
    delivered: u64,
    destroyed: u64,
    export_port: BTreeMap<u64, u64>,
    /// Every export id's port, kept after the export is freed.
    port_of_id: BTreeMap<u64, u64>,
    rng: u64,
}

impl World {
    fn rand(&mut self, n: usize) -> usize {
        common::below(&mut self.rng, n)
    }

    fn apply_a(&mut self, effects: Effects) {
        for e in effects {
            match e {
                Effect::Send(f) => {
                    let id = match f {
                        Frame::Dead { id }
                        | Frame::Ack { id, .. }
                        | Frame::Release { id, .. }
                        | Frame::SendOnceDestroyed { id }
                        | Frame::HomeArrived { id, .. } => id,
                    };
                    self.to_b.entry(id).or_default().push_back(f);
                }
                Effect::ReleasePort { port } => {
                    // The export dies: nothing may still refer to it.
                    let ids: Vec<u64> = self
                        .export_port
                        .iter()
                        .filter(|(_, &p)| p == port)
                        .map(|(&i, _)| i)
                        .collect();
                    for id in ids {
                        if self.a.exports().iter().any(|e| e.0 == id) {
                            continue;
                        }
                        assert!(
                            !self.carried.contains(&id),
                            "export {id} freed with a right in flight"
                        );
                        // One going home then arrives as a dead name, which
                        // is right only if the port is dead.
                        assert!(
                            !self.ports_alive[&port] || !self.home.contains(&id),
                            "export {id} of a live port freed with a right going home"
                        );
                        assert!(
                            self.b.proxy_of(id).is_none(),
                            "export {id} freed while B holds a live proxy"
                        );
                        assert!(
                            !self
                                .to_a
                                .get(&id)
                                .is_some_and(|q| q.contains(&OnStream::Msg)),
                            "export {id} freed with messages queued"
                        );
                        self.export_port.remove(&id);
                    }
                }
                Effect::FinishExport { .. } | Effect::FinishImport { .. } => {}
                other => panic!("A did {other:?}"),
            }
        }
    }

    fn apply_b(&mut self, effects: Effects) {
        for e in effects {
            match e {
                Effect::Send(f @ Frame::Release { id, .. }) => self
                    .to_a
                    .entry(id)
                    .or_default()
                    .push_back(OnStream::Frame(f)),
                Effect::CreateProxy { proxy, id, .. } => {
                    self.proxy_id.insert(proxy, id);
                    self.made.insert(proxy, 0);
                    self.b_rights.insert(proxy, 0);
                    self.b_kept.insert(proxy, 0);
                }
                // Tasks' rights become dead names: only right if the port died
                // (or no task holds one).
                Effect::DestroyProxy { proxy } => {
                    let held = self.b_rights.remove(&proxy).unwrap_or(0)
                        + self.b_kept.remove(&proxy).unwrap_or(0);
                    let id = self.proxy_id[&proxy];
                    assert!(
                        held == 0 || self.b_saw_dead.contains(&id),
                        "proxy of live export {id} destroyed while tasks hold {held} rights"
                    );
                }
                Effect::DropProxyRefs { proxy, count } => {
                    let kept = self.b_kept.get_mut(&proxy).expect("live proxy");
                    assert!(*kept >= count, "B dropped references it did not keep");
                    *kept -= count;
                    self.maybe_no_senders(proxy);
                }
                Effect::FinishExport { .. } | Effect::FinishImport { .. } => {}
                other => panic!("B did {other:?}"),
            }
        }
    }

    fn step(&mut self, ports: u64) {
        match self.rand(11) {
            0 => {
                let port = self.rand(ports as usize) as u64;
                if self.ports_alive[&port] {
                    let id = self.a.export(port);
                    self.export_port.insert(id, port);
                    self.port_of_id.insert(id, port);
                    self.carried.push(id);
                }
            }
            1 if !self.carried.is_empty() => {
                let i = self.rand(self.carried.len());
                let id = self.carried.swap_remove(i);
                let (imported, effects) = self.b.import(id).unwrap();
                self.apply_b(effects);
                if let Imported::Proxy(p) = imported {
                    assert!(
                        !self.b_saw_dead.contains(&id),
                        "B handed out a live right to dead export {id}"
                    );
                    *self.made.get_mut(&p).unwrap() += 1;
                    *self.b_rights.get_mut(&p).unwrap() += 1;
                }
            }
            2 => {
                let live = self.held_proxies();
                if !live.is_empty() {
                    let p = live[self.rand(live.len())];
                    let id = self.proxy_id[&p];
                    self.to_a.entry(id).or_default().push_back(OnStream::Msg);
                    self.sent_msgs += 1;
                }
            }
            3 => self.drop_a_right(),
            4 if !self.no_senders.is_empty() => {
                let i = self.rand(self.no_senders.len());
                let (p, m) = self.no_senders.swap_remove(i);
                let effects = self.b.no_senders(p, m);
                self.apply_b(effects);
            }
            5 => {
                let busy = common::busy_streams(&self.to_a);
                if let Some(id) = common::pick(&mut self.rng, &busy) {
                    self.deliver_to_a(id);
                }
            }
            6 => {
                let busy = common::busy_streams(&self.to_b);
                if let Some(id) = common::pick(&mut self.rng, &busy) {
                    self.deliver_to_b(id);
                }
            }
            7 if self.rand(6) == 0 => {
                let port = self.rand(ports as usize) as u64;
                if self.ports_alive[&port] {
                    self.ports_alive.insert(port, false);
                    let effects = self.a.port_died(port);
                    self.apply_a(effects);
                }
            }
            8 => {
                // A task on B sends A's port home in a message.
                let live = self.held_proxies();
                if let Some(p) = common::pick(&mut self.rng, &live) {
                    let id = self.b.send_home(p).expect("a live proxy goes home");
                    *self.b_rights.get_mut(&p).unwrap() -= 1;
                    *self.b_kept.get_mut(&p).unwrap() += 1;
                    self.home.push(id);
                }
            }
            9 if !self.home.is_empty() => {
                let i = self.rand(self.home.len());
                let id = self.home.swap_remove(i);
                self.arrive_home(id);
            }
            _ => {}
        }
    }

    /// Proxies to which B's tasks hold send rights.
    fn held_proxies(&self) -> Vec<u64> {
        self.b_rights
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(&p, _)| p)
            .collect()
    }

    fn arrive_home(&mut self, id: u64) {
        let (port, effects) = self.a.home_arrived(id);
        let home = self.port_of_id[&id];
        if self.ports_alive[&home] {
            assert_eq!(port, Some(home), "a live port's right came home dead");
        }
        self.apply_a(effects);
    }

    fn maybe_no_senders(&mut self, p: u64) {
        if self.b_rights[&p] == 0 && self.b_kept[&p] == 0 {
            self.no_senders.push((p, self.made[&p]));
        }
    }

    fn drop_a_right(&mut self) {
        let live = self.held_proxies();
        if live.is_empty() {
            return;
        }
        let p = live[self.rand(live.len())];
        *self.b_rights.get_mut(&p).unwrap() -= 1;
        self.maybe_no_senders(p);
    }

    fn deliver_to_a(&mut self, id: u64) {
        match self.to_a.get_mut(&id).and_then(VecDeque::pop_front) {
            Some(OnStream::Msg) => {
                let port = self.export_port[&id];
                if self.ports_alive[&port] {
                    self.delivered += 1;
                } else {
                    self.destroyed += 1;
                }
            }
            Some(OnStream::Frame(f)) => {
                let effects = self.a.on_frame(f).expect("B never breaks the protocol");
                self.apply_a(effects);
            }
            None => {}
        }
    }

    fn deliver_to_b(&mut self, id: u64) {
        if let Some(f) = self.to_b.get_mut(&id).and_then(VecDeque::pop_front) {
            if matches!(f, Frame::Dead { .. }) {
                self.b_saw_dead.insert(id);
            }
            let effects = self.b.on_frame(f).expect("A never breaks the protocol");
            self.apply_b(effects);
        }
    }

    /// Everything in flight is delivered and every task drops its rights.
    fn drain(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            if let Some(id) = self.carried.pop() {
                let (imported, effects) = self.b.import(id).unwrap();
                self.apply_b(effects);
                if let Imported::Proxy(p) = imported {
                    *self.made.get_mut(&p).unwrap() += 1;
                    *self.b_rights.get_mut(&p).unwrap() += 1;
                }
                moved = true;
            }
            if let Some(id) = self.home.pop() {
                self.arrive_home(id);
                moved = true;
            }
            if self.b_rights.values().any(|&n| n > 0) {
                self.drop_a_right();
                moved = true;
            }
            if let Some((p, m)) = self.no_senders.pop() {
                let effects = self.b.no_senders(p, m);
                self.apply_b(effects);
                moved = true;
            }
            for id in common::busy_streams(&self.to_a) {
                self.deliver_to_a(id);
                moved = true;
            }
            for id in common::busy_streams(&self.to_b) {
                self.deliver_to_b(id);
                moved = true;
            }
            if !moved {
                return;
            }
        }
        panic!("no quiescence");
    }
}

fn run(seed: u64, ports: u64, steps: usize) {
    let mut w = World {
        a: Ledger::new(),
        b: Ledger::new(),
        rng: seed | 1,
        ..World::default()
    };
    for p in 0..ports {
        w.ports_alive.insert(p, true);
    }
    for _ in 0..steps {
        w.step(ports);
    }
    w.drain();
    // When nothing can move, everything is accounted for.
    assert!(
        w.a.is_empty(),
        "seed {seed}: A still exports {:?}",
        w.a.exports()
    );
    assert!(w.b.is_empty(), "seed {seed}: B still imports");
    assert!(w.carried.is_empty() && w.no_senders.is_empty());
    assert!(w.to_a.values().all(VecDeque::is_empty) && w.to_b.values().all(VecDeque::is_empty));
    assert_eq!(
        w.delivered + w.destroyed,
        w.sent_msgs,
        "seed {seed}: a message was lost"
    );
}

#[test]
fn fixed_seeds_keep_the_model_invariants() {
    for seed in 1..=500 {
        run(seed, 1 + seed % 4, 400);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200), ..ProptestConfig::default() })]
    #[test]
    fn random_seeds_keep_the_model_invariants(seed in any::<u64>(), ports in 1u64..5, steps in 10usize..600) {
        run(seed, ports, steps);
    }
}

#[test]
fn link_loss_frees_everything() {
    let mut a = Ledger::new();
    let mut b = Ledger::new();
    let id = a.export(7);
    let (Imported::Proxy(proxy), effects) = b.import(id).unwrap() else {
        panic!()
    };
    assert_eq!(
        effects,
        effects![Effect::CreateProxy {
            proxy,
            id,
            once: false
        }]
    );
    assert_eq!(b.link_lost(), effects![Effect::DestroyProxy { proxy }]);
    assert_eq!(a.link_lost(), effects![Effect::ReleasePort { port: 7 }]);
    assert!(a.is_empty() && b.is_empty());
}

#[test]
fn a_peer_that_over_releases_is_a_protocol_error() {
    let mut a = Ledger::new();
    let id = a.export(1);
    assert!(a.on_frame(Frame::Release { id, count: 2 }).is_err());
    assert!(a.on_frame(Frame::Release { id: 99, count: 1 }).is_err());
    // Export IDs are never reused, even for the same port after it was freed.
    assert_eq!(
        a.on_frame(Frame::Release { id, count: 1 }).unwrap().len(),
        3
    );
    assert_ne!(a.export(1), id);
}

#[test]
fn a_stale_no_senders_is_ignored() {
    let mut b = Ledger::new();
    let (Imported::Proxy(p), _) = b.import(5).unwrap() else {
        panic!()
    };
    // The notification was generated with mscount 1, but another right came since.
    let _ = b.import(5).unwrap();
    assert_eq!(b.no_senders(p, 1), effects![]);
    assert_eq!(
        b.no_senders(p, 2),
        effects![
            Effect::Send(Frame::Release { id: 5, count: 2 }),
            Effect::DestroyProxy { proxy: p }
        ]
    );
}

/// B, with one right to export `id` on its way home, is told two arrived.
fn confirming_more_than_pending_is_an_error(b: &mut Ledger, id: u64) {
    assert_eq!(
        b.on_frame(Frame::HomeArrived { id, count: 2 }),
        Err(netmsg::release::ReleaseError::OverHomeArrival {
            id,
            count: 2,
            pending: 1
        })
    );
}

#[test]
fn a_right_going_home_holds_the_release_until_it_arrives() {
    let mut a = Ledger::new();
    let mut b = Ledger::new();
    let id = a.export(4);
    let (Imported::Proxy(proxy), _) = b.import(id).unwrap() else {
        panic!()
    };
    // The task sends the right home; netmsg keeps its reference, so a
    // no-senders now (all tasks' rights gone) is stale.
    assert_eq!(b.send_home(proxy), Some(id));
    assert_eq!(b.no_senders(proxy, 1), effects![]);
    let (port, effects) = a.home_arrived(id);
    assert_eq!(port, Some(4));
    assert_eq!(
        effects,
        effects![Effect::Send(Frame::HomeArrived { id, count: 1 })]
    );
    confirming_more_than_pending_is_an_error(&mut b, id);
    assert_eq!(
        b.on_frame(Frame::HomeArrived { id, count: 1 }).unwrap(),
        effects![Effect::DropProxyRefs { proxy, count: 1 }]
    );
    assert_eq!(
        b.no_senders(proxy, 1),
        effects![
            Effect::Send(Frame::Release { id, count: 1 }),
            Effect::DestroyProxy { proxy }
        ]
    );
}

/// B's proxy of A's export becomes the port itself (route shortening) while
/// a right to it is on its way home: the import is reported only after that
/// right arrived, so A still knows the export when it does.
#[test]
fn a_proxy_that_becomes_the_port_reports_after_its_rights_home_arrive() {
    let mut a = Ledger::new();
    let mut b = Ledger::new();
    let id = a.export(4);
    a.export(4);
    let (Imported::Proxy(proxy), _) = b.import(id).unwrap() else {
        panic!()
    };
    b.import(id).unwrap();
    assert_eq!(b.send_home(proxy), Some(id));
    assert_eq!(b.send_home(proxy), Some(id));
    assert_eq!(b.detach_proxy(proxy), Some(effects![]));
    assert!(b.is_detached(proxy) && !b.is_empty());
    assert_eq!(b.proxy_import_id(proxy), None);
    // The first right arrives home, as the port.
    assert_eq!(a.home_arrived(id).0, Some(4));
    assert_eq!(
        b.on_frame(Frame::HomeArrived { id, count: 1 }).unwrap(),
        effects![Effect::DropDetachedRefs {
            proxy,
            count: 1,
            last: false
        }]
    );
    confirming_more_than_pending_is_an_error(&mut b, id);
    // The second, still delivered as the port: the export is alive.
    assert_eq!(a.home_arrived(id).0, Some(4));
    assert_eq!(
        b.on_frame(Frame::HomeArrived { id, count: 1 }).unwrap(),
        effects![
            Effect::DropDetachedRefs {
                proxy,
                count: 1,
                last: true
            },
            Effect::Send(Frame::Release { id, count: 2 })
        ]
    );
    assert!(b.is_empty() && !b.is_detached(proxy));
    assert!(a
        .on_frame(Frame::Release { id, count: 2 })
        .unwrap()
        .contains(&Effect::ReleasePort { port: 4 }));
    assert!(a.is_empty());
}

/// A right of an export arrives after the export's proxy became the port
/// (through a third node, the exporter's proxy lives on): it makes a new
/// proxy, which may become the port too while rights sent home through both
/// are unconfirmed. Each keeps its own count and references, and the
/// exporter hears of every right.
#[test]
fn two_proxies_of_one_export_that_become_the_port_each_report() {
    let mut a = Ledger::new();
    let mut b = Ledger::new();
    let id = a.export(4);
    let (Imported::Proxy(first), _) = b.import(id).unwrap() else {
        panic!()
    };
    assert_eq!(b.send_home(first), Some(id));
    assert_eq!(b.detach_proxy(first), Some(effects![]));
    a.export(4);
    let (Imported::Proxy(second), _) = b.import(id).unwrap() else {
        panic!()
    };
    assert_ne!(second, first);
    assert_eq!(b.send_home(second), Some(id));
    assert_eq!(b.send_home(second), Some(id));
    assert_eq!(b.detach_proxy(second), Some(effects![]));
    assert!(b.is_detached(first) && b.is_detached(second));
    // Three rights home, confirmed in two frames.
    for _ in 0..3 {
        assert_eq!(a.home_arrived(id).0, Some(4));
    }
    assert_eq!(
        b.on_frame(Frame::HomeArrived { id, count: 2 }).unwrap(),
        effects![
            Effect::DropDetachedRefs {
                proxy: first,
                count: 1,
                last: true
            },
            Effect::Send(Frame::Release { id, count: 1 }),
            Effect::DropDetachedRefs {
                proxy: second,
                count: 1,
                last: false
            },
        ]
    );
    assert!(!b.is_detached(first) && b.is_detached(second));
    confirming_more_than_pending_is_an_error(&mut b, id);
    assert_eq!(
        b.on_frame(Frame::HomeArrived { id, count: 1 }).unwrap(),
        effects![
            Effect::DropDetachedRefs {
                proxy: second,
                count: 1,
                last: true
            },
            Effect::Send(Frame::Release { id, count: 1 })
        ]
    );
    assert!(b.is_empty());
    a.on_frame(Frame::Release { id, count: 1 }).unwrap();
    assert!(a
        .on_frame(Frame::Release { id, count: 1 })
        .unwrap()
        .contains(&Effect::ReleasePort { port: 4 }));
    assert!(a.is_empty());
}

/// A detached import whose port dies, or whose link is lost, drops the
/// references it kept at once (no confirmation will come).
#[test]
fn a_detached_import_ends_with_its_port_or_its_link() {
    for link_lost in [false, true] {
        let mut b = Ledger::new();
        let (Imported::Proxy(proxy), _) = b.import(9).unwrap() else {
            panic!()
        };
        assert_eq!(b.send_home(proxy), Some(9));
        assert_eq!(b.detach_proxy(proxy), Some(effects![]));
        let drop = Effect::DropDetachedRefs {
            proxy,
            count: 1,
            last: true,
        };
        if link_lost {
            assert_eq!(b.link_lost(), effects![drop]);
        } else {
            assert_eq!(
                b.on_frame(Frame::Dead { id: 9 }).unwrap(),
                effects![drop, Effect::Send(Frame::Release { id: 9, count: 1 })]
            );
            // A late confirmation of the dead import is ignored.
            assert_eq!(
                b.on_frame(Frame::HomeArrived { id: 9, count: 1 }),
                Ok(effects![])
            );
            assert_eq!(
                b.on_frame(Frame::Ack { id: 9, left: 0 }).unwrap(),
                effects![Effect::FinishImport { id: 9 }]
            );
        }
        assert!(b.is_empty(), "link lost: {link_lost}");
    }
}

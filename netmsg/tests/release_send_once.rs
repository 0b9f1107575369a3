//! One-shot (send-once) exports between two nodes, randomized. The oracle is
//! Mach's rule for a send-once right: it is consumed exactly once — by the
//! message sent with it, by its destruction (the receiver gets a send-once
//! notification), or by its port's death — whatever the order of use,
//! destruction, death notices and link loss.

use std::collections::{BTreeMap, VecDeque};

use netmsg::release::{Effect, Effects, Frame, Imported, Ledger, ReleaseError, SEND_ONCE_ID_BIT};
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
enum Settled {
    /// The reply message reached the live port.
    Delivered,
    /// Destroyed unused while the port lived: the receiver was notified.
    Notified,
    /// The port died first: nothing to deliver or notify.
    PortDied,
    /// Sent back to A in a message: A's task holds the right again.
    CameHome,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum ToA {
    Msg,
    Frame(Frame),
}

#[derive(Default)]
struct World {
    a: Ledger,
    b: Ledger,
    /// A's send-once rights held by netmsg: right → port it names.
    right_port: BTreeMap<u64, u64>,
    next_right: u64,
    ports_alive: Vec<bool>,
    /// Export id → right, as the exporter made it.
    export_right: BTreeMap<u64, u64>,
    settled: BTreeMap<u64, Settled>,
    /// Rights in flight from A to B, in any order relative to the streams.
    carried: Vec<u64>,
    to_a: BTreeMap<u64, VecDeque<ToA>>,
    to_b: BTreeMap<u64, VecDeque<Frame>>,
    /// Send-once rights B's tasks hold: proxy → export id.
    held: BTreeMap<u64, u64>,
    /// Rights B's tasks sent back to A, in messages on other streams (in any
    /// order relative to the one-shot streams): export ids.
    going_home: Vec<u64>,
    rng: u64,
}

impl World {
    fn rand(&mut self, n: usize) -> usize {
        common::below(&mut self.rng, n)
    }

    fn settle(&mut self, right: u64, how: Settled) {
        if let Some(before) = self.settled.insert(right, how) {
            panic!("send-once right {right} consumed twice: {before:?} then {how:?}");
        }
    }

    fn apply_a(&mut self, effects: Effects) {
        for e in effects {
            match e {
                Effect::Send(f) => {
                    let (Frame::Dead { id } | Frame::Ack { id, .. }) = f else {
                        panic!("A sent {f:?}")
                    };
                    self.to_b.entry(id).or_default().push_back(f);
                }
                Effect::DestroySendOnce { right } => {
                    let port = self.right_port[&right];
                    assert!(
                        self.ports_alive[port as usize],
                        "destroyed the dead right {right}"
                    );
                    self.settle(right, Settled::Notified);
                }
                Effect::FinishExport { .. } | Effect::FinishImport { .. } => {}
                other => panic!("A did {other:?}"),
            }
        }
    }

    fn apply_b(&mut self, effects: Effects) {
        for e in effects {
            match e {
                Effect::Send(f @ Frame::SendOnceDestroyed { id }) => {
                    self.to_a.entry(id).or_default().push_back(ToA::Frame(f))
                }
                Effect::CreateProxy { proxy, id, once } => {
                    assert!(once);
                    self.held.insert(proxy, id);
                }
                // The task's right becomes a dead name: it can no longer use it.
                Effect::DestroyProxy { proxy } => {
                    self.held.remove(&proxy);
                }
                Effect::FinishExport { .. } | Effect::FinishImport { .. } => {}
                other => panic!("B did {other:?}"),
            }
        }
    }

    fn deliver_to_a(&mut self, id: u64) {
        match self.to_a.get_mut(&id).and_then(VecDeque::pop_front) {
            Some(ToA::Msg) => {
                let effects = self.a.send_once_used(id).expect("B used a known right");
                self.apply_a(effects);
                let right = self.export_right[&id];
                let alive = self.ports_alive[self.right_port[&right] as usize];
                // A right to a dead port was settled by the death.
                if alive {
                    self.settle(right, Settled::Delivered);
                }
            }
            Some(ToA::Frame(f)) => {
                let effects = self.a.on_frame(f).expect("B never breaks the protocol");
                self.apply_a(effects);
            }
            None => {}
        }
    }

    fn deliver_to_b(&mut self, id: u64) {
        if let Some(f) = self.to_b.get_mut(&id).and_then(VecDeque::pop_front) {
            let effects = self.b.on_frame(f).expect("A never breaks the protocol");
            self.apply_b(effects);
        }
    }

    fn import(&mut self) {
        if self.carried.is_empty() {
            return;
        }
        let i = self.rand(self.carried.len());
        let id = self.carried.swap_remove(i);
        let (imported, effects) = self.b.import_send_once(id).unwrap();
        assert!(matches!(imported, Imported::Proxy(_)));
        self.apply_b(effects);
    }

    fn use_or_destroy(&mut self, use_it: bool) {
        if self.held.is_empty() {
            return;
        }
        let proxies: Vec<u64> = self.held.keys().copied().collect();
        let proxy = proxies[self.rand(proxies.len())];
        if use_it {
            let (id, effects) = self.b.once_used(proxy).expect("a held proxy is known");
            self.apply_b(effects);
            self.to_a.entry(id).or_default().push_back(ToA::Msg);
        } else {
            let effects = self.b.once_destroyed(proxy);
            self.apply_b(effects);
        }
    }

    /// A task of B's sends a right it holds back to A: the proxy's import
    /// ends as if used (`WireRef::OnceHome` carries the export's ID).
    fn send_home(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let proxies: Vec<u64> = self.held.keys().copied().collect();
        let proxy = proxies[self.rand(proxies.len())];
        let (id, effects) = self.b.once_used(proxy).expect("a held proxy is known");
        self.apply_b(effects);
        self.going_home.push(id);
    }

    fn arrive_home(&mut self) {
        if self.going_home.is_empty() {
            return;
        }
        let i = self.rand(self.going_home.len());
        let id = self.going_home.swap_remove(i);
        let (right, dead, effects) = self.a.once_home(id).expect("B sent a known right home");
        self.apply_a(effects);
        assert_eq!(right, self.export_right[&id]);
        let alive = self.ports_alive[self.right_port[&right] as usize];
        assert_eq!(dead, !alive, "export {id}");
        // A right to a dead port was settled by the death.
        if alive {
            self.settle(right, Settled::CameHome);
        }
    }

    fn step(&mut self) {
        if self.rand(10) == 0 {
            if self.rand(2) == 0 {
                self.send_home();
            } else {
                self.arrive_home();
            }
            return;
        }
        match self.rand(8) {
            0 => {
                let port = self.rand(self.ports_alive.len());
                if self.ports_alive[port] {
                    let right = self.next_right;
                    self.next_right += 1;
                    self.right_port.insert(right, port as u64);
                    let id = self.a.export_send_once(right);
                    assert_ne!(id & SEND_ONCE_ID_BIT, 0);
                    self.export_right.insert(id, right);
                    self.carried.push(id);
                }
            }
            1 => self.import(),
            2 => self.use_or_destroy(true),
            3 => self.use_or_destroy(false),
            4 => {
                let busy = common::busy_streams(&self.to_a);
                if let Some(id) = common::pick(&mut self.rng, &busy) {
                    self.deliver_to_a(id);
                }
            }
            5 => {
                let busy = common::busy_streams(&self.to_b);
                if let Some(id) = common::pick(&mut self.rng, &busy) {
                    self.deliver_to_b(id);
                }
            }
            6 if self.rand(4) == 0 => {
                let port = self.rand(self.ports_alive.len());
                if self.ports_alive[port] {
                    self.ports_alive[port] = false;
                    // Each held right to it becomes a dead name; the driver
                    // hears of each through its dead-name notification.
                    let rights: Vec<u64> = self
                        .right_port
                        .iter()
                        .filter(|(_, &p)| p == port as u64)
                        .map(|(&r, _)| r)
                        .collect();
                    for right in rights {
                        if !self.settled.contains_key(&right) {
                            self.settle(right, Settled::PortDied);
                        }
                        let effects = self.a.port_died(right);
                        self.apply_a(effects);
                    }
                }
            }
            7 if self.rand(40) == 0 => self.lose_link(),
            _ => {}
        }
    }

    fn lose_link(&mut self) {
        let effects = self.a.link_lost();
        self.apply_a(effects);
        let effects = self.b.link_lost();
        self.apply_b(effects);
        assert!(
            self.held.is_empty(),
            "B's tasks kept rights over a lost link"
        );
        // Whatever was in flight is gone with the connection.
        self.carried.clear();
        self.going_home.clear();
        self.to_a.clear();
        self.to_b.clear();
        assert!(self.a.is_empty() && self.b.is_empty());
    }

    /// Everything in flight arrives and B's tasks use or drop what they hold.
    fn drain(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            if !self.carried.is_empty() {
                self.import();
                moved = true;
            }
            if !self.held.is_empty() {
                match self.rand(3) {
                    0 => self.send_home(),
                    n => self.use_or_destroy(n == 1),
                }
                moved = true;
            }
            if !self.going_home.is_empty() {
                self.arrive_home();
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

fn run(seed: u64, ports: usize, steps: usize) -> BTreeMap<u64, Settled> {
    let mut w = World {
        a: Ledger::new(),
        b: Ledger::new(),
        ports_alive: vec![true; ports],
        rng: seed | 1,
        ..World::default()
    };
    for _ in 0..steps {
        w.step();
    }
    w.drain();
    assert!(
        w.a.is_empty(),
        "seed {seed}: A still holds one-shot exports"
    );
    assert!(
        w.b.is_empty(),
        "seed {seed}: B still holds one-shot proxies"
    );
    for &right in w.right_port.keys() {
        assert!(
            w.settled.contains_key(&right),
            "seed {seed}: send-once right {right} never consumed"
        );
    }
    w.settled
}

#[test]
fn fixed_seeds_consume_every_send_once_right_exactly_once() {
    let mut seen = BTreeMap::new();
    for seed in 1..=500 {
        for how in run(seed, 1 + (seed as usize) % 3, 400).into_values() {
            *seen.entry(format!("{how:?}")).or_insert(0u32) += 1;
        }
    }
    // Every outcome is exercised, so the oracle is not vacuous.
    assert_eq!(seen.len(), 4, "outcomes seen: {seen:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200), ..ProptestConfig::default() })]
    #[test]
    fn random_seeds_consume_every_send_once_right_exactly_once(seed in any::<u64>(), ports in 1usize..4, steps in 10usize..600) {
        run(seed, ports, steps);
    }
}

#[test]
fn a_used_one_shot_export_ends_a_stream_only_if_it_wrote_dead() {
    let mut a = Ledger::new();
    let mut b = Ledger::new();
    let id = a.export_send_once(41);
    let (Imported::Proxy(proxy), _) = b.import_send_once(id).unwrap() else {
        panic!()
    };
    let (used, _) = b.once_used(proxy).unwrap();
    assert_eq!(used, id);
    // Only `Dead` is ever written about a one-shot export's senders; none
    // was, so no stream was opened and none is FINed.
    assert_eq!(a.send_once_used(id).unwrap(), effects![]);
    assert!(a.is_empty() && b.is_empty());
}

#[test]
fn a_death_notice_after_use_is_ignored() {
    let mut a = Ledger::new();
    let mut b = Ledger::new();
    let id = a.export_send_once(40);
    let (Imported::Proxy(proxy), _) = b.import_send_once(id).unwrap() else {
        panic!()
    };
    let (used, effects) = b.once_used(proxy).unwrap();
    assert_eq!(
        (used, effects),
        (
            id,
            effects![Effect::DestroyProxy { proxy }, Effect::FinishImport { id }]
        )
    );
    // The port dies while the reply is on its way: the notice crosses it.
    assert_eq!(a.port_died(40), effects![Effect::Send(Frame::Dead { id })]);
    assert_eq!(b.on_frame(Frame::Dead { id }).unwrap(), effects![]);
    assert_eq!(
        a.send_once_used(id).unwrap(),
        effects![Effect::FinishExport { id }]
    );
    assert!(a.is_empty() && b.is_empty());
}

#[test]
fn unused_send_once_rights_notify_their_receiver() {
    let mut a = Ledger::new();
    let mut b = Ledger::new();
    let id = a.export_send_once(9);
    let (Imported::Proxy(proxy), _) = b.import_send_once(id).unwrap() else {
        panic!()
    };
    let effects = b.once_destroyed(proxy);
    assert_eq!(
        effects,
        effects![
            Effect::Send(Frame::SendOnceDestroyed { id }),
            Effect::DestroyProxy { proxy },
            Effect::FinishImport { id }
        ]
    );
    assert_eq!(
        a.on_frame(Frame::SendOnceDestroyed { id }).unwrap(),
        effects![
            // (Nothing was written on the export's stream about senders:
            // there is no stream to end.)
            Effect::DestroySendOnce { right: 9 },
        ]
    );
    // A second settlement of the same ID is the peer's error.
    assert_eq!(
        a.on_frame(Frame::SendOnceDestroyed { id }),
        Err(ReleaseError::UnknownExport { id })
    );
}

#[test]
fn rights_of_the_wrong_kind_are_refused() {
    let mut b = Ledger::new();
    let mut a = Ledger::new();
    let send_id = a.export(3);
    let once_id = a.export_send_once(4);
    assert!(b.import_send_once(send_id).is_err());
    assert!(b.import(once_id).is_err());
    assert!(b.import_send_once(once_id).is_ok());
    assert!(b.import_send_once(once_id).is_err(), "duplicate one-shot");
    assert!(a.send_once_used(send_id).is_err());
}

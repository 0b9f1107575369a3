//! Causal holds: a message leaves only when every stream it waits on has
//! caught up (or its link is gone), lanes stay FIFO, and nothing is lost or
//! duplicated; randomized against a direct oracle.

use std::collections::{BTreeMap, BTreeSet};

use netmsg::causal::{Holds, StreamKey, Wait};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Action {
    Arrive { lane: u8, waits: Vec<(u8, u8, u8)> },
    Advance { node: u8, port: u8 },
    Lose { node: u8 },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0u8..4, prop::collection::vec((0u8..2, 0u8..3, 0u8..4), 0..3))
            .prop_map(|(lane, waits)| Action::Arrive { lane, waits }),
        5 => (0u8..2, 0u8..3).prop_map(|(node, port)| Action::Advance { node, port }),
        1 => (0u8..2).prop_map(|node| Action::Lose { node }),
    ]
}

fn key(node: u8, port: u8) -> StreamKey {
    StreamKey::stream(&format!("n{node}"), u64::from(port))
}

struct Oracle {
    positions: BTreeMap<StreamKey, u64>,
    lost: BTreeSet<String>,
    waits: BTreeMap<u64, Vec<Wait>>,
    last_out: BTreeMap<u8, u64>,
    out: BTreeSet<u64>,
}

impl Oracle {
    fn check(&mut self, lane: u8, id: u64) {
        for w in &self.waits[&id] {
            let pos = self.positions.get(&w.stream).copied().unwrap_or(0);
            assert!(
                self.lost.contains(&w.stream.node) || pos >= w.position,
                "message {id} left before {w:?} (position {pos})"
            );
        }
        if let Some(&prev) = self.last_out.get(&lane) {
            assert!(prev < id, "lane {lane}: {id} overtook {prev}");
        }
        self.last_out.insert(lane, id);
        assert!(self.out.insert(id), "message {id} delivered twice");
    }
}

proptest! {
    #[test]
    fn holds_respect_waits_and_lane_order(actions in prop::collection::vec(action(), 0..200)) {
        let mut holds: Holds<u8, u64> = Holds::new();
        let mut o = Oracle { positions: BTreeMap::new(), lost: BTreeSet::new(), waits: BTreeMap::new(), last_out: BTreeMap::new(), out: BTreeSet::new() };
        let mut next = 0u64;
        for a in actions {
            match a {
                Action::Arrive { lane, waits } => {
                    let id = next;
                    next += 1;
                    let waits: Vec<Wait> = waits.into_iter().map(|(n, p, ahead)| {
                        let stream = key(n, p);
                        let at = o.positions.get(&stream).copied().unwrap_or(0);
                        Wait { stream, position: at + u64::from(ahead) }
                    }).collect();
                    o.waits.insert(id, waits.clone());
                    if let Some(id) = holds.arrive(lane, id, waits) {
                        o.check(lane, id);
                    }
                }
                Action::Advance { node, port } => {
                    let stream = key(node, port);
                    let p = o.positions.entry(stream.clone()).or_insert(0);
                    *p += 1;
                    let p = *p;
                    for (lane, id) in holds.advanced(stream, p) {
                        o.check(lane, id);
                    }
                }
                Action::Lose { node } => {
                    let name = format!("n{node}");
                    o.lost.insert(name.clone());
                    let out = holds.link_lost(&name);
                    o.positions.retain(|k, _| k.node != name);
                    for waits in o.waits.values_mut() {
                        waits.retain(|w| w.stream.node != name);
                    }
                    for (lane, id) in out {
                        o.check(lane, id);
                    }
                    // Reconnect at once: later waits are on the new streams.
                    holds.link_up(&name);
                    o.lost.remove(&name);
                }
            }
        }
        prop_assert_eq!(holds.held() as u64 + o.out.len() as u64, next);
        // Losing every link frees everything.
        for node in ["n0", "n1"] {
            o.lost.insert(node.to_owned());
            for (lane, id) in holds.link_lost(node) {
                o.check(lane, id);
            }
        }
        prop_assert_eq!(holds.held(), 0);
        prop_assert_eq!(o.out.len() as u64, next);
    }
}

#[test]
fn a_held_message_holds_its_lane_and_leaves_when_the_stream_catches_up() {
    let mut holds: Holds<&str, &str> = Holds::new();
    let b = key(1, 7);
    let wait = Wait {
        stream: b.clone(),
        position: 2,
    };
    assert_eq!(holds.arrive("x", "first", vec![wait]), None);
    // No wait of its own, but behind a held message in its lane.
    assert_eq!(holds.arrive("x", "second", vec![]), None);
    assert_eq!(holds.arrive("y", "other lane", vec![]), Some("other lane"));
    assert_eq!(holds.advanced(b.clone(), 1), []);
    assert_eq!(holds.advanced(b, 2), [("x", "first"), ("x", "second")]);
    assert_eq!(holds.held(), 0);
}

#[test]
fn a_dead_port_gives_back_its_held_messages() {
    let mut holds: Holds<u8, u8> = Holds::new();
    let wait = Wait {
        stream: key(0, 0),
        position: 5,
    };
    assert_eq!(holds.arrive(3, 1, vec![wait]), None);
    assert_eq!(holds.arrive(3, 2, vec![]), None);
    assert_eq!(holds.drop_lane(&3), [1, 2]);
    assert_eq!(holds.held(), 0);
    assert_eq!(holds.advanced(key(0, 0), 9), []);
}

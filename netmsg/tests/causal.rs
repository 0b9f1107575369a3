//! Causal holds: a message leaves only when every stream it waits on has
//! caught up (or its link is gone), lanes stay FIFO, and nothing is lost or
//! duplicated; randomized against a direct oracle. As in the translator, a
//! lane is a stream, and handling a message advances its stream, which may
//! free messages that wait on that stream.

use std::collections::{BTreeMap, BTreeSet};

use netmsg::causal::{Holds, StreamKey, Wait, WaitKind};
use netmsg::wire::Origin;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Action {
    Arrive {
        lane: (u8, u8),
        waits: Vec<(u8, u8, u8)>,
    },
    Lose {
        node: u8,
    },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        12 => ((0u8..2, 0u8..3), prop::collection::vec((0u8..2, 0u8..3, 0u8..3), 0..3))
            .prop_map(|(lane, waits)| Action::Arrive { lane, waits }),
        1 => (0u8..2).prop_map(|node| Action::Lose { node }),
    ]
}

fn key(node: u8, port: u8) -> StreamKey {
    StreamKey::stream(format!("n{node}").as_str(), u64::from(port))
}

#[derive(Default)]
struct Oracle {
    positions: BTreeMap<StreamKey, u64>,
    lost: BTreeSet<String>,
    waits: BTreeMap<u64, Vec<Wait>>,
    last_out: BTreeMap<StreamKey, u64>,
    out: BTreeSet<u64>,
}

impl Oracle {
    /// Handles every ready message as the translator does: checks it, then
    /// advances its stream.
    fn handle_ready(&mut self, holds: &mut Holds<StreamKey, u64>) {
        while let Some((lane, id)) = holds.next_ready() {
            for w in &self.waits[&id] {
                let pos = self.positions.get(&w.stream).copied().unwrap_or(0);
                assert!(
                    self.lost.contains(&*w.stream.node) || pos >= w.position,
                    "message {id} left before {w:?} (position {pos})"
                );
            }
            if let Some(&prev) = self.last_out.get(&lane) {
                assert!(prev < id, "lane {lane:?}: {id} overtook {prev}");
            }
            self.last_out.insert(lane.clone(), id);
            assert!(self.out.insert(id), "message {id} delivered twice");
            if !self.lost.contains(&*lane.node) {
                let p = self.positions.entry(lane.clone()).or_insert(0);
                *p += 1;
                holds.advanced(lane, *p);
            }
        }
    }

    fn lose(&mut self, holds: &mut Holds<StreamKey, u64>, name: &str) {
        self.lost.insert(name.to_owned());
        // The lost link's own messages are gone with it.
        for id in holds.drop_lanes(|l| *l.node == *name) {
            assert!(self.out.insert(id), "message {id} dropped after delivery");
        }
        holds.link_lost(name);
        self.positions.retain(|k, _| *k.node != *name);
        for waits in self.waits.values_mut() {
            waits.retain(|w| *w.stream.node != *name);
        }
        self.handle_ready(holds);
    }
}

proptest! {
    #[test]
    fn holds_respect_waits_and_lane_order(actions in prop::collection::vec(action(), 0..300)) {
        let mut holds: Holds<StreamKey, u64> = Holds::new();
        let mut o = Oracle::default();
        let mut next = 0u64;
        for a in actions {
            match a {
                Action::Arrive { lane: (n, p), waits } => {
                    let id = next;
                    next += 1;
                    // Waits reach at most a little past what was sent so far on
                    // each stream, as positions a peer can name do.
                    let waits: Vec<Wait> = waits.into_iter().map(|(n, p, ahead)| {
                        let stream = key(n, p);
                        let at = o.positions.get(&stream).copied().unwrap_or(0);
                        Wait { stream, position: at + u64::from(ahead), kind: WaitKind::Order }
                    }).collect();
                    o.waits.insert(id, waits.clone());
                    holds.arrive(key(n, p), id, waits);
                    o.handle_ready(&mut holds);
                }
                Action::Lose { node } => {
                    let name = format!("n{node}");
                    o.lose(&mut holds, &name);
                    // Reconnect at once: later waits are on the new streams.
                    holds.link_up(&name);
                    o.lost.remove(&name);
                }
            }
        }
        prop_assert_eq!(holds.held() as u64 + o.out.len() as u64, next);
        // Losing every link frees or drops everything.
        for node in ["n0", "n1"] {
            o.lose(&mut holds, node);
        }
        prop_assert_eq!(holds.held(), 0);
        prop_assert_eq!(o.out.len() as u64, next);
    }
}

/// The order the 3-node simulator found broken (seed 60165): a lane's head is
/// freed with the message behind it; handling the head frees a third message
/// of the lane, which must still go after the second.
#[test]
fn a_message_freed_by_its_lane_mate_stays_behind_the_earlier_ones() {
    let mut holds: Holds<StreamKey, &str> = Holds::new();
    let lane = key(0, 1);
    let other = key(1, 2);
    let first_wait = Wait {
        stream: other.clone(),
        position: 1,
        kind: WaitKind::Order,
    };
    let third_wait = Wait {
        stream: lane.clone(),
        position: 1,
        kind: WaitKind::Order,
    };
    holds.arrive(lane.clone(), "first", vec![first_wait]);
    holds.arrive(lane.clone(), "second", vec![]);
    holds.arrive(lane.clone(), "third", vec![third_wait]);
    assert_eq!(holds.next_ready(), None);
    holds.advanced(other, 1);
    let mut order = Vec::new();
    let mut position = 0;
    while let Some((l, m)) = holds.next_ready() {
        order.push(m);
        position += 1;
        holds.advanced(l, position);
    }
    assert_eq!(order, ["first", "second", "third"]);
    assert_eq!(holds.held(), 0);
}

#[test]
fn a_held_message_holds_its_lane_and_leaves_when_the_stream_catches_up() {
    let mut holds: Holds<&str, &str> = Holds::new();
    let b = key(1, 7);
    let wait = Wait {
        stream: b.clone(),
        position: 2,
        kind: WaitKind::Order,
    };
    holds.arrive("x", "first", vec![wait]);
    // No wait of its own, but behind a held message in its lane.
    holds.arrive("x", "second", vec![]);
    holds.arrive("y", "other lane", vec![]);
    assert_eq!(holds.next_ready(), Some(("y", "other lane")));
    assert_eq!(holds.next_ready(), None);
    holds.advanced(b.clone(), 1);
    assert_eq!(holds.next_ready(), None);
    holds.advanced(b, 2);
    assert_eq!(holds.next_ready(), Some(("x", "first")));
    assert_eq!(holds.next_ready(), Some(("x", "second")));
    assert_eq!(holds.held(), 0);
}

#[test]
fn a_dropped_lane_gives_back_its_ready_and_held_messages() {
    let mut holds: Holds<u8, u8> = Holds::new();
    let wait = Wait {
        stream: key(0, 0),
        position: 5,
        kind: WaitKind::Order,
    };
    holds.arrive(3, 0, vec![]);
    holds.arrive(3, 1, vec![wait]);
    holds.arrive(3, 2, vec![]);
    holds.arrive(4, 9, vec![]);
    assert_eq!(holds.drop_lane(&3), [0, 1, 2]);
    assert_eq!(holds.held(), 1);
    holds.advanced(key(0, 0), 9);
    assert_eq!(holds.next_ready(), Some((4, 9)));
    assert_eq!(holds.next_ready(), None);
}

/// A forwarder starts a new era of an origin's lane only after the last
/// one's link is gone, and a stream keeps its order: once a frame of a newer
/// era arrives on a stream, waits on that origin's older lanes there are
/// void (their messages were lost before reaching the forwarder, which then
/// writes no `LaneEnded` for them).
#[test]
fn a_newer_era_on_a_stream_ends_the_older_lanes_of_its_origin() {
    use netmsg::wire::Origin;
    let lane = |era| StreamKey {
        node: "hop".into(),
        port: 772,
        origin: Some(Origin {
            node: "origin".into(),
            era,
        }),
    };
    let mut holds: Holds<StreamKey, &str> = Holds::new();
    let wait = Wait {
        stream: lane(3),
        position: 1,
        kind: WaitKind::Order,
    };
    holds.arrive(
        StreamKey::stream("home-peer", 5),
        "waits",
        vec![wait.clone()],
    );
    assert_eq!(holds.next_ready(), None);
    // Another origin's newer era, or this origin's on another stream, ends
    // nothing.
    let mut other = lane(4);
    other.port = 773;
    holds.lane_seen(&other);
    let mut stranger = lane(4);
    stranger.origin.as_mut().unwrap().node = "stranger".into();
    holds.lane_seen(&stranger);
    assert_eq!(holds.next_ready(), None);
    holds.lane_seen(&lane(4));
    assert_eq!(
        holds.next_ready(),
        Some((StreamKey::stream("home-peer", 5), "waits"))
    );
}

/// A wait for frames already held here (`firm`: a `Release` behind its
/// stream's forwarded lanes) is not voided by a newer era of the lane's
/// origin or by the lane's end, only by the link's loss: the simulator found
/// a `Release` that passed a held message of an older era, ending the export
/// that message was for.
#[test]
fn a_firm_wait_outlives_newer_eras_and_lane_ends() {
    let old = StreamKey {
        node: "b".into(),
        port: 7,
        origin: Some(Origin {
            node: "c".into(),
            era: 1,
        }),
    };
    let newer = StreamKey {
        origin: Some(Origin {
            node: "c".into(),
            era: 2,
        }),
        ..old.clone()
    };
    let mut holds: Holds<StreamKey, &str> = Holds::new();
    let wait = |kind| Wait {
        stream: old.clone(),
        position: 1,
        kind,
    };
    holds.arrive(
        StreamKey::stream("b", 7),
        "release",
        vec![wait(WaitKind::Firm)],
    );
    holds.arrive(
        StreamKey::stream("b", 8),
        "loose",
        vec![wait(WaitKind::Order)],
    );
    holds.lane_seen(&newer);
    holds.lane_ended(old.clone());
    assert_eq!(
        holds.next_ready().map(|(_, f)| f),
        Some("loose"),
        "the loose wait is void"
    );
    assert_eq!(holds.next_ready(), None, "the firm one holds");
    holds.advanced(old, 1);
    assert_eq!(holds.next_ready().map(|(_, f)| f), Some("release"));
}

/// Frames held for a port that died go without their order waits (what they
/// wait for may have been destroyed at a hop that heard of the death first,
/// so it never comes), still in lane order and still after what they need
/// handled first; other ports' frames keep waiting. The 3-node simulator
/// found a dead port's frames, and its stream's `Release` behind them, held
/// for ever.
#[test]
fn a_dead_ports_frames_stop_waiting_for_order_only() {
    let hop_lane = StreamKey {
        node: "hop".into(),
        port: 9,
        origin: Some(Origin {
            node: "c".into(),
            era: 0,
        }),
    };
    let wait = |kind| Wait {
        stream: hop_lane.clone(),
        position: 3,
        kind,
    };
    let needs = Wait {
        stream: StreamKey::stream("b", 40),
        position: 1,
        kind: WaitKind::Needs,
    };
    let mut holds: Holds<StreamKey, &str> = Holds::new();
    let dead = StreamKey::stream("b", 7);
    holds.arrive(dead.clone(), "first", vec![wait(WaitKind::Order)]);
    holds.arrive(dead.clone(), "second", Vec::new());
    holds.arrive(
        StreamKey::stream("b", 8),
        "other port",
        vec![wait(WaitKind::Order)],
    );
    holds.arrive(
        StreamKey::stream("b", 6),
        "needs a frame",
        vec![wait(WaitKind::Order), needs.clone()],
    );
    holds.port_died(|l| l.port == 7 || l.port == 6);
    assert_eq!(holds.next_ready().map(|(_, f)| f), Some("first"));
    assert_eq!(holds.next_ready().map(|(_, f)| f), Some("second"));
    assert_eq!(holds.next_ready(), None, "other ports and needs still hold");
    holds.advanced(needs.stream, 1);
    assert_eq!(holds.next_ready().map(|(_, f)| f), Some("needs a frame"));
    assert_eq!(holds.next_ready(), None);
    holds.advanced(hop_lane, 3);
    assert_eq!(holds.next_ready().map(|(_, f)| f), Some("other port"));
}

/// `waited_on` sees an unmet wait of any held frame, not a met one.
#[test]
fn waited_on_sees_held_frames_only() {
    let goal = StreamKey::stream("b", 40);
    let mut holds: Holds<StreamKey, &str> = Holds::new();
    assert!(!holds.waited_on(|s| *s == goal));
    holds.arrive(
        StreamKey::stream("b", 7),
        "carrying",
        vec![Wait {
            stream: goal.clone(),
            position: 1,
            kind: WaitKind::Needs,
        }],
    );
    assert!(holds.waited_on(|s| *s == goal));
    assert!(!holds.waited_on(|s| *s == StreamKey::stream("b", 41)));
    holds.advanced(goal.clone(), 1);
    assert!(!holds.waited_on(|s| *s == goal));
    assert_eq!(holds.next_ready().map(|(_, f)| f), Some("carrying"));
}

/// `depends_on` follows unmet waits from lane to lane, and what the caller
/// names behind a sequence, counts the starting lanes themselves, and stops
/// at met waits.
#[test]
fn depends_on_follows_unmet_waits() {
    let none = |_: &StreamKey| Vec::new();
    let lane = |port| StreamKey::stream("b", port);
    let wait = |port, position| Wait {
        stream: lane(port),
        position,
        kind: WaitKind::Order,
    };
    let mut holds: Holds<StreamKey, &str> = Holds::new();
    holds.arrive(lane(1), "one", vec![wait(2, 1)]);
    holds.arrive(lane(2), "two", vec![wait(3, 1)]);
    holds.arrive(lane(4), "four", vec![wait(5, 1)]);
    assert!(holds.depends_on(&[lane(1)], |s| *s == lane(3), none));
    // What the caller knows a sequence waits on besides held frames.
    let five_behind_three = |s: &StreamKey| {
        if *s == lane(3) {
            vec![lane(5)]
        } else {
            Vec::new()
        }
    };
    assert!(holds.depends_on(&[lane(1)], |s| *s == lane(5), five_behind_three));
    assert!(holds.depends_on(&[lane(1)], |s| *s == lane(1), none));
    assert!(!holds.depends_on(&[lane(1)], |s| *s == lane(5), none));
    holds.advanced(lane(3), 1);
    assert_eq!(holds.next_ready().map(|(_, f)| f), Some("two"));
    assert!(holds.depends_on(&[lane(1)], |s| *s == lane(2), none));
    assert!(!holds.depends_on(&[lane(1)], |s| *s == lane(3), none));
}

//! Causal holds for moved rights (DESIGN §4.2 item 4, §4.3; `docs/protocol.md`
//! "Causal order"). A message whose delivery could overtake messages still on
//! another stream waits until that stream has delivered up to the watermark
//! the right carried, or until the link that stream belongs to is gone.
//!
//! Invariants: within a lane (one destination port's queue from one stream)
//! messages leave in arrival order, so a held message holds back the lane
//! behind it; a message leaves only once every dependency is met. Pure: the
//! translation core feeds it stream positions and link losses.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::wire::Origin;

/// One incoming lane: the messages of lane `origin` (none: the peer's own)
/// on the peer node's stream for port `port`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamKey {
    /// Shared with the translator's peer table: a key costs no copy.
    pub node: Arc<str>,
    pub port: u64,
    pub origin: Option<Origin>,
}

impl StreamKey {
    /// The peer's own messages on stream `port` from `node`.
    pub fn stream(node: impl Into<Arc<str>>, port: u64) -> Self {
        Self {
            node: node.into(),
            port,
            origin: None,
        }
    }
}

/// The lanes of stream `port` from `node` that `map` has entries for.
pub fn stream_lanes<V>(map: &BTreeMap<StreamKey, V>, node: &str, port: u64) -> Vec<StreamKey> {
    map.range(StreamKey::stream(node, port)..)
        .take_while(|(l, _)| *l.node == *node && l.port == port)
        .map(|(l, _)| l.clone())
        .collect()
}

/// Deliver only after `stream` has delivered `position` messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wait {
    pub stream: StreamKey,
    pub position: u64,
    pub kind: WaitKind,
}

/// What else ends a [`Wait`] than its position being reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitKind {
    /// Order behind messages that may be destroyed on the way: void with
    /// the link, the stream's or the lane's end, a newer era, and when the
    /// waiting frame's own port dies (its messages are destroyed, in any
    /// order, as one kernel destroys a dead port's queue).
    Order,
    /// A frame that must be handled before the waiting one can be (a moved
    /// port's `Moved` frame, its hand-over): void as an order wait, but not
    /// by the waiting frame's port dying.
    Needs,
    /// For frames already held here (a `Release` behind its stream's
    /// forwarded lanes): void only with the link, never by a lane's end or
    /// a newer era, since what it waits for is here and will be handled.
    Firm,
}

#[derive(Debug)]
struct Held<T> {
    item: T,
    waits: Vec<Wait>,
}

/// Messages held for their dependencies, in lanes of type `L`, and those
/// free to go, in the order they must be handled.
///
/// Freed messages wait in one FIFO (`ready`) until the caller takes them with
/// [`Holds::next_ready`]; handling one may free more, which go behind it. (A
/// caller-side stack let a message freed by its lane-mate's delivery overtake
/// an earlier message of its lane freed just before: found by the 3-node
/// simulator.)
#[derive(Debug)]
pub struct Holds<L: Ord + Clone, T> {
    lanes: BTreeMap<L, VecDeque<Held<T>>>,
    ready: VecDeque<(L, T)>,
    /// Messages delivered per stream (its position).
    positions: BTreeMap<StreamKey, u64>,
    /// Nodes whose link is gone: waits on their streams are void.
    lost: BTreeSet<Arc<str>>,
    /// Streams (node, port) that carry nothing more: waits on them are void.
    closed: BTreeSet<(Arc<str>, u64)>,
    /// Lanes that carry nothing more: waits on them are void.
    closed_lanes: BTreeSet<StreamKey>,
    /// The newest era seen per (node, port, origin node): a stream carries
    /// an origin's lanes in era order, so older eras' lanes there are over.
    newest_era: BTreeMap<(Arc<str>, u64, String), u64>,
    held: usize,
}

impl<L: Ord + Clone, T> Default for Holds<L, T> {
    fn default() -> Self {
        Self {
            lanes: BTreeMap::new(),
            ready: VecDeque::new(),
            positions: BTreeMap::new(),
            lost: BTreeSet::new(),
            closed: BTreeSet::new(),
            closed_lanes: BTreeSet::new(),
            newest_era: BTreeMap::new(),
            held: 0,
        }
    }
}

impl<T> Holds<StreamKey, T> {
    /// Whether a held frame waits (unmet) on a sequence `goal` picks.
    pub fn waited_on(&self, goal: impl Fn(&StreamKey) -> bool) -> bool {
        self.lanes
            .values()
            .flat_map(|q| q.iter().flat_map(|h| &h.waits))
            .any(|w| goal(&w.stream) && !self.met(w))
    }

    /// Whether progress on any of the lanes `from` waits, through held
    /// frames and what they wait for, on a sequence `goal` picks (a cycle,
    /// when that sequence waits on `from`); the lanes `from` count too, and
    /// a sequence also waits on the lanes `behind` names for it (what the
    /// caller knows it waits on besides held frames). Over-approximates:
    /// every frame held in a lane counts, not only those before the
    /// position needed.
    pub fn depends_on(
        &self,
        from: &[StreamKey],
        goal: impl Fn(&StreamKey) -> bool,
        behind: impl Fn(&StreamKey) -> Vec<StreamKey>,
    ) -> bool {
        let mut seen: BTreeSet<StreamKey> = BTreeSet::new();
        let mut stack: Vec<StreamKey> = from.to_vec();
        while let Some(lane) = stack.pop() {
            if !seen.insert(lane.clone()) {
                continue;
            }
            if goal(&lane) {
                return true;
            }
            stack.extend(behind(&lane));
            if let Some(queue) = self.lanes.get(&lane) {
                let waits = queue.iter().flat_map(|h| &h.waits);
                stack.extend(waits.filter(|w| !self.met(w)).map(|w| w.stream.clone()));
            }
        }
        false
    }
}

impl<L: Ord + Clone, T> Holds<L, T> {
    pub fn new() -> Self {
        Self::default()
    }

    fn met(&self, w: &Wait) -> bool {
        if w.kind == WaitKind::Firm {
            return self.lost.contains(&w.stream.node)
                || self.positions.get(&w.stream).copied().unwrap_or(0) >= w.position;
        }
        self.lost.contains(&w.stream.node)
            || self
                .closed
                .contains(&(w.stream.node.clone(), w.stream.port))
            || self.closed_lanes.contains(&w.stream)
            || self.positions.get(&w.stream).copied().unwrap_or(0) >= w.position
            || w.stream.origin.as_ref().is_some_and(|o| {
                self.newest_era
                    .get(&(w.stream.node.clone(), w.stream.port, o.node.clone()))
                    .is_some_and(|&newest| newest > o.era)
            })
    }

    /// A frame of `lane` arrived: for a forwarded lane, every older era of
    /// the same origin on that stream is over (a forwarder starts an era
    /// only after the last one's link is gone, and a stream keeps its
    /// order), so waits on those lanes are void, as after `LaneEnded`; a
    /// forwarder writes `LaneEnded` only where it forwarded something, and
    /// what was lost before reaching it leaves no trace.
    pub fn lane_seen(&mut self, lane: &StreamKey) {
        let Some(o) = &lane.origin else {
            return;
        };
        let key = (lane.node.clone(), lane.port, o.node.clone());
        if self
            .newest_era
            .get(&key)
            .is_none_or(|&newest| o.era > newest)
        {
            self.newest_era.insert(key, o.era);
            self.release();
        }
    }

    /// A message for `lane` arrived with `waits`: it is ready (behind what is
    /// ready already) if nothing in its lane is held and every wait is met,
    /// else held.
    pub fn arrive(&mut self, lane: L, item: T, waits: Vec<Wait>) {
        let waits: Vec<Wait> = waits.into_iter().filter(|w| !self.met(w)).collect();
        let queue_empty = self.lanes.get(&lane).is_none_or(VecDeque::is_empty);
        if queue_empty && waits.is_empty() {
            self.ready.push_back((lane, item));
            return;
        }
        self.lanes
            .entry(lane)
            .or_default()
            .push_back(Held { item, waits });
        self.held += 1;
    }

    /// The next message to handle, in the order messages were freed.
    pub fn next_ready(&mut self) -> Option<(L, T)> {
        self.ready.pop_front()
    }

    /// `stream` has delivered `position` messages in all (positions only grow):
    /// the messages this frees become ready, lane by lane in order.
    pub fn advanced(&mut self, stream: StreamKey, position: u64) {
        let p = self.positions.entry(stream).or_insert(0);
        *p = (*p).max(position);
        self.release()
    }

    /// The link to `node` is gone: nothing more will arrive on its streams, so
    /// waits on them are void (their messages are lost or destroyed anyway).
    pub fn link_lost(&mut self, node: &str) {
        self.lost.insert(node.into());
        self.positions.retain(|k, _| *k.node != *node);
        self.closed.retain(|(n, _)| **n != *node);
        self.closed_lanes.retain(|l| *l.node != *node);
        self.newest_era.retain(|(n, _, _), _| **n != *node);
        // Void now, also for messages behind a lane's head: a later link's
        // streams start again from 0 and are not the ones waited on.
        for held in self.lanes.values_mut().flat_map(|q| q.iter_mut()) {
            held.waits.retain(|w| *w.stream.node != *node);
        }
        self.release()
    }

    /// Stream `port` from `node` carries nothing more (its export ended after
    /// all it carried was handled): waits on its lanes are void, as what they
    /// wait for was destroyed on the way. With `tombstone`, waits made later
    /// are void too; without, the stream leaves no record, and the caller
    /// makes no more waits on it.
    pub fn stream_closed(&mut self, node: &str, port: u64, tombstone: bool) {
        if tombstone {
            self.closed.insert((node.into(), port));
            return self.release();
        }
        let on_stream = |s: &StreamKey| *s.node == *node && s.port == port;
        for held in self.lanes.values_mut().flat_map(|q| q.iter_mut()) {
            held.waits.retain(|w| !on_stream(&w.stream));
        }
        for lane in stream_lanes(&self.positions, node, port) {
            self.positions.remove(&lane);
        }
        let lanes: Vec<StreamKey> = self
            .closed_lanes
            .range(StreamKey::stream(node, port)..)
            .take_while(|l| on_stream(l))
            .cloned()
            .collect();
        for lane in lanes {
            self.closed_lanes.remove(&lane);
        }
        let eras: Vec<(Arc<str>, u64, String)> = self
            .newest_era
            .range((Arc::from(node), port, String::new())..)
            .take_while(|((n, p, _), _)| **n == *node && *p == port)
            .map(|(key, _)| key.clone())
            .collect();
        for key in eras {
            self.newest_era.remove(&key);
        }
        self.release()
    }

    /// A new link to `node` starts streams from position 0 again.
    pub fn link_up(&mut self, node: &str) {
        self.lost.remove(node);
    }

    /// Drops a lane: its ready and held messages, in order, for the caller to
    /// destroy.
    pub fn drop_lane(&mut self, lane: &L) -> Vec<T> {
        let mut items = Vec::new();
        let mut kept = VecDeque::with_capacity(self.ready.len());
        for (l, item) in self.ready.drain(..) {
            if &l == lane {
                items.push(item);
            } else {
                kept.push_back((l, item));
            }
        }
        self.ready = kept;
        if let Some(q) = self.lanes.remove(lane) {
            self.held -= q.len();
            items.extend(q.into_iter().map(|h| h.item));
        }
        items
    }

    /// Drops every lane `matches` selects: their held messages, in lane order.
    pub fn drop_lanes(&mut self, mut matches: impl FnMut(&L) -> bool) -> Vec<T> {
        let mut lanes: Vec<L> = self
            .lanes
            .keys()
            .chain(self.ready.iter().map(|(l, _)| l))
            .filter(|l| matches(l))
            .cloned()
            .collect();
        lanes.sort();
        lanes.dedup();
        lanes.iter().flat_map(|l| self.drop_lane(l)).collect()
    }

    /// The lanes `matches` selects that hold items, with how many of them
    /// `counts`.
    pub fn holding(
        &self,
        mut matches: impl FnMut(&L) -> bool,
        mut counts: impl FnMut(&T) -> bool,
    ) -> Vec<(L, usize)> {
        self.lanes
            .iter()
            .filter(|(l, q)| !q.is_empty() && matches(l))
            .map(|(l, q)| (l.clone(), q.iter().filter(|h| counts(&h.item)).count()))
            .collect()
    }

    /// Lane `lane` carries nothing more (what was on its way is lost): waits
    /// on it are void.
    pub fn lane_ended(&mut self, lane: StreamKey) {
        self.closed_lanes.insert(lane);
        self.release()
    }

    /// The frames held in the lanes `matches` selects are for a port that
    /// died: their order waits are void (see [`WaitKind::Order`]).
    pub fn port_died(&mut self, mut matches: impl FnMut(&L) -> bool) {
        let mut any = false;
        for (_, queue) in self.lanes.iter_mut().filter(|(l, _)| matches(l)) {
            for held in queue.iter_mut() {
                held.waits.retain(|w| w.kind != WaitKind::Order);
                any = true;
            }
        }
        if any {
            self.release()
        }
    }

    /// The lanes whose positions are kept.
    pub fn positions(&self) -> impl Iterator<Item = &StreamKey> {
        self.positions.keys()
    }

    /// Positions, tombstones and eras kept now.
    pub fn records(&self) -> usize {
        self.positions.len() + self.closed.len() + self.closed_lanes.len() + self.newest_era.len()
    }

    /// Messages held or ready now.
    pub fn held(&self) -> usize {
        self.held + self.ready.len()
    }

    fn release(&mut self) {
        let lanes: Vec<L> = self.lanes.keys().cloned().collect();
        for lane in lanes {
            let Some(mut queue) = self.lanes.remove(&lane) else {
                continue;
            };
            while let Some(head) = queue.front_mut() {
                let waits = std::mem::take(&mut head.waits);
                head.waits = waits.into_iter().filter(|w| !self.met(w)).collect();
                if !head.waits.is_empty() {
                    break;
                }
                let head = queue.pop_front().expect("front exists");
                self.held -= 1;
                self.ready.push_back((lane.clone(), head.item));
            }
            if !queue.is_empty() {
                self.lanes.insert(lane, queue);
            }
        }
    }
}

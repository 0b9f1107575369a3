//! Deterministic multi-node simulation of netmsg: several Mach kernels, one
//! [`Translator`] per node, links as per-stream FIFO queues whose frames are
//! delivered in a seeded random interleaving (and through the wire encoding).
//! [`Cluster`] is the harness the conformance tests use; [`run`] is the
//! randomized simulator behind `netmsg-sim`, with an oracle that checks, from
//! tags carried in every message: delivery target, FIFO per sender and port,
//! one name per port in a task's space, exact send-once accounting, and every
//! table empty after a final drain. [`run_with`] also lets tasks move receive
//! rights (the oracle follows each port's receive right from task to task).

use std::collections::{BTreeMap, VecDeque};

use mach::types::{msg_type, notify_id, port_type};
use mach::{Abi, Item, Kernel, Message, Name, Payload, PortRight, RecvOptions, TaskId};
use mach::{NAME_DEAD, NAME_NULL};

use crate::translate::{stream_of, Out, Translator, ABOUT_SENDERS_EXPORT, ONE_SHOT_STREAM};
use crate::wire::StreamFrame;

/// A task on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Task {
    pub node: usize,
    pub task: TaskId,
}

/// The transport stream that carries port stream `stream`'s frames.
fn transport_stream(stream: u64) -> u64 {
    if stream & ONE_SHOT_STREAM != 0 {
        ONE_SHOT_STREAM
    } else {
        stream
    }
}

pub fn node_name(i: usize) -> String {
    format!("node{i}")
}

/// Kernels, translators and the links between them.
pub struct Cluster {
    pub kernels: Vec<Kernel>,
    pub nets: Vec<Translator>,
    /// Frames in flight: (from, to, transport stream id) → FIFO of (port
    /// stream id, frame). As the driver writes them, every one-shot port
    /// stream's frames share one transport stream per direction
    /// ([`ONE_SHOT_STREAM`]); any other port stream is one of its own.
    pub streams: BTreeMap<(usize, usize, u64), VecDeque<(u64, StreamFrame)>>,
    /// Frames delivered so far.
    pub frames: u64,
    /// Steps that left a stream unread because of back-pressure.
    pub stalled: u64,
    /// (from, to, transport stream) written on the current links and not
    /// finished yet.
    opened: std::collections::BTreeSet<(usize, usize, u64)>,
    /// (from, to, transport stream) that `from` has finished.
    finished: std::collections::BTreeSet<(usize, usize, u64)>,
    /// Print every action and frame (`NETMSG_SIM_TRACE` set).
    pub trace: bool,
    /// Which streams are slow (a function of it and the stream).
    lag_seed: u64,
    rng: u64,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.kernels.len())
            .field("streams", &self.streams.len())
            .finish()
    }
}

impl Cluster {
    /// `nodes` = 1: one kernel and no netmsg.
    pub fn new(nodes: usize, seed: u64) -> Self {
        let mut kernels: Vec<Kernel> = (0..nodes).map(|_| Kernel::new(Abi::X86_64)).collect();
        let nets = if nodes > 1 {
            kernels
                .iter_mut()
                .enumerate()
                .map(|(i, k)| {
                    let secret = [seed.to_le_bytes(), (i as u64).to_le_bytes()].concat();
                    Translator::new(k, &node_name(i), &secret).expect("fresh kernel")
                })
                .collect()
        } else {
            Vec::new()
        };
        Self {
            kernels,
            nets,
            streams: BTreeMap::new(),
            frames: 0,
            stalled: 0,
            finished: std::collections::BTreeSet::new(),
            opened: std::collections::BTreeSet::new(),
            trace: std::env::var_os("NETMSG_SIM_TRACE").is_some(),
            lag_seed: seed.rotate_left(17),
            rng: seed | 1,
        }
    }

    pub fn rand(&mut self, n: usize) -> usize {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % n.max(1) as u64) as usize
    }

    /// A task on node `logical` (on node 0 when there is one node).
    pub fn task(&mut self, logical: usize) -> Task {
        let node = logical.min(self.kernels.len() - 1);
        Task {
            node,
            task: self.kernels[node].create_task(),
        }
    }

    pub fn k(&mut self, t: Task) -> &mut Kernel {
        &mut self.kernels[t.node]
    }

    pub fn port(&mut self, t: Task) -> Name {
        self.k(t)
            .port_allocate(t.task, PortRight::Receive)
            .expect("port")
    }

    /// A send right made from `owner`'s receive right `name`, given to `to`
    /// (across nodes through netmsg's bootstrap).
    pub fn give_send(&mut self, owner: Task, name: Name, to: Task) -> Name {
        if owner.node == to.node {
            let (n, _) = self
                .k(owner)
                .port_extract_right(owner.task, name, msg_type::MAKE_SEND, to.task)
                .expect("make send");
            return n;
        }
        let (a, b) = (owner.node, to.node);
        let (id, global) = self.nets[a]
            .bootstrap_export(
                &mut self.kernels[a],
                &node_name(b),
                owner.task,
                name,
                msg_type::MAKE_SEND,
            )
            .expect("bootstrap export");
        let (n, out) = self.nets[b]
            .bootstrap_import(&mut self.kernels[b], &node_name(a), id, global, to.task)
            .expect("bootstrap import");
        self.route(b, out);
        n
    }

    pub fn receive(&mut self, t: Task, name: Name) -> Option<Message> {
        let opts = RecvOptions {
            max_size: None,
            large: false,
        };
        self.k(t).receive(t.task, name, opts).ok().flatten()
    }

    pub fn route(&mut self, from: usize, out: Vec<Out>) {
        for o in out {
            let to: usize = self.nets[from]
                .peer_name(o.peer)
                .trim_start_matches("node")
                .parse()
                .expect("peer names are nodeN");
            assert!(
                !self.finished.contains(&(from, to, stream_of(&o))),
                "node {from} wrote {:?} to node {to} on stream {} after finishing it",
                o.frame,
                stream_of(&o)
            );
            let stream = stream_of(&o);
            self.opened.insert((from, to, stream));
            // One FIFO per transport stream, as on a link.
            self.streams
                .entry((from, to, transport_stream(stream)))
                .or_default()
                .push_back((stream, o.frame));
        }
        // Streams FINed after those frames: nothing more may follow.
        let mut finished = Vec::new();
        self.nets[from].take_finished(&mut finished);
        for (peer, stream) in finished {
            let to: usize = self.nets[from]
                .peer_name(peer)
                .trim_start_matches("node")
                .parse()
                .expect("peer names are nodeN");
            self.opened.remove(&(from, to, stream));
            self.finished.insert((from, to, stream));
        }
    }

    /// Pumps every node, then delivers one frame from a randomly chosen
    /// stream; false when nothing was left to deliver.
    pub fn step(&mut self) -> bool {
        if self.nets.is_empty() {
            return false;
        }
        for i in 0..self.nets.len() {
            let mut out = Vec::new();
            let errors = self.nets[i].pump(&mut self.kernels[i], &mut out);
            assert!(errors.is_empty(), "node {i}: {errors:?}");
            self.route(i, out);
        }
        let busy: Vec<(usize, usize, u64)> = self
            .streams
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(&k, _)| k)
            .collect();
        // As the driver does: a stream whose message waits for room in a full
        // queue is not read until that send is done.
        let waiting = busy.len();
        let busy: Vec<(usize, usize, u64)> = busy
            .into_iter()
            .filter(|&(from, to, id)| {
                // (A peer the node has had no frame from has nothing stalled;
                // the one-shot stream never is.)
                id & (ABOUT_SENDERS_EXPORT | ONE_SHOT_STREAM) != 0
                    || self.nets[to]
                        .known_peer(&node_name(from))
                        .is_none_or(|peer| {
                            self.nets[to]
                                .stalled(&mut self.kernels[to], peer, id)
                                .is_none()
                        })
            })
            .collect();
        if busy.len() < waiting {
            self.stalled += 1;
        }
        if busy.is_empty() {
            // Nothing can move: time passes (an embargo waiting on another
            // node's embargo is given up).
            return self.tick();
        }
        // About one stream in three is slow: chosen only now and then, so
        // that messages on other streams overtake its frames.
        let slow = |k: &(usize, usize, u64), seed: u64| {
            let h = (k.0 as u64 * 31 + k.1 as u64)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .wrapping_add(k.2)
                .wrapping_mul(0xbf58_476d_1ce4_e5b9)
                ^ seed;
            h.wrapping_mul(0x94d0_49bb_1331_11eb) >> 62 == 0
        };
        let fast: Vec<(usize, usize, u64)> = busy
            .iter()
            .copied()
            .filter(|k| !slow(k, self.lag_seed))
            .collect();
        let key = if !fast.is_empty() && self.rand(16) != 0 {
            fast[self.rand(fast.len())]
        } else {
            busy[self.rand(busy.len())]
        };
        let queue = self.streams.get_mut(&key).expect("busy stream");
        let (id, frame) = queue.pop_front().expect("busy stream");
        // Only streams with frames on their way are kept: a step looks at
        // each of them.
        if queue.is_empty() {
            self.streams.remove(&key);
        }
        // Through the wire encoding, as on a real link.
        let frame = StreamFrame::decode(&frame.encode()).expect("own frames decode");
        let (from, to, _) = key;
        if self.trace {
            eprintln!("  frame node{from} -> node{to} stream {id}: {frame:?}");
        }
        self.frames += 1;
        let net = &mut self.nets[to];
        let peer = net.peer_id(&node_name(from));
        let out = net
            .on_frame(
                &mut self.kernels[to],
                peer,
                id & !ABOUT_SENDERS_EXPORT,
                frame,
            )
            .expect("peer frames are valid");
        self.route(to, out);
        true
    }

    /// Time passes on every node (see [`Translator::tick`]); true if some
    /// node had an embargo waiting.
    pub fn tick(&mut self) -> bool {
        let mut any = false;
        for i in 0..self.nets.len() {
            if !self.nets[i].embargoes_pending() {
                continue;
            }
            any = true;
            let out = self.nets[i]
                .tick(&mut self.kernels[i])
                .expect("embargoes given up");
            self.route(i, out);
        }
        any
    }

    /// Runs netmsg until nothing moves.
    pub fn settle(&mut self) {
        for _ in 0..1_000_000 {
            if !self.step() {
                return;
            }
        }
        panic!("netmsg did not settle");
    }

    /// The link between nodes `a` and `b` is lost: frames in flight vanish.
    pub fn lose_link(&mut self, a: usize, b: usize) {
        let cut = |&(f, t, _): &(usize, usize, u64)| (f == a && t == b) || (f == b && t == a);
        self.streams.retain(|k, _| !cut(k));
        self.opened.retain(|k| !cut(k));
        for (i, peer) in [(a, b), (b, a)] {
            let out = self.nets[i]
                .link_lost(&mut self.kernels[i], &node_name(peer))
                .expect("link loss");
            self.route(i, out);
        }
    }

    /// Err unless every translator is idle, netmsg holds only its own two
    /// ports, and every kernel's invariants hold.
    pub fn check_clean(&mut self) -> Result<(), String> {
        self.settle();
        for (i, k) in self.kernels.iter().enumerate() {
            k.check_invariants().map_err(|e| format!("node {i}: {e}"))?;
        }
        // Every stream the current links carried was FINed by its writer once
        // the export or import it served was gone.
        if let Some((from, to, stream)) = self.opened.first() {
            return Err(format!(
                "node {from} never finished its stream {stream} to node {to}"
            ));
        }
        for (i, net) in self.nets.iter().enumerate() {
            if !net.is_idle() {
                return Err(format!("node {i}: translator tables not empty"));
            }
            if let Some(stray) = net.stray_stream_records().first() {
                return Err(format!("node {i}: a stream's record outlived it: {stray}"));
            }
            let names = self.kernels[i]
                .names(net.task())
                .map_err(|e| format!("{e:?}"))?;
            if names.len() != 2 + net.spare_notify_rights() + net.spare_proxies() {
                return Err(format!(
                    "node {i}: netmsg holds more than its set, notify port, spare rights to it and spare proxies: {names:?}"
                ));
            }
        }
        Ok(())
    }
}

// ----- the randomized simulator ----------------------------------------------------

/// A port the oracle follows: its home task and name there.
#[derive(Clone, Copy, Debug)]
struct PortInfo {
    home: Task,
    name: Name,
    alive: bool,
    /// Its receive right is in a message (`home` and `name` are stale).
    moving: bool,
    /// Its receive right moved between nodes. A node that already named the
    /// port may name it twice where route shortening is not done, and a
    /// sender's message may arrive after one it sent later, through another
    /// way or lane (docs/protocol.md, "Known divergences"). So the one-name
    /// and order checks are off for it (`Stats` counts both); where
    /// messages and rights go, loss, duplication, send-once accounting and
    /// cleanup are checked.
    relaxed: bool,
}

/// A right a task holds, as the oracle knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    port: usize,
    once: bool,
}

#[derive(Clone, Debug)]
struct Sent {
    /// The right clock of the destination the sender used (see
    /// `Sim::right_clocks`), its own send count included.
    clock: Vec<u64>,
    /// The right clocks the carried rights take along, one per right.
    carried: Vec<Vec<u64>>,
    from: Task,
    dest: usize,
    via_once: bool,
    rights: Vec<Held>,
    reply: Option<usize>,
    /// The port whose receive right the message carries (its last item).
    moved: Option<usize>,
    /// Sent to a port of netmsg (a proxy or forwarder): it travels between
    /// nodes.
    crosses: bool,
}

struct Sim {
    c: Cluster,
    tasks: Vec<Task>,
    ports: Vec<PortInfo>,
    /// Per task: name → right held there.
    held: BTreeMap<Task, BTreeMap<Name, Held>>,
    sent: BTreeMap<u32, Sent>,
    next_tag: u32,
    /// The last send right a received message brought (see `receive_one`).
    arrived_right: Option<Name>,
    /// The port whose receive right the next `send_to` carries.
    pending_move: Option<usize>,
    /// Sends per task so far.
    sends: BTreeMap<Task, u64>,
    /// Per task and port it holds a send right to: for every task, how many
    /// of its sends happened before the right reached this task along the
    /// chain of tasks that passed it on (one kernel orders those messages to
    /// the port before this task's; so must netmsg, DESIGN §4.3).
    right_clocks: BTreeMap<(Task, usize), Vec<u64>>,
    /// Messages sent with send rights and not yet received, per (sender,
    /// port), by the sender's clock at the send.
    in_flight: BTreeMap<(Task, usize), BTreeMap<u64, u32>>,
    /// Last tag received per (sender, port).
    last: BTreeMap<(Task, usize), u32>,
    /// The last message of each sender and port received, also through
    /// send-once rights, and whether it was.
    last_all: BTreeMap<(Task, usize), (u32, bool)>,
    /// The last message of each sender received through a send right to a
    /// port whose receive right went through netmsg.
    last_moved: BTreeMap<(Task, usize), u32>,
    once_made: BTreeMap<usize, u64>,
    once_used: BTreeMap<usize, u64>,
    once_notified: BTreeMap<usize, u64>,
    lost_links: bool,
    /// Whether tasks move receive rights (off: the runs of earlier versions,
    /// action for action).
    moves: bool,
    seed: u64,
    log: Vec<String>,
    stats: Stats,
}

/// What a run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub messages_sent: u64,
    pub messages_received: u64,
    pub send_once_notifications: u64,
    pub frames: u64,
    pub ports_destroyed: u64,
    /// Steps with a stream left unread because of back-pressure.
    pub stalled_steps: u64,
    /// Receive rights moved to another task, and those that arrived on a
    /// node that already named the port (a second name there).
    pub receive_rights_moved: u64,
    pub second_names: u64,
    /// Messages sent through send-once rights, and messages that arrived
    /// before one their sender sent earlier to the same port, either of them
    /// through a send-once right (docs/protocol.md, "Known divergences").
    pub send_once_messages: u64,
    pub send_once_out_of_order: u64,
    /// Messages sent with send rights to ports whose receive right went
    /// through netmsg (`PortInfo::relaxed`), and those that arrived after
    /// one their sender sent later to the same port (docs/protocol.md,
    /// "Known divergences": measured, not required).
    pub moved_port_messages: u64,
    pub moved_port_out_of_order: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, s: Stats) {
        self.messages_sent += s.messages_sent;
        self.messages_received += s.messages_received;
        self.send_once_notifications += s.send_once_notifications;
        self.frames += s.frames;
        self.stalled_steps += s.stalled_steps;
        self.ports_destroyed += s.ports_destroyed;
        self.receive_rights_moved += s.receive_rights_moved;
        self.second_names += s.second_names;
        self.send_once_messages += s.send_once_messages;
        self.send_once_out_of_order += s.send_once_out_of_order;
        self.moved_port_messages += s.moved_port_messages;
        self.moved_port_out_of_order += s.moved_port_out_of_order;
    }
}

/// The outcome of a run that broke an oracle rule.
#[derive(Debug)]
pub struct Violation {
    pub rule: String,
    /// The last actions before it.
    pub recent: Vec<String>,
}

impl Sim {
    fn new(nodes: usize, seed: u64, moves: bool) -> Self {
        let mut c = Cluster::new(nodes, seed);
        let tasks: Vec<Task> = (0..nodes * 2).map(|i| c.task(i / 2)).collect();
        let mut sim = Sim {
            c,
            tasks: tasks.clone(),
            ports: Vec::new(),
            held: tasks.iter().map(|&t| (t, BTreeMap::new())).collect(),
            sent: BTreeMap::new(),
            next_tag: 1,
            arrived_right: None,
            pending_move: None,
            sends: BTreeMap::new(),
            right_clocks: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            last: BTreeMap::new(),
            last_all: BTreeMap::new(),
            last_moved: BTreeMap::new(),
            once_made: BTreeMap::new(),
            once_used: BTreeMap::new(),
            once_notified: BTreeMap::new(),
            lost_links: false,
            moves,
            seed,
            log: Vec::new(),
            stats: Stats::default(),
        };
        // Every task starts with one port and a send right to every other
        // task's first port.
        for &t in &tasks {
            sim.new_port(t);
        }
        for (p, &owner) in tasks.iter().enumerate() {
            for &to in &tasks {
                if to != owner {
                    let name = sim.c.give_send(owner, sim.ports[p].name, to);
                    sim.held.get_mut(&to).expect("task").insert(
                        name,
                        Held {
                            port: p,
                            once: false,
                        },
                    );
                }
            }
        }
        sim
    }

    fn new_port(&mut self, t: Task) -> usize {
        let name = self.c.port(t);
        self.ports.push(PortInfo {
            home: t,
            name,
            alive: true,
            moving: false,
            relaxed: false,
        });
        self.ports.len() - 1
    }

    fn own_ports(&self, t: Task) -> Vec<usize> {
        (0..self.ports.len())
            .filter(|&p| self.ports[p].alive && !self.ports[p].moving && self.ports[p].home == t)
            .collect()
    }

    /// Forgets names the kernel no longer has as the right the oracle thinks
    /// (dead names after a death are dropped by the task).
    fn refresh(&mut self, t: Task) {
        let names: Vec<(Name, Held)> = self.held[&t].iter().map(|(&n, &h)| (n, h)).collect();
        for (name, h) in names {
            let ty = self.c.k(t).port_type(t.task, name).unwrap_or(0);
            let want = if h.once {
                port_type::SEND_ONCE
            } else {
                port_type::SEND
            };
            if ty & want == 0 {
                if ty & port_type::DEAD_NAME != 0 {
                    self.forget(t, name);
                }
                self.held.get_mut(&t).expect("task").remove(&name);
            }
        }
    }

    fn act(&mut self) -> Result<(), String> {
        let t = self.tasks[self.c.rand(self.tasks.len())];
        match self.c.rand(12) {
            0 if self.own_ports(t).len() < 3 => {
                let p = self.new_port(t);
                self.note(format!("{t:?} makes port {p}"));
            }
            1..=3 => self.send(t)?,
            4..=5 => {
                self.receive_one(t)?;
            }
            6 => {
                self.refresh(t);
                let names: Vec<Name> = self.held[&t].keys().copied().collect();
                if !names.is_empty() {
                    let name = names[self.c.rand(names.len())];
                    let h = self.held.get_mut(&t).expect("task").remove(&name);
                    self.forget(t, name);
                    // Without a send right to it, the task's later ones come
                    // along new chains.
                    if let Some(h) = h.filter(|h| !h.once) {
                        if !self.held[&t].values().any(|o| !o.once && o.port == h.port) {
                            self.right_clocks.remove(&(t, h.port));
                        }
                    }
                    self.note(format!("{t:?} drops {h:?}"));
                }
            }
            7 if self.c.rand(8) == 0 => {
                let own = self.own_ports(t);
                if own.len() > 1 {
                    let p = own[self.c.rand(own.len())];
                    let _ = self.c.k(t).port_mod_refs(
                        t.task,
                        self.ports[p].name,
                        PortRight::Receive as u32,
                        -1,
                    );
                    self.port_died(p);
                    self.stats.ports_destroyed += 1;
                    self.note(format!("{t:?} destroys port {p}"));
                }
            }
            10 if self.moves && self.c.rand(3) == 0 => self.move_receive(t)?,
            9 if self.held[&t].len() < 3 => {
                // An introduction (the bootstrap exchange): a send right to
                // another task's port, so that the run does not die down.
                let live: Vec<usize> = (0..self.ports.len())
                    .filter(|&p| {
                        self.ports[p].alive && !self.ports[p].moving && self.ports[p].home != t
                    })
                    .collect();
                if !live.is_empty() {
                    let p = live[self.c.rand(live.len())];
                    let PortInfo { home, name, .. } = self.ports[p];
                    let got = self.c.give_send(home, name, t);
                    let mine = self.held.get_mut(&t).expect("task");
                    if let Some(prev) = mine.insert(
                        got,
                        Held {
                            port: p,
                            once: false,
                        },
                    ) {
                        if prev.port != p {
                            return Err(format!(
                                "name {got} in {t:?} was port {} and is now port {p}",
                                prev.port
                            ));
                        }
                    }
                    self.note(format!("{t:?} is given port {p}"));
                }
            }
            8 if self.lose_links_allowed() && self.c.rand(200) == 0 => {
                let n = self.c.kernels.len();
                let a = self.c.rand(n);
                let b = (a + 1 + self.c.rand(n - 1)) % n;
                self.c.lose_link(a, b);
                self.lost_links = true;
                // Messages in flight may be lost now: later ones need not
                // wait for them (FIFO among those that arrive still holds).
                self.in_flight.clear();
                self.note(format!("link {a}-{b} lost"));
            }
            _ => {
                for _ in 0..1 + self.c.rand(4) {
                    self.c.step();
                    // Tasks waiting in receive run between frames.
                    if self.c.rand(2) == 0 {
                        let t = self.tasks[self.c.rand(self.tasks.len())];
                        self.receive_one(t)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// netmsg's identity tables name only ports it holds: a freed name may
    /// be reused, and the new port would answer to the old one's identity.
    fn check_identities(&mut self) -> Result<(), String> {
        for (i, net) in self.c.nets.iter().enumerate() {
            let stale = net.stale_names(&mut self.c.kernels[i]);
            if !stale.is_empty() {
                return Err(format!(
                    "node {i}: identity tables keep names netmsg no longer holds: {stale:?}"
                ));
            }
        }
        Ok(())
    }

    /// Ports whose receive rights are in messages queued for `p` (or on
    /// their way there): they go wherever `p` goes.
    fn carried_by(&self, p: usize) -> Vec<usize> {
        self.sent
            .values()
            .filter(|s| s.dest == p)
            .filter_map(|s| s.moved)
            .collect()
    }

    /// Port `p` is destroyed: so are the ports it carries.
    fn port_died(&mut self, p: usize) {
        self.ports[p].alive = false;
        for q in self.carried_by(p) {
            if self.ports[q].alive {
                self.port_died(q);
            }
        }
    }

    /// Port `p`'s receive right goes through netmsg: so do those it carries
    /// (also when `p` went through netmsg before; ports in transit form no
    /// cycles).
    fn relax(&mut self, p: usize) {
        self.ports[p].relaxed = true;
        for q in self.carried_by(p) {
            self.relax(q);
        }
    }

    /// `t` sends the receive right of one of its ports (it keeps at least
    /// one) to the holder of a right it has, with a tag like any message.
    fn move_receive(&mut self, t: Task) -> Result<(), String> {
        let own = self.own_ports(t);
        if own.len() < 2 {
            return Ok(());
        }
        let p = own[self.c.rand(own.len())];
        self.refresh(t);
        let names: Vec<(Name, Held)> = self.held[&t]
            .iter()
            .map(|(&n, &h)| (n, h))
            .filter(|(_, h)| !self.ports[h.port].moving && h.port != p)
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        let (dest_name, _) = names[self.c.rand(names.len())];
        self.pending_move = Some(p);
        let sent = self.send_to(t, Some(dest_name));
        self.pending_move = None;
        sent
    }

    /// Drops every reference `t` has under `name` (send, send-once or dead).
    fn forget(&mut self, t: Task, name: Name) {
        let k = self.c.k(t);
        let ty = k.port_type(t.task, name).unwrap_or(0);
        for (bit, right) in [
            (port_type::SEND, PortRight::Send),
            (port_type::SEND_ONCE, PortRight::SendOnce),
            (port_type::DEAD_NAME, PortRight::DeadName),
        ] {
            if ty & bit != 0 {
                let refs = k.port_get_refs(t.task, name, right as u32).unwrap_or(0);
                let _ = k.port_mod_refs(t.task, name, right as u32, -(refs as i32));
            }
        }
    }

    /// Links are cut in runs of even seeds (so that odd seeds keep every
    /// check that a cut relaxes).
    fn lose_links_allowed(&self) -> bool {
        self.seed % 2 == 0
    }

    fn send(&mut self, t: Task) -> Result<(), String> {
        self.send_to(t, None)
    }

    /// A message to `to` if the task still holds it, else to a random right.
    fn send_to(&mut self, t: Task, to: Option<Name>) -> Result<(), String> {
        self.refresh(t);
        let names: Vec<(Name, Held)> = self.held[&t].iter().map(|(&n, &h)| (n, h)).collect();
        if names.is_empty() {
            return Ok(());
        }
        let (dest_name, dest) = match to.and_then(|n| self.held[&t].get(&n).map(|&h| (n, h))) {
            Some(chosen) => chosen,
            None => names[self.c.rand(names.len())],
        };
        // A receive right goes only into a port whose own receive right is
        // not on its way somewhere (no cycles of ports in transit).
        if let Some(p) = self.pending_move {
            if self.ports[dest.port].moving || dest.port == p {
                return Ok(());
            }
        }
        let tag = self.next_tag;
        self.next_tag += 1;
        let mut body = vec![Item::int32(tag as i32)];
        let mut rights = Vec::new();
        // Maybe a send right the task holds, or one made on its own port.
        match self.c.rand(3) {
            0 => {
                let sends: Vec<(Name, Held)> =
                    names.iter().copied().filter(|(_, h)| !h.once).collect();
                if !sends.is_empty() {
                    let (n, h) = sends[self.c.rand(sends.len())];
                    body.push(Item::port(msg_type::COPY_SEND, n));
                    rights.push(h);
                }
            }
            1 => {
                let own = self.own_ports(t);
                if !own.is_empty() {
                    let p = own[self.c.rand(own.len())];
                    body.push(Item::port(msg_type::MAKE_SEND, self.ports[p].name));
                    rights.push(Held {
                        port: p,
                        once: false,
                    });
                }
            }
            _ => {}
        }
        let moved = self.pending_move;
        if let Some(p) = moved {
            body.push(Item::port(msg_type::MOVE_RECEIVE, self.ports[p].name));
        }
        let own: Vec<usize> = self
            .own_ports(t)
            .into_iter()
            .filter(|&p| Some(p) != moved)
            .collect();
        let reply = (!own.is_empty() && self.c.rand(2) == 0).then(|| own[self.c.rand(own.len())]);
        let (reply_name, reply_disposition) = match reply {
            Some(p) => (self.ports[p].name, msg_type::MAKE_SEND_ONCE),
            None => (NAME_NULL, 0),
        };
        let dest_disposition = if dest.once {
            msg_type::MOVE_SEND_ONCE
        } else {
            msg_type::COPY_SEND
        };
        let crosses = self.c.nets.get(t.node).is_some_and(|net| {
            self.c.kernels[t.node]
                .receiver_of(t.task, dest_name)
                .is_none_or(|(task, _)| task == net.task())
        });
        let msg = Message::new(
            dest_name,
            dest_disposition,
            reply_name,
            reply_disposition,
            1,
            body,
        );
        match self.c.k(t).send(t.task, msg, false) {
            Ok(_) => {
                if dest.once {
                    self.held.get_mut(&t).expect("task").remove(&dest_name);
                }
                let count = self.sends.entry(t).or_insert(0);
                *count += 1;
                let count = *count;
                let clock = self.right_clock(t, dest.port, count);
                let carried = rights
                    .iter()
                    .map(|h| self.right_clock(t, h.port, count))
                    .collect();
                if !dest.once {
                    self.in_flight
                        .entry((t, dest.port))
                        .or_default()
                        .insert(count, tag);
                }
                if let Some(p) = reply {
                    *self.once_made.entry(p).or_insert(0) += 1;
                }
                self.sent.insert(
                    tag,
                    Sent {
                        clock,
                        carried,
                        from: t,
                        dest: dest.port,
                        via_once: dest.once,
                        rights,
                        reply,
                        moved,
                        crosses,
                    },
                );
                if let Some(p) = moved {
                    self.ports[p].moving = true;
                    if crosses {
                        self.relax(p);
                    }
                    self.pending_move = None;
                    // Into a port already dead (its death notice on the way):
                    // destroyed with the message.
                    if !self.ports[dest.port].alive {
                        self.port_died(p);
                    }
                }
                self.stats.messages_sent += 1;
                self.note(format!("{t:?} sends {tag} to port {}", dest.port));
                if let Some(p) = moved {
                    self.note(format!("  with the receive right of port {p}"));
                }
            }
            // A full queue: the message comes back with its rights in the
            // task's space (ipc_kmsg_copyout_pseudo); the task keeps the
            // destination and reply rights and gives up its own port's.
            Err(e) if e.code == mach::MsgReturn::SendTimedOut => {
                let back = e.message;
                if dest.once {
                    let mine = self.held.get_mut(&t).expect("task");
                    mine.remove(&dest_name);
                    mine.insert(back.remote_port, dest);
                }
                if let Some(p) = reply {
                    *self.once_made.entry(p).or_insert(0) += 1;
                    self.held.get_mut(&t).expect("task").insert(
                        back.local_port,
                        Held {
                            port: p,
                            once: true,
                        },
                    );
                }
                if let Some(p) = moved {
                    // The receive right came back too, maybe under a new name.
                    if let Some(names) = back.body.last().and_then(Item::names_payload) {
                        self.ports[p].name = names[0];
                    }
                }
                for (item, h) in back.body.iter().skip(1).zip(&rights) {
                    if let Some(names) = item.names_payload() {
                        if self.ports[h.port].home == t {
                            let _ = self.c.k(t).port_mod_refs(
                                t.task,
                                names[0],
                                PortRight::Send as u32,
                                -1,
                            );
                        }
                    }
                }
                self.note(format!("{t:?} send {tag} timed out"));
            }
            Err(e) => {
                return Err(format!("{t:?} send to {dest:?} failed: {:?}", e.code));
            }
        }
        Ok(())
    }

    fn receive_one(&mut self, t: Task) -> Result<bool, String> {
        let own = self.own_ports(t);
        if own.is_empty() {
            return Ok(false);
        }
        let p = own[self.c.rand(own.len())];
        self.arrived_right = None;
        let got = self.receive_from(t, p)?;
        // Often a task uses a right as soon as it has it: the race that
        // causal order for moved rights is about.
        if let Some(name) = self.arrived_right.take() {
            if self.c.rand(2) == 0 {
                self.send_to(t, Some(name))?;
            }
        }
        Ok(got)
    }

    fn receive_from(&mut self, t: Task, p: usize) -> Result<bool, String> {
        let name = self.ports[p].name;
        let Some(m) = self.c.receive(t, name) else {
            return Ok(false);
        };
        self.check_received(t, p, m)?;
        Ok(true)
    }

    /// Records an action; with `NETMSG_SIM_TRACE` set, prints it as well.
    fn note(&mut self, line: String) {
        if self.c.trace {
            eprintln!("{line}");
        }
        self.log.push(line);
    }

    fn task_index(&self, t: Task) -> usize {
        self.tasks
            .iter()
            .position(|&x| x == t)
            .expect("a task of the run")
    }

    /// Task `t`'s right clock for `port` with its own `count` sends in it.
    fn right_clock(&self, t: Task, port: usize, count: u64) -> Vec<u64> {
        let mut clock = self
            .right_clocks
            .get(&(t, port))
            .cloned()
            .unwrap_or_else(|| vec![0; self.tasks.len()]);
        let me = self.task_index(t);
        clock[me] = clock[me].max(count);
        clock
    }

    /// Causal order for moved rights: a message sent with a send right
    /// arrives after every message to the port that a task on the right's way
    /// to the sender sent before passing it on. Messages sent with send-once
    /// rights are left out, as for FIFO below.
    fn check_causal_order(&mut self, p: usize, tag: u32, sent: &Sent) -> Result<(), String> {
        if sent.via_once || self.ports[p].relaxed {
            return Ok(());
        }
        let from = self.task_index(sent.from);
        if let Some(q) = self.in_flight.get_mut(&(sent.from, p)) {
            q.remove(&sent.clock[from]);
        }
        for (j, s) in self.tasks.clone().into_iter().enumerate() {
            loop {
                let earlier = self
                    .in_flight
                    .get(&(s, p))
                    .and_then(|q| q.first_key_value())
                    .filter(|(&c, _)| c <= sent.clock[j])
                    .map(|(&c, &x)| (c, x));
                let Some((c, x)) = earlier else { break };
                if !self.lost_links {
                    return Err(format!(
                        "port {p}: message {tag} from {:?} overtook {x} from {s:?}, sent before the right reached it",
                        sent.from
                    ));
                }
                // After a link loss, a message whose way was cut is lost, and
                // a right whose way was cut may live on next to the port's new
                // one under a second name, with its own order (docs/protocol.md,
                // "Known divergences"): no order is required with it.
                let _ = x;
                self.in_flight.get_mut(&(s, p)).expect("queue").remove(&c);
            }
        }
        Ok(())
    }

    /// The oracle's checks of one received message.
    fn check_received(&mut self, t: Task, p: usize, m: Message) -> Result<(), String> {
        if m.id == notify_id::SEND_ONCE && m.body.is_empty() {
            *self.once_notified.entry(p).or_insert(0) += 1;
            self.stats.send_once_notifications += 1;
            self.note(format!("{t:?} gets send-once notification on {p}"));
            return Ok(());
        }
        let tag = m
            .body
            .first()
            .and_then(Item::bytes_payload)
            .and_then(|b| b.get(..4))
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .ok_or_else(|| format!("{t:?} got an untagged message {m:?}"))?;
        self.stats.messages_received += 1;
        let sent = self
            .sent
            .remove(&tag)
            .ok_or_else(|| format!("message {tag} delivered twice or never sent"))?;
        self.note(format!(
            "{t:?} receives {tag} on port {p} (reply name {}, {} items)",
            m.remote_port,
            m.body.len()
        ));
        if sent.dest != p {
            return Err(format!(
                "message {tag} for port {} arrived on port {p}",
                sent.dest
            ));
        }
        self.check_causal_order(p, tag, &sent)?;
        // FIFO per sender and port for messages sent with send rights. A
        // message sent with a send-once right travels on its one-shot export's
        // own stream, so its order against the same sender's other messages to
        // the port is not kept across nodes (docs/protocol.md, "Known
        // divergences"); on one node it would be.
        let key = (sent.from, p);
        if !sent.via_once && !self.ports[p].relaxed {
            if let Some(&prev) = self.last.get(&key) {
                // (After a link cut, see `check_causal_order`.)
                if prev > tag && !self.lost_links {
                    return Err(format!(
                        "port {p}: message {tag} from {:?} after {prev}",
                        sent.from
                    ));
                }
            }
            self.last.insert(key, tag);
        }
        // Order of messages through send rights to ports that moved across
        // nodes: measured, not required (see `PortInfo::relaxed`).
        if !sent.via_once && self.ports[p].relaxed && !self.lost_links {
            self.stats.moved_port_messages += 1;
            match self.last_moved.get(&key) {
                Some(&prev) if prev > tag => self.stats.moved_port_out_of_order += 1,
                _ => {
                    self.last_moved.insert(key, tag);
                }
            }
        }
        // Order among them counting messages through send-once rights too:
        // measured, not required (see above).
        if !self.ports[p].relaxed && !self.lost_links {
            if sent.via_once {
                self.stats.send_once_messages += 1;
            }
            match self.last_all.get(&key) {
                Some(&(prev, prev_once)) if prev > tag => {
                    if sent.via_once || prev_once {
                        self.stats.send_once_out_of_order += 1;
                    }
                }
                _ => {
                    self.last_all.insert(key, (tag, sent.via_once));
                }
            }
        }
        let via_once = m.local_type() == msg_type::PORT_SEND_ONCE;
        if via_once != sent.via_once {
            return Err(format!(
                "message {tag}: sent via send-once {} but arrived {via_once}",
                sent.via_once
            ));
        }
        if via_once {
            *self.once_used.entry(p).or_insert(0) += 1;
        }
        // Rights: the reply, then the carried right.
        let mut got: Vec<(Name, Held)> = Vec::new();
        match (sent.reply, m.remote_type()) {
            (Some(r), msg_type::PORT_SEND_ONCE) => got.push((
                m.remote_port,
                Held {
                    port: r,
                    once: true,
                },
            )),
            (None, 0) => {}
            (want, ty) => {
                return Err(format!(
                    "message {tag}: reply {want:?} arrived as type {ty}"
                ))
            }
        }
        for (item, h) in m.body.iter().skip(1).zip(&sent.rights) {
            let Some(Payload::Names(names)) = Some(&item.payload) else {
                return Err(format!("message {tag}: right missing"));
            };
            got.push((names[0], *h));
        }
        // The right clocks come along with the rights that arrive alive.
        for ((item, h), carried) in m.body.iter().skip(1).zip(&sent.rights).zip(&sent.carried) {
            let alive = item
                .names_payload()
                .is_some_and(|n| n[0] != NAME_DEAD && n[0] != NAME_NULL);
            if alive && !h.once && self.ports[h.port].home != t {
                let clock = self
                    .right_clocks
                    .entry((t, h.port))
                    .or_insert_with(|| vec![0; carried.len()]);
                for (c, &o) in clock.iter_mut().zip(carried) {
                    *c = (*c).max(o);
                }
            }
        }
        if let Some(q) = sent.moved {
            let name = m
                .body
                .last()
                .and_then(Item::names_payload)
                .map(|n| n[0])
                .ok_or_else(|| format!("message {tag}: receive right missing"))?;
            // (Through netmsg, or in the queue of a port that did.)
            self.ports[q].relaxed |= sent.crosses || self.ports[p].relaxed;
            self.arrived_receive(t, q, name)?;
        }
        for (name, h) in got {
            if name == NAME_DEAD || name == NAME_NULL {
                if self.ports[h.port].alive && !self.lost_links {
                    return Err(format!(
                        "message {tag}: right to live port {} arrived dead",
                        h.port
                    ));
                }
                continue;
            }
            if self.ports[h.port].home == t && !self.ports[h.port].moving && !h.once {
                // A right to the task's own port: the same name as its receive right.
                if name != self.ports[h.port].name && !self.ports[h.port].relaxed {
                    return Err(format!(
                        "message {tag}: own port {} came back under another name",
                        h.port
                    ));
                }
                let _ = self.c.k(t).port_deallocate(t.task, name);
                continue;
            }
            let mine = self.held.get_mut(&t).expect("task");
            // After a link loss a right whose way was cut is dead without
            // knowing it until the death notice comes; meanwhile the port,
            // exported anew, may arrive under a new identity and name.
            if !h.once && !self.lost_links && !self.ports[h.port].relaxed {
                if let Some((&other, _)) = mine
                    .iter()
                    .find(|(&n, o)| !o.once && o.port == h.port && n != name)
                {
                    let ty = self.c.k(t).port_type(t.task, other).unwrap_or(0);
                    if ty & port_type::SEND != 0 {
                        return Err(format!("{t:?} holds port {} under two names", h.port));
                    }
                }
            }
            if !h.once {
                self.arrived_right = Some(name);
            }
            let mine = self.held.get_mut(&t).expect("task");
            if let Some(prev) = mine.insert(name, h) {
                if prev.port != h.port {
                    return Err(format!(
                        "name {name} in {t:?} was port {} and is now port {}",
                        prev.port, h.port
                    ));
                }
            }
        }
        Ok(())
    }

    /// The receive right of port `q` arrived at `t` as `name`: `t` is its
    /// home now, and (as one kernel gives a task one name per port) the send
    /// rights `t` held to it are that name, unless netmsg had to give it a
    /// second name there.
    fn arrived_receive(&mut self, t: Task, q: usize, name: Name) -> Result<(), String> {
        let second = match self.c.nets.get(t.node) {
            Some(net) => net.is_second_name(&self.c.kernels[t.node], t.task, name),
            None => false,
        };
        let info = &mut self.ports[q];
        info.home = t;
        info.name = name;
        info.moving = false;
        self.stats.receive_rights_moved += 1;
        self.stats.second_names += u64::from(second);
        self.note(format!(
            "{t:?} gets the receive right of port {q} (second name: {second})"
        ));
        if self.ports[q].relaxed {
            return Ok(());
        }
        let mine: Vec<Name> = self.held[&t]
            .iter()
            .filter(|(_, h)| h.port == q && !h.once)
            .map(|(&n, _)| n)
            .collect();
        for n in mine {
            if n != name {
                return Err(format!(
                    "{t:?} holds port {q} as {n} and got its receive right as {name}"
                ));
            }
            self.forget(t, n);
            self.held.get_mut(&t).expect("task").remove(&n);
        }
        self.right_clocks.remove(&(t, q));
        Ok(())
    }

    /// Every task drops its rights and reads everything until nothing moves.
    fn drain(&mut self) -> Result<(), String> {
        for _ in 0..10_000 {
            self.c.settle();
            let mut moved = false;
            for t in self.tasks.clone() {
                for (name, _) in std::mem::take(self.held.get_mut(&t).expect("task")) {
                    self.forget(t, name);
                    moved = true;
                }
                for p in self.own_ports(t) {
                    while self.receive_from(t, p)? {
                        moved = true;
                    }
                }
            }
            if !moved {
                return Ok(());
            }
        }
        Err("the drain did not finish".into())
    }

    /// After the drain: every send-once right to a live port was used or
    /// notified exactly once; then every port goes and netmsg must be clean.
    fn finish(&mut self) -> Result<(), String> {
        self.drain()?;
        if !self.lost_links {
            for p in 0..self.ports.len() {
                if !self.ports[p].alive {
                    continue;
                }
                let made = self.once_made.get(&p).copied().unwrap_or(0);
                let used = self.once_used.get(&p).copied().unwrap_or(0);
                let notified = self.once_notified.get(&p).copied().unwrap_or(0);
                if made != used + notified {
                    return Err(format!(
                        "port {p}: {made} send-once rights made, {used} used, {notified} notified"
                    ));
                }
            }
            if let Some((tag, s)) = self.sent.iter().find(|(_, s)| self.ports[s.dest].alive) {
                return Err(format!(
                    "message {tag} to live port {} never arrived ({s:?})",
                    s.dest
                ));
            }
        }
        for p in 0..self.ports.len() {
            // (A port still moving after the drain went with a lost link.)
            if self.ports[p].alive && !self.ports[p].moving {
                let home = self.ports[p].home;
                let name = self.ports[p].name;
                let _ =
                    self.c
                        .k(home)
                        .port_mod_refs(home.task, name, PortRight::Receive as u32, -1);
                self.ports[p].alive = false;
            }
        }
        self.c.settle();
        // Notifications of the last deaths may still name dead send-once rights.
        for t in self.tasks.clone() {
            let names = self.c.k(t).names(t.task).map_err(|e| format!("{e:?}"))?;
            if let Some(n) = names.first() {
                return Err(format!("{t:?} still holds {n:?} ({} names)", names.len()));
            }
        }
        self.c.check_clean()
    }
}

/// Runs `actions` random actions on `nodes` nodes from `seed`, then drains and
/// checks. Deterministic: the same arguments give the same run, and a run is a
/// prefix of every longer one with the same seed.
pub fn run(nodes: usize, seed: u64, actions: u64) -> Result<Stats, Violation> {
    run_with(nodes, seed, actions, false)
}

/// [`run`]; `moves`: whether tasks also move receive rights (off: a run as
/// versions before receive-right moves made it, action for action). With
/// moves the oracle relaxes the one-name and order checks for ports whose
/// receive right went through netmsg (see `PortInfo::relaxed`; the
/// divergences behind that are in docs/protocol.md, "Known divergences").
pub fn run_with(nodes: usize, seed: u64, actions: u64, moves: bool) -> Result<Stats, Violation> {
    let mut sim = Sim::new(nodes, seed, moves);
    let fail = |sim: &Sim, rule: String| Violation {
        rule,
        recent: sim.log.iter().rev().take(40).rev().cloned().collect(),
    };
    for _ in 0..actions {
        if let Err(rule) = sim.act().and_then(|()| sim.check_identities()) {
            return Err(fail(&sim, rule));
        }
    }
    sim.finish().map_err(|rule| fail(&sim, rule))?;
    sim.stats.frames = sim.c.frames;
    sim.stats.stalled_steps = sim.c.stalled;
    Ok(sim.stats)
}

/// The shortest prefix of a failing run that still fails (runs are prefixes of
/// each other, so a binary search finds it).
pub fn minimal_failing(nodes: usize, seed: u64, actions: u64, moves: bool) -> u64 {
    let (mut good, mut bad) = (0u64, actions);
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        if run_with(nodes, seed, mid, moves).is_err() {
            bad = mid;
        } else {
            good = mid;
        }
    }
    bad
}

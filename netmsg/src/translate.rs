//! The translation core (DESIGN §4): one node's netmsg as a task in its
//! node's Mach model, turning messages that local tasks send to proxies into
//! port-stream frames and frames from peers into local messages, with the
//! counted-release ledger (`crate::release`) deciding the life of every export
//! and import.
//!
//! Deterministic and free of I/O: the caller owns the [`Kernel`] and the
//! links, calls [`Translator::pump`] when netmsg's port set is readable and
//! [`Translator::on_frame`] for each frame, and writes the [`Out`] frames on
//! the named streams. Today: send and send-once rights (exported, imported,
//! coming home, reaching a node by two paths), data inline and out of line,
//! forwarding for exported proxies, causal order for moved rights, death, link
//! loss, back-pressure from full queues (a stream whose message waits for
//! room in its port's queue is [`Translator::stalled`]: the driver stops
//! reading it), receive-right moves by forwarding (the port stays behind as
//! a forwarder to the node the right moved to), and route shortening with an
//! embargo (a receive right that reaches a node already naming its port
//! takes that name; send-once rights left behind follow it there as the
//! moved port's pool). Not yet: shortening for ports whose name leads
//! through a third node (they get a second name; docs/protocol.md, "Known
//! divergences").
//!
//! Invariants: netmsg holds exactly one send reference per live send export;
//! a proxy's make-send count equals the ledger's count of rights made on it,
//! because netmsg makes exactly one send right per right received (also for
//! messages it has to destroy) or per right it maps onto the proxy; every
//! send-once right netmsg makes on a one-shot proxy ends in a message or a
//! send-once notification; one send proxy per global identity; every
//! position a right or message carries counts messages written before it.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap, FxHashSet};
use smallvec::SmallVec;

use mach::types::{msg_type, msgh_bits, notify_id, port_type};
use mach::{
    Item, KernReturn, Kernel, Message, Name, Payload, PortRight, RecvOptions, SendStatus,
    SendTicket, TaskId,
};
use mach::{NAME_DEAD, NAME_NULL};
use thiserror::Error;

use crate::causal::{Holds, StreamKey, Wait, WaitKind};
use crate::release::{Effect, Effects, Frame, Imported, Ledger, ReleaseError};
use crate::wire::{
    Dependency, Embargo, Form, GlobalId, HomeLane, MovedPort, Origin, StreamFrame, WireItem,
    WireMessage, WireRef, WireRight, MARKER_ID, MARKER_LEN,
};

/// Release-protocol frames from exporter to importer travel on the transport
/// stream `id ^ ABOUT_SENDERS_EXPORT`, so that a port's messages never wait
/// behind them.
pub const ABOUT_SENDERS_EXPORT: u64 = 1 << 62;

/// The transport stream (per direction) that carries the frames of every
/// one-shot port stream, each tagged with its port stream's ID
/// ([`crate::wire::OneShotFrame`]): a reply then opens no stream of its own.
/// No export has the number 0, so no port stream has this ID.
pub const ONE_SHOT_STREAM: u64 = crate::release::SEND_ONCE_ID_BIT;

/// How many of a peer's live one-shot exports a new send export to it looks
/// at for ones to the same port (see [`WireRef::SenderExport`]).
pub const ONCE_EXPORTS_LOOKED_AT: usize = 64;

/// The transport stream (per direction) an [`Out`] is written on.
pub fn stream_of(out: &Out) -> u64 {
    match &out.frame {
        StreamFrame::Release(
            Frame::Dead { .. } | Frame::Ack { .. } | Frame::HomeArrived { .. },
        ) => out.id ^ ABOUT_SENDERS_EXPORT,
        _ => out.id,
    }
}

/// A peer's `count` own messages on a stream from its `first`-th on,
/// forwarded as its lane's `position`-th on, on the stream of `import`
/// toward `upstream` (which changes when the port moves).
#[derive(Clone, Debug)]
struct ForwardRun {
    first: u64,
    position: u64,
    count: u64,
    upstream: PeerId,
    import: u64,
}

/// Runs of forwarded positions kept per peer stream (see
/// `Translator::forwarded_at`): one run while nothing else feeds the lane.
const MAX_FORWARD_RUNS: usize = 64;

/// Blocked sends from one stream while it is read on past a full queue
/// because a held frame waits for its later messages (`Translator::stalled`):
/// at most this many, and about this many bytes (one stream window: what the
/// peer could have had on its way anyway).
const MAX_READ_ON: usize = 1024;
const MAX_READ_ON_BYTES: usize = 1 << 20;

/// Ports whose last positions are kept for a next proxy: a bound on memory;
/// a port whose entry was dropped loses that order for its next proxy.
const MAX_RETIRED: usize = 4096;

/// Send-once rights to its own notify port netmsg keeps for dead-name
/// requests (each is a name in its space).
const SPARE_NOTIFY_RIGHTS: usize = 64;

/// Used one-shot proxies netmsg keeps, empty and in its port set, for the
/// next one-shot imports (each a receive right in its space).
const SPARE_PROXIES: usize = 64;

/// A forwarder's moved queue (the messages queued on its port when the
/// receive right left), forwarded first: how many are left, and where
/// `Translator::write_log` stood at the move. Their rights' positions do not
/// count what was written since (the message carrying the receive right and
/// messages sent after it: netmsg takes messages in the order they were
/// sent, and the queue's were sent before), since the receiver holds the
/// carrying message until the queue is back.
#[derive(Debug)]
struct QueueCut {
    left: u32,
    start: usize,
}

/// Writes logged while moved queues wait to be forwarded: past this many
/// (a forwarder not read for long), positions count them again (safe; an
/// embargo that then waits on its own carrying message is given up).
const MAX_WRITE_LOG: usize = 4096;

/// What became of a message from the wire.
enum Placed {
    /// Delivered, or destroyed with its dead port.
    Done,
    /// Waiting for room in its port's full queue.
    Blocked(SendTicket),
    /// Forwarded upstream as its lane's `position`-th; `own`: the peer's
    /// own message (not one it forwarded).
    Forwarded {
        own: bool,
        position: u64,
        upstream: PeerId,
        import: u64,
    },
}

/// Why a stream is not read for now ([`Translator::stalled`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stall {
    /// A message from it waits for room in a full queue: read again once
    /// this send is done.
    Send(SendTicket),
    /// Its messages are forwarded onto a congested stream: read again once
    /// congestion changes.
    Congested,
}

/// A message through one-shot export `once` that came on `peer`'s stream
/// `stream` of a send export of the same port, after the send `after` of
/// that stream, which waits for room in the port's queue.
#[derive(Debug)]
struct BehindSend {
    peer: PeerId,
    stream: u64,
    after: SendTicket,
    once: u64,
    message: WireMessage,
}

/// A frame to write on the stream of export `id` toward `peer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Out {
    pub peer: PeerId,
    pub id: u64,
    pub frame: StreamFrame,
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TranslateError {
    /// The peer broke the protocol: close its link.
    #[error("peer {peer}: {reason}")]
    Protocol { peer: String, reason: String },
    /// A local task sent something netmsg does not carry yet; the message was
    /// destroyed (its rights released) as if its destination had died.
    #[error("message {id} destroyed: {reason}")]
    Unsupported { id: i32, reason: &'static str },
    /// The system has no randomness for netmsg's identity secret.
    #[error("no system randomness")]
    NoRandomness,
    /// The local kernel refused an operation netmsg relies on: a bug.
    #[error("kernel refused {what}: {code:?}")]
    Kernel {
        what: &'static str,
        code: KernReturn,
    },
}

fn kr<T>(what: &'static str, r: Result<T, KernReturn>) -> Result<T, TranslateError> {
    r.map_err(|code| TranslateError::Kernel { what, code })
}

/// A peer (a node this node has had a link with), by the order it came:
/// tables are keyed by it, not by name, and a driver looks a name up once
/// per link (`Translator::peer_id`), not per frame. Never reused; a node's
/// names stay as its links do, a few bytes each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ProxyOf {
    handle: u64,
    once: bool,
}

#[derive(Debug)]
struct Peer {
    ledger: Ledger,
    /// Ledger proxy handle → proxy port name in netmsg's space.
    proxy_name: FxHashMap<u64, Name>,
}

/// One node's netmsg.
#[derive(Debug)]
pub struct Translator {
    node: String,
    task: TaskId,
    set: Name,
    /// Dead-name notifications for exported rights arrive here.
    notify: Name,
    peers: BTreeMap<PeerId, Peer>,
    /// Names of the peers by `PeerId`, and back.
    peer_names: Vec<std::sync::Arc<str>>,
    peer_ids: FxHashMap<String, PeerId>,
    /// Proxy port name → (peer, handle).
    proxies: FxHashMap<Name, (PeerId, ProxyOf)>,
    /// Messages written per (peer, export id) stream: the watermark a right
    /// going home carries.
    written: FxHashMap<(PeerId, u64), u64>,
    /// Of those, messages through send-once rights (an embargo leaves them
    /// out: one the peer takes in after the move comes back in its lane).
    once_written: FxHashMap<(PeerId, u64), u64>,
    /// Messages delivered per lane.
    delivered: BTreeMap<StreamKey, u64>,
    /// Of those in a peer's own lane of a send export's stream (peer,
    /// export), messages through one-shot exports: an embargo's counts leave
    /// them out (see `once_written`).
    once_delivered: FxHashMap<(PeerId, u64), u64>,
    /// Frames held for their dependencies, in lanes: per peer stream, and
    /// within it per lane of forwarded messages.
    holds: Holds<StreamKey, StreamFrame>,
    /// Send proxies' global identities, and the one send proxy per identity:
    /// a task gets one name for a port however it reaches this node.
    proxy_global: BTreeMap<Name, GlobalId>,
    canonical: BTreeMap<GlobalId, Name>,
    /// Exported local ports' incarnations: unguessable, fixed while netmsg
    /// holds the name, so an identity names one port and cannot be forged.
    incarnations: BTreeMap<Name, u64>,
    identity_key: IdentityKey,
    next_incarnation: u64,
    next_marker: u64,
    /// For proxies that lead to the port's home through a hop: the hop's
    /// import ID at the home (where the hop forwards this node's messages, in
    /// this node's own lane).
    home_streams: BTreeMap<Name, HomeLane>,
    /// Messages this node sent through a hop, per (hop, home, the hop's stream at
    /// the home): its position in its lane there.
    through: BTreeMap<(PeerId, String, u64), u64>,
    /// Import ID per proxy name.
    proxy_import: FxHashMap<Name, u64>,
    /// One-shot proxy → the import of its port's send proxy from the same
    /// peer (the exporter said so): its message goes on that stream.
    once_along: FxHashMap<Name, u64>,
    /// Proxies that came back to the port set with messages queued (sent
    /// before what the set holds then), until their queue is seen empty.
    requeued: FxHashSet<Name>,
    /// Positions of destroyed proxies' messages, per port, for the next
    /// proxy of it (see `retire`).
    retired: BTreeMap<GlobalId, (u64, Vec<Dependency>)>,
    /// (generation, port) in the order retired; a stale generation is skipped.
    retired_order: std::collections::VecDeque<(u64, GlobalId)>,
    retired_generation: u64,
    /// (Upstream, port) where a proxy of the port, gone while another name
    /// for it stays, had written messages: taken in after the port moves on
    /// from the upstream, they come back in this node's lane, where an
    /// embargo counts only its own export's. An entry goes with the port's
    /// last name here.
    wrote_then_gone: Recent<(PeerId, GlobalId)>,
    /// Per `Moved` stream (peer, id) of a port not shortened here, while
    /// its queue is coming.
    queue_orders: BTreeMap<(PeerId, u64), QueueOrder>,
    /// Messages this node forwarded per (upstream, import id, lane).
    forwarded: BTreeMap<(PeerId, u64, Origin), u64>,
    /// Where each of a peer's own messages on the stream of export `id`
    /// went in its lane upstream, by (peer, id): runs of (k, position, count)
    /// — the peer's k-th message there was forwarded as its lane's
    /// position-th, and so on for `count` messages. A right coming home here
    /// with watermark w then waits upstream for the position of the w-th,
    /// not for whatever was forwarded by the time the right was handled
    /// (which may include messages the peer sent after the right left).
    forwarded_at: BTreeMap<(PeerId, u64), std::collections::VecDeque<ForwardRun>>,
    /// The era of each peer's lanes in what this node forwards: one per link.
    eras: BTreeMap<PeerId, u64>,
    /// Dependencies the next frame written on a proxy's stream carries.
    pending: BTreeMap<Name, Vec<Dependency>>,
    /// Streams whose export just ended, for their waits to be voided.
    closed: Vec<(PeerId, u64)>,
    /// References netmsg keeps per proxy for rights gone home.
    kept: BTreeMap<Name, u64>,
    /// Forwarders whose first messages are the queue their port had when
    /// its receive right left (see [`QueueCut`]).
    queue_cuts: BTreeMap<Name, QueueCut>,
    /// The streams written on, in order, while `queue_cuts` is not empty.
    write_log: Vec<(PeerId, u64)>,
    /// While a moved queue's message is encoded: its cut's start.
    cut: Option<usize>,
    /// Messages from the wire waiting for room in a full queue, by the
    /// kernel's ticket: the (peer, export id) stream each came on. Such a
    /// stream is stalled: nothing more is read from it until its sends are
    /// done, so the link's flow control holds the peer back.
    /// (With about the bytes of each message.)
    blocked: BTreeMap<SendTicket, (PeerId, u64, usize)>,
    /// Messages through a one-shot export that came on the stream of the
    /// peer's send right to the same port behind a message of that stream
    /// still waiting for room (the stream was read on past it): each goes in
    /// once that send is done, in stream order (one kernel's sender would
    /// have sent it only then).
    behind_sends: std::collections::VecDeque<BehindSend>,
    /// Sends a message began to wait behind since the driver last asked
    /// ([`Translator::take_behind_waits`]).
    behind_waits: Vec<SendTicket>,
    /// Streams (peer, import id) this node writes faster than the link takes
    /// them (the driver says so): their proxies are out of the port set, so
    /// messages wait in the proxy's queue and its senders block at its limit,
    /// and streams whose messages are forwarded onto them are stalled.
    congested: std::collections::BTreeSet<(PeerId, u64)>,
    /// Streams (peer, transport stream) this node writes nothing more on,
    /// after the frames it has made: the driver FINs them
    /// ([`Translator::take_finished`]).
    finished: Vec<(PeerId, u64)>,
    /// Ports whose receive right moved to a peer and that stay here as
    /// proxies of the peer's export (forwarders), with the port netmsg's
    /// no-senders requests on each arrive at: not the forwarder itself,
    /// whose messages (a task's notifications among them) all go on.
    forwarders: BTreeMap<Name, Name>,
    /// Forwarders that sent a message through a send-once right: at the
    /// hop it went into the port's queue, and on in the hop's own lane,
    /// where no flush marker of this node's follows it.
    sent_once: std::collections::BTreeSet<Name>,
    forwarder_of_notify: BTreeMap<Name, Name>,
    /// Forwarders with no senders left but send-once rights: released when
    /// the last of those is used (every one ends in a message here).
    draining: std::collections::BTreeSet<Name>,
    /// Ports that moved here keep the identity they had (by netmsg's name,
    /// while it holds one), and rights with that identity name the port
    /// (unless this node already had another name for it).
    adopted: BTreeMap<Name, GlobalId>,
    adopted_port: BTreeMap<GlobalId, Name>,
    /// Ports made by `Moved` frames on a node that already named the port
    /// (by netmsg's name, while it holds one): a second name for it here.
    second_names: std::collections::BTreeSet<Name>,
    /// Forwarders whose move let go of a pool (see `dissolve_pool`): the
    /// peer may keep returning rights for their import, so flush markers
    /// do not shorten them (see `marker_lanes`).
    pool_let_go: std::collections::BTreeSet<Name>,
    /// Ports made by a peer's `Moved` frame (peer, id) whose receive right
    /// no message has taken yet.
    unclaimed: BTreeMap<(PeerId, u64), Name>,
    /// What came for an unclaimed port, taken out of its queue as it came
    /// (it has no receiver yet; a full queue would stall its stream, and
    /// the message that claims it may wait on that stream), with the
    /// port's queue limit and sequence number to restore.
    staged: BTreeMap<Name, Staged>,
    /// Per moved port's export (peer, id): send-once rights netmsg made on
    /// it, one for each the peer's forwarder may still send through, so
    /// those messages arrive as through a send-once right.
    send_once_pool: BTreeMap<(PeerId, u64), Vec<Name>>,
    /// Per moved port's export (peer, id): send-once rights netmsg made on
    /// it, one for each right this node's tasks hold to its proxy of the
    /// port from that peer whose stand-in the peer let go (at a move here
    /// that did not shorten, see `dissolve_pool`): what tasks send through
    /// those comes back from the peer on `id`, in this node's lane.
    returning_pool: BTreeMap<(PeerId, u64), Vec<Name>>,
    /// Per forwarder: send-once notifications of pool rights netmsg let go
    /// of, queued on it, to drop (see `dissolve_pool`).
    swallow: BTreeMap<Name, Swallow>,
    /// Identities of this node's ports whose receive right moved away: a
    /// right to one is not dead for lack of an export here (bounded).
    moved_away: Recent<GlobalId>,
    /// Moved ports (by the peer's `Moved` stream) that a proxy of this node
    /// becomes once this node's earlier messages to it are back, and the
    /// proxies waiting so.
    embargoes: BTreeMap<(PeerId, u64), Embargoed>,
    embargoed: BTreeMap<Name, (PeerId, u64)>,
    /// netmsg's sends into a handed-over port still waiting for room.
    handover_sends: Vec<SendTicket>,
    /// Send-once rights to `notify` given back by cancelled dead-name
    /// requests, for the next request (at most `SPARE_NOTIFY_RIGHTS`): a
    /// one-shot export's right, used, then costs no port-deleted
    /// notification.
    spare_notify_rights: Vec<Name>,
    /// One-shot proxies used and empty, for the next one-shot imports (at
    /// most `SPARE_PROXIES`): a reply's proxy is then neither made nor
    /// destroyed.
    spare_proxies: Vec<Name>,
    /// Errors found where they cannot be returned (a queued message of a
    /// port moving away that netmsg cannot carry): `pump` reports them.
    reports: Vec<TranslateError>,
}

/// Route shortening with an embargo (protocol.md): a receive right moved
/// here from the node this node's send proxy (or forwarder) `proxy` of the
/// same port leads to. The port made for it (`staging`) takes what comes
/// on the moved port's stream; what local tasks send the proxy meanwhile is
/// `parked` (other peers' messages through it still go the old way, and
/// `waits` grows by them). Once every lane in `waits` is delivered that far (all this
/// node sent toward the port before is back), the proxy becomes the port:
/// the staging queue, then the parked messages, move into it, and the
/// receive right that moves is the proxy's, so tasks keep their one name.
#[derive(Debug)]
struct Embargoed {
    proxy: Name,
    staging: Name,
    global: GlobalId,
    mscount: u32,
    seqno: u32,
    qlimit: u32,
    waits: Vec<(StreamKey, u64)>,
    /// The sender's own lane position where the port's queue ends on the
    /// stream: what it relayed in other lanes after the move waits for it.
    queue_end: u64,
    /// A relayed frame waits for the queue (on `queue_sent`, which is then
    /// advanced once the queue is in or the embargo ends: without one, no
    /// record of it is made).
    relayed_held: bool,
    parked: Vec<Message>,
    /// Send-once rights the sender kept for the proxy (a forwarder) and
    /// destroyed at the move: the rights tasks here hold to the proxy stand
    /// for them once it is the port.
    send_once: u32,
    /// Messages this node sent through send-once rights to the proxy
    /// before the move and that came back since (each made a send-once
    /// right on the staging port to arrive through).
    own_send_once: u32,
    /// Calls of [`Translator::tick`] since a message last came on the moved
    /// port's stream.
    ticks: u32,
    /// Flush markers sent on the proxy's stream and not back yet: the proxy
    /// leads another way than the sender counted (through a third node, or
    /// another export of the sender's).
    markers: Vec<Marker>,
}

/// Where a node whose name for a moved port leads another way than the
/// sender counted writes its flush markers: the proxy's stream, and the
/// lanes it wrote there (None: its own).
#[derive(Debug)]
struct MarkerLanes {
    upstream: PeerId,
    import: u64,
    lanes: Vec<Option<Origin>>,
}

/// A flush marker on its way (see [`Embargoed`]).
#[derive(Debug)]
struct Marker {
    number: u64,
    /// The lane it was written in (None: this node's own).
    lane: Option<Origin>,
    /// Other peers' messages forwarded in that lane behind it: the hand-over
    /// waits for them too, once it is back.
    behind: u64,
}

/// Send-once notifications to drop on a forwarder: after `skip` more of its
/// messages, the next `drop` are netmsg's own (see `dissolve_pool`).
#[derive(Debug)]
struct Swallow {
    skip: u32,
    drop: usize,
}

/// An embargo that sees this many calls of [`Translator::tick`] with no
/// message on its moved port's stream in between is given up.
pub const EMBARGO_TICKS: u32 = 2;

#[derive(Debug)]
struct Staged {
    qlimit: u32,
    seqno: u32,
    queue: Vec<Message>,
}

/// The rights a message placed here holds until the kernel takes it (made
/// or moved out of netmsg's space; destroyed if the send fails): a few.
type HeldRights = SmallVec<[(Name, u8); 4]>;

/// A pseudo-lane of `Moved` stream `id` from `peer`: no origin node has an
/// empty name, so no real lane is one.
fn pseudo_lane(peer: &str, id: u64, era: u64) -> StreamKey {
    StreamKey {
        node: peer.into(),
        port: id,
        origin: Some(Origin {
            node: String::new(),
            era,
        }),
    }
}

/// A set that remembers at most [`MAX_RETIRED`] entries, forgetting the
/// oldest first. (The order keeps entries removed since, so one inserted
/// again may be forgotten early, as if evicted.)
#[derive(Debug)]
struct Recent<T> {
    set: std::collections::BTreeSet<T>,
    order: std::collections::VecDeque<T>,
}

impl<T> Default for Recent<T> {
    fn default() -> Self {
        Self {
            set: std::collections::BTreeSet::new(),
            order: std::collections::VecDeque::new(),
        }
    }
}

impl<T: Ord + Clone> Recent<T> {
    fn insert(&mut self, t: T) {
        if self.set.insert(t.clone()) {
            self.order.push_back(t);
            if self.order.len() > MAX_RETIRED {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    fn contains(&self, t: &T) -> bool {
        self.set.contains(t)
    }

    fn remove(&mut self, t: &T) {
        self.set.remove(t);
    }

    fn retain(&mut self, keep: impl FnMut(&T) -> bool) {
        self.set.retain(keep);
    }
}

/// A moved port not shortened here whose queue, counted by the sender
/// (`queued`), has not all come: what the sender relayed in others' lanes
/// after the move waits for it, as under an embargo.
#[derive(Debug)]
struct QueueOrder {
    /// The sender's own lane position where the queue ends.
    end: u64,
    /// A relayed frame waits on `queue_sent`.
    waiting: bool,
    /// Ticks of the embargo clock with relayed frames waiting and nothing
    /// of the queue coming.
    ticks: u32,
}

/// The pseudo-lane that frames relayed on `Moved` stream `id` from `peer`
/// under an embargo, or a [`QueueOrder`], wait on: advanced to 1 once the
/// port's queue has come in the sender's own lane, or the wait is given up.
fn queue_sent(peer: &str, id: u64) -> StreamKey {
    pseudo_lane(peer, id, u64::MAX - 1)
}

/// The pseudo-lane a moved port's receive right waits on: advanced to 1 once
/// the port of `Moved` stream `id` from `peer` is ready (made, and handed
/// over when there is an embargo).
fn port_ready(peer: &str, id: u64) -> StreamKey {
    pseudo_lane(peer, id, u64::MAX)
}

/// The secret incarnations are derived from.
struct IdentityKey(ring::hmac::Key);

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityKey(..)")
    }
}

impl Translator {
    /// netmsg's task and port set on `kernel`; `identity_secret` (random, from
    /// the caller) keys the incarnations of exported ports.
    pub fn new(
        kernel: &mut Kernel,
        node: &str,
        identity_secret: &[u8],
    ) -> Result<Self, TranslateError> {
        let task = kernel.create_task();
        let set = kr("port set", kernel.port_allocate(task, PortRight::PortSet))?;
        let notify = kr(
            "notify port",
            kernel.port_allocate(task, PortRight::Receive),
        )?;
        kr("notify port", kernel.port_move_member(task, notify, set))?;
        Ok(Self {
            node: node.to_owned(),
            task,
            set,
            notify,
            peers: BTreeMap::new(),
            peer_names: Vec::new(),
            peer_ids: FxHashMap::default(),
            proxies: FxHashMap::default(),
            written: FxHashMap::default(),
            once_written: FxHashMap::default(),
            once_delivered: FxHashMap::default(),
            delivered: BTreeMap::new(),
            holds: Holds::new(),
            proxy_global: BTreeMap::new(),
            canonical: BTreeMap::new(),
            incarnations: BTreeMap::new(),
            identity_key: IdentityKey(ring::hmac::Key::new(
                ring::hmac::HMAC_SHA256,
                identity_secret,
            )),
            next_incarnation: 0,
            next_marker: 0,
            home_streams: BTreeMap::new(),
            through: BTreeMap::new(),
            forwarded: BTreeMap::new(),
            forwarded_at: BTreeMap::new(),
            proxy_import: FxHashMap::default(),
            once_along: FxHashMap::default(),
            requeued: FxHashSet::default(),
            retired: BTreeMap::new(),
            retired_order: std::collections::VecDeque::new(),
            retired_generation: 0,
            wrote_then_gone: Recent::default(),
            queue_orders: BTreeMap::new(),
            eras: BTreeMap::new(),
            pending: BTreeMap::new(),
            kept: BTreeMap::new(),
            queue_cuts: BTreeMap::new(),
            write_log: Vec::new(),
            cut: None,
            closed: Vec::new(),
            blocked: BTreeMap::new(),
            behind_sends: std::collections::VecDeque::new(),
            behind_waits: Vec::new(),
            congested: std::collections::BTreeSet::new(),
            finished: Vec::new(),
            forwarders: BTreeMap::new(),
            sent_once: std::collections::BTreeSet::new(),
            forwarder_of_notify: BTreeMap::new(),
            draining: std::collections::BTreeSet::new(),
            adopted: BTreeMap::new(),
            adopted_port: BTreeMap::new(),
            unclaimed: BTreeMap::new(),
            staged: BTreeMap::new(),
            second_names: std::collections::BTreeSet::new(),
            pool_let_go: std::collections::BTreeSet::new(),
            send_once_pool: BTreeMap::new(),
            returning_pool: BTreeMap::new(),
            swallow: BTreeMap::new(),
            moved_away: Recent::default(),
            embargoes: BTreeMap::new(),
            embargoed: BTreeMap::new(),
            handover_sends: Vec::new(),
            spare_notify_rights: Vec::new(),
            spare_proxies: Vec::new(),
            reports: Vec::new(),
        })
    }

    /// netmsg's own task (for tests: what it holds).
    pub fn task(&self) -> TaskId {
        self.task
    }

    /// True when no export, import or proxy remains for any peer.
    pub fn is_idle(&self) -> bool {
        self.proxies.is_empty()
            && self.once_along.is_empty()
            && self.requeued.is_empty()
            && self.unclaimed.is_empty()
            && self.staged.is_empty()
            && self.send_once_pool.is_empty()
            && self.returning_pool.is_empty()
            && self.swallow.is_empty()
            && self.queue_cuts.is_empty()
            && self.pool_let_go.is_empty()
            && self.sent_once.is_empty()
            && self.holds.held() == 0
            && self.blocked.is_empty()
            && self.behind_sends.is_empty()
            && self.embargoes.is_empty()
            && self.queue_orders.is_empty()
            && self.peers.values().all(|p| p.ledger.is_empty())
    }

    /// Whether frames are held for what they wait on: a stream stalled on
    /// a full queue may be read on for them (see [`Translator::stalled`]).
    pub fn holding(&self) -> bool {
        self.holds.held() > 0
    }

    /// Whether an embargo waits, or frames relayed after a move wait for a
    /// moved queue (the driver then calls [`Translator::tick`] now and then).
    pub fn embargoes_pending(&self) -> bool {
        !self.embargoes.is_empty() || self.queue_orders.values().any(|q| q.waiting)
    }

    /// Time passing, for embargoes (the driver calls it every
    /// `EMBARGO_TICK`, the simulator when nothing else can happen): an
    /// embargo that [`EMBARGO_TICKS`] calls found without a message on its
    /// moved port's stream in between is given up (the port keeps the name
    /// it was made with). Its lanes may wait on frames another node holds
    /// behind an embargo of its own that waits on this node: a cycle that no
    /// node sees whole. Frames relayed after a move that waited as many
    /// calls for the moved queue, with none of it coming, go on.
    pub fn tick(&mut self, k: &mut Kernel) -> Result<Vec<Out>, TranslateError> {
        let mut out = Vec::new();
        let mut stale = Vec::new();
        for (key, e) in &mut self.embargoes {
            e.ticks += 1;
            if e.ticks >= EMBARGO_TICKS {
                stale.push(*key);
            }
        }
        // (Relayed frames waiting for a queue that may wait on them, across
        // nodes: they go on.)
        let mut stale_queues = Vec::new();
        for (key, q) in &mut self.queue_orders {
            if q.waiting {
                q.ticks += 1;
                if q.ticks >= EMBARGO_TICKS {
                    stale_queues.push(*key);
                }
            }
        }
        for key in &stale_queues {
            self.end_queue_order(*key);
        }
        if stale.is_empty() {
            if !stale_queues.is_empty() {
                self.handle_freed(k, &mut out)?;
            }
            return Ok(out);
        }
        for key in stale {
            self.abandon_embargo(k, key, None, &mut out)?;
        }
        self.handle_freed(k, &mut out)?;
        Ok(out)
    }

    /// The streams (peer, transport stream as [`stream_of`] names them) this
    /// node is done writing on since the last call, after every frame made so
    /// far, onto `into`: the driver FINs them (`docs/protocol.md`, "Port
    /// streams").
    pub fn take_finished(&mut self, into: &mut Vec<(PeerId, u64)>) {
        into.append(&mut self.finished);
    }

    /// Why the driver must not read more from stream `id` of `peer` now, if
    /// it must not: a message from it waits for room in a full queue, or its
    /// messages are forwarded onto a congested stream.
    pub fn stalled(&mut self, k: &mut Kernel, peer: PeerId, id: u64) -> Option<Stall> {
        self.reap_sends(k);
        let mut blocked = self
            .blocked
            .iter()
            .filter(|(_, (p, i, _))| *p == peer && *i == id)
            .map(|(&ticket, &(_, _, bytes))| (ticket, bytes));
        if let Some((ticket, bytes)) = blocked.next() {
            // Unless a held frame waits for a later message of the stream:
            // one kernel's sender would have blocked before sending what
            // that frame carries, and a receive right in it may be what
            // drains the full queue. Read on then (each message read is
            // another blocked send, admitted in order) up to a bound, as
            // the waits are the peers' word.
            let name = self.peer_name(peer);
            let waited = self.holds.waited_on(|s| *s.node == *name && s.port == id);
            if waited {
                let (count, bytes) =
                    blocked.fold((1, bytes), |(n, b), (_, more)| (n + 1, b + more));
                if count < MAX_READ_ON && bytes < MAX_READ_ON_BYTES {
                    return None;
                }
            }
            return Some(Stall::Send(ticket));
        }
        // (Asked after every frame: nothing to look up while nothing is
        // congested.)
        if self.congested.is_empty() {
            return None;
        }
        let target = self.peers.get(&peer)?.ledger.export_target(id)?;
        let upstream = self.relay_of(&target)?;
        self.congested
            .contains(&upstream)
            .then_some(Stall::Congested)
    }

    /// Frames this node writes on stream `id` to `peer` pile up (`on`), or
    /// have all been written (`!on`): the stream's proxy leaves netmsg's port
    /// set, or comes back to it.
    pub fn set_congested(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        id: u64,
        on: bool,
    ) -> Result<(), TranslateError> {
        let key = (peer, id);
        let changed = if on {
            self.congested.insert(key)
        } else {
            self.congested.remove(&key)
        };
        if !changed {
            return Ok(());
        }
        // (The ledger's live proxy of the import, not a scan of every proxy.)
        let proxy = self
            .peers
            .get(&peer)
            .and_then(|p| p.proxy_name.get(&p.ledger.proxy_of(id)?))
            .copied()
            .filter(|name| {
                self.proxies.get(name).is_some_and(|(p, _)| *p == peer)
                    && self.proxy_import.get(name) == Some(&id)
            });
        if let Some(name) = proxy {
            if !on && k.queued(self.task, name).is_ok_and(|n| n > 0) {
                self.requeued.insert(name);
            }
            let set = if on { NAME_NULL } else { self.set };
            kr(
                "proxy set membership",
                k.port_move_member(self.task, name, set),
            )?;
        }
        Ok(())
    }

    /// Forgets the blocked sends the kernel has finished (delivered, or
    /// destroyed with their port), taking their completions.
    fn reap_sends(&mut self, k: &mut Kernel) {
        if !self.blocked.is_empty() {
            self.blocked.retain(|&ticket, _| !k.send_completed(ticket));
        }
        if !self.handover_sends.is_empty() {
            self.handover_sends.retain(|&t| !k.send_completed(t));
        }
    }

    /// Delivers the messages waiting behind sends of their streams that are
    /// now done, each stream's in the order they came.
    pub fn deliver_behind_sends(
        &mut self,
        k: &mut Kernel,
        out: &mut Vec<Out>,
    ) -> Result<(), TranslateError> {
        if self.behind_sends.is_empty() {
            return Ok(());
        }
        self.reap_sends(k);
        let mut i = 0;
        while i < self.behind_sends.len() {
            let b = &self.behind_sends[i];
            let first_of_stream = !self
                .behind_sends
                .iter()
                .take(i)
                .any(|e| e.peer == b.peer && e.stream == b.stream);
            if !first_of_stream || self.blocked.contains_key(&b.after) {
                i += 1;
                continue;
            }
            let b = self.behind_sends.remove(i).expect("in range");
            if let Some(target) = self
                .peers
                .get(&b.peer)
                .and_then(|p| p.ledger.export_target(b.once))
            {
                self.deliver_to(k, b.peer, b.once, target, b.message, out)?;
            }
        }
        Ok(())
    }

    /// The sends messages began to wait behind since the last call: once
    /// each is done, [`Translator::deliver_behind_sends`] lets them in.
    pub fn take_behind_waits(&mut self) -> Vec<SendTicket> {
        std::mem::take(&mut self.behind_waits)
    }

    fn peer(&mut self, peer: PeerId) -> &mut Peer {
        self.peers.entry(peer).or_insert_with(|| Peer {
            ledger: Ledger::new(),
            proxy_name: FxHashMap::default(),
        })
    }

    /// The handle of the peer named `name` (a link's node), made the first
    /// time. Names from inside frames are looked up with
    /// [`Translator::known_peer`] instead: only links add names.
    pub fn peer_id(&mut self, name: &str) -> PeerId {
        if let Some(&id) = self.peer_ids.get(name) {
            return id;
        }
        let id = PeerId(u32::try_from(self.peer_names.len()).expect("fewer than 2^32 peers"));
        self.peer_names.push(name.into());
        self.peer_ids.insert(name.to_owned(), id);
        id
    }

    /// The handle of peer `name`, if it has one.
    pub fn known_peer(&self, name: &str) -> Option<PeerId> {
        self.peer_ids.get(name).copied()
    }

    /// The name of `peer` (a handle this translator gave).
    pub fn peer_name(&self, peer: PeerId) -> &str {
        &self.peer_names[peer.0 as usize]
    }

    /// The peer's name, shared (lane keys carry it without a copy).
    fn peer_shared(&self, peer: PeerId) -> std::sync::Arc<str> {
        self.peer_names[peer.0 as usize].clone()
    }

    /// Bootstrap: a send right from `task`'s `name` (`disposition` COPY_SEND
    /// or MAKE_SEND) is offered to `peer`; the export ID and the port's
    /// identity, for the peer's [`Translator::bootstrap_import`].
    pub fn bootstrap_export(
        &mut self,
        k: &mut Kernel,
        peer: &str,
        task: TaskId,
        name: Name,
        disposition: u8,
    ) -> Result<(u64, GlobalId), TranslateError> {
        let peer = self.peer_id(peer);
        let (mine, _) = kr(
            "bootstrap right",
            k.port_extract_right(task, name, disposition, self.task),
        )?;
        let (id, _) = self.export_send(k, peer, mine)?;
        let global = match self.proxy_global.get(&mine) {
            Some(g) => g.clone(),
            None => self.local_global(mine),
        };
        Ok((id, global))
    }

    /// Bootstrap: the peer's export `id` of port `global` becomes a send right
    /// in `task` (one name for the port, as for any right received).
    pub fn bootstrap_import(
        &mut self,
        k: &mut Kernel,
        peer: &str,
        id: u64,
        global: GlobalId,
        task: TaskId,
    ) -> Result<(Name, Vec<Out>), TranslateError> {
        let peer = self.peer_id(peer);
        let mut out = Vec::new();
        let right = WireRight {
            form: Form::Send,
            reference: WireRef::SenderExport {
                id,
                global,
                once_exports: Vec::new(),
            },
            watermark: 0,
            after: Vec::new(),
            home_stream: None,
        };
        check_rights(&WireMessage {
            id: 0,
            other_bits: 0,
            marker: false,
            dest_form: Form::Send,
            once: None,
            reply: Some(right.clone()),
            origin: None,
            dependencies: Vec::new(),
            items: Vec::new(),
        })
        .map_err(|reason| TranslateError::Protocol {
            peer: self.peer_name(peer).to_owned(),
            reason,
        })?;
        let (mine, disposition) = self.import_right(k, peer, &right, &mut out)?;
        if mine == NAME_DEAD {
            return Ok((NAME_DEAD, out));
        }
        let (name, _) = kr(
            "bootstrap right",
            k.port_extract_right(self.task, mine, disposition, task),
        )?;
        Ok((name, out))
    }

    // ----- local → peer ------------------------------------------------------------

    /// Forwards everything queued on netmsg's ports (the frames onto `out`);
    /// handles notifications.
    pub fn pump(&mut self, k: &mut Kernel, out: &mut Vec<Out>) -> Vec<TranslateError> {
        self.reap_sends(k);
        let mut errors = Vec::new();
        if !self.behind_sends.is_empty() {
            if let Err(e) = self.deliver_behind_sends(k, out) {
                errors.push(e);
            }
        }
        let opts = RecvOptions {
            max_size: None,
            large: false,
        };
        while let Ok(Some(msg)) = k.receive(self.task, self.set, opts) {
            if let Err(e) = self.on_local(k, msg, out) {
                errors.push(e);
            }
        }
        errors.append(&mut self.reports);
        errors
    }

    /// The port set netmsg receives on (proxies and its notify port).
    pub fn port_set(&self) -> Name {
        self.set
    }

    fn on_local(
        &mut self,
        k: &mut Kernel,
        msg: Message,
        out: &mut Vec<Out>,
    ) -> Result<(), TranslateError> {
        let on = msg.local_port;
        let kernel_sent = kernel_sent(&msg);
        if on == self.notify {
            return self.on_notify(k, &msg, out);
        }
        if let Some(key) = self.embargoed.get(&on) {
            // Parked until the port is handed over.
            if proxy_own_notification(&msg, self.forwarders.contains_key(&on)) {
                self.destroy_received(k, &msg);
            } else if let Some(e) = self.embargoes.get_mut(key) {
                e.parked.push(msg);
            }
            return Ok(());
        }
        if let Some(&forwarder) = self.forwarder_of_notify.get(&on) {
            if self.embargoed.contains_key(&forwarder) {
                // (It becomes the port: no release.)
                self.destroy_received(k, &msg);
                return Ok(());
            }
            if kernel_sent && msg.id == notify_id::NO_SENDERS {
                let mscount = first_u32(&msg).unwrap_or(0);
                return self.forwarder_unused(k, forwarder, Some(mscount), out);
            }
            // (The send-once notification of a replaced request's right.)
            self.destroy_received(k, &msg);
            return Ok(());
        }
        let Some((peer, proxy)) = self.proxies.get(&on).cloned() else {
            self.destroy_received(k, &msg);
            return Ok(());
        };
        if self.forwarders.contains_key(&on) {
            if self.swallowed(k, &msg) {
                return Ok(());
            }
            // Everything a forwarder receives is the moved port's: messages
            // through send-once rights and notifications included.
            match self.peers[&peer].ledger.proxy_import_id(proxy.handle) {
                Some(id) => self.forward_local(k, peer, id, msg, out)?,
                None => self.destroy_received(k, &msg),
            }
            if self.draining.contains(&on) {
                self.forwarder_unused(k, on, None, out)?;
            }
            return Ok(());
        }
        // Tasks hold only send rights to a send proxy: what comes through a
        // send-once right was made by netmsg for its no-senders requests, and
        // anything but the notification is the send-once notification of a
        // replaced request's right.
        if !proxy.once
            && msg.local_type() == msg_type::PORT_SEND_ONCE
            && msg.id != notify_id::NO_SENDERS
        {
            self.destroy_received(k, &msg);
            return Ok(());
        }
        if !proxy.once && kernel_sent && msg.id == notify_id::NO_SENDERS {
            let mscount = first_u32(&msg).unwrap_or(0);
            let effects = self
                .peer(peer)
                .ledger
                .no_senders(proxy.handle, u64::from(mscount));
            if effects.is_empty() {
                // Stale: rights were made since; ask again.
                return self.arm_no_senders(k, peer, proxy.handle);
            }
            return self.apply(k, peer, effects, out);
        }
        if proxy.once && kernel_sent && msg.id == notify_id::SEND_ONCE && msg.body.is_empty() {
            let effects = self.peer(peer).ledger.once_destroyed(proxy.handle);
            return self.apply(k, peer, effects, out);
        }
        let (id, effects) = if proxy.once {
            self.peer(peer)
                .ledger
                .once_used(proxy.handle)
                .unwrap_or_default()
        } else {
            let id = self.peers[&peer].ledger.proxy_import_id(proxy.handle);
            (id.unwrap_or(0), Effects::new())
        };
        if id == 0 {
            self.destroy_received(k, &msg);
            return Ok(());
        }
        if proxy.once && !effects.is_empty() {
            // A message netmsg cannot carry is destroyed, and with it the
            // send-once right it was sent with: the home side must notify.
            let destroyed = Out {
                peer,
                id,
                frame: StreamFrame::Release(Frame::SendOnceDestroyed { id }),
            };
            let along = match self.once_along.get(&on) {
                Some(&e) => self.port_stream(k, peer, e),
                None => None,
            };
            let (frame, result) = match self.outgoing(k, peer, msg, out) {
                Ok(mut w) => match along {
                    Some((e, proxy)) => {
                        // On the stream of the node's send right to the port,
                        // in its place among those messages (what waits to
                        // follow the proxy's next message waits for it).
                        w.once = std::num::NonZeroU64::new(id);
                        if let Some(deps) = self.pending.remove(&proxy) {
                            w.dependencies.extend(deps);
                        }
                        self.wrote(peer, e);
                        *self.once_written.entry((peer, e)).or_insert(0) += 1;
                        out.push(Out {
                            peer,
                            id: e,
                            frame: StreamFrame::Message(w),
                        });
                        return self.apply(k, peer, effects, out);
                    }
                    None => (StreamFrame::Message(w), Ok(())),
                },
                Err(e) => (destroyed.frame.clone(), Err(e)),
            };
            // (The stream's only frame: no count is kept for it.)
            out.push(Out { frame, ..destroyed });
            self.apply(k, peer, effects, out)?;
            return result;
        }
        self.forward_local(k, peer, id, msg, out)
    }

    /// A message that reached send proxy (or forwarder) `msg.local_port`,
    /// whose import is `id`, leaves on its stream to `peer`.
    fn forward_local(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        id: u64,
        msg: Message,
        out: &mut Vec<Out>,
    ) -> Result<(), TranslateError> {
        let on = msg.local_port;
        // A forwarder's message through a send-once right goes, at the hop,
        // through the port's queue (a right of its pool), and on from there
        // in the hop's own lane, not in this node's.
        let via_pool =
            msg.local_type() == msg_type::PORT_SEND_ONCE && self.forwarders.contains_key(&on);
        // A moved queue's message: its rights' positions stop at the move.
        self.cut = self.queue_cuts.get_mut(&on).map(|cut| {
            cut.left -= 1;
            cut.start
        });
        let wire = self.outgoing(k, peer, msg, out);
        self.cut = None;
        if self.queue_cuts.get(&on).is_some_and(|cut| cut.left == 0) {
            self.end_queue_cut(on);
        }
        let mut wire = wire?;
        // The first message on the stream after a right reached this proxy by
        // another path waits, at the home, for that path's earlier messages.
        if let Some(deps) = self.pending.remove(&on) {
            wire.dependencies.extend(deps);
        }
        self.wrote(peer, id);
        if via_pool {
            self.sent_once.insert(on);
        } else {
            self.went_through(peer, on);
        }
        let frame = StreamFrame::Message(wire);
        out.push(Out { peer, id, frame });
        Ok(())
    }

    /// Live import `e` from `peer` and its proxy, when a one-shot proxy's
    /// message can go on its stream in its place: the proxy leads to the
    /// port's home directly, is no forwarder and is not embargoed, and what
    /// is queued on it was sent after the message. (netmsg takes messages
    /// from its port set in the order they were sent, so that holds unless
    /// the proxy was out of the set for a congested stream, or came back to
    /// it with messages queued: those join behind the set's.)
    fn port_stream(&mut self, k: &Kernel, peer: PeerId, e: u64) -> Option<(u64, Name)> {
        let p = self.peers.get(&peer)?;
        let &proxy = p.proxy_name.get(&p.ledger.proxy_of(e)?)?;
        let direct = self
            .proxy_global
            .get(&proxy)
            .is_some_and(|g| g.home == self.peer_name(peer));
        if !direct
            || self.forwarders.contains_key(&proxy)
            || self.embargoed.contains_key(&proxy)
            || self.congested.contains(&(peer, e))
        {
            return None;
        }
        if k.queued(self.task, proxy).ok()? == 0 {
            self.requeued.remove(&proxy);
        } else if self.requeued.contains(&proxy) {
            return None;
        }
        Some((e, proxy))
    }

    /// Forwarder `forwarder` may have no users left: its no-senders came (with
    /// `mscount`), or, while it waited for send-once rights, one was used.
    /// Once neither send nor send-once rights remain, and its queue is
    /// drained, its import is released like any proxy's.
    fn forwarder_unused(
        &mut self,
        k: &mut Kernel,
        forwarder: Name,
        mscount: Option<u32>,
        out: &mut Vec<Out>,
    ) -> Result<(), TranslateError> {
        let Some((peer, proxy)) = self.proxies.get(&forwarder).cloned() else {
            return Ok(());
        };
        // What is queued was sent before: it goes first.
        let opts = RecvOptions {
            max_size: None,
            large: false,
        };
        self.draining.remove(&forwarder);
        let id = self.peers[&peer].ledger.proxy_import_id(proxy.handle);
        while let Ok(Some(m)) = k.receive(self.task, forwarder, opts) {
            if self.swallowed(k, &m) {
                continue;
            }
            match id {
                Some(id) => self.forward_local(k, peer, id, m, out)?,
                None => self.destroy_received(k, &m),
            }
        }
        let status = kr(
            "forwarder status",
            k.port_get_receive_status(self.task, forwarder),
        )?;
        if status.srights {
            // Rights were made since (which asked for no-senders again).
            return Ok(());
        }
        if status.sorights > 0 {
            self.draining.insert(forwarder);
            return Ok(());
        }
        let mscount = mscount.unwrap_or(status.mscount);
        let effects = self
            .peer(peer)
            .ledger
            .no_senders(proxy.handle, u64::from(mscount));
        if effects.is_empty() {
            return self.arm_no_senders(k, peer, proxy.handle);
        }
        self.apply(k, peer, effects, out)
    }

    fn on_notify(
        &mut self,
        k: &mut Kernel,
        msg: &Message,
        out: &mut Vec<Out>,
    ) -> Result<(), TranslateError> {
        if msg.id != notify_id::DEAD_NAME {
            // PORT_DELETED after netmsg released an export: nothing to do.
            return Ok(());
        }
        let Some(name) = first_u32(msg) else {
            return Ok(());
        };
        // The notification's own reference on the dead name.
        let _ = k.port_mod_refs(self.task, name, PortRight::DeadName as u32, -1);
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in peers {
            let ledger = &mut self.peer(peer).ledger;
            let once_dead = ledger.once_export_of(u64::from(name)).is_some();
            let effects = ledger.port_died(u64::from(name));
            if once_dead {
                // A dead send-once right can only be dropped.
                let _ = k.port_mod_refs(self.task, name, PortRight::DeadName as u32, -1);
            }
            // What is held for the port is destroyed when handled, and what
            // it waits for may never come (destroyed on its way, at a hop
            // that heard of the death first): it goes now.
            let dead: Vec<u64> = effects
                .iter()
                .filter_map(|e| match e {
                    Effect::Send(Frame::Dead { id }) => Some(*id),
                    _ => None,
                })
                .collect();
            self.apply(k, peer, effects, out)?;
            if !dead.is_empty() {
                let node = &*self.peer_names[peer.0 as usize];
                self.holds
                    .port_died(|l| *l.node == *node && dead.contains(&l.port));
            }
        }
        self.forget_if_freed(k, name);
        self.handle_freed(k, out)
    }

    /// The wire form of a message netmsg received on a proxy for `peer`.
    /// A receive right in it moves (`export_receive`), with its `Moved`
    /// frame in `out`.
    fn outgoing(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        msg: Message,
        out: &mut Vec<Out>,
    ) -> Result<WireMessage, TranslateError> {
        // (Checked before any right leaves: a moved receive right cannot be
        // taken back.)
        if msg.remote_type() == msg_type::PORT_RECEIVE {
            self.destroy_received(k, &msg);
            return Err(TranslateError::Unsupported {
                id: msg.id,
                reason: "a receive right as the reply port",
            });
        }
        if msg
            .body
            .iter()
            .any(|i| matches!(i.payload, Payload::Address(_)))
        {
            self.destroy_received(k, &msg);
            return Err(TranslateError::Unsupported {
                id: msg.id,
                reason: "out-of-line region without its bytes",
            });
        }
        let dest_form = if msg.local_type() == msg_type::PORT_SEND_ONCE {
            Form::SendOnce
        } else {
            Form::Send
        };
        let reply = match msg.remote_type() {
            0 => None,
            t => Some(self.export_right(k, peer, msg.remote_port, t, out)?),
        };
        let (id, bits) = (msg.id, msg.bits);
        let mut items = Vec::with_capacity(msg.body.len());
        for item in msg.body {
            items.push(match &item.payload {
                Payload::Names(names) => {
                    let form = Form::from_msg_type(item.type_name).unwrap_or(Form::Send);
                    let mut rights = Vec::with_capacity(names.len());
                    for &n in names {
                        rights.push(self.export_right(k, peer, n, item.type_name, out)?);
                    }
                    WireItem::Rights {
                        form,
                        inline: item.inline,
                        longform: item.longform,
                        deallocate: item.deallocate,
                        rights,
                    }
                }
                Payload::Bytes(_) => WireItem::from_data_item(item).expect("a data item"),
                Payload::Address(_) => {
                    return Err(TranslateError::Unsupported {
                        id,
                        reason: "out-of-line region without its bytes",
                    })
                }
            });
        }
        Ok(WireMessage {
            id,
            other_bits: bits & !(msgh_bits::PORTS_MASK | msgh_bits::COMPLEX),
            marker: false,
            dest_form,
            once: None,
            reply,
            origin: None,
            dependencies: Vec::new(),
            items,
        })
    }

    /// A right netmsg received (name in its space, received type `t`) leaves
    /// for `peer`. A right going home carries its proxy's pending
    /// dependencies, a send right of a proxy to a third node where the
    /// messages sent through the proxy stand at the port's home.
    fn export_right(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        name: Name,
        t: u8,
        out: &mut Vec<Out>,
    ) -> Result<WireRight, TranslateError> {
        self.export_right_as(k, peer, name, t, true, out)
    }

    /// [`Translator::export_right`]; a send-once right to one of this node's
    /// one-shot proxies of `peer`'s exports goes home as that export
    /// (`WireRef::OnceHome`) only if `once_home` (a moved port's notification
    /// requests travel as one-shot exports of this node's).
    fn export_right_as(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        name: Name,
        t: u8,
        once_home: bool,
        out: &mut Vec<Out>,
    ) -> Result<WireRight, TranslateError> {
        if t == msg_type::PORT_RECEIVE && name != NAME_NULL && name != NAME_DEAD {
            return self.export_receive(k, peer, name, out);
        }
        let form = Form::from_msg_type(t).unwrap_or(Form::Send);
        // A right that died while netmsg held it (in a message parked under
        // an embargo) leaves as what it is now.
        if name != NAME_NULL
            && name != NAME_DEAD
            && k.port_type(self.task, name)
                .is_ok_and(|t| t & port_type::DEAD_NAME != 0 && t & port_type::RECEIVE == 0)
        {
            let _ = k.port_mod_refs(self.task, name, PortRight::DeadName as u32, -1);
            self.forget_if_freed(k, name);
            return Ok(WireRight {
                form,
                reference: WireRef::Dead,
                watermark: 0,
                after: Vec::new(),
                home_stream: None,
            });
        }
        let mut watermark = 0;
        let mut after = Vec::new();
        let mut home_stream = None;
        let reference = if name == NAME_NULL {
            WireRef::Null
        } else if name == NAME_DEAD {
            WireRef::Dead
        } else if form == Form::Send {
            match self.proxies.get(&name).cloned() {
                Some((p, proxy)) if p == peer && !proxy.once => {
                    let handle = proxy.handle;
                    match self.peer(peer).ledger.send_home(handle) {
                        // netmsg keeps the reference until HomeArrived.
                        Some(id) => {
                            *self.kept.entry(name).or_insert(0) += 1;
                            watermark = self.written_before_cut(peer, id);
                            after.extend(self.pending.get(&name).into_iter().flatten().cloned());
                            WireRef::ReceiverExport { id }
                        }
                        None => WireRef::Dead,
                    }
                }
                Some((upstream, proxy)) if !proxy.once && self.proxy_global.contains_key(&name) => {
                    let (id, _) = self.export_send(k, peer, name)?;
                    let global = self.proxy_global[&name].clone();
                    after.extend(self.pending.get(&name).into_iter().flatten().cloned());
                    let import = self.peers[&upstream].ledger.proxy_import_id(proxy.handle);
                    if let Some(import) = import {
                        after.extend(self.position_through(upstream, import, name, &global));
                        if self.leads_home(name, upstream, &global) {
                            home_stream = Some(HomeLane {
                                home: self.peer_name(upstream).to_owned(),
                                stream: import,
                                era: self.era(peer),
                            });
                        }
                    }
                    WireRef::SenderExport {
                        id,
                        global,
                        once_exports: Vec::new(),
                    }
                }
                _ => {
                    let (id, new) = self.export_send(k, peer, name)?;
                    let once_exports = if new {
                        self.once_exports_of(k, peer, name)
                    } else {
                        Vec::new()
                    };
                    WireRef::SenderExport {
                        id,
                        global: self.local_global(name),
                        once_exports,
                    }
                }
            }
        } else if let Some(id) = once_home
            .then(|| self.once_going_home(k, peer, name, out))
            .transpose()?
            .flatten()
        {
            WireRef::OnceHome { id }
        } else {
            let id = self.peer(peer).ledger.export_send_once(u64::from(name));
            self.request_dead_name(k, name)?;
            // (What the peer sends through the right then keeps its place
            // among what it sends through its send right to the port.)
            let ledger = &self.peers[&peer].ledger;
            let port_stream = ledger
                .has_send_exports()
                .then(|| k.send_name_of(self.task, name))
                .flatten()
                .and_then(|port| ledger.live_export(u64::from(port)));
            WireRef::OnceExport { id, port_stream }
        };
        Ok(WireRight {
            form,
            reference,
            watermark,
            after,
            home_stream,
        })
    }

    /// The receive right netmsg received as `name` moves to `peer`
    /// (forwarding first, DESIGN §4.3): the port's state and identity go in
    /// a `Moved` frame, the first on a stream whose ID this node chooses; its
    /// no-senders request travels as a send-once right in the right; the
    /// port stays here as a forwarder, a proxy of the peer's export of it, so
    /// what is queued on it and every later message to it follow, in order.
    fn export_receive(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        name: Name,
        out: &mut Vec<Out>,
    ) -> Result<WireRight, TranslateError> {
        let mut status = kr("receive status", k.port_get_receive_status(self.task, name))?;
        if status.msgcount >= status.qlimit {
            // Senders waiting for room (netmsg's own among them, for
            // messages from the wire) join the queue that goes with the
            // move, in the order they blocked: netmsg, the receiver now,
            // would let them in next anyway. Let in later, they would go on
            // behind the queue's end, where the peer no longer holds its
            // tasks' later messages back.
            let limit = status.qlimit;
            kr(
                "queue limit raised",
                k.port_set_qlimit(self.task, name, mach::types::QLIMIT_MAX),
            )?;
            kr("queue limit", k.port_set_qlimit(self.task, name, limit))?;
            status = kr("receive status", k.port_get_receive_status(self.task, name))?;
        }
        let no_senders = self.take_request(k, peer, name, notify_id::NO_SENDERS, out)?;
        // (Left on the forwarder, it would hand the forwarder to the task
        // that asked when netmsg lets it go.)
        let port_destroyed = self.take_request(k, peer, name, notify_id::PORT_DESTROYED, out)?;
        let global = self.local_global(name);
        let embargo = self.embargo_for(peer, name);
        self.forget_adoption(name);
        if global.home == self.node {
            // (Bounded: an identity forgotten makes a late right to it a
            // dead name, see protocol.md.)
            self.moved_away.insert(global.clone());
        }
        let (id, handle) = self.peer(peer).ledger.import_moved();
        // The forwarder counts only the rights netmsg makes on it from now.
        kr("forwarder mscount", k.port_set_mscount(self.task, name, 0))?;
        let notify = kr(
            "forwarder notify port",
            k.port_allocate(self.task, PortRight::Receive),
        )?;
        kr(
            "forwarder notify into set",
            k.port_move_member(self.task, notify, self.set),
        )?;
        kr(
            "forwarder into set",
            k.port_move_member(self.task, name, self.set),
        )?;
        self.forwarders.insert(name, notify);
        self.forwarder_of_notify.insert(notify, name);
        self.proxy_import.insert(name, id);
        self.peer(peer).proxy_name.insert(handle, name);
        self.proxies.insert(
            name,
            (
                peer.to_owned(),
                ProxyOf {
                    handle,
                    once: false,
                },
            ),
        );
        self.proxy_global.insert(name, global.clone());
        self.canonical.entry(global.clone()).or_insert(name);
        self.arm_no_senders(k, peer, handle)?;
        out.push(Out {
            peer,
            id,
            frame: StreamFrame::Moved(MovedPort {
                id,
                global,
                mscount: status.mscount,
                seqno: status.seqno,
                qlimit: status.qlimit,
                // (The rights kept for the peer's forwarder go: see below.)
                send_once: status
                    .sorights
                    .saturating_sub(embargo.as_ref().map_or(0, |e| e.send_once))
                    .min(crate::wire::MAX_MOVED_SEND_ONCE),
                embargo: None,
            }),
        });
        let moved_at = out.len() - 1;
        // (The `Moved` frame is the stream's first: positions count it.)
        self.wrote(peer, id);
        if status.msgcount > 0 {
            self.queue_cuts.insert(
                name,
                QueueCut {
                    left: status.msgcount,
                    start: self.write_log.len(),
                },
            );
        }
        if let Some(mut embargo) = embargo {
            // The queue goes on as the forwarder's, in the order messages
            // reached this node's ports (not now: messages on other proxies
            // may have come first), right behind the frame in this node's
            // lane; the peer learns where it ends there. (Messages waiting
            // for room come after.)
            embargo.queued = u64::from(status.msgcount);
            if embargo.export != 0 {
                self.dissolve_pool(k, peer, embargo.export, name, status.msgcount);
            }
            if let StreamFrame::Moved(m) = &mut out[moved_at].frame {
                m.embargo = Some(embargo);
            }
        }
        Ok(WireRight {
            form: Form::Receive,
            reference: WireRef::MovedReceive {
                id,
                no_senders,
                port_destroyed,
            },
            watermark: 0,
            after: Vec::new(),
            home_stream: None,
        })
    }

    /// Port `name`'s notification request `which`, taken off it as its
    /// receive right moves to `peer`: the request's send-once right,
    /// exported, to arm there.
    fn take_request(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        name: Name,
        which: i32,
        out: &mut Vec<Out>,
    ) -> Result<Option<Box<WireRight>>, TranslateError> {
        let request = kr(
            "take notification request",
            k.port_request_notification(self.task, name, which, 0, NAME_NULL, 0),
        )?;
        if request == NAME_NULL {
            return Ok(None);
        }
        if request == NAME_DEAD {
            let _ = k.port_deallocate(self.task, request);
            return Ok(None);
        }
        let r = self.export_right_as(k, peer, request, msg_type::PORT_SEND_ONCE, false, out)?;
        Ok(Some(Box::new(r)))
    }

    /// If netmsg's send-once right `name` is to one of its one-shot proxies
    /// of `peer`'s exports, it goes home: the proxy's import ends as if used
    /// (the peer settles the export by giving the right it holds for it),
    /// and the proxy goes. Its export's ID.
    fn once_going_home(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        name: Name,
        out: &mut Vec<Out>,
    ) -> Result<Option<u64>, TranslateError> {
        if !self.peers[&peer].ledger.has_once_imports() {
            return Ok(None);
        }
        let Some(proxy) = k.send_name_of(self.task, name) else {
            return Ok(None);
        };
        let handle = match self.proxies.get(&proxy) {
            Some(&(p, ref of)) if p == peer && of.once => of.handle,
            _ => return Ok(None),
        };
        let Some((id, effects)) = self.peer(peer).ledger.once_used(handle) else {
            return Ok(None);
        };
        // The proxy goes, so its one send-once right, `name`, is a dead name
        // and is dropped without a send-once notification.
        self.apply(k, peer, effects, out)?;
        let _ = k.port_deallocate(self.task, name);
        Ok(Some(id))
    }

    /// The send-once rights this node keeps for `peer`'s forwarder of port
    /// `name` (export `export`) go as the port's receive right moves there
    /// with an embargo: the rights the peer's tasks hold to that forwarder
    /// stand for them (once the forwarder is the port, or, if the peer does
    /// not shorten, as rights it makes anew; messages sent through them come
    /// back here in the peer's own lane). Their destruction queues a
    /// send-once notification each on the port, behind the `queued`
    /// messages there; one kernel would make none, so the forwarder drops
    /// them (see `swallowed`).
    fn dissolve_pool(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        export: u64,
        name: Name,
        queued: u32,
    ) {
        let pool = self
            .send_once_pool
            .remove(&(peer, export))
            .unwrap_or_default();
        if pool.is_empty() {
            return;
        }
        self.swallow.insert(
            name,
            Swallow {
                skip: queued,
                drop: pool.len(),
            },
        );
        self.pool_let_go.insert(name);
        for right in pool {
            let _ = k.port_deallocate(self.task, right);
        }
    }

    /// Whether `m`, taken from a forwarder, is one of the notifications
    /// `dissolve_pool` queued on it: then it is destroyed here.
    fn swallowed(&mut self, k: &mut Kernel, m: &Message) -> bool {
        let Some(s) = self.swallow.get_mut(&m.local_port) else {
            return false;
        };
        if s.skip > 0 {
            s.skip -= 1;
            return false;
        }
        // (Queued right behind the messages counted: anything else means
        // the count is off, and nothing is dropped.)
        if !(kernel_sent(m) && m.id == notify_id::SEND_ONCE) {
            self.swallow.remove(&m.local_port);
            return false;
        }
        s.drop -= 1;
        if s.drop == 0 {
            self.swallow.remove(&m.local_port);
        }
        self.destroy_received(k, m);
        true
    }

    /// What `peer` needs to take port `name`, whose receive right moves to
    /// it, under the name it has for the port through this node (its proxy
    /// of this node's export): where what it sent before stands. None when
    /// it has no such proxy, too many lanes to count or send-once rights to
    /// let go, or this node keeps returning rights for it. (`queued` is
    /// filled in by the caller.)
    fn embargo_for(&self, peer: PeerId, name: Name) -> Option<Embargo> {
        // (Of two, the newer: that of the peer's forwarder, where the port
        // was handed over to a name that had one to the peer before.)
        let export = self
            .peers
            .get(&peer)
            .and_then(|p| p.ledger.newest_live_export(u64::from(name)));
        let Some(export) = export else {
            // The peer may reach the port through a third node: it counts
            // what comes back that way with markers; only the queue is ours.
            return Some(Embargo {
                export: 0,
                era: 0,
                queued: 0,
                send_once: 0,
                lanes: Vec::new(),
            });
        };
        // Send-once rights this node keeps for the peer's forwarder go with
        // the move (see `dissolve_pool`).
        let send_once = self.send_once_pool.get(&(peer, export)).map_or(0, Vec::len);
        let send_once = u32::try_from(send_once)
            .ok()
            .filter(|&n| n <= crate::wire::MAX_MOVED_SEND_ONCE)?;
        if self.returning_pool.contains_key(&(peer, export)) {
            // Messages through rights of this node's own proxy come back
            // through these: were the peer to shorten onto that proxy, they
            // would reach the port there instead (no stand-in for them).
            return None;
        }
        let once = self
            .once_delivered
            .get(&(peer, export))
            .copied()
            .unwrap_or(0);
        let lanes: Vec<(Option<Origin>, u64)> = self
            .delivered
            .iter()
            .filter(|(lane, _)| *lane.node == *self.peer_name(peer) && lane.port == export)
            // (What came through one-shot exports, in the peer's own lane,
            // the peer leaves out.)
            .map(|(lane, &n)| match lane.origin {
                None => (None, n.saturating_sub(once)),
                Some(_) => (lane.origin.clone(), n),
            })
            .collect();
        if lanes.len() > crate::wire::MAX_EMBARGO_LANES {
            return None;
        }
        Some(Embargo {
            export,
            era: self.era(peer),
            queued: 0,
            send_once,
            lanes,
        })
    }

    /// The queue of `Moved` stream `key` is in, or no longer waited for:
    /// frames relayed after it go on.
    fn end_queue_order(&mut self, key: (PeerId, u64)) {
        if let Some(q) = self.queue_orders.remove(&key) {
            if q.waiting {
                self.holds
                    .advanced(queue_sent(self.peer_name(key.0), key.1), 1);
            }
        }
    }

    /// A peer's `Moved` frame on stream `id`: the port it describes is made
    /// here, with its state and identity; netmsg holds its receive right
    /// until the message carrying it is delivered, and the peer one send
    /// right (the export `id`), where it forwards the port's messages.
    fn on_moved(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        id: u64,
        m: MovedPort,
        out: &mut Vec<Out>,
    ) -> Result<(), TranslateError> {
        if m.id != id {
            return Err(TranslateError::Protocol {
                peer: self.peer_name(peer).to_owned(),
                reason: format!("port state of {} on the stream of {id}", m.id),
            });
        }
        let port = kr("moved port", k.port_allocate(self.task, PortRight::Receive))?;
        if let Err(e) = self.peer(peer).ledger.export_moved(id, u64::from(port)) {
            let _ = k.port_mod_refs(self.task, port, PortRight::Receive as u32, -1);
            return Err(protocol(self.peer_name(peer), e));
        }
        kr(
            "moved port's send right",
            k.port_insert_right(self.task, port, self.task, port, msg_type::MAKE_SEND),
        )?;
        kr(
            "moved mscount",
            k.port_set_mscount(self.task, port, m.mscount),
        )?;
        kr("moved seqno", k.port_set_seqno(self.task, port, m.seqno))?;
        kr(
            "moved qlimit",
            k.port_set_qlimit(self.task, port, mach::types::QLIMIT_MAX),
        )?;
        self.staged.insert(
            port,
            Staged {
                qlimit: m.qlimit,
                seqno: m.seqno,
                queue: Vec::new(),
            },
        );
        self.request_dead_name(k, port)?;
        self.grow_pool(k, (peer, id), port, m.send_once, false)?;
        self.adopted.insert(port, m.global.clone());
        self.unclaimed.insert((peer, id), port);
        // A node that names the port through the sender takes it under that
        // name, once its messages on the way are back (the send-once pool
        // follows the port onto that name: see `hand_over`).
        let embargo = m.embargo.as_ref().and_then(|e| {
            if e.export != 0 {
                if let Some((proxy, waits)) = self.embargo_waits(peer, id, &m.global, e) {
                    return Some((proxy, waits, None));
                }
                // The sender counted an export this node's name does not
                // lead through: with nothing of this node's from it still on
                // its way, markers flush the way the name leads.
                if !self.all_taken(peer, e) {
                    return None;
                }
            }
            // (Only the port's queue is counted: what this node sent the way
            // its name leads is back once its markers are.)
            let counted = (e.export != 0).then_some(e.export);
            let (proxy, lanes) = self.marker_lanes(k, peer, &m.global, counted)?;
            let queue = vec![(
                StreamKey::stream(self.peer_shared(peer), id),
                e.queued.saturating_add(1),
            )];
            Some((proxy, queue, Some(lanes)))
        });
        if let Some((proxy, waits, relayed)) = embargo {
            // The way the name leads (through a third node, or another
            // export): a marker in each lane this node wrote there comes
            // back behind what it sent before.
            let markers = match relayed {
                Some(lanes) => self.send_markers(proxy, lanes, out),
                None => Vec::new(),
            };
            self.embargoed.insert(proxy, (peer, id));
            self.embargoes.insert(
                (peer, id),
                Embargoed {
                    proxy,
                    staging: port,
                    global: m.global,
                    mscount: m.mscount,
                    seqno: m.seqno,
                    qlimit: m.qlimit,
                    waits,
                    queue_end: m.embargo.as_ref().map_or(1, |e| e.queued.saturating_add(1)),
                    relayed_held: false,
                    parked: Vec::new(),
                    send_once: m.embargo.as_ref().map_or(0, |e| e.send_once),
                    own_send_once: 0,
                    ticks: 0,
                    markers,
                },
            );
            // What reached the proxy and is not sent on yet is parked too.
            for m in self.take_queue(k, proxy)? {
                if self.swallowed(k, &m) {
                    continue;
                }
                if proxy_own_notification(&m, self.forwarders.contains_key(&proxy)) {
                    self.destroy_received(k, &m);
                } else if let Some(e) = self.embargoes.get_mut(&(peer, id)) {
                    e.parked.push(m);
                }
            }
            return Ok(());
        }
        // Not shortened, the rights the sender kept for this node's
        // forwarder and let go are made here: what tasks send through their
        // rights to the forwarder comes back to this port through them.
        if let Some(e) = &m.embargo {
            self.grow_pool(k, (peer, id), port, e.send_once, true)?;
            if e.queued > 0 {
                self.queue_orders.insert(
                    (peer, id),
                    QueueOrder {
                        end: e.queued.saturating_add(1),
                        waiting: false,
                        ticks: 0,
                    },
                );
            }
        }
        // Otherwise a node that already has a name for the port keeps that
        // one for rights arriving later (the port gets a second name).
        if !self.canonical.contains_key(&m.global) && !self.adopted_port.contains_key(&m.global) {
            self.adopted_port.insert(m.global, port);
        } else {
            self.second_names.insert(port);
        }
        Ok(())
    }

    /// Whether this node's name for moved port `g` (from `peer`'s `Moved`
    /// stream `id`) is a proxy of the export `e` names, and if so that
    /// proxy and the lane positions of stream `id` by which everything it
    /// sent toward the port is back here: its own messages and the ones it
    /// forwarded, less those the peer had taken in before the move; and the
    /// port's queue in the peer's own lane, after the frame.
    fn embargo_waits(
        &self,
        peer: PeerId,
        id: u64,
        g: &GlobalId,
        e: &Embargo,
    ) -> Option<(Name, Vec<(StreamKey, u64)>)> {
        let &proxy = self.canonical.get(g)?;
        let &(upstream, of) = self.proxies.get(&proxy)?;
        if upstream != peer
            || of.once
            || self.embargoed.contains_key(&proxy)
            || self.congested.contains(&(peer, e.export))
            || self.peers[&peer].ledger.proxy_import_id(of.handle) != Some(e.export)
        {
            return None;
        }
        // Another proxy of the port toward the peer (a second name from an
        // earlier move): what it sent comes back in this node's lane too,
        // uncounted by the embargo.
        let other_way = self.proxies.iter().any(|(&name, (up, of))| {
            name != proxy && *up == peer && !of.once && self.proxy_global.get(&name) == Some(g)
        });
        if other_way || self.wrote_then_gone.contains(&(peer, g.clone())) {
            return None;
        }
        let taken = |origin: &Option<Origin>| {
            e.lanes
                .iter()
                .find(|(o, _)| o == origin)
                .map_or(0, |&(_, n)| n)
        };
        // (A peer's count is not trusted to fit: saturating, a lie only
        // holds its own port.)
        let mut waits = vec![(
            StreamKey::stream(self.peer_shared(peer), id),
            e.queued.saturating_add(1),
        )];
        let mut lane = |origin: Origin, sent: u64, taken: u64| {
            // (More taken in than sent: the counts do not match; no shortening.)
            let back = sent.checked_sub(taken)?;
            if back > 0 {
                let lane = StreamKey {
                    node: self.peer_shared(peer),
                    port: id,
                    origin: Some(origin),
                };
                // (This node's own messages, and those it forwarded in its
                // lane, come back in one lane.)
                match waits.iter_mut().find(|(l, _)| *l == lane) {
                    Some((_, n)) => *n = n.saturating_add(back),
                    None => waits.push((lane, back)),
                }
            }
            Some(())
        };
        let own = self.own_written(peer, e.export);
        lane(
            Origin {
                node: self.node.clone(),
                era: e.era,
            },
            own,
            taken(&None),
        )?;
        for ((up, import, origin), &n) in &self.forwarded {
            if *up == peer && *import == e.export {
                lane(origin.clone(), n, taken(&Some(origin.clone())))?;
            }
        }
        Some((proxy, waits))
    }

    /// Whether this node's name for moved port `g` (whose receive right
    /// comes from `peer`, which counted none of this node's messages, or
    /// all it had sent on export `counted` of the port) is a send proxy
    /// leading another way (through a third node, or another export of the
    /// sender's), or a forwarder through another export of the sender's,
    /// and if so that proxy and where flush markers go: everything this
    /// node sent that way is back once they are.
    fn marker_lanes(
        &self,
        k: &mut Kernel,
        peer: PeerId,
        g: &GlobalId,
        counted: Option<u64>,
    ) -> Option<(Name, MarkerLanes)> {
        let &proxy = self.canonical.get(g)?;
        // (Not one-shot: it has a live import.)
        let (upstream, import) = self.relay_of_port(proxy)?;
        // (The sender counted what came on its export `counted`: through
        // that, or through the sender with nothing counted, there is no
        // third way to flush.)
        if (upstream == peer && counted.is_none_or(|e| e == import))
            || self.embargoed.contains_key(&proxy)
            || self.congested.contains(&(upstream, import))
        {
            return None;
        }
        if self.forwarders.contains_key(&proxy) {
            // A forwarder to the sender itself, through another export than
            // the one it counted: what the forwarder sent through send-once
            // rights went into the port's queue there (counted as queued)
            // or comes back in its own lane. Through a third node, only if
            // it sent none (at the hop they go on in the hop's own lane,
            // where no marker follows them). Not with send-once rights to
            // it left (the sender's pool for them would outlive the
            // hand-over), nor with its moved queue, notifications or a pool
            // it let go still pending.
            let sorights = k
                .port_get_receive_status(self.task, proxy)
                .map_or(1, |s| s.sorights);
            if (upstream != peer && self.sent_once.contains(&proxy))
                || sorights > 0
                || self.pool_let_go.contains(&proxy)
                || self.draining.contains(&proxy)
                || self.swallow.contains_key(&proxy)
                || self.queue_cuts.contains_key(&proxy)
            {
                return None;
            }
        }
        // A second name for the port: what it sent comes back unmarked.
        let other = self.proxies.iter().any(|(&name, (_, of))| {
            name != proxy && !of.once && self.proxy_global.get(&name) == Some(g)
        });
        if other {
            return None;
        }
        let mut lanes = vec![None];
        for (up, i, origin) in self.forwarded.keys() {
            if *up == upstream && *i == import {
                lanes.push(Some(origin.clone()));
            }
        }
        if lanes.len() > crate::wire::MAX_EMBARGO_LANES {
            return None;
        }
        Some((
            proxy,
            MarkerLanes {
                upstream,
                import,
                lanes,
            },
        ))
    }

    /// Whether the sender of embargo `e` took in every message this node
    /// wrote on its export `e.export`, in every lane, and let go of no
    /// send-once rights kept for this node (nothing of this node's from
    /// that export is still on its way back).
    fn all_taken(&self, peer: PeerId, e: &Embargo) -> bool {
        let taken = |origin: &Option<Origin>| {
            e.lanes
                .iter()
                .find(|(o, _)| o == origin)
                .map_or(0, |&(_, n)| n)
        };
        let own = self.own_written(peer, e.export);
        let forwarded = self
            .forwarded
            .iter()
            .filter(|((up, i, _), _)| *up == peer && *i == e.export);
        for ((_, _, origin), &n) in forwarded {
            if taken(&Some(origin.clone())) != n {
                return false;
            }
        }
        e.send_once == 0 && own == taken(&None)
    }

    /// Writes a flush marker in each lane of `proxy`'s stream `to` names,
    /// counted there like the messages it follows.
    fn send_markers(&mut self, proxy: Name, to: MarkerLanes, out: &mut Vec<Out>) -> Vec<Marker> {
        let MarkerLanes {
            upstream,
            import,
            lanes,
        } = to;
        let mut markers = Vec::with_capacity(lanes.len());
        for lane in lanes {
            self.next_marker += 1;
            let number = self.next_marker;
            let mut bytes = Vec::with_capacity(MARKER_LEN);
            bytes.extend_from_slice(&number.to_le_bytes());
            bytes.extend_from_slice(&self.marker_mac(number));
            match &lane {
                None => {
                    self.wrote(upstream, import);
                    self.went_through(upstream, proxy);
                }
                Some(origin) => {
                    *self
                        .forwarded
                        .entry((upstream, import, origin.clone()))
                        .or_insert(0) += 1;
                }
            }
            out.push(Out {
                peer: upstream,
                id: import,
                frame: StreamFrame::Message(WireMessage {
                    id: MARKER_ID,
                    other_bits: 0,
                    marker: true,
                    dest_form: Form::Send,
                    once: None,
                    reply: None,
                    origin: lane.clone(),
                    dependencies: Vec::new(),
                    items: vec![WireItem::Data {
                        type_name: msg_type::BYTE,
                        size: 8,
                        number: MARKER_LEN as u32,
                        inline: true,
                        longform: false,
                        deallocate: false,
                        bytes,
                    }],
                }),
            });
            markers.push(Marker {
                number,
                lane,
                behind: 0,
            });
        }
        markers
    }

    fn marker_mac(&self, number: u64) -> [u8; 8] {
        let mut input = *b"flush marker\0\0\0\0\0\0\0\0";
        input[12..].copy_from_slice(&number.to_le_bytes());
        let tag = ring::hmac::sign(&self.identity_key.0, &input);
        tag.as_ref()[..8].try_into().expect("8 bytes")
    }

    /// The number of `m` if it is a flush marker this node made.
    fn own_marker(&self, m: &WireMessage) -> Option<u64> {
        if !m.marker || m.id != MARKER_ID || m.reply.is_some() || m.items.len() != 1 {
            return None;
        }
        let WireItem::Data { bytes, .. } = &m.items[0] else {
            return None;
        };
        if bytes.len() != MARKER_LEN {
            return None;
        }
        let number = u64::from_le_bytes(bytes[..8].try_into().ok()?);
        (bytes[8..] == self.marker_mac(number)).then_some(number)
    }

    /// Flush marker `number` came back, delivered as the `position`-th of
    /// `lane`: the embargo that sent it may be over. (One whose embargo is
    /// gone is dropped all the same.)
    fn marker_back(
        &mut self,
        k: &mut Kernel,
        number: u64,
        lane: Option<(StreamKey, u64)>,
        out: &mut Vec<Out>,
    ) -> Result<(), TranslateError> {
        let found = self.embargoes.iter_mut().find_map(|(key, e)| {
            let i = e.markers.iter().position(|m| m.number == number)?;
            let marker = e.markers.swap_remove(i);
            if let Some((lane, position)) = lane.clone().filter(|_| marker.behind > 0) {
                e.waits.push((lane, position.saturating_add(marker.behind)));
            }
            Some(*key)
        });
        match found {
            Some((peer, id)) => self.end_embargo_if_back(k, peer, id, out),
            None => Ok(()),
        }
    }

    /// After a frame on `peer`'s stream `id`: if that is a moved port's
    /// stream under an embargo, and everything is back, the hand-over.
    fn end_embargo_if_back(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        id: u64,
        out: &mut Vec<Out>,
    ) -> Result<(), TranslateError> {
        if self.embargoes.is_empty() {
            return Ok(());
        }
        let key = (peer, id);
        let Some(e) = self.embargoes.get_mut(&key) else {
            return Ok(());
        };
        e.ticks = 0;
        let e = &*e;
        let back = e.markers.is_empty()
            && e.waits
                .iter()
                .all(|(lane, n)| self.delivered.get(lane).copied().unwrap_or(0) >= *n);
        if back {
            self.hand_over(k, key, out)?;
        }
        Ok(())
    }

    /// The embargoed proxy becomes the moved port (see [`Embargoed`]).
    fn hand_over(
        &mut self,
        k: &mut Kernel,
        key: (PeerId, u64),
        out: &mut Vec<Out>,
    ) -> Result<(), TranslateError> {
        let Some(mut e) = self.embargoes.remove(&key) else {
            return Ok(());
        };
        self.embargoed.remove(&e.proxy);
        let (peer, id) = key;
        let proxy = e.proxy;
        let relayed_held = e.relayed_held;
        // (The proxy leads to the sender, or, with markers, another way.)
        let (upstream, handle) = match self.proxies.get(&proxy) {
            Some((p, of)) if !of.once => (*p, of.handle),
            _ => return self.abandon_embargo(k, key, Some(e), out),
        };
        // The proxy's last messages and its own no-senders request go (a
        // forwarder's request is on its notify port, which goes too).
        let previous = kr(
            "cancel proxy no-senders",
            k.port_request_notification(self.task, proxy, notify_id::NO_SENDERS, 0, NAME_NULL, 0),
        )?;
        if previous != NAME_NULL {
            let _ = k.port_deallocate(self.task, previous);
        }
        let forwarder = self.forwarders.remove(&proxy);
        let sent_once = self.sent_once.remove(&proxy);
        self.end_queue_cut(proxy);
        for m in self.take_queue(k, proxy)? {
            if self.swallowed(k, &m) {
                continue;
            }
            if proxy_own_notification(&m, forwarder.is_some()) {
                self.destroy_received(k, &m);
            } else {
                e.parked.push(m);
            }
        }
        self.swallow.remove(&proxy);
        let import = self.peer(upstream).ledger.proxy_import_id(handle);
        let detached = if self.peer(peer).ledger.retarget_export(id, u64::from(proxy)) {
            let detached = self.peer(upstream).ledger.detach_proxy(handle);
            if detached.is_none() {
                self.peer(peer)
                    .ledger
                    .retarget_export(id, u64::from(e.staging));
            }
            detached
        } else {
            None
        };
        let Some(effects) = detached else {
            // (Not a live proxy of the export any more.)
            if let Some(notify) = forwarder {
                self.forwarders.insert(proxy, notify);
                if sent_once {
                    self.sent_once.insert(proxy);
                }
            }
            self.arm_no_senders(k, upstream, handle)?;
            return self.abandon_embargo(k, key, Some(e), out);
        };
        self.apply(k, upstream, effects, out)?;
        if let Some(import) = import.filter(|_| self.peers[&upstream].ledger.is_detached(handle)) {
            // Nothing more is forwarded on the import's stream, whose
            // release waits: the lanes of other nodes' messages there end
            // now (their positions, which third nodes may name, are final).
            let lanes: Vec<Origin> = self
                .forwarded
                .keys()
                .filter(|(up, i, _)| *up == upstream && *i == import)
                .map(|(_, _, origin)| origin.clone())
                .collect();
            for origin in lanes {
                out.push(Out {
                    peer: upstream,
                    id: import,
                    frame: StreamFrame::LaneEnded { id: import, origin },
                });
            }
        }
        if let Some(notify) = forwarder {
            self.forwarder_of_notify.remove(&notify);
            self.draining.remove(&proxy);
            let _ = k.port_mod_refs(self.task, notify, PortRight::Receive as u32, -1);
        }
        kr(
            "proxy out of the set",
            k.port_move_member(self.task, proxy, NAME_NULL),
        )?;
        self.proxies.remove(&proxy);
        if !self.requeued.is_empty() {
            self.requeued.remove(&proxy);
        }
        self.pool_let_go.remove(&proxy);
        // (Kept while rights sent home through it are unconfirmed: its
        // references on the port go as they are.)
        let p = self.peer(upstream);
        if !p.ledger.is_detached(handle) {
            p.proxy_name.remove(&handle);
        }
        self.proxy_import.remove(&proxy);
        self.proxy_global.remove(&proxy);
        if self.canonical.get(&e.global) == Some(&proxy) {
            self.canonical.remove(&e.global);
        }
        self.home_streams.remove(&proxy);
        self.pending.remove(&proxy);
        self.kept.remove(&proxy);
        self.moved_away.remove(&e.global);
        // The port's queue: what came on its stream, then what was parked,
        // staged until the port is claimed.
        kr(
            "moved qlimit",
            k.port_set_qlimit(self.task, proxy, mach::types::QLIMIT_MAX),
        )?;
        let staging = e.staging;
        let previous = kr(
            "cancel staging dead-name request",
            k.port_request_notification(self.task, staging, notify_id::DEAD_NAME, 0, NAME_NULL, 0),
        )?;
        if previous != NAME_NULL {
            let _ = k.port_deallocate(self.task, previous);
        }
        let mut queue = self
            .staged
            .remove(&staging)
            .map(|s| s.queue)
            .unwrap_or_default();
        queue.extend(self.take_queue(k, staging)?);
        queue.append(&mut e.parked);
        for m in &mut queue {
            self.rename(k, m, staging, proxy)?;
        }
        self.staged.insert(
            proxy,
            Staged {
                qlimit: e.qlimit,
                seqno: e.seqno,
                queue,
            },
        );
        // The peer's send right (export `id`) and send-once pool are on the
        // proxy now; the staging port goes.
        kr(
            "moved port's send right",
            k.port_insert_right(self.task, proxy, self.task, proxy, msg_type::MAKE_SEND),
        )?;
        self.request_dead_name(k, proxy)?;
        let pool = self.send_once_pool.remove(&key).unwrap_or_default();
        self.grow_pool(k, key, proxy, pool.len() as u32, false)?;
        let _ = k.port_mod_refs(self.task, staging, PortRight::Receive as u32, -1);
        for right in pool {
            let _ = k.port_deallocate(self.task, right);
        }
        while k.port_type(self.task, staging).is_ok() {
            if k.port_deallocate(self.task, staging).is_err() {
                break;
            }
        }
        self.forget_if_freed(k, staging);
        kr(
            "moved mscount",
            k.port_set_mscount(self.task, proxy, e.mscount),
        )?;
        self.adopted.insert(proxy, e.global.clone());
        self.adopted_port.insert(e.global, proxy);
        self.unclaimed.insert(key, proxy);
        if relayed_held {
            self.holds.advanced(queue_sent(self.peer_name(peer), id), 1);
        }
        self.holds.advanced(port_ready(self.peer_name(peer), id), 1);
        Ok(())
    }

    /// An embargo that ends without a hand-over: the proxy stays one (what
    /// was parked goes on through it, behind what it sent before) or is
    /// gone (`e` None: with it what was parked), and the moved port keeps
    /// the name it was made with.
    fn abandon_embargo(
        &mut self,
        k: &mut Kernel,
        key: (PeerId, u64),
        e: Option<Embargoed>,
        out: &mut Vec<Out>,
    ) -> Result<(), TranslateError> {
        let Some(e) = e.or_else(|| self.embargoes.remove(&key)) else {
            return Ok(());
        };
        self.embargoed.remove(&e.proxy);
        let (peer, id) = key;
        if e.relayed_held {
            self.holds.advanced(queue_sent(self.peer_name(peer), id), 1);
        }
        // Not shortened, the rights the sender let go are made here (less
        // those its messages already came back through).
        if k.port_type(self.task, e.staging)
            .is_ok_and(|t| t & port_type::RECEIVE != 0)
        {
            self.grow_pool(
                k,
                (peer, id),
                e.staging,
                e.send_once.saturating_sub(e.own_send_once),
                true,
            )?;
        }

        // (The proxy leads to the sender, or, with markers, another way.)
        let import = self
            .proxies
            .get(&e.proxy)
            .filter(|(_, of)| !of.once)
            .and_then(|(up, of)| {
                let import = self.peers[up].ledger.proxy_import_id(of.handle)?;
                Some((*up, import))
            });
        for m in e.parked {
            match &import {
                Some((upstream, import)) => {
                    if let Err(err) = self.forward_local(k, *upstream, *import, m, out) {
                        self.reports.push(err);
                    }
                }
                None => self.destroy_received(k, &m),
            }
        }
        if self.canonical.contains_key(&e.global) || self.adopted_port.contains_key(&e.global) {
            self.second_names.insert(e.staging);
        } else {
            self.adopted_port.insert(e.global, e.staging);
        }
        self.holds.advanced(port_ready(self.peer_name(peer), id), 1);
        Ok(())
    }

    /// Send rights to `from` in a message netmsg holds become rights to
    /// `to` (the port `from` stood in for, which netmsg holds the receive
    /// right of).
    fn rename(
        &mut self,
        k: &mut Kernel,
        m: &mut Message,
        from: Name,
        to: Name,
    ) -> Result<(), TranslateError> {
        let mut renamed = 0;
        if m.remote_port == from && m.remote_type() == msg_type::PORT_SEND {
            m.remote_port = to;
            renamed += 1;
        }
        for item in &mut m.body {
            if item.type_name != msg_type::PORT_SEND {
                continue;
            }
            if let Payload::Names(names) = &mut item.payload {
                for n in names.iter_mut().filter(|n| **n == from) {
                    *n = to;
                    renamed += 1;
                }
            }
        }
        for _ in 0..renamed {
            kr(
                "renamed right",
                k.port_insert_right(self.task, to, self.task, to, msg_type::MAKE_SEND),
            )?;
            let _ = k.port_mod_refs(self.task, from, PortRight::Send as u32, -1);
        }
        Ok(())
    }

    /// A moved port gets its receiver: what was taken out of its queue goes
    /// back, in order, and the port its queue limit and sequence number.
    fn unstage(&mut self, k: &mut Kernel, port: Name) -> Result<(), TranslateError> {
        let Some(staged) = self.staged.remove(&port) else {
            return Ok(());
        };
        let mut queue = staged.queue;
        queue.extend(self.take_queue(k, port)?);
        kr(
            "moved seqno",
            k.port_set_seqno(self.task, port, staged.seqno),
        )?;
        for m in queue {
            self.resend(k, port, m);
        }
        kr(
            "moved qlimit",
            k.port_set_qlimit(self.task, port, staged.qlimit),
        )?;
        Ok(())
    }

    /// Every message queued on `port` (a port netmsg holds the receive right
    /// of), blocked senders admitted as room frees; a member of netmsg's
    /// port set stays one.
    fn take_queue(&mut self, k: &mut Kernel, port: Name) -> Result<Vec<Message>, TranslateError> {
        let status = kr("queue status", k.port_get_receive_status(self.task, port))?;
        if status.pset != NAME_NULL {
            kr(
                "out of the set",
                k.port_move_member(self.task, port, NAME_NULL),
            )?;
        }
        let opts = RecvOptions {
            max_size: None,
            large: false,
        };
        let mut queue = Vec::new();
        // (Out of any set, a port netmsg holds the receive right of is
        // always one it may receive from.)
        while let Ok(Some(m)) = k.receive(self.task, port, opts) {
            queue.push(m);
        }
        if status.pset != NAME_NULL {
            kr(
                "back into the set",
                k.port_move_member(self.task, port, status.pset),
            )?;
        }
        Ok(queue)
    }

    /// A message netmsg received goes into `port` as it was sent (its
    /// rights moved back out of netmsg's space), through the same kind of
    /// right it came through.
    fn resend(&mut self, k: &mut Kernel, port: Name, m: Message) {
        let dest = if m.local_type() == msg_type::PORT_SEND_ONCE {
            msg_type::MAKE_SEND_ONCE
        } else {
            msg_type::MAKE_SEND
        };
        // The rights leave netmsg's space: a name whose last reference one
        // of them was may be reused for another port, so it stops standing
        // for this one's identity.
        let carried: Vec<Name> = std::iter::once(m.remote_port)
            .chain(
                m.body
                    .iter()
                    .filter_map(Item::names_payload)
                    .flatten()
                    .copied(),
            )
            .filter(|&n| n != NAME_NULL && n != NAME_DEAD)
            .collect();
        let mut msg = Message::new(port, dest, m.remote_port, m.remote_type(), m.id, m.body);
        msg.bits |= m.bits & !(msgh_bits::PORTS_MASK | msgh_bits::COMPLEX);
        match k.send(self.task, msg, true) {
            Ok(SendStatus::Pending(ticket)) => self.handover_sends.push(ticket),
            Ok(_) => {}
            Err(_) => {}
        }
        for name in carried {
            self.forget_if_freed(k, name);
        }
    }

    /// Where this node's own messages through `proxy` (import `import` from
    /// `upstream`) stand at the port's home: its stream there, or its lane in
    /// the hop's stream there. Exact: the hop forwards each origin's messages
    /// in their own lane and order. (None when nothing was sent, or when the
    /// proxy leads through more than one hop.)
    fn position_through(
        &self,
        upstream: PeerId,
        import: u64,
        proxy: Name,
        global: &GlobalId,
    ) -> Option<Dependency> {
        let written = Some(self.written_before_cut(upstream, import)).filter(|&w| w > 0)?;
        if self.leads_home(proxy, upstream, global) {
            return Some(Dependency {
                via: self.node.clone(),
                home: self.peer_name(upstream).to_owned(),
                port: import,
                origin: None,
                position: written,
            });
        }
        let lane = self.home_streams.get(&proxy)?;
        let through = self
            .through
            .get(&(upstream, lane.home.clone(), lane.stream))
            .copied()?;
        Some(Dependency {
            via: self.peer_name(upstream).to_owned(),
            home: lane.home.clone(),
            port: lane.stream,
            origin: Some(Origin {
                node: self.node.clone(),
                era: lane.era,
            }),
            position: through,
        })
    }

    /// This node's own message through `proxy` left for `peer`: when the
    /// proxy leads to the port's home through that hop, one more in this
    /// node's lane there.
    fn went_through(&mut self, peer: PeerId, proxy: Name) {
        if let Some(lane) = self.home_streams.get(&proxy) {
            *self
                .through
                .entry((peer, lane.home.clone(), lane.stream))
                .or_insert(0) += 1;
        }
    }

    /// Messages written on stream `id` to `peer` that an embargo counts:
    /// those not through send-once rights.
    fn own_written(&self, peer: PeerId, id: u64) -> u64 {
        let written = self.written.get(&(peer, id)).copied().unwrap_or(0);
        let once = self.once_written.get(&(peer, id)).copied().unwrap_or(0);
        written.saturating_sub(once)
    }

    /// A frame is written on stream `id` to `peer`.
    fn wrote(&mut self, peer: PeerId, id: u64) {
        *self.written.entry((peer, id)).or_insert(0) += 1;
        if !self.queue_cuts.is_empty() {
            self.write_log.push((peer, id));
            if self.write_log.len() > MAX_WRITE_LOG {
                self.queue_cuts.clear();
                self.write_log.clear();
            }
        }
    }

    /// Forwarder `name`'s moved queue is forwarded, or will not be.
    fn end_queue_cut(&mut self, name: Name) {
        if self.queue_cuts.remove(&name).is_some() && self.queue_cuts.is_empty() {
            self.write_log.clear();
        }
    }

    /// Messages written on stream `id` to `peer` (for a moved queue's
    /// message being encoded, up to the move).
    fn written_before_cut(&self, peer: PeerId, id: u64) -> u64 {
        let written = self.written.get(&(peer, id)).copied().unwrap_or(0);
        let since = self.cut.map_or(0, |start| {
            let log = self.write_log.get(start..).unwrap_or_default();
            log.iter().filter(|(p, i)| *p == peer && *i == id).count() as u64
        });
        written.saturating_sub(since)
    }

    /// Whether `proxy`'s upstream holds the port's receive right: it is the
    /// port's first home, or the node this forwarder's receive right moved
    /// to (which may have moved it on since: then positions through it are
    /// not checked at the new home, see protocol.md).
    fn leads_home(&self, proxy: Name, upstream: PeerId, global: &GlobalId) -> bool {
        global.home == self.peer_name(upstream) || self.forwarders.contains_key(&proxy)
    }

    /// The era of `peer`'s lanes in what this node forwards.
    fn era(&self, peer: PeerId) -> u64 {
        self.eras.get(&peer).copied().unwrap_or(0)
    }

    /// The identity of a port whose receive right is on this node (or was,
    /// for a forwarder): the one it came with, if it moved here.
    fn local_global(&mut self, name: Name) -> GlobalId {
        if let Some(g) = self
            .adopted
            .get(&name)
            .or_else(|| self.proxy_global.get(&name))
        {
            return g.clone();
        }
        let incarnation = match self.incarnations.get(&name) {
            Some(&i) => i,
            None => {
                self.next_incarnation += 1;
                let tag =
                    ring::hmac::sign(&self.identity_key.0, &self.next_incarnation.to_le_bytes());
                let i = u64::from_le_bytes(tag.as_ref()[..8].try_into().expect("8 bytes"));
                self.incarnations.insert(name, i);
                i
            }
        };
        GlobalId {
            home: self.node.clone(),
            port: u64::from(name),
            incarnation,
        }
    }

    /// The local port a right with identity `g` names, when `g` is a port of
    /// this node that netmsg still exports (it came home by another path).
    fn home_port(&self, g: &GlobalId) -> Option<Name> {
        if let Some(&port) = self.adopted_port.get(g) {
            return Some(port);
        }
        let name = Name::try_from(g.port).ok()?;
        (g.home == self.node
            && self.incarnations.get(&name) == Some(&g.incarnation)
            && !self.forwarders.contains_key(&name))
        .then_some(name)
    }

    /// Counts one more send right of `name` (netmsg holds one reference in
    /// `name` already) for `peer`, keeping one reference per live export:
    /// the export's ID, and whether the export is new.
    fn export_send(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        name: Name,
    ) -> Result<(u64, bool), TranslateError> {
        let existed = self
            .peer(peer)
            .ledger
            .live_export(u64::from(name))
            .is_some();
        let id = self.peer(peer).ledger.export(u64::from(name));
        if existed {
            kr(
                "drop extra reference",
                k.port_mod_refs(self.task, name, PortRight::Send as u32, -1),
            )?;
        } else {
            self.request_dead_name(k, name)?;
        }
        Ok((id, !existed))
    }

    /// The live one-shot exports to `peer` whose send-once rights are to the
    /// port netmsg holds send right `name` to (they could not name its new
    /// export's stream when they left). Only a peer's first
    /// [`ONCE_EXPORTS_LOOKED_AT`] are looked at: a new send export costs at
    /// most that many lookups.
    fn once_exports_of(&self, k: &Kernel, peer: PeerId, name: Name) -> Vec<u64> {
        let task = self.task;
        self.peers[&peer]
            .ledger
            .once_exports()
            .take(ONCE_EXPORTS_LOOKED_AT)
            .filter(|&(right, _)| k.same_port(task, right as Name, task, name))
            .map(|(_, id)| id)
            .collect()
    }

    fn request_dead_name(&mut self, k: &mut Kernel, name: Name) -> Result<(), TranslateError> {
        let (notify, disposition) = match self.spare_notify_rights.pop() {
            Some(right) => (right, msg_type::MOVE_SEND_ONCE),
            None => (self.notify, msg_type::MAKE_SEND_ONCE),
        };
        let previous = kr(
            "dead-name request",
            k.port_request_notification(
                self.task,
                name,
                notify_id::DEAD_NAME,
                1,
                notify,
                disposition,
            ),
        )?;
        self.spare_notify_right(k, previous);
        Ok(())
    }

    /// Cancels the dead-name request on `name` before netmsg moves the right
    /// out of its space (moving it with the request on would send netmsg a
    /// port-deleted notification).
    fn cancel_dead_name(&mut self, k: &mut Kernel, name: Name) {
        // (A dead name's request has fired already: nothing to cancel.)
        if let Ok(previous) =
            k.port_request_notification(self.task, name, notify_id::DEAD_NAME, 0, NAME_NULL, 0)
        {
            self.spare_notify_right(k, previous);
        }
    }

    fn spare_notify_right(&mut self, k: &mut Kernel, right: Name) {
        if right == NAME_NULL {
            return;
        }
        if self.spare_notify_rights.len() < SPARE_NOTIFY_RIGHTS {
            self.spare_notify_rights.push(right);
        } else {
            let _ = k.port_deallocate(self.task, right);
        }
    }

    /// Per-stream records kept now: messages written and delivered per
    /// stream, and the causal holds' positions and tombstones. They end
    /// with their stream (one-shot streams keep none), so a link's many
    /// RPCs and short-lived ports leave nothing behind.
    pub fn stream_records(&self) -> usize {
        self.written.len()
            + self.once_written.len()
            + self.delivered.len()
            + self.once_delivered.len()
            + self.holds.records()
    }

    /// Per-stream records left with no export or import for them, for the
    /// simulator's clean check: moved ports' streams keep a tombstone (and
    /// their lanes' counts) by design, other streams nothing.
    pub(crate) fn stray_stream_records(&self) -> Vec<String> {
        let moved = |port: u64| port & crate::release::MOVED_ID_BIT != 0;
        let live_import = |peer: PeerId, id: u64| {
            self.peers
                .get(&peer)
                .is_some_and(|p| p.ledger.proxy_of(id).is_some())
        };
        let live_export = |peer: &str, id: u64| {
            self.known_peer(peer)
                .and_then(|peer| self.peers.get(&peer))
                .is_some_and(|p| p.ledger.export_target(id).is_some())
        };
        let written = self
            .written
            .keys()
            .filter(|&&(peer, id)| !live_import(peer, id))
            .map(|&(peer, id)| format!("written to {} on {id}", self.peer_name(peer)));
        let delivered = self
            .delivered
            .keys()
            .chain(self.holds.positions())
            .filter(|l| !moved(l.port) && !live_export(&l.node, l.port))
            .map(|l| format!("position of {l:?}"));
        written.chain(delivered).collect()
    }

    /// Send-once rights netmsg keeps to its own notify port, for the next
    /// dead-name requests (names in its space besides its port set and
    /// notify port, and apart from any peer's state).
    pub(crate) fn spare_notify_rights(&self) -> usize {
        self.spare_notify_rights.len()
    }

    /// Used one-shot proxies netmsg keeps for the next one-shot imports.
    pub(crate) fn spare_proxies(&self) -> usize {
        self.spare_proxies.len()
    }

    /// Releases every right in a message netmsg received and will not forward.
    fn destroy_received(&mut self, k: &mut Kernel, msg: &Message) {
        // (A received PORT_* type is the MOVE_* disposition `drop_held` takes.)
        if msg.remote_type() != 0 {
            self.drop_held(k, msg.remote_port, msg.remote_type());
        }
        for item in &msg.body {
            if let Payload::Names(names) = &item.payload {
                for &n in names {
                    self.drop_held(k, n, item.type_name);
                }
            }
        }
    }

    // ----- peer → local ------------------------------------------------------------

    /// A frame from `peer` on the stream of export `id`. Frames toward this
    /// node's exports (messages, releases) wait in their stream's lane while a
    /// message there waits for a right's watermark (`crate::causal`).
    pub fn on_frame(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        id: u64,
        frame: StreamFrame,
    ) -> Result<Vec<Out>, TranslateError> {
        let mut out = Vec::new();
        if !self.behind_sends.is_empty() {
            self.deliver_behind_sends(k, &mut out)?;
        }
        let to_my_export = match &frame {
            StreamFrame::Message(_) | StreamFrame::LaneEnded { .. } | StreamFrame::Moved(_) => true,
            StreamFrame::Release(f) => {
                matches!(f, Frame::Release { .. } | Frame::SendOnceDestroyed { .. })
            }
        };
        if !to_my_export {
            self.on_stream_frame(k, peer, id, frame, &mut out)?;
            return Ok(out);
        }
        let waits = self.arrival_waits(peer, id, &frame);
        // A forwarded message is in its origin's lane of the stream.
        let origin = match &frame {
            StreamFrame::Message(m) => m.origin.clone(),
            StreamFrame::LaneEnded { origin, .. } => Some(origin.clone()),
            StreamFrame::Release(_) | StreamFrame::Moved(_) => None,
        };
        // (The common case, with nothing held anywhere: the frame is the
        // next to handle, so it is handled at once, as the holds would.)
        if waits.is_empty()
            && origin.is_none()
            && self.holds.held() == 0
            && matches!(frame, StreamFrame::Message(_))
        {
            self.handle_ready(k, peer, id, frame, &mut out)?;
            self.handle_freed(k, &mut out)?;
            return Ok(out);
        }
        let mut waits = waits;
        // On a moved port's stream, under an embargo or not, what the sender
        // relayed in others' lanes reached the port after the messages
        // queued on it (one kernel would have queued it behind them): it
        // waits for the queue's end in the sender's own lane.
        if origin.is_some() && matches!(frame, StreamFrame::Message(_)) {
            let own = StreamKey::stream(self.peer_shared(peer), id);
            let at = self.delivered.get(&own).copied().unwrap_or(0);
            let queue_coming = if let Some(e) = self.embargoes.get_mut(&(peer, id)) {
                e.relayed_held |= at < e.queue_end;
                at < e.queue_end
            } else if let Some(q) = self.queue_orders.get_mut(&(peer, id)) {
                q.waiting |= at < q.end;
                at < q.end
            } else {
                false
            };
            if queue_coming {
                waits.push(Wait {
                    stream: queue_sent(self.peer_name(peer), id),
                    position: 1,
                    kind: WaitKind::Order,
                });
            }
        }
        if let StreamFrame::Release(Frame::Release { .. }) = &frame {
            // The export ends after every message before it on the stream,
            // forwarded ones in their lanes included (which hold messages
            // only; the peer's own lane keeps its order anyway).
            let name = self.peer_name(peer);
            let forwarded = |l: &StreamKey| *l.node == *name && l.port == id && l.origin.is_some();
            let message = |f: &StreamFrame| matches!(f, StreamFrame::Message(_));
            for (lane, queued) in self.holds.holding(forwarded, message) {
                let position = self.delivered.get(&lane).copied().unwrap_or(0) + queued as u64;
                waits.push(Wait {
                    stream: lane,
                    position,
                    kind: WaitKind::Firm,
                });
            }
        }
        let lane = StreamKey {
            node: self.peer_shared(peer),
            port: id,
            origin,
        };
        self.holds.lane_seen(&lane);
        self.holds.arrive(lane, frame, waits);
        self.handle_freed(k, &mut out)?;
        Ok(out)
    }

    /// An embargo whose messages wait, through the holds, on the moved
    /// port's own receive right (which waits for the embargo) can never
    /// end: it is given up (the moved port keeps its own name). True if one
    /// was.
    fn break_embargo_cycle(
        &mut self,
        k: &mut Kernel,
        out: &mut Vec<Out>,
    ) -> Result<bool, TranslateError> {
        if self.embargoes.is_empty() {
            return Ok(false);
        }
        let unmet_of = |e: &Embargoed| -> Vec<StreamKey> {
            e.waits
                .iter()
                .filter(|(lane, n)| self.delivered.get(lane).copied().unwrap_or(0) < *n)
                .map(|(lane, _)| lane.clone())
                .collect()
        };
        // A moved port's readiness waits, under an embargo, on the
        // embargo's lanes: cycles may run through several embargoes.
        let behind = |s: &StreamKey| -> Vec<StreamKey> {
            if *s == queue_sent(&s.node, s.port) {
                return vec![StreamKey::stream(s.node.clone(), s.port)];
            }
            if *s != port_ready(&s.node, s.port) {
                return Vec::new();
            }
            let Some(peer) = self.known_peer(&s.node) else {
                return Vec::new();
            };
            self.embargoes
                .get(&(peer, s.port))
                .map(unmet_of)
                .unwrap_or_default()
        };
        // What was relayed waits for the queue, unless the queue waits for
        // it (a right queued whose positions name a relayed message: sent
        // before it, so one kernel would have queued it first): then the
        // relayed frames go, in their lanes.
        let relayed_first: Vec<StreamKey> = self
            .embargoes
            .iter()
            .filter(|(_, e)| e.relayed_held)
            .filter_map(|(&(peer, id), e)| {
                let own = StreamKey::stream(self.peer_shared(peer), id);
                let key = queue_sent(self.peer_name(peer), id);
                (self.delivered.get(&own).copied().unwrap_or(0) < e.queue_end
                    && self.holds.depends_on(&[own], |s| *s == key, behind))
                .then_some(key)
            })
            .collect();
        if !relayed_first.is_empty() {
            for key in relayed_first {
                self.holds.advanced(key, 1);
            }
            return Ok(true);
        }
        // Streams stalled on a full queue whose receive right netmsg holds
        // (staged, or in a message held here): a task holding it instead
        // will make room. (One in a message in a kernel queue of a port
        // netmsg holds is not seen: the embargo clock gives that up.)
        let mut blocked = std::collections::BTreeSet::new();
        for (peer, id, _) in self.blocked.values() {
            let port = self
                .peers
                .get(peer)
                .and_then(|p| p.ledger.export_target(*id))
                .map(|t| t.port as Name);
            let netmsgs = port.is_some_and(|port| {
                k.port_type(self.task, port)
                    .is_ok_and(|t| t & port_type::RECEIVE != 0)
            });
            if netmsgs {
                blocked.insert((self.peer_name(*peer), *id));
            }
        }
        let stuck = self.embargoes.iter().find_map(|(key, e)| {
            let unmet = unmet_of(e);
            let ready = port_ready(self.peer_name(key.0), key.1);
            // What the lanes wait for is on a stream not read while its
            // message waits for room in a full queue, whose receive right
            // may be in a message behind the carrying one.
            let blocked = |s: &StreamKey| blocked.contains(&(&*s.node, s.port));
            self.holds
                .depends_on(&unmet, |s| *s == ready || blocked(s), behind)
                .then_some(*key)
        });
        let Some(key) = stuck else {
            return Ok(false);
        };
        self.abandon_embargo(k, key, None, out)?;
        Ok(true)
    }

    /// Handles frames freed from their holds, and those they free, in order,
    /// giving up embargoes that can no longer end (a frame handled may have
    /// started one whose lanes wait on its own port).
    fn handle_freed(&mut self, k: &mut Kernel, out: &mut Vec<Out>) -> Result<(), TranslateError> {
        self.run_ready(k, out)?;
        while self.break_embargo_cycle(k, out)? {
            self.run_ready(k, out)?;
        }
        Ok(())
    }

    fn run_ready(&mut self, k: &mut Kernel, out: &mut Vec<Out>) -> Result<(), TranslateError> {
        while let Some((
            StreamKey {
                node: name,
                port: id,
                ..
            },
            frame,
        )) = self.holds.next_ready()
        {
            if let StreamFrame::LaneEnded { id: ended, origin } = frame {
                if ended != id {
                    return Err(TranslateError::Protocol {
                        peer: name.to_string(),
                        reason: format!("lane end for export {ended} on the stream of {id}"),
                    });
                }
                self.holds.lane_ended(StreamKey {
                    node: name,
                    port: id,
                    origin: Some(origin),
                });
                continue;
            }
            // (Every held frame came on a link: its peer has a handle.)
            let peer = self.peer_id(&name);
            self.handle_ready(k, peer, id, frame, out)?;
        }
        Ok(())
    }

    /// Handles a frame free to go (of `peer`'s stream `id`), and what it
    /// advanced or closed.
    fn handle_ready(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        id: u64,
        frame: StreamFrame,
        out: &mut Vec<Out>,
    ) -> Result<(), TranslateError> {
        if let Some((sequence, position)) = self.on_stream_frame(k, peer, id, frame, out)? {
            self.holds.advanced(sequence, position);
        }
        for (peer, port) in std::mem::take(&mut self.closed) {
            self.forwarded_at.remove(&(peer, port));
            let node = &*self.peer_names[peer.0 as usize];
            // No wait is made on a send export's stream once the export is
            // gone (`arrival_waits` targets live exports), so it leaves no
            // record; a moved port's stream keeps a tombstone, as a right
            // coming home to it waits for its `Moved` frame.
            let tombstone = port & crate::release::MOVED_ID_BIT != 0;
            if !self.once_delivered.is_empty() {
                self.once_delivered.remove(&(peer, port));
            }
            if !tombstone {
                for lane in crate::causal::stream_lanes(&self.delivered, node, port) {
                    self.delivered.remove(&lane);
                }
            }
            self.holds.stream_closed(node, port, tombstone);
        }
        Ok(())
    }

    /// What a message toward export `id` waits for: rights coming home wait
    /// for the messages written before they left (their watermark), and with
    /// rights reaching their home by another path, for where the messages sent
    /// along their way stand; at the port's home, the message's dependencies.
    fn arrival_waits(&self, peer: PeerId, id: u64, frame: &StreamFrame) -> Vec<Wait> {
        let StreamFrame::Message(m) = frame else {
            return Vec::new();
        };
        let target = |peer: PeerId, id: u64| {
            self.peers
                .get(&peer)
                .and_then(|p| p.ledger.export_target(id))
                .filter(|t| !t.dead && !t.once && !self.proxies.contains_key(&(t.port as Name)))
                .map(|t| t.port as Name)
        };
        // A dependency is about a local port's order: it names a stream into
        // this node of an export of that port (others are not this node's
        // to check, and are dropped).
        let wait = |port: Name, d: &Dependency| {
            let via = self.known_peer(&d.via);
            (d.home == self.node && via.and_then(|via| target(via, d.port)) == Some(port)).then(
                || Wait {
                    stream: StreamKey {
                        node: d.via.as_str().into(),
                        port: d.port,
                        origin: d.origin.clone(),
                    },
                    position: d.position,
                    kind: WaitKind::Order,
                },
            )
        };
        let mut waits: Vec<Wait> = match target(peer, id) {
            Some(port) => m
                .dependencies
                .iter()
                .filter_map(|d| wait(port, d))
                .collect(),
            None => Vec::new(),
        };
        // (A send export's stream leaves no record once the export is gone:
        // a right coming home through it then waits for nothing.)
        let gone = |id: u64| {
            id & crate::release::MOVED_ID_BIT == 0
                && self
                    .peers
                    .get(&peer)
                    .is_none_or(|p| p.ledger.export_target(id).is_none())
        };
        waits.extend(
            home_waits(self.peer_name(peer), m)
                .into_iter()
                .filter(|w| !gone(w.stream.port)),
        );
        for r in rights_of(m) {
            // A moved port is made by the first frame on its stream: a right
            // coming home to it (which may have overtaken that frame through
            // a forwarder) waits for it; its receive right waits for the
            // port to be ready (after an embargo, the port is a proxy that
            // was here before: rights coming home meanwhile name that).
            match r.reference {
                WireRef::MovedReceive { id, .. } => waits.push(Wait {
                    stream: port_ready(self.peer_name(peer), id),
                    position: 1,
                    kind: WaitKind::Needs,
                }),
                WireRef::ReceiverExport { id } if id & crate::release::MOVED_ID_BIT != 0 => waits
                    .push(Wait {
                        stream: StreamKey::stream(self.peer_shared(peer), id),
                        position: 1,
                        kind: WaitKind::Needs,
                    }),
                _ => {}
            }
            // (A right coming home to a proxy of this node is not home yet:
            // its positions travel on with it.)
            let home = match &r.reference {
                WireRef::ReceiverExport { id } => target(peer, *id),
                WireRef::SenderExport { global, .. } => self.home_port(global),
                _ => None,
            };
            if let Some(port) = home {
                waits.extend(r.after.iter().filter_map(|d| wait(port, d)));
            }
        }
        // A message to a dead port is destroyed, in any order (see
        // `Holds::port_died`).
        let dead = self
            .peers
            .get(&peer)
            .and_then(|p| p.ledger.export_target(id))
            .is_some_and(|t| t.dead);
        if dead {
            waits.retain(|w| w.kind != WaitKind::Order);
        }
        waits
    }

    /// Handles a frame; for one that advances a sequence others may wait on
    /// (a delivered message, a mark arrived home), that sequence and position.
    fn on_stream_frame(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        id: u64,
        frame: StreamFrame,
        out: &mut Vec<Out>,
    ) -> Result<Option<(StreamKey, u64)>, TranslateError> {
        match frame {
            StreamFrame::Message(m) => {
                // A one-shot export's stream carries one message and is never
                // waited on (`arrival_waits` targets send exports): no
                // position is kept for it.
                let lane = (id & crate::release::SEND_ONCE_ID_BIT == 0).then(|| StreamKey {
                    node: self.peer_shared(peer),
                    port: id,
                    origin: m.origin.clone(),
                });
                // A flush marker of this node's goes no further (no task
                // sees it), wherever it arrives.
                let marker = self.own_marker(&m);
                let once_on_stream = m.once.is_some() && m.origin.is_none() && lane.is_some();
                if marker.is_none() {
                    self.deliver(k, peer, id, m, out)?;
                }
                if once_on_stream {
                    *self.once_delivered.entry((peer, id)).or_insert(0) += 1;
                }
                let position = lane.map(|lane| {
                    let n = match self.delivered.get_mut(&lane) {
                        Some(n) => {
                            *n += 1;
                            *n
                        }
                        None => {
                            self.delivered.insert(lane.clone(), 1);
                            1
                        }
                    };
                    (lane, n)
                });
                if let Some(number) = marker {
                    self.marker_back(k, number, position.clone(), out)?;
                }
                // (Moved ports waiting for their receiver are rare: no key
                // is made for each message otherwise.)
                let unclaimed = if self.unclaimed.is_empty() {
                    None
                } else {
                    self.unclaimed.get(&(peer, id)).copied()
                };
                if let Some(port) = unclaimed {
                    if self.staged.contains_key(&port) {
                        let taken = self.take_queue(k, port)?;
                        if let Some(staged) = self.staged.get_mut(&port) {
                            staged.queue.extend(taken);
                        }
                    }
                }
                // (The common case has no embargo: no lookup then.)
                if let (false, Some((lane, n))) = (self.embargoes.is_empty(), &position) {
                    let queue_in = lane.origin.is_none()
                        && self
                            .embargoes
                            .get(&(peer, id))
                            .is_some_and(|e| e.relayed_held && *n == e.queue_end);
                    if queue_in {
                        self.holds.advanced(queue_sent(self.peer_name(peer), id), 1);
                    }
                }
                if let (false, Some((lane, n))) = (self.queue_orders.is_empty(), &position) {
                    if lane.origin.is_none() {
                        if let Some(q) = self.queue_orders.get_mut(&(peer, id)) {
                            q.ticks = 0;
                            if *n >= q.end {
                                self.end_queue_order((peer, id));
                            }
                        }
                    }
                }
                self.end_embargo_if_back(k, peer, id, out)?;
                return Ok(position);
            }
            // (Handled in lane order by `run_ready`.)
            StreamFrame::LaneEnded { .. } => {}
            StreamFrame::Moved(m) => {
                self.on_moved(k, peer, id, m, out)?;
                let lane = StreamKey::stream(self.peer_shared(peer), id);
                let n = self.delivered.entry(lane.clone()).or_insert(0);
                *n += 1;
                let n = *n;
                if self.embargoes.contains_key(&(peer, id)) {
                    self.end_embargo_if_back(k, peer, id, out)?;
                } else {
                    // The port is ready: its receive right waits for this.
                    self.holds.advanced(port_ready(self.peer_name(peer), id), 1);
                }
                return Ok(Some((lane, n)));
            }
            StreamFrame::Release(f) => {
                if frame_id(&f) != id {
                    return Err(TranslateError::Protocol {
                        peer: self.peer_name(peer).to_owned(),
                        reason: format!("frame for export {} on the stream of {id}", frame_id(&f)),
                    });
                }
                let release = matches!(f, Frame::Release { .. });
                let effects = self
                    .peer(peer)
                    .ledger
                    .on_frame(f)
                    .map_err(|e| protocol(self.peer_name(peer), e))?;
                self.apply(k, peer, effects, out)?;
                if release && self.peers[&peer].ledger.export_target(id).is_none() {
                    self.closed.push((peer, id));
                    self.drop_pool(k, peer, id);
                }
            }
        }
        Ok(None)
    }

    fn deliver(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        id: u64,
        m: WireMessage,
        out: &mut Vec<Out>,
    ) -> Result<(), TranslateError> {
        let Some(target) = self.peer(peer).ledger.export_target(id) else {
            return Err(TranslateError::Protocol {
                peer: self.peer_name(peer).to_owned(),
                reason: format!("message for unknown export {id}"),
            });
        };
        check_rights(&m).map_err(|reason| TranslateError::Protocol {
            peer: self.peer_name(peer).to_owned(),
            reason,
        })?;
        // A message through a one-shot export, on the stream of the peer's
        // send right to the same port: delivered as through the one-shot
        // export, in its place on this stream.
        let (id, target) = match m.once.map(u64::from) {
            None => (id, target),
            Some(once) => match self.peers[&peer].ledger.export_target(once) {
                // (Only the order is the peer's word: the right is its own
                // export's, whichever stream it comes on.)
                Some(t) if t.once && !target.once && m.dest_form == Form::SendOnce => {
                    // Behind a send of the stream that waits for room (or a
                    // message already waiting behind one), it waits too.
                    let stream = id;
                    let after = self
                        .blocked
                        .iter()
                        .filter(|(_, &(p, i, _))| p == peer && i == stream)
                        .map(|(&ticket, _)| ticket)
                        .next_back()
                        .or_else(|| {
                            self.behind_sends
                                .iter()
                                .rev()
                                .find(|b| b.peer == peer && b.stream == stream)
                                .map(|b| b.after)
                        });
                    if let Some(after) = after {
                        if !self.behind_sends.iter().any(|b| b.after == after) {
                            self.behind_waits.push(after);
                        }
                        self.behind_sends.push_back(BehindSend {
                            peer,
                            stream,
                            after,
                            once,
                            message: m,
                        });
                        return Ok(());
                    }
                    (once, t)
                }
                _ => {
                    return Err(TranslateError::Protocol {
                        peer: self.peer_name(peer).to_owned(),
                        reason: format!(
                            "message through one-shot export {once} on the stream of {id}"
                        ),
                    })
                }
            },
        };
        self.deliver_to(k, peer, id, target, m, out)
    }

    /// Delivers message `m` from `peer` through its export `id` (`target`).
    fn deliver_to(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        id: u64,
        target: crate::release::ExportTarget,
        m: WireMessage,
        out: &mut Vec<Out>,
    ) -> Result<(), TranslateError> {
        if target.once {
            let effects = self
                .peer(peer)
                .ledger
                .send_once_used(id)
                .map_err(|e| protocol(self.peer_name(peer), e))?;
            self.apply(k, peer, effects, out)?;
        }
        let mut held = HeldRights::new();
        let bytes = m.size_hint();
        let result = self.place_and_send(k, peer, id, target, m, out, &mut held);
        match result {
            Ok(Placed::Blocked(ticket)) => {
                self.blocked.insert(ticket, (peer, id, bytes));
            }
            Ok(Placed::Forwarded {
                own: true,
                position,
                ref upstream,
                import,
            }) => {
                let nth = self
                    .delivered
                    .get(&StreamKey::stream(self.peer_shared(peer), id))
                    .copied()
                    .unwrap_or(0)
                    + 1;
                self.record_forwarded(peer, id, nth, position, *upstream, import);
            }
            _ => {}
        }
        if result.is_err() {
            // A right the peer got wrong: what was placed goes, as if the
            // message had been destroyed.
            for (name, disposition) in held {
                self.drop_held(k, name, disposition);
            }
        }
        result.map(drop)
    }

    /// The positions a right in a message this node forwards keeps: those it
    /// came with, and [`Translator::forwarded_position`].
    fn forwarded_after(&self, peer: PeerId, r: &WireRight) -> Vec<Dependency> {
        let mut after = r.after.clone();
        after.extend(self.forwarded_position(peer, r));
        after
    }

    /// For a right from `peer` coming home here to a proxy of this node (so
    /// it leaves again): where the messages the peer wrote to it before it
    /// left (its watermark) went on, the peer's lane in this node's stream to
    /// the port's home. (The right was held until those were handled, so they
    /// have all been forwarded by now.)
    fn forwarded_position(&self, peer: PeerId, r: &WireRight) -> Option<Dependency> {
        let WireRef::ReceiverExport { id } = r.reference else {
            return None;
        };
        let target = self.peers.get(&peer)?.ledger.export_target(id)?;
        let (upstream, import) = self.relay_of(&target)?;
        let direct = self
            .proxy_global
            .get(&(target.port as Name))
            .is_some_and(|g| self.leads_home(target.port as Name, upstream, g));
        if r.watermark == 0 || !direct {
            return None;
        }
        let position = self.forwarded_position_of(peer, id, r.watermark, upstream, import)?;
        Some(Dependency {
            via: self.node.clone(),
            home: self.peer_name(upstream).to_owned(),
            port: import,
            origin: Some(Origin {
                node: self.peer_name(peer).to_owned(),
                era: self.era(peer),
            }),
            position,
        })
    }

    /// Notes that `peer`'s `nth` own message on the stream of export `id`
    /// was forwarded as its lane's `position`-th.
    fn record_forwarded(
        &mut self,
        peer: PeerId,
        id: u64,
        nth: u64,
        position: u64,
        upstream: PeerId,
        import: u64,
    ) {
        let runs = self.forwarded_at.entry((peer, id)).or_default();
        match runs.back_mut() {
            Some(r)
                if r.first + r.count == nth
                    && r.position + r.count == position
                    && r.upstream == upstream
                    && r.import == import =>
            {
                r.count += 1
            }
            _ => {
                runs.push_back(ForwardRun {
                    first: nth,
                    position,
                    count: 1,
                    upstream,
                    import,
                });
                // A bound on memory: a right whose watermark falls before
                // the oldest run kept gets no position (see protocol.md).
                if runs.len() > MAX_FORWARD_RUNS {
                    runs.pop_front();
                }
            }
        }
    }

    /// The lane position of the last of `peer`'s first `watermark` own
    /// messages on export `id`'s stream that was forwarded.
    /// Where the last of the peer's messages up to its `watermark`-th on
    /// stream `id` that this node forwarded went: its position in the
    /// peer's lane of `upstream`'s stream `import`. None when that was on
    /// another stream (the port moved since): those are not before the
    /// current stream's messages anyway.
    fn forwarded_position_of(
        &self,
        peer: PeerId,
        id: u64,
        watermark: u64,
        upstream: PeerId,
        import: u64,
    ) -> Option<u64> {
        let runs = self.forwarded_at.get(&(peer, id))?;
        let r = runs.iter().rev().find(|r| r.first <= watermark)?;
        (r.upstream == upstream && r.import == import)
            .then(|| r.position + (watermark - r.first).min(r.count - 1))
    }

    /// Where a message to export `target` is forwarded, when its port is one
    /// of netmsg's live send proxies: the proxy's upstream and import ID.
    fn relay_of(&self, target: &crate::release::ExportTarget) -> Option<(PeerId, u64)> {
        if target.once || target.dead {
            return None;
        }
        self.relay_of_port(target.port as Name)
    }

    fn relay_of_port(&self, port: Name) -> Option<(PeerId, u64)> {
        let (upstream, proxy) = self.proxies.get(&port)?;
        if proxy.once {
            return None;
        }
        let import = self
            .peers
            .get(upstream)?
            .ledger
            .proxy_import_id(proxy.handle)?;
        Some((*upstream, import))
    }

    #[allow(clippy::too_many_arguments)]
    fn place_and_send(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        id: u64,
        target: crate::release::ExportTarget,
        m: WireMessage,
        out: &mut Vec<Out>,
        held: &mut HeldRights,
    ) -> Result<Placed, TranslateError> {
        // A message the peer's forwarder received through a send-once right
        // goes through one of the moved port's (also when the port moved on:
        // through its queue, as the right left behind would).
        let pool_right = if !target.once && m.dest_form == Form::SendOnce {
            // (This node's own message, back from the peer: see
            // `dissolve_pool`.)
            let own = m.origin.as_ref().is_some_and(|o| o.node == self.node);
            let back = if own {
                self.own_send_once_back(k, peer, id, target.port as Name)?
                    .or_else(|| take_right(&mut self.returning_pool, (peer, id)))
            } else {
                None
            };
            back.or_else(|| self.take_pool_right(peer, id))
        } else {
            None
        };
        let relay = match pool_right {
            Some(_) => None,
            None => self.relay_of(&target),
        };
        if m.marker && relay.is_none() {
            // A flush marker that reaches a port here is not this node's:
            // its maker gave its embargo up (and the port moved on).
            return Ok(Placed::Done);
        }
        // Positions the rights carry, for a message forwarded.
        let afters: Vec<Vec<Dependency>> = match relay {
            Some(_) => rights_of(&m)
                .map(|r| self.forwarded_after(peer, r))
                .collect(),
            None => Vec::new(),
        };
        // A reply right delivered here (not forwarded on) is made from its
        // proxy by the kernel as the message goes in: no name for it first.
        let made_reply = match &m.reply {
            Some(r) if relay.is_none() => {
                let placed = self.import_right_as(k, peer, r, out, true)?;
                held.push(placed);
                Some(placed)
            }
            _ => None,
        };
        // Rights first become rights netmsg holds, so that a message that
        // cannot be delivered releases them like any destroyed message.
        let mut place = |this: &mut Self, k: &mut Kernel, r: &WireRight, out: &mut Vec<Out>| {
            let placed = this.import_right(k, peer, r, out);
            if let Ok(p) = &placed {
                held.push(*p);
            }
            placed
        };
        let reply = match (&m.reply, made_reply) {
            (_, Some(placed)) => Some(placed),
            (Some(r), None) => Some(place(self, k, r, out)?),
            (None, None) => None,
        };
        let mut body = Vec::with_capacity(m.items.len());
        for item in m.items {
            body.push(match item {
                // (`check_rights` saw every right has its item's form.)
                WireItem::Rights {
                    form,
                    inline,
                    longform,
                    deallocate,
                    rights,
                } => {
                    let mut names = Vec::with_capacity(rights.len());
                    for r in &rights {
                        names.push(place(self, k, r, out)?.0);
                    }
                    Item {
                        type_name: move_disposition(form),
                        size: 32,
                        number: names.len() as u32,
                        inline,
                        longform,
                        deallocate,
                        payload: Payload::Names(names),
                    }
                }
                data => data.into_data_item().expect("a data item"),
            });
        }
        let (dest_name, dest_disposition) = match pool_right {
            Some(right) => (right, msg_type::MOVE_SEND_ONCE),
            None if target.once => (target.port as Name, msg_type::MOVE_SEND_ONCE),
            None => (target.port as Name, msg_type::COPY_SEND),
        };
        let (reply_name, reply_disposition) = reply.unwrap_or((NAME_NULL, 0));
        if let Some((upstream, import)) = relay {
            // The message as netmsg would receive it from the proxy (reply in
            // the remote field; MOVE_* is PORT_*), leaving the same way, but
            // in the origin's own lane rather than behind the proxy's queue.
            let mut received = Message::new(
                reply_name,
                reply_disposition,
                target.port as Name,
                msg_type::PORT_SEND,
                m.id,
                body,
            );
            received.bits |= m.other_bits;
            held.clear();
            let mut wire = self.outgoing(k, upstream, received, out)?;
            wire.marker = m.marker;
            // The rights keep the positions of their way here only: what
            // this node itself sent to those ports is not before them.
            for (sent, after) in rights_of_mut(&mut wire).zip(afters) {
                sent.watermark = 0;
                sent.after = match sent.reference {
                    WireRef::Null
                    | WireRef::Dead
                    | WireRef::MovedReceive { .. }
                    | WireRef::OnceExport { .. } => Vec::new(),
                    _ => after,
                };
            }
            wire.dependencies.extend(m.dependencies);
            let own = m.origin.is_none();
            let origin = m.origin.unwrap_or_else(|| Origin {
                node: self.peer_name(peer).to_owned(),
                era: self.era(peer),
            });
            // Back to the node that sent it through a send-once right to its
            // forwarder, whose pool here went with the port (`dissolve_pool`):
            // it arrives there through a send-once right again.
            if m.dest_form == Form::SendOnce && origin.node == self.peer_name(upstream) {
                wire.dest_form = Form::SendOnce;
            }
            let position = self
                .forwarded
                .entry((upstream, import, origin.clone()))
                .or_insert(0);
            *position += 1;
            // Under an embargo another peer's messages still go the old way,
            // in their lane (where that peer counts them), and the hand-over
            // waits for them to come back too.
            if let Some(key) = self.embargoed.get(&(target.port as Name)) {
                let lane = StreamKey {
                    node: self.peer_names[key.0 .0 as usize].clone(),
                    port: key.1,
                    origin: Some(origin.clone()),
                };
                let arrived = self.delivered.get(&lane).copied().unwrap_or(0);
                if let Some(e) = self.embargoes.get_mut(key) {
                    // (Behind a marker still on its way, it is counted from
                    // where the marker arrives.)
                    let marked = e
                        .markers
                        .iter_mut()
                        .find(|m| m.lane.as_ref() == Some(&origin));
                    match (marked, e.waits.iter_mut().find(|(l, _)| *l == lane)) {
                        (Some(marker), _) => marker.behind += 1,
                        (None, Some((_, n))) => *n += 1,
                        (None, None) => e.waits.push((lane, arrived + 1)),
                    }
                }
            }
            let placed = Placed::Forwarded {
                own,
                position: *position,
                upstream,
                import,
            };
            wire.origin = Some(origin);
            out.push(Out {
                peer: upstream,
                id: import,
                frame: StreamFrame::Message(wire),
            });
            return Ok(placed);
        }
        let mut msg = Message::new(
            dest_name,
            dest_disposition,
            reply_name,
            reply_disposition,
            m.id,
            body,
        );
        msg.bits |= m.other_bits;
        // Sent (or queued behind a full queue, where the kernel admits blocked
        // sends in order), the rights are the receiver's; not sent (the port
        // is dead, or died under netmsg), they are destroyed with the message.
        let mut header_refused = true;
        let sent = if target.dead {
            None
        } else {
            if target.once {
                self.cancel_dead_name(k, target.port as Name);
            }
            let result = k.send(self.task, msg, true);
            // (Refused at its header, the message made no right; refused
            // later, the kernel destroyed the rights it had made.)
            header_refused = matches!(&result, Err(e) if matches!(
                e.code,
                mach::MsgReturn::SendInvalidDest
                    | mach::MsgReturn::SendInvalidReply
                    | mach::MsgReturn::SendInvalidHeader
            ));
            let sent = result.ok();
            // Not sent, the right stays here: it wants its request back.
            if sent.is_none()
                && target.once
                && k.port_type(self.task, target.port as Name)
                    .is_ok_and(|t| t & port_type::SEND_ONCE != 0)
            {
                self.request_dead_name(k, target.port as Name)?;
            }
            sent
        };
        if sent.is_none() {
            for (name, disposition) in held.drain(..) {
                if disposition == msg_type::MAKE_SEND_ONCE && !header_refused {
                    continue;
                }
                self.drop_held(k, name, disposition);
            }
            // (Dead with its port, or left by the refused send.)
            if let Some(right) = pool_right {
                let _ = k.port_deallocate(self.task, right);
            }
            // A one-shot export's send-once right was to be used by this
            // message; its port died (the kernel refused it as destination
            // and left it here as a dead name): it goes now, as its dead-name
            // notification finds the export used.
            if target.once
                && !target.dead
                && k.port_type(self.task, target.port as Name)
                    .is_ok_and(|t| t & port_type::DEAD_NAME != 0)
            {
                let _ = k.port_deallocate(self.task, target.port as Name);
            }
            return Ok(Placed::Done);
        }
        // A right the message moved on may have been netmsg's last hold on
        // that name (see `resend`); a proxy a right was made from stays.
        for (name, disposition) in held.drain(..) {
            if disposition != msg_type::MAKE_SEND_ONCE {
                self.forget_if_freed(k, name);
            }
        }
        Ok(match sent {
            Some(SendStatus::Pending(ticket)) => Placed::Blocked(ticket),
            _ => Placed::Done,
        })
    }

    /// For a message this node sent through a send-once right to its
    /// forwarder of the port that moved here from `peer` (stream `id`) under
    /// an embargo, coming back: a send-once right made on the port (`port`,
    /// its staging port) to arrive through, as the pool the peer let go
    /// would have given (see `dissolve_pool`).
    fn own_send_once_back(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        id: u64,
        port: Name,
    ) -> Result<Option<Name>, TranslateError> {
        let Some(e) = self.embargoes.get_mut(&(peer, id)) else {
            return Ok(None);
        };
        if e.staging != port || e.own_send_once >= e.send_once {
            return Ok(None);
        }
        e.own_send_once += 1;
        let (right, _) = kr(
            "returning message's send-once right",
            k.port_extract_right(self.task, port, msg_type::MAKE_SEND_ONCE, self.task),
        )?;
        Ok(Some(right))
    }

    /// `n` more send-once rights made on `port` (whose receive right netmsg
    /// holds) for the pool of the moved port of `key`'s export.
    fn grow_pool(
        &mut self,
        k: &mut Kernel,
        key: (PeerId, u64),
        port: Name,
        n: u32,
        returning: bool,
    ) -> Result<(), TranslateError> {
        if n == 0 {
            return Ok(());
        }
        let pool = if returning {
            &mut self.returning_pool
        } else {
            &mut self.send_once_pool
        }
        .entry(key)
        .or_default();
        for _ in 0..n {
            let (right, _) = kr(
                "moved port's send-once right",
                k.port_extract_right(self.task, port, msg_type::MAKE_SEND_ONCE, self.task),
            )?;
            pool.push(right);
        }
        Ok(())
    }

    /// One of the send-once rights kept for the moved port of export `id`.
    fn take_pool_right(&mut self, peer: PeerId, id: u64) -> Option<Name> {
        take_right(&mut self.send_once_pool, (peer, id))
    }

    /// Destroys what is left of the send-once rights kept for the moved
    /// port of export `id` (its receiver gets their notifications, as for
    /// any send-once right the peer held when its way ends).
    fn drop_pool(&mut self, k: &mut Kernel, peer: PeerId, id: u64) {
        let key = (peer, id);
        let forwarder = self.send_once_pool.remove(&key).unwrap_or_default();
        let returning = self.returning_pool.remove(&key).unwrap_or_default();
        for right in forwarder.into_iter().chain(returning) {
            let _ = k.port_deallocate(self.task, right);
        }
    }

    /// A right from the wire as a right netmsg holds, with the disposition that
    /// moves it into the local message.
    fn import_right(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        r: &WireRight,
        out: &mut Vec<Out>,
    ) -> Result<(Name, u8), TranslateError> {
        self.import_right_as(k, peer, r, out, false)
    }

    /// The ledger's answer to an import of `peer`'s, its effects applied:
    /// the proxy standing for it and its handle, or `None` for a dead name.
    fn placed_import(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        imported: Result<(Imported, Effects), ReleaseError>,
        out: &mut Vec<Out>,
    ) -> Result<Option<(Name, u64)>, TranslateError> {
        let (imported, effects) = imported.map_err(|e| protocol(self.peer_name(peer), e))?;
        self.apply(k, peer, effects, out)?;
        let Imported::Proxy(handle) = imported else {
            return Ok(None);
        };
        Ok(Some((self.peers[&peer].proxy_name[&handle], handle)))
    }

    /// [`Translator::import_right`]; with `make_once`, a one-shot import is
    /// given as its proxy with `MAKE_SEND_ONCE` (the kernel makes the right
    /// as it copies the message in), for a message netmsg sends itself.
    fn import_right_as(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        r: &WireRight,
        out: &mut Vec<Out>,
        make_once: bool,
    ) -> Result<(Name, u8), TranslateError> {
        let disposition = move_disposition(r.form);
        match &r.reference {
            WireRef::Null => Ok((NAME_NULL, disposition)),
            WireRef::Dead => Ok((NAME_DEAD, disposition)),
            WireRef::OnceExport { id, port_stream } => {
                let imported = self.peer(peer).ledger.import_send_once(*id);
                let Some((proxy, _)) = self.placed_import(k, peer, imported, out)? else {
                    return Ok((NAME_DEAD, disposition));
                };
                if let Some(e) =
                    port_stream.filter(|&e| self.peers[&peer].ledger.proxy_of(e).is_some())
                {
                    self.once_along.insert(proxy, e);
                }
                if make_once {
                    return Ok((proxy, msg_type::MAKE_SEND_ONCE));
                }
                let (name, _) = kr(
                    "make send-once",
                    k.port_extract_right(self.task, proxy, msg_type::MAKE_SEND_ONCE, self.task),
                )?;
                Ok((name, disposition))
            }
            WireRef::SenderExport {
                id,
                global,
                once_exports,
            } => {
                if let Some(placed) = self.by_another_path(k, peer, *id, global, r, out)? {
                    return Ok((placed, disposition));
                }
                let imported = self.peer(peer).ledger.import(*id);
                let Some((proxy, handle)) = self.placed_import(k, peer, imported, out)? else {
                    return Ok((NAME_DEAD, disposition));
                };
                kr(
                    "make send",
                    k.port_insert_right(self.task, proxy, self.task, proxy, msg_type::MAKE_SEND),
                )?;
                self.arm_no_senders(k, peer, handle)?;
                // One-shot proxies whose messages now go on this stream.
                for &once in once_exports {
                    let p = &self.peers[&peer];
                    if let Some(&on) = p.ledger.once_proxy(once).and_then(|h| p.proxy_name.get(&h))
                    {
                        self.once_along.insert(on, *id);
                    }
                }
                self.proxy_global
                    .entry(proxy)
                    .or_insert_with(|| global.clone());
                self.canonical.entry(global.clone()).or_insert(proxy);
                if let Some(lane) = r
                    .home_stream
                    .clone()
                    .filter(|l| l.home != self.peer_name(peer))
                {
                    self.home_streams.entry(proxy).or_insert(lane);
                }
                // What this node sends through the proxy is forwarded in
                // its own lane, not behind the peer's messages: it waits
                // for them at the home.
                self.add_pending(proxy, r.after.clone());
                if let Some((_, last)) = self.retired.remove(global) {
                    self.add_pending(proxy, last);
                }
                Ok((proxy, disposition))
            }
            WireRef::MovedReceive {
                id,
                no_senders,
                port_destroyed,
            } => {
                let Some(port) = self.unclaimed.remove(&(peer, *id)) else {
                    return Err(TranslateError::Protocol {
                        peer: self.peer_name(peer).to_owned(),
                        reason: format!("receive right of moved port {id}, unknown or taken"),
                    });
                };
                self.unstage(k, port)?;
                for (request, which) in [
                    (no_senders, notify_id::NO_SENDERS),
                    (port_destroyed, notify_id::PORT_DESTROYED),
                ] {
                    let Some(request) = request else { continue };
                    let (right, _) = match self.import_right(k, peer, request, out) {
                        Ok(placed) => placed,
                        Err(e) => {
                            let _ = k.port_mod_refs(self.task, port, PortRight::Receive as u32, -1);
                            return Err(e);
                        }
                    };
                    if right != NAME_NULL && right != NAME_DEAD {
                        let previous = kr(
                            "moved notification request",
                            k.port_request_notification(
                                self.task,
                                port,
                                which,
                                0,
                                right,
                                msg_type::MOVE_SEND_ONCE,
                            ),
                        )?;
                        if previous != NAME_NULL {
                            let _ = k.port_deallocate(self.task, previous);
                        }
                    }
                }
                Ok((port, disposition))
            }
            WireRef::OnceHome { id } => {
                let (right, dead, effects) = self
                    .peer(peer)
                    .ledger
                    .once_home(*id)
                    .map_err(|e| protocol(self.peer_name(peer), e))?;
                self.apply(k, peer, effects, out)?;
                let right = right as Name;
                if dead {
                    // (Its dead name went with its dead-name notification.)
                    return Ok((NAME_DEAD, disposition));
                }
                // (If its port died with the notification still on its way,
                // the right is a dead name, which arrives as one, and the
                // notification finds the export gone.)
                self.cancel_dead_name(k, right);
                Ok((right, disposition))
            }
            WireRef::ReceiverExport { id } => {
                if r.form != Form::Send {
                    return Err(TranslateError::Protocol {
                        peer: self.peer_name(peer).to_owned(),
                        reason: format!("send-once right coming home to export {id}"),
                    });
                }
                let target = self
                    .peers
                    .get(&peer)
                    .and_then(|p| p.ledger.export_target(*id));
                let dead = target.as_ref().is_none_or(|t| t.dead);
                // Home to a proxy of this node: what the peer sent through it
                // went on in the peer's lane, and this node's next messages
                // through it (and rights to it) wait for that at the home.
                if let Some(proxy) = target.filter(|t| !t.dead).map(|t| t.port as Name) {
                    if self.relay_of_port(proxy).is_some() {
                        let deps = self.forwarded_after(peer, r);
                        self.add_pending(proxy, deps);
                    }
                }
                let (port, effects) = self.peer(peer).ledger.home_arrived(*id);
                self.apply(k, peer, effects, out)?;
                // A proxy that died with its link is a dead name before its
                // exports hear of it (its dead-name notification is queued):
                // the right arrives dead, as it would a moment later.
                let live = |k: &mut Kernel, port: Name| {
                    k.port_type(self.task, port)
                        .is_ok_and(|t| t & port_type::SEND != 0)
                };
                // One name per port: a moved port this node already named
                // arrives as that name; a forwarder of a port that moved
                // back here, as the port.
                let port = port.map(|p| p as Name);
                let embargoed = self
                    .embargoes
                    .values()
                    .find(|e| Some(e.staging) == port)
                    .map(|e| e.proxy);
                if let (Some(proxy), false) = (embargoed, dead) {
                    return Ok((self.make_on_canonical(k, proxy, Vec::new())?, disposition));
                }
                let other_name = port
                    .filter(|p| self.second_names.contains(p))
                    .and_then(|p| self.adopted.get(&p))
                    .and_then(|g| self.canonical.get(g))
                    .copied();
                if let (Some(canonical), false) = (other_name, dead) {
                    return Ok((
                        self.make_on_canonical(k, canonical, Vec::new())?,
                        disposition,
                    ));
                }
                let port = port.map(|p| {
                    self.proxy_global
                        .get(&p)
                        .and_then(|g| self.adopted_port.get(g))
                        .copied()
                        .unwrap_or(p)
                });
                match port {
                    // One more reference, for the message to move.
                    Some(port) if !dead && live(k, port) => {
                        kr(
                            "copy home right",
                            k.port_mod_refs(self.task, port, PortRight::Send as u32, 1),
                        )?;
                        Ok((port, disposition))
                    }
                    _ => Ok((NAME_DEAD, disposition)),
                }
            }
        }
    }

    /// A send right from `peer` (its export `id`) to the port `g`, when this
    /// node already reaches that port: as the local port itself, or through
    /// its one proxy for `g` from another import. The peer's right is counted
    /// and dropped; what the task gets is netmsg's right (`None`: no other
    /// path, import as usual). A proxy reached this way records the right's
    /// mark as a dependency of the next frame on its stream.
    fn by_another_path(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        id: u64,
        g: &GlobalId,
        r: &WireRight,
        out: &mut Vec<Out>,
    ) -> Result<Option<Name>, TranslateError> {
        let home = self.home_port(g);
        if home.is_some()
            || (g.home == self.node
                && !self.moved_away.contains(g)
                && !self.canonical.contains_key(g))
        {
            // A port of this node: the one it still exports under that
            // identity, or gone (while a port lives, the exports that rights
            // to it hang on keep netmsg's name and incarnation for it; once
            // they end, the port died or the way to it was lost). (One whose
            // receive right moved away is reached like any other.)
            self.drop_import(k, peer, id, out)?;
            let Some(port) = home else {
                return Ok(Some(NAME_DEAD));
            };
            let live = k
                .port_type(self.task, port)
                .is_ok_and(|t| t & port_type::SEND != 0);
            if !live {
                return Ok(Some(NAME_DEAD));
            }
            kr(
                "copy home right",
                k.port_mod_refs(self.task, port, PortRight::Send as u32, 1),
            )?;
            return Ok(Some(port));
        }
        let Some(&canonical) = self.canonical.get(g) else {
            return Ok(None);
        };
        let (upstream, proxy) = self.proxies[&canonical];
        let ledger = &self.peers[&upstream].ledger;
        if upstream == peer && ledger.proxy_import_id(proxy.handle) == Some(id) {
            return Ok(None);
        }
        self.drop_import(k, peer, id, out)?;
        self.make_on_canonical(k, canonical, r.after.clone())
            .map(Some)
    }

    /// A send right made on `canonical`, this node's one send proxy (or
    /// forwarder) for a port, for a right that reached it by another path;
    /// `after`: that right's positions, for the proxy's next message.
    fn make_on_canonical(
        &mut self,
        k: &mut Kernel,
        canonical: Name,
        after: Vec<Dependency>,
    ) -> Result<Name, TranslateError> {
        let (upstream, proxy) = self.proxies[&canonical];
        self.peer(upstream).ledger.made_extra(proxy.handle);
        kr(
            "make send",
            k.port_insert_right(
                self.task,
                canonical,
                self.task,
                canonical,
                msg_type::MAKE_SEND,
            ),
        )?;
        self.arm_no_senders(k, upstream, proxy.handle)?;
        self.add_pending(canonical, after);
        Ok(canonical)
    }

    /// The peer's right (its export `id`) is counted and released at once.
    fn drop_import(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        id: u64,
        out: &mut Vec<Out>,
    ) -> Result<(), TranslateError> {
        let effects = self
            .peer(peer)
            .ledger
            .import_dropped(id)
            .map_err(|e| protocol(self.peer_name(peer), e))?;
        self.apply(k, peer, effects, out)
    }

    /// Where the messages through a destroyed proxy of `g` stand, for the
    /// next proxy of that port (bounded: the oldest are forgotten first).
    fn retire(&mut self, g: GlobalId, last: Vec<Dependency>) {
        if last.is_empty() {
            return;
        }
        self.retired_generation += 1;
        let generation = self.retired_generation;
        self.retired.insert(g.clone(), (generation, last));
        self.retired_order.push_back((generation, g));
        while self.retired_order.len() > MAX_RETIRED {
            let Some((generation, old)) = self.retired_order.pop_front() else {
                break;
            };
            if self
                .retired
                .get(&old)
                .is_some_and(|(g, _)| *g == generation)
            {
                self.retired.remove(&old);
            }
        }
    }

    /// Dependencies for the next message written through `proxy` (and rights
    /// to it that leave): the later of two on the same lane is kept.
    fn add_pending(&mut self, proxy: Name, deps: Vec<Dependency>) {
        if deps.is_empty() {
            return;
        }
        let pending = self.pending.entry(proxy).or_default();
        for d in deps {
            let same = |p: &&mut Dependency| {
                p.via == d.via && p.home == d.home && p.port == d.port && p.origin == d.origin
            };
            match pending.iter_mut().find(same) {
                Some(p) => p.position = p.position.max(d.position),
                None => pending.push(d),
            }
        }
    }

    /// Whether a used one-shot proxy can serve the next one-shot import: no
    /// right to it is left anywhere (so no request on it either), nothing is
    /// queued, and no other table knows its name.
    fn reusable_proxy(&self, k: &mut Kernel, name: Name) -> bool {
        self.spare_proxies.len() < SPARE_PROXIES
            && !self.forwarders.contains_key(&name)
            && !self.kept.contains_key(&name)
            && !self.incarnations.contains_key(&name)
            && !self.adopted.contains_key(&name)
            && !self.embargoed.contains_key(&name)
            && k.port_get_receive_status(self.task, name).is_ok_and(|s| {
                s.msgcount == 0 && s.sorights == 0 && !s.srights && !s.pdrequest && !s.nsrequest
            })
    }

    /// Forgets a local port's incarnation once netmsg no longer holds its
    /// name (the name may be reused for another port).
    fn forget_if_freed(&mut self, k: &mut Kernel, name: Name) {
        if k.port_type(self.task, name).is_ok() {
            return;
        }
        self.incarnations.remove(&name);
        self.forget_adoption(name);
    }

    /// Names the identity tables keep although netmsg no longer holds them
    /// (a freed name may be reused, and the new port would take the old
    /// one's identity): for the simulator's oracle, after every step.
    pub(crate) fn stale_names(&self, k: &mut Kernel) -> Vec<Name> {
        let mut stale: Vec<Name> = self
            .adopted
            .keys()
            .chain(self.incarnations.keys())
            .copied()
            .filter(|&n| k.port_type(self.task, n).is_err())
            .collect();
        stale.extend(
            self.adopted_port
                .iter()
                .filter(|(g, n)| self.adopted.get(n) != Some(g))
                .map(|(_, &n)| n),
        );
        stale
    }

    fn forget_adoption(&mut self, name: Name) {
        self.second_names.remove(&name);
        if let Some(g) = self.adopted.remove(&name) {
            if self.adopted_port.get(&g) == Some(&name) {
                self.adopted_port.remove(&g);
            }
        }
    }

    /// Whether the port `task` names `name` (a receive right that moved
    /// here) got a second name on this node because it already named the
    /// port (docs/protocol.md, "Known divergences"; for the simulator).
    pub fn is_second_name(&self, k: &Kernel, task: TaskId, name: Name) -> bool {
        self.second_names
            .iter()
            .any(|&n| k.same_port(self.task, n, task, name))
    }

    fn drop_held(&mut self, k: &mut Kernel, name: Name, disposition: u8) {
        if name == NAME_NULL || name == NAME_DEAD {
            return;
        }
        if disposition == msg_type::MAKE_SEND_ONCE {
            // A one-shot import's right, never made (see `import_right_as`):
            // made and destroyed, its notification tells the home, as the
            // destroyed message would have.
            if let Ok((right, _)) =
                k.port_extract_right(self.task, name, msg_type::MAKE_SEND_ONCE, self.task)
            {
                let _ = k.port_deallocate(self.task, right);
            }
            return;
        }
        let _ = if disposition == msg_type::MOVE_RECEIVE {
            k.port_mod_refs(self.task, name, PortRight::Receive as u32, -1)
        } else {
            k.port_deallocate(self.task, name)
        };
        self.forget_if_freed(k, name);
    }

    fn arm_no_senders(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        handle: u64,
    ) -> Result<(), TranslateError> {
        let proxy = self.peers[&peer].proxy_name[&handle];
        let made = self.peers[&peer].ledger.made_on(handle).unwrap_or(0);
        // A proxy's notification queues behind its messages; a forwarder's
        // goes to its own notify port (`forwarder_unused` drains it first).
        let notify = self.forwarders.get(&proxy).copied().unwrap_or(proxy);
        let previous = kr(
            "no-senders request",
            k.port_request_notification(
                self.task,
                proxy,
                notify_id::NO_SENDERS,
                made as u32,
                notify,
                msg_type::MAKE_SEND_ONCE,
            ),
        )?;
        if previous != NAME_NULL {
            let _ = k.port_deallocate(self.task, previous);
        }
        Ok(())
    }

    // ----- the ledger's decisions ----------------------------------------------------

    fn apply(
        &mut self,
        k: &mut Kernel,
        peer: PeerId,
        effects: Effects,
        out: &mut Vec<Out>,
    ) -> Result<(), TranslateError> {
        for effect in effects {
            match effect {
                Effect::Send(frame) => {
                    let o = Out {
                        peer,
                        id: frame_id(&frame),
                        frame: StreamFrame::Release(frame),
                    };
                    out.push(o);
                }
                Effect::CreateProxy { proxy, once, id } => {
                    let spare = if once { self.spare_proxies.pop() } else { None };
                    let name = match spare {
                        Some(name) => name,
                        None => {
                            let name = kr("proxy", k.port_allocate(self.task, PortRight::Receive))?;
                            kr(
                                "proxy into set",
                                k.port_move_member(self.task, name, self.set),
                            )?;
                            name
                        }
                    };
                    self.proxy_import.insert(name, id);
                    self.peer(peer).proxy_name.insert(proxy, name);
                    self.proxies.insert(
                        name,
                        (
                            peer.to_owned(),
                            ProxyOf {
                                handle: proxy,
                                once,
                            },
                        ),
                    );
                }
                Effect::DestroyProxy { proxy } => {
                    let Some(name) = self.peer(peer).proxy_name.remove(&proxy) else {
                        continue;
                    };
                    if let Some(key) = self.embargoed.remove(&name) {
                        // (The link is lost, or the peer says the port died.)
                        self.abandon_embargo(k, key, None, out)?;
                    }
                    let once = self.proxies.remove(&name).is_some_and(|(_, p)| p.once);
                    // (Most nodes keep neither: no hashing for them.)
                    if once && !self.once_along.is_empty() {
                        self.once_along.remove(&name);
                    }
                    if !self.requeued.is_empty() {
                        self.requeued.remove(&name);
                    }
                    let import = self.proxy_import.remove(&name);
                    let mut last = self.pending.remove(&name).unwrap_or_default();
                    if let Some(g) = self.proxy_global.remove(&name) {
                        let wrote = import
                            .is_some_and(|i| self.written.get(&(peer, i)).is_some_and(|&n| n > 0));
                        if self.canonical.get(&g) == Some(&name) {
                            self.canonical.remove(&g);
                            // A forwarder of the port is its name here now.
                            let other = self
                                .forwarders
                                .keys()
                                .find(|&&f| f != name && self.proxy_global.get(&f) == Some(&g));
                            if let Some(&other) = other {
                                self.canonical.insert(g.clone(), other);
                            }
                        }
                        if !self.canonical.contains_key(&g) {
                            self.wrote_then_gone.retain(|(_, o)| *o != g);
                        } else if wrote {
                            self.wrote_then_gone.insert((peer, g.clone()));
                        }
                        // A next proxy for the port may take another way:
                        // its messages wait for this one's at the home.
                        if let Some(import) = import {
                            last.extend(self.position_through(peer, import, name, &g));
                        }
                        self.retire(g, last);
                    }
                    self.home_streams.remove(&name);
                    if once && self.reusable_proxy(k, name) {
                        self.spare_proxies.push(name);
                        continue;
                    }
                    kr(
                        "destroy proxy",
                        k.port_mod_refs(self.task, name, PortRight::Receive as u32, -1),
                    )?;
                    self.swallow.remove(&name);
                    self.end_queue_cut(name);
                    self.pool_let_go.remove(&name);
                    self.sent_once.remove(&name);
                    if let Some(notify) = self.forwarders.remove(&name) {
                        // The name no longer stands for the port (which
                        // lives on elsewhere), also while netmsg holds it
                        // as a dead name: a port that takes the name later
                        // is another one.
                        self.incarnations.remove(&name);
                        self.forwarder_of_notify.remove(&notify);
                        self.draining.remove(&name);
                        let _ = k.port_mod_refs(self.task, notify, PortRight::Receive as u32, -1);
                    }
                    // netmsg's kept references (rights gone home) are dead
                    // names now. Those backing its exports of the proxy to
                    // third nodes, and a dead-name notification's, are
                    // dropped when those are handled.
                    if let Some(kept) = self.kept.remove(&name) {
                        let _ = k.port_mod_refs(
                            self.task,
                            name,
                            PortRight::DeadName as u32,
                            -(kept as i32),
                        );
                    }
                    self.forget_if_freed(k, name);
                }
                Effect::DropDetachedRefs { proxy, count, last } => {
                    let name = self.peers.get(&peer).and_then(|p| p.proxy_name.get(&proxy));
                    let Some(&name) = name else {
                        continue;
                    };
                    if last {
                        self.peer(peer).proxy_name.remove(&proxy);
                    }
                    // (Send rights on the port, or dead names once it died.)
                    let refs = -(count as i32);
                    if k.port_mod_refs(self.task, name, PortRight::Send as u32, refs)
                        .is_err()
                    {
                        let _ = k.port_mod_refs(self.task, name, PortRight::DeadName as u32, refs);
                    }
                    self.forget_if_freed(k, name);
                }
                Effect::DropProxyRefs { proxy, count } => {
                    let name = self.peers[&peer].proxy_name[&proxy];
                    if let Some(kept) = self.kept.get_mut(&name) {
                        *kept -= count.min(*kept);
                    }
                    kr(
                        "drop kept references",
                        k.port_mod_refs(self.task, name, PortRight::Send as u32, -(count as i32)),
                    )?;
                    self.forget_if_freed(k, name);
                    if let Some((p, id)) = self.embargoed.get(&name).cloned() {
                        self.end_embargo_if_back(k, p, id, out)?;
                    }
                }
                Effect::ReleasePort { port } => {
                    let _ = k.port_deallocate(self.task, port as Name);
                    self.forget_if_freed(k, port as Name);
                }
                Effect::DestroySendOnce { right } => {
                    let _ = k.port_deallocate(self.task, right as Name);
                    self.forget_if_freed(k, right as Name);
                }
                Effect::FinishExport { id } => {
                    if !self.queue_orders.is_empty() {
                        self.end_queue_order((peer, id));
                    }
                    self.finished.push((peer, id ^ ABOUT_SENDERS_EXPORT))
                }
                Effect::FinishImport { id } => {
                    // Nothing more is written on the stream, and its count
                    // is read only through its live proxy.
                    if id & crate::release::SEND_ONCE_ID_BIT == 0 {
                        self.written.remove(&(peer, id));
                        if !self.once_written.is_empty() {
                            self.once_written.remove(&(peer, id));
                        }
                    }
                    self.finished.push((peer, id))
                }
            }
        }
        Ok(())
    }

    /// The link to `peer` is gone (DESIGN §4.2 item 6).
    /// Frames for other peers: the ends of the lanes this node forwarded for
    /// `peer`, whose messages on the way are lost.
    pub fn link_lost(&mut self, k: &mut Kernel, peer: &str) -> Result<Vec<Out>, TranslateError> {
        let peer = self.peer_id(peer);
        // The peer's lane ends on every stream it could reach through this
        // node: where something of it was forwarded, and where its exports
        // of proxies lead (its messages there may all have been lost on the
        // way, and a dependency may name that lane all the same).
        let era = self.era(peer);
        let name = self.peer_name(peer).to_owned();
        let mut ended: Vec<(PeerId, u64, Origin)> = self
            .forwarded
            .keys()
            .filter(|(upstream, _, origin)| origin.node == name && *upstream != peer)
            .cloned()
            .collect();
        let exports = self.peers.get(&peer).map(|p| p.ledger.exports());
        for (_, port, _) in exports.unwrap_or_default() {
            if let Some((upstream, import)) = self.relay_of_port(port as Name) {
                let lane = Origin {
                    node: name.clone(),
                    era,
                };
                if upstream != peer {
                    ended.push((upstream, import, lane));
                }
            }
        }
        ended.sort();
        ended.dedup();
        let effects = self.peer(peer).ledger.link_lost();
        let mut out = Vec::new();
        self.apply(k, peer, effects, &mut out)?;
        // Ports the peer moved here whose receive right never arrived.
        let unclaimed: Vec<Name> = self
            .unclaimed
            .iter()
            .filter(|((p, _), _)| *p == peer)
            .map(|(_, &port)| port)
            .collect();
        self.unclaimed.retain(|(p, _), _| *p != peer);
        let pools: Vec<u64> = self
            .send_once_pool
            .keys()
            .chain(self.returning_pool.keys())
            .filter(|(p, _)| *p == peer)
            .map(|&(_, id)| id)
            .collect();
        for id in pools {
            self.drop_pool(k, peer, id);
        }
        for port in unclaimed {
            for m in self
                .staged
                .remove(&port)
                .map(|s| s.queue)
                .unwrap_or_default()
            {
                self.destroy_received(k, &m);
            }
            let _ = k.port_mod_refs(self.task, port, PortRight::Receive as u32, -1);
            self.forget_if_freed(k, port);
        }
        out.retain(|o| o.peer != peer);
        for (upstream, import, origin) in ended {
            let live = self
                .peers
                .get(&upstream)
                .is_some_and(|p| p.ledger.proxy_of(import).is_some());
            if live {
                out.push(Out {
                    peer: upstream,
                    id: import,
                    frame: StreamFrame::LaneEnded { id: import, origin },
                });
            }
        }
        self.forwarded
            .retain(|(u, _, o), _| o.node != name && *u != peer);
        self.forwarded_at.retain(|(p, _), _| *p != peer);
        // The peer's next lanes (after a new link) are new ones.
        *self.eras.entry(peer.to_owned()).or_insert(0) += 1;
        // Positions through the peer start again with the next link.
        self.through
            .retain(|(hop, home, _), _| *hop != peer && *home != name);
        // The reset ledger keeps counting IDs: a new link never reuses one,
        // so positions on the old link's streams can name nothing new.
        if let Some(p) = self.peers.get_mut(&peer) {
            p.proxy_name.clear();
        }
        // Frames held from the peer belonged to the lost link's ledger.
        self.holds.drop_lanes(|lane| *lane.node == *name);
        self.holds.link_lost(&name);
        self.holds.link_up(&name);
        self.written.retain(|(p, _), _| *p != peer);
        self.once_written.retain(|(p, _), _| *p != peer);
        self.wrote_then_gone.retain(|(p, _)| *p != peer);
        self.queue_orders.retain(|(p, _), _| *p != peer);
        self.behind_sends.retain(|b| b.peer != peer);
        self.delivered.retain(|lane, _| *lane.node != *name);
        self.once_delivered.retain(|(p, _), _| *p != peer);
        self.congested.retain(|(p, _)| *p != peer);
        // Frames from other peers that waited on the lost streams go now.
        self.handle_freed(k, &mut out)?;
        // Nothing for the lost link's streams goes on a later link.
        out.retain(|o| o.peer != peer);
        self.finished.retain(|(p, _)| *p != peer);
        Ok(out)
    }
}

/// One of the send-once rights of `pools` kept under `key` (no entry is
/// left empty).
fn take_right(pools: &mut BTreeMap<(PeerId, u64), Vec<Name>>, key: (PeerId, u64)) -> Option<Name> {
    let pool = pools.get_mut(&key)?;
    let right = pool.pop();
    if pool.is_empty() {
        pools.remove(&key);
    }
    right
}

/// Whether `m` came from the kernel through a send-once right (a
/// notification, or a message sent without a reply port).
fn kernel_sent(m: &Message) -> bool {
    m.local_type() == msg_type::PORT_SEND_ONCE && m.remote_port == NAME_NULL
}

/// Whether `m`, received on a proxy netmsg is making into a port, is the
/// proxy's own notification, of no use any more: tasks hold only send
/// rights to a send proxy, so what comes through a send-once right is
/// netmsg's (a forwarder's send-once rights are its tasks', the port's).
fn proxy_own_notification(m: &Message, forwarder: bool) -> bool {
    kernel_sent(m) && !forwarder
}

/// A message's rights: the reply first, then the items' in order.
fn rights_of(m: &WireMessage) -> impl Iterator<Item = &WireRight> {
    m.reply.iter().chain(m.items.iter().flat_map(|i| match i {
        WireItem::Rights { rights, .. } => rights.as_slice(),
        WireItem::Data { .. } => &[],
    }))
}

fn rights_of_mut(m: &mut WireMessage) -> impl Iterator<Item = &mut WireRight> {
    m.reply
        .iter_mut()
        .chain(m.items.iter_mut().flat_map(|i| match i {
            WireItem::Rights { rights, .. } => rights.as_mut_slice(),
            WireItem::Data { .. } => &mut [],
        }))
}

/// What a message must wait for: every right of the message coming home
/// waits until the home side has delivered the messages the peer wrote to that
/// port before the right left.
fn home_waits(peer: &str, m: &WireMessage) -> Vec<Wait> {
    rights_of(m)
        .filter_map(|r| match r.reference {
            WireRef::ReceiverExport { id } if r.watermark > 0 => Some(Wait {
                stream: StreamKey::stream(peer, id),
                position: r.watermark,
                kind: WaitKind::Order,
            }),
            _ => None,
        })
        .collect()
}

/// What a peer's message must satisfy before anything of it is taken:
/// rights of the form their item says, references of the kind their form
/// needs (a named receive right only as a moved port's), each one-shot ID
/// once (a moved port's no-senders request included).
fn check_rights(m: &WireMessage) -> Result<(), String> {
    let mut once_ids: SmallVec<[u64; 4]> = SmallVec::new();
    // (The receiver's one-shot exports coming home, another ID space.)
    let mut home_ids: SmallVec<[u64; 2]> = SmallVec::new();
    let items = m.items.iter().flat_map(|i| match i {
        WireItem::Rights { form, rights, .. } => rights.iter().map(|r| (Some(*form), r)).collect(),
        WireItem::Data { .. } => Vec::new(),
    });
    // (netmsg never sends one: `outgoing` refuses it.)
    if m.reply.as_ref().is_some_and(|r| r.form == Form::Receive) {
        return Err("a receive right as the reply port".into());
    }
    for (item_form, r) in m.reply.iter().map(|r| (None, r)).chain(items) {
        if item_form.is_some_and(|f| f != r.form) {
            return Err("right of another form than its item".into());
        }
        let named = !matches!(r.reference, WireRef::Null | WireRef::Dead);
        let moved = matches!(r.reference, WireRef::MovedReceive { .. });
        if moved != (named && r.form == Form::Receive) {
            return Err("receive right other than a moved port's".into());
        }
        let once_id = |id: u64| id & crate::release::SEND_ONCE_ID_BIT != 0;
        if let WireRef::MovedReceive {
            id,
            no_senders,
            port_destroyed,
        } = &r.reference
        {
            for request in no_senders.iter().chain(port_destroyed) {
                if let WireRef::OnceExport { id: once, .. } = request.reference {
                    if !once_id(once) || once_ids.contains(&once) {
                        return Err(format!(
                            "notification request of moved port {id}: export {once}"
                        ));
                    }
                    once_ids.push(once);
                }
            }
        }
        match r.reference {
            WireRef::SenderExport { id, .. } if once_id(id) || r.form != Form::Send => {
                return Err(format!("export {id} sent as a {:?} right", r.form));
            }
            WireRef::OnceExport { id, port_stream } => {
                if port_stream.is_some_and(once_id) {
                    return Err(format!("one-shot export {id} along a one-shot stream"));
                }
                if !once_id(id) || r.form != Form::SendOnce {
                    return Err(format!("export {id} sent as a {:?} right", r.form));
                }
                if once_ids.contains(&id) {
                    return Err(format!("one-shot export {id} twice in a message"));
                }
                once_ids.push(id);
            }
            WireRef::ReceiverExport { id } if r.form != Form::Send || once_id(id) => {
                return Err(format!("export {id} coming home as a {:?} right", r.form));
            }
            WireRef::OnceHome { id } => {
                if !once_id(id) || r.form != Form::SendOnce {
                    return Err(format!("export {id} coming home as a {:?} right", r.form));
                }
                if home_ids.contains(&id) {
                    return Err(format!("one-shot export {id} home twice in a message"));
                }
                home_ids.push(id);
            }
            _ => {}
        }
    }
    Ok(())
}

fn move_disposition(form: Form) -> u8 {
    match form {
        Form::Receive => msg_type::MOVE_RECEIVE,
        Form::Send => msg_type::MOVE_SEND,
        Form::SendOnce => msg_type::MOVE_SEND_ONCE,
    }
}

fn frame_id(f: &Frame) -> u64 {
    match *f {
        Frame::Release { id, .. }
        | Frame::Dead { id }
        | Frame::Ack { id, .. }
        | Frame::SendOnceDestroyed { id }
        | Frame::HomeArrived { id, .. } => id,
    }
}

fn protocol(peer: &str, e: ReleaseError) -> TranslateError {
    TranslateError::Protocol {
        peer: peer.to_owned(),
        reason: e.to_string(),
    }
}

/// The first 32-bit datum of a notification (a name or a count).
fn first_u32(msg: &Message) -> Option<u32> {
    let bytes = msg.body.first()?.bytes_payload()?;
    Some(u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mach::Abi;

    /// The bound on the write log: a moved queue whose forwarding waits past
    /// `MAX_WRITE_LOG` writes loses its cut, so positions of its messages'
    /// rights count every write (later positions: a wait that is longer,
    /// never one that lets a message overtake), and the log stops growing.
    #[test]
    fn the_write_log_is_bounded_and_then_counts_every_write() {
        let mut k = Kernel::new(Abi::X86_64);
        let mut t = Translator::new(&mut k, "node0", &[7; 32]).unwrap();
        let peer = t.peer_id("node1");
        let (stream, other) = (5, 6);
        t.wrote(peer, stream);
        let forwarder: Name = 1000;
        t.queue_cuts.insert(
            forwarder,
            QueueCut {
                left: 1,
                start: t.write_log.len(),
            },
        );
        t.wrote(peer, stream);
        t.wrote(peer, other);
        t.cut = Some(t.queue_cuts[&forwarder].start);
        assert_eq!(t.written_before_cut(peer, stream), 1, "cut at the move");
        for _ in 0..MAX_WRITE_LOG {
            t.wrote(peer, other);
        }
        assert!(t.queue_cuts.is_empty(), "the cut is dropped at the bound");
        assert!(t.write_log.is_empty(), "and the log with it");
        t.wrote(peer, stream);
        assert!(t.write_log.is_empty(), "no log while no cut waits");
        assert_eq!(
            t.written_before_cut(peer, stream),
            3,
            "every write counts once the cut is gone"
        );
    }
}

//! The thin driver: runs one node's [`Translator`] over its Mach model
//! ([`Host`]) and its QUIC links ([`transport::Node`]). It only waits and
//! moves bytes; every decision is the translator's.
//!
//! The translator sits behind one lock, always taken before the writers' and
//! the host's. A task's message to a proxy is forwarded in the sending task's
//! own turn (the host's send hook); the driver task waits for netmsg's port
//! set for anything else (kernel notifications), for links coming and going
//! and for bootstrap requests; one reader task per incoming stream hands its
//! frames to the translator itself (keeping the stream's order and sparing a
//! task hand-off on the message path), and stops reading it while one of its
//! messages waits for room in a full queue. Whoever makes frames writes them
//! (then FINs the streams finished) while still holding the translator, so
//! they go out in the order they were made: at once while a stream takes them
//! (each write polled once), else through a writer task that owns the stream
//! until its backlog is written, so a stream the peer does not read holds
//! back only itself (past 1 MiB of backlog the stream is congested, and the
//! translator stops reading its proxy). Each
//! link gets a number when it comes up; a frame or event of a link already
//! lost is dropped, so it is never taken for the next link's. A link that
//! replaces another (the peer restarted) first ends the old one's state; the
//! old one's own end, announced later, is then ignored.
//!
//! Stream IDs on a link (`docs/protocol.md`, "Port streams"): frames toward
//! the receiver's export `id` (messages, `Release`, `SendOnceDestroyed`) go on
//! stream `id`; frames about the sender's own export (`Dead`, `Ack`,
//! `HomeArrived`) and the relay-position exchange on stream
//! `id ^ ABOUT_SENDERS_EXPORT` ([`stream_of`]). A one-shot export's streams
//! are carried on the link's one stream [`ONE_SHOT_STREAM`] per direction,
//! each frame tagged with its port stream's ID, so a reply opens no stream.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use mach::runtime::Host;
use mach::{Name, TaskId};
use rustc_hash::FxHashMap;
use tokio::sync::{mpsc, oneshot, watch};
use transport::{Link, NodeEvent};

pub use crate::translate::{stream_of, ABOUT_SENDERS_EXPORT, ONE_SHOT_STREAM};
use crate::translate::{Out, PeerId, Stall, TranslateError, Translator};
use crate::wire::{OneShotFrame, StreamFrame};

const CONTROL_ROOT_REQUEST: u8 = 1;
const CONTROL_ROOT_REPLY: u8 = 2;
const CONTROL_NO_ROOT: u8 = 3;

/// Bytes queued for one stream beyond what the link has taken, past which the
/// stream is congested: its proxy stops being read (about one stream window).
const CONGESTED_BYTES: usize = 1 << 20;

/// The least a new chunk of [`Writers::encoded`] holds.
const ENCODE_CHUNK: usize = 64 << 10;

/// Where the answer to a root request goes.
type RootReply = oneshot::Sender<Result<Name, String>>;

enum Event {
    Violation {
        peer: String,
        link: u64,
        reason: String,
    },
    Control {
        peer: String,
        link: u64,
        bytes: Bytes,
    },
    Root {
        peer: String,
        task: TaskId,
        reply: RootReply,
    },
    /// A sending task's turn of the translator found these.
    TurnErrors(Vec<TranslateError>),
}

/// Worker threads of the runtime a node runs on ([`node_runtime`]).
///
/// One: a node's translator does its work behind one lock anyway, and with
/// two workers a null RPC's task hand-offs (the reader's to the receiving
/// task, that task's write to the QUIC connection's task) outrun tokio's
/// budget of hand-offs kept on one worker, so the connection's task moves to
/// the other worker on every message and waits there for the connection's
/// lock: the null RPC then takes 2.2 to 2.8 times the raw transport's ping-pong,
/// against 1.2 times on one worker (`netmsg-bench rpc`, arrangements (d) and
/// (e); `bench/RESULTS.md`).
pub const NODE_WORKERS: usize = 1;

/// How often time passes for embargoes: one waiting with no message on its
/// moved port's stream for between one and two of these is given up
/// ([`crate::translate::EMBARGO_TICKS`]).
pub const EMBARGO_TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// The runtime `netmsg serve` and `netmsg ping` run a node on.
pub fn node_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(NODE_WORKERS)
        .enable_all()
        .build()
}

/// A handle to a running node's netmsg.
#[derive(Clone)]
pub struct Netmsg {
    events: mpsc::UnboundedSender<Event>,
}

impl std::fmt::Debug for Netmsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netmsg").finish_non_exhaustive()
    }
}

/// What a node exports as its root (the bootstrap port every authenticated
/// peer may ask for): a send right made from `task`'s receive right `name`.
#[derive(Clone, Copy, Debug)]
pub struct Root {
    pub task: TaskId,
    pub name: Name,
}

impl Netmsg {
    /// Starts netmsg for `node` on `host`, on the tokio runtime it is called
    /// in (tasks on other runtimes may use it too). Links already up are not
    /// adopted: start it before dialing. The node (bound on the same
    /// runtime) is fastest on [`node_runtime`]: on more workers a null RPC
    /// costs about twice as much (see [`NODE_WORKERS`]).
    pub fn start(
        host: Host,
        node: transport::Node,
        root: Option<Root>,
    ) -> Result<Self, TranslateError> {
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .map_err(|_| TranslateError::NoRandomness)?;
        let translator = host.with(|k| Translator::new(k, node.name(), &secret))?;
        let (task, set) = (translator.task(), translator.port_set());
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Shared::new(host.clone(), translator, tx.clone());
        // A task's message to a proxy is forwarded in its own turn, run in
        // netmsg's runtime whatever the sender's (opening a stream takes a
        // timer, a busy stream a writer task of netmsg's).
        let weak = Arc::downgrade(&shared);
        let events = tx.clone();
        let runtime = tokio::runtime::Handle::current();
        let hook: mach::runtime::SendHook = Arc::new(move || {
            if let Some(shared) = weak.upgrade() {
                let _netmsgs = runtime.enter();
                let errors = shared.pump();
                if !errors.is_empty() {
                    let _ = events.send(Event::TurnErrors(errors));
                }
            }
        });
        host.set_send_hook(task, set, hook)
            .map_err(|_| TranslateError::Kernel {
                what: "netmsg's port set as a send hook's source",
                code: mach::KernReturn::InvalidName,
            })?;
        let driver = Driver {
            shared,
            root,
            links: BTreeMap::new(),
            waiting_root: BTreeMap::new(),
            events: tx.clone(),
            links_seen: 0,
        };
        tokio::spawn(driver.run(node, rx));
        Ok(Self { events: tx })
    }

    /// Asks `peer` for its root port; `task` gets a send right to it.
    pub async fn root(&self, peer: &str, task: TaskId) -> Result<Name, String> {
        let (reply, answer) = oneshot::channel();
        self.events
            .send(Event::Root {
                peer: peer.to_owned(),
                task,
                reply,
            })
            .map_err(|_| "netmsg stopped".to_string())?;
        answer.await.map_err(|_| "netmsg stopped".to_string())?
    }
}

/// The translator and what it needs, shared by the driver and the readers.
struct Shared {
    host: Host,
    translator: Mutex<Turns>,
    /// Locked only while holding the translator.
    writers: Mutex<Writers>,
    /// Bumped whenever a stream stops being congested, and after a frame
    /// while frames are held: stalled readers look again.
    relief: watch::Sender<u64>,
    /// The current link to each peer, by the driver's count of links. Read
    /// and changed only under the translator's lock, so that a reader of a
    /// link already lost never hands the translator a frame after
    /// `link_lost` (it would be taken for the next link's).
    current: Mutex<FxHashMap<PeerId, u64>>,
    /// Where errors found outside the turns that could return them go.
    events: mpsc::UnboundedSender<Event>,
}

/// The translator, and the batch its turns fill (kept between turns, so
/// its buffers are reused).
struct Turns {
    translator: Translator,
    batch: Batch,
}

/// Frames to write, then the streams to FIN after them, from one turn of
/// the translator (empty between turns).
#[derive(Default)]
struct Batch {
    out: Vec<Out>,
    finished: Vec<OutStream>,
}

/// `item` with a frame of its own: a frame that may wait (queued behind
/// others, or for its stream to open, which the peer's stream limit can hold
/// up) must not keep the chunk of [`Writers::encoded`] it was split from,
/// and every other frame in it, alive.
fn owned(item: Item) -> Item {
    match item {
        Item::Frame(bytes) => Item::Frame(Bytes::copy_from_slice(&bytes)),
        Item::Fin => Item::Fin,
    }
}

/// What a stream's writer has to do next.
enum Item {
    Frame(Bytes),
    Fin,
}

/// One outgoing stream. The driver writes directly while the stream takes
/// frames at once; when a write has to wait (the peer's window is full, or a
/// new stream waits for credit), a writer task takes the stream over until
/// it has written the backlog, so that a stream the peer does not read holds
/// back only itself.
enum Stream {
    Idle(transport::PortSender),
    Busy(Backlog),
}

struct Backlog {
    items: mpsc::UnboundedSender<Item>,
    /// Bytes queued and not yet taken by the link.
    queued: Arc<AtomicUsize>,
    /// The translator was told the stream is congested.
    congested: bool,
}

/// A stream this node writes: the peer, and the transport stream.
type OutStream = (PeerId, u64);

type Writing = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Option<transport::PortSender>, String>> + Send>,
>;

/// Writes `item` on the stream (opening it first when `sender` is `None`):
/// the sender back, `None` after a FIN.
fn writing(link: Link, stream: u64, sender: Option<transport::PortSender>, item: Item) -> Writing {
    Box::pin(async move {
        let mut tx = match sender {
            Some(tx) => tx,
            None => link
                .open_port(stream)
                .await
                .map_err(|e| format!("opening stream {stream}: {e}"))?,
        };
        match item {
            Item::Frame(bytes) => {
                tx.send(bytes).await.map_err(|e| e.to_string())?;
                Ok(Some(tx))
            }
            Item::Fin => {
                tx.finish().await.map_err(|e| e.to_string())?;
                Ok(None)
            }
        }
    })
}

/// Sends what a stream did not take at once: the sender back.
fn sending_rest(mut tx: transport::PortSender, rest: transport::Rest) -> Writing {
    Box::pin(async move {
        tx.send_rest(rest).await.map_err(|e| e.to_string())?;
        Ok(Some(tx))
    })
}

/// Polls once without a wake-up: a write the stream takes at once finishes
/// here, with no task hand-off; one that has to wait goes to a task, which
/// polls it on (quinn keeps the latest waker).
fn poll_once(fut: &mut Writing) -> std::task::Poll<Result<Option<transport::PortSender>, String>> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    fut.as_mut().poll(&mut cx)
}

impl Shared {
    fn new(host: Host, translator: Translator, events: mpsc::UnboundedSender<Event>) -> Arc<Self> {
        Arc::new_cyclic(|shared| Shared {
            host,
            translator: Mutex::new(Turns {
                translator,
                batch: Batch::default(),
            }),
            writers: Mutex::new(Writers {
                links: FxHashMap::default(),
                streams: FxHashMap::default(),
                shared: shared.clone(),
                encoded: BytesMut::with_capacity(ENCODE_CHUNK),
            }),
            relief: watch::channel(0).0,
            current: Mutex::new(FxHashMap::default()),
            events,
        })
    }

    /// Runs `f` on the translator and the kernel and writes the frames it
    /// made before letting go of the translator, so they go out in order.
    /// `f` puts the frames onto the `Vec` it is given.
    fn with<R>(&self, f: impl FnOnce(&mut Translator, &mut mach::Kernel, &mut Vec<Out>) -> R) -> R {
        let mut turns = self.translator.lock().expect("translator lock");
        let Turns { translator, batch } = &mut *turns;
        let r = self.host.with(|k| f(translator, k, &mut batch.out));
        translator.take_finished(&mut batch.finished);
        if !batch.out.is_empty() || !batch.finished.is_empty() {
            let mut writers = self.writers.lock().expect("writers lock");
            writers.write(&mut self.turn(translator), batch);
        }
        let behind = translator.take_behind_waits();
        if !behind.is_empty() {
            let shared = self.writers.lock().expect("writers lock").shared.clone();
            drop(turns);
            self.wait_behind(shared, behind);
        }
        r
    }

    /// Messages wait behind these sends of their streams, which wait for
    /// room: each is let in once its send is done, whether or not its stream
    /// is read meanwhile (it may be read on past the send).
    fn wait_behind(&self, shared: std::sync::Weak<Shared>, tickets: Vec<mach::SendTicket>) {
        for ticket in tickets {
            let (host, shared) = (self.host.clone(), shared.clone());
            tokio::spawn(async move {
                host.send_done(ticket).await;
                let Some(shared) = shared.upgrade() else {
                    return; // the node is gone
                };
                let error = shared.with(|t, k, out| t.deliver_behind_sends(k, out).err());
                if let Some(e) = error {
                    let _ = shared.events.send(Event::TurnErrors(vec![e]));
                }
            });
        }
    }

    /// Time passing for embargoes (see [`Translator::tick`]).
    fn tick(&self) -> Vec<TranslateError> {
        self.with(|t, k, out| {
            if !t.embargoes_pending() {
                return Vec::new();
            }
            match t.tick(k) {
                Ok(mut frames) => {
                    out.append(&mut frames);
                    Vec::new()
                }
                Err(e) => vec![e],
            }
        })
    }

    /// Forwards what is queued on netmsg's ports; the errors found.
    fn pump(&self) -> Vec<TranslateError> {
        self.with(|t, k, out| t.pump(k, out))
    }

    fn turn<'a>(&'a self, translator: &'a mut Translator) -> Turn<'a> {
        Turn {
            host: &self.host,
            translator,
            relief: &self.relief,
        }
    }

    /// A writer task found its queue empty: see [`Writers::writer_idle`].
    fn writer_idle(
        &self,
        key: &OutStream,
        queued: &Arc<AtomicUsize>,
        sender: &mut Option<transport::PortSender>,
        rx: &mpsc::UnboundedReceiver<Item>,
    ) -> bool {
        let mut turns = self.translator.lock().expect("translator lock");
        let mut writers = self.writers.lock().expect("writers lock");
        writers.writer_idle(
            &mut self.turn(&mut turns.translator),
            key,
            queued,
            sender,
            rx,
        )
    }
}

/// What writing needs of the translator's turn, whose lock the writer holds:
/// telling the translator a stream's congestion changed.
struct Turn<'a> {
    host: &'a Host,
    translator: &'a mut Translator,
    relief: &'a watch::Sender<u64>,
}

impl Turn<'_> {
    fn set_congested(&mut self, key: &OutStream, on: bool) {
        let translator = &mut *self.translator;
        if let Err(e) = self
            .host
            .with(|k| translator.set_congested(k, key.0, key.1, on))
        {
            tracing::warn!("netmsg: {e}");
        }
        if !on {
            self.relief.send_modify(|n| *n += 1);
        }
    }
}

struct Driver {
    shared: Arc<Shared>,
    root: Option<Root>,
    links: BTreeMap<String, Link>,
    waiting_root: BTreeMap<String, Vec<(TaskId, RootReply)>>,
    events: mpsc::UnboundedSender<Event>,
    links_seen: u64,
}

/// The outgoing streams, written by whoever holds the translator (frames
/// go out in the order it made them): at once while a stream takes them,
/// else through a writer task.
struct Writers {
    /// The current links, as the driver has them.
    links: FxHashMap<PeerId, Link>,
    streams: FxHashMap<OutStream, Stream>,
    /// Where a writer task hands its stream back, and a task waiting for a
    /// send lets what waits behind it in (the node's own state).
    shared: std::sync::Weak<Shared>,
    /// Frames are encoded here and split off, so most take no allocation of
    /// their own (a chunk is freed once the transport let go of its frames).
    encoded: BytesMut,
}

impl Driver {
    async fn run(mut self, node: transport::Node, mut events: mpsc::UnboundedReceiver<Event>) {
        let (task, set) = {
            let t = self.shared.translator.lock().expect("translator lock");
            (t.translator.task(), t.translator.port_set())
        };
        let mut embargo_tick = tokio::time::interval(EMBARGO_TICK);
        embargo_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let host = self.shared.host.clone();
            tokio::select! {
                // Messages are taken only under the translator's lock, so a
                // stream reader that drains netmsg's ports (to answer a relay
                // query) never misses one this task holds.
                // (Tasks' messages are forwarded in their own turn; this
                // is for notifications and sends of other kinds.)
                ready = host.readable(task, set) => {
                    if ready.is_err() { return }
                    let errors = self.shared.pump();
                    self.turn_errors(errors);
                }
                ev = node.next_event() => match ev {
                    Some(NodeEvent::LinkUp(link)) => self.link_up(link),
                    // A link replaced by a newer one (the peer restarted)
                    // ends after the newer one came up: already handled.
                    Some(NodeEvent::LinkDown { peer, .. }) => {
                        if self.links.get(&peer).is_none_or(|l| l.is_closed()) {
                            self.link_down(&peer)
                        }
                    }
                    None => return,
                },
                ev = events.recv() => match ev {
                    Some(ev) => self.event(ev).await,
                    None => return,
                },
                _ = embargo_tick.tick() => {
                    let errors = self.shared.tick();
                    self.turn_errors(errors);
                }
            }
        }
    }

    /// Errors a turn of the translator found where they could not be
    /// returned.
    fn turn_errors(&mut self, errors: Vec<TranslateError>) {
        for e in errors {
            match e {
                // A held frame of the peer's, handled now (freed by a
                // death), was bad: as if it had just come.
                TranslateError::Protocol { peer, reason } => self.violation(&peer, &reason),
                e => tracing::warn!("netmsg: {e}"),
            }
        }
    }

    fn link_up(&mut self, link: Link) {
        let peer = link.peer().node.clone();
        tracing::info!(%peer, serial = %link.peer().serial_hex(), "link up");
        // A link replacing another: the old one's state goes first.
        if self.links.contains_key(&peer) {
            self.link_down(&peer);
        }
        self.links.insert(peer.clone(), link.clone());
        self.links_seen += 1;
        let generation = self.links_seen;
        let peer_id = {
            let mut turns = self.shared.translator.lock().expect("translator lock");
            let peer_id = turns.translator.peer_id(&peer);
            let mut current = self.shared.current.lock().expect("current lock");
            current.insert(peer_id, generation);
            let mut writers = self.shared.writers.lock().expect("writers lock");
            writers.links.insert(peer_id, link.clone());
            peer_id
        };
        let events = self.events.clone();
        let control = link.clone();
        let control_events = events.clone();
        let control_peer = peer.clone();
        tokio::spawn(async move {
            while let Ok(Some(bytes)) = control.recv_control().await {
                let peer = control_peer.clone();
                let control = Event::Control {
                    peer,
                    link: generation,
                    bytes,
                };
                if control_events.send(control).is_err() {
                    return;
                }
            }
        });
        let from = FromLink {
            shared: self.shared.clone(),
            events,
            peer,
            peer_id,
            generation,
        };
        tokio::spawn(async move {
            let mut one_shot_seen = false;
            while let Ok(rx) = link.accept_port().await {
                let port = rx.port();
                if port & ONE_SHOT_STREAM != 0 {
                    // One-shot port streams travel only on the one-shot
                    // stream, and a link has one of those per direction.
                    if port != ONE_SHOT_STREAM || one_shot_seen {
                        let reason = if port == ONE_SHOT_STREAM {
                            "a second one-shot stream".to_owned()
                        } else {
                            format!("one-shot port stream {port} opened on its own")
                        };
                        from.violation(reason);
                        return;
                    }
                    one_shot_seen = true;
                    tokio::spawn(read_one_shot_stream(rx, from.clone()));
                    continue;
                }
                let reader = read_port_stream(rx, from.clone());
                let mut reader = Box::pin(reader);
                // A stream that has come whole (a short-lived port's frames
                // and FIN) is read here, without a task of its own.
                let polled = std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(std::future::Future::poll(reader.as_mut(), cx))
                })
                .await;
                if polled.is_pending() {
                    tokio::spawn(reader);
                }
            }
        });
    }

    fn link_down(&mut self, peer: &str) {
        self.links.remove(peer);
        {
            // Frames for the lost link are dropped from now on, so none
            // reaches a later link to the same peer.
            let turns = self.shared.translator.lock().expect("translator lock");
            if let Some(peer) = turns.translator.known_peer(peer) {
                let mut writers = self.shared.writers.lock().expect("writers lock");
                writers.links.remove(&peer);
                writers.streams.retain(|(p, _), _| *p != peer);
            }
        }
        for (_, reply) in self.waiting_root.remove(peer).unwrap_or_default() {
            let _ = reply.send(Err(format!("link to {peer} lost")));
        }
        let shared = self.shared.clone();
        let lost = self.shared.with(|t, k, out| {
            // Under the translator's lock: no reader of the lost link hands
            // over a frame after this.
            let peer_id = t.peer_id(peer);
            shared
                .current
                .lock()
                .expect("current lock")
                .remove(&peer_id);
            t.link_lost(k, peer)
                .map(|mut frames| out.append(&mut frames))
        });
        match lost {
            Ok(()) => {}
            // Another peer's held frame, freed by the loss, was bad.
            Err(TranslateError::Protocol { peer, reason }) => self.violation(&peer, &reason),
            Err(e) => tracing::warn!("netmsg: link loss of {peer}: {e}"),
        }
    }

    async fn event(&mut self, ev: Event) {
        match ev {
            Event::Violation { peer, link, reason } => {
                if self.is_current(&peer, link) {
                    self.violation(&peer, &reason)
                }
            }
            Event::TurnErrors(errors) => self.turn_errors(errors),
            Event::Control { peer, link, bytes } => {
                if self.is_current(&peer, link) {
                    self.control(&peer, &bytes).await
                }
            }
            Event::Root { peer, task, reply } => {
                let Some(link) = self.links.get(&peer).cloned() else {
                    let _ = reply.send(Err(format!("no link to {peer}")));
                    return;
                };
                self.waiting_root
                    .entry(peer)
                    .or_default()
                    .push((task, reply));
                if link
                    .send_control(Bytes::from_static(&[CONTROL_ROOT_REQUEST]))
                    .await
                    .is_err()
                {
                    tracing::warn!("netmsg: root request failed");
                }
            }
        }
    }

    /// Whether `link` is still the link to `peer` (events of a lost link
    /// are stale).
    fn is_current(&self, peer: &str, link: u64) -> bool {
        let turns = self.shared.translator.lock().expect("translator lock");
        let current = self.shared.current.lock().expect("current lock");
        turns
            .translator
            .known_peer(peer)
            .is_some_and(|peer| current.get(&peer) == Some(&link))
    }

    fn next_waiting(&mut self, peer: &str) -> Option<(TaskId, RootReply)> {
        let waiting = self.waiting_root.get_mut(peer)?;
        (!waiting.is_empty()).then(|| waiting.remove(0))
    }

    /// The bootstrap exchange on the control stream. Any peer that passed
    /// mutual TLS with a certificate of this cluster may have the root.
    async fn control(&mut self, peer: &str, bytes: &[u8]) {
        match bytes {
            [CONTROL_ROOT_REQUEST] => {
                let exported = self.root.map(|root| {
                    self.shared.with(|t, k, _| {
                        t.bootstrap_export(
                            k,
                            peer,
                            root.task,
                            root.name,
                            mach::types::msg_type::MAKE_SEND,
                        )
                    })
                });
                let answer = match exported {
                    Some(Ok((id, global))) => {
                        let mut b = vec![CONTROL_ROOT_REPLY];
                        b.extend_from_slice(&id.to_le_bytes());
                        b.extend_from_slice(&global.port.to_le_bytes());
                        b.extend_from_slice(&global.incarnation.to_le_bytes());
                        b.extend_from_slice(global.home.as_bytes());
                        b
                    }
                    Some(Err(e)) => {
                        tracing::warn!("netmsg: root export: {e}");
                        vec![CONTROL_NO_ROOT]
                    }
                    None => vec![CONTROL_NO_ROOT],
                };
                if let Some(link) = self.links.get(peer) {
                    let _ = link.send_control(Bytes::from(answer)).await;
                }
            }
            [CONTROL_ROOT_REPLY, body @ ..]
                if body.len() > 24 && crate::wire::valid_node_name(&body[24..]) =>
            {
                let word = |i: usize| u64::from_le_bytes(body[i..i + 8].try_into().expect("8"));
                let id = word(0);
                let global = crate::wire::GlobalId {
                    port: word(8),
                    incarnation: word(16),
                    home: String::from_utf8_lossy(&body[24..]).into_owned(),
                };
                let Some((task, reply)) = self.next_waiting(peer) else {
                    return self.violation(peer, "root reply nobody asked for");
                };
                let imported = self.shared.with(|t, k, out| {
                    match t.bootstrap_import(k, peer, id, global, task) {
                        Ok((name, mut frames)) => {
                            out.append(&mut frames);
                            Ok(name)
                        }
                        Err(e) => Err(e.to_string()),
                    }
                });
                let _ = reply.send(imported);
            }
            [CONTROL_NO_ROOT] => {
                if let Some((_, reply)) = self.next_waiting(peer) {
                    let _ = reply.send(Err(format!("{peer} exports no root")));
                }
            }
            _ => self.violation(peer, "unknown control frame"),
        }
    }

    fn violation(&mut self, peer: &str, reason: &str) {
        tracing::warn!("netmsg: closing the link to {peer}: {reason}");
        if let Some(link) = self.links.get(peer) {
            link.close(transport::CloseCode::ProtocolViolation, reason);
        }
    }
}

impl Writers {
    /// `peer`'s name, for the log.
    fn peer_name(&self, peer: PeerId) -> &str {
        self.links
            .get(&peer)
            .map_or("a peer whose link is gone", |l| l.peer().node.as_str())
    }

    /// Writes a turn's frames in the order made, then FINs the streams it
    /// finished.
    fn write(&mut self, turn: &mut Turn<'_>, batch: &mut Batch) {
        for o in batch.out.drain(..) {
            let stream = stream_of(&o);
            let key = if stream & ONE_SHOT_STREAM != 0 {
                o.frame.encode_tagged_into(stream, &mut self.encoded);
                (o.peer, ONE_SHOT_STREAM)
            } else {
                o.frame.encode_into(&mut self.encoded);
                (o.peer, stream)
            };
            let bytes = self.encoded.split().freeze();
            self.push(turn, key, Item::Frame(bytes));
        }
        for key in batch.finished.drain(..) {
            // A one-shot port stream ends with its one frame, on the shared
            // one-shot stream, which goes on; a stream never opened has
            // nothing to end.
            if key.1 & ONE_SHOT_STREAM == 0 && self.streams.contains_key(&key) {
                self.push(turn, key, Item::Fin);
            }
        }
    }

    fn push(&mut self, turn: &mut Turn<'_>, key: OutStream, item: Item) {
        // An idle stream that takes the frame at once is written in place.
        let item = match (item, self.streams.get_mut(&key)) {
            (Item::Frame(bytes), Some(Stream::Idle(tx))) => {
                match tx.try_send(bytes) {
                    Ok(transport::TrySend::Sent) => {}
                    Ok(transport::TrySend::Rest(rest)) => {
                        if let Some(Stream::Idle(tx)) = self.streams.remove(&key) {
                            // (It may wait long: it keeps no chunk of the
                            // encoding buffer.)
                            let rest = rest.detached();
                            let len = rest.len();
                            self.hand_to_writer(key, sending_rest(tx, rest), len);
                        }
                    }
                    Err(e) => {
                        tracing::warn!("netmsg: writing to {}: {e}", self.peer_name(key.0));
                        self.streams.remove(&key);
                    }
                }
                return;
            }
            (item, _) => item,
        };
        match self.streams.remove(&key) {
            Some(Stream::Busy(mut backlog)) => {
                let item = owned(item);
                let len = item_len(&item);
                let queued = backlog.queued.fetch_add(len, Ordering::AcqRel) + len;
                if backlog.items.send(item).is_err() {
                    return; // the writer gave up: the link is going
                }
                if queued > CONGESTED_BYTES && !backlog.congested && carries_sends(key.1) {
                    backlog.congested = true;
                    turn.set_congested(&key, true);
                }
                self.streams.insert(key, Stream::Busy(backlog));
            }
            Some(Stream::Idle(tx)) => self.start(key, Some(tx), item),
            None => self.start(key, None, owned(item)),
        }
    }

    /// Writes `item` at once if the stream takes it (the stream is then
    /// idle again, unless FINed), else hands the stream to a writer task.
    fn start(&mut self, key: OutStream, sender: Option<transport::PortSender>, item: Item) {
        if let Some((key, fut, len)) = self.attempt(key, sender, item) {
            self.hand_to_writer(key, fut, len);
        }
    }

    /// A new writer task for the stream, beginning with `first`.
    fn hand_to_writer(&mut self, key: OutStream, first: Writing, len: usize) {
        let (items, rx) = mpsc::unbounded_channel();
        let backlog = Backlog {
            items,
            queued: Arc::new(AtomicUsize::new(len)),
            congested: false,
        };
        self.spawn_writer(key, first, len, rx, backlog.queued.clone());
        self.streams.insert(key, Stream::Busy(backlog));
    }

    /// One write polled once: `None` when done, else the stream and the
    /// write still to do.
    fn attempt(
        &mut self,
        key: OutStream,
        sender: Option<transport::PortSender>,
        item: Item,
    ) -> Option<(OutStream, Writing, usize)> {
        let link = self.links.get(&key.0).cloned()?;
        let len = item_len(&item);
        let mut fut = writing(link, key.1, sender, item);
        match poll_once(&mut fut) {
            std::task::Poll::Ready(Ok(Some(tx))) => {
                self.streams.insert(key, Stream::Idle(tx));
                None
            }
            std::task::Poll::Ready(Ok(None)) => None,
            std::task::Poll::Ready(Err(e)) => {
                tracing::warn!("netmsg: writing to {}: {e}", self.peer_name(key.0));
                None
            }
            std::task::Poll::Pending => Some((key, fut, len)),
        }
    }

    /// A stream's writer task found its queue empty: unless items came
    /// meanwhile (the task then goes on with them, and `false` says so), the
    /// stream is written directly again (`sender` is `None` once it was
    /// FINed). Items are queued only under this lock, so none can come
    /// between this look and the hand-back.
    fn writer_idle(
        &mut self,
        turn: &mut Turn<'_>,
        key: &OutStream,
        queued: &Arc<AtomicUsize>,
        sender: &mut Option<transport::PortSender>,
        rx: &mpsc::UnboundedReceiver<Item>,
    ) -> bool {
        if sender.is_some() && !rx.is_empty() {
            return false;
        }
        // (A link lost meanwhile took the stream, and a new link's writer
        // of the same stream has a count of its own.)
        let ours = matches!(self.streams.get(key),
            Some(Stream::Busy(b)) if Arc::ptr_eq(&b.queued, queued));
        if !ours {
            return true;
        }
        let Some(Stream::Busy(backlog)) = self.streams.remove(key) else {
            unreachable!("checked above");
        };
        if let Some(tx) = sender.take() {
            self.streams.insert(*key, Stream::Idle(tx));
        }
        if backlog.congested {
            turn.set_congested(key, false);
        }
        true
    }

    /// A task that finishes `first`, then writes the queued items in order,
    /// and hands the stream back to the driver when none is left.
    fn spawn_writer(
        &self,
        key: OutStream,
        first: Writing,
        first_len: usize,
        mut rx: mpsc::UnboundedReceiver<Item>,
        queued: Arc<AtomicUsize>,
    ) {
        let shared = self.shared.clone();
        let peer = self.peer_name(key.0).to_owned();
        tokio::spawn(async move {
            let mut sender = match first.await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("netmsg: writing to {peer}: {e}");
                    return;
                }
            };
            queued.fetch_sub(first_len, Ordering::AcqRel);
            loop {
                while let Some(mut tx) = sender.take() {
                    let Ok(item) = rx.try_recv() else {
                        sender = Some(tx);
                        break;
                    };
                    let len = item_len(&item);
                    match item {
                        Item::Frame(bytes) => {
                            if let Err(e) = tx.send(bytes).await {
                                tracing::warn!("netmsg: writing to {peer}: {e}");
                                return;
                            }
                            sender = Some(tx);
                        }
                        Item::Fin => {
                            let _ = tx.finish().await;
                        }
                    }
                    queued.fetch_sub(len, Ordering::AcqRel);
                }
                let Some(shared) = shared.upgrade() else {
                    return; // the node is gone
                };
                if shared.writer_idle(&key, &queued, &mut sender, &rx) {
                    return;
                }
            }
        });
    }
}

fn item_len(item: &Item) -> usize {
    match item {
        Item::Frame(b) => b.len(),
        Item::Fin => 0,
    }
}

/// Where a reader of a link's streams hands its frames, and which link
/// they come on.
#[derive(Clone)]
struct FromLink {
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
    peer: String,
    /// The translator's handle of `peer`.
    peer_id: PeerId,
    /// The driver's count of links: frames of a lost link are dropped.
    generation: u64,
}

impl FromLink {
    /// The peer broke the protocol: the driver closes this link.
    fn violation(self, reason: String) {
        let (peer, link) = (self.peer, self.generation);
        let _ = self.events.send(Event::Violation { peer, link, reason });
    }
}

/// Reads a port stream of the link's to its end, frame by frame into the
/// translator; a protocol violation ends the link.
async fn read_port_stream(mut rx: transport::PortReceiver, from: FromLink) {
    let (shared, peer) = (&from.shared, from.peer_id);
    let stream = rx.port();
    let mut relief = shared.relief.subscribe();
    while let Ok(Some(bytes)) = rx.recv().await {
        relief.borrow_and_update();
        let handled = on_stream_frame(shared, peer, from.generation, stream, &bytes);
        let mut stall = match handled {
            Ok(stall) => stall,
            Err(reason) => return from.violation(reason),
        };
        // Back-pressure: while a message from this stream waits for room in
        // its port's queue, or its messages are forwarded onto a congested
        // stream, the stream is not read, so QUIC flow control stops the
        // peer's writer.
        while let Some(why) = stall {
            match why {
                // (Frames held since may let the stream be read on: look
                // again then too.)
                Stall::Send(ticket) => tokio::select! {
                    () = shared.host.send_done(ticket) => {}
                    changed = relief.changed() => if changed.is_err() {
                        return;
                    },
                },
                Stall::Congested => {
                    if relief.changed().await.is_err() {
                        return;
                    }
                }
            }
            relief.borrow_and_update();
            stall = shared.with(|t, k, _| t.stalled(k, peer, stream));
        }
    }
}

/// Whether `stream` carries messages sent with send rights: only such a
/// stream waits for room in a full queue or backs up behind a congested one,
/// and only its proxy can stop being read (send-once messages never wait for
/// room; frames about the sender's export are not messages).
fn carries_sends(stream: u64) -> bool {
    stream & (ABOUT_SENDERS_EXPORT | ONE_SHOT_STREAM) == 0
}

/// Reads the link's one-shot stream to its end: each frame into the
/// translator as its port stream's. It is never stalled: each one-shot port
/// stream carries one frame, so there is nothing of it to hold back, and a
/// send-once message never waits for room in a queue.
async fn read_one_shot_stream(mut rx: transport::PortReceiver, from: FromLink) {
    while let Ok(Some(bytes)) = rx.recv().await {
        let handled = OneShotFrame::decode(&bytes)
            .map_err(|e| format!("one-shot stream: {e}"))
            .and_then(|f| {
                on_frame(
                    &from.shared,
                    from.peer_id,
                    from.generation,
                    f.stream,
                    f.frame,
                )
            });
        if let Err(reason) = handled {
            return from.violation(reason);
        }
    }
}

/// One frame from `peer`'s stream, decoded and handed to the translator;
/// then whether the stream must wait before its next frame (in the same turn
/// of the translator). `Err` is a protocol violation: the link is closed.
fn on_stream_frame(
    shared: &Shared,
    peer: PeerId,
    link: u64,
    stream: u64,
    bytes: &[u8],
) -> Result<Option<Stall>, String> {
    let frame = StreamFrame::decode(bytes).map_err(|e| e.to_string())?;
    on_frame(shared, peer, link, stream, frame)
}

/// [`on_stream_frame`] for a frame already decoded.
fn on_frame(
    shared: &Shared,
    peer: PeerId,
    link: u64,
    stream: u64,
    frame: StreamFrame,
) -> Result<Option<Stall>, String> {
    let id = stream & !ABOUT_SENDERS_EXPORT;
    let handled = shared.with(|t, k, out| {
        // A frame of a link already lost is dropped with the link.
        let current = shared.current.lock().expect("current lock").get(&peer) == Some(&link);
        if !current {
            return Ok(None);
        }
        out.append(&mut t.on_frame(k, peer, id, frame)?);
        let stall = if carries_sends(stream) {
            t.stalled(k, peer, stream)
        } else {
            None
        };
        // Readers stalled on a full queue look again: a held frame may
        // wait for what they have not read.
        if t.holding() {
            shared.relief.send_modify(|n| *n += 1);
        }
        Ok(stall)
    });
    match handled {
        Ok(stall) => Ok(stall),
        Err(TranslateError::Protocol { reason, .. }) => Err(reason),
        Err(e) => {
            tracing::warn!("netmsg: {e}");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mach::{Abi, Kernel};

    fn busy(queued: &Arc<AtomicUsize>) -> (Backlog, mpsc::UnboundedReceiver<Item>) {
        let (items, rx) = mpsc::unbounded_channel();
        let backlog = Backlog {
            items,
            queued: queued.clone(),
            congested: false,
        };
        (backlog, rx)
    }

    /// Who writes `key`: "busy" (a writer task), "idle" (the driver) or
    /// "none".
    fn writer_of(shared: &Shared, key: &OutStream) -> &'static str {
        match shared.writers.lock().unwrap().streams.get(key) {
            Some(Stream::Busy(_)) => "busy",
            Some(Stream::Idle(_)) => "idle",
            None => "none",
        }
    }

    /// A writer task looks for more to write without the lock frames are
    /// queued under, so one may come just after its last look: it then goes
    /// on writing, and hands the stream back only with nothing queued; a
    /// writer of a lost link takes nothing of a new link's writer.
    #[tokio::test]
    async fn a_writer_hands_its_stream_back_only_with_nothing_queued() {
        let [tls_a, tls_b]: [_; 2] =
            transport::test_support::throwaway_cluster(&["node-a", "node-b"])
                .try_into()
                .ok()
                .unwrap();
        let addr = "127.0.0.1:0".parse().unwrap();
        let options = transport::TransportOptions::default();
        let node_a = transport::Node::bind("node-a", addr, &tls_a, options.clone()).unwrap();
        let node_b = transport::Node::bind("node-b", addr, &tls_b, options).unwrap();
        let link = node_a
            .dial("node-b", node_b.local_addr().unwrap())
            .await
            .unwrap();
        let host = Host::new(Kernel::new(Abi::X86_64));
        let mut translator = host
            .with(|k| Translator::new(k, "node-a", &[7; 32]))
            .unwrap();
        let key: OutStream = (translator.peer_id("node-b"), 4);
        let shared = Shared::new(host, translator, mpsc::unbounded_channel().0);
        let insert = |key: &OutStream, backlog: Backlog| {
            let mut writers = shared.writers.lock().unwrap();
            writers.streams.insert(*key, Stream::Busy(backlog));
        };
        let queued = Arc::new(AtomicUsize::new(0));
        let (backlog, mut rx) = busy(&queued);
        let items = backlog.items.clone();
        insert(&key, backlog);
        let mut sender = Some(link.open_port(4).await.unwrap());

        items
            .send(Item::Frame(Bytes::from_static(b"late")))
            .unwrap();
        assert!(!shared.writer_idle(&key, &queued, &mut sender, &rx));
        assert!(sender.is_some(), "the writer keeps the stream");
        assert_eq!(writer_of(&shared, &key), "busy");

        rx.try_recv().unwrap();
        assert!(shared.writer_idle(&key, &queued, &mut sender, &rx));
        assert!(sender.is_none(), "the stream went back");
        assert_eq!(writer_of(&shared, &key), "idle");

        // A new link's writer of the same stream: the old writer's hand-back
        // leaves it alone.
        let (backlog, _rx) = busy(&Arc::new(AtomicUsize::new(0)));
        insert(&key, backlog);
        let mut stale = Some(link.open_port(8).await.unwrap());
        assert!(shared.writer_idle(&key, &queued, &mut stale, &rx));
        assert_eq!(writer_of(&shared, &key), "busy");
        node_a.shutdown();
        node_b.shutdown();
    }

    /// A message read past a send of its stream that waits for room, and
    /// waiting behind it, goes in once that send is done with nothing more
    /// read or sent: a task of the driver's waits for the send.
    #[tokio::test]
    async fn a_message_behind_a_waiting_send_goes_in_when_the_send_is_done() {
        use crate::wire::{Form, GlobalId, WireItem, WireMessage, WireRef, WireRight};
        let host = Host::new(Kernel::new(Abi::X86_64));
        let mut translator = host.with(|k| Translator::new(k, "home", &[7; 32])).unwrap();
        let peer = translator.peer_id("peer");
        let message = |id: i32, dest_form: Form, once: u64, items: Vec<WireItem>| {
            StreamFrame::Message(WireMessage {
                id,
                other_bits: 0,
                marker: false,
                dest_form,
                once: std::num::NonZeroU64::new(once),
                reply: None,
                origin: None,
                dependencies: Vec::new(),
                items,
            })
        };
        let opts = mach::RecvOptions::default();
        // The server's port p, exported to the peer; the peer's port q, sent
        // to p; the server's request to q with a send-once reply right to p.
        let (server, p, to_p, once) = host.with(|k| {
            let server = k.create_task();
            let p = k.port_allocate(server, mach::PortRight::Receive).unwrap();
            let (to_p, _) = translator
                .bootstrap_export(k, "peer", server, p, mach::types::msg_type::MAKE_SEND)
                .unwrap();
            let right = WireRight {
                form: Form::Send,
                reference: WireRef::SenderExport {
                    id: 7,
                    global: GlobalId {
                        home: "peer".into(),
                        port: 5,
                        incarnation: 0,
                    },
                    once_exports: Vec::new(),
                },
                watermark: 0,
                after: Vec::new(),
                home_stream: None,
            };
            let rights = vec![WireItem::Rights {
                form: Form::Send,
                inline: true,
                longform: false,
                deallocate: false,
                rights: vec![right],
            }];
            translator
                .on_frame(k, peer, to_p, message(1, Form::Send, 0, rights))
                .unwrap();
            let q = k.receive(server, p, opts).unwrap().unwrap().body[0]
                .names_payload()
                .unwrap()[0];
            let request = mach::Message::new(
                q,
                mach::types::msg_type::COPY_SEND,
                p,
                mach::types::msg_type::MAKE_SEND_ONCE,
                2,
                vec![],
            );
            k.send(server, request, false).unwrap();
            let mut out = Vec::new();
            assert!(translator.pump(k, &mut out).is_empty());
            let once = out
                .iter()
                .find_map(|o| match &o.frame {
                    StreamFrame::Message(m) => match m.reply.as_ref()?.reference {
                        WireRef::OnceExport { id, .. } => Some(id),
                        _ => None,
                    },
                    _ => None,
                })
                .expect("the request, with its reply right");
            k.port_set_qlimit(server, p, 1).unwrap();
            (server, p, to_p, once)
        });
        let shared = Shared::new(host.clone(), translator, mpsc::unbounded_channel().0);
        shared.current.lock().unwrap().insert(peer, 1);
        // 10 fills p, 11 waits for room, the reply (read on past 11) waits
        // behind it.
        for frame in [
            message(10, Form::Send, 0, Vec::new()),
            message(11, Form::Send, 0, Vec::new()),
            message(3, Form::SendOnce, once, Vec::new()),
        ] {
            on_frame(&shared, peer, 1, to_p, frame).unwrap();
        }
        let receive = || {
            tokio::time::timeout(
                std::time::Duration::from_secs(5),
                host.receive(server, p, opts, None),
            )
        };
        let mut order = Vec::new();
        for _ in 0..3 {
            order.push(receive().await.expect("a message comes").unwrap().id);
        }
        assert_eq!(order, [10, 11, 3]);
    }
}

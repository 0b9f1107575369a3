//! The thin driver: runs one node's [`Translator`] over its Mach model
//! ([`Host`]) and its QUIC links ([`transport::Node`]). It only waits and
//! moves bytes; every decision is the translator's.
//!
//! One tokio task owns the translator. It waits for netmsg's port set, for
//! frames (one reader task per incoming stream keeps each stream's order), for
//! links coming and going, and for bootstrap requests; it writes the
//! translator's frames on per-stream senders, opened on first use.
//!
//! Stream IDs on a link (`docs/protocol.md`, "Port streams"): frames toward
//! the receiver's export `id` (messages, `Release`, `SendOnceDestroyed`) go on
//! stream `id`; frames about the sender's own export (`Dead`, `Ack`,
//! `HomeArrived`) on stream `id ^ ABOUT_SENDERS_EXPORT`.

use std::collections::BTreeMap;

use bytes::Bytes;
use mach::runtime::Host;
use mach::{Name, RecvOptions, TaskId};
use tokio::sync::{mpsc, oneshot};
use transport::{Link, NodeEvent};

use crate::release::Frame;
use crate::translate::{Out, TranslateError, Translator};
use crate::wire::StreamFrame;

/// Marks a stream that carries frames about the sending side's own export.
pub const ABOUT_SENDERS_EXPORT: u64 = 1 << 62;

const CONTROL_ROOT_REQUEST: u8 = 1;
const CONTROL_ROOT_REPLY: u8 = 2;
const CONTROL_NO_ROOT: u8 = 3;

/// The stream a translator frame travels on.
pub fn stream_of(out: &Out) -> u64 {
    match &out.frame {
        StreamFrame::Release(
            Frame::Dead { .. } | Frame::Ack { .. } | Frame::HomeArrived { .. },
        ) => out.id ^ ABOUT_SENDERS_EXPORT,
        _ => out.id,
    }
}

/// Where the answer to a root request goes.
type RootReply = oneshot::Sender<Result<Name, String>>;

enum Event {
    Frame {
        peer: String,
        stream: u64,
        bytes: Bytes,
    },
    Control {
        peer: String,
        bytes: Bytes,
    },
    Root {
        peer: String,
        task: TaskId,
        reply: oneshot::Sender<Result<Name, String>>,
    },
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
    /// Starts netmsg for `node` on `host`. Links already up are not adopted:
    /// start it before dialing.
    pub fn start(
        host: Host,
        node: transport::Node,
        root: Option<Root>,
    ) -> Result<Self, TranslateError> {
        let translator = host.with(|k| Translator::new(k, node.name()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let driver = Driver {
            host,
            translator,
            root,
            links: BTreeMap::new(),
            senders: BTreeMap::new(),
            waiting_root: BTreeMap::new(),
            events: tx.clone(),
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

struct Driver {
    host: Host,
    translator: Translator,
    root: Option<Root>,
    links: BTreeMap<String, Link>,
    senders: BTreeMap<(String, u64), transport::PortSender>,
    waiting_root: BTreeMap<String, Vec<(TaskId, RootReply)>>,
    events: mpsc::UnboundedSender<Event>,
}

impl Driver {
    async fn run(mut self, node: transport::Node, mut events: mpsc::UnboundedReceiver<Event>) {
        let task = self.translator.task();
        let set = self.translator.port_set();
        loop {
            let host = self.host.clone();
            tokio::select! {
                got = host.receive(task, set, RecvOptions::default(), None) => {
                    let Ok(msg) = got else { return };
                    let translator = &mut self.translator;
                    let (mut out, mut errors) = self.host.with(|k| translator.handle_local(k, msg));
                    let (more, more_errors) = self.host.with(|k| translator.pump(k));
                    out.extend(more);
                    errors.extend(more_errors);
                    for e in errors {
                        tracing::warn!("netmsg: {e}");
                    }
                    self.write(out).await;
                }
                ev = node.next_event() => match ev {
                    Some(NodeEvent::LinkUp(link)) => self.link_up(link),
                    Some(NodeEvent::LinkDown { peer, .. }) => self.link_down(&peer),
                    None => return,
                },
                ev = events.recv() => match ev {
                    Some(ev) => self.event(ev).await,
                    None => return,
                },
            }
        }
    }

    fn link_up(&mut self, link: Link) {
        let peer = link.peer().node.clone();
        self.links.insert(peer.clone(), link.clone());
        let events = self.events.clone();
        let control = link.clone();
        let control_events = events.clone();
        let control_peer = peer.clone();
        tokio::spawn(async move {
            while let Ok(Some(bytes)) = control.recv_control().await {
                let peer = control_peer.clone();
                if control_events.send(Event::Control { peer, bytes }).is_err() {
                    return;
                }
            }
        });
        tokio::spawn(async move {
            while let Ok(mut rx) = link.accept_port().await {
                let events = events.clone();
                let peer = peer.clone();
                tokio::spawn(async move {
                    let stream = rx.port();
                    while let Ok(Some(bytes)) = rx.recv().await {
                        let peer = peer.clone();
                        if events
                            .send(Event::Frame {
                                peer,
                                stream,
                                bytes,
                            })
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
    }

    fn link_down(&mut self, peer: &str) {
        self.links.remove(peer);
        self.senders.retain(|(p, _), _| p != peer);
        for (_, reply) in self.waiting_root.remove(peer).unwrap_or_default() {
            let _ = reply.send(Err(format!("link to {peer} lost")));
        }
        let translator = &mut self.translator;
        if let Err(e) = self.host.with(|k| translator.link_lost(k, peer)) {
            tracing::warn!("netmsg: link loss of {peer}: {e}");
        }
    }

    async fn event(&mut self, ev: Event) {
        match ev {
            Event::Frame {
                peer,
                stream,
                bytes,
            } => {
                let frame = match StreamFrame::decode(&bytes) {
                    Ok(f) => f,
                    Err(e) => return self.violation(&peer, &e.to_string()),
                };
                let id = stream & !ABOUT_SENDERS_EXPORT;
                let translator = &mut self.translator;
                match self.host.with(|k| translator.on_frame(k, &peer, id, frame)) {
                    Ok(out) => self.write(out).await,
                    Err(TranslateError::Protocol { reason, .. }) => self.violation(&peer, &reason),
                    Err(e) => tracing::warn!("netmsg: {e}"),
                }
            }
            Event::Control { peer, bytes } => self.control(&peer, &bytes).await,
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

    /// The bootstrap exchange on the control stream. Any peer that passed
    /// mutual TLS with a certificate of this cluster may have the root.
    async fn control(&mut self, peer: &str, bytes: &[u8]) {
        match bytes {
            [CONTROL_ROOT_REQUEST] => {
                let answer = match self.root {
                    Some(root) => {
                        let translator = &mut self.translator;
                        match self.host.with(|k| {
                            translator.bootstrap_export(
                                k,
                                peer,
                                root.task,
                                root.name,
                                mach::types::msg_type::MAKE_SEND,
                            )
                        }) {
                            Ok(id) => {
                                let mut b = vec![CONTROL_ROOT_REPLY];
                                b.extend_from_slice(&id.to_le_bytes());
                                b
                            }
                            Err(e) => {
                                tracing::warn!("netmsg: root export: {e}");
                                vec![CONTROL_NO_ROOT]
                            }
                        }
                    }
                    None => vec![CONTROL_NO_ROOT],
                };
                if let Some(link) = self.links.get(peer) {
                    let _ = link.send_control(Bytes::from(answer)).await;
                }
            }
            [CONTROL_ROOT_REPLY, id @ ..] if id.len() == 8 => {
                let id = u64::from_le_bytes(id.try_into().expect("8 bytes"));
                let Some((task, reply)) = self
                    .waiting_root
                    .get_mut(peer)
                    .and_then(|w| (!w.is_empty()).then(|| w.remove(0)))
                else {
                    return self.violation(peer, "root reply nobody asked for");
                };
                let translator = &mut self.translator;
                match self
                    .host
                    .with(|k| translator.bootstrap_import(k, peer, id, task))
                {
                    Ok((name, out)) => {
                        let _ = reply.send(Ok(name));
                        self.write(out).await;
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
            [CONTROL_NO_ROOT] => {
                if let Some((_, reply)) = self
                    .waiting_root
                    .get_mut(peer)
                    .and_then(|w| (!w.is_empty()).then(|| w.remove(0)))
                {
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

    async fn write(&mut self, out: Vec<Out>) {
        for o in out {
            let stream = stream_of(&o);
            let key = (o.peer.clone(), stream);
            if !self.senders.contains_key(&key) {
                let Some(link) = self.links.get(&o.peer) else {
                    continue;
                };
                match link.open_port(stream).await {
                    Ok(tx) => {
                        self.senders.insert(key.clone(), tx);
                    }
                    Err(e) => {
                        tracing::warn!("netmsg: opening stream {stream} to {}: {e}", o.peer);
                        continue;
                    }
                }
            }
            let tx = self.senders.get_mut(&key).expect("opened");
            if let Err(e) = tx.send(Bytes::from(o.frame.encode())).await {
                tracing::warn!("netmsg: writing to {}: {e}", o.peer);
                self.senders.remove(&key);
            }
        }
    }
}

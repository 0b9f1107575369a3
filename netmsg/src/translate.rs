//! The translation core's first slice (DESIGN §4): one node's netmsg as a
//! task in its node's Mach model, turning messages that local tasks send to
//! proxies into port-stream frames and frames from peers into local messages,
//! with the counted-release ledger (`crate::release`) deciding the life of
//! every export and import.
//!
//! Deterministic and free of I/O: the caller owns the [`Kernel`] and the
//! links, calls [`Translator::pump`] when netmsg's port set is readable and
//! [`Translator::on_frame`] for each frame, and writes the [`Out`] frames on
//! the named streams. Today: send and send-once rights (exported, imported,
//! coming home), data inline and out of line, death, link loss. Not yet:
//! receive-right moves (a message carrying one is destroyed and reported),
//! causal dependencies, global-identity canonicalisation, back-pressure.
//!
//! Invariants: netmsg holds exactly one send reference per live send export;
//! a proxy's make-send count equals the ledger's count of rights made on it,
//! because netmsg makes exactly one send right per right received (also for
//! messages it has to destroy); every send-once right netmsg makes on a
//! one-shot proxy ends in a message or a send-once notification.

use std::collections::BTreeMap;

use mach::types::{msg_type, msgh_bits, notify_id, port_type};
use mach::{Item, KernReturn, Kernel, Message, Name, Payload, PortRight, RecvOptions, TaskId};
use mach::{NAME_DEAD, NAME_NULL};
use thiserror::Error;

use crate::causal::{Holds, StreamKey, Wait};
use crate::release::{Effect, Frame, Imported, Ledger, ReleaseError};
use crate::wire::{Form, GlobalId, StreamFrame, WireItem, WireMessage, WireRef, WireRight};

/// A frame to write on the stream of export `id` toward `peer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Out {
    pub peer: String,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ProxyOf {
    handle: u64,
    once: bool,
}

#[derive(Debug, Default)]
struct Peer {
    ledger: Ledger,
    /// Ledger proxy handle → proxy port name in netmsg's space.
    proxy_name: BTreeMap<u64, Name>,
}

/// One node's netmsg.
#[derive(Debug)]
pub struct Translator {
    node: String,
    task: TaskId,
    set: Name,
    /// Dead-name notifications for exported rights arrive here.
    notify: Name,
    peers: BTreeMap<String, Peer>,
    /// Proxy port name → (peer, handle).
    proxies: BTreeMap<Name, (String, ProxyOf)>,
    /// Messages written per (peer, export id) stream: the watermark a right
    /// going home carries.
    written: BTreeMap<(String, u64), u64>,
    /// Messages delivered per (peer, export id) stream.
    delivered: BTreeMap<(String, u64), u64>,
    holds: Holds<(String, u64), StreamFrame>,
}

impl Translator {
    /// netmsg's task and port set on `kernel`.
    pub fn new(kernel: &mut Kernel, node: &str) -> Result<Self, TranslateError> {
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
            proxies: BTreeMap::new(),
            written: BTreeMap::new(),
            delivered: BTreeMap::new(),
            holds: Holds::new(),
        })
    }

    /// netmsg's own task (for tests: what it holds).
    pub fn task(&self) -> TaskId {
        self.task
    }

    /// True when no export, import or proxy remains for any peer.
    pub fn is_idle(&self) -> bool {
        self.proxies.is_empty()
            && self.holds.held() == 0
            && self.peers.values().all(|p| p.ledger.is_empty())
    }

    fn peer(&mut self, peer: &str) -> &mut Peer {
        self.peers.entry(peer.to_owned()).or_insert_with(|| Peer {
            ledger: Ledger::new(),
            proxy_name: BTreeMap::new(),
        })
    }

    /// Bootstrap: a send right from `task`'s `name` (`disposition` COPY_SEND
    /// or MAKE_SEND) is offered to `peer`;
    /// the export ID to give the peer's [`Translator::bootstrap_import`].
    pub fn bootstrap_export(
        &mut self,
        k: &mut Kernel,
        peer: &str,
        task: TaskId,
        name: Name,
        disposition: u8,
    ) -> Result<u64, TranslateError> {
        let (mine, _) = kr(
            "bootstrap right",
            k.port_extract_right(task, name, disposition, self.task),
        )?;
        self.export_send(k, peer, mine)
    }

    /// Bootstrap: the peer's export `id` becomes a send right in `task`.
    pub fn bootstrap_import(
        &mut self,
        k: &mut Kernel,
        peer: &str,
        id: u64,
        task: TaskId,
    ) -> Result<(Name, Vec<Out>), TranslateError> {
        let mut out = Vec::new();
        let (imported, effects) = self
            .peer(peer)
            .ledger
            .import(id)
            .map_err(|e| protocol(peer, e))?;
        self.apply(k, peer, effects, &mut out)?;
        let Imported::Proxy(handle) = imported else {
            return Ok((NAME_DEAD, out));
        };
        let proxy = self.peers[peer].proxy_name[&handle];
        let (name, _) = kr(
            "bootstrap right",
            k.port_extract_right(self.task, proxy, msg_type::MAKE_SEND, task),
        )?;
        self.arm_no_senders(k, peer, handle)?;
        Ok((name, out))
    }

    // ----- local → peer ------------------------------------------------------------

    /// Forwards everything queued on netmsg's ports; handles notifications.
    pub fn pump(&mut self, k: &mut Kernel) -> (Vec<Out>, Vec<TranslateError>) {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        let opts = RecvOptions {
            max_size: None,
            large: false,
        };
        while let Ok(Some(msg)) = k.receive(self.task, self.set, opts) {
            if let Err(e) = self.on_local(k, msg, &mut out) {
                errors.push(e);
            }
        }
        (out, errors)
    }

    /// A message the caller received on [`Translator::port_set`] itself (a
    /// driver that waits for one): handled as [`Translator::pump`] would.
    pub fn handle_local(
        &mut self,
        k: &mut Kernel,
        msg: Message,
    ) -> (Vec<Out>, Vec<TranslateError>) {
        let mut out = Vec::new();
        let errors = self.on_local(k, msg, &mut out).err().into_iter().collect();
        (out, errors)
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
        let kernel_sent =
            msg.local_type() == msg_type::PORT_SEND_ONCE && msg.remote_port == NAME_NULL;
        if on == self.notify {
            return self.on_notify(k, &msg, out);
        }
        let Some((peer, proxy)) = self.proxies.get(&on).cloned() else {
            self.destroy_received(k, &msg);
            return Ok(());
        };
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
                .peer(&peer)
                .ledger
                .no_senders(proxy.handle, u64::from(mscount));
            if effects.is_empty() {
                // Stale: rights were made since; ask again.
                return self.arm_no_senders(k, &peer, proxy.handle);
            }
            return self.apply(k, &peer, effects, out);
        }
        if proxy.once && kernel_sent && msg.id == notify_id::SEND_ONCE && msg.body.is_empty() {
            let effects = self.peer(&peer).ledger.once_destroyed(proxy.handle);
            return self.apply(k, &peer, effects, out);
        }
        let (id, effects) = if proxy.once {
            self.peer(&peer)
                .ledger
                .once_used(proxy.handle)
                .unwrap_or_default()
        } else {
            let id = self.peers[&peer].ledger.proxy_import_id(proxy.handle);
            (id.unwrap_or(0), Vec::new())
        };
        if id == 0 {
            self.destroy_received(k, &msg);
            return Ok(());
        }
        if proxy.once && !effects.is_empty() {
            // A message netmsg cannot carry is destroyed, and with it the
            // send-once right it was sent with: the home side must notify.
            let destroyed = Out {
                peer: peer.clone(),
                id,
                frame: StreamFrame::Release(Frame::SendOnceDestroyed { id }),
            };
            let (frame, result) = match self.outgoing(k, &peer, msg) {
                Ok(w) => (StreamFrame::Message(w), Ok(())),
                Err(e) => (destroyed.frame.clone(), Err(e)),
            };
            *self.written.entry((peer.clone(), id)).or_insert(0) += 1;
            out.push(Out { frame, ..destroyed });
            self.apply(k, &peer, effects, out)?;
            return result;
        }
        let wire = self.outgoing(k, &peer, msg)?;
        *self.written.entry((peer.clone(), id)).or_insert(0) += 1;
        out.push(Out {
            peer,
            id,
            frame: StreamFrame::Message(wire),
        });
        Ok(())
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
        let peers: Vec<String> = self.peers.keys().cloned().collect();
        for peer in peers {
            let ledger = &mut self.peer(&peer).ledger;
            let once_dead = ledger.once_export_of(u64::from(name)).is_some();
            let effects = ledger.port_died(u64::from(name));
            if once_dead {
                // A dead send-once right can only be dropped.
                let _ = k.port_mod_refs(self.task, name, PortRight::DeadName as u32, -1);
            }
            self.apply(k, &peer, effects, out)?;
        }
        Ok(())
    }

    /// The wire form of a message netmsg received on a proxy for `peer`.
    fn outgoing(
        &mut self,
        k: &mut Kernel,
        peer: &str,
        msg: Message,
    ) -> Result<WireMessage, TranslateError> {
        if msg
            .body
            .iter()
            .any(|i| i.type_name == msg_type::PORT_RECEIVE)
            || msg.remote_type() == msg_type::PORT_RECEIVE
        {
            self.destroy_received(k, &msg);
            return Err(TranslateError::Unsupported {
                id: msg.id,
                reason: "receive rights do not travel between nodes yet",
            });
        }
        let dest_form = if msg.local_type() == msg_type::PORT_SEND_ONCE {
            Form::SendOnce
        } else {
            Form::Send
        };
        let reply = match msg.remote_type() {
            0 => None,
            t => Some(self.export_right(k, peer, msg.remote_port, t)?),
        };
        let (id, bits) = (msg.id, msg.bits);
        let mut items = Vec::with_capacity(msg.body.len());
        for item in msg.body {
            items.push(match &item.payload {
                Payload::Names(names) => {
                    let form = if item.type_name == msg_type::PORT_SEND_ONCE {
                        Form::SendOnce
                    } else {
                        Form::Send
                    };
                    let mut rights = Vec::with_capacity(names.len());
                    for &n in names {
                        rights.push(self.export_right(k, peer, n, item.type_name)?);
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
            dest_form,
            reply,
            dependencies: Vec::new(),
            items,
        })
    }

    /// A right netmsg received (name in its space, received type `t`) leaves
    /// for `peer`.
    fn export_right(
        &mut self,
        k: &mut Kernel,
        peer: &str,
        name: Name,
        t: u8,
    ) -> Result<WireRight, TranslateError> {
        let form = if t == msg_type::PORT_SEND_ONCE {
            Form::SendOnce
        } else {
            Form::Send
        };
        let mut watermark = 0;
        let reference = if name == NAME_NULL {
            WireRef::Null
        } else if name == NAME_DEAD {
            WireRef::Dead
        } else if form == Form::Send {
            match self.proxies.get(&name) {
                Some((p, proxy)) if p == peer && !proxy.once => {
                    let handle = proxy.handle;
                    match self.peer(peer).ledger.send_home(handle) {
                        // netmsg keeps the reference until HomeArrived.
                        Some(id) => {
                            watermark = self
                                .written
                                .get(&(peer.to_owned(), id))
                                .copied()
                                .unwrap_or(0);
                            WireRef::ReceiverExport { id }
                        }
                        None => WireRef::Dead,
                    }
                }
                _ => {
                    let id = self.export_send(k, peer, name)?;
                    self.global(id, name)
                }
            }
        } else {
            let id = self.peer(peer).ledger.export_send_once(u64::from(name));
            self.request_dead_name(k, name)?;
            self.global(id, name)
        };
        Ok(WireRight {
            form,
            reference,
            watermark,
        })
    }

    fn global(&self, id: u64, name: Name) -> WireRef {
        WireRef::SenderExport {
            id,
            global: GlobalId {
                home: self.node.clone(),
                port: u64::from(name),
                incarnation: 0,
            },
        }
    }

    /// Counts one more send right of `name` (netmsg holds one reference in
    /// `name` already) for `peer`, keeping one reference per live export.
    fn export_send(
        &mut self,
        k: &mut Kernel,
        peer: &str,
        name: Name,
    ) -> Result<u64, TranslateError> {
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
        Ok(id)
    }

    fn request_dead_name(&mut self, k: &mut Kernel, name: Name) -> Result<(), TranslateError> {
        let previous = kr(
            "dead-name request",
            k.port_request_notification(
                self.task,
                name,
                notify_id::DEAD_NAME,
                1,
                self.notify,
                msg_type::MAKE_SEND_ONCE,
            ),
        )?;
        if previous != NAME_NULL {
            let _ = k.port_deallocate(self.task, previous);
        }
        Ok(())
    }

    /// Releases every right in a message netmsg received and will not forward.
    fn destroy_received(&mut self, k: &mut Kernel, msg: &Message) {
        let drop_name = |k: &mut Kernel, name: Name, t: u8| {
            if name == NAME_NULL || name == NAME_DEAD {
                return;
            }
            let _ = if t == msg_type::PORT_RECEIVE {
                k.port_mod_refs(self.task, name, PortRight::Receive as u32, -1)
            } else {
                k.port_deallocate(self.task, name)
            };
        };
        if msg.remote_type() != 0 {
            drop_name(k, msg.remote_port, msg.remote_type());
        }
        for item in &msg.body {
            if let Payload::Names(names) = &item.payload {
                for &n in names {
                    drop_name(k, n, item.type_name);
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
        peer: &str,
        id: u64,
        frame: StreamFrame,
    ) -> Result<Vec<Out>, TranslateError> {
        let mut out = Vec::new();
        let to_my_export = match &frame {
            StreamFrame::Message(_) => true,
            StreamFrame::Release(f) => {
                matches!(f, Frame::Release { .. } | Frame::SendOnceDestroyed { .. })
            }
        };
        if !to_my_export {
            self.on_stream_frame(k, peer, id, frame, &mut out)?;
            return Ok(out);
        }
        let waits = match &frame {
            StreamFrame::Message(m) => home_waits(peer, m),
            StreamFrame::Release(_) => Vec::new(),
        };
        let lane = (peer.to_owned(), id);
        let mut ready: Vec<((String, u64), StreamFrame)> = self
            .holds
            .arrive(lane.clone(), frame, waits)
            .map(|f| vec![(lane, f)])
            .unwrap_or_default();
        while let Some(((peer, id), frame)) = ready.pop() {
            let is_message = matches!(frame, StreamFrame::Message(_));
            self.on_stream_frame(k, &peer, id, frame, &mut out)?;
            if is_message {
                let n = self.delivered.entry((peer.clone(), id)).or_insert(0);
                *n += 1;
                let stream = StreamKey {
                    node: peer,
                    port: id,
                };
                let mut freed = self.holds.advanced(stream, *n);
                freed.reverse();
                ready.extend(freed);
            }
        }
        Ok(out)
    }

    fn on_stream_frame(
        &mut self,
        k: &mut Kernel,
        peer: &str,
        id: u64,
        frame: StreamFrame,
        out: &mut Vec<Out>,
    ) -> Result<(), TranslateError> {
        match frame {
            StreamFrame::Message(m) => self.deliver(k, peer, id, m, out)?,
            StreamFrame::Release(f) => {
                if frame_id(&f) != id {
                    return Err(TranslateError::Protocol {
                        peer: peer.to_owned(),
                        reason: format!("frame for export {} on the stream of {id}", frame_id(&f)),
                    });
                }
                let effects = self
                    .peer(peer)
                    .ledger
                    .on_frame(f)
                    .map_err(|e| protocol(peer, e))?;
                self.apply(k, peer, effects, out)?;
            }
        }
        Ok(())
    }

    fn deliver(
        &mut self,
        k: &mut Kernel,
        peer: &str,
        id: u64,
        m: WireMessage,
        out: &mut Vec<Out>,
    ) -> Result<(), TranslateError> {
        let Some(target) = self.peer(peer).ledger.export_target(id) else {
            return Err(TranslateError::Protocol {
                peer: peer.to_owned(),
                reason: format!("message for unknown export {id}"),
            });
        };
        check_rights(&m).map_err(|reason| TranslateError::Protocol {
            peer: peer.to_owned(),
            reason,
        })?;
        if target.once {
            let effects = self
                .peer(peer)
                .ledger
                .send_once_used(id)
                .map_err(|e| protocol(peer, e))?;
            self.apply(k, peer, effects, out)?;
        }
        let mut held: Vec<(Name, u8)> = Vec::new();
        let result = self.place_and_send(k, peer, target, m, out, &mut held);
        if result.is_err() {
            // A right the peer got wrong: what was placed goes, as if the
            // message had been destroyed.
            for (name, _) in held {
                self.drop_held(k, name);
            }
        }
        result
    }

    fn place_and_send(
        &mut self,
        k: &mut Kernel,
        peer: &str,
        target: crate::release::ExportTarget,
        m: WireMessage,
        out: &mut Vec<Out>,
        held: &mut Vec<(Name, u8)>,
    ) -> Result<(), TranslateError> {
        // Rights first become rights netmsg holds, so that a message that
        // cannot be delivered releases them like any destroyed message.
        let mut place = |this: &mut Self, k: &mut Kernel, r: &WireRight, out: &mut Vec<Out>| {
            let placed = this.import_right(k, peer, r, out);
            if let Ok(p) = &placed {
                held.push(*p);
            }
            placed
        };
        let reply = match &m.reply {
            Some(r) => Some(place(self, k, r, out)?),
            None => None,
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
        let dest_disposition = if target.once {
            msg_type::MOVE_SEND_ONCE
        } else {
            msg_type::COPY_SEND
        };
        let (reply_name, reply_disposition) = reply.unwrap_or((NAME_NULL, 0));
        let mut msg = Message::new(
            target.port as Name,
            dest_disposition,
            reply_name,
            reply_disposition,
            m.id,
            body,
        );
        msg.bits |= m.other_bits;
        // Sent, the rights are the receiver's; not sent (the port is dead,
        // or died under netmsg), they are destroyed with the message.
        if !target.dead && k.send(self.task, msg, true).is_ok() {
            held.clear();
        } else {
            for (name, _) in held.drain(..) {
                self.drop_held(k, name);
            }
        }
        Ok(())
    }

    /// A right from the wire as a right netmsg holds, with the disposition that
    /// moves it into the local message.
    fn import_right(
        &mut self,
        k: &mut Kernel,
        peer: &str,
        r: &WireRight,
        out: &mut Vec<Out>,
    ) -> Result<(Name, u8), TranslateError> {
        let disposition = move_disposition(r.form);
        match &r.reference {
            WireRef::Null => Ok((NAME_NULL, disposition)),
            WireRef::Dead => Ok((NAME_DEAD, disposition)),
            WireRef::SenderExport { id, .. } => {
                let once = r.form == Form::SendOnce;
                let ledger = &mut self.peer(peer).ledger;
                let (imported, effects) = if once {
                    ledger.import_send_once(*id)
                } else {
                    ledger.import(*id)
                }
                .map_err(|e| protocol(peer, e))?;
                self.apply(k, peer, effects, out)?;
                let Imported::Proxy(handle) = imported else {
                    return Ok((NAME_DEAD, disposition));
                };
                let proxy = self.peers[peer].proxy_name[&handle];
                if once {
                    let (name, _) = kr(
                        "make send-once",
                        k.port_extract_right(self.task, proxy, msg_type::MAKE_SEND_ONCE, self.task),
                    )?;
                    Ok((name, disposition))
                } else {
                    kr(
                        "make send",
                        k.port_insert_right(
                            self.task,
                            proxy,
                            self.task,
                            proxy,
                            msg_type::MAKE_SEND,
                        ),
                    )?;
                    self.arm_no_senders(k, peer, handle)?;
                    Ok((proxy, disposition))
                }
            }
            WireRef::ReceiverExport { id } => {
                if r.form != Form::Send {
                    return Err(TranslateError::Protocol {
                        peer: peer.to_owned(),
                        reason: format!("send-once right coming home to export {id}"),
                    });
                }
                let dead = self
                    .peers
                    .get(peer)
                    .and_then(|p| p.ledger.export_target(*id))
                    .is_none_or(|t| t.dead);
                let (port, effects) = self.peer(peer).ledger.home_arrived(*id);
                self.apply(k, peer, effects, out)?;
                match port {
                    // One more reference, for the message to move.
                    Some(port) if !dead => {
                        kr(
                            "copy home right",
                            k.port_mod_refs(self.task, port as Name, PortRight::Send as u32, 1),
                        )?;
                        Ok((port as Name, disposition))
                    }
                    _ => Ok((NAME_DEAD, disposition)),
                }
            }
        }
    }

    fn drop_held(&mut self, k: &mut Kernel, name: Name) {
        if name != NAME_NULL && name != NAME_DEAD {
            let _ = k.port_deallocate(self.task, name);
        }
    }

    fn arm_no_senders(
        &mut self,
        k: &mut Kernel,
        peer: &str,
        handle: u64,
    ) -> Result<(), TranslateError> {
        let proxy = self.peers[peer].proxy_name[&handle];
        let made = self.peers[peer].ledger.made_on(handle).unwrap_or(0);
        let previous = kr(
            "no-senders request",
            k.port_request_notification(
                self.task,
                proxy,
                notify_id::NO_SENDERS,
                made as u32,
                proxy,
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
        peer: &str,
        effects: Vec<Effect>,
        out: &mut Vec<Out>,
    ) -> Result<(), TranslateError> {
        for effect in effects {
            match effect {
                Effect::Send(frame) => out.push(Out {
                    peer: peer.to_owned(),
                    id: frame_id(&frame),
                    frame: StreamFrame::Release(frame),
                }),
                Effect::CreateProxy { proxy, once, .. } => {
                    let name = kr("proxy", k.port_allocate(self.task, PortRight::Receive))?;
                    kr(
                        "proxy into set",
                        k.port_move_member(self.task, name, self.set),
                    )?;
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
                    self.proxies.remove(&name);
                    kr(
                        "destroy proxy",
                        k.port_mod_refs(self.task, name, PortRight::Receive as u32, -1),
                    )?;
                    // netmsg's own references (rights gone home) are dead names now.
                    if let Ok(t) = k.port_type(self.task, name) {
                        if t & port_type::DEAD_NAME != 0 {
                            let refs = k
                                .port_get_refs(self.task, name, PortRight::DeadName as u32)
                                .unwrap_or(0);
                            let _ = k.port_mod_refs(
                                self.task,
                                name,
                                PortRight::DeadName as u32,
                                -(refs as i32),
                            );
                        }
                    }
                }
                Effect::DropProxyRefs { proxy, count } => {
                    let name = self.peers[peer].proxy_name[&proxy];
                    kr(
                        "drop kept references",
                        k.port_mod_refs(self.task, name, PortRight::Send as u32, -(count as i32)),
                    )?;
                }
                Effect::ReleasePort { port } => {
                    let _ = k.port_deallocate(self.task, port as Name);
                }
                Effect::DestroySendOnce { right } => {
                    let _ = k.port_deallocate(self.task, right as Name);
                }
                // Streams are FINed by the driver when both directions are idle.
                Effect::Finish { .. } => {}
            }
        }
        Ok(())
    }

    /// The link to `peer` is gone (DESIGN §4.2 item 6).
    pub fn link_lost(&mut self, k: &mut Kernel, peer: &str) -> Result<(), TranslateError> {
        let effects = self.peer(peer).ledger.link_lost();
        let mut out = Vec::new();
        self.apply(k, peer, effects, &mut out)?;
        self.peers.remove(peer);
        // Frames held from the peer belonged to the lost link's ledger.
        self.holds.drop_lanes(|(p, _)| p == peer);
        self.holds.link_lost(peer);
        self.holds.link_up(peer);
        self.written.retain(|(p, _), _| p != peer);
        self.delivered.retain(|(p, _), _| p != peer);
        Ok(())
    }
}

/// What a message must wait for: every right of the message coming home
/// waits until the home side has delivered the messages the peer wrote to that
/// port before the right left.
fn home_waits(peer: &str, m: &WireMessage) -> Vec<Wait> {
    let rights = m.reply.iter().chain(m.items.iter().flat_map(|i| match i {
        WireItem::Rights { rights, .. } => rights.as_slice(),
        WireItem::Data { .. } => &[],
    }));
    rights
        .filter_map(|r| match r.reference {
            WireRef::ReceiverExport { id } if r.watermark > 0 => Some(Wait {
                stream: StreamKey {
                    node: peer.to_owned(),
                    port: id,
                },
                position: r.watermark,
            }),
            _ => None,
        })
        .collect()
}

/// What a peer's message must satisfy before anything of it is taken:
/// rights of the form their item says, no receive rights (they do not travel
/// yet), references of the kind their form needs, each one-shot ID once.
fn check_rights(m: &WireMessage) -> Result<(), String> {
    let mut once_ids = Vec::new();
    let items = m.items.iter().flat_map(|i| match i {
        WireItem::Rights { form, rights, .. } => rights.iter().map(|r| (Some(*form), r)).collect(),
        WireItem::Data { .. } => Vec::new(),
    });
    for (item_form, r) in m.reply.iter().map(|r| (None, r)).chain(items) {
        if item_form.is_some_and(|f| f != r.form) {
            return Err("right of another form than its item".into());
        }
        if r.form == Form::Receive {
            return Err("receive rights are not carried yet".into());
        }
        let once_id = |id: u64| id & crate::release::SEND_ONCE_ID_BIT != 0;
        match r.reference {
            WireRef::SenderExport { id, .. } => {
                if once_id(id) != (r.form == Form::SendOnce) {
                    return Err(format!("export {id} sent as a {:?} right", r.form));
                }
                if once_id(id) {
                    if once_ids.contains(&id) {
                        return Err(format!("one-shot export {id} twice in a message"));
                    }
                    once_ids.push(id);
                }
            }
            WireRef::ReceiverExport { id } if r.form != Form::Send || once_id(id) => {
                return Err(format!("export {id} coming home as a {:?} right", r.form));
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

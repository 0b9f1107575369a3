//! Counted release of exported ports on one link (DESIGN §4.2 item 3), as a
//! pure state machine: the exporter counts the send rights it sends; the
//! importer counts those it receives and, when its proxy's no-senders fires
//! with the make-send count it expects, reports that count; the export dies
//! only when the counts agree. Port death travels as a message; the importer
//! keeps a tombstone for the export ID until the exporter says the count is
//! settled, so a right still in flight arrives as a dead name. FIN comes last.
//!
//! This is the protocol of `shared/models/release.pml`, over any number of
//! ports, plus send-once rights: each is exported one-shot; the far side uses
//! it once or reports it destroyed unused, so the home side destroys the right
//! it holds and the receiver gets its send-once notification. Frames go on the
//! port's stream: `Release` and `SendOnceDestroyed` importer → exporter (after
//! every message the importer queued for that port), `Dead`, `Ack` and
//! `HomeArrived` exporter → importer.
//!
//! A send right going home (the importer sends the exporter a right to the
//! exporter's own port) travels in a message on another stream, so a release
//! on the port's stream could overtake it and free the export first. The
//! importer's netmsg therefore keeps the right (a send reference on its proxy,
//! which holds off no-senders) until the exporter says it arrived.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use smallvec::{smallvec, SmallVec};

use thiserror::Error;

/// What one input makes the driver do: most inputs make at most two
/// effects, kept inline (no allocation on the common path).
pub type Effects = SmallVec<[Effect; 2]>;

/// A frame of the release protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The importer received `count` rights since it last reported, and its
    /// proxy has no senders left (or the port is dead).
    Release { id: u64, count: u64 },
    /// The exported port died.
    Dead { id: u64 },
    /// `left` rights remain unreleased; 0 means the export is gone.
    Ack { id: u64, left: u64 },
    /// A send-once right (exported one-shot) was destroyed unused.
    SendOnceDestroyed { id: u64 },
    /// `count` rights the importer sent home have been delivered as the
    /// original port.
    HomeArrived { id: u64, count: u64 },
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Write a frame on the port's stream toward the peer.
    Send(Frame),
    /// Create a proxy port for import `id` (the driver maps `proxy` to a
    /// receive right; for a send proxy it asks for no-senders, for a `once`
    /// proxy it gives out one send-once right and watches for its use or its
    /// send-once notification).
    CreateProxy { proxy: u64, id: u64, once: bool },
    /// Destroy a proxy: tasks' rights to it become dead names.
    DestroyProxy { proxy: u64 },
    /// The export of this local port is gone: drop netmsg's send right to it.
    ReleasePort { port: u64 },
    /// Destroy the send-once right netmsg holds for a one-shot export (the
    /// kernel then sends the receiver its send-once notification).
    DestroySendOnce { right: u64 },
    /// Drop `count` send references netmsg kept on `proxy` for rights that
    /// went home (which may let its no-senders fire).
    DropProxyRefs { proxy: u64, count: u64 },
    /// The same for a proxy that became the port itself before its rights
    /// sent home were confirmed (see [`Ledger::detach_proxy`]): the
    /// references are on the port now, or dead names if it died; `last`:
    /// none are left.
    DropDetachedRefs { proxy: u64, count: u64, last: bool },
    /// This side, the exporter of `id`, writes nothing more about it (after
    /// what it has written): FIN the stream it writes for that export.
    FinishExport { id: u64 },
    /// This side, the importer of `id`, writes nothing more toward it: FIN
    /// the stream it writes for that import.
    FinishImport { id: u64 },
}

/// A peer broke the protocol.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReleaseError {
    #[error("peer released {count} rights of export {id}, but only {sent} were sent")]
    OverRelease { id: u64, count: u64, sent: u64 },
    #[error("peer sent a frame for unknown export {id} (or of the wrong kind)")]
    UnknownExport { id: u64 },
    #[error("peer sent a right with ID {id}, which is not a fresh ID of that kind")]
    BadImport { id: u64 },
    #[error("peer says {count} rights to export {id} arrived home, but only {pending} were sent")]
    OverHomeArrival { id: u64, count: u64, pending: u64 },
}

/// One-shot (send-once) export IDs have this bit set, so that a late `Dead`
/// for a one-shot export the importer already settled is recognised and
/// ignored rather than opening a tombstone nobody closes.
pub const SEND_ONCE_ID_BIT: u64 = 1 << 63;

/// IDs of exports of moved receive rights carry this bit: the importer (the
/// node the receive right left) chooses them, from its own never-reused
/// counter, so they never meet the exporter's own IDs (which stay below it).
pub const MOVED_ID_BIT: u64 = 1 << 61;

/// See [`Ledger::export_target`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportTarget {
    pub port: u64,
    pub once: bool,
    pub dead: bool,
}

/// What a received right becomes for the local task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Imported {
    /// A right made on this proxy (the ledger counted the make-send).
    Proxy(u64),
    /// The port is known dead: the task gets a dead name.
    Dead,
}

#[derive(Debug)]
enum ExportKind {
    /// Send rights to local port `port`, `sent` of them not yet released.
    Send { port: u64, sent: u64 },
    /// One send-once right netmsg holds (`right`), given to the peer once.
    Once { right: u64 },
}

#[derive(Debug)]
struct Export {
    kind: ExportKind,
    dead: bool,
}

#[derive(Debug)]
enum ImportState {
    /// A proxy, with the send rights made on it (its make-send count).
    Live { proxy: u64, made: u64 },
    /// The port died; kept until the exporter's `Ack 0`, so that rights still
    /// in flight arrive as dead names.
    Tombstone,
}

#[derive(Debug)]
struct Import {
    state: ImportState,
    /// Rights received and not yet reported.
    received: u64,
    /// Rights sent home whose arrival is not yet confirmed.
    home_pending: u64,
}

/// One node's exports to and imports from one peer.
#[derive(Debug, Default)]
pub struct Ledger {
    exports: BTreeMap<u64, Export>,
    export_of: BTreeMap<u64, u64>,
    /// Live send exports of a port besides `export_of`'s (a moved port
    /// handed over to a port this node exported already).
    other_exports: BTreeMap<u64, Vec<u64>>,
    next_export: u64,
    imports: BTreeMap<u64, Import>,
    import_of_proxy: BTreeMap<u64, u64>,
    /// One-shot imports: proxy → export id.
    once_proxies: BTreeMap<u64, u64>,
    /// The same, by export id.
    once_proxy_of: FxHashMap<u64, u64>,
    /// Live one-shot exports by the send-once right netmsg holds.
    once_export_of_right: FxHashMap<u64, u64>,
    /// Imports whose proxy became the port itself while rights sent home
    /// through it were unconfirmed, by export id: reported once they are.
    /// (Keyed by export id and proxy: a right of an export that comes
    /// after its proxy detached makes a new proxy, which may detach too.)
    detached: BTreeMap<(u64, u64), Detached>,
    next_proxy: u64,
}

/// An import detached from its proxy, waiting for `HomeArrived`.
#[derive(Debug)]
struct Detached {
    received: u64,
    home_pending: u64,
}

impl Ledger {
    pub fn new() -> Self {
        Self {
            next_export: 1,
            next_proxy: 1,
            ..Self::default()
        }
    }

    fn new_export(&mut self, kind: ExportKind) -> u64 {
        let id = match kind {
            ExportKind::Send { .. } => self.next_export,
            ExportKind::Once { .. } => self.next_export | SEND_ONCE_ID_BIT,
        };
        self.next_export += 1;
        self.exports.insert(id, Export { kind, dead: false });
        id
    }

    fn new_proxy(&mut self) -> u64 {
        let proxy = self.next_proxy;
        self.next_proxy += 1;
        proxy
    }

    // ----- exporter side --------------------------------------------------------

    /// A send right to local `port` leaves for the peer: its export ID. IDs are
    /// never reused on a link.
    pub fn export(&mut self, port: u64) -> u64 {
        let id = match self.export_of.get(&port) {
            Some(&id) if !self.exports[&id].dead => id,
            _ => {
                let id = self.new_export(ExportKind::Send { port, sent: 0 });
                self.export_of.insert(port, id);
                id
            }
        };
        if let Some(Export {
            kind: ExportKind::Send { sent, .. },
            ..
        }) = self.exports.get_mut(&id)
        {
            *sent += 1;
        }
        id
    }

    /// A moved receive right arrived as local `port` (its `Moved` frame on
    /// stream `id`, an ID the peer chose): the peer keeps one send right to
    /// it, where it forwards the port's messages.
    pub fn export_moved(&mut self, id: u64, port: u64) -> Result<(), ReleaseError> {
        if id & MOVED_ID_BIT == 0 || id & SEND_ONCE_ID_BIT != 0 || self.exports.contains_key(&id) {
            return Err(ReleaseError::BadImport { id });
        }
        self.exports.insert(
            id,
            Export {
                kind: ExportKind::Send { port, sent: 1 },
                dead: false,
            },
        );
        self.export_of.entry(port).or_insert(id);
        Ok(())
    }

    /// Export `id` now stands for local `port` instead (a moved port handed
    /// over to the proxy that already named it, `Translator::hand_over`):
    /// `port` may then have two exports to the peer. False, changing
    /// nothing, if `id` is not a live send export.
    pub fn retarget_export(&mut self, id: u64, port: u64) -> bool {
        let Some(Export {
            kind: ExportKind::Send { port: target, .. },
            dead: false,
        }) = self.exports.get_mut(&id)
        else {
            return false;
        };
        let old = std::mem::replace(target, port);
        self.forget_export(old, id);
        match self.export_of.get(&port) {
            Some(_) => self.other_exports.entry(port).or_default().push(id),
            None => {
                self.export_of.insert(port, id);
            }
        }
        true
    }

    /// Export `id` of `port` is gone from the maps by port (another of the
    /// port's, if any, takes its place).
    fn forget_export(&mut self, port: u64, id: u64) {
        if self.export_of.get(&port) == Some(&id) {
            self.export_of.remove(&port);
            if let Some(others) = self.other_exports.get_mut(&port) {
                if let Some(next) = others.pop() {
                    self.export_of.insert(port, next);
                }
            }
        } else if let Some(others) = self.other_exports.get_mut(&port) {
            others.retain(|&o| o != id);
        }
        if self.other_exports.get(&port).is_some_and(Vec::is_empty) {
            self.other_exports.remove(&port);
        }
    }

    /// A send-once right (held by netmsg as `right`) leaves for the peer: a
    /// one-shot export with its own ID.
    pub fn export_send_once(&mut self, right: u64) -> u64 {
        let id = self.new_export(ExportKind::Once { right });
        self.once_export_of_right.insert(right, id);
        id
    }

    /// The peer used one-shot export `id`: its message is delivered with the
    /// held right, which that consumes.
    pub fn send_once_used(&mut self, id: u64) -> Result<Effects, ReleaseError> {
        self.take_once_export(id)
            .map(|(_, dead)| Self::finish_once(id, dead))
            .ok_or(ReleaseError::UnknownExport { id })
    }

    /// One-shot export `id`'s send-once right came home (the importer's
    /// proxy went, unused): the export ends, and its held right is given
    /// instead of delivered through. The held right, whether its port died
    /// (its dead name went with the notification), and what settling does.
    pub fn once_home(&mut self, id: u64) -> Result<(u64, bool, Effects), ReleaseError> {
        self.take_once_export(id)
            .map(|(right, dead)| (right, dead, Self::finish_once(id, dead)))
            .ok_or(ReleaseError::UnknownExport { id })
    }

    /// The end of a one-shot export's stream about senders: only `Dead` is
    /// ever written there, and a stream never written is never opened.
    fn finish_once(id: u64, dead: bool) -> Effects {
        if dead {
            smallvec![Effect::FinishExport { id }]
        } else {
            Effects::new()
        }
    }

    /// The local port died: tell the importer of every export of it — the send
    /// export of `port`, or the one-shot export whose held right is `port`.
    pub fn port_died(&mut self, port: u64) -> Effects {
        let once = self.once_export_of_right.remove(&port);
        let send = self.export_of.get(&port).copied();
        let others = self.other_exports.get(&port).cloned().unwrap_or_default();
        let mut effects = Effects::new();
        for id in send.into_iter().chain(others).chain(once) {
            if let Some(e) = self.exports.get_mut(&id).filter(|e| !e.dead) {
                e.dead = true;
                effects.push(Effect::Send(Frame::Dead { id }));
            }
        }
        effects
    }

    /// Removes one-shot export `id`: its held right and whether it is dead.
    fn take_once_export(&mut self, id: u64) -> Option<(u64, bool)> {
        let Entry::Occupied(export) = self.exports.entry(id) else {
            return None;
        };
        let Export {
            kind: ExportKind::Once { right },
            dead,
        } = *export.get()
        else {
            return None;
        };
        export.remove();
        if self.once_export_of_right.get(&right) == Some(&id) {
            self.once_export_of_right.remove(&right);
        }
        Some((right, dead))
    }

    fn on_release(&mut self, id: u64, count: u64) -> Result<Effects, ReleaseError> {
        let Some(Export {
            kind: ExportKind::Send { port, sent },
            ..
        }) = self.exports.get_mut(&id)
        else {
            return Err(ReleaseError::UnknownExport { id });
        };
        if count > *sent {
            return Err(ReleaseError::OverRelease {
                id,
                count,
                sent: *sent,
            });
        }
        *sent -= count;
        if *sent > 0 {
            return Ok(smallvec![Effect::Send(Frame::Ack { id, left: *sent })]);
        }
        let port = *port;
        self.exports.remove(&id);
        self.forget_export(port, id);
        Ok(smallvec![
            Effect::ReleasePort { port },
            Effect::Send(Frame::Ack { id, left: 0 }),
            Effect::FinishExport { id },
        ])
    }

    fn on_send_once_destroyed(&mut self, id: u64) -> Result<Effects, ReleaseError> {
        let Some((right, dead)) = self.take_once_export(id) else {
            return Err(ReleaseError::UnknownExport { id });
        };
        // A dead port's right is already a dead name: there is nothing to notify.
        if dead {
            Ok(Self::finish_once(id, dead))
        } else {
            Ok(smallvec![Effect::DestroySendOnce { right }])
        }
    }

    // ----- importer side --------------------------------------------------------

    /// A send right of the peer's export `id` arrived in a message.
    pub fn import(&mut self, id: u64) -> Result<(Imported, Effects), ReleaseError> {
        if id & SEND_ONCE_ID_BIT != 0 {
            return Err(ReleaseError::BadImport { id });
        }
        Ok(match self.imports.get_mut(&id) {
            Some(Import {
                state: ImportState::Live { proxy, made },
                received,
                ..
            }) => {
                *made += 1;
                *received += 1;
                (Imported::Proxy(*proxy), Effects::new())
            }
            // A dead port: the right is a dead name, settled at once.
            Some(Import {
                state: ImportState::Tombstone,
                ..
            }) => (
                Imported::Dead,
                smallvec![Effect::Send(Frame::Release { id, count: 1 })],
            ),
            None => {
                let proxy = self.new_import(id, 1);
                (
                    Imported::Proxy(proxy),
                    smallvec![Effect::CreateProxy {
                        proxy,
                        id,
                        once: false,
                    }],
                )
            }
        })
    }

    /// A receive right leaves for the peer, and the port stays here as a
    /// proxy of the peer's export of it: that export's ID (chosen here, with
    /// [`MOVED_ID_BIT`]) and the proxy handle. The import holds the one send
    /// right the peer counts; no send right is made on the proxy for it.
    pub fn import_moved(&mut self) -> (u64, u64) {
        let id = self.next_export | MOVED_ID_BIT;
        self.next_export += 1;
        (id, self.new_import(id, 0))
    }

    /// A live import `id` of one right received, `made` rights made on its
    /// new proxy: the proxy.
    fn new_import(&mut self, id: u64, made: u64) -> u64 {
        let proxy = self.new_proxy();
        self.imports.insert(
            id,
            Import {
                state: ImportState::Live { proxy, made },
                received: 1,
                home_pending: 0,
            },
        );
        self.import_of_proxy.insert(proxy, id);
        proxy
    }

    /// A send right of the peer's export `id` arrived that this node will not
    /// keep (it gives its task the same port by another path): counted as
    /// received and dropped at once, as if its no-senders had come.
    pub fn import_dropped(&mut self, id: u64) -> Result<Effects, ReleaseError> {
        if id & SEND_ONCE_ID_BIT != 0 {
            return Err(ReleaseError::BadImport { id });
        }
        Ok(match self.imports.get_mut(&id) {
            // Reported with the proxy's own rights when its no-senders comes.
            Some(Import {
                state: ImportState::Live { .. },
                received,
                ..
            }) => {
                *received += 1;
                Effects::new()
            }
            _ => smallvec![Effect::Send(Frame::Release { id, count: 1 })],
        })
    }

    /// A send right was made on `proxy` for a right that arrived by another
    /// path (not received from this peer): its make-send count grows, what
    /// will be reported does not.
    pub fn made_extra(&mut self, proxy: u64) {
        if let Some(Import {
            state: ImportState::Live { made, .. },
            ..
        }) = self
            .import_of_proxy
            .get(&proxy)
            .and_then(|id| self.imports.get_mut(id))
        {
            *made += 1;
        }
    }

    /// A send-once right of the peer's one-shot export `id` arrived: a proxy
    /// that stands for it alone.
    /// Each one-shot ID arrives at most once; a repeat is a protocol error
    /// only while the first is still live (settled IDs are not remembered).
    pub fn import_send_once(&mut self, id: u64) -> Result<(Imported, Effects), ReleaseError> {
        if id & SEND_ONCE_ID_BIT == 0 || self.once_proxy_of.contains_key(&id) {
            return Err(ReleaseError::BadImport { id });
        }
        let proxy = self.new_proxy();
        self.once_proxies.insert(proxy, id);
        self.once_proxy_of.insert(id, proxy);
        Ok((
            Imported::Proxy(proxy),
            smallvec![Effect::CreateProxy {
                proxy,
                id,
                once: true,
            }],
        ))
    }

    /// A task used a one-shot proxy: its message goes to export `id` (returned),
    /// the last frame on that stream; the proxy goes.
    pub fn once_used(&mut self, proxy: u64) -> Option<(u64, Effects)> {
        let id = self.once_proxies.remove(&proxy)?;
        self.once_proxy_of.remove(&id);
        Some((
            id,
            smallvec![Effect::DestroyProxy { proxy }, Effect::FinishImport { id }],
        ))
    }

    /// The send-once notification on a one-shot proxy: the task's right was
    /// destroyed unused; the home side is told so its kernel notifies.
    pub fn once_destroyed(&mut self, proxy: u64) -> Effects {
        let Some(id) = self.once_proxies.remove(&proxy) else {
            return Effects::new();
        };
        self.once_proxy_of.remove(&id);
        smallvec![
            Effect::Send(Frame::SendOnceDestroyed { id }),
            Effect::DestroyProxy { proxy },
            Effect::FinishImport { id },
        ]
    }

    /// The proxy's no-senders notification, with its make-send count. Stale
    /// ones (rights were made since) are ignored; the driver re-arms them.
    pub fn no_senders(&mut self, proxy: u64, mscount: u64) -> Effects {
        let Some(&id) = self.import_of_proxy.get(&proxy) else {
            return Effects::new();
        };
        match self.imports.get(&id) {
            // While rights sent home are unconfirmed netmsg holds references,
            // so a no-senders then is stale.
            Some(Import {
                state: ImportState::Live { proxy: p, made },
                received,
                home_pending: 0,
            }) if *p == proxy && *made == mscount => {
                let count = *received;
                self.imports.remove(&id);
                self.import_of_proxy.remove(&proxy);
                smallvec![
                    Effect::Send(Frame::Release { id, count }),
                    Effect::DestroyProxy { proxy },
                ]
            }
            _ => Effects::new(),
        }
    }

    /// `proxy` stops being a proxy (it became the port itself): the rights
    /// received on it are reported at once, or, while rights sent home
    /// through it are unconfirmed (netmsg holds references for them, now on
    /// the port), once they are: the exporter must still know the export
    /// when they arrive. None, changing nothing, if it is not a live send
    /// proxy.
    pub fn detach_proxy(&mut self, proxy: u64) -> Option<Effects> {
        let &id = self.import_of_proxy.get(&proxy)?;
        let Some(Import {
            state: ImportState::Live { proxy: p, .. },
            received,
            home_pending,
        }) = self.imports.get(&id)
        else {
            return None;
        };
        if *p != proxy {
            return None;
        }
        let (count, home_pending) = (*received, *home_pending);
        self.imports.remove(&id);
        self.import_of_proxy.remove(&proxy);
        if home_pending > 0 {
            self.detached.insert(
                (id, proxy),
                Detached {
                    received: count,
                    home_pending,
                },
            );
            return Some(Effects::new());
        }
        Some(if count > 0 {
            smallvec![Effect::Send(Frame::Release { id, count })]
        } else {
            Effects::new()
        })
    }

    /// `count` of a detached import's rights sent home are confirmed (or,
    /// `all`, need no confirmation any more: the export died): its
    /// references go, and with the last its report.
    fn confirm_detached(&mut self, id: u64, count: u64, all: bool) -> Effects {
        let mut left = count;
        let mut effects = Effects::new();
        let keys: Vec<(u64, u64)> = self
            .detached
            .range((id, 0)..=(id, u64::MAX))
            .map(|(&key, _)| key)
            .collect();
        for key in keys {
            if !all && left == 0 {
                break;
            }
            let Some(d) = self.detached.get_mut(&key) else {
                continue;
            };
            let confirmed = if all {
                d.home_pending
            } else {
                left.min(d.home_pending)
            };
            if !all {
                left -= confirmed;
            }
            d.home_pending -= confirmed;
            let last = d.home_pending == 0;
            effects.push(Effect::DropDetachedRefs {
                proxy: key.1,
                count: confirmed,
                last,
            });
            if last {
                let received = d.received;
                self.detached.remove(&key);
                if received > 0 {
                    effects.push(Effect::Send(Frame::Release {
                        id,
                        count: received,
                    }));
                }
            }
        }
        effects
    }

    /// Rights sent home through proxies of import `id` that became the
    /// port, still unconfirmed.
    fn detached_pending(&self, id: u64) -> Option<u64> {
        let mut records = self.detached.range((id, 0)..=(id, u64::MAX)).peekable();
        records.peek()?;
        Some(records.map(|(_, d)| d.home_pending).sum())
    }

    fn on_dead(&mut self, id: u64) -> Effects {
        // A one-shot import: its only right becomes a dead name, and the
        // exporter, which keeps the export until the importer settles it, is
        // told so. If already used or destroyed (or not yet arrived) the
        // settling message is on its way, or will be: nothing to do.
        if id & SEND_ONCE_ID_BIT != 0 {
            let Some(proxy) = self.once_proxy_of.remove(&id) else {
                return Effects::new();
            };
            self.once_proxies.remove(&proxy);
            return smallvec![
                Effect::DestroyProxy { proxy },
                Effect::Send(Frame::SendOnceDestroyed { id }),
                Effect::FinishImport { id },
            ];
        }
        // (A detached import's kept references died with the port.)
        let mut effects = self.confirm_detached(id, 0, true);
        let imp = self.imports.entry(id).or_insert(Import {
            state: ImportState::Tombstone,
            received: 0,
            home_pending: 0,
        });
        // netmsg's kept references die with the proxy.
        imp.home_pending = 0;
        if let ImportState::Live { proxy, .. } =
            std::mem::replace(&mut imp.state, ImportState::Tombstone)
        {
            self.import_of_proxy.remove(&proxy);
            effects.push(Effect::DestroyProxy { proxy });
        }
        if imp.received > 0 {
            let count = std::mem::take(&mut imp.received);
            effects.push(Effect::Send(Frame::Release { id, count }));
        }
        effects
    }

    fn on_ack(&mut self, id: u64, left: u64) -> Effects {
        if left != 0 {
            return Effects::new();
        }
        if matches!(
            self.imports.get(&id),
            Some(Import {
                state: ImportState::Tombstone,
                ..
            })
        ) {
            self.imports.remove(&id);
        }
        smallvec![Effect::FinishImport { id }]
    }

    // ----- both ------------------------------------------------------------------

    /// A task on this node sent the proxy of an import home (a right to it is
    /// in a message to the exporter): its export ID, for `ReceiverExport`.
    /// netmsg keeps the send reference it received until `HomeArrived`.
    pub fn send_home(&mut self, proxy: u64) -> Option<u64> {
        let &id = self.import_of_proxy.get(&proxy)?;
        let imp = self.imports.get_mut(&id)?;
        match imp.state {
            ImportState::Live { .. } => {
                imp.home_pending += 1;
                Some(id)
            }
            ImportState::Tombstone => None,
        }
    }

    /// A right to the local port of export `id` came home in a message: the
    /// port to deliver it as (`None`: no such export, deliver a dead name), and
    /// the confirmation for the importer.
    pub fn home_arrived(&mut self, id: u64) -> (Option<u64>, Effects) {
        match self.exports.get(&id) {
            Some(Export {
                kind: ExportKind::Send { port, .. },
                ..
            }) => (
                Some(*port),
                smallvec![Effect::Send(Frame::HomeArrived { id, count: 1 })],
            ),
            _ => (None, Effects::new()),
        }
    }

    fn on_home_arrived(&mut self, id: u64, count: u64) -> Result<Effects, ReleaseError> {
        // After a death notice the kept references died with the proxy.
        let detached = self.detached_pending(id);
        let Some(Import {
            state: ImportState::Live { proxy, .. },
            home_pending,
            ..
        }) = self
            .imports
            .get_mut(&id)
            .filter(|i| i.home_pending > 0 || detached.is_none())
        else {
            // (Rights sent home through a proxy that became the port; which
            // of two proxies of one export a confirmation is for does not
            // matter: either keeps the export until both are confirmed.)
            if let Some(pending) = detached {
                if count > pending {
                    return Err(ReleaseError::OverHomeArrival { id, count, pending });
                }
                return Ok(self.confirm_detached(id, count, false));
            }
            return Ok(Effects::new());
        };
        if count > *home_pending {
            return Err(ReleaseError::OverHomeArrival {
                id,
                count,
                pending: *home_pending,
            });
        }
        *home_pending -= count;
        Ok(smallvec![Effect::DropProxyRefs {
            proxy: *proxy,
            count,
        }])
    }

    /// A frame from the peer.
    pub fn on_frame(&mut self, frame: Frame) -> Result<Effects, ReleaseError> {
        match frame {
            Frame::Release { id, count } => self.on_release(id, count),
            Frame::Dead { id } => Ok(self.on_dead(id)),
            Frame::Ack { id, left } => Ok(self.on_ack(id, left)),
            Frame::SendOnceDestroyed { id } => self.on_send_once_destroyed(id),
            Frame::HomeArrived { id, count } => self.on_home_arrived(id, count),
        }
    }

    /// The link is gone: every proxy becomes a dead name, every export is
    /// freed, and held send-once rights are destroyed (so their receivers get
    /// send-once notifications).
    pub fn link_lost(&mut self) -> Effects {
        let mut effects: Effects = self
            .imports
            .values()
            .filter_map(|i| match i.state {
                ImportState::Live { proxy, .. } => Some(Effect::DestroyProxy { proxy }),
                ImportState::Tombstone => None,
            })
            .collect();
        effects.extend(
            self.once_proxies
                .keys()
                .map(|&proxy| Effect::DestroyProxy { proxy }),
        );
        effects.extend(
            self.detached
                .iter()
                .map(|(&(_, proxy), d)| Effect::DropDetachedRefs {
                    proxy,
                    count: d.home_pending,
                    last: true,
                }),
        );
        effects.extend(self.exports.values().filter_map(|e| match e.kind {
            ExportKind::Send { port, .. } => Some(Effect::ReleasePort { port }),
            ExportKind::Once { right } if !e.dead => Some(Effect::DestroySendOnce { right }),
            ExportKind::Once { .. } => None,
        }));
        *self = Self {
            next_export: self.next_export,
            next_proxy: self.next_proxy,
            ..Self::default()
        };
        effects
    }

    /// True when no export, import or tombstone remains.
    pub fn is_empty(&self) -> bool {
        self.exports.is_empty()
            && self.imports.is_empty()
            && self.once_proxies.is_empty()
            && self.detached.is_empty()
    }

    /// Live send exports (id, port, unreleased rights).
    pub fn exports(&self) -> Vec<(u64, u64, u64)> {
        self.exports
            .iter()
            .filter_map(|(&id, e)| match e.kind {
                ExportKind::Send { port, sent } => Some((id, port, sent)),
                ExportKind::Once { .. } => None,
            })
            .collect()
    }

    /// Whether proxy `handle` became the port itself with rights sent home
    /// through it unconfirmed (its name stays known until they are).
    pub fn is_detached(&self, handle: u64) -> bool {
        self.detached.keys().any(|&(_, proxy)| proxy == handle)
    }

    /// The export ID of a live send import's proxy `handle`.
    pub fn proxy_import_id(&self, handle: u64) -> Option<u64> {
        let &id = self.import_of_proxy.get(&handle)?;
        matches!(self.imports.get(&id)?.state, ImportState::Live { .. }).then_some(id)
    }

    /// Send rights made on proxy `handle` (what its make-send count must be).
    pub fn made_on(&self, handle: u64) -> Option<u64> {
        let &id = self.import_of_proxy.get(&handle)?;
        match self.imports.get(&id)?.state {
            ImportState::Live { made, .. } => Some(made),
            ImportState::Tombstone => None,
        }
    }

    /// The live one-shot export holding send-once right `right`, if any.
    pub fn once_export_of(&self, right: u64) -> Option<u64> {
        self.once_export_of_right.get(&right).copied()
    }

    /// The newest live send export of local `port` (of two, when a moved
    /// port was handed over to a name that had one), if any.
    pub fn newest_live_export(&self, port: u64) -> Option<u64> {
        let others = self.other_exports.get(&port).into_iter().flatten().rev();
        others
            .copied()
            .find(|id| self.exports.get(id).is_some_and(|e| !e.dead))
            .or_else(|| self.live_export(port))
    }

    /// The live send export of local `port`, if any.
    pub fn live_export(&self, port: u64) -> Option<u64> {
        let &id = self.export_of.get(&port)?;
        (!self.exports[&id].dead).then_some(id)
    }

    /// What export `id` stands for: the local port (or the held send-once
    /// right, when `once`), and whether it is known dead.
    pub fn export_target(&self, id: u64) -> Option<ExportTarget> {
        let e = self.exports.get(&id)?;
        Some(match e.kind {
            ExportKind::Send { port, .. } => ExportTarget {
                port,
                once: false,
                dead: e.dead,
            },
            ExportKind::Once { right } => ExportTarget {
                port: right,
                once: true,
                dead: e.dead,
            },
        })
    }

    /// The proxy of one-shot import `id`, if live.
    pub fn once_proxy(&self, id: u64) -> Option<u64> {
        self.once_proxy_of.get(&id).copied()
    }

    /// Whether any one-shot import is live.
    pub fn has_once_imports(&self) -> bool {
        !self.once_proxies.is_empty()
    }

    /// The live one-shot exports: (the held send-once right, export ID).
    pub fn once_exports(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.once_export_of_right
            .iter()
            .map(|(&right, &id)| (right, id))
    }

    /// Whether any port has a send export (`live_export` finds none else).
    pub fn has_send_exports(&self) -> bool {
        !self.export_of.is_empty()
    }

    /// The proxy of import `id`, if live.
    pub fn proxy_of(&self, id: u64) -> Option<u64> {
        match self.imports.get(&id)?.state {
            ImportState::Live { proxy, .. } => Some(proxy),
            ImportState::Tombstone => None,
        }
    }
}

//! Counted release of exported ports on one link (DESIGN §4.2 item 3), as a
//! pure state machine: the exporter counts the send rights it sends; the
//! importer counts those it receives and, when its proxy's no-senders fires
//! with the make-send count it expects, reports that count; the export dies
//! only when the counts agree. Port death travels as a message; the importer
//! keeps a tombstone for the export ID until the exporter says the count is
//! settled, so a right still in flight arrives as a dead name. FIN comes last.
//!
//! This is the protocol of `shared/models/release.pml`, over any number of
//! ports. Frames go on the port's stream: `Release` importer → exporter (after
//! every message the importer queued for that port), `Dead` and `Ack` exporter
//! → importer.

use std::collections::BTreeMap;

use thiserror::Error;

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
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Write a frame on the port's stream toward the peer.
    Send(Frame),
    /// Create a proxy port for the import `id` (the driver maps `proxy` to a
    /// receive right and asks for its no-senders notification).
    CreateProxy { proxy: u64, id: u64 },
    /// Destroy a proxy: tasks' send rights to it become dead names.
    DestroyProxy { proxy: u64 },
    /// The export of this local port is gone: drop netmsg's send right to it.
    ReleasePort { port: u64 },
    /// Both sides are done with the port's streams: FIN them.
    Finish { id: u64 },
}

/// A peer broke the protocol.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReleaseError {
    #[error("peer released {count} rights of export {id}, but only {sent} were sent")]
    OverRelease { id: u64, count: u64, sent: u64 },
    #[error("peer sent a frame for unknown export {id}")]
    UnknownExport { id: u64 },
}

/// What a received right becomes for the local task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Imported {
    /// A send right made on this proxy (the ledger counted the make-send).
    Proxy(u64),
    /// The port is known dead: the task gets a dead name.
    Dead,
}

#[derive(Debug)]
struct Export {
    port: u64,
    sent: u64,
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
}

/// One node's exports to and imports from one peer.
#[derive(Debug, Default)]
pub struct Ledger {
    exports: BTreeMap<u64, Export>,
    export_of: BTreeMap<u64, u64>,
    next_export: u64,
    imports: BTreeMap<u64, Import>,
    import_of_proxy: BTreeMap<u64, u64>,
    next_proxy: u64,
}

impl Ledger {
    pub fn new() -> Self {
        Self {
            next_export: 1,
            next_proxy: 1,
            ..Self::default()
        }
    }

    // ----- exporter side --------------------------------------------------------

    /// A send right to local `port` leaves for the peer: its export ID. IDs are
    /// never reused on a link.
    pub fn export(&mut self, port: u64) -> u64 {
        let id = match self.export_of.get(&port) {
            Some(&id) if !self.exports[&id].dead => id,
            _ => {
                let id = self.next_export;
                self.next_export += 1;
                self.exports.insert(
                    id,
                    Export {
                        port,
                        sent: 0,
                        dead: false,
                    },
                );
                self.export_of.insert(port, id);
                id
            }
        };
        self.exports.get_mut(&id).expect("present").sent += 1;
        id
    }

    /// The local port died: tell the importer (if it was exported).
    pub fn port_died(&mut self, port: u64) -> Vec<Effect> {
        let Some(&id) = self.export_of.get(&port) else {
            return Vec::new();
        };
        let e = self.exports.get_mut(&id).expect("present");
        if e.dead {
            return Vec::new();
        }
        e.dead = true;
        vec![Effect::Send(Frame::Dead { id })]
    }

    fn on_release(&mut self, id: u64, count: u64) -> Result<Vec<Effect>, ReleaseError> {
        let e = self
            .exports
            .get_mut(&id)
            .ok_or(ReleaseError::UnknownExport { id })?;
        if count > e.sent {
            return Err(ReleaseError::OverRelease {
                id,
                count,
                sent: e.sent,
            });
        }
        e.sent -= count;
        if e.sent > 0 {
            return Ok(vec![Effect::Send(Frame::Ack { id, left: e.sent })]);
        }
        let e = self.exports.remove(&id).expect("present");
        if self.export_of.get(&e.port) == Some(&id) {
            self.export_of.remove(&e.port);
        }
        Ok(vec![
            Effect::ReleasePort { port: e.port },
            Effect::Send(Frame::Ack { id, left: 0 }),
            Effect::Finish { id },
        ])
    }

    // ----- importer side --------------------------------------------------------

    /// A send right of the peer's export `id` arrived in a message.
    pub fn import(&mut self, id: u64) -> (Imported, Vec<Effect>) {
        match self.imports.get_mut(&id) {
            Some(Import {
                state: ImportState::Live { proxy, made },
                received,
            }) => {
                *made += 1;
                *received += 1;
                (Imported::Proxy(*proxy), Vec::new())
            }
            // A dead port: the right is a dead name, settled at once.
            Some(Import {
                state: ImportState::Tombstone,
                ..
            }) => (
                Imported::Dead,
                vec![Effect::Send(Frame::Release { id, count: 1 })],
            ),
            None => {
                let proxy = self.next_proxy;
                self.next_proxy += 1;
                self.imports.insert(
                    id,
                    Import {
                        state: ImportState::Live { proxy, made: 1 },
                        received: 1,
                    },
                );
                self.import_of_proxy.insert(proxy, id);
                (
                    Imported::Proxy(proxy),
                    vec![Effect::CreateProxy { proxy, id }],
                )
            }
        }
    }

    /// The proxy's no-senders notification, with its make-send count. Stale
    /// ones (rights were made since) are ignored; the driver re-arms them.
    pub fn no_senders(&mut self, proxy: u64, mscount: u64) -> Vec<Effect> {
        let Some(&id) = self.import_of_proxy.get(&proxy) else {
            return Vec::new();
        };
        match self.imports.get(&id) {
            Some(Import {
                state: ImportState::Live { proxy: p, made },
                received,
            }) if *p == proxy && *made == mscount => {
                let count = *received;
                self.imports.remove(&id);
                self.import_of_proxy.remove(&proxy);
                vec![
                    Effect::Send(Frame::Release { id, count }),
                    Effect::DestroyProxy { proxy },
                ]
            }
            _ => Vec::new(),
        }
    }

    fn on_dead(&mut self, id: u64) -> Vec<Effect> {
        let mut effects = Vec::new();
        let imp = self.imports.entry(id).or_insert(Import {
            state: ImportState::Tombstone,
            received: 0,
        });
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

    fn on_ack(&mut self, id: u64, left: u64) -> Vec<Effect> {
        if left != 0 {
            return Vec::new();
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
        vec![Effect::Finish { id }]
    }

    // ----- both ------------------------------------------------------------------

    /// A frame from the peer.
    pub fn on_frame(&mut self, frame: Frame) -> Result<Vec<Effect>, ReleaseError> {
        match frame {
            Frame::Release { id, count } => self.on_release(id, count),
            Frame::Dead { id } => Ok(self.on_dead(id)),
            Frame::Ack { id, left } => Ok(self.on_ack(id, left)),
        }
    }

    /// The link is gone: every proxy becomes a dead name, every export is freed.
    pub fn link_lost(&mut self) -> Vec<Effect> {
        let mut effects: Vec<Effect> = self
            .imports
            .values()
            .filter_map(|i| match i.state {
                ImportState::Live { proxy, .. } => Some(Effect::DestroyProxy { proxy }),
                ImportState::Tombstone => None,
            })
            .collect();
        effects.extend(
            self.exports
                .values()
                .map(|e| Effect::ReleasePort { port: e.port }),
        );
        self.exports.clear();
        self.export_of.clear();
        self.imports.clear();
        self.import_of_proxy.clear();
        effects
    }

    /// True when no export, import or tombstone remains.
    pub fn is_empty(&self) -> bool {
        self.exports.is_empty() && self.imports.is_empty()
    }

    /// Live exports (id, port, unreleased rights).
    pub fn exports(&self) -> Vec<(u64, u64, u64)> {
        self.exports
            .iter()
            .map(|(&id, e)| (id, e.port, e.sent))
            .collect()
    }

    /// The proxy of import `id`, if live.
    pub fn proxy_of(&self, id: u64) -> Option<u64> {
        match self.imports.get(&id)?.state {
            ImportState::Live { proxy, .. } => Some(proxy),
            ImportState::Tombstone => None,
        }
    }
}

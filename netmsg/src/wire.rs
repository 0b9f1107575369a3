//! The canonical, architecture-neutral encoding of a Mach message on a port's
//! stream (`docs/protocol.md`, "netmsg messages"). Little-endian, explicit
//! sizes; out-of-line data travels inside the frame; rights travel as wire
//! references whose meaning the translation core gives them. One decoder, which
//! checks every count against the bytes left before allocating, and rejects
//! unknown values and trailing bytes.

use std::num::NonZeroU64;

use bytes::BytesMut;
use mach::types::msg_type;

use crate::release::{Frame, MOVED_ID_BIT, SEND_ONCE_ID_BIT};
use crate::translate::ABOUT_SENDERS_EXPORT;
use thiserror::Error;

/// Frame type of a message on a port stream.
pub const FRAME_MESSAGE: u8 = 1;
/// Frame types of the release protocol (`crate::release::Frame`).
pub const FRAME_RELEASE: u8 = 2;
pub const FRAME_DEAD: u8 = 3;
pub const FRAME_ACK: u8 = 4;
pub const FRAME_SEND_ONCE_DESTROYED: u8 = 5;
pub const FRAME_HOME_ARRIVED: u8 = 6;
/// Frame type of the end of a forwarded lane (`StreamFrame::LaneEnded`).
pub const FRAME_LANE_ENDED: u8 = 7;
/// Frame type of a receive right's port state (`StreamFrame::Moved`).
pub const FRAME_MOVED: u8 = 8;
/// Added to the destination form byte (send-once) of a message that names a
/// one-shot export ([`WireMessage::once`]), which follows as a u64.
pub const ONE_SHOT_EXPORT_NAMED: u8 = 0x80;
/// Format version carried by every message and release frame (2: one-shot
/// rights and messages name a port stream, see `docs/protocol.md`).
pub const VERSION: u8 = 2;
/// Longest node name in a global identity (a DNS name).
pub const MAX_NODE_NAME: usize = 253;

/// A node name as the wire carries it: a DNS name's characters, 1 to
/// [`MAX_NODE_NAME`] bytes.
pub fn valid_node_name(raw: &[u8]) -> bool {
    !raw.is_empty()
        && raw.len() <= MAX_NODE_NAME
        && raw
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.')
}

/// A malformed frame from a peer.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    #[error("frame truncated at byte {at}: {what} needs {needed} bytes, {left} left")]
    Truncated {
        at: usize,
        what: &'static str,
        needed: u64,
        left: usize,
    },
    #[error("byte {at}: {what} has the invalid value {value}")]
    Invalid {
        at: usize,
        what: &'static str,
        value: u64,
    },
    #[error("{0} bytes after the end of the message")]
    Trailing(usize),
    #[error("item {index}: {bytes} bytes of data for {number} elements of {size} bits")]
    DataLength {
        index: usize,
        bytes: u64,
        number: u32,
        size: u16,
    },
}

/// The form a right travels in (its received form).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Form {
    Receive,
    Send,
    SendOnce,
}

impl Form {
    pub fn msg_type(self) -> u8 {
        match self {
            Form::Receive => msg_type::PORT_RECEIVE,
            Form::Send => msg_type::PORT_SEND,
            Form::SendOnce => msg_type::PORT_SEND_ONCE,
        }
    }
    pub fn from_msg_type(t: u8) -> Option<Form> {
        match t {
            msg_type::PORT_RECEIVE => Some(Form::Receive),
            msg_type::PORT_SEND => Some(Form::Send),
            msg_type::PORT_SEND_ONCE => Some(Form::SendOnce),
            _ => None,
        }
    }
}

/// A port's identity across the cluster: the node holding its receive right
/// when it was first exported, the port's number there, and an incarnation
/// that changes when that node restarts. Used to give a task one name for a
/// port it reaches by two paths; never an authority.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GlobalId {
    pub home: String,
    pub port: u64,
    pub incarnation: u64,
}

/// What a right in a message refers to, from the frame sender's point of view.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WireRef {
    /// `MACH_PORT_NULL`.
    Null,
    /// `MACH_PORT_DEAD`.
    Dead,
    /// A send right to a port the sender exports to the receiver, under the
    /// sender's connection-scoped `id` (never reused on the link).
    /// `once_exports` are the sender's live one-shot exports to the receiver
    /// whose send-once rights are to the same port, named when this export is
    /// new (they left before it, so they could not name its stream): the
    /// receiver sends what goes through them on this export's stream, as
    /// through a [`WireRef::OnceExport`] that names it.
    SenderExport {
        id: u64,
        global: GlobalId,
        once_exports: Vec<u64>,
    },
    /// A send-once right the sender exports one-shot under `id`. It has no
    /// global identity: send-once rights are never merged under one name.
    /// `port_stream` is the sender's live send export of the same port to the
    /// receiver, if it has one: the receiver sends what goes through this
    /// right on that export's stream, so it keeps its place among its
    /// messages through its send right (see [`WireMessage::once`]).
    OnceExport { id: u64, port_stream: Option<u64> },
    /// A port the receiver exported, coming home (its `id` in the receiver's
    /// export table).
    ReceiverExport { id: u64 },
    /// The send-once right of the receiver's one-shot export `id`, coming
    /// home: the receiver gives the right it holds for the export, which the
    /// export's import (the sender's one-shot proxy) no longer stands for.
    OnceHome { id: u64 },
    /// A receive right moving to the receiver: the port is the one the
    /// [`StreamFrame::Moved`] frame on stream `id` (an ID the sender chose,
    /// with `MOVED_ID_BIT`) created there; `no_senders` and
    /// `port_destroyed` are the port's no-senders and port-destroyed
    /// requests (send-once rights the sender exports), which move with it.
    MovedReceive {
        id: u64,
        no_senders: Option<Box<WireRight>>,
        port_destroyed: Option<Box<WireRight>>,
    },
}

/// One right carried in a message.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WireRight {
    pub form: Form,
    pub reference: WireRef,
    /// The sender's position on this port's stream when the right left, so the
    /// receiver can hold later messages until that stream has caught up.
    pub watermark: u64,
    /// Where the messages that the right's earlier holders sent to the port
    /// stand on streams into the port's home when the right left: a node that
    /// reaches the port by another path makes its next messages wait there
    /// for them (`docs/protocol.md`, "Global identity").
    pub after: Vec<Dependency>,
    /// For a send right the sender holds through a proxy imported from the
    /// port's home: where at the home the sender forwards what the receiver
    /// sends through it (see [`WireMessage::origin`]).
    pub home_stream: Option<HomeLane>,
}

/// A typed item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireItem {
    Data {
        type_name: u8,
        size: u16,
        number: u32,
        inline: bool,
        longform: bool,
        deallocate: bool,
        bytes: Vec<u8>,
    },
    Rights {
        form: Form,
        inline: bool,
        longform: bool,
        deallocate: bool,
        rights: Vec<WireRight>,
    },
}

impl WireItem {
    /// The wire form of a Mach data item (`None` unless it carries bytes).
    pub fn from_data_item(item: mach::Item) -> Option<WireItem> {
        let mach::Payload::Bytes(bytes) = item.payload else {
            return None;
        };
        Some(WireItem::Data {
            type_name: item.type_name,
            size: item.size,
            number: item.number,
            inline: item.inline,
            longform: item.longform,
            deallocate: item.deallocate,
            bytes,
        })
    }

    /// The Mach item for wire data (`None` for rights).
    pub fn into_data_item(self) -> Option<mach::Item> {
        let WireItem::Data {
            type_name,
            size,
            number,
            inline,
            longform,
            deallocate,
            bytes,
        } = self
        else {
            return None;
        };
        Some(mach::Item {
            type_name,
            size,
            number,
            inline,
            longform,
            deallocate,
            payload: mach::Payload::Bytes(bytes),
        })
    }
}

/// A causal dependency, checked at the port's home: deliver only once the
/// home has delivered `position` messages of the lane `origin` (none: `via`'s
/// own) on node `via`'s stream of the home's export `port` (void once the link
/// to `via` is gone, or the lane ended). `home` is the node that reads that
/// stream: export IDs are per exporter, so only it may check the
/// dependency (another node's stream of the same ID is another port's).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dependency {
    pub via: String,
    pub home: String,
    pub port: u64,
    pub origin: Option<Origin>,
    pub position: u64,
}

/// A lane of forwarded messages: those of node `node` while its link to the
/// forwarder lasts (`era`, counted by the forwarder per link to that node).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    pub node: String,
    pub era: u64,
}

/// The port's home (`home`, the node its sender's proxy imports it from),
/// the sender's import ID there (`stream`) and the era the receiver's lane
/// has there. (Import IDs are per exporter: the home tells apart streams of
/// two ports that the sender imports from two nodes under the same ID.)
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HomeLane {
    pub home: String,
    pub stream: u64,
    pub era: u64,
}

/// A Mach message bound for the stream's port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireMessage {
    pub id: i32,
    /// `msgh_bits` other than the port types and `COMPLEX` (kept for fidelity).
    pub other_bits: u32,
    /// A flush marker (see [`MARKER_ID`]), not a task's message: on the wire,
    /// `COMPLEX`'s bit of the header bits, which a task's message never
    /// carries there.
    pub marker: bool,
    /// The form of the destination right the sender used (send or send-once).
    pub dest_form: Form,
    /// With `dest_form` send-once, on a send export's stream: the receiver's
    /// one-shot export of the same port the message went through, sent on the
    /// stream of the sender's send right to keep its place among those
    /// messages (see [`WireRef::OnceExport`]).
    pub once: Option<NonZeroU64>,
    pub reply: Option<WireRight>,
    /// The lane of the message the sender forwards (through its proxy): each
    /// origin's forwarded messages form their own lane of the stream, in the
    /// origin's order, so a position in it is the origin's own count.
    pub origin: Option<Origin>,
    pub dependencies: Vec<Dependency>,
    pub items: Vec<WireItem>,
}

struct Writer(BytesMut);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.extend_from_slice(&[v]);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn form(&mut self, f: Form) {
        self.u8(f.msg_type());
    }
    fn flags(&mut self, inline: bool, longform: bool, deallocate: bool) {
        self.u8(u8::from(inline) | u8::from(longform) << 1 | u8::from(deallocate) << 2);
    }
    fn right(&mut self, r: &WireRight) {
        self.form(r.form);
        match &r.reference {
            WireRef::Null => self.u8(0),
            WireRef::Dead => self.u8(1),
            WireRef::SenderExport {
                id,
                global,
                once_exports,
            } => {
                self.u8(if once_exports.is_empty() { 2 } else { 7 });
                self.u64(*id);
                self.global(global);
                if !once_exports.is_empty() {
                    // (A count is a u16: beyond it, the rest keep the
                    // one-shot stream, as if not named.)
                    let named = &once_exports[..once_exports.len().min(usize::from(u16::MAX))];
                    self.u16(named.len() as u16);
                    named.iter().for_each(|&e| self.u64(e));
                }
            }
            WireRef::ReceiverExport { id } => {
                self.u8(3);
                self.u64(*id);
            }
            WireRef::OnceHome { id } => {
                self.u8(8);
                self.u64(*id);
            }
            WireRef::OnceExport { id, port_stream } => {
                self.u8(if port_stream.is_some() { 6 } else { 5 });
                self.u64(*id);
                if let Some(stream) = port_stream {
                    self.u64(*stream);
                }
            }
            WireRef::MovedReceive {
                id,
                no_senders,
                port_destroyed,
            } => {
                self.u8(4);
                self.u64(*id);
                for request in [no_senders, port_destroyed] {
                    match request {
                        None => self.u8(0),
                        Some(r) => {
                            self.u8(1);
                            self.right(r);
                        }
                    }
                }
            }
        }
        self.u64(r.watermark);
        self.dependencies(&r.after);
        match &r.home_stream {
            None => self.u8(0),
            Some(h) => {
                self.u8(1);
                self.bytes(h.home.as_bytes());
                self.u64(h.stream);
                self.u64(h.era);
            }
        }
    }
    fn global(&mut self, g: &GlobalId) {
        self.bytes(g.home.as_bytes());
        self.u64(g.port);
        self.u64(g.incarnation);
    }
    fn origin(&mut self, o: &Option<Origin>) {
        match o {
            None => self.u8(0),
            Some(o) => {
                self.u8(1);
                self.bytes(o.node.as_bytes());
                self.u64(o.era);
            }
        }
    }
    fn dependencies(&mut self, deps: &[Dependency]) {
        self.u16(deps.len() as u16);
        for d in deps {
            self.bytes(d.via.as_bytes());
            self.bytes(d.home.as_bytes());
            self.u64(d.port);
            self.origin(&d.origin);
            self.u64(d.position);
        }
    }
}

impl WireMessage {
    /// The frame (without the transport's length prefix).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_onto(BytesMut::new()).into()
    }

    /// About the bytes of the frame, at least: what to reserve, so that
    /// encoding does not grow the buffer again and again (out-of-line data
    /// can be megabytes).
    pub fn size_hint(&self) -> usize {
        let items: usize = self
            .items
            .iter()
            .map(|item| match item {
                WireItem::Data { bytes, .. } => 16 + bytes.len(),
                WireItem::Rights { rights, .. } => 16 + 64 * rights.len(),
            })
            .sum();
        let rights = usize::from(self.reply.is_some()) + self.dependencies.len();
        96 + 64 * rights + items
    }

    /// The frame, appended to `buf`.
    fn encode_onto(&self, mut buf: BytesMut) -> BytesMut {
        buf.reserve(self.size_hint());
        let mut w = Writer(buf);
        w.u8(FRAME_MESSAGE);
        w.u8(VERSION);
        w.u32(self.id as u32);
        let marker = if self.marker {
            mach::types::msgh_bits::COMPLEX
        } else {
            0
        };
        w.u32(self.other_bits | marker);
        match self.once {
            // (Only through a send-once right; the form's byte says so.)
            Some(once) => {
                w.u8(Form::SendOnce.msg_type() | ONE_SHOT_EXPORT_NAMED);
                w.u64(once.get());
            }
            None => w.form(self.dest_form),
        }
        match &self.reply {
            None => w.u8(0),
            Some(r) => {
                w.u8(1);
                w.right(r);
            }
        }
        w.origin(&self.origin);
        w.dependencies(&self.dependencies);
        w.u32(self.items.len() as u32);
        for item in &self.items {
            match item {
                WireItem::Data {
                    type_name,
                    size,
                    number,
                    inline,
                    longform,
                    deallocate,
                    bytes,
                } => {
                    w.u8(0);
                    w.u8(*type_name);
                    w.u16(*size);
                    w.u32(*number);
                    w.flags(*inline, *longform, *deallocate);
                    w.bytes(bytes);
                }
                WireItem::Rights {
                    form,
                    inline,
                    longform,
                    deallocate,
                    rights,
                } => {
                    w.u8(1);
                    w.form(*form);
                    w.flags(*inline, *longform, *deallocate);
                    w.u32(rights.len() as u32);
                    for r in rights {
                        w.right(r);
                    }
                }
            }
        }
        w.0
    }

    /// Decodes one frame exactly.
    pub fn decode(frame: &[u8]) -> Result<WireMessage, WireError> {
        let mut r = Reader { b: frame, at: 0 };
        let kind = r.u8("frame type")?;
        if kind != FRAME_MESSAGE {
            return Err(WireError::Invalid {
                at: 0,
                what: "frame type",
                value: u64::from(kind),
            });
        }
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(WireError::Invalid {
                at: 1,
                what: "version",
                value: u64::from(version),
            });
        }
        let id = r.u32("message id")? as i32;
        let bits = r.u32("header bits")?;
        let marker = bits & mach::types::msgh_bits::COMPLEX != 0;
        let other_bits = bits & !mach::types::msgh_bits::COMPLEX;
        if other_bits & mach::types::msgh_bits::PORTS_MASK != 0 {
            return Err(WireError::Invalid {
                at: 6,
                what: "header bits",
                value: u64::from(other_bits),
            });
        }
        let named = Form::SendOnce.msg_type() | ONE_SHOT_EXPORT_NAMED;
        let (dest_form, once) = if r.b.get(r.at) == Some(&named) {
            r.at += 1;
            let at = r.at;
            let id = r.u64("one-shot export")?;
            let once = NonZeroU64::new(id).ok_or(WireError::Invalid {
                at,
                what: "one-shot export",
                value: 0,
            })?;
            (Form::SendOnce, Some(once))
        } else {
            (r.form()?, None)
        };
        if dest_form == Form::Receive {
            return Err(WireError::Invalid {
                at: r.at - 1,
                what: "destination form",
                value: 16,
            });
        }
        let reply = match r.u8("reply presence")? {
            0 => None,
            1 => {
                let right = r.right()?;
                if right.form == Form::Receive {
                    return Err(WireError::Invalid {
                        at: r.at,
                        what: "reply form",
                        value: 16,
                    });
                }
                Some(right)
            }
            v => {
                return Err(WireError::Invalid {
                    at: r.at - 1,
                    what: "reply presence",
                    value: u64::from(v),
                })
            }
        };
        let origin = r.origin()?;
        let dependencies = r.dependencies()?;
        let nitems = r.u32("item count")? as usize;
        // Each item takes at least 7 bytes.
        r.need(nitems as u64 * 7, "items")?;
        let mut items = Vec::with_capacity(nitems);
        for index in 0..nitems {
            let at = r.at;
            items.push(match r.u8("item kind")? {
                0 => {
                    let type_name = r.u8("type name")?;
                    if !msg_type::is_known(type_name) || msg_type::is_port_any(type_name) {
                        return Err(WireError::Invalid {
                            at: r.at - 1,
                            what: "data type name",
                            value: u64::from(type_name),
                        });
                    }
                    let size = r.u16("element size")?;
                    let number = r.u32("element count")?;
                    let (inline, longform, deallocate) = r.flags()?;
                    let bytes = r.bytes("data")?;
                    let expected = (u64::from(number) * u64::from(size)).div_ceil(8);
                    if bytes.len() as u64 != expected {
                        return Err(WireError::DataLength {
                            index,
                            bytes: bytes.len() as u64,
                            number,
                            size,
                        });
                    }
                    WireItem::Data {
                        type_name,
                        size,
                        number,
                        inline,
                        longform,
                        deallocate,
                        bytes,
                    }
                }
                1 => {
                    let form = r.form()?;
                    let (inline, longform, deallocate) = r.flags()?;
                    let count = r.u32("right count")? as usize;
                    // Each right takes at least 13 bytes.
                    r.need(count as u64 * 13, "rights")?;
                    let mut rights = Vec::with_capacity(count);
                    for _ in 0..count {
                        let right = r.right()?;
                        if right.form != form {
                            return Err(WireError::Invalid {
                                at: r.at,
                                what: "right form within its item",
                                value: right.form.msg_type() as u64,
                            });
                        }
                        rights.push(right);
                    }
                    WireItem::Rights {
                        form,
                        inline,
                        longform,
                        deallocate,
                        rights,
                    }
                }
                v => {
                    return Err(WireError::Invalid {
                        at,
                        what: "item kind",
                        value: u64::from(v),
                    })
                }
            });
        }
        if r.at != frame.len() {
            return Err(WireError::Trailing(frame.len() - r.at));
        }
        // (A marker is dropped, not delivered: a right in one would be lost.)
        let rights = items.iter().any(|i| matches!(i, WireItem::Rights { .. }));
        if marker && (reply.is_some() || rights) {
            return Err(WireError::Invalid {
                at: 6,
                what: "flush marker with rights",
                value: u64::from(bits),
            });
        }
        Ok(WireMessage {
            id,
            other_bits,
            marker,
            dest_form,
            once,
            reply,
            origin,
            dependencies,
            items,
        })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn need(&self, n: u64, what: &'static str) -> Result<(), WireError> {
        let left = self.b.len() - self.at;
        if n > left as u64 {
            return Err(WireError::Truncated {
                at: self.at,
                what,
                needed: n,
                left,
            });
        }
        Ok(())
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], WireError> {
        self.need(n as u64, what)?;
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(
            self.take(2, what)?.try_into().expect("2"),
        ))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4"),
        ))
    }
    /// A u32 of at most `max` (the error names where it started).
    fn u32_at_most(&mut self, what: &'static str, max: u32) -> Result<u32, WireError> {
        let at = self.at;
        let v = self.u32(what)?;
        if v > max {
            return Err(WireError::Invalid {
                at,
                what,
                value: u64::from(v),
            });
        }
        Ok(v)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8"),
        ))
    }
    fn bytes(&mut self, what: &'static str) -> Result<Vec<u8>, WireError> {
        let n = self.u32(what)? as usize;
        Ok(self.take(n, what)?.to_vec())
    }
    fn form(&mut self) -> Result<Form, WireError> {
        let at = self.at;
        let v = self.u8("right form")?;
        Form::from_msg_type(v).ok_or(WireError::Invalid {
            at,
            what: "right form",
            value: u64::from(v),
        })
    }
    fn flags(&mut self) -> Result<(bool, bool, bool), WireError> {
        let at = self.at;
        let f = self.u8("item flags")?;
        if f & !0b111 != 0 {
            return Err(WireError::Invalid {
                at,
                what: "item flags",
                value: u64::from(f),
            });
        }
        let (inline, longform, deallocate) = (f & 1 != 0, f & 2 != 0, f & 4 != 0);
        if inline && deallocate {
            return Err(WireError::Invalid {
                at,
                what: "item flags (inline and deallocate)",
                value: u64::from(f),
            });
        }
        Ok((inline, longform, deallocate))
    }
    fn nonzero_u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        let at = self.at;
        match self.u64(what)? {
            0 => Err(WireError::Invalid { at, what, value: 0 }),
            v => Ok(v),
        }
    }
    fn global(&mut self) -> Result<GlobalId, WireError> {
        Ok(GlobalId {
            home: self.node_name()?,
            port: self.u64("home port")?,
            incarnation: self.u64("incarnation")?,
        })
    }
    fn node_name(&mut self) -> Result<String, WireError> {
        let at = self.at;
        let raw = self.bytes("node name")?;
        if !valid_node_name(&raw) {
            return Err(WireError::Invalid {
                at,
                what: "node name",
                value: raw.len() as u64,
            });
        }
        Ok(String::from_utf8(raw).expect("ascii"))
    }
    fn right(&mut self) -> Result<WireRight, WireError> {
        self.right_in(false)
    }
    /// A right; `nested`: inside a moving receive right (which cannot hold
    /// another).
    fn right_in(&mut self, nested: bool) -> Result<WireRight, WireError> {
        let form = self.form()?;
        let at = self.at;
        let reference = match self.u8("reference tag")? {
            0 => WireRef::Null,
            1 => WireRef::Dead,
            2 => WireRef::SenderExport {
                id: self.u64("export id")?,
                global: self.global()?,
                once_exports: Vec::new(),
            },
            7 => WireRef::SenderExport {
                id: self.u64("export id")?,
                global: self.global()?,
                once_exports: self.once_exports()?,
            },
            3 => WireRef::ReceiverExport {
                id: self.u64("export id")?,
            },
            5 => WireRef::OnceExport {
                id: self.u64("export id")?,
                port_stream: None,
            },
            6 => WireRef::OnceExport {
                id: self.u64("export id")?,
                port_stream: Some(self.u64("port stream")?),
            },
            8 => WireRef::OnceHome {
                id: self.u64("export id")?,
            },
            4 if nested => {
                return Err(WireError::Invalid {
                    at,
                    what: "receive right inside a receive right",
                    value: 4,
                })
            }
            4 => {
                let id_at = self.at;
                let id = self.u64("moved port id")?;
                if id & MOVED_ID_BIT == 0 || id & SEND_ONCE_ID_BIT != 0 {
                    return Err(WireError::Invalid {
                        at: id_at,
                        what: "moved port id",
                        value: id,
                    });
                }
                let no_senders = self.request(
                    "no-senders request",
                    "no-senders request (not an exported send-once right)",
                )?;
                let port_destroyed = self.request(
                    "port-destroyed request",
                    "port-destroyed request (not an exported send-once right)",
                )?;
                WireRef::MovedReceive {
                    id,
                    no_senders,
                    port_destroyed,
                }
            }
            v => {
                return Err(WireError::Invalid {
                    at,
                    what: "reference tag",
                    value: u64::from(v),
                })
            }
        };
        // A named right's tag is fixed by its form.
        let fits = matches!(
            (form, &reference),
            (_, WireRef::Null | WireRef::Dead)
                | (Form::Receive, WireRef::MovedReceive { .. })
                | (
                    Form::Send,
                    WireRef::SenderExport { .. } | WireRef::ReceiverExport { .. }
                )
                | (
                    Form::SendOnce,
                    WireRef::OnceExport { .. } | WireRef::OnceHome { .. }
                )
        );
        if !fits {
            return Err(WireError::Invalid {
                at,
                what: "reference tag for the right's form",
                value: u64::from(form.msg_type()),
            });
        }
        let watermark = self.u64("watermark")?;
        let at = self.at;
        let after = self.dependencies()?;
        if !after.is_empty()
            && matches!(
                reference,
                WireRef::Null
                    | WireRef::Dead
                    | WireRef::MovedReceive { .. }
                    | WireRef::OnceExport { .. }
                    | WireRef::OnceHome { .. }
            )
        {
            return Err(WireError::Invalid {
                at,
                what: "positions on a null, dead, receive or one-shot right",
                value: after.len() as u64,
            });
        }
        if watermark != 0 && matches!(reference, WireRef::MovedReceive { .. }) {
            return Err(WireError::Invalid {
                at,
                what: "watermark on a receive right",
                value: watermark,
            });
        }
        let at = self.at;
        let home_stream = match self.u8("home stream")? {
            0 => None,
            1 => Some(HomeLane {
                home: self.node_name()?,
                stream: self.u64("home stream")?,
                era: self.u64("home lane era")?,
            }),
            v => {
                return Err(WireError::Invalid {
                    at,
                    what: "home stream",
                    value: u64::from(v),
                })
            }
        };
        if home_stream.is_some() && !matches!(reference, WireRef::SenderExport { .. }) {
            return Err(WireError::Invalid {
                at,
                what: "home stream on a right the sender does not export",
                value: 1,
            });
        }
        Ok(WireRight {
            form,
            reference,
            watermark,
            after,
            home_stream,
        })
    }
    fn origin(&mut self) -> Result<Option<Origin>, WireError> {
        let at = self.at;
        match self.u8("origin presence")? {
            0 => Ok(None),
            1 => Ok(Some(Origin {
                node: self.node_name()?,
                era: self.u64("origin era")?,
            })),
            v => Err(WireError::Invalid {
                at,
                what: "origin presence",
                value: u64::from(v),
            }),
        }
    }
    /// A moved port's notification request: none, or a send-once right the
    /// sender exports.
    fn request(
        &mut self,
        what: &'static str,
        not_exported: &'static str,
    ) -> Result<Option<Box<WireRight>>, WireError> {
        let at = self.at;
        match self.u8(what)? {
            0 => Ok(None),
            1 => {
                let r = self.right_in(true)?;
                if !matches!(
                    r.reference,
                    WireRef::OnceExport {
                        port_stream: None,
                        ..
                    }
                ) {
                    return Err(WireError::Invalid {
                        at,
                        what: not_exported,
                        value: r.form.msg_type() as u64,
                    });
                }
                Ok(Some(Box::new(r)))
            }
            v => Err(WireError::Invalid {
                at,
                what,
                value: u64::from(v),
            }),
        }
    }

    fn embargo(&mut self) -> Result<Option<Embargo>, WireError> {
        let at = self.at;
        match self.u8("embargo presence")? {
            0 => return Ok(None),
            1 => {}
            v => {
                return Err(WireError::Invalid {
                    at,
                    what: "embargo presence",
                    value: u64::from(v),
                })
            }
        }
        let at = self.at;
        let export_at = at;
        let export = self.u64("embargo export")?;
        if export & SEND_ONCE_ID_BIT != 0 {
            return Err(WireError::Invalid {
                at,
                what: "embargo export",
                value: export,
            });
        }
        let era = self.u64("embargo era")?;
        let queued = self.u64("embargo queued")?;
        let send_once = self.u32_at_most("embargo send-once rights", MAX_MOVED_SEND_ONCE)?;
        let at = self.at;
        let n = self.u16("embargo lane count")? as usize;
        if n > MAX_EMBARGO_LANES {
            return Err(WireError::Invalid {
                at,
                what: "embargo lane count",
                value: n as u64,
            });
        }
        // Each lane takes at least 9 bytes.
        self.need(n as u64 * 9, "embargo lanes")?;
        let mut lanes: Vec<(Option<Origin>, u64)> = Vec::with_capacity(n);
        for _ in 0..n {
            let at = self.at;
            let origin = self.origin()?;
            if lanes.iter().any(|(o, _)| *o == origin) {
                return Err(WireError::Invalid {
                    at,
                    what: "embargo lane counted twice",
                    value: 0,
                });
            }
            lanes.push((origin, self.u64("embargo lane count")?));
        }
        // (Export 0: the sender counted none of the receiver's messages.)
        if export == 0 && (era != 0 || send_once != 0 || !lanes.is_empty()) {
            return Err(WireError::Invalid {
                at: export_at,
                what: "counts in an embargo of no export",
                value: era.max(u64::from(send_once)).max(lanes.len() as u64),
            });
        }
        Ok(Some(Embargo {
            export,
            era,
            queued,
            send_once,
            lanes,
        }))
    }
    /// Tag 7's one-shot export IDs: at least one, each a one-shot ID.
    fn once_exports(&mut self) -> Result<Vec<u64>, WireError> {
        let at = self.at;
        let n = self.u16("one-shot export count")? as usize;
        if n == 0 {
            return Err(WireError::Invalid {
                at,
                what: "one-shot export count (tag 7 names at least one)",
                value: 0,
            });
        }
        self.need(n as u64 * 8, "one-shot export ids")?;
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let at = self.at;
            let id = self.u64("one-shot export id")?;
            if id & SEND_ONCE_ID_BIT == 0 {
                return Err(WireError::Invalid {
                    at,
                    what: "one-shot export id",
                    value: id,
                });
            }
            ids.push(id);
        }
        Ok(ids)
    }

    fn dependencies(&mut self) -> Result<Vec<Dependency>, WireError> {
        let n = self.u16("dependency count")? as usize;
        // Each dependency takes at least 27 bytes.
        self.need(n as u64 * 27, "dependencies")?;
        let mut deps = Vec::with_capacity(n);
        for _ in 0..n {
            deps.push(Dependency {
                via: self.node_name()?,
                home: self.node_name()?,
                port: self.u64("dependency port")?,
                origin: self.origin()?,
                position: self.nonzero_u64("dependency position")?,
            });
        }
        Ok(deps)
    }
}

/// Any frame on a port stream: a message, or a release-protocol frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamFrame {
    Message(WireMessage),
    Release(Frame),
    /// On the stream of export `id`: the sender forwards nothing more in lane
    /// `origin` (its link to that node is gone; what was on the way is lost).
    LaneEnded {
        id: u64,
        origin: Origin,
    },
    /// The first frame on the stream of a moving receive right's port (an ID
    /// the sender chose, with `MOVED_ID_BIT`): the receiver creates the port
    /// with this state, and the sender forwards the port's messages here.
    Moved(MovedPort),
}

/// A moving receive right's port state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovedPort {
    pub id: u64,
    /// The port's identity, which stays the port's wherever it moves.
    pub global: GlobalId,
    pub mscount: u32,
    pub seqno: u32,
    pub qlimit: u32,
    /// Send-once rights to the port left behind (at most
    /// [`MAX_MOVED_SEND_ONCE`]): each ends in one message forwarded here
    /// through a send-once right (used, or its notification).
    pub send_once: u32,
    /// What the receiver needs to take the port under the name it may have
    /// once its earlier messages are back (protocol.md, "Route shortening"):
    /// through this sender (`export` set), or through a third node (`export`
    /// 0, only `queued` counted).
    pub embargo: Option<Embargo>,
}

/// The sender's count of what the receiver sent toward the port before the
/// move, lane by lane of the receiver's stream of `export`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Embargo {
    /// The sender's export of the port to the receiver; 0 when the receiver
    /// imports none from the sender (it may reach the port through a third
    /// node: then it sends flush markers that way, and every other field
    /// but `queued` is 0 or empty).
    pub export: u64,
    /// The receiver's era in what the sender forwards: the receiver's own
    /// messages come back in lane (receiver, era) of this stream.
    pub era: u64,
    /// Messages queued on the port at the move: the first after this frame
    /// in the sender's own lane.
    pub queued: u64,
    /// Send-once rights the sender kept for the receiver's forwarder of the
    /// port, destroyed at the move (the rights the receiver's tasks hold to
    /// that forwarder stood for them): at most [`MAX_MOVED_SEND_ONCE`].
    pub send_once: u32,
    /// Per lane of the stream of `export` (None: the receiver's own), the
    /// messages the sender had taken in; later ones come back in their lane.
    pub lanes: Vec<(Option<Origin>, u64)>,
}

/// `msgh_id` of a flush marker ([`WireMessage::marker`]): a message a node
/// sends toward a port through a third node, in each lane it wrote there,
/// and that comes back to it behind everything it sent that way
/// (protocol.md, "Route shortening"). One data item, the marker's number and
/// a MAC only its maker can check. Nodes relay it like a message; its maker
/// takes it out when it comes back, and any other node drops it where it
/// would reach a port: no task sees it.
pub const MARKER_ID: i32 = 0x6e6d_4d4b;

/// The bytes of a flush marker's one data item: its number, then the first
/// eight bytes of its MAC.
pub const MARKER_LEN: usize = 16;

/// The most send-once rights a `Moved` frame announces.
pub const MAX_MOVED_SEND_ONCE: u32 = 4096;

/// The most lanes an [`Embargo`] counts.
pub const MAX_EMBARGO_LANES: usize = 64;

impl StreamFrame {
    pub fn encode(&self) -> Vec<u8> {
        self.encode_onto(BytesMut::new()).into()
    }

    /// The frame, appended to `buf` (which may hold earlier frames: the
    /// driver splits each off the one buffer, without an allocation each).
    pub fn encode_into(&self, buf: &mut BytesMut) {
        *buf = self.encode_onto(std::mem::take(buf));
    }

    /// The frame, appended to `buf`.
    fn encode_onto(&self, mut buf: BytesMut) -> BytesMut {
        let frame = match self {
            StreamFrame::Message(m) => return m.encode_onto(buf),
            StreamFrame::LaneEnded { id, origin } => {
                buf.reserve(32 + origin.node.len());
                let mut w = Writer(buf);
                w.u8(FRAME_LANE_ENDED);
                w.u8(VERSION);
                w.u64(*id);
                w.origin(&Some(origin.clone()));
                return w.0;
            }
            StreamFrame::Moved(m) => {
                buf.reserve(48 + m.global.home.len());
                let mut w = Writer(buf);
                w.u8(FRAME_MOVED);
                w.u8(VERSION);
                w.u64(m.id);
                w.global(&m.global);
                w.u32(m.mscount);
                w.u32(m.seqno);
                w.u32(m.qlimit);
                w.u32(m.send_once);
                match &m.embargo {
                    None => w.u8(0),
                    Some(e) => {
                        w.u8(1);
                        w.u64(e.export);
                        w.u64(e.era);
                        w.u64(e.queued);
                        w.u32(e.send_once);
                        w.u16(e.lanes.len() as u16);
                        for (origin, n) in &e.lanes {
                            w.origin(origin);
                            w.u64(*n);
                        }
                    }
                }
                return w.0;
            }
            StreamFrame::Release(f) => f,
        };
        let (kind, id, value) = match *frame {
            Frame::Release { id, count } => (FRAME_RELEASE, id, Some(count)),
            Frame::Dead { id } => (FRAME_DEAD, id, None),
            Frame::Ack { id, left } => (FRAME_ACK, id, Some(left)),
            Frame::SendOnceDestroyed { id } => (FRAME_SEND_ONCE_DESTROYED, id, None),
            Frame::HomeArrived { id, count } => (FRAME_HOME_ARRIVED, id, Some(count)),
        };
        buf.reserve(18);
        let mut w = Writer(buf);
        w.u8(kind);
        w.u8(VERSION);
        w.u64(id);
        if let Some(v) = value {
            w.u64(v);
        }
        w.0
    }

    /// Decodes one frame exactly. Release-protocol frames are checked for what
    /// the protocol never sends: a release of 0 rights, and IDs of the wrong
    /// kind (one-shot IDs have `SEND_ONCE_ID_BIT`; see `crate::release`).
    pub fn decode(frame: &[u8]) -> Result<StreamFrame, WireError> {
        let mut r = Reader { b: frame, at: 0 };
        let kind = r.u8("frame type")?;
        if kind == FRAME_MESSAGE {
            return WireMessage::decode(frame).map(StreamFrame::Message);
        }
        if !(FRAME_RELEASE..=FRAME_MOVED).contains(&kind) {
            return Err(WireError::Invalid {
                at: 0,
                what: "frame type",
                value: u64::from(kind),
            });
        }
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(WireError::Invalid {
                at: 1,
                what: "version",
                value: u64::from(version),
            });
        }
        let id = r.u64("export id")?;
        let once = id & SEND_ONCE_ID_BIT != 0;
        if kind == FRAME_MOVED {
            if once || id & MOVED_ID_BIT == 0 {
                return Err(WireError::Invalid {
                    at: 2,
                    what: "moved port id",
                    value: id,
                });
            }
            let global = r.global()?;
            let mscount = r.u32("make-send count")?;
            let seqno = r.u32("sequence number")?;
            let qlimit = r.u32_at_most("queue limit", mach::types::QLIMIT_MAX)?;
            let send_once = r.u32_at_most("send-once rights", MAX_MOVED_SEND_ONCE)?;
            let embargo = r.embargo()?;
            if r.at != frame.len() {
                return Err(WireError::Trailing(frame.len() - r.at));
            }
            return Ok(StreamFrame::Moved(MovedPort {
                id,
                global,
                mscount,
                seqno,
                qlimit,
                send_once,
                embargo,
            }));
        }
        if kind == FRAME_LANE_ENDED {
            if once {
                return Err(WireError::Invalid {
                    at: 2,
                    what: "export id (one-shot exports forward nothing)",
                    value: id,
                });
            }
            let at = r.at;
            let Some(origin) = r.origin()? else {
                return Err(WireError::Invalid {
                    at,
                    what: "lane end without its lane",
                    value: 0,
                });
            };
            if r.at != frame.len() {
                return Err(WireError::Trailing(frame.len() - r.at));
            }
            return Ok(StreamFrame::LaneEnded { id, origin });
        }
        let (parsed, wrong_kind) = match kind {
            FRAME_RELEASE => (
                Frame::Release {
                    id,
                    count: r.nonzero_u64("release count")?,
                },
                once,
            ),
            FRAME_HOME_ARRIVED => (
                Frame::HomeArrived {
                    id,
                    count: r.nonzero_u64("arrival count")?,
                },
                once,
            ),
            FRAME_DEAD => (Frame::Dead { id }, false),
            FRAME_ACK => (
                Frame::Ack {
                    id,
                    left: r.u64("rights left")?,
                },
                once,
            ),
            _ => (Frame::SendOnceDestroyed { id }, !once),
        };
        if wrong_kind {
            return Err(WireError::Invalid {
                at: 2,
                what: "export id (wrong kind for the frame)",
                value: id,
            });
        }
        if r.at != frame.len() {
            return Err(WireError::Trailing(frame.len() - r.at));
        }
        Ok(StreamFrame::Release(parsed))
    }
}

/// A frame of a link's one-shot stream (`docs/protocol.md`, "The one-shot
/// stream"): the frame of one one-shot port stream, tagged with that port
/// stream's ID (`id` or `id ^ 2^62` for a one-shot export `id`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OneShotFrame {
    pub stream: u64,
    pub frame: StreamFrame,
}

/// Bytes of a one-shot frame's tag.
const ONE_SHOT_TAG_LEN: usize = 8;

impl OneShotFrame {
    pub fn encode(&self) -> Vec<u8> {
        self.frame.encode_tagged(self.stream)
    }

    /// Decodes one frame exactly: a tag naming a one-shot port stream, then
    /// a frame as [`StreamFrame::decode`] takes it.
    pub fn decode(bytes: &[u8]) -> Result<OneShotFrame, WireError> {
        let mut r = Reader { b: bytes, at: 0 };
        let stream = r.u64("one-shot stream id")?;
        let export = stream & !(SEND_ONCE_ID_BIT | ABOUT_SENDERS_EXPORT);
        if stream & SEND_ONCE_ID_BIT == 0 || export & MOVED_ID_BIT != 0 || export == 0 {
            return Err(WireError::Invalid {
                at: 0,
                what: "one-shot stream id",
                value: stream,
            });
        }
        let frame = StreamFrame::decode(&bytes[ONE_SHOT_TAG_LEN..])
            .map_err(|e| e.shifted(ONE_SHOT_TAG_LEN))?;
        Ok(OneShotFrame { stream, frame })
    }
}

impl StreamFrame {
    /// The frame as the one-shot stream carries it for port stream `stream`
    /// (see [`OneShotFrame`]), without copying the frame.
    pub fn encode_tagged(&self, stream: u64) -> Vec<u8> {
        let mut buf = BytesMut::new();
        self.encode_tagged_into(stream, &mut buf);
        buf.into()
    }

    /// [`StreamFrame::encode_tagged`], appended to `buf` as
    /// [`StreamFrame::encode_into`] does.
    pub fn encode_tagged_into(&self, stream: u64, buf: &mut BytesMut) {
        buf.extend_from_slice(&stream.to_le_bytes());
        self.encode_into(buf);
    }
}

impl WireError {
    /// The error as found `by` bytes further into the input.
    fn shifted(self, by: usize) -> WireError {
        match self {
            WireError::Truncated {
                at,
                what,
                needed,
                left,
            } => WireError::Truncated {
                at: at + by,
                what,
                needed,
                left,
            },
            WireError::Invalid { at, what, value } => WireError::Invalid {
                at: at + by,
                what,
                value,
            },
            other => other,
        }
    }
}

/// The decoder's fuzz property (shared by the fuzz target and the corpus test):
/// any input decodes or fails cleanly; what decodes re-encodes to the same bytes.
#[doc(hidden)]
pub fn fuzz_decode(data: &[u8]) {
    if let Ok(f) = StreamFrame::decode(data) {
        assert_eq!(f.encode(), data, "decoding is exact");
    }
}

/// The one-shot stream decoder's fuzz property, as [`fuzz_decode`]'s.
#[doc(hidden)]
pub fn fuzz_decode_one_shot(data: &[u8]) {
    if let Ok(f) = OneShotFrame::decode(data) {
        assert_eq!(f.encode(), data, "decoding is exact");
    }
}

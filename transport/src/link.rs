//! A link: the one QUIC connection between this node and a peer, with its
//! control stream and its port streams.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes};
use quinn::{Connection, ConnectionError, RecvStream, SendStream};
use tokio::sync::mpsc;

use crate::frame::{
    read_frame, try_write_frame, write_frame, write_frame_parts, write_unsent, Unsent,
};
use crate::{CloseCode, Error, PeerIdentity};

/// First byte of a port stream's first frame.
pub(crate) const STREAM_PORT: u8 = 1;
/// First byte of the overflow stream's first frame.
pub(crate) const STREAM_OVERFLOW: u8 = 2;
/// Bytes of a stream's first frame: kind, then the port ID (little-endian; 0
/// for the overflow stream).
pub(crate) const PORT_HEADER_LEN: usize = 9;
/// On the overflow stream each frame starts with the port ID and a flag.
const OVERFLOW_PREFIX_LEN: usize = 9;
const OVERFLOW_DATA: u8 = 0;
const OVERFLOW_FIN: u8 = 1;
/// Frames buffered per port behind the overflow stream before it stops reading.
const OVERFLOW_PORT_BUFFER: usize = 32;

/// What `open_port` does when the peer's stream credit is used up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CreditPolicy {
    /// Carry the port on the link's shared overflow stream (opened at set-up, so
    /// it never needs credit). Ports there share one stream's order and flow
    /// control: a port whose reader stops holds up the others on it.
    #[default]
    Overflow,
    /// Wait until a port stream ends and the peer returns credit.
    Wait,
}

/// Why a link ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkClosed {
    /// The application code, if either side closed with one.
    pub code: Option<CloseCode>,
    pub reason: String,
    /// The peer closed it (rather than this node, or the network).
    pub by_peer: bool,
    /// The peer stopped answering (idle timeout): it is presumed dead.
    pub timed_out: bool,
}

impl fmt::Display for LinkClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = if self.by_peer {
            "by the peer"
        } else if self.timed_out {
            "peer unresponsive"
        } else {
            "locally"
        };
        match self.code {
            Some(c) => write!(f, "{c} ({who}): {}", self.reason),
            None => write!(f, "{who}: {}", self.reason),
        }
    }
}

impl LinkClosed {
    pub(crate) fn from_error(e: &ConnectionError, local: Option<(CloseCode, String)>) -> Self {
        match e {
            ConnectionError::ApplicationClosed(c) => LinkClosed {
                code: Some(CloseCode::from_code(c.error_code.into_inner())),
                reason: String::from_utf8_lossy(&c.reason).into_owned(),
                by_peer: true,
                timed_out: false,
            },
            ConnectionError::LocallyClosed => {
                let (code, reason) = local.unwrap_or((CloseCode::Done, String::new()));
                LinkClosed {
                    code: Some(code),
                    reason,
                    by_peer: false,
                    timed_out: false,
                }
            }
            ConnectionError::TimedOut => LinkClosed {
                code: None,
                reason: "idle timeout: no packets from the peer".into(),
                by_peer: false,
                timed_out: true,
            },
            other => LinkClosed {
                code: None,
                reason: other.to_string(),
                by_peer: false,
                timed_out: false,
            },
        }
    }
}

/// Counters of a link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub ports_opened: u64,
    pub ports_accepted: u64,
    /// Opens that found the peer's stream credit (MAX_STREAMS) used up.
    pub opens_blocked_on_credit: u64,
    /// Ports carried on the overflow stream because credit was used up.
    pub ports_on_overflow: u64,
}

pub(crate) struct LinkInner {
    pub(crate) id: u64,
    pub(crate) conn: Connection,
    pub(crate) peer: PeerIdentity,
    pub(crate) peer_incarnation: u64,
    max_frame: u64,
    control_tx: tokio::sync::Mutex<SendStream>,
    control_rx: tokio::sync::Mutex<RecvStream>,
    incoming: tokio::sync::Mutex<mpsc::Receiver<PortReceiver>>,
    local_close: Mutex<Option<(CloseCode, String)>>,
    overflow: Arc<tokio::sync::Mutex<SendStream>>,
    credit_policy: CreditPolicy,
    ports_opened: AtomicU64,
    ports_on_overflow: AtomicU64,
    ports_accepted: AtomicU64,
    opens_blocked: AtomicU64,
}

/// A link to one peer. Cheap to clone; all clones are the same link.
#[derive(Clone)]
pub struct Link {
    pub(crate) inner: Arc<LinkInner>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("id", &self.inner.id)
            .field("peer", &self.inner.peer.node)
            .finish()
    }
}

impl Link {
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn start(
        id: u64,
        conn: Connection,
        peer: PeerIdentity,
        peer_incarnation: u64,
        control: (SendStream, RecvStream),
        max_frame: u64,
        header_timeout: Duration,
        credit_policy: CreditPolicy,
    ) -> Result<Link, Error> {
        // The overflow stream is this side's first port-direction stream: a fresh
        // connection always has the credit for it.
        let mut overflow = conn.open_uni().await?;
        let mut header = [0u8; PORT_HEADER_LEN];
        header[0] = STREAM_OVERFLOW;
        write_frame(&mut overflow, Bytes::copy_from_slice(&header), max_frame).await?;
        let (tx, rx) = mpsc::channel(64);
        let inner = Arc::new(LinkInner {
            id,
            conn: conn.clone(),
            peer,
            peer_incarnation,
            max_frame,
            control_tx: tokio::sync::Mutex::new(control.0),
            control_rx: tokio::sync::Mutex::new(control.1),
            incoming: tokio::sync::Mutex::new(rx),
            local_close: Mutex::new(None),
            overflow: Arc::new(tokio::sync::Mutex::new(overflow)),
            credit_policy,
            ports_opened: AtomicU64::new(0),
            ports_on_overflow: AtomicU64::new(0),
            ports_accepted: AtomicU64::new(0),
            opens_blocked: AtomicU64::new(0),
        });
        let link = Link { inner };
        tokio::spawn(accept_ports(
            link.downgrade(),
            conn,
            tx,
            max_frame,
            header_timeout,
        ));
        Ok(link)
    }

    fn downgrade(&self) -> std::sync::Weak<LinkInner> {
        Arc::downgrade(&self.inner)
    }

    /// The authenticated peer.
    pub fn peer(&self) -> &PeerIdentity {
        &self.inner.peer
    }

    pub fn remote_address(&self) -> std::net::SocketAddr {
        self.inner.conn.remote_address()
    }

    /// Opens the stream for `port`. When the peer's stream credit is used up,
    /// this is logged and counted, and the link's [`CreditPolicy`] applies.
    pub async fn open_port(&self, port: u64) -> Result<PortSender, Error> {
        let conn = &self.inner.conn;
        let mut stream = match tokio::time::timeout(Duration::ZERO, conn.open_uni()).await {
            Ok(opened) => opened?,
            Err(_) => {
                self.inner.opens_blocked.fetch_add(1, Ordering::Relaxed);
                let policy = self.inner.credit_policy;
                tracing::warn!(peer = %self.inner.peer.node, port, ?policy, "no stream credit for a new port stream");
                if policy == CreditPolicy::Overflow {
                    self.inner.ports_on_overflow.fetch_add(1, Ordering::Relaxed);
                    self.inner.ports_opened.fetch_add(1, Ordering::Relaxed);
                    let overflow = self.inner.overflow.clone();
                    return Ok(PortSender {
                        port,
                        max_frame: self.inner.max_frame,
                        path: SendPath::Overflow(overflow),
                    });
                }
                conn.open_uni().await?
            }
        };
        let mut header = [0u8; PORT_HEADER_LEN];
        header[0] = STREAM_PORT;
        header[1..].copy_from_slice(&port.to_le_bytes());
        write_frame(
            &mut stream,
            Bytes::copy_from_slice(&header),
            self.inner.max_frame,
        )
        .await?;
        self.inner.ports_opened.fetch_add(1, Ordering::Relaxed);
        Ok(PortSender {
            port,
            max_frame: self.inner.max_frame,
            path: SendPath::Stream(stream),
        })
    }

    /// The next port stream the peer opened.
    pub async fn accept_port(&self) -> Result<PortReceiver, Error> {
        let mut incoming = self.inner.incoming.lock().await;
        match incoming.recv().await {
            Some(r) => Ok(r),
            None => Err(Error::Closed(self.closed().await)),
        }
    }

    /// Sends one frame on the control stream.
    pub async fn send_control(&self, frame: Bytes) -> Result<(), Error> {
        let mut tx = self.inner.control_tx.lock().await;
        write_frame(&mut tx, frame, self.inner.max_frame).await
    }

    /// The next control frame from the peer; a violation closes the link.
    pub async fn recv_control(&self) -> Result<Option<Bytes>, Error> {
        let mut rx = self.inner.control_rx.lock().await;
        let r = read_frame(&mut rx, self.inner.max_frame).await;
        self.enforce(r)
    }

    fn enforce<T>(&self, r: Result<T, Error>) -> Result<T, Error> {
        enforce(&self.inner.conn, &self.inner.local_close, r)
    }

    /// Closes the link with `code`; streams end at once (unread data is lost).
    pub fn close(&self, code: CloseCode, reason: &str) {
        *self.inner.local_close.lock().expect("lock") = Some((code, reason.to_owned()));
        self.inner.conn.close(code.varint(), reason.as_bytes());
    }

    /// Resolves when the link has ended, with why.
    pub async fn closed(&self) -> LinkClosed {
        let e = self.inner.conn.closed().await;
        LinkClosed::from_error(&e, self.inner.local_close.lock().expect("lock").clone())
    }

    pub fn is_closed(&self) -> bool {
        self.inner.conn.close_reason().is_some()
    }

    pub fn stats(&self) -> LinkStats {
        LinkStats {
            ports_opened: self.inner.ports_opened.load(Ordering::Relaxed),
            ports_accepted: self.inner.ports_accepted.load(Ordering::Relaxed),
            opens_blocked_on_credit: self.inner.opens_blocked.load(Ordering::Relaxed),
            ports_on_overflow: self.inner.ports_on_overflow.load(Ordering::Relaxed),
        }
    }

    /// The QUIC connection itself, for tests that must misbehave on purpose.
    #[doc(hidden)]
    pub fn quic_connection(&self) -> &Connection {
        &self.inner.conn
    }

    /// The underlying QUIC statistics (RTT, congestion window, lost packets).
    pub fn quic_stats(&self) -> quinn::ConnectionStats {
        self.inner.conn.stats()
    }
}

/// A protocol violation by the peer closes the whole link with a reason; the
/// error is returned to the caller as well.
fn enforce<T>(
    conn: &Connection,
    local: &Mutex<Option<(CloseCode, String)>>,
    r: Result<T, Error>,
) -> Result<T, Error> {
    if let Err(e @ (Error::FrameTooLarge { .. } | Error::Protocol(_))) = &r {
        let reason = e.to_string();
        tracing::warn!(%reason, "closing link: protocol violation");
        *local.lock().expect("lock") = Some((CloseCode::ProtocolViolation, reason.clone()));
        conn.close(CloseCode::ProtocolViolation.varint(), reason.as_bytes());
    }
    r
}

fn violation(link: &std::sync::Weak<LinkInner>, conn: &Connection, reason: String) {
    tracing::warn!(%reason, "closing link: protocol violation");
    if let Some(l) = link.upgrade() {
        *l.local_close.lock().expect("lock") = Some((CloseCode::ProtocolViolation, reason.clone()));
    }
    conn.close(CloseCode::ProtocolViolation.varint(), reason.as_bytes());
}

async fn accept_ports(
    link: std::sync::Weak<LinkInner>,
    conn: Connection,
    tx: mpsc::Sender<PortReceiver>,
    max_frame: u64,
    header_timeout: Duration,
) {
    let mut overflow_seen = false;
    loop {
        let Ok(mut stream) = conn.accept_uni().await else {
            return;
        };
        let header = tokio::time::timeout(
            header_timeout,
            read_frame(&mut stream, PORT_HEADER_LEN as u64),
        )
        .await;
        let (kind, port) = match header {
            Ok(Ok(Some(h))) if h.len() == PORT_HEADER_LEN => (h[0], (&h[1..]).get_u64_le()),
            Ok(Err(Error::Connection(_))) => return,
            Ok(other) => {
                let reason = match other {
                    Ok(Some(h)) => format!("bad stream header of {} bytes", h.len()),
                    Ok(None) => "stream ended before its header".into(),
                    Err(e) => format!("stream header: {e}"),
                };
                return violation(&link, &conn, reason);
            }
            Err(_) => return violation(&link, &conn, "stream header not received in time".into()),
        };
        match kind {
            STREAM_PORT => {
                let Some(inner) = link.upgrade() else { return };
                inner.ports_accepted.fetch_add(1, Ordering::Relaxed);
                drop(inner);
                let source = RecvPath::Stream {
                    stream,
                    conn: conn.clone(),
                    link: link.clone(),
                };
                if tx
                    .send(PortReceiver {
                        port,
                        max_frame,
                        path: source,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            STREAM_OVERFLOW if !overflow_seen => {
                overflow_seen = true;
                tokio::spawn(demux_overflow(
                    link.clone(),
                    conn.clone(),
                    stream,
                    tx.clone(),
                    max_frame,
                ));
            }
            other => return violation(&link, &conn, format!("bad stream header: kind {other}")),
        }
    }
}

/// Splits the peer's overflow stream into its ports.
async fn demux_overflow(
    link: std::sync::Weak<LinkInner>,
    conn: Connection,
    mut stream: RecvStream,
    incoming: mpsc::Sender<PortReceiver>,
    max_frame: u64,
) {
    let mut ports: std::collections::HashMap<u64, mpsc::Sender<Bytes>> =
        std::collections::HashMap::new();
    loop {
        let frame = match read_frame(&mut stream, max_frame).await {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(Error::Connection(_)) => return,
            Err(e) => return violation(&link, &conn, format!("overflow stream: {e}")),
        };
        if frame.len() < OVERFLOW_PREFIX_LEN {
            return violation(
                &link,
                &conn,
                format!("overflow frame of {} bytes", frame.len()),
            );
        }
        let port = (&frame[..8]).get_u64_le();
        let flag = frame[8];
        let payload = frame.slice(OVERFLOW_PREFIX_LEN..);
        match flag {
            OVERFLOW_DATA => {
                let tx = match ports.entry(port) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        let (tx, rx) = mpsc::channel(OVERFLOW_PORT_BUFFER);
                        if let Some(inner) = link.upgrade() {
                            inner.ports_accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        let receiver = PortReceiver {
                            port,
                            max_frame,
                            path: RecvPath::Overflow(rx),
                        };
                        if incoming.send(receiver).await.is_err() {
                            return;
                        }
                        v.insert(tx)
                    }
                };
                // Waiting here stops the whole overflow stream: its flow control
                // then pushes back on every port carried on it.
                if tx.send(payload).await.is_err() {
                    ports.remove(&port);
                }
            }
            OVERFLOW_FIN if payload.is_empty() => {
                if ports.remove(&port).is_none() {
                    return violation(
                        &link,
                        &conn,
                        format!("overflow FIN for port {port} that sent nothing"),
                    );
                }
            }
            _ => return violation(&link, &conn, format!("overflow frame with flag {flag}")),
        }
    }
}

/// The sending half of a port's stream. Frames arrive in order; `finish` is
/// the normal end (FIN), after which the peer reads what was sent and then
/// `None`. Sending waits while the peer's flow-control window is full.
#[derive(Debug)]
pub struct PortSender {
    port: u64,
    max_frame: u64,
    path: SendPath,
}

#[derive(Debug)]
enum SendPath {
    Stream(SendStream),
    Overflow(Arc<tokio::sync::Mutex<SendStream>>),
}

impl PortSender {
    pub fn port(&self) -> u64 {
        self.port
    }

    /// Whether this port travels on the shared overflow stream.
    pub fn on_overflow(&self) -> bool {
        matches!(self.path, SendPath::Overflow(_))
    }

    pub async fn send(&mut self, frame: Bytes) -> Result<(), Error> {
        match &mut self.path {
            SendPath::Stream(stream) => write_frame(stream, frame, self.max_frame).await,
            SendPath::Overflow(shared) => {
                if frame.len() as u64 + OVERFLOW_PREFIX_LEN as u64 > self.max_frame {
                    return Err(Error::FrameTooLargeToSend {
                        length: frame.len() as u64,
                        max: self.max_frame,
                    });
                }
                let prefix = overflow_prefix(self.port, OVERFLOW_DATA);
                write_frame_parts(&mut *shared.lock().await, prefix, frame, self.max_frame).await
            }
        }
    }

    /// Sends as much of `frame` as the stream takes now, without waiting
    /// (no task hand-off when the peer's window has room): `Sent`, or what is
    /// left, which [`PortSender::send_rest`] must send before any other frame.
    pub fn try_send(&mut self, frame: Bytes) -> Result<TrySend, Error> {
        let rest = |of| {
            TrySend::Rest(Rest {
                port: self.port,
                of,
            })
        };
        match &mut self.path {
            SendPath::Stream(stream) => Ok(match try_write_frame(stream, frame, self.max_frame)? {
                None => TrySend::Sent,
                Some(unsent) => rest(RestOf::Stream(unsent)),
            }),
            // (Writers share that stream behind a lock: a frame goes whole.)
            SendPath::Overflow(_) => Ok(rest(RestOf::Frame(frame))),
        }
    }

    /// Sends what [`PortSender::try_send`] left.
    pub async fn send_rest(&mut self, rest: Rest) -> Result<(), Error> {
        let another = Error::RestOfAnotherSender {
            rest_of: rest.port,
            sender: self.port,
        };
        match (rest.of, &mut self.path) {
            _ if rest.port != self.port => Err(another),
            (RestOf::Stream(unsent), SendPath::Stream(stream)) => {
                write_unsent(stream, unsent).await
            }
            (RestOf::Frame(frame), _) => self.send(frame).await,
            // (Begun on a dedicated stream, given to an overflow sender.)
            (RestOf::Stream(_), SendPath::Overflow(_)) => Err(another),
        }
    }

    /// FIN: no more frames. Does not wait for acknowledgements.
    pub async fn finish(self) -> Result<(), Error> {
        match self.path {
            SendPath::Stream(mut stream) => stream.finish().map_err(|_| Error::Finished),
            SendPath::Overflow(shared) => {
                let prefix = overflow_prefix(self.port, OVERFLOW_FIN);
                write_frame_parts(
                    &mut *shared.lock().await,
                    prefix,
                    Bytes::new(),
                    self.max_frame,
                )
                .await
            }
        }
    }
}

/// What [`PortSender::try_send`] did.
#[derive(Debug)]
#[must_use]
pub enum TrySend {
    /// The whole frame is on the stream.
    Sent,
    /// The stream took part of it or none: the rest, for
    /// [`PortSender::send_rest`].
    Rest(Rest),
}

/// The part of a frame a port's stream has not yet taken.
#[derive(Debug)]
pub struct Rest {
    port: u64,
    of: RestOf,
}

#[derive(Debug)]
enum RestOf {
    Stream(Unsent),
    Frame(Bytes),
}

impl Rest {
    /// Bytes still to send.
    pub fn len(&self) -> usize {
        match &self.of {
            RestOf::Stream(u) => u.len(),
            RestOf::Frame(f) => f.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same rest holding copies of its bytes, so that it keeps no
    /// larger buffer they were cut from alive while it waits for the peer's
    /// window (a frame split off a shared encoding buffer would hold all of
    /// that buffer).
    pub fn detached(self) -> Self {
        let of = match self.of {
            RestOf::Stream(unsent) => RestOf::Stream(unsent.detached()),
            RestOf::Frame(frame) => RestOf::Frame(Bytes::copy_from_slice(&frame)),
        };
        Self {
            port: self.port,
            of,
        }
    }

    #[cfg(test)]
    fn chunks(&self) -> Vec<&Bytes> {
        match &self.of {
            RestOf::Stream(unsent) => unsent.chunks().iter().collect(),
            RestOf::Frame(frame) => vec![frame],
        }
    }
}

fn overflow_prefix(port: u64, flag: u8) -> Bytes {
    let mut p = [0u8; OVERFLOW_PREFIX_LEN];
    p[..8].copy_from_slice(&port.to_le_bytes());
    p[8] = flag;
    Bytes::copy_from_slice(&p)
}

/// The receiving half of a port's stream. Reading only when there is room for
/// what is read lets QUIC flow control push back on the sender.
pub struct PortReceiver {
    port: u64,
    max_frame: u64,
    path: RecvPath,
}

enum RecvPath {
    Stream {
        stream: RecvStream,
        conn: Connection,
        link: std::sync::Weak<LinkInner>,
    },
    Overflow(mpsc::Receiver<Bytes>),
}

impl fmt::Debug for PortReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortReceiver")
            .field("port", &self.port)
            .finish()
    }
}

impl PortReceiver {
    pub fn port(&self) -> u64 {
        self.port
    }

    /// The next frame, or `None` after the sender's FIN. An oversized or
    /// truncated frame closes the link with `ProtocolViolation`.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, Error> {
        match &mut self.path {
            RecvPath::Stream { stream, conn, link } => {
                let r = read_frame(stream, self.max_frame).await;
                match link.upgrade() {
                    Some(inner) => enforce(conn, &inner.local_close, r),
                    None => enforce(conn, &Mutex::new(None), r),
                }
            }
            RecvPath::Overflow(rx) => Ok(rx.recv().await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A detached rest has the same bytes, none of them in the buffer its
    /// frame was cut from.
    #[test]
    fn a_detached_rest_keeps_no_part_of_its_buffer() {
        let buffer = Bytes::from((0..=255u8).cycle().take(4096).collect::<Vec<u8>>());
        let within = |b: &Bytes| buffer.as_ptr_range().contains(&b.as_ptr());
        let rests = [
            Rest {
                port: 3,
                of: RestOf::Frame(buffer.slice(100..900)),
            },
            Rest {
                port: 3,
                of: RestOf::Stream(crate::frame::Unsent::from_chunks([
                    buffer.slice(0..2),
                    buffer.slice(2..700),
                ])),
            },
        ];
        for rest in rests {
            let before: Vec<Bytes> = rest.chunks().into_iter().cloned().collect();
            assert!(before.iter().any(&within));
            let detached = rest.detached();
            let after = detached.chunks();
            assert_eq!(after.len(), before.len());
            for (a, b) in after.iter().zip(&before) {
                assert_eq!(**a, *b);
                assert!(a.is_empty() || !within(a), "a chunk still in the buffer");
            }
            assert_eq!(detached.port, 3);
        }
    }
}

//! A link: the one QUIC connection between this node and a peer, with its
//! control stream and its port streams.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes};
use quinn::{Connection, ConnectionError, RecvStream, SendStream};
use tokio::sync::mpsc;

use crate::frame::{read_frame, write_frame};
use crate::{CloseCode, Error, PeerIdentity};

/// First byte of a port stream's first frame.
pub(crate) const STREAM_PORT: u8 = 1;
/// Bytes of a port stream's first frame: kind, then the port ID (little-endian).
pub(crate) const PORT_HEADER_LEN: usize = 9;

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
    /// Opens that had to wait for stream credit (MAX_STREAMS) from the peer.
    pub opens_blocked_on_credit: u64,
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
    ports_opened: AtomicU64,
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
    pub(crate) fn start(
        id: u64,
        conn: Connection,
        peer: PeerIdentity,
        peer_incarnation: u64,
        control: (SendStream, RecvStream),
        max_frame: u64,
        header_timeout: Duration,
    ) -> Link {
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
            ports_opened: AtomicU64::new(0),
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
        link
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

    /// Opens the stream for `port`. Waits while the peer's stream credit is used
    /// up (counted in [`LinkStats::opens_blocked_on_credit`]).
    pub async fn open_port(&self, port: u64) -> Result<PortSender, Error> {
        let conn = &self.inner.conn;
        let mut stream = match tokio::time::timeout(Duration::ZERO, conn.open_uni()).await {
            Ok(opened) => opened?,
            Err(_) => {
                self.inner.opens_blocked.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %self.inner.peer.node, port, "port stream open waits for stream credit");
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
            stream,
            max_frame: self.inner.max_frame,
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

async fn accept_ports(
    link: std::sync::Weak<LinkInner>,
    conn: Connection,
    tx: mpsc::Sender<PortReceiver>,
    max_frame: u64,
    header_timeout: Duration,
) {
    loop {
        let Ok(mut stream) = conn.accept_uni().await else {
            return;
        };
        let header = tokio::time::timeout(
            header_timeout,
            read_frame(&mut stream, PORT_HEADER_LEN as u64),
        )
        .await;
        let port = match header {
            Ok(Ok(Some(h))) if h.len() == PORT_HEADER_LEN && h[0] == STREAM_PORT => {
                (&h[1..]).get_u64_le()
            }
            Ok(Err(Error::Connection(_))) => return,
            Ok(other) => {
                let reason = match other {
                    Ok(Some(h)) => format!(
                        "bad stream header of {} bytes (kind {:?})",
                        h.len(),
                        h.first()
                    ),
                    Ok(None) => "port stream ended before its header".into(),
                    Err(e) => format!("port stream header: {e}"),
                };
                if let Some(l) = link.upgrade() {
                    *l.local_close.lock().expect("lock") =
                        Some((CloseCode::ProtocolViolation, reason.clone()));
                }
                conn.close(CloseCode::ProtocolViolation.varint(), reason.as_bytes());
                return;
            }
            Err(_) => {
                let reason = "port stream header not received in time";
                conn.close(CloseCode::ProtocolViolation.varint(), reason.as_bytes());
                return;
            }
        };
        let Some(inner) = link.upgrade() else { return };
        inner.ports_accepted.fetch_add(1, Ordering::Relaxed);
        let receiver = PortReceiver {
            port,
            stream,
            max_frame,
            conn: conn.clone(),
            link: Arc::downgrade(&inner),
        };
        drop(inner);
        if tx.send(receiver).await.is_err() {
            return;
        }
    }
}

/// The sending half of a port's stream. Frames arrive in order; `finish` is
/// the normal end (FIN), after which the peer reads what was sent and then
/// `None`. Sending waits while the peer's flow-control window is full.
#[derive(Debug)]
pub struct PortSender {
    port: u64,
    stream: SendStream,
    max_frame: u64,
}

impl PortSender {
    pub fn port(&self) -> u64 {
        self.port
    }

    pub async fn send(&mut self, frame: Bytes) -> Result<(), Error> {
        write_frame(&mut self.stream, frame, self.max_frame).await
    }

    /// FIN: no more frames. Does not wait for acknowledgements.
    pub fn finish(mut self) -> Result<(), Error> {
        self.stream.finish().map_err(|_| Error::Finished)
    }
}

/// The receiving half of a port's stream. Reading only when there is room for
/// what is read lets QUIC flow control push back on the sender.
pub struct PortReceiver {
    port: u64,
    stream: RecvStream,
    max_frame: u64,
    conn: Connection,
    link: std::sync::Weak<LinkInner>,
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
        let r = read_frame(&mut self.stream, self.max_frame).await;
        match self.link.upgrade() {
            Some(inner) => enforce(&self.conn, &inner.local_close, r),
            None => enforce(&self.conn, &Mutex::new(None), r),
        }
    }
}

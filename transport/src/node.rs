//! A node's endpoint: one UDP socket for dialing and accepting, and the table of
//! links (one per peer node).
//!
//! Link set-up: the dialer opens the control stream and sends HELLO (magic,
//! version, its incarnation); the acceptor decides and answers CONFIRM (its
//! incarnation) or closes the connection with `Duplicate`. Crossed dials (both
//! nodes dialing each other before either link exists) keep the connection
//! dialed by the node with the smaller name; the loser's dialer then uses the
//! winner's link. A HELLO from a new incarnation of a known peer (it restarted)
//! replaces the old link.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use quinn::{Connection, Endpoint, IdleTimeout, TransportConfig, VarInt};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::sync::{mpsc, Notify};

use crate::frame::{read_frame, write_frame};
use crate::link::{CreditPolicy, Link, LinkClosed};
use crate::tls::NodeTls;
use crate::{CloseCode, Error, PeerIdentity};

const HELLO_MAGIC: &[u8; 4] = b"NMSG";
const VERSION: u16 = 1;
const HELLO_LEN: usize = 4 + 2 + 8;

/// Tunables of a node's links.
#[derive(Clone, Debug)]
pub struct TransportOptions {
    /// Largest frame accepted or sent, in bytes.
    pub max_frame: u64,
    /// Concurrent port streams a peer may open to us (its stream credit).
    pub max_port_streams: u32,
    /// Per-stream receive window: how far a sender may run ahead of a reader.
    pub stream_receive_window: u32,
    /// Keep-alive interval; must be well under `idle_timeout`.
    pub keep_alive: Duration,
    /// A peer silent this long is presumed dead and its link closed.
    pub idle_timeout: Duration,
    /// Limit for a handshake and the HELLO/CONFIRM exchange.
    pub handshake_timeout: Duration,
    /// What opening a port does when the peer's stream credit is used up.
    pub credit_policy: CreditPolicy,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            max_frame: 16 << 20,
            max_port_streams: 4096,
            stream_receive_window: 1 << 20,
            keep_alive: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(3),
            handshake_timeout: Duration::from_secs(10),
            credit_policy: CreditPolicy::default(),
        }
    }
}

impl TransportOptions {
    /// The QUIC transport parameters links use.
    pub fn transport_config(&self) -> Result<TransportConfig, Error> {
        let mut t = TransportConfig::default();
        t.max_concurrent_uni_streams(VarInt::from_u32(self.max_port_streams));
        // One bidirectional stream: the control stream the dialer opens.
        t.max_concurrent_bidi_streams(VarInt::from_u32(1));
        t.stream_receive_window(VarInt::from_u32(self.stream_receive_window));
        t.keep_alive_interval(Some(self.keep_alive));
        let idle = IdleTimeout::try_from(self.idle_timeout)
            .map_err(|_| Error::TlsConfig("idle timeout out of range".into()))?;
        t.max_idle_timeout(Some(idle));
        Ok(t)
    }
}

/// What happened to the node's links.
#[derive(Clone, Debug)]
pub enum NodeEvent {
    /// A link was established (dialed by us or by the peer).
    LinkUp(Link),
    /// A link ended; `closed.timed_out` means the peer stopped answering.
    LinkDown { peer: String, closed: LinkClosed },
}

#[derive(Default)]
struct Registry {
    links: HashMap<String, Link>,
    dialing: HashSet<String>,
}

struct NodeInner {
    name: String,
    endpoint: Endpoint,
    client_config: RwLock<quinn::ClientConfig>,
    options: TransportOptions,
    incarnation: u64,
    registry: Mutex<Registry>,
    link_added: Notify,
    next_link_id: AtomicU64,
    duplicates_refused: AtomicU64,
    events: mpsc::UnboundedSender<NodeEvent>,
    events_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<NodeEvent>>,
    /// Connections that negotiated another ALPN go to its handler.
    handlers: Mutex<HashMap<Vec<u8>, mpsc::Sender<Connection>>>,
}

/// A node's endpoint and its links. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.inner.name)
            .finish()
    }
}

fn configs(
    tls: &NodeTls,
    options: &TransportOptions,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), Error> {
    let transport = Arc::new(options.transport_config()?);
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(tls.server_config()?));
    server.transport_config(transport.clone());
    let mut client = quinn::ClientConfig::new(Arc::new(tls.client_config()?));
    client.transport_config(transport);
    Ok((server, client))
}

impl Node {
    /// Binds `addr` as node `name` (the DNS name in this node's certificate).
    pub fn bind(
        name: &str,
        addr: SocketAddr,
        tls: &NodeTls,
        options: TransportOptions,
    ) -> Result<Node, Error> {
        ServerName::try_from(name.to_owned()).map_err(|_| Error::BadNodeName(name.to_owned()))?;
        let (server, client) = configs(tls, &options)?;
        let endpoint = Endpoint::server(server, addr)?;
        let mut nonce = [0u8; 8];
        crate::tls::provider()
            .secure_random
            .fill(&mut nonce)
            .map_err(|_| Error::TlsConfig("no secure random source".into()))?;
        let (events, events_rx) = mpsc::unbounded_channel();
        let node = Node {
            inner: Arc::new(NodeInner {
                name: name.to_owned(),
                endpoint,
                client_config: RwLock::new(client),
                options,
                incarnation: u64::from_le_bytes(nonce),
                registry: Mutex::new(Registry::default()),
                link_added: Notify::new(),
                next_link_id: AtomicU64::new(1),
                duplicates_refused: AtomicU64::new(0),
                events,
                events_rx: tokio::sync::Mutex::new(events_rx),
                handlers: Mutex::new(HashMap::new()),
            }),
        };
        tokio::spawn(accept_loop(node.clone()));
        Ok(node)
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        Ok(self.inner.endpoint.local_addr()?)
    }

    /// Replaces the node's certificate and verifiers (renewal, a new CRL). New
    /// handshakes use them; established links are left to the caller.
    pub fn set_tls(&self, tls: &NodeTls) -> Result<(), Error> {
        let (server, client) = configs(tls, &self.inner.options)?;
        self.inner.endpoint.set_server_config(Some(server));
        *self.inner.client_config.write().expect("lock") = client;
        Ok(())
    }

    /// The link to `peer`, if one is up.
    pub fn link(&self, peer: &str) -> Option<Link> {
        let reg = self.inner.registry.lock().expect("lock");
        reg.links.get(peer).filter(|l| !l.is_closed()).cloned()
    }

    /// Every link that is up.
    pub fn links(&self) -> Vec<Link> {
        let reg = self.inner.registry.lock().expect("lock");
        reg.links
            .values()
            .filter(|l| !l.is_closed())
            .cloned()
            .collect()
    }

    /// The next event; `None` once the node is shut down.
    pub async fn next_event(&self) -> Option<NodeEvent> {
        self.inner.events_rx.lock().await.recv().await
    }

    /// The link to `peer` at `addr`: the existing one, or a new one.
    pub async fn dial(&self, peer: &str, addr: SocketAddr) -> Result<Link, Error> {
        {
            let mut reg = self.inner.registry.lock().expect("lock");
            if let Some(l) = reg.links.get(peer).filter(|l| !l.is_closed()) {
                return Ok(l.clone());
            }
            reg.dialing.insert(peer.to_owned());
        }
        let result = self.dial_new(peer, addr).await;
        self.inner
            .registry
            .lock()
            .expect("lock")
            .dialing
            .remove(peer);
        match result {
            Err(Error::Closed(LinkClosed {
                code: Some(CloseCode::Duplicate),
                ..
            })) => {
                // The peer keeps the connection it dialed: wait for it to arrive.
                let wait = self.wait_for_link(peer);
                tokio::time::timeout(self.inner.options.handshake_timeout, wait)
                    .await
                    .map_err(|_| Error::TimedOut("waiting for the peer's crossed dial"))
            }
            other => other,
        }
    }

    async fn wait_for_link(&self, peer: &str) -> Link {
        loop {
            let notified = self.inner.link_added.notified();
            if let Some(l) = self.link(peer) {
                return l;
            }
            notified.await;
        }
    }

    async fn dial_new(&self, peer: &str, addr: SocketAddr) -> Result<Link, Error> {
        let server_name = ServerName::try_from(peer.to_owned())
            .map_err(|_| Error::BadNodeName(peer.to_owned()))?;
        let client = self.inner.client_config.read().expect("lock").clone();
        let connecting = self
            .inner
            .endpoint
            .connect_with(client, addr, &server_name.to_str())?;
        let timeout = self.inner.options.handshake_timeout;
        let conn = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| Error::TimedOut("handshake"))??;
        let identity = peer_identity(&conn)?;
        if identity.node != peer {
            conn.close(CloseCode::BadIdentity.varint(), b"unexpected node name");
            return Err(Error::Identity(format!(
                "dialed {peer:?} but the certificate names {:?}",
                identity.node
            )));
        }
        let exchange = async {
            let (mut tx, mut rx) = conn.open_bi().await?;
            write_frame(&mut tx, self.hello(), HELLO_LEN as u64).await?;
            let reply = read_frame(&mut rx, HELLO_LEN as u64).await?;
            let incarnation = parse_hello(reply)?;
            Ok::<_, Error>((tx, rx, incarnation))
        };
        let (tx, rx, incarnation) = match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                return Err(match conn.close_reason() {
                    Some(reason) => Error::Closed(LinkClosed::from_error(&reason, None)),
                    None => e,
                })
            }
            Err(_) => {
                conn.close(CloseCode::ProtocolViolation.varint(), b"no CONFIRM in time");
                return Err(Error::TimedOut("waiting for CONFIRM"));
            }
        };
        let link = self.new_link(conn, identity, incarnation, (tx, rx)).await?;
        Self::install_locked(
            &mut self.inner.registry.lock().expect("lock"),
            &link,
            CloseCode::Superseded,
        );
        self.watch(link.clone());
        Ok(link)
    }

    fn hello(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(HELLO_LEN);
        b.put_slice(HELLO_MAGIC);
        b.put_u16_le(VERSION);
        b.put_u64_le(self.inner.incarnation);
        b.freeze()
    }

    async fn new_link(
        &self,
        conn: Connection,
        identity: PeerIdentity,
        incarnation: u64,
        control: (quinn::SendStream, quinn::RecvStream),
    ) -> Result<Link, Error> {
        let id = self.inner.next_link_id.fetch_add(1, Ordering::Relaxed);
        let o = &self.inner.options;
        Link::start(
            id,
            conn,
            identity,
            incarnation,
            control,
            o.max_frame,
            o.handshake_timeout,
            o.credit_policy,
        )
        .await
    }

    /// Puts `link` in the table, closing a previous link to the same peer.
    fn install_locked(reg: &mut Registry, link: &Link, code: CloseCode) {
        let peer = link.peer().node.clone();
        if let Some(previous) = reg.links.insert(peer, link.clone()) {
            if previous.inner.id != link.inner.id && !previous.is_closed() {
                previous.close(code, "replaced by a newer link");
            }
        }
    }

    /// Announces an installed link and watches it until it ends.
    fn watch(&self, link: Link) {
        self.inner.link_added.notify_waiters();
        let _ = self.inner.events.send(NodeEvent::LinkUp(link.clone()));
        let node = self.clone();
        let peer = link.peer().node.clone();
        let expiring = link.clone();
        tokio::spawn(async move {
            // A link does not outlive the peer certificate it was made with.
            let left = expiring
                .peer()
                .not_after
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(left) => expiring.close(CloseCode::Revoked, "peer certificate expired"),
                _ = expiring.closed() => {}
            }
        });
        tokio::spawn(async move {
            let closed = link.closed().await;
            let mut reg = node.inner.registry.lock().expect("lock");
            if reg
                .links
                .get(&peer)
                .is_some_and(|l| l.inner.id == link.inner.id)
            {
                reg.links.remove(&peer);
            }
            drop(reg);
            tracing::info!(%peer, %closed, "link down");
            let _ = node.inner.events.send(NodeEvent::LinkDown { peer, closed });
        });
    }

    async fn accept(&self, incoming: quinn::Incoming) -> Result<(), Error> {
        let timeout = self.inner.options.handshake_timeout;
        let conn = tokio::time::timeout(timeout, incoming)
            .await
            .map_err(|_| Error::TimedOut("handshake"))??;
        let alpn = conn
            .handshake_data()
            .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|d| d.protocol);
        if let Some(alpn) = alpn.filter(|a| a.as_slice() != crate::ALPN) {
            let handler = self
                .inner
                .handlers
                .lock()
                .expect("lock")
                .get(&alpn)
                .cloned();
            return match handler {
                Some(h) => h
                    .send(conn)
                    .await
                    .map_err(|_| Error::TimedOut("handler gone")),
                None => {
                    conn.close(
                        CloseCode::ProtocolViolation.varint(),
                        b"protocol not served here",
                    );
                    Err(Error::Protocol(format!(
                        "no handler for ALPN {:?}",
                        String::from_utf8_lossy(&alpn)
                    )))
                }
            };
        }
        // Cluster links always need a verified client certificate, even when the
        // verifier lets other protocols' clients in without one.
        let identity = match peer_identity(&conn) {
            Ok(id) => id,
            Err(e) => {
                conn.close(CloseCode::BadIdentity.varint(), e.to_string().as_bytes());
                return Err(e);
            }
        };
        let exchange = async {
            let (tx, mut rx) = conn.accept_bi().await?;
            let hello = read_frame(&mut rx, HELLO_LEN as u64).await?;
            Ok::<_, Error>((tx, rx, parse_hello(hello)?))
        };
        let (tx, rx, incarnation) = match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                conn.close(
                    CloseCode::ProtocolViolation.varint(),
                    e.to_string().as_bytes(),
                );
                return Err(e);
            }
            Err(_) => {
                conn.close(CloseCode::ProtocolViolation.varint(), b"no HELLO in time");
                return Err(Error::TimedOut("waiting for HELLO"));
            }
        };
        let peer = identity.node.clone();
        let link = self
            .new_link(conn.clone(), identity, incarnation, (tx, rx))
            .await?;
        {
            let mut reg = self.inner.registry.lock().expect("lock");
            let existing = reg.links.get(&peer).filter(|l| !l.is_closed());
            let same_incarnation =
                existing.is_some_and(|l| l.inner.peer_incarnation == incarnation);
            let crossing = reg.dialing.contains(&peer) || same_incarnation;
            // Of two crossed connections, the one dialed by the smaller name stays.
            if crossing && peer.as_str() > self.inner.name.as_str() {
                drop(reg);
                self.inner
                    .duplicates_refused
                    .fetch_add(1, Ordering::Relaxed);
                link.close(
                    CloseCode::Duplicate,
                    "crossed dial: keeping the connection the other way",
                );
                return Ok(());
            }
            let code = if same_incarnation {
                CloseCode::Duplicate
            } else {
                CloseCode::Superseded
            };
            Self::install_locked(&mut reg, &link, code);
        }
        self.watch(link.clone());
        link.send_control(self.hello()).await
    }
}

fn parse_hello(frame: Option<Bytes>) -> Result<u64, Error> {
    let Some(mut b) = frame else {
        return Err(Error::Protocol("control stream ended before HELLO".into()));
    };
    if b.len() != HELLO_LEN || &b[..4] != HELLO_MAGIC {
        return Err(Error::Protocol("not a netmsg HELLO".into()));
    }
    b.advance(4);
    let version = b.get_u16_le();
    if version != VERSION {
        return Err(Error::Protocol(format!(
            "protocol version {version}, this node speaks {VERSION}"
        )));
    }
    Ok(b.get_u64_le())
}

fn peer_identity(conn: &Connection) -> Result<PeerIdentity, Error> {
    let certs = conn
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or_else(|| Error::Identity("the peer presented no certificate".into()))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Error::Identity("empty certificate chain".into()))?;
    PeerIdentity::from_certificate(leaf)
}

async fn accept_loop(node: Node) {
    while let Some(incoming) = node.inner.endpoint.accept().await {
        let node = node.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            if let Err(e) = node.accept(incoming).await {
                tracing::info!(%remote, error = %e, "incoming connection refused");
            }
        });
    }
}

impl Node {
    /// Hands connections that negotiate `alpn` (listed in `NodeTls::extra_alpns`)
    /// to the returned receiver, after the TLS handshake.
    pub fn serve_alpn(&self, alpn: &[u8], backlog: usize) -> mpsc::Receiver<Connection> {
        let (tx, rx) = mpsc::channel(backlog);
        self.inner
            .handlers
            .lock()
            .expect("lock")
            .insert(alpn.to_vec(), tx);
        rx
    }

    /// Closes every link whose peer `condemned` says must go (for example, its
    /// certificate serial is in a new CRL). Returns the peers closed.
    pub fn close_links_where(
        &self,
        code: CloseCode,
        reason: &str,
        condemned: impl Fn(&PeerIdentity) -> bool,
    ) -> Vec<String> {
        let links: Vec<Link> = self.links();
        let mut closed = Vec::new();
        for link in links {
            if condemned(link.peer()) {
                link.close(code, reason);
                closed.push(link.peer().node.clone());
            }
        }
        closed
    }

    /// Incoming connections closed as the losing half of a crossed dial.
    pub fn duplicates_refused(&self) -> u64 {
        self.inner.duplicates_refused.load(Ordering::Relaxed)
    }

    /// Connections open on the endpoint (links and handshakes in progress).
    pub fn open_connections(&self) -> usize {
        self.inner.endpoint.open_connections()
    }

    /// Closes every link and the endpoint.
    pub fn shutdown(&self) {
        self.inner
            .endpoint
            .close(CloseCode::Shutdown.varint(), b"node shutting down");
    }
}

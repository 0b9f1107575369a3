//! A user-space UDP relay that drops, delays or black-holes packets, for tests
//! and benchmarks (kernel netem is not available everywhere). One client: the
//! first address that sends to the relay; everything goes to `target`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

#[derive(Debug, Default)]
struct Impairment {
    /// Drop probability in parts per million, each direction.
    loss_ppm: AtomicU32,
    delay_us: AtomicU64,
    blackhole: AtomicBool,
    forwarded: AtomicU64,
    dropped: AtomicU64,
}

/// A running relay; dropped, it stops.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    impairment: Arc<Impairment>,
    task: JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    /// Listens on 127.0.0.1 (an ephemeral port) and forwards to `target`.
    /// `seed` makes the loss pattern repeatable.
    pub async fn start(target: SocketAddr, seed: u64) -> std::io::Result<Relay> {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        back.connect(target).await?;
        let addr = front.local_addr()?;
        let impairment = Arc::new(Impairment::default());
        let task = tokio::spawn(run(front, back, impairment.clone(), seed));
        Ok(Relay {
            addr,
            impairment,
            task,
        })
    }

    /// Where clients send.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops this fraction of packets in each direction.
    pub fn set_loss(&self, fraction: f64) {
        let ppm = (fraction.clamp(0.0, 1.0) * 1e6) as u32;
        self.impairment.loss_ppm.store(ppm, Ordering::Relaxed);
    }

    /// Delays every packet by `delay` (one way).
    pub fn set_delay(&self, delay: Duration) {
        self.impairment
            .delay_us
            .store(delay.as_micros() as u64, Ordering::Relaxed);
    }

    /// Drops everything while set: the peer appears to vanish.
    pub fn set_blackhole(&self, on: bool) {
        self.impairment.blackhole.store(on, Ordering::Relaxed);
    }

    /// (forwarded, dropped) packet counts.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.impairment.forwarded.load(Ordering::Relaxed),
            self.impairment.dropped.load(Ordering::Relaxed),
        )
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u32 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }
}

async fn run(front: Arc<UdpSocket>, back: Arc<UdpSocket>, imp: Arc<Impairment>, seed: u64) {
    let client: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
    let rng = Arc::new(Mutex::new(Rng(seed | 1)));
    let mut up = vec![0u8; 65536];
    let mut down = vec![0u8; 65536];
    loop {
        tokio::select! {
            r = front.recv_from(&mut up) => {
                let Ok((n, from)) = r else { return };
                client.lock().expect("lock").get_or_insert(from);
                forward(&imp, &rng, up[..n].to_vec(), back.clone(), None);
            }
            r = back.recv(&mut down) => {
                let Ok(n) = r else { continue };
                let to = *client.lock().expect("lock");
                if let Some(to) = to {
                    forward(&imp, &rng, down[..n].to_vec(), front.clone(), Some(to));
                }
            }
        }
    }
}

fn forward(
    imp: &Arc<Impairment>,
    rng: &Mutex<Rng>,
    packet: Vec<u8>,
    socket: Arc<UdpSocket>,
    to: Option<SocketAddr>,
) {
    let loss = imp.loss_ppm.load(Ordering::Relaxed);
    let lost = loss > 0 && rng.lock().expect("lock").next() % 1_000_000 < loss;
    if imp.blackhole.load(Ordering::Relaxed) || lost {
        imp.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    imp.forwarded.fetch_add(1, Ordering::Relaxed);
    let delay = Duration::from_micros(imp.delay_us.load(Ordering::Relaxed));
    let send = async move {
        let _ = match to {
            Some(to) => socket.send_to(&packet, to).await,
            None => socket.send(&packet).await,
        };
    };
    if delay.is_zero() {
        tokio::spawn(send);
    } else {
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            send.await;
        });
    }
}

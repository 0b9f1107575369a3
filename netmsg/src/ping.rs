//! `netmsg ping`: Mach RPCs to a node's echo service (its root port, see
//! `netmsg::echo`) through netmsg, over a link authenticated with this
//! node's credentials, with round-trip times as `ping` prints them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use certs::{Credentials, StateDir};
use mach::runtime::Host;
use mach::{Abi, Kernel, PortRight, RecvOptions};
use netmsg::driver::Netmsg;
use netmsg::echo;
use transport::{Node, NodeTls, TransportOptions};

#[derive(clap::Args, Debug)]
pub(crate) struct PingArgs {
    /// The peer's node name (as in its certificate).
    peer: String,
    /// The peer's address (UDP), as `netmsg serve` printed it.
    addr: SocketAddr,
    /// Requests to send.
    #[arg(long, short = 'c', default_value_t = 5)]
    count: u32,
    /// Data bytes per request (at least 4: the sequence number).
    #[arg(long, short = 's', default_value_t = 64)]
    size: usize,
    /// Time between requests.
    #[arg(long, short = 'i', default_value = "200ms", value_parser = crate::cert::parse_duration)]
    interval: Duration,
    /// How long to wait for the link, the root port, and each reply.
    #[arg(long, short = 'W', default_value = "2s", value_parser = crate::cert::parse_duration)]
    timeout: Duration,
}

/// Largest request accepted: a ping is not a bulk transfer.
const MAX_SIZE: usize = 1 << 20;

pub(crate) fn run(state: StateDir, args: PingArgs) -> anyhow::Result<()> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    if args.size > MAX_SIZE {
        bail!("--size is at most {MAX_SIZE} bytes");
    }
    netmsg::driver::node_runtime()?.block_on(ping(state, args))
}

async fn ping(state: StateDir, args: PingArgs) -> anyhow::Result<()> {
    let creds = Credentials::load(&state)?;
    let tls = NodeTls::from_ca(
        creds.chain.clone(),
        creds.key.clone_key(),
        &creds.ca,
        vec![creds.crl.clone().into()],
        false,
    )?;
    let any: SocketAddr = if args.addr.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let node = Node::bind(&creds.node, any, &tls, TransportOptions::default())?;
    let result = calls(&node, &args).await;
    node.shutdown();
    result
}

async fn calls(node: &Node, args: &PingArgs) -> anyhow::Result<()> {
    let PingArgs { peer, addr, .. } = args;
    let host = Host::new(Kernel::new(Abi::X86_64));
    let net = Netmsg::start(host.clone(), node.clone(), None)?;
    tokio::time::timeout(args.timeout, node.dial(peer, *addr))
        .await
        .with_context(|| format!("no link to {peer} at {addr} within {:?}", args.timeout))?
        .with_context(|| format!("linking to {peer} at {addr}"))?;
    let task = host.with(|k| k.create_task());
    // The driver learns of the link from the node's events: until then it
    // has no link to ask on.
    let deadline = Instant::now() + args.timeout;
    let root = loop {
        match net.root(peer, task).await {
            Ok(root) => break root,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Err(e) => bail!("{peer} gave no root port: {e}"),
        }
    };
    let reply = host
        .with(|k| k.port_allocate(task, PortRight::Receive))
        .map_err(|e| anyhow::anyhow!("allocating the reply port: {e:?}"))?;
    let size = args.size.max(4);
    out!("PING {peer} ({addr}) through netmsg: {size} data bytes per Mach RPC")?;
    let mut times = Vec::new();
    for sequence in 1..=args.count {
        let start = Instant::now();
        let request = echo::request(root, reply, sequence, size);
        if let Err(e) = host.send(task, request, Some(args.timeout)).await {
            bail!("sending to {peer}'s root port: {:?}", e.code);
        }
        match answer(&host, task, reply, sequence, size, start + args.timeout).await {
            Ok(()) => {
                let rtt = start.elapsed();
                times.push(rtt);
                out!(
                    "{size} bytes from {peer}: seq={sequence} time={:.3} ms",
                    rtt.as_secs_f64() * 1e3
                )?;
            }
            Err(Missing::Late) => out!("seq={sequence}: no reply within {:?}", args.timeout)?,
            Err(Missing::Garbled) => {
                out!("seq={sequence}: a reply that does not echo the request")?
            }
        }
        if sequence < args.count {
            tokio::time::sleep(args.interval).await;
        }
    }
    let lost = args.count as usize - times.len();
    out!("--- {peer} netmsg ping statistics ---")?;
    out!(
        "{} requests, {} replies, {:.0}% lost",
        args.count,
        times.len(),
        100.0 * lost as f64 / f64::from(args.count)
    )?;
    if times.is_empty() {
        bail!("no reply from {peer}");
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let min = times.iter().min().copied().unwrap_or_default();
    let max = times.iter().max().copied().unwrap_or_default();
    let avg = times.iter().sum::<Duration>() / times.len() as u32;
    out!(
        "rtt min/avg/max = {:.3}/{:.3}/{:.3} ms",
        ms(min),
        ms(avg),
        ms(max)
    )?;
    Ok(())
}

/// Why a request counts as lost.
enum Missing {
    Late,
    Garbled,
}

/// Waits for the reply to request `sequence` until `deadline`, skipping
/// late replies to earlier ones; checks that it echoes the request.
async fn answer(
    host: &Host,
    task: mach::TaskId,
    reply: mach::Name,
    sequence: u32,
    size: usize,
    deadline: Instant,
) -> Result<(), Missing> {
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .ok_or(Missing::Late)?;
        let m = host
            .receive(task, reply, RecvOptions::default(), Some(left))
            .await
            .map_err(|_| Missing::Late)?;
        let data = m.body.first().and_then(|i| i.bytes_payload());
        let echoed = data
            .and_then(|d| d.get(..4))
            .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")));
        if m.id == echo::PING + 100 && echoed == Some(sequence) {
            if data.map(<[u8]>::len) != Some(size) {
                return Err(Missing::Garbled);
            }
            return Ok(());
        }
    }
}

//! `netmsg serve`: the node daemon. It holds the node's links (mutual TLS
//! from its credentials) and runs netmsg on them over this node's Mach model,
//! exporting the echo service (`netmsg::echo`, what `netmsg ping` calls) as
//! its root port; serves enrollment on the CA node (`--enroll`); renews the
//! node's certificate at two thirds of its life and swaps it in without a
//! restart; and reloads the CRL when it changes, closing links to revoked
//! peers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use certs::{Authority, Credentials, EnrollmentGuard, StateDir, ENROLL_ALPN};
use mach::runtime::Host;
use mach::{Abi, Kernel, PortRight};
use netmsg::driver::{Netmsg, Root};
use ring::rand::SecureRandom;
use transport::{CloseCode, Node, NodeTls, TransportOptions};

use crate::cert::CA_ADDR_NOTE;

#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    /// Address to listen on (UDP).
    #[arg(long, default_value = "0.0.0.0:2345")]
    listen: SocketAddr,
    /// Serve enrollment (`netmsg cert enroll`) on the same port: the CA node only.
    #[arg(long)]
    enroll: bool,
    /// Refuse peers while the CRL is past its next-update time.
    #[arg(long)]
    strict_crl: bool,
    /// How often to look for a new CRL or certificate on disk.
    #[arg(long, default_value = "2s", value_parser = crate::cert::parse_duration)]
    reload_every: Duration,
}

fn node_tls(creds: &Credentials, enroll: bool, strict: bool) -> anyhow::Result<NodeTls> {
    let alpns = if enroll {
        vec![ENROLL_ALPN.to_vec()]
    } else {
        Vec::new()
    };
    Ok(NodeTls::from_ca_serving(
        creds.chain.clone(),
        creds.key.clone_key(),
        &creds.ca,
        vec![creds.crl.clone().into()],
        strict,
        alpns,
    )?)
}

fn warn_stale(creds: &Credentials, strict: bool) {
    let info = creds.crl_info();
    if info.is_stale(SystemTime::now()) {
        if strict {
            tracing::error!(number = info.number, "the CRL is past its next update and --strict-crl is set: peers are refused until a newer CRL is imported");
        } else {
            tracing::warn!(number = info.number, "the CRL is past its next update; import a newer one (`netmsg cert crl import`) — using it anyway");
        }
    }
}

fn modified(state: &StateDir, name: &str) -> Option<SystemTime> {
    std::fs::metadata(state.path(name))
        .and_then(|m| m.modified())
        .ok()
}

pub(crate) fn run(state: StateDir, args: ServeArgs) -> anyhow::Result<()> {
    netmsg::driver::node_runtime()?.block_on(serve(state, args))
}

async fn serve(state: StateDir, args: ServeArgs) -> anyhow::Result<()> {
    let creds = Credentials::load(&state)?;
    warn_stale(&creds, args.strict_crl);
    let authority = if args.enroll {
        Some(Arc::new(Mutex::new(
            Authority::load(&state).context("--enroll runs on the CA node")?,
        )))
    } else {
        None
    };
    let tls = node_tls(&creds, args.enroll, args.strict_crl)?;
    let node = Node::bind(&creds.node, args.listen, &tls, TransportOptions::default())?;
    let addr = node.local_addr()?;
    tracing::info!(node = %creds.node, %addr, enroll = args.enroll, "serving");
    out!("netmsg: node {} listening on {addr}", creds.node)?;

    if let Some(authority) = authority.clone() {
        let mut incoming = node.serve_alpn(ENROLL_ALPN, 64);
        let guard = Arc::new(EnrollmentGuard::default());
        let state = state.clone();
        tokio::spawn(async move {
            while let Some(conn) = incoming.recv().await {
                // `netmsg cert token/revoke` change the registry on disk: it, not
                // this process's copy, is the truth.
                match Authority::load(&state) {
                    Ok(fresh) => *authority.lock().expect("lock") = fresh,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot reload the CA registry; using the loaded one")
                    }
                }
                let (authority, guard) = (authority.clone(), guard.clone());
                tokio::spawn(async move {
                    if let Err(e) =
                        certs::serve_connection(conn, &authority, &guard, SystemTime::now).await
                    {
                        tracing::info!(error = %e, "enrollment connection ended with an error");
                    }
                });
            }
        });
    }

    // netmsg over this node's Mach model, the echo service as its root.
    let host = Host::new(Kernel::new(Abi::X86_64));
    let (task, root) = host
        .with(|k| {
            let task = k.create_task();
            k.port_allocate(task, PortRight::Receive)
                .map(|root| (task, root))
        })
        .map_err(|e| anyhow::anyhow!("allocating the root port: {e:?}"))?;
    Netmsg::start(host.clone(), node.clone(), Some(Root { task, name: root }))?;
    tokio::spawn(netmsg::echo::serve(host, task, root));

    // Renewal and reloads.
    let mut jitter = [0u8; 8];
    ring::rand::SystemRandom::new().fill(&mut jitter).ok();
    let jitter = (u64::from_le_bytes(jitter) % 1_000_000) as f64 / 1e6;
    let mut seen_crl = modified(&state, "crl.der");
    let mut seen_cert = modified(&state, "node.pem");
    let mut current = creds;
    loop {
        let renew_at = certs::renewal_time(current.not_before, current.not_after, jitter);
        let until_renewal = renew_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                node.shutdown();
                return Ok(());
            }
            _ = tokio::time::sleep(until_renewal) => {
                let renewed = match &authority {
                    Some(a) => {
                        let mut a = a.lock().expect("lock");
                        if let Ok(fresh) = Authority::load(&state) {
                            *a = fresh;
                        }
                        certs::renew_local(&state, &mut a, SystemTime::now())
                    }
                    None => match state.read_note(CA_ADDR_NOTE).and_then(|h| h.parse().ok()) {
                        Some(ca) => certs::renew(&state, ca).await,
                        None => Err(certs::Error::Usage("no CA address remembered; run `netmsg cert renew HOST`".into())),
                    },
                };
                match renewed {
                    Ok(c) => tracing::info!(serial = %c.serial, "certificate renewed"),
                    Err(e) => {
                        tracing::warn!(error = %e, "renewal failed; retrying in 10 minutes");
                        tokio::time::sleep(Duration::from_secs(600)).await;
                    }
                }
            }
            _ = tokio::time::sleep(args.reload_every) => {}
        }
        let (crl_now, cert_now) = (modified(&state, "crl.der"), modified(&state, "node.pem"));
        if crl_now == seen_crl && cert_now == seen_cert {
            continue;
        }
        (seen_crl, seen_cert) = (crl_now, cert_now);
        match Credentials::load(&state) {
            Ok(fresh) => {
                warn_stale(&fresh, args.strict_crl);
                node.set_tls(&node_tls(&fresh, args.enroll, args.strict_crl)?)?;
                let info = fresh.crl_info();
                let closed =
                    node.close_links_where(CloseCode::Revoked, "certificate revoked", |p| {
                        info.revokes(&p.serial)
                    });
                for peer in &closed {
                    tracing::warn!(%peer, "closed the link to a revoked peer");
                }
                tracing::info!(serial = %fresh.serial, crl = info.number, "credentials reloaded");
                current = fresh;
            }
            Err(e) => {
                tracing::error!(error = %e, "credentials on disk are unusable; keeping the loaded ones")
            }
        }
    }
}

//! netmsg benchmarks. Each run measures its subjects side by side and prints
//! ratios; results are recorded in `bench/RESULTS.md`.
//!
//! `netmsg-bench mach-rpc [--rounds N]`: a MIG-style null RPC (client task →
//! server task → reply) through the Mach model on tokio, against a tokio channel
//! ping-pong between two tasks (the floor for any two-task exchange) and the
//! kernel core driven without a runtime.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use mach::rpc::reply_message;
use mach::runtime::Host;
use mach::types::{msg_type as mt, PortRight};
use mach::{Item, Kernel, Message, Name, RecvOptions, TaskId};

struct Stats {
    name: &'static str,
    p50: Duration,
    p99: Duration,
    per_sec: f64,
}

fn stats(name: &'static str, mut samples: Vec<Duration>, total: Duration) -> Stats {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    Stats {
        name,
        p50: at(0.5),
        p99: at(0.99),
        per_sec: samples.len() as f64 / total.as_secs_f64(),
    }
}

struct Setup {
    client: TaskId,
    server: TaskId,
    service: Name,
    to_service: Name,
    reply_port: Name,
}

fn setup(k: &mut Kernel) -> Setup {
    let client = k.create_task();
    let server = k.create_task();
    let service = k.port_allocate(server, PortRight::Receive).unwrap();
    let to_service = k
        .port_extract_right(server, service, mt::MAKE_SEND, client)
        .unwrap()
        .0;
    let reply_port = k.port_allocate(client, PortRight::Receive).unwrap();
    Setup {
        client,
        server,
        service,
        to_service,
        reply_port,
    }
}

fn request(s: &Setup, i: i32) -> Message {
    Message::new(
        s.to_service,
        mt::COPY_SEND,
        s.reply_port,
        mt::MAKE_SEND_ONCE,
        3000,
        vec![Item::int32(i)],
    )
}

fn reply(req: &Message) -> Message {
    reply_message(req, 0, vec![req.body[0].clone()])
}

/// The kernel core alone: four calls per round trip, no runtime.
fn core_only(rounds: usize) -> Stats {
    let mut k = Kernel::default();
    let s = setup(&mut k);
    let mut samples = Vec::with_capacity(rounds);
    let start = Instant::now();
    for i in 0..rounds {
        let t = Instant::now();
        k.send(s.client, request(&s, i as i32), true).unwrap();
        let req = k
            .receive(s.server, s.service, RecvOptions::default())
            .unwrap()
            .unwrap();
        k.send(s.server, reply(&req), true).unwrap();
        let rep = k
            .receive(s.client, s.reply_port, RecvOptions::default())
            .unwrap()
            .unwrap();
        assert_eq!(rep.id, 3100);
        samples.push(t.elapsed());
        k.take_wakes();
    }
    stats("mach core, no runtime", samples, start.elapsed())
}

async fn model_on_tokio(rounds: usize, name: &'static str) -> Stats {
    let host = Host::default();
    let s = host.with(setup);
    let server_host = host.clone();
    let (server, service) = (s.server, s.service);
    let server_task = tokio::spawn(async move {
        for _ in 0..rounds {
            let req = server_host
                .receive(server, service, RecvOptions::default(), None)
                .await
                .unwrap();
            server_host.send(server, reply(&req), None).await.unwrap();
        }
    });
    let mut samples = Vec::with_capacity(rounds);
    let start = Instant::now();
    for i in 0..rounds {
        let t = Instant::now();
        let rep = host
            .call(s.client, request(&s, i as i32), s.reply_port)
            .await
            .unwrap();
        assert_eq!(rep.id, 3100);
        samples.push(t.elapsed());
    }
    let total = start.elapsed();
    server_task.await.unwrap();
    stats(name, samples, total)
}

async fn channel_ping_pong(rounds: usize, name: &'static str) -> Stats {
    let (to_server, mut server_rx) =
        tokio::sync::mpsc::channel::<(i32, tokio::sync::oneshot::Sender<i32>)>(5);
    let server = tokio::spawn(async move {
        while let Some((v, reply)) = server_rx.recv().await {
            let _ = reply.send(v);
        }
    });
    let mut samples = Vec::with_capacity(rounds);
    let start = Instant::now();
    for i in 0..rounds {
        let t = Instant::now();
        let (tx, rx) = tokio::sync::oneshot::channel();
        to_server.send((i as i32, tx)).await.unwrap();
        assert_eq!(rx.await.unwrap(), i as i32);
        samples.push(t.elapsed());
    }
    let total = start.elapsed();
    drop(to_server);
    server.await.unwrap();
    stats(name, samples, total)
}

fn print(results: &[Stats], baseline: usize) {
    println!(
        "{:<44} {:>10} {:>10} {:>14} {:>12}",
        "subject", "p50", "p99", "round trips/s", "p50 ratio"
    );
    for r in results {
        println!(
            "{:<44} {:>10.2?} {:>10.2?} {:>14.0} {:>11.2}x",
            r.name,
            r.p50,
            r.p99,
            r.per_sec,
            r.p50.as_secs_f64() / results[baseline].p50.as_secs_f64()
        );
    }
}

fn mach_rpc(rounds: usize) {
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Warm up allocators and caches once.
    current.block_on(model_on_tokio(rounds / 10, "warm-up"));
    let results = vec![
        current.block_on(channel_ping_pong(
            rounds,
            "tokio mpsc+oneshot, current_thread",
        )),
        current.block_on(model_on_tokio(
            rounds,
            "mach model RPC, tokio current_thread",
        )),
        multi.block_on(channel_ping_pong(rounds, "tokio mpsc+oneshot, 2 workers")),
        multi.block_on(model_on_tokio(rounds, "mach model RPC, tokio 2 workers")),
        core_only(rounds),
    ];
    println!("null RPC round trips: {rounds} per subject; ratios against the first line");
    print(&results, 0);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("--rounds takes a number"))
        .unwrap_or(200_000);
    match args.get(1).map(String::as_str) {
        Some("mach-rpc") | None => mach_rpc(rounds),
        Some(other) => {
            eprintln!("netmsg-bench: unknown benchmark {other:?}; available: mach-rpc");
            std::process::exit(2);
        }
    }
}

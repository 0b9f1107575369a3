//! `mach-rpc`: a MIG-style null RPC (client task → server task → reply) through
//! the Mach model on tokio, against a tokio channel ping-pong between two tasks
//! (the floor for any two-task exchange) and the kernel core without a runtime.

use std::time::Instant;

use mach::rpc::reply_message;
use mach::runtime::Host;
use mach::types::{msg_type as mt, PortRight};
use mach::{Item, Kernel, Message, Name, RecvOptions, TaskId};

use crate::{stats, Stats};

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

pub(crate) fn run(rounds: usize) {
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
    crate::print_latency(&results, 0);
}

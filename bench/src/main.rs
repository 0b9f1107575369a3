//! netmsg benchmarks. Each run measures its subjects side by side and prints
//! ratios; results are recorded in `bench/RESULTS.md`.
//!
//! `netmsg-bench mach-rpc [--rounds N]`, `netmsg-bench transport [--rounds N]`,
//! `netmsg-bench rpc [--rounds N] [--trials N] [--ports N] [--imports N]`,
//! `netmsg-bench rpc-subject netmsg|transport|fresh [--rounds N]` (one
//! subject of `rpc`'s arrangement (b) alone, for callgrind),
//! `netmsg-bench pager [--events N] [--pages N]`.
#![forbid(unsafe_code)]

mod mach_rpc;
mod pager_bench;
mod rpc_bench;
mod transport_bench;

use std::time::Duration;

pub(crate) struct Stats {
    pub(crate) name: &'static str,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) per_sec: f64,
}

pub(crate) fn stats(name: &'static str, mut samples: Vec<Duration>, total: Duration) -> Stats {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    Stats {
        name,
        p50: at(0.5),
        p99: at(0.99),
        per_sec: samples.len() as f64 / total.as_secs_f64(),
    }
}

pub(crate) fn print_latency(results: &[Stats], baseline: usize) {
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let number = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{flag} takes a number"))
            })
            .unwrap_or(default)
    };
    match args.get(1).map(String::as_str) {
        Some("mach-rpc") => mach_rpc::run(number("--rounds", 200_000)),
        Some("pager") => pager_bench::run(
            number("--events", 2_000_000),
            number("--pages", 100_000) as u64,
        ),
        Some("rpc") => rpc_bench::run(
            number("--rounds", 10_000),
            number("--trials", 3),
            number("--ports", 1000),
            number("--imports", 10_000),
        ),
        Some("rpc-subject") => rpc_bench::one_subject(
            args.get(2).map_or("netmsg", String::as_str),
            number("--rounds", 10_000),
        ),
        Some("transport") => transport_bench::run(
            number("--rounds", 20_000),
            number("--bulk-mib", 512),
            number("--streams", 1000),
        ),
        other => {
            eprintln!(
                "netmsg-bench: unknown benchmark {other:?}; available: mach-rpc, pager, rpc, rpc-subject, transport"
            );
            std::process::exit(2);
        }
    }
}

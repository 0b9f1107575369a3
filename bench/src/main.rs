//! netmsg benchmarks. Each run measures its subjects side by side and prints
//! ratios; results are recorded in `bench/RESULTS.md`.
//!
//! `netmsg-bench mach-rpc [--rounds N]`, `netmsg-bench transport [--rounds N]`,
//! `netmsg-bench rpc [--rounds N] [--trials N] [--ports N] [--imports N]`,
//! `netmsg-bench rpc-subject netmsg|transport|fresh [--rounds N]` (one
//! subject of `rpc`'s arrangement (b) alone, for callgrind),
//! `netmsg-bench rpc-imports N` (`rpc`'s memory for N live imports, which
//! `rpc` runs in a process of its own),
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

/// The median of `other` over the median of `base`, measured in pairs (the
/// same rounds), and its 95 % bootstrap interval: 1,000 resamples of the
/// pairs, drawn with replacement (a fixed seed: the same samples give the
/// same interval).
pub(crate) fn p50_ratio_interval(base: &[Duration], other: &[Duration]) -> (f64, f64, f64) {
    assert_eq!(base.len(), other.len(), "paired samples");
    assert!(!base.is_empty(), "samples to compare");
    let median = |v: &mut Vec<f64>| {
        let mid = (v.len() - 1) / 2;
        *v.select_nth_unstable_by(mid, f64::total_cmp).1
    };
    let ratio = |picks: &mut dyn Iterator<Item = usize>, a: &mut Vec<f64>, b: &mut Vec<f64>| {
        a.clear();
        b.clear();
        for i in picks {
            a.push(base[i].as_secs_f64());
            b.push(other[i].as_secs_f64());
        }
        median(b) / median(a)
    };
    let n = base.len();
    let (mut a, mut b) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let point = ratio(&mut (0..n), &mut a, &mut b);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut ratios: Vec<f64> = (0..1000)
        .map(|_| {
            let mut picks = (0..n).map(|_| (next() % n as u64) as usize);
            ratio(&mut picks, &mut a, &mut b)
        })
        .collect();
    ratios.sort_unstable_by(f64::total_cmp);
    (point, ratios[25], ratios[974])
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
        Some("rpc-bulk") => rpc_bench::bulk(
            number("--count", 2048),
            number("--size", 64 * 1024),
            number("--trials", 5).max(1) | 1,
        ),
        Some("rpc-imports") => {
            rpc_bench::imports_subject(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(10_000))
        }
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
                "netmsg-bench: unknown benchmark {other:?}; available: mach-rpc, pager, rpc, rpc-bulk, rpc-imports, rpc-subject, transport"
            );
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(v: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        v.into_iter().map(Duration::from_micros).collect()
    }

    #[test]
    fn the_ratio_interval_holds_the_ratio_of_medians() {
        let base = micros((0..999).map(|i| 50 + (i * 37) % 51));
        // Exactly twice as long, round by round: no spread at all.
        let twice = micros((0..999).map(|i| 2 * (50 + (i * 37) % 51)));
        assert_eq!(p50_ratio_interval(&base, &twice), (2.0, 2.0, 2.0));
        // Noise of its own: an interval around the point, which it holds.
        let noisy = micros((0..999).map(|i| 65 + (i * 53) % 71));
        let (point, low, high) = p50_ratio_interval(&base, &noisy);
        assert!((point - 100.0 / 75.0).abs() < 1e-9, "{point}");
        assert!(low < point && point < high, "{low} {point} {high}");
        assert!(high - low < 0.2, "{low} {high}");
    }
}

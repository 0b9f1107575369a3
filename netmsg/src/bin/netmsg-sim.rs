//! `netmsg-sim`: the randomized multi-node simulator of netmsg (see
//! `netmsg::sim`). Exit status 1 and a minimal reproduction on any violation;
//! with `NETMSG_SIM_TRACE` set, every action and frame is printed.

use anyhow::Result;
use clap::Parser;
use netmsg::sim::{minimal_failing, run_with, Stats};

#[derive(Parser)]
#[command(about = "Randomized multi-node simulation of netmsg with an oracle")]
struct Args {
    /// Nodes, each with two tasks.
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// First seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seeds to run, from --seed on.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Random actions per seed before the final drain.
    #[arg(long, default_value_t = 10_000)]
    actions: u64,
    /// Tasks also move receive rights between them (see
    /// `netmsg::sim::run_with`).
    #[arg(long)]
    moves: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.nodes >= 2, "--nodes must be at least 2");
    let mut total = Stats::default();
    for seed in args.seed..args.seed + args.seeds {
        let moves = args.moves;
        match run_with(args.nodes, seed, args.actions, moves) {
            Ok(s) => total += s,
            Err(v) if std::env::var_os("NETMSG_SIM_TRACE").is_some() => {
                // The trace above is the run; no search for a shorter one.
                eprintln!("seed {seed}: {}", v.rule);
                std::process::exit(1);
            }
            Err(v) => {
                let n = minimal_failing(args.nodes, seed, args.actions, moves);
                eprintln!("seed {seed}: {}", v.rule);
                eprintln!(
                    "minimal reproduction: netmsg-sim --nodes {} --seed {seed} --actions {n}{}",
                    args.nodes,
                    if moves { " --moves" } else { "" }
                );
                if let Err(v) = run_with(args.nodes, seed, n, moves) {
                    eprintln!("its last actions:\n  {}", v.recent.join("\n  "));
                }
                std::process::exit(1);
            }
        }
    }
    println!(
        "ok: {} seeds x {} actions on {} nodes; {total:?}",
        args.seeds, args.actions, args.nodes
    );
    Ok(())
}

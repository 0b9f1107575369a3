//! The randomized simulator over fixed seeds (see `netmsg::sim`).

use netmsg::sim::{minimal_failing, run};

#[test]
fn two_nodes_fixed_seeds() {
    let actions: u64 = std::env::var("SIM_ACTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seeds: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let mut total = netmsg::sim::Stats::default();
    for seed in 1..=seeds {
        let result = run(2, seed, actions);
        if let Ok(s) = result {
            total.messages_sent += s.messages_sent;
            total.messages_received += s.messages_received;
            total.send_once_notifications += s.send_once_notifications;
            total.frames += s.frames;
            total.ports_destroyed += s.ports_destroyed;
        }
        if let Err(v) = result {
            let n = minimal_failing(2, seed, actions);
            panic!(
                "seed {seed}: {}\nreproduce: netmsg-sim --nodes 2 --seed {seed} --actions {n}\n{}",
                v.rule,
                v.recent.join("\n")
            );
        }
    }
    eprintln!("{seeds} seeds x {actions} actions: {total:?}");
    // The runs do real work: most sends arrive, rights die, and send-once
    // rights are both used and notified.
    assert!(
        total.messages_received * 2 > total.messages_sent,
        "{total:?}"
    );
    assert!(total.send_once_notifications > 0 && total.ports_destroyed > 0);
}

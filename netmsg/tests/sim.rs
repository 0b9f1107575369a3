//! The randomized simulator over fixed seeds (see `netmsg::sim`): two nodes,
//! and three (rights reaching a port by two paths, forwarding through a
//! third node), and two and three nodes with receive rights moving. `SIM_SEEDS` and
//! `SIM_ACTIONS` scale the runs.

use netmsg::sim::{minimal_failing, run_with, Stats};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fixed_seeds(nodes: usize, seeds: u64, actions: u64, moves: bool) {
    let mut total = Stats::default();
    for seed in 1..=seeds {
        match run_with(nodes, seed, actions, moves) {
            Ok(s) => total += s,
            Err(v) => {
                let n = minimal_failing(nodes, seed, actions, moves);
                let flag = if moves { " --moves" } else { "" };
                panic!(
                    "seed {seed}: {}\nreproduce: netmsg-sim --nodes {nodes} --seed {seed} --actions {n}{flag}\n{}",
                    v.rule,
                    v.recent.join("\n")
                );
            }
        }
    }
    eprintln!("{nodes} nodes, {seeds} seeds x {actions} actions: {total:?}");
    // The runs do real work: most sends arrive, rights die, and send-once
    // rights are both used and notified.
    assert!(
        total.messages_received * 2 > total.messages_sent,
        "{total:?}"
    );
    assert!(total.send_once_notifications > 0 && total.ports_destroyed > 0);
    if moves {
        // Receive rights move, through netmsg and within a node, some to a
        // node that already named the port.
        assert!(
            total.receive_rights_moved > seeds && total.second_names > 0,
            "{total:?}"
        );
        // The known divergences (docs/protocol.md) stay near what they were
        // measured at (these seeds, 2026-11-28, one-shot frames on one
        // stream, relayed messages waiting for the queue: two nodes 0.50 %,
        // 0.12 %, 0.090 %; three 5.7 %, 2.2 %, 0.35 %), so that a change
        // that raises one shows here rather than in a later bisection (the
        // rise of second names at 8d0e922 was 0.5 % to 1.5 %). Fewer seeds
        // vary too much to bound.
        if seeds >= 40 {
            let [second, once, moved] = if nodes == 2 {
                [0.6, 0.3, 0.12]
            } else {
                [7.0, 3.3, 0.5]
            };
            at_most(
                "second names per receive right moved",
                total.second_names,
                total.receive_rights_moved,
                second,
            );
            at_most(
                "send-once messages out of order",
                total.send_once_out_of_order,
                total.send_once_messages,
                once,
            );
            at_most(
                "messages to moved ports out of order",
                total.moved_port_out_of_order,
                total.moved_port_messages,
                moved,
            );
        }
    }
}

/// `n` of `of` is at most `percent` %.
fn at_most(what: &str, n: u64, of: u64, percent: f64) {
    let rate = 100.0 * n as f64 / of.max(1) as f64;
    assert!(
        rate <= percent,
        "{what}: {n} of {of} ({rate:.2} %), more than {percent} %"
    );
}

#[test]
fn two_nodes_fixed_seeds() {
    fixed_seeds(2, env("SIM_SEEDS", 100), env("SIM_ACTIONS", 20_000), false);
}

#[test]
fn three_nodes_fixed_seeds() {
    fixed_seeds(3, env("SIM_SEEDS", 100), env("SIM_ACTIONS", 20_000), false);
}

/// With receive rights moving too, and route shortening.
#[test]
fn two_nodes_with_receive_right_moves_fixed_seeds() {
    fixed_seeds(2, env("SIM_SEEDS", 100), env("SIM_ACTIONS", 20_000), true);
}

/// Three nodes with receive rights moving. (Seed 7 held a dead port's
/// frames for ever behind a position that the hop had destroyed.)
#[test]
fn three_nodes_with_receive_right_moves_fixed_seeds() {
    fixed_seeds(3, env("SIM_SEEDS", 40), env("SIM_ACTIONS", 20_000), true);
}

/// Seeds that soaks beyond CI's fixed seeds found failing, each fixed since:
/// a frame freed by its lane-mate's delivery overtaking the lane's earlier
/// one (60165); a reply to a port that died before netmsg saw its dead-name
/// notification leaking the dead name, after a link cut (90100); a right
/// coming home to a proxy that died with its link, before that proxy's
/// exports heard of it (110030); a dependency on an origin's lane of a lost
/// link whose messages were all lost before reaching the forwarder, so that
/// no `LaneEnded` came (120456); a right coming home to a forwarder, handled
/// there after later messages of its sender had been forwarded, given their
/// position rather than its watermark's: a cycle of holds at the home
/// (130073, 130764); a lane a forwarder forwarded nothing on before its
/// link to the origin was cut, but that a dependency named (140358).
#[test]
fn three_nodes_seeds_found_by_soaks() {
    for (seed, actions) in [
        (60165, 11_969),
        (90100, 29_234),
        (110_030, 30_000),
        (120_456, 19_635),
        (130_073, 30_000),
        (130_764, 30_000),
        (140_358, 27_996),
    ] {
        if let Err(v) = run_with(3, seed, actions, false) {
            panic!("seed {seed}: {}\n{}", v.rule, v.recent.join("\n"));
        }
    }
}

/// Seeds with receive rights moving that soaks beyond CI's fixed seeds found
/// failing, each fixed since: a destroyed forwarder's name kept the moved
/// port's identity while netmsg held it as a dead name, so a right to the
/// port arriving at the node it left was taken for that node's own dead port
/// (2 nodes: 17; 3 nodes: 271, 279), and a new port that later got the name
/// took the old identity (3 nodes: 244, which showed it while a first fix
/// was checked); a dead port's frames at its new
/// home held for ever behind positions of messages that a hop, which heard
/// of the death first, had destroyed (3 nodes: 7, 149); two embargoes, one
/// on each node, each waiting for the confirmation of a right sent home
/// whose message the other node held behind its own carrying message (2
/// nodes: 467; the hand-over no longer waits for such a confirmation, only
/// the import's release does); an embargo whose lanes waited on a stream not read while its
/// message waited for room in a full queue, whose receive right was in a
/// message staged behind the carrying one (2 nodes: 693); a right coming
/// home held behind a stream stalled on a full queue whose receive right
/// was in a message staged behind the right's own message (2 nodes: 807,
/// 997); two embargoes whose lanes each waited, through held frames, on the
/// other's moved port (2 nodes: 1443); a staged message that carried
/// netmsg's last reference to an adopted port's name took it out of
/// netmsg's space when the port's receiver came, and the name, reused for
/// another moved port, still stood for the first one's identity, so a right
/// to the dead first port named the second (3 nodes: 638). Found while
/// the sender of a move came to let go of the send-once rights it keeps for
/// the receiver's forwarder: an embargo counted the receiver's own messages
/// and those it had forwarded in its own lane as two waits on one lane, so
/// it ended before the second kind was back (2 nodes: 20, 129); a moving
/// port's queue forwarded at once under an embargo, ahead of a message its
/// sender had sent before to another proxy, whose port a right in the
/// queued message named (3 nodes: 1325). Found once a right to a proxy on
/// its way home no longer stopped shortening: embargoes on three nodes each
/// waiting, through held frames, on another's, a cycle no node sees whole
/// (3 nodes: 47, now given up by the embargo clock; without it the run
/// never settles). Found once the hand-over no longer waited for rights
/// sent home to be confirmed: the proxy's import stayed alive until then,
/// so a third node's position in another node's lane of its stream, which
/// nothing more was forwarded on, held messages at the port's home for ever
/// (3 nodes: 1211; now the lanes end at the hand-over). Found once a moved
/// port's queue no longer waited for the message carrying its receive
/// right: a node shortened while a second name it had for the port toward
/// the sender still had messages on their way, which came back in its lane
/// uncounted, so the hand-over came early and a message sent through a
/// send-once right arrived after the port had moved on, as through a send
/// right (2 nodes: 73; now no shortening then). Found while building
/// shortening through a third node: a flush marker reached a task, the
/// port having come back to the node the marker went through (3 nodes:
/// 174; now a node drops another's marker where it would reach a port);
/// and a second proxy of one import that became the port overwrote the
/// first one's record, so the exporter never heard of one right and the
/// stream was never finished (3 nodes: 776; now each keeps its own).
/// Found once the simulator carried one-shot port streams' frames on one
/// stream per direction, as the driver does: a second name for the port
/// toward the sender had written messages and was gone when the port came
/// back; taken in after the port had moved on, they came back in the
/// node's lane, uncounted by the embargo, whose hand-over then came early,
/// and a message sent through a send-once right came after it, as through
/// a send right (2 nodes: 181; now no shortening onto that port from that
/// sender while another name stays).
#[test]
fn seeds_with_moves_found_by_soaks() {
    for (nodes, seed, actions) in [
        (3, 174, 10_840),
        (3, 776, 6_444),
        (2, 73, 4_519),
        (3, 1211, 12_457),
        (3, 47, 20_000),
        (2, 20, 20_000),
        (2, 129, 20_000),
        (3, 1325, 20_000),
        (2, 17, 3_035),
        (2, 467, 20_000),
        (2, 693, 20_000),
        (2, 807, 20_000),
        (2, 997, 20_000),
        (2, 1443, 20_000),
        (3, 7, 20_000),
        (3, 149, 20_000),
        (3, 244, 5_480),
        (3, 271, 20_000),
        (3, 279, 20_000),
        (3, 638, 9_486),
        (2, 181, 4_928),
    ] {
        if let Err(v) = run_with(nodes, seed, actions, true) {
            panic!(
                "{nodes} nodes, seed {seed}: {}\n{}",
                v.rule,
                v.recent.join("\n")
            );
        }
    }
}

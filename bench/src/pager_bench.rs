//! `pager`: the coherence engine alone. Four kernels fault, write and evict at
//! random over `pages` pages; their answers (data returns, lock completions) and
//! the backing store's completions are fed back at once. Counts events handled
//! per second, and compares with the cost of the map lookups the engine cannot
//! avoid (a `BTreeMap` update per event), to show what the protocol itself adds.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use libpager::{Access, Action, Config, Engine, Event};

const PS: u64 = 4096;
const KERNELS: u32 = 4;

struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn engine_run(events: usize, pages: u64) -> (usize, Duration, u64) {
    let mut e = Engine::new(Config {
        page_size: PS,
        hold: Duration::ZERO,
        lease: Duration::from_secs(3600),
    });
    let now = Duration::ZERO;
    let data = vec![0u8; PS as usize];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Which pages each kernel holds (to evict them), kept by the workload.
    let mut held: Vec<Vec<u64>> = vec![Vec::new(); KERNELS as usize];
    let mut handled = 0usize;
    let mut queue: Vec<Event> = (1..=KERNELS).map(|client| Event::Init { client }).collect();
    let start = Instant::now();
    while handled < events {
        if queue.is_empty() {
            let client = 1 + rng.next(u64::from(KERNELS)) as u32;
            let page = rng.next(pages);
            queue.push(match rng.next(10) {
                0..=5 => Event::DataRequest {
                    client,
                    offset: page * PS,
                    length: PS,
                    access: Access::Read,
                },
                6..=8 => Event::DataRequest {
                    client,
                    offset: page * PS,
                    length: PS,
                    access: Access::Write,
                },
                _ => {
                    let list = &mut held[client as usize - 1];
                    if list.is_empty() {
                        continue;
                    }
                    let p = list.swap_remove(rng.next(list.len() as u64) as usize);
                    Event::DataReturn {
                        client,
                        offset: p * PS,
                        data: data.clone(),
                        dirty: true,
                        kernel_copy: false,
                    }
                }
            });
        }
        let event = queue.pop().expect("non-empty");
        handled += 1;
        for a in e.handle(now, event) {
            match a {
                Action::ReadPage { page } => queue.push(Event::PageRead {
                    page,
                    result: Ok(data.clone()),
                }),
                Action::WritePage { page, .. } => queue.push(Event::PageWritten {
                    page,
                    result: Ok(()),
                }),
                Action::UnlockPage { page } => queue.push(Event::PageUnlocked {
                    page,
                    result: Ok(()),
                }),
                Action::LockRequest {
                    client,
                    offset,
                    length,
                    should_flush,
                    reply,
                    ..
                } => {
                    if should_flush {
                        queue.push(Event::DataReturn {
                            client,
                            offset,
                            data: data.clone(),
                            dirty: true,
                            kernel_copy: false,
                        });
                    }
                    if reply {
                        queue.push(Event::LockCompleted {
                            client,
                            offset,
                            length,
                        });
                    }
                }
                Action::Supply { client, offset, .. } => {
                    held[client as usize - 1].push(offset / PS)
                }
                _ => {}
            }
        }
    }
    (handled, start.elapsed(), e.write_grants)
}

/// The floor: one ordered-map update per event over the same pages.
fn map_floor(events: usize, pages: u64) -> (usize, Duration) {
    let mut map: BTreeMap<u64, (u32, u64)> = BTreeMap::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let start = Instant::now();
    for i in 0..events {
        let page = rng.next(pages);
        let e = map.entry(page).or_insert((0, 0));
        e.0 = (e.0 + 1) % 4;
        e.1 = i as u64;
        if e.0 == 0 {
            map.remove(&page);
        }
    }
    (events, start.elapsed())
}

pub(crate) fn run(events: usize, pages: u64) {
    engine_run(events / 10, pages);
    let (n, t, grants) = engine_run(events, pages);
    let (m, tm) = map_floor(events, pages);
    let per = |n: usize, t: Duration| n as f64 / t.as_secs_f64();
    println!("coherence engine, {KERNELS} kernels, random reads/writes/returns over {pages} pages of {PS} B");
    println!("{:<44} {:>14} {:>12}", "subject", "events/s", "ratio");
    println!(
        "{:<44} {:>14.0} {:>11.2}x",
        "BTreeMap update per event (floor)",
        per(m, tm),
        1.0
    );
    println!(
        "{:<44} {:>14.0} {:>11.2}x",
        "libpager engine",
        per(n, t),
        per(n, t) / per(m, tm)
    );
    println!("({n} events, {grants} write grants)");
}

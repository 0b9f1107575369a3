//! Simulated kernels against the engine. Each kernel behaves as GNU Mach's VM
//! does for these messages; messages travel in FIFO order per direction and
//! kernel, interleaved at random across kernels; backing-store operations finish
//! in random order. An oracle checks after every step: never two writers, never
//! a writer beside a reader, every read sees the last write; after a final drain,
//! every request was answered and the backing store holds the last write of
//! every page.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use libpager::{Access, Action, ClientId, Config, Engine, Event, PageIndex};
use mach::types::{should_return, vm_prot};
use proptest::prelude::*;

const PS: u64 = 8;

#[derive(Clone, Copy, Debug)]
struct KPage {
    value: u64,
    access: Access,
    dirty: bool,
}

#[derive(Default)]
struct Kernel {
    pages: BTreeMap<PageIndex, KPage>,
    pending: BTreeMap<PageIndex, Access>,
    inbox: VecDeque<Action>,
    outbox: VecDeque<Event>,
    dead: bool,
    hung: bool,
}

struct Sim {
    engine: Engine,
    now: Duration,
    timer: Option<Duration>,
    kernels: Vec<Kernel>,
    store: BTreeMap<PageIndex, u64>,
    io: Vec<Action>,
    next_value: u64,
    /// The value every read must see.
    current: BTreeMap<PageIndex, u64>,
    /// The newest value that reached the pager (returned or on disk).
    at_pager: BTreeMap<PageIndex, u64>,
    rng: u64,
    reads_checked: u64,
    lock_done: Vec<u64>,
    log: Vec<String>,
}

/// A thread waiting on an unlock re-faults when its page goes away.
fn refault(kernel: &mut Kernel, k: usize, page: PageIndex) {
    if kernel.pending.get(&page) == Some(&Access::Write) {
        kernel.outbox.push_back(Event::DataRequest {
            client: k as ClientId,
            offset: page * PS,
            length: PS,
            access: Access::Write,
        });
    }
}

fn data(v: u64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn value(d: &[u8]) -> u64 {
    u64::from_le_bytes(d[..8].try_into().unwrap())
}

impl Sim {
    fn new(kernels: usize, config: Config, seed: u64) -> Sim {
        let mut sim = Sim {
            engine: Engine::new(config),
            now: Duration::ZERO,
            timer: None,
            kernels: (0..kernels).map(|_| Kernel::default()).collect(),
            store: BTreeMap::new(),
            io: Vec::new(),
            next_value: 1,
            current: BTreeMap::new(),
            at_pager: BTreeMap::new(),
            rng: seed | 1,
            reads_checked: 0,
            lock_done: Vec::new(),
            log: Vec::new(),
        };
        for k in 0..kernels {
            sim.send_to_engine(Event::Init {
                client: k as ClientId,
            });
        }
        sim
    }

    fn rand(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n.max(1)
    }

    fn trace(&self, page: PageIndex) -> String {
        let needle = format!("offset: {}", page * PS);
        let needle2 = format!("page: {page}");
        let lines: Vec<&String> = self
            .log
            .iter()
            .filter(|l| {
                l.contains(&needle)
                    || l.contains(&needle2)
                    || l.contains("Gone")
                    || l.contains("Drop")
            })
            .collect();
        lines[lines.len().saturating_sub(
            std::env::var("TRACE_LINES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(40),
        )..]
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn send_to_engine(&mut self, e: Event) {
        let shown = format!("{e:?}");
        let actions = self.engine.handle(self.now, e);
        self.log.push(format!(
            "{:?} ENGINE <- {shown}\n      -> {actions:?}",
            self.now
        ));
        for a in actions {
            match a {
                Action::Ready { .. } => {}
                Action::LockDone { request } => self.lock_done.push(request),
                Action::ArmTimer { at } => self.timer = Some(self.timer.map_or(at, |t| t.min(at))),
                Action::ReadPage { .. } | Action::WritePage { .. } | Action::UnlockPage { .. } => {
                    self.io.push(a)
                }
                Action::DropClient { client } => self.kill(client as usize, false),
                Action::Supply { client, .. }
                | Action::DataError { client, .. }
                | Action::LockRequest { client, .. } => {
                    self.kernels[client as usize].inbox.push_back(a)
                }
            }
        }
    }

    /// A kernel is gone: its unreturned writes are lost (reads must now see what
    /// reached the pager). With `notify`, the pager hears of it after the
    /// messages the kernel already sent.
    fn kill(&mut self, k: usize, notify: bool) {
        if self.kernels[k].dead {
            if !notify {
                // The pager dropped a kernel that had died: what it sent before
                // dying and the pager has not read yet is discarded with it.
                let lost: Vec<PageIndex> = self.kernels[k]
                    .outbox
                    .iter()
                    .filter_map(|e| match e {
                        Event::DataReturn {
                            offset,
                            dirty: true,
                            ..
                        } => Some(offset / PS),
                        _ => None,
                    })
                    .collect();
                for page in lost {
                    let v = self.at_pager.get(&page).copied().unwrap_or(0);
                    self.current.insert(page, v);
                }
                self.kernels[k].outbox.clear();
            }
            return;
        }
        // What the pager will end up with from this kernel: returns still in
        // flight arrive if the death is notified after them; otherwise they are
        // discarded with the kernel.
        let mut in_flight: BTreeMap<PageIndex, Option<u64>> = BTreeMap::new();
        for e in &self.kernels[k].outbox {
            if let Event::DataReturn {
                offset,
                data: d,
                dirty: true,
                ..
            } = e
            {
                in_flight.insert(offset / PS, notify.then(|| value(d)));
            }
        }
        for (&page, p) in &self.kernels[k].pages {
            if p.dirty {
                in_flight.entry(page).or_insert(None);
            }
        }
        for (page, arriving) in in_flight {
            let v = arriving
                .or_else(|| self.at_pager.get(&page).copied())
                .unwrap_or(0);
            self.current.insert(page, v);
        }
        let kernel = &mut self.kernels[k];
        kernel.dead = true;
        kernel.pages.clear();
        kernel.pending.clear();
        kernel.inbox.clear();
        if notify {
            kernel.outbox.push_back(Event::ClientGone {
                client: k as ClientId,
            });
        } else {
            kernel.outbox.clear();
        }
    }

    /// The kernel handles one message from the pager (GNU Mach's behaviour).
    fn kernel_receive(&mut self, k: usize) {
        let Some(msg) = self.kernels[k].inbox.pop_front() else {
            return;
        };
        self.log.push(format!("kernel {k} <- {msg:?}"));
        let kernel = &mut self.kernels[k];
        match msg {
            Action::Supply {
                offset,
                data: d,
                lock_value,
                ..
            } => {
                for (i, chunk) in d.chunks(PS as usize).enumerate() {
                    let page = offset / PS + i as u64;
                    let access = if lock_value & vm_prot::WRITE != 0 {
                        Access::Read
                    } else {
                        Access::Write
                    };
                    kernel.pages.insert(
                        page,
                        KPage {
                            value: value(chunk),
                            access,
                            dirty: false,
                        },
                    );
                    match kernel.pending.get(&page) {
                        Some(&a) if a <= access => {
                            kernel.pending.remove(&page);
                        }
                        // A write fault answered read-only asks to unlock the page.
                        Some(_) => kernel.outbox.push_back(Event::DataUnlock {
                            client: k as ClientId,
                            offset: page * PS,
                            length: PS,
                            access: Access::Write,
                        }),
                        None => {}
                    }
                }
            }
            Action::DataError { offset, length, .. } => {
                for page in offset / PS..(offset + length) / PS {
                    kernel.pending.remove(&page);
                }
            }
            Action::LockRequest {
                offset,
                length,
                should_return: ret,
                should_flush,
                lock_value,
                reply,
                ..
            } => {
                for page in offset / PS..(offset + length) / PS {
                    let kernel = &mut self.kernels[k];
                    let Some(p) = kernel.pages.get(&page).copied() else {
                        continue;
                    };
                    if ret == should_return::ALL || (ret == should_return::DIRTY && p.dirty) {
                        kernel.outbox.push_back(Event::DataReturn {
                            client: k as ClientId,
                            offset: page * PS,
                            data: data(p.value),
                            dirty: p.dirty,
                            kernel_copy: !should_flush,
                        });
                    }
                    let kernel = &mut self.kernels[k];
                    if should_flush {
                        kernel.pages.remove(&page);
                        refault(kernel, k, page);
                    } else {
                        let entry = kernel.pages.get_mut(&page).expect("resident");
                        if ret != should_return::NONE {
                            entry.dirty = false;
                        }
                        if lock_value != vm_prot::NO_CHANGE {
                            entry.access = if lock_value & vm_prot::WRITE != 0 {
                                Access::Read
                            } else {
                                Access::Write
                            };
                            if entry.access == Access::Write
                                && kernel.pending.get(&page) == Some(&Access::Write)
                            {
                                kernel.pending.remove(&page);
                            }
                        }
                    }
                }
                if reply {
                    self.kernels[k].outbox.push_back(Event::LockCompleted {
                        client: k as ClientId,
                        offset,
                        length,
                    });
                }
            }
            other => panic!("kernel got {other:?}"),
        }
    }

    fn read(&mut self, k: usize, page: PageIndex) {
        if let Some(p) = self.kernels[k].pages.get(&page).copied() {
            let expect = self.current.get(&page).copied().unwrap_or(0);
            assert_eq!(
                p.value,
                expect,
                "kernel {k} reads page {page}: stale data\n{}",
                self.trace(page)
            );
            self.reads_checked += 1;
            return;
        }
        let kernel = &mut self.kernels[k];
        match kernel.pages.get(&page) {
            Some(_) => {}
            None if !kernel.pending.contains_key(&page) => {
                kernel.pending.insert(page, Access::Read);
                kernel.outbox.push_back(Event::DataRequest {
                    client: k as ClientId,
                    offset: page * PS,
                    length: PS,
                    access: Access::Read,
                });
            }
            None => {}
        }
    }

    fn write(&mut self, k: usize, page: PageIndex) {
        self.log.push(format!(
            "kernel {k} writes offset: {} (holds {:?}, pending {:?})",
            page * PS,
            self.kernels[k].pages.get(&page),
            self.kernels[k].pending.get(&page)
        ));
        let v = self.next_value;
        let kernel = &mut self.kernels[k];
        match kernel.pages.get_mut(&page) {
            Some(p) if p.access == Access::Write => {
                p.value = v;
                p.dirty = true;
                self.next_value += 1;
                self.current.insert(page, v);
            }
            Some(_) if kernel.pending.get(&page) != Some(&Access::Write) => {
                kernel.pending.insert(page, Access::Write);
                kernel.outbox.push_back(Event::DataUnlock {
                    client: k as ClientId,
                    offset: page * PS,
                    length: PS,
                    access: Access::Write,
                });
            }
            // One request per absent page: a write fault behind a read fault waits
            // for the data and then asks to unlock it.
            None if kernel.pending.get(&page) == Some(&Access::Read) => {
                kernel.pending.insert(page, Access::Write);
            }
            None if !kernel.pending.contains_key(&page) => {
                kernel.pending.insert(page, Access::Write);
                kernel.outbox.push_back(Event::DataRequest {
                    client: k as ClientId,
                    offset: page * PS,
                    length: PS,
                    access: Access::Write,
                });
            }
            _ => {}
        }
    }

    /// Page-out: dirty pages go back (precious data), clean ones vanish silently.
    fn evict(&mut self, k: usize, page: PageIndex) {
        self.log.push(format!(
            "kernel {k} evicts offset: {} (holds {:?}, pending {:?})",
            page * PS,
            self.kernels[k].pages.get(&page),
            self.kernels[k].pending.get(&page)
        ));
        let kernel = &mut self.kernels[k];
        if let Some(p) = kernel.pages.remove(&page) {
            if p.dirty {
                kernel.outbox.push_back(Event::DataReturn {
                    client: k as ClientId,
                    offset: page * PS,
                    data: data(p.value),
                    dirty: true,
                    kernel_copy: false,
                });
            }
            refault(kernel, k, page);
        }
    }

    fn finish_io(&mut self, i: usize, fail: bool) {
        let op = self.io.swap_remove(i);
        let event = match op {
            Action::ReadPage { page } => Event::PageRead {
                page,
                result: if fail {
                    Err(5)
                } else {
                    Ok(data(self.store.get(&page).copied().unwrap_or(0)))
                },
            },
            Action::WritePage { page, data: d } => {
                if !fail {
                    self.store.insert(page, value(&d));
                }
                Event::PageWritten {
                    page,
                    result: if fail { Err(28) } else { Ok(()) },
                }
            }
            Action::UnlockPage { page } => Event::PageUnlocked {
                page,
                result: if fail { Err(28) } else { Ok(()) },
            },
            _ => unreachable!(),
        };
        self.send_to_engine(event);
    }

    fn deliver_one_to_engine(&mut self, k: usize) {
        if let Some(e) = self.kernels[k].outbox.pop_front() {
            if let Event::DataReturn {
                offset,
                data: d,
                dirty: true,
                ..
            } = &e
            {
                self.at_pager.insert(offset / PS, value(d));
            }
            self.send_to_engine(e);
        }
    }

    /// Never two writers, and no reader beside a writer (live kernels only).
    fn check_coherence(&self) {
        let mut seen: BTreeMap<PageIndex, (u32, u32)> = BTreeMap::new();
        for k in self.kernels.iter().filter(|k| !k.dead) {
            for (&page, p) in &k.pages {
                let e = seen.entry(page).or_default();
                match p.access {
                    Access::Write => e.1 += 1,
                    Access::Read => e.0 += 1,
                }
            }
        }
        for (page, (readers, writers)) in seen {
            assert!(
                writers <= 1 && (writers == 0 || readers == 0),
                "page {page}: {readers} readers, {writers} writers\n{}",
                self.trace(page)
            );
        }
    }

    fn step(&mut self, pages: u64, io_failures: bool) {
        let dt = self.rand(3000);
        self.now += Duration::from_micros(dt);
        if self.timer.is_some_and(|t| t <= self.now) {
            self.timer = None;
            self.send_to_engine(Event::Timer);
        }
        let n = self.kernels.len();
        let k = self.rand(n as u64) as usize;
        match self.rand(100) {
            0..=24 if !self.kernels[k].dead && !self.kernels[k].hung => {
                let page = self.rand(pages);
                self.read(k, page)
            }
            25..=44 if !self.kernels[k].dead && !self.kernels[k].hung => {
                let page = self.rand(pages);
                self.write(k, page)
            }
            45..=49 if !self.kernels[k].dead && !self.kernels[k].hung => {
                let page = self.rand(pages);
                self.evict(k, page)
            }
            50..=69 if !self.kernels[k].dead && !self.kernels[k].hung => self.kernel_receive(k),
            70..=84 => self.deliver_one_to_engine(k),
            85..=97 if !self.io.is_empty() => {
                let i = self.rand(self.io.len() as u64) as usize;
                let fail = io_failures && self.rand(20) == 0;
                self.finish_io(i, fail)
            }
            98 if self.rand(40) == 0 && self.kernels.iter().filter(|k| !k.dead).count() > 1 => {
                self.kill(k, true)
            }
            99 if self.rand(40) == 0
                && self.kernels.iter().filter(|k| !k.dead && !k.hung).count() > 1 =>
            {
                self.kernels[k].hung = true
            }
            _ => {}
        }
        self.check_coherence();
    }

    /// Delivers everything and fires timers until nothing moves.
    fn drain(&mut self) {
        for _ in 0..200_000 {
            let mut moved = false;
            for k in 0..self.kernels.len() {
                if !self.kernels[k].dead
                    && !self.kernels[k].hung
                    && !self.kernels[k].inbox.is_empty()
                {
                    self.kernel_receive(k);
                    moved = true;
                }
                if !self.kernels[k].outbox.is_empty() {
                    self.deliver_one_to_engine(k);
                    moved = true;
                }
            }
            if !self.io.is_empty() {
                self.finish_io(0, false);
                moved = true;
            }
            self.check_coherence();
            if !moved {
                match self.timer.take() {
                    Some(t) => {
                        self.now = self.now.max(t);
                        self.send_to_engine(Event::Timer);
                    }
                    None => return,
                }
            }
        }
        panic!("no quiescence");
    }
}

fn run(seed: u64, kernels: usize, pages: u64, steps: usize, io_failures: bool) -> u64 {
    let config = Config {
        page_size: PS,
        hold: Duration::from_millis(2),
        lease: Duration::from_millis(500),
    };
    let mut sim = Sim::new(kernels, config, seed);
    for _ in 0..steps {
        sim.step(pages, io_failures);
    }
    // Hung kernels stay hung: the lease drops them. Everything else drains.
    sim.drain();
    for (k, kernel) in sim.kernels.iter().enumerate() {
        if !kernel.dead && !kernel.hung {
            assert!(
                kernel.pending.is_empty() || io_failures,
                "seed {seed}: kernel {k} still waits for {:?}; it holds {:?}; engine: {}",
                kernel.pending,
                kernel.pages,
                kernel
                    .pending
                    .keys()
                    .map(|&p| format!("page {p}: {}\n{}", sim.engine.describe(p), sim.trace(p)))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
    }
    // Every live kernel reads every page (checking it), then pages everything out.
    for k in 0..kernels {
        if !sim.kernels[k].dead && !sim.kernels[k].hung {
            for page in 0..pages {
                sim.read(k, page);
            }
        }
    }
    sim.drain();
    // Clean pages leave a kernel silently, so the pager takes everything back
    // itself (as at shutdown) and waits for it to be on disk.
    let (request, actions) = sim.engine.shut_down(sim.now);
    let mut done = false;
    for a in actions {
        match a {
            Action::LockDone { request: r } if r == request => done = true,
            Action::ArmTimer { at } => sim.timer = Some(sim.timer.map_or(at, |t| t.min(at))),
            Action::LockRequest { client, .. } => sim.kernels[client as usize].inbox.push_back(a),
            other => panic!("unexpected {other:?}"),
        }
    }
    sim.lock_done.clear();
    sim.drain();
    assert!(
        done || sim.lock_done.contains(&request),
        "seed {seed}: shutdown never completed"
    );
    if !io_failures {
        for page in 0..pages {
            assert_eq!(
                sim.store.get(&page).copied().unwrap_or(0),
                sim.current.get(&page).copied().unwrap_or(0),
                "seed {seed}: page {page} lost a write"
            );
        }
        assert_eq!(
            sim.engine.active_pages(),
            0,
            "seed {seed}: state left behind: {}",
            (0..pages)
                .map(|p| sim.engine.describe(p))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    sim.reads_checked
}

#[test]
fn fixed_seeds_hold_every_invariant() {
    let mut reads = 0;
    for seed in 1..=300u64 {
        reads += run(seed, 2 + (seed % 4) as usize, 1 + seed % 6, 3000, false);
    }
    assert!(reads > 20_000, "only {reads} reads were checked");
}

#[test]
fn backing_store_failures_never_break_coherence() {
    for seed in 1..=100u64 {
        let _ = run(seed * 7919, 3, 4, 2000, true);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64), ..ProptestConfig::default() })]
    #[test]
    fn random_seeds_hold_every_invariant(seed in any::<u64>(), kernels in 2usize..6, pages in 1u64..8) {
        let _ = run(seed, kernels, pages, 3000, false);
    }
}

#[test]
fn regression_seed_2014206686386643434() {
    let _ = run(2014206686386643434, 4, 7, 3000, false);
}

#[test]
fn regression_seed_5471725951935183416() {
    let _ = run(5471725951935183416, 2, 1, 3000, false);
}

//! The coherence engine: per page, many readers or one writer.
//!
//! Pure: [`Engine::handle`] takes the time and one [`Event`] and returns the
//! [`Action`]s to perform; backing-store reads, writes and unlocks are actions
//! whose completions come back as events. Pages are independent: a write to one
//! never waits for another.
//!
//! Per page: the holders (readers, or one writer), a FIFO wait list, the
//! revocations in flight (lock requests not yet completed), and the newest data
//! a kernel returned until it is on disk. A revocation is complete only on
//! `lock_completed`. Kernels keep a granted page for at least `hold` before it is
//! taken back, so two writers cannot bounce it faster than that. A kernel that
//! does not complete a revocation within `lease` is dropped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use mach::types::{should_return, vm_prot};

/// A kernel mapping the object (the pager's handle for its control port).
pub type ClientId = u32;
/// A page number (offset / page size).
pub type PageIndex = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    /// From a `vm_prot_t` desired access.
    pub fn from_prot(prot: i32) -> Access {
        if prot & vm_prot::WRITE != 0 {
            Access::Write
        } else {
            Access::Read
        }
    }
}

/// Tunables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub page_size: u64,
    /// A granted page is not revoked before this has passed.
    pub hold: Duration,
    /// A kernel that leaves a revocation unanswered this long is dropped.
    pub lease: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            page_size: 4096,
            hold: Duration::from_millis(10),
            lease: Duration::from_secs(10),
        }
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `memory_object_init`.
    Init { client: ClientId },
    /// `memory_object_data_request`.
    DataRequest {
        client: ClientId,
        offset: u64,
        length: u64,
        access: Access,
    },
    /// `memory_object_data_unlock`.
    DataUnlock {
        client: ClientId,
        offset: u64,
        length: u64,
        access: Access,
    },
    /// `memory_object_data_return`.
    DataReturn {
        client: ClientId,
        offset: u64,
        data: Vec<u8>,
        dirty: bool,
        kernel_copy: bool,
    },
    /// `memory_object_lock_completed` for a lock request with a reply.
    LockCompleted {
        client: ClientId,
        offset: u64,
        length: u64,
    },
    /// `memory_object_terminate`, or a dead-name notification on the control port.
    ClientGone { client: ClientId },
    /// A timer the engine armed has fired (or any later wake-up).
    Timer,
    /// A backing-store read finished: the page's data, or an error.
    PageRead {
        page: PageIndex,
        result: Result<Vec<u8>, i32>,
    },
    /// A backing-store write finished.
    PageWritten {
        page: PageIndex,
        result: Result<(), i32>,
    },
    /// A backing-store unlock (permission to write) finished.
    PageUnlocked {
        page: PageIndex,
        result: Result<(), i32>,
    },
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `memory_object_ready`.
    Ready { client: ClientId },
    /// `memory_object_data_supply`: `lock_value` is the access withheld
    /// (`VM_PROT_WRITE` for read-only, `VM_PROT_NONE` for writable).
    Supply {
        client: ClientId,
        offset: u64,
        data: Vec<u8>,
        lock_value: i32,
    },
    /// `memory_object_data_error`.
    DataError {
        client: ClientId,
        offset: u64,
        length: u64,
        error: i32,
    },
    /// `memory_object_lock_request`; `reply` asks for `lock_completed`.
    LockRequest {
        client: ClientId,
        offset: u64,
        length: u64,
        should_return: i32,
        should_flush: bool,
        lock_value: i32,
        reply: bool,
    },
    /// Read a page from the backing store (answer with [`Event::PageRead`]).
    ReadPage { page: PageIndex },
    /// Write a page to the backing store (answer with [`Event::PageWritten`]).
    WritePage { page: PageIndex, data: Vec<u8> },
    /// Ask the backing store for write permission (answer with [`Event::PageUnlocked`]).
    UnlockPage { page: PageIndex },
    /// Send [`Event::Timer`] at this time.
    ArmTimer { at: Duration },
    /// The kernel did not answer in time and was dropped: release its ports.
    DropClient { client: ClientId },
    /// A [`Engine::lock_range`] request with `wait` is complete.
    LockDone { request: u64 },
}

/// Why a revocation was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Revoke {
    /// Writer keeps a read-only copy (write → read).
    Downgrade,
    /// The holder drops the page.
    Flush,
    /// A sync or flush requested through the API (no coherence meaning).
    External { flush: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Waiter {
    client: ClientId,
    access: Access,
    /// The kernel still has a copy (it sent `data_unlock`); after `data_request`
    /// it has none and must be supplied.
    has_copy: bool,
}

#[derive(Debug, Default)]
struct Page {
    readers: BTreeSet<ClientId>,
    writer: Option<ClientId>,
    waiters: VecDeque<Waiter>,
    revoking: BTreeMap<ClientId, (Revoke, Duration)>,
    /// Kernels that asked for the page again while we were revoking it: they no
    /// longer have a copy, whatever the revocation does. (Correctness does not
    /// rest on this — a waiter without a copy is always supplied — but it keeps
    /// the engine from revoking a copy that is already gone.)
    requested_again: BTreeSet<ClientId>,
    reading: bool,
    unlocking: Option<ClientId>,
    writing: bool,
    pending_write: Option<Vec<u8>>,
    /// The newest contents when the backing store may be older (or to serve
    /// waiters without a read); dropped once written and not needed.
    cache: Option<Vec<u8>>,
    granted_at: Option<Duration>,
    write_error: Option<i32>,
    next_error: BTreeMap<ClientId, i32>,
}

impl Page {
    fn idle(&self) -> bool {
        self.readers.is_empty()
            && self.writer.is_none()
            && self.waiters.is_empty()
            && self.revoking.is_empty()
            && !self.reading
            && self.unlocking.is_none()
            && !self.writing
            && self.pending_write.is_none()
            && self.write_error.is_none()
            && self.next_error.is_empty()
            && self.requested_again.is_empty()
    }

    fn holds(&self, c: ClientId) -> bool {
        self.readers.contains(&c) || self.writer == Some(c)
    }

    /// `c` no longer holds the page in any mode.
    fn release(&mut self, c: ClientId) {
        self.readers.remove(&c);
        if self.writer == Some(c) {
            self.writer = None;
        }
    }
}

#[derive(Debug, Default)]
struct LockWait {
    outstanding: BTreeSet<(ClientId, PageIndex)>,
    writes: BTreeSet<PageIndex>,
}

/// A memory object's coherence state.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    clients: BTreeSet<ClientId>,
    pages: BTreeMap<PageIndex, Page>,
    /// Pages to look at again at a time (hold expiry, lease deadlines).
    timers: BTreeMap<Duration, BTreeSet<PageIndex>>,
    armed: Option<Duration>,
    lock_waits: BTreeMap<u64, LockWait>,
    next_lock_request: u64,
    shutting_down: bool,
    /// Counts transfers of write access (a figure for ping-pong tests).
    pub write_grants: u64,
}

impl Engine {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            clients: BTreeSet::new(),
            pages: BTreeMap::new(),
            timers: BTreeMap::new(),
            armed: None,
            lock_waits: BTreeMap::new(),
            next_lock_request: 1,
            shutting_down: false,
            write_grants: 0,
        }
    }

    pub fn config(&self) -> Config {
        self.config
    }

    fn pages_of(&self, offset: u64, length: u64) -> std::ops::Range<PageIndex> {
        let ps = self.config.page_size;
        let first = offset / ps;
        let last = (offset + length.max(1)).div_ceil(ps);
        first..last.max(first + 1)
    }

    /// Handles one event at time `now`.
    pub fn handle(&mut self, now: Duration, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Init { client } => {
                self.clients.insert(client);
                out.push(Action::Ready { client });
            }
            Event::DataRequest {
                client,
                offset,
                length,
                access,
            } => {
                if !self.shutting_down && self.clients.contains(&client) {
                    for page in self.pages_of(offset, length) {
                        self.request(now, client, page, access, &mut out);
                    }
                }
            }
            Event::DataUnlock {
                client,
                offset,
                length,
                access,
            } => {
                if !self.shutting_down && self.clients.contains(&client) {
                    for page in self.pages_of(offset, length) {
                        let p = self.pages.entry(page).or_default();
                        // Only a current reader can be upgraded; a kernel whose copy
                        // we are taking back will ask again with data_request.
                        if p.readers.contains(&client) && !p.revoking.contains_key(&client) {
                            enqueue(p, client, access, true);
                            self.advance(now, page, &mut out);
                        }
                    }
                }
            }
            Event::DataReturn { client, .. } | Event::LockCompleted { client, .. }
                if !self.clients.contains(&client) =>
            {
                // A dropped kernel's late messages: its data is not trusted.
            }
            Event::DataReturn {
                client,
                offset,
                data,
                dirty,
                kernel_copy,
            } => {
                let ps = self.config.page_size as usize;
                let first = offset / self.config.page_size;
                for (i, chunk) in data.chunks(ps).enumerate() {
                    self.returned(
                        now,
                        client,
                        first + i as u64,
                        chunk,
                        dirty,
                        kernel_copy,
                        &mut out,
                    );
                }
            }
            Event::LockCompleted {
                client,
                offset,
                length,
            } => {
                for page in self.pages_of(offset, length) {
                    self.completed(now, client, page, &mut out);
                }
            }
            Event::ClientGone { client } => self.drop_client(now, client, &mut out),
            Event::Timer => {
                self.armed = None;
                let due: Vec<Duration> = self.timers.range(..=now).map(|(t, _)| *t).collect();
                let mut pages = BTreeSet::new();
                for t in due {
                    pages.extend(self.timers.remove(&t).unwrap_or_default());
                }
                // Leases first: a silent kernel is dropped before anything waits on it.
                let mut expired = BTreeSet::new();
                for page in &pages {
                    if let Some(p) = self.pages.get(page) {
                        for (&c, &(_, sent)) in &p.revoking {
                            if now >= sent + self.config.lease {
                                expired.insert(c);
                            }
                        }
                    }
                }
                for c in expired {
                    out.push(Action::DropClient { client: c });
                    self.drop_client(now, c, &mut out);
                }
                for page in pages {
                    self.advance(now, page, &mut out);
                }
            }
            Event::PageRead { page, result } => {
                let p = self.pages.entry(page).or_default();
                p.reading = false;
                match result {
                    Ok(data) => {
                        if p.cache.is_none() {
                            p.cache = Some(data);
                        }
                        self.advance(now, page, &mut out);
                    }
                    Err(error) => {
                        // Everyone waiting for this data is told.
                        let ps = self.config.page_size;
                        for w in std::mem::take(&mut p.waiters) {
                            out.push(Action::DataError {
                                client: w.client,
                                offset: page * ps,
                                length: ps,
                                error,
                            });
                        }
                    }
                }
            }
            Event::PageWritten { page, result } => {
                let p = self.pages.entry(page).or_default();
                p.writing = false;
                match result {
                    Ok(()) => p.write_error = None,
                    // The data stays in memory (`cache`): nothing is lost, and the
                    // next dirty return or sync writes it again.
                    Err(e) => p.write_error = Some(e),
                }
                if let Some(data) = p.pending_write.take() {
                    p.writing = true;
                    out.push(Action::WritePage { page, data });
                }
                self.write_settled(page, &mut out);
                self.advance(now, page, &mut out);
            }
            Event::PageUnlocked { page, result } => {
                let ps = self.config.page_size;
                let p = self.pages.entry(page).or_default();
                let Some(c) = p.unlocking.take() else {
                    return out;
                };
                match result {
                    Ok(()) => {
                        let head = p.waiters.front().copied();
                        let others =
                            p.readers.iter().any(|&r| r != c) || p.writer.is_some_and(|w| w != c);
                        let head_is_c = head.is_some_and(|h| {
                            h.client == c && h.access == Access::Write && h.has_copy
                        });
                        if p.readers.contains(&c) && head_is_c && !others {
                            p.waiters.pop_front();
                            p.readers.remove(&c);
                            p.writer = Some(c);
                            p.granted_at = Some(now);
                            self.write_grants += 1;
                            out.push(Action::LockRequest {
                                client: c,
                                offset: page * ps,
                                length: ps,
                                should_return: should_return::NONE,
                                should_flush: false,
                                lock_value: vm_prot::NONE,
                                reply: false,
                            });
                        }
                    }
                    Err(error) => {
                        // The manual's rule: flush the page, then fail the kernel's
                        // next request for it.
                        p.waiters.retain(|w| w.client != c);
                        p.next_error.insert(c, error);
                        if p.holds(c) {
                            p.revoking.insert(c, (Revoke::Flush, now));
                            out.push(flush_request(c, page, ps, false));
                            self.schedule(now + self.config.lease, page);
                        }
                    }
                }
                self.advance(now, page, &mut out);
            }
        }
        self.arm(&mut out);
        coalesce(out)
    }

    fn request(
        &mut self,
        now: Duration,
        client: ClientId,
        page: PageIndex,
        access: Access,
        out: &mut Vec<Action>,
    ) {
        let ps = self.config.page_size;
        let p = self.pages.entry(page).or_default();
        if let Some(error) = p.next_error.remove(&client) {
            out.push(Action::DataError {
                client,
                offset: page * ps,
                length: ps,
                error,
            });
            return;
        }
        // A kernel asking for a page it holds (and that we are not taking back)
        // has dropped its copy on its own.
        if p.holds(client) {
            if p.revoking.contains_key(&client) {
                p.requested_again.insert(client);
            } else {
                p.release(client);
            }
        }
        enqueue(p, client, access, false);
        self.advance(now, page, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn returned(
        &mut self,
        now: Duration,
        client: ClientId,
        page: PageIndex,
        data: &[u8],
        dirty: bool,
        kernel_copy: bool,
        out: &mut Vec<Action>,
    ) {
        let p = self.pages.entry(page).or_default();
        if dirty {
            p.cache = Some(data.to_vec());
            if p.writing {
                p.pending_write = Some(data.to_vec());
            } else {
                p.writing = true;
                out.push(Action::WritePage {
                    page,
                    data: data.to_vec(),
                });
            }
        }
        if !kernel_copy {
            p.release(client);
        }
        self.advance(now, page, out);
    }

    fn completed(
        &mut self,
        now: Duration,
        client: ClientId,
        page: PageIndex,
        out: &mut Vec<Action>,
    ) {
        let Some(p) = self.pages.get_mut(&page) else {
            return;
        };
        let Some((kind, _)) = p.revoking.remove(&client) else {
            return;
        };
        let kind = if p.requested_again.remove(&client) {
            Revoke::Flush
        } else {
            kind
        };
        match kind {
            Revoke::Downgrade => {
                if p.writer == Some(client) {
                    p.writer = None;
                    p.readers.insert(client);
                }
            }
            Revoke::Flush | Revoke::External { flush: true } => {
                p.release(client);
            }
            Revoke::External { flush: false } => {}
        }
        self.lock_settled(client, page, out);
        self.advance(now, page, out);
    }

    fn drop_client(&mut self, now: Duration, client: ClientId, out: &mut Vec<Action>) {
        self.clients.remove(&client);
        let touched: Vec<PageIndex> = self
            .pages
            .iter()
            .filter(|(_, p)| {
                p.holds(client)
                    || p.revoking.contains_key(&client)
                    || p.waiters.iter().any(|w| w.client == client)
                    || p.unlocking == Some(client)
                    || p.next_error.contains_key(&client)
            })
            .map(|(&i, _)| i)
            .collect();
        for page in touched {
            let p = self.pages.get_mut(&page).expect("listed");
            p.release(client);
            p.waiters.retain(|w| w.client != client);
            p.revoking.remove(&client);
            p.requested_again.remove(&client);
            p.next_error.remove(&client);
            if p.unlocking == Some(client) {
                p.unlocking = None;
            }
            self.lock_settled(client, page, out);
            self.advance(now, page, out);
        }
    }

    fn schedule(&mut self, at: Duration, page: PageIndex) {
        self.timers.entry(at).or_default().insert(page);
    }

    fn arm(&mut self, out: &mut Vec<Action>) {
        if let Some((&at, _)) = self.timers.iter().next() {
            if self.armed.is_none_or(|a| at < a) {
                self.armed = Some(at);
                out.push(Action::ArmTimer { at });
            }
        }
    }

    /// Makes what progress the page allows: grants to the head of the wait list,
    /// or starts what the grant needs (a read, an unlock, revocations).
    fn advance(&mut self, now: Duration, page: PageIndex, out: &mut Vec<Action>) {
        let ps = self.config.page_size;
        let (hold, lease) = (self.config.hold, self.config.lease);
        let Some(p) = self.pages.get_mut(&page) else {
            return;
        };
        let mut wake_at = None;
        while let Some(head) = p.waiters.front().copied() {
            if p.reading || p.unlocking.is_some() || !p.revoking.is_empty() {
                break;
            }
            let c = head.client;
            let conflicting: Vec<ClientId> = match head.access {
                Access::Read => p.writer.filter(|&w| w != c).into_iter().collect(),
                Access::Write => p
                    .readers
                    .iter()
                    .copied()
                    .filter(|&r| r != c)
                    .chain(p.writer.filter(|&w| w != c))
                    .collect(),
            };
            if !conflicting.is_empty() {
                let free_at = p.granted_at.map_or(now, |g| g + hold);
                if now < free_at {
                    wake_at = Some(free_at);
                    break;
                }
                for holder in conflicting {
                    let downgrade = head.access == Access::Read;
                    p.revoking.insert(
                        holder,
                        (
                            if downgrade {
                                Revoke::Downgrade
                            } else {
                                Revoke::Flush
                            },
                            now,
                        ),
                    );
                    out.push(if downgrade {
                        Action::LockRequest {
                            client: holder,
                            offset: page * ps,
                            length: ps,
                            should_return: should_return::DIRTY,
                            should_flush: false,
                            lock_value: vm_prot::WRITE,
                            reply: true,
                        }
                    } else {
                        flush_request(holder, page, ps, p.writer == Some(holder))
                    });
                }
                wake_at = Some(now + lease);
                break;
            }
            if !head.has_copy {
                // It asked for data: it has no copy, whatever we believed.
                p.release(c);
            } else if p.writer == Some(c) {
                // Already writable for this kernel: nothing to give.
                p.waiters.pop_front();
                continue;
            }
            if head.access == Access::Write && p.readers.contains(&c) && head.has_copy {
                // Upgrade in place: the backing store must allow the write first.
                p.unlocking = Some(c);
                out.push(Action::UnlockPage { page });
                break;
            }
            let Some(data) = p.cache.clone() else {
                p.reading = true;
                out.push(Action::ReadPage { page });
                break;
            };
            p.waiters.pop_front();
            p.granted_at = Some(now);
            match head.access {
                Access::Read => {
                    p.readers.insert(c);
                    out.push(Action::Supply {
                        client: c,
                        offset: page * ps,
                        data,
                        lock_value: vm_prot::WRITE,
                    });
                }
                Access::Write => {
                    p.writer = Some(c);
                    self.write_grants += 1;
                    out.push(Action::Supply {
                        client: c,
                        offset: page * ps,
                        data,
                        lock_value: vm_prot::NONE,
                    });
                }
            }
        }
        // Returned data is kept only while the disk is behind or someone waits.
        if !p.writing
            && p.pending_write.is_none()
            && p.write_error.is_none()
            && p.waiters.is_empty()
        {
            p.cache = None;
        }
        let idle = p.idle();
        if let Some(at) = wake_at {
            self.schedule(at, page);
        }
        if idle {
            self.pages.remove(&page);
        }
    }

    // ----- the external API (Hurd's pager_sync / pager_return / pager_flush) -----

    /// Sends lock requests over `[offset, offset + length)` to the kernels holding
    /// those pages: `should_return` and `flush` as in `memory_object_lock_request`.
    /// With `wait`, [`Action::LockDone`] reports when every kernel has answered and
    /// the returned data is on disk.
    pub fn lock_range(
        &mut self,
        now: Duration,
        offset: u64,
        length: u64,
        return_mode: i32,
        flush: bool,
        wait: bool,
    ) -> (u64, Vec<Action>) {
        let ps = self.config.page_size;
        let id = self.next_lock_request;
        self.next_lock_request += 1;
        let mut out = Vec::new();
        let mut wait_state = LockWait::default();
        for page in self.pages_of(offset, length) {
            let Some(p) = self.pages.get_mut(&page) else {
                continue;
            };
            let holders: Vec<ClientId> = p.readers.iter().copied().chain(p.writer).collect();
            for c in holders {
                // Clean readers need nothing unless they are to drop the page.
                if !flush && return_mode != should_return::ALL && p.writer != Some(c) {
                    continue;
                }
                if p.revoking.contains_key(&c) {
                    continue;
                }
                p.revoking.insert(c, (Revoke::External { flush }, now));
                wait_state.outstanding.insert((c, page));
                out.push(Action::LockRequest {
                    client: c,
                    offset: page * ps,
                    length: ps,
                    should_return: return_mode,
                    should_flush: flush,
                    lock_value: vm_prot::NO_CHANGE,
                    reply: true,
                });
            }
            if p.writing || p.pending_write.is_some() {
                wait_state.writes.insert(page);
            }
            self.timers
                .entry(now + self.config.lease)
                .or_default()
                .insert(page);
        }
        if wait {
            if wait_state.outstanding.is_empty() && wait_state.writes.is_empty() {
                out.push(Action::LockDone { request: id });
            } else {
                self.lock_waits.insert(id, wait_state);
            }
        }
        self.arm(&mut out);
        (id, coalesce(out))
    }

    fn lock_settled(&mut self, client: ClientId, page: PageIndex, out: &mut Vec<Action>) {
        let writing = self
            .pages
            .get(&page)
            .is_some_and(|p| p.writing || p.pending_write.is_some());
        let mut done = Vec::new();
        for (&id, w) in self.lock_waits.iter_mut() {
            if w.outstanding.remove(&(client, page)) && writing {
                w.writes.insert(page);
            }
            if w.outstanding.is_empty() && w.writes.is_empty() {
                done.push(id);
            }
        }
        for id in done {
            self.lock_waits.remove(&id);
            out.push(Action::LockDone { request: id });
        }
    }

    fn write_settled(&mut self, page: PageIndex, out: &mut Vec<Action>) {
        if self
            .pages
            .get(&page)
            .is_some_and(|p| p.writing || p.pending_write.is_some())
        {
            return;
        }
        let mut done = Vec::new();
        for (&id, w) in self.lock_waits.iter_mut() {
            w.writes.remove(&page);
            if w.outstanding.is_empty() && w.writes.is_empty() {
                done.push(id);
            }
        }
        for id in done {
            self.lock_waits.remove(&id);
            out.push(Action::LockDone { request: id });
        }
    }

    /// Stops serving requests (Hurd's shutdown: then return everything).
    pub fn shut_down(&mut self, now: Duration) -> (u64, Vec<Action>) {
        self.shutting_down = true;
        let all = self
            .pages
            .keys()
            .next_back()
            .map_or(0, |&last| (last + 1) * self.config.page_size);
        self.lock_range(
            now,
            0,
            all.max(self.config.page_size),
            should_return::ALL,
            true,
            true,
        )
    }

    // ----- inspection -------------------------------------------------------------

    /// (readers, writer) of a page, as the engine believes.
    pub fn holders(&self, page: PageIndex) -> (Vec<ClientId>, Option<ClientId>) {
        match self.pages.get(&page) {
            Some(p) => (p.readers.iter().copied().collect(), p.writer),
            None => (Vec::new(), None),
        }
    }

    /// Pages with any state (the rest are on disk and mapped by nobody).
    pub fn active_pages(&self) -> usize {
        self.pages.len()
    }

    /// Pages whose last write to the backing store failed (their data is kept).
    pub fn write_errors(&self) -> Vec<(PageIndex, i32)> {
        self.pages
            .iter()
            .filter_map(|(&i, p)| p.write_error.map(|e| (i, e)))
            .collect()
    }

    /// A compact description of a page's state, for tests and the transition table.
    pub fn describe(&self, page: PageIndex) -> String {
        let Some(p) = self.pages.get(&page) else {
            return "idle".into();
        };
        let mut s = Vec::new();
        if !p.readers.is_empty() {
            s.push(format!("R{:?}", p.readers.iter().collect::<Vec<_>>()));
        }
        if let Some(w) = p.writer {
            s.push(format!("W[{w}]"));
        }
        if !p.waiters.is_empty() {
            let w: Vec<String> = p
                .waiters
                .iter()
                .map(|w| {
                    format!(
                        "{}{}",
                        w.client,
                        if w.access == Access::Write { "w" } else { "r" }
                    )
                })
                .collect();
            s.push(format!("wait[{}]", w.join(",")));
        }
        if !p.revoking.is_empty() {
            let r: Vec<String> = p
                .revoking
                .iter()
                .map(|(c, (k, _))| format!("{c}:{k:?}"))
                .collect();
            s.push(format!("revoking[{}]", r.join(",")));
        }
        if p.reading {
            s.push("reading".into());
        }
        if let Some(c) = p.unlocking {
            s.push(format!("unlocking[{c}]"));
        }
        if p.writing {
            s.push("writing".into());
        }
        if p.pending_write.is_some() {
            s.push("write-pending".into());
        }
        if p.cache.is_some() {
            s.push("cached".into());
        }
        if let Some(e) = p.write_error {
            s.push(format!("write-error({e})"));
        }
        if !p.next_error.is_empty() {
            s.push(format!("next-error{:?}", p.next_error));
        }
        if s.is_empty() {
            "idle".into()
        } else {
            s.join(" ")
        }
    }
}

fn enqueue(p: &mut Page, client: ClientId, access: Access, has_copy: bool) {
    if let Some(w) = p.waiters.iter_mut().find(|w| w.client == client) {
        w.access = w.access.max(access);
        w.has_copy &= has_copy;
    } else {
        p.waiters.push_back(Waiter {
            client,
            access,
            has_copy,
        });
    }
}

fn flush_request(client: ClientId, page: PageIndex, ps: u64, writer: bool) -> Action {
    Action::LockRequest {
        client,
        offset: page * ps,
        length: ps,
        should_return: if writer {
            should_return::DIRTY
        } else {
            should_return::NONE
        },
        should_flush: true,
        lock_value: vm_prot::NO_CHANGE,
        reply: true,
    }
}

/// Merges per-page supplies and lock requests to one kernel over adjacent pages
/// into multi-page messages. Only messages to the same kernel are merged, and
/// only with that kernel's previous message, so each kernel sees its messages in
/// the order they were decided (order across kernels carries no meaning).
fn coalesce(actions: Vec<Action>) -> Vec<Action> {
    let mut out: Vec<Action> = Vec::with_capacity(actions.len());
    let mut last_for: BTreeMap<ClientId, usize> = BTreeMap::new();
    for a in actions {
        let client = match &a {
            Action::Supply { client, .. }
            | Action::LockRequest { client, .. }
            | Action::DataError { client, .. }
            | Action::Ready { client } => Some(*client),
            _ => None,
        };
        if let Some(&i) = client.and_then(|c| last_for.get(&c)) {
            let merged = match (&mut out[i], &a) {
                (
                    Action::Supply {
                        offset: o1,
                        data: d1,
                        lock_value: l1,
                        ..
                    },
                    Action::Supply {
                        offset: o2,
                        data: d2,
                        lock_value: l2,
                        ..
                    },
                ) if l1 == l2 && *o1 + d1.len() as u64 == *o2 => {
                    d1.extend_from_slice(d2);
                    true
                }
                (
                    Action::LockRequest {
                        offset: o1,
                        length: n1,
                        should_return: r1,
                        should_flush: f1,
                        lock_value: l1,
                        reply: y1,
                        ..
                    },
                    Action::LockRequest {
                        offset: o2,
                        length: n2,
                        should_return: r2,
                        should_flush: f2,
                        lock_value: l2,
                        reply: y2,
                        ..
                    },
                ) if r1 == r2 && f1 == f2 && l1 == l2 && y1 == y2 && *o1 + *n1 == *o2 => {
                    *n1 += n2;
                    true
                }
                _ => false,
            };
            if merged {
                continue;
            }
        }
        if let Some(c) = client {
            last_for.insert(c, out.len());
        }
        out.push(a);
    }
    out
}

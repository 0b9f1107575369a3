//! The pager as a task on the Mach model: memory_object messages in (through
//! [`mach::interfaces::memory_object`] and `notify`), memory_object_control
//! messages out, the engine in between, and the backing store behind it.
//!
//! Kernels are identified by their control port: the send right they give in
//! `memory_object_init` arrives under one name in the pager's space (Mach keeps
//! one name per port), and every later message carrying it lands on that name.

use std::collections::BTreeMap;
use std::time::Duration;

use mach::interfaces::{memory_object as mo, memory_object_control as ctl, notify};
use mach::rpc::{Dispatch, Region, Right};
use mach::types::{copy_strategy, msg_type as mt, notify_id, PortRight};
use mach::{KernReturn, Kernel, Message, Name, TaskId, NAME_NULL};

use crate::engine::{Access, Action, ClientId, Config, Engine, Event, PageIndex};

/// What a file server provides (Hurd's `pager_read_page`, `pager_write_page`,
/// `pager_unlock_page`). Errors are `kern_return_t`/errno values given to kernels.
pub trait BackingStore {
    fn read_page(&mut self, page: PageIndex) -> Result<Vec<u8>, i32>;
    fn write_page(&mut self, page: PageIndex, data: &[u8]) -> Result<(), i32>;
    fn unlock_page(&mut self, page: PageIndex) -> Result<(), i32>;
}

/// Errors of the pager's driver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("a kernel sent a malformed message: {0}")]
    Malformed(#[from] mach::Error),
    #[error("Mach call failed: {0}")]
    Kern(#[from] KernReturn),
    #[error("sending a message failed: {0:?}")]
    Send(mach::MsgReturn),
}

#[derive(Debug)]
struct Client {
    control: Name,
    name_port: Name,
}

/// One memory object served to any number of kernels.
#[derive(Debug)]
pub struct Pager<B: BackingStore> {
    engine: Engine,
    store: B,
    task: TaskId,
    port: Name,
    clients: BTreeMap<ClientId, Client>,
    by_control: BTreeMap<Name, ClientId>,
    next_client: ClientId,
    may_cache: bool,
    copy_strategy: i32,
    timer: Option<Duration>,
    done: Vec<u64>,
}

/// The memory_object routines, turned into engine events.
struct Inbound<'a> {
    by_control: &'a BTreeMap<Name, ClientId>,
    event: Option<Event>,
    init: Option<(Name, Name)>,
    terminated: Option<(Name, Name)>,
}

impl Inbound<'_> {
    fn client(&self, control: Right) -> Option<ClientId> {
        self.by_control.get(&control.name).copied()
    }
}

impl mo::Server for Inbound<'_> {
    fn memory_object_init(&mut self, _: &Message, a: mo::Init) {
        self.init = Some((a.control.name, a.name.name));
    }
    fn memory_object_terminate(&mut self, _: &Message, a: mo::Terminate) {
        self.terminated = Some((a.control.name, a.name.name));
    }
    fn memory_object_copy(&mut self, _: &Message, _: mo::Copy) {}
    fn memory_object_data_request(&mut self, _: &Message, a: mo::DataRequest) {
        self.event = self.client(a.control).map(|client| Event::DataRequest {
            client,
            offset: a.offset,
            length: a.length,
            access: Access::from_prot(a.desired_access),
        });
    }
    fn memory_object_data_unlock(&mut self, _: &Message, a: mo::DataUnlock) {
        self.event = self.client(a.control).map(|client| Event::DataUnlock {
            client,
            offset: a.offset,
            length: a.length,
            access: Access::from_prot(a.desired_access),
        });
    }
    fn memory_object_lock_completed(&mut self, _: &Message, a: mo::LockCompleted) {
        self.event = self.client(a.control).map(|client| Event::LockCompleted {
            client,
            offset: a.offset,
            length: a.length,
        });
    }
    fn memory_object_supply_completed(&mut self, _: &Message, _: mo::SupplyCompleted) {}
    fn memory_object_data_return(&mut self, _: &Message, a: mo::DataReturn) {
        self.event = self.client(a.control).map(|client| Event::DataReturn {
            client,
            offset: a.offset,
            data: a.data.bytes,
            dirty: a.dirty,
            kernel_copy: a.kernel_copy,
        });
    }
    fn memory_object_change_completed(&mut self, _: &Message, _: mo::ChangeCompleted) {}
}

struct DeadNames(Vec<Name>);

impl notify::Server for DeadNames {
    fn mach_notify_port_deleted(&mut self, _: &Message, _: notify::PortDeleted) {}
    fn mach_notify_msg_accepted(&mut self, _: &Message, _: notify::MsgAccepted) {}
    fn mach_notify_port_destroyed(&mut self, _: &Message, _: notify::PortDestroyed) {}
    fn mach_notify_no_senders(&mut self, _: &Message, _: notify::NoSenders) {}
    fn mach_notify_send_once(&mut self, _: &Message, _: notify::SendOnce) {}
    fn mach_notify_dead_name(&mut self, _: &Message, a: notify::DeadName) {
        self.0.push(a.name.0);
    }
}

impl<B: BackingStore> Pager<B> {
    /// Creates the memory object's port in `task`; give kernels send rights to
    /// [`Pager::port`] (Hurd's `pager_create` and `pager_get_port`).
    pub fn create(
        kernel: &mut Kernel,
        task: TaskId,
        store: B,
        config: Config,
    ) -> Result<Self, Error> {
        let port = kernel.port_allocate(task, PortRight::Receive)?;
        Ok(Self {
            engine: Engine::new(config),
            store,
            task,
            port,
            clients: BTreeMap::new(),
            by_control: BTreeMap::new(),
            next_client: 1,
            may_cache: true,
            copy_strategy: copy_strategy::DELAY,
            timer: None,
            done: Vec::new(),
        })
    }

    /// The memory object port (a receive right in the pager's task).
    pub fn port(&self) -> Name {
        self.port
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn store(&self) -> &B {
        &self.store
    }

    /// When the driver should call [`Pager::tick`] next.
    pub fn next_timer(&self) -> Option<Duration> {
        self.timer
    }

    /// Completed `wait` requests of the external API, oldest first.
    pub fn take_completed(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.done)
    }

    /// Handles one message received on the pager port at time `now`.
    pub fn handle_message(
        &mut self,
        kernel: &mut Kernel,
        msg: &Message,
        now: Duration,
    ) -> Result<(), Error> {
        if (notify_id::FIRST..=notify_id::LAST).contains(&msg.id) {
            let mut dead = DeadNames(Vec::new());
            notify::dispatch(&mut dead, msg);
            for name in dead.0 {
                if let Some(client) = self.by_control.get(&name).copied() {
                    self.forget(kernel, client);
                    self.feed(kernel, now, Event::ClientGone { client })?;
                }
            }
            return Ok(());
        }
        let mut inbound = Inbound {
            by_control: &self.by_control,
            event: None,
            init: None,
            terminated: None,
        };
        if let Dispatch::NotMine = mo::dispatch(&mut inbound, msg) {
            return Ok(());
        }
        let (event, init, terminated) = (inbound.event, inbound.init, inbound.terminated);
        if let Some((control, name_port)) = init {
            let client = self.next_client;
            self.next_client += 1;
            self.clients.insert(client, Client { control, name_port });
            self.by_control.insert(control, client);
            // A kernel that dies reaches us as a dead-name notification.
            let previous = kernel.port_request_notification(
                self.task,
                control,
                notify_id::DEAD_NAME,
                0,
                self.port,
                mt::MAKE_SEND_ONCE,
            )?;
            if previous != NAME_NULL {
                kernel.port_deallocate(self.task, previous)?;
            }
            return self.feed(kernel, now, Event::Init { client });
        }
        if let Some((control, name_port)) = terminated {
            if let Some(client) = self.by_control.get(&control).copied() {
                self.forget(kernel, client);
                self.feed(kernel, now, Event::ClientGone { client })?;
            }
            // terminate moves the receive rights of control and name to us.
            let _ = kernel.port_mod_refs(self.task, control, PortRight::Receive as u32, -1);
            let _ = kernel.port_mod_refs(self.task, name_port, PortRight::Receive as u32, -1);
            return Ok(());
        }
        // Each message brings one more reference on the control name; keep one.
        if let Some(control) = msg
            .body
            .first()
            .and_then(|i| i.names_payload())
            .and_then(|n| n.first().copied())
        {
            if self.by_control.contains_key(&control)
                && kernel.port_get_refs(self.task, control, PortRight::Send as u32)? > 1
            {
                kernel.port_deallocate(self.task, control)?;
            }
        }
        match event {
            Some(e) => self.feed(kernel, now, e),
            None => Ok(()),
        }
    }

    fn forget(&mut self, kernel: &mut Kernel, client: ClientId) {
        if let Some(c) = self.clients.remove(&client) {
            self.by_control.remove(&c.control);
            let _ = kernel.port_destroy(self.task, c.control);
            let _ = kernel.port_destroy(self.task, c.name_port);
        }
    }

    /// Fires due timers (hold expiry, leases).
    pub fn tick(&mut self, kernel: &mut Kernel, now: Duration) -> Result<(), Error> {
        if self.timer.is_some_and(|t| t <= now) {
            self.timer = None;
            self.feed(kernel, now, Event::Timer)?;
        }
        Ok(())
    }

    fn feed(&mut self, kernel: &mut Kernel, now: Duration, event: Event) -> Result<(), Error> {
        let actions = self.engine.handle(now, event);
        self.perform(kernel, now, actions)
    }

    fn send(&self, kernel: &mut Kernel, msg: Message) -> Result<(), Error> {
        match kernel.send(self.task, msg, false) {
            Ok(_) => Ok(()),
            // A kernel that is gone: its dead-name notification is on the way.
            Err(e) if e.code == mach::MsgReturn::SendInvalidDest => Ok(()),
            Err(e) => Err(Error::Send(e.code)),
        }
    }

    fn perform(
        &mut self,
        kernel: &mut Kernel,
        now: Duration,
        actions: Vec<Action>,
    ) -> Result<(), Error> {
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            let control = |c: &ClientId| self.clients.get(c).map(|c| c.control);
            match action {
                Action::Ready { client } => {
                    if let Some(dest) = control(&client) {
                        let m = ctl::Ready {
                            may_cache: self.may_cache,
                            copy_strategy: self.copy_strategy,
                        }
                        .to_message(dest, mt::COPY_SEND, NAME_NULL, 0);
                        self.send(kernel, m)?;
                    }
                }
                Action::Supply {
                    client,
                    offset,
                    data,
                    lock_value,
                } => {
                    if let Some(dest) = control(&client) {
                        let m = ctl::DataSupply {
                            offset,
                            data: Region {
                                bytes: data,
                                deallocate: true,
                            },
                            lock_value,
                            precious: false,
                            reply_to: Right::new(NAME_NULL, mt::MAKE_SEND_ONCE),
                        }
                        .to_message(dest, mt::COPY_SEND, NAME_NULL, 0);
                        self.send(kernel, m)?;
                    }
                }
                Action::DataError {
                    client,
                    offset,
                    length,
                    error,
                } => {
                    if let Some(dest) = control(&client) {
                        let m = ctl::DataError {
                            offset,
                            size: length,
                            error_value: error,
                        }
                        .to_message(dest, mt::COPY_SEND, NAME_NULL, 0);
                        self.send(kernel, m)?;
                    }
                }
                Action::LockRequest {
                    client,
                    offset,
                    length,
                    should_return,
                    should_flush,
                    lock_value,
                    reply,
                } => {
                    if let Some(dest) = control(&client) {
                        let reply_to = if reply {
                            Right::new(self.port, mt::MAKE_SEND_ONCE)
                        } else {
                            Right::new(NAME_NULL, mt::MAKE_SEND_ONCE)
                        };
                        let m = ctl::LockRequest {
                            offset,
                            size: length,
                            should_return,
                            should_flush,
                            lock_value,
                            reply_to,
                        }
                        .to_message(dest, mt::COPY_SEND, NAME_NULL, 0);
                        self.send(kernel, m)?;
                    }
                }
                Action::ReadPage { page } => {
                    let result = self.store.read_page(page);
                    queue.extend(self.engine.handle(now, Event::PageRead { page, result }));
                }
                Action::WritePage { page, data } => {
                    let result = self.store.write_page(page, &data);
                    queue.extend(self.engine.handle(now, Event::PageWritten { page, result }));
                }
                Action::UnlockPage { page } => {
                    let result = self.store.unlock_page(page);
                    queue.extend(
                        self.engine
                            .handle(now, Event::PageUnlocked { page, result }),
                    );
                }
                Action::ArmTimer { at } => self.timer = Some(self.timer.map_or(at, |t| t.min(at))),
                Action::DropClient { client } => self.forget(kernel, client),
                Action::LockDone { request } => self.done.push(request),
            }
        }
        Ok(())
    }

    // ----- the external API (Hurd's libpager) ------------------------------------

    /// `pager_sync`: kernels write back what they changed; the pages stay mapped.
    pub fn sync(
        &mut self,
        kernel: &mut Kernel,
        offset: u64,
        length: u64,
        wait: bool,
        now: Duration,
    ) -> Result<u64, Error> {
        self.lock(
            kernel,
            offset,
            length,
            mach::types::should_return::ALL,
            false,
            wait,
            now,
        )
    }

    /// `pager_return`: kernels write back and drop the pages.
    pub fn return_range(
        &mut self,
        kernel: &mut Kernel,
        offset: u64,
        length: u64,
        wait: bool,
        now: Duration,
    ) -> Result<u64, Error> {
        self.lock(
            kernel,
            offset,
            length,
            mach::types::should_return::ALL,
            true,
            wait,
            now,
        )
    }

    /// `pager_flush`: kernels drop the pages without writing them back.
    pub fn flush(
        &mut self,
        kernel: &mut Kernel,
        offset: u64,
        length: u64,
        wait: bool,
        now: Duration,
    ) -> Result<u64, Error> {
        self.lock(
            kernel,
            offset,
            length,
            mach::types::should_return::NONE,
            true,
            wait,
            now,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn lock(
        &mut self,
        kernel: &mut Kernel,
        offset: u64,
        length: u64,
        ret: i32,
        flush: bool,
        wait: bool,
        now: Duration,
    ) -> Result<u64, Error> {
        let (id, actions) = self
            .engine
            .lock_range(now, offset, length, ret, flush, wait);
        self.perform(kernel, now, actions)?;
        Ok(id)
    }

    /// `pager_change_attributes`: tells every kernel (without waiting for answers).
    pub fn change_attributes(
        &mut self,
        kernel: &mut Kernel,
        may_cache: bool,
        copy_strategy: i32,
    ) -> Result<(), Error> {
        self.may_cache = may_cache;
        self.copy_strategy = copy_strategy;
        let controls: Vec<Name> = self.clients.values().map(|c| c.control).collect();
        for dest in controls {
            let m = ctl::ChangeAttributes {
                may_cache,
                copy_strategy,
                reply_to: Right::new(NAME_NULL, mt::MAKE_SEND_ONCE),
            }
            .to_message(dest, mt::COPY_SEND, NAME_NULL, 0);
            self.send(kernel, m)?;
        }
        Ok(())
    }

    /// `pager_shutdown`: stops serving and takes every page back (wait for the
    /// returned request id in [`Pager::take_completed`]).
    pub fn shut_down(&mut self, kernel: &mut Kernel, now: Duration) -> Result<u64, Error> {
        let (id, actions) = self.engine.shut_down(now);
        self.perform(kernel, now, actions)?;
        Ok(id)
    }
}

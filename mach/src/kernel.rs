//! The IPC kernel: ports, port sets, IPC spaces (tasks), rights, message queues and
//! notifications, with GNU Mach's semantics and error codes.
//!
//! Pure state machine: calls never block or read a clock. A send that would block on
//! a full queue returns [`SendStatus::Pending`]; a receive on an empty queue returns
//! `Ok(None)`. The driver waits for a [`Wake`] (drained with [`Kernel::take_wakes`])
//! and retries, or cancels with [`Kernel::cancel_send`] when its timer fires.
//!
//! The structure follows GNU Mach's `ipc/ipc_right.c`, `ipc_kmsg.c`, `ipc_port.c` and
//! `mach_port.c`; function comments name the routine each one mirrors.
//!
//! Reference accounting: every stored `PortId` (an entry's object, a right carried in
//! a queued message, a notification request, an in-transit receive right's
//! destination) holds one reference; a port is forgotten when it is dead and its
//! count reaches zero.

use std::collections::{BTreeSet, VecDeque};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::codec::Abi;
use crate::message::{Item, Message, Payload};
use crate::types::{
    msg_type, msgh_bits, name_valid, notify_id, port_type as ty, KernReturn, MsgReturn, Name,
    PortRight, NAME_DEAD, NAME_NULL, QLIMIT_DEFAULT, QLIMIT_MAX, UREFS_MAX,
};

type Kr<T = ()> = Result<T, KernReturn>;

/// An IPC space (one per task).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(u32);

impl TaskId {
    pub fn index(self) -> u32 {
        self.0
    }
}

/// A kernel port object; never reused within one kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(u64);

/// A port set object; never reused within one kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PsetId(u64);

/// Something a receive can wait on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Waitable {
    Port(PortId),
    Pset(PsetId),
}

/// A blocked send, identified for [`Kernel::cancel_send`] and [`Wake::SendDone`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SendTicket(u64);

/// What the driver must react to after a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// A message was queued where receivers may wait.
    Readable(Waitable),
    /// The port or set died or lost its receive right: waiting receivers get
    /// `MACH_RCV_PORT_DIED`.
    Died(Waitable),
    /// The port was moved into a set: receivers waiting on the port itself get
    /// `MACH_RCV_PORT_CHANGED`.
    Changed(Waitable),
    /// A blocked send has completed (queued, or destroyed because the port died).
    SendDone(SendTicket),
}

/// Result of a send that did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendStatus {
    Sent,
    /// The queue is full; the message waits (its rights already copied in).
    Pending(SendTicket),
}

/// A failed send. For copyin errors the message is returned as given (the task's
/// buffer is untouched in Mach); for `SEND_TIMED_OUT` it holds the rights copied
/// back out to the sender (`ipc_kmsg_copyout_pseudo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendError {
    pub code: MsgReturn,
    pub message: Message,
}

/// A failed receive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecvError {
    pub code: MsgReturn,
    /// For `RCV_TOO_LARGE`: the size of the message that did not fit.
    pub size: Option<u32>,
    /// For `RCV_TOO_LARGE` without `MACH_RCV_LARGE`: the header that was delivered
    /// (destination only) while the message itself was destroyed.
    pub header: Option<Message>,
}

impl RecvError {
    fn code(code: MsgReturn) -> Self {
        Self {
            code,
            size: None,
            header: None,
        }
    }
}

/// Options of a receive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvOptions {
    /// The receive buffer size; `None` is unlimited.
    pub max_size: Option<u32>,
    /// `MACH_RCV_LARGE`: leave a too-large message queued.
    pub large: bool,
}

/// `mach_port_status_t` (from `mach_port_get_receive_status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortStatus {
    pub pset: Name,
    pub seqno: u32,
    pub mscount: u32,
    pub qlimit: u32,
    pub msgcount: u32,
    pub sorights: u32,
    pub srights: bool,
    pub pdrequest: bool,
    pub nsrequest: bool,
}

/// A right held by the kernel on behalf of a message or a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Carried {
    Null,
    Dead,
    Port(PortId),
}

impl Carried {
    fn from_invalid_name(name: Name) -> Self {
        if name == NAME_DEAD {
            Carried::Dead
        } else {
            Carried::Null
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Object {
    Port(PortId),
    Pset(PsetId),
}

#[derive(Clone, Debug)]
struct Entry {
    /// `port_type` bits of the rights under this name.
    kind: u32,
    urefs: u32,
    object: Option<Object>,
    /// Slot of this name's dead-name request in the port's table.
    dnrequest: Option<usize>,
}

impl Entry {
    fn port(&self) -> PortId {
        match self.object {
            Some(Object::Port(p)) => p,
            other => unreachable!("entry holds {other:?}, not a port"),
        }
    }
}

/// A space's entries by name. Names are small (allocated lowest first, see
/// [`Space`]), so a name indexes a vector, as in GNU Mach's entry table; a
/// name a task chose far above them (`port_allocate_name`) is kept in a map
/// beside it. Walked in name order where order shows (callers sort).
#[derive(Debug, Default)]
struct EntryTable {
    /// Entry of name `n` at `n`, for names below [`DIRECT_NAMES`].
    direct: Vec<Option<Entry>>,
    far: FxHashMap<Name, Entry>,
    len: usize,
}

/// Names below this index [`EntryTable::direct`]: at most 64 Ki slots a
/// task, a few bytes each.
const DIRECT_NAMES: Name = 1 << 16;

impl EntryTable {
    fn get(&self, name: &Name) -> Option<&Entry> {
        if *name < DIRECT_NAMES {
            self.direct.get(*name as usize)?.as_ref()
        } else {
            self.far.get(name)
        }
    }

    fn get_mut(&mut self, name: &Name) -> Option<&mut Entry> {
        if *name < DIRECT_NAMES {
            self.direct.get_mut(*name as usize)?.as_mut()
        } else {
            self.far.get_mut(name)
        }
    }

    fn contains_key(&self, name: &Name) -> bool {
        self.get(name).is_some()
    }

    fn insert(&mut self, name: Name, entry: Entry) -> Option<Entry> {
        let previous = if name < DIRECT_NAMES {
            let i = name as usize;
            if self.direct.len() <= i {
                self.direct.resize_with(i + 1, || None);
            }
            self.direct[i].replace(entry)
        } else {
            self.far.insert(name, entry)
        };
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    fn remove(&mut self, name: &Name) -> Option<Entry> {
        let removed = if *name < DIRECT_NAMES {
            self.direct.get_mut(*name as usize)?.take()
        } else {
            self.far.remove(name)
        };
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    fn iter(&self) -> impl Iterator<Item = (Name, &Entry)> {
        let direct = self.direct.iter().enumerate();
        direct
            .filter_map(|(n, e)| Some((n as Name, e.as_ref()?)))
            .chain(self.far.iter().map(|(&n, e)| (n, e)))
    }

    fn names(&self) -> Vec<Name> {
        self.iter().map(|(n, _)| n).collect()
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

impl std::ops::Index<&Name> for EntryTable {
    type Output = Entry;

    fn index(&self, name: &Name) -> &Entry {
        self.get(name).expect("entry exists")
    }
}

/// Names are allocated as GNU Mach's radix-tree space does: recently freed names are
/// reused last-in-first-out (up to 64 kept), otherwise the lowest key never taken.
#[derive(Debug)]
struct Space {
    active: bool,
    entries: EntryTable,
    /// Keys present in the tree (live entries and the free list).
    keys: BTreeSet<Name>,
    free_list: Vec<Name>,
    lowest_unused_hint: Name,
    /// Send-only rights by port, for `ipc_right_reverse`.
    reverse: FxHashMap<PortId, Name>,
}

const FREE_LIST_LIMIT: usize = 64;

impl Space {
    fn new() -> Self {
        Self {
            active: true,
            entries: EntryTable::default(),
            keys: BTreeSet::new(),
            free_list: Vec::new(),
            lowest_unused_hint: 1,
            reverse: FxHashMap::default(),
        }
    }

    /// `ipc_entry_alloc`.
    fn alloc(&mut self) -> Name {
        self.alloc_with(Entry {
            kind: 0,
            urefs: 0,
            object: None,
            dnrequest: None,
        })
    }

    /// A new name for `entry`.
    fn alloc_with(&mut self, entry: Entry) -> Name {
        let name = if let Some(name) = self.free_list.pop() {
            name
        } else {
            let mut k = self.lowest_unused_hint;
            while self.keys.contains(&k) {
                k += 1;
            }
            self.keys.insert(k);
            self.lowest_unused_hint = k + 1;
            k
        };
        self.entries.insert(name, entry);
        name
    }

    /// `ipc_entry_alloc_name`: the existing entry or a fresh empty one.
    fn alloc_name(&mut self, name: Name) -> &mut Entry {
        if !self.entries.contains_key(&name) {
            if let Some(i) = self.free_list.iter().position(|&n| n == name) {
                self.free_list.remove(i);
            } else {
                self.keys.insert(name);
            }
            self.entries.insert(
                name,
                Entry {
                    kind: 0,
                    urefs: 0,
                    object: None,
                    dnrequest: None,
                },
            );
        }
        self.entries.get_mut(&name).expect("just inserted")
    }

    /// `ipc_entry_dealloc`.
    fn dealloc(&mut self, name: Name) {
        let entry = self.entries.remove(&name);
        debug_assert!(entry.is_some_and(|e| e.object.is_none() && e.dnrequest.is_none()));
        if self.free_list.len() < FREE_LIST_LIMIT {
            self.free_list.push(name);
        } else {
            self.keys.remove(&name);
            self.lowest_unused_hint = self.lowest_unused_hint.min(name);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Receiver {
    InSpace {
        task: TaskId,
        name: Name,
    },
    /// Carried in a message; the destination of that message (for circularity).
    InTransit {
        destination: Option<PortId>,
    },
    Dead,
}

#[derive(Debug)]
struct DnRequest {
    name: Name,
    notify: PortId,
}

#[derive(Debug)]
struct Port {
    active: bool,
    receiver: Receiver,
    mscount: u32,
    srights: u32,
    /// Send rights `srights` still counts although no holder has them: GNU Mach's
    /// `ipc_right_delta` turns a send right into a dead name without decrementing
    /// when the receive right under the same name is destroyed, and a
    /// port-destroyed request can keep the port alive afterwards.
    stale_srights: u32,
    sorights: u32,
    nsrequest: Option<PortId>,
    pdrequest: Option<PortId>,
    dnrequests: Vec<Option<DnRequest>>,
    pset: Option<PsetId>,
    seqno: u32,
    qlimit: u32,
    queue: VecDeque<KMsg>,
    blocked: VecDeque<SendTicket>,
    refs: u32,
}

#[derive(Debug)]
struct Pset {
    name: Name,
    members: BTreeSet<PortId>,
    /// The members with messages, by their first message's stamp: a
    /// receive on the set takes the oldest first message (arrival order
    /// across members) without looking at every member. (Sorted; few
    /// members have messages at once.)
    heads: Vec<(u64, PortId)>,
}

impl Pset {
    fn add_head(&mut self, head: (u64, PortId)) {
        let at = self.heads.partition_point(|h| *h < head);
        self.heads.insert(at, head);
    }

    fn remove_head(&mut self, head: (u64, PortId)) {
        if let Ok(at) = self.heads.binary_search(&head) {
            self.heads.remove(at);
        }
    }
}

/// A message inside the kernel: rights are objects, not names.
#[derive(Debug)]
struct KMsg {
    other_bits: u32,
    /// `None` once the destination was released (`msgh_remote_port = NULL`).
    dest: Option<PortId>,
    dest_type: u8,
    reply: Carried,
    reply_type: u8,
    id: i32,
    body: KBody,
    /// Global enqueue order, so a set receives in arrival order across members.
    stamp: u64,
}

#[derive(Debug)]
enum KBody {
    /// Not `COMPLEX`: the kernel does not look inside.
    Raw(Vec<Item>),
    Typed(Vec<KItem>),
}

#[derive(Debug)]
struct KItem {
    /// For port items `rights` holds the objects (the payload keeps the names
    /// the sender gave, for a failed send to return them).
    item: Item,
    rights: Vec<Carried>,
    /// The sender's type name, size and deallocate flag, which copyin changes.
    sent_as: (u8, u16, bool),
}

impl KItem {
    fn new(item: Item, rights: Vec<Carried>) -> Self {
        let sent_as = (item.type_name, item.size, item.deallocate);
        Self {
            item,
            rights,
            sent_as,
        }
    }

    /// The item as the sender wrote it.
    fn into_sent(self) -> Item {
        let (type_name, size, deallocate) = self.sent_as;
        Item {
            type_name,
            size,
            deallocate,
            ..self.item
        }
    }
}

/// A body that failed to copy in: what was copied (to destroy), the rights of
/// the failing item copied before the failure, and the items as sent.
struct BodyFailure {
    code: MsgReturn,
    done: Vec<KItem>,
    partial: (Vec<Carried>, u8),
    failed: Item,
    rest: Vec<Item>,
}

#[derive(Debug)]
struct PendingSend {
    task: TaskId,
    port: PortId,
    kmsg: KMsg,
}

/// One node's IPC kernel.
#[derive(Debug)]
pub struct Kernel {
    abi: Abi,
    spaces: Vec<Space>,
    ports: FxHashMap<PortId, Port>,
    psets: FxHashMap<PsetId, Pset>,
    next_object: u64,
    next_stamp: u64,
    next_ticket: u64,
    pending: FxHashMap<SendTicket, PendingSend>,
    completed: FxHashSet<SendTicket>,
    wakes: Vec<Wake>,
}

impl Default for Kernel {
    fn default() -> Self {
        Self::new(Abi::X86_64)
    }
}

impl Kernel {
    /// A kernel whose tasks see message sizes of `abi`.
    pub fn new(abi: Abi) -> Self {
        Self {
            abi,
            spaces: Vec::new(),
            ports: FxHashMap::default(),
            psets: FxHashMap::default(),
            next_object: 1,
            next_stamp: 0,
            next_ticket: 1,
            pending: FxHashMap::default(),
            completed: FxHashSet::default(),
            wakes: Vec::new(),
        }
    }

    pub fn abi(&self) -> Abi {
        self.abi
    }

    /// Wake-ups produced since the last call, oldest first.
    pub fn take_wakes(&mut self) -> Vec<Wake> {
        std::mem::take(&mut self.wakes)
    }

    /// Moves wake-ups into `out` (reusing its allocation).
    pub fn drain_wakes_into(&mut self, out: &mut Vec<Wake>) {
        out.append(&mut self.wakes);
    }

    // ----- tasks -------------------------------------------------------------

    /// `ipc_space_create`.
    pub fn create_task(&mut self) -> TaskId {
        self.spaces.push(Space::new());
        TaskId(self.spaces.len() as u32 - 1)
    }

    /// `ipc_space_destroy`: every right the task holds is cleaned up, in name order.
    pub fn destroy_task(&mut self, task: TaskId) -> Kr {
        let space = self.space_mut(task)?;
        space.active = false;
        let mut names: Vec<Name> = space.entries.names();
        names.sort_unstable();
        for name in names {
            self.right_clean(task, name);
        }
        let space = &mut self.spaces[task.0 as usize];
        space.entries.clear();
        space.reverse.clear();
        Ok(())
    }

    fn space(&self, task: TaskId) -> Kr<&Space> {
        match self.spaces.get(task.0 as usize) {
            Some(s) if s.active => Ok(s),
            _ => Err(KernReturn::InvalidTask),
        }
    }

    fn space_mut(&mut self, task: TaskId) -> Kr<&mut Space> {
        match self.spaces.get_mut(task.0 as usize) {
            Some(s) if s.active => Ok(s),
            _ => Err(KernReturn::InvalidTask),
        }
    }

    fn entry(&mut self, task: TaskId, name: Name) -> &mut Entry {
        self.spaces[task.0 as usize]
            .entries
            .get_mut(&name)
            .expect("entry looked up before")
    }

    /// `ipc_right_lookup_write`.
    fn lookup(&self, task: TaskId, name: Name) -> Kr<&Entry> {
        self.space(task)?
            .entries
            .get(&name)
            .ok_or(KernReturn::InvalidName)
    }

    fn port(&mut self, id: PortId) -> &mut Port {
        self.ports.get_mut(&id).expect("referenced port exists")
    }

    fn port_ref(&mut self, id: PortId) {
        self.port(id).refs += 1;
    }

    fn port_release(&mut self, id: PortId) {
        let port = self.port(id);
        port.refs -= 1;
        if port.refs == 0 {
            debug_assert!(
                !port.active,
                "an active port is referenced by its receive right"
            );
            self.ports.remove(&id);
        }
    }

    fn new_port(&mut self, receiver: Receiver) -> PortId {
        let id = PortId(self.next_object);
        self.next_object += 1;
        self.ports.insert(
            id,
            Port {
                active: true,
                receiver,
                mscount: 0,
                srights: 0,
                stale_srights: 0,
                sorights: 0,
                nsrequest: None,
                pdrequest: None,
                dnrequests: Vec::new(),
                pset: None,
                seqno: 0,
                qlimit: QLIMIT_DEFAULT,
                queue: VecDeque::new(),
                blocked: VecDeque::new(),
                refs: 1,
            },
        );
        id
    }

    fn entry_dealloc_if_none(&mut self, task: TaskId, name: Name) {
        let space = &mut self.spaces[task.0 as usize];
        if space.entries.get(&name).is_some_and(|e| e.kind == 0) {
            space.dealloc(name);
        }
    }

    // ----- right bookkeeping ---------------------------------------------------

    /// `ipc_right_check`: a send or send-once right whose port died becomes a dead
    /// name (one more reference if a dead-name request was registered). True if
    /// the entry was converted.
    fn right_check(&mut self, task: TaskId, name: Name) -> bool {
        let entry = self.entry(task, name);
        if entry.kind & ty::SEND_RIGHTS == 0 || entry.kind & ty::RECEIVE != 0 {
            return false;
        }
        let port = entry.port();
        if self.ports[&port].active {
            return false;
        }
        let entry = self.entry(task, name);
        let was_send = entry.kind & ty::SEND != 0;
        entry.kind = ty::DEAD_NAME;
        if entry.dnrequest.take().is_some() {
            entry.urefs += 1;
        }
        entry.object = None;
        if was_send {
            self.spaces[task.0 as usize].reverse.remove(&port);
        }
        self.port_release(port);
        true
    }

    /// `ipc_right_dncancel`: removes the name's dead-name request, returning the
    /// send-once right it held.
    fn dncancel(&mut self, task: TaskId, name: Name) -> Option<PortId> {
        let entry = self.entry(task, name);
        let slot = entry.dnrequest.take()?;
        let port = entry.port();
        let request = self.port(port).dnrequests[slot]
            .take()
            .expect("registered request");
        Some(request.notify)
    }

    /// `ipc_port_release_send`.
    fn release_send(&mut self, port: PortId) {
        let p = self.port(port);
        if p.active {
            p.srights -= 1;
            if p.srights == 0 {
                if let Some(ns) = p.nsrequest.take() {
                    let mscount = p.mscount;
                    self.notify_no_senders(ns, mscount);
                }
            }
        }
        self.port_release(port);
    }

    /// `ipc_port_release_sonce`: drops a send-once right without a notification.
    fn release_sonce(&mut self, port: PortId) {
        let p = self.port(port);
        if p.active {
            p.sorights -= 1;
        }
        self.port_release(port);
    }

    /// Drops the send right one entry stood for (`srights` counts entries).
    fn drop_send_count(&mut self, port: PortId) {
        let p = self.port(port);
        p.srights -= 1;
        if p.srights == 0 {
            if let Some(ns) = p.nsrequest.take() {
                let mscount = p.mscount;
                self.notify_no_senders(ns, mscount);
            }
        }
    }

    /// `ipc_object_destroy`: destroys one right of the given received form.
    fn destroy_right(&mut self, right: Carried, form: u8) {
        let Carried::Port(port) = right else { return };
        match form {
            msg_type::PORT_SEND => self.release_send(port),
            msg_type::PORT_SEND_ONCE => self.notify_send_once(port),
            msg_type::PORT_RECEIVE => {
                self.leave_transit(port);
                self.clear_receiver(port);
                self.destroy_port_object(port);
                self.port_release(port);
            }
            other => unreachable!("destroying a right of form {other}"),
        }
    }

    /// Releases the destination an in-transit receive right pointed at.
    fn leave_transit(&mut self, port: PortId) {
        if let Receiver::InTransit {
            destination: Some(d),
        } = self.port(port).receiver
        {
            self.port(port).receiver = Receiver::InTransit { destination: None };
            self.port_release(d);
        }
    }

    /// `ipc_port_clear_receiver`.
    fn clear_receiver(&mut self, port: PortId) {
        if let Some(pset) = self.port(port).pset {
            self.pset_remove(pset, port);
        } else {
            self.wakes.push(Wake::Died(Waitable::Port(port)));
        }
        let p = self.port(port);
        p.mscount = 0;
        p.seqno = 0;
    }

    /// `ipc_port_destroy`: the receive right (already detached) is destroyed, or
    /// handed to the port-destroyed request. Does not consume the caller's handle.
    fn destroy_port_object(&mut self, port: PortId) {
        if let Some(pd) = self.port(port).pdrequest.take() {
            self.port(port).receiver = Receiver::InTransit { destination: None };
            if !self.check_circularity(port, pd) {
                self.port_ref(port);
                self.notify_port_destroyed(pd, port);
                return;
            }
            self.release_sonce(pd);
        }
        let p = self.port(port);
        p.active = false;
        p.receiver = Receiver::Dead;
        let blocked: Vec<SendTicket> = p.blocked.drain(..).collect();
        let nsrequest = p.nsrequest.take();
        let queued: Vec<KMsg> = p.queue.drain(..).collect();
        let dnrequests: Vec<DnRequest> = p.dnrequests.drain(..).flatten().collect();
        // Blocked senders retry, find the port dead and have their message destroyed.
        for ticket in blocked {
            let pending = self
                .pending
                .remove(&ticket)
                .expect("blocked ticket is pending");
            self.discard_to_dead_port(pending.kmsg);
            self.completed.insert(ticket);
            self.wakes.push(Wake::SendDone(ticket));
        }
        if let Some(ns) = nsrequest {
            self.notify_send_once(ns);
        }
        for kmsg in queued {
            self.discard_to_dead_port(kmsg);
        }
        for request in dnrequests {
            self.notify_dead_name(request.notify, request.name);
        }
        self.wakes.push(Wake::Died(Waitable::Port(port)));
    }

    /// A message for a dead port: its destination is dropped silently (so a
    /// send-once destination does not notify itself) and the rest destroyed.
    fn discard_to_dead_port(&mut self, mut kmsg: KMsg) {
        if let Some(dest) = kmsg.dest.take() {
            self.port_release(dest);
        }
        self.destroy_kmsg(kmsg);
    }

    /// `ipc_kmsg_destroy`/`ipc_kmsg_clean`: destroys every right in the message.
    fn destroy_kmsg(&mut self, kmsg: KMsg) {
        if let Some(dest) = kmsg.dest {
            self.destroy_right(Carried::Port(dest), kmsg.dest_type);
        }
        self.destroy_right(kmsg.reply, kmsg.reply_type);
        if let KBody::Typed(items) = kmsg.body {
            for item in items {
                for right in item.rights {
                    self.destroy_right(right, item.item.type_name);
                }
            }
        }
    }

    /// `ipc_port_check_circularity`: would putting `port`'s receive right in a
    /// message to `dest` make a loop? If not, records the link.
    fn check_circularity(&mut self, port: PortId, dest: PortId) -> bool {
        if port == dest {
            return true;
        }
        let mut base = dest;
        while let Some(Port {
            active: true,
            receiver: Receiver::InTransit {
                destination: Some(next),
            },
            ..
        }) = self.ports.get(&base)
        {
            if *next == port {
                return true;
            }
            base = *next;
        }
        self.leave_transit(port);
        self.port_ref(dest);
        self.port(port).receiver = Receiver::InTransit {
            destination: Some(dest),
        };
        false
    }

    // ----- port sets -----------------------------------------------------------

    fn pset_add(&mut self, pset: PsetId, port: PortId) {
        self.psets
            .get_mut(&pset)
            .expect("live set")
            .members
            .insert(port);
        // Messages already queued join the set's queue behind those there now.
        let mut stamps = Vec::new();
        for _ in 0..self.ports[&port].queue.len() {
            stamps.push(self.next_stamp);
            self.next_stamp += 1;
        }
        let p = self.port(port);
        p.pset = Some(pset);
        for (kmsg, stamp) in p.queue.iter_mut().zip(stamps) {
            kmsg.stamp = stamp;
        }
        if let Some(head) = p.queue.front().map(|k| k.stamp) {
            let set = self.psets.get_mut(&pset).expect("live set");
            set.add_head((head, port));
            self.wakes.push(Wake::Readable(Waitable::Pset(pset)));
        }
        self.wakes.push(Wake::Changed(Waitable::Port(port)));
    }

    fn pset_remove(&mut self, pset: PsetId, port: PortId) {
        let head = self.ports[&port].queue.front().map(|k| k.stamp);
        let set = self.psets.get_mut(&pset).expect("live set");
        set.members.remove(&port);
        if let Some(head) = head {
            set.remove_head((head, port));
        }
        self.port(port).pset = None;
        if !self.ports[&port].queue.is_empty() {
            self.wakes.push(Wake::Readable(Waitable::Port(port)));
        }
    }

    /// `ipc_pset_destroy`.
    fn pset_destroy(&mut self, pset: PsetId) {
        let set = self.psets.remove(&pset).expect("live set");
        for port in set.members {
            let p = self.port(port);
            p.pset = None;
            if !p.queue.is_empty() {
                self.wakes.push(Wake::Readable(Waitable::Port(port)));
            }
        }
        self.wakes.push(Wake::Died(Waitable::Pset(pset)));
    }

    // ----- notifications -------------------------------------------------------

    fn notification(&self, soright: PortId, id: i32, body: Vec<KItem>, complex: bool) -> KMsg {
        KMsg {
            other_bits: if complex { msgh_bits::COMPLEX } else { 0 },
            dest: Some(soright),
            dest_type: msg_type::PORT_SEND_ONCE,
            reply: Carried::Null,
            reply_type: 0,
            id,
            body: KBody::Typed(body),
            stamp: 0,
        }
    }

    fn name_item(name: Name) -> KItem {
        KItem::new(Item::port_name(name), Vec::new())
    }

    /// `ipc_notify_port_deleted`.
    fn notify_port_deleted(&mut self, soright: PortId, name: Name) {
        let kmsg = self.notification(
            soright,
            notify_id::PORT_DELETED,
            vec![Self::name_item(name)],
            false,
        );
        self.deliver_always(kmsg);
    }

    /// `ipc_notify_dead_name`.
    fn notify_dead_name(&mut self, soright: PortId, name: Name) {
        let kmsg = self.notification(
            soright,
            notify_id::DEAD_NAME,
            vec![Self::name_item(name)],
            false,
        );
        self.deliver_always(kmsg);
    }

    /// `ipc_notify_no_senders`.
    fn notify_no_senders(&mut self, soright: PortId, mscount: u32) {
        let item = KItem::new(Item::int32(mscount as i32), Vec::new());
        let kmsg = self.notification(soright, notify_id::NO_SENDERS, vec![item], false);
        self.deliver_always(kmsg);
    }

    /// `ipc_notify_send_once`: the send-once right to `port` is used for the
    /// notification itself.
    fn notify_send_once(&mut self, port: PortId) {
        let kmsg = self.notification(port, notify_id::SEND_ONCE, Vec::new(), false);
        self.deliver_always(kmsg);
    }

    /// `ipc_notify_port_destroyed`: carries the receive right of `port` (a handle
    /// the caller already took).
    fn notify_port_destroyed(&mut self, soright: PortId, port: PortId) {
        let mut item = Item::port(msg_type::PORT_RECEIVE, NAME_NULL);
        item.size = self.abi.port_inline_bits();
        item.payload = Payload::Names(Vec::new());
        let body = vec![KItem::new(item, vec![Carried::Port(port)])];
        let kmsg = self.notification(soright, notify_id::PORT_DESTROYED, body, true);
        self.deliver_always(kmsg);
    }

    // ----- queues --------------------------------------------------------------

    fn deliver_always(&mut self, kmsg: KMsg) {
        let delivered = self.deliver(kmsg, true);
        debug_assert!(delivered.is_none());
    }

    /// `ipc_mqueue_send`. Returns the message back if the queue is full and the
    /// send may not exceed the limit.
    fn deliver(&mut self, mut kmsg: KMsg, always: bool) -> Option<KMsg> {
        let dest = kmsg.dest.expect("deliverable message has a destination");
        let port = self.port(dest);
        if !port.active {
            self.discard_to_dead_port(kmsg);
            return None;
        }
        if !always
            && kmsg.dest_type != msg_type::PORT_SEND_ONCE
            && port.queue.len() as u32 >= port.qlimit
        {
            return Some(kmsg);
        }
        let stamp = self.next_stamp;
        kmsg.stamp = stamp;
        self.next_stamp += 1;
        let port = self.port(dest);
        let first = port.queue.is_empty();
        port.queue.push_back(kmsg);
        let waitable = match port.pset {
            Some(pset) => {
                if first {
                    let set = self.psets.get_mut(&pset).expect("live set");
                    set.add_head((stamp, dest));
                }
                Waitable::Pset(pset)
            }
            None => Waitable::Port(dest),
        };
        self.wakes.push(Wake::Readable(waitable));
        None
    }

    /// After a dequeue or a larger queue limit: lets blocked senders in, in order.
    fn admit_blocked(&mut self, port: PortId) {
        loop {
            let p = self.port(port);
            if p.blocked.is_empty() || p.queue.len() as u32 >= p.qlimit {
                return;
            }
            let ticket = p.blocked.pop_front().expect("non-empty");
            let pending = self
                .pending
                .remove(&ticket)
                .expect("blocked ticket is pending");
            let rest = self.deliver(pending.kmsg, true);
            debug_assert!(rest.is_none());
            self.completed.insert(ticket);
            self.wakes.push(Wake::SendDone(ticket));
        }
    }

    // ----- copyin ------------------------------------------------------------------

    /// `ipc_right_copyin_check`.
    fn right_copyin_check(&self, task: TaskId, name: Name, form: u8) -> bool {
        let entry = &self.spaces[task.0 as usize].entries[&name];
        let kind = entry.kind;
        match form {
            msg_type::MAKE_SEND | msg_type::MAKE_SEND_ONCE | msg_type::MOVE_RECEIVE => {
                kind & ty::RECEIVE != 0
            }
            msg_type::COPY_SEND | msg_type::MOVE_SEND | msg_type::MOVE_SEND_ONCE => {
                if kind & ty::DEAD_NAME != 0 {
                    return true;
                }
                if kind & ty::SEND_RIGHTS == 0 {
                    return false;
                }
                if !self.ports[&entry.port()].active {
                    return true;
                }
                if form == msg_type::MOVE_SEND_ONCE {
                    kind & ty::SEND_ONCE != 0
                } else {
                    kind & ty::SEND != 0
                }
            }
            _ => false,
        }
    }

    /// `ipc_right_copyin`: takes a right out of an entry (which may be left empty;
    /// the caller deallocates it). Returns the right and the send-once right of a
    /// cancelled dead-name request.
    fn right_copyin(
        &mut self,
        task: TaskId,
        name: Name,
        form: u8,
        deadok: bool,
    ) -> Kr<(Carried, Option<PortId>)> {
        if let Some(done) = self.right_copyin_live(task, name, form) {
            return Ok(done);
        }
        let kind = self.entry(task, name).kind;
        match form {
            msg_type::MAKE_SEND | msg_type::MAKE_SEND_ONCE => {
                if kind & ty::RECEIVE == 0 {
                    return Err(KernReturn::InvalidRight);
                }
                let port = self.entry(task, name).port();
                let p = self.port(port);
                if form == msg_type::MAKE_SEND {
                    p.mscount = p.mscount.wrapping_add(1);
                    p.srights += 1;
                } else {
                    p.sorights += 1;
                }
                p.refs += 1;
                Ok((Carried::Port(port), None))
            }
            msg_type::MOVE_RECEIVE => {
                if kind & ty::RECEIVE == 0 {
                    return Err(KernReturn::InvalidRight);
                }
                let port = self.entry(task, name).port();
                let mut soright = None;
                if kind & ty::SEND != 0 {
                    self.spaces[task.0 as usize].reverse.insert(port, name);
                    self.port_ref(port);
                } else {
                    soright = self.dncancel(task, name);
                    self.entry(task, name).object = None;
                }
                self.entry(task, name).kind &= !ty::RECEIVE;
                self.clear_receiver(port);
                self.port(port).receiver = Receiver::InTransit { destination: None };
                Ok((Carried::Port(port), soright))
            }
            msg_type::COPY_SEND => {
                if kind & ty::DEAD_NAME != 0 {
                    return if deadok {
                        Ok((Carried::Dead, None))
                    } else {
                        Err(KernReturn::InvalidRight)
                    };
                }
                if kind & ty::SEND_RIGHTS == 0 {
                    return Err(KernReturn::InvalidRight);
                }
                if self.right_check(task, name) {
                    return if deadok {
                        Ok((Carried::Dead, None))
                    } else {
                        Err(KernReturn::InvalidRight)
                    };
                }
                if kind & ty::SEND == 0 {
                    return Err(KernReturn::InvalidRight);
                }
                let port = self.entry(task, name).port();
                let p = self.port(port);
                p.srights += 1;
                p.refs += 1;
                Ok((Carried::Port(port), None))
            }
            msg_type::MOVE_SEND | msg_type::MOVE_SEND_ONCE => {
                if kind & ty::DEAD_NAME == 0 {
                    if kind & ty::SEND_RIGHTS == 0 {
                        return Err(KernReturn::InvalidRight);
                    }
                    if !self.right_check(task, name) {
                        return self.copyin_live_move(task, name, form, kind);
                    }
                }
                if !deadok {
                    return Err(KernReturn::InvalidRight);
                }
                let entry = self.entry(task, name);
                if entry.urefs == 1 {
                    entry.kind &= !ty::DEAD_NAME;
                    entry.urefs = 0;
                } else {
                    entry.urefs -= 1;
                }
                Ok((Carried::Dead, None))
            }
            _ => Err(KernReturn::InvalidValue),
        }
    }

    /// [`Kernel::right_copyin`]'s commonest cases, with one look at the entry
    /// and one at the port: a send-once right made from a receive right, a
    /// live send right copied, a live send-once right with no dead-name
    /// request moved. `None` for anything else (the general path decides).
    fn right_copyin_live(
        &mut self,
        task: TaskId,
        name: Name,
        form: u8,
    ) -> Option<(Carried, Option<PortId>)> {
        let entry = self
            .spaces
            .get_mut(task.0 as usize)?
            .entries
            .get_mut(&name)?;
        let Some(Object::Port(port)) = entry.object else {
            return None;
        };
        let p = self.ports.get_mut(&port)?;
        match form {
            msg_type::MAKE_SEND_ONCE if entry.kind & ty::RECEIVE != 0 => {
                p.sorights += 1;
                p.refs += 1;
            }
            // (`ipc_right_check` leaves a right alone while its port lives.)
            msg_type::COPY_SEND
                if entry.kind & ty::SEND != 0 && (entry.kind & ty::RECEIVE != 0 || p.active) =>
            {
                p.srights += 1;
                p.refs += 1;
            }
            msg_type::MOVE_SEND_ONCE
                if entry.kind & ty::SEND_ONCE != 0 && p.active && entry.dnrequest.is_none() =>
            {
                entry.object = None;
                entry.kind &= !ty::SEND_ONCE;
                entry.urefs = 0;
            }
            _ => return None,
        }
        Some((Carried::Port(port), None))
    }

    fn copyin_live_move(
        &mut self,
        task: TaskId,
        name: Name,
        form: u8,
        kind: u32,
    ) -> Kr<(Carried, Option<PortId>)> {
        let port = self.entry(task, name).port();
        if form == msg_type::MOVE_SEND_ONCE {
            if kind & ty::SEND_ONCE == 0 {
                return Err(KernReturn::InvalidRight);
            }
            let soright = self.dncancel(task, name);
            let entry = self.entry(task, name);
            entry.object = None;
            entry.kind &= !ty::SEND_ONCE;
            entry.urefs = 0;
            return Ok((Carried::Port(port), soright));
        }
        if kind & ty::SEND == 0 {
            return Err(KernReturn::InvalidRight);
        }
        let mut soright = None;
        if self.entry(task, name).urefs == 1 {
            if kind & ty::RECEIVE != 0 {
                self.port_ref(port);
            } else {
                soright = self.dncancel(task, name);
                self.spaces[task.0 as usize].reverse.remove(&port);
                self.entry(task, name).object = None;
            }
            let entry = self.entry(task, name);
            entry.kind &= !ty::SEND;
            entry.urefs = 0;
        } else {
            let p = self.port(port);
            p.srights += 1;
            p.refs += 1;
            self.entry(task, name).urefs -= 1;
        }
        Ok((Carried::Port(port), soright))
    }

    /// `ipc_right_copyin_two`: two send rights for MOVE_SEND/MOVE_SEND on one name.
    fn right_copyin_two(&mut self, task: TaskId, name: Name) -> Kr<(PortId, Option<PortId>)> {
        let entry = self.entry(task, name);
        let (kind, urefs) = (entry.kind, entry.urefs);
        if kind & ty::SEND == 0 || urefs < 2 {
            return Err(KernReturn::InvalidRight);
        }
        if self.right_check(task, name) {
            return Err(KernReturn::InvalidRight);
        }
        let port = self.entry(task, name).port();
        let mut soright = None;
        if urefs == 2 {
            if kind & ty::RECEIVE != 0 {
                self.port(port).srights += 1;
                self.port(port).refs += 2;
            } else {
                soright = self.dncancel(task, name);
                self.spaces[task.0 as usize].reverse.remove(&port);
                self.port(port).srights += 1;
                self.port(port).refs += 1;
                self.entry(task, name).object = None;
            }
            let entry = self.entry(task, name);
            entry.kind &= !ty::SEND;
            entry.urefs = 0;
        } else {
            self.port(port).srights += 2;
            self.port(port).refs += 2;
            self.entry(task, name).urefs -= 2;
        }
        Ok((port, soright))
    }

    /// `ipc_port_copy_send`: another send right to what `right` names.
    fn copy_send(&mut self, right: Carried) -> Carried {
        if let Carried::Port(port) = right {
            let p = self.port(port);
            if p.active {
                p.srights += 1;
                p.refs += 1;
                return Carried::Port(port);
            }
            return Carried::Dead;
        }
        right
    }

    /// `ipc_object_copyin`: one right named in a message body or an RPC argument.
    fn object_copyin(&mut self, task: TaskId, name: Name, form: u8) -> Kr<Carried> {
        self.lookup(task, name)?;
        let result = self.right_copyin(task, name, form, true);
        self.entry_dealloc_if_none(task, name);
        let (right, soright) = result?;
        if let Some(so) = soright {
            self.notify_port_deleted(so, name);
        }
        Ok(right)
    }

    /// `ipc_kmsg_copyin_header`.
    fn copyin_header(
        &mut self,
        task: TaskId,
        bits: u32,
        dest_name: Name,
        reply_name: Name,
    ) -> Result<(PortId, u8, Carried, u8), MsgReturn> {
        let dest_type = msgh_bits::remote(bits);
        let reply_type = msgh_bits::local(bits);
        if !msg_type::is_port_any_send(dest_type) {
            return Err(MsgReturn::SendInvalidHeader);
        }
        if if reply_type == 0 {
            reply_name != NAME_NULL
        } else {
            !msg_type::is_port_any_send(reply_type)
        } {
            return Err(MsgReturn::SendInvalidHeader);
        }
        if self.space(task).is_err() {
            return Err(MsgReturn::SendInvalidDest);
        }
        let invalid_dest = |_| MsgReturn::SendInvalidDest;
        let (dest, dest_soright, reply, reply_soright);
        if dest_name == reply_name {
            let name = dest_name;
            self.lookup(task, name).map_err(invalid_dest)?;
            if !self.right_copyin_check(task, name, reply_type) {
                return Err(MsgReturn::SendInvalidReply);
            }
            let either = |t| dest_type == t || reply_type == t;
            if either(msg_type::MOVE_SEND_ONCE) {
                return Err(MsgReturn::SendInvalidDest);
            } else if either(msg_type::MAKE_SEND) || either(msg_type::MAKE_SEND_ONCE) {
                let (d, ds) = self
                    .right_copyin(task, name, dest_type, false)
                    .map_err(invalid_dest)?;
                let (r, rs) = self
                    .right_copyin(task, name, reply_type, true)
                    .expect("receive right checked before");
                (dest, dest_soright, reply, reply_soright) = (d, ds, r, rs);
            } else if dest_type == msg_type::COPY_SEND && reply_type == msg_type::COPY_SEND {
                let (d, ds) = self
                    .right_copyin(task, name, dest_type, false)
                    .map_err(invalid_dest)?;
                reply = self.copy_send(d);
                (dest, dest_soright, reply_soright) = (d, ds, None);
            } else if dest_type == msg_type::MOVE_SEND && reply_type == msg_type::MOVE_SEND {
                let (port, so) = self.right_copyin_two(task, name).map_err(invalid_dest)?;
                self.entry_dealloc_if_none(task, name);
                (dest, dest_soright, reply, reply_soright) =
                    (Carried::Port(port), so, Carried::Port(port), None);
            } else {
                // One MOVE_SEND and one COPY_SEND: move once, duplicate.
                let (d, so) = self
                    .right_copyin(task, name, msg_type::MOVE_SEND, false)
                    .map_err(invalid_dest)?;
                self.entry_dealloc_if_none(task, name);
                reply = self.copy_send(d);
                dest = d;
                if dest_type == msg_type::MOVE_SEND {
                    (dest_soright, reply_soright) = (so, None);
                } else {
                    (dest_soright, reply_soright) = (None, so);
                }
            }
            self.entry_dealloc_if_none(task, name);
        } else if !name_valid(reply_name) {
            self.lookup(task, dest_name).map_err(invalid_dest)?;
            let result = self.right_copyin(task, dest_name, dest_type, false);
            let (d, ds) = result.map_err(invalid_dest)?;
            self.entry_dealloc_if_none(task, dest_name);
            (dest, dest_soright) = (d, ds);
            (reply, reply_soright) = (Carried::from_invalid_name(reply_name), None);
        } else {
            self.lookup(task, dest_name).map_err(invalid_dest)?;
            self.lookup(task, reply_name)
                .map_err(|_| MsgReturn::SendInvalidReply)?;
            if !self.right_copyin_check(task, reply_name, reply_type) {
                return Err(MsgReturn::SendInvalidReply);
            }
            let (d, ds) = self
                .right_copyin(task, dest_name, dest_type, false)
                .map_err(invalid_dest)?;
            let (r, rs) = self
                .right_copyin(task, reply_name, reply_type, true)
                .expect("reply right checked before");
            self.entry_dealloc_if_none(task, reply_name);
            self.entry_dealloc_if_none(task, dest_name);
            (dest, dest_soright, reply, reply_soright) = (d, ds, r, rs);
        }
        if let Some(so) = dest_soright {
            self.notify_port_deleted(so, dest_name);
        }
        if let Some(so) = reply_soright {
            self.notify_port_deleted(so, reply_name);
        }
        let Carried::Port(dest) = dest else {
            unreachable!("destination copied in without deadok is a live port")
        };
        Ok((
            dest,
            msg_type::copyin_type(dest_type),
            reply,
            msg_type::copyin_type(reply_type),
        ))
    }

    /// `ipc_kmsg_copyin_body`. Items are moved, not copied; on failure the
    /// caller gets them back with what must be destroyed (`ipc_kmsg_clean_partial`).
    fn copyin_body(
        &mut self,
        task: TaskId,
        items: Vec<Item>,
    ) -> Result<Vec<KItem>, Box<BodyFailure>> {
        let mut done = Vec::with_capacity(items.len());
        let mut rest = items.into_iter();
        while let Some(item) = rest.next() {
            match self.copyin_item(task, item) {
                Ok(k) => done.push(k),
                Err((code, failed, partial)) => {
                    let form = msg_type::copyin_type(failed.type_name);
                    return Err(Box::new(BodyFailure {
                        code,
                        done,
                        partial: (partial, form),
                        failed,
                        rest: rest.collect(),
                    }));
                }
            }
        }
        Ok(done)
    }

    /// One item. On failure: the code, the item as given, and the rights of it
    /// already copied in.
    #[allow(clippy::type_complexity)]
    fn copyin_item(
        &mut self,
        task: TaskId,
        item: Item,
    ) -> Result<KItem, (MsgReturn, Item, Vec<Carried>)> {
        let is_port = msg_type::is_port_any(item.type_name);
        if item.deallocate && item.inline {
            return Err((MsgReturn::SendInvalidType, item, Vec::new()));
        }
        if !is_port {
            let code = match &item.payload {
                Payload::Bytes(b) if b.len() as u64 == item.data_len() => None,
                Payload::Bytes(_) => Some(MsgReturn::SendMsgTooSmall),
                Payload::Address(_) => Some(MsgReturn::SendInvalidMemory),
                Payload::Names(_) => Some(MsgReturn::SendInvalidType),
            };
            if let Some(code) = code {
                return Err((code, item, Vec::new()));
            }
            let mut k = KItem::new(item, Vec::new());
            // A moved region is gone from the sender; a copied one is a copy.
            k.item.deallocate = false;
            return Ok(k);
        }
        let names = match &item.payload {
            Payload::Names(n) if n.len() as u64 == u64::from(item.number) => n.clone(),
            Payload::Names(_) => return Err((MsgReturn::SendMsgTooSmall, item, Vec::new())),
            _ => return Err((MsgReturn::SendInvalidType, item, Vec::new())),
        };
        let mut rights = Vec::with_capacity(names.len());
        for name in names {
            if !name_valid(name) {
                rights.push(Carried::from_invalid_name(name));
                continue;
            }
            match self.object_copyin(task, name, item.type_name) {
                Ok(right) => rights.push(right),
                Err(_) => return Err((MsgReturn::SendInvalidRight, item, rights)),
            }
        }
        let mut k = KItem::new(item, rights);
        k.item.type_name = msg_type::copyin_type(k.sent_as.0);
        k.item.size = if k.item.inline {
            self.abi.port_inline_bits()
        } else {
            32
        };
        k.item.deallocate = false;
        Ok(k)
    }

    // ----- copyout -------------------------------------------------------------------

    /// `ipc_kmsg_copyout_object` (with `overflow` allowed): puts one right into the
    /// space and returns its name; `MACH_PORT_DEAD` for a dead port.
    fn copyout_object(&mut self, task: TaskId, right: Carried, form: u8) -> Name {
        let port = match right {
            Carried::Null => return NAME_NULL,
            Carried::Dead => return NAME_DEAD,
            Carried::Port(port) => port,
        };
        if !self.spaces[task.0 as usize].active {
            self.destroy_right(right, form);
            return NAME_NULL;
        }
        if !self.ports[&port].active {
            self.destroy_right(right, form);
            return NAME_DEAD;
        }
        if form == msg_type::PORT_SEND_ONCE {
            // A send-once right always takes a name of its own, and the
            // message's handle on the port becomes the entry's.
            return self.spaces[task.0 as usize].alloc_with(Entry {
                kind: ty::SEND_ONCE,
                urefs: 1,
                object: Some(Object::Port(port)),
                dnrequest: None,
            });
        }
        let existing = self.reverse(task, port);
        let name = match existing {
            Some(name) => name,
            None => {
                let space = &mut self.spaces[task.0 as usize];
                let name = space.alloc();
                space.entries.get_mut(&name).expect("allocated").object = Some(Object::Port(port));
                // The message's handle now belongs to the entry.
                self.port_ref(port);
                name
            }
        };
        self.right_copyout(task, name, form, port);
        name
    }

    /// `ipc_right_reverse`: the name under which the space holds send or receive
    /// rights for `port`.
    fn reverse(&self, task: TaskId, port: PortId) -> Option<Name> {
        if let Receiver::InSpace { task: t, name } = self.ports[&port].receiver {
            if t == task {
                return Some(name);
            }
        }
        self.spaces[task.0 as usize].reverse.get(&port).copied()
    }

    /// `ipc_right_copyout` with overflow allowed. Consumes the right's handle.
    fn right_copyout(&mut self, task: TaskId, name: Name, form: u8, port: PortId) {
        let entry = self.entry(task, name);
        match form {
            msg_type::PORT_SEND_ONCE => {
                entry.kind |= ty::SEND_ONCE;
                entry.urefs = 1;
            }
            msg_type::PORT_SEND => {
                if entry.kind & ty::SEND != 0 {
                    if entry.urefs + 1 < UREFS_MAX {
                        entry.urefs += 1;
                    }
                    self.port(port).srights -= 1;
                } else if entry.kind & ty::RECEIVE != 0 {
                    entry.kind |= ty::SEND;
                    entry.urefs = 1;
                } else {
                    entry.kind |= ty::SEND;
                    entry.urefs = 1;
                    self.spaces[task.0 as usize].reverse.insert(port, name);
                }
            }
            msg_type::PORT_RECEIVE => {
                entry.kind |= ty::RECEIVE;
                self.leave_transit(port);
                self.port(port).receiver = Receiver::InSpace { task, name };
                self.spaces[task.0 as usize].reverse.remove(&port);
            }
            other => unreachable!("copyout of form {other}"),
        }
        // The handle carried by the message merges with the entry's.
        self.port_release(port);
    }

    /// `ipc_object_copyout_dest`: the destination right is consumed by delivery.
    fn copyout_dest(&mut self, task: TaskId, port: PortId, form: u8) -> Name {
        if !self.ports[&port].active {
            self.port_release(port);
            return NAME_DEAD;
        }
        let name = match self.ports[&port].receiver {
            Receiver::InSpace { task: t, name } if t == task => name,
            _ => NAME_NULL,
        };
        match form {
            msg_type::PORT_SEND => self.drop_send_count(port),
            msg_type::PORT_SEND_ONCE => self.port(port).sorights -= 1,
            other => unreachable!("destination of form {other}"),
        }
        self.port_release(port);
        name
    }

    fn copyout_body(&mut self, task: TaskId, body: KBody) -> (Vec<Item>, bool) {
        match body {
            KBody::Raw(items) => (items, false),
            KBody::Typed(items) => {
                let mut complex = false;
                let out = items
                    .into_iter()
                    .map(|k| {
                        let mut item = k.item;
                        if msg_type::is_port_any(item.type_name) {
                            complex = true;
                            let names = k
                                .rights
                                .into_iter()
                                .map(|r| self.copyout_object(task, r, item.type_name))
                                .collect();
                            item.payload = Payload::Names(names);
                        }
                        if item.inline {
                            item.deallocate = false;
                        } else {
                            complex = true;
                            item.deallocate = true;
                        }
                        item
                    })
                    .collect();
                (out, complex)
            }
        }
    }

    // ----- mach_msg ------------------------------------------------------------------

    /// `mach_msg` with `MACH_SEND_MSG`. `may_block` is false for a zero timeout
    /// (`MACH_SEND_TIMEOUT` with 0): a full queue then fails with `SEND_TIMED_OUT`.
    pub fn send(
        &mut self,
        task: TaskId,
        msg: Message,
        may_block: bool,
    ) -> Result<SendStatus, SendError> {
        let Message {
            bits: sent_bits,
            remote_port,
            local_port,
            seqno,
            id,
            body,
        } = msg;
        let bits = sent_bits & !msgh_bits::CIRCULAR;
        let rebuild = |body| Message {
            bits: sent_bits,
            remote_port,
            local_port,
            seqno,
            id,
            body,
        };
        let (dest, dest_type, reply, reply_type) =
            match self.copyin_header(task, bits, remote_port, local_port) {
                Ok(v) => v,
                Err(code) => {
                    return Err(SendError {
                        code,
                        message: rebuild(body),
                    })
                }
            };
        let mut kmsg = KMsg {
            other_bits: msgh_bits::other(bits) & !msgh_bits::COMPLEX,
            dest: Some(dest),
            dest_type,
            reply,
            reply_type,
            id,
            body: KBody::Raw(Vec::new()),
            stamp: 0,
        };
        if bits & msgh_bits::COMPLEX == 0 {
            kmsg.body = KBody::Raw(body);
        } else {
            match self.copyin_body(task, body) {
                Ok(items) => kmsg.body = KBody::Typed(items),
                Err(failure) => {
                    let failure = *failure;
                    // ipc_kmsg_clean_partial: the header's rights, then the body's
                    // in order; the task gets its message back as it sent it.
                    self.destroy_kmsg(kmsg);
                    let mut sent = Vec::with_capacity(failure.done.len() + 1 + failure.rest.len());
                    for mut k in failure.done {
                        for right in std::mem::take(&mut k.rights) {
                            self.destroy_right(right, k.item.type_name);
                        }
                        sent.push(k.into_sent());
                    }
                    let (partial, form) = failure.partial;
                    for right in partial {
                        self.destroy_right(right, form);
                    }
                    sent.push(failure.failed);
                    sent.extend(failure.rest);
                    return Err(SendError {
                        code: failure.code,
                        message: rebuild(sent),
                    });
                }
            }
            kmsg.other_bits |= msgh_bits::COMPLEX;
            if self.moves_receive_circularly(&kmsg) {
                self.destroy_kmsg(kmsg);
                return Ok(SendStatus::Sent);
            }
        }
        match self.deliver(kmsg, false) {
            None => Ok(SendStatus::Sent),
            Some(kmsg) if may_block => {
                let ticket = SendTicket(self.next_ticket);
                self.next_ticket += 1;
                self.port(dest).blocked.push_back(ticket);
                self.pending.insert(
                    ticket,
                    PendingSend {
                        task,
                        port: dest,
                        kmsg,
                    },
                );
                Ok(SendStatus::Pending(ticket))
            }
            Some(kmsg) => {
                let message = self.copyout_pseudo(task, kmsg);
                Err(SendError {
                    code: MsgReturn::SendTimedOut,
                    message,
                })
            }
        }
    }

    /// Links each moved receive right to the destination, unless that makes a loop
    /// (`MACH_MSGH_BITS_CIRCULAR`: such a message is destroyed on send).
    fn moves_receive_circularly(&mut self, kmsg: &KMsg) -> bool {
        let (KBody::Typed(items), Some(dest)) = (&kmsg.body, kmsg.dest) else {
            return false;
        };
        let mut circular = false;
        for item in items
            .iter()
            .filter(|i| i.item.type_name == msg_type::PORT_RECEIVE)
        {
            for right in &item.rights {
                if let Carried::Port(port) = *right {
                    circular |= self.check_circularity(port, dest);
                }
            }
        }
        circular
    }

    /// Whether a blocked send has completed; forgets it once reported.
    pub fn send_completed(&mut self, ticket: SendTicket) -> bool {
        self.completed.remove(&ticket)
    }

    /// True while the send of `ticket` waits for room in its queue.
    pub fn send_pending(&self, ticket: SendTicket) -> bool {
        self.pending.contains_key(&ticket)
    }

    /// Gives up a blocked send (its timeout fired): `SEND_TIMED_OUT`, with the
    /// rights copied back out to the sender. `Ok` if it had completed meanwhile.
    pub fn cancel_send(&mut self, ticket: SendTicket) -> Result<(), SendError> {
        if self.completed.remove(&ticket) {
            return Ok(());
        }
        let Some(pending) = self.pending.remove(&ticket) else {
            return Ok(());
        };
        self.port(pending.port).blocked.retain(|&t| t != ticket);
        let message = self.copyout_pseudo(pending.task, pending.kmsg);
        Err(SendError {
            code: MsgReturn::SendTimedOut,
            message,
        })
    }

    /// `ipc_kmsg_copyout_pseudo`: every right goes back to the sender's space.
    fn copyout_pseudo(&mut self, task: TaskId, kmsg: KMsg) -> Message {
        let dest = kmsg.dest.map(Carried::Port).unwrap_or(Carried::Null);
        let dest_name = self.copyout_object(task, dest, kmsg.dest_type);
        let reply_name = self.copyout_object(task, kmsg.reply, kmsg.reply_type);
        let (body, complex) = self.copyout_body(task, kmsg.body);
        Message {
            bits: kmsg.other_bits
                | msgh_bits::make(kmsg.dest_type, kmsg.reply_type)
                | if complex { msgh_bits::COMPLEX } else { 0 },
            remote_port: dest_name,
            local_port: reply_name,
            seqno: 0,
            id: kmsg.id,
            body,
        }
    }

    /// `mach_msg` with `MACH_RCV_MSG` on `name` (a receive right or a port set).
    /// `Ok(None)`: nothing queued; wait for [`Wake::Readable`] and retry.
    pub fn receive(
        &mut self,
        task: TaskId,
        name: Name,
        options: RecvOptions,
    ) -> Result<Option<Message>, RecvError> {
        let source = self.receive_source(task, name)?;
        let Some(port) = self.head_port(source) else {
            return Ok(None);
        };
        let size = self.kmsg_size(self.ports[&port].queue.front().expect("head exists"));
        if options.max_size.is_some_and(|max| size > max) {
            if options.large {
                return Err(RecvError {
                    code: MsgReturn::RcvTooLarge,
                    size: Some(size),
                    header: None,
                });
            }
            let (kmsg, seqno) = self.dequeue(port);
            let header = self.copyout_dest_only(task, kmsg, seqno);
            return Err(RecvError {
                code: MsgReturn::RcvTooLarge,
                size: Some(size),
                header: Some(header),
            });
        }
        let (kmsg, seqno) = self.dequeue(port);
        Ok(Some(self.copyout(task, kmsg, seqno)))
    }

    /// Whether a receive on `name` (a receive right or port set) would find a
    /// message now, without taking it.
    pub fn has_message(&self, task: TaskId, name: Name) -> Result<bool, RecvError> {
        let source = self.receive_source(task, name)?;
        Ok(self.head_port(source).is_some())
    }

    /// The object a receive on `name` waits on (`ipc_mqueue_copyin`).
    pub fn receive_source(&self, task: TaskId, name: Name) -> Result<Waitable, RecvError> {
        let entry = self
            .lookup(task, name)
            .map_err(|_| RecvError::code(MsgReturn::RcvInvalidName))?;
        if entry.kind & ty::RECEIVE != 0 {
            let port = entry.port();
            if self.ports[&port].pset.is_some() {
                return Err(RecvError::code(MsgReturn::RcvInSet));
            }
            Ok(Waitable::Port(port))
        } else if let Some(Object::Pset(pset)) = entry.object {
            Ok(Waitable::Pset(pset))
        } else {
            Err(RecvError::code(MsgReturn::RcvInvalidName))
        }
    }

    fn head_port(&self, source: Waitable) -> Option<PortId> {
        match source {
            Waitable::Port(port) => (!self.ports[&port].queue.is_empty()).then_some(port),
            Waitable::Pset(pset) => self.psets[&pset].heads.first().map(|&(_, m)| m),
        }
    }

    fn dequeue(&mut self, port: PortId) -> (KMsg, u32) {
        let p = self.port(port);
        let kmsg = p.queue.pop_front().expect("head exists");
        let seqno = p.seqno;
        p.seqno = p.seqno.wrapping_add(1);
        let next = p.queue.front().map(|k| k.stamp);
        if let Some(pset) = p.pset {
            let set = self.psets.get_mut(&pset).expect("live set");
            set.remove_head((kmsg.stamp, port));
            if let Some(next) = next {
                set.add_head((next, port));
            }
        }
        self.admit_blocked(port);
        (kmsg, seqno)
    }

    /// `ipc_kmsg_copyout`: header (reply first, then destination) and body.
    fn copyout(&mut self, task: TaskId, kmsg: KMsg, seqno: u32) -> Message {
        let reply_name = self.copyout_object(task, kmsg.reply, kmsg.reply_type);
        let dest = kmsg.dest.expect("queued message has a destination");
        let dest_name = self.copyout_dest(task, dest, kmsg.dest_type);
        let (body, complex) = self.copyout_body(task, kmsg.body);
        let other = kmsg.other_bits & !msgh_bits::COMPLEX;
        Message {
            bits: other
                | msgh_bits::make(kmsg.reply_type, kmsg.dest_type)
                | if complex { msgh_bits::COMPLEX } else { 0 },
            remote_port: reply_name,
            local_port: dest_name,
            seqno,
            id: kmsg.id,
            body,
        }
    }

    /// `ipc_kmsg_copyout_dest`: only the destination is delivered; the reply right
    /// and the body's rights are destroyed.
    fn copyout_dest_only(&mut self, task: TaskId, kmsg: KMsg, seqno: u32) -> Message {
        let dest = kmsg.dest.expect("queued message has a destination");
        let dest_name = self.copyout_dest(task, dest, kmsg.dest_type);
        let reply_name = match kmsg.reply {
            Carried::Port(_) => {
                self.destroy_right(kmsg.reply, kmsg.reply_type);
                NAME_NULL
            }
            Carried::Dead => NAME_DEAD,
            Carried::Null => NAME_NULL,
        };
        if let KBody::Typed(items) = kmsg.body {
            for item in items {
                for right in item.rights {
                    self.destroy_right(right, item.item.type_name);
                }
            }
        }
        Message {
            bits: kmsg.other_bits | msgh_bits::make(kmsg.reply_type, kmsg.dest_type),
            remote_port: reply_name,
            local_port: dest_name,
            seqno,
            id: kmsg.id,
            body: Vec::new(),
        }
    }

    fn kmsg_size(&self, kmsg: &KMsg) -> u32 {
        let abi = self.abi;
        let body: u64 = match &kmsg.body {
            KBody::Raw(items) => items.iter().map(|i| abi.item_len(i)).sum(),
            KBody::Typed(items) => items
                .iter()
                .map(|k| {
                    let mut shape = k.item.clone();
                    if !k.rights.is_empty() {
                        shape.number = k.rights.len() as u32;
                    }
                    abi.item_len(&shape)
                })
                .sum(),
        };
        (abi.header_len() as u64 + body).min(u64::from(u32::MAX)) as u32
    }

    // ----- mach_port.defs ------------------------------------------------------------

    /// `mach_port_allocate`.
    pub fn port_allocate(&mut self, task: TaskId, right: PortRight) -> Kr<Name> {
        self.space(task)?;
        let name = self.spaces[task.0 as usize].alloc();
        self.fill_new_entry(task, name, right)?;
        Ok(name)
    }

    /// `mach_port_allocate_name`.
    pub fn port_allocate_name(&mut self, task: TaskId, right: PortRight, name: Name) -> Kr {
        self.space(task)?;
        if !name_valid(name) {
            return Err(KernReturn::InvalidValue);
        }
        if !matches!(
            right,
            PortRight::Receive | PortRight::PortSet | PortRight::DeadName
        ) {
            return Err(KernReturn::InvalidValue);
        }
        if self.spaces[task.0 as usize]
            .entries
            .get(&name)
            .is_some_and(|e| e.kind != 0)
        {
            return Err(KernReturn::NameExists);
        }
        self.spaces[task.0 as usize].alloc_name(name);
        self.fill_new_entry(task, name, right)
    }

    fn fill_new_entry(&mut self, task: TaskId, name: Name, right: PortRight) -> Kr {
        let object = match right {
            PortRight::Receive => Some(Object::Port(
                self.new_port(Receiver::InSpace { task, name }),
            )),
            PortRight::PortSet => {
                let id = PsetId(self.next_object);
                self.next_object += 1;
                self.psets.insert(
                    id,
                    Pset {
                        name,
                        members: BTreeSet::new(),
                        heads: Vec::new(),
                    },
                );
                Some(Object::Pset(id))
            }
            PortRight::DeadName => None,
            PortRight::Send | PortRight::SendOnce => {
                self.spaces[task.0 as usize].dealloc(name);
                return Err(KernReturn::InvalidValue);
            }
        };
        let entry = self.entry(task, name);
        entry.kind = right.type_bit();
        entry.urefs = u32::from(right == PortRight::DeadName);
        entry.object = object;
        Ok(())
    }

    /// `mach_port_deallocate` (`ipc_right_dealloc`).
    pub fn port_deallocate(&mut self, task: TaskId, name: Name) -> Kr {
        let kind = self.lookup(task, name)?.kind;
        match kind {
            ty::DEAD_NAME => self.dealloc_dead_name(task, name),
            ty::SEND_ONCE => {
                if self.right_check(task, name) {
                    return self.dealloc_dead_name(task, name);
                }
                let port = self.entry(task, name).port();
                let dn = self.dncancel(task, name);
                self.entry(task, name).object = None;
                self.entry(task, name).kind = 0;
                self.spaces[task.0 as usize].dealloc(name);
                self.notify_send_once(port);
                if let Some(dn) = dn {
                    self.notify_port_deleted(dn, name);
                }
                Ok(())
            }
            ty::SEND => {
                if self.right_check(task, name) {
                    return self.dealloc_dead_name(task, name);
                }
                if self.entry(task, name).urefs == 1 {
                    self.remove_last_send(task, name);
                } else {
                    self.entry(task, name).urefs -= 1;
                }
                Ok(())
            }
            ty::SEND_RECEIVE => {
                let entry = self.entry(task, name);
                if entry.urefs == 1 {
                    entry.kind = ty::RECEIVE;
                    entry.urefs = 0;
                    let port = entry.port();
                    self.drop_send_count(port);
                } else {
                    entry.urefs -= 1;
                }
                Ok(())
            }
            _ => Err(KernReturn::InvalidRight),
        }
    }

    fn dealloc_dead_name(&mut self, task: TaskId, name: Name) -> Kr {
        let entry = self.entry(task, name);
        if entry.urefs == 1 {
            entry.kind = 0;
            self.spaces[task.0 as usize].dealloc(name);
        } else {
            entry.urefs -= 1;
        }
        Ok(())
    }

    /// The last user reference of a send-only entry goes away.
    fn remove_last_send(&mut self, task: TaskId, name: Name) {
        let port = self.entry(task, name).port();
        let p = self.port(port);
        p.srights -= 1;
        let ns = if p.srights == 0 {
            p.nsrequest.take().map(|ns| (ns, p.mscount))
        } else {
            None
        };
        let dn = self.dncancel(task, name);
        self.spaces[task.0 as usize].reverse.remove(&port);
        let entry = self.entry(task, name);
        entry.object = None;
        entry.kind = 0;
        entry.urefs = 0;
        self.spaces[task.0 as usize].dealloc(name);
        self.port_release(port);
        if let Some((ns, mscount)) = ns {
            self.notify_no_senders(ns, mscount);
        }
        if let Some(dn) = dn {
            self.notify_port_deleted(dn, name);
        }
    }

    /// `mach_port_destroy` (`ipc_right_destroy`).
    pub fn port_destroy(&mut self, task: TaskId, name: Name) -> Kr {
        self.lookup(task, name)?;
        self.right_destroy_entry(task, name);
        Ok(())
    }

    /// `ipc_right_destroy` and `ipc_right_clean`: every right under the name goes.
    fn right_destroy_entry(&mut self, task: TaskId, name: Name) {
        let entry = self.entry(task, name).clone();
        match entry.object {
            None => {}
            Some(Object::Pset(pset)) => self.pset_destroy(pset),
            Some(Object::Port(port)) => {
                if entry.kind & ty::SEND != 0 && entry.kind & ty::RECEIVE == 0 {
                    self.spaces[task.0 as usize].reverse.remove(&port);
                }
                if !self.ports[&port].active {
                    let e = self.entry(task, name);
                    e.dnrequest = None;
                    e.object = None;
                    self.port_release(port);
                } else {
                    let dn = self.dncancel(task, name);
                    self.entry(task, name).object = None;
                    let mut ns = None;
                    if entry.kind & ty::SEND != 0 {
                        let p = self.port(port);
                        p.srights -= 1;
                        if p.srights == 0 {
                            ns = p.nsrequest.take().map(|ns| (ns, p.mscount));
                        }
                    }
                    if entry.kind & ty::RECEIVE != 0 {
                        self.clear_receiver(port);
                        self.destroy_port_object(port);
                        self.port_release(port);
                    } else if entry.kind & ty::SEND_ONCE != 0 {
                        self.notify_send_once(port);
                    } else {
                        self.port_release(port);
                    }
                    if let Some((ns, mscount)) = ns {
                        self.notify_no_senders(ns, mscount);
                    }
                    if let Some(dn) = dn {
                        self.notify_port_deleted(dn, name);
                    }
                }
            }
        }
        let space = &mut self.spaces[task.0 as usize];
        if space.active {
            let e = space.entries.get_mut(&name).expect("entry");
            e.kind = 0;
            e.object = None;
            e.dnrequest = None;
            space.dealloc(name);
        }
    }

    fn right_clean(&mut self, task: TaskId, name: Name) {
        self.right_destroy_entry(task, name);
    }

    /// `mach_port_mod_refs` (`ipc_right_delta`).
    pub fn port_mod_refs(&mut self, task: TaskId, name: Name, right: u32, delta: i32) -> Kr {
        self.space(task)?;
        let right = PortRight::from_u32(right).ok_or(KernReturn::InvalidValue)?;
        let kind = self.lookup(task, name)?.kind;
        match right {
            PortRight::PortSet => {
                if kind & ty::PORT_SET == 0 {
                    return Err(KernReturn::InvalidRight);
                }
                match delta {
                    0 => Ok(()),
                    -1 => {
                        self.right_destroy_entry(task, name);
                        Ok(())
                    }
                    _ => Err(KernReturn::InvalidValue),
                }
            }
            PortRight::Receive => {
                if kind & ty::RECEIVE == 0 {
                    return Err(KernReturn::InvalidRight);
                }
                match delta {
                    0 => return Ok(()),
                    -1 => {}
                    _ => return Err(KernReturn::InvalidValue),
                }
                let port = self.entry(task, name).port();
                let mut dn = None;
                if kind & ty::SEND != 0 {
                    // The port is destroyed "first": the send right becomes a dead
                    // name without a no-senders notification (and without leaving
                    // `srights`, which matters if a port-destroyed request saves it).
                    self.port(port).stale_srights += 1;
                    let entry = self.entry(task, name);
                    entry.kind = ty::DEAD_NAME;
                    if entry.dnrequest.take().is_some() {
                        entry.urefs += 1;
                    }
                    entry.object = None;
                    // The dead-name request slot dies with the port's table.
                } else {
                    dn = self.dncancel(task, name);
                    let entry = self.entry(task, name);
                    entry.object = None;
                    entry.kind = 0;
                    self.spaces[task.0 as usize].dealloc(name);
                }
                self.clear_receiver(port);
                self.destroy_port_object(port);
                self.port_release(port);
                if let Some(dn) = dn {
                    self.notify_port_deleted(dn, name);
                }
                Ok(())
            }
            PortRight::SendOnce => {
                if kind & ty::SEND_ONCE == 0 {
                    return Err(KernReturn::InvalidRight);
                }
                if !(-1..=0).contains(&delta) {
                    return Err(KernReturn::InvalidValue);
                }
                if self.right_check(task, name) {
                    return Err(KernReturn::InvalidRight);
                }
                if delta == 0 {
                    return Ok(());
                }
                self.port_deallocate(task, name)
            }
            PortRight::DeadName => {
                if kind & ty::SEND_RIGHTS != 0 {
                    if !self.right_check(task, name) {
                        return Err(KernReturn::InvalidRight);
                    }
                } else if kind & ty::DEAD_NAME == 0 {
                    return Err(KernReturn::InvalidRight);
                }
                let urefs = self.entry(task, name).urefs;
                let new = Self::urefs_delta(urefs, delta, UREFS_MAX)?;
                if new == 0 {
                    self.entry(task, name).kind = 0;
                    self.spaces[task.0 as usize].dealloc(name);
                } else {
                    self.entry(task, name).urefs = new;
                }
                Ok(())
            }
            PortRight::Send => {
                if kind & ty::SEND == 0 {
                    return Err(KernReturn::InvalidRight);
                }
                let urefs = self.entry(task, name).urefs;
                // The maximum for send rights is UREFS_MAX - 1.
                let new = Self::urefs_delta(urefs, delta, UREFS_MAX - 1)?;
                if self.right_check(task, name) {
                    return Err(KernReturn::InvalidRight);
                }
                if new == 0 {
                    if kind & ty::RECEIVE != 0 {
                        let entry = self.entry(task, name);
                        entry.kind = ty::RECEIVE;
                        entry.urefs = 0;
                        let port = entry.port();
                        self.drop_send_count(port);
                    } else {
                        self.remove_last_send(task, name);
                    }
                } else {
                    self.entry(task, name).urefs = new;
                }
                Ok(())
            }
        }
    }

    /// `MACH_PORT_UREFS_UNDERFLOW` / `MACH_PORT_UREFS_OVERFLOW`.
    fn urefs_delta(urefs: u32, delta: i32, max: u32) -> Kr<u32> {
        let new = i64::from(urefs) + i64::from(delta);
        if new < 0 {
            return Err(KernReturn::InvalidValue);
        }
        if delta > 0 && new > i64::from(max) {
            return Err(KernReturn::UrefsOverflow);
        }
        Ok(new as u32)
    }

    /// `mach_port_get_refs`.
    pub fn port_get_refs(&mut self, task: TaskId, name: Name, right: u32) -> Kr<u32> {
        self.space(task)?;
        let right = PortRight::from_u32(right).ok_or(KernReturn::InvalidValue)?;
        let (kind, urefs) = self.right_info(task, name)?;
        if kind & right.type_bit() == 0 {
            return Ok(0);
        }
        Ok(match right {
            PortRight::SendOnce | PortRight::PortSet | PortRight::Receive => 1,
            PortRight::DeadName | PortRight::Send => urefs,
        })
    }

    /// `mach_port_type` (`ipc_right_info`).
    pub fn port_type(&mut self, task: TaskId, name: Name) -> Kr<u32> {
        let (kind, _) = self.right_info(task, name)?;
        Ok(kind)
    }

    fn right_info(&mut self, task: TaskId, name: Name) -> Kr<(u32, u32)> {
        let entry = self.lookup(task, name)?;
        // (Only a dead port's send rights turn into a dead name: a live
        // right needs no check.)
        let live = entry.kind & ty::SEND_RIGHTS == 0
            || entry.kind & ty::RECEIVE != 0
            || self.ports[&entry.port()].active;
        let entry = if live {
            entry
        } else {
            self.right_check(task, name);
            &*self.entry(task, name)
        };
        let mut kind = entry.kind;
        if entry.dnrequest.is_some() {
            kind |= ty::DNREQUEST;
        }
        Ok((kind, entry.urefs))
    }

    /// Every name in a task's space with its type bits and user references.
    pub fn names(&mut self, task: TaskId) -> Kr<Vec<(Name, u32, u32)>> {
        let mut names: Vec<Name> = self.space(task)?.entries.names();
        names.sort_unstable();
        names
            .into_iter()
            .map(|n| {
                self.right_info(task, n)
                    .map(|(kind, urefs)| (n, kind, urefs))
            })
            .collect()
    }

    /// `mach_port_insert_right`: the right named `from_name` in `from` (with the
    /// RPC argument's `disposition`) is put into `task` under `name`. If the call
    /// fails after the right was carried, the right is destroyed, as the kernel's
    /// MIG server destroys an unconsumed request.
    pub fn port_insert_right(
        &mut self,
        task: TaskId,
        name: Name,
        from: TaskId,
        from_name: Name,
        disposition: u8,
    ) -> Kr {
        let right = self.carry_argument(from, from_name, disposition)?;
        let form = msg_type::copyin_type(disposition);
        let result = self.insert_carried(task, name, right, form);
        if result.is_err() {
            self.destroy_right(right, form);
        }
        result
    }

    fn insert_carried(&mut self, task: TaskId, name: Name, right: Carried, form: u8) -> Kr {
        self.space(task)?;
        if !name_valid(name) || !msg_type::is_port_any_right(form) {
            return Err(KernReturn::InvalidValue);
        }
        let Carried::Port(port) = right else {
            return Err(KernReturn::InvalidCapability);
        };
        // ipc_object_copyout_name
        let existed = self.spaces[task.0 as usize].entries.contains_key(&name);
        let reverse = if form != msg_type::PORT_SEND_ONCE && self.ports[&port].active {
            self.reverse(task, port)
        } else {
            None
        };
        if let Some(oname) = reverse {
            if oname != name {
                return Err(KernReturn::RightExists);
            }
        } else {
            if existed && self.spaces[task.0 as usize].entries[&name].kind != 0 {
                return Err(KernReturn::NameExists);
            }
            if !self.ports[&port].active {
                return Err(KernReturn::InvalidCapability);
            }
            self.spaces[task.0 as usize].alloc_name(name).object = Some(Object::Port(port));
            self.port_ref(port);
        }
        if form == msg_type::PORT_SEND
            && self.entry(task, name).urefs + 1 >= UREFS_MAX
            && self.entry(task, name).kind & ty::SEND != 0
        {
            return Err(KernReturn::UrefsOverflow);
        }
        self.right_copyout(task, name, form, port);
        Ok(())
    }

    /// Copies in a port argument of a kernel RPC; failures are those a task sees
    /// from the message send (`MACH_SEND_INVALID_RIGHT`), reported as the
    /// underlying `KERN_INVALID_NAME`/`KERN_INVALID_RIGHT`.
    fn carry_argument(&mut self, from: TaskId, name: Name, disposition: u8) -> Kr<Carried> {
        if !msg_type::is_port_any(disposition) {
            return Err(KernReturn::InvalidValue);
        }
        if !name_valid(name) {
            return Ok(Carried::from_invalid_name(name));
        }
        self.object_copyin(from, name, disposition)
    }

    /// `mach_port_extract_right`: takes a right out of `task` and gives it to
    /// `to` (the caller), returning its name there and its received form.
    pub fn port_extract_right(
        &mut self,
        task: TaskId,
        name: Name,
        disposition: u8,
        to: TaskId,
    ) -> Kr<(Name, u8)> {
        self.space(task)?;
        if !msg_type::is_port_any(disposition) {
            return Err(KernReturn::InvalidValue);
        }
        let right = self.object_copyin(task, name, disposition)?;
        let form = msg_type::copyin_type(disposition);
        Ok((self.copyout_object(to, right, form), form))
    }

    /// `mach_port_move_member`.
    pub fn port_move_member(&mut self, task: TaskId, member: Name, after: Name) -> Kr {
        let entry = self.lookup(task, member)?;
        if entry.kind & ty::RECEIVE == 0 {
            return Err(KernReturn::InvalidRight);
        }
        let port = entry.port();
        let nset = if after == NAME_NULL {
            None
        } else {
            let entry = self.lookup(task, after)?;
            match entry.object {
                Some(Object::Pset(p)) if entry.kind & ty::PORT_SET != 0 => Some(p),
                _ => return Err(KernReturn::InvalidRight),
            }
        };
        let oset = self.ports[&port].pset;
        if oset == nset {
            return if nset.is_none() {
                Err(KernReturn::NotInSet)
            } else {
                Ok(())
            };
        }
        if let Some(o) = oset {
            self.pset_remove(o, port);
        }
        if let Some(n) = nset {
            self.pset_add(n, port);
        }
        Ok(())
    }

    /// `mach_port_set_qlimit`.
    pub fn port_set_qlimit(&mut self, task: TaskId, name: Name, qlimit: u32) -> Kr {
        self.space(task)?;
        if qlimit > QLIMIT_MAX {
            return Err(KernReturn::InvalidValue);
        }
        let port = self.translate_receive(task, name)?;
        self.port(port).qlimit = qlimit;
        self.admit_blocked(port);
        Ok(())
    }

    /// `mach_port_set_mscount`.
    pub fn port_set_mscount(&mut self, task: TaskId, name: Name, mscount: u32) -> Kr {
        let port = self.translate_receive(task, name)?;
        self.port(port).mscount = mscount;
        Ok(())
    }

    /// `mach_port_set_seqno`.
    pub fn port_set_seqno(&mut self, task: TaskId, name: Name, seqno: u32) -> Kr {
        let port = self.translate_receive(task, name)?;
        self.port(port).seqno = seqno;
        Ok(())
    }

    /// `mach_port_get_receive_status`.
    pub fn port_get_receive_status(&mut self, task: TaskId, name: Name) -> Kr<PortStatus> {
        let port = self.translate_receive(task, name)?;
        let p = &self.ports[&port];
        let pset = p.pset.map(|s| self.psets[&s].name).unwrap_or(NAME_NULL);
        Ok(PortStatus {
            pset,
            seqno: p.seqno,
            mscount: p.mscount,
            qlimit: p.qlimit,
            msgcount: p.queue.len() as u32,
            sorights: p.sorights,
            srights: p.srights > 0,
            pdrequest: p.pdrequest.is_some(),
            nsrequest: p.nsrequest.is_some(),
        })
    }

    /// `ipc_port_translate_receive`.
    fn translate_receive(&self, task: TaskId, name: Name) -> Kr<PortId> {
        let entry = self.lookup(task, name)?;
        if entry.kind & ty::RECEIVE == 0 {
            return Err(KernReturn::InvalidRight);
        }
        Ok(entry.port())
    }

    /// `mach_port_request_notification`. `notify` is a name in `task` with its
    /// disposition (`MAKE_SEND_ONCE` or `MOVE_SEND_ONCE`; `NULL` cancels). Returns
    /// the previous request's send-once right, copied out into `task`.
    pub fn port_request_notification(
        &mut self,
        task: TaskId,
        name: Name,
        id: i32,
        sync: u32,
        notify: Name,
        notify_disposition: u8,
    ) -> Kr<Name> {
        self.space(task)?;
        let notify_right = if notify == NAME_NULL {
            Carried::Null
        } else {
            if !matches!(
                notify_disposition,
                msg_type::MAKE_SEND_ONCE | msg_type::MOVE_SEND_ONCE
            ) {
                return Err(KernReturn::InvalidValue);
            }
            self.carry_argument(task, notify, notify_disposition)?
        };
        let result = self.request_notification(task, name, id, sync, notify_right);
        match result {
            Ok(previous) => Ok(match previous {
                Some(p) => self.copyout_object(task, Carried::Port(p), msg_type::PORT_SEND_ONCE),
                None => NAME_NULL,
            }),
            Err(kr) => {
                self.destroy_right(notify_right, msg_type::PORT_SEND_ONCE);
                Err(kr)
            }
        }
    }

    fn request_notification(
        &mut self,
        task: TaskId,
        name: Name,
        id: i32,
        sync: u32,
        notify: Carried,
    ) -> Kr<Option<PortId>> {
        if notify == Carried::Dead {
            return Err(KernReturn::InvalidCapability);
        }
        let notify = match notify {
            Carried::Port(p) => Some(p),
            _ => None,
        };
        match id {
            notify_id::PORT_DESTROYED => {
                if sync != 0 {
                    return Err(KernReturn::InvalidValue);
                }
                let port = self.translate_receive(task, name)?;
                Ok(std::mem::replace(&mut self.port(port).pdrequest, notify))
            }
            notify_id::NO_SENDERS => {
                let port = self.translate_receive(task, name)?;
                // ipc_port_nsrequest
                let p = self.port(port);
                let previous = p.nsrequest.take();
                match notify {
                    Some(n) if p.srights == 0 && sync <= p.mscount => {
                        let mscount = p.mscount;
                        self.notify_no_senders(n, mscount);
                    }
                    other => p.nsrequest = other,
                }
                Ok(previous)
            }
            notify_id::DEAD_NAME => self.dnrequest(task, name, sync != 0, notify),
            _ => Err(KernReturn::InvalidValue),
        }
    }

    /// `ipc_right_dnrequest`.
    fn dnrequest(
        &mut self,
        task: TaskId,
        name: Name,
        immediate: bool,
        notify: Option<PortId>,
    ) -> Kr<Option<PortId>> {
        let kind = self.lookup(task, name)?.kind;
        if kind & ty::PORT_RIGHTS != 0 && !self.right_check(task, name) {
            let previous = self.dncancel(task, name);
            if let Some(n) = notify {
                let port = self.entry(task, name).port();
                let table = &mut self.port(port).dnrequests;
                let slot = match table.iter().position(Option::is_none) {
                    Some(i) => i,
                    None => {
                        table.push(None);
                        table.len() - 1
                    }
                };
                table[slot] = Some(DnRequest { name, notify: n });
                self.entry(task, name).dnrequest = Some(slot);
            }
            return Ok(previous);
        }
        let entry = self.entry(task, name);
        if entry.kind & ty::DEAD_NAME != 0 && immediate {
            if let Some(n) = notify {
                if entry.urefs + 1 > UREFS_MAX {
                    return Err(KernReturn::UrefsOverflow);
                }
                entry.urefs += 1;
                self.notify_dead_name(n, name);
                return Ok(None);
            }
        }
        if self.entry(task, name).kind & ty::PORT_OR_DEAD != 0 {
            Err(KernReturn::InvalidArgument)
        } else {
            Err(KernReturn::InvalidRight)
        }
    }

    // ----- oracle ----------------------------------------------------------------------

    /// Recomputes every port's references, send and send-once counts, receiver and
    /// reverse-map entries from scratch and compares them with the kernel's own
    /// bookkeeping. For tests and simulators; `Err` describes the first mismatch.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (id, set) in &self.psets {
            if !set.heads.is_sorted() {
                return Err(format!("{id:?}: first messages out of order"));
            }
            for &(stamp, port) in &set.heads {
                let first = self.ports.get(&port).and_then(|p| p.queue.front());
                if !set.members.contains(&port) || first.is_none_or(|k| k.stamp != stamp) {
                    return Err(format!(
                        "{id:?}: {port:?} listed with a first message it has not"
                    ));
                }
            }
        }
        #[derive(Default)]
        struct Count {
            refs: u32,
            srights: u32,
            sorights: u32,
        }
        let mut counts: FxHashMap<PortId, Count> = FxHashMap::default();
        let carried = |counts: &mut FxHashMap<PortId, Count>, right: Carried, form: u8| {
            if let Carried::Port(p) = right {
                let c = counts.entry(p).or_default();
                c.refs += 1;
                match form {
                    msg_type::PORT_SEND => c.srights += 1,
                    msg_type::PORT_SEND_ONCE => c.sorights += 1,
                    _ => {}
                }
            }
        };
        let mut kmsgs: Vec<&KMsg> = Vec::new();
        for port in self.ports.values() {
            kmsgs.extend(port.queue.iter());
        }
        kmsgs.extend(self.pending.values().map(|p| &p.kmsg));
        for kmsg in kmsgs {
            if let Some(d) = kmsg.dest {
                carried(&mut counts, Carried::Port(d), kmsg.dest_type);
            }
            carried(&mut counts, kmsg.reply, kmsg.reply_type);
            if let KBody::Typed(items) = &kmsg.body {
                for item in items {
                    for &r in &item.rights {
                        carried(&mut counts, r, item.item.type_name);
                    }
                }
            }
        }
        for (id, port) in &self.ports {
            for notify in port.nsrequest.iter().chain(port.pdrequest.iter()) {
                carried(
                    &mut counts,
                    Carried::Port(*notify),
                    msg_type::PORT_SEND_ONCE,
                );
            }
            for r in port.dnrequests.iter().flatten() {
                carried(
                    &mut counts,
                    Carried::Port(r.notify),
                    msg_type::PORT_SEND_ONCE,
                );
            }
            if let Receiver::InTransit {
                destination: Some(d),
            } = port.receiver
            {
                counts.entry(d).or_default().refs += 1;
            }
            if let Receiver::InSpace { task, name } = port.receiver {
                let entry = self.spaces[task.0 as usize].entries.get(&name);
                match entry {
                    Some(e) if e.kind & ty::RECEIVE != 0 && e.object == Some(Object::Port(*id)) => {
                    }
                    _ => {
                        return Err(format!(
                            "{id:?}: receiver {task:?}/{name:#x} does not hold it"
                        ))
                    }
                }
            }
            if !port.active && (port.receiver != Receiver::Dead || !port.queue.is_empty()) {
                return Err(format!("{id:?}: dead port with a receiver or messages"));
            }
        }
        for (t, space) in self.spaces.iter().enumerate() {
            if !space.active {
                if !space.entries.is_empty() {
                    return Err(format!("task {t}: destroyed space has entries"));
                }
                continue;
            }
            for (name, e) in space.entries.iter() {
                if e.kind == 0 {
                    return Err(format!("task {t} {name:#x}: empty entry"));
                }
                if space.free_list.contains(&name) {
                    return Err(format!("task {t} {name:#x}: live name on the free list"));
                }
                match e.object {
                    Some(Object::Port(p)) => {
                        let c = counts.entry(p).or_default();
                        c.refs += 1;
                        let active = self.ports.get(&p).is_some_and(|port| port.active);
                        if e.kind & ty::SEND != 0 && active {
                            c.srights += 1;
                        }
                        if e.kind & ty::SEND_ONCE != 0 && active {
                            c.sorights += 1;
                        }
                        let reverse = space.reverse.get(&p) == Some(&name);
                        let send_only = e.kind & ty::SEND != 0 && e.kind & ty::RECEIVE == 0;
                        if reverse != send_only {
                            return Err(format!("task {t} {name:#x}: reverse map says {reverse}"));
                        }
                        if e.urefs == 0 && e.kind & ty::SEND != 0 || e.urefs > UREFS_MAX {
                            return Err(format!("task {t} {name:#x}: {} user references", e.urefs));
                        }
                        // A send-once right has a name of its own, with one
                        // user reference.
                        if e.kind & ty::SEND_ONCE != 0 && (e.kind != ty::SEND_ONCE || e.urefs != 1)
                        {
                            return Err(format!(
                                "task {t} {name:#x}: send-once right of kind {:#x} with {} user references",
                                e.kind, e.urefs
                            ));
                        }
                    }
                    Some(Object::Pset(s)) => {
                        if !self.psets.contains_key(&s) {
                            return Err(format!("task {t} {name:#x}: missing port set"));
                        }
                    }
                    None => {
                        if e.kind != ty::DEAD_NAME || e.urefs == 0 {
                            return Err(format!(
                                "task {t} {name:#x}: objectless entry of kind {:#x}",
                                e.kind
                            ));
                        }
                    }
                }
            }
            for (p, n) in &space.reverse {
                if space.entries.get(n).and_then(|e| e.object) != Some(Object::Port(*p)) {
                    return Err(format!("task {t}: reverse entry {n:#x} is stale"));
                }
            }
        }
        for (id, port) in &self.ports {
            let c = counts.remove(id).unwrap_or_default();
            if c.refs != port.refs {
                return Err(format!(
                    "{id:?}: {} references recorded, {} held",
                    port.refs, c.refs
                ));
            }
            if port.active
                && (c.srights + port.stale_srights != port.srights || c.sorights != port.sorights)
            {
                return Err(format!(
                    "{id:?}: srights {}/{} sorights {}/{} (recorded/held)",
                    port.srights, c.srights, port.sorights, c.sorights
                ));
            }
            if let Some(s) = port.pset {
                let Some(set) = self.psets.get(&s) else {
                    return Err(format!("{id:?}: its set does not exist"));
                };
                if !set.members.contains(id) {
                    return Err(format!("{id:?}: not a member of its set"));
                }
                let head = port.queue.front().map(|k| (k.stamp, *id));
                if head.is_some_and(|h| set.heads.binary_search(&h).is_err()) {
                    return Err(format!("{id:?}: its first message is not among its set's"));
                }
            }
        }
        if let Some((id, _)) = counts.into_iter().next() {
            return Err(format!("{id:?} is held but does not exist"));
        }
        Ok(())
    }

    // ----- inspection for tests and drivers ------------------------------------------

    /// Number of port objects alive or still referenced (a leak check).
    pub fn port_objects(&self) -> usize {
        self.ports.len()
    }

    /// Number of messages queued on the receive right `name`.
    pub fn queued(&self, task: TaskId, name: Name) -> Kr<usize> {
        let port = self.translate_receive(task, name)?;
        Ok(self.ports[&port].queue.len())
    }

    /// The port object a task's right names (for drivers that map ports to wakers).
    pub fn waitable(&self, task: TaskId, name: Name) -> Option<Waitable> {
        self.receive_source(task, name).ok()
    }

    /// True if `a` in `task_a` and `b` in `task_b` name the same port.
    pub fn same_port(&self, task_a: TaskId, a: Name, task_b: TaskId, b: Name) -> bool {
        let get = |t, n| match self.lookup(t, n).ok()?.object {
            Some(Object::Port(p)) => Some(p),
            _ => None,
        };
        matches!((get(task_a, a), get(task_b, b)), (Some(x), Some(y)) if x == y)
    }

    /// The name under which `task` holds send or receive rights of the port
    /// its right `name` (of any kind, e.g. send-once) names, if it does:
    /// GNU Mach's `ipc_right_reverse` (none for a dead port).
    pub fn send_name_of(&self, task: TaskId, name: Name) -> Option<Name> {
        match self.lookup(task, name).ok()?.object {
            Some(Object::Port(port))
                if !matches!(self.ports.get(&port)?.receiver, Receiver::Dead) =>
            {
                self.reverse(task, port)
            }
            _ => None,
        }
    }

    /// Which task and name hold the receive right of the port `task` names.
    pub fn receiver_of(&self, task: TaskId, name: Name) -> Option<(TaskId, Name)> {
        let Some(Object::Port(port)) = self.lookup(task, name).ok()?.object else {
            return None;
        };
        match self.ports.get(&port)?.receiver {
            Receiver::InSpace { task, name } => Some((task, name)),
            _ => None,
        }
    }
}

//! The interfaces the project speaks, defined with [`interface!`](crate::interface).
//!
//! Argument lists follow GNU Mach's `notify.defs`, `memory_object.defs` and
//! `mach.defs`. `vm_offset_t`/`vm_size_t` travel as 64-bit integers (the x86_64
//! ABI); ports are [`Right`](crate::rpc::Right)s with MIG's default dispositions
//! noted per argument.

crate::interface! {
    /// Kernel notifications (`notify.defs`, subsystem `notify` 64). The first
    /// argument of each is the notify port the request named.
    pub mod notify: "notify" 64 {
        /// A send or send-once right with a dead-name request was deleted.
        simpleroutine mach_notify_port_deleted = 65 (PortDeleted) { name: PortName };
        /// A `MACH_SEND_NOTIFY` message was accepted.
        simpleroutine mach_notify_msg_accepted = 66 (MsgAccepted) { name: PortName };
        /// A receive right would have been destroyed; it is handed back here.
        simpleroutine mach_notify_port_destroyed = 69 (PortDestroyed) { rights: Right };
        /// The port has no more send rights; `mscount` is its make-send count.
        simpleroutine mach_notify_no_senders = 70 (NoSenders) { mscount: u32 };
        /// A send-once right was destroyed unused.
        simpleroutine mach_notify_send_once = 71 (SendOnce) {};
        /// The port a send or send-once right named died.
        simpleroutine mach_notify_dead_name = 72 (DeadName) { name: PortName };
    }
}

crate::interface! {
    /// What the kernel sends a memory manager (`memory_object.defs`, 2200).
    pub mod memory_object: "memory_object" 2200 {
        /// A kernel maps the object: `control` (MAKE_SEND) and `name` (MAKE_SEND).
        simpleroutine memory_object_init = 2200 (Init) { control: Right, name: Right, page_size: u64 };
        /// A kernel stops using the object (control and name: MOVE_RECEIVE).
        simpleroutine memory_object_terminate = 2201 (Terminate) { control: Right, name: Right };
        simpleroutine memory_object_copy = 2202 (Copy) { old_control: Right, offset: u64, length: u64, new_object: Right };
        /// Page-in: data for `[offset, offset + length)` with at least `desired_access`.
        simpleroutine memory_object_data_request = 2203 (DataRequest) { control: Right, offset: u64, length: u64, desired_access: i32 };
        /// A kernel wants more access to pages it holds.
        simpleroutine memory_object_data_unlock = 2204 (DataUnlock) { control: Right, offset: u64, length: u64, desired_access: i32 };
        /// Answer to a `lock_request` with a reply port (sent to that port).
        simpleroutine memory_object_lock_completed = 2206 (LockCompleted) { control: Right, offset: u64, length: u64 };
        simpleroutine memory_object_supply_completed = 2207 (SupplyCompleted) { control: Right, offset: u64, length: u64, result: i32, error_offset: u64 };
        /// Page-out or return of pages (out of line).
        simpleroutine memory_object_data_return = 2208 (DataReturn) { control: Right, offset: u64, data: Region, dirty: bool, kernel_copy: bool };
        /// Answer to `change_attributes` with a reply port.
        simpleroutine memory_object_change_completed = 2209 (ChangeCompleted) { may_cache: bool, copy_strategy: i32 };
    }
}

crate::interface! {
    /// What a memory manager sends the kernel's control port (`mach.defs`,
    /// subsystem `mach` 2000).
    pub mod memory_object_control: "mach" 2000 {
        simpleroutine memory_object_data_unavailable = 2039 (DataUnavailable) { offset: u64, size: u64 };
        routine memory_object_get_attributes = 2040 (GetAttributes) {}
            -> GetAttributesReply { object_ready: bool, may_cache: bool, copy_strategy: i32 };
        /// Revoke or downgrade pages; `reply_to` (MAKE_SEND_ONCE) gets lock_completed.
        simpleroutine memory_object_lock_request = 2044 (LockRequest) { offset: u64, size: u64, should_return: i32, should_flush: bool, lock_value: i32, reply_to: Right };
        simpleroutine memory_object_data_error = 2090 (DataError) { offset: u64, size: u64, error_value: i32 };
        simpleroutine memory_object_destroy = 2092 (Destroy) { reason: i32 };
        /// Page data for a kernel, out of line, with the access it may have.
        simpleroutine memory_object_data_supply = 2093 (DataSupply) { offset: u64, data: Region, lock_value: i32, precious: bool, reply_to: Right };
        /// The object is ready after `memory_object_init`.
        simpleroutine memory_object_ready = 2094 (Ready) { may_cache: bool, copy_strategy: i32 };
        simpleroutine memory_object_change_attributes = 2095 (ChangeAttributes) { may_cache: bool, copy_strategy: i32, reply_to: Right };
    }
}

/// (request ID, routine name, has a reply).
pub type RoutineTable = &'static [(i32, &'static str, bool)];

/// Every interface known to the project.
pub const ALL: &[(&str, RoutineTable)] = &[
    (notify::SUBSYSTEM.0, notify::ROUTINES),
    (memory_object::SUBSYSTEM.0, memory_object::ROUTINES),
    (
        memory_object_control::SUBSYSTEM.0,
        memory_object_control::ROUTINES,
    ),
];

/// Names a message ID: (subsystem, routine, whether it is a reply).
pub fn routine_name(id: i32) -> Option<(&'static str, &'static str, bool)> {
    for (subsystem, routines) in ALL {
        for &(rid, name, has_reply) in routines.iter() {
            if rid == id {
                return Some((subsystem, name, false));
            }
            if has_reply && rid + 100 == id {
                return Some((subsystem, name, true));
            }
        }
    }
    None
}

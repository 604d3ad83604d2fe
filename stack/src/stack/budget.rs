//! Resource budgets: socket buffer memory (`Config::buffer_memory`), the number of
//! sockets (`Config::max_sockets`) and of half-open connections
//! (`Config::max_half_open`, with SYN cookies past it).
//!
//! Buffer memory is what the sockets' buffers have allocated: each slot records the
//! bytes it was last accounted with (`Slot::mem`). A TCP connection is re-accounted
//! in `refresh` after everything that touches it (its buffers grow on demand and are
//! trimmed by housekeeping), a UDP socket whenever a datagram is queued or taken.
//! Before a connection handles a segment or a write, it is told how much of the
//! budget is left (`buffer_room`), and its buffers grow no further than that: so the
//! total stays within the budget (but for the 2 KiB every buffer may hold whatever the
//! budget, `recv_buf`/`send_buf`'s `MIN_ALLOC`). Within 1/16 of the budget the stack is
//! under memory pressure until the total falls below 3/4 of it: new connections are
//! refused and UDP datagrams dropped.

use super::table::Sock;
use super::Stack;
use crate::socket::{Owner, SocketHandle};

impl Stack {
    /// Slot `idx` now holds `mem` bytes of buffer memory.
    #[inline]
    pub(super) fn set_slot_mem(&mut self, idx: u32, mem: usize) {
        let old = std::mem::replace(&mut self.slots[idx as usize].mem, mem);
        if old != mem {
            self.account_mem(old, mem);
        }
    }

    /// Slot `idx` took `bytes` more (`add`) or gave them back.
    #[inline]
    pub(super) fn change_slot_mem(&mut self, idx: u32, bytes: usize, add: bool) {
        let old = self.slots[idx as usize].mem;
        let new = if add { old + bytes } else { old.saturating_sub(bytes) };
        self.set_slot_mem(idx, new);
    }

    fn account_mem(&mut self, before: usize, after: usize) {
        self.buf_mem = (self.buf_mem + after).saturating_sub(before);
        self.stats.buffer_memory = self.buf_mem as u64;
        let limit = self.cfg.buffer_memory;
        if !self.mem_pressure && self.buf_mem >= limit - limit / 16 {
            self.mem_pressure = true;
            self.stats.memory_pressure = true;
            self.stats.memory_pressure_events += 1;
            tracing::debug!(bytes = self.buf_mem, limit, "memory pressure: new connections refused");
        } else if self.mem_pressure && self.buf_mem < limit - limit / 4 {
            self.mem_pressure = false;
            self.stats.memory_pressure = false;
            tracing::debug!(bytes = self.buf_mem, limit, "memory pressure over");
            self.pressure_relieved();
        }
    }

    /// Buffers may grow again: wake the writers that wait for room. O(sockets), once
    /// per episode of pressure.
    fn pressure_relieved(&mut self) {
        for idx in 0..self.slots.len() {
            let s = &self.slots[idx];
            let h = self.handle_at(idx, s.gen);
            if matches!(s.sock, Some(Sock::Tcp(_))) && s.owner == Owner::App {
                self.update_readiness(h);
            }
        }
    }

    /// What is left of the buffer memory budget: how much a connection's buffers may
    /// grow now.
    #[inline]
    pub(super) fn buffer_room(&self) -> usize {
        self.cfg.buffer_memory.saturating_sub(self.buf_mem)
    }

    /// Whether `bytes` more fit the budget (a UDP datagram to queue).
    pub(super) fn buffer_fits(&self, bytes: usize) -> bool {
        !self.mem_pressure && bytes <= self.buffer_room()
    }

    /// Whether one more socket fits `Config::max_sockets`.
    pub(super) fn socket_room(&self) -> bool {
        self.socket_count_fast() < self.cfg.max_sockets
    }

    /// Live sockets: slots in use.
    pub(super) fn socket_count_fast(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// A new connection may be made: a socket slot and buffer memory are available.
    pub(super) fn connection_room(&self) -> bool {
        self.socket_room() && !self.mem_pressure
    }

    /// `h` joins listener `lh`'s half-open queue.
    pub(super) fn enter_half_open(&mut self, lh: SocketHandle, h: SocketHandle) {
        if let Some(l) = self.listener_mut(lh) {
            l.half_open.push(h);
            self.half_open += 1;
            self.stats.tcp_half_open = self.half_open as u64;
        }
    }

    /// `h` leaves listener `lh`'s half-open queue, if it is there.
    pub(super) fn leave_half_open(&mut self, lh: SocketHandle, h: SocketHandle) -> bool {
        let Some(l) = self.listener_mut(lh) else { return false };
        let Some(i) = l.half_open.iter().position(|x| *x == h) else { return false };
        l.half_open.swap_remove(i);
        self.half_open -= 1;
        self.stats.tcp_half_open = self.half_open as u64;
        true
    }
}

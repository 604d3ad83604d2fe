//! The timer heap and the transmit schedule.
//!
//! Each connection has at most one deadline registered (`Slot::timer`, the earliest of
//! its retransmission, delayed-ACK, persist, keepalive and TIME-WAIT timers, RFC 9293
//! 3.8, RFC 6298). The heap holds `(deadline, slot, generation)`; when a deadline moves,
//! the old entry stays behind and is recognised as stale (it no longer matches the
//! slot) when it reaches the top, or dropped earlier by compaction. `refresh` also puts
//! a connection that wants to send on the transmit queue.

use std::cmp::Reverse;

use super::table::Sock;
use super::Stack;
use crate::socket::SocketHandle;
use crate::time::Instant;

impl Stack {
    /// After anything touched a connection: re-arm its timer, schedule output.
    pub(super) fn refresh(&mut self, h: SocketHandle) {
        self.refresh_inner(h, true)
    }

    /// `refresh`, scheduling output only if `schedule` (false right after the
    /// connection said it has nothing sendable).
    pub(super) fn refresh_inner(&mut self, h: SocketHandle, schedule: bool) {
        let Some(slot) = self.slots.get_mut(h.idx as usize).filter(|s| s.gen == h.gen) else { return };
        let Some(Sock::Tcp(c)) = slot.sock.as_ref() else { return };
        let deadline = c.deadline();
        let wants = schedule && c.wants_to_send();
        // Its buffers may have grown or shrunk (`budget`).
        let mem = c.allocated();
        let mem_changed = mem != slot.mem;
        let mut pushed = false;
        if deadline != slot.timer {
            slot.timer = deadline;
            if let Some(d) = deadline {
                self.timers.push(Reverse((d, h.idx, h.gen)));
                pushed = true;
            }
        }
        if wants && !slot.in_txq {
            slot.in_txq = true;
            self.txq.push_back(h);
        }
        if pushed {
            self.compact_timers();
        }
        if mem_changed {
            self.set_slot_mem(h.idx, mem);
        }
    }

    /// The heap holds stale entries (a deadline that moved) until they reach the top.
    /// Drop them once they outnumber the live ones, in place, so the heap stays about
    /// the size of the socket table and never grows (and allocates) in a steady state.
    fn compact_timers(&mut self) {
        if self.timers.len() > 2 * self.slots.len() + 64 {
            let slots = &self.slots;
            self.timers.retain(|&Reverse((d, idx, gen))| {
                slots.get(idx as usize).is_some_and(|s| s.gen == gen && s.timer == Some(d))
            });
        }
    }

    /// The earliest live deadline (stale entries on top are dropped on the way).
    pub(super) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&Reverse((d, idx, gen))) = self.timers.peek() {
            let live = self.slots.get(idx as usize).is_some_and(|s| s.gen == gen && s.timer == Some(d));
            if live {
                return Some(d);
            }
            self.timers.pop();
        }
        None
    }

    /// Take the next socket whose deadline is due at `now`, disarming it (the socket
    /// re-arms when it has handled the timer).
    pub(super) fn pop_due_timer(&mut self, now: Instant) -> Option<SocketHandle> {
        while let Some(&Reverse((d, idx, gen))) = self.timers.peek() {
            if d > now {
                return None;
            }
            self.timers.pop();
            let Some(slot) = self.slots.get_mut(idx as usize).filter(|s| s.gen == gen && s.timer == Some(d)) else {
                continue;
            };
            slot.timer = None;
            return Some(self.handle_at(idx as usize, gen));
        }
        None
    }
}

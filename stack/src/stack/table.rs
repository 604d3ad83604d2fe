//! The socket table: slots, generations, allocation and release, handle lookup.
//!
//! A socket lives in a slot of a `Vec`; its handle is the slot index plus the slot's
//! generation, bumped whenever the slot is released, so a stale handle never reaches
//! the socket that reused the slot. Released slots go on a free list and are reused
//! first, which keeps the table as large as the most sockets ever open at once.

use std::net::SocketAddr;

use super::tcp::Listener;
use super::udp::UdpSock;
use super::Stack;
use crate::demux::Match;
use crate::error::InvalidHandle;
use crate::socket::{AnyHandle, ListenerHandle, Owner, Protocol, Readiness, SocketHandle, TcpHandle, UdpHandle};
use crate::tcp::conn::Conn;
use crate::time::Instant;

/// What a slot holds.
pub(super) enum Sock {
    Listener(Listener),
    Tcp(Box<Conn>),
    Udp(UdpSock),
}

pub(super) struct Slot {
    pub(super) gen: u32,
    pub(super) sock: Option<Sock>,
    pub(super) owner: Owner,
    /// Deadline currently registered in the timer heap.
    pub(super) timer: Option<Instant>,
    /// Queued in `Stack::txq` (scheduled to transmit).
    pub(super) in_txq: bool,
    /// The readiness last computed for the socket (a level).
    pub(super) level: Readiness,
    /// Readiness that rose since it was last reported; non-empty iff the socket is
    /// queued in `Stack::wakeups`.
    pub(super) pending: Readiness,
    /// Buffer memory the socket was last accounted with (`budget`).
    pub(super) mem: usize,
}

impl Stack {
    pub(super) fn alloc(&mut self, sock: Sock, owner: Owner) -> SocketHandle {
        let slot = Slot {
            gen: 0,
            sock: Some(sock),
            owner,
            timer: None,
            in_txq: false,
            level: Readiness::EMPTY,
            pending: Readiness::EMPTY,
            mem: 0,
        };
        match self.free.pop() {
            Some(idx) => {
                let s = &mut self.slots[idx as usize];
                let gen = s.gen;
                *s = Slot { gen, ..slot };
                SocketHandle { idx, gen, shard: self.shard_index() }
            }
            None => {
                self.slots.push(slot);
                SocketHandle { idx: (self.slots.len() - 1) as u32, gen: 0, shard: self.shard_index() }
            }
        }
    }

    /// This stack's shard (`Config::shard`; 0 without shards): part of every handle.
    pub(super) fn shard_index(&self) -> u16 {
        self.cfg.shard.map_or(0, |s| s.index())
    }

    /// The handle at slot `idx` of generation `gen`.
    pub(super) fn handle_at(&self, idx: usize, gen: u32) -> SocketHandle {
        SocketHandle { idx: idx as u32, gen, shard: self.shard_index() }
    }

    pub(super) fn slot(&self, h: SocketHandle) -> Option<&Slot> {
        if h.shard != self.shard_index() {
            return None;
        }
        self.slots.get(h.idx as usize).filter(|s| s.gen == h.gen && s.sock.is_some())
    }

    pub(super) fn slot_mut(&mut self, h: SocketHandle) -> Option<&mut Slot> {
        if h.shard != self.shard_index() {
            return None;
        }
        self.slots.get_mut(h.idx as usize).filter(|s| s.gen == h.gen && s.sock.is_some())
    }

    /// The connection behind a raw handle (a demux result, a listener's queue entry).
    pub(super) fn conn_at(&self, h: SocketHandle) -> Option<&Conn> {
        match self.slot(h).and_then(|s| s.sock.as_ref()) {
            Some(Sock::Tcp(c)) => Some(c),
            _ => None,
        }
    }

    pub(super) fn listener_mut(&mut self, h: SocketHandle) -> Option<&mut Listener> {
        match self.slot_mut(h).and_then(|s| s.sock.as_mut()) {
            Some(Sock::Listener(l)) => Some(l),
            _ => None,
        }
    }

    // A typed handle's slot holds a socket of its kind or, if the handle is stale,
    // another generation: the lookups below fail only for stale handles.

    pub(super) fn conn(&self, h: TcpHandle) -> Result<&Conn, InvalidHandle> {
        self.conn_at(h.0).ok_or(InvalidHandle)
    }

    pub(super) fn conn_mut(&mut self, h: TcpHandle) -> Result<&mut Conn, InvalidHandle> {
        match self.slot_mut(h.0).and_then(|s| s.sock.as_mut()) {
            Some(Sock::Tcp(c)) => Ok(c),
            _ => Err(InvalidHandle),
        }
    }

    pub(super) fn udp_mut(&mut self, h: UdpHandle) -> Result<&mut UdpSock, InvalidHandle> {
        match self.slot_mut(h.0).and_then(|s| s.sock.as_mut()) {
            Some(Sock::Udp(u)) => Ok(u),
            _ => Err(InvalidHandle),
        }
    }

    /// Give back the slot of a socket whose bind failed: it holds no port and no demux
    /// entry (so `free_socket`, which removes those, must not run: the address it
    /// would remove belongs to the socket that won the bind).
    pub(super) fn release_unbound(&mut self, h: SocketHandle) {
        let slot = &mut self.slots[h.idx as usize];
        slot.sock = None;
        slot.gen = slot.gen.wrapping_add(1);
        self.free.push(h.idx);
    }

    /// Remove a socket for good: demux entries, port binding, slot.
    pub(super) fn free_socket(&mut self, h: SocketHandle) {
        let Some(slot) = self.slot_mut(h) else { return };
        let sock = slot.sock.take();
        let owner = slot.owner;
        let mem = slot.mem;
        slot.gen = slot.gen.wrapping_add(1);
        slot.timer = None;
        slot.in_txq = false;
        slot.level = Readiness::EMPTY;
        slot.pending = Readiness::EMPTY;
        slot.owner = Owner::App;
        self.free.push(h.idx);
        if mem > 0 {
            self.set_slot_mem(h.idx, 0);
        }
        match sock {
            Some(Sock::Tcp(c)) => {
                // Only our own entry: a connection that reached CLOSED earlier left the
                // demux then, and its 4-tuple may belong to a new connection by now.
                self.remove_conn_entry(Protocol::Tcp, c.local, c.remote, h);
                if let Owner::Listener(lh) = owner {
                    if !self.leave_half_open(lh, h) {
                        if let Some(l) = self.listener_mut(lh) {
                            l.accept_q.retain(|x| *x != h);
                        }
                    }
                }
            }
            Some(Sock::Listener(l)) if l.transparent => self.transparent_tcp = None,
            Some(Sock::Listener(l)) => {
                self.demux.remove_listener(Protocol::Tcp, l.local);
                self.tcp_ports.unbind(l.local.ip(), l.local.port(), h);
            }
            Some(Sock::Udp(u)) if u.transparent => self.transparent_udp = None,
            Some(Sock::Udp(u)) => {
                self.demux.remove_listener(Protocol::Udp, u.local);
                self.udp_ports.unbind(u.local.ip(), u.local.port(), h);
            }
            None => {}
        }
    }

    /// Remove the demux entry of `(local, remote)` if it belongs to `h`.
    pub(super) fn remove_conn_entry(
        &mut self,
        proto: Protocol,
        local: SocketAddr,
        remote: SocketAddr,
        h: SocketHandle,
    ) -> bool {
        if self.demux.lookup(proto, local, remote) == Some(Match::Connection(h)) {
            self.demux.remove_connection(proto, local, remote);
            true
        } else {
            false
        }
    }

    /// The typed handle of a live socket, from a raw one (a row of the socket table, a
    /// wakeup); `None` for a stale handle.
    pub fn resolve(&self, h: SocketHandle) -> Option<AnyHandle> {
        Some(match self.slot(h)?.sock.as_ref()? {
            Sock::Tcp(_) => AnyHandle::Tcp(TcpHandle(h)),
            Sock::Listener(_) => AnyHandle::Listener(ListenerHandle(h)),
            Sock::Udp(_) => AnyHandle::Udp(UdpHandle(h)),
        })
    }
}

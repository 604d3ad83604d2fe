//! Diagnostics: counters ([`Stats`], every dropped packet under exactly one reason),
//! the `netstat`-style socket table, the internal consistency check used by tests and
//! fuzz targets, and housekeeping (idle connections give their buffer memory back).

use super::table::Sock;
use super::{Stack, MAX_CTRL_QUEUE};
use crate::demux::Match;
use crate::socket::{Owner, Protocol, SocketHandle, SocketInfo};
use crate::tcp::{TcpReject, TcpState};
use crate::time::Instant;
use crate::wire::DropReason;

/// How often idle connections give their buffer memory back.
pub(super) const HOUSEKEEPING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Counters. Every dropped packet is counted under exactly one reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: [u64; DropReason::COUNT],
    pub tcp_active_opens: u64,
    pub tcp_passive_opens: u64,
    pub tcp_resets_sent: u64,
    pub tcp_retransmits: u64,
    pub icmp_echo_replies: u64,
    pub icmp_unreachable_sent: u64,
    pub icmp_errors_rate_limited: u64,
    /// Control packets (RSTs, ICMP replies and errors) not sent: the control queue was
    /// full, or the packet would not fit the MTU.
    pub ctrl_dropped: u64,
    /// TCP segments rejected by a listener or a connection, per reason (each is also
    /// counted once under `DropReason::TcpRejected`).
    pub tcp_rejects: [u64; TcpReject::COUNT],
}

impl Stats {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
    pub fn tcp_rejected(&self, reason: TcpReject) -> u64 {
        self.tcp_rejects[reason as usize]
    }
}

impl Stack {
    /// Count and trace a dropped packet.
    pub(super) fn count_drop(&mut self, reason: DropReason, what: &str) {
        self.stats.drops[reason as usize] += 1;
        tracing::debug!(reason = reason.as_str(), detail = what, "packet dropped");
    }

    /// Count a TCP segment a listener or connection rejected (also a drop).
    pub(super) fn count_reject(&mut self, why: TcpReject) {
        self.stats.tcp_rejects[why as usize] += 1;
        self.count_drop(DropReason::TcpRejected, why.as_str());
    }

    /// Every socket, ordered by handle: the `netstat -ano` of this stack.
    pub fn sockets(&self) -> Vec<SocketInfo> {
        let mut v = Vec::new();
        for (idx, s) in self.slots.iter().enumerate() {
            let handle = SocketHandle { idx: idx as u32, gen: s.gen };
            let row = match s.sock.as_ref() {
                None => continue,
                Some(Sock::Tcp(c)) => SocketInfo {
                    handle,
                    protocol: Protocol::Tcp,
                    local: c.local,
                    remote: Some(c.remote),
                    state: c.state.as_str(),
                    recv_queue: c.recv_queue(),
                    send_queue: c.send_queue(),
                    owner: s.owner,
                },
                Some(Sock::Listener(l)) => SocketInfo {
                    handle,
                    protocol: Protocol::Tcp,
                    local: l.local,
                    remote: None,
                    state: TcpState::Listen.as_str(),
                    recv_queue: l.accept_q.len(),
                    send_queue: 0,
                    owner: s.owner,
                },
                Some(Sock::Udp(u)) => SocketInfo {
                    handle,
                    protocol: Protocol::Udp,
                    local: u.local,
                    remote: u.remote,
                    state: if u.remote.is_some() { "CONNECTED" } else { "BOUND" },
                    recv_queue: u.rxq.iter().map(|(_, d)| d.len()).sum(),
                    send_queue: u.txq.iter().map(|d| d.data.len()).sum(),
                    owner: s.owner,
                },
            };
            v.push(row);
        }
        v
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Release the buffer memory of connections that hold no data and have received
    /// nothing for a second (they regrow on demand). Runs by itself about once a
    /// second while packets flow; callable any time. Returns the buffer bytes still
    /// allocated across all connections.
    pub fn housekeeping(&mut self, now: Instant) -> usize {
        self.next_housekeeping = now + HOUSEKEEPING_INTERVAL;
        let mut held = 0;
        let mut granted = 0;
        for s in self.slots.iter_mut() {
            if let Some(Sock::Tcp(c)) = s.sock.as_mut() {
                held += c.trim(now, HOUSEKEEPING_INTERVAL);
                granted += c.buffer_granted();
            }
        }
        // Connections that shrank or went away give their auto-tuning growth back.
        self.buf_budget.recount(granted);
        held
    }

    /// Number of live sockets of every kind (listeners, connections including orphans
    /// and TIME-WAIT, UDP sockets).
    pub fn socket_count(&self) -> usize {
        self.slots.iter().filter(|s| s.sock.is_some()).count()
    }

    /// Check the core's internal consistency: every connection's control block, the
    /// demux tables against the sockets, listener queues, the free list. `Err` names
    /// the first violation. For tests, proptests and fuzz targets; O(sockets).
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut in_demux = 0;
        let mut bound = 0;
        for (idx, s) in self.slots.iter().enumerate() {
            let h = SocketHandle { idx: idx as u32, gen: s.gen };
            match s.sock.as_ref() {
                None => {
                    if !self.free.contains(&(idx as u32)) {
                        return Err(format!("empty slot {idx} not on the free list"));
                    }
                }
                Some(Sock::Tcp(c)) => {
                    c.check_invariants().map_err(|e| format!("{h:?} {}->{}: {e}", c.local, c.remote))?;
                    if c.state != TcpState::Closed {
                        in_demux += 1;
                        if self.demux.lookup(Protocol::Tcp, c.local, c.remote) != Some(Match::Connection(h)) {
                            return Err(format!("{h:?} ({}) not found by its 4-tuple", c.state));
                        }
                    } else if s.owner != Owner::App {
                        return Err(format!("{h:?}: CLOSED connection kept without an owner"));
                    }
                    if let Owner::Listener(lh) = s.owner {
                        let Some(Sock::Listener(l)) = self.slot(lh).and_then(|x| x.sock.as_ref()) else {
                            return Err(format!("{h:?}: owned by a listener {lh:?} that does not exist"));
                        };
                        let queued = l.half_open.contains(&h) as usize + l.accept_q.contains(&h) as usize;
                        if queued != 1 {
                            return Err(format!("{h:?}: in {queued} queues of its listener"));
                        }
                    }
                }
                Some(Sock::Listener(l)) => {
                    bound += 1;
                    if l.half_open.len() + l.accept_q.len() > l.backlog {
                        return Err(format!("{h:?}: listener queues exceed the backlog"));
                    }
                    for c in l.half_open.iter().chain(l.accept_q.iter()) {
                        if self.slot(*c).map(|x| x.owner) != Some(Owner::Listener(h)) {
                            return Err(format!("{h:?}: queued {c:?} is not its child"));
                        }
                    }
                }
                Some(Sock::Udp(u)) => {
                    bound += 1;
                    if u.rxq.len() > self.cfg.udp_rx_queue || u.txq.len() > self.cfg.udp_tx_queue {
                        return Err(format!("{h:?}: UDP queue over its bound"));
                    }
                }
            }
        }
        if self.demux.connection_count() != in_demux {
            return Err(format!("demux has {} connections, sockets {in_demux}", self.demux.connection_count()));
        }
        if self.demux.listener_count() != bound {
            return Err(format!("demux has {} listeners/bound, sockets {bound}", self.demux.listener_count()));
        }
        if self.tcp_ports.len() + self.udp_ports.len() != bound {
            return Err(format!(
                "port tables hold {} bindings, sockets {bound}",
                self.tcp_ports.len() + self.udp_ports.len()
            ));
        }
        if self.ctrl.len() > MAX_CTRL_QUEUE {
            return Err("control queue over its bound".into());
        }
        Ok(())
    }
}

//! Diagnostics: counters ([`Stats`], every dropped packet under exactly one reason),
//! the `netstat`-style socket table, the internal consistency check used by tests and
//! fuzz targets, and housekeeping (idle connections give their buffer memory back).

use super::table::Sock;
use super::{Stack, MAX_CTRL_QUEUE};
use crate::demux::Match;
use crate::socket::{Owner, Protocol, SocketInfo};
use crate::tcp::{TcpReject, TcpState};
use crate::time::Instant;
use crate::wire::DropReason;

/// How often idle connections give their buffer memory back.
pub(super) const HOUSEKEEPING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Counters, and a few gauges (current values, noted as such). Every dropped packet is
/// counted under exactly one reason; the fragments of a datagram that was reassembled
/// count as that one datagram. All start at zero.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
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
    /// RFC 5961 7: ACKs answering rejected segments (challenge ACKs, out-of-window and
    /// PAWS ACKs) left unsent by the per-connection rate limit
    /// (`Config::challenge_ack_interval`; Linux `TCPACKSkipped*`).
    pub tcp_acks_rate_limited: u64,

    // ---- SYN cookies (RFC 4987 3.6)
    /// SYN-ACKs carrying a cookie: a half-open queue was full (Linux `SyncookiesSent`).
    pub syn_cookies_sent: u64,
    /// ACKs with a valid cookie: connections made from one (Linux `SyncookiesRecv`).
    pub syn_cookies_valid: u64,
    /// ACKs whose cookie did not verify, answered with RST (Linux `SyncookiesFailed`;
    /// also counted under `TcpReject::SynCookieInvalid`).
    pub syn_cookies_invalid: u64,
    /// Gauge: embryonic (SYN-RECEIVED) connections across all listeners.
    pub tcp_half_open: u64,

    // ---- IP fragments (RFC 791, RFC 8200 4.5)
    /// Fragments received for us (Linux `ReasmReqds`), atomic ones included.
    pub frag_received: u64,
    /// Datagrams reassembled (Linux `ReasmOKs`).
    pub frag_reassembled: u64,
    /// Datagrams given up at their reassembly timeout (Linux `ReasmTimeout`); their
    /// fragments are counted under `DropReason::ReassemblyTimeout`.
    pub frag_timeouts: u64,
    /// Datagrams discarded for overlapping fragments (RFC 5722).
    pub frag_overlaps: u64,
    /// ICMP time exceeded (fragment reassembly time exceeded) sent.
    pub frag_time_exceeded_sent: u64,
    /// Gauge: bytes held by datagrams in reassembly (`Config::reassembly_memory`).
    pub reassembly_memory: u64,
    /// Datagrams we sent as fragments (Linux `FragOKs`), and the fragments (`FragCreates`).
    pub frag_datagrams_sent: u64,
    pub frags_sent: u64,

    // ---- ICMP errors we receive (RFC 1122 4.2.3.9, RFC 5461, RFC 1191, RFC 8201)
    /// Validated ICMP errors recorded on a connection as its soft error.
    pub icmp_soft_errors: u64,
    /// Validated ICMP errors that ended a connection attempt (or embryo) or are
    /// reported to a connected UDP socket.
    pub icmp_hard_errors: u64,
    /// Path MTU estimates lowered by a validated "fragmentation needed" or "packet too
    /// big".
    pub pmtu_updates: u64,
    /// Gauge: destinations with a path MTU below the link MTU (`Config::pmtu_entries`).
    pub pmtu_entries: u64,

    // ---- memory (`Config::buffer_memory`)
    /// Gauge: bytes of socket buffer memory allocated (TCP buffers, UDP queues).
    pub buffer_memory: u64,
    /// Gauge: over the budget now (until below 7/8 of it): buffers do not grow, new
    /// connections are refused.
    pub memory_pressure: bool,
    /// Times the stack came under memory pressure.
    pub memory_pressure_events: u64,

    // ---- shards (`Config::shard`, see `crate::shard`)
    /// Packets this shard read that another shard owns, handed back to the runtime
    /// for it (`Input::Elsewhere`, and reassembled datagrams from `Stack::poll_foreign`).
    pub shard_handoffs: u64,
}

impl Stats {
    /// Every scalar counter and gauge with its name (the field's name), for exporting
    /// (`/stats.json`, metrics). `drops` and `tcp_rejects` are per reason
    /// (`DropReason::as_str`, `TcpReject::as_str`). Destructured without `..` on purpose: a
    /// counter added to `Stats` must be added here too, or this stops compiling.
    pub fn counters(&self) -> [(&'static str, u64); 33] {
        let Stats {
            rx_packets,
            rx_bytes,
            tx_packets,
            tx_bytes,
            drops: _,
            tcp_active_opens,
            tcp_passive_opens,
            tcp_resets_sent,
            tcp_retransmits,
            icmp_echo_replies,
            icmp_unreachable_sent,
            icmp_errors_rate_limited,
            ctrl_dropped,
            tcp_rejects: _,
            tcp_acks_rate_limited,
            syn_cookies_sent,
            syn_cookies_valid,
            syn_cookies_invalid,
            tcp_half_open,
            frag_received,
            frag_reassembled,
            frag_timeouts,
            frag_overlaps,
            frag_time_exceeded_sent,
            reassembly_memory,
            frag_datagrams_sent,
            frags_sent,
            icmp_soft_errors,
            icmp_hard_errors,
            pmtu_updates,
            pmtu_entries,
            buffer_memory,
            memory_pressure,
            memory_pressure_events,
            shard_handoffs,
        } = self;
        [
            ("rx_packets", *rx_packets),
            ("rx_bytes", *rx_bytes),
            ("tx_packets", *tx_packets),
            ("tx_bytes", *tx_bytes),
            ("tcp_active_opens", *tcp_active_opens),
            ("tcp_passive_opens", *tcp_passive_opens),
            ("tcp_resets_sent", *tcp_resets_sent),
            ("tcp_retransmits", *tcp_retransmits),
            ("icmp_echo_replies", *icmp_echo_replies),
            ("icmp_unreachable_sent", *icmp_unreachable_sent),
            ("icmp_errors_rate_limited", *icmp_errors_rate_limited),
            ("ctrl_dropped", *ctrl_dropped),
            ("tcp_acks_rate_limited", *tcp_acks_rate_limited),
            ("syn_cookies_sent", *syn_cookies_sent),
            ("syn_cookies_valid", *syn_cookies_valid),
            ("syn_cookies_invalid", *syn_cookies_invalid),
            ("tcp_half_open", *tcp_half_open),
            ("frag_received", *frag_received),
            ("frag_reassembled", *frag_reassembled),
            ("frag_timeouts", *frag_timeouts),
            ("frag_overlaps", *frag_overlaps),
            ("frag_time_exceeded_sent", *frag_time_exceeded_sent),
            ("reassembly_memory", *reassembly_memory),
            ("frag_datagrams_sent", *frag_datagrams_sent),
            ("frags_sent", *frags_sent),
            ("icmp_soft_errors", *icmp_soft_errors),
            ("icmp_hard_errors", *icmp_hard_errors),
            ("pmtu_updates", *pmtu_updates),
            ("pmtu_entries", *pmtu_entries),
            ("buffer_memory", *buffer_memory),
            ("memory_pressure", u64::from(*memory_pressure)),
            ("memory_pressure_events", *memory_pressure_events),
            ("shard_handoffs", *shard_handoffs),
        ]
    }

    /// Add `other`'s counters and gauges to these (the runtime's total over its
    /// shards); `memory_pressure` is true when any shard is under pressure. `other` is
    /// destructured without `..`: a field added to `Stats` must be merged here too.
    pub fn merge(&mut self, other: &Stats) {
        let Stats {
            drops,
            tcp_rejects,
            memory_pressure,
            rx_packets,
            rx_bytes,
            tx_packets,
            tx_bytes,
            tcp_active_opens,
            tcp_passive_opens,
            tcp_resets_sent,
            tcp_retransmits,
            icmp_echo_replies,
            icmp_unreachable_sent,
            icmp_errors_rate_limited,
            ctrl_dropped,
            tcp_acks_rate_limited,
            syn_cookies_sent,
            syn_cookies_valid,
            syn_cookies_invalid,
            tcp_half_open,
            frag_received,
            frag_reassembled,
            frag_timeouts,
            frag_overlaps,
            frag_time_exceeded_sent,
            reassembly_memory,
            frag_datagrams_sent,
            frags_sent,
            icmp_soft_errors,
            icmp_hard_errors,
            pmtu_updates,
            pmtu_entries,
            buffer_memory,
            memory_pressure_events,
            shard_handoffs,
        } = other;
        for (a, b) in self.drops.iter_mut().zip(drops) {
            *a += b;
        }
        for (a, b) in self.tcp_rejects.iter_mut().zip(tcp_rejects) {
            *a += b;
        }
        self.memory_pressure |= *memory_pressure;
        self.rx_packets += rx_packets;
        self.rx_bytes += rx_bytes;
        self.tx_packets += tx_packets;
        self.tx_bytes += tx_bytes;
        self.tcp_active_opens += tcp_active_opens;
        self.tcp_passive_opens += tcp_passive_opens;
        self.tcp_resets_sent += tcp_resets_sent;
        self.tcp_retransmits += tcp_retransmits;
        self.icmp_echo_replies += icmp_echo_replies;
        self.icmp_unreachable_sent += icmp_unreachable_sent;
        self.icmp_errors_rate_limited += icmp_errors_rate_limited;
        self.ctrl_dropped += ctrl_dropped;
        self.tcp_acks_rate_limited += tcp_acks_rate_limited;
        self.syn_cookies_sent += syn_cookies_sent;
        self.syn_cookies_valid += syn_cookies_valid;
        self.syn_cookies_invalid += syn_cookies_invalid;
        self.tcp_half_open += tcp_half_open;
        self.frag_received += frag_received;
        self.frag_reassembled += frag_reassembled;
        self.frag_timeouts += frag_timeouts;
        self.frag_overlaps += frag_overlaps;
        self.frag_time_exceeded_sent += frag_time_exceeded_sent;
        self.reassembly_memory += reassembly_memory;
        self.frag_datagrams_sent += frag_datagrams_sent;
        self.frags_sent += frags_sent;
        self.icmp_soft_errors += icmp_soft_errors;
        self.icmp_hard_errors += icmp_hard_errors;
        self.pmtu_updates += pmtu_updates;
        self.pmtu_entries += pmtu_entries;
        self.buffer_memory += buffer_memory;
        self.memory_pressure_events += memory_pressure_events;
        self.shard_handoffs += shard_handoffs;
    }

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

    /// Count and trace `n` dropped packets (the fragments of a discarded datagram).
    pub(super) fn count_drops(&mut self, reason: DropReason, n: u64, what: &str) {
        self.stats.drops[reason as usize] += n;
        tracing::debug!(reason = reason.as_str(), detail = what, packets = n, "packets dropped");
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
            let handle = self.handle_at(idx, s.gen);
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
                    recv_queue: u.rxq.iter().map(|(_, _, d)| d.len()).sum(),
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
    /// Expired path MTU estimates are forgotten too.
    pub fn housekeeping(&mut self, now: Instant) -> usize {
        self.next_housekeeping = now + HOUSEKEEPING_INTERVAL;
        let mut held = 0;
        let mut granted = 0;
        for idx in 0..self.slots.len() {
            if let Some(Sock::Tcp(c)) = self.slots[idx].sock.as_mut() {
                let mem = c.trim(now, HOUSEKEEPING_INTERVAL);
                granted += c.buffer_granted();
                held += mem;
                self.set_slot_mem(idx as u32, mem);
            }
        }
        // Connections that shrank or went away give their auto-tuning growth back.
        self.buf_budget.recount(granted);
        self.pmtu.expire(now);
        self.stats.pmtu_entries = self.pmtu.len() as u64;
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
        let mut half_open = 0;
        let mut mem = 0;
        for (idx, s) in self.slots.iter().enumerate() {
            let h = self.handle_at(idx, s.gen);
            mem += s.mem;
            match s.sock.as_ref() {
                None => {
                    if s.mem != 0 {
                        return Err(format!("empty slot {idx} accounted {} bytes", s.mem));
                    }
                    if !self.free.contains(&(idx as u32)) {
                        return Err(format!("empty slot {idx} not on the free list"));
                    }
                }
                Some(Sock::Tcp(c)) => {
                    c.check_invariants().map_err(|e| format!("{h:?} {}->{}: {e}", c.local, c.remote))?;
                    if s.mem != c.allocated() {
                        return Err(format!("{h:?}: buffers hold {} bytes, accounted {}", c.allocated(), s.mem));
                    }
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
                    // A transparent listener holds no port and no demux entry.
                    bound += usize::from(!l.transparent);
                    half_open += l.half_open.len();
                    if l.half_open.len() > l.backlog || l.accept_q.len() > l.backlog {
                        return Err(format!("{h:?}: listener queues exceed the backlog"));
                    }
                    for c in l.half_open.iter().chain(l.accept_q.iter()) {
                        if self.slot(*c).map(|x| x.owner) != Some(Owner::Listener(h)) {
                            return Err(format!("{h:?}: queued {c:?} is not its child"));
                        }
                    }
                }
                Some(Sock::Udp(u)) => {
                    bound += usize::from(!u.transparent);
                    if u.rxq.len() > self.cfg.udp_rx_queue || u.txq.len() > self.cfg.udp_tx_queue {
                        return Err(format!("{h:?}: UDP queue over its bound"));
                    }
                    let held: usize = u.rxq.iter().map(|(_, _, d)| d.capacity()).sum::<usize>()
                        + u.txq.iter().map(|d| d.data.capacity()).sum::<usize>();
                    if held != s.mem {
                        return Err(format!("{h:?}: UDP queues hold {held} bytes, accounted {}", s.mem));
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
        if half_open != self.half_open || self.stats.tcp_half_open != half_open as u64 {
            return Err(format!("half-open count {} but listeners hold {half_open}", self.half_open));
        }
        if mem != self.buf_mem || self.stats.buffer_memory != mem as u64 {
            return Err(format!("buffer memory {} but slots account {mem}", self.buf_mem));
        }
        if self.frag_out.len() > super::frag::MAX_FRAGMENTED_OUT {
            return Err("fragment queue over its bound".into());
        }
        self.reasm.check(&self.cfg)?;
        if self.stats.reassembly_memory != self.reasm.memory() as u64 {
            return Err("reassembly memory gauge out of date".into());
        }
        if self.pmtu.len() > self.cfg.pmtu_entries {
            return Err("path MTU table over its bound".into());
        }
        Ok(())
    }
}

//! Configuration of the sans-IO core.

use std::net::IpAddr;
use std::time::Duration;

pub use crate::tcp::congestion::CongestionAlgorithm;

/// TCP keepalive parameters (RFC 9293 3.8.4, RFC 1122 4.2.3.6): after `idle` without
/// any segment from the peer, send a probe every `interval`; after `probes` unanswered
/// probes the connection ends with `TimedOut`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    pub idle: Duration,
    pub interval: Duration,
    pub probes: u32,
}

impl Default for Keepalive {
    /// RFC 1122 4.2.3.6: the idle time MUST default to no less than two hours.
    fn default() -> Keepalive {
        Keepalive { idle: Duration::from_secs(7200), interval: Duration::from_secs(75), probes: 9 }
    }
}

/// Everything the core needs to know up front. `Config::default()` is a sensible
/// server-side configuration; tests shorten the timers.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The addresses this stack owns. Packets to other destinations are dropped
    /// (`DropReason::NotForUs`) and binds to other addresses fail with `AddrNotAvailable`.
    pub addrs: Vec<IpAddr>,
    /// Link MTU. Our MSS is derived from it (RFC 9293 3.7.1: MTU - IP header - 20).
    pub mtu: usize,
    /// Seed for every random choice the core makes (ISN hash key, ephemeral ports).
    /// The runtime fills it from the OS entropy source.
    pub seed: u64,
    /// When true, binding a port below 1024 fails with `PermissionDenied` (the classic
    /// privileged-port rule). Off by default: the stack runs in its own process.
    pub reserve_privileged_ports: bool,
    /// Ephemeral port range, RFC 6335 6 / RFC 6056 suggest 49152-65535.
    pub ephemeral_ports: (u16, u16),
    /// Per-connection receive buffer (the most we advertise as window) to start with.
    pub tcp_rx_buffer: usize,
    /// Per-connection send buffer to start with.
    pub tcp_tx_buffer: usize,
    /// Receive buffer auto-tuning (`tcp/autotune.rs`): the buffer grows towards twice
    /// what the application reads per round trip, up to this bound (the most a
    /// connection ever buffers and advertises; the window scale is chosen from it).
    /// At or below `tcp_rx_buffer`: no auto-tuning.
    pub tcp_rx_buffer_max: usize,
    /// Send buffer auto-sizing: up to twice the congestion window, at most this bound.
    /// At or below `tcp_tx_buffer`: no auto-sizing.
    pub tcp_tx_buffer_max: usize,
    /// The most that auto-tuning may add to the configured buffer sizes across all
    /// connections together (bytes of buffer bounds; memory follows on demand). Idle
    /// connections give theirs back at housekeeping.
    pub tcp_buffer_budget: usize,
    /// Maximum segment lifetime; TIME_WAIT lasts 2*MSL (RFC 9293 3.4.2). RFC 9293 says 2
    /// minutes; Linux uses a fixed 60 s TIME_WAIT. Tests use milliseconds.
    pub msl: Duration,
    /// Initial retransmission timeout (RFC 6298 2.1: 1 second).
    pub rto_initial: Duration,
    /// Lower bound on the RTO (RFC 6298 2.4 says 1 s; Linux uses 200 ms).
    pub rto_min: Duration,
    /// Upper bound on the RTO (RFC 6298 2.5 allows a maximum of at least 60 s).
    pub rto_max: Duration,
    /// Retransmissions of one segment before the connection is aborted with `TimedOut`
    /// (RFC 9293 3.8.3, "R2"). SYNs use `syn_retries`.
    pub max_retries: u32,
    /// Retransmissions of a SYN or SYN-ACK before giving up (RFC 9293 3.8.3: R2 for SYN
    /// at least 3 minutes; Linux uses 6 retries, about 127 s).
    pub syn_retries: u32,
    /// Congestion control for new connections (changeable per connection).
    pub congestion: CongestionAlgorithm,
    /// Pace data segments at cwnd / SRTT (x2 in slow start, x1.2 after, as Linux does)
    /// rather than sending what the window allows at once (`tcp/pacing.rs`). BBR always
    /// paces, at its own rate.
    pub pacing: bool,
    /// Delayed ACKs (RFC 5681 4.2, RFC 9293 3.8.6.3): at most this delay, and an ACK
    /// for at least every second full-sized segment. `None` acknowledges every segment
    /// at once.
    pub ack_delay: Option<Duration>,
    /// Offer and use SACK (RFC 2018, RFC 6675).
    pub sack: bool,
    /// RACK-TLP loss detection (RFC 8985) on SACK connections: time-based loss marking
    /// and tail loss probes, on top of RFC 6675's DupThresh rule.
    pub rack_tlp: bool,
    /// Offer and use timestamps (RFC 7323 3, 4, 5: RTTM and PAWS).
    pub timestamps: bool,
    /// Offer window scaling (RFC 7323 2). Without it the window is capped at 65535.
    pub window_scaling: bool,
    /// Keepalive for new connections; off by default, like sockets (SO_KEEPALIVE).
    pub keepalive: Option<Keepalive>,
    /// User timeout (RFC 9293 3.8.3, RFC 5482): abort with `TimedOut` when sent data
    /// stays unacknowledged this long. `None`: only the retry counts apply.
    pub user_timeout: Option<Duration>,
    /// Datagrams queued per UDP socket before new ones are dropped.
    pub udp_rx_queue: usize,
    /// Datagrams queued for transmission per UDP socket before `send` says `WouldBlock`.
    pub udp_tx_queue: usize,
    /// At most this many ICMP errors (port unreachable, reassembly time exceeded) per
    /// second, RFC 1812 4.3.2.8 / RFC 4443 2.4(f) rate limiting. Default 100.
    pub icmp_error_rate: u32,

    // ---- hostile networks: SYN floods, fragments, path MTU, memory budgets ----
    /// SYN cookies (RFC 4987 3.6): when a listener's half-open queue is full (its
    /// backlog) or `max_half_open` is reached, a SYN is answered with a SYN-ACK whose
    /// sequence number encodes the connection (no state is kept), and a valid cookie
    /// in the returning ACK creates the connection straight into the accept queue.
    /// Like Linux's `tcp_syncookies=1`. Default on; off drops such SYNs.
    pub syn_cookies: bool,
    /// Most embryonic (SYN-RECEIVED) connections across all listeners; beyond it SYNs
    /// get cookies (or are dropped without them). Each listener's own half-open queue
    /// is bounded by its backlog too. Default 1024 (Linux: `tcp_max_syn_backlog`).
    pub max_half_open: usize,
    /// Most sockets of every kind at once (listeners, connections including orphans
    /// and TIME-WAIT, UDP sockets). At the cap a SYN or cookie ACK is answered with RST
    /// and `tcp_connect`, `tcp_listen`, `udp_bind` fail (`ResourceLimit`). Default 65536.
    pub max_sockets: usize,
    /// Budget for socket buffer memory: TCP receive and send buffers and scoreboards as
    /// allocated (they grow on demand up to `tcp_rx_buffer` / `tcp_tx_buffer`), and the
    /// datagrams queued on UDP sockets. Buffers grow only within what is left of it,
    /// so a connection's receive window shrinks to the storage it has and a send takes
    /// only what fits (every buffer may still hold 2 KiB). Within 1/16 of the budget
    /// the stack is under memory pressure (`Stats::memory_pressure`) until usage falls
    /// below 3/4 of it: new connections are refused with RST (`tcp_connect` fails) and
    /// received UDP datagrams are dropped. Default 256 MiB (Linux: `tcp_mem`).
    pub buffer_memory: usize,
    /// Memory for IP reassembly (RFC 791 3.2, RFC 8200 4.5): the bytes of incomplete
    /// datagrams held. A fragment that would exceed it is dropped. 0 turns reassembly
    /// off (every fragment is dropped as `DropReason::Fragment`). Default 4 MiB (Linux:
    /// `ipfrag_high_thresh`). Each datagram is at most 64 KiB by construction.
    pub reassembly_memory: usize,
    /// Most datagrams in reassembly at once (including ones discarded for overlapping
    /// fragments, kept until their timeout so that their later fragments are dropped
    /// too, RFC 5722). Default 256.
    pub reassembly_datagrams: usize,
    /// How long an IPv4 datagram may take to reassemble from its first fragment; then
    /// its fragments are dropped and, if the first one (offset 0) arrived, an ICMP time
    /// exceeded (code 1) goes to the source (RFC 792, RFC 1122 3.3.2). Default 30 s
    /// (Linux's `ipfrag_time`; RFC 791 suggests 15 s).
    pub reassembly_timeout_v4: Duration,
    /// The same for IPv6: 60 s (RFC 8200 4.5).
    pub reassembly_timeout_v6: Duration,
    /// Path MTU entries (RFC 1191, RFC 8201): most destinations remembered; a full
    /// table replaces the entry that expires first. Default 1024.
    pub pmtu_entries: usize,
    /// Age of a path MTU estimate before the link MTU is tried again: 10 minutes
    /// (RFC 1191 6.3, RFC 8201 4).
    pub pmtu_timeout: Duration,
    /// Smallest IPv4 path MTU a "fragmentation needed" may set: reports below it (and
    /// above 68, the minimum of RFC 791 3.2; below 68 they are ignored) set this value.
    /// Default 576 (the datagram size every host must accept, RFC 791; Linux uses 552).
    /// IPv6 never goes below 1280 (RFC 8201 4).
    pub pmtu_min_v4: usize,
    /// RFC 5961 section 7: at most one ACK per this interval per connection in answer
    /// to segments it rejects without data (challenge ACKs for RSTs and SYNs, ACKs for
    /// out-of-window or PAWS-failed segments), so they cannot be used to make us
    /// flood; segments with data are always answered. Default 500 ms (Linux's
    /// `tcp_invalid_ratelimit`); `None` answers every one.
    pub challenge_ack_interval: Option<Duration>,
    /// This stack's place among the shards of a multi-queue runtime (see
    /// [`crate::shard`]): packets it does not own are handed back by `Stack::input`, and
    /// the connections it opens use ports whose 4-tuples it owns. `None` (the default):
    /// one stack owns everything.
    pub shard: Option<crate::shard::Shard>,
}

impl Config {
    /// Change some fields of this value and return it: how code outside the crate
    /// writes what a struct literal with `..` would (the type is `#[non_exhaustive]`,
    /// so fields can be added without breaking callers), e.g.
    /// `Config::default().with(|c| { c.a = x; c.b = y; })`.
    #[must_use]
    pub fn with(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            addrs: Vec::new(),
            mtu: 1500,
            seed: 0,
            reserve_privileged_ports: false,
            ephemeral_ports: (49152, 65535),
            tcp_rx_buffer: 256 * 1024,
            tcp_tx_buffer: 256 * 1024,
            tcp_rx_buffer_max: 6 * 1024 * 1024,
            tcp_tx_buffer_max: 4 * 1024 * 1024,
            tcp_buffer_budget: 256 * 1024 * 1024,
            msl: Duration::from_secs(30),
            rto_initial: Duration::from_secs(1),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(60),
            max_retries: 15,
            syn_retries: 6,
            congestion: CongestionAlgorithm::Cubic,
            pacing: true,
            ack_delay: Some(Duration::from_millis(40)),
            sack: true,
            rack_tlp: true,
            timestamps: true,
            window_scaling: true,
            keepalive: None,
            user_timeout: None,
            udp_rx_queue: 256,
            udp_tx_queue: 256,
            icmp_error_rate: 100,
            syn_cookies: true,
            max_half_open: 1024,
            max_sockets: 65536,
            buffer_memory: 256 << 20,
            reassembly_memory: 4 << 20,
            reassembly_datagrams: 256,
            reassembly_timeout_v4: Duration::from_secs(30),
            reassembly_timeout_v6: Duration::from_secs(60),
            pmtu_entries: 1024,
            pmtu_timeout: Duration::from_secs(600),
            pmtu_min_v4: 576,
            challenge_ack_interval: Some(Duration::from_millis(500)),
            shard: None,
        }
    }
}

impl Config {
    /// Our MSS for a peer of this address family (RFC 9293 3.7.1, RFC 8200 for the
    /// 40-byte IPv6 header).
    pub fn mss_for(&self, remote: IpAddr) -> u16 {
        let ip = match remote {
            IpAddr::V4(_) => 20,
            IpAddr::V6(_) => 40,
        };
        self.mtu.saturating_sub(ip + 20).clamp(64, u16::MAX as usize) as u16
    }
}

//! Configuration of the sans-IO core.

use std::net::IpAddr;
use std::time::Duration;

/// Everything the core needs to know up front. `Config::default()` is a sensible
/// server-side configuration; tests shorten the timers.
#[derive(Clone, Debug)]
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
    /// Per-connection receive buffer (the most we advertise as window).
    pub tcp_rx_buffer: usize,
    /// Per-connection send buffer.
    pub tcp_tx_buffer: usize,
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
    /// Datagrams queued per UDP socket before new ones are dropped.
    pub udp_rx_queue: usize,
    /// Datagrams queued for transmission per UDP socket before `send` says `WouldBlock`.
    pub udp_tx_queue: usize,
    /// At most this many ICMP errors (port unreachable) per second, RFC 1812 4.3.2.8 /
    /// RFC 4443 2.4(f) rate limiting.
    pub icmp_error_rate: u32,
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
            msl: Duration::from_secs(30),
            rto_initial: Duration::from_secs(1),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(60),
            max_retries: 15,
            syn_retries: 6,
            udp_rx_queue: 256,
            udp_tx_queue: 256,
            icmp_error_rate: 100,
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

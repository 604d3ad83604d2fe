//! ICMP and ICMPv6: echo replies (RFC 792, RFC 4443 4.2), the errors we send (port
//! unreachable, RFC 1122 4.1.3.1, RFC 4443 3.1; reassembly time exceeded, in `frag`)
//! and their rate limit, a token bucket (RFC 1812 4.3.2.8, RFC 4443 2.4(f)); and the
//! errors we receive.
//!
//! A received error (destination unreachable, time exceeded, fragmentation needed,
//! packet too big) quotes the packet that caused it. It is acted on only if that quote
//! is one of our TCP or UDP packets (its source is the address the error came to) for
//! a socket that exists; for TCP the quoted sequence number must also be in flight
//! (RFC 5927 4.1). What it means (RFC 1122 4.2.3.9, RFC 4443 3, and Linux's mapping to
//! errno): hard errors (port and protocol unreachable, administrative prohibitions,
//! unknown networks and hosts) and soft ones (network or host unreachable, time
//! exceeded); `stack/tcp.rs` and `stack/udp.rs` apply them. "Fragmentation needed"
//! (RFC 1191) and "packet too big" (RFC 8201) lower the path MTU (`pmtu`). Anything
//! else is counted and ignored.

use std::net::SocketAddr;

use super::pmtu;
use super::tcp::IcmpNews;
use super::Stack;
use crate::error::ConnError;
use crate::policy::rules::{Direction, PacketInfo};
use crate::time::Instant;
use crate::wire::{self, icmp, proto, DropReason, IcmpRepr, IcmpV4Message, IcmpV6Message, IpHeader};

/// `rate` tokens a second, at most `rate` saved up; one per ICMP error sent.
pub(super) struct TokenBucket {
    tokens: u32,
    refill: Instant,
}

impl TokenBucket {
    pub(super) fn new(rate: u32) -> TokenBucket {
        TokenBucket { tokens: rate, refill: Instant::ZERO }
    }

    /// Take a token if there is one (refilling for the time since the last refill).
    pub(super) fn take(&mut self, now: Instant, rate: u32) -> bool {
        if rate == 0 {
            return false;
        }
        let elapsed = now.saturating_duration_since(self.refill);
        let add = (elapsed.as_micros() * rate as u128 / 1_000_000) as u64;
        if add > 0 {
            self.tokens = (self.tokens as u64 + add).min(rate as u64) as u32;
            self.refill = now;
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }
}

/// What an ICMPv4 destination unreachable code means for a socket: the error and
/// whether it is hard (RFC 1122 4.2.3.9: codes 2 and 3 hard, 0, 1 and 5 soft; the
/// rest as Linux's `icmp_err_convert`). `None`: a code we do not know (ignored).
fn v4_unreachable(code: u8) -> Option<(ConnError, bool)> {
    use icmp::v4_unreach::*;
    Some(match code {
        NET | NET_TOS => (ConnError::NetworkUnreachable, false),
        HOST | HOST_TOS | SOURCE_ROUTE_FAILED => (ConnError::HostUnreachable, false),
        PROTOCOL | PORT => (ConnError::Refused, true),
        NET_UNKNOWN | NET_PROHIBITED => (ConnError::NetworkUnreachable, true),
        HOST_UNKNOWN | HOST_ISOLATED | HOST_PROHIBITED | ADMIN_PROHIBITED | PRECEDENCE_VIOLATION
        | PRECEDENCE_CUTOFF => (ConnError::HostUnreachable, true),
        _ => return None,
    })
}

/// The same for ICMPv6 (RFC 4443 3.1; Linux's `icmpv6_err_convert`).
fn v6_unreachable(code: u8) -> Option<(ConnError, bool)> {
    use icmp::v6_unreach::*;
    Some(match code {
        NO_ROUTE => (ConnError::NetworkUnreachable, false),
        BEYOND_SCOPE | ADDRESS => (ConnError::HostUnreachable, false),
        ADMIN_PROHIBITED | POLICY_FAILED | REJECT_ROUTE => (ConnError::HostUnreachable, true),
        PORT => (ConnError::Refused, true),
        _ => return None,
    })
}

impl Stack {
    pub(super) fn icmp_input(&mut self, now: Instant, ip: &IpHeader, m: &IcmpRepr<'_>, raw: &[u8]) {
        let icmp_type = match *m {
            IcmpRepr::V4(IcmpV4Message::EchoRequest { .. }) => Some(8),
            IcmpRepr::V6(IcmpV6Message::EchoRequest { .. }) => Some(128),
            _ => None,
        };
        // Echo requests start something (the policy decides); errors relate to flows.
        if let Some(t) = icmp_type {
            let info = PacketInfo {
                dir: Direction::In,
                proto: ip.protocol,
                src: ip.src,
                dst: ip.dst,
                sport: 0,
                dport: 0,
                icmp_type: Some(t),
            };
            if !self.policy_admits(now, &info, false, |s, _| s.icmp_unreachable(now, ip, raw, true)) {
                return;
            }
        }
        let (src, dst) = (ip.dst, ip.src);
        // Echo requests: RFC 792 and RFC 4443 4.2, reply with the same identifier,
        // sequence number and data. Errors: what one says, and the packet it quotes.
        let (news, invoking) = match *m {
            IcmpRepr::V4(IcmpV4Message::EchoRequest { ident, seq, data }) => {
                let reply = IcmpRepr::V4(IcmpV4Message::EchoReply { ident, seq, data });
                return self.echo_reply(src, dst, &reply);
            }
            IcmpRepr::V6(IcmpV6Message::EchoRequest { ident, seq, data }) => {
                let reply = IcmpRepr::V6(IcmpV6Message::EchoReply { ident, seq, data });
                return self.echo_reply(src, dst, &reply);
            }
            IcmpRepr::V4(IcmpV4Message::DestUnreachable { code, invoking }) => match v4_unreachable(code) {
                Some((error, hard)) => (IcmpNews::Error { error, hard }, invoking),
                None => return self.count_drop(DropReason::IcmpIgnored, "unknown unreachable code"),
            },
            IcmpRepr::V6(IcmpV6Message::DestUnreachable { code, invoking }) => match v6_unreachable(code) {
                Some((error, hard)) => (IcmpNews::Error { error, hard }, invoking),
                None => return self.count_drop(DropReason::IcmpIgnored, "unknown unreachable code"),
            },
            // RFC 1122 4.2.3.9: time exceeded is a soft error (Linux: EHOSTUNREACH).
            IcmpRepr::V4(IcmpV4Message::TimeExceeded { invoking, .. })
            | IcmpRepr::V6(IcmpV6Message::TimeExceeded { invoking, .. }) => {
                (IcmpNews::Error { error: ConnError::HostUnreachable, hard: false }, invoking)
            }
            IcmpRepr::V4(IcmpV4Message::FragNeeded { mtu, invoking }) => {
                // RFC 1191 7: a router that predates RFC 1191 reports 0; guess from the
                // quoted packet's total length.
                let quoted_len = invoking.get(2..4).map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
                match pmtu::usable_mtu(false, usize::from(mtu), quoted_len, &self.cfg) {
                    Some(mtu) => (IcmpNews::PathMtu(mtu), invoking),
                    None => return self.count_drop(DropReason::IcmpErrorBadMtu, "fragmentation needed: MTU below 68"),
                }
            }
            IcmpRepr::V6(IcmpV6Message::PacketTooBig { mtu, invoking }) => {
                let mtu = pmtu::usable_mtu(true, usize::try_from(mtu).unwrap_or(usize::MAX), 0, &self.cfg)
                    .unwrap_or(pmtu::IPV6_MIN_MTU);
                (IcmpNews::PathMtu(mtu), invoking)
            }
            _ => return self.count_drop(DropReason::IcmpIgnored, "not an echo request or an error we act on"),
        };
        // The quote must be one of our packets, sent from the address this came to.
        let Some(q) = icmp::parse_quoted(invoking).filter(|q| q.src == ip.dst) else {
            return self.count_drop(DropReason::IcmpErrorNoSocket, "ICMP error quoting no packet of ours");
        };
        let local = SocketAddr::new(q.src, q.src_port);
        let remote = SocketAddr::new(q.dst, q.dst_port);
        match (q.protocol, q.tcp_seq) {
            (proto::TCP, Some(seq)) => self.tcp_icmp(now, local, remote, seq, news),
            _ => self.udp_icmp(now, local, remote, news),
        }
    }

    /// An echo reply (RFC 792, RFC 4443 4.2), as fragments if it exceeds the path MTU.
    fn echo_reply(&mut self, src: std::net::IpAddr, dst: std::net::IpAddr, reply: &IcmpRepr<'_>) {
        let len = wire::ip_header_len(dst) + reply.buffer_len();
        let mtu = self.path_mtu(dst);
        let sent = if len <= mtu {
            self.queue_ctrl(|buf| wire::emit_icmp(buf, src, dst, reply))
        } else {
            let mut packet = self.pool.pop().unwrap_or_default();
            packet.clear();
            packet.resize(len, 0);
            match wire::emit_icmp(&mut packet, src, dst, reply) {
                Ok(_) => self.send_fragmented(packet, mtu),
                Err(e) => {
                    // Larger than an IP datagram can be (an IPv6 request of 65535
                    // bytes after its extension headers).
                    self.stats.ctrl_dropped += 1;
                    tracing::debug!(?e, "echo reply not emitted");
                    self.recycle(packet);
                    false
                }
            }
        };
        if sent {
            self.stats.icmp_echo_replies += 1;
        }
    }

    /// A UDP datagram (`raw`, as received) found no socket: RFC 1122 4.1.3.1 / RFC 4443
    /// 3.1 port unreachable, rate limited.
    pub(super) fn icmp_port_unreachable(&mut self, now: Instant, ip: &IpHeader, raw: &[u8]) {
        self.icmp_unreachable(now, ip, raw, false);
    }

    /// Destination unreachable for the packet `raw`: port unreachable, or (`admin`)
    /// communication administratively prohibited (RFC 1812 5.2.7.1, RFC 4443 3.1 code
    /// 1), which a policy's reject sends. Rate limited like every ICMP error.
    pub(super) fn icmp_unreachable(&mut self, now: Instant, ip: &IpHeader, raw: &[u8], admin: bool) {
        if !self.icmp_limit.take(now, self.cfg.icmp_error_rate) {
            self.stats.icmp_errors_rate_limited += 1;
            return;
        }
        let v6 = ip.dst.is_ipv6();
        // As much as fits 576 / 1280 bytes (RFC 1812 4.3.2.3, RFC 4443 2.4(c)) and, on a
        // smaller link, the MTU.
        let quote = icmp::error_quote(raw, v6);
        let room = self.cfg.mtu.saturating_sub(wire::ip_header_len(ip.src) + icmp::ICMP_HEADER_LEN);
        let quote = &quote[..quote.len().min(room)];
        let msg = match (v6, admin) {
            (true, false) => {
                IcmpRepr::V6(IcmpV6Message::DestUnreachable { code: icmp::v6_unreach::PORT, invoking: quote })
            }
            (true, true) => IcmpRepr::V6(IcmpV6Message::DestUnreachable {
                code: icmp::v6_unreach::ADMIN_PROHIBITED,
                invoking: quote,
            }),
            (false, false) => {
                IcmpRepr::V4(IcmpV4Message::DestUnreachable { code: icmp::v4_unreach::PORT, invoking: quote })
            }
            (false, true) => IcmpRepr::V4(IcmpV4Message::DestUnreachable {
                code: icmp::v4_unreach::ADMIN_PROHIBITED,
                invoking: quote,
            }),
        };
        let (src, dst) = (ip.dst, ip.src);
        if self.queue_ctrl(|buf| wire::emit_icmp(buf, src, dst, &msg)) {
            self.stats.icmp_unreachable_sent += 1;
        }
    }
}

//! ICMP and ICMPv6: echo replies (RFC 792, RFC 4443 4.2), the port unreachable errors
//! we send (RFC 1122 4.1.3.1, RFC 4443 3.1) and their rate limit, a token bucket
//! (RFC 1812 4.3.2.8, RFC 4443 2.4(f)). Other ICMP messages are counted and ignored.

use super::Stack;
use crate::policy::rules::{Direction, PacketInfo};
use crate::time::Instant;
use crate::wire::{self, icmp, DropReason, IcmpRepr, IcmpV4Message, IcmpV6Message, IpHeader};

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
    fn take(&mut self, now: Instant, rate: u32) -> bool {
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
        // RFC 792 (echo) and RFC 4443 4.2: reply with the same identifier, sequence
        // number and data.
        let reply = match *m {
            IcmpRepr::V4(IcmpV4Message::EchoRequest { ident, seq, data }) => {
                IcmpRepr::V4(IcmpV4Message::EchoReply { ident, seq, data })
            }
            IcmpRepr::V6(IcmpV6Message::EchoRequest { ident, seq, data }) => {
                IcmpRepr::V6(IcmpV6Message::EchoReply { ident, seq, data })
            }
            _ => return self.count_drop(DropReason::IcmpIgnored, "not an echo request"),
        };
        if self.queue_ctrl(|buf| wire::emit_icmp(buf, src, dst, &reply)) {
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

//! Shards: one [`crate::Stack`] per queue of a multi-queue device, each owning a share
//! of the flows and sharing nothing with the others (the shape of mTCP and Seastar: one
//! stack per core). The runtime builds them (`RuntimeConfig::queues`); this module is
//! the rule, a pure function of a packet that every shard computes alike:
//!
//! - TCP: a keyed hash of the 4-tuple ([`Shard::tcp_owner`]), modulo the number of
//!   shards, so that every segment of a connection, in either direction, has one
//!   owner;
//! - ICMP errors quoting one of our TCP segments: the owner of the quoted connection;
//! - UDP, ICMP errors quoting UDP, and IP fragments before reassembly: shard 0, which
//!   holds every UDP socket and reassembles every fragmented datagram (a reassembled
//!   TCP segment then goes to its owner, see [`crate::Stack::poll_foreign`]);
//! - ICMP echo requests (no state): whichever shard reads them.
//!
//! Where a packet arrives is the device's choice. The runtime gives Linux's
//! multi-queue TUN a steering program (`TUNSETSTEERINGEBPF`, `runtime/steer.rs`) that
//! computes this very rule, so every TCP segment of a connection arrives at its owner
//! and UDP and fragments at shard 0. Where the kernel refuses the program it picks
//! queues itself (keeping a flow on the queue that last wrote one of its packets, by
//! its own hash otherwise), and a packet that arrives elsewhere is handed over:
//! [`crate::Stack::input`] returns [`Input::Elsewhere`] without touching any state and
//! the runtime passes the bytes to the owner's stack. Hand-offs can reorder a flow's
//! packets (a handed-off segment may be overtaken by one that came straight to the
//! owner), which TCP tolerates; with the steering program only ICMP errors are handed
//! off.
//!
//! Connections we open choose an ephemeral port whose 4-tuple this shard owns, so no
//! two shards can create the same 4-tuple; explicit binds and listeners are the
//! runtime's to apply to every shard.

use std::net::{IpAddr, SocketAddr};

use crate::rand::SipKey;
use crate::wire::icmp::{self, IcmpV4Message, IcmpV6Message};
use crate::wire::{proto, IcmpRepr, Packet, Transport};

/// Most shards a runtime can have (queues of one TUN device: Linux allows 256).
pub const MAX_SHARDS: u16 = 256;

/// The multipliers of the ownership hash ([`Shard::tcp_owner`]): the 64-bit golden
/// ratio and MurmurHash3's 64-bit finaliser constant, odd, so each multiplication is a
/// bijection.
pub const MIX_M1: u64 = 0x9e37_79b9_7f4a_7c15;
pub const MIX_M2: u64 = 0xff51_afd7_ed55_8ccd;

/// This stack's place among the shards of one runtime (`Config::shard`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    index: u16,
    count: u16,
    key: SipKey,
}

/// What [`crate::Stack::input`] did with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// Processed here (or dropped and counted).
    Done,
    /// Owned by this other shard: nothing was done or counted here except
    /// `Stats::shard_handoffs`; give the same bytes to that shard's `input`.
    Elsewhere(u16),
}

impl Shard {
    /// Shard `index` of `count` (1..=[`MAX_SHARDS`]); `key` must be the same for every
    /// shard of one runtime. `None` for an index out of range or a bad count.
    pub fn new(index: u16, count: u16, key: SipKey) -> Option<Shard> {
        ((1..=MAX_SHARDS).contains(&count) && index < count).then_some(Shard { index, count, key })
    }

    pub fn index(&self) -> u16 {
        self.index
    }

    pub fn count(&self) -> u16 {
        self.count
    }

    /// The shard that owns the TCP connection between our `local` and the peer's
    /// `remote` address.
    ///
    /// The function is the one the runtime's steering program computes in the kernel
    /// (`runtime/steer.rs`), so that the device delivers a flow's packets to their
    /// owner: over the 32-bit big-endian words of the peer's address, ours, and the
    /// ports word (peer's port << 16 | ours), in the order a packet from the peer
    /// carries them, `h = k0`, then per word `h = (h ^ w) * M1; h ^= h >> 32`, then
    /// `h = (h ^ k1) * M2; h ^= h >> 33`, and the owner is `(h mod 2^32) mod count`.
    pub fn tcp_owner(&self, local: SocketAddr, remote: SocketAddr) -> u16 {
        if self.count == 1 {
            return 0;
        }
        let mut h = self.key.0;
        let mut word = |w: u32| {
            h = (h ^ u64::from(w)).wrapping_mul(MIX_M1);
            h ^= h >> 32;
        };
        for ip in [remote.ip(), local.ip()] {
            match ip {
                IpAddr::V4(a) => word(u32::from(a)),
                IpAddr::V6(a) => {
                    for c in a.octets().chunks_exact(4) {
                        word(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
                    }
                }
            }
        }
        word(u32::from(remote.port()) << 16 | u32::from(local.port()));
        h = (h ^ self.key.1).wrapping_mul(MIX_M2);
        h ^= h >> 33;
        ((h & 0xffff_ffff) % u64::from(self.count)) as u16
    }

    /// The two halves of the ownership key (for the steering program).
    pub fn key(&self) -> SipKey {
        self.key
    }

    /// The shard that owns a whole (not fragmented) packet we received.
    pub fn owner(&self, p: &Packet<'_>) -> u16 {
        if self.count == 1 {
            return 0;
        }
        match &p.transport {
            Transport::Tcp(seg) => {
                self.tcp_owner(SocketAddr::new(p.ip.dst, seg.dst_port), SocketAddr::new(p.ip.src, seg.src_port))
            }
            Transport::Udp(_) => 0,
            Transport::Icmp(m) => {
                let invoking = match *m {
                    IcmpRepr::V4(IcmpV4Message::DestUnreachable { invoking, .. })
                    | IcmpRepr::V4(IcmpV4Message::TimeExceeded { invoking, .. })
                    | IcmpRepr::V4(IcmpV4Message::FragNeeded { invoking, .. })
                    | IcmpRepr::V6(IcmpV6Message::DestUnreachable { invoking, .. })
                    | IcmpRepr::V6(IcmpV6Message::TimeExceeded { invoking, .. })
                    | IcmpRepr::V6(IcmpV6Message::PacketTooBig { invoking, .. }) => invoking,
                    // Echo and the rest: no state, answered where read.
                    _ => return self.index,
                };
                match icmp::parse_quoted(invoking) {
                    // The quote is a packet we sent: its source is our side.
                    Some(q) if q.protocol == proto::TCP => {
                        self.tcp_owner(SocketAddr::new(q.src, q.src_port), SocketAddr::new(q.dst, q.dst_port))
                    }
                    _ => 0,
                }
            }
        }
    }

    /// Owner of a fragment (before reassembly): shard 0.
    pub const FRAGMENT_OWNER: u16 = 0;

    /// Owner of UDP sockets: shard 0.
    pub const UDP_OWNER: u16 = 0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seq::SeqNum;
    use crate::wire::{self, TcpFlags, TcpOptions, TcpRepr};
    use proptest::prelude::*;

    fn segment(src_port: u16, dst_port: u16) -> TcpRepr<'static> {
        TcpRepr {
            src_port,
            dst_port,
            seq: SeqNum(1),
            ack: SeqNum(0),
            flags: TcpFlags::SYN,
            window: 1000,
            urgent: 0,
            options: TcpOptions::default(),
            payload: &[],
        }
    }

    fn key() -> SipKey {
        SipKey(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210)
    }

    #[test]
    fn new_checks_index_and_count() {
        assert!(Shard::new(0, 0, key()).is_none());
        assert!(Shard::new(2, 2, key()).is_none());
        assert!(Shard::new(0, MAX_SHARDS + 1, key()).is_none());
        assert!(Shard::new(255, MAX_SHARDS, key()).is_some());
        let s = Shard::new(1, 2, key()).unwrap();
        assert_eq!((s.index(), s.count()), (1, 2));
    }

    #[test]
    fn one_shard_owns_everything() {
        let s = Shard::new(0, 1, key()).unwrap();
        for port in 1..200u16 {
            let local: SocketAddr = "10.0.0.2:80".parse().unwrap();
            assert_eq!(s.tcp_owner(local, SocketAddr::new("10.0.0.1".parse().unwrap(), port)), 0);
        }
    }

    #[test]
    fn flows_spread_over_the_shards() {
        let s = Shard::new(0, 4, key()).unwrap();
        let local: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let mut n = [0u32; 4];
        for port in 40000..44000u16 {
            n[s.tcp_owner(local, SocketAddr::new("10.0.0.1".parse().unwrap(), port)) as usize] += 1;
        }
        // 1000 expected each; a keyed hash stays well within +-15%.
        assert!(n.iter().all(|&c| (850..1150).contains(&c)), "{n:?}");
        // Another key spreads differently (a peer cannot aim at one shard).
        let other = Shard::new(0, 4, SipKey(1, 2)).unwrap();
        let differ = (40000..40100u16)
            .filter(|&p| {
                let r = SocketAddr::new("10.0.0.1".parse().unwrap(), p);
                s.tcp_owner(local, r) != other.tcp_owner(local, r)
            })
            .count();
        assert!(differ > 50, "{differ}");
    }

    /// A segment we send and the peer's segment of the same connection have one owner,
    /// and so does an ICMP error quoting ours.
    #[test]
    fn both_directions_and_icmp_errors_agree() {
        let s = Shard::new(1, 3, key()).unwrap();
        let (us, peer): (SocketAddr, SocketAddr) = ("10.0.0.2:80".parse().unwrap(), "10.0.0.1:40001".parse().unwrap());
        let seg = segment(peer.port(), us.port());
        let mut buf = [0u8; 100];
        let n = wire::emit_tcp(&mut buf, peer.ip(), us.ip(), &seg).unwrap();
        let p = wire::parse(&buf[..n]).unwrap();
        let owner = s.owner(&p);
        assert_eq!(owner, s.tcp_owner(us, peer));
        // Our segment, quoted by a router's unreachable.
        let ours = segment(us.port(), peer.port());
        let mut q = [0u8; 100];
        let qn = wire::emit_tcp(&mut q, us.ip(), peer.ip(), &ours).unwrap();
        let err = IcmpRepr::V4(IcmpV4Message::DestUnreachable { code: 1, invoking: &q[..qn] });
        let mut e = [0u8; 200];
        let en = wire::emit_icmp(&mut e, "192.0.2.1".parse().unwrap(), us.ip(), &err).unwrap();
        assert_eq!(s.owner(&wire::parse(&e[..en]).unwrap()), owner);
        // An echo request stays where it was read.
        let echo = IcmpRepr::V4(IcmpV4Message::EchoRequest { ident: 1, seq: 1, data: b"x" });
        let en = wire::emit_icmp(&mut e, peer.ip(), us.ip(), &echo).unwrap();
        assert_eq!(s.owner(&wire::parse(&e[..en]).unwrap()), 1);
    }

    proptest! {
        #[test]
        fn owner_is_in_range_and_stable(count in 1u16..=MAX_SHARDS, k0: u64, k1: u64, a: u32, b: u32, lp: u16, rp: u16) {
            let s = Shard::new(0, count, SipKey(k0, k1)).unwrap();
            let (l, r) = (SocketAddr::new(IpAddr::from(a.to_be_bytes()), lp), SocketAddr::new(IpAddr::from(b.to_be_bytes()), rp));
            let o = s.tcp_owner(l, r);
            prop_assert!(o < count);
            // Every shard of the runtime computes the same owner.
            let t = Shard::new(count - 1, count, SipKey(k0, k1)).unwrap();
            prop_assert_eq!(t.tcp_owner(l, r), o);
        }
    }
}

//! Port tables: bind rules and ephemeral port selection (RFC 6056).
//!
//! One table per protocol. A binding is an (address, port) pair held by one socket.
//! Rules (the ones BSD sockets users expect):
//! - the same (address, port) twice -> `AddrInUse`;
//! - a wildcard address (0.0.0.0 or ::) conflicts with every specific address of the
//!   same family on that port, and vice versa; IPv4 and IPv6 never conflict (the stack
//!   behaves like Linux with `bindv6only=1`);
//! - port 0 asks for an ephemeral port;
//! - with `reserve_privileged` ports 1..1024 -> `PermissionDenied`.
//!
//! Address ownership (`AddrNotAvailable`) is checked by the stack, which knows its
//! addresses. Errors are typed ([`BindError`], [`ConnectError`]), with the `io` kinds
//! above.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use crate::demux::KeyedState;
use crate::error::{BindError, ConnectError};
use crate::rand::{Rng, SipKey};
use crate::socket::SocketHandle;

/// Key of the per-port hash map. Ports are chosen by local applications and by the
/// ephemeral allocator, not by peers, so a fixed key is enough here (the demux, whose
/// keys peers do choose, is keyed from the seed).
const TABLE_KEY: SipKey = SipKey(0x7475_6e73_7461_636b, 0x706f_7274_7461_626c);

/// Highest privileged port (the classic BSD rule: 1..=1023 need privilege).
const LAST_PRIVILEGED: u16 = 1023;

/// The usable part of an inclusive range: (first port, number of ports). Port 0 is never
/// handed out; an inverted range is empty.
fn span(range: (u16, u16)) -> Option<(u16, u32)> {
    let lo = range.0.max(1);
    let hi = range.1;
    if lo > hi {
        return None;
    }
    Some((lo, (hi - lo) as u32 + 1))
}

/// The `index`-th port of a non-empty span, wrapping (`index` may exceed the span).
fn nth(lo: u16, num: u32, index: u64) -> u16 {
    // `index % num < num <= 65535 - lo + 1`, so the sum fits in u16.
    lo + (index % num as u64) as u16
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// The conflict rule for two addresses bound to the same port.
fn addrs_conflict(a: IpAddr, b: IpAddr) -> bool {
    same_family(a, b) && (a == b || a.is_unspecified() || b.is_unspecified())
}

/// Bindings of one protocol.
#[derive(Debug)]
pub struct PortTable {
    range: (u16, u16),
    reserve_privileged: bool,
    /// Port -> the addresses bound on it and their owners. A port rarely carries more
    /// than a couple of addresses, so the inner list is searched linearly.
    ports: HashMap<u16, Vec<(IpAddr, SocketHandle)>, KeyedState>,
    len: usize,
}

impl PortTable {
    /// `range` is the inclusive ephemeral range.
    pub fn new(range: (u16, u16), reserve_privileged: bool) -> PortTable {
        PortTable { range, reserve_privileged, ports: HashMap::with_hasher(KeyedState(TABLE_KEY)), len: 0 }
    }

    /// Bind `(ip, port)` to `owner`. Port 0 picks a free ephemeral port (RFC 6056
    /// algorithm 1: random start, then probe; exhaustion -> `BindError::NoFreePort`,
    /// after at most one pass over the range). Returns the bound port.
    ///
    /// The privileged-port rule applies to ports the caller names, not to ports the
    /// allocator picks from the configured range.
    pub fn bind(&mut self, ip: IpAddr, port: u16, owner: SocketHandle, rng: &mut Rng) -> Result<u16, BindError> {
        if port == 0 {
            let port = self.pick_ephemeral(ip, rng)?;
            self.insert(ip, port, owner);
            return Ok(port);
        }
        if self.reserve_privileged && port <= LAST_PRIVILEGED {
            return Err(BindError::Privileged { port });
        }
        if let Some(&(held, by)) = self.conflicting(ip, port) {
            return Err(BindError::AddrInUse {
                addr: SocketAddr::new(ip, port),
                held: SocketAddr::new(held, port),
                held_by: by,
            });
        }
        self.insert(ip, port, owner);
        Ok(port)
    }

    /// RFC 6056 3.3.1 (algorithm 1, "simple port randomization"): start at a random
    /// point of the range and probe upwards, wrapping, for one pass at most.
    fn pick_ephemeral(&self, ip: IpAddr, rng: &mut Rng) -> Result<u16, BindError> {
        if let Some((lo, num)) = span(self.range) {
            let start = rng.below(num) as u64;
            for i in 0..num as u64 {
                let port = nth(lo, num, start + i);
                if self.conflicting(ip, port).is_none() {
                    return Ok(port);
                }
            }
        }
        Err(BindError::NoFreePort { ip, range: self.range })
    }

    fn insert(&mut self, ip: IpAddr, port: u16, owner: SocketHandle) {
        debug_assert!(self.conflicting(ip, port).is_none());
        self.ports.entry(port).or_default().push((ip, owner));
        self.len += 1;
    }

    fn conflicting(&self, ip: IpAddr, port: u16) -> Option<&(IpAddr, SocketHandle)> {
        self.ports.get(&port)?.iter().find(|(a, _)| addrs_conflict(*a, ip))
    }

    /// Remove the binding if `owner` holds it. Returns whether it did.
    pub fn unbind(&mut self, ip: IpAddr, port: u16, owner: SocketHandle) -> bool {
        let Some(list) = self.ports.get_mut(&port) else {
            return false;
        };
        let Some(i) = list.iter().position(|&(a, o)| a == ip && o == owner) else {
            return false;
        };
        list.swap_remove(i);
        if list.is_empty() {
            self.ports.remove(&port);
        }
        self.len -= 1;
        true
    }

    /// The socket bound to exactly `(ip, port)`, if any.
    pub fn owner(&self, ip: IpAddr, port: u16) -> Option<SocketHandle> {
        self.ports.get(&port)?.iter().find(|(a, _)| *a == ip).map(|&(_, o)| o)
    }

    /// Whether a bind of `(ip, port)` would conflict with an existing binding.
    pub fn conflicts(&self, ip: IpAddr, port: u16) -> bool {
        self.conflicting(ip, port).is_some()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Input of F() for algorithm 3: local IP, remote IP (family byte + 16 address bytes,
/// IPv4 in the first 4), remote port.
fn encode_peer(local: IpAddr, remote: SocketAddr) -> [u8; 36] {
    fn ip(out: &mut [u8], a: IpAddr) {
        match a {
            IpAddr::V4(a) => {
                out[0] = 4;
                out[1..5].copy_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                out[0] = 6;
                out[1..17].copy_from_slice(&a.octets());
            }
        }
    }
    let mut b = [0u8; 36];
    ip(&mut b[0..17], local);
    ip(&mut b[17..34], remote.ip());
    b[34..36].copy_from_slice(&remote.port().to_be_bytes());
    b
}

/// RFC 6056 algorithm 3 ("simple hash-based port selection") for the local port of an
/// active open: offset = F(local ip, remote ip, remote port, key), then probe
/// `next_ephemeral` upwards from `offset + counter` until `is_free(port)`; the counter
/// advances so consecutive connects to the same peer get different ports. Exhaustion
/// after one pass over the range -> `ConnectError::NoFreePort`, `AddrNotAvailable`
/// (what Linux's connect() says).
pub fn connect_port(
    range: (u16, u16),
    key: &SipKey,
    counter: &mut u32,
    local: IpAddr,
    remote: std::net::SocketAddr,
    mut is_free: impl FnMut(u16) -> bool,
) -> Result<u16, ConnectError> {
    if let Some((lo, num)) = span(range) {
        // RFC 6056 3.3.3: offset = F(local_IP, remote_IP, remote_port, secret_key).
        let offset = key.hash(&encode_peer(local, remote)) % num as u64;
        let base = offset + *counter as u64;
        for i in 0..num {
            let port = nth(lo, num, base + i as u64);
            if is_free(port) {
                // The RFC increments next_ephemeral on every probe, the winning one too.
                *counter = counter.wrapping_add(i + 1);
                return Ok(port);
            }
        }
        *counter = counter.wrapping_add(num);
    }
    Err(ConnectError::NoFreePort { local, remote, range })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::Rng;
    use proptest::prelude::*;
    use std::collections::HashSet;
    use std::io;

    fn h(i: u32) -> SocketHandle {
        SocketHandle::from_raw(i, 0)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const RANGE: (u16, u16) = (49152, 65535);

    #[test]
    fn same_address_twice_is_in_use() {
        let mut t = PortTable::new(RANGE, false);
        let mut rng = Rng::new(1);
        assert_eq!(t.bind(ip("10.0.0.1"), 80, h(1), &mut rng).unwrap(), 80);
        let e = t.bind(ip("10.0.0.1"), 80, h(2), &mut rng).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        // Another specific address on the same port is fine, as is another port.
        t.bind(ip("10.0.0.2"), 80, h(3), &mut rng).unwrap();
        t.bind(ip("10.0.0.1"), 81, h(4), &mut rng).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t.owner(ip("10.0.0.1"), 80), Some(h(1)));
        assert_eq!(t.owner(ip("10.0.0.2"), 80), Some(h(3)));
        assert_eq!(t.owner(ip("10.0.0.3"), 80), None);
    }

    #[test]
    fn wildcard_then_specific_conflicts() {
        let mut t = PortTable::new(RANGE, false);
        let mut rng = Rng::new(1);
        t.bind(ip("0.0.0.0"), 80, h(1), &mut rng).unwrap();
        assert!(t.conflicts(ip("10.0.0.1"), 80));
        let e = t.bind(ip("10.0.0.1"), 80, h(2), &mut rng).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(!t.conflicts(ip("10.0.0.1"), 81));
    }

    #[test]
    fn specific_then_wildcard_conflicts() {
        let mut t = PortTable::new(RANGE, false);
        let mut rng = Rng::new(1);
        t.bind(ip("fd00::1"), 443, h(1), &mut rng).unwrap();
        assert!(t.conflicts(ip("::"), 443));
        let e = t.bind(ip("::"), 443, h(2), &mut rng).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn v4_and_v6_are_independent() {
        let mut t = PortTable::new(RANGE, false);
        let mut rng = Rng::new(1);
        t.bind(ip("0.0.0.0"), 80, h(1), &mut rng).unwrap();
        assert!(!t.conflicts(ip("::"), 80));
        assert!(!t.conflicts(ip("fd00::1"), 80));
        t.bind(ip("::"), 80, h(2), &mut rng).unwrap();
        assert!(t.conflicts(ip("fd00::1"), 80));
        t.bind(ip("fd00::1"), 81, h(3), &mut rng).unwrap();
        assert!(!t.conflicts(ip("0.0.0.0"), 81));
        assert!(t.conflicts(ip("::"), 81));
        t.bind(ip("0.0.0.0"), 81, h(4), &mut rng).unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t.owner(ip("::"), 80), Some(h(2)));
        assert_eq!(t.owner(ip("0.0.0.0"), 80), Some(h(1)));
    }

    #[test]
    fn unbind_then_rebind_and_non_owner_refused() {
        let mut t = PortTable::new(RANGE, false);
        let mut rng = Rng::new(1);
        t.bind(ip("10.0.0.1"), 8080, h(1), &mut rng).unwrap();
        assert!(!t.unbind(ip("10.0.0.1"), 8080, h(2)), "non-owner must not unbind");
        assert!(!t.unbind(ip("10.0.0.2"), 8080, h(1)), "wrong address");
        assert!(!t.unbind(ip("10.0.0.1"), 8081, h(1)), "wrong port");
        assert_eq!(t.owner(ip("10.0.0.1"), 8080), Some(h(1)));
        assert!(t.unbind(ip("10.0.0.1"), 8080, h(1)));
        assert!(!t.unbind(ip("10.0.0.1"), 8080, h(1)), "second unbind is a no-op");
        assert!(t.is_empty());
        t.bind(ip("10.0.0.1"), 8080, h(2), &mut rng).unwrap();
        assert_eq!(t.owner(ip("10.0.0.1"), 8080), Some(h(2)));
        // A wildcard bind waits until every specific binding is gone.
        assert!(t.bind(ip("0.0.0.0"), 8080, h(3), &mut rng).is_err());
        assert!(t.unbind(ip("10.0.0.1"), 8080, h(2)));
        t.bind(ip("0.0.0.0"), 8080, h(3), &mut rng).unwrap();
    }

    #[test]
    fn privileged_ports_reserved_only_when_configured() {
        let mut rng = Rng::new(1);
        let mut t = PortTable::new(RANGE, true);
        for p in [1u16, 80, 1023] {
            let e = t.bind(ip("10.0.0.1"), p, h(1), &mut rng).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
            assert!(e.to_string().contains("reserve_privileged_ports"), "{e}");
        }
        assert_eq!(t.bind(ip("10.0.0.1"), 1024, h(1), &mut rng).unwrap(), 1024);
        assert_eq!(t.len(), 1);
        let mut t = PortTable::new(RANGE, false);
        assert_eq!(t.bind(ip("10.0.0.1"), 80, h(1), &mut rng).unwrap(), 80);
        assert_eq!(t.bind(ip("10.0.0.1"), 1, h(2), &mut rng).unwrap(), 1);
    }

    #[test]
    fn ephemeral_within_range_and_distinct() {
        let range = (50000, 50099);
        let mut t = PortTable::new(range, false);
        let mut rng = Rng::new(42);
        let mut seen = HashSet::new();
        for i in 0..100 {
            let p = t.bind(ip("10.0.0.1"), 0, h(i), &mut rng).unwrap();
            assert!((range.0..=range.1).contains(&p), "{p}");
            assert!(seen.insert(p), "port {p} handed out twice");
            assert_eq!(t.owner(ip("10.0.0.1"), p), Some(h(i)));
        }
        let e = t.bind(ip("10.0.0.1"), 0, h(100), &mut rng).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        // The other family still has the whole range.
        let p = t.bind(ip("fd00::1"), 0, h(101), &mut rng).unwrap();
        assert!((range.0..=range.1).contains(&p));
    }

    #[test]
    fn ephemeral_start_is_random() {
        // Algorithm 1 starts at a random point: different seeds give different first
        // ports (with 16384 ports, 8 seeds all colliding would be astronomically unlikely).
        let firsts: HashSet<u16> = (0..8u64)
            .map(|s| PortTable::new(RANGE, false).bind(ip("10.0.0.1"), 0, h(1), &mut Rng::new(s)).unwrap())
            .collect();
        assert!(firsts.len() > 1, "{firsts:?}");
    }

    #[test]
    fn ephemeral_exhaustion_tiny_range() {
        let mut t = PortTable::new((50000, 50003), false);
        let mut rng = Rng::new(7);
        let mut got = HashSet::new();
        for i in 0..4 {
            got.insert(t.bind(ip("0.0.0.0"), 0, h(i), &mut rng).unwrap());
        }
        assert_eq!(got, (50000..=50003).collect());
        for _ in 0..3 {
            let e = t.bind(ip("10.0.0.1"), 0, h(9), &mut rng).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
            assert!(e.to_string().contains("no free ephemeral port in 50000-50003"), "{e}");
        }
        assert_eq!(t.len(), 4);
        // Freeing one port makes exactly that one available again.
        let freed = *got.iter().next().unwrap();
        let holder = t.owner(ip("0.0.0.0"), freed).unwrap();
        assert!(t.unbind(ip("0.0.0.0"), freed, holder));
        assert_eq!(t.bind(ip("10.0.0.1"), 0, h(9), &mut rng).unwrap(), freed);
    }

    #[test]
    fn ephemeral_with_degenerate_ranges() {
        let mut rng = Rng::new(3);
        // Inverted range: empty, an error rather than a panic.
        let mut t = PortTable::new((60000, 50000), false);
        assert_eq!(t.bind(ip("10.0.0.1"), 0, h(1), &mut rng).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        // A range containing port 0 never hands out 0.
        let mut t = PortTable::new((0, 1), false);
        assert_eq!(t.bind(ip("10.0.0.1"), 0, h(1), &mut rng).unwrap(), 1);
        assert!(t.bind(ip("10.0.0.1"), 0, h(2), &mut rng).is_err());
        // The full range, single port at the top.
        let mut t = PortTable::new((65535, 65535), false);
        assert_eq!(t.bind(ip("::"), 0, h(1), &mut rng).unwrap(), 65535);
    }

    #[test]
    fn connect_port_spreads_consecutive_connects() {
        let key = SipKey(11, 22);
        let mut counter = 0u32;
        let local = ip("10.0.0.1");
        let peer: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let mut seen = HashSet::new();
        for _ in 0..64 {
            let before = counter;
            let p = connect_port(RANGE, &key, &mut counter, local, peer, |_| true).unwrap();
            assert!((RANGE.0..=RANGE.1).contains(&p));
            assert!(seen.insert(p), "port {p} repeated for the same peer");
            assert_eq!(counter, before + 1);
        }
    }

    #[test]
    fn connect_port_skips_busy_ports_and_advances_counter() {
        let key = SipKey(5, 6);
        let local = ip("fd00::1");
        let peer: SocketAddr = "[fd00::2]:443".parse().unwrap();
        let range = (40000, 40009);
        // Find where the hash puts this peer, then mark that port and the next busy.
        let mut c = 0;
        let first = connect_port(range, &key, &mut c, local, peer, |_| true).unwrap();
        let busy = [first, if first == range.1 { range.0 } else { first + 1 }];
        let mut counter = 0;
        let mut probes = Vec::new();
        let p = connect_port(range, &key, &mut counter, local, peer, |p| {
            probes.push(p);
            !busy.contains(&p)
        })
        .unwrap();
        assert!(!busy.contains(&p));
        assert_eq!(probes, vec![busy[0], busy[1], p]);
        assert_eq!(counter, 3);
    }

    #[test]
    fn connect_port_offset_depends_on_peer() {
        let key = SipKey(99, 100);
        let local = ip("10.0.0.1");
        let starts: HashSet<u16> = (1..=16u16)
            .map(|port| {
                let peer = SocketAddr::new(ip("10.0.0.2"), port);
                connect_port(RANGE, &key, &mut 0, local, peer, |_| true).unwrap()
            })
            .collect();
        assert!(starts.len() > 1, "every peer got the same offset: {starts:?}");
    }

    #[test]
    fn connect_port_exhaustion_is_addr_not_available() {
        let key = SipKey(1, 1);
        let mut counter = 0;
        let mut calls = 0;
        let e =
            connect_port((50000, 50003), &key, &mut counter, ip("10.0.0.1"), "10.0.0.2:80".parse().unwrap(), |_| {
                calls += 1;
                false
            })
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrNotAvailable);
        assert_eq!(calls, 4, "exactly one pass over the range");
        let e = connect_port((2, 1), &key, &mut counter, ip("10.0.0.1"), "10.0.0.2:80".parse().unwrap(), |_| true)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrNotAvailable);
    }

    // ---- property test against a naive model ----

    const EPH: (u16, u16) = (50000, 50003);
    const PORTS: [u16; 6] = [0, 80, 1024, 50000, 50001, 50003];

    fn ip_pool() -> Vec<IpAddr> {
        ["0.0.0.0", "10.0.0.1", "10.0.0.2", "::", "fd00::1", "fd00::2"].iter().map(|s| ip(s)).collect()
    }

    #[derive(Clone, Debug)]
    enum Op {
        Bind(IpAddr, u16, u32),
        Unbind(IpAddr, u16, u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        let ipv = prop::sample::select(ip_pool());
        let port = prop::sample::select(PORTS.to_vec());
        let any_port = prop_oneof![prop::sample::select(PORTS.to_vec()), EPH.0..=EPH.1];
        prop_oneof![
            3 => (ipv.clone(), port, 0u32..4).prop_map(|(i, p, o)| Op::Bind(i, p, o)),
            2 => (ipv, any_port, 0u32..4).prop_map(|(i, p, o)| Op::Unbind(i, p, o)),
        ]
    }

    /// The conflict rule, written out longhand.
    fn model_conflict(m: &[(IpAddr, u16, SocketHandle)], ip: IpAddr, port: u16) -> bool {
        m.iter().any(|&(a, p, _)| {
            p == port
                && ((a.is_ipv4() && ip.is_ipv4()) || (a.is_ipv6() && ip.is_ipv6()))
                && (a == ip || a.is_unspecified() || ip.is_unspecified())
        })
    }

    proptest! {
        #[test]
        fn port_table_agrees_with_model(
            ops in proptest::collection::vec(op(), 1..120),
            reserve in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let mut t = PortTable::new(EPH, reserve);
            let mut rng = Rng::new(seed);
            let mut m: Vec<(IpAddr, u16, SocketHandle)> = Vec::new();
            for o in ops {
                match o {
                    Op::Bind(a, 0, o) => {
                        let free = (EPH.0..=EPH.1).any(|p| !model_conflict(&m, a, p));
                        match t.bind(a, 0, h(o), &mut rng) {
                            Ok(p) => {
                                prop_assert!(free);
                                prop_assert!((EPH.0..=EPH.1).contains(&p));
                                prop_assert!(!model_conflict(&m, a, p));
                                m.push((a, p, h(o)));
                            }
                            Err(e) => {
                                prop_assert!(!free, "refused while a port was free: {}", e);
                                prop_assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
                            }
                        }
                    }
                    Op::Bind(a, p, o) => {
                        let want = if reserve && p < 1024 {
                            Err(io::ErrorKind::PermissionDenied)
                        } else if model_conflict(&m, a, p) {
                            Err(io::ErrorKind::AddrInUse)
                        } else {
                            m.push((a, p, h(o)));
                            Ok(p)
                        };
                        prop_assert_eq!(t.bind(a, p, h(o), &mut rng).map_err(|e| e.kind()), want);
                    }
                    Op::Unbind(a, p, o) => {
                        let want = match m.iter().position(|&x| x == (a, p, h(o))) {
                            Some(i) => { m.remove(i); true }
                            None => false,
                        };
                        prop_assert_eq!(t.unbind(a, p, h(o)), want);
                    }
                }
                prop_assert_eq!(t.len(), m.len());
                // No duplicate or conflicting bindings inside the table.
                let mut all = Vec::new();
                for (&port, list) in &t.ports {
                    prop_assert!(!list.is_empty());
                    for &(a, o) in list { all.push((a, port, o)); }
                }
                prop_assert_eq!(all.len(), t.len());
                for (i, x) in all.iter().enumerate() {
                    for y in &all[i + 1..] {
                        prop_assert!(!(x.1 == y.1 && addrs_conflict(x.0, y.0)), "{:?} vs {:?}", x, y);
                    }
                }
                // Every query agrees with the model.
                for a in ip_pool() {
                    for p in PORTS.iter().copied().chain(EPH.0..=EPH.1) {
                        prop_assert_eq!(t.conflicts(a, p), model_conflict(&m, a, p));
                        let mo = m.iter().find(|x| x.0 == a && x.1 == p).map(|x| x.2);
                        prop_assert_eq!(t.owner(a, p), mo);
                    }
                }
            }
        }
    }
}

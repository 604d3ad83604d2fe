//! Demultiplexing: which socket gets a packet.
//!
//! O(1): one hash lookup on the exact (protocol, local, remote) tuple; on a miss a
//! listener / bound socket on (local address, port); then one on the wildcard address of
//! the same family. The hasher is keyed from the stack's seed so that peers, who choose
//! their own ports, cannot aim at one bucket.
//!
//! Addresses are compared by IP and port only: the IPv6 flow label and scope id of a
//! `SocketAddrV6` are per-packet / per-interface details that do not name a socket (the
//! stack has one interface), so they are dropped from every key.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::rand::{SipHasher24, SipKey};
use crate::socket::{Protocol, SocketHandle};

/// How a packet found its socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// Exact 4-tuple: an established (or connecting) socket.
    Connection(SocketHandle),
    /// A listener (TCP) or unconnected bound socket (UDP) on the local address or its
    /// family's wildcard.
    Listener(SocketHandle),
}

/// `BuildHasher` for the stack's tables: SipHash-2-4 under a key from the stack's seed.
/// Deterministic for a given key.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyedState(pub(crate) SipKey);

impl BuildHasher for KeyedState {
    type Hasher = SipHasher24;
    #[inline]
    fn build_hasher(&self) -> SipHasher24 {
        self.0.hasher()
    }
}

/// An endpoint as the demux sees it: IP and port (no flow label, no scope id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Endpoint {
    ip: IpAddr,
    port: u16,
}

impl Endpoint {
    fn of(a: SocketAddr) -> Endpoint {
        Endpoint { ip: a.ip(), port: a.port() }
    }

    /// Fixed-size encoding: family, 16 address bytes (IPv4 in the first 4), port.
    fn encode(&self, out: &mut [u8]) {
        match self.ip {
            IpAddr::V4(a) => {
                out[0] = 4;
                out[1..5].copy_from_slice(&a.octets());
                out[5..17].fill(0);
            }
            IpAddr::V6(a) => {
                out[0] = 6;
                out[1..17].copy_from_slice(&a.octets());
            }
        }
        out[17..19].copy_from_slice(&self.port.to_be_bytes());
    }

    /// Same port, the wildcard address of the same family.
    fn wildcard(&self) -> Endpoint {
        let ip = match self.ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        Endpoint { ip, port: self.port }
    }
}

const EP_LEN: usize = 19;

fn proto_byte(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ConnKey {
    proto: Protocol,
    local: Endpoint,
    remote: Endpoint,
}

impl Hash for ConnKey {
    // One write of a fixed 39-byte encoding (consistent with the derived Eq: equal keys
    // encode equally).
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut b = [0u8; 1 + 2 * EP_LEN];
        b[0] = proto_byte(self.proto);
        self.local.encode(&mut b[1..1 + EP_LEN]);
        self.remote.encode(&mut b[1 + EP_LEN..]);
        state.write(&b);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ListenKey {
    proto: Protocol,
    local: Endpoint,
}

impl Hash for ListenKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut b = [0u8; 1 + EP_LEN];
        b[0] = proto_byte(self.proto);
        self.local.encode(&mut b[1..]);
        state.write(&b);
    }
}

#[derive(Debug)]
pub struct Demux {
    connections: HashMap<ConnKey, SocketHandle, KeyedState>,
    listeners: HashMap<ListenKey, SocketHandle, KeyedState>,
}

impl Demux {
    pub fn new(key: SipKey) -> Demux {
        Demux { connections: HashMap::with_hasher(KeyedState(key)), listeners: HashMap::with_hasher(KeyedState(key)) }
    }

    fn conn_key(proto: Protocol, local: SocketAddr, remote: SocketAddr) -> ConnKey {
        ConnKey { proto, local: Endpoint::of(local), remote: Endpoint::of(remote) }
    }

    /// Register a connection. Fails with the current holder if the tuple is taken.
    pub fn insert_connection(
        &mut self,
        proto: Protocol,
        local: SocketAddr,
        remote: SocketAddr,
        h: SocketHandle,
    ) -> Result<(), SocketHandle> {
        use std::collections::hash_map::Entry;
        match self.connections.entry(Self::conn_key(proto, local, remote)) {
            Entry::Occupied(e) => Err(*e.get()),
            Entry::Vacant(e) => {
                e.insert(h);
                Ok(())
            }
        }
    }

    pub fn remove_connection(
        &mut self,
        proto: Protocol,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Option<SocketHandle> {
        self.connections.remove(&Self::conn_key(proto, local, remote))
    }

    pub fn has_connection(&self, proto: Protocol, local: SocketAddr, remote: SocketAddr) -> bool {
        self.connections.contains_key(&Self::conn_key(proto, local, remote))
    }

    /// Register a listener / bound socket on `local` (its IP may be a wildcard).
    pub fn insert_listener(&mut self, proto: Protocol, local: SocketAddr, h: SocketHandle) -> Result<(), SocketHandle> {
        use std::collections::hash_map::Entry;
        match self.listeners.entry(ListenKey { proto, local: Endpoint::of(local) }) {
            Entry::Occupied(e) => Err(*e.get()),
            Entry::Vacant(e) => {
                e.insert(h);
                Ok(())
            }
        }
    }

    pub fn remove_listener(&mut self, proto: Protocol, local: SocketAddr) -> Option<SocketHandle> {
        self.listeners.remove(&ListenKey { proto, local: Endpoint::of(local) })
    }

    /// Exact tuple first, then listener on `local`, then listener on the wildcard of
    /// `local`'s family with the same port.
    pub fn lookup(&self, proto: Protocol, local: SocketAddr, remote: SocketAddr) -> Option<Match> {
        if let Some(&h) = self.connections.get(&Self::conn_key(proto, local, remote)) {
            return Some(Match::Connection(h));
        }
        let local = Endpoint::of(local);
        if let Some(&h) = self.listeners.get(&ListenKey { proto, local }) {
            return Some(Match::Listener(h));
        }
        let any = local.wildcard();
        if any == local {
            return None;
        }
        self.listeners.get(&ListenKey { proto, local: any }).map(|&h| Match::Listener(h))
    }

    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Number of registered listeners / bound sockets.
    pub fn listener_count(&self) -> usize {
        self.listeners.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::SocketAddrV6;

    fn h(i: u32) -> SocketHandle {
        SocketHandle::from_raw(i, 0)
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn demux() -> Demux {
        Demux::new(SipKey(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210))
    }

    #[test]
    fn exact_connection_beats_listeners() {
        let mut d = demux();
        let local = sa("10.0.0.1:80");
        let remote = sa("10.0.0.2:40000");
        d.insert_listener(Protocol::Tcp, sa("0.0.0.0:80"), h(1)).unwrap();
        d.insert_listener(Protocol::Tcp, local, h(2)).unwrap();
        d.insert_connection(Protocol::Tcp, local, remote, h(3)).unwrap();
        assert_eq!(d.lookup(Protocol::Tcp, local, remote), Some(Match::Connection(h(3))));
        // Another peer goes to the specific listener.
        assert_eq!(d.lookup(Protocol::Tcp, local, sa("10.0.0.2:40001")), Some(Match::Listener(h(2))));
        // Another local address on the same port goes to the wildcard listener.
        assert_eq!(d.lookup(Protocol::Tcp, sa("10.0.0.9:80"), remote), Some(Match::Listener(h(1))));
        // Remove the specific listener: the wildcard takes over.
        assert_eq!(d.remove_listener(Protocol::Tcp, local), Some(h(2)));
        assert_eq!(d.lookup(Protocol::Tcp, local, sa("10.0.0.2:40001")), Some(Match::Listener(h(1))));
        // Remove the connection: its packets go to the wildcard listener too.
        assert_eq!(d.remove_connection(Protocol::Tcp, local, remote), Some(h(3)));
        assert_eq!(d.remove_connection(Protocol::Tcp, local, remote), None);
        assert_eq!(d.lookup(Protocol::Tcp, local, remote), Some(Match::Listener(h(1))));
        assert_eq!(d.connection_count(), 0);
        assert_eq!(d.listener_count(), 1);
    }

    #[test]
    fn wildcard_is_per_family_and_per_protocol() {
        let mut d = demux();
        d.insert_listener(Protocol::Tcp, sa("0.0.0.0:80"), h(1)).unwrap();
        assert_eq!(d.lookup(Protocol::Tcp, sa("[fd00::1]:80"), sa("[fd00::2]:1234")), None);
        assert_eq!(d.lookup(Protocol::Udp, sa("10.0.0.1:80"), sa("10.0.0.2:1234")), None);
        assert_eq!(d.lookup(Protocol::Tcp, sa("10.0.0.1:81"), sa("10.0.0.2:1234")), None);
        d.insert_listener(Protocol::Tcp, sa("[::]:80"), h(2)).unwrap();
        assert_eq!(d.lookup(Protocol::Tcp, sa("[fd00::1]:80"), sa("[fd00::2]:1234")), Some(Match::Listener(h(2))));
        assert_eq!(d.lookup(Protocol::Tcp, sa("10.0.0.1:80"), sa("10.0.0.2:1234")), Some(Match::Listener(h(1))));
        // A v4 packet to the v6 wildcard's port does not match `::` (bindv6only).
        assert_eq!(d.remove_listener(Protocol::Tcp, sa("0.0.0.0:80")), Some(h(1)));
        assert_eq!(d.lookup(Protocol::Tcp, sa("10.0.0.1:80"), sa("10.0.0.2:1234")), None);
    }

    #[test]
    fn duplicate_insert_reports_holder() {
        let mut d = demux();
        let (l, r) = (sa("10.0.0.1:5000"), sa("10.0.0.2:53"));
        d.insert_connection(Protocol::Udp, l, r, h(1)).unwrap();
        assert_eq!(d.insert_connection(Protocol::Udp, l, r, h(2)), Err(h(1)));
        // Same tuple, other protocol: independent.
        d.insert_connection(Protocol::Tcp, l, r, h(3)).unwrap();
        d.insert_listener(Protocol::Udp, l, h(4)).unwrap();
        assert_eq!(d.insert_listener(Protocol::Udp, l, h(5)), Err(h(4)));
        assert!(d.has_connection(Protocol::Udp, l, r));
        assert!(!d.has_connection(Protocol::Udp, r, l));
        assert_eq!(d.connection_count(), 2);
    }

    #[test]
    fn flow_label_and_scope_do_not_split_sockets() {
        let mut d = demux();
        let l: SocketAddr = sa("[fd00::1]:443");
        let r: SocketAddr = sa("[fd00::2]:50000");
        d.insert_connection(Protocol::Tcp, l, r, h(1)).unwrap();
        let SocketAddr::V6(r6) = r else { unreachable!() };
        let r_flow = SocketAddr::V6(SocketAddrV6::new(*r6.ip(), r6.port(), 0x12345, 3));
        assert_eq!(d.lookup(Protocol::Tcp, l, r_flow), Some(Match::Connection(h(1))));
    }

    #[test]
    fn same_key_same_table_behaviour() {
        // Determinism: two demuxes with the same key hash identically.
        let k = SipKey(1, 2);
        let a = KeyedState(k);
        let b = KeyedState(k);
        let key = ConnKey {
            proto: Protocol::Tcp,
            local: Endpoint::of(sa("10.0.0.1:1")),
            remote: Endpoint::of(sa("10.0.0.2:2")),
        };
        assert_eq!(a.hash_one(key), b.hash_one(key));
        assert_ne!(a.hash_one(key), KeyedState(SipKey(1, 3)).hash_one(key));
    }

    // Reference model: plain vectors, searched naively.
    #[derive(Default)]
    struct Model {
        conns: Vec<(Protocol, SocketAddr, SocketAddr, SocketHandle)>,
        listeners: Vec<(Protocol, SocketAddr, SocketHandle)>,
    }

    impl Model {
        fn lookup(&self, p: Protocol, l: SocketAddr, r: SocketAddr) -> Option<Match> {
            for c in &self.conns {
                if c.0 == p && c.1 == l && c.2 == r {
                    return Some(Match::Connection(c.3));
                }
            }
            for x in &self.listeners {
                if x.0 == p && x.1 == l {
                    return Some(Match::Listener(x.2));
                }
            }
            for x in &self.listeners {
                if x.0 == p && x.1.port() == l.port() && x.1.ip().is_unspecified() && x.1.is_ipv4() == l.is_ipv4() {
                    return Some(Match::Listener(x.2));
                }
            }
            None
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        InsConn(Protocol, SocketAddr, SocketAddr, u32),
        RemConn(Protocol, SocketAddr, SocketAddr),
        InsLis(Protocol, SocketAddr, u32),
        RemLis(Protocol, SocketAddr),
        Lookup(Protocol, SocketAddr, SocketAddr),
    }

    fn proto() -> impl Strategy<Value = Protocol> {
        prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp)]
    }

    fn ip() -> impl Strategy<Value = IpAddr> {
        prop::sample::select(vec![
            "0.0.0.0".parse::<IpAddr>().unwrap(),
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            "::".parse().unwrap(),
            "fd00::1".parse().unwrap(),
            "fd00::2".parse().unwrap(),
        ])
    }

    fn addr() -> impl Strategy<Value = SocketAddr> {
        (ip(), 79u16..82).prop_map(|(i, p)| SocketAddr::new(i, p))
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (proto(), addr(), addr(), 0u32..50).prop_map(|(p, l, r, i)| Op::InsConn(p, l, r, i)),
            (proto(), addr(), addr()).prop_map(|(p, l, r)| Op::RemConn(p, l, r)),
            (proto(), addr(), 0u32..50).prop_map(|(p, l, i)| Op::InsLis(p, l, i)),
            (proto(), addr()).prop_map(|(p, l)| Op::RemLis(p, l)),
            (proto(), addr(), addr()).prop_map(|(p, l, r)| Op::Lookup(p, l, r)),
        ]
    }

    proptest! {
        #[test]
        fn demux_agrees_with_model(ops in proptest::collection::vec(op(), 1..200), k0 in any::<u64>()) {
            let mut d = Demux::new(SipKey(k0, !k0));
            let mut m = Model::default();
            for o in ops {
                match o {
                    Op::InsConn(p, l, r, i) => {
                        let want = match m.conns.iter().find(|c| c.0 == p && c.1 == l && c.2 == r) {
                            Some(c) => Err(c.3),
                            None => { m.conns.push((p, l, r, h(i))); Ok(()) }
                        };
                        prop_assert_eq!(d.insert_connection(p, l, r, h(i)), want);
                    }
                    Op::RemConn(p, l, r) => {
                        let want = m.conns.iter().position(|c| c.0 == p && c.1 == l && c.2 == r)
                            .map(|i| m.conns.remove(i).3);
                        prop_assert_eq!(d.remove_connection(p, l, r), want);
                    }
                    Op::InsLis(p, l, i) => {
                        let want = match m.listeners.iter().find(|x| x.0 == p && x.1 == l) {
                            Some(x) => Err(x.2),
                            None => { m.listeners.push((p, l, h(i))); Ok(()) }
                        };
                        prop_assert_eq!(d.insert_listener(p, l, h(i)), want);
                    }
                    Op::RemLis(p, l) => {
                        let want = m.listeners.iter().position(|x| x.0 == p && x.1 == l)
                            .map(|i| m.listeners.remove(i).2);
                        prop_assert_eq!(d.remove_listener(p, l), want);
                    }
                    Op::Lookup(p, l, r) => {
                        prop_assert_eq!(d.lookup(p, l, r), m.lookup(p, l, r));
                        prop_assert_eq!(d.has_connection(p, l, r),
                            m.conns.iter().any(|c| c.0 == p && c.1 == l && c.2 == r));
                    }
                }
                prop_assert_eq!(d.connection_count(), m.conns.len());
                prop_assert_eq!(d.listener_count(), m.listeners.len());
            }
            // Every lookup over the whole pool agrees at the end.
            for p in [Protocol::Tcp, Protocol::Udp] {
                for li in ["0.0.0.0", "10.0.0.1", "10.0.0.2", "::", "fd00::1", "fd00::2"] {
                    for lp in 79u16..82 {
                        let l = SocketAddr::new(li.parse().unwrap(), lp);
                        for ri in ["0.0.0.0", "10.0.0.1", "10.0.0.2", "::", "fd00::1", "fd00::2"] {
                            for rp in 79u16..82 {
                                let r = SocketAddr::new(ri.parse().unwrap(), rp);
                                prop_assert_eq!(d.lookup(p, l, r), m.lookup(p, l, r));
                            }
                        }
                    }
                }
            }
        }
    }
}

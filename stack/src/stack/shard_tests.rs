//! Shards (`Config::shard`, `crate::shard`): two stacks that split one address's flows,
//! with a peer whose packets are delivered to the wrong shard on purpose. The shard
//! that reads a packet it does not own must leave it alone and name the owner; the
//! owner must then handle it as if it had read it itself.

use super::hostile_tests::fragments;
use super::*;
use crate::error::ConnectError;
use crate::rand::SipKey;
use crate::shard::{Input, Shard};
use crate::socket::TcpHandle;
use crate::tcp::TcpState;
use std::net::SocketAddr;
use std::time::Duration;

const KEY: SipKey = SipKey(0x5eed_0000_1111_2222, 0x3333_4444_5555_6666);

fn peer() -> Stack {
    Stack::new(Config { addrs: vec!["10.0.0.1".parse().unwrap()], seed: 7, ..Config::default() })
}

fn shard(i: u16) -> Stack {
    Stack::new(Config {
        addrs: vec!["10.0.0.2".parse().unwrap()],
        seed: 100 + u64::from(i),
        shard: Shard::new(i, 2, KEY),
        msl: Duration::from_millis(100),
        ..Config::default()
    })
}

/// The peer and two shards; the peer's packets go to the shards in turn (a device
/// that ignores ownership), and each shard's hand-backs to the owner.
struct World {
    peer: Stack,
    shards: [Stack; 2],
    now: Instant,
    next_queue: usize,
    handoffs: u64,
}

impl World {
    fn new() -> World {
        World { peer: peer(), shards: [shard(0), shard(1)], now: Instant::ZERO, next_queue: 0, handoffs: 0 }
    }

    /// Deliver one packet from the peer as the device would, to the next queue.
    fn deliver(&mut self, pkt: &[u8]) {
        let q = self.next_queue;
        self.next_queue = (q + 1) % 2;
        self.deliver_to(q, pkt);
    }

    fn deliver_to(&mut self, q: usize, pkt: &[u8]) {
        let before = self.shards[q].stats().clone();
        match self.shards[q].input(self.now, pkt) {
            Input::Done => {}
            Input::Elsewhere(owner) => {
                self.handoffs += 1;
                // Nothing was done or counted but the hand-off.
                let after = self.shards[q].stats();
                assert_eq!(after.shard_handoffs, before.shard_handoffs + 1);
                assert_eq!(after.rx_packets, before.rx_packets);
                assert_ne!(usize::from(owner), q);
                // The owner takes it.
                assert_eq!(self.shards[usize::from(owner)].input(self.now, pkt), Input::Done);
            }
        }
        for q in 0..2 {
            while let Some((owner, datagram)) = self.shards[q].poll_foreign() {
                self.handoffs += 1;
                assert_eq!(self.shards[usize::from(owner)].input(self.now, &datagram), Input::Done);
            }
        }
    }

    /// Exchange packets until quiet, running due timers.
    fn settle(&mut self) {
        let mut buf = vec![0u8; 1500];
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some(n) = self.peer.poll_transmit(self.now, &mut buf) {
                let pkt = buf[..n].to_vec();
                self.deliver(&pkt);
                moved = true;
            }
            for s in &mut self.shards {
                while let Some(n) = s.poll_transmit(self.now, &mut buf) {
                    let _ = self.peer.input(self.now, &buf[..n]);
                    moved = true;
                }
                s.check_invariants().unwrap();
            }
            if !moved {
                let next = [self.peer.poll_timeout(), self.shards[0].poll_timeout(), self.shards[1].poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                match next {
                    Some(t) if t <= self.now + Duration::from_millis(50) => {
                        self.now = self.now.max(t);
                        self.peer.handle_timeout(self.now);
                        for s in &mut self.shards {
                            s.handle_timeout(self.now);
                        }
                    }
                    _ => return,
                }
            }
        }
        panic!("no quiet after 10000 rounds");
    }
}

/// Connections to a listener present in both shards, delivered to alternating
/// queues: each is accepted by its owner only, carries data both ways, and no shard
/// ever answers a segment it does not own (no RST).
#[test]
fn connections_land_on_their_owner_whatever_queue_they_arrive_on() {
    let mut w = World::new();
    let server: SocketAddr = "10.0.0.2:80".parse().unwrap();
    let listeners = [w.shards[0].tcp_listen(server, 64).unwrap(), w.shards[1].tcp_listen(server, 64).unwrap()];
    let clients: Vec<TcpHandle> = (0..16).map(|_| w.peer.tcp_connect(w.now, server, None).unwrap()).collect();
    w.settle();
    let mut accepted = [Vec::new(), Vec::new()];
    for (i, s) in w.shards.iter_mut().enumerate() {
        while let Ok(h) = s.tcp_accept(listeners[i]) {
            accepted[i].push(h);
        }
    }
    assert_eq!(accepted[0].len() + accepted[1].len(), 16);
    assert!(!accepted[0].is_empty() && !accepted[1].is_empty(), "both shards own some: {accepted:?}");
    for (i, hs) in accepted.iter().enumerate() {
        for &h in hs {
            assert_eq!(h.raw().shard(), i as u16);
            let (local, remote) = (w.shards[i].local_addr(h).unwrap(), w.shards[i].peer_addr(h).unwrap());
            assert_eq!(Shard::new(0, 2, KEY).unwrap().tcp_owner(local, remote), i as u16);
        }
    }
    // Data both ways on every connection.
    for (n, &c) in clients.iter().enumerate() {
        w.peer.tcp_send(c, format!("request {n}").as_bytes()).unwrap();
    }
    w.settle();
    for (i, hs) in accepted.iter().enumerate() {
        for &h in hs {
            let mut buf = [0u8; 64];
            let got = w.shards[i].tcp_recv(h, &mut buf).unwrap();
            assert!(buf[..got].starts_with(b"request "));
            w.shards[i].tcp_send(h, &buf[..got]).unwrap();
        }
    }
    w.settle();
    for (n, &c) in clients.iter().enumerate() {
        let mut buf = [0u8; 64];
        let got = w.peer.tcp_recv(c, &mut buf).unwrap();
        assert_eq!(&buf[..got], format!("request {n}").as_bytes());
        assert_eq!(w.peer.tcp_info(c).unwrap().state, TcpState::Established);
    }
    assert!(w.handoffs > 0);
    let mut total = Stats::default();
    for s in &w.shards {
        assert_eq!(s.stats().tcp_resets_sent, 0);
        total.merge(s.stats());
    }
    assert_eq!(total.tcp_passive_opens, 16);
    assert_eq!(total.shard_handoffs, w.handoffs);
}

/// A connection a shard opens uses a port whose 4-tuple that shard owns; a chosen local
/// port of another shard's tuple is refused.
#[test]
fn connects_choose_owned_ports() {
    let mut w = World::new();
    let server: SocketAddr = "10.0.0.1:9".parse().unwrap();
    let _l = w.peer.tcp_listen(server, 64).unwrap();
    let rule = Shard::new(0, 2, KEY).unwrap();
    for i in 0..2u16 {
        for _ in 0..20 {
            let h = w.shards[usize::from(i)].tcp_connect(w.now, server, None).unwrap();
            let local = w.shards[usize::from(i)].local_addr(h).unwrap();
            assert_eq!(rule.tcp_owner(local, server), i);
        }
    }
    let mut port = 40000;
    let foreign = loop {
        let local = SocketAddr::new("10.0.0.2".parse().unwrap(), port);
        if rule.tcp_owner(local, server) == 1 {
            break local;
        }
        port += 1;
    };
    assert_eq!(w.shards[0].tcp_connect(w.now, server, Some(foreign)), Err(ConnectError::OtherShard { owner: 1 }));
    assert!(w.shards[1].tcp_connect(w.now, server, Some(foreign)).is_ok());
    // All of them complete their handshakes through the misdelivering device.
    w.settle();
    let established = w.shards.iter().flat_map(|s| s.sockets()).filter(|r| r.state == "ESTABLISHED").count();
    assert_eq!(established, 41);
}

/// UDP belongs to shard 0, and so do fragments; a TCP segment that arrives in fragments
/// is reassembled by shard 0 and handed to its owner through `poll_foreign`.
#[test]
fn udp_and_fragments_go_to_shard_zero_and_reassembled_tcp_to_its_owner() {
    let mut w = World::new();
    let server: SocketAddr = "10.0.0.2:80".parse().unwrap();
    let _l0 = w.shards[0].tcp_listen(server, 8).unwrap();
    let _l1 = w.shards[1].tcp_listen(server, 8).unwrap();
    let u = w.shards[0].udp_bind("10.0.0.2:53".parse().unwrap()).unwrap();
    let pu = w.peer.udp_bind("10.0.0.1:0".parse().unwrap()).unwrap();
    w.peer.udp_send_to(pu, b"query", "10.0.0.2:53".parse().unwrap()).unwrap();
    let mut buf = vec![0u8; 1500];
    let n = w.peer.poll_transmit(w.now, &mut buf).unwrap();
    assert_eq!(w.shards[1].input(w.now, &buf[..n]), Input::Elsewhere(0));
    assert_eq!(w.shards[0].input(w.now, &buf[..n]), Input::Done);
    let mut got = [0u8; 16];
    assert_eq!(w.shards[0].udp_recv_from(u, &mut got).unwrap().0, 5);

    // Find a client port whose connection shard 1 owns, and send its SYN in fragments.
    let rule = Shard::new(0, 2, KEY).unwrap();
    let c = loop {
        let c = w.peer.tcp_connect(w.now, server, None).unwrap();
        let local = w.peer.local_addr(c).unwrap();
        if rule.tcp_owner(server, local) == 1 {
            break c;
        }
        w.peer.close(c).unwrap();
        while w.peer.poll_transmit(w.now, &mut buf).is_some() {}
    };
    let n = w.peer.poll_transmit(w.now, &mut buf).unwrap();
    let frags = fragments(&buf[..n], 77, 16);
    assert!(frags.len() > 1);
    for f in &frags {
        assert_eq!(w.shards[1].input(w.now, f), Input::Elsewhere(0), "fragments are shard 0's");
        assert_eq!(w.shards[0].input(w.now, f), Input::Done);
    }
    let (owner, datagram) = w.shards[0].poll_foreign().expect("the reassembled SYN is handed over");
    assert_eq!(owner, 1);
    assert!(w.shards[0].poll_foreign().is_none());
    assert_eq!(w.shards[1].input(w.now, &datagram), Input::Done);
    w.settle();
    assert!(w.peer.tcp_poll_connect(c).unwrap(), "the handshake completed");
    assert_eq!(w.shards[1].stats().tcp_passive_opens, 1);
    assert_eq!(w.shards[0].stats().tcp_passive_opens, 0);
}

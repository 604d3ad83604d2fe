//! Demultiplexing: which socket gets a packet.
//!
//! O(1): one hash lookup on the exact (protocol, local, remote) tuple; on a miss a
//! listener / bound socket on (local address, port); then one on the wildcard address of
//! the same family. The hasher is keyed from the stack's seed so that peers, who choose
//! their own ports, cannot aim at one bucket.

use std::net::SocketAddr;

use crate::rand::SipKey;
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

#[derive(Debug)]
pub struct Demux {
    _todo: (),
}

impl Demux {
    pub fn new(key: SipKey) -> Demux {
        let _ = key;
        todo!("demux")
    }

    /// Register a connection. Fails with the current holder if the tuple is taken.
    pub fn insert_connection(
        &mut self,
        proto: Protocol,
        local: SocketAddr,
        remote: SocketAddr,
        h: SocketHandle,
    ) -> Result<(), SocketHandle> {
        let _ = (proto, local, remote, h);
        todo!("demux")
    }

    pub fn remove_connection(&mut self, proto: Protocol, local: SocketAddr, remote: SocketAddr) -> Option<SocketHandle> {
        let _ = (proto, local, remote);
        todo!("demux")
    }

    pub fn has_connection(&self, proto: Protocol, local: SocketAddr, remote: SocketAddr) -> bool {
        let _ = (proto, local, remote);
        todo!("demux")
    }

    /// Register a listener / bound socket on `local` (its IP may be a wildcard).
    pub fn insert_listener(&mut self, proto: Protocol, local: SocketAddr, h: SocketHandle) -> Result<(), SocketHandle> {
        let _ = (proto, local, h);
        todo!("demux")
    }

    pub fn remove_listener(&mut self, proto: Protocol, local: SocketAddr) -> Option<SocketHandle> {
        let _ = (proto, local);
        todo!("demux")
    }

    /// Exact tuple first, then listener on `local`, then listener on the wildcard of
    /// `local`'s family with the same port.
    pub fn lookup(&self, proto: Protocol, local: SocketAddr, remote: SocketAddr) -> Option<Match> {
        let _ = (proto, local, remote);
        todo!("demux")
    }

    pub fn connection_count(&self) -> usize {
        todo!("demux")
    }
}

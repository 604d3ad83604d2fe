//! UDP sockets (RFC 768): their state, the calls, input and transmission.
//!
//! A socket is bound to a local address (a wildcard allowed) and optionally connected
//! to one peer, whose datagrams alone it then receives. Each direction has a bounded
//! queue of datagrams in pooled buffers (`Config::udp_rx_queue`, `udp_tx_queue`): a
//! full receive queue drops (counted), a full send queue says `WouldBlock`. Datagrams
//! larger than the MTU allows are refused: we do not fragment (RFC 8200 5, RFC 791).
//! A datagram for a port nobody holds gets an ICMP port unreachable (`icmp`).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use super::table::Sock;
use super::{is_unspecified, same_family, Stack};
use crate::demux::Match;
use crate::error::{BindError, InvalidHandle, UdpConnectError, UdpRecvError, UdpSendError};
use crate::policy::rules::{Direction, PacketInfo, RejectWith};
use crate::policy::scan::ProbeKind;
use crate::socket::{Owner, Protocol, SocketHandle, UdpHandle};
use crate::time::Instant;
use crate::wire::{self, DropReason, IpHeader, UdpRepr};

pub(super) struct UdpSock {
    pub(super) local: SocketAddr,
    pub(super) remote: Option<SocketAddr>,
    /// Transparent: takes every datagram no other socket takes, whatever its
    /// destination, and may send from any address (`udp_bind_transparent`).
    pub(super) transparent: bool,
    /// Received datagrams: source, destination (the original one, for a transparent
    /// socket), payload.
    pub(super) rxq: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// Datagrams to send: source address (chosen when queued), destination, payload.
    pub(super) txq: VecDeque<Outgoing>,
}

/// A datagram checked and queued by `udp_send_to`: it fits the MTU and its addresses
/// are of one family, so writing it out cannot fail.
pub(super) struct Outgoing {
    pub(super) src: IpAddr,
    /// The source port: the socket's own, or any for a transparent socket.
    pub(super) sport: u16,
    pub(super) dst: SocketAddr,
    pub(super) data: Vec<u8>,
}

impl Stack {
    pub(super) fn udp_input(&mut self, now: Instant, ip: &IpHeader, d: &UdpRepr<'_>, raw: &[u8]) {
        let local = SocketAddr::new(ip.dst, d.dst_port);
        let remote = SocketAddr::new(ip.src, d.src_port);
        let matched = self.demux.lookup(Protocol::Udp, local, remote);
        if !matches!(matched, Some(Match::Connection(_))) {
            // Not to a connected socket: the policy decides (a datagram can be a knock).
            let info = PacketInfo {
                dir: Direction::In,
                proto: ip.protocol,
                src: ip.src,
                dst: ip.dst,
                sport: d.src_port,
                dport: d.dst_port,
                icmp_type: None,
            };
            let admitted = self.policy_admits(now, &info, true, |s, with| {
                s.icmp_unreachable(now, ip, raw, with == RejectWith::AdminProhibited)
            });
            if !admitted {
                return;
            }
        }
        let found = match matched {
            Some(Match::Connection(h)) | Some(Match::Listener(h)) => Some(h),
            None => self.transparent_udp,
        };
        let limit = self.cfg.udp_rx_queue;
        let slot = found.and_then(|h| self.slots.get_mut(h.idx as usize).filter(|s| s.gen == h.gen));
        if let (Some(h), Some(Sock::Udp(u))) = (found, slot.and_then(|s| s.sock.as_mut())) {
            if u.remote.is_none_or(|r| r == remote) {
                if u.rxq.len() >= limit {
                    return self.count_drop(DropReason::UdpQueueFull, "receive queue full");
                }
                let mut buf = self.pool.pop().unwrap_or_default();
                buf.clear();
                buf.extend_from_slice(d.payload);
                u.rxq.push_back((remote, local, buf));
                self.update_readiness(h);
                return;
            }
        }
        self.count_drop(DropReason::UdpNoSocket, "no socket on port");
        self.policy_probe(now, remote.ip(), local.port(), ProbeKind::Udp);
        self.icmp_port_unreachable(now, ip, raw);
    }

    /// UDP's part of `poll_transmit`: the next queued datagram of socket `h`.
    /// `udp_send_to` checked it (size, addresses) and `buf` holds the MTU, so writing
    /// it cannot fail once it is off the queue.
    pub(super) fn udp_transmit(&mut self, h: SocketHandle, buf: &mut [u8]) -> Option<usize> {
        let slot = &mut self.slots[h.idx as usize];
        let Some(Sock::Udp(u)) = slot.sock.as_mut() else { return None };
        let Outgoing { src, sport, dst, data } = u.txq.pop_front()?;
        let repr = UdpRepr { src_port: sport, dst_port: dst.port(), payload: &data };
        let n = wire::emit_udp(buf, src, dst.ip(), &repr).expect("a datagram checked when it was queued");
        let more = !u.txq.is_empty();
        self.pool.push(data);
        if more {
            slot.in_txq = true;
            self.txq.push_back(h);
        }
        self.update_readiness(h);
        Some(n)
    }

    // ---------------------------------------------------------------- calls

    pub fn udp_bind(&mut self, local: SocketAddr) -> Result<UdpHandle, BindError> {
        self.check_local(local)?;
        let u = UdpSock { local, remote: None, transparent: false, rxq: VecDeque::new(), txq: VecDeque::new() };
        let h = UdpHandle(self.alloc(Sock::Udp(u), Owner::App));
        let port = match self.udp_ports.bind(local.ip(), local.port(), h.0, &mut self.rng) {
            Ok(p) => p,
            Err(e) => {
                self.release_unbound(h.0);
                return Err(e);
            }
        };
        let bound = SocketAddr::new(local.ip(), port);
        if let Ok(u) = self.udp_mut(h) {
            u.local = bound;
        }
        if let Err(held_by) = self.demux.insert_listener(Protocol::Udp, bound, h.0) {
            self.free_socket(h.0);
            return Err(BindError::AddrInUse { addr: bound, held: bound, held_by });
        }
        // Writable from the start (an empty send queue).
        self.update_readiness(h.0);
        Ok(h)
    }

    /// A transparent UDP socket: it takes every datagram, to any address and port, that
    /// no other socket takes (the stack then accepts packets to any unicast
    /// destination); `udp_recv_msg` tells each one's original destination, and
    /// `udp_send_msg` answers from it. One at a time: `AddrInUse` while another exists.
    pub fn udp_bind_transparent(&mut self) -> Result<UdpHandle, BindError> {
        let any = SocketAddr::from(([0, 0, 0, 0], 0));
        if let Some(held_by) = self.transparent_udp {
            return Err(BindError::AddrInUse { addr: any, held: any, held_by });
        }
        let u = UdpSock { local: any, remote: None, transparent: true, rxq: VecDeque::new(), txq: VecDeque::new() };
        let h = UdpHandle(self.alloc(Sock::Udp(u), Owner::App));
        self.transparent_udp = Some(h.0);
        self.update_readiness(h.0);
        Ok(h)
    }

    /// One datagram with its source and its destination (for a transparent socket the
    /// address the client sent to; for others the socket's own).
    pub fn udp_recv_msg(
        &mut self,
        h: UdpHandle,
        buf: &mut [u8],
    ) -> Result<(usize, SocketAddr, SocketAddr), UdpRecvError> {
        let u = self.udp_mut(h)?;
        let Some((src, dst, data)) = u.rxq.pop_front() else { return Err(UdpRecvError::WouldBlock) };
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        self.pool.push(data);
        self.update_readiness(h.0);
        Ok((n, src, dst))
    }

    /// Fix the peer: `send` goes there and only its datagrams are received.
    pub fn udp_connect(&mut self, h: UdpHandle, remote: SocketAddr) -> Result<(), UdpConnectError> {
        let u = self.udp_mut(h)?;
        if !same_family(u.local.ip(), remote.ip()) {
            return Err(UdpConnectError::FamilyMismatch { local: u.local.ip(), remote });
        }
        if is_unspecified(remote.ip()) || remote.port() == 0 {
            return Err(UdpConnectError::InvalidRemote(remote));
        }
        u.remote = Some(remote);
        Ok(())
    }

    pub fn udp_send_to(&mut self, h: UdpHandle, data: &[u8], dst: SocketAddr) -> Result<usize, UdpSendError> {
        self.udp_queue(h, data, None, dst)
    }

    /// Send one datagram from `from` to `to` on a transparent socket
    /// (`udp_bind_transparent`): the answer of a gateway, from the address the client
    /// sent to. Other sockets get `NotTransparent`.
    pub fn udp_send_msg(
        &mut self,
        h: UdpHandle,
        data: &[u8],
        from: SocketAddr,
        to: SocketAddr,
    ) -> Result<usize, UdpSendError> {
        self.udp_queue(h, data, Some(from), to)
    }

    /// Check and queue one datagram to `dst`, from the socket's address or, for a
    /// transparent socket, from `from`.
    fn udp_queue(
        &mut self,
        h: UdpHandle,
        data: &[u8],
        from: Option<SocketAddr>,
        dst: SocketAddr,
    ) -> Result<usize, UdpSendError> {
        // The MTU, and the 16-bit UDP length field (RFC 768) for MTUs above 64 KiB.
        let max = self
            .cfg
            .mtu
            .min(wire::ip::MAX_LENGTH_FIELD)
            .saturating_sub(wire::ip_header_len(dst.ip()) + wire::udp::UDP_HEADER_LEN);
        let limit = self.cfg.udp_tx_queue;
        let first_src = self.first_addr_like(dst.ip());
        let slot = self.slots.get_mut(h.0.idx as usize).filter(|s| s.gen == h.0.gen);
        let Some(Sock::Udp(u)) = slot.and_then(|s| s.sock.as_mut()) else { return Err(UdpSendError::InvalidHandle) };
        if is_unspecified(dst.ip()) || dst.port() == 0 {
            return Err(UdpSendError::InvalidDestination(dst));
        }
        let (src, sport) = match from {
            Some(from) => {
                if !u.transparent {
                    return Err(UdpSendError::NotTransparent);
                }
                if !same_family(from.ip(), dst.ip()) {
                    return Err(UdpSendError::FamilyMismatch { local: from.ip(), dst });
                }
                (from.ip(), from.port())
            }
            None => {
                if !same_family(u.local.ip(), dst.ip()) {
                    return Err(UdpSendError::FamilyMismatch { local: u.local.ip(), dst });
                }
                // A wildcard-bound socket sends from the stack's first address of the
                // family.
                let src = if is_unspecified(u.local.ip()) { first_src } else { Some(u.local.ip()) };
                let (Some(src), Some(_)) = (src, first_src) else {
                    return Err(UdpSendError::NoAddressOfFamily { ipv6: dst.is_ipv6() });
                };
                (src, u.local.port())
            }
        };
        if data.len() > max {
            // We do not fragment (RFC 8200 5 / RFC 791): like EMSGSIZE.
            return Err(UdpSendError::TooLarge { len: data.len(), max });
        }
        if u.txq.len() >= limit {
            return Err(UdpSendError::WouldBlock);
        }
        let info = PacketInfo {
            dir: Direction::Out,
            proto: wire::proto::UDP,
            src,
            dst: dst.ip(),
            sport,
            dport: dst.port(),
            icmp_type: None,
        };
        if !self.policy_admits_outbound(&info) {
            return Err(UdpSendError::Filtered);
        }
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(data);
        let Ok(u) = self.udp_mut(h) else { return Err(UdpSendError::InvalidHandle) };
        u.txq.push_back(Outgoing { src, sport, dst, data: buf });
        let slot = &mut self.slots[h.0.idx as usize];
        if !slot.in_txq {
            slot.in_txq = true;
            self.txq.push_back(h.0);
        }
        self.update_readiness(h.0);
        Ok(data.len())
    }

    pub fn udp_send(&mut self, h: UdpHandle, data: &[u8]) -> Result<usize, UdpSendError> {
        let remote = self.udp_mut(h)?.remote.ok_or(UdpSendError::NotConnected)?;
        self.udp_send_to(h, data, remote)
    }

    /// One datagram; a datagram longer than `buf` is truncated (the rest is discarded,
    /// as with std).
    pub fn udp_recv_from(&mut self, h: UdpHandle, buf: &mut [u8]) -> Result<(usize, SocketAddr), UdpRecvError> {
        self.udp_recv_msg(h, buf).map(|(n, src, _)| (n, src))
    }

    /// Like `udp_recv_from` without the source (std allows it on an unconnected
    /// socket too).
    pub fn udp_recv(&mut self, h: UdpHandle, buf: &mut [u8]) -> Result<usize, UdpRecvError> {
        self.udp_recv_from(h, buf).map(|(n, _)| n)
    }

    /// Datagrams queued for sending that `poll_transmit` has not taken yet.
    pub fn udp_send_queue(&mut self, h: UdpHandle) -> Result<usize, InvalidHandle> {
        Ok(self.udp_mut(h)?.txq.len())
    }
}

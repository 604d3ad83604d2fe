//! UDP sockets (RFC 768): their state, the calls, input and transmission.
//!
//! A socket is bound to a local address (a wildcard allowed) and optionally connected
//! to one peer, whose datagrams alone it then receives. Each direction has a bounded
//! queue of datagrams in pooled buffers (`Config::udp_rx_queue`, `udp_tx_queue`): a
//! full receive queue drops (counted), a full send queue says `WouldBlock`; the queued
//! bytes count against `Config::buffer_memory` (under memory pressure received
//! datagrams are dropped). A datagram may be as large as IP allows (65507 bytes over
//! IPv4, 65527 over IPv6); one larger than the path MTU goes out as fragments (`frag`,
//! RFC 791 3.2, RFC 8200 5 at the source).
//! A datagram for a port nobody holds gets an ICMP port unreachable (`icmp`). A
//! connected socket whose datagram draws a hard ICMP error (port unreachable...)
//! reports it once, on its next receive or send, as Linux's `SO_ERROR` does
//! (RFC 1122 4.1.3.3); an unconnected one does not.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use super::table::Sock;
use super::tcp::IcmpNews;
use super::{is_unspecified, same_family, Stack};
use crate::demux::Match;
use crate::error::{BindError, ConnError, InvalidHandle, UdpConnectError, UdpRecvError, UdpSendError};
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
    /// A hard ICMP error for a datagram this (connected) socket sent, not yet reported.
    pub(super) error: Option<ConnError>,
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
        let fits = self.buffer_fits(d.payload.len());
        let slot = found.and_then(|h| self.slots.get_mut(h.idx as usize).filter(|s| s.gen == h.gen));
        if let (Some(h), Some(Sock::Udp(u))) = (found, slot.and_then(|s| s.sock.as_mut())) {
            if u.remote.is_none_or(|r| r == remote) {
                if u.rxq.len() >= limit {
                    return self.count_drop(DropReason::UdpQueueFull, "receive queue full");
                }
                if !fits {
                    return self.count_drop(DropReason::ResourceLimit, "buffer memory budget: datagram not queued");
                }
                let mut buf = self.pool.pop().unwrap_or_default();
                buf.clear();
                buf.extend_from_slice(d.payload);
                let held = buf.capacity();
                u.rxq.push_back((remote, local, buf));
                self.change_slot_mem(h.idx, held, true);
                self.update_readiness(h);
                return;
            }
        }
        self.count_drop(DropReason::UdpNoSocket, "no socket on port");
        self.policy_probe(now, remote.ip(), local.port(), ProbeKind::Udp);
        self.icmp_port_unreachable(now, ip, raw);
    }

    /// UDP's part of `poll_transmit`: the next queued datagram of socket `h`, or its
    /// first fragment when it exceeds the path MTU (the rest follow from `frag`).
    /// `udp_send_to` checked it (size, addresses) and `buf` holds the MTU, so writing
    /// it cannot fail once it is off the queue.
    pub(super) fn udp_transmit(&mut self, h: SocketHandle, buf: &mut [u8]) -> Option<usize> {
        let slot = &mut self.slots[h.idx as usize];
        let Some(Sock::Udp(u)) = slot.sock.as_mut() else { return None };
        let Outgoing { src, sport, dst, data } = u.txq.pop_front()?;
        let repr = UdpRepr { src_port: sport, dst_port: dst.port(), payload: &data };
        let more = !u.txq.is_empty();
        if more {
            slot.in_txq = true;
            self.txq.push_back(h);
        }
        let held = data.capacity();
        let len = wire::ip_header_len(dst.ip()) + wire::udp::UDP_HEADER_LEN + data.len();
        let mtu = self.path_mtu(dst.ip());
        let n = if len <= mtu {
            let n = wire::emit_udp(buf, src, dst.ip(), &repr).expect("a datagram checked when it was queued");
            self.recycle(data);
            Some(n)
        } else {
            let mut packet = self.pool.pop().unwrap_or_default();
            packet.clear();
            packet.resize(len, 0);
            wire::emit_udp(&mut packet, src, dst.ip(), &repr).expect("a datagram checked when it was queued");
            self.recycle(data);
            if self.send_fragmented(packet, mtu) {
                self.next_fragment(buf)
            } else {
                None
            }
        };
        self.change_slot_mem(h.idx, held, false);
        self.update_readiness(h);
        n
    }

    // ---------------------------------------------------------------- calls

    pub fn udp_bind(&mut self, local: SocketAddr) -> Result<UdpHandle, BindError> {
        self.check_local(local)?;
        if !self.socket_room() {
            return Err(BindError::TooManySockets { max: self.cfg.max_sockets });
        }
        let u = UdpSock {
            local,
            remote: None,
            transparent: false,
            rxq: VecDeque::new(),
            txq: VecDeque::new(),
            error: None,
        };
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
        if !self.socket_room() {
            return Err(BindError::TooManySockets { max: self.cfg.max_sockets });
        }
        let u = UdpSock {
            local: any,
            remote: None,
            transparent: true,
            rxq: VecDeque::new(),
            txq: VecDeque::new(),
            error: None,
        };
        let h = UdpHandle(self.alloc(Sock::Udp(u), Owner::App));
        self.transparent_udp = Some(h.0);
        self.update_readiness(h.0);
        Ok(h)
    }

    /// One datagram with its source and its destination (for a transparent socket the
    /// address the client sent to; for others the socket's own). A pending ICMP error
    /// comes first (once), as on Linux.
    pub fn udp_recv_msg(
        &mut self,
        h: UdpHandle,
        buf: &mut [u8],
    ) -> Result<(usize, SocketAddr, SocketAddr), UdpRecvError> {
        let u = self.udp_mut(h)?;
        if let Some(e) = u.error.take() {
            self.update_readiness(h.0);
            return Err(UdpRecvError::Icmp(e));
        }
        let Some((src, dst, data)) = u.rxq.pop_front() else { return Err(UdpRecvError::WouldBlock) };
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        let held = data.capacity();
        self.recycle(data);
        self.change_slot_mem(h.0.idx, held, false);
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

    /// Queue a datagram to `dst`. Up to 65507 bytes over IPv4 (the 16-bit total length,
    /// RFC 791) and 65527 over IPv6 (the payload length, RFC 8200); larger than the
    /// path MTU goes out as fragments. A connected socket reports a pending ICMP error
    /// here first (once).
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
        // The IPv4 total length counts the IP header; the IPv6 payload length does not.
        let max = match dst {
            SocketAddr::V4(_) => wire::ip::MAX_LENGTH_FIELD - wire::ip::IPV4_HEADER_LEN - wire::udp::UDP_HEADER_LEN,
            SocketAddr::V6(_) => wire::ip::MAX_LENGTH_FIELD - wire::udp::UDP_HEADER_LEN,
        };
        let limit = self.cfg.udp_tx_queue;
        let first_src = self.first_addr_like(dst.ip());
        let slot = self.slots.get_mut(h.0.idx as usize).filter(|s| s.gen == h.0.gen);
        let Some(Sock::Udp(u)) = slot.and_then(|s| s.sock.as_mut()) else { return Err(UdpSendError::InvalidHandle) };
        if let Some(e) = u.error.take() {
            self.update_readiness(h.0);
            return Err(UdpSendError::Icmp(e));
        }
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
            // More than an IP datagram can hold: like EMSGSIZE.
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
        let held = buf.capacity();
        u.txq.push_back(Outgoing { src, sport, dst, data: buf });
        self.change_slot_mem(h.0.idx, held, true);
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
    /// as with std). A pending ICMP error comes first (once), as on Linux.
    pub fn udp_recv_from(&mut self, h: UdpHandle, buf: &mut [u8]) -> Result<(usize, SocketAddr), UdpRecvError> {
        self.udp_recv_msg(h, buf).map(|(n, src, _)| (n, src))
    }

    /// Like `udp_recv_from` without the source (std allows it on an unconnected
    /// socket too).
    pub fn udp_recv(&mut self, h: UdpHandle, buf: &mut [u8]) -> Result<usize, UdpRecvError> {
        self.udp_recv_from(h, buf).map(|(n, _)| n)
    }

    /// What an ICMP error says about a datagram socket `local` sent to `remote` (`icmp`
    /// checked the quote is one of our packets): a lower path MTU for `remote`
    /// (RFC 1191, RFC 8201 5.2); a hard error for a socket connected to `remote`,
    /// reported by its next call; nothing otherwise (Linux reports no soft errors, and
    /// none to unconnected sockets, without IP_RECVERR).
    pub(super) fn udp_icmp(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, news: IcmpNews) {
        let found = match self.demux.lookup(Protocol::Udp, local, remote) {
            Some(Match::Connection(h)) | Some(Match::Listener(h)) => h,
            None => return self.count_drop(DropReason::IcmpErrorNoSocket, "ICMP error: no such UDP socket"),
        };
        let Some(Sock::Udp(u)) = self.slots[found.idx as usize].sock.as_mut() else { return };
        match news {
            IcmpNews::PathMtu(mtu) => {
                if self.pmtu.lower(now, remote.ip(), mtu, &self.cfg) {
                    self.stats.pmtu_updates += 1;
                    self.stats.pmtu_entries = self.pmtu.len() as u64;
                } else {
                    self.count_drop(DropReason::IcmpErrorBadMtu, "ICMP: not below the path MTU");
                }
            }
            IcmpNews::Error { error, hard } => {
                if hard && u.remote == Some(remote) {
                    u.error = Some(error);
                    self.stats.icmp_hard_errors += 1;
                    self.update_readiness(found);
                } else {
                    self.count_drop(DropReason::IcmpIgnored, "ICMP error for an unconnected or soft UDP socket");
                }
            }
        }
    }

    /// Datagrams queued for sending that `poll_transmit` has not taken yet.
    pub fn udp_send_queue(&mut self, h: UdpHandle) -> Result<usize, InvalidHandle> {
        Ok(self.udp_mut(h)?.txq.len())
    }
}

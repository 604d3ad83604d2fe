//! Segmentation and checksum offload at the device edge: the virtio-net header that a
//! TUN device opened with `IFF_VNET_HDR` puts in front of every packet
//! (linux/virtio_net.h), splitting the kernel's TCP super-segments into the segments
//! the core expects, completing partial checksums, and coalescing the core's
//! consecutive segments of one flow into one super-segment for the kernel to split.
//!
//! Everything here is pure computation on byte slices (no system calls), so that it is
//! tested without a device, and it never panics on any input: a packet it cannot make
//! sense of is refused with an [`RxError`] and the caller drops and counts it.
//!
//! Receive ([`ingest`]): a packet with `gso_type` TCPv4/TCPv6 is cut into segments of
//! `gso_size` payload bytes, each with its own IP length (IPv4: identification
//! advanced by one per segment and a new header checksum), its sequence number
//! advanced, FIN and PSH on the last segment only, CWR on the first only, and a full
//! TCP checksum, as the kernel's own software segmentation (`tcp_gso_segment`) would
//! produce them. A packet without GSO but with `NEEDS_CSUM` gets its checksum
//! completed: the ones' complement sum from `csum_start` to the end, whose field at
//! `csum_start + csum_offset` holds the pseudo-header sum, is written there. Asked not
//! to (`checksums: false`, what the device does for the driver), both keep a partial
//! checksum instead and are reported as vouched for by the kernel, so that neither the
//! cutting nor the stack makes a pass over the payload for a checksum.
//!
//! Send ([`Coalescer`]): consecutive TCP segments of one flow with contiguous sequence
//! numbers, identical headers otherwise, full-sized (but the last) and no PSH/FIN
//! before the last, become one packet with `gso_type` TCPv4/TCPv6, `gso_size` the
//! first segment's payload length and `NEEDS_CSUM` (the checksum field holds the
//! pseudo-header sum). It only merges what the core already emitted, so the core's
//! window, congestion and pacing decisions are unchanged; splitting the result gives
//! the original segments back (see the tests; IPv4 identification excepted: the core
//! sends atomic datagrams with DF, whose identification carries no meaning).

use crate::wire::checksum::{accumulate, finish, fold};
use crate::wire::ip::write_v4_checksum;
use crate::wire::{proto, TcpFlags};

/// Size of `struct virtio_net_hdr` (without `num_buffers`, which TUN does not use
/// unless asked to): flags, gso_type, hdr_len, gso_size, csum_start, csum_offset.
pub const VNET_HDR_LEN: usize = 10;

/// `virtio_net_hdr.flags`: the checksum from `csum_start` on still has to be completed.
pub const F_NEEDS_CSUM: u8 = 1;
/// `virtio_net_hdr.flags`: the checksum was verified already.
pub const F_DATA_VALID: u8 = 2;

/// `virtio_net_hdr.gso_type` values.
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;
/// UDP segmentation offload (`VIRTIO_NET_HDR_GSO_UDP_L4`, Linux 6.2+ on TUN): a
/// super-datagram of `gso_size`-byte datagrams behind one IP and UDP header.
pub const GSO_UDP_L4: u8 = 5;
/// Flag bit: the first segment carries CWR.
pub const GSO_ECN: u8 = 0x80;

/// Largest packet (after the virtio-net header) a TUN device hands over or takes: the
/// IPv4 total length and the IPv6 payload length are 16-bit fields.
pub const MAX_SUPER_PACKET: usize = 65535 + 40;

const PROTO_TCP: u8 = proto::TCP;
const TCP_FIN: u8 = TcpFlags::FIN.0;
const TCP_SYN: u8 = TcpFlags::SYN.0;
const TCP_RST: u8 = TcpFlags::RST.0;
const TCP_PSH: u8 = TcpFlags::PSH.0;
const TCP_URG: u8 = TcpFlags::URG.0;
const TCP_CWR: u8 = TcpFlags::CWR.0;
/// Offset of the checksum in the TCP header.
const TCP_CSUM: usize = 16;

/// The virtio-net header, fields in host order. TUN uses the legacy layout in the
/// host's byte order unless told otherwise (`TUNSETVNETLE`/`TUNSETVNETBE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Read the header from the first [`VNET_HDR_LEN`] bytes; `None` when shorter.
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b: &[u8; VNET_HDR_LEN] = b.get(..VNET_HDR_LEN)?.try_into().ok()?;
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    pub fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }
}

/// Why [`ingest`] refused a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxError {
    /// `NEEDS_CSUM` with `csum_start`/`csum_offset` outside the packet.
    BadCsumOffsets,
    /// A GSO type other than TCPv4/TCPv6 and UDP_L4 (UDP fragmentation offload).
    UnsupportedGso,
    /// A GSO packet whose IP or TCP header does not parse, whose family does not match
    /// the GSO type, with IPv6 extension headers, or with a zero `gso_size`.
    BadGsoPacket,
    /// A segment longer than the buffer it is to be delivered in.
    TooLong,
}

impl std::fmt::Display for RxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RxError::BadCsumOffsets => "checksum offsets outside the packet",
            RxError::UnsupportedGso => "unsupported GSO type",
            RxError::BadGsoPacket => "malformed GSO packet",
            RxError::TooLong => "segment longer than the MTU",
        })
    }
}

/// Headers of a TCP packet: IP header length, TCP header length, IPv6 or not, and the
/// packet's length from its IP header (at most the slice's length).
#[derive(Clone, Copy, Debug)]
struct TcpHeaders {
    ip_len: usize,
    tcp_len: usize,
    v6: bool,
    total: usize,
}

impl TcpHeaders {
    fn hdr_len(&self) -> usize {
        self.ip_len + self.tcp_len
    }
}

/// Parse the IP and TCP headers of `pkt` (IPv4 with or without options, IPv6 without
/// extension headers). A zero length field (IPv6 jumbograms, or a kernel that leaves
/// it to the device) means "the whole buffer".
fn tcp_headers(pkt: &[u8]) -> Option<TcpHeaders> {
    let first = *pkt.first()?;
    let (ip_len, v6, total) = match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f) * 4;
            if ihl < 20 || pkt.len() < ihl || pkt[9] != PROTO_TCP {
                return None;
            }
            // A fragment is not a TCP segment that can be cut.
            if u16::from_be_bytes([pkt[6], pkt[7]]) & 0x3fff != 0 {
                return None;
            }
            let tot = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
            (ihl, false, if tot == 0 { pkt.len() } else { tot })
        }
        6 => {
            if pkt.len() < 40 || pkt[6] != PROTO_TCP {
                return None;
            }
            let plen = usize::from(u16::from_be_bytes([pkt[4], pkt[5]]));
            (40, true, if plen == 0 { pkt.len() } else { 40 + plen })
        }
        _ => return None,
    };
    if total > pkt.len() {
        return None;
    }
    let doff = usize::from(*pkt.get(ip_len + 12)? >> 4) * 4;
    if doff < 20 || ip_len + doff > total {
        return None;
    }
    Some(TcpHeaders { ip_len, tcp_len: doff, v6, total })
}

/// Sum of the pseudo-header of the TCP segment in `pkt` whose TCP part (header and
/// payload) is `tcp_len` bytes long.
fn pseudo_sum(pkt: &[u8], v6: bool, tcp_len: usize) -> u64 {
    pseudo_sum_of(pkt, v6, tcp_len, PROTO_TCP)
}

/// The pseudo-header sum for a transport part of `len` bytes of protocol `proto`.
fn pseudo_sum_of(pkt: &[u8], v6: bool, len: usize, proto: u8) -> u64 {
    if v6 {
        accumulate(len as u64 + u64::from(proto), &pkt[8..40])
    } else {
        accumulate(len as u64 + u64::from(proto), &pkt[12..20])
    }
}

/// Write the checksum of the transport part of `seg` (from `start`; its field at
/// `start + offset`; `pseudo` the pseudo-header sum): with `complete`, the full
/// checksum, a zero written as all ones (both mean zero in ones' complement, RFC 1071;
/// UDP must, RFC 768), as [`complete_checksum`] writes it, so that completing a partial
/// checksum later gives the very same packet; without, the partial checksum the kernel
/// leaves for offload (the folded pseudo-header sum).
fn write_transport_checksum(seg: &mut [u8], start: usize, offset: usize, pseudo: u64, complete: bool) {
    let field = start + offset;
    let value = if complete {
        seg[field] = 0;
        seg[field + 1] = 0;
        match finish(accumulate(pseudo, &seg[start..])) {
            0 => 0xffff,
            c => c,
        }
    } else {
        fold(pseudo)
    };
    seg[field..field + 2].copy_from_slice(&value.to_be_bytes());
}

/// Offset of the checksum in the UDP header.
const UDP_CSUM: usize = 6;

/// Cut `pkt` (a super-packet whose headers are `hl` bytes, the first `ip_len` of them
/// IP) into pieces of `mss` payload bytes, the last possibly shorter, built one at a
/// time in `scratch`: each gets the headers, its part of the payload and its own IP
/// length (IPv4: identification advanced by one per piece and a new header checksum);
/// `transport(piece, index, count)` then sets the transport header's fields, and
/// `emit` gets the piece. Checks the length before the first `emit`. Returns the count.
#[allow(clippy::too_many_arguments)]
fn cut(
    pkt: &[u8],
    ip_len: usize,
    hl: usize,
    v6: bool,
    mss: usize,
    max_len: usize,
    scratch: &mut Vec<u8>,
    emit: &mut impl FnMut(&[u8]),
    mut transport: impl FnMut(&mut [u8], usize, usize),
) -> Result<usize, RxError> {
    let payload = &pkt[hl..];
    let count = payload.len().div_ceil(mss).max(1);
    if hl + mss.min(payload.len()) > max_len {
        return Err(RxError::TooLong);
    }
    let id0 = u16::from_be_bytes([pkt[4], pkt[5]]);
    if scratch.len() < hl + mss {
        scratch.resize(hl + mss, 0);
    }
    for i in 0..count {
        let chunk = &payload[(i * mss).min(payload.len())..((i + 1) * mss).min(payload.len())];
        let len = hl + chunk.len();
        let seg = &mut scratch[..len];
        seg[..hl].copy_from_slice(&pkt[..hl]);
        seg[hl..].copy_from_slice(chunk);
        if v6 {
            seg[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        } else {
            seg[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            seg[4..6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
            write_v4_checksum(&mut seg[..ip_len]);
        }
        transport(seg, i, count);
        emit(seg);
    }
    Ok(count)
}

/// Cut a UDP super-datagram (`GSO_UDP_L4`) into datagrams of `mss` payload bytes,
/// each with its own IP length (IPv4: identification advanced by one per datagram and
/// a new header checksum), UDP length and checksum (complete with `checksums`, the
/// partial pseudo-header sum without), as the kernel's `__udp_gso_segment` would.
fn cut_udp(
    pkt: &[u8],
    mss: usize,
    max_len: usize,
    scratch: &mut Vec<u8>,
    checksums: bool,
    emit: &mut impl FnMut(&[u8]),
) -> Result<Ingested, RxError> {
    let first = *pkt.first().ok_or(RxError::BadGsoPacket)?;
    let (ip_len, v6, total) = match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f) * 4;
            if ihl < 20 || pkt.len() < ihl + 8 || pkt[9] != proto::UDP {
                return Err(RxError::BadGsoPacket);
            }
            if u16::from_be_bytes([pkt[6], pkt[7]]) & 0x3fff != 0 {
                return Err(RxError::BadGsoPacket);
            }
            let tot = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
            (ihl, false, if tot == 0 { pkt.len() } else { tot })
        }
        6 => {
            if pkt.len() < 48 || pkt[6] != proto::UDP {
                return Err(RxError::BadGsoPacket);
            }
            let plen = usize::from(u16::from_be_bytes([pkt[4], pkt[5]]));
            (40, true, if plen == 0 { pkt.len() } else { 40 + plen })
        }
        _ => return Err(RxError::BadGsoPacket),
    };
    if total > pkt.len() || total < ip_len + 8 || mss == 0 {
        return Err(RxError::BadGsoPacket);
    }
    let hl = ip_len + 8;
    let count = cut(&pkt[..total], ip_len, hl, v6, mss, max_len, scratch, emit, |seg, _, _| {
        let udp_len = seg.len() - ip_len;
        seg[ip_len + 4..ip_len + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        let pseudo = pseudo_sum_of(seg, v6, udp_len, proto::UDP);
        write_transport_checksum(seg, ip_len, UDP_CSUM, pseudo, checksums);
    })?;
    let partial = (!checksums).then_some((ip_len, UDP_CSUM));
    Ok(Ingested { segments: count, split: true, csum_completed: false, verified: true, partial })
}

/// Where a partial checksum's field is (`start + offset`), if it lies in the packet.
fn checksum_field(pkt: &[u8], start: usize, offset: usize) -> Result<usize, RxError> {
    let field = start.checked_add(offset).ok_or(RxError::BadCsumOffsets)?;
    if field.checked_add(2).is_none_or(|end| end > pkt.len()) {
        return Err(RxError::BadCsumOffsets);
    }
    Ok(field)
}

/// Complete a partial checksum in place (`NEEDS_CSUM`): the field at `start + offset`
/// holds the sum of what precedes `start` that is covered (the pseudo-header); the
/// checksum over `start..` with that field in place is written there.
pub fn complete_checksum(pkt: &mut [u8], start: usize, offset: usize) -> Result<(), RxError> {
    let field = checksum_field(pkt, start, offset)?;
    let c = finish(accumulate(0, &pkt[start..]));
    // Zero and all ones are the same ones' complement value; UDP reserves zero for
    // "no checksum", so always write the other one.
    let c = if c == 0 { 0xffff } else { c };
    pkt[field..field + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// What [`ingest`] did with one packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ingested {
    /// Packets handed to `emit`.
    pub segments: usize,
    /// The packet was a super-segment that was cut.
    pub split: bool,
    /// A partial checksum was completed.
    pub csum_completed: bool,
    /// The kernel vouches for the transport checksum of what was emitted (a
    /// super-segment, `NEEDS_CSUM` or `DATA_VALID`): the stack need not verify it.
    pub verified: bool,
    /// Without `checksums`: where the partial checksum of every emitted packet is
    /// (`csum_start`, `csum_offset`), for [`complete_checksum`] if a complete one is
    /// wanted after all.
    pub partial: Option<(usize, usize)>,
}

/// Turn one packet read from a virtio-net-header device (header `hdr`, IP packet
/// `pkt`) into the packets the core takes, handing each to `emit` in order. `scratch`
/// holds one segment at a time while cutting (its length is grown as needed).
/// `max_len` is the longest packet `emit` may get (the device's MTU). Every check comes
/// before the first `emit`: on error nothing was emitted.
///
/// With `checksums`, every emitted packet carries a complete, valid TCP checksum (the
/// partial one completed, each cut segment's computed). Without, a packet the kernel
/// vouches for (`Ingested::verified`) keeps whatever its checksum field holds: the
/// stack is then told not to verify it, which saves two passes over every byte.
pub fn ingest(
    hdr: &VnetHdr,
    pkt: &mut [u8],
    max_len: usize,
    scratch: &mut Vec<u8>,
    checksums: bool,
    mut emit: impl FnMut(&[u8]),
) -> Result<Ingested, RxError> {
    let gso = hdr.gso_type & !GSO_ECN;
    let vouched = hdr.flags & (F_NEEDS_CSUM | F_DATA_VALID) != 0;
    if gso == GSO_NONE {
        let mut csum_completed = false;
        let mut partial = None;
        if hdr.flags & F_NEEDS_CSUM != 0 {
            let (start, offset) = (usize::from(hdr.csum_start), usize::from(hdr.csum_offset));
            if checksums {
                complete_checksum(pkt, start, offset)?;
                csum_completed = true;
            } else {
                checksum_field(pkt, start, offset)?;
                partial = Some((start, offset));
            }
        }
        if pkt.len() > max_len {
            return Err(RxError::TooLong);
        }
        emit(pkt);
        return Ok(Ingested { segments: 1, split: false, csum_completed, verified: vouched, partial });
    }
    if gso == GSO_UDP_L4 {
        return cut_udp(pkt, usize::from(hdr.gso_size), max_len, scratch, checksums, &mut emit);
    }
    if gso != GSO_TCPV4 && gso != GSO_TCPV6 {
        return Err(RxError::UnsupportedGso);
    }
    let h = tcp_headers(pkt).ok_or(RxError::BadGsoPacket)?;
    if h.v6 != (gso == GSO_TCPV6) {
        return Err(RxError::BadGsoPacket);
    }
    let mss = usize::from(hdr.gso_size);
    if mss == 0 {
        return Err(RxError::BadGsoPacket);
    }
    let pkt = &pkt[..h.total];
    let tcp = h.ip_len;
    let seq0 = u32::from_be_bytes([pkt[tcp + 4], pkt[tcp + 5], pkt[tcp + 6], pkt[tcp + 7]]);
    let flags0 = pkt[tcp + 13];
    let count = cut(pkt, tcp, h.hdr_len(), h.v6, mss, max_len, scratch, &mut emit, |seg, i, count| {
        let seq = seq0.wrapping_add((i * mss) as u32);
        seg[tcp + 4..tcp + 8].copy_from_slice(&seq.to_be_bytes());
        let mut flags = flags0;
        if i + 1 < count {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            flags &= !TCP_CWR;
        }
        seg[tcp + 13] = flags;
        let pseudo = pseudo_sum(seg, h.v6, seg.len() - tcp);
        write_transport_checksum(seg, tcp, TCP_CSUM, pseudo, checksums);
    })?;
    // A super-segment comes from the host's own TCP with its checksum left to offload.
    let partial = (!checksums).then_some((h.ip_len, TCP_CSUM));
    Ok(Ingested { segments: count, split: true, csum_completed: false, verified: true, partial })
}

/// A super-segment being built by the [`Coalescer`].
#[derive(Clone, Copy, Debug)]
struct Open {
    h: TcpHeaders,
    /// Payload bytes of every segment but the last.
    mss: usize,
    segments: usize,
    next_seq: u32,
    /// The first segment's flags without PSH/FIN/CWR: what the others must have.
    rest_flags: u8,
    /// The last segment was short or carried PSH/FIN: nothing more may follow.
    closed: bool,
}

/// Merges consecutive same-flow TCP segments into TSO super-segments. Feed packets in
/// order with [`Coalescer::push`], then [`Coalescer::flush`]; every packet comes out of
/// `emit` exactly once, inside a super-segment or alone (with a zero header), in the
/// order given.
#[derive(Default)]
pub struct Coalescer {
    /// The open super-segment's packet (IP header onwards), `VNET_HDR_LEN` bytes after
    /// the start, so that header and packet go out in one write.
    buf: Vec<u8>,
    open: Option<Open>,
    /// Merge UDP datagrams too (`GSO_UDP_L4`; only when the kernel took USO), and the
    /// open UDP super-datagram (in `buf`, like a TCP one: one is open at a time).
    udp: bool,
    open_udp: Option<UdpOpen>,
    /// Super-segments emitted, and the segments in them.
    pub merged_packets: u64,
    pub merged_segments: u64,
}

/// Whether a segment (headers `h`) may start a super-segment.
fn mergeable_start(pkt: &[u8], h: &TcpHeaders) -> bool {
    let flags = pkt[h.ip_len + 13];
    let payload = h.total - h.hdr_len();
    payload > 0
        && h.total == pkt.len()
        && flags & (TCP_SYN | TCP_RST | TCP_URG | TCP_CWR | TCP_FIN | TCP_PSH) == 0
        // IPv4: atomic datagrams only (DF), no options (the kernel copies them to every
        // segment, which is fine, but keep the common case simple).
        && (h.v6 || (h.ip_len == 20 && pkt[6] & 0x40 != 0))
}

/// A UDP super-datagram being built by the [`Coalescer`] (USO).
#[derive(Clone, Copy, Debug)]
struct UdpOpen {
    ip_len: usize,
    v6: bool,
    /// Payload bytes of every datagram but the last.
    size: usize,
    segments: usize,
    /// The last datagram was short: nothing more may follow.
    closed: bool,
}

/// Most datagrams in one UDP super-datagram (Linux's `UDP_MAX_SEGMENTS`).
const UDP_MAX_SEGMENTS: usize = 64;

/// The IP header length and family of a UDP datagram that may start or join a UDP
/// super-datagram: IPv4 without options and not a fragment, or IPv6 without extension
/// headers; the IP length matching the packet; some payload.
fn udp_mergeable(pkt: &[u8]) -> Option<(usize, bool)> {
    let (ip_len, v6, total) = match pkt.first()? >> 4 {
        4 if pkt.len() >= 28 && pkt[0] == 0x45 && pkt[9] == proto::UDP => {
            if u16::from_be_bytes([pkt[6], pkt[7]]) & 0x3fff != 0 {
                return None;
            }
            (20, false, usize::from(u16::from_be_bytes([pkt[2], pkt[3]])))
        }
        6 if pkt.len() >= 48 && pkt[6] == proto::UDP => {
            (40, true, 40 + usize::from(u16::from_be_bytes([pkt[4], pkt[5]])))
        }
        _ => return None,
    };
    let udp_len = usize::from(u16::from_be_bytes([pkt[ip_len + 4], pkt[ip_len + 5]]));
    (total == pkt.len() && udp_len == total - ip_len && udp_len > 8).then_some((ip_len, v6))
}

impl Coalescer {
    pub fn new() -> Coalescer {
        Coalescer::default()
    }

    /// A coalescer that also merges UDP datagrams into `GSO_UDP_L4` super-datagrams
    /// (for a device whose kernel took USO).
    pub fn with_udp() -> Coalescer {
        Coalescer { udp: true, ..Coalescer::default() }
    }

    /// Add one packet (IP header onwards). Whatever can no longer grow is emitted:
    /// `emit(packet_with_vnet_header)`.
    pub fn push(&mut self, pkt: &[u8], emit: &mut dyn FnMut(&[u8])) {
        if self.try_append(pkt) || self.try_append_udp(pkt) {
            return;
        }
        self.flush(emit);
        if self.udp {
            if let Some((ip_len, v6)) = udp_mergeable(pkt) {
                self.buf.clear();
                self.buf.extend_from_slice(&[0; VNET_HDR_LEN]);
                self.buf.extend_from_slice(pkt);
                let size = pkt.len() - ip_len - 8;
                self.open_udp = Some(UdpOpen { ip_len, v6, size, segments: 1, closed: false });
                return;
            }
        }
        match tcp_headers(pkt) {
            Some(h) if mergeable_start(pkt, &h) => {
                self.buf.clear();
                self.buf.extend_from_slice(&[0; VNET_HDR_LEN]);
                self.buf.extend_from_slice(pkt);
                let t = h.ip_len;
                let seq = u32::from_be_bytes([pkt[t + 4], pkt[t + 5], pkt[t + 6], pkt[t + 7]]);
                let mss = h.total - h.hdr_len();
                self.open = Some(Open {
                    h,
                    mss,
                    segments: 1,
                    next_seq: seq.wrapping_add(mss as u32),
                    rest_flags: pkt[t + 13],
                    closed: false,
                });
            }
            _ => emit_plain(pkt, emit, &mut self.buf),
        }
    }

    /// Append `pkt` to the open super-segment if it continues it.
    fn try_append(&mut self, pkt: &[u8]) -> bool {
        let Some(o) = &mut self.open else { return false };
        if o.closed || pkt.len() < o.h.hdr_len() {
            return false;
        }
        let (ipl, hl) = (o.h.ip_len, o.h.hdr_len());
        let first = &self.buf[VNET_HDR_LEN..VNET_HDR_LEN + hl];
        // IP: everything but the lengths, identification and header checksum.
        let ip_same = if o.h.v6 {
            pkt[0] >> 4 == 6 && pkt[..4] == first[..4] && pkt[6..40] == first[6..40]
        } else {
            pkt[0] == first[0] && pkt[1] == first[1] && pkt[6..10] == first[6..10] && pkt[12..20] == first[12..20]
        };
        if !ip_same {
            return false;
        }
        let Some(h) = tcp_headers(pkt) else { return false };
        if h.total != pkt.len() || h.tcp_len != o.h.tcp_len {
            return false;
        }
        let payload = h.total - hl;
        let (t, f) = (&pkt[ipl..hl], &first[ipl..hl]);
        let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
        let flags = t[13];
        // Ports, ack, data offset, window, urgent pointer and options equal; sequence
        // contiguous; flags those of the first (PSH/FIN allowed: they end it).
        let tcp_same = t[..4] == f[..4]
            && t[8..13] == f[8..13]
            && t[14..16] == f[14..16]
            && t[18..] == f[18..]
            && seq == o.next_seq
            && flags & !(TCP_PSH | TCP_FIN) == o.rest_flags;
        if !tcp_same || payload == 0 || payload > o.mss {
            return false;
        }
        let new_len = self.buf.len() - VNET_HDR_LEN + payload;
        let length_field = if o.h.v6 { new_len - 40 } else { new_len };
        if length_field > 65535 {
            return false;
        }
        self.buf.extend_from_slice(&pkt[hl..]);
        o.segments += 1;
        o.next_seq = seq.wrapping_add(payload as u32);
        if payload < o.mss || flags & (TCP_PSH | TCP_FIN) != 0 {
            o.closed = true;
            // The super-segment's flags are those of its last segment (the kernel
            // clears PSH/FIN on all but the last when it cuts).
            self.buf[VNET_HDR_LEN + ipl + 13] = flags;
        }
        true
    }

    /// Append `pkt` to the open UDP super-datagram if it continues it: the same IP
    /// header (but lengths, identification and checksum) and ports, a payload no
    /// longer than the first's.
    fn try_append_udp(&mut self, pkt: &[u8]) -> bool {
        let Some(o) = &mut self.open_udp else { return false };
        if o.closed || o.segments == UDP_MAX_SEGMENTS || udp_mergeable(pkt) != Some((o.ip_len, o.v6)) {
            return false;
        }
        let first = &self.buf[VNET_HDR_LEN..VNET_HDR_LEN + o.ip_len + 8];
        let ip_same = if o.v6 {
            pkt[..4] == first[..4] && pkt[6..40] == first[6..40]
        } else {
            pkt[0..2] == first[0..2] && pkt[6..10] == first[6..10] && pkt[12..20] == first[12..20]
        };
        let payload = pkt.len() - o.ip_len - 8;
        let new_len = self.buf.len() - VNET_HDR_LEN + payload;
        let length_field = if o.v6 { new_len - 40 } else { new_len };
        if !ip_same
            || pkt[o.ip_len..o.ip_len + 4] != first[o.ip_len..o.ip_len + 4]
            || payload > o.size
            || length_field > 65535
        {
            return false;
        }
        self.buf.extend_from_slice(&pkt[o.ip_len + 8..]);
        o.segments += 1;
        o.closed = payload < o.size;
        true
    }

    /// Emit the open super-segment or super-datagram, if any.
    pub fn flush(&mut self, emit: &mut dyn FnMut(&[u8])) {
        if let Some(o) = self.open_udp.take() {
            return self.flush_udp(o, emit);
        }
        let Some(o) = self.open.take() else { return };
        let ipl = o.h.ip_len;
        let pkt = &mut self.buf[VNET_HDR_LEN..];
        if o.segments == 1 {
            emit(&self.buf);
            return;
        }
        let len = pkt.len();
        if o.h.v6 {
            pkt[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        } else {
            pkt[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            write_v4_checksum(&mut pkt[..ipl]);
        }
        // NEEDS_CSUM: the field holds the pseudo-header sum (over the whole TCP length,
        // which the kernel adjusts per segment when it cuts).
        let ps = fold(pseudo_sum(pkt, o.h.v6, len - ipl));
        pkt[ipl + TCP_CSUM..ipl + TCP_CSUM + 2].copy_from_slice(&ps.to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: if o.h.v6 { GSO_TCPV6 } else { GSO_TCPV4 },
            hdr_len: o.h.hdr_len() as u16,
            gso_size: o.mss as u16,
            csum_start: ipl as u16,
            csum_offset: TCP_CSUM as u16,
        };
        self.buf[..VNET_HDR_LEN].copy_from_slice(&hdr.to_bytes());
        self.merged_packets += 1;
        self.merged_segments += o.segments as u64;
        emit(&self.buf);
    }
}

impl Coalescer {
    /// Emit a UDP super-datagram: IP and UDP lengths over all of it, the UDP checksum
    /// field holding the pseudo-header sum (the kernel's `__udp_gso_segment` adjusts
    /// it per datagram), `GSO_UDP_L4` with `gso_size` the first datagram's payload.
    fn flush_udp(&mut self, o: UdpOpen, emit: &mut dyn FnMut(&[u8])) {
        if o.segments == 1 {
            emit(&self.buf);
            return;
        }
        let ipl = o.ip_len;
        let pkt = &mut self.buf[VNET_HDR_LEN..];
        let len = pkt.len();
        if o.v6 {
            pkt[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        } else {
            pkt[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            write_v4_checksum(&mut pkt[..ipl]);
        }
        pkt[ipl + 4..ipl + 6].copy_from_slice(&((len - ipl) as u16).to_be_bytes());
        let ps = fold(pseudo_sum_of(pkt, o.v6, len - ipl, proto::UDP));
        pkt[ipl + UDP_CSUM..ipl + UDP_CSUM + 2].copy_from_slice(&ps.to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_UDP_L4,
            hdr_len: (ipl + 8) as u16,
            gso_size: o.size as u16,
            csum_start: ipl as u16,
            csum_offset: UDP_CSUM as u16,
        };
        self.buf[..VNET_HDR_LEN].copy_from_slice(&hdr.to_bytes());
        self.merged_packets += 1;
        self.merged_segments += o.segments as u64;
        emit(&self.buf);
    }
}

/// Emit one packet unchanged behind a zero virtio-net header, built in `buf`.
fn emit_plain(pkt: &[u8], emit: &mut dyn FnMut(&[u8]), buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&[0; VNET_HDR_LEN]);
    buf.extend_from_slice(pkt);
    emit(buf);
}

#[cfg(test)]
mod tests;

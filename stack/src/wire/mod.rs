//! The wire layer: checked parsing of untrusted IP packets into small `Repr` values, and
//! emission of packets with correct checksums.
//!
//! Parsing is strict: every length is checked once, up front, and anything we cannot
//! account for is rejected with a [`DropReason`] that the stack counts. Nothing here
//! allocates or panics on any input.
//!
//! Layout: `checksum.rs` (RFC 1071 internet checksum), `ip.rs` (IPv4 RFC 791, IPv6
//! RFC 8200), `tcp.rs` (RFC 9293 3.1 header and 3.2 options, RFC 7323, RFC 2018),
//! `udp.rs` (RFC 768), `icmp.rs` (RFC 792, RFC 4443), `frag.rs` (IP fragments: RFC 791
//! 2.3, RFC 8200 4.5).

pub mod checksum;
pub mod frag;
pub mod icmp;
pub mod ip;
pub mod tcp;
pub mod udp;

use std::net::IpAddr;

pub use icmp::{IcmpRepr, IcmpV4Message, IcmpV6Message};
pub use ip::IpHeader;
pub use tcp::{SackBlocks, TcpFlags, TcpOptions, TcpRepr};
pub use udp::UdpRepr;

/// IP protocol numbers we handle (IANA "Assigned Internet Protocol Numbers").
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// Default hop limit / TTL for packets we originate (RFC 1700's recommended 64).
pub const DEFAULT_HOP_LIMIT: u8 = 64;

/// Why a packet was dropped. The stack keeps one counter per reason
/// (`Stats::drops`), and traces each drop at debug level with the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than the headers it claims to carry.
    Truncated = 0,
    /// The IP version nibble is neither 4 nor 6.
    BadIpVersion,
    /// IPv4 IHL < 5, total length smaller than the header, or similar header nonsense.
    BadIpHeader,
    /// IPv4 header checksum does not verify.
    BadIpChecksum,
    /// An IPv4 fragment (MF set or offset non-zero) or an IPv6 Fragment header. `parse`
    /// returns it for every fragment (the stack then hands the packet to its
    /// reassembly, `wire::frag`); as a drop it means reassembly is off
    /// (`Config::reassembly_memory` is 0).
    Fragment,
    /// A transport protocol (or IPv6 next header) we do not speak.
    UnknownProtocol,
    /// Source address that can never be a unicast peer (multicast, broadcast,
    /// unspecified, a loopback address arriving from the wire).
    BadSourceAddress,
    /// TCP data offset out of range, or malformed TCP options.
    BadTcpHeader,
    BadTcpChecksum,
    /// UDP length field inconsistent with the IP payload.
    BadUdpHeader,
    /// UDP checksum does not verify (or is zero over IPv6, RFC 8200 8.1).
    BadUdpChecksum,
    BadIcmpHeader,
    BadIcmpChecksum,
    // ---- reasons decided by the stack rather than the parser ----
    /// Destination is not one of the stack's addresses.
    NotForUs,
    /// TCP segment for which no socket exists (answered with RST unless it was a RST).
    TcpNoSocket,
    /// TCP segment rejected by a socket (unacceptable, bad ACK, listener full...).
    TcpRejected,
    /// UDP datagram to a port nobody listens on (answered with port unreachable).
    UdpNoSocket,
    /// UDP receive queue full.
    UdpQueueFull,
    /// ICMP message we do not act on.
    IcmpIgnored,
    /// Listener backlog full: SYN dropped.
    ListenOverflow,
    /// Refused by the packet policy (a filter rule or default, a port knock, a closed
    /// knock-protected port, a source blocked after a scan; `crate::policy`).
    Filtered,
    // ---- IP fragments (RFC 791 3.2, RFC 8200 4.5, RFC 5722) ----
    /// A fragment that is not the last with a length not a non-zero multiple of 8, or
    /// one reaching beyond a 64 KiB datagram (RFC 8200 4.5).
    FragmentMalformed,
    /// A fragment overlapping another of its datagram with different bytes: the whole
    /// datagram is discarded, its held fragments counted here too, and later fragments
    /// of it until its timeout (RFC 5722 3).
    FragmentOverlap,
    /// A fragment carrying bytes already held (an exact duplicate): dropped alone.
    FragmentDuplicate,
    /// A fragment that would exceed the reassembly caps (memory, datagrams in progress,
    /// pieces per datagram; `Config::reassembly_*`), or the socket buffer budget.
    ReassemblyFull,
    /// Fragments of a datagram still incomplete at its reassembly timeout.
    ReassemblyTimeout,
    // ---- ICMP errors we receive (RFC 1122 4.2.3.9, RFC 5927, RFC 1191, RFC 8201) ----
    /// An ICMP error whose quoted packet names no socket of ours (or is not one of our
    /// packets, or cannot be read).
    IcmpErrorNoSocket,
    /// An ICMP error about a TCP connection whose quoted sequence number is not in
    /// flight (not in SND.UNA..SND.NXT): ignored, RFC 5927 4.1 (Linux
    /// `OutOfWindowIcmps`).
    IcmpErrorOutOfWindow,
    /// A "fragmentation needed" / "packet too big" with an unusable MTU (below 68, or
    /// not below the current estimate: RFC 1191 / RFC 8201 never raise the estimate).
    IcmpErrorBadMtu,
    // ---- resource limits ----
    /// Refused for a resource cap (sockets, half-open connections, socket buffer
    /// memory: `Config::max_sockets`, `max_half_open`, `buffer_memory`): a SYN or a
    /// cookie ACK answered with RST, a UDP datagram not queued.
    ResourceLimit,
}

impl DropReason {
    pub const COUNT: usize = DropReason::ResourceLimit as usize + 1;

    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Truncated,
        DropReason::BadIpVersion,
        DropReason::BadIpHeader,
        DropReason::BadIpChecksum,
        DropReason::Fragment,
        DropReason::UnknownProtocol,
        DropReason::BadSourceAddress,
        DropReason::BadTcpHeader,
        DropReason::BadTcpChecksum,
        DropReason::BadUdpHeader,
        DropReason::BadUdpChecksum,
        DropReason::BadIcmpHeader,
        DropReason::BadIcmpChecksum,
        DropReason::NotForUs,
        DropReason::TcpNoSocket,
        DropReason::TcpRejected,
        DropReason::UdpNoSocket,
        DropReason::UdpQueueFull,
        DropReason::IcmpIgnored,
        DropReason::ListenOverflow,
        DropReason::Filtered,
        DropReason::FragmentMalformed,
        DropReason::FragmentOverlap,
        DropReason::FragmentDuplicate,
        DropReason::ReassemblyFull,
        DropReason::ReassemblyTimeout,
        DropReason::IcmpErrorNoSocket,
        DropReason::IcmpErrorOutOfWindow,
        DropReason::IcmpErrorBadMtu,
        DropReason::ResourceLimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadIpVersion => "bad_ip_version",
            DropReason::BadIpHeader => "bad_ip_header",
            DropReason::BadIpChecksum => "bad_ip_checksum",
            DropReason::Fragment => "ip_fragment",
            DropReason::UnknownProtocol => "unknown_protocol",
            DropReason::BadSourceAddress => "bad_source_address",
            DropReason::BadTcpHeader => "bad_tcp_header",
            DropReason::BadTcpChecksum => "bad_tcp_checksum",
            DropReason::BadUdpHeader => "bad_udp_header",
            DropReason::BadUdpChecksum => "bad_udp_checksum",
            DropReason::BadIcmpHeader => "bad_icmp_header",
            DropReason::BadIcmpChecksum => "bad_icmp_checksum",
            DropReason::NotForUs => "not_for_us",
            DropReason::TcpNoSocket => "tcp_no_socket",
            DropReason::TcpRejected => "tcp_rejected",
            DropReason::UdpNoSocket => "udp_no_socket",
            DropReason::UdpQueueFull => "udp_queue_full",
            DropReason::IcmpIgnored => "icmp_ignored",
            DropReason::ListenOverflow => "listen_overflow",
            DropReason::Filtered => "filtered",
            DropReason::FragmentMalformed => "fragment_malformed",
            DropReason::FragmentOverlap => "fragment_overlap",
            DropReason::FragmentDuplicate => "fragment_duplicate",
            DropReason::ReassemblyFull => "reassembly_full",
            DropReason::ReassemblyTimeout => "reassembly_timeout",
            DropReason::IcmpErrorNoSocket => "icmp_error_no_socket",
            DropReason::IcmpErrorOutOfWindow => "icmp_error_out_of_window",
            DropReason::IcmpErrorBadMtu => "icmp_error_bad_mtu",
            DropReason::ResourceLimit => "resource_limit",
        }
    }
}

/// The transport part of a parsed packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport<'a> {
    Tcp(TcpRepr<'a>),
    Udp(UdpRepr<'a>),
    Icmp(IcmpRepr<'a>),
}

/// A fully parsed and verified packet: IP header fields plus transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub ip: IpHeader,
    pub transport: Transport<'a>,
}

/// Parse one IP packet (no link-layer header, as read from a TUN device opened with
/// IFF_NO_PI). Verifies the IPv4 header checksum and the TCP/UDP/ICMP checksums,
/// reports IP fragments as `Err(DropReason::Fragment)` (for [`frag::parse_fragment`]),
/// skips IPv6 hop-by-hop / routing / destination-options extension headers. Trailing bytes after the IP total length (IPv4) or payload length (IPv6)
/// are ignored, as RFC 791 and RFC 8200 allow for link padding.
pub fn parse(buf: &[u8]) -> Result<Packet<'_>, DropReason> {
    ip::parse_packet(buf)
}

/// [`parse`] for a packet whose TCP or UDP checksum its device has already verified or
/// will not have wrong (a TUN device with checksum offload hands over the kernel's own
/// segments with `NEEDS_CSUM` or `DATA_VALID`): everything but that checksum is checked
/// (the IPv4 header checksum included). ICMP checksums are always verified.
pub fn parse_verified(buf: &[u8]) -> Result<Packet<'_>, DropReason> {
    ip::parse_packet_with(buf, false)
}

/// Why emission failed. Only the caller's buffer can be at fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmitError {
    /// The buffer is shorter than the packet (the packet's length is inside).
    BufferTooSmall(usize),
    /// Source and destination are of different IP families, or an ICMP message of one
    /// version was to be sent between addresses of the other family.
    AddressFamilyMismatch,
    /// The packet (its length is inside) would not fit the 16-bit IPv4 total length or
    /// IPv6 payload length field.
    PacketTooLarge(usize),
}

/// Length of the IP header we emit for this destination family (20 or 40).
pub fn ip_header_len(addr: IpAddr) -> usize {
    match addr {
        IpAddr::V4(_) => ip::IPV4_HEADER_LEN,
        IpAddr::V6(_) => ip::IPV6_HEADER_LEN,
    }
}

/// Write a complete IP+TCP packet into `buf` (header, options, payload, checksums).
/// Returns the packet length.
pub fn emit_tcp(buf: &mut [u8], src: IpAddr, dst: IpAddr, tcp: &TcpRepr<'_>) -> Result<usize, EmitError> {
    ip::emit_packet(buf, src, dst, DEFAULT_HOP_LIMIT, Transport::Tcp(*tcp))
}

/// Write the headers of an IP+TCP packet around a payload already in place: the
/// caller wrote `payload_len` bytes at offset `ip_header_len(dst) + tcp.header_len()`
/// (`tcp.payload` is ignored). Checksums cover the payload as found. Returns the packet
/// length. This is the send path's way to avoid copying the payload twice.
pub fn emit_tcp_in_place(
    buf: &mut [u8],
    src: IpAddr,
    dst: IpAddr,
    tcp: &TcpRepr<'_>,
    payload_len: usize,
) -> Result<usize, EmitError> {
    ip::emit_tcp_in_place(buf, src, dst, DEFAULT_HOP_LIMIT, tcp, payload_len)
}

/// Write a complete IP+UDP packet into `buf`. Returns the packet length.
pub fn emit_udp(buf: &mut [u8], src: IpAddr, dst: IpAddr, udp: &UdpRepr<'_>) -> Result<usize, EmitError> {
    ip::emit_packet(buf, src, dst, DEFAULT_HOP_LIMIT, Transport::Udp(*udp))
}

/// Write a complete IP+ICMP (v4 or v6, by the address family) packet into `buf`.
pub fn emit_icmp(buf: &mut [u8], src: IpAddr, dst: IpAddr, icmp: &IcmpRepr<'_>) -> Result<usize, EmitError> {
    ip::emit_packet(buf, src, dst, DEFAULT_HOP_LIMIT, Transport::Icmp(*icmp))
}

#[cfg(test)]
mod tests;

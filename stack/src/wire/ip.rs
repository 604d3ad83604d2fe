//! IPv4 (RFC 791) and IPv6 (RFC 8200) headers.

use std::net::IpAddr;

use super::{DropReason, EmitError, Packet, Transport};

pub const IPV4_HEADER_LEN: usize = 20;
pub const IPV6_HEADER_LEN: usize = 40;

/// The IP-layer facts the stack needs about a received packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpHeader {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Transport protocol (IPv4 protocol / final IPv6 next header).
    pub protocol: u8,
    /// TTL (IPv4) or hop limit (IPv6).
    pub hop_limit: u8,
    /// Length of the transport header + payload, as the IP header states it.
    pub payload_len: usize,
}

pub(crate) fn parse_packet(buf: &[u8]) -> Result<Packet<'_>, DropReason> {
    let _ = buf;
    todo!("wire: parse")
}

pub(crate) fn emit_packet(
    buf: &mut [u8],
    src: IpAddr,
    dst: IpAddr,
    hop_limit: u8,
    transport: Transport<'_>,
) -> Result<usize, EmitError> {
    let _ = (buf, src, dst, hop_limit, transport);
    todo!("wire: emit")
}

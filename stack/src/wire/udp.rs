//! UDP (RFC 768).

/// A UDP datagram: ports and a borrowed payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpRepr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

pub const UDP_HEADER_LEN: usize = 8;

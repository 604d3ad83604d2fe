//! ICMPv4 (RFC 792) and ICMPv6 (RFC 4443).

/// ICMPv4 messages we parse or emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpV4Message<'a> {
    EchoRequest { ident: u16, seq: u16, data: &'a [u8] },
    EchoReply { ident: u16, seq: u16, data: &'a [u8] },
    /// Type 3. `invoking` is the original IP header + at least 8 bytes of its payload.
    DestUnreachable { code: u8, invoking: &'a [u8] },
    /// Anything else: type and code only, the body is not interpreted.
    Other { icmp_type: u8, code: u8 },
}

/// ICMPv6 messages we parse or emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpV6Message<'a> {
    EchoRequest { ident: u16, seq: u16, data: &'a [u8] },
    EchoReply { ident: u16, seq: u16, data: &'a [u8] },
    /// Type 1. `invoking` is as much of the original packet as fits the minimum MTU.
    DestUnreachable { code: u8, invoking: &'a [u8] },
    /// Type 2 (RFC 4443 3.2).
    PacketTooBig { mtu: u32, invoking: &'a [u8] },
    /// Anything else (including neighbour discovery, which a TUN device does not need).
    Other { icmp_type: u8, code: u8 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpRepr<'a> {
    V4(IcmpV4Message<'a>),
    V6(IcmpV6Message<'a>),
}

/// ICMPv4 destination-unreachable codes (RFC 792).
pub mod v4_unreach {
    pub const PORT: u8 = 3;
}
/// ICMPv6 destination-unreachable codes (RFC 4443 3.1).
pub mod v6_unreach {
    pub const PORT: u8 = 4;
}

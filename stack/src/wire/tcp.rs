//! TCP header (RFC 9293 3.1) and options (RFC 9293 3.2, RFC 7323, RFC 2018).

use crate::seq::SeqNum;

/// TCP control bits (RFC 9293 3.1). Stored as the low byte of the flags field
/// (CWR ECE URG ACK PSH RST SYN FIN).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);
    pub const URG: TcpFlags = TcpFlags(0x20);
    pub const ECE: TcpFlags = TcpFlags(0x40);
    pub const CWR: TcpFlags = TcpFlags(0x80);
    pub const NONE: TcpFlags = TcpFlags(0);

    #[inline]
    pub fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
    #[inline]
    pub fn fin(self) -> bool { self.0 & 0x01 != 0 }
    #[inline]
    pub fn syn(self) -> bool { self.0 & 0x02 != 0 }
    #[inline]
    pub fn rst(self) -> bool { self.0 & 0x04 != 0 }
    #[inline]
    pub fn psh(self) -> bool { self.0 & 0x08 != 0 }
    #[inline]
    pub fn ack(self) -> bool { self.0 & 0x10 != 0 }
    #[inline]
    pub fn urg(self) -> bool { self.0 & 0x20 != 0 }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl core::fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        let mut first = true;
        for (i, n) in NAMES.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(n)?;
                first = false;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

/// Up to four SACK blocks (RFC 2018 3: at most 4 fit in 40 option bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SackBlocks {
    pub blocks: [(SeqNum, SeqNum); 4],
    pub len: u8,
}

impl SackBlocks {
    pub fn as_slice(&self) -> &[(SeqNum, SeqNum)] {
        &self.blocks[..self.len as usize]
    }
    pub fn push(&mut self, left: SeqNum, right: SeqNum) -> bool {
        if (self.len as usize) < self.blocks.len() {
            self.blocks[self.len as usize] = (left, right);
            self.len += 1;
            true
        } else {
            false
        }
    }
}

/// The TCP options we understand. Unknown options are skipped when parsing (RFC 9293
/// 3.2: "must be prepared to handle an illegal option length" -> malformed lengths reject
/// the segment with `BadTcpHeader`; unknown kinds with a sane length are ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpOptions {
    /// Maximum segment size (kind 2, RFC 9293 3.7.1). Only meaningful on SYN.
    pub mss: Option<u16>,
    /// Window scale shift (kind 3, RFC 7323 2). Values above 14 are clamped to 14 when
    /// parsed (RFC 7323 2.3).
    pub window_scale: Option<u8>,
    /// SACK permitted (kind 4, RFC 2018).
    pub sack_permitted: bool,
    /// SACK blocks (kind 5, RFC 2018).
    pub sack: SackBlocks,
    /// Timestamps (kind 8, RFC 7323 3): (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
}

/// A TCP segment: header fields, options and a borrowed payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpRepr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: SeqNum,
    /// Acknowledgment number; meaningful only when `flags.ack()`.
    pub ack: SeqNum,
    pub flags: TcpFlags,
    /// The raw 16-bit window field (unscaled).
    pub window: u16,
    pub urgent: u16,
    pub options: TcpOptions,
    pub payload: &'a [u8],
}

impl<'a> TcpRepr<'a> {
    /// Sequence space the segment occupies: payload length plus one for SYN and for FIN
    /// (RFC 9293 3.4, SEG.LEN).
    pub fn seg_len(&self) -> usize {
        self.payload.len() + self.flags.syn() as usize + self.flags.fin() as usize
    }

    /// Length of the header we would emit for these options (20..=60, padded to 4).
    pub fn header_len(&self) -> usize {
        20 + options_len(&self.options)
    }
}

/// Bytes the options occupy when emitted, padded to a multiple of four.
pub fn options_len(o: &TcpOptions) -> usize {
    let _ = o;
    todo!("wire: options_len")
}

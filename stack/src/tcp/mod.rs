//! TCP (RFC 9293).

mod autotune;
pub mod congestion;
pub(crate) mod conn;
mod input;
mod output;
mod pacing;
mod rate;
mod recovery;
pub(crate) mod recv_buf;
mod reject;
mod rtt;
mod scoreboard;
mod send_buf;
pub(crate) mod syncookie;
mod timer;

pub(crate) use autotune::BufferBudget;
pub use reject::TcpReject;

use std::time::Duration;

use crate::seq::SeqNum;

/// A snapshot of one connection's control block, for tests and diagnostics
/// (`Stack::tcp_info`), in the spirit of Linux's `TCP_INFO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpInfo {
    pub state: TcpState,
    /// Initial send sequence number (RFC 9293 3.4.1).
    pub iss: SeqNum,
    /// Initial receive sequence number.
    pub irs: SeqNum,
    pub snd_una: SeqNum,
    pub snd_nxt: SeqNum,
    pub rcv_nxt: SeqNum,
    /// The peer's window, scaled (bytes).
    pub snd_wnd: usize,
    /// The window we would advertise now (bytes).
    pub rcv_wnd: usize,
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
    /// Effective send MSS.
    pub mss: usize,
    pub cwnd: usize,
    pub ssthresh: usize,
    pub congestion: congestion::CongestionAlgorithm,
    /// SACK, timestamps and window scaling in effect (negotiated on both SYNs).
    pub sack: bool,
    pub timestamps: bool,
    pub window_scaling: bool,
    /// In fast recovery (RFC 6675 / RFC 6582).
    pub in_recovery: bool,
    /// Bytes in flight by the RFC 6675 pipe estimate.
    pub pipe: usize,
    /// Bytes the peer has SACKed above SND.UNA.
    pub sacked: usize,
    /// Bytes held out of order in the receive buffer.
    pub out_of_order: usize,
    pub srtt: Option<Duration>,
    pub rto: Duration,
    pub retransmits: u64,
    /// Data octets the peer acknowledged (SYN and FIN not counted).
    pub bytes_acked: u64,
    /// Data octets received in order (handed to the receive buffer).
    pub bytes_received: u64,
    /// The path MTU the connection sends with: the link MTU unless a validated ICMP
    /// "fragmentation needed" / "packet too big" lowered it (RFC 1191, RFC 8201).
    pub pmtu: usize,
    /// The last soft error an ICMP message reported (RFC 1122 4.2.3.9): recorded, not
    /// fatal; reported instead of `TimedOut` if the connection times out.
    pub soft_error: Option<crate::error::ConnError>,
}

/// The connection states of RFC 9293 3.3.2 (figure 6), all eleven.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpState {
    Closed,
    Listen,
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
}

impl TcpState {
    /// The name RFC 9293 uses (and netstat prints, with '-' for '_').
    pub fn as_str(self) -> &'static str {
        match self {
            TcpState::Closed => "CLOSED",
            TcpState::Listen => "LISTEN",
            TcpState::SynSent => "SYN-SENT",
            TcpState::SynReceived => "SYN-RECEIVED",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait1 => "FIN-WAIT-1",
            TcpState::FinWait2 => "FIN-WAIT-2",
            TcpState::CloseWait => "CLOSE-WAIT",
            TcpState::Closing => "CLOSING",
            TcpState::LastAck => "LAST-ACK",
            TcpState::TimeWait => "TIME-WAIT",
        }
    }
}

impl core::fmt::Display for TcpState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}
#[cfg(test)]
mod tests;

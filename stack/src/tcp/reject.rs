//! Why a TCP segment that reached a listener or a connection was not accepted.
//!
//! Each rejection is counted under its reason in `Stats::tcp_rejects` (the stack's
//! `nstat`); the Linux counter closest to each reason is named beside it. Every
//! rejected segment is also counted once under `DropReason::TcpRejected`.

/// A rejection reason. See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TcpReject {
    /// RST to a listener (RFC 9293 3.10.7.2: ignored).
    ListenRst = 0,
    /// ACK to a listener: answered with RST (RFC 9293 3.10.7.2).
    ListenAck,
    /// Neither SYN, ACK nor RST to a listener.
    ListenNoSyn,
    /// A segment for a connection that is already CLOSED.
    Closed,
    /// SYN-SENT: ACK outside (ISS, SND.NXT], answered with RST (RFC 9293 3.10.7.3).
    SynSentBadAck,
    /// SYN-SENT: RST whose ACK is not acceptable.
    SynSentBadAckRst,
    /// SYN-SENT: RST without ACK (RFC 9293 3.10.7.3: cannot be verified).
    SynSentRstNoAck,
    /// SYN-SENT: neither SYN nor RST.
    SynSentNoSyn,
    /// RFC 7323 5.3: an old timestamp (Linux `PAWSEstabRejected`).
    Paws,
    /// Outside the receive window (RFC 9293 3.10.7.4 first check), answered with an
    /// ACK (Linux `TCPOFODrop`/`OutOfWindowIcmps` are related, not equal).
    OutOfWindow,
    /// RST outside the window: ignored (RFC 5961 3.2).
    RstOutOfWindow,
    /// RST inside the window but not at RCV.NXT: answered with a challenge ACK
    /// (RFC 5961 3.2; Linux `TCPChallengeACK`).
    RstChallenge,
    /// SYN on a synchronized connection: answered with a challenge ACK (RFC 5961 4.2;
    /// Linux `TCPSYNChallenge`).
    SynChallenge,
    /// SYN on a passive SYN-RECEIVED connection: the embryo is dropped (RFC 9293).
    SynInSynReceived,
    /// A synchronized-state segment without ACK (RFC 9293 3.10.7.4 fifth check).
    NoAck,
    /// SYN-RECEIVED: ACK outside (SND.UNA, SND.NXT], answered with RST.
    SynReceivedBadAck,
    /// ACK of data never sent (SEG.ACK > SND.NXT): answered with an ACK (Linux
    /// `TCPACKSkippedSeq`-like).
    AckUnsent,
    /// An ACK to a listener that had sent SYN cookies lately, whose cookie did not
    /// verify (RFC 4987 3.6): answered with RST like any ACK in LISTEN (Linux
    /// `SyncookiesFailed`).
    SynCookieInvalid,
}

impl TcpReject {
    pub const COUNT: usize = TcpReject::SynCookieInvalid as usize + 1;

    pub const ALL: [TcpReject; TcpReject::COUNT] = [
        TcpReject::ListenRst,
        TcpReject::ListenAck,
        TcpReject::ListenNoSyn,
        TcpReject::Closed,
        TcpReject::SynSentBadAck,
        TcpReject::SynSentBadAckRst,
        TcpReject::SynSentRstNoAck,
        TcpReject::SynSentNoSyn,
        TcpReject::Paws,
        TcpReject::OutOfWindow,
        TcpReject::RstOutOfWindow,
        TcpReject::RstChallenge,
        TcpReject::SynChallenge,
        TcpReject::SynInSynReceived,
        TcpReject::NoAck,
        TcpReject::SynReceivedBadAck,
        TcpReject::AckUnsent,
        TcpReject::SynCookieInvalid,
    ];

    /// The counter's name in `/stats.json` and traces.
    pub fn as_str(self) -> &'static str {
        match self {
            TcpReject::ListenRst => "listen_rst",
            TcpReject::ListenAck => "listen_ack",
            TcpReject::ListenNoSyn => "listen_no_syn",
            TcpReject::Closed => "closed",
            TcpReject::SynSentBadAck => "syn_sent_bad_ack",
            TcpReject::SynSentBadAckRst => "syn_sent_bad_ack_rst",
            TcpReject::SynSentRstNoAck => "syn_sent_rst_no_ack",
            TcpReject::SynSentNoSyn => "syn_sent_no_syn",
            TcpReject::Paws => "paws_rejected",
            TcpReject::OutOfWindow => "out_of_window",
            TcpReject::RstOutOfWindow => "rst_out_of_window",
            TcpReject::RstChallenge => "rst_challenge_ack",
            TcpReject::SynChallenge => "syn_challenge_ack",
            TcpReject::SynInSynReceived => "syn_in_syn_received",
            TcpReject::NoAck => "no_ack",
            TcpReject::SynReceivedBadAck => "syn_received_bad_ack",
            TcpReject::AckUnsent => "ack_unsent",
            TcpReject::SynCookieInvalid => "syn_cookie_invalid",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_discriminant_order_and_names_are_unique() {
        for (i, r) in TcpReject::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let mut names: Vec<_> = TcpReject::ALL.iter().map(|r| r.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), TcpReject::COUNT);
    }
}

//! Loss recovery when the peer's SACK blocks stop being true: a receiver may discard
//! out-of-order data it has SACKed (RFC 2018 8, "reneging"; Linux prunes its
//! out-of-order queue under memory pressure). SACK marks are advice: the segment at
//! SND.UNA is retransmitted after a timeout whether or not it was SACKed (RFC 2018 8,
//! RFC 6298 5.4, RFC 6675 5.1, RFC 8985 6.3).
//!
//! Same harness as the parent module (exact segments in, exact segments out). The
//! connection is a passive open with SACK, 64 KiB buffers, no timestamps; the handshake
//! measured an RTT of 0 on the test clock, so SRTT = 0 and the RTO is its 200 ms floor.

use super::*;

const BIG: usize = 64 * 1024;
const M: u32 = MSS as u32;

fn sack_permitted() -> TcpOptionElement {
    TcpOptionElement::SelectiveAcknowledgementPermitted
}

fn sack(blocks: &[(u32, u32)]) -> TcpOptionElement {
    let mut rest = [None; 3];
    for (i, b) in blocks[1..].iter().enumerate() {
        rest[i] = Some(*b);
    }
    TcpOptionElement::SelectiveAcknowledgement(blocks[0], rest)
}

/// A passive open that granted SACK, accepted; the clock at 10 ms. `nodelay` is on so
/// every write goes out at once.
fn established_sack(rack_tlp: bool) -> TestStack {
    let cfg = Config { sack: true, rack_tlp, tcp_rx_buffer: BIG, tcp_tx_buffer: BIG, ..config() };
    let mut h = TestStack::new(cfg);
    h.listener = Some(h.stack.tcp_listen(h.local, 8).unwrap());
    h.send(h.seg(SYN, X, 0).opts(&[mss(1460), sack_permitted()]));
    let synack = h.recv_one();
    assert!(synack.options.contains(&sack_permitted()), "SYN-ACK grants SACK: {synack:?}");
    h.iss = Sq(synack.seq);
    let iss = h.iss;
    send!(h, h.seg(ACK, X + 1, iss + 1) => []);
    h.conn = Some(h.stack.tcp_accept(h.listener()).unwrap());
    h.stack.tcp_set_nodelay(h.conn(), true).unwrap();
    h.advance(ms(10));
    h
}

/// Sequence number of the first byte of data segment `i`.
fn s(h: &TestStack, i: u32) -> u32 {
    (h.iss + 1 + i * M).0
}

/// Data segment `i` of `data` as we send it (PSH only on the last one of a write).
fn data_seg(h: &TestStack, data: &[u8], i: u32, psh: bool) -> Seg {
    let bytes = &data[(i * M) as usize..((i + 1) * M) as usize];
    let flags = if psh { PSH | ACK } else { ACK };
    h.reply(flags, s(h, i), X + 1).win(65535).data(bytes)
}

/// The peer acknowledges up to segment `i` (exclusive), SACKing `blocks` (segment
/// index ranges).
fn ack(h: &TestStack, i: u32, blocks: &[(u32, u32)]) -> Seg {
    let seg = h.seg(ACK, X + 1, s(h, i));
    if blocks.is_empty() {
        return seg;
    }
    let blocks: Vec<(u32, u32)> = blocks.iter().map(|&(a, b)| (s(h, a), s(h, b))).collect();
    seg.opts(&[sack(&blocks)])
}

/// The capture that found it, reduced: SND.UNA's retransmission is lost, the peer SACKs
/// the rest and then drops everything it held out of order. The RTO resends SND.UNA;
/// the peer acknowledges it and stops at the next segment, which it had SACKed: that
/// one must go out again too, then the rest. Before the fix the scoreboard kept the
/// SACK marks, the RTO marked only un-SACKed segments lost, and nothing was ever sent
/// again (a stall with no timer left).
#[test]
fn test_rto_resends_left_edge_after_reneging() {
    let mut h = established_sack(false);
    let data = payload(5 * M as usize, 7);
    h.stack.tcp_send(h.conn(), &data).unwrap();
    let flight: Vec<Seg> = (0..5).map(|i| data_seg(&h, &data, i, i == 4)).collect();
    h.expect(&flight);
    let sent_at = h.now;

    // Segment 0 is lost; the peer SACKs 1..4 as they arrive. The third duplicate ACK
    // (RFC 6675 IsLost: three SACKed segments above the hole) retransmits segment 0.
    h.advance(ms(20));
    send!(h, ack(&h, 0, &[(1, 2)]) => []);
    send!(h, ack(&h, 0, &[(1, 3)]) => []);
    send!(h, ack(&h, 0, &[(1, 4)]) => [data_seg(&h, &data, 0, false)]);
    send!(h, ack(&h, 0, &[(1, 5)]) => []);
    let info = h.stack.tcp_info(h.conn()).unwrap();
    assert!(info.in_recovery);
    assert_eq!(info.sacked, 4 * M as usize);

    // That retransmission is lost too, and the peer reneges: its out-of-order queue
    // (segments 1..4) is gone, its ACKs carry no SACK blocks any more.
    send!(h, ack(&h, 0, &[]) => []);

    // RTO (200 ms after the flight left): segment 0 again.
    let rto_at = sent_at + ms(200);
    assert_eq!(h.stack.poll_timeout(), Some(rto_at));
    h.timers_at(rto_at);
    h.expect(&[data_seg(&h, &data, 0, false)]);

    // The peer takes it and acknowledges up to segment 1, which it had SACKed and then
    // dropped. A SACKed segment at SND.UNA is evidence of reneging: the retransmission
    // timer is brought in to max(SRTT/2, 10 ms) (Linux: tcp_check_sack_reneging)...
    h.advance(ms(20));
    send!(h, ack(&h, 1, &[]) => []);
    let reneging_at = h.now + ms(10);
    assert_eq!(h.stack.poll_timeout(), Some(reneging_at));
    h.timers_at(just_before(reneging_at));
    h.expect_nothing();
    // ...and when it fires every SACK mark is forgotten and the flight is resent from
    // the new left edge, one segment (the loss window) at first.
    h.timers_at(reneging_at);
    h.expect(&[data_seg(&h, &data, 1, false)]);
    let info = h.stack.tcp_info(h.conn()).unwrap();
    assert_eq!(info.sacked, 0, "SACK marks cleared: {info:?}");

    // Slow start from one segment resends the rest in order as the ACKs come back.
    h.advance(ms(20));
    send!(h, ack(&h, 2, &[]) => [data_seg(&h, &data, 2, false), data_seg(&h, &data, 3, false)]);
    h.advance(ms(20));
    send!(h, ack(&h, 4, &[]) => [data_seg(&h, &data, 4, true)]);
    h.advance(ms(20));
    send!(h, ack(&h, 5, &[]) => []);
    let info = h.stack.tcp_info(h.conn()).unwrap();
    assert_eq!((info.snd_una, info.snd_nxt, info.sacked, info.pipe), (info.snd_nxt, info.snd_una, 0, 0));
    assert_eq!(h.stack.stats().tcp_retransmits, 6);
    assert_eq!(h.stack.poll_timeout(), None, "nothing outstanding, no timer");
}

/// The early warning also comes from an ACK that does not move SND.UNA: a SACK block
/// that covers the segment at SND.UNA while the cumulative ACK stays there is the peer
/// contradicting itself (it would have acknowledged that segment had it kept it). The
/// timer comes in to max(SRTT/2, 10 ms), and its expiry resends the left edge even
/// though it is marked SACKed.
#[test]
fn test_sack_of_left_edge_without_ack_brings_timer_in() {
    let mut h = established_sack(false);
    let data = payload(4 * M as usize, 9);
    h.stack.tcp_send(h.conn(), &data).unwrap();
    let flight: Vec<Seg> = (0..4).map(|i| data_seg(&h, &data, i, i == 3)).collect();
    h.expect(&flight);
    let sent_at = h.now;
    // Segment 0 arrives; the peer acknowledges it and SACKs 2..3 (1 is lost).
    h.advance(ms(20));
    send!(h, ack(&h, 1, &[(2, 4)]) => []);
    assert_eq!(h.stack.poll_timeout(), Some(h.now + ms(200)), "RFC 6298 5.3: restarted by the ACK");
    // Then a SACK of 1..3 with the ACK still at 1; no more ACKs come.
    h.advance(ms(1));
    send!(h, ack(&h, 1, &[(1, 4)]) => []);
    assert_eq!(h.stack.tcp_info(h.conn()).unwrap().sacked, 3 * M as usize);
    let t = h.stack.poll_timeout().unwrap();
    assert_eq!(t, h.now + ms(10));
    assert!(t < sent_at + ms(200));
    h.timers_at(t);
    h.expect(&[data_seg(&h, &data, 1, false)]);
    assert_eq!(h.stack.tcp_info(h.conn()).unwrap().sacked, 0, "SACK marks cleared");
}

/// A tail loss probe when every segment in flight is marked SACKed but none is
/// acknowledged (the peer reneged on all of them): there is no un-SACKed segment to
/// probe with, so the probe is the segment at SND.UNA, the one the peer lacks. Before,
/// no probe went out at all.
#[test]
fn test_tail_loss_probe_and_rto_resend_left_edge_when_everything_is_sacked() {
    let mut h = established_sack(true);
    let data = payload(2 * M as usize, 11);
    h.stack.tcp_send(h.conn(), &data).unwrap();
    h.expect(&[data_seg(&h, &data, 0, false), data_seg(&h, &data, 1, true)]);
    let sent_at = h.now;
    // PTO = max(2 * SRTT, 10 ms) = 10 ms, well below the 200 ms RTO (RFC 8985 7.2).
    assert_eq!(h.stack.poll_timeout(), Some(sent_at + ms(10)));
    // A SACK for the whole flight, with the cumulative ACK still at SND.UNA.
    h.advance(ms(2));
    send!(h, ack(&h, 0, &[(0, 2)]) => []);
    assert_eq!(h.stack.poll_timeout(), Some(sent_at + ms(10)), "the earlier probe stays");
    let probe_at = sent_at + ms(10);
    h.timers_at(probe_at);
    h.expect(&[data_seg(&h, &data, 0, false)]);
    // The probe is lost and nothing comes back. The RTO follows the probe (RFC 8985
    // 7.3); with the scoreboard's first segment still marked SACKed, the timeout alone
    // must resend it (RFC 2018 8: "the data sender MUST retransmit the segment at the
    // left edge of the window after a retransmit timeout, whether or not the SACK bit
    // is on for that segment"). Before, a timeout marked only un-SACKed segments lost.
    let rto_at = probe_at + ms(200);
    assert_eq!(h.stack.poll_timeout(), Some(rto_at));
    h.timers_at(rto_at);
    h.expect(&[data_seg(&h, &data, 0, false)]);
    let info = h.stack.tcp_info(h.conn()).unwrap();
    assert_eq!(info.sacked, 0, "every SACK mark forgotten: {info:?}");
    // The peer takes it and acknowledges segment 0; segment 1 (SACKed before, lost now)
    // follows at once.
    h.advance(ms(5));
    send!(h, ack(&h, 1, &[]) => [data_seg(&h, &data, 1, true)]);
    send!(h, ack(&h, 2, &[]) => []);
    let info = h.stack.tcp_info(h.conn()).unwrap();
    assert_eq!((info.snd_una, info.sacked), (info.snd_nxt, 0));
}

/// With RACK-TLP (the default), the same reneging is repaired the same way: RACK never
/// marks a SACKed segment lost, so it is the retransmission timer, brought in by the
/// ACK that stops at a SACKed segment, that resends it.
#[test]
fn test_rack_reneging_left_edge_is_resent() {
    let mut h = established_sack(true);
    let data = payload(5 * M as usize, 13);
    h.stack.tcp_send(h.conn(), &data).unwrap();
    let flight: Vec<Seg> = (0..5).map(|i| data_seg(&h, &data, i, i == 4)).collect();
    h.expect(&flight);
    // Segment 0 is lost, 1..4 SACKed: RACK declares 0 lost at once (reo_wnd is 0 on
    // this clock) and it is retransmitted.
    h.advance(ms(20));
    send!(h, ack(&h, 0, &[(1, 5)]) => [data_seg(&h, &data, 0, false)]);
    // The peer takes it but has dropped 1..4.
    h.advance(ms(20));
    send!(h, ack(&h, 1, &[]) => []);
    let t = h.stack.poll_timeout().unwrap();
    assert_eq!(t, h.now + ms(10), "max(SRTT/2, 10 ms)");
    h.timers_at(t);
    h.expect(&[data_seg(&h, &data, 1, false)]);
    h.advance(ms(20));
    send!(h, ack(&h, 2, &[]) => [data_seg(&h, &data, 2, false), data_seg(&h, &data, 3, false)]);
}

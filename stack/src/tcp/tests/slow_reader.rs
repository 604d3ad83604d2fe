//! What the slow reader through a lossy, reordering path found (`bench paths`, the
//! simulator's `paths` module): ways a connection waited for its backed-off
//! retransmission timer although the peer had told it what to do, one that deadlocked
//! two tunstack ends, and silly windows. Each is reduced here to the exact segments.
//!
//! - RACK (RFC 8985 6.2 step 5) compares transmit times: segments above a delivered
//!   retransmission, sent before it, are lost once the reordering window passed. The
//!   scan used to stop at RACK.end_seq (a shortcut that holds for first transmissions
//!   only), so a tail lost after a repaired hole was left to the RTO.
//! - With our receive window closed, the peer's window probes (Linux sends an empty
//!   segment at RCV.NXT - 1) carry its acknowledgments; RFC 9293 3.10.7.4 asks for
//!   "special allowance ... to accept valid ACKs". They were answered and dropped.
//! - A duplicate ACK for out-of-order data went out on the next data segment, where
//!   the peer neither counts it (RFC 5681 2: a duplicate ACK carries no data) nor, as we
//!   send data segments, sees SACK blocks (RFC 2018 4).
//! - With our window closed, the peer's ACKs from beyond a segment of its that is
//!   missing here (SEG.SEQ > RCV.NXT) were dropped too: our data stayed unacknowledged,
//!   our buffer full, our window closed (the simulator's deadlock).
//! - We offered windows of a few bytes (RFC 9293 3.8.6.2.2 / RFC 1122 4.2.3.3 ask the
//!   receiver to avoid them).

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

/// A passive open with SACK and RACK-TLP, accepted, `nodelay`; receive buffer `rx`.
fn established(rx: usize) -> TestStack {
    let cfg = Config { sack: true, tcp_rx_buffer: rx, tcp_tx_buffer: BIG, ..config() };
    let mut h = TestStack::new(cfg);
    h.listener = Some(h.stack.tcp_listen(h.local, 8).unwrap());
    h.send(h.seg(SYN, X, 0).opts(&[mss(1460), sack_permitted()]));
    let synack = h.recv_one();
    h.iss = Sq(synack.seq);
    let iss = h.iss;
    send!(h, h.seg(ACK, X + 1, iss + 1) => []);
    h.conn = Some(h.stack.tcp_accept(h.listener()).unwrap());
    h.stack.tcp_set_nodelay(h.conn(), true).unwrap();
    h.advance(ms(10));
    h
}

fn s(h: &TestStack, i: u32) -> u32 {
    (h.iss + 1 + i * M).0
}

fn data_seg(h: &TestStack, data: &[u8], i: u32, psh: bool, win: u16) -> Seg {
    let bytes = &data[(i * M) as usize..((i + 1) * M) as usize];
    let flags = if psh { PSH | ACK } else { ACK };
    h.reply(flags, s(h, i), X + 1).win(win).data(bytes)
}

/// Segment 0 goes out alone, segments 1 and 2 a millisecond later. The peer SACKs 1:
/// RACK marks 0 lost (sent before 1) and it is retransmitted; 2 was sent with 1, not
/// before it. The retransmission of 0 arrives, 2 does not: the ACK moves to 2 with no
/// SACK block. Segment 2 was sent before the retransmission the peer just delivered, so
/// RACK marks it lost at once (reo_wnd is 0 on this clock) and it is resent, instead
/// of waiting for the RTO.
#[test]
fn test_rack_marks_the_tail_sent_before_a_delivered_retransmission() {
    let mut h = established(BIG);
    let data = payload(3 * M as usize, 21);
    h.stack.tcp_send(h.conn(), &data[..M as usize]).unwrap();
    h.expect(&[data_seg(&h, &data, 0, true, 65535)]);
    h.advance(ms(1));
    h.stack.tcp_send(h.conn(), &data[M as usize..]).unwrap();
    h.expect(&[data_seg(&h, &data, 1, false, 65535), data_seg(&h, &data, 2, true, 65535)]);
    h.advance(ms(20));
    let sack1 = h.seg(ACK, X + 1, s(&h, 0)).opts(&[sack(&[(s(&h, 1), s(&h, 2))])]);
    send!(h, sack1 => [data_seg(&h, &data, 0, false, 65535)]);
    h.advance(ms(20));
    send!(h, h.seg(ACK, X + 1, s(&h, 2)) => [data_seg(&h, &data, 2, true, 65535)]);
}

/// Our receive window is closed (4 KiB arrived, nothing read) while our data is in
/// flight. The peer's ACK of it was lost; its window probe (an empty segment at
/// RCV.NXT - 1) acknowledges everything: it is answered with our (zero) window, and its
/// acknowledgment is taken, so nothing is left to retransmit.
#[test]
fn test_zero_window_takes_the_ack_of_a_window_probe() {
    let mut h = established(BUF);
    let iss = h.iss;
    let ours = payload(2 * M as usize, 5);
    h.stack.tcp_send(h.conn(), &ours).unwrap();
    let out = h.recv_all();
    assert_eq!(out.len(), 2);
    // The peer fills our window.
    let theirs = payload(BUF, 9);
    h.send(h.seg(ACK | PSH, X + 1, iss + 1).data(&theirs));
    let ack = h.recv_one();
    assert_eq!((ack.ack, ack.window), (X + 1 + BUF as u32, 0));
    // The peer's probe acknowledges both our segments.
    h.advance(ms(50));
    let probe = h.seg(ACK, X + BUF as u32, iss + 1 + 2 * M);
    send!(h, probe => [h.reply(ACK, iss + 1 + 2 * M, X + 1 + BUF as u32).win(0)]);
    let info = h.stack.tcp_info(h.conn()).unwrap();
    assert_eq!(info.snd_una, info.snd_nxt, "the probe's ACK counted: {info:?}");
    assert_eq!(h.stack.poll_timeout(), None, "nothing outstanding, no retransmission timer");
}

/// Out-of-order data arrives together with a window that lets our queued data go: the
/// duplicate ACK (with its SACK block) goes out first, on its own, then the data.
#[test]
fn test_duplicate_ack_is_not_piggybacked_on_data() {
    let mut h = established(BIG);
    let iss = h.iss;
    // The peer's window is closed: our data waits.
    send!(h, h.seg(ACK, X + 1, iss + 1).win(0) => []);
    let ours = payload(M as usize, 3);
    h.stack.tcp_send(h.conn(), &ours).unwrap();
    h.expect_nothing();
    // A segment above a hole, with the window open again.
    let theirs = payload(2 * M as usize, 4);
    let ooo = h.seg(ACK | PSH, X + 1 + M, iss + 1).data(&theirs[M as usize..]);
    let wnd = 65535;
    let dup = h.reply(ACK, iss + 1, X + 1).win(wnd).opts(&[sack(&[(X + 1 + M, X + 1 + 2 * M)])]);
    send!(h, ooo => [dup, h.reply(ACK | PSH, iss + 1, X + 1).win(wnd).data(&ours)]);
}

/// Found by the simulator's slow reader (both ends tunstack): our window is closed and
/// a segment the peer sent is missing here, so the peer's ACKs carry a sequence number
/// ahead of RCV.NXT. They were dropped as out of window, so our data stayed
/// unacknowledged, our buffer full and our window closed: both sides waited on each
/// other's backed-off timers for minutes. Such an ACK is taken (and answered).
#[test]
fn test_zero_window_takes_an_ack_from_beyond_a_missing_segment() {
    let mut h = established(BUF);
    let iss = h.iss;
    let ours = payload(M as usize, 6);
    h.stack.tcp_send(h.conn(), &ours).unwrap();
    assert_eq!(h.recv_all().len(), 1);
    let theirs = payload(BUF, 8);
    h.send(h.seg(ACK | PSH, X + 1, iss + 1).data(&theirs));
    assert_eq!(h.recv_one().window, 0);
    // The peer's next segment (100 bytes at RCV.NXT) is lost; its ACK of our data
    // follows at SEG.SEQ = RCV.NXT + 100.
    h.advance(ms(5));
    let ack = h.seg(ACK, X + 1 + BUF as u32 + 100, iss + 1 + M);
    send!(h, ack => [h.reply(ACK, iss + 1 + M, X + 1 + BUF as u32).win(0)]);
    let info = h.stack.tcp_info(h.conn()).unwrap();
    assert_eq!(info.snd_una, info.snd_nxt, "the ACK counted: {info:?}");
}

/// Receiver SWS avoidance (RFC 9293 3.8.6.2.2, RFC 1122 4.2.3.3): with 1000 bytes
/// free in a full 4 KiB buffer we offer no window, not 1000 bytes (the peer's window
/// probe learns 0); once reads free a segment's worth, the window opens and is
/// announced.
#[test]
fn test_receiver_offers_no_silly_window() {
    let mut h = established(BUF);
    let iss = h.iss;
    let theirs = payload(BUF, 2);
    h.send(h.seg(ACK | PSH, X + 1, iss + 1).data(&theirs));
    let end = X + 1 + BUF as u32;
    assert_eq!(h.recv_one().window, 0);
    let mut buf = [0u8; 1000];
    assert_eq!(h.stack.tcp_recv(h.conn(), &mut buf).unwrap(), 1000);
    h.expect_nothing();
    h.advance(ms(200));
    send!(h, h.seg(ACK, end - 1, iss + 1) => [h.reply(ACK, iss + 1, end).win(0)]);
    assert_eq!(h.stack.tcp_recv(h.conn(), &mut buf).unwrap(), 1000);
    send!(h, h.seg(ACK, end - 1, iss + 1) => [h.reply(ACK, iss + 1, end).win(2000)]);
}

//! Focused tests of the mechanisms beyond the base state machine: the RFC 6298 timer,
//! fast retransmit (RFC 5681 3.2), SACK recovery (RFC 6675), persist and zero-window
//! probes (RFC 9293 3.8.6.1), PAWS and window scaling (RFC 7323), Nagle (RFC 896),
//! delayed ACKs (RFC 5681 4.2) and keepalive (RFC 9293 3.8.4).
//!
//! Same harness as the parent module; each test states the configuration it needs.

use super::*;
use crate::config::Keepalive;

const BIG: usize = 64 * 1024;

fn sack_permitted() -> TcpOptionElement {
    TcpOptionElement::SelectiveAcknowledgementPermitted
}

fn ts(val: u32, ecr: u32) -> TcpOptionElement {
    TcpOptionElement::Timestamp(val, ecr)
}

fn sack(blocks: &[(u32, u32)]) -> TcpOptionElement {
    let mut rest = [None; 3];
    for (i, b) in blocks[1..].iter().enumerate() {
        rest[i] = Some(*b);
    }
    TcpOptionElement::SelectiveAcknowledgement(blocks[0], rest)
}

fn take_ts(seg: &mut Seg) -> Option<(u32, u32)> {
    let pos = seg.options.iter().position(|o| matches!(o, TcpOptionElement::Timestamp(..)))?;
    match seg.options.remove(pos) {
        TcpOptionElement::Timestamp(v, e) => Some((v, e)),
        _ => unreachable!(),
    }
}

/// Passive open with the given config and SYN options; the final ACK carries
/// `ack_opts`. Returns the harness (accepted, clock at 10 ms) and the SYN-ACK.
fn established_with(cfg: Config, syn_opts: &[TcpOptionElement], ack_opts: &[TcpOptionElement]) -> (TestStack, Seg) {
    let mut h = TestStack::new(cfg);
    h.buf = vec![0; 2048];
    h.listener = Some(h.stack.tcp_listen(h.local, 8).unwrap());
    h.send(h.seg(SYN, X, 0).opts(syn_opts));
    let synack = h.recv_one();
    h.iss = Sq(synack.seq);
    let iss = h.iss;
    h.send(h.seg(ACK, X + 1, iss + 1).opts(ack_opts));
    h.expect_nothing();
    h.conn = Some(h.stack.tcp_accept(h.listener()).unwrap());
    h.advance(ms(10));
    (h, synack)
}

fn big_config() -> Config {
    Config { tcp_rx_buffer: BIG, tcp_tx_buffer: BIG, ..config() }
}

fn sack_config() -> Config {
    Config { sack: true, ..big_config() }
}

/// `n` full segments of distinct bytes queued by the application.
fn write_segments(h: &mut TestStack, n: usize) -> Vec<u8> {
    let data = payload(n * MSS as usize, 3);
    assert_eq!(h.stack.tcp_send(h.conn(), &data).unwrap(), data.len());
    data
}

fn seg_bytes(data: &[u8], i: usize) -> &[u8] {
    &data[i * MSS as usize..(i + 1) * MSS as usize]
}

// ------------------------------------------------------------------ RFC 6298 timer

/// One segment, never acknowledged: resent at RTO, 2*RTO, 4*RTO... (RFC 6298 5.5), then
/// the connection times out after `max_retries`.
#[test]
fn test_rto_backoff_timeline() {
    let mut h = established_irs_with(Config { max_retries: 4, ..config() });
    let iss = h.iss;
    h.stack.tcp_send(h.conn(), b"hello").unwrap();
    let sent_at = h.now;
    h.expect(&[h.reply(PSH | ACK, iss + 1, X + 1).data(b"hello")]);
    // The handshake measured an RTT of 0, so RTO = max(rto_min, G) = 200 ms.
    let info = h.stack.tcp_info(h.conn()).unwrap();
    assert_eq!(info.rto, ms(200));
    let mut expect_at = sent_at;
    let mut rto = ms(200);
    for _ in 0..4 {
        expect_at += rto;
        assert_eq!(h.stack.poll_timeout(), Some(expect_at), "timer doubles (RFC 6298 5.5)");
        h.timers_at(just_before(expect_at));
        h.expect_nothing();
        h.timers_at(expect_at);
        h.expect(&[h.reply(PSH | ACK, iss + 1, X + 1).data(b"hello")]);
        rto *= 2;
    }
    expect_at += rto;
    assert_eq!(h.stack.poll_timeout(), Some(expect_at));
    h.timers_at(expect_at);
    h.expect_nothing();
    assert_kind(h.stack.tcp_send(h.conn(), b"x"), ErrorKind::TimedOut);
    assert_eq!(h.stack.tcp_state(h.conn()).unwrap(), TcpState::Closed);
}

/// RFC 5482: data may stay unacknowledged for the user timeout, 1.1 s here: the
/// retransmission timer is cut short so the connection ends 1.1 s after the segment
/// was first sent, not at the backed-off timer's next expiry (1.4 s).
#[test]
fn test_user_timeout_cuts_the_backed_off_rto_short() {
    let mut h = established_irs_with(config());
    let iss = h.iss;
    h.stack.tcp_set_user_timeout(h.conn(), Some(ms(1100))).unwrap();
    h.stack.tcp_send(h.conn(), b"hello").unwrap();
    let sent_at = h.now;
    h.expect(&[h.reply(PSH | ACK, iss + 1, X + 1).data(b"hello")]);
    // RTO 200 ms, then 400 ms (RFC 6298 5.5): resent at 200 and 600 ms.
    for after in [200, 600] {
        let at = sent_at + ms(after);
        assert_eq!(h.stack.poll_timeout(), Some(at));
        h.timers_at(at);
        h.expect(&[h.reply(PSH | ACK, iss + 1, X + 1).data(b"hello")]);
    }
    // The next expiry, 800 ms later, would be at 1400 ms.
    let deadline = sent_at + ms(1100);
    assert_eq!(h.stack.poll_timeout(), Some(deadline), "the RTO ends at the user timeout");
    h.timers_at(just_before(deadline));
    h.expect_nothing();
    h.assert_state(TcpState::Established);
    h.timers_at(deadline);
    h.expect_nothing();
    assert_kind(h.stack.tcp_send(h.conn(), b"x"), ErrorKind::TimedOut);
    assert_eq!(h.stack.tcp_state(h.conn()).unwrap(), TcpState::Closed);
}

fn established_irs_with(cfg: Config) -> TestStack {
    established_with(cfg, &[mss(1460)], &[]).0
}

// ------------------------------------------------------------------ fast retransmit

/// RFC 5681 3.2: the third duplicate ACK retransmits the first unacknowledged segment at
/// once, without waiting for the timer.
#[test]
fn test_fast_retransmit_after_three_dup_acks() {
    let mut h = established_irs_with(big_config());
    let iss = h.iss;
    h.stack.tcp_set_nodelay(h.conn(), true).unwrap();
    let data = write_segments(&mut h, 5);
    let got = h.recv_all();
    assert_eq!(got.len(), 5);
    // Segment 0 is lost; segments 1..4 arrive and each causes a duplicate ACK.
    let dup = h.seg(ACK, X + 1, iss + 1);
    send!(h, dup.clone() => []);
    send!(h, dup.clone() => []);
    let m = MSS as u32;
    send!(h, dup.clone() => [h.reply(ACK, iss + 1, X + 1).win(65535).data(seg_bytes(&data, 0)).psh_any()]);
    let info = h.stack.tcp_info(h.conn()).unwrap();
    assert!(info.in_recovery);
    assert_eq!(h.stack.stats().tcp_retransmits, 1);
    // The retransmission fills the hole: the cumulative ACK covers everything.
    send!(h, h.seg(ACK, X + 1, iss + 1 + 5 * m) => []);
    let info = h.stack.tcp_info(h.conn()).unwrap();
    assert!(!info.in_recovery);
    assert_eq!(info.snd_una, info.snd_nxt);
}

// ------------------------------------------------------------------ SACK

/// RFC 6675: two holes revealed by SACK blocks are both retransmitted within one round
/// trip, with no timer involved (DupThresh rule alone: RACK off).
#[test]
fn test_sack_recovers_two_holes_in_one_rtt() {
    let cfg = Config { rack_tlp: false, ..sack_config() };
    let (mut h, synack) = established_with(cfg, &[mss(1460), sack_permitted()], &[]);
    assert!(synack.options.contains(&sack_permitted()), "SYN-ACK grants SACK: {synack:?}");
    let iss = h.iss;
    h.stack.tcp_set_nodelay(h.conn(), true).unwrap();
    let data = write_segments(&mut h, 8);
    assert_eq!(h.recv_all().len(), 8);
    let m = MSS as u32;
    let s = |i: u32| (iss + 1 + i * m).0;
    let start = h.now;
    // Segments 1 and 4 are lost. The peer's ACKs stay at segment 1 and SACK the rest.
    let dup = |h: &TestStack, blocks: &[(u32, u32)]| h.seg(ACK, X + 1, iss + 1 + m).opts(&[sack(blocks)]);
    send!(h, h.seg(ACK, X + 1, iss + 1 + m) => []); // segment 0 acknowledged
    send!(h, dup(&h, &[(s(2), s(3))]) => []);
    send!(h, dup(&h, &[(s(2), s(4))]) => []);
    // Third SACKed segment above the hole at 1 -> 1 is lost (IsLost, DupThresh = 3).
    let got = {
        h.send(dup(&h, &[(s(5), s(6)), (s(2), s(4))]));
        h.recv_all()
    };
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].seq, s(1));
    assert_eq!(got[0].payload, seg_bytes(&data, 1));
    // More SACKs above segment 4 reveal the second hole.
    send!(h, dup(&h, &[(s(5), s(7)), (s(2), s(4))]) => []);
    h.send(dup(&h, &[(s(5), s(8)), (s(2), s(4))]));
    let got = h.recv_all();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].seq, s(4));
    assert_eq!(got[0].payload, seg_bytes(&data, 4));
    assert_eq!(h.now, start, "no timer was needed");
    assert_eq!(h.stack.stats().tcp_retransmits, 2);
    // Both holes filled: one cumulative ACK ends recovery.
    send!(h, h.seg(ACK, X + 1, iss + 1 + 8 * m) => []);
    let info = h.stack.tcp_info(h.conn()).unwrap();
    assert!(!info.in_recovery && info.sacked == 0 && info.snd_una == info.snd_nxt, "{info:?}");
}

/// RFC 8985 6.2: with RACK a hole is declared lost as soon as a segment sent after it
/// is delivered and RACK.rtt + reo_wnd has passed, without waiting for three SACKed
/// segments; both holes are repaired within the round trip.
#[test]
fn test_rack_marks_holes_lost_by_time() {
    let (mut h, _) = established_with(sack_config(), &[mss(1460), sack_permitted()], &[]);
    let iss = h.iss;
    h.stack.tcp_set_nodelay(h.conn(), true).unwrap();
    let data = write_segments(&mut h, 8);
    assert_eq!(h.recv_all().len(), 8);
    let m = MSS as u32;
    let s = |i: u32| (iss + 1 + i * m).0;
    // One round trip later the SACKs arrive (segments 1 and 4 lost).
    h.advance(ms(20));
    let dup = |h: &TestStack, blocks: &[(u32, u32)]| h.seg(ACK, X + 1, iss + 1 + m).opts(&[sack(blocks)]);
    send!(h, h.seg(ACK, X + 1, iss + 1 + m) => []);
    // Segment 2, sent with segment 1, was delivered an RTT after both left: 1 is lost.
    // (min_rtt is 0 on this virtual clock, so the reordering window is 0.)
    h.send(dup(&h, &[(s(2), s(3))]));
    let got = h.recv_all();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!((got[0].seq, &got[0].payload[..]), (s(1), seg_bytes(&data, 1)));
    send!(h, dup(&h, &[(s(2), s(4))]) => []);
    h.send(dup(&h, &[(s(5), s(6)), (s(2), s(4))]));
    let got = h.recv_all();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!((got[0].seq, &got[0].payload[..]), (s(4), seg_bytes(&data, 4)));
    assert_eq!(h.stack.stats().tcp_retransmits, 2);
    assert!(h.stack.tcp_info(h.conn()).unwrap().in_recovery);
}

/// RFC 8985 7: when the tail of a flight is lost and no ACK comes, a probe goes out
/// after the probe timeout (2*SRTT), long before the RTO.
#[test]
fn test_tail_loss_probe() {
    let (mut h, _) = established_with(sack_config(), &[mss(1460), sack_permitted()], &[]);
    let iss = h.iss;
    h.stack.tcp_set_nodelay(h.conn(), true).unwrap();
    // Give the connection an RTT estimate of 20 ms.
    h.stack.tcp_send(h.conn(), b"x").unwrap();
    h.recv_all();
    h.advance(ms(20));
    send!(h, h.seg(ACK, X + 1, iss + 2) => []);
    // The handshake measured 0 on this clock, so SRTT = 7/8 * 0 + 1/8 * 20 ms.
    let info = h.stack.tcp_info(h.conn()).unwrap();
    let srtt = info.srtt.unwrap();
    assert_eq!(srtt, Duration::from_micros(2500));
    let data = payload(3 * MSS as usize, 5);
    h.stack.tcp_send(h.conn(), &data).unwrap();
    assert_eq!(h.recv_all().len(), 3);
    let sent_at = h.now;
    // All three are lost: nothing comes back. The probe (the last segment again, as
    // there is no new data) fires at PTO = max(2*SRTT, 10 ms), well before the RTO.
    let pto = (2 * srtt).max(ms(10));
    assert!(pto < info.rto);
    let t = h.stack.poll_timeout().unwrap();
    assert_eq!(t, sent_at + pto);
    h.timers_at(t);
    let got = h.recv_all();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].seq, (iss + 2 + 2 * MSS as u32).0);
    // The probe's SACK reveals the two earlier segments as lost (RACK) at once.
    h.advance(ms(20));
    let m = MSS as u32;
    h.send(h.seg(ACK, X + 1, iss + 2).opts(&[sack(&[((iss + 2 + 2 * m).0, (iss + 2 + 3 * m).0)])]));
    let got = h.recv_all();
    let seqs: Vec<u32> = got.iter().map(|s| s.seq).collect();
    assert_eq!(seqs, vec![(iss + 2).0, (iss + 2 + m).0], "{got:#?}");
}

/// Our receive side: an out-of-order segment is held and reported in a SACK block; the
/// missing one fills the hole and everything is delivered in order.
#[test]
fn test_established_out_of_order_is_held_and_sacked() {
    let (mut h, _) = established_with(sack_config(), &[mss(1460), sack_permitted()], &[]);
    let iss = h.iss;
    let a = payload(100, 1);
    let b = payload(100, 2);
    let w = |unread: usize| (BIG - unread).min(65535) as u16;
    send!(h, h.seg(ACK, X + 1 + 100, iss + 1).data(&b)
        => [h.reply(ACK, iss + 1, X + 1).win(w(0)).opts(&[sack(&[(X + 101, X + 201)])])]);
    assert_eq!(h.stack.tcp_info(h.conn()).unwrap().out_of_order, 100);
    send!(h, h.seg(ACK, X + 1, iss + 1).data(&a) => [h.reply(ACK, iss + 1, X + 201).win(w(200))]);
    let got = h.read_all();
    assert_eq!(got, [a, b].concat());
}

// ------------------------------------------------------------------ persist

/// RFC 9293 3.8.6.1: against a zero window the sender probes with one byte on the
/// persist timer (backing off), and sends the rest when the window opens.
#[test]
fn test_zero_window_probe_and_reopening() {
    let mut h = established_irs_with(config());
    let iss = h.iss;
    // The peer closes its window entirely.
    send!(h, h.seg(ACK, X + 1, iss + 1).win(0) => []);
    h.stack.tcp_send(h.conn(), b"abcdef").unwrap();
    h.expect_nothing();
    let t1 = h.stack.poll_timeout().expect("persist timer armed");
    h.timers_at(t1);
    h.expect(&[h.reply(ACK, iss + 1, X + 1).data(b"a").psh_any()]);
    // Still zero: the probe byte is not taken; the next probe comes later (backoff).
    send!(h, h.seg(ACK, X + 1, iss + 1).win(0) => []);
    let t2 = h.stack.poll_timeout().expect("probe timer");
    assert!(t2 - t1 > t1 - Instant::ZERO - ms(10) || t2 > t1, "backoff");
    h.timers_at(t2);
    h.expect(&[h.reply(ACK, iss + 1, X + 1).data(b"a").psh_any()]);
    // The window opens (and the probe byte is accepted): the rest goes at once.
    send!(h, h.seg(ACK, X + 1, iss + 2).win(1000) => [h.reply(PSH | ACK, iss + 2, X + 1).data(b"bcdef")]);
    send!(h, h.seg(ACK, X + 1, iss + 7).win(1000) => []);
    assert!(h.stack.poll_timeout().is_none(), "no timer left");
    let info = h.stack.tcp_info(h.conn()).unwrap();
    assert_eq!((info.bytes_acked, info.bytes_received), (6, 0), "probes are counted once, when acknowledged");
}

/// RFC 9293 3.8.6.1: the first zero-window probe goes out when the zero window has
/// lasted a retransmission timeout (Linux's probe timer: the RTO too), also where a
/// tail loss probe would be allowed (SACK, an RTT sample): not after the PTO, 2*SRTT
/// (RFC 8985 7.2), nothing being in flight. The next goes a doubled RTO later, the
/// tail loss probe staying out of it (against a zero window a probe is all there is to
/// send), with the flags of the first (the octet is not the end of the data: no PSH).
/// When the window opens with the probe's octet not taken (SEG.ACK = SND.UNA), the
/// octet goes again at once with the data after it, in one full-sized segment
/// (repacketization, RFC 1122 4.2.2.15), as tests/scripts/persist/zero-window-probe.pkt
/// expects.
#[test]
fn test_zero_window_probe_waits_for_the_rto() {
    let mut h = TestStack::new(sack_config());
    h.listener = Some(h.stack.tcp_listen(h.local, 8).unwrap());
    h.send(h.seg(SYN, X, 0).opts(&[mss(1000), sack_permitted()]));
    let synack = h.recv_one();
    h.iss = Sq(synack.seq);
    let iss = h.iss;
    h.advance(ms(10));
    send!(h, h.seg(ACK, X + 1, iss + 1) => []);
    h.conn = Some(h.stack.tcp_accept(h.listener()).unwrap());
    // SRTT 10 ms, so a PTO would be 20 ms; the RTO is at its floor, rto_min.
    let info = h.stack.tcp_info(h.conn()).unwrap();
    assert_eq!((info.srtt, info.rto), (Some(ms(10)), ms(200)));
    h.advance(ms(10));
    send!(h, h.seg(ACK, X + 1, iss + 1).win(0) => []);
    let data = payload(1000, 23);
    assert_eq!(h.stack.tcp_send(h.conn(), &data).unwrap(), data.len());
    h.expect_nothing();
    let probe = h.reply(ACK, iss + 1, X + 1).win(65535).data(&data[..1]);
    // First probe: one RTO after the window closed on our data.
    let t1 = h.now + ms(200);
    assert_eq!(h.stack.poll_timeout(), Some(t1));
    h.timers_at(just_before(t1));
    h.expect_nothing();
    h.timers_at(t1);
    h.expect(std::slice::from_ref(&probe));
    // Still zero: the next probe after the doubled RTO (RFC 9293 3.8.6.1 backoff).
    send!(h, h.seg(ACK, X + 1, iss + 1).win(0) => []);
    let t2 = h.now + ms(400);
    assert_eq!(h.stack.poll_timeout(), Some(t2));
    h.timers_at(just_before(t2));
    h.expect_nothing();
    h.timers_at(t2);
    h.expect(&[probe]);
    // The window opens, the octet not taken: all of the data in one segment, now.
    send!(h, h.seg(ACK, X + 1, iss + 1).win(2000) => [h.reply(PSH | ACK, iss + 1, X + 1).win(65535).data(&data)]);
    send!(h, h.seg(ACK, X + 1, iss + 1001).win(2000) => []);
    assert!(h.stack.poll_timeout().is_none(), "no timer left");
    let info = h.stack.tcp_info(h.conn()).unwrap();
    assert_eq!(info.bytes_acked, 1000);
    assert_eq!(info.rto, ms(200), "the probes' backoff is over");
}

/// A close while a zero-window probe's octet is outstanding: the FIN takes a sequence
/// number beyond the closed window, so it waits (as Linux's `tcp_snd_wnd_test` holds it)
/// and goes with the data once the window opens. Found by the tcp_segments fuzzer
/// (`fuzz/regressions/tcp_segments/fixed-fin-beyond-a-probed-zero-window`).
#[test]
fn test_fin_waits_behind_a_zero_window_probe() {
    let mut h = established_irs_with(config());
    let iss = h.iss;
    send!(h, h.seg(ACK, X + 1, iss + 1).win(0) => []);
    // One octet of data: the probe carries all of it, so SND.NXT is where the FIN goes.
    assert_eq!(h.stack.tcp_send(h.conn(), b"!").unwrap(), 1);
    h.expect_nothing();
    let t1 = h.stack.poll_timeout().expect("persist timer armed");
    h.timers_at(t1);
    h.expect(&[h.reply(ACK, iss + 1, X + 1).data(b"!").psh_any()]);
    h.stack.tcp_shutdown(h.conn(), std::net::Shutdown::Write).unwrap();
    h.expect_nothing();
    h.assert_state(TcpState::FinWait1);
    // The window opens without the octet taken: the octet and the FIN, in one segment.
    send!(h, h.seg(ACK, X + 1, iss + 1).win(1000) => [h.reply(PSH | FIN | ACK, iss + 1, X + 1).data(b"!")]);
    send!(h, h.seg(ACK, X + 1, iss + 3).win(1000) => []);
    h.assert_state(TcpState::FinWait2);
}

/// With a zero-window probe's octet outstanding, our ACKs carry SEG.SEQ = SND.UNA (the
/// peer's RCV.NXT, the only sequence number its zero window accepts, RFC 9293
/// 3.10.7.4), not SND.NXT one past it: otherwise the peer drops them, ACK field and
/// all, and both ends can wait for each other (seen as a 30 s stall between two of our
/// stacks on a lossy link).
#[test]
fn test_acks_stay_acceptable_while_a_probe_is_outstanding() {
    let mut h = established_irs_with(config());
    let iss = h.iss;
    send!(h, h.seg(ACK, X + 1, iss + 1).win(0) => []);
    h.stack.tcp_send(h.conn(), b"abc").unwrap();
    h.expect_nothing();
    let t1 = h.stack.poll_timeout().expect("persist timer armed");
    h.timers_at(t1);
    h.expect(&[h.reply(ACK, iss + 1, X + 1).data(b"a").psh_any()]);
    // The peer, window still closed, sends data: the ACK is at SND.UNA.
    send!(h, h.seg(PSH | ACK, X + 1, iss + 1).win(0).data(b"xyz") => [h.reply(ACK, iss + 1, X + 4).win(4093)]);
    // Once the window opens, SND.NXT is back in it.
    send!(h, h.seg(ACK, X + 4, iss + 2).win(1000) => [h.reply(PSH | ACK, iss + 2, X + 4).win(4093).data(b"bc")]);
    assert_eq!(h.read_all(), b"xyz");
    let info = h.stack.tcp_info(h.conn()).unwrap();
    assert_eq!((info.bytes_acked, info.bytes_received), (1, 3));
}

// ------------------------------------------------------------------ RFC 7323

/// PAWS (RFC 7323 5.3): a segment whose timestamp is older than TS.Recent is dropped and
/// answered with an ACK; its data is not delivered.
#[test]
fn test_paws_rejects_old_timestamp() {
    let cfg = Config { timestamps: true, ..big_config() };
    let (mut h, mut synack) = established_with(cfg, &[mss(1460), ts(5000, 0)], &[ts(5001, 0)]);
    let (our_tsval, ecr) = take_ts(&mut synack).expect("SYN-ACK carries timestamps");
    assert_eq!(ecr, 5000, "TSecr echoes the SYN's TSval");
    let iss = h.iss;
    // Fresh segment: accepted; the ACK echoes its TSval.
    h.send(h.seg(PSH | ACK, X + 1, iss + 1).opts(&[ts(6000, our_tsval)]).data(b"new"));
    // (Delayed ACK: force it out with the timer.)
    if let Some(t) = h.stack.poll_timeout() {
        h.timers_at(t);
    }
    let mut ack = h.recv_one();
    assert_eq!(take_ts(&mut ack).map(|t| t.1), Some(6000));
    assert_eq!(h.read_all(), b"new");
    // Old timestamp, in-window sequence number: PAWS drops it, we re-ACK.
    h.send(h.seg(PSH | ACK, X + 4, iss + 1).opts(&[ts(5500, our_tsval)]).data(b"old"));
    let mut re = h.recv_one();
    assert_eq!((re.flags, re.ack), (ACK, X + 4));
    assert_eq!(take_ts(&mut re).map(|t| t.1), Some(6000), "TS.Recent unchanged");
    assert_kind(h.read(), ErrorKind::WouldBlock);
    assert!(h.drops(DropReason::TcpRejected) >= 1);
}

/// RFC 7323 2: the peer's shift scales the windows it sends us, ours scales the windows
/// we send it.
#[test]
fn test_window_scale_applied_both_ways() {
    let cfg = Config { tcp_rx_buffer: 256 * 1024, tcp_tx_buffer: BIG, ..config() };
    let (mut h, synack) = established_with(cfg, &[mss(1460), ws(7)], &[]);
    assert!(synack.options.contains(&ws(3)), "256 KiB needs shift 3: {synack:?}");
    let iss = h.iss;
    // The peer's window field 23 with shift 7 means 2944 bytes (not 23).
    send!(h, h.seg(ACK, X + 1, iss + 1).win(23) => []);
    let info = h.stack.tcp_info(h.conn()).unwrap();
    assert_eq!(info.snd_wnd, 2944);
    h.stack.tcp_set_nodelay(h.conn(), true).unwrap();
    let data = payload(4000, 9);
    h.stack.tcp_send(h.conn(), &data).unwrap();
    let got = h.recv_all();
    let sent: usize = got.iter().map(|s| s.payload.len()).sum();
    // Two full segments fit; the 24-byte rest of the window is too small to be worth
    // a segment (sender SWS avoidance).
    assert_eq!(sent, 2 * MSS as usize, "up to, never beyond, the scaled window");
    // Our window fields are shifted by 3: (256 KiB) >> 3 = 32768.
    assert!(got.iter().all(|s| s.window == 32768), "{got:#?}");
}

// ------------------------------------------------------------------ Nagle

/// RFC 896: small writes while data is unacknowledged are held and coalesced; with
/// `set_nodelay(true)` each goes at once.
#[test]
fn test_nagle_coalesces_small_writes() {
    let mut h = established_irs_with(config());
    let iss = h.iss;
    let c = h.conn();
    h.stack.tcp_send(c, b"a").unwrap();
    h.expect(&[h.reply(PSH | ACK, iss + 1, X + 1).data(b"a")]);
    for b in [b"b", b"c", b"d"] {
        h.stack.tcp_send(c, b).unwrap();
        h.expect_nothing();
    }
    send!(h, h.seg(ACK, X + 1, iss + 2) => [h.reply(PSH | ACK, iss + 2, X + 1).data(b"bcd")]);
    h.stack.tcp_set_nodelay(c, true).unwrap();
    h.stack.tcp_send(c, b"e").unwrap();
    h.expect(&[h.reply(PSH | ACK, iss + 5, X + 1).data(b"e")]);
}

// ------------------------------------------------------------------ delayed ACK

/// RFC 5681 4.2: one small segment is acknowledged after the delayed-ACK timeout; the
/// second full-sized segment is acknowledged at once.
#[test]
fn test_delayed_ack_timer() {
    let delay = ms(40);
    let mut h = established_irs_with(Config { ack_delay: Some(delay), ..big_config() });
    let iss = h.iss;
    send!(h, h.seg(PSH | ACK, X + 1, iss + 1).data(b"hi") => []);
    let t = h.stack.poll_timeout().expect("delayed-ACK timer");
    assert_eq!(t, h.now + delay);
    h.timers_at(just_before(t));
    h.expect_nothing();
    h.timers_at(t);
    // No window scaling: the field is the free space, at most 65535.
    let w = |unread: usize| (BIG - unread).min(65535) as u16;
    h.expect(&[h.reply(ACK, iss + 1, X + 3).win(w(2))]);
    // Two full-sized segments: the second triggers an immediate ACK.
    let full = payload(MSS as usize, 4);
    let m = MSS as u32;
    send!(h, h.seg(ACK, X + 3, iss + 1).data(&full) => []);
    send!(h, h.seg(ACK, X + 3 + m, iss + 1).data(&full) => [h.reply(ACK, iss + 1, X + 3 + 2 * m).win(w(2 + 2 * MSS as usize))]);
}

// ------------------------------------------------------------------ keepalive

/// RFC 9293 3.8.4 / RFC 1122 4.2.3.6: after the idle time a probe <SEQ=SND.NXT-1>; an
/// answer resets the count; unanswered probes end the connection with TimedOut.
#[test]
fn test_keepalive_probes_and_timeout() {
    let ka = Keepalive { idle: Duration::from_secs(10), interval: Duration::from_secs(1), probes: 3 };
    let mut h = established_irs_with(Config { keepalive: Some(ka), ..config() });
    let iss = h.iss;
    let idle_from = Instant::ZERO; // the last segment came with the handshake
    let t = h.stack.poll_timeout().expect("keepalive timer");
    assert_eq!(t, idle_from + ka.idle);
    h.timers_at(t);
    h.expect(&[h.reply(ACK, iss, X + 1)]);
    // The peer answers: idle again from now.
    send!(h, h.seg(ACK, X + 1, iss + 1) => []);
    let t = h.stack.poll_timeout().unwrap();
    assert_eq!(t, h.now + ka.idle);
    // Now silence: probes at idle, +1 s, +2 s, then the connection is dropped with RST.
    h.timers_at(t);
    h.expect(&[h.reply(ACK, iss, X + 1)]);
    for _ in 1..3 {
        let t = h.stack.poll_timeout().unwrap();
        h.timers_at(t);
        h.expect(&[h.reply(ACK, iss, X + 1)]);
    }
    let t = h.stack.poll_timeout().unwrap();
    h.timers_at(t);
    h.expect(&[h.reply(RST, iss + 1, 0).win(0)]);
    assert_kind(h.read(), ErrorKind::TimedOut);
}

/// A segment that straddles the whole window (old bytes before RCV.NXT, more than the
/// window after it) is trimmed to the window and its new part taken (RFC 9293 3.10.7.4:
/// "only the new parts are processed"), instead of being refused whole.
#[test]
fn test_established_segment_covering_the_whole_window() {
    let mut h = established_irs_with(config());
    let iss = h.iss;
    let first = payload(100, 1);
    send!(h, h.seg(PSH | ACK, X + 1, iss + 1).data(&first) => [h.reply(ACK, iss + 1, X + 101).win(WIN - 100)]);
    // 50 old bytes, then 5000 new ones: only what fits the 3996-byte window is taken.
    let mut big = first[50..].to_vec();
    big.extend(payload(5000, 2));
    send!(h, h.seg(ACK, X + 51, iss + 1).data(&big) => [h.reply(ACK, iss + 1, X + 101 + (BUF as u32 - 100)).win(0)]);
    let got = h.read_all();
    assert_eq!(got.len(), BUF);
    assert_eq!(&got[..100], &first[..]);
    assert_eq!(&got[100..], &big[50..50 + BUF - 100]);
}

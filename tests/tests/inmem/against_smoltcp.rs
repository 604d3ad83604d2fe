//! In-memory interop: tunstack against smoltcp 0.14, over the virtual-clock link of
//! `tunstack_tests::link`. Ours as client and as server, IPv4 and IPv6, 1 MiB each way
//! with sha256 on both ends, graceful close, and single-packet losses.
//!
//! A is always the client (10.0.0.1 / fd00::1), B the server (10.0.0.2 / fd00::2).

use std::time::Duration;

use etherparse::TcpOptionElement;
use tunstack_tests::link::*;

const PORT: u16 = 8080;
/// The in-memory tests configure MSL = 1 s (`Ours::config`).
const OURS_TWO_MSL: Duration = Duration::from_secs(2);

fn both_ways(seed: u64) -> Transfer {
    Transfer { a_to_b: MIB, b_to_a: MIB, seed }
}

/// Handshake, 1 MiB each way at once, close by `closer`; prints a summary.
fn exchange(link: &mut Link, closer: Side, seed: u64) -> (TransferReport, CloseReport) {
    let t_hs = link.handshake(PORT);
    let report = link.transfer(both_ways(seed));
    report.assert_intact();
    let close = link.graceful_close(closer);
    println!("handshake done at {t_hs:?}; {report}");
    println!("close by {closer:?}: {close}");
    println!("{}", link.summary());
    (report, close)
}

/// The harness itself, with smoltcp on both ends: if this fails, the link is at fault,
/// not tunstack.
#[test]
fn harness_smoltcp_both_ends() {
    let mut link = Link::new(smol(v4(1), 1), smol(v4(2), 2));
    let (_, close) = exchange(&mut link, Side::A, 11);
    // smoltcp keeps TIME-WAIT for a fixed 10 s.
    let held = close.time_wait_held().expect("smoltcp closer passed TIME-WAIT");
    assert!(held >= Duration::from_secs(10), "{close}");
    close.assert_passive_path();
    assert_eq!(link.retransmitted_segments(Side::A) + link.retransmitted_segments(Side::B), 0, "lossless link");
}

/// The loss machinery of the harness, with smoltcp on both ends: a dropped data segment
/// and a dropped SYN-ACK are recovered and seen again on the wire.
#[test]
fn harness_smoltcp_both_ends_losses() {
    let mut link = Link::new(smol(v4(1), 1), smol(v4(2), 2));
    let mut synack = drop_nth(Side::B, 1, TcpInfo::is_syn_ack);
    let mut data = drop_nth(Side::A, 20, TcpInfo::is_data);
    link.set_hook(move |r| {
        if synack(r) == Verdict::Drop || data(r) == Verdict::Drop {
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    });
    link.handshake(PORT);
    let report = link.transfer(Transfer { a_to_b: MIB, b_to_a: 0, seed: 12 });
    report.assert_intact();
    println!("{report}\n{}", link.summary());
    let dropped: Vec<PacketRecord> = link.log.iter().filter(|r| r.dropped).cloned().collect();
    assert_eq!(dropped.len(), 2);
    assert!(!link.delivered_after(Side::B, dropped[0].index, TcpInfo::is_syn_ack).is_empty());
    let seq = dropped[1].tcp.as_ref().unwrap().seq;
    assert!(!link.delivered_after(Side::A, dropped[1].index, |t| t.is_data() && t.seq == seq).is_empty());
    assert!(link.retransmitted_segments(Side::A) >= 1);
}

/// The three-way handshake as seen on the wire, ours connecting to smoltcp.
#[test]
fn ours_client_smoltcp_server_handshake() {
    let mut link = Link::new(ours(v4(1), 1), smol(v4(2), 2));
    link.handshake(PORT);
    println!("{}", link.summary());
    let tcp: Vec<(Side, TcpInfo)> =
        link.log.iter().map(|r| (r.from, r.tcp.clone().expect("only TCP on the link"))).collect();
    assert!(tcp.len() >= 3, "{tcp:#?}");
    let (s0, syn) = &tcp[0];
    let (s1, synack) = &tcp[1];
    let (s2, ack) = &tcp[2];
    assert_eq!((*s0, *s1, *s2), (Side::A, Side::B, Side::A));
    assert_eq!(syn.flags, SYN);
    assert_eq!(syn.dst_port, PORT);
    assert!((49152..=65535).contains(&syn.src_port), "ephemeral port {}", syn.src_port);
    assert!(syn.options.contains(&TcpOptionElement::MaximumSegmentSize(1460)), "{:?}", syn.options);
    assert!(syn.options.iter().any(|o| matches!(o, TcpOptionElement::WindowScale(_))), "{:?}", syn.options);
    assert_eq!(synack.flags, SYN | ACK);
    assert_eq!(synack.ack, syn.seq.wrapping_add(1));
    assert_eq!(ack.flags & (SYN | ACK | RST | FIN), ACK);
    assert_eq!(ack.seq, syn.seq.wrapping_add(1));
    assert_eq!(ack.ack, synack.seq.wrapping_add(1));
    assert_eq!(ack.payload_len, 0);
}

/// Ours as client: 1 MiB each way, then ours closes first: TIME-WAIT for 2 MSL, then
/// gone; smoltcp goes through LAST-ACK to CLOSED.
#[test]
fn ours_client_smoltcp_server_1mib_each_way_ours_closes() {
    let mut link = Link::new(ours(v4(1), 1), smol(v4(2), 2));
    let (_, close) = exchange(&mut link, Side::A, 21);
    close.assert_time_wait(OURS_TWO_MSL);
    close.assert_passive_path();
}

/// Ours as server: 1 MiB each way, smoltcp closes first; ours is the passive closer and
/// leaves its table once its FIN is acknowledged.
#[test]
fn ours_server_smoltcp_client_1mib_each_way_smoltcp_closes() {
    let mut link = Link::new(smol(v4(1), 1), ours(v4(2), 2));
    let (_, close) = exchange(&mut link, Side::A, 22);
    close.assert_passive_path();
    assert!(close.time_wait_at.is_some(), "smoltcp closer passed TIME-WAIT: {close}");
}

/// Ours as server closing first (e.g. an HTTP/1.0 server): ours holds TIME-WAIT.
#[test]
fn ours_server_smoltcp_client_ours_closes() {
    let mut link = Link::new(smol(v4(1), 1), ours(v4(2), 2));
    let (_, close) = exchange(&mut link, Side::B, 23);
    close.assert_time_wait(OURS_TWO_MSL);
    close.assert_passive_path();
}

/// IPv6, ours as client: MSS 1440 in our SYN, 1 MiB each way, close.
#[test]
fn ours_client_smoltcp_server_ipv6() {
    let mut link = Link::new(ours(v6(1), 1), smol(v6(2), 2));
    let (_, close) = exchange(&mut link, Side::A, 24);
    close.assert_time_wait(OURS_TWO_MSL);
    close.assert_passive_path();
    let syn = link.log[0].tcp.clone().unwrap();
    assert_eq!(syn.flags, SYN);
    assert!(syn.options.contains(&TcpOptionElement::MaximumSegmentSize(1440)), "{:?}", syn.options);
}

/// IPv6, ours as server.
#[test]
fn ours_server_smoltcp_client_ipv6() {
    let mut link = Link::new(smol(v6(1), 1), ours(v6(2), 2));
    let (_, close) = exchange(&mut link, Side::A, 25);
    close.assert_passive_path();
}

/// One of our data segments is lost: ours retransmits it (same starting sequence
/// number) and the stream still arrives intact.
#[test]
fn ours_client_drop_one_data_segment() {
    let mut link = Link::new(ours(v4(1), 1), smol(v4(2), 2));
    link.set_hook(drop_nth(Side::A, 20, TcpInfo::is_data));
    link.handshake(PORT);
    let report = link.transfer(Transfer { a_to_b: MIB, b_to_a: 0, seed: 31 });
    report.assert_intact();
    println!("{report}\n{}", link.summary());
    let lost = link.the_dropped_packet();
    let seq = lost.tcp.as_ref().unwrap().seq;
    let again = link.delivered_after(Side::A, lost.index, |t| t.is_data() && t.seq == seq);
    assert!(!again.is_empty(), "segment at seq {seq} never retransmitted");
    println!("lost {lost}\nresent {}", again[0]);
    let close = link.graceful_close(Side::A);
    close.assert_time_wait(OURS_TWO_MSL);
}

/// Same, ours as the sending server.
#[test]
fn ours_server_drop_one_data_segment() {
    let mut link = Link::new(smol(v4(1), 1), ours(v4(2), 2));
    link.set_hook(drop_nth(Side::B, 20, TcpInfo::is_data));
    link.handshake(PORT);
    let report = link.transfer(Transfer { a_to_b: 0, b_to_a: MIB, seed: 32 });
    report.assert_intact();
    println!("{report}\n{}", link.summary());
    let lost = link.the_dropped_packet();
    let seq = lost.tcp.as_ref().unwrap().seq;
    let again = link.delivered_after(Side::B, lost.index, |t| t.is_data() && t.seq == seq);
    assert!(!again.is_empty(), "segment at seq {seq} never retransmitted");
    println!("lost {lost}\nresent {}", again[0]);
}

/// smoltcp's SYN-ACK is lost: our SYN is retransmitted (after the initial RTO) and the
/// connection and a transfer complete.
#[test]
fn ours_client_drop_syn_ack() {
    let mut link = Link::new(ours(v4(1), 1), smol(v4(2), 2));
    link.set_hook(drop_nth(Side::B, 1, TcpInfo::is_syn_ack));
    let t = link.handshake(PORT);
    let syns = link.sent_by(Side::A).filter(|r| r.tcp.as_ref().is_some_and(TcpInfo::is_syn)).count();
    assert!(syns >= 2, "our SYN was not retransmitted ({syns} SYNs)");
    let lost = link.the_dropped_packet();
    assert!(!link.delivered_after(Side::B, lost.index, TcpInfo::is_syn_ack).is_empty());
    let report = link.transfer(Transfer { a_to_b: 256 * 1024, b_to_a: 256 * 1024, seed: 33 });
    report.assert_intact();
    println!("handshake done at {t:?} after losing the SYN-ACK; {report}\n{}", link.summary());
}

/// Our SYN-ACK is lost: it is sent again (on our timer or on smoltcp's SYN
/// retransmission), with the same ISS, and the connection completes.
#[test]
fn ours_server_drop_syn_ack() {
    let mut link = Link::new(smol(v4(1), 1), ours(v4(2), 2));
    link.set_hook(drop_nth(Side::B, 1, TcpInfo::is_syn_ack));
    let t = link.handshake(PORT);
    let lost = link.the_dropped_packet();
    let iss = lost.tcp.as_ref().unwrap().seq;
    let again = link.delivered_after(Side::B, lost.index, TcpInfo::is_syn_ack);
    assert!(!again.is_empty(), "our SYN-ACK was never resent");
    assert!(again.iter().all(|r| r.tcp.as_ref().unwrap().seq == iss), "a resent SYN-ACK must keep the ISS");
    let report = link.transfer(Transfer { a_to_b: 256 * 1024, b_to_a: 256 * 1024, seed: 34 });
    report.assert_intact();
    println!("handshake done at {t:?} after losing the SYN-ACK; {report}\n{}", link.summary());
}

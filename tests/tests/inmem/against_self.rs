//! In-memory interop: tunstack against tunstack over the virtual-clock link of
//! `tunstack_tests::link`. A is the client (10.0.0.1 / fd00::1), B the server
//! (10.0.0.2 / fd00::2); both run `Ours::config` (defaults, MSL 1 s).

use std::time::Duration;

use tunstack::Instant;
use tunstack_tests::link::*;

const PORT: u16 = 8080;
const TWO_MSL: Duration = Duration::from_secs(2);

fn pair() -> Link {
    Link::new(ours(v4(1), 1), ours(v4(2), 2))
}

#[test]
fn self_handshake() {
    let mut link = pair();
    let t = link.handshake(PORT);
    println!("handshake done at {t:?}\n{}", link.summary());
    let tcp: Vec<(Side, TcpInfo)> =
        link.log.iter().map(|r| (r.from, r.tcp.clone().expect("only TCP on the link"))).collect();
    assert_eq!(tcp.len(), 3, "SYN, SYN-ACK, ACK and nothing else: {tcp:#?}");
    let (syn, synack, ack) = (&tcp[0].1, &tcp[1].1, &tcp[2].1);
    assert_eq!([tcp[0].0, tcp[1].0, tcp[2].0], [Side::A, Side::B, Side::A]);
    assert_eq!(syn.flags, SYN);
    assert_eq!(synack.flags, SYN | ACK);
    assert_eq!(synack.ack, syn.seq.wrapping_add(1));
    assert_eq!(ack.flags, ACK);
    assert_eq!((ack.seq, ack.ack), (syn.seq.wrapping_add(1), synack.seq.wrapping_add(1)));
    assert_eq!(link.a.conn_state(), ConnState::Open("ESTABLISHED"));
    assert_eq!(link.b.conn_state(), ConnState::Open("ESTABLISHED"));
}

#[test]
fn self_1mib_client_to_server() {
    let mut link = pair();
    link.handshake(PORT);
    let report = link.transfer(Transfer { a_to_b: MIB, b_to_a: 0, seed: 41 });
    report.assert_intact();
    println!("{report}\n{}", link.summary());
    assert_eq!(link.retransmitted_segments(Side::A), 0, "nothing is lost on this link");
}

#[test]
fn self_1mib_server_to_client() {
    let mut link = pair();
    link.handshake(PORT);
    let report = link.transfer(Transfer { a_to_b: 0, b_to_a: MIB, seed: 42 });
    report.assert_intact();
    println!("{report}\n{}", link.summary());
    assert_eq!(link.retransmitted_segments(Side::B), 0, "nothing is lost on this link");
}

/// 1 MiB each way at once, then the client closes: TIME-WAIT for 2 MSL on the client,
/// CLOSE-WAIT -> LAST-ACK -> gone on the server.
#[test]
fn self_1mib_both_ways_client_closes() {
    let mut link = pair();
    link.handshake(PORT);
    let report = link.transfer(Transfer { a_to_b: MIB, b_to_a: MIB, seed: 43 });
    report.assert_intact();
    let close = link.graceful_close(Side::A);
    println!("{report}\n{close}\n{}", link.summary());
    close.assert_time_wait(TWO_MSL);
    close.assert_passive_path();
}

/// The server closes first: the server holds TIME-WAIT.
#[test]
fn self_server_closes_first() {
    let mut link = pair();
    link.handshake(PORT);
    let report = link.transfer(Transfer { a_to_b: 64 * 1024, b_to_a: 64 * 1024, seed: 44 });
    report.assert_intact();
    let close = link.graceful_close(Side::B);
    println!("{report}\n{close}\n{}", link.summary());
    close.assert_time_wait(TWO_MSL);
    close.assert_passive_path();
}

/// Both applications close at the same instant: the FINs cross, both ends pass through
/// CLOSING (or straight to TIME-WAIT with FIN+ACK) and both hold TIME-WAIT for 2 MSL
/// (RFC 9293 3.6, figure 13).
#[test]
fn self_simultaneous_close() {
    let mut link = pair();
    link.handshake(PORT);
    let report = link.transfer(Transfer { a_to_b: 1000, b_to_a: 1000, seed: 45 });
    report.assert_intact();
    link.a.close();
    link.b.close();
    let mut paths: [Vec<ConnState>; 2] = [Vec::new(), Vec::new()];
    let mut time_wait_at = [None, None];
    let mut gone_at = [None, None];
    link.run_until("simultaneous close", |a, b, now| {
        for (i, ep) in [a, b].into_iter().enumerate() {
            let s = ep.conn_state();
            if paths[i].last() != Some(&s) {
                paths[i].push(s);
            }
            if s == ConnState::Open("TIME-WAIT") && time_wait_at[i].is_none() {
                time_wait_at[i] = Some(now);
            }
            if s == ConnState::Gone && gone_at[i].is_none() {
                gone_at[i] = Some(now);
            }
        }
        gone_at.iter().all(Option::is_some)
    });
    println!("A: {paths0:?}\nB: {paths1:?}\n{}", link.summary(), paths0 = paths[0], paths1 = paths[1]);
    for i in 0..2 {
        assert!(paths[i].contains(&ConnState::Open("CLOSING")), "side {i} never in CLOSING: {:?}", paths[i]);
        let tw = time_wait_at[i].unwrap_or_else(|| panic!("side {i} never in TIME-WAIT: {:?}", paths[i]));
        let held = gone_at[i].unwrap() - tw;
        assert!(held >= TWO_MSL && held <= TWO_MSL + Duration::from_millis(10), "side {i} held TIME-WAIT {held:?}");
    }
}

/// IPv6 end to end: 1 MiB each way and a close.
#[test]
fn self_ipv6_1mib_both_ways() {
    let mut link = Link::new(ours(v6(1), 1), ours(v6(2), 2));
    link.handshake(PORT);
    let report = link.transfer(Transfer { a_to_b: MIB, b_to_a: MIB, seed: 46 });
    report.assert_intact();
    let close = link.graceful_close(Side::A);
    println!("{report}\n{close}\n{}", link.summary());
    close.assert_time_wait(TWO_MSL);
    close.assert_passive_path();
}

/// A data segment is lost; the sender retransmits from the same sequence number and the
/// stream arrives intact.
#[test]
fn self_drop_one_data_segment() {
    let mut link = pair();
    link.set_hook(drop_nth(Side::A, 20, TcpInfo::is_data));
    link.handshake(PORT);
    let report = link.transfer(Transfer { a_to_b: MIB, b_to_a: 0, seed: 47 });
    report.assert_intact();
    let lost = link.the_dropped_packet();
    let seq = lost.tcp.as_ref().unwrap().seq;
    let again = link.delivered_after(Side::A, lost.index, |t| t.is_data() && t.seq == seq);
    assert!(!again.is_empty(), "segment at seq {seq} never retransmitted");
    println!("{report}\nlost {lost}\nresent {}\n{}", again[0], link.summary());
    assert!(link.retransmitted_segments(Side::A) >= 1);
    let close = link.graceful_close(Side::A);
    close.assert_time_wait(TWO_MSL);
}

/// The SYN-ACK is lost: the handshake still completes (SYN or SYN-ACK retransmitted
/// after the initial RTO of 1 s), the retransmitted SYN-ACK keeps the ISS, and data flows.
#[test]
fn self_drop_syn_ack() {
    let mut link = pair();
    link.set_hook(drop_nth(Side::B, 1, TcpInfo::is_syn_ack));
    let t = link.handshake(PORT);
    assert!(t >= Instant::from_secs(1), "recovery needs a retransmission timeout, done at {t:?}");
    let lost = link.the_dropped_packet();
    let iss = lost.tcp.as_ref().unwrap().seq;
    let again = link.delivered_after(Side::B, lost.index, TcpInfo::is_syn_ack);
    assert!(!again.is_empty(), "no SYN-ACK after the lost one");
    assert!(again.iter().all(|r| r.tcp.as_ref().unwrap().seq == iss), "a resent SYN-ACK must keep the ISS");
    let report = link.transfer(Transfer { a_to_b: 256 * 1024, b_to_a: 256 * 1024, seed: 48 });
    report.assert_intact();
    println!("handshake done at {t:?}; {report}\n{}", link.summary());
}

//! Property: a byte stream cut into chunks that a peer delivers in any order, with
//! overlaps and duplicates, comes out of `tcp_recv` in order and intact.
//!
//! The peer behaves like a real sender: after each round it re-sends, in a new random
//! order, every chunk not yet covered by the stack's cumulative ACK, until the whole
//! stream (and the FIN) is acknowledged. So the property holds whether the stack keeps
//! out-of-order segments (reassembly) or drops them and waits for the retransmission.
//! Along the way the stack's ACK never moves backwards and what the application has read
//! is always a prefix of the stream.

use proptest::prelude::*;
use tunstack::wire::{TcpFlags, TcpOptions, TcpRepr};
use tunstack::TcpState;
use tunstack_tests::fuzzing::{ConnHarness, ConnSetup};

/// A deterministic shuffle driven by the test's seed (xorshift64*).
fn shuffle<T>(v: &mut [T], state: &mut u64) {
    if *state == 0 {
        return; // keep the given order
    }
    for i in (1..v.len()).rev() {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let j = (state.wrapping_mul(0x2545_f491_4f6c_dd1d) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// Largest chunk: below the stack's MSS (1460 over IPv4, 1440 over IPv6), as a real
/// sender would. (A segment wider than the whole receive window, starting before RCV.NXT
/// and ending past the right edge, fails the RFC 9293 3.10.7.4 acceptability test as
/// written, where Linux accepts any overlap; a peer respecting the MSS never sends one
/// while the window is open.)
const MAX_CHUNK: usize = 1200;

/// Chunks `[start, end)` covering `0..len`: cut at `cuts`, each widened by its overlap
/// (left and right) and split to at most `MAX_CHUNK` bytes, plus duplicates of some.
fn chunks(len: usize, cuts: &[usize], overlaps: &[(u16, u16)], dups: &[usize]) -> Vec<(usize, usize)> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % len).filter(|&c| c > 0).collect();
    points.push(0);
    points.push(len);
    points.sort_unstable();
    points.dedup();
    let v: Vec<(usize, usize)> = points
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            let (l, r) = overlaps.get(i).copied().unwrap_or((0, 0));
            (w[0].saturating_sub(usize::from(l)), (w[1] + usize::from(r)).min(len))
        })
        .collect();
    let mut v: Vec<(usize, usize)> =
        v.into_iter().flat_map(|(s, e)| (s..e).step_by(MAX_CHUNK).map(move |a| (a, (a + MAX_CHUNK).min(e)))).collect();
    let n = v.len();
    for d in dups {
        v.push(v[d % n]);
    }
    v
}

fn run(
    stream: &[u8],
    chunks: &[(usize, usize)],
    mut rng: u64,
    v6: bool,
    wscale: Option<u8>,
    read_each: bool,
) -> Result<(), TestCaseError> {
    let options = TcpOptions { mss: Some(1400), window_scale: wscale, ..TcpOptions::default() };
    let mut c = ConnHarness::new(ConnSetup { v6, active: false, options }, 5);
    c.world.strict_rx = false; // the content is the test's own stream, checked here
    let h = c.handle;
    let info = c.world.stack.tcp_info(h).unwrap();
    let base = info.rcv_nxt; // sequence number of stream[0]
    let len = stream.len();
    let ti = c.tuple;
    let (src_port, dst_port) = (c.world.tuples[ti].remote.port(), c.world.tuples[ti].local.port());
    let mut read = Vec::with_capacity(len);
    let mut last_ack = base;
    let mut order: Vec<(usize, usize)> = chunks.to_vec();
    shuffle(&mut order, &mut rng);
    let mut buf = vec![0u8; 8192];

    let mut read_all = |c: &mut ConnHarness, read: &mut Vec<u8>| -> Result<(), TestCaseError> {
        loop {
            match c.world.stack.tcp_recv(h, &mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    read.extend_from_slice(&buf[..n]);
                    prop_assert!(
                        read.len() <= len && read[..] == stream[..read.len()],
                        "read data is not a prefix of the stream"
                    );
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(TestCaseError::fail(format!("tcp_recv: {e}"))),
            }
        }
    };

    for round in 0.. {
        prop_assert!(round < 300, "not done after {round} rounds: {} of {len} bytes acknowledged", last_ack - base);
        for &(s, e) in &order {
            let fin = e == len;
            let repr = TcpRepr {
                src_port,
                dst_port,
                seq: base + s,
                ack: c.world.tuples[ti].stack_nxt,
                flags: if fin { TcpFlags::ACK | TcpFlags::PSH | TcpFlags::FIN } else { TcpFlags::ACK | TcpFlags::PSH },
                window: 65535,
                urgent: 0,
                options: TcpOptions::default(),
                payload: &stream[s..e],
            };
            c.world.peer_segment(ti, &repr);
            c.world.drain();
            c.world.check();
            let ack = c.world.tuples[ti].stack_ack.unwrap_or(base);
            prop_assert!(ack >= last_ack, "the ACK moved backwards: {ack:?} after {last_ack:?}");
            last_ack = ack;
            if read_each {
                read_all(&mut c, &mut read)?;
            }
        }
        read_all(&mut c, &mut read)?;
        c.world.advance(std::time::Duration::from_millis(10));
        c.world.check();
        let acked = last_ack - base; // bytes, plus one for the FIN
        if acked == len + 1 {
            break;
        }
        // Retransmit what the cumulative ACK does not cover yet, in a new order.
        order = chunks.iter().copied().filter(|&(_, e)| e > acked || (e == len && acked <= len)).collect();
        shuffle(&mut order, &mut rng);
    }
    read_all(&mut c, &mut read)?;
    prop_assert_eq!(read.len(), len);
    prop_assert!(read == stream, "the stream came out different");
    prop_assert_eq!(c.world.stack.tcp_state(h).ok(), Some(TcpState::CloseWait));
    prop_assert_eq!(c.world.stack.tcp_recv(h, &mut [0u8; 16]).ok(), Some(0), "end of stream after the FIN");
    c.finish();
    Ok(())
}

proptest! {
    #![proptest_config(crate::config(200))]

    #[test]
    fn stream_arrives_in_order_and_intact(
        stream in prop::collection::vec(any::<u8>(), 1..9000),
        cuts in prop::collection::vec(any::<usize>(), 0..24),
        overlaps in prop::collection::vec((0..300u16, 0..300u16), 0..24),
        dups in prop::collection::vec(any::<usize>(), 0..8),
        rng in 1..u64::MAX,
        v6 in any::<bool>(),
        wscale in prop::option::of(0..=14u8),
        read_each in any::<bool>(),
    ) {
        let ch = chunks(stream.len(), &cuts, &overlaps, &dups);
        run(&stream, &ch, rng, v6, wscale, read_each)?;
    }
}

/// The property's machinery on one fixed case: everything reversed, so every segment but
/// the last arrives out of order in the first round.
#[test]
fn reversed_chunks() {
    let stream: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
    let mut ch = chunks(stream.len(), &[1000, 2000, 3000, 4000], &[(0, 0); 5], &[2]);
    ch.reverse();
    run(&stream, &ch, 0, false, None, true).unwrap();
}

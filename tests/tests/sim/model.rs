//! The simulator itself (`tunstack_tests::sim`): its seeds, its conditions (the path
//! model is the core's `tunstack::link`, tested in the core), its guard rails (a run that
//! cannot finish fails with a diagnostic instead of hanging), determinism (same seed,
//! same run), and that our stack catches every corrupted bit the checksums cover.

use std::net::SocketAddr;
use std::time::Duration;

use tunstack::Instant;
use tunstack_tests::link::{v4, v6, Endpoint, Ours};
use tunstack_tests::sim::*;

// ---------------------------------------------------------------------------- randomness

/// The simulator's seeds and payloads come from the core's PRNG (`tunstack::rand::Rng`,
/// whose own tests are in the core): same seed, same bytes.
#[test]
fn rng_same_seed_same_stream() {
    let (mut x, mut y) = (Rng::new(42), Rng::new(42));
    assert_eq!((0..100).map(|_| x.next_u64()).collect::<Vec<_>>(), (0..100).map(|_| y.next_u64()).collect::<Vec<_>>());
    assert_eq!(payload(7, 1000), payload(7, 1000));
    assert_ne!(payload(7, 1000), payload(8, 1000));
    assert_eq!(payload(7, 1000)[..999], payload(7, 999)[..]);
    assert_ne!(derive_seed(1, 2), derive_seed(1, 3));
    assert_ne!(derive_seed(1, 2), derive_seed(2, 2));
}

// ---------------------------------------------------------------------------- the paths
//
// The model itself (queue, rate, loss, delay, reordering, duplication, corruption) is
// the core's `tunstack::link`, tested there; here: the simulator's conditions.

#[test]
fn standard_conditions_are_valid_and_described() {
    for c in Condition::matrix() {
        c.forward.validate().unwrap_or_else(|e| panic!("{}: {e}", c.name));
        c.reverse.validate().unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(c.forward, c.reverse);
        assert_eq!(c.forward.corruption, Corruption::AnyByte);
    }
    assert_eq!(Condition::clean().describe(), "clean: each way 100 Mbit/s, queue 256 pkts / 384 KiB, 10ms one-way");
    assert_eq!(
        Condition::mixed().describe(),
        "mixed 5/5/1/1: each way 100 Mbit/s, queue 256 pkts / 384 KiB, 10ms one-way, loss 5%, reorder 5% (+500µs..5ms), dup 1%, corrupt 1%"
    );
    assert_eq!(
        Condition::congested().describe(),
        "congested 10M/q32: each way 10 Mbit/s, queue 32 pkts / 48 KiB, 10ms one-way"
    );
    assert_eq!(Condition::loss(20).forward.loss, 0.2);
}

/// A SYN of our stack, as a sample of a real packet.
fn a_syn(ipv6: bool) -> (Vec<u8>, SocketAddr) {
    let (a, b) = if ipv6 { (v6(1), v6(2)) } else { (v4(1), v4(2)) };
    let mut ours = Ours::new(a, 3);
    let to = SocketAddr::new(b, 80);
    ours.connect(Instant::ZERO, to);
    let mut out = Vec::new();
    ours.output(Instant::ZERO, &mut out);
    assert_eq!(out.len(), 1, "one SYN");
    (out.pop().unwrap(), to)
}

#[test]
fn path_corrupts_one_bit_or_byte_and_inspect_sees_it() {
    let (syn, _) = a_syn(false);
    inspect(&syn).expect("the sample is valid");
    let config = standard_path().with(|c| c.corrupt = 1.0);
    let mut path = Impairer::new(config, 11, 1500);
    let mut now = Instant::ZERO;
    let mut seen = 0;
    for _ in 0..500 {
        let Fate::Held { first, second: None } = path.push(now, &syn) else { panic!("one copy") };
        assert!(first.corrupted);
        now = first.due;
        path.release(now, |bad, info| {
            assert!(info.corrupted);
            let differing = bad.iter().zip(&syn).filter(|(x, y)| x != y).count();
            assert_eq!(differing, 1, "exactly one byte changed");
            // Over IPv4 every field is under a checksum: nothing corrupted is valid.
            assert!(inspect(bad).is_err());
            seen += 1;
        });
    }
    assert_eq!(seen, 500);
    assert_eq!(path.counters().corrupted, 500);
}

/// Every single-bit flip of a SYN is dropped (and counted) by our stack when a checksum
/// or length covers the bit; over IPv6 the flips that land in the traffic class, flow
/// label or hop limit make valid packets, which must be accepted.
fn bit_flips_are_caught(ipv6: bool) {
    let (syn, to) = a_syn(ipv6);
    let mut valid_flips = 0;
    for bit in 0..syn.len() * 8 {
        let mut bad = syn.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let detectable = inspect(&bad).is_err();
        let mut b = Ours::new(to.ip(), 9);
        b.listen(to.port());
        let before = b.drops().unwrap();
        b.input(Instant::ZERO, &bad);
        let dropped = b.drops().unwrap() > before;
        assert_eq!(
            dropped,
            detectable,
            "bit {bit} (byte {}) flipped: etherparse says {:?}, our stack {}: {bad:02x?}",
            bit / 8,
            inspect(&bad).err(),
            if dropped { "dropped it" } else { "took it" }
        );
        if !detectable {
            valid_flips += 1;
            let mut out = Vec::new();
            b.output(Instant::ZERO, &mut out);
            assert_eq!(out.len(), 1, "a valid SYN gets a SYN-ACK (bit {bit})");
        }
    }
    if ipv6 {
        // 8 bits of traffic class, 20 of flow label, 8 of hop limit.
        assert_eq!(valid_flips, 36);
    } else {
        assert_eq!(valid_flips, 0);
    }
}

#[test]
fn ours_catches_every_bit_flip_ipv4() {
    bit_flips_are_caught(false);
}

#[test]
fn ours_catches_every_bit_flip_ipv6() {
    bit_flips_are_caught(true);
}

// ---------------------------------------------------------------------------- guard rails

#[test]
fn time_limit_fails_with_a_diagnostic() {
    let mut s = Scenario::new(Peer::Ours, Peer::Smoltcp, Condition::clean());
    s.max_time = Duration::from_millis(200);
    let e = run(&s).expect_err("10 MB cannot cross 100 Mbit/s in 200 ms");
    println!("{e}");
    assert_eq!(e.kind, FailKind::TimeLimit);
    let text = e.to_string();
    assert!(text.contains(&format!("SIM_SEED={:#x}", s.seed)), "{text}");
    assert!(text.contains("last packets") && text.contains("pushed") && text.contains("ESTABLISHED"), "{text}");
}

#[test]
fn event_limit_fails_with_a_diagnostic() {
    let mut s = Scenario::new(Peer::Ours, Peer::Ours, Condition::clean());
    s.max_events = 500;
    let e = run(&s).expect_err("500 events are not enough for 10 MB");
    println!("{e}");
    assert_eq!(e.kind, FailKind::EventLimit);
}

/// A black-holed path: our client gives up after its SYN retries and the run reports
/// it; smoltcp retries forever and the no-progress guard ends the run.
#[test]
fn black_hole_ends_the_run() {
    let hole = Condition::symmetric("black hole", standard_path().with(|c| c.loss = 1.0));
    let e = run(&Scenario::new(Peer::Ours, Peer::Smoltcp, hole.clone())).expect_err("nothing crosses");
    println!("{e}");
    assert_eq!(e.kind, FailKind::Aborted);
    assert!(e.message.contains("connect"), "{e}");

    let mut s = Scenario::new(Peer::Smoltcp, Peer::Ours, hole);
    s.no_progress_limit = Duration::from_secs(300);
    let e = run(&s).expect_err("nothing crosses");
    println!("{e}");
    assert!(matches!(e.kind, FailKind::Stall | FailKind::Aborted), "{e}");
}

// ---------------------------------------------------------------------------- determinism

/// The same seed gives the same run, packet for packet; another seed another run.
#[test]
fn same_seed_same_run() {
    for (sender, receiver) in [(Peer::Ours, Peer::Smoltcp), (Peer::Ours, Peer::Ours)] {
        let mut s = Scenario::new(sender, receiver, Condition::mixed());
        s.bytes = 2_000_000;
        let r1 = run(&s).unwrap_or_else(|e| panic!("{e}"));
        let r2 = run(&s).unwrap_or_else(|e| panic!("{e}"));
        r1.assert_intact();
        println!("{}\n{}\n{}", table_header(), r1.row(), r2.row());
        assert_eq!(r1.paths, r2.paths, "packet counts");
        assert_eq!((r1.established, r1.completed, r1.closed), (r2.established, r2.completed, r2.closed));
        assert_eq!((r1.retransmitted, r1.events), (r2.retransmitted, r2.events));
        assert_eq!(r1.trace_digest, r2.trace_digest, "every packet, its time and its fate");
        assert_eq!(r1.received_sha256, r2.received_sha256);
        assert!(r1.paths[0].lost > 0 && r1.paths[0].reordered > 0, "a lossy run: {:?}", r1.paths[0]);

        s.seed ^= 1;
        let r3 = run(&s).unwrap_or_else(|e| panic!("{e}"));
        println!("{}", r3.row());
        r3.assert_intact();
        assert_ne!(r1.trace_digest, r3.trace_digest, "another seed, another run");
    }
}

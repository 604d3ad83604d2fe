//! The simulator itself (`tunstack_tests::sim`): its PRNG, the path model (bandwidth,
//! queue, loss, reordering, duplication, corruption), its guard rails (a run that
//! cannot finish fails with a diagnostic instead of hanging), determinism (same seed,
//! same run), and that our stack catches every corrupted bit the checksums cover.

use std::net::SocketAddr;
use std::time::Duration;

use tunstack::Instant;
use tunstack_tests::link::{v4, v6, Endpoint, Ours};
use tunstack_tests::sim::*;

// ---------------------------------------------------------------------------- the PRNG

#[test]
fn rng_same_seed_same_stream() {
    let (mut x, mut y, mut z) = (Rng::new(42), Rng::new(42), Rng::new(43));
    let xs: Vec<u64> = (0..1000).map(|_| x.next_u64()).collect();
    let ys: Vec<u64> = (0..1000).map(|_| y.next_u64()).collect();
    let zs: Vec<u64> = (0..1000).map(|_| z.next_u64()).collect();
    assert_eq!(xs, ys);
    assert_ne!(xs, zs);
    assert_eq!(payload(7, 1000), payload(7, 1000));
    assert_ne!(payload(7, 1000), payload(8, 1000));
    assert_ne!(derive_seed(1, 2), derive_seed(1, 3));
}

#[test]
fn rng_chance_and_below_are_fair() {
    let mut rng = Rng::new(2024);
    let hits = (0..200_000).filter(|_| rng.chance(5 * PPM_PER_PERCENT)).count();
    // 10_000 expected; the standard deviation is about 97.
    assert!((9_500..10_500).contains(&hits), "5% of 200000 draws: {hits}");
    assert_eq!((0..1000).filter(|_| rng.chance(0)).count(), 0);
    assert_eq!((0..1000).filter(|_| rng.chance(1_000_000)).count(), 1000);
    let mut seen = [0usize; 10];
    for _ in 0..10_000 {
        seen[rng.below(10) as usize] += 1;
    }
    assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    for _ in 0..1000 {
        let d = rng.between(Duration::from_millis(1), Duration::from_millis(3));
        assert!(d >= Duration::from_millis(1) && d <= Duration::from_millis(3));
    }
}

// ---------------------------------------------------------------------------- the path

fn ideal(rate_bps: u64, delay: Duration) -> PathConfig {
    PathConfig { rate_bps, delay, queue_packets: 1000, queue_bytes: 1 << 30, ..PathConfig::standard() }
}

fn arrivals(fate: Fate) -> Vec<Instant> {
    match fate {
        Fate::Sent(copies) => copies.iter().map(|c| c.arrival).collect(),
        other => panic!("expected delivery, got {other:?}"),
    }
}

#[test]
fn path_serializes_at_the_bottleneck_rate_then_delays() {
    let mut path = Path::new(ideal(100_000_000, Duration::from_millis(10)));
    let mut rng = Rng::new(1);
    // 1500 bytes at 100 Mbit/s take 120 us on the wire; back to back they queue.
    let t0 = Instant::ZERO;
    assert_eq!(arrivals(path.send(t0, vec![0; 1500], &mut rng)), [Instant::from_micros(10_120)]);
    assert_eq!(arrivals(path.send(t0, vec![0; 1500], &mut rng)), [Instant::from_micros(10_240)]);
    assert_eq!(arrivals(path.send(t0, vec![0; 1500], &mut rng)), [Instant::from_micros(10_360)]);
    assert_eq!(path.queued(t0), (3, 4500));
    assert_eq!(path.queued(Instant::from_micros(240)), (1, 1500));
    // 40 bytes take 3.2 us, behind the queue.
    assert_eq!(arrivals(path.send(t0, vec![0; 40], &mut rng)), [Instant::from_micros(10_364)]);
    // An idle path: serialization starts at once.
    let t1 = Instant::from_secs(1);
    assert_eq!(path.queued(t1), (0, 0));
    assert_eq!(arrivals(path.send(t1, vec![0; 1500], &mut rng)), [Instant::from_micros(1_010_120)]);
    // An infinitely fast path only delays.
    let mut fast = Path::new(ideal(0, Duration::from_millis(3)));
    for _ in 0..100 {
        assert_eq!(arrivals(fast.send(t0, vec![0; 1500], &mut rng)), [Instant::from_millis(3)]);
    }
    assert_eq!(path.counters.packets, 5);
    assert_eq!(path.counters.bytes, 4 * 1500 + 40);
}

#[test]
fn path_tail_drops_when_the_queue_is_full() {
    // 1 Mbit/s: a 1000-byte packet takes 8 ms.
    let config = PathConfig { queue_packets: 8, ..ideal(1_000_000, Duration::from_millis(1)) };
    let mut path = Path::new(config);
    let mut rng = Rng::new(1);
    let fates: Vec<Fate> = (0..12).map(|_| path.send(Instant::ZERO, vec![0; 1000], &mut rng)).collect();
    let dropped = fates.iter().filter(|f| matches!(f, Fate::TailDrop)).count();
    assert_eq!(dropped, 4);
    assert!(fates[..8].iter().all(|f| matches!(f, Fate::Sent(_))));
    assert_eq!(path.counters.tail_dropped, 4);
    // After 16 ms two packets have left: two more fit, the third does not.
    let t = Instant::from_millis(16);
    assert!(matches!(path.send(t, vec![0; 1000], &mut rng), Fate::Sent(_)));
    assert!(matches!(path.send(t, vec![0; 1000], &mut rng), Fate::Sent(_)));
    assert!(matches!(path.send(t, vec![0; 1000], &mut rng), Fate::TailDrop));

    // The byte limit: 2500 bytes hold two 1000-byte packets, and a small one still fits.
    let config = PathConfig { queue_packets: 100, queue_bytes: 2500, ..ideal(1_000_000, Duration::from_millis(1)) };
    let mut path = Path::new(config);
    assert!(matches!(path.send(Instant::ZERO, vec![0; 1000], &mut rng), Fate::Sent(_)));
    assert!(matches!(path.send(Instant::ZERO, vec![0; 1000], &mut rng), Fate::Sent(_)));
    assert!(matches!(path.send(Instant::ZERO, vec![0; 1000], &mut rng), Fate::TailDrop));
    assert!(matches!(path.send(Instant::ZERO, vec![0; 500], &mut rng), Fate::Sent(_)));
}

#[test]
fn path_random_loss_rate() {
    let config = PathConfig { loss_ppm: 10 * PPM_PER_PERCENT, ..ideal(0, Duration::from_millis(1)) };
    let mut path = Path::new(config);
    let mut rng = Rng::new(99);
    let lost = (0..20_000).filter(|_| matches!(path.send(Instant::ZERO, vec![0; 100], &mut rng), Fate::Lost)).count();
    // 2000 expected; the standard deviation is about 42.
    assert!((1800..2200).contains(&lost), "{lost}");
    assert_eq!(path.counters.lost, lost as u64);
}

#[test]
fn path_reorders_and_duplicates() {
    let config = PathConfig {
        reorder_ppm: 20 * PPM_PER_PERCENT,
        duplicate_ppm: 10 * PPM_PER_PERCENT,
        ..ideal(100_000_000, Duration::from_millis(10))
    };
    let mut path = Path::new(config.clone());
    let mut rng = Rng::new(5);
    let mut firsts = Vec::new();
    let mut copies = 0;
    for i in 0..2000u64 {
        let now = Instant::from_micros(i * 200);
        let Fate::Sent(c) = path.send(now, vec![0; 1500], &mut rng) else { panic!("no loss configured") };
        assert!(c[0].arrival >= now + config.delay);
        if c[0].reordered {
            assert!(c[0].arrival >= now + config.delay + config.reorder_extra.0);
        }
        if c.len() == 2 {
            assert!(c[1].duplicate && c[1].arrival >= c[0].arrival);
            assert!(c[1].arrival <= c[0].arrival + config.duplicate_extra.1);
            assert_eq!(c[0].packet, c[1].packet);
        }
        copies += c.len();
        firsts.push(c[0].arrival);
    }
    let overtaken = firsts.windows(2).filter(|w| w[1] < w[0]).count();
    let k = path.counters;
    assert!(overtaken > 100, "held-back packets must be overtaken by later ones: {overtaken}");
    assert!((300..500).contains(&k.reordered), "{k:?}");
    assert!((120..280).contains(&k.duplicated), "{k:?}");
    assert_eq!(copies as u64, 2000 + k.duplicated);
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
    let config = PathConfig { corrupt_ppm: 1_000_000, ..ideal(0, Duration::from_millis(1)) };
    let mut path = Path::new(config);
    let mut rng = Rng::new(11);
    for _ in 0..500 {
        let Fate::Sent(c) = path.send(Instant::ZERO, syn.clone(), &mut rng) else { panic!() };
        let bad = &c[0].packet;
        let differing = bad.iter().zip(&syn).filter(|(x, y)| x != y).count();
        assert_eq!(differing, 1, "exactly one byte changed");
        // Over IPv4 every field is under a checksum: nothing corrupted is valid.
        assert_eq!(c[0].corrupted, Some(true));
        assert!(inspect(bad).is_err());
    }
    assert_eq!(path.counters.corrupted, 500);
    assert_eq!(path.counters.corrupted_undetectable, 0);
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
    let hole = Condition::symmetric("black hole", PathConfig { loss_ppm: 1_000_000, ..PathConfig::standard() });
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

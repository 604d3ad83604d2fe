//! The sans-IO core alone: two stacks wired back to back in memory move a bulk
//! transfer; prints the CPU cost per segment and per GB. No device, no threads: this
//! is the ceiling the runtime can reach, and the profile target for the core.
//!
//! `cargo run --release -p tunstack --example core_bulk -- [MB] [MTU]`

use std::time::Instant as WallClock;

use tunstack::{Config, Instant, Stack};

fn main() {
    let mut args = std::env::args().skip(1);
    let mb: usize = args.next().map(|a| a.parse().expect("MB")).unwrap_or(1000);
    let mtu: usize = args.next().map(|a| a.parse().expect("MTU")).unwrap_or(1500);
    let cfg = |addr: &str, seed| {
        Config::default().with(|c| {
            c.addrs = vec![addr.parse().unwrap()];
            c.seed = seed;
            c.mtu = mtu;
            c.tcp_rx_buffer = 1 << 20;
            c.tcp_tx_buffer = 1 << 20;
        })
    };
    let mut a = Stack::new(cfg("10.0.0.1", 1));
    let mut b = Stack::new(cfg("10.0.0.2", 2));
    let l = a.tcp_listen("10.0.0.1:80".parse().unwrap(), 8).unwrap();
    let mut now = Instant::ZERO;
    let c = b.tcp_connect(now, "10.0.0.1:80".parse().unwrap(), None).unwrap();
    let mut pkt = vec![0u8; mtu];
    let mut packets = 0u64;
    let mut pump = |now: Instant, from: &mut Stack, to: &mut Stack| {
        let mut n = 0;
        while let Some(len) = from.poll_transmit(now, &mut pkt) {
            to.input(now, &pkt[..len]);
            n += 1;
        }
        n
    };
    pump(now, &mut b, &mut a);
    pump(now, &mut a, &mut b);
    pump(now, &mut b, &mut a);
    let s = a.tcp_accept(l).expect("accepted");
    let total = mb << 20;
    let chunk = vec![0x5au8; 256 * 1024];
    let mut buf = vec![0u8; 256 * 1024];
    let (mut sent, mut got) = (0usize, 0usize);
    let start = WallClock::now();
    while got < total {
        if sent < total {
            if let Ok(n) = b.tcp_send(c, &chunk[..chunk.len().min(total - sent)]) {
                sent += n;
            }
        }
        let moved = pump(now, &mut b, &mut a);
        packets += moved;
        while let Ok(n) = a.tcp_recv(s, &mut buf) {
            if n == 0 {
                break;
            }
            got += n;
        }
        packets += pump(now, &mut a, &mut b);
        // 1 ms of virtual time per round keeps the delayed-ACK timer honest.
        now += std::time::Duration::from_millis(1);
        a.handle_timeout(now);
        b.handle_timeout(now);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{mb} MiB at MTU {mtu}: {packets} packets in {secs:.3} s: {:.2} Gbit/s, {:.0} ns/packet, {:.3} s/GB (both stacks, one core)",
        (total as f64 * 8.0) / secs / 1e9,
        secs * 1e9 / packets as f64,
        secs / (total as f64 / 1e9)
    );
}

//! What the packet policy costs, on the sans-IO core (no device, no kernel): the time
//! `Stack::input` takes per packet, with no policy, with 1 rule and with 1000 rules.
//!
//! - **new flows**: 10,000 SYNs (from another tunstack, one per connection attempt) to
//!   a closed port; every one passes the rule list (no rule matches) and the default
//!   `accept` lets the stack answer with a RST, which is drained. Rules with a
//!   destination port are indexed by it, so 1000 rules for other ports are not read;
//!   1000 rules without ports are all read (the worst case).
//! - **established**: a 32 MiB transfer between two stacks; the receiver's
//!   `input` per data segment. Packets of established flows never reach the rules, so
//!   this row should not move with the rule count.
//!
//! The configurations are measured in turns (ABCABC...), `--rounds` times, and the
//! median of each is printed: the machine is shared, so compare within one run.
//!
//! ```sh
//! cargo run --release -p bench --bin policy_cost -- --rounds 9
//! ```

use std::net::{IpAddr, SocketAddr};
use std::time::Instant as WallClock;

use tunstack::policy::Policy;
use tunstack::{Config, Instant, Stack};

const SERVER: &str = "10.0.0.2";
const CLIENT: &str = "10.0.0.1";
const SYNS: usize = 10_000;
const BULK: usize = 32 << 20;

fn config(addr: &str, seed: u64) -> Config {
    Config::default().with(|c| {
        c.addrs = vec![addr.parse().unwrap()];
        c.seed = seed;
        c.ephemeral_ports = (10_000, 60_000);
    })
}

/// `n` rules that never match the benchmark's packets (they name other sources). With
/// `ports`, each names a service port (a thousand services' rules: the port index
/// leaves a SYN to port 81 none to read); without, every new flow reads all of them
/// before the default policy decides (the worst case).
fn rules(n: usize, ports: bool) -> String {
    (0..n)
        .map(|i| {
            let src = format!("172.16.{}.{}/32", i / 250, i % 250 + 1);
            if ports {
                format!("drop in tcp from {src} dport {}\n", 1000 + i)
            } else {
                format!("drop in tcp from {src}\n")
            }
        })
        .collect()
}

fn stack_with(rule_count: Option<(usize, bool)>) -> Stack {
    let mut s = Stack::new(config(SERVER, 2));
    if let Some((n, ports)) = rule_count {
        let p = Policy::parse(&rules(n, ports), s.policy_key()).expect("the generated rules parse");
        assert_eq!(p.rules().count(), n);
        s.set_policy(Some(p));
    }
    s
}

/// SYNs from a client stack, one per connection attempt to `SERVER:81`.
fn syns() -> Vec<Vec<u8>> {
    let mut client = Stack::new(config(CLIENT, 1));
    let remote = SocketAddr::new(SERVER.parse::<IpAddr>().unwrap(), 81);
    let mut buf = vec![0u8; 1500];
    let mut out = Vec::with_capacity(SYNS);
    for _ in 0..SYNS {
        let h = client.tcp_connect(Instant::ZERO, remote, None).expect("connect");
        while let Some(n) = client.poll_transmit(Instant::ZERO, &mut buf) {
            out.push(buf[..n].to_vec());
        }
        client.tcp_abort(h).unwrap();
        while client.poll_transmit(Instant::ZERO, &mut buf).is_some() {}
    }
    assert_eq!(out.len(), SYNS, "one SYN per attempt");
    out
}

/// Nanoseconds per SYN: `input` and draining the RST.
fn new_flows(server: &mut Stack, syns: &[Vec<u8>]) -> f64 {
    let mut buf = vec![0u8; 1500];
    let mut answered = 0;
    let t = WallClock::now();
    for s in syns {
        server.input(Instant::ZERO, s);
        while server.poll_transmit(Instant::ZERO, &mut buf).is_some() {
            answered += 1;
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / syns.len() as f64;
    assert_eq!(answered, syns.len(), "every SYN to a closed port is answered with a RST");
    ns
}

/// Nanoseconds per data segment the receiver takes in (and its ACKs drained).
fn established(mut server: Stack) -> f64 {
    let mut client = Stack::new(config(CLIENT, 1));
    let port = 80;
    let l = server.tcp_listen(SocketAddr::new(SERVER.parse().unwrap(), port), 8).unwrap();
    let mut now = Instant::ZERO;
    let c = client.tcp_connect(now, SocketAddr::new(SERVER.parse().unwrap(), port), None).unwrap();
    let mut buf = vec![0u8; 1500];
    let chunk = vec![7u8; 64 << 10];
    let mut rbuf = vec![0u8; 256 << 10];
    let (mut sent, mut got, mut segments) = (0usize, 0usize, 0u64);
    let mut server_ns = 0u128;
    let mut conn = None;
    let mut idle = 0;
    while got < BULK {
        let mut moved = false;
        if sent < BULK {
            if let Ok(n) = client.tcp_send(c, &chunk[..chunk.len().min(BULK - sent)]) {
                sent += n;
            }
        }
        while let Some(n) = client.poll_transmit(now, &mut buf) {
            let t = WallClock::now();
            server.input(now, &buf[..n]);
            server_ns += t.elapsed().as_nanos();
            segments += 1;
            moved = true;
        }
        if conn.is_none() {
            conn = server.tcp_accept(l).ok();
        }
        if let Some(h) = conn {
            while let Ok(n) = server.tcp_recv(h, &mut rbuf) {
                if n == 0 {
                    break;
                }
                got += n;
            }
        }
        while let Some(n) = server.poll_transmit(now, &mut buf) {
            client.input(now, &buf[..n]);
            moved = true;
        }
        now += std::time::Duration::from_micros(100);
        if moved {
            idle = 0;
        } else {
            idle += 1;
            assert!(idle < 100_000, "the transfer stalled at {got} of {BULK} bytes");
            for s in [&mut client, &mut server] {
                if s.poll_timeout().is_some_and(|t| t <= now) {
                    s.handle_timeout(now);
                }
            }
        }
    }
    server_ns as f64 / segments as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut rounds = 7usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => rounds = args.next().and_then(|v| v.parse().ok()).filter(|&r| r > 0).expect("--rounds N"),
            "-h" | "--help" => {
                println!("usage: policy_cost [--rounds N]   (the per-packet cost of the packet policy)");
                return;
            }
            other => panic!("unknown argument {other} (try --help)"),
        }
    }
    let configs: [(&str, Option<(usize, bool)>); 5] = [
        ("no policy", None),
        ("1 rule (with a port)", Some((1, true))),
        ("1 rule (no port)", Some((1, false))),
        ("1000 rules, each with its own port", Some((1000, true))),
        ("1000 rules without ports (all read)", Some((1000, false))),
    ];
    let syns = syns();
    let mut new_ns = vec![Vec::new(); configs.len()];
    let mut est_ns = vec![Vec::new(); configs.len()];
    for _ in 0..rounds {
        for (i, &(_, n)) in configs.iter().enumerate() {
            new_ns[i].push(new_flows(&mut stack_with(n), &syns));
            est_ns[i].push(established(stack_with(n)));
        }
    }
    println!("packet policy cost on the core (median of {rounds} alternated rounds, ns per packet)\n");
    println!("| configuration | new flow: SYN in, RST out (ns) | vs no policy | established: data segment in (ns) | vs no policy |");
    println!("|---|---:|---:|---:|---:|");
    let base_new = median(&mut new_ns[0].clone());
    let base_est = median(&mut est_ns[0].clone());
    for (i, (name, _)) in configs.iter().enumerate() {
        let n = median(&mut new_ns[i]);
        let e = median(&mut est_ns[i]);
        println!("| {name} | {n:.0} | {:.2}x | {e:.0} | {:.2}x |", n / base_new, e / base_est);
    }
}

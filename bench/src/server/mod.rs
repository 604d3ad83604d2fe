//! The server side: `bench serve SYSTEM ...`, started by the harness inside a network
//! namespace as a process of its own, so that its CPU time (getrusage) and memory
//! (RSS) are its own and nothing else's.
//!
//! Control channel: the server prints `ready` on stdout once it listens, then answers
//! one line per command read from stdin:
//!
//! | command | answer |
//! | --- | --- |
//! | `rusage` | `rusage UTIME_US STIME_US` (getrusage(RUSAGE_SELF): every thread of the process) |
//! | `held` | `held N`: idle connections accepted on the hold port and kept open |
//! | `release` | `released`: the held connections are closed |
//! | `retransmits` | `retransmits N` (segments the server's TCP retransmitted) or `retransmits -` |
//! | `shards` | `shards N STEERING HANDOFFS_OUT HANDOFF_DROPS` (tunstack: shards, steering program 1/0, packets handed between shards, hand-offs dropped) or `shards -` |
//! | `ping` | `pong` |
//!
//! End of stdin (the harness exited or died) ends the process, so a server never
//! outlives its harness.

pub mod blocking;
pub mod reflector;
pub mod smol;
pub mod tasks;

use std::io::{self, BufRead, Write};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Which server to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ServerKind {
    /// tunstack on a TUN device it creates (tunstack::runtime::Runtime + tunstack::net).
    Tunstack,
    /// tunstack's async runtime (tunstack::tokio::AsyncRuntime), every service a tokio
    /// task on one thread.
    TunstackAsync,
    /// The demo's hyper service on Linux's TCP (tokio::net), one thread.
    LinuxHyper,
    /// smoltcp on an existing TUN device (phy::TunTapInterface, Medium::Ip).
    Smoltcp,
    /// Linux's own TCP (std::net), on whatever interface routes to --bind.
    Linux,
    /// No stack: reflect IPv4 packets on the TUN device back to the kernel.
    Reflector,
}

/// Options of `bench serve`.
#[derive(clap::Args, Clone, Debug)]
pub struct ServeArgs {
    #[arg(value_enum)]
    pub kind: ServerKind,
    /// TUN device to create (tunstack) or attach to (smoltcp, reflector).
    #[arg(long, default_value = crate::proto::TUN_DEV)]
    pub dev: String,
    /// MTU (tunstack sets it on the device it creates; the others use the device's).
    #[arg(long, default_value_t = 1500)]
    pub mtu: usize,
    /// Address to serve on: the stack's own address for tunstack and smoltcp, the
    /// address to bind for Linux.
    #[arg(long, default_value_t = crate::proto::TUN_PEER)]
    pub addr: Ipv4Addr,
    /// The kernel's side of the TUN device (tunstack configures it, smoltcp routes to it).
    #[arg(long, default_value_t = crate::proto::TUN_HOST)]
    pub host: Ipv4Addr,
    /// Per-connection send and receive buffer for tunstack and smoltcp (bytes). Default:
    /// tunstack's own default (`Config::default()`), used for smoltcp too.
    #[arg(long)]
    pub buffer: Option<usize>,
    /// Link impairment and congestion control (`bench paths`).
    #[command(flatten)]
    pub path: crate::paths::PathArgs,
    /// tunstack: open the TUN device with TSO/checksum offload (virtio-net header).
    #[arg(long)]
    pub offload: bool,
    /// tunstack: queues of the TUN device, one shard (stack and driver) each
    /// (`RuntimeConfig::queues`). The async server runs on a multi-thread tokio
    /// runtime with this many workers when it is more than 1.
    #[arg(long, default_value_t = 1)]
    pub queues: usize,
    /// tunstack-async: run on a multi-thread tokio runtime with this many workers
    /// [default: a current-thread runtime with one queue, a worker per queue with more].
    #[arg(long)]
    pub workers: Option<usize>,
}

/// Shared between a server and its control thread.
#[derive(Default)]
pub struct Control {
    /// Connections held open on the hold port.
    pub held: AtomicUsize,
    /// The answer to `shards` (tunstack's servers set it).
    pub shards: OnceLock<Box<dyn Fn() -> String + Send + Sync>>,
}

impl Control {
    /// The control state of a tunstack server: `shards` reads `h`'s shards, steering
    /// and hand-off counters.
    pub fn for_tunstack(h: &tunstack::runtime::RuntimeHandle) -> Control {
        let ctl = Control::default();
        ctl.report_shards_of(h);
        ctl
    }

    /// Answer the `shards` command from `h` (a handle over every shard).
    pub fn report_shards_of(&self, h: &tunstack::runtime::RuntimeHandle) {
        let h = h.clone();
        let _ = self.shards.set(Box::new(move || {
            let c = h.counters();
            format!("shards {} {} {} {}", h.shards(), u8::from(h.steering()), c.handoffs_out, c.handoff_drops)
        }));
    }
}

/// Run the server named in `args` until stdin closes.
pub fn serve(args: ServeArgs) -> io::Result<()> {
    crate::sys::raise_nofile_limit();
    match args.kind {
        ServerKind::Tunstack => blocking::serve_tunstack(&args),
        ServerKind::TunstackAsync => tasks::serve_tunstack(&args),
        ServerKind::LinuxHyper => tasks::serve_linux_hyper(&args),
        ServerKind::Linux => blocking::serve_linux(&args),
        ServerKind::Smoltcp => smol::serve(&args),
        ServerKind::Reflector => reflector::serve(&args),
    }
}

/// Say `ready` and answer commands until stdin closes, then exit the process.
/// `release` closes the held connections; `retransmits` reads the server's counter.
pub fn control_loop(ctl: Arc<Control>, release: impl Fn(), retransmits: impl Fn() -> Option<u64>) -> ! {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    let stdin = io::stdin();
    let mut line = String::new();
    loop {
        line.clear();
        match stdin.lock().read_line(&mut line) {
            Ok(0) | Err(_) => std::process::exit(0),
            Ok(_) => {}
        }
        let answer = match line.trim() {
            "rusage" => {
                let (u, s) = crate::sys::rusage_self();
                format!("rusage {u} {s}")
            }
            "held" => format!("held {}", ctl.held.load(Ordering::Acquire)),
            "release" => {
                release();
                "released".to_string()
            }
            "retransmits" => match retransmits() {
                Some(n) => format!("retransmits {n}"),
                None => "retransmits -".to_string(),
            },
            "shards" => ctl.shards.get().map_or_else(|| "shards -".to_string(), |f| f()),
            "ping" => "pong".to_string(),
            other => format!("error unknown command {other:?}"),
        };
        if writeln!(out, "{answer}").and_then(|_| out.flush()).is_err() {
            std::process::exit(0);
        }
    }
}

/// The bytes the source service sends, in chunks of this size.
pub const CHUNK: usize = 256 * 1024;

/// Incremental parser of the source service's 8-byte length request.
#[derive(Default, Debug)]
pub struct LenRequest {
    buf: [u8; 8],
    have: usize,
}

impl LenRequest {
    /// Take bytes; returns how many were used and, once complete, the length.
    pub fn feed(&mut self, data: &[u8]) -> (usize, Option<u64>) {
        let n = (8 - self.have).min(data.len());
        self.buf[self.have..self.have + n].copy_from_slice(&data[..n]);
        self.have += n;
        let done = (self.have == 8).then(|| u64::from_le_bytes(self.buf));
        (n, done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_request_in_pieces() {
        let want = 123_456_789_u64.to_le_bytes();
        let mut r = LenRequest::default();
        assert_eq!(r.feed(&want[..3]), (3, None));
        assert_eq!(r.feed(&[]), (0, None));
        let mut rest = want[3..].to_vec();
        rest.extend_from_slice(b"extra");
        assert_eq!(r.feed(&rest), (5, Some(123_456_789)));
    }
}

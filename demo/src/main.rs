//! `demo`: run tunstack on a TUN device with an echo or HTTP server on top.
//!
//! ```text
//! demo echo [--netns NAME] [--tun NAME] [--addr IP]... [--host-addr CIDR]... [--port N]
//!           [--mtu N] [--pcap FILE] [--loss PCT] [--reorder PCT] [--duplicate PCT] [--corrupt PCT]
//!           [--delay MS] [--rate MBIT] [--seed N]
//! demo http [same options]
//! demo script [--linux | --both] [-q] FILE|DIR...
//! ```
//! `demo echo` runs on the blocking API (a thread per connection), `demo http` on the
//! async one (hyper on tunstack's tokio API, one thread for everything). The impairment
//! flags make the runtime degrade the TUN link in both directions (see
//! `tunstack::link`); `--pcap` captures what the stack sends and receives.
//! Creating a TUN device needs CAP_NET_ADMIN; run it inside a network namespace:
//! `--netns NAME` creates one, enters it and removes it at the end (see README.md).
//! SIGINT / SIGTERM stop it cleanly: the device is removed and it exits 0.

use std::io::Write;
use std::net::IpAddr;
use std::process::ExitCode;

use clap::{ArgAction, Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod impair_opts;
mod script_cmd;

use impair_opts::ImpairOpts;

use demo::dashboard::{Flows, Throughput};
use demo::http::Live;
use demo::netns::Netns;
use demo::signal::{signal_name, ShutdownSignal};
use demo::{EchoServer, HttpServer};
use tunstack::runtime::{IpNet, Runtime, RuntimeConfig};
use tunstack::tokio::{AsyncRuntime, ShardedRuntime};

#[derive(Parser, Debug)]
#[command(
    name = "demo",
    version,
    about = "Echo and HTTP servers on tunstack, a userspace TCP/IP stack on a TUN device"
)]
struct Cli {
    /// More logging: -v debug, -vv trace (RUST_LOG, when set, takes precedence).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// TCP and UDP echo (RFC 862) on the same port (default 7).
    Echo(Opts),
    /// HTTP/1.1 server showing the stack's sockets and counters (default port 80).
    Http(Opts),
    /// Port forwarding between tunstack and the host's sockets, both ways, TCP and UDP,
    /// with the dashboard served on --port (default 80).
    Forward(ForwardOpts),
    /// tunstack as the default route of another network namespace: every TCP/UDP flow
    /// it sends is terminated, checked by the policy (--rules) and relayed with host
    /// sockets from the gateway's own namespace; dashboard on --port (default 80).
    Gateway(GatewayOpts),
    /// Run packetdrill-style scripts against the core (virtual time), or Linux (--linux).
    Script(script_cmd::ScriptArgs),
}

#[derive(Args, Debug)]
struct GatewayOpts {
    #[command(flatten)]
    opts: Opts,
    /// The namespace whose default routes go through the gateway; created if missing
    /// (and then deleted at exit). The TUN device is created inside it.
    #[arg(long, value_name = "NAME")]
    client_ns: String,
}

#[derive(Args, Debug)]
struct ForwardOpts {
    #[command(flatten)]
    opts: Opts,
    /// Connections/datagrams to the stack's PORT relayed to ADDRESS:PORT with host
    /// sockets (repeatable), e.g. tcp:8080=192.0.2.10:80.
    #[arg(long = "in", value_name = "PROTO:PORT=ADDRESS:PORT")]
    ins: Vec<demo::forward::Inbound>,
    /// A host listener (in the demo's namespace) carried through tunstack to
    /// ADDRESS:PORT behind the device (repeatable), e.g. tcp:127.0.0.1:9000=10.0.0.1:22.
    #[arg(long = "out", value_name = "PROTO:LISTEN=ADDRESS:PORT")]
    outs: Vec<demo::forward::Outbound>,
}

#[derive(Args, Debug)]
struct Opts {
    /// Create this network namespace (or use it if it exists), run inside it, and delete
    /// it at exit if it was created here. Without it the demo runs in the namespace it
    /// was started in.
    #[arg(long, value_name = "NAME")]
    netns: Option<String>,

    /// Name of the TUN device to create.
    #[arg(long, value_name = "NAME", default_value = "tun0")]
    tun: String,

    /// An address of the stack itself (repeatable).
    #[arg(long = "addr", value_name = "IP", default_values = ["10.0.0.2", "fd00::2"])]
    addrs: Vec<IpAddr>,

    /// An address with prefix for the kernel's side of the device, e.g. 10.0.0.1/24 (repeatable).
    #[arg(
        long = "host-addr",
        value_name = "CIDR",
        default_values = ["10.0.0.1/24", "fd00::1/64"],
        value_parser = parse_host_addr
    )]
    host_addrs: Vec<IpNet>,

    /// Port to serve on [default: 7 for echo, 80 for http].
    #[arg(long, value_name = "N")]
    port: Option<u16>,

    /// MTU of the device.
    #[arg(long, value_name = "N", default_value_t = 1500, value_parser = clap::value_parser!(u32).range(576..=65535))]
    mtu: u32,

    /// Write every packet the stack reads or writes to this pcap file (LINKTYPE_RAW,
    /// readable by tshark and Wireshark).
    #[arg(long, value_name = "FILE")]
    pcap: Option<std::path::PathBuf>,

    /// Open the TUN device with TCP segmentation and checksum offload (virtio-net
    /// header): the kernel hands over and takes 64 KiB TCP super-segments, cut and
    /// coalesced by the stack's device layer. Falls back to the plain device (with a
    /// warning) when the kernel refuses.
    #[arg(long)]
    offload: bool,

    /// A packet policy file: filter rules, port knocking, scan detection (the format is
    /// in README.md, "Packet policy").
    #[arg(long, value_name = "FILE")]
    rules: Option<std::path::PathBuf>,

    /// Queues of the TUN device, each with its own stack and driver (a shard; the
    /// kernel steers each TCP flow to the shard that owns it; `demo http` runs a copy
    /// of its server on each shard's thread). Default: one per two cores (the other
    /// half is left to the applications and clients on the machine: on 2 cores, 2
    /// shards served HTTP 0.83x as fast as 1, see docs/bench-shards.md), and one with
    /// --pcap, link impairment, --rules or for the gateway (a policy's knock and scan
    /// state is per shard).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    queues: Option<u16>,

    #[command(flatten)]
    impair: ImpairOpts,
}

/// What a run leaves to report at exit: the impairment's and the offload device's
/// counters.
type ExitStats = (Option<tunstack::runtime::ImpairmentStats>, Option<tunstack::runtime::OffloadStats>);

/// Print the hints (`announce`), wait for a signal; the counters as they stand then.
/// For the runtimes the main thread only waits on.
fn run_until_signal(
    rt: &tunstack::runtime::RuntimeHandle,
    signal: &mut ShutdownSignal,
    announce: &dyn Fn(&str, bool),
) -> Result<ExitStats, String> {
    announce(rt.tun_name(), rt.offload_stats().is_some());
    let signo = signal.wait().map_err(|e| format!("waiting for signals: {e}"))?;
    tracing::info!("{}: shutting down", signal_name(signo));
    Ok((rt.impairment_stats(), rt.offload_stats()))
}

/// Linux interface names are at most IFNAMSIZ - 1 = 15 bytes.
const MAX_IFNAME: usize = 15;

/// RFC 8200 5: every IPv6 link has an MTU of at least 1280.
const IPV6_MIN_MTU: u32 = 1280;

impl Opts {
    /// The queue count: `--queues`, or one per core where nothing needs a single queue.
    fn queues(&self, gateway: bool) -> usize {
        match self.queues {
            Some(n) => usize::from(n),
            None if gateway || self.pcap.is_some() || self.impair.any() || self.rules.is_some() => 1,
            None => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 256)),
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.queues.is_some_and(|n| n > 1) && (self.pcap.is_some() || self.impair.any()) {
            return Err("--queues above 1: --pcap and link impairment need a single queue".into());
        }
        if self.tun.is_empty() || self.tun.len() > MAX_IFNAME {
            return Err(format!("--tun `{}`: an interface name has 1 to {MAX_IFNAME} bytes", self.tun));
        }
        if self.tun.contains(|c: char| c == '/' || c == ':' || c.is_whitespace()) || self.tun == "." || self.tun == ".."
        {
            return Err(format!("--tun `{}`: not a valid interface name", self.tun));
        }
        if self.mtu < IPV6_MIN_MTU && self.addrs.iter().any(|a| a.is_ipv6()) {
            return Err(format!("--mtu {}: IPv6 needs at least {IPV6_MIN_MTU} (RFC 8200 5)", self.mtu));
        }
        for a in &self.addrs {
            if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
                return Err(format!("--addr {a}: the stack needs a unicast address"));
            }
        }
        for h in &self.host_addrs {
            if self.addrs.contains(&h.addr()) {
                return Err(format!("--host-addr {h}: {} is also an --addr of the stack", h.addr()));
            }
        }
        if let Some(name) = &self.netns {
            demo::netns::validate_name(name)?;
        }
        Ok(())
    }
}

/// `--host-addr`: ADDRESS/PREFIX, the address kept as given (it is the kernel's own).
fn parse_host_addr(s: &str) -> Result<IpNet, String> {
    if !s.contains('/') {
        return Err("expected ADDRESS/PREFIX (e.g. 10.0.0.1/24 or fd00::1/64), the /PREFIX is missing".into());
    }
    s.parse::<IpNet>().map_err(|_| {
        "expected ADDRESS/PREFIX with an IPv4 or IPv6 address and a prefix length that fits it \
         (at most 32 or 128)"
            .into()
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("demo: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::new(v),
        _ => EnvFilter::new(level),
    };
    // Colours only for a terminal: logs captured to a file or a pipe stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Echo,
    Http,
    Forward,
    Gateway,
}

fn run(command: Command) -> Result<(), String> {
    let mut client_ns = None;
    let (kind, opts, ins, outs) = match command {
        Command::Echo(o) => (Kind::Echo, o, Vec::new(), Vec::new()),
        Command::Http(o) => (Kind::Http, o, Vec::new(), Vec::new()),
        Command::Forward(f) => (Kind::Forward, f.opts, f.ins, f.outs),
        Command::Script(a) => return script_cmd::run(a),
        Command::Gateway(g) => {
            demo::netns::validate_name(&g.client_ns)?;
            client_ns = Some(g.client_ns);
            (Kind::Gateway, g.opts, Vec::new(), Vec::new())
        }
    };
    opts.validate()?;
    let rules = match &opts.rules {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("--rules {}: {e}", path.display()))?;
            // Checked now, before anything is created.
            tunstack::policy::text::PolicyConfig::parse(&text)
                .map_err(|e| format!("--rules {}: {e}", path.display()))?;
            Some(text)
        }
    };
    if kind == Kind::Forward && ins.is_empty() && outs.is_empty() {
        return Err("forward: give at least one --in or --out".into());
    }
    let port = opts.port.unwrap_or(match kind {
        Kind::Echo => 7,
        Kind::Http | Kind::Forward | Kind::Gateway => 80,
    });
    for a in &opts.addrs {
        if !opts.host_addrs.iter().any(|h| h.contains(a)) {
            tracing::warn!(
                "--addr {a} is in no --host-addr network: the kernel will not route to it through the device"
            );
        }
    }

    // Before the device and any thread exist: an early Ctrl-C is not lost, and every
    // thread starts in the namespace.
    let mut signal = ShutdownSignal::install().map_err(|e| format!("installing signal handlers: {e}"))?;
    let netns = opts.netns.as_deref().map(Netns::enter).transpose()?;
    if let Some(ns) = &netns {
        let what = if ns.created() { "created" } else { "using existing" };
        println!("network namespace {}: {what}, entered", ns.name());
    }

    let mut config = RuntimeConfig::default().with(|c| {
        c.tun_name = opts.tun.clone();
        c.mtu = opts.mtu as usize;
        c.host_addrs = opts.host_addrs.clone();
    });
    config.stack.addrs = opts.addrs.clone();
    if opts.impair.seed.is_some() && !opts.impair.any() {
        tracing::warn!("--seed without --loss/--reorder/--duplicate/--corrupt/--delay/--rate has no effect");
    }
    config.impair = opts.impair.impairment(impair_opts::random_seed);
    config.pcap = opts.pcap.clone();
    config.offload = opts.offload;
    config.queues = opts.queues(client_ns.is_some());
    let queues = config.queues;
    let impairment = config.impair.clone();
    let device_error = |e: std::io::Error| {
        format!(
            "creating TUN device `{}`: {e} (this needs CAP_NET_ADMIN and /dev/net/tun; \
             run it as root inside a network namespace, see README.md)",
            opts.tun
        )
    };
    let announce = |tun: &str, offload_active: bool| {
        // The commands to try run where the device's kernel side is: the client's
        // namespace for the gateway.
        let device_ns = client_ns.as_deref().or(netns.as_ref().map(Netns::name));
        print_hints(kind, tun, &opts.addrs, port, device_ns);
        if let Some(imp) = &impairment {
            println!("link impairment, each direction: {imp} (repeat the decisions with --seed {})", imp.seed);
        }
        if opts.offload {
            if offload_active {
                println!("TUN offloads on: TCP segmentation and checksum offload (virtio-net header)");
            } else {
                println!("TUN offloads refused by the kernel: running on the plain TUN device");
            }
        }
        if queues > 1 {
            println!("{queues} queues, one stack and driver each");
        }
        if let Some(path) = &opts.pcap {
            println!("capturing every packet to {} (tshark -r {} to read it)", path.display(), path.display());
        }
        let _ = std::io::stdout().flush();
    };
    let impaired = match kind {
        // The echo server runs on the blocking API: a driver thread and a thread per
        // connection.
        Kind::Echo => {
            let rt = Runtime::new(config).map_err(device_error)?;
            rt.set_policy(rules.as_deref()).map_err(|e| e.to_string())?;
            EchoServer::start(&rt.handle(), &opts.addrs, port).map_err(|e| e.to_string())?;
            let impaired = run_until_signal(&rt, &mut signal, &announce)?;
            // Dropping the runtime stops its thread and removes the device. The server
            // threads are blocked in the runtime and end with the process.
            drop(rt);
            impaired
        }
        // With several queues the HTTP server runs thread per core: a copy of it on each
        // shard's thread, serving the connections that shard owns.
        Kind::Http if queues > 1 => {
            let throughput = Throughput::default();
            let (addrs, tp) = (opts.addrs.clone(), throughput.clone());
            let (up_tx, up_rx) = std::sync::mpsc::channel::<Result<(), String>>();
            let up_tx = std::sync::Mutex::new(up_tx);
            let rt = ShardedRuntime::new(config, move |h| {
                let live = Live { rt: h, throughput: tp.clone(), flows: None };
                let up = up_tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                let addrs = addrs.clone();
                async move {
                    let _ = up.send(HttpServer::serve_live(live, &addrs, port).map(drop).map_err(|e| e.to_string()));
                    std::future::pending::<()>().await
                }
            })
            .map_err(device_error)?;
            for _ in 0..queues {
                up_rx.recv().map_err(|_| "a shard's HTTP server did not start".to_string())??;
            }
            rt.set_policy(rules.as_deref()).map_err(|e| e.to_string())?;
            let impaired = run_until_signal(&rt, &mut signal, &announce)?;
            // Stops every shard's thread and removes the device.
            drop(rt);
            impaired
        }
        // The HTTP server is hyper on the async API: the device, the stack and every
        // connection run as tasks on this one thread (with several queues, on one
        // worker thread per queue). So do the forwards and the gateway.
        Kind::Http | Kind::Forward | Kind::Gateway => {
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
            // One thread, or with several queues one worker per queue (the shards'
            // driver tasks and the connections' tasks spread over them).
            let tokio_rt = if queues > 1 {
                tokio::runtime::Builder::new_multi_thread().worker_threads(queues).enable_all().build()
            } else {
                tokio::runtime::Builder::new_current_thread().enable_all().build()
            }
            .map_err(|e| format!("starting the tokio runtime: {e}"))?;
            std::thread::Builder::new()
                .name("signals".into())
                .spawn(move || {
                    let _ = stop_tx.send(signal.wait());
                })
                .map_err(|e| format!("starting the signal thread: {e}"))?;
            // The gateway's device lives in the client's namespace (created there, then
            // this thread comes back); everything else runs here.
            let client = client_ns.as_deref().map(Netns::open).transpose()?;
            let tun = opts.tun.clone();
            tokio_rt.block_on(async {
                let rt = match &client {
                    None => AsyncRuntime::new(config).map_err(device_error)?,
                    Some(ns) => ns.run_in(|| AsyncRuntime::new(config))?.map_err(device_error)?,
                };
                rt.set_policy(rules.as_deref()).map_err(|e| e.to_string())?;
                let flows = Flows::default();
                demo::forward::start(&rt.handle(), &ins, &outs, &flows).map_err(|e| format!("forward: {e}"))?;
                if let Some(ns) = &client {
                    for family in ["-4", "-6"] {
                        demo::netns::ip(&["-n", ns.name(), family, "route", "replace", "default", "dev", &tun])?;
                    }
                    demo::gateway::start(&rt.handle(), &flows).map_err(|e| format!("gateway: {e}"))?;
                    println!(
                        "gateway: namespace {0} sends everything through {tun}; try: ip netns exec {0} curl http://HOST/",
                        ns.name()
                    );
                }
                let live = Live { rt: rt.handle(), throughput: Throughput::default(), flows: Some(flows) };
                HttpServer::serve_live(live, &opts.addrs, port).map_err(|e| e.to_string())?;
                announce(rt.tun_name(), rt.offload_stats().is_some());
                for f in &ins {
                    println!("forwarding {} of the stack to {} (host sockets)", f.proto.as_str(), f);
                }
                for f in &outs {
                    println!("forwarding host {} {} through tunstack to {}", f.proto.as_str(), f.listen, f.target);
                }
                let signo = stop_rx
                    .await
                    .map_err(|_| "the signal thread ended".to_string())?
                    .map_err(|e| format!("waiting for signals: {e}"))?;
                tracing::info!("{}: shutting down", signal_name(signo));
                let impaired = (rt.impairment_stats(), rt.offload_stats());
                // Waits until the driver has let go of the device, which removes it.
                rt.shutdown().await;
                Ok::<_, String>(impaired)
            })?
        }
    };
    let (impaired, offloaded) = impaired;
    if let Some(stats) = impaired {
        println!("impairment: {stats}");
    }
    if let Some(stats) = offloaded {
        println!("offload: {stats}");
    }
    if let Some(ns) = netns {
        let name = ns.name().to_owned();
        let created = ns.created();
        drop(ns);
        if created {
            println!("network namespace {name}: deleted");
        }
    }
    println!("stopped");
    let _ = std::io::stdout().flush();
    Ok(())
}

/// `10.0.0.2`, `[fd00::2]`, with `:port` unless it is the default one.
fn host_port(ip: IpAddr, port: u16, default: u16) -> String {
    let host = match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    if port == default {
        host
    } else {
        format!("{host}:{port}")
    }
}

fn print_hints(kind: Kind, tun: &str, addrs: &[IpAddr], port: u16, netns: Option<&str>) {
    let mut out = String::new();
    let what = match kind {
        Kind::Echo => "echo (TCP and UDP)",
        Kind::Http => "http",
        Kind::Forward => "forwarding, dashboard over http",
        Kind::Gateway => "gateway, dashboard over http",
    };
    out.push_str(&format!("tunstack {what} on port {port}, device {tun}, addresses:"));
    for a in addrs {
        out.push_str(&format!(" {a}"));
    }
    // Inside a named namespace the commands must run there too.
    let pre = match netns {
        Some(ns) => {
            out.push_str(&format!("\ntry (from another terminal, as root; the device is in namespace {ns}):\n"));
            format!("ip netns exec {ns} ")
        }
        None => {
            out.push_str("\ntry (from the same network namespace):\n");
            String::new()
        }
    };
    for &a in addrs {
        match kind {
            Kind::Http | Kind::Forward | Kind::Gateway => {
                // curl needs -g for IPv6 literals in brackets.
                let g = if a.is_ipv6() { "-g " } else { "" };
                out.push_str(&format!("  {pre}curl {g}http://{}/\n", host_port(a, port, 80)));
                out.push_str(&format!("  {pre}curl {g}http://{}/sockets.json\n", host_port(a, port, 80)));
                out.push_str(&format!("  {pre}chromium http://{}/dashboard   # a live view\n", host_port(a, port, 80)));
            }
            Kind::Echo => {
                out.push_str(&format!("  {pre}nc {a} {port}\n"));
                out.push_str(&format!("  {pre}nc -u {a} {port}\n"));
            }
        }
        let six = if a.is_ipv6() { "-6 " } else { "" };
        out.push_str(&format!("  {pre}ping {six}-c 3 {a}\n"));
    }
    out.push_str("Ctrl-C (SIGINT) or SIGTERM stops it.");
    println!("{out}");
    let _ = std::io::stdout().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("demo").chain(args.iter().copied()))
    }

    fn opts(cli: Cli) -> Opts {
        match cli.command {
            Command::Echo(o) | Command::Http(o) => o,
            Command::Forward(f) => f.opts,
            Command::Gateway(g) => g.opts,
            Command::Script(_) => panic!("not a server subcommand"),
        }
    }

    #[test]
    fn forward_flags() {
        let cli =
            parse(&["forward", "--in", "tcp:8080=192.0.2.10:80", "--out", "udp:127.0.0.1:5353=10.0.0.1:53"]).unwrap();
        let Command::Forward(f) = cli.command else { panic!("not forward") };
        assert_eq!(f.ins.len(), 1);
        assert_eq!(f.outs[0].target, "10.0.0.1:53".parse().unwrap());
        let err = parse(&["forward", "--in", "tcp:8080"]).unwrap_err().to_string();
        assert!(err.contains("PROTO:PORT=ADDRESS:PORT"), "{err}");
    }

    #[test]
    fn defaults() {
        let o = opts(parse(&["http"]).unwrap());
        assert_eq!(o.tun, "tun0");
        assert_eq!(o.addrs, vec!["10.0.0.2".parse::<IpAddr>().unwrap(), "fd00::2".parse().unwrap()]);
        assert_eq!(o.host_addrs, vec!["10.0.0.1/24".parse::<IpNet>().unwrap(), "fd00::1/64".parse().unwrap()]);
        assert_eq!(o.netns, None);
        assert_eq!(o.port, None);
        assert_eq!(o.mtu, 1500);
        assert_eq!(o.impair, ImpairOpts::default());
        assert!(!o.offload);
        assert!(o.validate().is_ok());
        assert!(opts(parse(&["echo", "--offload"]).unwrap()).offload);
    }

    #[test]
    fn impairment_flags() {
        let o = opts(
            parse(&[
                "echo",
                "--loss",
                "5",
                "--reorder",
                "2.5",
                "--duplicate",
                "1",
                "--corrupt",
                "0.1",
                "--delay",
                "3",
                "--rate",
                "10",
                "--seed",
                "42",
            ])
            .unwrap(),
        );
        let imp = o.impair.impairment(|| unreachable!("--seed was given")).unwrap();
        assert_eq!((imp.loss, imp.reorder, imp.duplicate, imp.corrupt), (0.05, 0.025, 0.01, 0.001));
        assert_eq!(imp.delay, std::time::Duration::from_millis(3));
        assert_eq!(imp.rate_bps, Some(10_000_000));
        assert_eq!(imp.seed, 42);
        // Without --seed a random one is used.
        let o = opts(parse(&["http", "--delay", "10"]).unwrap());
        assert_eq!(o.impair.impairment(|| 1234).unwrap().seed, 1234);
        // Bad values name the flag and the allowed range.
        for (flag, value, says) in [
            ("--loss", "101", "0 to 100"),
            ("--reorder", "-3", "0 to 100"),
            ("--duplicate", "lots", "not a number"),
            ("--corrupt", "200", "0 to 100"),
            ("--delay", "-1", "milliseconds"),
            ("--delay", "100000", "maximum"),
            ("--rate", "0", "Mbit/s"),
            ("--seed", "-1", "--seed"),
        ] {
            let err = parse(&["echo", flag, value]).unwrap_err().to_string();
            assert!(err.contains(flag) && err.contains(says), "{flag} {value}: {err}");
        }
    }

    #[test]
    fn repeated_flags_replace_the_defaults() {
        let cli = parse(&[
            "-vv",
            "echo",
            "--tun",
            "t1",
            "--addr",
            "10.1.0.2",
            "--host-addr",
            "10.1.0.1/16",
            "--port",
            "7007",
        ])
        .unwrap();
        assert_eq!(cli.verbose, 2);
        let o = opts(cli);
        assert_eq!(o.tun, "t1");
        assert_eq!(o.addrs, vec!["10.1.0.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(o.host_addrs.len(), 1);
        assert_eq!(o.port, Some(7007));
        // Low MTU is fine without IPv6.
        let o = opts(parse(&["echo", "--addr", "10.1.0.2", "--mtu", "576"]).unwrap());
        assert!(o.validate().is_ok());
    }

    #[test]
    fn bad_values_are_rejected() {
        let err = parse(&["http", "--host-addr", "10.0.0.1"]).unwrap_err().to_string();
        assert!(err.contains("PREFIX"), "{err}");
        assert!(parse(&["http", "--host-addr", "10.0.0.1/40"]).is_err());
        assert!(parse(&["http", "--addr", "10.0.0"]).is_err());
        assert!(parse(&["http", "--mtu", "100"]).is_err());
        assert!(parse(&["http", "--port", "70000"]).is_err());
        assert!(parse(&["serve"]).is_err());
        let o = opts(parse(&["http", "--mtu", "1000"]).unwrap());
        assert!(o.validate().unwrap_err().contains("1280"));
        let o = opts(parse(&["http", "--tun", "a-name-far-too-long"]).unwrap());
        assert!(o.validate().is_err());
        let o = opts(parse(&["http", "--addr", "10.0.0.1"]).unwrap());
        assert!(o.validate().unwrap_err().contains("also an --addr"));
        let o = opts(parse(&["http", "--addr", "0.0.0.0"]).unwrap());
        assert!(o.validate().is_err());
        let o = opts(parse(&["http", "--netns", "a/b"]).unwrap());
        assert!(o.validate().is_err());
        let o = opts(parse(&["http", "--netns", "try"]).unwrap());
        assert_eq!(o.netns.as_deref(), Some("try"));
        assert!(o.validate().is_ok());
    }

    #[test]
    fn host_port_formats() {
        assert_eq!(host_port("10.0.0.2".parse().unwrap(), 80, 80), "10.0.0.2");
        assert_eq!(host_port("fd00::2".parse().unwrap(), 8080, 80), "[fd00::2]:8080");
    }
}

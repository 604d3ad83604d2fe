//! The setups: network namespaces, devices and server processes for each system, and
//! their removal (on drop, and from the signal thread on Ctrl-C).
//!
//! | system | namespaces | link | server |
//! | --- | --- | --- | --- |
//! | tunstack (async) | one | TUN `bt0` created by the server's `AsyncRuntime` (10.0.0.1/24 kernel side, stack 10.0.0.2) | `bench serve tunstack-async` |
//! | tunstack (blocking) | one | TUN `bt0` created by the server's `Runtime` (same addresses) | `bench serve tunstack` |
//! | smoltcp | one | TUN `bt0` created with `ip tuntap` and configured with `ip` (same addresses) | `bench serve smoltcp` |
//! | Linux | two | veth `vb0` (client, 10.0.1.1/24) / `vb1` (server, 10.0.1.2/24) | `bench serve linux` |
//! | Linux + hyper | two | veth as for Linux | `bench serve linux-hyper` |
//! | nginx | two | veth as for Linux | `nginx` (one worker, config in a temporary directory) |
//! | raw TUN ceiling | one | TUN `bt0` as for smoltcp | `bench serve reflector` + `bench serve linux` bound to 0.0.0.0 |
//!
//! The client always runs on a thread that joined the client namespace.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use tunstack_tests::netns::{self, NetNs};

use crate::proto::*;

/// The systems under test, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum System {
    /// tunstack's async runtime: every service a tokio task on one thread.
    TunstackAsync,
    /// tunstack's blocking runtime: a driver thread and a thread per connection.
    #[value(name = "tunstack-blocking", alias = "tunstack")]
    TunstackBlocking,
    Smoltcp,
    Linux,
    /// The demo's hyper service on Linux's TCP (HTTP only).
    LinuxHyper,
    /// nginx serving a static file on Linux's TCP (HTTP only).
    Nginx,
    Ceiling,
}

impl System {
    pub const ALL: [System; 7] = [
        System::TunstackAsync,
        System::TunstackBlocking,
        System::Smoltcp,
        System::Linux,
        System::LinuxHyper,
        System::Nginx,
        System::Ceiling,
    ];

    pub fn label(self) -> &'static str {
        match self {
            System::TunstackAsync => "tunstack (async)",
            System::TunstackBlocking => "tunstack (blocking)",
            System::Smoltcp => "smoltcp",
            System::Linux => "Linux (veth)",
            System::LinuxHyper => "Linux + hyper (veth)",
            System::Nginx => "nginx (veth)",
            System::Ceiling => "raw TUN ceiling",
        }
    }

    /// Whether the server's sockets are the kernel's (their memory is not the process's).
    pub fn kernel_tcp(self) -> bool {
        matches!(self, System::Linux | System::LinuxHyper | System::Nginx | System::Ceiling)
    }
}

/// Namespaces alive right now, for the signal thread.
static LIVE_NAMESPACES: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Temporary directories alive right now (nginx's), for the signal thread.
static LIVE_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Kill what runs in every namespace we created and delete them (Ctrl-C path).
pub fn emergency_cleanup() {
    for dir in LIVE_DIRS.lock().map(|v| v.clone()).unwrap_or_default() {
        let _ = std::fs::remove_dir_all(dir);
    }
    let names = LIVE_NAMESPACES.lock().map(|v| v.clone()).unwrap_or_default();
    for name in names {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                if pid != std::process::id() as i32 {
                    // SAFETY: kill(2) has no memory effects.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
    }
}

/// A namespace registered for emergency cleanup while it lives.
pub(crate) struct Ns {
    inner: Option<NetNs>,
}

impl Ns {
    pub(crate) fn new(tag: &str) -> io::Result<Ns> {
        let ns = NetNs::new(tag).ok_or_else(|| {
            io::Error::new(io::ErrorKind::PermissionDenied, "cannot create a network namespace (see the message above)")
        })?;
        if let Ok(mut v) = LIVE_NAMESPACES.lock() {
            v.push(ns.name().to_string());
        }
        let ns = Ns { inner: Some(ns) };
        // No IPv6 on any link (no router solicitations, MLD or DAD traffic in the
        // measurements); a wide local port range and TIME-WAIT reuse for the
        // connection-rate and idle-connection workloads; room for 10k pending
        // connections on the kernel's listeners. The kernel's congestion
        // control stays the host's default (a namespace may only pick one from the
        // host's `tcp_allowed_congestion_control`); the report names it.
        ns.sysctl(&[
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
            "net.ipv4.ip_local_port_range=10000 65535",
            "net.ipv4.tcp_tw_reuse=1",
            // Listen backlogs for the 10k workload (the kernel caps `listen`'s at these).
            "net.core.somaxconn=65535",
            "net.ipv4.tcp_max_syn_backlog=65535",
        ])?;
        Ok(ns)
    }

    pub(crate) fn get(&self) -> &NetNs {
        self.inner.as_ref().expect("namespace present until drop")
    }

    fn name(&self) -> &str {
        self.get().name()
    }

    fn sysctl(&self, settings: &[&str]) -> io::Result<()> {
        let mut args = vec!["sysctl", "-q", "-w"];
        args.extend_from_slice(settings);
        let out = self.get().exec(&args, Duration::from_secs(10))?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "sysctl in {}: {}",
                self.name(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// `ip -n NS args...`
    fn ip(&self, args: &[&str]) -> io::Result<()> {
        let out = Command::new("ip").arg("-n").arg(self.name()).args(args).stdin(Stdio::null()).output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "ip -n {} {}: {}",
                self.name(),
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let name = self.inner.as_ref().map(|n| n.name().to_string());
        drop(self.inner.take()); // kills leftovers, deletes the namespace
        if let (Some(name), Ok(mut v)) = (name, LIVE_NAMESPACES.lock()) {
            v.retain(|n| *n != name);
        }
    }
}

/// A `bench serve` process in a namespace, with its control channel.
pub struct ServerProc {
    label: String,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl ServerProc {
    pub(crate) fn spawn(ns: &Ns, label: &str, args: &[String]) -> io::Result<ServerProc> {
        let exe = std::env::current_exe()?;
        let mut all: Vec<&str> =
            vec![exe.to_str().ok_or_else(|| io::Error::other("non-UTF-8 executable path"))?, "serve"];
        all.extend(args.iter().map(String::as_str));
        let mut child =
            ns.get().command(&all).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = ServerProc { label: label.to_string(), child, stdin, lines: rx };
        match server.lines.recv_timeout(Duration::from_secs(30)) {
            Ok(l) if l == "ready" => Ok(server),
            Ok(l) => Err(io::Error::other(format!("{label} server said {l:?} instead of ready"))),
            Err(_) => {
                let status = server.child.try_wait().ok().flatten();
                Err(io::Error::other(format!(
                    "{label} server did not start (exit status {status:?}; see its stderr above)"
                )))
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn request(&mut self, cmd: &str) -> io::Result<String> {
        writeln!(self.stdin, "{cmd}")?;
        self.stdin.flush()?;
        self.lines.recv_timeout(Duration::from_secs(10)).map_err(|_| {
            io::Error::new(io::ErrorKind::TimedOut, format!("{} server did not answer {cmd:?}", self.label))
        })
    }

    /// CPU time (user + system) of the whole server process so far, in seconds.
    pub fn cpu_secs(&mut self) -> io::Result<f64> {
        let line = self.request("rusage")?;
        let f: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        match f[..] {
            [u, s] => Ok((u + s) as f64 / 1e6),
            _ => Err(io::Error::other(format!("bad rusage answer {line:?}"))),
        }
    }

    pub fn held(&mut self) -> io::Result<usize> {
        let line = self.request("held")?;
        line.strip_prefix("held ")
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad held answer {line:?}")))
    }

    /// Segments the server's TCP retransmitted so far, when it counts them.
    pub fn retransmits(&mut self) -> io::Result<Option<u64>> {
        let line = self.request("retransmits")?;
        Ok(line.strip_prefix("retransmits ").and_then(|n| n.trim().parse().ok()))
    }

    /// tunstack's shards: `None` for the other servers.
    pub fn shards(&mut self) -> io::Result<Option<ShardInfo>> {
        let line = self.request("shards")?;
        let f: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        Ok(match f[..] {
            [n, steering, handoffs_out, handoff_drops] => {
                Some(ShardInfo { shards: n as usize, steering: steering == 1, handoffs_out, handoff_drops })
            }
            _ => None,
        })
    }

    pub fn release(&mut self) -> io::Result<()> {
        self.request("release").map(|_| ())
    }

    pub fn rss(&self) -> io::Result<u64> {
        crate::sys::rss_of(self.pid())
    }

    /// Wait (bounded) until the server holds at least `n` idle connections.
    pub fn wait_held(&mut self, n: usize, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let held = self.held()?;
            if held >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("server holds {held} of {n} idle connections"),
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Options of the tunstack servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunstackOpts {
    /// `RuntimeConfig::offload`.
    pub offload: bool,
    /// `RuntimeConfig::queues`.
    pub queues: usize,
    /// The async server's tokio workers (a multi-thread runtime); `None`: a
    /// current-thread runtime with one queue, a worker per queue with more.
    pub workers: Option<usize>,
}

/// What a tunstack server says about its shards (the `shards` command).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    pub shards: usize,
    /// Whether the device took the steering program.
    pub steering: bool,
    /// Packets a shard read that another one owns, handed over (since the start).
    pub handoffs_out: u64,
    /// Hand-offs dropped because the owner's inbox was full (since the start).
    pub handoff_drops: u64,
}

/// One system set up at one MTU.
pub struct Env {
    pub system: System,
    pub mtu: usize,
    /// Servers first (killed before the namespaces go), then namespaces.
    servers: Vec<ServerProc>,
    /// nginx, for that system (killed before the namespaces go, like the servers).
    nginx: Option<Nginx>,
    client_ns: Ns,
    _server_ns: Option<Ns>,
    /// Where the client connects.
    pub target: Ipv4Addr,
    /// The client namespace's device whose counters are read.
    pub client_dev: &'static str,
}

impl Env {
    /// Set `system` up at `mtu`; `txqueuelen`: packets the kernel may queue towards the
    /// server on a TUN device (see `Plan::txqueuelen`); `tun`: the tunstack servers'
    /// options.
    pub fn start(
        system: System,
        mtu: usize,
        buffer: Option<usize>,
        txqueuelen: usize,
        tun: TunstackOpts,
    ) -> io::Result<Env> {
        let qlen = txqueuelen.to_string();
        let mut extra: Vec<String> = vec!["--mtu".into(), mtu.to_string()];
        if let Some(b) = buffer {
            extra.extend(["--buffer".into(), b.to_string()]);
        }
        match system {
            System::TunstackAsync | System::TunstackBlocking => {
                let (tag, kind) = if system == System::TunstackAsync {
                    ("bench-tsasync", "tunstack-async")
                } else {
                    ("bench-tunstack", "tunstack")
                };
                let ns = Ns::new(tag)?;
                let mut args = vec![kind.to_string()];
                args.extend(extra);
                if tun.offload {
                    args.push("--offload".into());
                }
                if tun.queues != 1 {
                    args.extend(["--queues".into(), tun.queues.to_string()]);
                }
                if let (System::TunstackAsync, Some(w)) = (system, tun.workers) {
                    args.extend(["--workers".into(), w.to_string()]);
                }
                let server = ServerProc::spawn(&ns, kind, &args)?;
                // The server created the device: give it the same queue as the others.
                ns.ip(&["link", "set", "dev", TUN_DEV, "txqueuelen", &qlen])?;
                Ok(Env::one_ns(system, mtu, ns, vec![server]))
            }
            System::Smoltcp => {
                let ns = Ns::new("bench-smoltcp")?;
                tun_device(&ns, mtu, &qlen)?;
                let mut args = vec!["smoltcp".to_string()];
                args.extend(extra);
                let server = ServerProc::spawn(&ns, "smoltcp", &args)?;
                Ok(Env::one_ns(system, mtu, ns, vec![server]))
            }
            System::Ceiling => {
                let ns = Ns::new("bench-ceiling")?;
                tun_device(&ns, mtu, &qlen)?;
                let reflector = ServerProc::spawn(&ns, "reflector", &["reflector".to_string()])?;
                let linux = ServerProc::spawn(&ns, "linux", &["linux".into(), "--addr".into(), "0.0.0.0".into()])?;
                Ok(Env::one_ns(system, mtu, ns, vec![reflector, linux]))
            }
            System::Linux | System::LinuxHyper => {
                let (cli, srv) = veth_pair(mtu)?;
                let kind = if system == System::Linux { "linux" } else { "linux-hyper" };
                let server = ServerProc::spawn(&srv, kind, &[kind.into(), "--addr".into(), VETH_SERVER.to_string()])?;
                Ok(Env::two_ns(system, mtu, cli, srv, vec![server], None))
            }
            System::Nginx => {
                let (cli, srv) = veth_pair(mtu)?;
                let nginx = Nginx::start(&srv, VETH_SERVER)?;
                let env = Env::two_ns(system, mtu, cli, srv, Vec::new(), Some(nginx));
                env.wait_listening(HTTP_PORT, Duration::from_secs(10))?;
                Ok(env)
            }
        }
    }

    fn two_ns(system: System, mtu: usize, cli: Ns, srv: Ns, servers: Vec<ServerProc>, nginx: Option<Nginx>) -> Env {
        Env {
            system,
            mtu,
            servers,
            nginx,
            client_ns: cli,
            _server_ns: Some(srv),
            target: VETH_SERVER,
            client_dev: VETH_CLIENT_DEV,
        }
    }

    /// Wait (bounded) until `port` on the target accepts connections from the client's
    /// namespace; fails at once when nginx has exited.
    fn wait_listening(&self, port: u16, timeout: Duration) -> io::Result<()> {
        let addr = self.addr(port);
        let deadline = Instant::now() + timeout;
        loop {
            let ok = self.client(timeout, move || {
                Ok(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok())
            })?;
            if ok {
                return Ok(());
            }
            if let Some(n) = &self.nginx {
                n.check_running()?;
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, format!("nothing listens on {addr}")));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn one_ns(system: System, mtu: usize, ns: Ns, servers: Vec<ServerProc>) -> Env {
        Env {
            system,
            mtu,
            servers,
            nginx: None,
            client_ns: ns,
            _server_ns: None,
            target: TUN_PEER,
            client_dev: TUN_DEV,
        }
    }

    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.target.into(), port)
    }

    /// The process whose CPU time is reported: the stack (tunstack, smoltcp), the
    /// Linux server process, or the reflector.
    pub fn measured(&mut self) -> io::Result<&mut ServerProc> {
        self.servers.first_mut().ok_or_else(no_server)
    }

    /// The server process whose TCP serves the client (the Linux listener behind the
    /// reflector in the ceiling setup).
    pub fn tcp_server(&mut self) -> io::Result<&mut ServerProc> {
        self.servers.last_mut().ok_or_else(no_server)
    }

    /// The process that holds the idle connections (the Linux server behind the
    /// reflector in the ceiling setup).
    pub fn holder(&mut self) -> io::Result<&mut ServerProc> {
        self.servers.last_mut().ok_or_else(no_server)
    }

    /// CPU time (user + system) of the process(es) that serve HTTP so far, in seconds:
    /// the measured server's getrusage, or nginx's master's and workers' from /proc.
    pub fn http_cpu_secs(&mut self) -> io::Result<f64> {
        match &self.nginx {
            Some(n) => n.pids().into_iter().map(crate::sys::cpu_secs_of).sum(),
            None => self.measured()?.cpu_secs(),
        }
    }

    /// The processes that serve HTTP (nginx: its master and workers).
    pub fn http_pids(&self) -> Vec<u32> {
        match &self.nginx {
            Some(n) => n.pids(),
            None => self.servers.last().map(|s| vec![s.pid()]).unwrap_or_default(),
        }
    }

    /// Run `f` on a new thread inside the client namespace; `TimedOut` when it has not
    /// finished within `timeout` (the thread is then left to run into its own socket
    /// timeouts).
    pub fn client<T, F>(&self, timeout: Duration, f: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static,
    {
        let path: PathBuf = self.client_ns.get().path();
        let (tx, rx) = mpsc::channel();
        thread::Builder::new().name("client".into()).spawn(move || {
            let r = panic::catch_unwind(AssertUnwindSafe(move || {
                netns::enter(&path)
                    .map_err(|e| io::Error::new(e.kind(), format!("setns into {}: {e}", path.display())))?;
                f()
            }));
            let _ = tx.send(r.unwrap_or_else(|_| Err(io::Error::other("client thread panicked"))));
        })?;
        rx.recv_timeout(timeout)
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("client did not finish within {timeout:?}")))?
    }
}

fn no_server() -> io::Error {
    io::Error::other("this system has no bench server process")
}

/// Client and server namespaces joined by a veth pair (the Linux setups).
fn veth_pair(mtu: usize) -> io::Result<(Ns, Ns)> {
    let cli = Ns::new("bench-cli")?;
    let srv = Ns::new("bench-srv")?;
    cli.ip(&["link", "add", VETH_CLIENT_DEV, "type", "veth", "peer", "name", VETH_SERVER_DEV, "netns", srv.name()])?;
    let m = mtu.to_string();
    cli.ip(&["link", "set", "dev", VETH_CLIENT_DEV, "mtu", &m])?;
    srv.ip(&["link", "set", "dev", VETH_SERVER_DEV, "mtu", &m])?;
    cli.ip(&["addr", "add", &format!("{VETH_CLIENT}/24"), "dev", VETH_CLIENT_DEV])?;
    srv.ip(&["addr", "add", &format!("{VETH_SERVER}/24"), "dev", VETH_SERVER_DEV])?;
    cli.ip(&["link", "set", "dev", VETH_CLIENT_DEV, "up"])?;
    srv.ip(&["link", "set", "dev", VETH_SERVER_DEV, "up"])?;
    Ok((cli, srv))
}

/// Whether nginx can be started (Debian package `nginx-light`).
pub fn nginx_available() -> bool {
    Command::new("nginx").arg("-v").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// nginx's configuration: one worker process, keep-alive on (and not limited to a
/// number of requests per connection: the other servers have no such limit), no access
/// log, `index.html` from `dir/www` on ports 80 and 8080 of `addr`; everything it
/// writes goes under `dir`.
pub fn nginx_conf(dir: &Path, addr: Ipv4Addr) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 65536;
events {{
    worker_connections {conns};
}}
http {{
    types {{ text/html html; }}
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 75s;
    keepalive_requests 1000000000;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {addr}:{HTTP_PORT} backlog=1024;
        listen {addr}:{HTTP_MANY_PORT} backlog={HTTP_MANY_BACKLOG};
        root {d}/www;
        index index.html;
    }}
}}
",
        conns = HTTP_MANY_BACKLOG + 1024,
    )
}

/// An nginx master process (and its worker) in a namespace, and its directory.
pub struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    fn start(ns: &Ns, addr: Ipv4Addr) -> io::Result<Nginx> {
        if !nginx_available() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "nginx is not installed (Debian package nginx-light)"));
        }
        let dir = std::env::temp_dir().join(format!("bench-nginx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("www"))?;
        if let Ok(mut v) = LIVE_DIRS.lock() {
            v.push(dir.clone());
        }
        let cleanup = |e: io::Error| {
            remove_dir(&dir);
            e
        };
        std::fs::write(dir.join("www/index.html"), demo_home_body()).map_err(cleanup)?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, nginx_conf(&dir, addr)).map_err(cleanup)?;
        let (conf_s, dir_s) = (conf.display().to_string(), dir.display().to_string());
        // `ip netns exec` execs nginx: the child's pid is the master's.
        let child = ns
            .get()
            .command(&["nginx", "-c", &conf_s, "-p", &dir_s, "-e", &format!("{dir_s}/error.log")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(cleanup)?;
        Ok(Nginx { child, dir })
    }

    /// An error (with nginx's error log) when the master has exited.
    fn check_running(&self) -> io::Result<()> {
        let mut pid_alive = std::fs::metadata(format!("/proc/{}", self.child.id())).is_ok();
        if pid_alive {
            // A zombie (exited, not yet reaped) is not running.
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
            pid_alive = !stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        }
        if pid_alive {
            return Ok(());
        }
        let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        Err(io::Error::other(format!("nginx exited: {}", log.trim())))
    }

    /// The master and its workers.
    fn pids(&self) -> Vec<u32> {
        let master = self.child.id();
        let mut v = vec![master];
        v.extend(crate::sys::children_of(master));
        v
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let workers = crate::sys::children_of(self.child.id());
        // Fast shutdown (SIGTERM): the master stops its workers and exits.
        // SAFETY: kill(2) has no memory effects; the pid is our child, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in workers {
            if crate::sys::process_name(pid).is_some_and(|n| n == "nginx") {
                // SAFETY: as above; the worker we saw under our master, still nginx.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        remove_dir(&self.dir);
    }
}

fn remove_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    if let Ok(mut v) = LIVE_DIRS.lock() {
        v.retain(|d| d != dir);
    }
}

/// A persistent TUN device `bt0` with the kernel's side configured, for the servers
/// that attach to an existing device (smoltcp, reflector).
pub(crate) fn tun_device(ns: &Ns, mtu: usize, qlen: &str) -> io::Result<()> {
    ns.ip(&["tuntap", "add", "dev", TUN_DEV, "mode", "tun"])?;
    ns.ip(&["link", "set", "dev", TUN_DEV, "mtu", &mtu.to_string()])?;
    ns.ip(&["link", "set", "dev", TUN_DEV, "txqueuelen", qlen])?;
    ns.ip(&["addr", "add", &format!("{TUN_HOST}/{TUN_PREFIX}"), "dev", TUN_DEV])?;
    ns.ip(&["link", "set", "dev", TUN_DEV, "up"])
}

//! Scripts against Linux: the kernel's TCP is the system under test, the script's
//! interpreter ([`tunstack::script::run()`]) plays the remote host on a TUN device.
//!
//! Each script runs in a network namespace of its own, created here and deleted when
//! the script ends (`ts-pkt-<pid>-<n>`, the prefix the test suite checks for leftovers):
//! a TUN device `tun0` with the local address (192.168.0.1/16 or fd3d:fa7b:d17d::1/48)
//! and a route to the remote one (192.0.2.1 or 2001:db8::1) through it, a `pfifo`
//! qdisc (as packetdrill sets: no pacing by a default fq), and the script's `sysctl`s
//! set inside the namespace (`ip netns exec NS sysctl`; namespace-local keys only).
//! TCP sockets start with CUBIC, Linux's stock default (a namespace inherits the
//! host's default congestion control and may not change it).
//! The system calls run on kernel sockets in that namespace, on a worker thread, in
//! real time; a call the script does not mark `...` that blocks is reported instead of
//! hanging the run. As packetdrill does, the runner's threads take a real-time
//! priority (`chrt -r 1`) so that a busy machine disturbs the timing less.

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustix::io::Errno as RErrno;
use rustix::net::sockopt;
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};
use tunstack::runtime::device::{Device, TunDevice};
use tunstack::script::{
    self, Call, CallStatus, Errno, Expect, OptValue, Report, Script, Settings, SockOpt, SockType, SysResult, Target,
};

/// Prefix of the namespaces made here (the test suite checks none is left behind).
pub const NETNS_PREFIX: &str = "ts-pkt-";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Root (CAP_NET_ADMIN, CAP_SYS_ADMIN), /dev/net/tun and `ip`, or why not.
pub fn check_prerequisites() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| format!("reading /proc/self/status: {e}"))?;
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or("cannot read CapEff from /proc/self/status")?;
    for (bit, name) in [(12, "CAP_NET_ADMIN"), (21, "CAP_SYS_ADMIN")] {
        if caps & (1 << bit) == 0 {
            return Err(format!("running scripts against Linux needs {name}: run as root"));
        }
    }
    if !Path::new("/dev/net/tun").exists() {
        return Err("/dev/net/tun does not exist (no TUN support)".into());
    }
    match Command::new("ip").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => Ok(()),
        _ => Err("no `ip` command (install iproute2)".into()),
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output().map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// A namespace of our own, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn create() -> Result<Netns, String> {
        let name = format!("{NETNS_PREFIX}{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        ip(&["netns", "add", &name])?;
        Ok(Netns { name })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("warning: could not delete network namespace {}: {e}", self.name);
        }
    }
}

/// Run one script against Linux. `progress` gets each step as it happens.
pub fn run_one(script: &Script, progress: Box<dyn FnMut(&str) + Send>) -> Report {
    let fail = |msg: String| Report {
        script: script.name.clone(),
        target: "linux",
        steps: Vec::new(),
        failure: Some(script::Failure { line: 0, message: msg, comparison: None, state: None }),
    };
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(e) => return fail(e),
    };
    let name = ns.name.clone();
    let script2 = script.clone();
    let handle = thread::Builder::new().name(format!("pkt-{name}")).spawn(move || {
        let mut progress = progress;
        match LinuxTarget::new(&name, &script2.settings) {
            Ok(mut target) => {
                let r = script::run(&script2, &mut target, &mut *progress);
                target.shutdown();
                r
            }
            Err(e) => Report {
                script: script2.name.clone(),
                target: "linux",
                steps: Vec::new(),
                failure: Some(script::Failure {
                    line: 0,
                    message: format!("setting up the namespace: {e}"),
                    comparison: None,
                    state: None,
                }),
            },
        }
    });
    let report = match handle {
        Ok(h) => h.join().unwrap_or_else(|_| fail("the script's thread panicked".into())),
        Err(e) => fail(format!("spawning a thread: {e}")),
    };
    drop(ns);
    report
}

/// Run scripts against Linux, up to `jobs` at a time (a failure is then run again
/// alone); the reports are in the order of `scripts`.
pub fn run_many(scripts: &[Script], jobs: usize, verbose: bool) -> Vec<Report> {
    let mut reports: Vec<Option<Report>> = vec![None; scripts.len()];
    let next = std::sync::Mutex::new(0usize);
    let results = std::sync::Mutex::new(Vec::new());
    let jobs = jobs.clamp(1, 16);
    thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                    let i = *n;
                    *n += 1;
                    i
                };
                let Some(sc) = scripts.get(i) else { break };
                let show = verbose && jobs == 1;
                if show {
                    println!("== {} [linux]", sc.name);
                }
                let progress: Box<dyn FnMut(&str) + Send> =
                    if show { Box::new(|l: &str| println!("  {l}")) } else { Box::new(|_: &str| {}) };
                let r = run_one(sc, progress);
                results.lock().unwrap_or_else(|e| e.into_inner()).push((i, r));
            });
        }
    });
    for (i, r) in results.into_inner().unwrap_or_else(|e| e.into_inner()) {
        reports[i] = Some(r);
    }
    let mut reports: Vec<Report> = reports.into_iter().map(|r| r.expect("every script ran")).collect();
    if jobs > 1 {
        // Scripts running side by side (and namespaces being set up) delay one another
        // by milliseconds on a small machine: a failure is run again alone, so that
        // only what fails on a quiet machine counts.
        for (i, sc) in scripts.iter().enumerate() {
            if reports[i].passed() {
                continue;
            }
            if verbose {
                println!("== {} [linux] (again, alone)", sc.name);
            }
            let mut again = run_one(sc, Box::new(|_: &str| {}));
            again.steps.insert(0, "(run again alone after failing among parallel runs)".into());
            reports[i] = again;
        }
    }
    reports
}

// ---------------------------------------------------------------- the target

enum Job {
    Call { call: Call, fd: Option<Arc<OwnedFd>>, ty: Option<SockType> },
    Exit,
}

struct Done {
    at: Instant,
    result: SysResult,
    new_fd: Option<OwnedFd>,
}

/// The kernel in a namespace, as a [`Target`].
struct LinuxTarget {
    ns: String,
    start: Instant,
    dev: Arc<TunDevice>,
    packets: Receiver<(Instant, Vec<u8>)>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    jobs: Sender<Job>,
    results: Receiver<Done>,
    worker: Option<JoinHandle<()>>,
    worker_tid: Arc<AtomicU32>,
    fds: HashMap<i32, Arc<OwnedFd>>,
    types: HashMap<i32, SockType>,
    /// The call the worker is running: the script fd its result names (socket/accept).
    in_flight: Option<Option<i32>>,
    done: Option<(u64, SysResult)>,
    sysctls: Vec<String>,
}

impl LinuxTarget {
    /// Enter namespace `ns` (this thread), set it up, start the reader and the worker.
    fn new(ns: &str, s: &Settings) -> Result<LinuxTarget, String> {
        let path = Path::new("/run/netns").join(ns);
        let f = File::open(&path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        move_into_link_name_space(f.as_fd(), Some(LinkNameSpaceType::Network))
            .map_err(|e| format!("entering {ns}: {e}"))?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        let dev = TunDevice::create("tun0", s.mtu).map_err(|e| format!("creating tun0: {e}"))?;
        let mtu = s.mtu.to_string();
        ip(&["-n", ns, "link", "set", "tun0", "mtu", &mtu, "up"])?;
        let (local, remote_net) = if s.ipv6 {
            (format!("{}/48", s.local_ip), format!("{}/128", s.remote_ip))
        } else {
            (format!("{}/16", s.local_ip), format!("{}/32", s.remote_ip))
        };
        let mut add = vec!["-n", ns, "addr", "add", &local, "dev", "tun0"];
        if s.ipv6 {
            add.push("nodad");
        }
        ip(&add)?;
        // A route to the remote host through the device.
        ip(&["-n", ns, "route", "replace", &remote_net, "dev", "tun0"])?;
        // packetdrill's tests ask for pfifo: no pacing by an fq default qdisc.
        let _ = Command::new("tc")
            .args(["qdisc", "replace", "dev", "tun0", "root", "pfifo"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Let the kernel finish bringing the link up (link watch, the qdisc) before
        // the script's clock starts.
        thread::sleep(Duration::from_millis(50));
        realtime_priority();
        let dev = Arc::new(dev);
        let stop = Arc::new(AtomicBool::new(false));
        let (ptx, packets) = mpsc::channel();
        let reader = {
            let (dev, stop) = (dev.clone(), stop.clone());
            thread::Builder::new()
                .name("pkt-reader".into())
                .spawn(move || {
                    realtime_priority();
                    read_loop(&dev, &stop, &ptx)
                })
                .map_err(|e| format!("spawning the reader: {e}"))?
        };
        let (jobs, jrx) = mpsc::channel();
        let (rtx, results) = mpsc::channel();
        let worker_tid = Arc::new(AtomicU32::new(0));
        let worker = {
            let s = s.clone();
            let tid = worker_tid.clone();
            thread::Builder::new()
                .name("pkt-syscalls".into())
                .spawn(move || {
                    tid.store(rustix::thread::gettid().as_raw_nonzero().get() as u32, Ordering::SeqCst);
                    realtime_priority();
                    worker_loop(&s, &jrx, &rtx)
                })
                .map_err(|e| format!("spawning the system call thread: {e}"))?
        };
        Ok(LinuxTarget {
            ns: ns.to_string(),
            start: Instant::now(),
            dev,
            packets,
            stop,
            reader: Some(reader),
            jobs,
            results,
            worker: Some(worker),
            worker_tid,
            fds: HashMap::new(),
            types: HashMap::new(),
            in_flight: None,
            done: None,
            sysctls: Vec::new(),
        })
    }

    fn at(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_micros() as u64
    }

    fn instant(&self, t: u64) -> Instant {
        self.start + Duration::from_micros(t)
    }

    /// Whether the worker thread sleeps in the kernel (a blocked call).
    fn worker_sleeping(&self) -> bool {
        let tid = self.worker_tid.load(Ordering::SeqCst);
        let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else { return false };
        stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()) == Some("S")
    }

    fn accept_done(&mut self, d: Done) -> (u64, SysResult) {
        let name = self.in_flight.take().flatten();
        if let (Some(fd), Some(name)) = (d.new_fd, name) {
            self.fds.insert(name, Arc::new(fd));
        }
        (self.at(d.at), d.result)
    }

    fn shutdown(&mut self) {
        // Unblock a call still in the kernel, then stop the threads.
        for fd in self.fds.values() {
            let _ = rustix::net::shutdown(&**fd, rustix::net::Shutdown::Both);
        }
        self.fds.clear();
        let _ = self.jobs.send(Job::Exit);
        self.stop.store(true, Ordering::SeqCst);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        if let Some(w) = self.worker.take() {
            // A worker stuck in a call is left behind (threads cannot be killed); the
            // namespace goes away with the sockets closed.
            let deadline = Instant::now() + Duration::from_secs(2);
            while !w.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if w.is_finished() {
                let _ = w.join();
            }
        }
    }
}

/// Give the calling thread a real-time priority (SCHED_RR 1), as packetdrill does on
/// machines with more than one CPU, so that a busy machine delays the script's
/// packets and calls less. Best effort (`chrt` from util-linux).
fn realtime_priority() {
    let tid = rustix::thread::gettid().as_raw_nonzero().get().to_string();
    if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
        let _ = Command::new("chrt")
            .args(["-r", "-p", "1", &tid])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `sysctl -w key=value` inside namespace `ns`.
fn sysctl(ns: &str, key: &str, value: &str) -> Result<(), String> {
    let kv = format!("{key}={value}");
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-q", "-w", &kv])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running sysctl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("sysctl {kv} in {ns} failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn read_loop(dev: &TunDevice, stop: &AtomicBool, out: &Sender<(Instant, Vec<u8>)>) {
    let mut buf = vec![0u8; 65536];
    let timeout = rustix::event::Timespec { tv_sec: 0, tv_nsec: 20_000_000 };
    while !stop.load(Ordering::SeqCst) {
        let fd = dev.fd();
        let mut pfd = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
        if rustix::event::poll(&mut pfd, Some(&timeout)).is_err() {
            thread::sleep(Duration::from_millis(1));
            continue;
        }
        while let Ok(n) = dev.recv(tunstack::Instant::ZERO, &mut buf) {
            let now = Instant::now();
            let p = &buf[..n];
            if noise(p) {
                continue;
            }
            if out.send((now, p.to_vec())).is_err() {
                return;
            }
        }
    }
}

/// What the kernel sends on its own on a fresh link (IPv6 neighbor discovery, MLD,
/// router solicitations): not the script's business.
fn noise(p: &[u8]) -> bool {
    match p.first().map(|v| v >> 4) {
        Some(6) if p.len() >= 40 => {
            let src_link_local = p[8] == 0xfe && p[9] & 0xc0 == 0x80;
            let dst_multicast = p[24] == 0xff;
            src_link_local || dst_multicast || p[6] == 0 /* hop-by-hop: MLD */
        }
        Some(4) => false,
        _ => true,
    }
}

fn errno(e: RErrno) -> Errno {
    Errno::from_number(e.raw_os_error()).unwrap_or(Errno::EINVAL)
}

fn res(r: rustix::io::Result<i64>) -> SysResult {
    match r {
        Ok(v) => SysResult::ok(v),
        Err(e) => SysResult::err(errno(e)),
    }
}

fn worker_loop(s: &Settings, jobs: &Receiver<Job>, out: &Sender<Done>) {
    while let Ok(job) = jobs.recv() {
        let Job::Call { call, fd, ty } = job else { return };
        let mut new_fd = None;
        let result = do_call(s, &call, fd.as_deref(), ty, &mut new_fd);
        drop(fd);
        if out.send(Done { at: Instant::now(), result, new_fd }).is_err() {
            return;
        }
    }
}

fn do_call(
    s: &Settings,
    call: &Call,
    fd: Option<&OwnedFd>,
    ty: Option<SockType>,
    new_fd: &mut Option<OwnedFd>,
) -> SysResult {
    use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType};
    let local = SocketAddr::new(s.local_ip, s.bind_port);
    let remote = SocketAddr::new(s.remote_ip, s.connect_port);
    let Some(fd) = fd else {
        if let Call::Socket { ty, ipv6 } = call {
            let v6 = ipv6.unwrap_or(s.ipv6);
            let family = if v6 { AddressFamily::INET6 } else { AddressFamily::INET };
            let (t, proto) = match ty {
                SockType::Stream => (SocketType::STREAM, rustix::net::ipproto::TCP),
                SockType::Dgram => (SocketType::DGRAM, rustix::net::ipproto::UDP),
            };
            return match rustix::net::socket(family, t, Some(proto)) {
                Ok(f) => {
                    if *ty == SockType::Stream {
                        // Linux's stock default, whatever the host's (a namespace
                        // inherits it and may not change it).
                        let _ = sockopt::set_tcp_congestion(&f, "cubic");
                    }
                    *new_fd = Some(f);
                    SysResult::ok(0)
                }
                Err(e) => SysResult::err(errno(e)),
            };
        }
        return SysResult::err(Errno::EBADF);
    };
    let unit = |r: rustix::io::Result<()>| res(r.map(|()| 0));
    match call {
        Call::Socket { .. } => SysResult::err(Errno::EINVAL),
        Call::Bind { .. } => unit(rustix::net::bind(fd, &local)),
        Call::Listen { backlog, .. } => unit(rustix::net::listen(fd, *backlog)),
        Call::Accept { .. } => match rustix::net::accept(fd) {
            Ok(f) => {
                *new_fd = Some(f);
                SysResult::ok(0)
            }
            Err(e) => SysResult::err(errno(e)),
        },
        Call::Connect { .. } => unit(rustix::net::connect(fd, &remote)),
        Call::Read { len, dontwait, .. } => {
            let mut buf = vec![0u8; *len];
            let flags = if *dontwait { RecvFlags::DONTWAIT } else { RecvFlags::empty() };
            res(rustix::net::recv(fd, &mut buf[..], flags).map(|(n, _)| n as i64))
        }
        Call::Write { len, dontwait, .. } => {
            let buf = vec![0u8; *len];
            let mut flags = SendFlags::NOSIGNAL;
            if *dontwait {
                flags |= SendFlags::DONTWAIT;
            }
            if ty == Some(SockType::Dgram) {
                res(rustix::net::sendto(fd, &buf, flags, &remote).map(|n| n as i64))
            } else {
                res(rustix::net::send(fd, &buf, flags).map(|n| n as i64))
            }
        }
        Call::Close { .. } => SysResult::ok(0),
        Call::Shutdown { how, .. } => {
            let how = match how {
                script::ShutdownHow::Read => rustix::net::Shutdown::Read,
                script::ShutdownHow::Write => rustix::net::Shutdown::Write,
                script::ShutdownHow::Both => rustix::net::Shutdown::Both,
            };
            unit(rustix::net::shutdown(fd, how))
        }
        Call::SetSockOpt { opt, value, .. } => setsockopt(fd, *opt, value),
        Call::GetSockOpt { opt, .. } => getsockopt(fd, *opt),
        Call::SetFl { nonblock, .. } => unit(rustix::io::ioctl_fionbio(fd, *nonblock)),
        Call::GetFl { .. } => res(rustix::fs::fcntl_getfl(fd).map(|f| f.bits() as i64)),
    }
}

fn setsockopt(fd: &OwnedFd, opt: SockOpt, value: &OptValue) -> SysResult {
    let unit = |r: rustix::io::Result<()>| res(r.map(|()| 0));
    let int = match value {
        OptValue::Int(v) => *v,
        _ => 0,
    };
    let secs = |v: i64| Duration::from_secs(v.max(0) as u64);
    match opt {
        SockOpt::ReuseAddr => unit(sockopt::set_socket_reuseaddr(fd, int != 0)),
        SockOpt::KeepAlive => unit(sockopt::set_socket_keepalive(fd, int != 0)),
        SockOpt::RcvBuf => unit(sockopt::set_socket_recv_buffer_size(fd, int.max(0) as usize)),
        SockOpt::SndBuf => unit(sockopt::set_socket_send_buffer_size(fd, int.max(0) as usize)),
        SockOpt::Linger => match value {
            OptValue::Linger { onoff, secs: s } => {
                unit(sockopt::set_socket_linger(fd, onoff.then(|| Duration::from_secs((*s).max(0) as u64))))
            }
            _ => SysResult::err(Errno::EINVAL),
        },
        SockOpt::TcpNoDelay => unit(sockopt::set_tcp_nodelay(fd, int != 0)),
        SockOpt::TcpKeepIdle if int < 1 => SysResult::err(Errno::EINVAL),
        SockOpt::TcpKeepIdle => unit(sockopt::set_tcp_keepidle(fd, secs(int))),
        SockOpt::TcpKeepIntvl if int < 1 => SysResult::err(Errno::EINVAL),
        SockOpt::TcpKeepIntvl => unit(sockopt::set_tcp_keepintvl(fd, secs(int))),
        SockOpt::TcpKeepCnt => unit(sockopt::set_tcp_keepcnt(fd, int.clamp(0, u32::MAX as i64) as u32)),
        SockOpt::TcpUserTimeout if int < 0 => SysResult::err(Errno::EINVAL),
        SockOpt::TcpUserTimeout => unit(sockopt::set_tcp_user_timeout(fd, int.min(u32::MAX as i64) as u32)),
        SockOpt::TcpCongestion => match value {
            OptValue::Str(s) => unit(sockopt::set_tcp_congestion(fd, s)),
            _ => SysResult::err(Errno::EINVAL),
        },
        SockOpt::Error => SysResult::err(Errno::ENOPROTOOPT),
    }
}

fn getsockopt(fd: &OwnedFd, opt: SockOpt) -> SysResult {
    let v: rustix::io::Result<OptValue> = match opt {
        SockOpt::ReuseAddr => sockopt::socket_reuseaddr(fd).map(|b| OptValue::Int(b as i64)),
        SockOpt::KeepAlive => sockopt::socket_keepalive(fd).map(|b| OptValue::Int(b as i64)),
        SockOpt::RcvBuf => sockopt::socket_recv_buffer_size(fd).map(|v| OptValue::Int(v as i64)),
        SockOpt::SndBuf => sockopt::socket_send_buffer_size(fd).map(|v| OptValue::Int(v as i64)),
        SockOpt::Linger => sockopt::socket_linger(fd)
            .map(|d| OptValue::Linger { onoff: d.is_some(), secs: d.map_or(0, |d| d.as_secs() as i64) }),
        SockOpt::TcpNoDelay => sockopt::tcp_nodelay(fd).map(|b| OptValue::Int(b as i64)),
        SockOpt::TcpKeepIdle => sockopt::tcp_keepidle(fd).map(|d| OptValue::Int(d.as_secs() as i64)),
        SockOpt::TcpKeepIntvl => sockopt::tcp_keepintvl(fd).map(|d| OptValue::Int(d.as_secs() as i64)),
        SockOpt::TcpKeepCnt => sockopt::tcp_keepcnt(fd).map(|v| OptValue::Int(v as i64)),
        SockOpt::TcpUserTimeout => sockopt::tcp_user_timeout(fd).map(|v| OptValue::Int(v as i64)),
        SockOpt::TcpCongestion => sockopt::tcp_congestion(fd).map(OptValue::Str),
        SockOpt::Error => {
            sockopt::socket_error(fd).map(|r| OptValue::Int(r.err().map_or(0, |e| e.raw_os_error() as i64)))
        }
    };
    match v {
        Ok(v) => SysResult { ret: Ok(0), value: Some(v) },
        Err(e) => SysResult::err(errno(e)),
    }
}

/// How long a call the script does not mark blocking may take before it counts as
/// blocked.
const NONBLOCKING_LIMIT: Duration = Duration::from_secs(2);

impl Target for LinuxTarget {
    fn name(&self) -> &'static str {
        "linux"
    }

    fn burst_grace(&self) -> u64 {
        2_000
    }

    fn now(&mut self) -> u64 {
        self.at(Instant::now())
    }

    fn wait_until(&mut self, t: u64) -> Result<(), String> {
        let when = self.instant(t);
        loop {
            let now = Instant::now();
            if now >= when {
                return Ok(());
            }
            let left = when - now;
            // Sleep, then spin the last stretch (the scheduler wakes us late).
            if left > Duration::from_micros(300) {
                thread::sleep(left - Duration::from_micros(200));
            } else {
                std::hint::spin_loop();
            }
        }
    }

    fn inject(&mut self, packet: &[u8]) -> Result<(), String> {
        self.dev.send(tunstack::Instant::ZERO, packet).map_err(|e| format!("writing to tun0: {e}"))
    }

    fn next_packet(&mut self, deadline: u64) -> Result<Option<(u64, Vec<u8>)>, String> {
        let when = self.instant(deadline);
        let wait = when.saturating_duration_since(Instant::now());
        match self.packets.recv_timeout(wait) {
            Ok((t, p)) => Ok(Some((self.at(t), p))),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err("the TUN reader stopped".into()),
        }
    }

    fn sysctl(&mut self, key: &str, value: &str) -> Result<(), String> {
        // A key this kernel does not have is a feature it does not have: noted, not an
        // error (e.g. tcp_syn_linear_timeouts before 6.7).
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        if !path.exists() {
            self.sysctls.push(format!("{key}={value} (no such key in this kernel: ignored)"));
            return Ok(());
        }
        sysctl(&self.ns, key, value)?;
        self.sysctls.push(format!("{key}={value}"));
        Ok(())
    }

    fn syscall(&mut self, call: &Call, expect: &Expect, blocking: bool) -> Result<CallStatus, String> {
        self.done = None;
        let (fd, ty) = match call.fd() {
            Some(n) => match self.fds.get(&n) {
                Some(f) => (Some(f.clone()), self.types.get(&n).copied()),
                None => return Ok(CallStatus::Done(SysResult::err(Errno::EBADF))),
            },
            None => (None, None),
        };
        let name = match call {
            Call::Socket { ty, .. } => {
                let n = expect.ret as i32;
                if self.fds.contains_key(&n) {
                    return Err(format!("socket: the script already uses fd {n}"));
                }
                self.types.insert(n, *ty);
                Some(n)
            }
            Call::Accept { .. } => {
                let n = expect.ret as i32;
                self.types.insert(n, SockType::Stream);
                Some(n)
            }
            Call::Close { fd } => {
                self.fds.remove(fd);
                None
            }
            _ => None,
        };
        self.in_flight = Some(name);
        self.jobs
            .send(Job::Call { call: call.clone(), fd, ty })
            .map_err(|_| "the system call thread stopped".to_string())?;
        let started = Instant::now();
        loop {
            match self.results.recv_timeout(Duration::from_micros(100)) {
                Ok(d) => {
                    let (_, mut r) = self.accept_done(d);
                    if let (Some(n), Ok(_)) = (name, &r.ret) {
                        r.ret = Ok(n as i64);
                    }
                    return Ok(CallStatus::Done(r));
                }
                Err(RecvTimeoutError::Disconnected) => return Err("the system call thread stopped".into()),
                Err(RecvTimeoutError::Timeout) => {}
            }
            if blocking && started.elapsed() > Duration::from_micros(200) && self.worker_sleeping() {
                return Ok(CallStatus::Pending);
            }
            if !blocking && started.elapsed() > NONBLOCKING_LIMIT {
                return Err(format!(
                    "the call blocked for {} s; a blocking call is written `...END call(...)` (or set O_NONBLOCK)",
                    NONBLOCKING_LIMIT.as_secs()
                ));
            }
        }
    }

    fn poll_blocking(&mut self) -> Option<(u64, SysResult)> {
        if let Some(d) = self.done.take() {
            return Some(d);
        }
        let d = self.results.try_recv().ok()?;
        let name = self.in_flight.flatten();
        let (t, mut r) = self.accept_done(d);
        if let (Some(n), Ok(_)) = (name, &r.ret) {
            r.ret = Ok(n as i64);
        }
        Some((t, r))
    }

    fn wait_blocking(&mut self, deadline: u64) -> Result<Option<(u64, SysResult)>, String> {
        if let Some(d) = self.done.take() {
            return Ok(Some(d));
        }
        let wait = self.instant(deadline).saturating_duration_since(Instant::now());
        match self.results.recv_timeout(wait) {
            Ok(d) => {
                let name = self.in_flight.flatten();
                let (t, mut r) = self.accept_done(d);
                if let (Some(n), Ok(_)) = (name, &r.ret) {
                    r.ret = Ok(n as i64);
                }
                Ok(Some((t, r)))
            }
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err("the system call thread stopped".into()),
        }
    }

    fn describe(&mut self) -> String {
        let mut s = format!("Linux in namespace {} (ss -tinoem):\n", self.ns);
        match Command::new("ss").args(["-tinoemHa"]).stdin(Stdio::null()).output() {
            Ok(o) => s.push_str(String::from_utf8_lossy(&o.stdout).trim_end()),
            Err(e) => s.push_str(&format!("(ss failed: {e})")),
        }
        // The kernel's counters say why it dropped or ignored a packet.
        if let Ok(o) = Command::new("nstat").args(["-as"]).stdin(Stdio::null()).output() {
            let text = String::from_utf8_lossy(&o.stdout);
            let counters: Vec<String> = text
                .lines()
                .filter(|l| {
                    l.starts_with("Tcp") || l.starts_with("Ip") || l.starts_with("Udp") || l.starts_with("Icmp")
                })
                .filter_map(|l| {
                    let mut w = l.split_whitespace();
                    Some(format!("{}={}", w.next()?, w.next()?))
                })
                .collect();
            s.push_str(&format!("\ncounters: {}", counters.join(" ")));
        }
        if !self.sysctls.is_empty() {
            s.push_str(&format!("\nsysctls: {}", self.sysctls.join(" ")));
        }
        s
    }
}

impl Drop for LinuxTarget {
    fn drop(&mut self) {
        self.shutdown();
    }
}

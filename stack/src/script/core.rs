//! The sans-IO core as the system under test: a [`Stack`] on a virtual clock (no root,
//! no device, deterministic), its system calls mapped onto the `Stack` API through a
//! table of script file descriptors.
//!
//! The clock only moves when the script says so: waiting until an event's time runs
//! the stack's timers due by then, and waiting for an outbound packet runs them one by
//! one until the stack sends something. A blocking call (`...`) is retried after every
//! packet and timer, and returns at the virtual time it could.
//!
//! The stack is created when the script first needs it (the first `listen`, `connect`,
//! UDP `bind` or inbound packet), so that `sysctl` commands and the first socket's
//! `SO_RCVBUF` / `SO_SNDBUF` can still shape its [`Config`] (see [`linux_like_config`]).

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use super::ast::*;
use super::run::{secs, CallStatus, Target};
use crate::config::{CongestionAlgorithm, Keepalive};
use crate::error::{AcceptError, ConnError, ConnectError, RecvError, SendError, ShutdownError, UdpSendError};
use crate::socket::{AnyHandle, ListenerHandle, TcpHandle, UdpHandle};
use crate::{BindError, Config, Instant, Stack};

/// The core's configuration for scripts: [`Config::default`] with what Linux does where
/// the core has a knob, so that one script fits both (see the module documentation of
/// [`super`] for the table): 2*MSL = 60 s like Linux's TIME-WAIT, RTO bounds 200 ms and
/// 120 s, a receive buffer of Linux's `tcp_rmem` maximum (6 MiB, hence window scale 7),
/// delayed ACKs of 40 ms.
pub fn linux_like_config(s: &Settings) -> Config {
    Config {
        addrs: vec![s.local_ip],
        mtu: s.mtu,
        seed: 1,
        msl: Duration::from_secs(30),
        rto_initial: Duration::from_secs(1),
        rto_min: Duration::from_millis(200),
        rto_max: Duration::from_secs(120),
        max_retries: 15,
        syn_retries: 6,
        tcp_rx_buffer: 6 << 20,
        tcp_tx_buffer: 4 << 20,
        ack_delay: Some(Duration::from_millis(40)),
        ..Config::default()
    }
}

const O_RDWR: i64 = 2;
const O_NONBLOCK: i64 = 0o4000;

#[derive(Debug)]
enum Sock {
    /// socket(SOCK_STREAM) before listen/connect.
    TcpNew {
        bound: bool,
    },
    Listener(ListenerHandle),
    Tcp(TcpHandle),
    Udp(Option<UdpHandle>),
}

#[derive(Clone, Debug)]
struct Opts {
    reuseaddr: bool,
    nodelay: bool,
    keepalive: bool,
    keep_idle: u32,
    keep_intvl: u32,
    keep_cnt: u32,
    user_timeout_ms: u32,
    congestion: Option<CongestionAlgorithm>,
    linger0: bool,
    rcvbuf: Option<usize>,
    sndbuf: Option<usize>,
}

#[derive(Debug)]
struct Fd {
    sock: Sock,
    nonblock: bool,
    opts: Opts,
    /// SO_ERROR was read (it is reported once).
    error_read: bool,
    /// A second `connect` on a connected socket says EISCONN.
    connect_reported: bool,
}

struct Pending {
    fd: i32,
    call: Call,
    /// The script's number for the socket `accept` returns.
    new_fd: i32,
    /// Bytes a blocking write has queued so far.
    written: usize,
}

/// The sans-IO core as a [`Target`].
pub struct CoreTarget {
    settings: Settings,
    cfg: Config,
    stack: Option<Stack>,
    now: u64,
    out: VecDeque<(u64, Vec<u8>)>,
    fds: HashMap<i32, Fd>,
    pending: Option<Pending>,
    done: Option<(u64, SysResult)>,
    default_ka: Keepalive,
    buf: Vec<u8>,
    /// Sysctls the core has no equivalent of (reported in `describe`).
    notes: Vec<String>,
}

impl CoreTarget {
    pub fn new(settings: &Settings) -> CoreTarget {
        CoreTarget {
            cfg: linux_like_config(settings),
            settings: settings.clone(),
            stack: None,
            now: 0,
            out: VecDeque::new(),
            fds: HashMap::new(),
            pending: None,
            done: None,
            default_ka: Keepalive::default(),
            buf: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The configuration the stack has (or will be created with).
    pub fn config(&self) -> &Config {
        match &self.stack {
            Some(s) => s.config(),
            None => &self.cfg,
        }
    }

    fn instant(&self) -> Instant {
        Instant::from_micros(self.now)
    }

    /// The stack, created now if it does not exist yet (with `fd`'s buffer sizes).
    fn stack(&mut self, fd: Option<i32>) -> &mut Stack {
        if self.stack.is_none() {
            let mut cfg = self.cfg.clone();
            if let Some(f) = fd.and_then(|fd| self.fds.get(&fd)) {
                if let Some(r) = f.opts.rcvbuf {
                    cfg.tcp_rx_buffer = r;
                }
                if let Some(s) = f.opts.sndbuf {
                    cfg.tcp_tx_buffer = s;
                }
            }
            self.buf = vec![0; cfg.mtu.max(1500)];
            self.stack = Some(Stack::new(cfg));
        }
        self.stack.as_mut().expect("created above")
    }

    /// Collect what the stack sends now; retry the blocking call.
    fn settle(&mut self) {
        let now = self.instant();
        if let Some(stack) = self.stack.as_mut() {
            while let Some(n) = stack.poll_transmit(now, &mut self.buf) {
                self.out.push_back((self.now, self.buf[..n].to_vec()));
            }
            while stack.poll_readiness().is_some() {}
        }
        self.retry_pending();
        // A call that returned may have queued output (a write).
        if let Some(stack) = self.stack.as_mut() {
            while let Some(n) = stack.poll_transmit(now, &mut self.buf) {
                self.out.push_back((self.now, self.buf[..n].to_vec()));
            }
        }
    }

    /// Run the timers due by `t`, one deadline at a time; stop early when `stop` says
    /// so after a step. The clock ends at `t` unless stopped.
    fn run_until(&mut self, t: u64, stop: &mut dyn FnMut(&CoreTarget) -> bool) -> Result<bool, String> {
        let mut same = 0u32;
        let mut last = None;
        loop {
            if stop(self) {
                return Ok(true);
            }
            let Some(stack) = self.stack.as_mut() else { break };
            let Some(d) = stack.poll_timeout() else { break };
            let d = d.total_micros();
            if d > t {
                break;
            }
            if last == Some(d) {
                same += 1;
                if same > 100_000 {
                    return Err(format!("the stack's timer at {} s keeps firing without progress", secs(d)));
                }
            } else {
                same = 0;
            }
            last = Some(d);
            self.now = self.now.max(d);
            let now = self.instant();
            if let Some(stack) = self.stack.as_mut() {
                stack.handle_timeout(now);
            }
            self.settle();
        }
        if stop(self) {
            return Ok(true);
        }
        self.now = self.now.max(t);
        Ok(false)
    }

    /// A UDP socket's handle, bound to an ephemeral port first if it is not yet (as a
    /// kernel socket is by its first connect or send); the errno if that fails.
    fn udp_bound(&mut self, fd: i32, h: Option<UdpHandle>) -> Result<UdpHandle, SysResult> {
        if let Some(h) = h {
            return Ok(h);
        }
        let any = SocketAddr::new(self.settings.local_ip, 0);
        let h = self.stack(Some(fd)).udp_bind(any).map_err(|e| SysResult::err(bind_errno(e)))?;
        if let Some(f) = self.fds.get_mut(&fd) {
            f.sock = Sock::Udp(Some(h));
        }
        Ok(h)
    }

    fn handle_of(&self, fd: i32) -> Option<&Sock> {
        self.fds.get(&fd).map(|f| &f.sock)
    }

    fn apply_opts(&mut self, h: TcpHandle, o: &Opts) {
        let ka = self.keepalive_of(o);
        let Some(stack) = self.stack.as_mut() else { return };
        let _ = stack.tcp_set_nodelay(h, o.nodelay);
        let _ = stack.tcp_set_keepalive(h, ka);
        let ut = (o.user_timeout_ms > 0).then(|| Duration::from_millis(o.user_timeout_ms as u64));
        let _ = stack.tcp_set_user_timeout(h, ut);
        if let Some(c) = o.congestion {
            let _ = stack.tcp_set_congestion(h, c);
        }
    }

    fn keepalive_of(&self, o: &Opts) -> Option<Keepalive> {
        o.keepalive.then(|| Keepalive {
            idle: Duration::from_secs(o.keep_idle as u64),
            interval: Duration::from_secs(o.keep_intvl as u64),
            probes: o.keep_cnt,
        })
    }

    fn new_opts(&self) -> Opts {
        Opts {
            reuseaddr: false,
            nodelay: false,
            keepalive: false,
            keep_idle: self.default_ka.idle.as_secs() as u32,
            keep_intvl: self.default_ka.interval.as_secs() as u32,
            keep_cnt: self.default_ka.probes,
            user_timeout_ms: 0,
            congestion: None,
            linger0: false,
            rcvbuf: None,
            sndbuf: None,
        }
    }

    fn local(&self) -> SocketAddr {
        SocketAddr::new(self.settings.local_ip, self.settings.bind_port)
    }

    fn remote(&self) -> SocketAddr {
        SocketAddr::new(self.settings.remote_ip, self.settings.connect_port)
    }

    /// Try the blocking call again; record when it returns.
    fn retry_pending(&mut self) {
        let Some(mut p) = self.pending.take() else { return };
        match self.attempt(&mut p) {
            Some(res) => self.done = Some((self.now, res)),
            None => self.pending = Some(p),
        }
    }

    /// One attempt at a (possibly blocking) call: `None` while it would block.
    fn attempt(&mut self, p: &mut Pending) -> Option<SysResult> {
        let fd = p.fd;
        let Some(f) = self.fds.get(&fd) else { return Some(SysResult::err(Errno::EBADF)) };
        let fd_opts = f.opts.clone();
        match (&p.call, &f.sock) {
            (Call::Accept { .. }, Sock::Listener(l)) => {
                let l = *l;
                match self.stack(None).tcp_accept(l) {
                    Ok(h) => {
                        let mut opts = fd_opts;
                        opts.rcvbuf = None;
                        opts.sndbuf = None;
                        self.fds.insert(
                            p.new_fd,
                            Fd {
                                sock: Sock::Tcp(h),
                                nonblock: false,
                                opts: opts.clone(),
                                error_read: false,
                                connect_reported: true,
                            },
                        );
                        self.apply_opts(h, &opts);
                        Some(SysResult::ok(p.new_fd as i64))
                    }
                    Err(AcceptError::WouldBlock) => None,
                    Err(AcceptError::InvalidHandle) => Some(SysResult::err(Errno::EBADF)),
                }
            }
            (Call::Connect { .. }, Sock::Tcp(h)) => {
                let h = *h;
                match self.stack(None).tcp_poll_connect(h) {
                    Ok(true) => {
                        if let Some(f) = self.fds.get_mut(&fd) {
                            f.connect_reported = true;
                        }
                        Some(SysResult::ok(0))
                    }
                    Ok(false) => None,
                    Err(e) => {
                        if let Some(f) = self.fds.get_mut(&fd) {
                            f.error_read = true;
                        }
                        Some(SysResult::err(connect_errno(e)))
                    }
                }
            }
            (Call::Read { len, .. }, Sock::Tcp(h)) => {
                let (h, len) = (*h, *len);
                let mut buf = vec![0u8; len];
                match self.stack(None).tcp_recv(h, &mut buf) {
                    Ok(n) => Some(SysResult::ok(n as i64)),
                    Err(RecvError::WouldBlock) => None,
                    Err(e) => Some(SysResult::err(recv_errno(e))),
                }
            }
            (Call::Read { len, .. }, Sock::Udp(Some(h))) => {
                let (h, len) = (*h, *len);
                let mut buf = vec![0u8; len.max(1)];
                match self.stack(None).udp_recv(h, &mut buf) {
                    Ok(n) => Some(SysResult::ok(n.min(len) as i64)),
                    Err(crate::UdpRecvError::WouldBlock) => None,
                    Err(crate::UdpRecvError::InvalidHandle) => Some(SysResult::err(Errno::EBADF)),
                    Err(crate::UdpRecvError::Icmp(c)) => Some(SysResult::err(conn_errno(c))),
                }
            }
            (Call::Write { len, .. }, Sock::Tcp(h)) => {
                let (h, len) = (*h, *len);
                let zeros = vec![0u8; len - p.written];
                match self.stack(None).tcp_send(h, &zeros) {
                    Ok(n) => {
                        p.written += n;
                        (p.written == len).then(|| SysResult::ok(len as i64))
                    }
                    Err(SendError::WouldBlock) => None,
                    Err(e) if p.written > 0 => {
                        let _ = e;
                        Some(SysResult::ok(p.written as i64))
                    }
                    Err(e) => Some(SysResult::err(send_errno(e))),
                }
            }
            _ => Some(SysResult::err(Errno::EINVAL)),
        }
    }

    fn call(&mut self, call: &Call, expect: &Expect, blocking: bool) -> Result<CallStatus, String> {
        use CallStatus::Done;
        let fd = call.fd();
        if let Some(fd) = fd {
            if !self.fds.contains_key(&fd) {
                return Ok(Done(SysResult::err(Errno::EBADF)));
            }
        }
        let fd = fd.unwrap_or(-1);
        let now = self.instant();
        let nonblock = self.fds.get(&fd).is_some_and(|f| f.nonblock);
        // A call that would block: EAGAIN on a non-blocking socket, pending if the
        // script marked it `...`, else a script error (it would hang).
        let block = |s: &mut CoreTarget, p: Pending, dontwait: bool| -> Result<CallStatus, String> {
            if nonblock || dontwait {
                return Ok(Done(SysResult::err(Errno::EAGAIN)));
            }
            if !blocking {
                return Err(format!(
                    "{}: the call would block on a blocking socket (write it as `...END {}` or set O_NONBLOCK)",
                    call_text(call),
                    call_text(call)
                ));
            }
            s.pending = Some(p);
            Ok(CallStatus::Pending)
        };
        let pending = |call: &Call| Pending { fd, call: call.clone(), new_fd: expect.ret as i32, written: 0 };
        match call {
            Call::Socket { ty, ipv6 } => {
                if ipv6.is_some_and(|v| v != self.settings.ipv6) {
                    return Ok(Done(SysResult::err(Errno::EAFNOSUPPORT)));
                }
                let n = if expect.ret >= 0 {
                    expect.ret as i32
                } else {
                    (3..).find(|n| !self.fds.contains_key(n)).unwrap_or(3)
                };
                if self.fds.contains_key(&n) {
                    return Err(format!("socket: the script already uses fd {n}"));
                }
                let sock = match ty {
                    SockType::Stream => Sock::TcpNew { bound: false },
                    SockType::Dgram => Sock::Udp(None),
                };
                let opts = self.new_opts();
                self.fds.insert(n, Fd { sock, nonblock: false, opts, error_read: false, connect_reported: false });
                Ok(Done(SysResult::ok(n as i64)))
            }
            Call::Bind { .. } => match self.handle_of(fd) {
                Some(Sock::TcpNew { bound: false }) => {
                    if let Some(Fd { sock: Sock::TcpNew { bound }, .. }) = self.fds.get_mut(&fd) {
                        *bound = true;
                    }
                    Ok(Done(SysResult::ok(0)))
                }
                Some(Sock::Udp(None)) => {
                    let local = self.local();
                    match self.stack(Some(fd)).udp_bind(local) {
                        Ok(h) => {
                            if let Some(f) = self.fds.get_mut(&fd) {
                                f.sock = Sock::Udp(Some(h));
                            }
                            Ok(Done(SysResult::ok(0)))
                        }
                        Err(e) => Ok(Done(SysResult::err(bind_errno(e)))),
                    }
                }
                _ => Ok(Done(SysResult::err(Errno::EINVAL))),
            },
            Call::Listen { backlog, .. } => match self.handle_of(fd) {
                Some(Sock::TcpNew { bound }) => {
                    let local = if *bound { self.local() } else { SocketAddr::new(self.settings.local_ip, 0) };
                    let backlog = (*backlog).max(1) as usize;
                    match self.stack(Some(fd)).tcp_listen(local, backlog) {
                        Ok(l) => {
                            if let Some(f) = self.fds.get_mut(&fd) {
                                f.sock = Sock::Listener(l);
                            }
                            Ok(Done(SysResult::ok(0)))
                        }
                        Err(e) => Ok(Done(SysResult::err(bind_errno(e)))),
                    }
                }
                Some(Sock::Listener(_)) => Ok(Done(SysResult::ok(0))),
                _ => Ok(Done(SysResult::err(Errno::EINVAL))),
            },
            Call::Accept { .. } => match self.handle_of(fd) {
                Some(Sock::Listener(_)) => {
                    if expect.ret >= 0 && self.fds.contains_key(&(expect.ret as i32)) {
                        return Err(format!("accept: the script already uses fd {}", expect.ret));
                    }
                    let mut p = pending(call);
                    match self.attempt(&mut p) {
                        Some(r) => Ok(Done(r)),
                        None => block(self, p, false),
                    }
                }
                _ => Ok(Done(SysResult::err(Errno::EINVAL))),
            },
            Call::Connect { .. } => match self.handle_of(fd) {
                Some(Sock::TcpNew { bound }) => {
                    let local = bound.then(|| self.local());
                    let remote = self.remote();
                    let opts = self.fds.get(&fd).map(|f| f.opts.clone()).unwrap_or_else(|| self.new_opts());
                    let h = match self.stack(Some(fd)).tcp_connect(now, remote, local) {
                        Ok(h) => h,
                        Err(e) => return Ok(Done(SysResult::err(connect_errno(e)))),
                    };
                    if let Some(f) = self.fds.get_mut(&fd) {
                        f.sock = Sock::Tcp(h);
                    }
                    self.apply_opts(h, &opts);
                    self.settle();
                    if nonblock {
                        return Ok(Done(SysResult::err(Errno::EINPROGRESS)));
                    }
                    let mut p = pending(call);
                    match self.attempt(&mut p) {
                        Some(r) => Ok(Done(r)),
                        None => block(self, p, false),
                    }
                }
                Some(Sock::Tcp(h)) => {
                    let h = *h;
                    let reported = self.fds.get(&fd).is_some_and(|f| f.connect_reported);
                    let r = match self.stack(None).tcp_poll_connect(h) {
                        Ok(true) if reported => SysResult::err(Errno::EISCONN),
                        Ok(true) => {
                            if let Some(f) = self.fds.get_mut(&fd) {
                                f.connect_reported = true;
                            }
                            SysResult::ok(0)
                        }
                        Ok(false) => SysResult::err(Errno::EALREADY),
                        Err(e) => SysResult::err(connect_errno(e)),
                    };
                    Ok(Done(r))
                }
                Some(Sock::Udp(h)) => {
                    let h = match self.udp_bound(fd, *h) {
                        Ok(h) => h,
                        Err(r) => return Ok(Done(r)),
                    };
                    let remote = self.remote();
                    match self.stack(None).udp_connect(h, remote) {
                        Ok(()) => Ok(Done(SysResult::ok(0))),
                        Err(_) => Ok(Done(SysResult::err(Errno::EINVAL))),
                    }
                }
                _ => Ok(Done(SysResult::err(Errno::EINVAL))),
            },
            Call::Read { len, dontwait, .. } => match self.handle_of(fd) {
                Some(Sock::Tcp(_)) | Some(Sock::Udp(Some(_))) => {
                    if *len == 0 {
                        return Ok(Done(SysResult::ok(0)));
                    }
                    let mut p = pending(call);
                    let r = self.attempt(&mut p);
                    self.settle();
                    match r {
                        Some(r) => Ok(Done(r)),
                        None => block(self, p, *dontwait),
                    }
                }
                Some(Sock::Udp(None)) => block(self, pending(call), *dontwait),
                _ => Ok(Done(SysResult::err(Errno::ENOTCONN))),
            },
            Call::Write { len, dontwait, .. } => match self.handle_of(fd) {
                Some(Sock::Tcp(_)) => {
                    let mut p = pending(call);
                    let r = self.attempt(&mut p);
                    self.settle();
                    match r {
                        Some(r) => Ok(Done(r)),
                        // A non-blocking write takes what fits.
                        None if (nonblock || *dontwait) && p.written > 0 => Ok(Done(SysResult::ok(p.written as i64))),
                        None => block(self, p, *dontwait),
                    }
                }
                Some(Sock::Udp(h)) => {
                    let h = match self.udp_bound(fd, *h) {
                        Ok(h) => h,
                        Err(r) => return Ok(Done(r)),
                    };
                    let remote = self.remote();
                    let zeros = vec![0u8; *len];
                    let r = match self.stack(None).udp_send_to(h, &zeros, remote) {
                        Ok(n) => SysResult::ok(n as i64),
                        Err(UdpSendError::WouldBlock) => SysResult::err(Errno::EAGAIN),
                        Err(UdpSendError::TooLarge { .. }) => SysResult::err(Errno::EMSGSIZE),
                        Err(UdpSendError::NotConnected) => SysResult::err(Errno::EDESTADDRREQ),
                        Err(UdpSendError::Icmp(c)) => SysResult::err(conn_errno(c)),
                        Err(_) => SysResult::err(Errno::EINVAL),
                    };
                    self.settle();
                    Ok(Done(r))
                }
                Some(Sock::TcpNew { .. }) => Ok(Done(SysResult::err(Errno::EPIPE))),
                _ => Ok(Done(SysResult::err(Errno::ENOTCONN))),
            },
            Call::Close { .. } => {
                let Some(f) = self.fds.remove(&fd) else { return Ok(Done(SysResult::err(Errno::EBADF))) };
                if let Some(stack) = self.stack.as_mut() {
                    match f.sock {
                        Sock::Tcp(h) if f.opts.linger0 => {
                            let _ = stack.tcp_abort(h);
                        }
                        Sock::Tcp(h) => {
                            let _ = stack.close(h);
                        }
                        Sock::Listener(l) => {
                            let _ = stack.close(l);
                        }
                        Sock::Udp(Some(u)) => {
                            let _ = stack.close(u);
                        }
                        _ => {}
                    }
                }
                self.settle();
                Ok(Done(SysResult::ok(0)))
            }
            Call::Shutdown { how, .. } => match self.handle_of(fd) {
                Some(Sock::Tcp(h)) => {
                    let h = *h;
                    let how = match how {
                        ShutdownHow::Read => Shutdown::Read,
                        ShutdownHow::Write => Shutdown::Write,
                        ShutdownHow::Both => Shutdown::Both,
                    };
                    let r = match self.stack(None).tcp_shutdown(h, how) {
                        Ok(()) => SysResult::ok(0),
                        Err(ShutdownError::NotConnected) => SysResult::err(Errno::ENOTCONN),
                        Err(ShutdownError::InvalidHandle) => SysResult::err(Errno::EBADF),
                    };
                    self.settle();
                    Ok(Done(r))
                }
                _ => Ok(Done(SysResult::err(Errno::ENOTCONN))),
            },
            Call::SetSockOpt { opt, value, .. } => self.setsockopt(fd, *opt, value),
            Call::GetSockOpt { opt, .. } => Ok(Done(self.getsockopt(fd, *opt))),
            Call::SetFl { nonblock, .. } => {
                if let Some(f) = self.fds.get_mut(&fd) {
                    f.nonblock = *nonblock;
                }
                Ok(Done(SysResult::ok(0)))
            }
            Call::GetFl { .. } => {
                let v = O_RDWR | if nonblock { O_NONBLOCK } else { 0 };
                Ok(Done(SysResult::ok(v)))
            }
        }
    }

    fn setsockopt(&mut self, fd: i32, opt: SockOpt, value: &OptValue) -> Result<CallStatus, String> {
        use CallStatus::Done;
        let int = match value {
            OptValue::Int(v) => Some(*v),
            _ => None,
        };
        let stack_exists = self.stack.is_some();
        let Some(f) = self.fds.get_mut(&fd) else { return Ok(Done(SysResult::err(Errno::EBADF))) };
        let einval = Ok(Done(SysResult::err(Errno::EINVAL)));
        match opt {
            SockOpt::ReuseAddr => f.opts.reuseaddr = int.unwrap_or(0) != 0,
            SockOpt::KeepAlive => f.opts.keepalive = int.unwrap_or(0) != 0,
            SockOpt::TcpNoDelay => f.opts.nodelay = int.unwrap_or(0) != 0,
            SockOpt::TcpKeepIdle | SockOpt::TcpKeepIntvl => {
                let v = int.unwrap_or(0);
                if !(1..=32767).contains(&v) {
                    return einval;
                }
                if opt == SockOpt::TcpKeepIdle {
                    f.opts.keep_idle = v as u32;
                } else {
                    f.opts.keep_intvl = v as u32;
                }
            }
            SockOpt::TcpKeepCnt => {
                let v = int.unwrap_or(0);
                if !(1..=127).contains(&v) {
                    return einval;
                }
                f.opts.keep_cnt = v as u32;
            }
            SockOpt::TcpUserTimeout => {
                let v = int.unwrap_or(-1);
                if !(0..=i32::MAX as i64).contains(&v) {
                    return einval;
                }
                f.opts.user_timeout_ms = v as u32;
            }
            SockOpt::TcpCongestion => {
                let OptValue::Str(name) = value else { return einval };
                f.opts.congestion = Some(match name.as_str() {
                    "reno" | "newreno" => CongestionAlgorithm::NewReno,
                    "cubic" => CongestionAlgorithm::Cubic,
                    "bbr" => CongestionAlgorithm::Bbr,
                    other => return Err(format!("TCP_CONGESTION \"{other}\": the core has reno, cubic and bbr")),
                });
            }
            SockOpt::Linger => {
                let OptValue::Linger { onoff, secs } = value else { return einval };
                if *onoff && *secs != 0 {
                    return Err("SO_LINGER with a non-zero time is not supported by the core (only {onoff=1, linger=0}: abortive close)".into());
                }
                f.opts.linger0 = *onoff;
            }
            SockOpt::RcvBuf | SockOpt::SndBuf => {
                let v = int.unwrap_or(0).max(0) as usize;
                let fresh = matches!(f.sock, Sock::TcpNew { .. } | Sock::Udp(None));
                if stack_exists || !fresh {
                    return Err(format!(
                        "{}: the core's buffer sizes are per stack; set it on the first socket, before listen or connect",
                        opt.name()
                    ));
                }
                // Linux doubles the value for its bookkeeping and uses about half of
                // that for data: the core uses the value.
                let v = v.max(2048);
                if opt == SockOpt::RcvBuf {
                    f.opts.rcvbuf = Some(v);
                } else {
                    f.opts.sndbuf = Some(v);
                }
            }
            SockOpt::Error => return einval,
        }
        let opts = f.opts.clone();
        if let Sock::Tcp(h) = f.sock {
            self.apply_opts(h, &opts);
            self.settle();
        }
        Ok(Done(SysResult::ok(0)))
    }

    fn getsockopt(&mut self, fd: i32, opt: SockOpt) -> SysResult {
        let cfg_rx = self.config().tcp_rx_buffer;
        let cfg_tx = self.config().tcp_tx_buffer;
        let err = self.sock_error(fd);
        let Some(f) = self.fds.get_mut(&fd) else { return SysResult::err(Errno::EBADF) };
        let o = &f.opts;
        let v = match opt {
            SockOpt::ReuseAddr => OptValue::Int(o.reuseaddr as i64),
            SockOpt::KeepAlive => OptValue::Int(o.keepalive as i64),
            SockOpt::TcpNoDelay => OptValue::Int(o.nodelay as i64),
            SockOpt::TcpKeepIdle => OptValue::Int(o.keep_idle as i64),
            SockOpt::TcpKeepIntvl => OptValue::Int(o.keep_intvl as i64),
            SockOpt::TcpKeepCnt => OptValue::Int(o.keep_cnt as i64),
            SockOpt::TcpUserTimeout => OptValue::Int(o.user_timeout_ms as i64),
            SockOpt::TcpCongestion => OptValue::Str(
                match o.congestion.unwrap_or(CongestionAlgorithm::Cubic) {
                    CongestionAlgorithm::NewReno => "reno",
                    CongestionAlgorithm::Cubic => "cubic",
                    CongestionAlgorithm::Bbr => "bbr",
                }
                .into(),
            ),
            SockOpt::Linger => OptValue::Linger { onoff: o.linger0, secs: 0 },
            // As Linux reports it: twice what was set.
            SockOpt::RcvBuf => OptValue::Int(2 * o.rcvbuf.unwrap_or(cfg_rx) as i64),
            SockOpt::SndBuf => OptValue::Int(2 * o.sndbuf.unwrap_or(cfg_tx) as i64),
            SockOpt::Error => {
                let n = if f.error_read { 0 } else { err.map_or(0, |e| e.number()) };
                if n != 0 {
                    f.error_read = true;
                }
                OptValue::Int(n as i64)
            }
        };
        SysResult { ret: Ok(0), value: Some(v) }
    }

    fn sock_error(&mut self, fd: i32) -> Option<Errno> {
        let Some(Sock::Tcp(h)) = self.handle_of(fd) else { return None };
        let h = *h;
        match self.stack.as_mut()?.tcp_poll_connect(h) {
            Err(e) => Some(connect_errno(e)),
            Ok(_) => None,
        }
    }
}

fn call_text(c: &Call) -> &'static str {
    match c {
        Call::Accept { .. } => "accept(...)",
        Call::Connect { .. } => "connect(...)",
        Call::Read { .. } => "read(...)",
        Call::Write { .. } => "write(...)",
        _ => "call(...)",
    }
}

fn conn_errno(e: ConnError) -> Errno {
    match e {
        ConnError::Refused => Errno::ECONNREFUSED,
        ConnError::Reset => Errno::ECONNRESET,
        ConnError::TimedOut => Errno::ETIMEDOUT,
        ConnError::Aborted => Errno::ECONNABORTED,
        ConnError::HostUnreachable => Errno::EHOSTUNREACH,
        ConnError::NetworkUnreachable => Errno::ENETUNREACH,
    }
}

fn connect_errno(e: ConnectError) -> Errno {
    match e {
        ConnectError::Failed(c) => conn_errno(c),
        ConnectError::InvalidRemote(_)
        | ConnectError::BroadcastOrMulticast(_)
        | ConnectError::FamilyMismatch { .. }
        | ConnectError::OtherShard { .. } => Errno::EINVAL,
        ConnectError::NotOwned(_) | ConnectError::NoAddressOfFamily { .. } | ConnectError::NoFreePort { .. } => {
            Errno::EADDRNOTAVAIL
        }
        ConnectError::TupleInUse { .. } => Errno::EADDRINUSE,
        ConnectError::Closed => Errno::ECONNABORTED,
        ConnectError::InvalidHandle => Errno::EBADF,
        // An outbound policy rule: what Linux's connect returns when netfilter drops it.
        ConnectError::Filtered => Errno::EPERM,
        // The stack's socket or memory caps (Linux: EAGAIN when out of ports, ENOBUFS
        // when out of memory).
        ConnectError::ResourceLimit => Errno::ENOBUFS,
    }
}

fn send_errno(e: SendError) -> Errno {
    match e {
        SendError::WouldBlock => Errno::EAGAIN,
        SendError::WriteShutdown | SendError::Closed => Errno::EPIPE,
        SendError::Conn(c) => conn_errno(c),
        SendError::InvalidHandle => Errno::EBADF,
    }
}

fn recv_errno(e: RecvError) -> Errno {
    match e {
        RecvError::WouldBlock => Errno::EAGAIN,
        RecvError::Conn(c) => conn_errno(c),
        RecvError::InvalidHandle => Errno::EBADF,
    }
}

fn bind_errno(e: BindError) -> Errno {
    match e {
        BindError::NoAddressOfFamily { .. } | BindError::NotOwned(_) => Errno::EADDRNOTAVAIL,
        BindError::Privileged { .. } => Errno::EACCES,
        BindError::AddrInUse { .. } | BindError::NoFreePort { .. } => Errno::EADDRINUSE,
        BindError::TooManySockets { .. } => Errno::EMFILE,
    }
}

impl Target for CoreTarget {
    fn name(&self) -> &'static str {
        "core"
    }

    fn now(&mut self) -> u64 {
        self.now
    }

    fn wait_until(&mut self, t: u64) -> Result<(), String> {
        self.run_until(t, &mut |_| false).map(drop)
    }

    fn inject(&mut self, packet: &[u8]) -> Result<(), String> {
        let now = self.instant();
        self.stack(None).input(now, packet);
        self.settle();
        Ok(())
    }

    fn next_packet(&mut self, deadline: u64) -> Result<Option<(u64, Vec<u8>)>, String> {
        if let Some(p) = self.out.pop_front() {
            return Ok(Some(p));
        }
        self.run_until(deadline, &mut |s| !s.out.is_empty())?;
        Ok(self.out.pop_front())
    }

    fn sysctl(&mut self, key: &str, value: &str) -> Result<(), String> {
        let int = || value.trim().parse::<i64>().map_err(|_| format!("sysctl {key}: `{value}` is not a number"));
        let triple = || -> Result<[usize; 3], String> {
            let v: Vec<usize> = value.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            match v.as_slice() {
                [a, b, c] => Ok([*a, *b, *c]),
                _ => Err(format!("sysctl {key}: expected three numbers")),
            }
        };
        let mut cfg = self.cfg.clone();
        let mapped = match key {
            "net.ipv4.tcp_timestamps" => {
                cfg.timestamps = int()? != 0;
                true
            }
            "net.ipv4.tcp_sack" => {
                cfg.sack = int()? != 0;
                true
            }
            "net.ipv4.tcp_window_scaling" => {
                cfg.window_scaling = int()? != 0;
                true
            }
            "net.ipv4.tcp_syn_retries" | "net.ipv4.tcp_synack_retries" => {
                cfg.syn_retries = int()?.clamp(1, 127) as u32;
                true
            }
            "net.ipv4.tcp_retries2" => {
                cfg.max_retries = int()?.clamp(1, 1000) as u32;
                true
            }
            "net.ipv4.tcp_rmem" => {
                cfg.tcp_rx_buffer = triple()?[2].max(2048);
                true
            }
            "net.ipv4.tcp_wmem" => {
                cfg.tcp_tx_buffer = triple()?[2].max(2048);
                true
            }
            "net.ipv4.tcp_congestion_control" => {
                cfg.congestion = match value.trim() {
                    "reno" => CongestionAlgorithm::NewReno,
                    "cubic" => CongestionAlgorithm::Cubic,
                    "bbr" => CongestionAlgorithm::Bbr,
                    other => return Err(format!("sysctl {key}={other}: the core has reno, cubic and bbr")),
                };
                true
            }
            // RACK (bit 0 of tcp_recovery) and the tail loss probe (tcp_early_retrans 3
            // or 4) are one switch in the core: turning either off turns off both.
            "net.ipv4.tcp_recovery" => {
                cfg.rack_tlp = cfg.rack_tlp && int()? & 1 != 0;
                true
            }
            "net.ipv4.tcp_early_retrans" => {
                cfg.rack_tlp = cfg.rack_tlp && int()? >= 3;
                true
            }
            "net.ipv4.tcp_rto_min_us" => {
                cfg.rto_min = Duration::from_micros(int()?.max(1) as u64);
                true
            }
            "net.ipv4.tcp_keepalive_time" => {
                self.default_ka.idle = Duration::from_secs(int()?.max(1) as u64);
                false
            }
            "net.ipv4.tcp_keepalive_intvl" => {
                self.default_ka.interval = Duration::from_secs(int()?.max(1) as u64);
                false
            }
            "net.ipv4.tcp_keepalive_probes" => {
                self.default_ka.probes = int()?.max(1) as u32;
                false
            }
            _ => {
                self.notes.push(format!("sysctl {key}={value}: no equivalent in the core (ignored)"));
                false
            }
        };
        if mapped {
            if self.stack.is_some() {
                return Err(format!(
                    "sysctl {key}: the core's configuration is fixed once the first socket exists; set it at the top of the script"
                ));
            }
            self.cfg = cfg;
        }
        Ok(())
    }

    fn syscall(&mut self, call: &Call, expect: &Expect, blocking: bool) -> Result<CallStatus, String> {
        self.done = None;
        let r = self.call(call, expect, blocking);
        self.settle();
        r
    }

    fn poll_blocking(&mut self) -> Option<(u64, SysResult)> {
        self.done.take()
    }

    fn wait_blocking(&mut self, deadline: u64) -> Result<Option<(u64, SysResult)>, String> {
        if self.done.is_none() && self.pending.is_some() {
            self.run_until(deadline, &mut |s| s.done.is_some())?;
        }
        Ok(self.done.take())
    }

    fn describe(&mut self) -> String {
        let mut s = String::new();
        let now = self.now;
        let Some(stack) = self.stack.as_mut() else { return "no socket has been created".into() };
        let timer = stack.poll_timeout();
        let mut fds: Vec<_> = self.fds.iter().collect();
        fds.sort_by_key(|(n, _)| **n);
        let mut shown = Vec::new();
        for (n, f) in fds {
            match f.sock {
                Sock::Tcp(h) => {
                    shown.push(h.raw());
                    let _ = writeln!(s, "fd {n}: {}", conn_line(stack, h));
                }
                Sock::Listener(l) => {
                    let _ = writeln!(
                        s,
                        "fd {n}: LISTEN {}",
                        stack.local_addr(l).map(|a| a.to_string()).unwrap_or_default()
                    );
                }
                Sock::Udp(Some(u)) => {
                    let _ =
                        writeln!(s, "fd {n}: UDP {}", stack.local_addr(u).map(|a| a.to_string()).unwrap_or_default());
                }
                _ => {
                    let _ = writeln!(s, "fd {n}: not bound or connected yet");
                }
            }
        }
        for info in stack.sockets() {
            if shown.contains(&info.handle) {
                continue;
            }
            if let Some(AnyHandle::Tcp(h)) = stack.resolve(info.handle) {
                let _ = writeln!(s, "no fd ({:?}): {}", info.owner, conn_line(stack, h));
            }
        }
        match timer {
            Some(t) => {
                let _ = writeln!(s, "next timer at {} s (now {} s)", secs(t.total_micros()), secs(now));
            }
            None => {
                let _ = writeln!(s, "no timer pending (now {} s)", secs(now));
            }
        }
        for n in &self.notes {
            let _ = writeln!(s, "{n}");
        }
        s.trim_end().to_string()
    }
}

/// A connection's control block in script terms (sequence numbers relative to each
/// side's ISN).
fn conn_line(stack: &Stack, h: TcpHandle) -> String {
    let Ok(i) = stack.tcp_info(h) else { return "released".into() };
    let rel = |a: crate::seq::SeqNum, b: crate::seq::SeqNum| a.0.wrapping_sub(b.0);
    let peer = stack.peer_addr(h).map(|a| a.to_string()).unwrap_or_default();
    let mut s = format!(
        "{} to {peer}: SND.UNA={} SND.NXT={} SND.WND={} (wscale {}) RCV.NXT={} RCV.WND={} (wscale {}) \
         cwnd={} ssthresh={} mss={} rto={}ms",
        i.state,
        rel(i.snd_una, i.iss),
        rel(i.snd_nxt, i.iss),
        i.snd_wnd,
        i.snd_wscale,
        rel(i.rcv_nxt, i.irs),
        i.rcv_wnd,
        i.rcv_wscale,
        i.cwnd,
        if i.ssthresh >= usize::MAX / 2 { "inf".to_string() } else { i.ssthresh.to_string() },
        i.mss,
        i.rto.as_millis()
    );
    if let Some(srtt) = i.srtt {
        let _ = write!(s, " srtt={}us", srtt.as_micros());
    }
    if i.in_recovery {
        let _ = write!(s, " in-recovery pipe={}", i.pipe);
    }
    if i.sacked > 0 {
        let _ = write!(s, " sacked={}", i.sacked);
    }
    if i.out_of_order > 0 {
        let _ = write!(s, " out-of-order={}", i.out_of_order);
    }
    if i.retransmits > 0 {
        let _ = write!(s, " retransmits={}", i.retransmits);
    }
    let opts: Vec<&str> = [(i.sack, "sack"), (i.timestamps, "ts"), (i.window_scaling, "wscale")]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
    let _ = write!(s, " options=[{}]", opts.join(","));
    s
}

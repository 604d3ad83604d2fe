//! What a parsed script is: settings, then events, each with a time, in the order of
//! the file. Produced by [`super::parse`], consumed by the interpreter ([`super::run`]).

use std::fmt;
use std::net::IpAddr;

/// A whole script.
#[derive(Clone, Debug, PartialEq)]
pub struct Script {
    /// Where it came from (for messages); set by the caller of [`super::parse`].
    pub name: String,
    pub settings: Settings,
    pub events: Vec<Event>,
    /// `// known-failing: TARGET: reason` comments: the targets (`core`, `linux`) on
    /// which this script is expected to fail, with why.
    pub known_failing: Vec<(String, String)>,
}

impl Script {
    /// Why this script is expected to fail on `target` (`"core"` or `"linux"`), if it is.
    pub fn known_failing_on(&self, target: &str) -> Option<&str> {
        self.known_failing.iter().find(|(t, _)| t == target).map(|(_, why)| why.as_str())
    }
}

/// The `--name=value` options at the top of a script (packetdrill's command-line
/// options, which a script may also give).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `--ip_version=ipv4|ipv6` (default ipv4).
    pub ipv6: bool,
    /// `--tolerance_usecs` (default 4000): how far an outbound packet or a blocking
    /// call's return may be from its script time.
    pub tolerance_usecs: u64,
    /// `--tolerance_percent` (default 12.5): the tolerance grows to this share of the
    /// time since the previous event when that is more than `tolerance_usecs`.
    pub tolerance_percent: f64,
    /// `--local_ip` (default 192.168.0.1 / fd3d:fa7b:d17d::1): the system under test.
    pub local_ip: IpAddr,
    /// `--remote_ip` (default 192.0.2.1 / 2001:db8::1): the host the script plays.
    pub remote_ip: IpAddr,
    /// `--bind_port` (default 8080): what `bind(fd, ..., ...)` binds.
    pub bind_port: u16,
    /// `--connect_port` (default 8080): what `connect(fd, ..., ...)` connects to.
    pub connect_port: u16,
    /// `--mtu` (default 1500): the link MTU of the system under test.
    pub mtu: usize,
    /// `--tcp_ts_tick_usecs` (default 0: not checked): check outbound TS val as a clock
    /// of this many microseconds per tick, within the tolerance.
    pub tcp_ts_tick_usecs: u64,
    /// `--tcp_ts_ecr_scaled`: an inbound TS ecr that echoes no earlier outbound TS val
    /// is interpolated instead of being an error.
    pub tcp_ts_ecr_scaled: bool,
    /// `--strict_segments`: an outbound segment must be one packet (no TSO/GSO-style
    /// aggregation of consecutive segments into one script line).
    pub strict_segments: bool,
    /// `--strict_option_layout` (tunstack's addition): compare outbound TCP options in
    /// order and with their NOP/EOL padding, as packetdrill does. By default the
    /// options and their values are compared but not their layout.
    pub strict_option_layout: bool,
    /// `--psh_any` (tunstack's addition): outbound PSH flags are not compared. Where a
    /// stack sets PSH inside a burst (every segment, the last of a write, when the
    /// window stops it) is its choice.
    pub psh_any: bool,
}

pub const DEFAULT_LOCAL_V4: [u8; 4] = [192, 168, 0, 1];
pub const DEFAULT_REMOTE_V4: [u8; 4] = [192, 0, 2, 1];
pub const DEFAULT_LOCAL_V6: [u16; 8] = [0xfd3d, 0xfa7b, 0xd17d, 0, 0, 0, 0, 1];
pub const DEFAULT_REMOTE_V6: [u16; 8] = [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1];

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            ipv6: false,
            tolerance_usecs: 4000,
            tolerance_percent: 12.5,
            local_ip: IpAddr::from(DEFAULT_LOCAL_V4),
            remote_ip: IpAddr::from(DEFAULT_REMOTE_V4),
            bind_port: 8080,
            connect_port: 8080,
            mtu: 1500,
            tcp_ts_tick_usecs: 0,
            tcp_ts_ecr_scaled: false,
            strict_segments: false,
            strict_option_layout: false,
            psh_any: false,
        }
    }
}

/// One line (or several) of the script that happens at one time.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The line of its time.
    pub line: u32,
    pub time: EventTime,
    pub action: Action,
}

/// When an event happens, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventTime {
    /// `1.5`: since the start of the script.
    Absolute(u64),
    /// `+0.1`: after the previous event.
    Relative(u64),
    /// `*`: any time (outbound packets only).
    Any,
    /// `0.1~0.2` (outbound packets only).
    AbsoluteRange(u64, u64),
    /// `+0.1~+0.2` (outbound packets only).
    RelativeRange(u64, u64),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Packet(PacketSpec),
    Syscall(SyscallSpec),
    /// A backquoted command made of `sysctl` assignments: (key, value) pairs.
    Sysctl(Vec<(String, String)>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `<`: the script's host sends it to the system under test.
    Inbound,
    /// `>`: the system under test is expected to send it.
    Outbound,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PacketSpec {
    pub dir: Direction,
    /// `SRC>DST` ports given explicitly.
    pub ports: Option<(u16, u16)>,
    pub kind: PacketKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum PacketKind {
    Tcp(TcpSpec),
    /// `udp (N)`: a datagram of N payload bytes.
    Udp {
        len: u16,
    },
    Icmp(IcmpSpec),
}

/// TCP flag bits as in the header.
pub mod flag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

#[derive(Clone, Debug, PartialEq)]
pub struct TcpSpec {
    /// Header flag bits (see [`flag`]).
    pub flags: u8,
    /// Relative sequence number of the first byte (or of the SYN/FIN).
    pub seq: u32,
    /// Payload bytes.
    pub len: u16,
    /// `ack N`, relative to the other side's ISN.
    pub ack: Option<u32>,
    /// `win N`: the raw window field. Required inbound; outbound, checked when given.
    pub win: Option<u16>,
    /// `urg N`.
    pub urg: u16,
    /// `None` for `<...>` (outbound only: options not checked).
    pub options: Option<Vec<TcpOpt>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpOpt {
    Nop,
    Eol,
    Mss(u16),
    WScale(u8),
    SackOk,
    /// Relative `left:right` blocks.
    Sack(Vec<(u32, u32)>),
    Timestamp {
        val: u32,
        ecr: u32,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct IcmpSpec {
    /// Type name as packetdrill spells it (`unreachable`, `packet_too_big`,
    /// `echo_request`...), resolved to numbers for the address family at run time.
    pub type_name: String,
    pub code_name: Option<String>,
    /// `mtu N` (frag_needed / packet_too_big).
    pub mtu: Option<u32>,
    /// `[seq:end(len)]` or `[udp (N)]`: the quoted packet.
    pub echoed: Option<Echoed>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Echoed {
    Tcp { seq: u32, len: u16 },
    Udp { len: u16 },
}

/// A system call with its expected result.
#[derive(Clone, Debug, PartialEq)]
pub struct SyscallSpec {
    /// `...END`: a blocking call expected to return at END (same time base as the
    /// call's own time).
    pub end: Option<u64>,
    pub call: Call,
    pub expect: Expect,
    /// The call as written (for messages).
    pub text: String,
}

/// The expected return value: `= 0`, `= 4`, `= -1 ECONNREFUSED (Connection refused)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    pub ret: i64,
    pub errno: Option<Errno>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockType {
    Stream,
    Dgram,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownHow {
    Read,
    Write,
    Both,
}

/// The calls of the subset, with their arguments resolved. `fd` is the script's name
/// for a socket (the runner maps it to a live one).
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    Socket {
        ty: SockType,
        ipv6: Option<bool>,
    },
    Bind {
        fd: i32,
    },
    Listen {
        fd: i32,
        backlog: i32,
    },
    Accept {
        fd: i32,
    },
    Connect {
        fd: i32,
    },
    /// `read`, `recv`, `recvfrom` (`dontwait`: MSG_DONTWAIT).
    Read {
        fd: i32,
        len: usize,
        dontwait: bool,
    },
    /// `write`, `send`, `sendto`.
    Write {
        fd: i32,
        len: usize,
        dontwait: bool,
    },
    Close {
        fd: i32,
    },
    Shutdown {
        fd: i32,
        how: ShutdownHow,
    },
    SetSockOpt {
        fd: i32,
        opt: SockOpt,
        value: OptValue,
    },
    /// The value is the expected one.
    GetSockOpt {
        fd: i32,
        opt: SockOpt,
        value: OptValue,
    },
    /// `fcntl(fd, F_SETFL, flags)`: only O_NONBLOCK matters.
    SetFl {
        fd: i32,
        nonblock: bool,
    },
    /// `fcntl(fd, F_GETFL)`: returns the flags.
    GetFl {
        fd: i32,
    },
}

impl Call {
    pub fn fd(&self) -> Option<i32> {
        match *self {
            Call::Socket { .. } => None,
            Call::Bind { fd }
            | Call::Listen { fd, .. }
            | Call::Accept { fd }
            | Call::Connect { fd }
            | Call::Read { fd, .. }
            | Call::Write { fd, .. }
            | Call::Close { fd }
            | Call::Shutdown { fd, .. }
            | Call::SetSockOpt { fd, .. }
            | Call::GetSockOpt { fd, .. }
            | Call::SetFl { fd, .. }
            | Call::GetFl { fd } => Some(fd),
        }
    }
}

/// The socket options of the subset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SockOpt {
    ReuseAddr,
    KeepAlive,
    RcvBuf,
    SndBuf,
    /// Read-only: the pending error, as an errno number.
    Error,
    /// Only `{onoff=1, linger=0}` (abortive close) and `{onoff=0, ...}`.
    Linger,
    TcpNoDelay,
    TcpKeepIdle,
    TcpKeepIntvl,
    TcpKeepCnt,
    /// Milliseconds.
    TcpUserTimeout,
    /// `"reno"` or `"cubic"`.
    TcpCongestion,
}

impl SockOpt {
    pub fn name(self) -> &'static str {
        match self {
            SockOpt::ReuseAddr => "SO_REUSEADDR",
            SockOpt::KeepAlive => "SO_KEEPALIVE",
            SockOpt::RcvBuf => "SO_RCVBUF",
            SockOpt::SndBuf => "SO_SNDBUF",
            SockOpt::Error => "SO_ERROR",
            SockOpt::Linger => "SO_LINGER",
            SockOpt::TcpNoDelay => "TCP_NODELAY",
            SockOpt::TcpKeepIdle => "TCP_KEEPIDLE",
            SockOpt::TcpKeepIntvl => "TCP_KEEPINTVL",
            SockOpt::TcpKeepCnt => "TCP_KEEPCNT",
            SockOpt::TcpUserTimeout => "TCP_USER_TIMEOUT",
            SockOpt::TcpCongestion => "TCP_CONGESTION",
        }
    }

    /// The level it belongs to: true for SOL_TCP / IPPROTO_TCP, false for SOL_SOCKET.
    pub fn is_tcp_level(self) -> bool {
        matches!(
            self,
            SockOpt::TcpNoDelay
                | SockOpt::TcpKeepIdle
                | SockOpt::TcpKeepIntvl
                | SockOpt::TcpKeepCnt
                | SockOpt::TcpUserTimeout
                | SockOpt::TcpCongestion
        )
    }

    pub fn from_name(s: &str) -> Option<SockOpt> {
        Some(match s {
            "SO_REUSEADDR" => SockOpt::ReuseAddr,
            "SO_KEEPALIVE" => SockOpt::KeepAlive,
            "SO_RCVBUF" => SockOpt::RcvBuf,
            "SO_SNDBUF" => SockOpt::SndBuf,
            "SO_ERROR" => SockOpt::Error,
            "SO_LINGER" => SockOpt::Linger,
            "TCP_NODELAY" => SockOpt::TcpNoDelay,
            "TCP_KEEPIDLE" => SockOpt::TcpKeepIdle,
            "TCP_KEEPINTVL" => SockOpt::TcpKeepIntvl,
            "TCP_KEEPCNT" => SockOpt::TcpKeepCnt,
            "TCP_USER_TIMEOUT" => SockOpt::TcpUserTimeout,
            "TCP_CONGESTION" => SockOpt::TcpCongestion,
            _ => return None,
        })
    }
}

/// A socket option's value: `[1]`, `"reno"`, `{onoff=1, linger=0}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptValue {
    Int(i64),
    Str(String),
    Linger { onoff: bool, secs: i64 },
}

impl fmt::Display for OptValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptValue::Int(v) => write!(f, "[{v}]"),
            OptValue::Str(s) => write!(f, "\"{s}\""),
            OptValue::Linger { onoff, secs } => write!(f, "{{onoff={}, linger={secs}}}", *onoff as u8),
        }
    }
}

/// The errno values a call of the subset can fail with, by their Linux names and
/// numbers (x86-64 and arm64 share them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Errno {
    EPERM,
    EBADF,
    EAGAIN,
    EACCES,
    EINVAL,
    EMFILE,
    EPIPE,
    ENOTSOCK,
    EDESTADDRREQ,
    EMSGSIZE,
    ENOPROTOOPT,
    EOPNOTSUPP,
    EAFNOSUPPORT,
    EADDRINUSE,
    EADDRNOTAVAIL,
    ENETUNREACH,
    ECONNABORTED,
    ECONNRESET,
    ENOBUFS,
    EISCONN,
    ENOTCONN,
    ETIMEDOUT,
    ECONNREFUSED,
    EHOSTUNREACH,
    EALREADY,
    EINPROGRESS,
}

const ERRNOS: [(Errno, &str, i32, &str); 26] = [
    (Errno::EPERM, "EPERM", 1, "Operation not permitted"),
    (Errno::EBADF, "EBADF", 9, "Bad file descriptor"),
    (Errno::EAGAIN, "EAGAIN", 11, "Resource temporarily unavailable"),
    (Errno::EACCES, "EACCES", 13, "Permission denied"),
    (Errno::EINVAL, "EINVAL", 22, "Invalid argument"),
    (Errno::EMFILE, "EMFILE", 24, "Too many open files"),
    (Errno::EPIPE, "EPIPE", 32, "Broken pipe"),
    (Errno::ENOTSOCK, "ENOTSOCK", 88, "Socket operation on non-socket"),
    (Errno::EDESTADDRREQ, "EDESTADDRREQ", 89, "Destination address required"),
    (Errno::EMSGSIZE, "EMSGSIZE", 90, "Message too long"),
    (Errno::ENOPROTOOPT, "ENOPROTOOPT", 92, "Protocol not available"),
    (Errno::EOPNOTSUPP, "EOPNOTSUPP", 95, "Operation not supported"),
    (Errno::EAFNOSUPPORT, "EAFNOSUPPORT", 97, "Address family not supported by protocol"),
    (Errno::EADDRINUSE, "EADDRINUSE", 98, "Address already in use"),
    (Errno::EADDRNOTAVAIL, "EADDRNOTAVAIL", 99, "Cannot assign requested address"),
    (Errno::ENETUNREACH, "ENETUNREACH", 101, "Network is unreachable"),
    (Errno::ECONNABORTED, "ECONNABORTED", 103, "Software caused connection abort"),
    (Errno::ECONNRESET, "ECONNRESET", 104, "Connection reset by peer"),
    (Errno::ENOBUFS, "ENOBUFS", 105, "No buffer space available"),
    (Errno::EISCONN, "EISCONN", 106, "Transport endpoint is already connected"),
    (Errno::ENOTCONN, "ENOTCONN", 107, "Transport endpoint is not connected"),
    (Errno::ETIMEDOUT, "ETIMEDOUT", 110, "Connection timed out"),
    (Errno::ECONNREFUSED, "ECONNREFUSED", 111, "Connection refused"),
    (Errno::EHOSTUNREACH, "EHOSTUNREACH", 113, "No route to host"),
    (Errno::EALREADY, "EALREADY", 114, "Operation already in progress"),
    (Errno::EINPROGRESS, "EINPROGRESS", 115, "Operation now in progress"),
];

impl Errno {
    pub fn name(self) -> &'static str {
        ERRNOS.iter().find(|e| e.0 == self).map_or("E?", |e| e.1)
    }

    /// The Linux errno number.
    pub fn number(self) -> i32 {
        ERRNOS.iter().find(|e| e.0 == self).map_or(0, |e| e.2)
    }

    /// strerror(3)'s text, for messages.
    pub fn message(self) -> &'static str {
        ERRNOS.iter().find(|e| e.0 == self).map_or("", |e| e.3)
    }

    /// `EWOULDBLOCK` is `EAGAIN`.
    pub fn from_name(s: &str) -> Option<Errno> {
        if s == "EWOULDBLOCK" {
            return Some(Errno::EAGAIN);
        }
        ERRNOS.iter().find(|e| e.1 == s).map(|e| e.0)
    }

    pub fn from_number(n: i32) -> Option<Errno> {
        ERRNOS.iter().find(|e| e.2 == n).map(|e| e.0)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.message())
    }
}

/// A system call's outcome: its return value or errno, and for `getsockopt` the value
/// it wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysResult {
    pub ret: Result<i64, Errno>,
    pub value: Option<OptValue>,
}

impl SysResult {
    pub fn ok(v: i64) -> SysResult {
        SysResult { ret: Ok(v), value: None }
    }
    pub fn err(e: Errno) -> SysResult {
        SysResult { ret: Err(e), value: None }
    }
}

impl fmt::Display for SysResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ret {
            Ok(v) => write!(f, "{v}")?,
            Err(e) => write!(f, "-1 {e}")?,
        }
        if let Some(v) = &self.value {
            write!(f, " with value {v}")?;
        }
        Ok(())
    }
}

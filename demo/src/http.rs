//! A small HTTP/1.1 server (RFC 9110 semantics, RFC 9112 message syntax) that shows the
//! stack's own state: a home page, the socket table (`/sockets`, `/sockets.json`) and
//! the counters (`/stats.json`).
//!
//! Request parsing is done by `httparse`. The protocol logic is the I/O-free [`Session`]:
//! bytes in, response bytes out, plus whether to close. [`HttpServer`] only moves bytes
//! between a [`TcpStream`] and a `Session`, so everything here is unit-tested without a
//! device.
//!
//! What is supported: GET and HEAD (405 with `Allow` otherwise), persistent connections
//! (RFC 9112 9.3: HTTP/1.1 keeps the connection unless `Connection: close`, HTTP/1.0
//! closes unless `Connection: keep-alive`), pipelined requests and requests split across
//! reads, request bodies with Content-Length (read and discarded). Every response has a
//! Content-Length. Transfer-Encoding in requests is answered with 501.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use tunstack::net::{TcpListener, TcpStream};
use tunstack::runtime::RuntimeHandle;
use tunstack::wire::DropReason;
use tunstack::{Owner, SocketInfo, Stats, TcpReject};

use crate::server::{accept_loop, spawn_named};

/// Largest request head (request line + header fields) we buffer; beyond it: 431.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most header fields in one request; beyond it: 431.
pub const MAX_HEADERS: usize = 32;
/// Largest request body we are willing to read and discard; beyond it: 413.
pub const MAX_BODY: u64 = 1024 * 1024;
/// An idle persistent connection is closed after this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the pages get the stack's state from: the runtime, or a fixed snapshot in tests.
pub trait Source {
    fn sockets(&self) -> Vec<SocketInfo>;
    fn stats(&self) -> Stats;
}

impl Source for RuntimeHandle {
    fn sockets(&self) -> Vec<SocketInfo> {
        RuntimeHandle::sockets(self)
    }
    fn stats(&self) -> Stats {
        RuntimeHandle::stats(self)
    }
}

/// A fixed view of the stack, for tests and for rendering pages offline.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub sockets: Vec<SocketInfo>,
    pub stats: Stats,
}

impl Source for Snapshot {
    fn sockets(&self) -> Vec<SocketInfo> {
        self.sockets.clone()
    }
    fn stats(&self) -> Stats {
        self.stats.clone()
    }
}

/// Answer the requests contained in `request` as one connection would (pipelined
/// requests give several responses; an incomplete request gives none).
pub fn respond(request: &[u8], src: &dyn Source) -> Vec<u8> {
    Session::new().receive(request, src).bytes
}

// ------------------------------------------------------------------------ session

/// What a [`Session`] wants sent after some input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Responses to write, in order.
    pub bytes: Vec<u8>,
    /// Close the connection after writing `bytes`.
    pub close: bool,
}

/// The state of one HTTP connection, free of I/O.
#[derive(Debug, Default)]
pub struct Session {
    /// Received bytes of the request head(s) not yet answered; never above MAX_HEAD.
    buf: Vec<u8>,
    /// Request body bytes still to be skipped.
    discard: u64,
    closed: bool,
}

/// Status codes we send, with their RFC 9110 reason phrases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    ContentTooLarge,
    HeaderFieldsTooLarge,
    NotImplemented,
    VersionNotSupported,
}

impl Status {
    fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::ContentTooLarge => 413,
            Status::HeaderFieldsTooLarge => 431,
            Status::NotImplemented => 501,
            Status::VersionNotSupported => 505,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::ContentTooLarge => "Content Too Large",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::NotImplemented => "Not Implemented",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }
}

/// The parts of a request we act on, copied out of the parse buffer.
#[derive(Debug)]
struct Request {
    method: String,
    target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    minor: u8,
    /// The client asked for (or its version implies) closing after this response.
    close: bool,
    body_len: u64,
}

enum Parsed {
    Partial,
    Complete { head_len: usize, req: Request },
    Bad(Status),
}

impl Session {
    pub fn new() -> Session {
        Session::default()
    }

    /// True once a response said `Connection: close`; later input is ignored.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Take received bytes; answer every request they complete.
    pub fn receive(&mut self, mut data: &[u8], src: &dyn Source) -> Output {
        let mut out = Output::default();
        while !self.closed && !data.is_empty() {
            if self.discard > 0 {
                let n = self.discard.min(data.len() as u64) as usize;
                data = &data[n..];
                self.discard -= n as u64;
                continue;
            }
            // Never hold more than MAX_HEAD bytes: take what fits, answer what is
            // complete, and only then take more.
            let n = (MAX_HEAD - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            self.process(src, &mut out);
            if !self.closed && self.buf.len() >= MAX_HEAD {
                // A full buffer that still holds no complete head.
                self.fail(Status::HeaderFieldsTooLarge, &mut out);
            }
        }
        out.close = self.closed;
        out
    }

    /// Answer the complete requests at the front of `buf`.
    fn process(&mut self, src: &dyn Source, out: &mut Output) {
        while !self.closed && self.discard == 0 {
            // RFC 9112 2.2: ignore empty lines received before a request-line.
            let blank = self.buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
            self.buf.drain(..blank);
            if self.buf.is_empty() {
                return;
            }
            match parse(&self.buf) {
                Parsed::Partial => return,
                Parsed::Bad(status) => {
                    self.fail(status, out);
                    return;
                }
                Parsed::Complete { head_len, req } => {
                    self.buf.drain(..head_len);
                    let in_buf = req.body_len.min(self.buf.len() as u64) as usize;
                    self.buf.drain(..in_buf);
                    self.discard = req.body_len - in_buf as u64;
                    tracing::debug!(method = %req.method, target = %req.target, minor = req.minor, "request");
                    answer(&req, src, &mut out.bytes);
                    if req.close {
                        self.closed = true;
                    }
                }
            }
        }
    }

    /// Send an error response and close: after a framing error we cannot find the
    /// next request (RFC 9112 9.6 / 9110 15.5).
    fn fail(&mut self, status: Status, out: &mut Output) {
        tracing::debug!(code = status.code(), "bad request, closing");
        let body = format!("{} {}\n", status.code(), status.reason());
        write_response(&mut out.bytes, status, "text/plain; charset=utf-8", body.as_bytes(), false, Conn::Close, &[]);
        self.buf.clear();
        self.discard = 0;
        self.closed = true;
    }
}

/// Parse one request head at the start of `buf`.
fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Bad(Status::HeaderFieldsTooLarge),
        Err(httparse::Error::Version) => return Parsed::Bad(version_error(buf)),
        Err(_) => return Parsed::Bad(Status::BadRequest),
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Parsed::Bad(Status::BadRequest);
    };
    let mut close_token = false;
    let mut keep_alive_token = false;
    let mut host_fields = 0;
    let mut body_len: Option<u64> = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("connection") {
            // RFC 9110 7.6.1: a comma-separated list of case-insensitive options.
            for token in String::from_utf8_lossy(h.value).split(',') {
                let token = token.trim();
                close_token |= token.eq_ignore_ascii_case("close");
                keep_alive_token |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if name.eq_ignore_ascii_case("host") {
            host_fields += 1;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // RFC 9112 6.1: a transfer coding we do not implement.
            return Parsed::Bad(Status::NotImplemented);
        } else if name.eq_ignore_ascii_case("content-length") {
            // RFC 9112 6.3 (5): an invalid or conflicting Content-Length is a framing
            // error. RFC 9110 8.6 allows a list of identical values.
            let Ok(value) = std::str::from_utf8(h.value) else {
                return Parsed::Bad(Status::BadRequest);
            };
            for item in value.split(',') {
                let item = item.trim();
                if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
                    return Parsed::Bad(Status::BadRequest);
                }
                let Ok(n) = item.parse::<u64>() else {
                    return Parsed::Bad(Status::ContentTooLarge);
                };
                match body_len {
                    Some(prev) if prev != n => return Parsed::Bad(Status::BadRequest),
                    _ => body_len = Some(n),
                }
            }
        }
    }
    // RFC 9112 3.2: an HTTP/1.1 request without exactly one Host field gets a 400.
    if (minor >= 1 && host_fields != 1) || host_fields > 1 {
        return Parsed::Bad(Status::BadRequest);
    }
    let body_len = body_len.unwrap_or(0);
    if body_len > MAX_BODY {
        return Parsed::Bad(Status::ContentTooLarge);
    }
    // RFC 9112 9.3: persistence is the default in 1.1; 1.0 needs "keep-alive".
    let close = if minor >= 1 { close_token } else { close_token || !keep_alive_token };
    Parsed::Complete {
        head_len,
        req: Request { method: method.to_string(), target: target.to_string(), minor, close, body_len },
    }
}

/// httparse only knows HTTP/1.0 and 1.1. A well-formed `HTTP/d.d` it rejects is a
/// version we do not support (505, RFC 9110 15.6.6); anything else is malformed (400).
fn version_error(buf: &[u8]) -> Status {
    let line_end = buf.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(buf.len());
    let line = &buf[..line_end];
    let token = line.rsplit(|&b| b == b' ').next().unwrap_or(&[]);
    match token {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit() => {
            Status::VersionNotSupported
        }
        _ => Status::BadRequest,
    }
}

/// The path of an origin-form (`/a?b`) or absolute-form (`http://host/a`) target
/// (RFC 9112 3.2.1, 3.2.2), without the query.
fn path_of(target: &str) -> Option<&str> {
    let path = if target.starts_with('/') {
        target
    } else {
        let scheme = target.get(..7)?;
        if !scheme.eq_ignore_ascii_case("http://") {
            return None;
        }
        let rest = &target[7..];
        match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        }
    };
    path.split('?').next()
}

/// How the response's Connection field reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Conn {
    /// HTTP/1.1 persistent: no field needed.
    Default,
    /// HTTP/1.0 client that asked for keep-alive: confirm it.
    KeepAlive,
    Close,
}

/// Route one well-formed request and append its response.
fn answer(req: &Request, src: &dyn Source, out: &mut Vec<u8>) {
    let conn = if req.close {
        Conn::Close
    } else if req.minor == 0 {
        Conn::KeepAlive
    } else {
        Conn::Default
    };
    let head_only = match req.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => {
            // RFC 9110 15.5.6: a 405 carries the methods the resource supports.
            let body = b"405 Method Not Allowed: only GET and HEAD\n";
            let allow = [("Allow", "GET, HEAD")];
            write_response(out, Status::MethodNotAllowed, "text/plain; charset=utf-8", body, false, conn, &allow);
            return;
        }
    };
    let Some(path) = path_of(&req.target) else {
        let body = b"400 Bad Request: unsupported request target\n";
        write_response(out, Status::BadRequest, "text/plain; charset=utf-8", body, head_only, conn, &[]);
        return;
    };
    const HTML: &str = "text/html; charset=utf-8";
    const JSON: &str = "application/json";
    let (status, ctype, body) = match path {
        "/" => (Status::Ok, HTML, home_page(&src.stats())),
        "/sockets" => (Status::Ok, HTML, sockets_html(&src.sockets())),
        "/sockets.json" => (Status::Ok, JSON, sockets_json(&src.sockets())),
        "/stats.json" => (Status::Ok, JSON, stats_json(&src.stats())),
        _ => (Status::NotFound, "text/plain; charset=utf-8", format!("404 Not Found: {path}\n")),
    };
    write_response(out, status, ctype, body.as_bytes(), head_only, conn, &[]);
}

/// Append a response with a Content-Length; HEAD (`head_only`) gets the same fields
/// without the body (RFC 9110 9.3.2).
fn write_response(
    out: &mut Vec<u8>,
    status: Status,
    content_type: &str,
    body: &[u8],
    head_only: bool,
    conn: Conn,
    extra: &[(&str, &str)],
) {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nServer: tunstack-demo\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n",
        status.code(),
        status.reason(),
        content_type,
        body.len()
    );
    for (name, value) in extra {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    match conn {
        Conn::Default => {}
        Conn::KeepAlive => head.push_str("Connection: keep-alive\r\n"),
        Conn::Close => head.push_str("Connection: close\r\n"),
    }
    head.push_str("\r\n");
    out.extend_from_slice(head.as_bytes());
    if !head_only {
        out.extend_from_slice(body);
    }
}

// ------------------------------------------------------------------------ pages

fn home_page(stats: &Stats) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>tunstack</title></head>\n<body>\n\
         <h1>tunstack</h1>\n\
         <p>This page was served by <b>tunstack</b>, a TCP/UDP/IP stack written in Rust that runs \
         in user space. It reads and writes raw IP packets on a Linux TUN device; the TCP \
         connection that carried this page is tunstack's own, not the kernel's.</p>\n\
         <ul>\n\
         <li><a href=\"/sockets\">/sockets</a>: the stack's socket table, like <code>netstat</code></li>\n\
         <li><a href=\"/sockets.json\">/sockets.json</a>: the same table as JSON</li>\n\
         <li><a href=\"/stats.json\">/stats.json</a>: packet counters and drops by reason, as JSON</li>\n\
         </ul>\n\
         <p>Packets so far: {} received, {} sent, {} dropped.</p>\n\
         </body>\n</html>\n",
        stats.rx_packets,
        stats.tx_packets,
        stats.total_drops()
    )
}

fn owner_text(owner: Owner) -> String {
    match owner {
        Owner::App => "app".into(),
        Owner::Listener(h) => format!("listener #{}", h.index()),
        Owner::Orphan => "orphan".into(),
    }
}

/// The socket table as an HTML page.
pub fn sockets_html(sockets: &[SocketInfo]) -> String {
    let mut s = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>tunstack sockets</title></head>\n<body>\n\
         <h1>Sockets</h1>\n<p><a href=\"/\">home</a> | <a href=\"/sockets.json\">JSON</a></p>\n\
         <table border=\"1\">\n<tr><th>Handle</th><th>Proto</th><th>Local</th><th>Remote</th><th>State</th>\
         <th>Recv-Q</th><th>Send-Q</th><th>Owner</th></tr>\n",
    );
    for info in sockets {
        let remote = info.remote.map_or_else(|| "*".to_string(), |r| r.to_string());
        let _ = writeln!(
            s,
            "<tr><td>#{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            info.handle.index(),
            html_escape(info.protocol.as_str()),
            html_escape(&info.local.to_string()),
            html_escape(&remote),
            html_escape(info.state),
            info.recv_queue,
            info.send_queue,
            html_escape(&owner_text(info.owner)),
        );
    }
    let _ = write!(s, "</table>\n<p>{} sockets.</p>\n</body>\n</html>\n", sockets.len());
    s
}

/// The socket table as a JSON array of objects.
pub fn sockets_json(sockets: &[SocketInfo]) -> String {
    let mut s = String::from("[");
    for (i, info) in sockets.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "\n  {{\"handle\":{},\"protocol\":", info.handle.index());
        json_string(&mut s, info.protocol.as_str());
        s.push_str(",\"local\":");
        json_string(&mut s, &info.local.to_string());
        s.push_str(",\"remote\":");
        match info.remote {
            Some(r) => json_string(&mut s, &r.to_string()),
            None => s.push_str("null"),
        }
        s.push_str(",\"state\":");
        json_string(&mut s, info.state);
        let _ = write!(s, ",\"recv_queue\":{},\"send_queue\":{},\"owner\":", info.recv_queue, info.send_queue);
        let (owner, listener) = match info.owner {
            Owner::App => ("app", None),
            Owner::Listener(h) => ("listener", Some(h.index())),
            Owner::Orphan => ("orphan", None),
        };
        json_string(&mut s, owner);
        match listener {
            Some(idx) => {
                let _ = write!(s, ",\"owner_handle\":{idx}}}");
            }
            None => s.push_str(",\"owner_handle\":null}"),
        }
    }
    if !sockets.is_empty() {
        s.push('\n');
    }
    s.push_str("]\n");
    s
}

/// The counters as a JSON object; `drops` maps each `DropReason` name to its count.
pub fn stats_json(stats: &Stats) -> String {
    // Destructured without `..` on purpose: a counter added to Stats must be added
    // here too, or this stops compiling.
    let Stats {
        rx_packets,
        rx_bytes,
        tx_packets,
        tx_bytes,
        drops,
        tcp_active_opens,
        tcp_passive_opens,
        tcp_resets_sent,
        tcp_retransmits,
        icmp_echo_replies,
        icmp_unreachable_sent,
        icmp_errors_rate_limited,
        ctrl_dropped,
        tcp_rejects,
    } = stats;
    let fields: [(&str, u64); 12] = [
        ("rx_packets", *rx_packets),
        ("rx_bytes", *rx_bytes),
        ("tx_packets", *tx_packets),
        ("tx_bytes", *tx_bytes),
        ("tcp_active_opens", *tcp_active_opens),
        ("tcp_passive_opens", *tcp_passive_opens),
        ("tcp_resets_sent", *tcp_resets_sent),
        ("tcp_retransmits", *tcp_retransmits),
        ("icmp_echo_replies", *icmp_echo_replies),
        ("icmp_unreachable_sent", *icmp_unreachable_sent),
        ("icmp_errors_rate_limited", *icmp_errors_rate_limited),
        ("ctrl_dropped", *ctrl_dropped),
    ];
    let mut s = String::from("{\n");
    for (name, value) in fields {
        s.push_str("  ");
        json_string(&mut s, name);
        let _ = writeln!(s, ": {value},");
    }
    let _ = writeln!(s, "  \"total_drops\": {},", stats.total_drops());
    s.push_str("  \"drops\": {");
    for (i, reason) in DropReason::ALL.iter().enumerate() {
        s.push_str(if i == 0 { "\n    " } else { ",\n    " });
        json_string(&mut s, reason.as_str());
        let _ = write!(s, ": {}", drops[*reason as usize]);
    }
    s.push_str("\n  },\n  \"tcp_rejects\": {");
    for (i, reason) in TcpReject::ALL.iter().enumerate() {
        s.push_str(if i == 0 { "\n    " } else { ",\n    " });
        json_string(&mut s, reason.as_str());
        let _ = write!(s, ": {}", tcp_rejects[*reason as usize]);
    }
    s.push_str("\n  }\n}\n");
    s
}

/// Append `value` as a JSON string literal (RFC 8259 7).
pub fn json_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Escape text for HTML element content and attribute values.
pub fn html_escape(value: &str) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            '\'' => s.push_str("&#39;"),
            c => s.push(c),
        }
    }
    s
}

// ------------------------------------------------------------------------ server

/// A running HTTP server. Its threads run until the runtime goes away; dropping this
/// value does not stop them.
#[derive(Debug)]
pub struct HttpServer {
    addrs: Vec<SocketAddr>,
}

impl HttpServer {
    /// Listen on `port` of every address in `addrs` and start serving.
    pub fn start(rt: &RuntimeHandle, addrs: &[IpAddr], port: u16) -> io::Result<HttpServer> {
        if addrs.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on"));
        }
        let mut listeners = Vec::new();
        for &ip in addrs {
            let addr = SocketAddr::new(ip, port);
            let listener = TcpListener::bind(rt, addr)
                .map_err(|e| io::Error::new(e.kind(), format!("binding TCP {addr}: {e}")))?;
            listeners.push(listener);
        }
        let active = Arc::new(AtomicUsize::new(0));
        let mut bound = Vec::new();
        for listener in listeners {
            let local = listener.local_addr()?;
            bound.push(local);
            let src = rt.clone();
            let active = active.clone();
            spawn_named(format!("http-{local}"), move || {
                accept_loop("http", listener, active, move |stream, peer| serve_connection(stream, peer, &src))
            })?;
        }
        tracing::info!(addrs = ?bound, "http server listening");
        Ok(HttpServer { addrs: bound })
    }

    /// Addresses the listeners are bound to.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

/// Read requests and write responses until either side closes.
fn serve_connection(mut stream: TcpStream, peer: SocketAddr, src: &dyn Source) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let mut session = Session::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "http read ended");
                return;
            }
        };
        let out = session.receive(&chunk[..n], src);
        if let Err(e) = stream.write_all(&out.bytes) {
            tracing::debug!(%peer, error = %e, "http write failed");
            return;
        }
        if out.close {
            linger_close(&mut stream);
            return;
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
}

/// Close after a last response: send our FIN, then read and discard for a short while so
/// that unread client data does not turn the close into a reset that could destroy the
/// response in flight (RFC 9112 9.6).
fn linger_close(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut sink = [0u8; 4096];
    let mut left: usize = 256 * 1024;
    while left > 0 {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

// ------------------------------------------------------------------------ tests

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tunstack::{Protocol, SocketHandle};

    /// One parsed response.
    #[derive(Debug)]
    struct Resp {
        code: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Resp {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }
        fn text(&self) -> String {
            String::from_utf8(self.body.clone()).unwrap()
        }
    }

    /// Split `bytes` into responses; `head_only[i]` says response i answers a HEAD.
    fn parse_responses(mut bytes: &[u8], head_only: &[bool]) -> Vec<Resp> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut r = httparse::Response::new(&mut headers);
            let n = match r.parse(bytes).expect("well-formed response") {
                httparse::Status::Complete(n) => n,
                httparse::Status::Partial => panic!("truncated response: {:?}", String::from_utf8_lossy(bytes)),
            };
            assert_eq!(r.version, Some(1));
            let headers: Vec<(String, String)> =
                r.headers.iter().map(|h| (h.name.to_string(), String::from_utf8(h.value.to_vec()).unwrap())).collect();
            let code = r.code.unwrap();
            let len: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .expect("every response has a Content-Length")
                .1
                .parse()
                .unwrap();
            let body_len = if head_only.get(out.len()).copied().unwrap_or(false) { 0 } else { len };
            assert!(bytes.len() >= n + body_len, "body shorter than Content-Length");
            let body = bytes[n..n + body_len].to_vec();
            bytes = &bytes[n + body_len..];
            out.push(Resp { code, headers, body });
        }
        out
    }

    fn snapshot() -> Snapshot {
        let local: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let mut stats = Stats { rx_packets: 42, tx_packets: 40, ..Stats::default() };
        stats.drops[DropReason::BadTcpChecksum as usize] = 3;
        stats.drops[DropReason::Truncated as usize] = 5;
        Snapshot {
            sockets: vec![
                SocketInfo {
                    handle: SocketHandle::from_raw(0, 1),
                    protocol: Protocol::Tcp,
                    local,
                    remote: None,
                    state: "LISTEN",
                    recv_queue: 0,
                    send_queue: 0,
                    owner: Owner::App,
                },
                SocketInfo {
                    handle: SocketHandle::from_raw(1, 1),
                    protocol: Protocol::Tcp,
                    local,
                    remote: Some("10.0.0.1:40000".parse().unwrap()),
                    state: "ESTABLISHED",
                    recv_queue: 7,
                    send_queue: 1200,
                    owner: Owner::Listener(SocketHandle::from_raw(0, 1)),
                },
                SocketInfo {
                    handle: SocketHandle::from_raw(2, 3),
                    protocol: Protocol::Udp,
                    local: "[fd00::2]:7".parse().unwrap(),
                    remote: None,
                    state: "BOUND",
                    recv_queue: 0,
                    send_queue: 0,
                    owner: Owner::Orphan,
                },
            ],
            stats,
        }
    }

    fn get(path: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\nHost: 10.0.0.2\r\nUser-Agent: test\r\n\r\n").into_bytes()
    }

    fn one(request: &[u8]) -> Resp {
        let mut rs = parse_responses(&respond(request, &snapshot()), &[]);
        assert_eq!(rs.len(), 1, "expected exactly one response");
        rs.pop().unwrap()
    }

    #[test]
    fn home_page_links_the_other_pages() {
        let r = one(&get("/"));
        assert_eq!(r.code, 200);
        assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
        let body = r.text();
        assert!(body.contains("tunstack"));
        for link in ["href=\"/sockets\"", "href=\"/sockets.json\"", "href=\"/stats.json\""] {
            assert!(body.contains(link), "missing {link}");
        }
        assert!(body.contains("42 received, 40 sent, 8 dropped"), "{body}");
        assert_eq!(r.header("Connection"), None, "HTTP/1.1 persistent by default");
    }

    #[test]
    fn head_sends_the_get_headers_without_body() {
        let get_r = one(&get("/sockets.json"));
        let bytes = respond(b"HEAD /sockets.json HTTP/1.1\r\nHost: x\r\n\r\n", &snapshot());
        let head = parse_responses(&bytes, &[true]);
        assert_eq!(head.len(), 1);
        assert_eq!(head[0].code, 200);
        assert!(head[0].body.is_empty());
        assert_eq!(head[0].header("Content-Length"), get_r.header("Content-Length"));
        assert_eq!(get_r.header("Content-Length").unwrap(), get_r.body.len().to_string());
        // Nothing follows the header block.
        assert!(bytes.ends_with(b"\r\n\r\n"));
    }

    #[test]
    fn sockets_json_lists_every_socket() {
        let r = one(&get("/sockets.json"));
        assert_eq!(r.code, 200);
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        let expected = "[\n  \
            {\"handle\":0,\"protocol\":\"tcp\",\"local\":\"10.0.0.2:80\",\"remote\":null,\"state\":\"LISTEN\",\
            \"recv_queue\":0,\"send_queue\":0,\"owner\":\"app\",\"owner_handle\":null},\n  \
            {\"handle\":1,\"protocol\":\"tcp\",\"local\":\"10.0.0.2:80\",\"remote\":\"10.0.0.1:40000\",\
            \"state\":\"ESTABLISHED\",\"recv_queue\":7,\"send_queue\":1200,\"owner\":\"listener\",\"owner_handle\":0},\n  \
            {\"handle\":2,\"protocol\":\"udp\",\"local\":\"[fd00::2]:7\",\"remote\":null,\"state\":\"BOUND\",\
            \"recv_queue\":0,\"send_queue\":0,\"owner\":\"orphan\",\"owner_handle\":null}\n]\n";
        assert_eq!(r.text(), expected);
        assert_eq!(sockets_json(&[]), "[]\n");
    }

    #[test]
    fn sockets_html_has_a_row_per_socket() {
        let r = one(&get("/sockets"));
        assert_eq!(r.code, 200);
        let body = r.text();
        assert_eq!(body.matches("<tr><td>").count(), 3);
        assert!(body.contains(
            "<tr><td>#1</td><td>tcp</td><td>10.0.0.2:80</td><td>10.0.0.1:40000</td><td>ESTABLISHED</td>\
             <td>7</td><td>1200</td><td>listener #0</td></tr>"
        ));
        assert!(body.contains("<td>[fd00::2]:7</td><td>*</td><td>BOUND</td>"));
    }

    #[test]
    fn stats_json_names_every_drop_reason() {
        let r = one(&get("/stats.json?x=1"));
        assert_eq!(r.code, 200);
        let body = r.text();
        assert!(body.contains("\"rx_packets\": 42,"));
        assert!(body.contains("\"tx_packets\": 40,"));
        assert!(body.contains("\"total_drops\": 8,"));
        assert!(body.contains("\"bad_tcp_checksum\": 3"));
        assert!(body.contains("\"truncated\": 5"));
        for reason in DropReason::ALL {
            assert!(body.contains(&format!("\"{}\": ", reason.as_str())), "missing {}", reason.as_str());
        }
        // Balanced and ends where it should.
        assert_eq!(body.matches('{').count(), body.matches('}').count());
        assert!(body.trim_end().ends_with('}'));
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        json_string(&mut s, "a\"b\\c\nd\te\u{1}f\u{1f}é");
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\te\\u0001f\\u001fé\"");
        assert_eq!(html_escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn unknown_path_is_404_and_keeps_the_connection() {
        let mut s = Session::new();
        let out = s.receive(&get("/nope"), &snapshot());
        assert!(!out.close);
        let r = &parse_responses(&out.bytes, &[])[0];
        assert_eq!(r.code, 404);
        let out = s.receive(&get("/"), &snapshot());
        assert_eq!(parse_responses(&out.bytes, &[])[0].code, 200);
    }

    #[test]
    fn other_methods_get_405_with_allow() {
        for method in ["POST", "PUT", "DELETE", "OPTIONS", "BREW"] {
            let req = format!("{method} / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
            let r = one(req.as_bytes());
            assert_eq!(r.code, 405, "{method}");
            assert_eq!(r.header("Allow"), Some("GET, HEAD"));
        }
    }

    #[test]
    fn request_body_is_skipped_then_the_next_request_served() {
        // A POST body split across reads, then a pipelined GET.
        let mut s = Session::new();
        let mut bytes = s.receive(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123", &snapshot()).bytes;
        bytes.extend(s.receive(b"456789GET /stats.json HTTP/1.1\r\nHost: x\r\n\r\n", &snapshot()).bytes);
        let rs = parse_responses(&bytes, &[]);
        assert_eq!(rs.iter().map(|r| r.code).collect::<Vec<_>>(), vec![405, 200]);
        assert!(rs[1].text().contains("rx_packets"));
    }

    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let mut req = get("/");
        req.extend(b"HEAD /sockets HTTP/1.1\r\nHost: x\r\n\r\n");
        req.extend(get("/missing"));
        req.extend(get("/sockets.json"));
        let mut s = Session::new();
        let out = s.receive(&req, &snapshot());
        assert!(!out.close);
        let rs = parse_responses(&out.bytes, &[false, true, false, false]);
        assert_eq!(rs.iter().map(|r| r.code).collect::<Vec<_>>(), vec![200, 200, 404, 200]);
        assert!(rs[3].text().starts_with('['));
    }

    #[test]
    fn requests_split_byte_by_byte_are_reassembled() {
        let mut req = get("/stats.json");
        req.extend(get("/"));
        let mut s = Session::new();
        let mut bytes = Vec::new();
        let mut answered_after = Vec::new();
        for (i, b) in req.iter().enumerate() {
            let out = s.receive(std::slice::from_ref(b), &snapshot());
            if !out.bytes.is_empty() {
                answered_after.push(i + 1);
            }
            bytes.extend(out.bytes);
        }
        // Exactly when each request's final byte arrived.
        assert_eq!(answered_after, vec![get("/stats.json").len(), req.len()]);
        let rs = parse_responses(&bytes, &[]);
        assert_eq!(rs.len(), 2);
        assert!(rs[0].text().contains("drops"));
    }

    #[test]
    fn connection_close_is_honoured() {
        let mut s = Session::new();
        let mut req = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n".to_vec();
        req.extend(get("/sockets")); // after close: ignored
        let out = s.receive(&req, &snapshot());
        assert!(out.close);
        assert!(s.is_closed());
        let rs = parse_responses(&out.bytes, &[]);
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0].header("Connection"), Some("close"));
        assert!(s.receive(&get("/"), &snapshot()).bytes.is_empty());
    }

    #[test]
    fn http10_closes_unless_keep_alive() {
        let out = Session::new().receive(b"GET / HTTP/1.0\r\n\r\n", &snapshot());
        assert!(out.close);
        assert_eq!(parse_responses(&out.bytes, &[])[0].header("Connection"), Some("close"));

        let mut s = Session::new();
        let out = s.receive(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &snapshot());
        assert!(!out.close);
        let r = &parse_responses(&out.bytes, &[])[0];
        assert_eq!(r.code, 200);
        assert_eq!(r.header("Connection"), Some("keep-alive"));
        // Token lists are understood too.
        let out = Session::new().receive(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, close\r\n\r\n", &snapshot());
        assert!(out.close);
    }

    #[test]
    fn leading_empty_lines_are_ignored() {
        let mut req = b"\r\n\r\n".to_vec();
        req.extend(get("/"));
        assert_eq!(one(&req).code, 200);
    }

    #[test]
    fn absolute_form_targets_are_routed() {
        let r = one(b"GET http://10.0.0.2/sockets.json HTTP/1.1\r\nHost: 10.0.0.2\r\n\r\n");
        assert_eq!(r.code, 200);
        assert!(r.text().starts_with('['));
        let r = one(b"GET HTTP://10.0.0.2 HTTP/1.1\r\nHost: 10.0.0.2\r\n\r\n");
        assert_eq!(r.code, 200);
        assert!(r.text().contains("<h1>tunstack</h1>"));
        let r = one(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.code, 400);
    }

    fn expect_error(req: &[u8], code: u16) {
        let mut s = Session::new();
        let out = s.receive(req, &snapshot());
        assert!(out.close, "{code}: an error closes the connection");
        let rs = parse_responses(&out.bytes, &[]);
        assert_eq!(rs.len(), 1, "{:?}", String::from_utf8_lossy(&out.bytes));
        assert_eq!(rs[0].code, code, "{:?}", String::from_utf8_lossy(req));
        assert_eq!(rs[0].header("Connection"), Some("close"));
    }

    #[test]
    fn malformed_requests_get_400() {
        expect_error(b"GARBAGE\r\n\r\n", 400);
        expect_error(b"GET / HTTP/1.1\r\nHost x\r\n\r\n", 400);
        expect_error(b"GET / HTTP/1.1\r\n\r\n", 400); // no Host (RFC 9112 3.2)
        expect_error(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
        expect_error(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400);
        expect_error(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n", 400);
        expect_error(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400);
        expect_error(b"\x00\x01\x02\x03\r\n\r\n", 400);
        expect_error(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
        expect_error(b"GET / HTTP/x\r\nHost: a\r\n\r\n", 400);
        // An error mid-stream still answers the earlier requests first.
        let mut req = get("/");
        req.extend(b"BAD REQUEST LINE\r\n\r\n");
        let out = Session::new().receive(&req, &snapshot());
        assert!(out.close);
        let codes: Vec<u16> = parse_responses(&out.bytes, &[]).iter().map(|r| r.code).collect();
        assert_eq!(codes, vec![200, 400]);
    }

    #[test]
    fn identical_content_length_list_is_accepted() {
        let r = one(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2, 2\r\n\r\nhi");
        assert_eq!(r.code, 405);
    }

    #[test]
    fn transfer_encoding_gets_501() {
        expect_error(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501);
    }

    #[test]
    fn oversized_heads_and_bodies_are_refused() {
        // A head that never ends: refused once the buffer is full, fed in pieces.
        let mut s = Session::new();
        let mut bytes = s.receive(b"GET / HTTP/1.1\r\nHost: a\r\n", &snapshot()).bytes;
        let filler = format!("X-Filler: {}\r\n", "y".repeat(100));
        for _ in 0..200 {
            let out = s.receive(filler.as_bytes(), &snapshot());
            bytes.extend(out.bytes);
            if out.close {
                break;
            }
        }
        assert!(s.is_closed());
        let rs = parse_responses(&bytes, &[]);
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0].code, 431);

        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            many.extend(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend(b"\r\n");
        expect_error(&many, 431);

        let big = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n", MAX_BODY + 1);
        expect_error(big.as_bytes(), 413);
        expect_error(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413);
    }

    #[test]
    fn a_head_just_under_the_limit_is_served() {
        let mut req = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ".to_vec();
        let pad = MAX_HEAD - req.len() - 4 - 1;
        req.extend(vec![b'p'; pad]);
        req.extend(b"\r\n\r\n");
        assert_eq!(req.len(), MAX_HEAD - 1);
        assert_eq!(one(&req).code, 200);
    }
}

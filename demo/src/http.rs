//! A small HTTP/1.1 server (RFC 9110 semantics, RFC 9112 message syntax) that shows the
//! stack's own state: a home page, the socket table (`/sockets`, `/sockets.json`) and
//! the counters (`/stats.json`).
//!
//! It is a hyper 1.x service running on tunstack's async API
//! (`tunstack::tokio::TcpStream` wrapped in hyper-util's `TokioIo`): hyper does the
//! protocol (persistent connections, pipelining, HEAD without a body, 400 for a
//! malformed request), [`route`] decides the answer: GET and HEAD of the pages, 404 for
//! other paths, 405 with `Allow` for other methods. `route` is I/O-free, so the pages
//! are unit-tested without a network; the tests at the end run the whole server over
//! an in-memory link.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, SERVER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tunstack::runtime::RuntimeHandle;
use tunstack::tokio::TcpListener;
use tunstack::wire::DropReason;
use tunstack::{Owner, SocketInfo, Stats, TcpReject};

use crate::dashboard::{dashboard_json, Flows, Throughput, DASHBOARD_HTML};

/// Connections served at once; further ones wait in the listener's accept queue (and
/// beyond its backlog the stack drops their SYNs). Bounds the server's memory.
pub const MAX_CONNECTIONS: usize = 20_000;

/// Time a client has to send a request's header block (and, on a persistent
/// connection, the next request's) before the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the pages get the stack's state from: the runtime, or a fixed snapshot in tests.
pub trait Source: Send + Sync {
    fn sockets(&self) -> Vec<SocketInfo>;
    fn stats(&self) -> Stats;
    /// The live dashboard's data (`/dashboard.json`), when there is a live stack.
    fn dashboard(&self) -> Option<String> {
        None
    }
}

/// A running stack with the dashboard's own records.
#[derive(Clone)]
pub struct Live {
    pub rt: RuntimeHandle,
    pub throughput: Throughput,
    pub flows: Option<Flows>,
}

impl Source for Live {
    fn sockets(&self) -> Vec<SocketInfo> {
        self.rt.sockets()
    }
    fn stats(&self) -> Stats {
        self.rt.stats()
    }
    fn dashboard(&self) -> Option<String> {
        Some(dashboard_json(&self.rt, &self.throughput, self.flows.as_ref()))
    }
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

const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

fn response(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(SERVER, HeaderValue::from_static("tunstack-demo"));
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The answer to one request (its method and path; the query is ignored). HEAD gets
/// the GET answer; hyper sends its header fields without the body (RFC 9110 9.3.2).
pub fn route(method: &Method, path: &str, src: &dyn Source) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        // RFC 9110 15.5.6: a 405 carries the methods the resource supports.
        let mut r = response(StatusCode::METHOD_NOT_ALLOWED, TEXT, "405 Method Not Allowed: only GET and HEAD\n");
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/" => response(StatusCode::OK, HTML, home_page(&src.stats())),
        "/sockets" => response(StatusCode::OK, HTML, sockets_html(&src.sockets())),
        "/sockets.json" => response(StatusCode::OK, JSON, sockets_json(&src.sockets())),
        "/stats.json" => response(StatusCode::OK, JSON, stats_json(&src.stats())),
        "/dashboard" => response(StatusCode::OK, HTML, DASHBOARD_HTML),
        "/dashboard.json" => match src.dashboard() {
            Some(json) => response(StatusCode::OK, JSON, json),
            None => response(StatusCode::NOT_FOUND, TEXT, "404 Not Found: no live stack\n"),
        },
        _ => response(StatusCode::NOT_FOUND, TEXT, format!("404 Not Found: {path}\n")),
    }
}

/// How many bytes hyper puts on the wire for the answer to `GET path`: its status line,
/// the header fields of [`route`] plus `content-length` and `date` (which hyper adds,
/// 29 characters long, RFC 9110 5.6.7), the blank line and the body. The benchmark's
/// baseline responders answer with this many bytes, so every system moves the same
/// amount per request.
pub fn wire_len(path: &str, src: &dyn Source) -> usize {
    let r = route(&Method::GET, path, src);
    let body = http_body_util::BodyExt::boxed(r.body().clone());
    let body_len = hyper::body::Body::size_hint(&body).exact().unwrap_or(0) as usize;
    let reason = r.status().canonical_reason().unwrap_or("");
    let mut n = format!("HTTP/1.1 {} {reason}\r\n", r.status().as_u16()).len();
    for (name, value) in r.headers() {
        n += name.as_str().len() + 2 + value.len() + 2;
    }
    n += "content-length: ".len() + body_len.to_string().len() + 2;
    n += "date: ".len() + 29 + 2;
    n + 2 + body_len
}

/// The hyper service function.
async fn handle(req: Request<Incoming>, src: Arc<dyn Source>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(route(req.method(), req.uri().path(), &*src))
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
         <li><a href=\"/dashboard\">/dashboard</a>: a live view of all of it, with TCP details and the packet filter</li>\n\
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
    let fields = stats.counters();
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
        let _ = write!(s, ": {}", stats.drops[*reason as usize]);
    }
    s.push_str("\n  },\n  \"tcp_rejects\": {");
    for (i, reason) in TcpReject::ALL.iter().enumerate() {
        s.push_str(if i == 0 { "\n    " } else { ",\n    " });
        json_string(&mut s, reason.as_str());
        let _ = write!(s, ": {}", stats.tcp_rejects[*reason as usize]);
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

/// A running HTTP server: its tasks run until the runtime goes away (or, for
/// [`HttpServer::start`], until the process ends).
#[derive(Debug)]
pub struct HttpServer {
    addrs: Vec<SocketAddr>,
}

impl HttpServer {
    /// Listen on `port` of every address in `addrs` and serve on the current tokio
    /// runtime (the accept loops and connections are tasks). Binding errors come back
    /// before anything is spawned. Panics outside a tokio runtime.
    pub fn serve(rt: &RuntimeHandle, addrs: &[IpAddr], port: u16) -> io::Result<HttpServer> {
        let live = Live { rt: rt.clone(), throughput: Throughput::default(), flows: None };
        HttpServer::serve_live(live, addrs, port)
    }

    /// [`HttpServer::serve`] with the dashboard's records supplied (the gateway passes
    /// its flow table); samples the throughput history once a second.
    pub fn serve_live(live: Live, addrs: &[IpAddr], port: u16) -> io::Result<HttpServer> {
        let rt = &live.rt;
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
        // One sampler per runtime: with a copy of the server per shard
        // (`ShardedRuntime`), shard 0's samples for all of them.
        if rt.pinned_shard().is_none_or(|s| s == 0) {
            tokio::spawn(live.throughput.clone().run(rt.clone()));
        }
        let src: Arc<dyn Source> = Arc::new(live.clone());
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut bound = Vec::new();
        for listener in listeners {
            bound.push(listener.local_addr()?);
            tokio::spawn(accept_loop(listener, Arc::clone(&src), Arc::clone(&slots)));
        }
        tracing::info!(addrs = ?bound, "http server listening");
        Ok(HttpServer { addrs: bound })
    }

    /// [`HttpServer::serve`] for callers without a tokio runtime (a thread-driven
    /// `Runtime`): a thread of its own runs a single-threaded tokio runtime with the
    /// server's tasks, for as long as the process lives.
    pub fn start(rt: &RuntimeHandle, addrs: &[IpAddr], port: u16) -> io::Result<HttpServer> {
        let tokio_rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let server = tokio_rt.block_on(async { HttpServer::serve(rt, addrs, port) })?;
        thread::Builder::new().name("http".into()).spawn(move || {
            tokio_rt.block_on(std::future::pending::<()>());
        })?;
        Ok(server)
    }

    /// Addresses the listeners are bound to.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

/// Accept connections until the runtime goes away; one task per connection, at most
/// [`MAX_CONNECTIONS`] at once.
async fn accept_loop(listener: TcpListener, src: Arc<dyn Source>, slots: Arc<Semaphore>) {
    let local = listener.local_addr().ok();
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                tracing::info!(?local, "http listener stopped: runtime gone");
                return;
            }
            Err(e) => {
                tracing::debug!(?local, error = %e, "accept failed");
                continue;
            }
        };
        let src = Arc::clone(&src);
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| handle(req, Arc::clone(&src)));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "http connection ended with an error");
            }
        });
    }
}

// ------------------------------------------------------------------------ tests

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::net::Ipv4Addr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tunstack::runtime::device::MemDevice;
    use tunstack::tokio::{AsyncRuntime, TcpStream};
    use tunstack::{Config, Protocol, SocketHandle};

    fn snapshot() -> Snapshot {
        let local: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let mut stats = Stats::default();
        stats.rx_packets = 42;
        stats.tx_packets = 40;
        stats.drops[DropReason::BadTcpChecksum as usize] = 3;
        stats.drops[DropReason::Truncated as usize] = 5;
        stats.tcp_rejects[TcpReject::Paws as usize] = 2;
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

    fn body_text(r: Response<Full<Bytes>>) -> String {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let bytes = rt.block_on(r.into_body().collect()).unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn get(path: &str) -> Response<Full<Bytes>> {
        route(&Method::GET, path, &snapshot())
    }

    #[test]
    fn home_page_links_the_other_pages() {
        let r = get("/");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CONTENT_TYPE], HTML);
        let body = body_text(r);
        for link in ["/sockets", "/sockets.json", "/stats.json"] {
            assert!(body.contains(&format!("href=\"{link}\"")), "{link}");
        }
        assert!(body.contains("42 received, 40 sent, 8 dropped"));
    }

    #[test]
    fn head_gets_the_get_answer() {
        let head = route(&Method::HEAD, "/sockets", &snapshot());
        let get = get("/sockets");
        assert_eq!(head.status(), get.status());
        assert_eq!(head.headers(), get.headers());
    }

    #[test]
    fn sockets_json_lists_every_socket() {
        let r = get("/sockets.json");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CONTENT_TYPE], JSON);
        let expected = "[\n  \
            {\"handle\":0,\"protocol\":\"tcp\",\"local\":\"10.0.0.2:80\",\"remote\":null,\"state\":\"LISTEN\",\
            \"recv_queue\":0,\"send_queue\":0,\"owner\":\"app\",\"owner_handle\":null},\n  \
            {\"handle\":1,\"protocol\":\"tcp\",\"local\":\"10.0.0.2:80\",\"remote\":\"10.0.0.1:40000\",\
            \"state\":\"ESTABLISHED\",\"recv_queue\":7,\"send_queue\":1200,\"owner\":\"listener\",\"owner_handle\":0},\n  \
            {\"handle\":2,\"protocol\":\"udp\",\"local\":\"[fd00::2]:7\",\"remote\":null,\"state\":\"BOUND\",\
            \"recv_queue\":0,\"send_queue\":0,\"owner\":\"orphan\",\"owner_handle\":null}\n]\n";
        assert_eq!(body_text(r), expected);
        assert_eq!(sockets_json(&[]), "[]\n");
    }

    #[test]
    fn sockets_html_has_a_row_per_socket() {
        let body = body_text(get("/sockets"));
        assert_eq!(body.matches("<tr><td>").count(), 3);
        assert!(body.contains(
            "<tr><td>#1</td><td>tcp</td><td>10.0.0.2:80</td><td>10.0.0.1:40000</td><td>ESTABLISHED</td>\
             <td>7</td><td>1200</td><td>listener #0</td></tr>"
        ));
        assert!(body.contains("<td>[fd00::2]:7</td><td>*</td><td>BOUND</td>"));
    }

    #[test]
    fn stats_json_names_every_drop_and_reject_reason() {
        let body = body_text(get("/stats.json"));
        assert!(body.contains("\"rx_packets\": 42,"));
        assert!(body.contains("\"tx_packets\": 40,"));
        assert!(body.contains("\"total_drops\": 8,"));
        assert!(body.contains("\"bad_tcp_checksum\": 3"));
        assert!(body.contains("\"truncated\": 5"));
        assert!(body.contains("\"paws_rejected\": 2"));
        for reason in DropReason::ALL {
            assert!(body.contains(&format!("\"{}\": ", reason.as_str())), "missing {}", reason.as_str());
        }
        for reason in TcpReject::ALL {
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
    fn unknown_paths_are_404_and_other_methods_405_with_allow() {
        let r = get("/no-such-page");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(body_text(r), "404 Not Found: /no-such-page\n");
        for m in [Method::POST, Method::DELETE, Method::PUT, Method::OPTIONS] {
            let r = route(&m, "/", &snapshot());
            assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{m}");
            assert_eq!(r.headers()[ALLOW], "GET, HEAD");
        }
    }

    /// The whole server over an in-memory link: a raw HTTP client on a second stack.
    async fn exchange(client: &AsyncRuntime, request: &[u8]) -> String {
        let mut s = TcpStream::connect(client, (Ipv4Addr::new(10, 0, 0, 2), 80)).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn served_over_memory_keep_alive_head_and_errors() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), async {
                let (a, b) = MemDevice::pair(1500).unwrap();
                let cfg = |ip: [u8; 4], seed| {
                    Config::default().with(|c| {
                        c.addrs = vec![IpAddr::from(ip)];
                        c.seed = seed;
                    })
                };
                let server = AsyncRuntime::with_device(a, cfg([10, 0, 0, 2], 1)).unwrap();
                let client = AsyncRuntime::with_device(b, cfg([10, 0, 0, 1], 2)).unwrap();
                HttpServer::serve(&server.handle(), &[IpAddr::from([10, 0, 0, 2])], 80).unwrap();
                // Two pipelined requests on one connection, then a HEAD that closes it.
                let out = exchange(
                    &client,
                    b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /stats.json HTTP/1.1\r\nHost: x\r\n\r\n\
                      HEAD /sockets HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                )
                .await;
                assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3, "{out}");
                assert!(out.contains("<h1>tunstack</h1>"), "{out}");
                assert!(out.contains("\"drops\""), "{out}");
                // The HEAD answer ends with its header block.
                assert!(out.ends_with("\r\n\r\n"), "{out}");
                let out = exchange(&client, b"DELETE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
                assert!(out.starts_with("HTTP/1.1 405"), "{out}");
                assert!(out.to_lowercase().contains("allow: get, head"), "{out}");
                let out = exchange(&client, b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
                assert!(out.starts_with("HTTP/1.1 404"), "{out}");
                let out = exchange(&client, b"NOT HTTP AT ALL\r\n\r\n").await;
                assert!(out.starts_with("HTTP/1.1 400"), "{out}");
            })
            .await
            .expect("bounded");
        });
    }
}

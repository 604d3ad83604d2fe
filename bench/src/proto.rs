//! What the client and the servers agree on: addresses, ports, message sizes, and the
//! tiny HTTP responder's framing. Every server (tunstack, smoltcp, Linux) implements
//! the same services on the same ports:
//!
//! | port | service | protocol |
//! | --- | --- | --- |
//! | 5001 | sink | client sends bytes and half-closes; server answers the byte count (8 bytes, LE) and closes |
//! | 5002 | source | client sends a length (8 bytes, LE); server sends that many bytes and closes |
//! | 5003 | echo | every byte comes back (ping-pong latency) |
//! | 5004 | rr | client sends [`RR_REQUEST`] bytes, server answers [`RR_RESPONSE`] bytes, client closes |
//! | 5005 | hold | accepted and held open, nothing is read (idle connections) |
//! | 80 | http | HTTP/1.1, keep-alive or `Connection: close`: the demo's hyper service on tunstack and on Linux + hyper, nginx's static file, [`baseline_http_response`] on smoltcp and the plain Linux server |
//! | 8080 | http-many | the same HTTP service with a listener backlog for [`HTTP_MANY_BACKLOG`] connections at once (10k workload) |

use std::net::Ipv4Addr;

pub const SINK_PORT: u16 = 5001;
pub const SOURCE_PORT: u16 = 5002;
pub const ECHO_PORT: u16 = 5003;
pub const RR_PORT: u16 = 5004;
pub const HOLD_PORT: u16 = 5005;
pub const HTTP_PORT: u16 = 80;
pub const HTTP_MANY_PORT: u16 = 8080;
/// Backlog of the listeners on [`HTTP_MANY_PORT`]: every connection of the 10k workload
/// may arrive at once (wrk opens them all at the start).
pub const HTTP_MANY_BACKLOG: usize = 16_384;

/// Request and response sizes of the connection-rate workload.
pub const RR_REQUEST: usize = 32;
pub const RR_RESPONSE: usize = 64;

/// TUN setups: the kernel's side of the device, and the server's address behind it.
pub const TUN_HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const TUN_PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const TUN_PREFIX: u8 = 24;
/// Name of the TUN device in every TUN setup (each in its own namespace).
pub const TUN_DEV: &str = "bt0";

/// veth setup: client and server namespaces.
pub const VETH_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
pub const VETH_SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
pub const VETH_CLIENT_DEV: &str = "vb0";
pub const VETH_SERVER_DEV: &str = "vb1";

/// Fill `buf` with a cheap non-constant pattern (so no layer can shortcut zeros).
pub fn fill_pattern(buf: &mut [u8], offset: u64) {
    for (i, b) in buf.iter_mut().enumerate() {
        let x = offset.wrapping_add(i as u64);
        *b = (x ^ (x >> 8) ^ (x >> 16)) as u8;
    }
}

/// Complete HTTP request heads at the start of a buffer (see [`split_requests`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    /// Requests to answer.
    pub count: usize,
    /// Bytes they span.
    pub consumed: usize,
    /// The last one asked for `Connection: close` (RFC 9112 9.6): answer it, then close;
    /// nothing after it is counted.
    pub close: bool,
}

/// Count complete HTTP request heads (terminated by an empty line, RFC 9112 2.1) at the
/// start of `buf`, up to and including the first that asks to close the connection.
/// The benchmark's requests carry no body, so a head is the whole request.
pub fn split_requests(buf: &[u8]) -> Requests {
    let mut r = Requests::default();
    while let Some(pos) = find(&buf[r.consumed..], b"\r\n\r\n") {
        let head = &buf[r.consumed..r.consumed + pos + 4];
        r.consumed += pos + 4;
        r.count += 1;
        if wants_close(head) {
            r.close = true;
            break;
        }
    }
    r
}

/// Whether a request head has a `Connection` field with the `close` option (field names
/// and options are case-insensitive, RFC 9110 5.1 and 7.6.1).
pub fn wants_close(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    text.split("\r\n").skip(1).any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("connection")
                && value.split(',').any(|o| o.trim().eq_ignore_ascii_case("close"))
        })
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The request the harness's own load generator sends (wrk sends the same shape:
/// request line and Host, plus `Connection: close` when asked to).
pub fn http_request(host: Ipv4Addr, close: bool) -> Vec<u8> {
    let conn = if close { "Connection: close\r\n" } else { "" };
    format!("GET / HTTP/1.1\r\nHost: {host}\r\n{conn}\r\n").into_bytes()
}

/// The field hyper adds to its answer when the request asked to close.
const HYPER_CLOSE_FIELD: &str = "connection: close\r\n";

/// The fixed response of the baseline HTTP responders (smoltcp, the plain Linux
/// server): a 200 with the same total length as the demo's hyper service's answer to
/// `GET /` (with its `connection: close` field when `close`), so every system moves the
/// same bytes per request.
pub fn baseline_http_response(close: bool) -> Vec<u8> {
    let demo_len = demo::http::wire_len("/", &demo::http::Snapshot::default());
    let extra = if close { HYPER_CLOSE_FIELD.len() } else { 0 };
    http_response_of_len(demo_len + extra, close)
}

/// A `200 OK` whose head plus body is `total` bytes (or just the head when that is
/// already longer), with `Connection: close` when `close`.
pub fn http_response_of_len(total: usize, close: bool) -> Vec<u8> {
    let conn = if close { "Connection: close\r\n" } else { "" };
    let head = |body: usize| {
        format!(
            "HTTP/1.1 200 OK\r\nServer: bench\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {body}\r\nCache-Control: no-store\r\n{conn}\r\n"
        )
    };
    // The head's length depends on the digits of the body length: settle it in a few steps.
    let mut body = total.saturating_sub(head(0).len());
    for _ in 0..4 {
        let h = head(body).len();
        body = total.saturating_sub(h);
    }
    let mut out = head(body).into_bytes();
    out.resize(out.len() + body, b'x');
    out
}

/// The body of the demo's home page as a fresh stack renders it (what nginx serves as
/// its static file: the same body length as the hyper service's answer).
pub fn demo_home_body() -> Vec<u8> {
    let r = demo::http::route(&hyper::Method::GET, "/", &demo::http::Snapshot::default());
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("a tokio runtime without I/O");
    let body = rt.block_on(http_body_util::BodyExt::collect(r.into_body())).map(|c| c.to_bytes());
    body.map(|b| b.to_vec()).unwrap_or_default()
}

/// Content-Length of a response head (case-insensitive field name), for the load
/// generator that reads responses back.
pub fn content_length(head: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(head).ok()?;
    text.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name.trim().eq_ignore_ascii_case("content-length") {
            value.trim().parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_split_on_empty_lines() {
        let one = http_request(TUN_PEER, false);
        let r = |count, consumed, close| Requests { count, consumed, close };
        assert_eq!(split_requests(&one), r(1, one.len(), false));
        let mut two = one.clone();
        two.extend_from_slice(&one);
        two.extend_from_slice(b"GET / HT");
        assert_eq!(split_requests(&two), r(2, 2 * one.len(), false));
        assert_eq!(split_requests(b"GET / HTTP/1.1\r\n"), r(0, 0, false));
        assert_eq!(split_requests(b""), r(0, 0, false));
        // Nothing after a request that asks to close counts.
        let close = http_request(TUN_PEER, true);
        let mut three = one.clone();
        three.extend_from_slice(&close);
        three.extend_from_slice(&one);
        assert_eq!(split_requests(&three), r(2, one.len() + close.len(), true));
    }

    #[test]
    fn connection_close_is_found_in_any_case_and_list() {
        assert!(wants_close(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
        assert!(wants_close(b"GET / HTTP/1.1\r\nconnection:  Keep-Alive, CLOSE \r\n\r\n"));
        assert!(!wants_close(b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"));
        assert!(!wants_close(b"GET /close HTTP/1.1\r\nX-Connection: close\r\n\r\n"));
    }

    #[test]
    fn baseline_response_has_the_demo_length() {
        let demo_len = demo::http::wire_len("/", &demo::http::Snapshot::default());
        let r = baseline_http_response(false);
        assert_eq!(r.len(), demo_len);
        let head_end = find(&r, b"\r\n\r\n").unwrap() + 4;
        assert_eq!(content_length(&r[..head_end]), Some(r.len() - head_end));
        assert!(r.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(!wants_close(&r[..head_end]));
        let c = baseline_http_response(true);
        assert_eq!(c.len(), demo_len + HYPER_CLOSE_FIELD.len());
        let head_end = find(&c, b"\r\n\r\n").unwrap() + 4;
        assert!(wants_close(&c[..head_end]));
        assert_eq!(content_length(&c[..head_end]), Some(c.len() - head_end));
    }

    #[test]
    fn home_body_is_the_demo_page() {
        let body = demo_home_body();
        assert!(body.starts_with(b"<!DOCTYPE html>"));
        let demo_len = demo::http::wire_len("/", &demo::http::Snapshot::default());
        assert!(body.len() < demo_len && body.len() > demo_len / 2);
    }

    #[test]
    fn responses_of_any_length() {
        for total in [0, 50, 150, 999, 1000, 1001, 10_000, 100_005] {
            let r = http_response_of_len(total, total % 2 == 1);
            let head_end = find(&r, b"\r\n\r\n").unwrap() + 4;
            let body = content_length(&r[..head_end]).unwrap();
            assert_eq!(head_end + body, r.len());
            if total >= head_end {
                assert_eq!(r.len(), total, "total {total}");
            }
        }
    }

    #[test]
    fn content_length_field() {
        assert_eq!(content_length(b"HTTP/1.1 200 OK\r\ncontent-LENGTH:  42 \r\n\r\n"), Some(42));
        assert_eq!(content_length(b"HTTP/1.1 200 OK\r\n\r\n"), None);
        assert_eq!(content_length(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"), None);
    }

    #[test]
    fn pattern_is_not_constant_and_continues() {
        let mut a = [0u8; 600];
        fill_pattern(&mut a, 0);
        assert!(a.iter().any(|&b| b != a[0]));
        let mut b = [0u8; 100];
        fill_pattern(&mut b, 500);
        assert_eq!(&a[500..], &b[..]);
    }
}

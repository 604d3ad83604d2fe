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
//! | 80 | http | HTTP/1.1 keep-alive: `demo http` on tunstack, [`baseline_http_response`] elsewhere |

use std::net::Ipv4Addr;

pub const SINK_PORT: u16 = 5001;
pub const SOURCE_PORT: u16 = 5002;
pub const ECHO_PORT: u16 = 5003;
pub const RR_PORT: u16 = 5004;
pub const HOLD_PORT: u16 = 5005;
pub const HTTP_PORT: u16 = 80;

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

/// Count complete HTTP request heads (terminated by an empty line, RFC 9112 2.1) at the
/// start of `buf`; returns how many and how many bytes they span. The benchmark's
/// requests carry no body, so a head is the whole request.
pub fn split_requests(buf: &[u8]) -> (usize, usize) {
    let mut count = 0;
    let mut consumed = 0;
    while let Some(pos) = find(&buf[consumed..], b"\r\n\r\n") {
        consumed += pos + 4;
        count += 1;
    }
    (count, consumed)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The request the harness's own keep-alive load generator sends (wrk sends the same
/// shape: request line and Host).
pub fn http_request(host: Ipv4Addr) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

/// The fixed response of the baseline HTTP responders (smoltcp, Linux): a 200 with the
/// same total length as `demo http`'s answer to `GET /`, so every system moves the same
/// bytes per request.
pub fn baseline_http_response() -> Vec<u8> {
    let demo_len = demo::http::wire_len("/", &demo::http::Snapshot::default());
    http_response_of_len(demo_len)
}

/// A `200 OK` whose head plus body is `total` bytes (or just the head when that is
/// already longer).
pub fn http_response_of_len(total: usize) -> Vec<u8> {
    let head = |body: usize| {
        format!(
            "HTTP/1.1 200 OK\r\nServer: bench\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {body}\r\nCache-Control: no-store\r\n\r\n"
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
        let one = http_request(TUN_PEER);
        assert_eq!(split_requests(&one), (1, one.len()));
        let mut two = one.clone();
        two.extend_from_slice(&one);
        two.extend_from_slice(b"GET / HT");
        assert_eq!(split_requests(&two), (2, 2 * one.len()));
        assert_eq!(split_requests(b"GET / HTTP/1.1\r\n"), (0, 0));
        assert_eq!(split_requests(b""), (0, 0));
    }

    #[test]
    fn baseline_response_has_the_demo_length() {
        let demo_len = demo::http::wire_len("/", &demo::http::Snapshot::default());
        let r = baseline_http_response();
        assert_eq!(r.len(), demo_len);
        let head_end = find(&r, b"\r\n\r\n").unwrap() + 4;
        assert_eq!(content_length(&r[..head_end]), Some(r.len() - head_end));
        assert!(r.starts_with(b"HTTP/1.1 200 OK\r\n"));
    }

    #[test]
    fn responses_of_any_length() {
        for total in [0, 50, 150, 999, 1000, 1001, 10_000, 100_005] {
            let r = http_response_of_len(total);
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

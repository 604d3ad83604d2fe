//! Running wrk (HTTP load: keep-alive, or a new connection per request) and reading its
//! report.

use std::process::{Command, Stdio};
use std::time::Duration;

/// What we take from wrk's output.
#[derive(Clone, Debug, PartialEq)]
pub struct WrkResult {
    pub requests_per_sec: f64,
    pub requests: u64,
    /// Latency percentiles in microseconds (from `--latency`).
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// Socket errors (connect, read, write, timeout) plus non-2xx/3xx responses.
    pub errors: u64,
}

/// Whether `wrk` can be started.
pub fn available() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The wrk command line for `url`: `conns` connections on `threads` threads for
/// `duration`, a request counted as failed after `timeout`; with `close`, every request
/// asks for `Connection: close` (so every request is a new connection).
pub fn args(
    url: &str,
    threads: usize,
    conns: usize,
    duration: Duration,
    timeout: Duration,
    close: bool,
) -> Vec<String> {
    let mut v = vec![
        "wrk".into(),
        format!("-t{threads}"),
        format!("-c{conns}"),
        format!("-d{}s", duration.as_secs().max(1)),
        "--latency".into(),
        "--timeout".into(),
        format!("{}s", timeout.as_secs().max(1)),
    ];
    if close {
        v.extend(["-H".into(), "Connection: close".into()]);
    }
    v.push(url.into());
    v
}

/// Parse a wrk duration such as `310.00us`, `1.20ms`, `2.00s`, `1.00m` into microseconds.
pub fn parse_duration_us(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60e6)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600e6)
    } else {
        return None;
    };
    num.trim().parse::<f64>().ok().map(|v| v * mult)
}

/// Parse wrk's report (as printed with `--latency`).
pub fn parse(out: &str) -> Option<WrkResult> {
    let mut rps = None;
    let mut requests = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut errors = 0u64;
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = t.strip_prefix("50%") {
            p50 = parse_duration_us(v);
        } else if let Some(v) = t.strip_prefix("99%") {
            p99 = parse_duration_us(v);
        } else if t.contains(" requests in ") {
            requests = t.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            errors += v.split(',').filter_map(|kv| kv.split_whitespace().nth(1)?.parse::<u64>().ok()).sum::<u64>();
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            errors += v.trim().parse::<u64>().unwrap_or(0);
        }
    }
    Some(WrkResult { requests_per_sec: rps?, requests: requests?, p50_us: p50, p99_us: p99, errors })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 3s test @ http://10.0.0.2:80/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   512.33us  100.21us   5.01ms   90.00%
    Req/Sec    30.12k     1.20k   33.00k    70.00%
  Latency Distribution
     50%  490.00us
     75%  550.00us
     90%  640.00us
     99%    1.21ms
  180000 requests in 3.00s, 150.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:  60000.50
Transfer/sec:     50.00MB
";

    #[test]
    fn parses_the_report() {
        let r = parse(SAMPLE).unwrap();
        assert_eq!(r.requests_per_sec, 60000.50);
        assert_eq!(r.requests, 180000);
        assert_eq!(r.p50_us, Some(490.0));
        assert_eq!(r.p99_us, Some(1210.0));
        assert_eq!(r.errors, 9);
    }

    #[test]
    fn report_without_errors_or_latency() {
        let out = "  100 requests in 1.00s, 1.00MB read\nRequests/sec:    100.00\n";
        let r = parse(out).unwrap();
        assert_eq!((r.requests, r.errors, r.p50_us), (100, 0, None));
        assert_eq!(parse("garbage"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_us("310.00us"), Some(310.0));
        assert_eq!(parse_duration_us(" 1.20ms"), Some(1200.0));
        assert_eq!(parse_duration_us("2.00s"), Some(2e6));
        assert_eq!(parse_duration_us("1.00m"), Some(60e6));
        assert_eq!(parse_duration_us("12"), None);
        assert_eq!(parse_duration_us("xms"), None);
    }

    #[test]
    fn command_line() {
        let url = "http://10.0.0.2:80/";
        let a = args(url, 2, 32, Duration::from_secs(3), Duration::from_secs(5), false);
        assert_eq!(a, ["wrk", "-t2", "-c32", "-d3s", "--latency", "--timeout", "5s", url]);
        let a = args(url, 2, 10_000, Duration::from_secs(5), Duration::from_secs(10), true);
        assert_eq!(
            a,
            ["wrk", "-t2", "-c10000", "-d5s", "--latency", "--timeout", "10s", "-H", "Connection: close", url]
        );
    }
}

//! Small pure helpers: size parsing, percentiles, medians, number formatting, and the
//! parsers for `/proc` files the harness reads. Everything here is deterministic and
//! unit-tested without a device or a clock.

/// Parse a byte count: a plain number, or a number with a binary suffix `K`, `M`, `G`
/// (also `KiB`/`MiB`/`GiB`, `k`, `KB`...; all mean powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("size {s:?}: expected a number, e.g. 64M or 1G"));
    }
    let value: f64 = num.parse().map_err(|_| format!("size {s:?}: bad number {num:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("size {s:?}: unknown unit {other:?} (use K, M or G)")),
    };
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 / 2.0 {
        return Err(format!("size {s:?} is out of range"));
    }
    Ok(bytes.round() as u64)
}

/// Human form of a byte count with a binary unit (`64 MiB`, `1 GiB`, `1.5 KiB`).
pub fn fmt_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (name, size) in UNITS {
        if bytes >= size {
            let v = bytes as f64 / size as f64;
            // `size` is a power of two.
            return if bytes & (size - 1) == 0 { format!("{} {name}", bytes / size) } else { format!("{v:.1} {name}") };
        }
    }
    format!("{bytes} B")
}

/// The `p`-th percentile (0..=100) of sorted samples by the nearest-rank method: the
/// smallest sample such that at least p% of the samples are at or below it.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=100.0).contains(&p) {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Sort samples (NaN-free) ascending.
pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// Median of the values (mean of the two middle ones for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let s = sorted(values.to_vec());
    let n = s.len();
    Some(if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 })
}

/// A number with about three significant digits, no exponent: 1234 -> "1234",
/// 12.345 -> "12.3", 0.01234 -> "0.0123".
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        // Three significant digits below 1.
        let digits = (-a.log10().floor()) as usize + 2;
        format!("{v:.digits$}")
    }
}

/// Throughput in Gbit/s for `bytes` moved in `secs`.
pub fn gbit_per_s(bytes: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return f64::NAN;
    }
    bytes as f64 * 8.0 / secs / 1e9
}

/// Packet and byte counters of one interface, from `/proc/net/dev`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DevCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_dropped: u64,
}

impl DevCounters {
    /// Packets in both directions since `before`.
    pub fn packets_since(&self, before: &DevCounters) -> u64 {
        (self.rx_packets + self.tx_packets).saturating_sub(before.rx_packets + before.tx_packets)
    }

    /// Packets the device dropped (e.g. a full TUN queue) since `before`.
    pub fn drops_since(&self, before: &DevCounters) -> u64 {
        (self.rx_dropped + self.tx_dropped).saturating_sub(before.rx_dropped + before.tx_dropped)
    }
}

/// Find `dev` in the text of `/proc/net/dev` (two header lines, then
/// `name: rx_bytes rx_packets rx_errs rx_drop fifo frame compressed multicast tx_bytes
/// tx_packets tx_errs tx_drop ...`).
pub fn parse_proc_net_dev(text: &str, dev: &str) -> Option<DevCounters> {
    for line in text.lines() {
        let Some((name, rest)) = line.split_once(':') else { continue };
        if name.trim() != dev {
            continue;
        }
        let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().ok()).collect::<Option<_>>()?;
        if f.len() < 12 {
            return None;
        }
        return Some(DevCounters {
            rx_bytes: f[0],
            rx_packets: f[1],
            rx_dropped: f[3],
            tx_bytes: f[8],
            tx_packets: f[9],
            tx_dropped: f[11],
        });
    }
    None
}

/// One counter of the `Tcp:` lines of `/proc/net/snmp` (a header line of names, then
/// a line of values), e.g. `RetransSegs`.
pub fn parse_snmp_tcp(text: &str, field: &str) -> Option<u64> {
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let names = tcp.next()?.split_whitespace();
    let values = tcp.next()?.split_whitespace();
    names.zip(values).find(|(n, _)| *n == field).and_then(|(_, v)| v.parse().ok())
}

/// The whole machine's (idle, total) CPU time in ticks from the text of `/proc/stat`
/// (its `cpu` line: user nice system idle iowait irq softirq steal ...; idle counts
/// idle and iowait; guest time is already in user).
pub fn parse_proc_stat_cpu(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).take(8).map(|x| x.parse().ok()).collect::<Option<_>>()?;
    if v.len() < 5 {
        return None;
    }
    Some((v[3] + v[4], v.iter().sum()))
}

/// Resident set size in bytes from the text of `/proc/PID/statm` (pages; second field).
pub fn parse_statm_rss(text: &str, page_size: u64) -> Option<u64> {
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size)
}

/// The parent pid from the text of `/proc/PID/stat` (the field after the state, which
/// follows the command name in parentheses; the name may hold spaces and parentheses).
pub fn parse_stat_ppid(text: &str) -> Option<u32> {
    let (_, rest) = text.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// User plus system time in clock ticks (fields 14 and 15) from the text of
/// `/proc/PID/stat`.
pub fn parse_stat_cpu_ticks(text: &str) -> Option<u64> {
    let (_, rest) = text.rsplit_once(')')?;
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Connections in ESTABLISHED whose remote port is `port`, from the text of
/// `/proc/net/tcp` or `/proc/net/tcp6` (addresses as `HEX:PORT`, the state as hex
/// `01`).
pub fn count_established_to(text: &str, port: u16) -> usize {
    let want = format!(":{port:04X}");
    text.lines()
        .skip(1)
        .filter(|line| {
            let mut f = line.split_whitespace();
            let remote = f.nth(2);
            let state = f.next();
            state == Some("01") && remote.is_some_and(|r| r.ends_with(&want))
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parent() {
        assert_eq!(parse_stat_ppid("42 (nginx) S 41 42 42 0 -1 4194560 ..."), Some(41));
        assert_eq!(parse_stat_ppid("7 (a (b) c) R 1 7 7"), Some(1));
        assert_eq!(parse_stat_ppid("garbage"), None);
    }

    #[test]
    fn machine_cpu_times() {
        let text = "cpu  100 5 50 800 20 1 4 10 0 0\ncpu0 50 2 25 400 10 0 2 5 0 0\n";
        assert_eq!(parse_proc_stat_cpu(text), Some((820, 990)));
        assert_eq!(parse_proc_stat_cpu("cpu0 1 2 3 4 5\n"), None);
        assert_eq!(parse_proc_stat_cpu("cpu  1 2 x 4 5\n"), None);
    }

    #[test]
    fn stat_cpu_ticks() {
        let text = "42 (nginx: worker) S 41 42 42 0 -1 4194560 100 0 0 0 250 31 7 3 20 0 1 0 5 1000 50";
        assert_eq!(parse_stat_cpu_ticks(text), Some(281));
        assert_eq!(parse_stat_cpu_ticks("7 (a) R 1 7"), None);
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn established_connections_by_remote_port() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0101000A:C350 0201000A:1F90 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 20 4 30 10 -1
   1: 0101000A:C351 0201000A:1F90 06 00000000:00000000 03:00000123 00000000     0        0 0 3 0000000000000000
   2: 0101000A:C352 0201000A:0050 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
   3: 0101000A:C353 0201000A:1F90 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
";
        assert_eq!(count_established_to(text, 8080), 2);
        assert_eq!(count_established_to(text, 80), 1);
        assert_eq!(count_established_to(text, 5001), 0);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1.5K"), Ok(1536));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size(" 2 GB "), Ok(2 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("1.2.3M").is_err());
    }

    #[test]
    fn size_display() {
        assert_eq!(fmt_size(1 << 30), "1 GiB");
        assert_eq!(fmt_size(64 << 20), "64 MiB");
        assert_eq!(fmt_size(1536), "1.5 KiB");
        assert_eq!(fmt_size(100), "100 B");
    }

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        let small = [3.0, 7.0, 9.0];
        assert_eq!(percentile(&small, 50.0), Some(7.0));
        assert_eq!(percentile(&small, 99.0), Some(9.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&small, 101.0), None);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(sorted(vec![2.0, -1.0, 0.5]), vec![-1.0, 0.5, 2.0]);
    }

    #[test]
    fn number_format() {
        assert_eq!(fmt_num(1234.4), "1234");
        assert_eq!(fmt_num(12.345), "12.3");
        assert_eq!(fmt_num(1.2345), "1.23");
        assert_eq!(fmt_num(0.012345), "0.0123");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(f64::NAN), "n/a");
        assert!((gbit_per_s(1 << 30, 1.0) - 8.589934592).abs() < 1e-9);
        assert!(gbit_per_s(1, 0.0).is_nan());
    }

    #[test]
    fn proc_net_dev() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0\n   \
bt0: 1000000    700    0    5    0     0          0         0  2000000    1400    0    7    0     0       0          0\n";
        let c = parse_proc_net_dev(text, "bt0").unwrap();
        assert_eq!(
            c,
            DevCounters {
                rx_bytes: 1000000,
                rx_packets: 700,
                rx_dropped: 5,
                tx_bytes: 2000000,
                tx_packets: 1400,
                tx_dropped: 7
            }
        );
        let zero = parse_proc_net_dev(text, "lo").unwrap();
        assert_eq!(c.packets_since(&zero), 2100);
        assert_eq!(zero.packets_since(&c), 0);
        assert_eq!(c.drops_since(&zero), 12);
        assert_eq!(parse_proc_net_dev(text, "bt1"), None);
        assert_eq!(parse_proc_net_dev("x: 1 2 3", "x"), None);
    }

    #[test]
    fn snmp() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors\n\
Tcp: 1 200 120000 -1 10 2 0 0 1 500 600 7 0 3 0\n\
Udp: InDatagrams\nUdp: 5\n";
        assert_eq!(parse_snmp_tcp(text, "RetransSegs"), Some(7));
        assert_eq!(parse_snmp_tcp(text, "OutRsts"), Some(3));
        assert_eq!(parse_snmp_tcp(text, "MaxConn"), None, "negative values are not counters");
        assert_eq!(parse_snmp_tcp(text, "Nope"), None);
        assert_eq!(parse_snmp_tcp("", "RetransSegs"), None);
    }

    #[test]
    fn statm() {
        assert_eq!(parse_statm_rss("1000 250 100 10 0 300 0\n", 4096), Some(250 * 4096));
        assert_eq!(parse_statm_rss("1000", 4096), None);
        assert_eq!(parse_statm_rss("", 4096), None);
    }
}

//! The real `demo` binary, run with `ip netns exec` in a test namespace: it serves
//! curl / kernel sockets, and SIGINT / SIGTERM make it exit 0 and remove its device.
//!
//! Cargo does not build another package's binary for these tests: build it first with
//! `cargo build -p demo` (the same profile as the tests; .ci/run does this). The test
//! fails with that advice when the binary is missing or older than its sources.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::e2e_util::*;
use tunstack_tests::netns::{self, NetNs};

/// target/<profile>/demo, next to the deps/ directory holding this test binary.
fn demo_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("test binary lives in target/<profile>/deps");
    let profile = profile_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let build = if profile == "release" { "cargo build --release -p demo" } else { "cargo build -p demo" };
    let bin = profile_dir.join("demo");
    let Ok(meta) = bin.metadata() else {
        panic!("the demo binary is missing at {}: run `{build}` before the tests (.ci/run does)", bin.display());
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let newest = ["demo/src", "stack/src", "demo/Cargo.toml", "stack/Cargo.toml"]
        .iter()
        .filter_map(|p| newest_mtime(&root.join(p)))
        .max();
    if let (Ok(built), Some(newest)) = (meta.modified(), newest) {
        assert!(
            built >= newest,
            "the demo binary at {} is older than its sources: run `{build}` before the tests",
            bin.display()
        );
    }
    bin
}

/// Newest modification time under `path`, ignoring test-only files (`tests.rs`,
/// `*_tests.rs`...): rustc never reads them for the binary, so cargo does not rebuild it
/// when only they change.
fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let meta = path.metadata().ok()?;
    if !meta.is_dir() {
        let name = path.file_name()?.to_string_lossy();
        if name.contains("test") {
            return None;
        }
        return meta.modified().ok();
    }
    std::fs::read_dir(path).ok()?.filter_map(|e| e.ok()).filter_map(|e| newest_mtime(&e.path())).max()
}

/// The running demo with its output being collected.
struct Demo {
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Demo {
    fn start(ns: &NetNs, args: &[&str]) -> Demo {
        let bin = demo_binary();
        let mut full = vec![bin.to_str().expect("utf-8 path")];
        full.extend_from_slice(args);
        let mut child = ns.spawn(&full).expect("starting demo");
        let stdout = child.stdout.take().map(netns::reader);
        let stderr = child.stderr.take().map(netns::reader);
        Demo { child, stdout, stderr }
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    fn signal(&self, signo: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signo) };
        assert_eq!(rc, 0, "kill: {}", io::Error::last_os_error());
    }

    /// Wait for the exit (bounded) and return (exit code, stdout, stderr).
    fn finish(mut self) -> (Option<i32>, String, String) {
        let status = netns::wait_timeout(&mut self.child, Duration::from_secs(30)).expect("wait");
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let (out, err) = self.output();
        let Some(status) = status else {
            panic!("demo did not exit within 30 s of the signal\nstdout:\n{out}\nstderr:\n{err}");
        };
        (status.code(), out, err)
    }

    fn output(&mut self) -> (String, String) {
        let join = |h: Option<JoinHandle<Vec<u8>>>| {
            String::from_utf8_lossy(&h.and_then(|h| h.join().ok()).unwrap_or_default()).into_owned()
        };
        (join(self.stdout.take()), join(self.stderr.take()))
    }

    /// Kill it and fail the test with its output.
    fn fail(mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (out, err) = self.output();
        panic!("{why}\ndemo stdout:\n{out}\ndemo stderr:\n{err}");
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if !self.exited() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn curl(ns: &NetNs, args: &[&str]) -> io::Result<(bool, String)> {
    let mut full = vec!["curl", "-sS", "--max-time", "10"];
    full.extend_from_slice(args);
    let out = ns.exec(&full, Duration::from_secs(30))?;
    Ok((out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned()))
}

#[test]
fn demo_http_binary_serves_curl_and_stops_on_sigint() {
    demo_http_serves_curl("demohttp", &[]);
}

/// `demo http --queues 2`: a copy of the server on each shard's thread; both serve.
#[test]
fn demo_http_on_two_queues_serves_curl_from_both_shards() {
    demo_http_serves_curl("demohttp2q", &["--queues", "2"]);
}

fn demo_http_serves_curl(ns_name: &str, extra: &[&str]) {
    if !netns::require_tool("curl", "curl") {
        return;
    }
    let Some(ns) = NetNs::new(ns_name) else { return };
    let queues = if extra.contains(&"--queues") { 2 } else { 1 };
    let mut args = vec!["http", "--tun", "tsdemo0"];
    args.extend_from_slice(extra);
    let mut demo = Demo::start(&ns, &args);

    let mut exited = false;
    let ready = netns::wait_until(Duration::from_secs(30), || {
        exited = demo.exited();
        exited
            || matches!(curl(&ns, &["-o", "/dev/null", "-w", "%{http_code}", "http://10.0.0.2/"]), Ok((true, code)) if code == "200")
    });
    if exited || !ready {
        demo.fail(if exited { "demo exited early" } else { "demo http did not answer within 30 s" });
    }
    let (ok, home) = curl(&ns, &["http://10.0.0.2/"]).unwrap();
    assert!(ok && home.contains("<h1>tunstack</h1>"), "{home}");
    let (ok, home6) = curl(&ns, &["-g", "http://[fd00::2]/"]).unwrap();
    assert!(ok && home6.contains("<h1>tunstack</h1>"), "{home6}");
    let (ok, sockets) = curl(&ns, &["http://10.0.0.2/sockets.json"]).unwrap();
    assert!(ok, "{sockets}");
    for local in ["10.0.0.2:80", "[fd00::2]:80"] {
        let listen = format!("\"local\":\"{local}\",\"remote\":null,\"state\":\"LISTEN\"");
        assert_eq!(sockets.matches(&listen).count(), queues, "a listener on {local} per shard: {sockets}");
    }
    if queues > 1 {
        // New connections spread over the shards: 24 of them reach both copies.
        for _ in 0..24 {
            let (ok, code) = curl(&ns, &["-o", "/dev/null", "-w", "%{http_code}", "http://10.0.0.2/"]).unwrap();
            assert!(ok && code == "200", "{code}");
        }
        let (ok, dash) = curl(&ns, &["http://10.0.0.2/dashboard.json"]).unwrap();
        assert!(ok && dash.contains("\"shards\":2") && dash.contains("\"steering\":true"), "{dash}");
        let shards = ["\"shard\":0", "\"shard\":1"];
        assert!(shards.iter().all(|s| dash.contains(s)), "sockets of both shards: {dash}");
    }
    assert!(ns.link_exists("tsdemo0"));

    demo.signal(libc::SIGINT);
    let (code, stdout, stderr) = demo.finish();
    assert_eq!(code, Some(0), "exit status after SIGINT\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("curl http://10.0.0.2/"), "usage hints name the address:\n{stdout}");
    assert!(stdout.contains("curl -g http://[fd00::2]/"), "{stdout}");
    assert!(stdout.contains("ping -c 3 10.0.0.2"), "{stdout}");
    assert!(stdout.contains("stopped"), "{stdout}");
    if queues > 1 {
        assert!(stdout.contains("2 queues, one stack and driver each"), "{stdout}");
    }
    assert!(!ns.link_exists("tsdemo0"), "the TUN device is gone after exit");
}

#[test]
fn demo_echo_binary_echoes_and_stops_on_sigterm() {
    let Some(ns) = NetNs::new("demoecho") else { return };
    let demo = Demo::start(&ns, &["echo", "--tun", "tsecho0", "--port", "7007"]);

    let result = ns.run(|| -> Result<(), String> {
        let addr = SocketAddr::new(STACK_V4, 7007);
        // Until the demo is up the kernel says unreachable or refused: retry, bounded.
        let mut last = None;
        let mut stream = None;
        netns::wait_until(Duration::from_secs(30), || match kernel_connect(addr) {
            Ok(s) => {
                stream = Some(s);
                true
            }
            Err(e) => {
                last = Some(e);
                false
            }
        });
        let stream = stream.ok_or_else(|| format!("could not connect to {addr}: {last:?}"))?;
        let data = pattern(9, 256 * 1024);
        let got = echo_through(&stream, &data);
        if got.len() != data.len() || sha256(&got) != sha256(&data) {
            return Err(format!("echo differs: {} of {} bytes", got.len(), data.len()));
        }
        let udp = UdpSocket::bind(SocketAddr::new(HOST_V6, 0)).map_err(|e| e.to_string())?;
        udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        udp.send_to(b"datagram", SocketAddr::new(STACK_V6, 7007)).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let (n, from) = udp.recv_from(&mut buf).map_err(|e| format!("UDP echo: {e}"))?;
        if &buf[..n] != b"datagram" || from != SocketAddr::new(STACK_V6, 7007) {
            return Err(format!("UDP echo {:?} from {from}", &buf[..n]));
        }
        Ok(())
    });
    if let Err(e) = result {
        demo.fail(&e);
    }
    assert!(ns.link_exists("tsecho0"));

    demo.signal(libc::SIGTERM);
    let (code, stdout, stderr) = demo.finish();
    assert_eq!(code, Some(0), "exit status after SIGTERM\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("nc 10.0.0.2 7007"), "usage hints name the address and port:\n{stdout}");
    assert!(!ns.link_exists("tsecho0"), "the TUN device is gone after exit");
}

/// Wait until the demo's echo server answers on `port` of 10.0.0.2 (bounded).
fn wait_for_echo(demo: Demo, ns: &NetNs, port: u16) -> Demo {
    let addr = SocketAddr::new(STACK_V4, port);
    let up = ns.run(move || netns::wait_until(Duration::from_secs(30), || kernel_connect(addr).is_ok()));
    if !up {
        demo.fail("demo echo did not answer within 30 s");
    }
    demo
}

/// Write a rules file for a test (removed by the caller).
fn rules_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("ts-rules-{name}-{}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// nmap's SYN, FIN, Xmas, NULL and UDP scans are each detected and logged with the
/// scanner's address; a client making a thousand connections to one open port is not.
#[test]
fn nmap_scans_are_detected_and_a_busy_client_is_not() {
    if !netns::require_tool("nmap", "nmap") {
        return;
    }
    let Some(ns) = NetNs::new("scan") else { return };
    let rules = rules_file("scan", "scan-detect threshold 20 window 2s\n");
    let demo = Demo::start(&ns, &["echo", "--tun", "tsscan0", "--rules", rules.to_str().unwrap()]);
    let demo = wait_for_echo(demo, &ns, 7);
    // A busy, honest client: 1000 connections to the open echo port, one after another.
    let busy = ns.run(|| {
        for i in 0..1000 {
            let c = kernel_connect(SocketAddr::new(STACK_V4, 7)).map_err(|e| format!("connection {i}: {e}"))?;
            drop(c);
        }
        Ok::<(), String>(())
    });
    if let Err(e) = busy {
        demo.fail(&e);
    }
    for (flag, _) in SCANS {
        let out = ns
            .exec(
                &["nmap", flag, "-p", "1-60", "-T5", "--max-retries", "0", "-n", "10.0.0.2"],
                Duration::from_secs(120),
            )
            .expect("nmap ran");
        assert!(out.status.success(), "nmap {flag}: {}", String::from_utf8_lossy(&out.stderr));
        // Let this scan's probes age out of the 2 s window, so the next is a new scan.
        std::thread::sleep(Duration::from_millis(2500));
    }
    demo.signal(libc::SIGINT);
    let (code, _, stderr) = demo.finish();
    let _ = std::fs::remove_file(&rules);
    assert_eq!(code, Some(0), "{stderr}");
    let logs: Vec<&str> = stderr.lines().filter(|l| l.contains("port scan detected")).collect();
    assert_eq!(logs.len(), SCANS.len(), "one report per scan, none for the busy client:\n{}", logs.join("\n"));
    for ((flag, kind), line) in SCANS.iter().zip(&logs) {
        assert!(line.contains("source=10.0.0.1"), "{flag}: {line}");
        // nmap adds a few probes of its own (host discovery: an ACK to port 80), so
        // the kinds seen include the scan's kind, maybe with others.
        let kinds = line.split("kind=").nth(1).and_then(|k| k.split_whitespace().next()).unwrap_or("");
        assert!(kinds.split('+').any(|k| k == *kind), "{flag} reported as: {line}");
    }
}

/// The nmap scans of the test above and the probe kind each is reported as.
const SCANS: [(&str, &str); 5] = [("-sS", "syn"), ("-sF", "fin"), ("-sX", "xmas"), ("-sN", "null"), ("-sU", "udp")];

/// Port knocking with nc and hping3: the right sequence opens the protected port for the
/// knocking source only and for a while; the wrong order or too slow opens nothing.
#[test]
fn knocking_with_nc_and_hping3_opens_the_port_for_the_knocker() {
    if !netns::require_tool("nc", "netcat-openbsd") || !netns::require_tool("hping3", "hping3") {
        return;
    }
    let Some(ns) = NetNs::new("knock") else { return };
    let rules = rules_file("knock", "knock udp:7000,tcp:7001,udp:7002 protect tcp:7 within 4s open 3s closed\n");
    let demo = Demo::start(&ns, &["echo", "--tun", "tsknock0", "--rules", rules.to_str().unwrap()]);
    // The echo port is closed until knocked: wait for the demo through its UDP echo.
    let up = ns.run(|| {
        netns::wait_until(Duration::from_secs(30), || {
            // Bound each time: 10.0.0.1 exists only once the demo's device is up.
            let Ok(udp) = UdpSocket::bind("10.0.0.1:0") else { return false };
            udp.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            let _ = udp.send_to(b"?", "10.0.0.2:7");
            udp.recv(&mut [0u8; 8]).is_ok()
        })
    });
    if !up {
        demo.fail("demo echo did not answer within 30 s");
    }
    // A second kernel address, for "another source".
    ns.exec(&["ip", "addr", "add", "10.0.0.3/24", "dev", "tsknock0"], Duration::from_secs(10)).unwrap();
    let knock = |ns: &NetNs, seq: &[(&str, u16)]| {
        for &(proto, port) in seq {
            let port = port.to_string();
            let out = match proto {
                "udp" => ns.exec(
                    &["sh", "-c", &format!("echo knock | nc -u -w1 -s 10.0.0.1 10.0.0.2 {port}")],
                    Duration::from_secs(10),
                ),
                _ => ns.exec(
                    &["hping3", "-S", "-c", "1", "-a", "10.0.0.1", "-p", &port, "10.0.0.2"],
                    Duration::from_secs(10),
                ),
            };
            out.expect("knock tool ran");
        }
    };
    let right = [("udp", 7000), ("tcp", 7001), ("udp", 7002)];
    let result = ns.run(|| -> Result<(), String> {
        let refused = |r: io::Result<()>, what: &str| match r {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
            other => Err(format!("{what}: expected refused, got {other:?}")),
        };
        refused(connect_from("10.0.0.1"), "before any knock")?;
        Ok(())
    });
    if let Err(e) = result {
        demo.fail(&e);
    }
    // Wrong order: nothing opens.
    knock(&ns, &[("udp", 7000), ("udp", 7002), ("tcp", 7001)]);
    let wrong = ns.run(|| connect_from("10.0.0.1"));
    // Too slow: the whole sequence takes longer than 4 s.
    knock(&ns, &[("udp", 7000), ("tcp", 7001)]);
    std::thread::sleep(Duration::from_secs(5));
    knock(&ns, &[("udp", 7002)]);
    let slow = ns.run(|| connect_from("10.0.0.1"));
    // The right sequence, in time: open for 10.0.0.1, not for 10.0.0.3.
    knock(&ns, &right);
    let opened = ns.run(|| connect_from("10.0.0.1"));
    let other = ns.run(|| connect_from("10.0.0.3"));
    // And closed again after 3 s.
    std::thread::sleep(Duration::from_millis(3500));
    let later = ns.run(|| connect_from("10.0.0.1"));
    demo.signal(libc::SIGINT);
    let (code, _, stderr) = demo.finish();
    let _ = std::fs::remove_file(&rules);
    assert_eq!(code, Some(0), "{stderr}");
    let is_refused = |r: &io::Result<()>| matches!(r, Err(e) if e.kind() == io::ErrorKind::ConnectionRefused);
    assert!(is_refused(&wrong), "wrong order opened the port: {wrong:?}");
    assert!(is_refused(&slow), "a slow sequence opened the port: {slow:?}");
    assert!(opened.is_ok(), "the right sequence did not open the port: {opened:?}\n{stderr}");
    assert!(is_refused(&other), "open for another source: {other:?}");
    assert!(is_refused(&later), "still open after its time: {later:?}");
    assert!(stderr.contains("port knock sequence completed"), "{stderr}");
}

/// Connect from kernel address `src` to the protected echo port (2 s at most).
fn connect_from(src: &str) -> io::Result<()> {
    let sock = socket_from(src)?;
    sock.connect_timeout(&SocketAddr::new(STACK_V4, 7).into(), Duration::from_secs(2))
}

/// A kernel TCP socket bound to `src` (port 0), ready for `connect_timeout`.
fn socket_from(src: &str) -> io::Result<socket2::Socket> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.bind(&SocketAddr::new(src.parse().unwrap(), 0).into())?;
    Ok(s)
}

/// `demo gateway` between three namespaces: the client's (default routes into the TUN
/// device), the gateway's own (where the demo runs and its host sockets live) and a
/// server's, joined to the gateway's by a veth pair. Whatever the client sends reaches
/// the server through the gateway: curl (IPv4 and IPv6), 64 MiB each way with equal
/// SHA-256, DNS-like UDP queries answered from the address they were sent to; the
/// server sees the gateway's address. A `reject` rule makes the client's connect fail
/// with "refused", a `drop` rule makes it time out.
#[test]
fn gateway_relays_a_client_namespace_through_the_policy() {
    if !netns::require_tool("curl", "curl") {
        return;
    }
    let Some(gw) = NetNs::new("gw") else { return };
    let Some(srv) = NetNs::new("gwsrv") else { return };
    let Some(cli) = NetNs::new("gwcli") else { return };
    let ip = |args: &[&str]| {
        let out = netns::exec_here(args, Duration::from_secs(10)).expect("ip ran");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    // The link between the gateway's namespace and the server's (both ends are created
    // inside their namespaces; nothing is configured in the root namespace).
    ip(&[
        "ip",
        "link",
        "add",
        "tsgwa0",
        "netns",
        gw.name(),
        "type",
        "veth",
        "peer",
        "name",
        "tsgwb0",
        "netns",
        srv.name(),
    ]);
    for (ns, dev, v4, v6) in
        [(&gw, "tsgwa0", "192.168.77.1/24", "fd77::1/64"), (&srv, "tsgwb0", "192.168.77.2/24", "fd77::2/64")]
    {
        ip(&["ip", "-n", ns.name(), "addr", "add", v4, "dev", dev]);
        ip(&["ip", "-n", ns.name(), "addr", "add", v6, "dev", dev, "nodad"]);
        ip(&["ip", "-n", ns.name(), "link", "set", dev, "up"]);
    }

    // The server's sockets are opened inside its namespace and served from here.
    const BODY: &str = "hello from the server namespace\n";
    let (http4, http6, bulk, dns) = srv.run(|| {
        let http4 = std::net::TcpListener::bind("192.168.77.2:8080").unwrap();
        let http6 = std::net::TcpListener::bind("[fd77::2]:8080").unwrap();
        let bulk = std::net::TcpListener::bind("192.168.77.2:9000").unwrap();
        let dns = UdpSocket::bind("192.168.77.2:5353").unwrap();
        for blocked in [9001, 9002] {
            // Listening, so that only the gateway's policy can make these fail.
            std::mem::forget(std::net::TcpListener::bind(("192.168.77.2", blocked)).unwrap());
        }
        (http4, http6, bulk, dns)
    });
    for l in [http4, http6] {
        std::thread::spawn(move || {
            for s in l.incoming().take(2) {
                let Ok(mut s) = s else { continue };
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match io::Read::read(&mut s, &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let peer = s.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
                let body = format!("{BODY}peer {peer}\n");
                let reply =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                let _ = io::Write::write_all(&mut s, reply.as_bytes());
            }
        });
    }
    let down = pattern(31, 64 << 20);
    let up = pattern(32, 64 << 20);
    let bulk_server = {
        let down = down.clone();
        std::thread::spawn(move || {
            let (s, peer) = bulk.accept().unwrap();
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            let mut w = s.try_clone().unwrap();
            let sender = std::thread::spawn(move || {
                io::Write::write_all(&mut w, &down).unwrap();
                w.shutdown(std::net::Shutdown::Write).unwrap();
            });
            let mut got = Vec::new();
            io::Read::read_to_end(&mut &s, &mut got).unwrap();
            sender.join().unwrap();
            (peer, sha256(&got), got.len())
        })
    };
    dns.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let dns_server = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        for _ in 0..20 {
            let Ok((n, from)) = dns.recv_from(&mut buf) else { return };
            // A DNS-like answer: the query's id and question, then an answer.
            let mut answer = buf[..n].to_vec();
            answer.extend_from_slice(b" -> 192.168.77.2");
            dns.send_to(&answer, from).unwrap();
        }
    });

    let rules = rules_file("gw", "reject in tcp dport 9001\ndrop in tcp dport 9002\n");
    let mut demo =
        Demo::start(&gw, &["gateway", "--tun", "tsgw0", "--client-ns", cli.name(), "--rules", rules.to_str().unwrap()]);
    let mut exited = false;
    let url = "http://192.168.77.2:8080/";
    let ready = netns::wait_until(Duration::from_secs(30), || {
        exited = demo.exited();
        exited || matches!(curl(&cli, &[url]), Ok((true, _)))
    });
    if exited || !ready {
        demo.fail(if exited { "demo gateway exited early" } else { "the server was not reachable within 30 s" });
    }
    // curl, v4 and v6 (the first successful curl above was the v4 listener's first).
    let (ok, page) = curl(&cli, &[url]).unwrap();
    assert!(ok && page == format!("{BODY}peer 192.168.77.1\n"), "the server sees the gateway's address: {page}");
    let (ok, page6) = curl(&cli, &["-g", "http://[fd77::2]:8080/"]).unwrap();
    assert!(ok && page6 == format!("{BODY}peer fd77::1\n"), "{page6}");

    // 64 MiB each way.
    let back = cli.run_timeout(Duration::from_secs(300), {
        let up = up.clone();
        move || {
            let c = kernel_connect("192.168.77.2:9000".parse().unwrap()).unwrap();
            echo_through(&c, &up)
        }
    });
    assert_same("64 MiB server -> client through the gateway", &back, &down);
    let (peer, got_hash, got_len) = bulk_server.join().unwrap();
    assert_eq!((got_len, got_hash), (up.len(), sha256(&up)), "64 MiB client -> server through the gateway");
    assert_eq!(peer.ip().to_string(), "192.168.77.1");

    // DNS-like UDP, answered from the address the query went to.
    cli.run(|| {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let server: SocketAddr = "192.168.77.2:5353".parse().unwrap();
        let mut buf = [0u8; 512];
        for id in 0..20u16 {
            let query = format!("{id:04x} A example.test");
            s.send_to(query.as_bytes(), server).unwrap();
            let (n, from) = s.recv_from(&mut buf).unwrap_or_else(|e| panic!("query {id}: {e}"));
            assert_eq!(from, server, "query {id}: the answer's source");
            assert_eq!(&buf[..n], format!("{query} -> 192.168.77.2").as_bytes(), "query {id}");
        }
    });
    dns_server.join().unwrap();

    // The rules: reject -> refused at once, drop -> no answer at all.
    let (refused, dropped) = cli.run(|| {
        let t = std::time::Instant::now();
        let r = std::net::TcpStream::connect_timeout(&"192.168.77.2:9001".parse().unwrap(), Duration::from_secs(3));
        let refused = (r.map(drop).map_err(|e| e.kind()), t.elapsed());
        let d = std::net::TcpStream::connect_timeout(&"192.168.77.2:9002".parse().unwrap(), Duration::from_secs(3));
        (refused, d.map(drop).map_err(|e| e.kind()))
    });
    assert_eq!(refused.0, Err(io::ErrorKind::ConnectionRefused), "reject rule");
    assert!(refused.1 < Duration::from_secs(2), "refused at once, took {:?}", refused.1);
    assert_eq!(dropped, Err(io::ErrorKind::TimedOut), "drop rule");

    // Pings to anything beyond the gateway are answered by it.
    let out = cli.exec(&["ping", "-c", "1", "-W", "5", "192.168.77.2"], Duration::from_secs(20)).unwrap();
    assert!(out.status.success(), "ping: {}", String::from_utf8_lossy(&out.stdout));
    // The dashboard, on the stack's own address, lists the relayed flows.
    let (ok, dash) = curl(&cli, &["http://10.0.0.2/dashboard.json"]).unwrap();
    assert!(ok && dash.contains("192.168.77.2:9000"), "{dash}");

    demo.signal(libc::SIGINT);
    let (code, stdout, stderr) = demo.finish();
    let _ = std::fs::remove_file(&rules);
    assert_eq!(code, Some(0), "exit status\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains(&format!("gateway: namespace {} sends everything through tsgw0", cli.name())), "{stdout}");
    assert!(!cli.link_exists("tsgw0"), "the device is gone with the demo");
}

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
    if !netns::require_tool("curl", "curl") {
        return;
    }
    let Some(ns) = NetNs::new("demohttp") else { return };
    let mut demo = Demo::start(&ns, &["http", "--tun", "tsdemo0"]);

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
        assert!(sockets.contains(&listen), "no listener on {local}: {sockets}");
    }
    assert!(ns.link_exists("tsdemo0"));

    demo.signal(libc::SIGINT);
    let (code, stdout, stderr) = demo.finish();
    assert_eq!(code, Some(0), "exit status after SIGINT\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("curl http://10.0.0.2/"), "usage hints name the address:\n{stdout}");
    assert!(stdout.contains("curl -g http://[fd00::2]/"), "{stdout}");
    assert!(stdout.contains("ping -c 3 10.0.0.2"), "{stdout}");
    assert!(stdout.contains("stopped"), "{stdout}");
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

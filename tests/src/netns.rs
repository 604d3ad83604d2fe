//! Network namespaces for the TUN end-to-end tests.
//!
//! Every test that touches a TUN device runs inside its own namespace: [`NetNs::new`]
//! creates one (`ip netns add`), [`NetNs::run`] runs a closure on a thread that has
//! joined it with setns(2), so a `tunstack::runtime::Runtime` created there puts its
//! device in the namespace and `std::net` sockets opened there talk to it through the
//! namespace's kernel stack. [`NetNs::exec`] runs a command (curl, ping...) inside it
//! with a time limit. Dropping the `NetNs` kills what is left running in it and deletes
//! it, also when the test panics.
//!
//! When the machine cannot run such tests (not root, no CAP_NET_ADMIN / CAP_SYS_ADMIN,
//! no /dev/net/tun, no `ip`), `NetNs::new` prints why and returns `None` so the test
//! can return early, unless `TUNSTACK_REQUIRE_E2E=1`, in which case it panics: CI sets
//! it so that a skipped end-to-end test is a failure.

use std::ffi::CString;
use std::io::{self, Read};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Environment variable that turns a skip into a failure.
pub const REQUIRE_ENV: &str = "TUNSTACK_REQUIRE_E2E";

/// Prefix of every namespace these helpers create (CI checks none is left over).
pub const NAME_PREFIX: &str = "ts-";

/// Default limit for [`NetNs::run`].
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Linux capability numbers (include/uapi/linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// True when `TUNSTACK_REQUIRE_E2E=1`: end-to-end tests must run, not skip.
pub fn require_e2e() -> bool {
    std::env::var(REQUIRE_ENV).map(|v| v.trim() == "1").unwrap_or(false)
}

/// Report that an end-to-end test cannot run: panic when required, else print and skip.
pub fn skip<T>(reason: &str) -> Option<T> {
    if require_e2e() {
        panic!("TUN end-to-end test cannot run: {reason} ({REQUIRE_ENV}=1 forbids skipping)");
    }
    eprintln!("SKIPPED (TUN end-to-end test): {reason}; set {REQUIRE_ENV}=1 to make this a failure");
    None
}

/// A network namespace owned by one test.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Create `ts-<prefix>-<pid>-<n>` with its loopback up, or say why not (see the
    /// module documentation for when this returns `None`).
    pub fn new(prefix: &str) -> Option<NetNs> {
        if let Err(reason) = check_prerequisites() {
            return skip(&reason);
        }
        static CLEAN_STALE: std::sync::Once = std::sync::Once::new();
        CLEAN_STALE.call_once(delete_stale_namespaces);
        let tag: String = prefix.chars().filter(|c| c.is_ascii_alphanumeric()).take(12).collect();
        let name = format!("{NAME_PREFIX}{tag}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        match ip(&["netns", "add", &name]) {
            Ok(_) => {}
            Err(e) => return skip(&format!("`ip netns add {name}` failed: {e}")),
        }
        // From here on Drop cleans up.
        let ns = NetNs { name };
        if let Err(e) = ip(&["-n", &ns.name, "link", "set", "lo", "up"]) {
            panic!("setting lo up in {}: {e}", ns.name);
        }
        Some(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// /run/netns/NAME, the bind mount that keeps the namespace alive.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Run `f` on a new thread inside the namespace and return its result; a panic in
    /// `f` is resumed here. Panics if `f` has not finished within [`RUN_TIMEOUT`].
    pub fn run<T, F>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.run_timeout(RUN_TIMEOUT, f)
    }

    /// [`NetNs::run`] with an explicit limit. On timeout the thread is left behind
    /// (threads cannot be killed) and this panics, which fails the test and deletes
    /// the namespace.
    pub fn run_timeout<T, F>(&self, timeout: Duration, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let path = self.path();
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name(format!("netns-{}", self.name))
            .spawn(move || {
                let result = panic::catch_unwind(AssertUnwindSafe(move || {
                    enter(&path).unwrap_or_else(|e| panic!("setns into {}: {e}", path.display()));
                    f()
                }));
                let _ = tx.send(result);
            })
            .expect("spawn namespace thread");
        match rx.recv_timeout(timeout) {
            Ok(Ok(value)) => value,
            Ok(Err(payload)) => panic::resume_unwind(payload),
            Err(_) => panic!("the code run in namespace {} did not finish within {timeout:?}", self.name),
        }
    }

    /// A `Command` that runs `program args...` inside the namespace (`ip netns exec`).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        cmd
    }

    /// Run a command inside the namespace and collect its output; it is killed and
    /// `TimedOut` returned when it runs longer than `timeout`.
    pub fn exec(&self, args: &[&str], timeout: Duration) -> io::Result<Output> {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn()?;
        output_with_timeout(child, timeout)
            .map_err(|e| io::Error::new(e.kind(), format!("{args:?} in {}: {e}", self.name)))
    }

    /// Start a long-running command inside the namespace (stdout and stderr piped).
    /// `ip netns exec` execs the program, so the child's pid is the program's. Whatever
    /// still runs when the `NetNs` is dropped is killed.
    pub fn spawn(&self, args: &[&str]) -> io::Result<Child> {
        self.command(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()
    }

    /// Whether a network device of this name exists in the namespace.
    pub fn link_exists(&self, dev: &str) -> bool {
        Command::new("ip")
            .args(["-n", &self.name, "link", "show", "dev", dev])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Pids of the processes in the namespace (`ip netns pids`), without our own.
    pub fn pids(&self) -> Vec<i32> {
        let me = std::process::id() as i32;
        match Command::new("ip").args(["netns", "pids", &self.name]).output() {
            Ok(out) => String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .filter(|&p| p != me)
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        for pid in self.pids() {
            // SAFETY: kill(2) has no memory effects.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("warning: could not delete network namespace {}: {e}", self.name);
        }
    }
}

/// Move the calling thread into the namespace mounted at `path` (setns(2) with
/// CLONE_NEWNET). Threads it spawns afterwards start in that namespace too.
pub fn enter(path: &Path) -> io::Result<()> {
    let c =
        CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: plain syscalls on a NUL-terminated path and an fd we own.
    unsafe {
        let fd = libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let rc = libc::setns(fd, libc::CLONE_NEWNET);
        let err = io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// Wait until no IPv6 address in the calling thread's namespace is still tentative
/// (duplicate address detection, RFC 4862 5.4): a tentative source address cannot be
/// used yet. Gives up quietly after `timeout`; the test then fails on its own terms.
pub fn wait_ipv6_ready(timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match Command::new("ip").args(["-6", "addr", "show", "tentative"]).output() {
            Ok(out) if out.status.success() && out.stdout.iter().all(u8::is_ascii_whitespace) => return,
            Ok(_) => thread::sleep(Duration::from_millis(50)),
            Err(_) => return,
        }
    }
}

/// Run a command in the calling thread's namespace (call it from inside
/// [`NetNs::run`]); killed and `TimedOut` after `timeout`.
pub fn exec_here(args: &[&str], timeout: Duration) -> io::Result<Output> {
    let (program, rest) = args.split_first().ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let child = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("starting {program}: {e}")))?;
    output_with_timeout(child, timeout).map_err(|e| io::Error::new(e.kind(), format!("{args:?}: {e}")))
}

/// Whether `program` can be started (`program --version` or `-V`); when it cannot,
/// this skips (or, with `TUNSTACK_REQUIRE_E2E=1`, fails) like [`NetNs::new`].
pub fn require_tool(program: &str, package: &str) -> bool {
    for flag in ["--version", "-V"] {
        let ran =
            Command::new(program).arg(flag).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
        if ran.is_ok() {
            return true;
        }
    }
    skip::<()>(&format!("`{program}` is not installed (package {package})"));
    false
}

/// Poll `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Wait for `child` to exit, at most `timeout`: `Ok(None)` if it still runs.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Collect a child's output, killing it after `timeout`.
pub fn output_with_timeout(mut child: Child, timeout: Duration) -> io::Result<Output> {
    let stdout = child.stdout.take().map(reader);
    let stderr = child.stderr.take().map(reader);
    let status = match wait_timeout(&mut child, timeout)? {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            let err = stderr.map(|h| h.join().unwrap_or_default()).unwrap_or_default();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("killed after {timeout:?}; stderr: {}", String::from_utf8_lossy(&err)),
            ));
        }
    };
    let stdout = stdout.map(|h| h.join().unwrap_or_default()).unwrap_or_default();
    let stderr = stderr.map(|h| h.join().unwrap_or_default()).unwrap_or_default();
    Ok(Output { status, stdout, stderr })
}

/// Read a pipe to its end on a thread.
pub fn reader<R: Read + Send + 'static>(mut pipe: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Delete namespaces left behind by test processes that were killed before their
/// `NetNs` could be dropped (`ts-<tag>-<pid>-<n>` whose pid no longer runs).
fn delete_stale_namespaces() {
    let Ok(out) = ip(&["netns", "list"]) else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(rest) = name.strip_prefix(NAME_PREFIX) else { continue };
        let mut parts = rest.rsplit('-');
        let (Some(_counter), Some(pid)) = (parts.next(), parts.next()) else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("deleting stale test namespace {name} (its process {pid} is gone)");
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Run `ip args...`; an error carries its stderr.
fn ip(args: &[&str]) -> io::Result<Output> {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(io::Error::other(format!(
            "ip {}: {} {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Everything `NetNs` needs, or the first thing missing.
fn check_prerequisites() -> Result<(), String> {
    let caps = effective_caps().ok_or("cannot read CapEff from /proc/self/status")?;
    for (bit, name) in [(CAP_NET_ADMIN, "CAP_NET_ADMIN"), (CAP_SYS_ADMIN, "CAP_SYS_ADMIN")] {
        if caps & (1 << bit) == 0 {
            // SAFETY: geteuid has no preconditions.
            let uid = unsafe { libc::geteuid() };
            return Err(format!("missing {name} (euid {uid}); run the tests as root"));
        }
    }
    if !Path::new("/dev/net/tun").exists() {
        return Err("/dev/net/tun does not exist (no TUN support)".into());
    }
    match Command::new("ip").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("`ip -V` failed ({s}); install iproute2")),
        Err(e) => Err(format!("no `ip` binary ({e}); install iproute2")),
    }
}

/// The effective capability set of this process.
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    //! Self-tests of the helper; they need no tunstack runtime.
    use super::*;

    fn listed(name: &str) -> bool {
        let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().any(|l| l.split_whitespace().next() == Some(name))
    }

    fn net_ns_id(path: &str) -> String {
        std::fs::read_link(path).unwrap().to_string_lossy().into_owned()
    }

    #[test]
    fn creates_enters_and_deletes_a_namespace() {
        let Some(ns) = NetNs::new("self") else { return };
        let name = ns.name().to_string();
        assert!(name.starts_with("ts-self-"));
        assert!(listed(&name));
        let outside = net_ns_id("/proc/thread-self/ns/net");
        let (inside, links) = ns.run(|| {
            let id = net_ns_id("/proc/thread-self/ns/net");
            // A thread spawned from there is in the namespace too.
            let child = thread::spawn(|| net_ns_id("/proc/thread-self/ns/net")).join().unwrap();
            assert_eq!(child, id);
            let out = Command::new("ip").args(["-o", "link", "show"]).output().unwrap();
            (id, String::from_utf8_lossy(&out.stdout).into_owned())
        });
        assert_ne!(inside, outside, "the closure ran in another namespace");
        assert_eq!(net_ns_id("/proc/thread-self/ns/net"), outside, "the caller stayed where it was");
        // A fresh namespace has only lo, and it is up.
        assert_eq!(links.lines().count(), 1, "{links}");
        assert!(links.contains("lo:") && links.contains("UP"), "{links}");
        drop(ns);
        assert!(!listed(&name));
    }

    #[test]
    fn exec_runs_inside_and_times_out() {
        let Some(ns) = NetNs::new("exec") else { return };
        let out = ns.exec(&["ip", "-o", "link", "show"], Duration::from_secs(10)).unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
        let started = Instant::now();
        let err = ns.exec(&["sleep", "30"], Duration::from_millis(300)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(25), "the command was killed");
    }

    #[test]
    fn drop_kills_leftover_processes() {
        let Some(ns) = NetNs::new("kill") else { return };
        let mut child = ns.spawn(&["sleep", "60"]).unwrap();
        assert!(wait_until(Duration::from_secs(10), || ns.pids().contains(&(child.id() as i32))));
        drop(ns);
        let status = wait_timeout(&mut child, Duration::from_secs(10)).unwrap().expect("killed by drop");
        assert!(!status.success());
    }

    #[test]
    fn a_panic_inside_propagates_and_the_namespace_is_deleted() {
        let Some(ns) = NetNs::new("panic") else { return };
        let name = ns.name().to_string();
        let result = panic::catch_unwind(AssertUnwindSafe(move || {
            let _ns = ns;
            _ns.run(|| panic!("boom inside"));
        }));
        let payload = result.unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom inside"));
        assert!(!listed(&name));
    }

    #[test]
    fn run_timeout_fails_instead_of_hanging() {
        let Some(ns) = NetNs::new("slow") else { return };
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            ns.run_timeout(Duration::from_millis(100), || thread::sleep(Duration::from_secs(2)))
        }));
        assert!(result.is_err());
    }
}

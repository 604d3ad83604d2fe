//! Thin wrappers over the few system calls and /proc files the harness needs.

use std::io;

/// Raise RLIMIT_NOFILE (soft and hard) to at least `WANT`, as far as the kernel allows:
/// 10k idle connections need 10k descriptors on the kernel's client side (and on the
/// Linux server). Children inherit the limit.
pub fn raise_nofile_limit() -> u64 {
    const WANT: u64 = 65_536;
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur >= WANT {
            return lim.rlim_cur;
        }
        let want = libc::rlimit { rlim_cur: WANT, rlim_max: lim.rlim_max.max(WANT) };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
            return WANT;
        }
        // Not privileged to raise the hard limit: take what the hard limit allows.
        let soft = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &soft) == 0 {
            return lim.rlim_max;
        }
        lim.rlim_cur
    }
}

/// User and system CPU time of the whole calling process (every thread, also the ones
/// that have exited), in microseconds.
pub fn rusage_self() -> (u64, u64) {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (0, 0);
    }
    let us = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
    (us(ru.ru_utime), us(ru.ru_stime))
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

/// Resident set size of process `pid` in bytes.
pub fn rss_of(pid: u32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm"))?;
    crate::stats::parse_statm_rss(&text, page_size()).ok_or_else(|| io::Error::other("cannot parse statm"))
}

/// CPU time (user + system) of process `pid` so far, in seconds, from `/proc/PID/stat`
/// (clock ticks: 10 ms steps at the usual 100 Hz).
pub fn cpu_secs_of(pid: u32) -> io::Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = crate::stats::parse_stat_cpu_ticks(&text).ok_or_else(|| io::Error::other("cannot parse stat"))?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Ok(ticks as f64 / if hz > 0 { hz as f64 } else { 100.0 })
}

/// The machine, for the top of the report.
pub struct Machine {
    pub nproc: usize,
    pub cpu: String,
    pub kernel: String,
    pub mem_gib: f64,
    pub load: String,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let kernel =
        std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    Machine {
        nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        cpu,
        kernel,
        mem_gib: mem_kib / 1024.0 / 1024.0,
        load,
    }
}

/// Whether we run with CAP_NET_ADMIN and CAP_SYS_ADMIN (namespaces, TUN, veth).
pub fn is_privileged() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    let Some(line) = status.lines().find(|l| l.starts_with("CapEff:")) else { return false };
    let Ok(caps) = u64::from_str_radix(line["CapEff:".len()..].trim(), 16) else { return false };
    caps & (1 << 12) != 0 && caps & (1 << 21) != 0
}

/// Block SIGINT, SIGTERM and SIGHUP in the calling thread (and the threads it spawns
/// later) and return the set, for a thread that waits for them with sigwait(3).
/// Child processes get an empty mask from std's `Command`.
pub fn block_termination_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local, then pthread_sigmask on this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Wait for one of the signals in `set` (blocked beforehand); returns its number.
pub fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: sigwait with a valid set and out pointer.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

/// Processes whose parent is `pid` (from /proc/N/stat).
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| crate::stats::parse_stat_ppid(&s))
                .is_some_and(|pp| pp == pid)
        })
        .collect()
}

/// The command name of process `pid` (/proc/N/comm).
pub fn process_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|s| s.trim().to_string())
}

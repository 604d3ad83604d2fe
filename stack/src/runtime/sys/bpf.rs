//! Loading an eBPF socket filter (`bpf(BPF_PROG_LOAD)`) and making it the steering
//! program of a multi-queue TUN device (`TUNSETSTEERINGEBPF`). No crate wraps these two
//! calls for a program assembled by hand (`runtime/steer.rs`); this is all of it.

use std::ffi::c_int;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::runtime::steer::Insn;

const BPF_PROG_LOAD: c_int = 5;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
/// Bytes of verifier log kept for the error message of a refused program.
const LOG_SIZE: usize = 16 << 10;

/// The leading fields of `union bpf_attr` that `BPF_PROG_LOAD` reads (the kernel takes
/// a shorter attribute and treats the missing tail as zero).
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// Load `prog` as a socket filter. On a refusal by the verifier the error carries the
/// end of its log.
pub(crate) fn load_socket_filter(prog: &[Insn]) -> io::Result<OwnedFd> {
    let insns: Vec<[u8; 8]> = prog.iter().map(Insn::encode).collect();
    let license = b"GPL\0";
    let mut log = vec![0u8; LOG_SIZE];
    let mut name = [0u8; 16];
    name[..8].copy_from_slice(b"ts_steer");
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: LOG_SIZE as u32,
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
    };
    // SAFETY: bpf(BPF_PROG_LOAD) reads `size_of::<ProgLoadAttr>()` bytes of `attr`,
    // the instructions and the license through the pointers in it, and writes at most
    // `log_size` bytes to `log`; all of them live on this frame until it returns. On
    // success it returns a new descriptor, which nothing else owns.
    let fd = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &attr as *const ProgLoadAttr, mem::size_of::<ProgLoadAttr>())
    };
    if fd < 0 {
        let err = io::Error::last_os_error();
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        let text = String::from_utf8_lossy(&log[..end]);
        let tail: String = text.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
        return Err(io::Error::new(err.kind(), format!("bpf(BPF_PROG_LOAD): {err}; verifier: {tail}")));
    }
    // SAFETY: `fd` is a descriptor the kernel just created for us (see above).
    Ok(unsafe { OwnedFd::from_raw_fd(fd as c_int) })
}

/// Make `prog` the steering program of the TUN device `tun` is a queue of (the kernel
/// keeps its own reference; `prog` may be closed afterwards).
pub(crate) fn set_steering(tun: BorrowedFd<'_>, prog: &OwnedFd) -> io::Result<()> {
    let raw: c_int = prog.as_raw_fd();
    // SAFETY: TUNSETSTEERINGEBPF reads one int (the program's descriptor) through the
    // pointer, which points to `raw` on this frame.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETSTEERINGEBPF as _, &raw as *const c_int) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

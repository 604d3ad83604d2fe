//! `--netns NAME`: the demo creates (or reuses) a named network namespace, moves itself
//! into it before any thread or device exists, brings its loopback up, and deletes the
//! namespace again when it stops, if it created it. Everything the demo does (the TUN
//! device, its addresses and routes) then lives only inside that namespace, and
//! `ip netns exec NAME ...` reaches it from another terminal.
//!
//! Named namespaces are the files under /run/netns that `ip netns add` bind-mounts;
//! entering one is setns(2) on that file (what `ip netns exec` does).

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;

use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

/// Where iproute2 keeps named network namespaces.
const NETNS_DIR: &str = "/run/netns";

/// A named network namespace the process has entered. Deleted on drop if this process
/// created it.
#[derive(Debug)]
pub struct Netns {
    name: String,
    created: bool,
}

/// Check a namespace name the way it must look to be a file name under /run/netns.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 || name == "." || name == ".." {
        return Err(format!("--netns `{name}`: a namespace name has 1 to 64 characters and is not . or .."));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(format!("--netns `{name}`: use letters, digits, '-', '_' and '.' only"));
    }
    Ok(())
}

/// Run `ip ARGS` (iproute2), with its error output in the error.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running `ip {}`: {e} (the iproute2 package provides `ip`)", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!("`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

impl Netns {
    /// Create `name` unless it exists, move the calling thread into it, and bring its
    /// loopback up. Call it before spawning threads: threads created afterwards start
    /// in the same namespace.
    pub fn enter(name: &str) -> Result<Netns, String> {
        validate_name(name)?;
        let path: PathBuf = [NETNS_DIR, name].iter().collect();
        let created = !path.exists();
        if created {
            ip(&["netns", "add", name])?;
        }
        let ns = Netns { name: name.to_owned(), created };
        let file = File::open(&path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        move_into_link_name_space(std::os::fd::AsFd::as_fd(&file), Some(LinkNameSpaceType::Network))
            .map_err(|e| format!("entering network namespace {name}: {e} (this needs CAP_SYS_ADMIN: run as root)"))?;
        ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Create `name` unless it exists (deleting it on drop if created here), without
    /// entering it; bring its loopback up.
    pub fn open(name: &str) -> Result<Netns, String> {
        validate_name(name)?;
        let path: PathBuf = [NETNS_DIR, name].iter().collect();
        let created = !path.exists();
        if created {
            ip(&["netns", "add", name])?;
        }
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(Netns { name: name.to_owned(), created })
    }

    /// Run `f` on the calling thread inside this namespace, then move the thread back
    /// to the namespace it was in: what `f` creates (a TUN device, say) stays there,
    /// descriptors keep working from anywhere.
    pub fn run_in<T>(&self, f: impl FnOnce() -> T) -> Result<T, String> {
        let home = File::open("/proc/thread-self/ns/net").map_err(|e| format!("opening our own namespace: {e}"))?;
        let path: PathBuf = [NETNS_DIR, &self.name].iter().collect();
        let there = File::open(&path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        let enter = |f: &File, what: &str| {
            move_into_link_name_space(std::os::fd::AsFd::as_fd(f), Some(LinkNameSpaceType::Network))
                .map_err(|e| format!("entering {what}: {e} (this needs CAP_SYS_ADMIN: run as root)"))
        };
        enter(&there, &self.name)?;
        let out = f();
        enter(&home, "our own namespace again")?;
        Ok(out)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this process created the namespace (and so deletes it on drop).
    pub fn created(&self) -> bool {
        self.created
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.created {
            if let Err(e) = ip(&["netns", "del", &self.name]) {
                eprintln!("demo: could not delete network namespace {}: {e}", self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["try", "ts-demo.1", "a_b"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}

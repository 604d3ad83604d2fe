//! What both servers share: an accept loop that hands each connection to its own
//! thread, with a bound on how many such threads exist at once.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use tunstack::net::{TcpListener, TcpStream};

/// Connections served at once per server; further ones are closed right after accept.
pub(crate) const MAX_CONNECTIONS: usize = 512;

/// Give up on a socket after this many errors in a row (e.g. the runtime was dropped).
const MAX_CONSECUTIVE_ERRORS: u32 = 50;

/// Accept forever on `listener`, running `serve` on a new thread for each connection.
/// Returns when accepting keeps failing, which is what happens once the runtime is gone.
pub(crate) fn accept_loop<F>(name: &'static str, listener: TcpListener, active: Arc<AtomicUsize>, serve: F)
where
    F: Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
{
    let serve = Arc::new(serve);
    let local = listener.local_addr().ok();
    let mut errors = 0;
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(conn) => {
                errors = 0;
                conn
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                errors += 1;
                tracing::debug!(server = name, ?local, error = %e, "accept failed");
                if errors >= MAX_CONSECUTIVE_ERRORS {
                    tracing::info!(server = name, ?local, error = %e, "listener stopped");
                    return;
                }
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        // Reserve a slot before spawning; give it back when the thread ends.
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(server = name, %peer, "too many connections, closing this one");
            drop(stream);
            continue;
        }
        tracing::debug!(server = name, %peer, "accepted");
        let guard = SlotGuard(active.clone());
        let serve = serve.clone();
        let spawned = thread::Builder::new().name(format!("{name}-conn")).spawn(move || {
            let _guard = guard;
            serve(stream, peer);
            tracing::debug!(server = name, %peer, "connection done");
        });
        if let Err(e) = spawned {
            // The closure (and with it the stream and the slot) was dropped.
            tracing::warn!(server = name, %peer, error = %e, "cannot spawn a thread for the connection");
        }
    }
}

/// Frees one connection slot when dropped (also when the handler panics).
struct SlotGuard(Arc<AtomicUsize>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Spawn a named server thread.
pub(crate) fn spawn_named<F: FnOnce() + Send + 'static>(name: String, f: F) -> io::Result<()> {
    thread::Builder::new().name(name).spawn(f).map(|_| ())
}

/// Whether `errors` consecutive failures mean a socket is gone for good.
pub(crate) fn too_many_errors(errors: u32) -> bool {
    errors >= MAX_CONSECUTIVE_ERRORS
}

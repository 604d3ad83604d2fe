//! The services as tokio tasks on one thread (a `current_thread` runtime): no thread
//! per connection, no hand-off between threads.
//!
//! - **tunstack (async)**: `tunstack::tokio::AsyncRuntime` drives the TUN device from
//!   the same thread as the tasks (with `--queues` N > 1: N shards, thread per core with
//!   `ShardedRuntime`, each shard's thread running its own copy of the services; with
//!   `--workers` too, the shards' driver tasks on a multi-thread runtime). Every service of [`super::blocking`] is written
//!   again as tasks: sink, source, echo, request/response (a task per connection),
//!   hold. HTTP on port 80 is exactly what `demo http` runs (`demo::HttpServer::serve`);
//!   on [`HTTP_MANY_PORT`] the same hyper service (the demo's `route`, the same hyper
//!   settings) behind a listener with a backlog for 10k connections arriving at once
//!   (`HttpServer::serve` binds with the default backlog of 128).
//! - **Linux + hyper**: the same hyper service on `tokio::net` listeners, Linux's own
//!   TCP, on ports 80 and [`HTTP_MANY_PORT`]; its pages come from a fixed empty
//!   snapshot of a stack (the home page's counters read 0).
//!
//! The connection tasks have no timeouts of their own: they end when the client closes
//! or resets, or with the process (the harness kills it after the system's workloads).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use demo::http::{route, Source, HEADER_READ_TIMEOUT, MAX_CONNECTIONS};
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tunstack::tokio::AsyncRuntime;

use super::blocking::{bind_std, kernel_retransmits, runtime_config};
use super::{control_loop, Control, ServeArgs, CHUNK};
use crate::proto::*;

/// Accept errors in a row after which an accept loop gives up.
const MAX_ACCEPT_ERRORS: u32 = 100;

/// A listener of either stack, as the accept loops use it.
trait Listener: Send + Sync + 'static {
    type S: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = io::Result<Self::S>> + Send;
}

impl Listener for tunstack::tokio::TcpListener {
    type S = tunstack::tokio::TcpStream;
    async fn accept(&self) -> io::Result<Self::S> {
        tunstack::tokio::TcpListener::accept(self).await.map(|(s, _)| s)
    }
}

impl Listener for tokio::net::TcpListener {
    type S = tokio::net::TcpStream;
    async fn accept(&self) -> io::Result<Self::S> {
        tokio::net::TcpListener::accept(self).await.map(|(s, _)| s)
    }
}

/// A current-thread tokio runtime with I/O and timers.
fn single_thread() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// The tokio runtime of tunstack's async server: one queue, a current-thread runtime
/// (the device, the stack and every connection on this thread); with `queues` > 1, a
/// multi-thread runtime with one worker per queue, over which the shards' driver tasks
/// and the connections' tasks spread; `workers` (`--workers`): a multi-thread runtime
/// with that many workers whatever the queues.
fn tunstack_runtime(queues: usize, workers: Option<usize>) -> io::Result<tokio::runtime::Runtime> {
    let workers = match workers {
        Some(w) => w.max(1),
        None if queues <= 1 => return single_thread(),
        None => queues,
    };
    tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()
}

/// tunstack's async runtime with several queues and no `--workers`: thread per core
/// (`tunstack::tokio::ShardedRuntime`): each shard's thread runs its own copy of every
/// service, on a current-thread runtime, for the connections that shard owns.
fn serve_tunstack_sharded(args: &ServeArgs) -> io::Result<()> {
    let ip = IpAddr::V4(args.addr);
    let ctl = Arc::new(Control::default());
    let held: Arc<Mutex<Vec<tunstack::tokio::TcpStream>>> = Arc::default();
    let (app_ctl, app_held) = (ctl.clone(), held.clone());
    let rt = tunstack::tokio::ShardedRuntime::new(runtime_config(args)?, move |h| {
        let (ctl, held) = (app_ctl.clone(), app_held.clone());
        async move {
            let bind = |port: u16, backlog: usize| {
                tunstack::tokio::TcpListener::bind_with_backlog(&h, SocketAddr::new(ip, port), backlog)
                    .expect("bind on the shard")
            };
            spawn_accept_loop(bind(SINK_PORT, 128), sink_conn);
            spawn_accept_loop(bind(SOURCE_PORT, 128), source_conn);
            spawn_accept_loop(bind(ECHO_PORT, 128), echo_conn);
            spawn_accept_loop(bind(RR_PORT, 1024), rr_conn);
            spawn_hold_into(bind(HOLD_PORT, 4096), ctl, held);
            demo::HttpServer::serve(&h, &[ip], HTTP_PORT).expect("demo http on the shard");
            let src: Arc<dyn Source> = Arc::new(h.clone());
            tokio::spawn(hyper_accept_loop(bind(HTTP_MANY_PORT, HTTP_MANY_BACKLOG), src));
            std::future::pending::<()>().await
        }
    })?;
    ctl.report_shards_of(&rt.handle());
    let h = rt.handle();
    start_control(ctl, held, move || Some(h.stats().tcp_retransmits))?;
    loop {
        // The shards' threads serve; this one keeps the runtime alive.
        std::thread::park();
    }
}

/// tunstack's async runtime: the device, the stack and every connection on this thread
/// (with several queues: thread per core, see [`serve_tunstack_sharded`]; with
/// `--workers`, on a multi-thread runtime with that many workers).
pub fn serve_tunstack(args: &ServeArgs) -> io::Result<()> {
    if args.queues > 1 && args.workers.is_none() {
        return serve_tunstack_sharded(args);
    }
    tunstack_runtime(args.queues, args.workers)?.block_on(async {
        let rt = AsyncRuntime::new(runtime_config(args)?)?;
        let h = rt.handle();
        let ip = IpAddr::V4(args.addr);
        let bind = |port: u16, backlog: usize| {
            tunstack::tokio::TcpListener::bind_with_backlog(&h, SocketAddr::new(ip, port), backlog)
        };
        spawn_accept_loop(bind(SINK_PORT, 128)?, sink_conn);
        spawn_accept_loop(bind(SOURCE_PORT, 128)?, source_conn);
        spawn_accept_loop(bind(ECHO_PORT, 128)?, echo_conn);
        spawn_accept_loop(bind(RR_PORT, 1024)?, rr_conn);
        let ctl = Arc::new(Control::for_tunstack(&h));
        let held = spawn_hold_loop(bind(HOLD_PORT, 4096)?, ctl.clone());
        // `demo http`'s server, as `demo http` runs it.
        demo::HttpServer::serve(&h, &[ip], HTTP_PORT)?;
        let src: Arc<dyn Source> = Arc::new(h.clone());
        tokio::spawn(hyper_accept_loop(bind(HTTP_MANY_PORT, HTTP_MANY_BACKLOG)?, src));
        start_control(ctl, held, move || Some(h.stats().tcp_retransmits))?;
        std::future::pending::<()>().await;
        // Keeps the runtime (and its device) alive as long as the tasks.
        drop(rt);
        Ok(())
    })
}

/// The demo's hyper service on Linux's TCP (`tokio::net`), on one thread.
pub fn serve_linux_hyper(args: &ServeArgs) -> io::Result<()> {
    let ip = IpAddr::V4(args.addr);
    let tokio_listener = |port: u16, backlog: usize| -> io::Result<tokio::net::TcpListener> {
        let l = bind_std(SocketAddr::new(ip, port), backlog)?;
        l.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(l)
    };
    single_thread()?.block_on(async {
        let src: Arc<dyn Source> = Arc::new(demo::http::Snapshot::default());
        tokio::spawn(hyper_accept_loop(tokio_listener(HTTP_PORT, 1024)?, src.clone()));
        tokio::spawn(hyper_accept_loop(tokio_listener(HTTP_MANY_PORT, HTTP_MANY_BACKLOG)?, src));
        let ctl = Arc::new(Control::default());
        start_control(ctl, Arc::new(Mutex::new(Vec::<()>::new())), kernel_retransmits)?;
        std::future::pending::<io::Result<()>>().await
    })
}

/// The control channel on a thread of its own (it blocks on stdin); `release` drops the
/// held connections from there, which closes them (a tunstack socket may be closed from
/// any thread).
fn start_control<T: Send + 'static>(
    ctl: Arc<Control>,
    held: Arc<Mutex<Vec<T>>>,
    retransmits: impl Fn() -> Option<u64> + Send + 'static,
) -> io::Result<()> {
    let release = {
        let ctl = ctl.clone();
        move || {
            let streams = std::mem::take(&mut *held.lock().unwrap_or_else(PoisonError::into_inner));
            ctl.held.store(0, Ordering::Release);
            drop(streams);
        }
    };
    std::thread::Builder::new().name("control".into()).spawn(move || control_loop(ctl, release, retransmits))?;
    Ok(())
}

/// Accept until accepting keeps failing (or the stack is gone), calling `f` on each.
async fn accept_each<L: Listener>(listener: &L, mut f: impl FnMut(L::S)) {
    let mut errors = 0;
    while errors < MAX_ACCEPT_ERRORS {
        match listener.accept().await {
            Ok(s) => {
                errors = 0;
                f(s)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(_) => {
                errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Accept forever, a task per connection running `serve`.
fn spawn_accept_loop<L, F, Fut>(listener: L, serve: F)
where
    L: Listener,
    F: Fn(L::S) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = io::Result<()>> + Send + 'static,
{
    tokio::spawn(async move {
        accept_each(&listener, |s| {
            let conn = serve(s);
            tokio::spawn(async move {
                let _ = conn.await;
            });
        })
        .await
    });
}

/// Accept on the hold port and keep every connection (nothing is read).
fn spawn_hold_loop<L: Listener>(listener: L, ctl: Arc<Control>) -> Arc<Mutex<Vec<L::S>>> {
    let held = Arc::new(Mutex::new(Vec::new()));
    spawn_hold_into(listener, ctl, held.clone());
    held
}

/// [`spawn_hold_loop`] into a list shared with other accept loops (the shards').
fn spawn_hold_into<L: Listener>(listener: L, ctl: Arc<Control>, keep: Arc<Mutex<Vec<L::S>>>) {
    tokio::spawn(async move {
        accept_each(&listener, |s| {
            let mut v = keep.lock().unwrap_or_else(PoisonError::into_inner);
            v.push(s);
            ctl.held.store(v.len(), Ordering::Release);
        })
        .await
    });
}

/// The demo's hyper service on every connection `listener` accepts, at most
/// [`MAX_CONNECTIONS`] at once: `demo::HttpServer`'s accept loop, over any listener.
async fn hyper_accept_loop<L: Listener>(listener: L, src: Arc<dyn Source>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut errors = 0;
    while errors < MAX_ACCEPT_ERRORS {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(_) => {
                errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        errors = 0;
        let src = src.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let src = src.clone();
                async move { Ok::<_, Infallible>(route(req.method(), req.uri().path(), &*src)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = conn.await;
        });
    }
}

/// Read until the client half-closes, answer the byte count, close.
async fn sink_conn<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut total: u64 = 0;
    loop {
        match s.read(&mut buf).await? {
            0 => break,
            n => total += n as u64,
        }
    }
    s.write_all(&total.to_le_bytes()).await?;
    s.shutdown().await
}

/// Read the 8-byte length, send that many bytes, close.
async fn source_conn<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> io::Result<()> {
    let mut len = [0u8; 8];
    s.read_exact(&mut len).await?;
    let mut left = u64::from_le_bytes(len);
    let mut buf = vec![0u8; CHUNK];
    crate::proto::fill_pattern(&mut buf, 0);
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        s.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    s.shutdown().await?;
    // Wait for the client's close so that nothing is reset under it.
    let _ = s.read(&mut len).await;
    Ok(())
}

/// Echo until the client closes.
async fn echo_conn(mut s: tunstack::tokio::TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf).await? {
            0 => return s.shutdown().await,
            n => s.write_all(&buf[..n]).await?,
        }
    }
}

/// One request, one response, then wait for the client's close.
async fn rr_conn(mut s: tunstack::tokio::TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut req = [0u8; RR_REQUEST];
    s.read_exact(&mut req).await?;
    s.write_all(&[0x5a; RR_RESPONSE]).await?;
    let mut rest = [0u8; 64];
    while s.read(&mut rest).await? > 0 {}
    Ok(())
}

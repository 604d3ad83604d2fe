//! Ordinary Rust network applications on tunstack's async API, as the examples
//! (`demo/examples/`) run them and the end-to-end tests check them: a hyper 1.x
//! service, an axum `Router`, and a TCP forwarder built on
//! `tokio::io::copy_bidirectional` (the building block of port forwarding).
//!
//! Nothing here knows about tunstack beyond its `TcpListener`/`TcpStream`: the point is
//! that code written the way Rust network code is written today runs unchanged.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tunstack::runtime::RuntimeHandle;
use tunstack::tokio::{TcpListener, TcpStream};

use crate::http::{sockets_json, Source};

/// A hyper service: `GET /anything` answers with the path and the method, `POST` echoes
/// the request body.
pub async fn hello(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let text = if method == hyper::Method::POST {
        body
    } else {
        Bytes::from(format!("hello from hyper on tunstack: {method} {path}\n"))
    };
    Ok(Response::new(Full::new(text)))
}

/// Serve [`hello`] with hyper on every connection `listener` accepts, until the
/// runtime goes away.
pub async fn serve_hyper(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(hello));
            let _ = conn.await;
        });
    }
}

/// An axum application: `GET /` text, `GET /sockets.json` the stack's socket table,
/// `POST /echo` the body back, `GET /hello/{name}` a greeting.
pub fn router(stack: RuntimeHandle) -> Router {
    Router::new()
        .route("/", get(|| async { "hello from axum on tunstack\n" }))
        .route(
            "/hello/{name}",
            get(|axum::extract::Path(name): axum::extract::Path<String>| async move { format!("hello, {name}\n") }),
        )
        .route("/echo", post(|body: Bytes| async move { body }))
        .route(
            "/sockets.json",
            get(|State(stack): State<Arc<RuntimeHandle>>| async move { sockets_json(&Source::sockets(&*stack)) }),
        )
        .with_state(Arc::new(stack))
}

/// A tunstack listener as axum sees one (`axum::serve(listener, router)`).
pub struct AxumListener(pub TcpListener);

impl axum::serve::Listener for AxumListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.0.accept().await {
                Ok(conn) => return conn,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    // The runtime is gone: nothing will ever arrive again.
                    std::future::pending::<()>().await;
                }
                Err(e) => tracing::debug!(error = %e, "accept failed"),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// Forward every connection `listener` accepts to `target` over the host's own TCP
/// (a kernel socket), copying both ways with `tokio::io::copy_bidirectional` until both
/// sides are done. Returns when the runtime goes away.
pub async fn forward(listener: TcpListener, target: SocketAddr) {
    loop {
        let Ok((mut inside, peer)) = listener.accept().await else { return };
        tokio::spawn(async move {
            let mut outside = match tokio::net::TcpStream::connect(target).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, %target, error = %e, "forward: connect failed");
                    return;
                }
            };
            match tokio::io::copy_bidirectional(&mut inside, &mut outside).await {
                Ok((up, down)) => tracing::debug!(%peer, %target, up, down, "forward: done"),
                Err(e) => tracing::debug!(%peer, %target, error = %e, "forward: ended"),
            }
        });
    }
}

/// The `main` of the examples: `[--netns NAME]` from the command line (the example then
/// creates, enters and removes that namespace, like the demo), a single-threaded tokio
/// runtime, tunstack's async runtime on `tun0` (the stack is 10.0.0.2 and fd00::2, the
/// kernel 10.0.0.1/24 and fd00::1/64), `app` spawned with its handle, the commands to
/// try printed, and a clean stop on Ctrl-C.
pub fn example_main<F, Fut>(what: &str, try_these: &[&str], app: F) -> Result<(), String>
where
    F: FnOnce(RuntimeHandle) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let args: Vec<String> = std::env::args().skip(1).collect();
    let netns = match args.as_slice() {
        [] => None,
        [flag, name] if flag == "--netns" => Some(crate::netns::Netns::enter(name)?),
        _ => return Err("usage: [--netns NAME]".into()),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let stack = tunstack::tokio::AsyncRuntime::new(tunstack::runtime::RuntimeConfig::default())
            .map_err(|e| format!("creating tun0: {e} (run as root, e.g. with --netns try)"))?;
        tokio::spawn(app(stack.handle()));
        let pre = netns.as_ref().map(|ns| format!("ip netns exec {} ", ns.name())).unwrap_or_default();
        println!("{what} on tunstack, device {}; try:", stack.tun_name());
        for cmd in try_these {
            println!("  {pre}{cmd}");
        }
        println!("Ctrl-C stops it.");
        tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
        stack.shutdown().await;
        Ok::<(), String>(())
    })?;
    drop(netns);
    Ok(())
}

//! Real Rust applications on tunstack's async API, reached from the kernel's side of a
//! TUN device (in a network namespace): a hyper 1.x server and an axum `Router` fetched
//! with curl, and `tokio::io::copy_bidirectional` forwarding 64 MiB each way between a
//! tunstack connection and a kernel one, hashes checked.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener as KernelListener};
use std::thread;
use std::time::Duration;

use crate::e2e_util::*;
use tunstack::runtime::RuntimeConfig;
use tunstack::tokio::{AsyncRuntime, TcpListener};
use tunstack_tests::netns::{self, NetNs};

const CURL_TIMEOUT: Duration = Duration::from_secs(40);

fn curl(args: &[&str]) -> String {
    let mut full = vec!["curl", "-sS", "--max-time", "20"];
    full.extend_from_slice(args);
    let out = netns::exec_here(&full, CURL_TIMEOUT).expect("curl ran");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{full:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    stdout
}

/// Run `app` on a single-threaded tokio runtime with an async tunstack runtime on
/// `tun0` (the defaults: the stack is 10.0.0.2, the kernel 10.0.0.1), on a thread of
/// the test's namespace; `check` runs on the calling thread once the stack is up.
fn with_async_stack<A, F>(app: impl FnOnce(tunstack::runtime::RuntimeHandle) -> A + Send + 'static, check: F)
where
    A: std::future::Future<Output = ()> + Send + 'static,
    F: FnOnce(),
{
    with_async_stack_config(RuntimeConfig::default(), app, check)
}

/// [`with_async_stack`] with the runtime's configuration given.
fn with_async_stack_config<A, F>(
    config: RuntimeConfig,
    app: impl FnOnce(tunstack::runtime::RuntimeHandle) -> A + Send + 'static,
    check: F,
) where
    A: std::future::Future<Output = ()> + Send + 'static,
    F: FnOnce(),
{
    let (up_tx, up_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let offload = config.offload;
            let stack = AsyncRuntime::new(config).expect("async runtime on tun0");
            assert_eq!(stack.offload_stats().is_some(), offload, "offload device: {}", stack.device_description());
            tokio::spawn(app(stack.handle()));
            up_tx.send(()).unwrap();
            let _ = tokio::time::timeout(Duration::from_secs(300), stop_rx).await;
            stack.shutdown().await;
        });
    });
    up_rx.recv_timeout(Duration::from_secs(30)).expect("stack up");
    netns::wait_ipv6_ready(Duration::from_secs(10));
    check();
    let _ = stop_tx.send(());
    server.join().expect("server thread");
}

#[test]
fn hyper_server_fetched_with_curl() {
    if !netns::require_tool("curl", "curl") {
        return;
    }
    let Some(ns) = NetNs::new("hyper") else { return };
    ns.run(|| {
        with_async_stack(
            |stack| async move {
                let l = TcpListener::bind(&stack, "10.0.0.2:8080").unwrap();
                demo::apps::serve_hyper(l).await;
            },
            || {
                let out = curl(&["http://10.0.0.2:8080/some/path", "http://10.0.0.2:8080/again"]);
                assert_eq!(
                    out,
                    "hello from hyper on tunstack: GET /some/path\nhello from hyper on tunstack: GET /again\n"
                );
                let body = pattern(1, 200_000);
                let path = std::env::temp_dir().join(format!("hyper-body-{}", std::process::id()));
                std::fs::write(&path, &body).unwrap();
                let arg = format!("@{}", path.display());
                let out = netns::exec_here(
                    &["curl", "-sS", "--max-time", "20", "--data-binary", &arg, "http://10.0.0.2:8080/"],
                    CURL_TIMEOUT,
                )
                .unwrap();
                let _ = std::fs::remove_file(&path);
                assert!(out.status.success());
                assert_same("POST echo", &out.stdout, &body);
            },
        );
    });
}

#[test]
fn axum_router_fetched_with_curl() {
    if !netns::require_tool("curl", "curl") {
        return;
    }
    let Some(ns) = NetNs::new("axum") else { return };
    ns.run(|| {
        with_async_stack(
            |stack| async move {
                let l = TcpListener::bind(&stack, "10.0.0.2:3000").unwrap();
                let app = demo::apps::router(stack);
                let _ = axum::serve(demo::apps::AxumListener(l), app).await;
            },
            || {
                assert_eq!(curl(&["http://10.0.0.2:3000/"]), "hello from axum on tunstack\n");
                assert_eq!(curl(&["http://10.0.0.2:3000/hello/kernel"]), "hello, kernel\n");
                assert_eq!(curl(&["-d", "posted body", "http://10.0.0.2:3000/echo"]), "posted body");
                let table = curl(&["http://10.0.0.2:3000/sockets.json"]);
                assert!(table.contains("\"local\":\"10.0.0.2:3000\",\"remote\":null,\"state\":\"LISTEN\""), "{table}");
                assert!(table.contains("\"state\":\"ESTABLISHED\""), "{table}");
                let code = curl(&["-o", "/dev/null", "-w", "%{http_code}", "http://10.0.0.2:3000/nope"]);
                assert_eq!(code, "404");
            },
        );
    });
}

/// A kernel client -> tunstack listener -> `copy_bidirectional` -> kernel server: 64 MiB
/// each way through the forwarder, both directions' hashes checked at the far ends.
#[test]
fn copy_bidirectional_moves_64_mib_each_way() {
    copy_bidirectional_64_mib(false);
}

/// The same through the TUN device with TSO/checksum offload (the tokio driver reading
/// the segments cut from super-segments; the stack's own connection out to the kernel).
#[test]
fn copy_bidirectional_moves_64_mib_each_way_with_offloads() {
    copy_bidirectional_64_mib(true);
}

fn copy_bidirectional_64_mib(offload: bool) {
    let Some(ns) = NetNs::new(if offload { "fwdoff" } else { "fwd" }) else { return };
    ns.run_timeout(Duration::from_secs(240), move || {
        const SIZE: usize = 64 << 20;
        let up = pattern(11, SIZE);
        let down = pattern(12, SIZE);
        // The kernel server, on the kernel's side of the device (which exists once the
        // stack is up): reads everything the client sent (through the forwarder) while
        // sending its own 64 MiB back.
        let target = SocketAddr::from(([10, 0, 0, 1], 9100));
        let mut far_end = None;
        with_async_stack_config(
            RuntimeConfig::default().with(|c| c.offload = offload),
            move |stack| async move {
                let l = TcpListener::bind(&stack, "10.0.0.2:9000").unwrap();
                demo::apps::forward(l, target).await;
            },
            || {
                let server = KernelListener::bind(target).unwrap();
                let (up_want, down_send) = (sha256(&up), down.clone());
                far_end = Some(thread::spawn(move || {
                    let (s, _) = server.accept().unwrap();
                    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                    let mut w = s.try_clone().unwrap();
                    let sender = thread::spawn(move || {
                        w.write_all(&down_send).unwrap();
                        w.shutdown(Shutdown::Write).unwrap();
                    });
                    let mut got = Vec::with_capacity(SIZE);
                    (&s).read_to_end(&mut got).unwrap();
                    sender.join().unwrap();
                    assert_eq!(got.len(), SIZE, "server received");
                    assert_eq!(sha256(&got), up_want, "server received the client's bytes");
                }));
                let c = kernel_connect(SocketAddr::from(([10, 0, 0, 2], 9000))).unwrap();
                let back = echo_through(&c, &up);
                assert_same("client received the server's bytes", &back, &down);
            },
        );
        far_end.expect("server started").join().expect("far end");
    });
}

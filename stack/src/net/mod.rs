//! Blocking socket handles shaped like `std::net`'s, on top of a [`crate::runtime::Runtime`].
//!
//! Differences from std: constructors take the runtime (`TcpListener::bind(&rt, addr)`),
//! since there is no global OS stack. Errors are `std::io::Error` with std's kinds.
//!
//! - `TcpListener`: `bind(&rt, addr)`, `bind_with_backlog`, `accept() -> (TcpStream, SocketAddr)`,
//!   `incoming()`, `local_addr()`, `set_nonblocking()`.
//! - `TcpStream`: `connect(&rt, addr)`, `connect_timeout`, `Read`, `Write` (also for `&TcpStream`),
//!   `shutdown(Shutdown)`, `peer_addr`, `local_addr`, `set_nodelay`, `nodelay`,
//!   `set_read_timeout`, `set_write_timeout`, `set_nonblocking`, `try_clone`.
//!   Dropping the last clone closes gracefully.
//! - `UdpSocket`: `bind(&rt, addr)`, `send_to`, `recv_from`, `connect`, `send`, `recv`,
//!   `local_addr`, `peer_addr`, timeouts, `set_nonblocking`.

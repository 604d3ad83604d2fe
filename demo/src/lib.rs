//! The demo servers of tunstack: a TCP+UDP echo server and a small HTTP/1.1 server
//! that shows the stack's own socket table and counters.
//!
//! They are a library so that the end-to-end tests can run them in-process (on a thread
//! inside a network namespace); the `demo` binary adds the command line, the TUN device
//! setup and signal handling.

pub mod apps;
pub mod dashboard;
pub mod echo;
pub mod forward;
pub mod gateway;
pub mod http;
pub mod netns;
pub mod script_linux;
mod server;
pub mod signal;

pub use echo::EchoServer;
pub use http::HttpServer;

//! curl against the demo HTTP server through a TUN device (in a network namespace):
//! status codes, bodies, one connection reused for two URLs, IPv6.

use std::time::Duration;

use crate::e2e_util::*;
use demo::HttpServer;
use tunstack_tests::netns::{self, NetNs};

const CURL_TIMEOUT: Duration = Duration::from_secs(40);

fn curl(args: &[&str]) -> (String, String) {
    let mut full = vec!["curl", "-sS", "--max-time", "20"];
    full.extend_from_slice(args);
    let out = netns::exec_here(&full, CURL_TIMEOUT).expect("curl ran");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{full:?}: {}\n{stderr}", out.status);
    (stdout, stderr)
}

#[test]
fn curl_reuses_one_connection_for_two_urls() {
    if !netns::require_tool("curl", "curl") {
        return;
    }
    let Some(ns) = NetNs::new("curl") else { return };
    ns.run(|| {
        let rt = start_runtime();
        HttpServer::start(&rt.handle(), &[STACK_V4, STACK_V6], 80).expect("http server");
        let (stdout, stderr) =
            curl(&["-v", "-w", "\nHTTP_CODE=%{http_code}\n", "http://10.0.0.2/", "http://10.0.0.2/sockets.json"]);
        assert_eq!(stdout.matches("HTTP_CODE=200").count(), 2, "two 200s:\n{stdout}");
        assert!(stdout.contains("<h1>tunstack</h1>"), "home page:\n{stdout}");
        // The socket table shows our listener and curl's own connection.
        assert!(stdout.contains("\"local\":\"10.0.0.2:80\",\"remote\":null,\"state\":\"LISTEN\""), "{stdout}");
        assert!(stdout.contains("\"remote\":\"10.0.0.1:"), "{stdout}");
        assert!(stdout.contains("\"state\":\"ESTABLISHED\""), "{stdout}");
        // curl 7 prints "Re-using existing connection", curl 8 "Reusing existing ...".
        let lower = stderr.to_lowercase();
        assert!(
            lower.contains("re-using existing connection") || lower.contains("reusing existing"),
            "curl did not reuse the connection:\n{stderr}"
        );
        assert_eq!(stderr.matches("Connected to").count(), 1, "one TCP connection:\n{stderr}");
    });
}

#[test]
fn curl_over_ipv6_head_and_errors() {
    if !netns::require_tool("curl", "curl") {
        return;
    }
    let Some(ns) = NetNs::new("curl6") else { return };
    ns.run(|| {
        let rt = start_runtime();
        HttpServer::start(&rt.handle(), &[STACK_V4, STACK_V6], 80).expect("http server");

        let (stdout, _) = curl(&["-g", "-w", "\nHTTP_CODE=%{http_code}\n", "http://[fd00::2]/stats.json"]);
        assert!(stdout.contains("HTTP_CODE=200"), "{stdout}");
        assert!(stdout.contains("\"drops\""), "{stdout}");
        assert!(stdout.contains("\"bad_tcp_checksum\": "), "{stdout}");

        // HEAD: headers only.
        let (stdout, _) = curl(&["-g", "-I", "http://[fd00::2]/sockets"]);
        assert!(stdout.starts_with("HTTP/1.1 200 OK"), "{stdout}");
        assert!(stdout.to_lowercase().contains("content-length: "), "{stdout}");

        let (stdout, _) = curl(&["-o", "/dev/null", "-w", "%{http_code}", "http://10.0.0.2/no-such-page"]);
        assert_eq!(stdout, "404");
        let (stdout, _) = curl(&["-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", "http://10.0.0.2/"]);
        assert_eq!(stdout, "405");
    });
}

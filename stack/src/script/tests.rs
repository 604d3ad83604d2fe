//! The runner itself, against the core: what passes, and that what should not pass
//! fails on the right line with the right words.

use super::*;

const PREAMBLE: &str = "
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 bind(3, ..., ...) = 0
   +0 listen(3, 1) = 0
   +0 < S 0:0(0) win 65535 <mss 1000,sackOK,nop,nop,nop,wscale 7>
   +0 > S. 0:0(0) ack 1 <...>
 +.01 < . 1:1(0) ack 1 win 257
   +0 accept(3, ..., ...) = 4
";

fn run_text(text: &str) -> Report {
    let s = parse("t.pkt", text).unwrap_or_else(|e| panic!("{e}"));
    run_core(&s, &mut |_| {})
}

fn passes(body: &str) {
    let r = run_text(&format!("{PREAMBLE}{body}"));
    assert!(r.passed(), "{r}\n{}", r.steps.join("\n"));
}

/// Fails on `line` (of the body, counted from 1) with a message containing `words`.
fn fails(body: &str, line: u32, words: &str) -> Failure {
    let r = run_text(&format!("{PREAMBLE}{body}"));
    let f = r.failure.clone().unwrap_or_else(|| panic!("passed:\n{}", r.steps.join("\n")));
    let preamble_lines = PREAMBLE.lines().count() as u32;
    assert_eq!(f.line, preamble_lines + line, "{f}");
    assert!(f.to_string().contains(words), "`{words}` not in:\n{f}");
    f
}

#[test]
fn tso_sized_lines_any_time_and_ranges() {
    passes(
        "+0 write(4, ..., 3000) = 3000
         +0 > P. 1:3001(3000) ack 1
         +.01 < . 1:1(0) ack 3001 win 257
         +0 close(4) = 0
         * > F. 3001:3001(0) ack 1
         +.01 < . 1:1(0) ack 3002 win 257
         +.01 < F. 1:1(0) ack 3002 win 257
         +0~+.001 > . 3002:3002(0) ack 2",
    );
}

#[test]
fn strict_segments_wants_each_segment() {
    let r =
        run_text(&format!("--strict_segments\n{PREAMBLE}+0 write(4, ..., 3000) = 3000\n+0 > P. 1:3001(3000) ack 1\n"));
    let f = r.failure.expect("three segments are not one");
    assert!(f.message.contains("seq"), "{f}");
}

#[test]
fn blocking_calls_return_when_they_can() {
    passes(
        "+0...0.1 read(4, ..., 1000) = 500
         +.1 < P. 1:501(500) ack 1 win 257
         +0~+.04 > . 1:1(0) ack 501",
    );
    // Returning at once where the script expects later is a timing error.
    fails(
        "+.05 < P. 1:501(500) ack 1 win 257\n+0...0.3 read(4, ..., 1000) = 500\n",
        2,
        "timing error: expected the system call to return",
    );
    // A call that blocks without `...` would hang a real run.
    fails("+0 read(4, ..., 1000) = 0\n", 1, "would block");
    // So does a blocking call still running when the script ends.
    fails("+0...0.1 read(4, ..., 1000) = 1\n", 1, "still in progress");
}

#[test]
fn mismatches_name_the_line_and_the_field() {
    let f = fails("+0 write(4, ..., 100) = 100\n+0 > P. 1:101(100) ack 1 win 7\n", 2, "win");
    let c = f.comparison.expect("side by side");
    assert!(c.contains("expected: > P. 1:101(100) ack 1 win 7"), "{c}");
    assert!(c.contains("<-- differs"), "{c}");
    assert!(f.state.expect("state").contains("ESTABLISHED"));
    fails("+0 write(4, ..., 100) = 100\n+0 > P. 1:101(100) ack 2\n", 2, "ack");
    fails("+0 write(4, ..., 100) = 100\n+.5 > P. 1:101(100) ack 1\n", 2, "timing error");
    fails("+0 write(4, ..., 100) = 99\n", 1, "expected result 99 but got 100");
    fails("+0 recv(4, ..., 100, MSG_DONTWAIT) = -1 ECONNRESET\n", 1, "expected result -1 ECONNRESET");
    fails("+1 > . 1:1(0) ack 1\n", 1, "nothing was sent");
    // An inbound TS ecr must echo an outbound TS val.
    fails("+0 < . 1:1(0) ack 1 win 257 <nop,nop,TS val 1 ecr 7>\n", 1, "unable to infer the live TS ecr");
}

#[test]
fn known_failing_marks() {
    let s = parse("x.pkt", &format!("// known-failing: core: a reason\n{PREAMBLE}+0 close(4) = 5\n")).unwrap();
    let r = run_core(&s, &mut |_| {});
    assert_eq!(verdict(&s, &r), Verdict::ExpectedFailure("a reason".into()));
    let s = parse("y.pkt", &format!("// known-failing: core: stale\n{PREAMBLE}+0 close(4) = 0\n")).unwrap();
    let r = run_core(&s, &mut |_| {});
    assert_eq!(verdict(&s, &r), Verdict::UnexpectedPass("stale".into()));
    assert!(!verdict(&s, &r).ok());
}

#[test]
fn ipv6_and_udp() {
    let r = run_text(
        "--ip_version=ipv6
            0 socket(..., SOCK_DGRAM, IPPROTO_UDP) = 3
           +0 bind(3, ..., ...) = 0
           +0 < udp (100)
           +0 read(3, ..., 1000) = 100
           +0 sendto(3, ..., 7, 0, ..., ...) = 7
           +0 > udp (7)",
    );
    assert!(r.passed(), "{r}");
}

#[test]
fn sysctls_shape_the_core() {
    let s = parse(
        "s.pkt",
        "`sysctl -q net.ipv4.tcp_timestamps=0 net.ipv4.tcp_sack=0`\n0 close(9) = -1 EBADF (Bad file descriptor)\n",
    )
    .unwrap();
    let mut t = CoreTarget::new(&s.settings);
    let r = run(&s, &mut t, &mut |_| {});
    assert!(r.passed(), "{r}");
    assert!(!t.config().timestamps && !t.config().sack);
    // Too late once the stack exists.
    let r = run_text(&format!("{PREAMBLE}+0 `sysctl -q net.ipv4.tcp_sack=0`\n"));
    assert!(r.failure.unwrap().message.contains("fixed once the first socket exists"));
}

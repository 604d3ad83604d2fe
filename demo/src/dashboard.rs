//! A live dashboard: `/dashboard` is a page that updates itself every second from
//! `/dashboard.json` (no reload): the socket table with each connection's TCP details
//! (state, cwnd, SRTT, RTO, retransmissions, queues), the packet filter's rules with
//! their hit counts, recent port scans, port-knocking state, forwarded flows, drop
//! counters by reason, and a throughput-over-time chart.
//!
//! The data comes from the runtime (`RuntimeHandle::inspect`, under the core's lock,
//! briefly) plus what the server keeps itself: a [`Throughput`] history sampled once a
//! second, and, for the gateway, its [`Flows`] table.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tunstack::policy::rules::Direction;
use tunstack::runtime::RuntimeHandle;
use tunstack::wire::DropReason;
use tunstack::{AnyHandle, Instant, Owner, Stack, TcpReject};

/// Seconds of throughput history kept.
pub const HISTORY_SECS: usize = 120;

/// Received and sent bytes per second, one sample a second, the last
/// [`HISTORY_SECS`].
#[derive(Clone, Default)]
pub struct Throughput {
    inner: Arc<Mutex<ThroughputState>>,
}

#[derive(Default)]
struct ThroughputState {
    last: Option<(u64, u64)>,
    samples: VecDeque<(u64, u64, u64)>,
}

impl Throughput {
    /// Record the stack's byte counters now (call once a second).
    pub fn sample(&self, rx_bytes: u64, tx_bytes: u64) {
        let mut st = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        if let Some((rx0, tx0)) = st.last {
            if st.samples.len() == HISTORY_SECS {
                st.samples.pop_front();
            }
            st.samples.push_back((t, rx_bytes.saturating_sub(rx0), tx_bytes.saturating_sub(tx0)));
        }
        st.last = Some((rx_bytes, tx_bytes));
    }

    fn json(&self) -> Value {
        let st = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        Value::Array(
            st.samples.iter().map(|&(t, rx, tx)| json!({"t": t, "rx_bps": rx * 8, "tx_bps": tx * 8})).collect(),
        )
    }

    /// Sample `rt` once a second for as long as it runs (a tokio task).
    pub async fn run(self, rt: RuntimeHandle) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while rt.is_running() {
            tick.tick().await;
            let s = rt.stats();
            self.sample(s.rx_bytes, s.tx_bytes);
        }
    }
}

/// One relayed flow, for the gateway's part of the dashboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    pub proto: &'static str,
    pub client: SocketAddr,
    pub target: SocketAddr,
    pub up_bytes: u64,
    pub down_bytes: u64,
    pub open: bool,
}

/// Bytes relayed so far by one flow, counted by the relay as they pass (so the
/// dashboard shows them live).
#[derive(Debug, Default)]
pub struct FlowBytes {
    /// Client to target.
    pub up: AtomicU64,
    /// Target to client.
    pub down: AtomicU64,
}

#[derive(Debug)]
struct FlowEntry {
    proto: &'static str,
    client: SocketAddr,
    target: SocketAddr,
    bytes: Arc<FlowBytes>,
    open: bool,
}

/// Flows a forwarder or the gateway relays (the last [`Flows::KEEP`] closed ones are
/// kept for display).
#[derive(Clone, Default)]
pub struct Flows {
    inner: Arc<Mutex<Vec<FlowEntry>>>,
}

impl Flows {
    pub const KEEP: usize = 64;

    /// Record a new flow; the relay counts its bytes into what this returns.
    pub fn open(&self, proto: &'static str, client: SocketAddr, target: SocketAddr) -> Arc<FlowBytes> {
        let mut v = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let closed = v.iter().filter(|f| !f.open).count();
        if closed >= Flows::KEEP {
            if let Some(i) = v.iter().position(|f| !f.open) {
                v.remove(i);
            }
        }
        let bytes = Arc::new(FlowBytes::default());
        v.push(FlowEntry { proto, client, target, bytes: Arc::clone(&bytes), open: true });
        bytes
    }

    /// The flow of `client` -> `target` has ended.
    pub fn close(&self, client: SocketAddr, target: SocketAddr) {
        let mut v = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = v.iter_mut().rev().find(|f| f.client == client && f.target == target && f.open) {
            f.open = false;
        }
    }

    pub fn snapshot(&self) -> Vec<Flow> {
        let v = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        v.iter()
            .map(|f| Flow {
                proto: f.proto,
                client: f.client,
                target: f.target,
                up_bytes: f.bytes.up.load(Ordering::Relaxed),
                down_bytes: f.bytes.down.load(Ordering::Relaxed),
                open: f.open,
            })
            .collect()
    }

    fn json(&self) -> Value {
        Value::Array(
            self.snapshot()
                .iter()
                .map(|f| {
                    json!({"proto": f.proto, "client": f.client.to_string(), "target": f.target.to_string(),
                       "up_bytes": f.up_bytes, "down_bytes": f.down_bytes, "open": f.open})
                })
                .collect(),
        )
    }
}

fn owner(o: Owner) -> String {
    match o {
        Owner::App => "app".into(),
        Owner::Listener(h) => format!("listener #{}", h.index()),
        Owner::Orphan => "orphan".into(),
    }
}

/// One stack's sockets (a shard's, with several queues), as JSON.
fn sockets_json(s: &Stack) -> Vec<Value> {
    s.sockets()
        .iter()
        .map(|row| {
            let tcp = match s.resolve(row.handle) {
                Some(AnyHandle::Tcp(h)) => s.tcp_info(h).ok().map(|i| {
                    json!({
                        "cwnd": i.cwnd, "ssthresh": i.ssthresh, "mss": i.mss,
                        "srtt_ms": i.srtt.map(|d| d.as_secs_f64() * 1000.0),
                        "rto_ms": i.rto.as_secs_f64() * 1000.0,
                        "retransmits": i.retransmits, "bytes_acked": i.bytes_acked,
                        "bytes_received": i.bytes_received, "snd_wnd": i.snd_wnd, "rcv_wnd": i.rcv_wnd,
                        "in_recovery": i.in_recovery, "congestion": format!("{:?}", i.congestion),
                    })
                }),
                _ => None,
            };
            json!({
                "handle": row.handle.index(), "shard": row.handle.shard(), "protocol": row.protocol.as_str(),
                "local": row.local.to_string(), "remote": row.remote.map(|r| r.to_string()),
                "state": row.state, "recv_queue": row.recv_queue, "send_queue": row.send_queue,
                "owner": owner(row.owner), "tcp": tcp,
            })
        })
        .collect()
}

/// What the core says, as JSON: the counters and sockets of every shard, the policy of
/// shard 0 (every shard has the same rules; knock and scan state is per shard).
fn stack_json(rt: &RuntimeHandle) -> Value {
    let mut sockets = Vec::new();
    rt.inspect_each(|s| sockets.extend(sockets_json(s)));
    let st = rt.stats();
    let drops: serde_json::Map<String, Value> =
        DropReason::ALL.iter().map(|r| (r.as_str().to_owned(), json!(st.dropped(*r)))).collect();
    let rejects: serde_json::Map<String, Value> =
        TcpReject::ALL.iter().map(|r| (r.as_str().to_owned(), json!(st.tcp_rejected(*r)))).collect();
    let policy = rt.inspect(|s| policy_json(s, s.now()));
    json!({
        "stats": {"rx_packets": st.rx_packets, "tx_packets": st.tx_packets, "rx_bytes": st.rx_bytes,
                  "tx_bytes": st.tx_bytes, "total_drops": st.total_drops(), "tcp_retransmits": st.tcp_retransmits},
        "drops": drops,
        "tcp_rejects": rejects,
        "sockets": sockets,
        "policy": policy,
        "shards": rt.shards(),
        "steering": rt.steering(),
    })
}

/// One stack's packet policy, as JSON (`null` without one).
fn policy_json(s: &Stack, now: Instant) -> Value {
    s.policy().map_or(Value::Null, |p| {
        let (din, din_hits) = p.default_policy(Direction::In);
        let (dout, dout_hits) = p.default_policy(Direction::Out);
        let ps = p.stats();
        json!({
            "rules": p.rules().map(|(r, hits)| json!({"rule": r.to_string(), "hits": hits})).collect::<Vec<_>>(),
            "default_in": {"action": din.as_str(), "hits": din_hits},
            "default_out": {"action": dout.as_str(), "hits": dout_hits},
            "stats": {"accepted": ps.accepted, "dropped": ps.dropped, "rejected": ps.rejected, "blocked": ps.blocked,
                      "knocks": ps.knocks, "knock_opens": ps.knock_opens, "scans_detected": ps.scans_detected},
            "scans": p.recent_scans().map(|e| json!({
                "secs_ago": now.saturating_duration_since(e.at).as_secs(), "source": e.source.to_string(),
                "ports": e.ports, "kinds": e.kinds.to_string(), "window_secs": e.window.as_secs(), "blocked": e.blocked,
            })).collect::<Vec<_>>(),
            "knock": p.knocker().map(|k| json!({
                "open": k.open_sources(now).map(|(a, until)| json!({"source": a.to_string(),
                    "secs_left": until.saturating_duration_since(now).as_secs()})).collect::<Vec<_>>(),
                "in_progress": k.in_progress(now).map(|(a, step)| json!({"source": a.to_string(), "knocks": step}))
                    .collect::<Vec<_>>(),
            })),
            "blocked": p.blocked_sources(now).map(|(a, _)| a.to_string()).collect::<Vec<_>>(),
        })
    })
}

/// The dashboard's data: everything the page shows.
pub fn dashboard_json(rt: &RuntimeHandle, throughput: &Throughput, flows: Option<&Flows>) -> String {
    let mut v = stack_json(rt);
    v["throughput"] = throughput.json();
    v["flows"] = flows.map_or(Value::Array(Vec::new()), Flows::json);
    v["device"] = json!(rt.device_description());
    v.to_string()
}

/// The page: static HTML and a script that fetches `/dashboard.json` every second and
/// fills the tables and the chart.
pub const DASHBOARD_HTML: &str = include_str!("dashboard.html");

//! Health: the live counters as Prometheus text on an optional HTTP listener
//! (`nameflow capture --metrics 127.0.0.1:9464`).
//!
//! The exposition is rendered from the same [`StatsRecord`] rows that stats.log writes, walked
//! column by column through the [`FieldSink`] every encoder implements, so a counter added to
//! `engine/stats.rs` appears in stats.log and in the metrics without being named twice. The
//! main thread renders the text each time it gathers the counters ([`Publisher::publish`]);
//! the listener runs on a thread of its own and only copies the latest text out. Neither is
//! on the packet path.
//!
//! Metric names are `nameflow_<stats.log column>`, with `_total` on counters. Per-worker
//! counters carry a `worker` label; the columns only stats.log's `all` row has (the XDP
//! program's counters, `sink_dropped`, `dropped`, `forwarded_share`) have no label.

use crate::engine::stats::{ContextTotals, Snapshot, StatsRecord, WorkerStats};
use crate::output::schema::{FieldSink, LogRecord, ZeekType};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Columns that are levels rather than running totals.
const GAUGES: &[&str] = &[
    "flows_active",
    "records_held",
    "dns_records_held",
    "zero_copy",
    "batch_p50_ns",
    "batch_p99_ns",
    "batch_p999_ns",
    "batch_max_ns",
    "forwarded_share",
];

/// The listener could not start; the message names the address and what to do.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("--metrics {addr}: not an address; write IP:PORT such as 127.0.0.1:9464")]
    BadAddress { addr: String },
    #[error(
        "--metrics {addr}: cannot listen: {reason}; choose a free port (or stop what holds it)"
    )]
    Listen { addr: String, reason: String },
}

/// Where the main thread puts the latest exposition.
#[derive(Clone, Debug, Default)]
pub struct Publisher {
    text: Arc<Mutex<String>>,
}

impl Publisher {
    /// Renders `snap` (with the sinks' drop count and the inventories' state) as the new
    /// exposition.
    pub fn publish(&self, snap: &Snapshot, sink_dropped: u64, context: ContextTotals) {
        let text = render(snap, sink_dropped, context);
        // A poisoned lock only means a reader panicked mid-copy; the text is still whole.
        *self.text.lock().unwrap_or_else(|e| e.into_inner()) = text;
    }

    fn get(&self) -> String {
        self.text.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The listening address of `--metrics`: `IP:PORT`.
pub fn parse_addr(addr: &str) -> Result<SocketAddr, MetricsError> {
    addr.trim().parse().map_err(|_| MetricsError::BadAddress {
        addr: addr.to_owned(),
    })
}

/// A running listener; it stops when dropped.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
    publisher: Publisher,
}

impl MetricsServer {
    /// Binds `addr` (before privileges are dropped, so any port works) and starts serving
    /// `GET /metrics` on a thread of its own.
    pub fn start(addr: &str) -> Result<MetricsServer, MetricsError> {
        let sock = parse_addr(addr)?;
        let server = tiny_http::Server::http(sock).map_err(|e| MetricsError::Listen {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })?;
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| MetricsError::Listen {
                addr: addr.to_owned(),
                reason: "not an IP listener".into(),
            })?;
        let server = Arc::new(server);
        let publisher = Publisher::default();
        let (srv, publ) = (server.clone(), publisher.clone());
        let thread = std::thread::Builder::new()
            .name("nameflow-metrics".into())
            .spawn(move || serve(&srv, &publ))
            .map_err(|e| MetricsError::Listen {
                addr: addr.to_owned(),
                reason: format!("cannot start its thread: {e}"),
            })?;
        Ok(MetricsServer {
            server,
            thread: Some(thread),
            addr: bound,
            publisher,
        })
    }

    /// The address actually bound (port 0 picks a free one).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the main thread publishes.
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(server: &tiny_http::Server, publisher: &Publisher) {
    for req in server.incoming_requests() {
        let path = req.url().split('?').next().unwrap_or("");
        let resp = match (req.method(), path) {
            (tiny_http::Method::Get, "/metrics") => {
                let body = publisher.get();
                let body = if body.is_empty() {
                    // Before the first gathering: up, nothing counted yet.
                    "# TYPE nameflow_up gauge\nnameflow_up 1\n".to_owned()
                } else {
                    body
                };
                tiny_http::Response::from_string(body).with_header(
                    tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"text/plain; version=0.0.4; charset=utf-8"[..],
                    )
                    .expect("constant header is valid"),
                )
            }
            (tiny_http::Method::Get, "/") => tiny_http::Response::from_string(
                "nameflow: metrics are at /metrics (Prometheus text format)\n",
            ),
            _ => tiny_http::Response::from_string("not found: try GET /metrics\n")
                .with_status_code(404),
        };
        // A client that went away is not an error worth reporting.
        let _ = req.respond(resp);
    }
}

/// One metric family's lines, gathered before printing so each family is contiguous.
struct Family {
    name: String,
    gauge: bool,
    lines: Vec<String>,
}

/// A [`FieldSink`] that turns the columns of one stats row into samples.
struct Collector<'a> {
    columns: &'static [crate::output::schema::Field],
    at: usize,
    label: Option<String>,
    /// Only the `all` row's own columns are taken from it (per-worker counters come from
    /// the worker rows; summing is Prometheus's job).
    totals_only: bool,
    families: &'a mut Vec<Family>,
}

impl Collector<'_> {
    fn sample(&mut self, v: f64) {
        let col = self.columns[self.at];
        self.at += 1;
        if col.name == "ts" || col.name == "worker" {
            return;
        }
        let per_worker = WorkerStats::NAMES.contains(&col.name);
        if self.totals_only == per_worker {
            return;
        }
        let gauge = GAUGES.contains(&col.name) || col.ty == ZeekType::Double;
        let name = if gauge {
            format!("nameflow_{}", col.name)
        } else {
            format!("nameflow_{}_total", col.name)
        };
        let line = match &self.label {
            Some(w) if !self.totals_only => format!("{name}{{worker=\"{w}\"}} {v}"),
            _ => format!("{name} {v}"),
        };
        match self.families.iter_mut().find(|f| f.name == name) {
            Some(f) => f.lines.push(line),
            None => self.families.push(Family {
                name,
                gauge,
                lines: vec![line],
            }),
        }
    }

    fn skip(&mut self) {
        self.at += 1;
    }
}

impl FieldSink for Collector<'_> {
    fn unset(&mut self) {
        self.skip();
    }
    fn time(&mut self, _ns: u64) {
        self.skip();
    }
    fn interval(&mut self, ns: u64) {
        self.sample(ns as f64 / 1e9);
    }
    fn interval_between(&mut self, start_ns: u64, end_ns: u64) {
        self.sample(end_ns.saturating_sub(start_ns) as f64 / 1e9);
    }
    fn count(&mut self, v: u64) {
        self.sample(v as f64);
    }
    fn int(&mut self, v: i64) {
        self.sample(v as f64);
    }
    fn double(&mut self, v: f64) {
        self.sample(v);
    }
    fn port(&mut self, v: u16) {
        self.sample(f64::from(v));
    }
    fn addr(&mut self, _v: IpAddr) {
        self.skip();
    }
    fn subnet(&mut self, _addr: IpAddr, _prefix_len: u8) {
        self.skip();
    }
    fn bool(&mut self, v: bool) {
        self.sample(if v { 1.0 } else { 0.0 });
    }
    fn enumeration(&mut self, _v: &str) {
        self.skip();
    }
    fn string(&mut self, v: &[u8]) {
        if self.columns[self.at].name == "worker" {
            self.label = Some(String::from_utf8_lossy(v).into_owned());
        }
        self.skip();
    }
    fn begin_container(&mut self) {}
    fn end_container(&mut self) {
        self.skip();
    }
}

/// The Prometheus text exposition of one gathering.
pub fn render(snap: &Snapshot, sink_dropped: u64, context: ContextTotals) -> String {
    let columns = StatsRecord::schema().fields;
    let mut families = Vec::new();
    for row in StatsRecord::rows_with_context(snap, sink_dropped, context) {
        let mut c = Collector {
            columns,
            at: 0,
            label: None,
            totals_only: row.worker.is_none(),
            families: &mut families,
        };
        row.write_fields(&mut c);
    }
    let mut out = String::with_capacity(64 * 1024);
    out.push_str("# TYPE nameflow_up gauge\nnameflow_up 1\n");
    let _ = writeln!(
        out,
        "# TYPE nameflow_workers gauge\nnameflow_workers {}",
        snap.workers.len()
    );
    let _ = writeln!(
        out,
        "# TYPE nameflow_last_gather_timestamp_seconds gauge\nnameflow_last_gather_timestamp_seconds {}",
        snap.ts_ns as f64 / 1e9
    );
    for f in &families {
        let _ = writeln!(
            out,
            "# TYPE {} {}",
            f.name,
            if f.gauge { "gauge" } else { "counter" }
        );
        for l in &f.lines {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::stats::XdpStats;

    fn snap() -> Snapshot {
        Snapshot {
            ts_ns: 1_700_000_000_000_000_000,
            workers: vec![
                WorkerStats {
                    frames: 10,
                    forward_dropped: 2,
                    flows_active: 3,
                    ..WorkerStats::default()
                },
                WorkerStats {
                    frames: 5,
                    records_dropped: 1,
                    ..WorkerStats::default()
                },
            ],
            xdp: XdpStats {
                seen: 15,
                redirect_failed: 4,
                ..XdpStats::default()
            },
        }
    }

    #[test]
    fn every_stats_column_is_exposed_once_with_its_type() {
        let text = render(&snap(), 7, ContextTotals::default());
        assert!(
            text.contains("nameflow_frames_total{worker=\"0\"} 10\n"),
            "{text}"
        );
        assert!(
            text.contains("nameflow_frames_total{worker=\"1\"} 5\n"),
            "{text}"
        );
        assert!(text.contains("nameflow_forward_dropped_total{worker=\"0\"} 2\n"));
        assert!(text.contains("nameflow_records_dropped_total{worker=\"1\"} 1\n"));
        assert!(text.contains("# TYPE nameflow_flows_active gauge\n"));
        assert!(text.contains("nameflow_flows_active{worker=\"0\"} 3\n"));
        assert!(text.contains("nameflow_xdp_seen_total 15\n"));
        assert!(text.contains("nameflow_xdp_redirect_failed_total 4\n"));
        assert!(text.contains("nameflow_sink_dropped_total 7\n"));
        // dropped = socket + forward + uncaptured queue.
        assert!(text.contains("nameflow_dropped_total 6\n"), "{text}");
        assert!(text.contains("# TYPE nameflow_forwarded_share gauge\n"));
        assert!(
            !text.contains("worker=\"all\""),
            "the all row is not repeated: {text}"
        );
        // Every worker counter and every drop total has a family, each declared once.
        let totals = [
            "xdp_seen",
            "xdp_redirected",
            "xdp_passed_non_ip",
            "xdp_passed_bypass",
            "xdp_dropped_filter",
            "xdp_redirect_failed",
            "sink_dropped",
            "forwarded_share",
            "dropped",
        ];
        for col in WorkerStats::NAMES.iter().chain(totals.iter()) {
            let n = text
                .lines()
                .filter(|l| {
                    l.starts_with("# TYPE ")
                        && (l[7..].starts_with(&format!("nameflow_{col} "))
                            || l[7..].starts_with(&format!("nameflow_{col}_total ")))
                })
                .count();
            assert_eq!(n, 1, "column {col} declared {n} times:\n{text}");
        }
    }

    #[test]
    fn serves_the_latest_text_on_loopback() {
        use std::io::{Read, Write};
        let server = MetricsServer::start("127.0.0.1:0").unwrap();
        let get = |path: &str| {
            let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
            write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).unwrap();
            body
        };
        assert!(get("/metrics").contains("nameflow_up 1"));
        server
            .publisher()
            .publish(&snap(), 0, ContextTotals::default());
        let r = get("/metrics");
        assert!(
            r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"),
            "{r}"
        );
        assert!(r.contains("text/plain; version=0.0.4"), "{r}");
        assert!(r.contains("nameflow_frames_total{worker=\"1\"} 5"), "{r}");
        assert!(get("/nope").contains(" 404 "));
        let e = MetricsServer::start(&server.local_addr().to_string())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("cannot listen"), "{e}");
        let e = MetricsServer::start("localhost").err().unwrap().to_string();
        assert!(e.contains("IP:PORT"), "{e}");
    }
}

//! Capture statistics: every counter a live run reports is defined once here.
//!
//! A worker counts in a plain [`WorkerStats`] on its own stack (no atomics per packet) and
//! publishes it now and then into its own cache-padded slot of a [`StatsBoard`]; the main
//! thread gathers every slot periodically. The XDP program's per-CPU counters are read from
//! its map at the same moments. [`Snapshot`] puts both together and derives the figures the
//! status line and stats.log show, including one `dropped` total.

use crate::output::schema::{Field, FieldSink, LogRecord, Schema, ZeekType};
use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU64, Ordering};

/// Defines [`WorkerStats`] (plain `u64` fields), its field names in order, conversion to and
/// from an array, and the stats.log schema, so that the published slot, the log columns and
/// the struct can never disagree.
macro_rules! worker_stats {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// One worker's counters (cumulative since start).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct WorkerStats {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl WorkerStats {
            /// Field names, in column order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($name),)*];

            fn to_array(self) -> [u64; WORKER_FIELDS] {
                [$(self.$name,)*]
            }

            fn from_array(a: [u64; WORKER_FIELDS]) -> WorkerStats {
                let mut it = a.into_iter();
                WorkerStats { $($name: it.next().unwrap_or(0),)* }
            }
        }

        const WORKER_FIELDS: usize = [$(stringify!($name),)*].len();

        /// stats.log: `ts`, `worker`, every worker counter, then the XDP program's counters
        /// and the derived totals (set on the `all` row only).
        static STATS: Schema = Schema::new(
            "stats",
            &[
                Field::new("ts", ZeekType::Time),
                Field::new("worker", ZeekType::String),
                $(Field::new(stringify!($name), ZeekType::Count),)*
                Field::new("xdp_seen", ZeekType::Count),
                Field::new("xdp_redirected", ZeekType::Count),
                Field::new("xdp_passed_non_ip", ZeekType::Count),
                Field::new("xdp_passed_bypass", ZeekType::Count),
                Field::new("xdp_dropped_filter", ZeekType::Count),
                Field::new("xdp_redirect_failed", ZeekType::Count),
                Field::new("sink_dropped", ZeekType::Count),
                Field::new("forwarded_share", ZeekType::Double),
                Field::new("dropped", ZeekType::Count),
                Field::new("context_windows", ZeekType::Count),
                Field::new("context_reloads", ZeekType::Count),
                Field::new("context_errors", ZeekType::Count),
                Field::new("context_restarts", ZeekType::Count),
                Field::new("context_last_error", ZeekType::String),
            ],
        );
    };
}

worker_stats! {
    /// Frames taken from the worker's AF_XDP socket.
    frames,
    /// Bytes of those frames.
    bytes,
    /// Packets decoded from those frames (a tunnelled frame gives more than one).
    packets,
    /// Packets this worker received whose flow another worker owns, pushed to the owner.
    forwarded_out,
    /// Forwarded packets that were lost because the owner's queue was full.
    forward_dropped,
    /// Packets other workers forwarded to this one.
    forwarded_in,
    /// Frames the decoder could not use (truncated, malformed, unsupported, bad checksum).
    decode_errors,
    /// Packets that failed checksum validation: a bad IPv4 header checksum (dropped, also in
    /// `decode_errors`) or a bad TCP/UDP/ICMP one (the packet only counts for its
    /// connection). Stays 0 with `-C`.
    bad_checksum,
    /// Flows open in this worker's shard.
    flows_active,
    /// Flows this worker has finished and logged (expired, closed or evicted).
    flows_expired,
    /// Flows logged early because the shard was full.
    flows_evicted,
    /// Connection records handed to the writer.
    records,
    /// Connection records lost because the writer's queue was full and the worker already
    /// held as many as it may.
    records_dropped,
    /// Connection records the worker holds now because the writer's queue is full (a level,
    /// not a total; 0 once the writer has caught up).
    records_held,
    /// dns.log records lost because the writer's queue was full and the worker already held
    /// as many as its bound (16 MiB of them) allows.
    dns_records_dropped,
    /// dns.log records the worker holds now because the writer's queue is full (a level).
    dns_records_held,
    /// `XDP_STATISTICS.rx_dropped`: frames the kernel dropped for this socket.
    xsk_rx_dropped,
    /// `XDP_STATISTICS.rx_invalid_descs`.
    xsk_rx_invalid_descs,
    /// `XDP_STATISTICS.rx_ring_full`: frames lost because the RX ring was full.
    xsk_rx_ring_full,
    /// `XDP_STATISTICS.rx_fill_ring_empty_descs`: times the fill ring was found empty.
    xsk_rx_fill_ring_empty,
    /// 1 when the socket runs in zero-copy mode, 0 in copy mode.
    zero_copy,
    /// RX batches processed (rounds that read at least one frame).
    batches,
    /// Time spent in those batches, in nanoseconds; divided by `frames`, the worker's cost
    /// per frame whatever the offered rate (a spinning worker's CPU time does not tell it).
    batch_busy_ns,
    /// Processing time of one RX batch (read, decode, dispatch, flow updates), in
    /// nanoseconds, since start: median. The `all` row holds the largest worker's value.
    batch_p50_ns,
    /// 99th percentile of the batch processing time.
    batch_p99_ns,
    /// 99.9th percentile of the batch processing time.
    batch_p999_ns,
    /// Longest batch processing time.
    batch_max_ns,
    /// Addresses looked up in the context inventories (two per record; 0 without them).
    context_lookups,
    /// Lookups that found a window.
    context_matched,
}

/// A worker's per-batch processing times (nanoseconds), recorded without allocating into
/// a histogram sized at start; its percentiles are copied into [`WorkerStats`] when the
/// worker publishes.
pub struct BatchLatency {
    hist: hdrhistogram::Histogram<u64>,
    busy_ns: u64,
}

impl Default for BatchLatency {
    fn default() -> Self {
        BatchLatency::new()
    }
}

impl BatchLatency {
    /// 1 ns to 60 s at 3 significant digits (about 200 KiB, allocated here once).
    pub fn new() -> BatchLatency {
        BatchLatency {
            hist: hdrhistogram::Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .expect("constant histogram bounds are valid"),
            busy_ns: 0,
        }
    }

    /// Records one batch; values beyond the bounds are clamped, never lost.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.hist.saturating_record(ns.max(1));
        self.busy_ns = self.busy_ns.saturating_add(ns);
    }

    /// Copies the count and percentiles into the worker's counters.
    pub fn publish_into(&self, st: &mut WorkerStats) {
        let h = &self.hist;
        st.batches = h.len();
        st.batch_busy_ns = self.busy_ns;
        if h.is_empty() {
            return;
        }
        st.batch_p50_ns = h.value_at_quantile(0.5);
        st.batch_p99_ns = h.value_at_quantile(0.99);
        st.batch_p999_ns = h.value_at_quantile(0.999);
        st.batch_max_ns = h.max();
    }
}

impl WorkerStats {
    /// Frames this worker's socket lost before the worker saw them.
    pub fn socket_dropped(&self) -> u64 {
        self.xsk_rx_dropped + self.xsk_rx_ring_full + self.xsk_rx_invalid_descs
    }
}

/// The slots workers publish into, one cache-padded slot each, so that two workers never
/// write the same cache line.
pub struct StatsBoard {
    slots: Box<[CachePadded<[AtomicU64; WORKER_FIELDS]>]>,
}

impl StatsBoard {
    pub fn new(workers: usize) -> StatsBoard {
        StatsBoard {
            slots: (0..workers)
                .map(|_| CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        }
    }

    /// Publishes worker `w`'s counters. Called by that worker only, a few times a second.
    pub fn publish(&self, w: usize, s: &WorkerStats) {
        for (slot, v) in self.slots[w].iter().zip(s.to_array()) {
            slot.store(v, Ordering::Relaxed);
        }
    }

    /// The last published counters of every worker.
    pub fn gather(&self) -> Vec<WorkerStats> {
        self.slots
            .iter()
            .map(|slot| {
                WorkerStats::from_array(std::array::from_fn(|i| slot[i].load(Ordering::Relaxed)))
            })
            .collect()
    }
}

/// The XDP program's counters (summed over CPUs), as stats need them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpStats {
    pub seen: u64,
    pub redirected: u64,
    pub passed_non_ip: u64,
    pub passed_bypass: u64,
    pub dropped_filter: u64,
    /// Frames of queues without a socket (not captured; passed to the kernel).
    pub redirect_failed: u64,
}

/// Everything gathered at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Wall-clock time of the gathering, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    pub workers: Vec<WorkerStats>,
    pub xdp: XdpStats,
}

/// The context inventories as stats.log shows them on the `all` row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextTotals {
    /// Windows in the inventory in force.
    pub windows: u64,
    /// Inventories swapped in after the first.
    pub reloads: u64,
    /// Files that could not be used (each kept its source's last good state).
    pub errors: u64,
    /// Context commands and FIFOs restarted after their run ended or could not start.
    pub restarts: u64,
    /// The latest such error (file and line or field), cut to fit the record.
    last_error: [u8; CONTEXT_ERROR_CAP],
    last_error_len: u8,
}

/// The longest `context_last_error` kept.
const CONTEXT_ERROR_CAP: usize = 240;

impl ContextTotals {
    /// The state of a context (gathered on the main thread, with the other counters).
    pub fn of(ctx: &crate::context::Context) -> ContextTotals {
        let st = ctx.stats();
        let mut t = ContextTotals {
            windows: st.windows,
            reloads: st.reloads,
            errors: st.errors,
            restarts: st.restarts,
            ..ContextTotals::default()
        };
        if let Some(e) = st.last_error {
            let b = e.as_bytes();
            // Cut on a character boundary, like every other inline string.
            let mut n = b.len().min(CONTEXT_ERROR_CAP);
            while n < b.len() && n > 0 && (b[n] & 0xc0) == 0x80 {
                n -= 1;
            }
            t.last_error[..n].copy_from_slice(&b[..n]);
            t.last_error_len = n as u8;
        }
        t
    }

    /// The latest error, if any.
    pub fn last_error(&self) -> Option<&[u8]> {
        (self.last_error_len > 0).then(|| &self.last_error[..self.last_error_len as usize])
    }
}

impl Default for ContextTotals {
    fn default() -> ContextTotals {
        ContextTotals {
            windows: 0,
            reloads: 0,
            errors: 0,
            restarts: 0,
            last_error: [0; CONTEXT_ERROR_CAP],
            last_error_len: 0,
        }
    }
}

impl Snapshot {
    /// The workers' counters summed; latency percentiles are the largest worker's.
    pub fn total(&self) -> WorkerStats {
        let mut t = [0u64; WORKER_FIELDS];
        for w in &self.workers {
            for (acc, v) in t.iter_mut().zip(w.to_array()) {
                *acc += v;
            }
        }
        let mut t = WorkerStats::from_array(t);
        let max = |f: fn(&WorkerStats) -> u64| self.workers.iter().map(f).max().unwrap_or(0);
        t.batch_p50_ns = max(|w| w.batch_p50_ns);
        t.batch_p99_ns = max(|w| w.batch_p99_ns);
        t.batch_p999_ns = max(|w| w.batch_p999_ns);
        t.batch_max_ns = max(|w| w.batch_max_ns);
        t
    }

    /// Packets lost anywhere between the wire and the flow table: dropped by the kernel for
    /// a socket (no fill-ring frame, frame too long, RX ring full, bad descriptor), arriving
    /// on a queue nameflow does not capture, or lost on the way to their owner worker.
    /// Filter drops are intended and not included; lost records are counted apart.
    pub fn dropped(&self) -> u64 {
        let t = self.total();
        t.socket_dropped() + t.forward_dropped + self.xdp.redirect_failed
    }

    /// Share of decoded packets that had to be forwarded to another worker.
    pub fn forwarded_share(&self) -> f64 {
        let t = self.total();
        if t.packets == 0 {
            0.0
        } else {
            t.forwarded_out as f64 / t.packets as f64
        }
    }

    /// One status line: rates over the time since `prev`, totals, drops, per-queue modes.
    /// `sink_dropped`: records the outputs could not take (a full disk, a collector away).
    pub fn status_line(&self, prev: &Snapshot, queues: &[String], sink_dropped: u64) -> String {
        let secs = (self.ts_ns.saturating_sub(prev.ts_ns) as f64 / 1e9).max(1e-9);
        let (t, p) = (self.total(), prev.total());
        let pps = (t.frames.saturating_sub(p.frames)) as f64 / secs;
        let mbps = (t.bytes.saturating_sub(p.bytes)) as f64 * 8.0 / secs / 1e6;
        format!(
            "nameflow: {pps:.0} pps {mbps:.1} Mbit/s | frames {} flows {} logged {} | dropped {} (socket {} forward {} uncaptured-queue {}) records_dropped {} sink_dropped {} | forwarded {:.1}% | queues {}",
            t.frames,
            t.flows_active,
            t.records,
            self.dropped(),
            t.socket_dropped(),
            t.forward_dropped,
            self.xdp.redirect_failed,
            t.records_dropped,
            sink_dropped,
            self.forwarded_share() * 100.0,
            queues.join(",")
        )
    }
}

/// Zeek's `find-checksum-offloading.zeek`, live: ten seconds into the capture (and at exit,
/// if it has not decided by then), when more than 5 % of the packets failed checksum
/// validation, one warning that the interface likely sees offloaded checksums and that `-C`
/// skips validation. Zeek keeps looking until it has seen 20 packets; so does this.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChecksumHint {
    done: bool,
}

impl ChecksumHint {
    /// When the first look is taken.
    pub const AFTER: std::time::Duration = std::time::Duration::from_secs(10);

    /// The warning, once, if `snap` (taken `elapsed` after the start; `last`: at exit) calls
    /// for it.
    pub fn check(
        &mut self,
        snap: &Snapshot,
        elapsed: std::time::Duration,
        last: bool,
    ) -> Option<String> {
        if self.done || (!last && elapsed < Self::AFTER) {
            return None;
        }
        let t = snap.total();
        let (bad, packets) = (t.bad_checksum, t.packets.max(t.frames));
        if packets > 0 && bad * 20 > packets {
            self.done = true;
            return Some(format!(
                "{bad} of {packets} packets ({:.1}%) failed checksum validation and were not analysed (a bad IP header checksum drops the packet, a bad TCP or UDP one keeps only its connection); the interface is likely receiving packets whose checksums were left to a NIC (checksum offloading: this host's own traffic, a virtual interface, a tap before the NIC). Restart with -C (--ignore-checksums), or turn offloading off on the sender (ethtool -K IFACE rx off tx off)",
                bad as f64 * 100.0 / packets as f64
            ));
        }
        if packets >= 20 {
            self.done = true;
        }
        None
    }
}

/// One stats.log row: one per worker and one `all` row per gathering. Cumulative counts
/// since start, like Zeek's own counters; rates are differences of two rows.
#[derive(Clone, Copy, Debug)]
pub struct StatsRecord {
    pub ts_ns: u64,
    /// The worker, or `None` for the `all` row.
    pub worker: Option<u16>,
    pub counters: WorkerStats,
    /// Set on the `all` row only.
    pub totals: Option<Totals>,
}

/// The columns only the `all` row carries.
#[derive(Clone, Copy, Debug)]
pub struct Totals {
    pub xdp: XdpStats,
    /// Records the sinks dropped (stream collectors away or slow).
    pub sink_dropped: u64,
    pub forwarded_share: f64,
    /// [`Snapshot::dropped`].
    pub dropped: u64,
    pub context: ContextTotals,
}

impl StatsRecord {
    /// The rows of one gathering: each worker's, then the `all` row.
    pub fn rows(snap: &Snapshot, sink_dropped: u64) -> Vec<StatsRecord> {
        StatsRecord::rows_with_context(snap, sink_dropped, ContextTotals::default())
    }

    /// [`StatsRecord::rows`], with the context inventories' state on the `all` row.
    pub fn rows_with_context(
        snap: &Snapshot,
        sink_dropped: u64,
        context: ContextTotals,
    ) -> Vec<StatsRecord> {
        let mut rows: Vec<StatsRecord> = snap
            .workers
            .iter()
            .enumerate()
            .map(|(w, c)| StatsRecord {
                ts_ns: snap.ts_ns,
                worker: Some(w as u16),
                counters: *c,
                totals: None,
            })
            .collect();
        rows.push(StatsRecord {
            ts_ns: snap.ts_ns,
            worker: None,
            counters: snap.total(),
            totals: Some(Totals {
                xdp: snap.xdp,
                sink_dropped,
                forwarded_share: snap.forwarded_share(),
                dropped: snap.dropped(),
                context,
            }),
        });
        rows
    }
}

impl LogRecord for StatsRecord {
    fn schema() -> &'static Schema {
        &STATS
    }

    fn write_fields<S: FieldSink>(&self, out: &mut S) {
        out.time(self.ts_ns);
        match self.worker {
            Some(w) => {
                // Worker numbers are small; format without allocating.
                let mut buf = [0u8; 5];
                let mut i = buf.len();
                let mut v = w;
                loop {
                    i -= 1;
                    buf[i] = b'0' + (v % 10) as u8;
                    v /= 10;
                    if v == 0 {
                        break;
                    }
                }
                out.string(&buf[i..]);
            }
            None => out.string(b"all"),
        }
        for v in self.counters.to_array() {
            out.count(v);
        }
        match &self.totals {
            Some(t) => {
                for v in [
                    t.xdp.seen,
                    t.xdp.redirected,
                    t.xdp.passed_non_ip,
                    t.xdp.passed_bypass,
                    t.xdp.dropped_filter,
                    t.xdp.redirect_failed,
                    t.sink_dropped,
                ] {
                    out.count(v);
                }
                out.double(t.forwarded_share);
                out.count(t.dropped);
                out.count(t.context.windows);
                out.count(t.context.reloads);
                out.count(t.context.errors);
                out.count(t.context.restarts);
                match t.context.last_error() {
                    Some(e) => out.string(e),
                    None => out.unset(),
                }
            }
            None => {
                for _ in 0..14 {
                    out.unset();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_struct_and_publish_round_trips() {
        assert_eq!(WorkerStats::NAMES.len(), WORKER_FIELDS);
        assert_eq!(WorkerStats::NAMES[0], "frames");
        let board = StatsBoard::new(2);
        let s = WorkerStats {
            frames: 10,
            forwarded_out: 3,
            zero_copy: 1,
            ..WorkerStats::default()
        };
        board.publish(1, &s);
        let g = board.gather();
        assert_eq!(g[0], WorkerStats::default());
        assert_eq!(g[1], s);
    }

    #[test]
    fn batch_latency_percentiles_reach_stats_and_the_all_row_takes_the_worst() {
        let mut lat = BatchLatency::new();
        for ns in 1..=1000u64 {
            lat.record(ns * 1000);
        }
        let mut st = WorkerStats::default();
        lat.publish_into(&mut st);
        assert_eq!(st.batches, 1000);
        // The busy time is the exact sum, not a histogram estimate.
        assert_eq!(st.batch_busy_ns, 1000 * 1001 / 2 * 1000);
        let near = |v: u64, want: u64| v.abs_diff(want) * 100 <= want;
        assert!(near(st.batch_p50_ns, 500_000), "{st:?}");
        assert!(near(st.batch_p99_ns, 990_000), "{st:?}");
        assert!(near(st.batch_max_ns, 1_000_000), "{st:?}");
        let other = WorkerStats {
            batches: 5,
            batch_p99_ns: 7,
            ..WorkerStats::default()
        };
        let snap = Snapshot {
            ts_ns: 0,
            workers: vec![st, other],
            xdp: XdpStats::default(),
        };
        let t = snap.total();
        assert_eq!(t.batches, 1005);
        assert_eq!(t.batch_p99_ns, st.batch_p99_ns);
    }

    #[test]
    fn checksum_hint_follows_zeeks_rule() {
        let snap = |packets, bad_checksum| Snapshot {
            ts_ns: 0,
            workers: vec![WorkerStats {
                frames: packets,
                packets,
                bad_checksum,
                ..WorkerStats::default()
            }],
            xdp: XdpStats::default(),
        };
        let secs = std::time::Duration::from_secs;
        let mut h = ChecksumHint::default();
        assert_eq!(
            h.check(&snap(100, 50), secs(5), false),
            None,
            "not before 10 s"
        );
        let w = h.check(&snap(100, 50), secs(10), false).unwrap();
        assert!(
            w.contains("50 of 100 packets (50.0%)") && w.contains("-C"),
            "{w}"
        );
        assert_eq!(h.check(&snap(200, 150), secs(20), false), None, "once");
        // 5 % exactly is not more than 5 %; with 20 packets seen the question is settled.
        let mut h = ChecksumHint::default();
        assert_eq!(h.check(&snap(100, 5), secs(10), false), None);
        assert_eq!(h.check(&snap(200, 150), secs(20), true), None);
        // Too few packets at 10 s: looked at again, and at exit.
        let mut h = ChecksumHint::default();
        assert_eq!(h.check(&snap(3, 0), secs(10), false), None);
        assert!(h.check(&snap(10, 10), secs(30), true).is_some());
    }

    #[test]
    fn dropped_sums_every_place_a_packet_is_lost() {
        let snap = Snapshot {
            ts_ns: 0,
            workers: vec![
                WorkerStats {
                    packets: 100,
                    forwarded_out: 50,
                    xsk_rx_dropped: 1,
                    xsk_rx_ring_full: 2,
                    forward_dropped: 3,
                    records_dropped: 100,
                    ..WorkerStats::default()
                },
                WorkerStats {
                    packets: 100,
                    xsk_rx_invalid_descs: 4,
                    ..WorkerStats::default()
                },
            ],
            xdp: XdpStats {
                redirect_failed: 5,
                dropped_filter: 1000,
                ..XdpStats::default()
            },
        };
        assert_eq!(snap.dropped(), 1 + 2 + 3 + 4 + 5);
        assert!((snap.forwarded_share() - 0.25).abs() < 1e-9);
        let rows = StatsRecord::rows(&snap, 7);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2].worker, None);
        assert_eq!(rows[2].counters.packets, 200);
        assert_eq!(rows[2].totals.unwrap().dropped, 15);
    }

    /// Counts the values a record writes, to hold it to its schema.
    struct Columns(usize);

    impl FieldSink for Columns {
        fn unset(&mut self) {
            self.0 += 1;
        }
        fn time(&mut self, _: u64) {
            self.0 += 1;
        }
        fn interval(&mut self, _: u64) {
            self.0 += 1;
        }
        fn interval_between(&mut self, _: u64, _: u64) {
            self.0 += 1;
        }
        fn count(&mut self, _: u64) {
            self.0 += 1;
        }
        fn int(&mut self, _: i64) {
            self.0 += 1;
        }
        fn double(&mut self, _: f64) {
            self.0 += 1;
        }
        fn port(&mut self, _: u16) {
            self.0 += 1;
        }
        fn addr(&mut self, _: std::net::IpAddr) {
            self.0 += 1;
        }
        fn subnet(&mut self, _: std::net::IpAddr, _: u8) {
            self.0 += 1;
        }
        fn bool(&mut self, _: bool) {
            self.0 += 1;
        }
        fn enumeration(&mut self, _: &str) {
            self.0 += 1;
        }
        fn string(&mut self, _: &[u8]) {
            self.0 += 1;
        }
        fn begin_container(&mut self) {}
        fn end_container(&mut self) {
            self.0 += 1;
        }
    }

    #[test]
    fn the_all_row_carries_the_context_state_and_its_last_error() {
        use crate::context::{Context, Inventory, Loader};
        let dir = std::env::temp_dir().join(format!("nameflow-stats-ctx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("t.jsonl");
        std::fs::write(&f, "{\"ip\":\"10.0.0.1\",\"pod\":\"p\"}\n").unwrap();
        let cfg = crate::context::ContextConfig {
            paths: vec![f.clone()],
            ..Default::default()
        };
        let inv = Loader::open(&cfg).unwrap().build();
        let ctx = Context::fixed(inv);
        assert_eq!(ContextTotals::of(&ctx).windows, 1);
        assert_eq!(ContextTotals::of(&ctx).last_error(), None);
        ctx.store(Inventory::empty());
        let t = ContextTotals::of(&ctx);
        assert_eq!((t.windows, t.reloads), (0, 1));
        std::fs::remove_dir_all(&dir).unwrap();
        let snap = Snapshot {
            ts_ns: 1,
            workers: vec![WorkerStats::default()],
            xdp: XdpStats::default(),
        };
        let rows = StatsRecord::rows_with_context(&snap, 0, t);
        assert_eq!(rows.last().unwrap().totals.unwrap().context, t);
    }

    #[test]
    fn every_row_writes_exactly_the_schema_columns() {
        let snap = Snapshot {
            ts_ns: 1,
            workers: vec![WorkerStats::default(); 12],
            xdp: XdpStats::default(),
        };
        for row in StatsRecord::rows(&snap, 0) {
            let mut c = Columns(0);
            row.write_fields(&mut c);
            assert_eq!(c.0, STATS.fields.len(), "{row:?}");
        }
    }
}

//! `nameflow capture`: AF_XDP sockets feeding pinned workers, through the same dispatch and
//! flow shards as `nameflow read`.
//!
//! Each worker thread owns its socket(s), a [`Dispatcher`] and one flow [`Shard`]. A packet
//! the worker owns goes straight into its shard; a packet another worker owns is pushed, as a
//! [`PacketSummary`](crate::flow::summary::PacketSummary), onto the bounded SPSC queue from
//! this worker to the owner (a full mesh of N·(N−1) queues), and dropped and counted when that
//! queue is full. Each worker drains the queues towards it between RX batches. The clock is
//! read once per batch; that reading is the timestamp of every packet in the batch and drives
//! the shard's timers.
//!
//! Shutdown (SIGINT/SIGTERM, `--duration`, or an error): the main thread takes every socket
//! out of the XSKMAP (reception stops) and then reads the XDP counters one last time, the
//! workers empty their RX rings, close their outbound queues, drain their inbound queues until
//! every sender has closed, flush every open flow, and exit; the writer drains the record
//! queues and closes the logs; then the XDP program is detached. The bpf_link makes the
//! kernel detach it anyway if the process dies any other way.

use super::dispatch::{Dispatched, Dispatcher};
use super::stats::{
    BatchLatency, ContextTotals, Snapshot, StatsBoard, StatsRecord, WorkerStats, XdpStats,
};
use super::worker::{
    apply, apply_named, conn_queues, link, FullPolicy, Inbox, Outbox, RecordOut, SideQueues,
    ToWorker, WorkerNames, SIDE_QUEUE_CAPACITY,
};
use crate::capture::xdp::{
    AttachedMode, Interface, XdpConfig, XdpError, XdpMode, XdpProgram, MAX_QUEUES,
};
use crate::capture::xsk::{XskConfig, XskError, XskSocket};
use crate::capture::Frame;
use crate::decode::{DecodeConfig, LinkType};
use crate::flow::{FlowConfig, Shard};
use crate::names::mesh::{self, MeshPolicy};
use crate::names::NamesReport;
use crate::names::{NameNode, NamesConfig};
use crate::output::clock::wall_ns;
use crate::output::{Clock, OutputConfig, OutputError, Writer, WriterReport};
use crate::types::spsc::{self, Producer};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Clock time between two timer advances of a shard.
const TICK_NS: u64 = 100_000_000;
/// Timers a worker runs per round at most when many come due at once (about 0.1–0.3 ms of
/// work, a few batches of frames' worth), so a mass timeout never holds the ring for long.
const EXPIRE_PER_ROUND: usize = 1024;
/// Clock time between two publications of a worker's counters.
const PUBLISH_NS: u64 = 100_000_000;
/// Clock time between two reads of a socket's `XDP_STATISTICS` (a system call).
const SOCKET_STATS_NS: u64 = 500_000_000;
/// Messages taken from one inbound queue before the worker goes back to its socket.
const INBOUND_BATCH: usize = 256;
/// Empty rounds a worker spins through before it blocks in poll(2).
const IDLE_SPINS: u32 = 64;
/// How long an idle worker blocks in poll(2); bounds the delay of forwarded packets reaching
/// an otherwise idle worker.
const IDLE_POLL_MS: i32 = 1;

/// Which RX queues to capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueSelection {
    /// Every RX queue the interface has.
    All,
    /// These queues.
    List(Vec<u32>),
}

/// Everything `nameflow capture` needs, already validated.
#[derive(Clone, Debug)]
pub struct CaptureConfig {
    pub iface: String,
    pub queues: QueueSelection,
    /// Worker threads (flow shards); `None`: one per captured queue. With fewer workers than
    /// queues a worker serves several sockets.
    pub workers: Option<usize>,
    /// Cores to pin workers to, in worker order; `None`: spread over every core; empty: do
    /// not pin.
    pub cpus: Option<Vec<usize>>,
    pub xdp_mode: XdpMode,
    /// Replace an XDP program someone else attached.
    pub force: bool,
    pub xdp: XdpConfig,
    pub xsk: XskConfig,
    /// Stop by itself after this long.
    pub duration: Option<Duration>,
    pub decode: DecodeConfig,
    pub flow: FlowConfig,
    pub output: OutputConfig,
    /// Capacity of each worker → worker queue, in packets.
    pub forward_queue_capacity: usize,
    /// Capacity of each worker → writer queue, in records.
    pub record_queue_capacity: usize,
    /// Time between two stats records (and status lines).
    pub stats_interval: Duration,
    /// Print a status line to stderr every interval.
    pub status: bool,
    /// Names (`None`: `--no-names`).
    pub names: Option<NamesConfig>,
    /// Where the name cache is loaded from at start and saved to at exit.
    pub name_state: Option<std::path::PathBuf>,
    /// Logs besides conn.log and stats.log.
    pub logs: super::offline::Logs,
    /// Inventories to attribute both ends with (already loaded, reloading on its own).
    pub context: Option<crate::context::Context>,
    /// Where the counters are published for `--metrics` (every [`METRICS_INTERVAL`] and at
    /// exit), when the listener runs.
    pub metrics: Option<crate::engine::metrics::Publisher>,
}

/// How often the counters are published for `--metrics` (the main thread renders them; a
/// scrape only copies the latest text).
pub const METRICS_INTERVAL: Duration = Duration::from_secs(1);

/// How one queue is captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueInfo {
    pub queue: u32,
    pub worker: usize,
    pub zero_copy: bool,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct CaptureReport {
    /// The mode the program ran in (`None` if attaching failed).
    pub attached: Option<AttachedMode>,
    pub queues: Vec<QueueInfo>,
    /// The last gathering, at exit (after every flow was flushed).
    pub last: Snapshot,
    pub writer: WriterReport,
    /// Every worker's name counters, and the largest replica.
    pub names: NamesReport,
    /// Mappings restored from / saved to the name state file.
    pub names_restored: usize,
    pub names_saved: usize,
    /// Problems with the name state file that did not stop capture.
    pub warnings: Vec<String>,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Xdp(#[from] XdpError),
    #[error(transparent)]
    Socket(#[from] XskError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("{iface} has {have} RX queue(s) (0..{have}); queue {queue} does not exist: choose --queues among them")]
    NoSuchQueue {
        iface: String,
        queue: u32,
        have: u32,
    },
    #[error("bad capture setting: {0}")]
    Config(String),
    #[error("a worker thread panicked; this is a bug, please report it (the XDP program was detached and the logs hold every record written before)")]
    WorkerPanic,
}

/// Labels such as `q0:copy` for the status line.
fn queue_labels(queues: &[QueueInfo]) -> Vec<String> {
    queues
        .iter()
        .map(|q| {
            format!(
                "q{}:{}",
                q.queue,
                if q.zero_copy { "zero-copy" } else { "copy" }
            )
        })
        .collect()
}

/// Runs live capture until `stop` is set (by a signal handler, say), `--duration` passes, or
/// an error occurs. `on_attach` is called once the program is attached and every worker runs
/// (the CLI prints the mode; tests learn that traffic may start).
pub fn run_capture(
    cfg: &CaptureConfig,
    stop: Arc<AtomicBool>,
    on_attach: impl FnOnce(AttachedMode, &[QueueInfo]),
) -> (CaptureReport, Result<(), CaptureError>) {
    let mut report = CaptureReport::default();
    let result = run(cfg, &stop, on_attach, &mut report);
    (report, result)
}

fn run(
    cfg: &CaptureConfig,
    stop: &Arc<AtomicBool>,
    on_attach: impl FnOnce(AttachedMode, &[QueueInfo]),
    report: &mut CaptureReport,
) -> Result<(), CaptureError> {
    let iface = Interface::lookup(&cfg.iface)?;
    let queues: Vec<u32> = match &cfg.queues {
        QueueSelection::All => (0..iface.rx_queues.min(MAX_QUEUES)).collect(),
        QueueSelection::List(l) => {
            for &q in l {
                if q >= iface.rx_queues || q >= MAX_QUEUES {
                    return Err(CaptureError::NoSuchQueue {
                        iface: iface.name.clone(),
                        queue: q,
                        have: iface.rx_queues,
                    });
                }
            }
            l.clone()
        }
    };
    if queues.is_empty() {
        return Err(CaptureError::Config("no RX queue to capture".into()));
    }
    let n = cfg.workers.unwrap_or(queues.len()).max(1);
    if n > queues.len() {
        return Err(CaptureError::Config(format!(
            "--workers {n} is more than the {} captured queue(s): a worker without a queue would sit idle; lower --workers or capture more queues",
            queues.len()
        )));
    }

    let mut prog = XdpProgram::load(&cfg.xdp)?;
    // Sockets first (they fail on bad sizes and missing permissions before anything is
    // attached), each registered in the XSKMAP so the program finds it from the first frame.
    let mut sockets: Vec<Vec<XskSocket>> = (0..n).map(|_| Vec::new()).collect();
    for (i, &q) in queues.iter().enumerate() {
        let s = XskSocket::open(&iface.name, q, &cfg.xsk)?;
        prog.register_socket(&iface.name, q, s.fd())?;
        report.queues.push(QueueInfo {
            queue: q,
            worker: i % n,
            zero_copy: s.zero_copy(),
        });
        sockets[i % n].push(s);
    }

    // The mesh: producer [from][to] and consumer [to][from], None on the diagonal.
    let mut mesh_tx: Vec<Vec<Option<Outbox>>> = (0..n).map(|_| Vec::new()).collect();
    let mut mesh_rx: Vec<Vec<Inbox>> = (0..n).map(|_| Vec::new()).collect();
    for (from, row) in mesh_tx.iter_mut().enumerate() {
        for (to, inbound) in mesh_rx.iter_mut().enumerate() {
            if from == to {
                row.push(None);
            } else {
                let sides = SideQueues {
                    evidence: cfg.names.is_some(),
                    dns: cfg.logs.dns,
                };
                let (p, c) = link(cfg.forward_queue_capacity, SIDE_QUEUE_CAPACITY, sides);
                row.push(Some(p));
                inbound.push(c);
            }
        }
    }
    let conn = conn_queues(
        n,
        cfg.record_queue_capacity,
        cfg.names.is_some() || cfg.context.is_some(),
    );
    let conn_tx = conn.producers;
    let (stats_tx, stats_rx) = spsc::channel::<StatsRecord>(4 * (n + 1));
    let mut writer = Writer::open(&cfg.output, Clock::Wall)?;
    writer.add_conn_log(conn.records, conn.extras)?;
    writer.add_log(vec![stats_rx])?;
    let mut dns_tx: Vec<Option<Producer<crate::output::dns::DnsRecord>>> =
        (0..n).map(|_| None).collect();
    if cfg.logs.dns {
        let mut rxs = Vec::with_capacity(n);
        for tx in dns_tx.iter_mut() {
            // dns.log records carry up to 4 KiB of answers: a smaller queue than conn.log's.
            let (p, c) = spsc::channel(cfg.record_queue_capacity.min(1024));
            *tx = Some(p);
            rxs.push(c);
        }
        writer.add_log(rxs)?;
    }
    let namecache_tx = if cfg.logs.namecache {
        let (tx, rx) = spsc::channel::<crate::output::namecache::NameCacheRecord>(4);
        writer.add_log(vec![rx])?;
        Some(tx)
    } else {
        None
    };
    let output_stats = writer.stats();

    let cores: Vec<Option<core_affinity::CoreId>> = match &cfg.cpus {
        Some(list) => list
            .iter()
            .map(|&id| Some(core_affinity::CoreId { id }))
            .collect(),
        None => core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(Some)
            .collect(),
    };

    // Names: one node per worker over a full mesh of replication queues (drop when full).
    let restored = super::offline::load_name_state(cfg.name_state.as_ref(), &mut report.warnings);
    report.names_restored = restored.len();
    let mut worker_names: Vec<Option<WorkerNames>> = match &cfg.names {
        Some(ncfg) => mesh::links(n, ncfg.queue_capacity)
            .into_iter()
            .enumerate()
            .map(|(w, l)| {
                let mut node =
                    NameNode::new(ncfg, l, MeshPolicy::Drop, cfg.flow.local_nets.clone());
                for s in &restored {
                    node.replica_mut().restore(&s.evidence, s.expires_ns);
                }
                Some(WorkerNames::live(node, w))
            })
            .collect(),
        None => (0..n).map(|_| None).collect(),
    };
    drop(restored);

    let board = StatsBoard::new(n);
    let names_board = crate::output::namecache::NameCacheBoard::new(n);
    // Workers that have left their loop; the main thread stops waiting once all have.
    let finished = AtomicUsize::new(0);
    // Set by the main thread once the XSKMAP is emptied: the workers may drain and exit.
    let drain = AtomicBool::new(false);

    let result = std::thread::scope(|s| -> Result<(), CaptureError> {
        let writer_handle = s.spawn(move || writer.run());
        let mut handles = Vec::with_capacity(n);
        for (w, ((((socks, tx), (rx, records)), names), dns)) in sockets
            .into_iter()
            .zip(mesh_tx)
            .zip(mesh_rx.into_iter().zip(conn_tx))
            .zip(worker_names.drain(..))
            .zip(dns_tx.drain(..))
            .enumerate()
        {
            let core = if cores.is_empty() {
                None
            } else {
                cores[w % cores.len()]
            };
            let ctx = WorkerCtx {
                me: w,
                workers: n,
                sockets: socks,
                to_others: tx,
                inbound: rx,
                out: RecordOut::new(records.0, FullPolicy::Drop)
                    .with_extras(records.1)
                    .with_context(cfg.context.as_ref().map(crate::context::Context::reader))
                    .with_dns(dns),
                board: &board,
                names_board: &names_board,
                drain: &drain,
                finished: &finished,
                names,
            };
            let (decode, flow) = (cfg.decode, &cfg.flow);
            handles.push(s.spawn(move || {
                if let Some(c) = core {
                    core_affinity::set_for_current(c);
                }
                run_live_worker(ctx, decode, flow)
            }));
        }

        let attach = prog.attach(&iface, cfg.xdp_mode, cfg.force);
        let mut result = Ok(());
        match attach {
            Ok(mode) => {
                report.attached = Some(mode);
                on_attach(mode, &report.queues);
            }
            Err(e) => {
                result = Err(e.into());
                stop.store(true, Ordering::Relaxed);
            }
        }

        let labels = queue_labels(&report.queues);
        let started = Instant::now();
        // Zeek's checksum-offloading hint (issue 17), looked at with each stats gathering.
        let mut checksum_hint = super::stats::ChecksumHint::default();
        let mut prev = Snapshot {
            ts_ns: wall_ns(),
            ..Snapshot::default()
        };
        let mut next_stats = started + cfg.stats_interval;
        let mut next_metrics = started;
        let gather = |xdp: XdpStats| Snapshot {
            ts_ns: wall_ns(),
            workers: board.gather(),
            xdp,
        };
        // The context inventories' state, read with the other counters.
        let context_totals = || {
            cfg.context
                .as_ref()
                .map(ContextTotals::of)
                .unwrap_or_default()
        };
        let read_xdp = |prog: &XdpProgram| -> XdpStats {
            match prog.counters() {
                Ok(c) => XdpStats {
                    seen: c.seen,
                    redirected: c.redirected,
                    passed_non_ip: c.passed_non_ip,
                    passed_bypass: c.passed_bypass,
                    dropped_filter: c.dropped_filter,
                    redirect_failed: c.redirect_failed,
                },
                Err(_) => XdpStats::default(),
            }
        };
        while !stop.load(Ordering::Relaxed) {
            if finished.load(Ordering::Relaxed) > 0 {
                // A worker left early: it panicked. Stop the others cleanly.
                break;
            }
            if cfg.duration.is_some_and(|d| started.elapsed() >= d) {
                break;
            }
            let now = Instant::now();
            if now >= next_stats {
                next_stats += cfg.stats_interval;
                let snap = gather(read_xdp(&prog));
                if let Some(h) = checksum_hint.check(&snap, started.elapsed(), false) {
                    eprintln!("nameflow: warning: {h}");
                }
                if cfg.status {
                    eprintln!(
                        "{}",
                        snap.status_line(&prev, &labels, sink_drops(&output_stats))
                    );
                }
                let sink_dropped = sink_drops(&output_stats);
                for r in StatsRecord::rows_with_context(&snap, sink_dropped, context_totals()) {
                    // A stats record that does not fit is not worth stalling for; the next
                    // interval's record carries the same cumulative counts.
                    let _ = stats_tx.try_push(r);
                }
                if let (Some(tx), true) = (&namecache_tx, cfg.names.is_some()) {
                    // Cumulative counts, like stats.log: a record that does not fit is
                    // carried by the next one.
                    let _ = tx.try_push(names_board.record(snap.ts_ns));
                }
                prev = snap;
            }
            if let (Some(m), true) = (&cfg.metrics, now >= next_metrics) {
                next_metrics = now + METRICS_INTERVAL;
                m.publish(
                    &gather(read_xdp(&prog)),
                    sink_drops(&output_stats),
                    context_totals(),
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }

        // Stop reception: once no socket is in the XSKMAP, frames go to the kernel. The
        // counters are read after that, and after a grace period for program runs that had
        // already found a socket, so every frame they count as redirected is in a ring the
        // workers drain (read before, a frame redirected in between was taken but not counted).
        for q in &report.queues {
            prog.unregister_socket(q.queue);
        }
        std::thread::sleep(Duration::from_millis(20));
        let xdp_final = read_xdp(&prog);
        drain.store(true, Ordering::Release);
        let mut panicked = false;
        let mut nodes = Vec::new();
        for h in handles {
            match h.join() {
                Ok(names) => nodes.extend(names),
                Err(_) => panicked = true,
            }
        }
        // Every worker has published its final counts on its way out.
        let summary = names_board.record(wall_ns());
        report.names = summary.names;
        if let Some(tx) = namecache_tx {
            // At exit the writer still runs, so this waits at most for a few records.
            tx.push_wait(summary);
        }
        if let (Some(path), false) = (&cfg.name_state, nodes.is_empty()) {
            let refs: Vec<&NameNode> = nodes.iter().map(|w| &w.node).collect();
            let state = super::offline::merged_state(&refs);
            match crate::names::snapshot::save(path, wall_ns(), &state) {
                Ok(()) => report.names_saved = state.len(),
                Err(e) => report.warnings.push(e.to_string()),
            }
        }
        let last = gather(xdp_final);
        if let Some(m) = &cfg.metrics {
            m.publish(&last, sink_drops(&output_stats), context_totals());
        }
        for r in StatsRecord::rows_with_context(&last, sink_drops(&output_stats), context_totals())
        {
            let _ = stats_tx.try_push(r);
        }
        drop(stats_tx);
        if let Some(h) = checksum_hint.check(&last, started.elapsed(), true) {
            report.warnings.push(h);
        }
        report.last = last;
        match writer_handle.join() {
            Ok(Ok(w)) => report.writer = w,
            Ok(Err(e)) => {
                if result.is_ok() {
                    result = Err(e.into());
                }
            }
            Err(_) => panicked = true,
        }
        if panicked && result.is_ok() {
            result = Err(CaptureError::WorkerPanic);
        }
        result
    });
    prog.detach();
    result
}

fn sink_drops(stats: &crate::output::OutputStats) -> u64 {
    stats.snapshot().iter().map(|s| s.dropped).sum()
}

/// What one live worker owns.
struct WorkerCtx<'a> {
    me: usize,
    workers: usize,
    sockets: Vec<XskSocket>,
    /// Indexed by owner; `None` for this worker itself.
    to_others: Vec<Option<Outbox>>,
    inbound: Vec<Inbox>,
    out: RecordOut,
    board: &'a StatsBoard,
    /// Name counters for the periodic namecache.log record.
    names_board: &'a crate::output::namecache::NameCacheBoard,
    drain: &'a AtomicBool,
    finished: &'a AtomicUsize,
    names: Option<WorkerNames>,
}

/// Counts the worker leaving its loop, whether it returns or unwinds, so the main thread
/// notices a panicking worker.
struct FinishGuard<'a>(&'a AtomicUsize);

impl Drop for FinishGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn run_live_worker(
    ctx: WorkerCtx<'_>,
    decode: DecodeConfig,
    flow: &FlowConfig,
) -> Option<WorkerNames> {
    let WorkerCtx {
        me,
        workers,
        mut sockets,
        mut to_others,
        inbound,
        mut out,
        board,
        names_board,
        drain,
        finished,
        mut names,
    } = ctx;
    let guard = FinishGuard(finished);
    let dns_log = out.has_dns();
    let mut dispatcher = Dispatcher::new(
        decode,
        workers,
        Some(me),
        flow.uid_seed,
        flow.udp_inactivity_ns,
    )
    .with_names(names.is_some())
    .with_dns_log(dns_log);
    let mut shard = Shard::new(flow);
    shard.prefault();
    let mut st = WorkerStats {
        zero_copy: u64::from(sockets.iter().all(XskSocket::zero_copy)),
        ..WorkerStats::default()
    };
    let mut last_tick = 0u64;
    let mut expiry_backlog = false;
    let mut last_publish = 0u64;
    let mut last_socket_stats = 0u64;
    let mut idle = 0u32;
    // Time from the round's clock read to the end of its RX batch, for rounds that read
    // frames: one more clock read per non-empty batch, none per packet.
    let mut latency = BatchLatency::new();
    // Per-socket statistics, summed into `st` (each socket reports cumulative values).
    let mut sock_stats = vec![crate::capture::xsk::XskStats::default(); sockets.len()];

    loop {
        // One clock read per round: every frame of the round carries it.
        let now = wall_ns();
        // A new inventory, if one was swapped in, is used from this round on.
        out.refresh_context();
        // Records held while the writer was behind go first, before new ones.
        out.flush_held();
        let draining = drain.load(Ordering::Acquire);
        // Inbound first: an announcement (FTP data channel) pushed by another worker is then
        // applied before this worker reads the frames that arrived after it was pushed, which
        // keeps the offline order for everything but a true tie.
        let mut got_in = 0usize;
        for q in &inbound {
            for _ in 0..INBOUND_BATCH {
                let Some(msg) = q.pop() else { break };
                if matches!(msg, ToWorker::Packet(_)) {
                    st.forwarded_in += 1;
                }
                match names.as_mut() {
                    Some(n) => apply_named(&mut shard, n, msg, q, &mut out),
                    None => apply(&mut shard, msg, q, &mut out),
                }
                got_in += 1;
            }
        }
        // Replication from the other workers, between RX batches.
        if let Some(n) = names.as_mut() {
            n.sync(&mut out);
        }
        let got = rx_round(
            &mut sockets,
            &mut dispatcher,
            me,
            &to_others,
            &mut st,
            &mut shard,
            &mut out,
            now,
            &mut names,
        );
        if got > 0 {
            latency.record(wall_ns().saturating_sub(now));
        }
        // A mass timeout is expired a bounded batch per round (the rest next round, before
        // the next tick), so the worker goes back to its ring between batches.
        let tick = now >= last_tick + TICK_NS;
        if tick || expiry_backlog {
            expiry_backlog = match names.as_mut() {
                Some(n) => shard.advance_some(now, EXPIRE_PER_ROUND, &mut |r| n.emit(r, &mut out)),
                None => shard.advance_some(now, EXPIRE_PER_ROUND, &mut |r| out.emit(r)),
            };
        }
        if tick {
            last_tick = now;
            if let Some(n) = names.as_mut() {
                n.tick(now);
            }
        }
        if now >= last_socket_stats + SOCKET_STATS_NS {
            last_socket_stats = now;
            read_socket_stats(&sockets, &mut sock_stats, &mut st);
        }
        if now >= last_publish + PUBLISH_NS {
            last_publish = now;
            latency.publish_into(&mut st);
            publish(board, me, &mut st, &dispatcher, &shard, &out);
            if let Some(n) = names.as_ref() {
                names_board.publish(me, n.report(), dispatcher.evidence_counters(), false);
            }
        }
        if draining && got == 0 {
            // The XSKMAP no longer points at our sockets and the rings are empty: stop
            // sending to the others, then take what they still send until they all stop.
            break;
        }
        if got + got_in > 0 {
            idle = 0;
        } else {
            idle += 1;
            if idle > IDLE_SPINS {
                // Idle: block in poll(2) on every socket of this worker rather than spin.
                XskSocket::wait_any(&sockets, IDLE_POLL_MS);
            } else {
                std::hint::spin_loop();
            }
        }
    }
    to_others.clear();
    out.set_policy(FullPolicy::Wait);
    out.flush_held();
    loop {
        let mut got = 0;
        for q in &inbound {
            while let Some(msg) = q.pop() {
                if matches!(msg, ToWorker::Packet(_)) {
                    st.forwarded_in += 1;
                }
                match names.as_mut() {
                    Some(n) => apply_named(&mut shard, n, msg, q, &mut out),
                    None => apply(&mut shard, msg, q, &mut out),
                }
                got += 1;
            }
        }
        if got == 0 {
            if inbound.iter().all(Inbox::is_finished) {
                break;
            }
            std::thread::yield_now();
        }
    }
    match names.as_mut() {
        Some(n) => {
            n.finish(&mut out);
            shard.flush(&mut |r| n.emit(r, &mut out));
        }
        None => shard.flush(&mut |r| out.emit(r)),
    }
    read_socket_stats(&sockets, &mut sock_stats, &mut st);
    latency.publish_into(&mut st);
    publish(board, me, &mut st, &dispatcher, &shard, &out);
    if let Some(n) = names.as_ref() {
        names_board.publish(me, n.report(), dispatcher.evidence_counters(), true);
    }
    drop(guard);
    names
}

/// Reads one batch from each socket and routes every packet: into the shard when this
/// worker owns it, onto the owner's queue otherwise. Returns the frames read.
#[allow(clippy::too_many_arguments)] // The worker's parts, borrowed apart on purpose.
fn rx_round(
    sockets: &mut [XskSocket],
    dispatcher: &mut Dispatcher,
    me: usize,
    to_others: &[Option<Outbox>],
    st: &mut WorkerStats,
    shard: &mut Shard,
    out: &mut RecordOut,
    now: u64,
    names: &mut Option<WorkerNames>,
) -> usize {
    let mut got = 0;
    for sock in sockets.iter_mut() {
        got += sock.recv_batch(|data| {
            st.frames += 1;
            st.bytes += data.len() as u64;
            let frame = Frame {
                ts_ns: now,
                link: LinkType::ETHERNET,
                data,
                wire_len: data.len() as u32,
            };
            // Undecodable frames are counted by the decoder.
            let _ = dispatcher.dispatch(&frame, |d| match d {
                Dispatched::Packet(owner, summary) if owner == me => match names.as_mut() {
                    Some(n) => shard.process(&summary, &mut |r| n.emit(r, out)),
                    None => shard.process(&summary, &mut |r| out.emit(r)),
                },
                Dispatched::Name(owner, ev) if owner == me => {
                    if let Some(n) = names.as_mut() {
                        n.node.on_evidence(&ev);
                    }
                }
                Dispatched::Name(owner, ev) => {
                    // Evidence crosses the link of the packets of its flow (on its side
                    // queue, in order); a full queue drops it and counts it like a packet.
                    let pushed = to_others[owner]
                        .as_ref()
                        .is_some_and(|q| q.evidence_try(&ev));
                    if !pushed {
                        st.forward_dropped += 1;
                    }
                }
                Dispatched::Dns(owner, m) if owner == me => out.on_dns(shard, m),
                Dispatched::Dns(owner, m) => {
                    let pushed = to_others[owner].as_ref().is_some_and(|q| q.dns_try(m));
                    if !pushed {
                        st.forward_dropped += 1;
                    }
                }
                Dispatched::Packet(owner, summary) => {
                    let pushed = to_others[owner]
                        .as_ref()
                        .is_some_and(|q| q.try_push(ToWorker::Packet(summary)));
                    if !pushed {
                        st.forward_dropped += 1;
                    }
                }
                Dispatched::Expect(e) => {
                    shard.expect(e);
                    for q in to_others.iter().flatten() {
                        // A lost announcement is counted by the queue's own drop counter;
                        // it costs at most a service label.
                        q.try_push(ToWorker::Expect(e));
                    }
                }
            });
        });
    }
    got
}

fn read_socket_stats(
    sockets: &[XskSocket],
    per_socket: &mut [crate::capture::xsk::XskStats],
    st: &mut WorkerStats,
) {
    for (sock, last) in sockets.iter().zip(per_socket.iter_mut()) {
        // A failed read keeps the previous values; the next read catches up.
        if let Ok(s) = sock.statistics() {
            *last = s;
        }
    }
    st.xsk_rx_dropped = per_socket.iter().map(|s| s.rx_dropped).sum();
    st.xsk_rx_invalid_descs = per_socket.iter().map(|s| s.rx_invalid_descs).sum();
    st.xsk_rx_ring_full = per_socket.iter().map(|s| s.rx_ring_full).sum();
    st.xsk_rx_fill_ring_empty = per_socket.iter().map(|s| s.rx_fill_ring_empty_descs).sum();
}

fn publish(
    board: &StatsBoard,
    me: usize,
    st: &mut WorkerStats,
    dispatcher: &Dispatcher,
    shard: &Shard,
    out: &RecordOut,
) {
    let d = dispatcher.counters();
    let dc = dispatcher.decode_counters();
    let fc = shard.counters();
    st.packets = d.packets;
    st.forwarded_out = d.forwarded;
    st.decode_errors = dc.truncated
        + dc.malformed
        + dc.not_ip
        + dc.unsupported_link
        + dc.bad_checksum
        + dc.no_next_header;
    st.bad_checksum = dc.bad_checksum;
    st.flows_active = fc.active;
    st.flows_expired = fc.flows_expired;
    st.flows_evicted = fc.flows_evicted;
    st.records = out.records;
    st.records_dropped = out.dropped;
    st.records_held = out.held() as u64;
    let dns = out.dns_report();
    st.dns_records_dropped = dns.dropped;
    st.dns_records_held = dns.held;
    let ctx = out.context_counters();
    st.context_lookups = ctx.lookups;
    st.context_matched = ctx.matched;
    board.publish(me, st);
}

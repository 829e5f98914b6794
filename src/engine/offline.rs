//! `nameflow read`: capture files through the same dispatch and workers as live capture.
//!
//! The calling thread reads and dispatches; `workers` threads (pinned when asked) own the flow
//! shards; one writer thread encodes and writes. Every queue is bounded, and offline every
//! producer waits for room instead of dropping, so a file is always processed completely.

use super::dispatch::{DispatchCounters, Dispatched, Dispatcher};
use super::worker::{
    conn_queues, link, run_worker, FullPolicy, Outbox, RecordOut, SideQueues, ToWorker,
    WorkerNames, WorkerReport, SIDE_QUEUE_CAPACITY,
};
use crate::capture::pcap::PcapReader;
use crate::capture::{CaptureError, FrameSource};
use crate::decode::{DecodeConfig, DecodeCounters};
use crate::flow::FlowConfig;
use crate::names::mesh::{self, MeshPolicy, Progress};
use crate::names::snapshot::{self, Saved, SnapshotError};
use crate::names::{EvidenceCounters, NameNode, NamesConfig};
use crate::output::clock::{floor_boundary, next_boundary};
use crate::output::dns::DnsRecord;
use crate::output::namecache::NameCacheRecord;
use crate::output::{Clock, OutputConfig, OutputError, PacketClock, Writer, WriterReport};
use crate::types::spsc;
use std::path::PathBuf;

/// Packet time between two ticks sent to every worker.
const TICK_NS: u64 = 1_000_000_000;
/// Capacity of each worker → writer dns.log queue, in records.
const DNS_QUEUE_CAPACITY: usize = 1024;

/// Which logs besides conn.log are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Logs {
    /// namecache.log: name-cache hit rates and replication counts (at exit offline).
    pub namecache: bool,
    /// dns.log in Zeek's format.
    pub dns: bool,
}

/// Everything `nameflow read` needs, already validated.
#[derive(Clone, Debug)]
pub struct ReadConfig {
    pub inputs: Vec<PathBuf>,
    pub workers: usize,
    /// Pin each worker thread to a core.
    pub pin: bool,
    pub decode: DecodeConfig,
    pub flow: FlowConfig,
    /// Sinks, formats, rotation.
    pub output: OutputConfig,
    /// Capacity of each dispatcher → worker queue, in packets.
    pub queue_capacity: usize,
    /// Capacity of each worker → writer queue, in records.
    pub record_queue_capacity: usize,
    /// Names (`None`: `--no-names`).
    pub names: Option<NamesConfig>,
    /// Where the name cache is loaded from at start and saved to at exit.
    pub name_state: Option<PathBuf>,
    /// Logs besides conn.log.
    pub logs: Logs,
    /// Inventories to attribute both ends with (already loaded, reloading on its own).
    pub context: Option<crate::context::Context>,
    /// Where the reader publishes how far it has got (a progress line), if anyone watches.
    pub progress: Option<std::sync::Arc<crate::capture::pcap::ReadProgress>>,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct ReadReport {
    pub dispatch: DispatchCounters,
    pub decode: DecodeCounters,
    pub workers: Vec<WorkerReport>,
    pub writer: WriterReport,
    /// Name evidence parsed by the reader's dispatcher.
    pub evidence: EvidenceCounters,
    /// Mappings restored from the name state file at start.
    pub names_restored: usize,
    /// Mappings saved to the name state file at exit.
    pub names_saved: usize,
    /// Problems with the name state file that did not stop the run (a corrupt file is
    /// ignored; the run starts cold).
    pub warnings: Vec<String>,
}

/// Why a run failed. An input error still leaves a complete log of what came before it.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Input(#[from] CaptureError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("a worker thread panicked; this is a bug, please report it with the input file")]
    WorkerPanic,
    #[error(transparent)]
    NameState(#[from] SnapshotError),
}

/// Loads the name state file, if any; a file that cannot be used is reported and skipped.
pub(crate) fn load_name_state(path: Option<&PathBuf>, warnings: &mut Vec<String>) -> Vec<Saved> {
    let Some(path) = path else {
        return Vec::new();
    };
    match snapshot::load(path) {
        Ok(Some(v)) => v,
        Ok(None) => Vec::new(),
        Err(e) => {
            warnings.push(e.to_string());
            Vec::new()
        }
    }
}

/// Every worker's replica merged (one entry per address, name and client) for the state file.
pub(crate) fn merged_state(nodes: &[&NameNode]) -> Vec<Saved> {
    let mut seen = hashbrown::HashSet::new();
    let mut out = Vec::new();
    for node in nodes {
        node.replica().for_each(|ev, expires_ns| {
            if seen.insert((ev.addr, ev.name, ev.client, ev.ts_ns)) {
                out.push(Saved {
                    evidence: ev,
                    expires_ns,
                });
            }
        });
    }
    out
}

/// Runs the whole pipeline. On an input error the records of everything read before the
/// damage are still written, and the error comes back with the report.
pub fn run_read(cfg: &ReadConfig) -> (ReadReport, Result<(), ReadError>) {
    let mut report = ReadReport::default();
    let mut reader = match PcapReader::open_with_progress(&cfg.inputs, cfg.progress.clone()) {
        Ok(r) => r,
        Err(e) => return (report, Err(e.into())),
    };
    let n = cfg.workers.max(1);
    let cores = if cfg.pin {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };

    let mut to_workers = Vec::with_capacity(n);
    let mut inboxes = Vec::with_capacity(n);
    for _ in 0..n {
        let sides = SideQueues {
            evidence: cfg.names.is_some(),
            dns: cfg.logs.dns,
        };
        let (p, c) = link(cfg.queue_capacity, SIDE_QUEUE_CAPACITY, sides);
        to_workers.push(p);
        inboxes.push(c);
    }
    let conn = conn_queues(
        n,
        cfg.record_queue_capacity,
        cfg.names.is_some() || cfg.context.is_some(),
    );
    let record_producers = conn.producers;

    // Packet time drives rotation (a multi-hour trace rotates on its own hour boundaries).
    // The reader advances it once per tick, never per packet.
    let clock = PacketClock::new();
    let mut writer = match Writer::open(&cfg.output, Clock::Packet(clock.clone())) {
        Ok(w) => w,
        Err(e) => return (report, Err(e.into())),
    };
    if let Err(e) = writer.add_conn_log(conn.records, conn.extras) {
        return (report, Err(e.into()));
    }
    let mut dns_tx: Vec<Option<spsc::Producer<DnsRecord>>> = (0..n).map(|_| None).collect();
    if cfg.logs.dns {
        let mut rxs = Vec::with_capacity(n);
        for tx in dns_tx.iter_mut() {
            let (p, c) = spsc::channel::<DnsRecord>(DNS_QUEUE_CAPACITY);
            *tx = Some(p);
            rxs.push(c);
        }
        if let Err(e) = writer.add_log(rxs) {
            return (report, Err(e.into()));
        }
    }
    let mut namecache_tx = None;
    if cfg.logs.namecache {
        let (tx, rx) = spsc::channel::<NameCacheRecord>(4);
        if let Err(e) = writer.add_log(vec![rx]) {
            return (report, Err(e.into()));
        }
        namecache_tx = Some(tx);
    }

    let mut input_result = Ok(());
    let mut dispatcher = Dispatcher::new(
        cfg.decode,
        n,
        None,
        cfg.flow.uid_seed,
        cfg.flow.udp_inactivity_ns,
    )
    .with_names(cfg.names.is_some())
    .with_dns_log(cfg.logs.dns);

    // Names: one node per worker over a full mesh; offline a full replication queue waits
    // (while draining), and records wait for every worker to pass their lookup time.
    let progress = Progress::new(n);
    let restored = load_name_state(cfg.name_state.as_ref(), &mut report.warnings);
    report.names_restored = restored.len();
    let mut worker_names: Vec<Option<WorkerNames>> = match &cfg.names {
        Some(ncfg) => mesh::links(n, ncfg.queue_capacity)
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                let mut node =
                    NameNode::new(ncfg, l, MeshPolicy::Wait, cfg.flow.local_nets.clone());
                for s in &restored {
                    node.replica_mut().restore(&s.evidence, s.expires_ns);
                }
                Some(WorkerNames::offline(node, i, progress.clone()))
            })
            .collect(),
        None => (0..n).map(|_| None).collect(),
    };
    drop(restored);

    let mut names_saved = 0;
    let mut state_error = None;
    let scope_result = std::thread::scope(|s| {
        let writer = s.spawn(move || writer.run());
        let mut handles = Vec::with_capacity(n);
        for (i, (((inbox, records), names), dns)) in inboxes
            .into_iter()
            .zip(record_producers)
            .zip(worker_names.drain(..))
            .zip(dns_tx.drain(..))
            .enumerate()
        {
            let core = cores.get(i % cores.len().max(1)).copied();
            let flow = &cfg.flow;
            let context = cfg.context.as_ref().map(crate::context::Context::reader);
            handles.push(s.spawn(move || {
                if let Some(c) = core {
                    core_affinity::set_for_current(c);
                }
                let (records, extras) = records;
                let out = RecordOut::new(records, FullPolicy::Wait)
                    .with_extras(extras)
                    .with_context(context)
                    .with_dns(dns);
                run_worker(vec![inbox], flow, out, names)
            }));
        }

        let mut last_tick = 0u64;
        let mut last_ts = 0u64;
        let rotate_ns = cfg.output.rotation.interval_ns();
        let mut next_rotation: Option<u64> = None;
        loop {
            let frame = match reader.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    input_result = Err(ReadError::Input(e));
                    break;
                }
            };
            let ts = frame.ts_ns;
            last_ts = last_ts.max(ts);
            if let Some(interval) = rotate_ns {
                match next_rotation {
                    None => next_rotation = Some(next_boundary(ts, interval)),
                    Some(b) if ts >= b => {
                        let stop =
                            || writer.is_finished() || handles.iter().any(|h| h.is_finished());
                        rotation_barrier(&to_workers, &clock, floor_boundary(ts, interval), stop);
                        next_rotation = Some(next_boundary(ts, interval));
                    }
                    Some(_) => {}
                }
            }
            // Malformed frames are counted by the decoder; they never stop the run.
            let _ = dispatcher.dispatch(&frame, |d| match d {
                Dispatched::Packet(owner, summary) => {
                    to_workers[owner].push_wait(ToWorker::Packet(summary));
                }
                Dispatched::Expect(e) => {
                    for q in &to_workers {
                        q.push_wait(ToWorker::Expect(e));
                    }
                }
                Dispatched::Name(owner, ev) => {
                    to_workers[owner].evidence_wait(&ev);
                }
                Dispatched::Dns(owner, m) => {
                    to_workers[owner].dns_wait(m);
                }
            });
            if ts >= last_tick.saturating_add(TICK_NS) {
                last_tick = ts;
                clock.advance(ts);
                for q in &to_workers {
                    q.push_wait(ToWorker::Tick(ts));
                }
            }
            // Every frame whose clock is below this one's has been handed over (idle workers
            // count themselves that far).
            progress.reader_at(dispatcher.clock());
        }
        // The logs close at the time of the last packet.
        clock.advance(last_ts);
        // Closing the inboxes tells the workers to flush and finish.
        drop(to_workers);
        let mut workers = Vec::with_capacity(n);
        let mut nodes = Vec::with_capacity(n);
        let mut panicked = false;
        for h in handles {
            match h.join() {
                Ok((r, names)) => {
                    workers.push(r);
                    nodes.extend(names);
                }
                Err(_) => panicked = true,
            }
        }
        if let Some(tx) = namecache_tx.take() {
            let rec = NameCacheRecord::from_reports(
                last_ts,
                workers.iter().map(|w| &w.names),
                dispatcher.evidence_counters(),
            );
            tx.push_wait(rec);
        }
        if let (Some(path), false) = (&cfg.name_state, nodes.is_empty() || panicked) {
            let refs: Vec<&NameNode> = nodes.iter().map(|w| &w.node).collect();
            let state = merged_state(&refs);
            match snapshot::save(path, last_ts, &state) {
                Ok(()) => names_saved = state.len(),
                Err(e) => state_error = Some(e),
            }
        }
        let w = writer.join();
        (workers, panicked, w)
    });

    let (workers, panicked, writer_result) = scope_result;
    report.workers = workers;
    report.dispatch = dispatcher.counters();
    report.decode = dispatcher.decode_counters();
    report.evidence = dispatcher.evidence_counters();
    report.names_saved = names_saved;
    if let Some(e) = state_error {
        return (report, Err(e.into()));
    }
    match writer_result {
        Ok(Ok(w)) => report.writer = w,
        Ok(Err(e)) => return (report, Err(e.into())),
        Err(_) => return (report, Err(ReadError::WorkerPanic)),
    }
    if panicked {
        return (report, Err(ReadError::WorkerPanic));
    }
    (report, input_result)
}

/// Holds the reader at a rotation boundary `at` until the logs have rotated there, so that each
/// record lands in the file of the packet time it was emitted at, however far ahead of the
/// writer the reader runs. Every worker first expires what is due before `at`, then names the
/// records that wait for names (a `Barrier`); it gets the tick again after that because a
/// worker that has taken the second tick from its inbox has finished the barrier, so its
/// records are queued. Then the clock moves to `at` and the writer, once it has
/// written everything queued, rotates and says so. `stop` ends the wait when a thread has
/// ended early (an output error), which the caller then reports.
fn rotation_barrier(to_workers: &[Outbox], clock: &PacketClock, at: u64, stop: impl Fn() -> bool) {
    let before = at.saturating_sub(1);
    for q in to_workers {
        q.push_wait(ToWorker::Tick(before));
        q.push_wait(ToWorker::Barrier(before));
        q.push_wait(ToWorker::Tick(before));
    }
    for q in to_workers {
        let mut wait = spsc::Backoff::new();
        while !q.is_empty() {
            if stop() {
                return;
            }
            wait.snooze();
        }
    }
    clock.advance(at);
    clock.wait_applied(at, stop);
}

//! The flow half of a worker: owns one flow shard, applies the packets its dispatcher(s) send,
//! and pushes finished records towards the writer, naming their two ends on the way
//! ([`WorkerNames`]).

use super::spsc::{Consumer, Producer};
use crate::context::reload::ReaderCounters;
use crate::context::ContextReader;
use crate::flow::expect::Expectation;
use crate::flow::summary::PacketSummary;
use crate::flow::{FlowConfig, FlowCounters, Shard};
use crate::names::cache::ReplicaStats;
use crate::names::mesh::{NodeCounters, Progress};
use crate::names::{Evidence, NameNode};
use crate::output::record::ConnRecord;
use std::collections::VecDeque;
use std::sync::Arc;

/// What a worker's inbox carries.
#[derive(Clone, Copy, Debug)]
// The packet variant is stored inline on purpose: boxing it would allocate per packet.
#[allow(clippy::large_enum_variant)]
pub enum ToWorker {
    /// A packet whose flow this worker owns.
    Packet(PacketSummary),
    /// Packet time has reached this instant: expire idle flows. Sent to every worker so that a
    /// worker that sees no packets still closes its flows on time.
    Tick(u64),
    /// A connection announced by a control connection (sent to every worker).
    Expect(Expectation),
    /// Name evidence carried by a flow this worker owns: into its replica, then to the others.
    Name(Evidence),
    /// Offline rotation boundary: every worker has been sent `Tick(at)`; records produced so
    /// far must reach the writer now, named from the evidence before `at` (sent between two
    /// `Tick(at)`, so that taking the second tick means this one is done).
    Barrier(u64),
}

/// What to do when the record queue towards the writer is full.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FullPolicy {
    /// Wait for room (offline: a file can always wait).
    Wait,
    /// Drop the record and count it (live: capture must never stall on a slow sink).
    Drop,
}

/// What a worker reports when it ends.
#[derive(Clone, Copy, Default, Debug)]
pub struct WorkerReport {
    pub flow: FlowCounters,
    pub records: u64,
    pub records_dropped: u64,
    /// Names: replication and lookup counters, the replica's size (zero when names are off).
    pub names: NamesReport,
    /// Context lookups (zero without inventories).
    pub context: ReaderCounters,
}

/// One worker's name counters and replica size.
#[derive(Clone, Copy, Default, Debug)]
pub struct NamesReport {
    pub node: NodeCounters,
    pub replica: ReplicaStats,
    /// Offline records named before every other worker had caught up, because the queue of
    /// records waiting for them was full (their names may then depend on thread timing).
    pub named_early: u64,
}

/// Records waiting for the other workers at most (offline), per worker.
const PENDING_CAP: usize = 16_384;

/// A worker's names: its replication node and, offline, the records that wait until every
/// worker has got past the clock their names depend on.
pub struct WorkerNames {
    pub node: NameNode,
    me: usize,
    /// Offline only: how far each worker has got. Live records are named at once.
    progress: Option<Arc<Progress>>,
    pending: VecDeque<ConnRecord>,
    /// How far along the reader's clock this worker has handled every message.
    clk: u64,
    /// Set once every worker has finished: nothing needs to wait any more.
    done: bool,
    named_early: u64,
}

impl WorkerNames {
    /// Live: records are named when they are produced; the tolerance covers evidence that
    /// another core handles slightly after the connection's first packet.
    pub fn live(node: NameNode, me: usize) -> WorkerNames {
        WorkerNames {
            node,
            me,
            progress: None,
            pending: VecDeque::new(),
            clk: 0,
            done: false,
            named_early: 0,
        }
    }

    /// Offline: records wait until every worker has got past their lookup time, so names do
    /// not depend on the number of workers.
    pub fn offline(node: NameNode, me: usize, progress: Arc<Progress>) -> WorkerNames {
        WorkerNames {
            node,
            me,
            progress: Some(progress),
            pending: VecDeque::with_capacity(1024),
            clk: 0,
            done: false,
            named_early: 0,
        }
    }

    /// A record the shard produced: named now (live, or once everything has finished) or
    /// queued until the others catch up.
    pub fn emit(&mut self, mut rec: ConnRecord, out: &mut RecordOut) {
        if self.progress.is_none() || self.done {
            self.node.enrich(&mut rec);
            out.emit(rec);
            return;
        }
        if self.pending.len() >= PENDING_CAP {
            if let Some(mut front) = self.pending.pop_front() {
                self.node.drain();
                self.node.enrich(&mut front);
                self.named_early += 1;
                out.emit(front);
            }
        }
        self.pending.push_back(rec);
    }

    /// Publishes this worker's progress, takes what the others replicated, and names the
    /// waiting records whose time every worker has passed.
    pub fn sync(&mut self, out: &mut RecordOut) {
        let Some(progress) = &self.progress else {
            self.node.drain();
            return;
        };
        progress.worker_at(self.me, self.clk);
        self.node.drain();
        while let Some(front) = self.pending.front() {
            let at = self.node.ready_at(front.ts_ns);
            if !(self.done || (self.clk > at && progress.others_past(self.me, at))) {
                break;
            }
            // What the others pushed before publishing their progress is in the queues now.
            self.node.drain();
            let mut rec = self.pending.pop_front().expect("front exists");
            self.node.enrich(&mut rec);
            out.emit(rec);
        }
    }

    /// Upkeep of the replica at `now_ns`, after the shard has produced the records due then:
    /// nothing a waiting record may still need is freed (a capture whose clock jumps years
    /// ahead expires every flow and every name at once).
    pub fn tick(&mut self, now_ns: u64) {
        let oldest = self
            .pending
            .iter()
            .map(|r| r.ts_ns)
            .min()
            .unwrap_or(u64::MAX);
        self.node.tick(now_ns.min(oldest));
    }

    /// Offline rotation boundary at `at` (every worker has handled `Tick(at)`): names every
    /// waiting record now, from the evidence whose clock is below `at` (the reader holds
    /// everything after it until the logs have rotated), so that each record lands in the
    /// file of the time it was produced.
    pub fn barrier(&mut self, at: u64, out: &mut RecordOut) {
        let Some(progress) = self.progress.clone() else {
            return;
        };
        let limit = at.saturating_sub(1);
        progress.worker_at(self.me, self.clk);
        let mut spins = 0u32;
        while !progress.others_past(self.me, limit) {
            if self.node.drain() == 0 {
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
        self.node.drain();
        while let Some(mut rec) = self.pending.pop_front() {
            let when = self.node.ready_at(rec.ts_ns).min(limit);
            self.node.enrich_at(&mut rec, when);
            out.emit(rec);
        }
    }

    /// Offline: the inbox is idle and the reader had handed over everything below `reader`.
    pub fn idle(&mut self, reader_clk: u64) {
        self.clk = self.clk.max(reader_clk);
    }

    /// The reader's clock this worker's replication is counted against.
    pub fn progress(&self) -> Option<&Arc<Progress>> {
        self.progress.as_ref()
    }

    /// End of input: tell the others, close the outbound queues, take everything they still
    /// send, then name every waiting record.
    pub fn finish(&mut self, out: &mut RecordOut) {
        self.clk = u64::MAX;
        if let Some(p) = &self.progress {
            p.worker_at(self.me, u64::MAX);
        }
        self.node.close_outbound();
        let mut spins = 0u32;
        loop {
            let got = self.node.drain();
            if self.node.inbound_finished() {
                break;
            }
            if got == 0 {
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
        self.done = true;
        self.sync(out);
    }

    pub fn report(&self) -> NamesReport {
        NamesReport {
            node: self.node.counters(),
            replica: self.node.replica().stats(),
            named_early: self.named_early,
        }
    }
}

/// Hands finished records to the writer's queue under a full-queue policy and counts both
/// outcomes. Shared by the offline worker loop and the live one. With inventories
/// configured, it first looks up both ends' context as of the connection's first packet.
pub struct RecordOut {
    queue: Producer<ConnRecord>,
    policy: FullPolicy,
    /// Records handed to the writer.
    pub records: u64,
    /// Records lost because the queue was full (only under [`FullPolicy::Drop`]).
    pub dropped: u64,
    context: Option<ContextReader>,
}

impl RecordOut {
    pub fn new(queue: Producer<ConnRecord>, policy: FullPolicy) -> RecordOut {
        RecordOut {
            queue,
            policy,
            records: 0,
            dropped: 0,
            context: None,
        }
    }

    /// Enriches every record with context from `reader` before sending it.
    pub fn with_context(mut self, reader: Option<ContextReader>) -> RecordOut {
        self.context = reader;
        self
    }

    /// Picks up an inventory swapped in since the last call; once per batch (one atomic load
    /// when nothing changed).
    #[inline]
    pub fn refresh_context(&mut self) {
        if let Some(c) = self.context.as_mut() {
            c.refresh();
        }
    }

    /// The context lookups so far (zero without inventories).
    pub fn context_counters(&self) -> ReaderCounters {
        self.context
            .as_ref()
            .map(ContextReader::counters)
            .unwrap_or_default()
    }

    /// Sends one record, waiting or dropping as the policy says.
    pub fn emit(&mut self, mut rec: ConnRecord) {
        if let Some(c) = self.context.as_mut() {
            c.enrich(&mut rec.context, rec.orig_h, rec.resp_h, rec.ts_ns);
        }
        let ok = match self.policy {
            FullPolicy::Wait => self.queue.push_wait(rec),
            FullPolicy::Drop => self.queue.try_push(rec),
        };
        if ok {
            self.records += 1;
        } else {
            self.dropped += 1;
        }
    }
}

/// Applies one inbox message to a shard (names off: evidence is ignored).
pub fn apply(shard: &mut Shard, msg: ToWorker, out: &mut RecordOut) {
    let mut emit = |rec| out.emit(rec);
    match msg {
        ToWorker::Packet(p) => shard.process(&p, &mut emit),
        ToWorker::Tick(now) => shard.advance(now, &mut emit),
        ToWorker::Expect(e) => shard.expect(e),
        ToWorker::Name(_) | ToWorker::Barrier(_) => {}
    }
}

/// Applies one inbox message to a shard and to the worker's names.
pub fn apply_named(shard: &mut Shard, names: &mut WorkerNames, msg: ToWorker, out: &mut RecordOut) {
    match msg {
        ToWorker::Packet(p) => {
            // Packets arrive in capture order, so every frame whose clock is below this
            // packet's time has been handled.
            names.clk = names.clk.max(p.ts_ns);
            shard.process(&p, &mut |rec| names.emit(rec, out));
        }
        ToWorker::Tick(now) => {
            names.clk = names.clk.max(now);
            shard.advance(now, &mut |rec| names.emit(rec, out));
            names.tick(now);
        }
        ToWorker::Expect(e) => shard.expect(e),
        ToWorker::Name(ev) => {
            names.clk = names.clk.max(ev.clk_ns);
            names.node.on_evidence(&ev);
        }
        ToWorker::Barrier(at) => names.barrier(at, out),
    }
}

/// Runs a worker until every inbox is closed and drained, then flushes its shard. With names
/// on, returns the worker's names too (their replica is saved for a warm restart). With
/// `context`, records carry both ends' context.
pub fn run_worker(
    inboxes: Vec<Consumer<ToWorker>>,
    flow: &FlowConfig,
    records: Producer<ConnRecord>,
    policy: FullPolicy,
    mut names: Option<WorkerNames>,
    context: Option<ContextReader>,
) -> (WorkerReport, Option<WorkerNames>) {
    let mut shard = Shard::new(flow);
    let mut out = RecordOut::new(records, policy).with_context(context);
    let mut idle_spins = 0u32;
    loop {
        let mut got = false;
        out.refresh_context();
        // Read before looking at the inboxes: if they turn out empty, everything the reader
        // had handed over by then has been handled.
        let reader_clk = names
            .as_ref()
            .and_then(WorkerNames::progress)
            .map(|p| p.reader());
        for inbox in &inboxes {
            // Bounded batches per inbox keep several dispatchers fairly served.
            for _ in 0..256 {
                let Some(msg) = inbox.pop() else { break };
                match names.as_mut() {
                    Some(n) => apply_named(&mut shard, n, msg, &mut out),
                    None => apply(&mut shard, msg, &mut out),
                }
                got = true;
            }
        }
        if let Some(n) = names.as_mut() {
            if !got {
                if let Some(r) = reader_clk {
                    n.idle(r);
                }
            }
            n.sync(&mut out);
        }
        if got {
            idle_spins = 0;
            continue;
        }
        if inboxes.iter().all(Consumer::is_finished) {
            break;
        }
        idle_spins += 1;
        if idle_spins < 128 {
            std::hint::spin_loop();
        } else if idle_spins < 1024 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }
    match names.as_mut() {
        Some(n) => {
            n.finish(&mut out);
            shard.flush(&mut |rec| n.emit(rec, &mut out));
        }
        None => shard.flush(&mut |rec| out.emit(rec)),
    }
    let report = WorkerReport {
        flow: shard.counters(),
        records: out.records,
        records_dropped: out.dropped,
        names: names.as_ref().map(WorkerNames::report).unwrap_or_default(),
        context: out.context_counters(),
    };
    (report, names)
}

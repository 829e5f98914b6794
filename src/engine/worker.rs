//! The flow half of a worker: owns one flow shard, applies the packets its dispatcher(s) send,
//! and pushes finished records towards the writer, naming their two ends on the way
//! ([`WorkerNames`]).

use crate::context::reload::ReaderCounters;
use crate::context::ContextReader;
use crate::flow::expect::Expectation;
use crate::flow::summary::PacketSummary;
use crate::flow::{FlowConfig, FlowCounters, Shard};
use crate::names::dnslog::{DnsLogCounters, DnsMsg, DnsTracker};
use crate::names::mesh::Progress;
use crate::names::{Evidence, NameNode, NamesReport};
use crate::output::dns::DnsRecord;
use crate::types::record::ConnRecord;
use crate::types::spsc::{Consumer, Producer};
use std::collections::VecDeque;
use std::sync::Arc;

/// Most records a live worker holds while the writer's queue is full (about 1.6 KB each,
/// allocated only when needed): a burst such as 65,536 SYN-flood connections timing out
/// together fits, the writer catches up within a fraction of a second, and nothing is lost.
pub const HOLD_MAX: usize = 65_536;

/// Capacity of each side queue (name evidence and DNS messages, which are much larger than a
/// packet summary but rare), in messages.
pub const SIDE_QUEUE_CAPACITY: usize = 256;

/// What crosses to a worker beside its packets: values too large to widen every inbox slot
/// for. Each travels on the link's side queue and is announced in order by
/// [`ToWorker::Side`] on the main queue.
#[derive(Clone, Copy, Debug)]
// Side values are few and large by nature; boxing them would allocate per message.
#[allow(clippy::large_enum_variant)]
pub enum Side {
    /// Name evidence carried by a flow this worker owns: into its replica, then to the others.
    Name(Evidence),
    /// A DNS message of a connection this worker owns, for dns.log (sent after its packet).
    Dns(DnsMsg),
}

/// The sending end of a dispatcher → worker link: the main queue and its side queue.
pub struct Outbox {
    main: Producer<ToWorker>,
    side: Producer<Side>,
}

/// The receiving end of a dispatcher → worker link.
pub struct Inbox {
    main: Consumer<ToWorker>,
    side: Consumer<Side>,
}

/// One dispatcher → worker link: `capacity` messages on the main queue, `side_capacity` on
/// the side queue.
pub fn link(capacity: usize, side_capacity: usize) -> (Outbox, Inbox) {
    let (mp, mc) = crate::types::spsc::channel(capacity);
    let (sp, sc) = crate::types::spsc::channel(side_capacity);
    (Outbox { main: mp, side: sp }, Inbox { main: mc, side: sc })
}

impl Outbox {
    /// Pushes, waiting for room (offline).
    pub fn push_wait(&self, m: ToWorker) -> bool {
        self.main.push_wait(m)
    }

    /// Pushes, or drops and counts when full (live).
    pub fn try_push(&self, m: ToWorker) -> bool {
        self.main.try_push(m)
    }

    /// Sends a side value, waiting for room in both queues (offline).
    pub fn side_wait(&self, s: Side) -> bool {
        self.side.push_wait(s) && self.main.push_wait(ToWorker::Side)
    }

    /// Sends a side value, or drops it when either queue is full (live). Only this thread
    /// pushes onto the main queue, so room seen before the side push is still there after it:
    /// a side value is never left without its announcement.
    pub fn side_try(&self, s: Side) -> bool {
        if self.main.len() >= self.main.capacity() {
            return false;
        }
        self.side.try_push(s) && self.main.try_push(ToWorker::Side)
    }

    /// True when the main queue holds nothing (side values are always announced on it).
    pub fn is_empty(&self) -> bool {
        self.main.is_empty()
    }
}

impl Inbox {
    /// The next message, with the side value it announces.
    #[inline]
    pub fn pop(&self) -> Option<(ToWorker, Option<Side>)> {
        let m = self.main.pop()?;
        let side = match m {
            ToWorker::Side => self.side.pop(),
            _ => None,
        };
        Some((m, side))
    }

    /// True once the sender is gone and everything was taken.
    pub fn is_finished(&self) -> bool {
        self.main.is_finished()
    }
}

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
    /// The next value of the side queue belongs here (its order among the packets).
    Side,
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
    /// Never wait (live: capture must not stall on a slow sink): what the queue has no room
    /// for is held in the worker, in order, up to [`HOLD_MAX`] records, and handed over as
    /// room comes back ([`RecordOut::flush_held`]); beyond that it is dropped and counted.
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
    /// dns.log (zero without it).
    pub dns: DnsReport,
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
        // The connection ends now, whenever its record is named.
        out.conn_ended(&rec);
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
    /// Records the queue had no room for, oldest first (live only). Empty, and without
    /// memory, until the writer first falls behind.
    held: HeldRecords,
    hold_max: usize,
    /// Records handed to the writer.
    pub records: u64,
    /// Records lost because the queue was full (only under [`FullPolicy::Drop`]).
    pub dropped: u64,
    context: Option<ContextReader>,
    /// dns.log, when asked for.
    dns: Option<DnsOut>,
}

/// Records held back in order, in chunks of [`HOLD_CHUNK`] that never move once filled: a
/// single growing buffer would copy everything it holds each time it doubled, a stall of tens
/// of milliseconds in the middle of a burst. A few emptied chunks are kept for the next burst.
#[derive(Default)]
struct HeldRecords {
    chunks: VecDeque<VecDeque<ConnRecord>>,
    spare: Vec<VecDeque<ConnRecord>>,
    len: usize,
}

/// Records per chunk of [`HeldRecords`] (about 400 KiB).
const HOLD_CHUNK: usize = 256;
/// Emptied chunks kept for reuse: all a burst of [`HOLD_MAX`] needed, so the next burst
/// finds its memory already mapped instead of taking a page fault every few records.
const HOLD_SPARE: usize = HOLD_MAX / HOLD_CHUNK;

impl HeldRecords {
    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, rec: ConnRecord) {
        if self.chunks.back().is_none_or(|c| c.len() == HOLD_CHUNK) {
            let chunk = self
                .spare
                .pop()
                .unwrap_or_else(|| VecDeque::with_capacity(HOLD_CHUNK));
            self.chunks.push_back(chunk);
        }
        if let Some(c) = self.chunks.back_mut() {
            c.push_back(rec);
            self.len += 1;
        }
    }

    fn pop(&mut self) -> Option<ConnRecord> {
        let front = self.chunks.front_mut()?;
        let rec = front.pop_front();
        if front.is_empty() {
            if let Some(c) = self.chunks.pop_front() {
                if self.spare.len() < HOLD_SPARE {
                    self.spare.push(c);
                }
            }
        }
        if rec.is_some() {
            self.len -= 1;
        }
        rec
    }
}

/// A worker's dns.log: its DNS sessions and its queue towards the writer.
pub struct DnsOut {
    tracker: DnsTracker,
    queue: Producer<DnsRecord>,
    /// Records lost because the queue was full (only under [`FullPolicy::Drop`]).
    dropped: u64,
}

/// A worker's dns.log counters.
#[derive(Clone, Copy, Default, Debug)]
pub struct DnsReport {
    pub tracker: DnsLogCounters,
    pub dropped: u64,
}

impl RecordOut {
    pub fn new(queue: Producer<ConnRecord>, policy: FullPolicy) -> RecordOut {
        RecordOut {
            queue,
            policy,
            held: HeldRecords::default(),
            hold_max: HOLD_MAX,
            records: 0,
            dropped: 0,
            context: None,
            dns: None,
        }
    }

    /// Hands held records to the writer's queue while it has room; once per round of the
    /// live worker (nothing to do, and no memory touched, when none are held).
    #[inline]
    pub fn flush_held(&mut self) {
        while !self.held.is_empty() {
            // Only this worker pushes, so room seen here is still there for the push.
            if self.policy == FullPolicy::Drop && self.queue.len() >= self.queue.capacity() {
                return;
            }
            let Some(rec) = self.held.pop() else { return };
            if self.queue.push_wait(rec) {
                self.records += 1;
            } else {
                self.dropped += 1;
            }
        }
    }

    /// Holds at most `n` records instead of [`HOLD_MAX`] (tests).
    pub fn with_hold_limit(mut self, n: usize) -> RecordOut {
        self.hold_max = n;
        self
    }

    /// Records held in the worker because the writer's queue was full.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// From now on, what to do when the writer's queue is full. A live worker drops (and
    /// counts) while it captures, and waits once capture has stopped: the final flush of
    /// every open connection is then a burst no queue holds, and nothing is arriving anyway.
    pub fn set_policy(&mut self, policy: FullPolicy) {
        self.policy = policy;
    }

    /// Also writes dns.log records to `queue` (same full-queue policy as conn.log).
    pub fn with_dns(mut self, queue: Option<Producer<DnsRecord>>) -> RecordOut {
        self.dns = queue.map(|queue| DnsOut {
            tracker: DnsTracker::new(),
            queue,
            dropped: 0,
        });
        self
    }

    /// True when this worker writes dns.log.
    pub fn has_dns(&self) -> bool {
        self.dns.is_some()
    }

    /// dns.log counters (zero without dns.log).
    pub fn dns_report(&self) -> DnsReport {
        self.dns
            .as_ref()
            .map(|d| DnsReport {
                tracker: d.tracker.counters(),
                dropped: d.dropped,
            })
            .unwrap_or_default()
    }

    /// A DNS message of a connection this worker owns; its packet has been through `shard`.
    pub fn on_dns(&mut self, shard: &Shard, msg: &DnsMsg) {
        let Some(d) = self.dns.as_mut() else {
            return;
        };
        let policy = self.policy;
        let (queue, dropped) = (&d.queue, &mut d.dropped);
        let conn = shard.get(&msg.ep.key().0);
        d.tracker
            .on_message(msg, conn, &mut |r| push_dns(queue, policy, dropped, r));
    }

    /// A connection's record was produced: its waiting DNS sessions are logged now.
    #[inline]
    pub fn conn_ended(&mut self, rec: &ConnRecord) {
        if let Some(d) = self.dns.as_mut() {
            let policy = self.policy;
            let (queue, dropped) = (&d.queue, &mut d.dropped);
            d.tracker
                .conn_ended(rec, &mut |r| push_dns(queue, policy, dropped, r));
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
        self.conn_ended(&rec);
        if let Some(c) = self.context.as_mut() {
            c.enrich(&mut rec.context, rec.orig_h, rec.resp_h, rec.ts_ns);
        }
        match self.policy {
            FullPolicy::Wait => {
                self.flush_held();
                if self.queue.push_wait(rec) {
                    self.records += 1;
                } else {
                    self.dropped += 1;
                }
            }
            FullPolicy::Drop => {
                // Straight to the queue unless records are held (the order is kept).
                if self.held.is_empty() {
                    match self.queue.try_push_or_back(rec) {
                        Ok(()) => {
                            self.records += 1;
                            return;
                        }
                        Err(back) => rec = back,
                    }
                }
                if self.held.len() < self.hold_max {
                    self.held.push(rec);
                } else {
                    self.dropped += 1;
                }
            }
        }
    }
}

fn push_dns(queue: &Producer<DnsRecord>, policy: FullPolicy, dropped: &mut u64, r: DnsRecord) {
    let ok = match policy {
        FullPolicy::Wait => queue.push_wait(r),
        FullPolicy::Drop => queue.try_push(r),
    };
    if !ok {
        *dropped += 1;
    }
}

/// Applies one inbox message (and the side value it announces) to a shard (names off:
/// evidence is ignored).
pub fn apply(shard: &mut Shard, msg: ToWorker, side: Option<Side>, out: &mut RecordOut) {
    match msg {
        ToWorker::Packet(p) => shard.process(&p, &mut |rec| out.emit(rec)),
        ToWorker::Tick(now) => shard.advance(now, &mut |rec| out.emit(rec)),
        ToWorker::Expect(e) => shard.expect(e),
        ToWorker::Side => {
            if let Some(Side::Dns(m)) = side {
                out.on_dns(shard, &m);
            }
        }
        ToWorker::Barrier(_) => {}
    }
}

/// Applies one inbox message to a shard and to the worker's names.
pub fn apply_named(
    shard: &mut Shard,
    names: &mut WorkerNames,
    msg: ToWorker,
    side: Option<Side>,
    out: &mut RecordOut,
) {
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
        ToWorker::Side => match side {
            Some(Side::Name(ev)) => {
                names.clk = names.clk.max(ev.clk_ns);
                names.node.on_evidence(&ev);
            }
            Some(Side::Dns(m)) => out.on_dns(shard, &m),
            None => {}
        },
        ToWorker::Barrier(at) => names.barrier(at, out),
    }
}

/// Runs a worker until every inbox is closed and drained, then flushes its shard. With names
/// on, returns the worker's names too (their replica is saved for a warm restart). With
/// `context`, records carry both ends' context.
pub fn run_worker(
    inboxes: Vec<Inbox>,
    flow: &FlowConfig,
    records: Producer<ConnRecord>,
    policy: FullPolicy,
    mut names: Option<WorkerNames>,
    context: Option<ContextReader>,
    dns: Option<Producer<DnsRecord>>,
) -> (WorkerReport, Option<WorkerNames>) {
    let mut shard = Shard::new(flow);
    let mut out = RecordOut::new(records, policy)
        .with_context(context)
        .with_dns(dns);
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
                let Some((msg, side)) = inbox.pop() else {
                    break;
                };
                match names.as_mut() {
                    Some(n) => apply_named(&mut shard, n, msg, side, &mut out),
                    None => apply(&mut shard, msg, side, &mut out),
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
        if inboxes.iter().all(Inbox::is_finished) {
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
        dns: out.dns_report(),
    };
    (report, names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tsv::tests::ssh_basic_row;

    fn rec(ts_ns: u64) -> ConnRecord {
        ConnRecord {
            ts_ns,
            ..ssh_basic_row()
        }
    }

    #[test]
    fn a_full_queue_holds_records_in_order_then_drops_beyond_the_limit() {
        let (tx, rx) = crate::types::spsc::channel::<ConnRecord>(4);
        let mut out = RecordOut::new(tx, FullPolicy::Drop).with_hold_limit(2 * HOLD_CHUNK + 3);
        let n = 4 + 2 * HOLD_CHUNK as u64 + 3;
        for ts in 0..n + 5 {
            out.emit(rec(ts));
        }
        assert_eq!(out.records, 4, "what fits is queued at once");
        assert_eq!(
            out.held(),
            2 * HOLD_CHUNK + 3,
            "the rest up to the limit is held"
        );
        assert_eq!(
            out.dropped, 5,
            "beyond the limit, records are dropped and counted"
        );
        // As the writer takes records, held ones follow in their order, before new ones.
        let mut seen = Vec::new();
        while (seen.len() as u64) < n {
            while let Some(r) = rx.pop() {
                seen.push(r.ts_ns);
            }
            out.flush_held();
        }
        out.emit(rec(1_000));
        while let Some(r) = rx.pop() {
            seen.push(r.ts_ns);
        }
        let want: Vec<u64> = (0..n).chain([1_000]).collect();
        assert_eq!(seen, want);
        assert_eq!(out.held(), 0);
        assert_eq!(out.records, n + 1);
    }

    #[test]
    fn waiting_after_capture_hands_over_what_was_held_first() {
        let (tx, rx) = crate::types::spsc::channel::<ConnRecord>(2);
        let mut out = RecordOut::new(tx, FullPolicy::Drop);
        for ts in 0..5 {
            out.emit(rec(ts));
        }
        assert_eq!(out.held(), 3);
        out.set_policy(FullPolicy::Wait);
        let reader = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while seen.len() < 6 {
                match rx.pop() {
                    Some(r) => seen.push(r.ts_ns),
                    None => std::thread::yield_now(),
                }
            }
            seen
        });
        out.emit(rec(5));
        assert_eq!(reader.join().unwrap(), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!((out.records, out.dropped, out.held()), (6, 0, 0));
    }
}

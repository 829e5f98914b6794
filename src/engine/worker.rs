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
use crate::types::record::{ConnExtra, ConnNames, ConnRecord, EXTRA_MAX};
use crate::types::spsc::{chunks_for, each_chunk, Backoff, Chunk, Consumer, Producer};
use std::collections::VecDeque;
use std::sync::Arc;

/// Most records a live worker holds while the writer's queue is full (about 1.6 KB each,
/// allocated only when needed): a burst such as 65,536 SYN-flood connections timing out
/// together fits, the writer catches up within a fraction of a second, and nothing is lost.
pub const HOLD_MAX: usize = 65_536;

/// Capacity of each side queue (name evidence, DNS messages: much larger than a packet
/// summary but rare), in messages.
pub const SIDE_QUEUE_CAPACITY: usize = 256;

/// Which side queues a link has: a queue exists only for a feature that is on, so a run
/// without names has no evidence queue and one without dns.log no DNS queue.
#[derive(Clone, Copy, Debug, Default)]
pub struct SideQueues {
    /// Name evidence (names on).
    pub evidence: bool,
    /// DNS messages for dns.log (dns.log on).
    pub dns: bool,
}

/// The sending end of a dispatcher → worker link: the main queue of packets and small
/// messages, and a side queue per value too large to widen every main-queue slot for
/// (evidence, DNS messages). A side value is announced in order on the main queue
/// ([`ToWorker::Evidence`], [`ToWorker::Dns`]); each side queue holds one type, so a message
/// is copied at its own size.
pub struct Outbox {
    main: Producer<ToWorker>,
    evidence: Option<Producer<Evidence>>,
    dns: Option<Producer<DnsMsg>>,
}

/// The receiving end of a dispatcher → worker link.
pub struct Inbox {
    main: Consumer<ToWorker>,
    evidence: Option<Consumer<Evidence>>,
    dns: Option<Consumer<DnsMsg>>,
}

/// One dispatcher → worker link: `capacity` messages on the main queue, `side_capacity` on
/// each side queue that `sides` asks for.
pub fn link(capacity: usize, side_capacity: usize, sides: SideQueues) -> (Outbox, Inbox) {
    let (mp, mc) = crate::types::spsc::channel(capacity);
    let (ep, ec) = match sides.evidence {
        true => {
            let (p, c) = crate::types::spsc::channel(side_capacity);
            (Some(p), Some(c))
        }
        false => (None, None),
    };
    let (dp, dc) = match sides.dns {
        true => {
            let (p, c) = crate::types::spsc::channel(side_capacity);
            (Some(p), Some(c))
        }
        false => (None, None),
    };
    (
        Outbox {
            main: mp,
            evidence: ep,
            dns: dp,
        },
        Inbox {
            main: mc,
            evidence: ec,
            dns: dc,
        },
    )
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

    /// Sends name evidence, waiting for room in both queues (offline). False when the link
    /// has no evidence queue (names off) or the worker is gone.
    pub fn evidence_wait(&self, ev: &Evidence) -> bool {
        self.evidence
            .as_ref()
            .is_some_and(|q| q.push_wait(*ev) && self.main.push_wait(ToWorker::Evidence))
    }

    /// Sends a DNS message, waiting for room in both queues (offline).
    pub fn dns_wait(&self, m: &DnsMsg) -> bool {
        self.dns
            .as_ref()
            .is_some_and(|q| q.push_wait(*m) && self.main.push_wait(ToWorker::Dns))
    }

    /// Sends name evidence, or drops it when either queue is full (live). Only this thread
    /// pushes onto the main queue, so room seen before the side push is still there after it:
    /// a side value is never left without its announcement.
    pub fn evidence_try(&self, ev: &Evidence) -> bool {
        match &self.evidence {
            Some(q) if self.main.len() < self.main.capacity() => {
                q.try_push(*ev) && self.main.try_push(ToWorker::Evidence)
            }
            _ => false,
        }
    }

    /// Sends a DNS message, or drops it when either queue is full (live).
    pub fn dns_try(&self, m: &DnsMsg) -> bool {
        match &self.dns {
            Some(q) if self.main.len() < self.main.capacity() => {
                q.try_push(*m) && self.main.try_push(ToWorker::Dns)
            }
            _ => false,
        }
    }

    /// True when the main queue holds nothing (side values are always announced on it).
    pub fn is_empty(&self) -> bool {
        self.main.is_empty()
    }
}

impl Inbox {
    /// The next message. A side value it announces is taken with [`Inbox::evidence`] or
    /// [`Inbox::dns`] (by `apply`), so it is never moved at more than its own size.
    #[inline]
    pub fn pop(&self) -> Option<ToWorker> {
        self.main.pop()
    }

    /// The evidence announced by the [`ToWorker::Evidence`] just taken.
    #[inline]
    pub fn evidence(&self) -> Option<Evidence> {
        self.evidence.as_ref()?.pop()
    }

    /// The DNS message announced by the [`ToWorker::Dns`] just taken.
    #[inline]
    pub fn dns(&self) -> Option<DnsMsg> {
        self.dns.as_ref()?.pop()
    }

    /// True once the sender is gone and everything was taken.
    pub fn is_finished(&self) -> bool {
        self.main.is_finished()
    }
}

/// Slots of the queue of names and context beside each record, per record the record
/// queue holds: most records' extras take one or two.
const EXTRA_SLOTS_PER_RECORD: usize = 4;

/// Each worker's record producer (and, when `extras`, its producer of what travels beside
/// each record), and the writer's consumers of both.
pub struct ConnQueues {
    pub producers: Vec<(Producer<ConnRecord>, Option<Producer<Chunk>>)>,
    pub records: Vec<Consumer<ConnRecord>>,
    pub extras: Vec<Consumer<Chunk>>,
}

/// conn.log's queues for `n` workers of `capacity` records each; the queue beside them only
/// when names or inventories are on (`extras`).
pub fn conn_queues(n: usize, capacity: usize, extras: bool) -> ConnQueues {
    let mut q = ConnQueues {
        producers: Vec::with_capacity(n),
        records: Vec::with_capacity(n),
        extras: Vec::with_capacity(n),
    };
    for _ in 0..n {
        let (p, c) = crate::types::spsc::channel::<ConnRecord>(capacity);
        let x = extras.then(|| {
            let (xp, xc) = crate::types::spsc::channel::<Chunk>(capacity * EXTRA_SLOTS_PER_RECORD);
            q.extras.push(xc);
            xp
        });
        q.producers.push((p, x));
        q.records.push(c);
    }
    q
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
    /// The next value of the evidence queue belongs here (its order among the packets).
    Evidence,
    /// The next value of the DNS queue belongs here.
    Dns,
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
    pub fn emit(&mut self, rec: ConnRecord, out: &mut RecordOut) {
        // The connection ends now, whenever its record is named.
        out.conn_ended(&rec);
        if self.progress.is_none() || self.done {
            if let Some(names) = out.names_mut() {
                self.node.enrich(&rec, names);
            }
            out.emit(rec);
            return;
        }
        if self.pending.len() >= PENDING_CAP {
            if let Some(front) = self.pending.pop_front() {
                self.node.drain();
                if let Some(names) = out.names_mut() {
                    self.node.enrich(&front, names);
                }
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
            let rec = self.pending.pop_front().expect("front exists");
            if let Some(names) = out.names_mut() {
                self.node.enrich(&rec, names);
            }
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
        let mut wait = Backoff::new();
        while !progress.others_past(self.me, limit) {
            if self.node.drain() == 0 {
                wait.snooze();
            }
        }
        self.node.drain();
        while let Some(rec) = self.pending.pop_front() {
            let when = self.node.ready_at(rec.ts_ns).min(limit);
            if let Some(names) = out.names_mut() {
                self.node.enrich_at(&rec, names, when);
            }
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
        let mut wait = Backoff::new();
        loop {
            let got = self.node.drain();
            if self.node.inbound_finished() {
                break;
            }
            if got == 0 {
                wait.snooze();
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
    held: HeldRecords<ConnRecord>,
    hold_max: usize,
    /// Names and context beside each record (names or inventories on).
    extra: Option<ExtraOut>,
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
struct HeldRecords<T> {
    chunks: VecDeque<VecDeque<T>>,
    spare: Vec<VecDeque<T>>,
    /// Emptied chunks kept at most.
    spare_max: usize,
    len: usize,
}

impl<T> Default for HeldRecords<T> {
    fn default() -> Self {
        HeldRecords::with_spare(HOLD_SPARE)
    }
}

/// Records per chunk of [`HeldRecords`].
const HOLD_CHUNK: usize = 256;
/// Emptied chunks kept for reuse: all a burst of [`HOLD_MAX`] needed, so the next burst
/// finds its memory already mapped instead of taking a page fault every few records.
const HOLD_SPARE: usize = HOLD_MAX / HOLD_CHUNK;

impl<T> HeldRecords<T> {
    fn with_spare(spare_max: usize) -> Self {
        HeldRecords {
            chunks: VecDeque::new(),
            spare: Vec::new(),
            spare_max,
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn front(&self) -> Option<&T> {
        self.chunks.front()?.front()
    }

    fn push(&mut self, rec: T) {
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

    fn pop(&mut self) -> Option<T> {
        let front = self.chunks.front_mut()?;
        let rec = front.pop_front();
        if front.is_empty() {
            if let Some(c) = self.chunks.pop_front() {
                if self.spare.len() < self.spare_max {
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

/// What travels beside a worker's records when names or inventories are on: the scratch
/// [`ConnExtra`] the names and context of the record being emitted are written into, its
/// encoding, and the queue (in slots of [`Chunk`]) towards the writer. Held records keep
/// their encoded extras here, in order, beside them.
struct ExtraOut {
    queue: Producer<Chunk>,
    scratch: ConnExtra,
    buf: Box<[u8; EXTRA_MAX]>,
    held: HeldRecords<Chunk>,
}

/// Slots the message that starts with `first` takes.
fn msg_chunks(first: &Chunk) -> usize {
    chunks_for(usize::from(u16::from_be_bytes([first[0], first[1]])))
}

/// dns.log records a live worker holds while the writer is behind (the conn.log policy, in
/// a bound of memory rather than of records: a dns.log record carries its answers' text).
const DNS_HOLD_BYTES: usize = 16 << 20;

fn dns_hold_max() -> usize {
    DNS_HOLD_BYTES / std::mem::size_of::<DnsRecord>()
}

/// A worker's dns.log: its DNS sessions and its records' way to the writer.
pub struct DnsOut {
    tracker: DnsTracker,
    sink: DnsSink,
}

/// dns.log records towards the writer: its queue, and what waits for room in it.
struct DnsSink {
    queue: Producer<DnsRecord>,
    /// Records the queue had no room for, in order (only under [`FullPolicy::Drop`]).
    held: HeldRecords<DnsRecord>,
    hold_max: usize,
    /// Records lost because the queue was full and the hold too.
    dropped: u64,
}

impl DnsSink {
    /// Sends one record as the policy says: waiting, or straight to the queue unless records
    /// are held (the order is kept), else held up to the bound, else dropped and counted.
    fn push(&mut self, policy: FullPolicy, r: DnsRecord) {
        match policy {
            FullPolicy::Wait => {
                self.flush(policy);
                if !self.queue.push_wait(r) {
                    self.dropped += 1;
                }
            }
            FullPolicy::Drop => {
                if self.held.is_empty() && self.queue.len() < self.queue.capacity() {
                    if !self.queue.try_push(r) {
                        self.dropped += 1;
                    }
                } else if self.held.len() < self.hold_max {
                    self.held.push(r);
                } else {
                    self.dropped += 1;
                }
            }
        }
    }

    /// Hands held records to the queue while it has room (all of them, waiting, under
    /// [`FullPolicy::Wait`]).
    fn flush(&mut self, policy: FullPolicy) {
        while !self.held.is_empty() {
            if policy == FullPolicy::Drop && self.queue.len() >= self.queue.capacity() {
                return;
            }
            let Some(r) = self.held.pop() else { return };
            if !self.queue.push_wait(r) {
                self.dropped += 1;
            }
        }
    }
}

/// A worker's dns.log counters.
#[derive(Clone, Copy, Default, Debug)]
pub struct DnsReport {
    pub tracker: DnsLogCounters,
    pub dropped: u64,
    /// Records held in the worker because the writer's queue was full.
    pub held: u64,
}

impl RecordOut {
    pub fn new(queue: Producer<ConnRecord>, policy: FullPolicy) -> RecordOut {
        RecordOut {
            queue,
            policy,
            held: HeldRecords::default(),
            hold_max: HOLD_MAX,
            extra: None,
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
        if let Some(d) = self.dns.as_mut() {
            d.sink.flush(self.policy);
        }
        while !self.held.is_empty() {
            // Only this worker pushes, so room seen here is still there for the push.
            if self.policy == FullPolicy::Drop {
                let need = self
                    .extra
                    .as_ref()
                    .and_then(|x| Some((x.queue.room(), msg_chunks(x.held.front()?))));
                let extra_room = need.is_none_or(|(room, n)| room >= n);
                if self.queue.len() >= self.queue.capacity() || !extra_room {
                    return;
                }
            }
            let Some(rec) = self.held.pop() else { return };
            let mut ok = true;
            if let Some(x) = self.extra.as_mut() {
                let n = x.held.front().map_or(0, msg_chunks);
                for _ in 0..n {
                    if let Some(c) = x.held.pop() {
                        ok &= x.queue.push_wait(c);
                    }
                }
            }
            if ok && self.queue.push_wait(rec) {
                self.records += 1;
            } else {
                self.dropped += 1;
            }
        }
    }

    /// Sends names and context beside each record on `queue` (names or inventories on).
    pub fn with_extras(mut self, queue: Option<Producer<Chunk>>) -> RecordOut {
        self.extra = queue.map(|queue| ExtraOut {
            queue,
            scratch: ConnExtra::default(),
            buf: Box::new([0; EXTRA_MAX]),
            held: HeldRecords::default(),
        });
        self
    }

    /// Where the names of the record about to be emitted go (`None` when nothing travels
    /// beside records).
    #[inline]
    pub fn names_mut(&mut self) -> Option<&mut ConnNames> {
        self.extra.as_mut().map(|x| &mut x.scratch.names)
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
        let hold_max = dns_hold_max();
        self.dns = queue.map(|queue| DnsOut {
            tracker: DnsTracker::new(),
            sink: DnsSink {
                queue,
                held: HeldRecords::with_spare(hold_max.div_ceil(HOLD_CHUNK)),
                hold_max,
                dropped: 0,
            },
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
                dropped: d.sink.dropped,
                held: d.sink.held.len() as u64,
            })
            .unwrap_or_default()
    }

    /// A DNS message of a connection this worker owns; its packet has been through `shard`.
    pub fn on_dns(&mut self, shard: &Shard, msg: &DnsMsg) {
        let Some(d) = self.dns.as_mut() else {
            return;
        };
        let policy = self.policy;
        let DnsOut { tracker, sink } = d;
        let conn = shard.get(&msg.ep.key().0);
        tracker.on_message(msg, conn, &mut |r| sink.push(policy, r));
    }

    /// A connection's record was produced: its waiting DNS sessions are logged now.
    #[inline]
    pub fn conn_ended(&mut self, rec: &ConnRecord) {
        if let Some(d) = self.dns.as_mut() {
            let policy = self.policy;
            let DnsOut { tracker, sink } = d;
            tracker.conn_ended(rec, &mut |r| sink.push(policy, r));
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

    /// Sends one record (and what travels beside it: the names written through
    /// [`RecordOut::names_mut`], the context looked up now), waiting or dropping as the policy
    /// says.
    pub fn emit(&mut self, rec: ConnRecord) {
        self.conn_ended(&rec);
        let len = match self.extra.as_mut() {
            Some(x) => {
                if let Some(c) = self.context.as_mut() {
                    c.enrich(&mut x.scratch.context, rec.orig_h, rec.resp_h, rec.ts_ns);
                }
                let n = x.scratch.encode(&mut x.buf);
                x.scratch.clear();
                n
            }
            None => 0,
        };
        match self.policy {
            FullPolicy::Wait => {
                self.flush_held();
                let extra_ok = self
                    .extra
                    .as_ref()
                    .is_none_or(|x| x.queue.push_msg_wait(&x.buf[..len]));
                if extra_ok && self.queue.push_wait(rec) {
                    self.records += 1;
                } else {
                    self.dropped += 1;
                }
            }
            FullPolicy::Drop => {
                // Straight to the queues unless records are held (the order is kept). Only
                // this worker pushes, so room seen now is there for both pushes.
                let room = self.queue.len() < self.queue.capacity()
                    && self
                        .extra
                        .as_ref()
                        .is_none_or(|x| x.queue.room() >= chunks_for(len));
                if self.held.is_empty() && room {
                    let extra_ok = self
                        .extra
                        .as_ref()
                        .is_none_or(|x| x.queue.try_push_msg(&x.buf[..len]));
                    if extra_ok && self.queue.try_push(rec) {
                        self.records += 1;
                    } else {
                        self.dropped += 1;
                    }
                    return;
                }
                if self.held.len() < self.hold_max {
                    self.held.push(rec);
                    if let Some(x) = self.extra.as_mut() {
                        let ExtraOut { buf, held, .. } = x;
                        each_chunk(&buf[..len], |c| held.push(c));
                    }
                } else {
                    self.dropped += 1;
                }
            }
        }
    }
}

/// Applies one inbox message (and the side value it announces, taken from `inbox`) to a
/// shard (names off: there is no evidence).
pub fn apply(shard: &mut Shard, msg: ToWorker, inbox: &Inbox, out: &mut RecordOut) {
    match msg {
        ToWorker::Packet(p) => shard.process(&p, &mut |rec| out.emit(rec)),
        ToWorker::Tick(now) => shard.advance(now, &mut |rec| out.emit(rec)),
        ToWorker::Expect(e) => shard.expect(e),
        ToWorker::Evidence => {
            let _ = inbox.evidence();
        }
        ToWorker::Dns => {
            if let Some(m) = inbox.dns() {
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
    inbox: &Inbox,
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
        ToWorker::Evidence => {
            if let Some(ev) = inbox.evidence() {
                names.clk = names.clk.max(ev.clk_ns);
                names.node.on_evidence(&ev);
            }
        }
        ToWorker::Dns => {
            if let Some(m) = inbox.dns() {
                out.on_dns(shard, &m);
            }
        }
        ToWorker::Barrier(at) => names.barrier(at, out),
    }
}

/// Runs a worker until every inbox is closed and drained, then flushes its shard. With names
/// on, returns the worker's names too (their replica is saved for a warm restart). With
/// `context`, records carry both ends' context.
pub fn run_worker(
    inboxes: Vec<Inbox>,
    flow: &FlowConfig,
    mut out: RecordOut,
    mut names: Option<WorkerNames>,
) -> (WorkerReport, Option<WorkerNames>) {
    let mut shard = Shard::new(flow);
    let mut wait = Backoff::new();
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
                let Some(msg) = inbox.pop() else {
                    break;
                };
                match names.as_mut() {
                    Some(n) => apply_named(&mut shard, n, msg, inbox, &mut out),
                    None => apply(&mut shard, msg, inbox, &mut out),
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
            wait.reset();
            continue;
        }
        if inboxes.iter().all(Inbox::is_finished) {
            break;
        }
        wait.snooze();
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
    use crate::types::record::fixtures::ssh_basic_row;

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

    #[test]
    fn dns_records_are_held_in_order_like_conn_records_then_dropped_beyond_the_bound() {
        let (tx, rx) = crate::types::spsc::channel::<DnsRecord>(4);
        let mut sink = DnsSink {
            queue: tx,
            held: HeldRecords::with_spare(1),
            hold_max: HOLD_CHUNK + 3,
            dropped: 0,
        };
        let dns = |trans_id: u16| DnsRecord {
            trans_id,
            ..DnsRecord::default()
        };
        let n = 4 + HOLD_CHUNK as u16 + 3;
        for id in 0..n + 2 {
            sink.push(FullPolicy::Drop, dns(id));
        }
        assert_eq!((sink.held.len(), sink.dropped), (HOLD_CHUNK + 3, 2));
        let mut seen = Vec::new();
        while seen.len() < usize::from(n) {
            while let Some(r) = rx.pop() {
                seen.push(r.trans_id);
            }
            sink.flush(FullPolicy::Drop);
        }
        assert_eq!(seen, (0..n).collect::<Vec<_>>());
        assert!(sink.held.is_empty());
        assert!(dns_hold_max() * std::mem::size_of::<DnsRecord>() <= DNS_HOLD_BYTES);
    }
}

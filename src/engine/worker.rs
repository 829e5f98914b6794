//! The flow half of a worker: owns one flow shard, applies the packets its dispatcher(s) send,
//! and pushes finished records towards the writer.

use super::spsc::{Consumer, Producer};
use crate::flow::expect::Expectation;
use crate::flow::summary::PacketSummary;
use crate::flow::{FlowConfig, FlowCounters, Shard};
use crate::output::record::ConnRecord;

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
}

/// Hands finished records to the writer's queue under a full-queue policy and counts both
/// outcomes. Shared by the offline worker loop and the live one.
pub struct RecordOut {
    queue: Producer<ConnRecord>,
    policy: FullPolicy,
    /// Records handed to the writer.
    pub records: u64,
    /// Records lost because the queue was full (only under [`FullPolicy::Drop`]).
    pub dropped: u64,
}

impl RecordOut {
    pub fn new(queue: Producer<ConnRecord>, policy: FullPolicy) -> RecordOut {
        RecordOut {
            queue,
            policy,
            records: 0,
            dropped: 0,
        }
    }

    /// Sends one record, waiting or dropping as the policy says.
    pub fn emit(&mut self, rec: ConnRecord) {
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

/// Applies one inbox message to a shard.
pub fn apply(shard: &mut Shard, msg: ToWorker, out: &mut RecordOut) {
    let mut emit = |rec| out.emit(rec);
    match msg {
        ToWorker::Packet(p) => shard.process(&p, &mut emit),
        ToWorker::Tick(now) => shard.advance(now, &mut emit),
        ToWorker::Expect(e) => shard.expect(e),
    }
}

/// Runs a worker until every inbox is closed and drained, then flushes its shard.
pub fn run_worker(
    inboxes: Vec<Consumer<ToWorker>>,
    flow: &FlowConfig,
    records: Producer<ConnRecord>,
    policy: FullPolicy,
) -> WorkerReport {
    let mut shard = Shard::new(flow);
    let mut out = RecordOut::new(records, policy);
    let mut idle_spins = 0u32;
    loop {
        let mut got = false;
        for inbox in &inboxes {
            // Bounded batches per inbox keep several dispatchers fairly served.
            for _ in 0..256 {
                let Some(msg) = inbox.pop() else { break };
                apply(&mut shard, msg, &mut out);
                got = true;
            }
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
    shard.flush(&mut |rec| out.emit(rec));
    WorkerReport {
        flow: shard.counters(),
        records: out.records,
        records_dropped: out.dropped,
    }
}

//! `nameflow read`: capture files through the same dispatch and workers as live capture.
//!
//! The calling thread reads and dispatches; `workers` threads (pinned when asked) own the flow
//! shards; one writer thread encodes and writes. Every queue is bounded, and offline every
//! producer waits for room instead of dropping, so a file is always processed completely.

use super::dispatch::{DispatchCounters, Dispatched, Dispatcher};
use super::spsc;
use super::worker::{run_worker, FullPolicy, ToWorker, WorkerReport};
use crate::capture::pcap::PcapReader;
use crate::capture::{CaptureError, FrameSource};
use crate::decode::{DecodeConfig, DecodeCounters};
use crate::flow::FlowConfig;
use crate::output::clock::{floor_boundary, next_boundary};
use crate::output::record::ConnRecord;
use crate::output::{Clock, OutputConfig, OutputError, PacketClock, Writer, WriterReport};
use std::path::PathBuf;

/// Packet time between two ticks sent to every worker.
const TICK_NS: u64 = 1_000_000_000;

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
}

/// What a run did.
#[derive(Debug, Default)]
pub struct ReadReport {
    pub dispatch: DispatchCounters,
    pub decode: DecodeCounters,
    pub workers: Vec<WorkerReport>,
    pub writer: WriterReport,
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
}

/// Runs the whole pipeline. On an input error the records of everything read before the
/// damage are still written, and the error comes back with the report.
pub fn run_read(cfg: &ReadConfig) -> (ReadReport, Result<(), ReadError>) {
    let mut report = ReadReport::default();
    let mut reader = match PcapReader::open(&cfg.inputs) {
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
        let (p, c) = spsc::channel::<ToWorker>(cfg.queue_capacity);
        to_workers.push(p);
        inboxes.push(c);
    }
    let mut record_producers = Vec::with_capacity(n);
    let mut record_consumers = Vec::with_capacity(n);
    for _ in 0..n {
        let (p, c) = spsc::channel::<ConnRecord>(cfg.record_queue_capacity);
        record_producers.push(p);
        record_consumers.push(c);
    }

    // Packet time drives rotation (a multi-hour trace rotates on its own hour boundaries).
    // The reader advances it once per tick, never per packet.
    let clock = PacketClock::new();
    let mut writer = match Writer::open(&cfg.output, Clock::Packet(clock.clone())) {
        Ok(w) => w,
        Err(e) => return (report, Err(e.into())),
    };
    if let Err(e) = writer.add_log(record_consumers) {
        return (report, Err(e.into()));
    }

    let mut input_result = Ok(());
    let mut dispatcher = Dispatcher::new(
        cfg.decode,
        n,
        None,
        cfg.flow.uid_seed,
        cfg.flow.udp_inactivity_ns,
    );

    let scope_result = std::thread::scope(|s| {
        let writer = s.spawn(move || writer.run());
        let mut handles = Vec::with_capacity(n);
        for (i, (inbox, records)) in inboxes.into_iter().zip(record_producers).enumerate() {
            let core = cores.get(i % cores.len().max(1)).copied();
            let flow = &cfg.flow;
            handles.push(s.spawn(move || {
                if let Some(c) = core {
                    core_affinity::set_for_current(c);
                }
                run_worker(vec![inbox], flow, records, FullPolicy::Wait)
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
            });
            if ts >= last_tick.saturating_add(TICK_NS) {
                last_tick = ts;
                clock.advance(ts);
                for q in &to_workers {
                    q.push_wait(ToWorker::Tick(ts));
                }
            }
        }
        // The logs close at the time of the last packet.
        clock.advance(last_ts);
        // Closing the inboxes tells the workers to flush and finish.
        drop(to_workers);
        let mut workers = Vec::with_capacity(n);
        let mut panicked = false;
        for h in handles {
            match h.join() {
                Ok(r) => workers.push(r),
                Err(_) => panicked = true,
            }
        }
        let w = writer.join();
        (workers, panicked, w)
    });

    let (workers, panicked, writer_result) = scope_result;
    report.workers = workers;
    report.dispatch = dispatcher.counters();
    report.decode = dispatcher.decode_counters();
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
/// writer the reader runs. Every worker first expires what is due before `at`; it gets that
/// tick twice because a worker that has taken the second one from its inbox has finished the
/// first, so its records are queued. Then the clock moves to `at` and the writer, once it has
/// written everything queued, rotates and says so. `stop` ends the wait when a thread has
/// ended early (an output error), which the caller then reports.
fn rotation_barrier(
    to_workers: &[spsc::Producer<ToWorker>],
    clock: &PacketClock,
    at: u64,
    stop: impl Fn() -> bool,
) {
    let before = at.saturating_sub(1);
    for q in to_workers {
        q.push_wait(ToWorker::Tick(before));
        q.push_wait(ToWorker::Tick(before));
    }
    for q in to_workers {
        while !q.is_empty() {
            if stop() {
                return;
            }
            std::thread::yield_now();
        }
    }
    clock.advance(at);
    clock.wait_applied(at, stop);
}

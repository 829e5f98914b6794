//! The writer thread: drains every log's record queues, encodes each record once per
//! encoding into reused buffers, and hands the lines to every sink.
//!
//! It is the only thread that writes logs, so a slow sink never stalls capture: workers see a
//! full queue instead (offline they wait; live they drop and count), and stream sinks buffer
//! and drop on their own side so that a dead collector never stalls the writer either.
//!
//! ```no_run
//! use nameflow::types::spsc;
//! use nameflow::output::record::ConnRecord;
//! use nameflow::output::{Clock, OutputConfig, Writer};
//!
//! let cfg = OutputConfig::default(); // ./logs, Zeek JSON
//! let (tx, rx) = spsc::channel::<ConnRecord>(4096);
//! let mut writer = Writer::open(&cfg, Clock::Wall).expect("open the sinks");
//! writer.add_log(vec![rx]).expect("create conn.log");
//! let stats = writer.stats(); // for stats.log: per-sink written/buffered/dropped
//! let t = std::thread::spawn(move || writer.run());
//! drop(tx); // producers gone: the writer drains, flushes and returns
//! let report = t.join().unwrap().expect("logs written");
//! # let _ = (stats, report);
//! ```

use super::clock::Clock;
use super::record::ConnLine;
use super::schema::{LogRecord, Schema};
use super::sink::dir::DirSink;
use super::sink::nats::{NatsOptions, NatsSink};
use super::sink::stdout::{NullSink, StdoutSink};
use super::sink::stream::{StreamSink, Target};
use super::sink::{Sink, SinkCounters, SinkSpec, SinkStats};
use super::{Encoding, Format, JsonTs};
use crate::types::record::{ConnExtra, ConnRecord, EXTRA_MAX};
use crate::types::spsc::{Backoff, Chunk, Consumer};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records taken from one queue before the writer looks at the others.
const BATCH: usize = 512;

/// When files rotate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate on boundaries of this interval, aligned to midnight UTC (`1h`: on the hour).
    pub interval: Option<Duration>,
    /// Rotate a file once it holds at least this many bytes.
    pub size: Option<u64>,
    /// Gzip rotated files (on a thread of their own).
    pub compress: bool,
}

impl Rotation {
    /// True when files rotate at all.
    pub fn is_on(&self) -> bool {
        self.interval.is_some() || self.size.is_some()
    }

    pub(crate) fn interval_ns(&self) -> Option<u64> {
        self.interval
            .map(|d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
            .filter(|&n| n > 0)
    }
}

/// What a directory sink does when its file system refuses a write (full, over quota, I/O
/// error).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnWriteError {
    /// The writer stops with the error and the run exits 1 (`nameflow read`'s default: a
    /// batch job should say it did not finish).
    #[default]
    Fail,
    /// Records that cannot be written are dropped whole and counted, one warning per episode,
    /// and writing resumes by itself when the file system takes writes again (`nameflow
    /// capture`'s default: a sensor keeps running).
    Drop,
}

/// One sink and how it encodes.
#[derive(Clone, Debug, PartialEq)]
pub struct SinkConfig {
    pub spec: SinkSpec,
    pub format: Format,
}

/// Everything about where and how logs are written, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputConfig {
    /// At least one sink.
    pub sinks: Vec<SinkConfig>,
    pub json_ts: JsonTs,
    /// Rotation of directory sinks.
    pub rotation: Rotation,
    /// Most bytes a stream sink holds while its peer is away or slow; beyond it records are
    /// dropped and counted.
    pub stream_buffer: usize,
    /// How long the writer waits at exit for stream sinks to deliver what they hold.
    pub flush_timeout: Duration,
    /// What directory sinks do when a write fails.
    pub on_write_error: OnWriteError,
    /// Settings of `nats://` sinks (subject, stream, credentials, sensor name).
    pub nats: NatsOptions,
}

impl Default for OutputConfig {
    fn default() -> OutputConfig {
        OutputConfig {
            sinks: vec![SinkConfig {
                spec: SinkSpec::Dir(PathBuf::from("./logs")),
                format: Format::Json,
            }],
            json_ts: JsonTs::Epoch,
            rotation: Rotation::default(),
            stream_buffer: 16 << 20,
            flush_timeout: Duration::from_secs(2),
            on_write_error: OnWriteError::Fail,
            nats: NatsOptions::default(),
        }
    }
}

/// Errors of the writer and its sinks, each naming the file, socket or thread.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot create log directory {path}: {source}; check the path and its permissions")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create {path}: {source}; check the directory's permissions and free space")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path} failed: {source}; check free space on its file system")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}, left by an earlier run: {source}; move it away or make it readable and writable")]
    Recover {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot move {from} to {to} while rotating: {source}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot gzip {path}: {source}; the uncompressed file was kept")]
    Compress {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the {what} thread: {source}")]
    Spawn {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("cannot install the SIGHUP handler that reopens log files: {0}")]
    Signal(std::io::Error),
    #[error("output {sink}: {message}")]
    Nats { sink: String, message: String },
    #[error("the {0} thread panicked; this is a bug, please report it")]
    ThreadPanic(&'static str),
}

/// Live counts of every sink, for stats.log. Cheap to clone; reading never blocks the writer.
#[derive(Clone, Debug, Default)]
pub struct OutputStats {
    sinks: Vec<(String, Arc<SinkCounters>)>,
}

impl OutputStats {
    /// The current counts, one entry per sink in the order they were configured.
    pub fn snapshot(&self) -> Vec<SinkStats> {
        self.sinks.iter().map(|(n, c)| c.snapshot(n)).collect()
    }
}

/// What the writer did.
#[derive(Clone, Debug, Default)]
pub struct WriterReport {
    /// Records taken from the queues (of every log).
    pub records: u64,
    /// Each sink's final counts.
    pub sinks: Vec<SinkStats>,
}

/// One log's queues, type-erased so the writer can hold logs of different record types.
trait LogInput: Send {
    /// Takes up to `BATCH` records from each queue and writes them; returns how many.
    fn drain(&mut self, out: &mut Outputs) -> Result<usize, OutputError>;
    /// True once every producer is gone and every queue is empty.
    fn is_finished(&self) -> bool;
}

struct Input<R: LogRecord + Copy + Send + 'static> {
    log: usize,
    queues: Vec<Consumer<R>>,
}

impl<R: LogRecord + Copy + Send + 'static> LogInput for Input<R> {
    fn drain(&mut self, out: &mut Outputs) -> Result<usize, OutputError> {
        let mut n = 0;
        for q in &self.queues {
            for _ in 0..BATCH {
                let Some(rec) = q.pop() else { break };
                out.write(self.log, &rec)?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn is_finished(&self) -> bool {
        self.queues.iter().all(Consumer::is_finished)
    }
}

/// conn.log's queues: each worker's records and, when names or inventories are on, the
/// queue of what travels beside each record (one encoded [`ConnExtra`] per record, pushed
/// before it), decoded into one scratch value here.
struct ConnInput {
    log: usize,
    queues: Vec<(Consumer<ConnRecord>, Option<Consumer<Chunk>>)>,
    extra: ConnExtra,
    buf: Box<[u8; EXTRA_MAX]>,
}

impl LogInput for ConnInput {
    fn drain(&mut self, out: &mut Outputs) -> Result<usize, OutputError> {
        let mut n = 0;
        for (q, extras) in &self.queues {
            for _ in 0..BATCH {
                let Some(rec) = q.pop() else { break };
                let extra = match extras {
                    Some(x) => {
                        // Pushed before its record, so it is there; damaged bytes (never
                        // written by a worker) leave the columns unset rather than wrong.
                        let len = x.pop_msg(&mut self.buf[..]).unwrap_or(0);
                        self.extra.decode(&self.buf[..len]);
                        Some(&self.extra)
                    }
                    None => None,
                };
                out.write(self.log, &ConnLine { rec: &rec, extra })?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn is_finished(&self) -> bool {
        self.queues.iter().all(|(q, _)| q.is_finished())
    }
}

/// The sinks, the distinct encodings they use, and one reused buffer per encoding.
struct Outputs {
    sinks: Vec<Box<dyn Sink>>,
    encodings: Vec<Encoding>,
    /// `sink_enc[i]`: index into `encodings` for sink `i`.
    sink_enc: Vec<usize>,
    bufs: Vec<Vec<u8>>,
}

impl Outputs {
    #[inline]
    fn write<R: LogRecord>(&mut self, log: usize, rec: &R) -> Result<(), OutputError> {
        for (enc, buf) in self.encodings.iter().zip(self.bufs.iter_mut()) {
            buf.clear();
            enc.encode(rec, buf);
        }
        for (sink, &e) in self.sinks.iter_mut().zip(&self.sink_enc) {
            sink.write(log, &self.bufs[e])?;
        }
        Ok(())
    }
}

/// The writer: open it (sinks are created, so bad paths fail before capture starts), add the
/// logs with their queues, then `run` it on its own thread.
pub struct Writer {
    inputs: Vec<Box<dyn LogInput>>,
    outputs: Outputs,
    /// Set by SIGHUP when a directory sink is configured.
    hup: Option<(Arc<AtomicBool>, signal_hook::SigId)>,
    clock: Clock,
    flush_timeout: Duration,
    records: u64,
}

impl Writer {
    /// Opens every sink of `cfg`. `clock` drives rotation and file dates: packet time when
    /// reading captures, wall time live.
    pub fn open(cfg: &OutputConfig, clock: Clock) -> Result<Writer, OutputError> {
        let mut sinks: Vec<Box<dyn Sink>> = Vec::with_capacity(cfg.sinks.len());
        let mut has_dir = false;
        for s in &cfg.sinks {
            let stream = matches!(
                s.spec,
                SinkSpec::Tcp(_) | SinkSpec::Unix(_) | SinkSpec::Nats(_)
            );
            // NATS messages are Zeek JSON whatever --format says (one record per message).
            let format = match s.spec {
                SinkSpec::Nats(_) => Format::Json,
                _ => s.format,
            };
            let enc = Encoding {
                format,
                json_ts: cfg.json_ts,
                path_key: stream && format == Format::Json,
            };
            let sink: Box<dyn Sink> = match &s.spec {
                SinkSpec::Dir(d) => {
                    has_dir = true;
                    Box::new(DirSink::open(
                        d,
                        enc,
                        clock.clone(),
                        cfg.rotation,
                        cfg.on_write_error,
                    )?)
                }
                SinkSpec::Stdout => Box::new(StdoutSink::open(enc, clock.clone())),
                SinkSpec::Tcp(a) => Box::new(StreamSink::open(
                    s.spec.to_string(),
                    Target::Tcp(a.clone()),
                    enc,
                    clock.clone(),
                    cfg.stream_buffer,
                )?),
                SinkSpec::Unix(p) => Box::new(StreamSink::open(
                    s.spec.to_string(),
                    Target::Unix(p.clone()),
                    enc,
                    clock.clone(),
                    cfg.stream_buffer,
                )?),
                SinkSpec::Null => Box::new(NullSink::new(enc)),
                SinkSpec::Nats(n) => {
                    Box::new(NatsSink::open(n, &cfg.nats, enc, cfg.stream_buffer)?)
                }
            };
            sinks.push(sink);
        }
        let mut encodings: Vec<Encoding> = Vec::new();
        let mut sink_enc = Vec::with_capacity(sinks.len());
        for s in &sinks {
            let e = s.encoding();
            let i = match encodings.iter().position(|x| *x == e) {
                Some(i) => i,
                None => {
                    encodings.push(e);
                    encodings.len() - 1
                }
            };
            sink_enc.push(i);
        }
        let bufs = encodings.iter().map(|_| Vec::with_capacity(4096)).collect();
        let hup = if has_dir {
            let flag = Arc::new(AtomicBool::new(false));
            let id = signal_hook::flag::register(signal_hook::consts::SIGHUP, flag.clone())
                .map_err(OutputError::Signal)?;
            Some((flag, id))
        } else {
            None
        };
        Ok(Writer {
            inputs: Vec::new(),
            outputs: Outputs {
                sinks,
                encodings,
                sink_enc,
                bufs,
            },
            hup,
            clock,
            flush_timeout: cfg.flush_timeout,
            records: 0,
        })
    }

    /// Adds a log and the queues its records arrive on (one per producer). Directory sinks
    /// create `<path>.log` now. Each log may be added once.
    pub fn add_log<R: LogRecord + Copy + Send + 'static>(
        &mut self,
        queues: Vec<Consumer<R>>,
    ) -> Result<(), OutputError> {
        let log = self.inputs.len();
        let schema: &'static Schema = R::schema();
        for s in &mut self.outputs.sinks {
            s.add_log(log, schema)?;
        }
        self.inputs.push(Box::new(Input { log, queues }));
        Ok(())
    }

    /// Adds conn.log: each worker's record queue and, when names or inventories are on,
    /// its queue of what travels beside each record (`extras` empty, or one per record queue
    /// in the same order).
    pub fn add_conn_log(
        &mut self,
        queues: Vec<Consumer<ConnRecord>>,
        extras: Vec<Consumer<Chunk>>,
    ) -> Result<(), OutputError> {
        assert!(extras.is_empty() || extras.len() == queues.len());
        let log = self.inputs.len();
        let schema: &'static Schema = ConnLine::schema();
        for s in &mut self.outputs.sinks {
            s.add_log(log, schema)?;
        }
        let mut extras = extras.into_iter();
        let queues = queues.into_iter().map(|q| (q, extras.next())).collect();
        self.inputs.push(Box::new(ConnInput {
            log,
            queues,
            extra: ConnExtra::default(),
            buf: Box::new([0; EXTRA_MAX]),
        }));
        Ok(())
    }

    /// Live counts of every sink.
    pub fn stats(&self) -> OutputStats {
        OutputStats {
            sinks: self
                .outputs
                .sinks
                .iter()
                .map(|s| (s.name().to_owned(), s.counters().clone()))
                .collect(),
        }
    }

    /// Runs until every queue is closed and drained, then flushes and closes every sink
    /// (waiting at most the flush timeout for stream sinks to deliver).
    pub fn run(mut self) -> Result<WriterReport, OutputError> {
        let mut idle = 0u32;
        let mut wait = Backoff::new();
        let mut now = None;
        loop {
            if let Some((flag, _)) = &self.hup {
                if flag.swap(false, Ordering::Relaxed) {
                    for s in &mut self.outputs.sinks {
                        s.reopen()?;
                    }
                }
            }
            // The clock is read before draining. When a packet clock is read as T and the
            // queues then turn out empty, every record queued before the reader moved the
            // clock to T has been written, so rotating at T puts each record in the file of
            // the time it was emitted. While records keep coming, the last such T stands.
            let seen = self.clock.now_ns();
            let mut got = 0;
            for input in &mut self.inputs {
                got += input.drain(&mut self.outputs)?;
            }
            self.records += got as u64;
            let settled = got == 0 || matches!(self.clock, Clock::Wall);
            if settled {
                now = seen;
            }
            for s in &mut self.outputs.sinks {
                s.poll(now)?;
            }
            if let (true, Clock::Packet(c), Some(t)) = (settled, &self.clock, seen) {
                c.mark_applied(t);
            }
            if got > 0 {
                idle = 0;
                wait.reset();
                continue;
            }
            if self.inputs.iter().all(|i| i.is_finished()) {
                break;
            }
            if idle == 0 {
                for s in &mut self.outputs.sinks {
                    s.idle()?;
                }
            }
            idle = idle.saturating_add(1);
            wait.snooze();
        }
        let deadline = Instant::now() + self.flush_timeout;
        let mut first_err = Ok(());
        for s in &mut self.outputs.sinks {
            // Every sink gets its chance to finish even when another one fails.
            if let Err(e) = s.finish(deadline) {
                if first_err.is_ok() {
                    first_err = Err(e);
                }
            }
        }
        first_err?;
        Ok(WriterReport {
            records: self.records,
            sinks: self.stats().snapshot(),
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some((_, id)) = self.hup.take() {
            signal_hook::low_level::unregister(id);
        }
    }
}

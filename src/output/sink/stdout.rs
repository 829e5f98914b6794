//! Standard output, and the null sink used by benchmarks.

use super::{Sink, SinkCounters};
use crate::output::clock::Clock;
use crate::output::schema::Schema;
use crate::output::writer::OutputError;
use crate::output::Encoding;
use std::io::{BufWriter, ErrorKind, Stdout, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Every log's records on standard output (TSV: each log's header before its first row).
/// A closed pipe (`nameflow read -o - x.pcap | head`) is the reader's choice, not an error:
/// from then on records are counted as dropped.
pub(crate) struct StdoutSink {
    enc: Encoding,
    clock: Clock,
    out: BufWriter<Stdout>,
    /// True once the reading end has gone away.
    closed: bool,
    /// Logs whose TSV header is still to be written: it is dated when the first packet's
    /// time is known, like a directory sink's files.
    pending_headers: Vec<&'static Schema>,
    scratch: Vec<u8>,
    counters: Arc<SinkCounters>,
    written: u64,
    dropped: u64,
    bytes: u64,
}

impl StdoutSink {
    pub(crate) fn open(enc: Encoding, clock: Clock) -> StdoutSink {
        StdoutSink {
            enc,
            clock,
            out: BufWriter::with_capacity(1 << 16, std::io::stdout()),
            closed: false,
            pending_headers: Vec::new(),
            scratch: Vec::new(),
            counters: Arc::default(),
            written: 0,
            dropped: 0,
            bytes: 0,
        }
    }

    /// Writes unless the pipe is closed; returns whether the bytes went out.
    fn put(&mut self, bytes: &[u8]) -> Result<bool, OutputError> {
        if self.closed {
            return Ok(false);
        }
        match self.out.write_all(bytes) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(false)
            }
            Err(source) => Err(OutputError::Write {
                path: PathBuf::from("<stdout>"),
                source,
            }),
        }
    }

    fn flush(&mut self) -> Result<(), OutputError> {
        if self.closed {
            return Ok(());
        }
        match self.out.flush() {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(source) => Err(OutputError::Write {
                path: PathBuf::from("<stdout>"),
                source,
            }),
        }
    }

    /// Writes the headers still pending, dated at the first packet (or now, live).
    fn headers(&mut self) -> Result<(), OutputError> {
        if self.pending_headers.is_empty() {
            return Ok(());
        }
        let open = self
            .clock
            .start_ns()
            .unwrap_or_else(|| self.clock.now_or_wall());
        let mut h = std::mem::take(&mut self.scratch);
        h.clear();
        for schema in self.pending_headers.drain(..) {
            self.enc.header(schema, open, &mut h);
        }
        let r = self.put(&h);
        self.scratch = h;
        r.map(|_| ())
    }

    fn publish(&self) {
        self.counters.written.store(self.written, Ordering::Relaxed);
        self.counters.dropped.store(self.dropped, Ordering::Relaxed);
        self.counters.bytes.store(self.bytes, Ordering::Relaxed);
    }
}

impl Sink for StdoutSink {
    fn name(&self) -> &str {
        "-"
    }

    fn encoding(&self) -> Encoding {
        self.enc
    }

    fn add_log(&mut self, _log: usize, schema: &'static Schema) -> Result<(), OutputError> {
        self.pending_headers.push(schema);
        Ok(())
    }

    fn write(&mut self, _log: usize, line: &[u8]) -> Result<(), OutputError> {
        self.headers()?;
        if self.put(line)? {
            self.written += 1;
            self.bytes += line.len() as u64;
        } else {
            self.dropped += 1;
        }
        Ok(())
    }

    fn poll(&mut self, now: Option<u64>) -> Result<(), OutputError> {
        if now.is_some() {
            self.headers()?;
        }
        self.publish();
        Ok(())
    }

    fn idle(&mut self) -> Result<(), OutputError> {
        self.flush()?;
        self.publish();
        Ok(())
    }

    fn reopen(&mut self) -> Result<(), OutputError> {
        Ok(())
    }

    fn finish(&mut self, _deadline: Instant) -> Result<(), OutputError> {
        self.headers()?;
        let mut f = std::mem::take(&mut self.scratch);
        f.clear();
        self.enc.footer(self.clock.now_or_wall(), &mut f);
        self.put(&f)?;
        self.flush()?;
        self.publish();
        Ok(())
    }

    fn counters(&self) -> &Arc<SinkCounters> {
        &self.counters
    }
}

/// Counts records and throws them away: measures the writer without any I/O.
pub(crate) struct NullSink {
    enc: Encoding,
    counters: Arc<SinkCounters>,
    written: u64,
    bytes: u64,
}

impl NullSink {
    pub(crate) fn new(enc: Encoding) -> NullSink {
        NullSink {
            enc,
            counters: Arc::default(),
            written: 0,
            bytes: 0,
        }
    }
}

impl Sink for NullSink {
    fn name(&self) -> &str {
        "null:"
    }

    fn encoding(&self) -> Encoding {
        self.enc
    }

    fn add_log(&mut self, _log: usize, _schema: &'static Schema) -> Result<(), OutputError> {
        Ok(())
    }

    fn write(&mut self, _log: usize, line: &[u8]) -> Result<(), OutputError> {
        self.written += 1;
        self.bytes += line.len() as u64;
        Ok(())
    }

    fn poll(&mut self, _now: Option<u64>) -> Result<(), OutputError> {
        self.counters.written.store(self.written, Ordering::Relaxed);
        self.counters.bytes.store(self.bytes, Ordering::Relaxed);
        Ok(())
    }

    fn idle(&mut self) -> Result<(), OutputError> {
        self.poll(None)
    }

    fn reopen(&mut self) -> Result<(), OutputError> {
        Ok(())
    }

    fn finish(&mut self, _deadline: Instant) -> Result<(), OutputError> {
        self.poll(None)
    }

    fn counters(&self) -> &Arc<SinkCounters> {
        &self.counters
    }
}

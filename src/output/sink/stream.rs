//! Stream sinks: newline-delimited records to a TCP collector (`tcp://HOST:PORT`) or a Unix
//! stream socket (`unix:PATH`).
//!
//! The writer thread never touches the socket. It appends whole records to a chunk and hands
//! full chunks to this sink's sender thread through a short mutex-protected queue (one lock
//! per chunk of up to 64 KiB, never per record). The buffer is bounded: when the peer is away
//! or slow and the buffer is full, new records are dropped and counted, so the writer keeps
//! draining the workers' queues and capture never waits on a collector.
//!
//! The sender connects, reconnects with exponential backoff (100 ms doubling to 5 s), and
//! writes chunks. A record is never split across connections: when a connection breaks in
//! the middle of a record, that record is sent again, whole, on the next connection, after
//! the records that were already complete. A record counts as written once its last byte is
//! in the kernel's socket buffer; bytes the kernel accepted but a dying peer never read are
//! beyond what a plain stream can know (no acknowledgements), so they are neither resent nor
//! counted as dropped. At exit the sender keeps trying until the flush deadline, then counts
//! what is left as dropped.
//!
//! JSON records carry `"_path":"<log>"` first, so one connection can carry every log. TSV
//! streams start each connection with the header lines of every log.

use super::{Sink, SinkCounters};
use crate::output::clock::Clock;
use crate::output::schema::Schema;
use crate::output::writer::OutputError;
use crate::output::Encoding;
use std::collections::VecDeque;
use std::io::{ErrorKind, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Records are handed to the sender in chunks of about this size.
const CHUNK: usize = 64 * 1024;
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one blocked write may take before the sender looks at its deadline again.
const WRITE_TIMEOUT: Duration = Duration::from_millis(200);

/// Where a stream sink connects.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    Tcp(String),
    Unix(PathBuf),
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn connect(target: &Target) -> std::io::Result<Conn> {
        let conn = match target {
            Target::Tcp(addr) => {
                let mut last = None;
                let mut found = None;
                for a in addr.to_socket_addrs()? {
                    match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                let s = match (found, last) {
                    (Some(s), _) => s,
                    (None, Some(e)) => return Err(e),
                    (None, None) => {
                        return Err(std::io::Error::new(
                            ErrorKind::NotFound,
                            "the host name resolved to no address",
                        ))
                    }
                };
                s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                Conn::Tcp(s)
            }
            Target::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                Conn::Unix(s)
            }
        };
        Ok(conn)
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }

    fn shutdown(&self) {
        // The peer sees end-of-stream; an error here means it is gone already.
        let _ = match self {
            Conn::Tcp(s) => s.shutdown(Shutdown::Write),
            Conn::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }
}

struct Chunk {
    bytes: Vec<u8>,
    records: u64,
}

struct State {
    chunks: VecDeque<Chunk>,
    /// Emptied chunk buffers, reused so the steady state allocates nothing.
    free: Vec<Vec<u8>>,
    /// Sent at the start of every connection (TSV headers).
    preamble: Vec<u8>,
    /// Set at exit: deliver what is queued until this instant.
    closing: Option<Instant>,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    /// Bytes handed over and not yet fully sent: the writer checks it against the capacity
    /// without taking the lock.
    queued_bytes: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in the other thread cannot leave the queue half-updated (every update is
        // one push or pop), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) struct StreamSink {
    name: String,
    enc: Encoding,
    clock: Clock,
    shared: Arc<Shared>,
    chunk: Vec<u8>,
    chunk_records: u64,
    capacity: usize,
    thread: Option<JoinHandle<()>>,
    counters: Arc<SinkCounters>,
}

impl StreamSink {
    /// Starts the sender thread; the first connection attempt happens there, so a collector
    /// that is not up yet is not an error.
    pub(crate) fn open(
        name: String,
        target: Target,
        enc: Encoding,
        clock: Clock,
        capacity: usize,
    ) -> Result<StreamSink, OutputError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                chunks: VecDeque::new(),
                free: Vec::new(),
                preamble: Vec::new(),
                closing: None,
            }),
            cv: Condvar::new(),
            queued_bytes: AtomicUsize::new(0),
        });
        let counters: Arc<SinkCounters> = Arc::default();
        let thread = {
            let shared = shared.clone();
            let counters = counters.clone();
            std::thread::Builder::new()
                .name("nameflow-sink".into())
                .spawn(move || run_sender(target, &shared, &counters))
                .map_err(|source| OutputError::Spawn {
                    what: "stream sink",
                    source,
                })?
        };
        Ok(StreamSink {
            name,
            enc,
            clock,
            shared,
            chunk: Vec::with_capacity(CHUNK),
            chunk_records: 0,
            capacity: capacity.max(CHUNK),
            thread: Some(thread),
            counters,
        })
    }

    fn hand_off(&mut self) {
        if self.chunk.is_empty() {
            return;
        }
        let records = self.chunk_records;
        let len = self.chunk.len();
        let mut st = self.shared.lock();
        let next = st.free.pop().unwrap_or_else(|| Vec::with_capacity(CHUNK));
        let bytes = std::mem::replace(&mut self.chunk, next);
        st.chunks.push_back(Chunk { bytes, records });
        drop(st);
        self.chunk_records = 0;
        self.shared.queued_bytes.fetch_add(len, Ordering::AcqRel);
        self.counters.buffered.fetch_add(records, Ordering::Relaxed);
        self.shared.cv.notify_one();
    }
}

impl Sink for StreamSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn encoding(&self) -> Encoding {
        self.enc
    }

    fn add_log(&mut self, _log: usize, schema: &'static Schema) -> Result<(), OutputError> {
        let now = self.clock.now_or_wall();
        let mut st = self.shared.lock();
        self.enc.header(schema, now, &mut st.preamble);
        Ok(())
    }

    fn write(&mut self, _log: usize, line: &[u8]) -> Result<(), OutputError> {
        if self.chunk.len() + line.len() > CHUNK {
            self.hand_off();
        }
        let queued = self.shared.queued_bytes.load(Ordering::Acquire);
        if queued + self.chunk.len() + line.len() > self.capacity {
            // Full: the newest record is the one given up, and counted.
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.chunk.extend_from_slice(line);
        self.chunk_records += 1;
        Ok(())
    }

    fn poll(&mut self, _now: Option<u64>) -> Result<(), OutputError> {
        if self.chunk.len() >= CHUNK / 2 {
            self.hand_off();
        }
        Ok(())
    }

    fn idle(&mut self) -> Result<(), OutputError> {
        self.hand_off();
        Ok(())
    }

    fn reopen(&mut self) -> Result<(), OutputError> {
        Ok(())
    }

    fn finish(&mut self, deadline: Instant) -> Result<(), OutputError> {
        self.hand_off();
        self.shared.lock().closing = Some(deadline);
        self.shared.cv.notify_one();
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| OutputError::ThreadPanic("stream sink"))?;
        }
        Ok(())
    }

    fn counters(&self) -> &Arc<SinkCounters> {
        &self.counters
    }
}

impl Drop for StreamSink {
    fn drop(&mut self) {
        // Dropped without `finish` (an error elsewhere): stop the sender now.
        if let Some(t) = self.thread.take() {
            self.shared.lock().closing = Some(Instant::now());
            self.shared.cv.notify_one();
            let _ = t.join();
        }
    }
}

/// The chunk being sent: its bytes and how far they have gone out.
struct Sending {
    chunk: Chunk,
    sent: usize,
}

fn newlines(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

/// The sender thread: connect, send chunks in order, reconnect, and at exit deliver until
/// the deadline.
fn run_sender(target: Target, shared: &Shared, counters: &SinkCounters) {
    let mut conn: Option<Conn> = None;
    let mut backoff = MIN_BACKOFF;
    let mut next_attempt = Instant::now();
    let mut current: Option<Sending> = None;
    loop {
        // Take the next chunk, or wait for one; with nothing left at exit, we are done.
        let closing = {
            let mut st = shared.lock();
            while current.is_none() {
                if let Some(chunk) = st.chunks.pop_front() {
                    current = Some(Sending { chunk, sent: 0 });
                } else if st.closing.is_some() {
                    drop(st);
                    if let Some(c) = conn.take() {
                        c.shutdown();
                    }
                    return;
                } else {
                    st = shared.cv.wait(st).unwrap_or_else(|p| p.into_inner());
                }
            }
            st.closing
        };
        if closing.is_some_and(|d| Instant::now() >= d) {
            give_up(shared, counters, current.take());
            if let Some(c) = conn.take() {
                c.shutdown();
            }
            return;
        }
        let Some(c) = conn.as_mut() else {
            let now = Instant::now();
            if now < next_attempt {
                let wait = next_attempt - now;
                let wait = closing.map_or(wait, |d| wait.min(d.saturating_duration_since(now)));
                let st = shared.lock();
                drop(shared.cv.wait_timeout(st, wait));
                continue;
            }
            match Conn::connect(&target) {
                Ok(mut c) => {
                    let preamble = shared.lock().preamble.clone();
                    if preamble.is_empty() || write_all(&mut c, &preamble) {
                        conn = Some(c);
                        backoff = MIN_BACKOFF;
                    }
                }
                Err(_) => {
                    next_attempt = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            continue;
        };
        let Some(s) = current.as_mut() else { continue };
        match c.write(&s.chunk.bytes[s.sent..]) {
            Ok(n) if n > 0 => {
                let done = newlines(&s.chunk.bytes[s.sent..s.sent + n]);
                s.sent += n;
                counters.written.fetch_add(done, Ordering::Relaxed);
                counters.buffered.fetch_sub(done, Ordering::Relaxed);
                counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
                if s.sent == s.chunk.bytes.len() {
                    if let Some(s) = current.take() {
                        recycle(shared, s.chunk.bytes);
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                // A slow peer: keep the connection and look at the deadline again.
            }
            _ => {
                // The connection is gone. Resend the record it broke off, whole, on the next
                // one: rewind to the end of the last complete record.
                s.sent = s.chunk.bytes[..s.sent]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1);
                conn = None;
                next_attempt = Instant::now() + MIN_BACKOFF;
            }
        }
    }
}

fn write_all(c: &mut Conn, mut buf: &[u8]) -> bool {
    let give_up = Instant::now() + CONNECT_TIMEOUT;
    while !buf.is_empty() {
        match c.write(buf) {
            Ok(0) => return false,
            Ok(n) => buf = &buf[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) && Instant::now() < give_up => {}
            Err(_) => return false,
        }
    }
    true
}

fn recycle(shared: &Shared, mut bytes: Vec<u8>) {
    shared.queued_bytes.fetch_sub(bytes.len(), Ordering::AcqRel);
    bytes.clear();
    shared.lock().free.push(bytes);
}

/// The deadline passed: everything not yet written is dropped, and counted.
fn give_up(shared: &Shared, counters: &SinkCounters, current: Option<Sending>) {
    let mut lost = 0;
    if let Some(s) = current {
        lost += newlines(&s.chunk.bytes[s.sent..]);
        shared
            .queued_bytes
            .fetch_sub(s.chunk.bytes.len(), Ordering::AcqRel);
    }
    let mut st = shared.lock();
    while let Some(c) = st.chunks.pop_front() {
        lost += c.records;
        shared
            .queued_bytes
            .fetch_sub(c.bytes.len(), Ordering::AcqRel);
    }
    counters.dropped.fetch_add(lost, Ordering::Relaxed);
    counters.buffered.fetch_sub(lost, Ordering::Relaxed);
}

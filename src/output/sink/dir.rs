//! The directory sink: `DIR/<path>.log` for each log, as Zeek writes them.
//!
//! Rotation follows zeekctl. With an interval, files rotate on boundaries aligned to the clock
//! (multiples of the interval from midnight UTC, so `1h` rotates on the hour); with a size,
//! a file rotates once it has grown past it. A rotated file moves to
//! `DIR/<open date>/<path>.<open HH:MM:SS>-<close HH:MM:SS>.log`, the layout of Zeek's log
//! archives, and is gzipped there by a thread of its own when asked, so compression never
//! holds up the writer. The clock is the writer's: packet time when reading a capture, so a
//! multi-hour trace rotates on its own hour boundaries. At exit, a rotating sink archives its
//! current files too (as `zeekctl stop` does), so every record ends up in exactly one archive.
//!
//! No log is lost at start: a `<path>.log` an earlier run left is never truncated (see
//! [`super::leftover`]): with rotation it is archived first, without it the new run appends
//! (unless it is in the other format: archived then too).
//!
//! Whole records only. Records are gathered in a buffer of whole lines and handed to the
//! kernel in one `write` per buffer, so a crash leaves at most the last line torn (and the
//! next start ends it). When the file system refuses a write (full, over quota, I/O error)
//! and only part of the buffer went in, the file is cut back to the end of the last whole
//! record. With [`OnWriteError::Drop`] the sink then drops the records it cannot write, whole,
//! and counts them (`dropped`), warns once per episode, and tries again at most a second
//! later and at each rotation, so writing resumes by itself when space returns.
//!
//! SIGHUP makes the sink reopen its files (for logrotate): the current file gets its footer
//! and is closed, and `<path>.log` is opened again, appending, with a header when it is new.

use super::{leftover, Sink, SinkCounters};
use crate::output::clock::{floor_boundary, next_boundary, Clock};
use crate::output::schema::Schema;
use crate::output::writer::{OnWriteError, OutputError, Rotation};
use crate::output::zeek::Civil;
use crate::output::Encoding;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Permissions of every log file and archive this sink creates: owner read/write, group read.
pub const LOG_FILE_MODE: u32 = 0o640;

/// Bytes of whole records gathered before they are handed to the kernel in one write.
const BUF: usize = 64 * 1024;

/// How long after a failed write the sink tries again (records meanwhile are dropped).
const RETRY: Duration = Duration::from_secs(1);

/// One open log file.
struct LogFile {
    schema: &'static Schema,
    /// `DIR/<path>.log`.
    path: PathBuf,
    /// `None` while it could not be created (dropping; retried with the next write).
    file: Option<File>,
    /// Whole lines not yet written.
    buf: Vec<u8>,
    /// Where each line of `buf` ends, and whether it is a record (else a header or footer).
    ends: Vec<(usize, bool)>,
    /// When the file was opened (clock time); `None` until the clock first has a time, and
    /// the header is written then.
    open_ts: Option<u64>,
    /// Bytes in the file, all of them whole lines.
    on_disk: u64,
    /// The header must be written before the next record: this run has not written one yet
    /// to this file, or the one it tried was dropped.
    needs_header: bool,
    /// A failed write left part of a line in the file and cutting it off failed too: cut
    /// again (or end the line) before writing.
    torn: bool,
}

impl LogFile {
    /// Bytes in the file and in the buffer, for size rotation.
    fn size(&self) -> u64 {
        self.on_disk + self.buf.len() as u64
    }

    fn push(&mut self, line: &[u8], record: bool) {
        self.buf.extend_from_slice(line);
        self.ends.push((self.buf.len(), record));
    }
}

/// Is the file system taking writes, and what was dropped while it was not.
struct Health {
    policy: OnWriteError,
    /// The sink, as the user named it, for warnings.
    name: String,
    /// Set while writes fail: when to try again, and the dropped count when it started.
    failing: Option<(Instant, u64)>,
    written: u64,
    bytes: u64,
    dropped: u64,
}

impl Health {
    /// False while failing and the next attempt is not due: the caller drops instead.
    fn may_write(&self) -> bool {
        match self.failing {
            None => true,
            Some((retry_at, _)) => Instant::now() >= retry_at,
        }
    }

    /// Try again at the next write (rotation, exit).
    fn retry_now(&mut self) {
        if let Some((at, _)) = self.failing.as_mut() {
            *at = Instant::now();
        }
    }

    /// A write failed: under `Fail` the error ends the run; under `Drop` an episode starts
    /// (one warning) or goes on, and the next attempt is a second away.
    fn failed(&mut self, err: OutputError) -> Result<(), OutputError> {
        if self.policy == OnWriteError::Fail {
            return Err(err);
        }
        let retry_at = Instant::now() + RETRY;
        match self.failing.as_mut() {
            Some((at, _)) => *at = retry_at,
            None => {
                eprintln!(
                    "nameflow: warning: output {}: {err}; dropping records (counted as sink_dropped) until it can write again, trying every second",
                    self.name
                );
                self.failing = Some((retry_at, self.dropped));
            }
        }
        Ok(())
    }

    /// A write went through: an episode ends.
    fn recovered(&mut self) {
        if let Some((_, at_start)) = self.failing.take() {
            eprintln!(
                "nameflow: output {}: writing again; {} records were dropped",
                self.name,
                self.dropped - at_start
            );
        }
    }

    /// Counts the lines of `f.buf` from `from` on as dropped and empties the buffer.
    fn drop_rest(&mut self, f: &mut LogFile, from: usize) {
        for &(_, record) in &f.ends[from..] {
            if record {
                self.dropped += 1;
            } else {
                // A header that did not make it is written again before the next record (a
                // footer is only ever last, so this flag dies with its file).
                f.needs_header = true;
            }
        }
        f.buf.clear();
        f.ends.clear();
    }
}

/// Opens `path` for appending (creating it with [`LOG_FILE_MODE`]).
fn open_append(path: &Path) -> std::io::Result<File> {
    // Logs name hosts and workloads: readable by the service's group, never by everyone
    // (the mode applies when the file is created; the umask can only narrow it).
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(LOG_FILE_MODE)
        .open(path)
}

/// Writes what `f` holds. Every line is written whole or not at all: a failure in the middle
/// cuts the file back to the last whole line, and the lines not written are dropped.
fn flush(f: &mut LogFile, h: &mut Health) -> Result<(), OutputError> {
    if f.buf.is_empty() {
        return Ok(());
    }
    if !h.may_write() {
        h.drop_rest(f, 0);
        return Ok(());
    }
    if f.file.is_none() {
        match open_append(&f.path) {
            Ok(file) => {
                f.on_disk = file.metadata().map(|m| m.len()).unwrap_or(0);
                f.file = Some(file);
            }
            Err(source) => {
                h.drop_rest(f, 0);
                return h.failed(OutputError::Create {
                    path: f.path.clone(),
                    source,
                });
            }
        }
    }
    let Some(file) = f.file.as_mut() else {
        return Ok(());
    };
    if f.torn {
        if file.set_len(f.on_disk).is_ok() {
            f.torn = false;
        } else {
            // Cannot cut the fragment off: end it, so the next record is a line of its own.
            f.buf.insert(0, b'\n');
            for e in &mut f.ends {
                e.0 += 1;
            }
            f.ends.insert(0, (1, false));
        }
    }
    let mut done = 0;
    let mut err = None;
    while done < f.buf.len() {
        match file.write(&f.buf[done..]) {
            Ok(0) => {
                err = Some(std::io::Error::from(ErrorKind::WriteZero));
                break;
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    if f.torn && done > 0 {
        f.torn = false;
        f.on_disk += 1;
        done -= 1;
        f.buf.drain(..1);
        f.ends.remove(0);
        for e in &mut f.ends {
            e.0 -= 1;
        }
    }
    let whole = f.ends.partition_point(|&(end, _)| end <= done);
    let boundary = whole.checked_sub(1).map_or(0, |i| f.ends[i].0);
    for &(_, record) in &f.ends[..whole] {
        h.written += u64::from(record);
    }
    h.bytes += boundary as u64;
    if done > boundary && file.set_len(f.on_disk + boundary as u64).is_err() {
        f.torn = true;
    }
    f.on_disk += boundary as u64;
    match err {
        None => {
            f.buf.clear();
            f.ends.clear();
            h.recovered();
            Ok(())
        }
        Some(source) => {
            h.drop_rest(f, whole);
            h.failed(OutputError::Write {
                path: f.path.clone(),
                source,
            })
        }
    }
}

pub(crate) struct DirSink {
    name: String,
    dir: PathBuf,
    enc: Encoding,
    clock: Clock,
    rotation: Rotation,
    logs: Vec<Option<LogFile>>,
    /// The next interval boundary, once the clock has a time.
    next_rotate: Option<u64>,
    compressor: Option<Compressor>,
    /// Scratch for header and footer lines.
    scratch: Vec<u8>,
    counters: Arc<SinkCounters>,
    health: Health,
}

impl DirSink {
    /// Creates the directory (an unwritable output fails here, before any packet is read).
    pub(crate) fn open(
        dir: &Path,
        enc: Encoding,
        clock: Clock,
        rotation: Rotation,
        policy: OnWriteError,
    ) -> Result<DirSink, OutputError> {
        std::fs::create_dir_all(dir).map_err(|source| OutputError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let compressor = if rotation.compress && rotation.is_on() {
            Some(Compressor::start(policy)?)
        } else {
            None
        };
        let name = dir.display().to_string();
        Ok(DirSink {
            name: name.clone(),
            dir: dir.to_owned(),
            enc,
            clock,
            rotation,
            logs: Vec::new(),
            next_rotate: None,
            compressor,
            scratch: Vec::with_capacity(4096),
            counters: Arc::default(),
            health: Health {
                policy,
                name,
                failing: None,
                written: 0,
                bytes: 0,
                dropped: 0,
            },
        })
    }

    /// Opens `DIR/<path>.log` for this run, appending. `strict`: an error is returned even
    /// when dropping (at start, so a bad directory fails before capture begins).
    fn create(&mut self, schema: &'static Schema, strict: bool) -> Result<LogFile, OutputError> {
        let path = self.dir.join(format!("{}.log", schema.path));
        let file = match open_append(&path) {
            Ok(f) => Some(f),
            Err(source) => {
                let err = OutputError::Create {
                    path: path.clone(),
                    source,
                };
                if strict {
                    return Err(err);
                }
                self.health.failed(err)?;
                None
            }
        };
        let on_disk = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        Ok(LogFile {
            schema,
            path,
            file,
            buf: Vec::with_capacity(BUF + 4096),
            ends: Vec::with_capacity(1024),
            open_ts: None,
            on_disk,
            needs_header: true,
            torn: false,
        })
    }

    /// Writes the header of a file that has none yet, dated `now`.
    fn start(&mut self, log: usize, now: u64) {
        let Some(Some(f)) = self.logs.get_mut(log) else {
            return;
        };
        if f.open_ts.is_some() {
            return;
        }
        f.open_ts = Some(now);
        self.header(log);
    }

    /// Queues the header if the file needs one.
    fn header(&mut self, log: usize) {
        let Some(Some(f)) = self.logs.get_mut(log) else {
            return;
        };
        if !f.needs_header {
            return;
        }
        f.needs_header = false;
        self.scratch.clear();
        self.enc
            .header(f.schema, f.open_ts.unwrap_or(0), &mut self.scratch);
        if !self.scratch.is_empty() {
            f.push(&self.scratch, false);
        }
    }

    /// Ends a file: footer, flush, close. Returns its path and open time.
    fn end(&mut self, log: usize, close: u64) -> Result<Option<(PathBuf, u64)>, OutputError> {
        if self.logs.get(log).is_none_or(Option::is_none) {
            return Ok(None);
        }
        self.start(log, close);
        let Some(mut f) = self.logs[log].take() else {
            return Ok(None);
        };
        self.scratch.clear();
        self.enc.footer(close, &mut self.scratch);
        if !self.scratch.is_empty() {
            f.push(&self.scratch, false);
        }
        flush(&mut f, &mut self.health)?;
        let open = f.open_ts.unwrap_or(close);
        Ok(Some((f.path, open)))
    }

    /// Moves a closed file into the archive and queues it for compression.
    fn archive(&mut self, path: &Path, open: u64, close: u64) -> Result<(), OutputError> {
        let dest = archive_path(&self.dir, path, open, close);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|source| OutputError::CreateDir {
                path: parent.to_owned(),
                source,
            })?;
        }
        std::fs::rename(path, &dest).map_err(|source| OutputError::Rename {
            from: path.to_owned(),
            to: dest.clone(),
            source,
        })?;
        if let Some(c) = &self.compressor {
            c.submit(dest);
        }
        Ok(())
    }

    /// Rotates one log: closes it at `close`, archives it, and (unless `last`) opens a fresh
    /// file dated `open`.
    fn rotate(&mut self, log: usize, close: u64, open: u64, last: bool) -> Result<(), OutputError> {
        let Some(schema) = self
            .logs
            .get(log)
            .and_then(|f| f.as_ref())
            .map(|f| f.schema)
        else {
            return Ok(());
        };
        // Each rotation is a chance to write again.
        self.health.retry_now();
        let mut open = open;
        if let Some((path, opened)) = self.end(log, close)? {
            if let Err(e) = self.archive(&path, opened, close) {
                // The file stays where it is and this run goes on appending to it; the next
                // rotation archives it under its first open time.
                self.health.failed(e)?;
                open = opened;
            }
        }
        if !last {
            let mut f = self.create(schema, false)?;
            f.needs_header = f.on_disk == 0;
            self.logs[log] = Some(f);
            self.start(log, open);
        }
        Ok(())
    }

    /// When files that were never started open: at the first packet offline, so the first
    /// file's name does not depend on when the writer first looked at the clock.
    fn first_open(&self) -> u64 {
        self.clock
            .start_ns()
            .unwrap_or_else(|| self.clock.now_or_wall())
    }

    fn publish(&self) {
        let h = &self.health;
        self.counters.written.store(h.written, Ordering::Relaxed);
        self.counters.bytes.store(h.bytes, Ordering::Relaxed);
        self.counters.dropped.store(h.dropped, Ordering::Relaxed);
    }

    /// What an earlier run left in `path`: its torn last line ended, and with rotation the
    /// file archived, as zeekctl does with a crashed node's logs.
    fn take_over(&mut self, path: &Path) -> Result<(), OutputError> {
        let recover = |source| OutputError::Recover {
            path: path.to_owned(),
            source,
        };
        let len = leftover::end_torn_line(path).map_err(recover)?;
        if len == 0 {
            return Ok(());
        }
        let other_format = leftover::format_of(path)
            .map_err(recover)?
            .is_some_and(|f| f != self.enc.format);
        if !self.rotation.is_on() && !other_format {
            return Ok(());
        }
        let (open, close) = leftover::span(path).map_err(recover)?;
        self.archive(path, open, close)
    }
}

impl Sink for DirSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn encoding(&self) -> Encoding {
        self.enc
    }

    fn add_log(&mut self, log: usize, schema: &'static Schema) -> Result<(), OutputError> {
        self.take_over(&self.dir.join(format!("{}.log", schema.path)))?;
        let f = self.create(schema, true)?;
        if self.logs.len() <= log {
            self.logs.resize_with(log + 1, || None);
        }
        self.logs[log] = Some(f);
        Ok(())
    }

    fn write(&mut self, log: usize, line: &[u8]) -> Result<(), OutputError> {
        let Some(Some(f)) = self.logs.get(log) else {
            return Ok(());
        };
        if self.health.failing.is_some() && !self.health.may_write() {
            self.health.dropped += 1;
            return Ok(());
        }
        if f.open_ts.is_none() {
            let open = self.first_open();
            self.start(log, open);
        } else if f.needs_header {
            self.header(log);
        }
        let Some(Some(f)) = self.logs.get_mut(log) else {
            return Ok(());
        };
        f.push(line, true);
        // While failing, each record let through is an attempt: written now, to know.
        if f.buf.len() >= BUF || self.health.failing.is_some() {
            flush(f, &mut self.health)?;
        }
        if let Some(limit) = self.rotation.size {
            if f.size() >= limit {
                let now = self.clock.now_or_wall();
                self.rotate(log, now, now, false)?;
            }
        }
        Ok(())
    }

    fn poll(&mut self, now: Option<u64>) -> Result<(), OutputError> {
        let Some(now) = now else {
            return Ok(());
        };
        let open = self.first_open();
        for log in 0..self.logs.len() {
            self.start(log, open);
        }
        if let Some(interval) = self.rotation.interval_ns() {
            let due = *self
                .next_rotate
                .get_or_insert_with(|| next_boundary(open, interval));
            if now >= due {
                // After a gap in the capture several boundaries may have passed: the old
                // file closes at the first one and the new file opens at the last one, so
                // every file name is a boundary and no empty file stands for the gap.
                let open = floor_boundary(now, interval).max(due);
                for log in 0..self.logs.len() {
                    self.rotate(log, due, open, false)?;
                }
                self.next_rotate = Some(next_boundary(now, interval));
            }
        }
        self.publish();
        Ok(())
    }

    fn idle(&mut self) -> Result<(), OutputError> {
        for f in self.logs.iter_mut().flatten() {
            flush(f, &mut self.health)?;
        }
        self.publish();
        Ok(())
    }

    fn reopen(&mut self) -> Result<(), OutputError> {
        let now = self.clock.now_or_wall();
        for log in 0..self.logs.len() {
            let Some(schema) = self.logs[log].as_ref().map(|f| f.schema) else {
                continue;
            };
            self.end(log, now)?;
            let mut f = self.create(schema, false)?;
            // Reopened onto a file that already has content (logrotate's `nocreate`, or
            // copytruncate aside): its header is already there.
            f.needs_header = f.on_disk == 0;
            self.logs[log] = Some(f);
            self.start(log, now);
        }
        Ok(())
    }

    fn finish(&mut self, _deadline: Instant) -> Result<(), OutputError> {
        let now = self.clock.now_or_wall();
        let archive = self.rotation.is_on();
        // One last attempt for what is still buffered.
        self.health.retry_now();
        for log in 0..self.logs.len() {
            if archive {
                self.rotate(log, now, now, true)?;
            } else {
                self.end(log, now)?;
            }
        }
        self.publish();
        if let Some(c) = self.compressor.take() {
            c.finish()?;
        }
        Ok(())
    }

    fn counters(&self) -> &Arc<SinkCounters> {
        &self.counters
    }
}

/// Where a file of `DIR/<path>.log` open from `open` to `close` is archived:
/// `DIR/YYYY-MM-DD/<path>.HH:MM:SS-HH:MM:SS.log` (the open date; zeekctl's layout), with
/// `-1`, `-2`, ... before `.log` when that name is taken (two size rotations in one second).
pub(crate) fn archive_path(dir: &Path, live: &Path, open: u64, close: u64) -> PathBuf {
    let stem = live
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (o, c) = (Civil::from_ns(open), Civil::from_ns(close));
    let day = dir.join(format!("{:04}-{:02}-{:02}", o.year, o.month, o.day));
    let base = format!(
        "{stem}.{:02}:{:02}:{:02}-{:02}:{:02}:{:02}",
        o.hour, o.minute, o.second, c.hour, c.minute, c.second
    );
    let taken = |p: &Path| p.exists() || p.with_extension("log.gz").exists();
    let mut candidate = day.join(format!("{base}.log"));
    let mut n = 1;
    while taken(&candidate) {
        candidate = day.join(format!("{base}-{n}.log"));
        n += 1;
    }
    candidate
}

/// Gzips archived files on a thread of its own.
struct Compressor {
    tx: Option<SyncSender<PathBuf>>,
    thread: Option<JoinHandle<Result<(), OutputError>>>,
}

impl Compressor {
    /// Under [`OnWriteError::Drop`] a file that cannot be compressed (the disk is full) is
    /// kept uncompressed with a warning; under `Fail` the first such error ends the run.
    fn start(policy: OnWriteError) -> Result<Compressor, OutputError> {
        // Rotations are rare (one per interval per log); a backlog this deep means the disk
        // cannot keep up, and waiting for it is then the right thing.
        let (tx, rx) = sync_channel::<PathBuf>(256);
        let thread = std::thread::Builder::new()
            .name("nameflow-gzip".into())
            .spawn(move || {
                let mut first_err = Ok(());
                for path in rx {
                    if let Err(e) = gzip_file(&path) {
                        if policy == OnWriteError::Drop {
                            eprintln!("nameflow: warning: {e}");
                        } else if first_err.is_ok() {
                            first_err = Err(e);
                        }
                    }
                }
                first_err
            })
            .map_err(|source| OutputError::Spawn {
                what: "gzip",
                source,
            })?;
        Ok(Compressor {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn submit(&self, path: PathBuf) {
        if let Some(tx) = &self.tx {
            // The thread only ends when `tx` is dropped, so sending cannot fail.
            let _ = tx.send(path);
        }
    }

    /// Waits until every queued file is compressed.
    fn finish(mut self) -> Result<(), OutputError> {
        self.tx = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(OutputError::ThreadPanic("gzip")),
            None => Ok(()),
        }
    }
}

impl Drop for Compressor {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `X.log` → `X.log.gz` (written beside it under a temporary name, then renamed), then
/// removes `X.log`. A failure leaves the uncompressed file in place (and removes the partial
/// `.gz.tmp`, which would only hold space on a disk that is likely full).
fn gzip_file(path: &Path) -> Result<(), OutputError> {
    let tmp = path.with_extension("log.gz.tmp");
    let r = gzip_into(path, &tmp);
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

fn gzip_into(path: &Path, tmp: &Path) -> Result<(), OutputError> {
    let gz = path.with_extension("log.gz");
    let io = |source| OutputError::Compress {
        path: path.to_owned(),
        source,
    };
    let mut input = File::open(path).map_err(io)?;
    let out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(LOG_FILE_MODE)
        .open(tmp)
        .map_err(io)?;
    let mut enc =
        flate2::write::GzEncoder::new(BufWriter::new(out), flate2::Compression::default());
    std::io::copy(&mut input, &mut enc).map_err(io)?;
    enc.finish().and_then(|mut w| w.flush()).map_err(io)?;
    std::fs::rename(tmp, &gz).map_err(io)?;
    std::fs::remove_file(path).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::record::CONN;
    use crate::output::{Format, JsonTs};

    fn sink(dir: &Path, format: Format, policy: OnWriteError, rotation: Rotation) -> DirSink {
        let enc = Encoding {
            format,
            json_ts: JsonTs::Epoch,
            path_key: false,
        };
        let clock = Clock::Wall;
        let mut s = DirSink::open(dir, enc, clock, rotation, policy).unwrap();
        s.add_log(0, &CONN).unwrap();
        s
    }

    #[test]
    fn a_second_run_appends_and_ends_a_torn_line_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("conn.log");
        std::fs::write(&p, b"{\"ts\":1}\n{\"ts\":2,\"u").unwrap();
        let mut s = sink(
            dir.path(),
            Format::Json,
            OnWriteError::Fail,
            Rotation::default(),
        );
        s.write(0, b"{\"ts\":3}\n").unwrap();
        s.finish(Instant::now()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "{\"ts\":1}\n{\"ts\":2,\"u\n{\"ts\":3}\n"
        );
        assert_eq!(s.counters().written.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn with_rotation_an_earlier_file_is_archived_under_its_own_times() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("conn.log");
        std::fs::write(
            &p,
            "#open\t2011-03-18-19-06-07\n#fields\tts\tuid\n1300475168.5\tC1\n1300478399.9\tC2\n",
        )
        .unwrap();
        let rotation = Rotation {
            interval: Some(Duration::from_secs(3600)),
            ..Rotation::default()
        };
        let mut s = sink(dir.path(), Format::Tsv, OnWriteError::Fail, rotation);
        let old = dir.path().join("2011-03-18/conn.19:06:07-19:59:59.log");
        assert!(old.exists(), "archived at start");
        assert!(std::fs::read_to_string(&old).unwrap().contains("C2"));
        // The live file is this run's alone.
        assert!(!std::fs::read_to_string(&p).unwrap().contains("C1"));
        s.finish(Instant::now()).unwrap();
    }

    /// `DIR/conn.log` pointing at /dev/full: every write fails with ENOSPC.
    fn full_disk_sink(policy: OnWriteError) -> Option<(tempfile::TempDir, DirSink)> {
        if !Path::new("/dev/full").exists() {
            eprintln!("skipped: no /dev/full");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/full", dir.path().join("conn.log")).unwrap();
        let s = sink(dir.path(), Format::Json, policy, Rotation::default());
        Some((dir, s))
    }

    #[test]
    fn a_full_disk_drops_and_counts_whole_records_when_dropping() {
        let Some((_dir, mut s)) = full_disk_sink(OnWriteError::Drop) else {
            return;
        };
        for _ in 0..10 {
            s.write(0, b"{\"ts\":1}\n").unwrap();
        }
        s.idle().unwrap();
        s.finish(Instant::now()).unwrap();
        let c = s.counters();
        assert_eq!(c.dropped.load(Ordering::Relaxed), 10);
        assert_eq!(c.written.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_full_disk_is_an_error_when_failing() {
        let Some((_dir, mut s)) = full_disk_sink(OnWriteError::Fail) else {
            return;
        };
        s.write(0, b"{\"ts\":1}\n").unwrap();
        let e = s.idle().unwrap_err().to_string();
        assert!(e.contains("conn.log") && e.contains("free space"), "{e}");
    }

    #[test]
    fn archive_names_follow_zeekctl() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("conn.log");
        // 2011-03-18 19:06:07 to 20:00:00 UTC.
        let open = 1_300_475_167 * 1_000_000_000;
        let close = 1_300_478_400 * 1_000_000_000;
        let p = archive_path(dir.path(), &live, open, close);
        assert_eq!(p, dir.path().join("2011-03-18/conn.19:06:07-20:00:00.log"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p.with_extension("log.gz"), b"").unwrap();
        let q = archive_path(dir.path(), &live, open, close);
        assert_eq!(
            q,
            dir.path().join("2011-03-18/conn.19:06:07-20:00:00-1.log")
        );
    }

    #[test]
    fn gzip_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("conn.00:00:00-01:00:00.log");
        std::fs::write(&p, b"hello\n").unwrap();
        gzip_file(&p).unwrap();
        assert!(!p.exists());
        let gz = File::open(p.with_extension("log.gz")).unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz), &mut s).unwrap();
        assert_eq!(s, "hello\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(p.with_extension("log.gz"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o007, 0, "archives are not world-readable: {mode:o}");
    }
}

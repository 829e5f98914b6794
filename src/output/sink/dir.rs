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
//! SIGHUP makes the sink reopen its files (for logrotate): the current file gets its footer
//! and is closed, and `<path>.log` is opened again, appending, with a header when it is new.

use super::{Sink, SinkCounters};
use crate::output::clock::{floor_boundary, next_boundary, Clock};
use crate::output::schema::Schema;
use crate::output::writer::{OutputError, Rotation};
use crate::output::zeek::Civil;
use crate::output::Encoding;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// Permissions of every log file and archive this sink creates: owner read/write, group read.
pub const LOG_FILE_MODE: u32 = 0o640;

/// One open log file.
struct LogFile {
    schema: &'static Schema,
    /// `DIR/<path>.log`.
    path: PathBuf,
    out: BufWriter<File>,
    /// When the file was opened (clock time); `None` until the clock first has a time, and
    /// the header is written then.
    open_ts: Option<u64>,
    /// Bytes in the file, for size rotation.
    size: u64,
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
    written: u64,
    bytes: u64,
}

impl DirSink {
    /// Creates the directory (an unwritable output fails here, before any packet is read).
    pub(crate) fn open(
        dir: &Path,
        enc: Encoding,
        clock: Clock,
        rotation: Rotation,
    ) -> Result<DirSink, OutputError> {
        std::fs::create_dir_all(dir).map_err(|source| OutputError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let compressor = if rotation.compress && rotation.is_on() {
            Some(Compressor::start()?)
        } else {
            None
        };
        Ok(DirSink {
            name: dir.display().to_string(),
            dir: dir.to_owned(),
            enc,
            clock,
            rotation,
            logs: Vec::new(),
            next_rotate: None,
            compressor,
            scratch: Vec::with_capacity(4096),
            counters: Arc::default(),
            written: 0,
            bytes: 0,
        })
    }

    fn create(&self, schema: &'static Schema, append: bool) -> Result<LogFile, OutputError> {
        let path = self.dir.join(format!("{}.log", schema.path));
        let mut opts = OpenOptions::new();
        // Logs name hosts and workloads: readable by the service's group, never by everyone
        // (the mode applies when the file is created; the umask can only narrow it).
        opts.mode(LOG_FILE_MODE);
        if append {
            opts.append(true).create(true);
        } else {
            opts.write(true).create(true).truncate(true);
        }
        let f = opts.open(&path).map_err(|source| OutputError::Create {
            path: path.clone(),
            source,
        })?;
        let size = if append {
            f.metadata().map(|m| m.len()).unwrap_or(0)
        } else {
            0
        };
        Ok(LogFile {
            schema,
            path,
            out: BufWriter::with_capacity(1 << 16, f),
            open_ts: None,
            size,
        })
    }

    /// Writes the header of a file that has none yet, dated `now`.
    fn start(&mut self, log: usize, now: u64) -> Result<(), OutputError> {
        let Some(Some(f)) = self.logs.get_mut(log) else {
            return Ok(());
        };
        if f.open_ts.is_some() {
            return Ok(());
        }
        f.open_ts = Some(now);
        if f.size > 0 {
            // Reopened after SIGHUP onto a file that already has content (copytruncate
            // aside, logrotate's `nocreate`): its header is already there.
            return Ok(());
        }
        self.scratch.clear();
        self.enc.header(f.schema, now, &mut self.scratch);
        write_file(f, &self.scratch)
    }

    /// Ends a file: footer, flush, close. Returns its path and open time.
    fn end(&mut self, log: usize, close: u64) -> Result<Option<(PathBuf, u64)>, OutputError> {
        if self.logs.get(log).is_none_or(Option::is_none) {
            return Ok(None);
        }
        self.start(log, close)?;
        let Some(mut f) = self.logs[log].take() else {
            return Ok(None);
        };
        self.scratch.clear();
        self.enc.footer(close, &mut self.scratch);
        write_file(&mut f, &self.scratch)?;
        f.out.flush().map_err(|source| OutputError::Write {
            path: f.path.clone(),
            source,
        })?;
        let open = f.open_ts.unwrap_or(close);
        let path = f.path.clone();
        drop(f);
        Ok(Some((path, open)))
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
        if let Some((path, opened)) = self.end(log, close)? {
            self.archive(&path, opened, close)?;
        }
        if !last {
            self.logs[log] = Some(self.create(schema, false)?);
            self.start(log, open)?;
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
        self.counters.written.store(self.written, Ordering::Relaxed);
        self.counters.bytes.store(self.bytes, Ordering::Relaxed);
    }
}

fn write_file(f: &mut LogFile, bytes: &[u8]) -> Result<(), OutputError> {
    f.out
        .write_all(bytes)
        .map_err(|source| OutputError::Write {
            path: f.path.clone(),
            source,
        })?;
    f.size += bytes.len() as u64;
    Ok(())
}

impl Sink for DirSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn encoding(&self) -> Encoding {
        self.enc
    }

    fn add_log(&mut self, log: usize, schema: &'static Schema) -> Result<(), OutputError> {
        let f = self.create(schema, false)?;
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
        if f.open_ts.is_none() {
            let open = self.first_open();
            self.start(log, open)?;
        }
        let Some(Some(f)) = self.logs.get_mut(log) else {
            return Ok(());
        };
        write_file(f, line)?;
        self.written += 1;
        self.bytes += line.len() as u64;
        if let Some(limit) = self.rotation.size {
            if f.size >= limit {
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
            self.start(log, open)?;
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
            f.out.flush().map_err(|source| OutputError::Write {
                path: f.path.clone(),
                source,
            })?;
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
            self.logs[log] = Some(self.create(schema, true)?);
            self.start(log, now)?;
        }
        Ok(())
    }

    fn finish(&mut self, _deadline: Instant) -> Result<(), OutputError> {
        let now = self.clock.now_or_wall();
        let archive = self.rotation.is_on();
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
    fn start() -> Result<Compressor, OutputError> {
        // Rotations are rare (one per interval per log); a backlog this deep means the disk
        // cannot keep up, and waiting for it is then the right thing.
        let (tx, rx) = sync_channel::<PathBuf>(256);
        let thread = std::thread::Builder::new()
            .name("nameflow-gzip".into())
            .spawn(move || {
                let mut first_err = Ok(());
                for path in rx {
                    if let Err(e) = gzip_file(&path) {
                        if first_err.is_ok() {
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
/// removes `X.log`. A failure leaves the uncompressed file in place.
fn gzip_file(path: &Path) -> Result<(), OutputError> {
    let gz = path.with_extension("log.gz");
    let tmp = path.with_extension("log.gz.tmp");
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
        .open(&tmp)
        .map_err(io)?;
    let mut enc =
        flate2::write::GzEncoder::new(BufWriter::new(out), flate2::Compression::default());
    std::io::copy(&mut input, &mut enc).map_err(io)?;
    enc.finish().and_then(|mut w| w.flush()).map_err(io)?;
    std::fs::rename(&tmp, &gz).map_err(io)?;
    std::fs::remove_file(path).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

//! Loading, watching and swapping inventories.
//!
//! A [`Loader`] owns the configured sources. A file is a series of snapshots of itself: each
//! new version is applied to its history as taken at the file's modification time (a
//! kubectl or describe-instances file), or replaces the previous version (a JSON-lines
//! table). A directory is one series: its files are applied in modification-time order, and
//! files whose names start with `.` are ignored (write to one, then rename it into place).
//! A changed file is read only once it has stayed the same for one poll, so a file that is
//! still being written is not reported as broken.
//!
//! [`Context::start`] loads every source (any error is fatal then: there is no last good
//! inventory to keep), and starts a thread that polls the files' modification times, applies
//! what changed, builds a new [`Inventory`] and swaps it in. A file that cannot be used keeps
//! that source's last good state; the error (file, line and column, or field) goes to the
//! event callback (stderr) and to [`ContextStats`] (stats.log).
//!
//! Watch streams (a FIFO among the paths, `--context-command`) are read by feed threads
//! ([`super::command`]), which send their bytes to the reload thread; [`Loader::pump`] applies
//! them ([`super::watch`]) between polls, and the thread rebuilds at most every
//! `REBUILD_GAP`. A stream's problems are never fatal: a bad document is reported and
//! skipped, a failing command is reported once and retried, each failure counted.
//!
//! Workers hold a [`ContextReader`]: once per batch it compares one atomic generation number
//! with the one it saw, and only when it changed loads the new inventory (`arc-swap`, no
//! lock). Old inventories are freed by the reload thread, never on a worker.

use super::command::{Feed, FeedMsg, FeedSender, Origin};
use super::history::{Snapshot, Timeline};
use super::inventory::BuildStats;
use super::watch::{self, Applied, At, Piece, Splitter, WatchState};
use super::{aws, kube, table, ConnContext, ContextConfig, ContextError, Inventory, Window};
use arc_swap::{ArcSwap, ArcSwapOption};
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What one file holds once parsed.
#[derive(Debug)]
pub enum Parsed {
    /// A kubectl or describe-instances snapshot.
    Snapshot(Snapshot),
    /// A JSON-lines table.
    Table(Vec<Window>),
    /// A file of Kubernetes watch events: its windows, and the documents that could not be
    /// used (each skipped; they do not make the file unusable).
    Watch {
        windows: Vec<Window>,
        errors: Vec<ContextError>,
    },
}

/// The top level of a JSON inventory document: a kubectl `List`, one kubectl object, a
/// describe-instances answer, or a one-line table.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Document {
    kind: Option<String>,
    items: Option<Vec<kube::Object>>,
    #[serde(rename = "Reservations")]
    reservations: Option<Vec<aws::Reservation>>,
    ip: Option<IgnoredAny>,
}

fn is_table_name(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("jsonl" | "ndjson" | "jsonlines")
    )
}

fn syntax(path: &Path, e: &serde_json::Error, what: &str) -> ContextError {
    ContextError::Syntax {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
        message: format!("{e}{what}"),
    }
}

/// Parses one inventory file's text; the format is told by the name (`*.jsonl`, `*.ndjson`:
/// a table) or by the content. `taken_ns` is when the snapshot was taken (the file's
/// modification time); `wanted` are the attributes the extra columns read.
pub fn parse_file(
    path: &Path,
    text: &str,
    taken_ns: u64,
    wanted: &[String],
) -> Result<Parsed, ContextError> {
    if is_table_name(path) {
        return table::parse(path, text, wanted).map(Parsed::Table);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let doc: Document = match serde_path_to_error::deserialize(&mut de) {
        Ok(d) => d,
        Err(e) => {
            let inner = e.inner();
            return Err(match inner.classify() {
                serde_json::error::Category::Data => ContextError::Field {
                    path: path.to_owned(),
                    field: e.path().to_string(),
                    message: format!(
                        "{inner}; is this unmodified `kubectl -o json` or AWS CLI output?"
                    ),
                },
                _ => syntax(path, inner, ""),
            });
        }
    };
    if let Err(e) = de.end() {
        // Several documents one after the other: kubectl watch events, or JSON lines under
        // another name.
        if watch::is_watch(text.as_bytes()) {
            return Ok(parse_watch(path, text, wanted));
        }
        return match table::parse(path, text, wanted) {
            Ok(t) => Ok(Parsed::Table(t)),
            Err(_) => Err(syntax(
                path,
                &e,
                "; a kubectl or AWS CLI file holds one JSON document, a table one object per \
                 line",
            )),
        };
    }
    let mut snap = Snapshot::at(taken_ns);
    let field = |(field, message): kube::FieldError| ContextError::Field {
        path: path.to_owned(),
        field,
        message,
    };
    if let Some(res) = &doc.reservations {
        aws::observe(res, wanted, &mut snap).map_err(field)?;
        return Ok(Parsed::Snapshot(snap));
    }
    if let Some(items) = &doc.items {
        kube::observe(items, "items", true, wanted, &mut snap).map_err(field)?;
        return Ok(Parsed::Snapshot(snap));
    }
    match doc.kind.as_deref() {
        Some("Pod" | "Service" | "Node") => {
            let obj: kube::Object = serde_json::from_str(text).map_err(|e| syntax(path, &e, ""))?;
            kube::observe(std::slice::from_ref(&obj), "", false, wanted, &mut snap)
                .map_err(field)?;
            Ok(Parsed::Snapshot(snap))
        }
        _ if doc.ip.is_some() => table::parse(path, text, wanted).map(Parsed::Table),
        _ if watch::is_watch(text.as_bytes()) => Ok(parse_watch(path, text, wanted)),
        _ => Err(ContextError::Format {
            path: path.to_owned(),
        }),
    }
}

/// A file of watch events: every document applied in order (see [`watch::read_all`]).
fn parse_watch(path: &Path, text: &str, wanted: &[String]) -> Parsed {
    let (windows, errors) = watch::read_all(text.as_bytes(), wanted, usize::MAX);
    let errors = errors.into_iter().map(|e| doc_error(path, e)).collect();
    Parsed::Watch { windows, errors }
}

/// A watch document's error in a file, named like the file's other errors.
fn doc_error(path: &Path, e: watch::DocError) -> ContextError {
    match e {
        watch::DocError::Syntax {
            line,
            column,
            message,
        } => ContextError::Syntax {
            path: path.to_owned(),
            line,
            column,
            message: format!("{message}; skipped, reading on at the next document"),
        },
        watch::DocError::Field {
            line,
            field,
            message,
        } => ContextError::Field {
            path: path.to_owned(),
            field: format!("line {line}: {field}"),
            message: format!("{message}; skipped, reading on at the next document"),
        },
    }
}

/// A watch document's error in a stream (a command's output, a FIFO).
fn stream_doc_error(origin: &str, e: watch::DocError) -> ContextError {
    let message = match e {
        watch::DocError::Syntax {
            line,
            column,
            message,
        } => format!("line {line}, column {column}: {message}"),
        watch::DocError::Field {
            line,
            field,
            message,
        } => format!("line {line}: {field}: {message}"),
    };
    ContextError::Stream {
        origin: origin.to_owned(),
        message: format!("{message}; skipped, reading on at the next document"),
    }
}

/// One file as a replay read it: its version, its windows (none for a snapshot) and, for a
/// watch file, how many of its document errors have been reported.
type Replayed = (PathBuf, Sig, Option<Vec<Window>>, Option<usize>);

/// What identifies one version of a file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Sig {
    mtime_ns: u64,
    len: u64,
    ino: u64,
}

fn stat(path: &Path) -> Result<Sig, ContextError> {
    let md = std::fs::metadata(path).map_err(|e| ContextError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let mtime_ns = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64);
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&md);
    #[cfg(not(unix))]
    let ino = 0;
    Ok(Sig {
        mtime_ns,
        len: md.len(),
        ino,
    })
}

fn read(path: &Path) -> Result<String, ContextError> {
    std::fs::read_to_string(path).map_err(|e| ContextError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The state of one file of a source.
#[derive(Debug, Default)]
struct FileState {
    /// The version last applied (or last rejected: it is not retried until it changes).
    done: Option<Sig>,
    /// A new version seen at the last poll, waiting to stay unchanged for one more.
    pending: Option<Sig>,
    /// Its windows, when it is a table.
    table: Option<Vec<Window>>,
    /// Applied to the source's timeline (a snapshot).
    snapshot: bool,
    /// A watch-event file: read again as soon as it changes (it grows while kubectl
    /// writes it), its errors reported once each.
    watch: bool,
    /// How many of its document errors were reported (a growing file repeats them).
    warned: usize,
}

/// One configured path: a file or a directory of snapshots.
#[derive(Debug)]
struct Source {
    path: PathBuf,
    dir: bool,
    files: HashMap<PathBuf, FileState>,
    timeline: Timeline,
    /// The last error reported per path, so a lasting problem is reported once.
    reported: HashMap<PathBuf, String>,
}

/// What one poll found.
#[derive(Debug, Default)]
pub struct PollOutcome {
    /// Something was applied: build and swap a new inventory.
    pub changed: bool,
    /// Files applied.
    pub applied: Vec<PathBuf>,
    /// Files that could not be used (their sources keep their last good state).
    pub errors: Vec<ContextError>,
    /// Watch documents that could not be used (each skipped) and streams' failures: never
    /// fatal, even at start.
    pub warnings: Vec<ContextError>,
    /// Failures not reported again (a command that keeps failing is said once), counted.
    pub repeated: u64,
    /// Streams' runs that ended or could not start (each is followed by a restart).
    pub restarts: u64,
    /// What the streams did (started again, listed), for the log.
    pub notes: Vec<String>,
    /// A stream finished a (re-)list: worth saying when the new inventory is in.
    pub listed: bool,
}

impl Source {
    fn new(path: PathBuf) -> Result<Source, ContextError> {
        let md = std::fs::metadata(&path).map_err(|e| ContextError::Read {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(Source {
            path,
            dir: md.is_dir(),
            files: HashMap::new(),
            timeline: Timeline::default(),
            reported: HashMap::new(),
        })
    }

    /// The files that currently make up this source.
    fn list(&self) -> Result<Vec<PathBuf>, ContextError> {
        if !self.dir {
            return Ok(vec![self.path.clone()]);
        }
        let rd = std::fs::read_dir(&self.path).map_err(|e| ContextError::Read {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        let mut out = Vec::new();
        for entry in rd.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let p = entry.path();
            if p.is_file() {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Applies new versions of this source's files. `settle`: a changed file must look the
    /// same at two polls in a row before it is read.
    fn poll(&mut self, wanted: &[String], settle: bool, max: usize, out: &mut PollOutcome) {
        self.poll_files(wanted, settle, out);
        if self.timeline.trim(max) > 0 {
            out.changed = true;
        }
    }

    /// Reports `e` unless the same error was the last one reported for its path (a missing
    /// file is said once, not at every poll).
    fn report(&mut self, e: ContextError, out: &mut PollOutcome) {
        let text = e.to_string();
        if self.reported.get(e.path()) != Some(&text) {
            self.reported.insert(e.path().to_owned(), text);
            out.errors.push(e);
        }
    }

    fn poll_files(&mut self, wanted: &[String], settle: bool, out: &mut PollOutcome) {
        let listed = match self.list() {
            Ok(l) => {
                if self.dir {
                    self.reported.remove(&self.path);
                }
                l
            }
            Err(e) => {
                self.report(e, out);
                return;
            }
        };
        // A removed table takes its rows with it; a removed snapshot leaves its history.
        let before = self.files.len();
        self.files.retain(|p, f| listed.contains(p) || f.snapshot);
        if self.files.len() != before {
            out.changed = true;
        }
        let mut ready: Vec<(PathBuf, Sig)> = Vec::new();
        for p in listed {
            let sig = match stat(&p) {
                Ok(s) => s,
                Err(e) => {
                    self.report(e, out);
                    continue;
                }
            };
            if !self.dir {
                self.reported.remove(&p);
            }
            let f = self.files.entry(p.clone()).or_default();
            if f.done == Some(sig) {
                f.pending = None;
                continue;
            }
            if settle && !f.watch && f.pending != Some(sig) {
                f.pending = Some(sig);
                continue;
            }
            f.pending = None;
            ready.push((p, sig));
        }
        if ready.is_empty() {
            return;
        }
        ready.sort_by_key(|(p, s)| (s.mtime_ns, p.clone()));
        // In a directory, a new version of a snapshot already applied, or one older than
        // the history, means the history must be replayed from the start.
        let replay = self.dir
            && ready.iter().any(|(p, s)| {
                let known = self.files.get(p).is_some_and(|f| f.snapshot);
                known || self.timeline.latest_ns.is_some_and(|l| s.mtime_ns < l)
            });
        if replay {
            let mut all: Vec<(PathBuf, Sig)> = self
                .files
                .iter()
                .filter(|(p, f)| f.snapshot && !ready.iter().any(|(r, _)| r == *p))
                .filter_map(|(p, f)| f.done.map(|s| (p.clone(), s)))
                .collect();
            all.extend(ready.iter().cloned());
            all.sort_by_key(|(p, s)| (s.mtime_ns, p.clone()));
            // Rebuild into a fresh history; on any error the old history stays.
            let mut fresh = Timeline::default();
            let mut states: Vec<Replayed> = Vec::new();
            for (p, sig) in all {
                match load_one(&p, sig, wanted) {
                    Ok(Parsed::Snapshot(s)) => {
                        fresh.apply(s);
                        states.push((p, sig, None, None));
                    }
                    Ok(Parsed::Table(t)) => states.push((p, sig, Some(t), None)),
                    Ok(Parsed::Watch { windows, errors }) => {
                        let warned = self.files.get(&p).map_or(0, |f| f.warned);
                        let n = errors.len().max(warned);
                        out.warnings.extend(errors.into_iter().skip(warned));
                        states.push((p, sig, Some(windows), Some(n)));
                    }
                    Err(e) => {
                        out.errors.push(e);
                        if let Some(f) = self.files.get_mut(&p) {
                            f.done = Some(sig);
                        }
                    }
                }
            }
            self.timeline = fresh;
            for (p, sig, t, watch) in states {
                let f = self.files.entry(p.clone()).or_default();
                f.done = Some(sig);
                f.snapshot = t.is_none();
                f.table = t;
                f.watch = watch.is_some();
                f.warned = watch.unwrap_or(0);
                out.applied.push(p);
            }
            out.changed = true;
            return;
        }
        for (p, sig) in ready {
            let parsed = load_one(&p, sig, wanted);
            let f = self.files.entry(p.clone()).or_default();
            f.done = Some(sig);
            match parsed {
                Ok(Parsed::Snapshot(s)) => {
                    self.timeline.apply(s);
                    f.snapshot = true;
                    f.table = None;
                }
                Ok(Parsed::Table(t)) => f.table = Some(t),
                Ok(Parsed::Watch { windows, errors }) => {
                    f.table = Some(windows);
                    f.watch = true;
                    f.snapshot = false;
                    let n = errors.len();
                    out.warnings.extend(errors.into_iter().skip(f.warned));
                    f.warned = f.warned.max(n);
                }
                Err(e) => {
                    out.errors.push(e);
                    continue;
                }
            }
            out.applied.push(p);
            out.changed = true;
        }
    }

    fn windows(&self, into: &mut Vec<Window>) {
        into.extend(self.timeline.windows());
        for f in self.files.values() {
            if let Some(t) = &f.table {
                into.extend(t.iter().cloned());
            }
        }
    }
}

fn load_one(path: &Path, sig: Sig, wanted: &[String]) -> Result<Parsed, ContextError> {
    let text = read(path)?;
    parse_file(path, &text, sig.mtime_ns, wanted)
}

/// Owns the sources: loads, polls, builds. Runs on the reload thread (or in tests, directly).
#[derive(Debug)]
pub struct Loader {
    cfg: ContextConfig,
    wanted: Vec<String>,
    sources: Vec<Source>,
    streams: Vec<Stream>,
    /// What the streams' feeds send; the loader keeps a sender so the channel never closes.
    tx: FeedSender,
    rx: Receiver<(usize, FeedMsg)>,
    /// Warnings found while opening, reported once the reload thread runs.
    deferred: PollOutcome,
}

/// A stream has been quiet this long after its first document: its re-list is complete.
pub const QUIET: Duration = Duration::from_secs(2);

/// At start, how long the first list of each stream is waited for.
pub const FIRST_LIST_WAIT: Duration = Duration::from_secs(10);

/// Messages handled per [`Loader::pump`] at most, so a busy stream cannot hold off the
/// inventory's rebuild.
const PUMP_BATCH: usize = 1024;

/// One watch stream: a command or a FIFO, its feed thread and what it has said.
#[derive(Debug)]
struct Stream {
    /// How messages name it.
    origin: String,
    source: Origin,
    feed: Option<Feed>,
    split: Splitter,
    state: WatchState,
    /// When its last document was read (for the quiet gap that ends a re-list).
    last_doc: Option<Instant>,
    /// A failure was reported and nothing good was read since: the next is not repeated.
    failing: bool,
    /// Its first list is complete, or its first run ended or failed.
    settled: bool,
    /// Bad documents since the last good one.
    bad_in_row: u32,
}

impl Loader {
    /// Loads every configured path and starts the streams (FIFO paths and commands); any
    /// error in a file is returned (there is nothing to fall back on). Streams' problems are
    /// not fatal: they are reported by the reload thread.
    pub fn open(cfg: &ContextConfig) -> Result<Loader, ContextError> {
        let mut l = Loader::open_held(cfg)?;
        l.start_streams()?;
        Ok(l)
    }

    /// Like [`Loader::open`], but the streams do not start until [`Loader::start_streams`]
    /// (a live capture starts them once it has dropped its privileges).
    pub fn open_held(cfg: &ContextConfig) -> Result<Loader, ContextError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut loader = Loader {
            cfg: cfg.clone(),
            wanted: cfg.attributes(),
            sources: Vec::with_capacity(cfg.paths.len()),
            streams: Vec::new(),
            tx,
            rx,
            deferred: PollOutcome::default(),
        };
        let mut origins = Vec::new();
        for p in &cfg.paths {
            if is_fifo(p) {
                origins.push(Origin::Fifo(p.clone()));
            } else {
                loader.sources.push(Source::new(p.clone())?);
            }
        }
        origins.extend(cfg.commands.iter().cloned().map(Origin::Command));
        let mut out = PollOutcome::default();
        for s in &mut loader.sources {
            s.poll(&loader.wanted, false, cfg.max_records, &mut out);
        }
        if let Some(e) = out.errors.into_iter().next() {
            return Err(e);
        }
        loader.deferred.warnings = out.warnings;
        for o in origins {
            loader.streams.push(Stream {
                origin: o.describe(),
                source: o,
                feed: None,
                split: Splitter::default(),
                state: WatchState::default(),
                last_doc: None,
                failing: false,
                settled: false,
                bad_in_row: 0,
            });
        }
        Ok(loader)
    }

    /// Starts the streams' feeds that are not running yet.
    pub fn start_streams(&mut self) -> Result<(), ContextError> {
        for (i, s) in self.streams.iter_mut().enumerate() {
            if s.feed.is_some() {
                continue;
            }
            let feed = Feed::start(i, s.source.clone(), self.tx.clone()).map_err(|e| {
                ContextError::Stream {
                    origin: s.origin.clone(),
                    message: format!("cannot start a thread to read it: {e}"),
                }
            })?;
            s.feed = Some(feed);
        }
        Ok(())
    }

    /// What opening found that is worth saying but not fatal (documents of watch files
    /// that were skipped), and what the streams did while [`Loader::first_lists`] waited.
    pub fn take_deferred(&mut self) -> PollOutcome {
        std::mem::take(&mut self.deferred)
    }

    /// Waits up to `timeout` for every stream's first list (or its first failure), applying
    /// what they send; what happened is kept for [`Loader::take_deferred`].
    pub fn first_lists(&mut self, timeout: Duration) {
        let until = Instant::now() + timeout;
        let mut out = std::mem::take(&mut self.deferred);
        while self.streams.iter().any(|s| s.feed.is_some() && !s.settled) && Instant::now() < until
        {
            let o = self.pump(until);
            out.absorb(o);
        }
        for st in self
            .streams
            .iter()
            .filter(|s| s.feed.is_some() && !s.settled)
        {
            out.notes.push(format!(
                "{}: no complete list within {} s; going on without it (what it sends is \
                 applied as it comes)",
                st.origin,
                timeout.as_secs()
            ));
        }
        self.deferred = out;
    }

    /// A sender that wakes [`Loader::pump`] (the watcher stops the reload thread with it).
    pub fn waker(&self) -> FeedSender {
        self.tx.clone()
    }

    /// Streams configured (FIFOs and commands).
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// Waits until `until` for what the streams send and applies it; returns early once
    /// something arrived. Also ends re-lists that have gone quiet.
    pub fn pump(&mut self, until: Instant) -> PollOutcome {
        let mut out = PollOutcome::default();
        let due = self
            .streams
            .iter()
            .filter(|s| s.state.relist_docs() > 0)
            .filter_map(|s| s.last_doc.map(|t| t + QUIET))
            .min()
            .map_or(until, |q| q.min(until));
        let wait = due.saturating_duration_since(Instant::now());
        if let Ok((i, m)) = self.rx.recv_timeout(wait) {
            self.handle(i, m, &mut out);
            for _ in 1..PUMP_BATCH {
                match self.rx.try_recv() {
                    Ok((i, m)) => self.handle(i, m, &mut out),
                    Err(_) => break,
                }
            }
        }
        let now = Instant::now();
        for s in &mut self.streams {
            let quiet = s.last_doc.is_some_and(|t| now >= t + QUIET);
            if quiet && s.state.relist_docs() > 0 {
                let closed = s.state.end_relist();
                s.settled = true;
                out.changed = true;
                out.listed = true;
                out.notes.push(listed_note(s, closed, "quiet"));
            }
            if s.state.trim(self.cfg.max_records) > 0 {
                out.changed = true;
            }
        }
        out
    }

    fn handle(&mut self, i: usize, msg: FeedMsg, out: &mut PollOutcome) {
        if let FeedMsg::Release = msg {
            if let Err(e) = self.start_streams() {
                out.warnings.push(e);
            }
            return;
        }
        let Some(s) = self.streams.get_mut(i) else {
            return;
        };
        match msg {
            FeedMsg::Wake | FeedMsg::Release => {}
            FeedMsg::Started { at } => {
                s.split.reset();
                s.state.relist(at);
                s.last_doc = None;
            }
            FeedMsg::Data { at, bytes } => {
                s.split.push(&bytes);
                read_docs(s, At::Read(at), false, &self.wanted, out);
            }
            FeedMsg::Ended {
                at,
                clean,
                status,
                ran,
                retry_in,
            } => {
                read_docs(s, At::Read(at), true, &self.wanted, out);
                out.restarts += 1;
                if clean && s.state.relisting() {
                    let closed = s.state.end_relist();
                    out.changed = true;
                    out.listed = true;
                    out.notes.push(listed_note(s, closed, "end of output"));
                } else {
                    // A list cut short proves nothing about what it did not list yet.
                    s.state.abandon_relist();
                }
                s.settled = true;
                let text = format!(
                    "exited ({status}) after {:.1} s; starting it again in {} s",
                    ran.as_secs_f64(),
                    retry_in.as_secs()
                );
                if clean {
                    out.notes.push(format!("{}: {text}", s.origin));
                } else {
                    stream_failure(s, text, out);
                }
            }
            FeedMsg::Failed {
                message, retry_in, ..
            } => {
                out.restarts += 1;
                s.settled = true;
                s.state.abandon_relist();
                let text = format!("{message}; trying again in {} s", retry_in.as_secs());
                stream_failure(s, text, out);
            }
        }
    }

    /// Applies what changed since the last poll.
    pub fn poll(&mut self) -> PollOutcome {
        self.poll_with(true)
    }

    /// Like [`Loader::poll`]; `settle: false` reads a changed file at once (tests).
    pub fn poll_with(&mut self, settle: bool) -> PollOutcome {
        let mut out = PollOutcome::default();
        for s in &mut self.sources {
            s.poll(&self.wanted, settle, self.cfg.max_records, &mut out);
        }
        out
    }

    /// An inventory of every source's current windows.
    pub fn build(&self) -> Inventory {
        let mut ws = Vec::new();
        for s in &self.sources {
            s.windows(&mut ws);
        }
        for s in &self.streams {
            ws.extend(s.state.windows());
        }
        Inventory::build(ws, self.cfg.max_records)
    }

    /// Files currently applied.
    pub fn files(&self) -> usize {
        self.sources
            .iter()
            .map(|s| s.files.values().filter(|f| f.done.is_some()).count())
            .sum()
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Stop every feed at once, then wait: each command's group is killed first.
        for s in &mut self.streams {
            if let Some(f) = &s.feed {
                f.signal_stop();
            }
        }
        for s in &mut self.streams {
            if let Some(mut f) = s.feed.take() {
                f.stop();
            }
        }
    }
}

impl PollOutcome {
    /// Adds `o` to `self`.
    pub fn absorb(&mut self, o: PollOutcome) {
        self.changed |= o.changed;
        self.listed |= o.listed;
        self.applied.extend(o.applied);
        self.errors.extend(o.errors);
        self.warnings.extend(o.warnings);
        self.repeated += o.repeated;
        self.restarts += o.restarts;
        self.notes.extend(o.notes);
    }
}

fn listed_note(s: &Stream, closed: usize, why: &str) -> String {
    let mut t = format!(
        "{}: listed {} objects (list complete: {why})",
        s.origin,
        s.state.objects()
    );
    if closed > 0 {
        t.push_str(&format!(
            "; {closed} known before and no longer listed closed at the restart"
        ));
    }
    t
}

/// Reports a stream's failure once until it reads a good document again; repeats count.
fn stream_failure(s: &mut Stream, message: String, out: &mut PollOutcome) {
    if s.failing {
        out.repeated += 1;
        return;
    }
    s.failing = true;
    out.warnings.push(ContextError::Stream {
        origin: s.origin.clone(),
        message,
    });
}

/// Applies every whole document the stream's splitter holds.
fn read_docs(s: &mut Stream, at: At, eof: bool, wanted: &[String], out: &mut PollOutcome) {
    while let Some(p) = s.split.next(eof) {
        match p {
            Piece::Doc(line, doc) => {
                s.last_doc = Some(Instant::now());
                let applied = s.state.apply(line, doc, at, wanted);
                if matches!(
                    applied,
                    Ok(Applied::Changed | Applied::Nothing | Applied::Resynced { .. })
                ) {
                    s.failing = false;
                    s.bad_in_row = 0;
                }
                match applied {
                    Ok(Applied::Changed) => out.changed = true,
                    Ok(Applied::Nothing) => {}
                    Ok(Applied::Resynced { closed }) => {
                        s.settled = true;
                        out.changed = true;
                        out.listed = true;
                        let note = listed_note(s, closed, "a watch event");
                        out.notes.push(note);
                    }
                    Ok(Applied::ApiError(msg)) => out.warnings.push(ContextError::Stream {
                        origin: s.origin.clone(),
                        message: format!(
                            "line {line}: the API server ended the watch: {msg}; keeping the \
                             last good state"
                        ),
                    }),
                    Err(e) => {
                        let e = stream_doc_error(&s.origin, e);
                        bad_doc(s, e, out);
                    }
                }
            }
            Piece::Bad(e) => {
                let e = stream_doc_error(&s.origin, e);
                bad_doc(s, e, out);
            }
        }
    }
}

/// Bad documents in a row printed per stream (output that is not watch events at all would
/// repeat one error per document); later ones are counted until a good document comes.
const BAD_DOCS_SAID: u32 = 10;

fn bad_doc(s: &mut Stream, e: ContextError, out: &mut PollOutcome) {
    s.bad_in_row += 1;
    match s.bad_in_row {
        n if n < BAD_DOCS_SAID => out.warnings.push(e),
        BAD_DOCS_SAID => {
            out.warnings.push(e);
            out.notes.push(format!(
                "{}: {BAD_DOCS_SAID} bad documents in a row; further ones are counted \
                 (context_errors), not printed, until a good one",
                s.origin
            ));
        }
        _ => out.repeated += 1,
    }
}

fn is_fifo(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_fifo())
}

/// What the reload thread reports (the CLI prints these on stderr).
#[derive(Debug)]
pub enum ContextEvent {
    /// A new inventory was swapped in.
    Reloaded {
        files: Vec<PathBuf>,
        stats: BuildStats,
        took_ms: u64,
    },
    /// A file could not be used, or a stream's document or run; its source keeps its last
    /// good state.
    Error(ContextError),
    /// What a stream did: a list completed, its command exited and is started again.
    Note(String),
}

/// Rebuilds for a stream's changes come at most this often: a busy cluster changes all the
/// time, and a rebuild of 100,000 windows costs about 30 ms of the reload thread. A record
/// is looked up when it is logged, so a new pod's first connections still find it.
const REBUILD_GAP: Duration = Duration::from_millis(500);

impl Shared {
    /// Counts and reports what a poll or pump found.
    fn report(&self, out: PollOutcome, events: &mut impl FnMut(ContextEvent)) {
        self.restarts.fetch_add(out.restarts, Ordering::Relaxed);
        self.errors.fetch_add(out.repeated, Ordering::Relaxed);
        for n in out.notes {
            events(ContextEvent::Note(n));
        }
        for e in out.errors.into_iter().chain(out.warnings) {
            self.errors.fetch_add(1, Ordering::Relaxed);
            self.last_error.store(Some(Arc::new(e.to_string())));
            events(ContextEvent::Error(e));
        }
    }
}

/// Counters of the context as a whole (for stats.log and the run summary).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContextStats {
    /// Windows in the current inventory.
    pub windows: u64,
    /// Distinct addresses in it.
    pub addresses: u64,
    /// Inventories swapped in after the first.
    pub reloads: u64,
    /// Files that could not be used, watch documents skipped, and streams' failures (a
    /// command that could not start or exited with an error, each time).
    pub errors: u64,
    /// Streams' runs that ended or could not start, each followed by a restart.
    pub restarts: u64,
    /// The latest such error, in full.
    pub last_error: Option<String>,
}

struct Shared {
    current: ArcSwap<Inventory>,
    /// Bumped after each swap: workers compare it once per batch.
    generation: AtomicU64,
    reloads: AtomicU64,
    errors: AtomicU64,
    restarts: AtomicU64,
    last_error: ArcSwapOption<String>,
    stop: AtomicBool,
}

/// The shared context: the current inventory and its counters. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("stats", &self.stats())
            .finish()
    }
}

/// The reload thread; stopped (and joined) by [`Watcher::stop`] or on drop. Its streams'
/// commands are killed when it stops.
pub struct Watcher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Wakes the reload thread where it waits for the streams.
    waker: Option<FeedSender>,
}

impl Watcher {
    pub fn stop(mut self) {
        self.halt();
    }

    /// Starts the streams held by [`Context::start_with`] (from the reload thread, which
    /// then runs with the privileges the process has at that point).
    pub fn release_streams(&self) {
        if let Some(w) = &self.waker {
            let _ = w.send((usize::MAX, FeedMsg::Release));
        }
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(w) = self.waker.take() {
            let _ = w.send((usize::MAX, FeedMsg::Wake));
        }
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.halt();
    }
}

impl Context {
    /// A context that always answers from `inv` (no files, no reload).
    pub fn fixed(inv: Inventory) -> Context {
        Context {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(inv),
                generation: AtomicU64::new(0),
                reloads: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                restarts: AtomicU64::new(0),
                last_error: ArcSwapOption::empty(),
                stop: AtomicBool::new(false),
            }),
        }
    }

    /// Loads every configured path (errors are fatal here), waits for the streams' first
    /// lists, and starts the reload thread, which reports through `events`.
    pub fn start(
        cfg: &ContextConfig,
        events: impl FnMut(ContextEvent) + Send + 'static,
    ) -> Result<(Context, Watcher), ContextError> {
        Context::start_with(cfg, false, events)
    }

    /// Like [`Context::start`]; with `hold_streams`, the streams (commands, FIFOs) start only
    /// at [`Watcher::release_streams`], on the reload thread, and their first lists are not
    /// waited for. A live capture releases them once it has dropped its privileges, so no
    /// command it runs holds any.
    pub fn start_with(
        cfg: &ContextConfig,
        hold_streams: bool,
        mut events: impl FnMut(ContextEvent) + Send + 'static,
    ) -> Result<(Context, Watcher), ContextError> {
        let t0 = Instant::now();
        let mut loader = if hold_streams {
            Loader::open_held(cfg)?
        } else {
            let mut l = Loader::open(cfg)?;
            l.first_lists(FIRST_LIST_WAIT);
            l
        };
        let inv = loader.build();
        let ctx = Context::fixed(inv);
        let early = loader.take_deferred();
        ctx.shared.report(early, &mut events);
        events(ContextEvent::Reloaded {
            files: Vec::new(),
            stats: ctx.current().stats(),
            took_ms: t0.elapsed().as_millis() as u64,
        });
        let shared = Arc::clone(&ctx.shared);
        let waker = loader.waker();
        let poll = cfg.poll;
        let thread = std::thread::Builder::new()
            .name("nameflow-context".into())
            .spawn(move || {
                // Inventories swapped out, freed here once no worker holds them any more.
                let mut retired: Vec<Arc<Inventory>> = Vec::new();
                let mut next_poll = Instant::now() + poll;
                // Changes not yet built into an inventory, and what to say when they are.
                let mut dirty = false;
                let mut say = false;
                let mut files: Vec<PathBuf> = Vec::new();
                let mut last_build = Instant::now();
                while !shared.stop.load(Ordering::Acquire) {
                    let now = Instant::now();
                    if now >= next_poll {
                        next_poll = now + poll;
                        retired.retain(|a| Arc::strong_count(a) > 1);
                        let mut out = loader.poll();
                        if out.changed {
                            dirty = true;
                            say = true;
                        }
                        files.append(&mut out.applied);
                        shared.report(out, &mut events);
                    }
                    let build_at = last_build + REBUILD_GAP;
                    if dirty && Instant::now() >= build_at {
                        let t0 = Instant::now();
                        let inv = loader.build();
                        let stats = inv.stats();
                        retired.push(shared.current.swap(Arc::new(inv)));
                        shared.generation.fetch_add(1, Ordering::Release);
                        shared.reloads.fetch_add(1, Ordering::Relaxed);
                        last_build = Instant::now();
                        dirty = false;
                        if say {
                            events(ContextEvent::Reloaded {
                                files: std::mem::take(&mut files),
                                stats,
                                took_ms: t0.elapsed().as_millis() as u64,
                            });
                        }
                        say = false;
                        continue;
                    }
                    let until = if dirty {
                        next_poll.min(build_at)
                    } else {
                        next_poll
                    };
                    let mut out = loader.pump(until);
                    if out.changed {
                        dirty = true;
                    }
                    // A stream's incremental changes go in quietly; a completed list is said.
                    if out.listed {
                        say = true;
                    }
                    files.append(&mut out.applied);
                    shared.report(out, &mut events);
                }
            })
            .map_err(|e| ContextError::Read {
                path: PathBuf::from("(reload thread)"),
                message: format!("cannot start the reload thread: {e}"),
            })?;
        Ok((
            ctx.clone(),
            Watcher {
                shared: Arc::clone(&ctx.shared),
                thread: Some(thread),
                waker: Some(waker),
            },
        ))
    }

    /// Swaps in a new inventory (the reload thread does this; also for tests).
    pub fn store(&self, inv: Inventory) {
        self.shared.current.store(Arc::new(inv));
        self.shared.generation.fetch_add(1, Ordering::Release);
        self.shared.reloads.fetch_add(1, Ordering::Relaxed);
    }

    /// A reader for one worker.
    pub fn reader(&self) -> ContextReader {
        ContextReader {
            shared: Arc::clone(&self.shared),
            seen: self.shared.generation.load(Ordering::Acquire),
            current: self.shared.current.load_full(),
            counters: ReaderCounters::default(),
        }
    }

    /// The current inventory (tests, benches).
    pub fn current(&self) -> Arc<Inventory> {
        self.shared.current.load_full()
    }

    pub fn stats(&self) -> ContextStats {
        let inv = self.shared.current.load();
        let b = inv.stats();
        ContextStats {
            windows: b.windows,
            addresses: b.addresses,
            reloads: self.shared.reloads.load(Ordering::Relaxed),
            errors: self.shared.errors.load(Ordering::Relaxed),
            restarts: self.shared.restarts.load(Ordering::Relaxed),
            last_error: self.shared.last_error.load_full().map(|s| (*s).clone()),
        }
    }
}

/// One worker's lookup counters (plain: only that worker writes them).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct ReaderCounters {
    /// Addresses looked up (two per record).
    pub lookups: u64,
    /// Lookups that found a window.
    pub matched: u64,
    /// New inventories picked up.
    pub swaps: u64,
}

/// A worker's view of the context: the inventory it uses until its next [`refresh`].
///
/// [`refresh`]: ContextReader::refresh
pub struct ContextReader {
    shared: Arc<Shared>,
    seen: u64,
    current: Arc<Inventory>,
    counters: ReaderCounters,
}

impl ContextReader {
    /// Picks up a new inventory if one was swapped in: one atomic load when nothing changed.
    /// Call once per batch.
    #[inline]
    pub fn refresh(&mut self) {
        let g = self.shared.generation.load(Ordering::Acquire);
        if g != self.seen {
            self.seen = g;
            // The previous inventory's last reference may be dropped here only if the reload
            // thread has already let go of it, which it does not do while it is current or
            // retired; so freeing happens there.
            self.current = self.shared.current.load_full();
            self.counters.swaps += 1;
        }
    }

    /// Fills both ends' context as of `ts_ns` (the connection's first packet).
    #[inline]
    pub fn enrich(&mut self, ctx: &mut ConnContext, orig: IpAddr, resp: IpAddr, ts_ns: u64) {
        let (a, b) = self
            .current
            .lookup_pair((orig, resp), ts_ns, (&mut ctx.orig, &mut ctx.resp));
        self.counters.lookups += 2;
        self.counters.matched += u64::from(a) + u64::from(b);
    }

    pub fn counters(&self) -> ReaderCounters {
        self.counters
    }
}

/// Now, as nanoseconds since the epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{col, EndContext};

    fn pods_json(pods: &[(&str, &str, &str)]) -> String {
        let items: Vec<String> = pods
            .iter()
            .map(|(name, ip, start)| {
                format!(
                    r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"shop","uid":"uid-{name}"}},"spec":{{"nodeName":"node-1"}},"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"startTime":"{start}"}}}}"#
                )
            })
            .collect();
        format!(
            r#"{{"apiVersion":"v1","items":[{}],"kind":"List","metadata":{{"resourceVersion":""}}}}"#,
            items.join(",")
        )
    }

    fn set_mtime(p: &Path, secs: u64) {
        let f = std::fs::File::options().write(true).open(p).unwrap();
        f.set_modified(UNIX_EPOCH + std::time::Duration::from_secs(secs))
            .unwrap();
    }

    fn pod_of(inv: &Inventory, ip: &str, secs: u64) -> Option<String> {
        let mut e = EndContext::default();
        inv.lookup(ip.parse().unwrap(), secs * 1_000_000_000, &mut e);
        e.get(col::POD)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    #[test]
    fn a_rewritten_file_keeps_history_and_a_bad_version_is_reported_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pods.json");
        std::fs::write(&f, pods_json(&[("a", "10.0.0.1", "1970-01-01T00:01:40Z")])).unwrap();
        set_mtime(&f, 200);
        let cfg = ContextConfig {
            paths: vec![f.clone()],
            ..ContextConfig::default()
        };
        let mut l = Loader::open(&cfg).unwrap();
        assert_eq!(pod_of(&l.build(), "10.0.0.1", 150).as_deref(), Some("a"));
        // A new version: "a" is gone and "b" holds the address from 300 s.
        std::fs::write(&f, pods_json(&[("b", "10.0.0.1", "1970-01-01T00:05:00Z")])).unwrap();
        set_mtime(&f, 400);
        let out = l.poll_with(false);
        assert!(out.changed && out.errors.is_empty(), "{out:?}");
        let inv = l.build();
        assert_eq!(pod_of(&inv, "10.0.0.1", 150).as_deref(), Some("a"));
        assert_eq!(pod_of(&inv, "10.0.0.1", 350).as_deref(), Some("b"));
        // A broken version: reported with its line, and the history stays.
        std::fs::write(&f, "{\"items\": [\n{\"kind\": \"Pod\",\n").unwrap();
        set_mtime(&f, 500);
        let out = l.poll_with(false);
        assert!(!out.changed);
        assert_eq!(out.errors.len(), 1);
        let msg = out.errors[0].to_string();
        assert!(msg.contains("pods.json:3:"), "{msg}");
        assert_eq!(pod_of(&l.build(), "10.0.0.1", 350).as_deref(), Some("b"));
        // Not reported again until it changes.
        assert!(l.poll_with(false).errors.is_empty());
    }

    #[test]
    fn a_missing_file_is_reported_once_and_its_state_kept() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.jsonl");
        std::fs::write(&f, "{\"ip\":\"10.0.0.1\",\"pod\":\"x\"}\n").unwrap();
        let cfg = ContextConfig {
            paths: vec![f.clone()],
            ..ContextConfig::default()
        };
        let mut l = Loader::open(&cfg).unwrap();
        std::fs::remove_file(&f).unwrap();
        let out = l.poll_with(false);
        assert_eq!(out.errors.len(), 1, "{out:?}");
        assert!(out.errors[0].to_string().contains("t.jsonl"));
        assert!(l.poll_with(false).errors.is_empty(), "said once");
        assert_eq!(pod_of(&l.build(), "10.0.0.1", 5).as_deref(), Some("x"));
        std::fs::write(&f, "{\"ip\":\"10.0.0.1\",\"pod\":\"y\"}\n").unwrap();
        assert!(l.poll_with(false).changed);
        assert_eq!(pod_of(&l.build(), "10.0.0.1", 5).as_deref(), Some("y"));
    }

    #[test]
    fn settling_waits_for_a_file_to_stop_changing() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.jsonl");
        std::fs::write(&f, "{\"ip\":\"10.0.0.1\",\"pod\":\"x\"}\n").unwrap();
        let cfg = ContextConfig {
            paths: vec![f.clone()],
            ..ContextConfig::default()
        };
        let mut l = Loader::open(&cfg).unwrap();
        std::fs::write(&f, "{\"ip\":\"10.0.0.1\",\"pod\":\"y\"}\n").unwrap();
        set_mtime(&f, 1000);
        assert!(!l.poll().changed, "first sight of a change waits");
        assert!(l.poll().changed, "unchanged since: read");
        assert_eq!(pod_of(&l.build(), "10.0.0.1", 5).as_deref(), Some("y"));
    }

    #[test]
    fn a_directory_replays_out_of_order_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("pods-1.json");
        let c = dir.path().join("pods-3.json");
        std::fs::write(&a, pods_json(&[("a", "10.0.0.1", "1970-01-01T00:01:40Z")])).unwrap();
        set_mtime(&a, 200);
        std::fs::write(&c, pods_json(&[("c", "10.0.0.1", "1970-01-01T00:10:00Z")])).unwrap();
        set_mtime(&c, 700);
        std::fs::write(dir.path().join(".pods-4.json.tmp"), "garbage").unwrap();
        let cfg = ContextConfig {
            paths: vec![dir.path().to_owned()],
            ..ContextConfig::default()
        };
        let mut l = Loader::open(&cfg).unwrap();
        assert_eq!(l.files(), 2, "dot files are ignored");
        let inv = l.build();
        // "a" closes when "c" begins (the 700 s snapshot no longer lists it).
        assert_eq!(pod_of(&inv, "10.0.0.1", 500).as_deref(), Some("a"));
        assert_eq!(pod_of(&inv, "10.0.0.1", 650).as_deref(), Some("c"));
        // A snapshot from between the two arrives late: "a" was already gone at 400 s.
        let b = dir.path().join("pods-2.json");
        std::fs::write(&b, pods_json(&[])).unwrap();
        std::fs::write(
            &b,
            r#"{"kind":"List","items":[{"kind":"Pod","metadata":{"name":"other","uid":"o"},"status":{"podIP":"10.9.9.9"}}]}"#,
        )
        .unwrap();
        set_mtime(&b, 400);
        let out = l.poll_with(false);
        assert!(out.changed && out.errors.is_empty(), "{out:?}");
        let inv = l.build();
        assert_eq!(pod_of(&inv, "10.0.0.1", 350).as_deref(), Some("a"));
        assert_eq!(pod_of(&inv, "10.0.0.1", 500), None, "in the gap");
        assert_eq!(pod_of(&inv, "10.0.0.1", 650).as_deref(), Some("c"));
    }

    #[test]
    fn a_growing_watch_file_is_read_again_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("watch.json");
        let ev = |kind: &str, name: &str, ip: &str| {
            format!(
                "{{\n    \"type\": \"{kind}\",\n    \"object\": {{\"kind\": \"Pod\", \"metadata\": {{\"name\": \"{name}\", \"uid\": \"u-{name}\", \"creationTimestamp\": \"1970-01-01T00:01:40Z\"}}, \"status\": {{\"podIP\": \"{ip}\"}}}}\n}}\n"
            )
        };
        std::fs::write(&f, ev("ADDED", "a", "10.0.0.1")).unwrap();
        let cfg = ContextConfig {
            paths: vec![f.clone()],
            ..ContextConfig::default()
        };
        let mut l = Loader::open(&cfg).unwrap();
        assert_eq!(pod_of(&l.build(), "10.0.0.1", 150).as_deref(), Some("a"));
        // kubectl appends; half a document is left for the next read.
        let more = format!(
            "{}{}",
            ev("ADDED", "b", "10.0.0.2"),
            ev("ADDED", "c", "10.0.0.3")
        );
        let cut = more.len() - 20;
        let mut w = std::fs::OpenOptions::new().append(true).open(&f).unwrap();
        std::io::Write::write_all(&mut w, &more.as_bytes()[..cut]).unwrap();
        set_mtime(&f, 300);
        let out = l.poll();
        assert!(out.changed, "no settling for a watch file: {out:?}");
        assert!(out.warnings.is_empty() && out.errors.is_empty(), "{out:?}");
        let inv = l.build();
        assert_eq!(pod_of(&inv, "10.0.0.2", 150).as_deref(), Some("b"));
        assert_eq!(pod_of(&inv, "10.0.0.3", 150), None, "not yet whole");
        std::io::Write::write_all(&mut w, &more.as_bytes()[cut..]).unwrap();
        set_mtime(&f, 400);
        assert!(l.poll().changed);
        assert_eq!(pod_of(&l.build(), "10.0.0.3", 150).as_deref(), Some("c"));
    }

    #[test]
    fn held_streams_start_only_when_released() {
        let dir = tempfile::tempdir().unwrap();
        let ran = dir.path().join("ran");
        let cfg = ContextConfig {
            commands: vec![format!("touch '{}'", ran.display())],
            ..ContextConfig::default()
        };
        let (_ctx, w) = Context::start_with(&cfg, true, |_| {}).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!ran.exists(), "held: not started");
        w.release_streams();
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while !ran.exists() {
            assert!(Instant::now() < deadline, "released: started");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        w.stop();
    }

    #[test]
    fn readers_see_a_swap_at_their_next_refresh() {
        let ctx = Context::fixed(Inventory::empty());
        let mut r = ctx.reader();
        let mut values: crate::context::Values = Default::default();
        values[col::POD] = Some("p".into());
        ctx.store(Inventory::build(
            vec![Window {
                ip: "10.0.0.1".parse().unwrap(),
                from_ns: 0,
                to_ns: u64::MAX,
                rank: crate::context::Rank::Pod,
                values,
            }],
            10,
        ));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let mut c = ConnContext::default();
        r.enrich(&mut c, ip, other, 1);
        assert!(c.orig.is_empty(), "the old inventory until refresh");
        r.refresh();
        let mut c = ConnContext::default();
        r.enrich(&mut c, ip, other, 1);
        assert_eq!(c.orig.get(col::POD), Some(&b"p"[..]));
        assert!(c.resp.is_empty());
        let k = r.counters();
        assert_eq!((k.lookups, k.matched, k.swaps), (4, 1, 1));
    }

    #[test]
    fn format_errors_name_the_file() {
        let p = Path::new("x.json");
        let e = parse_file(p, "{\"kind\":\"Deployment\"}", 0, &[]).unwrap_err();
        assert!(matches!(e, ContextError::Format { .. }), "{e}");
        let e = parse_file(p, "{\"items\": 5}", 0, &[]).unwrap_err();
        assert!(e.to_string().contains("items"), "{e}");
        let e = parse_file(
            p,
            r#"{"items":[{"kind":"Pod","metadata":{"name":"a"},"status":{"podIPs":[{"ip":"10.0.0.999"}]}}]}"#,
            0,
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("items[0].status.podIPs[0].ip"),
            "{e}"
        );
        // JSON lines under a .json name still parse as a table.
        let Parsed::Table(t) =
            parse_file(p, "{\"ip\":\"10.0.0.1\"}\n{\"ip\":\"10.0.0.2\"}\n", 0, &[]).unwrap()
        else {
            panic!("not a table")
        };
        assert_eq!(t.len(), 2);
    }
}

//! Kubernetes watch streams: what `kubectl get pods,services,nodes -A --watch
//! --output-watch-events -o json` prints, a stream of documents
//! `{"type": "ADDED|MODIFIED|DELETED|BOOKMARK|ERROR", "object": {...}}`, concatenated
//! (pretty-printed, so one document spans many lines; one per line works as well).
//!
//! [`Splitter`] cuts the bytes into documents as they arrive; [`WatchState`] applies each
//! event to the objects it knows and keeps their windows:
//!
//! - a window opens at the object's declared start (`status.startTime`, else
//!   `metadata.creationTimestamp`), or at the event's time when it declares none, and an
//!   address an object gains later (a `MODIFIED` with a new IP) opens at the event's time;
//! - it closes at the declared end (`metadata.deletionTimestamp`, a finished pod's last
//!   `finishedAt`) when that is earlier than the event's time, else at the event's time: on
//!   `DELETED`, on a `MODIFIED` that drops the address, and at a resync that no longer lists
//!   the object;
//! - a later holder of the same address closes the previous holder's window where its own
//!   begins, as for snapshots ([`clip_successors`]).
//!
//! An event's time is the time it was read (live: a command's output, a FIFO), or, in a
//! file read as a whole, the stream's clock: the latest time any document so far declared.
//!
//! Resync: when the command that writes the stream is restarted, kubectl first lists every
//! existing object as `ADDED`. [`WatchState::relist`] starts such a re-list at the restart
//! time; it ends at the first `BOOKMARK`, `MODIFIED` or `DELETED` document, after a quiet
//! gap once at least one document was read, or at a clean end of the output. Then every
//! object known before and not listed again is closed at the restart time. A re-list cut
//! short (an `ERROR` document, a failed exit) closes nothing: the last good state stays.
//!
//! A malformed document is reported with its line and field and skipped; the stream goes
//! on with the next document (the next line that starts with `{`, which is where kubectl's
//! pretty-printed documents start).

use super::history::{clip_successors, Snapshot};
use super::{kube, parse_time, Rank, Values, Window};
use hashbrown::{HashMap, HashSet};
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::net::IpAddr;

/// Where a document starts: the line number of its first byte (from 1).
pub type Line = usize;

/// A document longer than this is not waited for: it is reported and skipped.
const MAX_DOCUMENT: usize = 64 << 20;

/// What is wrong with one document: a syntax error (line, column) or a field (line, path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DocError {
    Syntax {
        line: Line,
        column: usize,
        message: String,
    },
    Field {
        line: Line,
        field: String,
        message: String,
    },
}

/// Cuts a byte stream into JSON documents as bytes arrive.
#[derive(Debug)]
pub struct Splitter {
    buf: Vec<u8>,
    /// Where the unread part of `buf` starts.
    pos: usize,
    /// The line number at `pos`.
    line: Line,
    /// After a syntax error: skip to the next line that starts with `{`.
    skipping: bool,
}

impl Default for Splitter {
    fn default() -> Splitter {
        Splitter {
            buf: Vec::new(),
            pos: 0,
            line: 1,
            skipping: false,
        }
    }
}

/// One item the splitter yields.
#[derive(Debug)]
pub enum Piece<'a> {
    /// A whole document and the line it starts on.
    Doc(Line, &'a [u8]),
    /// Bytes that are not a document, skipped up to the next one.
    Bad(DocError),
}

impl Splitter {
    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > (1 << 20) && self.pos * 2 > self.buf.len() {
            // Drop what was read once it is most of the buffer, so it does not grow.
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Starts over (a new run of the command): what is left of the previous one is dropped.
    pub fn reset(&mut self) {
        *self = Splitter::default();
    }

    fn advance(&mut self, to: usize) {
        self.line += self.buf[self.pos..to]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.pos = to;
    }

    /// The next document, or `None` when the rest is incomplete (wait for more bytes).
    /// `eof`: no more bytes will come, so an incomplete last document is reported.
    pub fn next(&mut self, eof: bool) -> Option<Piece<'_>> {
        if self.skipping {
            // The next document starts on a line of its own with `{`.
            let rest = &self.buf[self.pos..];
            match rest.windows(2).position(|w| w == b"\n{") {
                Some(i) => {
                    self.advance(self.pos + i + 1);
                    self.skipping = false;
                }
                None => {
                    // Keep a trailing newline: it may be followed by the next `{`.
                    let keep = usize::from(rest.last() == Some(&b'\n'));
                    self.advance(self.buf.len() - keep);
                    return None;
                }
            }
        }
        let ws = self.buf[self.pos..]
            .iter()
            .position(|b| !b.is_ascii_whitespace());
        match ws {
            Some(i) => self.advance(self.pos + i),
            None => {
                self.advance(self.buf.len());
                return None;
            }
        }
        let start = self.pos;
        let line = self.line;
        let mut it =
            serde_json::Deserializer::from_slice(&self.buf[start..]).into_iter::<IgnoredAny>();
        match it.next() {
            Some(Ok(_)) => {
                let end = start + it.byte_offset();
                self.advance(end);
                Some(Piece::Doc(line, &self.buf[start..end]))
            }
            Some(Err(e)) if e.is_eof() && !eof && self.buf.len() - start < MAX_DOCUMENT => None,
            Some(Err(e)) => {
                let message = if e.is_eof() {
                    if eof {
                        "the stream ended inside this document".to_owned()
                    } else {
                        format!("document longer than {} MiB", MAX_DOCUMENT >> 20)
                    }
                } else {
                    bare(&e)
                };
                let err = DocError::Syntax {
                    line: line + e.line().saturating_sub(1),
                    column: e.column(),
                    message,
                };
                // Skip past the document's first byte, then to the next one.
                self.advance(start + 1);
                self.skipping = true;
                Some(Piece::Bad(err))
            }
            None => None,
        }
    }
}

/// A JSON error's text without its position, which is relative to the document (the caller
/// says where the document is in the stream).
fn bare(e: &serde_json::Error) -> String {
    let mut m = e.to_string();
    if e.line() > 0 {
        if let Some(i) = m.rfind(" at line ") {
            m.truncate(i);
        }
    }
    m
}

/// A watch event's outer document; the object is read by its type.
#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "type")]
    kind: Option<String>,
    object: Option<serde_json::Value>,
}

/// The object of an `ERROR` event: a `Status`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ApiStatus {
    code: Option<i64>,
    reason: Option<String>,
    message: Option<String>,
}

/// Tells whether `text` starts with a watch event (`type` and `object` at the top level),
/// so a file of concatenated documents is told from a table by its content.
pub fn is_watch(text: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Sniff {
        #[serde(rename = "type")]
        kind: Option<IgnoredAny>,
        object: Option<IgnoredAny>,
    }
    let mut it = serde_json::Deserializer::from_slice(text).into_iter::<Sniff>();
    matches!(
        it.next(),
        Some(Ok(Sniff {
            kind: Some(_),
            object: Some(_)
        }))
    )
}

/// One open address of one object.
#[derive(Clone, Debug)]
struct Open {
    ip: IpAddr,
    from: u64,
    /// Declared end (deletion time, finish time).
    end: Option<u64>,
    rank: Rank,
    values: Values,
}

/// Object key: scope (`k8s:Pod`) and identity (uid).
type ObjectKey = (Box<str>, Box<str>);

/// A re-list in progress: when the command restarted, and which objects it listed so far.
#[derive(Debug)]
struct Relist {
    at: u64,
    seen: HashSet<ObjectKey>,
    /// Documents read since the restart.
    docs: u64,
}

/// What a watch stream has said: the objects open now and the windows closed so far.
#[derive(Debug, Default)]
pub struct WatchState {
    open: HashMap<ObjectKey, Vec<Open>>,
    closed: Vec<Window>,
    /// The latest time a document declared (a file's clock).
    clock: u64,
    relist: Option<Relist>,
    /// Events about pods, services and nodes applied.
    pub events: u64,
    /// Events about objects of kinds that hold no address, or without an address (yet).
    pub ignored: u64,
}

/// How an event's time is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// Read at this wall-clock time (nanoseconds since the epoch).
    Read(u64),
    /// From a file read as a whole: the stream's clock.
    Stream,
}

/// What applying one document did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// The objects changed.
    Changed,
    /// A bookmark or an event that changed nothing.
    Nothing,
    /// A re-list ended here: objects not listed again were closed.
    Resynced { closed: usize },
    /// An `ERROR` document: the API server's status, as text.
    ApiError(String),
}

impl WatchState {
    /// Objects open now.
    pub fn objects(&self) -> usize {
        self.open.len()
    }

    /// A re-list is in progress.
    pub fn relisting(&self) -> bool {
        self.relist.is_some()
    }

    /// Documents read since the re-list began (0 without one).
    pub fn relist_docs(&self) -> u64 {
        self.relist.as_ref().map_or(0, |r| r.docs)
    }

    /// The command was (re)started at `at`: what it lists first is the whole state.
    pub fn relist(&mut self, at: u64) {
        self.relist = Some(Relist {
            at,
            seen: HashSet::new(),
            docs: 0,
        });
    }

    /// The re-list is complete: objects known before and not listed again are closed at the
    /// restart time. Returns how many objects were closed.
    pub fn end_relist(&mut self) -> usize {
        let Some(r) = self.relist.take() else {
            return 0;
        };
        let gone: Vec<ObjectKey> = self
            .open
            .keys()
            .filter(|k| !r.seen.contains(*k))
            .cloned()
            .collect();
        for k in &gone {
            if let Some(list) = self.open.remove(k) {
                for o in list {
                    self.close(o, r.at);
                }
            }
        }
        gone.len()
    }

    /// The re-list was cut short: nothing is closed, the last good state stays.
    pub fn abandon_relist(&mut self) {
        self.relist = None;
    }

    fn close(&mut self, o: Open, at: u64) {
        let to = o.end.map_or(at, |e| e.min(at));
        if to > o.from {
            self.closed.push(Window {
                ip: o.ip,
                from_ns: o.from,
                to_ns: to,
                rank: o.rank,
                values: o.values,
            });
        }
    }

    /// Applies one document (`doc`, starting on `line`). `wanted` are the attributes the
    /// extra columns read.
    pub fn apply(
        &mut self,
        line: Line,
        doc: &[u8],
        at: At,
        wanted: &[String],
    ) -> Result<Applied, DocError> {
        let field = |field: String, message: String| DocError::Field {
            line,
            field,
            message,
        };
        let mut de = serde_json::Deserializer::from_slice(doc);
        let raw: RawEvent = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| field(e.path().to_string(), bare(e.inner())))?;
        let kind = raw.kind.ok_or_else(|| {
            field(
                "type".into(),
                "missing; a watch event is {\"type\": ..., \"object\": ...} (kubectl --watch \
                 --output-watch-events -o json)"
                    .into(),
            )
        })?;
        let object = raw.object.ok_or_else(|| {
            field(
                "object".into(),
                "missing; a watch event is {\"type\": ..., \"object\": ...}".into(),
            )
        })?;
        if let Some(r) = &mut self.relist {
            r.docs += 1;
        }
        match kind.as_str() {
            "ADDED" | "MODIFIED" | "DELETED" => {}
            "BOOKMARK" => {
                // A bookmark carries only a resource version; when it comes during a re-list
                // the list is complete (watch-list ends its initial events with one).
                if self.relist.is_some() {
                    return Ok(Applied::Resynced {
                        closed: self.end_relist(),
                    });
                }
                return Ok(Applied::Nothing);
            }
            "ERROR" => {
                let st: ApiStatus = serde_json::from_value(object).unwrap_or_default();
                self.abandon_relist();
                let mut text = String::new();
                if let Some(c) = st.code {
                    text.push_str(&c.to_string());
                }
                for part in [st.reason, st.message].into_iter().flatten() {
                    if !text.is_empty() {
                        text.push_str(": ");
                    }
                    text.push_str(&part);
                }
                if text.is_empty() {
                    text.push_str("no status given");
                }
                return Ok(Applied::ApiError(text));
            }
            other => {
                return Err(field(
                    "type".into(),
                    format!(
                        "{other:?} is not a watch event type (ADDED, MODIFIED, DELETED, \
                         BOOKMARK, ERROR)"
                    ),
                ))
            }
        }
        let obj: kube::Object = serde_path_to_error::deserialize(object).map_err(|e| {
            field(
                format!("object.{}", e.path()),
                format!(
                    "{}; is this unmodified `kubectl --output-watch-events -o json` output?",
                    e.inner()
                ),
            )
        })?;
        // A file's clock moves with the times its documents declare.
        for t in [
            obj.metadata.creation_timestamp.as_deref(),
            obj.status.start_time.as_deref(),
        ]
        .into_iter()
        .flatten()
        .filter_map(parse_time)
        {
            self.clock = self.clock.max(t);
        }
        if kind == "DELETED" {
            if let Some(t) = obj
                .metadata
                .deletion_timestamp
                .as_deref()
                .and_then(parse_time)
            {
                self.clock = self.clock.max(t);
            }
        }
        let t = match at {
            At::Read(t) => t,
            At::Stream => self.clock,
        };
        let mut snap = Snapshot::at(t);
        kube::observe(
            std::slice::from_ref(&obj),
            "object",
            false,
            wanted,
            &mut snap,
        )
        .map_err(|(f, m)| field(f, m))?;
        let Some((scope, id)) = kube::object_key(&obj) else {
            self.ignored += 1;
            return Ok(Applied::Nothing);
        };
        self.events += 1;
        let key: ObjectKey = (scope.into(), id.into());
        let mut ended_relist = false;
        if let Some(r) = &mut self.relist {
            if kind == "ADDED" {
                r.seen.insert(key.clone());
            } else {
                // kubectl lists with ADDED only: anything else is the watch proper.
                ended_relist = true;
            }
        }
        let closed_by_relist = if ended_relist { self.end_relist() } else { 0 };
        let before = self.open.remove(&key).unwrap_or_default();
        if kind == "DELETED" {
            let declared = obj
                .metadata
                .deletion_timestamp
                .as_deref()
                .and_then(parse_time);
            for mut o in before {
                if let Some(d) = declared {
                    o.end = Some(o.end.map_or(d, |e| e.min(d)));
                }
                self.close(o, t);
            }
        } else {
            if snap.observations.is_empty() {
                self.ignored += 1;
            }
            let had_any = !before.is_empty();
            let mut now: Vec<Open> = Vec::with_capacity(snap.observations.len());
            let mut before = before;
            for ob in snap.observations {
                match before.iter().position(|o| o.ip == ob.ip) {
                    Some(i) => {
                        let mut o = before.swap_remove(i);
                        // An end once declared stays (a deleted object does not come back).
                        if let Some(e) = ob.end_ns {
                            o.end = Some(o.end.map_or(e, |x| x.min(e)));
                        }
                        o.rank = ob.rank;
                        o.values = ob.values;
                        now.push(o);
                    }
                    None => now.push(Open {
                        ip: ob.ip,
                        // A new address of a known object is new as of this event.
                        from: if had_any { t } else { ob.start_ns.unwrap_or(t) },
                        end: ob.end_ns,
                        rank: ob.rank,
                        values: ob.values,
                    }),
                }
            }
            // Addresses the object no longer has.
            for o in before {
                self.close(o, t);
            }
            if !now.is_empty() {
                self.open.insert(key, now);
            }
        }
        if ended_relist {
            return Ok(Applied::Resynced {
                closed: closed_by_relist,
            });
        }
        Ok(Applied::Changed)
    }

    /// Keeps at most `max` closed windows: those that closed longest ago are forgotten.
    /// Returns how many were dropped.
    pub fn trim(&mut self, max: usize) -> usize {
        if self.closed.len() <= max {
            return 0;
        }
        let excess = self.closed.len() - max;
        self.closed
            .select_nth_unstable_by_key(excess - 1, |w| w.to_ns);
        self.closed.drain(..excess);
        excess
    }

    /// Every window: those closed and those still open, clipped so that a later holder of
    /// an address closes the earlier one.
    pub fn windows(&self) -> Vec<Window> {
        let mut out = self.closed.clone();
        for list in self.open.values() {
            for o in list {
                let to = o.end.unwrap_or(u64::MAX);
                if to > o.from {
                    out.push(Window {
                        ip: o.ip,
                        from_ns: o.from,
                        to_ns: to,
                        rank: o.rank,
                        values: o.values.clone(),
                    });
                }
            }
        }
        clip_successors(&mut out);
        out
    }
}

/// Reads a whole watch file: every document applied in order, at the stream's clock.
/// Returns the windows and the documents that could not be used (each skipped). An
/// unfinished last document is left for a later read (the file may still be growing).
pub fn read_all(text: &[u8], wanted: &[String], max: usize) -> (Vec<Window>, Vec<DocError>) {
    let mut sp = Splitter::default();
    sp.push(text);
    let mut st = WatchState::default();
    let mut errors = Vec::new();
    while let Some(p) = sp.next(false) {
        match p {
            Piece::Doc(line, doc) => match st.apply(line, doc, At::Stream, wanted) {
                Ok(Applied::ApiError(msg)) => errors.push(DocError::Field {
                    line,
                    field: "object".into(),
                    message: format!("the API server ended the watch: {msg}"),
                }),
                Ok(_) => {}
                Err(e) => errors.push(e),
            },
            Piece::Bad(e) => errors.push(e),
        }
    }
    st.trim(max);
    (st.windows(), errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::col;

    const S: u64 = 1_000_000_000;

    fn pod(kind: &str, name: &str, ip: &str, start: &str, deletion: Option<&str>) -> String {
        let del = deletion.map_or(String::new(), |d| format!(r#","deletionTimestamp":"{d}""#));
        format!(
            r#"{{
  "type": "{kind}",
  "object": {{
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {{"name": "{name}", "namespace": "shop", "uid": "uid-{name}", "creationTimestamp": "{start}"{del}}},
    "spec": {{"nodeName": "worker-a"}},
    "status": {{"phase": "Running", "podIP": "{ip}", "podIPs": [{{"ip": "{ip}"}}], "startTime": "{start}"}}
  }}
}}
"#
        )
    }

    fn feed(st: &mut WatchState, sp: &mut Splitter, text: &str, at: At) -> Vec<DocError> {
        sp.push(text.as_bytes());
        let mut errs = Vec::new();
        while let Some(p) = sp.next(false) {
            match p {
                Piece::Doc(l, d) => {
                    if let Err(e) = st.apply(l, d, at, &[]) {
                        errs.push(e);
                    }
                }
                Piece::Bad(e) => errs.push(e),
            }
        }
        errs
    }

    fn holder(ws: &[Window], ip: &str, t: u64) -> Option<String> {
        let ip: IpAddr = ip.parse().unwrap();
        ws.iter()
            .find(|w| w.ip == ip && w.from_ns <= t && t < w.to_ns)
            .and_then(|w| w.values[col::POD].as_deref().map(str::to_owned))
    }

    /// 2024-05-01T09:00:00Z.
    const T9: u64 = 1_714_554_000 * S;

    #[test]
    fn documents_split_across_reads_and_lines() {
        let text = pod("ADDED", "a", "10.0.0.1", "2024-05-01T09:00:00Z", None);
        let mut sp = Splitter::default();
        let mut st = WatchState::default();
        let (head, tail) = text.split_at(40);
        assert!(feed(&mut st, &mut sp, head, At::Stream).is_empty());
        assert_eq!(st.objects(), 0, "half a document waits");
        assert!(feed(&mut st, &mut sp, tail, At::Stream).is_empty());
        assert_eq!(st.objects(), 1);
        // A second document on the same line as the end of the first, then one on line 12.
        let two = format!(
            "{}{}",
            pod("ADDED", "b", "10.0.0.2", "2024-05-01T09:00:00Z", None).trim_end(),
            pod("ADDED", "c", "10.0.0.3", "2024-05-01T09:00:00Z", None)
        );
        assert!(feed(&mut st, &mut sp, &two, At::Stream).is_empty());
        assert_eq!(st.objects(), 3);
    }

    #[test]
    fn a_malformed_document_is_skipped_with_its_line_and_the_next_one_read() {
        let mut sp = Splitter::default();
        let mut st = WatchState::default();
        let good = pod("ADDED", "a", "10.0.0.1", "2024-05-01T09:00:00Z", None);
        let lines = good.lines().count();
        let bad = "{\n  \"type\": \"ADDED\",\n  \"object\": {\"kind\": \"Pod\",,}\n}\n";
        let wrong = pod("ADDED", "b", "10.0.0.999", "2024-05-01T09:00:00Z", None);
        let text = format!(
            "{good}{bad}{wrong}{}",
            pod("ADDED", "c", "10.0.0.3", "2024-05-01T09:00:00Z", None)
        );
        let errs = feed(&mut st, &mut sp, &text, At::Stream);
        assert_eq!(errs.len(), 2, "{errs:?}");
        match &errs[0] {
            DocError::Syntax { line, .. } => assert_eq!(*line, lines + 3),
            e => panic!("{e:?}"),
        }
        match &errs[1] {
            DocError::Field { line, field, .. } => {
                assert_eq!(*line, lines + 5);
                assert_eq!(field, "object.status.podIPs[0].ip");
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(st.objects(), 2, "a and c");
    }

    #[test]
    fn deletion_closes_at_the_declared_time_and_a_new_holder_takes_over() {
        let mut sp = Splitter::default();
        let mut st = WatchState::default();
        let text = [
            pod("ADDED", "a", "10.0.0.1", "2024-05-01T09:00:00Z", None),
            pod(
                "MODIFIED",
                "a",
                "10.0.0.1",
                "2024-05-01T09:00:00Z",
                Some("2024-05-01T09:10:00Z"),
            ),
            pod(
                "DELETED",
                "a",
                "10.0.0.1",
                "2024-05-01T09:00:00Z",
                Some("2024-05-01T09:10:00Z"),
            ),
            pod("ADDED", "b", "10.0.0.1", "2024-05-01T09:11:00Z", None),
        ]
        .concat();
        assert!(feed(&mut st, &mut sp, &text, At::Stream).is_empty());
        let ws = st.windows();
        assert_eq!(holder(&ws, "10.0.0.1", T9 + 300 * S).as_deref(), Some("a"));
        assert_eq!(holder(&ws, "10.0.0.1", T9 + 630 * S), None, "the gap");
        assert_eq!(holder(&ws, "10.0.0.1", T9 + 700 * S).as_deref(), Some("b"));
    }

    #[test]
    fn live_events_without_times_use_the_read_time_and_a_new_address_opens_then() {
        let mut sp = Splitter::default();
        let mut st = WatchState::default();
        let svc = |kind: &str, ip: &str| {
            format!(
                r#"{{"type":"{kind}","object":{{"kind":"Service","metadata":{{"name":"api","namespace":"shop","uid":"s1"}},"spec":{{"clusterIP":"{ip}","clusterIPs":["{ip}"]}}}}}}"#
            )
        };
        feed(
            &mut st,
            &mut sp,
            &svc("ADDED", "10.96.0.5"),
            At::Read(100 * S),
        );
        feed(
            &mut st,
            &mut sp,
            &svc("MODIFIED", "10.96.0.6"),
            At::Read(200 * S),
        );
        let ws = st.windows();
        let span = |ip: &str| {
            let ip: IpAddr = ip.parse().unwrap();
            let w = ws.iter().find(|w| w.ip == ip).unwrap();
            (w.from_ns, w.to_ns)
        };
        assert_eq!(span("10.96.0.5"), (100 * S, 200 * S));
        assert_eq!(span("10.96.0.6"), (200 * S, u64::MAX));
        feed(
            &mut st,
            &mut sp,
            &svc("DELETED", "10.96.0.6"),
            At::Read(300 * S),
        );
        let ws = st.windows();
        let w = ws.iter().find(|w| w.ip.to_string() == "10.96.0.6").unwrap();
        assert_eq!((w.from_ns, w.to_ns), (200 * S, 300 * S));
    }

    #[test]
    fn a_relist_closes_what_it_no_longer_lists_at_the_restart_time() {
        let mut sp = Splitter::default();
        let mut st = WatchState::default();
        let t = At::Read(T9 + 1000 * S);
        st.relist(T9 + 1000 * S);
        feed(
            &mut st,
            &mut sp,
            &[
                pod("ADDED", "a", "10.0.0.1", "2024-05-01T09:00:00Z", None),
                pod("ADDED", "b", "10.0.0.2", "2024-05-01T09:00:00Z", None),
            ]
            .concat(),
            t,
        );
        assert_eq!(st.end_relist(), 0);
        // Restarted at 2000 s: only "b" is listed, then a bookmark ends the list.
        sp.reset();
        st.relist(T9 + 2000 * S);
        let bookmark = r#"{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"12746","annotations":{"k8s.io/initial-events-end":"true"}}}}"#;
        feed(
            &mut st,
            &mut sp,
            &pod("ADDED", "b", "10.0.0.2", "2024-05-01T09:00:00Z", None),
            At::Read(T9 + 2001 * S),
        );
        assert!(st.relisting());
        sp.push(bookmark.as_bytes());
        let Some(Piece::Doc(l, d)) = sp.next(false) else {
            panic!("bookmark")
        };
        let d = d.to_vec();
        assert_eq!(
            st.apply(l, &d, At::Read(T9 + 2002 * S), &[]),
            Ok(Applied::Resynced { closed: 1 })
        );
        let ws = st.windows();
        assert_eq!(holder(&ws, "10.0.0.1", T9 + 1999 * S).as_deref(), Some("a"));
        assert_eq!(holder(&ws, "10.0.0.1", T9 + 2000 * S), None);
        assert_eq!(holder(&ws, "10.0.0.2", T9 + 3000 * S).as_deref(), Some("b"));
    }

    #[test]
    fn an_error_document_ends_the_relist_without_closing() {
        let mut sp = Splitter::default();
        let mut st = WatchState::default();
        feed(
            &mut st,
            &mut sp,
            &pod("ADDED", "a", "10.0.0.1", "2024-05-01T09:00:00Z", None),
            At::Read(T9 + 10 * S),
        );
        st.relist(T9 + 20 * S);
        sp.push(br#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (12745)","reason":"Expired","code":410}}"#);
        let Some(Piece::Doc(l, d)) = sp.next(false) else {
            panic!("error doc")
        };
        let d = d.to_vec();
        let r = st.apply(l, &d, At::Read(T9 + 21 * S), &[]).unwrap();
        assert_eq!(
            r,
            Applied::ApiError("410: Expired: too old resource version: 1 (12745)".into())
        );
        assert!(!st.relisting());
        assert_eq!(st.objects(), 1, "the last good state stays");
    }

    #[test]
    fn watch_files_are_told_by_content() {
        assert!(is_watch(
            pod("ADDED", "a", "10.0.0.1", "2024-05-01T09:00:00Z", None).as_bytes()
        ));
        assert!(!is_watch(br#"{"kind":"List","items":[]}"#));
        assert!(!is_watch(b"{\"ip\":\"10.0.0.1\"}\n"));
    }
}

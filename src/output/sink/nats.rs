//! NATS JetStream sink (`-o nats://HOST:PORT[,HOST:PORT…]`, `tls://…`): one Zeek JSON record
//! per message, published with acknowledgements into a JetStream stream.
//!
//! Each record goes to the subject of its log (`--nats-subject`, default
//! `nameflow.logs.{path}`) and carries `"_path"` and `"_system_name"` first, as Zeek's
//! json-streaming-logs package writes them. Each message has a `Nats-Msg-Id` made of the sensor,
//! the log, the record's uid (its `ts` for logs without one) and, from the second record with
//! the same uid in a log on, a counter. A message sent again after a reconnect therefore has
//! the id it had the first time, and JetStream's duplicate window keeps one copy.
//!
//! The writer thread never touches the network. It lays out each record as `[id][payload]` in
//! a chunk and hands full chunks to this sink's thread through a short mutex-protected queue
//! (one lock per chunk, never per record), like the tcp/unix sinks. The buffer is bounded by
//! `--stream-buffer`: beyond it new records are dropped and counted. A record stays in the
//! buffer until JetStream acknowledged it.
//!
//! The sink's thread runs the official `async-nats` client on a current-thread tokio runtime of
//! its own. It keeps up to [`WINDOW`] publishes in flight; a publish that fails or is not
//! acknowledged within the ack timeout is sent again (same id) after a backoff of 100 ms
//! doubling to 5 s, while the client reconnects with the same backoff. At exit it keeps
//! publishing until the flush deadline, then counts what is left as dropped.

use super::{Sink, SinkCounters};
use crate::output::schema::Schema;
use crate::output::writer::OutputError;
use crate::output::Encoding;
use async_nats::jetstream;
use bytes::Bytes;
use std::collections::VecDeque;
use std::future::IntoFuture;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Records are handed to the client's thread in chunks of about this size.
const CHUNK: usize = 64 * 1024;
/// Publishes awaiting their acknowledgement at most.
pub const WINDOW: usize = 1024;
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long JetStream may take to acknowledge a publish (or answer an API request) before it
/// is sent again.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Uids remembered per generation to number records that repeat one (dns.log).
const SEEN_GENERATION: usize = 1 << 16;

/// Where a NATS sink connects: one or more servers of one cluster, as the user wrote them.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NatsServers {
    /// Full URLs (`nats://…` or `tls://…`), credentials included.
    pub urls: Vec<String>,
}

impl NatsServers {
    /// Parses `nats://HOST:PORT[,HOST:PORT…]` (or `tls://`); later entries may omit the scheme
    /// and take the first one's.
    pub fn parse(s: &str) -> Result<NatsServers, &'static str> {
        let (scheme, rest) = if let Some(r) = s.strip_prefix("nats://") {
            ("nats", r)
        } else if let Some(r) = s.strip_prefix("tls://") {
            ("tls", r)
        } else {
            return Err("a NATS output starts with nats:// or tls://");
        };
        let mut urls = Vec::new();
        for (i, part) in rest.split(',').enumerate() {
            let part = part.trim().trim_end_matches('/');
            if part.is_empty() {
                return Err(
                    "a NATS output lists an empty server (nats://HOST:PORT[,HOST:PORT...])",
                );
            }
            let url = if part.contains("://") {
                if i == 0 {
                    return Err("a NATS server is written HOST:PORT after the scheme");
                }
                part.to_owned()
            } else {
                format!("{scheme}://{part}")
            };
            let addr: async_nats::ServerAddr = url
                .parse()
                .map_err(|_| "not a NATS server URL (nats://HOST:PORT or tls://HOST:PORT)")?;
            if addr.host().is_empty() {
                return Err("a NATS server needs a host (nats://HOST:PORT)");
            }
            if addr.is_websocket() {
                return Err("websocket NATS servers are not supported; use nats:// or tls://");
            }
            let after = url.split_once("://").map_or("", |(_, a)| a);
            let hostport = after.rsplit_once('@').map_or(after, |(_, h)| h);
            match hostport.rsplit_once(':') {
                Some((_, p)) if !p.ends_with(']') => match p.parse::<u16>() {
                    Ok(p) if p > 0 => {}
                    _ => return Err("the NATS port must be a number from 1 to 65535"),
                },
                _ => return Err("a NATS server needs a port (nats://HOST:PORT)"),
            }
            urls.push(url);
        }
        Ok(NatsServers { urls })
    }

    /// True when every server is reached over TLS.
    fn tls(&self) -> bool {
        self.urls.iter().any(|u| u.starts_with("tls://"))
    }

    /// User and password, or a token, from the first URL that carries them (percent-decoded).
    fn url_auth(&self) -> Option<(String, Option<String>)> {
        for u in &self.urls {
            let Ok(addr) = u.parse::<async_nats::ServerAddr>() else {
                continue;
            };
            if let Some(user) = addr.username() {
                let user = percent_decode(user);
                let pass = addr.password().map(percent_decode);
                return Some((user, pass));
            }
        }
        None
    }
}

impl std::fmt::Display for NatsServers {
    /// The servers with any password or token replaced by `***` (this is the name stats.log
    /// and messages use).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, u) in self.urls.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let (scheme, after) = u.split_once("://").unwrap_or(("nats", u));
            let shown = match after.rsplit_once('@') {
                Some((auth, host)) => match auth.split_once(':') {
                    Some((user, _)) => format!("{user}:***@{host}"),
                    None => format!("***@{host}"),
                },
                None => after.to_owned(),
            };
            if i == 0 {
                write!(f, "{scheme}://{shown}")?;
            } else {
                f.write_str(&shown)?;
            }
        }
        Ok(())
    }
}

/// `s` with whatever stands between `://` (or `,`) and `@` shown as `***`, for messages about
/// a spec that did not parse.
pub fn redact(s: &str) -> String {
    s.split(',')
        .map(|part| {
            let (scheme, rest) = match part.split_once("://") {
                Some((a, b)) => (Some(a), b),
                None => (None, part),
            };
            let rest = match rest.rsplit_once('@') {
                Some((_, host)) => format!("***@{host}"),
                None => rest.to_owned(),
            };
            match scheme {
                Some(sc) => format!("{sc}://{rest}"),
                None => rest,
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The NATS settings shared by every NATS output, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct NatsOptions {
    /// Subject template with `{path}` and `{sensor}`.
    pub subject: String,
    /// The JetStream stream; created when missing.
    pub stream: String,
    /// Max age of a stream this sink creates (zero: unlimited).
    pub max_age: Duration,
    /// Duplicate window of a stream this sink creates: a resend is recognised within it.
    pub dedup_window: Duration,
    /// A NATS credentials file (JWT and nkey seed).
    pub creds: Option<PathBuf>,
    /// PEM file of the CA that signed the servers' certificates.
    pub ca: Option<PathBuf>,
    /// Exit with an error at start when no server can be reached.
    pub required: bool,
    /// The sensor's name (`_system_name`, `{sensor}`, message ids).
    pub sensor: String,
}

impl Default for NatsOptions {
    fn default() -> NatsOptions {
        NatsOptions {
            subject: "nameflow.logs.{path}".into(),
            stream: "NAMEFLOW_LOGS".into(),
            max_age: Duration::from_secs(7 * 24 * 3600),
            dedup_window: Duration::from_secs(120),
            creds: None,
            ca: None,
            required: false,
            sensor: default_sensor(),
        }
    }
}

/// The host name, or `nameflow` when it cannot be read.
pub fn default_sensor() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "nameflow".into())
}

/// Checks a subject template: dot-separated tokens, no wildcards or spaces, known placeholders,
/// and a literal first token (the created stream takes `<literal tokens>.>`).
pub fn check_subject(template: &str) -> Result<(), String> {
    if stream_subject(template).is_none() {
        return Err(
            "the subject must start with a literal token before any {path} or {sensor} \
             (e.g. nameflow.logs.{path})"
                .into(),
        );
    }
    for token in template.split('.') {
        if token.is_empty() {
            return Err("the subject has an empty token (two dots, or a dot at an end)".into());
        }
        if token.bytes().any(|b| b <= b' ' || b == b'*' || b == b'>') {
            return Err("a subject may not contain spaces, '*' or '>'".into());
        }
        let rest = token.replace("{path}", "").replace("{sensor}", "");
        if rest.contains('{') || rest.contains('}') {
            return Err("unknown placeholder; the subject knows {path} and {sensor}".into());
        }
    }
    Ok(())
}

/// The subjects filter of a stream created for `template`: its literal leading tokens + `>`.
pub fn stream_subject(template: &str) -> Option<String> {
    let lit: Vec<&str> = template
        .split('.')
        .take_while(|t| !t.contains('{'))
        .collect();
    if lit.is_empty() || lit.len() == template.split('.').count() && !template.contains('{') {
        // A template without placeholders is one subject: the stream takes exactly it.
        return (!lit.is_empty()).then(|| template.to_owned());
    }
    Some(format!("{}.>", lit.join(".")))
}

/// Checks a stream name as JetStream wants it.
pub fn check_stream(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name
            .bytes()
            .any(|b| b <= b' ' || matches!(b, b'.' | b'*' | b'>' | b'/' | b'\\'))
    {
        return Err(
            "a stream name is non-empty, without spaces, '.', '*', '>', '/' or '\\'".into(),
        );
    }
    Ok(())
}

/// The sensor as a subject token: characters a token cannot hold become `_`.
fn sensor_token(sensor: &str) -> String {
    sensor
        .chars()
        .map(|c| {
            if c.is_whitespace() || matches!(c, '.' | '*' | '>') {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// NATS subject wildcard match (`*` one token, `>` the rest).
fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// One record's place in a chunk: `[id][payload]`.
#[derive(Clone, Copy)]
struct Meta {
    log: u16,
    id_len: u16,
    len: u32,
}

struct Chunk {
    bytes: Vec<u8>,
    msgs: Vec<Meta>,
}

struct State {
    chunks: VecDeque<Chunk>,
    /// One subject per log, in log order.
    subjects: Vec<String>,
    /// Set at exit: deliver what is queued until this instant.
    closing: Option<Instant>,
}

struct Shared {
    state: Mutex<State>,
    wake: tokio::sync::Notify,
    /// Bytes handed over and not yet acknowledged (or dropped).
    queued_bytes: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is one push or pop, so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Numbers records whose uid (or ts) repeats within a log. Two generations of a bounded map:
/// a key is remembered for at least `SEEN_GENERATION` later keys, far longer than a
/// connection's dns.log records are apart; allocated once.
struct Repeats {
    current: hashbrown::HashMap<u64, u32>,
    previous: hashbrown::HashMap<u64, u32>,
}

impl Repeats {
    fn new() -> Repeats {
        Repeats {
            current: hashbrown::HashMap::with_capacity(SEEN_GENERATION),
            previous: hashbrown::HashMap::with_capacity(SEEN_GENERATION),
        }
    }

    /// How many records before this one had `key` in `log`.
    fn next(&mut self, log: usize, key: &[u8]) -> u32 {
        let mut h = DefaultHasher::new();
        log.hash(&mut h);
        key.hash(&mut h);
        let k = h.finish();
        if let Some(n) = self.current.get_mut(&k) {
            *n += 1;
            return *n;
        }
        let n = self.previous.get(&k).map_or(0, |n| n + 1);
        if self.current.len() >= SEEN_GENERATION {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
        }
        self.current.insert(k, n);
        n
    }
}

/// What identifies a record within its log: the value of `"uid"`, else of `"ts"`.
fn record_key(line: &[u8]) -> &[u8] {
    if let Some(i) = find(line, b"\"uid\":\"") {
        let v = &line[i + 7..];
        let end = v.iter().position(|&b| b == b'"').unwrap_or(v.len());
        return &v[..end];
    }
    if let Some(i) = find(line, b"\"ts\":") {
        let v = &line[i + 5..];
        let v = v.strip_prefix(b"\"").unwrap_or(v);
        let end = v
            .iter()
            .position(|&b| matches!(b, b',' | b'}' | b'"'))
            .unwrap_or(v.len());
        return &v[..end];
    }
    b""
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// How the sink's thread reached the servers at start.
enum Startup {
    Ready,
    Failed(String),
}

pub(crate) struct NatsSink {
    name: String,
    enc: Encoding,
    opts: NatsOptions,
    /// `"_system_name":"<sensor>",` as JSON, spliced after `_path`.
    system_name: Vec<u8>,
    sensor_token: String,
    /// Log names, by log number.
    paths: Vec<&'static str>,
    repeats: Repeats,
    shared: Arc<Shared>,
    chunk: Chunk,
    capacity: usize,
    thread: Option<JoinHandle<()>>,
    counters: Arc<SinkCounters>,
}

/// Everything the client's thread needs.
struct Setup {
    name: String,
    servers: NatsServers,
    opts: NatsOptions,
    creds: Option<String>,
}

impl NatsSink {
    /// Checks the credentials and CA files, starts the client's thread and waits for its first
    /// connection attempt: bad credentials or TLS fail here; an unreachable server is said once
    /// on stderr and retried (or, with `--nats-required`, fails here).
    pub(crate) fn open(
        servers: &NatsServers,
        opts: &NatsOptions,
        enc: Encoding,
        capacity: usize,
    ) -> Result<NatsSink, OutputError> {
        let name = servers.to_string();
        let nats_err = |message: String| OutputError::Nats {
            sink: name.clone(),
            message,
        };
        let creds = match &opts.creds {
            None => None,
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    nats_err(format!(
                        "cannot read --nats-creds {}: {e}; give a readable NATS credentials file",
                        p.display()
                    ))
                })?;
                async_nats::ConnectOptions::with_credentials(&text).map_err(|e| {
                    nats_err(format!(
                        "--nats-creds {} is not a NATS credentials file ({e}); use the .creds \
                         file `nsc generate creds` writes",
                        p.display()
                    ))
                })?;
                Some(text)
            }
        };
        if let Some(ca) = &opts.ca {
            std::fs::File::open(ca).map_err(|e| {
                nats_err(format!(
                    "cannot read --nats-ca {}: {e}; give the PEM file of the servers' CA",
                    ca.display()
                ))
            })?;
        }
        if opts.ca.is_some() && !servers.tls() {
            return Err(nats_err(
                "--nats-ca is given but the output is nats://; use tls://HOST:PORT".into(),
            ));
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                chunks: VecDeque::new(),
                subjects: Vec::new(),
                closing: None,
            }),
            wake: tokio::sync::Notify::new(),
            queued_bytes: AtomicUsize::new(0),
        });
        let counters: Arc<SinkCounters> = Arc::default();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let setup = Setup {
            name: name.clone(),
            servers: servers.clone(),
            opts: opts.clone(),
            creds,
        };
        let thread = {
            let shared = shared.clone();
            let counters = counters.clone();
            std::thread::Builder::new()
                .name("nameflow-nats".into())
                .spawn(move || run_client(setup, &shared, &counters, ready_tx))
                .map_err(|source| OutputError::Spawn {
                    what: "NATS sink",
                    source,
                })?
        };
        let mut sink = NatsSink {
            name: name.clone(),
            enc,
            opts: opts.clone(),
            system_name: system_name_json(&opts.sensor),
            sensor_token: sensor_token(&opts.sensor),
            paths: Vec::new(),
            repeats: Repeats::new(),
            shared,
            chunk: Chunk {
                bytes: Vec::with_capacity(CHUNK),
                msgs: Vec::with_capacity(CHUNK / 128),
            },
            capacity: capacity.max(CHUNK),
            thread: Some(thread),
            counters,
        };
        let started = ready_rx.recv_timeout(CONNECT_TIMEOUT * 8 + ACK_TIMEOUT * 2);
        match started {
            Ok(Startup::Ready) => Ok(sink),
            Ok(Startup::Failed(message)) => {
                sink.stop_now();
                Err(nats_err(message))
            }
            Err(_) => {
                sink.stop_now();
                Err(nats_err(
                    "the NATS client did not start in time; this is a bug, please report it".into(),
                ))
            }
        }
    }

    fn stop_now(&mut self) {
        if let Some(t) = self.thread.take() {
            self.shared.lock().closing = Some(Instant::now());
            self.shared.wake.notify_one();
            let _ = t.join();
        }
    }

    fn hand_off(&mut self) {
        if self.chunk.msgs.is_empty() {
            return;
        }
        let records = self.chunk.msgs.len() as u64;
        let len = self.chunk.bytes.len();
        let next = Chunk {
            bytes: Vec::with_capacity(CHUNK),
            msgs: Vec::with_capacity(CHUNK / 128),
        };
        let chunk = std::mem::replace(&mut self.chunk, next);
        self.shared.lock().chunks.push_back(chunk);
        self.shared.queued_bytes.fetch_add(len, Ordering::AcqRel);
        self.counters.buffered.fetch_add(records, Ordering::Relaxed);
        self.shared.wake.notify_one();
    }
}

fn system_name_json(sensor: &str) -> Vec<u8> {
    let mut out = b"\"_system_name\":".to_vec();
    // serde_json writes a JSON string with every escape it needs.
    out.extend_from_slice(
        serde_json::to_string(sensor)
            .unwrap_or_else(|_| "\"\"".into())
            .as_bytes(),
    );
    out.push(b',');
    out
}

impl Sink for NatsSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn encoding(&self) -> Encoding {
        self.enc
    }

    fn add_log(&mut self, log: usize, schema: &'static Schema) -> Result<(), OutputError> {
        debug_assert_eq!(log, self.paths.len());
        let subject = self
            .opts
            .subject
            .replace("{path}", schema.path)
            .replace("{sensor}", &self.sensor_token);
        self.paths.push(schema.path);
        self.shared.lock().subjects.push(subject);
        Ok(())
    }

    fn write(&mut self, log: usize, line: &[u8]) -> Result<(), OutputError> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let path = self.paths.get(log).copied().unwrap_or("log");
        let key = record_key(line);
        let n = self.repeats.next(log, key);
        // `sensor:path:key[:n]`; the counter only where the key repeats.
        let mut id = [0u8; 512];
        let mut id_len = 0;
        for part in [
            self.opts.sensor.as_bytes(),
            b":",
            path.as_bytes(),
            b":",
            key,
        ] {
            let take = part.len().min(id.len() - id_len - 12);
            id[id_len..id_len + take].copy_from_slice(&part[..take]);
            id_len += take;
        }
        if n > 0 {
            id[id_len] = b':';
            id_len += 1;
            let mut b = itoa::Buffer::new();
            let s = b.format(n).as_bytes();
            id[id_len..id_len + s.len()].copy_from_slice(s);
            id_len += s.len();
        }
        // `{"_path":"conn",` then `"_system_name":"…",` then the rest; a line without a
        // `_path` member gets the name first.
        let split = line
            .strip_prefix(b"{\"_path\":\"")
            .and_then(|rest| rest.iter().position(|&b| b == b'"'))
            .map(|i| 10 + i + 2)
            .filter(|&at| at < line.len() && line[at - 1] == b',')
            .unwrap_or(1)
            .min(line.len());
        let len = line.len() + self.system_name.len();
        let total = id_len + len;
        if self.chunk.bytes.len() + total > CHUNK {
            self.hand_off();
        }
        let queued = self.shared.queued_bytes.load(Ordering::Acquire);
        if queued + self.chunk.bytes.len() + total > self.capacity {
            // Full: the newest record is the one given up, and counted.
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let b = &mut self.chunk.bytes;
        b.extend_from_slice(&id[..id_len]);
        b.extend_from_slice(&line[..split]);
        b.extend_from_slice(&self.system_name);
        b.extend_from_slice(&line[split..]);
        self.chunk.msgs.push(Meta {
            log: log as u16,
            id_len: id_len as u16,
            len: len as u32,
        });
        Ok(())
    }

    fn poll(&mut self, _now: Option<u64>) -> Result<(), OutputError> {
        if self.chunk.bytes.len() >= CHUNK / 2 {
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
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| OutputError::ThreadPanic("NATS sink"))?;
        }
        Ok(())
    }

    fn counters(&self) -> &Arc<SinkCounters> {
        &self.counters
    }
}

impl Drop for NatsSink {
    fn drop(&mut self) {
        // Dropped without `finish` (an error elsewhere): stop the client now.
        self.stop_now();
    }
}

/// One message on its way: its log, id and payload, slices of its chunk.
struct Msg {
    log: u16,
    id: Bytes,
    payload: Bytes,
}

impl Msg {
    fn cost(&self) -> usize {
        self.id.len() + self.payload.len()
    }
}

fn backoff_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let shift = (attempts - 2).min(16) as u32;
    (MIN_BACKOFF * 2u32.pow(shift)).min(MAX_BACKOFF)
}

fn connect_options(setup: &Setup) -> async_nats::ConnectOptions {
    let mut o = match &setup.creds {
        // Checked in `open`; a failure here cannot happen, and would only drop the creds.
        Some(text) => async_nats::ConnectOptions::with_credentials(text).unwrap_or_default(),
        None => async_nats::ConnectOptions::new(),
    };
    match setup.servers.url_auth() {
        Some((user, Some(pass))) => o = o.user_and_password(user, pass),
        Some((token, None)) => o = o.token(token),
        None => {}
    }
    if setup.servers.tls() {
        o = o.require_tls(true);
    }
    if let Some(ca) = &setup.opts.ca {
        o = o.add_root_certificates(ca.clone());
    }
    let name = setup.name.clone();
    // Only a connection after a loss is news; the first one is the normal start.
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    o.connection_timeout(CONNECT_TIMEOUT)
        .reconnect_delay_callback(backoff_delay)
        .max_reconnects(None)
        .request_timeout(Some(ACK_TIMEOUT))
        .name(format!("nameflow {}", setup.opts.sensor))
        .event_callback(move |event| {
            let name = name.clone();
            let lost = lost.clone();
            async move {
                match event {
                    async_nats::Event::Disconnected => {
                        lost.store(true, Ordering::Relaxed);
                        eprintln!(
                            "nameflow: {name}: disconnected; reconnecting, records are buffered"
                        )
                    }
                    async_nats::Event::Connected if lost.swap(false, Ordering::Relaxed) => {
                        eprintln!("nameflow: {name}: reconnected")
                    }
                    async_nats::Event::ServerError(e) => {
                        eprintln!("nameflow: {name}: server error: {e}")
                    }
                    _ => {}
                }
            }
        })
}

/// The client's thread: a current-thread runtime of its own.
fn run_client(
    setup: Setup,
    shared: &Shared,
    counters: &SinkCounters,
    ready: std::sync::mpsc::SyncSender<Startup>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Startup::Failed(format!(
                "cannot start the NATS client's runtime: {e}"
            )));
            return;
        }
    };
    rt.block_on(client_main(setup, shared, counters, ready));
}

fn connect_problem(e: &async_nats::ConnectError, setup: &Setup) -> (bool, String) {
    use async_nats::ConnectErrorKind as K;
    // A certificate the client cannot verify comes back as an I/O error from the handshake:
    // it is a setup problem, not an absent server.
    let text = e.to_string();
    let tls_failed = text.contains("certificate") || text.contains("TLS") || text.contains("tls");
    match e.kind() {
        K::Io if tls_failed => (
            true,
            format!(
                "TLS with the server failed ({e}); check the server's certificate{}",
                if setup.opts.ca.is_some() {
                    " and --nats-ca"
                } else {
                    ", or give its CA with --nats-ca"
                }
            ),
        ),
        K::Authentication | K::AuthorizationViolation => (
            true,
            format!(
                "the server refused the credentials ({e}); check the user:password or token in \
                 the URL{}",
                if setup.opts.creds.is_some() {
                    " and --nats-creds"
                } else {
                    ", or give --nats-creds"
                }
            ),
        ),
        K::Tls => (
            true,
            format!(
                "TLS with the server failed ({e}); check the server's certificate{}",
                if setup.opts.ca.is_some() {
                    " and --nats-ca"
                } else {
                    ", or give its CA with --nats-ca"
                }
            ),
        ),
        K::ServerParse => (true, format!("bad server address ({e})")),
        _ => (false, format!("cannot reach the server ({e})")),
    }
}

async fn client_main(
    setup: Setup,
    shared: &Shared,
    counters: &SinkCounters,
    ready: std::sync::mpsc::SyncSender<Startup>,
) {
    let urls = setup.servers.urls.clone();
    let client = match async_nats::connect_with_options(urls.clone(), connect_options(&setup)).await
    {
        Ok(c) => c,
        Err(e) => {
            let (is_fatal, why) = connect_problem(&e, &setup);
            if is_fatal || setup.opts.required {
                let extra = if is_fatal {
                    ""
                } else {
                    " (--nats-required: not starting without it)"
                };
                let _ = ready.send(Startup::Failed(format!("{why}{extra}")));
                return;
            }
            eprintln!(
                "nameflow: {}: {why}; records are buffered (up to --stream-buffer) and sent \
                 once it is up",
                setup.name
            );
            match async_nats::connect_with_options(
                urls,
                connect_options(&setup).retry_on_initial_connect(),
            )
            .await
            {
                Ok(c) => c,
                Err(e) => {
                    let _ = ready.send(Startup::Failed(format!("cannot start the client: {e}")));
                    return;
                }
            }
        }
    };
    let js = jetstream::ContextBuilder::new()
        .timeout(ACK_TIMEOUT)
        .build(client.clone());
    let mut stream_ready = false;
    if client.connection_state() == async_nats::connection::State::Connected {
        match ensure_stream(&js, &setup.opts, shared).await {
            Ok(()) => stream_ready = true,
            Err(why) if setup.opts.required => {
                let _ = ready.send(Startup::Failed(why));
                return;
            }
            Err(why) => eprintln!(
                "nameflow: {}: {why}; records are buffered and retried",
                setup.name
            ),
        }
    }
    let _ = ready.send(Startup::Ready);
    publish_loop(&setup, &js, stream_ready, shared, counters).await;
    // Acknowledged messages are stored; nothing else is owed to the server.
    drop(js);
    drop(client);
}

/// Finds the stream, or creates it with the template's subjects. An existing stream is used as
/// it is; a warning says when it does not take conn.log's subject.
async fn ensure_stream(
    js: &jetstream::Context,
    opts: &NatsOptions,
    shared: &Shared,
) -> Result<(), String> {
    let probe = shared.lock().subjects.first().cloned().unwrap_or_else(|| {
        opts.subject
            .replace("{path}", "conn")
            .replace("{sensor}", &sensor_token(&opts.sensor))
    });
    match js.get_stream(&opts.stream).await {
        Ok(mut s) => {
            let subjects = match s.info().await {
                Ok(info) => info.config.subjects.clone(),
                Err(_) => s.cached_info().config.subjects.clone(),
            };
            if !subjects.iter().any(|f| subject_matches(f, &probe)) {
                eprintln!(
                    "nameflow: warning: stream {} takes {:?}, not {probe}; its records will not \
                     be stored: add the subject to the stream or choose --nats-stream / \
                     --nats-subject",
                    opts.stream, subjects
                );
            }
            Ok(())
        }
        Err(e)
            if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            let subject = stream_subject(&opts.subject).unwrap_or_else(|| probe.clone());
            let cfg = jetstream::stream::Config {
                name: opts.stream.clone(),
                subjects: vec![subject],
                max_age: opts.max_age,
                duplicate_window: opts.dedup_window,
                ..Default::default()
            };
            js.create_stream(cfg)
                .await
                .map(|_| ())
                .map_err(|e| format!("cannot create stream {}: {e}", opts.stream))
        }
        Err(e) => Err(format!(
            "cannot look up stream {} ({e}); is JetStream enabled on the server (nats-server -js)?",
            opts.stream
        )),
    }
}

/// Takes messages in order: those to send again first, then the current chunk, then the
/// next chunk from the writer.
struct Source {
    retry: VecDeque<Msg>,
    chunk: Option<(Bytes, Vec<Meta>, usize, usize)>,
}

impl Source {
    fn next(&mut self, shared: &Shared) -> Option<Msg> {
        if let Some(m) = self.retry.pop_front() {
            return Some(m);
        }
        loop {
            if let Some((bytes, metas, i, off)) = &mut self.chunk {
                if let Some(meta) = metas.get(*i) {
                    let id_end = *off + usize::from(meta.id_len);
                    let end = id_end + meta.len as usize;
                    let m = Msg {
                        log: meta.log,
                        id: bytes.slice(*off..id_end),
                        payload: bytes.slice(id_end..end),
                    };
                    *i += 1;
                    *off = end;
                    return Some(m);
                }
                self.chunk = None;
            }
            let c = shared.lock().chunks.pop_front()?;
            self.chunk = Some((Bytes::from(c.bytes), c.msgs, 0, 0));
        }
    }

    fn is_empty(&self, shared: &Shared) -> bool {
        self.retry.is_empty()
            && self
                .chunk
                .as_ref()
                .is_none_or(|(_, metas, i, _)| *i >= metas.len())
            && shared.lock().chunks.is_empty()
    }

    /// Everything left, counted as dropped.
    fn give_up(
        &mut self,
        shared: &Shared,
        counters: &SinkCounters,
        extra: u64,
        extra_bytes: usize,
    ) {
        let mut lost = extra;
        let mut bytes = extra_bytes;
        while let Some(m) = self.next(shared) {
            lost += 1;
            bytes += m.cost();
        }
        shared.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        counters.dropped.fetch_add(lost, Ordering::Relaxed);
        counters.buffered.fetch_sub(lost, Ordering::Relaxed);
    }
}

async fn publish_loop(
    setup: &Setup,
    js: &jetstream::Context,
    mut stream_ready: bool,
    shared: &Shared,
    counters: &SinkCounters,
) {
    let mut src = Source {
        retry: VecDeque::new(),
        chunk: None,
    };
    let mut inflight: VecDeque<(Msg, jetstream::context::PublishAckFuture)> = VecDeque::new();
    let mut subjects: Vec<async_nats::Subject> = Vec::new();
    let mut backoff = MIN_BACKOFF;
    let mut pause_until = Instant::now();
    let mut failing = false;
    let far = Duration::from_secs(3600);
    loop {
        let closing = shared.lock().closing;
        let now = Instant::now();
        let left = closing.map_or(far, |d| d.saturating_duration_since(now));
        if closing.is_some() && left.is_zero() {
            let (n, b) = inflight
                .drain(..)
                .fold((0u64, 0usize), |(n, b), (m, _)| (n + 1, b + m.cost()));
            src.give_up(shared, counters, n, b);
            return;
        }
        if !stream_ready && now >= pause_until {
            match tokio::time::timeout(left, ensure_stream(js, &setup.opts, shared)).await {
                Ok(Ok(())) => {
                    stream_ready = true;
                    backoff = MIN_BACKOFF;
                }
                Ok(Err(_)) | Err(_) => {
                    pause_until = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            continue;
        }
        if stream_ready && now >= pause_until {
            while inflight.len() < WINDOW {
                let Some(m) = src.next(shared) else { break };
                let log = usize::from(m.log);
                if log >= subjects.len() {
                    subjects = shared
                        .lock()
                        .subjects
                        .iter()
                        .map(|s| async_nats::Subject::from(s.as_str()))
                        .collect();
                }
                let Some(subject) = subjects.get(log).cloned() else {
                    // A log without a subject cannot happen (add_log comes first); count it.
                    shared.queued_bytes.fetch_sub(m.cost(), Ordering::AcqRel);
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    counters.buffered.fetch_sub(1, Ordering::Relaxed);
                    continue;
                };
                let id = String::from_utf8_lossy(&m.id);
                let publish = jetstream::message::PublishMessage::build()
                    .payload(m.payload.clone())
                    .message_id(&*id);
                match tokio::time::timeout(left, js.send_publish(subject, publish)).await {
                    Ok(Ok(ack)) => inflight.push_back((m, ack)),
                    Ok(Err(e)) => {
                        src.retry.push_front(m);
                        note_failure(setup, &mut failing, &e.to_string());
                        pause_until = Instant::now() + backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        break;
                    }
                    Err(_) => {
                        src.retry.push_front(m);
                        break;
                    }
                }
            }
        }
        if let Some((m, ack)) = inflight.pop_front() {
            match tokio::time::timeout(left, ack.into_future()).await {
                Ok(Ok(_ack)) => {
                    // A duplicate ack means JetStream had it already: delivered all the same.
                    shared.queued_bytes.fetch_sub(m.cost(), Ordering::AcqRel);
                    counters.written.fetch_add(1, Ordering::Relaxed);
                    counters.buffered.fetch_sub(1, Ordering::Relaxed);
                    counters
                        .bytes
                        .fetch_add(m.payload.len() as u64, Ordering::Relaxed);
                    if failing {
                        failing = false;
                        eprintln!("nameflow: {}: publishing again", setup.name);
                    }
                    backoff = MIN_BACKOFF;
                }
                Ok(Err(e)) => {
                    note_failure(setup, &mut failing, &e.to_string());
                    if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound {
                        stream_ready = false;
                    }
                    src.retry.push_back(m);
                    let until = Instant::now() + backoff;
                    if until > pause_until {
                        pause_until = until;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
                Err(_) => {
                    // The flush deadline passed while waiting: the loop gives up next round.
                    src.retry.push_front(m);
                }
            }
            continue;
        }
        if closing.is_some() && src.is_empty(shared) {
            return;
        }
        let wait = if !stream_ready || Instant::now() < pause_until {
            pause_until.saturating_duration_since(Instant::now())
        } else {
            Duration::from_millis(100)
        };
        let _ = tokio::time::timeout(wait.min(left), shared.wake.notified()).await;
    }
}

fn note_failure(setup: &Setup, failing: &mut bool, why: &str) {
    if !*failing {
        *failing = true;
        eprintln!(
            "nameflow: {}: publish to stream {} failed ({why}); records are buffered and sent \
             again",
            setup.name, setup.opts.stream
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_parse_and_hide_secrets() {
        let s = NatsServers::parse("nats://127.0.0.1:4222,10.0.0.2:4223").unwrap();
        assert_eq!(s.urls, ["nats://127.0.0.1:4222", "nats://10.0.0.2:4223"]);
        assert_eq!(s.to_string(), "nats://127.0.0.1:4222,10.0.0.2:4223");
        let s = NatsServers::parse("nats://u:p%40ss@h:1").unwrap();
        assert_eq!(s.to_string(), "nats://u:***@h:1");
        assert_eq!(s.url_auth(), Some(("u".into(), Some("p@ss".into()))));
        let s = NatsServers::parse("tls://tok@h:1").unwrap();
        assert!(s.tls());
        assert_eq!(s.to_string(), "tls://***@h:1");
        assert_eq!(s.url_auth(), Some(("tok".into(), None)));
        assert_eq!(redact("nats://u:pw@h,x@h2:1"), "nats://***@h,***@h2:1");
        for bad in [
            "nats://",
            "nats://h",
            "nats://h:0",
            "nats://h:x",
            "nats://h:1,",
            "nats://:1",
        ] {
            assert!(NatsServers::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subjects() {
        assert!(check_subject("nameflow.logs.{path}").is_ok());
        assert!(check_subject("logs.{sensor}.{path}").is_ok());
        assert!(check_subject("{path}").is_err());
        assert!(check_subject("a..{path}").is_err());
        assert!(check_subject("a.*.{path}").is_err());
        assert!(check_subject("a.{host}").is_err());
        assert_eq!(
            stream_subject("nameflow.logs.{path}").as_deref(),
            Some("nameflow.logs.>")
        );
        assert_eq!(stream_subject("a.b").as_deref(), Some("a.b"));
        assert!(subject_matches("nameflow.logs.>", "nameflow.logs.conn"));
        assert!(subject_matches("nameflow.*.conn", "nameflow.logs.conn"));
        assert!(!subject_matches("nameflow.logs.>", "nameflow.logs"));
        assert!(!subject_matches("other.>", "nameflow.logs.conn"));
        assert_eq!(sensor_token("a.b c"), "a_b_c");
        assert!(check_stream("NAMEFLOW_LOGS").is_ok());
        assert!(check_stream("a.b").is_err());
    }

    #[test]
    fn keys_and_repeats() {
        assert_eq!(
            record_key(br#"{"_path":"dns","ts":1.5,"uid":"Cabc","x":1}"#),
            b"Cabc"
        );
        assert_eq!(record_key(br#"{"_path":"stats","ts":1.5,"w":1}"#), b"1.5");
        assert_eq!(
            record_key(br#"{"ts":"2020-01-01T00:00:00Z","w":1}"#),
            b"2020-01-01T00:00:00Z"
        );
        let mut r = Repeats::new();
        assert_eq!(r.next(0, b"C1"), 0);
        assert_eq!(r.next(0, b"C1"), 1);
        assert_eq!(r.next(1, b"C1"), 0);
        assert_eq!(r.next(0, b"C2"), 0);
        for i in 0..SEEN_GENERATION as u32 {
            r.next(2, &i.to_be_bytes());
        }
        // One generation later the key is still known.
        assert_eq!(r.next(0, b"C1"), 2);
    }
}

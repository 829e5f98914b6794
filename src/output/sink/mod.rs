//! Where encoded records go. Every sink sits behind one trait, gets each record as one
//! complete line (never a part of one), and keeps its own written/buffered/dropped counts.
//!
//! | spec | sink |
//! |---|---|
//! | `DIR` | [`dir`]: `DIR/<path>.log` per log, rotation into Zeek-style archives, gzip, reopen, an earlier run's files kept, whole records through a full disk |
//! | `tcp://HOST:PORT`, `unix:PATH` | [`stream`]: newline-delimited records over a stream socket, reconnect with backoff, bounded buffer |
//! | `nats://HOST:PORT[,HOST:PORT…]`, `tls://…` | [`nats`]: one Zeek JSON record per message into a JetStream stream, acks, dedup ids, bounded buffer |
//! | `-` | [`stdout`]: standard output |
//! | `null:` | [`stdout::NullSink`]: counts and discards (benchmarks) |

pub mod dir;
mod leftover;
pub mod nats;
pub mod stdout;
pub mod stream;

use super::schema::Schema;
use super::writer::OutputError;
use super::Encoding;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A sink as the user names it (`-o`, or `sinks` in the config file).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum SinkSpec {
    /// A directory of `<path>.log` files.
    Dir(PathBuf),
    /// Standard output.
    Stdout,
    /// A TCP collector, `HOST:PORT` (resolved at each connection attempt).
    Tcp(String),
    /// A Unix stream socket.
    Unix(PathBuf),
    /// Discards everything (counts it as written): for benchmarks.
    Null,
    /// NATS JetStream servers of one cluster.
    Nats(nats::NatsServers),
}

/// A sink spec that cannot be used, with what to write instead.
#[derive(Debug, thiserror::Error)]
#[error("bad output {spec:?}: {reason}; use DIR, -, tcp://HOST:PORT, unix:PATH, nats://HOST:PORT[,HOST:PORT...], tls://HOST:PORT or null:")]
pub struct SinkSpecError {
    pub spec: String,
    pub reason: &'static str,
}

impl std::str::FromStr for SinkSpec {
    type Err = SinkSpecError;

    fn from_str(s: &str) -> Result<SinkSpec, SinkSpecError> {
        let err = |reason| SinkSpecError {
            spec: s.to_owned(),
            reason,
        };
        if s.is_empty() {
            return Err(err("the output is empty"));
        }
        if s == "-" {
            return Ok(SinkSpec::Stdout);
        }
        if s == "null:" {
            return Ok(SinkSpec::Null);
        }
        if let Some(addr) = s.strip_prefix("tcp://") {
            let addr = addr.trim_end_matches('/');
            let Some((host, port)) = addr.rsplit_once(':') else {
                return Err(err("a TCP sink needs a port (tcp://HOST:PORT)"));
            };
            if host.is_empty() || host == "[]" {
                return Err(err("a TCP sink needs a host (tcp://HOST:PORT)"));
            }
            match port.parse::<u16>() {
                Ok(p) if p > 0 => {}
                _ => return Err(err("the TCP port must be a number from 1 to 65535")),
            }
            return Ok(SinkSpec::Tcp(addr.to_owned()));
        }
        if s.starts_with("nats://") || s.starts_with("tls://") {
            return nats::NatsServers::parse(s)
                .map(SinkSpec::Nats)
                .map_err(|reason| SinkSpecError {
                    spec: nats::redact(s),
                    reason,
                });
        }
        if let Some(path) = s.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(err("a Unix socket sink needs a path (unix:PATH)"));
            }
            return Ok(SinkSpec::Unix(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            if !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(err("unknown scheme"));
            }
        }
        Ok(SinkSpec::Dir(PathBuf::from(s)))
    }
}

impl std::fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkSpec::Dir(p) => write!(f, "{}", p.display()),
            SinkSpec::Stdout => f.write_str("-"),
            SinkSpec::Tcp(a) => write!(f, "tcp://{a}"),
            SinkSpec::Unix(p) => write!(f, "unix:{}", p.display()),
            SinkSpec::Null => f.write_str("null:"),
            SinkSpec::Nats(n) => write!(f, "{n}"),
        }
    }
}

/// A sink's counts, shared with whoever reports them (stats.log). Each count has one writer:
/// the writer thread publishes its local counts once per loop, a stream sink's sender thread
/// publishes what it delivered.
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// Records handed to the destination (a file, the kernel's socket buffer, stdout).
    pub written: AtomicU64,
    /// Records accepted but not yet handed over (a stream sink's buffer).
    pub buffered: AtomicU64,
    /// Records given up: buffer full while the peer was away or slow, undeliverable at exit,
    /// a closed stdout, or a file system that refused the write (full, over quota, I/O
    /// error) of a directory sink that drops.
    pub dropped: AtomicU64,
    /// Bytes handed to the destination.
    pub bytes: AtomicU64,
}

/// A snapshot of one sink's counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// The sink as the user named it.
    pub name: String,
    pub written: u64,
    pub buffered: u64,
    pub dropped: u64,
    pub bytes: u64,
}

impl SinkCounters {
    pub fn snapshot(&self, name: &str) -> SinkStats {
        SinkStats {
            name: name.to_owned(),
            written: self.written.load(Ordering::Relaxed),
            buffered: self.buffered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// What the writer thread does with a sink. All calls come from the writer thread; a sink
/// that needs blocking I/O (sockets, compression) does it on a thread of its own.
pub(crate) trait Sink: Send {
    /// The sink as the user named it.
    fn name(&self) -> &str;
    /// How records for this sink are encoded.
    fn encoding(&self) -> Encoding;
    /// Announces log number `log` (called once per log before any record).
    fn add_log(&mut self, log: usize, schema: &'static Schema) -> Result<(), OutputError>;
    /// One complete encoded record of log `log`, newline included.
    fn write(&mut self, log: usize, line: &[u8]) -> Result<(), OutputError>;
    /// Called once per writer loop: rotation, hand-over, publishing counts. `now` is the
    /// clock time up to which every queued record has been written (`None` while unknown).
    fn poll(&mut self, now: Option<u64>) -> Result<(), OutputError>;
    /// The queues were empty: push out whatever waits in buffers.
    fn idle(&mut self) -> Result<(), OutputError>;
    /// Reopen files (SIGHUP, after logrotate moved them).
    fn reopen(&mut self) -> Result<(), OutputError>;
    /// Everything has been written: flush, close, and wait for delivery until `deadline`.
    fn finish(&mut self, deadline: Instant) -> Result<(), OutputError>;
    /// The counts of this sink.
    fn counters(&self) -> &Arc<SinkCounters>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let p = |s: &str| s.parse::<SinkSpec>();
        assert_eq!(p("-").unwrap(), SinkSpec::Stdout);
        assert_eq!(p("logs").unwrap(), SinkSpec::Dir("logs".into()));
        assert_eq!(
            p("tcp://127.0.0.1:5000").unwrap(),
            SinkSpec::Tcp("127.0.0.1:5000".into())
        );
        assert_eq!(
            p("tcp://[::1]:5000").unwrap(),
            SinkSpec::Tcp("[::1]:5000".into())
        );
        assert_eq!(
            p("unix:/run/x.sock").unwrap(),
            SinkSpec::Unix("/run/x.sock".into())
        );
        assert_eq!(p("null:").unwrap(), SinkSpec::Null);
        for bad in [
            "",
            "tcp://host",
            "tcp://:80",
            "tcp://h:0",
            "tcp://h:x",
            "unix:",
            "udp://h:1",
            "nats://h",
            "nats://h:1,,h:2",
        ] {
            let e = p(bad).unwrap_err().to_string();
            assert!(e.contains("use DIR"), "{bad}: {e}");
        }
        assert_eq!(p("tcp://h:9").unwrap().to_string(), "tcp://h:9");
        assert_eq!(
            p("nats://u:pw@h:4222,h2:4222").unwrap().to_string(),
            "nats://u:***@h:4222,h2:4222"
        );
    }
}

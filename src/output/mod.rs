//! Logs out: records, their Zeek encodings, the sinks users ship logs with, and the writer
//! thread that ties them together.
//!
//! - [`schema`]: what a log is (a static [`Schema`] + a [`LogRecord`] that writes its columns
//!   to a [`FieldSink`]). Adding a log is one schema and one record type.
//! - [`json`] / [`tsv`]: the two Zeek encodings, both field sinks, byte-compatible with
//!   Zeek's writers.
//! - [`sink`]: directory (per-log files, rotation, archives, gzip, reopen), TCP and Unix
//!   stream sockets (reconnect, bounded buffer, drop counts), stdout, and a null sink.
//! - [`writer`]: the one writer thread. It drains every log's SPSC queues, encodes each record
//!   once per encoding into reused buffers, and hands the bytes to every sink.
//! - [`clock`]: the time that drives rotation: packet time offline, wall time live.

pub mod clock;
pub mod dns;
pub mod json;
pub mod namecache;
pub mod record;
pub mod schema;
pub mod sink;
pub mod tsv;
pub mod writer;
mod zeek;

pub use clock::{Clock, PacketClock};
pub use schema::{FieldSink, LogRecord, Schema};
pub use sink::{SinkSpec, SinkStats};
pub use writer::{
    OnWriteError, OutputConfig, OutputError, OutputStats, Rotation, SinkConfig, Writer,
    WriterReport,
};

/// Output format.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Zeek JSON: one object per line, unset fields omitted.
    Json,
    /// Zeek TSV with its `#` header lines and `#close` footer.
    Tsv,
}

/// How JSON writes `time` values (Zeek's `LogAscii::json_timestamps`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JsonTs {
    /// Seconds since the epoch as a number (`JSON::TS_EPOCH`, Zeek's default).
    #[default]
    Epoch,
    /// `"2011-12-16T21:35:33.493287Z"` (`JSON::TS_ISO8601`).
    Iso8601,
}

/// Everything that decides the bytes of a record: records are encoded once per distinct
/// encoding, whatever the number of sinks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Encoding {
    pub format: Format,
    pub json_ts: JsonTs,
    /// JSON objects start with `"_path":"<log>"` (stream sinks, which carry every log on
    /// one connection). TSV ignores it.
    pub path_key: bool,
}

impl Encoding {
    /// Appends one record, with its newline.
    #[inline]
    pub fn encode<R: LogRecord>(&self, rec: &R, out: &mut Vec<u8>) {
        match self.format {
            Format::Json => json::encode(rec, self.json_ts, self.path_key, out),
            Format::Tsv => tsv::encode(rec, out),
        }
    }

    /// Appends the lines that start a log file opened at `open_ts_ns` (TSV only).
    pub fn header(&self, schema: &Schema, open_ts_ns: u64, out: &mut Vec<u8>) {
        match self.format {
            Format::Json => json::header(schema, open_ts_ns, out),
            Format::Tsv => tsv::header(schema, open_ts_ns, out),
        }
    }

    /// Appends the lines that end a log file closed at `close_ts_ns` (TSV only).
    pub fn footer(&self, close_ts_ns: u64, out: &mut Vec<u8>) {
        if self.format == Format::Tsv {
            tsv::footer(close_ts_ns, out);
        }
    }
}

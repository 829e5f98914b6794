//! Records, their Zeek encodings, and the writer thread.
//!
//! INTERFACE CONTRACT (the engine depends on exactly this):
//! - `Format::{Json, Tsv}`; `encoder_for(Format) -> Box<dyn Encoder>` (one per log stream,
//!   buffers reused; nothing allocates per record).
//! - `Encoder::header(&mut self, path: &str, open_ts_ns, out: &mut Vec<u8>)`,
//!   `Encoder::conn(&mut self, &ConnRecord, out: &mut Vec<u8>)`,
//!   `Encoder::footer(&mut self, close_ts_ns, out: &mut Vec<u8>)`.

pub mod record;

use record::ConnRecord;

/// Output format.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    /// Zeek JSON: one object per line, unset fields omitted, `ts` as epoch seconds.
    Json,
    /// Zeek TSV with its `#` header lines and `#close` footer.
    Tsv,
}

/// Turns records into bytes of one format.
pub trait Encoder: Send {
    /// Lines written when a log file is opened (TSV: `#separator` ... `#types`).
    fn header(&mut self, path: &str, open_ts_ns: u64, out: &mut Vec<u8>);
    /// One `conn.log` record, with its trailing newline.
    fn conn(&mut self, rec: &ConnRecord, out: &mut Vec<u8>);
    /// Lines written when a log file is closed (TSV: `#close`).
    fn footer(&mut self, close_ts_ns: u64, out: &mut Vec<u8>);
}

pub mod json;
pub mod tsv;
mod zeek;
pub use zeek::encoder_for;

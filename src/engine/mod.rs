//! The per-core engine: dispatch (decode, pick the owner), workers (flow shards), the writer,
//! and the offline driver that wires them together for `nameflow read`.
pub mod dispatch;
pub mod offline;
pub mod spsc;
pub mod worker;
pub mod writer;

pub use offline::{run_read, ReadConfig, ReadError, ReadReport};

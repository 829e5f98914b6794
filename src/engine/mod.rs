//! The per-core engine: dispatch (decode, pick the owner), workers (flow shards), and the
//! offline driver that wires them together for `nameflow read`.
pub mod affinity;
pub mod dispatch;
pub mod live;
pub mod metrics;
pub mod offline;
pub mod stats;
pub mod worker;

pub use offline::{run_read, ReadConfig, ReadError, ReadReport};

//! The per-core engine: dispatch (decode, pick the owner), workers (flow shards), the writer.
pub mod spsc;

//! Shared types: what several layers hand each other. The bottom of the module tree: nothing
//! here imports any other module of the crate (see `docs/architecture.md`, "Layers").
//!
//! - [`record`]: the conn.log record and its field types (uid, history, service, state).
//! - [`dns`]: the dns.log record.
//! - [`name`]: host names and their sources, as evidence and records carry them.
//! - [`context`]: one end's workload context as a record carries it.
//! - [`key`]: the parts of a connection key that records carry (VLAN ids).
//! - [`spsc`]: the bounded single-producer single-consumer queue every cross-thread hand-off
//!   uses, with its drop counter.

pub mod context;
pub mod dns;
pub mod key;
pub mod name;
pub mod record;
pub mod spsc;

//! nameflow: a network sensor that turns packets into Zeek-compatible connection logs.
//!
//! The crate is organised as the design brief describes (see `docs/architecture.md`):
//! `capture` yields frames, `decode` turns a frame into typed views, `engine` picks the owner
//! worker of each packet and runs the per-core loops, `flow` keeps Zeek's connection semantics,
//! and `output` encodes records and writes them to sinks.
#![deny(unsafe_code)]

pub mod capture;
pub mod config;
pub mod context;
pub mod decode;
pub mod engine;
pub mod flow;
pub mod names;
pub mod output;
pub mod synth;
pub mod types;

//! Connection tracking with Zeek's `conn.log` semantics, one shard per worker.
//!
//! A [`Shard`] owns the flows whose [`key::FlowKey`] hashes to its worker. It is fed
//! [`summary::PacketSummary`] values in packet-time order, expires flows by packet time, and
//! hands finished [`ConnRecord`]s to a caller-supplied sink. It never allocates per packet in
//! the steady state: the table is sized at start-up with a hard cap on flows.
//!
//! INTERFACE CONTRACT (the engine depends on exactly this):
//! - `Shard::new(&FlowConfig)`
//! - `Shard::process(&mut self, &PacketSummary, &mut impl FnMut(ConnRecord))`
//! - `Shard::advance(&mut self, now_ns, &mut impl FnMut(ConnRecord))`: expire idle flows.
//! - `Shard::flush(&mut self, &mut impl FnMut(ConnRecord))`: end of input, emit every flow.
//! - `Shard::counters(&self) -> FlowCounters`
//! - `uid::conn_uid(seed, &FlowKey, start_ts_ns) -> Uid` is also what the engine uses to name
//!   a tunnel's outer connection in `tunnel_parents`.

mod cold;
pub mod community_id;
pub mod expect;
pub mod key;
pub mod local;
pub mod service;
pub mod summary;

mod conn;
mod ports;
mod table;
mod tcp;
#[cfg(test)]
mod tests;
mod uid;
pub use conn::Conn;
pub use local::LocalNets;
pub use ports::ServerPorts;
pub use table::Shard;
pub use uid::conn_uid;

use crate::types::record::ConnRecord;

/// Timeouts and bounds; defaults are Zeek's.
#[derive(Clone, Debug)]
pub struct FlowConfig {
    /// `tcp_inactivity_timeout` (5 min).
    pub tcp_inactivity_ns: u64,
    /// `udp_inactivity_timeout` (1 min).
    pub udp_inactivity_ns: u64,
    /// `icmp_inactivity_timeout` (1 min).
    pub icmp_inactivity_ns: u64,
    /// `unknown_ip_inactivity_timeout` (1 min).
    pub other_inactivity_ns: u64,
    /// `tcp_close_delay` (5 s): how long a closed TCP connection lingers.
    pub tcp_close_delay_ns: u64,
    /// `tcp_reset_delay` (5 s).
    pub tcp_reset_delay_ns: u64,
    /// `tcp_attempt_delay` (5 s).
    pub tcp_attempt_delay_ns: u64,
    /// `tcp_partial_close_delay` (3 s).
    pub tcp_partial_close_delay_ns: u64,
    /// Hard cap on flows in one shard; the oldest flow is evicted (and logged) beyond it.
    pub max_flows: usize,
    /// Networks counted as local for `local_orig`/`local_resp`.
    pub local_nets: LocalNets,
    /// Seed mixed into uids so that different sensors give different uids.
    pub uid_seed: u64,
    /// Community ID seed (`--community-id-seed`, Zeek's `CommunityID::seed`, Suricata's
    /// `community-id-seed`): hashed first, so sites that share a seed share ids.
    pub community_id_seed: u16,
    /// Zeek's `likely_server_ports`, for the role guess of a connection that does not open
    /// with a plain SYN.
    pub server_ports: ServerPorts,
}

impl Default for FlowConfig {
    fn default() -> Self {
        const S: u64 = 1_000_000_000;
        FlowConfig {
            tcp_inactivity_ns: 300 * S,
            udp_inactivity_ns: 60 * S,
            icmp_inactivity_ns: 60 * S,
            other_inactivity_ns: 60 * S,
            tcp_close_delay_ns: 5 * S,
            tcp_reset_delay_ns: 5 * S,
            tcp_attempt_delay_ns: 5 * S,
            tcp_partial_close_delay_ns: 3 * S,
            max_flows: 1 << 20,
            local_nets: LocalNets::zeek_default(),
            uid_seed: 0,
            community_id_seed: 0,
            server_ports: ServerPorts::ZeekDefault,
        }
    }
}

/// Per-shard counters (plain integers: one shard per core).
#[derive(Clone, Copy, Default, Debug)]
pub struct FlowCounters {
    pub packets: u64,
    pub flows_created: u64,
    pub flows_expired: u64,
    pub flows_evicted: u64,
    pub bad_checksum: u64,
    pub active: u64,
}

/// The sink a shard writes finished records to.
pub trait RecordSink: FnMut(ConnRecord) {}
impl<F: FnMut(ConnRecord)> RecordSink for F {}

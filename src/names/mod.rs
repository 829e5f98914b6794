//! Names: which host name each address had when a connection started.
//!
//! - [`evidence`]: what proves a name, parsed at dispatch from the full payload (DNS over UDP
//!   and TCP, mDNS, LLMNR, TLS ClientHello SNI, HTTP Host, DHCP host name) into fixed-size
//!   `Copy` [`Evidence`] values; the wire views are in `crate::decode` (`dns`, `tls`, `http`,
//!   `dhcp`, `quic`), the one parser of each that service detection, evidence and dns.log use.
//! - [`hello`], [`reasm`]: ClientHellos that span packets (TLS over TCP segments, QUIC
//!   Initials), reassembled in a bounded per-dispatcher table.
//! - [`cache`]: one worker's replica: a bounded, LRU-evicted table of addresses, each with a
//!   short history of names in packet-time order, so a lookup answers "as of" an instant.
//! - [`bucket`]: the token bucket that bounds how fast one worker replicates.
//! - [`mesh`]: the replication node each worker runs: insert evidence, push new or changed
//!   mappings to every other worker over bounded SPSC queues (no manager, no central copy),
//!   drain what the others send, and name a finished connection's two ends.
//! - [`snapshot`]: the replica as an `rkyv` file for a warm restart, validated on load.
//!
//! Nothing here allocates per packet in the steady state: names are inline buffers, tables
//! are bounded and sized at start-up or grow up to their bound, queues are bounded.

pub mod bucket;
pub mod cache;
pub mod dnslog;
pub mod evidence;
pub mod hello;
pub mod mesh;
pub mod reasm;
pub mod snapshot;
pub mod store;

pub use cache::{Replica, ReplicaStats};
pub use evidence::{EvidenceCounters, EvidenceParser};
pub use mesh::{NameNode, NodeCounters, NodeLinks};

pub use crate::types::name::{Name, NameSource, NAME_CAP};

/// DNS names are read straight into the inline [`Name`].
impl crate::decode::dns::NameBuf for Name {
    fn clear(&mut self) {
        Name::clear(self);
    }

    fn is_empty(&self) -> bool {
        Name::is_empty(self)
    }

    fn push(&mut self, b: u8, lower: bool) -> bool {
        if lower {
            self.push_byte(b)
        } else {
            self.push_raw(b)
        }
    }
}
use std::net::IpAddr;

/// One proven mapping, as it crosses from the dispatcher to the owner and from the owner to
/// every other worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The address that has the name.
    pub addr: IpAddr,
    pub name: Name,
    pub source: NameSource,
    /// Time of the packet that proved it.
    pub ts_ns: u64,
    /// TTL in seconds as the evidence gave it (0 when it gives none: SNI, HTTP).
    pub ttl_s: u32,
    /// For DNS, the client that asked (the answer's destination); for SNI and HTTP the client
    /// that connected. `None` for mDNS, LLMNR and DHCP.
    pub client: Option<IpAddr>,
    /// The dispatcher's clock when it read the frame that carried it: the largest packet time
    /// seen so far (equal to `ts_ns` unless the capture's timestamps go backwards). Lookups
    /// count evidence by this clock, which grows with the position in the capture, so that
    /// what a lookup sees is a prefix of the capture whatever the number of workers.
    pub clk_ns: u64,
    /// For a name the connection itself carried (TLS SNI, HTTP Host), that connection: the
    /// owner remembers it as the connection's own name (see [`mesh::OwnNames`]). `None` for
    /// every other source.
    pub own: Option<OwnConn>,
}

/// The connection that carried its own server's name: with the evidence's `client` and `addr`
/// (the server), its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OwnConn {
    pub client_port: u16,
    pub server_port: u16,
    /// 6 (TLS, HTTP) or 17 (QUIC).
    pub ip_proto: u8,
}

/// Settings, validated.
#[derive(Clone, Debug)]
pub struct NamesConfig {
    /// Shortest lifetime of a mapping whatever its TTL.
    pub ttl_floor_s: u32,
    /// Longest lifetime of a mapping whatever its TTL.
    pub ttl_cap_s: u32,
    /// Addresses one replica holds at most; the least recently used is evicted beyond it.
    pub max_entries: usize,
    /// Replication messages one worker may send per second of packet time ...
    pub rate_per_s: u32,
    /// ... with bursts up to this many.
    pub burst: u32,
    /// How far after a connection's first packet evidence still counts (a DNS answer
    /// processed on another core slightly after the SYN).
    pub tolerance_ns: u64,
    /// Capacity of each worker → worker replication queue, in messages.
    pub queue_capacity: usize,
    /// How many names `orig_names`/`resp_names` hold at most (1 to
    /// [`crate::types::record::NAMES_MAX`]).
    pub names_max: usize,
}

impl Default for NamesConfig {
    fn default() -> NamesConfig {
        NamesConfig {
            ttl_floor_s: 3600,
            ttl_cap_s: 86_400,
            max_entries: 1 << 20,
            rate_per_s: 20_000,
            burst: 40_000,
            tolerance_ns: 500_000_000,
            queue_capacity: 4096,
            names_max: crate::types::record::NAMES_MAX,
        }
    }
}

impl NamesConfig {
    /// The lifetime of a mapping with this TTL.
    pub fn lifetime_ns(&self, ttl_s: u32) -> u64 {
        u64::from(ttl_s.clamp(self.ttl_floor_s, self.ttl_cap_s.max(self.ttl_floor_s)))
            * 1_000_000_000
    }
}

/// One worker's name counters and replica size.
#[derive(Clone, Copy, Default, Debug)]
pub struct NamesReport {
    pub node: NodeCounters,
    pub replica: ReplicaStats,
    /// Offline records named before every other worker had caught up, because the queue of
    /// records waiting for them was full (their names may then depend on thread timing).
    pub named_early: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lower_case_without_trailing_dot_and_bounded() {
        assert_eq!(
            Name::new(b"WWW.Example.COM.").as_bytes(),
            b"www.example.com"
        );
        let long = vec![b'a'; 400];
        assert_eq!(Name::new(&long).len(), NAME_CAP);
    }

    #[test]
    fn lifetime_is_clamped() {
        let c = NamesConfig {
            ttl_floor_s: 60,
            ttl_cap_s: 3600,
            ..NamesConfig::default()
        };
        assert_eq!(c.lifetime_ns(0), 60_000_000_000);
        assert_eq!(c.lifetime_ns(100), 100_000_000_000);
        assert_eq!(c.lifetime_ns(1 << 30), 3_600_000_000_000);
        for (i, s) in NameSource::ALL.iter().enumerate() {
            assert_eq!(NameSource::from_u8(i as u8), Some(*s));
        }
    }
}

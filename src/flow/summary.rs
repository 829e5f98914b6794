//! The compact, fixed-size description of one packet that crosses from the receiving worker
//! to the owner worker. It holds everything flow tracking and service detection need, and
//! nothing that points into the capture buffer, so the buffer can be recycled at once.

use crate::decode::{Packet, TunnelKind, L4};
use crate::flow::key::Vlans;
use crate::types::record::{Uid, MAX_TUNNEL_PARENTS};
use std::net::IpAddr;

/// How many leading payload bytes travel with a summary (service detection needs no more).
pub const SNIPPET_LEN: usize = 160;

/// One packet, as the owner worker sees it.
#[derive(Clone, Copy, Debug)]
pub struct PacketSummary {
    /// Packet time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ip_proto: u8,
    pub l4: L4,
    /// IP-level length (Zeek's `ip_bytes` contribution).
    pub ip_len: u32,
    /// Transport payload length according to the headers.
    pub payload_len: u32,
    /// False when checksum validation was on and failed.
    pub checksum_ok: bool,
    /// The VLAN ids that are part of the connection's key: the frame's own under
    /// `--conn-key vlan`, [`Vlans::NONE`] with the default key (the dispatcher decides).
    pub vlans: Vlans,
    /// Set when this packet carries a tunnel (the outer UDP of VXLAN, Geneve, Teredo ...).
    pub carries: Option<TunnelKind>,
    /// Uids of the encapsulating connections (Zeek's `tunnel_parents`).
    pub parents: [Option<Uid>; MAX_TUNNEL_PARENTS],
    /// How many bytes of `snippet` are valid.
    pub snippet_len: u16,
    /// The first captured bytes of the transport payload.
    pub snippet: [u8; SNIPPET_LEN],
    /// The TCP segment's options were cut by the capture ([`Packet::header_cut`]): it opens a
    /// connection but is not analysed.
    pub header_cut: bool,
}

impl PacketSummary {
    /// Copies what the owner needs out of a decoded packet; `vlans` are the ids its key holds.
    pub fn from_packet(
        p: &Packet<'_>,
        ts_ns: u64,
        vlans: Vlans,
        parents: [Option<Uid>; MAX_TUNNEL_PARENTS],
    ) -> PacketSummary {
        let n = p.payload.len().min(SNIPPET_LEN);
        let mut snippet = [0u8; SNIPPET_LEN];
        snippet[..n].copy_from_slice(&p.payload[..n]);
        PacketSummary {
            ts_ns,
            src: p.src,
            dst: p.dst,
            ip_proto: p.ip_proto,
            l4: p.l4,
            ip_len: p.ip_len,
            payload_len: p.payload_len,
            checksum_ok: p.checksum_ok,
            vlans,
            carries: p.carries,
            parents,
            snippet_len: n as u16,
            snippet,
            header_cut: p.header_cut,
        }
    }

    /// The captured leading payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.snippet[..self.snippet_len as usize]
    }
}

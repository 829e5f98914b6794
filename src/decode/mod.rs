//! Zero-copy wire views: from a captured frame to the IP packet(s) inside it.
//!
//! `decode` knows nothing about where bytes come from (pcap, AF_XDP) nor about flows.
//! A frame can hold more than one packet that matters to flow tracking: a VXLAN frame is both
//! an outer UDP packet (its own connection, service `vxlan`) and the inner packet, whose record
//! lists the outer connection in `tunnel_parents`. [`Decoder::decode`] therefore hands every
//! such layer to a visitor, outermost first.
//!
//! INTERFACE CONTRACT (the engine depends on exactly this):
//! - `Decoder::new(DecodeConfig)`, `Decoder::decode(link, ts_ns, frame, visitor)`,
//!   `Decoder::counters()`.
//! - The visitor receives `&Packet`; `Packet::encap` lists the tunnel layers above it,
//!   outermost first (empty for a plain packet).
//! - Nothing here allocates per packet in the steady state; fragment reassembly uses buffers
//!   sized at start-up with a hard bound on memory and on the number of datagrams in flight.

use std::net::IpAddr;

/// A pcap `LINKTYPE_*` value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LinkType(pub u32);

impl LinkType {
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    pub const FDDI: LinkType = LinkType(10);
    pub const RAW: LinkType = LinkType(101);
    pub const LOOP: LinkType = LinkType(108);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
    pub const LINUX_SLL2: LinkType = LinkType(276);
    pub const PPP: LinkType = LinkType(9);
    pub const PPP_HDLC: LinkType = LinkType(50);
    pub const IEEE802_11: LinkType = LinkType(105);
    pub const IEEE802_11_RADIOTAP: LinkType = LinkType(127);

    /// True when [`Decoder::decode`] understands this link type.
    pub fn is_supported(self) -> bool {
        matches!(
            self.0,
            0 | 1 | 9 | 10 | 12 | 14 | 50 | 101 | 105 | 108 | 113 | 127 | 228 | 229 | 276
        )
    }
}

/// Settings fixed at start-up.
#[derive(Clone, Copy, Debug)]
pub struct DecodeConfig {
    /// Validate IPv4 header, TCP, UDP and ICMP checksums like Zeek does without `-C`.
    pub verify_checksums: bool,
    /// Maximum number of IP datagrams being reassembled at once.
    pub max_frag_datagrams: usize,
    /// Maximum bytes held by fragment reassembly in total.
    pub max_frag_bytes: usize,
    /// Fragments older than this (packet time, nanoseconds) are discarded.
    pub frag_timeout_ns: u64,
    /// How many tunnel layers are decoded before giving up (Zeek's `Tunnel::max_depth`, 2).
    pub max_tunnel_depth: usize,
    /// Connections are keyed by their frames' 802.1Q ids as well (`--conn-key vlan`). The
    /// decoder itself ignores this (it always reports the ids in [`Packet::vlan`]); it rides
    /// here because every engine builds its dispatchers from this configuration, and the
    /// dispatcher is what puts the ids into the key.
    pub vlan_key: bool,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig {
            verify_checksums: true,
            max_frag_datagrams: 4096,
            max_frag_bytes: 16 << 20,
            frag_timeout_ns: 60_000_000_000,
            max_tunnel_depth: 2,
            vlan_key: false,
        }
    }
}

/// The transport header of a packet, with the fields flow tracking needs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum L4 {
    Tcp {
        src_port: u16,
        dst_port: u16,
        seq: u32,
        ack: u32,
        /// The TCP flag byte (FIN=0x01 SYN=0x02 RST=0x04 PSH=0x08 ACK=0x10 URG=0x20 ...).
        flags: u8,
        window: u16,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    Icmp {
        /// True for ICMPv6.
        v6: bool,
        icmp_type: u8,
        code: u8,
    },
    /// Any other IP protocol (the packet still counts for Zeek's `unknown_transport`).
    Other,
}

/// Kinds of encapsulation Zeek reports in tunnel.log.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TunnelKind {
    /// IPv4/IPv6 directly inside IPv4/IPv6 (IP-in-IP, 6in4, 4in6).
    Ip,
    Gre,
    Vxlan,
    Geneve,
    Teredo,
    Ayiya,
    Gtpv1,
    /// GRE carried in UDP (port 4754).
    GreUdp,
}

/// One encapsulating layer above a packet: the outer endpoints.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Encap {
    pub kind: TunnelKind,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Outer IP protocol (17 for UDP-based tunnels, 47 for GRE, 4/41 for IP-in-IP).
    pub ip_proto: u8,
    /// Outer UDP ports (0 for non-UDP tunnels).
    pub src_port: u16,
    pub dst_port: u16,
}

/// Maximum tunnel nesting handed to the visitor.
pub const MAX_ENCAP: usize = 3;

/// One IP packet found in a frame.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number of the transport (after IPv6 extension headers).
    pub ip_proto: u8,
    /// IP-level length as Zeek counts `ip_bytes`: the IPv4 total length, or for IPv6 the
    /// payload length plus the 40-byte fixed header (of the reassembled datagram when it was
    /// fragmented).
    pub ip_len: u32,
    pub l4: L4,
    /// Transport payload length according to the headers (may exceed the captured bytes).
    pub payload_len: u32,
    /// The captured part of the transport payload.
    pub payload: &'a [u8],
    /// False when checksum validation was on and a checksum did not match.
    pub checksum_ok: bool,
    /// Tunnel layers above this packet, outermost first.
    pub encap: &'a [Encap],
    /// Set when this packet's payload was recognised as a tunnel and the inner packet follows
    /// (the outer UDP connection of a VXLAN frame then gets service `vxlan`, as in Zeek).
    pub carries: Option<TunnelKind>,
    /// Outer 802.1Q VLAN id, when present: the tags of the frame this packet was found in.
    /// The inner packet of an IP-in-IP or GRE tunnel has none (it is a new packet, as in
    /// Zeek); the inner packet of a tunnelled Ethernet frame (VXLAN, Geneve, ERSPAN) has that
    /// frame's own.
    pub vlan: Option<u16>,
    /// Inner 802.1Q VLAN id (QinQ), when present.
    pub inner_vlan: Option<u16>,
    /// Link-layer source and destination addresses, when the link has them.
    pub l2_src: Option<[u8; 6]>,
    pub l2_dst: Option<[u8; 6]>,
    /// The capture cut this TCP segment inside its options: the fixed header (ports, numbers,
    /// flags) is whole, nothing after it is. Zeek builds the connection from such a segment but
    /// its TCP analyzer stops at the `truncated_header` weird, so the segment is not counted.
    pub header_cut: bool,
}

/// Why a frame gave no packet. Copy, so counting it never allocates.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DecodeError {
    /// Frame shorter than a header it claims to hold.
    Truncated,
    /// A header field is invalid (bad version, bad header length, ...).
    Malformed,
    /// Not IP (ARP, LLDP, ...): not an error, just nothing to track.
    NotIp,
    /// Link type not supported.
    UnsupportedLink,
    /// A fragment was stored; the datagram is not complete yet.
    FragmentHeld,
    /// Fragment dropped: reassembly bounds reached or overlapping/invalid fragment.
    FragmentDropped,
    /// Tunnel nesting deeper than `max_tunnel_depth`.
    TunnelTooDeep,
    /// An IP packet whose next header is 59 ("no next header", a Teredo bubble's inner
    /// packet): nothing to track, and Zeek makes no connection of it.
    NoNextHeader,
    /// Bad IPv4 header checksum (only when validating).
    BadIpChecksum,
}

/// Per-decoder counters, plain integers (one decoder per core).
#[derive(Clone, Copy, Default, Debug)]
pub struct DecodeCounters {
    /// Frames offered to [`Decoder::decode`].
    pub frames: u64,
    /// Packets handed to the visitor (a tunnelled frame gives more than one).
    pub packets: u64,
    /// Decodes that ended at a header cut short (including inner packets of UDP tunnels).
    pub truncated: u64,
    /// Decodes that ended at an invalid header field.
    pub malformed: u64,
    /// Frames that carried no IP (ARP, LLDP, PPP negotiation, ...).
    pub not_ip: u64,
    pub unsupported_link: u64,
    /// IP fragments seen (each one, whatever became of it).
    pub fragments: u64,
    /// Datagrams completed by reassembly.
    pub reassembled: u64,
    /// Fragments discarded: invalid, overlapping, truncated, or held by a datagram that was
    /// evicted by a bound or expired.
    pub fragments_dropped: u64,
    /// Tunnels not followed because `max_tunnel_depth` was reached.
    pub tunnel_too_deep: u64,
    /// Bad IPv4 header checksums (frame dropped) plus visited packets whose transport checksum
    /// failed (`checksum_ok == false`).
    pub bad_checksum: u64,
    /// IP packets with no next header (59), which make no connection.
    pub no_next_header: u64,
}

// Codemap: `wire` holds the typed header views and checksums, `link` the link layers (Ethernet,
// SLL, FDDI, PPP, 802.11 with radiotap and A-MSDU) and the ethertype dispatch (VLAN, MPLS,
// PPPoE, FabricPath, PBB, VN-Tag), `frag` reassembly, `tunnel` the tunnel
// headers, and `imp` the decoder that ties them together.
mod cursor;
pub mod dhcp;
pub mod dns;
mod frag;
pub mod http;
mod imp;
mod link;
pub mod quic;
pub mod tls;
mod tunnel;
mod wire;
pub use imp::Decoder;

#[cfg(test)]
mod tests;

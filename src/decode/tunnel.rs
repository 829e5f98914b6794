//! Tunnel headers: what each encapsulation wraps, with the validity checks Zeek applies.
//!
//! These functions only parse; the decoder decides about depth, visiting and encap stacks.

use super::link::{self, L2Info, L3};
use super::wire::{be16, get16};
use super::{DecodeError, TunnelKind};

/// What a tunnel header wraps.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Inner<'a> {
    /// An Ethernet frame (VXLAN, Geneve, GRE transparent bridging, ERSPAN).
    Ethernet(&'a [u8]),
    /// An IP packet.
    Ip(L3<'a>),
    /// Bytes named by an ethertype that may still need peeling (MPLS, VLAN tags).
    EtherType(u16, &'a [u8]),
    /// An 802.11 frame without radiotap (Aruba's GRE).
    Ieee80211(&'a [u8]),
}

impl<'a> Inner<'a> {
    /// Resolves the inner link layer down to the IP packet.
    pub fn l3(self, l2: &mut L2Info) -> Result<L3<'a>, DecodeError> {
        match self {
            Inner::Ethernet(b) => link::ethernet(b, l2),
            Inner::Ip(l3) => Ok(l3),
            Inner::EtherType(ty, b) => link::ether_payload(ty, b, l2),
            Inner::Ieee80211(b) => link::ieee80211(b, l2),
        }
    }
}

pub(crate) const VXLAN_PORT: u16 = 4789;
const GENEVE_PORT: u16 = 6081;
const TEREDO_PORT: u16 = 3544;
const GRE_UDP_PORT: u16 = 4754;
const AYIYA_PORT: u16 = 5072;
const GTPV1U_PORT: u16 = 2152;

/// The UDP tunnel a port pair announces. Zeek dispatches on the responder's port; the decoder
/// does not know roles, so either port counts, the destination first.
pub(crate) fn udp_kind(src_port: u16, dst_port: u16) -> Option<TunnelKind> {
    fn by_port(p: u16) -> Option<TunnelKind> {
        match p {
            VXLAN_PORT => Some(TunnelKind::Vxlan),
            GENEVE_PORT => Some(TunnelKind::Geneve),
            TEREDO_PORT => Some(TunnelKind::Teredo),
            GRE_UDP_PORT => Some(TunnelKind::GreUdp),
            AYIYA_PORT => Some(TunnelKind::Ayiya),
            GTPV1U_PORT => Some(TunnelKind::Gtpv1),
            _ => None,
        }
    }
    by_port(dst_port).or_else(|| by_port(src_port))
}

/// Zeek's Teredo protocol detection (`TeredoAnalyzer::DetectProtocol`), tried on a UDP
/// datagram whose ports name no tunnel (Zeek runs it when the responder port has no packet
/// analyzer): an IPv6 header whose source or destination lies in the Teredo prefix
/// 2001:0000::/32, or an authentication and/or origin-indication header followed by room for
/// an IPv6 header. Whether it is a valid Teredo packet is [`parse_udp`]'s to say.
pub(crate) fn teredo_detect(b: &[u8]) -> bool {
    const PREFIX: [u8; 4] = [0x20, 0x01, 0x00, 0x00];
    if b.len() < 40 {
        return false;
    }
    if b[0] >> 4 == 6 {
        return b[8..12] == PREFIX || b[24..28] == PREFIX;
    }
    if b[0] != 0 || b[1] > 1 {
        return false;
    }
    let mut rest = b;
    if rest[1] == 1 {
        // Authentication: id and authenticator of the announced lengths, a nonce and a
        // confirmation byte, then the origin indication must follow.
        let skip = 13 + usize::from(rest[2]) + usize::from(rest[3]);
        let Some(r) = rest.get(skip..) else {
            return false;
        };
        if r.len() < 40 || r[..2] != [0, 0] {
            return false;
        }
        rest = r;
    }
    // Origin indication (8 bytes), then an IPv6 header.
    rest.get(8..)
        .is_some_and(|ip| ip.len() >= 40 && ip[0] >> 4 == 6)
}

/// Parses the UDP payload of a tunnel of kind `kind`.
pub(crate) fn parse_udp(kind: TunnelKind, b: &[u8]) -> Result<Inner<'_>, DecodeError> {
    match kind {
        TunnelKind::Vxlan => vxlan(b),
        TunnelKind::Geneve => geneve(b),
        TunnelKind::Teredo => teredo(b),
        TunnelKind::GreUdp => gre(b),
        TunnelKind::Ayiya => ayiya(b),
        TunnelKind::Gtpv1 => gtpv1(b),
        TunnelKind::Ip | TunnelKind::Gre => Err(DecodeError::Malformed),
    }
}

/// VXLAN: flags (the I bit must be set), reserved, VNI, reserved; then Ethernet.
fn vxlan(b: &[u8]) -> Result<Inner<'_>, DecodeError> {
    let h = b.get(..8).ok_or(DecodeError::Truncated)?;
    if h[0] & 0x08 == 0 {
        return Err(DecodeError::Malformed);
    }
    let inner = &b[8..];
    if inner.is_empty() {
        return Err(DecodeError::Truncated);
    }
    Ok(Inner::Ethernet(inner))
}

/// Geneve: version 0, options counted in 4-byte words, then the protocol type names the
/// payload.
fn geneve(b: &[u8]) -> Result<Inner<'_>, DecodeError> {
    let h = b.get(..8).ok_or(DecodeError::Truncated)?;
    if h[0] >> 6 != 0 {
        return Err(DecodeError::Malformed);
    }
    let len = 8 + usize::from(h[0] & 0x3f) * 4;
    let inner = b.get(len..).ok_or(DecodeError::Truncated)?;
    if inner.is_empty() {
        return Err(DecodeError::Truncated);
    }
    by_ethertype(be16(h, 2), inner)
}

fn by_ethertype(ty: u16, inner: &[u8]) -> Result<Inner<'_>, DecodeError> {
    match ty {
        0x6558 => Ok(Inner::Ethernet(inner)),
        0x0800 => Ok(Inner::Ip(L3::V4(inner))),
        0x86dd => Ok(Inner::Ip(L3::V6(inner))),
        _ => Ok(Inner::EtherType(ty, inner)),
    }
}

/// Teredo: optional authentication then origin-indication headers, then an IPv6 packet whose
/// payload length must account for exactly the rest of the datagram (a bubble may be padded).
fn teredo(mut b: &[u8]) -> Result<Inner<'_>, DecodeError> {
    let mut seen_auth = false;
    let mut seen_origin = false;
    // At most one of each header may precede the packet, so three rounds always suffice.
    for _ in 0..3 {
        let tag = get16(b, 0).ok_or(DecodeError::Truncated)?;
        if tag == 0 {
            if seen_origin {
                return Err(DecodeError::Malformed);
            }
            seen_origin = true;
            b = b.get(8..).ok_or(DecodeError::Truncated)?;
        } else if tag == 1 {
            if seen_origin || seen_auth {
                return Err(DecodeError::Malformed);
            }
            seen_auth = true;
            let h = b.get(..4).ok_or(DecodeError::Truncated)?;
            let len = 4 + usize::from(h[2]) + usize::from(h[3]) + 8 + 1;
            b = b.get(len..).ok_or(DecodeError::Truncated)?;
        } else if tag >> 12 == 6 {
            if b.len() < 40 {
                return Err(DecodeError::Truncated);
            }
            let plen = usize::from(be16(b, 4));
            let next = b[6];
            let claimed = 40 + plen;
            if b.len() < claimed {
                return Err(DecodeError::Truncated);
            }
            if b.len() > claimed && !(next == 59 && plen == 0) {
                return Err(DecodeError::Malformed);
            }
            return Ok(Inner::Ip(L3::V6(b)));
        } else {
            return Err(DecodeError::Malformed);
        }
    }
    Err(DecodeError::Malformed)
}

/// AYIYA: identity and signature of announced lengths; only forwarding (op 1) of IPv4 or
/// IPv6 is decapsulated.
fn ayiya(b: &[u8]) -> Result<Inner<'_>, DecodeError> {
    let h = b.get(..8).ok_or(DecodeError::Truncated)?;
    let id_len = 1usize << (h[0] >> 4);
    let sig_len = usize::from(h[1] >> 4) * 4;
    if h[2] & 0x0f != 1 {
        return Err(DecodeError::Malformed);
    }
    let inner = b
        .get(8 + id_len + sig_len..)
        .ok_or(DecodeError::Truncated)?;
    match h[3] {
        4 => Ok(Inner::Ip(L3::V4(inner))),
        41 => Ok(Inner::Ip(L3::V6(inner))),
        _ => Err(DecodeError::NotIp),
    }
}

/// GTPv1-U: version 1, protocol type GTP, message G-PDU (255); the optional sequence/N-PDU/
/// extension word and any extension headers are skipped; the payload is IP.
fn gtpv1(b: &[u8]) -> Result<Inner<'_>, DecodeError> {
    let h = b.get(..8).ok_or(DecodeError::Truncated)?;
    if h[0] >> 5 != 1 || h[0] & 0x10 == 0 {
        return Err(DecodeError::Malformed);
    }
    if h[1] != 0xff {
        // Echo, error indication and other signalling carry no user packet.
        return Err(DecodeError::NotIp);
    }
    let mut off = 8;
    if h[0] & 0x07 != 0 {
        let opt = b.get(8..12).ok_or(DecodeError::Truncated)?;
        off = 12;
        let mut next_ext = if h[0] & 0x04 != 0 { opt[3] } else { 0 };
        // Each extension header is at least four bytes, so this loop ends with the data.
        while next_ext != 0 {
            let units = usize::from(*b.get(off).ok_or(DecodeError::Truncated)?);
            if units == 0 {
                return Err(DecodeError::Malformed);
            }
            let end = off + units * 4;
            next_ext = *b.get(end - 1).ok_or(DecodeError::Truncated)?;
            off = end;
        }
    }
    link::raw_ip(b.get(off..).ok_or(DecodeError::Truncated)?)
        .map(Inner::Ip)
        .map_err(|e| match e {
            DecodeError::Malformed => DecodeError::NotIp,
            e => e,
        })
}

/// GRE, versions 0 and 1 (enhanced GRE of PPTP), with Zeek's checks: no routing field, no
/// undefined flags, and for version 1 a PPP payload.
pub(crate) fn gre(b: &[u8]) -> Result<Inner<'_>, DecodeError> {
    let h = b.get(..4).ok_or(DecodeError::Truncated)?;
    let flags = be16(h, 0);
    let proto = be16(h, 2);
    let version = flags & 0x0007;
    if version > 1 || flags & 0x4000 != 0 || flags & 0x0078 != 0 {
        return Err(DecodeError::Malformed);
    }
    let mut len = 4;
    for bit in [0x8000u16, 0x2000, 0x1000, 0x0080] {
        if flags & bit != 0 {
            len += 4;
        }
    }
    let rest = b.get(len..).ok_or(DecodeError::Truncated)?;
    if version == 1 {
        if proto != 0x880b {
            return Err(DecodeError::Malformed);
        }
        return link::ppp(rest).map(Inner::Ip);
    }
    match proto {
        0x88be => {
            // ERSPAN type II has an 8-byte header, announced by the GRE sequence bit; type I
            // has none.
            let skip = if flags & 0x1000 != 0 { 8 } else { 0 };
            Ok(Inner::Ethernet(
                rest.get(skip..).ok_or(DecodeError::Truncated)?,
            ))
        }
        0x22eb => {
            // ERSPAN type III: 12 bytes, plus an 8-byte platform sub-header when its O bit (the
            // last bit of the header) is set.
            let e = rest.get(..12).ok_or(DecodeError::Truncated)?;
            let skip = if e[11] & 0x01 != 0 { 20 } else { 12 };
            Ok(Inner::Ethernet(
                rest.get(skip..).ok_or(DecodeError::Truncated)?,
            ))
        }
        // Aruba access points tunnel 802.11 frames to their controller in GRE under their
        // own protocol types (0x8200, 0x8210, ..., 0x9000); Zeek's GRE analyzer recognises
        // them by a bit test and hands the payload to its IEEE802_11 analyzer.
        p if is_aruba(p) => {
            if rest.is_empty() {
                return Err(DecodeError::Truncated);
            }
            Ok(Inner::Ieee80211(rest))
        }
        _ => by_ethertype(proto, rest),
    }
}

/// The GRE protocol types of Aruba's 802.11 tunnels, by Zeek's rule.
fn is_aruba(proto: u16) -> bool {
    (proto & 0x8200 == 0x8200 && proto & 0x0f == 0)
        || (proto & 0x8300 == 0x8300 && proto & 0x0f == 0 && proto <= 0x8370)
        || proto == 0x9000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teredo_detection_on_other_ports_follows_zeek() {
        // A bare IPv6 header whose source is a Teredo address.
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[8..12].copy_from_slice(&[0x20, 0x01, 0, 0]);
        assert!(teredo_detect(&v6));
        // ... or whose destination is.
        let mut dst = [0u8; 40];
        dst[0] = 0x60;
        dst[24..28].copy_from_slice(&[0x20, 0x01, 0, 0]);
        assert!(teredo_detect(&dst));
        // IPv6 between other addresses, and anything shorter than a header, is not Teredo.
        let mut plain = [0u8; 40];
        plain[0] = 0x60;
        assert!(!teredo_detect(&plain));
        assert!(!teredo_detect(&v6[..39]));
        // An origin indication, then IPv6.
        let mut origin = vec![0u8; 8];
        origin.extend_from_slice(&plain);
        assert!(teredo_detect(&origin));
        // Authentication (no id, no authenticator), then the origin indication, then IPv6.
        let mut auth = vec![0, 1, 0, 0];
        auth.extend_from_slice(&[0; 9]);
        auth.extend_from_slice(&origin);
        assert!(teredo_detect(&auth));
        // Authentication followed directly by IPv6 is not what Zeek looks for.
        let mut auth_v6 = vec![0, 1, 0, 0];
        auth_v6.extend_from_slice(&[0; 9]);
        auth_v6.extend_from_slice(&plain);
        assert!(!teredo_detect(&auth_v6));
        // A DNS query (id 0, as mDNS sends) is not mistaken for an origin indication.
        let mut dns = vec![0u8; 48];
        dns[5] = 1;
        assert!(!teredo_detect(&dns));
    }

    #[test]
    fn teredo_rejects_trailing_bytes_except_bubbles() {
        let mut ip6 = vec![0x60, 0, 0, 0, 0, 0, 59, 64];
        ip6.extend_from_slice(&[0u8; 32]);
        // A bubble (no next header, empty payload) may carry padding.
        let mut padded = ip6.clone();
        padded.extend_from_slice(&[0; 4]);
        assert!(teredo(&padded).is_ok());
        // Any other packet must end where its payload length says.
        padded[6] = 17;
        assert_eq!(teredo(&padded).unwrap_err(), DecodeError::Malformed);
        // An origin indication may precede it; a second one may not.
        let mut with_origin = vec![0, 0, 0, 0, 0, 0, 0, 0];
        with_origin.extend_from_slice(&ip6);
        assert!(teredo(&with_origin).is_ok());
        let mut twice = vec![0u8; 8];
        twice.extend_from_slice(&with_origin);
        assert_eq!(teredo(&twice).unwrap_err(), DecodeError::Malformed);
    }

    #[test]
    fn gre_refuses_routing_and_unknown_versions() {
        assert_eq!(
            gre(&[0x40, 0, 0x08, 0]).unwrap_err(),
            DecodeError::Malformed
        );
        assert_eq!(
            gre(&[0x00, 2, 0x08, 0]).unwrap_err(),
            DecodeError::Malformed
        );
        assert!(matches!(
            gre(&[0x00, 0, 0x08, 0, 0x45]),
            Ok(Inner::Ip(L3::V4(_)))
        ));
    }

    #[test]
    fn gtp_skips_extension_headers() {
        // Flags: version 1, PT, E; G-PDU; length; TEID; seq, N-PDU, next ext 0x85.
        let mut b = vec![0x34, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x85];
        // One extension header of one unit whose last byte says no more follow.
        b.extend_from_slice(&[1, 0xaa, 0xbb, 0]);
        b.push(0x45);
        assert!(matches!(gtpv1(&b), Ok(Inner::Ip(L3::V4(_)))));
    }
}

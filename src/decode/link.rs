//! Link layers: from a frame to the IP packet inside it.
//!
//! Every link type ends in the same ethertype dispatch ([`ether_payload`]), which peels VLAN
//! tags, MPLS label stacks, PPPoE sessions, Cisco FabricPath, 802.1ah PBB and VN-Tag in a
//! bounded loop. PPP (DLT 9 and 50) dispatches on its own protocol numbers, and 802.11 (DLT 105,
//! radiotap DLT 127, and Aruba's GRE) reaches the ethertype dispatch through LLC/SNAP; an
//! 802.11 A-MSDU carries several packets, which the decoder walks with [`Amsdu`].

use super::wire::{be16, get16};
use super::{DecodeError, LinkType};

/// The IP packet a link layer carried.
#[derive(Clone, Copy, Debug)]
pub(crate) enum L3<'a> {
    V4(&'a [u8]),
    V6(&'a [u8]),
    /// The subframes of an 802.11 A-MSDU (after the 802.11 header), each an LLC/SNAP packet;
    /// read them with [`Amsdu`].
    Amsdu(&'a [u8]),
}

/// What the link layer says about a packet besides its bytes.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct L2Info {
    pub vlan: Option<u16>,
    pub inner_vlan: Option<u16>,
    pub src: Option<[u8; 6]>,
    pub dst: Option<[u8; 6]>,
}

impl L2Info {
    /// The same link information without VLAN tags (for a packet found inside a tunnel).
    pub fn without_vlans(self) -> L2Info {
        L2Info {
            vlan: None,
            inner_vlan: None,
            ..self
        }
    }

    fn push_vlan(&mut self, id: u16) {
        // The first tag is the outer one; Zeek records the second as the inner one and
        // ignores any deeper tags.
        if self.vlan.is_none() {
            self.vlan = Some(id);
        } else if self.inner_vlan.is_none() {
            self.inner_vlan = Some(id);
        }
    }
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;
const ETH_QINQ_OLD: u16 = 0x9100;
const ETH_MPLS_UC: u16 = 0x8847;
const ETH_MPLS_MC: u16 = 0x8848;
const ETH_PPPOE_SESSION: u16 = 0x8864;
const ETH_FABRICPATH: u16 = 0x8903;
const ETH_PBB: u16 = 0x88e7;
const ETH_VNTAG: u16 = 0x8926;

/// How many link-layer headers (tags, labels, shims) one frame may stack. Real traffic uses a
/// handful; the bound only keeps crafted frames from costing more than their length.
const MAX_SHIMS: usize = 32;

/// Decodes the link layer of a frame of type `link`.
pub(crate) fn parse<'a>(
    link: LinkType,
    frame: &'a [u8],
    l2: &mut L2Info,
) -> Result<L3<'a>, DecodeError> {
    match link.0 {
        1 => ethernet(frame, l2),
        0 | 108 => null_loopback(link, frame),
        // 12 and 14 are raw IP on some BSDs; 101, 228 and 229 everywhere.
        12 | 14 | 101 | 228 | 229 => raw_ip(frame),
        113 => {
            // Linux cooked v1: packet type, ARPHRD, address length, 8 address bytes, protocol.
            let hdr = frame.get(..16).ok_or(DecodeError::Truncated)?;
            if be16(hdr, 4) == 6 {
                l2.src = Some(mac(&hdr[6..12]));
            }
            ether_payload(be16(hdr, 14), &frame[16..], l2)
        }
        276 => {
            // Linux cooked v2: protocol, reserved, ifindex, ARPHRD, packet type, address
            // length, 8 address bytes.
            let hdr = frame.get(..20).ok_or(DecodeError::Truncated)?;
            if hdr[11] == 6 {
                l2.src = Some(mac(&hdr[12..18]));
            }
            ether_payload(be16(hdr, 0), &frame[20..], l2)
        }
        // PPP (RFC 1661), with or without the HDLC-like address and control bytes (RFC 1662),
        // as Zeek's PPP analyzer reads LINKTYPE_PPP.
        9 => {
            let b = if frame.starts_with(&[0xff, 0x03]) {
                &frame[2..]
            } else {
                frame
            };
            ppp_protocol(b)
        }
        // PPP in HDLC-like framing (LINKTYPE_PPP_HDLC): address, control, protocol. Zeek's
        // PPPSerial analyzer takes the protocol at bytes 2..4 whatever the first two hold.
        50 => ppp_protocol(frame.get(2..).ok_or(DecodeError::Truncated)?),
        105 => ieee80211(frame, l2),
        127 => {
            // Radiotap: version, pad, little-endian header length, then the 802.11 frame.
            // Zeek's IEEE802_11_Radio analyzer needs bytes past the header.
            let h = frame.get(..4).ok_or(DecodeError::Truncated)?;
            let len = usize::from(u16::from_le_bytes([h[2], h[3]]));
            if len < 4 {
                return Err(DecodeError::Malformed);
            }
            if len >= frame.len() {
                return Err(DecodeError::Truncated);
            }
            ieee80211(&frame[len..], l2)
        }
        10 => {
            // FDDI: frame control, destination, source, then 802.2 LLC.
            let hdr = frame.get(..13).ok_or(DecodeError::Truncated)?;
            l2.dst = Some(mac(&hdr[1..7]));
            l2.src = Some(mac(&hdr[7..13]));
            llc(&frame[13..], l2)
        }
        _ => Err(DecodeError::UnsupportedLink),
    }
}

fn mac(b: &[u8]) -> [u8; 6] {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[..6]);
    m
}

/// Raw IP: the version nibble says which.
pub(crate) fn raw_ip(b: &[u8]) -> Result<L3<'_>, DecodeError> {
    match b.first().map(|v| v >> 4) {
        Some(4) => Ok(L3::V4(b)),
        Some(6) => Ok(L3::V6(b)),
        Some(_) => Err(DecodeError::Malformed),
        None => Err(DecodeError::Truncated),
    }
}

fn null_loopback(link: LinkType, frame: &[u8]) -> Result<L3<'_>, DecodeError> {
    let h = frame.get(..4).ok_or(DecodeError::Truncated)?;
    let family = if link == LinkType::LOOP {
        u32::from_be_bytes([h[0], h[1], h[2], h[3]])
    } else {
        // DLT_NULL stores the family in the byte order of the machine that captured, which we
        // do not know; families are small numbers, so the order that gives one wins.
        let le = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        if le <= 0xffff {
            le
        } else {
            u32::from_be_bytes([h[0], h[1], h[2], h[3]])
        }
    };
    let rest = &frame[4..];
    match family {
        2 => Ok(L3::V4(rest)),
        // AF_INET6 on NetBSD/OpenBSD (24), FreeBSD (28) and macOS (30).
        24 | 28 | 30 => Ok(L3::V6(rest)),
        _ => Err(DecodeError::NotIp),
    }
}

/// Ethernet II or 802.3, then whatever it carries.
pub(crate) fn ethernet<'a>(frame: &'a [u8], l2: &mut L2Info) -> Result<L3<'a>, DecodeError> {
    let hdr = frame.get(..14).ok_or(DecodeError::Truncated)?;
    l2.dst = Some(mac(&hdr[0..6]));
    l2.src = Some(mac(&hdr[6..12]));
    let ty = be16(hdr, 12);
    if ty <= 1500 {
        // An 802.3 length field: LLC (and maybe SNAP) follows.
        return llc(&frame[14..], l2);
    }
    if ty < 0x0600 {
        return Err(DecodeError::Malformed);
    }
    ether_payload(ty, &frame[14..], l2)
}

/// 802.2 LLC: only SNAP (AA AA 03) carries an ethertype; everything else is not IP.
fn llc<'a>(b: &'a [u8], l2: &mut L2Info) -> Result<L3<'a>, DecodeError> {
    let h = b.get(..3).ok_or(DecodeError::Truncated)?;
    if h != [0xaa, 0xaa, 0x03] {
        return Err(DecodeError::NotIp);
    }
    let snap = b.get(..8).ok_or(DecodeError::Truncated)?;
    ether_payload(be16(snap, 6), &b[8..], l2)
}

/// Dispatches on an ethertype, peeling shims until an IP packet (or something else) appears.
pub(crate) fn ether_payload<'a>(
    mut ty: u16,
    mut b: &'a [u8],
    l2: &mut L2Info,
) -> Result<L3<'a>, DecodeError> {
    for _ in 0..MAX_SHIMS {
        match ty {
            ETH_IPV4 => return Ok(L3::V4(b)),
            ETH_IPV6 => return Ok(L3::V6(b)),
            ETH_VLAN | ETH_QINQ | ETH_QINQ_OLD => {
                let tag = b.get(..4).ok_or(DecodeError::Truncated)?;
                l2.push_vlan(be16(tag, 0) & 0x0fff);
                ty = be16(tag, 2);
                b = &b[4..];
                if ty <= 1500 {
                    return llc(b, l2);
                }
            }
            ETH_MPLS_UC | ETH_MPLS_MC => return mpls(b),
            ETH_PPPOE_SESSION => {
                // Version/type, code, session id, length, then the PPP protocol.
                let h = b.get(..8).ok_or(DecodeError::Truncated)?;
                let rest = &b[8..];
                return match be16(h, 6) {
                    0x0021 => Ok(L3::V4(rest)),
                    0x0057 => Ok(L3::V6(rest)),
                    _ => Err(DecodeError::NotIp),
                };
            }
            ETH_FABRICPATH => {
                // The 16-byte FabricPath header began 12 bytes before the ethertype we just
                // read; 4 bytes of it (ethertype and FTAG/TTL) remain, then an inner Ethernet
                // frame starts.
                let inner = b.get(2..).ok_or(DecodeError::Truncated)?;
                let hdr = inner.get(..14).ok_or(DecodeError::Truncated)?;
                l2.dst = Some(mac(&hdr[0..6]));
                l2.src = Some(mac(&hdr[6..12]));
                ty = be16(hdr, 12);
                b = &inner[14..];
                if ty <= 1500 {
                    return llc(b, l2);
                }
            }
            ETH_PBB => {
                // 802.1ah provider backbone bridging, after the backbone Ethernet header: the
                // 4-byte I-TAG, then the customer's Ethernet header, whose addresses are the
                // packet's own (as Zeek's PBB analyzer sets them).
                let h = b.get(..18).ok_or(DecodeError::Truncated)?;
                l2.dst = Some(mac(&h[4..10]));
                l2.src = Some(mac(&h[10..16]));
                ty = be16(h, 16);
                b = &b[18..];
                if ty <= 1500 {
                    return llc(b, l2);
                }
            }
            ETH_VNTAG => {
                // Cisco VN-Tag: 4 bytes of tag, then the next ethertype (Zeek's VNTag
                // analyzer).
                let h = b.get(..6).ok_or(DecodeError::Truncated)?;
                ty = be16(h, 4);
                b = &b[6..];
            }
            _ => return Err(DecodeError::NotIp),
        }
    }
    Err(DecodeError::Malformed)
}

/// An MPLS label stack; after the bottom of stack the payload is guessed from the version
/// nibble, as Zeek does (there is no protocol field).
fn mpls(mut b: &[u8]) -> Result<L3<'_>, DecodeError> {
    loop {
        let label = b.get(..4).ok_or(DecodeError::Truncated)?;
        let bottom = label[2] & 0x01 != 0;
        b = &b[4..];
        if bottom {
            break;
        }
    }
    match b.first().map(|v| v >> 4) {
        Some(4) => Ok(L3::V4(b)),
        Some(6) => Ok(L3::V6(b)),
        Some(_) => Err(DecodeError::NotIp),
        None => Err(DecodeError::Truncated),
    }
}

/// The PPP protocol field and what follows, as Zeek's PPP packet-protocol script dispatches it:
/// IPv4, IPv6 and unicast MPLS; link and network control protocols carry no packet.
fn ppp_protocol(b: &[u8]) -> Result<L3<'_>, DecodeError> {
    match get16(b, 0).ok_or(DecodeError::Truncated)? {
        0x0021 => Ok(L3::V4(&b[2..])),
        0x0057 => Ok(L3::V6(&b[2..])),
        0x0281 => mpls(&b[2..]),
        _ => Err(DecodeError::NotIp),
    }
}

/// An 802.11 frame, as Zeek's IEEE802_11 analyzer reads it: only data frames that carry data
/// (not the null subtypes), a fourth address when both DS bits are set, the QoS control field
/// when the subtype says QoS, nothing when the frame is protected (encrypted), then LLC/SNAP
/// with a zero OUI, or an A-MSDU when the QoS field says so.
pub(crate) fn ieee80211<'a>(frame: &'a [u8], l2: &mut L2Info) -> Result<L3<'a>, DecodeError> {
    let fc = *frame.first().ok_or(DecodeError::Truncated)?;
    if (fc >> 2) & 0x02 == 0 || (fc >> 4) & 0x04 != 0 {
        // Management and control frames, and data frames without data.
        return Err(DecodeError::NotIp);
    }
    let flags = *frame.get(1).ok_or(DecodeError::Truncated)?;
    let ds = flags & 0x03;
    let mut len = if ds == 0x03 { 30 } else { 24 };
    let qos = (fc >> 4) & 0x08 != 0;
    let mut amsdu = false;
    if qos {
        amsdu = *frame.get(len).ok_or(DecodeError::Truncated)? & 0x80 != 0;
        len += 2;
    }
    if flags & 0x40 != 0 {
        // Protected: the payload is encrypted.
        return Err(DecodeError::NotIp);
    }
    // Zeek wants bytes past the header.
    if len >= frame.len() {
        return Err(DecodeError::Truncated);
    }
    // Which address is which follows from the To DS / From DS bits.
    let (src, dst) = match ds {
        0x00 => (10, 4),
        0x01 => (10, 16),
        0x02 => (16, 4),
        _ => (24, 16),
    };
    l2.src = Some(mac(&frame[src..src + 6]));
    l2.dst = Some(mac(&frame[dst..dst + 6]));
    let body = &frame[len..];
    if amsdu {
        return Ok(L3::Amsdu(body));
    }
    let (ty, rest) = snap(body)?;
    ether_payload(ty, rest, l2)
}

/// An 802.11 LLC/SNAP header as Zeek accepts it (AA AA 03 and a zero OUI, i.e. encapsulated
/// Ethernet): the ethertype and the bytes after it.
fn snap(b: &[u8]) -> Result<(u16, &[u8]), DecodeError> {
    let h = b.get(..8).ok_or(DecodeError::Truncated)?;
    if h[..6] != [0xaa, 0xaa, 0x03, 0, 0, 0] {
        return Err(DecodeError::NotIp);
    }
    Ok((be16(h, 6), &b[8..]))
}

/// The subframes of an 802.11 A-MSDU: each a destination, a source and a big-endian length,
/// that many bytes of LLC/SNAP packet, then padding to a multiple of four bytes (IEEE
/// 802.11-2016 9.3.2.2.2; the last subframe may go unpadded). Yields each subframe's ethertype
/// and bytes; after an error it yields nothing more, as Zeek stops at the first bad subframe.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Amsdu<'a> {
    rest: &'a [u8],
}

impl<'a> Amsdu<'a> {
    pub fn new(body: &'a [u8]) -> Amsdu<'a> {
        Amsdu { rest: body }
    }
}

impl<'a> Iterator for Amsdu<'a> {
    type Item = Result<(u16, &'a [u8]), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let b = self.rest;
        // On any error below, the walk ends.
        self.rest = &[];
        let Some(h) = b.get(..14) else {
            return Some(Err(DecodeError::Truncated));
        };
        let len = usize::from(be16(h, 12));
        let Some(sub) = b.get(14..14 + len) else {
            return Some(Err(DecodeError::Truncated));
        };
        let after = &b[14 + len..];
        // Zeek pads by `len % 4`, which agrees with the standard for odd lengths only; the
        // standard's padding is what senders write.
        let pad = (4 - (14 + len) % 4) % 4;
        self.rest = after.get(pad..).unwrap_or(&[]);
        Some(snap(sub))
    }
}

/// A PPP frame (as carried by enhanced GRE), with or without the address/control bytes.
pub(crate) fn ppp(b: &[u8]) -> Result<L3<'_>, DecodeError> {
    let b = if b.starts_with(&[0xff, 0x03]) {
        &b[2..]
    } else {
        b
    };
    match get16(b, 0).ok_or(DecodeError::Truncated)? {
        0x0021 => Ok(L3::V4(&b[2..])),
        0x0057 => Ok(L3::V6(&b[2..])),
        _ => Err(DecodeError::NotIp),
    }
}

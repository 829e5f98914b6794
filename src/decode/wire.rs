//! Typed, zero-copy views over IP and transport headers.
//!
//! Each view follows smoltcp's `wire` pattern: `new_checked` verifies that every byte an
//! accessor will read is present, so the accessors themselves cannot panic. Field offsets live
//! in a small `field` module next to the view that reads them.

use super::DecodeError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Reads a big-endian `u16` at `at`; callers have checked the length.
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Reads a big-endian `u32` at `at`; callers have checked the length.
#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads a big-endian `u16` if it is there.
#[inline]
pub(crate) fn get16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The one's-complement sum used by every Internet checksum, not yet folded.
pub(crate) fn sum_words(data: &[u8], mut acc: u64) -> u64 {
    // Summing 32-bit words into a 64-bit accumulator halves the loop count; the final fold
    // gives the same result as summing 16-bit words.
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        acc += u64::from(u16::from_be_bytes([rest[i], rest[i + 1]]));
        i += 2;
    }
    if i < rest.len() {
        acc += u64::from(rest[i]) << 8;
    }
    acc
}

/// Folds a one's-complement sum to 16 bits.
pub(crate) fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// True when `data` (with the checksum field in place) sums to 0xffff after the pseudo-header.
pub(crate) fn transport_checksum_ok(src: IpAddr, dst: IpAddr, proto: u8, data: &[u8]) -> bool {
    let mut acc = 0u64;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            acc = sum_words(&s.octets(), acc);
            acc = sum_words(&d.octets(), acc);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            acc = sum_words(&s.octets(), acc);
            acc = sum_words(&d.octets(), acc);
        }
        // A mixed pair cannot come from one IP header.
        _ => return false,
    }
    acc += u64::from(proto);
    acc += data.len() as u64;
    fold(sum_words(data, acc)) == 0xffff
}

/// IPv4 header view.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ipv4<'a> {
    buf: &'a [u8],
    header_len: usize,
    total_len: usize,
}

mod ipv4_field {
    pub const VER_IHL: usize = 0;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const PROTOCOL: usize = 9;
    pub const SRC: std::ops::Range<usize> = 12..16;
    pub const DST: std::ops::Range<usize> = 16..20;
    pub const MIN_LEN: usize = 20;
}

impl<'a> Ipv4<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Ipv4<'a>, DecodeError> {
        use ipv4_field::*;
        if buf.len() < MIN_LEN {
            return Err(DecodeError::Truncated);
        }
        if buf[VER_IHL] >> 4 != 4 {
            return Err(DecodeError::Malformed);
        }
        let header_len = usize::from(buf[VER_IHL] & 0x0f) * 4;
        if header_len < MIN_LEN {
            return Err(DecodeError::Malformed);
        }
        if buf.len() < header_len {
            return Err(DecodeError::Truncated);
        }
        let mut total_len = usize::from(be16(buf, LENGTH));
        if total_len == 0 {
            // Segmentation offload leaves the length zero in captures taken on the sender;
            // Zeek then trusts the captured length, and so do we.
            total_len = buf.len();
        }
        if total_len < header_len {
            return Err(DecodeError::Malformed);
        }
        Ok(Ipv4 {
            buf,
            header_len,
            total_len,
        })
    }

    pub fn header_len(&self) -> usize {
        self.header_len
    }
    /// The datagram length the header claims (may exceed what was captured).
    pub fn total_len(&self) -> usize {
        self.total_len
    }
    pub fn ident(&self) -> u16 {
        be16(self.buf, ipv4_field::IDENT)
    }
    pub fn more_frags(&self) -> bool {
        self.buf[ipv4_field::FLG_OFF] & 0x20 != 0
    }
    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u32 {
        u32::from(be16(self.buf, ipv4_field::FLG_OFF) & 0x1fff) * 8
    }
    pub fn protocol(&self) -> u8 {
        self.buf[ipv4_field::PROTOCOL]
    }
    pub fn src(&self) -> Ipv4Addr {
        let s = &self.buf[ipv4_field::SRC];
        Ipv4Addr::new(s[0], s[1], s[2], s[3])
    }
    pub fn dst(&self) -> Ipv4Addr {
        let d = &self.buf[ipv4_field::DST];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }
    pub fn checksum_ok(&self) -> bool {
        fold(sum_words(&self.buf[..self.header_len], 0)) == 0xffff
    }
    /// The captured payload, without link-layer padding beyond the total length.
    pub fn payload(&self) -> &'a [u8] {
        let end = self.total_len.min(self.buf.len());
        &self.buf[self.header_len..end]
    }
    /// True when every byte of the datagram was captured.
    pub fn complete(&self) -> bool {
        self.buf.len() >= self.total_len
    }
}

/// IPv6 fixed header view.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ipv6<'a> {
    buf: &'a [u8],
    payload_len: usize,
}

mod ipv6_field {
    pub const VER: usize = 0;
    pub const LENGTH: usize = 4;
    pub const NXT_HDR: usize = 6;
    pub const SRC: std::ops::Range<usize> = 8..24;
    pub const DST: std::ops::Range<usize> = 24..40;
    pub const HEADER_LEN: usize = 40;
}

impl<'a> Ipv6<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Ipv6<'a>, DecodeError> {
        use ipv6_field::*;
        if buf.len() < HEADER_LEN {
            return Err(DecodeError::Truncated);
        }
        if buf[VER] >> 4 != 6 {
            return Err(DecodeError::Malformed);
        }
        // Unlike IPv4's zero total length, a zero IPv6 payload length is taken at its word:
        // Zeek counts such a packet as 40 IP bytes (see the FabricPath reference trace).
        let payload_len = usize::from(be16(buf, LENGTH));
        Ok(Ipv6 { buf, payload_len })
    }

    pub fn payload_len(&self) -> usize {
        self.payload_len
    }
    pub fn next_header(&self) -> u8 {
        self.buf[ipv6_field::NXT_HDR]
    }
    pub fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(addr16(&self.buf[ipv6_field::SRC]))
    }
    pub fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(addr16(&self.buf[ipv6_field::DST]))
    }
    /// Captured bytes after the fixed header, without padding beyond the payload length.
    pub fn payload(&self) -> &'a [u8] {
        let end = (ipv6_field::HEADER_LEN + self.payload_len).min(self.buf.len());
        &self.buf[ipv6_field::HEADER_LEN..end]
    }
    pub fn complete(&self) -> bool {
        self.buf.len() >= ipv6_field::HEADER_LEN + self.payload_len
    }
}

fn addr16(s: &[u8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&s[..16]);
    a
}

/// What walking the IPv6 extension headers found.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ExtWalk {
    /// The upper-layer protocol (or the header after a fragment header).
    pub proto: u8,
    /// Offset of the upper-layer header (or of the fragmentable part) in the walked buffer.
    pub offset: usize,
    /// The fragment header, when one was met with a non-zero offset or more fragments.
    pub frag: Option<Ipv6Frag>,
    /// The final destination named by a type 0 routing header with segments left.
    pub final_dst: Option<Ipv6Addr>,
}

/// The fields of an IPv6 fragment header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ipv6Frag {
    pub offset: u32,
    pub more: bool,
    pub ident: u32,
}

/// Walks extension headers starting with `nh` at the start of `buf`.
///
/// The walk is a loop, never recursion, and each header consumes at least eight bytes, so a
/// packet made of hundreds of extension headers costs time linear in its length and nothing
/// more. It stops at the first header that is not an extension header, or at a fragment header
/// of a real fragment (whose remaining headers are part of the fragmentable data).
pub(crate) fn walk_ipv6_ext(mut nh: u8, buf: &[u8]) -> Result<ExtWalk, DecodeError> {
    let mut off = 0usize;
    let mut final_dst = None;
    loop {
        match nh {
            // Hop-by-hop, routing, destination options, mobility, HIP, shim6: the length byte
            // counts 8-byte units beyond the first.
            0 | 43 | 60 | 135 | 139 | 140 => {
                let h = buf.get(off..off + 2).ok_or(DecodeError::Truncated)?;
                let len = (usize::from(h[1]) + 1) * 8;
                let hdr = buf.get(off..off + len).ok_or(DecodeError::Truncated)?;
                if nh == 43 && hdr[2] == 0 && hdr[3] > 0 && hdr[1] >= 2 && hdr[1] % 2 == 0 {
                    // A type 0 routing header with segments left names the real destination
                    // last; Zeek keys the connection on it.
                    let n = usize::from(hdr[1]) / 2;
                    let a = 8 + (n - 1) * 16;
                    final_dst = Some(Ipv6Addr::from(addr16(&hdr[a..a + 16])));
                }
                nh = hdr[0];
                off += len;
            }
            // Fragment header: fixed eight bytes.
            44 => {
                let h = buf.get(off..off + 8).ok_or(DecodeError::Truncated)?;
                let offset = u32::from(be16(h, 2) & 0xfff8);
                let more = h[3] & 1 != 0;
                let next = h[0];
                off += 8;
                if offset != 0 || more {
                    return Ok(ExtWalk {
                        proto: next,
                        offset: off,
                        frag: Some(Ipv6Frag {
                            offset,
                            more,
                            ident: be32(h, 4),
                        }),
                        final_dst,
                    });
                }
                // An atomic fragment is a whole datagram: keep walking.
                nh = next;
            }
            // Authentication header: the length byte counts 4-byte units minus two.
            51 => {
                let h = buf.get(off..off + 2).ok_or(DecodeError::Truncated)?;
                let len = (usize::from(h[1]) + 2) * 4;
                if buf.len() < off + len {
                    return Err(DecodeError::Truncated);
                }
                nh = h[0];
                off += len;
            }
            _ => {
                return Ok(ExtWalk {
                    proto: nh,
                    offset: off,
                    frag: None,
                    final_dst,
                })
            }
        }
    }
}

/// TCP header view.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tcp<'a> {
    buf: &'a [u8],
    header_len: usize,
}

mod tcp_field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const MIN_LEN: usize = 20;
}

impl<'a> Tcp<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Tcp<'a>, DecodeError> {
        use tcp_field::*;
        if buf.len() < MIN_LEN {
            return Err(DecodeError::Truncated);
        }
        let header_len = usize::from(buf[OFF] >> 4) * 4;
        if header_len < MIN_LEN {
            return Err(DecodeError::Malformed);
        }
        if buf.len() < header_len {
            return Err(DecodeError::Truncated);
        }
        Ok(Tcp { buf, header_len })
    }
    /// A view of a segment whose options the capture cut short: the fixed header is whole and
    /// its data offset valid, so the ports, numbers and flags can be read; the payload is
    /// empty. Returns the view and the header length the segment declares.
    pub fn new_cut(buf: &'a [u8]) -> Result<(Tcp<'a>, usize), DecodeError> {
        use tcp_field::*;
        if buf.len() < MIN_LEN {
            return Err(DecodeError::Truncated);
        }
        let declared = usize::from(buf[OFF] >> 4) * 4;
        if declared < MIN_LEN {
            return Err(DecodeError::Malformed);
        }
        let header_len = declared.min(buf.len());
        Ok((Tcp { buf, header_len }, declared))
    }
    pub fn header_len(&self) -> usize {
        self.header_len
    }
    pub fn src_port(&self) -> u16 {
        be16(self.buf, tcp_field::SRC_PORT)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.buf, tcp_field::DST_PORT)
    }
    pub fn seq(&self) -> u32 {
        be32(self.buf, tcp_field::SEQ)
    }
    pub fn ack(&self) -> u32 {
        be32(self.buf, tcp_field::ACK)
    }
    pub fn flags(&self) -> u8 {
        self.buf[tcp_field::FLAGS]
    }
    pub fn window(&self) -> u16 {
        be16(self.buf, tcp_field::WINDOW)
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len..]
    }
}

/// UDP header view.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Udp<'a> {
    buf: &'a [u8],
}

mod udp_field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
    pub const HEADER_LEN: usize = 8;
}

impl<'a> Udp<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Udp<'a>, DecodeError> {
        if buf.len() < udp_field::HEADER_LEN {
            return Err(DecodeError::Truncated);
        }
        Ok(Udp { buf })
    }
    pub fn src_port(&self) -> u16 {
        be16(self.buf, udp_field::SRC_PORT)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.buf, udp_field::DST_PORT)
    }
    pub fn length(&self) -> u16 {
        be16(self.buf, udp_field::LENGTH)
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buf, udp_field::CHECKSUM)
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[udp_field::HEADER_LEN..]
    }
}

/// ICMP and ICMPv6 share the first eight bytes' layout; Zeek requires all eight.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Icmp<'a> {
    buf: &'a [u8],
}

impl<'a> Icmp<'a> {
    pub const HEADER_LEN: usize = 8;
    pub fn new_checked(buf: &'a [u8]) -> Result<Icmp<'a>, DecodeError> {
        if buf.len() < Self::HEADER_LEN {
            return Err(DecodeError::Truncated);
        }
        Ok(Icmp { buf })
    }
    pub fn msg_type(&self) -> u8 {
        self.buf[0]
    }
    pub fn code(&self) -> u8 {
        self.buf[1]
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[Self::HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_rfc1071_example_folds_correctly() {
        // RFC 1071's worked example: the words 0001 f203 f4f5 f6f7 sum to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_words(&data, 0)), 0xddf2);
        // An odd trailing byte is padded with zero on the right.
        assert_eq!(fold(sum_words(&[0x12], 0)), 0x1200);
    }

    #[test]
    fn ext_walk_stops_at_upper_layer_and_reports_fragment() {
        // Hop-by-hop (8 bytes) then a fragment header with offset 8 and M set, then UDP.
        let mut b = vec![44, 0, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(&[17, 0, 0x00, 0x09, 0, 0, 0, 42]);
        let w = walk_ipv6_ext(0, &b).expect("walk");
        assert_eq!(w.proto, 17);
        assert_eq!(w.offset, 16);
        let f = w.frag.expect("fragment header must be reported");
        assert_eq!((f.offset, f.more, f.ident), (8, true, 42));
    }

    #[test]
    fn ext_walk_truncated_header_is_an_error() {
        assert_eq!(
            walk_ipv6_ext(60, &[6, 1, 0, 0]).unwrap_err(),
            DecodeError::Truncated
        );
    }
}

//! A zero-copy view of a DNS message (RFC 1035), in the style of smoltcp's `wire`.
//!
//! [`Message::new_checked`] checks the header; [`Message::parse`] then walks every section
//! once into a fixed-size [`Parsed`] (offsets into the buffer, no copies, no allocation).
//! Names are read with [`Message::read_name`], which follows compression pointers only
//! backwards (each pointer must point before the label run it ends), so a hostile message
//! cannot make the reader loop. Every accessor after `new_checked` is bounds-checked and
//! returns a `Copy` error instead of panicking.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

mod field {
    use std::ops::Range;
    pub const ID: Range<usize> = 0..2;
    pub const FLAGS: Range<usize> = 2..4;
    pub const QDCOUNT: Range<usize> = 4..6;
    pub const ANCOUNT: Range<usize> = 6..8;
    pub const NSCOUNT: Range<usize> = 8..10;
    pub const ARCOUNT: Range<usize> = 10..12;
    pub const HEADER_END: usize = 12;
}

/// Record types this crate looks at (others keep their number).
pub mod rtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const MX: u16 = 15;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const SRV: u16 = 33;
}

/// Where [`Message::read_name`] writes a name: the caller's fixed-size name type (the
/// decoder knows no name type of its own). Labels are joined with dots.
pub trait NameBuf {
    fn clear(&mut self);
    fn is_empty(&self) -> bool;
    /// Appends one byte, lower-cased when `lower`; false when the name is full.
    fn push(&mut self, b: u8, lower: bool) -> bool;
}

/// A [`NameBuf`] that only measures: the length the name would have in text.
#[derive(Clone, Copy, Default, Debug)]
pub struct NameLen(pub usize);

impl NameBuf for NameLen {
    fn clear(&mut self) {
        self.0 = 0;
    }

    fn is_empty(&self) -> bool {
        self.0 == 0
    }

    fn push(&mut self, _: u8, _: bool) -> bool {
        self.0 += 1;
        true
    }
}

/// Why a message could not be read. `Copy`: a bad packet only bumps a counter.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DnsError {
    /// The message ends inside a header, name or record.
    Truncated,
    /// A label type or length is invalid, or a pointer does not point backwards.
    BadName,
}

/// Most questions and records [`Message::parse`] keeps; the rest are counted as cut.
pub const MAX_QUESTIONS: usize = 4;
pub const MAX_RECORDS: usize = 64;

/// Which section a record came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Section {
    Answer,
    Authority,
    Additional,
}

/// A question: where its name starts, its type and class.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Question {
    pub name_off: usize,
    pub qtype: u16,
    pub qclass: u16,
}

/// A resource record: where its owner name and data are.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Record {
    pub name_off: usize,
    pub rtype: u16,
    /// The class (for mDNS the top bit is the cache-flush flag).
    pub class: u16,
    pub ttl: u32,
    pub rdata_off: usize,
    pub rdata_len: usize,
    pub section: Section,
}

impl Default for Record {
    fn default() -> Record {
        Record {
            name_off: 0,
            rtype: 0,
            class: 0,
            ttl: 0,
            rdata_off: 0,
            rdata_len: 0,
            section: Section::Answer,
        }
    }
}

/// Every question and record of a message, as offsets (fixed-size, `Copy`).
#[derive(Clone, Copy, Debug)]
pub struct Parsed {
    pub questions: [Question; MAX_QUESTIONS],
    pub n_questions: usize,
    pub records: [Record; MAX_RECORDS],
    pub n_records: usize,
    /// Questions or records beyond the bounds above (skipped, not kept).
    pub cut: usize,
    /// Where the last section ended.
    pub end: usize,
}

impl Parsed {
    pub fn questions(&self) -> &[Question] {
        &self.questions[..self.n_questions]
    }

    pub fn records(&self) -> &[Record] {
        &self.records[..self.n_records]
    }

    /// The answer-section records.
    pub fn answers(&self) -> impl Iterator<Item = &Record> {
        self.records()
            .iter()
            .filter(|r| r.section == Section::Answer)
    }
}

/// A view of a DNS message.
#[derive(Clone, Copy, Debug)]
pub struct Message<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Message<T> {
    /// Wraps bytes without checking them.
    pub fn new_unchecked(buffer: T) -> Message<T> {
        Message { buffer }
    }

    /// Wraps bytes that hold at least a header.
    pub fn new_checked(buffer: T) -> Result<Message<T>, DnsError> {
        let m = Message::new_unchecked(buffer);
        m.check_len()?;
        Ok(m)
    }

    /// Checks that the header is complete.
    pub fn check_len(&self) -> Result<(), DnsError> {
        if self.buffer.as_ref().len() < field::HEADER_END {
            Err(DnsError::Truncated)
        } else {
            Ok(())
        }
    }

    fn u16_at(&self, r: std::ops::Range<usize>) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[r.start], b[r.start + 1]])
    }

    pub fn id(&self) -> u16 {
        self.u16_at(field::ID)
    }

    pub fn flags(&self) -> u16 {
        self.u16_at(field::FLAGS)
    }

    /// QR: this is a response.
    pub fn is_response(&self) -> bool {
        self.flags() & 0x8000 != 0
    }

    pub fn opcode(&self) -> u8 {
        ((self.flags() >> 11) & 0xf) as u8
    }

    pub fn aa(&self) -> bool {
        self.flags() & 0x0400 != 0
    }

    pub fn tc(&self) -> bool {
        self.flags() & 0x0200 != 0
    }

    pub fn rd(&self) -> bool {
        self.flags() & 0x0100 != 0
    }

    pub fn ra(&self) -> bool {
        self.flags() & 0x0080 != 0
    }

    pub fn z(&self) -> u8 {
        ((self.flags() >> 4) & 0x7) as u8
    }

    pub fn rcode(&self) -> u8 {
        (self.flags() & 0xf) as u8
    }

    pub fn qdcount(&self) -> u16 {
        self.u16_at(field::QDCOUNT)
    }

    pub fn ancount(&self) -> u16 {
        self.u16_at(field::ANCOUNT)
    }

    pub fn nscount(&self) -> u16 {
        self.u16_at(field::NSCOUNT)
    }

    pub fn arcount(&self) -> u16 {
        self.u16_at(field::ARCOUNT)
    }

    /// The whole message.
    pub fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Reads the name at `off` into `out` (dotted, lower-case) and returns the offset just
    /// after it where it is stored. A compression pointer must point strictly before the
    /// label run that contains it, which bounds the walk.
    pub fn read_name(&self, off: usize, out: &mut impl NameBuf) -> Result<usize, DnsError> {
        self.read_name_as(off, out, true)
    }

    /// Like [`Message::read_name`], keeping the letters' case as the message spells them.
    pub fn read_name_raw(&self, off: usize, out: &mut impl NameBuf) -> Result<usize, DnsError> {
        self.read_name_as(off, out, false)
    }

    fn read_name_as(
        &self,
        off: usize,
        out: &mut impl NameBuf,
        lower: bool,
    ) -> Result<usize, DnsError> {
        out.clear();
        let b = self.buffer.as_ref();
        let mut pos = off;
        // Pointers may only reach bytes before this limit; it only ever decreases.
        let mut limit = off;
        let mut end = None;
        loop {
            let len = *b.get(pos).ok_or(DnsError::Truncated)?;
            match len & 0xc0 {
                0x00 => {
                    if len == 0 {
                        return Ok(end.unwrap_or(pos + 1));
                    }
                    let label = b
                        .get(pos + 1..pos + 1 + len as usize)
                        .ok_or(DnsError::Truncated)?;
                    if !out.is_empty() {
                        out.push(b'.', false);
                    }
                    for &c in label {
                        out.push(c, lower);
                    }
                    pos += 1 + len as usize;
                }
                0xc0 => {
                    let lo = *b.get(pos + 1).ok_or(DnsError::Truncated)?;
                    let target = (usize::from(len & 0x3f) << 8) | usize::from(lo);
                    if target >= limit {
                        return Err(DnsError::BadName);
                    }
                    if end.is_none() {
                        end = Some(pos + 2);
                    }
                    limit = target;
                    pos = target;
                }
                _ => return Err(DnsError::BadName),
            }
        }
    }

    /// The offset just after the name stored at `off` (pointers are not followed).
    pub fn skip_name(&self, off: usize) -> Result<usize, DnsError> {
        let b = self.buffer.as_ref();
        let mut pos = off;
        loop {
            let len = *b.get(pos).ok_or(DnsError::Truncated)?;
            match len & 0xc0 {
                0x00 if len == 0 => return Ok(pos + 1),
                0x00 => {
                    pos += 1 + len as usize;
                    if pos > b.len() {
                        return Err(DnsError::Truncated);
                    }
                }
                0xc0 => {
                    if pos + 2 > b.len() {
                        return Err(DnsError::Truncated);
                    }
                    return Ok(pos + 2);
                }
                _ => return Err(DnsError::BadName),
            }
        }
    }

    /// Walks every section. Questions and records beyond the fixed bounds are skipped (and
    /// counted in `cut`), never read out of bounds.
    pub fn parse(&self) -> Result<Parsed, DnsError> {
        let b = self.buffer.as_ref();
        let mut p = Parsed {
            questions: [Question::default(); MAX_QUESTIONS],
            n_questions: 0,
            records: [Record::default(); MAX_RECORDS],
            n_records: 0,
            cut: 0,
            end: 0,
        };
        let mut pos = field::HEADER_END;
        for _ in 0..self.qdcount() {
            let name_end = self.skip_name(pos)?;
            let f = b.get(name_end..name_end + 4).ok_or(DnsError::Truncated)?;
            let q = Question {
                name_off: pos,
                qtype: u16::from_be_bytes([f[0], f[1]]),
                qclass: u16::from_be_bytes([f[2], f[3]]),
            };
            if p.n_questions < MAX_QUESTIONS {
                p.questions[p.n_questions] = q;
                p.n_questions += 1;
            } else {
                p.cut += 1;
            }
            pos = name_end + 4;
        }
        let sections = [
            (Section::Answer, self.ancount()),
            (Section::Authority, self.nscount()),
            (Section::Additional, self.arcount()),
        ];
        for (section, count) in sections {
            for _ in 0..count {
                let name_end = self.skip_name(pos)?;
                let f = b.get(name_end..name_end + 10).ok_or(DnsError::Truncated)?;
                let rdata_len = usize::from(u16::from_be_bytes([f[8], f[9]]));
                let rdata_off = name_end + 10;
                if rdata_off + rdata_len > b.len() {
                    return Err(DnsError::Truncated);
                }
                let r = Record {
                    name_off: pos,
                    rtype: u16::from_be_bytes([f[0], f[1]]),
                    class: u16::from_be_bytes([f[2], f[3]]),
                    ttl: u32::from_be_bytes([f[4], f[5], f[6], f[7]]),
                    rdata_off,
                    rdata_len,
                    section,
                };
                if p.n_records < MAX_RECORDS {
                    p.records[p.n_records] = r;
                    p.n_records += 1;
                } else {
                    p.cut += 1;
                }
                pos = rdata_off + rdata_len;
            }
        }
        p.end = pos;
        Ok(p)
    }

    /// The data of a record.
    pub fn rdata(&self, r: &Record) -> &[u8] {
        self.buffer
            .as_ref()
            .get(r.rdata_off..r.rdata_off + r.rdata_len)
            .unwrap_or(&[])
    }

    /// The address an A or AAAA record holds.
    pub fn rdata_addr(&self, r: &Record) -> Option<IpAddr> {
        let d = self.rdata(r);
        match (r.rtype, d.len()) {
            (rtype::A, 4) => Some(IpAddr::V4(Ipv4Addr::new(d[0], d[1], d[2], d[3]))),
            (rtype::AAAA, 16) => {
                let mut o = [0u8; 16];
                o.copy_from_slice(d);
                Some(IpAddr::V6(Ipv6Addr::from(o)))
            }
            _ => None,
        }
    }

    /// The name a CNAME, PTR or NS record holds (MX, SRV: after their fixed fields).
    pub fn rdata_name(&self, r: &Record, out: &mut impl NameBuf) -> Result<(), DnsError> {
        let skip = match r.rtype {
            rtype::MX => 2,
            rtype::SRV => 6,
            _ => 0,
        };
        if r.rdata_len < skip + 1 {
            return Err(DnsError::Truncated);
        }
        let end = self.read_name(r.rdata_off + skip, out)?;
        if end > r.rdata_off + r.rdata_len {
            return Err(DnsError::Truncated);
        }
        Ok(())
    }
}

/// The address an in-addr.arpa or ip6.arpa name stands for (`4.3.2.1.in-addr.arpa` is
/// 1.2.3.4).
pub fn reverse_addr(name: &[u8]) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(b".in-addr.arpa") {
        let mut o = [0u8; 4];
        let mut n = 0;
        for part in rest.split(|&c| c == b'.') {
            if n == 4 || part.is_empty() || part.len() > 3 {
                return None;
            }
            let v: u32 = std::str::from_utf8(part).ok()?.parse().ok()?;
            o[3 - n] = u8::try_from(v).ok()?;
            n += 1;
        }
        return (n == 4).then(|| IpAddr::V4(Ipv4Addr::from(o)));
    }
    if let Some(rest) = name.strip_suffix(b".ip6.arpa") {
        let mut o = [0u8; 16];
        let mut n = 0;
        for part in rest.split(|&c| c == b'.') {
            if n == 32 || part.len() != 1 {
                return None;
            }
            let v = (part[0] as char).to_digit(16)? as u8;
            // Nibbles come least significant first.
            let idx = 31 - n;
            if idx % 2 == 0 {
                o[idx / 2] |= v << 4;
            } else {
                o[idx / 2] |= v;
            }
            n += 1;
        }
        return (n == 32).then(|| IpAddr::V6(Ipv6Addr::from(o)));
    }
    None
}

/// The payload of a DNS message carried over TCP: the two-byte length prefix removed, when
/// the whole message is in these bytes.
pub fn tcp_message(payload: &[u8]) -> Option<&[u8]> {
    let len = usize::from(u16::from_be_bytes([*payload.first()?, *payload.get(1)?]));
    payload.get(2..2 + len).filter(|_| len >= field::HEADER_END)
}

/// The DNS messages of a TCP segment that holds whole length-prefixed messages and nothing
/// else, each without its prefix; `None` when the segment continues or cuts a message (so a
/// continuation segment yields nothing at all) or a prefix claims less than a header.
pub fn tcp_messages(payload: &[u8]) -> Option<impl Iterator<Item = &[u8]>> {
    let mut rest = payload;
    while !rest.is_empty() {
        let framed = tcp_message(rest)?;
        rest = &rest[2 + framed.len()..];
    }
    let mut rest = payload;
    Some(std::iter::from_fn(move || {
        let m = tcp_message(rest)?;
        rest = &rest[2 + m.len()..];
        Some(m)
    }))
}

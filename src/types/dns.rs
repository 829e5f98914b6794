//! The `dns.log` record (Zeek 8's columns): `Copy` and fixed-size, the query an inline name and
//! the answers one inline text buffer ([`DnsAnswers`]), so records cross the worker → writer
//! queue by value and nothing allocates per record. `names::dnslog` fills it in; `output::dns`
//! writes it.

use super::name::Name;
use super::record::{Transport, Uid};
use std::net::IpAddr;

/// Most answers one record keeps.
pub const ANSWERS_CAP: usize = 16;
/// Bytes of answer text one record keeps (every answer together): a TXT answer of a few
/// kilobytes fits.
pub const ANSWER_BYTES: usize = 4096;

/// The `answers` and `TTLs` columns: answer texts in one inline buffer and their TTLs.
#[derive(Clone, Copy)]
pub struct DnsAnswers {
    n: u8,
    /// Where answer `i` ends in `buf` (it starts where `i - 1` ends).
    ends: [u16; ANSWERS_CAP],
    ttls: [u32; ANSWERS_CAP],
    buf: [u8; ANSWER_BYTES],
    /// Answers that did not fit (too many, or too much text) and were left out.
    pub cut: u16,
}

impl Default for DnsAnswers {
    fn default() -> DnsAnswers {
        DnsAnswers {
            n: 0,
            ends: [0; ANSWERS_CAP],
            ttls: [0; ANSWERS_CAP],
            buf: [0; ANSWER_BYTES],
            cut: 0,
        }
    }
}

impl std::fmt::Debug for DnsAnswers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.iter()
                    .map(|(t, ttl)| (String::from_utf8_lossy(t).into_owned(), ttl)),
            )
            .finish()
    }
}

impl DnsAnswers {
    /// Room for `len` more bytes and one more answer.
    fn room(&self, len: usize) -> bool {
        (self.n as usize) < ANSWERS_CAP && self.used() + len <= ANSWER_BYTES
    }

    fn used(&self) -> usize {
        match self.n {
            0 => 0,
            n => self.ends[n as usize - 1] as usize,
        }
    }

    /// Appends one answer built by `write`, which gets a writer over the free space. An
    /// answer whose text does not fit whole is left out and counted in `cut`: a cut answer
    /// would look like a real one.
    pub fn push_with(&mut self, ttl_s: u32, write: impl FnOnce(&mut TextWriter<'_>)) {
        if !self.room(0) {
            self.cut = self.cut.saturating_add(1);
            return;
        }
        let start = self.used();
        let mut w = TextWriter {
            buf: &mut self.buf[start..],
            len: 0,
            overflow: false,
        };
        write(&mut w);
        if w.overflow {
            self.cut = self.cut.saturating_add(1);
            return;
        }
        let end = start + w.len;
        self.ends[self.n as usize] = end as u16;
        self.ttls[self.n as usize] = ttl_s;
        self.n += 1;
    }

    /// Appends one answer.
    pub fn push(&mut self, text: &[u8], ttl_s: u32) {
        self.push_with(ttl_s, |w| w.bytes(text));
    }

    pub fn len(&self) -> usize {
        self.n as usize
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Every answer with its TTL in seconds, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u32)> + '_ {
        (0..self.n as usize).map(move |i| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
            (&self.buf[start..self.ends[i] as usize], self.ttls[i])
        })
    }

    /// Appends every answer of `other` (a reply's answers added to its session's).
    pub fn extend(&mut self, other: &DnsAnswers) {
        for (t, ttl) in other.iter() {
            self.push(t, ttl);
        }
        self.cut = self.cut.saturating_add(other.cut);
    }
}

/// Writes one answer's text into a fixed buffer; remembers an overflow instead of failing.
pub struct TextWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl TextWriter<'_> {
    pub fn bytes(&mut self, b: &[u8]) {
        match self.buf.get_mut(self.len..self.len + b.len()) {
            Some(dst) => {
                dst.copy_from_slice(b);
                self.len += b.len();
            }
            None => self.overflow = true,
        }
    }

    pub fn byte(&mut self, b: u8) {
        self.bytes(&[b]);
    }

    /// A number in decimal.
    pub fn number(&mut self, v: u64) {
        let mut b = itoa::Buffer::new();
        self.bytes(b.format(v).as_bytes());
    }

    /// An address as Zeek prints one.
    pub fn addr(&mut self, a: IpAddr) {
        use std::io::Write;
        let mut tmp = [0u8; 48];
        let mut cur = std::io::Cursor::new(&mut tmp[..]);
        // 48 bytes hold any address's text, so this cannot fail.
        let _ = write!(cur, "{a}");
        let n = cur.position() as usize;
        self.bytes(&tmp[..n]);
    }
}

/// One dns.log record. Columns and meanings are Zeek's `DNS::Info`.
#[derive(Clone, Copy, Debug)]
pub struct DnsRecord {
    /// `ts`: the first message of this query/reply pair.
    pub ts_ns: u64,
    /// `uid`: the connection's (equal to its conn.log uid).
    pub uid: Uid,
    pub orig_h: IpAddr,
    pub orig_p: u16,
    pub resp_h: IpAddr,
    pub resp_p: u16,
    /// `proto`: the transport of the connection.
    pub proto: Transport,
    /// `trans_id`: the 16-bit DNS message id.
    pub trans_id: u16,
    /// Time of the first answer record of the reply, when a query came first: `rtt` is it
    /// minus `ts` (unset when there is none, or it is zero, as in Zeek).
    pub answered_ns: Option<u64>,
    /// `query`: lower-cased from the request's question (NetBIOS names decoded), else the
    /// owner name of the reply's first answer as the reply spelt it.
    pub query: Option<Name>,
    /// `qclass`, `qtype` (their `_name` columns are derived when written).
    pub qclass: Option<u16>,
    pub qtype: Option<u16>,
    /// `rcode` of the reply.
    pub rcode: Option<u8>,
    pub aa: bool,
    pub tc: bool,
    pub rd: bool,
    pub ra: bool,
    pub z: u8,
    /// `answers` and `TTLs` (both unset when empty).
    pub answers: DnsAnswers,
    pub rejected: bool,
    /// `opcode` of the last message; its name depends on `netbios`.
    pub opcode: Option<u8>,
    /// The connection is NetBIOS name service (port 137): opcode names are NetBIOS's.
    pub netbios: bool,
}

/// A record with nothing set: the tracker fills in what its messages say.
impl Default for DnsRecord {
    fn default() -> DnsRecord {
        DnsRecord {
            ts_ns: 0,
            uid: Uid::default(),
            orig_h: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            orig_p: 0,
            resp_h: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            resp_p: 0,
            proto: Transport::Unknown,
            trans_id: 0,
            answered_ns: None,
            query: None,
            qclass: None,
            qtype: None,
            rcode: None,
            aa: false,
            tc: false,
            rd: false,
            ra: false,
            z: 0,
            answers: DnsAnswers::default(),
            rejected: false,
            opcode: None,
            netbios: false,
        }
    }
}

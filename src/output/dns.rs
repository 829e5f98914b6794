//! `dns.log` in Zeek 8's format: one record per DNS query/reply pair (or unmatched query or
//! reply), with Zeek's columns in Zeek's order and types.
//!
//! The record is `Copy` and fixed-size: the query is an inline name and the answers share one
//! inline text buffer ([`DnsAnswers`]), so records cross the worker → writer queue by value and
//! nothing allocates per record. The request/reply matching that fills it in is
//! `names::dnslog`.

use super::record::{Transport, Uid};
use super::schema::{Field, FieldSink, LogRecord, Schema, ZeekScalar, ZeekType};
use crate::names::Name;
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

/// The columns of dns.log (Zeek 8).
pub static DNS: Schema = Schema::new(
    "dns",
    &[
        Field::new("ts", ZeekType::Time),
        Field::new("uid", ZeekType::String),
        Field::new("id.orig_h", ZeekType::Addr),
        Field::new("id.orig_p", ZeekType::Port),
        Field::new("id.resp_h", ZeekType::Addr),
        Field::new("id.resp_p", ZeekType::Port),
        Field::new("proto", ZeekType::Enum),
        Field::new("trans_id", ZeekType::Count),
        Field::new("rtt", ZeekType::Interval),
        Field::new("query", ZeekType::String),
        Field::new("qclass", ZeekType::Count),
        Field::new("qclass_name", ZeekType::String),
        Field::new("qtype", ZeekType::Count),
        Field::new("qtype_name", ZeekType::String),
        Field::new("rcode", ZeekType::Count),
        Field::new("rcode_name", ZeekType::String),
        Field::new("AA", ZeekType::Bool),
        Field::new("TC", ZeekType::Bool),
        Field::new("RD", ZeekType::Bool),
        Field::new("RA", ZeekType::Bool),
        Field::new("Z", ZeekType::Count),
        Field::new("answers", ZeekType::Vector(ZeekScalar::String)),
        Field::new("TTLs", ZeekType::Vector(ZeekScalar::Interval)),
        Field::new("rejected", ZeekType::Bool),
        Field::new("opcode", ZeekType::Count),
        Field::new("opcode_name", ZeekType::String),
    ],
);

/// Zeek's `DNS::classes`.
fn class_name(c: u16) -> Option<&'static str> {
    Some(match c {
        1 => "C_INTERNET",
        2 => "C_CSNET",
        3 => "C_CHAOS",
        4 => "C_HESIOD",
        254 => "C_NONE",
        255 => "C_ANY",
        _ => return None,
    })
}

/// Zeek's `DNS::query_types`.
pub fn qtype_name(t: u16) -> Option<&'static str> {
    Some(match t {
        1 => "A",
        2 => "NS",
        3 => "MD",
        4 => "MF",
        5 => "CNAME",
        6 => "SOA",
        7 => "MB",
        8 => "MG",
        9 => "MR",
        10 => "NULL",
        11 => "WKS",
        12 => "PTR",
        13 => "HINFO",
        14 => "MINFO",
        15 => "MX",
        16 => "TXT",
        17 => "RP",
        18 => "AFSDB",
        19 => "X25",
        20 => "ISDN",
        21 => "RT",
        22 => "NSAP",
        23 => "NSAP-PTR",
        24 => "SIG",
        25 => "KEY",
        26 => "PX",
        27 => "GPOS",
        28 => "AAAA",
        29 => "LOC",
        30 => "NXT",
        31 => "EID",
        32 => "NIMLOC",
        33 => "SRV",
        34 => "ATMA",
        35 => "NAPTR",
        36 => "KX",
        37 => "CERT",
        38 => "A6",
        39 => "DNAME",
        40 => "SINK",
        41 => "OPT",
        42 => "APL",
        43 => "DS",
        44 => "SSHFP",
        45 => "IPSECKEY",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        49 => "DHCID",
        50 => "NSEC3",
        51 => "NSEC3PARAM",
        52 => "TLSA",
        53 => "SMIMEA",
        55 => "HIP",
        56 => "NINFO",
        57 => "RKEY",
        58 => "TALINK",
        59 => "CDS",
        60 => "CDNSKEY",
        61 => "OPENPGPKEY",
        62 => "CSYNC",
        63 => "ZONEMD",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        100 => "UINFO",
        101 => "UID",
        102 => "GID",
        103 => "UNSPEC",
        104 => "NID",
        105 => "L32",
        106 => "L64",
        107 => "LP",
        108 => "EUI48",
        109 => "EUI64",
        249 => "TKEY",
        250 => "TSIG",
        251 => "IXFR",
        252 => "AXFR",
        253 => "MAILB",
        254 => "MAILA",
        255 => "*",
        256 => "URI",
        257 => "CAA",
        32768 => "TA",
        32769 => "DLV",
        65281 => "WINS",
        65282 => "WINS-R",
        65422 => "XPF",
        65521 => "INTEGRITY",
        _ => return None,
    })
}

/// Zeek's `DNS::base_errors`.
fn rcode_name(r: u8) -> Option<&'static str> {
    Some(match r {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSet",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        11 => "unassigned-11",
        12 => "unassigned-12",
        13 => "unassigned-13",
        14 => "unassigned-14",
        15 => "unassigned-15",
        _ => return None,
    })
}

/// Zeek's `DNS::opcodes`, or `DNS::netbios_opcodes` on NetBIOS name service.
fn opcode_name(op: u8, netbios: bool) -> Option<&'static str> {
    Some(match (netbios, op) {
        (false, 0) => "query",
        (false, 1) => "iquery",
        (false, 2) => "server-status",
        (false, 4) => "notify",
        (false, 5) => "dynamic-update",
        (false, 6) => "dso",
        (true, 0) => "netbios-query",
        (true, 5) => "netbios-registration",
        (true, 6) => "netbios-release",
        (true, 7) => "netbios-wack",
        (true, 8) => "netbios-refresh",
        _ => return None,
    })
}

/// Writes a table name, or Zeek's `&default` spelling (`query-99`) for values it lacks.
fn name_or<S: FieldSink>(out: &mut S, name: Option<&str>, prefix: &str, v: u64) {
    match name {
        Some(n) => out.string(n.as_bytes()),
        None => {
            let mut buf = [0u8; 40];
            let mut num = itoa::Buffer::new();
            let digits = num.format(v).as_bytes();
            let n = prefix.len() + digits.len();
            buf[..prefix.len()].copy_from_slice(prefix.as_bytes());
            buf[prefix.len()..n].copy_from_slice(digits);
            out.string(&buf[..n]);
        }
    }
}

impl LogRecord for DnsRecord {
    fn schema() -> &'static Schema {
        &DNS
    }

    fn write_fields<S: FieldSink>(&self, out: &mut S) {
        out.time(self.ts_ns);
        out.string(self.uid.as_str().as_bytes());
        out.addr(self.orig_h);
        out.port(self.orig_p);
        out.addr(self.resp_h);
        out.port(self.resp_p);
        out.enumeration(self.proto.as_str());
        out.count(u64::from(self.trans_id));
        match self.answered_ns {
            // Zeek deletes an rtt of zero: only a reply was seen.
            Some(at) if at > self.ts_ns => out.interval_between(self.ts_ns, at),
            _ => out.unset(),
        }
        match &self.query {
            Some(q) => out.string(q.as_bytes()),
            None => out.unset(),
        }
        match self.qclass {
            Some(c) => {
                out.count(u64::from(c));
                name_or(out, class_name(c), "qclass-", u64::from(c));
            }
            None => {
                out.unset();
                out.unset();
            }
        }
        match self.qtype {
            Some(t) => {
                out.count(u64::from(t));
                // NetBIOS node status reuses SRV's number; Zeek names it for what it is.
                let name = if t == 33 && self.resp_p == 137 && self.proto == Transport::Udp {
                    Some("NBSTAT")
                } else {
                    qtype_name(t)
                };
                name_or(out, name, "query-", u64::from(t));
            }
            None => {
                out.unset();
                out.unset();
            }
        }
        match self.rcode {
            Some(r) => {
                out.count(u64::from(r));
                name_or(out, rcode_name(r), "rcode-", u64::from(r));
            }
            None => {
                out.unset();
                out.unset();
            }
        }
        out.bool(self.aa);
        out.bool(self.tc);
        out.bool(self.rd);
        out.bool(self.ra);
        out.count(u64::from(self.z));
        if self.answers.is_empty() {
            out.unset();
            out.unset();
        } else {
            out.begin_container();
            for (t, _) in self.answers.iter() {
                out.string(t);
            }
            out.end_container();
            out.begin_container();
            for (_, ttl) in self.answers.iter() {
                out.interval(u64::from(ttl) * 1_000_000_000);
            }
            out.end_container();
        }
        out.bool(self.rejected);
        match self.opcode {
            Some(op) => {
                out.count(u64::from(op));
                let prefix = if self.netbios {
                    "netbios-opcode-"
                } else {
                    "opcode-"
                };
                name_or(out, opcode_name(op, self.netbios), prefix, u64::from(op));
            }
            None => {
                out.unset();
                out.unset();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_keep_order_and_cut_whole_answers() {
        let mut a = DnsAnswers::default();
        a.push(b"198.18.0.1", 60);
        a.push(&[b'x'; ANSWER_BYTES], 5);
        a.push_with(7, |w| {
            w.bytes(b"TXT ");
            w.number(3);
            w.bytes(b" abc");
        });
        let v: Vec<_> = a.iter().map(|(t, ttl)| (t.to_vec(), ttl)).collect();
        assert_eq!(
            v,
            [(b"198.18.0.1".to_vec(), 60), (b"TXT 3 abc".to_vec(), 7)]
        );
        assert_eq!(a.cut, 1);
        for i in 0..ANSWERS_CAP {
            a.push(b"a", i as u32);
        }
        assert_eq!(a.len(), ANSWERS_CAP);
        assert_eq!(a.cut, 3);
    }

    #[test]
    fn unknown_values_get_zeeks_default_names() {
        assert_eq!(qtype_name(28), Some("AAAA"));
        assert_eq!(qtype_name(54), None);
        assert_eq!(opcode_name(0, true), Some("netbios-query"));
        assert_eq!(opcode_name(3, false), None);
    }
}

//! `dns.log` in Zeek 8's format: one record per DNS query/reply pair (or unmatched query or
//! reply), with Zeek's columns in Zeek's order and types.
//!
//! The record is `Copy` and fixed-size: the query is an inline name and the answers share one
//! inline text buffer ([`DnsAnswers`]), so records cross the worker → writer queue by value and
//! nothing allocates per record. The request/reply matching that fills it in is
//! `names::dnslog`.

use super::schema::{Field, FieldSink, LogRecord, Schema, ZeekScalar, ZeekType};
pub use crate::types::dns::{DnsAnswers, DnsRecord, TextWriter, ANSWERS_CAP, ANSWER_BYTES};
use crate::types::record::Transport;

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
        out.string(self.uid.text().as_str().as_bytes());
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

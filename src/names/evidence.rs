//! Name evidence from one decoded packet, parsed where the full payload is (the dispatcher),
//! into fixed-size [`Evidence`] values for the worker that owns the packet's flow.

use super::hello::HelloReader;
use super::{Evidence, Name, NameSource, OwnConn};
use crate::decode::dns::{self, rtype, Message, Parsed};
use crate::decode::{dhcp, http, Packet, L4};
use std::net::IpAddr;

/// Evidence values one packet may yield; the rest are counted in `cut`.
pub const MAX_PER_PACKET: usize = 32;
/// CNAME links followed within one answer.
const MAX_CNAMES: usize = 16;

const DNS_PORT: u16 = 53;
const MDNS_PORT: u16 = 5353;
const LLMNR_PORT: u16 = 5355;

/// What evidence parsing saw (plain integers: one parser per dispatcher).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct EvidenceCounters {
    /// Evidence values produced, per [`NameSource`] (indexed by its number).
    pub by_source: [u64; 9],
    /// DNS responses read.
    pub dns_responses: u64,
    /// DNS payloads on DNS ports that did not parse.
    pub dns_malformed: u64,
    /// Evidence beyond [`MAX_PER_PACKET`] in one packet, not produced.
    pub cut: u64,
    /// SNI evidence read from QUIC (IETF or Google), also counted under `SNI` in `by_source`.
    pub sni_quic: u64,
    /// QUIC client Initial packets decrypted.
    pub quic_initials: u64,
    /// QUIC Initial packets that did not open with client keys (server Initials, damage).
    pub quic_undecryptable: u64,
    /// ClientHellos reassembled from several packets (TCP or QUIC) and read to their end.
    pub hello_reassembled: u64,
    /// ClientHello reassemblies evicted unfinished (the per-dispatcher table was full).
    pub reasm_evicted: u64,
    /// ClientHello reassemblies given up (beyond the byte, piece or packet bounds).
    pub reasm_abandoned: u64,
    /// Client SYNs forgotten unused because the SYN memory (4096 per dispatcher) was full.
    pub reasm_syns_forgotten: u64,
}

impl EvidenceCounters {
    pub fn total(&self) -> u64 {
        self.by_source.iter().sum()
    }

    pub fn add(&mut self, o: &EvidenceCounters) {
        for (a, b) in self.by_source.iter_mut().zip(o.by_source) {
            *a += b;
        }
        self.dns_responses += o.dns_responses;
        self.dns_malformed += o.dns_malformed;
        self.cut += o.cut;
        self.sni_quic += o.sni_quic;
        self.quic_initials += o.quic_initials;
        self.quic_undecryptable += o.quic_undecryptable;
        self.hello_reassembled += o.hello_reassembled;
        self.reasm_evicted += o.reasm_evicted;
        self.reasm_abandoned += o.reasm_abandoned;
        self.reasm_syns_forgotten += o.reasm_syns_forgotten;
    }
}

/// Turns packets into evidence. Parsing works on the packet's bytes and stack buffers; the
/// one piece of state is the bounded reassembly of ClientHellos that span packets
/// ([`HelloReader`]).
#[derive(Default)]
pub struct EvidenceParser {
    counters: EvidenceCounters,
    hellos: HelloReader,
}

/// Collects evidence of one packet under the per-packet bound.
struct Out<'a, F: FnMut(Evidence)> {
    emit: &'a mut F,
    n: usize,
    counters: &'a mut EvidenceCounters,
    ts_ns: u64,
    clk_ns: u64,
}

impl<F: FnMut(Evidence)> Out<'_, F> {
    fn push(
        &mut self,
        addr: IpAddr,
        name: Name,
        source: NameSource,
        ttl_s: u32,
        client: Option<IpAddr>,
    ) {
        self.push_own(addr, name, source, ttl_s, client, None);
    }

    /// Like `push`, for a name the connection `own` carried about its own server.
    fn push_own(
        &mut self,
        addr: IpAddr,
        name: Name,
        source: NameSource,
        ttl_s: u32,
        client: Option<IpAddr>,
        own: Option<OwnConn>,
    ) {
        if name.is_empty() || addr.is_unspecified() {
            return;
        }
        if self.n >= MAX_PER_PACKET {
            self.counters.cut += 1;
            return;
        }
        self.n += 1;
        self.counters.by_source[source as usize] += 1;
        (self.emit)(Evidence {
            addr,
            name,
            source,
            ts_ns: self.ts_ns,
            ttl_s,
            client,
            clk_ns: self.clk_ns,
            own,
        });
    }
}

/// A host name as SNI and Host carry it: letters, digits, `-`, `_` and dots, not an address.
fn plausible_host(h: &[u8]) -> bool {
    !h.is_empty()
        && h.len() <= super::NAME_CAP
        && h.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_')
        && std::str::from_utf8(h)
            .ok()
            .and_then(|s| s.parse::<IpAddr>().ok())
            .is_none()
}

impl EvidenceParser {
    pub fn new() -> EvidenceParser {
        EvidenceParser::default()
    }

    pub fn counters(&self) -> EvidenceCounters {
        let mut c = self.counters;
        let h = self.hellos.counters();
        let r = self.hellos.reasm_counters();
        c.sni_quic = h.sni_quic;
        c.quic_initials = h.quic_initials;
        c.quic_undecryptable = h.quic_undecryptable;
        c.hello_reassembled = h.reassembled;
        c.reasm_evicted = r.evicted;
        c.reasm_abandoned = r.abandoned;
        c.reasm_syns_forgotten = h.syns_forgotten;
        c
    }

    /// Calls `emit` for every mapping `p` proves. `clk_ns` is the dispatcher's clock (see
    /// [`Evidence::clk_ns`]).
    pub fn extract(
        &mut self,
        p: &Packet<'_>,
        ts_ns: u64,
        clk_ns: u64,
        mut emit: impl FnMut(Evidence),
    ) {
        if let L4::Tcp {
            src_port,
            dst_port,
            seq,
            flags,
            ..
        } = p.l4
        {
            // A client's SYN: where its data starts, for segments that overtake the first.
            if flags & 0x12 == 0x02 {
                self.hellos.syn(p, (src_port, dst_port), seq);
            }
        }
        if p.payload.is_empty() {
            return;
        }
        let mut out = Out {
            emit: &mut emit,
            n: 0,
            counters: &mut self.counters,
            ts_ns,
            clk_ns,
        };
        match p.l4 {
            L4::Udp { src_port, dst_port } => {
                if src_port == 67 || src_port == 68 || dst_port == 67 || dst_port == 68 {
                    if let Some((addr, host)) = dhcp::host_name(p.payload) {
                        if plausible_host(host) {
                            out.push(addr, Name::new(host), NameSource::Dhcp, 0, None);
                        }
                    }
                    return;
                }
                if src_port != DNS_PORT
                    && dst_port != DNS_PORT
                    && self.hellos.udp(p, (src_port, dst_port), ts_ns, |host| {
                        if plausible_host(host) {
                            let own = OwnConn {
                                client_port: src_port,
                                server_port: dst_port,
                                ip_proto: 17,
                            };
                            let name = Name::new(host);
                            out.push_own(p.dst, name, NameSource::Sni, 0, Some(p.src), Some(own));
                        }
                    })
                {
                    return;
                }
                dns_evidence(p.payload, src_port, dst_port, p.dst, &mut out);
            }
            L4::Tcp {
                src_port,
                dst_port,
                seq,
                ..
            } => {
                if src_port == DNS_PORT || dst_port == DNS_PORT {
                    if let Some(m) = dns::tcp_message(p.payload) {
                        dns_evidence(m, src_port, dst_port, p.dst, &mut out);
                    }
                    return;
                }
                let own = Some(OwnConn {
                    client_port: src_port,
                    server_port: dst_port,
                    ip_proto: 6,
                });
                let hello = self
                    .hellos
                    .tcp(p, (src_port, dst_port), seq, ts_ns, |host| {
                        if plausible_host(host) {
                            let name = Name::new(host);
                            out.push_own(p.dst, name, NameSource::Sni, 0, Some(p.src), own);
                        }
                    });
                if hello {
                    return;
                }
                if let Some(host) = http::request_host(p.payload) {
                    if plausible_host(host) {
                        out.push_own(
                            p.dst,
                            Name::new(host),
                            NameSource::Http,
                            0,
                            Some(p.src),
                            own,
                        );
                    }
                }
            }
            _ => {}
        }
    }
}

/// Which flavour of DNS a port pair speaks, if any (responses come from the service port).
fn dns_flavour(src_port: u16, dst_port: u16) -> Option<NameSource> {
    match (src_port, dst_port) {
        // A resolver's answer, whatever the client's port (even 5353).
        (DNS_PORT, _) => Some(NameSource::A),
        (MDNS_PORT, _) | (_, MDNS_PORT) => Some(NameSource::Mdns),
        (LLMNR_PORT, _) => Some(NameSource::Llmnr),
        _ => None,
    }
}

/// Reads a DNS response. On the DNS, mDNS and LLMNR ports any response counts; on other ports
/// only a message that parses exactly to its last byte with one question and answers (DNS
/// detected by content, not port).
fn dns_evidence<F: FnMut(Evidence)>(
    payload: &[u8],
    src_port: u16,
    dst_port: u16,
    client: IpAddr,
    out: &mut Out<'_, F>,
) {
    let flavour = dns_flavour(src_port, dst_port);
    let Ok(m) = Message::new_checked(payload) else {
        if flavour.is_some() {
            out.counters.dns_malformed += 1;
        }
        return;
    };
    if !m.is_response() || m.opcode() != 0 || m.ancount() == 0 {
        return;
    }
    let parsed = match m.parse() {
        Ok(p) => p,
        Err(_) => {
            if flavour.is_some() {
                out.counters.dns_malformed += 1;
            }
            return;
        }
    };
    let flavour = match flavour {
        Some(f) => f,
        None if parsed.end == payload.len() && m.qdcount() == 1 && m.rcode() == 0 => NameSource::A,
        None => return,
    };
    out.counters.dns_responses += 1;
    match flavour {
        NameSource::Mdns | NameSource::Llmnr => multicast_answers(&m, &parsed, flavour, out),
        _ => unicast_answers(&m, &parsed, client, out),
    }
}

/// mDNS and LLMNR: every address record names its owner; reverse PTRs name their address.
fn multicast_answers<F: FnMut(Evidence)>(
    m: &Message<&[u8]>,
    parsed: &Parsed,
    source: NameSource,
    out: &mut Out<'_, F>,
) {
    let mut owner = Name::default();
    let mut target = Name::default();
    for r in parsed.records() {
        if r.class & 0x7fff != 1 {
            continue;
        }
        match r.rtype {
            rtype::A | rtype::AAAA => {
                let (Some(addr), Ok(_)) = (m.rdata_addr(r), m.read_name(r.name_off, &mut owner))
                else {
                    continue;
                };
                out.push(addr, owner, source, r.ttl, None);
            }
            rtype::PTR => {
                if m.read_name(r.name_off, &mut owner).is_err()
                    || m.rdata_name(r, &mut target).is_err()
                {
                    continue;
                }
                if let Some(addr) = dns::reverse_addr(owner.as_bytes()) {
                    out.push(addr, target, source, r.ttl, None);
                }
            }
            _ => {}
        }
    }
}

/// Unicast DNS: A/AAAA answers name their address with the queried name (through CNAME
/// chains, source `CNAME`); PTR answers name the address of the reverse name.
fn unicast_answers<F: FnMut(Evidence)>(
    m: &Message<&[u8]>,
    parsed: &Parsed,
    client: IpAddr,
    out: &mut Out<'_, F>,
) {
    let Some(q) = parsed.questions().first() else {
        return;
    };
    let mut qname = Name::default();
    if m.read_name(q.name_off, &mut qname).is_err() {
        return;
    }
    // Most answers carry no CNAME: then the 8 KiB table of links is not even initialised.
    if !parsed.answers().any(|r| r.rtype == rtype::CNAME) {
        return address_answers(m, parsed, client, &qname, &[], out);
    }
    // The CNAME links of the answer section: (owner, target).
    let mut links = [(Name::default(), Name::default()); MAX_CNAMES];
    let mut n_links = 0;
    for r in parsed.answers().filter(|r| r.rtype == rtype::CNAME) {
        if n_links == MAX_CNAMES {
            break;
        }
        let (o, t) = &mut links[n_links];
        if m.read_name(r.name_off, o).is_ok() && m.rdata_name(r, t).is_ok() {
            n_links += 1;
        }
    }
    address_answers(m, parsed, client, &qname, &links[..n_links], out);
}

/// The A/AAAA and PTR answers of a unicast response, `links` being its CNAME links
/// (owner, target).
fn address_answers<F: FnMut(Evidence)>(
    m: &Message<&[u8]>,
    parsed: &Parsed,
    client: IpAddr,
    qname: &Name,
    links: &[(Name, Name)],
    out: &mut Out<'_, F>,
) {
    let qname = *qname;
    // True when `owner` is reached from the queried name by following CNAME links.
    let reached = |owner: &Name| -> bool {
        let mut cur = qname;
        for _ in 0..MAX_CNAMES {
            match links.iter().find(|(o, _)| *o == cur) {
                Some((_, t)) => {
                    if t == owner {
                        return true;
                    }
                    cur = *t;
                }
                None => return false,
            }
        }
        false
    };
    let mut owner = Name::default();
    let mut target = Name::default();
    for r in parsed.answers() {
        if r.class != 1 {
            continue;
        }
        match r.rtype {
            rtype::A | rtype::AAAA => {
                let (Some(addr), Ok(_)) = (m.rdata_addr(r), m.read_name(r.name_off, &mut owner))
                else {
                    continue;
                };
                let direct = if r.rtype == rtype::A {
                    NameSource::A
                } else {
                    NameSource::Aaaa
                };
                if owner == qname {
                    out.push(addr, qname, direct, r.ttl, Some(client));
                } else if reached(&owner) {
                    out.push(addr, qname, NameSource::Cname, r.ttl, Some(client));
                } else {
                    out.push(addr, owner, direct, r.ttl, Some(client));
                }
            }
            rtype::PTR => {
                if m.read_name(r.name_off, &mut owner).is_err()
                    || m.rdata_name(r, &mut target).is_err()
                {
                    continue;
                }
                if let Some(addr) = dns::reverse_addr(owner.as_bytes()) {
                    out.push(addr, target, NameSource::Ptr, r.ttl, Some(client));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{DecodeConfig, Decoder};
    use crate::synth::{dns_message, ptr_name, DnsData, DnsRecord, DnsSpec, Trace};
    use std::net::SocketAddr;

    /// Decodes every frame of `t` and collects the evidence.
    fn evidence_of(t: &Trace) -> Vec<Evidence> {
        let mut d = Decoder::new(DecodeConfig::default());
        let mut p = EvidenceParser::new();
        let mut v = Vec::new();
        for f in t.frames() {
            let _ = d.decode(t.link(), f.ts_ns, &f.data, |pkt| {
                p.extract(pkt, f.ts_ns, f.ts_ns, |e| v.push(e));
            });
        }
        v
    }

    fn names(v: &[Evidence]) -> Vec<(String, String, &'static str)> {
        v.iter()
            .map(|e| {
                (
                    e.addr.to_string(),
                    String::from_utf8_lossy(e.name.as_bytes()).into_owned(),
                    e.source.as_str(),
                )
            })
            .collect()
    }

    #[test]
    fn cname_chains_resolve_to_the_queried_name() {
        let mut t = Trace::new();
        let spec = DnsSpec::query("WWW.Example.org", rtype::A)
            .answer(DnsRecord::new(
                "www.example.org",
                60,
                DnsData::Cname("a.cdn.net".into()),
            ))
            .answer(DnsRecord::new(
                "a.cdn.net",
                60,
                DnsData::Cname("b.cdn.net".into()),
            ))
            .answer(DnsRecord::new(
                "b.cdn.net",
                20,
                DnsData::A("198.18.1.1".parse().unwrap()),
            ))
            .answer(DnsRecord::new(
                "other.net",
                20,
                DnsData::A("198.18.1.2".parse().unwrap()),
            ));
        t.dns_exchange(&spec, 1_000_000_000);
        let ev = evidence_of(&t);
        assert_eq!(
            names(&ev),
            [
                ("198.18.1.1".into(), "www.example.org".into(), "CNAME"),
                ("198.18.1.2".into(), "other.net".into(), "A"),
            ]
        );
        assert_eq!(ev[0].client, Some("198.18.0.1".parse().unwrap()));
        assert_eq!(ev[0].ttl_s, 20);
    }

    #[test]
    fn aaaa_ptr_and_mdns() {
        let mut t = Trace::new();
        let v6: std::net::Ipv6Addr = "fd00::7".parse().unwrap();
        t.dns_exchange(
            &DnsSpec::query("v6.example", rtype::AAAA).answer(DnsRecord::new(
                "v6.example",
                9,
                DnsData::Aaaa(v6),
            )),
            1_000_000_000,
        );
        let a: IpAddr = "198.18.5.6".parse().unwrap();
        t.dns_exchange(
            &DnsSpec::query(&ptr_name(a), rtype::PTR).answer(DnsRecord::new(
                &ptr_name(a),
                9,
                DnsData::Ptr("host6.example".into()),
            )),
            2_000_000_000,
        );
        let mut mdns = DnsSpec::query("printer.local", rtype::A).answer(DnsRecord::new(
            "printer.local",
            120,
            DnsData::A("198.18.9.9".parse().unwrap()),
        ));
        mdns.client = SocketAddr::new("198.18.9.9".parse().unwrap(), MDNS_PORT);
        mdns.server = SocketAddr::new("224.0.0.251".parse().unwrap(), MDNS_PORT);
        let msg = dns_message(&mdns, true);
        t.udp(3_000_000_000, mdns.client, mdns.server, &msg);
        assert_eq!(
            names(&evidence_of(&t)),
            [
                ("fd00::7".into(), "v6.example".into(), "AAAA"),
                ("198.18.5.6".into(), "host6.example".into(), "PTR"),
                ("198.18.9.9".into(), "printer.local".into(), "MDNS"),
            ]
        );
    }

    #[test]
    fn dns_on_another_port_only_when_it_parses_exactly() {
        let mut t = Trace::new();
        let spec = DnsSpec::query("odd.example", rtype::A).answer(DnsRecord::new(
            "odd.example",
            9,
            DnsData::A("198.18.2.2".parse().unwrap()),
        ));
        let msg = dns_message(&spec, true);
        let server = SocketAddr::new("198.18.0.53".parse().unwrap(), 5300);
        t.udp(1_000_000_000, server, spec.client, &msg);
        let mut junk = msg.clone();
        junk.push(0);
        t.udp(2_000_000_000, server, spec.client, &junk);
        assert_eq!(
            names(&evidence_of(&t)),
            [("198.18.2.2".into(), "odd.example".into(), "A")]
        );
    }

    #[test]
    fn sni_and_host_name_the_server() {
        let mut t = Trace::new();
        let c: SocketAddr = "198.18.0.1:40000".parse().unwrap();
        let s: SocketAddr = "198.18.3.3:443".parse().unwrap();
        let ch = crate::decode::tls::tests::client_hello("secure.example");
        t.tcp_segment(1_000_000_000, c, s, 0x18, 1, 0, &ch);
        let h: SocketAddr = "198.18.3.4:80".parse().unwrap();
        t.tcp_segment(
            2_000_000_000,
            c,
            h,
            0x18,
            1,
            0,
            b"GET / HTTP/1.1\r\nHost: plain.example\r\n\r\n",
        );
        let ev = evidence_of(&t);
        assert_eq!(
            names(&ev),
            [
                ("198.18.3.3".into(), "secure.example".into(), "SNI"),
                ("198.18.3.4".into(), "plain.example".into(), "HTTP"),
            ]
        );
        assert_eq!(ev[0].client, Some(c.ip()));
    }
}

//! Synthetic traffic for tests and the demo: Ethernet (or raw IP) frames of TCP connections,
//! DNS exchanges, ICMP echoes and plain UDP with chosen timing and correct checksums, and
//! writers for pcap (µs and ns) and pcapng.
//!
//! ```
//! use nameflow::synth::{DnsData, DnsRecord, DnsSpec, TcpSpec, Trace, TsResolution};
//! let mut t = Trace::new();
//! let start = 1_700_000_000_000_000_000;
//! let dns = DnsSpec::query("www.example.test", 1)
//!     .answer(DnsRecord::new("www.example.test", 300, DnsData::A([198, 18, 0, 2].into())));
//! let after_dns = t.dns_exchange(&dns, start);
//! t.tcp_session(&TcpSpec { client_segments: 2, server_segments: 3, ..TcpSpec::default() }, after_dns);
//! let pcap: Vec<u8> = t.pcap_bytes(TsResolution::Micro);
//! assert!(!t.frames().is_empty() && pcap.len() > 24);
//! ```
//!
//! Only the benchmarking range 198.18.0.0/15 and the unique-local range fd00::/8 appear in
//! defaults and examples, so synthetic traffic can never be mistaken for real hosts. This is a
//! test tool: it allocates freely and favours clarity over speed.

use crate::decode::LinkType;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// One synthetic frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthFrame {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The frame's bytes, starting with the link header of the trace's link type.
    pub data: Vec<u8>,
}

/// Time resolution of a classic pcap file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TsResolution {
    /// Magic `a1b2c3d4`: microseconds (nanoseconds are truncated).
    Micro,
    /// Magic `a1b23c4d`: nanoseconds.
    Nano,
}

/// TCP flag bits.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}
use tcp_flags::*;

/// How a synthetic TCP connection ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TcpClose {
    /// Client FIN, server FIN, client ACK.
    Fin,
    /// The client aborts with a RST.
    RstByClient,
    /// The server aborts with a RST.
    RstByServer,
    /// No teardown: the connection is left open.
    Open,
}

/// A TCP connection to synthesise with [`Trace::tcp_session`].
///
/// The shape is fixed so tests can predict every counter: the handshake (SYN, SYN-ACK, ACK),
/// then each client segment followed by a pure ACK from the server, then each server segment
/// followed by a pure ACK from the client, then the teardown. Packets are `step_ns` apart.
#[derive(Clone, Debug)]
pub struct TcpSpec {
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Number of data segments the client sends.
    pub client_segments: usize,
    /// Number of data segments the server sends.
    pub server_segments: usize,
    /// Payload bytes per data segment.
    pub segment_len: usize,
    /// When not empty, the payload of the client's first segment (e.g. an SSH banner).
    pub client_first: Vec<u8>,
    /// When not empty, the payload of the server's first segment.
    pub server_first: Vec<u8>,
    /// Leave out the client's SYN (the capture starts with the SYN-ACK).
    pub missing_syn: bool,
    /// Leave out the whole handshake (the capture starts mid-stream).
    pub no_handshake: bool,
    /// Send the client's first data segment twice (a retransmission).
    pub retransmit_first: bool,
    /// Leave this client data segment out of the capture (a content gap); the server still
    /// acknowledges it, so the bytes count as missed.
    pub gap_at: Option<usize>,
    pub close: TcpClose,
    /// Time between consecutive packets.
    pub step_ns: u64,
    /// Initial sequence numbers.
    pub client_isn: u32,
    pub server_isn: u32,
}

impl Default for TcpSpec {
    fn default() -> Self {
        TcpSpec {
            client: SocketAddr::new(Ipv4Addr::new(198, 18, 0, 1).into(), 40000),
            server: SocketAddr::new(Ipv4Addr::new(198, 18, 0, 2).into(), 80),
            client_segments: 1,
            server_segments: 1,
            segment_len: 100,
            client_first: Vec::new(),
            server_first: Vec::new(),
            missing_syn: false,
            no_handshake: false,
            retransmit_first: false,
            gap_at: None,
            close: TcpClose::Fin,
            step_ns: 1_000_000,
            client_isn: 1_000,
            server_isn: 500_000,
        }
    }
}

/// DNS record data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    Ptr(String),
}

impl DnsData {
    /// The record type number.
    pub fn rtype(&self) -> u16 {
        match self {
            DnsData::A(_) => 1,
            DnsData::Cname(_) => 5,
            DnsData::Ptr(_) => 12,
            DnsData::Aaaa(_) => 28,
        }
    }
}

/// One resource record of a DNS answer section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsRecord {
    pub name: String,
    pub ttl: u32,
    pub data: DnsData,
}

impl DnsRecord {
    pub fn new(name: &str, ttl: u32, data: DnsData) -> DnsRecord {
        DnsRecord {
            name: name.to_owned(),
            ttl,
            data,
        }
    }
}

/// A DNS query and its response over UDP, for [`Trace::dns_exchange`].
#[derive(Clone, Debug)]
pub struct DnsSpec {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub id: u16,
    pub qname: String,
    pub qtype: u16,
    /// The answer section of the response (empty: a NOERROR response with no answers).
    pub answers: Vec<DnsRecord>,
    /// Response code (0 NOERROR, 3 NXDOMAIN, ...).
    pub rcode: u8,
    /// Leave out the response (an unanswered query).
    pub no_response: bool,
    /// Time between the query and the response.
    pub rtt_ns: u64,
}

impl DnsSpec {
    /// A query for `qname` of type `qtype` from 198.18.0.1:53000 to the resolver 198.18.0.53.
    pub fn query(qname: &str, qtype: u16) -> DnsSpec {
        DnsSpec {
            client: SocketAddr::new(Ipv4Addr::new(198, 18, 0, 1).into(), 53000),
            server: SocketAddr::new(Ipv4Addr::new(198, 18, 0, 53).into(), 53),
            id: 0x1234,
            qname: qname.to_owned(),
            qtype,
            answers: Vec::new(),
            rcode: 0,
            no_response: false,
            rtt_ns: 2_000_000,
        }
    }

    /// Adds an answer record.
    pub fn answer(mut self, r: DnsRecord) -> DnsSpec {
        self.answers.push(r);
        self
    }
}

/// The reverse-lookup name of an address (`4.3.2.1.in-addr.arpa`, nibbles under `ip6.arpa`).
pub fn ptr_name(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(a) => {
            let mut s = String::new();
            for b in a.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 15, b >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// A DNS message with name compression: every name (and every suffix of it) written once is
/// referred to by a pointer afterwards, and pointers only ever reach earlier bytes.
pub fn dns_message(spec: &DnsSpec, response: bool) -> Vec<u8> {
    let mut m = Vec::with_capacity(512);
    let mut names: Vec<(String, u16)> = Vec::new();
    m.extend_from_slice(&spec.id.to_be_bytes());
    let flags: u16 = if response {
        0x8180 | u16::from(spec.rcode & 15)
    } else {
        0x0100
    };
    m.extend_from_slice(&flags.to_be_bytes());
    let ancount = if response { spec.answers.len() } else { 0 };
    for n in [1u16, ancount as u16, 0, 0] {
        m.extend_from_slice(&n.to_be_bytes());
    }
    write_dns_name(&mut m, &mut names, &spec.qname);
    m.extend_from_slice(&spec.qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    if response {
        for r in &spec.answers {
            write_dns_name(&mut m, &mut names, &r.name);
            m.extend_from_slice(&r.data.rtype().to_be_bytes());
            m.extend_from_slice(&1u16.to_be_bytes());
            m.extend_from_slice(&r.ttl.to_be_bytes());
            let len_at = m.len();
            m.extend_from_slice(&[0, 0]);
            match &r.data {
                DnsData::A(a) => m.extend_from_slice(&a.octets()),
                DnsData::Aaaa(a) => m.extend_from_slice(&a.octets()),
                DnsData::Cname(n) | DnsData::Ptr(n) => write_dns_name(&mut m, &mut names, n),
            }
            let rdlen = (m.len() - len_at - 2) as u16;
            m[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
        }
    }
    m
}

fn write_dns_name(m: &mut Vec<u8>, names: &mut Vec<(String, u16)>, name: &str) {
    let name = name.trim_end_matches('.');
    let labels: Vec<&str> = if name.is_empty() {
        Vec::new()
    } else {
        name.split('.').collect()
    };
    for i in 0..labels.len() {
        let suffix = labels[i..].join(".").to_ascii_lowercase();
        if let Some(&(_, off)) = names.iter().find(|(s, _)| *s == suffix) {
            m.extend_from_slice(&(0xc000 | off).to_be_bytes());
            return;
        }
        if m.len() < 0x4000 {
            names.push((suffix, m.len() as u16));
        }
        let l = labels[i].as_bytes();
        m.push(l.len().min(63) as u8);
        m.extend_from_slice(&l[..l.len().min(63)]);
    }
    m.push(0);
}

/// A sequence of synthetic frames.
#[derive(Clone, Debug)]
pub struct Trace {
    link: LinkType,
    frames: Vec<SynthFrame>,
    ip_id: u16,
}

impl Default for Trace {
    fn default() -> Self {
        Trace::new()
    }
}

impl Trace {
    /// An empty trace of Ethernet frames.
    pub fn new() -> Trace {
        Trace {
            link: LinkType::ETHERNET,
            frames: Vec::new(),
            ip_id: 1,
        }
    }

    /// An empty trace of raw IP frames (link type 101, no link header).
    pub fn raw_ip() -> Trace {
        Trace {
            link: LinkType::RAW,
            ..Trace::new()
        }
    }

    /// The link type of every frame.
    pub fn link(&self) -> LinkType {
        self.link
    }

    /// The frames in the order they were added.
    pub fn frames(&self) -> &[SynthFrame] {
        &self.frames
    }

    /// Orders the frames by time (stable, so equal times keep their order). Helpers add their
    /// frames in time order, but two helpers can overlap in time.
    pub fn sort_by_time(&mut self) {
        self.frames.sort_by_key(|f| f.ts_ns);
    }

    /// Adds a frame as given.
    pub fn push_frame(&mut self, ts_ns: u64, data: Vec<u8>) {
        self.frames.push(SynthFrame { ts_ns, data });
    }

    /// Adds one IP packet carrying `l4` (a transport header and payload whose checksum field,
    /// at `csum_at` when given, is filled in here over the pseudo-header).
    pub fn ip_packet(
        &mut self,
        ts_ns: u64,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        mut l4: Vec<u8>,
        csum_at: Option<usize>,
    ) {
        if let Some(at) = csum_at {
            l4[at..at + 2].fill(0);
            let c = transport_checksum(src, dst, proto, &l4);
            l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        let mut f = Vec::with_capacity(l4.len() + 54);
        if self.link == LinkType::ETHERNET {
            f.extend_from_slice(&mac_of(dst));
            f.extend_from_slice(&mac_of(src));
            let ethertype: u16 = if src.is_ipv4() { 0x0800 } else { 0x86dd };
            f.extend_from_slice(&ethertype.to_be_bytes());
        }
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let total = (20 + l4.len()) as u16;
                let id = self.ip_id;
                self.ip_id = self.ip_id.wrapping_add(1);
                let mut h = [0u8; 20];
                h[0] = 0x45;
                h[2..4].copy_from_slice(&total.to_be_bytes());
                h[4..6].copy_from_slice(&id.to_be_bytes());
                h[6] = 0x40; // Don't fragment.
                h[8] = 64;
                h[9] = proto;
                h[12..16].copy_from_slice(&s.octets());
                h[16..20].copy_from_slice(&d.octets());
                let c = !ones_sum(0, &h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&h);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
                f.push(proto);
                f.push(64);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
            }
            _ => panic!("synth: mixed IPv4/IPv6 endpoints {src} -> {dst}"),
        }
        f.extend_from_slice(&l4);
        self.push_frame(ts_ns, f);
    }

    /// Adds one TCP segment.
    #[allow(clippy::too_many_arguments)] // One argument per header field keeps calls readable.
    pub fn tcp_segment(
        &mut self,
        ts_ns: u64,
        src: SocketAddr,
        dst: SocketAddr,
        flags: u8,
        seq: u32,
        ack: u32,
        payload: &[u8],
    ) {
        let mut t = Vec::with_capacity(20 + payload.len());
        t.extend_from_slice(&src.port().to_be_bytes());
        t.extend_from_slice(&dst.port().to_be_bytes());
        t.extend_from_slice(&seq.to_be_bytes());
        t.extend_from_slice(&ack.to_be_bytes());
        t.push(5 << 4);
        t.push(flags);
        t.extend_from_slice(&65535u16.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0]);
        t.extend_from_slice(payload);
        self.ip_packet(ts_ns, src.ip(), dst.ip(), 6, t, Some(16));
    }

    /// Adds one UDP datagram.
    pub fn udp(&mut self, ts_ns: u64, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        let mut u = Vec::with_capacity(8 + payload.len());
        u.extend_from_slice(&src.port().to_be_bytes());
        u.extend_from_slice(&dst.port().to_be_bytes());
        u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        self.ip_packet(ts_ns, src.ip(), dst.ip(), 17, u, Some(6));
        // A computed UDP checksum of zero is sent as all ones (zero means "none" in IPv4).
        let f = self.frames.last_mut().expect("just pushed");
        let at = f.data.len() - payload.len() - 2;
        if f.data[at..at + 2] == [0, 0] {
            f.data[at..at + 2].copy_from_slice(&[0xff, 0xff]);
        }
    }

    /// Adds `count` ICMP (or ICMPv6) echo requests from `src` to `dst`, each answered by a reply
    /// `rtt_ns` later; requests are `interval_ns` apart. Returns the time of the last packet.
    #[allow(clippy::too_many_arguments)] // Endpoints, id, count and three times: all needed.
    pub fn icmp_echo(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        id: u16,
        count: u16,
        start_ns: u64,
        interval_ns: u64,
        rtt_ns: u64,
    ) -> u64 {
        let v6 = src.is_ipv6();
        let (req, rep, proto) = if v6 { (128, 129, 58) } else { (8, 0, 1) };
        let mut last = start_ns;
        for seq in 0..count {
            let t = start_ns + u64::from(seq) * interval_ns;
            for (ty, from, to, at) in [(req, src, dst, t), (rep, dst, src, t + rtt_ns)] {
                let mut m = vec![ty, 0, 0, 0];
                m.extend_from_slice(&id.to_be_bytes());
                m.extend_from_slice(&seq.to_be_bytes());
                m.extend_from_slice(b"nameflow synthetic echo payload!");
                if v6 {
                    self.ip_packet(at, from, to, proto, m, Some(2));
                } else {
                    let c = !ones_sum(0, &m);
                    m[2..4].copy_from_slice(&c.to_be_bytes());
                    self.ip_packet(at, from, to, proto, m, None);
                }
                last = at;
            }
        }
        last
    }

    /// Adds a DNS query and (unless `no_response`) its response. Returns the time of the last
    /// packet.
    pub fn dns_exchange(&mut self, spec: &DnsSpec, start_ns: u64) -> u64 {
        self.udp(
            start_ns,
            spec.client,
            spec.server,
            &dns_message(spec, false),
        );
        if spec.no_response {
            return start_ns;
        }
        let t = start_ns + spec.rtt_ns;
        self.udp(t, spec.server, spec.client, &dns_message(spec, true));
        t
    }

    /// Adds a whole TCP connection as [`TcpSpec`] describes. Returns the time of the last
    /// packet.
    pub fn tcp_session(&mut self, spec: &TcpSpec, start_ns: u64) -> u64 {
        let (c, s) = (spec.client, spec.server);
        let mut t = start_ns;
        let mut cseq = spec.client_isn;
        let mut sseq = spec.server_isn;
        let next = |t: &mut u64| {
            let now = *t;
            *t += spec.step_ns;
            now
        };
        if !spec.no_handshake {
            if !spec.missing_syn {
                let at = next(&mut t);
                self.tcp_segment(at, c, s, SYN, cseq, 0, &[]);
            } else {
                next(&mut t);
            }
            let at = next(&mut t);
            self.tcp_segment(at, s, c, SYN | ACK, sseq, cseq.wrapping_add(1), &[]);
            let at = next(&mut t);
            self.tcp_segment(
                at,
                c,
                s,
                ACK,
                cseq.wrapping_add(1),
                sseq.wrapping_add(1),
                &[],
            );
        }
        cseq = cseq.wrapping_add(1);
        sseq = sseq.wrapping_add(1);
        for i in 0..spec.client_segments {
            let payload = segment_payload(&spec.client_first, i, spec.segment_len, b'c');
            if spec.gap_at != Some(i) {
                let at = next(&mut t);
                self.tcp_segment(at, c, s, PSH | ACK, cseq, sseq, &payload);
                if i == 0 && spec.retransmit_first {
                    let at = next(&mut t);
                    self.tcp_segment(at, c, s, PSH | ACK, cseq, sseq, &payload);
                }
            }
            cseq = cseq.wrapping_add(payload.len() as u32);
            let at = next(&mut t);
            self.tcp_segment(at, s, c, ACK, sseq, cseq, &[]);
        }
        for i in 0..spec.server_segments {
            let payload = segment_payload(&spec.server_first, i, spec.segment_len, b's');
            let at = next(&mut t);
            self.tcp_segment(at, s, c, PSH | ACK, sseq, cseq, &payload);
            sseq = sseq.wrapping_add(payload.len() as u32);
            let at = next(&mut t);
            self.tcp_segment(at, c, s, ACK, cseq, sseq, &[]);
        }
        match spec.close {
            TcpClose::Fin => {
                let at = next(&mut t);
                self.tcp_segment(at, c, s, FIN | ACK, cseq, sseq, &[]);
                cseq = cseq.wrapping_add(1);
                let at = next(&mut t);
                self.tcp_segment(at, s, c, FIN | ACK, sseq, cseq, &[]);
                sseq = sseq.wrapping_add(1);
                let at = next(&mut t);
                self.tcp_segment(at, c, s, ACK, cseq, sseq, &[]);
            }
            TcpClose::RstByClient => {
                let at = next(&mut t);
                self.tcp_segment(at, c, s, RST | ACK, cseq, sseq, &[]);
            }
            TcpClose::RstByServer => {
                let at = next(&mut t);
                self.tcp_segment(at, s, c, RST | ACK, sseq, cseq, &[]);
            }
            TcpClose::Open => {}
        }
        t - spec.step_ns
    }

    /// The trace as a classic pcap file.
    pub fn pcap_bytes(&self, res: TsResolution) -> Vec<u8> {
        let mut w = PcapBuilder::new(self.link, res, false);
        for f in &self.frames {
            w.packet(f.ts_ns, &f.data, f.data.len() as u32);
        }
        w.into_bytes()
    }

    /// The trace as a pcapng file with one interface (nanosecond resolution).
    pub fn pcapng_bytes(&self) -> Vec<u8> {
        let mut w = PcapngBuilder::new(false);
        let ifc = w.interface(self.link, 9, 0);
        for f in &self.frames {
            w.enhanced_packet(ifc, f.ts_ns, &f.data, f.data.len() as u32);
        }
        w.into_bytes()
    }

    /// Writes the trace as a classic pcap file.
    pub fn write_pcap(&self, path: &Path, res: TsResolution) -> std::io::Result<()> {
        std::fs::write(path, self.pcap_bytes(res))
    }

    /// Writes the trace as a pcapng file.
    pub fn write_pcapng(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.pcapng_bytes())
    }
}

fn segment_payload(first: &[u8], i: usize, len: usize, fill: u8) -> Vec<u8> {
    if i == 0 && !first.is_empty() {
        first.to_vec()
    } else {
        vec![fill; len]
    }
}

/// A locally administered MAC derived from the address, so each host keeps one MAC.
fn mac_of(ip: IpAddr) -> [u8; 6] {
    let last = match ip {
        IpAddr::V4(a) => a.octets()[3],
        IpAddr::V6(a) => a.octets()[15],
    };
    [0x02, 0, 0, 0, 0, last]
}

/// The one's-complement sum of 16-bit words (RFC 1071), not yet inverted.
fn ones_sum(mut acc: u32, data: &[u8]) -> u16 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        acc += u32::from(*b) << 8;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// An Ethernet `frame` with 802.1Q tags (outermost first) inserted after the MAC addresses,
/// as a trunk port or a QinQ provider network carries it.
pub fn vlan_tagged(frame: &[u8], tags: &[u16]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    for &id in tags {
        out.extend_from_slice(&[0x81, 0x00]);
        out.extend_from_slice(&id.to_be_bytes());
    }
    out.extend_from_slice(&frame[12..]);
    out
}

/// A TCP/UDP/ICMPv6 checksum over the IPv4 or IPv6 pseudo-header and `l4`.
pub fn transport_checksum(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, proto]);
            pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        }
        _ => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            pseudo.extend_from_slice(&v6(src));
            pseudo.extend_from_slice(&v6(dst));
            pseudo.extend_from_slice(&(l4.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, proto]);
        }
    }
    let acc = u32::from(ones_sum(0, &pseudo));
    !ones_sum(acc, l4)
}

/// Writes a classic pcap file record by record.
#[derive(Clone, Debug)]
pub struct PcapBuilder {
    out: Vec<u8>,
    res: TsResolution,
    big_endian: bool,
}

impl PcapBuilder {
    /// Starts a file with snap length 262144.
    pub fn new(link: LinkType, res: TsResolution, big_endian: bool) -> PcapBuilder {
        let mut b = PcapBuilder {
            out: Vec::new(),
            res,
            big_endian,
        };
        let magic = match res {
            TsResolution::Micro => 0xa1b2_c3d4u32,
            TsResolution::Nano => 0xa1b2_3c4d,
        };
        b.u32(magic);
        b.u16(2);
        b.u16(4);
        b.u32(0);
        b.u32(0);
        b.u32(262_144);
        b.u32(link.0);
        b
    }

    fn u16(&mut self, v: u16) {
        let b = if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.out.extend_from_slice(&b);
    }

    fn u32(&mut self, v: u32) {
        let b = if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.out.extend_from_slice(&b);
    }

    /// Appends one record.
    pub fn packet(&mut self, ts_ns: u64, data: &[u8], wire_len: u32) {
        self.record_raw(ts_ns, data.len() as u32, wire_len);
        self.out.extend_from_slice(data);
    }

    /// Appends a record header only, with any caplen (for corrupt-file tests).
    pub fn record_raw(&mut self, ts_ns: u64, caplen: u32, wire_len: u32) {
        let secs = (ts_ns / 1_000_000_000) as u32;
        let frac = match self.res {
            TsResolution::Micro => (ts_ns % 1_000_000_000 / 1_000) as u32,
            TsResolution::Nano => (ts_ns % 1_000_000_000) as u32,
        };
        self.u32(secs);
        self.u32(frac);
        self.u32(caplen);
        self.u32(wire_len);
    }

    /// Byte offset of the next record.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// True before anything was written (never: the header is written at once).
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }
}

/// Writes a pcapng file block by block: sections, interfaces (each with its own link type,
/// `if_tsresol` and `if_tsoffset`), enhanced, simple and obsolete packet blocks, and blocks of
/// any other type.
#[derive(Clone, Debug)]
pub struct PcapngBuilder {
    out: Vec<u8>,
    big_endian: bool,
    /// Per interface of the current section: (tsresol, tsoffset seconds).
    interfaces: Vec<(u8, i64)>,
}

impl PcapngBuilder {
    /// Starts a file with a section header block.
    pub fn new(big_endian: bool) -> PcapngBuilder {
        let mut b = PcapngBuilder {
            out: Vec::new(),
            big_endian,
            interfaces: Vec::new(),
        };
        b.section();
        b
    }

    fn u16v(&self, v: u16) -> [u8; 2] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn u32v(&self, v: u32) -> [u8; 4] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    /// Appends a block of type `ty` with `body`, padding it to 32 bits.
    pub fn block(&mut self, ty: u32, body: &[u8]) {
        let padded = body.len().div_ceil(4) * 4;
        let total = (12 + padded) as u32;
        let (t, l) = (self.u32v(ty), self.u32v(total));
        self.out.extend_from_slice(&t);
        self.out.extend_from_slice(&l);
        self.out.extend_from_slice(body);
        self.out.resize(self.out.len() + padded - body.len(), 0);
        self.out.extend_from_slice(&l);
    }

    /// Starts a new section: interfaces of earlier sections are forgotten.
    pub fn section(&mut self) {
        let mut body = Vec::new();
        body.extend_from_slice(&self.u32v(0x1a2b_3c4d));
        body.extend_from_slice(&self.u16v(1));
        body.extend_from_slice(&self.u16v(0));
        body.extend_from_slice(&[0xff; 8]);
        self.block(0x0a0d_0d0a, &body);
        self.interfaces.clear();
    }

    /// Adds an interface; `tsresol` is the raw `if_tsresol` byte (6 = µs, 9 = ns, 0x80|n =
    /// 2^-n) and `tsoffset_s` the `if_tsoffset` seconds. Returns its interface id.
    pub fn interface(&mut self, link: LinkType, tsresol: u8, tsoffset_s: i64) -> u32 {
        let mut body = Vec::new();
        body.extend_from_slice(&self.u16v(link.0 as u16));
        body.extend_from_slice(&self.u16v(0));
        body.extend_from_slice(&self.u32v(262_144));
        if tsresol != 6 {
            body.extend_from_slice(&self.u16v(9));
            body.extend_from_slice(&self.u16v(1));
            body.extend_from_slice(&[tsresol, 0, 0, 0]);
        }
        if tsoffset_s != 0 {
            body.extend_from_slice(&self.u16v(14));
            body.extend_from_slice(&self.u16v(8));
            let b = if self.big_endian {
                tsoffset_s.to_be_bytes()
            } else {
                tsoffset_s.to_le_bytes()
            };
            body.extend_from_slice(&b);
        }
        body.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
        self.block(1, &body);
        self.interfaces.push((tsresol, tsoffset_s));
        (self.interfaces.len() - 1) as u32
    }

    /// The raw timestamp units of `ts_ns` on interface `ifc`.
    fn units(&self, ifc: u32, ts_ns: u64) -> u64 {
        let (res, off) = self.interfaces[ifc as usize];
        let ns = (i128::from(ts_ns) - i128::from(off) * 1_000_000_000).max(0) as u128;
        let u = if res & 0x80 != 0 {
            (ns << (res & 0x7f)) / 1_000_000_000
        } else if res <= 9 {
            ns / 10u128.pow(9 - u32::from(res))
        } else {
            ns * 10u128.pow(u32::from(res) - 9)
        };
        u as u64
    }

    /// Appends an enhanced packet block.
    pub fn enhanced_packet(&mut self, ifc: u32, ts_ns: u64, data: &[u8], wire_len: u32) {
        let u = self.units(ifc, ts_ns);
        let mut body = Vec::with_capacity(20 + data.len());
        body.extend_from_slice(&self.u32v(ifc));
        body.extend_from_slice(&self.u32v((u >> 32) as u32));
        body.extend_from_slice(&self.u32v(u as u32));
        body.extend_from_slice(&self.u32v(data.len() as u32));
        body.extend_from_slice(&self.u32v(wire_len));
        body.extend_from_slice(data);
        self.block(6, &body);
    }

    /// Appends a simple packet block (interface 0, no timestamp).
    pub fn simple_packet(&mut self, data: &[u8], wire_len: u32) {
        let mut body = Vec::with_capacity(4 + data.len());
        body.extend_from_slice(&self.u32v(wire_len));
        body.extend_from_slice(data);
        self.block(3, &body);
    }

    /// Appends an obsolete packet block (type 2).
    pub fn obsolete_packet(&mut self, ifc: u32, ts_ns: u64, data: &[u8], wire_len: u32) {
        let u = self.units(ifc, ts_ns);
        let mut body = Vec::with_capacity(20 + data.len());
        body.extend_from_slice(&self.u16v(ifc as u16));
        body.extend_from_slice(&self.u16v(0));
        body.extend_from_slice(&self.u32v((u >> 32) as u32));
        body.extend_from_slice(&self.u32v(u as u32));
        body.extend_from_slice(&self.u32v(data.len() as u32));
        body.extend_from_slice(&self.u32v(wire_len));
        body.extend_from_slice(data);
        self.block(2, &body);
    }

    /// Byte offset of the next block.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// True before anything was written (never: the section header is written at once).
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }
}

/// Compresses bytes with gzip (for reader tests).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}

/// A small sample of everyday traffic, for demos and for trying sinks without live traffic:
/// a client that resolves three names and then talks to them (HTTP, a TLS port, SSH), a
/// ping, and a lookup nobody answers. Every address is in the benchmarking range
/// (198.18.0.0/15), and the start time is fixed, so the sample is the same on every run.
pub fn sample_trace() -> Trace {
    let client: IpAddr = Ipv4Addr::new(198, 18, 0, 10).into();
    let mut trace = Trace::new();
    // 2023-11-14 22:13:20 UTC.
    let mut t: u64 = 1_700_000_000_000_000_000;
    let servers: [(&str, [u8; 4], u16, &[u8]); 3] = [
        (
            "www.example.test",
            [198, 19, 1, 80],
            80,
            b"GET / HTTP/1.1\r\nHost: www.example.test\r\n\r\n",
        ),
        ("api.example.test", [198, 19, 2, 43], 443, b""),
        (
            "git.example.test",
            [198, 19, 3, 22],
            22,
            b"SSH-2.0-OpenSSH_9.6\r\n",
        ),
    ];
    for (i, (name, addr, port, first)) in servers.iter().enumerate() {
        let server = Ipv4Addr::from(*addr);
        let mut dns = DnsSpec::query(name, 1).answer(DnsRecord::new(name, 300, DnsData::A(server)));
        dns.client = SocketAddr::new(client, 53_000 + i as u16);
        dns.id = 0x4000 + i as u16;
        t = trace.dns_exchange(&dns, t) + 1_000_000;
        let spec = TcpSpec {
            client: SocketAddr::new(client, 40_000 + i as u16),
            server: SocketAddr::new(server.into(), *port),
            client_segments: 2,
            server_segments: 3,
            client_first: first.to_vec(),
            close: if i == 1 {
                TcpClose::RstByServer
            } else {
                TcpClose::Fin
            },
            ..TcpSpec::default()
        };
        t = trace.tcp_session(&spec, t) + 5_000_000;
    }
    t = trace.icmp_echo(
        client,
        Ipv4Addr::new(198, 19, 0, 1).into(),
        7,
        3,
        t,
        1_000_000_000,
        800_000,
    );
    let mut lost = DnsSpec::query("nowhere.example.test", 28);
    lost.client = SocketAddr::new(client, 53_100);
    lost.no_response = true;
    trace.dns_exchange(&lost, t + 1_000_000);
    trace.sort_by_time();
    trace
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000_000_000;

    /// Parses an Ethernet/IPv4-or-IPv6 frame by hand and checks every checksum; returns
    /// (ip proto, l4 bytes).
    fn check_frame(f: &[u8]) -> (u8, IpAddr, IpAddr, Vec<u8>) {
        let ethertype = u16::from_be_bytes([f[12], f[13]]);
        let ip = &f[14..];
        match ethertype {
            0x0800 => {
                assert_eq!(ip[0], 0x45);
                assert_eq!(ones_sum(0, &ip[..20]), 0xffff, "IPv4 header checksum");
                let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
                assert_eq!(total, ip.len(), "IPv4 total length");
                let src = IpAddr::from([ip[12], ip[13], ip[14], ip[15]]);
                let dst = IpAddr::from([ip[16], ip[17], ip[18], ip[19]]);
                let l4 = &ip[20..];
                if ip[9] != 1 {
                    assert_eq!(transport_checksum(src, dst, ip[9], l4), 0, "L4 checksum");
                } else {
                    assert_eq!(ones_sum(0, l4), 0xffff, "ICMP checksum");
                }
                (ip[9], src, dst, l4.to_vec())
            }
            0x86dd => {
                let plen = u16::from_be_bytes([ip[4], ip[5]]) as usize;
                assert_eq!(plen + 40, ip.len(), "IPv6 payload length");
                let s: [u8; 16] = ip[8..24].try_into().unwrap();
                let d: [u8; 16] = ip[24..40].try_into().unwrap();
                let (src, dst) = (IpAddr::from(s), IpAddr::from(d));
                let l4 = &ip[40..];
                assert_eq!(transport_checksum(src, dst, ip[6], l4), 0, "L4 checksum");
                (ip[6], src, dst, l4.to_vec())
            }
            other => panic!("unexpected ethertype {other:#x}"),
        }
    }

    #[test]
    fn tcp_session_has_expected_shape_and_checksums() {
        let mut t = Trace::new();
        let spec = TcpSpec {
            client_segments: 2,
            server_segments: 3,
            ..TcpSpec::default()
        };
        let end = t.tcp_session(&spec, T0);
        // 3 handshake + 2*2 client + 3*2 server + 3 teardown.
        assert_eq!(t.frames().len(), 16);
        assert_eq!(end, T0 + 15 * spec.step_ns);
        let mut flags = Vec::new();
        for f in t.frames() {
            let (proto, _, _, l4) = check_frame(&f.data);
            assert_eq!(proto, 6);
            flags.push(l4[13]);
        }
        assert_eq!(flags[..3], [SYN, SYN | ACK, ACK]);
        assert_eq!(flags[13..], [FIN | ACK, FIN | ACK, ACK]);
        // The client's second data segment starts where the first ended.
        let seq = |i: usize| {
            let l4 = check_frame(&t.frames()[i].data).3;
            u32::from_be_bytes(l4[4..8].try_into().unwrap())
        };
        assert_eq!(seq(3), spec.client_isn + 1);
        assert_eq!(seq(5), spec.client_isn + 1 + spec.segment_len as u32);
    }

    #[test]
    fn tcp_options_change_the_packet_list() {
        let mut t = Trace::new();
        let spec = TcpSpec {
            missing_syn: true,
            retransmit_first: true,
            gap_at: Some(1),
            client_segments: 3,
            server_segments: 0,
            close: TcpClose::RstByServer,
            client: "[fd00::1]:40000".parse().unwrap(),
            server: "[fd00::2]:22".parse().unwrap(),
            ..TcpSpec::default()
        };
        t.tcp_session(&spec, T0);
        let flags: Vec<u8> = t
            .frames()
            .iter()
            .map(|f| check_frame(&f.data).3[13])
            .collect();
        // SYN-ACK, ACK, seg0, seg0 again, ACK, (seg1 missing) ACK, seg2, ACK, RST.
        assert_eq!(
            flags,
            [
                SYN | ACK,
                ACK,
                PSH | ACK,
                PSH | ACK,
                ACK,
                ACK,
                PSH | ACK,
                ACK,
                RST | ACK
            ]
        );
    }

    fn read_name(m: &[u8], mut at: usize) -> (String, usize) {
        let mut out = Vec::new();
        let mut end = None;
        loop {
            let l = m[at] as usize;
            if l & 0xc0 == 0xc0 {
                let ptr = ((l & 0x3f) << 8) | m[at + 1] as usize;
                assert!(ptr < at, "compression pointers only go backwards");
                end.get_or_insert(at + 2);
                at = ptr;
            } else if l == 0 {
                end.get_or_insert(at + 1);
                break;
            } else {
                out.push(String::from_utf8(m[at + 1..at + 1 + l].to_vec()).unwrap());
                at += 1 + l;
            }
        }
        (out.join("."), end.unwrap())
    }

    #[test]
    fn dns_response_round_trips_with_compression() {
        let spec = DnsSpec::query("www.example.test", 1)
            .answer(DnsRecord::new(
                "www.example.test",
                60,
                DnsData::Cname("edge.cdn.example.test".into()),
            ))
            .answer(DnsRecord::new(
                "edge.cdn.example.test",
                30,
                DnsData::A(Ipv4Addr::new(198, 18, 1, 1)),
            ))
            .answer(DnsRecord::new(
                "edge.cdn.example.test",
                30,
                DnsData::Aaaa("fd00::1:1".parse().unwrap()),
            ));
        let m = dns_message(&spec, true);
        assert_eq!(u16::from_be_bytes([m[6], m[7]]), 3, "ancount");
        let (q, mut at) = read_name(&m, 12);
        assert_eq!(q, "www.example.test");
        at += 4;
        let mut got = Vec::new();
        for _ in 0..3 {
            let (name, next) = read_name(&m, at);
            let ty = u16::from_be_bytes([m[next], m[next + 1]]);
            let ttl = u32::from_be_bytes(m[next + 4..next + 8].try_into().unwrap());
            let rdlen = u16::from_be_bytes([m[next + 8], m[next + 9]]) as usize;
            let rd = next + 10;
            let data = match ty {
                5 => DnsData::Cname(read_name(&m, rd).0),
                1 => DnsData::A(<[u8; 4]>::try_from(&m[rd..rd + 4]).unwrap().into()),
                28 => DnsData::Aaaa(<[u8; 16]>::try_from(&m[rd..rd + 16]).unwrap().into()),
                other => panic!("unexpected type {other}"),
            };
            got.push(DnsRecord { name, ttl, data });
            at = rd + rdlen;
        }
        assert_eq!(at, m.len());
        assert_eq!(got, spec.answers);
        // Spelled out, the names would make 171 bytes; with every repeated suffix compressed
        // the message is 12 (header) + 22 (question) + 23 (CNAME) + 16 (A) + 28 (AAAA).
        assert_eq!(m.len(), 101, "compressed message length");
    }

    #[test]
    fn ptr_names() {
        assert_eq!(
            ptr_name("198.18.0.7".parse().unwrap()),
            "7.0.18.198.in-addr.arpa"
        );
        let v6 = ptr_name("fd00::1".parse().unwrap());
        assert!(v6.starts_with("1.0.0.0.") && v6.ends_with(".0.0.d.f.ip6.arpa"));
    }

    #[test]
    fn dns_and_icmp_frames_have_valid_checksums() {
        let mut t = Trace::new();
        let end = t.dns_exchange(
            &DnsSpec::query("7.0.18.198.in-addr.arpa", 12).answer(DnsRecord::new(
                "7.0.18.198.in-addr.arpa",
                3600,
                DnsData::Ptr("host.example.test".into()),
            )),
            T0,
        );
        t.icmp_echo(
            "198.18.0.1".parse().unwrap(),
            "198.18.0.9".parse().unwrap(),
            7,
            2,
            end,
            1_000_000_000,
            500_000,
        );
        t.icmp_echo(
            "fd00::1".parse().unwrap(),
            "fd00::9".parse().unwrap(),
            7,
            1,
            end,
            1_000_000_000,
            500_000,
        );
        assert_eq!(t.frames().len(), 2 + 4 + 2);
        let protos: Vec<u8> = t.frames().iter().map(|f| check_frame(&f.data).0).collect();
        assert_eq!(protos, [17, 17, 1, 1, 1, 1, 58, 58]);
    }

    #[test]
    fn pcap_layout_is_standard() {
        let mut t = Trace::new();
        t.udp(
            T0 + 123_456_789,
            "198.18.0.1:1000".parse().unwrap(),
            "198.18.0.2:2000".parse().unwrap(),
            b"x",
        );
        let us = t.pcap_bytes(TsResolution::Micro);
        assert_eq!(us[..4], 0xa1b2_c3d4u32.to_le_bytes());
        assert_eq!(us[24..28], ((T0 / 1_000_000_000) as u32).to_le_bytes());
        assert_eq!(us[28..32], 123_456u32.to_le_bytes());
        let ns = t.pcap_bytes(TsResolution::Nano);
        assert_eq!(ns[28..32], 123_456_789u32.to_le_bytes());
        let ng = t.pcapng_bytes();
        assert_eq!(ng[..4], [0x0a, 0x0d, 0x0d, 0x0a]);
        assert_eq!(ng.len() % 4, 0);
    }

    #[test]
    fn frames_decode_back_with_valid_checksums() {
        use crate::decode::{DecodeConfig, Decoder, L4};
        let mut eth = Trace::new();
        let mut raw = Trace::raw_ip();
        for t in [&mut eth, &mut raw] {
            let spec = TcpSpec {
                client_segments: 2,
                server_segments: 1,
                client: "[fd00::1]:40001".parse().unwrap(),
                server: "[fd00::2]:443".parse().unwrap(),
                ..TcpSpec::default()
            };
            let end = t.tcp_session(&spec, T0);
            let end = t.tcp_session(&TcpSpec::default(), end);
            let dns = DnsSpec::query("www.example.test", 28).answer(DnsRecord::new(
                "www.example.test",
                300,
                DnsData::Aaaa("fd00::80".parse().unwrap()),
            ));
            let end = t.dns_exchange(&dns, end);
            t.icmp_echo(
                "198.18.0.1".parse().unwrap(),
                "198.18.0.3".parse().unwrap(),
                1,
                1,
                end,
                1_000,
                1_000,
            );
        }
        for t in [&eth, &raw] {
            let mut dec = Decoder::new(DecodeConfig::default());
            let mut seen = Vec::new();
            for f in t.frames() {
                dec.decode(t.link(), f.ts_ns, &f.data, |p| {
                    assert!(p.checksum_ok, "checksum of {p:?}");
                    assert!(p.encap.is_empty());
                    let ports = match p.l4 {
                        L4::Tcp {
                            src_port, dst_port, ..
                        }
                        | L4::Udp { src_port, dst_port } => (src_port, dst_port),
                        L4::Icmp { icmp_type, .. } => (u16::from(icmp_type), 0),
                        L4::Other => panic!("unexpected transport in {p:?}"),
                    };
                    seen.push((p.src, ports, p.ip_proto, p.payload_len as usize));
                })
                .unwrap_or_else(|e| panic!("frame at {} does not decode: {e:?}", f.ts_ns));
            }
            assert_eq!(seen.len(), t.frames().len(), "one packet per frame");
            let client: IpAddr = "fd00::1".parse().unwrap();
            assert_eq!(seen[0], (client, (40001, 443), 6, 0));
            assert_eq!(seen[3], (client, (40001, 443), 6, 100));
            let udp = seen.iter().filter(|s| s.2 == 17).count();
            let icmp = seen.iter().filter(|s| s.2 == 1).count();
            assert_eq!((udp, icmp), (2, 2));
        }
    }
}

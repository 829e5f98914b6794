//! The generator's traffic templates, built with the project's own synthetic trace builder
//! (`nameflow::synth`), in the benchmarking range 198.18.0.0/15 and in fd00::/8 only.
//!
//! Clients live in 198.18.0.0/16 (and fd00:0:0:1::/64), servers in 198.19.0.0/16 (and
//! fd00:0:0:2::/64). The generator varies the low 16 bits of the client address once per
//! pass over the list (a round), so each template describes `rounds` connections; a client
//! address never leaves its /16 (or /64), so varied traffic stays inside the ranges.

use nameflow::synth::{DnsData, DnsRecord, DnsSpec, TcpSpec, Trace};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Largest frame a template may hold (the BPF side's `GEN_MAX_FRAME`).
pub const MAX_FRAME: usize = 1536;

/// One frame and where the generator patches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub data: Vec<u8>,
    /// Offset of the client address' low 16 bits; 0 when the frame is never varied.
    pub vary_off: u16,
    /// Offset of the IPv4 header checksum; 0 for IPv6.
    pub ip_csum_off: u16,
    /// Offset of the TCP or UDP checksum.
    pub l4_csum_off: u16,
    pub udp: bool,
}

/// A named template list and how the generator varies it.
#[derive(Clone, Debug)]
pub struct TemplateSet {
    pub name: &'static str,
    pub frames: Vec<Template>,
    /// Client address variants (1: none).
    pub rounds: u32,
    /// Added to the client address' low 16 bits per round; at least the number of client
    /// addresses the list uses, so the variants of two templates never collide.
    pub stride: u32,
}

/// Every template set the bench knows, by name.
pub const NAMES: &[&str] = &["udp64", "imix", "tcp", "dns", "synflood"];

/// Builds a template set by name.
pub fn build(name: &str) -> Option<TemplateSet> {
    Some(match name {
        "udp64" => udp64(),
        "imix" => imix(),
        "tcp" => tcp(),
        "dns" => dns(),
        "synflood" => synflood(),
        _ => return None,
    })
}

fn client_v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, (i >> 8) as u8, i as u8)
}

fn server_v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, (i >> 8) as u8, i as u8)
}

fn client_v6(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, i as u16)
}

fn server_v6(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, i as u16)
}

fn is_client(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => a.octets()[..2] == [198, 18],
        IpAddr::V6(a) => a.segments()[..4] == [0xfd00, 0, 0, 1],
    }
}

/// Finds the fields the generator patches in an Ethernet frame built by `synth`.
pub fn describe(data: Vec<u8>) -> Template {
    assert!(
        data.len() <= MAX_FRAME,
        "template of {} bytes is over {MAX_FRAME}",
        data.len()
    );
    let ethertype = u16::from_be_bytes([data[12], data[13]]);
    let (src, dst, proto, l4, ip_csum, src_low, dst_low) = match ethertype {
        0x0800 => {
            let s: [u8; 4] = data[26..30].try_into().expect("4 bytes");
            let d: [u8; 4] = data[30..34].try_into().expect("4 bytes");
            let ihl = usize::from(data[14] & 0x0f) * 4;
            (
                IpAddr::from(s),
                IpAddr::from(d),
                data[23],
                14 + ihl,
                24u16,
                28u16,
                32u16,
            )
        }
        0x86dd => {
            let s: [u8; 16] = data[22..38].try_into().expect("16 bytes");
            let d: [u8; 16] = data[38..54].try_into().expect("16 bytes");
            (IpAddr::from(s), IpAddr::from(d), data[20], 54, 0, 36, 52)
        }
        other => panic!("template with ethertype {other:#06x}"),
    };
    let (l4_csum, udp) = match proto {
        6 => (l4 + 16, false),
        17 => (l4 + 6, true),
        other => panic!("template with IP protocol {other}"),
    };
    let vary_off = if is_client(src) {
        src_low
    } else if is_client(dst) {
        dst_low
    } else {
        0
    };
    Template {
        data,
        vary_off,
        ip_csum_off: ip_csum,
        l4_csum_off: l4_csum as u16,
        udp,
    }
}

fn templates(t: &Trace) -> Vec<Template> {
    t.frames()
        .iter()
        .map(|f| describe(f.data.clone()))
        .collect()
}

/// UDP payload that makes an IPv4 frame `frame_len` bytes long (without FCS).
fn udp_payload(frame_len: usize) -> Vec<u8> {
    vec![0x5a; frame_len - 14 - 20 - 8]
}

/// 64-byte frames on the wire (60 without the FCS) over 1024 UDP flows, 64 variants each:
/// 65,536 flows, every one carrying a packet per pass over the list.
fn udp64() -> TemplateSet {
    let mut t = Trace::new();
    let flows = 1024u32;
    for i in 0..flows {
        let c = SocketAddr::new(client_v4(i).into(), 10_000 + (i % 50_000) as u16);
        let s = SocketAddr::new(server_v4(1 + i % 16).into(), 5_000 + (i % 64) as u16);
        t.udp(0, c, s, &udp_payload(60));
    }
    TemplateSet {
        name: "udp64",
        frames: templates(&t),
        rounds: 64,
        stride: flows,
    }
}

/// Simple IMIX by frame count, 7:4:1 of 60, 590 and 1514-byte frames (64, 594 and 1518 on
/// the wire), over 1536 UDP flows (128 clients, 12 frames each per pass), 64 variants.
fn imix() -> TemplateSet {
    let mut t = Trace::new();
    let clients = 128u32;
    for i in 0..clients {
        for k in 0..12u32 {
            let len = match k {
                0..=6 => 60,
                7..=10 => 590,
                _ => 1514,
            };
            let c = SocketAddr::new(client_v4(i).into(), 20_000 + k as u16);
            let s = SocketAddr::new(server_v4(1 + (i + k) % 32).into(), 6_000 + k as u16);
            t.udp(0, c, s, &udp_payload(len));
        }
    }
    TemplateSet {
        name: "imix",
        frames: templates(&t),
        rounds: 64,
        stride: clients,
    }
}

/// Interleaves per-connection frame lists stage by stage (every connection's first frame,
/// then every second frame, ...), so many connections are open at once, as on a real link.
fn interleave(conns: Vec<Vec<Template>>) -> Vec<Template> {
    let longest = conns.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::with_capacity(conns.iter().map(Vec::len).sum());
    for stage in 0..longest {
        for c in &conns {
            if let Some(f) = c.get(stage) {
                out.push(f.clone());
            }
        }
    }
    out
}

/// Complete TCP connections: handshake, a 200-byte request and its ACK, a 1000-byte response
/// and its ACK, FIN/FIN/ACK (10 frames), 256 at a time, 256 variants: 65,536 connections.
fn tcp() -> TemplateSet {
    let conns = 256u32;
    let mut lists = Vec::new();
    for i in 0..conns {
        let mut t = Trace::new();
        let spec = TcpSpec {
            client: SocketAddr::new(client_v4(i).into(), 30_000 + i as u16),
            server: SocketAddr::new(server_v4(1 + i % 64).into(), 443),
            client_segments: 1,
            server_segments: 1,
            segment_len: 200,
            server_first: vec![b's'; 1000],
            client_isn: 1_000 + i * 7,
            server_isn: 900_000 + i * 13,
            ..TcpSpec::default()
        };
        t.tcp_session(&spec, 0);
        lists.push(templates(&t));
    }
    TemplateSet {
        name: "tcp",
        frames: interleave(lists),
        rounds: 256,
        stride: conns,
    }
}

/// The DNS-heavy mix: a DNS query and its answer (A, or AAAA for every fourth client, over
/// IPv6), then a short TCP connection to the answered address (handshake, FIN/FIN/ACK): 8
/// frames per session, a quarter of them DNS; 512 distinct names, 128 variants of the clients.
fn dns() -> TemplateSet {
    let sessions = 512u32;
    let mut lists = Vec::new();
    for i in 0..sessions {
        let mut t = Trace::new();
        let v6 = i % 4 == 3;
        let name = format!("s{i}.bench.test");
        let (client, server, resolver, data) = if v6 {
            let server = server_v6(1 + i);
            (
                IpAddr::from(client_v6(i)),
                IpAddr::from(server),
                IpAddr::from(server_v6(53)),
                DnsData::Aaaa(server),
            )
        } else {
            let server = server_v4(1 + i);
            (
                IpAddr::from(client_v4(i)),
                IpAddr::from(server),
                IpAddr::from(server_v4(0xff35)),
                DnsData::A(server),
            )
        };
        let mut q =
            DnsSpec::query(&name, if v6 { 28 } else { 1 }).answer(DnsRecord::new(&name, 300, data));
        q.client = SocketAddr::new(client, 40_000 + (i % 20_000) as u16);
        q.server = SocketAddr::new(resolver, 53);
        q.id = i as u16;
        let after = t.dns_exchange(&q, 0);
        let spec = TcpSpec {
            client: SocketAddr::new(client, 50_000 + (i % 10_000) as u16),
            server: SocketAddr::new(server, 443),
            client_segments: 0,
            server_segments: 0,
            ..TcpSpec::default()
        };
        t.tcp_session(&spec, after + 1_000_000);
        lists.push(templates(&t));
    }
    TemplateSet {
        name: "dns",
        frames: interleave(lists),
        rounds: 128,
        stride: sessions,
    }
}

/// SYNs that are never answered, from 4096 client addresses and ports to 8 servers, 16
/// variants: 65,536 half-open attempts per cycle.
fn synflood() -> TemplateSet {
    let mut t = Trace::new();
    let sources = 4096u32;
    for i in 0..sources {
        let c = SocketAddr::new(client_v4(i).into(), 1_024 + (i * 13 % 60_000) as u16);
        let s = SocketAddr::new(server_v4(1 + i % 8).into(), 80);
        t.tcp_segment(0, c, s, nameflow::synth::tcp_flags::SYN, i * 7919, 0, &[]);
    }
    TemplateSet {
        name: "synflood",
        frames: templates(&t),
        rounds: 16,
        stride: sources,
    }
}

/// RFC 1624, eqn. 3, exactly as the BPF generator computes it.
pub fn csum_replace(hc: u16, old: u16, new: u16) -> u16 {
    let mut s = u32::from(!hc) + u32::from(!old) + u32::from(new);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// The frame the generator sends for `t` in round `round`: the same patching as
/// `bench/bench.bpf.c`, used by the tests and by `nameflow-bench templates --pcap`.
pub fn render(t: &Template, round: u32, stride: u32) -> Vec<u8> {
    let mut f = t.data.clone();
    if t.vary_off == 0 || round == 0 {
        return f;
    }
    let word = |f: &[u8], at: u16| u16::from_be_bytes([f[at as usize], f[at as usize + 1]]);
    let put = |f: &mut [u8], at: u16, v: u16| {
        f[at as usize..at as usize + 2].copy_from_slice(&v.to_be_bytes())
    };
    let old = word(&f, t.vary_off);
    let new = old.wrapping_add(round.wrapping_mul(stride) as u16);
    put(&mut f, t.vary_off, new);
    if t.ip_csum_off != 0 {
        let c = csum_replace(word(&f, t.ip_csum_off), old, new);
        put(&mut f, t.ip_csum_off, c);
    }
    if t.l4_csum_off != 0 {
        let mut c = csum_replace(word(&f, t.l4_csum_off), old, new);
        if t.udp && c == 0 {
            c = 0xffff;
        }
        put(&mut f, t.l4_csum_off, c);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use nameflow::capture::Frame;
    use nameflow::decode::{DecodeConfig, LinkType};
    use nameflow::engine::dispatch::{Dispatched, Dispatcher};

    /// Decodes every frame of every round sample with checksum verification on: the
    /// incremental patching must leave every checksum valid.
    #[test]
    fn varied_frames_keep_valid_checksums() {
        for name in NAMES {
            let set = build(name).unwrap();
            let mut d = Dispatcher::new(
                DecodeConfig {
                    verify_checksums: true,
                    ..DecodeConfig::default()
                },
                1,
                Some(0),
                0,
                60_000_000_000,
            );
            let mut packets = 0u64;
            for round in [0, 1, set.rounds / 2, set.rounds - 1] {
                for t in set.frames.iter().step_by(7) {
                    let data = render(t, round, set.stride);
                    assert!(data.len() <= MAX_FRAME);
                    let frame = Frame {
                        ts_ns: 1,
                        link: LinkType::ETHERNET,
                        data: &data,
                        wire_len: data.len() as u32,
                    };
                    d.dispatch(&frame, |x| {
                        if let Dispatched::Packet(..) = x {
                            packets += 1;
                        }
                    })
                    .unwrap_or_else(|e| panic!("{name} round {round}: {e:?}"));
                }
            }
            let c = d.decode_counters();
            assert_eq!(
                c.bad_checksum + c.malformed + c.truncated,
                0,
                "{name}: {c:?}"
            );
            assert!(packets > 0, "{name}: nothing decoded");
        }
    }

    /// Every variant keeps its client inside 198.18.0.0/16 or fd00:0:0:1::/64, and the
    /// variants never collide: each client's low word is below the stride and the rounds
    /// do not wrap the 16 bits.
    #[test]
    fn variants_stay_in_the_benchmark_ranges_and_do_not_collide() {
        for name in NAMES {
            let set = build(name).unwrap();
            assert!(
                u64::from(set.stride) * u64::from(set.rounds) <= 65_536,
                "{name} wraps"
            );
            for t in set.frames.iter().filter(|t| t.vary_off != 0) {
                let v = t.vary_off as usize;
                let low = u16::from_be_bytes([t.data[v], t.data[v + 1]]);
                assert!(u32::from(low) < set.stride, "{name}: client word {low}");
                for round in [1, set.rounds - 1] {
                    let f = render(t, round, set.stride);
                    let prefix = if u16::from_be_bytes([f[12], f[13]]) == 0x0800 {
                        f[v - 2..v].to_vec()
                    } else {
                        f[v - 14..v - 6].to_vec()
                    };
                    let want: &[u8] = if prefix.len() == 2 {
                        &[198, 18]
                    } else {
                        &[0xfd, 0, 0, 0, 0, 0, 0, 1]
                    };
                    assert_eq!(prefix, want, "{name} round {round}");
                }
            }
        }
    }

    #[test]
    fn udp64_frames_are_64_bytes_on_the_wire() {
        let set = build("udp64").unwrap();
        assert!(set.frames.iter().all(|t| t.data.len() == 60));
        let imix = build("imix").unwrap();
        let sizes: Vec<usize> = imix.frames[..12].iter().map(|t| t.data.len()).collect();
        assert_eq!(
            sizes,
            [60, 60, 60, 60, 60, 60, 60, 590, 590, 590, 590, 1514]
        );
    }
}

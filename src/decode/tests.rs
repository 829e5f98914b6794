//! Decoder tests over hand-built frames. The builders compute checksums with their own
//! straightforward 16-bit loop, independent of the decoder's.

use super::*;
use std::net::IpAddr;

// ---------------------------------------------------------------------------------------------
// Builders

fn csum(chunks: &[&[u8]]) -> u16 {
    let mut all = Vec::new();
    for c in chunks {
        all.extend_from_slice(c);
    }
    if all.len() % 2 == 1 {
        all.push(0);
    }
    let mut s: u32 = 0;
    for w in all.chunks(2) {
        s += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn addr(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn pseudo(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => panic!("mixed address families in a test packet"),
    }
    p
}

fn tcp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&1000u32.to_be_bytes());
    t.extend_from_slice(&2000u32.to_be_bytes());
    t.extend_from_slice(&[0x60, flags, 0x20, 0x00, 0, 0, 0, 0]);
    // One option word (MSS 1460) so the data offset is not the minimum.
    t.extend_from_slice(&[2, 4, 0x05, 0xb4]);
    t.extend_from_slice(data);
    let c = csum(&[&pseudo(src, dst, 6, t.len()), &t]);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    let mut c = csum(&[&pseudo(src, dst, 17, u.len()), &u]);
    if c == 0 {
        c = 0xffff;
    }
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

fn icmp4(ty: u8, code: u8, data: &[u8]) -> Vec<u8> {
    let mut i = vec![ty, code, 0, 0, 0, 1, 0, 1];
    i.extend_from_slice(data);
    let c = csum(&[&i]);
    i[2..4].copy_from_slice(&c.to_be_bytes());
    i
}

fn icmp6(src: IpAddr, dst: IpAddr, ty: u8, data: &[u8]) -> Vec<u8> {
    let mut i = vec![ty, 0, 0, 0, 0, 1, 0, 1];
    i.extend_from_slice(data);
    let c = csum(&[&pseudo(src, dst, 58, i.len()), &i]);
    i[2..4].copy_from_slice(&c.to_be_bytes());
    i
}

/// An IPv4 header (with `options`) and payload; `frag` is the flags/offset word.
fn ipv4_full(
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    id: u16,
    frag: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0, "IPv4 options must fill whole words");
    let hl = 20 + options.len();
    let mut h = vec![0x40 | (hl / 4) as u8, 0];
    h.extend_from_slice(&((hl + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
        }
        _ => panic!("ipv4() needs IPv4 addresses"),
    }
    h.extend_from_slice(options);
    let c = csum(&[&h]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn ipv4(src: IpAddr, dst: IpAddr, proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_full(src, dst, proto, 7, 0x4000, &[], payload)
}

/// An IPv6 header whose next header is `nh`, followed by `rest` (extension headers included).
fn ipv6(src: IpAddr, dst: IpAddr, nh: u8, rest: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(rest.len() as u16).to_be_bytes());
    h.extend_from_slice(&[nh, 64]);
    match (src, dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
        }
        _ => panic!("ipv6() needs IPv6 addresses"),
    }
    h.extend_from_slice(rest);
    h
}

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn eth(ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = MAC_B.to_vec();
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&ty.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn a4() -> (IpAddr, IpAddr) {
    (addr("198.18.0.1"), addr("198.18.0.2"))
}

fn a6() -> (IpAddr, IpAddr) {
    (addr("2001:db8::1"), addr("2001:db8::2"))
}

fn udp4_packet() -> Vec<u8> {
    let (s, d) = a4();
    ipv4(s, d, 17, &udp(s, d, 5353, 53, b"hello"))
}

// ---------------------------------------------------------------------------------------------
// Running the decoder

/// An owned copy of what the visitor saw.
#[derive(Clone, Debug)]
struct Seen {
    src: IpAddr,
    dst: IpAddr,
    ip_proto: u8,
    ip_len: u32,
    l4: L4,
    payload_len: u32,
    payload: Vec<u8>,
    checksum_ok: bool,
    encap: Vec<Encap>,
    carries: Option<TunnelKind>,
    vlan: Option<u16>,
    inner_vlan: Option<u16>,
    l2_src: Option<[u8; 6]>,
}

fn run(d: &mut Decoder, link: LinkType, frame: &[u8]) -> (Result<(), DecodeError>, Vec<Seen>) {
    run_at(d, link, 0, frame)
}

fn run_at(
    d: &mut Decoder,
    link: LinkType,
    ts: u64,
    frame: &[u8],
) -> (Result<(), DecodeError>, Vec<Seen>) {
    let mut seen = Vec::new();
    let r = d.decode(link, ts, frame, |p| {
        seen.push(Seen {
            src: p.src,
            dst: p.dst,
            ip_proto: p.ip_proto,
            ip_len: p.ip_len,
            l4: p.l4,
            payload_len: p.payload_len,
            payload: p.payload.to_vec(),
            checksum_ok: p.checksum_ok,
            encap: p.encap.to_vec(),
            carries: p.carries,
            vlan: p.vlan,
            inner_vlan: p.inner_vlan,
            l2_src: p.l2_src,
        })
    });
    (r, seen)
}

fn one(d: &mut Decoder, link: LinkType, frame: &[u8]) -> Seen {
    let (r, seen) = run(d, link, frame);
    assert_eq!(r, Ok(()), "frame should decode: {frame:02x?}");
    assert_eq!(seen.len(), 1, "expected exactly one packet, got {seen:?}");
    seen.into_iter().next().expect("one packet")
}

fn dec() -> Decoder {
    Decoder::new(DecodeConfig::default())
}

// ---------------------------------------------------------------------------------------------
// Link layers

#[test]
fn ethernet_tcp_fields_and_checksum() {
    let (s, d) = a4();
    let seg = tcp(s, d, 40000, 80, 0x18, b"GET / HTTP/1.1\r\n");
    let frame = eth(0x0800, &ipv4(s, d, 6, &seg));
    let p = one(&mut dec(), LinkType::ETHERNET, &frame);
    assert_eq!((p.src, p.dst, p.ip_proto), (s, d, 6));
    assert_eq!(p.ip_len, 20 + 24 + 16);
    assert_eq!(
        p.l4,
        L4::Tcp {
            src_port: 40000,
            dst_port: 80,
            seq: 1000,
            ack: 2000,
            flags: 0x18,
            window: 0x2000
        }
    );
    assert_eq!(p.payload_len, 16);
    assert_eq!(p.payload, b"GET / HTTP/1.1\r\n");
    assert!(p.checksum_ok, "a correct TCP checksum must verify");
    assert_eq!(p.l2_src, Some(MAC_A));
    assert!(p.encap.is_empty() && p.carries.is_none());
}

#[test]
fn ethernet_padding_is_not_payload() {
    let mut frame = eth(0x0800, &udp4_packet());
    frame.extend_from_slice(&[0; 20]);
    let p = one(&mut dec(), LinkType::ETHERNET, &frame);
    assert_eq!(
        p.payload, b"hello",
        "padding after the IP total length must be cut"
    );
    assert!(p.checksum_ok);
}

#[test]
fn every_link_type_reaches_the_same_packet() {
    let ip = udp4_packet();
    let (s6, d6) = a6();
    let ip6 = ipv6(s6, d6, 17, &udp(s6, d6, 1, 2, b"x"));
    let mut cases: Vec<(&str, LinkType, Vec<u8>, IpAddr)> = Vec::new();
    cases.push(("ethernet", LinkType::ETHERNET, eth(0x0800, &ip), a4().0));
    let mut f = vec![2, 0, 0, 0];
    f.extend_from_slice(&ip);
    cases.push(("null little-endian", LinkType::NULL, f, a4().0));
    let mut f = vec![0, 0, 0, 2];
    f.extend_from_slice(&ip);
    cases.push(("null big-endian", LinkType::NULL, f, a4().0));
    for fam in [24u8, 28, 30] {
        let mut f = vec![0, 0, 0, fam];
        f.extend_from_slice(&ip6);
        cases.push(("loop v6", LinkType::LOOP, f, s6));
    }
    for lt in [12, 14, 101, 228] {
        cases.push(("raw v4", LinkType(lt), ip.clone(), a4().0));
    }
    cases.push(("raw v6", LinkType::IPV6, ip6.clone(), s6));
    // SLL: packet type, ARPHRD_ETHER, address length 6, address padded to 8, protocol.
    let mut f = vec![0, 0, 0, 1, 0, 6];
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&[0, 0, 0x08, 0x00]);
    f.extend_from_slice(&ip);
    cases.push(("sll", LinkType::LINUX_SLL, f, a4().0));
    // SLL2: protocol, reserved, ifindex, ARPHRD, packet type, address length, address.
    let mut f = vec![0x86, 0xdd, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6];
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&ip6);
    cases.push(("sll2", LinkType::LINUX_SLL2, f, s6));
    // FDDI: frame control, addresses, then LLC/SNAP.
    let mut f = vec![0x50];
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&[0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00]);
    f.extend_from_slice(&ip);
    cases.push(("fddi", LinkType::FDDI, f, a4().0));
    // 802.3 with a length field, then LLC/SNAP.
    let mut snap = vec![0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00];
    snap.extend_from_slice(&ip);
    cases.push((
        "802.3 snap",
        LinkType::ETHERNET,
        eth(snap.len() as u16, &snap),
        a4().0,
    ));

    for (name, lt, frame, src) in cases {
        let mut d = dec();
        let (r, seen) = run(&mut d, lt, &frame);
        assert_eq!(r, Ok(()), "{name}: decode failed");
        assert_eq!(seen.len(), 1, "{name}: one packet expected");
        assert_eq!(seen[0].src, src, "{name}: wrong source address");
        assert!(seen[0].checksum_ok, "{name}: checksum should verify");
    }
}

#[test]
fn sll_address_gives_l2_source() {
    let mut f = vec![0, 0, 0, 1, 0, 6];
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&[0, 0, 0x08, 0x00]);
    f.extend_from_slice(&udp4_packet());
    assert_eq!(one(&mut dec(), LinkType::LINUX_SLL, &f).l2_src, Some(MAC_A));
}

#[test]
fn non_ip_and_unknown_links_are_counted() {
    let mut d = dec();
    let arp = eth(0x0806, &[0; 28]);
    assert_eq!(
        run(&mut d, LinkType::ETHERNET, &arp).0,
        Err(DecodeError::NotIp)
    );
    let llc = eth(3, &[0x42, 0x42, 0x03]);
    assert_eq!(
        run(&mut d, LinkType::ETHERNET, &llc).0,
        Err(DecodeError::NotIp)
    );
    assert_eq!(
        run(&mut d, LinkType(9999), &arp).0,
        Err(DecodeError::UnsupportedLink)
    );
    let f = [0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(run(&mut d, LinkType::LOOP, &f).0, Err(DecodeError::NotIp));
    let c = d.counters();
    assert_eq!(
        (c.frames, c.not_ip, c.unsupported_link, c.packets),
        (4, 3, 1, 0)
    );
}

#[test]
fn vlan_qinq_mpls_pppoe_fabricpath() {
    let ip = udp4_packet();
    let (s6, d6) = a6();
    // 802.1Q alone.
    let mut tag = vec![0x20, 0x64, 0x08, 0x00];
    tag.extend_from_slice(&ip);
    let p = one(&mut dec(), LinkType::ETHERNET, &eth(0x8100, &tag));
    assert_eq!((p.vlan, p.inner_vlan), (Some(100), None));
    // QinQ: 802.1ad outer 100, 802.1Q inner 200; also the old 0x9100 outer tag.
    for outer in [0x88a8u16, 0x9100] {
        let mut tags = vec![0x00, 0x64, 0x81, 0x00, 0x00, 0xc8, 0x08, 0x00];
        tags.extend_from_slice(&ip);
        let p = one(&mut dec(), LinkType::ETHERNET, &eth(outer, &tags));
        assert_eq!(
            (p.vlan, p.inner_vlan),
            (Some(100), Some(200)),
            "outer {outer:#x}"
        );
    }
    // MPLS: two labels, the second bottom of stack, then IPv6 guessed from the nibble.
    let mut m = vec![0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40];
    m.extend_from_slice(&ipv6(s6, d6, 17, &udp(s6, d6, 1, 2, b"mpls")));
    for ty in [0x8847u16, 0x8848] {
        let p = one(&mut dec(), LinkType::ETHERNET, &eth(ty, &m));
        assert_eq!(p.payload, b"mpls");
    }
    // PPPoE session carrying ICMPv6.
    let inner = ipv6(s6, d6, 58, &icmp6(s6, d6, 128, b"ping"));
    let mut pp = vec![0x11, 0x00, 0x12, 0x34];
    pp.extend_from_slice(&((inner.len() + 2) as u16).to_be_bytes());
    pp.extend_from_slice(&[0x00, 0x57]);
    pp.extend_from_slice(&inner);
    let p = one(&mut dec(), LinkType::ETHERNET, &eth(0x8864, &pp));
    assert_eq!(
        p.l4,
        L4::Icmp {
            v6: true,
            icmp_type: 128,
            code: 0
        }
    );
    assert!(p.checksum_ok, "ICMPv6 checksum covers the pseudo-header");
    // PPPoE with a non-IP PPP protocol (LCP).
    let mut lcp = vec![0x11, 0, 0, 1, 0, 4, 0xc0, 0x21];
    lcp.extend_from_slice(&[1, 2]);
    assert_eq!(
        run(&mut dec(), LinkType::ETHERNET, &eth(0x8864, &lcp)).0,
        Err(DecodeError::NotIp)
    );
    // FabricPath: 16-byte header (outer MACs, 0x8903, FTAG/TTL), then an Ethernet frame.
    let mut fp = vec![0x00, 0x01];
    fp.extend_from_slice(&eth(0x0800, &ip));
    let p = one(&mut dec(), LinkType::ETHERNET, &eth(0x8903, &fp));
    assert_eq!(p.payload, b"hello");
    assert_eq!(p.l2_src, Some(MAC_A));
}

/// An 802.11 QoS data frame from the distribution system (From DS), addresses 1-3, then the
/// QoS control field (A-MSDU bit as asked) and `body`.
fn wifi_qos(amsdu: bool, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0x88, 0x02, 0, 0];
    f.extend_from_slice(&MAC_B); // receiver = destination
    f.extend_from_slice(&[2, 0, 0, 0, 0, 9]); // transmitter (the access point)
    f.extend_from_slice(&MAC_A); // source
    f.extend_from_slice(&[0, 0]); // sequence control
    f.extend_from_slice(&[if amsdu { 0x80 } else { 0 }, 0]);
    f.extend_from_slice(body);
    f
}

fn snap_ip(ip: &[u8]) -> Vec<u8> {
    let mut b = vec![0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00];
    b.extend_from_slice(ip);
    b
}

/// A-MSDU subframes of `packets` (each LLC/SNAP + IPv4), padded to four bytes but the last.
fn amsdu(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut b = Vec::new();
    for (i, ip) in packets.iter().enumerate() {
        let sub = snap_ip(ip);
        b.extend_from_slice(&MAC_B);
        b.extend_from_slice(&MAC_A);
        b.extend_from_slice(&(sub.len() as u16).to_be_bytes());
        b.extend_from_slice(&sub);
        if i + 1 < packets.len() {
            while b.len() % 4 != 0 {
                b.push(0xee);
            }
        }
    }
    b
}

#[test]
fn ppp_links_pbb_and_vntag() {
    let ip = udp4_packet();
    let (s6, d6) = a6();
    let ip6 = ipv6(s6, d6, 17, &udp(s6, d6, 1, 2, b"x"));
    // DLT_PPP without framing, with HDLC-like framing, and MPLS in PPP.
    let mut f = vec![0x00, 0x57];
    f.extend_from_slice(&ip6);
    assert_eq!(one(&mut dec(), LinkType::PPP, &f).src, s6);
    let mut f = vec![0xff, 0x03, 0x00, 0x21];
    f.extend_from_slice(&ip);
    assert_eq!(one(&mut dec(), LinkType::PPP, &f).src, a4().0);
    let mut f = vec![0x02, 0x81, 0x00, 0x01, 0x01, 0x40];
    f.extend_from_slice(&ip);
    assert_eq!(one(&mut dec(), LinkType::PPP, &f).payload, b"hello");
    // LCP carries no packet.
    assert_eq!(
        run(&mut dec(), LinkType::PPP, &[0xc0, 0x21, 1, 1, 0, 4]).0,
        Err(DecodeError::NotIp)
    );
    // PPP in HDLC framing (DLT 50).
    let mut f = vec![0xff, 0x03, 0x00, 0x21];
    f.extend_from_slice(&ip);
    assert_eq!(one(&mut dec(), LinkType::PPP_HDLC, &f).payload, b"hello");
    // 802.1ah PBB behind a backbone VLAN tag: I-TAG, customer addresses, customer VLAN, IPv4.
    let cust_dst = [4, 0, 0, 0, 0, 4];
    let cust_src = [6, 0, 0, 0, 0, 6];
    let mut pbb = vec![0x00, 0x1e, 0x88, 0xe7, 0x00, 0x1e, 0xbb, 0x30];
    pbb.extend_from_slice(&cust_dst);
    pbb.extend_from_slice(&cust_src);
    pbb.extend_from_slice(&[0x81, 0x00, 0x00, 0x07, 0x08, 0x00]);
    pbb.extend_from_slice(&ip);
    let p = one(&mut dec(), LinkType::ETHERNET, &eth(0x8100, &pbb));
    assert_eq!(p.payload, b"hello");
    assert_eq!(
        p.l2_src,
        Some(cust_src),
        "PBB gives the customer's addresses"
    );
    assert_eq!((p.vlan, p.inner_vlan), (Some(30), Some(7)));
    // VN-Tag between two 802.1Q tags.
    let mut vn = vec![
        0x00, 0xfa, 0x89, 0x26, 0, 0, 0, 0x33, 0x81, 0x00, 0x00, 0xfa, 0x08, 0x00,
    ];
    vn.extend_from_slice(&ip);
    let p = one(&mut dec(), LinkType::ETHERNET, &eth(0x8100, &vn));
    assert_eq!(
        (p.vlan, p.inner_vlan, p.payload.as_slice()),
        (Some(250), Some(250), &b"hello"[..])
    );
}

#[test]
fn ieee80211_radiotap_and_amsdu() {
    let ip = udp4_packet();
    // A plain 802.11 data frame (no QoS, To DS): addresses BSSID, source, destination.
    let mut f = vec![0x08, 0x01, 0, 0];
    f.extend_from_slice(&[2, 0, 0, 0, 0, 9]);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&snap_ip(&ip));
    let p = one(&mut dec(), LinkType::IEEE802_11, &f);
    assert_eq!(
        (p.l2_src, p.payload.as_slice()),
        (Some(MAC_A), &b"hello"[..])
    );
    // The same behind a radiotap header of 12 bytes.
    let mut rt = vec![0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    rt.extend_from_slice(&f);
    assert_eq!(
        one(&mut dec(), LinkType::IEEE802_11_RADIOTAP, &rt).payload,
        b"hello"
    );
    // QoS data from the DS.
    let q = wifi_qos(false, &snap_ip(&ip));
    assert_eq!(
        one(&mut dec(), LinkType::IEEE802_11, &q).l2_src,
        Some(MAC_A)
    );
    // Management frames, null data and protected frames carry nothing to track; a non-zero
    // OUI is not encapsulated Ethernet.
    let mut beacon = f.clone();
    beacon[0] = 0x80;
    let mut null = f.clone();
    null[0] = 0x48;
    let mut protected = f.clone();
    protected[1] |= 0x40;
    let mut oui = f.clone();
    oui[24 + 5] = 1;
    for (name, fr) in [
        ("beacon", beacon),
        ("null", null),
        ("protected", protected),
        ("oui", oui),
    ] {
        assert_eq!(
            run(&mut dec(), LinkType::IEEE802_11, &fr).0,
            Err(DecodeError::NotIp),
            "{name}"
        );
    }
    // A-MSDU with three packets of odd and even lengths: each is visited, in order.
    let (s, d) = a4();
    let pkts: Vec<Vec<u8>> = [&b"one"[..], b"four", b"fifth"]
        .iter()
        .map(|data| ipv4(s, d, 17, &udp(s, d, 5353, 53, data)))
        .collect();
    let frame = wifi_qos(true, &amsdu(&pkts));
    let mut dc = dec();
    let (r, seen) = run(&mut dc, LinkType::IEEE802_11, &frame);
    assert_eq!(r, Ok(()));
    let got: Vec<&[u8]> = seen.iter().map(|p| p.payload.as_slice()).collect();
    assert_eq!(got, [&b"one"[..], b"four", b"fifth"]);
    assert_eq!(dc.counters().packets, 3);
    // Cut inside the third subframe: the first two stand, the cut is counted.
    let mut dc = dec();
    let (r, seen) = run(&mut dc, LinkType::IEEE802_11, &frame[..frame.len() - 3]);
    assert_eq!((r, seen.len()), (Ok(()), 2));
    assert_eq!(dc.counters().truncated, 1);
}

#[test]
fn aruba_gre_carries_80211_amsdu() {
    let (s, d) = a4();
    let (os, od) = (addr("10.1.0.1"), addr("10.1.0.2"));
    let pkts: Vec<Vec<u8>> = [&b"a"[..], b"bb"]
        .iter()
        .map(|data| ipv4(s, d, 6, &tcp(s, d, 443, 49392, 0x18, data)))
        .collect();
    for proto in [0x8200u16, 0x8240, 0x8370, 0x9000] {
        let mut g = proto.to_be_bytes().to_vec();
        g.splice(0..0, [0, 0]);
        g.extend_from_slice(&wifi_qos(true, &amsdu(&pkts)));
        let mut dc = dec();
        let (r, seen) = run(&mut dc, LinkType::RAW, &ipv4(os, od, 47, &g));
        assert_eq!(r, Ok(()), "aruba {proto:#x}");
        assert_eq!(seen.len(), 2, "aruba {proto:#x}: both subframes");
        assert!(seen.iter().all(|p| p.encap.len() == 1
            && p.encap[0].kind == TunnelKind::Gre
            && p.encap[0].src == os));
        assert_eq!(seen[1].payload, b"bb");
    }
    // 0x8371 fails Zeek's Aruba test (low nibble set) and is no ethertype we know.
    let mut g = vec![0, 0, 0x83, 0x71];
    g.extend_from_slice(&wifi_qos(true, &amsdu(&pkts)));
    assert_eq!(
        run(&mut dec(), LinkType::RAW, &ipv4(os, od, 47, &g)).0,
        Err(DecodeError::NotIp)
    );
}

// ---------------------------------------------------------------------------------------------
// IP

#[test]
fn tcp_header_cut_inside_its_options_still_gives_the_packet() {
    let (s, d) = a4();
    let seg = tcp(s, d, 443, 56960, 0x12, b"");
    let mut pkt = ipv4(s, d, 6, &seg);
    // The test segment has 24 header bytes; keep 22 of them (the capture cut the options).
    pkt.truncate(20 + 22);
    let p = one(&mut dec(), LinkType::RAW, &pkt);
    assert!(p.payload.is_empty());
    assert!(matches!(
        p.l4,
        L4::Tcp {
            src_port: 443,
            flags: 0x12,
            ..
        }
    ));
    let mut dc = dec();
    let mut seen_cut = false;
    let _ = dc.decode(LinkType::RAW, 0, &pkt, |p| seen_cut = p.header_cut);
    assert!(seen_cut, "the packet is marked as cut");
    // Less than the fixed header is still truncated.
    pkt.truncate(20 + 19);
    assert_eq!(
        run(&mut dec(), LinkType::RAW, &pkt).0,
        Err(DecodeError::Truncated)
    );
}

#[test]
fn ipv4_options_are_skipped() {
    let (s, d) = a4();
    let pkt = ipv4_full(s, d, 17, 1, 0, &[1, 1, 1, 0], &udp(s, d, 1, 2, b"opt"));
    let p = one(&mut dec(), LinkType::RAW, &pkt);
    assert_eq!(p.ip_len, 24 + 8 + 3);
    assert_eq!(p.payload, b"opt");
    // An IHL below five is malformed.
    let mut bad = pkt.clone();
    bad[0] = 0x44;
    assert_eq!(
        run(&mut dec(), LinkType::RAW, &bad).0,
        Err(DecodeError::Malformed)
    );
}

#[test]
fn ipv6_extension_headers_and_routing_final_destination() {
    let (s, d) = a6();
    let fin = addr("2001:db8::99");
    let seg = udp(s, fin, 1, 2, b"ext");
    // Hop-by-hop (8), routing type 0 with one address and one segment left (24), destination
    // options (8), AH (12 bytes: length field 1), then UDP.
    let mut ext = vec![43, 0, 1, 4, 0, 0, 0, 0];
    ext.extend_from_slice(&[60, 2, 0, 1, 0, 0, 0, 0]);
    if let IpAddr::V6(f) = fin {
        ext.extend_from_slice(&f.octets());
    }
    ext.extend_from_slice(&[51, 0, 1, 4, 0, 0, 0, 0]);
    ext.extend_from_slice(&[17, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    ext.extend_from_slice(&seg);
    let pkt = ipv6(s, d, 0, &ext);
    let p = one(&mut dec(), LinkType::RAW, &pkt);
    assert_eq!(p.ip_proto, 17);
    assert_eq!(
        p.dst, fin,
        "a routing header with segments left names the final destination"
    );
    assert_eq!(p.ip_len as usize, pkt.len());
    assert_eq!(p.payload, b"ext");
    assert!(
        p.checksum_ok,
        "the pseudo-header must use the final destination"
    );
}

#[test]
fn deep_extension_header_chain_terminates() {
    let (s, d) = a6();
    // 2000 destination-options headers (16 KB) then UDP: linear work, no recursion.
    let mut ext = Vec::new();
    for _ in 0..2000 {
        ext.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
    }
    let last = ext.len() - 8;
    ext[last] = 17;
    ext.extend_from_slice(&udp(s, d, 1, 2, b"deep"));
    let pkt = ipv6(s, d, 60, &ext);
    let p = one(&mut dec(), LinkType::RAW, &pkt);
    assert_eq!(p.payload, b"deep");
    // The same chain cut short is an error, not a hang.
    assert_eq!(
        run(&mut dec(), LinkType::RAW, &pkt[..5000]).0,
        Err(DecodeError::Truncated)
    );
}

fn v4_frags(payload: &[u8], size: usize, id: u16) -> Vec<Vec<u8>> {
    let (s, d) = a4();
    let mut out = Vec::new();
    let mut off = 0;
    while off < payload.len() {
        let end = (off + size).min(payload.len());
        let mf = if end < payload.len() { 0x2000 } else { 0 };
        out.push(ipv4_full(
            s,
            d,
            17,
            id,
            mf | (off / 8) as u16,
            &[],
            &payload[off..end],
        ));
        off = end;
    }
    out
}

#[test]
fn ipv4_fragments_in_and_out_of_order() {
    let (s, d) = a4();
    let data: Vec<u8> = (0..100u8).collect();
    let dgram = udp(s, d, 1000, 2000, &data);
    for order in [[0usize, 1, 2], [2, 0, 1], [1, 2, 0]] {
        let frags = v4_frags(&dgram, 40, 9);
        let mut d = dec();
        let mut got = Vec::new();
        for (n, &i) in order.iter().enumerate() {
            let (r, seen) = run(&mut d, LinkType::RAW, &frags[i]);
            if n < 2 {
                assert_eq!(r, Err(DecodeError::FragmentHeld), "order {order:?}");
            } else {
                assert_eq!(r, Ok(()), "order {order:?}");
            }
            got.extend(seen);
        }
        assert_eq!(got.len(), 1, "one reassembled packet for order {order:?}");
        let p = &got[0];
        assert_eq!(p.ip_len as usize, 20 + dgram.len());
        assert_eq!(p.payload, data);
        assert_eq!(p.payload_len, 100);
        assert!(
            p.checksum_ok,
            "the UDP checksum covers the reassembled datagram"
        );
        let c = d.counters();
        assert_eq!(
            (c.fragments, c.reassembled, c.fragments_dropped, c.packets),
            (3, 1, 0, 1)
        );
    }
}

#[test]
fn ipv4_overlapping_fragment_is_dropped_and_counted() {
    let (s, d) = a4();
    let dgram = udp(s, d, 1, 2, &[7u8; 64]);
    let frags = v4_frags(&dgram, 32, 3);
    let mut dc = dec();
    assert_eq!(
        run(&mut dc, LinkType::RAW, &frags[0]).0,
        Err(DecodeError::FragmentHeld)
    );
    // A fragment at offset 16 overlaps the first one.
    let overlap = ipv4_full(s, d, 17, 3, 0x2000 | 2, &[], &[0u8; 16]);
    assert_eq!(
        run(&mut dc, LinkType::RAW, &overlap).0,
        Err(DecodeError::FragmentDropped)
    );
    assert_eq!(dc.counters().fragments_dropped, 1);
    // The datagram still completes with the right fragments.
    assert_eq!(
        run(&mut dc, LinkType::RAW, &frags[1]).0,
        Err(DecodeError::FragmentHeld)
    );
    let (r, seen) = run(&mut dc, LinkType::RAW, &frags[2]);
    assert_eq!(r, Ok(()));
    assert!(seen[0].checksum_ok);
}

#[test]
fn fragment_bounds_and_timeout() {
    let cfg = DecodeConfig {
        max_frag_datagrams: 2,
        max_frag_bytes: 1000,
        frag_timeout_ns: 1_000,
        ..DecodeConfig::default()
    };
    let (s, d) = a4();
    let mut dc = Decoder::new(cfg);
    // Three datagrams in flight with room for two: the oldest is evicted.
    for id in 1..=3u16 {
        let f = ipv4_full(s, d, 17, id, 0x2000, &[], &[0u8; 16]);
        assert_eq!(
            run(&mut dc, LinkType::RAW, &f).0,
            Err(DecodeError::FragmentHeld)
        );
    }
    assert_eq!(
        dc.counters().fragments_dropped,
        1,
        "eviction drops the held fragment"
    );
    // A fragment reaching past the byte bound is refused.
    let big = ipv4_full(s, d, 17, 9, 0x2000 | 200, &[], &[0u8; 8]);
    assert_eq!(
        run(&mut dc, LinkType::RAW, &big).0,
        Err(DecodeError::FragmentDropped)
    );
    // A fragment past the 64 KiB datagram limit is refused.
    let huge = ipv4_full(s, d, 17, 10, 0x1fff, &[], &[0u8; 16]);
    assert_eq!(
        run(&mut dc, LinkType::RAW, &huge).0,
        Err(DecodeError::FragmentDropped)
    );
    // After the timeout the completion of an expired datagram finds nothing to join.
    let tail = ipv4_full(s, d, 17, 3, 2, &[], &[0u8; 8]);
    assert_eq!(
        run_at(&mut dc, LinkType::RAW, 10_000, &tail).0,
        Err(DecodeError::FragmentHeld)
    );
    // A truncated fragment cannot be reassembled.
    let f = ipv4_full(s, d, 17, 11, 0x2000, &[], &[0u8; 16]);
    assert_eq!(
        run(&mut dc, LinkType::RAW, &f[..30]).0,
        Err(DecodeError::FragmentDropped)
    );
}

#[test]
fn ipv6_fragments_count_unfragmentable_headers() {
    let (s, d) = a6();
    let data = [5u8; 60];
    let seg = udp(s, d, 53, 5353, &data);
    // Hop-by-hop (unfragmentable, 8 bytes) then the fragment header.
    let hbh = [44u8, 0, 1, 4, 0, 0, 0, 0];
    let frag = |off: usize, more: bool, part: &[u8]| {
        let mut e = hbh.to_vec();
        let w = (off as u16) | u16::from(more);
        e.extend_from_slice(&[17, 0]);
        e.extend_from_slice(&w.to_be_bytes());
        e.extend_from_slice(&0xdead_beefu32.to_be_bytes());
        e.extend_from_slice(part);
        ipv6(s, d, 0, &e)
    };
    let f1 = frag(0, true, &seg[..32]);
    let f2 = frag(32, false, &seg[32..]);
    let mut dc = dec();
    assert_eq!(
        run(&mut dc, LinkType::RAW, &f2).0,
        Err(DecodeError::FragmentHeld)
    );
    let (r, seen) = run(&mut dc, LinkType::RAW, &f1);
    assert_eq!(r, Ok(()));
    let p = &seen[0];
    assert_eq!(
        p.ip_len as usize,
        40 + 8 + seg.len(),
        "40 + unfragmentable + reassembled"
    );
    assert_eq!(p.payload, data);
    assert!(p.checksum_ok);
    // An atomic fragment (offset 0, no more) is just a packet.
    let atomic = frag(0, false, &seg);
    let p = one(&mut dec(), LinkType::RAW, &atomic);
    assert_eq!(p.payload, data);
}

// ---------------------------------------------------------------------------------------------
// Checksums

#[test]
fn checksums_good_bad_and_unverifiable() {
    let (s, d) = a4();
    // Bad TCP checksum: visited, flagged, counted.
    let mut seg = tcp(s, d, 1, 2, 0x02, b"");
    seg[16] ^= 0xff;
    let p = one(&mut dec(), LinkType::RAW, &ipv4(s, d, 6, &seg));
    assert!(!p.checksum_ok);
    // The same with validation off is fine.
    let mut nv = Decoder::new(DecodeConfig {
        verify_checksums: false,
        ..DecodeConfig::default()
    });
    assert!(one(&mut nv, LinkType::RAW, &ipv4(s, d, 6, &seg)).checksum_ok);
    // A bad IPv4 header checksum is an error.
    let mut pkt = udp4_packet();
    pkt[10] ^= 1;
    let mut dc = dec();
    assert_eq!(
        run(&mut dc, LinkType::RAW, &pkt).0,
        Err(DecodeError::BadIpChecksum)
    );
    assert_eq!(dc.counters().bad_checksum, 1);
    // IPv4 UDP with checksum zero means none.
    let mut u = udp(s, d, 1, 2, b"abc");
    u[6..8].copy_from_slice(&[0, 0]);
    assert!(one(&mut dec(), LinkType::RAW, &ipv4(s, d, 17, &u)).checksum_ok);
    // IPv6 UDP must carry one.
    let (s6, d6) = a6();
    let mut u6 = udp(s6, d6, 1, 2, b"abc");
    u6[6..8].copy_from_slice(&[0, 0]);
    assert!(!one(&mut dec(), LinkType::RAW, &ipv6(s6, d6, 17, &u6)).checksum_ok);
    // Bad ICMP checksum.
    let mut ic = icmp4(8, 0, b"ping");
    ic[2] ^= 1;
    let p = one(&mut dec(), LinkType::RAW, &ipv4(s, d, 1, &ic));
    assert!(!p.checksum_ok);
    assert_eq!(p.payload_len, 4);
    // A segment cut by the snap length cannot be verified and counts as good.
    let mut seg = tcp(s, d, 1, 2, 0x18, &[9u8; 100]);
    seg[16] ^= 0xff;
    let pkt = ipv4(s, d, 6, &seg);
    let p = one(&mut dec(), LinkType::RAW, &pkt[..80]);
    assert!(p.checksum_ok);
    assert_eq!(p.payload_len, 100);
    assert_eq!(p.payload.len(), 80 - 20 - 24);
}

// ---------------------------------------------------------------------------------------------
// Tunnels

fn vxlan_frame(inner_eth: &[u8]) -> Vec<u8> {
    let (s, d) = (addr("10.0.0.1"), addr("10.0.0.2"));
    let mut v = vec![0x08, 0, 0, 0, 0, 0, 0x2a, 0];
    v.extend_from_slice(inner_eth);
    eth(0x0800, &ipv4(s, d, 17, &udp(s, d, 55555, 4789, &v)))
}

fn assert_outer_then_inner(seen: &[Seen], kind: TunnelKind, inner_payload: &[u8]) {
    assert_eq!(seen.len(), 2, "outer and inner packets expected: {seen:?}");
    assert_eq!(
        seen[0].carries,
        Some(kind),
        "the outer UDP packet says what it carries"
    );
    assert!(seen[0].encap.is_empty());
    assert_eq!(seen[1].encap.len(), 1);
    assert_eq!(seen[1].encap[0].kind, kind);
    assert_eq!(seen[1].encap[0].src, seen[0].src);
    assert_eq!(seen[1].encap[0].ip_proto, 17);
    assert_eq!(seen[1].payload, inner_payload);
    assert!(seen[1].carries.is_none());
}

#[test]
fn vxlan_outer_first_then_inner() {
    let (s, d) = a4();
    let inner = eth(0x0800, &ipv4(s, d, 1, &icmp4(8, 0, b"inner")));
    let mut dc = dec();
    let (r, seen) = run(&mut dc, LinkType::ETHERNET, &vxlan_frame(&inner));
    assert_eq!(r, Ok(()));
    assert_outer_then_inner(&seen, TunnelKind::Vxlan, b"inner");
    assert_eq!(seen[1].encap[0].dst_port, 4789);
    assert_eq!(seen[1].l2_src, Some(MAC_A));
    assert_eq!(dc.counters().packets, 2);
}

#[test]
fn udp_tunnel_with_bad_inner_is_plain_udp() {
    let mut dc = dec();
    let (r, seen) = run(
        &mut dc,
        LinkType::ETHERNET,
        &vxlan_frame(&eth(0x0806, &[0; 28])),
    );
    assert_eq!(r, Ok(()));
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].carries, None);
    // Garbage on the Teredo port is also just UDP.
    let (s, d) = a4();
    let f = ipv4(s, d, 17, &udp(s, d, 3544, 40000, b"not teredo at all"));
    let p = one(&mut dc, LinkType::RAW, &f);
    assert_eq!(p.carries, None);
}

#[test]
fn geneve_teredo_ayiya_gtp_greudp() {
    let (s, d) = a4();
    let (s6, d6) = a6();
    let inner4 = ipv4(s, d, 17, &udp(s, d, 7, 9, b"in4"));
    let inner6 = ipv6(s6, d6, 17, &udp(s6, d6, 7, 9, b"in6"));
    let (os, od) = (addr("10.1.0.1"), addr("10.1.0.2"));
    let outer = |dport: u16, payload: &[u8]| ipv4(os, od, 17, &udp(os, od, 40000, dport, payload));

    // Geneve with one 8-byte option, protocol IPv4; and with Ethernet.
    let mut g = vec![0x02, 0, 0x08, 0x00, 0, 0, 1, 0];
    g.extend_from_slice(&[0, 1, 2, 1, 0, 0, 0, 0]);
    g.extend_from_slice(&inner4);
    let (_, seen) = run(&mut dec(), LinkType::RAW, &outer(6081, &g));
    assert_outer_then_inner(&seen, TunnelKind::Geneve, b"in4");
    let mut g = vec![0x00, 0, 0x65, 0x58, 0, 0, 1, 0];
    g.extend_from_slice(&eth(0x86dd, &inner6));
    let (_, seen) = run(&mut dec(), LinkType::RAW, &outer(6081, &g));
    assert_outer_then_inner(&seen, TunnelKind::Geneve, b"in6");

    // Teredo with an origin indication.
    let mut t = vec![0, 0, 0x12, 0x34, 1, 2, 3, 4];
    t.extend_from_slice(&inner6);
    let (_, seen) = run(&mut dec(), LinkType::RAW, &outer(3544, &t));
    assert_outer_then_inner(&seen, TunnelKind::Teredo, b"in6");

    // AYIYA: identity 2^0 = 1 byte... length nibble 0 means one byte; no signature; op 1.
    let mut a = vec![0x00, 0x00, 0x01, 41, 0, 0, 0, 0, 0xaa];
    a.extend_from_slice(&inner6);
    let (_, seen) = run(&mut dec(), LinkType::RAW, &outer(5072, &a));
    assert_outer_then_inner(&seen, TunnelKind::Ayiya, b"in6");

    // GTPv1-U G-PDU without options.
    let mut gt = vec![0x30, 0xff];
    gt.extend_from_slice(&(inner4.len() as u16).to_be_bytes());
    gt.extend_from_slice(&[0, 0, 0, 1]);
    gt.extend_from_slice(&inner4);
    let (_, seen) = run(&mut dec(), LinkType::RAW, &outer(2152, &gt));
    assert_outer_then_inner(&seen, TunnelKind::Gtpv1, b"in4");

    // GRE in UDP.
    let mut gu = vec![0, 0, 0x86, 0xdd];
    gu.extend_from_slice(&inner6);
    let (_, seen) = run(&mut dec(), LinkType::RAW, &outer(4754, &gu));
    assert_outer_then_inner(&seen, TunnelKind::GreUdp, b"in6");
}

#[test]
fn gre_and_ip_in_ip_are_not_visited_as_outer() {
    let (s, d) = a4();
    let (s6, d6) = a6();
    let inner4 = ipv4(s, d, 17, &udp(s, d, 7, 9, b"in4"));
    let inner6 = ipv6(s6, d6, 17, &udp(s6, d6, 7, 9, b"in6"));
    let (os, od) = (addr("10.1.0.1"), addr("10.1.0.2"));
    let check = |frame: Vec<u8>, kind: TunnelKind, proto: u8, payload: &[u8]| {
        let mut dc = dec();
        let (r, seen) = run(&mut dc, LinkType::RAW, &frame);
        assert_eq!(r, Ok(()), "{kind:?} over proto {proto}");
        assert_eq!(
            seen.len(),
            1,
            "only the inner packet is visited for {kind:?}"
        );
        assert_eq!(seen[0].encap.len(), 1);
        assert_eq!(seen[0].encap[0].kind, kind);
        assert_eq!(seen[0].encap[0].ip_proto, proto);
        assert_eq!(seen[0].encap[0].src, os);
        assert_eq!(seen[0].payload, payload);
    };
    // GRE version 0 with checksum, key and sequence present, carrying IPv4.
    let mut g = vec![0xb0, 0x00, 0x08, 0x00];
    g.extend_from_slice(&[0; 12]);
    g.extend_from_slice(&inner4);
    check(ipv4(os, od, 47, &g), TunnelKind::Gre, 47, b"in4");
    // GRE transparent Ethernet bridging.
    let mut g = vec![0x00, 0x00, 0x65, 0x58];
    g.extend_from_slice(&eth(0x86dd, &inner6));
    check(ipv4(os, od, 47, &g), TunnelKind::Gre, 47, b"in6");
    // ERSPAN type II (sequence bit set, 8-byte ERSPAN header).
    let mut g = vec![0x10, 0x00, 0x88, 0xbe, 0, 0, 0, 1];
    g.extend_from_slice(&[0x10, 0, 0, 0, 0, 0, 0, 0]);
    g.extend_from_slice(&eth(0x0800, &inner4));
    check(ipv4(os, od, 47, &g), TunnelKind::Gre, 47, b"in4");
    // ERSPAN type III without the optional sub-header.
    let mut g = vec![0x00, 0x00, 0x22, 0xeb];
    g.extend_from_slice(&[0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    g.extend_from_slice(&eth(0x0800, &inner4));
    check(ipv4(os, od, 47, &g), TunnelKind::Gre, 47, b"in4");
    // Enhanced GRE (PPTP): key and sequence, then PPP with address/control.
    let mut g = vec![0x30, 0x01, 0x88, 0x0b, 0, 0, 0, 0, 0, 0, 0, 1];
    g.extend_from_slice(&[0xff, 0x03, 0x00, 0x21]);
    g.extend_from_slice(&inner4);
    check(ipv4(os, od, 47, &g), TunnelKind::Gre, 47, b"in4");
    // MPLS inside GRE goes through the same ethertype dispatch as on Ethernet.
    let mut g = vec![0x00, 0x00, 0x88, 0x47, 0x00, 0x01, 0x01, 0x40];
    g.extend_from_slice(&inner4);
    check(ipv4(os, od, 47, &g), TunnelKind::Gre, 47, b"in4");
    // IP in IP, 6in4, 4in6.
    check(ipv4(os, od, 4, &inner4), TunnelKind::Ip, 4, b"in4");
    check(ipv4(os, od, 41, &inner6), TunnelKind::Ip, 41, b"in6");
    let (o6s, o6d) = (addr("2001:db8:1::1"), addr("2001:db8:1::2"));
    let mut dc = dec();
    let (_, seen) = run(&mut dc, LinkType::RAW, &ipv6(o6s, o6d, 4, &inner4));
    assert_eq!(seen[0].encap[0].src, o6s);
}

#[test]
fn tunnel_depth_is_bounded() {
    let (s, d) = a4();
    let mut pkt = ipv4(s, d, 17, &udp(s, d, 7, 9, b"core"));
    // Three IP-in-IP layers exceed the default depth of two.
    for _ in 0..3 {
        pkt = ipv4(s, d, 4, &pkt);
    }
    let mut dc = dec();
    assert_eq!(
        run(&mut dc, LinkType::RAW, &pkt).0,
        Err(DecodeError::TunnelTooDeep)
    );
    assert_eq!(dc.counters().tunnel_too_deep, 1);
    // Two layers are fine and listed outermost first.
    let mut pkt = ipv4(s, d, 17, &udp(s, d, 7, 9, b"core"));
    pkt = ipv4(addr("10.0.0.2"), d, 4, &pkt);
    pkt = ipv4(addr("10.0.0.1"), d, 4, &pkt);
    let p = one(&mut dc, LinkType::RAW, &pkt);
    assert_eq!(p.encap.len(), 2);
    assert_eq!(p.encap[0].src, addr("10.0.0.1"));
    // A UDP tunnel at the limit: the outer packet is visited, not the inner.
    let inner = eth(0x0800, &ipv4(s, d, 1, &icmp4(8, 0, b"x")));
    let vx = vxlan_frame(&inner);
    let two = ipv4(s, d, 4, &ipv4(s, d, 4, &vx[14..]));
    let (r, seen) = run(&mut dc, LinkType::RAW, &two);
    assert_eq!(r, Ok(()));
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].carries, None);
    assert_eq!(dc.counters().tunnel_too_deep, 2);
}

// ---------------------------------------------------------------------------------------------
// Robustness

#[test]
fn every_truncation_of_valid_frames_is_safe() {
    let (s, d) = a4();
    let (s6, d6) = a6();
    let inner = eth(0x0800, &ipv4(s, d, 6, &tcp(s, d, 1, 2, 0x02, b"abc")));
    let mut frames = vec![
        (LinkType::ETHERNET, vxlan_frame(&inner)),
        (LinkType::ETHERNET, eth(0x0800, &udp4_packet())),
    ];
    let mut ext = vec![44, 0, 0, 0, 0, 0, 0, 1];
    ext.extend_from_slice(&icmp6(s6, d6, 128, b"x"));
    frames.push((
        LinkType::ETHERNET,
        eth(
            0x86dd,
            &ipv6(
                s6,
                d6,
                60,
                &[&[58u8, 0, 1, 4, 0, 0, 0, 0][..], &ext[8..]].concat(),
            ),
        ),
    ));
    let mut gre = vec![0x00, 0x00, 0x65, 0x58];
    gre.extend_from_slice(&inner);
    frames.push((LinkType::RAW, ipv4(s, d, 47, &gre)));
    for (lt, f) in frames {
        let mut dc = dec();
        for n in 0..=f.len() {
            let _ = run(&mut dc, lt, &f[..n]);
        }
        let c = *dc.counters();
        assert_eq!(c.frames as usize, f.len() + 1);
    }
}

#[test]
fn random_bytes_never_panic() {
    // A small deterministic generator is enough to walk many code paths.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let base = vxlan_frame(&eth(0x0800, &udp4_packet()));
    let mut dc = dec();
    for i in 0..20_000u32 {
        let mut f = base.clone();
        // Flip a few bytes of a valid frame so decoding gets deep before it meets damage.
        for _ in 0..(1 + next() % 4) {
            let at = (next() as usize) % f.len();
            f[at] = next() as u8;
        }
        let cut = (next() as usize) % (f.len() + 1);
        let lt = [1u32, 0, 101, 108, 113, 276, 10, 9, 50, 105, 127][(i % 11) as usize];
        let _ = run(&mut dc, LinkType(lt), &f[..cut]);
    }
}

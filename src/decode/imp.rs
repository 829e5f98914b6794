//! The decoder: link layer, IP (with reassembly), transport and tunnels, in one pass per frame.
//!
//! Tunnels recurse through [`Decoder::ip`], but only as deep as `max_tunnel_depth` (at most
//! [`MAX_ENCAP`]), so a crafted frame cannot nest the decoder without bound. Every other loop
//! (extension headers, VLAN tags, MPLS labels) consumes bytes on each turn.

use super::frag::{FragKey, FragMeta, FragOutcome, FragTable};
use super::link::{self, L2Info, L3};
use super::tunnel;
use super::wire::{fold, sum_words, transport_checksum_ok, walk_ipv6_ext};
use super::wire::{Icmp, Ipv4, Ipv6, Tcp, Udp};
use super::*;

/// The encapsulation layers above the packet being decoded, outermost first.
#[derive(Clone, Copy)]
struct Stack {
    items: [Encap; MAX_ENCAP],
    len: usize,
}

impl Stack {
    const EMPTY: Stack = Stack {
        items: [Encap {
            kind: TunnelKind::Ip,
            src: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            ip_proto: 0,
            src_port: 0,
            dst_port: 0,
        }; MAX_ENCAP],
        len: 0,
    };

    fn as_slice(&self) -> &[Encap] {
        &self.items[..self.len]
    }

    /// A copy with `e` appended; the caller has checked the depth against `MAX_ENCAP`.
    fn with(&self, e: Encap) -> Stack {
        let mut s = *self;
        s.items[s.len] = e;
        s.len += 1;
        s
    }
}

/// The IP-level facts a transport header is read with.
#[derive(Clone, Copy)]
struct IpCtx {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    /// Zeek's `ip_bytes` contribution.
    ip_len: u32,
    /// Transport segment length according to the IP header(s).
    l4_len: u32,
}

/// Decodes frames into packets; one per core.
pub struct Decoder {
    cfg: DecodeConfig,
    counters: DecodeCounters,
    frag: FragTable,
}

impl Decoder {
    pub fn new(cfg: DecodeConfig) -> Decoder {
        Decoder {
            cfg,
            counters: DecodeCounters::default(),
            frag: FragTable::new(
                cfg.max_frag_datagrams,
                cfg.max_frag_bytes,
                cfg.frag_timeout_ns,
            ),
        }
    }

    /// Decodes one frame and hands each packet in it to `visit`, outermost first.
    ///
    /// `Ok` means at least one packet was visited. A UDP tunnel whose inner packet fails to
    /// decode is still `Ok` (its outer packet was visited); the inner failure is counted.
    pub fn decode<F: FnMut(&Packet<'_>)>(
        &mut self,
        link: LinkType,
        ts_ns: u64,
        frame: &[u8],
        mut visit: F,
    ) -> Result<(), DecodeError> {
        self.counters.frames += 1;
        let mut l2 = L2Info::default();
        let r = match link::parse(link, frame, &mut l2) {
            Ok(l3) => self.ip(ts_ns, l3, l2, &Stack::EMPTY, &mut visit),
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            self.count(e);
        }
        r
    }

    pub fn counters(&self) -> &DecodeCounters {
        &self.counters
    }

    /// Counts an outcome that ends a decode. Fragment outcomes were counted when the fragment
    /// was offered.
    fn count(&mut self, e: DecodeError) {
        let c = &mut self.counters;
        match e {
            DecodeError::Truncated => c.truncated += 1,
            DecodeError::Malformed => c.malformed += 1,
            DecodeError::NotIp => c.not_ip += 1,
            DecodeError::UnsupportedLink => c.unsupported_link += 1,
            DecodeError::FragmentHeld | DecodeError::FragmentDropped => {}
            DecodeError::TunnelTooDeep => c.tunnel_too_deep += 1,
            DecodeError::BadIpChecksum => c.bad_checksum += 1,
            DecodeError::NoNextHeader => c.no_next_header += 1,
        }
    }

    fn depth_limit(&self) -> usize {
        self.cfg.max_tunnel_depth.min(MAX_ENCAP)
    }

    fn emit<F: FnMut(&Packet<'_>)>(&mut self, p: &Packet<'_>, visit: &mut F) {
        self.counters.packets += 1;
        if !p.checksum_ok {
            self.counters.bad_checksum += 1;
        }
        visit(p);
    }

    fn ip<F: FnMut(&Packet<'_>)>(
        &mut self,
        ts: u64,
        l3: L3<'_>,
        l2: L2Info,
        stack: &Stack,
        visit: &mut F,
    ) -> Result<(), DecodeError> {
        match l3 {
            L3::V4(b) => self.ipv4(ts, b, l2, stack, visit),
            L3::V6(b) => self.ipv6(ts, b, l2, stack, visit),
            L3::Amsdu(b) => self.amsdu(ts, b, l2, stack, visit),
        }
    }

    /// The packets of an 802.11 A-MSDU, each decoded as if it were a frame of its own with the
    /// 802.11 header's addresses and the same encapsulation. As in Zeek's IEEE802_11 analyzer,
    /// the walk stops at the first subframe that is cut short or does not decode; the packets
    /// before it stand. An A-MSDU cannot nest (a subframe is LLC/SNAP, never 802.11 again), so
    /// this recursion is one level deep.
    fn amsdu<F: FnMut(&Packet<'_>)>(
        &mut self,
        ts: u64,
        body: &[u8],
        l2: L2Info,
        stack: &Stack,
        visit: &mut F,
    ) -> Result<(), DecodeError> {
        let mut visited = false;
        for sub in link::Amsdu::new(body) {
            let mut l2s = l2;
            let r = sub
                .and_then(|(ty, b)| link::ether_payload(ty, b, &mut l2s))
                .and_then(|l3| match l3 {
                    L3::Amsdu(_) => Err(DecodeError::Malformed),
                    l3 => self.ip(ts, l3, l2s, stack, visit),
                });
            match r {
                Ok(()) => visited = true,
                // A later subframe's failure is counted here, since the frame as a whole
                // gave packets.
                Err(e) if visited => {
                    self.count(e);
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        if visited {
            Ok(())
        } else {
            Err(DecodeError::NotIp)
        }
    }

    fn ipv4<F: FnMut(&Packet<'_>)>(
        &mut self,
        ts: u64,
        b: &[u8],
        l2: L2Info,
        stack: &Stack,
        visit: &mut F,
    ) -> Result<(), DecodeError> {
        let ip = Ipv4::new_checked(b)?;
        if self.cfg.verify_checksums && !ip.checksum_ok() {
            return Err(DecodeError::BadIpChecksum);
        }
        let src = IpAddr::V4(ip.src());
        let dst = IpAddr::V4(ip.dst());
        if ip.more_frags() || ip.frag_offset() != 0 {
            self.counters.fragments += 1;
            if !ip.complete() {
                // A fragment cut by the snap length cannot be reassembled.
                self.frag.dropped += 1;
                return self.frag_outcome(FragOutcome::Dropped, ts, src, dst, l2, stack, visit);
            }
            let key = FragKey {
                src,
                dst,
                ident: u32::from(ip.ident()),
                proto: ip.protocol(),
            };
            let meta = FragMeta {
                header_len: ip.header_len() as u32,
                proto: ip.protocol(),
            };
            let out = self.frag.insert(
                key,
                ts,
                ip.frag_offset(),
                ip.more_frags(),
                ip.payload(),
                meta,
            );
            return self.frag_outcome(out, ts, src, dst, l2, stack, visit);
        }
        let ctx = IpCtx {
            src,
            dst,
            proto: ip.protocol(),
            ip_len: ip.total_len() as u32,
            l4_len: (ip.total_len() - ip.header_len()) as u32,
        };
        self.transport(ts, ctx, ip.payload(), l2, stack, visit)
    }

    fn ipv6<F: FnMut(&Packet<'_>)>(
        &mut self,
        ts: u64,
        b: &[u8],
        l2: L2Info,
        stack: &Stack,
        visit: &mut F,
    ) -> Result<(), DecodeError> {
        let ip = Ipv6::new_checked(b)?;
        let payload = ip.payload();
        let walk = walk_ipv6_ext(ip.next_header(), payload)?;
        let src = IpAddr::V6(ip.src());
        let hdr_dst = IpAddr::V6(ip.dst());
        let dst = walk.final_dst.map_or(hdr_dst, IpAddr::V6);
        let rest = &payload[walk.offset..];
        if let Some(f) = walk.frag {
            self.counters.fragments += 1;
            if !ip.complete() {
                self.frag.dropped += 1;
                return self.frag_outcome(FragOutcome::Dropped, ts, src, dst, l2, stack, visit);
            }
            let key = FragKey {
                src,
                dst: hdr_dst,
                ident: f.ident,
                proto: 0,
            };
            // Zeek's reassembled datagram keeps the unfragmentable headers (everything before
            // the fragment header), so they count towards its length.
            let meta = FragMeta {
                header_len: (40 + walk.offset - 8) as u32,
                proto: walk.proto,
            };
            let out = self.frag.insert(key, ts, f.offset, f.more, rest, meta);
            return self.frag_outcome(out, ts, src, dst, l2, stack, visit);
        }
        let ctx = IpCtx {
            src,
            dst,
            proto: walk.proto,
            ip_len: (40 + ip.payload_len()) as u32,
            l4_len: ip.payload_len().saturating_sub(walk.offset) as u32,
        };
        self.transport(ts, ctx, rest, l2, stack, visit)
    }

    /// Finishes offering a fragment: counts, and decodes the datagram when it completed.
    #[allow(clippy::too_many_arguments)] // The pieces of one decode step; a struct would only rename them.
    fn frag_outcome<F: FnMut(&Packet<'_>)>(
        &mut self,
        out: FragOutcome,
        ts: u64,
        src: IpAddr,
        dst: IpAddr,
        l2: L2Info,
        stack: &Stack,
        visit: &mut F,
    ) -> Result<(), DecodeError> {
        let r = match out {
            FragOutcome::Held => Err(DecodeError::FragmentHeld),
            FragOutcome::Dropped => Err(DecodeError::FragmentDropped),
            FragOutcome::Complete(i) => {
                self.counters.reassembled += 1;
                let (meta, buf) = self.frag.take(i);
                let r = self.reassembled(ts, meta, &buf, src, dst, l2, stack, visit);
                self.frag.give_back(buf);
                r
            }
        };
        self.counters.fragments_dropped = self.frag.dropped;
        r
    }

    #[allow(clippy::too_many_arguments)] // As for `frag_outcome`.
    fn reassembled<F: FnMut(&Packet<'_>)>(
        &mut self,
        ts: u64,
        meta: FragMeta,
        data: &[u8],
        src: IpAddr,
        dst: IpAddr,
        l2: L2Info,
        stack: &Stack,
        visit: &mut F,
    ) -> Result<(), DecodeError> {
        let total = data.len() as u32;
        let ip_len = meta.header_len + total;
        if src.is_ipv4() {
            let ctx = IpCtx {
                src,
                dst,
                proto: meta.proto,
                ip_len,
                l4_len: total,
            };
            return self.transport(ts, ctx, data, l2, stack, visit);
        }
        // The fragmentable part may begin with more extension headers (destination options).
        let walk = walk_ipv6_ext(meta.proto, data)?;
        if walk.frag.is_some() {
            return Err(DecodeError::Malformed);
        }
        let ctx = IpCtx {
            src,
            dst: walk.final_dst.map_or(dst, IpAddr::V6),
            proto: walk.proto,
            ip_len,
            l4_len: total - walk.offset as u32,
        };
        self.transport(ts, ctx, &data[walk.offset..], l2, stack, visit)
    }

    fn transport<F: FnMut(&Packet<'_>)>(
        &mut self,
        ts: u64,
        ip: IpCtx,
        l4: &[u8],
        l2: L2Info,
        stack: &Stack,
        visit: &mut F,
    ) -> Result<(), DecodeError> {
        let v6 = ip.src.is_ipv6();
        // A checksum covers the whole segment; a capture cut by the snap length cannot be
        // verified and is taken as good.
        let verify = self.cfg.verify_checksums && l4.len() as u64 >= u64::from(ip.l4_len);
        let mut p = Packet {
            src: ip.src,
            dst: ip.dst,
            ip_proto: ip.proto,
            ip_len: ip.ip_len,
            l4: L4::Other,
            payload_len: ip.l4_len,
            payload: l4,
            checksum_ok: true,
            encap: stack.as_slice(),
            carries: None,
            vlan: l2.vlan,
            inner_vlan: l2.inner_vlan,
            l2_src: l2.src,
            l2_dst: l2.dst,
            header_cut: false,
        };
        match ip.proto {
            6 => {
                let (t, declared) = match Tcp::new_checked(l4) {
                    Ok(t) => (t, t.header_len()),
                    // Zeek's TCP analyzer needs only the fixed header to build the connection
                    // (`BuildConnTuple`); the rest of its analysis stops at the cut.
                    Err(DecodeError::Truncated) => {
                        let cut = Tcp::new_cut(l4)?;
                        p.header_cut = true;
                        cut
                    }
                    Err(e) => return Err(e),
                };
                let hl = declared as u32;
                if hl > ip.l4_len {
                    return Err(DecodeError::Malformed);
                }
                p.l4 = L4::Tcp {
                    src_port: t.src_port(),
                    dst_port: t.dst_port(),
                    seq: t.seq(),
                    ack: t.ack(),
                    flags: t.flags(),
                    window: t.window(),
                };
                p.payload_len = ip.l4_len - hl;
                p.payload = t.payload();
                if verify {
                    p.checksum_ok = transport_checksum_ok(ip.src, ip.dst, 6, l4);
                }
            }
            17 => {
                let u = Udp::new_checked(l4)?;
                let (sport, dport) = (u.src_port(), u.dst_port());
                p.l4 = L4::Udp {
                    src_port: sport,
                    dst_port: dport,
                };
                p.payload_len = u32::from(u.length().saturating_sub(8));
                p.payload = u.payload();
                if verify {
                    let sum = u.checksum();
                    // IPv4 makes the UDP checksum optional (zero means none); IPv6 does not.
                    // Zeek also exempts VXLAN on its port, whose senders commonly send zero.
                    let pl = u.payload();
                    let vxlan_zero = sum == 0
                        && dport == tunnel::VXLAN_PORT
                        && pl.len() > 8 + 14
                        && pl[0] & 0x08 != 0;
                    if !((!v6 && sum == 0) || vxlan_zero) {
                        p.checksum_ok = transport_checksum_ok(ip.src, ip.dst, 17, l4);
                    }
                }
                return self.udp(ts, p, sport, dport, stack, visit);
            }
            1 | 58 if (ip.proto == 58) == v6 => {
                let icmp = Icmp::new_checked(l4)?;
                p.l4 = L4::Icmp {
                    v6,
                    icmp_type: icmp.msg_type(),
                    code: icmp.code(),
                };
                p.payload_len = ip.l4_len.saturating_sub(Icmp::HEADER_LEN as u32);
                p.payload = icmp.payload();
                if verify {
                    p.checksum_ok = if v6 {
                        transport_checksum_ok(ip.src, ip.dst, 58, l4)
                    } else {
                        fold(sum_words(l4, 0)) == 0xffff
                    };
                }
            }
            4 | 41 => {
                if stack.len >= self.depth_limit() {
                    return Err(DecodeError::TunnelTooDeep);
                }
                let inner = if ip.proto == 4 {
                    L3::V4(l4)
                } else {
                    L3::V6(l4)
                };
                let s = stack.with(Encap {
                    kind: TunnelKind::Ip,
                    src: ip.src,
                    dst: ip.dst,
                    ip_proto: ip.proto,
                    src_port: 0,
                    dst_port: 0,
                });
                // The inner packet is a new packet without link layer, as in Zeek: the outer
                // frame's VLAN tags are not its own (they would otherwise enter its key under
                // `--conn-key vlan`).
                return self.ip(ts, inner, l2.without_vlans(), &s, visit);
            }
            47 => {
                if stack.len >= self.depth_limit() {
                    return Err(DecodeError::TunnelTooDeep);
                }
                let inner = tunnel::gre(l4)?;
                // As for IP-in-IP: an inner IP packet has no tags of its own, an inner
                // Ethernet frame has only its own.
                let mut l2i = l2.without_vlans();
                if matches!(inner, tunnel::Inner::Ethernet(_)) {
                    l2i = L2Info::default();
                }
                let l3 = inner.l3(&mut l2i)?;
                let s = stack.with(Encap {
                    kind: TunnelKind::Gre,
                    src: ip.src,
                    dst: ip.dst,
                    ip_proto: 47,
                    src_port: 0,
                    dst_port: 0,
                });
                return self.ip(ts, l3, l2i, &s, visit);
            }
            // IPv6's "no next header" (a Teredo bubble's inner packet): Zeek's IP analyzer
            // stops there without a connection, whatever the IP version.
            59 => return Err(DecodeError::NoNextHeader),
            _ => {}
        }
        self.emit(&p, visit);
        Ok(())
    }

    /// A UDP packet: visited itself, and when it carries a tunnel, the inner packet after it.
    fn udp<F: FnMut(&Packet<'_>)>(
        &mut self,
        ts: u64,
        mut p: Packet<'_>,
        sport: u16,
        dport: u16,
        stack: &Stack,
        visit: &mut F,
    ) -> Result<(), DecodeError> {
        // Ports first; on other ports Zeek tries Teredo's protocol detection on every datagram.
        let kind = tunnel::udp_kind(sport, dport)
            .or_else(|| tunnel::teredo_detect(p.payload).then_some(TunnelKind::Teredo));
        let Some(kind) = kind else {
            self.emit(&p, visit);
            return Ok(());
        };
        // Zeek stops at a bad checksum before any tunnel analysis.
        if !p.checksum_ok {
            self.emit(&p, visit);
            return Ok(());
        }
        if stack.len >= self.depth_limit() {
            self.counters.tunnel_too_deep += 1;
            self.emit(&p, visit);
            return Ok(());
        }
        // Parse the inner headers before visiting, because the outer packet must say whether
        // it carries a tunnel, and only a decodable inner packet makes it one.
        let mut l2i = L2Info::default();
        let inner = tunnel::parse_udp(kind, p.payload)
            .and_then(|inner| inner.l3(&mut l2i))
            .and_then(|l3| {
                match l3 {
                    L3::V4(b) => Ipv4::new_checked(b).map(|_| ()),
                    L3::V6(b) => Ipv6::new_checked(b).map(|_| ()),
                    // Its subframes are checked one by one when decoded.
                    L3::Amsdu(_) => Ok(()),
                }?;
                Ok(l3)
            });
        let Ok(l3) = inner else {
            // Traffic on a tunnel port that is not that tunnel is ordinary UDP.
            self.emit(&p, visit);
            return Ok(());
        };
        p.carries = Some(kind);
        self.emit(&p, visit);
        let s = stack.with(Encap {
            kind,
            src: p.src,
            dst: p.dst,
            ip_proto: 17,
            src_port: sport,
            dst_port: dport,
        });
        if let Err(e) = self.ip(ts, l3, l2i, &s, visit) {
            self.count(e);
        }
        Ok(())
    }
}

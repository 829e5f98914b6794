//! Dispatch: the receiving half of a worker. Decodes a frame, names the tunnels it travelled
//! through, and hands each packet, as a [`PacketSummary`], to the worker that owns its flow.
//!
//! Offline, one dispatcher (the reader thread) feeds every worker. Live, each worker runs its
//! own dispatcher on its own RX queue. Either way the owner of a packet is
//! `FlowKey::owner(n_workers)`, so both directions of a connection meet on one shard.
//!
//! With `--conn-key vlan` (`DecodeConfig::vlan_key`) the key, and so the owner, also holds the
//! frame's 802.1Q ids; the summary carries them to the owner, whose table keys by them too.

use crate::capture::Frame;
use crate::decode::{DecodeConfig, DecodeCounters, DecodeError, Decoder, Encap, Packet};
use crate::flow::conn_uid;
use crate::flow::expect::{ftp_announcement, Expectation};
use crate::flow::key::{Endpoints, FlowKey, Vlans};
use crate::flow::summary::PacketSummary;
use crate::names::dnslog::{self, DnsMsg};
use crate::names::{Evidence, EvidenceCounters, EvidenceParser};
use crate::types::record::{Uid, MAX_TUNNEL_PARENTS};
use hashbrown::HashMap;

/// How long a tunnel that is not itself a UDP connection (GRE, IP-in-IP) keeps its uid after
/// its last packet (Zeek's `Tunnel::expiration_interval`, 1 hour).
const IP_TUNNEL_IDLE_NS: u64 = 3_600_000_000_000;

/// Bound on tunnels remembered at once; beyond it the table is cleared (uids of long-lived
/// tunnels then restart, which is visible but harmless).
const MAX_TUNNELS: usize = 65_536;

/// What dispatching a frame produces.
#[derive(Clone, Copy, Debug)]
// The packet variant is stored inline on purpose: boxing it would allocate per packet.
#[allow(clippy::large_enum_variant)]
pub enum Dispatched<'a> {
    /// A packet for the worker that owns its flow.
    Packet(usize, PacketSummary),
    /// A connection announced by a control connection: every worker must learn it, since
    /// the announced connection's owner is not known yet. Sent before the packet itself.
    Expect(Expectation),
    /// Name evidence for the worker that owns the flow that carried it (parsed here, where
    /// the whole payload is; the summary keeps only its first bytes). Sent before the packet.
    Name(usize, Evidence),
    /// A DNS message for dns.log, for the worker that owns its connection. Sent after the
    /// packet that carried it, so the owner already tracks the connection.
    Dns(usize, &'a DnsMsg),
}

/// Counters of the dispatch step (plain integers: one dispatcher per thread).
#[derive(Clone, Copy, Default, Debug)]
pub struct DispatchCounters {
    /// Frames handed to the decoder.
    pub frames: u64,
    /// Packets handed to owners (a tunnelled frame can yield two).
    pub packets: u64,
    /// Packets whose owner is another worker than the dispatcher's own.
    pub forwarded: u64,
    /// Expected connections announced by control connections (FTP data channels).
    pub announcements: u64,
}

struct TunnelEntry {
    start_ns: u64,
    last_ns: u64,
}

/// Remembers when each tunnel was first seen, so every packet inside it can name the outer
/// connection's uid, which is derived from the outer key and that start time exactly as the
/// outer connection's owner derives it.
struct TunnelTable {
    map: HashMap<FlowKey, TunnelEntry>,
    udp_idle_ns: u64,
}

impl TunnelTable {
    fn touch(&mut self, key: FlowKey, ts_ns: u64) -> u64 {
        let idle = if key.ip_proto == 17 {
            self.udp_idle_ns
        } else {
            IP_TUNNEL_IDLE_NS
        };
        if self.map.len() >= MAX_TUNNELS && !self.map.contains_key(&key) {
            self.map.clear();
        }
        let e = self.map.entry(key).or_insert(TunnelEntry {
            start_ns: ts_ns,
            last_ns: ts_ns,
        });
        if ts_ns.saturating_sub(e.last_ns) > idle {
            e.start_ns = ts_ns;
        }
        e.last_ns = e.last_ns.max(ts_ns);
        e.start_ns
    }
}

/// The DNS messages of one packet: a UDP datagram's payload, or the length-prefixed messages
/// of a TCP segment when the segment holds whole messages and nothing else (a segment that
/// continues a message cut by the previous one is not read: the owner has no reassembly).
fn dns_messages(p: &Packet<'_>, ts: u64, ep: Endpoints, mut emit: impl FnMut(&DnsMsg)) {
    match p.l4 {
        crate::decode::L4::Udp { .. } => {
            if let Some(m) = dnslog::parse_message(p.payload, ts, ep) {
                emit(&m);
            }
        }
        crate::decode::L4::Tcp { .. } => {
            for m in crate::decode::dns::tcp_messages(p.payload)
                .into_iter()
                .flatten()
            {
                if let Some(m) = dnslog::parse_message(m, ts, ep) {
                    emit(&m);
                }
            }
        }
        _ => {}
    }
}

/// The receiving half of a worker.
pub struct Dispatcher {
    decoder: Decoder,
    workers: usize,
    me: Option<usize>,
    uid_seed: u64,
    tunnels: TunnelTable,
    counters: DispatchCounters,
    /// Name evidence parsing; `None` with `--no-names`.
    names: Option<EvidenceParser>,
    /// The largest packet time seen so far: the clock evidence is stamped with.
    clock: u64,
    /// Read DNS messages for dns.log.
    dns_log: bool,
    /// Key connections by their VLAN ids as well (`--conn-key vlan`).
    vlan_key: bool,
}

/// The key of a tunnel layer; `vlans` are those of the frame that carried it.
fn encap_key(e: &Encap, vlans: Vlans) -> FlowKey {
    let ep = Endpoints {
        ip_proto: e.ip_proto,
        src: e.src,
        src_port: e.src_port,
        dst: e.dst,
        dst_port: e.dst_port,
        vlans,
    };
    ep.key().0
}

impl Dispatcher {
    /// A dispatcher for `workers` owners. `me` is the worker this dispatcher runs on (live),
    /// or `None` for the offline reader, which runs on no worker.
    pub fn new(
        decode: DecodeConfig,
        workers: usize,
        me: Option<usize>,
        uid_seed: u64,
        udp_idle_ns: u64,
    ) -> Dispatcher {
        Dispatcher {
            decoder: Decoder::new(decode),
            workers: workers.max(1),
            me,
            uid_seed,
            tunnels: TunnelTable {
                map: HashMap::with_capacity(1024),
                udp_idle_ns,
            },
            counters: DispatchCounters::default(),
            names: None,
            clock: 0,
            dns_log: false,
            vlan_key: decode.vlan_key,
        }
    }

    /// Also reads every DNS message (on Zeek's DNS ports) for dns.log.
    pub fn with_dns_log(mut self, on: bool) -> Dispatcher {
        self.dns_log = on;
        self
    }

    /// Also parses name evidence (DNS, mDNS, LLMNR, SNI, HTTP Host, DHCP) from every packet.
    pub fn with_names(mut self, on: bool) -> Dispatcher {
        self.names = on.then(EvidenceParser::new);
        self
    }

    /// Decodes `frame` and calls `emit` for each packet in it, outermost first (and for each
    /// announcement a packet carries, just before that packet).
    pub fn dispatch(
        &mut self,
        frame: &Frame<'_>,
        mut emit: impl FnMut(Dispatched<'_>),
    ) -> Result<(), DecodeError> {
        self.counters.frames += 1;
        let ts = frame.ts_ns;
        self.clock = self.clock.max(ts);
        let clock = self.clock;
        let workers = self.workers;
        let seed = self.uid_seed;
        let me = self.me;
        let tunnels = &mut self.tunnels;
        let counters = &mut self.counters;
        let names = &mut self.names;
        let dns_log = self.dns_log;
        let vlan_key = self.vlan_key;
        // The VLAN ids of the last packet that carried a tunnel: the frame of the outer UDP
        // connection (VXLAN, Geneve, ...) whose uid the next inner packet names. Packets are
        // visited outermost first, so it is always set before it is read.
        let mut carrier_vlans = Vlans::NONE;
        self.decoder
            .decode(frame.link, ts, frame.data, |p: &Packet<'_>| {
                let vlans = if vlan_key {
                    Vlans::new(p.vlan, p.inner_vlan)
                } else {
                    Vlans::NONE
                };
                let ep = Endpoints::of_packet(p).with_vlans(vlans);
                let (key, _) = ep.key();
                if p.carries.is_some() {
                    // Registers the outer connection's start before any inner packet names it.
                    tunnels.touch(key, ts);
                    carrier_vlans = vlans;
                }
                let mut parents = [None::<Uid>; MAX_TUNNEL_PARENTS];
                if let Some(outer) = p.encap.last() {
                    // A UDP tunnel is a connection of its own, keyed with its frame's ids;
                    // GRE and IP-in-IP layers are not connections, and Zeek names them by
                    // their address pair alone.
                    let ovlans = if outer.ip_proto == 17 {
                        carrier_vlans
                    } else {
                        Vlans::NONE
                    };
                    let okey = encap_key(outer, ovlans);
                    let start = tunnels.touch(okey, ts);
                    parents[0] = Some(conn_uid(seed, &okey, start));
                }
                let owner = key.owner(workers);
                counters.packets += 1;
                if me.is_some_and(|m| m != owner) {
                    counters.forwarded += 1;
                }
                if p.ip_proto == 6 && !p.payload.is_empty() {
                    if let Some(e) = ftp_announcement(p, ts) {
                        counters.announcements += 1;
                        emit(Dispatched::Expect(e));
                    }
                }
                if let Some(np) = names.as_mut() {
                    np.extract(p, ts, clock, |ev| emit(Dispatched::Name(owner, ev)));
                }
                emit(Dispatched::Packet(
                    owner,
                    PacketSummary::from_packet(p, ts, vlans, parents),
                ));
                if dns_log
                    && !p.payload.is_empty()
                    && dnslog::dns_ports(p.ip_proto, ep.src_port, ep.dst_port)
                {
                    dns_messages(p, ts, ep, |m| emit(Dispatched::Dns(owner, m)));
                }
            })
    }

    /// Counters of this dispatcher.
    pub fn counters(&self) -> DispatchCounters {
        self.counters
    }

    /// Counters of name evidence parsing (zero when names are off).
    pub fn evidence_counters(&self) -> EvidenceCounters {
        self.names
            .as_ref()
            .map(EvidenceParser::counters)
            .unwrap_or_default()
    }

    /// The dispatcher's clock: the largest packet time it has seen.
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// Counters of this dispatcher's decoder.
    pub fn decode_counters(&self) -> DecodeCounters {
        *self.decoder.counters()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::Trace;

    /// The key vlans of the one packet in `frame`, dispatched with and without the VLAN key.
    fn keyed_vlans(frame: &[u8], vlan_key: bool) -> Vlans {
        let decode = DecodeConfig {
            vlan_key,
            ..DecodeConfig::default()
        };
        let mut d = Dispatcher::new(decode, 2, None, 0, 60_000_000_000);
        let f = Frame {
            ts_ns: 1,
            link: crate::decode::LinkType::ETHERNET,
            data: frame,
            wire_len: frame.len() as u32,
        };
        let mut got = Vec::new();
        d.dispatch(&f, |m| {
            if let Dispatched::Packet(owner, s) = m {
                assert_eq!(owner, Endpoints::of_summary(&s).key().0.owner(2));
                got.push(s.vlans);
            }
        })
        .expect("the frame decodes");
        assert_eq!(got.len(), 1);
        got[0]
    }

    #[test]
    fn the_default_key_ignores_tags_and_the_vlan_key_keeps_both() {
        let mut t = Trace::new();
        t.udp(
            1,
            "198.18.0.1:4000".parse().unwrap(),
            "198.18.0.2:9999".parse().unwrap(),
            b"x",
        );
        let plain = t.frames()[0].data.clone();
        // Outer tag 10 (QinQ ethertype), inner tag 20, inserted after the MAC addresses.
        let mut qinq = plain[..12].to_vec();
        qinq.extend_from_slice(&[0x88, 0xa8, 0x00, 10, 0x81, 0x00, 0x00, 20]);
        qinq.extend_from_slice(&plain[12..]);
        assert_eq!(keyed_vlans(&qinq, false), Vlans::NONE);
        assert_eq!(keyed_vlans(&plain, true), Vlans::NONE);
        assert_eq!(
            keyed_vlans(&qinq, true),
            Vlans {
                outer: Some(10),
                inner: Some(20)
            }
        );
    }
}

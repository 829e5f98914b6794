//! One connection with Zeek's semantics: roles (and their flips), history letters, per-side
//! counters, the TCP endpoint state machine, and the timers that decide when Zeek would remove
//! the connection. The record is built from this when the connection ends.

use super::cold::{ColdStore, NO_COLD};
use super::community_id::community_id;
use super::key::FlowKey;
use super::service::ServiceState;
use super::summary::{PacketSummary, SNIPPET_LEN};
use super::tcp::{seq_delta, EpState, Scaled, TcpEp};
use super::{FlowConfig, ServerPorts};
use crate::decode::L4;
use crate::types::record::{
    ConnRecord, ConnState, History, Service, Transport, Uid, MAX_TUNNEL_PARENTS,
};
use std::net::IpAddr;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

// History bits (Zeek's `HIST_*`); the responder's are shifted left by 16.
const H_SYN: u32 = 0x1;
const H_FIN: u32 = 0x2;
const H_RST: u32 = 0x4;
const H_FIN_RST: u32 = 0x8;
const H_DATA: u32 = 0x10;
const H_ACK: u32 = 0x20;
const H_MULTI: u32 = 0x40;
/// Zeek's `HIST_UNKNOWN_PKT` (`X`): analysis knowingly stopped short (a configured limit).
const H_UNKNOWN: u32 = 0x400;

/// Zeek's `Tunnel::max_changes_per_connection`: how many `tunnel_changed` events one
/// connection raises; a change beyond it is the limit reached (`X`).
const TUNNEL_MAX_CHANGES: u8 = 5;

/// Zeek's `tcp_SYN_timeout`: when the first expiry check runs.
const TCP_SYN_TIMEOUT_NS: u64 = 5_000_000_000;
/// Zeek's `tcp_session_timer`: how often a half-closed connection is checked again.
const TCP_SESSION_TIMER_NS: u64 = 6_000_000_000;
/// Zeek's `tcp_connection_linger`.
const TCP_LINGER_NS: u64 = 5_000_000_000;

/// Zeek's `dns_session_timeout`: the DNS analyzer's expiry check on a UDP connection runs
/// this long after the connection starts, and again this long after each check that kept it.
const DNS_SESSION_TIMEOUT_NS: u64 = 10_000_000_000;
/// The UDP ports Zeek's DNS analyzer is registered for (`DNS::ports`).
const DNS_UDP_PORTS: [u16; 4] = [53, 137, 5353, 5355];
/// `Conn::analyzer_inactivity_timeouts` and `Conn::port_inactivity_timeouts`
/// (`base/protocols/conn/inactivity.zeek`): interactive services may idle for an hour.
const INTERACTIVE_INACTIVITY_NS: u64 = 3_600_000_000_000;
/// The ports of `Conn::port_inactivity_timeouts` (all TCP): FTP, SSH, Telnet, rlogin.
const INTERACTIVE_PORTS: [u16; 4] = [21, 22, 23, 513];

/// Largest sequence jump Zeek believes in a SYN or RST.
const TOO_LARGE_SEQ_DELTA: i32 = 1_048_576;

const ORIG_SEEN: u8 = 1;
const RESP_SEEN: u8 = 2;

/// Per-direction counters and TCP state. Index 0 of [`Conn::sides`] is the originator.
#[derive(Clone, Copy, Debug, Default)]
pub struct Side {
    pub pkts: u64,
    pub ip_bytes: u64,
    /// UDP and ICMP payload bytes (TCP sizes come from sequence numbers).
    pub payload: u64,
    /// A UDP or ICMP packet with a valid checksum came from this side.
    pub active: bool,
    pub bad_checksum: Scaled,
    pub tcp: TcpEp,
}

/// The first packet of a connection that began with a SYN-ACK, kept so the connection can be
/// rebuilt with flipped roles when later traffic shows that the SYN-ACK came from the server.
#[derive(Clone, Copy, Debug)]
pub struct PendingSynAck {
    pub ts_ns: u64,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    pub flags: u8,
    pub payload_len: u32,
}

/// What a timer check decided.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Expiry {
    Keep,
    Remove,
}

/// One tracked connection.
#[derive(Clone, Copy, Debug)]
pub struct Conn {
    pub key: FlowKey,
    pub uid: Uid,
    /// The originator is the key's `hi` end (the roles are the key's two ends, so they are not
    /// stored again).
    orig_hi: bool,
    pub ip_proto: u8,
    pub transport: Transport,
    /// ICMP (v6, type, code) of the first packet, for the Community ID.
    pub icmp: Option<(bool, u8, u8)>,
    pub start_ns: u64,
    pub last_ns: u64,
    pub history: History,
    hist_seen: u32,
    pub sides: [Side; 2],
    pub missed_bytes: u64,
    pub service: ServiceState,
    /// Index of this connection's entry in the shard's [`ColdStore`] ([`NO_COLD`]: none yet).
    cold: u32,
    /// `tunnel_changed` events raised so far (saturates at [`TUNNEL_MAX_CHANGES`]); the
    /// last packet's innermost tunnel is in the cold entry.
    encap_changes: u8,
    // TCP analyzer flags.
    is_partial: bool,
    first_packet_seen: u8,
    is_active: bool,
    /// A [`PendingSynAck`] waits in the cold entry.
    pending_synack: bool,
    /// Whether the segment being applied was captured in full (Zeek hands only fully captured
    /// payload to reassembly, so a header-only capture turns every acked byte into a gap).
    payload_captured: bool,
    // Timers (0 = not armed).
    attempt_at: u64,
    delete_at: u64,
    expire_at: u64,
    inactivity_ns: u64,
    /// Time of the earliest live timer-queue entry for this connection (`u64::MAX`: none).
    pub timer_at: u64,
}

fn transport_of(ip_proto: u8) -> Transport {
    match ip_proto {
        6 => Transport::Tcp,
        17 => Transport::Udp,
        1 | 58 => Transport::Icmp,
        _ => Transport::Unknown,
    }
}

impl Conn {
    /// Adds the encapsulating connections of one packet to `tunnel_parents` (Zeek adds the
    /// innermost tunnel's uid whenever the encapsulation changes, so a set builds up).
    pub fn add_parents(
        &mut self,
        cold: &mut ColdStore,
        parents: &[Option<Uid>; MAX_TUNNEL_PARENTS],
    ) {
        if parents[0].is_none() && self.cold == NO_COLD {
            // Never in a tunnel: nothing changed, nothing to add.
            return;
        }
        let c = cold.get_or_insert(&mut self.cold);
        let was = std::mem::replace(&mut c.encap, parents[0]);
        let held = &mut c.parents;
        for p in parents.iter().flatten() {
            if held.contains(&Some(*p)) {
                continue;
            }
            if let Some(free) = held.iter_mut().find(|x| x.is_none()) {
                *free = Some(*p);
            }
        }
        self.check_encapsulation(was, parents[0]);
    }

    /// Frees this connection's cold entry (when it leaves the table).
    pub fn release(&mut self, cold: &mut ColdStore) {
        cold.release(&mut self.cold);
    }

    /// The index into [`Cold::ranges`](super::cold::Cold::ranges) of side `ei` (0: the
    /// originator) in the current roles: the key's end, which a flip does not move.
    fn key_end(&self, ei: usize) -> usize {
        ei ^ usize::from(self.orig_hi)
    }

    /// Zeek's `Connection::CheckEncapsulation`: a packet that arrives through another tunnel
    /// than the last one raises `tunnel_changed`, at most `Tunnel::max_changes_per_connection`
    /// times; a change past that limit marks the history with `X` (Zeek's `HIST_UNKNOWN_PKT`,
    /// the "limit reached" letter: the two directions of `vxlan-icmp` and `gtp-split-ports-http`
    /// travel in different outer connections, so every packet changes the tunnel). Entering or
    /// leaving a tunnel is not counted.
    fn check_encapsulation(&mut self, was: Option<Uid>, now: Option<Uid>) {
        match (was, now) {
            (Some(was), Some(is)) if was != is => {
                if self.encap_changes < TUNNEL_MAX_CHANGES {
                    self.encap_changes += 1;
                } else {
                    self.check_history(H_UNKNOWN, b'X');
                }
            }
            _ => {}
        }
    }

    /// A connection whose first packet is `pkt`, with `src` → `dst` as the tentative roles.
    /// Applies Zeek's start-of-connection role decision (`WantConnection` + broadcast rule).
    pub fn new(
        cfg: &FlowConfig,
        key: FlowKey,
        pkt: &PacketSummary,
        src_port: u16,
        dst_port: u16,
    ) -> Conn {
        let transport = transport_of(pkt.ip_proto);
        let inactivity_ns = match transport {
            Transport::Tcp => cfg.tcp_inactivity_ns,
            Transport::Udp => cfg.udp_inactivity_ns,
            Transport::Icmp => cfg.icmp_inactivity_ns,
            Transport::Unknown => cfg.other_inactivity_ns,
        };
        let icmp = match pkt.l4 {
            L4::Icmp {
                v6,
                icmp_type,
                code,
            } => Some((v6, icmp_type, code)),
            _ => None,
        };
        let mut c = Conn {
            key,
            uid: super::uid::conn_uid(cfg.uid_seed, &key, pkt.ts_ns),
            orig_hi: (pkt.src, src_port) > (pkt.dst, dst_port),
            ip_proto: pkt.ip_proto,
            transport,
            icmp,
            start_ns: pkt.ts_ns,
            last_ns: pkt.ts_ns,
            history: History::default(),
            hist_seen: 0,
            sides: [Side::default(); 2],
            missed_bytes: 0,
            service: ServiceState::default(),
            cold: NO_COLD,
            encap_changes: 0,
            is_partial: false,
            first_packet_seen: 0,
            is_active: true,
            pending_synack: false,
            payload_captured: true,
            attempt_at: 0,
            delete_at: 0,
            expire_at: 0,
            inactivity_ns,
            timer_at: u64::MAX,
        };
        if transport == Transport::Tcp {
            c.expire_at = pkt.ts_ns + TCP_SYN_TIMEOUT_NS;
        }
        if c.wants_flip(&cfg.server_ports, pkt, src_port, dst_port) && !is_broadcast(pkt.dst) {
            c.flip_roles();
        }
        if transport == Transport::Udp && DNS_UDP_PORTS.contains(&c.resp_port()) {
            // The DNS analyzer, attached by the responder's port, arms its own expiry timer
            // (`DNS_Analyzer::ExpireTimer`); TCP DNS has none.
            c.expire_at = pkt.ts_ns + DNS_SESSION_TIMEOUT_NS;
            c.service.attach_dns();
        }
        c
    }

    /// Zeek's `WantConnection` role guess from the first packet's flags and ports.
    fn wants_flip(&self, ports: &ServerPorts, pkt: &PacketSummary, sp: u16, dp: u16) -> bool {
        let likely = |p| ports.contains(pkt.ip_proto, p);
        match pkt.l4 {
            L4::Tcp { flags, .. } => {
                let partial = flags & SYN == 0 || flags & ACK != 0;
                if !partial || !likely(sp) {
                    return false;
                }
                if likely(dp) {
                    // Both plausible: flip only a non-SYN packet towards the higher port.
                    flags & SYN == 0 && sp < dp
                } else {
                    true
                }
            }
            L4::Udp { .. } => likely(sp) && !likely(dp),
            _ => false,
        }
    }

    /// Swaps originator and responder and records `^`, as Zeek's `FlipRoles` does. The
    /// history bits are deliberately not swapped: Zeek keeps them as they were.
    pub fn flip_roles(&mut self) {
        self.orig_hi = !self.orig_hi;
        self.sides.swap(0, 1);
        let f = self.first_packet_seen;
        self.first_packet_seen = ((f & ORIG_SEEN) << 1) | ((f & RESP_SEEN) >> 1);
        self.is_partial = false;
        self.history.push(b'^');
    }

    /// One end of the key: its `hi` end or its `lo` end.
    #[inline]
    fn key_end_addr(&self, hi: bool) -> (IpAddr, u16) {
        if hi {
            (self.key.hi_addr, self.key.hi_port)
        } else {
            (self.key.lo_addr, self.key.lo_port)
        }
    }

    /// The originator's address.
    #[inline]
    pub fn orig(&self) -> IpAddr {
        self.key_end_addr(self.orig_hi).0
    }

    #[inline]
    pub fn orig_port(&self) -> u16 {
        self.key_end_addr(self.orig_hi).1
    }

    /// The responder's address.
    #[inline]
    pub fn resp(&self) -> IpAddr {
        self.key_end_addr(!self.orig_hi).0
    }

    #[inline]
    pub fn resp_port(&self) -> u16 {
        self.key_end_addr(!self.orig_hi).1
    }

    /// Swaps the endpoints and records `^` but leaves every counter where it is: when an
    /// analyzer flips a UDP connection (Zeek's NTP or DNS analyzer on a reply seen before its
    /// request),
    /// Zeek has already counted the packet on the side it arrived as, and its UDP endpoint
    /// states and sizes are not swapped, so the first packet stays the originator's (`D^`,
    /// both packets on the originator's side in `ntp-misordered`).
    fn flip_endpoints(&mut self) {
        self.orig_hi = !self.orig_hi;
        self.history.push(b'^');
    }

    /// True when the packet goes from the originator.
    pub fn is_orig(&self, pkt: &PacketSummary, src_port: u16) -> bool {
        pkt.src == self.orig() && src_port == self.orig_port()
    }

    fn add_history(&mut self, code: u8) {
        self.history.push(code);
    }

    /// Records `code` the first time `mask` is seen. Like Zeek's `CheckHistory`, it returns
    /// true when the event had been seen before, so callers can decide to repeat the letter.
    fn check_history(&mut self, mask: u32, code: u8) -> bool {
        if self.hist_seen & mask == 0 {
            self.hist_seen |= mask;
            self.add_history(code);
            false
        } else {
            true
        }
    }

    fn ep_check_history(&mut self, is_orig: bool, mask: u32, code: u8) -> bool {
        if is_orig {
            self.check_history(mask, code)
        } else {
            self.check_history(mask << 16, code.to_ascii_lowercase())
        }
    }

    fn ep_add_history(&mut self, is_orig: bool, code: u8) {
        self.add_history(if is_orig {
            code
        } else {
            code.to_ascii_lowercase()
        });
    }

    fn scaled(&mut self, is_orig: bool, which: fn(&mut Side) -> &mut Scaled, code: u8) {
        let i = if is_orig { 0 } else { 1 };
        if which(&mut self.sides[i]).hit() {
            self.ep_add_history(is_orig, code);
        }
    }

    /// Applies one packet. `is_orig` is its direction in the current roles.
    pub fn apply(
        &mut self,
        cfg: &FlowConfig,
        cold: &mut ColdStore,
        pkt: &PacketSummary,
        is_orig: bool,
    ) {
        match pkt.l4 {
            L4::Tcp { .. } => self.apply_tcp(cfg, cold, pkt, is_orig),
            L4::Udp { src_port, dst_port } => {
                if !pkt.checksum_ok {
                    // Zeek drops the packet before the UDP analyzer and only notes it.
                    self.scaled(is_orig, |s| &mut s.bad_checksum, b'C');
                    return;
                }
                self.last_ns = pkt.ts_ns;
                self.ep_check_history(is_orig, H_DATA, b'D');
                self.count(pkt, is_orig, true);
                let (op, rp) = if is_orig {
                    (src_port, dst_port)
                } else {
                    (dst_port, src_port)
                };
                self.service.observe(pkt, is_orig, op, rp);
                let dns_flip =
                    self.service.dns_wants_flip(pkt, is_orig) && !is_multicast(self.resp());
                if dns_flip || self.service.ntp_wants_flip(pkt, is_orig, op, rp) {
                    self.flip_endpoints();
                }
            }
            L4::Icmp { .. } => {
                if !pkt.checksum_ok {
                    return;
                }
                self.last_ns = pkt.ts_ns;
                self.count(pkt, is_orig, true);
                let (op, rp) = (self.orig_port(), self.resp_port());
                self.service.observe(pkt, is_orig, op, rp);
            }
            L4::Other => {
                self.last_ns = pkt.ts_ns;
                self.count(pkt, is_orig, false);
            }
        }
    }

    fn count(&mut self, pkt: &PacketSummary, is_orig: bool, payload: bool) {
        let s = &mut self.sides[if is_orig { 0 } else { 1 }];
        s.pkts += 1;
        s.ip_bytes += u64::from(pkt.ip_len);
        if payload {
            s.payload += u64::from(pkt.payload_len);
            s.active = true;
        }
    }

    /// Zeek's `TCPSessionAdapter::IsReuse`: does this packet start a new connection?
    pub fn is_reuse(&self, pkt: &PacketSummary, is_orig: bool) -> bool {
        let L4::Tcp { flags, seq, .. } = pkt.l4 else {
            return false;
        };
        if flags & SYN == 0 {
            return false;
        }
        let (o, r) = (&self.sides[0].tcp, &self.sides[1].tcp);
        let mut conn_orig = o;
        if flags & ACK != 0 {
            if o.state != EpState::Inactive {
                return false;
            }
            conn_orig = r;
        }
        let _ = is_orig;
        let closed = o.did_close || r.did_close;
        if !closed {
            if seq == conn_orig.start_seq {
                return false;
            }
            if flags & ACK == 0
                && conn_orig.state == EpState::SynAckSent
                && r.state == EpState::Inactive
                && seq == r.start_seq
            {
                // SYN and SYN-ACK seen in reverse order: not a new connection.
                return false;
            }
        }
        true
    }

    fn set_partial_status(&mut self, flags: u8, is_orig: bool) {
        if is_orig {
            if self.first_packet_seen & ORIG_SEEN == 0 {
                self.is_partial = flags & SYN == 0 || flags & ACK != 0;
            }
        } else if self.first_packet_seen & RESP_SEEN == 0 && !self.is_partial {
            self.is_partial = flags & SYN == 0;
        }
    }

    fn apply_tcp(
        &mut self,
        cfg: &FlowConfig,
        cold: &mut ColdStore,
        pkt: &PacketSummary,
        is_orig: bool,
    ) {
        let L4::Tcp {
            src_port,
            dst_port,
            seq,
            ack,
            flags,
            window,
        } = pkt.l4
        else {
            return;
        };
        if pkt.header_cut {
            // Zeek's TCP analyzer stops at the `truncated_header` weird: the segment made or
            // kept the connection alive, nothing else.
            self.last_ns = pkt.ts_ns;
            return;
        }
        if !pkt.checksum_ok {
            // A packet from the SYN-ACK's receiver shows that side is captured, even when its
            // checksum fails: Zeek then keeps the roles (`tcp-bad-checksum-localhost`, whose
            // client packets all fail); only a one-sided capture is flipped below.
            if !is_orig {
                self.pending_synack = false;
            }
            self.scaled(is_orig, |s| &mut s.tcp.bad_checksum, b'C');
            return;
        }
        // The summary keeps at most SNIPPET_LEN payload bytes; fewer than that (or than the
        // payload) means the capture itself was cut short.
        let want = pkt.payload_len.min(SNIPPET_LEN as u32);
        self.payload_captured = u32::from(pkt.snippet_len) >= want;
        // A connection that began with a SYN-ACK is rebuilt with flipped roles as soon as an
        // ack or data segment follows (Zeek 5.1+):
        // stealth scans never produce those. Repeats of the SYN-ACK itself keep the question open.
        let pending = match cold.get(self.cold) {
            Some(c) if self.pending_synack => c.pending_synack,
            _ => None,
        };
        if let Some(first) = pending {
            if flags & (SYN | RST) == 0 && (flags & ACK != 0 || pkt.payload_len > 0) {
                self.pending_synack = false;
                self.rebuild_flipped(cfg, cold, first);
                let now_orig = !is_orig;
                self.segment(
                    cfg,
                    cold,
                    pkt.ts_ns,
                    now_orig,
                    flags,
                    seq,
                    ack,
                    window,
                    pkt.payload_len,
                );
                self.finish_packet(pkt, now_orig, src_port, dst_port);
                return;
            }
            if !(is_orig && flags & SYN != 0 && flags & RST == 0) {
                self.pending_synack = false;
            }
        }
        let first_packet = self.sides[0].pkts + self.sides[1].pkts == 0
            && self.sides[0].tcp.state == EpState::Inactive
            && self.sides[1].tcp.state == EpState::Inactive;
        self.segment(
            cfg,
            cold,
            pkt.ts_ns,
            is_orig,
            flags,
            seq,
            ack,
            window,
            pkt.payload_len,
        );
        if first_packet
            && is_orig
            && flags & SYN != 0
            && flags & ACK != 0
            && flags & (RST | FIN) == 0
        {
            self.pending_synack = true;
            cold.get_or_insert(&mut self.cold).pending_synack = Some(PendingSynAck {
                ts_ns: pkt.ts_ns,
                seq,
                ack,
                window,
                flags,
                payload_len: pkt.payload_len,
            });
        }
        self.finish_packet(pkt, is_orig, src_port, dst_port);
    }

    fn finish_packet(&mut self, pkt: &PacketSummary, is_orig: bool, src_port: u16, dst_port: u16) {
        self.count(pkt, is_orig, false);
        let (op, rp) = if is_orig {
            (src_port, dst_port)
        } else {
            (dst_port, src_port)
        };
        self.service.observe(pkt, is_orig, op, rp);
        if self.inactivity_ns != INTERACTIVE_INACTIVITY_NS {
            // `Conn::analyzer_inactivity_timeouts`: a confirmed SSH or FTP analyzer gives the
            // connection an hour of inactivity.
            let svc = self.service.services();
            if svc.contains(Service::Ssh) || svc.contains(Service::Ftp) {
                self.inactivity_ns = INTERACTIVE_INACTIVITY_NS;
            }
        }
    }

    /// What `base/protocols/conn/inactivity.zeek` does on `connection_established` (the
    /// responder's SYN-ACK answered a SYN): the service port is the responder's, or the
    /// originator's when the SYN was missed and only that one is a likely server port; an
    /// FTP, SSH, Telnet or rlogin port gets an hour of inactivity.
    fn connection_established(&mut self, cfg: &FlowConfig) {
        let mut port = self.resp_port();
        if self.sides[0].tcp.state == EpState::Inactive
            && !cfg.server_ports.contains(6, port)
            && cfg.server_ports.contains(6, self.orig_port())
        {
            port = self.orig_port();
        }
        if INTERACTIVE_PORTS.contains(&port) {
            self.inactivity_ns = INTERACTIVE_INACTIVITY_NS;
        }
    }

    /// Replays the stored first SYN-ACK with the roles flipped, keeping its counters.
    fn rebuild_flipped(&mut self, cfg: &FlowConfig, cold: &mut ColdStore, first: PendingSynAck) {
        let counts = self.sides;
        self.history = History::default();
        self.hist_seen = 0;
        self.sides = [Side::default(); 2];
        self.is_partial = false;
        self.first_packet_seen = 0;
        self.is_active = true;
        self.attempt_at = 0;
        self.delete_at = 0;
        self.expire_at = first.ts_ns + TCP_SYN_TIMEOUT_NS;
        self.flip_roles();
        let captured = std::mem::replace(&mut self.payload_captured, true);
        self.segment(
            cfg,
            cold,
            first.ts_ns,
            false,
            first.flags,
            first.seq,
            first.ack,
            first.window,
            first.payload_len,
        );
        // The SYN-ACK came from the server: it is the responder's answer to a SYN we missed.
        self.sides[1].tcp.set_state(EpState::Established);
        self.payload_captured = captured;
        for (i, c) in counts.iter().enumerate() {
            let s = &mut self.sides[1 - i];
            s.pkts = c.pkts;
            s.ip_bytes = c.ip_bytes;
        }
    }

    /// Zeek's `TCPSessionAdapter::Process` for one segment with a valid checksum.
    #[allow(clippy::too_many_arguments)] // The segment's fields, kept apart to replay a stored one.
    fn segment(
        &mut self,
        cfg: &FlowConfig,
        cold: &mut ColdStore,
        ts: u64,
        mut is_orig: bool,
        flags: u8,
        seq: u32,
        ack: u32,
        window: u16,
        len: u32,
    ) {
        let syn = flags & SYN != 0;
        let fin = flags & FIN != 0;
        let rst = flags & RST != 0;
        let has_ack = flags & ACK != 0;
        let len_i = len as i64;
        let (mut ei, mut pi) = if is_orig { (0, 1) } else { (1, 0) };

        self.set_partial_status(flags, is_orig);

        let mut seg_len = len as u64 + u64::from(syn) + u64::from(fin);
        if rst {
            seg_len -= len as u64;
        }
        let seq_one_past = seq.wrapping_add(seg_len as u32);
        self.init_endpoint(ei, flags, seq, seq_one_past, len);

        let ep = self.sides[ei].tcp;
        let (rel_seq, underflow) = ep.relative(seq, ep.last_seq, ep.seq_wraps);
        self.update_history(is_orig, ei, flags, rel_seq, u64::from(len));

        // Zero windows matter unless they come with or after a RST, or after the peer's FIN.
        if window == 0
            && !rst
            && self.sides[pi].tcp.state != EpState::Closed
            && self.sides[ei].tcp.state != EpState::Reset
        {
            self.scaled(is_orig, |s| &mut s.tcp.zero_window, b'W');
        }

        if !(self.sides[0].tcp.did_close && self.sides[1].tcp.did_close) {
            self.last_ns = ts;
        }
        if fin {
            let e = &mut self.sides[ei].tcp;
            e.fin_cnt = e.fin_cnt.saturating_add(1);
            e.fin_seq = rel_seq.wrapping_add(seg_len);
        }

        let mut rel_ack = 0u64;
        if has_ack {
            let peer = &mut self.sides[pi].tcp;
            if peer.state == EpState::Inactive {
                rel_ack = 1;
                let base = ack.wrapping_sub(1);
                peer.init_seqs(base, base);
            } else {
                let (r, under) = peer.relative(ack, peer.ack_seq, peer.ack_wraps);
                if under {
                    rel_ack = 0;
                } else {
                    rel_ack = r;
                    if !rst {
                        let d = seq_delta(ack, peer.ack_seq);
                        if !(ack == 0 && d > TOO_LARGE_SEQ_DELTA) && d > 0 {
                            peer.update_ack_seq(ack);
                        }
                    }
                }
            }
        }

        let delta_last = self.update_last_seq(ei, is_orig, seq_one_past, flags, len_i);

        let (do_close, gen_event, flipped) =
            self.update_state_machine(cfg, ts, ei, pi, is_orig, flags, seq, len, delta_last);
        if flipped {
            std::mem::swap(&mut ei, &mut pi);
            is_orig = !is_orig;
        }

        if has_ack {
            self.ack_received(cold, pi, rel_ack);
        }

        // The PIA marks the first packet of each direction as seen after processing it.
        self.first_packet_seen |= if is_orig { ORIG_SEEN } else { RESP_SEEN };

        let rel_data_seq = if syn {
            rel_seq.wrapping_add(1)
        } else {
            rel_seq
        };
        if len > 0 && !rst && !underflow && self.payload_captured {
            self.data_sent(cold, ei, rel_data_seq, u64::from(len));
        }
        if do_close {
            self.connection_closed(cfg, ei, pi, gen_event);
        }
    }

    fn init_endpoint(&mut self, ei: usize, flags: u8, first_seq: u32, last_seq: u32, _len: u32) {
        let syn = flags & SYN != 0;
        let e = &mut self.sides[ei].tcp;
        match e.state {
            EpState::Inactive => {
                if syn {
                    e.init_seqs(first_seq, last_seq);
                } else {
                    // A partial connection: number bytes as though a SYN had been seen, and
                    // make sure the first packet is not taken for a retransmission.
                    let base = first_seq.wrapping_sub(1);
                    e.start_seq = base;
                    e.ack_seq = base;
                    e.last_seq = first_seq;
                }
            }
            EpState::SynSent | EpState::SynAckSent => {
                if syn && first_seq != e.start_seq {
                    e.init_seqs(first_seq, last_seq);
                }
            }
            EpState::Established | EpState::Partial => {
                if syn {
                    e.init_seqs(first_seq, last_seq);
                }
            }
            EpState::Reset => {
                if syn && e.prev_state == EpState::Inactive {
                    e.init_seqs(first_seq, last_seq);
                }
            }
            EpState::Closed => {}
        }
    }

    fn update_history(&mut self, is_orig: bool, ei: usize, flags: u8, rel_seq: u64, len: u64) {
        let syn = flags & SYN != 0;
        let fin = flags & FIN != 0;
        let rst = flags & RST != 0;
        let bits = u8::from(syn) + u8::from(fin) + u8::from(rst);
        if bits > 1 {
            if fin && rst {
                self.ep_check_history(is_orig, H_FIN_RST, b'I');
            } else {
                self.ep_check_history(is_orig, H_MULTI, b'Q');
            }
        } else if bits == 1 {
            if syn {
                let code = if flags & ACK != 0 { b'H' } else { b'S' };
                if self.ep_check_history(is_orig, H_SYN, code)
                    && rel_seq as u32 != self.sides[ei].tcp.hist_last_syn
                {
                    self.ep_add_history(is_orig, code);
                }
                self.sides[ei].tcp.hist_last_syn = rel_seq as u32;
            }
            if fin {
                let end = rel_seq.wrapping_add(len);
                if self.ep_check_history(is_orig, H_FIN, b'F')
                    && end as u32 != self.sides[ei].tcp.hist_last_fin
                {
                    self.ep_add_history(is_orig, b'F');
                }
                self.sides[ei].tcp.hist_last_fin = end as u32;
            }
            if rst {
                if self.ep_check_history(is_orig, H_RST, b'R')
                    && rel_seq as u32 != self.sides[ei].tcp.hist_last_rst
                {
                    self.ep_add_history(is_orig, b'R');
                }
                self.sides[ei].tcp.hist_last_rst = rel_seq as u32;
            }
        } else if len > 0 {
            self.ep_check_history(is_orig, H_DATA, b'D');
        } else if flags & ACK != 0 {
            self.ep_check_history(is_orig, H_ACK, b'A');
        }
    }

    fn update_last_seq(&mut self, ei: usize, is_orig: bool, last: u32, flags: u8, len: i64) -> i32 {
        let e = &mut self.sides[ei].tcp;
        let delta = seq_delta(last, e.last_seq);
        let syn_or_rst = flags & (SYN | RST) != 0;
        if syn_or_rst && !(-TOO_LARGE_SEQ_DELTA..=TOO_LARGE_SEQ_DELTA).contains(&delta) {
            // An outlandish SYN or RST sequence number is not believed.
        } else if flags & FIN != 0 && e.last_seq == e.start_seq.wrapping_add(1) {
            // Only the SYN and the FIN seen: believe the FIN even when it looks backwards,
            // which is what a connection of more than 2 GiB looks like.
            e.update_last_seq(last);
        } else if e.state == EpState::Reset {
            // Sequence numbers after a RST are not trusted.
        } else if delta > 0 {
            e.update_last_seq(last);
        } else if len > 0 {
            self.scaled(is_orig, |s| &mut s.tcp.rxmit, b'T');
        }
        delta
    }

    /// Zeek's `UpdateStateMachine`; returns (do_close, gen_event, roles_flipped).
    #[allow(clippy::too_many_arguments)] // Mirrors the shape of the state machine it models.
    fn update_state_machine(
        &mut self,
        cfg: &FlowConfig,
        t: u64,
        ei: usize,
        pi: usize,
        is_orig: bool,
        flags: u8,
        base_seq: u32,
        len: u32,
        delta_last: i32,
    ) -> (bool, bool, bool) {
        let syn = flags & SYN != 0;
        let fin = flags & FIN != 0;
        let rst = flags & RST != 0;
        let has_ack = flags & ACK != 0;
        let mut do_close = false;
        let mut gen_event = false;
        let mut flipped = false;
        let (mut ei, mut pi) = (ei, pi);

        match self.sides[ei].tcp.state {
            EpState::Inactive => {
                if syn {
                    if is_orig {
                        let s = if has_ack {
                            EpState::SynAckSent
                        } else {
                            EpState::SynSent
                        };
                        self.sides[ei].tcp.set_state(s);
                        if cfg.tcp_attempt_delay_ns > 0 {
                            self.attempt_at = t + cfg.tcp_attempt_delay_ns;
                        }
                    } else {
                        if !has_ack
                            && self.sides[pi].tcp.state == EpState::SynAckSent
                            && base_seq == self.sides[ei].tcp.start_seq
                        {
                            // SYN and SYN-ACK arrived in reverse order: flip and establish.
                            self.flip_roles();
                            std::mem::swap(&mut ei, &mut pi);
                            flipped = true;
                            self.sides[pi].tcp.set_state(EpState::Established);
                            self.first_packet_seen |= ORIG_SEEN;
                        }
                        if self.sides[pi].tcp.state == EpState::SynSent {
                            self.sides[pi].tcp.set_state(EpState::Established);
                        }
                        self.sides[ei].tcp.set_state(EpState::Established);
                        if self.sides[pi].tcp.state != EpState::Partial {
                            self.connection_established(cfg);
                        }
                    }
                }
                if fin {
                    self.sides[ei].tcp.set_state(EpState::Closed);
                    do_close = true;
                    gen_event = true;
                }
                if rst {
                    self.sides[ei].tcp.set_state(EpState::Reset);
                    let peer = self.sides[pi].tcp.state;
                    let ep_is_orig = ei == 0;
                    let is_reject = if ep_is_orig {
                        peer == EpState::Established
                    } else {
                        peer == EpState::SynSent || peer == EpState::SynAckSent
                    };
                    do_close = true;
                    gen_event = !is_reject;
                }
                if self.sides[ei].tcp.state == EpState::Inactive {
                    let ep_is_orig = ei == 0;
                    if !ep_is_orig && len == 0 && self.sides[0].tcp.state == EpState::SynSent {
                        // An ack of the SYN before the SYN-ACK: not a partial connection.
                    } else if has_ack && self.sides[pi].tcp.state == EpState::Established {
                        // The SYN was missed but the SYN-ACK was seen: establish.
                        self.sides[ei].tcp.set_state(EpState::Established);
                        self.is_partial = false;
                        self.first_packet_seen |= if ep_is_orig { ORIG_SEEN } else { RESP_SEEN };
                    } else {
                        self.sides[ei].tcp.set_state(EpState::Partial);
                    }
                }
            }
            EpState::SynSent | EpState::SynAckSent => {
                if fin {
                    self.sides[ei].tcp.set_state(EpState::Closed);
                    do_close = true;
                    gen_event = true;
                }
                if rst {
                    self.sides[ei].tcp.set_state(EpState::Reset);
                    self.is_active = false;
                    do_close = true;
                }
            }
            EpState::Established | EpState::Partial => {
                if syn
                    && self.sides[ei].tcp.state == EpState::Partial
                    && self.sides[pi].tcp.state == EpState::Inactive
                    && !has_ack
                {
                    self.sides[ei].tcp.set_state(EpState::SynSent);
                }
                if fin && !rst {
                    self.sides[ei].tcp.set_state(EpState::Closed);
                    let p = &mut self.sides[pi].tcp;
                    if p.state == EpState::Reset && p.prev_state == EpState::Closed {
                        // FIN then RST from the peer was a normal close after all.
                        p.set_state(EpState::Closed);
                    }
                    do_close = true;
                    gen_event = true;
                }
                if rst {
                    self.sides[ei].tcp.set_state(EpState::Reset);
                    do_close = true;
                    let p = self.sides[pi].tcp;
                    if p.state != EpState::Reset || p.prev_state != EpState::Established {
                        self.is_active = false;
                    }
                }
            }
            EpState::Closed => {
                let _ = delta_last;
                if rst && self.sides[pi].tcp.state != EpState::Closed {
                    self.sides[ei].tcp.set_state(EpState::Reset);
                    if !self.sides[ei].tcp.did_close {
                        do_close = true;
                    }
                    if self.is_active && cfg.tcp_reset_delay_ns > 0 {
                        let at = t + cfg.tcp_reset_delay_ns;
                        self.delete_at = if self.delete_at == 0 {
                            at
                        } else {
                            self.delete_at.min(at)
                        };
                    }
                }
            }
            EpState::Reset => {}
        }
        (do_close, gen_event, flipped)
    }

    /// The peer acknowledged this endpoint's data up to `rel_ack`: anything below it that was
    /// never seen is a content gap (Zeek's `TCP_Reassembler::AckReceived`).
    fn ack_received(&mut self, cold: &mut ColdStore, ei: usize, rel_ack: u64) {
        let pi = 1 - ei;
        let e = self.sides[ei].tcp;
        let mut seq = rel_ack;
        if e.fin_cnt > 0 && seq >= e.fin_seq {
            seq = e.fin_seq.saturating_sub(1);
        }
        if seq <= e.reassembly.trim {
            return;
        }
        if seq > e.reassembly.next {
            if seq <= 2 && self.is_partial {
                // The faked SYN of a partial connection, or a keep-alive: not a gap.
                self.sides[ei].tcp.reassembly.trim = seq;
                return;
            }
            let clean = e.is_clean() && self.sides[pi].tcp.is_clean();
            let mut lost = 0u64;
            let mut events = 0u32;
            let end = self.key_end(ei);
            let idx = &mut self.cold;
            self.sides[ei].tcp.reassembly.undelivered(
                seq,
                move || &mut { cold }.get_or_insert(idx).ranges[end],
                |n| {
                    lost += n;
                    events += 1;
                },
            );
            if clean {
                for _ in 0..events {
                    self.scaled(ei == 0, |s| &mut s.tcp.gaps, b'G');
                }
                self.missed_bytes += lost;
            }
        }
        self.sides[ei].tcp.reassembly.trim = seq;
    }

    /// New payload from endpoint `ei` at relative sequence `seq` (Zeek's `DataSent`).
    fn data_sent(&mut self, cold: &mut ColdStore, ei: usize, seq: u64, len: u64) {
        let end = self.key_end(ei);
        let e = &mut self.sides[ei].tcp;
        let acked = e.relative_to_start(e.ack_seq, e.ack_wraps);
        let (mut s, mut l) = (seq, len);
        if s < acked {
            if s + l <= acked {
                return;
            }
            l -= acked - s;
            s = acked;
        }
        let idx = &mut self.cold;
        e.reassembly
            .insert(s, l, move || &mut { cold }.get_or_insert(idx).ranges[end]);
    }

    /// Zeek's `ConnectionClosed` (without deferral for undelivered data).
    fn connection_closed(&mut self, cfg: &FlowConfig, ei: usize, pi: usize, gen_event: bool) {
        if self.sides[ei].tcp.did_close {
            return;
        }
        self.sides[ei].tcp.did_close = true;
        let e = self.sides[ei].tcp;
        let p = self.sides[pi].tcp;
        let close_complete =
            e.state == EpState::Reset || p.did_close || p.state == EpState::Inactive;
        if close_complete {
            if (e.prev_state != EpState::Inactive || p.state != EpState::Inactive) && gen_event {
                self.is_active = false;
            }
            self.attempt_at = 0;
            self.expire_at = 0;
            self.delete_at = self.last_ns + cfg.tcp_close_delay_ns;
        } else if e.prev_state != EpState::Inactive {
            self.expire_at = self.last_ns + TCP_SESSION_TIMER_NS;
        }
    }

    /// The earliest time at which a timer of this connection must be looked at.
    pub fn next_deadline(&self) -> u64 {
        let mut d = self.last_ns.saturating_add(self.inactivity_ns);
        for t in [self.attempt_at, self.delete_at, self.expire_at] {
            if t != 0 {
                d = d.min(t);
            }
        }
        d
    }

    /// Runs every timer due at `t`, in Zeek's order of importance.
    pub fn run_timers(&mut self, t: u64) -> Expiry {
        if self.delete_at != 0 && self.delete_at <= t {
            return Expiry::Remove;
        }
        let (o, r) = (self.sides[0].tcp.state, self.sides[1].tcp.state);
        if self.attempt_at != 0 && self.attempt_at <= t {
            self.attempt_at = 0;
            if self.is_active
                && matches!(o, EpState::SynSent | EpState::SynAckSent)
                && r == EpState::Inactive
            {
                return Expiry::Remove;
            }
        }
        if self.expire_at != 0 && self.expire_at <= t && self.transport == Transport::Udp {
            // Zeek's `DNS_Analyzer::ExpireTimer`: a DNS session idle for the timeout less one
            // second (the second is slack for a query and its reply) is removed, else the
            // check runs again one timeout later. So one 5-tuple that carries queries
            // seconds apart is one connection, and queries ten seconds apart are several.
            let at = self.expire_at;
            if at.saturating_sub(self.last_ns) >= DNS_SESSION_TIMEOUT_NS - 1_000_000_000 {
                return Expiry::Remove;
            }
            self.expire_at = at + DNS_SESSION_TIMEOUT_NS;
        } else if self.expire_at != 0 && self.expire_at <= t {
            let at = self.expire_at;
            self.expire_at = 0;
            if self.is_active {
                if self.expire_check(at) {
                    return Expiry::Remove;
                }
                self.expire_at = at + TCP_SESSION_TIMER_NS;
            }
        }
        if self.last_ns.saturating_add(self.inactivity_ns) <= t {
            return Expiry::Remove;
        }
        Expiry::Keep
    }

    /// Zeek's `TCPSessionAdapter::ExpireTimer` test.
    fn expire_check(&self, t: u64) -> bool {
        if self.last_ns + TCP_LINGER_NS >= t {
            return false;
        }
        let (o, r) = (&self.sides[0].tcp, &self.sides[1].tcp);
        if (o.did_close || r.did_close)
            && ((o.did_close && r.did_close)
                || o.state == EpState::Reset
                || r.state == EpState::Reset
                || o.state == EpState::Inactive
                || r.state == EpState::Inactive)
        {
            return true;
        }
        r.state == EpState::Inactive && o.state == EpState::Inactive
    }

    fn conn_state(&self) -> ConnState {
        match self.transport {
            Transport::Tcp => {
                let (o, r) = (&self.sides[0].tcp, &self.sides[1].tcp);
                let (os, rs) = (o.state, r.state);
                let o_inactive = matches!(os, EpState::Inactive | EpState::Partial);
                let r_inactive = matches!(rs, EpState::Inactive | EpState::Partial);
                if rs == EpState::Reset {
                    if matches!(os, EpState::SynSent | EpState::SynAckSent)
                        || (os == EpState::Reset && o.size(rs) == 0 && r.size(os) == 0)
                    {
                        ConnState::REJ
                    } else if o_inactive {
                        ConnState::RSTRH
                    } else {
                        ConnState::RSTR
                    }
                } else if os == EpState::Reset {
                    if r_inactive {
                        if history_is_syn_then_rst(self.history.as_str()) {
                            ConnState::RSTOS0
                        } else {
                            ConnState::OTH
                        }
                    } else {
                        ConnState::RSTO
                    }
                } else if rs == EpState::Closed && os == EpState::Closed {
                    ConnState::SF
                } else if os == EpState::Closed {
                    if r_inactive {
                        ConnState::SH
                    } else {
                        ConnState::S2
                    }
                } else if rs == EpState::Closed {
                    if o_inactive {
                        ConnState::SHR
                    } else {
                        ConnState::S3
                    }
                } else if os == EpState::SynSent && rs == EpState::Inactive {
                    ConnState::S0
                } else if os == EpState::Established && rs == EpState::Established {
                    ConnState::S1
                } else {
                    ConnState::OTH
                }
            }
            Transport::Udp => match (self.sides[0].active, self.sides[1].active) {
                (true, true) => ConnState::SF,
                (true, false) => ConnState::S0,
                (false, true) => ConnState::SHR,
                (false, false) => ConnState::OTH,
            },
            _ => ConnState::OTH,
        }
    }

    /// The `conn.log` record for this connection as it stands.
    pub fn record(&self, cfg: &FlowConfig, cold: &ColdStore) -> ConnRecord {
        let (ob, rb) = match self.transport {
            Transport::Tcp => {
                let (o, r) = (&self.sides[0].tcp, &self.sides[1].tcp);
                (o.size(r.state), r.size(o.state))
            }
            Transport::Udp | Transport::Icmp => (self.sides[0].payload, self.sides[1].payload),
            Transport::Unknown => (0, 0),
        };
        let local = |a| (!cfg.local_nets.is_empty()).then(|| cfg.local_nets.contains(a));
        ConnRecord {
            ts_ns: self.start_ns,
            uid: self.uid,
            orig_h: self.orig(),
            orig_p: self.orig_port(),
            resp_h: self.resp(),
            resp_p: self.resp_port(),
            vlans: self.key.vlans,
            proto: self.transport,
            service: self.service.services(),
            duration_ns: self.last_ns.saturating_sub(self.start_ns),
            orig_bytes: ob,
            resp_bytes: rb,
            conn_state: self.conn_state(),
            local_orig: local(self.orig()),
            local_resp: local(self.resp()),
            missed_bytes: self.missed_bytes,
            history: self.history,
            orig_pkts: self.sides[0].pkts,
            orig_ip_bytes: self.sides[0].ip_bytes,
            resp_pkts: self.sides[1].pkts,
            resp_ip_bytes: self.sides[1].ip_bytes,
            tunnel_parents: cold
                .get(self.cold)
                .map_or([None; MAX_TUNNEL_PARENTS], |c| c.parents),
            ip_proto: self.ip_proto,
            community_id: community_id(
                cfg.community_id_seed,
                self.ip_proto,
                self.orig(),
                self.orig_port(),
                self.resp(),
                self.resp_port(),
                self.icmp,
            ),
            // Names are looked up by the worker when it emits the record (flow knows nothing
            // of names).
        }
    }
}

/// Zeek's `/\^?S[^HAFGIQ]*R.*/`: a SYN, then a RST before any sign of an answer.
fn history_is_syn_then_rst(h: &str) -> bool {
    let h = h.strip_prefix('^').unwrap_or(h);
    let Some(rest) = h.strip_prefix('S') else {
        return false;
    };
    for c in rest.bytes() {
        match c {
            b'R' => return true,
            b'H' | b'A' | b'F' | b'G' | b'I' | b'Q' => return false,
            _ => {}
        }
    }
    false
}

/// Zeek's `IPAddr::IsMulticast`: 224.0.0.0/4 and ff00::/8.
fn is_multicast(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.is_multicast(),
        IpAddr::V6(v) => v.is_multicast(),
    }
}

/// Zeek never flips a connection whose first packet went to the limited broadcast address.
fn is_broadcast(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.is_broadcast(),
        IpAddr::V6(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rstos0_pattern_matches_zeek_regex() {
        assert!(history_is_syn_then_rst("SR"));
        assert!(history_is_syn_then_rst("^ScR"));
        assert!(
            history_is_syn_then_rst("ShR"),
            "Zeek's class is case-sensitive: h does not block"
        );
        assert!(!history_is_syn_then_rst("SAR"));
        assert!(!history_is_syn_then_rst("R"));
    }
}

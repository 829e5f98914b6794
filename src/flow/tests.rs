//! Flow-table tests with hand-made packet sequences, each checked against what Zeek logs.

use super::key::Vlans;
use super::summary::{PacketSummary, SNIPPET_LEN};
use super::table::EXPIRE_PER_PACKET;
use super::{FlowConfig, Shard};
use crate::decode::L4;
use crate::types::record::{ConnRecord, ConnState};

const S: u64 = 1_000_000_000;
const C: &str = "198.18.0.1";
const SRV: &str = "198.18.0.2";

fn tcp(ts: u64, from_client: bool, flags: u8, seq: u32, ack: u32, len: u32) -> PacketSummary {
    let (src, dst, sp, dp) = if from_client {
        (C, SRV, 40000, 8080)
    } else {
        (SRV, C, 8080, 40000)
    };
    PacketSummary {
        ts_ns: ts,
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        ip_proto: 6,
        l4: L4::Tcp {
            src_port: sp,
            dst_port: dp,
            seq,
            ack,
            flags,
            window: 1000,
        },
        ip_len: 40 + len,
        payload_len: len,
        checksum_ok: true,
        vlans: Vlans::NONE,
        carries: None,
        parents: [None; 2],
        snippet_len: len.min(SNIPPET_LEN as u32) as u16,
        snippet: [0; SNIPPET_LEN],
        header_cut: false,
    }
}

fn udp(ts: u64, from_client: bool, len: u32) -> PacketSummary {
    let mut p = tcp(ts, from_client, 0, 0, 0, len);
    p.ip_proto = 17;
    p.ip_len = 28 + len;
    p.l4 = if from_client {
        L4::Udp {
            src_port: 40000,
            dst_port: 9999,
        }
    } else {
        L4::Udp {
            src_port: 9999,
            dst_port: 40000,
        }
    };
    p
}

const F: u8 = 0x01;
const SY: u8 = 0x02;
const R: u8 = 0x04;
const A: u8 = 0x10;

fn run(pkts: &[PacketSummary]) -> Vec<ConnRecord> {
    run_cfg(FlowConfig::default(), pkts)
}

fn run_cfg(cfg: FlowConfig, pkts: &[PacketSummary]) -> Vec<ConnRecord> {
    let mut shard = Shard::new(&cfg);
    let mut out = Vec::new();
    for p in pkts {
        shard.process(p, &mut |r| out.push(r));
    }
    shard.flush(&mut |r| out.push(r));
    out
}

fn one(pkts: &[PacketSummary]) -> ConnRecord {
    let recs = run(pkts);
    assert_eq!(
        recs.len(),
        1,
        "expected exactly one connection, got {recs:?}"
    );
    recs[0]
}

#[test]
fn full_tcp_exchange_is_sf_with_zeek_history() {
    let r = one(&[
        tcp(S, true, SY, 100, 0, 0),
        tcp(S + 1, false, SY | A, 500, 101, 0),
        tcp(S + 2, true, A, 101, 501, 0),
        tcp(S + 3, true, A, 101, 501, 10),
        tcp(S + 4, false, A, 501, 111, 0),
        tcp(S + 5, false, A, 501, 111, 20),
        tcp(S + 6, true, F | A, 111, 521, 0),
        tcp(S + 7, false, F | A, 521, 112, 0),
        tcp(S + 8, true, A, 112, 522, 0),
    ]);
    assert_eq!(r.conn_state, ConnState::SF);
    assert_eq!(r.history.as_str(), "ShADadFf");
    assert_eq!((r.orig_bytes, r.resp_bytes), (10, 20));
    assert_eq!((r.orig_pkts, r.resp_pkts), (5, 4));
    assert_eq!(r.orig_ip_bytes, 5 * 40 + 10);
    // The last ACK comes after both FINs: Zeek stops moving the end time once both closed.
    assert_eq!(r.duration_ns, 7);
    assert_eq!(r.orig_p, 40000, "the SYN sender is the originator");
}

#[test]
fn lone_syn_is_s0_and_syn_rst_is_rej() {
    let r = one(&[tcp(S, true, SY, 1, 0, 0)]);
    assert_eq!((r.conn_state, r.history.as_str()), (ConnState::S0, "S"));
    let r = one(&[tcp(S, true, SY, 1, 0, 0), tcp(S + 1, false, R | A, 0, 2, 0)]);
    assert_eq!((r.conn_state, r.history.as_str()), (ConnState::REJ, "Sr"));
}

#[test]
fn rst_mid_connection_gives_rsto_or_rstr() {
    let hs = [
        tcp(S, true, SY, 100, 0, 0),
        tcp(S + 1, false, SY | A, 500, 101, 0),
        tcp(S + 2, true, A, 101, 501, 0),
    ];
    let mut o = hs.to_vec();
    o.push(tcp(S + 3, true, R, 101, 0, 0));
    assert_eq!(one(&o).conn_state, ConnState::RSTO);
    let mut r = hs.to_vec();
    r.push(tcp(S + 3, false, R, 501, 0, 0));
    let rec = one(&r);
    assert_eq!(
        (rec.conn_state, rec.history.as_str()),
        (ConnState::RSTR, "ShAr")
    );
}

#[test]
fn retransmission_is_t() {
    let r = one(&[
        tcp(S, true, SY, 100, 0, 0),
        tcp(S + 1, false, SY | A, 500, 101, 0),
        tcp(S + 2, true, A, 101, 501, 0),
        tcp(S + 3, true, A, 101, 501, 10),
        tcp(S + 4, true, A, 101, 501, 10),
        tcp(S + 5, false, A, 501, 111, 0),
    ]);
    assert_eq!(r.history.as_str(), "ShADTa");
    assert_eq!((r.orig_bytes, r.missed_bytes), (10, 0));
}

#[test]
fn acked_but_unseen_data_is_a_content_gap() {
    let r = one(&[
        tcp(S, true, SY, 100, 0, 0),
        tcp(S + 1, false, SY | A, 500, 101, 0),
        tcp(S + 2, true, A, 101, 501, 0),
        tcp(S + 3, true, A, 101, 501, 10),
        tcp(S + 4, true, A, 131, 501, 10),
        tcp(S + 5, false, A, 501, 141, 0),
    ]);
    assert_eq!(
        r.missed_bytes, 20,
        "bytes 111..131 were acked but never seen"
    );
    assert!(r.history.as_str().contains('G'), "history {:?}", r.history);
}

#[test]
fn missing_syn_with_synack_first_flips_roles() {
    let r = one(&[
        tcp(S, false, SY | A, 500, 101, 0),
        tcp(S + 1, true, A, 101, 501, 0),
        tcp(S + 2, true, A, 101, 501, 5),
        tcp(S + 3, false, A, 501, 106, 7),
    ]);
    assert_eq!(r.history.as_str(), "^hADd");
    assert_eq!(
        r.orig_p, 40000,
        "the SYN-ACK's receiver is the originator after the flip"
    );
    assert_eq!((r.orig_pkts, r.resp_pkts), (2, 2));
    assert_eq!(r.conn_state, ConnState::S1);
}

#[test]
fn synack_first_keeps_roles_when_the_receiver_is_seen_with_bad_checksums() {
    // The client's packets all fail their checksum (a localhost capture with offload), so
    // only the server's are counted; the client was nonetheless seen, and Zeek keeps the
    // SYN-ACK's sender as originator (`tcp-bad-checksum-localhost`).
    let mut ack = tcp(S + 1, true, A, 101, 501, 0);
    ack.checksum_ok = false;
    // No likely server ports (a bare Zeek run), so the first packet alone flips nothing.
    let cfg = FlowConfig {
        server_ports: crate::flow::ServerPorts::parse_list("none").unwrap(),
        ..FlowConfig::default()
    };
    let recs = run_cfg(
        cfg,
        &[
            tcp(S, false, SY | A, 500, 101, 0),
            ack,
            tcp(S + 2, false, A, 501, 101, 7),
        ],
    );
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r.history.as_str(), "HcD");
    assert_eq!(
        r.orig_p, 8080,
        "no flip: the SYN-ACK's sender stays the originator"
    );
    assert_eq!((r.orig_pkts, r.resp_pkts), (2, 0));
}

#[test]
fn segment_with_cut_options_opens_a_connection_without_counting() {
    // `vntag-in-vlan-tcp`: Zeek logs the connection (OTH, no history, no packets).
    let mut p = tcp(S, false, SY | A, 500, 101, 0);
    p.header_cut = true;
    let r = one(&[p]);
    assert_eq!((r.orig_pkts, r.resp_pkts), (0, 0));
    // Only the role guess from the fixed header's flags and ports (a SYN-ACK from 8080).
    assert_eq!(r.history.as_str(), "^");
    assert_eq!(r.conn_state, ConnState::OTH);
}

#[test]
fn seq_wraparound_keeps_sizes_right() {
    let isn = u32::MAX - 4;
    let r = one(&[
        tcp(S, true, SY, isn, 0, 0),
        tcp(S + 1, false, SY | A, 7, isn.wrapping_add(1), 0),
        tcp(S + 2, true, A, isn.wrapping_add(1), 8, 100),
        tcp(S + 3, false, A, 8, isn.wrapping_add(101), 0),
        tcp(S + 4, true, A, isn.wrapping_add(101), 8, 100),
    ]);
    assert_eq!(r.orig_bytes, 200, "sizes across the 32-bit wrap");
}

#[test]
fn udp_request_reply_is_sf_and_one_way_is_s0() {
    let r = one(&[udp(S, true, 30), udp(S + 5, false, 50)]);
    assert_eq!((r.conn_state, r.history.as_str()), (ConnState::SF, "Dd"));
    assert_eq!((r.orig_bytes, r.resp_bytes, r.orig_ip_bytes), (30, 50, 58));
    let r = one(&[udp(S, true, 30), udp(S + 1, true, 30)]);
    assert_eq!(
        (r.conn_state, r.history.as_str(), r.orig_pkts),
        (ConnState::S0, "D", 2)
    );
}

#[test]
fn bad_checksum_is_noted_but_not_counted() {
    let mut bad = udp(S + 1, true, 30);
    bad.checksum_ok = false;
    let r = one(&[udp(S, true, 30), bad]);
    assert_eq!(r.history.as_str(), "DC");
    assert_eq!(r.orig_pkts, 1, "Zeek drops the packet before counting it");
}

#[test]
fn icmp_echo_is_oth_with_payload_bytes() {
    let mut req = udp(S, true, 56);
    req.ip_proto = 1;
    req.l4 = L4::Icmp {
        v6: false,
        icmp_type: 8,
        code: 0,
    };
    let mut rep = req;
    rep.ts_ns = S + 10;
    std::mem::swap(&mut rep.src, &mut rep.dst);
    rep.l4 = L4::Icmp {
        v6: false,
        icmp_type: 0,
        code: 0,
    };
    let r = one(&[req, rep]);
    assert_eq!(r.conn_state, ConnState::OTH);
    assert_eq!((r.orig_p, r.resp_p), (8, 0));
    assert_eq!((r.orig_bytes, r.resp_bytes, r.resp_pkts), (56, 56, 1));
}

#[test]
fn inactivity_timeout_starts_a_new_connection() {
    let recs = run(&[udp(S, true, 10), udp(S + 61 * S, true, 10)]);
    assert_eq!(
        recs.len(),
        2,
        "a packet after the UDP timeout must start a new connection"
    );
    assert_ne!(recs[0].uid, recs[1].uid);
}

#[test]
fn syn_unanswered_for_attempt_delay_is_split() {
    // Zeek removes an unanswered attempt 5 s after its SYN, so later packets start anew.
    let recs = run(&[
        tcp(S, true, SY, 100, 0, 0),
        tcp(S + 1, true, A, 101, 501, 10),
        tcp(S + 6 * S, true, A, 111, 501, 10),
    ]);
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].conn_state, ConnState::S0);
    assert_eq!(recs[1].history.as_str(), "D");
}

#[test]
fn new_syn_after_close_is_a_new_connection() {
    let recs = run(&[
        tcp(S, true, SY, 1, 0, 0),
        tcp(S + 1, false, R | A, 0, 2, 0),
        tcp(S + 2, true, SY, 1000, 0, 0),
        tcp(S + 3, false, R | A, 0, 1001, 0),
    ]);
    assert_eq!(recs.len(), 2);
    assert!(recs.iter().all(|r| r.conn_state == ConnState::REJ));
}

#[test]
fn table_is_bounded_and_evicts_least_recently_active() {
    let cfg = FlowConfig {
        max_flows: 2,
        ..FlowConfig::default()
    };
    let mut shard = Shard::new(&cfg);
    let mut out = Vec::new();
    for i in 0..5u16 {
        let mut p = udp(S + u64::from(i), true, 1);
        p.l4 = L4::Udp {
            src_port: 1000 + i,
            dst_port: 9999,
        };
        shard.process(&p, &mut |r| out.push(r));
    }
    assert_eq!(out.len(), 3, "three flows evicted to stay at two");
    assert_eq!(out[0].orig_p, 1000, "the least recently active goes first");
    let c = shard.counters();
    assert_eq!((c.flows_evicted, c.active), (3, 2));
}

/// An announced data connection gets its service whether the announcement reaches the shard
/// before the connection's first packet or just after it (live, they travel on different
/// queues and can arrive in either order).
#[test]
fn announced_connection_is_marked_in_either_order() {
    use super::expect::Expectation;
    use crate::types::record::Service;
    let announce = Expectation {
        orig: Some(C.parse().unwrap()),
        resp: SRV.parse().unwrap(),
        resp_port: 8080,
        service: Service::FtpData,
        until_ns: 100 * S,
    };
    for late in [false, true] {
        let mut shard = Shard::new(&FlowConfig::default());
        let mut out = Vec::new();
        if !late {
            shard.expect(announce);
        }
        shard.process(&tcp(S, true, SY, 1, 0, 0), &mut |r| out.push(r));
        if late {
            shard.expect(announce);
        }
        shard.process(&tcp(S + 1, false, SY | A, 50, 2, 0), &mut |r| out.push(r));
        shard.flush(&mut |r| out.push(r));
        assert_eq!(out.len(), 1);
        assert!(
            out[0].service.contains(Service::FtpData),
            "late={late}: {:?}",
            out[0].service
        );
    }
}

/// A flood of new flows against a full table: the evicted flows' timer entries must not pile
/// up until their (long) deadlines, or memory grows with the packet rate times the timeout
/// instead of staying within the flow cap.
#[test]
fn timer_heap_stays_bounded_under_a_flood_of_evicted_flows() {
    let cfg = FlowConfig {
        max_flows: 100,
        ..FlowConfig::default()
    };
    let mut shard = Shard::new(&cfg);
    let mut out = 0usize;
    for i in 0..200_000u32 {
        // One new UDP flow every microsecond: all within the 60 s inactivity timeout.
        let mut p = udp(S + u64::from(i) * 1_000, true, 1);
        p.src = std::net::IpAddr::V4(std::net::Ipv4Addr::from(0xc612_0000 | (i >> 16)));
        p.l4 = L4::Udp {
            src_port: i as u16,
            dst_port: 9999,
        };
        shard.process(&p, &mut |_| out += 1);
        assert!(
            shard.timer_entries() <= 2 * 100 + 1024,
            "{} timer entries after {i} flows",
            shard.timer_entries()
        );
    }
    let c = shard.counters();
    assert_eq!(c.active, 100);
    assert_eq!(c.flows_evicted, 200_000 - 100);
    shard.flush(&mut |_| out += 1);
    assert_eq!(out, 200_000, "every flow logged once");
}

/// An NTP datagram of `mode` between port 123 on both ends (48 bytes, version 4).
fn ntp(ts: u64, from_client: bool, mode: u8) -> PacketSummary {
    let mut p = udp(ts, from_client, 48);
    p.l4 = L4::Udp {
        src_port: 123,
        dst_port: 123,
    };
    p.snippet[0] = (4 << 3) | mode;
    p
}

#[test]
fn ntp_reply_seen_before_its_request_flips_and_keeps_both_on_the_originator_side() {
    // Zeek's `misordered-ntp`: the server's reply (mode 4) opens the connection, the NTP
    // analyzer flips it, and the request that follows is the new originator's.
    let r = one(&[ntp(0, false, 4), ntp(S, true, 3)]);
    assert_eq!(r.orig_h.to_string(), C);
    assert_eq!(r.history.as_str(), "D^");
    assert_eq!((r.orig_pkts, r.resp_pkts), (2, 0));
    assert_eq!((r.orig_bytes, r.resp_bytes), (96, 0));
    assert_eq!(r.conn_state, ConnState::S0);
    assert_eq!(
        r.service.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        ["ntp"]
    );
}

#[test]
fn ntp_in_order_exchange_does_not_flip() {
    let r = one(&[ntp(0, true, 3), ntp(S, false, 4), ntp(2 * S, true, 3)]);
    assert_eq!(r.orig_h.to_string(), C);
    assert_eq!(r.history.as_str(), "Dd");
    assert_eq!(r.conn_state, ConnState::SF);
}

#[test]
fn ntp_flips_at_most_once_per_direction_of_delivery() {
    // The first flip was on a message delivered as the originator's; a later server-mode
    // message delivered as the (new) originator's does not flip again.
    let r = one(&[ntp(0, false, 4), ntp(S, true, 4)]);
    assert_eq!(r.history.as_str(), "D^");
    assert_eq!(r.orig_h.to_string(), C);
    // A client-mode message from the responder still flips once, on the other flow.
    let r = one(&[ntp(0, false, 4), ntp(S, false, 3)]);
    assert_eq!(r.history.as_str(), "D^d^");
    assert_eq!(r.orig_h.to_string(), SRV);
}

/// Two distinct tunnel uids, as the dispatcher names outer connections.
fn two_tunnels() -> [crate::types::record::Uid; 2] {
    let a = super::key::Endpoints::of_summary(&udp(0, true, 1)).key().0;
    let mut other = udp(0, true, 1);
    other.l4 = L4::Udp {
        src_port: 40001,
        dst_port: 4789,
    };
    let b = super::key::Endpoints::of_summary(&other).key().0;
    [super::conn_uid(0, &a, 0), super::conn_uid(0, &b, 0)]
}

/// `n` packets alternating direction, each direction in its own tunnel (as in `vxlan-icmp`).
fn alternating_tunnels(n: u64) -> Vec<PacketSummary> {
    let t = two_tunnels();
    (0..n)
        .map(|i| {
            let mut p = udp(i * S, i % 2 == 0, 10);
            p.parents = [Some(t[(i % 2) as usize]), None];
            p
        })
        .collect()
}

#[test]
fn tunnel_changes_beyond_zeeks_limit_write_x() {
    // Five changes (six packets) raise five `tunnel_changed` events: no letter.
    assert_eq!(one(&alternating_tunnels(6)).history.as_str(), "Dd");
    // The sixth change is past `Tunnel::max_changes_per_connection`: `X`, once.
    assert_eq!(one(&alternating_tunnels(7)).history.as_str(), "DdX");
    assert_eq!(one(&alternating_tunnels(12)).history.as_str(), "DdX");
}

#[test]
fn entering_and_leaving_a_tunnel_is_not_a_change() {
    let t = two_tunnels();
    let pkts: Vec<PacketSummary> = (0..12)
        .map(|i| {
            let mut p = udp(i * S, i % 2 == 0, 10);
            if i % 2 == 0 {
                p.parents = [Some(t[0]), None];
            }
            p
        })
        .collect();
    assert_eq!(one(&pkts).history.as_str(), "Dd");
}

/// A DNS header between port 137 on both ends (NetBIOS name service), query or response.
fn nbns(ts: u64, from_client: bool, response: bool) -> PacketSummary {
    let mut p = udp(ts, from_client, 50);
    p.l4 = L4::Udp {
        src_port: 137,
        dst_port: 137,
    };
    p.snippet[2] = if response { 0x85 } else { 0x01 };
    p.snippet[5] = 1;
    p
}

#[test]
fn dns_response_read_first_from_the_originator_flips_once() {
    // Zeek's `DNS_Interpreter::ParseMessage`: the first message is a response from the
    // originator, so the querier becomes the originator; later messages change nothing.
    let r = one(&[
        nbns(0, false, true),
        nbns(S, true, false),
        nbns(2 * S, false, true),
    ]);
    assert_eq!(r.orig_h.to_string(), C);
    assert_eq!(r.history.as_str(), "D^d");
    // A query first: no flip.
    let r = one(&[nbns(0, true, false), nbns(S, false, true)]);
    assert_eq!(
        (r.orig_h.to_string().as_str(), r.history.as_str()),
        (C, "Dd")
    );
}

#[test]
fn a_connection_holds_what_every_flow_needs_and_no_more() {
    // The cold entry (holes, tunnels, a SYN-ACK first) is apart; the rest is what a SYN flood
    // costs per flow. Raise this bound only with a reason.
    let size = std::mem::size_of::<super::conn::Conn>();
    eprintln!(
        "Conn {size} bytes, Cold {}",
        std::mem::size_of::<super::cold::Cold>()
    );
    assert!(size <= 472, "Conn grew to {size} bytes");
}

/// `n` one-packet UDP flows at `S`, from distinct client ports.
fn quiet_udp_flows(n: u16) -> Vec<PacketSummary> {
    (0..n)
        .map(|i| {
            let mut p = udp(S, true, 1);
            p.l4 = L4::Udp {
                src_port: 1000 + i,
                dst_port: 9999,
            };
            p
        })
        .collect()
}

/// A mass timeout is spread: a packet runs a bounded batch of the due timers, a packet of an
/// overdue flow still finds it expired (a new connection, as if every timer had run first),
/// and in the end every flow is logged exactly as without spreading.
#[test]
fn a_mass_timeout_is_spread_over_the_packets_after_it() {
    let n = 2_000u16;
    let flows = quiet_udp_flows(n);
    let later = 200 * S; // past the 60 s UDP inactivity timeout of every flow

    let mut shard = Shard::new(&FlowConfig::default());
    let mut out = Vec::new();
    for p in &flows {
        shard.process(p, &mut |r| out.push(r));
    }
    assert!(out.is_empty());
    // A packet of an unrelated new flow runs only a batch of the due timers.
    let mut other = udp(later, true, 1);
    other.l4 = L4::Udp {
        src_port: 7,
        dst_port: 7,
    };
    shard.process(&other, &mut |r| out.push(r));
    assert!(
        !out.is_empty() && out.len() <= EXPIRE_PER_PACKET,
        "{} records from one packet",
        out.len()
    );
    // The last flow's timer is still queued, but its next packet opens a new connection.
    let mut again = flows[usize::from(n) - 1];
    again.ts_ns = later + 1;
    shard.process(&again, &mut |r| out.push(r));
    shard.flush(&mut |r| out.push(r));

    // The same packets with every due timer run at once.
    let mut reference = Vec::new();
    let mut whole = Shard::new(&FlowConfig::default());
    for p in &flows {
        whole.process(p, &mut |r| reference.push(r));
    }
    whole.advance(later, &mut |r| reference.push(r));
    whole.process(&other, &mut |r| reference.push(r));
    whole.process(&again, &mut |r| reference.push(r));
    whole.flush(&mut |r| reference.push(r));

    let key = |r: &ConnRecord| (r.orig_p, r.resp_p, r.ts_ns, r.duration_ns, r.orig_pkts);
    let mut a: Vec<_> = out.iter().map(key).collect();
    let mut b: Vec<_> = reference.iter().map(key).collect();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(
        a.len(),
        usize::from(n) + 2,
        "every flow, the new one and the reused port"
    );
    assert_eq!(a, b);
    assert_eq!(shard.counters().flows_expired, u64::from(n));
}

/// A full table expires a flow whose timeout is due before it evicts a live one, even when
/// the packet's own batch of timers was spent on stale entries (those a flood of evictions
/// leaves queued).
#[test]
fn a_full_table_expires_due_flows_before_evicting() {
    let cfg = FlowConfig {
        max_flows: 100,
        ..FlowConfig::default()
    };
    let mut shard = Shard::new(&cfg);
    let mut out = Vec::new();
    for p in &quiet_udp_flows(100) {
        shard.process(p, &mut |r| out.push(r));
    }
    // A second hundred a second later evicts the first: their timers stay queued, stale.
    for i in 0..100u16 {
        let mut p = udp(2 * S, true, 1);
        p.l4 = L4::Udp {
            src_port: 20_000 + i,
            dst_port: 9999,
        };
        shard.process(&p, &mut |r| out.push(r));
    }
    assert_eq!(shard.counters().flows_evicted, 100);
    // Past every timeout: the first packet's batch meets only stale entries, yet the table
    // makes room by expiring a due flow, not by evicting one.
    for i in 0..90u16 {
        let mut p = udp(200 * S + u64::from(i), true, 1);
        p.l4 = L4::Udp {
            src_port: 30_000 + i,
            dst_port: 9999,
        };
        shard.process(&p, &mut |r| out.push(r));
    }
    let c = shard.counters();
    assert_eq!(c.flows_evicted, 100, "only due flows made room");
    assert_eq!((c.flows_expired + c.flows_evicted) as usize, out.len());
    assert_eq!(c.flows_expired, 100);
}

//! Flow-table tests with hand-made packet sequences, each checked against what Zeek logs.

use super::key::Vlans;
use super::summary::{PacketSummary, SNIPPET_LEN};
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

#[test]
fn sizes_of_flow_state() {
    eprintln!(
        "Conn {} TcpEp {} Side {} ServiceState {} History {} FlowKey {} Cold {}",
        std::mem::size_of::<super::conn::Conn>(),
        std::mem::size_of::<super::tcp::TcpEp>(),
        std::mem::size_of::<super::conn::Side>(),
        std::mem::size_of::<super::service::ServiceState>(),
        std::mem::size_of::<crate::types::record::History>(),
        std::mem::size_of::<super::key::FlowKey>(),
        std::mem::size_of::<super::cold::Cold>(),
    );
}

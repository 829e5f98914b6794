//! How long-lived conversations are cut into connections, as Zeek's session rules cut them:
//! `udp_inactivity_timeout` (60 s) for UDP without an analyzer of its own, the DNS analyzer's
//! own expiry (`dns_session_timeout`, 10 s), and an hour of TCP inactivity for interactive
//! services (`base/protocols/conn/inactivity.zeek`). Synthetic captures (198.18.0.0/15 only)
//! through `nameflow read`; each test shows the split and the no-split side of a rule.

use nameflow::synth::{DnsSpec, Trace, TsResolution};
use std::net::SocketAddr;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_nameflow");
const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
const T0: u64 = 1_700_000_000 * S;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The conn.log records of `nameflow read -w 1` over `t`, oldest first.
fn conns(t: &mut Trace) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    t.sort_by_time();
    let pcap = dir.path().join("in.pcap");
    t.write_pcap(&pcap, TsResolution::Micro).unwrap();
    let out = dir.path().join("out");
    let o = Command::new(BIN)
        .args(["read", "-w", "1", "-o"])
        .arg(&out)
        .arg(&pcap)
        .output()
        .expect("nameflow runs");
    assert!(
        o.status.success(),
        "nameflow failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let log = std::fs::read_to_string(out.join("conn.log")).unwrap_or_default();
    let mut recs: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON record"))
        .collect();
    recs.sort_by(|a, b| a["ts"].as_f64().partial_cmp(&b["ts"].as_f64()).unwrap());
    recs
}

/// Packet counts of each connection, oldest first.
fn pkts(recs: &[serde_json::Value]) -> Vec<(u64, u64)> {
    recs.iter()
        .map(|r| {
            (
                r["orig_pkts"].as_u64().unwrap(),
                r["resp_pkts"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// IPsec NAT traversal between two gateways on 4500/udp: ESP-sized datagrams both ways, and a
/// NAT keepalive (one 0xff byte) every `keepalive_s` seconds while the tunnel is idle.
fn nat_t(t: &mut Trace, start: u64, idle_s: u64, keepalive_s: u64) -> u64 {
    let (a, b) = (sa("198.18.1.1:4500"), sa("198.18.2.1:4500"));
    let esp = [0x11u8; 120];
    let mut at = start;
    for i in 0..5 {
        t.udp(at + i * 10 * MS, a, b, &esp);
        t.udp(at + i * 10 * MS + MS, b, a, &esp);
    }
    at += 100 * MS;
    let mut idle = 0;
    while idle + keepalive_s <= idle_s {
        idle += keepalive_s;
        t.udp(at + idle * S, a, b, &[0xff]);
    }
    at += idle_s * S;
    t.udp(at, a, b, &esp);
    t.udp(at + MS, b, a, &esp);
    at + MS
}

#[test]
fn ipsec_nat_t_with_keepalives_is_one_connection_and_a_silent_minute_splits_it() {
    // Keepalives every 20 s keep the 5-tuple busy for ten minutes: one connection.
    let mut t = Trace::new();
    nat_t(&mut t, T0, 600, 20);
    let recs = conns(&mut t);
    assert_eq!(pkts(&recs), [(6 + 30, 6)], "{recs:#?}");
    assert_eq!(recs[0]["id.resp_p"], 4500);

    // Keepalives every 61 s leave the tunnel silent for longer than the UDP inactivity
    // timeout each time: Zeek removes the connection and the next datagram starts another.
    let mut t = Trace::new();
    nat_t(&mut t, T0, 122, 61);
    let recs = conns(&mut t);
    assert_eq!(pkts(&recs), [(5, 5), (1, 0), (2, 1)], "{recs:#?}");
}

#[test]
fn one_udp_5tuple_is_cut_exactly_at_the_inactivity_timeout() {
    let (a, b) = (sa("198.18.3.1:40000"), sa("198.18.3.2:40001"));
    // 59.999 s of silence: still the same connection; 60 s: a new one.
    for (gap, want) in [(60 * S - MS, vec![(2, 1)]), (60 * S, vec![(1, 1), (1, 0)])] {
        let mut t = Trace::new();
        t.udp(T0, a, b, b"one");
        t.udp(T0 + MS, b, a, b"two");
        t.udp(T0 + MS + gap, a, b, b"three");
        assert_eq!(pkts(&conns(&mut t)), want, "gap {gap} ns");
    }
}

/// An RTP-like media stream: 50 datagrams a second from `a` to `b` for `secs` seconds.
fn media(t: &mut Trace, a: SocketAddr, b: SocketAddr, start: u64, secs: u64) -> u64 {
    let payload = [0x80u8; 172];
    let n = secs * 50;
    for i in 0..n {
        t.udp(start + i * 20 * MS, a, b, &payload);
    }
    start + (n - 1) * 20 * MS
}

#[test]
fn a_media_stream_survives_a_45_s_pause_and_not_a_65_s_one() {
    let (a, b) = (sa("198.18.4.1:16384"), sa("198.18.4.2:16386"));
    let mut t = Trace::new();
    let end = media(&mut t, a, b, T0, 10);
    media(&mut t, a, b, end + 45 * S, 10);
    assert_eq!(pkts(&conns(&mut t)), [(1000, 0)]);

    let mut t = Trace::new();
    let end = media(&mut t, a, b, T0, 10);
    media(&mut t, a, b, end + 65 * S, 10);
    assert_eq!(pkts(&conns(&mut t)), [(500, 0), (500, 0)]);
}

/// A query and its answer on one 5-tuple at each of `at` (seconds after T0, in ms).
fn dns_queries(t: &mut Trace, at_ms: &[u64]) {
    for (i, &ms) in at_ms.iter().enumerate() {
        let mut q = DnsSpec::query("host.example", 1);
        q.client = sa("198.18.5.1:53000");
        q.server = sa("198.18.5.53:53");
        q.id = i as u16 + 1;
        q.rtt_ns = MS;
        t.dns_exchange(&q, T0 + ms * MS);
    }
}

#[test]
fn dns_on_one_5tuple_ends_when_idle_at_its_own_ten_second_checks() {
    // Queries two seconds apart for 20 s: the checks at 10 s and 20 s find the session busy,
    // the one at 30 s finds it idle for more than 9 s and removes it; the query at 31 s
    // starts a new connection. The 60 s UDP rule alone would give one connection.
    let mut t = Trace::new();
    let mut at: Vec<u64> = (0..=10).map(|i| i * 2000).collect();
    at.push(31_000);
    dns_queries(&mut t, &at);
    let recs = conns(&mut t);
    assert_eq!(pkts(&recs), [(11, 11), (1, 1)], "{recs:#?}");
    assert!(recs.iter().all(|r| r["service"] == "dns"));

    // 9.5 s of silence before the 10 s check is within its one second of slack: one
    // connection. Queries 12 s apart: the 10 s check removes the first session.
    let mut t = Trace::new();
    dns_queries(&mut t, &[0, 9_500]);
    assert_eq!(pkts(&conns(&mut t)), [(2, 2)]);
    let mut t = Trace::new();
    dns_queries(&mut t, &[0, 12_000]);
    assert_eq!(pkts(&conns(&mut t)), [(1, 1), (1, 1)]);
}

#[test]
fn udp_on_a_port_without_the_dns_analyzer_keeps_the_minute() {
    // The same exchange 12 s apart on port 5300 has no DNS analyzer: one connection.
    let mut t = Trace::new();
    let (c, s) = (sa("198.18.6.1:53000"), sa("198.18.6.53:5300"));
    for at in [0, 12 * S] {
        t.udp(T0 + at, c, s, b"query");
        t.udp(T0 + at + MS, s, c, b"answer");
    }
    assert_eq!(pkts(&conns(&mut t)), [(2, 2)]);
}

/// A TCP handshake, one exchange, `idle` of silence, another exchange, and a close, between
/// 198.18.7.1:50000 and `server`.
fn idle_tcp(t: &mut Trace, server: &str, idle: u64) {
    let (c, s) = (sa("198.18.7.1:50000"), sa(server));
    let (syn, ack, psh, fin) = (0x02, 0x10, 0x18, 0x11);
    let (mut cs, mut ss) = (1000u32, 5000u32);
    t.tcp_segment(T0, c, s, syn, cs, 0, b"");
    t.tcp_segment(T0 + MS, s, c, syn | ack, ss, cs + 1, b"");
    cs += 1;
    ss += 1;
    t.tcp_segment(T0 + 2 * MS, c, s, ack, cs, ss, b"");
    let mut at = T0 + 3 * MS;
    for round in 0..2 {
        if round == 1 {
            at += idle;
        }
        t.tcp_segment(at, c, s, psh, cs, ss, b"ls\n");
        cs += 3;
        t.tcp_segment(at + MS, s, c, psh, ss, cs, b"a b c\n");
        ss += 6;
        t.tcp_segment(at + 2 * MS, c, s, ack, cs, ss, b"");
        at += 3 * MS;
    }
    t.tcp_segment(at, c, s, fin, cs, ss, b"");
    t.tcp_segment(at + MS, s, c, fin, ss, cs + 1, b"");
    t.tcp_segment(at + 2 * MS, c, s, ack, cs + 1, ss + 1, b"");
}

#[test]
fn an_interactive_port_may_idle_for_an_hour_and_another_for_five_minutes() {
    // Telnet (23/tcp is in `Conn::port_inactivity_timeouts`) idle for 10 minutes: one
    // connection, closed normally.
    let mut t = Trace::new();
    idle_tcp(&mut t, "198.18.7.2:23", 600 * S);
    let recs = conns(&mut t);
    assert_eq!(recs.len(), 1, "{recs:#?}");
    assert_eq!(recs[0]["conn_state"], "SF");

    // The same on 8023/tcp: `tcp_inactivity_timeout` (5 min) removes the first connection,
    // and the rest is a second one, picked up mid-stream.
    let mut t = Trace::new();
    idle_tcp(&mut t, "198.18.7.2:8023", 600 * S);
    let recs = conns(&mut t);
    assert_eq!(recs.len(), 2, "{recs:#?}");
    assert_eq!(recs[0]["conn_state"], "S1");

    // And more than an hour is too long even for Telnet.
    let mut t = Trace::new();
    idle_tcp(&mut t, "198.18.7.2:23", 3601 * S);
    assert_eq!(conns(&mut t).len(), 2);
}

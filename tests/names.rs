//! Names end to end through `nameflow read`: synthetic captures (198.18.0.0/15 only) with DNS
//! answers and connections placed so that the evidence and the connection land on different
//! workers, in both orders, across name changes and shared addresses; a DNS flood against the
//! bounds; the state file across restarts.

use nameflow::flow::key::Endpoints;
use nameflow::synth::{DnsData, DnsRecord, DnsSpec, TcpSpec, Trace, TsResolution};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_nameflow");
const S: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * S;
const RESOLVER: &str = "198.18.0.53:53";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Which of two workers owns the flow between `a` and `b`.
fn owner(proto: u8, a: SocketAddr, b: SocketAddr) -> usize {
    Endpoints {
        ip_proto: proto,
        src: a.ip(),
        src_port: a.port(),
        dst: b.ip(),
        dst_port: b.port(),
        vlans: nameflow::flow::key::Vlans::NONE,
    }
    .key()
    .0
    .owner(2)
}

/// A client port whose UDP flow to the resolver is owned by worker `want`.
fn dns_port_owned_by(client: IpAddr, want: usize, from: u16) -> u16 {
    (from..)
        .find(|&p| owner(17, SocketAddr::new(client, p), sa(RESOLVER)) == want)
        .unwrap()
}

/// A client port whose TCP flow to `server` is owned by worker `want`.
fn tcp_port_owned_by(client: IpAddr, server: SocketAddr, want: usize, from: u16) -> u16 {
    (from..)
        .find(|&p| owner(6, SocketAddr::new(client, p), server) == want)
        .unwrap()
}

fn answer(t: &mut Trace, client: SocketAddr, qname: &str, addr: &str, at_ns: u64) {
    let mut spec = DnsSpec::query(qname, 1).answer(DnsRecord::new(
        qname,
        300,
        DnsData::A(addr.parse().unwrap()),
    ));
    spec.client = client;
    spec.server = sa(RESOLVER);
    spec.rtt_ns = 1_000_000;
    // The answer is the second packet, one rtt after the query.
    t.dns_exchange(&spec, at_ns - spec.rtt_ns);
}

fn connect(t: &mut Trace, client: SocketAddr, server: SocketAddr, at_ns: u64) {
    let spec = TcpSpec {
        client,
        server,
        ..TcpSpec::default()
    };
    t.tcp_session(&spec, at_ns);
}

/// Runs `nameflow read` over `t` with `workers` and extra flags; returns the JSON records and
/// stderr.
fn run(
    dir: &Path,
    t: &mut Trace,
    workers: &str,
    extra: &[&str],
) -> (Vec<serde_json::Value>, String) {
    t.sort_by_time();
    let pcap = dir.join(format!("in-{workers}.pcap"));
    t.write_pcap(&pcap, TsResolution::Micro).unwrap();
    let out = dir.join(format!("out-{workers}-{}", extra.len()));
    let o = Command::new(BIN)
        .args(["read", "-w", workers, "-o"])
        .arg(&out)
        .args(extra)
        .arg(&pcap)
        .output()
        .expect("nameflow runs");
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "nameflow failed: {stderr}");
    let log = std::fs::read_to_string(out.join("conn.log")).unwrap_or_default();
    let recs = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON record"))
        .collect();
    (recs, stderr)
}

/// The responder name of the TCP connection from `client`, if it was named.
fn resp_name(recs: &[serde_json::Value], client: SocketAddr) -> Option<(String, String)> {
    let r = recs
        .iter()
        .find(|r| {
            r["proto"] == "tcp"
                && r["id.orig_h"] == client.ip().to_string()
                && r["id.orig_p"] == client.port()
        })
        .unwrap_or_else(|| panic!("no record for {client}"));
    r["resp_name"].as_str().map(|n| {
        (
            n.to_owned(),
            r["resp_name_src"].as_str().unwrap_or("").to_owned(),
        )
    })
}

#[test]
fn evidence_on_one_worker_names_a_connection_owned_by_the_other_in_both_orders() {
    let dir = tempfile::tempdir().unwrap();
    let c: IpAddr = "198.18.0.1".parse().unwrap();
    let before = sa("198.18.5.1:443");
    let after = sa("198.18.5.2:443");
    let late = sa("198.18.5.3:443");
    let mut t = Trace::new();
    // The DNS flows are on worker 0, the connections on worker 1.
    let d1 = SocketAddr::new(c, dns_port_owned_by(c, 0, 30000));
    let d2 = SocketAddr::new(c, dns_port_owned_by(c, 0, d1.port() + 1));
    let d3 = SocketAddr::new(c, dns_port_owned_by(c, 0, d2.port() + 1));
    let c1 = SocketAddr::new(c, tcp_port_owned_by(c, before, 1, 40000));
    let c2 = SocketAddr::new(c, tcp_port_owned_by(c, after, 1, 41000));
    let c3 = SocketAddr::new(c, tcp_port_owned_by(c, late, 1, 42000));
    // The answer 2 ms before the SYN.
    answer(&mut t, d1, "before.example", "198.18.5.1", T0 + 10 * S);
    connect(&mut t, c1, before, T0 + 10 * S + 2_000_000);
    // The answer 200 ms after the SYN (another core handled it late): within the tolerance.
    connect(&mut t, c2, after, T0 + 20 * S);
    answer(
        &mut t,
        d2,
        "after.example",
        "198.18.5.2",
        T0 + 20 * S + 200_000_000,
    );
    // The answer 3 s after the SYN: not the name the connection started with.
    connect(&mut t, c3, late, T0 + 30 * S);
    answer(&mut t, d3, "late.example", "198.18.5.3", T0 + 33 * S);

    let (one, _) = run(dir.path(), &mut t, "1", &[]);
    let (two, _) = run(dir.path(), &mut t, "2", &[]);
    for recs in [&one, &two] {
        assert_eq!(
            resp_name(recs, c1),
            Some(("before.example".into(), "A".into()))
        );
        assert_eq!(
            resp_name(recs, c2),
            Some(("after.example".into(), "A".into()))
        );
        assert_eq!(resp_name(recs, c3), None);
    }
}

#[test]
fn a_name_change_gives_each_connection_the_name_of_its_start_and_none_before_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let c: IpAddr = "198.18.0.7".parse().unwrap();
    let server = sa("198.18.6.6:443");
    let mut t = Trace::new();
    let early = SocketAddr::new(c, 40001);
    let first = SocketAddr::new(c, 40002);
    let second = SocketAddr::new(c, 40003);
    connect(&mut t, early, server, T0 + S);
    answer(
        &mut t,
        SocketAddr::new(c, 30001),
        "one.example",
        "198.18.6.6",
        T0 + 10 * S,
    );
    connect(&mut t, first, server, T0 + 11 * S);
    answer(
        &mut t,
        SocketAddr::new(c, 30002),
        "two.example",
        "198.18.6.6",
        T0 + 20 * S,
    );
    connect(&mut t, second, server, T0 + 21 * S);
    for w in ["1", "2"] {
        let (recs, _) = run(dir.path(), &mut t, w, &[]);
        assert_eq!(resp_name(&recs, early), None, "-w {w}");
        assert_eq!(resp_name(&recs, first).unwrap().0, "one.example", "-w {w}");
        assert_eq!(resp_name(&recs, second).unwrap().0, "two.example", "-w {w}");
    }
}

#[test]
fn a_shared_address_carries_the_name_each_client_looked_up() {
    let dir = tempfile::tempdir().unwrap();
    let cdn = sa("198.18.7.7:443");
    let (a, b): (IpAddr, IpAddr) = (
        "198.18.0.21".parse().unwrap(),
        "198.18.0.22".parse().unwrap(),
    );
    let mut t = Trace::new();
    answer(
        &mut t,
        SocketAddr::new(a, 30000),
        "shop.example",
        "198.18.7.7",
        T0 + 10 * S,
    );
    answer(
        &mut t,
        SocketAddr::new(b, 30000),
        "news.example",
        "198.18.7.7",
        T0 + 11 * S,
    );
    let (ca, cb) = (SocketAddr::new(a, 40000), SocketAddr::new(b, 40000));
    connect(&mut t, ca, cdn, T0 + 12 * S);
    connect(&mut t, cb, cdn, T0 + 12 * S + 5_000_000);
    for w in ["1", "2"] {
        let (recs, _) = run(dir.path(), &mut t, w, &[]);
        assert_eq!(resp_name(&recs, ca).unwrap().0, "shop.example", "-w {w}");
        assert_eq!(resp_name(&recs, cb).unwrap().0, "news.example", "-w {w}");
    }
}

/// Parses the one data line of a TSV namecache.log into (column, value) pairs.
fn namecache(dir: &Path) -> std::collections::HashMap<String, String> {
    let text = std::fs::read_to_string(dir.join("namecache.log")).expect("namecache.log");
    let fields: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("#fields\t"))
        .expect("#fields")
        .split('\t')
        .collect();
    let row: Vec<&str> = text
        .lines()
        .find(|l| !l.starts_with('#'))
        .expect("a record")
        .split('\t')
        .collect();
    fields
        .iter()
        .zip(row)
        .map(|(f, v)| (f.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_dns_flood_stays_within_the_bounds_and_every_packet_is_processed() {
    const N: u32 = 200_000;
    const BOUND: u64 = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trace::new();
    // 200 000 unique names, each for its own address, 10 µs apart: two seconds of packet
    // time, far above the replication rate allowed below.
    for i in 0..N {
        let client = SocketAddr::new("198.18.0.1".parse().unwrap(), 1024 + (i % 60_000) as u16);
        let addr = std::net::Ipv4Addr::from(0xc613_0000 + i).to_string();
        answer(
            &mut t,
            client,
            &format!("h{i}.flood.example"),
            &addr,
            T0 + u64::from(i) * 10_000 + 1_000_000,
        );
    }
    t.sort_by_time();
    let pcap = dir.path().join("flood.pcap");
    t.write_pcap(&pcap, TsResolution::Nano).unwrap();
    let out = dir.path().join("out");
    let o = Command::new(BIN)
        .args([
            "read",
            "-w",
            "2",
            "--format",
            "tsv",
            "--logs",
            "conn,namecache",
        ])
        .args(["--name-max-entries", &BOUND.to_string()])
        .args(["--name-rate", "5000", "--name-burst", "1000", "-o"])
        .arg(&out)
        .arg(&pcap)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    // Every packet processed: two per exchange read, and every one of them counted in a
    // record (client ports repeat every 60 000 exchanges, so some connections hold several).
    assert!(
        stderr.contains(&format!("{} frames, {} packets", 2 * N, 2 * N)),
        "{stderr}"
    );
    let conn = std::fs::read_to_string(out.join("conn.log")).unwrap();
    let pkts: u64 = conn
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            f[16].parse::<u64>().unwrap() + f[18].parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(pkts, 2 * u64::from(N), "every packet counted in a record");
    let nc = namecache(&out);
    let n = |k: &str| {
        nc[k]
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("{k}={}", nc[k]))
    };
    assert_eq!(n("ev_a"), u64::from(N), "every answer seen");
    assert!(
        n("entries") <= BOUND,
        "entries {} above the bound",
        n("entries")
    );
    assert!(n("evictions") > 0);
    assert!(
        n("bytes") <= 2 * BOUND * n("bytes_per_entry") + (8 << 20),
        "bytes {} for a bound of {BOUND} entries",
        n("bytes")
    );
    // Each of the two senders may replicate 2 s × 5000/s plus a burst of 1000: 11 000 each,
    // 22 000 of the 200 000 mappings; the rest is counted as rate-limited.
    assert!(n("repl_sent") <= 22_000, "{nc:?}");
    assert_eq!(
        n("repl_sent") + n("repl_rate_limited"),
        u64::from(N),
        "{nc:?}"
    );
    assert_eq!(
        n("repl_sent"),
        n("repl_received"),
        "offline loses nothing that was sent"
    );
}

#[test]
fn names_survive_a_restart_through_the_state_file_and_a_corrupt_one_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("names.state");
    let state_s = state.to_str().unwrap();
    let c: IpAddr = "198.18.0.9".parse().unwrap();
    let server = sa("198.18.8.8:443");
    let mut first = Trace::new();
    answer(
        &mut first,
        SocketAddr::new(c, 30000),
        "warm.example",
        "198.18.8.8",
        T0 + S,
    );
    connect(&mut first, SocketAddr::new(c, 40000), server, T0 + 2 * S);
    let (recs, _) = run(dir.path(), &mut first, "2", &["--name-state", state_s]);
    assert_eq!(
        resp_name(&recs, SocketAddr::new(c, 40000)).unwrap().0,
        "warm.example"
    );
    assert!(state.exists(), "the state file is written at exit");

    // A second run with no DNS at all: the name comes from the state file.
    let mut second = Trace::new();
    let later = SocketAddr::new(c, 40001);
    connect(&mut second, later, server, T0 + 60 * S);
    let (recs, stderr) = run(dir.path(), &mut second, "1", &["--name-state", state_s]);
    assert_eq!(
        resp_name(&recs, later),
        Some(("warm.example".into(), "A".into())),
        "{stderr}"
    );

    // A corrupt file: reported, ignored, the run starts cold and rewrites it.
    std::fs::write(&state, b"this is not a snapshot").unwrap();
    let mut third = Trace::new();
    connect(&mut third, SocketAddr::new(c, 40002), server, T0 + 90 * S);
    let (recs, stderr) = run(
        dir.path(),
        &mut third,
        "2",
        &["--name-state", state_s, "-C"],
    );
    assert!(
        stderr.contains("names.state") && stderr.contains("not a valid"),
        "{stderr}"
    );
    assert_eq!(resp_name(&recs, SocketAddr::new(c, 40002)), None);
    let rewritten = std::fs::read(&state).unwrap();
    assert_ne!(rewritten, b"this is not a snapshot");
}

#[test]
fn no_names_leaves_the_columns_unset() {
    let dir = tempfile::tempdir().unwrap();
    let c: IpAddr = "198.18.0.3".parse().unwrap();
    let mut t = Trace::new();
    answer(
        &mut t,
        SocketAddr::new(c, 30000),
        "x.example",
        "198.18.9.9",
        T0 + S,
    );
    let cc = SocketAddr::new(c, 40000);
    connect(&mut t, cc, sa("198.18.9.9:80"), T0 + 2 * S);
    let (recs, _) = run(dir.path(), &mut t, "2", &["--no-names"]);
    assert_eq!(resp_name(&recs, cc), None);
    assert!(recs.iter().all(|r| r.get("orig_name").is_none()));
}

/// The TCP record from `client`.
fn record_from(recs: &[serde_json::Value], client: SocketAddr) -> &serde_json::Value {
    recs.iter()
        .find(|r| {
            r["proto"] == "tcp"
                && r["id.orig_h"] == client.ip().to_string()
                && r["id.orig_p"] == client.port()
        })
        .unwrap_or_else(|| panic!("no record for {client}"))
}

/// `resp_names` of the TCP record from `client` (empty when unset).
fn resp_names(recs: &[serde_json::Value], client: SocketAddr) -> Vec<String> {
    record_from(recs, client)["resp_names"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn one_address_answered_under_several_names_logs_every_name_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let cdn = sa("198.18.8.8:443");
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let (a, b, c, d) = (
        ip("198.18.0.31"),
        ip("198.18.0.32"),
        ip("198.18.0.33"),
        ip("198.18.0.34"),
    );
    let mut t = Trace::new();
    let early = SocketAddr::new(d, 40001);
    answer(
        &mut t,
        SocketAddr::new(a, 30000),
        "a.example",
        "198.18.8.8",
        T0 + 10 * S,
    );
    connect(&mut t, early, cdn, T0 + 10 * S + 300_000_000);
    answer(
        &mut t,
        SocketAddr::new(b, 30000),
        "b.example",
        "198.18.8.8",
        T0 + 11 * S,
    );
    answer(
        &mut t,
        SocketAddr::new(c, 30000),
        "c.example",
        "198.18.8.8",
        T0 + 12 * S,
    );
    // The same name again, from another client: still one name in the set.
    answer(
        &mut t,
        SocketAddr::new(d, 30001),
        "b.example",
        "198.18.8.8",
        T0 + 12 * S + S / 2,
    );
    let (from_a, from_d) = (SocketAddr::new(a, 40000), SocketAddr::new(d, 40000));
    connect(&mut t, from_a, cdn, T0 + 13 * S);
    connect(&mut t, from_d, cdn, T0 + 13 * S + 5_000_000);
    let mut logs = Vec::new();
    for w in ["1", "2"] {
        let (recs, _) = run(dir.path(), &mut t, w, &[]);
        // The client's own lookup names the connection; the set has every name, newest
        // proof first ("b" was proven again at 12.5 s).
        assert_eq!(resp_name(&recs, from_a).unwrap().0, "a.example", "-w {w}");
        assert_eq!(
            resp_names(&recs, from_a),
            ["b.example", "c.example", "a.example"],
            "-w {w}"
        );
        // d looked up b.example itself.
        assert_eq!(resp_name(&recs, from_d).unwrap().0, "b.example", "-w {w}");
        assert_eq!(
            resp_names(&recs, from_d),
            ["b.example", "c.example", "a.example"]
        );
        // Before the other answers: one name.
        assert_eq!(resp_names(&recs, early), ["a.example"], "-w {w}");
        assert!(record_from(&recs, from_a).get("orig_names").is_none());
        // At most --names-max, the logged name always among them (leading when the newest
        // would have left it out).
        let (cut, _) = run(dir.path(), &mut t, w, &["--names-max", "2"]);
        assert_eq!(
            resp_names(&cut, from_a),
            ["a.example", "b.example"],
            "-w {w}"
        );
        assert_eq!(
            resp_names(&cut, from_d),
            ["b.example", "c.example"],
            "-w {w}"
        );
        logs.push(recs);
    }
    assert_eq!(logs[0].len(), logs[1].len());
}

#[test]
fn a_connections_own_host_wins_over_the_clients_lookup_even_when_it_comes_late() {
    let dir = tempfile::tempdir().unwrap();
    let server = sa("198.18.9.9:80");
    let c: IpAddr = "198.18.0.41".parse().unwrap();
    let mut t = Trace::new();
    answer(
        &mut t,
        SocketAddr::new(c, 30000),
        "looked-up.example",
        "198.18.9.9",
        T0 + 10 * S,
    );
    let http = |host: &str| format!("GET / HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n\r\n");
    // Its request right after the handshake.
    let soon = SocketAddr::new(c, 40000);
    t.tcp_session(
        &TcpSpec {
            client: soon,
            server,
            client_first: http("vhost.example").into_bytes(),
            ..TcpSpec::default()
        },
        T0 + 11 * S,
    );
    // Its request 2.4 s after the SYN, far beyond the lookup tolerance.
    let late = SocketAddr::new(c, 40001);
    t.tcp_session(
        &TcpSpec {
            client: late,
            server,
            client_first: http("late-vhost.example").into_bytes(),
            step_ns: 800_000_000,
            ..TcpSpec::default()
        },
        T0 + 20 * S,
    );
    // No request of its own: the client's lookup.
    let plain = SocketAddr::new(c, 40002);
    connect(&mut t, plain, server, T0 + 30 * S);
    for w in ["1", "2"] {
        let (recs, _) = run(dir.path(), &mut t, w, &[]);
        assert_eq!(
            resp_name(&recs, soon),
            Some(("vhost.example".into(), "HTTP".into())),
            "-w {w}"
        );
        // Both held: the lookup proven by the start first, then the Host within the tolerance.
        assert_eq!(
            resp_names(&recs, soon),
            ["looked-up.example", "vhost.example"]
        );
        assert_eq!(
            resp_name(&recs, late),
            Some(("late-vhost.example".into(), "HTTP".into())),
            "-w {w}"
        );
        // Its own name came after the tolerance: it leads the set of names that held.
        assert_eq!(
            resp_names(&recs, late)[..2],
            ["late-vhost.example", "vhost.example"],
            "-w {w}"
        );
        assert_eq!(
            resp_name(&recs, plain),
            Some(("looked-up.example".into(), "A".into())),
            "-w {w}"
        );
    }
}

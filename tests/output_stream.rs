//! TCP and Unix stream sinks against real listeners: they receive exactly the records of the
//! file sink; a listener killed mid-stream and restarted gets whole records, never a
//! duplicate; what could not be delivered is counted; and producers never wait on a dead
//! collector.

use nameflow::output::{Clock, Format, OutputConfig, SinkConfig, SinkSpec, Writer};
use nameflow::synth::{DnsData, DnsRecord, DnsSpec, TcpClose, TcpSpec, Trace, TsResolution};
use nameflow::types::record::{
    CommunityId, ConnRecord, ConnState, History, ServiceList, Transport, Uid,
};
use nameflow::types::spsc;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const T0: u64 = 1_700_000_000_000_000_000;

fn nameflow(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nameflow"))
        .args(args)
        .output()
        .expect("failed to run the nameflow binary")
}

/// TCP sessions and DNS exchanges: `n` of each.
fn trace(n: usize) -> Trace {
    let mut t = Trace::new();
    for i in 0..n {
        let start = T0 + i as u64 * 50_000_000;
        let spec = TcpSpec {
            client: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), 10000 + i as u16),
            server: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2)), 443),
            close: if i % 3 == 0 {
                TcpClose::RstByServer
            } else {
                TcpClose::Fin
            },
            ..TcpSpec::default()
        };
        t.tcp_session(&spec, start);
        let mut dns = DnsSpec::query(&format!("h{i}.example.test"), 1).answer(DnsRecord::new(
            &format!("h{i}.example.test"),
            300,
            DnsData::A([198, 18, 2, (i % 250) as u8].into()),
        ));
        dns.client.set_port(30000 + i as u16);
        t.dns_exchange(&dns, start + 1_000_000);
    }
    t.sort_by_time();
    t
}

/// Accepts connections one after the other and returns every line received, until the
/// peer closes a connection after `want` lines in total were received.
fn collect<L, S>(accept: L) -> JoinHandle<Vec<String>>
where
    L: FnOnce() -> S + Send + 'static,
    S: Read + Send + 'static,
{
    std::thread::spawn(move || {
        let stream = accept();
        BufReader::new(stream)
            .lines()
            .map(|l| l.expect("valid UTF-8 lines"))
            .collect()
    })
}

/// Normalises a JSON line from a stream (which carries `_path`) to the file's form.
fn strip_path(line: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("not a whole JSON record: {line:?}: {e}"));
    let path = v.as_object_mut().unwrap().remove("_path");
    assert_eq!(path, Some("conn".into()), "stream records name their log");
    v
}

fn multiset<T: Ord>(v: impl IntoIterator<Item = T>) -> BTreeMap<T, usize> {
    let mut m = BTreeMap::new();
    for x in v {
        *m.entry(x).or_insert(0) += 1;
    }
    m
}

#[test]
fn tcp_and_unix_sinks_receive_exactly_the_file_records() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("t.pcap");
    trace(300).write_pcap(&pcap, TsResolution::Micro).unwrap();

    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let sock = dir.path().join("collector.sock");
    let unix = UnixListener::bind(&sock).unwrap();
    let tcp_lines = collect(move || tcp.accept().unwrap().0);
    let unix_lines = collect(move || unix.accept().unwrap().0);

    // JSON files, JSON over TCP, TSV over the Unix socket: per-sink formats come from the
    // config file; the flag sets the default.
    let cfg = dir.path().join("nameflow.toml");
    let logs = dir.path().join("logs");
    std::fs::write(
        &cfg,
        format!(
            "[output]\nsinks = [{:?}, \"tcp://127.0.0.1:{port}\", {{ to = \"unix:{}\", format = \"tsv\" }}]\n",
            logs.to_str().unwrap(),
            sock.display()
        ),
    )
    .unwrap();
    let o = nameflow(&[
        "read",
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        "json",
        pcap.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let file = std::fs::read_to_string(logs.join("conn.log")).unwrap();
    let file_recs: Vec<serde_json::Value> = file
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        file_recs.len(),
        600,
        "300 TCP sessions and 300 DNS exchanges"
    );

    let tcp_recs: Vec<serde_json::Value> = tcp_lines
        .join()
        .unwrap()
        .iter()
        .map(|l| strip_path(l))
        .collect();
    assert_eq!(
        multiset(tcp_recs.iter().map(|v| v.to_string())),
        multiset(file_recs.iter().map(|v| v.to_string())),
        "the TCP collector got exactly the file's records"
    );

    // The TSV stream starts with the header; its rows are the file's records in TSV.
    let unix_lines = unix_lines.join().unwrap();
    assert_eq!(unix_lines[0], "#separator \\x09");
    let fields: Vec<&str> = unix_lines
        .iter()
        .find_map(|l| l.strip_prefix("#fields\t"))
        .expect("a #fields line")
        .split('\t')
        .collect();
    let rows: Vec<&String> = unix_lines.iter().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(rows.len(), file_recs.len());
    let uid_col = fields.iter().position(|f| *f == "uid").unwrap();
    let port_col = fields.iter().position(|f| *f == "id.orig_p").unwrap();
    assert_eq!(
        multiset(rows.iter().map(|r| {
            let c: Vec<&str> = r.split('\t').collect();
            (c[uid_col].to_owned(), c[port_col].to_owned())
        })),
        multiset(file_recs.iter().map(|v| (
            v["uid"].as_str().unwrap().to_owned(),
            v["id.orig_p"].to_string()
        ))),
        "the Unix collector got exactly the file's records"
    );
}

#[test]
fn a_dead_collector_does_not_slow_capture_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("t.pcap");
    trace(2000).write_pcap(&pcap, TsResolution::Micro).unwrap();
    // A port nobody listens on: bind, note it, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let time = |extra: &[&str], out: &Path| {
        let mut args = vec!["read", "-o", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(pcap.to_str().unwrap());
        let t = Instant::now();
        let o = nameflow(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (t.elapsed(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (base, _) = time(&[], &dir.path().join("a"));
    let tcp = format!("tcp://127.0.0.1:{port}");
    let (dead, stderr) = time(
        &["-o", &tcp, "--flush-timeout", "300ms"],
        &dir.path().join("b"),
    );
    let a = std::fs::read_to_string(dir.path().join("a/conn.log")).unwrap();
    let b = std::fs::read_to_string(dir.path().join("b/conn.log")).unwrap();
    assert_eq!(a.lines().count(), 4000);
    let (mut a, mut b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    a.sort_unstable();
    b.sort_unstable();
    assert!(a == b, "the file sink is unaffected by the dead collector");
    // The run waits for the collector only at exit, and only for the flush timeout.
    assert!(
        dead < base * 2 + Duration::from_millis(300 + 1500),
        "a dead collector slowed the run: {dead:?} against {base:?}"
    );
    assert!(
        stderr.contains(&format!(
            "output {tcp}: 0 records written, 4000 dropped, 0 undelivered"
        )),
        "undelivered records are reported: {stderr}"
    );
}

/// A record whose uid and port identify it.
fn record(i: u64) -> ConnRecord {
    let mut history = History::default();
    for &c in b"ShADadFf" {
        history.push(c);
    }
    ConnRecord {
        ts_ns: T0 + i * 1_000,
        uid: Uid::from_bits(i, 7),
        orig_h: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
        orig_p: (i % 60000) as u16,
        resp_h: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
        resp_p: 443,
        vlans: nameflow::flow::key::Vlans::NONE,
        proto: Transport::Tcp,
        service: ServiceList::default(),
        duration_ns: 1_500_000,
        orig_bytes: 100,
        resp_bytes: 2000,
        conn_state: ConnState::SF,
        local_orig: Some(true),
        local_resp: Some(true),
        missed_bytes: 0,
        history,
        orig_pkts: 5,
        orig_ip_bytes: 400,
        resp_pkts: 5,
        resp_ip_bytes: 2300,
        tunnel_parents: [None, None],
        ip_proto: 6,
        community_id: CommunityId::from_digest([0xa5; 20]),
    }
}

/// What a collector saw over its two lives.
struct Seen {
    /// Complete lines of the first connection, read before it was killed.
    first: Vec<String>,
    /// Lines of the connection(s) after the restart.
    second: Vec<String>,
}

/// Runs the writer into a stream sink whose listener is killed after `kill_after` lines and
/// restarted after `down`; a producer pushes `n` records with the live (drop) policy.
fn kill_and_restart<S, A>(
    spec: SinkSpec,
    mut bind: impl FnMut() -> A + Send + 'static,
    accept: fn(&A) -> S,
) -> (Seen, nameflow::output::WriterReport, u64, u64)
where
    S: Read + Send + 'static,
    A: Send + 'static,
{
    const N: u64 = 60_000;
    let listener = bind();
    let cfg = OutputConfig {
        sinks: vec![SinkConfig {
            spec,
            format: Format::Json,
        }],
        stream_buffer: 256 << 10,
        flush_timeout: Duration::from_secs(5),
        ..OutputConfig::default()
    };
    let (tx, rx) = spsc::channel::<ConnRecord>(4096);
    let mut writer = Writer::open(&cfg, Clock::Wall).unwrap();
    writer.add_log(vec![rx]).unwrap();
    let stats = writer.stats();
    let writer = std::thread::spawn(move || writer.run());

    let collector = std::thread::spawn(move || {
        // First life: read 2000 complete lines, then die with the rest unread.
        let s = accept(&listener);
        let mut r = BufReader::new(s);
        let mut first = Vec::new();
        let mut line = String::new();
        while first.len() < 2000 {
            line.clear();
            if r.read_line(&mut line).unwrap() == 0 {
                break;
            }
            assert!(line.ends_with('\n'), "a record arrived cut short: {line:?}");
            first.push(line.trim_end().to_owned());
        }
        drop(r);
        drop(listener);
        // Down long enough for the producer to overflow the 256 KiB buffer.
        std::thread::sleep(Duration::from_millis(400));
        let listener = bind();
        let s = accept(&listener);
        let second: Vec<String> = BufReader::new(s)
            .lines()
            .map(|l| l.expect("UTF-8"))
            .collect();
        Seen { first, second }
    });

    // The producer: a live worker, which must never wait. 60k records over about 1.2 s.
    let started = Instant::now();
    let mut queue_drops = 0;
    for i in 0..N {
        if !tx.try_push(record(i)) {
            queue_drops += 1;
        }
        if i % 1000 == 999 {
            let due = Duration::from_millis(20 * (i + 1) / 1000);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    drop(tx);
    let report = writer.join().unwrap().expect("writer ends cleanly");
    let seen = collector.join().unwrap();
    let live = stats.snapshot();
    assert_eq!(live, report.sinks, "the live stats end equal to the report");
    (seen, report, queue_drops, N)
}

fn check_kill_and_restart(
    seen: Seen,
    report: nameflow::output::WriterReport,
    queue_drops: u64,
    n: u64,
) {
    let s = &report.sinks[0];
    assert_eq!(
        queue_drops, 0,
        "the writer kept draining while the collector was down"
    );
    assert_eq!(report.records, n);
    assert_eq!(
        s.buffered, 0,
        "nothing left in the buffer after a clean exit"
    );
    assert_eq!(
        s.written + s.dropped,
        n,
        "every record written or counted as dropped: {s:?}"
    );
    assert!(
        s.dropped > 0,
        "the 256 KiB buffer overflowed while the collector was down: {s:?}"
    );

    let mut uids = HashSet::new();
    for line in seen.first.iter().chain(&seen.second) {
        let v = strip_path(line);
        let uid = v["uid"].as_str().unwrap().to_owned();
        let i: u64 = v["ts"]
            .as_f64()
            .map(|t| ((t - 1.7e9) * 1e6).round() as u64)
            .unwrap();
        assert_eq!(
            uid,
            Uid::from_bits(i, 7).to_string(),
            "an intact record: {line}"
        );
        assert!(uids.insert(uid), "record {i} delivered twice");
    }
    let received = uids.len() as u64;
    assert!(
        seen.second.len() > 1000,
        "delivery resumed after the restart"
    );
    // Records the kernel accepted but the first collector never read before it died are
    // lost without anyone knowing (a plain stream has no acknowledgements). That is at most
    // what its socket buffers held when it died.
    let unknown = s.written - received;
    assert!(
        unknown * 400 <= 8 << 20,
        "{unknown} records vanished: more than the socket buffers can hold: {s:?}, received {received}"
    );
    eprintln!(
        "received {received} ({} + {}), written {}, dropped {}, lost in the dead collector's buffers {unknown}",
        seen.first.len(),
        seen.second.len(),
        s.written,
        s.dropped
    );
}

#[test]
fn tcp_listener_killed_and_restarted() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (seen, report, drops, n) = kill_and_restart(
        SinkSpec::Tcp(format!("127.0.0.1:{port}")),
        move || TcpListener::bind(("127.0.0.1", port)).expect("rebind the collector's port"),
        |l: &TcpListener| l.accept().unwrap().0,
    );
    check_kill_and_restart(seen, report, drops, n);
}

#[test]
fn unix_listener_killed_and_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sock");
    let p = path.clone();
    let (seen, report, drops, n) = kill_and_restart(
        SinkSpec::Unix(path),
        move || {
            let _ = std::fs::remove_file(&p);
            UnixListener::bind(&p).expect("bind the collector's socket")
        },
        |l: &UnixListener| l.accept().unwrap().0,
    );
    check_kill_and_restart(seen, report, drops, n);
}

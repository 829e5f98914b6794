//! Rotation driven by packet time: a run over a multi-hour synthetic trace rotates on the
//! trace's own hour boundaries, names the archives as zeekctl does, puts each record in the
//! file of the hour it was logged in, and loses or repeats no record.

use nameflow::synth::{TcpClose, TcpSpec, Trace, TsResolution};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

/// 2023-11-14 22:13:20 UTC.
const T0: u64 = 1_700_000_000_000_000_000;
const S: u64 = 1_000_000_000;

/// A TCP session every 10 minutes from 22:13:20 to 03:13:20, with no traffic from 00:13:20
/// to 02:13:20 (a gap across two hour boundaries), plus one session at 22:59:59 that is
/// still open when 23:00 passes.
fn trace() -> (Trace, Vec<u64>) {
    let mut t = Trace::new();
    let mut starts = Vec::new();
    let mut session = |t: &mut Trace, i: u16, start: u64| {
        let spec = TcpSpec {
            client: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), 40000 + i),
            server: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)), 80),
            close: TcpClose::Fin,
            ..TcpSpec::default()
        };
        t.tcp_session(&spec, start);
        starts.push(start);
    };
    for k in 0..=30u64 {
        if (12..=24).contains(&k) {
            continue;
        }
        session(&mut t, k as u16, T0 + k * 600 * S);
    }
    session(&mut t, 999, T0 + 2799 * S);
    t.sort_by_time();
    (t, starts)
}

fn run(args: &[&str]) {
    let o = Command::new(env!("CARGO_BIN_EXE_nameflow"))
        .args(args)
        .output()
        .expect("failed to run the nameflow binary");
    assert!(
        o.status.success(),
        "nameflow {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

fn read(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if path.extension().is_some_and(|e| e == "gz") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut s)
            .unwrap_or_else(|e| panic!("{} is not gzip: {e}", path.display()));
        s
    } else {
        String::from_utf8(bytes).unwrap()
    }
}

/// (start ns, orig port) of each record in a TSV or JSON log.
fn records(text: &str) -> Vec<(u64, u16)> {
    let mut cols: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(f) = line.strip_prefix("#fields\t") {
            cols = f.split('\t').map(str::to_owned).collect();
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (ts, port) = if line.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                v["ts"].as_f64().unwrap(),
                v["id.orig_p"].as_u64().unwrap() as u16,
            )
        } else {
            let vals: Vec<&str> = line.split('\t').collect();
            let at = |n: &str| vals[cols.iter().position(|c| c == n).unwrap()];
            (at("ts").parse().unwrap(), at("id.orig_p").parse().unwrap())
        };
        out.push(((ts * 1e6).round() as u64 * 1000, port));
    }
    out
}

/// "HH:MM:SS" of a time in `YYYY-MM-DD/conn.HH:MM:SS-HH:MM:SS.log` → ns, given the day.
fn hms(day_ns: u64, s: &str) -> u64 {
    let p: Vec<u64> = s.split(':').map(|x| x.parse().unwrap()).collect();
    day_ns + (p[0] * 3600 + p[1] * 60 + p[2]) * S
}

fn check(format: &str, compress: bool) {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("t.pcap");
    let (t, starts) = trace();
    t.write_pcap(&pcap, TsResolution::Micro).unwrap();
    let last = t.frames().iter().map(|f| f.ts_ns).max().unwrap();
    assert_eq!(
        last / S,
        (T0 + 30 * 600 * S) / S,
        "the trace ends at 03:13:20"
    );
    let out = dir.path().join("logs");
    let mut args = vec![
        "read",
        "--rotate",
        "1h",
        "--format",
        format,
        "-o",
        out.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ];
    if compress {
        args.insert(1, "--compress");
    }
    run(&args);

    let ext = if compress { "log.gz" } else { "log" };
    let expected: Vec<String> = [
        "2023-11-14/conn.22:13:20-23:00:00",
        "2023-11-14/conn.23:00:00-00:00:00",
        "2023-11-15/conn.00:00:00-01:00:00",
        // The gap: no file for 01:00-02:00.
        "2023-11-15/conn.02:00:00-03:00:00",
        "2023-11-15/conn.03:00:00-03:13:20",
    ]
    .iter()
    .map(|n| format!("{n}.{ext}"))
    .collect();
    assert_eq!(
        files(&out),
        expected,
        "archive names (and no live conn.log left)"
    );

    let day14 = 1_699_920_000 * S;
    let mut seen: BTreeMap<(u64, u16), String> = BTreeMap::new();
    for name in &expected {
        let text = read(&out.join(name));
        if format == "tsv" {
            assert!(
                text.starts_with("#separator \\x09\n"),
                "{name} has a header"
            );
            assert!(
                text.lines().last().unwrap().starts_with("#close\t"),
                "{name} has a footer"
            );
        }
        let day = if name.starts_with("2023-11-14") {
            day14
        } else {
            day14 + 86_400 * S
        };
        let stem = name.split('/').nth(1).unwrap();
        let span = &stem["conn.".len()..stem.find(".log").unwrap()];
        let (o, c) = span.split_once('-').unwrap();
        let open = hms(day, o);
        let mut close = hms(day, c);
        if close < open {
            close += 86_400 * S;
        }
        for r in records(&text) {
            if let Some(other) = seen.insert(r, name.clone()) {
                panic!("record {r:?} is in both {other} and {name}");
            }
            // Names have one-second resolution.
            assert!(
                r.0 < close + S,
                "{name} holds a record that starts after it closed: {r:?}"
            );
        }
    }
    assert_eq!(seen.len(), starts.len(), "every record exactly once");
    for &s in &starts {
        let (_, file) = seen
            .iter()
            .find(|((ts, _), _)| *ts == s)
            .unwrap_or_else(|| panic!("no record for the session at {s}"));
        let expect = match (s - T0) / S {
            x if x < 2799 => "2023-11-14/conn.22:13:20-23:00:00",
            // Still open at 23:00 (its FIN close delay runs past it): logged after rotation.
            2799 => "2023-11-14/conn.23:00:00-00:00:00",
            x if x < 6400 => "2023-11-14/conn.23:00:00-00:00:00",
            x if x < 10000 => "2023-11-15/conn.00:00:00-01:00:00",
            x if x < 17200 => "2023-11-15/conn.02:00:00-03:00:00",
            _ => "2023-11-15/conn.03:00:00-03:13:20",
        };
        assert_eq!(
            *file,
            format!("{expect}.{ext}"),
            "session at +{}s",
            (s - T0) / S
        );
    }
}

#[test]
fn hourly_rotation_follows_packet_time_tsv() {
    check("tsv", false);
}

#[test]
fn hourly_rotation_follows_packet_time_json_gzip() {
    check("json", true);
}

#[test]
fn size_rotation_keeps_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("t.pcap");
    let (t, starts) = trace();
    t.write_pcap(&pcap, TsResolution::Micro).unwrap();
    let out = dir.path().join("logs");
    run(&[
        "read",
        "--rotate-size",
        "1K",
        "-o",
        out.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    let names = files(&out);
    assert!(names.len() > 3, "1 KiB files rotate often: {names:?}");
    let mut all: Vec<(u64, u16)> = Vec::new();
    for n in &names {
        assert!(n.contains("/conn.") && n.ends_with(".log"), "{n}");
        all.extend(records(&read(&out.join(n))));
    }
    let before = all.len();
    all.sort();
    all.dedup();
    assert_eq!(before, all.len(), "no record twice");
    assert_eq!(all.len(), starts.len(), "every record once");
}

#[test]
fn without_rotation_the_live_file_stays() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("t.pcap");
    let (t, starts) = trace();
    t.write_pcap(&pcap, TsResolution::Micro).unwrap();
    let out: PathBuf = dir.path().join("logs");
    run(&[
        "read",
        "--format",
        "tsv",
        "-o",
        out.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    assert_eq!(files(&out), ["conn.log"]);
    let text = read(&out.join("conn.log"));
    assert_eq!(records(&text).len(), starts.len());
    // The file dates are packet times: opened at the first packet, closed at the last.
    assert!(text.contains("#open\t2023-11-14-22-13-20\n"), "{text}");
    assert!(text.contains("#close\t2023-11-15-03-13-20\n"), "{text}");
}

/// SIGHUP makes a directory sink reopen its files, as logrotate expects: what was written
/// before goes to the moved file, which gets its footer; `conn.log` starts again with a header.
#[test]
fn sighup_reopens_files_for_logrotate() {
    use nameflow::output::{Clock, Format, OutputConfig, SinkConfig, SinkSpec, Writer};
    use nameflow::types::record::ConnRecord;
    use nameflow::types::spsc;

    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let cfg = OutputConfig {
        sinks: vec![SinkConfig {
            spec: SinkSpec::Dir(logs.clone()),
            format: Format::Tsv,
        }],
        ..OutputConfig::default()
    };
    let (tx, rx) = spsc::channel::<ConnRecord>(64);
    let mut w = Writer::open(&cfg, Clock::Wall).unwrap();
    w.add_log(vec![rx]).unwrap();
    let stats = w.stats();
    let writer = std::thread::spawn(move || w.run());
    let rec = |port: u16| {
        let mut r = sample_record();
        r.orig_p = port;
        r
    };
    let wait = |what: &str, cond: &dyn Fn() -> bool| {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !cond() {
            assert!(
                std::time::Instant::now() < until,
                "timed out waiting for {what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    for p in 0..10 {
        assert!(tx.push_wait(rec(p)));
    }
    wait("the first records", &|| stats.snapshot()[0].written == 10);
    // logrotate: move the file, then signal.
    std::fs::rename(logs.join("conn.log"), logs.join("conn.log.1")).unwrap();
    signal_hook::low_level::raise(signal_hook::consts::SIGHUP).unwrap();
    wait("conn.log to be reopened", &|| {
        logs.join("conn.log").exists()
    });
    for p in 10..25 {
        assert!(tx.push_wait(rec(p)));
    }
    drop(tx);
    writer.join().unwrap().unwrap();

    let old = std::fs::read_to_string(logs.join("conn.log.1")).unwrap();
    let new = std::fs::read_to_string(logs.join("conn.log")).unwrap();
    for (name, text, n) in [("conn.log.1", &old, 10), ("conn.log", &new, 15)] {
        assert!(
            text.starts_with("#separator \\x09\n"),
            "{name} starts with a header"
        );
        assert!(
            text.lines().last().unwrap().starts_with("#close\t"),
            "{name} ends with #close"
        );
        assert_eq!(
            text.lines().filter(|l| !l.starts_with('#')).count(),
            n,
            "{name}"
        );
    }
}

fn sample_record() -> nameflow::types::record::ConnRecord {
    use nameflow::types::record::{
        CommunityId, ConnRecord, ConnState, History, ServiceList, Transport, Uid,
    };
    ConnRecord {
        ts_ns: T0,
        uid: Uid::from_bits(1, 2),
        orig_h: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
        orig_p: 0,
        resp_h: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
        resp_p: 80,
        vlans: nameflow::flow::key::Vlans::NONE,
        proto: Transport::Tcp,
        service: ServiceList::default(),
        duration_ns: 0,
        orig_bytes: 0,
        resp_bytes: 0,
        conn_state: ConnState::S0,
        local_orig: Some(true),
        local_resp: Some(true),
        missed_bytes: 0,
        history: History::default(),
        orig_pkts: 1,
        orig_ip_bytes: 40,
        resp_pkts: 0,
        resp_ip_bytes: 0,
        tunnel_parents: [None, None],
        ip_proto: 6,
        community_id: CommunityId::default(),
    }
}

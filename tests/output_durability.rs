//! No log lost at start (issue 17): a second run into the same directory keeps the first
//! run's records, with and without rotation, and a torn last line left by a crash is ended
//! before the new run appends, so every whole record stays parseable.

use nameflow::synth::{TcpClose, TcpSpec, Trace, TsResolution};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// 2023-11-14 22:13:20 UTC.
const T0: u64 = 1_700_000_000_000_000_000;
const S: u64 = 1_000_000_000;

fn nameflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nameflow"))
        .args(args)
        .output()
        .expect("failed to run the nameflow binary")
}

fn ok(args: &[&str]) -> String {
    let o = nameflow(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "nameflow {args:?} failed: {err}");
    err
}

/// `n` TCP connections from client ports `port0..port0+n`, one a second from `start`.
fn pcap(dir: &Path, name: &str, port0: u16, n: u16, start: u64) -> PathBuf {
    let mut t = Trace::new();
    for i in 0..n {
        let spec = TcpSpec {
            client: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), port0 + i),
            server: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)), 80),
            close: TcpClose::Fin,
            ..TcpSpec::default()
        };
        t.tcp_session(&spec, start + u64::from(i) * S);
    }
    let p = dir.join(name);
    t.write_pcap(&p, TsResolution::Micro).unwrap();
    p
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The client ports of every conn record in every conn file under `dir` (JSON or TSV), with
/// the lines that are neither a record nor a header.
fn client_ports(dir: &Path) -> (Vec<u16>, Vec<String>) {
    let mut ports = Vec::new();
    let mut junk = Vec::new();
    for p in files(dir) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("conn.") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{name} ends mid-line"
        );
        let mut fields: Vec<String> = Vec::new();
        for line in text.lines() {
            if let Some(f) = line.strip_prefix("#fields\t") {
                fields = f.split('\t').map(str::to_owned).collect();
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            if line.starts_with('{') {
                match serde_json::from_str::<serde_json::Value>(line) {
                    Ok(v) => ports.push(v["id.orig_p"].as_u64().unwrap() as u16),
                    Err(_) => junk.push(line.to_owned()),
                }
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            let at = fields.iter().position(|f| f == "id.orig_p");
            match (at, cols.len() == fields.len()) {
                (Some(i), true) => ports.push(cols[i].parse().unwrap()),
                _ => junk.push(line.to_owned()),
            }
        }
    }
    ports.sort_unstable();
    (ports, junk)
}

fn range(from: u16, n: u16) -> Vec<u16> {
    (from..from + n).collect()
}

fn two_runs(format: &str, rotate: bool) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let a = pcap(dir.path(), "a.pcap", 10_000, 5, T0);
    // The second capture is an hour later: with rotation its files open at a later time.
    let b = pcap(dir.path(), "b.pcap", 20_000, 4, T0 + 3600 * S);
    let mut args = vec![
        "read",
        "-C",
        "--format",
        format,
        "-o",
        logs.to_str().unwrap(),
    ];
    if rotate {
        args.extend(["--rotate", "1h"]);
    }
    ok(&[&args[..], &[a.to_str().unwrap()]].concat());
    ok(&[&args[..], &[b.to_str().unwrap()]].concat());
    let (ports, junk) = client_ports(&logs);
    let mut want = range(10_000, 5);
    want.extend(range(20_000, 4));
    assert_eq!(ports, want, "both runs' records, each once");
    assert!(junk.is_empty(), "{junk:?}");
    let live = logs.join("conn.log");
    if rotate {
        // Every record is archived; the first run's file under the first run's times.
        assert!(!live.exists());
        let names: BTreeSet<String> = files(&logs)
            .iter()
            .map(|p| {
                p.strip_prefix(&logs)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|n| n.contains("conn."))
            .collect();
        assert!(
            names.contains("2023-11-14/conn.22:13:20-22:13:24.log"),
            "{names:?}"
        );
    } else {
        let text = std::fs::read_to_string(&live).unwrap();
        assert!(text.contains("10000") && text.contains("20003"), "{text}");
    }
}

#[test]
fn two_runs_into_one_directory_keep_both_json() {
    two_runs("json", false);
}

#[test]
fn two_runs_into_one_directory_keep_both_tsv() {
    two_runs("tsv", false);
}

#[test]
fn two_runs_into_one_directory_keep_both_with_rotation() {
    two_runs("tsv", true);
}

#[test]
fn two_runs_into_one_directory_keep_both_with_rotation_json() {
    two_runs("json", true);
}

/// A crash mid-write: a record cut short, no final newline.
fn torn(format: &str) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let a = pcap(dir.path(), "a.pcap", 10_000, 3, T0);
    let b = pcap(dir.path(), "b.pcap", 20_000, 3, T0 + 60 * S);
    let args = [
        "read",
        "-C",
        "--format",
        format,
        "-o",
        logs.to_str().unwrap(),
    ];
    ok(&[&args[..], &[a.to_str().unwrap()]].concat());
    let live = logs.join("conn.log");
    let mut text = std::fs::read_to_string(&live).unwrap();
    if format == "tsv" {
        // A killed Zeek-style writer leaves no #close either.
        text = text
            .lines()
            .filter(|l| !l.starts_with("#close"))
            .map(|l| format!("{l}\n"))
            .collect();
    }
    let last = text.trim_end().lines().last().unwrap().to_owned();
    let fragment = &last[..last.len() / 2];
    text.push_str(fragment);
    std::fs::write(&live, &text).unwrap();

    ok(&[&args[..], &[b.to_str().unwrap()]].concat());
    let (ports, junk) = client_ports(&logs);
    let mut want = range(10_000, 3);
    want.extend(range(20_000, 3));
    assert_eq!(ports, want, "every whole record parses, old and new");
    assert_eq!(
        junk,
        vec![fragment.to_owned()],
        "only the fragment is not a record"
    );
}

#[test]
fn a_torn_last_line_is_ended_before_appending_json() {
    torn("json");
}

#[test]
fn a_torn_last_line_is_ended_before_appending_tsv() {
    torn("tsv");
}

#[test]
fn a_crashed_runs_file_is_archived_with_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // What a crash leaves with rotation on: conn.log never archived, its last line torn.
    std::fs::write(
        logs.join("conn.log"),
        "{\"ts\":1700000000.5,\"id.orig_p\":1}\n{\"ts\":1700000100.25,\"id.orig_p\":2}\n{\"ts\":17000",
    )
    .unwrap();
    let b = pcap(dir.path(), "b.pcap", 20_000, 2, T0 + 7200 * S);
    ok(&[
        "read",
        "-C",
        "--rotate",
        "1h",
        "-o",
        logs.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    let old = logs.join("2023-11-14/conn.22:13:20-22:15:00.log");
    let text = std::fs::read_to_string(&old)
        .unwrap_or_else(|e| panic!("{}: {e}; have {:?}", old.display(), files(&logs)));
    assert!(text.ends_with("{\"ts\":17000\n"), "{text}");
    let (ports, _) = client_ports(&logs);
    assert_eq!(ports, vec![1, 2, 20_000, 20_001]);
}

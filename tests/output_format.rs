//! What the writers put on disk, checked against Zeek's own logs: the TSV header of conn.log
//! equals Zeek's for every reference set (for the columns both have), JSON read back by a JSON
//! parser gives the same records as TSV, `--json-ts`, several sinks at once, and the config
//! file.

use nameflow::synth::{DnsData, DnsRecord, DnsSpec, TcpClose, TcpSpec, Trace, TsResolution};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const T0: u64 = 1_700_000_000_000_000_000;

fn nameflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nameflow"))
        .args(args)
        .output()
        .expect("failed to run the nameflow binary")
}

fn ok(args: &[&str]) -> Output {
    let o = nameflow(args);
    assert!(
        o.status.success(),
        "nameflow {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// The reference sets that have a conn.log, or none when ../shared is absent.
fn references() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/zeek");
    let Ok(rd) = std::fs::read_dir(&root) else {
        println!(
            "note: {} is absent; only synthetic traffic is checked",
            root.display()
        );
        return Vec::new();
    };
    let mut sets: Vec<PathBuf> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("conn.log").is_file() && p.join("trace.pcap").is_file())
        .collect();
    sets.sort();
    sets
}

/// TCP (with and without data, RST), DNS over IPv4 and IPv6, and an unanswered UDP probe.
fn synthetic(dir: &Path) -> PathBuf {
    let mut t = Trace::new();
    for i in 0..20u16 {
        let start = T0 + u64::from(i) * 10_000_000;
        let v6 = i % 2 == 1;
        let (c, s): (IpAddr, IpAddr) = if v6 {
            (
                Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).into(),
                Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).into(),
            )
        } else {
            (
                Ipv4Addr::new(198, 18, 0, 1).into(),
                Ipv4Addr::new(198, 18, 0, 2).into(),
            )
        };
        t.tcp_session(
            &TcpSpec {
                client: SocketAddr::new(c, 20000 + i),
                server: SocketAddr::new(s, if i % 3 == 0 { 22 } else { 80 }),
                client_segments: usize::from(i % 4),
                close: if i % 5 == 0 {
                    TcpClose::RstByClient
                } else {
                    TcpClose::Fin
                },
                ..TcpSpec::default()
            },
            start,
        );
        let mut dns = DnsSpec::query(&format!("n{i}.example.test"), 1).answer(DnsRecord::new(
            &format!("n{i}.example.test"),
            60,
            DnsData::A([198, 18, 3, i as u8].into()),
        ));
        dns.client.set_port(40000 + i);
        dns.no_response = i % 7 == 0;
        t.dns_exchange(&dns, start + 2_000_000);
    }
    t.sort_by_time();
    let p = dir.join("synthetic.pcap");
    t.write_pcap(&p, TsResolution::Micro).unwrap();
    p
}

/// Header lines of a TSV log, `#close` excluded, with dates masked as the references mask
/// them and the canonifier's space after `#open`.
fn header(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with('#') && !l.starts_with("###") && !l.starts_with("#close"))
        .map(|l| {
            if let Some(date) = l.strip_prefix("#open").map(str::trim_start) {
                let masked: String = date
                    .chars()
                    .map(|c| if c.is_ascii_digit() { 'X' } else { c })
                    .collect();
                format!("#open {masked}")
            } else {
                l.to_owned()
            }
        })
        .collect()
}

fn columns(header: &[String], tag: &str) -> Vec<String> {
    header
        .iter()
        .find_map(|l| l.strip_prefix(&format!("#{tag}\t")))
        .unwrap_or_else(|| panic!("no #{tag} line"))
        .split('\t')
        .map(str::to_owned)
        .collect()
}

#[test]
fn tsv_header_equals_zeeks_for_every_reference() {
    let refs = references();
    let dir = tempfile::tempdir().unwrap();
    let mut inputs: Vec<(String, PathBuf, Option<String>)> = refs
        .iter()
        .map(|set| {
            let name = set.file_name().unwrap().to_string_lossy().into_owned();
            let theirs = std::fs::read_to_string(set.join("conn.log")).unwrap();
            (name, set.join("trace.pcap"), Some(theirs))
        })
        .collect();
    inputs.push(("synthetic".into(), synthetic(dir.path()), None));
    let ssh_basic = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/zeek/ssh-basic/conn.log"),
    )
    .ok();
    let mut compared = 0;
    for (i, (name, pcap, theirs)) in inputs.iter().enumerate() {
        let out = dir.path().join(format!("o{i}"));
        ok(&[
            "read",
            "-C",
            "--format",
            "tsv",
            "-o",
            out.to_str().unwrap(),
            pcap.to_str().unwrap(),
        ]);
        let text = std::fs::read_to_string(out.join("conn.log")).unwrap();
        let ours = header(&text);
        let last = text.lines().last().unwrap();
        assert!(
            last.len() == "#close\t2023-11-14-22-13-20".len() && last.starts_with("#close\t"),
            "{name}: a #close line ends the file: {last:?}"
        );
        let Some(theirs) = theirs.as_deref().or(ssh_basic.as_deref()) else {
            continue;
        };
        let theirs = header(theirs);
        // #separator .. #open: the same lines.
        assert_eq!(
            ours[..6],
            theirs[..6],
            "{name}: header lines before #fields"
        );
        // #fields/#types: every column both have, in the same order with the same type;
        // ours adds community_id and the names, after Zeek's.
        let (of, ot) = (columns(&ours, "fields"), columns(&ours, "types"));
        let (tf, tt) = (columns(&theirs, "fields"), columns(&theirs, "types"));
        let shared: Vec<(&String, &String)> =
            tf.iter().zip(&tt).filter(|(f, _)| of.contains(f)).collect();
        let ours_shared: Vec<(&String, &String)> =
            of.iter().zip(&ot).filter(|(f, _)| tf.contains(f)).collect();
        assert_eq!(
            ours_shared, shared,
            "{name}: shared columns, order and types"
        );
        assert!(
            shared.len() >= 22,
            "{name}: Zeek's 22 conn.log columns are all ours"
        );
        let extra: Vec<&String> = of.iter().filter(|f| !tf.contains(f)).collect();
        assert_eq!(
            extra,
            [
                "community_id",
                "orig_name",
                "orig_name_src",
                "resp_name",
                "resp_name_src",
                "orig_names",
                "resp_names"
            ],
            "{name}: our extra columns, after Zeek's"
        );
        compared += 1;
    }
    println!("compared the header of {compared} logs with Zeek's");
    assert!(refs.is_empty() || compared == refs.len() + 1);
}

/// A JSON value rendered as Zeek's TSV writer renders the same column.
fn as_tsv(name: &str, v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Bool(b) => if *b { "T" } else { "F" }.to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "(empty)".to_owned(),
        Value::Array(a) => a
            .iter()
            .map(|x| as_tsv(name, x))
            .collect::<Vec<_>>()
            .join(","),
        Value::Number(n) if name == "ts" || name == "duration" => {
            format!("{:.6}", n.as_f64().unwrap())
        }
        Value::Number(n) => n.to_string(),
        other => panic!("unexpected JSON value for {name}: {other}"),
    }
}

#[test]
fn json_read_back_equals_tsv() {
    let dir = tempfile::tempdir().unwrap();
    let mut pcaps: Vec<PathBuf> = references().iter().map(|s| s.join("trace.pcap")).collect();
    pcaps.push(synthetic(dir.path()));
    let mut rows_checked = 0;
    for (i, pcap) in pcaps.iter().enumerate() {
        let (j, t) = (
            dir.path().join(format!("j{i}")),
            dir.path().join(format!("t{i}")),
        );
        // Both sinks in one run: one worker keeps the order, the encodings differ.
        let cfg = dir.path().join(format!("c{i}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[output]\nsinks = [{:?}, {{ to = {:?}, format = \"tsv\" }}]\n",
                j.to_str().unwrap(),
                t.to_str().unwrap()
            ),
        )
        .unwrap();
        ok(&[
            "read",
            "-C",
            "-w",
            "1",
            "--config",
            cfg.to_str().unwrap(),
            pcap.to_str().unwrap(),
        ]);
        let json = std::fs::read_to_string(j.join("conn.log")).unwrap();
        let tsv = std::fs::read_to_string(t.join("conn.log")).unwrap();
        let fields = columns(&header(&tsv), "fields");
        let rows: Vec<&str> = tsv.lines().filter(|l| !l.starts_with('#')).collect();
        let objs: Vec<&str> = json.lines().collect();
        assert_eq!(
            objs.len(),
            rows.len(),
            "{}: same record count",
            pcap.display()
        );
        for (obj, row) in objs.iter().zip(&rows) {
            let v: serde_json::Value =
                serde_json::from_str(obj).unwrap_or_else(|e| panic!("bad JSON {obj}: {e}"));
            let m = v.as_object().unwrap();
            let cols: Vec<&str> = row.split('\t').collect();
            assert_eq!(cols.len(), fields.len());
            for (f, c) in fields.iter().zip(&cols) {
                let want = m.get(f).map_or_else(|| "-".to_owned(), |x| as_tsv(f, x));
                assert_eq!(
                    want,
                    *c,
                    "{}: column {f}\n json {obj}\n tsv  {row}",
                    pcap.display()
                );
            }
            assert!(
                m.keys().all(|k| fields.contains(k)),
                "no key outside the schema: {obj}"
            );
            rows_checked += 1;
        }
    }
    println!("{rows_checked} records compared column by column");
    assert!(rows_checked >= 40, "only {rows_checked} rows compared");
}

#[test]
fn json_ts_iso8601_changes_only_times() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = synthetic(dir.path());
    let e = ok(&["read", "-w", "1", "-o", "-", pcap.to_str().unwrap()]);
    let i = ok(&[
        "read",
        "-w",
        "1",
        "-o",
        "-",
        "--json-ts",
        "iso8601",
        pcap.to_str().unwrap(),
    ]);
    let (e, i) = (
        String::from_utf8(e.stdout).unwrap(),
        String::from_utf8(i.stdout).unwrap(),
    );
    assert_eq!(e.lines().count(), i.lines().count());
    assert!(e.lines().count() >= 40);
    for (a, b) in e.lines().zip(i.lines()) {
        let mut a: serde_json::Value = serde_json::from_str(a).unwrap();
        let mut b: serde_json::Value = serde_json::from_str(b).unwrap();
        let epoch = a["ts"].as_f64().unwrap();
        let iso = b["ts"].as_str().unwrap().to_owned();
        // 2023-11-14T22:13:20.xxxxxxZ for T0 + a few seconds.
        assert!(
            iso.starts_with("2023-11-14T22:13:2") && iso.ends_with('Z'),
            "{iso}"
        );
        let micros = ((epoch - epoch.floor()) * 1e6).round() as u64;
        assert_eq!(&iso[20..26], format!("{micros:06}"), "fraction of {epoch}");
        a.as_object_mut().unwrap().remove("ts");
        b.as_object_mut().unwrap().remove("ts");
        assert_eq!(a, b);
    }
}

#[test]
fn stdout_and_directory_at_once_get_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = synthetic(dir.path());
    let out = dir.path().join("logs");
    let o = ok(&[
        "read",
        "-w",
        "1",
        "-o",
        "-",
        "-o",
        out.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    let file = std::fs::read_to_string(out.join("conn.log")).unwrap();
    assert_eq!(String::from_utf8(o.stdout).unwrap(), file);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("written to -, {}", out.display())),
        "{stderr}"
    );
}

#[test]
fn config_file_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = synthetic(dir.path());
    let logs = dir.path().join("logs");
    let cfg = dir.path().join("nameflow.toml");
    std::fs::write(
        &cfg,
        format!(
            "[output]\nsinks = [{:?}]\nformat = \"tsv\"\n",
            logs.to_str().unwrap()
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    ok(&["read", "--config", c, pcap.to_str().unwrap()]);
    let text = std::fs::read_to_string(logs.join("conn.log")).unwrap();
    assert!(text.starts_with("#separator"), "the file's format applies");
    // A flag overrides the file (into a fresh directory: a second run would append).
    std::fs::remove_dir_all(&logs).unwrap();
    ok(&[
        "read",
        "--config",
        c,
        "--format",
        "json",
        pcap.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(logs.join("conn.log")).unwrap();
    assert!(text.starts_with("{\"ts\":"), "the flag wins");

    // A misspelt key is an error that names it and the file.
    std::fs::write(&cfg, "[output]\nrotat = \"1h\"\n").unwrap();
    let o = nameflow(&["read", "--config", c, pcap.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("rotat") && err.contains("nameflow.toml"),
        "{err}"
    );
    // A bad value names the option both ways.
    std::fs::write(&cfg, "[output]\nrotate = \"hourly\"\n").unwrap();
    let o = nameflow(&["read", "--config", c, pcap.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--rotate / output.rotate") && err.contains("1h"),
        "{err}"
    );
    let o = nameflow(&["read", "-o", "udp://198.18.0.1:9", pcap.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("tcp://HOST:PORT"), "{err}");
}

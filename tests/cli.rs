//! End-to-end tests of `nameflow read`: what a user sees for good and bad input.

use nameflow::synth::{TcpClose, TcpSpec, Trace, TsResolution};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Output};

const T0: u64 = 1_700_000_000_000_000_000;

fn nameflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nameflow"))
        .args(args)
        .output()
        .expect("failed to run the nameflow binary")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `n` complete TCP connections, one after the other, from 198.18.0.1 to 198.18.0.2.
fn sessions(n: usize) -> Trace {
    let mut t = Trace::new();
    for i in 0..n {
        let spec = TcpSpec {
            client: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), 40000 + i as u16),
            server: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)), 80),
            close: TcpClose::Fin,
            ..TcpSpec::default()
        };
        t.tcp_session(&spec, T0 + i as u64 * 1_000_000_000);
    }
    t
}

fn json_records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

#[test]
fn json_log_has_zeek_fields_for_each_connection() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("s.pcap");
    sessions(3).write_pcap(&pcap, TsResolution::Micro).unwrap();
    let out = dir.path().join("logs");
    let o = nameflow(&["read", "-o", out.to_str().unwrap(), pcap.to_str().unwrap()]);
    assert!(o.status.success(), "read failed: {}", stderr(&o));
    let recs = json_records(&out.join("conn.log"));
    assert_eq!(recs.len(), 3, "one record per connection");
    for r in &recs {
        assert_eq!(r["proto"], "tcp");
        assert_eq!(r["conn_state"], "SF");
        assert_eq!(r["id.orig_h"], "198.18.0.1");
        assert_eq!(r["id.resp_p"], 80);
        assert_eq!(
            r["local_orig"], true,
            "198.18.0.0/15 is in Zeek's private space"
        );
        assert!(r["uid"].as_str().unwrap().starts_with('C'));
        assert!(r["community_id"].as_str().unwrap().starts_with("1:"));
    }
}

#[test]
fn truncated_pcap_logs_what_came_before_and_names_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("cut.pcap");
    let trace = sessions(5);
    let frames = trace.frames().len() as u64;
    let bytes = trace.pcap_bytes(TsResolution::Micro);
    // Cut in the middle of the last record: the first four connections are complete.
    std::fs::write(&pcap, &bytes[..bytes.len() - 10]).unwrap();
    let out = dir.path().join("logs");
    let o = nameflow(&["read", "-o", out.to_str().unwrap(), pcap.to_str().unwrap()]);
    assert!(!o.status.success(), "a truncated file must fail");
    let err = stderr(&o);
    assert!(err.contains("cut.pcap"), "error names the file: {err}");
    assert!(err.contains("offset"), "error gives the byte offset: {err}");
    let recs = json_records(&out.join("conn.log"));
    assert_eq!(
        recs.len(),
        5,
        "every connection before the damage is logged: {err}"
    );
    let pkts: u64 = recs
        .iter()
        .map(|r| r["orig_pkts"].as_u64().unwrap() + r["resp_pkts"].as_u64().unwrap())
        .sum();
    assert_eq!(
        pkts,
        frames - 1,
        "every packet but the damaged one is counted"
    );
}

#[test]
fn unknown_link_type_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("odd.pcap");
    let mut b = nameflow::synth::PcapBuilder::new(
        nameflow::decode::LinkType(147),
        TsResolution::Micro,
        false,
    );
    b.packet(T0, &[0u8; 60], 60);
    std::fs::write(&pcap, b.into_bytes()).unwrap();
    let o = nameflow(&[
        "read",
        "-o",
        dir.path().to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("link type 147"), "{err}");
}

#[test]
fn not_a_capture_and_missing_file_give_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("notes.txt");
    std::fs::write(&junk, b"hello, this is not a capture file at all").unwrap();
    let o = nameflow(&[
        "read",
        "-o",
        dir.path().to_str().unwrap(),
        junk.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("notes.txt") && err.contains("not a pcap"),
        "{err}"
    );

    let o = nameflow(&[
        "read",
        "-o",
        dir.path().to_str().unwrap(),
        "/nonexistent/x.pcap",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/nonexistent/x.pcap"), "{}", stderr(&o));
}

#[test]
fn bad_flags_are_rejected_with_the_flag_named() {
    let o = nameflow(&["read", "--workers", "0", "x.pcap"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--workers"), "{}", stderr(&o));
    let o = nameflow(&["read", "--local-nets", "10.0.0.0/99", "x.pcap"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("10.0.0.0/99"), "{}", stderr(&o));
    let o = nameflow(&["read", "--format", "xml", "x.pcap"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("xml"), "{}", stderr(&o));
}

#[test]
fn stdin_gzip_and_tsv_to_stdout() {
    let bytes = nameflow::synth::gzip(&sessions(2).pcap_bytes(TsResolution::Nano));
    let mut child = Command::new(env!("CARGO_BIN_EXE_nameflow"))
        .args(["read", "--format", "tsv", "-o", "-", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("failed to start nameflow");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&bytes).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.starts_with("#separator \\x09\n"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("#close\t")), "{text}");
    let rows: Vec<_> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(rows.len(), 2, "{text}");
}

#[test]
fn several_files_are_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    // One connection split across two files: handshake and data in the first, the rest in
    // the second. It must come out as one connection, not two.
    let t = sessions(1);
    let frames = t.frames();
    let half = frames.len() / 2;
    let mut a = Trace::new();
    let mut b = Trace::new();
    for f in &frames[..half] {
        a.push_frame(f.ts_ns, f.data.clone());
    }
    for f in &frames[half..] {
        b.push_frame(f.ts_ns, f.data.clone());
    }
    let (pa, pb) = (dir.path().join("a.pcap"), dir.path().join("b.pcapng"));
    a.write_pcap(&pa, TsResolution::Micro).unwrap();
    b.write_pcapng(&pb).unwrap();
    let out = dir.path().join("logs");
    let o = nameflow(&[
        "read",
        "-o",
        out.to_str().unwrap(),
        pa.to_str().unwrap(),
        pb.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let recs = json_records(&out.join("conn.log"));
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["conn_state"], "SF");
}

#[test]
fn conn_key_vlan_splits_one_five_tuple_by_vlan_and_adds_the_columns() {
    let dir = tempfile::tempdir().unwrap();
    // The same connection three times at once: untagged, on VLAN 10 inside 20 (QinQ), and on
    // VLAN 42, as in Zeek's own test of its VLAN connection key.
    let one = sessions(1);
    let mut t = Trace::new();
    for (i, tags) in [&[][..], &[10, 20], &[42]].iter().enumerate() {
        for f in one.frames() {
            t.push_frame(
                f.ts_ns + i as u64 * 1_000_000,
                nameflow::synth::vlan_tagged(&f.data, tags),
            );
        }
    }
    t.sort_by_time();
    let pcap = dir.path().join("vlans.pcap");
    t.write_pcap(&pcap, TsResolution::Micro).unwrap();
    let run = |key: &str, workers: &str, format: &str| -> String {
        let out = dir.path().join(format!("{key}-{workers}-{format}"));
        let o = nameflow(&[
            "read",
            "--conn-key",
            key,
            "-w",
            workers,
            "--format",
            format,
            "-o",
            out.to_str().unwrap(),
            pcap.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "read failed: {}", stderr(&o));
        std::fs::read_to_string(out.join("conn.log")).unwrap()
    };

    // The default key merges them and has no VLAN columns.
    let text = run("default", "1", "tsv");
    assert!(!text.contains("id.ctx"), "{text}");
    assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 1);

    let text = run("vlan", "1", "tsv");
    let fields = text.lines().find(|l| l.starts_with("#fields\t")).unwrap();
    assert!(
        fields.contains("\tid.resp_p\tid.ctx.vlan\tid.ctx.inner_vlan\tproto\t"),
        "{fields}"
    );
    let types = text.lines().find(|l| l.starts_with("#types\t")).unwrap();
    assert!(
        types.contains("\tport\taddr\tport\tint\tint\tenum\t"),
        "{types}"
    );
    let mut ids: Vec<(String, String)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (c[6].to_owned(), c[7].to_owned())
        })
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [("-", "-"), ("10", "20"), ("42", "-")].map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    // Two workers spread the three connections differently and log the same records.
    let rows = |s: &str| {
        let mut v: Vec<String> = s
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    assert_eq!(rows(&text), rows(&run("vlan", "2", "tsv")));

    // JSON leaves the unset ids out, as Zeek does.
    let out = run("vlan", "1", "json");
    let recs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 3);
    for r in &recs {
        assert_eq!(r["conn_state"], "SF", "{r}");
        match r["id.ctx.vlan"].as_u64() {
            None => assert!(r.get("id.ctx.inner_vlan").is_none(), "{r}"),
            Some(10) => assert_eq!(r["id.ctx.inner_vlan"], 20, "{r}"),
            Some(42) => assert!(r.get("id.ctx.inner_vlan").is_none(), "{r}"),
            Some(v) => panic!("unexpected VLAN {v}: {r}"),
        }
    }
}

#[test]
fn a_bad_conn_key_names_the_flag_and_the_choices() {
    let o = nameflow(&["read", "--conn-key", "vxlan", "x.pcap"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("--conn-key") && err.contains("vxlan") && err.contains("default, vlan"),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
}

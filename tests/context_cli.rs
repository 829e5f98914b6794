//! End-to-end: `nameflow read --context ...` over synthetic traces. Pods that use one address
//! one after the other, a directory of successive snapshots, inventories reloaded while a
//! run reads its capture from a pipe (a good reload is used by later flows; a malformed one
//! is reported and the last good inventory stays), and the columns in TSV and JSON. Watch
//! events from `--context-command` (a script replaying `tests/context/watch.json`) and from a
//! FIFO, and a command that cannot run.

use nameflow::synth::{Trace, TsResolution};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// 2024-05-01T09:00:00Z.
const T9: u64 = 1_714_554_000_000_000_000;
const S: u64 = 1_000_000_000;

fn nameflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nameflow"))
        .args(args)
        .output()
        .expect("failed to run the nameflow binary")
}

fn addr(last: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 100, last)), port)
}

fn server(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)), port)
}

/// One UDP exchange from `client` at `ts_ns` (a request and its answer).
fn exchange(t: &mut Trace, ts_ns: u64, client: SocketAddr, to: SocketAddr) {
    t.udp(ts_ns, client, to, b"ping");
    t.udp(ts_ns + 1_000_000, to, client, b"pong");
}

/// A kubectl pod list; each pod is (name, address, startTime, end) where end is a finished
/// job's finish time or "" for a running pod.
fn pods(list: &[(&str, &str, &str, &str)]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|(name, ip, start, end)| {
            let (phase, statuses) = if end.is_empty() {
                ("Running", String::new())
            } else {
                (
                    "Succeeded",
                    format!(
                        r#","containerStatuses":[{{"name":"main","state":{{"terminated":{{"exitCode":0,"finishedAt":"{end}","reason":"Completed"}}}}}}]"#
                    ),
                )
            };
            format!(
                r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"shop","uid":"uid-{name}","labels":{{"app":"{name}"}}}},"spec":{{"nodeName":"worker-a"}},"status":{{"phase":"{phase}","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"startTime":"{start}"{statuses}}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"apiVersion":"v1","items":[{}],"kind":"List","metadata":{{"resourceVersion":""}}}}"#,
        items.join(",\n")
    )
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// The record whose originator port is `port`.
fn by_port(recs: &[serde_json::Value], port: u16) -> &serde_json::Value {
    recs.iter()
        .find(|r| r["id.orig_p"] == port)
        .unwrap_or_else(|| panic!("no record from port {port} in {recs:#?}"))
}

fn set_mtime(p: &Path, secs_since_epoch: u64) {
    let f = std::fs::File::options()
        .write(true)
        .open(p)
        .expect("open to set mtime");
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs_since_epoch))
        .expect("set mtime");
}

/// The trace for the two-pods test: flows from 198.18.100.9 while the first pod held it,
/// in the gap, and while the second one holds it.
fn reuse_trace() -> Trace {
    let mut t = Trace::new();
    exchange(&mut t, T9 + 120 * S, addr(9, 5001), server(9000)); // 09:02
    exchange(&mut t, T9 + 600 * S, addr(9, 5002), server(9000)); // 09:10, the gap
    exchange(&mut t, T9 + 2700 * S, addr(9, 5003), server(9000)); // 09:45
    t
}

fn check_reuse(recs: &[serde_json::Value]) {
    assert_eq!(by_port(recs, 5001)["orig_pod"], "report-4kq9z");
    assert_eq!(by_port(recs, 5001)["orig_ctx_app"], "report-4kq9z");
    let gap = by_port(recs, 5002);
    assert!(
        gap.get("orig_pod").is_none() && gap.get("orig_pod_namespace").is_none(),
        "a flow in the gap gets no pod: {gap}"
    );
    assert_eq!(by_port(recs, 5003)["orig_pod"], "ledger-p8m2d");
    assert_eq!(by_port(recs, 5003)["orig_pod_namespace"], "shop");
    assert_eq!(by_port(recs, 5003)["orig_pod_node"], "worker-a");
    for r in recs {
        assert!(r.get("resp_pod").is_none(), "the server is no pod: {r}");
    }
}

#[test]
fn two_pods_one_address_one_snapshot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pcap = dir.path().join("t.pcap");
    reuse_trace()
        .write_pcap(&pcap, TsResolution::Micro)
        .expect("write pcap");
    let inv = dir.path().join("pods.json");
    std::fs::write(
        &inv,
        pods(&[
            (
                "report-4kq9z",
                "198.18.100.9",
                "2024-05-01T09:00:00Z",
                "2024-05-01T09:04:30Z",
            ),
            ("ledger-p8m2d", "198.18.100.9", "2024-05-01T09:30:00Z", ""),
        ]),
    )
    .expect("write inventory");
    let o = nameflow(&[
        "read",
        "-w",
        "2",
        "-o",
        "-",
        "--context",
        inv.to_str().unwrap(),
        "--context-column",
        "app=label:app",
        pcap.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "read failed: {err}");
    assert!(err.contains("context loaded: 2 windows"), "{err}");
    let recs = json_lines(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(recs.len(), 3);
    check_reuse(&recs);
}

#[test]
fn two_pods_one_address_in_successive_snapshots() {
    // No finish time this time: the first pod is simply gone from the 09:20 snapshot, and the
    // second one starts at 09:30.
    let dir = tempfile::tempdir().expect("temp dir");
    let snaps = dir.path().join("k8s");
    std::fs::create_dir(&snaps).expect("mkdir");
    let a = snaps.join("pods-0905.json");
    std::fs::write(
        &a,
        pods(&[("report-4kq9z", "198.18.100.9", "2024-05-01T09:00:00Z", "")]),
    )
    .expect("write");
    set_mtime(&a, T9 / S + 300);
    let b = snaps.join("pods-0920.json");
    std::fs::write(
        &b,
        pods(&[("other", "198.18.100.50", "2024-05-01T09:15:00Z", "")]),
    )
    .expect("write");
    set_mtime(&b, T9 / S + 1200);
    let c = snaps.join("pods-0950.json");
    std::fs::write(
        &c,
        pods(&[("ledger-p8m2d", "198.18.100.9", "2024-05-01T09:30:00Z", "")]),
    )
    .expect("write");
    set_mtime(&c, T9 / S + 3000);
    let pcap = dir.path().join("t.pcap");
    let mut t = reuse_trace();
    // 09:19: after the last snapshot that listed the first pod, before the one without it.
    exchange(&mut t, T9 + 1140 * S, addr(9, 5004), server(9000));
    // 09:25: the first pod is known gone.
    exchange(&mut t, T9 + 1500 * S, addr(9, 5005), server(9000));
    t.sort_by_time();
    t.write_pcap(&pcap, TsResolution::Micro)
        .expect("write pcap");
    let o = nameflow(&[
        "read",
        "-o",
        "-",
        "--context",
        snaps.to_str().unwrap(),
        "--context-column",
        "app=label:app",
        pcap.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "read failed: {err}");
    let recs = json_lines(&String::from_utf8_lossy(&o.stdout));
    // The first pod's window runs until the snapshot that no longer lists it (09:20), so the
    // 09:10 flow is attributed to it, unlike with a finish time.
    assert_eq!(by_port(&recs, 5001)["orig_pod"], "report-4kq9z");
    assert_eq!(by_port(&recs, 5002)["orig_pod"], "report-4kq9z");
    assert_eq!(by_port(&recs, 5004)["orig_pod"], "report-4kq9z");
    assert!(
        by_port(&recs, 5005).get("orig_pod").is_none(),
        "gone by 09:20"
    );
    assert_eq!(by_port(&recs, 5003)["orig_pod"], "ledger-p8m2d");
}

#[test]
fn tsv_has_the_context_columns_after_ours_and_dashes_when_unknown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pcap = dir.path().join("t.pcap");
    reuse_trace()
        .write_pcap(&pcap, TsResolution::Micro)
        .expect("write pcap");
    let table = dir.path().join("t.jsonl");
    std::fs::write(
        &table,
        "{\"ip\":\"198.18.0.2\",\"svc\":\"shop/echo\",\"team\":\"payments\"}\n",
    )
    .expect("write");
    let o = nameflow(&[
        "read",
        "--format",
        "tsv",
        "-o",
        "-",
        "--context",
        table.to_str().unwrap(),
        "--context-column",
        "team=team",
        "--context-prefix",
        "x_",
        pcap.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let fields: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("#fields\t"))
        .expect("a #fields line")
        .split('\t')
        .collect();
    let at = fields
        .iter()
        .position(|f| *f == "orig_pod")
        .expect("orig_pod column");
    assert!(
        fields[..at].contains(&"community_id") && fields[..at].contains(&"resp_name_src"),
        "context columns come after community_id and the names: {fields:?}"
    );
    assert_eq!(
        &fields[at..],
        [
            "orig_pod",
            "orig_pod_namespace",
            "orig_pod_node",
            "orig_svc",
            "orig_instance",
            "orig_instance_name",
            "orig_vpc",
            "resp_pod",
            "resp_pod_namespace",
            "resp_pod_node",
            "resp_svc",
            "resp_instance",
            "resp_instance_name",
            "resp_vpc",
            "orig_x_team",
            "resp_x_team"
        ]
    );
    let row: Vec<&str> = text
        .lines()
        .find(|l| !l.starts_with('#'))
        .expect("a record")
        .split('\t')
        .collect();
    assert_eq!(row.len(), fields.len());
    let col = |name: &str| row[fields.iter().position(|f| *f == name).unwrap()];
    assert_eq!(col("orig_pod"), "-");
    assert_eq!(col("resp_svc"), "shop/echo");
    assert_eq!(col("resp_x_team"), "payments");
    assert_eq!(col("orig_x_team"), "-");
}

#[test]
fn without_inventories_conn_log_has_no_context_columns() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pcap = dir.path().join("t.pcap");
    reuse_trace()
        .write_pcap(&pcap, TsResolution::Micro)
        .expect("write pcap");
    let o = nameflow(&["read", "--format", "tsv", "-o", "-", pcap.to_str().unwrap()]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.contains("orig_pod"), "{text}");
}

#[test]
fn bad_inventories_and_settings_stop_the_run_with_the_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pcap = dir.path().join("t.pcap");
    reuse_trace()
        .write_pcap(&pcap, TsResolution::Micro)
        .expect("write pcap");
    let p = pcap.to_str().unwrap();
    let missing = dir.path().join("nope.json");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"items\": [ {\"kind\": \"Pod\"}, ]}").expect("write");
    let cases: [(Vec<&str>, &str); 4] = [
        (vec!["--context", missing.to_str().unwrap()], "nope.json"),
        (vec!["--context", bad.to_str().unwrap()], "bad.json:1:"),
        (
            vec!["--context-column", "app=label:app"],
            "--context-column",
        ),
        (
            vec![
                "--context",
                pcap.to_str().unwrap(),
                "--context-column",
                "a b=x",
            ],
            "\"a b\"",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["read", "-o", "-"];
        all.extend(args.iter().copied());
        all.push(p);
        let o = nameflow(&all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} must fail");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// Waits until `rx` yields a line containing `want`, or panics after `timeout`.
fn wait_line(rx: &mpsc::Receiver<String>, want: &str, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(want) => return l,
            Ok(_) => {}
            Err(_) => panic!("timed out waiting for {what} ({want:?})"),
        }
    }
}

/// Writes `text` to `path` the way a CronJob should: to a dot file, then renamed over it.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[test]
fn reload_during_a_run_is_used_by_later_flows_and_a_bad_one_keeps_the_last_good() {
    let dir = tempfile::tempdir().expect("temp dir");
    let inv = dir.path().join("pods.json");
    let pod = |name: &str| pods(&[(name, "198.18.100.9", "2024-05-01T08:00:00Z", "")]);
    std::fs::write(&inv, pod("first")).expect("write");

    // Three phases, each a flow from the pod's address followed by an unrelated packet 100 s
    // later, which moves packet time past the flow's inactivity timeout so it is logged.
    let mut t = Trace::new();
    for (i, port) in [5001u16, 5002, 5003].into_iter().enumerate() {
        let at = T9 + i as u64 * 1000 * S;
        exchange(&mut t, at, addr(9, port), server(9000));
        t.udp(
            at + 100 * S,
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), 6000 + i as u16),
            server(9001),
            b"tick",
        );
    }
    let bytes = t.pcap_bytes(TsResolution::Micro);
    // Where each phase ends in the file: the 24-byte header, then a 16-byte header per frame.
    let mut ends = Vec::new();
    let mut off = 24;
    for (k, f) in t.frames().iter().enumerate() {
        off += 16 + f.data.len();
        if k % 3 == 2 {
            ends.push(off);
        }
    }
    assert_eq!(ends.len(), 3);

    let mut child = Command::new(env!("CARGO_BIN_EXE_nameflow"))
        .args([
            "read",
            "-w",
            "1",
            "--no-names",
            "-o",
            "-",
            "--context",
            inv.to_str().unwrap(),
            "--context-poll",
            "50ms",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nameflow");
    let (out_tx, out_rx) = mpsc::channel();
    let (err_tx, err_rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = out_tx.send(l);
        }
    });
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[nameflow] {l}");
            let _ = err_tx.send(l);
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    let record = |port: u16| -> serde_json::Value {
        let l = wait_line(&out_rx, &format!("\"id.orig_p\":{port},"), "the record");
        serde_json::from_str(&l).expect("JSON record")
    };
    wait_line(&err_rx, "context loaded", "the first load");

    stdin.write_all(&bytes[..ends[0]]).expect("feed phase 1");
    stdin.flush().unwrap();
    assert_eq!(record(5001)["orig_pod"], "first");

    replace(&inv, &pod("second"));
    wait_line(&err_rx, "context reloaded", "the reload");
    stdin
        .write_all(&bytes[ends[0]..ends[1]])
        .expect("feed phase 2");
    stdin.flush().unwrap();
    assert_eq!(
        record(5002)["orig_pod"],
        "second",
        "a later flow, the new inventory"
    );

    replace(
        &inv,
        "{\"apiVersion\": \"v1\", \"items\": [\n  {\"kind\": \"Pod\",,}\n]}\n",
    );
    let e = wait_line(&err_rx, "context error", "the malformed reload's report");
    assert!(e.contains("pods.json:2:"), "names the file and line: {e}");
    stdin.write_all(&bytes[ends[1]..]).expect("feed phase 3");
    drop(stdin);
    assert_eq!(
        record(5003)["orig_pod"],
        "second",
        "a malformed reload keeps the last good inventory"
    );
    let status = child.wait().expect("wait");
    assert!(status.success());
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/context")
        .join(name)
}

/// 2024-05-01T10:00:00Z.
const T10: u64 = T9 + 3600 * S;

/// Flows from the pods of `tests/context/watch.json`: the first checkout pod at 10:15, the
/// 20-second job pod at 10:20:10, the second checkout pod at 10:30:45.
fn watch_trace() -> Trace {
    let mut t = Trace::new();
    exchange(&mut t, T10 + 900 * S, addr(7, 5001), server(9000));
    exchange(&mut t, T10 + 1210 * S, addr(21, 5002), server(9000));
    exchange(&mut t, T10 + 1845 * S, addr(7, 5003), server(9000));
    t
}

fn check_watch(recs: &[serde_json::Value]) {
    assert_eq!(recs.len(), 3, "{recs:#?}");
    assert_eq!(by_port(recs, 5001)["orig_pod"], "checkout-7d4b9c6f5-x2x1z");
    assert_eq!(by_port(recs, 5002)["orig_pod"], "report-28573940-9zz1c");
    assert_eq!(by_port(recs, 5002)["orig_pod_namespace"], "batch");
    assert_eq!(by_port(recs, 5003)["orig_pod"], "checkout-7d4b9c6f5-q8w3e");
    assert_eq!(by_port(recs, 5003)["orig_pod_node"], "worker-a");
}

#[test]
fn a_watch_command_and_a_watch_file_feed_the_inventory_of_a_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pcap = dir.path().join("t.pcap");
    watch_trace()
        .write_pcap(&pcap, TsResolution::Micro)
        .expect("write pcap");
    let cmd = format!("cat '{}'; exit 0", fixture("watch.json").display());
    let o = nameflow(&[
        "read",
        "-w",
        "2",
        "-o",
        "-",
        "--context-command",
        &cmd,
        pcap.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "read failed: {err}");
    assert!(err.contains("listed"), "{err}");
    assert!(!err.contains("context error"), "{err}");
    check_watch(&json_lines(&String::from_utf8_lossy(&o.stdout)));
    // The same events as a file: an offline history, times from the objects.
    let o = nameflow(&[
        "read",
        "-w",
        "2",
        "-o",
        "-",
        "--context",
        fixture("watch.json").to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "read failed: {err}");
    assert!(!err.contains("context error"), "{err}");
    check_watch(&json_lines(&String::from_utf8_lossy(&o.stdout)));
}

#[test]
fn a_watch_fifo_is_read_as_it_is_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pcap = dir.path().join("t.pcap");
    watch_trace()
        .write_pcap(&pcap, TsResolution::Micro)
        .expect("write pcap");
    let fifo = dir.path().join("k8s.fifo");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("failed to run mkfifo");
    assert!(made.success());
    // kubectl's side: writes the stream into the FIFO, then closes it.
    let (f, text) = (fifo.clone(), std::fs::read(fixture("watch.json")).unwrap());
    let writer = std::thread::spawn(move || {
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .open(&f)
            .expect("open the FIFO for writing");
        w.write_all(&text).expect("write the FIFO");
    });
    let o = nameflow(&[
        "read",
        "-w",
        "1",
        "-o",
        "-",
        "--context",
        fifo.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    writer.join().expect("writer");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "read failed: {err}");
    assert!(err.contains("FIFO") && err.contains("listed"), "{err}");
    check_watch(&json_lines(&String::from_utf8_lossy(&o.stdout)));
}

#[test]
fn a_watch_command_that_cannot_run_is_said_once_and_the_read_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nameflow"))
        .args([
            "read",
            "-w",
            "1",
            "-o",
            "-",
            "--context-command",
            "exit 3",
            "-",
        ])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nameflow");
    // Long enough for the command to fail three times (at 0 s, 1 s and 3 s).
    std::thread::sleep(Duration::from_millis(3500));
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(&watch_trace().pcap_bytes(TsResolution::Micro))
        .expect("feed the capture");
    drop(stdin);
    let o = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "a failing command is no reason to stop: {err}"
    );
    let said: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("context error"))
        .collect();
    assert_eq!(said.len(), 1, "said once: {err}");
    assert!(
        said[0].contains("command `exit 3`") && said[0].contains("exit status: 3"),
        "{}",
        said[0]
    );
    let recs = json_lines(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(recs.len(), 3, "the capture is read all the same");
    assert!(recs.iter().all(|r| r.get("orig_pod").is_none()));
}

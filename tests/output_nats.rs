//! The NATS JetStream sink against a real `nats-server -js` that each test starts on a free
//! loopback port with its own store directory (killed on drop, even when the test fails):
//! every record of a `nameflow read` is in the stream exactly once with its subject, `_path`,
//! `_system_name` and message id; a server killed and restarted mid-run loses and duplicates
//! nothing; a dead server is counted; an existing stream is used as it is; bad URLs, bad
//! credentials and unreadable creds files are one clear error. Messages are read back with
//! `async-nats` itself.
//!
//! Skips, saying why, when `nats-server` is not installed (Debian: `apt-get install
//! nats-server`); fails instead when `CI` is set.

use async_nats::jetstream;
use nameflow::synth::{DnsData, DnsRecord, DnsSpec, TcpClose, TcpSpec, Trace, TsResolution};
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const T0: u64 = 1_700_000_000_000_000_000;
const BIN: &str = env!("CARGO_BIN_EXE_nameflow");

/// Why these tests cannot run here; panics instead under CI.
fn skip() -> bool {
    let found = Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return false;
    }
    let reason = "nats-server is not installed (apt-get install nats-server)";
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but {reason}");
    }
    eprintln!("skipping: {reason}");
    true
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `nats-server -js` on 127.0.0.1 with its own store; killed (and waited for) on drop.
struct Server {
    port: u16,
    store: PathBuf,
    extra: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Server {
    fn start(dir: &Path, extra: &[&str]) -> Server {
        Server::start_on(dir, free_port(), extra)
    }

    /// On a given port, store and log in `dir`.
    fn start_on(dir: &Path, port: u16, extra: &[&str]) -> Server {
        std::fs::create_dir_all(dir).unwrap();
        let mut s = Server {
            port,
            store: dir.join("js"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            log: dir.join("nats-server.log"),
            child: None,
        };
        s.up();
        s
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the process (same port, same store) and waits until it accepts connections.
    fn up(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("failed to run nats-server");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < until,
                "nats-server did not listen on {}: {}",
                self.port,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no clean shutdown, the store is what was synced.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One stored message.
#[derive(Debug)]
struct Stored {
    subject: String,
    id: String,
    raw: String,
    record: serde_json::Value,
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A test client; `user:pass@` in the URL is used as the credentials.
async fn connect(url: &str) -> async_nats::Client {
    let mut opts = async_nats::ConnectOptions::new();
    let after = url.split_once("://").map_or(url, |(_, a)| a);
    let mut addr = url.to_owned();
    if let Some((auth, host)) = after.rsplit_once('@') {
        let (u, p) = auth.split_once(':').unwrap();
        opts = opts.user_and_password(u.into(), p.into());
        addr = format!("nats://{host}");
    }
    opts.connect(addr).await.expect("test client connects")
}

/// Every message of `stream`, in stream order.
fn read_stream(url: &str, stream: &str) -> Vec<Stored> {
    rt().block_on(async {
        let client = connect(url).await;
        let js = jetstream::new(client);
        let mut s = js.get_stream(stream).await.expect("the stream exists");
        let state = s.info().await.unwrap().state.clone();
        let mut out = Vec::new();
        for seq in state.first_sequence..=state.last_sequence {
            if state.messages == 0 {
                break;
            }
            let Ok(m) = s.get_raw_message(seq).await else {
                continue;
            };
            let id = m
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            let record = serde_json::from_slice(&m.payload)
                .unwrap_or_else(|e| panic!("message {seq} is not one JSON record: {e}"));
            out.push(Stored {
                subject: m.subject.to_string(),
                id,
                raw: String::from_utf8_lossy(&m.payload).into_owned(),
                record,
            });
        }
        out
    })
}

/// TCP sessions and DNS exchanges: `n` of each, 50 ms of packet time apart.
fn trace(n: usize) -> Trace {
    let mut t = Trace::new();
    for i in 0..n {
        let start = T0 + i as u64 * 50_000_000;
        let spec = TcpSpec {
            client: SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(198, 18, (i / 250) as u8, 1 + (i % 250) as u8)),
                10000 + (i % 5000) as u16,
            ),
            server: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 19, 1, 2)), 443),
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
            DnsData::A([198, 18, 200, (i % 250) as u8].into()),
        ));
        dns.client.set_port(30000 + (i % 30000) as u16);
        t.dns_exchange(&dns, start + 1_000_000);
    }
    t.sort_by_time();
    t
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("failed to run the nameflow binary")
}

fn file_records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The stream's records without the two keys the sink adds, as comparable strings.
fn without_meta(m: &Stored) -> String {
    let mut v = m.record.clone();
    let o = v.as_object_mut().unwrap();
    o.remove("_path");
    o.remove("_system_name");
    v.to_string()
}

fn multiset<T: Ord>(v: impl IntoIterator<Item = T>) -> BTreeMap<T, usize> {
    let mut m = BTreeMap::new();
    for x in v {
        *m.entry(x).or_insert(0) += 1;
    }
    m
}

#[test]
fn every_record_is_in_the_stream_once_with_subject_path_sensor_and_id() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let pcap = dir.path().join("t.pcap");
    trace(300).write_pcap(&pcap, TsResolution::Micro).unwrap();
    let logs = dir.path().join("logs");
    let o = run(&[
        "read",
        "-o",
        logs.to_str().unwrap(),
        "-o",
        &server.url(),
        "--sensor",
        "edge-1.example",
        "--logs",
        "conn,dns,namecache",
        pcap.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        !stderr.contains("dropped") || stderr.contains(" 0 dropped"),
        "{stderr}"
    );

    let conn = file_records(&logs.join("conn.log"));
    let dns = file_records(&logs.join("dns.log"));
    let namecache = file_records(&logs.join("namecache.log"));
    assert_eq!(conn.len(), 600, "300 TCP sessions and 300 DNS exchanges");
    assert_eq!(dns.len(), 300);
    assert!(!namecache.is_empty(), "namecache.log has its rows at exit");
    let stored = read_stream(&server.url(), "NAMEFLOW_LOGS");
    assert_eq!(
        stored.len(),
        conn.len() + dns.len() + namecache.len(),
        "one message per record"
    );

    let ids: HashSet<&str> = stored.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len(), stored.len(), "every message id is unique");
    for m in &stored {
        let path = m.record["_path"].as_str().expect("_path");
        assert_eq!(m.subject, format!("nameflow.logs.{path}"));
        assert_eq!(m.record["_system_name"], "edge-1.example");
        if path == "namecache" {
            // No uid: the record's ts, numbered where several rows share one.
            let ts = m.record["ts"].to_string();
            assert!(
                m.id.starts_with(&format!("edge-1.example:namecache:{ts}")),
                "{} vs {ts}",
                m.id
            );
            continue;
        }
        let uid = m.record["uid"].as_str().expect("uid");
        assert_eq!(m.id, format!("edge-1.example:{path}:{uid}"));
        // json-streaming-logs' order: _path, then _system_name, then the record.
        let head = format!(r#"{{"_path":"{path}","_system_name":"edge-1.example","ts":"#);
        assert!(m.raw.starts_with(&head), "{}", m.raw);
        assert!(!m.raw.ends_with('\n'), "one record, no newline");
    }
    for (log, recs) in [("conn", &conn), ("dns", &dns), ("namecache", &namecache)] {
        let got = multiset(
            stored
                .iter()
                .filter(|m| m.record["_path"] == log)
                .map(without_meta),
        );
        let want = multiset(recs.iter().map(|v| v.to_string()));
        assert!(
            got == want,
            "{log}: the stream holds exactly the file's records"
        );
    }
    // The stream was created as documented.
    let cfg = rt().block_on(async {
        let js = jetstream::new(connect(&server.url()).await);
        let mut s = js.get_stream("NAMEFLOW_LOGS").await.unwrap();
        s.info().await.unwrap().config.clone()
    });
    assert_eq!(cfg.subjects, ["nameflow.logs.>"]);
    assert_eq!(cfg.max_age, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(cfg.duplicate_window, Duration::from_secs(120));
}

/// Splits a pcap file into its global header and its records.
fn pcap_records(bytes: &[u8]) -> (&[u8], Vec<&[u8]>) {
    let (head, mut rest) = bytes.split_at(24);
    let mut recs = Vec::new();
    while rest.len() >= 16 {
        let incl = u32::from_le_bytes(rest[8..12].try_into().unwrap()) as usize;
        let (r, tail) = rest.split_at(16 + incl);
        recs.push(r);
        rest = tail;
    }
    (head, recs)
}

/// Feeds 1500 TCP sessions and 1500 DNS exchanges to `nameflow read -` over about 8 s; the
/// server is killed after 1.5 s and started again (same store) 6 s later, longer than the
/// sink's 5 s ack timeout, so publishes of the outage time out and are sent again (the
/// client also delivers its own queued copies): JetStream's duplicate window must remove
/// every second copy. Returns the file's conn.log uids, the stored messages, and stderr.
fn read_through_a_restart(dir: &Path, extra: &[&str]) -> (Vec<String>, Vec<Stored>, String) {
    let mut server = Server::start(dir, &[]);
    let bytes = trace(1500).pcap_bytes(TsResolution::Micro);
    let (head, recs) = pcap_records(&bytes);
    let logs = dir.join("logs");
    let url = server.url();
    let mut args = vec![
        "read",
        "-o",
        logs.to_str().unwrap(),
        "-o",
        &url,
        "--sensor",
        "s1",
        "--flush-timeout",
        "40s",
    ];
    args.extend_from_slice(extra);
    args.push("-");
    let mut child = Command::new(BIN)
        .args(&args)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(head).unwrap();
    let per = recs.len() / 80;
    for (i, part) in recs.chunks(per.max(1)).enumerate() {
        for r in part {
            stdin.write_all(r).unwrap();
        }
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        if i == 15 {
            server.kill();
        }
        if i == 75 {
            server.up();
        }
    }
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("disconnected"),
        "the outage is reported: {stderr}"
    );
    let conn: Vec<String> = file_records(&logs.join("conn.log"))
        .iter()
        .map(|v| v["uid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(conn.len(), 3000);
    let stored = read_stream(&server.url(), "NAMEFLOW_LOGS");
    (conn, stored, stderr)
}

/// Stored uids, failing on any duplicate.
fn unique_uids(stored: &[Stored]) -> HashSet<String> {
    let uids = multiset(
        stored
            .iter()
            .map(|m| m.record["uid"].as_str().unwrap().to_owned()),
    );
    let dups: Vec<_> = uids.iter().filter(|(_, &n)| n > 1).collect();
    assert!(dups.is_empty(), "duplicates in the stream: {dups:?}");
    uids.into_keys().collect()
}

#[test]
fn server_killed_and_restarted_mid_run_loses_and_duplicates_nothing() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (conn, stored, stderr) = read_through_a_restart(dir.path(), &[]);
    assert!(
        stderr.contains("sent again"),
        "the outage outlasted the ack timeout, so records were sent again: {stderr}"
    );
    let got = unique_uids(&stored);
    let want: HashSet<String> = conn.into_iter().collect();
    let lost = want.difference(&got).count();
    assert_eq!(lost, 0, "records lost across the restart; {stderr}");
    assert_eq!(got.len(), want.len());
}

#[test]
fn past_the_buffer_drops_are_counted_and_nothing_else_is_lost() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (conn, stored, stderr) = read_through_a_restart(dir.path(), &["--stream-buffer", "64KiB"]);
    let got = unique_uids(&stored);
    let want: HashSet<String> = conn.into_iter().collect();
    assert!(got.is_subset(&want), "only the run's records are stored");
    // `output nats://…: W records written, D dropped, U undelivered`
    let line = stderr
        .lines()
        .find(|l| l.contains("records written,") && l.contains("nats://"))
        .unwrap_or_else(|| panic!("64 KiB cannot hold a 6 s outage: {stderr}"));
    let num = |word: &str| -> usize {
        let before = line.split(word).next().unwrap();
        before.split_whitespace().last().unwrap().parse().unwrap()
    };
    let (written, dropped, undelivered) = (
        num(" records written"),
        num(" dropped"),
        num(" undelivered"),
    );
    assert_eq!(undelivered, 0, "{line}");
    assert!(dropped > 0, "{line}");
    assert_eq!(written, got.len(), "written = stored: {line}");
    assert_eq!(
        written + dropped,
        want.len(),
        "every record is stored or counted as dropped: {line}"
    );
}

/// A server's `/connz` monitoring page (plain HTTP on loopback).
fn connz(port: u16) -> String {
    use std::io::Read;
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.write_all(b"GET /connz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// A 3-node JetStream cluster on loopback with an R3 stream: the node nameflow is connected to
/// is killed mid-run (and left down); the client moves to another node and every record is in
/// the stream once.
#[test]
fn a_cluster_node_lost_mid_run_loses_nothing() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let monitor_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let routes = route_ports
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes: Vec<Server> = (0..3)
        .map(|i| {
            let name = format!("n{i}");
            let cluster = format!("nats://127.0.0.1:{}", route_ports[i]);
            let monitor = monitor_ports[i].to_string();
            Server::start_on(
                &dir.path().join(&name),
                client_ports[i],
                &[
                    "-n",
                    &name,
                    "--cluster_name",
                    "nameflow-test",
                    "--cluster",
                    &cluster,
                    "--routes",
                    &routes,
                    "-m",
                    &monitor,
                ],
            )
        })
        .collect();
    let urls: Vec<String> = nodes.iter().map(Server::url).collect();
    // The R3 stream, created once the cluster has elected its meta leader.
    rt().block_on(async {
        let js = jetstream::new(connect(&urls[1]).await);
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let made = js
                .create_stream(jetstream::stream::Config {
                    name: "NAMEFLOW_LOGS".into(),
                    subjects: vec!["nameflow.logs.>".into()],
                    num_replicas: 3,
                    duplicate_window: Duration::from_secs(120),
                    ..Default::default()
                })
                .await;
            match made {
                Ok(_) => break,
                Err(e) => {
                    assert!(Instant::now() < until, "no R3 stream: {e}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    });
    let bytes = trace(1500).pcap_bytes(TsResolution::Micro);
    let (head, recs) = pcap_records(&bytes);
    let logs = dir.path().join("logs");
    let all = format!(
        "nats://127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}",
        client_ports[0], client_ports[1], client_ports[2]
    );
    let mut child = Command::new(BIN)
        .args(["read", "-o", logs.to_str().unwrap(), "-o", &all])
        .args(["--flush-timeout", "40s", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(head).unwrap();
    let per = recs.len() / 40;
    let mut victim = None;
    for (i, part) in recs.chunks(per.max(1)).enumerate() {
        for r in part {
            stdin.write_all(r).unwrap();
        }
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        if i == 15 {
            // The node nameflow is connected to (its monitoring page lists the client).
            let v = (0..3)
                .find(|&n| connz(monitor_ports[n]).contains("nameflow "))
                .expect("nameflow is connected to one node");
            nodes[v].kill();
            victim = Some(v);
        }
    }
    let survivor = (0..3).find(|&n| Some(n) != victim).unwrap();
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("disconnected"), "{stderr}");
    assert!(!stderr.contains("dropped"), "{stderr}");
    let want: HashSet<String> = file_records(&logs.join("conn.log"))
        .iter()
        .map(|v| v["uid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(want.len(), 3000);
    let stored = read_stream(&urls[survivor], "NAMEFLOW_LOGS");
    let got = unique_uids(&stored);
    assert_eq!(
        want.difference(&got).count(),
        0,
        "records lost with a node: {stderr}"
    );
    assert_eq!(got.len(), want.len());
}

#[test]
fn a_dead_server_is_counted_within_the_buffer_bound_and_the_run_ends() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("t.pcap");
    trace(2000).write_pcap(&pcap, TsResolution::Micro).unwrap();
    let url = format!("nats://127.0.0.1:{}", free_port());
    let t = Instant::now();
    let o = run(&[
        "read",
        "-o",
        dir.path().join("logs").to_str().unwrap(),
        "-o",
        &url,
        "--stream-buffer",
        "64KiB",
        "--flush-timeout",
        "500ms",
        pcap.to_str().unwrap(),
    ]);
    let took = t.elapsed();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("cannot reach the server").count(),
        1,
        "said once: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "output {url}: 0 records written, 4000 dropped, 0 undelivered"
        )),
        "every record is accounted as dropped: {stderr}"
    );
    assert!(took < Duration::from_secs(20), "the run took {took:?}");

    // --nats-required: one clear error, nothing runs.
    let o = run(&[
        "read",
        "-o",
        &url,
        "--nats-required",
        pcap.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains(&url) && stderr.contains("--nats-required"),
        "{stderr}"
    );
}

#[test]
fn an_existing_stream_is_used_as_it_is() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    rt().block_on(async {
        let js = jetstream::new(connect(&server.url()).await);
        js.create_stream(jetstream::stream::Config {
            name: "MINE".into(),
            subjects: vec!["site.>".into()],
            max_age: Duration::from_secs(3600),
            max_messages: 100_000,
            ..Default::default()
        })
        .await
        .unwrap();
    });
    let pcap = dir.path().join("t.pcap");
    trace(50).write_pcap(&pcap, TsResolution::Micro).unwrap();
    let o = run(&[
        "read",
        "-o",
        &server.url(),
        "--nats-stream",
        "MINE",
        "--nats-subject",
        "site.{sensor}.{path}",
        "--sensor",
        "a.b",
        pcap.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stored = read_stream(&server.url(), "MINE");
    assert_eq!(stored.len(), 100);
    assert!(stored.iter().all(|m| m.subject == "site.a_b.conn"));
    let (cfg, names) = rt().block_on(async {
        let js = jetstream::new(connect(&server.url()).await);
        let mut s = js.get_stream("MINE").await.unwrap();
        let cfg = s.info().await.unwrap().config.clone();
        let missing = js.get_stream("NAMEFLOW_LOGS").await.is_err();
        (cfg, missing)
    });
    assert_eq!(cfg.subjects, ["site.>"], "the stream was left as it was");
    assert_eq!(cfg.max_age, Duration::from_secs(3600));
    assert_eq!(cfg.max_messages, 100_000);
    assert!(names, "no other stream was created");
}

#[test]
fn credentials_in_the_url_and_bad_ones_are_one_clear_error() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--user", "nf", "--pass", "s3cret"]);
    let pcap = dir.path().join("t.pcap");
    trace(20).write_pcap(&pcap, TsResolution::Micro).unwrap();
    let good = format!("nats://nf:s3cret@127.0.0.1:{}", server.port);
    let o = run(&["read", "-o", &good, pcap.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(!stderr.contains("s3cret"), "the password is never printed");
    let stored = read_stream(&good, "NAMEFLOW_LOGS");
    assert_eq!(stored.len(), 40);

    let bad = format!("nats://nf:wrong@127.0.0.1:{}", server.port);
    let o = run(&["read", "-o", &bad, pcap.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("refused the credentials") && stderr.contains("nats://nf:***@127.0.0.1"),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().filter(|l| l.contains("error")).count(),
        1,
        "{stderr}"
    );
}

#[test]
fn bad_urls_and_unreadable_creds_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("t.pcap");
    trace(2).write_pcap(&pcap, TsResolution::Micro).unwrap();
    for (url, says) in [
        ("nats://127.0.0.1", "needs a port"),
        ("nats://127.0.0.1:0", "from 1 to 65535"),
        ("nats://127.0.0.1:4222,,h:1", "empty server"),
        ("natz://127.0.0.1:4222", "unknown scheme"),
    ] {
        let o = run(&["read", "-o", url, pcap.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{url}");
        assert!(
            stderr.contains(url) && stderr.contains(says),
            "{url}: {stderr}"
        );
    }
    let port = free_port();
    let missing = dir.path().join("nope.creds");
    let o = run(&[
        "read",
        "-o",
        &format!("nats://127.0.0.1:{port}"),
        "--nats-creds",
        missing.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains(&format!("--nats-creds {}", missing.display())),
        "{stderr}"
    );
    let garbage = dir.path().join("bad.creds");
    std::fs::write(&garbage, "not a creds file\n").unwrap();
    let o = run(&[
        "read",
        "-o",
        &format!("nats://127.0.0.1:{port}"),
        "--nats-creds",
        garbage.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("not a NATS credentials file"), "{stderr}");
    let o = run(&[
        "read",
        "-o",
        &format!("nats://127.0.0.1:{port}"),
        "--nats-subject",
        "{path}",
        pcap.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("--nats-subject"), "{stderr}");
}

#[test]
fn a_bad_nats_url_never_prints_its_password() {
    let o = run(&["read", "-o", "nats://u:hunter2@127.0.0.1", "x.pcap"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("needs a port"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// A CA and a server certificate for 127.0.0.1, made with `openssl`; `None` when it is missing.
fn make_certs(dir: &Path) -> Option<()> {
    let ok = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let made = ok(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=nameflow test CA",
    ]) && ok(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]) && ok(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
    made.then_some(())
}

#[test]
fn tls_with_the_servers_ca_and_a_clear_error_without_it() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    if make_certs(dir.path()).is_none() {
        let reason = "openssl is not installed, so no test certificates";
        assert!(std::env::var_os("CI").is_none(), "CI is set but {reason}");
        eprintln!("skipping: {reason}");
        return;
    }
    let cert = dir.path().join("srv.pem");
    let key = dir.path().join("srv.key");
    let ca = dir.path().join("ca.pem");
    let server = Server::start(
        dir.path(),
        &[
            "--tls",
            "--tlscert",
            cert.to_str().unwrap(),
            "--tlskey",
            key.to_str().unwrap(),
        ],
    );
    let url = format!("tls://127.0.0.1:{}", server.port);
    let pcap = dir.path().join("t.pcap");
    trace(20).write_pcap(&pcap, TsResolution::Micro).unwrap();
    let o = run(&[
        "read",
        "-o",
        &url,
        "--nats-ca",
        ca.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let n = rt().block_on(async {
        let client = async_nats::ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(ca.clone())
            .connect(&url)
            .await
            .expect("test client connects over TLS");
        let js = jetstream::new(client);
        let mut s = js.get_stream("NAMEFLOW_LOGS").await.unwrap();
        s.info().await.unwrap().state.messages
    });
    assert_eq!(n, 40, "every record arrived over TLS");

    // Without the CA the certificate cannot be verified: one error naming --nats-ca.
    let o = run(&["read", "-o", &url, pcap.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("TLS") && stderr.contains("--nats-ca"),
        "{stderr}"
    );
}

/// The publish rate of one writer into a local `nats-server -js` (file store, acks on), next to
/// the same run into the null sink. Ignored: a measurement, run by hand
/// (`cargo test --test output_nats publish_rate -- --ignored --nocapture`; set
/// `NAMEFLOW_BIN=target/release/nameflow` to time a release binary).
#[test]
#[ignore]
fn publish_rate() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let n = 50_000;
    let pcap = dir.path().join("t.pcap");
    trace(n).write_pcap(&pcap, TsResolution::Micro).unwrap();
    let bin = std::env::var("NAMEFLOW_BIN").unwrap_or_else(|_| BIN.to_owned());
    let timed = |out: &str| {
        let t = Instant::now();
        // A buffer that holds the whole run: this measures the rate, not the drop policy.
        let o = Command::new(&bin)
            .args([
                "read",
                "-o",
                out,
                "--flush-timeout",
                "60s",
                "--stream-buffer",
                "1GiB",
            ])
            .arg(&pcap)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{stderr}");
        eprint!("{stderr}");
        t.elapsed()
    };
    let null = timed("null:");
    let nats = timed(&server.url());
    let stored = rt().block_on(async {
        let js = jetstream::new(connect(&server.url()).await);
        let mut s = js.get_stream("NAMEFLOW_LOGS").await.unwrap();
        s.info().await.unwrap().state.messages
    });
    assert_eq!(stored, 2 * n as u64);
    let rate = |d: Duration| (2 * n) as f64 / d.as_secs_f64();
    eprintln!(
        "{} records: null sink {:.2?} ({:.0} records/s), nats {:.2?} ({:.0} records/s, acked)",
        2 * n,
        null,
        rate(null),
        nats,
        rate(nats)
    );
}

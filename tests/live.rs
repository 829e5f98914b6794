//! Live capture, end to end, as root: a multi-queue veth pair between two namespaces this
//! test creates, `nameflow capture` on one end, frames written into the other end by a paced
//! AF_PACKET sender. The sender records when it sent each frame; `nameflow read` of exactly
//! those frames at exactly those times must give the same conn.log as the live run on every
//! column but the ones that depend on the receiving clock (`ts`, `duration`, and the uids
//! derived from `ts`). Every sent frame must be accounted for in stats.log.
//!
//! Without root, or where namespaces or veth are missing, each test prints why and passes.

// Shared with tests/metrics.rs and tests/privilege.rs; this test uses only part of it.
#[allow(dead_code)]
#[path = "support/capture.rs"]
mod capture;
#[path = "support/netns.rs"]
mod netns;

use capture::Capture;
use nameflow::capture::pcap::PcapReader;
use nameflow::capture::FrameSource;
use nameflow::decode::LinkType;
use nameflow::synth::{
    DnsData, DnsRecord, DnsSpec, PcapBuilder, TcpClose, TcpSpec, Trace, TsResolution,
};
use netns::{paced, send_frames, VethPair};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_nameflow");
const QUEUES: u32 = 4;
/// Both veth ends; large enough for every replayed frame, below veth's XDP limit (3506).
const MTU: u32 = 3000;
/// The replay rate of the parity tests: well below what this machine captures without loss.
const PPS: u64 = 20_000;

/// Live tests share two cores and the kernel's view of XDP: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

macro_rules! require_live {
    () => {
        if let Some(reason) = netns::skip_reason() {
            eprintln!("skipping: {reason}");
            return;
        }
    };
}

/// Starts `nameflow capture` on the pair's capture end (TSV logs into `dir`, statistics
/// every 0.5 s) and waits until the program is attached; killed on drop if a test fails
/// before stopping it.
fn start_capture(pair: &VethPair, dir: &Path, args: &[&str]) -> Result<Capture, String> {
    let mut cmd = pair.cap_ns.command(BIN);
    cmd.args([
        "capture",
        "-i",
        &pair.cap,
        "--format",
        "tsv",
        "--stats-interval",
        "0.5",
    ])
    .arg("-o")
    .arg(dir)
    .args(args);
    Capture::start(cmd)
}

/// Rows of a TSV log as maps from column name to value.
fn tsv_rows(path: &Path) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut fields: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    for line in text.lines() {
        if let Some(f) = line.strip_prefix("#fields\t") {
            fields = f.split('\t').map(str::to_string).collect();
        } else if !line.starts_with('#') && !line.is_empty() {
            rows.push(
                fields
                    .iter()
                    .cloned()
                    .zip(line.split('\t').map(str::to_string))
                    .collect(),
            );
        }
    }
    rows
}

/// conn.log rows without the columns that depend on the receiving clock, sorted, each with
/// its `(orig_bytes, resp_bytes)` apart: Zeek leaves those unset when the duration is zero,
/// and live, packets read in one batch share one timestamp, so a short flow can have zero
/// duration live and not offline.
fn comparable_conn(path: &Path) -> Vec<(String, String)> {
    const CLOCK: &[&str] = &[
        "ts",
        "uid",
        "duration",
        "tunnel_parents",
        "orig_bytes",
        "resp_bytes",
    ];
    let mut rows: Vec<(String, String)> = tsv_rows(path)
        .into_iter()
        .map(|r| {
            let mut cols: Vec<_> = r
                .iter()
                .filter(|(f, _)| !CLOCK.contains(&f.as_str()))
                .collect();
            cols.sort();
            let key = cols
                .iter()
                .map(|(f, v)| format!("{f}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            (key, format!("{} {}", r["orig_bytes"], r["resp_bytes"]))
        })
        .collect();
    rows.sort();
    rows
}

/// Compares live and offline rows: the same multiset of keys, and for every key the byte
/// counts the live log has set among the offline ones. Returns how many live rows had them
/// unset (zero duration).
fn compare_conn(live: &[(String, String)], offline: &[(String, String)]) -> Result<usize, String> {
    let keys = |rows: &[(String, String)]| rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>();
    let (lk, ok) = (keys(live), keys(offline));
    if lk != ok {
        // Multiset difference: rows may repeat (one key, several connections).
        let minus = |a: &[String], b: &[String]| -> Vec<String> {
            let mut rest: Vec<&String> = b.iter().collect();
            a.iter()
                .filter(|r| match rest.iter().position(|x| x == r) {
                    Some(i) => {
                        rest.swap_remove(i);
                        false
                    }
                    None => true,
                })
                .cloned()
                .collect()
        };
        return Err(format!(
            "live and offline conn.log differ ({} vs {} rows)\nonly live:\n{}\nonly offline:\n{}",
            lk.len(),
            ok.len(),
            minus(&lk, &ok).join("\n"),
            minus(&ok, &lk).join("\n")
        ));
    }
    let mut unset = 0;
    for (key, bytes) in live {
        if bytes == "- -" {
            unset += 1;
            continue;
        }
        if !offline.iter().any(|(k, b)| k == key && b == bytes) {
            return Err(format!(
                "live bytes {bytes} not among the offline ones for {key}"
            ));
        }
    }
    Ok(unset)
}

/// The last `all` row of stats.log.
fn final_stats(dir: &Path) -> HashMap<String, String> {
    tsv_rows(&dir.join("stats.log"))
        .into_iter()
        .rev()
        .find(|r| r.get("worker").map(String::as_str) == Some("all"))
        .unwrap_or_else(|| panic!("no `all` row in {}/stats.log", dir.display()))
}

fn num(stats: &HashMap<String, String>, k: &str) -> u64 {
    stats
        .get(k)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("stats.log has no number in column {k}: {stats:?}"))
}

/// What one replay through live capture gave.
struct Replay {
    stats: HashMap<String, String>,
    stderr: String,
    /// The live conn.log, dns.log and namecache.log rows (the last two empty unless asked for
    /// with `--logs`).
    conn: Vec<HashMap<String, String>>,
    dns: Vec<HashMap<String, String>>,
    namecache: Vec<HashMap<String, String>>,
}

/// The rows of a log that may not have been written.
fn rows_if_any(path: &Path) -> Vec<HashMap<String, String>> {
    if path.exists() {
        tsv_rows(path)
    } else {
        Vec::new()
    }
}

/// Replays `frames` (frame `i` at `offsets_ns[i]`) into a fresh pair, captures them with `workers` workers, and
/// checks the live conn.log against `nameflow read` of the frames as sent, the accounting in
/// stats.log, and that no XDP program is left.
fn replay_and_compare(
    frames: &[Vec<u8>],
    offsets_ns: &[u64],
    workers: usize,
    steer: bool,
    extra: &[&str],
) -> Replay {
    let _serial = serial();
    let pair = VethPair::new(QUEUES, MTU).expect("create the veth pair");
    if steer {
        pair.steer_to_queue0(QUEUES).expect("set XPS on the sender");
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let live_dir = tmp.path().join("live");
    let w = workers.to_string();
    let mut args = vec!["-w", w.as_str()];
    args.extend_from_slice(extra);
    let cap = start_capture(&pair, &live_dir, &args).expect("start capture");
    assert_ne!(
        pair.xdp_prog_id().unwrap(),
        0,
        "no XDP program while capturing"
    );

    let times = send_frames(&pair.snd_ns.name, &pair.snd, frames, offsets_ns).expect("send frames");
    // Let the last frames cross the rings before stopping.
    std::thread::sleep(Duration::from_millis(500));
    let (code, stderr) = cap.stop();
    assert_eq!(code, Some(0), "capture exit status; stderr:\n{stderr}");
    assert_eq!(
        pair.xdp_prog_id().unwrap(),
        0,
        "an XDP program is left on {} after SIGTERM",
        pair.cap
    );

    // Offline: the same frames at the times they were sent.
    let mut pcap = PcapBuilder::new(LinkType::ETHERNET, TsResolution::Nano, false);
    for (f, ts) in frames.iter().zip(&times) {
        pcap.packet(*ts, f, f.len() as u32);
    }
    let pcap_path = tmp.path().join("sent.pcap");
    std::fs::write(&pcap_path, pcap.into_bytes()).expect("write sent.pcap");
    let off_dir = tmp.path().join("offline");
    let mut read = Command::new(BIN);
    read.args(["read", "--format", "tsv", "-w", &w])
        .arg("-o")
        .arg(&off_dir)
        .args(offline_args(extra))
        .arg(&pcap_path);
    netns::run(&mut read).expect("nameflow read of the sent frames");

    let stats = final_stats(&live_dir);
    let sent = frames.len() as u64;
    let (seen, redirected, non_ip) = (
        num(&stats, "xdp_seen"),
        num(&stats, "xdp_redirected"),
        num(&stats, "xdp_passed_non_ip"),
    );
    let (taken, dropped) = (num(&stats, "frames"), num(&stats, "dropped"));
    let secs = (times.last().unwrap_or(&0) - times.first().unwrap_or(&0)) as f64 / 1e9;
    let pps = sent as f64 / secs.max(1e-9);
    eprintln!(
        "sent {sent} in {secs:.3} s ({pps:.0} pps): xdp seen {seen} redirected {redirected} non-IP {non_ip}; workers took {taken}, dropped {dropped}, forwarded {} (lost {})",
        num(&stats, "forwarded_out"),
        num(&stats, "forward_dropped"),
    );
    assert_eq!(seen, sent, "the XDP program saw every sent frame\n{stderr}");
    assert_eq!(
        redirected + non_ip,
        seen,
        "every frame was redirected or passed"
    );
    assert_eq!(
        redirected,
        taken + dropped,
        "frames redirected = frames taken by workers + frames counted as dropped"
    );
    assert_eq!(dropped, 0, "loss at {pps:.0} pps\n{stderr}");
    assert_eq!(num(&stats, "records_dropped"), 0);

    let live = comparable_conn(&live_dir.join("conn.log"));
    let offline = comparable_conn(&off_dir.join("conn.log"));
    assert!(!offline.is_empty(), "the offline run logged nothing");
    let unset = compare_conn(&live, &offline).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "{} connections agree; {unset} had zero duration live (byte counts unset, as Zeek does)",
        live.len()
    );
    // Every packet the offline run counted is in the live log's packet counters.
    let pkts = |dir: &Path| -> u64 {
        tsv_rows(&dir.join("conn.log"))
            .iter()
            .map(|r| {
                r["orig_pkts"].parse::<u64>().unwrap() + r["resp_pkts"].parse::<u64>().unwrap()
            })
            .sum()
    };
    assert_eq!(pkts(&live_dir), pkts(&off_dir));
    Replay {
        stats,
        stderr,
        conn: tsv_rows(&live_dir.join("conn.log")),
        dns: rows_if_any(&live_dir.join("dns.log")),
        namecache: rows_if_any(&live_dir.join("namecache.log")),
    }
}

/// The capture flags that change what `nameflow read` logs too (checksums, the connection
/// key), for the offline run of the same frames.
fn offline_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut it = extra.iter();
    while let Some(&a) = it.next() {
        match a {
            "-C" => out.push(a),
            "--conn-key" => {
                out.push(a);
                out.extend(it.next().copied());
            }
            _ => {}
        }
    }
    out
}

/// Many flows in 198.18.0.0/15 and fd00::/8: TCP sessions of every ending, DNS over both
/// families, ICMP echo, one-way UDP; plus a few ARP frames that the program must pass to the
/// kernel.
fn synthetic_frames(flows: u32) -> Vec<Vec<u8>> {
    let mut t = Trace::new();
    let mut ts = 1_000_000_000u64;
    for i in 0..flows {
        let c4 = Ipv4Addr::new(198, 18, (i >> 8) as u8, (i & 0xff) as u8);
        let s4 = Ipv4Addr::new(198, 19, 0, (i % 7) as u8 + 1);
        let c6: IpAddr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 1, i as u16).into();
        let s6: IpAddr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 2, (i % 5) as u16).into();
        let (client, server): (IpAddr, IpAddr) = if i % 3 == 0 {
            (c6, s6)
        } else {
            (c4.into(), s4.into())
        };
        match i % 5 {
            0 | 1 => {
                let close = [
                    TcpClose::Fin,
                    TcpClose::RstByClient,
                    TcpClose::RstByServer,
                    TcpClose::Open,
                ][(i / 5 % 4) as usize];
                let spec = TcpSpec {
                    client: SocketAddr::new(client, 20_000 + i as u16),
                    server: SocketAddr::new(server, if i % 2 == 0 { 80 } else { 22 }),
                    client_segments: 1 + (i % 3) as usize,
                    server_segments: 1 + (i % 4) as usize,
                    segment_len: 200 + (i % 900) as usize,
                    client_first: if i % 2 == 0 {
                        b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n".to_vec()
                    } else {
                        b"SSH-2.0-OpenSSH_9.2\r\n".to_vec()
                    },
                    close,
                    step_ns: 100_000,
                    ..TcpSpec::default()
                };
                ts = t.tcp_session(&spec, ts) + 50_000;
            }
            2 => {
                let mut spec =
                    DnsSpec::query(&format!("host{i}.example.test"), 1).answer(DnsRecord::new(
                        &format!("host{i}.example.test"),
                        300,
                        DnsData::A(Ipv4Addr::new(198, 18, 200, (i % 250) as u8)),
                    ));
                spec.client = SocketAddr::new(client, 30_000 + i as u16);
                spec.server = SocketAddr::new(server, 53);
                spec.id = i as u16;
                ts = t.dns_exchange(&spec, ts) + 50_000;
            }
            3 => {
                ts = t.icmp_echo(client, server, i as u16, 3, ts, 100_000, 20_000) + 50_000;
            }
            _ => {
                for k in 0..3u64 {
                    t.udp(
                        ts + k * 10_000,
                        SocketAddr::new(client, 40_000 + i as u16),
                        SocketAddr::new(server, 5_000),
                        &[i as u8; 64],
                    );
                }
                ts += 100_000;
            }
        }
    }
    t.sort_by_time();
    let mut frames: Vec<Vec<u8>> = t.frames().iter().map(|f| f.data.clone()).collect();
    for k in 0..3u8 {
        frames.insert(frames.len() / 2, arp_request(k));
    }
    frames
}

/// An ARP who-has for 198.18.255.k from 198.18.255.254.
fn arp_request(k: u8) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0xfe]);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0xfe, 198, 18, 255, 254]);
    f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 198, 18, 255, k]);
    f.resize(60, 0);
    f
}

#[test]
fn live_synthetic_one_worker_matches_offline() {
    require_live!();
    let frames = synthetic_frames(400);
    let r = replay_and_compare(&frames, &paced(frames.len(), PPS), 1, false, &[]);
    assert_eq!(
        num(&r.stats, "xdp_passed_non_ip"),
        3,
        "ARP frames go to the kernel"
    );
    assert_eq!(
        num(&r.stats, "forwarded_out"),
        0,
        "one worker forwards nothing"
    );
    assert!(
        r.stderr.contains("XDP attached in native mode"),
        "{}",
        r.stderr
    );
}

#[test]
fn live_synthetic_two_workers_with_forced_forwarding_matches_offline() {
    require_live!();
    let frames = synthetic_frames(400);
    let r = replay_and_compare(&frames, &paced(frames.len(), PPS), 2, true, &[]);
    let fwd = num(&r.stats, "forwarded_out");
    assert!(
        fwd > frames.len() as u64 / 5,
        "XPS put every frame on queue 0, so about half of them belong to worker 1; forwarded only {fwd}"
    );
    assert_eq!(num(&r.stats, "forward_dropped"), 0);
}

/// Each client looks a service up (the answer replayed first), then connects to it: every
/// such connection must carry the looked-up name live, as offline (the parity check compares
/// the name columns too). Two workers with every frame steered to queue 0, so the DNS answer
/// and the connection are read by worker 0 while about half of them are owned by worker 1,
/// and the names travel through the evidence side queues and the replication mesh. dns.log
/// gets one row per exchange, with the uid of its conn.log row; namecache.log gets a record
/// every stats interval and one at exit.
#[test]
fn live_names_are_present_for_looked_up_servers_and_match_offline() {
    require_live!();
    const LOOKUPS: u32 = 150;
    let mut t = Trace::new();
    let mut ts = 1_000_000_000u64;
    let resolver = IpAddr::V4(Ipv4Addr::new(198, 19, 0, 53));
    for i in 0..LOOKUPS {
        let client = IpAddr::V4(Ipv4Addr::new(198, 18, 1 + (i >> 8) as u8, i as u8));
        let server = Ipv4Addr::new(198, 19, 2 + (i >> 8) as u8, i as u8);
        let name = format!("svc{i}.names.test");
        let mut dns =
            DnsSpec::query(&name, 1).answer(DnsRecord::new(&name, 600, DnsData::A(server)));
        dns.client = SocketAddr::new(client, 30_000 + i as u16);
        dns.server = SocketAddr::new(resolver, 53);
        dns.id = i as u16;
        ts = t.dns_exchange(&dns, ts) + 200_000;
        let spec = TcpSpec {
            client: SocketAddr::new(client, 40_000 + i as u16),
            server: SocketAddr::new(IpAddr::V4(server), 443),
            client_segments: 2,
            server_segments: 2,
            step_ns: 100_000,
            ..TcpSpec::default()
        };
        ts = t.tcp_session(&spec, ts) + 200_000;
    }
    t.sort_by_time();
    let frames: Vec<Vec<u8>> = t.frames().iter().map(|f| f.data.clone()).collect();
    let r = replay_and_compare(
        &frames,
        &paced(frames.len(), PPS),
        2,
        true,
        &["--logs", "conn,dns,namecache"],
    );
    assert!(
        num(&r.stats, "forwarded_out") > frames.len() as u64 / 5,
        "worker 1 owns about half of the flows"
    );
    assert_eq!(num(&r.stats, "forward_dropped"), 0);

    let mut named = 0;
    for row in r.conn.iter().filter(|r| r["id.resp_p"] == "443") {
        let last = row["id.resp_h"].rsplit('.').next().unwrap().to_string();
        let third: u32 = row["id.resp_h"].split('.').nth(2).unwrap().parse().unwrap();
        let i = (third - 2) * 256 + last.parse::<u32>().unwrap();
        assert_eq!(
            row["resp_name"],
            format!("svc{i}.names.test"),
            "live conn.log row without the looked-up name: {row:?}"
        );
        assert_eq!(row["resp_name_src"], "A");
        named += 1;
    }
    assert_eq!(named, LOOKUPS, "one named connection per lookup");

    // dns.log: one row per exchange, each with its connection's conn.log uid.
    assert_eq!(r.dns.len(), LOOKUPS as usize, "dns.log rows");
    for d in &r.dns {
        let conn = r
            .conn
            .iter()
            .find(|c| c["uid"] == d["uid"])
            .unwrap_or_else(|| panic!("dns.log uid {} is in no conn.log row", d["uid"]));
        for k in ["id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p"] {
            assert_eq!(conn[k], d[k], "{k} of dns.log row {d:?}");
        }
        assert_eq!(d["rcode_name"], "NOERROR");
        assert!(d["answers"].starts_with("198.19."), "{d:?}");
    }

    // namecache.log: at least one interval record before the one at exit, which counts
    // every named connection.
    assert!(
        r.namecache.len() >= 2,
        "namecache.log rows: {:?}",
        r.namecache
    );
    let last = r.namecache.last().unwrap();
    let conns_named: u64 = last["conns_named"].parse().unwrap();
    assert!(conns_named >= u64::from(LOOKUPS), "{last:?}");
    assert!(
        last["ev_a"].parse::<u64>().unwrap() >= u64::from(LOOKUPS),
        "{last:?}"
    );
}

/// IP addresses of real traces mapped into 198.18.0.0/15 and fd00::/8, with the IPv4 header
/// and transport checksums adjusted incrementally (RFC 1624), so a bad checksum stays bad.
#[derive(Default)]
struct Remap {
    v4: HashMap<[u8; 4], [u8; 4]>,
    v6: HashMap<[u8; 16], [u8; 16]>,
}

fn csum_adjust(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    // HC' = ~(~HC + ~m + m'), word by word.
    let mut sum = u32::from(!csum);
    for (o, n) in old.chunks(2).zip(new.chunks(2)) {
        sum += u32::from(!u16::from_be_bytes([o[0], o[1]]));
        sum += u32::from(u16::from_be_bytes([n[0], n[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl Remap {
    fn v4(&mut self, a: [u8; 4]) -> [u8; 4] {
        let n = self.v4.len() as u32 + 1;
        *self
            .v4
            .entry(a)
            .or_insert_with(|| [198, 18 + (n >> 16) as u8, (n >> 8) as u8, n as u8])
    }

    fn v6(&mut self, a: [u8; 16]) -> [u8; 16] {
        let n = self.v6.len() as u32 + 1;
        *self.v6.entry(a).or_insert_with(|| {
            let mut b = [0u8; 16];
            b[0] = 0xfd;
            b[12..].copy_from_slice(&n.to_be_bytes());
            b
        })
    }

    /// The frame with its addresses mapped, or `None` for frames this rewriter leaves out
    /// (not IP, IPv6 with extension headers, too short).
    fn frame(&mut self, f: &[u8]) -> Option<Vec<u8>> {
        let mut f = f.to_vec();
        let mut off = 12;
        let mut et = u16::from_be_bytes([*f.get(off)?, *f.get(off + 1)?]);
        while matches!(et, 0x8100 | 0x88a8 | 0x9100) {
            off += 4;
            et = u16::from_be_bytes([*f.get(off)?, *f.get(off + 1)?]);
        }
        let l3 = off + 2;
        match et {
            0x0800 => {
                let ihl = usize::from(*f.get(l3)? & 0x0f) * 4;
                if f.len() < l3 + ihl || ihl < 20 {
                    return None;
                }
                let old: Vec<u8> = f[l3 + 12..l3 + 20].to_vec();
                let mut new = [0u8; 8];
                new[..4].copy_from_slice(&self.v4(old[..4].try_into().unwrap()));
                new[4..].copy_from_slice(&self.v4(old[4..].try_into().unwrap()));
                f[l3 + 12..l3 + 20].copy_from_slice(&new);
                let hc = u16::from_be_bytes([f[l3 + 10], f[l3 + 11]]);
                f[l3 + 10..l3 + 12].copy_from_slice(&csum_adjust(hc, &old, &new).to_be_bytes());
                let frag_off = u16::from_be_bytes([f[l3 + 6], f[l3 + 7]]) & 0x1fff;
                let proto = f[l3 + 9];
                if frag_off == 0 {
                    fix_l4(&mut f, l3 + ihl, proto, &old, &new, false);
                }
                Some(f)
            }
            0x86dd => {
                if f.len() < l3 + 40 {
                    return None;
                }
                let proto = f[l3 + 6];
                if !matches!(proto, 6 | 17 | 58) {
                    return None;
                }
                let old: Vec<u8> = f[l3 + 8..l3 + 40].to_vec();
                let mut new = [0u8; 32];
                new[..16].copy_from_slice(&self.v6(old[..16].try_into().unwrap()));
                new[16..].copy_from_slice(&self.v6(old[16..].try_into().unwrap()));
                f[l3 + 8..l3 + 40].copy_from_slice(&new);
                fix_l4(&mut f, l3 + 40, proto, &old, &new, true);
                Some(f)
            }
            _ => None,
        }
    }
}

/// Adjusts a TCP/UDP (and ICMPv6) checksum for changed pseudo-header addresses.
fn fix_l4(f: &mut [u8], l4: usize, proto: u8, old: &[u8], new: &[u8], v6: bool) {
    let at = match proto {
        6 => l4 + 16,
        17 => l4 + 6,
        58 if v6 => l4 + 2,
        _ => return,
    };
    if f.len() < at + 2 {
        return;
    }
    let c = u16::from_be_bytes([f[at], f[at + 1]]);
    if proto == 17 && c == 0 && !v6 {
        // No checksum in this UDP datagram.
        return;
    }
    let mut n = csum_adjust(c, old, new);
    if proto == 17 && n == 0 {
        n = 0xffff;
    }
    f[at..at + 2].copy_from_slice(&n.to_be_bytes());
}

#[test]
fn checksum_adjustment_matches_recomputation() {
    // An IPv4 header whose checksum is recomputed after changing the addresses must equal
    // the incrementally adjusted one.
    let mut h = [
        0x45u8, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 192, 168, 1, 1,
    ];
    let sum = |h: &[u8]| {
        let mut s: u32 = h
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    };
    let c = sum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    let old = h[12..20].to_vec();
    let new = [198, 18, 0, 1, 198, 18, 0, 2];
    let adjusted = csum_adjust(c, &old, &new);
    h[12..20].copy_from_slice(&new);
    h[10..12].copy_from_slice(&[0, 0]);
    assert_eq!(adjusted, sum(&h));
}

/// Frames of the shared Zeek traces that can be replayed: Ethernet, IP, at most MTU long, with
/// addresses mapped into the test ranges; and when to send each.
fn shared_frames(sets: &[&str]) -> Option<(Vec<Vec<u8>>, Vec<u64>)> {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/zeek");
    if !shared.is_dir() {
        return None;
    }
    let mut remap = Remap::default();
    let mut out = Vec::new();
    let mut offsets = Vec::new();
    let mut at = 0u64;
    for set in sets {
        let Some(trace) = std::fs::read_dir(shared.join(set))
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().contains(".pcap"))
        else {
            continue;
        };
        let mut r = PcapReader::open(&[trace]).ok()?;
        let mut prev: Option<u64> = None;
        while let Ok(Some(f)) = r.next_frame() {
            if f.link != LinkType::ETHERNET || f.data.len() > MTU as usize + 14 || f.data.len() < 14
            {
                continue;
            }
            if let Some(frame) = remap.frame(f.data) {
                // The trace's own gaps, capped so a replay takes seconds, not hours: the
                // order between connections (an FTP announcement and the data connection it
                // announces) keeps a realistic margin.
                let gap = prev.map_or(0, |p| f.ts_ns.saturating_sub(p));
                at += gap.clamp(MIN_GAP_NS, MAX_GAP_NS);
                prev = Some(f.ts_ns);
                out.push(frame);
                offsets.push(at);
            }
        }
    }
    Some((out, offsets))
}

/// Bounds of the replayed gaps between frames of the shared traces.
const MIN_GAP_NS: u64 = 20_000;
const MAX_GAP_NS: u64 = 2_000_000;

/// Replayable shared traces without announced (FTP data) connections.
const SHARED_SETS: &[&str] = &[
    "wikipedia-dns-http",
    "ssh-basic",
    "tls-imap-starttls",
    "pop3-rej",
    "dhcp-udp-broadcast",
    "vlan-q-in-q",
];

/// `--conn-key vlan` live: the same connections untagged, on VLAN 42 and on VLAN 10 inside
/// 20 (QinQ) are three connections each, with `id.ctx.vlan`/`id.ctx.inner_vlan`, exactly as
/// `nameflow read --conn-key vlan` logs the frames as sent (veth keeps the tags in the frame,
/// and the XDP program looks past them).
#[test]
fn live_vlan_conn_key_splits_by_tag_and_matches_offline() {
    require_live!();
    let base = synthetic_frames(40);
    let mut frames = Vec::with_capacity(base.len() * 3);
    for f in &base {
        for tags in [&[][..], &[42], &[10, 20]] {
            frames.push(nameflow::synth::vlan_tagged(f, tags));
        }
    }
    // Every frame into queue 0 (XPS), so one dispatcher sees each connection's packets in
    // order and forwards half of them by the VLAN-aware key: with the queue chosen by the
    // kernel's flow hash, the two directions of a tagged connection can take different
    // queues, and the forwarded one can arrive late (a content gap live, none offline).
    let r = replay_and_compare(
        &frames,
        &paced(frames.len(), PPS),
        2,
        true,
        &["--conn-key", "vlan"],
    );
    let count = |vlan: &str, inner: &str| {
        r.conn
            .iter()
            .filter(|c| c["id.ctx.vlan"] == vlan && c["id.ctx.inner_vlan"] == inner)
            .count()
    };
    let untagged = count("-", "-");
    assert!(untagged > 0, "no untagged connection: {:?}", r.conn.first());
    assert_eq!(
        count("42", "-"),
        untagged,
        "one copy of each connection on VLAN 42"
    );
    assert_eq!(count("10", "20"), untagged, "one copy on VLAN 10 inside 20");
    assert_eq!(r.conn.len(), 3 * untagged);
    assert!(
        num(&r.stats, "forwarded_out") > 0,
        "the VLAN-aware key put some connections on the other worker"
    );
}

#[test]
fn live_shared_traces_two_workers_match_offline() {
    require_live!();
    let Some((frames, offsets)) = shared_frames(SHARED_SETS) else {
        eprintln!("skipping: ../shared/conformance is not there");
        return;
    };
    assert!(
        frames.len() > 1000,
        "only {} replayable frames",
        frames.len()
    );
    let r = replay_and_compare(&frames, &offsets, 2, false, &["-C"]);
    assert!(
        num(&r.stats, "forwarded_out") > 0,
        "flow hashing put some flows on the other worker"
    );
}

/// FTP with a passive data connection, on two workers. The announcement (seen by the control
/// connection's worker) and the data connection's SYN (seen by another) race through
/// different queues; the SYN can win when they are less than a scheduling delay apart (0.6 ms
/// in this trace). The owner then applies the late announcement to the connection it has just
/// created, so the record still says `ftp-data`.
#[test]
fn live_ftp_announcement_two_workers_matches_offline() {
    require_live!();
    let Some((frames, offsets)) = shared_frames(&["ftp-bigtransfer-missed-bytes"]) else {
        eprintln!("skipping: ../shared/conformance is not there");
        return;
    };
    replay_and_compare(&frames, &offsets, 2, false, &["-C"]);
}

/// Builds a minimal XDP program that passes everything, as "someone else's" program.
fn foreign_program(dir: &Path) -> PathBuf {
    let src = dir.join("foreign.bpf.c");
    std::fs::write(
        &src,
        "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n\
         SEC(\"xdp\") int foreign(struct xdp_md *ctx) { return XDP_PASS; }\n\
         char LICENSE[] SEC(\"license\") = \"GPL\";\n",
    )
    .unwrap();
    let obj = dir.join("foreign.bpf.o");
    netns::run(
        Command::new("clang")
            .args([
                "-O2",
                "-g",
                "-target",
                "bpf",
                "-I/usr/include/x86_64-linux-gnu",
                "-c",
            ])
            .arg(&src)
            .arg("-o")
            .arg(&obj),
    )
    .expect("compile the foreign XDP program");
    obj
}

#[test]
fn refuses_a_foreign_xdp_program_unless_forced() {
    require_live!();
    let _serial = serial();
    let pair = VethPair::new(QUEUES, MTU).expect("veth pair");
    let tmp = tempfile::tempdir().unwrap();
    let obj = foreign_program(tmp.path());
    pair.cap_ns
        .ip(&[
            "link",
            "set",
            "dev",
            &pair.cap,
            "xdpdrv",
            "obj",
            obj.to_str().unwrap(),
            "sec",
            "xdp",
        ])
        .expect("attach the foreign program with ip link");
    let foreign = pair.xdp_prog_id().unwrap();
    assert_ne!(foreign, 0);

    let out = netns::run(
        pair.cap_ns
            .command(BIN)
            .args(["capture", "-i", &pair.cap, "-o"])
            .arg(tmp.path().join("refused")),
    );
    let err = out.expect_err("capture must refuse a foreign program");
    assert!(err.contains("already has an XDP program attached"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(
        pair.xdp_prog_id().unwrap(),
        foreign,
        "the foreign program was touched"
    );

    let cap = start_capture(&pair, &tmp.path().join("forced"), &["--force"]).expect("forced start");
    let ours = pair.xdp_prog_id().unwrap();
    assert!(
        ours != 0 && ours != foreign,
        "ours {ours}, foreign {foreign}"
    );
    let (code, stderr) = cap.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        pair.xdp_prog_id().unwrap(),
        0,
        "nothing is left after --force and SIGTERM"
    );
}

#[test]
fn no_xdp_program_remains_after_kill_or_error() {
    require_live!();
    let _serial = serial();
    let pair = VethPair::new(QUEUES, MTU).expect("veth pair");
    let tmp = tempfile::tempdir().unwrap();

    // kill -9: no handler runs; the kernel releases the bpf_link with the process.
    let mut cap = start_capture(&pair, &tmp.path().join("k"), &[]).expect("start");
    assert_ne!(pair.xdp_prog_id().unwrap(), 0);
    cap.signal(nix::sys::signal::Signal::SIGKILL);
    cap.wait(Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(5);
    while pair.xdp_prog_id().unwrap() != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(pair.xdp_prog_id().unwrap(), 0, "program left after kill -9");

    // An abort (what a panic with panic=abort does).
    let mut cap = start_capture(&pair, &tmp.path().join("a"), &[]).expect("start");
    cap.signal(nix::sys::signal::Signal::SIGABRT);
    cap.wait(Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(5);
    while pair.xdp_prog_id().unwrap() != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(pair.xdp_prog_id().unwrap(), 0, "program left after abort");

    // Errors: zero-copy demanded where veth cannot give it, a queue that does not exist.
    for (args, expect) in [
        (&["--zero-copy", "on"][..], "zero-copy"),
        (&["--queues", "0,9"][..], "queue 9 does not exist"),
    ] {
        let err = netns::run(
            pair.cap_ns
                .command(BIN)
                .args(["capture", "-i", &pair.cap, "-o"])
                .arg(tmp.path().join("e"))
                .args(args),
        )
        .expect_err("capture must fail");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert_eq!(
            pair.xdp_prog_id().unwrap(),
            0,
            "program left after error {args:?}"
        );
    }
}

#[test]
fn clean_errors_for_missing_or_down_interfaces() {
    // The missing interface is found before anything needs privileges.
    let out = Command::new(BIN)
        .args([
            "capture",
            "-i",
            "nf-missing0",
            "-o",
            "/nonexistent-never-created",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no network interface named \"nf-missing0\"") && err.contains("ip link"),
        "{err}"
    );

    require_live!();
    let _serial = serial();
    let pair = VethPair::new(2, 1500).expect("veth pair");
    pair.cap_ns.ip(&["link", "set", &pair.cap, "down"]).unwrap();
    let err = netns::run(pair.cap_ns.command(BIN).args(["capture", "-i", &pair.cap]))
        .expect_err("a down interface is refused");
    assert!(
        err.contains("is down") && err.contains("ip link set dev"),
        "{err}"
    );
}

/// The loss-free rate on this machine's veth: one-way UDP from 1024 flows (64-byte frames),
/// paced by one AF_PACKET sender thread, captured by two workers. Run with
/// `cargo test --release --test live -- --ignored --nocapture loss_free_rate`; it asserts that
/// the lowest rate loses nothing and prints what each rate gave.
#[test]
#[ignore = "a measurement (tens of seconds), not a check; run it by name"]
fn loss_free_rate_sweep() {
    require_live!();
    let mut t = Trace::new();
    for i in 0..1024u32 {
        t.udp(
            u64::from(i),
            SocketAddr::new(
                Ipv4Addr::new(198, 18, (i >> 8) as u8, i as u8).into(),
                10_000,
            ),
            SocketAddr::new(Ipv4Addr::new(198, 19, 0, 1).into(), 9),
            &[0u8; 18],
        );
    }
    let one: Vec<Vec<u8>> = t.frames().iter().map(|f| f.data.clone()).collect();
    let frames: Vec<Vec<u8>> = one.iter().cycle().take(200_000).cloned().collect();
    for pps in [50_000u64, 100_000, 200_000, 0] {
        let _serial = serial();
        let pair = VethPair::new(QUEUES, MTU).expect("veth pair");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rate");
        let cap = start_capture(&pair, &dir, &["-w", "2"]).expect("start");
        let offsets = if pps == 0 {
            Vec::new()
        } else {
            paced(frames.len(), pps)
        };
        let times = send_frames(&pair.snd_ns.name, &pair.snd, &frames, &offsets).expect("send");
        std::thread::sleep(Duration::from_millis(500));
        let (code, stderr) = cap.stop();
        assert_eq!(code, Some(0), "{stderr}");
        let s = final_stats(&dir);
        let secs = (times.last().unwrap() - times[0]) as f64 / 1e9;
        let achieved = frames.len() as f64 / secs;
        let (seen, taken, dropped) = (num(&s, "xdp_seen"), num(&s, "frames"), num(&s, "dropped"));
        eprintln!(
            "target {pps} pps: sent {} in {secs:.3} s = {achieved:.0} pps; XDP saw {seen}, workers took {taken}, dropped {dropped}",
            frames.len()
        );
        assert_eq!(seen, taken + dropped, "every frame accounted for");
        if pps == 50_000 {
            assert_eq!(dropped, 0, "loss at 50 kpps");
        }
    }
}

//! Floods against the hard bounds: a SYN flood (one new flow per packet), a flood of first
//! fragments that never complete, and a DNS flood (a new name and address per answer). Each
//! is read by `nameflow read` at growing sizes; the peak resident memory must stay flat (set
//! by the configured caps, not by the input), and what the caps discarded must be reported.

use nameflow::synth::{DnsData, DnsRecord, DnsSpec, Trace, TsResolution};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_nameflow");

/// Flood sizes: each many times the caps (and past the allocator's warm-up), the largest 8
/// times the smallest.
const SIZES: [u32; 3] = [50_000, 150_000, 400_000];

/// An Ethernet + IPv4 header (checksum left zero: the runs use `-C`).
fn ipv4_frame(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ident: u16,
    frag: u16,
    l4: &[u8],
) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
    let total = (20 + l4.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&ident.to_be_bytes());
    f.extend_from_slice(&frag.to_be_bytes());
    f.extend_from_slice(&[64, proto, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(l4);
    f
}

fn client(i: u32) -> Ipv4Addr {
    // 198.18.0.0/15: 131 072 addresses, with the port making every flow new.
    let v = 0xc612_0000u32 | (i & 0x1_ffff);
    Ipv4Addr::from(v)
}

/// One SYN per new connection.
fn syn_flood(n: u32) -> Trace {
    let mut t = Trace::new();
    for i in 0..n {
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&(1024 + (i >> 17) as u16).to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&i.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x02;
        tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
        let f = ipv4_frame(
            client(i),
            Ipv4Addr::new(198, 19, 0, 1),
            6,
            i as u16,
            0,
            &tcp,
        );
        t.push_frame(1_000_000_000 + u64::from(i) * 10_000, f);
    }
    t
}

/// First fragments (more-fragments set, offset 0) of datagrams whose rest never comes.
fn fragment_flood(n: u32) -> Trace {
    let mut t = Trace::new();
    let payload = vec![0xabu8; 1200];
    for i in 0..n {
        let f = ipv4_frame(
            client(i),
            Ipv4Addr::new(198, 19, 0, 2),
            17,
            i as u16,
            0x2000,
            &payload,
        );
        t.push_frame(1_000_000_000 + u64::from(i) * 10_000, f);
    }
    t
}

/// DNS answers, each naming a new address with a new name.
fn dns_flood(n: u32) -> Trace {
    let mut t = Trace::new();
    let mut ts = 1_000_000_000u64;
    for i in 0..n {
        let name = format!("h{i}.flood.example.test");
        let mut spec = DnsSpec::query(&name, 1).answer(DnsRecord::new(
            &name,
            3600,
            DnsData::A(client(i.wrapping_mul(7919))),
        ));
        spec.client = SocketAddr::new(
            Ipv4Addr::new(198, 18, 255, 1).into(),
            10_000 + (i % 50_000) as u16,
        );
        spec.server = SocketAddr::new(Ipv4Addr::new(198, 19, 0, 53).into(), 53);
        spec.id = i as u16;
        spec.rtt_ns = 1_000;
        ts = t.dns_exchange(&spec, ts) + 5_000;
    }
    t
}

/// `n` DNS answers in one resolver → client flow, each giving a new name to a new address
/// (the first 131 072 IPv4 in 198.18.0.0/15, then IPv6 in fd00::/8), like
/// `../shared/bench/mkflood.py dns`: what grows is the name cache alone.
fn dns_answers(n: u32) -> Trace {
    let mut t = Trace::new();
    for i in 0..n {
        let name = format!("h{i}.example.test");
        let mut dns = Vec::with_capacity(64);
        dns.extend_from_slice(&(i as u16).to_be_bytes());
        dns.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
        for label in name.split('.') {
            dns.push(label.len() as u8);
            dns.extend_from_slice(label.as_bytes());
        }
        dns.push(0);
        let (qtype, rdata): (u16, Vec<u8>) = if i < 1 << 17 {
            (1, client(i).octets().to_vec())
        } else {
            let mut a = [0u8; 16];
            a[0] = 0xfd;
            a[12..].copy_from_slice(&i.to_be_bytes());
            (28, a.to_vec())
        };
        dns.extend_from_slice(&qtype.to_be_bytes());
        dns.extend_from_slice(&[0, 1, 0xc0, 0x0c]);
        dns.extend_from_slice(&qtype.to_be_bytes());
        dns.extend_from_slice(&[0, 1, 0, 0, 0x0e, 0x10]);
        dns.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        dns.extend_from_slice(&rdata);
        let mut udp = Vec::with_capacity(8 + dns.len());
        udp.extend_from_slice(&53u16.to_be_bytes());
        udp.extend_from_slice(&10_000u16.to_be_bytes());
        udp.extend_from_slice(&(8 + dns.len() as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(&dns);
        let f = ipv4_frame(
            Ipv4Addr::new(198, 19, 255, 253),
            Ipv4Addr::new(198, 19, 255, 1),
            17,
            i as u16,
            0,
            &udp,
        );
        t.push_frame(1_000_000_000 + u64::from(i) * 900, f);
    }
    t
}

/// Runs `nameflow read` and returns its peak resident memory (KiB) and stderr.
///
/// The peak is `VmHWM` from `/proc/<pid>/status`, sampled until the process exits (it only
/// grows, so the last sample is the peak up to the last few milliseconds). `getrusage` would
/// not do: the child is spawned from this test's address space, and the kernel carries that
/// high-water mark across `exec` into the child's `ru_maxrss`.
fn peak_rss(pcap: &Path, out: &Path, extra: &[&str]) -> (u64, String) {
    let mut child = Command::new(BIN)
        .args(["read", "-C", "-w", "1", "--no-pin", "--format", "tsv"])
        .args(extra)
        .arg("-o")
        .arg(out)
        .arg(pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nameflow read");
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
        s
    });
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let status = loop {
        if let Ok(s) = std::fs::read_to_string(&status_path) {
            if let Some(kib) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
        }
        if let Some(st) = child.try_wait().expect("wait for nameflow read") {
            break st;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let text = reader.join().unwrap();
    assert!(status.success(), "nameflow read failed ({status}): {text}");
    assert!(peak > 0, "no VmHWM sample of nameflow read");
    (peak, text)
}

/// Reads each size of a flood; returns the peak RSS per size and the last run's stderr and
/// output directory.
fn measure(
    name: &str,
    build: fn(u32) -> Trace,
    extra: &[&str],
) -> (Vec<u64>, String, tempfile::TempDir) {
    let mut rss = Vec::new();
    let mut last = (String::new(), tempfile::tempdir().unwrap());
    for &n in &SIZES {
        let dir = tempfile::tempdir().unwrap();
        let pcap = dir.path().join("flood.pcap");
        build(n).write_pcap(&pcap, TsResolution::Micro).unwrap();
        let out = tempfile::tempdir().unwrap();
        let (kib, text) = peak_rss(&pcap, out.path(), extra);
        eprintln!("{name}: {n} units -> peak RSS {kib} KiB");
        rss.push(kib);
        last = (text, out);
    }
    (rss, last.0, last.1)
}

/// Flat: the largest input (8x the smallest) costs at most 2% + 2 MiB more than the smallest
/// (before the timer heap was bounded, the DNS flood grew by 8% over this range).
fn assert_flat(name: &str, rss: &[u64]) {
    let (lo, hi) = (rss[0], *rss.last().unwrap());
    assert!(
        hi <= lo + lo / 50 + 2048,
        "{name}: peak RSS grows with the input ({rss:?} KiB for {SIZES:?}): a table or queue is unbounded"
    );
}

fn summary_count(text: &str, key: &str) -> u64 {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn syn_flood_is_held_by_the_flow_table_cap() {
    let (rss, text, _out) = measure(
        "syn flood",
        syn_flood,
        &["--max-flows", "5000", "--no-names"],
    );
    assert_flat("syn flood", &rss);
    let evicted = summary_count(&text, "flows_evicted");
    assert!(
        evicted >= u64::from(SIZES[2]) - 5000 - 100,
        "evictions are reported in the summary: {text}"
    );
}

#[test]
fn fragment_flood_is_held_by_the_reassembly_bounds() {
    let (rss, text, _out) = measure("fragment flood", fragment_flood, &["--no-names"]);
    assert_flat("fragment flood", &rss);
    let dropped = summary_count(&text, "fragments_dropped");
    assert!(
        dropped >= u64::from(SIZES[2]) - 4096,
        "fragments dropped at the bound are reported: {text}"
    );
}

#[test]
fn dns_flood_is_held_by_the_name_cache_cap() {
    let (rss, text, out) = measure(
        "dns flood",
        dns_flood,
        &[
            "--max-flows",
            "5000",
            "--name-max-entries",
            "5000",
            "--logs",
            "conn,namecache",
        ],
    );
    assert_flat("dns flood", &rss);
    let log = std::fs::read_to_string(out.path().join("namecache.log"))
        .unwrap_or_else(|e| panic!("namecache.log: {e}; {text}"));
    let header = log
        .lines()
        .find_map(|l| l.strip_prefix("#fields\t"))
        .expect("TSV header");
    let col = header
        .split('\t')
        .position(|c| c == "evictions")
        .expect("an evictions column");
    let row = log.lines().rfind(|l| !l.starts_with('#')).expect("a row");
    let evictions: u64 = row.split('\t').nth(col).unwrap().parse().unwrap();
    assert!(
        evictions >= u64::from(SIZES[2]) - 5000 - 100,
        "name-cache evictions are reported in namecache.log: {row}"
    );
}

/// Issue 13's bound: a cached address costs at most 128 bytes of resident memory at 1M
/// addresses (names interned, the first history item in the address's own slot, tables
/// reserved at `--name-max-entries`), with the default cap holding all of them.
#[test]
fn a_cached_address_costs_at_most_128_bytes_at_a_million() {
    const N: u32 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let mut rss = Vec::new();
    let mut text = String::new();
    let mut out_dir = None;
    for n in [1, N] {
        let pcap = dir.path().join(format!("answers-{n}.pcap"));
        dns_answers(n)
            .write_pcap(&pcap, TsResolution::Micro)
            .unwrap();
        let out = tempfile::tempdir().unwrap();
        let (kib, t) = peak_rss(&pcap, out.path(), &["--logs", "conn,namecache"]);
        std::fs::remove_file(&pcap).unwrap();
        eprintln!("dns answers: {n} -> peak RSS {kib} KiB");
        rss.push(kib);
        text = t;
        out_dir = Some(out);
    }
    let per = (rss[1] - rss[0]) as f64 * 1024.0 / f64::from(N - 1);
    eprintln!("{per:.1} bytes per cached address");
    let log = std::fs::read_to_string(out_dir.unwrap().path().join("namecache.log"))
        .unwrap_or_else(|e| panic!("namecache.log: {e}; {text}"));
    let last = log.lines().rfind(|l| !l.starts_with('#')).expect("a row");
    let header = log
        .lines()
        .find_map(|l| l.strip_prefix("#fields\t"))
        .expect("TSV header");
    let field = |name: &str| -> u64 {
        let col = header.split('\t').position(|c| c == name).expect(name);
        last.split('\t').nth(col).unwrap().parse().unwrap()
    };
    assert_eq!(
        (field("entries"), field("evictions")),
        (u64::from(N), 0),
        "the default --name-max-entries holds a million addresses: {last}"
    );
    assert!(
        per <= 128.0,
        "{per:.1} bytes per cached address ({rss:?} KiB for 1 and {N} answers)"
    );
}

//! The "done when": on every shared trace with DNS, among connections whose responder
//! is not local and whose address appeared in a DNS answer earlier in the trace, at least 95%
//! carry `resp_name`, and at least 99% of the names given are right (one of the names of an
//! answer chain that gave that address).
//!
//! The expected names come from the trace itself, read here with a small DNS parser of the
//! test's own (independent of `nameflow::names`), over nameflow's pcap reader and decoder.

use nameflow::capture::pcap::PcapReader;
use nameflow::capture::FrameSource;
use nameflow::decode::{DecodeConfig, Decoder, L4};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_nameflow");

fn shared_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    dir.is_dir().then_some(dir)
}

/// Reads a (possibly compressed) name; `None` on anything malformed. Pointers are followed
/// at most 32 times.
fn name_at(m: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *m.get(pos)? as usize;
        if len == 0 {
            return Some((out.to_ascii_lowercase(), end.unwrap_or(pos + 1)));
        }
        if len & 0xc0 == 0xc0 {
            let target = ((len & 0x3f) << 8) | *m.get(pos + 1)? as usize;
            end.get_or_insert(pos + 2);
            pos = target;
            continue;
        }
        let label = m.get(pos + 1..pos + 1 + len)?;
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(&String::from_utf8_lossy(label));
        pos += 1 + len;
    }
    None
}

/// `(address, every name of the answer's chain)` for each A/AAAA answer of a DNS response.
fn answers(m: &[u8]) -> Vec<(IpAddr, HashSet<String>)> {
    let mut out = Vec::new();
    let Some(h) = m.get(..12) else { return out };
    if h[2] & 0x80 == 0 {
        return out;
    }
    let qd = u16::from_be_bytes([h[4], h[5]]);
    let an = u16::from_be_bytes([h[6], h[7]]);
    let mut pos = 12;
    let mut chain: HashSet<String> = HashSet::new();
    for _ in 0..qd {
        let Some((q, end)) = name_at(m, pos) else {
            return out;
        };
        chain.insert(q);
        pos = end + 4;
    }
    let mut addrs = Vec::new();
    for _ in 0..an {
        let Some((owner, end)) = name_at(m, pos) else {
            break;
        };
        let Some(f) = m.get(end..end + 10) else { break };
        let ty = u16::from_be_bytes([f[0], f[1]]);
        let len = u16::from_be_bytes([f[8], f[9]]) as usize;
        let Some(rd) = m.get(end + 10..end + 10 + len) else {
            break;
        };
        match (ty, len) {
            (1, 4) => addrs.push((IpAddr::from([rd[0], rd[1], rd[2], rd[3]]), owner)),
            (28, 16) => {
                let mut o = [0u8; 16];
                o.copy_from_slice(rd);
                addrs.push((IpAddr::from(o), owner));
            }
            (5, _) => {
                chain.insert(owner);
                if let Some((t, _)) = name_at(m, end + 10) {
                    chain.insert(t);
                }
            }
            _ => {}
        }
        pos = end + 10 + len;
    }
    for (a, owner) in addrs {
        let mut names = chain.clone();
        names.insert(owner);
        out.push((a, names));
    }
    out
}

/// Every DNS answer of the trace: address → [(time, names of its chain)].
fn dns_answers(trace: &Path) -> HashMap<IpAddr, Vec<(u64, HashSet<String>)>> {
    let mut reader = PcapReader::open(&[trace.to_path_buf()]).expect("trace opens");
    let mut decoder = Decoder::new(DecodeConfig {
        verify_checksums: false,
        ..DecodeConfig::default()
    });
    let mut map: HashMap<IpAddr, Vec<(u64, HashSet<String>)>> = HashMap::new();
    while let Ok(Some(f)) = reader.next_frame() {
        let ts = f.ts_ns;
        let _ = decoder.decode(f.link, ts, f.data, |p| {
            let msg = match p.l4 {
                L4::Udp { src_port: 53, .. } => p.payload,
                L4::Tcp { src_port: 53, .. } if p.payload.len() > 2 => &p.payload[2..],
                _ => return,
            };
            for (a, names) in answers(msg) {
                map.entry(a).or_default().push((ts, names));
            }
        });
    }
    map
}

fn traces(shared: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = [
        "conformance/zeek/wikipedia-dns-http/trace.pcap",
        "conformance/zeek/gre-icmp-dns/trace.pcap",
        "conformance/zeek/ipv6-fragmented-dns/trace.pcap",
        "conformance/zeek/pcapng-multi-interface-dns/trace.pcapng",
    ]
    .iter()
    .map(|p| shared.join(p))
    .collect();
    let ndpi = shared.join("pcaps/ndpi");
    if let Ok(dirs) = std::fs::read_dir(&ndpi) {
        let mut dirs: Vec<PathBuf> = dirs.flatten().map(|e| e.path()).collect();
        dirs.sort();
        for d in dirs {
            if let Ok(files) = std::fs::read_dir(&d) {
                for f in files.flatten() {
                    let p = f.path();
                    let n = p.to_string_lossy();
                    if n.ends_with(".pcap") || n.ends_with(".pcapng") {
                        v.push(p);
                    }
                }
            }
        }
    }
    v.retain(|p| p.exists());
    v
}

#[test]
fn responders_seen_in_dns_answers_are_named_and_named_right() {
    let Some(shared) = shared_dir() else {
        eprintln!("skipped: no ../shared beside the workspace");
        return;
    };
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let (mut eligible, mut named, mut right) = (0usize, 0usize, 0usize);
    let mut lines = Vec::new();
    let mut wrong = Vec::new();
    for (i, trace) in traces(&shared).iter().enumerate() {
        let dns = dns_answers(trace);
        if dns.is_empty() {
            continue;
        }
        let out = tmp.path().join(i.to_string());
        let st = Command::new(BIN)
            .args(["read", "-C", "-w", "2", "--format", "json", "-o"])
            .arg(&out)
            .arg(trace)
            .output()
            .expect("nameflow runs");
        assert!(
            st.status.success(),
            "{}: {}",
            trace.display(),
            String::from_utf8_lossy(&st.stderr)
        );
        let log = std::fs::read_to_string(out.join("conn.log")).unwrap_or_default();
        let (mut e, mut n, mut r) = (0, 0, 0);
        for line in log.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("JSON record");
            if v["local_resp"].as_bool() != Some(false) {
                continue;
            }
            let resp: IpAddr = v["id.resp_h"].as_str().unwrap().parse().unwrap();
            let ts_ns = (v["ts"].as_f64().unwrap() * 1e9) as u64;
            let Some(seen) = dns.get(&resp) else { continue };
            let before: Vec<&HashSet<String>> = seen
                .iter()
                .filter(|(t, _)| *t <= ts_ns)
                .map(|(_, names)| names)
                .collect();
            if before.is_empty() {
                continue;
            }
            e += 1;
            if let Some(name) = v["resp_name"].as_str() {
                n += 1;
                if before.iter().any(|s| s.contains(name)) {
                    r += 1;
                } else {
                    wrong.push(format!(
                        "{}: {resp} named {name}, DNS said {before:?}",
                        trace.display()
                    ));
                }
            }
        }
        lines.push(format!(
            "{}: {e} eligible, {n} named, {r} right",
            trace.strip_prefix(&shared).unwrap_or(trace).display()
        ));
        eligible += e;
        named += n;
        right += r;
    }
    let named_pct = 100.0 * named as f64 / eligible.max(1) as f64;
    let right_pct = 100.0 * right as f64 / named.max(1) as f64;
    eprintln!(
        "{}\ntotal: {eligible} eligible, {named} named ({named_pct:.2}%), {right} right ({right_pct:.2}%)",
        lines.join("\n")
    );
    assert!(
        eligible >= 50,
        "too few eligible connections to judge: {eligible}"
    );
    assert!(
        named_pct >= 95.0,
        "only {named_pct:.2}% named\n{}",
        lines.join("\n")
    );
    assert!(
        right_pct >= 99.0,
        "only {right_pct:.2}% right:\n{}",
        wrong.join("\n")
    );
}

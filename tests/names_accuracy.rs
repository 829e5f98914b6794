//! The "done when": on every shared trace with DNS, among connections whose responder
//! is not local and whose address appeared in a DNS answer earlier in the trace, at least 95%
//! carry `resp_name`, and at least 99% of the names given are right (one of the names of an
//! answer chain that gave that address, or the connection's own SNI/Host).
//!
//! The expected names come from the trace itself, read here with a small DNS parser of the
//! test's own (independent of `nameflow::names`), over nameflow's pcap reader and decoder.
//! A connection's own TLS SNI or HTTP Host, which names it first (docs/names.md), is right
//! too: for the nDPI captures it is taken from nDPI's `ndpiReader.out` beside them.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_nameflow");

fn shared_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    dir.is_dir().then_some(dir)
}

#[path = "support/dns_answers.rs"]
mod dns_answers;
use dns_answers::dns_answers;
#[path = "support/ndpi.rs"]
mod ndpi;

/// A connection as nDPI and conn.log can both name it: protocol and both endpoints.
type ConnKey = (String, (IpAddr, u16), (IpAddr, u16));

/// The own names nDPI reports beside `trace`, by connection (both ways round).
fn own_names(trace: &Path) -> HashMap<ConnKey, String> {
    let text = trace
        .parent()
        .map(|d| d.join("ndpiReader.out"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let mut out = HashMap::new();
    for f in ndpi::ndpi_flows(&text) {
        if let Some(n) = f.own_name() {
            out.insert((f.proto.clone(), f.a, f.b), n.clone());
            out.insert((f.proto.clone(), f.b, f.a), n);
        }
    }
    out
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
        let own = own_names(trace);
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
                let ep = |h: &str, p: &str| {
                    (
                        v[h].as_str().unwrap().parse::<IpAddr>().unwrap(),
                        v[p].as_u64().unwrap() as u16,
                    )
                };
                let key = (
                    v["proto"].as_str().unwrap_or("").to_owned(),
                    ep("id.orig_h", "id.orig_p"),
                    ep("id.resp_h", "id.resp_p"),
                );
                let its_own = own.get(&key).is_some_and(|n| n == name);
                if before.iter().any(|s| s.contains(name)) || its_own {
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

//! `--community-id-seed`: with Suricata's seed, conn.log's community_id equals the ids
//! Suricata wrote for the suricata-verify community-id captures (their `test.yaml` holds them),
//! and a seed out of range is a named error.
//!
//! Reads `../shared` beside the workspace; skips, saying so, when it is missing, and fails
//! instead when `CI` is set.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_nameflow");

fn shared_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but {} is missing: the community-id captures are required",
        dir.display()
    );
    eprintln!("skipped: no ../shared beside the workspace");
    None
}

/// A flow as both logs identify it: (client, client port, server, server port).
type Tuple = (IpAddr, u16, IpAddr, u16);

/// The `(tuple → community_id)` pairs of a suricata-verify `test.yaml`: each `- filter:` block
/// with a `community_id` and the four endpoint fields. Only the flat `key: value` lines under
/// `match:` are read, which is all these files use.
fn expected_ids(yaml: &str) -> BTreeMap<Tuple, String> {
    let mut out = BTreeMap::new();
    let mut block: BTreeMap<String, String> = BTreeMap::new();
    let mut flush = |b: &mut BTreeMap<String, String>| {
        let get = |k: &str| b.get(k).cloned();
        if let (Some(id), Some(sip), Some(sp), Some(dip), Some(dp)) = (
            get("community_id"),
            get("src_ip"),
            get("src_port"),
            get("dest_ip"),
            get("dest_port"),
        ) {
            let t = (
                sip.parse().expect("src_ip is an address"),
                sp.parse().expect("src_port is a port"),
                dip.parse().expect("dest_ip is an address"),
                dp.parse().expect("dest_port is a port"),
            );
            out.insert(t, id);
        }
        b.clear();
    };
    for line in yaml.lines() {
        let t = line.trim();
        if t.starts_with("- filter:") {
            flush(&mut block);
            continue;
        }
        if let Some((k, v)) = t.split_once(": ") {
            block.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    flush(&mut block);
    out
}

/// (tuple → community_id) of every conn.log record nameflow writes for `pcap` with `args`.
fn nameflow_ids(pcap: &Path, args: &[&str]) -> BTreeMap<Tuple, String> {
    let out = Command::new(BIN)
        .arg("read")
        .args(args)
        .args(["-o", "-"])
        .arg(pcap)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
    assert!(
        out.status.success(),
        "nameflow read {} failed: {}",
        pcap.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ids = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let r: serde_json::Value = serde_json::from_str(line).expect("JSON lines");
        if r.get("_path").and_then(|p| p.as_str()).unwrap_or("conn") != "conn" {
            continue;
        }
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
        let p = |k: &str| r[k].as_u64().unwrap_or_default() as u16;
        let t = (
            s("id.orig_h").parse().expect("orig_h"),
            p("id.orig_p"),
            s("id.resp_h").parse().expect("resp_h"),
            p("id.resp_p"),
        );
        ids.insert(t, s("community_id"));
    }
    ids
}

#[test]
fn seed_7_reproduces_suricatas_community_ids() {
    let Some(shared) = shared_dir() else {
        return;
    };
    for set in ["community-id-ipv4", "community-id-ipv6"] {
        let dir = shared.join("pcaps/suricata-verify").join(set);
        let yaml = std::fs::read_to_string(dir.join("test.yaml"))
            .unwrap_or_else(|e| panic!("cannot read {set}/test.yaml: {e}"));
        let want = expected_ids(&yaml);
        assert!(!want.is_empty(), "{set}: no community_id in test.yaml");
        let pcap = dir.join("input.pcap");
        let got = nameflow_ids(&pcap, &["-C", "--community-id-seed", "7"]);
        for (t, id) in &want {
            assert_eq!(got.get(t), Some(id), "{set}: community_id of {t:?}");
        }
        // The default seed (0) gives other ids: the seed is really hashed.
        let unseeded = nameflow_ids(&pcap, &["-C"]);
        for (t, id) in &want {
            assert_ne!(unseeded.get(t), Some(id), "{set}: seed 0 of {t:?}");
        }
    }
}

#[test]
fn a_seed_out_of_range_is_a_named_error() {
    for bad in ["65536", "-1", "seven"] {
        let out = Command::new(BIN)
            .args(["read", &format!("--community-id-seed={bad}")])
            .args(["-o", "-", "/nonexistent.pcap"])
            .output()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        assert!(!out.status.success(), "--community-id-seed {bad} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--community-id-seed"),
            "the error names the flag: {err}"
        );
    }
}

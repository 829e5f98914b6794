//! dns.log against Zeek's: every shared reference set with a `dns.log` is read with
//! `nameflow read --logs conn,dns --format tsv` (with `-C` where its `RUN.txt` says Zeek ran
//! with it), and the two logs are compared as multisets keyed on
//! `(proto, id.orig_h, id.orig_p, id.resp_h, id.resp_p, trans_id, query)`; rows that share a
//! key are paired so that as many fields as possible agree. `ts` and `uid` are not compared
//! with Zeek's (Zeek's test harness masks `ts`, and uids depend on its seed file), but every
//! dns.log uid must be the conn.log uid of the same connection, with two workers.
//!
//! Each field's agreement is held at its floor in `tests/dns-conformance-floor.tsv`
//! (`NAMEFLOW_BLESS=1` rewrites the file from this run), and every field must agree on at
//! least 95% of all rows together.

#[allow(dead_code)]
#[path = "support/zeek_log.rs"]
mod zeek_log;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_nameflow");

const KEY: &[&str] = &[
    "proto",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "trans_id",
    "query",
];

/// Every column but `ts` and `uid` (the key columns agree by construction when paired).
const FIELDS: &[&str] = &[
    "rtt",
    "qclass",
    "qclass_name",
    "qtype",
    "qtype_name",
    "rcode",
    "rcode_name",
    "AA",
    "TC",
    "RD",
    "RA",
    "Z",
    "answers",
    "TTLs",
    "rejected",
    "opcode",
    "opcode_name",
];

fn shared_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    dir.is_dir().then_some(dir)
}

/// The reference sets that carry a dns.log: (name, trace, -C).
fn dns_sets(shared: &Path) -> Vec<(String, PathBuf, bool)> {
    let root = shared.join("conformance/zeek");
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", root.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("dns.log").is_file())
        .collect();
    dirs.sort();
    for d in dirs {
        let trace = std::fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("trace.pcap"))
            })
            .unwrap_or_else(|| panic!("{}: a dns.log but no trace.pcap*", d.display()));
        let run = std::fs::read_to_string(d.join("RUN.txt")).unwrap_or_default();
        let name = d.file_name().unwrap().to_string_lossy().into_owned();
        out.push((name, trace, zeek_log::run_txt_ignores_checksums(&run)));
    }
    out
}

/// Runs nameflow on `trace`; returns (conn.log, dns.log) text.
fn run(trace: &Path, ignore_checksums: bool, workers: &str, out: &Path) -> (String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "read", "--logs", "conn,dns", "--format", "tsv", "-w", workers,
    ]);
    if ignore_checksums {
        cmd.arg("-C");
    }
    cmd.arg("-o").arg(out).arg(trace);
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
    assert!(
        o.status.success(),
        "nameflow failed on {}: {}",
        trace.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap_or_default();
    (read("conn.log"), read("dns.log"))
}

fn parse(text: &str, what: &str) -> zeek_log::Log {
    if text.is_empty() {
        return zeek_log::Log::default();
    }
    zeek_log::Log::parse(text, None).unwrap_or_else(|e| panic!("{what} does not parse: {e}"))
}

fn get<'a>(log: &zeek_log::Log, row: &'a [String], col: &str) -> &'a str {
    log.column(col).map_or("", |i| row[i].as_str())
}

fn agree(field: &str, zeek: &str, ours: &str) -> bool {
    if field == "rtt" && zeek != "-" && ours != "-" {
        // Printed with six decimals by both; allow the last digit to round differently.
        let (a, b) = (zeek.parse::<f64>(), ours.parse::<f64>());
        return matches!((a, b), (Ok(a), Ok(b)) if (a - b).abs() <= 2e-6);
    }
    zeek == ours
}

/// Per-field agreeing rows and the row count they are out of (the larger of the two logs).
#[derive(Default)]
struct Tally {
    rows: usize,
    agree: BTreeMap<&'static str, usize>,
    mismatches: Vec<String>,
}

impl Tally {
    fn pct(&self, field: &str) -> f64 {
        if self.rows == 0 {
            100.0
        } else {
            100.0 * *self.agree.get(field).unwrap_or(&0) as f64 / self.rows as f64
        }
    }

    fn add(&mut self, o: &Tally) {
        self.rows += o.rows;
        for (f, n) in &o.agree {
            *self.agree.entry(f).or_default() += n;
        }
    }
}

fn compare(zeek: &zeek_log::Log, ours: &zeek_log::Log) -> Tally {
    let key = |log: &zeek_log::Log, r: &[String]| -> Vec<String> {
        KEY.iter().map(|c| get(log, r, c).to_owned()).collect()
    };
    let mut by_key: HashMap<Vec<String>, Vec<usize>> = HashMap::new();
    for (i, r) in ours.rows.iter().enumerate() {
        by_key.entry(key(ours, r)).or_default().push(i);
    }
    let mut t = Tally {
        rows: zeek.rows.len().max(ours.rows.len()),
        ..Tally::default()
    };
    for z in &zeek.rows {
        let k = key(zeek, z);
        let score = |o: &[String]| {
            FIELDS
                .iter()
                .filter(|f| agree(f, get(zeek, z, f), get(ours, o, f)))
                .count()
        };
        let Some(cands) = by_key.get_mut(&k) else {
            t.mismatches.push(format!("missing: {}", k.join(" ")));
            continue;
        };
        let Some((pos, _)) = cands
            .iter()
            .enumerate()
            .max_by_key(|(_, &i)| score(&ours.rows[i]))
        else {
            t.mismatches.push(format!("missing: {}", k.join(" ")));
            continue;
        };
        let o = &ours.rows[cands.swap_remove(pos)];
        for f in FIELDS {
            let (zv, ov) = (get(zeek, z, f), get(ours, o, f));
            if agree(f, zv, ov) {
                *t.agree.entry(f).or_default() += 1;
            } else {
                let cut = |s: &str| s.chars().take(80).collect::<String>();
                t.mismatches.push(format!(
                    "{f}: zeek {:?} ours {:?} ({})",
                    cut(zv),
                    cut(ov),
                    k.join(" ")
                ));
            }
        }
    }
    for rest in by_key.values().flatten() {
        t.mismatches
            .push(format!("extra: {}", key(ours, &ours.rows[*rest]).join(" ")));
    }
    t
}

/// Every dns.log row's uid is the conn.log uid of the connection with the same 5-tuple.
fn uids_match_conn_log(set: &str, conn: &zeek_log::Log, dns: &zeek_log::Log) {
    let ids = ["proto", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p"];
    let mut conns: HashMap<Vec<&str>, Vec<&str>> = HashMap::new();
    for r in &conn.rows {
        let k: Vec<&str> = ids.iter().map(|c| get(conn, r, c)).collect();
        conns.entry(k).or_default().push(get(conn, r, "uid"));
    }
    for r in &dns.rows {
        let k: Vec<&str> = ids.iter().map(|c| get(dns, r, c)).collect();
        let uid = get(dns, r, "uid");
        let have = conns.get(&k).cloned().unwrap_or_default();
        assert!(
            have.contains(&uid),
            "{set}: dns.log uid {uid} for {k:?} is not that connection's conn.log uid {have:?}"
        );
    }
}

#[test]
fn dns_log_agrees_with_zeek_and_holds_its_floors() {
    let Some(shared) = shared_dir() else {
        eprintln!("skipped: no ../shared beside the workspace, so no Zeek references");
        return;
    };
    let floor_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dns-conformance-floor.tsv");
    let floors = std::fs::read_to_string(&floor_path)
        .map(|t| zeek_log::parse_floors(&t).expect("the floor file parses"))
        .unwrap_or_default();
    let sets = dns_sets(&shared);
    assert!(
        sets.len() >= 3,
        "expected the DNS reference sets, found {sets:?}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let mut total = Tally::default();
    let mut report = String::new();
    let mut below = Vec::new();
    let mut blessed = Vec::new();
    for (i, (name, trace, c)) in sets.iter().enumerate() {
        let zeek_text = std::fs::read_to_string(trace.parent().unwrap().join("dns.log")).unwrap();
        let zeek = parse(&zeek_text, "Zeek's dns.log");
        let out = tmp.path().join(i.to_string());
        let (conn_text, dns_text) = run(trace, *c, "2", &out);
        let ours = parse(&dns_text, "our dns.log");
        let conn = parse(&conn_text, "our conn.log");
        uids_match_conn_log(name, &conn, &ours);
        let t = compare(&zeek, &ours);
        let _ = writeln!(report, "{name}: {} rows", t.rows);
        for f in FIELDS {
            let pct = t.pct(f);
            let _ = writeln!(report, "  {f:12} {pct:6.1}%");
            blessed.push(zeek_log::Floor {
                set: name.clone(),
                field: (*f).to_owned(),
                pct: zeek_log::floor_of(pct),
            });
            if let Some(fl) = floors.iter().find(|x| x.set == *name && x.field == *f) {
                if pct + 1e-9 < fl.pct {
                    below.push(format!("{name} {f}: {pct:.1}% < floor {:.1}%", fl.pct));
                }
            }
        }
        for m in &t.mismatches {
            let _ = writeln!(report, "  - {m}");
        }
        total.add(&t);
    }
    eprintln!("{report}");
    if std::env::var_os("NAMEFLOW_BLESS").is_some() {
        let text = zeek_log::render_floors(&blessed)
            .replace(
                "# tests/conformance.rs fails",
                "# dns.log. tests/dns_conformance.rs fails",
            )
            .replace(
                "`cargo xtask conformance --bless`; see docs/conformance.md",
                "`NAMEFLOW_BLESS=1 cargo test --test dns_conformance`",
            );
        std::fs::write(&floor_path, text).unwrap();
    }
    assert!(
        below.is_empty(),
        "below the floors:\n{}\n{report}",
        below.join("\n")
    );
    for f in FIELDS {
        let pct = total.pct(f);
        assert!(
            pct >= 95.0,
            "{f}: {pct:.1}% of {} rows agree over every set (want >= 95%)\n{report}",
            total.rows
        );
    }
}

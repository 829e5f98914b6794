//! Holds the agreement with Zeek that has been reached, and checks that the number of workers
//! never changes what is logged.
//!
//! Both tests read the reference data in `../shared` beside the workspace and skip, saying so,
//! when it is absent. `cargo xtask conformance` prints the same numbers as a table, and
//! `cargo xtask conformance --bless` raises the floors this test holds.

// The comparison logic is shared with xtask, which uses parts this test does not.
#[allow(dead_code)]
#[path = "support/zeek_log.rs"]
mod zeek_log;

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_nameflow");

fn shared_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    dir.is_dir().then_some(dir)
}

/// Runs nameflow with `args`, returning whether it succeeded, its stderr, and the conn.log it
/// wrote in `out_dir` (empty when it wrote none).
fn run_nameflow(args: &[std::ffi::OsString], out_dir: &Path) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
    let log = std::fs::read_to_string(out_dir.join("conn.log")).unwrap_or_default();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        log,
    )
}

#[test]
fn agreement_with_zeek_stays_at_or_above_the_floors() {
    let Some(shared) = shared_dir() else {
        eprintln!("skipped: no ../shared beside the workspace, so no Zeek references");
        return;
    };
    let floor_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance-floor.tsv");
    let floor_text = std::fs::read_to_string(&floor_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", floor_path.display()));
    let floors = zeek_log::parse_floors(&floor_text)
        .unwrap_or_else(|e| panic!("{}: {e}", floor_path.display()));
    let sets = zeek_log::discover(&shared).expect("the references should be listable");

    let mut wanted: Vec<&str> = floors.iter().map(|f| f.set.as_str()).collect();
    wanted.sort_unstable();
    wanted.dedup();
    if wanted.is_empty() {
        eprintln!("no floors blessed yet; run `cargo xtask conformance --bless`");
        return;
    }

    let tmp = tempfile::tempdir().expect("a temporary directory");
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for (i, name) in wanted.iter().enumerate() {
        let Some(set) = sets.iter().find(|s| s.name == *name) else {
            failures.push(format!(
                "{name}: has floors but no such reference in {}",
                shared.display()
            ));
            continue;
        };
        let zeek = set.load_reference().unwrap_or_else(|e| panic!("{e}"));
        let out_dir = tmp.path().join(i.to_string());
        let (_, stderr, log) = run_nameflow(&set.nameflow_args(&out_dir), &out_dir);
        let ours = if log.is_empty() {
            zeek_log::Log {
                columns: zeek.columns.clone(),
                rows: Vec::new(),
            }
        } else {
            zeek_log::Log::parse(&log, None)
                .unwrap_or_else(|e| panic!("{name}: our conn.log does not parse: {e}\n{stderr}"))
        };
        let cmp = zeek_log::compare(&zeek, &ours).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (field, floor, reached) in zeek_log::below_floor(name, &cmp, &floors) {
            failures.push(format!(
                "{name}: {field} agreement {reached:.1}% is below its floor {floor:.1}%"
            ));
        }
        results.push((name.to_string(), cmp));
    }
    assert!(
        failures.is_empty(),
        "agreement with Zeek dropped:\n{}\n\n{}\n{}",
        failures.join("\n"),
        zeek_log::render_table(&results),
        zeek_log::render_mismatches(&results)
    );
}

/// Every capture under `dir`, sorted.
fn traces_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        if p.is_dir() {
            traces_under(&p, out);
        } else if [".pcap", ".pcapng", ".pcap.gz", ".cap"]
            .iter()
            .any(|ext| name.ends_with(ext))
        {
            out.push(p);
        }
    }
}

/// The rows of a TSV conn.log whose `orig_name`/`resp_name` is not in its `orig_names`/
/// `resp_names` set (or whose set is written without its name), as text for a message.
fn names_outside_their_sets(log: &str) -> Vec<String> {
    let Some(fields) = log.lines().find_map(|l| l.strip_prefix("#fields\t")) else {
        return Vec::new();
    };
    let fields: Vec<&str> = fields.split('\t').collect();
    let at = |n: &str| fields.iter().position(|f| *f == n);
    let mut bad = Vec::new();
    for (one, all) in [("orig_name", "orig_names"), ("resp_name", "resp_names")] {
        let (Some(i), Some(j)) = (at(one), at(all)) else {
            bad.push(format!("no {one}/{all} columns"));
            continue;
        };
        for row in log.lines().filter(|l| !l.starts_with('#')) {
            let cols: Vec<&str> = row.split('\t').collect();
            let (name, set) = (cols[i], cols[j]);
            // Zeek's set formatting escapes a comma inside an element as \x2c.
            let members: Vec<String> = set.split(',').map(|m| m.replace("\\x2c", ",")).collect();
            let ok = if name == "-" {
                set == "-"
            } else {
                members.iter().any(|m| m == name) && members.len() <= 8
            };
            if !ok {
                bad.push(format!("{one} {name} vs {all} {set}"));
            }
        }
    }
    bad
}

/// Offline runs must not depend on how flows are spread over workers: the same trace gives the
/// same records, uids included, with one worker or two. On the way, every named end of every
/// shared trace is checked to be a member of its name set (`resp_name ∈ resp_names`).
#[test]
fn one_and_two_workers_log_the_same_records() {
    let Some(shared) = shared_dir() else {
        eprintln!("skipped: no ../shared beside the workspace, so no shared traces");
        return;
    };
    let mut traces = Vec::new();
    traces_under(&shared, &mut traces);
    assert!(
        !traces.is_empty(),
        "no traces found under {}",
        shared.display()
    );

    let tmp = tempfile::tempdir().expect("a temporary directory");
    let mut failures = Vec::new();
    let mut records = 0;
    for (i, trace) in traces.iter().enumerate() {
        let mut outcomes = Vec::new();
        for workers in ["1", "2"] {
            let out_dir = tmp.path().join(format!("{i}-w{workers}"));
            let args: Vec<std::ffi::OsString> = vec![
                "read".into(),
                "-C".into(),
                "-w".into(),
                workers.into(),
                "--format".into(),
                "tsv".into(),
                "-o".into(),
                out_dir.clone().into(),
                trace.clone().into(),
            ];
            outcomes.push(run_nameflow(&args, &out_dir));
        }
        let (ok1, err1, log1) = &outcomes[0];
        let (ok2, err2, log2) = &outcomes[1];
        if ok1 != ok2 {
            failures.push(format!(
                "{}: -w 1 {} but -w 2 {}\n  -w 1: {}\n  -w 2: {}",
                trace.display(),
                if *ok1 { "succeeded" } else { "failed" },
                if *ok2 { "succeeded" } else { "failed" },
                err1.trim(),
                err2.trim()
            ));
            continue;
        }
        for bad in names_outside_their_sets(log1) {
            failures.push(format!("{}: {bad}", trace.display()));
        }
        let a = zeek_log::sorted_data_lines(log1);
        let b = zeek_log::sorted_data_lines(log2);
        records += a.len();
        if a != b {
            let only1: Vec<&&str> = a.iter().filter(|l| !b.contains(l)).take(3).collect();
            let only2: Vec<&&str> = b.iter().filter(|l| !a.contains(l)).take(3).collect();
            failures.push(format!(
                "{}: {} records with -w 1, {} with -w 2\n  only -w 1: {only1:?}\n  only -w 2: {only2:?}",
                trace.display(),
                a.len(),
                b.len()
            ));
        }
    }
    eprintln!("{} traces, {records} records with one worker", traces.len());
    // Guards against a vacuous pass: two empty logs are always equal.
    assert!(
        records > 0,
        "no trace produced any record; is the binary writing conn.log?"
    );
    assert!(
        failures.is_empty(),
        "worker count changed the log for {} of {} traces:\n{}",
        failures.len(),
        traces.len(),
        failures.join("\n")
    );
}

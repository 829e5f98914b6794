//! `cargo xtask conformance`: per-set, per-field agreement of our conn.log with Zeek's.
//!
//! The parsing and comparison rules live in `tests/support/zeek_log.rs`, shared with
//! `tests/conformance.rs`, so the numbers printed here are the numbers the test holds.

use crate::zeek_log::{self, Comparison, Log, RefSet};
use crate::{build_release_binary, describe, shared_dir, workspace_root};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(clap::Args)]
pub struct Args {
    /// Only this set (a folder name, or `folder/variant` for a partial set; a folder name selects
    /// all its variants). Repeatable.
    #[arg(long = "set", value_name = "NAME")]
    sets: Vec<String>,
    /// Write the reached agreement of the compared sets to tests/conformance-floor.tsv.
    #[arg(long)]
    bless: bool,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Print a few differing values per field and set.
    #[arg(short, long)]
    verbose: bool,
    /// Use the existing target/release/nameflow instead of building it.
    #[arg(long)]
    no_build: bool,
}

/// The floor file, relative to the workspace root.
pub const FLOOR_FILE: &str = "tests/conformance-floor.tsv";

struct Outcome {
    set: RefSet,
    cmp: Comparison,
    /// Why nameflow failed on this trace, when it did (the comparison then covers what it
    /// wrote before failing).
    error: Option<String>,
}

pub fn conformance(args: Args) -> Result<()> {
    let Some(shared) = shared_dir() else {
        bail!(
            "no reference data: expected ../shared beside {}",
            workspace_root().display()
        );
    };
    let mut sets = zeek_log::discover(&shared)
        .with_context(|| format!("failed to list the references in {}", shared.display()))?;
    if !args.sets.is_empty() {
        sets.retain(|s| {
            args.sets
                .iter()
                .any(|want| s.name == *want || s.name.starts_with(&format!("{want}/")))
        });
        if sets.is_empty() {
            bail!("no reference set matches {:?}", args.sets);
        }
    }

    let bin = if args.no_build {
        workspace_root().join("target/release/nameflow")
    } else {
        build_release_binary()?
    };
    let tmp = tempfile::tempdir().context("failed to create a temporary directory")?;

    let mut outcomes = Vec::new();
    for (i, set) in sets.into_iter().enumerate() {
        let out_dir = tmp.path().join(i.to_string());
        let outcome = compare_set(&bin, set, &out_dir)?;
        outcomes.push(outcome);
    }

    let results: Vec<(String, Comparison)> = outcomes
        .iter()
        .map(|o| (o.set.name.clone(), o.cmp.clone()))
        .collect();
    println!("{}", zeek_log::render_table(&results));
    println!(
        "cells: % of rows agreeing (missing and extra rows count as disagreeing); \
         `.` = not in the reference; duration ±{} ms",
        zeek_log::DURATION_TOLERANCE_S * 1000.0
    );
    for o in &outcomes {
        if let Some(e) = &o.error {
            println!("{}: nameflow failed: {e}", o.set.name);
        }
    }
    if args.verbose {
        print!("{}", zeek_log::render_mismatches(&results));
    }

    let floor_path = workspace_root().join(FLOOR_FILE);
    let old_floors = read_floors(&floor_path)?;
    for (name, cmp) in &results {
        for (field, floor, reached) in zeek_log::below_floor(name, cmp, &old_floors) {
            println!("{name}: {field} at {reached:.1}% is below its floor of {floor:.1}%");
        }
    }

    if let Some(path) = &args.json {
        write_json(path, &outcomes)?;
        println!("results written to {}", path.display());
    }
    if args.bless {
        let new: Vec<_> = results
            .iter()
            .flat_map(|(n, c)| zeek_log::floors_for(n, c))
            .collect();
        let merged = zeek_log::merge_floors(&old_floors, &new);
        std::fs::write(&floor_path, zeek_log::render_floors(&merged))
            .with_context(|| format!("failed to write {}", floor_path.display()))?;
        println!(
            "blessed {} set(s) into {}",
            results.len(),
            floor_path.display()
        );
    }
    Ok(())
}

/// Runs nameflow on one set's trace and compares its conn.log with the reference.
fn compare_set(bin: &Path, set: RefSet, out_dir: &Path) -> Result<Outcome> {
    let zeek = set
        .load_reference()
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("failed to read the reference of {}", set.name))?;
    let mut cmd = Command::new(bin);
    cmd.args(set.nameflow_args(out_dir));
    let desc = describe(&cmd);
    let out = cmd
        .output()
        .with_context(|| format!("failed to run `{desc}`"))?;
    let error = (!out.status.success()).then(|| {
        format!(
            "`{desc}` exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    });
    let ours = read_our_log(&out_dir.join("conn.log"), &zeek)
        .with_context(|| format!("failed to read nameflow's conn.log for {}", set.name))?;
    let cmp = zeek_log::compare(&zeek, &ours)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("failed to compare {}", set.name))?;
    Ok(Outcome { set, cmp, error })
}

/// Our log, or an empty one with the reference's columns when nameflow wrote nothing, so a
/// failed run shows as all rows missing rather than as an error that hides the other sets.
fn read_our_log(path: &Path, zeek: &Log) -> Result<Log> {
    let empty = || Log {
        columns: zeek.columns.clone(),
        rows: Vec::new(),
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(empty()),
        Err(e) => return Err(e).with_context(|| format!("failed to read {}", path.display())),
    };
    let log = Log::parse(&text, None)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{} is not a Zeek TSV log", path.display()))?;
    Ok(if log.columns.is_empty() { empty() } else { log })
}

fn read_floors(path: &Path) -> Result<Vec<zeek_log::Floor>> {
    match std::fs::read_to_string(path) {
        Ok(text) => zeek_log::parse_floors(&text)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("failed to parse {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("failed to read {}", path.display())),
    }
}

fn write_json(path: &Path, outcomes: &[Outcome]) -> Result<()> {
    let sets: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| {
            let fields: serde_json::Map<String, serde_json::Value> = o
                .cmp
                .fields
                .iter()
                .map(|t| {
                    (
                        t.field.to_owned(),
                        serde_json::json!({
                            "pct": o.cmp.field_pct(t.field),
                            "agree": t.agree,
                            "differ": t.differ,
                            "examples": t.examples.iter().map(|m| serde_json::json!({
                                "key": m.key, "zeek": m.zeek, "ours": m.ours,
                            })).collect::<Vec<_>>(),
                        }),
                    )
                })
                .collect();
            serde_json::json!({
                "set": o.set.name,
                "trace": o.set.trace,
                "reference": o.set.reference,
                "ignore_checksums": o.set.ignore_checksums,
                "matched": o.cmp.matched,
                "missing": o.cmp.missing,
                "extra": o.cmp.extra,
                "overall_pct": o.cmp.overall_pct(),
                "fields": fields,
                "error": o.error,
            })
        })
        .collect();
    let text = serde_json::to_string_pretty(&serde_json::json!({ "sets": sets }))
        .context("failed to encode the results as JSON")?;
    std::fs::write(path, text + "\n").with_context(|| format!("failed to write {}", path.display()))
}

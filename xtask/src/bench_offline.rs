//! `cargo xtask bench offline`: packets per second of one worker doing `nameflow read`'s work
//! (decode, dispatch, flow shard, names) on traces held in memory and repeated, names on and
//! off. The measurement is the criterion bench `benches/pipeline.rs`; this command runs it
//! and turns its estimates into a report. When a `zeek` binary is on PATH, the same shared
//! traces go through `zeek -b -r` in the same run and the report gives the ratio.

use crate::{cargo, run, shared_dir, workspace_root};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Write the report here instead of target/bench/<timestamp>-offline.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Read the last criterion results instead of running the bench again.
    #[arg(long)]
    pub no_run: bool,
}

/// One criterion result: the benchmark id, frames per iteration, mean ns per iteration.
struct Estimate {
    trace: String,
    names: bool,
    frames: f64,
    mean_ns: f64,
}

pub fn offline(args: Args) -> Result<()> {
    let root = workspace_root();
    if !args.no_run {
        run(cargo().args(["bench", "--package", "nameflow", "--bench", "pipeline"]))
            .context("failed to run the pipeline bench")?;
    }
    let crit = root.join("target/criterion/worker_offline");
    let estimates = read_estimates(&crit)?;
    if estimates.is_empty() {
        bail!("no results under {}: run without --no-run", crit.display());
    }
    let mut traces: BTreeMap<String, (Option<f64>, Option<f64>, f64)> = BTreeMap::new();
    for e in &estimates {
        let pps = e.frames / (e.mean_ns / 1e9);
        let entry = traces
            .entry(e.trace.clone())
            .or_insert((None, None, e.frames));
        if e.names {
            entry.0 = Some(pps);
        } else {
            entry.1 = Some(pps);
        }
    }
    let zeek = which("zeek");
    let mut rows = Vec::new();
    let mut md = String::from(
        "# nameflow offline bench\n\nOne worker's `nameflow read` pipeline (decode, dispatch, flow shard, names) on traces held in memory and repeated (criterion, `benches/pipeline.rs`).\n\n| trace | frames | pps names on | pps names off | names cost | zeek pps | nameflow / zeek |\n|---|---|---|---|---|---|---|\n",
    );
    for (trace, (on, off, frames)) in &traces {
        let cost = match (on, off) {
            (Some(a), Some(b)) if *b > 0.0 => Some(1.0 - a / b),
            _ => None,
        };
        let zeek_pps = match (&zeek, find_trace(trace)) {
            (Some(z), Some(path)) => zeek_rate(z, &path, *frames).ok(),
            _ => None,
        };
        let vs_zeek = match (on, zeek_pps) {
            (Some(a), Some(z)) if z > 0.0 => Some(a / z),
            _ => None,
        };
        let f = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.0}"));
        md.push_str(&format!(
            "| {trace} | {frames:.0} | {} | {} | {} | {} | {} |\n",
            f(*on),
            f(*off),
            cost.map_or("n/a".into(), |c| format!("{c:.3}")),
            f(zeek_pps),
            vs_zeek.map_or("n/a".into(), |v| format!("{v:.1}")),
        ));
        rows.push(json!({
            "trace": trace,
            "frames": frames,
            "pps_names": on,
            "pps_no_names": off,
            "names_cost": cost,
            "zeek_pps": zeek_pps,
            "nameflow_vs_zeek": vs_zeek,
        }));
    }
    let zeek_note = match &zeek {
        Some(z) => format!(
            "zeek found at {}: `zeek -b -r TRACE` timed wall-clock, start-up included",
            z.display()
        ),
        None => "no `zeek` binary on PATH: the Zeek comparison was not run".to_string(),
    };
    md.push_str(&format!("\n{zeek_note}.\n"));
    let report = json!({
        "version": 1,
        "traces": rows,
        "zeek": zeek_note,
    });
    let dir = match args.out {
        Some(d) => d,
        None => root.join("target/bench").join(format!(
            "{}-offline",
            crate::output(Command::new("date").args(["-u", "+%Y%m%dT%H%M%SZ"]))?.trim()
        )),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    std::fs::write(
        dir.join("offline.json"),
        serde_json::to_string_pretty(&report)?,
    )
    .context("failed to write offline.json")?;
    std::fs::write(dir.join("offline.md"), &md).context("failed to write offline.md")?;
    println!("{md}");
    println!("report: {}", dir.join("offline.md").display());
    Ok(())
}

/// Every `new/benchmark.json` under `dir` with its estimates.
fn read_estimates(dir: &Path) -> Result<Vec<Estimate>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.file_name().and_then(|n| n.to_str()) != Some("benchmark.json")
                || p.parent()
                    .and_then(|q| q.file_name())
                    .and_then(|n| n.to_str())
                    != Some("new")
            {
                continue;
            }
            let read = |p: &Path| -> Result<Value> {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))
            };
            let b = read(&p)?;
            let est = read(&p.with_file_name("estimates.json"))?;
            let Some(func) = b["function_id"].as_str() else {
                continue;
            };
            // `TRACE/names` or `TRACE/no-names`; anything else is a result of an older
            // version of the bench and is not comparable.
            let Some((trace, mode)) = func
                .rsplit_once('/')
                .filter(|(_, m)| *m == "names" || *m == "no-names")
            else {
                continue;
            };
            let frames = b["throughput"]["Elements"].as_f64().unwrap_or(0.0);
            let mean_ns = est["mean"]["point_estimate"].as_f64().unwrap_or(0.0);
            if frames > 0.0 && mean_ns > 0.0 {
                out.push(Estimate {
                    trace: trace.to_string(),
                    names: mode == "names",
                    frames,
                    mean_ns,
                });
            }
        }
    }
    Ok(out)
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(bin))
            .find(|p| p.is_file())
    })
}

/// The shared trace with this file name.
fn find_trace(name: &str) -> Option<PathBuf> {
    let mut stack = vec![shared_dir()?];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().and_then(|n| n.to_str()) == Some(name) {
                return Some(p);
            }
        }
    }
    None
}

/// Frames per second of `zeek -b -r trace` (base scripts only, no logs kept).
fn zeek_rate(zeek: &Path, trace: &Path, frames: f64) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    run(Command::new(zeek)
        .current_dir(dir.path())
        .args(["-b", "-C", "-r"])
        .arg(trace)
        .arg("base/protocols/conn"))
    .context("zeek failed")?;
    Ok(frames / t.elapsed().as_secs_f64())
}

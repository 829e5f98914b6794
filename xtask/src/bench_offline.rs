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
    /// Also build the offline benchmark trace (`../shared/bench/mkbig.sh`: ~2M frames, 555k
    /// connections; kept in target/bench/big) and time the whole processes on it.
    #[arg(long)]
    pub big: bool,
    /// Only the whole-process comparison (skip the criterion pipeline bench).
    #[arg(long)]
    pub whole_only: bool,
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
    let dir = match &args.out {
        Some(d) => d.clone(),
        None => root.join("target/bench").join(format!(
            "{}-offline",
            crate::output(Command::new("date").args(["-u", "+%Y%m%dT%H%M%SZ"]))?.trim()
        )),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let (whole_md, whole_json) = whole_processes(&args, &root)?;
    if args.whole_only {
        std::fs::write(
            dir.join("offline.json"),
            serde_json::to_string_pretty(&whole_json)?,
        )
        .context("failed to write offline.json")?;
        std::fs::write(dir.join("offline.md"), &whole_md).context("failed to write offline.md")?;
        println!("{whole_md}");
        println!("report: {}", dir.join("offline.md").display());
        return Ok(());
    }
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
    md.push_str(&format!("\n{zeek_note}.\n\n"));
    md.push_str(&whole_md);
    let report = json!({
        "version": 2,
        "traces": rows,
        "zeek": zeek_note,
        "whole_process": whole_json,
    });
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

/// Traces the whole-process comparison runs on: real captures of the shared set (the nDPI
/// ones ndpiReader knows best), and the mkbig trace with `--big`.
const WHOLE_TRACES: [&str; 3] = ["1kxun.pcap", "alexa-app.pcapng", "android.pcap"];

/// The shortest run whose CPU time is a figure (`/usr/bin/time` counts in 10 ms steps).
const MIN_CPU_S: f64 = 0.1;

/// One tool's run on one file, from `/usr/bin/time`.
struct Usage {
    wall_s: f64,
    cpu_s: f64,
    max_rss_kb: u64,
}

/// Runs `cmd` under `/usr/bin/time` and reads back its CPU-seconds (user + system, every
/// thread) and peak RSS.
fn timed(cmd: &[&std::ffi::OsStr], cwd: &Path) -> Result<Usage> {
    let out = cwd.join("time.txt");
    let status = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%e %U %S %M")
        .arg("-o")
        .arg(&out)
        .args(cmd)
        .current_dir(cwd)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .with_context(|| format!("failed to run {:?}", cmd))?;
    if !status.success() {
        bail!("{:?} failed ({status})", cmd);
    }
    let text = std::fs::read_to_string(&out).context("failed to read /usr/bin/time's output")?;
    let last = text.lines().last().unwrap_or("");
    let v: Vec<f64> = last
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() != 4 {
        bail!("unexpected /usr/bin/time output {last:?}");
    }
    Ok(Usage {
        wall_s: v[0],
        cpu_s: v[1] + v[2],
        max_rss_kb: v[3] as u64,
    })
}

/// Frames in a capture, as nameflow counts them (its closing line).
fn frames_of(nameflow: &Path, trace: &Path, scratch: &Path) -> Result<f64> {
    let out = Command::new(nameflow)
        .args(["read", "-w", "1", "--no-names", "-o"])
        .arg(scratch.join("count"))
        .arg(trace)
        .output()
        .context("failed to run nameflow read")?;
    let err = String::from_utf8_lossy(&out.stderr);
    err.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no frame count in nameflow's summary: {err}"))
}

/// `nameflow read -w 1` (names on, names off), `ndpiReader` and, when on PATH, `zeek -r`
/// on the same files, one after the other: whole-process CPU-seconds, frames per CPU-second
/// and the ratios to nameflow.
fn whole_processes(args: &Args, root: &Path) -> Result<(String, Value)> {
    crate::demo::ensure_packages(&["time", "libndpi-bin"])?;
    let nameflow = crate::build_release_binary()?;
    let mut files = Vec::new();
    for t in WHOLE_TRACES {
        if let Some(p) = find_trace(t) {
            files.push(p);
        }
    }
    if args.big {
        files.push(big_trace(root)?);
    }
    if files.is_empty() {
        bail!("no trace for the whole-process comparison: is ../shared there?");
    }
    let zeek = which("zeek");
    let ndpi =
        which("ndpiReader").context("ndpiReader not on PATH after installing libndpi-bin")?;
    let scratch = tempfile::tempdir()?;
    let s = scratch.path();
    let mut md = String::from(
        "## Whole processes, same files, one after the other\n\nCPU-seconds are user + system of every thread (`/usr/bin/time`); frames per CPU-second = frames / CPU-seconds. `nameflow read -w 1` writes JSON conn.log to a file; `ndpiReader -q -i FILE -C out.csv` runs DPI on every flow (one thread); `zeek -r FILE` with its default scripts when a `zeek` binary is on PATH.\n\n| file | frames | tool | CPU-s | wall s | peak RSS MiB | M frames / CPU-s | CPU-s / ndpiReader's |\n|---|---|---|---|---|---|---|---|\n",
    );
    let mut rows = Vec::new();
    for f in &files {
        let frames = frames_of(&nameflow, f, s)?;
        let name = f
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned());
        let o = |x: &str| s.join(x).into_os_string();
        let nf = nameflow.as_os_str().to_owned();
        let fa = f.as_os_str().to_owned();
        let runs: Vec<(&str, Vec<std::ffi::OsString>)> = {
            let mut v = vec![
                (
                    "nameflow (names on)",
                    vec![
                        nf.clone(),
                        "read".into(),
                        "-w".into(),
                        "1".into(),
                        "-o".into(),
                        o(&format!("{name}.on")),
                        fa.clone(),
                    ],
                ),
                (
                    "nameflow (names off)",
                    vec![
                        nf.clone(),
                        "read".into(),
                        "-w".into(),
                        "1".into(),
                        "--no-names".into(),
                        "-o".into(),
                        o(&format!("{name}.off")),
                        fa.clone(),
                    ],
                ),
                (
                    "ndpiReader",
                    vec![
                        ndpi.clone().into_os_string(),
                        "-q".into(),
                        "-i".into(),
                        fa.clone(),
                        "-C".into(),
                        o(&format!("{name}.ndpi.csv")),
                    ],
                ),
            ];
            if let Some(z) = &zeek {
                v.push((
                    "zeek",
                    vec![
                        z.clone().into_os_string(),
                        "-C".into(),
                        "-r".into(),
                        fa.clone(),
                    ],
                ));
            }
            v
        };
        let mut usages = Vec::new();
        for (tool, cmd) in &runs {
            let argv: Vec<&std::ffi::OsStr> = cmd.iter().map(|a| a.as_os_str()).collect();
            let u = timed(&argv, s).with_context(|| format!("{tool} on {}", f.display()))?;
            usages.push((*tool, u));
        }
        let ndpi_cpu = usages
            .iter()
            .find(|(t, _)| *t == "ndpiReader")
            .map(|(_, u)| u.cpu_s);
        for (tool, u) in &usages {
            // `/usr/bin/time` counts in 10 ms steps: a run shorter than this is not a figure.
            let timed_ok = u.cpu_s >= MIN_CPU_S && ndpi_cpu.is_some_and(|n| n >= MIN_CPU_S);
            let mfps = (u.cpu_s >= MIN_CPU_S).then(|| frames / u.cpu_s / 1e6);
            let vs = ndpi_cpu.filter(|_| timed_ok).map(|n| u.cpu_s / n);
            md.push_str(&format!(
                "| {name} | {frames:.0} | {tool} | {:.2} | {:.2} | {:.1} | {} | {} |\n",
                u.cpu_s,
                u.wall_s,
                u.max_rss_kb as f64 / 1024.0,
                mfps.map_or("too short".into(), |v| format!("{v:.2}")),
                vs.map_or("n/a".into(), |v| format!("{v:.2}")),
            ));
            rows.push(json!({
                "file": name,
                "frames": frames,
                "tool": tool,
                "cpu_s": u.cpu_s,
                "wall_s": u.wall_s,
                "max_rss_kb": u.max_rss_kb,
                "mframes_per_cpu_s": mfps,
                "cpu_vs_ndpireader": vs,
            }));
        }
    }
    if zeek.is_none() {
        md.push_str("\nNo `zeek` binary on PATH: Zeek was not timed.\n");
    }
    Ok((md, Value::Array(rows)))
}

/// The mkbig trace under target/bench/big, built once (needs wireshark-common's editcap).
fn big_trace(root: &Path) -> Result<PathBuf> {
    let dir = root.join("target/bench/big");
    let big = dir.join("big.pcap");
    if big.is_file() {
        return Ok(big);
    }
    let script = shared_dir()
        .map(|d| d.join("bench/mkbig.sh"))
        .filter(|p| p.is_file())
        .context("../shared/bench/mkbig.sh not found")?;
    crate::demo::ensure_packages(&["wireshark-common"])?;
    run(Command::new("bash").arg(&script).arg(&dir)).with_context(|| {
        format!(
            "failed to build the benchmark trace with {}",
            script.display()
        )
    })?;
    Ok(big)
}

//! `cargo xtask bench`: packet loss against offered rate, for nameflow and, in the same run
//! on the same veth, the machine's ceilings (an XDP program that only drops; a plain
//! AF_PACKET reader).
//!
//! Two network namespaces made for the run hold the two ends of a veth pair; both are
//! deleted on every exit path. The generator (`nameflow-bench gen`, BPF_PROG_RUN live frames
//! of `gen_tx` in `bench/bench.bpf.c`) runs in the sending namespace, pinned to one CPU; the
//! receiver under test runs in the other, pinned to another. Every step starts a fresh
//! receiver, sends for a fixed time at a paced rate, stops the receiver, and reconciles
//! exactly: frames the generator built = frames the receiver got + frames counted as dropped
//! somewhere (veth transmit errors, socket or ring drops) + unaccounted (must be 0).
//!
//! On veth the receive side's kernel work (the XDP program, the copy into AF_XDP or the skb
//! for AF_PACKET) runs in the generator's softirq, on the generator's CPU; only the user-space
//! receiver has the other CPU. A receiver whose kernel path is slow therefore lowers the rate
//! the generator achieves rather than losing packets; this is why every rate in the report is
//! the rate achieved, measured, and not the one asked for.

use crate::bench_report::{self, Report, Step};
use crate::{cargo, describe, output, run, workspace_root};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(subcommand)]
    pub offline: Option<OfflineCmd>,
    /// A smoke run (under 3 minutes): the udp64 and dns templates, short steps, a coarse
    /// search.
    #[arg(long)]
    pub quick: bool,
    /// Templates to sweep (comma-separated): udp64, imix, tcp, dns, synflood.
    #[arg(long, value_delimiter = ',')]
    pub templates: Vec<String>,
    /// Receivers to sweep (comma-separated): xdp_drop, af_packet, nameflow,
    /// nameflow_no_names.
    #[arg(long, value_delimiter = ',')]
    pub receivers: Vec<String>,
    /// Seconds of traffic per step.
    #[arg(long)]
    pub step_secs: Option<f64>,
    /// Binary-search steps at the loss edge.
    #[arg(long)]
    pub search_steps: Option<u32>,
    /// CPU of the generator (and, on veth, of the receive softirq).
    #[arg(long, default_value_t = 0)]
    pub gen_cpu: usize,
    /// CPU of the user-space receiver (nameflow's worker, the AF_PACKET reader).
    #[arg(long, default_value_t = 1)]
    pub rx_cpu: usize,
    /// Use the dev-profile binaries (target/debug) instead of building release ones: only
    /// for smoke tests, the figures are meaningless.
    #[arg(long)]
    pub debug_build: bool,
    /// Write the report here instead of target/bench/<timestamp>.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run between two existing interfaces joined by a link (two NIC ports and a loop
    /// cable) instead of a veth pair: the generator transmits on this one. Nothing is created
    /// or removed on either beyond the XDP programs the run attaches, and every one is
    /// detached at the end. Needs --rx-iface.
    #[arg(long, value_name = "IFACE", requires = "rx_iface")]
    pub tx_iface: Option<String>,
    /// The receiving end of --tx-iface's link: the receivers (nameflow, AF_PACKET, the XDP
    /// ceilings) run on it; its driver, XDP mode and zero-copy state go into the report.
    #[arg(long, value_name = "IFACE", requires = "tx_iface")]
    pub rx_iface: Option<String>,
    /// A soak run instead of the sweep: nameflow alone for MINUTES at half its zero-loss rate
    /// (or --rate) on the imix template (or the one --templates names: imix or udp64), its
    /// RSS sampled every second; writes soak.json, soak.md and soak-rss.svg. Not run in CI.
    #[arg(long, value_name = "MINUTES")]
    pub soak: Option<f64>,
    /// The soak's rate (frames/s) instead of half the zero-loss rate a short search finds.
    #[arg(long, value_name = "PPS", requires = "soak")]
    pub rate: Option<u64>,
}

impl Args {
    /// `--quick --debug-build` into target/bench/smoke: the run `cargo xtask test` makes.
    pub fn smoke() -> Args {
        Args {
            offline: None,
            quick: true,
            templates: Vec::new(),
            receivers: Vec::new(),
            step_secs: None,
            search_steps: None,
            gen_cpu: 0,
            rx_cpu: 1,
            debug_build: true,
            out: Some(workspace_root().join("target/bench/smoke")),
            tx_iface: None,
            rx_iface: None,
            soak: None,
            rate: None,
        }
    }
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum OfflineCmd {
    /// Offline throughput per worker (`nameflow read`'s pipeline on traces held in memory),
    /// names on and off, and Zeek's when a `zeek` binary is on PATH.
    Offline(crate::bench_offline::Args),
}

/// The receivers, in the order they run for each template.
pub const RECEIVERS: &[&str] = &[
    "xdp_drop",
    "af_packet",
    "af_xdp",
    "nameflow",
    "nameflow_no_names",
];

/// AF_XDP ring and frame sizes of the `af_xdp` and nameflow receivers. 8192 descriptors hold
/// 4 ms at 2 Mpps: on a shared VM, kernel threads (RCU, DAMON) take the receiver's CPU for
/// up to a few milliseconds, and the AF_PACKET reader's 4 MiB ring holds some 30,000 small
/// frames. 2048-byte frames keep the UMEM at 32 MiB.
pub const XSK_RING: &str = "8192";
pub const XSK_FRAME: &str = "2048";
/// Niceness of the generator and the receivers: other work on a shared machine then takes
/// little of their CPUs during a step (the report still shows the load).
const NICE: &str = "-15";
const TEMPLATES_FULL: &[&str] = &["udp64", "imix", "tcp", "dns", "synflood"];
const TEMPLATES_QUICK: &[&str] = &["udp64", "dns"];

/// Why the bench cannot run here, or `None`.
pub fn skip_reason() -> Option<String> {
    match output(Command::new("id").arg("-u")) {
        Ok(uid) if uid.trim() == "0" => None,
        Ok(uid) => Some(format!(
            "the bench creates network namespaces and attaches XDP programs: it needs root (running as uid {})",
            uid.trim()
        )),
        Err(e) => Some(format!("cannot tell who we are: {e:#}")),
    }
}

pub fn bench(args: Args) -> Result<()> {
    if let Some(OfflineCmd::Offline(a)) = args.offline {
        return crate::bench_offline::offline(a);
    }
    if let Some(reason) = skip_reason() {
        bail!("{reason}");
    }
    if let (Some(tx), Some(rx)) = (&args.tx_iface, &args.rx_iface) {
        // Before anything is built: a wrong name or a busy interface is said at once.
        check_existing(tx, rx)?;
    }
    let started = Instant::now();
    ensure_tools()?;
    let root = workspace_root();
    let (bin, helper) = build(args.debug_build)?;
    let out_dir = match &args.out {
        Some(d) => d.clone(),
        None => root.join("target/bench").join(timestamp()?),
    };
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("failed to create {}", out_dir.display()))?;
    let obj = compile_bpf(&out_dir)?;

    let templates: Vec<String> = if args.templates.is_empty() {
        let list = if args.quick {
            TEMPLATES_QUICK
        } else {
            TEMPLATES_FULL
        };
        list.iter().map(|s| s.to_string()).collect()
    } else {
        args.templates.clone()
    };
    let mut receivers: Vec<String> = if args.receivers.is_empty() {
        RECEIVERS.iter().map(|s| s.to_string()).collect()
    } else {
        args.receivers.clone()
    };
    for r in &receivers {
        if !RECEIVERS.contains(&r.as_str()) {
            bail!(
                "unknown receiver {r:?}: choose among {}",
                RECEIVERS.join(", ")
            );
        }
    }
    let has_no_names = output(Command::new(&bin).args(["capture", "--help"]))
        .map(|h| h.contains("--no-names"))
        .unwrap_or(false);
    let mut notes = Vec::new();
    if !has_no_names {
        notes.push(
            "this nameflow has no --no-names flag yet: nameflow_no_names runs the same binary \
             the same way as nameflow, and names_cost is not measured"
                .to_string(),
        );
    }
    receivers.dedup();

    let cfg = SweepConfig {
        step: Duration::from_secs_f64(args.step_secs.unwrap_or(if args.quick { 1.0 } else { 3.0 })),
        search_steps: args.search_steps.unwrap_or(if args.quick { 2 } else { 4 }),
        quick: args.quick,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (gen_cpu, rx_cpu) = if args.gen_cpu.max(args.rx_cpu) >= cores {
        notes.push(format!(
            "this machine has {cores} CPU(s): generator and receiver share CPU 0"
        ));
        (0, 0)
    } else {
        (args.gen_cpu, args.rx_cpu)
    };
    let load_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let pair = match (&args.tx_iface, &args.rx_iface) {
        (Some(tx), Some(rx)) => {
            notes.push(format!(
                "run between this host's interfaces {tx} (generator) and {rx} (receivers), not on a veth pair: the link must carry only the bench's frames (a loop cable; no LLDP, no IPv6 autoconfiguration), or extra frames break the account"
            ));
            Link::existing(tx, rx)?
        }
        _ => Link::veth()?,
    };
    let ctx = Ctx {
        bin: &bin,
        helper: &helper,
        obj: &obj,
        pair: &pair,
        gen_cpu,
        rx_cpu,
        out_dir: &out_dir,
        has_no_names,
        stats_interval: 3600,
    };
    if let Some(minutes) = args.soak {
        let r = soak(&ctx, &args, minutes, &load_start, started);
        drop(pair);
        return r;
    }
    let mut report = Report::new(
        args.quick,
        &templates,
        &receivers,
        &cfg_summary(&cfg, &args),
    );
    report.machine = machine(&ctx, &load_start)?;
    report.notes = notes;
    report.names_measured = has_no_names;
    let mut step_no = 0usize;
    for template in &templates {
        for receiver in &receivers {
            eprintln!("==> {template} → {receiver}");
            let steps = sweep(&ctx, &cfg, template, receiver, &mut step_no)?;
            report.steps.extend(steps);
        }
        // The loss names cause on the DNS mix: names on at the rate names off holds.
        if template == "dns"
            && has_no_names
            && receivers.iter().any(|r| r == "nameflow")
            && receivers.iter().any(|r| r == "nameflow_no_names")
        {
            if let Some(rate) =
                bench_report::zero_loss_target(&report.steps, "dns", "nameflow_no_names")
            {
                eprintln!("==> dns → nameflow at nameflow_no_names' zero-loss rate");
                step_no += 1;
                let mut s = step(&ctx, &cfg, "dns", "nameflow", rate, step_no)?;
                s.phase = "names_check".into();
                report.steps.push(s);
            }
        }
    }
    if !pair.owned {
        // The zero-copy state as nameflow's socket reported it (stats.log's zero_copy).
        let zc: Vec<f64> = report.steps.iter().filter_map(|s| s.zero_copy).collect();
        report.machine.xdp_mode += &match (zc.iter().any(|&z| z > 0.0), zc.is_empty()) {
            (_, true) => ", AF_XDP zero-copy unknown (no nameflow step)".to_string(),
            (true, _) => ", AF_XDP zero-copy on".to_string(),
            (false, _) => ", AF_XDP copy mode (the driver gave no zero-copy)".to_string(),
        };
    }
    report.machine.load_end = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string();
    report.elapsed_s = started.elapsed().as_secs_f64();
    report.finish();
    bench_report::write(&report, &out_dir)?;
    drop(pair);
    println!("report: {}", out_dir.join("report.md").display());
    println!("{}", report.summary());
    // The account must close on every step, and every receiver must have received: a
    // harness that loses track of frames or measures nothing is broken, whatever the rates.
    let broken: Vec<String> = report
        .steps
        .iter()
        .filter(|s| s.unaccounted != 0 || (s.sent > 0 && s.received == 0) || s.sent == 0)
        .map(|s| {
            format!(
                "step {} ({} → {}): {}",
                s.no,
                s.template,
                s.receiver,
                s.line()
            )
        })
        .collect();
    if !broken.is_empty() {
        bail!(
            "{} step(s) did not reconcile (sent = received + dropped) or received nothing:\n{}",
            broken.len(),
            broken.join("\n")
        );
    }
    Ok(())
}

fn cfg_summary(cfg: &SweepConfig, args: &Args) -> serde_json::Value {
    serde_json::json!({
        "step_secs": cfg.step.as_secs_f64(),
        "search_steps": cfg.search_steps,
        "gen_cpu": args.gen_cpu,
        "rx_cpu": args.rx_cpu,
        "debug_build": args.debug_build,
        "xsk_ring_size": XSK_RING.parse::<u32>().ok(),
        "xsk_frame_size": XSK_FRAME.parse::<u32>().ok(),
    })
}

struct SweepConfig {
    step: Duration,
    search_steps: u32,
    quick: bool,
}

struct Ctx<'a> {
    bin: &'a Path,
    helper: &'a Path,
    obj: &'a Path,
    pair: &'a Link,
    gen_cpu: usize,
    rx_cpu: usize,
    out_dir: &'a Path,
    has_no_names: bool,
    /// nameflow's --stats-interval (s): once at exit for a step, every second in a soak.
    stats_interval: u32,
}

/// Finds the highest rate at which `receiver` loses nothing. One unpaced step gives the
/// most the generator achieves through this receiver; if that loses nothing, it is the
/// answer (a few lower steps are added for the plot). Otherwise rates climb in fractions of
/// it until the first loss (halving below the first fraction when even that loses), and a
/// binary search narrows the edge between the best loss-free and the first lossy rate.
fn sweep(
    ctx: &Ctx<'_>,
    cfg: &SweepConfig,
    template: &str,
    receiver: &str,
    step_no: &mut usize,
) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    let mut run_step = |rate: f64, phase: &str, steps: &mut Vec<Step>| -> Result<Step> {
        *step_no += 1;
        let mut s = step(ctx, cfg, template, receiver, rate as u64, *step_no)?;
        s.phase = phase.into();
        eprintln!("    {}", s.line());
        steps.push(s.clone());
        Ok(s)
    };
    let first = run_step(0.0, "max", &mut steps)?;
    let mut go = |rate: f64, phase: &str, steps: &mut Vec<Step>| -> Result<bool> {
        Ok(run_step(rate, phase, steps)?.lost() == 0)
    };
    let top = first.achieved_pps.max(1000.0);
    let fractions: &[f64] = if cfg.quick {
        &[0.25, 0.5, 0.8]
    } else {
        &[0.1, 0.25, 0.4, 0.55, 0.7, 0.85, 0.95]
    };
    if first.lost() == 0 {
        let curve = if cfg.quick { 1 } else { 3 };
        for f in fractions.iter().step_by(2).take(curve) {
            go(top * f, "curve", &mut steps)?;
        }
        return Ok(steps);
    }
    // Climb until the first loss.
    let mut good: Option<f64> = None;
    let mut bad = top;
    for f in fractions {
        if go(top * f, "sweep", &mut steps)? {
            good = Some(top * f);
        } else {
            bad = top * f;
            break;
        }
    }
    // Even the lowest fraction lost packets: halve until a rate does not.
    if good.is_none() {
        let mut rate = bad;
        for _ in 0..4 {
            rate /= 2.0;
            if go(rate, "search", &mut steps)? {
                good = Some(rate);
                break;
            }
            bad = rate;
        }
    }
    let Some(mut lo) = good else {
        return Ok(steps);
    };
    for _ in 0..cfg.search_steps {
        if bad - lo < top * 0.02 {
            break;
        }
        let mid = (lo + bad) / 2.0;
        if go(mid, "search", &mut steps)? {
            lo = mid;
        } else {
            bad = mid;
        }
    }
    Ok(steps)
}

/// One step: a fresh receiver, `cfg.step` of traffic at `rate` (0: unpaced), the account.
fn step(
    ctx: &Ctx<'_>,
    cfg: &SweepConfig,
    template: &str,
    receiver: &str,
    rate: u64,
    no: usize,
) -> Result<Step> {
    let dir = ctx
        .out_dir
        .join(format!("steps/{no:03}-{template}-{receiver}"));
    // A report folder used again (the smoke run's): nameflow would append to the old step's
    // logs, and each step reads its own.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let pair = ctx.pair;
    let rx = Receiver::start(ctx, receiver, &dir)?;
    let snd_before = pair.ethtool(&pair.snd_ns, &pair.snd)?;
    let stat_before = proc_stat();
    let cpu_before = rx.thread_cpu();
    let mut gen = Link::command(&pair.snd_ns, "nice");
    gen.args(["-n", NICE])
        .arg(ctx.helper)
        .args(["--cpu", &ctx.gen_cpu.to_string(), "gen", "--obj"])
        .arg(ctx.obj)
        .args(["--iface", &pair.snd, "--template", template])
        .args(["--rate", &rate.to_string()])
        .args(["--duration", &format!("{}", cfg.step.as_secs_f64())]);
    let gen_out = output(&mut gen).context("the generator failed")?;
    let cpu_after = rx.thread_cpu();
    let stat_after = proc_stat();
    let g = last_json(&gen_out).context("the generator printed no result")?;
    // Let the receiver empty its rings before it is stopped.
    std::thread::sleep(Duration::from_millis(300));
    let snd_after = pair.ethtool(&pair.snd_ns, &pair.snd)?;
    let r = rx.stop()?;

    let num = |j: &serde_json::Value, k: &str| j.get(k).and_then(|v| v.as_f64()).unwrap_or(0.0);
    let sent = num(&g, "sent") as u64;
    let elapsed = num(&g, "elapsed_s");
    let link_dropped = counter_delta(&snd_before, &snd_after, |k| k.contains("xmit_err"));
    let mut s = Step {
        no,
        template: template.into(),
        receiver: receiver.into(),
        target_pps: rate as f64,
        achieved_pps: num(&g, "achieved_pps"),
        sent,
        duration_s: elapsed,
        gen_late_batches: num(&g, "late_batches") as u64,
        link_dropped,
        ns_per_frame: f64::NAN,
        ..Step::default()
    };
    // Busiest thread of the receiver: its worker (or the only thread of the reader).
    s.worker_cpu = busiest(&cpu_before, &cpu_after) / elapsed.max(1e-9);
    s.softirq_cpu = softirq_share(&stat_before, &stat_after);
    match receiver {
        "xdp_drop" => {
            let j = r.json.context("the XDP sink printed no result")?;
            s.received = num(&j, "packets") as u64;
        }
        "af_xdp" => {
            let j = r.json.context("the AF_XDP reader printed no result")?;
            s.received = num(&j, "packets") as u64;
            // rx_dropped counts fill-ring-empty drops; ring-full drops are apart. Frames XDP
            // saw but did not redirect would be neither (none are sent after the stop).
            s.receiver_dropped = (num(&j, "rx_dropped") + num(&j, "rx_ring_full")) as u64
                + (num(&j, "xdp_seen") as u64).saturating_sub(num(&j, "xdp_redirected") as u64);
            s.set_latency(&j);
        }
        "af_packet" => {
            let j = r.json.context("the AF_PACKET reader printed no result")?;
            let pass = r.json2.context("the XDP pass counter printed no result")?;
            s.received = num(&j, "packets") as u64;
            let kernel_packets = num(&j, "kernel_packets") as u64;
            let xdp_seen = num(&pass, "packets") as u64;
            // Frames the kernel saw in XDP but never offered to the socket, plus ring drops.
            s.receiver_dropped =
                num(&j, "kernel_drops") as u64 + xdp_seen.saturating_sub(kernel_packets);
            s.set_latency(&j);
        }
        _ => {
            let stats = r.stats.context("nameflow wrote no stats.log")?;
            nameflow_account(&mut s, &stats, receiver == "nameflow" && ctx.has_no_names);
        }
    }
    s.finish();
    Ok(s)
}

/// A nameflow step's account and latency from its last stats.log `all` row.
fn nameflow_account(s: &mut Step, stats: &HashMap<String, f64>, names: bool) {
    let n = |k: &str| stats.get(k).copied().unwrap_or(0.0);
    s.received = n("frames") as u64;
    // Passed or filtered in XDP (non-IP, bypass) would be neither; none are sent.
    s.receiver_dropped = n("dropped") as u64
        + (n("xdp_seen") as u64)
            .saturating_sub(n("xdp_redirected") as u64 + n("xdp_dropped_filter") as u64);
    s.names = names;
    s.batch_p50_us = n("batch_p50_ns") / 1e3;
    s.batch_p99_us = n("batch_p99_ns") / 1e3;
    s.batch_p999_us = n("batch_p999_ns") / 1e3;
    s.batch_max_us = n("batch_max_ns") / 1e3;
    s.ns_per_frame = n("batch_busy_ns") / n("frames");
    s.batches = n("batches") as u64;
    s.zero_copy = stats.get("zero_copy").copied();
    s.records = n("records") as u64;
}

/// A running receiver: one or two processes in the capture namespace.
struct Receiver {
    kind: String,
    procs: Vec<Proc>,
    dir: PathBuf,
}

struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    all: Vec<String>,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr read line by line into one channel.
    fn spawn(mut cmd: Command) -> Result<Proc> {
        let desc = describe(&cmd);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("failed to start `{desc}`"))?;
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx2.send(l);
            }
        });
        Ok(Proc {
            child,
            lines: rx,
            all: Vec::new(),
        })
    }

    /// Waits until a line contains `what`; fails if the process exits or 20 s pass.
    fn wait_for(&mut self, what: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(50)) {
                Ok(l) => {
                    let hit = l.contains(what);
                    self.all.push(l);
                    if hit {
                        return Ok(());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(st)) = self.child.try_wait() {
                        bail!(
                            "receiver exited ({st}) before it was ready: {}",
                            self.all.join("\n")
                        );
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        bail!(
            "receiver not ready after 20 s (waited for {what:?}): {}",
            self.all.join("\n")
        )
    }

    /// SIGTERM, then the rest of its output once it exits (SIGKILL after 20 s).
    fn stop(mut self) -> Result<Vec<String>> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait()? {
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(100)) {
                    self.all.push(l);
                }
                if !st.success() {
                    bail!("receiver exited with {st}: {}", self.all.join("\n"));
                }
                return Ok(std::mem::take(&mut self.all));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("receiver did not stop within 20 s of SIGTERM; killed it");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

struct Stopped {
    json: Option<serde_json::Value>,
    json2: Option<serde_json::Value>,
    stats: Option<HashMap<String, f64>>,
}

impl Receiver {
    fn start(ctx: &Ctx<'_>, kind: &str, dir: &Path) -> Result<Receiver> {
        let pair = ctx.pair;
        let rx_cpu = ctx.rx_cpu.to_string();
        let helper = |args: &[&str]| {
            let mut c = Link::command(&pair.cap_ns, "nice");
            c.args(["-n", NICE]).arg(ctx.helper);
            c.args(args);
            c
        };
        let obj = ctx.obj.to_string_lossy().into_owned();
        let mut procs = Vec::new();
        match kind {
            "xdp_drop" => {
                let mut p = Proc::spawn(helper(&["sink", "--obj", &obj, "--iface", &pair.cap]))?;
                p.wait_for("ready")?;
                procs.push(p);
            }
            "af_xdp" => {
                let mut p = Proc::spawn(helper(&[
                    "--cpu",
                    &rx_cpu,
                    "af-xdp",
                    "--iface",
                    &pair.cap,
                    "--ring-size",
                    XSK_RING,
                    "--frame-size",
                    XSK_FRAME,
                ]))?;
                p.wait_for("ready")?;
                procs.push(p);
            }
            "af_packet" => {
                // veth takes XDP frames from its peer only while an XDP program runs on it.
                let mut pass = Proc::spawn(helper(&[
                    "sink", "--obj", &obj, "--iface", &pair.cap, "--pass",
                ]))?;
                pass.wait_for("ready")?;
                let mut r = Proc::spawn(helper(&[
                    "--cpu",
                    &rx_cpu,
                    "af-packet",
                    "--iface",
                    &pair.cap,
                ]))?;
                r.wait_for("ready")?;
                procs.push(r);
                procs.push(pass);
            }
            _ => {
                let mut c = Link::command(&pair.cap_ns, "nice");
                c.args(["-n", NICE]).arg(ctx.bin);
                c.args(["capture", "-i", &pair.cap, "-w", "1", "--cpus", &rx_cpu]);
                c.args(["--xdp-mode", "native", "--stats-interval"]);
                c.arg(ctx.stats_interval.to_string());
                c.args(["--ring-size", XSK_RING, "--frame-size", XSK_FRAME, "-o"]);
                c.arg(dir.join("logs"));
                if kind == "nameflow_no_names" && ctx.has_no_names {
                    c.arg("--no-names");
                }
                let mut p = Proc::spawn(c)?;
                p.wait_for("XDP attached")?;
                procs.push(p);
            }
        }
        Ok(Receiver {
            kind: kind.into(),
            procs,
            dir: dir.to_path_buf(),
        })
    }

    /// CPU time (ticks) of every thread of the first process.
    fn thread_cpu(&self) -> HashMap<String, u64> {
        let pid = self.procs[0].child.id();
        let mut out = HashMap::new();
        let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return out;
        };
        for e in rd.flatten() {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            let t = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
                + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            out.insert(e.file_name().to_string_lossy().into_owned(), t);
        }
        out
    }

    fn stop(self) -> Result<Stopped> {
        let mut outs = Vec::new();
        for p in self.procs {
            outs.push(p.stop()?);
        }
        let mut st = Stopped {
            json: None,
            json2: None,
            stats: None,
        };
        let j = |lines: &[String]| last_json(&lines.join("\n"));
        match self.kind.as_str() {
            "xdp_drop" | "af_xdp" => st.json = j(&outs[0]),
            "af_packet" => {
                st.json = j(&outs[0]);
                st.json2 = j(&outs[1]);
            }
            _ => {
                std::fs::write(self.dir.join("nameflow.stderr"), outs[0].join("\n"))
                    .context("failed to save nameflow's output")?;
                st.stats = Some(last_all_row(&self.dir.join("logs/stats.log"))?);
            }
        }
        Ok(st)
    }
}

/// The last `all` row of a stats.log in Zeek JSON (nameflow's default format), by column.
fn last_all_row(path: &Path) -> Result<HashMap<String, f64>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let row = text
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["worker"] == "all")
        .with_context(|| format!("{} has no `all` row", path.display()))?;
    Ok(row
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect()
        })
        .unwrap_or_default())
}

/// The last line of `text` that parses as a JSON object.
fn last_json(text: &str) -> Option<serde_json::Value> {
    text.lines()
        .rev()
        .filter(|l| l.starts_with('{'))
        .find_map(|l| serde_json::from_str(l).ok())
}

fn busiest(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> f64 {
    let tick = 100.0; // USER_HZ on Linux.
    after
        .iter()
        .map(|(tid, a)| a.saturating_sub(*before.get(tid).unwrap_or(&0)))
        .max()
        .unwrap_or(0) as f64
        / tick
}

/// Per-CPU (busy-ish softirq, total) jiffies from /proc/stat.
fn proc_stat() -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            (v.get(6).copied().unwrap_or(0), v.iter().sum())
        })
        .collect()
}

/// Share of each CPU's time spent in softirq between two readings.
fn softirq_share(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let total = y.1.saturating_sub(x.1).max(1) as f64;
            y.0.saturating_sub(x.0) as f64 / total
        })
        .collect()
}

fn counter_delta(
    a: &HashMap<String, u64>,
    b: &HashMap<String, u64>,
    pick: impl Fn(&str) -> bool,
) -> u64 {
    b.iter()
        .filter(|(k, _)| pick(k))
        .map(|(k, v)| v.saturating_sub(*a.get(k).unwrap_or(&0)))
        .sum()
}

/// The two interfaces the bench runs between: a single-queue veth pair between two namespaces
/// made for the run (deleted on drop), or two existing interfaces of this host joined by a
/// link (`--tx-iface`, `--rx-iface`; in the root namespace, left as they were except for the
/// programs the run attaches, and any of those still attached is detached on drop).
pub struct Link {
    /// The namespaces, when the run made them; `None`: the root namespace.
    pub snd_ns: Option<String>,
    pub cap_ns: Option<String>,
    pub snd: String,
    pub cap: String,
    /// True for the veth pair this run made.
    owned: bool,
}

impl Link {
    /// `program`, run in `ns` (or where we are).
    fn command(ns: &Option<String>, program: &str) -> Command {
        match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        }
    }

    fn veth() -> Result<Link> {
        let tag = std::process::id() % 100_000;
        let (snd_ns, cap_ns) = (format!("nfbench-s{tag}"), format!("nfbench-c{tag}"));
        let pair = Link {
            snd_ns: Some(snd_ns.clone()),
            cap_ns: Some(cap_ns.clone()),
            snd: format!("nfbs{tag}"),
            cap: format!("nfbc{tag}"),
            owned: true,
        };
        for ns in [&snd_ns, &cap_ns] {
            run(Command::new("ip").args(["netns", "add", ns]))?;
            // No IPv6 autoconfiguration: the kernel's own solicitations would be traffic
            // nobody sent.
            run(Command::new("ip").args([
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]))?;
        }
        run(Command::new("ip").args([
            "link",
            "add",
            &pair.snd,
            "numrxqueues",
            "1",
            "numtxqueues",
            "1",
            "netns",
            &snd_ns,
            "type",
            "veth",
            "peer",
            "name",
            &pair.cap,
            "numrxqueues",
            "1",
            "numtxqueues",
            "1",
            "netns",
            &cap_ns,
        ]))?;
        run(Command::new("ip").args(["-n", &snd_ns, "link", "set", &pair.snd, "up"]))?;
        run(Command::new("ip").args(["-n", &cap_ns, "link", "set", &pair.cap, "up"]))?;
        Ok(pair)
    }

    /// The operator's interfaces, checked and left as they are: both must exist, differ, be
    /// up, and carry no XDP program yet (one the run did not attach is never replaced).
    fn existing(tx: &str, rx: &str) -> Result<Link> {
        check_existing(tx, rx)?;
        Ok(Link {
            snd_ns: None,
            cap_ns: None,
            snd: tx.to_string(),
            cap: rx.to_string(),
            owned: false,
        })
    }

    fn ethtool(&self, ns: &Option<String>, dev: &str) -> Result<HashMap<String, u64>> {
        // Not every driver has statistics (`ethtool -S` fails): then there are none to count.
        let text = output(Link::command(ns, "ethtool").args(["-S", dev])).unwrap_or_default();
        Ok(text
            .lines()
            .filter_map(|l| {
                let (k, v) = l.trim().split_once(':')?;
                Some((k.trim().to_string(), v.trim().parse().ok()?))
            })
            .collect())
    }

    pub fn driver(&self) -> String {
        output(Link::command(&self.cap_ns, "ethtool").args(["-i", &self.cap]))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("driver: ").map(str::to_string))
            })
            .unwrap_or_else(|| "unknown".into())
    }

    /// RX queues of the receiving interface.
    fn rx_queues(&self) -> u32 {
        if self.owned {
            return 1;
        }
        std::fs::read_dir(Path::new("/sys/class/net").join(&self.cap).join("queues"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                    .count() as u32
            })
            .unwrap_or(1)
    }
}

/// `--tx-iface`/`--rx-iface` as given: both must exist, differ, be up, and carry no XDP
/// program yet (one the run did not attach is never replaced).
fn check_existing(tx: &str, rx: &str) -> Result<()> {
    if tx == rx {
        bail!("--tx-iface and --rx-iface are both {tx}: give the two ends of a link");
    }
    for dev in [tx, rx] {
        let sys = Path::new("/sys/class/net").join(dev);
        if !sys.exists() {
            bail!("no interface {dev} here (ip link show lists them); give two interfaces joined by a cable");
        }
        let state = std::fs::read_to_string(sys.join("operstate")).unwrap_or_default();
        if state.trim() == "down" {
            bail!("{dev} is down: bring it up (ip link set dev {dev} up) and check its cable");
        }
        if let Some(prog) = xdp_attached(dev) {
            bail!("{dev} already has an XDP program attached ({prog}); the bench does not replace programs it did not attach: detach it (ip link set dev {dev} xdp off) or pick other interfaces");
        }
    }
    Ok(())
}

/// The XDP program attached to `dev` in this namespace, as `ip -d link` shows it
/// (`prog/xdp id 42 ...`), if any.
fn xdp_attached(dev: &str) -> Option<String> {
    let text = output(Command::new("ip").args(["-d", "link", "show", "dev", dev])).ok()?;
    text.lines()
        .find(|l| l.contains("prog/xdp"))
        .map(|l| l.trim().to_string())
}

impl Drop for Link {
    fn drop(&mut self) {
        if self.owned {
            for ns in self.snd_ns.iter().chain(&self.cap_ns) {
                let _ = Command::new("ip").args(["netns", "del", ns]).output();
            }
            return;
        }
        // Every receiver detaches its program when it exits; whatever is still attached was
        // attached by this run (there was none at the start) and goes now.
        for dev in [&self.snd, &self.cap] {
            if let Some(prog) = xdp_attached(dev) {
                eprintln!("bench: detaching {prog} left on {dev}");
                for mode in ["xdp", "xdpgeneric", "xdpdrv"] {
                    let _ = Command::new("ip")
                        .args(["link", "set", "dev", dev, mode, "off"])
                        .output();
                }
            }
        }
    }
}

fn machine(ctx: &Ctx<'_>, load_start: &str) -> Result<bench_report::Machine> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    Ok(bench_report::Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model: model,
        kernel: output(Command::new("uname").arg("-r"))?.trim().to_string(),
        driver: ctx.pair.driver(),
        xdp_mode: if ctx.pair.owned {
            "native (veth driver mode), AF_XDP copy mode (veth has no zero-copy)".into()
        } else {
            // Filled in from nameflow's own stats.log once a step has run (zero_copy).
            format!("native on {} (--xdp-mode native)", ctx.pair.cap)
        },
        queues: ctx.pair.rx_queues(),
        gen_cpu: ctx.gen_cpu,
        rx_cpu: ctx.rx_cpu,
        load_start: load_start.trim().to_string(),
        load_end: String::new(),
    })
}

/// Tools the bench drives; installed with apt when missing (we are root here).
fn ensure_tools() -> Result<()> {
    let need = [
        ("clang", "clang"),
        ("ethtool", "ethtool"),
        ("ip", "iproute2"),
    ];
    let missing: Vec<&str> = need
        .iter()
        .filter(|(bin, _)| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {bin}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|(_, pkg)| *pkg)
        .chain(
            // The generator's C source includes libbpf's helper definitions.
            (!Path::new("/usr/include/bpf/bpf_helpers.h").is_file()).then_some("libbpf-dev"),
        )
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("==> installing {}", missing.join(" "));
    run(Command::new("apt-get").arg("update")).context("failed to update the apt index")?;
    run(Command::new("apt-get")
        .args(["install", "-y"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .with_context(|| format!("failed to install {}", missing.join(" ")))
}

/// Builds nameflow and nameflow-bench; returns their paths.
fn build(debug: bool) -> Result<(PathBuf, PathBuf)> {
    let mut cmd = cargo();
    cmd.args(["build", "--package", "nameflow", "--bins"]);
    if !debug {
        cmd.arg("--release");
    }
    run(&mut cmd).context("failed to build nameflow and nameflow-bench")?;
    let dir = workspace_root().join(if debug {
        "target/debug"
    } else {
        "target/release"
    });
    let (a, b) = (dir.join("nameflow"), dir.join("nameflow-bench"));
    for p in [&a, &b] {
        if !p.is_file() {
            bail!("the build succeeded but {} is missing", p.display());
        }
    }
    Ok((a, b))
}

/// Compiles bench/bench.bpf.c into the report folder (clang, BPF target).
fn compile_bpf(out_dir: &Path) -> Result<PathBuf> {
    let src = workspace_root().join("bench/bench.bpf.c");
    let obj = out_dir.join("bench.bpf.o");
    let multiarch = if cfg!(target_arch = "aarch64") {
        "/usr/include/aarch64-linux-gnu"
    } else {
        "/usr/include/x86_64-linux-gnu"
    };
    run(Command::new("clang")
        .args(["-O2", "-g", "-Wall", "-target", "bpf"])
        .arg(format!("-I{multiarch}"))
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&obj))
    .with_context(|| {
        format!(
            "failed to compile {} (needs clang and libbpf-dev's headers)",
            src.display()
        )
    })?;
    Ok(obj)
}

fn timestamp() -> Result<String> {
    Ok(
        output(Command::new("date").args(["-u", "+%Y%m%dT%H%M%SZ"]))?
            .trim()
            .to_string(),
    )
}

/// `--soak MINUTES`: one nameflow for the whole time at half its zero-loss rate (or
/// `--rate`) on one template, its RSS (`/proc/PID/status` VmRSS) and stats.log's `all` row
/// sampled every second; at the end the same account as a step (sent = received + dropped)
/// and conn.log's records against the distinct connections the generator sent.
fn soak(
    ctx: &Ctx<'_>,
    args: &Args,
    minutes: f64,
    load_start: &str,
    started: Instant,
) -> Result<()> {
    use crate::bench_soak::{self, Sample, SoakReport};
    if !(minutes > 0.0 && minutes.is_finite()) {
        bail!("--soak takes a positive number of minutes, not {minutes}");
    }
    let template = match args.templates.as_slice() {
        [] => bench_soak::SOAK_TEMPLATE.to_string(),
        [t] if bench_soak::SOAK_TEMPLATES.contains(&t.as_str()) => t.clone(),
        _ => bail!(
            "--soak runs one template whose every frame is a flow of its own, so the records \
             expected follow from the frames sent: --templates {} (the default {})",
            bench_soak::SOAK_TEMPLATES.join(" or "),
            bench_soak::SOAK_TEMPLATE
        ),
    };
    let (rate, rate_source, zero_loss) = match args.rate {
        Some(r) => (r, "--rate".to_string(), None),
        None => {
            eprintln!("==> soak: zero-loss search, {template} → nameflow");
            let cfg = SweepConfig {
                step: Duration::from_secs_f64(args.step_secs.unwrap_or(2.0)),
                search_steps: args.search_steps.unwrap_or(3),
                quick: true,
            };
            let mut no = 0;
            let steps = sweep(ctx, &cfg, &template, "nameflow", &mut no)?;
            let z = bench_report::zero_loss_target(&steps, &template, "nameflow")
                .with_context(|| {
                    format!("no step of the search on {template} was loss-free: give the soak's rate with --rate PPS")
                })?;
            (
                z / 2,
                format!("half of the zero-loss {z} pps a short search found"),
                Some(z as f64),
            )
        }
    };
    let ctx = Ctx {
        stats_interval: 1,
        ..*ctx
    };
    let pair = ctx.pair;
    let dir = ctx.out_dir.join("soak");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let secs = minutes * 60.0;
    eprintln!("==> soak: {template} → nameflow at {rate} pps for {minutes} min");
    let rx = Receiver::start(&ctx, "nameflow", &dir)?;
    let pid = rx.procs[0].child.id();
    let snd_before = pair.ethtool(&pair.snd_ns, &pair.snd)?;
    let mut cmd = Link::command(&pair.snd_ns, "nice");
    cmd.args(["-n", NICE])
        .arg(ctx.helper)
        .args(["--cpu", &ctx.gen_cpu.to_string(), "gen", "--obj"])
        .arg(ctx.obj)
        .args(["--iface", &pair.snd, "--template", &template])
        .args(["--rate", &rate.to_string()])
        .args(["--duration", &format!("{secs}")]);
    let mut gen = Proc::spawn(cmd)?;
    let t0 = Instant::now();
    let stats_path = dir.join("logs/stats.log");
    let mut samples = Vec::new();
    let mut next = t0;
    let mut next_note = 60.0;
    let sample = |t_s: f64| -> Option<Sample> {
        let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|t| bench_soak::vm_rss_kib(&t))?;
        let row = last_all_row(&stats_path).unwrap_or_default();
        let n = |k: &str| row.get(k).copied().unwrap_or(0.0) as u64;
        Some(Sample {
            t_s,
            rss_kib: rss,
            frames: n("frames"),
            dropped: n("dropped"),
            records: n("records"),
            flows_active: n("flows_active"),
        })
    };
    let status = loop {
        if let Some(st) = gen.child.try_wait()? {
            break st;
        }
        while let Ok(l) = gen.lines.try_recv() {
            gen.all.push(l);
        }
        if Instant::now() >= next {
            let t = t0.elapsed().as_secs_f64();
            if let Some(s) = sample(t) {
                if t >= next_note {
                    eprintln!(
                        "    {:>4.0} s: RSS {:.1} MiB, frames {}, dropped {}, flows {}",
                        t,
                        s.rss_kib as f64 / 1024.0,
                        s.frames,
                        s.dropped,
                        s.flows_active
                    );
                    next_note += 60.0;
                }
                samples.push(s);
            }
            next += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    while let Ok(l) = gen.lines.recv_timeout(Duration::from_millis(200)) {
        gen.all.push(l);
    }
    if !status.success() {
        bail!("the generator failed ({status}): {}", gen.all.join("\n"));
    }
    let g = last_json(&gen.all.join("\n")).context("the generator printed no result")?;
    // Let the receiver empty its rings before it is stopped.
    std::thread::sleep(Duration::from_millis(300));
    if let Some(s) = sample(t0.elapsed().as_secs_f64()) {
        samples.push(s);
    }
    let snd_after = pair.ethtool(&pair.snd_ns, &pair.snd)?;
    let r = rx.stop()?;
    let stats = r.stats.context("nameflow wrote no stats.log")?;
    let num = |k: &str| g.get(k).and_then(|v| v.as_f64()).unwrap_or(0.0);
    let mut step = Step {
        no: 1,
        template: template.clone(),
        receiver: "nameflow".into(),
        phase: "soak".into(),
        target_pps: rate as f64,
        achieved_pps: num("achieved_pps"),
        sent: num("sent") as u64,
        duration_s: num("elapsed_s"),
        gen_late_batches: num("late_batches") as u64,
        link_dropped: counter_delta(&snd_before, &snd_after, |k| k.contains("xmit_err")),
        ns_per_frame: f64::NAN,
        ..Step::default()
    };
    nameflow_account(&mut step, &stats, ctx.has_no_names);
    step.finish();
    // Every conn*.log nameflow wrote (one unless it rotated).
    let mut written = 0;
    for e in std::fs::read_dir(dir.join("logs"))
        .context("nameflow wrote no log directory")?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("conn") && name.ends_with(".log") {
            let text = std::fs::read_to_string(e.path())
                .with_context(|| format!("cannot read {}", e.path().display()))?;
            written += bench_soak::count_records(&text);
        }
    }
    let mut machine = machine(&ctx, load_start)?;
    machine.load_end = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string();
    let report = SoakReport {
        template: template.clone(),
        minutes,
        rate_pps: rate,
        rate_source,
        zero_loss_pps: zero_loss,
        samples,
        records_written: written,
        records_expected: bench_soak::expected_connections(
            step.sent,
            num("frames_per_round") as u64,
            num("rounds") as u64,
        ),
        step,
        machine: serde_json::json!({
            "cores": machine.cores,
            "cpu_model": machine.cpu_model,
            "kernel": machine.kernel,
            "driver": machine.driver,
            "xdp_mode": machine.xdp_mode,
            "gen_cpu": machine.gen_cpu,
            "rx_cpu": machine.rx_cpu,
            "load_start": machine.load_start,
            "load_end": machine.load_end,
        }),
        elapsed_s: started.elapsed().as_secs_f64(),
    };
    bench_soak::write(&report, ctx.out_dir)?;
    println!("report: {}", ctx.out_dir.join("soak.md").display());
    print!("{}", report.markdown());
    let s = &report.step;
    if s.unaccounted != 0 || s.received == 0 {
        bail!(
            "the soak did not reconcile (sent = received + dropped) or received nothing: {}",
            s.line()
        );
    }
    Ok(())
}

//! `nameflow capture`: live capture from a network interface through AF_XDP.

use super::common::{ContextArgs, FlowArgs, NameArgs, OutputArgs};
use anyhow::{bail, Context};
use clap::ValueEnum;
use nameflow::capture::xdp::{FilterAction, FilterRule, XdpConfig, XdpMode};
use nameflow::capture::xsk::{BusyPoll, XskConfig, ZeroCopy};
use nameflow::config::Config;
use nameflow::engine::live::{run_capture, CaptureConfig, CaptureReport, QueueSelection};
use nameflow::output::OnWriteError;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

pub const EXAMPLES: &str = "Examples:
  nameflow capture -i eth1                      # every RX queue, ./logs/conn.log + stats.log
  nameflow capture -i eth1 --queues 0,1 --cpus 2,3 --zero-copy on
  nameflow capture -i eth1 --bypass 198.18.0.0/15 --drop 203.0.113.0/24
  nameflow capture -i veth0 --xdp-mode generic --duration 60 -o - --quiet
SIGINT or SIGTERM stops capture: rings and queues are drained, every open flow is logged, the
XDP program is detached (it is also detached by the kernel if nameflow is killed).";

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModeArg {
    Auto,
    Native,
    Generic,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ZeroCopyArg {
    Auto,
    On,
    Off,
}

#[derive(clap::Args, Debug)]
pub struct CaptureArgs {
    /// Network interface to capture from.
    #[arg(short = 'i', long, value_name = "IFACE")]
    interface: String,
    /// RX queues to capture: `all` or a comma-separated list.
    #[arg(long, value_name = "all|Q,Q,...", default_value = "all")]
    queues: String,
    /// Worker threads (flow shards); default: one per captured queue. Fewer workers than
    /// queues serve several queues each.
    #[arg(short = 'w', long, value_name = "N")]
    workers: Option<usize>,
    /// Cores to pin workers to, in worker order (comma-separated); `none` disables pinning.
    /// Default: spread over every core.
    #[arg(long, value_name = "CPU,CPU,...|none")]
    cpus: Option<String>,
    /// XDP attach mode: native (driver) when supported, else generic.
    #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
    xdp_mode: ModeArg,
    /// AF_XDP zero-copy: `auto` tries it and falls back to copy mode (reported per queue),
    /// `on` fails instead of falling back.
    #[arg(long, value_enum, default_value_t = ZeroCopyArg::Auto)]
    zero_copy: ZeroCopyArg,
    /// Replace an XDP program that something else attached to the interface.
    #[arg(long)]
    force: bool,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Descriptors per RX and fill ring (a power of two).
    #[arg(long, value_name = "N", default_value_t = 2048)]
    ring_size: u32,
    /// UMEM frame size in bytes (2048 or 4096); frames longer than this minus 256 are
    /// dropped by the kernel and counted.
    #[arg(long, value_name = "BYTES", default_value_t = 4096)]
    frame_size: u32,
    /// Frames read per batch.
    #[arg(long, value_name = "N", default_value_t = 64)]
    batch: usize,
    /// Do not bind with XDP_USE_NEED_WAKEUP.
    #[arg(long)]
    no_need_wakeup: bool,
    /// Busy-poll the sockets for this many microseconds per poll (SO_PREFER_BUSY_POLL).
    #[arg(long, value_name = "USECS")]
    busy_poll: Option<u32>,
    /// Packets per busy-poll round (SO_BUSY_POLL_BUDGET).
    #[arg(long, value_name = "N", default_value_t = 64)]
    busy_poll_budget: u32,
    /// Pass traffic from or to these CIDRs to the kernel without capturing it (repeatable,
    /// comma-separated).
    #[arg(long, value_name = "CIDR,...")]
    bypass: Vec<String>,
    /// Drop traffic from or to these CIDRs in XDP, before user space (repeatable,
    /// comma-separated).
    #[arg(long, value_name = "CIDR,...")]
    drop: Vec<String>,
    /// Drop frames that cannot carry IP (ARP, LLDP, ...) instead of passing them to the
    /// kernel.
    #[arg(long)]
    drop_non_ip: bool,
    /// Seconds between two status lines and stats.log records.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    stats_interval: f64,
    /// No status line on stderr.
    #[arg(short, long)]
    quiet: bool,
    /// Packets each worker → worker queue holds before forwarding drops (and counts).
    #[arg(long, value_name = "N", default_value_t = 16384)]
    forward_queue: usize,
    /// Serve the live counters as Prometheus text at http://ADDR/metrics (e.g.
    /// 127.0.0.1:9464), from a thread of its own.
    #[arg(long, value_name = "IP:PORT")]
    metrics: Option<String>,
    /// Once the XDP program is attached, switch to this user (a name, or UID[:GID]); needs
    /// root. Capabilities are dropped in any case.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Keep every capability after attaching instead of dropping them all (for debugging).
    #[arg(long)]
    keep_privileges: bool,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    flow: FlowArgs,
    #[command(flatten)]
    names: NameArgs,
    #[command(flatten)]
    context: ContextArgs,
}

fn parse_list<T: std::str::FromStr>(s: &str, flag: &str) -> anyhow::Result<Vec<T>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<T>()
                .map_err(|_| anyhow::anyhow!("{flag}: {p:?} is not a number"))
        })
        .collect()
}

fn filters(lists: &[String], action: FilterAction) -> anyhow::Result<Vec<FilterRule>> {
    let mut out = Vec::new();
    for list in lists {
        for cidr in list.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            out.push(FilterRule::parse(cidr, action)?);
        }
    }
    Ok(out)
}

fn seconds(v: f64, flag: &str) -> anyhow::Result<Duration> {
    if !(v.is_finite() && v > 0.0) {
        bail!("{flag} must be a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(v))
}

impl CaptureArgs {
    fn config(self, file: &Config) -> anyhow::Result<CaptureConfig> {
        let queues = if self.queues.trim() == "all" {
            QueueSelection::All
        } else {
            let l: Vec<u32> = parse_list(&self.queues, "--queues")?;
            if l.is_empty() {
                bail!("--queues: give `all` or a list such as 0,1");
            }
            QueueSelection::List(l)
        };
        if self.workers == Some(0) {
            bail!("--workers must be at least 1");
        }
        let cpus = match self.cpus.as_deref().map(str::trim) {
            None => None,
            Some("none") => Some(Vec::new()),
            Some(list) => Some(parse_list(list, "--cpus")?),
        };
        if let Some(ids) = &cpus {
            let have = core_affinity::get_core_ids().unwrap_or_default();
            if let Some(bad) = ids.iter().find(|&&id| !have.iter().any(|c| c.id == id)) {
                bail!(
                    "--cpus: core {bad} is not available to this process (available: {})",
                    have.iter()
                        .map(|c| c.id.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                );
            }
        }
        let mut rules = filters(&self.bypass, FilterAction::Pass)?;
        rules.extend(filters(&self.drop, FilterAction::Drop)?);
        if self.batch == 0 {
            bail!("--batch must be at least 1");
        }
        if self.forward_queue == 0 {
            bail!("--forward-queue must be at least 1");
        }
        Ok(CaptureConfig {
            iface: self.interface,
            queues,
            workers: self.workers,
            cpus,
            xdp_mode: match self.xdp_mode {
                ModeArg::Auto => XdpMode::Auto,
                ModeArg::Native => XdpMode::Native,
                ModeArg::Generic => XdpMode::Generic,
            },
            force: self.force,
            xdp: XdpConfig {
                filters: rules,
                drop_non_ip: self.drop_non_ip,
            },
            xsk: XskConfig {
                ring_size: self.ring_size,
                frame_size: self.frame_size,
                batch: self.batch,
                zero_copy: match self.zero_copy {
                    ZeroCopyArg::Auto => ZeroCopy::Auto,
                    ZeroCopyArg::On => ZeroCopy::On,
                    ZeroCopyArg::Off => ZeroCopy::Off,
                },
                need_wakeup: !self.no_need_wakeup,
                busy_poll: self.busy_poll.map(|usecs| BusyPoll {
                    usecs,
                    budget: self.busy_poll_budget,
                }),
            },
            duration: self
                .duration
                .map(|d| seconds(d, "--duration"))
                .transpose()?,
            decode: self.flow.decode_config(),
            flow: self.flow.flow_config()?,
            output: self
                .output
                .output_config(&file.output, OnWriteError::Drop)?,
            forward_queue_capacity: self.forward_queue,
            record_queue_capacity: 8192,
            stats_interval: seconds(self.stats_interval, "--stats-interval")?,
            status: !self.quiet,
            names: self.names.names_config()?,
            name_state: self.names.name_state.clone(),
            logs: self.names.logs()?,
            context: None,
            metrics: None,
        })
    }
}

/// Validates the settings as `run` would use them, without touching the network
/// (`nameflow config check`).
pub fn check(args: CaptureArgs, file: &Config) -> anyhow::Result<()> {
    if let Some(u) = &args.user {
        nameflow::capture::privilege::User::resolve(u)?;
    }
    if let Some(m) = &args.metrics {
        nameflow::engine::metrics::parse_addr(m)?;
    }
    args.config(file)?;
    Ok(())
}

pub fn run(args: CaptureArgs, file: &Config) -> anyhow::Result<ExitCode> {
    let quiet = args.quiet;
    // Resolved and bound before anything is attached: a typo fails fast, and the listener
    // may use any port while capabilities are still held.
    let user = args
        .user
        .as_deref()
        .map(nameflow::capture::privilege::User::resolve)
        .transpose()?;
    let keep_privileges = args.keep_privileges;
    let metrics_addr = args.metrics.clone();
    let context_args = args.context.clone();
    // conn.log's columns depend on the key; fixed before the context adds its own.
    args.flow.conn_log_columns()?;
    let mut cfg = args.config(file)?;
    // Before any thread starts: with workers pinned, the writer, statistics, reload and
    // metrics threads inherit a mask without the workers' cores and never preempt a worker.
    let others = cfg
        .cpus
        .as_deref()
        .filter(|ids| !ids.is_empty())
        .and_then(nameflow::engine::affinity::keep_off);
    let metrics = metrics_addr
        .as_deref()
        .map(nameflow::engine::metrics::MetricsServer::start)
        .transpose()?;
    // Kept until the run ends: the inventories are reloaded while it lasts. Its commands and
    // FIFOs start once privileges are dropped, below.
    let context = context_args.start(&file.context, true)?;
    cfg.context = context.as_ref().map(|(c, _)| c.clone());
    cfg.metrics = metrics.as_ref().map(|m| m.publisher());
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .with_context(|| format!("cannot install the handler for signal {sig}"))?;
    }
    let iface = cfg.iface.clone();
    let mut privilege_error = None;
    let stop_on_error = stop.clone();
    let (report, result) = run_capture(&cfg, stop, |mode, queues| {
        // Everything privileged is done: the program is attached and every socket is bound.
        if !keep_privileges {
            match nameflow::capture::privilege::drop_privileges(user.as_ref()) {
                Ok(d) => {
                    if !quiet {
                        eprintln!(
                            "nameflow: dropped every capability in {} threads{}",
                            d.threads,
                            d.user
                                .map(|u| format!("; running as {} ({}:{})", u.name, u.uid, u.gid))
                                .unwrap_or_default()
                        );
                    }
                }
                Err(e) => {
                    privilege_error = Some(e);
                    stop_on_error.store(true, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
            }
        }
        // The context's commands run with what the capture keeps now: no capability.
        if let Some((_, w)) = &context {
            w.release_streams();
        }
        if let Some(m) = &metrics {
            if !quiet {
                eprintln!("nameflow: metrics at http://{}/metrics", m.local_addr());
            }
        }
        super::notify::ready();
        if !quiet {
            let qs: Vec<String> = queues
                .iter()
                .map(|q| {
                    format!(
                        "{}→worker {} ({})",
                        q.queue,
                        q.worker,
                        if q.zero_copy { "zero-copy" } else { "copy" }
                    )
                })
                .collect();
            let others = others
                .as_ref()
                .map(|c| {
                    let c: Vec<String> = c.iter().map(usize::to_string).collect();
                    format!("; other threads on CPU {}", c.join(","))
                })
                .unwrap_or_default();
            eprintln!(
                "nameflow: capturing on {iface}: XDP attached in {mode} mode; queues {}{others}",
                qs.join(", ")
            );
        }
    });
    super::notify::stopping();
    for w in &report.warnings {
        eprintln!("nameflow: warning: {w}");
    }
    if report.attached.is_some() {
        print_summary(&report);
    }
    if let Some(e) = privilege_error {
        eprintln!("nameflow: error: {e}");
        return Ok(ExitCode::from(1));
    }
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("nameflow: error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// The closing summary on stderr (printed even with --quiet: it is the run's account).
fn print_summary(r: &CaptureReport) {
    let t = r.last.total();
    let x = &r.last.xdp;
    eprintln!(
        "nameflow: stopped; XDP seen {} redirected {} passed(non-IP {} bypass {}) filtered {}; {} frames, {} packets ({:.1}% forwarded), {} connections logged; dropped {} (socket {}, forward {}, uncaptured queue {}); records dropped {}; XDP detached",
        x.seen,
        x.redirected,
        x.passed_non_ip,
        x.passed_bypass,
        x.dropped_filter,
        t.frames,
        t.packets,
        r.last.forwarded_share() * 100.0,
        t.records,
        r.last.dropped(),
        t.socket_dropped(),
        t.forward_dropped,
        x.redirect_failed,
        t.records_dropped,
    );
    // An output that could not take everything says so: a collector that was away, a disk
    // that was full.
    for s in r
        .writer
        .sinks
        .iter()
        .filter(|s| s.dropped > 0 || s.buffered > 0)
    {
        eprintln!(
            "nameflow: output {}: {} records written, {} dropped, {} undelivered",
            s.name, s.written, s.dropped, s.buffered
        );
    }
}

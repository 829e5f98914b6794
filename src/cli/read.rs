//! `nameflow read`: capture files in, logs out.

use super::common::{worker_count, ContextArgs, FlowArgs, NameArgs, OutputArgs};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nameflow::capture::pcap::ReadProgress;
use nameflow::config::Config;
use nameflow::engine::{run_read, ReadConfig, ReadReport};
use nameflow::output::OnWriteError;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub const EXAMPLES: &str = "Examples:
  nameflow read trace.pcap                      # writes ./logs/conn.log (Zeek JSON)
  nameflow read -C --format tsv -o out a.pcap b.pcapng.gz
  tcpdump -w - -i eth0 | nameflow read -o - -   # stdin in, JSON lines on stdout
  nameflow read -w 4 --local-nets 10.0.0.0/8,fd00::/8 big.pcap
  nameflow read --rotate 1h --compress -o /var/log/nameflow big.pcap   # hourly archives
  nameflow read -o logs -o tcp://198.18.0.10:5170 trace.pcap   # files and a collector";

#[derive(clap::Args, Debug)]
pub struct ReadArgs {
    /// Capture files, read in order as one stream; `-` reads standard input.
    #[arg(required = true, value_name = "PCAP")]
    inputs: Vec<PathBuf>,
    /// Worker threads (flow shards); default: one per available core.
    #[arg(short = 'w', long, value_name = "N")]
    workers: Option<usize>,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    flow: FlowArgs,
    #[command(flatten)]
    names: NameArgs,
    #[command(flatten)]
    context: ContextArgs,
    /// Do not pin worker threads to cores.
    #[arg(long)]
    no_pin: bool,
    /// No progress line (it is only drawn when stderr is a terminal anyway); the closing
    /// summary is still printed.
    #[arg(short = 'q', long)]
    quiet: bool,
}

/// Validates the settings as `run` would use them, without reading anything
/// (`nameflow config check`).
pub fn check(args: ReadArgs, config: &Config) -> anyhow::Result<()> {
    worker_count(args.workers)?;
    args.flow.flow_config()?;
    args.output
        .output_config(&config.output, OnWriteError::Fail)?;
    args.names.names_config()?;
    args.names.logs()?;
    Ok(())
}

pub fn run(args: ReadArgs, config: &Config) -> anyhow::Result<ExitCode> {
    // conn.log's columns depend on the key; fixed before the context adds its own.
    args.flow.conn_log_columns()?;
    // Kept until the run ends: the inventories are reloaded while it lasts.
    let context = args.context.start(&config.context, false)?;
    let cfg = ReadConfig {
        workers: worker_count(args.workers)?,
        pin: !args.no_pin,
        decode: args.flow.decode_config(),
        flow: args.flow.flow_config()?,
        output: args
            .output
            .output_config(&config.output, OnWriteError::Fail)?,
        queue_capacity: 8192,
        record_queue_capacity: 4096,
        names: args.names.names_config()?,
        name_state: args.names.name_state.clone(),
        logs: args.names.logs()?,
        context: context.as_ref().map(|(c, _)| c.clone()),
        progress: None,
        inputs: args.inputs,
    };
    let progress =
        (!args.quiet && std::io::stderr().is_terminal()).then(|| Progress::start(&cfg.inputs));
    let cfg = ReadConfig {
        progress: progress.as_ref().map(|p| p.counters.clone()),
        ..cfg
    };
    let (report, result) = run_read(&cfg);
    if let Some(p) = progress {
        p.finish();
    }
    for w in &report.warnings {
        eprintln!("nameflow: warning: {w}");
    }
    print_summary(&report);
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("nameflow: error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// The progress line: drawn by a thread of its own from the counters the reader publishes,
/// four times a second, on stderr; cleared before the summary.
struct Progress {
    counters: Arc<ReadProgress>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Progress {
    fn start(inputs: &[PathBuf]) -> Progress {
        // The size is known when every input is a file (not stdin, not a pipe).
        let total: Option<u64> = inputs
            .iter()
            .map(|p| {
                (p.as_os_str() != "-")
                    .then(|| std::fs::metadata(p).ok())
                    .flatten()
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
            })
            .sum();
        let counters = Arc::new(ReadProgress::default());
        let stop = Arc::new(AtomicBool::new(false));
        let bar = match total {
            Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr_with_hz(4))
                .with_style(
                    ProgressStyle::with_template(
                        "nameflow: {bytes}/{total_bytes} ({percent}%) {binary_bytes_per_sec} {msg} ETA {eta}",
                    )
                    .expect("a valid template"),
                ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4))
                .with_style(
                    ProgressStyle::with_template(
                        "nameflow: {bytes} read {binary_bytes_per_sec} {msg} {elapsed}",
                    )
                    .expect("a valid template"),
                ),
        };
        // Drawn once now, so even a run shorter than one update shows where it stands.
        bar.set_message("| 0 packets");
        bar.tick();
        let (c, s) = (counters.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("nameflow-progress".into())
            .spawn(move || {
                let mut last_frames = 0u64;
                let mut last = std::time::Instant::now();
                let mut pps = 0.0f64;
                while !s.load(Ordering::Relaxed) {
                    let frames = c.frames.load(Ordering::Relaxed);
                    let now = std::time::Instant::now();
                    let dt = now.duration_since(last).as_secs_f64();
                    if dt >= 1.0 {
                        pps = (frames - last_frames) as f64 / dt;
                        (last, last_frames) = (now, frames);
                    }
                    bar.set_message(format!("| {frames} packets {pps:.0} pkt/s"));
                    bar.set_position(c.bytes.load(Ordering::Relaxed));
                    std::thread::sleep(std::time::Duration::from_millis(250));
                }
                bar.finish_and_clear();
            })
            .expect("spawn the progress thread");
        Progress {
            counters,
            stop,
            thread,
        }
    }

    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// One summary block on stderr: what was read, what was written, what was not understood.
fn print_summary(r: &ReadReport) {
    let d = &r.decode;
    let records: u64 = r.workers.iter().map(|w| w.records).sum();
    let dropped: u64 = r.workers.iter().map(|w| w.records_dropped).sum();
    let evicted: u64 = r.workers.iter().map(|w| w.flow.flows_evicted).sum();
    let outputs: Vec<&str> = r.writer.sinks.iter().map(|s| s.name.as_str()).collect();
    eprintln!(
        "nameflow: {} frames, {} packets, {} connections written to {}",
        r.dispatch.frames,
        r.dispatch.packets,
        records,
        outputs.join(", ")
    );
    // A sink that could not deliver everything says so (a collector that was away).
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
    let weird = [
        ("truncated", d.truncated),
        ("malformed", d.malformed),
        ("not_ip", d.not_ip),
        ("no_next_header", d.no_next_header),
        ("unsupported_link", d.unsupported_link),
        ("fragments_dropped", d.fragments_dropped),
        ("tunnel_too_deep", d.tunnel_too_deep),
        // Counted by the decoder: bad IPv4 header checksums (packet dropped) and bad
        // transport checksums (packet still creates its connection, as in Zeek).
        ("bad_checksum", d.bad_checksum),
        ("flows_evicted", evicted),
        ("records_dropped", dropped),
    ];
    let nonzero: Vec<String> = weird
        .iter()
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !nonzero.is_empty() {
        eprintln!("nameflow: not logged as connections: {}", nonzero.join(" "));
    }
    if let Some(hint) = checksum_hint(d.bad_checksum, r.dispatch.frames) {
        eprintln!("{hint}");
    }
}

/// The hint of Zeek's `find-checksum-offloading.zeek` (`scripts/base/misc/`): when more than
/// 5 % of the packets read failed checksum validation, the trace was most likely captured on
/// the sending host before its NIC filled the checksums in. Zeek compares IP, TCP and UDP
/// failures apart against the packets received; the decoder counts them together, which can
/// only say so sooner. Not shown with `-C` (nothing is validated then).
fn checksum_hint(bad: u64, packets: u64) -> Option<String> {
    if packets == 0 || bad * 20 <= packets {
        return None;
    }
    Some(format!(
        "nameflow: warning: {bad} of {packets} packets ({:.1}%) failed checksum validation and were not analysed (a bad IP header checksum drops the packet, a bad TCP or UDP one keeps only its connection); the trace was most likely captured on a host with checksum offloading, where the NIC fills checksums in after the capture point. Rerun with -C (--ignore-checksums), or capture with offloading off (ethtool -K IFACE rx off tx off)",
        bad as f64 * 100.0 / packets as f64
    ))
}

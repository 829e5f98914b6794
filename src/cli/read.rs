//! `nameflow read`: capture files in, logs out.

use super::common::{worker_count, ContextArgs, FlowArgs, NameArgs, OutputArgs};
use nameflow::config::Config;
use nameflow::engine::{run_read, ReadConfig, ReadReport};
use nameflow::output::OnWriteError;
use std::path::PathBuf;
use std::process::ExitCode;

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
    let context = args.context.start(&config.context)?;
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
        inputs: args.inputs,
    };
    let (report, result) = run_read(&cfg);
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
}

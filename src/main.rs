//! The `nameflow` command: a thin layer that turns flags into validated settings and runs the
//! engine. Errors are printed with their chain and give a non-zero exit code.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use nameflow::decode::DecodeConfig;
use nameflow::engine::writer::Destination;
use nameflow::engine::{run_read, ReadConfig, ReadReport};
use nameflow::flow::{FlowConfig, LocalNets};
use nameflow::output::Format;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "nameflow",
    version,
    about = "Network sensor writing Zeek-compatible conn.log records",
    long_about = "nameflow turns packets into Zeek-compatible conn.log records. \
                  `nameflow read` processes capture files with the same workers that live \
                  capture uses."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read pcap/pcapng files (optionally gzipped, `-` for stdin) and write conn.log.
    #[command(after_help = "Examples:
  nameflow read trace.pcap                      # writes ./logs/conn.log (Zeek JSON)
  nameflow read -C --format tsv -o out a.pcap b.pcapng.gz
  tcpdump -w - -i eth0 | nameflow read -o - -   # stdin in, JSON lines on stdout
  nameflow read -w 4 --local-nets 10.0.0.0/8,fd00::/8 big.pcap")]
    Read(ReadArgs),
}

#[derive(clap::Args, Debug)]
struct ReadArgs {
    /// Capture files, read in order as one stream; `-` reads standard input.
    #[arg(required = true, value_name = "PCAP")]
    inputs: Vec<PathBuf>,
    /// Worker threads (flow shards); default: one per available core.
    #[arg(short = 'w', long, value_name = "N")]
    workers: Option<usize>,
    /// Output directory for conn.log, or `-` for standard output.
    #[arg(short = 'o', long, value_name = "DIR", default_value = "./logs")]
    output: String,
    /// Log format.
    #[arg(long, value_enum, default_value_t = FormatArg::Json)]
    format: FormatArg,
    /// Networks counted as local for local_orig/local_resp (comma-separated CIDRs).
    /// Default: Zeek's private address space.
    #[arg(long, value_name = "CIDR,...")]
    local_nets: Option<String>,
    /// Do not validate checksums (Zeek's -C); use it for captures with offloaded checksums.
    #[arg(short = 'C', long)]
    ignore_checksums: bool,
    /// Maximum flows held per worker; the least recently active flow is logged and evicted
    /// beyond it.
    #[arg(long, value_name = "N", default_value_t = 1 << 20)]
    max_flows: usize,
    /// Do not pin worker threads to cores.
    #[arg(long)]
    no_pin: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    Json,
    Tsv,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nameflow: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Read(args) => read(args),
    }
}

fn read(args: ReadArgs) -> anyhow::Result<ExitCode> {
    let workers = match args.workers {
        Some(0) => bail!("--workers must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    };
    if args.max_flows == 0 {
        bail!("--max-flows must be at least 1");
    }
    let local_nets = match &args.local_nets {
        Some(list) => LocalNets::parse_list(list).context("bad --local-nets")?,
        None => LocalNets::zeek_default(),
    };
    let dest = if args.output == "-" {
        Destination::Stdout
    } else {
        Destination::Dir(PathBuf::from(&args.output))
    };
    let cfg = ReadConfig {
        inputs: args.inputs,
        workers,
        pin: !args.no_pin,
        decode: DecodeConfig {
            verify_checksums: !args.ignore_checksums,
            ..DecodeConfig::default()
        },
        flow: FlowConfig {
            max_flows: args.max_flows,
            local_nets,
            ..FlowConfig::default()
        },
        format: match args.format {
            FormatArg::Json => Format::Json,
            FormatArg::Tsv => Format::Tsv,
        },
        dest,
        queue_capacity: 8192,
        record_queue_capacity: 4096,
    };
    let (report, result) = run_read(&cfg);
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
    let bad_ck: u64 = r.workers.iter().map(|w| w.flow.bad_checksum).sum::<u64>() + d.bad_checksum;
    eprintln!(
        "nameflow: {} frames, {} packets, {} connections written to {}",
        r.dispatch.frames,
        r.dispatch.packets,
        records,
        r.log_path.display()
    );
    let weird = [
        ("truncated", d.truncated),
        ("malformed", d.malformed),
        ("not_ip", d.not_ip),
        ("unsupported_link", d.unsupported_link),
        ("fragments_dropped", d.fragments_dropped),
        ("tunnel_too_deep", d.tunnel_too_deep),
        ("bad_checksum", bad_ck),
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

//! Command-line parsing. Each subcommand lives in its own file with its own arguments; the
//! option groups several subcommands share (`OutputArgs`, `FlowArgs`) live in `common.rs`.
//! Every file turns raw flags into validated settings from the library and calls it.

mod capture;
mod common;
mod config;
mod notify;
mod read;
mod synth;

use clap::{Parser, Subcommand};
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
    /// TOML config file; flags given on the command line override it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read pcap/pcapng files (optionally gzipped, `-` for stdin) and write conn.log.
    #[command(after_help = read::EXAMPLES)]
    Read(Box<read::ReadArgs>),
    /// Capture live from a network interface (XDP + AF_XDP, one worker per RX queue) and
    /// write conn.log and stats.log. Needs root or CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN,
    /// CAP_NET_RAW and CAP_IPC_LOCK, all dropped once the program is attached.
    #[command(after_help = capture::EXAMPLES)]
    // Boxed, like Read: the option sets are far larger than the other variants.
    Capture(Box<capture::CaptureArgs>),
    /// Write a synthetic sample capture (DNS lookups followed by HTTP, TLS and SSH sessions, a
    /// ping, an unanswered query; 198.18.0.0/15 addresses only) to try nameflow without traffic.
    Synth(synth::SynthArgs),
    /// Check a config file (`config check FILE`) or print the default one (`config default`).
    Config(config::ConfigArgs),
}

/// Parses the command line and runs the chosen subcommand.
pub fn run() -> anyhow::Result<ExitCode> {
    // The config file's options become flags (those the command line does not set itself)
    // before clap parses, so the file can supply any option, required ones included.
    let (argv, config) = config::apply_file(std::env::args_os().collect())?;
    let cli = Cli::parse_from(argv);
    match cli.command {
        Command::Read(args) => read::run(*args, &config),
        Command::Capture(args) => capture::run(*args, &config),
        Command::Synth(args) => synth::run(args),
        Command::Config(args) => config::run(args),
    }
}

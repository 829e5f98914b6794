//! Option groups shared by several subcommands.

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use nameflow::engine::writer::Destination;
use nameflow::flow::{FlowConfig, LocalNets};
use nameflow::output::Format;
use std::path::PathBuf;

/// Where and how logs are written.
#[derive(Args, Debug)]
pub struct OutputArgs {
    /// Output directory for the logs, or `-` for standard output.
    #[arg(short = 'o', long, value_name = "DIR", default_value = "./logs")]
    pub output: String,
    /// Log format.
    #[arg(long, value_enum, default_value_t = FormatArg::Json)]
    pub format: FormatArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FormatArg {
    Json,
    Tsv,
}

impl OutputArgs {
    /// The log destination.
    pub fn destination(&self) -> Destination {
        if self.output == "-" {
            Destination::Stdout
        } else {
            Destination::Dir(PathBuf::from(&self.output))
        }
    }

    /// The log format.
    pub fn format(&self) -> Format {
        match self.format {
            FormatArg::Json => Format::Json,
            FormatArg::Tsv => Format::Tsv,
        }
    }
}

/// Connection tracking settings.
#[derive(Args, Debug)]
pub struct FlowArgs {
    /// Networks counted as local for local_orig/local_resp (comma-separated CIDRs).
    /// Default: Zeek's private address space.
    #[arg(long, value_name = "CIDR,...")]
    pub local_nets: Option<String>,
    /// Do not validate checksums (Zeek's -C); use it for captures with offloaded checksums.
    #[arg(short = 'C', long)]
    pub ignore_checksums: bool,
    /// Maximum flows held per worker; the least recently active flow is logged and evicted
    /// beyond it.
    #[arg(long, value_name = "N", default_value_t = 1 << 20)]
    pub max_flows: usize,
}

impl FlowArgs {
    /// Validated flow settings.
    pub fn flow_config(&self) -> anyhow::Result<FlowConfig> {
        if self.max_flows == 0 {
            bail!("--max-flows must be at least 1");
        }
        let local_nets = match &self.local_nets {
            Some(list) => LocalNets::parse_list(list).context("bad --local-nets")?,
            None => LocalNets::zeek_default(),
        };
        Ok(FlowConfig {
            max_flows: self.max_flows,
            local_nets,
            ..FlowConfig::default()
        })
    }
}

/// The worker count: the flag, or one per available core.
pub fn worker_count(flag: Option<usize>) -> anyhow::Result<usize> {
    match flag {
        Some(0) => bail!("--workers must be at least 1"),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)),
    }
}

//! Option groups shared by several subcommands.

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use nameflow::config::{OutputSection, SinkEntry};
use nameflow::flow::{FlowConfig, LocalNets};
use nameflow::output::{Format, JsonTs, OutputConfig};

/// Where and how logs are written. Every option can also be set in the config file's
/// `[output]` section; a flag overrides the file.
#[derive(Args, Debug)]
pub struct OutputArgs {
    /// Where logs go; repeat for several at once: a directory (`<log>.log` files inside),
    /// `-` for standard output, `tcp://HOST:PORT` or `unix:PATH` for a collector
    /// (newline-delimited records). Default: ./logs.
    #[arg(short = 'o', long = "output", value_name = "SINK")]
    pub outputs: Vec<String>,
    /// Log format (default json).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// How JSON writes times: seconds since the epoch (Zeek's default) or ISO 8601 strings.
    #[arg(long, value_enum, value_name = "STYLE")]
    pub json_ts: Option<JsonTsArg>,
    /// Rotate log files on boundaries of this interval, aligned to the clock like zeekctl
    /// (`1h` rotates on the hour; packet time when reading captures). Rotated files move to
    /// DIR/YYYY-MM-DD/<log>.HH:MM:SS-HH:MM:SS.log.
    #[arg(long, value_name = "DURATION")]
    pub rotate: Option<String>,
    /// Rotate a log file once it reaches this size (e.g. 100MiB, 1G).
    #[arg(long, value_name = "SIZE")]
    pub rotate_size: Option<String>,
    /// Gzip rotated files (in the background).
    #[arg(long)]
    pub compress: bool,
    /// Memory each tcp:// or unix: output may hold while its collector is away or slow;
    /// beyond it records are dropped and counted (default 16MiB).
    #[arg(long, value_name = "SIZE")]
    pub stream_buffer: Option<String>,
    /// How long to wait at exit for tcp:// and unix: outputs to deliver (default 2s).
    #[arg(long, value_name = "DURATION")]
    pub flush_timeout: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FormatArg {
    Json,
    Tsv,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum JsonTsArg {
    Epoch,
    Iso8601,
}

impl OutputArgs {
    /// The output settings: these flags over the config file's `[output]` section.
    pub fn output_config(&self, file: &OutputSection) -> anyhow::Result<OutputConfig> {
        let flags = OutputSection {
            sinks: (!self.outputs.is_empty())
                .then(|| self.outputs.iter().cloned().map(SinkEntry::Spec).collect()),
            format: self.format.map(|f| match f {
                FormatArg::Json => Format::Json,
                FormatArg::Tsv => Format::Tsv,
            }),
            json_ts: self.json_ts.map(|t| match t {
                JsonTsArg::Epoch => JsonTs::Epoch,
                JsonTsArg::Iso8601 => JsonTs::Iso8601,
            }),
            rotate: self.rotate.clone(),
            rotate_size: self.rotate_size.clone(),
            compress: self.compress.then_some(true),
            stream_buffer: self.stream_buffer.clone(),
            flush_timeout: self.flush_timeout.clone(),
        };
        flags.over(file).resolve().context("bad output settings")
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

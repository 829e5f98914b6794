//! `nameflow synth`: writes a synthetic sample capture.

use anyhow::Context;
use nameflow::synth::{sample_trace, TsResolution};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// Where to write the capture (pcap, microsecond timestamps).
    #[arg(value_name = "OUT.pcap")]
    out: PathBuf,
}

pub fn run(args: SynthArgs) -> anyhow::Result<ExitCode> {
    sample_trace()
        .write_pcap(&args.out, TsResolution::Micro)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!("nameflow: sample capture written to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

//! The project's chores, run as `cargo xtask <command>` (the alias lives in
//! `.cargo/config.toml`): `demo`, `test`, `conformance`, `bench` and `fuzz`.
//!
//! Every external command goes through [`run`] or [`output`], which wrap failures with the
//! command line that failed, so an error always says what xtask was doing.

mod bench;
mod bench_offline;
mod bench_report;
mod bench_soak;
mod checks;
mod conformance;
mod demo;
mod fuzz;

// The parsing and comparison logic is shared with `tests/conformance.rs`; this crate uses only
// part of it, so unused items are expected here.
#[allow(dead_code)]
#[path = "../../tests/support/zeek_log.rs"]
mod zeek_log;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "nameflow's chores")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the Debian build packages if needed, build in release mode and run nameflow on a
    /// sample trace.
    Demo {
        /// Use the synthetic trace even when ../shared is present.
        #[arg(long)]
        synthetic: bool,
        /// Live capture instead: a veth pair between two new network namespaces, `nameflow
        /// capture` on one end, the synthetic trace replayed into the other (needs root).
        #[arg(long)]
        live: bool,
    },
    /// Run the checks CI runs: rustfmt, clippy (warnings are errors) and the test suite.
    Test,
    /// Compare nameflow's conn.log with Zeek's on every reference in ../shared/conformance.
    Conformance(conformance::Args),
    /// Packet loss against offered rate for nameflow, an XDP_DROP ceiling and an AF_PACKET
    /// reader on one veth in the same run (needs root); `bench offline` for the offline
    /// pipeline. See docs/bench.md.
    Bench(bench::Args),
    /// Run every cargo-fuzz target in fuzz/ for --time seconds each (corpora seeded from
    /// ../shared and the fixtures, under target/fuzz/); reports execs per target, fails on a
    /// crash.
    Fuzz(fuzz::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Demo { live: true, .. } => demo::demo_live(),
        Cmd::Demo { synthetic, .. } => demo::demo(synthetic),
        Cmd::Test => checks::test(),
        Cmd::Conformance(args) => conformance::conformance(args),
        Cmd::Bench(args) => bench::bench(args),
        Cmd::Fuzz(args) => fuzz::fuzz(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: xtask's own manifest sits one level below it.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// The shared reference folder beside the workspace root, when it is there.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = workspace_root().parent()?.join("shared");
    dir.is_dir().then_some(dir)
}

/// The cargo that started us, so a toolchain chosen by rustup is kept for child builds.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// Shows a command the way a person would type it.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command with inherited output and fails unless it exits successfully.
pub fn run(cmd: &mut Command) -> Result<()> {
    let desc = describe(cmd);
    let status = cmd
        .status()
        .with_context(|| format!("failed to run `{desc}`"))?;
    if !status.success() {
        bail!("`{desc}` failed ({status})");
    }
    Ok(())
}

/// Runs a command and returns its standard output; fails unless it exits successfully.
pub fn output(cmd: &mut Command) -> Result<String> {
    let desc = describe(cmd);
    let out = cmd
        .output()
        .with_context(|| format!("failed to run `{desc}`"))?;
    if !out.status.success() {
        bail!(
            "`{desc}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{desc}` printed non-UTF-8 output"))
}

/// Builds the release binary of nameflow and returns its path.
pub fn build_release_binary() -> Result<PathBuf> {
    run(cargo().args(["build", "--release", "--package", "nameflow"]))
        .context("failed to build the release binary")?;
    let bin = workspace_root().join("target/release/nameflow");
    if !bin.is_file() {
        bail!("the build succeeded but {} is missing", bin.display());
    }
    Ok(bin)
}

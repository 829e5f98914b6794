//! `cargo xtask demo`: from a fresh Debian machine with Rust to a conn.log in one command.

use crate::{cargo, output, run, shared_dir, workspace_root};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian packages the build needs: clang/llvm compile the XDP program, libelf/zlib/libbpf are
/// what libbpf links against, libpcap and pkg-config serve the capture side, m4 is needed by
/// libbpf-sys' vendored build.
pub const BUILD_PACKAGES: &[&str] = &[
    "clang",
    "llvm",
    "libelf-dev",
    "zlib1g-dev",
    "libpcap-dev",
    "pkg-config",
    "m4",
    "libbpf-dev",
];

/// How many lines of the log the demo prints.
const SHOWN_LINES: usize = 12;

pub fn demo(synthetic: bool) -> Result<()> {
    ensure_packages(BUILD_PACKAGES)?;

    eprintln!("==> building the workspace (release)");
    run(cargo().args(["build", "--release", "--workspace"]))
        .context("failed to build the workspace in release mode")?;

    let root = workspace_root();
    let demo_dir = root.join("target/demo");
    let logs = demo_dir.join("logs");
    std::fs::create_dir_all(&logs)
        .with_context(|| format!("failed to create {}", logs.display()))?;
    let trace = demo_trace(&demo_dir, synthetic)?;

    let bin = root.join("target/release/nameflow");
    eprintln!(
        "==> nameflow read -o {} {}",
        logs.display(),
        trace.display()
    );
    run(Command::new(&bin)
        .arg("read")
        .arg("-o")
        .arg(&logs)
        .arg(&trace))
    .context("failed to run nameflow on the demo trace")?;

    let conn = logs.join("conn.log");
    let text = std::fs::read_to_string(&conn)
        .with_context(|| format!("nameflow ran but {} cannot be read", conn.display()))?;
    println!("logs written to {}", logs.display());
    println!(
        "first lines of {} ({} records):",
        conn.display(),
        text.lines().filter(|l| !l.starts_with('#')).count()
    );
    for line in text.lines().take(SHOWN_LINES) {
        println!("  {line}");
    }
    Ok(())
}

/// The Wikipedia trace from the shared references when present (real DNS and HTTP), otherwise a
/// synthetic one, so the demo also works on a machine that has only the repository.
fn demo_trace(demo_dir: &Path, synthetic: bool) -> Result<PathBuf> {
    if let Some(shared) = shared_dir().filter(|_| !synthetic) {
        let trace = shared.join("conformance/zeek/wikipedia-dns-http/trace.pcap");
        if trace.is_file() {
            return Ok(trace);
        }
    }
    let trace = demo_dir.join("synthetic.pcap");
    eprintln!("==> writing a synthetic trace to {}", trace.display());
    write_synthetic_trace(&trace)?;
    Ok(trace)
}

/// Writes the synthetic demo trace with `nameflow synth` (the generator lives in the
/// `nameflow` crate; xtask does not link it, so that `cargo xtask demo` compiles on a machine
/// where the XDP build dependencies are not installed yet).
fn write_synthetic_trace(path: &Path) -> Result<()> {
    let bin = workspace_root().join("target/release/nameflow");
    run(Command::new(&bin).arg("synth").arg(path))
        .with_context(|| format!("failed to write the synthetic trace {}", path.display()))
}

/// Installs the missing packages when we are root; otherwise prints the command and fails.
fn ensure_packages(packages: &[&str]) -> Result<()> {
    let mut missing = Vec::new();
    for p in packages {
        if !is_installed(p)? {
            missing.push(*p);
        }
    }
    if missing.is_empty() {
        eprintln!("==> build packages present: {}", packages.join(" "));
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root()? {
        bail!(
            "missing Debian packages: {list}\n  install them with: \
             sudo apt-get update && sudo apt-get install -y {list}"
        );
    }
    eprintln!("==> installing missing packages: {list}");
    run(Command::new("apt-get").arg("update")).context("failed to update the apt index")?;
    run(Command::new("apt-get")
        .args(["install", "-y"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .with_context(|| format!("failed to install {list}"))?;
    Ok(())
}

fn is_installed(package: &str) -> Result<bool> {
    // dpkg-query exits non-zero for a package it has never heard of; that only means missing.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .context("failed to run dpkg-query (is this a Debian-based system?)")?;
    Ok(out.status.success()
        && String::from_utf8_lossy(&out.stdout).trim() == "install ok installed")
}

fn is_root() -> Result<bool> {
    Ok(output(Command::new("id").arg("-u"))?.trim() == "0")
}

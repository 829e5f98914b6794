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
    // nameflow appends to the logs a previous run left; the demo shows this run's alone.
    let _ = std::fs::remove_dir_all(&logs);
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
pub(crate) fn ensure_packages(packages: &[&str]) -> Result<()> {
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

/// Packages the live demo drives besides the build ones.
const LIVE_PACKAGES: &[&str] = &["iproute2", "tcpreplay"];

/// Deletes the demo's namespaces on every exit path (deleting a namespace deletes the veth end
/// in it, and so the pair).
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// `cargo xtask demo --live`: a veth pair between two network namespaces made for the demo,
/// `nameflow capture` on one end, the synthetic trace (198.18.0.0/15 addresses) replayed into
/// the other end with tcpreplay, then SIGTERM, and the logs shown. Needs root.
pub fn demo_live() -> Result<()> {
    if !is_root()? {
        bail!("the live demo creates network namespaces and attaches XDP: run it as root");
    }
    let mut packages = BUILD_PACKAGES.to_vec();
    packages.extend_from_slice(LIVE_PACKAGES);
    ensure_packages(&packages)?;
    eprintln!("==> building the workspace (release)");
    run(cargo().args(["build", "--release", "--workspace"]))
        .context("failed to build the workspace in release mode")?;

    let root = workspace_root();
    let bin = root.join("target/release/nameflow");
    let demo_dir = root.join("target/demo");
    let logs = demo_dir.join("live");
    // nameflow appends to the logs a previous run left; the demo shows this run's alone.
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&demo_dir)
        .with_context(|| format!("failed to create {}", demo_dir.display()))?;
    let trace = demo_dir.join("synthetic.pcap");
    write_synthetic_trace(&trace)?;

    let tag = std::process::id() % 100_000;
    let (cap_ns, snd_ns) = (format!("nfdemo-c{tag}"), format!("nfdemo-s{tag}"));
    let (cap, snd) = (format!("nfdc{tag}"), format!("nfds{tag}"));
    let _guard = Namespaces(vec![cap_ns.clone(), snd_ns.clone()]);
    eprintln!("==> namespaces {cap_ns} and {snd_ns}, veth {cap} <-> {snd} (4 queues each)");
    for ns in [&cap_ns, &snd_ns] {
        run(Command::new("ip").args(["netns", "add", ns]))?;
        run(Command::new("ip").args([
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]))?;
    }
    run(Command::new("ip").args([
        "link",
        "add",
        &cap,
        "numrxqueues",
        "4",
        "numtxqueues",
        "4",
        "netns",
        &cap_ns,
        "type",
        "veth",
        "peer",
        "name",
        &snd,
        "numrxqueues",
        "4",
        "numtxqueues",
        "4",
        "netns",
        &snd_ns,
    ]))?;
    run(Command::new("ip").args(["-n", &cap_ns, "link", "set", &cap, "up"]))?;
    run(Command::new("ip").args(["-n", &snd_ns, "link", "set", &snd, "up"]))?;

    eprintln!(
        "==> ip netns exec {cap_ns} nameflow capture -i {cap} -o {} --stats-interval 1",
        logs.display()
    );
    let mut capture = Command::new("ip")
        .args(["netns", "exec", &cap_ns])
        .arg(&bin)
        .args(["capture", "-i", &cap, "--stats-interval", "1", "-o"])
        .arg(&logs)
        .spawn()
        .context("failed to start nameflow capture")?;
    // Give it time to attach (it prints the mode when it has).
    std::thread::sleep(std::time::Duration::from_secs(2));
    if let Some(status) = capture.try_wait()? {
        bail!("nameflow capture exited early ({status})");
    }
    eprintln!("==> tcpreplay into {snd} at 2000 packets/s");
    let replay = run(Command::new("ip")
        .args([
            "netns",
            "exec",
            &snd_ns,
            "timeout",
            "60",
            "tcpreplay",
            "-q",
            "-i",
            &snd,
        ])
        .args(["--pps", "2000"])
        .arg(&trace));
    std::thread::sleep(std::time::Duration::from_secs(1));
    eprintln!("==> SIGTERM: drain, flush every flow, detach");
    let _ = Command::new("kill")
        .args(["-TERM", &capture.id().to_string()])
        .status();
    let status = capture
        .wait()
        .context("failed to wait for nameflow capture")?;
    replay.context("tcpreplay failed")?;
    if !status.success() {
        bail!("nameflow capture exited with {status}");
    }
    let left = output(Command::new("ip").args(["-n", &cap_ns, "link", "show", &cap]))?;
    eprintln!(
        "==> XDP on {cap} after exit: {}",
        if left.contains("prog/xdp") {
            "STILL ATTACHED"
        } else {
            "none"
        }
    );
    for log in ["conn.log", "stats.log"] {
        let path = logs.join(log);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("nameflow ran but {} cannot be read", path.display()))?;
        println!("first lines of {}:", path.display());
        for line in text.lines().take(SHOWN_LINES / 2) {
            println!("  {line}");
        }
    }
    Ok(())
}

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

/// Writes the synthetic demo trace with `nameflow::synth`: a client that resolves three names
/// and then talks to them (HTTP, TLS-like, SSH), a ping, and a lookup nobody answers, all in
/// the benchmarking range so the demo never shows a real host.
fn write_synthetic_trace(path: &Path) -> Result<()> {
    use nameflow::synth::{DnsData, DnsRecord, DnsSpec, TcpClose, TcpSpec, Trace, TsResolution};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    let client: IpAddr = Ipv4Addr::new(198, 18, 0, 10).into();
    let mut trace = Trace::new();
    // 2023-11-14 22:13:20 UTC: a fixed start makes the demo's log the same on every run.
    let mut t: u64 = 1_700_000_000_000_000_000;
    let servers: [(&str, [u8; 4], u16, &[u8]); 3] = [
        (
            "www.example.test",
            [198, 19, 1, 80],
            80,
            b"GET / HTTP/1.1\r\nHost: www.example.test\r\n\r\n",
        ),
        ("api.example.test", [198, 19, 2, 43], 443, b""),
        (
            "git.example.test",
            [198, 19, 3, 22],
            22,
            b"SSH-2.0-OpenSSH_9.6\r\n",
        ),
    ];
    for (i, (name, addr, port, first)) in servers.iter().enumerate() {
        let server = Ipv4Addr::from(*addr);
        let mut dns = DnsSpec::query(name, 1).answer(DnsRecord::new(name, 300, DnsData::A(server)));
        dns.client = SocketAddr::new(client, 53_000 + i as u16);
        dns.id = 0x4000 + i as u16;
        t = trace.dns_exchange(&dns, t) + 1_000_000;
        let spec = TcpSpec {
            client: SocketAddr::new(client, 40_000 + i as u16),
            server: SocketAddr::new(server.into(), *port),
            client_segments: 2,
            server_segments: 3,
            client_first: first.to_vec(),
            close: if i == 1 {
                TcpClose::RstByServer
            } else {
                TcpClose::Fin
            },
            ..TcpSpec::default()
        };
        t = trace.tcp_session(&spec, t) + 5_000_000;
    }
    t = trace.icmp_echo(
        client,
        Ipv4Addr::new(198, 19, 0, 1).into(),
        7,
        3,
        t,
        1_000_000_000,
        800_000,
    );
    let mut lost = DnsSpec::query("nowhere.example.test", 28);
    lost.client = SocketAddr::new(client, 53_100);
    lost.no_response = true;
    trace.dns_exchange(&lost, t + 1_000_000);
    trace.sort_by_time();
    trace
        .write_pcap(path, TsResolution::Micro)
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

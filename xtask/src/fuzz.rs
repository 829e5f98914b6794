//! `cargo xtask fuzz`: runs every cargo-fuzz target in `fuzz/` for a fixed time each, from
//! corpora seeded with the shared captures and the test fixtures, and reports executions per
//! target. A crash fails the command and names the reproducer; it then becomes a regression
//! test beside the parser that crashed.
//!
//! Only a stable toolchain exists on the project's machines; libFuzzer's instrumentation needs
//! nightly `-Z` flags, which the stable compiler accepts with `RUSTC_BOOTSTRAP=1`. Corpora and
//! artifacts live under `target/fuzz/`, never in the repository.

use crate::{cargo, describe, run, shared_dir, workspace_root};
use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Every target in `fuzz/Cargo.toml`, with the longest input worth generating for it.
const TARGETS: &[(&str, usize)] = &[
    ("decode", 16 * 1024),
    ("dns", 4096),
    ("tls_sni", 4096),
    ("tls_reasm", 16 * 1024),
    ("quic_initial", 4096),
    ("http_host", 4096),
    ("pcap", 64 * 1024),
    ("config", 8192),
    ("context", 64 * 1024),
];

/// The link types of the `decode` target, in its order (byte 0 of an input picks one).
const DECODE_LINKS: [u32; 16] = [
    0, 1, 9, 10, 12, 14, 50, 101, 105, 108, 113, 127, 228, 229, 276, 147,
];

/// Seeds taken per capture for the packet-level targets, so one large capture does not drown
/// the others.
const FRAMES_PER_CAPTURE: usize = 40;

#[derive(clap::Args)]
pub struct Args {
    /// Seconds each target runs.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    time: u64,
    /// Only this target (repeatable); default: every target.
    #[arg(long = "target", value_name = "NAME")]
    targets: Vec<String>,
    /// Only build the targets (a quick check that they still compile against the library).
    #[arg(long)]
    build_only: bool,
}

struct Outcome {
    target: String,
    execs: u64,
    secs: f64,
    corpus: usize,
    crash: Option<PathBuf>,
}

pub fn fuzz(args: Args) -> Result<()> {
    for t in &args.targets {
        if !TARGETS.iter().any(|(name, _)| name == t) {
            bail!(
                "unknown fuzz target {t:?}; choose among {}",
                TARGETS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    ensure_cargo_fuzz()?;
    let root = workspace_root();
    let base = root.join("target/fuzz");
    let selected: Vec<(&str, usize)> = TARGETS
        .iter()
        .copied()
        .filter(|(n, _)| args.targets.is_empty() || args.targets.iter().any(|t| t == n))
        .collect();
    eprintln!("==> building the fuzz targets (cargo fuzz build)");
    run(fuzz_cmd().args(["build", "--target-dir"]).arg(&base))
        .context("failed to build the fuzz targets")?;
    if args.build_only {
        return Ok(());
    }
    let seeds = Seeds::collect(&root)?;
    let mut outcomes = Vec::new();
    for (target, max_len) in selected {
        let corpus = base.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("cannot create {}", corpus.display()))?;
        let added = seeds.write(target, &corpus)?;
        let artifacts = base.join("artifacts").join(target);
        std::fs::create_dir_all(&artifacts)
            .with_context(|| format!("cannot create {}", artifacts.display()))?;
        eprintln!(
            "==> fuzzing {target} for {}s ({added} seeds added, corpus {})",
            args.time,
            corpus.display()
        );
        outcomes.push(run_target(
            target, max_len, args.time, &base, &corpus, &artifacts,
        )?);
    }
    println!();
    println!(
        "{:<10} {:>7} {:>12} {:>10} {:>8}  result",
        "target", "seconds", "execs", "execs/s", "corpus"
    );
    for o in &outcomes {
        println!(
            "{:<10} {:>7.0} {:>12} {:>10.0} {:>8}  {}",
            o.target,
            o.secs,
            o.execs,
            o.execs as f64 / o.secs.max(1e-9),
            o.corpus,
            match &o.crash {
                None => "ok".to_owned(),
                Some(p) => format!("CRASH: {}", p.display()),
            }
        );
    }
    let crashed: Vec<&Outcome> = outcomes.iter().filter(|o| o.crash.is_some()).collect();
    if !crashed.is_empty() {
        bail!(
            "{} target(s) crashed; reproduce with `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> \
             <artifact>`, fix the parser and add the input as a regression test beside it",
            crashed.len()
        );
    }
    Ok(())
}

/// `cargo fuzz` with the stable compiler unlocked for libFuzzer's flags.
fn fuzz_cmd() -> Command {
    let mut cmd = cargo();
    cmd.arg("fuzz").env("RUSTC_BOOTSTRAP", "1");
    cmd
}

/// The host's target triple: cargo fuzz builds into `<target-dir>/<triple>/release/`.
fn host_triple() -> Result<String> {
    let out = crate::output(Command::new("rustc").arg("-vV"))?;
    out.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_owned())
        .context("`rustc -vV` did not print the host triple")
}

/// Installs cargo-fuzz from crates.io (it builds from source) when it is missing.
fn ensure_cargo_fuzz() -> Result<()> {
    let present = cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    eprintln!("==> cargo-fuzz is missing: installing it (cargo install cargo-fuzz --locked)");
    run(cargo().args(["install", "cargo-fuzz", "--locked"]))
        .context("failed to install cargo-fuzz; install it by hand with `cargo install cargo-fuzz`")
}

fn run_target(
    target: &str,
    max_len: usize,
    secs: u64,
    base: &Path,
    corpus: &Path,
    artifacts: &Path,
) -> Result<Outcome> {
    // The binary `cargo fuzz build` made, run directly: `cargo fuzz run` would rebuild first
    // whenever the library changed, and that time is not fuzzing.
    let bin = base.join(host_triple()?).join("release").join(target);
    if !bin.is_file() {
        bail!(
            "{} is missing after `cargo fuzz build`; is {target} listed in fuzz/Cargo.toml?",
            bin.display()
        );
    }
    let mut cmd = Command::new(&bin);
    cmd.arg(corpus)
        .arg(format!("-max_total_time={secs}"))
        .arg(format!("-max_len={max_len}"))
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()));
    let desc = describe(&cmd);
    let started = Instant::now();
    let out = cmd
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("failed to run `{desc}`"))?;
    let secs = started.elapsed().as_secs_f64();
    let log = String::from_utf8_lossy(&out.stderr);
    let stat = |name: &str| -> Option<u64> {
        log.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim_start_matches(':').trim().parse().ok())
    };
    let execs = stat("stat::number_of_executed_units").unwrap_or(0);
    // libFuzzer's own account of the time spent fuzzing: "Done N runs in S second(s)".
    let secs = log
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("Done ")?;
            let (_, t) = rest.split_once(" runs in ")?;
            t.split_whitespace().next()?.parse::<f64>().ok()
        })
        .unwrap_or(secs);
    let corpus_len = std::fs::read_dir(corpus).map(|d| d.count()).unwrap_or(0);
    let crash = if out.status.success() {
        None
    } else {
        // libFuzzer prints the reproducer's path; without one the run failed for another
        // reason, which is an error of its own.
        let artifact = log.lines().rev().find_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with(&artifacts.display().to_string()))
                .map(PathBuf::from)
        });
        match artifact {
            Some(p) => {
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
                Some(p)
            }
            None => bail!(
                "`{desc}` failed ({}) without a reproducer:\n{}",
                out.status,
                log.lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    };
    Ok(Outcome {
        target: target.to_owned(),
        execs,
        secs,
        corpus: corpus_len,
        crash,
    })
}

/// Seed inputs per target, gathered once from the shared captures and the fixtures.
#[derive(Default)]
struct Seeds {
    decode: Vec<Vec<u8>>,
    dns: Vec<Vec<u8>>,
    tls: Vec<Vec<u8>>,
    tls_reasm: Vec<Vec<u8>>,
    quic: Vec<Vec<u8>>,
    http: Vec<Vec<u8>>,
    pcap: Vec<Vec<u8>>,
    config: Vec<Vec<u8>>,
    context: Vec<Vec<u8>>,
}

impl Seeds {
    fn collect(root: &Path) -> Result<Seeds> {
        let mut s = Seeds::default();
        let mut captures = Vec::new();
        if let Some(shared) = shared_dir() {
            find_captures(&shared, &mut captures);
        } else {
            eprintln!("==> ../shared is missing: seeding from the repository's fixtures only");
        }
        captures.sort();
        for path in &captures {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            // Whole small captures, and the head of large ones (a truncated file is an input
            // the reader must handle too).
            s.pcap.push(bytes[..bytes.len().min(64 * 1024)].to_vec());
            for (link, frame) in frames(&bytes).into_iter().take(FRAMES_PER_CAPTURE * 8) {
                s.add_frame(link, frame);
            }
        }
        s.decode.truncate(4000);
        for dir in ["tests/context"] {
            if let Ok(rd) = std::fs::read_dir(root.join(dir)) {
                for e in rd.flatten() {
                    if let Ok(b) = std::fs::read(e.path()) {
                        s.context.push(b);
                    }
                }
            }
        }
        for file in ["deploy/nameflow.toml"] {
            if let Ok(b) = std::fs::read(root.join(file)) {
                s.config.push(b);
            }
        }
        s.config.push(
            b"[output]\nsinks = [\"logs\", { to = \"tcp://127.0.0.1:5170\", format = \"json\" }]\n\
              rotate = \"1h\"\nrotate_size = \"1GiB\"\ncompress = true\n\
              [context]\nfiles = [\"a.json\"]\nextra = [\"app=label:app\"]\n"
                .to_vec(),
        );
        Ok(s)
    }

    fn add_frame(&mut self, link: u32, frame: &[u8]) {
        if let Some(i) = DECODE_LINKS.iter().position(|&l| l == link) {
            let mut seed = vec![i as u8];
            let n = frame.len().min(usize::from(u16::MAX));
            seed.extend_from_slice(&(n as u16).to_le_bytes());
            seed.extend_from_slice(&frame[..n]);
            self.decode.push(seed);
        }
        let Some((sport, dport, payload)) = transport_payload(link, frame) else {
            return;
        };
        if payload.is_empty() {
            return;
        }
        let dns_port = |p: u16| matches!(p, 53 | 5353 | 5355);
        if dns_port(sport) || dns_port(dport) {
            self.dns.push(payload.to_vec());
        } else if payload[0] == 0x16 && payload.len() > 5 {
            // The reassembly target reads ten bytes of cutting instructions first.
            let mut cut = vec![3, 1, 2, 0, 4, 5, 6, 7, 0, 0];
            cut.extend_from_slice(payload);
            self.tls_reasm.push(cut);
            self.tls.push(payload.to_vec());
        } else if payload.len() >= 1200 && (payload[0] & 0x80 != 0 || payload[0] & 0x09 == 0x09) {
            // QUIC Initials and Google QUIC CHLOs.
            self.quic.push(payload.to_vec());
        } else {
            // The http_host target also reads DHCP: seed it with both.
            let dhcp = [67, 68].contains(&sport) || [67, 68].contains(&dport);
            let http = [
                &b"GET "[..],
                b"POST ",
                b"HEAD ",
                b"PUT ",
                b"OPTIONS ",
                b"CONNECT ",
            ]
            .iter()
            .any(|m| payload.starts_with(m));
            if dhcp || http {
                self.http.push(payload.to_vec());
            }
        }
    }

    /// Writes the target's seeds into its corpus (named by content, so reruns add nothing
    /// twice); returns how many were new.
    fn write(&self, target: &str, corpus: &Path) -> Result<usize> {
        let list: &[Vec<u8>] = match target {
            "decode" => &self.decode,
            "dns" => &self.dns,
            "tls_sni" => &self.tls,
            "tls_reasm" => &self.tls_reasm,
            "quic_initial" => &self.quic,
            "http_host" => &self.http,
            "pcap" => &self.pcap,
            "config" => &self.config,
            "context" => &self.context,
            _ => &[],
        };
        let mut seen = HashSet::new();
        let mut added = 0;
        for seed in list {
            let name = format!("seed-{:016x}", fnv1a(seed));
            if !seen.insert(name.clone()) {
                continue;
            }
            let path = corpus.join(&name);
            if !path.exists() {
                std::fs::write(&path, seed)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                added += 1;
            }
        }
        Ok(added)
    }
}

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Every uncompressed capture below `dir`.
fn find_captures(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            find_captures(&p, out);
        } else if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
            out.push(p);
        }
    }
}

fn u16_at(b: &[u8], at: usize, be: bool) -> Option<u16> {
    let s: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
    Some(if be {
        u16::from_be_bytes(s)
    } else {
        u16::from_le_bytes(s)
    })
}

fn u32_at(b: &[u8], at: usize, be: bool) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(if be {
        u32::from_be_bytes(s)
    } else {
        u32::from_le_bytes(s)
    })
}

/// The frames of a classic pcap or pcapng file with their link types, spread over the file
/// (one in every few, so a long capture contributes its variety rather than its first
/// seconds). Damaged files give what precedes the damage.
fn frames(b: &[u8]) -> Vec<(u32, &[u8])> {
    let mut out = Vec::new();
    let magic = u32_at(b, 0, false).unwrap_or(0);
    match magic {
        0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1 => {
            let be = matches!(magic, 0xd4c3_b2a1 | 0x4d3c_b2a1);
            let link = u32_at(b, 20, be).unwrap_or(1) & 0x0fff_ffff;
            let mut at = 24;
            while let Some(caplen) = u32_at(b, at + 8, be) {
                let start = at + 16;
                let Some(frame) = b.get(start..start + caplen as usize) else {
                    break;
                };
                out.push((link, frame));
                at = start + caplen as usize;
            }
        }
        0x0a0d_0d0a => {
            let be = u32_at(b, 8, false) == Some(0x4d3c_2b1a);
            let mut links = Vec::new();
            let mut at = 0;
            while let Some(len) = u32_at(b, at + 4, be) {
                let len = len as usize;
                if len < 12 || at + len > b.len() {
                    break;
                }
                match u32_at(b, at, be) {
                    Some(0x0a0d_0d0a) => links.clear(),
                    Some(1) => links.push(u32::from(u16_at(b, at + 8, be).unwrap_or(1))),
                    Some(6) => {
                        let iface = u32_at(b, at + 8, be).unwrap_or(0) as usize;
                        let caplen = u32_at(b, at + 20, be).unwrap_or(0) as usize;
                        if let (Some(&link), Some(frame)) =
                            (links.get(iface), b.get(at + 28..at + 28 + caplen))
                        {
                            out.push((link, frame));
                        }
                    }
                    _ => {}
                }
                at += len;
            }
        }
        _ => {}
    }
    let step = (out.len() / FRAMES_PER_CAPTURE).max(1);
    out.into_iter().step_by(step).collect()
}

/// Ports and payload of a plain UDP or TCP packet (no tunnels, fragments or IPv6 extension
/// headers: seeds need not be exhaustive, only realistic).
fn transport_payload(link: u32, f: &[u8]) -> Option<(u16, u16, &[u8])> {
    let (mut ethertype, mut at) = match link {
        1 => (u16_at(f, 12, true)?, 14),
        113 => (u16_at(f, 14, true)?, 16),
        276 => (u16_at(f, 0, true)?, 20),
        101 | 228 | 229 => (if f.first()? >> 4 == 6 { 0x86dd } else { 0x0800 }, 0),
        0 | 108 => (if f.get(4)? >> 4 == 6 { 0x86dd } else { 0x0800 }, 4),
        _ => return None,
    };
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        ethertype = u16_at(f, at + 2, true)?;
        at += 4;
    }
    let (proto, l4) = match ethertype {
        0x0800 => {
            let ihl = usize::from(f.get(at)? & 0x0f) * 4;
            let frag = u16_at(f, at + 6, true)? & 0x3fff;
            if frag != 0 || ihl < 20 {
                return None;
            }
            (*f.get(at + 9)?, at + ihl)
        }
        0x86dd => (*f.get(at + 6)?, at + 40),
        _ => return None,
    };
    let sport = u16_at(f, l4, true)?;
    let dport = u16_at(f, l4 + 2, true)?;
    let payload = match proto {
        17 => f.get(l4 + 8..)?,
        6 => f.get(l4 + usize::from(f.get(l4 + 12)? >> 4) * 4..)?,
        _ => return None,
    };
    Some((sport, dport, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_pcap_frames_and_udp_payload() {
        // One Ethernet/IPv4/UDP frame to port 53 with a 4-byte payload.
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![
            0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
        ];
        ip.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4]);
        frame.extend_from_slice(&ip);
        let mut file = Vec::new();
        file.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        file.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0]);
        file.extend_from_slice(&1u32.to_le_bytes());
        file.extend_from_slice(&[0; 8]);
        file.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        file.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        file.extend_from_slice(&frame);
        let fs = frames(&file);
        assert_eq!(fs.len(), 1);
        assert_eq!(fs[0].0, 1);
        let (s, d, p) = transport_payload(fs[0].0, fs[0].1).unwrap();
        assert_eq!((s, d, p), (12345, 53, &[1u8, 2, 3, 4][..]));
        let mut seeds = Seeds::default();
        seeds.add_frame(fs[0].0, fs[0].1);
        assert_eq!(seeds.dns.len(), 1);
        assert_eq!(seeds.decode[0][0], 1, "Ethernet is the second decode link");
    }
}

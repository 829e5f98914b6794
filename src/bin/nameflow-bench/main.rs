//! `nameflow-bench`: the privileged pieces of `cargo xtask bench` that need BPF or raw
//! sockets, kept out of xtask so xtask builds on a machine without clang or libbpf.
//!
//! - `gen`: the traffic generator (BPF_PROG_RUN live frames on the sending veth).
//! - `sink`: the XDP_DROP ceiling receiver, or an XDP_PASS counter for the AF_PACKET run.
//! - `af-packet`: the plain TPACKET_V3 reader the project compares itself with.
//! - `af-xdp`: nameflow's XDP program and AF_XDP socket with nothing behind them: the floor
//!   the capture method itself sets.
//! - `templates`: writes a template set, varied as the generator varies it, as a pcap.
//!
//! Receivers print `ready` once they receive, then run until SIGINT/SIGTERM; every command
//! prints one JSON object with its counts on stdout at the end. The BPF object comes from
//! `bench/bench.bpf.c`, compiled by xtask at bench time.

mod afpacket;
mod afxdp;
mod gen;
mod sink;
mod templates;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use libbpf_rs::{MapCore, MapFlags, Object, ObjectBuilder, ProgramMut};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "nameflow-bench",
    about = "bench helpers for `cargo xtask bench`"
)]
struct Cli {
    /// Pin this process to this CPU.
    #[arg(long, global = true)]
    cpu: Option<usize>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send a template set into IFACE's peer at a paced rate (run inside IFACE's namespace).
    Gen {
        /// The compiled bench/bench.bpf.c.
        #[arg(long)]
        obj: PathBuf,
        #[arg(long)]
        iface: String,
        /// udp64, imix, tcp, dns or synflood.
        #[arg(long)]
        template: String,
        /// Frames per second; 0: as fast as possible.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Seconds to send for.
        #[arg(long, default_value_t = 2.0)]
        duration: f64,
        /// Most frames sent back to back to make up lag (paced batches); 0: 64 or a
        /// millisecond's worth, whichever is more.
        #[arg(long, default_value_t = 0)]
        batch: u32,
    },
    /// Count and drop (or pass) every frame arriving on IFACE, in XDP.
    Sink {
        #[arg(long)]
        obj: PathBuf,
        #[arg(long)]
        iface: String,
        /// Pass frames to the kernel instead of dropping them.
        #[arg(long)]
        pass: bool,
    },
    /// Read IFACE with a TPACKET_V3 ring.
    AfPacket {
        #[arg(long)]
        iface: String,
        /// Ring block size in KiB.
        #[arg(long, default_value_t = 256)]
        block_kib: usize,
        /// Ring blocks.
        #[arg(long, default_value_t = 16)]
        blocks: usize,
    },
    /// Read IFACE's queue 0 through nameflow's XDP program and an AF_XDP socket, counting
    /// frames and nothing more.
    AfXdp {
        #[arg(long)]
        iface: String,
        /// Descriptors per RX and fill ring.
        #[arg(long, default_value_t = 2048)]
        ring_size: u32,
        /// UMEM frame size in bytes.
        #[arg(long, default_value_t = 4096)]
        frame_size: u32,
    },
    /// Write a template set as a pcap: every template for rounds 0 and 1.
    Templates {
        #[arg(long)]
        template: String,
        #[arg(long)]
        pcap: PathBuf,
    },
}

/// A flat JSON object of numbers and strings, written by hand (the helper's only output).
#[derive(Default)]
pub struct Json(Vec<(String, String)>);

impl Json {
    pub fn num(&mut self, k: &str, v: f64) -> &mut Json {
        let s = if v.is_finite() {
            format!("{v}")
        } else {
            "null".into()
        };
        self.0.push((k.into(), s));
        self
    }

    pub fn str(&mut self, k: &str, v: &str) -> &mut Json {
        self.0.push((k.into(), format!("{v:?}")));
        self
    }

    /// p50/p99/p99.9/max and count of a latency histogram in nanoseconds.
    pub fn latency(&mut self, h: &hdrhistogram::Histogram<u64>) -> &mut Json {
        self.num("batches", h.len() as f64);
        for (k, q) in [("p50", 0.5), ("p99", 0.99), ("p999", 0.999)] {
            let v = if h.is_empty() {
                f64::NAN
            } else {
                h.value_at_quantile(q) as f64
            };
            self.num(&format!("batch_{k}_ns"), v);
        }
        let max = if h.is_empty() {
            f64::NAN
        } else {
            h.max() as f64
        };
        self.num("batch_max_ns", max)
    }

    fn render(&self) -> String {
        let body: Vec<String> = self.0.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
        format!("{{{}}}", body.join(","))
    }
}

/// Opens and loads the bench object; `templates` resizes the template map first.
pub fn load_object(path: &Path, templates: Option<u32>) -> Result<Object> {
    let mut open = ObjectBuilder::default()
        .open_file(path)
        .with_context(|| format!("cannot open the BPF object {}", path.display()))?;
    if let Some(n) = templates {
        let mut m = open
            .maps_mut()
            .find(|m| m.name() == "templates")
            .context("the BPF object has no `templates` map")?;
        m.set_max_entries(n.max(1))
            .context("cannot size the template map")?;
    }
    open.load()
        .with_context(|| format!("the kernel refused {}", path.display()))
}

pub fn find_prog<'a>(obj: &'a Object, name: &str) -> Result<ProgramMut<'a>> {
    obj.progs_mut()
        .find(|p| p.name() == name)
        .with_context(|| format!("the BPF object has no program `{name}`"))
}

/// The interface's index in this process' network namespace.
pub fn ifindex(iface: &str) -> Result<u32> {
    let path = format!("/sys/class/net/{iface}/ifindex");
    let s = std::fs::read_to_string(&path).with_context(|| {
        format!("no interface {iface} here ({path}); run inside its network namespace")
    })?;
    s.trim()
        .parse()
        .with_context(|| format!("{path} holds {s:?}, not an index"))
}

/// The u64 fields of a per-CPU single-entry map, summed over CPUs.
pub fn percpu_sum<M: MapCore>(map: &M) -> Result<Vec<u64>> {
    let per_cpu = map
        .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
        .context("cannot read per-CPU counters")?
        .context("per-CPU counters missing")?;
    let mut sum = Vec::new();
    for cpu in per_cpu {
        for (i, c) in cpu.chunks_exact(8).enumerate() {
            let v = u64::from_ne_bytes(c.try_into().expect("8 bytes"));
            if sum.len() <= i {
                sum.push(0);
            }
            sum[i] += v;
        }
    }
    Ok(sum)
}

fn run(cli: Cli) -> Result<Json> {
    if let Some(cpu) = cli.cpu {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
            bail!("cannot pin to CPU {cpu}");
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .with_context(|| format!("cannot install the handler for signal {sig}"))?;
    }
    let template = |name: &str| {
        templates::build(name).with_context(|| {
            format!(
                "unknown template {name:?}: choose one of {}",
                templates::NAMES.join(", ")
            )
        })
    };
    match cli.cmd {
        Cmd::Gen {
            obj,
            iface,
            template: t,
            rate,
            duration,
            batch,
        } => gen::run(
            gen::GenArgs {
                obj: &obj,
                iface: &iface,
                set: template(&t)?,
                rate,
                duration: Duration::from_secs_f64(duration.max(0.0)),
                batch,
            },
            &stop,
        ),
        Cmd::Sink { obj, iface, pass } => sink::run(&obj, &iface, pass, &stop),
        Cmd::AfPacket {
            iface,
            block_kib,
            blocks,
        } => afpacket::run(ifindex(&iface)?, block_kib, blocks, &stop),
        Cmd::AfXdp {
            iface,
            ring_size,
            frame_size,
        } => afxdp::run(&iface, ring_size, frame_size, &stop),
        Cmd::Templates { template: t, pcap } => {
            let set = template(&t)?;
            let mut trace = nameflow::synth::Trace::new();
            let mut ts = 1_700_000_000_000_000_000u64;
            for round in 0..2 {
                for f in &set.frames {
                    trace.push_frame(ts, templates::render(f, round, set.stride));
                    ts += 1_000;
                }
            }
            trace
                .write_pcap(&pcap, nameflow::synth::TsResolution::Nano)
                .with_context(|| format!("cannot write {}", pcap.display()))?;
            let mut j = Json::default();
            j.str("template", set.name)
                .num("frames", set.frames.len() as f64)
                .num("rounds", f64::from(set.rounds))
                .num(
                    "bytes_per_pass",
                    set.frames.iter().map(|f| f.data.len()).sum::<usize>() as f64,
                );
            Ok(j)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(j) => {
            println!("{}", j.render());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("nameflow-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! The generator: `gen_tx` from `bench/bench.bpf.c` run with `BPF_PROG_RUN` in live-frames
//! mode on the sending veth.
//!
//! Every repetition of the program either builds the next template frame and returns
//! `XDP_TX`, which the kernel turns into a transmission out of the ingress device (the
//! sending veth), i.e. into the peer's receive path, or, when the pace says no frame is due
//! yet, drops an untouched frame that nobody sees. A `BPF_PROG_RUN` call with more than one
//! repetition costs tens of milliseconds whatever it does (measured here: ~25 ms on a 2-vCPU
//! VM), so this loop makes few long calls (about `CALL` each, sized from the previous call's
//! speed) and the program paces itself with its own clock. The offered rate is measured from
//! the program's own first and last send times and its frame count, never assumed.

use crate::templates::{TemplateSet, MAX_FRAME};
use crate::{find_prog, ifindex, load_object, percpu_sum, Json};
use anyhow::{bail, Context, Result};
use libbpf_rs::{libbpf_sys, MapCore, MapFlags};
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// `BPF_F_TEST_XDP_LIVE_FRAMES` from `linux/bpf.h`.
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
/// How long one BPF_PROG_RUN call should last, in seconds: long against its fixed cost.
const CALL: f64 = 0.5;
/// Threads making BPF_PROG_RUN calls at once.
const CALLERS: usize = 2;
/// Size of the template map's value: the header of `struct gen_template`, then the frame.
const TEMPLATE_VALUE: usize = 16 + MAX_FRAME;

pub struct GenArgs<'a> {
    pub obj: &'a Path,
    pub iface: &'a str,
    pub set: TemplateSet,
    /// Frames per second; 0: as fast as the machine goes.
    pub rate: u64,
    pub duration: Duration,
    /// Most frames sent back to back to make up lag (paced batches); 0: 64 or 1 ms worth.
    pub batch: u32,
}

fn template_value(t: &crate::templates::Template) -> Vec<u8> {
    let mut v = vec![0u8; TEMPLATE_VALUE];
    v[0..2].copy_from_slice(&(t.data.len() as u16).to_ne_bytes());
    v[2..4].copy_from_slice(&t.vary_off.to_ne_bytes());
    v[4..6].copy_from_slice(&t.ip_csum_off.to_ne_bytes());
    v[6..8].copy_from_slice(&t.l4_csum_off.to_ne_bytes());
    v[8] = u8::from(t.udp);
    v[16..16 + t.data.len()].copy_from_slice(&t.data);
    v
}

pub fn run(a: GenArgs<'_>, stop: &AtomicBool) -> Result<Json> {
    let n = a.set.frames.len() as u32;
    let obj = load_object(a.obj, Some(n))?;
    let map = |name: &str| {
        obj.maps()
            .find(|m| m.name() == name)
            .with_context(|| format!("{} has no map `{name}`", a.obj.display()))
    };
    let templates = map("templates")?;
    for (i, t) in a.set.frames.iter().enumerate() {
        templates
            .update(&(i as u32).to_ne_bytes(), &template_value(t), MapFlags::ANY)
            .with_context(|| format!("cannot store template {i}"))?;
    }
    let counters = map("gen_counters")?;
    let prog = find_prog(&obj, "gen_tx")?;

    let ifindex = ifindex(a.iface)?;
    // The frame every repetition starts from: as long as the longest template, so the
    // program only ever shrinks it.
    let longest = a
        .set
        .frames
        .iter()
        .map(|t| t.data.len())
        .max()
        .unwrap_or(60);
    let data = vec![0u8; longest];
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress.
    let md = |buf: &mut [u8; 24]| {
        for (i, v) in [0, longest as u32, 0, ifindex, 0, 0]
            .into_iter()
            .enumerate()
        {
            buf[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        }
    };
    let gap_ns = if a.rate == 0 {
        0
    } else {
        1_000_000_000 / a.rate.max(1)
    };
    // Lag made up at full speed: `batch` frames, or by default 64 frames (the kernel's own
    // batch) or a millisecond's worth, whichever is more, so a short preemption of the
    // generator does not lower the rate.
    let burst_ns = match a.batch {
        0 => (gap_ns * 64).max(1_000_000),
        b => gap_ns * u64::from(b),
    };
    let start_ns = monotonic_ns();
    let stop_ns = start_ns + a.duration.as_nanos() as u64;
    let mut cfg = Vec::with_capacity(40);
    for v in [n, a.set.rounds.max(1), a.set.stride, 0] {
        cfg.extend_from_slice(&v.to_ne_bytes());
    }
    for v in [gap_ns, burst_ns, stop_ns] {
        cfg.extend_from_slice(&v.to_ne_bytes());
    }
    map("config")?
        .update(&0u32.to_ne_bytes(), &cfg, MapFlags::ANY)
        .context("cannot store the generator config")?;

    let start = Instant::now();
    let fd = prog.as_fd().as_raw_fd();
    // Two callers on the generator's CPU: while one call is in its fixed-cost set-up or
    // tear-down (which sleeps), the other one sends, so the traffic has no holes. Both
    // share the program's per-CPU pacing state, so the rate is the configured one.
    let calls: Vec<Result<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CALLERS)
            .map(|_| s.spawn(|| call_loop(fd, md, &data, stop_ns, stop)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| bail!("a generator thread panicked"))
            })
            .collect()
    });
    let mut total_calls = 0;
    for c in calls {
        total_calls += c?;
    }
    let calls = total_calls;
    let elapsed = start.elapsed().as_secs_f64();
    let after = percpu_sum(&counters)?;
    // The maps are this process' own, so the counters started at zero.
    let (sent, errors) = (after[0], after[1]);
    // The span of sending, by the program's clock: first frame to one gap after the last.
    let (first, last) = first_last(&counters)?;
    let span = if sent > 0 {
        (last.saturating_sub(first) + gap_ns.max(1)) as f64 / 1e9
    } else {
        elapsed
    };
    if errors > 0 {
        bail!("the generator could not build {errors} frame(s): a template is malformed");
    }
    let mut j = Json::default();
    j.str("template", a.set.name)
        .num("target_pps", a.rate as f64)
        .num("sent", sent as f64)
        .num("elapsed_s", span)
        .num("wall_s", elapsed)
        .num("achieved_pps", sent as f64 / span.max(1e-9))
        .num("calls", calls as f64)
        // What the frames sent describe: the soak derives the connections it offered.
        .num("frames_per_round", a.set.frames.len() as f64)
        .num("rounds", a.set.rounds as f64);
    Ok(j)
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns()`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The first and last send times over CPUs (fields 3 and 4 of `struct gen_counters`).
fn first_last<M: MapCore>(map: &M) -> Result<(u64, u64)> {
    let per_cpu = map
        .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
        .context("cannot read the generator counters")?
        .context("generator counters missing")?;
    let field = |c: &[u8], i: usize| u64::from_ne_bytes(c[i * 8..i * 8 + 8].try_into().expect("8"));
    let mut first = u64::MAX;
    let mut last = 0;
    for c in per_cpu.iter().filter(|c| field(c, 0) > 0) {
        first = first.min(field(c, 3));
        last = last.max(field(c, 4));
    }
    Ok((if first == u64::MAX { 0 } else { first }, last))
}

/// Makes BPF_PROG_RUN calls until `stop_ns`, each sized to last about `CALL`; returns the
/// number of calls.
fn call_loop(
    fd: i32,
    md: impl Fn(&mut [u8; 24]),
    data: &[u8],
    stop_ns: u64,
    stop: &AtomicBool,
) -> Result<u64> {
    let mut repeat: u32 = 1 << 20;
    let mut calls = 0u64;
    while monotonic_ns() < stop_ns && !stop.load(Ordering::Relaxed) {
        let mut ctx = [0u8; 24];
        md(&mut ctx);
        let t0 = Instant::now();
        // SAFETY: an all-zero bpf_test_run_opts is its documented default; the fields set
        // below point to `ctx` and `data`, which outlive the call.
        let mut opts: libbpf_sys::bpf_test_run_opts = unsafe { std::mem::zeroed() };
        opts.sz = std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _;
        opts.ctx_in = ctx.as_ptr().cast();
        opts.ctx_size_in = ctx.len() as u32;
        opts.data_in = data.as_ptr().cast();
        opts.data_size_in = data.len() as u32;
        opts.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
        opts.repeat = repeat as i32;
        // SAFETY: `fd` is the loaded program's descriptor, alive for the whole scope of the
        // caller; `opts` is valid as set up above.
        let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(fd, &mut opts) };
        if rc != 0 {
            bail!(
                "BPF_PROG_RUN (live frames) failed: {}; the kernel needs 5.18 or later",
                std::io::Error::from_raw_os_error(-rc)
            );
        }
        if opts.retval != 0 {
            bail!("BPF_PROG_RUN returned {}", opts.retval);
        }
        calls += 1;
        // Size the next call to last about CALL, or to reach the stop time.
        let took = t0.elapsed().as_secs_f64().max(1e-6);
        let per_s = f64::from(repeat) / took;
        let left = (stop_ns.saturating_sub(monotonic_ns()) as f64 / 1e9).min(CALL);
        repeat = (per_s * left.max(0.01)).clamp(65_536.0, f64::from(u32::MAX / 2)) as u32;
    }
    Ok(calls)
}

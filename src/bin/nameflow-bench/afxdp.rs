//! The AF_XDP floor receiver: nameflow's own XDP program and AF_XDP socket, with a loop that
//! only reads each frame's ethertype. It measures what the capture method itself delivers on
//! this link (on veth: copy mode, the kernel copying every frame into the UMEM in the
//! sender's softirq), so the report can tell the cost of the method from the cost of
//! nameflow's work on top of it.

use crate::Json;
use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use nameflow::capture::xdp::{Interface, XdpConfig, XdpMode, XdpProgram};
use nameflow::capture::xsk::{XskConfig, XskSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub fn run(iface: &str, ring_size: u32, frame_size: u32, stop: &AtomicBool) -> Result<Json> {
    let itf = Interface::lookup(iface)?;
    let mut prog = XdpProgram::load(&XdpConfig::default())?;
    let cfg = XskConfig {
        ring_size,
        frame_size,
        ..XskConfig::default()
    };
    let mut sock = XskSocket::open(iface, 0, &cfg)?;
    prog.register_socket(iface, 0, sock.fd())?;
    let mode = prog
        .attach(&itf, XdpMode::Native, false)
        .context("cannot attach nameflow's XDP program")?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|e| anyhow::anyhow!("histogram: {e}"))?;
    let (mut packets, mut ipv4, mut idle, mut busy_ns) = (0u64, 0u64, 0u32, 0u64);
    println!("ready");
    let mut stopping = false;
    loop {
        if !stopping && stop.load(Ordering::Relaxed) {
            // Like nameflow: stop redirecting, then empty the ring.
            prog.unregister_socket(0);
            stopping = true;
        }
        let t0 = Instant::now();
        let got = sock.recv_batch(|data| {
            packets += 1;
            if data.len() >= 14 && data[12..14] == [0x08, 0x00] {
                ipv4 += 1;
            }
        });
        if got > 0 {
            let ns = t0.elapsed().as_nanos() as u64;
            hist.saturating_record(ns);
            busy_ns += ns;
            idle = 0;
        } else if stopping {
            break;
        } else {
            idle += 1;
            if idle > 64 {
                XskSocket::wait_any(std::slice::from_ref(&sock), 1);
            }
        }
    }
    let xdp = prog.counters()?;
    let s = sock.statistics().context("cannot read XDP_STATISTICS")?;
    prog.detach();
    let mut j = Json::default();
    j.str("receiver", "af_xdp")
        .str("mode", &format!("{mode:?}"))
        .num("zero_copy", f64::from(u8::from(sock.zero_copy())))
        .num("packets", packets as f64)
        .num("ipv4", ipv4 as f64)
        .num("xdp_seen", xdp.seen as f64)
        .num("xdp_redirected", xdp.redirected as f64)
        .num("rx_dropped", s.rx_dropped as f64)
        .num("rx_ring_full", s.rx_ring_full as f64)
        .num("rx_fill_ring_empty", s.rx_fill_ring_empty_descs as f64)
        .num("batch_busy_ns", busy_ns as f64)
        .latency(&hist);
    Ok(j)
}

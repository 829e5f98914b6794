//! The XDP receivers of the bench: `sink_drop` (the ceiling: count and drop) and
//! `sink_pass` (count and hand to the kernel, for the AF_PACKET reader), attached through a
//! bpf_link so the kernel detaches them whenever this process ends.

use crate::{find_prog, ifindex, load_object, percpu_sum, Json};
use anyhow::{Context, Result};
use libbpf_rs::MapCore;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub fn run(obj: &Path, iface: &str, pass: bool, stop: &AtomicBool) -> Result<Json> {
    let object = load_object(obj, None)?;
    let name = if pass { "sink_pass" } else { "sink_drop" };
    let prog = find_prog(&object, name)?;
    let idx = ifindex(iface)?;
    let link = prog
        .attach_xdp(idx as i32)
        .with_context(|| format!("cannot attach {name} to {iface}"))?;
    let counters = object
        .maps()
        .find(|m| m.name() == "sink_counters")
        .context("the object has no map `sink_counters`")?;
    println!("ready");
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let c = percpu_sum(&counters)?;
    drop(link);
    let mut j = Json::default();
    j.str("receiver", name)
        .num("packets", c[0] as f64)
        .num("bytes", c[1] as f64);
    Ok(j)
}

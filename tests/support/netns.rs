//! Network namespaces, veth pairs and a paced frame sender for the live tests.
//!
//! Everything a test creates has a name unique to the process and the call, and is removed
//! when its guard drops, panics included: deleting a namespace deletes the veth end inside
//! it, and with it the peer. Test traffic never leaves the two namespaces: frames are written
//! to one veth end with an AF_PACKET socket and arrive only at the other end.

use std::fs::File;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A short tag unique to this process and call, fit for interface names (15 bytes at most).
pub fn unique_tag() -> String {
    format!(
        "{}{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a command, returning its output or a message naming it.
pub fn run(cmd: &mut Command) -> Result<Output, String> {
    let desc = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("failed to run {desc}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{desc} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out)
}

/// Runs `ip ARGS...`.
pub fn ip(args: &[&str]) -> Result<String, String> {
    run(Command::new("ip").args(args)).map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Result<Netns, String> {
        let name = format!("{prefix}{}", unique_tag());
        ip(&["netns", "add", &name])?;
        let ns = Netns { name };
        // No IPv6 autoconfiguration: the kernel would otherwise send its own neighbour and
        // router solicitations into the capture.
        run(Command::new("ip").args([
            "netns",
            "exec",
            &ns.name,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]))?;
        Ok(ns)
    }

    /// A command run inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// `ip -n NS ARGS...`.
    pub fn ip(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Two namespaces joined by a multi-queue veth pair: `cap` (the capture end, in `cap_ns`)
/// and `snd` (the sending end, in `snd_ns`).
pub struct VethPair {
    // Namespaces drop last, taking the veth with them.
    pub cap: String,
    pub snd: String,
    pub cap_ns: Netns,
    pub snd_ns: Netns,
}

impl VethPair {
    /// Both ends get `queues` RX and TX queues (XDP on veth refuses fewer RX queues than the
    /// peer's TX queues) and the same MTU.
    pub fn new(queues: u32, mtu: u32) -> Result<VethPair, String> {
        let cap_ns = Netns::new("nfc")?;
        let snd_ns = Netns::new("nfs")?;
        let tag = unique_tag();
        let cap = format!("nfc{tag}");
        let snd = format!("nfs{tag}");
        let q = queues.to_string();
        let m = mtu.to_string();
        ip(&[
            "link",
            "add",
            &cap,
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
            "mtu",
            &m,
            "netns",
            &cap_ns.name,
            "type",
            "veth",
            "peer",
            "name",
            &snd,
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
            "mtu",
            &m,
            "netns",
            &snd_ns.name,
        ])?;
        cap_ns.ip(&["link", "set", &cap, "up"])?;
        snd_ns.ip(&["link", "set", &snd, "up"])?;
        Ok(VethPair {
            cap,
            snd,
            cap_ns,
            snd_ns,
        })
    }

    /// Steers everything the sender transmits to TX queue 0, hence to RX queue 0 of the
    /// capture end (veth receives on the queue the peer sent on): with several workers, most
    /// flows then arrive on a worker that does not own them.
    pub fn steer_to_queue0(&self, queues: u32) -> Result<(), String> {
        let cpus = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(32);
        let all = format!("{:x}", (1u64 << cpus) - 1);
        for q in 0..queues {
            let mask = if q == 0 { all.as_str() } else { "0" };
            let path = format!("/sys/class/net/{}/queues/tx-{q}/xps_cpus", self.snd);
            run(self
                .snd_ns
                .command("sh")
                .args(["-c", &format!("echo {mask} > {path}")]))?;
        }
        Ok(())
    }

    /// The id of the XDP program on the capture end, 0 when none.
    pub fn xdp_prog_id(&self) -> Result<u32, String> {
        let out = self.cap_ns.ip(&["-d", "link", "show", "dev", &self.cap])?;
        // `prog/xdp id N` (or `xdp ... prog/xdp id N`) appears only while a program is
        // attached.
        let id = out
            .split_whitespace()
            .skip_while(|w| !w.starts_with("prog/xdp"))
            .nth(2)
            .and_then(|w| w.parse().ok())
            .unwrap_or(0);
        Ok(id)
    }
}

/// Why the live tests cannot run here, or `None` when they can.
pub fn skip_reason() -> Option<String> {
    // The effective uid is what the kernel checks for namespaces and BPF.
    let uid = run(Command::new("id").arg("-u"))
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if uid != "0" {
        return Some(format!(
            "live tests need root (network namespaces, XDP); running as uid {uid}"
        ));
    }
    match VethPair::new(2, 1500) {
        Ok(_) => None,
        Err(e) => Some(format!(
            "cannot create network namespaces with a veth pair here: {e}"
        )),
    }
}

/// Wall-clock nanoseconds since the epoch.
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Offsets that send one frame every `1/pps` seconds.
pub fn paced(count: usize, pps: u64) -> Vec<u64> {
    (0..count as u64)
        .map(|i| i * 1_000_000_000 / pps.max(1))
        .collect()
}

/// Sends `frames` out of `iface` in namespace `ns`, frame `i` at `offsets_ns[i]` after the
/// start, from a thread that enters the namespace. Returns each frame's send time.
pub fn send_frames(
    ns: &str,
    iface: &str,
    frames: &[Vec<u8>],
    offsets_ns: &[u64],
) -> Result<Vec<u64>, String> {
    let ns_path = format!("/var/run/netns/{ns}");
    let iface = iface.to_string();
    std::thread::scope(|s| {
        s.spawn(move || -> Result<Vec<u64>, String> {
            let f = File::open(&ns_path).map_err(|e| format!("open {ns_path}: {e}"))?;
            // Only this thread moves into the namespace.
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("setns into {ns}: {e}"))?;
            let dev = pnet_datalink::interfaces()
                .into_iter()
                .find(|i| i.name == iface)
                .ok_or_else(|| format!("no interface {iface} in namespace {ns}"))?;
            let cfg = pnet_datalink::Config {
                write_buffer_size: 1 << 16,
                read_buffer_size: 1 << 12,
                ..Default::default()
            };
            let mut tx = match pnet_datalink::channel(&dev, cfg) {
                Ok(pnet_datalink::Channel::Ethernet(tx, _rx)) => tx,
                Ok(_) => return Err("pnet returned a non-Ethernet channel".into()),
                Err(e) => return Err(format!("AF_PACKET socket on {iface}: {e}")),
            };
            let start = Instant::now();
            let mut times = Vec::with_capacity(frames.len());
            for (i, frame) in frames.iter().enumerate() {
                if let Some(&off) = offsets_ns.get(i) {
                    let due = start + Duration::from_nanos(off);
                    while Instant::now() < due {
                        let left = due - Instant::now();
                        if left > Duration::from_micros(200) {
                            std::thread::sleep(left - Duration::from_micros(100));
                        } else {
                            std::hint::spin_loop();
                        }
                    }
                }
                let ts = wall_ns();
                let mut tries = 0;
                loop {
                    match tx.send_to(frame, None) {
                        Some(Ok(())) => break,
                        Some(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) && tries < 1000 => {
                            tries += 1;
                            std::thread::sleep(Duration::from_micros(50));
                        }
                        Some(Err(e)) => {
                            return Err(format!("sending frame {i} ({} bytes): {e}", frame.len()))
                        }
                        None => return Err("pnet sender gave no result".into()),
                    }
                }
                times.push(ts);
            }
            Ok(times)
        })
        .join()
        .map_err(|_| "the sender thread panicked".to_string())?
    })
}

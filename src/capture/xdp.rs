//! The XDP program: load, configure, attach through a bpf_link, register AF_XDP sockets in
//! its XSKMAP, read its per-CPU counters, detach.
//!
//! The program (`bpf/nameflow.bpf.c`) is built by `build.rs` into a skeleton in `OUT_DIR`.
//! After loading, this module keeps only file descriptors of the program and its maps, so the
//! libbpf object (and its borrow-heavy skeleton) is gone before capture starts.
//!
//! Attaching goes through a bpf_link, never netlink: the kernel detaches a link's program when
//! the last descriptor of the link closes, which happens on every exit path of the process,
//! including `kill -9` and an aborting panic. [`XdpProgram`] closes the link when dropped.
// libbpf's link creation and the interface ioctls are C calls; each block says why it is sound.
#![allow(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle, Xdp, XdpFlags};
use std::ffi::CString;
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

// The generated skeleton carries its own unsafe blocks and naming; it is not ours to lint.
#[allow(clippy::undocumented_unsafe_blocks, clippy::all, unreachable_pub)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/nameflow.skel.rs"));
}

/// Per-CPU counters of the XDP program, summed over CPUs (`struct nf_xdp_counters` in
/// `bpf/nameflow.h`).
pub use skel::types::nf_xdp_counters as XdpCounters;

/// The XSKMAP size: RX queues at or beyond it cannot be captured (`NF_MAX_QUEUES`).
pub const MAX_QUEUES: u32 = 256;

/// How the program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// Native (driver) mode when the driver supports XDP, generic otherwise.
    Auto,
    /// Driver mode only; fails on drivers without XDP support.
    Native,
    /// Generic (skb) mode: works everywhere, slower, and on veth delivers every frame on
    /// queue 0.
    Generic,
}

/// The mode the kernel actually attached the program in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    Native,
    Generic,
    Offloaded,
}

impl std::fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachedMode::Native => "native",
            AttachedMode::Generic => "generic",
            AttachedMode::Offloaded => "offloaded",
        })
    }
}

/// What a filter CIDR does to frames whose source or destination address it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterAction {
    /// Hand the frame to the kernel (bypass capture).
    Pass,
    /// Drop the frame before user space sees it.
    Drop,
}

/// One CIDR of the bypass/filter trie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterRule {
    pub addr: IpAddr,
    pub prefix: u8,
    pub action: FilterAction,
}

impl FilterRule {
    /// Parses `CIDR` (a bare address is a /32 or /128).
    pub fn parse(s: &str, action: FilterAction) -> Result<FilterRule, XdpError> {
        let bad = || XdpError::BadFilter {
            text: s.to_string(),
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (
                a.parse::<IpAddr>().map_err(|_| bad())?,
                Some(p.parse::<u8>().map_err(|_| bad())?),
            ),
            None => (s.parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(FilterRule {
            addr,
            prefix,
            action,
        })
    }

    /// The trie key: IPv4 is stored IPv4-mapped, as the program looks it up.
    fn key(&self) -> skel::types::nf_lpm_key {
        let (addr, prefixlen) = match self.addr {
            IpAddr::V4(a) => (a.to_ipv6_mapped().octets(), u32::from(self.prefix) + 96),
            IpAddr::V6(a) => (a.octets(), u32::from(self.prefix)),
        };
        skel::types::nf_lpm_key { prefixlen, addr }
    }
}

/// Settings fixed when the program is loaded.
#[derive(Clone, Debug, Default)]
pub struct XdpConfig {
    /// CIDRs to pass to the kernel or drop before user space.
    pub filters: Vec<FilterRule>,
    /// Drop frames that cannot carry IP instead of passing them to the kernel.
    pub drop_non_ip: bool,
}

/// A network interface as capture needs it.
#[derive(Clone, Debug)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    /// RX queues the device uses now (AF_XDP sockets can bind to these only).
    pub rx_queues: u32,
}

/// Errors a person can act on; each names the interface or the object concerned.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error(
        "no network interface named {name:?} in this network namespace (list them with `ip link`)"
    )]
    NoInterface { name: String },
    #[error("interface {name} is down; bring it up with `ip link set dev {name} up`")]
    InterfaceDown { name: String },
    #[error("cannot query interface {name}: {source}")]
    Query {
        name: String,
        source: std::io::Error,
    },
    #[error("{what} needs the CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_NET_RAW and CAP_IPC_LOCK capabilities: run nameflow as root or grant them (deploy/nameflow.service does; or setcap cap_bpf,cap_perfmon,cap_net_admin,cap_net_raw,cap_ipc_lock+ep)")]
    Permission { what: String },
    #[error("loading the XDP program failed: {0}")]
    Load(String),
    #[error("interface {name} already has an XDP program attached (id {prog_id}, {mode} mode) that nameflow did not attach; detach it (`ip link set dev {name} xdp off`) or pass --force to replace it")]
    Foreign {
        name: String,
        prog_id: u32,
        mode: &'static str,
    },
    #[error("cannot replace the XDP program on {name}: it is held by another process's bpf_link; stop that process first ({source})")]
    ForeignLink {
        name: String,
        source: std::io::Error,
    },
    #[error("attaching the XDP program to {name} in {mode} mode failed: {source}{hint}")]
    Attach {
        name: String,
        mode: &'static str,
        source: std::io::Error,
        hint: &'static str,
    },
    #[error(
        "registering the AF_XDP socket of {name} queue {queue} in the XSKMAP failed: {reason}"
    )]
    Register {
        name: String,
        queue: u32,
        reason: String,
    },
    #[error("reading the XDP program's counters failed: {0}")]
    Counters(String),
    #[error("bad filter CIDR {text:?}: give ADDRESS/PREFIX, e.g. 198.18.0.0/15 or fd00::/8")]
    BadFilter { text: String },
    #[error("writing filter CIDR {cidr} into the XDP program failed: {reason}")]
    FilterMap { cidr: String, reason: String },
}

/// Size of `struct ifreq`: a 16-byte name and a 24-byte union.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: IfReqData,
}

#[repr(C)]
union IfReqData {
    flags: libc::c_short,
    ptr: *mut libc::c_void,
    _pad: [u8; 24],
}

/// `struct ethtool_channels` from `linux/ethtool.h`.
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GCHANNELS: u32 = 0x3c;

impl Interface {
    /// Looks the interface up in this network namespace: it must exist and be up.
    pub fn lookup(name: &str) -> Result<Interface, XdpError> {
        let missing = || XdpError::NoInterface {
            name: name.to_string(),
        };
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(missing());
        }
        let cname = CString::new(name).map_err(|_| missing())?;
        // SAFETY: `cname` is a valid NUL-terminated string that outlives the call.
        let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if index == 0 {
            return Err(missing());
        }
        let query = |source| XdpError::Query {
            name: name.to_string(),
            source,
        };
        // SAFETY: a plain socket(2) call; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(query(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: IfReqData { _pad: [0; 24] },
        };
        for (d, s) in req.name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        // SAFETY: SIOCGIFFLAGS reads the name and writes the flags inside `req`, which is a
        // valid `struct ifreq` for the duration of the call.
        let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCGIFFLAGS as _, &mut req) };
        if rc < 0 {
            return Err(query(std::io::Error::last_os_error()));
        }
        // SAFETY: the ioctl succeeded, so the kernel wrote the `flags` member of the union.
        let flags = unsafe { req.data.flags } as libc::c_int;
        if flags & libc::IFF_UP == 0 {
            return Err(XdpError::InterfaceDown {
                name: name.to_string(),
            });
        }
        let mut ch = EthtoolChannels {
            cmd: ETHTOOL_GCHANNELS,
            ..Default::default()
        };
        req.data.ptr = (&mut ch as *mut EthtoolChannels).cast();
        // SAFETY: SIOCETHTOOL with ETHTOOL_GCHANNELS writes one `struct ethtool_channels`
        // through `req.data.ptr`, which points at `ch`, alive and exclusively borrowed here.
        let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req) };
        let rx_queues = if rc == 0 {
            (ch.rx_count + ch.combined_count).max(1)
        } else {
            // Drivers without channel reporting have one queue, or say so in sysfs.
            sysfs_rx_queues(name, index).unwrap_or(1)
        };
        Ok(Interface {
            name: name.to_string(),
            index,
            rx_queues,
        })
    }
}

/// RX queue count from sysfs, trusted only when sysfs shows this namespace's device.
fn sysfs_rx_queues(name: &str, index: u32) -> Option<u32> {
    let dir = std::path::Path::new("/sys/class/net").join(name);
    let idx: u32 = std::fs::read_to_string(dir.join("ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if idx != index {
        return None;
    }
    let n = std::fs::read_dir(dir.join("queues"))
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    u32::try_from(n).ok().filter(|&n| n > 0)
}

/// The loaded program and its maps, held by descriptor; attached when [`attach`] succeeds.
///
/// [`attach`]: XdpProgram::attach
pub struct XdpProgram {
    prog: OwnedFd,
    xsks: MapHandle,
    counters: MapHandle,
    link: Option<(OwnedFd, u32)>,
}

fn is_permission(e: &libbpf_rs::Error) -> bool {
    matches!(e.kind(), libbpf_rs::ErrorKind::PermissionDenied)
}

impl XdpProgram {
    /// Loads the program with `cfg` and fills its filter trie. Nothing is attached yet.
    pub fn load(cfg: &XdpConfig) -> Result<XdpProgram, XdpError> {
        raise_memlock_limit();
        let mut storage = MaybeUninit::uninit();
        let load_err = |e: libbpf_rs::Error| {
            if is_permission(&e) {
                XdpError::Permission {
                    what: "loading the XDP program".into(),
                }
            } else {
                XdpError::Load(format!("{e:#}"))
            }
        };
        let mut open = skel::NameflowSkelBuilder::default()
            .open(&mut storage)
            .map_err(load_err)?;
        if let Some(ro) = open.maps.rodata_data.as_deref_mut() {
            ro.cfg.filter_enabled = u32::from(!cfg.filters.is_empty());
            ro.cfg.pass_non_ip = u32::from(!cfg.drop_non_ip);
        }
        let loaded = open.load().map_err(load_err)?;
        let handle = |m: &libbpf_rs::MapMut<'_>| {
            MapHandle::try_from(m).map_err(|e| XdpError::Load(format!("{e:#}")))
        };
        let xsks = handle(&loaded.maps.xsks)?;
        let counters = handle(&loaded.maps.counters)?;
        let filter = handle(&loaded.maps.filter)?;
        let prog = loaded
            .progs
            .nameflow_xdp
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| XdpError::Load(format!("duplicating the program descriptor: {e}")))?;
        for rule in &cfg.filters {
            let key = rule.key();
            let action: u8 = match rule.action {
                FilterAction::Pass => 1,
                FilterAction::Drop => 2,
            };
            let mut kb = [0u8; 20];
            kb[..4].copy_from_slice(&key.prefixlen.to_ne_bytes());
            kb[4..].copy_from_slice(&key.addr);
            filter
                .update(&kb, &[action], MapFlags::ANY)
                .map_err(|e| XdpError::FilterMap {
                    cidr: format!("{}/{}", rule.addr, rule.prefix),
                    reason: format!("{e:#}"),
                })?;
        }
        Ok(XdpProgram {
            prog,
            xsks,
            counters,
            link: None,
        })
    }

    /// Attaches the program to `iface` through a bpf_link and reports the mode the kernel
    /// chose. Refuses when another XDP program is attached, unless `force`, in which case a
    /// netlink-attached program is detached first (a program held by another bpf_link cannot
    /// be taken over).
    pub fn attach(
        &mut self,
        iface: &Interface,
        mode: XdpMode,
        force: bool,
    ) -> Result<AttachedMode, XdpError> {
        let ifindex = iface.index as i32;
        let xdp = Xdp::new(self.prog.as_fd());
        let current = query(&xdp, ifindex, &iface.name)?;
        if current.prog_id != 0 {
            if !force {
                return Err(XdpError::Foreign {
                    name: iface.name.clone(),
                    prog_id: current.prog_id,
                    mode: mode_name(current.attach_mode),
                });
            }
            let flags = match u32::from(current.attach_mode) {
                libbpf_sys::XDP_ATTACHED_SKB => XdpFlags::SKB_MODE,
                libbpf_sys::XDP_ATTACHED_HW => XdpFlags::HW_MODE,
                _ => XdpFlags::DRV_MODE,
            };
            if let Err(e) = xdp.detach(ifindex, flags) {
                return Err(XdpError::ForeignLink {
                    name: iface.name.clone(),
                    source: std::io::Error::other(format!("{e:#}")),
                });
            }
        }
        let (flags, wanted) = match mode {
            XdpMode::Auto => (0, "auto"),
            XdpMode::Native => (libbpf_sys::XDP_FLAGS_DRV_MODE, "native"),
            XdpMode::Generic => (libbpf_sys::XDP_FLAGS_SKB_MODE, "generic"),
        };
        let opts = libbpf_sys::bpf_link_create_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _,
            flags,
            ..Default::default()
        };
        // SAFETY: `self.prog` is a loaded XDP program's descriptor, `opts` is a fully
        // initialised options struct whose `sz` matches the libbpf it was compiled against,
        // and both outlive the call. The result is checked before it is used as a descriptor.
        let fd = unsafe {
            libbpf_sys::bpf_link_create(self.prog.as_raw_fd(), ifindex, libbpf_sys::BPF_XDP, &opts)
        };
        if fd < 0 {
            let errno = -fd;
            let source = std::io::Error::from_raw_os_error(errno);
            if errno == libc::EPERM || errno == libc::EACCES {
                return Err(XdpError::Permission {
                    what: format!("attaching XDP to {}", iface.name),
                });
            }
            let hint = match errno {
                libc::EOPNOTSUPP | libc::EINVAL if mode == XdpMode::Native => {
                    "; the driver has no native XDP support: use --xdp-mode generic or auto"
                }
                libc::ENOSPC => "; on veth, give both ends as many TX as RX queues (`ip link add ... numrxqueues N numtxqueues N` on both peers)",
                libc::ERANGE => "; the MTU is too large for XDP on this device: lower it (veth: at most 3506 on both ends)",
                libc::EBUSY | libc::EEXIST => "; another XDP program was attached meanwhile (or in the other mode): detach it or use --force",
                _ => "",
            };
            return Err(XdpError::Attach {
                name: iface.name.clone(),
                mode: wanted,
                source,
                hint,
            });
        }
        // SAFETY: bpf_link_create returned a new descriptor that nothing else owns.
        let link = unsafe { OwnedFd::from_raw_fd(fd) };
        self.link = Some((link, iface.index));
        let now = query(&xdp, ifindex, &iface.name)?;
        Ok(match u32::from(now.attach_mode) {
            libbpf_sys::XDP_ATTACHED_SKB => AttachedMode::Generic,
            libbpf_sys::XDP_ATTACHED_HW => AttachedMode::Offloaded,
            _ => AttachedMode::Native,
        })
    }

    /// Puts the AF_XDP socket `fd` into XSKMAP[`queue`], so the program starts redirecting
    /// that queue's frames to it.
    pub fn register_socket(&self, iface: &str, queue: u32, fd: RawFd) -> Result<(), XdpError> {
        self.xsks
            .update(
                &queue.to_ne_bytes(),
                &(fd as u32).to_ne_bytes(),
                MapFlags::ANY,
            )
            .map_err(|e| XdpError::Register {
                name: iface.to_string(),
                queue,
                reason: format!("{e:#}"),
            })
    }

    /// Takes the socket of `queue` out of the XSKMAP: from then on that queue's frames go to
    /// the kernel (counted as `redirect_failed`). Used to stop reception before draining.
    pub fn unregister_socket(&self, queue: u32) {
        // A queue that was never registered has nothing to remove: not an error.
        let _ = self.xsks.delete(&queue.to_ne_bytes());
    }

    /// The program's counters summed over every CPU.
    pub fn counters(&self) -> Result<XdpCounters, XdpError> {
        let per_cpu = self
            .counters
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| XdpError::Counters(format!("{e:#}")))?
            .ok_or_else(|| XdpError::Counters("the counters map has no slot 0".into()))?;
        let mut sum = XdpCounters::default();
        for bytes in per_cpu {
            let mut f = [0u64; 7];
            for (v, chunk) in f.iter_mut().zip(bytes.chunks_exact(8)) {
                *v = u64::from_ne_bytes(chunk.try_into().unwrap_or([0; 8]));
            }
            sum.seen += f[0];
            sum.seen_bytes += f[1];
            sum.redirected += f[2];
            sum.passed_non_ip += f[3];
            sum.passed_bypass += f[4];
            sum.dropped_filter += f[5];
            sum.redirect_failed += f[6];
        }
        Ok(sum)
    }

    /// True while the program is attached by this process.
    pub fn is_attached(&self) -> bool {
        self.link.is_some()
    }

    /// Detaches the program (closing the bpf_link). Idempotent; also done on drop.
    pub fn detach(&mut self) {
        self.link = None;
    }
}

// The counters layout is read field by field above; keep it in step with the header.
const _: () = assert!(std::mem::size_of::<XdpCounters>() == 7 * 8);

fn query(
    xdp: &Xdp<'_>,
    ifindex: i32,
    name: &str,
) -> Result<libbpf_sys::bpf_xdp_query_opts, XdpError> {
    xdp.query(ifindex, XdpFlags::NONE).map_err(|e| {
        if is_permission(&e) {
            XdpError::Permission {
                what: format!("querying XDP on {name}"),
            }
        } else {
            XdpError::Query {
                name: name.to_string(),
                source: std::io::Error::other(format!("{e:#}")),
            }
        }
    })
}

fn mode_name(attach_mode: u8) -> &'static str {
    match u32::from(attach_mode) {
        libbpf_sys::XDP_ATTACHED_DRV => "native",
        libbpf_sys::XDP_ATTACHED_SKB => "generic",
        libbpf_sys::XDP_ATTACHED_HW => "offloaded",
        libbpf_sys::XDP_ATTACHED_MULTI => "several",
        _ => "unknown",
    }
}

/// The id of the XDP program attached to `ifindex` (0 when none), for tests and checks.
pub fn attached_program_id(iface: &Interface) -> Result<u32, XdpError> {
    // libbpf-rs's `Xdp::query` needs a program descriptor it does not use; asking libbpf
    // directly avoids loading a program just to look.
    let mut opts = libbpf_sys::bpf_xdp_query_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_xdp_query_opts>() as _,
        ..Default::default()
    };
    // SAFETY: `opts` is initialised with its size and outlives the call, which only writes
    // into it.
    let rc = unsafe { libbpf_sys::bpf_xdp_query(iface.index as i32, 0, &mut opts) };
    if rc < 0 {
        return Err(XdpError::Query {
            name: iface.name.clone(),
            source: std::io::Error::from_raw_os_error(-rc),
        });
    }
    Ok(opts.prog_id)
}

/// UMEM and (on kernels before 5.11) BPF maps are locked memory. Root's CAP_IPC_LOCK lifts
/// the limit for UMEM; raising RLIMIT_MEMLOCK covers the rest. Failure is harmless here: the
/// step that needs the memory reports it.
fn raise_memlock_limit() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads one valid `rlimit` struct.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_rules_parse_and_map_ipv4_into_ipv6() {
        let r = FilterRule::parse("198.18.0.0/15", FilterAction::Pass).unwrap();
        let k = r.key();
        assert_eq!(k.prefixlen, 96 + 15);
        assert_eq!(&k.addr[10..], &[0xff, 0xff, 198, 18, 0, 0]);
        let r = FilterRule::parse("fd00::/8", FilterAction::Drop).unwrap();
        assert_eq!(r.key().prefixlen, 8);
        assert_eq!(r.key().addr[0], 0xfd);
        assert_eq!(
            FilterRule::parse("10.1.2.3", FilterAction::Drop)
                .unwrap()
                .prefix,
            32
        );
        assert!(FilterRule::parse("10.0.0.0/33", FilterAction::Drop).is_err());
        assert!(FilterRule::parse("nonsense", FilterAction::Drop).is_err());
    }

    #[test]
    fn missing_interface_is_a_clear_error() {
        let e = Interface::lookup("nf-no-such-if0").unwrap_err();
        assert!(matches!(e, XdpError::NoInterface { .. }), "{e}");
        assert!(e.to_string().contains("ip link"));
    }
}

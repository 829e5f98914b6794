//! One AF_XDP socket and its UMEM per RX queue (via `xsk-rs`).
//!
//! [`XskSocket`] owns the UMEM, the fill ring and the RX ring of one queue, and hands out
//! frames only as borrowed slices inside [`XskSocket::recv_batch`], so no frame can be used
//! after it is given back to the kernel. Frames cycle between three places: the fill ring
//! (owned by the kernel), the RX ring (received, ours to read) and `free` (ours, waiting to
//! go back into the fill ring). After every batch the fill ring is topped up with as many free
//! frames as it has room for: xsk-rs's `produce` is all-or-nothing, so asking for more than
//! the ring can take would put nothing in and stall reception.
//!
//! Nothing here allocates, locks or makes a system call per packet: the batch buffer is
//! allocated once, a poll is made only when the queue is idle or the kernel asks for a
//! wake-up, and statistics are read when the caller asks (periodically).
// xsk-rs's ring and frame accessors are unsafe because only the caller can know which
// frames belong to which UMEM and who owns them; each block says why it holds here.
#![allow(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, RawFd};
use xsk_rs::config::{
    BindFlags, FrameSize, LibxdpFlags, QueueSize, SocketConfig, UmemConfig, XdpFlags,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

/// Whether to ask the driver for zero-copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZeroCopy {
    /// Try zero-copy, fall back to copy mode, and report which one each queue got.
    Auto,
    /// Zero-copy or fail: never fall back silently.
    On,
    /// Copy mode.
    Off,
}

/// Kernel busy-polling of the socket (`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL`,
/// `SO_BUSY_POLL_BUDGET`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusyPoll {
    /// Microseconds to busy-poll per poll call.
    pub usecs: u32,
    /// Packets per busy-poll round.
    pub budget: u32,
}

/// Socket and UMEM sizes and options, shared by every queue.
#[derive(Clone, Copy, Debug)]
pub struct XskConfig {
    /// Descriptors in each of the RX and fill rings (a power of two).
    pub ring_size: u32,
    /// Bytes per UMEM frame (a power of two, 2048 or 4096). Frames longer than this minus
    /// the kernel's headroom (256 bytes) are dropped by the kernel and counted in
    /// `rx_dropped`.
    pub frame_size: u32,
    /// Most frames taken from the RX ring per batch.
    pub batch: usize,
    pub zero_copy: ZeroCopy,
    /// Bind with `XDP_USE_NEED_WAKEUP`: the kernel says when the fill ring needs a poll.
    pub need_wakeup: bool,
    pub busy_poll: Option<BusyPoll>,
}

impl Default for XskConfig {
    fn default() -> Self {
        XskConfig {
            ring_size: 2048,
            frame_size: 4096,
            batch: 64,
            zero_copy: ZeroCopy::Auto,
            need_wakeup: true,
            busy_poll: None,
        }
    }
}

/// `XDP_STATISTICS` of one socket (cumulative since it was bound).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Frames the kernel dropped for this socket (no fill-ring frame, or too long).
    pub rx_dropped: u64,
    /// Malformed descriptors in the fill ring (a bug if ever non-zero).
    pub rx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full (user space too slow).
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty_descs: u64,
}

/// Errors opening a socket, naming the interface and queue.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    #[error("bad AF_XDP setting: {0}")]
    Config(String),
    #[error("cannot create the UMEM for {iface} queue {queue} ({bytes} bytes of locked memory): {reason}; run as root (CAP_IPC_LOCK) or lower --ring-size/--frame-size")]
    Umem {
        iface: String,
        queue: u32,
        bytes: u64,
        reason: String,
    },
    #[error(
        "cannot bind an AF_XDP socket to {iface} queue {queue} in {mode} mode: {reason}{hint}"
    )]
    Bind {
        iface: String,
        queue: u32,
        mode: &'static str,
        reason: String,
        hint: &'static str,
        /// The system error number, 0 when there is none.
        errno: i32,
    },
    #[error("setting {option} on the AF_XDP socket of {iface} queue {queue} failed: {source}")]
    SockOpt {
        iface: String,
        queue: u32,
        option: &'static str,
        source: std::io::Error,
    },
}

/// One bound AF_XDP socket with its own UMEM.
pub struct XskSocket {
    queue: u32,
    zero_copy: bool,
    need_wakeup: bool,
    // Field order matters only for readability: xsk-rs keeps the socket and UMEM alive
    // through shared handles until the last ring is dropped.
    rx: RxQueue,
    fill: FillQueue,
    _tx: TxQueue,
    _comp: CompQueue,
    umem: Umem,
    /// Frames owned by user space, waiting to go back into the fill ring.
    free: Vec<FrameDesc>,
    /// Descriptors of the batch being read (allocated once).
    batch: Vec<FrameDesc>,
}

/// How long opening a socket waits for a queue another (just exited) socket still holds.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

fn umem_config(cfg: &XskConfig) -> Result<(UmemConfig, QueueSize), XskError> {
    let bad = |what: String| XskError::Config(what);
    let ring = QueueSize::new(cfg.ring_size).map_err(|e| {
        bad(format!(
            "--ring-size {}: {e} (give a power of two such as 2048)",
            cfg.ring_size
        ))
    })?;
    let frame = FrameSize::new(cfg.frame_size).map_err(|e| {
        bad(format!(
            "--frame-size {}: {e} (give 2048 or 4096)",
            cfg.frame_size
        ))
    })?;
    let umem = UmemConfig::builder()
        .frame_size(frame)
        .fill_queue_size(ring)
        .comp_queue_size(ring)
        .build()
        .map_err(|e| bad(format!("--frame-size {}: {e}", cfg.frame_size)))?;
    Ok((umem, ring))
}

impl XskSocket {
    /// Creates a UMEM and binds a socket to `iface` queue `queue`, filling the fill ring.
    /// The caller registers [`XskSocket::fd`] in the XDP program's XSKMAP; this socket never
    /// loads a program of its own.
    pub fn open(iface: &str, queue: u32, cfg: &XskConfig) -> Result<XskSocket, XskError> {
        let (umem_cfg, ring) = umem_config(cfg)?;
        let attempts: &[bool] = match cfg.zero_copy {
            ZeroCopy::Auto => &[true, false],
            ZeroCopy::On => &[true],
            ZeroCopy::Off => &[false],
        };
        // A socket of a process that just died stays bound until the kernel has released its
        // UMEM, a moment after the process is gone: a restart (systemd's, after a crash)
        // waits that out instead of failing.
        let deadline = std::time::Instant::now() + BUSY_WAIT;
        loop {
            let mut last = None;
            for &zc in attempts {
                match Self::open_mode(iface, queue, cfg, umem_cfg, ring, zc) {
                    Ok(s) => return Ok(s),
                    Err(e @ XskError::Bind { .. }) => last = Some(e),
                    Err(e) => return Err(e),
                }
            }
            let e = last.unwrap_or_else(|| XskError::Config("no zero-copy mode to try".into()));
            let busy = matches!(&e, XskError::Bind { errno, .. } if *errno == libc::EBUSY);
            if !busy || std::time::Instant::now() >= deadline {
                return Err(e);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn open_mode(
        iface: &str,
        queue: u32,
        cfg: &XskConfig,
        umem_cfg: UmemConfig,
        ring: QueueSize,
        zero_copy: bool,
    ) -> Result<XskSocket, XskError> {
        let frames = cfg.ring_size.saturating_mul(2);
        let bytes = u64::from(frames) * u64::from(cfg.frame_size);
        let frame_count = NonZeroU32::new(frames)
            .ok_or_else(|| XskError::Config("--ring-size must be at least 1".into()))?;
        // A fresh UMEM per attempt: a failed bind may leave the first one's rings configured.
        let (umem, descs) =
            Umem::new(umem_cfg, frame_count, false).map_err(|e| XskError::Umem {
                iface: iface.to_string(),
                queue,
                bytes,
                reason: e.to_string(),
            })?;
        let mut bind = if zero_copy {
            BindFlags::XDP_ZEROCOPY
        } else {
            BindFlags::XDP_COPY
        };
        if cfg.need_wakeup {
            bind |= BindFlags::XDP_USE_NEED_WAKEUP;
        }
        let sock_cfg = SocketConfig::builder()
            .rx_queue_size(ring)
            // xsk-rs always creates a TX ring; the smallest one wastes the least.
            .tx_queue_size(QueueSize::new(1).map_err(|e| XskError::Config(e.to_string()))?)
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .xdp_flags(XdpFlags::empty())
            .bind_flags(bind)
            .build();
        let mode = if zero_copy { "zero-copy" } else { "copy" };
        let name: xsk_rs::config::Interface = iface.parse().map_err(|_| XskError::Bind {
            iface: iface.to_string(),
            queue,
            mode,
            reason: "the interface name contains a NUL byte".into(),
            hint: "",
            errno: 0,
        })?;
        // SAFETY: the UMEM was created just above and is used by this socket only, so the
        // shared-UMEM condition of `Socket::new` (inhibit program load when a pair is bound
        // twice) cannot arise; the flag is set anyway because nameflow loads its own program.
        let created = unsafe { xsk_rs::Socket::new(sock_cfg, &umem, &name, queue) };
        let (tx, rx, rings) = created.map_err(|e| {
            let os = std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .map(|s| (s.to_string(), s.raw_os_error().unwrap_or(0)));
            let (reason, errno) = match os {
                Some((text, errno)) => (format!("{e}: {text}"), errno),
                None => (e.to_string(), 0),
            };
            let hint = if zero_copy {
                "; the driver may not support zero-copy: use --zero-copy auto or off"
            } else {
                "; check that the queue exists (`ethtool -l`) and no other AF_XDP socket is bound to it"
            };
            XskError::Bind {
                iface: iface.to_string(),
                queue,
                mode,
                reason,
                hint,
                errno,
            }
        })?;
        let Some((fill, comp)) = rings else {
            return Err(XskError::Bind {
                iface: iface.to_string(),
                queue,
                mode,
                reason: "xsk-rs returned no fill/completion rings for a fresh UMEM".into(),
                hint: "",
                errno: 0,
            });
        };
        let mut sock = XskSocket {
            queue,
            zero_copy,
            need_wakeup: cfg.need_wakeup,
            rx,
            fill,
            _tx: tx,
            _comp: comp,
            umem,
            free: descs,
            batch: vec![FrameDesc::default(); cfg.batch.max(1)],
        };
        if let Some(bp) = cfg.busy_poll {
            sock.set_busy_poll(iface, bp)?;
        }
        sock.refill();
        Ok(sock)
    }

    fn set_busy_poll(&self, iface: &str, bp: BusyPoll) -> Result<(), XskError> {
        // Values from include/uapi/asm-generic/socket.h (x86-64 and arm64); libc does not
        // export the last two on every target.
        const SO_BUSY_POLL: libc::c_int = 46;
        const SO_PREFER_BUSY_POLL: libc::c_int = 69;
        const SO_BUSY_POLL_BUDGET: libc::c_int = 70;
        let fd = self.fd();
        for (option, name, value) in [
            (SO_PREFER_BUSY_POLL, "SO_PREFER_BUSY_POLL", 1i32),
            (SO_BUSY_POLL, "SO_BUSY_POLL", bp.usecs as i32),
            (SO_BUSY_POLL_BUDGET, "SO_BUSY_POLL_BUDGET", bp.budget as i32),
        ] {
            // SAFETY: setsockopt reads one `c_int` from `value`, which lives across the call.
            let rc = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    option,
                    (&value as *const i32).cast(),
                    std::mem::size_of::<i32>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(XskError::SockOpt {
                    iface: iface.to_string(),
                    queue: self.queue,
                    option: name,
                    source: std::io::Error::last_os_error(),
                });
            }
        }
        Ok(())
    }

    /// The socket descriptor, for the XSKMAP.
    pub fn fd(&self) -> RawFd {
        self.rx.fd().as_raw_fd()
    }

    /// The RX queue this socket is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// True when the driver accepted zero-copy.
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Reads up to one batch of frames, calling `f` with each frame's bytes, then gives the
    /// frames back to the fill ring. Returns how many frames were read.
    pub fn recv_batch(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        // SAFETY: every descriptor in `batch` is filled in by the RX ring of this socket,
        // whose frames all belong to `self.umem`.
        let n = unsafe { self.rx.consume(&mut self.batch) };
        // The kernel wrote these frames from another CPU (in copy mode, in the sender's
        // softirq), so the first read of each is a cross-core cache miss. Reading one byte of
        // every frame first, in a loop with nothing else to wait for, lets the CPU have those
        // misses in flight together instead of one per packet.
        let mut touch = 0u8;
        for desc in &self.batch[..n] {
            // SAFETY: as below: a frame of `self.umem` that the kernel handed to user space.
            let data = unsafe { self.umem.data(desc) };
            touch ^= data.contents().first().copied().unwrap_or(0);
        }
        std::hint::black_box(touch);
        for desc in &self.batch[..n] {
            // SAFETY: `desc` came from this socket's RX ring, so it describes a frame of
            // `self.umem` that the kernel has handed to user space; it is not in the fill
            // ring (it goes back below, after `f` returns), so nothing writes it meanwhile,
            // and the slice does not outlive this iteration.
            let data = unsafe { self.umem.data(desc) };
            f(data.contents());
        }
        self.free.extend_from_slice(&self.batch[..n]);
        self.refill();
        n
    }

    /// Moves as many free frames into the fill ring as it has room for.
    fn refill(&mut self) {
        if self.free.is_empty() {
            return;
        }
        let room = self.fill.nb_free(self.free.len() as u32) as usize;
        let k = room.min(self.free.len());
        if k == 0 {
            return;
        }
        let start = self.free.len() - k;
        // SAFETY: the frames in `free` belong to `self.umem` and are owned by user space
        // (never submitted, or received and released by `recv_batch`); `k` does not exceed
        // the ring's free count, so the all-or-nothing produce puts in all of them.
        let put = unsafe { self.fill.produce(&self.free[start..]) };
        if put > 0 {
            self.free.truncate(self.free.len() - put);
        }
        if self.need_wakeup && self.fill.needs_wakeup() {
            // The kernel asked to be kicked: a zero-timeout poll does it. This happens only
            // when the driver ran dry, not per packet.
            let _ = self.fill.wakeup(self.rx.fd_mut(), 0);
        }
    }

    /// Blocks up to `timeout_ms` until any of `sockets` has frames; true when some are
    /// ready. Used only when the worker is idle, so a frame wakes it at once instead of
    /// waiting out a sleep (which would also lump frames into one batch and one timestamp).
    pub fn wait_any(sockets: &[XskSocket], timeout_ms: i32) -> bool {
        const MAX: usize = 64;
        let mut fds = [libc::pollfd {
            fd: -1,
            events: 0,
            revents: 0,
        }; MAX];
        let n = sockets.len().min(MAX);
        for (p, s) in fds.iter_mut().zip(sockets) {
            p.fd = s.fd();
            p.events = libc::POLLIN;
        }
        // SAFETY: `fds` holds `n` initialised pollfd structs and lives across the call, which
        // only writes their `revents`.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), n as libc::nfds_t, timeout_ms) };
        rc > 0
    }

    /// The socket's `XDP_STATISTICS` (one system call: call it periodically, not per batch).
    pub fn statistics(&self) -> std::io::Result<XskStats> {
        let s = self.rx.fd().xdp_statistics()?;
        Ok(XskStats {
            rx_dropped: s.rx_dropped(),
            rx_invalid_descs: s.rx_invalid_descs(),
            rx_ring_full: s.rx_ring_full(),
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_sizes_are_refused_with_the_flag_named() {
        let cfg = XskConfig {
            ring_size: 1000,
            ..XskConfig::default()
        };
        let e = umem_config(&cfg).unwrap_err().to_string();
        assert!(e.contains("--ring-size 1000"), "{e}");
        let cfg = XskConfig {
            frame_size: 3000,
            ..XskConfig::default()
        };
        let e = umem_config(&cfg).unwrap_err().to_string();
        assert!(e.contains("--frame-size 3000"), "{e}");
        assert!(umem_config(&XskConfig::default()).is_ok());
    }
}

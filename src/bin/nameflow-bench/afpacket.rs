//! The conventional baseline: a plain AF_PACKET reader with a TPACKET_V3 ring, the way
//! libpcap-based sensors capture. It counts frames and bytes and reads each frame's
//! ethertype (so every frame is touched once, as any parser would), and measures how long
//! each ring block takes to process.

use crate::Json;
use anyhow::{bail, Result};
use hdrhistogram::Histogram;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

const TPACKET_V3: libc::c_int = 2;

/// The ring: `blocks` blocks of `block_size` bytes, mapped once.
struct Ring {
    fd: libc::c_int,
    map: *mut u8,
    len: usize,
    block_size: usize,
    blocks: usize,
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: `map`/`len` are the mapping created in `open`, unmapped once here; `fd` is
        // the socket opened there and closed once.
        unsafe {
            libc::munmap(self.map.cast(), self.len);
            libc::close(self.fd);
        }
    }
}

fn os_err(what: &str) -> anyhow::Error {
    anyhow::anyhow!("{what}: {}", io::Error::last_os_error())
}

fn setsockopt<T>(fd: libc::c_int, level: libc::c_int, name: libc::c_int, v: &T) -> libc::c_int {
    // SAFETY: `v` points to a live value of exactly `size_of::<T>()` bytes.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    }
}

fn open(ifindex: u32, block_size: usize, blocks: usize) -> Result<Ring> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, libc::c_int::from(proto)) };
    if fd < 0 {
        return Err(os_err("socket(AF_PACKET)"));
    }
    if setsockopt(fd, libc::SOL_PACKET, libc::PACKET_VERSION, &TPACKET_V3) != 0 {
        // SAFETY: closing the socket opened above.
        unsafe { libc::close(fd) };
        return Err(os_err("PACKET_VERSION TPACKET_V3"));
    }
    let req = libc::tpacket_req3 {
        tp_block_size: block_size as u32,
        tp_block_nr: blocks as u32,
        tp_frame_size: 2048,
        tp_frame_nr: (block_size * blocks / 2048) as u32,
        // A block is handed to user space when full or after 10 ms, whichever comes first.
        tp_retire_blk_tov: 10,
        tp_sizeof_priv: 0,
        tp_feature_req_word: 0,
    };
    if setsockopt(fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req) != 0 {
        // SAFETY: closing the socket opened above.
        unsafe { libc::close(fd) };
        return Err(os_err("PACKET_RX_RING"));
    }
    let len = block_size * blocks;
    // SAFETY: mapping the ring the kernel just allocated for this socket, shared, at a
    // kernel-chosen address.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if map == libc::MAP_FAILED {
        // SAFETY: closing the socket opened above.
        unsafe { libc::close(fd) };
        return Err(os_err("mmap of the TPACKET_V3 ring"));
    }
    let ring = Ring {
        fd,
        map: map.cast(),
        len,
        block_size,
        blocks,
    };
    // SAFETY: an all-zero sockaddr_ll is valid; the fields set below make it a bind address.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is a valid sockaddr_ll of the size given.
    let rc = unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(os_err("bind to the interface"));
    }
    Ok(ring)
}

/// (packets, drops) since the last call; the kernel resets them on every read, and its
/// `tp_packets` includes the drops.
fn statistics(fd: libc::c_int) -> Result<(u64, u64)> {
    let mut st = libc::tpacket_stats_v3 {
        tp_packets: 0,
        tp_drops: 0,
        tp_freeze_q_cnt: 0,
    };
    let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
    // SAFETY: `st` and `len` describe a writable buffer of the size the kernel expects.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut libc::tpacket_stats_v3).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(os_err("PACKET_STATISTICS"));
    }
    Ok((u64::from(st.tp_packets), u64::from(st.tp_drops)))
}

/// Reads a u32 the kernel may change under us.
///
/// # Safety
/// `p` must point into the live ring mapping, 4-byte aligned.
unsafe fn read_u32(p: *const u8) -> u32 {
    // SAFETY: guaranteed by the caller.
    unsafe { std::ptr::read_volatile(p.cast::<u32>()) }
}

pub fn run(ifindex: u32, block_kib: usize, blocks: usize, stop: &AtomicBool) -> Result<Json> {
    let ring = open(ifindex, block_kib * 1024, blocks)?;
    // Statistics count from the bind; start from zero.
    statistics(ring.fd)?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|e| anyhow::anyhow!("histogram: {e}"))?;
    let (mut packets, mut bytes, mut ipv4, mut blocks_seen) = (0u64, 0u64, 0u64, 0u64);
    let (mut kernel_packets, mut kernel_drops) = (0u64, 0u64);
    let mut cur = 0usize;
    println!("ready");
    let mut stopping_since: Option<Instant> = None;
    loop {
        // SAFETY: block `cur` lies inside the mapping; block headers are 8-byte aligned.
        let block = unsafe { ring.map.add(cur * ring.block_size) };
        // tpacket_block_desc: version, offset_to_priv, then bh1: block_status (offset 8),
        // num_pkts (12), offset_to_first_pkt (16).
        // SAFETY: as above.
        let status = unsafe { read_u32(block.add(8)) };
        if status & libc::TP_STATUS_USER == 0 {
            if stop.load(Ordering::Relaxed) {
                // Wait out the retire timeout once so a partly filled block is handed over.
                let since = *stopping_since.get_or_insert_with(Instant::now);
                if since.elapsed().as_millis() > 50 {
                    break;
                }
            }
            let mut pfd = libc::pollfd {
                fd: ring.fd,
                events: libc::POLLIN | libc::POLLERR,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, 10) };
            continue;
        }
        std::sync::atomic::fence(Ordering::Acquire);
        let t0 = Instant::now();
        // SAFETY: the kernel handed the block to user space (TP_STATUS_USER); its header
        // and packets are ours to read until we hand it back.
        let (num, first) = unsafe { (read_u32(block.add(12)), read_u32(block.add(16))) };
        let mut off = first as usize;
        for _ in 0..num {
            if off + 28 > ring.block_size {
                bail!("corrupt TPACKET_V3 block: packet header at {off}");
            }
            // SAFETY: `off` was checked to leave a whole tpacket3_hdr inside the block:
            // tp_next_offset (0), tp_snaplen (12), tp_len (16), tp_mac (24, u16).
            let (next, snap, len, mac) = unsafe {
                let h = block.add(off);
                (
                    read_u32(h),
                    read_u32(h.add(12)),
                    read_u32(h.add(16)),
                    std::ptr::read_volatile(h.add(24).cast::<u16>()),
                )
            };
            let data = off + usize::from(mac);
            if snap >= 14 && data + 14 <= ring.block_size {
                // SAFETY: the ethertype lies inside the block (checked just above).
                let et = unsafe { [*block.add(data + 12), *block.add(data + 13)] };
                if et == [0x08, 0x00] {
                    ipv4 += 1;
                }
            }
            packets += 1;
            bytes += u64::from(len);
            if next == 0 {
                break;
            }
            off += next as usize;
        }
        std::sync::atomic::fence(Ordering::Release);
        // SAFETY: handing the block back to the kernel: a volatile store of its status.
        unsafe { std::ptr::write_volatile(block.add(8).cast::<u32>(), libc::TP_STATUS_KERNEL) };
        hist.saturating_record(t0.elapsed().as_nanos() as u64);
        blocks_seen += 1;
        cur = (cur + 1) % ring.blocks;
        if blocks_seen % 64 == 0 {
            let (p, d) = statistics(ring.fd)?;
            kernel_packets += p;
            kernel_drops += d;
        }
    }
    let (p, d) = statistics(ring.fd)?;
    kernel_packets += p;
    kernel_drops += d;
    let mut j = Json::default();
    j.str("receiver", "af_packet")
        .num("packets", packets as f64)
        .num("bytes", bytes as f64)
        .num("ipv4", ipv4 as f64)
        .num("kernel_packets", kernel_packets as f64)
        .num("kernel_drops", kernel_drops as f64)
        .num("blocks", blocks_seen as f64)
        .latency(&hist);
    Ok(j)
}

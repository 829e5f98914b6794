//! The read-only inventory the workers query: every window of every source, indexed by
//! address.
//!
//! Built off the packet path (by the reload thread), then shared read-only. Overlapping
//! windows of one address (a pod on an EC2 instance's secondary address, a table row over a
//! pod) are merged when the inventory is built: each address's timeline is cut into segments
//! over which the same windows apply, and each segment holds the merged values (per column,
//! the highest rank; the latest start among equal ranks). Each address has one contiguous
//! block of its segments in time order, each segment's bounds followed by its values laid
//! out exactly as a record's [`EndContext`] holds them (lengths, then the bytes back to back,
//! already cut to their caps). A lookup is one hash probe, a scan of one block and one copy.
//! With 100,000 windows the inventory is far larger than the caches, and a worker's own
//! tables push it out of them between lookups, so the memory lines a lookup touches are most
//! of its cost. This layout keeps them at one index slot and one block, and
//! [`Inventory::lookup_pair`] looks both ends up in two phases (both slots, then both blocks)
//! so the two ends' cache misses overlap instead of adding up.

use super::{EndContext, Rank, Window, COLUMNS, COLUMN_CAP, END_ARENA};
use crate::types::context::cut_len;
use std::net::IpAddr;

/// How the inventory was built.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct BuildStats {
    /// Windows held.
    pub windows: u64,
    /// Distinct addresses.
    pub addresses: u64,
    /// Windows dropped because there were more than the configured maximum (those that
    /// closed longest ago go first).
    pub dropped: u64,
    /// Values cut at their column's cap or for lack of room in the record.
    pub cut: u64,
    /// Segments stored (windows of one address that overlap are merged into segments).
    pub segments: u64,
}

/// Bytes of a segment's fixed part in a block: from, to, the column lengths.
const SEGMENT_HEAD: usize = 8 + 8 + COLUMNS;

/// Windows per address at most; beyond it the oldest go (the segment count is a `u16`).
const MAX_PER_ADDRESS: usize = 1024;

/// The inventory: see the module documentation.
#[derive(Default)]
pub struct Inventory {
    /// Address → offset of its block in `blocks`.
    index: Index,
    /// Per address: the segment count (`u16`, little-endian), then each segment.
    blocks: Vec<u8>,
    stats: BuildStats,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory")
            .field("stats", &self.stats)
            .field("bytes", &self.blocks.len())
            .finish_non_exhaustive()
    }
}

/// A read-only open-addressing table from address to block offset, key and value in one
/// 24-byte slot, at most half full. A general hash map keeps control bytes apart from its
/// entries, which costs a lookup a second cache miss; this table is built once per reload
/// and never changes, so the simplest layout that touches one line is enough.
#[derive(Default)]
struct Index {
    slots: Vec<Slot>,
    mask: usize,
    len: usize,
}

#[derive(Clone, Copy)]
struct Slot {
    key: [u64; 2],
    /// `EMPTY` when the slot is free.
    off: u32,
}

const EMPTY: u32 = u32::MAX;

impl Index {
    fn with_capacity(n: usize) -> Index {
        let size = (n.max(1) * 2).next_power_of_two();
        Index {
            slots: vec![
                Slot {
                    key: [0; 2],
                    off: EMPTY,
                };
                size
            ],
            mask: size - 1,
            len: 0,
        }
    }

    #[inline]
    fn home(&self, k: [u64; 2]) -> usize {
        // Fibonacci hashing of both halves: addresses differ in their low bits.
        let h = (k[0] ^ k[1].rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> 32) as usize & self.mask
    }

    /// Inserts a key that is not present yet (the builder groups windows by address).
    fn insert(&mut self, k: [u64; 2], off: u32) {
        let mut i = self.home(k);
        while self.slots[i].off != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.slots[i] = Slot { key: k, off };
        self.len += 1;
    }

    #[inline]
    fn get(&self, k: [u64; 2]) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let mut i = self.home(k);
        loop {
            let s = self.slots[i];
            if s.off == EMPTY {
                return None;
            }
            if s.key == k {
                return Some(s.off);
            }
            i = (i + 1) & self.mask;
        }
    }
}

/// The index key of an address: IPv4 as its IPv4-mapped IPv6 form.
#[inline]
fn key(ip: IpAddr) -> [u64; 2] {
    let v = match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    };
    [v as u64, (v >> 64) as u64]
}

#[inline]
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl Inventory {
    /// An inventory that knows nothing.
    pub fn empty() -> Inventory {
        Inventory::default()
    }

    /// Builds an inventory from windows, keeping at most `max_windows` of them.
    pub fn build(mut windows: Vec<Window>, max_windows: usize) -> Inventory {
        let mut stats = BuildStats::default();
        if windows.len() > max_windows {
            // Keep the windows that are open or closed most recently: those are the ones
            // live traffic needs.
            windows.sort_by_key(|w| std::cmp::Reverse(w.to_ns));
            stats.dropped = (windows.len() - max_windows) as u64;
            windows.truncate(max_windows);
        }
        windows.sort_by_key(|w| (key(w.ip), w.from_ns));
        let mut blocks: Vec<u8> = Vec::with_capacity(windows.len() * (SEGMENT_HEAD + 96));
        let addresses = {
            let mut n = 0usize;
            let mut last = None;
            for w in &windows {
                let k = key(w.ip);
                if last != Some(k) {
                    n += 1;
                    last = Some(k);
                }
            }
            n
        };
        let mut index = Index::with_capacity(addresses);
        let mut kept = 0u64;
        let mut bounds: Vec<u64> = Vec::new();
        let mut i = 0;
        while i < windows.len() {
            let k = key(windows[i].ip);
            let mut j = i;
            while j < windows.len() && key(windows[j].ip) == k {
                j += 1;
            }
            // Absurdly many windows for one address: keep the latest.
            let first = i.max(j.saturating_sub(MAX_PER_ADDRESS));
            stats.dropped += (first - i) as u64;
            let group = &windows[first..j];
            kept += group.len() as u64;
            i = j;
            // The instants where the set of covering windows can change.
            bounds.clear();
            for w in group {
                bounds.push(w.from_ns);
                bounds.push(w.to_ns);
            }
            bounds.sort_unstable();
            bounds.dedup();
            let at = blocks.len();
            blocks.extend_from_slice(&[0, 0]);
            let mut count = 0u16;
            for seg in bounds.windows(2) {
                let (from, to) = (seg[0], seg[1]);
                // Per column, the covering window of highest rank; later windows (in start
                // order) win among equal ranks.
                let mut chosen: [Option<(Rank, &str)>; COLUMNS] = [None; COLUMNS];
                let mut covered = false;
                for w in group.iter().filter(|w| w.from_ns <= from && from < w.to_ns) {
                    covered = true;
                    for (slot, v) in chosen.iter_mut().zip(w.values.iter()) {
                        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                            if slot.is_none_or(|(r, _)| w.rank >= r) {
                                *slot = Some((w.rank, v));
                            }
                        }
                    }
                }
                if !covered {
                    continue;
                }
                count += 1;
                blocks.extend_from_slice(&from.to_le_bytes());
                blocks.extend_from_slice(&to.to_le_bytes());
                let lens_at = blocks.len();
                blocks.extend_from_slice(&[0u8; COLUMNS]);
                let mut used = 0usize;
                for (c, slot) in chosen.iter().enumerate() {
                    let Some((_, v)) = slot else { continue };
                    let n = cut_len(v.as_bytes(), COLUMN_CAP[c].min(END_ARENA - used));
                    if n < v.len() {
                        stats.cut += 1;
                    }
                    blocks[lens_at + c] = n as u8;
                    blocks.extend_from_slice(&v.as_bytes()[..n]);
                    used += n;
                }
            }
            blocks[at..at + 2].copy_from_slice(&count.to_le_bytes());
            stats.segments += u64::from(count);
            index.insert(k, at as u32);
        }
        stats.windows = kept;
        stats.addresses = index.len as u64;
        blocks.shrink_to_fit();
        Inventory {
            index,
            blocks,
            stats,
        }
    }

    /// How it was built.
    pub fn stats(&self) -> BuildStats {
        self.stats
    }

    /// Windows held.
    pub fn len(&self) -> usize {
        self.stats.windows as usize
    }

    pub fn is_empty(&self) -> bool {
        self.stats.windows == 0
    }

    /// Writes what `ip` was at `t_ns` into `out`, replacing what it held: for each column,
    /// the value of the covering window of highest rank, the latest-starting among equals.
    /// Returns whether any window covered the instant.
    #[inline]
    pub fn lookup(&self, ip: IpAddr, t_ns: u64, out: &mut EndContext) -> bool {
        let block = self.index.get(key(ip));
        self.fill(block, t_ns, out)
    }

    /// Both ends of a connection at once: the two index slots are read before either block,
    /// so their cache misses overlap. Returns whether each end was found.
    #[inline]
    pub fn lookup_pair(
        &self,
        (a, b): (IpAddr, IpAddr),
        t_ns: u64,
        (out_a, out_b): (&mut EndContext, &mut EndContext),
    ) -> (bool, bool) {
        let ba = self.index.get(key(a));
        let bb = self.index.get(key(b));
        // Touch both blocks before copying from either (the loads are independent).
        let first = |o: Option<u32>| o.map_or(0, |o| self.blocks[o as usize]);
        let _ = std::hint::black_box(first(ba) ^ first(bb));
        (self.fill(ba, t_ns, out_a), self.fill(bb, t_ns, out_b))
    }

    /// Copies the segment of `block` that covers `t_ns` into `out`.
    #[inline]
    fn fill(&self, block: Option<u32>, t_ns: u64, out: &mut EndContext) -> bool {
        if !out.is_empty() {
            *out = EndContext::default();
        }
        let Some(off) = block else {
            return false;
        };
        let b = &self.blocks[..];
        let mut o = off as usize;
        let n = u16::from_le_bytes([b[o], b[o + 1]]);
        o += 2;
        for _ in 0..n {
            let from = u64_at(b, o);
            if from > t_ns {
                break;
            }
            let mut lens = [0u8; COLUMNS];
            lens.copy_from_slice(&b[o + 16..o + SEGMENT_HEAD]);
            let total: usize = lens.iter().map(|&l| l as usize).sum();
            let values = o + SEGMENT_HEAD;
            if t_ns < u64_at(b, o + 8) {
                out.set_raw(&lens, &b[values..values + total]);
                return true;
            }
            o = values + total;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{col, Values};

    const S: u64 = 1_000_000_000;

    fn w(ip: &str, from: u64, to: u64, rank: Rank, c: usize, v: &str) -> Window {
        let mut values: Values = Default::default();
        values[c] = Some(v.into());
        Window {
            ip: ip.parse().unwrap(),
            from_ns: from,
            to_ns: to,
            rank,
            values,
        }
    }

    fn pod_at(inv: &Inventory, ip: &str, t: u64) -> Option<String> {
        let mut e = EndContext::default();
        inv.lookup(ip.parse().unwrap(), t, &mut e);
        e.get(col::POD)
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
    }

    #[test]
    fn windows_are_half_open_and_per_address() {
        let inv = Inventory::build(
            vec![
                w("10.0.0.1", 10 * S, 20 * S, Rank::Pod, col::POD, "a"),
                w("10.0.0.1", 30 * S, u64::MAX, Rank::Pod, col::POD, "b"),
                w("fd00::1", 0, u64::MAX, Rank::Pod, col::POD, "v6"),
            ],
            100,
        );
        assert_eq!(pod_at(&inv, "10.0.0.1", 9 * S), None);
        assert_eq!(pod_at(&inv, "10.0.0.1", 10 * S).as_deref(), Some("a"));
        assert_eq!(pod_at(&inv, "10.0.0.1", 20 * S), None);
        assert_eq!(pod_at(&inv, "10.0.0.1", 25 * S), None);
        assert_eq!(pod_at(&inv, "10.0.0.1", 30 * S).as_deref(), Some("b"));
        assert_eq!(pod_at(&inv, "fd00::1", 5).as_deref(), Some("v6"));
        assert_eq!(pod_at(&inv, "10.0.0.2", 15 * S), None);
        let st = inv.stats();
        assert_eq!((st.windows, st.addresses), (3, 2));
    }

    #[test]
    fn columns_merge_across_sources_by_rank() {
        let inv = Inventory::build(
            vec![
                w("10.0.0.1", 0, u64::MAX, Rank::Table, col::POD, "from-table"),
                w(
                    "10.0.0.1",
                    0,
                    u64::MAX,
                    Rank::Instance,
                    col::INSTANCE,
                    "i-0abc",
                ),
                w("10.0.0.1", 5, u64::MAX, Rank::Pod, col::POD, "web-1"),
            ],
            100,
        );
        let mut e = EndContext::default();
        assert!(inv.lookup("10.0.0.1".parse().unwrap(), 10, &mut e));
        assert_eq!(e.get(col::POD), Some(&b"web-1"[..]));
        assert_eq!(e.get(col::INSTANCE), Some(&b"i-0abc"[..]));
        let mut e = EndContext::default();
        inv.lookup("10.0.0.1".parse().unwrap(), 1, &mut e);
        assert_eq!(e.get(col::POD), Some(&b"from-table"[..]), "before the pod");
    }

    #[test]
    fn the_cap_keeps_the_most_recent_windows() {
        let ws = (0..10u64)
            .map(|i| {
                w(
                    "10.0.0.1",
                    i * S,
                    (i + 1) * S,
                    Rank::Pod,
                    col::POD,
                    &format!("p{i}"),
                )
            })
            .collect();
        let inv = Inventory::build(ws, 4);
        assert_eq!(inv.stats().dropped, 6);
        assert_eq!(pod_at(&inv, "10.0.0.1", S / 2), None);
        assert_eq!(pod_at(&inv, "10.0.0.1", 9 * S).as_deref(), Some("p9"));
    }

    #[test]
    fn long_values_are_cut_at_the_column_cap_and_counted() {
        let long = "p".repeat(80);
        let inv = Inventory::build(
            vec![w("10.0.0.1", 0, u64::MAX, Rank::Pod, col::POD, &long)],
            9,
        );
        assert_eq!(inv.stats().cut, 1);
        assert_eq!(pod_at(&inv, "10.0.0.1", 1).unwrap().len(), 63);
    }
}

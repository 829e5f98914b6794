//! The read-only inventory the workers query: every window of every source, indexed by
//! address.
//!
//! Built off the packet path (by the reload thread), then shared read-only. A lookup is one
//! hash probe (the address) and a scan of that address's windows, which are sorted by start so
//! the scan stops at the first window that starts after the instant asked about. Values live
//! in one byte arena, interned (namespaces and node names repeat) and already cut to their
//! column caps, so a lookup only copies bytes into the record.

use super::{cut_len, EndContext, Rank, Window, COLUMNS, COLUMN_CAP};
use hashbrown::HashMap;
use std::net::IpAddr;

/// A value in the arena (`len == 0`: unknown).
#[derive(Clone, Copy, Default, Debug)]
struct Str {
    off: u32,
    len: u8,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    from_ns: u64,
    to_ns: u64,
    rank: Rank,
    vals: [Str; COLUMNS],
}

/// What one lookup found.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Hit {
    /// At least one window covered the instant.
    pub matched: bool,
    /// A value was cut because the end's values together did not fit the record.
    pub cut: bool,
}

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
    /// Values longer than their column's cap (cut).
    pub cut: u64,
}

/// The inventory: see the module documentation.
#[derive(Default)]
pub struct Inventory {
    index: HashMap<u128, (u32, u32)>,
    entries: Vec<Entry>,
    arena: Vec<u8>,
    stats: BuildStats,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The index key of an address: IPv4 as its IPv4-mapped IPv6 form.
#[inline]
fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
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
        let mut arena: Vec<u8> = Vec::new();
        let mut interned: HashMap<(usize, &str), Str> = HashMap::new();
        let mut entries = Vec::with_capacity(windows.len());
        let mut index: HashMap<u128, (u32, u32)> = HashMap::new();
        for w in &windows {
            let mut vals = [Str::default(); COLUMNS];
            for (c, v) in w.values.iter().enumerate() {
                let Some(v) = v.as_deref() else { continue };
                let n = cut_len(v.as_bytes(), COLUMN_CAP[c]);
                if n == 0 {
                    continue;
                }
                if n < v.len() {
                    stats.cut += 1;
                }
                let cap = COLUMN_CAP[c];
                vals[c] = *interned.entry((cap, &v[..n])).or_insert_with(|| {
                    let s = Str {
                        off: arena.len() as u32,
                        len: n as u8,
                    };
                    arena.extend_from_slice(&v.as_bytes()[..n]);
                    s
                });
            }
            let k = key(w.ip);
            let at = entries.len() as u32;
            index
                .entry(k)
                .and_modify(|r: &mut (u32, u32)| r.1 += 1)
                .or_insert((at, 1));
            entries.push(Entry {
                from_ns: w.from_ns,
                to_ns: w.to_ns,
                rank: w.rank,
                vals,
            });
        }
        stats.windows = entries.len() as u64;
        stats.addresses = index.len() as u64;
        arena.shrink_to_fit();
        Inventory {
            index,
            entries,
            arena,
            stats,
        }
    }

    /// How it was built.
    pub fn stats(&self) -> BuildStats {
        self.stats
    }

    /// Windows held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes what `ip` was at `t_ns` into `out` (which must be empty): for each column, the
    /// value of the covering window of highest rank, the latest-starting among equals.
    #[inline]
    pub fn lookup(&self, ip: IpAddr, t_ns: u64, out: &mut EndContext) -> Hit {
        let mut hit = Hit::default();
        let Some(&(start, n)) = self.index.get(&key(ip)) else {
            return hit;
        };
        let mut chosen: [Option<(Rank, Str)>; COLUMNS] = [None; COLUMNS];
        for e in &self.entries[start as usize..(start + n) as usize] {
            if e.from_ns > t_ns {
                break;
            }
            if t_ns >= e.to_ns {
                continue;
            }
            hit.matched = true;
            for (slot, v) in chosen.iter_mut().zip(e.vals.iter()) {
                if v.len > 0 && slot.is_none_or(|(r, _)| e.rank >= r) {
                    *slot = Some((e.rank, *v));
                }
            }
        }
        for (c, slot) in chosen.iter().enumerate() {
            if let Some((_, s)) = slot {
                let bytes = &self.arena[s.off as usize..s.off as usize + s.len as usize];
                if !out.push(c, bytes) {
                    hit.cut = true;
                }
            }
        }
        hit
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
        let hit = inv.lookup("10.0.0.1".parse().unwrap(), 10, &mut e);
        assert!(hit.matched && !hit.cut);
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

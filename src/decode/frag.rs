//! IPv4 and IPv6 fragment reassembly with hard bounds on memory and datagrams in flight.
//!
//! Each datagram being reassembled owns a slot; slots and the key index are sized at start-up,
//! and data buffers come from a pool so that, once warm, reassembly allocates nothing. Memory
//! is charged by the extent of each buffer (highest byte written), and the oldest datagrams are
//! evicted when a bound is reached. Overlapping fragments are dropped, which also rules out
//! the overlap-based evasions that different stacks resolve differently.

use hashbrown::HashMap;
use std::net::IpAddr;

/// Identifies one datagram: RFC 791's (src, dst, protocol, id) or RFC 8200's (src, dst, id).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct FragKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ident: u32,
    /// The IPv4 protocol; zero for IPv6, whose key does not include it.
    pub proto: u8,
}

/// What the first fragment (offset zero) says about the whole datagram.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct FragMeta {
    /// IPv4: header length. IPv6: 40 plus the unfragmentable extension headers.
    pub header_len: u32,
    /// IPv4: the protocol. IPv6: the next header named by the fragment header.
    pub proto: u8,
}

/// The result of offering a fragment.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum FragOutcome {
    /// Stored; the datagram is still incomplete.
    Held,
    /// Dropped (invalid, overlapping or over a bound).
    Dropped,
    /// The datagram is complete; take it with [`FragTable::take`].
    Complete(usize),
}

/// Ranges a datagram may be split into before it is given up. In-order arrival coalesces
/// into one range, so only heavily reordered or crafted traffic comes near this.
const MAX_RANGES: usize = 32;

/// The largest fragmentable data an IP datagram can hold.
const MAX_DATAGRAM: u32 = 65_535;

struct Slot {
    key: FragKey,
    first_ts: u64,
    buf: Vec<u8>,
    ranges: [(u32, u32); MAX_RANGES],
    n_ranges: usize,
    received: u32,
    total: Option<u32>,
    meta: Option<FragMeta>,
    fragments: u32,
    active: bool,
}

impl Slot {
    fn empty() -> Slot {
        Slot {
            key: FragKey {
                src: IpAddr::from([0u8; 4]),
                dst: IpAddr::from([0u8; 4]),
                ident: 0,
                proto: 0,
            },
            first_ts: 0,
            buf: Vec::new(),
            ranges: [(0, 0); MAX_RANGES],
            n_ranges: 0,
            received: 0,
            total: None,
            meta: None,
            fragments: 0,
            active: false,
        }
    }

    fn overlaps(&self, start: u32, end: u32) -> bool {
        self.ranges[..self.n_ranges]
            .iter()
            .any(|&(s, e)| start < e && end > s)
    }

    /// Records `[start, end)` keeping the list sorted and merging touching ranges. Returns
    /// false when the list is full.
    fn add_range(&mut self, start: u32, end: u32) -> bool {
        let n = self.n_ranges;
        let pos = self.ranges[..n]
            .iter()
            .position(|&(s, _)| s > start)
            .unwrap_or(n);
        let joins_prev = pos > 0 && self.ranges[pos - 1].1 == start;
        let joins_next = pos < n && self.ranges[pos].0 == end;
        match (joins_prev, joins_next) {
            (true, true) => {
                self.ranges[pos - 1].1 = self.ranges[pos].1;
                self.ranges.copy_within(pos + 1..n, pos);
                self.n_ranges -= 1;
            }
            (true, false) => self.ranges[pos - 1].1 = end,
            (false, true) => self.ranges[pos].0 = start,
            (false, false) => {
                if n == MAX_RANGES {
                    return false;
                }
                self.ranges.copy_within(pos..n, pos + 1);
                self.ranges[pos] = (start, end);
                self.n_ranges += 1;
            }
        }
        true
    }
}

/// The reassembly table of one decoder.
pub(crate) struct FragTable {
    index: HashMap<FragKey, usize>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    pool: Vec<Vec<u8>>,
    max_datagrams: usize,
    max_bytes: usize,
    timeout_ns: u64,
    /// Bytes charged to the datagrams in flight (sum of buffer extents).
    bytes: usize,
    next_sweep: u64,
    /// Fragments discarded (dropped on arrival, or held by an evicted or expired datagram).
    pub dropped: u64,
}

impl FragTable {
    pub fn new(max_datagrams: usize, max_bytes: usize, timeout_ns: u64) -> FragTable {
        let max_datagrams = max_datagrams.max(1);
        FragTable {
            index: HashMap::with_capacity(max_datagrams),
            slots: Vec::with_capacity(max_datagrams),
            free: Vec::with_capacity(max_datagrams),
            pool: Vec::with_capacity(max_datagrams + 1),
            max_datagrams,
            max_bytes,
            timeout_ns,
            bytes: 0,
            next_sweep: 0,
            dropped: 0,
        }
    }

    /// Datagrams currently being reassembled.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.index.len()
    }

    /// Offers one fragment: `offset` in bytes into the fragmentable data, `more` the MF flag,
    /// `data` its fragmentable bytes (complete: the caller drops truncated fragments).
    pub fn insert(
        &mut self,
        key: FragKey,
        ts_ns: u64,
        offset: u32,
        more: bool,
        data: &[u8],
        meta: FragMeta,
    ) -> FragOutcome {
        if ts_ns >= self.next_sweep {
            self.expire(ts_ns);
            self.next_sweep = ts_ns.saturating_add((self.timeout_ns / 8).max(1));
        }
        let len = data.len() as u32;
        let end = offset.saturating_add(len);
        // Every fragment but the last carries a multiple of eight bytes; an empty or oversized
        // fragment cannot be part of a valid datagram.
        if len == 0 || end > MAX_DATAGRAM || (more && len % 8 != 0) {
            self.dropped += 1;
            return FragOutcome::Dropped;
        }
        let idx = match self.index.get(&key) {
            Some(&i) => i,
            None => match self.alloc(key, ts_ns) {
                Some(i) => i,
                None => {
                    self.dropped += 1;
                    return FragOutcome::Dropped;
                }
            },
        };
        let slot = &self.slots[idx];
        let inconsistent = match slot.total {
            Some(t) => end > t || (!more && end != t),
            None => {
                !more
                    && slot.ranges[..slot.n_ranges]
                        .last()
                        .is_some_and(|r| r.1 > end)
            }
        };
        if inconsistent || slot.overlaps(offset, end) {
            self.dropped += 1;
            return FragOutcome::Dropped;
        }
        let extent = slot.buf.len();
        let grow = (end as usize).saturating_sub(extent);
        if grow > 0 && !self.make_room(grow, idx) {
            self.release(idx, true);
            self.dropped += 1;
            return FragOutcome::Dropped;
        }
        let slot = &mut self.slots[idx];
        if !slot.add_range(offset, end) {
            self.release(idx, true);
            self.dropped += 1;
            return FragOutcome::Dropped;
        }
        if grow > 0 {
            slot.buf.resize(end as usize, 0);
            self.bytes += grow;
        }
        let slot = &mut self.slots[idx];
        slot.buf[offset as usize..end as usize].copy_from_slice(data);
        slot.received += len;
        slot.fragments += 1;
        if !more {
            slot.total = Some(end);
        }
        if offset == 0 {
            slot.meta = Some(meta);
        }
        if slot.meta.is_some() && slot.total == Some(slot.received) {
            FragOutcome::Complete(idx)
        } else {
            FragOutcome::Held
        }
    }

    /// Takes a completed datagram out of the table: its metadata and its data buffer. Hand the
    /// buffer back with [`FragTable::give_back`] so it can be reused.
    pub fn take(&mut self, idx: usize) -> (FragMeta, Vec<u8>) {
        let meta = self.slots[idx].meta.unwrap_or_default();
        let buf = std::mem::take(&mut self.slots[idx].buf);
        self.bytes = self.bytes.saturating_sub(buf.len());
        self.release(idx, false);
        (meta, buf)
    }

    /// Returns a buffer to the pool (keeping its capacity for the next datagram).
    pub fn give_back(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        if self.pool.len() < self.max_datagrams + 1 {
            self.pool.push(buf);
        }
    }

    fn alloc(&mut self, key: FragKey, ts_ns: u64) -> Option<usize> {
        if self.index.len() >= self.max_datagrams {
            let oldest = self.oldest(usize::MAX)?;
            self.release(oldest, true);
        }
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                if self.slots.len() >= self.max_datagrams {
                    return None;
                }
                self.slots.push(Slot::empty());
                self.slots.len() - 1
            }
        };
        let buf = self.pool.pop().unwrap_or_default();
        let s = &mut self.slots[idx];
        s.key = key;
        s.first_ts = ts_ns;
        s.buf = buf;
        s.n_ranges = 0;
        s.received = 0;
        s.total = None;
        s.meta = None;
        s.fragments = 0;
        s.active = true;
        self.index.insert(key, idx);
        Some(idx)
    }

    /// Frees a slot; `discard` counts its fragments as dropped.
    fn release(&mut self, idx: usize, discard: bool) {
        let s = &mut self.slots[idx];
        if !s.active {
            return;
        }
        s.active = false;
        if discard {
            self.dropped += u64::from(s.fragments);
        }
        self.bytes = self.bytes.saturating_sub(s.buf.len());
        let buf = std::mem::take(&mut s.buf);
        let key = s.key;
        self.index.remove(&key);
        self.free.push(idx);
        self.give_back(buf);
    }

    /// The active slot with the oldest first fragment, other than `except`.
    fn oldest(&self, except: usize) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(i, s)| s.active && *i != except)
            .min_by_key(|(_, s)| s.first_ts)
            .map(|(i, _)| i)
    }

    /// Evicts the oldest datagrams (not `keep`) until `grow` more bytes fit.
    fn make_room(&mut self, grow: usize, keep: usize) -> bool {
        while self.bytes + grow > self.max_bytes {
            match self.oldest(keep) {
                Some(i) => self.release(i, true),
                None => return false,
            }
        }
        true
    }

    /// Discards datagrams whose first fragment is older than the timeout.
    fn expire(&mut self, now: u64) {
        for i in 0..self.slots.len() {
            let s = &self.slots[i];
            if s.active && now.saturating_sub(s.first_ts) > self.timeout_ns {
                self.release(i, true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32) -> FragKey {
        FragKey {
            src: "198.18.0.1".parse().unwrap(),
            dst: "198.18.0.2".parse().unwrap(),
            ident: id,
            proto: 17,
        }
    }

    const META: FragMeta = FragMeta {
        header_len: 20,
        proto: 17,
    };

    #[test]
    fn out_of_order_fragments_complete_and_coalesce() {
        let mut t = FragTable::new(4, 1 << 16, 1_000);
        let data: Vec<u8> = (0..24u8).collect();
        assert_eq!(
            t.insert(key(1), 0, 16, false, &data[16..], META),
            FragOutcome::Held
        );
        assert_eq!(
            t.insert(key(1), 0, 0, true, &data[..8], META),
            FragOutcome::Held
        );
        match t.insert(key(1), 0, 8, true, &data[8..16], META) {
            FragOutcome::Complete(i) => {
                let (m, buf) = t.take(i);
                assert_eq!(m.header_len, 20);
                assert_eq!(buf, data, "reassembled bytes must equal the original");
                t.give_back(buf);
            }
            o => panic!("expected completion, got {o:?}"),
        }
        assert_eq!(t.in_flight(), 0);
        assert_eq!(t.bytes, 0, "all charged bytes must be released");
    }

    #[test]
    fn overlap_and_bad_sizes_are_dropped() {
        let mut t = FragTable::new(4, 1 << 16, 1_000);
        assert_eq!(
            t.insert(key(1), 0, 0, true, &[0; 16], META),
            FragOutcome::Held
        );
        assert_eq!(
            t.insert(key(1), 0, 8, true, &[0; 16], META),
            FragOutcome::Dropped
        );
        assert_eq!(
            t.insert(key(1), 0, 16, true, &[0; 5], META),
            FragOutcome::Dropped
        );
        assert_eq!(
            t.insert(key(1), 0, 65_528, false, &[0; 16], META),
            FragOutcome::Dropped
        );
        assert_eq!(t.dropped, 3);
    }

    #[test]
    fn bounds_evict_oldest_and_timeout_expires() {
        let mut t = FragTable::new(2, 64, 1_000);
        assert_eq!(
            t.insert(key(1), 0, 0, true, &[0; 8], META),
            FragOutcome::Held
        );
        assert_eq!(
            t.insert(key(2), 1, 0, true, &[0; 8], META),
            FragOutcome::Held
        );
        // A third datagram evicts the oldest.
        assert_eq!(
            t.insert(key(3), 2, 0, true, &[0; 8], META),
            FragOutcome::Held
        );
        assert_eq!(t.in_flight(), 2);
        assert!(!t.index.contains_key(&key(1)));
        // A fragment that needs more than the byte bound is refused.
        assert_eq!(
            t.insert(key(4), 3, 0, true, &[0; 80], META),
            FragOutcome::Dropped
        );
        // Long after, everything has expired.
        assert_eq!(
            t.insert(key(5), 10_000, 0, true, &[0; 8], META),
            FragOutcome::Held
        );
        assert_eq!(t.in_flight(), 1);
    }
}

//! Bounded reassembly of the first bytes of a client's stream, for ClientHellos that do not fit
//! one packet: a TLS ClientHello over several TCP segments (in any order after the first),
//! and the CRYPTO stream of a QUIC client's first Initials (frames in any order).
//!
//! Bounds: at most [`MAX_STREAMS`] streams at once per dispatcher (the least recently touched
//! is evicted beyond it, counted), the first [`STREAM_CAP`] bytes of each, at most
//! [`MAX_RANGES`] holes-separated pieces and [`MAX_PACKETS`] packets; a stream that exceeds
//! them is given up (counted). Buffers are allocated when a slot is first used and reused by
//! every later stream of that slot: the steady state allocates nothing.

use hashbrown::HashMap;
use std::net::IpAddr;

/// Streams reassembled at once.
pub const MAX_STREAMS: usize = 256;
/// Bytes of each stream kept (from its first byte).
pub const STREAM_CAP: usize = 16 * 1024;
/// Separate pieces a stream may have before it is given up.
const MAX_RANGES: usize = 8;
/// TCP segments a ClientHello may take.
pub const MAX_SEGMENTS: u16 = 16;

/// A client's stream: (client, client port, server, server port, IP protocol).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct StreamKey {
    pub client: IpAddr,
    pub client_port: u16,
    pub server: IpAddr,
    pub server_port: u16,
    pub ip_proto: u8,
}

/// What the table counted.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct ReasmCounters {
    /// Streams started (a ClientHello that did not fit its packet).
    pub started: u64,
    /// Streams evicted while still waiting for bytes (the table was full).
    pub evicted: u64,
    /// Streams given up: beyond the byte, piece or packet bounds.
    pub abandoned: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Free,
    /// Waiting for more bytes.
    Open,
    /// Finished (a name, no name, or given up): later packets of the stream are ignored.
    Done,
}

struct Slot {
    key: StreamKey,
    state: State,
    last_ns: u64,
    /// Stream position of byte 0 (the TCP sequence number of the ClientHello's first byte).
    base: u32,
    packets: u16,
    /// Received pieces, sorted and disjoint: [start, end).
    ranges: [(u32, u32); MAX_RANGES],
    n_ranges: usize,
    buf: Vec<u8>,
}

/// The streams of one dispatcher.
pub struct StreamTable {
    slots: Vec<Slot>,
    index: HashMap<StreamKey, usize>,
    free: Vec<usize>,
    counters: ReasmCounters,
}

impl Default for StreamTable {
    fn default() -> Self {
        StreamTable::new()
    }
}

/// The outcome of adding bytes to a stream.
pub enum Added<'a> {
    /// The contiguous bytes from the stream's start (to be parsed again).
    Prefix(&'a [u8]),
    /// The stream is finished or was given up: nothing to do.
    Ignored,
}

impl StreamTable {
    pub fn new() -> StreamTable {
        StreamTable {
            slots: Vec::with_capacity(MAX_STREAMS),
            index: HashMap::with_capacity(MAX_STREAMS),
            free: Vec::with_capacity(MAX_STREAMS),
            counters: ReasmCounters::default(),
        }
    }

    pub fn counters(&self) -> ReasmCounters {
        self.counters
    }

    /// True when no stream is tracked (the common case: lookups are skipped).
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The slot of `key`, if tracked.
    pub fn find(&self, key: &StreamKey) -> Option<usize> {
        if self.index.is_empty() {
            return None;
        }
        self.index.get(key).copied()
    }

    /// Starts (or restarts) the stream `key` whose byte 0 is at position `base`.
    pub fn start(&mut self, key: StreamKey, base: u32, ts_ns: u64) -> usize {
        if let Some(i) = self.find(&key) {
            self.reset(i, base, ts_ns);
            return i;
        }
        self.counters.started += 1;
        let i = if let Some(i) = self.free.pop() {
            i
        } else if self.slots.len() < MAX_STREAMS {
            self.slots.push(Slot {
                key,
                state: State::Free,
                last_ns: 0,
                base: 0,
                packets: 0,
                ranges: [(0, 0); MAX_RANGES],
                n_ranges: 0,
                buf: vec![0; STREAM_CAP],
            });
            self.slots.len() - 1
        } else {
            // Full: the least recently touched stream goes (a linear scan, only when a new
            // stream starts while the table is full).
            let (i, _) = self
                .slots
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| (s.state == State::Open, s.last_ns))
                .expect("the table is full, so not empty");
            if self.slots[i].state == State::Open {
                self.counters.evicted += 1;
            }
            let old = self.slots[i].key;
            self.index.remove(&old);
            i
        };
        self.slots[i].key = key;
        self.index.insert(key, i);
        self.reset(i, base, ts_ns);
        i
    }

    fn reset(&mut self, i: usize, base: u32, ts_ns: u64) {
        let s = &mut self.slots[i];
        s.state = State::Open;
        s.last_ns = ts_ns;
        s.base = base;
        s.packets = 0;
        s.n_ranges = 0;
    }

    /// Ends the stream in slot `i`; its later packets are ignored until the slot is reused.
    pub fn finish(&mut self, i: usize) {
        self.slots[i].state = State::Done;
    }

    /// Forgets the stream in slot `i` altogether.
    pub fn remove(&mut self, i: usize) {
        let key = self.slots[i].key;
        if self.index.remove(&key).is_some() {
            self.slots[i].state = State::Free;
            self.free.push(i);
        }
    }

    /// Adds `data` found at stream position `pos` (a TCP sequence number, or a CRYPTO offset
    /// with base 0) to the stream in slot `i`, counting one packet when `new_packet`; beyond
    /// `max_packets` packets the stream is given up.
    pub fn add(
        &mut self,
        i: usize,
        pos: u32,
        data: &[u8],
        ts_ns: u64,
        new_packet: bool,
        max_packets: u16,
    ) -> Added<'_> {
        let s = &mut self.slots[i];
        if s.state != State::Open {
            return Added::Ignored;
        }
        s.last_ns = s.last_ns.max(ts_ns);
        if new_packet {
            s.packets += 1;
            if s.packets > max_packets {
                s.state = State::Done;
                self.counters.abandoned += 1;
                return Added::Ignored;
            }
        }
        let off = pos.wrapping_sub(s.base) as usize;
        // Bytes before the stream's start (a retransmission that began earlier) or beyond the
        // cap are not kept; what falls inside is.
        let (start, data) = if off > u32::MAX as usize / 2 {
            let skip = (u32::MAX as usize + 1) - off;
            (0usize, data.get(skip..).unwrap_or(&[]))
        } else {
            (off, data)
        };
        if start < STREAM_CAP && !data.is_empty() {
            let end = (start + data.len()).min(STREAM_CAP);
            s.buf[start..end].copy_from_slice(&data[..end - start]);
            if !insert_range(&mut s.ranges, &mut s.n_ranges, (start as u32, end as u32)) {
                s.state = State::Done;
                self.counters.abandoned += 1;
                return Added::Ignored;
            }
        }
        let prefix = match s.ranges[..s.n_ranges].first() {
            Some(&(0, e)) => e as usize,
            _ => 0,
        };
        Added::Prefix(&s.buf[..prefix])
    }

    /// Gives up the stream in slot `i` (counted): it outgrew the bounds without an answer.
    pub fn abandon(&mut self, i: usize) {
        if self.slots[i].state == State::Open {
            self.counters.abandoned += 1;
        }
        self.slots[i].state = State::Done;
    }

    /// True when the stream in slot `i` holds its whole cap from byte 0 (no more can help).
    pub fn is_full(&self, i: usize) -> bool {
        let s = &self.slots[i];
        s.n_ranges > 0 && s.ranges[0] == (0, STREAM_CAP as u32)
    }
}

/// Merges `r` into the sorted, disjoint `ranges`; false when that needs more than
/// [`MAX_RANGES`] pieces.
fn insert_range(ranges: &mut [(u32, u32); MAX_RANGES], n: &mut usize, r: (u32, u32)) -> bool {
    let (mut lo, mut hi) = r;
    // Pieces that overlap or touch `r` are absorbed; the rest keep their order.
    let mut out = [(0u32, 0u32); MAX_RANGES + 1];
    let mut k = 0;
    let mut placed = false;
    for &(a, b) in &ranges[..*n] {
        if b < lo {
            out[k] = (a, b);
            k += 1;
        } else if a > hi {
            if !placed {
                out[k] = (lo, hi);
                k += 1;
                placed = true;
            }
            out[k] = (a, b);
            k += 1;
        } else {
            lo = lo.min(a);
            hi = hi.max(b);
        }
    }
    if !placed {
        out[k] = (lo, hi);
        k += 1;
    }
    if k > MAX_RANGES {
        return false;
    }
    ranges[..k].copy_from_slice(&out[..k]);
    *n = k;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> StreamKey {
        StreamKey {
            client: "198.18.0.1".parse().unwrap(),
            client_port: port,
            server: "198.18.0.2".parse().unwrap(),
            server_port: 443,
            ip_proto: 6,
        }
    }

    fn prefix(a: Added<'_>) -> Vec<u8> {
        match a {
            Added::Prefix(p) => p.to_vec(),
            Added::Ignored => panic!("ignored"),
        }
    }

    #[test]
    fn pieces_in_any_order_make_the_prefix() {
        let mut t = StreamTable::new();
        let i = t.start(key(1), 1000, 1);
        assert_eq!(prefix(t.add(i, 1006, b"world", 2, true, MAX_SEGMENTS)), b"");
        assert_eq!(prefix(t.add(i, 1003, b"lo ", 3, true, MAX_SEGMENTS)), b"");
        assert_eq!(
            prefix(t.add(i, 1000, b"hel", 4, true, MAX_SEGMENTS)),
            b"hello world"
        );
        // A retransmission overlapping the start is trimmed to the stream.
        assert_eq!(
            prefix(t.add(i, 998, b"xxhel", 5, true, MAX_SEGMENTS)),
            b"hello world"
        );
        t.finish(i);
        assert!(matches!(
            t.add(i, 1011, b"!", 6, true, MAX_SEGMENTS),
            Added::Ignored
        ));
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut t = StreamTable::new();
        let i = t.start(key(1), u32::MAX - 1, 1);
        assert_eq!(
            prefix(t.add(i, u32::MAX - 1, b"ab", 1, true, MAX_SEGMENTS)),
            b"ab"
        );
        assert_eq!(prefix(t.add(i, 0, b"cd", 1, true, MAX_SEGMENTS)), b"abcd");
    }

    #[test]
    fn bounds_are_kept_and_counted() {
        let mut t = StreamTable::new();
        // Too many holes.
        let i = t.start(key(1), 0, 1);
        for k in 0..MAX_RANGES as u32 {
            assert!(matches!(
                t.add(i, 10 + 2 * k, b"x", 1, false, MAX_SEGMENTS),
                Added::Prefix(_)
            ));
        }
        assert!(matches!(
            t.add(i, 100, b"x", 1, false, MAX_SEGMENTS),
            Added::Ignored
        ));
        assert_eq!(t.counters().abandoned, 1);
        // Too many packets.
        let i = t.start(key(2), 0, 1);
        for k in 0..MAX_SEGMENTS as u32 {
            assert!(matches!(
                t.add(i, k, b"x", 1, true, MAX_SEGMENTS),
                Added::Prefix(_)
            ));
        }
        assert!(matches!(
            t.add(i, 99, b"x", 1, true, MAX_SEGMENTS),
            Added::Ignored
        ));
        assert_eq!(t.counters().abandoned, 2);
        // Beyond the byte cap nothing is kept.
        let i = t.start(key(3), 0, 1);
        let big = vec![7u8; STREAM_CAP + 100];
        assert_eq!(
            prefix(t.add(i, 0, &big, 1, true, MAX_SEGMENTS)).len(),
            STREAM_CAP
        );
        assert!(t.is_full(i));
        // The table's own bound: the least recently touched open stream is evicted.
        let mut t = StreamTable::new();
        for p in 0..MAX_STREAMS as u16 {
            t.start(key(p), 0, u64::from(p) + 10);
        }
        t.start(key(9999), 0, 1_000);
        assert_eq!(t.counters().evicted, 1);
        assert!(t.find(&key(0)).is_none() && t.find(&key(1)).is_some());
        assert!(t.find(&key(9999)).is_some());
    }
}

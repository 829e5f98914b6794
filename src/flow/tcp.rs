//! One TCP endpoint as Zeek's `TCP_Endpoint` tracks it: state, sequence space (with 32-bit
//! wraparound), the repeat counters behind the log-scaled history letters, and a tiny
//! reassembly model that finds content gaps (bytes acknowledged but never seen).

/// Zeek's `EndpointState`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum EpState {
    #[default]
    Inactive,
    SynSent,
    SynAckSent,
    Partial,
    Established,
    Closed,
    Reset,
}

/// Signed distance between two sequence numbers, as TCP compares them.
pub fn seq_delta(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// A repeated event that is recorded in the history when its count reaches 1, 10, 100, ...
#[derive(Clone, Copy, Debug)]
pub struct Scaled {
    count: u32,
    threshold: u32,
}

impl Default for Scaled {
    fn default() -> Self {
        Scaled {
            count: 0,
            threshold: 1,
        }
    }
}

impl Scaled {
    /// Counts one event; true when the history should get a letter for it.
    pub fn hit(&mut self) -> bool {
        self.count = self.count.wrapping_add(1);
        if self.count != self.threshold {
            return false;
        }
        match self.threshold.checked_mul(10) {
            Some(t) => self.threshold = t,
            // At the top of the range Zeek keeps the threshold and restarts the count.
            None => self.count = 0,
        }
        true
    }
}

/// How many out-of-order byte ranges one endpoint remembers above a hole. Real holes are few;
/// a range that does not fit is treated as never seen, which can only overstate a gap.
const MAX_RANGES: usize = 8;

/// The reassembler's bookkeeping without the bytes: where contiguous delivery stands, which
/// ranges above a hole were seen, and where acknowledged data was trimmed.
#[derive(Clone, Copy, Debug)]
pub struct Reassembly {
    /// Relative sequence number of the next byte to deliver (Zeek's `last_reassem_seq`).
    pub next: u64,
    /// Everything below this was acknowledged and trimmed (Zeek's `trim_seq`).
    pub trim: u64,
    ranges: [(u64, u64); MAX_RANGES],
    n: u8,
}

impl Default for Reassembly {
    fn default() -> Self {
        Reassembly {
            next: 1,
            trim: 1,
            ranges: [(0, 0); MAX_RANGES],
            n: 0,
        }
    }
}

impl Reassembly {
    /// Records data `[seq, seq+len)`, delivering whatever became contiguous.
    pub fn insert(&mut self, seq: u64, len: u64) {
        let upper = seq + len;
        if upper <= self.next {
            return;
        }
        if seq <= self.next {
            self.next = upper;
            self.absorb();
            return;
        }
        // Above a hole: keep the range (merging with neighbours) if there is room.
        let mut lo = seq;
        let mut hi = upper;
        let mut kept = 0;
        for i in 0..self.n as usize {
            let (a, b) = self.ranges[i];
            if b < lo || a > hi {
                self.ranges[kept] = (a, b);
                kept += 1;
            } else {
                lo = lo.min(a);
                hi = hi.max(b);
            }
        }
        if kept < MAX_RANGES {
            self.ranges[kept] = (lo, hi);
            kept += 1;
        }
        self.n = kept as u8;
        self.ranges[..kept].sort_unstable();
    }

    /// Moves `next` over stored ranges that now touch it.
    fn absorb(&mut self) {
        let mut kept = 0;
        for i in 0..self.n as usize {
            let (a, b) = self.ranges[i];
            if a <= self.next {
                self.next = self.next.max(b);
            } else {
                self.ranges[kept] = (a, b);
                kept += 1;
            }
        }
        self.n = kept as u8;
    }

    /// Declares everything below `up_to` delivered or lost, returning the lost gaps' total.
    /// Stored ranges below `up_to` count as delivered, the holes between them as gaps.
    pub fn undelivered(&mut self, up_to: u64, mut gap: impl FnMut(u64)) {
        let mut kept = 0;
        for i in 0..self.n as usize {
            let (a, b) = self.ranges[i];
            if a < up_to {
                if a > self.next {
                    gap(a - self.next);
                }
                self.next = self.next.max(b);
            } else {
                self.ranges[kept] = (a, b);
                kept += 1;
            }
        }
        self.n = kept as u8;
        if up_to > self.next {
            gap(up_to - self.next);
            self.next = up_to;
        }
        self.absorb();
    }
}

/// One side of a TCP connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpEp {
    pub state: EpState,
    pub prev_state: EpState,
    pub start_seq: u32,
    pub last_seq: u32,
    pub ack_seq: u32,
    pub seq_wraps: u32,
    pub ack_wraps: u32,
    pub hist_last_syn: u64,
    pub hist_last_fin: u64,
    pub hist_last_rst: u64,
    pub fin_cnt: u32,
    pub rst_cnt: u32,
    /// Relative sequence number just past the FIN.
    pub fin_seq: u64,
    pub did_close: bool,
    pub rxmit: Scaled,
    pub zero_window: Scaled,
    pub gaps: Scaled,
    pub bad_checksum: Scaled,
    pub reassembly: Reassembly,
}

impl TcpEp {
    /// Zeek's `SetState`: remembers the previous state only on a real change.
    pub fn set_state(&mut self, s: EpState) {
        if s != self.state {
            self.prev_state = self.state;
            self.state = s;
        }
    }

    pub fn update_last_seq(&mut self, seq: u32) {
        if seq < self.last_seq {
            self.seq_wraps += 1;
        }
        self.last_seq = seq;
    }

    pub fn update_ack_seq(&mut self, seq: u32) {
        if seq < self.ack_seq {
            self.ack_wraps += 1;
        }
        self.ack_seq = seq;
    }

    /// Initialises all three sequence markers, as when a SYN (re)starts the sequence space.
    pub fn init_seqs(&mut self, start: u32, last: u32) {
        self.start_seq = start;
        self.ack_seq = start;
        self.last_seq = last;
    }

    fn full(seq: u32, wraps: u32) -> u64 {
        (u64::from(wraps) << 32) | u64::from(seq)
    }

    /// A sequence number relative to the start of this endpoint's sequence space.
    pub fn relative_to_start(&self, seq: u32, wraps: u32) -> u64 {
        Self::full(seq, wraps).wrapping_sub(u64::from(self.start_seq))
    }

    /// Zeek's `get_relative_seq`: `cur` relative to the start, using `last` and `wraps` to
    /// decide which 4 GiB window `cur` lies in. The flag is set when `cur` lies before the start.
    pub fn relative(&self, cur: u32, last: u32, mut wraps: u32) -> (u64, bool) {
        let delta = seq_delta(cur, last);
        if delta < 0 {
            if wraps > 0 && cur > last {
                wraps -= 1;
            }
        } else if delta > 0 && cur < last {
            wraps += 1;
        }
        if wraps == 0 {
            let d = seq_delta(cur, self.start_seq);
            return (d as i64 as u64, d < 0);
        }
        (self.relative_to_start(cur, wraps), false)
    }

    fn no_data_acked(&self) -> bool {
        let ack = Self::full(self.ack_seq, self.ack_wraps);
        let start = u64::from(self.start_seq);
        ack == start || ack == start + 1
    }

    /// Payload bytes sent, from the sequence space (Zeek's `TCP_Endpoint::Size`).
    pub fn size(&self, peer_state: EpState) -> u64 {
        if self.prev_state == EpState::SynSent
            && self.state == EpState::Reset
            && peer_state == EpState::Inactive
            && !self.no_data_acked()
        {
            // A RST answering an attempt that carried an odd ack: its sequence numbers are
            // not trustworthy.
            return 0;
        }
        let last = Self::full(self.last_seq, self.seq_wraps);
        let ack = Self::full(self.ack_seq, self.ack_wraps);
        let mut size = last.max(ack).wrapping_sub(u64::from(self.start_seq));
        // The SYN and FIN each occupy one sequence number but carry no payload.
        size = size.saturating_sub(1);
        if self.fin_cnt > 0 && size > 0 {
            size -= 1;
        }
        // Sequence numbers running backwards must not turn into a huge count.
        if size > (1 << 62) {
            0
        } else {
            size
        }
    }

    /// Zeek's `is_clean`: established, or closed after having been established.
    pub fn is_clean(&self) -> bool {
        self.state == EpState::Established
            || (self.state == EpState::Closed && self.prev_state == EpState::Established)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_fires_at_powers_of_ten() {
        let mut s = Scaled::default();
        let fired: Vec<u32> = (1..=1000).filter(|_| s.hit()).collect::<Vec<_>>();
        assert_eq!(fired.len(), 4, "1, 10, 100 and 1000 should fire");
    }

    #[test]
    fn reassembly_counts_only_real_holes() {
        let mut r = Reassembly::default();
        r.insert(1, 100);
        r.insert(201, 100); // hole 101..201
        let mut lost = 0;
        r.undelivered(401, |n| lost += n);
        assert_eq!(lost, 100 + 100, "hole of 100 and unseen tail 301..401");
        assert_eq!(r.next, 401);
        r.insert(50, 10);
        assert_eq!(r.next, 401, "old data must not move delivery back");
    }

    #[test]
    fn relative_seq_handles_wraparound() {
        let mut e = TcpEp::default();
        e.init_seqs(u32::MAX - 10, u32::MAX - 9);
        e.update_last_seq(100); // wrapped
        assert_eq!(e.seq_wraps, 1);
        let (rel, under) = e.relative(50, e.last_seq, e.seq_wraps);
        assert!(!under);
        assert_eq!(rel, 50 + 11, "relative seq across the wrap");
        // 11 sequence numbers before the wrap and 100 after, less the SYN's.
        assert_eq!(e.size(EpState::Inactive), 11 + 100 - 1);
    }
}

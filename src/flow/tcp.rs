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
/// (Zeek's `ScaledHistoryEntry`). Four bytes: the count, and in the top bit whether the count
/// reached 10^9, where Zeek's threshold stops growing and the count starts again.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scaled(u32);

const SCALED_TOP: u32 = 1 << 31;
const SCALED_MAX: u32 = 1_000_000_000;

impl Scaled {
    /// Counts one event; true when the history should get a letter for it.
    pub fn hit(&mut self) -> bool {
        let top = self.0 & SCALED_TOP;
        let count = (self.0 & !SCALED_TOP) + 1;
        if count == SCALED_MAX {
            self.0 = SCALED_TOP;
            return true;
        }
        self.0 = top | count;
        top == 0 && is_power_of_ten(count)
    }
}

fn is_power_of_ten(mut n: u32) -> bool {
    while n >= 10 && n % 10 == 0 {
        n /= 10;
    }
    n == 1
}

/// How many out-of-order byte ranges one endpoint remembers above a hole. Real holes are few;
/// a range that does not fit is treated as never seen, which can only overstate a gap.
const MAX_RANGES: usize = 8;

/// Out-of-order ranges seen above a hole (kept in the connection's cold state).
pub type Ranges = [(u64, u64); MAX_RANGES];

/// The reassembler's bookkeeping without the bytes: where contiguous delivery stands, where
/// acknowledged data was trimmed, and how many ranges above a hole are held. The ranges
/// themselves are asked for (`ranges`) only when a hole exists, so the common in-order stream
/// never needs them.
#[derive(Clone, Copy, Debug)]
pub struct Reassembly {
    /// Relative sequence number of the next byte to deliver (Zeek's `last_reassem_seq`).
    pub next: u64,
    /// Everything below this was acknowledged and trimmed (Zeek's `trim_seq`).
    pub trim: u64,
    n: u8,
}

impl Default for Reassembly {
    fn default() -> Self {
        Reassembly {
            next: 1,
            trim: 1,
            n: 0,
        }
    }
}

impl Reassembly {
    /// Records data `[seq, seq+len)`, delivering whatever became contiguous.
    pub fn insert<'a>(&mut self, seq: u64, len: u64, ranges: impl FnOnce() -> &'a mut Ranges) {
        let upper = seq + len;
        if upper <= self.next {
            return;
        }
        if seq <= self.next {
            self.next = upper;
            if self.n > 0 {
                self.absorb(ranges());
            }
            return;
        }
        // Above a hole: keep the range (merging with neighbours) if there is room.
        let ranges = ranges();
        let mut lo = seq;
        let mut hi = upper;
        let mut kept = 0;
        for i in 0..self.n as usize {
            let (a, b) = ranges[i];
            if b < lo || a > hi {
                ranges[kept] = (a, b);
                kept += 1;
            } else {
                lo = lo.min(a);
                hi = hi.max(b);
            }
        }
        if kept < MAX_RANGES {
            ranges[kept] = (lo, hi);
            kept += 1;
        }
        self.n = kept as u8;
        ranges[..kept].sort_unstable();
    }

    /// Moves `next` over stored ranges that now touch it.
    fn absorb(&mut self, ranges: &mut Ranges) {
        let mut kept = 0;
        for i in 0..self.n as usize {
            let (a, b) = ranges[i];
            if a <= self.next {
                self.next = self.next.max(b);
            } else {
                ranges[kept] = (a, b);
                kept += 1;
            }
        }
        self.n = kept as u8;
    }

    /// Declares everything below `up_to` delivered or lost, returning the lost gaps' total.
    /// Stored ranges below `up_to` count as delivered, the holes between them as gaps.
    pub fn undelivered<'a>(
        &mut self,
        up_to: u64,
        ranges: impl FnOnce() -> &'a mut Ranges,
        mut gap: impl FnMut(u64),
    ) {
        let mut held = (self.n > 0).then(ranges);
        if let Some(ranges) = held.as_deref_mut() {
            let mut kept = 0;
            for i in 0..self.n as usize {
                let (a, b) = ranges[i];
                if a < up_to {
                    if a > self.next {
                        gap(a - self.next);
                    }
                    self.next = self.next.max(b);
                } else {
                    ranges[kept] = (a, b);
                    kept += 1;
                }
            }
            self.n = kept as u8;
        }
        if up_to > self.next {
            gap(up_to - self.next);
            self.next = up_to;
        }
        if let Some(ranges) = held {
            self.absorb(ranges);
        }
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
    /// Relative sequence numbers of the last SYN, FIN (its end) and RST (Zeek's
    /// `hist_last_*`), compared only for equality to decide whether a repeat earns a history
    /// letter. Kept as their low 32 bits: two control packets of one kind exactly a multiple
    /// of 4 GiB apart would be taken for a repeat, and no real connection does that.
    pub hist_last_syn: u32,
    pub hist_last_fin: u32,
    pub hist_last_rst: u32,
    /// FINs sent (saturating; only "any" matters).
    pub fin_cnt: u16,
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
    fn scaled_restarts_its_count_at_a_billion() {
        let mut s = Scaled(SCALED_MAX - 2);
        assert!(!s.hit());
        assert!(s.hit(), "10^9 fires");
        // The threshold stays at 10^9: nothing fires until the count reaches it again.
        assert!(!s.hit() && !s.hit(), "1 and 2 do not fire after the top");
        s = Scaled(SCALED_TOP | (SCALED_MAX - 1));
        assert!(s.hit());
        assert_eq!(std::mem::size_of::<Scaled>(), 4);
    }

    #[test]
    fn reassembly_counts_only_real_holes() {
        let mut r = Reassembly::default();
        let mut ranges: Ranges = Default::default();
        let mut asked = 0;
        r.insert(1, 100, || {
            asked += 1;
            &mut ranges
        });
        assert_eq!(asked, 0, "in-order data needs no ranges");
        r.insert(201, 100, || &mut ranges); // hole 101..201
        let mut lost = 0;
        r.undelivered(401, || &mut ranges, |n| lost += n);
        assert_eq!(lost, 100 + 100, "hole of 100 and unseen tail 301..401");
        assert_eq!(r.next, 401);
        r.insert(50, 10, || &mut ranges);
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

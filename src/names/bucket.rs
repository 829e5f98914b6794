//! A token bucket driven by packet time, so that offline runs limit exactly as the trace's
//! clock says (deterministic) and live runs by the batch clock.

const NS: u64 = 1_000_000_000;

/// Allows `rate` events per second on average, with bursts of up to `burst`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    /// Tokens, in units of 1/1e9 token (integer arithmetic: the same trace always gives the
    /// same decisions).
    level: u64,
    cap: u64,
    rate: u64,
    last_ns: Option<u64>,
}

impl TokenBucket {
    /// A full bucket. `rate` 0 allows nothing beyond the burst.
    pub fn new(rate: u32, burst: u32) -> TokenBucket {
        let cap = u64::from(burst.max(1)) * NS;
        TokenBucket {
            level: cap,
            cap,
            rate: u64::from(rate),
            last_ns: None,
        }
    }

    /// Takes one token at time `now_ns` if there is one. Time going backwards adds nothing.
    pub fn take(&mut self, now_ns: u64) -> bool {
        let elapsed = match self.last_ns {
            Some(l) => now_ns.saturating_sub(l),
            None => 0,
        };
        self.last_ns = Some(self.last_ns.map_or(now_ns, |l| l.max(now_ns)));
        // Bounded before multiplying so that a long pause cannot overflow; rate 0 never
        // refills.
        if let Some(max_elapsed) = self.cap.checked_div(self.rate) {
            let elapsed = elapsed.min(max_elapsed + 1);
            self.level = (self.level + elapsed * self.rate).min(self.cap);
        }
        if self.level >= NS {
            self.level -= NS;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let mut b = TokenBucket::new(10, 5);
        let ok = (0..20).filter(|_| b.take(0)).count();
        assert_eq!(ok, 5);
        // One second later: ten more.
        let ok = (0..20).filter(|_| b.take(NS)).count();
        assert_eq!(ok, 5, "the burst caps what a pause gives");
        let mut b = TokenBucket::new(10, 100);
        let _ = (0..100).filter(|_| b.take(0)).count();
        let ok = (0..100).filter(|_| b.take(NS)).count();
        assert_eq!(ok, 10);
        // A whole minute at 10/s, one attempt per millisecond: 600 granted, never more.
        let mut b = TokenBucket::new(10, 1);
        let ok = (0..60_000u64).filter(|i| b.take(i * 1_000_000)).count();
        assert!((599..=601).contains(&ok), "{ok}");
        let mut b = TokenBucket::new(0, 1);
        assert!(b.take(0));
        assert!(!b.take(100 * NS), "rate 0 never refills");
    }
}
